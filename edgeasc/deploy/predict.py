"""Scene predictions for audio files: what `edgeasc predict` prints, for checkpoints, bundles and .tflite files.

Checkpoints and device bundles go through the DCASE inference API (`edgeasc.devices.dcase`: the same audio reading,
1-s windows, fp16 weights and device routing as a submission). A .tflite runs on LiteRT's reference kernels
through `edgeasc.deploy.runtime.TFLiteModel` (its metadata's frontend and input normalisation), on the same log-mel
input (`edgeasc.devices.dcase.log_mel_inputs`). Probabilities are the softmax of the logits.

This module is not part of `edgeasc.devices.dcase` on purpose: `edgeasc submission` copies `edgeasc.devices.dcase` and every
edgeasc module it imports into the package, and the TFLite runtime has no place in a DCASE submission.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edgeasc.errors import ConfigError, DataError
from edgeasc.labels import EVAL_DEVICES, device_key

log = logging.getLogger(__name__)

AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".flac")
"""What a folder argument expands to (sorted, not recursive)."""
UNKNOWN_DEVICE = "unknown"
"""The device id of files whose device is not known: no bundle has a model for it, so the general one answers."""
TFLITE_MEMBER = "tflite"
"""`FilePrediction.model` of a .tflite (one model for every device id)."""


@dataclass(frozen=True)
class FilePrediction:
    """The prediction for one file.

    Attributes:
        file: the path as given (or as found in a given folder).
        device_id: the device id the file was routed by.
        model: the member that answered ("general" or a device id of a bundle; "tflite" for a .tflite).
        probabilities: scene -> softmax probability, in the model's class order.
    """

    file: str
    device_id: str
    model: str
    probabilities: dict[str, float]

    @property
    def scene(self) -> str:
        return max(self.probabilities, key=self.probabilities.__getitem__)

    def top(self, k: int) -> list[tuple[str, float]]:
        """The `k` most probable (scene, probability) pairs, most probable first."""
        return sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:k]

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "device_id": self.device_id, "model": self.model, "scene": self.scene,
                "probabilities": dict(self.probabilities)}


def audio_paths(paths: list[str | os.PathLike]) -> list[Path]:
    """Files as given, each folder replaced by its .wav/.flac files (sorted by name).

    Raises:
        DataError: a path does not exist, or a folder holds no .wav/.flac file.
        ConfigError: `paths` is a single str or path instead of a list.
    """
    from edgeasc.devices.dcase import require_list

    require_list("paths", paths)
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise DataError(f"folder {p} holds no {' or '.join(AUDIO_SUFFIXES)} files")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"audio file not found: {p}")
    return out


def predict_files(
    paths: list[str | os.PathLike],
    model_path: str | os.PathLike,
    device_id: str = UNKNOWN_DEVICE,
    windows: str = "first",
    batch_size: int = 64,
    use_cuda: bool = True,
) -> list[FilePrediction]:
    """Predict the scene of audio files (any length; folders expand to their .wav/.flac files).

    Args:
        paths: audio files or folders.
        model_path: an edgeasc checkpoint, a device bundle (`edgeasc finetune`) or a .tflite.
        device_id: the recording device of every file; ids without their own model use the general model.
        windows: "first" (first second) or "mean" (mean logits of every 1-s window); see `edgeasc.devices.dcase`.
        batch_size: files per forward pass.
        use_cuda: checkpoints and bundles run on the GPU when one is available (fp16), as `dcase.predict`.

    Raises:
        DataError: a missing, unreadable or empty audio file. CheckpointError, ModelFileError: a model file
        that is missing or not an edgeasc model. ConfigError: an unknown `windows`, an .onnx model.
    """
    from edgeasc.devices import dcase

    files = audio_paths(paths)
    model_path = Path(model_path)
    dev = device_key(device_id)
    if dev != UNKNOWN_DEVICE and dev not in EVAL_DEVICES:
        log.warning("device id %r is not a DCASE 2025 device (%s); the general model answers it",
                    device_id, ", ".join(EVAL_DEVICES))
    suffix = model_path.suffix.lower()
    if suffix == ".onnx":
        raise ConfigError(f"{model_path}: predict runs edgeasc checkpoints, bundles and .tflite files, not ONNX; "
                          "give the .pt it was exported from, or its .tflite")
    if suffix == ".tflite":
        logits, classes = _tflite_logits(files, model_path, windows, batch_size)
        members = [TFLITE_MEMBER] * len(files)
    else:
        device = "cuda" if use_cuda and torch.cuda.is_available() else "cpu"
        model = dcase.load_model(model_path, device)
        logits = dcase.predict_with(model, files, [dev] * len(files), batch_size, windows)
        classes, members = list(model.class_order), [model.member_for(dev)] * len(files)
    out = []
    for path, member, z in zip(files, members, logits):
        p = torch.softmax(z.double(), dim=-1).tolist()
        out.append(FilePrediction(str(path), dev, member, dict(zip(classes, p))))
    return out


def _tflite_logits(files: list[Path], model_path: Path, windows: str,
                   batch_size: int) -> tuple[list[torch.Tensor], list[str]]:
    """Per file the logits (n_classes,) of a .tflite (its windows averaged), and the class order."""
    from edgeasc.deploy.runtime import TFLiteModel
    from edgeasc.devices.dcase import LOAD_CHUNK_FILES, log_mel_inputs

    model = TFLiteModel(model_path)
    frontend, labels, _ = model.frontend()
    workers = max(1, min(4, os.cpu_count() or 1))
    logits: list[torch.Tensor] = []
    for s in range(0, len(files), LOAD_CHUNK_FILES):
        for x in log_mel_inputs(files[s : s + LOAD_CHUNK_FILES], frontend, windows, batch_size=256):
            logits.append(torch.from_numpy(model.predict(x.numpy(), workers)).mean(dim=0))
    return logits, labels


def format_predictions(predictions: list[FilePrediction], top: int = 1) -> str:
    """One aligned line per file: file, the `top` best scenes with their probability, the member used.

    Raises:
        ConfigError: `top` is not between 1 and the number of classes.
    """
    n_classes = len(predictions[0].probabilities) if predictions else 1
    if not 1 <= top <= n_classes:
        raise ConfigError(f"--top must be between 1 and {n_classes} (the number of scenes), got {top}")
    ranked = [p.top(top) for p in predictions]
    file_w = max((len(p.file) for p in predictions), default=0)
    scene_w = [max(len(r[k][0]) for r in ranked) for k in range(top)] if ranked else []
    lines = []
    for p, r in zip(predictions, ranked):
        cells = [p.file.ljust(file_w)] + [f"{s.ljust(w)}  {q:.2f}" for (s, q), w in zip(r, scene_w)]
        lines.append("  ".join(cells) + f"  ({p.model} model)")
    return "\n".join(lines)
