"""The DCASE 2025 Task 1 baseline's way of training, re-implemented plainly as the reference of the
training-throughput benchmark (not part of the library).

What the baseline does (CPJKU/dcase2025_task1_baseline: train_base.py and dataset/dcase25.py), and what this
file does the same way:

- a map-style dataset that opens and decodes each clip's 44.1 kHz audio file on *every* access (torchaudio
  there, soundfile here): no waveform cache, no precomputed features;
- a random roll of each waveform in the dataset (TimeShiftDataset, uniform in +-roll samples);
- a `DataLoader` (shuffle, batch size, workers) that collates the waveforms;
- per batch, on the fly: resampling 44.1 -> 32 kHz with a windowed-sinc kernel (torchaudio's `Resample`
  defaults: 6 zero crossings, roll-off 0.99, Hann window), the mel spectrogram (n_fft 4096, window 3072,
  hop 500, 256 HTK mel bands, power 2), frequency masking (48 bins) on the power mel, `log(x + 1e-5)`,
  Freq-MixStyle (p 0.4, alpha 0.3), the model, cross-entropy, backward, AdamW, a cosine schedule with warm-up
  stepped every batch.

Not reproduced: Lightning's and Weights & Biases' per-step logging (leaving them out favours the baseline).
The network is whatever `model` is passed in, so a comparison with `edgeasc train` on the same model measures
the data path and loop, not the architecture.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from edgeasc.data.audio import resample

ORIG_SAMPLE_RATE_HZ = 44_100
SAMPLE_RATE_HZ = 32_000


class WaveDataset(Dataset):
    """(waveform at 44.1 kHz, label) read from disk at every access, rolled by up to +-`roll` samples."""

    def __init__(self, files: Sequence[Path], labels: Sequence[int], roll: int, seed: int) -> None:
        self.files, self.labels, self.roll = list(files), list(labels), roll
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        audio, rate = sf.read(self.files[i], dtype="float32", always_2d=True)
        if rate != ORIG_SAMPLE_RATE_HZ:
            raise ValueError(f"{self.files[i]}: {rate} Hz, the baseline reads {ORIG_SAMPLE_RATE_HZ} Hz audio")
        wave = torch.from_numpy(audio.mean(axis=1))
        if self.roll:
            wave = wave.roll(int(self.rng.integers(-self.roll, self.roll + 1)))
        return wave, self.labels[i]


class BaselineFrontend(nn.Module):
    """Resample + power mel spectrogram, as the baseline's `self.mel` (log and masking come after)."""

    def __init__(self, n_fft: int = 4096, win_length: int = 3072, hop_length: int = 500, n_mels: int = 256) -> None:
        super().__init__()
        from edgeasc.features import mel_filterbank  # the torchaudio formula; torchaudio itself is not installed

        self.n_fft, self.win_length, self.hop_length = n_fft, win_length, hop_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        self.register_buffer("fb", mel_filterbank(n_fft // 2 + 1, 0.0, SAMPLE_RATE_HZ / 2, n_mels, SAMPLE_RATE_HZ),
                             persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        # torchaudio's Resample, as edgeasc.data.audio.resample computes it, on the whole batch
        x = torch.from_numpy(resample(wave.numpy(), ORIG_SAMPLE_RATE_HZ, SAMPLE_RATE_HZ))
        spec = torch.stft(x, self.n_fft, self.hop_length, self.win_length, self.window, center=True,
                          pad_mode="reflect", return_complex=True)
        power = spec.abs() ** 2
        return torch.matmul(power.transpose(1, 2), self.fb).transpose(1, 2)  # (B, n_mels, frames)


def freq_mask(mel: torch.Tensor, max_bins: int) -> torch.Tensor:
    """One frequency mask per example of up to `max_bins` bins (torchaudio FrequencyMasking, iid_masks)."""
    b, n_mels, _ = mel.shape
    width = torch.rand(b, 1) * max_bins
    start = torch.rand(b, 1) * (n_mels - width)
    bins = torch.arange(n_mels)[None]
    masked = (bins >= start.floor()) & (bins < (start + width).floor())
    return mel.masked_fill(masked[:, :, None], 0.0)


def mixstyle(x: torch.Tensor, p: float, alpha: float, eps: float = 1e-6) -> torch.Tensor:
    """Freq-MixStyle (Kim et al. 2022), as the baseline's helpers.utils.mixstyle: x (B, 1, F, T)."""
    if torch.rand(()) > p:
        return x
    b = x.size(0)
    mu = x.mean(dim=[1, 3], keepdim=True)
    sig = (x.var(dim=[1, 3], keepdim=True) + eps).sqrt()
    mu, sig = mu.detach(), sig.detach()
    x_normed = (x - mu) / sig
    lam = torch.distributions.Beta(alpha, alpha).sample((b, 1, 1, 1))
    perm = torch.randperm(b)
    mu_mix = mu * lam + mu[perm] * (1 - lam)
    sig_mix = sig * lam + sig[perm] * (1 - lam)
    return x_normed * sig_mix + mu_mix


def cosine_with_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
                       ) -> torch.optim.lr_scheduler.LambdaLR:
    """transformers.get_cosine_schedule_with_warmup: linear warm-up, then half a cosine to zero."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_epochs(
    model: nn.Module,
    files: Sequence[Path],
    labels: Sequence[int],
    epochs: int,
    batch_size: int,
    *,
    lr: float = 0.005,
    weight_decay: float = 1e-4,
    warmup_steps: int = 100,
    roll: int = 4410,
    freq_mask_bins: int = 48,
    mixstyle_p: float = 0.4,
    mixstyle_alpha: float = 0.3,
    num_workers: int = 0,
    seed: int = 0,
) -> list[float]:
    """Train `model` the baseline's way for `epochs` epochs; returns each epoch's clips per second (loading,
    frontend, forward, backward and optimiser step included)."""
    torch.manual_seed(seed)
    ds = WaveDataset(files, labels, roll, seed)
    dl = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                    generator=torch.Generator().manual_seed(seed))
    frontend = BaselineFrontend()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = cosine_with_warmup(optimizer, warmup_steps, epochs * len(dl))
    rates = []
    for _ in range(epochs):
        model.train()
        seen, t0 = 0, time.perf_counter()
        for wave, y in dl:
            with torch.no_grad():
                x = frontend(wave)
                x = freq_mask(x, freq_mask_bins)
                x = (x + 1e-5).log().unsqueeze(1)
                x = mixstyle(x, mixstyle_p, mixstyle_alpha)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            seen += len(y)
        rates.append(seen / (time.perf_counter() - t0))
    return rates
