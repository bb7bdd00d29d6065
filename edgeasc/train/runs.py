"""A training run's folder: the resumable state (last.pt), the best validated epoch (best.pt), the config
check on resume, the run's log file, and the resolved config of a finished run.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from edgeasc import __version__
from edgeasc.artifacts import (
    save_torch_atomic,
)
from edgeasc.checkpoint import save_checkpoint
from edgeasc.config import TrainConfig, from_dict, to_dict
from edgeasc.errors import CheckpointError, ConfigError, DataError
from edgeasc.train.batchnorm import _debiased_copy

log = logging.getLogger(__name__)


STATE_FILE = "last.pt"


BEST_FILE = "best.pt"


def _save_state(path: Path, model, optimizer, epoch: int, history: list, cfg_dict: dict, scaler=None,
                best: dict[str, Any] | None = None) -> None:
    save_torch_atomic(path, {
        "grad_scaler": scaler.state_dict() if scaler is not None else None,
        "model_config": model.model_config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "history": history,
        "best": best,
        "config": cfg_dict,
        "stage": "train-state",
        "edgeasc_version": __version__,
    })


def _save_best(path: Path, snapshot: torch.nn.Module, cfg: TrainConfig, cfg_dict: dict, best: dict[str, Any],
               debiased: dict[str, Any] | None) -> None:
    """Write best.pt mid-run: `snapshot` (`_debiased_copy` of the best epoch) as model.pt is written."""
    if cfg.quant.weight_fake_quant:
        from edgeasc.train.qat import snapped_copy

        snapshot = snapped_copy(snapshot)
    extra = {"epochs": cfg.optim.epochs, "val_macro_accuracy": best["val_macro_accuracy"],
             "train_split": cfg.data.train_split, "val_split": cfg.data.val_split, "epoch": best["epoch"],
             "selected_by": "val_macro_accuracy"}
    if debiased:
        extra["bn_debias"] = debiased
    save_checkpoint(path, snapshot, stage="train", config=cfg_dict, extra=extra)


def _recover_best(state: dict[str, Any], history: list[dict[str, Any]], model: torch.nn.Module, cfg: TrainConfig,
                  cfg_dict: dict, path: Path, start_epoch: int) -> dict[str, Any] | None:
    """The best validated epoch of a resumed run (last.pt's "best", else the best of its history), checked
    against the epoch best.pt records; None (best.pt starts again, with a warning) when they differ.

    The one expected difference is a kill after last.pt and before best.pt were written at the best epoch:
    then that epoch is the state's own, and best.pt is written again from the weights just loaded.
    """
    best = state.get("best")
    if best is None:  # a state written before best.pt existed: the history has the accuracies
        validated = [r for r in history if r.get("val_macro_accuracy") is not None]
        if not validated:
            return None
        top = max(validated, key=lambda r: r["val_macro_accuracy"])  # the earliest of equal accuracies
        best = {"epoch": int(top["epoch"]), "val_macro_accuracy": top["val_macro_accuracy"],
                "model_config": copy.deepcopy(model.model_config)}
    on_disk = None
    if path.is_file():
        from edgeasc.checkpoint import read_checkpoint

        try:
            on_disk = (read_checkpoint(path).get("extra") or {}).get("epoch")
        except CheckpointError as exc:
            log.warning("%s", exc)
    if on_disk == best["epoch"]:
        return best
    if best["epoch"] == start_epoch:
        if start_epoch < cfg.optim.epochs:  # the last epoch's best.pt is written with model.pt
            snapshot, debiased = _debiased_copy(model, cfg)
            _save_best(path, snapshot, cfg, cfg_dict, best, debiased)
        return best
    log.warning("%s does not hold epoch %d, the best validated epoch so far (it holds %s); best.pt will be the best "
                "of the epochs from now on", path, best["epoch"], f"epoch {on_disk}" if on_disk else "no epoch")
    return None


def _normalised_config(saved: Any) -> Any:
    """A saved run config with the fields added since it was written filled in with their defaults."""
    try:
        return to_dict(from_dict(TrainConfig, saved))
    except (ConfigError, ValueError, TypeError):
        return saved


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else k)
    return f"{path or 'config'}: {a!r} -> {b!r}"


def _attach_log_file(path: Path) -> list[logging.Handler]:
    """Log the `edgeasc` logger to `path` too; returns the handler added (none when one is already there)."""
    root = logging.getLogger("edgeasc")
    if any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path.resolve() for h in root.handlers):
        return []
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    return [handler]


def resolved_config_of(run_dir: str | os.PathLike) -> TrainConfig:
    """The TrainConfig a run directory was trained with."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise DataError(f"{run_dir} has no config.json")
    return from_dict(TrainConfig, json.loads(path.read_text()))
