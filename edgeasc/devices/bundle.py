"""Device bundles: a general model plus one fine-tuned model per known recording device.

The DCASE 2025 rules allow the device id at inference time. The seed (and the DCASE baseline's
`MultiDeviceModelContainer`) fine-tunes a copy of the general model on each known device's clips and
answers every other device id (s4-s6 in development, s7-s10 in the 2025 evaluation set) with the
general model. The budget applies to each model separately.

File format (one file, `torch.save`, loadable with `weights_only=True`; no pickled code):
    {"format": "edgeasc-bundle", "bundle_version": 1, "edgeasc_version": str,
     "general": <edgeasc checkpoint dict>,                 # see edgeasc.checkpoint
     "devices": {"a": <edgeasc checkpoint dict>, ...},     # lower-case device ids
     "extra": dict}                                        # how it was made (finetune recipe, ...)
Every member shares the general model's frontend (checked when the bundle is written).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeasc import __version__
from edgeasc.artifacts import load_torch, save_torch_atomic
from edgeasc.checkpoint import REQUIRED_KEYS, check_finite_weights
from edgeasc.errors import CheckpointError
from edgeasc.labels import GENERAL, device_key, member_for

BUNDLE_FORMAT = "edgeasc-bundle"
BUNDLE_VERSION = 1


@dataclass
class Bundle:
    """A general model and per-device models, each an edgeasc checkpoint dict.

    Attributes:
        general: checkpoint of the general model (answers unknown devices).
        devices: device id -> checkpoint of that device's fine-tuned model.
        extra: provenance (recipe, source checkpoint, ...).
        path: the file it was read from, if any.
    """

    general: dict[str, Any]
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def member_for(self, device_id: str) -> str:
        """The member that answers `device_id`: the device's own id if it has a model, else "general"."""
        return member_for(device_id, self.devices)

    def checkpoint(self, member: str) -> dict[str, Any]:
        """The checkpoint dict of a member ("general" or a device id with a model)."""
        if member == GENERAL:
            return self.general
        if member not in self.devices:
            raise CheckpointError(f"bundle has no model for device {member!r} (it has: {', '.join(self.members())})")
        return self.devices[member]

    def members(self) -> list[str]:
        """"general" followed by the device ids, in the order they were added."""
        return [GENERAL, *self.devices]

    def build(self, member: str) -> nn.Module:
        """Rebuild one member's model (eval mode) from its widths and weights."""
        from edgeasc.models import model_from_config

        ckpt = self.checkpoint(member)
        model = model_from_config(ckpt["model_config"])
        try:
            model.load_state_dict(ckpt["state_dict"], strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"bundle member {member!r}: weights do not match its model: "
                                  f"{str(exc).splitlines()[0]}") from None
        return model.eval()

    def frontend(self) -> Any:
        """The shared frontend (`FrontendConfig`) of every member."""
        from edgeasc.checkpoint import frontend_of

        return frontend_of(self.general)


def _check_member(name: str, ckpt: Any) -> None:
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS):
        raise CheckpointError(f"bundle member {name!r} is not an edgeasc checkpoint")
    check_finite_weights(ckpt, f"bundle member {name!r}")


def save_bundle(path: str | os.PathLike, general: dict[str, Any], devices: dict[str, dict[str, Any]],
                extra: dict[str, Any] | None = None) -> Path:
    """Atomically write a bundle of checkpoint dicts (see the module docstring)."""
    _check_member(GENERAL, general)
    frontend = (general.get("config") or {}).get("frontend")
    norm: dict[str, dict[str, Any]] = {}
    for dev, ckpt in devices.items():
        key = device_key(dev)
        if not key or key == GENERAL:
            raise CheckpointError(f"invalid device id {dev!r} for a bundle member")
        _check_member(key, ckpt)
        other = (ckpt.get("config") or {}).get("frontend")
        if other != frontend:
            raise CheckpointError(f"bundle member {key!r} uses a different frontend from the general model")
        norm[key] = ckpt
    obj = {"format": BUNDLE_FORMAT, "bundle_version": BUNDLE_VERSION, "edgeasc_version": __version__,
           "general": general, "devices": norm, "extra": extra or {}}
    return save_torch_atomic(path, obj)


def is_bundle(path: str | os.PathLike) -> bool:
    """True when `path` is a readable edgeasc bundle (False for checkpoints, other files, missing files)."""
    path = Path(path)
    if path.suffix.lower() in (".tflite", ".onnx") or not path.is_file():
        return False
    try:
        obj = load_torch(path, "model file")
    except CheckpointError:
        return False
    return isinstance(obj, dict) and obj.get("format") == BUNDLE_FORMAT


def read_bundle(path: str | os.PathLike) -> Bundle:
    """Read and validate a bundle file.

    Raises:
        CheckpointError: missing, unreadable, not a bundle, or a newer bundle version.
    """
    path = Path(path)
    obj = load_torch(path, "model file")
    if not isinstance(obj, dict) or obj.get("format") != BUNDLE_FORMAT:
        raise CheckpointError(f"{path} is not an edgeasc device bundle (write one with `edgeasc finetune`)")
    if int(obj.get("bundle_version", 0)) > BUNDLE_VERSION:
        raise CheckpointError(f"{path} is bundle version {obj['bundle_version']}; this edgeasc reads up to "
                              f"{BUNDLE_VERSION} (upgrade edgeasc)")
    _check_member(GENERAL, obj.get("general"))
    devices = obj.get("devices") or {}
    for dev, ckpt in devices.items():
        _check_member(dev, ckpt)
    return Bundle(general=obj["general"], devices=dict(devices), extra=obj.get("extra") or {}, path=path)


def routed_logits(bundle: Bundle, waves: np.ndarray, device_ids: list[str], batch_size: int = 64,
                  torch_device: str | torch.device = "cpu") -> tuple[np.ndarray, list[str]]:
    """Logits of each waveform from the member that answers its device id.

    Returns:
        (logits (N, n_classes), the member used per clip)
    """
    from edgeasc.evaluate import predict_logits

    fe = bundle.frontend()
    used = [bundle.member_for(d) for d in device_ids]
    out: np.ndarray | None = None
    for member in dict.fromkeys(used):
        idx = np.array([i for i, m in enumerate(used) if m == member])
        logits = predict_logits(bundle.build(member), waves[idx], fe, batch_size, torch_device)
        if out is None:
            out = np.zeros((len(device_ids), logits.shape[1]), dtype=np.float32)
        out[idx] = logits
    if out is None:
        from edgeasc.labels import SCENES

        out = np.zeros((0, len(SCENES)), dtype=np.float32)
    return out, used
