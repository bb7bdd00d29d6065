"""The DCASE 2025 Task 1 inference API for edgeasc models, and the complexity.json of a submission.

The organisers run every submission through the same four functions (the API of the DCASE 2025 inference
template, as the seed's package EOPhoeny/dcase2025_task1_inference implements it; SPEC.md section 3):
`load_model`, `load_inputs`, `get_model_for_device` and `predict(file_paths, device_ids, ...)`, which returns
one logit tensor per file and the class order. The device id of each file is known at inference time; a
device with its own fine-tuned model (an edgeasc bundle, `edgeasc.devices.bundle`) uses it, every other id (s4-s6,
and s7-s10 of the 2025 evaluation set) the general model. Device ids are case-insensitive.

Real recordings: `edgeasc.data.audio.read_audio` averages channels to mono and resamples any rate to the model's.
A clip longer than the model's 1-s input is either cropped to its first second (`windows="first"`, the
default: what the DCASE evaluation clips, which are exactly 1 s, see) or split into non-overlapping 1-s
windows whose logits are averaged (`windows="mean"`; the last window is zero-padded). A shorter clip is
zero-padded at the end.

Precision, by the DCASE rule (parameter memory counted at the dtype the weights are stored in): weights are
held in fp16, as the seed's submission does. On CUDA the members run in fp16 (`.half()`, log-mel input cast
to fp16). On CPU, half-precision convolutions are slow or unsupported, so the fp16-rounded weights are
upcast to float32 and run in float32: the same stored weights, float32 arithmetic.

`complexity()` gives the complexity.json dict: for every DCASE 2025 device (a, b, c, s1-s10) the MACs of the
model that answers it (edgeasc.complexity, DCASE rule, on the (1, 1, n_mels, frames) input of the frontend)
and its parameter memory at fp16 (parameters x 2 bytes), then the maxima. The budget check lives in
`edgeasc.submission` (it runs when a package is written, not at inference).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from edgeasc.budget import PARAM_DTYPE_BYTES
from edgeasc.config import FrontendConfig
from edgeasc.data.audio import fit_length, read_audio, split_windows
from edgeasc.errors import CheckpointError, ConfigError
from edgeasc.features import LogMel
from edgeasc.labels import EVAL_DEVICES, GENERAL, SCENES, member_for
from edgeasc.metrics import require_finite_logits

log = logging.getLogger(__name__)

WINDOW_MODES: tuple[str, ...] = ("first", "mean")
WEIGHTS_DTYPE = "fp16"
"""Parameters are stored and counted in fp16 (`edgeasc.budget.PARAM_DTYPE_BYTES` gives the width)."""
LOAD_CHUNK_FILES = 2048
"""`predict` reads and classifies this many files at a time (bounds the memory of the features)."""


class DeviceModels(nn.Module):
    """The frontend and the member models of a submission: the general model and one model per device.

    Members hold fp16-rounded weights; their dtype and device are `compute_dtype` / `compute_device`
    (fp16 on CUDA, float32 on CPU). Call a member on log-mel input (B, 1, n_mels, frames) of that dtype.

    Attributes:
        frontend: waveform (B, samples) -> log-mel (B, 1, n_mels, frames), float32.
        general: the model for devices without their own.
        devices: device id (lower case) -> that device's model.
        class_order: the class name of each logit.
    """

    def __init__(self, frontend: FrontendConfig, general: nn.Module, devices: dict[str, nn.Module],
                 device: str | torch.device = "cpu") -> None:
        super().__init__()
        self.frontend_config = frontend
        self.frontend = LogMel(frontend)
        self.general = general
        self.devices = nn.ModuleDict(devices)
        self.class_order: list[str] = list(SCENES)
        self.compute_device = torch.device(device)
        self.compute_dtype = torch.float16 if self.compute_device.type == "cuda" else torch.float32
        self.frontend.to(self.compute_device)
        for member in (general, *devices.values()):
            member.to(device=self.compute_device, dtype=self.compute_dtype).eval()

    def member_for(self, device_id: str) -> str:
        """The member that answers `device_id`: the (lower-cased) id when it has a model, else "general"."""
        return member_for(device_id, self.devices)

    def member(self, name: str) -> nn.Module:
        """A member by name ("general" or a device id with its own model)."""
        return self.general if name == GENERAL else self.devices[name]

    def members(self) -> list[str]:
        """"general" followed by the device ids with their own model."""
        return [GENERAL, *self.devices]

    def forward(self, x: Tensor, device_id: str = GENERAL) -> Tensor:
        """Logits (B, n_classes) of the member for `device_id` on log-mel `x`: (B, 1, n_mels, frames)."""
        return self.member(self.member_for(device_id))(x.to(self.compute_device, self.compute_dtype))


def _round_to_fp16(model: nn.Module) -> nn.Module:
    """Round every floating tensor of `model` (parameters and buffers) to fp16 precision, in place."""
    with torch.no_grad():
        for t in (*model.parameters(), *model.buffers()):
            if t.is_floating_point():
                t.copy_(t.half())
    return model


def read_members(model_file_path: str | os.PathLike) -> tuple[FrontendConfig, dict[str, nn.Module]]:
    """Rebuild the members of an edgeasc bundle, or of a plain checkpoint (the general model only).

    Returns:
        (the shared frontend, member name -> model in float32 eval mode, "general" first)
    """
    from edgeasc.checkpoint import frontend_of
    from edgeasc.checkpoint import load_model as load_checkpoint_model
    from edgeasc.devices.bundle import is_bundle, read_bundle

    path = Path(model_file_path)
    if is_bundle(path):
        bundle = read_bundle(path)
        members = {GENERAL: bundle.build(GENERAL)}
        members.update({dev: bundle.build(dev) for dev in bundle.devices})
        frontend = bundle.frontend()
    else:
        model, ckpt = load_checkpoint_model(path)
        members = {GENERAL: model}
        frontend = frontend_of(ckpt)
    for name, member in members.items():
        if getattr(member, "input_kind", "logmel") != "logmel":
            raise CheckpointError(f"{path}: member {name!r} takes {member.input_kind} input; the DCASE API feeds "
                                  "log-mel features (use a student model, not a waveform teacher)")
    return frontend, {name: member.float().eval() for name, member in members.items()}


def load_model(model_file_path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> DeviceModels:
    """Load an edgeasc bundle or checkpoint as the DCASE container of frontend and member models.

    Weights are rounded to fp16 (the stored precision); members run in fp16 on CUDA, in float32 on CPU.

    Args:
        model_file_path: an edgeasc bundle (`edgeasc finetune`) or checkpoint (= general model only).
            Required here; a generated submission package passes its packaged weights.
        device: "cpu" or "cuda" (or a torch.device).

    Raises:
        ConfigError: no path given. CheckpointError: missing or unreadable file, or not an edgeasc model.
    """
    if model_file_path is None:
        raise ConfigError("load_model needs a model file (an edgeasc bundle or checkpoint)")
    frontend, members = read_members(model_file_path)
    for member in members.values():
        _round_to_fp16(member)
    general = members.pop(GENERAL)
    return DeviceModels(frontend, general, members, device)


def require_list(name: str, value: Any) -> None:
    """ConfigError when `value` is a single str or path: a str is iterable too, and "one.wav" would otherwise
    be read as seven files named by its characters."""
    if isinstance(value, (str, bytes, os.PathLike)):
        raise ConfigError(f"{name} must be a list (one entry per file), got the single {type(value).__name__} "
                          f"{value!r}; wrap it in a list")


def _check_lengths(file_paths: list[str], device_ids: list[str]) -> None:
    require_list("file_paths", file_paths)
    require_list("device_ids", device_ids)
    if len(file_paths) != len(device_ids):
        raise ConfigError(f"got {len(file_paths)} files but {len(device_ids)} device ids; give one id per file")


def load_inputs(
    file_paths: list[str | os.PathLike],
    device_ids: list[str],
    model: DeviceModels,
    windows: str = "first",
    batch_size: int = 256,
    num_workers: int = 1,
) -> list[Tensor]:
    """Read audio files and compute the model's log-mel input for each.

    Any sample rate, mono or multi-channel (averaged), 16/24-bit or float files; see the module docstring
    for clips that are not 1 s long.

    Args:
        file_paths: audio files (wav, flac: anything soundfile reads).
        device_ids: one device id per file (only checked for length here; `predict` routes by it).
        model: from `load_model` (its frontend and compute device are used).
        windows: "first" (first second) or "mean" (every 1-s window, logits averaged by `predict`).
        batch_size: windows per log-mel batch.
        num_workers: threads reading and resampling files.

    Returns:
        Per file, a float32 CPU tensor: (1, 1, n_mels, frames) for "first", (n_windows, 1, n_mels, frames)
        for "mean".

    Raises:
        DataError: a file is missing, unreadable or empty (the message names it).
        ConfigError: lengths differ or `windows` is unknown.
    """
    _check_lengths(file_paths, device_ids)
    return log_mel_inputs(file_paths, model.frontend_config, windows, batch_size, num_workers,
                          mel=model.frontend, device=model.compute_device)


def log_mel_inputs(
    file_paths: list[str | os.PathLike],
    frontend: FrontendConfig,
    windows: str = "first",
    batch_size: int = 256,
    num_workers: int = 1,
    mel: nn.Module | None = None,
    device: str | torch.device = "cpu",
) -> list[Tensor]:
    """`load_inputs` without a `DeviceModels`: the log-mel input of `frontend` for each file.

    For models that are not PyTorch members (a .tflite: `edgeasc.deploy.predict`); same arguments, returns and
    errors as `load_inputs`.

    Args:
        mel: the `LogMel` module to run (default: a new one of `frontend`).
        device: where `mel` runs.
    """
    require_list("file_paths", file_paths)
    if windows not in WINDOW_MODES:
        raise ConfigError(f"windows must be one of {', '.join(WINDOW_MODES)}, got {windows!r}")
    fe = frontend
    n = fe.clip_samples
    mel = mel if mel is not None else LogMel(fe).to(device)

    def read(path: str | os.PathLike) -> np.ndarray:
        wave = read_audio(path, fe.sample_rate_hz)
        return fit_length(wave, n)[None] if windows == "first" else split_windows(wave, n)

    if num_workers > 1:
        with ThreadPoolExecutor(max_workers=num_workers) as pool:
            per_file = list(pool.map(read, file_paths))
    else:
        per_file = [read(p) for p in file_paths]
    counts = [len(w) for w in per_file]
    if not per_file:
        return []
    waves = np.concatenate(per_file)
    mels = []
    with torch.no_grad():
        for s in range(0, len(waves), batch_size):
            x = torch.from_numpy(waves[s : s + batch_size]).to(device)
            mels.append(mel(x).float().cpu())
    return list(torch.cat(mels).split(counts))


def get_model_for_device(model: DeviceModels, device_id: str) -> nn.Module:
    """The member that answers `device_id` (its own fine-tuned model, else the general model)."""
    return model.member(model.member_for(device_id))


def predict(
    file_paths: list[str | os.PathLike],
    device_ids: list[str],
    model_file_path: str | os.PathLike | None = None,
    use_cuda: bool = True,
    batch_size: int = 64,
    windows: str = "first",
) -> tuple[list[Tensor], list[str]]:
    """Logits of each file from the model of its device.

    Args:
        file_paths: audio files.
        device_ids: one per file; ids without their own model use the general model.
        model_file_path: an edgeasc bundle or checkpoint.
        use_cuda: run on the GPU when one is available (fp16), else on the CPU (float32).
        batch_size: files per forward pass (with windows="mean", all windows of each of them).
        windows: "first" or "mean" (see `load_inputs`).

    Returns:
        (per file a float32 CPU tensor (n_classes,), the class name of each logit)
    """
    _check_lengths(file_paths, device_ids)
    device = "cuda" if use_cuda and torch.cuda.is_available() else "cpu"
    model = load_model(model_file_path, device)
    return predict_with(model, file_paths, device_ids, batch_size, windows), list(model.class_order)


def predict_with(model: DeviceModels, file_paths: list[str | os.PathLike], device_ids: list[str],
                 batch_size: int = 64, windows: str = "first") -> list[Tensor]:
    """`predict` with a model already loaded (`load_model`): per file a float32 CPU tensor (n_classes,)."""
    _check_lengths(file_paths, device_ids)
    outputs: list[Tensor] = []
    # files are read in chunks so the log-mel features of a large evaluation set never sit in memory at once
    for s in range(0, len(file_paths), LOAD_CHUNK_FILES):
        paths, ids = file_paths[s : s + LOAD_CHUNK_FILES], device_ids[s : s + LOAD_CHUNK_FILES]
        inputs = load_inputs(paths, ids, model, windows=windows)
        outputs.extend(predict_inputs(model, inputs, ids, batch_size))
    return outputs


@torch.no_grad()
def predict_inputs(model: DeviceModels, inputs: list[Tensor], device_ids: list[str],
                   batch_size: int = 64) -> list[Tensor]:
    """Logits (n_classes,) per input of `load_inputs`, each input's windows averaged, routed by device id.

    `batch_size` files go through the model at a time, each with all its windows.
    """
    _check_lengths(inputs, device_ids)
    outputs: list[Tensor | None] = [None] * len(inputs)
    routes: dict[str, list[int]] = {}
    for i, dev in enumerate(device_ids):
        routes.setdefault(model.member_for(dev), []).append(i)
    for member_name, idx in routes.items():
        member = model.member(member_name)
        log.info("%d file(s) -> %s model", len(idx), member_name)
        for s in range(0, len(idx), batch_size):
            chunk = idx[s : s + batch_size]  # a file's windows stay in one batch
            x = torch.cat([inputs[i] for i in chunk]).to(model.compute_device, model.compute_dtype)
            logits = require_finite_logits(member(x).float().cpu(), f"the {member_name} model")
            if logits.shape[-1] != len(model.class_order):
                raise CheckpointError(f"the {member_name} model gives {logits.shape[-1]} logits, "
                                      f"expected {len(model.class_order)} (one per scene class)")
            for i, part in zip(chunk, logits.split([len(inputs[i]) for i in chunk])):
                outputs[i] = part.mean(dim=0)
    return outputs  # type: ignore[return-value]


def complexity(model_or_path: DeviceModels | str | os.PathLike) -> dict[str, Any]:
    """The complexity.json of a submission, by the DCASE 2025 rule.

    Returns:
        {"per_device": {device: {"MACs": int, "Params": bytes at fp16}} for a, b, c, s1-s10,
         "max_MACs": int, "max_Params": int}
    """
    from edgeasc.complexity import count_dcase

    if isinstance(model_or_path, DeviceModels):
        model = model_or_path
    else:
        model = load_model(model_or_path, "cpu")
    fe = model.frontend_config
    input_size = (1, 1, fe.n_mels, fe.n_frames)
    per_member: dict[str, dict[str, int]] = {}
    per_device: dict[str, dict[str, int]] = {}
    for dev in EVAL_DEVICES:
        name = model.member_for(dev)
        if name not in per_member:
            report = count_dcase(model.member(name), input_size)
            per_member[name] = {"MACs": int(report.macs), "Params": int(report.param_bytes(PARAM_DTYPE_BYTES[WEIGHTS_DTYPE]))}
        per_device[dev] = dict(per_member[name])
    return {
        "per_device": per_device,
        "max_MACs": max(d["MACs"] for d in per_device.values()),
        "max_Params": max(d["Params"] for d in per_device.values()),
    }
