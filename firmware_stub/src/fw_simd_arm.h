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

static void mm_2px_any(const fw_conv_params *p, int8_t *y0) {
    const int full = p->act_min == -128 && p->act_max == 127;
    if (full && p->rshift && p->small)
        mm_2px(p, y0, FW_FULL | FW_RSHIFT | FW_SMALL);
    else if (full && p->rshift)
        mm_2px(p, y0, FW_FULL | FW_RSHIFT);
    else
        mm_2px(p, y0, 0);
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
