"""The one reader of .tflite flatbuffers: auditor, bench, runtime, export and firmware read models through it.

Two views of subgraph 0. `parse_tflite` gives what the counts need (`TensorEntry`: shape, dtype, width, bytes
of constant data; `OpEntry`) after checking everything they rely on, so a damaged file is "not a valid TFLite
model: WHAT" and never a negative count; `verify_tflite` adds LiteRT's own verifier and AllocateTensors in a
child process that dies with its parent. `read_graph` gives the graph with its constants as numpy arrays and
quantisation parameters (`Tensor`, `Op`, `Graph`), after both checks. `tflite_macs` is the per-operator MAC
rule of the deployed graph. The flatbuffer schema classes come from ai-edge-litert (else TensorFlow's copy,
else the `tflite` package): nothing is hand-decoded.
"""

from __future__ import annotations

import math
import os
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeasc.errors import AuditError, FirmwareError, MissingDependencyError


def tflite_schema() -> Any:
    """The flatbuffer schema classes (with the object API `ModelT`, which export and firmware use)."""
    try:
        from ai_edge_litert import schema_py_generated as classes

        return classes
    except ImportError:
        pass
    try:
        from tensorflow.lite.python import schema_py_generated as classes

        return classes
    except ImportError:
        pass
    try:
        import tflite as classes

        return classes
    except ImportError:
        raise MissingDependencyError("reading .tflite files needs ai-edge-litert (pip install "
                                     "'ai-edge-litert==2.3.0'), tensorflow or the tflite package") from None


def one_line(text: str, limit: int = 300) -> str:
    """First line of an error text (messages from libraries can span many lines), clipped."""
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return first if len(first) <= limit else first[: limit - 3] + "..."


def shape_product(shape: Sequence[int]) -> int:
    return int(math.prod(int(d) for d in shape))


def ceil_bytes(elements: int, width: float) -> int:
    return int(math.ceil(elements * width))


TFLITE_WIDTHS = {
    "FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "STRING": 1, "BOOL": 1, "INT16": 2,
    "COMPLEX64": 8, "INT8": 1, "FLOAT64": 8, "COMPLEX128": 16, "UINT64": 8, "RESOURCE": 0, "VARIANT": 0,
    "UINT32": 4, "UINT16": 2, "INT4": 0.5, "BFLOAT16": 2, "INT2": 0.25,
}


def enum_names(enum_cls: Any) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def builtin_names() -> dict[int, str]:
    """Builtin operator code -> name."""
    return enum_names(tflite_schema().BuiltinOperator)


def read_tflite_model(buf: bytes, path: str | os.PathLike = "model") -> Any:
    """The root `Model` table of a .tflite flatbuffer, after checking it is one.

    Raises:
        AuditError: too short, or the file identifier is not `TFL3`.
    """
    schema = tflite_schema()
    if len(buf) < 8:
        raise AuditError(f"{path}: {len(buf)} bytes is too short to be a TFLite model")
    if bytes(buf[4:8]) != b"TFL3":
        raise AuditError(f"{path}: not a TFLite flatbuffer (file identifier {bytes(buf[4:8])!r}, expected b'TFL3')")
    return schema.Model.GetRootAs(buf, 0)


MAX_RANK = 8
"""Largest tensor rank a valid model may declare (TFLite kernels take up to 6)."""
MAX_TENSOR_BYTES = 2**31 - 1
"""Largest tensor a valid model may declare: TFLite sizes tensors with 32-bit integers."""
VERIFY_TIMEOUT_S = 120.0

_VERIFY_CHILD = """
import sys
try:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
except ImportError:
    sys.exit(4)
try:
    i = Interpreter(model_content=open(sys.argv[1], "rb").read(),
                    experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    i.allocate_tensors()
except Exception as exc:
    why = " ".join(str(exc).split())[:300] or type(exc).__name__
    print(why)
    sys.exit(5 if "unresolved custom op" in why else 3)
"""


def verify_tflite(path: str | os.PathLike) -> str | None:
    """LiteRT's own checks of a .tflite, in a child process: the flatbuffer verifier (every offset and size
    inside the file), the interpreter build (operator codes, tensor indices, constant buffers that match their
    shapes) and AllocateTensors (each kernel's Prepare checks its shapes and quantisation).

    Returns:
        None when the file verifies; a warning when ai-edge-litert is not installed (nothing was verified) or
        when the file verifies but uses a custom operator LiteRT has no kernel for (shapes not prepared).

    Raises:
        AuditError: "not a valid TFLite model: WHAT" (LiteRT refused it, crashed on it or timed out).
    """
    import subprocess

    from edgeasc.children import run_child

    try:
        res = run_child([sys.executable, "-c", _VERIFY_CHILD, str(path)], timeout=VERIFY_TIMEOUT_S,
                        capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        raise AuditError(f"{path}: not a valid TFLite model: LiteRT did not load it within "
                         f"{VERIFY_TIMEOUT_S:g} s") from None
    if res.returncode == 0:
        return None
    if res.returncode == 4:
        return "not verified by LiteRT (ai-edge-litert is not installed): the counts assume a valid file"
    if res.returncode == 5:  # the flatbuffer verified; the interpreter has no kernel for a custom operator
        return f"LiteRT verified the file but cannot prepare it: {one_line(res.stdout.strip())}"
    if res.returncode < 0:
        raise AuditError(f"{path}: not a valid TFLite model: LiteRT crashed loading it (signal {-res.returncode})")
    lines = [ln for ln in (res.stdout + "\n" + res.stderr).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    why = (errors[0].removeprefix("ERROR:").strip() if errors else (lines[-1] if lines else f"exit {res.returncode}"))
    raise AuditError(f"{path}: not a valid TFLite model: LiteRT refuses it ({one_line(why)})")


@dataclass
class TensorEntry:
    name: str
    shape: tuple[int, ...]
    dtype: str
    width: float
    const_bytes: int  # bytes of constant data (0: an activation)
    buffer: int
    variable: bool
    quant_bytes: int  # per-tensor or per-channel scales (float32) and zero points (int64) in the flatbuffer


@dataclass
class OpEntry:
    name: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, int]


_ZERO_POINT_RANGE = {"INT8": (-128, 127), "UINT8": (0, 255), "INT16": (0, 0), "INT32": (0, 0), "INT4": (-8, 7)}
"""Zero points TFLite's quantisation spec allows per type (int16 activations and int32 biases: symmetric)."""


def _check_quantization(q: Any, dtype: str, shape: tuple[int, ...], constant: bool) -> str | None:
    """What is wrong with a tensor's quantisation parameters (None: nothing, or not quantised)."""
    if q is None or not q.ScaleLength():
        return None
    scales = q.ScaleAsNumpy()
    if not (np.isfinite(scales).all() and (scales > 0).all()):
        return "quantisation scales must be positive and finite"
    n_zp = q.ZeroPointLength()
    if n_zp not in (0, len(scales)):
        return f"{n_zp} zero points for {len(scales)} scales"
    if len(scales) > 1:
        axis = q.QuantizedDimension()
        if not 0 <= axis < len(shape) or shape[axis] != len(scales):
            return f"{len(scales)} per-channel scales do not fit dimension {axis} of shape {list(shape)}"
    if n_zp and dtype in _ZERO_POINT_RANGE:
        lo, hi = _ZERO_POINT_RANGE[dtype]
        if constant and len(scales) > 1:
            lo = hi = 0  # per-channel weights are symmetric
        zp = q.ZeroPointAsNumpy()
        if zp.min() < lo or zp.max() > hi:
            return f"zero point {int(zp.min() if zp.min() < lo else zp.max())} outside [{lo}, {hi}]"
    return None


def parse_tflite(buf: bytes, path: str | os.PathLike) -> tuple[list[TensorEntry], list[OpEntry], list[int], list[int], int, str]:
    """Tensors, ops, graph inputs and outputs of subgraph 0, the subgraph count and the description, after
    checking what the counts rely on: schema version 3, known tensor types, shapes of rank <= `MAX_RANK` with
    no dimension below -1 and at most `MAX_TENSOR_BYTES`, buffer and operator-code indices in range, constant
    buffers of exactly their shape's size inside the file, tensor indices of ops and of the graph in range.

    Raises:
        AuditError: "not a valid TFLite model: WHAT", or not readable at all.
    """
    try:
        return _parse_tflite(buf, Path(path))
    except AuditError:
        raise
    except (struct.error, IndexError, TypeError, ValueError, OverflowError, AttributeError) as exc:
        # a damaged flatbuffer fails in many ways: offsets outside the file, numbers out of their type's range
        raise AuditError(f"{path}: not a readable TFLite model ({type(exc).__name__}: {one_line(str(exc))})") from None


def _parse_tflite(buf: bytes, path: Path) -> tuple[list[TensorEntry], list[OpEntry], list[int], list[int], int, str]:
    schema = tflite_schema()
    model = read_tflite_model(buf, path)
    type_names = enum_names(schema.TensorType)
    op_names = builtin_names()
    if model.SubgraphsLength() < 1:
        raise AuditError(f"{path}: TFLite model has no subgraph")
    if model.Version() != 3:
        raise AuditError(f"{path}: not a valid TFLite model: schema version {model.Version()}, expected 3")
    sg = model.Subgraphs(0)
    n_buffers = model.BuffersLength()
    tensors = []

    def invalid(what: str) -> AuditError:
        return AuditError(f"{path}: not a valid TFLite model: {what}")

    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        if t.Type() not in type_names:
            raise invalid(f"tensor {i} has unknown type {t.Type()}")
        dtype = type_names[t.Type()]
        width = TFLITE_WIDTHS.get(dtype, 0)
        if len(shape) > MAX_RANK or any(d < -1 for d in shape):
            raise invalid(f"tensor {i} has shape {list(shape)}")
        elements = shape_product([max(d, 1) for d in shape])
        need = ceil_bytes(elements, width)
        if need > MAX_TENSOR_BYTES:
            raise invalid(f"tensor {i} of shape {list(shape)} would need over {MAX_TENSOR_BYTES:,} bytes")
        b = t.Buffer()
        if not 0 <= b < n_buffers:
            raise invalid(f"tensor {i} refers to buffer {b}, but the model has {n_buffers}")
        const_bytes = 0
        if b > 0:
            buffer = model.Buffers(b)
            const_bytes = buffer.DataLength()
            size = getattr(buffer, "Size", None)
            if const_bytes == 0 and size is not None and buffer.Offset() > 1:
                const_bytes = int(size())  # models over 2 GB keep data outside the flatbuffer
                if buffer.Offset() + const_bytes > len(buf):
                    raise invalid(f"buffer {b} lies outside the file")
            elif const_bytes > len(buf):
                raise invalid(f"buffer {b} declares {const_bytes:,} bytes in a {len(buf):,}-byte file")
            if const_bytes and width and dtype != "STRING" and const_bytes != need:
                raise invalid(f"constant tensor {i} of shape {list(shape)} ({dtype.lower()}) holds {const_bytes:,} "
                              f"bytes, expected {need:,}")
        name = (t.Name() or b"").decode("utf-8", "replace")
        q = t.Quantization()
        bad_quant = _check_quantization(q, dtype, shape, const_bytes > 0)
        if bad_quant:
            raise invalid(f"tensor {i} ({dtype.lower()}): {bad_quant}")
        quant_bytes = 0 if q is None else 4 * (q.ScaleLength() + q.MinLength() + q.MaxLength()) + 8 * q.ZeroPointLength()
        tensors.append(TensorEntry(name, shape, dtype, width, const_bytes, b, bool(t.IsVariable()), quant_bytes))
    ops = []
    n_codes = model.OperatorCodesLength()
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        if not 0 <= op.OpcodeIndex() < n_codes:
            raise invalid(f"op {k} has operator code {op.OpcodeIndex()}, but the model has {n_codes}")
        oc = model.OperatorCodes(op.OpcodeIndex())
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        name = op_names.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            name = "CUSTOM:" + (oc.CustomCode() or b"?").decode("utf-8", "replace")
        options: dict[str, int] = {}
        table = op.BuiltinOptions()
        if table is not None and name in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"):
            pool = schema.Pool2DOptions()
            pool.Init(table.Bytes, table.Pos)
            options = {"filter_h": pool.FilterHeight(), "filter_w": pool.FilterWidth()}
        elif table is not None and name == "BATCH_MATMUL":
            bmm = schema.BatchMatMulOptions()
            bmm.Init(table.Bytes, table.Pos)
            options = {"adj_x": int(bmm.AdjX())}
        ins = [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []
        outs = [int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
        for i in ins + outs:  # -1: an optional input left out
            if not -1 <= i < len(tensors) or (i == -1 and i in outs):
                raise invalid(f"op {k} ({name}) refers to tensor {i}, but the graph has {len(tensors)}")
        ops.append(OpEntry(name, ins, outs, options))
    g_in = [int(i) for i in sg.InputsAsNumpy()] if sg.InputsLength() else []
    g_out = [int(i) for i in sg.OutputsAsNumpy()] if sg.OutputsLength() else []
    for i in g_in + g_out:
        if not 0 <= i < len(tensors):
            raise invalid(f"the graph's inputs or outputs refer to tensor {i}, but it has {len(tensors)}")
    desc = (model.Description() or b"").decode("utf-8", "replace")
    return tensors, ops, g_in, g_out, model.SubgraphsLength(), desc


def activation_tensors(tensors: list[TensorEntry], ops: list[OpEntry], graph_inputs: list[int]) -> list[int]:
    """Indices of the activations: the tensors without constant data that the graph reads or writes."""
    used = set(graph_inputs)
    for op in ops:
        used.update(i for i in op.inputs + op.outputs if i >= 0)
    return [i for i, t in enumerate(tensors) if t.const_bytes == 0 and i in used]


# --------------------------------------------------------------------------------------------------
# Per-operator MAC rules of a TFLite graph (docs/audit.md lists them)
# --------------------------------------------------------------------------------------------------
ELEMENTWISE_TFLITE = frozenset({
    "ADD", "SUB", "MUL", "DIV", "SQUARED_DIFFERENCE", "PRELU", "LEAKY_RELU", "HARD_SWISH", "LOGISTIC", "TANH",
    "EXP", "LOG", "SQRT", "RSQRT", "SQUARE", "POW", "SOFTMAX", "LOG_SOFTMAX", "GELU", "ELU", "FLOOR_DIV",
    "FLOOR_MOD", "L2_NORMALIZATION", "SIN", "COS",
})
"""One MAC per output element."""

FREE_TFLITE = frozenset({
    "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "PAD", "PADV2", "MIRROR_PAD", "CONCATENATION", "SPLIT",
    "SPLIT_V", "SLICE", "STRIDED_SLICE", "PACK", "UNPACK", "GATHER", "GATHER_ND", "TILE", "BROADCAST_TO",
    "SHAPE", "CAST", "QUANTIZE", "DEQUANTIZE", "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "MAXIMUM",
    "MINIMUM", "MAX_POOL_2D", "REDUCE_MAX", "REDUCE_MIN", "ARG_MAX", "ARG_MIN", "ABS", "NEG", "FLOOR", "CEIL",
    "ROUND", "SPACE_TO_DEPTH", "DEPTH_TO_SPACE", "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND",
    "RESIZE_NEAREST_NEIGHBOR", "FILL", "ZEROS_LIKE", "ONES_LIKE", "SELECT", "SELECT_V2", "LESS", "LESS_EQUAL",
    "GREATER", "GREATER_EQUAL", "EQUAL", "NOT_EQUAL", "LOGICAL_AND", "LOGICAL_OR", "LOGICAL_NOT", "RANGE",
    "REVERSE_V2", "SIGN", "IDENTITY",
})
"""Data movement, comparisons, clamps and (de)quantisation: no MACs."""


def tflite_macs(op: OpEntry, tensors: list[TensorEntry]) -> tuple[int, int, bool]:
    """(deployed MACs, DCASE-rule MACs, known op) of one TFLite operator."""
    name = op.name
    ins = [tensors[i] if i >= 0 else None for i in op.inputs]
    out = tensors[op.outputs[0]] if op.outputs else None
    out_elems = shape_product(out.shape) if out is not None else 0

    def shape(slot: int) -> tuple[int, ...]:
        t = ins[slot] if slot < len(ins) else None
        return t.shape if t is not None else ()

    def const(slot: int) -> bool:
        t = ins[slot] if slot < len(ins) else None
        return t is not None and t.const_bytes > 0

    if name == "CONV_2D":  # filter (O, KH, KW, I / groups)
        macs = out_elems * shape_product(shape(1)[1:])
        return macs, macs, True
    if name == "DEPTHWISE_CONV_2D":  # filter (1, KH, KW, C x multiplier)
        macs = out_elems * shape_product(shape(1)[1:3])
        return macs, macs, True
    if name == "CONV_3D":  # filter (KD, KH, KW, I, O)
        macs = out_elems * shape_product(shape(1)[:4])
        return macs, macs, True
    if name == "TRANSPOSE_CONV":  # inputs: output_shape, filter (O, KH, KW, I), input
        macs = shape_product(shape(2)) * shape_product(shape(1)[:3])
        return macs, macs, True
    if name == "CONV_3D_TRANSPOSE":  # inputs: output_shape, filter (KD, KH, KW, O, I), input
        macs = shape_product(shape(2)) * shape_product(shape(1)[:4])
        return macs, macs, True
    if name == "FULLY_CONNECTED":  # weights (units, in)
        macs = out_elems * (shape(1)[-1] if shape(1) else 0)
        return macs, macs, True
    if name == "BATCH_MATMUL":
        a = shape(0)
        k = (a[-2] if op.options.get("adj_x") else a[-1]) if len(a) >= 2 else 0
        macs = out_elems * k
        return macs, (macs if const(1) or const(0) else 0), True
    if name in ("AVERAGE_POOL_2D", "L2_POOL_2D"):
        return out_elems * op.options.get("filter_h", 1) * op.options.get("filter_w", 1), 0, True
    if name in ("MEAN", "SUM", "REDUCE_PROD"):
        return shape_product(shape(0)), 0, True
    if name == "ADD_N":
        return out_elems * max(len(ins) - 1, 0), 0, True
    if name == "RESIZE_BILINEAR":
        return 4 * out_elems, 0, True
    if name in ELEMENTWISE_TFLITE:
        return out_elems, 0, True
    if name in FREE_TFLITE:
        return 0, 0, True
    return 0, 0, False


# --------------------------------------------------------------------------------------------------
# The graph with its constants (firmware generation, int16 placement, tests)
# --------------------------------------------------------------------------------------------------
@dataclass
class Tensor:
    """One tensor of subgraph 0.

    Attributes:
        index: tensor index in the flatbuffer.
        name: its name.
        shape: static shape.
        dtype: TFLite type name (`INT8`, `INT32`, ...).
        scales: quantisation scales (float32; one per channel for per-channel weights).
        zero_points: zero points.
        data: constant contents (None for activations); raw bytes (uint8) for a type numpy has no dtype for.
        dynamic: the shape signature leaves a dimension other than the batch unknown.
    """

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scales: np.ndarray
    zero_points: np.ndarray
    data: np.ndarray | None
    dynamic: bool = False

    @property
    def scale(self) -> float:
        return float(self.scales[0]) if len(self.scales) else 0.0

    @property
    def zero_point(self) -> int:
        return int(self.zero_points[0]) if len(self.zero_points) else 0

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    def shape4(self) -> tuple[int, int, int, int]:
        if len(self.shape) > 4:
            raise FirmwareError(f"tensor {self.name!r} has rank {len(self.shape)}; at most 4 is supported")
        return tuple([1] * (4 - len(self.shape)) + list(self.shape))  # type: ignore[return-value]


@dataclass
class Op:
    index: int
    name: str
    inputs: list[int]
    outputs: list[int]
    options: Any


@dataclass
class Graph:
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    n_subgraphs: int = 1  # the file's; `tensors` and `ops` are those of subgraph 0


NP_TYPES = {"INT8": np.int8, "INT32": np.int32, "INT64": np.int64, "UINT8": np.uint8, "INT16": np.int16,
            "FLOAT32": np.float32, "FLOAT16": np.float16, "FLOAT64": np.float64, "BOOL": np.bool_}
"""TFLite tensor types whose constants `read_graph` returns as typed numpy arrays."""


def read_graph(path: str | os.PathLike) -> Graph:
    """Tensors (with their constants) and operators of subgraph 0 of a .tflite file, after `parse_tflite`'s
    checks and LiteRT's (`verify_tflite`): nothing here reads a damaged file.

    Raises:
        AuditError: the file is missing or not a valid TFLite model.
    """
    path = Path(path)
    if not path.is_file():
        raise AuditError(f"model not found: {path}")
    buf = path.read_bytes()
    parse_tflite(buf, path)
    verify_tflite(path)
    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    sg = model.subgraphs[0]
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    opnames = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    tensors = []
    for i, t in enumerate(sg.tensors):
        dtype = types.get(t.type, f"TYPE_{t.type}")
        q = t.quantization
        scales = np.asarray(q.scale if q is not None and q.scale is not None else [], dtype=np.float32)
        zps = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [], dtype=np.int64)
        data = None
        raw = model.buffers[t.buffer].data if 0 < t.buffer < len(model.buffers) else None
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        if raw is not None and len(raw):
            data = np.asarray(raw, dtype=np.uint8)
            if dtype in NP_TYPES:
                data = np.frombuffer(data.tobytes(), dtype=NP_TYPES[dtype])
                data = data.reshape(shape) if shape else data.reshape(())
        name = t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else str(t.name)
        dynamic = t.shapeSignature is not None and any(int(d) < 0 for d in list(t.shapeSignature)[1:])
        tensors.append(Tensor(i, name, shape, dtype, scales, zps, data, dynamic))
    ops = []
    for k, op in enumerate(sg.operators):
        oc = model.operatorCodes[op.opcodeIndex]
        code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
        name = opnames.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            custom = oc.customCode.decode("utf-8", "replace") if isinstance(oc.customCode, bytes) else oc.customCode
            name = f"CUSTOM:{custom}"
        ins = [int(i) for i in (op.inputs if op.inputs is not None else [])]
        outs = [int(i) for i in (op.outputs if op.outputs is not None else [])]
        ops.append(Op(k, name, ins, outs, op.builtinOptions))
    return Graph(tensors, ops, [int(i) for i in sg.inputs], [int(i) for i in sg.outputs], len(model.subgraphs))
