"""TFLite's integer arithmetic, evaluated at generation time: quantised multipliers and shifts, the
saturating rounding doubling high multiply, rounding divide by a power of two, fused activation ranges and
padding. The C kernels compute the same expressions at run time (firmware_stub/src/fw_kernels.c).
"""

from __future__ import annotations

import math

import numpy as np

from edgeasc.errors import FirmwareError

RSHIFT_MAX = 23
"""FW_RSHIFT_MAX of fw_kernels.h: right shifts up to this take the kernels' branch-free requantisation."""
_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}


def _round_half_away(x: float) -> int:
    """std::round / TfLiteRound: ties away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: `real = multiplier * 2^(shift - 31)` with a Q31 `multiplier`.

    Args:
        real_multiplier: a non-negative double (TFLite computes it in double precision).

    Returns:
        (multiplier, shift): the int32 significand and the shift (> 0 left, < 0 right).
    """
    if real_multiplier < 0:
        raise ValueError(f"negative multiplier {real_multiplier}")
    if real_multiplier == 0.0:
        return 0, 0
    q, shift = math.frexp(real_multiplier)
    q_fixed = _round_half_away(q * (1 << 31))  # exact: q * 2^31 is a double with the same significand
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:  # everything would be shifted out: TFLite flushes to zero
        return 0, 0
    return int(q_fixed), int(shift)


def srdhm(a: int, b: int) -> int:
    """SaturatingRoundingDoublingHighMul of two int32 values (gemmlowp)."""
    if a == b == -(1 << 31):
        return (1 << 31) - 1
    ab = a * b
    v = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
    return (abs(v) >> 31) * (1 if v >= 0 else -1)  # C++ division: truncation toward zero


def rounding_divide_by_pot(x: int, exponent: int) -> int:
    """RoundingDivideByPOT: x / 2^exponent, to nearest, ties away from zero."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def multiply_by_quantized_multiplier(x: int, multiplier: int, shift: int) -> int:
    """MultiplyByQuantizedMultiplier(int32 x, multiplier, shift), TFLite's requantisation (double rounding)."""
    left, right = max(shift, 0), max(-shift, 0)
    shifted = ((x << left) + (1 << 31)) % (1 << 32) - (1 << 31)  # int32 wrap, as the C code does
    return rounding_divide_by_pot(srdhm(shifted, multiplier), right)


def activation_range(activation: int, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8 outputs (the bound is computed in float32, as TFLite does)."""
    qmin, qmax = -128, 127

    def q(f: float) -> int:
        return zero_point + _round_half_away(float(np.float32(f) / np.float32(scale)))

    if activation == 0:
        return qmin, qmax
    if activation == 1:
        return max(qmin, q(0.0)), qmax
    if activation == 2:
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    if activation == 3:
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    raise FirmwareError(f"fused activation {activation} is not supported (NONE, RELU, RELU_N1_TO_1, RELU6 are)")


def _padding_before(padding: int, in_size: int, k: int, stride: int, dilation: int, out_size: int) -> int:
    """ComputePaddingWithOffset's leading padding (padding 0 = SAME, 1 = VALID in the TFLite schema)."""
    if padding == 1:
        return 0
    eff = (k - 1) * dilation + 1
    total = max((out_size - 1) * stride + eff - in_size, 0)
    return total // 2
