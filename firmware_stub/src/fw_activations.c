/* Activations, SOFTMAX, MAX_POOL_2D, MAXIMUM/MINIMUM and the float boundaries (QUANTIZE from float32,
 * DEQUANTIZE to float32), bit-exact with TFLite Micro's reference kernels.
 *
 * Elementwise int8 operators (LOGISTIC, TANH, HARD_SWISH, RELU, RELU6, int8 QUANTIZE, DEQUANTIZE) are one
 * table load per element: the generator evaluates TFLite Micro's integer arithmetic for all 256 input values
 * (edgeasc/firmware/tables.py). SOFTMAX takes its exp() values from a generated table too (they depend on the
 * difference to the row maximum alone) and computes the sum's reciprocal at run time as gemmlowp does. */
#include <math.h>

#include "fw_kernels.h"

void fw_table_s8(int32_t n, const int8_t *table, const int8_t *in, int8_t *out) {
    const int8_t *t = table + 128; /* indexed by the signed input value */
    for (int32_t i = 0; i < n; ++i) out[i] = t[in[i]];
}

void fw_table_f32(int32_t n, const float *table, const int8_t *in, float *out) {
    const float *t = table + 128;
    for (int32_t i = 0; i < n; ++i) out[i] = t[in[i]];
}

void fw_quantize_f32_s8(int32_t n, float scale, int32_t zero_point, const float *in, int8_t *out) {
    /* reference_ops::AffineQuantize: TfLiteRound(value / scale) + zero point, clamped; values whose rounded
     * quotient leaves [-256, 256] clamp the same way without the float -> int conversion overflowing */
    for (int32_t i = 0; i < n; ++i) {
        const float q = roundf(in[i] / scale);
        int32_t v;
        if (q >= 256.0f) v = 127;
        else if (q <= -256.0f) v = -128;
        else if (q != q) v = zero_point; /* NaN */
        else v = (int32_t)q + zero_point;
        out[i] = fw_clamp8(v, -128, 127);
    }
}

/* ---- SOFTMAX (reference_ops::Softmax for int8 -> int8, gemmlowp fixed point) ---- */
static int32_t sat_shl(int32_t x, int32_t e) { /* SaturatingRoundingMultiplyByPOT<e>, e > 0 */
    const int32_t threshold = (int32_t)((1u << (31 - e)) - 1u);
    if (x > threshold) return INT32_MAX;
    if (x < -threshold) return INT32_MIN;
    return (int32_t)((uint32_t)x << e);
}

static int32_t one_over_one_plus_x(int32_t a) { /* gemmlowp one_over_one_plus_x_for_x_in_0_1, Q0.31 */
    const int64_t s = (int64_t)a + INT32_MAX;
    const int32_t half = (int32_t)((s + (s >= 0 ? 1 : -1)) / 2); /* RoundingHalfSum */
    int32_t x = (int32_t)(1515870810u + (uint32_t)fw_srdhm(half, -1010580540)); /* 48/17 - 32/17 d, Q2.29 */
    for (int k = 0; k < 3; ++k) {
        const int32_t one_minus = (int32_t)((1u << 29) - (uint32_t)fw_srdhm(half, x));
        x = (int32_t)((uint32_t)x + (uint32_t)sat_shl(fw_srdhm(x, one_minus), 2));
    }
    return sat_shl(x, 1);
}

void fw_softmax_s8(const fw_softmax_params *p, const int8_t *in, int8_t *out) {
    const int32_t depth = p->depth, d_max = p->d_max;
    const int32_t *exp_table = p->exp;
    for (int32_t r = 0; r < p->rows; ++r) {
        const int8_t *x = in + r * depth;
        int8_t *y = out + r * depth;
        int32_t max = -128;
        for (int32_t c = 0; c < depth; ++c) max = x[c] > max ? x[c] : max;
        int32_t sum = 0; /* Q12.19 */
        for (int32_t c = 0; c < depth; ++c) {
            const int32_t d = max - x[c];
            if (d <= d_max) sum += fw_rdbpot(exp_table[d], 12);
        }
        /* GetReciprocal(sum, 12): sum >= exp(0) rescaled > 0, so the leading-zero count is below 32 */
        const int32_t headroom = __builtin_clz((uint32_t)sum);
        const int32_t exponent = 12 - headroom + 31 - 8;
        const int32_t scale = one_over_one_plus_x((int32_t)(((uint32_t)sum << headroom) - (1u << 31)));
        for (int32_t c = 0; c < depth; ++c) {
            const int32_t d = max - x[c];
            y[c] = d <= d_max ? fw_clamp8(fw_rdbpot(fw_srdhm(scale, exp_table[d]), exponent) - 128, -128, 127)
                              : -128;
        }
    }
}

/* ---- MAX_POOL_2D (reference_integer_ops::MaxPool) ---- */
void fw_maxpool_s8(const fw_pool_params *p, const int8_t *in, int8_t *out) {
    const int32_t c_n = p->c;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_h;
        const int32_t fy0 = iy0 < 0 ? -iy0 : 0;
        const int32_t fy1 = p->f_h < p->in_h - iy0 ? p->f_h : p->in_h - iy0;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_w;
            const int32_t fx0 = ix0 < 0 ? -ix0 : 0;
            const int32_t fx1 = p->f_w < p->in_w - ix0 ? p->f_w : p->in_w - ix0;
            int8_t *y = out + (oy * p->out_w + ox) * c_n;
            for (int32_t c = 0; c < c_n; ++c) y[c] = -128;
            for (int32_t fy = fy0; fy < fy1; ++fy)
                for (int32_t fx = fx0; fx < fx1; ++fx) {
                    const int8_t *x = in + ((iy0 + fy) * p->in_w + ix0 + fx) * c_n;
                    for (int32_t c = 0; c < c_n; ++c) y[c] = x[c] > y[c] ? x[c] : y[c];
                }
            for (int32_t c = 0; c < c_n; ++c) y[c] = fw_clamp8(y[c], p->act_min, p->act_max);
        }
    }
}

/* ---- MAXIMUM / MINIMUM (raw int8 comparison, as TFLite Micro does, with broadcasting) ---- */
#define FW_MAX_ONE(p, a, b) ((a) > (b) ? (a) : (b))
#define FW_MIN_ONE(p, a, b) ((a) < (b) ? (a) : (b))

void fw_maximum_s8(const fw_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
    FW_BINARY_LOOP(FW_MAX_ONE)
}

void fw_minimum_s8(const fw_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
    FW_BINARY_LOOP(FW_MIN_ONE)
}
