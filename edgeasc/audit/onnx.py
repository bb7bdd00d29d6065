"""Audit of an .onnx file: the same figures as for a .tflite, with ONNX operator names mapped onto the same
MAC rules (docs/audit.md).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeasc.audit.result import AuditReport, LayerAudit, _read_file, peak_activation
from edgeasc.deploy.tflite_graph import (
    ceil_bytes,
    one_line,
    shape_product,
)
from edgeasc.errors import AuditError

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
