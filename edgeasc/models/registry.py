"""Model registry in the style of timm: `@register_model` builders, `create_model(name, **overrides)`.

Every model built here carries `model.model_config = {"name": ..., "kwargs": ...}` where `kwargs` are the
*resolved* constructor arguments (explicit per-layer widths), so `create_model(name, **kwargs)` rebuilds the
same architecture, pruned or not. Checkpoints store this dict instead of a pickled module.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from torch import nn

from edgeasc.errors import ConfigError

ModelBuilder = Callable[..., nn.Module]
F = TypeVar("F", bound=ModelBuilder)

_model_entrypoints: dict[str, ModelBuilder] = {}


def register_model(fn: F) -> F:
    """Register a builder under its function name.

    The builder takes keyword overrides and returns a module exposing `config_kwargs()`, the resolved
    arguments that rebuild it.

    Raises:
        ValueError: a model of that name is already registered (a programming error, not a user error).
    """
    name = fn.__name__
    if name in _model_entrypoints:
        raise ValueError(f"model {name!r} is registered twice")
    _model_entrypoints[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style `pattern`, sorted."""
    return sorted(n for n in _model_entrypoints if fnmatch.fnmatchcase(n, pattern))


def is_model(name: str) -> bool:
    """Whether `name` is registered."""
    return name in _model_entrypoints


def suggest(word: str, candidates: Iterable[str]) -> str:
    """"; did you mean 'x'?" for the closest candidates, or "" when none is close."""
    close = difflib.get_close_matches(word, list(candidates), n=3, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


def check_kwargs(kwargs: Mapping[str, Any], allowed: Iterable[str], what: str) -> None:
    """Reject unknown keyword arguments with a close-match suggestion.

    Raises:
        ConfigError: a key of `kwargs` is not in `allowed`.
    """
    allowed = sorted(allowed)
    for key in kwargs:
        if key not in allowed:
            raise ConfigError(
                f"unknown argument {key!r} for {what}{suggest(key, allowed)} (accepted: {', '.join(allowed)})"
            )


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from `list_models()`.
        **kwargs: overrides of the builder's defaults (e.g. `n_classes`, `base_channels`, or explicit widths
            `stem_channels` and `block_channels`).

    Returns:
        The model (train mode, freshly initialised) with `model_config` set.

    Raises:
        ConfigError: unknown name, unknown argument or invalid value.
    """
    if name not in _model_entrypoints:
        raise ConfigError(
            f"unknown model {name!r}{suggest(name, _model_entrypoints)} (see `edgeasc models` or list_models())"
        )
    model = _model_entrypoints[name](**kwargs)
    if not callable(getattr(model, "config_kwargs", None)):
        raise TypeError(f"builder {name!r} returned {type(model).__name__}, which has no config_kwargs()")
    model.model_config = {"name": name, "kwargs": model.config_kwargs()}
    return model


def model_from_config(cfg: Mapping[str, Any]) -> nn.Module:
    """Rebuild a model from a `model_config` dict `{"name": str, "kwargs": dict}` (as stored in checkpoints).

    Raises:
        ConfigError: the dict is malformed or names an unknown model.
    """
    if not isinstance(cfg, Mapping) or not isinstance(cfg.get("name"), str):
        raise ConfigError(f"model_config must be a dict with a 'name' string, got {cfg!r}")
    kwargs = cfg.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise ConfigError(f"model_config['kwargs'] must be a dict, got {type(kwargs).__name__}")
    extra = set(cfg) - {"name", "kwargs"}
    if extra:
        raise ConfigError(f"model_config has unexpected keys {sorted(extra)}; expected 'name' and 'kwargs'")
    return create_model(cfg["name"], **dict(kwargs))
