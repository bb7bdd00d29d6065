/* Cortex-M DSP extension (M4, M7, M33...): convolutions as (pixels x k_pad) by (k_pad x out_c) products with
 * SMLAD, two pixels x two output channels per inner step (after CMSIS-NN's arm_nn_mat_mult_kernel_s8_s16).
 * Included by fw_kernels.c.
 *
 * The two pixels' columns are widened once to int16, interleaved per group of four values as
 * [(a0, a2), (a1, a3), (b0, b2), (b1, b3)], the order SXTB16 gives a word: (x0, x2) and, with ROR 8,
 * (w1, w3); SMLAD then adds a0*w0 + a2*w2 and a1*w1 + a3*w3. The generator stores the weights already as
 * int16 pairs in that order, the two channels of a pair side by side. Only the order of integer sums
 * changes: exact. */
#include <string.h>

#define FW_RQF(acc, rqp) fw_requant_full((acc), (rqp)[1], (rqp)[2], (rqp)[3], zp, lo, hi, mode)

static inline uint32_t fw_sxtb16(uint32_t x) {
    uint32_t r;
    __asm__("sxtb16 %0, %1" : "=r"(r) : "r"(x));
    return r;
}
static inline uint32_t fw_sxtb16_ror8(uint32_t x) {
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
static inline int32_t fw_smlad(uint32_t a, uint32_t b, int32_t acc) {
    int32_t r;
    __asm__("smlad %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}
static inline uint64_t fw_load64(const uint32_t *p) { /* 8-byte aligned: LDRD */
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline uint32_t fw_load32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint32_t fw_xbuf[FW_MAX_K] __attribute__((aligned(8)));

static void widen2(const int8_t *xa, const int8_t *xb, int32_t k_pad) {
    uint32_t *d = fw_xbuf;
    for (int32_t c = 0; c < k_pad; c += 4, d += 4) {
        const uint32_t va = fw_load32(xa + c), vb = fw_load32(xb + c);
        d[0] = fw_sxtb16(va);
        d[1] = fw_sxtb16_ror8(va);
        d[2] = fw_sxtb16(vb);
        d[3] = fw_sxtb16_ror8(vb);
    }
}

/* both pixels of fw_xbuf against all output channels: rows y0 and y0 + cout. A weight group of four is two
 * words of int16 pairs, (w0, w2) and (w1, w3), matching the widened input; no widening in the inner loop. */
FW_INLINE void mm_2px(const fw_conv_params *p, int8_t *restrict y0, const int mode) {
    const int32_t cout = p->out_c, k_pad = p->k_pad, zp = p->out_offset, lo = p->act_min, hi = p->act_max;
    const uint32_t *xend = fw_xbuf + k_pad;
    const uint32_t *w = (const uint32_t *)p->weights16;
    const int32_t *restrict rq = p->rq;
    int32_t oc = 0;
    for (; oc + 1 < cout; oc += 2, rq += 2 * FW_RQ_STRIDE) {
        int32_t a00 = rq[0], a01 = a00, a10 = rq[FW_RQ_STRIDE], a11 = a10;
        /* k_pad >= 4: at least one group. Per group of four inputs: 3 LDRD, 8 SMLAD, CMP, branch. */
        const uint32_t *x = fw_xbuf;
        uint32_t xa0, xa1, xb0, xb1, w0, w1;
        __asm__ volatile(
            "1:\n\t"
            "ldrd %[xa0], %[xa1], [%[x]], #8\n\t"
            "ldrd %[xb0], %[xb1], [%[x]], #8\n\t"
            "ldrd %[w0], %[w1], [%[w]], #8\n\t"
            "smlad %[a00], %[xa0], %[w0], %[a00]\n\t"
            "smlad %[a00], %[xa1], %[w1], %[a00]\n\t"
            "smlad %[a01], %[xb0], %[w0], %[a01]\n\t"
            "smlad %[a01], %[xb1], %[w1], %[a01]\n\t"
            "ldrd %[w0], %[w1], [%[w]], #8\n\t"
            "smlad %[a10], %[xa0], %[w0], %[a10]\n\t"
            "smlad %[a10], %[xa1], %[w1], %[a10]\n\t"
            "smlad %[a11], %[xb0], %[w0], %[a11]\n\t"
            "smlad %[a11], %[xb1], %[w1], %[a11]\n\t"
            "cmp %[x], %[xend]\n\t"
            "blo 1b\n\t"
            : [a00] "+r"(a00), [a01] "+r"(a01), [a10] "+r"(a10), [a11] "+r"(a11), [x] "+r"(x), [w] "+r"(w),
              [xa0] "=&r"(xa0), [xa1] "=&r"(xa1), [xb0] "=&r"(xb0), [xb1] "=&r"(xb1), [w0] "=&r"(w0), [w1] "=&r"(w1)
            : [xend] "r"(xend)
            : "cc", "memory");
        y0[oc] = FW_RQF(a00, rq);
        y0[oc + cout] = FW_RQF(a01, rq);
        y0[oc + 1] = FW_RQF(a10, rq + FW_RQ_STRIDE);
        y0[oc + 1 + cout] = FW_RQF(a11, rq + FW_RQ_STRIDE);
    }
    if (oc < cout) { /* odd output channel count: a plain last row */
        int32_t a0 = rq[0], a1 = a0;
        for (const uint32_t *x = fw_xbuf; x < xend; x += 4, w += 2) {
            a0 = fw_smlad(x[0], w[0], fw_smlad(x[1], w[1], a0));
            a1 = fw_smlad(x[2], w[0], fw_smlad(x[3], w[1], a1));
        }
        y0[oc] = FW_RQF(a0, rq);
        y0[oc + cout] = FW_RQF(a1, rq);
    }
}

#if FW_WEIGHTS_INT8
/* The same product with int8 weights in flash (pack_conv_weights_int8: a group of four of both channels of a
 * pair in one LDRD, natural order): SXTB16 widens them in the loop, as CMSIS-NN does. Three more instructions
 * per group of four inputs than mm_2px, half its weight bytes. */
FW_INLINE void mm_2px_w8(const fw_conv_params *p, int8_t *restrict y0, const int mode) {
    const int32_t cout = p->out_c, k_pad = p->k_pad, zp = p->out_offset, lo = p->act_min, hi = p->act_max;
    const uint32_t *xend = fw_xbuf + k_pad;
    const uint32_t *w = (const uint32_t *)(const void *)p->weights;
    const int32_t *restrict rq = p->rq;
    int32_t oc = 0;
    for (; oc + 1 < cout; oc += 2, rq += 2 * FW_RQ_STRIDE) {
        int32_t a00 = rq[0], a01 = a00, a10 = rq[FW_RQ_STRIDE], a11 = a10;
        const uint32_t *x = fw_xbuf;
        uint32_t xa0, xa1, xb0, xb1, u0, u1, t;
        __asm__ volatile(
            "1:\n\t"
            "ldrd %[u0], %[u1], [%[w]], #8\n\t"
            "ldrd %[xa0], %[xa1], [%[x]], #8\n\t"
            "ldrd %[xb0], %[xb1], [%[x]], #8\n\t"
            "sxtb16 %[t], %[u0]\n\t"
            "sxtb16 %[u0], %[u0], ror #8\n\t"
            "smlad %[a00], %[xa0], %[t], %[a00]\n\t"
            "smlad %[a00], %[xa1], %[u0], %[a00]\n\t"
            "smlad %[a01], %[xb0], %[t], %[a01]\n\t"
            "smlad %[a01], %[xb1], %[u0], %[a01]\n\t"
            "sxtb16 %[t], %[u1]\n\t"
            "sxtb16 %[u1], %[u1], ror #8\n\t"
            "smlad %[a10], %[xa0], %[t], %[a10]\n\t"
            "smlad %[a10], %[xa1], %[u1], %[a10]\n\t"
            "smlad %[a11], %[xb0], %[t], %[a11]\n\t"
            "smlad %[a11], %[xb1], %[u1], %[a11]\n\t"
            "cmp %[x], %[xend]\n\t"
            "blo 1b\n\t"
            : [a00] "+r"(a00), [a01] "+r"(a01), [a10] "+r"(a10), [a11] "+r"(a11), [x] "+r"(x), [w] "+r"(w),
              [xa0] "=&r"(xa0), [xa1] "=&r"(xa1), [xb0] "=&r"(xb0), [xb1] "=&r"(xb1), [u0] "=&r"(u0), [u1] "=&r"(u1),
              [t] "=&r"(t)
            : [xend] "r"(xend)
            : "cc", "memory");
        y0[oc] = FW_RQF(a00, rq);
        y0[oc + cout] = FW_RQF(a01, rq);
        y0[oc + 1] = FW_RQF(a10, rq + FW_RQ_STRIDE);
        y0[oc + 1 + cout] = FW_RQF(a11, rq + FW_RQ_STRIDE);
    }
    if (oc < cout) { /* odd output channel count: a plain last row */
        int32_t a0 = rq[0], a1 = a0;
        for (const uint32_t *x = fw_xbuf; x < xend; x += 4, ++w) {
            const uint32_t w02 = fw_sxtb16(*w), w13 = fw_sxtb16_ror8(*w);
            a0 = fw_smlad(x[0], w02, fw_smlad(x[1], w13, a0));
            a1 = fw_smlad(x[2], w02, fw_smlad(x[3], w13, a1));
        }
        y0[oc] = FW_RQF(a0, rq);
        y0[oc + cout] = FW_RQF(a1, rq);
    }
}

#endif

static void mm_2px_any(const fw_conv_params *p, int8_t *y0) {
    const int full = p->act_min == -128 && p->act_max == 127;
#if FW_WEIGHTS_INT8
    if (full && p->rshift && p->small)
        mm_2px_w8(p, y0, FW_FULL | FW_RSHIFT | FW_SMALL);
    else
        mm_2px_w8(p, y0, 0);
#else
    if (full && p->rshift && p->small)
        mm_2px(p, y0, FW_FULL | FW_RSHIFT | FW_SMALL);
    else if (full && p->rshift)
        mm_2px(p, y0, FW_FULL | FW_RSHIFT);
    else
        mm_2px(p, y0, 0);
#endif
}

void fw_conv_s8(const fw_conv_params *p, const int8_t *in, int8_t *out) {
    static int8_t cols[2][FW_MAX_K];
    const int32_t n_pix = p->out_h * p->out_w;
    if (p->groups != 1) {
        conv_grouped(p, in, out);
        return;
    }
    int32_t px = 0;
    for (; px + 1 < n_pix; px += 2) {
        conv_column(p, in, px, cols[0]);
        conv_column(p, in, px + 1, cols[1]);
        widen2(cols[0], cols[1], p->k_pad);
        mm_2px_any(p, out + px * p->out_c);
    }
    if (px < n_pix) { /* odd pixel count */
        conv_column(p, in, px, cols[0]);
        conv_px_portable(p, cols[0], out + px * p->out_c);
    }
}

/* 1x1, stride 1, one group, in_c % 4 == 0 (k_pad == in_c): input pixels are their own columns. */
void fw_conv_1x1_s8(const fw_conv_params *p, const int8_t *in, int8_t *out) {
    const int32_t n_pix = p->out_h * p->out_w, cin = p->in_c;
    int32_t px = 0;
    for (; px + 1 < n_pix; px += 2) {
        widen2(in + px * cin, in + (px + 1) * cin, cin);
        mm_2px_any(p, out + px * p->out_c);
    }
    if (px < n_pix) conv_px_portable(p, in + px * cin, out + px * p->out_c);
}

static inline int32_t fw_smlabb(uint32_t a, uint32_t b, int32_t acc) {
    int32_t r;
    __asm__("smlabb %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}
static inline int32_t fw_smlatt(uint32_t a, uint32_t b, int32_t acc) {
    int32_t r;
    __asm__("smlatt %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}

/* Depthwise, multiplier 1, out_c % 4 == 0, up to 16 taps (x: one input row pointer per tap, outside taps at a
 * zero-point row): four channels per step. One word holds four channels' inputs of a tap, another their int8
 * weights (1HWO: contiguous per tap); SXTB16 widens (c0, c2) and, with ROR 8, (c1, c3), and SMLABB / SMLATT
 * add each channel's product to its own accumulator. The same integer sums as the reference, in another
 * order. The taps' loop is unrolled for the 3x3 window (n_taps a constant there). */
FW_INLINE void dw_px4_impl(const fw_conv_params *p, const int8_t *const *x, const int32_t n_taps,
                           int8_t *restrict y) {
    const int32_t cout = p->out_c, zp = p->out_offset, lo = p->act_min, hi = p->act_max;
    const int mode = FW_FULL | FW_RSHIFT | FW_SMALL;
    const int32_t *restrict rq = p->rq;
    for (int32_t c = 0; c < cout; c += 4, rq += 4 * FW_RQ_STRIDE) {
        int32_t a0 = rq[0], a1 = rq[FW_RQ_STRIDE], a2 = rq[2 * FW_RQ_STRIDE], a3 = rq[3 * FW_RQ_STRIDE];
        const int8_t *w = p->weights + c;
        for (int32_t t = 0; t < n_taps; ++t, w += cout) {
            const uint32_t v = fw_load32(x[t] + c), wv = fw_load32(w);
            const uint32_t v02 = fw_sxtb16(v), v13 = fw_sxtb16_ror8(v);
            const uint32_t w02 = fw_sxtb16(wv), w13 = fw_sxtb16_ror8(wv);
            a0 = fw_smlabb(v02, w02, a0);
            a2 = fw_smlatt(v02, w02, a2);
            a1 = fw_smlabb(v13, w13, a1);
            a3 = fw_smlatt(v13, w13, a3);
        }
        y[c] = FW_RQF(a0, rq);
        y[c + 1] = FW_RQF(a1, rq + FW_RQ_STRIDE);
        y[c + 2] = FW_RQF(a2, rq + 2 * FW_RQ_STRIDE);
        y[c + 3] = FW_RQF(a3, rq + 3 * FW_RQ_STRIDE);
    }
}

static void dw_px4(const fw_conv_params *p, const int8_t *const *x, int32_t n_taps, int8_t *y) {
    if (n_taps == 9)
        dw_px4_impl(p, x, 9, y);
    else
        dw_px4_impl(p, x, n_taps, y);
}

/* FULLY_CONNECTED with the offsets folded (fw_fc_params.folded): each input row is widened once into
 * fw_xbuf as (x0, x2), (x1, x3) int16 pairs; weights stay int8 in flash and SXTB16 widens a word of four per
 * step, two output rows at a time so that every input pair loaded serves two SMLADs. A depth that is not a
 * multiple of four ends with plain multiply-adds. */
static void fc_simd(const fw_fc_params *p, const int8_t *in, int8_t *out) {
    const int32_t depth = p->in_depth, d4 = depth & ~3;
    for (int32_t r = 0; r < p->rows; ++r) {
        const int8_t *x = in + r * depth;
        uint32_t *d = fw_xbuf;
        for (int32_t i = 0; i < d4; i += 4, d += 2) {
            const uint32_t v = fw_load32(x + i);
            d[0] = fw_sxtb16(v);
            d[1] = fw_sxtb16_ror8(v);
        }
        int8_t *y = out + r * p->out_depth;
        int32_t o = 0;
        for (; o + 1 < p->out_depth; o += 2) {
            const int8_t *w0 = p->weights + o * depth, *w1 = w0 + depth;
            int32_t a0 = p->folded[o], a1 = p->folded[o + 1];
            if (d4 > 0) { /* per group of four inputs: LDRD, 2 LDR, 4 SXTB16, 4 SMLAD, CMP, branch */
                const uint32_t *xb = fw_xbuf, *xend = fw_xbuf + d4 / 2;
                const int8_t *q0 = w0, *q1 = w1;
                uint32_t x02, x13, u0, u1, t;
                __asm__ volatile(
                    "1:\n\t"
                    "ldrd %[x02], %[x13], [%[xb]], #8\n\t"
                    "ldr %[u0], [%[q0]], #4\n\t"
                    "ldr %[u1], [%[q1]], #4\n\t"
                    "sxtb16 %[t], %[u0]\n\t"
                    "sxtb16 %[u0], %[u0], ror #8\n\t"
                    "smlad %[a0], %[x02], %[t], %[a0]\n\t"
                    "smlad %[a0], %[x13], %[u0], %[a0]\n\t"
                    "sxtb16 %[t], %[u1]\n\t"
                    "sxtb16 %[u1], %[u1], ror #8\n\t"
                    "smlad %[a1], %[x02], %[t], %[a1]\n\t"
                    "smlad %[a1], %[x13], %[u1], %[a1]\n\t"
                    "cmp %[xb], %[xend]\n\t"
                    "blo 1b\n\t"
                    : [a0] "+r"(a0), [a1] "+r"(a1), [xb] "+r"(xb), [q0] "+r"(q0), [q1] "+r"(q1), [x02] "=&r"(x02),
                      [x13] "=&r"(x13), [u0] "=&r"(u0), [u1] "=&r"(u1), [t] "=&r"(t)
                    : [xend] "r"(xend)
                    : "cc", "memory");
            }
            for (int32_t i = d4; i < depth; ++i) {
                a0 += (int32_t)w0[i] * x[i];
                a1 += (int32_t)w1[i] * x[i];
            }
            const int32_t k0 = p->per_channel ? o : 0, k1 = p->per_channel ? o + 1 : 0;
            y[o] = fw_requant_shift(a0, p->mult[k0], p->shift[k0], p->out_offset, p->act_min, p->act_max);
            y[o + 1] = fw_requant_shift(a1, p->mult[k1], p->shift[k1], p->out_offset, p->act_min, p->act_max);
        }
        for (; o < p->out_depth; ++o) {
            const int8_t *w0 = p->weights + o * depth;
            int32_t a0 = p->folded[o];
            const uint32_t *xb = fw_xbuf;
            for (int32_t i = 0; i < d4; i += 4, xb += 2) {
                const uint32_t u0 = fw_load32(w0 + i);
                a0 = fw_smlad(xb[0], fw_sxtb16(u0), fw_smlad(xb[1], fw_sxtb16_ror8(u0), a0));
            }
            for (int32_t i = d4; i < depth; ++i) a0 += (int32_t)w0[i] * x[i];
            const int32_t k0 = p->per_channel ? o : 0;
            y[o] = fw_requant_shift(a0, p->mult[k0], p->shift[k0], p->out_offset, p->act_min, p->act_max);
        }
    }
}

static inline uint32_t fw_sxtab16(uint32_t acc, uint32_t x) {
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2" : "=r"(r) : "r"(acc), "r"(x));
    return r;
}
static inline uint32_t fw_sxtab16_ror8(uint32_t acc, uint32_t x) {
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(acc), "r"(x));
    return r;
}

/* One output pixel of AVERAGE_POOL_2D for channels % 4 == 0 and windows of at most 255 values: four channels
 * per step, summed as two int16 pairs with SXTAB16 (|sum| <= 255 * 128 < 2^15, so the halfwords never wrap:
 * the reference's int32 sums exactly), then the reference's rounding division. */
static void avgpool_px4(const fw_pool_params *p, const int8_t *base, int32_t ny, int32_t nx, int8_t *y) {
    const int32_t c_n = p->c, row = p->in_w * c_n, count = ny * nx, half = count / 2;
    for (int32_t c = 0; c < c_n; c += 4) {
        uint32_t s02 = 0, s13 = 0;
        for (int32_t fy = 0; fy < ny; ++fy) {
            const int8_t *q = base + fy * row + c, *qend = q + nx * c_n;
            for (; q < qend; q += c_n) {
                const uint32_t v = fw_load32(q);
                s02 = fw_sxtab16(s02, v);
                s13 = fw_sxtab16_ror8(s13, v);
            }
        }
        const int32_t acc[4] = {(int16_t)s02, (int16_t)s13, (int32_t)s02 >> 16, (int32_t)s13 >> 16};
        for (int32_t k = 0; k < 4; ++k) {
            const int32_t a = acc[k] > 0 ? (acc[k] + half) / count : (acc[k] - half) / count;
            y[c + k] = fw_clamp8(a, p->act_min, p->act_max);
        }
    }
}
