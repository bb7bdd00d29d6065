"""AGP during training: the step hook that prunes at the scheduled steps and rebuilds the optimiser.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeasc.artifacts import write_json_atomic
from edgeasc.prune.config import PruneConfig
from edgeasc.prune.executor import make_importance, prune_to_widths
from edgeasc.prune.schedule import agp_sparsity, agp_timing
from edgeasc.prune.widths import complexity_of, scale_widths, widths_of

log = logging.getLogger(__name__)


class AGPPruningHook:
    """`train(step_hook=...)` callback: prunes the model at the AGP steps of one stage.

    At each pruning step t_k = t0 + k * dt (k = 1..n; k = 0 too when s_i > 0 and t0 >= 1) the model is first
    validated (if an evaluator is given: the accuracy its current widths recovered to), then pruned to
    `scale_widths(start, 1 - s_k)` (the final step: exactly the stage's final widths), and the optimiser is
    rebuilt with the same hyper-parameters (Adam moments start afresh: their shapes changed). Steps are
    recorded in `records_path` (rewritten whole), so a resumed run keeps the history; the hook itself is
    stateless between steps, which is what makes resuming possible.
    """

    def __init__(self, start_spec: Any, final_ratio: float, cfg: PruneConfig, *,
                 evaluate: Callable[[nn.Module], float] | None = None, records_path: Path | None = None,
                 stage: int = 1) -> None:
        self.start_spec = start_spec
        self.final_ratio = final_ratio
        self.final_sparsity = 1.0 - final_ratio
        self.cfg = cfg
        self.importance = make_importance(cfg.importance)
        self.evaluate = evaluate
        self.records_path = records_path
        self.stage = stage
        self.timing: dict[str, int] | None = None
        self._steps: dict[int, int] = {}
        self.records: dict[int, dict[str, Any]] = {}
        if records_path is not None and records_path.is_file():
            self.records = {int(r["step"]): r for r in json.loads(records_path.read_text())}

    def pruning_steps(self, total_steps: int) -> dict[int, int]:
        """{optimiser step: k} of the pruning steps in a run of `total_steps` steps."""
        n = self.cfg.n_steps
        t0, dt = agp_timing(total_steps, n, self.cfg.start_fraction, self.cfg.end_fraction)
        self.timing = {"t0": t0, "dt": dt, "n": n, "total_steps": total_steps}
        first = 0 if self.cfg.initial_sparsity > 0 else 1
        return {t0 + k * dt: k for k in range(first, n + 1) if t0 + k * dt >= 1}

    def __call__(self, step: int, total_steps: int, model: nn.Module, optimizer: torch.optim.Optimizer
                 ) -> torch.optim.Optimizer | None:
        if self.timing is None or self.timing["total_steps"] != total_steps:
            self._steps = self.pruning_steps(total_steps)
        k = self._steps.get(step)
        if k is None:
            return None
        n = self.cfg.n_steps
        s = agp_sparsity(step, self.cfg.initial_sparsity, self.final_sparsity, self.timing["t0"], n, self.timing["dt"])
        ratio = self.final_ratio if k == n else 1.0 - s
        widths = scale_widths(self.start_spec, ratio, self.cfg.round_to)
        acc = self.evaluate(model) if self.evaluate is not None else None
        if acc is not None:
            model.train()  # evaluation switched to eval mode mid-epoch
        changed = type(model.spec)(**widths) != model.spec
        new_opt = None
        if changed:
            prune_to_widths(model, widths, self.importance)
            new_opt = _rebuild_optimizer(optimizer, model)
        cx = complexity_of(model, self.cfg.dtype_bytes)
        rec = {"stage": self.stage, "step": step, "k": k, "sparsity": s, "keep_ratio": ratio, "pruned": changed,
               "val_macro_accuracy_before": acc, **cx, "widths": widths_of(model)}
        self.records[step] = rec
        log.info("AGP stage %d step %d/%d (optimiser step %d): sparsity %.3f, %s parameters, %s MACs%s", self.stage,
                 k, n, step, s, f"{cx['params']:,}", f"{cx['macs']:,}",
                 "" if acc is None else f" (val macro acc before {100 * acc:.2f}%)")
        if self.records_path is not None:
            write_json_atomic(self.records_path, [self.records[t] for t in sorted(self.records)])
        return new_opt


def _rebuild_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module) -> torch.optim.Optimizer:
    """The same optimiser class and hyper-parameters over the pruned parameters (state starts afresh)."""
    import inspect

    accepted = inspect.signature(type(optimizer).__init__).parameters  # AdamW's defaults hold keys it does not take
    group = optimizer.param_groups[0]
    kwargs = {k: v for k, v in group.items() if k != "params" and k in accepted}
    return type(optimizer)(model.parameters(), **kwargs)
