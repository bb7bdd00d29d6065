"""The export of a device bundle: one deployed file per member and the manifest that routes device ids.

`export_members` exports every member of an `edgeasc.devices.bundle` (int8 or float32 TFLite, with
`edgeasc.deploy.export.export_checkpoints`, conversions side by side) into `OUT/<member>/` and leaves a
`member.json` marker there; a member whose marker has the same weights (sha256) and options is not exported
again. `write_manifest` writes `OUT/manifest.json`: {"general": {"tflite"}, "devices": {dev: path},
"unknown_devices": "general", "members": {member: {"tflite", "param_bytes", "macs", "within_budget",
"int8_agreement", "int8_accuracy", ...}}}; `manifest_tflite` answers a device id from it. The audit of each
member, which the manifest records, is a later stage: `edgeasc.pipeline.export_bundle` chains the two.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from edgeasc.artifacts import save_torch_atomic, write_json_atomic
from edgeasc.config import CALIB_CLIPS
from edgeasc.devices.bundle import Bundle
from edgeasc.errors import DataError
from edgeasc.labels import GENERAL, member_for
from edgeasc.metrics import text_table

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
MEMBER_FILE = "member.json"
MANIFEST_FORMAT = "edgeasc-bundle-manifest"


def _fingerprint(ckpt: dict[str, Any]) -> str:
    """sha256 of a checkpoint's model_config, frontend and weights: decides whether an export is current."""
    h = hashlib.sha256()
    h.update(json.dumps(ckpt["model_config"], sort_keys=True, default=list).encode())
    h.update(json.dumps((ckpt.get("config") or {}).get("frontend"), sort_keys=True).encode())
    for key in sorted(ckpt["state_dict"]):
        t = ckpt["state_dict"][key].detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(_uint_dtype(t.element_size())).numpy().tobytes())  # raw bytes, any dtype
    return h.hexdigest()


def _uint_dtype(itemsize: int) -> Any:
    import torch

    return {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[itemsize]


def export_members(
    bundle: Bundle,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    int8: bool = True,
    calib_clips: int = CALIB_CLIPS,
    eval_clips: int | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    calib_split: str | None = None,
    eval_split: str = "test",
) -> dict[str, dict[str, Any]]:
    """Export every member of a bundle (`edgeasc.devices.bundle.read_bundle`) into `out_dir/<member>/` (see the
    module docstring).

    Returns:
        Member -> its marker: {"member", "fingerprint", "options", "tflite" (file name in the
        member's folder), "parity" (accuracy and agreement of the deployed file vs torch)}.
    """
    from edgeasc.deploy.export import export_checkpoints

    out = Path(out_dir)
    key = "tflite_int8" if int8 else "tflite_float32"
    options = {"int8": int8, "calib_clips": calib_clips, "calib_split": calib_split, "eval_split": eval_split,
               "eval_clips": eval_clips, "seed": seed}
    members = bundle.members()
    done: dict[str, dict[str, Any]] = {}  # member -> its marker: {"tflite", "parity", ...}
    todo: dict[str, tuple[Path, str]] = {}
    for i, member in enumerate(members, 1):
        mdir = out / member
        ckpt = bundle.checkpoint(member)
        fp = _fingerprint(ckpt)
        marker = _read_marker(mdir / MEMBER_FILE)
        if (marker is not None and marker.get("fingerprint") == fp and marker.get("options") == options
                and (mdir / marker["tflite"]).is_file()):
            log.info("member %s (%d/%d): export in %s is current; skipping", member, i, len(members), mdir)
            done[member] = marker
        else:
            log.info("member %s (%d/%d): exporting to %s", member, i, len(members), mdir)
            todo[member] = (save_torch_atomic(mdir / "model.pt", ckpt), fp)
    if todo:  # converted side by side (edgeasc.deploy.export.convert_onnx_to_tflite)
        results = export_checkpoints([(pt, pt.parent) for pt, _ in todo.values()], data_dir, int8=int8,
                                     calib_clips=calib_clips, calib_split=calib_split, eval_split=eval_split,
                                     eval_clips=eval_clips, seed=seed, cache_dir=cache_dir, progress=progress)
        for (member, (pt, fp)), result in zip(todo.items(), results):
            done[member] = {"member": member, "fingerprint": fp, "options": options,
                            "tflite": result.artifacts[key].name, "parity": _parity_entry(result.report, member, key)}
            write_json_atomic(pt.parent / MEMBER_FILE, done[member])
    return done


def write_manifest(out_dir: str | os.PathLike, bundle_path: str | os.PathLike, bundle: Bundle, key: str,
                   budget: str | None, entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Write `out_dir/manifest.json` from one entry per member (its .tflite, audit figures and parity).

    Returns:
        The manifest, with "path" added.
    """
    out = Path(out_dir)
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "bundle": str(bundle_path),
        "model_name": bundle.general["model_config"]["name"],
        "format_key": key,
        "budget": None if budget in (None, "none") else budget,
        "general": {"tflite": entries[GENERAL]["tflite"]},
        "devices": {d: entries[d]["tflite"] for d in bundle.devices},
        "unknown_devices": GENERAL,
        "members": entries,
        "within_budget": None if budget in (None, "none") else all(e["within_budget"] for e in entries.values()),
    }
    path = write_json_atomic(out / MANIFEST_FILE, manifest)
    manifest["path"] = str(path)
    return manifest


def _read_marker(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def _parity_entry(report: dict[str, Any], member: str, key: str) -> dict[str, Any]:
    """Accuracy and agreement of the deployed file vs torch; a device member also on its own device's clips."""
    res = report["results"]
    dep = res[key]
    entry = {
        "eval_split": report["eval"]["split"],
        "eval_clips": report["eval"]["n_clips"],
        "torch_accuracy": res["torch"]["macro_accuracy"],
        "int8_agreement": dep["agreement"] if key == "tflite_int8" else None,
        "int8_accuracy": dep["macro_accuracy"] if key == "tflite_int8" else None,
        "tflite_agreement": dep["agreement"],
        "tflite_accuracy": dep["macro_accuracy"],
    }
    if member != GENERAL and member in dep["per_device"]:
        entry["own_device_torch_accuracy"] = res["torch"]["per_device"][member]
        entry["own_device_tflite_accuracy"] = dep["per_device"][member]
    return entry


def manifest_tflite(manifest_path: str | os.PathLike, device_id: str) -> Path:
    """The .tflite that answers `device_id` in an export manifest (the general one for unknown devices)."""
    manifest_path = Path(manifest_path)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read bundle manifest {manifest_path}: {exc}") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise DataError(f"{manifest_path} is not an edgeasc bundle manifest")
    member = member_for(device_id, manifest["devices"])
    rel = manifest["general"]["tflite"] if member == GENERAL else manifest["devices"][member]
    return manifest_path.parent / rel


def format_export_manifest(manifest: dict[str, Any]) -> str:
    """One row per member: file, parameter bytes, MACs, agreement with torch, accuracy, budget verdict."""
    rows = [["member", "tflite", "param bytes", "MACs", "agree %", "macro %", "budget"]]
    for member, e in manifest["members"].items():
        rows.append([member, e["tflite"], f"{e['param_bytes']:,}", f"{e['macs']:,}",
                     f"{100 * e['tflite_agreement']:.2f}", f"{100 * e['tflite_accuracy']:.2f}",
                     {True: "ok", False: "OVER", None: "-"}[e["within_budget"]]])
    first = next(iter(manifest["members"].values()))
    lines = [f"{manifest['model_name']} bundle export ({manifest['format_key']}); parity on {first['eval_split']} "
             f"({first['eval_clips']} clips); unknown devices -> {manifest['general']['tflite']}"]
    return "\n".join(lines + text_table(rows))
