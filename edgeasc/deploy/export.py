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
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeasc.artifacts import write_atomic, write_bytes_atomic, write_json_atomic, write_text_atomic
from edgeasc.errors import ExportError, MissingDependencyError
from edgeasc.features import InputNormalization
from edgeasc.deploy.runtime import sidecar_path
from edgeasc.deploy.tflite_graph import tflite_schema

log = logging.getLogger(__name__)

ONNX_OPSET = 17
INPUT_NAME = "logmel"
OUTPUT_NAME = "logits"
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

PARITY_TARGETS: dict[str, dict[str, float]] = {
    "onnxruntime": {"min_agreement": 0.999},
    "tflite_float32": {"min_agreement": 0.999},
    "tflite_int8": {"min_agreement": 0.99, "max_accuracy_drop_pp": 1.0},
}
"""Top-1 agreement with torch (fraction of clips) and macro-accuracy drop (percentage points). A float
target missed means a broken conversion and fails the export; the int8 targets are stated for a trained
model (an untrained one has near-tied logits) and are reported, with a warning when missed."""

RUNTIMES: tuple[str, ...] = ("torch", "onnxruntime", "tflite_float32", "tflite_int8")

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


# --------------------------------------------------------------------------------------------------
# PyTorch -> ONNX
# --------------------------------------------------------------------------------------------------
def fold_batchnorm(model: Any) -> Any:
    """A copy of `model` (eval mode) with every BatchNorm2d that directly follows a Conv2d inside an
    `nn.Sequential` folded into that convolution's weight and bias (and replaced by Identity).

    The edgeasc model families place every BatchNorm so; a BatchNorm elsewhere stays and is logged.
    """
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    work = copy.deepcopy(model).float().cpu().eval()
    folded = 0
    for module in work.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = module._modules[a], module._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                module._modules[a] = fuse_conv_bn_eval(conv, bn)
                module._modules[b] = nn.Identity()
                folded += 1
    left = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in work.modules())
    if left:
        log.warning("%d BatchNorm layers do not follow a convolution and stay in the export", left)
    log.debug("folded %d BatchNorm layers", folded)
    return work


def exported_network(model: Any, input_norm: Any = None) -> Any:
    """The float network the export converts: BatchNorm folded (`fold_batchnorm`), then the input
    normalisation folded into the first convolutions when given (`edgeasc.train.qat.fold_input_normalization`)."""
    folded = fold_batchnorm(model)
    if input_norm is None:
        return folded
    from edgeasc.train.qat import fold_input_normalization

    return fold_input_normalization(folded, input_norm)


def export_onnx(
    model: Any,
    path: str | os.PathLike,
    input_size: tuple[int, ...] = (1, 1, 256, 65),
    metadata: dict[str, Any] | None = None,
    opset: int = ONNX_OPSET,
    input_norm: Any = None,
) -> Path:
    """Fold BatchNorm (and the input normalisation), export to ONNX with a fixed batch-1 input, write atomically.

    Args:
        model: the network (unchanged; a folded copy is exported).
        path: the .onnx file to write.
        input_size: `(1, C, n_mels, frames)`.
        metadata: written to `metadata_props` (non-string values as JSON).
        opset: ONNX opset (>= 17).
        input_norm: an `edgeasc.deploy.runtime.InputNormalization`: the graph then takes `input_norm.apply(x)`
            (`edgeasc.train.qat.fold_input_normalization`).

    Returns:
        The path written.
    """
    import warnings

    import onnx
    import torch

    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    folded = exported_network(model, input_norm)
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix=".onnx_", dir=path.parent) as tmp:  # not the system's temp folder
        tmp_file = Path(tmp) / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
            torch.onnx.export(
                folded, torch.zeros(input_size), str(tmp_file), input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], opset_version=opset, do_constant_folding=True, dynamo=False,
            )
        proto = onnx.load(str(tmp_file))
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key = key
        entry.value = value if isinstance(value, str) else json.dumps(value)
    fold_constant_subgraphs(proto)
    explicit_pool_padding(proto)
    onnx.checker.check_model(proto)
    bn_nodes = [n.name for n in proto.graph.node if n.op_type == "BatchNormalization"]
    if bn_nodes:
        log.warning("ONNX graph keeps %d BatchNormalization nodes: %s", len(bn_nodes), ", ".join(bn_nodes[:3]))
    return write_atomic(path, lambda p: onnx.save(proto, str(p)))


_FOLDABLE_OPS = frozenset({"Constant", "ConstantOfShape", "Concat", "Reshape", "Slice", "Transpose", "Cast",
                           "Unsqueeze", "Squeeze", "Gather", "Neg", "Add", "Sub", "Mul", "Div"})


def fold_constant_subgraphs(proto: Any) -> int:
    """Replace every node whose inputs are all constants (and that computes shapes or pads: `_FOLDABLE_OPS`)
    by initializers holding its outputs; returns the number of nodes folded.

    The TorchScript exporter writes `F.pad`'s pads as a chain of Constant, ConstantOfShape, Concat, Reshape,
    Slice, Transpose and Cast. onnx2tf cannot transpose such computed pads from NCHW to NHWC (it padded the
    batch axis of the normalised-input stem); as one int64 initializer it converts them as it does the
    pooling pads.
    """
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = proto.graph
    known = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    kept, folded = [], 0
    for node in graph.node:
        if node.op_type in _FOLDABLE_OPS and all(i in known for i in node.input if i):
            values = ReferenceEvaluator(node).run(None, {i: known[i] for i in node.input if i})
            for name, value in zip(node.output, values):
                known[name] = np.asarray(value)
            folded += 1
        else:
            kept.append(node)
    initial = {init.name for init in graph.initializer}
    used = {i for node in kept for i in node.input} | {o.name for o in graph.output}
    for name in sorted(used - initial):
        if name in known:
            graph.initializer.append(numpy_helper.from_array(known[name], name))
    del graph.node[:]
    graph.node.extend(kept)
    return folded


def explicit_pool_padding(proto: Any) -> int:
    """Rewrite every zero-padded `AveragePool` (`count_include_pad=1`, PyTorch's default) as `Pad` + `AveragePool`.

    The two compute the same numbers. TFLite's AVERAGE_POOL_2D only knows SAME padding, which divides border
    windows by their valid count, so onnx2tf corrects PyTorch's border windows afterwards with 11 extra ops
    (STRIDED_SLICE, MUL, CONCATENATION), and in the int8 model each MUL and CONCATENATION rounds again. An
    explicit zero PAD is exact in int8 (it writes the zero point) and the pooling then needs no correction:
    2 ops, one rounding. Measured on the demo student: docs/export.md, "Int8 fidelity".

    Args:
        proto: an `onnx.ModelProto`, changed in place.

    Returns:
        The number of pooling nodes rewritten.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    graph = proto.graph
    nodes, rewritten = [], 0
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        pads = list(attrs.get("pads", []))
        if node.op_type != "AveragePool" or not attrs.get("count_include_pad", 0) or not any(pads):
            nodes.append(node)
            continue
        half = len(pads) // 2  # ONNX pool pads: [x1_begin, x2_begin, ..., x1_end, x2_end] over spatial axes
        base = node.name or node.output[0]  # unique in the graph either way
        pad_name = f"{base}/explicit_pads"
        graph.initializer.append(numpy_helper.from_array(
            np.array([0, 0, *pads[:half], 0, 0, *pads[half:]], dtype=np.int64), pad_name))
        padded = f"{node.output[0]}/padded"
        nodes.append(helper.make_node("Pad", [node.input[0], pad_name], [padded], name=f"{base}/Pad",
                                      mode="constant"))
        kept = {k: v for k, v in attrs.items() if k not in ("pads", "count_include_pad")}
        nodes.append(helper.make_node("AveragePool", [padded], list(node.output), name=node.name, **kept))
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return rewritten


# --------------------------------------------------------------------------------------------------
# Calibration data
# --------------------------------------------------------------------------------------------------
def select_calibration_clips(clips: list[Any], n_clips: int, seed: int = 0) -> list[Any]:
    """A seeded, class-balanced subset: classes take turns (each in its own shuffled order) until `n_clips`
    are chosen or the split runs out. Returned in the split's file order.

    Raises:
        ValueError: `n_clips` < 1 or no clips.
    """
    if n_clips < 1:
        raise ValueError(f"calibration needs at least 1 clip, got {n_clips}")
    if not clips:
        raise ValueError("no clips to calibrate on")
    rng = np.random.default_rng(seed)
    labels = sorted({c.label for c in clips})
    queues = {k: list(rng.permutation([i for i, c in enumerate(clips) if c.label == k])) for k in labels}
    chosen: list[int] = []
    while len(chosen) < n_clips and any(queues.values()):
        for k in labels:
            if queues[k] and len(chosen) < n_clips:
                chosen.append(int(queues[k].pop(0)))
    return [clips[i] for i in sorted(chosen)]


# --------------------------------------------------------------------------------------------------
# ONNX -> TFLite (child process)
# --------------------------------------------------------------------------------------------------
def convert_onnx_to_tflite(
    conversions: list[dict[str, Any]],
    log_path: str | os.PathLike | None = None,
    timeout_s: float | None = 1800,
    jobs: int | None = None,
    progress: bool = False,
) -> None:
    """Run onnx2tf in child processes for each `{"onnx", "out_dir", "calibration_npy", "input_name"}`.

    The conversions are shared round-robin among `jobs` child processes that run at once (default: one per
    CPU core, at most 4; a conversion is mostly single-threaded). A conversion with a `"log"` path gets the
    converter's output in that file of its own; the rest is written to `log_path` when the children end
    (default: nowhere, unless something fails: then next to the failed model's output folder). A conversion
    with a `"failed_log"` path gets a copy of its log there when it fails. `timeout_s` applies per conversion.

    Raises:
        ExportError: a child failed, was killed by a signal or timed out; the message names the log of the
            conversion that failed.
    """
    if not conversions:
        return
    jobs = max(1, min(len(conversions), jobs or min(4, os.cpu_count() or 1)))
    groups = [conversions[i::jobs] for i in range(jobs)]
    for conv in conversions:
        if conv.get("log"):
            Path(conv["log"]).parent.mkdir(parents=True, exist_ok=True)
    from edgeasc.children import kill_group, start_child
    from edgeasc.progress import progress_bar

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    # beside the first model's output (an export's own work folder), not in the system's temporary folder
    with tempfile.TemporaryDirectory(prefix="edgeasc_convert_", dir=Path(conversions[0]["out_dir"]).parent) as tmp:
        logs = [Path(tmp) / f"convert_{i}.log" for i in range(jobs)]
        start = time.perf_counter()
        procs: list[subprocess.Popen] = []
        try:
            for i, group in enumerate(groups):
                job = Path(tmp) / f"job_{i}.json"
                job.write_text(json.dumps({"conversions": group}), encoding="utf-8")
                with open(logs[i], "w", encoding="utf-8") as log_f:  # the child holds its own descriptor
                    procs.append(start_child([sys.executable, "-m", "edgeasc.deploy._convert_tflite", str(job)],
                                             stdout=log_f, stderr=subprocess.STDOUT, cwd=tmp, env=env))
            deadline = None if timeout_s is None else time.monotonic() + timeout_s * max(map(len, groups))
            bar = progress_bar(total=len(conversions), enabled=progress, desc="onnx2tf", unit="model")
            while True:  # polled: the bar counts the models each child reports done
                codes: list[int | None] = [proc.poll() for proc in procs]
                bar.update(sum(_done_count(f) for f in logs) - bar.n)
                if all(code is not None for code in codes):
                    break
                if deadline is not None and time.monotonic() > deadline:
                    for proc in procs:  # the ones still running count as timed out (their code stays None)
                        kill_group(proc)
                    break
                time.sleep(0.25)
            bar.close()
        finally:  # an interrupt (or an error above) leaves no converter, nor any process it started, running
            for proc in procs:
                kill_group(proc)
        if log_path is not None:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(log_path, "".join(f.read_text(encoding="utf-8", errors="replace") for f in logs))
        failed_at = next((i for i, code in enumerate(codes) if code != 0), None)
        if failed_at is None:
            log.info("onnx2tf converted %d model(s) in %.1f s (%d process(es))", len(conversions),
                     time.perf_counter() - start, jobs)
            return
        group, main_log, returncode = groups[failed_at], logs[failed_at], codes[failed_at]
        failed = _failed_conversion(group, main_log) or group[0]
        if failed.get("log"):  # the conversion's own log; the child's when it died before that one began
            where = Path(failed["log"])
            if not where.is_file():
                shutil.copyfile(main_log, where)
            if failed.get("failed_log"):  # the own log is in a folder that goes: a copy stays
                Path(failed["failed_log"]).parent.mkdir(parents=True, exist_ok=True)
                where = Path(shutil.copyfile(where, failed["failed_log"]))
        elif log_path is not None:
            where = Path(log_path)
        else:  # keep the child's log (the temporary folder goes): the error message points at it
            where = Path(failed["out_dir"]).parent / "convert_failed.log"
            where.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(main_log, where)
        if returncode is None:
            raise ExportError(f"TFLite conversion timed out after {timeout_s:.0f} s per model; see {where}")
        if returncode < 0:
            try:
                sig = signal.Signals(-returncode).name
            except ValueError:
                sig = f"signal {-returncode}"
            raise ExportError(f"the TFLite converter (onnx2tf) died with {sig}; see {where}")
        raise ExportError(f"the TFLite converter (onnx2tf) failed: {_last_error_line(where)}; see {where}")


def _done_count(main_log: Path) -> int:
    """How many conversions a child has reported done so far."""
    try:
        text = main_log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return 0
    return sum(ln.startswith("[edgeasc] done ") for ln in text.splitlines())


def _failed_conversion(conversions: list[dict[str, Any]], main_log: Path) -> dict[str, Any] | None:
    """The first conversion the child did not report done (it prints `[edgeasc] done ONNX` after each)."""
    text = main_log.read_text(encoding="utf-8", errors="replace") if main_log.is_file() else ""
    done = {ln[len("[edgeasc] done "):].strip() for ln in text.splitlines() if ln.startswith("[edgeasc] done ")}
    return next((c for c in conversions if c["onnx"] not in done), None)


def _last_error_line(log_path: Path) -> str:
    """The most telling line of a converter log: the last Python exception line (with the ONNX op onnx2tf
    names, when it does), else the first ERROR line, else the last line."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", log_path.read_text(encoding="utf-8", errors="replace"))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    exc = [ln for ln in lines if re.match(r"^[\w.]*(Error|Exception)\b.*:", ln)]
    op = next((ln.split("onnx_op_name:", 1)[1].strip() for ln in lines if "onnx_op_name:" in ln), None)
    if exc:
        return (exc[-1][:250] + (f" (ONNX op {op})" if op else "")).replace("\n", " ")
    errors = [ln for ln in lines if "ERROR" in ln]
    return (errors[0] if errors else lines[-1] if lines else "no output")[:300]


def check_deployable(path: str | os.PathLike, int8: bool, int16: bool = False) -> None:
    """Check a converted model only uses builtin operators (onnx2tf allows TensorFlow "Flex" ops, which no
    microcontroller runs) and, for int8, that every activation and the I/O are int8 (full-integer; int16 too
    where `int16` layers were asked for).

    Raises:
        ExportError: what was found instead.
    """
    from collections import Counter

    from edgeasc.deploy.tflite_graph import activation_tensors, parse_tflite

    tensors, ops, g_in, _, _, _ = parse_tflite(Path(path).read_bytes(), path)
    custom = sorted({op.name for op in ops if op.name.startswith("CUSTOM")})
    if custom:
        raise ExportError(f"{Path(path).name} contains non-builtin operators {', '.join(custom)}; "
                          "a microcontroller runtime cannot run them")
    if int8:
        allowed = ("int8", "int16") if int16 else ("int8",)
        dtypes = Counter(tensors[i].dtype.lower() for i in activation_tensors(tensors, ops, g_in))
        other = {d: n for d, n in dtypes.items() if d not in allowed}
        if other:
            raise ExportError(f"{Path(path).name} is not full-integer: activation tensors of type "
                              + ", ".join(f"{d} ({n})" for d, n in other.items()))


def _pack(model: Any, size_hint: int) -> bytes:
    """A TFLite flatbuffer object model (`schema.ModelT`) serialised to .tflite bytes."""
    import flatbuffers

    builder = flatbuffers.Builder(size_hint + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def rewrite_int8_weights(buf: bytes, layers: dict[str, tuple[Any, Any]]) -> tuple[bytes, dict[str, Any]]:
    """`buf` (a full-integer .tflite) with the int8 weights of the given convolutions replaced.

    Each torch convolution is found by its weights: the converter's int8 values times its per-channel scales
    lie within half a step of the folded float weights (OHWI, or 1HWC for a depthwise DEPTHWISE_CONV_2D).
    The new integers are rounded on the file's own scales, so biases, scales and zero points stay valid.

    Args:
        buf: the .tflite bytes.
        layers: module path -> (folded float `nn.Conv2d`, `rounder(weight, scale) -> int weights (O, I/g, kh, kw)`,
            or None to keep the file's integers).

    Returns:
        (new bytes, {"layers": rewritten, "weights_changed": count, "unmatched": [paths],
        "rounded": {path: (int weights in torch layout, scales)}, "bias_tensors": {path: tensor index}}).
        A layer's bias tensor keeps its index in the new bytes (`rewrite_biases`).
    """
    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    sg = model.subgraphs[0]
    codes = {getattr(schema.BuiltinOperator, k): k for k in ("CONV_2D", "DEPTHWISE_CONV_2D")}
    candidates = []
    for op in sg.operators:
        oc = model.operatorCodes[op.opcodeIndex]
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) not in codes or len(op.inputs) < 2:
            continue
        t = sg.tensors[op.inputs[1]]
        data = model.buffers[t.buffer].data
        if t.type == schema.TensorType.INT8 and data is not None and t.quantization is not None:
            q = np.frombuffer(np.asarray(data, dtype=np.uint8).tobytes(), dtype=np.int8).reshape(t.shape)
            bias = int(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
            candidates.append((t, q, np.asarray(t.quantization.scale, dtype=np.float64),
                               int(t.quantization.quantizedDimension), bias))
    changed, rewritten, unmatched, rounded, biases = 0, [], [], {}, {}
    for path, (conv, rounder) in layers.items():
        w = conv.weight.detach().double().numpy()
        layouts = [((0, 2, 3, 1), 0), ((1, 2, 3, 0), 3)]  # OHWI (CONV_2D), 1HWC (DEPTHWISE_CONV_2D)
        hit = None
        for t, q, scale, axis, bias in candidates:
            for perm, want_axis in layouts:
                wf = w.transpose(perm)
                if wf.shape != q.shape or axis != want_axis or len(scale) != wf.shape[axis]:
                    continue
                shape = [1] * wf.ndim
                shape[axis] = -1
                if np.all(np.abs(q * scale.reshape(shape) - wf) <= 0.5001 * scale.reshape(shape) + 1e-12):
                    hit = (t, q, scale, perm, bias)
                    break
            if hit:
                break
        if hit is None:
            unmatched.append(path)
            continue
        t, q, scale, perm, bias = hit
        if rounder is None:
            ints = q.astype(np.int64).transpose(np.argsort(perm))
        else:
            ints = np.clip(np.asarray(rounder(conv.weight, scale), dtype=np.int64), -127, 127)
        new = ints.transpose(perm)
        changed += int(np.sum(new != q))
        rounded[path] = (ints, scale)
        model.buffers[t.buffer].data = new.astype(np.int8).view(np.uint8).reshape(-1)
        candidates = [c for c in candidates if c[0] is not t]
        rewritten.append(path)
        if bias is not None:
            biases[path] = bias
    return _pack(model, len(buf)), {"layers": rewritten, "weights_changed": changed, "unmatched": unmatched,
                                    "rounded": rounded, "bias_tensors": biases}


def rewrite_biases(buf: bytes, corrections: dict[int, np.ndarray]) -> tuple[bytes, int]:
    """`buf` (a quantised .tflite) with `corrections[t]` (real values, one per output channel) added to the
    integer bias tensor `t` on its own per-channel scales (int32, or int64 in a 16x8 convolution).

    Returns:
        (new bytes, the number of bias integers that changed).
    """
    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    sg = model.subgraphs[0]
    dtypes = {schema.TensorType.INT32: np.int32, schema.TensorType.INT64: np.int64}
    changed = 0
    for index, delta in corrections.items():
        t = sg.tensors[index]
        if t.type not in dtypes or t.quantization is None or t.quantization.scale is None:
            raise ExportError(f"tensor {index} ({t.name!r}) is not a quantised integer bias")
        dtype = dtypes[t.type]
        raw = np.asarray(model.buffers[t.buffer].data, dtype=np.uint8).tobytes()
        b = np.frombuffer(raw, dtype=dtype).astype(np.int64)
        scale = np.asarray(t.quantization.scale, dtype=np.float64)
        delta = np.asarray(delta, dtype=np.float64).reshape(-1)
        if len(delta) != len(b) or len(scale) not in (1, len(b)):
            raise ExportError(f"bias tensor {t.name!r}: {len(b)} values, {len(delta)} corrections")
        step = np.rint(delta / scale)  # to the nearest step of the bias's own scale
        info = np.iinfo(dtype)
        new = np.clip(b + step.astype(np.int64), info.min, info.max)
        changed += int(np.sum(new != b))
        model.buffers[t.buffer].data = new.astype(dtype).view(np.uint8).reshape(-1)
    return _pack(model, len(buf)), changed


def embed_tflite_metadata(buf: bytes, metadata: dict[str, Any], name: str = "edgeasc") -> bytes:
    """`buf` with a JSON metadata entry `name` added (replacing an older one of that name).

    Uses the flatbuffer object API of LiteRT's (or TensorFlow's) copy of the TFLite schema.
    """
    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    data = np.frombuffer(json.dumps(metadata, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    entry_buffer = schema.BufferT()
    entry_buffer.data = data
    model.buffers.append(entry_buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if (m.name or b"") not in (name, name.encode())] + [entry]
    return _pack(model, len(buf) + len(data))


# --------------------------------------------------------------------------------------------------
# Parity
# --------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------
# The whole export
# --------------------------------------------------------------------------------------------------
def _eval_subset(clips: list[Any], n: int | None, seed: int) -> list[Any]:
    if n is None or n >= len(clips):
        return clips
    return select_calibration_clips(clips, n, seed + 1)


def export_checkpoint(
    checkpoint: str | os.PathLike,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    int8: bool = True,
    calib_clips: int = 300,
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
    calib_clips: int = 300,
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
    from edgeasc.checkpoint import load_model
    from edgeasc.config import to_dict
    from edgeasc.errors import CheckpointError, ConfigError
    from edgeasc.evaluate import frontend_of
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


def calibration_features(waves: np.ndarray, frontend: Any) -> np.ndarray:
    """Log-mel features `(N, 1, n_mels, frames)` of the calibration clips, computed on one thread.

    The log-mel's float rounding depends on the thread count (FFT and matmul split the work differently:
    up to 5e-7 between 1 and 2 threads), and every scale of the int8 model depends on these numbers; on one
    thread the same checkpoint exports to the same int8 file whatever the core count or OMP_NUM_THREADS.
    """
    import torch

    from edgeasc.deploy.runtime import feature_batches

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return np.concatenate([x for _, x in feature_batches(waves, frontend, 64)])
    finally:
        torch.set_num_threads(threads)


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
    from edgeasc.labels import SCENES
    from edgeasc.deploy.runtime import TFLiteModel

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

    from edgeasc.errors import ConfigError
    from edgeasc.deploy.tflite_graph import read_graph
    from edgeasc.train.qat import round_weights
    from edgeasc.deploy.sensitivity import choose_int16_layers, plan_int16, tflite_tensors

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
    from edgeasc.errors import DataError
    from edgeasc.deploy.runtime import TFLiteModel, feature_batches

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

