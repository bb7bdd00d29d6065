"""Audit of a .tflite: parameters at their stored width, MACs by the DCASE rule and by every operator, peak
activation memory, from the one TFLite reader (edgeasc.deploy.tflite_graph).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from edgeasc.audit.result import AuditReport, LayerAudit, _read_file, peak_activation
from edgeasc.deploy.tflite_graph import (
    activation_tensors,
    ceil_bytes,
    parse_tflite,
    shape_product,
    tflite_macs,
    verify_tflite,
)
from edgeasc.errors import EdgeAscError

_TFLITE_BIAS_SLOTS = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "TRANSPOSE_CONV": 3, "CONV_3D": 2,
                      "CONV_3D_TRANSPOSE": 3}
"""Input slot of the (often int32) bias: an integer constant there is a parameter, anywhere else it is shape
or axis data."""
_TFLITE_NON_PARAM_SLOTS = {"PADV2": 2}
"""Constant inputs that hold no weights whatever their dtype (the padding value of PADV2)."""


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
