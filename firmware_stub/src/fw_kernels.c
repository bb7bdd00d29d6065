/* int8 kernels: TFLite reference integer arithmetic (see fw_kernels.h). */
#include "fw_kernels.h"

#include <string.h>

#include "model.h" /* FW_WEIGHTS_INT8: which weight layout the generated model uses (no unused core in flash) */

/* Requantise with channel c's record (see fw_conv_params.rq). */
#define FW_RQ(acc, rqp, zp, lo, hi) fw_requant((acc), (rqp)[1], (rqp)[2], (rqp)[3], (zp), (lo), (hi))

/* ------------------------------------------------------------------------------------------------
 * CONV_2D (reference_integer_ops::ConvPerChannel, with groups)
 *
 * One group: each output pixel's window is gathered into a column of k_pad int8 values (taps outside the
 * input hold pad_value, the padding to k_pad holds 0 against zero weights) and multiplied by the
 * (out_c, k_pad) weight matrix, starting from the folded bias bias + in_offset * sum(weights). A tap holding
 * the zero point adds w * (zp - zp) = 0 as the reference's skipped tap does, so the sums are identical; a
 * tap holding a folded PADV2's constant v adds w * (v - zp), as the reference does on the padded tensor.
 * Weights are int16, laid out for the SMLAD core (pack_conv_weights), or with --weights int8 (FW_WEIGHTS_INT8)
 * int8, widened in the loop (pack_conv_weights_int8).
 * ------------------------------------------------------------------------------------------------ */
#define FW_MAX_K 2048 /* edgeasc.firmware.MAX_K: the generator refuses larger windows */

static inline int32_t fw_wpack_index(int32_t oc, int32_t k, int32_t k_pad, int32_t cout) {
    static const int8_t perm[4] = {0, 2, 1, 3}; /* position of k & 3 inside its group: (w0, w2, w1, w3) */
    if (oc >= (cout & ~1)) return oc * k_pad + (k & ~3) + perm[k & 3];
    return (oc >> 1) * 2 * k_pad + (k >> 2) * 8 + (oc & 1) * 4 + perm[k & 3];
}

static void conv_column(const fw_conv_params *p, const int8_t *in, int32_t px, int8_t *col) {
    const int32_t oy = px / p->out_w, ox = px % p->out_w, in_c = p->in_c;
    const int32_t iy0 = oy * p->stride_h - p->pad_h, ix0 = ox * p->stride_w - p->pad_w;
    const int8_t zp = (int8_t)p->pad_value;
    int8_t *d = col;
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dil_h;
        for (int32_t kx = 0; kx < p->k_w; ++kx, d += in_c) {
            const int32_t ix = ix0 + kx * p->dil_w;
            const int inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
            const int8_t *src = inside ? in + (iy * p->in_w + ix) * in_c : NULL;
            if (in_c == 1) /* short rows: no library call */
                d[0] = src ? src[0] : zp;
            else if (src)
                memcpy(d, src, (size_t)in_c);
            else
                memset(d, zp, (size_t)in_c);
        }
    }
    for (int8_t *end = col + p->k_pad; d < end; ++d) *d = 0;
}

static int32_t conv_acc_grouped(const fw_conv_params *p, const int8_t *in, int32_t oc, int32_t iy0, int32_t ix0) {
    /* ConvPerChannel's sum for one output of a grouped convolution: taps outside the input are skipped */
    const int32_t filter_in_c = p->in_c / p->groups, g = oc / (p->out_c / p->groups);
    const int8_t *w = p->weights + oc * p->k_h * p->k_w * filter_in_c;
    int32_t acc = 0;
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dil_h;
        if (iy < 0 || iy >= p->in_h) continue;
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + kx * p->dil_w;
            if (ix < 0 || ix >= p->in_w) continue;
            const int8_t *x = in + ((iy * p->in_w + ix) * p->in_c) + g * filter_in_c;
            const int8_t *wk = w + (ky * p->k_w + kx) * filter_in_c;
            for (int32_t ic = 0; ic < filter_in_c; ++ic) acc += (int32_t)wk[ic] * ((int32_t)x[ic] + p->in_offset);
        }
    }
    return acc + (p->bias ? p->bias[oc] : 0);
}

/* Portable core: output pixel `px` from its column. */
static inline int32_t fw_wpack8_index(int32_t oc, int32_t k, int32_t k_pad, int32_t cout) {
    /* the int8 layout (pack_conv_weights_int8): the same, with each group of four in its natural order */
    if (oc >= (cout & ~1)) return oc * k_pad + k;
    return (oc >> 1) * 2 * k_pad + (k >> 2) * 8 + (oc & 1) * 4 + (k & 3);
}

static void conv_px_portable(const fw_conv_params *p, const int8_t *col, int8_t *y) {
    const int32_t *rq = p->rq;
    for (int32_t oc = 0; oc < p->out_c; ++oc, rq += FW_RQ_STRIDE) {
        int32_t acc = rq[0];
#if FW_WEIGHTS_INT8
        for (int32_t k = 0; k < p->k_pad; ++k)
            acc += (int32_t)p->weights[fw_wpack8_index(oc, k, p->k_pad, p->out_c)] * col[k];
#else
        for (int32_t k = 0; k < p->k_pad; ++k)
            acc += (int32_t)p->weights16[fw_wpack_index(oc, k, p->k_pad, p->out_c)] * col[k];
#endif
        y[oc] = FW_RQ(acc, rq, p->out_offset, p->act_min, p->act_max);
    }
}

static void conv_grouped(const fw_conv_params *p, const int8_t *in, int8_t *out) {
    const int32_t *rq;
    for (int32_t oy = 0; oy < p->out_h; ++oy)
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            int8_t *y = out + (oy * p->out_w + ox) * p->out_c;
            rq = p->rq;
            for (int32_t oc = 0; oc < p->out_c; ++oc, rq += FW_RQ_STRIDE)
                y[oc] = FW_RQ(conv_acc_grouped(p, in, oc, oy * p->stride_h - p->pad_h, ox * p->stride_w - p->pad_w),
                              rq, p->out_offset, p->act_min, p->act_max);
        }
}

#if defined(__ARM_FEATURE_DSP) && !defined(FW_NO_SIMD)
#include "fw_simd_arm.h"
#else
void fw_conv_s8(const fw_conv_params *p, const int8_t *in, int8_t *out) {
    static int8_t col[FW_MAX_K];
    if (p->groups != 1) {
        conv_grouped(p, in, out);
        return;
    }
    for (int32_t px = 0; px < p->out_h * p->out_w; ++px) {
        conv_column(p, in, px, col);
        conv_px_portable(p, col, out + px * p->out_c);
    }
}

/* 1x1, stride 1, one group, in_c % 4 == 0 (so k_pad == in_c): the input pixel is its own column. */
void fw_conv_1x1_s8(const fw_conv_params *p, const int8_t *in, int8_t *out) {
    for (int32_t px = 0; px < p->out_h * p->out_w; ++px) conv_px_portable(p, in + px * p->in_c, out + px * p->out_c);
}
#endif

/* ------------------------------------------------------------------------------------------------
 * DEPTHWISE_CONV_2D (reference_integer_ops::DepthwiseConvPerChannel)
 * ------------------------------------------------------------------------------------------------ */
static int32_t dw_acc_ref(const fw_conv_params *p, const int8_t *in, int32_t oc, int32_t iy0, int32_t ix0) {
    const int32_t ic = oc / p->depth_multiplier;
    int32_t acc = 0;
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dil_h;
        if (iy < 0 || iy >= p->in_h) continue;
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + kx * p->dil_w;
            if (ix < 0 || ix >= p->in_w) continue;
            acc += (int32_t)p->weights[(ky * p->k_w + kx) * p->out_c + oc] *
                   ((int32_t)in[(iy * p->in_w + ix) * p->in_c + ic] + p->in_offset);
        }
    }
    return acc + (p->bias ? p->bias[oc] : 0);
}

FW_INLINE void dw_px3_impl(const fw_conv_params *p, const int8_t *restrict x0, const int8_t *restrict x1,
                           const int8_t *restrict x2, int8_t *restrict y, const int mode) {
    /* one output pixel of a 3-tap depthwise layer (multiplier 1) */
    const int32_t cout = p->out_c, zp = p->out_offset, lo = p->act_min, hi = p->act_max;
    const int32_t *restrict r = p->dw3;
    for (int32_t c = 0; c < cout; ++c, r += FW_DW3_STRIDE) {
        int32_t acc = r[0] + (int32_t)(int16_t)r[2] * x0[c] + (r[2] >> 16) * x1[c] + r[3] * x2[c];
        y[c] = fw_requant_full(acc, r[1], r[4], r[5], zp, lo, hi, mode);
    }
}

#if defined(__ARM_FEATURE_DSP) && !defined(FW_NO_SIMD)
/* The same for 1 <= e <= FW_RSHIFT_MAX, |acc| < 2^30 and the full int8 range: 19 instructions per output
 * channel (PKHBT + SMLAD + SMLABB for the taps, SMMULR/QADD/ASR/SSAT for the requantisation). */
static void dw_px3_arm(const fw_conv_params *p, const int8_t *x0, const int8_t *x1, const int8_t *x2, int8_t *y) {
    const int32_t *r = p->dw3;
    const int8_t *yend = y + p->out_c;
    const int32_t zp = p->out_offset;
    uint32_t a, b, c, d, e;
    __asm__ volatile(
        "1:\n\t"
        "ldrsb %[a], [%[x0]], #1\n\t"
        "ldrsb %[b], [%[x1]], #1\n\t"
        "pkhbt %[a], %[a], %[b], lsl #16\n\t"
        "ldrd %[b], %[c], [%[r]], #8\n\t"      /* b = folded bias, c = multiplier */
        "ldrd %[d], %[e], [%[r]], #8\n\t"      /* d = (w0, w1), e = w2 */
        "smlad %[b], %[a], %[d], %[b]\n\t"
        "ldrsb %[a], [%[x2]], #1\n\t"
        "smlabb %[b], %[a], %[e], %[b]\n\t"
        "lsl %[b], %[b], #1\n\t"
        "smmulr %[a], %[b], %[c]\n\t"         /* a = floor((acc * m + 2^30) / 2^31), |acc| < 2^30 */
        "ldrd %[b], %[c], [%[r]], #8\n\t"      /* b = e, c = h */
        "add %[d], %[c], %[a], asr #31\n\t"
        "qadd %[a], %[a], %[d]\n\t"
        "asr %[a], %[a], %[b]\n\t"
        "add %[a], %[a], %[zp]\n\t"
        "ssat %[a], #8, %[a]\n\t"
        "strb %[a], [%[y]], #1\n\t"
        "cmp %[y], %[yend]\n\t"
        "bne 1b\n\t"
        : [x0] "+r"(x0), [x1] "+r"(x1), [x2] "+r"(x2), [r] "+r"(r), [y] "+r"(y), [a] "=&r"(a), [b] "=&r"(b),
          [c] "=&r"(c), [d] "=&r"(d), [e] "=&r"(e)
        : [yend] "r"(yend), [zp] "r"(zp)
        : "cc", "memory");
}
#endif

void fw_dwconv_s8(const fw_conv_params *p, const int8_t *in, int8_t *out) {
    /* Multiplier 1: every window starts from the folded bias; taps outside the input read a row of the input
     * zero point, which adds w * (zp - zp) = 0 exactly as the reference's skipped tap. Other multipliers take
     * the reference sum. */
    static int8_t zrow[FW_MAX_K] __attribute__((aligned(4)));
    const int32_t cout = p->out_c, n_taps = p->k_h * p->k_w;
    if (p->depth_multiplier != 1 || n_taps > 16 || p->in_c > FW_MAX_K) {
        for (int32_t oy = 0; oy < p->out_h; ++oy)
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                int8_t *y = out + (oy * p->out_w + ox) * cout;
                const int32_t *rq = p->rq;
                for (int32_t c = 0; c < cout; ++c, rq += FW_RQ_STRIDE)
                    y[c] = FW_RQ(dw_acc_ref(p, in, c, oy * p->stride_h - p->pad_h, ox * p->stride_w - p->pad_w), rq,
                                 p->out_offset, p->act_min, p->act_max);
            }
        return;
    }
    memset(zrow, (int8_t)(-p->in_offset), (size_t)p->in_c);
    const int mode = (p->act_min == -128 && p->act_max == 127 ? FW_FULL : 0) | (p->rshift ? FW_RSHIFT : 0);
    (void)mode; /* only the Cortex-M path branches on it */
    const int8_t *x[16];
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_h;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_w;
            int8_t *y = out + (oy * p->out_w + ox) * cout;
            for (int32_t t = 0; t < n_taps; ++t) {
                const int32_t iy = iy0 + (t / p->k_w) * p->dil_h, ix = ix0 + (t % p->k_w) * p->dil_w;
                x[t] = (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) ? zrow : in + (iy * p->in_w + ix) * p->in_c;
            }
            if (n_taps == 3 && p->dw3) {
#if defined(__ARM_FEATURE_DSP) && !defined(FW_NO_SIMD)
                if (mode == (FW_FULL | FW_RSHIFT) && p->small && cout > 0)
                    dw_px3_arm(p, x[0], x[1], x[2], y);
                else
#endif
                    dw_px3_impl(p, x[0], x[1], x[2], y, 0);
            }
#if defined(__ARM_FEATURE_DSP) && !defined(FW_NO_SIMD)
            else if (mode == (FW_FULL | FW_RSHIFT) && p->small && cout % 4 == 0 && p->weights)
                dw_px4(p, x, n_taps, y);
#endif
            else {
                const int32_t *rq = p->rq;
                for (int32_t c = 0; c < cout; ++c, rq += FW_RQ_STRIDE) {
                    int32_t acc = rq[0];
                    for (int32_t t = 0; t < n_taps; ++t) acc += p->weights[t * cout + c] * x[t][c];
                    y[c] = FW_RQ(acc, rq, p->out_offset, p->act_min, p->act_max);
                }
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------------
 * FULLY_CONNECTED (reference_integer_ops::FullyConnected / FullyConnectedPerChannel)
 * ------------------------------------------------------------------------------------------------ */
void fw_fc_s8(const fw_fc_params *p, const int8_t *in, int8_t *out) {
    if (p->folded) { /* weight zero point 0: bias + in_offset * sum(w) folded per output by the generator */
#if defined(__ARM_FEATURE_DSP) && !defined(FW_NO_SIMD)
        if (p->in_depth <= FW_MAX_K) {
            fc_simd(p, in, out);
            return;
        }
#endif
        for (int32_t r = 0; r < p->rows; ++r) {
            const int8_t *x = in + r * p->in_depth;
            for (int32_t o = 0; o < p->out_depth; ++o) {
                const int8_t *w = p->weights + o * p->in_depth;
                int32_t acc = p->folded[o];
                for (int32_t i = 0; i < p->in_depth; ++i) acc += (int32_t)w[i] * x[i];
                const int32_t k = p->per_channel ? o : 0;
                out[r * p->out_depth + o] = fw_clamp8(fw_mbqm(acc, p->mult[k], p->shift[k]) + p->out_offset,
                                                      p->act_min, p->act_max);
            }
        }
        return;
    }
    for (int32_t r = 0; r < p->rows; ++r) {
        const int8_t *x = in + r * p->in_depth;
        for (int32_t o = 0; o < p->out_depth; ++o) {
            const int8_t *w = p->weights + o * p->in_depth;
            int32_t acc = 0;
            for (int32_t i = 0; i < p->in_depth; ++i)
                acc += ((int32_t)w[i] + p->weight_offset) * ((int32_t)x[i] + p->in_offset);
            if (p->bias) acc += p->bias[o];
            const int32_t k = p->per_channel ? o : 0;
            acc = fw_mbqm(acc, p->mult[k], p->shift[k]) + p->out_offset;
            out[r * p->out_depth + o] = fw_clamp8(acc, p->act_min, p->act_max);
        }
    }
}

/* ------------------------------------------------------------------------------------------------
 * ADD and MUL (reference_integer_ops::AddElementwise / Mul, with TFLM's broadcast variants)
 * ------------------------------------------------------------------------------------------------ */
static inline int8_t mul_one(const fw_binary_params *p, int32_t a, int32_t b) {
    const int32_t prod = (p->in1_offset + a) * (p->in2_offset + b);
    const int32_t raw = fw_mbqm(prod, p->out_mult, p->out_shift) + p->out_offset;
    return fw_clamp8(raw, p->act_min, p->act_max);
}

/* Each input's rescaled value depends on that input's int8 value alone: 256-entry tables per call, then one
 * requantisation per element. Same integers as add_one. */
static int32_t add_table1[256], add_table2[256];


void fw_add_s8(const fw_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
    for (int32_t v = -128; v < 128; ++v) {
        const int32_t x1 = (int32_t)((uint32_t)(p->in1_offset + v) << p->left_shift);
        const int32_t x2 = (int32_t)((uint32_t)(p->in2_offset + v) << p->left_shift);
        add_table1[v + 128] = fw_rdbpot(fw_srdhm(x1, p->in1_mult), -p->in1_shift);
        add_table2[v + 128] = fw_rdbpot(fw_srdhm(x2, p->in2_mult), -p->in2_shift);
    }
    const int32_t m = p->out_mult, zp = p->out_offset, lo = p->act_min, hi = p->act_max;
    const int32_t e = p->out_shift <= -1 ? -p->out_shift : 0, h = e ? 1 << (e - 1) : p->out_shift;
    if (!p->broadcast) {
        const int32_t n = p->out_dims[0] * p->out_dims[1] * p->out_dims[2] * p->out_dims[3];
        const int8_t *restrict a = in1, *restrict b = in2;
        int8_t *restrict y = out;
        const int32_t *restrict t1 = add_table1 + 128, *restrict t2 = add_table2 + 128;
        if (lo == -128 && hi == 127 && e > 0 && e <= FW_RSHIFT_MAX && n > 0) {
#if defined(__ARM_FEATURE_DSP) && !defined(FW_NO_SIMD)
            /* 15 instructions per element: two table lookups, SMMULR/QADD/ASR/SSAT requantisation (each table
             * value is ((x + offset) << 20) times a multiplier <= 1/2, so |sum| < 2^28 and SMMULR is exact) */
            const int8_t *yend = y + n;
            uint32_t va, vb;
            __asm__ volatile(
                "1:\n\t"
                "ldrsb %[va], [%[a]], #1\n\t"
                "ldrsb %[vb], [%[b]], #1\n\t"
                "ldr %[va], [%[t1], %[va], lsl #2]\n\t"
                "ldr %[vb], [%[t2], %[vb], lsl #2]\n\t"
                "add %[va], %[va], %[vb]\n\t"
                "lsl %[va], %[va], #1\n\t"
                "smmulr %[va], %[va], %[m]\n\t"
                "add %[vb], %[h], %[va], asr #31\n\t"
                "qadd %[va], %[va], %[vb]\n\t"
                "asr %[va], %[va], %[e]\n\t"
                "add %[va], %[va], %[zp]\n\t"
                "ssat %[va], #8, %[va]\n\t"
                "strb %[va], [%[y]], #1\n\t"
                "cmp %[y], %[yend]\n\t"
                "bne 1b\n\t"
                : [a] "+r"(a), [b] "+r"(b), [y] "+r"(y), [va] "=&r"(va), [vb] "=&r"(vb)
                : [t1] "r"(t1), [t2] "r"(t2), [m] "r"(m), [h] "r"(h), [e] "r"(e), [zp] "r"(zp), [yend] "r"(yend)
                : "cc", "memory");
#else
            for (int32_t i = 0; i < n; ++i)
                y[i] = fw_requant_full(t1[a[i]] + t2[b[i]], m, e, h, zp, lo, hi, FW_FULL | FW_RSHIFT);
#endif
        } else
            for (int32_t i = 0; i < n; ++i) y[i] = fw_requant(t1[a[i]] + t2[b[i]], m, e, h, zp, lo, hi);
        return;
    }
#define add_tab(p, a, b) fw_requant(add_table1[(a) + 128] + add_table2[(b) + 128], m, e, h, zp, lo, hi)
    FW_BINARY_LOOP(add_tab)
#undef add_tab
}

void fw_mul_s8(const fw_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
    FW_BINARY_LOOP(mul_one)
}

/* ------------------------------------------------------------------------------------------------
 * AVERAGE_POOL_2D (reference_integer_ops::AveragePool): padding excluded from the count
 * ------------------------------------------------------------------------------------------------ */
static void fw_avgpool_ref(const fw_pool_params *p, const int8_t *in, int8_t *out) {
    for (int32_t oy = 0; oy < p->out_h; ++oy)
        for (int32_t ox = 0; ox < p->out_w; ++ox)
            for (int32_t c = 0; c < p->c; ++c) {
                const int32_t iy0 = oy * p->stride_h - p->pad_h, ix0 = ox * p->stride_w - p->pad_w;
                int32_t acc = 0, count = 0;
                for (int32_t fy = 0; fy < p->f_h; ++fy)
                    for (int32_t fx = 0; fx < p->f_w; ++fx) {
                        const int32_t iy = iy0 + fy, ix = ix0 + fx;
                        if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) continue;
                        acc += in[(iy * p->in_w + ix) * p->c + c];
                        ++count;
                    }
                if (count > 0) acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                out[(oy * p->out_w + ox) * p->c + c] = fw_clamp8(acc, p->act_min, p->act_max);
            }
}

void fw_avgpool_s8(const fw_pool_params *p, const int8_t *restrict in, int8_t *restrict out) {
    const int32_t c_n = p->c, in_w = p->in_w, lo = p->act_min, hi = p->act_max;
#if defined(__ARM_FEATURE_DSP) && !defined(FW_NO_SIMD)
    if (c_n % 4 == 0 && p->f_h * p->f_w <= 255) {
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            const int32_t fy0 = iy0 < 0 ? -iy0 : 0;
            const int32_t fy1 = p->f_h < p->in_h - iy0 ? p->f_h : p->in_h - iy0;
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                const int32_t fx0 = ix0 < 0 ? -ix0 : 0;
                const int32_t fx1 = p->f_w < in_w - ix0 ? p->f_w : in_w - ix0;
                if (fy1 <= fy0 || fx1 <= fx0) { /* an empty window: the reference divides nothing */
                    fw_avgpool_ref(p, in, out);
                    return;
                }
                avgpool_px4(p, in + ((iy0 + fy0) * in_w + (ix0 + fx0)) * c_n, fy1 - fy0, fx1 - fx0,
                            out + (oy * p->out_w + ox) * c_n);
            }
        }
        return;
    }
#endif
    if (p->f_h * p->f_w > 64) { /* larger windows: the plain reference loops */
        fw_avgpool_ref(p, in, out);
        return;
    }
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_h;
        const int32_t fy0 = iy0 < 0 ? -iy0 : 0;
        const int32_t fy1 = p->f_h < p->in_h - iy0 ? p->f_h : p->in_h - iy0;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_w;
            const int32_t fx0 = ix0 < 0 ? -ix0 : 0;
            const int32_t fx1 = p->f_w < in_w - ix0 ? p->f_w : in_w - ix0;
            const int32_t count = (fy1 - fy0) * (fx1 - fx0), half = count / 2;
            const int8_t *base = in + ((iy0 + fy0) * in_w + (ix0 + fx0)) * c_n;
            const int32_t nx = fx1 - fx0, ny = fy1 - fy0;
            int32_t off[64], n_off = 0;
            for (int32_t fy = 0; fy < ny && n_off < 64; ++fy)
                for (int32_t fx = 0; fx < nx && n_off < 64; ++fx) off[n_off++] = (fy * in_w + fx) * c_n;
            int8_t *y = out + (oy * p->out_w + ox) * c_n;
            for (int32_t c = 0; c < c_n; ++c) {
                const int8_t *r = base + c;
                int32_t acc;
                if (n_off == 9) /* the interior of a 3x3 pool */
                    acc = r[0] + r[off[1]] + r[off[2]] + r[off[3]] + r[off[4]] + r[off[5]] + r[off[6]] + r[off[7]] +
                          r[off[8]];
                else
                    for (int32_t t = acc = 0; t < n_off; ++t) acc += r[off[t]];
                if (count > 0) /* reference rounding: to nearest, ties away from zero */
                    acc = acc > 0 ? (acc + half) / count : (acc - half) / count;
                y[c] = fw_clamp8(acc, lo, hi);
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------------
 * MEAN (reference_ops::QuantizedMeanOrSum: 1 / count folded into the multiplier by the generator; the
 * pinned TFLite Micro takes this path for int8 also when input and output quantisation agree)
 * ------------------------------------------------------------------------------------------------ */
void fw_mean_s8(const fw_mean_params *p, const int8_t *in, int8_t *out) {
    const int32_t *d = p->in_dims;
    int32_t od[4], strides[4] = {d[1] * d[2] * d[3], d[2] * d[3], d[3], 1};
    int32_t count = 1;
    for (int k = 0; k < 4; ++k) {
        od[k] = p->reduce[k] ? 1 : d[k];
        if (p->reduce[k]) count *= d[k];
    }
    int32_t o = 0;
    for (int32_t a0 = 0; a0 < od[0]; ++a0)
        for (int32_t a1 = 0; a1 < od[1]; ++a1)
            for (int32_t a2 = 0; a2 < od[2]; ++a2)
                for (int32_t a3 = 0; a3 < od[3]; ++a3) {
                    const int32_t base = a0 * strides[0] + a1 * strides[1] + a2 * strides[2] + a3 * strides[3];
                    int32_t sum = 0;
                    for (int32_t r0 = 0; r0 < (p->reduce[0] ? d[0] : 1); ++r0)
                        for (int32_t r1 = 0; r1 < (p->reduce[1] ? d[1] : 1); ++r1)
                            for (int32_t r2 = 0; r2 < (p->reduce[2] ? d[2] : 1); ++r2)
                                for (int32_t r3 = 0; r3 < (p->reduce[3] ? d[3] : 1); ++r3)
                                    sum += in[base + r0 * strides[0] + r1 * strides[1] + r2 * strides[2] +
                                              r3 * strides[3]];
                    const int32_t v = fw_mbqm(sum - p->in_zp * count, p->mult, p->shift) + p->out_zp;
                    out[o++] = fw_clamp8(v, -128, 127);
                }
}

/* ------------------------------------------------------------------------------------------------
 * Data movement: PAD, STRIDED_SLICE, CONCATENATION, RESHAPE (a copy when not aliased)
 * ------------------------------------------------------------------------------------------------ */
void fw_pad_s8(const fw_pad_params *p, const int8_t *in, int8_t *out) {
    const int32_t *od = p->out_dims, *id = p->in_dims, *b = p->before;
    memset(out, p->value, (size_t)od[0] * od[1] * od[2] * od[3]);
    for (int32_t i0 = 0; i0 < id[0]; ++i0)
        for (int32_t i1 = 0; i1 < id[1]; ++i1)
            for (int32_t i2 = 0; i2 < id[2]; ++i2) {
                const int32_t src = ((i0 * id[1] + i1) * id[2] + i2) * id[3];
                const int32_t dst = (((i0 + b[0]) * od[1] + i1 + b[1]) * od[2] + i2 + b[2]) * od[3] + b[3];
                memcpy(out + dst, in + src, (size_t)id[3]);
            }
}

void fw_strided_slice_s8(const fw_slice_params *p, const int8_t *in, int8_t *out) {
    const int32_t *id = p->in_dims, *od = p->out_dims, *b = p->begin, *s = p->stride;
    int32_t o = 0;
    for (int32_t i0 = 0; i0 < od[0]; ++i0)
        for (int32_t i1 = 0; i1 < od[1]; ++i1)
            for (int32_t i2 = 0; i2 < od[2]; ++i2) {
                const int32_t row =
                    (((b[0] + i0 * s[0]) * id[1] + b[1] + i1 * s[1]) * id[2] + b[2] + i2 * s[2]) * id[3];
                if (s[3] == 1) {
                    memcpy(out + o, in + row + b[3], (size_t)od[3]);
                    o += od[3];
                } else {
                    for (int32_t i3 = 0; i3 < od[3]; ++i3) out[o++] = in[row + b[3] + i3 * s[3]];
                }
            }
}

void fw_concat_s8(int32_t n_inputs, const int8_t *const *inputs, const int32_t *inner_sizes, int32_t outer,
                  int8_t *out) {
    for (int32_t k = 0; k < outer; ++k)
        for (int32_t i = 0; i < n_inputs; ++i) {
            memcpy(out, inputs[i] + k * inner_sizes[i], (size_t)inner_sizes[i]);
            out += inner_sizes[i];
        }
}
