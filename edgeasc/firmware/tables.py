"""Elementwise int8 operators as 256-entry tables, and SOFTMAX's exp table, computed at generation time with
TFLite Micro's own integer arithmetic.

An int8 operator whose every output element depends on one input element (LOGISTIC, TANH, HARD_SWISH,
unfused RELU / RELU6, an int8 -> int8 QUANTIZE, DEQUANTIZE to float) has at most 256
distinct results. `unary_table` evaluates TFLite Micro's kernel arithmetic (its Prepare's multipliers and
the reference kernel's fixed-point steps, edgeasc.firmware.fixedpoint) once per input value, so that the
firmware does one table load per element and is bit-exact by construction: the tests compare every table
entry with TFLite Micro itself.

Sources (TFLite Micro at 2026-08, gemmlowp fixedpoint.h): micro/kernels/logistic_common.cc and
reference/integer_ops/logistic.h; micro/kernels/tanh.cc and reference/integer_ops/tanh.h;
micro/kernels/hard_swish_common.cc and reference/hard_swish.h; micro/kernels/activations_common.cc and
activations.h; micro/kernels/quantize_common.cc and reference/requantize.h; reference/dequantize.h;
micro/kernels/softmax_common.cc and reference/softmax.h.
"""

from __future__ import annotations

import numpy as np

from edgeasc.deploy.tflite_graph import Op, Tensor
from edgeasc.errors import FirmwareError
from edgeasc.firmware.fixedpoint import (
    _round_half_away,
    exp_on_negative_values,
    fixed_logistic,
    fixed_tanh,
    frexp_multiplier,
    input_radius,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    rounding_divide_by_pot,
    srdhm,
    srdhm16,
)

TABLE_OPS = ("LOGISTIC", "TANH", "HARD_SWISH", "RELU", "RELU6", "QUANTIZE", "DEQUANTIZE")
"""Operators the firmware runs as one table lookup per element (DEQUANTIZE: a float table)."""

INT8_VALUES = np.arange(-128, 128)
"""The table index order: entry i holds the result for input value i - 128."""


def _clamp8(v: int, lo: int = -128, hi: int = 127) -> int:
    return min(max(v, lo), hi)


def _f32(x: float) -> np.float32:
    return np.float32(x)


def _logistic(inp: Tensor, out: Tensor) -> list[int]:
    if out.zero_point != -128:  # logistic_common.cc: TF_LITE_ENSURE_EQ(output zero_point, INT8_MIN)
        raise FirmwareError(f"LOGISTIC: output zero point {out.zero_point}; TFLite Micro requires -128")
    mult, shift = frexp_multiplier(float(inp.scale) * float(1 << 27))  # kInputIntegerBits = 4
    if mult >= 1 << 31:
        raise FirmwareError("LOGISTIC: the input multiplier rounds to 2^31, which TFLite Micro cannot represent")
    radius = input_radius(4, shift)
    res = []
    for x in INT8_VALUES:
        v = int(x) - inp.zero_point
        if v <= -radius:
            res.append(-128)
        elif v >= radius:
            res.append(127)
        else:
            q0 = fixed_logistic(multiply_by_quantized_multiplier(v, mult, shift), 4)
            res.append(_clamp8(rounding_divide_by_pot(q0, 31 - 8) - 128))
    return res


def _tanh(inp: Tensor, out: Tensor) -> list[int]:
    mult, shift = frexp_multiplier(float(inp.scale) * float(1 << 27))
    if mult >= 1 << 31:
        raise FirmwareError("TANH: the input multiplier rounds to 2^31, which TFLite Micro cannot represent")
    radius = input_radius(4, shift)
    res = []
    for x in INT8_VALUES:
        v = int(x) - inp.zero_point
        if v <= -radius:
            res.append(-128)
        elif v >= radius:
            res.append(127)
        else:
            q0 = fixed_tanh(multiply_by_quantized_multiplier(v, mult, shift), 4)
            res.append(_clamp8(rounding_divide_by_pot(q0, 31 - 7)))
    return res


def _int16_multiplier(real: float) -> tuple[int, int]:
    """QuantizeMultiplier then DownScaleInt32ToInt16Multiplier: (Q15 multiplier, exponent)."""
    m32, exponent = quantize_multiplier(real)
    if m32 >= (1 << 31) - 1 - (1 << 15):
        return (1 << 15) - 1, exponent
    return (m32 + (1 << 15)) >> 16, exponent


def _sat16(v: int) -> int:
    return min(max(v, -(1 << 15)), (1 << 15) - 1)


def _wrap16(v: int) -> int:
    return ((v + (1 << 15)) % (1 << 16)) - (1 << 15)


def _hard_swish(inp: Tensor, out: Tensor) -> list[int]:
    hires_input_scale = _f32(1.0 / 128.0) * _f32(inp.scale)
    reluish_scale = _f32(3.0) / _f32(32768.0)
    out_mult, out_exp = _int16_multiplier(float(hires_input_scale / _f32(out.scale)))
    relu_mult, relu_exp = _int16_multiplier(float(hires_input_scale / reluish_scale))
    if out_exp > 0:
        raise FirmwareError("HARD_SWISH: the output multiplier exceeds one, which TFLite Micro rejects")
    res = []
    for x in INT8_VALUES:
        v = int(x) - inp.zero_point
        hires = v * 128  # fits int16: |v| <= 255
        preshift = srdhm16(hires, out_mult)
        reluish = hires
        if relu_exp > 0:
            reluish = _sat16(reluish * (1 << (relu_exp - 1)))
        reluish = srdhm16(reluish, relu_mult)
        if relu_exp > 0:
            reluish = _sat16(reluish * 2)
        if relu_exp < 0:
            reluish = rounding_divide_by_pot(reluish, -relu_exp)
        reluish = (reluish + (1 << 15)) >> 1
        # SaturatingDoublingHighMul: truncating, not rounding
        prod = reluish * preshift
        high = (1 << 15) - 1 if reluish == preshift == -(1 << 15) else _sat16(int(prod / (1 << 15)))
        value = _wrap16(rounding_divide_by_pot(high, -out_exp) + out.zero_point)  # int16_t += zero point
        res.append(_clamp8(value))
    return res


def _relu(inp: Tensor, out: Tensor) -> list[int]:
    # CalculateReluOpData: the multiplier of float32(in_scale / out_scale); the lower bound is the output zero
    # point (roundf(0 / scale) = 0), the upper one the int8 maximum
    mult, shift = quantize_multiplier(float(_f32(inp.scale) / _f32(out.scale)))
    act_min, act_max = max(-128, out.zero_point), 127
    return [_clamp8(out.zero_point + multiply_by_quantized_multiplier(int(x) - inp.zero_point, mult, shift),
                    act_min, act_max) for x in INT8_VALUES]


def _relu6(inp: Tensor, out: Tensor) -> list[int]:
    # Relu6Quantized clamps the raw input to [zero point, quantised 6] on the input's scale
    six = _clamp8(_round_half_away(float(_f32(6.0) / _f32(inp.scale))) + inp.zero_point)
    return [min(max(int(x), inp.zero_point), six) for x in INT8_VALUES]


def _requantize(inp: Tensor, out: Tensor) -> list[int]:
    mult, shift = quantize_multiplier(float(inp.scale) / float(out.scale))
    return [_clamp8(multiply_by_quantized_multiplier(int(x) - inp.zero_point, mult, shift) + out.zero_point)
            for x in INT8_VALUES]


def unary_table(op: Op, inp: Tensor, out: Tensor) -> np.ndarray:
    """The 256 results of an elementwise operator, indexed by input value + 128: int8, or float32 for a
    DEQUANTIZE.

    Raises:
        FirmwareError: a type or quantisation TFLite Micro's kernel does not take.
    """
    name = op.name
    if inp.dtype != "INT8":
        raise FirmwareError(f"op {op.index} ({name}): {inp.dtype} input; the table kernels take int8")
    if name == "DEQUANTIZE":
        if out.dtype != "FLOAT32":
            raise FirmwareError(f"op {op.index} (DEQUANTIZE): {out.dtype} output; float32 expected")
        # reference_ops::Dequantize: static_cast<float>(double(scale) * (value - zero point))
        return np.array([np.float32(float(inp.scale) * (int(x) - inp.zero_point)) for x in INT8_VALUES],
                        dtype=np.float32)
    if out.dtype != "INT8":
        raise FirmwareError(f"op {op.index} ({name}): {out.dtype} output; the firmware's activations are int8")
    if not len(inp.scales) or not len(out.scales):
        raise FirmwareError(f"op {op.index} ({name}): the input and output must be quantised")
    if name == "LOGISTIC":
        values = _logistic(inp, out)
    elif name == "TANH":
        values = _tanh(inp, out)
    elif name == "HARD_SWISH":
        values = _hard_swish(inp, out)
    elif name == "RELU":
        values = _relu(inp, out)
    elif name == "RELU6":
        values = _relu6(inp, out)
    elif name == "QUANTIZE":
        values = _requantize(inp, out)
    else:
        raise FirmwareError(f"op {op.index} ({name}) has no table kernel")
    return np.array(values, dtype=np.int8)


SOFTMAX_INTEGER_BITS = 5
"""kScaledDiffIntegerBits of TFLite's int8 softmax: the exp() input is Q5.26."""


def softmax_exp_table(op: Op, inp: Tensor, out: Tensor) -> np.ndarray:
    """exp() of every possible int8 input difference to its row's maximum, as the Q0.31 values TFLite's int8
    SOFTMAX computes: entry d is for a difference of -d, for d up to the last difference not below
    `diff_min` (smaller differences contribute nothing and give the output minimum).

    Raises:
        FirmwareError: the output quantisation is not the (1/256, -128) TFLite Micro requires.
    """
    if inp.dtype != "INT8" or out.dtype != "INT8":
        raise FirmwareError(f"op {op.index} (SOFTMAX): {inp.dtype} -> {out.dtype}; int8 -> int8 is supported")
    if out.zero_point != -128 or _f32(out.scale) != _f32(1.0 / 256):
        raise FirmwareError(f"op {op.index} (SOFTMAX): output quantisation ({out.scale}, {out.zero_point}); "
                            "TFLite Micro requires (1/256, -128)")
    beta = float(op.options.beta) if op.options is not None else 1.0
    # PreprocessSoftmaxScaling: min(beta * scale * 2^(31 - 5), 2^31 - 1), then QuantizeMultiplierGreaterThanOne
    real = min(beta * float(inp.scale) * float(1 << (31 - SOFTMAX_INTEGER_BITS)), float((1 << 31) - 1))
    mult, left_shift = quantize_multiplier(real)
    if left_shift < 0:
        raise FirmwareError(f"op {op.index} (SOFTMAX): input scale {inp.scale} x beta {beta} is below what "
                            "TFLite's int8 softmax takes")
    diff_min = -input_radius(SOFTMAX_INTEGER_BITS, left_shift)
    d_max = min(255, -diff_min)
    return np.array([exp_on_negative_values(srdhm(-d * (1 << left_shift), mult), SOFTMAX_INTEGER_BITS)
                     for d in range(d_max + 1)], dtype=np.int64)
