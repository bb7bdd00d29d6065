"""ONNX -> TFLite in a child process (onnx2tf; TensorFlow never loads in the parent), and the byte-level
rewrites of the converted flatbuffer: int8 weights (adaptive rounding), int32 biases (bias correction) and
the embedded edgeasc metadata. `check_deployable` refuses a file TFLite Micro cannot run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeasc.artifacts import write_text_atomic
from edgeasc.deploy.tflite_graph import tflite_schema
from edgeasc.errors import ExportError

log = logging.getLogger(__name__)


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
