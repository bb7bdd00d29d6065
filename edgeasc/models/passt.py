"""PaSST, the Patchout faSt Spectrogram Transformer (Koutini et al., Interspeech 2022, arXiv:2110.05069).

A ViT/DeiT over 16x16 patches of a 128-bin log-mel spectrogram (stride 10, so patches overlap), with a
class and a distillation token and *separate* frequency and time positional embeddings, so that an input
shorter than the 10 s it was trained on uses a crop of the time embedding. Patchout drops whole rows
(frequency) or columns (time) of the patch grid during training: a regulariser that also shortens the
sequence (Section 2.2 of the paper).

The parameter names and shapes are those of kkoutini/PaSST models/passt.py (also copied into
fschmid56/cpjku_dcase23), so the official AudioSet checkpoints, e.g. `passt-s-f128-p16-s10-ap.476-swa.pt`,
load strictly with `load_passt_checkpoint` (SPEC.md section 4):

    patch_embed.proj          Conv2d(1, E, 16, stride 10)
    cls_token, dist_token     (1, 1, E)
    new_pos_embed             (1, 2, E)           positions of the two tokens
    freq_new_pos_embed        (1, E, F', 1)       F' = 12 for 128 mel bins
    time_new_pos_embed        (1, E, 1, T')       T' = 99 for the 10-s (998-frame) AudioSet input
    blocks.{i}.norm1 / attn.qkv / attn.proj / norm2 / mlp.fc1 / mlp.fc2
    norm, head = (LayerNorm, Linear), head_dist = Linear

As in the official forward, `head` is applied to the mean of the final class and distillation tokens;
`head_dist` is not used in the forward pass. It is kept (frozen) only so that official checkpoints load
strictly, and frozen so that DistributedDataParallel sees no parameter without a gradient.

The model computes its own frontend from waveforms (`input_kind = "waveform"`): PaSST's mel
(fschmid56/cpjku_dcase23 models/mel.py): 32 kHz, pre-emphasis 0.97, centred STFT (n_fft 1024, symmetric
Hann window of 800 samples, hop 320), power spectrum, Kaldi-style mel banks (128 bins), log(x + 1e-5),
then (x + 4.5) / 5. A 1-s clip (32,000 samples, 31,999 after pre-emphasis) gives 100 frames and a 12 x 9
patch grid. In training mode the model also applies PaSST's own augmentation on that spectrogram:
random mel-bank edges, frequency and time masks, Freq-MixStyle and structured patchout. Every random draw
comes from the `generator` passed to `forward` (the global RNG when None), so a seeded training loop
reproduces a run.

Written from the paper and the official code in plain PyTorch (no timm, no torchaudio): attention uses
`F.scaled_dot_product_attention`, the Kaldi mel banks are written out below.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgeasc.data.augment import freq_mixstyle, mask_along
from edgeasc.errors import CheckpointError, ConfigError
from edgeasc.models.lightning import MODEL_KEY_PREFIXES, load_lightning, network_prefixes
from edgeasc.models.registry import check_kwargs, register_model

log = logging.getLogger(__name__)

HEAD_KEYS = ("head.1.weight", "head.1.bias", "head_dist.weight", "head_dist.bias")
"""Classifier weights whose first dimension is the class count (527 for AudioSet checkpoints)."""

_ANCHOR_KEY = "patch_embed.proj.weight"


# --------------------------------------------------------------------------------------------------
# Frontend: PaSST's own log-mel (fschmid56/cpjku_dcase23 models/mel.py, kkoutini/PaSST models/preprocess.py)
# --------------------------------------------------------------------------------------------------
def _kaldi_mel(f_hz: Tensor) -> Tensor:
    return 1127.0 * torch.log(1.0 + f_hz / 700.0)


def kaldi_mel_banks(n_mels: int, n_fft: int, sample_rate_hz: float, f_min_hz: float, f_max_hz: float) -> Tensor:
    """Kaldi-style triangular mel filters: (n_mels, n_fft // 2 + 1), float32.

    Same formula as `torchaudio.compliance.kaldi.get_mel_banks` (without VTLN warping), followed by a zero
    column for the Nyquist bin as PaSST's frontend pads it: mel = 1127 ln(1 + f / 700); n_mels + 2 points
    equally spaced in mel between f_min and f_max; filter m rises from point m to m + 1 and falls to zero at
    m + 2, evaluated in the mel domain at the FFT bin frequencies k * sr / n_fft, k = 0 .. n_fft / 2 - 1.
    """
    if n_mels <= 3 or n_fft % 2:
        raise ValueError(f"need more than 3 mel bins and an even n_fft, got {n_mels} and {n_fft}")
    if not 0.0 <= f_min_hz < f_max_hz <= sample_rate_hz / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= Nyquist, got {f_min_hz} and {f_max_hz}")
    mel_low, mel_high = (1127.0 * math.log(1.0 + f / 700.0) for f in (f_min_hz, f_max_hz))
    delta = (mel_high - mel_low) / (n_mels + 1)
    m = torch.arange(n_mels, dtype=torch.float64).unsqueeze(1)
    left, center, right = mel_low + m * delta, mel_low + (m + 1) * delta, mel_low + (m + 2) * delta
    mel = _kaldi_mel(sample_rate_hz / n_fft * torch.arange(n_fft // 2, dtype=torch.float64)).unsqueeze(0)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return F.pad(banks, (0, 1)).to(torch.float32)


class PasstMel(nn.Module):
    """Waveform (B, samples) -> normalised log-mel (B, 1, n_mels, frames), PaSST's frontend.

    In training mode the mel-bank edges move randomly (f_min up by [0, f_min_aug_hz), f_max by
    +-f_max_aug_hz / 2) and frequency/time masks (width uniform in [0, max), one each, value 0 on the log
    mel) are applied, as in CP-JKU's PaSST training. No parameters and no persistent buffers, so the
    model's state_dict keeps the official key set.
    """

    def __init__(
        self,
        sample_rate_hz: int,
        n_fft: int,
        win_length: int,
        hop_length: int,
        n_mels: int,
        f_min_hz: float,
        f_max_hz: float,
        f_min_aug_hz: int,
        f_max_aug_hz: int,
        freq_mask_bins: int,
        time_mask_frames: int,
    ) -> None:
        super().__init__()
        self.sample_rate_hz, self.n_fft, self.win_length, self.hop_length = sample_rate_hz, n_fft, win_length, hop_length
        self.n_mels, self.f_min_hz, self.f_max_hz = n_mels, f_min_hz, f_max_hz
        self.f_min_aug_hz, self.f_max_aug_hz = f_min_aug_hz, f_max_aug_hz
        self.freq_mask_bins, self.time_mask_frames = freq_mask_bins, time_mask_frames
        self.register_buffer("window", torch.hann_window(win_length, periodic=False), persistent=False)
        self.register_buffer("preemphasis", torch.tensor([[[-0.97, 1.0]]]), persistent=False)
        self.register_buffer(
            "banks", kaldi_mel_banks(n_mels, n_fft, sample_rate_hz, f_min_hz, f_max_hz), persistent=False
        )

    def n_frames(self, n_samples: int) -> int:
        """Frames of a clip: pre-emphasis drops one sample, the centred STFT adds one frame."""
        return 1 + (n_samples - 1) // self.hop_length

    def forward(self, wave: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = F.conv1d(wave.unsqueeze(1), self.preemphasis).squeeze(1)
        spec = torch.stft(x, self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
                          window=self.window, center=True, pad_mode="reflect", normalized=False,
                          onesided=True, return_complex=True)
        power = spec.real.square() + spec.imag.square()  # (B, n_fft / 2 + 1, frames)
        banks = self.banks
        if self.training and (self.f_min_aug_hz > 1 or self.f_max_aug_hz > 1):
            f_min = self.f_min_hz + int(torch.randint(self.f_min_aug_hz, (1,), generator=generator))
            f_max = self.f_max_hz + self.f_max_aug_hz // 2 - int(torch.randint(self.f_max_aug_hz, (1,), generator=generator))
            f_max = min(f_max, self.sample_rate_hz / 2)
            banks = kaldi_mel_banks(self.n_mels, self.n_fft, self.sample_rate_hz, f_min, f_max).to(power.device)
        mel = torch.log(torch.matmul(banks, power) + 1e-5)
        if self.training:
            mel = mask_along(mel, 1, self.freq_mask_bins, 1, generator)
            mel = mask_along(mel, 2, self.time_mask_frames, 1, generator)
        return ((mel + 4.5) / 5.0).unsqueeze(1)


# --------------------------------------------------------------------------------------------------
# Transformer
# --------------------------------------------------------------------------------------------------
class PatchEmbed(nn.Module):
    """Overlapping patches: Conv2d(in, E, patch, stride) -> (B, E, F', T') (not flattened, as PaSST)."""

    def __init__(self, patch_size: int, stride: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (official names `qkv`, `proj`)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(head_dim)) v
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (LayerNorm eps 1e-6, as PaSST)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _grid(size: int, patch: int, stride: int) -> int:
    return (size - patch) // stride + 1


@dataclass(frozen=True)
class PasstSpec:
    """Resolved configuration of a PaSST: everything that rebuilds it (its `create_model` kwargs).

    Attributes:
        n_classes: output logits (527 in the AudioSet checkpoints; 10 for TAU22).
        embed_dim, depth, num_heads, mlp_ratio, qkv_bias, distilled: the ViT/DeiT body.
        patch_size, patch_stride: square patches and their stride (16 and 10 for `passt-s-...-p16-s10`).
        n_mels: mel bins of the frontend (the patch grid's frequency extent).
        input_tdim: frames the time positional embedding covers (998 = 10 s for the official checkpoints;
            100 = one 1-s clip). Shorter inputs use a crop of it: a random one in training, the first
            frames in evaluation.
        s_patchout_f, s_patchout_t: rows / columns of the patch grid dropped per training step.
        sample_rate_hz ... hop_length, f_min_hz, f_max_hz: the frontend (f_max None = Nyquist minus
            f_max_aug_hz / 2, as PaSST).
        f_min_aug_hz, f_max_aug_hz: random mel-bank edge ranges in training (1 = off).
        freq_mask_bins, time_mask_frames: SpecAugment mask widths in training (0 = off).
        mixstyle_p, mixstyle_alpha: Freq-MixStyle on the normalised log mel in training (p 0 = off).
    """

    n_classes: int = 10
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    distilled: bool = True
    patch_size: int = 16
    patch_stride: int = 10
    n_mels: int = 128
    input_tdim: int = 998
    s_patchout_f: int = 0
    s_patchout_t: int = 0
    sample_rate_hz: int = 32_000
    n_fft: int = 1024
    win_length: int = 800
    hop_length: int = 320
    f_min_hz: float = 0.0
    f_max_hz: float | None = None
    f_min_aug_hz: int = 1
    f_max_aug_hz: int = 1000
    freq_mask_bins: int = 48
    time_mask_frames: int = 20
    mixstyle_p: float = 0.4
    mixstyle_alpha: float = 0.4

    def __post_init__(self) -> None:
        for name in ("n_classes", "embed_dim", "depth", "num_heads", "patch_size", "patch_stride", "n_mels",
                     "input_tdim", "sample_rate_hz", "n_fft", "win_length", "hop_length", "f_min_aug_hz",
                     "f_max_aug_hz"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("s_patchout_f", "s_patchout_t", "freq_mask_bins", "time_mask_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.mlp_ratio <= 0 or not 0.0 <= self.mixstyle_p <= 1.0 or self.mixstyle_alpha <= 0:
            raise ValueError("mlp_ratio and mixstyle_alpha must be positive and mixstyle_p in [0, 1]")
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} exceeds n_fft {self.n_fft}")
        f_grid, t_grid = self.grid_size
        if f_grid < 1 or t_grid < 1:
            raise ValueError(f"a {self.n_mels} x {self.input_tdim} input is smaller than one {self.patch_size} patch")
        if self.s_patchout_f >= f_grid:
            raise ValueError(f"s_patchout_f {self.s_patchout_f} would drop all {f_grid} frequency rows")
        if self.s_patchout_t >= t_grid:
            raise ValueError(f"s_patchout_t {self.s_patchout_t} would drop all {t_grid} time columns")
        if self.f_max_hz is not None and not self.f_min_hz < self.f_max_hz <= self.sample_rate_hz / 2:
            raise ValueError(f"f_max_hz {self.f_max_hz} must lie above f_min_hz and at most at Nyquist")

    @property
    def grid_size(self) -> tuple[int, int]:
        """(F', T') of the patch grid of an `n_mels` x `input_tdim` input (12 x 99 for the official model)."""
        return (_grid(self.n_mels, self.patch_size, self.patch_stride),
                _grid(self.input_tdim, self.patch_size, self.patch_stride))

    @property
    def resolved_f_max_hz(self) -> float:
        if self.f_max_hz is not None:
            return float(self.f_max_hz)
        return float(self.sample_rate_hz // 2 - self.f_max_aug_hz // 2)

    def to_kwargs(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class PaSST(nn.Module):
    """PaSST on 1-s waveforms: `forward(wave (B, samples) at 32 kHz) -> logits (B, n_classes)`.

    Attributes:
        input_kind: "waveform": training and evaluation loops pass the cached 32 kHz waveforms, not the
            baseline log-mel; the model computes its own frontend.
        example_input_size: (1, samples) of one 1-s clip, for complexity counters.
    """

    input_kind = "waveform"

    def __init__(self, spec: PasstSpec) -> None:
        super().__init__()
        self.spec = spec
        self.sample_rate_hz = spec.sample_rate_hz
        self.example_input_size = (1, spec.sample_rate_hz)
        e = spec.embed_dim
        f_grid, t_grid = spec.grid_size
        self.num_tokens = 2 if spec.distilled else 1
        self.mel = PasstMel(spec.sample_rate_hz, spec.n_fft, spec.win_length, spec.hop_length, spec.n_mels,
                            spec.f_min_hz, spec.resolved_f_max_hz, spec.f_min_aug_hz, spec.f_max_aug_hz,
                            spec.freq_mask_bins, spec.time_mask_frames)
        self.patch_embed = PatchEmbed(spec.patch_size, spec.patch_stride, 1, e)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, e))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, e)) if spec.distilled else None
        self.new_pos_embed = nn.Parameter(torch.zeros(1, self.num_tokens, e))
        self.freq_new_pos_embed = nn.Parameter(torch.zeros(1, e, f_grid, 1))
        self.time_new_pos_embed = nn.Parameter(torch.zeros(1, e, 1, t_grid))
        self.blocks = nn.Sequential(*[Block(e, spec.num_heads, spec.mlp_ratio, spec.qkv_bias) for _ in range(spec.depth)])
        self.norm = nn.LayerNorm(e, eps=1e-6)
        self.head = nn.Sequential(nn.LayerNorm(e), nn.Linear(e, spec.n_classes))
        self.head_dist = nn.Linear(e, spec.n_classes) if spec.distilled else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PaSST's init: truncated normal (std 0.02) tokens, positions and Linear weights; zero biases."""
        for p in (self.new_pos_embed, self.freq_new_pos_embed, self.time_new_pos_embed, self.cls_token,
                  self.dist_token):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.head_dist is not None:
            self.head_dist.requires_grad_(False)  # unused in forward (see the module docstring)

    def forward_features(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Spectrogram (B, 1, n_mels, frames) -> pooled token features (B, embed_dim)."""
        x = self.patch_embed(x)  # (B, E, F', T')
        b, _, f_grid, t_grid = x.shape
        if f_grid != self.freq_new_pos_embed.shape[2]:
            raise ValueError(f"input gives {f_grid} frequency patches, the model has {self.freq_new_pos_embed.shape[2]} "
                             f"(n_mels {self.spec.n_mels})")
        time_pos = self.time_new_pos_embed
        if t_grid > time_pos.shape[-1]:
            raise ValueError(f"input gives {t_grid} time patches, more than the {time_pos.shape[-1]} the time "
                             f"positional embedding covers (input_tdim {self.spec.input_tdim})")
        if t_grid < time_pos.shape[-1]:
            offset = 0
            if self.training:  # a random crop, as the official training does
                offset = int(torch.randint(time_pos.shape[-1] - t_grid + 1, (1,), generator=generator))
            time_pos = time_pos[..., offset : offset + t_grid]
        x = x + time_pos + self.freq_new_pos_embed

        # structured patchout: drop whole time columns / frequency rows of the grid (training only)
        if self.training and self.spec.s_patchout_t:
            keep = torch.randperm(t_grid, generator=generator)[: t_grid - self.spec.s_patchout_t].sort().values
            x = x[:, :, :, keep.to(x.device)]
        if self.training and self.spec.s_patchout_f:
            keep = torch.randperm(f_grid, generator=generator)[: f_grid - self.spec.s_patchout_f].sort().values
            x = x[:, :, keep.to(x.device), :]
        x = x.flatten(2).transpose(1, 2)  # (B, N, E), frequency-major like the official model

        tokens = [self.cls_token.expand(b, -1, -1) + self.new_pos_embed[:, :1]]
        if self.dist_token is not None:
            tokens.append(self.dist_token.expand(b, -1, -1) + self.new_pos_embed[:, 1:])
        x = self.norm(self.blocks(torch.cat([*tokens, x], dim=1)))
        if self.dist_token is None:
            return x[:, 0]
        return (x[:, 0] + x[:, 1]) / 2

    def forward_spec(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Spectrogram of PaSST's frontend (B, 1, n_mels, frames) -> logits (B, n_classes)."""
        if self.training and self.spec.mixstyle_p > 0:
            x = freq_mixstyle(x, self.spec.mixstyle_p, self.spec.mixstyle_alpha, generator)
        return self.head(self.forward_features(x, generator))

    def forward(self, wave: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """wave: (B, samples) at `sample_rate_hz` -> logits (B, n_classes)."""
        if wave.dim() != 2:
            raise ValueError(
                f"PaSST takes waveforms (B, samples) at {self.sample_rate_hz} Hz (input_kind='waveform'), got a "
                f"tensor of shape {tuple(wave.shape)}; use forward_spec() for a precomputed spectrogram"
            )
        with torch.no_grad():
            x = self.mel(wave, generator)
        return self.forward_spec(x, generator)

    def config_kwargs(self) -> dict[str, Any]:
        """Resolved kwargs that rebuild this model through `create_model`."""
        return self.spec.to_kwargs()


# --------------------------------------------------------------------------------------------------
# Official checkpoints
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PasstLoadReport:
    """What `load_passt_checkpoint` did besides copying weights.

    Attributes:
        prefix: the key prefix stripped (`"model."` for CP-JKU Lightning checkpoints, "" for a raw one).
        head_replaced: the checkpoint's classifier had `source_classes` outputs and was replaced by the
            model's freshly initialised one.
        time_positions: (checkpoint, model) lengths of the time positional embedding; cropped to the
            first positions when the checkpoint's is longer, linearly interpolated when shorter.
        left_out: entries outside the network's prefix (e.g. a Lightning module's other submodules).
    """

    prefix: str
    head_replaced: bool
    source_classes: int
    time_positions: tuple[int, int]
    left_out: tuple[str, ...]


def _network_state(obj: Any, path: Path) -> tuple[dict[str, Tensor], str, tuple[str, ...]]:
    state = obj
    for key in ("state_dict", "model"):  # Lightning / edgeasc, then DeiT-style nesting
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: expected a PaSST state_dict (raw, or under 'state_dict' or 'model')")
    prefixes = network_prefixes(state, _ANCHOR_KEY)
    if not prefixes:
        raise CheckpointError(
            f"{path}: no PaSST weights found (expected a key '{_ANCHOR_KEY}', optionally under one of the "
            f"prefixes {', '.join(MODEL_KEY_PREFIXES)}); is this an official PaSST checkpoint?"
        )
    if len(prefixes) > 1:
        raise CheckpointError(f"{path}: several PaSST networks in one file (prefixes {sorted(prefixes)})")
    prefix = prefixes.pop()
    net: dict[str, Tensor] = {}
    left_out = []
    for key, value in state.items():
        if isinstance(key, str) and key.startswith(prefix):
            if not isinstance(value, Tensor):
                raise CheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
            net[key[len(prefix):]] = value
        else:
            left_out.append(str(key))
    if left_out and not prefix:
        raise CheckpointError(f"{path}: unexpected entries next to the PaSST weights: {sorted(left_out)[:5]}")
    return net, prefix, tuple(sorted(left_out))


def _fit_time_positions(pos: Tensor, length: int) -> Tensor:
    """(1, E, 1, T) -> (1, E, 1, length): the first `length` positions, or linear interpolation if T < length."""
    if pos.shape[-1] >= length:
        return pos[..., :length].clone()
    return F.interpolate(pos.float().squeeze(2), size=length, mode="linear", align_corners=False).unsqueeze(2).to(pos.dtype)


def load_passt_checkpoint(model: PaSST, path: str | os.PathLike) -> PasstLoadReport:
    """Load an official PaSST checkpoint (or a CP-JKU Lightning one, or an edgeasc one) into `model`, strictly.

    Every tensor of the model must be in the file with the same shape, and nothing else may be, except:
    the classifier (`head.1`, `head_dist`) when its class count differs (an AudioSet head of 527 classes is
    replaced by the model's fresh `n_classes` head), and the time positional embedding, cropped to the
    model's length (or interpolated when the file's is shorter). A raw state_dict, `{"state_dict": ...}`
    and `{"model": ...}` are accepted; keys may carry a module prefix (`model.`, `net.`, `module.`).

    Raises:
        CheckpointError: missing, truncated or foreign file; missing, unexpected or mis-shaped weights.
    """
    path = Path(path)
    net, prefix, left_out = _network_state(load_lightning(path), path)
    own = model.state_dict()
    missing = sorted(set(own) - set(net))
    unexpected = sorted(set(net) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {', '.join(unexpected[:3])})")
        raise CheckpointError(
            f"{path}: weights do not match this PaSST ({'; '.join(parts)}); check depth, distilled and the file"
        )

    source_classes = int(net["head.1.weight"].shape[0])
    replace_head = source_classes != model.spec.n_classes
    out: dict[str, Tensor] = {}
    bad = []
    for key, target in own.items():
        value = net[key]
        if replace_head and key in HEAD_KEYS:
            if tuple(value.shape[1:]) != tuple(target.shape[1:]):
                bad.append(f"{key} {tuple(value.shape)} vs {tuple(target.shape)}")
            out[key] = target
            continue
        if key == "time_new_pos_embed" and value.dim() == 4 and value.shape[:3] == target.shape[:3]:
            value = _fit_time_positions(value, target.shape[-1])
        if key == _ANCHOR_KEY and value.dim() == 2 and value.numel() == target.numel():
            value = value.reshape(target.shape)  # pre-conv PaSST checkpoints stored a flattened projection
        if value.shape != target.shape:
            bad.append(f"{key} {tuple(value.shape)} vs {tuple(target.shape)}")
            continue
        out[key] = value.to(target.dtype)
    if bad:
        raise CheckpointError(f"{path}: {len(bad)} weights have other shapes than this PaSST: {'; '.join(bad[:4])}")
    model.load_state_dict(out, strict=True)
    report = PasstLoadReport(prefix, replace_head, source_classes,
                             (int(net["time_new_pos_embed"].shape[-1]), int(own["time_new_pos_embed"].shape[-1])),
                             left_out)
    log.info("loaded PaSST weights from %s%s%s%s", path,
             f" (prefix {prefix!r})" if prefix else "",
             f"; replaced its {source_classes}-class head with a fresh {model.spec.n_classes}-class one" if replace_head else "",
             f"; time positions {report.time_positions[0]} -> {report.time_positions[1]}"
             if report.time_positions[0] != report.time_positions[1] else "")
    if left_out:
        log.info("left out %d entries outside the network prefix %r", len(left_out), prefix)
    return report


# --------------------------------------------------------------------------------------------------
# Registered variants
# --------------------------------------------------------------------------------------------------
_SPEC_KEYS = tuple(f.name for f in dataclasses.fields(PasstSpec))

PASST_CPJKU_DCASE23: dict[str, Any] = {"s_patchout_f": 6, "s_patchout_t": 0, "freq_mask_bins": 48,
                                       "time_mask_frames": 20, "mixstyle_p": 0.4, "mixstyle_alpha": 0.4,
                                       "f_min_aug_hz": 1, "f_max_aug_hz": 1000}
"""CP-JKU's PaSST fine-tuning on TAU22 (fschmid56/cpjku_dcase23 run_passt_training.py): frequency patchout
6, no time patchout, masks 48 bins / 20 frames, Freq-MixStyle p 0.4 alpha 0.4, f_max jitter 1 kHz."""


def _build(variant: dict[str, Any], overrides: dict[str, Any], name: str) -> PaSST:
    check_kwargs(overrides, _SPEC_KEYS + ("checkpoint_path",), f"{name} models")
    overrides = dict(overrides)
    checkpoint_path = overrides.pop("checkpoint_path", None)
    try:
        spec = PasstSpec(**{**variant, **overrides})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: {exc}") from None
    model = PaSST(spec)
    if checkpoint_path:
        load_passt_checkpoint(model, checkpoint_path)
    return model


@register_model
def passt(**kwargs: Any) -> PaSST:
    """PaSST-S as released (embed 768, depth 12, 12 heads, patch 16 stride 10, 128 mels, 10-s positions).

    `checkpoint_path=FILE` starts from an official checkpoint (e.g. passt-s-f128-p16-s10-ap.476-swa.pt);
    the path is not part of `model_config`, so a trained model rebuilds without the file.
    """
    return _build(dict(PASST_CPJKU_DCASE23), kwargs, "passt")


@register_model
def passt_small(**kwargs: Any) -> PaSST:
    """A CPU-trainable PaSST (embed 128, depth 4, 4 heads, 1-s positions) for teachers on synthetic data."""
    variant = {**PASST_CPJKU_DCASE23, "embed_dim": 128, "depth": 4, "num_heads": 4, "input_tdim": 100,
               "s_patchout_f": 4, "s_patchout_t": 2}
    return _build(variant, kwargs, "passt_small")


@register_model
def passt_tiny(**kwargs: Any) -> PaSST:
    """Tiny PaSST (embed 32, depth 2, 2 heads) for fast tests; same names and code paths as `passt`."""
    variant = {**PASST_CPJKU_DCASE23, "embed_dim": 32, "depth": 2, "num_heads": 2, "input_tdim": 100,
               "s_patchout_f": 2, "s_patchout_t": 1}
    return _build(variant, kwargs, "passt_tiny")
