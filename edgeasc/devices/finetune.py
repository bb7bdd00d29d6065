"""Device-specific fine-tuning: one copy of the general model per known recording device, in one bundle.

The DCASE 2025 Task 1 rules let a system read the device id at inference time. The official baseline
(CPJKU/dcase2025_task1_baseline:train_device_specific.py, SPEC.md section 2) and the seed fine-tune a copy of
the general model on each known device's training clips (a, b, c, s1, s2, s3; all parameters, 50 epochs,
AdamW lr 5e-4, 200 warm-up steps, Freq-MixStyle off) and answer every other device id (s4-s6 in
development, s7-s10 in the 2025 evaluation set) with the general model. Each model must fit the budget on
its own; fine-tuning keeps the general model's widths, so every member has its complexity.

Labels, soft labels or both: each device run is an ordinary `edgeasc.train.train` run, so the recipe's
`[kd]` section decides. Without `kd.teacher_logits` the runs use hard labels (cross-entropy); with it the
loss is `label_weight * CE + (1 - label_weight) * T^2 * KL` against the stored teacher logits (the
logits file must cover the device's training clips): `label_weight = 0` trains on the soft labels alone,
`0 < label_weight < 1` on both.

Selection (`select=True`, `edgeasc finetune --select`): each device run trains without a share (`holdout`,
default 20%) of that device's training clips, whole recording locations in a seeded order
(`data.holdout_fraction`);
the fine-tuned model joins the bundle only when it classifies more of those held-out clips correctly than
the general model, else the device keeps the general model. The choice never looks at the evaluation
split; `finetune.json` records both accuracies per device.

Layout of `finetune`'s output folder:
    devices/<dev>/      one training run per device (config.json, last.pt, model.pt, metrics.json, ...)
    bundle.pt           the general model plus every device model (edgeasc.devices.bundle)
    eval_bundle.json    general vs device-specific accuracy per device (`evaluate_bundle`)
    finetune.json       provenance (recipe, devices, runs) and the same per-device table
A bundle's export (one .tflite per member and a manifest.json routing device ids to them) is
`edgeasc.pipeline.export_bundle`, on `edgeasc.deploy.manifest`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeasc._moved import moved_attr
from edgeasc.artifacts import write_json_atomic
from edgeasc.devices.bundle import GENERAL, is_bundle, read_bundle, routed_logits, save_bundle
from edgeasc.errors import CheckpointError, ConfigError, DataError
from edgeasc.labels import DEVICE_GROUPS, DEVICES, EVAL_ONLY_DEVICES, device_key
from edgeasc.metrics import pct, text_table

log = logging.getLogger(__name__)

KNOWN_DEVICES: tuple[str, ...] = DEVICE_GROUPS["real"] + DEVICE_GROUPS["seen"]
"""Devices with training clips in TAU22 (a, b, c, s1-s3): the default set of device models."""

DEFAULT_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "finetune_device.toml"
BUNDLE_FILE = "bundle.pt"
REPORT_FILE = "finetune.json"
EVAL_FILE = "eval_bundle.json"


@dataclass
class FinetuneResult:
    """What `finetune` wrote.

    Attributes:
        bundle_path: the bundle (general model + one model per device).
        runs: device id -> its training run directory.
        report: the contents of finetune.json.
    """

    bundle_path: Path
    runs: dict[str, Path] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------
def parse_devices(devices: str | list[str] | tuple[str, ...]) -> list[str]:
    """Device ids from "a,b,s1" or a list: lower-cased, stripped, duplicates dropped, order kept.

    Raises:
        ConfigError: an id that is not a device, or an evaluation-only device (s7-s10), which has no clips
            to fine-tune on and is always answered by the general model.
    """
    items = devices.split(",") if isinstance(devices, str) else list(devices)
    out = list(dict.fromkeys(device_key(d) for d in items if str(d).strip()))
    if not out:
        raise ConfigError("no device ids given; expected e.g. a,b,c,s1,s2,s3")
    for dev in out:
        if dev in EVAL_ONLY_DEVICES:
            raise ConfigError(f"device {dev!r} is in the 2025 evaluation set only and has no training clips; the "
                              "bundle answers it with the general model (fine-tune some of: "
                              f"{', '.join(KNOWN_DEVICES)})")
        if dev not in DEVICES:
            import difflib

            close = difflib.get_close_matches(dev, DEVICES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown device id {dev!r}{hint} (valid ids: {', '.join(DEVICES)})")
    return out


def _base_config(checkpoint: Path, ckpt: dict[str, Any], recipe: Path, overrides: tuple[str, ...]) -> Any:
    """The TrainConfig every device run shares (data.devices is set per device afterwards).

    The model (name, widths) and the frontend come from the general checkpoint, the weights start from it.
    """
    from edgeasc.checkpoint import frontend_of
    from edgeasc.config import FrontendConfig, TrainConfig, apply_overrides, from_dict, load_recipe, to_dict

    data = apply_overrides(load_recipe(recipe), list(overrides))
    if data.get("model"):
        raise ConfigError(f"finetune takes the model (name, widths, weights) from {checkpoint.name}; remove "
                          f"[model] {', '.join(sorted(data['model']))} from the recipe and --set values")
    if isinstance(data.get("data"), dict) and data["data"].get("devices"):
        raise ConfigError("finetune sets data.devices for each device run; choose the devices with --devices")
    frontend = to_dict(frontend_of(ckpt))
    if "frontend" in data:
        given = to_dict(from_dict(FrontendConfig, data["frontend"], where="frontend"))
        if given != frontend:
            raise ConfigError(f"the recipe's [frontend] differs from the one {checkpoint.name} was trained with "
                              f"({frontend}); remove it or give the same values")
    data["frontend"] = frontend
    mc = ckpt["model_config"]
    data["model"] = {"name": mc["name"], "kwargs": dict(mc.get("kwargs") or {}), "init_checkpoint": str(checkpoint)}
    return from_dict(TrainConfig, data)


def _resolve_devices(devices: Any, train_clips: list, val_clips: list, train_split: str, val_split: str) -> list[str]:
    train_present = {c.device for c in train_clips}
    val_present = {c.device for c in val_clips}
    if devices is None:
        chosen = [d for d in KNOWN_DEVICES if d in train_present]
        absent = [d for d in KNOWN_DEVICES if d not in train_present]
        if absent:
            log.warning("split %s has no clips of %s: no device model for them (the general model answers them)",
                        train_split, ", ".join(absent))
        if not chosen:
            raise DataError(f"split {train_split!r} has no clips of any known device ({', '.join(KNOWN_DEVICES)})")
    else:
        chosen = parse_devices(devices)
    for split, present in ((train_split, train_present), (val_split, val_present)):
        missing = [d for d in chosen if d not in present]
        if missing:
            raise DataError(f"split {split!r} has no clips of device(s) {', '.join(missing)} (it has: "
                            f"{', '.join(sorted(present)) or 'none'}); fine-tune only devices with clips there")
    return chosen


def _run_complete(run_dir: Path, cfg_dict: dict[str, Any]) -> bool:
    """True when `run_dir` holds a finished run of exactly this config."""
    from edgeasc.config import TrainConfig, from_dict, to_dict
    from edgeasc.train.loop import MODEL_FILE

    cfg_path = run_dir / "config.json"
    if not (run_dir / MODEL_FILE).is_file() or not cfg_path.is_file():
        return False
    try:  # fields added to the config since the run was written take their defaults, as train's resume does
        saved = to_dict(from_dict(TrainConfig, json.loads(cfg_path.read_text(encoding="utf-8"))))
    except (json.JSONDecodeError, ConfigError):
        return False
    return saved == cfg_dict


# --------------------------------------------------------------------------------------------------
# Fine-tuning
# --------------------------------------------------------------------------------------------------
def finetune(
    checkpoint: str | os.PathLike,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    recipe: str | os.PathLike | None = None,
    overrides: tuple[str, ...] = (),
    devices: str | list[str] | tuple[str, ...] | None = None,
    resume: bool = True,
    progress: bool = False,
    select: bool = False,
    holdout: float = 0.2,
) -> FinetuneResult:
    """Fine-tune one copy of the general model per device and write the bundle.

    Args:
        checkpoint: the general model (an edgeasc checkpoint; pruned widths are kept).
        data_dir: TAU22-layout dataset.
        out_dir: output folder (see the module docstring).
        recipe: TOML recipe without [model] (default `recipes/finetune_device.toml`, the seed's numbers).
        overrides: `section.key=value` overrides of the recipe.
        devices: device ids ("a,b,c" or a list); default every known device (a, b, c, s1-s3) with clips in
            the training split.
        resume: continue unfinished device runs and skip finished ones; False fails on an existing run.
        progress: progress bars.
        select: keep a device's fine-tuned model only when it beats the general model on `holdout` of that
            device's training clips, held out of its run (module docstring).
        holdout: the held-out share of each device's training clips when `select`.

    Raises:
        ConfigError, CheckpointError, DataError: bad input, checked before any training.
    """
    from edgeasc.checkpoint import load_model, read_checkpoint
    from edgeasc.config import to_dict
    from edgeasc.data.dataset import TAUDataset
    from edgeasc.train.loop import MODEL_FILE, train

    checkpoint = Path(checkpoint).resolve()
    out = Path(out_dir)
    if is_bundle(checkpoint):
        raise CheckpointError(f"{checkpoint} is already a device bundle; fine-tune from the general checkpoint")
    load_model(checkpoint)  # fails now, not after hours, when the weights do not match the model
    general = read_checkpoint(checkpoint)
    recipe_path = Path(recipe) if recipe is not None else DEFAULT_RECIPE
    if recipe is None and not recipe_path.is_file():
        raise ConfigError(f"the default recipe {recipe_path} is missing; pass --recipe")
    base = _base_config(checkpoint, general, recipe_path, tuple(overrides))
    if select:
        if not 0.0 < holdout < 1.0:
            raise ConfigError(f"--holdout must be in (0, 1), got {holdout}")
        base = dataclasses.replace(base, data=dataclasses.replace(base.data, holdout_fraction=holdout))
    ds = TAUDataset(data_dir)
    devs = _resolve_devices(devices, ds.clips(base.data.train_split), ds.clips(base.data.val_split),
                            base.data.train_split, base.data.val_split)
    held_out: dict[str, list] = {}  # device -> the clips its run leaves out (the ones train() holds out)
    if select:  # fail before any training when a device has nothing to hold out
        from edgeasc.train.clips import select_devices, split_holdout

        train_clips = ds.clips(base.data.train_split)
        for dev in devs:
            clips = select_devices(train_clips, (dev,), base.data.train_split)
            held_out[dev] = split_holdout(clips, holdout, base.seed)[1]
            if not held_out[dev]:
                raise DataError(f"--select: device {dev} has no location or recording to hold out ({len(clips)} "
                                f"clips, one recording per class); fine-tune it without --select")
    log.info("fine-tuning %s for device(s) %s from %s", base.model.name, ", ".join(devs), checkpoint)

    runs: dict[str, Path] = {}
    trained, skipped = [], []
    members: dict[str, dict[str, Any]] = {}
    selection: dict[str, dict[str, Any]] = {}
    for i, dev in enumerate(devs, 1):
        cfg = dataclasses.replace(base, data=dataclasses.replace(base.data, devices=(dev,)))
        run_dir = out / "devices" / dev
        runs[dev] = run_dir
        if resume and _run_complete(run_dir, to_dict(cfg)):
            log.info("device %s (%d/%d): %s is complete; skipping", dev, i, len(devs), run_dir)
            skipped.append(dev)
        else:
            log.info("device %s (%d/%d): training in %s", dev, i, len(devs), run_dir)
            train(cfg, data_dir, run_dir, resume=resume, progress=progress)
            trained.append(dev)
        ckpt = read_checkpoint(run_dir / MODEL_FILE)
        if select:
            selection[dev] = _holdout_choice(checkpoint, run_dir / MODEL_FILE, ds, cfg, held_out[dev])
            log.info("device %s: held-out accuracy general %.2f%%, fine-tuned %.2f%% (%d clips): %s", dev,
                     100 * selection[dev]["general"], 100 * selection[dev]["finetuned"], selection[dev]["n_clips"],
                     "fine-tuned model kept" if selection[dev]["kept"] else "the general model answers")
            if not selection[dev]["kept"]:
                continue
        members[dev] = {**ckpt, "stage": "finetune", "extra": {**(ckpt.get("extra") or {}), "device": dev}}

    extra = {"recipe": str(recipe_path), "overrides": list(overrides), "devices": devs,
             "source_checkpoint": str(checkpoint), "config": to_dict(base),
             "selection": selection or None}
    bundle_path = save_bundle(out / BUNDLE_FILE, general, members, extra)
    log.info("wrote %s (%d device models + general)", bundle_path, len(members))

    import torch

    device = base.device if base.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    ev = evaluate_bundle(bundle_path, data_dir, split=base.data.val_split, out_dir=out,
                         cache_dir=base.data.cache_dir, batch_size=base.optim.batch_size, progress=progress,
                         device=device)
    report = {
        "bundle": str(bundle_path),
        "source_checkpoint": str(checkpoint),
        "model_name": base.model.name,
        "recipe": str(recipe_path),
        "overrides": list(overrides),
        "devices": devs,
        "unknown_devices": GENERAL,
        "runs": {d: str(p) for d, p in runs.items()},
        "trained": trained,
        "skipped": skipped,
        "selection": selection or None,
        "split": ev["split"],
        "n_clips": ev["n_clips"],
        "macro": ev["macro"],
        "per_device": ev["per_device"],
        "eval_json": ev["artifacts"]["eval_json"],
    }
    write_json_atomic(out / REPORT_FILE, report)
    return FinetuneResult(bundle_path, runs, report)


def _holdout_choice(general: Path, tuned: Path, ds: Any, cfg: Any, held: list) -> dict[str, Any]:
    """Accuracy of the general and the fine-tuned model on the device's held-out training clips `held`."""
    from edgeasc.checkpoint import load_model
    from edgeasc.data.dataset import load_waveforms
    from edgeasc.evaluate import predict_logits

    fe = cfg.frontend
    waves = load_waveforms(ds.root, held, fe.sample_rate_hz, fe.clip_samples, cfg.data.cache_dir)
    labels = np.array([c.label for c in held])
    acc = {name: float(np.mean(predict_logits(load_model(path)[0], waves, fe).argmax(1) == labels))
           for name, path in (("general", general), ("finetuned", tuned))}
    return {**acc, "n_clips": len(held), "kept": acc["finetuned"] > acc["general"]}


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------
def evaluate_bundle(
    bundle_path: str | os.PathLike,
    data_dir: str | os.PathLike,
    split: str = "test",
    out_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    progress: bool = False,
    device: str = "cpu",
) -> dict[str, Any]:
    """General vs device-specific accuracy per device (the seed's Table 3), routing by each clip's device id.

    Every clip gets the general model's prediction and the bundle's (its device's model, or the general
    one for a device without a model), computed on `device` (torch, e.g. "cuda"). Both are scored with
    `edgeasc.metrics.classification_report`, so the general row equals `edgeasc evaluate` of the general
    checkpoint. Writes `eval_bundle.json` into `out_dir` (default: next to the bundle).

    Returns:
        {"bundle", "split", "n_clips", "members", "per_device": {dev: {"clips", "general", "bundle",
        "diff_pp", "member"}}, "macro": {"general", "bundle", "diff_pp"}, "general": <report>,
        "device_specific": <report>, "artifacts"}; accuracies are macro (class-averaged) fractions.

    Raises:
        CheckpointError: not a readable bundle.
        DataError: the split is missing or empty.
    """
    from edgeasc.data.dataset import load_waveforms
    from edgeasc.evaluate import evaluation_clips, predict_logits
    from edgeasc.metrics import classification_report

    bundle_path = Path(bundle_path)
    bundle = read_bundle(bundle_path)
    fe = bundle.frontend()
    clips = evaluation_clips(data_dir, split)
    waves = load_waveforms(Path(data_dir), clips, fe.sample_rate_hz, fe.clip_samples, cache_dir, progress)
    device_ids = [c.device for c in clips]
    labels = [c.label for c in clips]
    general_logits = predict_logits(bundle.build(GENERAL), waves, fe, batch_size, device, progress)
    routed = general_logits.copy()
    used = [bundle.member_for(d) for d in device_ids]
    for member in dict.fromkeys(m for m in used if m != GENERAL):
        # one member at a time keeps only that device's waveforms in memory; clips routed to the general
        # model reuse its logits instead of running it twice
        idx = np.array([i for i, m in enumerate(used) if m == member])
        routed[idx], _ = routed_logits(bundle, np.asarray(waves[idx]), [device_ids[i] for i in idx], batch_size,
                                       device)
    gen = classification_report(labels, general_logits.argmax(1), device_ids)
    dev = classification_report(labels, routed.argmax(1), device_ids)
    per_device = {
        d: {"clips": gen["per_device"][d]["n"],
            "general": gen["per_device"][d]["macro_accuracy"],
            "bundle": dev["per_device"][d]["macro_accuracy"],
            "diff_pp": 100.0 * (dev["per_device"][d]["macro_accuracy"] - gen["per_device"][d]["macro_accuracy"]),
            "member": bundle.member_for(d)}
        for d in gen["per_device"]
    }
    report: dict[str, Any] = {
        "bundle": str(bundle_path),
        "model_name": bundle.general["model_config"]["name"],
        "split": split,
        "n_clips": len(clips),
        "members": bundle.members(),
        "per_device": per_device,
        "macro": {"general": gen["macro_accuracy"], "bundle": dev["macro_accuracy"],
                  "diff_pp": 100.0 * (dev["macro_accuracy"] - gen["macro_accuracy"])},
        "general": gen,
        "device_specific": dev,
    }
    eval_path = (Path(out_dir) if out_dir else bundle_path.parent) / EVAL_FILE
    report["artifacts"] = {"eval_json": str(eval_path)}
    write_json_atomic(eval_path, report)
    return report


def format_bundle_report(report: dict[str, Any]) -> str:
    """Rows general / device-specific / diff, columns devices + macro (percent), like the seed's Table 3."""
    devs = list(report["per_device"])
    rows = [[""] + devs + ["macro"]]
    for label, key in (("general", "general"), ("device-specific", "bundle")):
        rows.append([label] + [pct(report["per_device"][d][key]) for d in devs] + [pct(report["macro"][key])])
    rows.append(["diff (pp)"] + [_signed(report["per_device"][d]["diff_pp"]) for d in devs]
                + [_signed(report["macro"]["diff_pp"])])
    rows.append(["model"] + [report["per_device"][d]["member"] for d in devs] + [""])
    rows.append(["clips"] + [str(report["per_device"][d]["clips"]) for d in devs] + [str(report["n_clips"])])
    title = (f"{report['model_name']} bundle ({', '.join(report['members'])}) on {report['split']} "
             f"({report['n_clips']} clips), macro accuracy %")
    return "\n".join([title, *text_table(rows)])


def _signed(pp: float) -> str:
    return f"{round(pp, 2) + 0.0:+.2f}"  # + 0.0: a rounding residue of -1e-15 prints as +0.00, not -0.00


def __getattr__(name: str):  # names that moved out of this module in 0.2, for one release
    return moved_attr(__name__, name)
