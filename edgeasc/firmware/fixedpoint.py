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


# -- gemmlowp's fixed-point transcendentals (fixedpoint/fixedpoint.h), on int32 raw values --------------
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def _wrap32(x: int) -> int:
    return ((x + (1 << 31)) % (1 << 32)) - (1 << 31)


def saturating_rounding_mul_by_pot(x: int, exponent: int) -> int:
    """SaturatingRoundingMultiplyByPOT<exponent>: a saturating left shift, or RoundingDivideByPOT."""
    if exponent >= 0:
        threshold = (1 << (31 - exponent)) - 1
        if x > threshold:
            return INT32_MAX
        if x < -threshold:
            return INT32_MIN
        return _wrap32(x << exponent)
    return rounding_divide_by_pot(x, -exponent)


def rounding_half_sum(a: int, b: int) -> int:
    """RoundingHalfSum: (a + b + sign) / 2 in int64, truncated toward zero."""
    s = a + b
    s += 1 if s >= 0 else -1
    return int(s / 2)  # exact: |s| < 2^33


def exp_on_interval_between_negative_one_quarter_and_0_excl(a: int) -> int:
    """exp(a) for Q0.31 `a` in [-1/4, 0), a Taylor expansion around -1/8."""
    constant_term, one_third = 1895147668, 715827883
    x = _wrap32(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(_wrap32(srdhm(_wrap32(x4_over_4 + x3), one_third) + x2), 1)
    return _wrap32(constant_term + srdhm(constant_term, _wrap32(x + poly)))


def exp_on_negative_values(a: int, integer_bits: int) -> int:
    """gemmlowp exp_on_negative_values: exp of a non-positive FixedPoint<int32, integer_bits>, as Q0.31."""
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    mask = one_quarter - 1
    a_mod_quarter_minus_one_quarter = _wrap32((a & mask) - one_quarter)
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        saturating_rounding_mul_by_pot(a_mod_quarter_minus_one_quarter, integer_bits))
    remainder = _wrap32(a_mod_quarter_minus_one_quarter - a)
    for exponent, multiplier in ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
                                 (2, 39332535), (3, 720401), (4, 242)):
        if integer_bits > exponent and remainder & (1 << (fractional_bits + exponent)):
            result = srdhm(result, multiplier)
    if integer_bits > 5 and a < -(1 << (36 - integer_bits)):
        result = 0
    return INT32_MAX if a == 0 else result


def _newton_reciprocal_f2(half_denominator: int) -> int:
    """The Newton-Raphson iteration of one_over_one_plus_x_for_x_in_0_1: 1 / half_denominator as Q2.29."""
    x = _wrap32(1515870810 + srdhm(half_denominator, -1010580540))
    for _ in range(3):
        one_minus = _wrap32((1 << 29) - srdhm(half_denominator, x))
        x = _wrap32(x + saturating_rounding_mul_by_pot(srdhm(x, one_minus), 2))
    return x


def one_over_one_plus_x_for_x_in_0_1(a: int) -> int:
    """1 / (1 + a) for Q0.31 `a` in [0, 1), as Q0.31."""
    return saturating_rounding_mul_by_pot(_newton_reciprocal_f2(rounding_half_sum(a, INT32_MAX)), 1)


def one_minus_x_over_one_plus_x_for_x_in_0_1(a: int) -> int:
    """(1 - a) / (1 + a) for Q0.31 `a` in [0, 1), as Q0.31."""
    x = _newton_reciprocal_f2(rounding_half_sum(a, INT32_MAX))
    return saturating_rounding_mul_by_pot(_wrap32(x - (1 << 29)), 2)


def fixed_logistic(a: int, integer_bits: int) -> int:
    """gemmlowp logistic of a FixedPoint<int32, integer_bits>, as Q0.31."""
    if a == 0:
        return 1 << 30
    positive = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(_wrap32(-abs(a)), integer_bits))
    return positive if a > 0 else _wrap32(INT32_MAX - positive)


def fixed_tanh(a: int, integer_bits: int) -> int:
    """gemmlowp tanh of a FixedPoint<int32, integer_bits>, as Q0.31 (exp runs with one more integer bit)."""
    if a == 0:
        return 0
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(_wrap32(-abs(a)), integer_bits + 1))
    return -t if a < 0 else t


def frexp_multiplier(real: float) -> tuple[int, int]:
    """`std::frexp` then `TfLiteRound(q * 2^31)` (the LOGISTIC and TANH prepare): (multiplier, left shift),
    without QuantizeMultiplier's 2^31 carry."""
    q, shift = math.frexp(real)
    return _round_half_away(q * (1 << 31)), shift


def input_radius(integer_bits: int, left_shift: int, total_signed_bits: int = 31) -> int:
    """CalculateInputRadius: the largest |input| whose rescaled value stays below the fixed-point range."""
    return math.floor(((1 << integer_bits) - 1) * (1 << (total_signed_bits - integer_bits)) / (1 << left_shift))


def srdhm16(a: int, b: int) -> int:
    """SaturatingRoundingDoublingHighMul of two int16 values."""
    if a == b == -(1 << 15):
        return (1 << 15) - 1
    ab = a * b
    v = ab + ((1 << 14) if ab >= 0 else 1 - (1 << 14))
    return int(v / (1 << 15))

