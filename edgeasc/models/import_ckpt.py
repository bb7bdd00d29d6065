"""Import Lightning checkpoints of the CPJKU baseline and of the seed's SSCP-Mobile into edgeasc checkpoints.

Both sources are PyTorch Lightning `.ckpt` files: a dict whose `"state_dict"` holds the network under a
module prefix (`model.` in CPJKU/dcase2024_task1_baseline and EOPhoeny/dcase2025_task1_inference) next to
non-network entries (`mel.*` resampler and mel filterbank, `mel_augment.*`, teacher weights). The network's
widths are read from the weight shapes, so pruned checkpoints (any widths) import without their masks; the
model is rebuilt with `create_model(family, stem_channels=..., block_channels=...)`, loaded strictly and
written with `save_checkpoint(stage="import")`. The stored mel filterbank (`mel.1.mel_scale.fb`) picks the
frontend the checkpoint carries (`match_frontend`): a network trained on 44.1 kHz features is not run on the
32 kHz ones, and a filterbank that matches no frontend is refused.

Strides are not visible in weights: the baseline's (b3 (1, 2), b4 (2, 1)) are assumed unless given.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from edgeasc.checkpoint import save_checkpoint
from edgeasc.config import FrontendConfig, to_dict
from edgeasc.errors import CheckpointError, ConfigError
from edgeasc.features import mel_filterbank
from edgeasc.models.cpmobile import BASELINE_STRIDES
from edgeasc.models.layers import Size2
from edgeasc.models.lightning import MODEL_KEY_PREFIXES, load_lightning, network_prefixes
from edgeasc.models.registry import create_model

log = logging.getLogger(__name__)

FAMILIES: tuple[str, ...] = ("cpmobile", "sscp_mobile")

_STEM_KEY = "in_c.0.0.weight"
_BLOCK_KEY = re.compile(r"^stages\.s(\d+)\.b(\d+)\.(block\.0\.0|exp_conv\.0)\.weight$")


def _split_prefix(state: Mapping[str, Any], path: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Find the network's key prefix; return (unprefixed network state, keys left out)."""
    candidates = network_prefixes(state, _STEM_KEY)
    if not candidates:
        raise CheckpointError(
            f"{path}: no CP-Mobile/SSCP-Mobile weights found (expected a key like 'model.{_STEM_KEY}' "
            f"under one of the prefixes {', '.join(MODEL_KEY_PREFIXES)})"
        )
    if len(candidates) > 1:
        raise CheckpointError(
            f"{path}: several networks in one checkpoint (prefixes {sorted(candidates)}); extract one state_dict"
        )
    prefix = candidates.pop()
    model_state: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        if key.startswith(prefix):
            if not isinstance(value, torch.Tensor):
                raise CheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
            model_state[key[len(prefix) :]] = value
        else:
            dropped.append(key)
    return model_state, dropped


def infer_family(keys: list[str] | tuple[str, ...] | Mapping[str, Any]) -> str:
    """`sscp_mobile` if the keys hold the split-conv modules (`in_c2`, `depth_conv2`), else `cpmobile`.

    Raises:
        CheckpointError: the keys hold neither family's blocks.
    """
    keys = list(keys)
    if any(k.startswith("in_c2.") or ".depth_conv2." in k for k in keys):
        return "sscp_mobile"
    if any(".block.0.0." in k for k in keys):
        return "cpmobile"
    raise CheckpointError("state_dict holds neither CP-Mobile (`block.0.0`) nor SSCP-Mobile (`depth_conv2`) blocks")


def infer_widths(state: Mapping[str, torch.Tensor], family: str) -> dict[str, Any]:
    """Read `create_model` kwargs (explicit widths, n_blocks, n_classes, in_channels) from weight shapes.

    Args:
        state: unprefixed network state_dict.
        family: `cpmobile` or `sscp_mobile`.

    Raises:
        CheckpointError: a required weight is missing or the block numbering has gaps.
    """

    def shape(key: str) -> torch.Size:
        if key not in state:
            raise CheckpointError(f"state_dict lacks {key!r}, which a {family} network needs")
        return state[key].shape

    stem_mid, in_channels = shape("in_c.0.0.weight")[:2]
    stem = [stem_mid, shape("in_c.1.0.weight")[0]]
    if family == "sscp_mobile":
        stem.append(shape("in_c2.0.0.weight")[0])
    expand_key, project_key = (
        ("block.0.0", "block.2.0") if family == "cpmobile" else ("exp_conv.0", "proj_conv.0")
    )
    found = []
    for key in state:
        m = _BLOCK_KEY.match(key)
        if m and m.group(3) == expand_key:
            found.append((int(m.group(2)), int(m.group(1))))
    found.sort()
    if not found:
        raise CheckpointError(f"state_dict holds no {family} blocks (keys like 'stages.s1.b1.{expand_key}.weight')")
    block_ids = [b for b, _ in found]
    stage_ids = [s for _, s in found]
    if block_ids != list(range(1, len(found) + 1)) or stage_ids != sorted(stage_ids) or stage_ids[0] != 1:
        raise CheckpointError(f"unexpected block numbering in state_dict: {[f's{s}.b{b}' for b, s in found]}")
    counts = Counter(stage_ids)
    if sorted(counts) != list(range(1, max(counts) + 1)):
        raise CheckpointError(f"unexpected stage numbering in state_dict: stages {sorted(counts)}")
    blocks = []
    for b, s in found:
        base = f"stages.s{s}.b{b}."
        blocks.append((int(shape(base + expand_key + ".weight")[0]), int(shape(base + project_key + ".weight")[0])))
    return {
        "stem_channels": tuple(int(c) for c in stem),
        "block_channels": tuple(blocks),
        "n_blocks": tuple(counts[k] for k in sorted(counts)),
        "n_classes": int(shape("feed_forward.0.weight")[0]),
        "in_channels": int(in_channels),
    }


FILTERBANK_SUFFIX = "mel_scale.fb"
"""torchaudio's MelScale buffer (`mel.1.mel_scale.fb` in the CPJKU baselines and the seed's checkpoints)."""

CANDIDATE_FRONTENDS: dict[str, FrontendConfig] = {
    "dcase2025 (32 kHz)": FrontendConfig(),
    "44.1 kHz": FrontendConfig(sample_rate_hz=44_100),
}
"""Frontends a stored filterbank is compared with: the DCASE 2024/2025 baseline's (32 kHz), and the same
STFT on 44.1 kHz audio (89 frames per clip), as CPJKU's earlier systems computed it."""


def match_frontend(state: Mapping[str, Any], path: Path) -> tuple[FrontendConfig, str]:
    """The frontend whose mel filterbank equals the one stored in `state` (float32, as torchaudio builds it).

    Returns:
        (frontend, how): `how` names the candidate, or says that no filterbank was stored (then the DCASE
        2025 frontend is assumed, as for a plain state_dict).

    Raises:
        CheckpointError: a filterbank is stored but matches no candidate.
    """
    keys = [k for k in state if isinstance(k, str) and k.endswith(FILTERBANK_SUFFIX)]
    if not keys:
        log.info("%s stores no mel filterbank; assuming the DCASE 2025 frontend (32 kHz)", path)
        return FrontendConfig(), "none stored: DCASE 2025 frontend assumed"
    stored = state[keys[0]]
    if not isinstance(stored, torch.Tensor):
        raise CheckpointError(f"{path}: {keys[0]} is a {type(stored).__name__}, not a tensor")
    stored = stored.detach().float().cpu()
    for name, fe in CANDIDATE_FRONTENDS.items():
        f_max = fe.f_max_hz if fe.f_max_hz is not None else fe.sample_rate_hz / 2
        fb = mel_filterbank(fe.n_fft // 2 + 1, fe.f_min_hz, f_max, fe.n_mels, fe.sample_rate_hz)
        if fb.shape == stored.shape and torch.allclose(fb, stored, rtol=0, atol=1e-4):
            exact = bool(torch.equal(fb, stored))
            log.info("%s: stored filterbank matches the %s frontend%s", path, name, "" if exact else " (within 1e-4)")
            return fe, f"{keys[0]} = {name}" + ("" if exact else " (within 1e-4)")
    raise CheckpointError(
        f"{path}: the stored mel filterbank {keys[0]} {tuple(stored.shape)} matches none of edgeasc's frontends "
        f"({', '.join(CANDIDATE_FRONTENDS)}: (2049, 256) HTK filters); importing it would run the network on "
        "features it was not trained on"
    )


def import_checkpoint(
    src_path: str | os.PathLike,
    dst_path: str | os.PathLike,
    *,
    family: str | None = None,
    strides: Mapping[str, Size2] | None = None,
) -> Path:
    """Convert a CPJKU-baseline or seed SSCP-Mobile Lightning checkpoint into an edgeasc checkpoint.

    Args:
        src_path: the `.ckpt` (or a plain `{"state_dict": ...}` / raw state_dict file).
        dst_path: where to write the edgeasc checkpoint.
        family: `cpmobile` or `sscp_mobile`; inferred from the keys when None.
        strides: per-block strides (`{"b3": (1, 2), ...}`); the baseline's when None.

    Returns:
        `dst_path` as a Path.

    Raises:
        CheckpointError: unreadable file, no recognisable network, or weights that do not fit the rebuilt model.
        ConfigError: unknown `family`.
    """
    src = Path(src_path)
    obj = load_lightning(src)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        state = obj["state_dict"]
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = obj
    else:
        raise CheckpointError(f"{src}: expected a Lightning checkpoint (a dict with 'state_dict') or a state_dict")
    model_state, dropped = _split_prefix(state, src)

    inferred = infer_family(model_state)
    if family is None:
        family = inferred
    elif family not in FAMILIES:
        raise ConfigError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    elif family != inferred:
        raise CheckpointError(f"{src}: --family {family} given, but its keys hold a {inferred} network")

    kwargs = infer_widths(model_state, family)
    n_blocks = len(kwargs["block_channels"])
    if strides is None:
        strides = {k: v for k, v in BASELINE_STRIDES.items() if int(k[1:]) <= n_blocks}
    kwargs["strides"] = dict(strides)
    try:
        model = create_model(family, **kwargs)
    except ConfigError as exc:
        raise CheckpointError(f"{src}: widths read from the weights do not build a {family}: {exc}") from None
    try:
        model.load_state_dict(model_state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines()[:2])
        raise CheckpointError(f"{src}: weights do not fit the rebuilt {family}: {detail}") from None

    frontend, how = match_frontend(state, src)
    if dropped:
        groups = Counter(k.split(".", 1)[0] for k in dropped)
        log.info("left out %d non-network entries of %s: %s", len(dropped), src, dict(groups))
    extra: dict[str, Any] = {"source": str(src), "family": family, "dropped_keys": len(dropped),
                             "frontend_match": how}
    if isinstance(obj, Mapping):
        for key in ("epoch", "global_step"):
            if isinstance(obj.get(key), int):
                extra[f"source_{key}"] = obj[key]
    return save_checkpoint(dst_path, model.eval(), stage="import", extra=extra,
                           config={"frontend": to_dict(frontend)})
