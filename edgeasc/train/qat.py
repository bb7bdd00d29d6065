"""The torch side of the int8 edge path: weights trained on TFLite's grid, and the input normalisation.

**Input normalisation** (`InputNormalization`, `fold_input_normalization`): the exported graph takes
`u = (x - mean) / std` of the log-mel x, with the inverse folded exactly into the first convolutions, so the
int8 first layer does not multiply the log-mel's large offset by its rounded weights (docs/export.md).

**Quantisation-aware fine-tuning** (weights trained on the grid TFLite will use):

TFLite's full-integer conversion quantises every conv/dense weight per output channel, symmetrically, to
[-127, 127] with scale `max|w_c| / 127` (TFLite int8 quantisation spec; onnx2tf/TFLiteConverter
`quant_type="per-channel"`). A float weight off that grid moves by up to half a step, and on a small,
low-margin classifier those moves flip near-tied clips (docs/export.md). Fine-tuning with the weights
fake-quantised to that grid (straight-through estimator, Jacob et al. 2018, "Quantization and Training of
Neural Networks for Efficient Integer-Arithmetic-Only Inference") ends on weights that the converter
represents exactly.

The grid survives BatchNorm folding: folding multiplies output channel c by one factor g_c, which scales
that channel's grid and its max together, so `round(w_c * g_c / (max|w_c * g_c| / 127))` returns the same
integers. Depthwise convs are quantised per channel too, which is their output channel here.

During training the weights are `torch.nn.utils.parametrize` parametrisations; `snapped_copy` returns a
plain model whose weights are the snapped values, which is what `edgeasc train` saves as `model.pt`.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor, fx, nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from edgeasc.errors import ExportError
from edgeasc.features import InputNormalization

INT8_MAX = 127


# --------------------------------------------------------------------------------------------------
# Input normalisation
# --------------------------------------------------------------------------------------------------
class NormalizedInputConv(nn.Module):
    """A convolution on the raw log-mel x rewritten to take `u = (x - mean) / std` and give the same output.

    `conv(x) = (std * W) (*) u + (b + mean * sum(W))` away from the borders. At the borders `conv` pads x
    with zeros, which is `-mean / std` in u: this module pads u with exactly that constant (ONNX Pad, TFLite
    PADV2) and convolves unpadded, so the two agree everywhere (tests/test_export.py pins it).
    """

    def __init__(self, conv: nn.Conv2d, norm: InputNormalization) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ExportError(f"input normalisation folds zero-padded convolutions only, not {conv}")
        ph, pw = conv.padding
        self.pad = (pw, pw, ph, ph)  # F.pad order: last dimension first
        self.pad_value = -norm.mean / norm.std
        folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, padding=0,
                           dilation=conv.dilation, groups=conv.groups, bias=True)
        with torch.no_grad():
            w = conv.weight.detach().double()
            bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros(conv.out_channels,
                                                                                          dtype=torch.float64)
            folded.weight.copy_((w * norm.std).float())
            folded.bias.copy_((bias + norm.mean * w.sum(dim=(1, 2, 3))).float())
        self.conv = folded

    def forward(self, u: Tensor) -> Tensor:
        if any(self.pad):
            u = F.pad(u, self.pad, mode="constant", value=self.pad_value)
        return self.conv(u)


def input_convolutions(model: nn.Module) -> list[str]:
    """Module paths of the convolutions that read the network's input directly.

    Raises:
        ExportError: the input also feeds something else (the normalisation could not be folded exactly).
    """
    gm = fx.symbolic_trace(model)
    modules = dict(gm.named_modules())
    (placeholder,) = [n for n in gm.graph.nodes if n.op == "placeholder"]
    convs, queue = [], list(placeholder.users)
    while queue:
        node = queue.pop(0)
        mod = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(mod, nn.Identity):
            queue += list(node.users)
        elif isinstance(mod, nn.Conv2d):
            convs.append(node.target)
        else:
            raise ExportError(f"the network's input feeds {node.format_node()}, not only convolutions; "
                              "export it with --no-input-norm")
    return convs


def fold_input_normalization(model: nn.Module, norm: InputNormalization) -> nn.Module:
    """A copy of `model` that takes `norm.apply(x)` instead of x and computes the same function (float).

    Every convolution that reads the input becomes a `NormalizedInputConv`; fold BatchNorm first
    (`fold_batchnorm`), since the folded convolution no longer sits next to its BatchNorm.
    """
    work = copy.deepcopy(model).eval()
    for path in input_convolutions(work):
        parent_path, _, leaf = path.rpartition(".")
        parent = work.get_submodule(parent_path) if parent_path else work
        setattr(parent, leaf, NormalizedInputConv(getattr(parent, leaf), norm))
    return work


# --------------------------------------------------------------------------------------------------
# Weights on the int8 grid
# --------------------------------------------------------------------------------------------------
def per_channel_scale(w: Tensor) -> Tensor:
    """TFLite's symmetric per-output-channel weight scale `max|w_c| / 127`, shaped to broadcast over `w`."""
    dims = tuple(range(1, w.dim()))
    return w.abs().amax(dim=dims, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny) / INT8_MAX


def quantize_per_channel(w: Tensor) -> Tensor:
    """`w` rounded to the symmetric per-output-channel int8 grid (axis 0), as TFLite quantises weights."""
    scale = per_channel_scale(w)
    return torch.clamp(torch.round(w / scale), -INT8_MAX, INT8_MAX) * scale


def quantize_per_tensor(t: Tensor, lo: float, hi: float, bits: int = 8) -> Tensor:
    """`t` rounded as TFLite quantises an activation with range [lo, hi]: asymmetric int8 over the range widened
    to include 0, scale `(hi - lo) / 255`, integer zero point; with `bits=16`, TFLite's int16 activations
    (symmetric, zero point 0, scale `max(|lo|, |hi|) / 32767`). Used by `edgeasc.deploy.sensitivity`."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if bits == 16:
        scale16 = max(abs(lo), abs(hi), 1e-12) / 32767
        return torch.clamp(torch.round(t / scale16), -32767, 32767) * scale16
    if bits != 8:
        raise ValueError(f"activations are 8 or 16 bits, got {bits}")
    scale = max(hi - lo, 1e-8) / 255
    zero_point = round(-128 - lo / scale)
    return (torch.clamp(torch.round(t / scale) + zero_point, -128, 127) - zero_point) * scale


class PerChannelInt8(nn.Module):
    """Parametrisation: forward uses the int8-grid weight, backward passes the gradient straight through."""

    def forward(self, w: Tensor) -> Tensor:
        return w + (quantize_per_channel(w.detach()) - w).detach()


def _quantisable(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv1d, nn.Linear))]


def attach_weight_fake_quant(model: nn.Module) -> int:
    """Fake-quantise every conv and linear weight of `model` in place; returns how many were wrapped."""
    layers = _quantisable(model)
    for m in layers:
        if not parametrize.is_parametrized(m, "weight"):
            parametrize.register_parametrization(m, "weight", PerChannelInt8())
    return len(layers)


def snapped_copy(model: nn.Module) -> nn.Module:
    """A plain copy of `model` (no parametrisations, on the CPU) whose weights lie on the int8 grid.

    Rebuilt from `model.model_config` rather than deep-copied: a parametrised module's class is created at
    run time and shared by copies, so removing the parametrisation from a copy would break the original.
    """
    from edgeasc.models import model_from_config

    suffix = ".parametrizations.weight.original"
    state = {}
    for key, value in model.state_dict().items():
        state[key[: -len(suffix)] + ".weight" if key.endswith(suffix) else key] = value.detach().cpu()
    plain = model_from_config(model.model_config)
    plain.load_state_dict(state)
    with torch.no_grad():
        for m in _quantisable(plain):
            m.weight.copy_(quantize_per_channel(m.weight))
    return plain.train(model.training)


def grid_error(model: nn.Module) -> float:
    """Largest distance of any conv/linear weight from its int8 grid, in grid steps (0 for a snapped model)."""
    worst = 0.0
    with torch.no_grad():
        for m in _quantisable(model):
            w = m.weight
            worst = max(worst, float(((w - quantize_per_channel(w)) / per_channel_scale(w)).abs().max()))
    return worst


# --------------------------------------------------------------------------------------------------
# Data-aware rounding of the int8 weights
# --------------------------------------------------------------------------------------------------
def round_to_minimise_error(v: np.ndarray, cov: np.ndarray, limit: int = INT8_MAX, max_passes: int = 64) -> np.ndarray:
    """Integers q (each the floor or ceil of `v`) minimising `(q - v)^T cov (q - v)`.

    Nearest rounding minimises each weight's own error; a convolution's output error is the error vector
    times its input, so what counts is `E[(dW . x)^2] = dW^T E[x x^T] dW` (the objective of AdaRound, Nagel
    et al. 2020, without its relaxation). On a log-mel first layer the input's local offset makes the
    per-weight errors add up (docs/export.md); choosing floor or ceil per weight to cancel them, by
    coordinate descent from nearest rounding, removes most of that error.

    Args:
        v: one output channel's weights in grid steps (`w / scale`), shape `(n,)`.
        cov: `E[x x^T]` of the matching input patches, `(n, n)`.
        limit: the grid's bound (int8: 127).

    Returns:
        int64 `(n,)` in [-limit, limit]; equal to nearest rounding where that is already best.
    """
    v = np.asarray(v, dtype=np.float64)
    c = np.asarray(cov, dtype=np.float64)
    q = np.clip(np.round(v), -limit, limit)
    lo, hi = np.clip(np.floor(v), -limit, limit), np.clip(np.ceil(v), -limit, limit)
    diag = np.diag(c)
    for _ in range(max_passes):
        e = q - v
        g = c @ e
        # moving q_i to its other candidate changes q_i by d (+1 or -1, 0 where floor == ceil)
        d = np.where(q == lo, hi - lo, lo - hi)
        gain = 2 * d * g + d * d * diag  # change of the objective
        i = int(np.argmin(gain))
        if gain[i] >= -1e-12 * max(1.0, float(e @ g)) or d[i] == 0:
            break
        q[i] += d[i]
    return q.astype(np.int64)


def round_weights(weight: Tensor, cov: np.ndarray, groups: int = 1,
                  scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A convolution's per-channel int8 weights (TFLite's scale `max|w_c| / 127`), rounded by
    `round_to_minimise_error` against the input covariance of each channel's group.

    Args:
        weight: `(O, I / groups, kh, kw)`.
        cov: `(groups, n, n)` with `n = I / groups * kh * kw` (patch order as `torch.nn.functional.unfold`).
        scale: the per-channel scales to round on (default TFLite's rule; pass a converted file's own).

    Returns:
        (int weights `(O, I / groups, kh, kw)`, scales `(O,)`).
    """
    w = weight.detach().double().cpu().numpy()
    out = w.shape[0]
    if scale is None:
        scale = np.maximum(np.abs(w).reshape(out, -1).max(axis=1), np.finfo(np.float32).tiny) / INT8_MAX
    scale = np.asarray(scale, dtype=np.float64)
    per_group = out // groups
    q = np.empty(w.shape, dtype=np.int64)
    for o in range(out):
        q[o] = round_to_minimise_error(w[o].reshape(-1) / scale[o], cov[o // per_group]).reshape(w.shape[1:])
    return q, scale
