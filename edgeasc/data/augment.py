"""Training-time augmentation. Every function takes an explicit `torch.Generator`, so a run is
reproducible from its seed and a resumed run draws the same numbers as an uninterrupted one.

- waveform roll (circular shift; CP-JKU students: up to 4,000 samples at 32 kHz);
- SpecAugment frequency and time masks (Park et al. 2019), applied to the power mel as the baseline does;
- Freq-MixStyle (Kim et al. 2022; fschmid56/cpjku_dcase23 helpers/utils.py), SPEC.md section 5;
- device impulse response (DIR) augmentation: convolve device-a clips with a real microphone impulse
  response from the training subset (`edgeasc.data.ir_bank.DIR_AUGMENT_IRS`), keeping the clip length.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def roll_waveform(wave: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Roll each clip of (B, samples) by its own shift, uniform in [-max_shift, max_shift]."""
    if max_shift <= 0:
        return wave
    b, n = wave.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (b,), generator=generator)
    idx = (torch.arange(n).unsqueeze(0) - shifts.unsqueeze(1)) % n
    return torch.gather(wave, 1, idx.to(wave.device))


def mask_along(
    x: torch.Tensor, dim: int, max_width: int, n_masks: int, generator: torch.Generator, value: float = 0.0
) -> torch.Tensor:
    """SpecAugment: per example, `n_masks` bands of width uniform in [0, max_width) set to `value`.

    Args:
        x: (B, n_mels, frames) power mel (or any (B, F, T) tensor).
        dim: 1 for frequency masks, 2 for time masks.
    """
    if max_width <= 0 or n_masks <= 0:
        return x
    b, size = x.shape[0], x.shape[dim]
    pos = torch.arange(size).view(1, -1)
    keep = torch.ones(b, size, dtype=torch.bool)
    for _ in range(n_masks):
        width = torch.randint(0, max_width, (b, 1), generator=generator)
        start = (torch.rand(b, 1, generator=generator) * (size - width).clamp(min=0)).long()
        keep &= ~((pos >= start) & (pos < start + width))
    shape = [b, 1, 1]
    shape[dim] = size
    keep = keep.view(shape).to(x.device)
    return torch.where(keep, x, torch.as_tensor(value, dtype=x.dtype, device=x.device))


def freq_mixstyle(x: torch.Tensor, p: float, alpha: float, generator: torch.Generator) -> torch.Tensor:
    """Freq-MixStyle on log-mel (B, C, F, T): mix per-frequency statistics between examples.

    With probability p per batch: mean and variance over channel and time (dims 1 and 3) per frequency
    bin; normalise; lambda ~ Beta(alpha, alpha) per example and a random batch permutation mix the
    (detached) statistics; de-normalise with the mixed statistics.
    """
    if p <= 0 or torch.rand((), generator=generator).item() >= p:
        return x
    b = x.shape[0]
    mu = x.mean(dim=(1, 3), keepdim=True)
    var = x.var(dim=(1, 3), keepdim=True)
    sig = (var + 1e-6).sqrt()
    mu, sig = mu.detach(), sig.detach()
    x_normed = (x - mu) / sig
    lmda = _beta_sample(alpha, b, generator).view(b, 1, 1, 1).to(x.device, x.dtype)
    perm = torch.randperm(b, generator=generator).to(x.device)
    mu_mix = mu * lmda + mu[perm] * (1 - lmda)
    sig_mix = sig * lmda + sig[perm] * (1 - lmda)
    return x_normed * sig_mix + mu_mix


def _beta_sample(alpha: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """Beta(alpha, alpha) samples drawn with `generator` (torch.distributions takes none)."""
    import numpy as np

    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.beta(alpha, alpha, size=n).astype("float32"))


def dir_augment(
    wave: torch.Tensor,
    apply: torch.Tensor,
    irs: Sequence[torch.Tensor],
    p: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Convolve selected clips with a random device impulse response, keeping length and level.

    Args:
        wave: (B, samples) waveforms.
        apply: (B,) bool, which clips may be augmented (device a in CP-JKU's recipe).
        irs: impulse responses at the waveform's sample rate, each (n_taps,).
        p: probability per eligible clip.
    """
    if p <= 0 or not irs:
        return wave
    b, n = wave.shape
    draw = torch.rand(b, generator=generator) < p
    choice = torch.randint(0, len(irs), (b,), generator=generator)
    chosen = (draw & apply.cpu()).nonzero().flatten().tolist()
    if not chosen:
        return wave
    out = wave.clone()
    for i in chosen:
        ir = irs[int(choice[i])].to(wave.device, wave.dtype)
        size = n + ir.shape[0] - 1
        nfft = 1 << (size - 1).bit_length()
        y = torch.fft.irfft(torch.fft.rfft(wave[i], nfft) * torch.fft.rfft(ir, nfft), nfft)[:n]
        # keep the clip's level: a microphone changes colour, the scene keeps its loudness
        scale = wave[i].square().mean().sqrt() / y.square().mean().sqrt().clamp(min=1e-8)
        out[i] = y * scale
    return out
