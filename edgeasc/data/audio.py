"""Reading audio for the models: any wav/flac soundfile reads, returned as mono float32 at the model rate.

Real recordings arrive in every shape: stereo, 24-bit, other sample rates, shorter or longer than the
1-s input. Each case is handled in one documented way, or rejected with a message naming the file:
- channels are averaged to mono;
- the rate is converted by windowed-sinc resampling with the exact ratio, the method and defaults of
  torchaudio's `Resample`, which the official baseline applies to every batch (`resample`);
- a short clip is zero-padded at the end, a long one cropped to its first `clip_samples` samples
  (the DCASE inference API can instead average all 1-s windows: see `split_windows`);
- an empty, unreadable or non-finite file raises `DataError`, and so does a truncated WAV (its data chunk
  declares more bytes than the file holds: libsndfile would silently read the shorter clip, and the
  zero-padding above would hide it; an interrupted copy of a dataset looks exactly like this).
"""

from __future__ import annotations

import functools
import math
import os
import struct
from pathlib import Path

import numpy as np

from edgeasc.errors import DataError


def read_audio(path: str | os.PathLike, sample_rate_hz: int) -> np.ndarray:
    """Read a file as mono float32 in [-1, 1] at `sample_rate_hz` (any length).

    Raises:
        DataError: the file is missing, unreadable, empty, holds non-finite samples or peaks over `MAX_PEAK`.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise DataError(f"audio file not found: {path}")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise DataError(f"cannot read audio {path}: {exc}") from None
    if data.shape[0] == 0:
        raise DataError(f"audio file {path} holds no samples")
    missing = wav_missing_bytes(path)
    if missing:
        raise DataError(f"audio file {path} is truncated: its WAV header declares {missing} more bytes of "
                        "audio than the file holds")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(mono)):
        raise DataError(f"audio file {path} holds NaN or infinite samples")
    peak = float(np.max(np.abs(mono)))
    if peak > MAX_PEAK:
        raise DataError(f"audio file {path} peaks at {peak:.3g}, over {MAX_PEAK:g} times full scale (samples are "
                        "expected in [-1, 1]); its log-mel would overflow")
    return resample(mono, int(rate), sample_rate_hz)


MAX_PEAK = 1e6
"""Largest sample magnitude `read_audio` accepts (120 dB over full scale). Integer files decode to [-1, 1] and
float files are meant to; this still admits float files written at integer scale (32,768) and stops levels
such as 1e30, whose power spectrum overflows float32 to a NaN log-mel."""


def wav_missing_bytes(path: str | os.PathLike) -> int:
    """How many bytes of a RIFF/WAVE file's data chunk are missing from the file (0: complete or not a WAV).

    Walks the chunk headers to the `data` chunk and compares its declared size with the bytes that follow.
    A size of 0 or 0xFFFFFFFF (streamed or RF64 files, whose size lives elsewhere) is not checked.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return 0
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                if chunk_size in (0, 0xFFFFFFFF):
                    return 0
                return max(0, chunk_size - (size - pos - 8))
            pos += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to an even size
    return 0


def resample(x: np.ndarray, rate_in_hz: int, rate_out_hz: int) -> np.ndarray:
    """Resample float signals (..., samples) by the exact ratio rate_out / rate_in (44.1 -> 32 kHz is 320/441).

    torchaudio's `Resample` with its defaults, which the DCASE baseline runs on every batch: for each of the
    `up` output phases a Hann-windowed sinc, 6 zero crossings wide, cut off at 0.99 of the lower Nyquist
    rate, applied as a strided convolution; output length ceil(n * up / down). It agrees with torchaudio 2.9.1
    to float rounding (5e-7 on a full-scale clip; tests/test_audio_dataset.py pins its values). Before it was
    adopted, scipy's polyphase filter rolled off differently near Nyquist: the log-mel of the top 16 of 256
    mel bins differed from the baseline's by 0.27 on average (docs/training.md).
    """
    if rate_in_hz <= 0 or rate_out_hz <= 0:
        raise DataError(f"invalid sample rate {rate_in_hz if rate_in_hz <= 0 else rate_out_hz}")
    if rate_in_hz == rate_out_hz:
        return np.ascontiguousarray(x, dtype=np.float32)
    import torch
    import torch.nn.functional as F

    g = math.gcd(rate_in_hz, rate_out_hz)
    up, down = rate_out_hz // g, rate_in_hz // g
    kernel, half = _sinc_kernel(up, down)
    n = x.shape[-1]
    wave = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(-1, 1, n)
    with torch.no_grad():
        y = F.conv1d(F.pad(wave, (half, half + down)), kernel, stride=down)  # (B, up, frames)
    out = y.transpose(1, 2).reshape(y.shape[0], -1)[:, : math.ceil(n * up / down)]
    return out.reshape(*x.shape[:-1], out.shape[-1]).numpy().copy()


@functools.lru_cache(maxsize=8)
def _sinc_kernel(up: int, down: int, zero_crossings: int = 6, rolloff: float = 0.99):
    """(up, 1, taps) float32 filters of `resample` and the padding `half` (torchaudio's kernel formula)."""
    import torch

    cutoff = min(up, down) * rolloff
    half = math.ceil(zero_crossings * down / cutoff)
    taps = torch.arange(-half, half + down, dtype=torch.float64) / down
    phase = -torch.arange(up, dtype=torch.float64)[:, None] / up
    t = ((phase + taps[None]) * cutoff).clamp(-zero_crossings, zero_crossings)
    window = torch.cos(t * math.pi / zero_crossings / 2) ** 2
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(math.pi * t) / (math.pi * t))
    return (sinc * window * cutoff / down).float()[:, None], half


def fit_length(x: np.ndarray, n_samples: int) -> np.ndarray:
    """Zero-pad at the end or crop to the first `n_samples` samples."""
    if x.shape[-1] >= n_samples:
        return x[..., :n_samples]
    pad = [(0, 0)] * (x.ndim - 1) + [(0, n_samples - x.shape[-1])]
    return np.pad(x, pad)


def split_windows(x: np.ndarray, n_samples: int) -> np.ndarray:
    """Non-overlapping windows of `n_samples` (the last one zero-padded): (n_windows, n_samples)."""
    n = max(1, math.ceil(x.shape[-1] / n_samples))
    return fit_length(x, n * n_samples).reshape(n, n_samples)


def load_clip(path: str | os.PathLike, sample_rate_hz: int, clip_samples: int) -> np.ndarray:
    """`read_audio` followed by `fit_length`: the model's (clip_samples,) float32 input waveform."""
    return fit_length(read_audio(path, sample_rate_hz), clip_samples)
