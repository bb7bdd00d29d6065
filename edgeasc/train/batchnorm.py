"""BatchNorm statistics of a short run: the running averages start from (mean 0, var 1) and need about
1/momentum steps to forget it; `debias_batchnorm` removes that start's share (docs/training.md).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from edgeasc.config import TrainConfig

DEBIAS_MIN_START_WEIGHT = 1e-6
"""`debias_batchnorm` leaves moving averages alone when their start holds less than this share of them."""


@torch.no_grad()
def debias_batchnorm(model: torch.nn.Module) -> dict[str, Any] | None:
    """Remove the start values from every BatchNorm's moving averages, as Adam debiases its moments; returns
    {"steps", "start_weight"} when it changed them, else None.

    With momentum m, a BatchNorm's running mean and variance start at 0 and 1, and after k training steps
    (num_batches_tracked) the start still holds r = (1 - m)^k of them. The rest is a weighted average of
    the batch statistics. Dividing that rest by 1 - r gives the average itself:
    mean = running_mean / (1 - r) and var = (running_var - r) / (1 - r). After 30 steps r is 0.04. For a
    layer whose true variance is 0.04, that doubles the variance estimate, and eval mode then predicts one
    class for every clip: the tiny runs at chance of docs/training.md. After the 280 steps of a 20-epoch run
    on `small`, r is 2e-13. Below `DEBIAS_MIN_START_WEIGHT` nothing is changed, so a long run's model is
    exactly the official code's. Only valid for statistics that started at 0 and 1 in this run: the caller
    skips models that started from a checkpoint.

    Recomputing the statistics on clean training clips after training ("precise BatchNorm") was tried first.
    It cost 10.4 points on a 20-epoch run: the network had learned under statistics of augmented inputs
    (docs/training.md).
    """
    start_weight = _bn_start_weight(model)
    if start_weight is None:
        return None
    norms = _moving_average_norms(model)
    steps = int(norms[0].num_batches_tracked)
    for m in norms:
        r = (1.0 - m.momentum) ** int(m.num_batches_tracked)
        m.running_mean.div_(1.0 - r)
        m.running_var.sub_(r).div_(1.0 - r)
    return {"steps": steps, "start_weight": start_weight}


def _moving_average_norms(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            and m.track_running_stats and m.momentum is not None]


def _bn_start_weight(model: torch.nn.Module) -> float | None:
    """The share (1 - m)^k the start (0, 1) still holds of the first BatchNorm's moving averages after its k
    steps, when `debias_batchnorm` would remove it (from `DEBIAS_MIN_START_WEIGHT` up to, not including, 1)."""
    norms = _moving_average_norms(model)
    if not norms:
        return None
    start_weight = (1.0 - norms[0].momentum) ** int(norms[0].num_batches_tracked)
    return start_weight if DEBIAS_MIN_START_WEIGHT <= start_weight < 1.0 else None


def _debiased_copy(model: torch.nn.Module, cfg: TrainConfig) -> tuple[torch.nn.Module, dict[str, Any] | None]:
    """(the model as model.pt would hold it after this epoch, `debias_batchnorm`'s info or None): a debiased
    copy when debiasing applies, else `model` itself (no copy).

    Debiasing applies to BatchNorm statistics that started at (0, 1) in this run: a fresh model, not a
    checkpoint's (`optim.debias_bn`), and only while their start still weighs in (a short run).
    """
    fresh = not cfg.model.init_checkpoint and not cfg.model.kwargs.get("checkpoint_path")
    if not (fresh and cfg.optim.debias_bn) or _bn_start_weight(model) is None:
        return model, None
    snapshot = copy.deepcopy(model)
    return snapshot, debias_batchnorm(snapshot)
