"""The prune recipe: `PruneConfig` (the `[prune]` table), its resolution with a training recipe and the CLI's
shortcuts, and the budget the final model must meet.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgeasc.budget import PARAM_DTYPE_BYTES, resolve_budget
from edgeasc.config import CALIB_CLIPS
from edgeasc.errors import ConfigError

IMPORTANCE_NAMES: tuple[str, ...] = ("l1", "l2", "bn_scale", "taylor")


@dataclass(frozen=True)
class PruneConfig:
    """The `[prune]` section of a recipe; the other sections are a normal `TrainConfig` (the AGP stage's
    KD training). The model comes from the checkpoint being pruned.

    Attributes:
        stages: targets in order: a base width (int, e.g. 64 then 32 for 96 -> 64 -> 32) or "budget" (the
            largest uniform keep ratio meeting the budget). Empty: one "budget" stage.
        budget: named budget the final model must meet (`edgeasc.audit.BUDGETS`), or "none".
        max_param_bytes, max_macs: override the budget's limits (MACs by the DCASE rule).
        param_dtype: deployment dtype at which parameter memory is counted (fp16: the DCASE rule; int8).
        importance: channel criterion: l1, l2 (filter magnitude over the coupled group), bn_scale, taylor.
        round_to: pruned widths are multiples of this (1: any width).
        n_steps: AGP pruning steps per stage.
        initial_sparsity: s_i of the schedule.
        start_fraction, end_fraction: AGP runs from t0 = start_fraction x T to t0 + n x dt = end_fraction x T
            (T: the stage's optimiser steps); the remaining steps train the final widths.
        finetune_epochs: KD fine-tuning of each stage's pruned model (0: none); `finetune_lr` (default
            optim.lr) and `finetune_warmup_steps` (default optim.warmup_steps) set its schedule.
        eval_during: validate just before every pruning step (points of the pruning curve).
        export_int8: export the final model to int8 TFLite and audit that file against the budget too.
        export_calib_clips, export_eval_clips: calibration and parity-subset sizes of that export.
    """

    stages: tuple[int | str, ...] = ()
    budget: str = "dcase2025"
    max_param_bytes: int | None = None
    max_macs: int | None = None
    param_dtype: str = "fp16"
    importance: str = "l1"
    round_to: int = 8
    n_steps: int = 8
    initial_sparsity: float = 0.0
    start_fraction: float = 0.0
    end_fraction: float = 0.75
    finetune_epochs: int = 10
    finetune_lr: float | None = None
    finetune_warmup_steps: int | None = None
    eval_during: bool = True
    export_int8: bool = False
    export_calib_clips: int = CALIB_CLIPS
    export_eval_clips: int | None = 500

    def __post_init__(self) -> None:
        stages = tuple(self.stages)
        for s in stages:
            if isinstance(s, bool) or not (s == "budget" or (isinstance(s, int) and s >= 1)):
                raise ValueError(f"prune.stages entries must be positive base widths or 'budget', got {s!r}")
        if "budget" in stages[:-1]:
            raise ValueError("prune.stages: 'budget' can only be the last stage")
        object.__setattr__(self, "stages", stages)
        if self.param_dtype not in PARAM_DTYPE_BYTES:
            raise ValueError(f"prune.param_dtype must be one of {sorted(PARAM_DTYPE_BYTES)}, got {self.param_dtype!r}")
        if self.importance not in IMPORTANCE_NAMES:
            raise ValueError(f"prune.importance must be one of {IMPORTANCE_NAMES}, got {self.importance!r}")
        if self.round_to < 1 or self.n_steps < 1:
            raise ValueError("prune.round_to and prune.n_steps must be >= 1")
        if not 0.0 <= self.initial_sparsity < 1.0:
            raise ValueError("prune.initial_sparsity must be in [0, 1)")
        if not 0.0 <= self.start_fraction < self.end_fraction <= 1.0:
            raise ValueError("prune needs 0 <= start_fraction < end_fraction <= 1")
        if self.finetune_epochs < 0 or (self.finetune_lr is not None and self.finetune_lr <= 0):
            raise ValueError("prune.finetune_epochs must be >= 0 and prune.finetune_lr positive")
        for name in ("max_param_bytes", "max_macs", "export_eval_clips"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"prune.{name} must be positive, got {v}")

    @property
    def dtype_bytes(self) -> int:
        return PARAM_DTYPE_BYTES[self.param_dtype]


def resolve_prune_config(
    recipe: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    *,
    target: str | None = None,
    max_param_bytes: int | None = None,
    max_macs: int | None = None,
    param_dtype: str | None = None,
    to_base_channels: Sequence[int] = (),
    export_int8: bool | None = None,
) -> tuple[Any, PruneConfig]:
    """(TrainConfig of the AGP stage, PruneConfig) from defaults <- recipe <- `--set` <- the CLI's target options.

    `to_base_channels` replaces `prune.stages` (several values: progressive stages).

    Raises:
        ConfigError: invalid or unknown keys, or a `[model]` section (the model comes from the checkpoint).
    """
    from edgeasc.config import TrainConfig, apply_overrides, from_dict, load_recipe

    data = apply_overrides(load_recipe(recipe), list(overrides))
    if "model" in data:
        raise ConfigError("a prune recipe has no [model] section (and no --set model.*): the model comes from "
                          "the CHECKPOINT being pruned")
    prune = dict(data.pop("prune", {}) or {})
    for key, value in (("budget", target), ("max_param_bytes", max_param_bytes), ("max_macs", max_macs),
                       ("param_dtype", param_dtype), ("export_int8", export_int8)):
        if value is not None:
            prune[key] = value
    if to_base_channels:
        prune["stages"] = list(to_base_channels)
    return from_dict(TrainConfig, data), from_dict(PruneConfig, prune, where="prune")


def resolve_prune_budget(cfg: PruneConfig) -> tuple[str | None, Any]:
    """(name, `edgeasc.budget.Budget`) the final model must meet, or (None, None); MACs by the DCASE rule."""
    return resolve_budget(cfg.budget, cfg.max_param_bytes, cfg.max_macs, mac_rule="dcase")
