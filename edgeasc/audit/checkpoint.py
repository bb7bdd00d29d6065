"""Audit of an edgeasc checkpoint: parameters at fp16 (as DCASE counts them), MACs by the DCASE rule and by
every operator (edgeasc.complexity), cross-checked with fvcore.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeasc.audit.onnx import audit_onnx
from edgeasc.audit.result import AuditReport, LayerAudit, _read_file
from edgeasc.deploy.tflite_graph import (
    one_line,
)
from edgeasc.errors import AuditError


def audit_checkpoint(path: str | os.PathLike) -> AuditReport:
    """Audit an edgeasc checkpoint: the DCASE rule (official), the deployed rule (its BatchNorm-folded ONNX
    export, audited like any .onnx) and fvcore's count as an independent cross-check.

    `param_count`, `param_bytes` (fp16, as the DCASE rule implies) and `macs_dcase` follow the DCASE rule;
    `macs`, `macs_by_op` and `peak_activation_bytes` (float32 activations) the deployed graph.
    """
    from torch import nn

    from edgeasc.checkpoint import frontend_of, load_model
    from edgeasc.complexity import count_dcase, param_bytes_by_dtype
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
