"""The model auditor: parameters, parameter memory, MACs and peak activation memory of a .tflite, an .onnx
or an edgeasc checkpoint, checked against a named budget (DCASE 2025 Task 1: 128,000 parameter bytes and
30,000,000 MACs per 1-s clip).

Two MAC counts are kept apart, because they answer different questions (docs/audit.md has the per-op rules
and the DCASE baseline as a worked example):

- `macs`, the *deployed* rule: the arithmetic the shipped graph performs, one rule per operator
  (CONV_2D = output elements x KH x KW x input channels per group, ADD = output elements, ...). On the
  MLPerf Tiny keyword-spotting DS-CNN it gives the published 2,664,768 MACs.
- `macs_dcase`, the *DCASE* rule (CPJKU/dcase2025_task1_baseline helpers/complexity.py, via torchinfo):
  only layers with weights cost MACs, parameter-free operations (additions, pooling, ReLU) cost nothing and a
  BatchNorm costs its 2 x C parameters. For a checkpoint this is the official count; for a graph it is the
  same rule applied to the graph's weighted layers (convolutions, fully connected, MatMul with a constant
  operand; BatchNorm where it was not folded).

The budget's MAC limit applies to the rule the budget was defined with (`Budget.mac_rule`; DCASE: `dcase`).
Parameter memory is counted as stored: each constant weight or bias tensor at its dtype's width (int8 1 B,
fp16 2 B, fp32/int32 4 B); integer shape, axis and padding constants are not parameters. A checkpoint is
judged at the fp16 memory the DCASE rule implies (submissions run in half precision).

.tflite files are read by `edgeasc.deploy.tflite_graph` (the flatbuffer schema classes, after its validity checks),
.onnx files with `onnx` and its shape inference; nothing is hand-decoded.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeasc.budget import BUDGETS, MAC_RULES, Budget, resolve_budget  # noqa: F401  (edgeasc.audit names)
from edgeasc.errors import AuditError, EdgeAscError
from edgeasc.deploy.tflite_graph import (
    activation_tensors,
    ceil_bytes,
    one_line,
    parse_tflite,
    shape_product,
    tflite_macs,
    verify_tflite,
)
from edgeasc.deploy.tflite_graph import read_tflite_model  # noqa: F401  (its home before edgeasc.deploy.tflite_graph; one release)

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class LayerAudit:
    """One operator (graph formats) or one leaf-module call (checkpoints).

    Attributes:
        index: position in execution order.
        name: the op's output tensor name, or the module's dotted name.
        op: operator (`CONV_2D`, `Conv`) or module type (`Conv2d`).
        params: parameter elements first used by this op.
        param_bytes: their memory as stored.
        macs: MACs by the deployed rule (checkpoints: the DCASE rule).
        macs_dcase: MACs by the DCASE rule.
        output_shape: shape of the first output.
    """

    index: int
    name: str
    op: str
    params: int
    param_bytes: int
    macs: int
    macs_dcase: int
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class AuditReport:
    """Complexity of one model file, and how it compares with a budget.

    Attributes:
        path: the file audited.
        format: `tflite`, `onnx` or `checkpoint`.
        model_name: edgeasc model name when known, else the file stem.
        param_count: parameter elements (weights and biases; checkpoints: `model.parameters()`).
        param_bytes: parameter memory (graphs: as stored; checkpoints: at fp16, as DCASE implies).
        param_bytes_by_dtype: `param_bytes` split by dtype.
        macs: MACs by the deployed rule (every operator).
        macs_dcase: MACs by the DCASE rule (layers with weights; BatchNorm 2 x C).
        macs_by_op: deployed MACs per operator type.
        peak_activation_bytes: the largest sum of simultaneously live activation tensors in execution order.
        peak_activation_op: index of the op where that peak occurs (-1 when unknown).
        layers: per-op rows in execution order.
        warnings: unknown operators, dynamic shapes and the like.
        details: format-specific figures (checkpoints: `dcase`, `deployed`, `fvcore`).
        budget_name: the budget checked (None: no budget).
        budget: its limits.
    """

    path: str
    format: str
    model_name: str
    param_count: int
    param_bytes: int
    param_bytes_by_dtype: dict[str, int]
    macs: int
    macs_dcase: int
    macs_by_op: dict[str, int]
    peak_activation_bytes: int
    peak_activation_op: int
    layers: tuple[LayerAudit, ...]
    warnings: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)
    budget_name: str | None = None
    budget: Budget | None = None

    def budget_macs(self) -> int:
        """The MAC figure the budget limits (by its `mac_rule`)."""
        rule = self.budget.mac_rule if self.budget else "dcase"
        return self.macs_dcase if rule == "dcase" else self.macs

    @property
    def violations(self) -> list[str]:
        """One sentence per exceeded limit, with the excess (empty when within budget or no budget)."""
        if self.budget is None:
            return []
        out = []
        if self.param_bytes > self.budget.param_bytes:
            out.append(f"parameter memory {self.param_bytes:,} bytes exceeds {self.budget.param_bytes:,} "
                       f"by {self.param_bytes - self.budget.param_bytes:,} bytes")
        macs = self.budget_macs()
        if macs > self.budget.macs:
            out.append(f"MACs ({self.budget.mac_rule} rule) {macs:,} exceed {self.budget.macs:,} "
                       f"by {macs - self.budget.macs:,}")
        return out

    @property
    def within_budget(self) -> bool | None:
        """True/False against the budget; None when no budget was given."""
        return None if self.budget is None else not self.violations

    def to_dict(self, layers: bool = True) -> dict[str, Any]:
        """JSON-ready dict (the `--json` output)."""
        d = {
            "path": self.path,
            "format": self.format,
            "model_name": self.model_name,
            "param_count": self.param_count,
            "param_bytes": self.param_bytes,
            "param_bytes_by_dtype": dict(self.param_bytes_by_dtype),
            "macs": self.macs,
            "macs_dcase": self.macs_dcase,
            "macs_by_op": dict(self.macs_by_op),
            "peak_activation_bytes": self.peak_activation_bytes,
            "peak_activation_op": self.peak_activation_op,
            "budget": None if self.budget is None else {"name": self.budget_name, **dataclasses.asdict(self.budget)},
            "within_budget": self.within_budget,
            "violations": self.violations,
            "warnings": list(self.warnings),
            "details": self.details,
        }
        if layers:
            d["layers"] = [dict(dataclasses.asdict(r), output_shape=list(r.output_shape)) for r in self.layers]
        return d


# --------------------------------------------------------------------------------------------------
# Per-operator MAC rules (docs/audit.md lists them; TFLite names, ONNX names map onto the same rules)
# --------------------------------------------------------------------------------------------------
_TFLITE_BIAS_SLOTS = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "TRANSPOSE_CONV": 3, "CONV_3D": 2,
                      "CONV_3D_TRANSPOSE": 3}
"""Input slot of the (often int32) bias: an integer constant there is a parameter, anywhere else it is shape
or axis data."""
_TFLITE_NON_PARAM_SLOTS = {"PADV2": 2}
"""Constant inputs that hold no weights whatever their dtype (the padding value of PADV2)."""

ELEMENTWISE_ONNX = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
    "HardSwish", "HardSigmoid", "LeakyRelu", "PRelu", "Erf", "Gelu", "Reciprocal", "Elu", "Selu", "Sin", "Cos",
    "Mod", "QLinearAdd", "QLinearMul", "LpNormalization",
})
FREE_ONNX = frozenset({
    "Relu", "Clip", "Max", "Min", "MaxPool", "GlobalMaxPool", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
    "Transpose", "Concat", "Split", "Slice", "Pad", "Gather", "GatherElements", "GatherND", "Shape", "Size",
    "Cast", "Identity", "Constant", "ConstantOfShape", "Expand", "Tile", "QuantizeLinear", "DequantizeLinear",
    "DynamicQuantizeLinear", "ReduceMax", "ReduceMin", "ArgMax", "ArgMin", "Abs", "Neg", "Floor", "Ceil", "Round",
    "Sign", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Not", "And", "Or", "Where",
    "DepthToSpace", "SpaceToDepth", "Range", "Dropout",
})
_ONNX_WEIGHTED = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1, "QLinearConv": 3, "ConvInteger": 1,
                  "MatMulInteger": 1, "QLinearMatMul": 3}
"""ONNX ops whose cost the DCASE rule charges, with the input slot holding the weights."""
_ONNX_INT_BIAS_SLOTS = {"QLinearConv": 8}

_ONNX_STRUCTURAL_SLOTS: dict[str, set[int]] = {"Pad": {1, 2, 3}}
"""Constant inputs that describe the operation, not parameters: Pad's pads, constant value and axes (the
normalised-input stem pads with the raw log-mel's zero, a float scalar; torch holds it as a Python float)."""


# --------------------------------------------------------------------------------------------------
# Peak activation memory
# --------------------------------------------------------------------------------------------------
def peak_activation(
    n_ops: int,
    sizes: Mapping[Any, int],
    first_use: Mapping[Any, int],
    last_use: Mapping[Any, int],
) -> tuple[int, int]:
    """Largest sum of live activation bytes over ops in execution order.

    A tensor is live from the op that produces it (op 0 for graph inputs) to its last consumer (the end for
    graph outputs), both inclusive: an op's inputs and outputs are live together, nothing is in place.

    Returns:
        (peak bytes, index of the first op where it occurs; -1 for an empty graph)
    """
    if n_ops == 0:
        return (sum(sizes.values()), -1)
    delta = [0] * (n_ops + 1)
    for t, size in sizes.items():
        a, b = first_use.get(t, 0), last_use.get(t, n_ops - 1)
        a, b = max(0, min(a, n_ops - 1)), max(0, min(b, n_ops - 1))
        if b < a:
            b = a
        delta[a] += size
        delta[b + 1] -= size
    live, peak, at = 0, -1, -1
    for k in range(n_ops):
        live += delta[k]
        if live > peak:
            peak, at = live, k
    return peak, at


# --------------------------------------------------------------------------------------------------
# TFLite
# --------------------------------------------------------------------------------------------------
def _shape_str(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape) if shape else "scalar"


def audit_tflite(path: str | os.PathLike) -> AuditReport:
    """Audit a .tflite model (main subgraph) by the deployed and DCASE rules.

    Raises:
        AuditError: the file is missing or not a readable TFLite flatbuffer.
    """
    path = Path(path)
    buf = _read_file(path)
    tensors, ops, g_in, g_out, n_subgraphs, _ = parse_tflite(buf, path)
    warnings = []
    unverified = verify_tflite(path)
    if unverified:
        warnings.append(unverified)
    if n_subgraphs > 1:
        warnings.append(f"{n_subgraphs} subgraphs: only the main subgraph (0) is audited")

    consumers: dict[int, list[int]] = defaultdict(list)
    producer: dict[int, int] = {}
    for k, op in enumerate(ops):
        for i in op.inputs:
            if i >= 0:
                consumers[i].append(k)
        for i in op.outputs:
            producer[i] = k

    # Parameters: constant tensors with data, except integer constants outside a bias slot (shapes, axes).
    seen_buffers: set[int] = set()
    by_dtype: dict[str, int] = defaultdict(int)
    layers = []
    macs_by_op: dict[str, int] = defaultdict(int)
    total_macs = total_dcase = total_params = 0
    for k, op in enumerate(ops):
        params = pbytes = 0
        bias_slot = _TFLITE_BIAS_SLOTS.get(op.name)
        for slot, i in enumerate(op.inputs):
            if i < 0:
                continue
            t = tensors[i]
            if t.const_bytes == 0 or t.buffer in seen_buffers:
                continue
            if t.dtype in ("INT32", "INT64", "UINT32", "UINT64", "BOOL", "STRING") and slot != bias_slot:
                continue
            if _TFLITE_NON_PARAM_SLOTS.get(op.name) == slot:
                continue
            seen_buffers.add(t.buffer)
            params += shape_product(t.shape)
            pbytes += t.const_bytes
            by_dtype[t.dtype.lower()] += t.const_bytes
        macs, macs_dcase, known = tflite_macs(op, tensors)
        if not known:
            warnings.append(f"op {k}: {op.name} has no MAC rule; counted as 0 MACs")
        macs_by_op[op.name] += macs
        total_macs += macs
        total_dcase += macs_dcase
        total_params += params
        out = tensors[op.outputs[0]] if op.outputs else None
        layers.append(LayerAudit(k, out.name if out else "", op.name, params, pbytes, macs, macs_dcase,
                                 out.shape if out else ()))

    # Activations: every tensor without constant data that the graph reads or writes.
    activation_dtypes: dict[str, int] = defaultdict(int)
    sizes, first, last = {}, {}, {}
    n = len(ops)
    for i in activation_tensors(tensors, ops, g_in):
        t = tensors[i]
        if any(d < 0 for d in t.shape):
            warnings.append(f"tensor {t.name!r} has a dynamic shape {t.shape}; taken as 1 per unknown dim")
        sizes[i] = ceil_bytes(shape_product([max(d, 1) for d in t.shape]), t.width)
        activation_dtypes[t.dtype.lower()] += 1
        first[i] = 0 if (i in g_in or t.variable or i not in producer) else producer[i]
        last[i] = n - 1 if (i in g_out or t.variable or not consumers.get(i)) else max(consumers[i])
    peak, at = peak_activation(n, sizes, first, last)

    meta_name = path.stem
    try:
        from edgeasc.deploy.runtime import read_tflite_metadata

        meta = read_tflite_metadata(path)
        if meta and meta.get("model_name"):
            meta_name = str(meta["model_name"])
    except EdgeAscError:
        pass  # a foreign or damaged metadata entry does not stop the audit; the file stem names the model
    return AuditReport(
        path=str(path), format="tflite", model_name=meta_name, param_count=total_params,
        param_bytes=sum(by_dtype.values()), param_bytes_by_dtype=dict(by_dtype), macs=total_macs,
        macs_dcase=total_dcase, macs_by_op=dict(macs_by_op), peak_activation_bytes=peak, peak_activation_op=at,
        layers=tuple(layers), warnings=tuple(warnings),
        details={"rule": "deployed (TFLite operators)", "file_bytes": len(buf),
                 "quantization_param_bytes": sum(t.quant_bytes for t in tensors),
                 "input_shapes": [list(tensors[i].shape) for i in g_in],
                 "input_dtypes": [tensors[i].dtype.lower() for i in g_in],
                 "output_dtypes": [tensors[i].dtype.lower() for i in g_out],
                 "activation_dtypes": dict(activation_dtypes),
                 "ops_without_rule": sorted({op.name for op in ops if not tflite_macs(op, tensors)[2]})},
    )


# --------------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------------
def _onnx_dtype(onnx: Any, elem_type: int) -> tuple[str, float]:
    """(dtype name, bytes per element) of an ONNX TensorProto element type."""
    name = onnx.TensorProto.DataType.Name(elem_type).lower() if elem_type else "undefined"
    widths = {"float": 4, "uint8": 1, "int8": 1, "uint16": 2, "int16": 2, "int32": 4, "int64": 8, "string": 1,
              "bool": 1, "float16": 2, "double": 8, "uint32": 4, "uint64": 8, "complex64": 8, "complex128": 16,
              "bfloat16": 2, "uint4": 0.5, "int4": 0.5}
    width = widths.get(name, 1 if name.startswith("float8") else 0)
    return ("float32" if name == "float" else name), width


def audit_onnx(path: str | os.PathLike) -> AuditReport:
    """Audit an .onnx model by the deployed and DCASE rules (shapes from ONNX shape inference).

    Symbolic input dimensions (a dynamic batch) are taken as 1, with a warning.

    Raises:
        AuditError: the file is missing, not ONNX, or fails the ONNX checker.
    """
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError:
        raise AuditError("auditing .onnx files needs the `onnx` package (pip install 'onnx==1.23.2')") from None
    path = Path(path)
    buf = _read_file(path)
    try:
        model = onnx.load_from_string(buf)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise AuditError(f"{path}: not an ONNX model ({type(exc).__name__}: {one_line(str(exc)) or 'decode error'})") from None
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        raise AuditError(f"{path}: not a valid ONNX model ({one_line(str(exc)) or type(exc).__name__})") from None
    if not model.graph.node:
        raise AuditError(f"{path}: the ONNX graph has no nodes")

    warnings: list[str] = []
    model = onnx.ModelProto.FromString(model.SerializeToString())
    init_names = {t.name for t in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in init_names:
            continue
        for d in inp.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                warnings.append(f"input {inp.name!r}: symbolic dim {d.dim_param or '?'!r} taken as 1")
                d.Clear()
                d.dim_value = 1
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:  # onnx raises InferenceError and others; the graph is still auditable without
        warnings.append(f"shape inference failed ({type(exc).__name__}); unknown shapes count 0")
        inferred = model
    graph = inferred.graph

    # Constants: initializers and Constant nodes.
    consts: dict[str, tuple[tuple[int, ...], str, float]] = {}
    for t in graph.initializer:
        consts[t.name] = (tuple(int(d) for d in t.dims), *_onnx_dtype(onnx, t.data_type))
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for a in node.attribute:
                if a.name == "value":
                    consts[node.output[0]] = (tuple(int(d) for d in a.t.dims), *_onnx_dtype(onnx, a.t.data_type))
                elif a.name in ("value_float", "value_int"):
                    consts[node.output[0]] = ((), *_onnx_dtype(onnx, 1 if a.name == "value_float" else 7))
                elif a.name in ("value_floats", "value_ints"):
                    n_el = len(a.floats) if a.name == "value_floats" else len(a.ints)
                    consts[node.output[0]] = ((n_el,), *_onnx_dtype(onnx, 1 if a.name == "value_floats" else 7))
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, tuple[str, float]] = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        tt = vi.type.tensor_type
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            shapes[vi.name] = tuple(int(d.dim_value) for d in tt.shape.dim)
        dtypes[vi.name] = _onnx_dtype(onnx, tt.elem_type)
    for name, (shape, dtype, width) in consts.items():
        shapes[name] = shape
        dtypes[name] = (dtype, width)

    def shape(name: str) -> tuple[int, ...] | None:
        return shapes.get(name)

    nodes = [nd for nd in graph.node if nd.op_type != "Constant"]
    seen: set[str] = set()
    by_dtype: dict[str, int] = defaultdict(int)
    macs_by_op: dict[str, int] = defaultdict(int)
    layers = []
    total_macs = total_dcase = total_params = 0
    for k, node in enumerate(nodes):
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}"
        params = pbytes = 0
        for slot, name in enumerate(node.input):
            if not name or name not in consts or name in seen or slot in _ONNX_STRUCTURAL_SLOTS.get(node.op_type, ()):
                continue
            cshape, dtype, width = consts[name]
            is_int = dtype in ("int32", "int64", "uint32", "uint64", "bool", "string", "int16", "uint16")
            if is_int and _ONNX_INT_BIAS_SLOTS.get(node.op_type) != slot:
                continue
            seen.add(name)
            params += shape_product(cshape)
            b = ceil_bytes(shape_product(cshape), width)
            pbytes += b
            by_dtype[dtype] += b
        out_shape = shape(node.output[0]) if node.output else None
        macs, macs_dcase, known = _onnx_macs(node, shape, consts, out_shape)
        if not known:
            warnings.append(f"node {k} ({node.name or op}): {op} has no MAC rule; counted as 0 MACs")
        elif macs is None:
            warnings.append(f"node {k} ({node.name or op}): shapes unknown; counted as 0 MACs")
        macs, macs_dcase = macs or 0, macs_dcase or 0
        macs_by_op[op] += macs
        total_macs += macs
        total_dcase += macs_dcase
        total_params += params
        layers.append(LayerAudit(k, node.output[0] if node.output else node.name, op, params, pbytes, macs,
                                 macs_dcase, out_shape or ()))

    # Activations: graph inputs and node outputs.
    g_in = [i.name for i in graph.input if i.name not in consts]
    g_out = {o.name for o in graph.output}
    producer: dict[str, int] = {}
    last: dict[str, int] = {}
    for k, node in enumerate(nodes):
        for name in node.input:
            if name and name not in consts:
                last[name] = k
        for name in node.output:
            producer[name] = k
    sizes, first, lastu = {}, {}, {}
    n = len(nodes)
    for name in list(g_in) + list(producer):
        if name in sizes:
            continue
        s = shape(name)
        if s is None:
            warnings.append(f"tensor {name!r}: shape unknown; not counted in peak activation memory")
            continue
        sizes[name] = ceil_bytes(shape_product(s), dtypes.get(name, ("float32", 4))[1])
        first[name] = producer.get(name, 0)
        lastu[name] = n - 1 if name in g_out or name not in last else last[name]
    peak, at = peak_activation(n, sizes, first, lastu)

    meta = {p.key: p.value for p in model.metadata_props}
    return AuditReport(
        path=str(path), format="onnx", model_name=meta.get("model_name", path.stem), param_count=total_params,
        param_bytes=sum(by_dtype.values()), param_bytes_by_dtype=dict(by_dtype), macs=total_macs,
        macs_dcase=total_dcase, macs_by_op=dict(macs_by_op), peak_activation_bytes=peak, peak_activation_op=at,
        layers=tuple(layers), warnings=tuple(warnings),
        details={"rule": "deployed (ONNX operators)", "opset": max((o.version for o in model.opset_import
                                                                   if o.domain in ("", "ai.onnx")), default=0),
                 "input_shapes": [list(shape(n) or ()) for n in g_in]},
    )


def _attr(node: Any, name: str, default: Any = None) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _onnx_macs(node: Any, shape: Any, consts: Mapping[str, Any], out_shape: tuple[int, ...] | None
               ) -> tuple[int | None, int | None, bool]:
    """(deployed MACs, DCASE-rule MACs, known op); None MACs when a needed shape is unknown."""
    op = node.op_type
    ins = list(node.input)

    def s(slot: int) -> tuple[int, ...] | None:
        return shape(ins[slot]) if slot < len(ins) and ins[slot] else None

    out_elems = shape_product(out_shape) if out_shape is not None else None
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        w = s(_ONNX_WEIGHTED[op])  # (O, I / groups, KH, KW)
        if w is None or out_elems is None:
            return None, None, True
        macs = out_elems * shape_product(w[1:])
        return macs, macs, True
    if op == "ConvTranspose":
        x, w = s(0), s(1)  # w: (I, O / groups, KH, KW)
        if x is None or w is None:
            return None, None, True
        macs = shape_product(x) * shape_product(w[1:])
        return macs, macs, True
    if op in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"):
        a = s(0)
        if a is None or out_elems is None:
            return None, None, True
        k = a[0] if (op == "Gemm" and _attr(node, "transA", 0)) else a[-1]
        macs = out_elems * k
        weighted = any(i in consts for i in ins[:2]) or op == "Gemm"
        return macs, (macs if weighted else 0), True
    if op == "BatchNormalization":
        c = s(1)
        if out_elems is None:
            return None, None, True
        return out_elems, (2 * shape_product(c) if c is not None else 0), True
    if op in ("InstanceNormalization", "LayerNormalization", "GroupNormalization"):
        return out_elems, 0, True
    if op == "AveragePool":
        kernel = _attr(node, "kernel_shape", [])
        return (None if out_elems is None else out_elems * shape_product(kernel)), 0, True
    if op in ("GlobalAveragePool", "ReduceMean", "ReduceSum", "ReduceL2", "ReduceProd"):
        x = s(0)
        return (None if x is None else shape_product(x)), 0, True
    if op == "Sum":
        return (None if out_elems is None else out_elems * max(len(ins) - 1, 0)), 0, True
    if op == "Resize":
        mode = _attr(node, "mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        return (0 if mode == "nearest" else (None if out_elems is None else 4 * out_elems)), 0, True
    if op in ELEMENTWISE_ONNX:
        return out_elems, 0, True
    if op in FREE_ONNX:
        return 0, 0, True
    return 0, 0, False


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------
def audit_checkpoint(path: str | os.PathLike) -> AuditReport:
    """Audit an edgeasc checkpoint: the DCASE rule (official), the deployed rule (its BatchNorm-folded ONNX
    export, audited like any .onnx) and fvcore's count as an independent cross-check.

    `param_count`, `param_bytes` (fp16, as the DCASE rule implies) and `macs_dcase` follow the DCASE rule;
    `macs`, `macs_by_op` and `peak_activation_bytes` (float32 activations) the deployed graph.
    """
    from torch import nn

    from edgeasc.checkpoint import load_model
    from edgeasc.complexity import count_dcase, param_bytes_by_dtype
    from edgeasc.evaluate import frontend_of
    from edgeasc.deploy.onnx import export_onnx, fold_batchnorm

    from edgeasc.errors import CheckpointError

    path = Path(path)
    if _read_file(path)[:2] != b"PK":
        raise AuditError(f"{path}: not an edgeasc checkpoint (not a PyTorch zip archive)")
    try:
        model, ckpt = load_model(path)
    except CheckpointError as exc:
        raise AuditError(one_line(str(exc))) from None
    fe = frontend_of(ckpt)
    input_size = (1, 1, fe.n_mels, fe.n_frames)
    dcase = count_dcase(model, input_size)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    bn_params = sum(p.numel() for m in bns for p in m.parameters(recurse=False))
    bn_macs = sum(r.macs for r in dcase.layers if r.type.startswith("BatchNorm"))

    # Half precision for float parameters (what DCASE submissions deploy); narrower dtypes as stored.
    fp16_by_dtype: dict[str, int] = defaultdict(int)
    for p in model.parameters():
        if p.is_floating_point() and p.element_size() >= 2:
            fp16_by_dtype["float16"] += p.numel() * 2
        else:
            fp16_by_dtype[str(p.dtype).removeprefix("torch.")] += p.numel() * p.element_size()

    with tempfile.TemporaryDirectory(prefix="edgeasc_audit_") as tmp:
        onnx_path = export_onnx(model, Path(tmp) / "model.onnx", input_size=input_size,
                                metadata={"model_name": ckpt["model_config"]["name"]})
        deployed = audit_onnx(onnx_path)
    # Parameters after folding, from the folded model itself: the ONNX exporter stores equal initializers
    # once (all-zero biases of an untrained model), which is true of that file but not of the network.
    # TFLite's int8 scheme: int8 weights, int32 biases (every folded conv has one).
    folded = fold_batchnorm(model)
    deployed_params = sum(p.numel() for p in folded.parameters())
    int8_bytes = sum(p.numel() * (4 if name.endswith("bias") else 1) for name, p in folded.named_parameters())

    fv = fvcore_count(model, input_size)
    layers = tuple(LayerAudit(i, r.name, r.type, r.params, r.params * 2, r.macs, r.macs, r.output_shape)
                   for i, r in enumerate(dcase.layers))
    macs_by_type: dict[str, int] = defaultdict(int)
    for r in dcase.layers:
        macs_by_type[r.type] += r.macs
    details = {
        "rule": "param_count, param_bytes (fp16) and macs_dcase: DCASE 2025 rule (torchinfo, CPJKU "
                "helpers/complexity.py); macs, macs_by_op, peak_activation_bytes: deployed rule on the "
                "BatchNorm-folded ONNX export",
        "input_size": list(input_size),
        "dcase": {"params": dcase.params, "macs": dcase.macs, "param_bytes_fp16": dcase.param_bytes(2),
                  "param_bytes_int8": dcase.param_bytes(1), "macs_by_module_type": dict(macs_by_type),
                  "batchnorm_params": bn_params, "batchnorm_channels": bn_params // 2, "batchnorm_macs": bn_macs},
        "stored_param_bytes_by_dtype": param_bytes_by_dtype(model),
        "deployed": {"params": deployed_params, "param_bytes_fp32": 4 * deployed_params,
                     "param_bytes_int8": int8_bytes, "macs": deployed.macs, "macs_dcase_rule": deployed.macs_dcase,
                     "macs_by_op": deployed.macs_by_op,
                     "peak_activation_bytes_fp32": deployed.peak_activation_bytes},
        "fvcore": {"macs": None if fv is None else fv["total"],
                   "by_operator": None if fv is None else {k: v for k, v in fv.items() if k != "total"},
                   "rule": "fvcore FlopCountAnalysis: one fused multiply-add = 1, conv bias ignored, BatchNorm in "
                           "eval = 2 per element, aten::add and aten::mean not counted"
                   if fv is not None else "fvcore not installed (pip install 'fvcore==0.1.5.post20221221')"},
    }
    return AuditReport(
        path=str(path), format="checkpoint", model_name=ckpt["model_config"]["name"], param_count=dcase.params,
        param_bytes=sum(fp16_by_dtype.values()), param_bytes_by_dtype=dict(fp16_by_dtype), macs=deployed.macs,
        macs_dcase=dcase.macs, macs_by_op=dict(deployed.macs_by_op),
        peak_activation_bytes=deployed.peak_activation_bytes, peak_activation_op=deployed.peak_activation_op,
        layers=layers, warnings=deployed.warnings, details=details,
    )


def fvcore_count(model: Any, input_size: Sequence[int]) -> dict[str, int] | None:
    """fvcore's count (1 per fused multiply-add) of `model` on zeros by operator, plus "total"; None when
    fvcore is not installed."""
    import copy
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fvcore applies torch.jit.script at import
        try:
            from fvcore.nn import FlopCountAnalysis
        except ImportError:
            return None
    work = copy.deepcopy(model).float().cpu().eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit tracing notices
        fca = FlopCountAnalysis(work, torch.zeros(tuple(input_size)))
        fca.unsupported_ops_warnings(False)
        fca.uncalled_modules_warnings(False)
        out = {op: int(v) for op, v in fca.by_operator().items()}
        out["total"] = int(fca.total())
    return out


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------
FORMATS = {".tflite": "tflite", ".onnx": "onnx", ".pt": "checkpoint", ".pth": "checkpoint", ".ckpt": "checkpoint"}


def _read_file(path: Path) -> bytes:
    if not path.exists():
        raise AuditError(f"model not found: {path}")
    if not path.is_file():
        raise AuditError(f"{path} is not a file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc.strerror}") from None


def detect_format(path: str | os.PathLike) -> str:
    """`tflite`, `onnx` or `checkpoint` from the suffix, else from the first bytes."""
    path = Path(path)
    if path.suffix.lower() in FORMATS:
        return FORMATS[path.suffix.lower()]
    head = _read_file(path)[:8]
    if head[4:8] == b"TFL3":
        return "tflite"
    if head[:2] == b"PK":
        return "checkpoint"
    raise AuditError(f"{path}: unsupported model file; expected .tflite, .onnx or an edgeasc checkpoint (.pt)")


def audit_model(
    path: str | os.PathLike,
    budget: str | None = "dcase2025",
    max_param_bytes: int | None = None,
    max_macs: int | None = None,
    mac_rule: str | None = None,
) -> AuditReport:
    """Audit a .tflite, .onnx or edgeasc checkpoint and attach a budget.

    Args:
        path: the model file.
        budget: a name from `BUDGETS`, or None / "none" for no budget.
        max_param_bytes, max_macs: override the budget's limits.
        mac_rule: which MAC count the limit applies to (default: the budget's).

    Raises:
        AuditError: unreadable or unsupported file (exit code 2).
        ConfigError: unknown budget.
    """
    budget_name, limits = resolve_budget(budget, max_param_bytes, max_macs, mac_rule)
    fmt = detect_format(path)
    if fmt == "tflite":
        report = audit_tflite(path)
    elif fmt == "onnx":
        report = audit_onnx(path)
    else:
        report = audit_checkpoint(path)
    return dataclasses.replace(report, budget_name=budget_name, budget=limits)


def format_audit(report: AuditReport, layers: bool = True, name_width: int = 44) -> str:
    """Per-layer table (aligned columns), totals, then the budget verdict."""
    lines = [f"{Path(report.path).name}  ({report.format}, {report.model_name})"]
    if layers:
        head = ("#", "op", "name", "output", "params", "param B", "MACs")
        rows = [head] + [
            (str(r.index), r.op, _clip(r.name, name_width), _shape_str(r.output_shape), f"{r.params:,}",
             f"{r.param_bytes:,}", f"{r.macs:,}")
            for r in report.layers
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        right = (True, False, False, False, True, True, True)
        for row in rows:
            lines.append("  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right)).rstrip())
        lines.append("")
    dtypes = ", ".join(f"{d} {b:,} B" for d, b in sorted(report.param_bytes_by_dtype.items()))
    ops = ", ".join(f"{op} {m:,}" for op, m in sorted(report.macs_by_op.items(), key=lambda kv: -kv[1]) if m)
    mem_note = " (fp16, as the DCASE rule implies)" if report.format == "checkpoint" else " (as stored)"
    lines += [
        f"parameters            {report.param_count:,}",
        f"parameter memory      {report.param_bytes:,} bytes{mem_note}: {dtypes or 'none'}",
        f"MACs (deployed rule)  {report.macs:,}   [{ops}]",
        f"MACs (DCASE rule)     {report.macs_dcase:,}",
        f"peak activation       {report.peak_activation_bytes:,} bytes"
        + (f" (at op {report.peak_activation_op})" if report.peak_activation_op >= 0 else ""),
    ]
    if report.format == "checkpoint":
        d = report.details
        dep, dc, fv = d["deployed"], d["dcase"], d["fvcore"]
        lines += [
            f"DCASE rule            {dc['params']:,} params, {dc['macs']:,} MACs, {dc['param_bytes_fp16']:,} bytes "
            f"at fp16 (BatchNorm: {dc['batchnorm_params']:,} params, {dc['batchnorm_macs']:,} MACs)",
            f"deployed rule         {dep['params']:,} params after folding BatchNorm, {dep['macs']:,} MACs, "
            f"{dep['param_bytes_int8']:,} bytes as int8 weights + int32 biases",
            "fvcore (cross-check)  " + (f"{fv['macs']:,} ({', '.join(f'{k} {v:,}' for k, v in fv['by_operator'].items())})"
                                        if fv["macs"] is not None else "n/a") + f"; {fv['rule']}",
        ]
    for w in report.warnings:
        lines.append(f"warning: {w}")
    if report.budget is not None:
        b = report.budget
        lines.append(
            f"budget {report.budget_name}: parameter memory {report.param_bytes:,} / {b.param_bytes:,} bytes, "
            f"MACs ({b.mac_rule} rule) {report.budget_macs():,} / {b.macs:,}"
        )
        if report.violations:
            lines += [f"OVER BUDGET: {v}" for v in report.violations]
        else:
            lines.append("within budget")
    return "\n".join(lines)


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else "..." + s[-(n - 3):]
