"""The end-to-end check: generated firmware vs TFLite Micro on real evaluation inputs (outputs and every
intermediate tensor), and the C frontend vs edgeasc.features (`tools/check_firmware.py`, `edgeasc firmware
--check`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeasc.deploy.runtime import tflite_frontend, tflm_outputs
from edgeasc.deploy.tflite_graph import read_graph
from edgeasc.errors import FirmwareError
from edgeasc.firmware.generate import FRONTEND_MIN_INT8_AGREEMENT, generate_firmware
from edgeasc.firmware.toolchain import (
    TARGETS,
    build_firmware,
    dump_layers,
    firmware_size,
    output_dtype,
    random_inputs,
    reference_layers,
    run_host,
    run_host_frontend,
    run_qemu,
    toolchain_missing,
)

FRONTEND_MAX_ABS_ERROR = 1e-3
"""Largest |C log-mel - Python log-mel| accepted (natural-log units; features span about -12 to 9)."""


def export_demo_model(out_dir: str | os.PathLike, data_dir: str | os.PathLike, model_name: str = "sscp_mobile_s1",
                      seed: int = 0, cache_dir: str | os.PathLike | None = None, calib_clips: int = 60,
                      eval_clips: int = 50) -> Path:
    """A seeded, untrained student with randomized BatchNorm statistics, exported to int8 with calibration on
    `data_dir` (for firmware and benchmark checks without a trained model). Returns
    `out_dir/export/model_int8.tflite` (`model_float32.tflite` lies beside it)."""
    import torch

    from edgeasc.checkpoint import save_checkpoint
    from edgeasc.config import TrainConfig, to_dict
    from edgeasc.deploy.export import export_checkpoint
    from edgeasc.models import create_model
    from edgeasc.models.layers import randomize_batchnorm

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    model = randomize_batchnorm(create_model(model_name), seed)
    ckpt = save_checkpoint(out_dir / "model.pt", model, stage="firmware-demo", config=to_dict(TrainConfig()))
    result = export_checkpoint(ckpt, data_dir, out_dir / "export", calib_clips=calib_clips, eval_clips=eval_clips,
                               cache_dir=cache_dir)
    return Path(result.artifacts["tflite_int8"])


def evaluation_inputs(tflite_path: str | os.PathLike, data_dir: str | os.PathLike, n_clips: int, split: str = "test",
                      cache_dir: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Waveforms `(N, samples)`, Python log-mel `(N, n_mels, frames)` and the quantised model inputs
    `(N, n_mels * frames)` of the first `n_clips` clips of `split`."""
    from edgeasc.data.dataset import TAUDataset, load_waveforms
    from edgeasc.deploy.runtime import TFLiteModel, feature_batches

    frontend = tflite_frontend(tflite_path)[0]
    wanted = model_input_size(tflite_path)
    if frontend.n_mels * frontend.n_frames != wanted:
        raise FirmwareError(
            f"{Path(tflite_path).name} takes {wanted:,} input values, but the log-mel of {data_dir} "
            f"({frontend.n_mels} mels x {frontend.n_frames} frames, the frontend of the model's metadata or the DCASE "
            f"default) has {frontend.n_mels * frontend.n_frames:,}; check it without a dataset (seeded random inputs)")
    ds = TAUDataset(data_dir)
    clips = ds.clips(split)[:n_clips]
    if not clips:
        raise FirmwareError(f"split {split!r} of {data_dir} has no clips")
    waves = np.asarray(load_waveforms(ds.root, clips, frontend.sample_rate_hz, frontend.clip_samples, cache_dir,
                                      False), dtype=np.float32)
    feats = np.concatenate([x for _, x in feature_batches(waves, frontend, 64)])[:, 0]
    q = TFLiteModel(tflite_path).prepare(feats[:, None]).reshape(len(feats), -1)  # normalised and quantised
    return {"waves": waves, "features": feats, "inputs": q}


def model_input_size(tflite_path: str | os.PathLike) -> int:
    """The number of values of the model's (first) input tensor."""
    graph = read_graph(tflite_path)
    return int(graph.tensors[graph.inputs[0]].elements)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-identical arrays of one dtype (float32 compared by bit pattern: -0.0 is not 0.0, NaN equals itself)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def check_firmware(
    tflite_path: str | os.PathLike,
    data_dir: str | os.PathLike | None,
    work_dir: str | os.PathLike,
    n_inputs: int = 200,
    targets: tuple[str, ...] = ("cortex-m4",),
    n_layer_checks: int = 4,
    n_emulated: int = 2,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    weights: str = "int16",
) -> dict[str, Any]:
    """Generate and build the firmware, then check it: host outputs against TFLite Micro on `n_inputs` real
    feature inputs of the evaluation split, every intermediate tensor against TFLite Micro (all tensors preserved) on
    `n_layer_checks` of them, the C frontend against edgeasc.features, and each emulated target's logits
    against the host's. Targets whose toolchain is missing are reported as skipped. `weights`: the generator's
    convolution weight storage (`generate_firmware`). Without `data_dir` the
    inputs are `n_inputs` seeded random int8 tensors (`random_inputs`) and the frontend check is skipped.

    Returns:
        A report; `passed` is True when every check that ran passed.
    """
    work = Path(work_dir)
    if data_dir is None:
        x = random_inputs(tflite_path, n_inputs, seed)
        kind = "float32" if x.dtype == np.float32 else "int8"
        data, inputs = None, f"{n_inputs} seeded random {kind} inputs (seed {seed}; no dataset given)"
    else:
        data = evaluation_inputs(tflite_path, data_dir, n_inputs, cache_dir=cache_dir)
        x = data["inputs"]
        inputs = f"{len(x)} real log-mel inputs of the test split of {data_dir}"
    gen = generate_firmware(tflite_path, work / "model", weights)
    host = build_firmware("host", work / "model", work / "build")
    graph = read_graph(tflite_path)
    out_size = graph.tensors[graph.outputs[0]].elements
    out_dtype = output_dtype(tflite_path)
    ours = run_host(host, x, out_size, out_dtype)
    ref = tflm_outputs(tflite_path, x)
    same = np.array([same_bits(a, b) for a, b in zip(ours, ref)])
    layer_bad = []
    for i in range(min(n_layer_checks, len(x))):
        mine, theirs = dump_layers(host, work / "model", x[i]), reference_layers(tflite_path, x[i])
        layer_bad += [(i, t) for t, v in mine.items() if not same_bits(v, theirs[t])]
    report: dict[str, Any] = {
        "model": str(tflite_path), "inputs": inputs, "weights": weights, "arena_bytes": gen.arena_bytes, "constant_bytes": gen.weight_bytes,
        "layers": len(gen.layers), "macs": gen.macs,
        "host": {"n_inputs": int(len(x)), "bit_identical": int(same.sum()),
                 "distinct_outputs": int(len({tuple(r) for r in ref})),
                 "layer_checks": min(n_layer_checks, len(x)), "layer_mismatches": layer_bad,
                 "passed": bool(same.all()) and not layer_bad},
        "frontend": _frontend_check(host, tflite_path, data, x) if data is not None else
        {"skipped": "no dataset: the C frontend needs real audio", "passed": True},
        "targets": {},
    }
    for target in targets:
        reason = toolchain_missing(target)
        if reason:
            report["targets"][target] = {"skipped": reason}
            continue
        elf = build_firmware(target, work / "model", work / "build")
        run = run_qemu(target, elf, x[:n_emulated], output_dtype=out_dtype)
        instr = int(run["instructions"][0])
        report["targets"][target] = {
            "machine": TARGETS[target]["machine"], "n_inputs": n_emulated,
            "identical_to_host": same_bits(run["logits"], ours[:n_emulated]),
            "instructions_per_inference": instr, "instructions_per_mac": instr / gen.macs if gen.macs else None,
            "instructions_per_tick": run["instructions_per_tick"], **firmware_size(elf),
            "layers": run["layer_instructions"],
        }
        report["targets"][target]["passed"] = report["targets"][target]["identical_to_host"]
    report["passed"] = report["host"]["passed"] and report["frontend"]["passed"] and all(
        t.get("passed", True) for t in report["targets"].values())
    return report


def _frontend_check(host: Path, tflite_path: str | os.PathLike, data: dict[str, np.ndarray],
                    x: np.ndarray) -> dict[str, Any]:
    """The C frontend on the clips' waveforms against edgeasc.features, and its int8 inputs against `x`."""
    frontend = tflite_frontend(tflite_path)[0]
    mel, q = run_host_frontend(host, data["waves"], frontend.n_mels, data["features"].shape[-1])
    err = np.abs(mel - data["features"])
    agree = float((q == x).mean())
    return {"n_clips": int(len(x)), "max_abs_error": float(err.max()), "mean_abs_error": float(err.mean()),
            "int8_agreement": agree, "max_int8_difference": int(np.abs(q.astype(int) - x).max()),
            "tolerance": FRONTEND_MAX_ABS_ERROR, "min_int8_agreement": FRONTEND_MIN_INT8_AGREEMENT,
            "passed": bool(err.max() <= FRONTEND_MAX_ABS_ERROR and agree >= FRONTEND_MIN_INT8_AGREEMENT)}


def format_check(report: dict[str, Any]) -> str:
    """The check report as aligned lines for people."""
    h, f = report["host"], report["frontend"]
    lines = [f"model        {report['model']}",
             f"inputs       {report['inputs']}",
             f"firmware     {report['layers']} layers, {report['macs']:,} MACs, arena {report['arena_bytes']:,} bytes, "
             f"constants {report['constant_bytes']:,} bytes ({report.get('weights', 'int16')} convolution weights)",
             f"host         {h['bit_identical']}/{h['n_inputs']} outputs bit-identical to TFLite Micro "
             f"({h['distinct_outputs']} distinct); {len(h['layer_mismatches'])} intermediate tensors differ over "
             f"{h['layer_checks']} inputs",
             f"frontend     skipped: {f['skipped']}" if "skipped" in f else
             f"frontend     max |log-mel error| {f['max_abs_error']:.2e} (tolerance {f['tolerance']:.0e}), int8 input "
             f"agreement {100 * f['int8_agreement']:.4f}% (>= {100 * f['min_int8_agreement']:.0f}%)"]
    for name, t in report["targets"].items():
        if "skipped" in t:
            lines.append(f"{name:<12} skipped: {t['skipped']}")
            continue
        lines.append(f"{name:<12} {t['machine']}: logits {'identical to' if t['identical_to_host'] else 'DIFFER from'} "
                     f"host on {t['n_inputs']} inputs; {t['instructions_per_inference']:,} instructions/inference, "
                     f"{t['instructions_per_mac']:.2f}/MAC; flash {t['flash_bytes']:,} B, RAM {t['ram_bytes']:,} B")
    lines.append("PASSED" if report["passed"] else "FAILED")
    return "\n".join(lines)
