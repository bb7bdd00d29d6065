"""Parity of an export: every deployed format's accuracy and agreement with the torch model on the same clips,
the per-format targets, and the report's text form.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeasc.deploy.calibration import select_calibration_clips
from edgeasc.deploy.onnx import INPUT_NAME, OUTPUT_NAME
from edgeasc.features import InputNormalization

PARITY_TARGETS: dict[str, dict[str, float]] = {
    "onnxruntime": {"min_agreement": 0.999},
    "tflite_float32": {"min_agreement": 0.999},
    "tflite_int8": {"min_agreement": 0.99, "max_accuracy_drop_pp": 1.0},
}
"""Top-1 agreement with torch (fraction of clips) and macro-accuracy drop (percentage points). A float
target missed means a broken conversion and fails the export; the int8 targets are stated for a trained
model (an untrained one has near-tied logits) and are reported, with a warning when missed."""

RUNTIMES: tuple[str, ...] = ("torch", "onnxruntime", "tflite_float32", "tflite_int8")


def parity_summary(
    logits: dict[str, np.ndarray], y_true: np.ndarray, devices: list[str]
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Per runtime: macro and per-device accuracy, agreement with torch, max logit error; then the checks
    against `PARITY_TARGETS`.

    Args:
        logits: runtime -> `(N, n_classes)`; must contain "torch".
        y_true: labels `(N,)`.
        devices: device id per clip.
    """
    from edgeasc.metrics import classification_report

    ref = logits["torch"]
    ref_pred = ref.argmax(1)
    top2 = np.sort(ref.astype(np.float64), axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0] if ref.shape[1] > 1 else np.full(len(ref), np.inf)  # torch's top-2 margin
    results: dict[str, dict[str, Any]] = {}
    for name, lg in logits.items():
        rep = classification_report(y_true, lg.argmax(1), devices)
        err = np.abs(lg.astype(np.float64) - ref.astype(np.float64))
        differs = lg.argmax(1) != ref_pred
        max_err = float(err.max()) if err.size else 0.0
        results[name] = {
            "macro_accuracy": rep["macro_accuracy"],
            "accuracy": rep["accuracy"],
            "per_device": {d: v["macro_accuracy"] for d, v in rep["per_device"].items()},
            "agreement": float(np.mean(~differs)) if len(ref) else float("nan"),
            "disagreements": int(np.sum(differs)),
            "max_abs_logit_error": max_err,
            "mean_abs_logit_error": float(err.mean()) if err.size else 0.0,
            # why clips disagree: a logit error of at most e moves a top-2 margin by at most 2e, so only
            # clips whose torch margin is below 2 x max error can flip; the misses are among those
            "disagreement_max_margin": float(margin[differs].max()) if differs.any() else 0.0,
            "flippable_fraction": float(np.mean(margin <= 2 * max_err)) if len(ref) else 0.0,
            "accuracy_drop_pp": 100.0 * (results["torch"]["macro_accuracy"] - rep["macro_accuracy"])
            if name != "torch" else 0.0,
        }
    checks = []
    for name, targets in PARITY_TARGETS.items():
        if name not in results:
            continue
        r = results[name]
        if "min_agreement" in targets:
            checks.append({"runtime": name, "metric": "agreement", "value": r["agreement"],
                           "target": f">= {targets['min_agreement']}",
                           "passed": bool(r["agreement"] >= targets["min_agreement"])})
        if "max_accuracy_drop_pp" in targets:
            checks.append({"runtime": name, "metric": "accuracy_drop_pp", "value": r["accuracy_drop_pp"],
                           "target": f"<= {targets['max_accuracy_drop_pp']}",
                           "passed": bool(r["accuracy_drop_pp"] <= targets["max_accuracy_drop_pp"])})
    return results, checks


def format_export_report(report: dict[str, Any]) -> str:
    """The parity table (percent), one row per runtime, then the checks that failed."""
    results = report["results"]
    devices = list(next(iter(results.values()))["per_device"]) if results else []
    head = ["runtime", "macro"] + devices + ["agree %", "max |dlogit|"]
    rows = [head]
    for name, r in results.items():
        rows.append([name, f"{100 * r['macro_accuracy']:.2f}"] + [f"{100 * r['per_device'][d]:.2f}" for d in devices]
                    + ([f"{100 * r['agreement']:.2f}", f"{r['max_abs_logit_error']:.2e}"] if name != "torch"
                       else ["-", "-"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [f"{report['model_name']}: parity on {report['eval']['split']} ({report['eval']['n_clips']} clips), "
             "macro accuracy %"]
    lines += ["  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths))) for row in rows]
    for c in report["checks"]:
        if not c["passed"]:
            lines.append(f"target missed: {c['runtime']} {c['metric']} {c['value']:.4f} (target {c['target']})")
            r = results[c["runtime"]]
            if c["metric"] == "agreement" and "flippable_fraction" in r:
                lines.append(f"  its {r['disagreements']} disagreements have a torch top-2 margin <= "
                             f"{r['disagreement_max_margin']:.3f}; {100 * r['flippable_fraction']:.1f}% of clips are "
                             f"within 2 x max |dlogit| ({2 * r['max_abs_logit_error']:.3f}) of a tie")
    return "\n".join(lines)


def _eval_subset(clips: list[Any], n: int | None, seed: int) -> list[Any]:
    if n is None or n >= len(clips):
        return clips
    return select_calibration_clips(clips, n, seed + 1)


def measure_parity(
    model: Any,
    artifacts: dict[str, Path],
    ds: Any,
    split: str,
    frontend: Any,
    eval_clips: int | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    workers: int | None = None,
    input_norm: InputNormalization | None = None,
) -> dict[str, Any]:
    """Logits of torch and of every exported artifact on `split`; see `parity_summary`.

    Torch runs the checkpoint on the raw log-mel; ONNX Runtime gets `input_norm.apply(x)` when the graph was
    exported normalised; the TFLite files apply their own metadata (`TFLiteModel.prepare`)."""
    import onnxruntime as ort
    import torch

    from edgeasc.data.dataset import load_waveforms
    from edgeasc.deploy.runtime import TFLiteModel, feature_batches
    from edgeasc.errors import DataError

    all_clips = ds.clips(split)
    clips = _eval_subset(all_clips, eval_clips, seed)
    if not clips:
        raise DataError(f"split {split!r} is empty; nothing to measure parity on")
    waves = load_waveforms(ds.root, clips, frontend.sample_rate_hz, frontend.clip_samples, cache_dir, progress)
    sess = ort.InferenceSession(str(artifacts["onnx"]), providers=["CPUExecutionProvider"])
    tfl = {k: TFLiteModel(artifacts[k]) for k in ("tflite_float32", "tflite_int8") if k in artifacts}
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("torch", "onnxruntime", *tfl)}
    timing = dict.fromkeys(parts, 0.0)
    model = model.eval()
    for _, x in feature_batches(waves, frontend, 64, progress, "parity"):
        t = time.perf_counter()
        with torch.no_grad():
            parts["torch"].append(model(torch.from_numpy(x)).numpy())
        timing["torch"] += time.perf_counter() - t
        t = time.perf_counter()
        xo = input_norm.apply(x) if input_norm is not None else x
        parts["onnxruntime"].append(np.concatenate([sess.run([OUTPUT_NAME], {INPUT_NAME: xi[None]})[0] for xi in xo]))
        timing["onnxruntime"] += time.perf_counter() - t
        for k, m in tfl.items():
            t = time.perf_counter()
            parts[k].append(m.predict(x, workers))
            timing[k] += time.perf_counter() - t
    logits = {k: np.concatenate(v).astype(np.float32) for k, v in parts.items()}
    results, checks = parity_summary(logits, np.array([c.label for c in clips]), [c.device for c in clips])
    for k in results:
        results[k]["seconds"] = round(timing[k], 2)
    backend = next(iter(tfl.values())).backend if tfl else None
    return {
        "eval": {"split": split, "n_clips": len(clips), "subset": len(clips) < len(all_clips),
                 "tflite_backend": backend, "tflite_kernels": "reference (BUILTIN_REF)"},
        "targets": PARITY_TARGETS,
        "results": results,
        "checks": checks,
        "targets_met": all(c["passed"] for c in checks),
    }
