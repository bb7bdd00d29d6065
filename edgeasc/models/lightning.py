"""Reading PyTorch Lightning `.ckpt` files: the raw dict and the prefix the network's weights sit under.

Shared by `import_ckpt` (CPJKU baseline and seed SSCP-Mobile checkpoints) and `passt` (official PaSST
weights). It depends on nothing but the loader, so the model registry can use it without the checkpoint module.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from edgeasc.artifacts import load_torch

MODEL_KEY_PREFIXES: tuple[str, ...] = ("model.", "net.", "student.", "module.")
"""Prefixes under which Lightning modules (and DataParallel) keep the network; nested ones are stripped too
(e.g. `net.module.`). A raw, unprefixed state_dict is accepted as well."""


def load_lightning(path: str | os.PathLike) -> Any:
    """The checkpoint's dict (`artifacts.load_torch`, weights only). Lightning may store argparse.Namespace
    hyper-parameters; that class is inert, so it is allowed."""
    return load_torch(path, "checkpoint", safe_globals=(argparse.Namespace,))


def network_prefixes(keys: Any, anchor_key: str) -> set[str]:
    """Prefixes under which `anchor_key` occurs, each made only of known wrappers (`MODEL_KEY_PREFIXES`,
    nested like `model.module.`); one prefix per network held in the file."""
    found = set()
    for key in keys:
        if isinstance(key, str) and key.endswith(anchor_key):
            prefix = rest = key[: -len(anchor_key)]
            while rest and (p := next((p for p in MODEL_KEY_PREFIXES if rest.startswith(p)), None)):
                rest = rest[len(p) :]
            if not rest:
                found.add(prefix)
    return found
