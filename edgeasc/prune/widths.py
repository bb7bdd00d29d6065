"""Channel widths: a kept width from a ratio (rounded to multiples of 8), the widths of a model family scaled
to a target, their complexity, budget violations, and the keep ratio that meets a budget.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import nn

from edgeasc.errors import ConfigError, DomainError

FAMILIES: tuple[str, ...] = ("sscp_mobile", "cpmobile")


def keep_width(c: int, ratio: float, round_to: int = 8) -> int:
    """Channels kept of `c` at keep ratio `ratio`: floor(c * ratio) rounded down to a multiple of round_to,
    at least round_to; a width of at most round_to is not pruned."""
    if c <= round_to:
        return c
    return max(round_to, math.floor(c * ratio + 1e-6) // round_to * round_to)


def family_of(model: nn.Module) -> str:
    """Registry name of the generic builder of the model's family (`sscp_mobile` or `cpmobile`).

    Raises:
        ConfigError: the model is of another family.
    """
    from edgeasc.models.cpmobile import CPMobile
    from edgeasc.models.sscp_mobile import SSCPMobile

    if isinstance(model, SSCPMobile):
        return "sscp_mobile"
    if isinstance(model, CPMobile):
        return "cpmobile"
    name = getattr(model, "model_config", {}).get("name", type(model).__name__)
    raise ConfigError(f"pruning supports the {' and '.join(FAMILIES)} families, not {name!r}")


def scale_widths(spec: Any, ratio: float, round_to: int = 8) -> dict[str, Any]:
    """`create_model` kwargs of `spec` (a `CPMobileSpec`) with every width scaled by `keep_width`.

    Shortcut flags are kept explicitly, so the pruned network has the original's residual structure.
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"keep ratio must be in (0, 1], got {ratio}")
    kwargs = spec.to_kwargs()
    kwargs["stem_channels"] = tuple(keep_width(c, ratio, round_to) for c in spec.stem_channels)
    kwargs["block_channels"] = tuple((keep_width(e, ratio, round_to), keep_width(o, ratio, round_to))
                                     for e, o in spec.block_channels)
    kwargs["shortcuts"] = tuple(spec.shortcuts)
    return kwargs


def widths_of(model: nn.Module) -> dict[str, Any]:
    """Per-layer widths of a CPMobile-family model (its spec), as short lists for reports."""
    spec = model.spec
    return {"stem_channels": list(spec.stem_channels), "block_channels": [list(b) for b in spec.block_channels],
            "shortcuts": list(spec.shortcuts)}


def complexity_of(model: nn.Module, dtype_bytes: int = 2) -> dict[str, int]:
    """Parameters, parameter memory at `dtype_bytes` per parameter, and MACs, all by the DCASE rule."""
    from edgeasc.complexity import count_dcase

    rep = count_dcase(model)
    return {"params": rep.params, "param_bytes": rep.params * dtype_bytes, "macs": rep.macs}


def budget_violations(cx: Mapping[str, int], budget: Any) -> list[str]:
    """One sentence per limit `cx` (from `complexity_of`) exceeds; empty when within `budget` (or None)."""
    if budget is None:
        return []
    out = []
    if cx["param_bytes"] > budget.param_bytes:
        out.append(f"parameter memory {cx['param_bytes']:,} bytes exceeds {budget.param_bytes:,}")
    if cx["macs"] > budget.macs:
        out.append(f"MACs (DCASE rule) {cx['macs']:,} exceed {budget.macs:,}")
    return out


def search_keep_ratio(family: str, spec: Any, budget: Any, dtype_bytes: int, round_to: int = 8,
                      iterations: int = 40) -> tuple[float, dict[str, Any]]:
    """The largest uniform keep ratio whose widths (`scale_widths`) meet `budget` on the DCASE rule.

    Returns:
        (ratio, kwargs); ratio 1.0 when the model already fits.

    Raises:
        DomainError: even the narrowest widths exceed the budget.
    """
    from edgeasc.models import create_model

    cache: dict[str, bool] = {}

    def fits(r: float) -> bool:
        kw = scale_widths(spec, r, round_to)
        key = repr(kw)
        if key not in cache:
            cache[key] = not budget_violations(complexity_of(create_model(family, **kw), dtype_bytes), budget)
        return cache[key]

    if fits(1.0):
        return 1.0, scale_widths(spec, 1.0, round_to)
    lo, hi = 1e-6, 1.0  # fits(lo) is checked below; hi never fits
    if not fits(lo):
        kw = scale_widths(spec, lo, round_to)
        cx = complexity_of(create_model(family, **kw), dtype_bytes)
        raise DomainError(f"no uniform width fits the budget: even the narrowest widths (round_to {round_to}) "
                          f"have {'; '.join(budget_violations(cx, budget))}")
    for _ in range(iterations):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo, scale_widths(spec, lo, round_to)
