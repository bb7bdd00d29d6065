"""Log-mel frontend of the DCASE 2024/2025 Task 1 baseline, in plain PyTorch.

Numerically the baseline's torchaudio `MelSpectrogram(sample_rate=32000, n_fft=4096, win_length=3072,
hop_length=500, n_mels=256)` followed by `log(x + 1e-5)` (CPJKU/dcase2024_task1_baseline run_training.py):
periodic Hann window, centred STFT with reflect padding, power spectrogram, HTK mel scale, triangular
filters without area normalisation. torchaudio is not a dependency (it does not install beside the pinned
torch), so the filterbank formula is written out here and pinned by a golden test.

The frontend is not part of the exported network: exported models take the (1, 1, n_mels, frames) log-mel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeasc.config import FrontendConfig
from edgeasc.errors import ModelFileError


def hz_to_mel_htk(f: float) -> float:
    """HTK mel of `f` Hz, in Python floats as torchaudio's `_hz_to_mel` computes it."""
    return 2595.0 * math.log10(1.0 + f / 700.0)


def mel_to_hz_htk(m: torch.Tensor) -> torch.Tensor:
    """Inverse of `hz_to_mel_htk`, elementwise in the tensor's dtype (float32, as torchaudio)."""
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(
    n_freqs: int, f_min_hz: float, f_max_hz: float, n_mels: int, sample_rate_hz: int
) -> torch.Tensor:
    """Triangular HTK mel filters, unnormalised: (n_freqs, n_mels), float32.

    torchaudio.functional.melscale_fbanks(norm=None, mel_scale="htk"), operation for operation and in
    float32 as it computes them, so that a filterbank stored in a torchaudio checkpoint
    (`mel.1.mel_scale.fb`) is reproduced bit for bit (tests/test_features.py pins torchaudio's bytes): n_mels + 2
    points equally spaced in mel between f_min and f_max; filter m rises linearly from point m to m + 1
    and falls to zero at m + 2, evaluated at the STFT bin centre frequencies linspace(0, sr // 2, n_freqs).
    """
    all_freqs = torch.linspace(0, sample_rate_hz // 2, n_freqs, dtype=torch.float32)
    m_pts = torch.linspace(hz_to_mel_htk(f_min_hz), hz_to_mel_htk(f_max_hz), n_mels + 2, dtype=torch.float32)
    f_pts = mel_to_hz_htk(m_pts)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)  # (n_freqs, n_mels + 2)
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.max(torch.zeros(1), torch.min(down, up))


class LogMel(nn.Module):
    """Waveform (B, samples) at `cfg.sample_rate_hz` -> log-mel (B, 1, n_mels, frames).

    `mask_fn`, when given, is applied to the power mel before the log (the baseline masks there, so a
    masked bin becomes log(1e-5)).
    """

    def __init__(self, cfg: FrontendConfig) -> None:
        super().__init__()
        self.cfg = cfg
        f_max = cfg.f_max_hz if cfg.f_max_hz is not None else cfg.sample_rate_hz / 2
        self.register_buffer("window", torch.hann_window(cfg.win_length, periodic=True), persistent=False)
        self.register_buffer(
            "fb",
            mel_filterbank(cfg.n_fft // 2 + 1, cfg.f_min_hz, f_max, cfg.n_mels, cfg.sample_rate_hz),
            persistent=False,
        )

    def power_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> power mel (B, n_mels, frames)."""
        spec = torch.stft(
            wave,
            n_fft=self.cfg.n_fft,
            hop_length=self.cfg.hop_length,
            win_length=self.cfg.win_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # (B, n_freqs, frames)
        return torch.matmul(power.transpose(1, 2), self.fb).transpose(1, 2)

    def forward(self, wave: torch.Tensor, mask_fn=None) -> torch.Tensor:
        mel = self.power_mel(wave)
        if mask_fn is not None:
            mel = mask_fn(mel)
        return torch.log(mel + self.cfg.log_offset).unsqueeze(1)


def expected_frames(cfg: FrontendConfig) -> int:
    """Frames of a centred STFT of one clip: 1 + floor(samples / hop) (65 for the baseline)."""
    return 1 + math.floor(cfg.clip_samples / cfg.hop_length)


@dataclass(frozen=True)
class InputNormalization:
    """The affine map the exported graph's input has been through: `u = (x - mean) / std` of the log-mel x.

    A log-mel `log(mel + 1e-5)` sits far from zero (real TAU22 recordings: mean about -6). An int8 first
    convolution multiplies that offset by its rounded weights: each output channel gets a constant error of
    `mean * sum(rounding errors)`, which a 61k-parameter model trained on real data turns into 24% flipped
    clips (docs/export.md, "Int8 on a real trained model"). Normalised, the offset lives in the first
    layer's int32 bias, exactly. Stored, as float32 values, in every artifact's metadata; `edgeasc.deploy.runtime`,
    `edgeasc bench` and the firmware's C frontend apply it before quantising (`TFLiteModel.prepare`).

    Attributes:
        mean: the calibration features' mean (float32 value).
        std: their standard deviation (float32 value).
    """

    mean: float
    std: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.mean) and np.isfinite(self.std) and self.std > 0):
            raise ValueError(f"input normalisation needs a finite mean and a positive std, got {self.mean}, {self.std}")

    @classmethod
    def of(cls, features: np.ndarray) -> InputNormalization:
        """Mean and standard deviation of `features` (accumulated in float64, stored as float32 values)."""
        x = np.asarray(features, dtype=np.float64)
        return cls(float(np.float32(x.mean())), float(np.float32(max(x.std(), 1e-6))))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """`(x - mean) / std` in float32, as the C frontend computes it."""
        return ((np.asarray(x, dtype=np.float32) - np.float32(self.mean)) / np.float32(self.std)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "formula": "u = (x - mean) / std in float32, then quantise"}

    @classmethod
    def from_metadata(cls, meta: dict[str, Any] | None) -> InputNormalization | None:
        """The normalisation an edgeasc metadata dict states (None: the model takes the raw log-mel).

        Raises:
            ModelFileError: the entry is malformed.
        """
        entry = (meta or {}).get("input_normalization")
        if entry is None:
            return None
        try:
            return cls(float(entry["mean"]), float(entry["std"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"malformed input_normalization in the model's metadata: {exc}") from None
