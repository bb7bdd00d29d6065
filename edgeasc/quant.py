"""Quantisation-aware fine-tuning for the int8 edge path: weights trained on the grid TFLite will use.

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

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

INT8_MAX = 127


def per_channel_scale(w: Tensor) -> Tensor:
    """TFLite's symmetric per-output-channel weight scale `max|w_c| / 127`, shaped to broadcast over `w`."""
    dims = tuple(range(1, w.dim()))
    return w.abs().amax(dim=dims, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny) / INT8_MAX


def quantize_per_channel(w: Tensor) -> Tensor:
    """`w` rounded to the symmetric per-output-channel int8 grid (axis 0), as TFLite quantises weights."""
    scale = per_channel_scale(w)
    return torch.clamp(torch.round(w / scale), -INT8_MAX, INT8_MAX) * scale


def quantize_per_tensor(t: Tensor, lo: float, hi: float) -> Tensor:
    """`t` rounded as TFLite quantises an activation with range [lo, hi]: asymmetric int8 over the range widened
    to include 0, scale `(hi - lo) / 255`, integer zero point (used by the int8 error-budget tools)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
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
