"""edgeasc checkpoints: constructor arguments + state_dict, never a pickled module.

Format (a dict saved with `torch.save`):
    {"model_config": {"name": str, "kwargs": dict},   # rebuilds with create_model(name, **kwargs)
     "state_dict": dict[str, Tensor],
     "stage": str,                                     # e.g. "train", "prune", "import"
     "edgeasc_version": str,
     "config": dict | None,                            # the fully resolved run config (frontend included)
     "extra": dict}                                    # stage-specific facts (epoch, metrics, ...)
Pruned models keep explicit per-layer widths in `model_config.kwargs`, so they rebuild exactly.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeasc import __version__
from edgeasc.artifacts import load_torch, save_torch_atomic
from edgeasc.config import FrontendConfig, from_dict
from edgeasc.errors import CheckpointError, DomainError

log = logging.getLogger(__name__)

REQUIRED_KEYS = ("model_config", "state_dict", "stage", "edgeasc_version")


def nonfinite_tensors(state_dict: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of `state_dict` that hold a NaN or an infinity."""
    return [k for k, v in state_dict.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def nonfinite_summary(state_dict: Any) -> str | None:
    """'3 of 126 tensors hold NaN or infinite values (first: in_c.0.0.weight)', or None when all are finite
    (or `state_dict` is not a dict, which the strict load reports)."""
    bad = nonfinite_tensors(state_dict) if isinstance(state_dict, dict) else []
    return f"{len(bad)} of {len(state_dict)} tensors hold NaN or infinite values (first: {bad[0]})" if bad else None


def check_finite_weights(ckpt: dict[str, Any], what: str) -> None:
    """Refuse a checkpoint dict (`what` names it in the message) whose weights are not all finite.

    Raises:
        CheckpointError: "WHAT is not a usable model: its 3 of 126 tensors hold NaN or infinite values (...)".
    """
    problem = nonfinite_summary(ckpt.get("state_dict"))
    if problem:
        raise CheckpointError(f"{what} is not a usable model: its {problem}")


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    stage: str,
    config: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Atomically write `model` (which must carry `model_config`) as an edgeasc checkpoint."""
    model_config = getattr(model, "model_config", None)
    if model_config is None:
        raise CheckpointError(f"{type(model).__name__} has no model_config; build it with create_model()")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    problem = nonfinite_summary(state)
    if problem:  # a diverged model is never written as a result
        raise DomainError(f"refusing to write {path}: the model's {problem}")
    obj = {
        "model_config": model_config,
        "state_dict": state,
        "stage": stage,
        "edgeasc_version": __version__,
        "config": config,
        "extra": extra or {},
    }
    return save_torch_atomic(path, obj)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate an edgeasc checkpoint file (no code is unpickled: weights_only=True).

    Raises:
        CheckpointError: missing, unreadable, not an edgeasc checkpoint, or its weights are not all finite.
    """
    path = Path(path)
    obj = load_torch(path, "checkpoint")
    if not isinstance(obj, dict) or any(k not in obj for k in REQUIRED_KEYS):
        raise CheckpointError(
            f"{path} is not an edgeasc checkpoint (expected keys {', '.join(REQUIRED_KEYS)}); "
            "for a CPJKU or seed Lightning checkpoint run `edgeasc import-checkpoint` first"
        )
    check_finite_weights(obj, str(path))
    return obj


def load_model(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint describes and load its weights strictly.

    Returns:
        (model in eval mode, the checkpoint dict)
    """
    from edgeasc.models import model_from_config

    ckpt = read_checkpoint(path)
    model = model_from_config(ckpt["model_config"])
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:2]
        raise CheckpointError(f"{path}: weights do not match {ckpt['model_config']['name']}: {' '.join(first)}") from None
    return model.eval(), ckpt


def frontend_of(ckpt: dict[str, Any]) -> FrontendConfig:
    """The frontend a checkpoint was trained with (the baseline's for imported checkpoints)."""
    cfg = ckpt.get("config") or {}
    if "frontend" not in cfg:
        log.info("checkpoint has no frontend config; using the DCASE baseline frontend")
        return FrontendConfig()
    return from_dict(FrontendConfig, cfg["frontend"], where="frontend")
