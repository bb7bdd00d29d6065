"""Parameters, parameter memory and MACs by the DCASE 2025 Task 1 rule, without torchinfo at run time.

The official rule (CPJKU/dcase2025_task1_baseline, helpers/complexity.py) takes
`torchinfo.summary(model.float(), input_size=(1, 1, 256, 65)).total_mult_adds` and counts memory as the sum
over `model.parameters()` of elements x the width of the dtype stored. torchinfo (1.8) charges each call of a
leaf module by its *parameters*, not by real arithmetic:

- a convolution: (weight + bias elements) x batch x output positions (e.g. H x W);
- any other leaf's `weight`/`bias` (BatchNorm, LayerNorm, ...): elements x batch;
- ReLU, pooling, additions and other parameter-free ops: 0.

So a depthwise 3x3 conv over C channels costs 9C per output position and a BatchNorm costs 2C once.
One deliberate difference: torchinfo charges Linear like BatchNorm (x batch only); here a Linear costs its
parameters x every output position (all leading dims), its real MAC count. The two agree for (B, features)
inputs, and for the conv networks in edgeasc (which have no Linear) the totals are identical; for a Linear
over a sequence this count is the larger, so a model it passes also passes the official check.
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

DCASE_INPUT_SIZE: tuple[int, ...] = (1, 1, 256, 65)
"""One 1-s clip as the baseline frontend gives it: (batch, channel, mel bins, frames)."""


@dataclass(frozen=True)
class LayerComplexity:
    """One call of one leaf module.

    Attributes:
        name: dotted module name (`stages.s1.b1.block.0.0`); a module called twice appears twice.
        type: the module's class name.
        params: parameters held directly by the module.
        macs: MACs charged to this call by the DCASE rule.
        output_shape: the call's output shape, batch included.
    """

    name: str
    type: str
    params: int
    macs: int
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class ComplexityReport:
    """Complexity of a model by the DCASE rule.

    Attributes:
        params: parameter count (sum over `model.parameters()`; buffers such as running statistics excluded).
        macs: multiply-accumulates for one forward pass of `input_size`.
        layers: per-call rows, in execution order.
        input_size: the input shape used.
        stored_param_bytes: parameter memory at the dtypes the model holds now (fp32 4, fp16 2, int8 1 ...).
    """

    params: int
    macs: int
    layers: tuple[LayerComplexity, ...]
    input_size: tuple[int, ...]
    stored_param_bytes: int

    def param_bytes(self, dtype_bytes: int = 2) -> int:
        """Parameter memory if every parameter were stored with `dtype_bytes` bytes (default fp16, as DCASE
        submissions run; 1 for int8, 4 for fp32)."""
        if dtype_bytes < 1:
            raise ValueError(f"dtype_bytes must be >= 1, got {dtype_bytes}")
        return self.params * dtype_bytes

    @property
    def param_bytes_fp16(self) -> int:
        """Parameter memory at 2 bytes per parameter."""
        return self.param_bytes(2)

    @property
    def param_bytes_fp32(self) -> int:
        """Parameter memory at 4 bytes per parameter."""
        return self.param_bytes(4)


def param_bytes_by_dtype(model: nn.Module) -> dict[str, int]:
    """Parameter memory of `model` as stored, split by dtype (e.g. `{"float16": 122296}`).

    Counts every parameter (zeros included) once; buffers are not parameters and are not counted.
    """
    out: dict[str, int] = defaultdict(int)
    for p in model.parameters():
        out[str(p.dtype).removeprefix("torch.")] += p.numel() * p.element_size()
    return dict(out)


def _leaf_macs(module: nn.Module, output_shape: Sequence[int]) -> int:
    batch = output_shape[0] if output_shape else 1
    macs = 0
    for name, p in module.named_parameters(recurse=False):
        n = p.numel()
        name = name.removesuffix("_orig")  # torch.nn.utils.prune keeps `weight_orig` (zeros still count)
        if isinstance(module, nn.modules.conv._ConvNd):
            macs += n * batch * math.prod(output_shape[2:])
        elif isinstance(module, nn.Linear):
            macs += n * math.prod(output_shape[:-1])
        elif name in ("weight", "bias"):
            macs += n * batch
        elif "weight" in name or "bias" in name:
            # torchinfo's rule for recurrent layers' inner weights (weight_ih_l0 ...): batch x first dim.
            macs += n * math.prod(output_shape[:2])
    return macs


def _first_tensor(out: object) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (list, tuple)):
        for item in out:
            t = _first_tensor(item)
            if t is not None:
                return t
    if isinstance(out, dict):
        for item in out.values():
            t = _first_tensor(item)
            if t is not None:
                return t
    return None


def count_dcase(model: nn.Module, input_size: Sequence[int] = DCASE_INPUT_SIZE) -> ComplexityReport:
    """Count parameters and MACs of `model` the way the DCASE 2025 Task 1 organisers do.

    The model is not modified: a float32 CPU copy in eval mode runs one forward pass on zeros.

    Args:
        model: the network (one device model; the mel frontend is not part of it).
        input_size: the input shape, batch included.

    Returns:
        The report; `report.param_bytes()` gives fp16 memory, `report.macs` the MAC count.
    """
    input_size = tuple(int(d) for d in input_size)
    stored_bytes = sum(param_bytes_by_dtype(model).values())
    params = sum(p.numel() for p in model.parameters())
    work = copy.deepcopy(model).float().cpu().eval()
    rows: list[LayerComplexity] = []
    handles = []

    def make_hook(name: str, module: nn.Module):
        n_params = sum(p.numel() for p in module.parameters(recurse=False))

        def hook(mod: nn.Module, args: tuple, out: object) -> None:
            t = _first_tensor(out)
            shape = tuple(t.shape) if t is not None else ()
            rows.append(LayerComplexity(name, type(mod).__name__, n_params, _leaf_macs(mod, shape), shape))

        return hook

    for name, module in work.named_modules():
        if next(module.children(), None) is None:
            handles.append(module.register_forward_hook(make_hook(name or type(module).__name__, module)))
    try:
        with torch.no_grad():
            work(torch.zeros(input_size))
    finally:
        for h in handles:
            h.remove()
    return ComplexityReport(
        params=params,
        macs=sum(r.macs for r in rows),
        layers=tuple(rows),
        input_size=input_size,
        stored_param_bytes=stored_bytes,
    )


def format_complexity_table(report: ComplexityReport, *, zero_cost_rows: bool = False) -> str:
    """Per-layer table with aligned columns, then totals (parameters, fp16/int8 memory, MACs).

    Args:
        report: from `count_dcase`.
        zero_cost_rows: also list layers with no parameters and no MACs (ReLU, pooling).
    """
    header = ("Layer", "Type", "Output shape", "Params", "MACs")
    body = [
        (r.name, r.type, "x".join(map(str, r.output_shape)), f"{r.params:,}", f"{r.macs:,}")
        for r in report.layers
        if zero_cost_rows or r.params or r.macs
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    right = (False, False, False, True, True)

    def fmt(row: Sequence[str]) -> str:
        cells = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right)]
        return "  ".join(cells).rstrip()

    rule = "-" * len(fmt(header))
    totals = [
        f"Parameters:        {report.params:,}",
        f"Memory (fp16):     {report.param_bytes(2):,} bytes",
        f"Memory (int8):     {report.param_bytes(1):,} bytes",
        f"Memory (as held):  {report.stored_param_bytes:,} bytes",
        f"MACs:              {report.macs:,}  (input {'x'.join(map(str, report.input_size))})",
    ]
    return "\n".join([fmt(header), rule, *(fmt(r) for r in body), rule, *totals])
