"""Structured channel pruning of CP-Mobile / SSCP-Mobile students with AGP during KD training.

The seed's systems (SPEC.md section 6) train wide students with KD, prune whole channels with the gradual
schedule of Zhu & Gupta (2017, "To prune, or not to prune", AGP) while KD training continues, and fine-tune the
pruned model with KD again; progressive pruning chains stages (96 -> 64 -> 32). Three parts, kept apart as in
Torch-Pruning (VainF/Torch-Pruning):

- schedule: `agp_sparsity` / `agp_schedule`, plain functions of the step;
- importance: `make_importance` (L1 / L2 magnitude, BatchNorm scale, Taylor), Torch-Pruning's criteria;
- executor: `prune_to_widths`, which removes channels through Torch-Pruning's DependencyGraph, so channels
  joined by a residual addition (stem output and every block output on a shortcut chain) or by a depthwise
  convolution (expansion conv, both depthwise branches, projection input) go together.

Sparsity -> widths (`scale_widths`): one uniform keep ratio r = 1 - s for every prunable width c0 of the
stage's starting model, `floor(c0 * r)` rounded down to a multiple of `round_to` (never below `round_to`;
widths of at most `round_to` stay). The class count is never pruned. Coupled widths start equal, so they stay
equal. A stage's target is either a base width B (r = B / the stem's output width; from base 64 to 32 with
round_to 8 this gives exactly `sscp_mobile_b32`'s widths) or a budget (`search_keep_ratio`: the largest r
whose widths meet it; complexity only grows with r, so bisection finds it).

Models are saved as explicit per-layer widths + a state_dict (never a pickled module): `model_config` is
`{"name": family, "kwargs": widths}`, rebuilt by `create_model`. Each block's shortcut flag is carried over
explicitly (`CPMobileSpec.shortcuts`), since pruning can make a block without a shortcut width-preserving.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeasc.artifacts import write_atomic, write_json_atomic
from edgeasc.budget import PARAM_DTYPE_BYTES, resolve_budget
from edgeasc.errors import ConfigError, DomainError

log = logging.getLogger(__name__)


IMPORTANCE_NAMES: tuple[str, ...] = ("l1", "l2", "bn_scale", "taylor")
FAMILIES: tuple[str, ...] = ("sscp_mobile", "cpmobile")
PRUNE_JSON = "prune.json"
CURVE_PNG = "pruning_curve.png"
STEPS_JSON = "prune_steps.json"
MODEL_FILE = "model.pt"


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------
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
    export_calib_clips: int = 300
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


# --------------------------------------------------------------------------------------------------
# Schedule
# --------------------------------------------------------------------------------------------------
def agp_sparsity(t: int, s_i: float, s_f: float, t0: int, n: int, dt: int) -> float:
    """AGP sparsity at step t (Zhu & Gupta 2017): `s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt))**3`.

    s_i before t0, s_f from t0 + n * dt on.
    """
    if n < 1 or dt < 1:
        raise ValueError(f"AGP needs n >= 1 and dt >= 1, got n={n}, dt={dt}")
    if t <= t0:
        return s_i
    if t >= t0 + n * dt:
        return s_f
    return s_f + (s_i - s_f) * (1.0 - (t - t0) / (n * dt)) ** 3


def agp_schedule(s_i: float, s_f: float, n: int) -> list[float]:
    """Sparsities at the n + 1 pruning points t0 + k * dt, k = 0..n (independent of t0 and dt)."""
    return [agp_sparsity(k, s_i, s_f, 0, n, 1) for k in range(n + 1)]


def agp_timing(total_steps: int, n: int, start_fraction: float, end_fraction: float) -> tuple[int, int]:
    """(t0, dt) placing n pruning steps in a run of `total_steps` optimiser steps.

    Raises:
        ConfigError: too few steps for n pruning steps.
    """
    t0 = int(start_fraction * total_steps)
    dt = int((end_fraction - start_fraction) * total_steps / n)
    if dt < 1 or t0 + n * dt > total_steps:
        raise ConfigError(f"prune.n_steps={n} needs at least {n} optimiser steps between start_fraction and "
                          f"end_fraction, but the stage has {total_steps} steps in all; train more epochs or "
                          f"lower prune.n_steps")
    return t0, dt


# --------------------------------------------------------------------------------------------------
# Widths
# --------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------
# Importance and executor
# --------------------------------------------------------------------------------------------------
def make_importance(name: str) -> Any:
    """A Torch-Pruning importance criterion that scores every channel of a coupled group.

    l1 / l2: p-norm of each channel's weights, averaged over the group's convs and BatchNorms (group
    magnitude); bn_scale: |gamma| of the group's BatchNorms (network slimming); taylor: |w * dL/dw| (Molchanov
    et al. 2019), which needs gradients, i.e. a backward pass just before (during training: the last step's).
    """
    import torch_pruning as tp

    if name == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.MagnitudeImportance(p=2)
    if name == "bn_scale":
        return tp.importance.BNScaleImportance()
    if name == "taylor":
        return tp.importance.TaylorImportance()
    raise ConfigError(f"unknown importance {name!r}; choose one of {', '.join(IMPORTANCE_NAMES)}")


def prune_to_widths(model: nn.Module, widths: Mapping[str, Any], importance: Any) -> nn.Module:
    """Remove the least important channels of `model` in place until it has `widths`.

    Each coupled group (Torch-Pruning DependencyGraph, traced on a zero input in eval mode so BatchNorm
    statistics stay untouched) keeps its top channels by `importance`. The classifier's output channels
    are never pruned. Afterwards every layer must have exactly the shape `create_model(family, **widths)`
    builds; `model.spec` and `model.model_config` then describe the pruned network.

    Args:
        model: a CPMobile-family model.
        widths: target `create_model` kwargs (see `scale_widths`); each width at most the current one.
        importance: from `make_importance` (or a name).

    Raises:
        ConfigError: widths larger than the model's, a changed structure, or missing gradients for taylor.
        DomainError: the pruned layers do not match the target (channels that should be coupled were not).
    """
    import torch_pruning as tp

    from edgeasc.models import create_model

    if isinstance(importance, str):
        importance = make_importance(importance)
    family = family_of(model)
    target = create_model(family, **dict(widths))
    if [n for n, _ in model.named_modules()] != [n for n, _ in target.named_modules()]:
        raise ConfigError("target widths change the model's structure (shortcuts, blocks or strides); pruning "
                          "only removes channels")
    if isinstance(importance, tp.importance.TaylorImportance) and any(
        p.grad is None for p in model.parameters() if p.requires_grad
    ):
        raise ConfigError("taylor importance needs gradients: run a backward pass first (during training the "
                          "hook uses the last step's)")
    names = {m: n for n, m in model.named_modules()}
    head = model.feed_forward[0]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    example = torch.zeros(1, model.spec.in_channels, 64, 64, device=device)
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
    plan = []
    for group in dg.get_all_groups(ignored_layers=[head], root_module_types=[nn.Conv2d]):
        root = group[0].dep.target.module
        n_now = root.out_channels
        n_new = target.get_submodule(names[root]).out_channels
        if n_new > n_now:
            raise ConfigError(f"{names[root]} has {n_now} channels; pruning cannot grow it to {n_new}")
        if n_new == n_now:
            continue
        scores = importance(group)
        if scores is None or scores.numel() != n_now:
            raise DomainError(f"importance gave no score for the channels of {names[root]}")
        keep = set(torch.topk(scores.float().cpu(), n_new).indices.tolist())
        plan.append((root, dg.get_pruner_of_module(root).prune_out_channels, sorted(set(range(n_now)) - keep)))
    for root, prune_fn, idxs in plan:
        dg.get_pruning_group(root, prune_fn, idxs).prune()
    _check_same_layers(model, target)
    model.spec = target.spec
    model.model_config = target.model_config
    model.train(was_training)
    return model


def _check_same_layers(model: nn.Module, target: nn.Module) -> None:
    """Every parameter/buffer shape and conv grouping of `model` equals `target`'s."""
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = {k: tuple(v.shape) for k, v in target.state_dict().items()}
    bad = [f"{k}: {got.get(k)} (planned {want.get(k)})" for k in sorted(set(got) | set(want))
           if got.get(k) != want.get(k)]
    for (name, m), (_, t) in zip(model.named_modules(), target.named_modules()):
        if not isinstance(m, nn.Conv2d):
            continue
        have, plan = (m.groups, m.in_channels, m.out_channels), (t.groups, t.in_channels, t.out_channels)
        if have != plan:
            bad.append(f"{name}: groups/in/out {have} (planned {plan})")
    if bad:
        raise DomainError("pruning left layers that do not match the planned widths (coupled channels were not "
                          f"pruned together): {'; '.join(bad[:4])}")


def rebuild(model: nn.Module) -> nn.Module:
    """A fresh `create_model` build of `model.model_config` with `model`'s weights (strict): what a checkpoint
    of the model reloads to."""
    from edgeasc.models import model_from_config

    fresh = model_from_config(model.model_config)
    fresh.load_state_dict(model.state_dict(), strict=True)
    return fresh.train(model.training)


# --------------------------------------------------------------------------------------------------
# AGP during training
# --------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------
# The prune command: stages of AGP + KD fine-tuning, final checks, report and plot
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PruneResult:
    """What `prune_checkpoint` wrote: the final checkpoint and prune.json's content."""

    run_dir: Path
    model_path: Path
    report: dict[str, Any]
    final_metrics: dict[str, Any] = field(default_factory=dict)  # the last training run's metrics.json


def _evaluator(cfg: Any, data_dir: str | os.PathLike) -> Callable[[nn.Module], float]:
    """Macro accuracy on cfg.data.val_split; the waveforms are read (from train's cache) on first use."""
    from edgeasc.data.dataset import TAUDataset, load_waveforms
    from edgeasc.evaluate import predict_logits
    from edgeasc.metrics import classification_report

    cache: dict[str, Any] = {}

    def evaluate(model: nn.Module) -> float:
        if not cache:
            ds = TAUDataset(data_dir)
            clips = ds.clips(cfg.data.val_split)
            fe = cfg.frontend
            cache["clips"] = clips
            cache["waves"] = load_waveforms(ds.root, clips, fe.sample_rate_hz, fe.clip_samples, cfg.data.cache_dir)
        clips = cache["clips"]
        device = next(model.parameters()).device
        logits = predict_logits(model, cache["waves"], cfg.frontend, batch_size=cfg.optim.batch_size, device=device)
        rep = classification_report([c.label for c in clips], logits.argmax(1), [c.device for c in clips])
        return float(rep["macro_accuracy"])

    return evaluate


def plan_stages(model: nn.Module, cfg: PruneConfig, budget: Any) -> list[dict[str, Any]]:
    """Keep ratio and widths of every stage, each relative to the previous stage's widths."""
    from edgeasc.models import create_model

    family = family_of(model)
    spec = model.spec
    plans = []
    for i, target in enumerate(cfg.stages or ("budget",), 1):
        base = spec.stem_channels[1]
        if target == "budget":
            if budget is None:
                raise ConfigError("a 'budget' stage needs a budget: give --target/--max-param-bytes/--max-macs or "
                                  "a base width (--to-base-channels)")
            ratio, widths = search_keep_ratio(family, spec, budget, cfg.dtype_bytes, cfg.round_to)
        else:
            if target >= base:
                raise ConfigError(f"stage {i} prunes to base {target}, but the model's base width (stem output) "
                                  f"is already {base}")
            ratio = target / base
            widths = scale_widths(spec, ratio, cfg.round_to)
        nxt = create_model(family, **widths)
        plans.append({"stage": i, "target": target, "start_spec": spec, "keep_ratio": ratio, "widths": widths,
                      "start_widths": widths_of(model) if i == 1 else plans[-1]["final_widths"],
                      "final_widths": widths_of(nxt), "complexity": complexity_of(nxt, cfg.dtype_bytes)})
        model, spec = nxt, nxt.spec
    return plans


def _stage_config(cfg: Any, model_config: Mapping[str, Any], init: Path, **optim: Any) -> Any:
    model = dataclasses.replace(cfg.model, name=model_config["name"], kwargs=dict(model_config["kwargs"]),
                                init_checkpoint=str(init))
    return dataclasses.replace(cfg, model=model, optim=dataclasses.replace(cfg.optim, **optim))


def prune_checkpoint(
    checkpoint: str | os.PathLike,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    train_cfg: Any,
    cfg: PruneConfig,
    resume: bool = False,
    progress: bool = True,
    deploy_check: Callable[[Path, Path], dict[str, Any]] | None = None,
) -> PruneResult:
    """Prune a trained CPMobile-family checkpoint in stages (AGP during KD training, then KD fine-tuning).

    Run directory: `stage{i}_agp/` and `stage{i}_finetune/` (ordinary training runs; the AGP one also holds
    prune_steps.json), `model.pt` (the final model, stage "prune"), prune.json (plan, per-step widths,
    parameters, memory, MACs and accuracy, budget checks), pruning_curve.png, and `export/` with
    `cfg.export_int8`.

    Args:
        deploy_check: with `cfg.export_int8`, called as `deploy_check(final model.pt, out/"export")` when the
            final model is within budget; it exports the model to int8 TFLite, audits that file and returns
            {"path", "param_bytes", "macs_dcase", "macs", "within_budget", "violations"} (prune.json's
            `final.tflite_audit`). Export and audit are later stages: `edgeasc.pipeline.prune_and_export`
            passes them in (the `edgeasc prune` command).

    Raises:
        DomainError: the final model exceeds the budget on the DCASE rule or (with export) on the audit of
            its int8 TFLite file; prune.json and model.pt are written first.
        ConfigError, CheckpointError, DataError: bad input (checked before any training where possible).
    """
    if cfg.export_int8 and deploy_check is None:
        raise ConfigError("prune.export_int8 needs the export and audit stages: run it with `edgeasc prune` or "
                          "edgeasc.pipeline.prune_and_export")
    from edgeasc.checkpoint import load_model, save_checkpoint
    from edgeasc.config import FrontendConfig, from_dict, to_dict
    from edgeasc.train.loop import train

    checkpoint = Path(checkpoint).resolve()
    out = Path(out_dir)
    model, ckpt = load_model(checkpoint)
    family = family_of(model)
    ck_frontend = (ckpt.get("config") or {}).get("frontend")
    if ck_frontend is not None and from_dict(FrontendConfig, ck_frontend, where="frontend") != train_cfg.frontend:
        raise ConfigError(f"the recipe's frontend differs from the one {checkpoint.name} was trained with; give "
                          f"the same [frontend] values (checkpoint: {ck_frontend})")
    budget_name, budget = resolve_prune_budget(cfg)
    plans = plan_stages(model, cfg, budget)
    planned = plans[-1]["complexity"]
    bad = budget_violations(planned, budget)
    if bad:
        raise DomainError(f"the planned final widths miss budget {budget_name} at {cfg.param_dtype} ({'; '.join(bad)}); "
                          "prune to a smaller base width or use a 'budget' stage")
    evaluate = _evaluator(train_cfg, data_dir) if cfg.eval_during else None
    report: dict[str, Any] = {
        "source_checkpoint": str(checkpoint), "family": family, "importance": cfg.importance,
        "round_to": cfg.round_to, "param_dtype": cfg.param_dtype, "prune_config": to_dict(cfg),
        "budget": None if budget is None else {"name": budget_name, **dataclasses.asdict(budget)},
        "start": {"widths": widths_of(model), **complexity_of(model, cfg.dtype_bytes),
                  "val_macro_accuracy": (ckpt.get("extra") or {}).get("val_macro_accuracy")},
        "stages": [],
    }
    current = checkpoint
    current_config = ckpt["model_config"]
    train_result = None
    for plan in plans:
        i = plan["stage"]
        agp_dir = out / f"stage{i}_agp"
        hook = AGPPruningHook(plan["start_spec"], plan["keep_ratio"], cfg, evaluate=evaluate,
                              records_path=agp_dir / STEPS_JSON, stage=i)
        log.info("stage %d: AGP from base %d to %s (keep ratio %.4f) over %d steps", i,
                 plan["start_spec"].stem_channels[1], plan["target"], plan["keep_ratio"], cfg.n_steps)
        agp = train(_stage_config(train_cfg, current_config, current), data_dir, agp_dir, resume=resume,
                    progress=progress, step_hook=hook)
        pruned, pruned_ckpt = load_model(agp.model_path)
        if widths_of(pruned) != plan["final_widths"]:
            raise DomainError(f"stage {i} ended at widths {widths_of(pruned)}, planned {plan['final_widths']}: "
                              f"the AGP schedule did not reach its final step (check prune.end_fraction)")
        stage_rep = {
            "stage": i, "target": plan["target"], "keep_ratio": plan["keep_ratio"],
            "final_sparsity": 1.0 - plan["keep_ratio"], "start_widths": plan["start_widths"],
            "final_widths": plan["final_widths"], **plan["complexity"],
            "schedule": hook.timing or _timing_of_run(hook, agp_dir),
            "steps": [hook.records[t] for t in sorted(hook.records)],
            "agp_run": str(agp_dir), "val_macro_accuracy_agp": agp.final_metrics.get("macro_accuracy"),
        }
        current, current_config, train_result = agp.model_path, pruned_ckpt["model_config"], agp
        if cfg.finetune_epochs > 0:
            ft_dir = out / f"stage{i}_finetune"
            optim = {"epochs": cfg.finetune_epochs}
            if cfg.finetune_lr is not None:
                optim["lr"] = cfg.finetune_lr
            if cfg.finetune_warmup_steps is not None:
                optim["warmup_steps"] = cfg.finetune_warmup_steps
            ft = train(_stage_config(train_cfg, current_config, current, **optim), data_dir, ft_dir,
                       resume=resume, progress=progress)
            stage_rep.update(finetune_run=str(ft_dir),
                             val_macro_accuracy_finetuned=ft.final_metrics.get("macro_accuracy"))
            current, train_result = ft.model_path, ft
        report["stages"].append(stage_rep)

    # --- final model, checks, report ----------------------------------------------------------------
    final_model, final_ckpt = load_model(current)
    cx = complexity_of(final_model, cfg.dtype_bytes)
    violations = budget_violations(cx, budget)
    final_path = save_checkpoint(
        out / MODEL_FILE, final_model, stage="prune", config=final_ckpt.get("config"),
        extra={"source_checkpoint": str(checkpoint),
               "val_macro_accuracy": train_result.final_metrics.get("macro_accuracy"),
               "train_split": train_cfg.data.train_split, "val_split": train_cfg.data.val_split,
               "param_dtype": cfg.param_dtype, **cx, "within_budget": not violations},
    )
    report["final"] = {"model": str(final_path), "model_config": _jsonable(final_model.model_config),
                       "widths": widths_of(final_model), **cx,
                       "val_macro_accuracy": train_result.final_metrics.get("macro_accuracy"),
                       "dcase_rule": {"within_budget": not violations, "violations": violations},
                       "tflite_audit": None}
    if cfg.export_int8 and not violations:
        report["final"]["tflite_audit"] = deploy_check(final_path, out / "export")
        violations += [f"int8 TFLite: {v}" for v in report["final"]["tflite_audit"]["violations"]]
    report["success"] = not violations
    write_json_atomic(out / PRUNE_JSON, report)
    plot_pruning_curve(report, out / CURVE_PNG)
    if violations:
        raise DomainError(f"the pruned model misses budget {budget_name}: {'; '.join(violations)} "
                          f"(see {out / PRUNE_JSON})")
    return PruneResult(out, final_path, report, train_result.final_metrics)


def _timing_of_run(hook: AGPPruningHook, run_dir: Path) -> dict[str, int] | None:
    """The schedule of a run that was already complete (resumed: the hook never fired in this process)."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    hook.pruning_steps(int(json.loads(lines[-1])["step"]))
    return hook.timing


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=list))


def plot_pruning_curve(report: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Validation accuracy against MACs and against parameter bytes along the schedule, one line per stage.

    Points: the accuracy measured just before each pruning step, plotted at the widths it was measured at;
    the end of each AGP run; and the fine-tuned model (star). Dashed lines: the budget.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    start = report["start"]
    budget = report.get("budget")
    for stage in report["stages"]:
        pts = curve_points(start, stage)
        xs = [(p["macs"], p["param_bytes"]) for p in pts]
        ys = [100 * p["val_macro_accuracy"] if p["val_macro_accuracy"] is not None else math.nan for p in pts]
        for ax, j in zip(axes, (0, 1)):
            ax.plot([x[j] for x in xs], ys, "o-", label=f"stage {stage['stage']} (to {stage['target']})")
            if stage.get("val_macro_accuracy_finetuned") is not None:
                ax.plot([stage[("macs", "param_bytes")[j]]], [100 * stage["val_macro_accuracy_finetuned"]], "*",
                        markersize=13, color=ax.lines[-1].get_color())
        start = {"widths": stage["final_widths"], **{k: stage[k] for k in ("params", "param_bytes", "macs")},
                 "val_macro_accuracy": stage.get("val_macro_accuracy_finetuned", stage.get("val_macro_accuracy_agp"))}
    from matplotlib.ticker import FuncFormatter

    labels = ("MACs (DCASE rule), millions", f"parameter memory at {report['param_dtype']}, thousand bytes")
    for ax, scale in zip(axes, (1e6, 1e3)):
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _, s=scale: f"{x / s:g}"))
    for ax, key, label in zip(axes, ("macs", "param_bytes"), labels):
        if budget:
            ax.axvline(budget[key], linestyle="--", color="grey", label="budget")
        ax.set_xlabel(label)
        ax.set_ylabel("validation macro accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("AGP pruning curve (star: after KD fine-tuning)")
    fig.tight_layout()

    def write(p: Path) -> None:
        fig.savefig(p, format="png", dpi=110)

    try:
        return write_atomic(path, write)
    finally:
        plt.close(fig)


def curve_points(start: Mapping[str, Any], stage: Mapping[str, Any]) -> list[dict[str, Any]]:
    """(complexity, accuracy) points of one stage: each accuracy measured before a pruning step belongs to the
    widths in force then (the start, or the previous step's); the last point is the end of the AGP run."""
    pts = []
    prev = {k: start[k] for k in ("params", "param_bytes", "macs")}
    for rec in stage["steps"]:
        if rec.get("val_macro_accuracy_before") is not None:
            pts.append({**prev, "val_macro_accuracy": rec["val_macro_accuracy_before"], "step": rec["step"]})
        prev = {k: rec[k] for k in ("params", "param_bytes", "macs")}
    pts.append({**prev, "val_macro_accuracy": stage.get("val_macro_accuracy_agp"), "step": None})
    return pts


def format_prune_summary(report: Mapping[str, Any]) -> str:
    """Aligned lines for people: one per stage, then the final model against the budget."""
    lines = []
    s = report["start"]
    lines.append(f"start      {s['params']:>9,} params  {s['param_bytes']:>9,} B  {s['macs']:>12,} MACs")
    for st in report["stages"]:
        acc = st.get("val_macro_accuracy_finetuned", st.get("val_macro_accuracy_agp"))
        lines.append(f"stage {st['stage']}    {st['params']:>9,} params  {st['param_bytes']:>9,} B  {st['macs']:>12,} MACs"
                     f"  keep {st['keep_ratio']:.3f}  ({len(st['steps'])} AGP steps)"
                     + ("" if acc is None else f"  val macro acc {100 * acc:.2f}%"))
    f = report["final"]
    b = report.get("budget")
    verdict = "no budget" if b is None else ("within" if f["dcase_rule"]["within_budget"] else "OVER") + f" {b['name']}"
    lines.append(f"final: {f['params']:,} parameters = {f['param_bytes']:,} bytes at {report['param_dtype']}, "
                 f"{f['macs']:,} MACs (DCASE rule): {verdict}")
    if f.get("tflite_audit"):
        t = f["tflite_audit"]
        lines.append(f"int8 TFLite audit: {t['param_bytes']:,} bytes, {t['macs_dcase']:,} MACs (DCASE rule): "
                     f"{'within budget' if t['within_budget'] else 'OVER budget'} ({t['path']})")
    return "\n".join(lines)


__all__ = [
    "AGPPruningHook", "PruneConfig", "PruneResult", "agp_schedule", "agp_sparsity", "agp_timing", "budget_violations",
    "complexity_of", "keep_width", "make_importance", "plan_stages", "plot_pruning_curve", "prune_checkpoint",
    "prune_to_widths", "rebuild", "resolve_prune_config", "scale_widths", "search_keep_ratio",
]
