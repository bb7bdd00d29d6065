"""Complexity budgets: the limits, the byte widths parameters are counted at, and the MAC rules.

Shared by the stages that check a budget: prune (on the model it plans), audit (on the file that ships),
submission (on the complexity.json). DCASE 2025 Task 1: 128,000 bytes of parameter memory, each parameter
at its dtype's width, and 30,000,000 MACs per 1-s clip, counted on layers with weights (SPEC.md section 4).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeasc.errors import ConfigError

PARAM_DTYPE_BYTES: dict[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
"""Deployment dtypes and their width. DCASE counts parameters at the dtype the submission runs (fp16)."""

MAC_RULES: tuple[str, ...] = ("dcase", "deployed")
"""`dcase`: layers with weights only (the DCASE 2025 rule); `deployed`: every operator of the graph."""


@dataclass(frozen=True)
class Budget:
    """A complexity budget: parameter memory in bytes and MACs per inference.

    Attributes:
        param_bytes: largest allowed parameter memory.
        macs: largest allowed MACs for one inference.
        mac_rule: which count the MAC limit applies to (`dcase` or `deployed`, see `MAC_RULES`).
    """

    param_bytes: int
    macs: int
    mac_rule: str = "dcase"

    def __post_init__(self) -> None:
        if self.param_bytes < 1 or self.macs < 1:
            raise ValueError(f"budget limits must be positive, got {self.param_bytes} bytes and {self.macs} MACs")
        if self.mac_rule not in MAC_RULES:
            raise ValueError(f"mac_rule must be one of {MAC_RULES}, got {self.mac_rule!r}")


BUDGETS: dict[str, Budget] = {"dcase2025": Budget(param_bytes=128_000, macs=30_000_000)}
"""Named budgets. DCASE 2025 Task 1: 128 kB parameter memory (128,000 bytes) and 30 M MACs per 1-s clip."""


def resolve_budget(
    name: str | None = "dcase2025", max_param_bytes: int | None = None, max_macs: int | None = None,
    mac_rule: str | None = None,
) -> tuple[str | None, Budget | None]:
    """A named budget with optional overrides; ("custom", ...) when only overrides are given.

    Raises:
        ConfigError: unknown budget name (with a close match), or a non-positive limit.
    """
    if name is not None and name not in BUDGETS and name != "none":
        import difflib

        close = difflib.get_close_matches(name, list(BUDGETS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown budget {name!r}{hint} (known: {', '.join(BUDGETS)}, none)")
    base = BUDGETS.get(name) if name else None
    if base is None and max_param_bytes is None and max_macs is None:
        return None, None
    try:
        budget = Budget(
            param_bytes=max_param_bytes if max_param_bytes is not None else (base.param_bytes if base else 2**63),
            macs=max_macs if max_macs is not None else (base.macs if base else 2**63),
            mac_rule=mac_rule or (base.mac_rule if base else "deployed"),
        )
    except ValueError as exc:
        raise ConfigError(f"invalid budget: {exc}") from None
    changed = base is None or budget != base
    return (f"{name}+overrides" if base and changed else (name if base else "custom")), budget
