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
from pathlib import Path

from edgeasc.audit.checkpoint import audit_checkpoint
from edgeasc.audit.onnx import audit_onnx
from edgeasc.audit.result import AuditReport, _read_file
from edgeasc.audit.tflite import _shape_str, audit_tflite
from edgeasc.budget import resolve_budget
from edgeasc.errors import AuditError

log = logging.getLogger(__name__)


FORMATS = {".tflite": "tflite", ".onnx": "onnx", ".pt": "checkpoint", ".pth": "checkpoint", ".ckpt": "checkpoint"}


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
