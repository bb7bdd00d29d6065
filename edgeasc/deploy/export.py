"""Export an edgeasc checkpoint for deployment: PyTorch -> ONNX -> TFLite float32 and full-integer int8.

Pipeline (docs/export.md):
1. BatchNorm is folded into the preceding convolution, and the network is exported to ONNX (opset 17,
   batch 1, fixed input `(1, 1, n_mels, frames)` = `(1, 1, 256, 65)` for the DCASE frontend).
2. onnx2tf converts the ONNX file to TFLite in a child process (`edgeasc.deploy._convert_tflite`), so TensorFlow
   never loads on the training side and a converter crash becomes a clear error. The int8 model is
   calibrated on real log-mel features of a fixed, seeded, class-balanced subset of the training split
   (never random noise); its clip ids are written next to the model.
3. Every artifact is loaded and run on the evaluation split: macro and per-device accuracy of torch float,
   ONNX Runtime, TFLite float32 and TFLite int8 (LiteRT reference kernels), top-1 agreement with torch and
   the largest logit error, against the targets in `PARITY_TARGETS`.

Deployment metadata (labels, frontend parameters, input/output quantisation, model name) travels in the
ONNX `metadata_props`, embedded in each .tflite (metadata entry `edgeasc`) and in a sidecar JSON named like
the model (`model_int8.json`).

The steps live in their own modules: `edgeasc.deploy.onnx` (1), `edgeasc.deploy.calibration` and
`edgeasc.deploy.convert` (2), `edgeasc.deploy.parity` (3). This module is their orchestration (stage folder,
conversions side by side, int8 rewrites, int16 layers, publishing), kept as one sequence of steps a reader
follows top to bottom; that is why it is near 700 lines.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeasc._moved import moved_attr
from edgeasc.artifacts import write_bytes_atomic, write_json_atomic, write_text_atomic
from edgeasc.config import CALIB_CLIPS
from edgeasc.deploy.calibration import calibration_features, select_calibration_clips
from edgeasc.deploy.convert import (
    check_deployable,
    convert_onnx_to_tflite,
    embed_tflite_metadata,
    rewrite_biases,
    rewrite_int8_weights,
)
from edgeasc.deploy.onnx import INPUT_NAME, OUTPUT_NAME, export_onnx, exported_network
from edgeasc.deploy.parity import _eval_subset, measure_parity
from edgeasc.deploy.runtime import sidecar_path
from edgeasc.errors import ExportError, MissingDependencyError
from edgeasc.features import InputNormalization

log = logging.getLogger(__name__)

METADATA_SCHEMA = "edgeasc-model-metadata/1"


@dataclass(frozen=True)
class ExportFormat:
    """One row of the export table (after the Ultralytics exporter's format table).

    Attributes:
        key: identifier used in reports (`onnx`, `tflite_float32`, `tflite_int8`).
        description: what the artifact is.
        filename: the artifact's name in the output folder.
        modules: Python modules it needs (import names).
        options: export options that affect it.
    """

    key: str
    description: str
    filename: str
    modules: tuple[str, ...]
    options: tuple[str, ...] = ()


EXPORT_FORMATS: tuple[ExportFormat, ...] = (
    ExportFormat("onnx", "ONNX, opset 17, float32, BatchNorm folded", "model.onnx", ("onnx", "onnxruntime")),
    ExportFormat("tflite_float32", "TFLite float32 (NHWC input)", "model_float32.tflite",
                 ("onnx2tf", "tensorflow", "tf_keras", "onnx_graphsurgeon", "sng4onnx", "psutil")),
    ExportFormat("tflite_int8", "TFLite full-integer int8: per-channel int8 weights, int8 activations and I/O",
                 "model_int8.tflite", ("onnx2tf", "tensorflow", "tf_keras", "onnx_graphsurgeon", "sng4onnx",
                                       "psutil"), ("calib_clips", "calib_split", "seed")),
)
"""Formats `export_checkpoint` writes; `tflite_int8` only with `int8=True`."""


WEIGHT_ROUNDINGS: tuple[str, ...] = ("adaptive", "nearest")
"""How the int8 weights are rounded: against the calibration inputs (`edgeasc.train.qat.round_weights`), or to
the nearest step as the TFLite converter does."""

CALIBRATION_IDS_FILE = "calibration_clips.txt"
REPORT_FILE = "export_report.json"
LOG_FILE = "convert.log"
INT16_LOG_FILE = "convert_int16.log"
FAILED_LOG_FILE = "convert_failed.log"  # in the output folder: the log of a conversion that failed
STAGING_PREFIX = ".export_"  # an export in progress: OUT/.export_XXXX/, moved into OUT when complete
SIGNATURE_FLOAT = "float_signature.tflite"  # in the work folder: what ai-edge-quantizer quantises
INT16_TARGET = 0.995
"""`--int16-layers auto` adds int16 layers until the simulated agreement on held-out training clips reaches this
(and the logit error is down by `edgeasc.deploy.sensitivity.AUTO_INT16_SHARE`)."""


@dataclass
class ExportResult:
    """What `export_checkpoint` wrote.

    Attributes:
        out_dir: the output folder.
        artifacts: format key (and `report`, `calibration_ids`, `log`, sidecars) -> path.
        report: the parity report (also in `export_report.json`).
    """

    out_dir: Path
    artifacts: dict[str, Path] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


def check_dependencies(int8: bool = True, tflite: bool = True) -> None:
    """Fail early, with the install line, when an export dependency is missing (nothing heavy is imported).

    Raises:
        MissingDependencyError: a module of the selected formats is not installed.
    """
    keys = {"onnx"} | ({"tflite_float32"} if tflite else set()) | ({"tflite_int8"} if int8 else set())
    needed = [m for f in EXPORT_FORMATS if f.key in keys for m in f.modules]
    if tflite:
        needed.append("ai_edge_litert" if importlib.util.find_spec("ai_edge_litert") else "tensorflow")
    missing = sorted({m for m in needed if importlib.util.find_spec(m) is None})
    if missing:
        raise MissingDependencyError(
            f"export needs {', '.join(missing)}, which are not installed; install the export extra "
            "(pip install -e '.[export]')"
        )


def export_checkpoint(
    checkpoint: str | os.PathLike,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    int8: bool = True,
    calib_clips: int = CALIB_CLIPS,
    calib_split: str | None = None,
    eval_split: str = "test",
    eval_clips: int | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    workers: int | None = None,
    input_norm: bool = True,
    sensitivity_clips: int | None = None,
    weight_rounding: str = "adaptive",
    bias_correction: bool = True,
    int16_layers: str | tuple[str, ...] | None = None,
    int16_target: float = INT16_TARGET,
) -> ExportResult:
    """Export a checkpoint to ONNX and TFLite (float32, and int8 with `int8=True`), and measure parity.

    Args:
        checkpoint: an edgeasc checkpoint (`model.pt`).
        data_dir: TAU22-layout dataset: calibration features come from `calib_split`, parity from `eval_split`.
        out_dir: output folder (default: `export/` beside the checkpoint).
        int8: also write the full-integer int8 TFLite.
        calib_clips: calibration clips (class-balanced, seeded); fewer when the split is smaller.
        calib_split: training split to calibrate on (default: the checkpoint's training split, else split25).
        eval_split: split for the parity report (default: the DCASE evaluation fold).
        eval_clips: evaluate a seeded class-balanced subset of this size (default: the whole split).
        seed: seed of the calibration (and evaluation subset) choice.
        cache_dir: waveform cache (default: the dataset's).
        progress: progress bars.
        workers: interpreter threads for the TFLite evaluation (default: up to 4).
        input_norm: with `int8`, export the graph on the normalised log-mel (`InputNormalization` of the
            calibration features, folded into the first convolutions; all three artifacts take it). False:
            the raw log-mel, as before (worse int8 on real recordings: docs/export.md).
        sensitivity_clips: with `int8`, also measure the int8 sensitivity table (`edgeasc.deploy.sensitivity`: one
            tensor quantised at a time, in a torch simulation) on this many clips of `eval_split`; written to
            the report's `sensitivity`.
        weight_rounding: with `int8`, `adaptive` (default) rounds each convolution's int8 weights to cancel
            their error on the calibration inputs (`edgeasc.train.qat.round_weights`); `nearest` keeps the
            converter's rounding.
        bias_correction: with `int8`, move each convolution's int32 bias by minus the mean error of its
            output over the calibration clips, everything quantised (`Int8Simulator.correct_biases`).
        int16_layers: with `int8`, keep these activations (`QuantPoint` names of the sensitivity table) at
            int16 with int8 weights (TFLite's 16x8 scheme, through ai-edge-quantizer), or `"auto"`: the
            costliest ones (by logit error) until, simulated on held-out training clips, they remove 90% of
            the logit error int16 activations can remove and agreement reaches `int16_target`
            (`edgeasc.deploy.sensitivity.choose_int16_layers`).

    Returns:
        The artifacts and the parity report.

    Raises:
        ExportError: conversion failed or a float runtime misses its agreement target.
        MissingDependencyError, CheckpointError, DataError: bad input (exit code 2).
    """
    return export_checkpoints([(checkpoint, out_dir)], data_dir, int8=int8, calib_clips=calib_clips,
                              calib_split=calib_split, eval_split=eval_split, eval_clips=eval_clips, seed=seed,
                              cache_dir=cache_dir, progress=progress, workers=workers, input_norm=input_norm,
                              sensitivity_clips=sensitivity_clips, weight_rounding=weight_rounding,
                              bias_correction=bias_correction, int16_layers=int16_layers,
                              int16_target=int16_target)[0]


@dataclass
class _Prepared:
    """One model of an export batch between its ONNX/calibration step and its TFLite conversion."""

    checkpoint: Path
    out: Path  # the staging folder inside `dest`, where every artifact is written first
    work: Path  # scratch inside `out`
    model: Any
    name: str
    frontend: Any
    base_meta: dict[str, Any]
    calib_npy: Path | None
    calib_info: dict[str, Any] | None
    result: ExportResult
    norm: Any  # InputNormalization | None
    calib_features: np.ndarray | None  # in the exported graph's input domain
    weight_rounding: str = "adaptive"
    rounding_info: dict[str, Any] | None = None
    bias_correction: bool = True
    bias_info: dict[str, Any] | None = None
    int16: dict[str, Any] | None = None  # the plan carried out (report and metadata)
    input_cov: dict[str, Any] = field(default_factory=dict)  # conv path -> E[patch patch^T] on the calibration clips
    dest: Path | None = None  # the output folder the artifacts move into when the export is complete
    _sim: Any = None

    def simulator(self) -> Any:
        """The int8 simulation of the exported network on the calibration features (built once, with
        nearest-rounded weights; `_rewrite_int8` puts the file's own weights and biases into it)."""
        if self._sim is None:
            import torch

            from edgeasc.deploy.sensitivity import Int8Simulator

            sim = Int8Simulator(exported_network(self.model, self.norm), torch.from_numpy(self.calib_features))
            if self.weight_rounding == "adaptive":
                self.input_cov = sim.input_covariances(torch.from_numpy(self.calib_features))
            self._sim = sim
        return self._sim


def export_checkpoints(
    items: list[tuple[str | os.PathLike, str | os.PathLike | None]],
    data_dir: str | os.PathLike,
    int8: bool = True,
    calib_clips: int = CALIB_CLIPS,
    calib_split: str | None = None,
    eval_split: str = "test",
    eval_clips: int | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    workers: int | None = None,
    input_norm: bool = True,
    sensitivity_clips: int | None = None,
    weight_rounding: str = "adaptive",
    bias_correction: bool = True,
    int16_layers: str | tuple[str, ...] | None = None,
    int16_target: float = INT16_TARGET,
) -> list[ExportResult]:
    """`export_checkpoint` for several `(checkpoint, out_dir)` pairs, converted side by side.

    The TFLite conversions (about 30 s of one core each for an SSCP-Mobile) run in parallel child processes
    (`convert_onnx_to_tflite`); a bundle of seven device models is converted in about half the time on two
    cores. Every model still gets its own folder, converter log, report and parity check; a float runtime
    that misses its target raises after every model's artifacts and report are written.
    """
    import contextlib

    from edgeasc.errors import ConfigError

    if calib_clips < 1:
        raise ConfigError(f"--calib-clips must be >= 1, got {calib_clips}")
    if eval_clips is not None and eval_clips < 1:
        raise ConfigError(f"--eval-clips must be >= 1, got {eval_clips}")
    if int16_layers is not None and not int8:
        raise ConfigError("--int16-layers needs --int8")
    if isinstance(int16_layers, str) and int16_layers != "auto":
        int16_layers = tuple(n.strip() for n in int16_layers.split(",") if n.strip())
    if int16_layers is not None and not int16_layers:
        raise ConfigError("--int16-layers needs 'auto' or a comma-separated list of layer names")
    if not 0 < int16_target <= 1:
        raise ConfigError(f"the int16 agreement target must be in (0, 1], got {int16_target}")
    if weight_rounding not in WEIGHT_ROUNDINGS:
        raise ConfigError(f"weight rounding {weight_rounding!r} is not one of {', '.join(WEIGHT_ROUNDINGS)}")
    if sensitivity_clips is not None and sensitivity_clips < 1:
        raise ConfigError(f"--sensitivity-clips must be >= 1, got {sensitivity_clips}")
    check_dependencies(int8=int8)
    from edgeasc.data.dataset import TAUDataset

    ds = TAUDataset(data_dir)
    with contextlib.ExitStack() as stack:
        prepared = []
        for checkpoint, out_dir in items:
            prep = _prepare_export(Path(checkpoint), out_dir, ds, int8, calib_clips, calib_split, seed, cache_dir,
                                   progress, input_norm)
            prep.weight_rounding = weight_rounding
            prep.bias_correction = bias_correction
            stack.callback(shutil.rmtree, prep.out, ignore_errors=True)
            prepared.append(prep)
        log.info("converting %d model(s) to TFLite with onnx2tf in child processes", len(prepared))
        convert_onnx_to_tflite(
            [{"onnx": str(p.result.artifacts["onnx"]), "out_dir": str(p.work / "tf"), "input_name": INPUT_NAME,
              "calibration_npy": str(p.calib_npy) if p.calib_npy else None, "log": str(p.out / LOG_FILE),
              "failed_log": str(p.dest / FAILED_LOG_FILE),
              "signature_float": str(p.work / SIGNATURE_FLOAT) if int16_layers else None}
             for p in prepared],
            progress=progress,
        )
        if int16_layers and int8:
            _convert_int16(prepared, ds, int16_layers, int16_target, seed, cache_dir, progress)
        for p in prepared:
            _finish_tflite(p, int8)
        failures = []
        for p in prepared:
            failures += _finish_report(p, ds, eval_split, eval_clips, seed, cache_dir, progress, workers,
                                       sensitivity_clips)
        for p in prepared:
            publish_export(p.out, p.dest, p.result)
    if failures:
        c, out = failures[0]
        raise ExportError(f"{c['runtime']} agrees with torch on {100 * c['value']:.2f}% of clips (target "
                          f"{c['target']}): the conversion is wrong; artifacts and {REPORT_FILE} are in {out}")
    return [p.result for p in prepared]


def _prepare_export(checkpoint: Path, out_dir: str | os.PathLike | None, ds: Any, int8: bool, calib_clips: int,
                    calib_split: str | None, seed: int, cache_dir: Any, progress: bool,
                    input_norm: bool) -> _Prepared:
    """Load, check, write the calibration features and the ONNX file of one model."""
    import torch

    from edgeasc import __version__
    from edgeasc.checkpoint import frontend_of, load_model
    from edgeasc.config import to_dict
    from edgeasc.errors import CheckpointError, ConfigError
    from edgeasc.labels import SCENES

    try:
        model, ckpt = load_model(checkpoint)
    except CheckpointError as exc:  # torch's unpickling errors span many lines; the CLI prints one
        raise CheckpointError(str(exc).strip().splitlines()[0]) from None
    frontend = frontend_of(ckpt)
    name = ckpt["model_config"]["name"]
    calib_split = calib_split or ((ckpt.get("config") or {}).get("data") or {}).get("train_split") or "split25"
    if calib_split == "test":
        raise ConfigError("calibration must use training clips, not the test split")
    dest = (Path(out_dir) if out_dir else checkpoint.parent / "export").resolve()
    out = _staging_folder(dest)
    result = ExportResult(dest)
    input_size = (1, 1, frontend.n_mels, frontend.n_frames)
    with torch.no_grad():
        n_out = int(model(torch.zeros(input_size)).shape[-1])
    if n_out != len(SCENES):
        raise ExportError(f"{name} outputs {n_out} values; the export expects {len(SCENES)} scene logits")

    base_meta = {
        "schema": METADATA_SCHEMA,
        "model_name": name,
        "labels": list(SCENES),
        "frontend": to_dict(frontend),
        "source_checkpoint": checkpoint.name,
        "stage": ckpt.get("stage"),
        "edgeasc_version": __version__,
    }

    # 1. Calibration features (int8): a class-balanced, seeded subset of the training split; the input
    # normalisation is computed on them.
    work = out / "work"
    try:
        work.mkdir()
        feats, calib_info = _calibration(out, ds, frontend, int8, calib_clips, calib_split, seed, cache_dir,
                                         progress, result)
        norm = InputNormalization.of(feats) if feats is not None and input_norm else None
        base_meta["input_normalization"] = norm.to_dict() if norm else None
        calib_npy = None
        if feats is not None:
            feats = norm.apply(feats) if norm else feats  # the exported graph's input domain
            calib_npy = work / "calibration.npy"
            np.save(calib_npy, np.ascontiguousarray(feats.transpose(0, 2, 3, 1)))  # NCHW -> NHWC, as onnx2tf reads it

        # 2. ONNX
        described = "normalised log-mel u = (x - mean) / std (input_normalization)" if norm else "log-mel"
        onnx_meta = {**base_meta,
                     "input": {"name": INPUT_NAME, "shape": list(input_size), "layout": "NCHW", "dtype": "float32",
                               "description": f"{described} (1, 1, n_mels, frames)"},
                     "output": {"name": OUTPUT_NAME, "shape": [1, len(SCENES)], "dtype": "float32",
                                "description": "scene logits in label order"}}
        onnx_path = export_onnx(model, out / "model.onnx", input_size, onnx_meta, input_norm=norm)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    result.artifacts["onnx"] = onnx_path
    return _Prepared(checkpoint, out, work, model, name, frontend, base_meta, calib_npy, calib_info, result, norm,
                     feats, dest=dest)


def _staging_folder(dest: Path) -> Path:
    """A new `dest/.export_XXXX/` for one export (with this process's id in it), after removing the staging
    folders of exports whose process is gone (killed; a finished export removes its own)."""
    from edgeasc.artifacts import require_writable

    require_writable(dest, "export (--out)")
    for old in dest.glob(STAGING_PREFIX + "*"):
        try:
            pid = int((old / "pid").read_text())
        except (OSError, ValueError):
            pid = None
        if pid is None or not _alive(pid):
            log.info("removing %s (an export that did not finish)", old)
            shutil.rmtree(old, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=dest))
    (stage / "pid").write_text(str(os.getpid()))
    return stage


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


EXPORT_FILES: frozenset[str] = frozenset(
    {f.filename for f in EXPORT_FORMATS}
    | {sidecar_path(f.filename).name for f in EXPORT_FORMATS if f.filename.endswith(".tflite")}
    | {CALIBRATION_IDS_FILE, LOG_FILE, INT16_LOG_FILE, FAILED_LOG_FILE, REPORT_FILE})
"""Every name an export writes into its output folder (what a new export there replaces or removes)."""


def publish_export(stage: Path, dest: Path, result: ExportResult) -> None:
    """Move a complete export from its staging folder into `dest`, the report last, and remove the stage.

    The old report goes first and the files of the old export that the new one does not write (an int8 file
    after a float-only export, a failure log) go too, so `dest` never holds a report with another export's
    files. Each move is atomic (same file system); `result.artifacts` then name the files in `dest`."""
    files = sorted(f for f in stage.iterdir() if f.is_file() and f.name in EXPORT_FILES)
    (dest / REPORT_FILE).unlink(missing_ok=True)
    new = {f.name for f in files}
    for name in EXPORT_FILES - new:
        (dest / name).unlink(missing_ok=True)
    for f in sorted(files, key=lambda f: f.name == REPORT_FILE):
        os.replace(f, dest / f.name)
    shutil.rmtree(stage, ignore_errors=True)
    result.artifacts = {k: dest / Path(v).name for k, v in result.artifacts.items()}
    log.info("wrote %s: %s", dest, ", ".join(sorted(new)))


def _calibration(out: Path, ds: Any, frontend: Any, int8: bool, calib_clips: int, calib_split: str, seed: int,
                 cache_dir: Any, progress: bool, result: ExportResult) -> tuple[np.ndarray | None, Any]:
    """The calibration features `(N, 1, n_mels, frames)` (raw log-mel) and their description; the clip ids
    beside the model. `(None, None)` without int8."""
    from edgeasc.data.dataset import load_waveforms
    from edgeasc.errors import DataError
    from edgeasc.labels import SCENES

    if not int8:
        return None, None
    train_clips = ds.clips(calib_split)
    if not train_clips:
        raise DataError(f"split {calib_split!r} of {ds.root} is empty; nothing to calibrate on")
    chosen = select_calibration_clips(train_clips, calib_clips, seed)
    if len(chosen) < calib_clips:
        log.warning("split %s has %d clips; calibrating on all of them (asked for %d)",
                    calib_split, len(chosen), calib_clips)
    waves = load_waveforms(ds.root, chosen, frontend.sample_rate_hz, frontend.clip_samples, cache_dir, progress)
    feats = calibration_features(waves, frontend)
    ids_path = write_text_atomic(out / CALIBRATION_IDS_FILE, "".join(f"{c.clip_id}\n" for c in chosen))
    result.artifacts["calibration_ids"] = ids_path
    per_class = {s: sum(c.scene == s for c in chosen) for s in SCENES}
    calib_info = {"split": calib_split, "n_clips": len(chosen), "seed": seed, "per_class": per_class,
                  "ids_file": ids_path.name, "feature_range": [float(feats.min()), float(feats.max())],
                  "feature_mean": float(feats.mean(dtype=np.float64)),
                  "feature_std": float(feats.std(dtype=np.float64))}
    return feats, calib_info


def _finish_tflite(p: _Prepared, int8: bool) -> None:
    """3. Move the converted TFLite files into place with their metadata (embedded and sidecar)."""
    from edgeasc.deploy.runtime import TFLiteModel
    from edgeasc.labels import SCENES

    out = p.out
    p.result.artifacts["log"] = out / LOG_FILE
    produced = {"tflite_float32": p.work / "tf" / "model_float32.tflite"}
    if int8:
        produced["tflite_int8"] = p.work / "tf" / "model_full_integer_quant.tflite"
    for key, src in produced.items():
        if not src.is_file():
            kept = shutil.copyfile(out / LOG_FILE, p.dest / FAILED_LOG_FILE)
            raise ExportError(f"onnx2tf did not write {src.name}; see {kept}")
        fmt = next(f for f in EXPORT_FORMATS if f.key == key)
        dst = out / fmt.filename
        data = src.read_bytes()
        if key == "tflite_int8" and (p.weight_rounding == "adaptive" or p.bias_correction):
            data = _rewrite_int8(p, data)
        write_bytes_atomic(dst, data)
        check_deployable(dst, int8=key == "tflite_int8", int16=p.int16 is not None)
        probe = TFLiteModel(dst)
        meta = {**p.base_meta,
                "format": key,
                "quantization": ("none" if key != "tflite_int8" else "full-integer int8, per-channel weights"
                                 + (f"; int16 activations (16x8) in {len(p.int16['layers'])} layer(s)" if p.int16 else "")),
                "int16": p.int16 if key == "tflite_int8" else None,
                "weight_rounding": p.weight_rounding if key == "tflite_int8" else None,
                "bias_correction": p.bias_correction if key == "tflite_int8" else None,
                "input": {**probe.input.to_dict(), "layout": "NHWC" if probe.input.shape[-1] == 1 else "NCHW",
                          "description": ("normalised log-mel u = (x - mean) / std (input_normalization)"
                                          if p.norm else "log-mel x")
                                         + (" (1, n_mels, frames, 1): mel-major, frames fastest; "
                                            f"q = round(u / scale) + zero_point, saturated to {probe.input.dtype}"
                                            if probe.input.quantized else " (1, n_mels, frames, 1), float32")},
                "output": {**probe.output.to_dict(), "labels": list(SCENES),
                           "description": "scene logits in label order"
                           + ("; real = (q - zero_point) * scale" if probe.output.quantized else "")},
                "calibration": p.calib_info if key == "tflite_int8" else None}
        write_bytes_atomic(dst, embed_tflite_metadata(dst.read_bytes(), meta))
        p.result.artifacts[key] = dst
        p.result.artifacts[key + "_metadata"] = write_json_atomic(sidecar_path(dst), meta)


def _convert_int16(prepared: list[_Prepared], ds: Any, request: Any, target: float, seed: int, cache_dir: Any,
                   progress: bool) -> None:
    """Plan each model's int16 layers (named, or `auto`: `edgeasc.deploy.sensitivity.choose_int16_layers` on held-out
    training clips) and convert it again with ai-edge-quantizer's per-op recipes (`_convert_tflite.quantize_mixed`);
    the result replaces the full-integer int8 file before `_finish_tflite`."""
    import difflib

    import torch

    from edgeasc.deploy.sensitivity import choose_int16_layers, plan_int16, tflite_tensors
    from edgeasc.deploy.tflite_graph import read_graph
    from edgeasc.errors import ConfigError
    from edgeasc.train.qat import round_weights

    jobs = []
    for p in prepared:
        graph = read_graph(p.work / SIGNATURE_FLOAT)
        sim = p.simulator()
        # plan on the weights and biases the file will have (before it exists: on TFLite's default weight
        # scales; `_rewrite_int8` measures both again on the file's)
        for path, c in p.input_cov.items():
            conv = sim.modules[path]
            q, scale = round_weights(conv.weight, c, conv.groups)
            sim.set_weights(path, torch.from_numpy(q * scale.reshape(-1, 1, 1, 1)))
        if p.bias_correction:
            sim.correct_biases(torch.from_numpy(p.calib_features))
        tensors = tflite_tensors(sim, graph)
        missing = [q.name for q in sim.points if q.kind != "weights" and q.name not in tensors]
        if missing:
            raise ExportError(f"{p.name}: {len(missing)} activation tensors ({', '.join(missing[:3])}) were not found "
                              "in the converted graph; --int16-layers cannot place them")
        # held-out training clips (not the calibration ones, never the test split) to choose and check on
        split = p.calib_info["split"]
        used = set((p.out / CALIBRATION_IDS_FILE).read_text(encoding="utf-8").split())
        rest = [c for c in ds.clips(split) if c.clip_id not in used]
        clips = select_calibration_clips(rest, 500, seed + 2) if rest else []
        if not clips:
            raise ExportError(f"split {split!r} has no clips beside the calibration ones to choose int16 layers on")
        x = torch.from_numpy(_graph_inputs(p, ds, clips, cache_dir, progress))
        if request == "auto":
            plan, achieved, steps = choose_int16_layers(sim, x, tensors, graph, target)
        else:
            known = [q.name for q in sim.points if q.kind != "weights"]
            for name in request:
                if name not in known:
                    close = difflib.get_close_matches(name, known, n=1)
                    raise ConfigError(f"--int16-layers: {name!r} is not an activation of {p.name}"
                                      + (f"; did you mean {close[0]!r}?" if close else "")
                                      + " (the sensitivity table names them: --sensitivity)")
            plan = plan_int16(list(request), tensors, graph)
            with torch.no_grad():
                ref = sim.run(x, set()).argmax(1)
                achieved = float((sim.run(x, "all", set(plan.int16_points)).argmax(1) == ref).float().mean())
            steps = []
        p.int16 = {"request": request if request == "auto" else list(request), "layers": list(plan.layers),
                   "int16_points": list(plan.int16_points), "tflite_ops": len(plan.ops),
                   "int16_input": plan.int16_input, "simulated_agreement": achieved, "target": target,
                   "held_out_clips": len(clips), "steps": steps}
        log.info("%s: int16 layers %s (simulated agreement %.4f on %d held-out training clips)", p.name,
                 ", ".join(plan.layers) or "none", achieved, len(clips))
        jobs.append({"onnx": str(p.work / SIGNATURE_FLOAT), "out_dir": str(p.work / "tf"), "input_name": INPUT_NAME,
                     "calibration_npy": str(p.calib_npy), "log": str(p.out / INT16_LOG_FILE),
                     "mixed": {"float": str(p.work / SIGNATURE_FLOAT),
                               "out": str(p.work / "tf" / "model_full_integer_quant.tflite"),
                               "int16_scopes": list(plan.scopes), "int16_input": plan.int16_input}})
    convert_onnx_to_tflite(jobs)


def _rewrite_int8(p: _Prepared, buf: bytes) -> bytes:
    """The converted int8 file after edgeasc's own post-training steps, both measured on the calibration
    clips: every convolution's weights rounded against its inputs (`--weight-rounding adaptive`,
    `edgeasc.train.qat.round_weights`) instead of to the nearest step, then every convolution's bias corrected
    for the mean error of its output (`--bias-correction`, `Int8Simulator.correct_biases`). The weights the
    file holds are kept on `p` and in the simulation, for the sensitivity table."""
    import torch
    from torch import nn

    from edgeasc.train.qat import round_weights

    sim = p.simulator()
    layers = {}
    convs = p.input_cov if p.weight_rounding == "adaptive" else {
        path: None for path, m in sim.modules.items() if isinstance(m, nn.Conv2d)}
    for path, c in convs.items():
        conv = sim.modules[path]
        layers[path] = (conv, None if c is None else
                        (lambda w, scale, c=c, g=conv.groups: round_weights(w, c, g, scale)[0]))
    buf, info = rewrite_int8_weights(buf, layers)
    if info["unmatched"]:
        raise ExportError(f"found no int8 weights for {', '.join(info['unmatched'][:3])} in the converted model; "
                          "export with --weight-rounding nearest --no-bias-correction")
    for path, (q, scale) in info["rounded"].items():  # the file's integers on its own scales
        sim.set_weights(path, torch.from_numpy(q * scale.reshape(-1, 1, 1, 1)))
    p.rounding_info = {"layers": len(info["layers"]), "weights_changed": info["weights_changed"]}
    log.info("%s rounding: %d int8 weights changed in %d layers", p.weight_rounding, info["weights_changed"],
             len(info["layers"]))
    if p.bias_correction:
        bits16 = set(p.int16["int16_points"]) if p.int16 else set()
        corrections = sim.correct_biases(torch.from_numpy(p.calib_features), bits16)
        missing = sorted(set(corrections) - set(info["bias_tensors"]))
        if missing:
            raise ExportError(f"bias correction found no bias tensor for {', '.join(missing[:3])} in the converted "
                              "model; export with --no-bias-correction")
        buf, changed = rewrite_biases(buf, {info["bias_tensors"][k]: v for k, v in corrections.items()})
        size = float(np.mean([np.abs(v).mean() for v in corrections.values()])) if corrections else 0.0
        p.bias_info = {"layers": len(corrections), "biases_changed": changed, "mean_abs_correction": size}
        log.info("bias correction: %d int biases changed in %d layers", changed, len(corrections))
    return buf


def _finish_report(p: _Prepared, ds: Any, eval_split: str, eval_clips: int | None, seed: int, cache_dir: Any,
                   progress: bool, workers: int | None,
                   sensitivity_clips: int | None) -> list[tuple[dict[str, Any], Path]]:
    """4. Parity on the evaluation split (and the sensitivity table); returns the float runtimes' missed
    targets."""
    from edgeasc import __version__
    result, out = p.result, p.out
    report = measure_parity(p.model, result.artifacts, ds, eval_split, p.frontend, eval_clips, seed, cache_dir,
                            progress, workers, p.norm)
    report = {"model_name": p.name, "checkpoint": str(p.checkpoint), "edgeasc_version": __version__,
              "artifacts": {k: {"path": str(p.dest / f.name), "bytes": f.stat().st_size}
                            for k, f in result.artifacts.items()},
              "calibration": p.calib_info, "input_normalization": p.norm.to_dict() if p.norm else None,
              "weight_rounding": {"method": p.weight_rounding, **(p.rounding_info or {})} if p.calib_info else None,
              "bias_correction": ({"enabled": p.bias_correction, **(p.bias_info or {})} if p.calib_info else None),
              "int16": p.int16,
              **report}
    if sensitivity_clips and p.calib_features is not None:
        report["sensitivity"] = measure_sensitivity(p, ds, eval_split, sensitivity_clips, seed, cache_dir, progress)
        report["sensitivity"]["tflite_int8_agreement"] = report["results"]["tflite_int8"]["agreement"]
    result.report = report
    result.artifacts["report"] = write_json_atomic(out / REPORT_FILE, report)
    report["artifacts"]["report"] = {"path": str(p.dest / REPORT_FILE), "bytes": (out / REPORT_FILE).stat().st_size}
    failed = [c for c in report["checks"] if not c["passed"]]
    for c in failed:
        log.warning("parity target missed: %s %s = %.4f (target %s)", c["runtime"], c["metric"], c["value"],
                    c["target"])
    return [(c, p.dest) for c in failed if c["runtime"] != "tflite_int8"]


def _graph_inputs(p: _Prepared, ds: Any, clips: list[Any], cache_dir: Any, progress: bool) -> np.ndarray:
    """The log-mel of `clips` in the exported graph's input domain (normalised when the export is)."""
    from edgeasc.data.dataset import load_waveforms

    waves = load_waveforms(ds.root, clips, p.frontend.sample_rate_hz, p.frontend.clip_samples, cache_dir, progress)
    x = calibration_features(waves, p.frontend)
    return p.norm.apply(x) if p.norm is not None else x


def measure_sensitivity(p: _Prepared, ds: Any, split: str, n_clips: int, seed: int, cache_dir: Any,
                        progress: bool) -> dict[str, Any]:
    """The int8 sensitivity table (`edgeasc.deploy.sensitivity`) of the exported network on a seeded, class-balanced
    subset of `split` (`n_clips`), with the calibration ranges of the export."""
    import torch

    from edgeasc.deploy.sensitivity import sensitivity_table

    clips = _eval_subset(ds.clips(split), n_clips, seed)
    x = _graph_inputs(p, ds, clips, cache_dir, progress)
    sim = p.simulator()  # with the integers the file holds
    bits16 = set(p.int16["int16_points"]) if p.int16 else set()
    table = sensitivity_table(sim, torch.from_numpy(x), np.array([c.label for c in clips]), bits16)
    table["split"] = split
    return table


def __getattr__(name: str):  # names that moved out of this module in 0.2, for one release
    return moved_attr(__name__, name)
