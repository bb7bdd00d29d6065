"""Running .tflite models: the one place that creates TFLite interpreters and owns int8 (de)quantisation.

Interpreters come from the first installed of `ai-edge-litert` (LiteRT, TFLite's maintained successor),
`tflite_runtime` (what many edge devices still ship) and `tensorflow` (`tf.lite`). By default they run
TFLite's *reference* kernels (`OpResolverType.BUILTIN_REF`), which TFLite Micro matches bit for bit; the
optimised default (XNNPACK) rounds differently and its results say nothing about a microcontroller.

Int8 tensors map to real values by their own (scale, zero_point): `real = (q - zp) * s` and
`q = clip(round(real / s + zp), -128, 127)` (TFLite's quantisation spec), rounding half away from zero as
TFLite's reference `Quantize` kernel does (`std::round`), not numpy's half-to-even.

Layouts: edgeasc features are `(N, 1, n_mels, frames)`; onnx2tf makes the TFLite input NHWC
`(1, n_mels, frames, 1)`. With one channel both layouts are the same bytes, so firmware feeds the log-mel
mel-major with frames fastest either way; `TFLiteModel` transposes for the NHWC case.
"""

from __future__ import annotations

import json
import logging
import math
import os
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeasc.errors import ConfigError, ModelFileError, RuntimeUnavailableError
from edgeasc.features import InputNormalization

log = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("ai-edge-litert", "tflite-runtime", "tensorflow")
"""Interpreter providers in order of preference."""

METADATA_NAME = "edgeasc"
"""Name of the metadata entry edgeasc embeds in its .tflite files (the same JSON as the sidecar)."""


@dataclass(frozen=True)
class TensorInfo:
    """An input or output of a TFLite model.

    Attributes:
        name: tensor name in the flatbuffer.
        shape: static shape, batch included.
        dtype: numpy dtype name (`int8`, `float32`, ...).
        scale: quantisation scale (0.0 for float tensors).
        zero_point: quantisation zero point.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "scale": self.scale,
                "zero_point": self.zero_point}


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: str | np.dtype = "int8") -> np.ndarray:
    """Real values -> integers of `dtype` with the tensor's (scale, zero_point), saturating."""
    info = np.iinfo(np.dtype(dtype))
    v = np.asarray(x, dtype=np.float64) / scale
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zero_point  # std::round: half away from zero
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Integers -> real values (float32): `(q - zero_point) * scale`."""
    return ((np.asarray(q, dtype=np.float64) - zero_point) * scale).astype(np.float32)


TFLM_CHECK_CLIPS = 8
"""Clips an evaluation of a .tflite also runs on TFLite Micro, to say whether its figures hold there."""


EVAL_RUNTIMES = ("litert", "tflm")
"""What `evaluate_tflite` runs the clips on: LiteRT's reference kernels, or TFLite Micro itself."""


def format_tflm_check(runtime: dict[str, Any]) -> str:
    """One line: which kernels an evaluation ran, and whether TFLite Micro gave the same outputs."""
    if runtime.get("backend") == "tflite-micro":
        return "kernels: TFLite Micro reference kernels (tflite-micro), every clip"
    kernels = f"LiteRT {runtime['kernels']} kernels ({runtime['backend']})"
    t = runtime.get("tflite_micro") or {"checked": 0, "skipped": "not compared"}
    if not t["checked"]:
        return f"kernels: {kernels}; TFLite Micro not compared: {t['skipped']}"
    if t["identical"] == t["checked"]:
        return f"kernels: {kernels}; TFLite Micro bit-identical on the first {t['checked']} clips"
    return (f"kernels: {kernels}; TFLite Micro DIFFERS on {t['checked'] - t['identical']} of the first {t['checked']} "
            f"clips (max {t['max_abs_diff']:g} output steps): these figures are LiteRT's, not TFLite Micro's")


def tflm_runtime() -> Any:
    """The `tflite-micro` package's interpreter module (raises `RuntimeUnavailableError` when not installed)."""
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise RuntimeUnavailableError("TFLite Micro is not installed (pip install "
                                      "'tflite-micro==0.dev20261023182759')") from None
    return runtime


def tflm_outputs(path: str | os.PathLike, inputs: np.ndarray, arena_size: int = 4_000_000) -> np.ndarray:
    """Raw outputs `(N, output size)` of TFLite Micro's reference kernels for inputs `(N, input size)` in the
    model's input dtype (int8 for a full-integer model), one `invoke()` per row."""
    interp = tflm_runtime().Interpreter.from_file(str(path), arena_size=arena_size)
    detail = interp.get_input_details(0)
    out = []
    for x in np.asarray(inputs, dtype=detail["dtype"]):
        interp.set_input(x.reshape(detail["shape"]), 0)
        interp.invoke()
        out.append(np.array(interp.get_output(0)).reshape(-1))
    return np.stack(out)


def _interpreter_api(backend: str | None) -> tuple[str, Any, Any]:
    """(backend name, Interpreter class, OpResolverType enum) of `backend`, or of the first one installed."""
    wanted = BACKENDS if backend is None else (backend,)
    if backend is not None and backend not in BACKENDS:
        raise RuntimeUnavailableError(f"unknown TFLite backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    for name in wanted:
        try:
            if name == "ai-edge-litert":
                from ai_edge_litert.interpreter import Interpreter, OpResolverType
            elif name == "tflite-runtime":
                from tflite_runtime.interpreter import Interpreter, OpResolverType
            else:
                import tensorflow as tf

                Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
        except ImportError:
            continue
        return name, Interpreter, OpResolverType
    if backend is not None:
        raise RuntimeUnavailableError(f"TFLite backend {backend!r} is not installed")
    raise RuntimeUnavailableError(
        "no TFLite interpreter installed; install ai-edge-litert (pip install 'ai-edge-litert==2.3.0'), "
        "or tflite-runtime / tensorflow"
    )


def available_backend() -> str:
    """The backend `TFLiteModel` would use by default (raises `RuntimeUnavailableError` when none)."""
    return _interpreter_api(None)[0]


def create_interpreter(
    path: str | os.PathLike, *, reference_kernels: bool = True, num_threads: int = 1, backend: str | None = None
) -> tuple[Any, str]:
    """An allocated TFLite interpreter for `path`.

    Args:
        path: the .tflite file.
        reference_kernels: use TFLite's reference kernels (BUILTIN_REF), the microcontroller's arithmetic.
        num_threads: interpreter threads.
        backend: one of `BACKENDS`; default the first installed.

    Returns:
        (interpreter, backend name)
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model not found: {path}")
    name, Interpreter, OpResolverType = _interpreter_api(backend)
    resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
    try:
        interp = Interpreter(model_path=str(path), num_threads=num_threads, experimental_op_resolver_type=resolver)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: {name} cannot load this TFLite model: {first}") from None
    return interp, name


def _tensor_info(detail: dict[str, Any]) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorInfo(
        name=str(detail["name"]),
        shape=tuple(int(d) for d in detail["shape"]),
        dtype=np.dtype(detail["dtype"]).name,
        scale=float(scale),
        zero_point=int(zero_point),
    )


class TFLiteModel:
    """A single-input, single-output TFLite classifier run clip by clip (batch 1), int8 or float.

    Args:
        path: the .tflite file.
        reference_kernels: run LiteRT's BUILTIN_REF kernels (default): TFLite's reference integer arithmetic, as
            TFLite Micro's kernels compute it on edgeasc's operators (`compare_with_tflm` measures it per model).
        backend: one of `BACKENDS`; default the first installed.

    Attributes:
        backend: which interpreter provider runs it.
        input, output: `TensorInfo` of the model's input and output.
        normalization: the `InputNormalization` its metadata states (None: raw log-mel input).
    """

    def __init__(self, path: str | os.PathLike, *, reference_kernels: bool = True, backend: str | None = None) -> None:
        self.path = Path(path)
        self.reference_kernels = reference_kernels
        interp, self.backend = create_interpreter(self.path, reference_kernels=reference_kernels, backend=backend)
        ins, outs = interp.get_input_details(), interp.get_output_details()
        if len(ins) != 1 or len(outs) != 1:
            raise ModelFileError(f"{self.path}: expected one input and one output, found {len(ins)} and {len(outs)}")
        self.input = _tensor_info(ins[0])
        self.output = _tensor_info(outs[0])
        self._in_index, self._out_index = ins[0]["index"], outs[0]["index"]
        self._local = threading.local()
        self._local.interp = interp
        self.normalization = InputNormalization.from_metadata(self.metadata())

    def _interp(self) -> Any:
        # One interpreter per thread: an interpreter is not safe to share, and invoke() releases the GIL.
        interp = getattr(self._local, "interp", None)
        if interp is None:
            interp, _ = create_interpreter(self.path, reference_kernels=self.reference_kernels, backend=self.backend)
            self._local.interp = interp
        return interp

    def to_input_layout(self, x: np.ndarray) -> np.ndarray:
        """Features `(N, C, F, T)` -> the model's layout: unchanged for NCHW, `(N, F, T, C)` for NHWC."""
        shape = self.input.shape
        if tuple(x.shape[1:]) == shape[1:]:
            return x
        nhwc = (x.shape[2], x.shape[3], x.shape[1]) if x.ndim == 4 else None
        if nhwc is not None and nhwc == shape[1:]:
            return np.transpose(x, (0, 2, 3, 1))
        raise ModelFileError(
            f"{self.path.name}: features of shape {tuple(x.shape[1:])} do not fit the model input "
            f"{shape} (NCHW or NHWC expected)"
        )

    def prepare(self, features: np.ndarray) -> np.ndarray:
        """Log-mel features `(N, C, F, T)` (or already in the model's layout) -> the interpreter's input bytes:
        the model's input normalisation (`InputNormalization`, from its metadata), its layout, then its
        quantisation (`quantize`) or dtype. The one implementation every edgeasc path feeds models with."""
        x = np.asarray(features, dtype=np.float32)
        if self.normalization is not None:
            x = self.normalization.apply(x)
        x = self.to_input_layout(x)
        if self.input.quantized:
            return quantize(x, self.input.scale, self.input.zero_point, self.input.dtype)
        return x.astype(self.input.dtype)

    def invoke(self, q: np.ndarray) -> np.ndarray:
        """One prepared example (no batch dim) -> real-valued output (float32)."""
        interp = self._interp()
        interp.set_tensor(self._in_index, np.asarray(q)[None])
        interp.invoke()
        y = interp.get_tensor(self._out_index)[0]
        if self.output.quantized:
            return dequantize(y, self.output.scale, self.output.zero_point)
        return np.asarray(y, dtype=np.float32)

    def run_one(self, x: np.ndarray) -> np.ndarray:
        """One log-mel example without batch dim (either layout) -> real-valued output (float32)."""
        return self.invoke(self.prepare(np.asarray(x)[None])[0])

    def predict(self, features: np.ndarray, workers: int = 1) -> np.ndarray:
        """Real-valued outputs `(N, n_out)` for features `(N, C, F, T)`, one interpreter call per clip.

        Args:
            features: float32 log-mel features (raw: the model's normalisation is applied here).
            workers: threads, each with its own interpreter (the reference kernels are single-threaded).
        """
        x = self.prepare(features)
        if workers <= 1 or len(x) < 2:
            out = [self.invoke(xi).reshape(-1) for xi in x]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                out = list(pool.map(lambda xi: self.invoke(xi).reshape(-1), x))
        if not out:
            return np.zeros((0, int(np.prod(self.output.shape[1:]))), dtype=np.float32)
        from edgeasc.metrics import require_finite_logits

        return require_finite_logits(np.stack(out), f"{self.path}")

    def predict_tflm(self, features: np.ndarray) -> np.ndarray:
        """Real-valued outputs `(N, n_out)` of TFLite Micro itself (its reference kernels, one invoke per clip) for
        features `(N, C, F, T)`, prepared as `predict` prepares them.

        Raises:
            RuntimeUnavailableError: tflite-micro is not installed, or TFLite Micro refuses the model.
        """
        x = self.prepare(features)
        n_out = int(np.prod(self.output.shape[1:]))
        if not len(x):
            return np.zeros((0, n_out), dtype=np.float32)
        try:
            raw = tflm_outputs(self.path, x.reshape(len(x), -1)).reshape(len(x), n_out)
        except RuntimeError as exc:  # a hybrid model, an operator TFLite Micro lacks
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RuntimeUnavailableError(f"{self.path.name}: TFLite Micro cannot run it: {why}") from None
        y = dequantize(raw, self.output.scale, self.output.zero_point) if self.output.quantized else raw
        from edgeasc.metrics import require_finite_logits

        return require_finite_logits(np.asarray(y, dtype=np.float32), f"{self.path}")

    def compare_with_tflm(self, features: np.ndarray, n: int = TFLM_CHECK_CLIPS,
                          outputs: np.ndarray | None = None) -> dict[str, Any]:
        """Run the first `n` clips of `features` on TFLite Micro too and compare the raw outputs with this
        interpreter's: LiteRT's reference kernels and TFLite Micro are separate code and can differ (they do on
        some FULLY_CONNECTED models), so an evaluation says what it measured instead of assuming. `outputs`:
        this model's `predict` of those features when the caller has it already (else they are run again).

        Returns:
            {"checked", "identical" (clips with bit-identical outputs), "max_abs_diff" (in output units: int8
            steps for an int8 model)}, or {"checked": 0, "skipped": why}.
        """
        x = self.prepare(features[:n])
        if not len(x):
            return {"checked": 0, "skipped": "no clips"}
        try:
            theirs = tflm_outputs(self.path, x.reshape(len(x), -1))
        except RuntimeUnavailableError as exc:
            return {"checked": 0, "skipped": str(exc)}
        except RuntimeError as exc:  # TFLite Micro refuses the model (a hybrid model, an operator it lacks)
            return {"checked": 0, "skipped": f"TFLite Micro cannot run it: {exc}"}
        # real-valued, as `invoke` returns them
        ours = np.stack([self.invoke(xi).reshape(-1) for xi in x]) if outputs is None else outputs[:len(x)]
        theirs, step = theirs.reshape(ours.shape), 1.0
        if self.output.quantized:
            theirs, step = dequantize(theirs, self.output.scale, self.output.zero_point), self.output.scale
        diff = np.rint(np.abs(ours.astype(np.float64) - theirs.astype(np.float64)) / step * 1e6) / 1e6
        return {"checked": int(len(x)), "identical": int((diff == 0).all(axis=1).sum()),
                "max_abs_diff": float(diff.max())}

    def metadata(self) -> dict[str, Any] | None:
        """The edgeasc metadata of this model (embedded, else the sidecar JSON), or None."""
        return read_tflite_metadata(self.path)

    def frontend(self) -> tuple[Any, list[str], str]:
        """`tflite_frontend` of this model, checked against its outputs.

        Raises:
            ModelFileError: the labels do not match the model's outputs.
        """
        frontend, labels, name = tflite_frontend(self.path)
        n_out = math.prod(self.output.shape[1:])
        if n_out != len(labels):
            raise ModelFileError(f"{self.path.name}: {n_out} outputs for {len(labels)} labels")
        return frontend, labels, name


def tflite_frontend(path: str | os.PathLike) -> tuple[Any, list[str], str]:
    """(FrontendConfig, labels, model name) of a .tflite from its edgeasc metadata (no interpreter needed);
    without metadata (a foreign model) the DCASE baseline frontend, scene order and file stem, with a warning.
    """
    from edgeasc.config import FrontendConfig, from_dict
    from edgeasc.labels import SCENES

    path = Path(path)
    meta = read_tflite_metadata(path)
    if meta is None or "frontend" not in meta:
        log.warning("%s has no edgeasc metadata; assuming the DCASE baseline frontend and scene order", path.name)
        return FrontendConfig(), list(SCENES), path.stem
    frontend = from_dict(FrontendConfig, meta["frontend"], where="frontend")
    return frontend, list(meta.get("labels", SCENES)), str(meta.get("model_name", path.stem))


def embedded_metadata(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON edgeasc embeds in a .tflite's metadata list under `METADATA_NAME`, or None."""
    from edgeasc.deploy.tflite_graph import read_tflite_model

    buf = Path(path).read_bytes()
    model = read_tflite_model(buf, path)
    try:
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if (entry.Name() or b"").decode("utf-8", "replace") == METADATA_NAME:
                data = bytes(model.Buffers(entry.Buffer()).DataAsNumpy())
                break
        else:
            return None
    except (struct.error, IndexError, TypeError, ValueError, OverflowError, AttributeError) as exc:
        # a damaged flatbuffer fails in many ways: offsets outside the file, numbers out of their type's range
        raise ModelFileError(f"{path}: unreadable metadata list ({type(exc).__name__}: {exc})") from None
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: embedded {METADATA_NAME!r} metadata is not JSON: {exc}") from None


def sidecar_path(path: str | os.PathLike) -> Path:
    """`model_int8.tflite` -> `model_int8.json`."""
    return Path(path).with_suffix(".json")


def read_tflite_metadata(path: str | os.PathLike) -> dict[str, Any] | None:
    """edgeasc metadata of a .tflite: the embedded entry, else the sidecar JSON, else None (foreign model)."""
    meta = embedded_metadata(path)
    if meta is not None:
        return meta
    side = sidecar_path(path)
    if side.is_file():
        try:
            return json.loads(side.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"{side}: not valid JSON ({exc})") from None
    return None


def feature_batches(
    waves: np.ndarray, frontend: Any, batch_size: int = 256, progress: bool = False, desc: str = "features"
) -> Iterator[tuple[int, np.ndarray]]:
    """(start index, log-mel features `(B, 1, n_mels, frames)` float32) over waveforms `(N, samples)`."""
    import torch

    from edgeasc.features import LogMel

    mel = LogMel(frontend).eval()
    from edgeasc.progress import progress_bar

    starts = progress_bar(range(0, len(waves), batch_size), progress, desc=desc, unit="batch")
    with torch.no_grad():
        for s in starts:
            x = torch.from_numpy(np.array(waves[s : s + batch_size], dtype=np.float32))  # a writable copy
            yield s, mel(x).numpy()


def evaluate_tflite(
    model_path: str | os.PathLike,
    data_dir: str | os.PathLike,
    split: str = "test",
    out_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 256,
    progress: bool = False,
    workers: int | None = None,
    backend: str | None = None,
    runtime: str = "litert",
) -> dict[str, Any]:
    """Evaluate a .tflite classifier like a checkpoint (`edgeasc.evaluate.evaluate_checkpoint`).

    `runtime="litert"` (default) runs LiteRT's reference kernels on every clip and compares the first
    `TFLM_CHECK_CLIPS` with TFLite Micro; `runtime="tflm"` runs every clip on TFLite Micro itself (what a
    microcontroller computes; slower, one thread).

    The frontend and labels come from the model's edgeasc metadata; a model without it (not exported by
    edgeasc) is assumed to take the DCASE baseline log-mel and output the ten scenes in DCASE order.
    Writes `{stem}.eval.json` and the plots `{stem}.confusion.png`, `{stem}.confusion_counts.png` and
    `{stem}.per_device.png` (`edgeasc.plots.write_evaluation_plots`) into `out_dir` (default: next to the model).

    Returns:
        The report of `edgeasc.metrics.classification_report` plus "model", "model_name", "split",
        "runtime" and "artifacts".
    """
    from edgeasc.artifacts import require_writable
    from edgeasc.data.dataset import load_waveforms
    from edgeasc.evaluate import evaluation_clips, write_evaluation
    from edgeasc.labels import SCENES

    if runtime not in EVAL_RUNTIMES:
        raise ConfigError(f"--runtime {runtime}: expected one of {', '.join(EVAL_RUNTIMES)}")
    model_path = Path(model_path)
    model = TFLiteModel(model_path, backend=backend)
    frontend, labels, name = model.frontend()
    if labels != list(SCENES):
        raise ModelFileError(f"{model_path.name}: labels {labels} are not the DCASE scene order {list(SCENES)}")
    clips = evaluation_clips(data_dir, split)
    out = require_writable(Path(out_dir) if out_dir else model_path.parent, "evaluation report (--out)")
    waves = load_waveforms(Path(data_dir), clips, frontend.sample_rate_hz, frontend.clip_samples, cache_dir, progress)
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    parts, first = [], None
    for _, x in feature_batches(waves, frontend, batch_size, progress, "evaluating"):
        first = x if first is None else first
        parts.append(model.predict_tflm(x) if runtime == "tflm" else model.predict(x, workers))
    logits = np.concatenate(parts)
    if runtime == "tflm":
        # the figures are TFLite Micro's own: nothing was compared, so no comparison block is written
        run_info = {"backend": "tflite-micro", "kernels": "TFLite Micro reference", "clips_on_tflite_micro":
                    int(len(logits))}
    else:
        run_info = {"backend": model.backend, "kernels": "reference" if model.reference_kernels else "optimised",
                    "tflite_micro": model.compare_with_tflm(first, outputs=parts[0])}
    header = {"model": str(model_path), "model_name": name, "split": split,
              "runtime": {**run_info, "input": model.input.to_dict(), "output": model.output.to_dict()}}
    return write_evaluation(header, clips, logits, out, prefix=f"{model_path.stem}.")
