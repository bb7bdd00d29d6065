/* int8 kernels with TFLite's reference integer arithmetic (TFLite Micro reference kernels).
 *
 * Every kernel computes exactly what tensorflow/lite/kernels/internal/reference/integer_ops/ does:
 * int32 accumulation of (input + input_offset) * weight, the int32 bias, then the requantisation
 * MultiplyByQuantizedMultiplier (SaturatingRoundingDoublingHighMul followed by RoundingDivideByPOT,
 * gemmlowp's rounding, not TFLITE_SINGLE_ROUNDING), the output zero point and the activation clamp.
 * Layouts are NHWC with batch 1; weights are OHWI (conv), 1HWO (depthwise), OI (fully connected).
 * Faster paths (1x1 convolution, DSP/SIMD on Cortex-M) only reorder integer sums, which is exact.
 */
#ifndef FW_KERNELS_H
#define FW_KERNELS_H

#include <stdint.h>

#if defined(__GNUC__)
#define FW_INLINE static inline __attribute__((always_inline))
#else
#define FW_INLINE static inline
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- fixed-point helpers (gemmlowp / TFLite common.h) ---- */
FW_INLINE int32_t fw_srdhm(int32_t a, int32_t b) {
    /* SaturatingRoundingDoublingHighMul: round(a * b / 2^31), ties away from zero, saturating. */
    if (a == b && a == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1LL << 30) : (1LL - (1LL << 30));
    return (int32_t)((ab + nudge) / (1LL << 31)); /* C division truncates toward zero, as C++ does */
}

FW_INLINE int32_t fw_rdbpot(int32_t x, int32_t exponent) {
    /* RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away from zero. */
    const int32_t mask = (int32_t)((1LL << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

FW_INLINE int32_t fw_mbqm(int32_t x, int32_t multiplier, int32_t shift) {
    /* MultiplyByQuantizedMultiplier(int32 x, multiplier, shift): x * multiplier * 2^(shift - 31). */
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return fw_rdbpot(fw_srdhm((int32_t)((uint32_t)x << left), multiplier), right);
}

FW_INLINE int8_t fw_clamp8(int32_t v, int32_t lo, int32_t hi) {
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    return (int8_t)v;
}

/* The same requantisation followed by + zero point and the int8 clamp, in fewer instructions; exact for
 * multipliers in [0, 2^31) (all TFLite multipliers):
 * - SaturatingRoundingDoublingHighMul = floor((a * b + 2^30) / 2^31): TFLite's sign-dependent nudge with
 *   truncation gives the same integer for either sign, and a == b == INT32_MIN cannot occur for b >= 0.
 * - RoundingDivideByPOT(x, e) for e >= 1 = floor((x + 2^(e-1) - [x < 0]) / 2^e). The sum saturates (QADD)
 *   only for x within 2^(e-1) of INT32_MAX; there the exact quotient is >= 2^(31-e) and the saturated one
 *   2^(31-e) - 1, both >= 255 for e <= FW_RSHIFT_MAX = 23, so after + zero point (>= -128) the clamp gives
 *   127 either way. Larger e (never seen in practice) take the reference formula. src/selftest.c checks it. */
#define FW_RSHIFT_MAX 23
FW_INLINE int32_t fw_high_mul(int32_t a, int32_t b) {
    return (int32_t)(((int64_t)a * (int64_t)b + (1LL << 30)) >> 31);
}

FW_INLINE int32_t fw_qadd(int32_t a, int32_t b) {
#if defined(__ARM_FEATURE_DSP)
    return __builtin_arm_qadd(a, b);
#else
    int64_t s = (int64_t)a + b;
    return s > INT32_MAX ? INT32_MAX : (s < INT32_MIN ? INT32_MIN : (int32_t)s);
#endif
}

FW_INLINE int32_t fw_rescale(int32_t acc, int32_t multiplier, int32_t e, int32_t h) {
    if (e > 0 && e <= FW_RSHIFT_MAX) {
        const int32_t v = fw_high_mul(acc, multiplier);
        return fw_qadd(v, h + (v >> 31)) >> e;
    }
    return fw_mbqm(acc, multiplier, e > 0 ? -e : h);
}

/* mode (a constant at each call, so every loop is specialised): FW_FULL when lo == -128 and hi == 127 (one
 * SSAT clamps), FW_RSHIFT when every channel of the layer has 1 <= e <= FW_RSHIFT_MAX (no branch). */
#define FW_FULL 1
#define FW_RSHIFT 2
/* FW_SMALL: |acc| < 2^30 (the generator bounds it per layer), so SMMULR(2 acc, m) = floor((acc m + 2^30) / 2^31) */
#define FW_SMALL 4

FW_INLINE int32_t fw_rescale_rshift(int32_t acc, int32_t multiplier, int32_t e, int32_t h, const int small) {
#if defined(__ARM_FEATURE_DSP)
    int32_t v;
    if (small) { /* (2 acc * m + 2^31) >> 32 with one SMMULR */
        __asm__("smmulr %0, %1, %2" : "=r"(v) : "r"(acc << 1), "r"(multiplier));
    } else { /* (acc * m + 2^30) >> 31 with one SMLAL */
        int32_t lo = 1 << 30, hi = 0;
        __asm__("smlal %0, %1, %2, %3" : "+r"(lo), "+r"(hi) : "r"(acc), "r"(multiplier));
        v = (int32_t)(((uint32_t)hi << 1) | ((uint32_t)lo >> 31));
    }
#else
    (void)small;
    const int32_t v = fw_high_mul(acc, multiplier);
#endif
    return fw_qadd(v, h + (v >> 31)) >> e;
}

FW_INLINE int8_t fw_requant_full(int32_t acc, int32_t multiplier, int32_t e, int32_t h, int32_t zp, int32_t lo,
                                 int32_t hi, const int mode) {
    const int32_t v = ((mode & FW_RSHIFT) ? fw_rescale_rshift(acc, multiplier, e, h, mode & FW_SMALL)
                                          : fw_rescale(acc, multiplier, e, h)) + zp;
#if defined(__ARM_FEATURE_SAT)
    if (mode & FW_FULL) return (int8_t)__builtin_arm_ssat(v, 8);
#endif
    return fw_clamp8(v, (mode & FW_FULL) ? -128 : lo, (mode & FW_FULL) ? 127 : hi);
}

static inline int8_t fw_requant(int32_t acc, int32_t multiplier, int32_t e, int32_t h, int32_t zp, int32_t lo,
                                int32_t hi) {
    return fw_requant_full(acc, multiplier, e, h, zp, lo, hi, 0);
}

/* TFLite (multiplier, shift) -> the (e, h) pair fw_requant takes */
static inline int8_t fw_requant_shift(int32_t acc, int32_t multiplier, int32_t shift, int32_t zp, int32_t lo,
                                      int32_t hi) {
    return shift <= -1 ? fw_requant(acc, multiplier, -shift, 1 << (-shift - 1), zp, lo, hi)
                       : fw_requant(acc, multiplier, 0, shift, zp, lo, hi);
}

/* ---- convolution family ---- */
typedef struct {
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t k_h, k_w;
    int32_t stride_h, stride_w;
    int32_t dil_h, dil_w;
    int32_t pad_h, pad_w;     /* padding before (top, left), TFLite ComputePaddingHeightWidth */
    int32_t groups;           /* conv: in_c / filter input depth; depthwise: unused */
    int32_t depth_multiplier; /* depthwise only */
    int32_t in_offset;        /* -input zero point */
    int32_t out_offset;       /* output zero point */
    int32_t act_min, act_max;
    int32_t pad_value;        /* what taps outside the input read in a one-group convolution: the input zero
                                 point, or the constant of a PADV2 folded into it (edgeasc.firmware.fuse_pads) */
    int32_t k_pad;            /* groups == 1: k_h * k_w * in_c rounded up to a multiple of 4 */
    const int8_t *weights;    /* grouped: OHWI; depthwise: 1HWO; one group: NULL, or with --weights int8
                                 (FW_WEIGHTS_INT8) the int8 matrix (edgeasc.firmware.pack_conv_weights_int8) */
    const int16_t *weights16; /* one group, int16 weights (the default): (out_c, k_pad) int16, each group of
                                 four as (w0, w2, w1, w3) and output-channel pairs interleaved
                                 (edgeasc.firmware.pack_conv_weights); NULL with --weights int8 */
    const int32_t *bias;      /* may be NULL */
    /* per output channel {bias + in_offset * sum(weights), multiplier, e, h} (FW_RQ_STRIDE words):
     * e > 0: right shift e with h = 2^(e-1); e == 0: TFLite shift h >= 0 (a left shift) */
    const int32_t *rq;
    /* depthwise with 3 taps: per channel {folded bias, multiplier, (w0, w1) as an int16 pair, w2, e, h}
     * (FW_DW3_STRIDE words), else NULL */
    const int32_t *dw3;
    int32_t rshift;           /* 1 when every channel's record has 1 <= e <= FW_RSHIFT_MAX */
    int32_t small;            /* 1 when |accumulator| < 2^30 for every input (bound by the generator) */
} fw_conv_params;

#define FW_RQ_STRIDE 4
#define FW_DW3_STRIDE 6

void fw_conv_s8(const fw_conv_params *p, const int8_t *in, int8_t *out);
void fw_conv_1x1_s8(const fw_conv_params *p, const int8_t *in, int8_t *out);
void fw_dwconv_s8(const fw_conv_params *p, const int8_t *in, int8_t *out);

typedef struct {
    int32_t rows, in_depth, out_depth;
    int32_t in_offset, weight_offset, out_offset;
    int32_t act_min, act_max;
    int32_t per_channel; /* mult/shift arrays have out_depth entries (else 1) */
    const int8_t *weights;
    const int32_t *bias;
    const int32_t *mult;
    const int32_t *shift;
    const int32_t *folded; /* weight_offset == 0: per output bias + in_offset * sum(weights), else NULL */
} fw_fc_params;

void fw_fc_s8(const fw_fc_params *p, const int8_t *in, int8_t *out);

/* ---- elementwise ---- */
typedef struct {
    int32_t out_dims[4];
    int32_t in1_strides[4], in2_strides[4]; /* element strides, 0 on broadcast dimensions */
    int32_t broadcast;                      /* 0: same shapes, flat loop */
    int32_t in1_offset, in2_offset, out_offset;
    int32_t left_shift;
    int32_t in1_mult, in1_shift, in2_mult, in2_shift; /* ADD only */
    int32_t out_mult, out_shift;
    int32_t act_min, act_max;
} fw_binary_params;

void fw_add_s8(const fw_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);
void fw_mul_s8(const fw_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);
void fw_maximum_s8(const fw_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);
void fw_minimum_s8(const fw_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);

/* The loop of a binary operator over the output (p: fw_binary_params, in1, in2, out in scope), flat when no
 * input broadcasts; ONE(p, a, b) gives one output value. */
#define FW_BINARY_LOOP(ONE)                                                                              \
    if (!p->broadcast) {                                                                                 \
        const int32_t n = p->out_dims[0] * p->out_dims[1] * p->out_dims[2] * p->out_dims[3];             \
        for (int32_t i = 0; i < n; ++i) out[i] = ONE(p, in1[i], in2[i]);                                 \
        return;                                                                                          \
    }                                                                                                    \
    int32_t o = 0;                                                                                       \
    for (int32_t d0 = 0; d0 < p->out_dims[0]; ++d0)                                                      \
        for (int32_t d1 = 0; d1 < p->out_dims[1]; ++d1)                                                  \
            for (int32_t d2 = 0; d2 < p->out_dims[2]; ++d2)                                              \
                for (int32_t d3 = 0; d3 < p->out_dims[3]; ++d3) {                                        \
                    const int32_t i1 = d0 * p->in1_strides[0] + d1 * p->in1_strides[1] +                 \
                                       d2 * p->in1_strides[2] + d3 * p->in1_strides[3];                  \
                    const int32_t i2 = d0 * p->in2_strides[0] + d1 * p->in2_strides[1] +                 \
                                       d2 * p->in2_strides[2] + d3 * p->in2_strides[3];                  \
                    out[o++] = ONE(p, in1[i1], in2[i2]);                                                 \
                }

/* ---- pooling and reductions ---- */
typedef struct {
    int32_t in_h, in_w, c, out_h, out_w;
    int32_t f_h, f_w, stride_h, stride_w, pad_h, pad_w;
    int32_t act_min, act_max;
} fw_pool_params;

void fw_avgpool_s8(const fw_pool_params *p, const int8_t *in, int8_t *out);
void fw_maxpool_s8(const fw_pool_params *p, const int8_t *in, int8_t *out);

typedef struct {
    int32_t in_dims[4];
    int32_t reduce[4]; /* 1 where the axis is reduced */
    int32_t in_zp, out_zp, mult, shift;
} fw_mean_params;

void fw_mean_s8(const fw_mean_params *p, const int8_t *in, int8_t *out);

/* ---- data movement ---- */
typedef struct {
    int32_t in_dims[4], out_dims[4], before[4];
    int8_t value;
} fw_pad_params;

void fw_pad_s8(const fw_pad_params *p, const int8_t *in, int8_t *out);

typedef struct {
    int32_t in_dims[4], out_dims[4], begin[4], stride[4];
} fw_slice_params;

void fw_strided_slice_s8(const fw_slice_params *p, const int8_t *in, int8_t *out);

void fw_concat_s8(int32_t n_inputs, const int8_t *const *inputs, const int32_t *inner_sizes, int32_t outer,
                  int8_t *out);

/* ---- tables, SOFTMAX and the float boundaries (fw_activations.c) ---- */
/* out[i] = table[in[i] + 128]: an elementwise int8 operator tabulated by the generator (in-place safe) */
void fw_table_s8(int32_t n, const int8_t *table, const int8_t *in, int8_t *out);
/* DEQUANTIZE: out[i] = table[in[i] + 128], float(double(scale) * (v - zero point)) per value */
void fw_table_f32(int32_t n, const float *table, const int8_t *in, float *out);
/* QUANTIZE from float32: round(x / scale) + zero point, clamped to int8 */
void fw_quantize_f32_s8(int32_t n, float scale, int32_t zero_point, const float *in, int8_t *out);

typedef struct {
    int32_t rows, depth;  /* softmax over the last dimension */
    int32_t d_max;        /* largest difference to the row maximum that contributes (-diff_min, at most 255) */
    const int32_t *exp;   /* d_max + 1 entries: exp(-d) in Q0.31 as TFLite computes it */
} fw_softmax_params;

void fw_softmax_s8(const fw_softmax_params *p, const int8_t *in, int8_t *out);

#ifdef __cplusplus
}
#endif
#endif
