"""Importance and executor: the channel-importance criteria (Torch-Pruning), pruning a model to given widths
with coupled residual and depthwise channels, and rebuilding a model of the pruned widths.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from edgeasc.errors import ConfigError, DomainError
from edgeasc.prune.config import IMPORTANCE_NAMES
from edgeasc.prune.widths import family_of


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
