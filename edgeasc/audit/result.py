"""What an audit finds: one row per operator (`LayerAudit`), the whole file's figures and their comparison with a
budget (`AuditReport`), and the peak activation memory of a graph in execution order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeasc.budget import Budget
from edgeasc.errors import AuditError


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


def _read_file(path: Path) -> bytes:
    if not path.exists():
        raise AuditError(f"model not found: {path}")
    if not path.is_file():
        raise AuditError(f"{path} is not a file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AuditError(f"cannot read {path}: {exc.strerror}") from None
