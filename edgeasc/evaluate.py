"""Evaluation of a trained model on a TAU22-layout split: macro accuracy, per device, per class.

One metrics module (`edgeasc.metrics`) serves both this command and training-time validation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeasc.artifacts import require_writable, write_json_atomic
from edgeasc.checkpoint import frontend_of
from edgeasc.config import FrontendConfig
from edgeasc.data.dataset import TAUDataset, load_waveforms
from edgeasc.errors import ConfigError, DataError
from edgeasc.features import LogMel
from edgeasc.labels import SCENES
from edgeasc.metrics import classification_report, require_finite_logits
from edgeasc.plots import write_evaluation_plots

PRECISIONS = ("fp32", "fp16")


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    waves: np.ndarray,
    frontend: FrontendConfig,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = False,
    rows: np.ndarray | None = None,
    bar: Any = None,
    precision: str = "fp32",
) -> np.ndarray:
    """Logits (N, n_classes) of `model` on waveforms (N, samples) through the log-mel frontend.

    Waveform-input models (`model.input_kind == "waveform"`, e.g. PaSST) get the waveforms and compute
    their own frontend.

    Args:
        rows: only these rows of `waves`, read batch by batch (a memmap is never loaded whole).
        bar: an open progress bar to advance by the clips done (instead of `progress`'s own bar).
        precision: "fp32", or "fp16": a half-precision copy of the model on the log-mel computed in float32
            and then rounded to half, as the official baseline's test step does (`model.half()`, `x.half()`);
            the precision its parameter budget assumes (2 bytes per parameter).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    wave_input = getattr(model, "input_kind", "logmel") == "waveform"
    if precision == "fp16" and wave_input:
        raise ConfigError("fp16 evaluation is for log-mel models (the official baseline's test); "
                          f"{type(model).__name__} computes its own frontend from the waveform")
    model = model.eval().to(device)
    if precision == "fp16":
        import copy

        model = copy.deepcopy(model).half()
    mel = LogMel(frontend).to(device)
    n = len(waves) if rows is None else len(rows)
    out = []
    from edgeasc.progress import progress_bar

    starts = progress_bar(range(0, n, batch_size), progress and bar is None, desc="evaluating", unit="batch")
    for s in starts:
        chunk = waves[s : s + batch_size] if rows is None else waves[rows[s : s + batch_size]]
        x = torch.from_numpy(np.array(chunk, dtype=np.float32)).to(device)
        if not wave_input:  # NHWC input: channels-last convolutions, 1.2-1.4x faster on a CPU (benchmarks/)
            x = mel(x).contiguous(memory_format=torch.channels_last)
        if precision == "fp16":
            x = x.half()
        out.append(model(x).float().cpu().numpy())
        if bar is not None:
            bar.update(len(x))
    return require_finite_logits(np.concatenate(out)) if out else np.zeros((0, len(SCENES)), dtype=np.float32)


def evaluate_checkpoint(
    model_path: str | os.PathLike,
    data_dir: str | os.PathLike,
    split: str = "test",
    out_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = False,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Evaluate an edgeasc checkpoint; writes `eval.json` and the plots of `edgeasc.plots.EVALUATION_PLOTS`
    (`confusion.png`, `confusion_counts.png`, `per_device.png`) into `out_dir`.

    Args:
        precision: "fp32" or "fp16" (see `predict_logits`).

    Returns:
        The report of `edgeasc.metrics.classification_report` plus "model", "split", "precision" and
        "artifacts".
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    from edgeasc.checkpoint import load_model

    model_path = Path(model_path)
    model, ckpt = load_model(model_path)
    frontend = frontend_of(ckpt)
    clips = evaluation_clips(data_dir, split)
    out = require_writable(Path(out_dir) if out_dir else model_path.parent, "evaluation report (--out)")
    waves = load_waveforms(Path(data_dir), clips, frontend.sample_rate_hz, frontend.clip_samples, cache_dir, progress)
    logits = predict_logits(model, waves, frontend, batch_size, device, progress, precision=precision)
    header = {"model": str(model_path), "model_name": ckpt["model_config"]["name"], "split": split,
              "precision": precision}
    return write_evaluation(header, clips, logits, out)


def evaluation_clips(data_dir: str | os.PathLike, split: str) -> list[Any]:
    """The clips of `split` that every evaluation scores (checkpoint, .tflite, bundle, pipeline).

    Raises:
        DataError: the dataset is not in the TAU22 layout, or the split is missing or empty.
    """
    clips = TAUDataset(data_dir).clips(split)
    if not clips:
        raise DataError(f"split {split!r} of {data_dir} is empty")
    return clips


def write_evaluation(header: dict[str, Any], clips: list[Any], logits: np.ndarray, out: Path,
                     prefix: str = "") -> dict[str, Any]:
    """Score `logits` of `clips` (`edgeasc.metrics.classification_report`), write `{prefix}eval.json` and the plots
    of `edgeasc.plots.EVALUATION_PLOTS` into `out`, and return the report: `header`, the scores, "artifacts"."""
    report = classification_report([c.label for c in clips], logits.argmax(1), [c.device for c in clips])
    report = {**header, **report}
    eval_path = out / f"{prefix}eval.json"
    report["artifacts"] = {"eval_json": str(eval_path), **write_evaluation_plots(report, out, prefix=prefix)}
    write_json_atomic(eval_path, report)
    return report
