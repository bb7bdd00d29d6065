/* CMSIS-NN int8 kernels on fixed operator shapes, timed like edgeasc's firmware (firmware_stub/src/main_cm.c):
 * QEMU mps2-an386 (Cortex-M4) with -icount shift=0, where SysTick counts instructions (one tick = 40 of them,
 * calibrated at start-up on a loop of known length; the counter is the firmware's own, fw_systick.h). Seeded
 * random int8 data; every case runs once to warm, then one call is timed. Set-up that TFLite Micro does in Prepare (buffer sizes, kernel sums) is done outside
 * the timed region. A plain-C reference (TFLite's double-rounding requantisation) checks every output.
 *
 * Output, one line per case:
 *   cmsis-case name=... kernel=... status=0 ticks=N work=N unit=macs|elements buffer_bytes=N out_n=N
 *              out_min=.. out_max=.. out_distinct=.. out_saturated=.. ref_mismatch=.. repeat_equal=1
 * Compiled with CMSIS-NN's Include/ and CMSIS-Core's include path on the command line (see run.py). */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "arm_nnfunctions.h"
#include "arm_nnsupportfunctions.h"

/* the firmware's own instruction counter and calibration (firmware_stub/src/fw_systick.h) */
#include "fw_systick.h"

/* ---- seeded data ---- */
static uint32_t rng_state;
static void rng_seed(uint32_t s) { rng_state = s ? s : 0x9E3779B9u; }
static uint32_t rng_u32(void) { /* xorshift32 */
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}
static int32_t rng_range(int32_t lo, int32_t hi) { return lo + (int32_t)(rng_u32() % (uint32_t)(hi - lo + 1)); }
static void fill_s8(int8_t *p, int32_t n, int32_t lo, int32_t hi) {
    for (int32_t i = 0; i < n; ++i) p[i] = (int8_t)rng_range(lo, hi);
}

/* Quantised multiplier/shift of a real scale (TFLite's QuantizeMultiplier), multiplier in [2^30, 2^31). */
static void quantize_scale(double scale, int32_t *mult, int32_t *shift) {
    int32_t s = 0;
    while (scale >= 1.0) { scale *= 0.5; ++s; }
    while (scale < 0.5) { scale *= 2.0; --s; }
    int64_t q = (int64_t)(scale * 2147483648.0 + 0.5);
    if (q == 2147483648LL) { q /= 2; ++s; }
    *mult = (int32_t)q;
    *shift = s;
}

/* Per-output-channel scales: an output std of about 40 LSB for an accumulator of `depth` products of
 * (input + offset) in [0, 255] and weights in [-127, 127] (std ~ sqrt(depth) * 147 * 73), times a seeded
 * per-channel factor in [0.7, 1.4): multipliers near 2^30..2^31, shifts around -8..-11. */
static void make_quant(int32_t n, int32_t depth, int32_t *mult, int32_t *shift) {
    double acc_std = 147.0 * 73.0;
    double d = (double)depth, r = 1.0; /* sqrt without libm: Newton */
    for (int i = 0; i < 40; ++i) r = 0.5 * (r + d / r);
    acc_std *= r;
    for (int32_t c = 0; c < n; ++c) {
        double f = 0.7 + 0.7 * (double)(rng_u32() % 1000u) / 1000.0;
        quantize_scale(40.0 / acc_std * f, &mult[c], &shift[c]);
    }
}
static void make_bias(int32_t *b, int32_t n, int32_t depth) {
    int32_t amp = 2000 * (depth < 64 ? depth : 64);
    for (int32_t i = 0; i < n; ++i) b[i] = rng_range(-amp, amp);
}

/* ---- reference (TFLite MultiplyByQuantizedMultiplier, double rounding) ---- */
static int32_t srdhm(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * b;
    int64_t nudge = ab >= 0 ? (1LL << 30) : (1 - (1LL << 30));
    return (int32_t)((ab + nudge) / (1LL << 31));
}
static int32_t rdbpot(int32_t x, int e) {
    int32_t mask = (int32_t)((1LL << e) - 1), rem = x & mask, thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (rem > thr ? 1 : 0);
}
static int32_t requant_ref(int32_t acc, int32_t mult, int32_t shift) {
    int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    return rdbpot(srdhm((int32_t)((uint32_t)acc << left), mult), right);
}
static int8_t clamp8(int32_t v, int32_t lo, int32_t hi) { return (int8_t)(v < lo ? lo : v > hi ? hi : v); }

/* ---- buffers ---- */
#define MAX_IN (66 * 19 * 32) /* the largest case: 66x19x32 > 17x72x32 */
#define MAX_W (640 * 128)
#define MAX_CH 128
static int8_t in_buf[MAX_IN] __attribute__((aligned(4)));
static int8_t w_buf[MAX_W] __attribute__((aligned(4)));
static int8_t out_buf[MAX_IN] __attribute__((aligned(4)));
static int8_t out_first[MAX_IN] __attribute__((aligned(4)));
static int8_t ref_buf[MAX_IN] __attribute__((aligned(4)));
static int32_t bias_buf[MAX_CH], mult_buf[MAX_CH], shift_buf[MAX_CH];
static int32_t scratch[4096] __attribute__((aligned(8))); /* ctx.buf for every kernel: 16 KiB */

static int g_failures;

/* Output statistics and the comparison with the reference; one line per case. */
static void report(const char *name, const char *kernel, int status, uint64_t ticks, uint32_t work,
                   const char *unit, int32_t buffer_bytes, uint32_t n) {
    int32_t mn = 127, mx = -128, sat = 0, mismatch = 0, maxdiff = 0, distinct = 0;
    uint8_t seen[256];
    memset(seen, 0, sizeof seen);
    for (uint32_t i = 0; i < n; ++i) {
        int32_t v = out_buf[i];
        if (v < mn) mn = v;
        if (v > mx) mx = v;
        if (v == -128 || v == 127) ++sat;
        if (!seen[v + 128]) { seen[v + 128] = 1; ++distinct; }
        int32_t d = v - ref_buf[i];
        if (d < 0) d = -d;
        if (d) ++mismatch;
        if (d > maxdiff) maxdiff = d;
    }
    int repeat_equal = memcmp(out_buf, out_first, n) == 0;
    if (status != 0 || mismatch || !repeat_equal || distinct < 2) ++g_failures;
    printf("cmsis-case name=%s kernel=%s status=%d ticks=%llu work=%lu unit=%s buffer_bytes=%ld out_n=%ld "
           "out_min=%ld out_max=%ld out_distinct=%ld out_saturated=%ld ref_mismatch=%ld ref_maxdiff=%ld "
           "repeat_equal=%d\n",
           name, kernel, status, (unsigned long long)ticks, (unsigned long)work, unit, (long)buffer_bytes, (long)n,
           (long)mn, (long)mx, (long)distinct, (long)sat, (long)mismatch, (long)maxdiff, repeat_equal);
}

/* Warm call, then one timed call; the outputs of both are kept (they must be equal). */
#define TIME_CALL(status_var, ticks_var, n_out, call)                                                          \
    do {                                                                                                       \
        memset(out_buf, 0, (size_t)(n_out));                                                                   \
        (void)(call);                                                                                          \
        memcpy(out_first, out_buf, (size_t)(n_out));                                                           \
        memset(out_buf, 0, (size_t)(n_out));                                                                   \
        uint64_t t0_ = fw_platform_counter();                                                                  \
        status_var = (int)(call);                                                                              \
        uint64_t t1_ = fw_platform_counter();                                                                  \
        ticks_var = t1_ - t0_;                                                                                 \
    } while (0)

/* ---- depthwise 3x3 ---- */
static void dw_ref(int32_t H, int32_t W, int32_t C, int32_t pad, int32_t in_off, int32_t out_off) {
    for (int32_t y = 0; y < H; ++y)
        for (int32_t x = 0; x < W; ++x)
            for (int32_t c = 0; c < C; ++c) {
                int32_t acc = bias_buf[c];
                for (int32_t ky = 0; ky < 3; ++ky)
                    for (int32_t kx = 0; kx < 3; ++kx) {
                        int32_t iy = y - pad + ky, ix = x - pad + kx;
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                        acc += (in_buf[(iy * W + ix) * C + c] + in_off) * w_buf[(ky * 3 + kx) * C + c];
                    }
                ref_buf[(y * W + x) * C + c] =
                    clamp8(requant_ref(acc, mult_buf[c], shift_buf[c]) + out_off, -128, 127);
            }
}

static void case_depthwise(void) {
    const int32_t H = 25, W = 5, C = 64;
    rng_seed(101);
    fill_s8(in_buf, H * W * C, -128, 127);
    fill_s8(w_buf, 9 * C, -127, 127);
    make_bias(bias_buf, C, 9);
    make_quant(C, 9, mult_buf, shift_buf);
    cmsis_nn_dims in_d = {1, H, W, C}, f_d = {1, 3, 3, C}, b_d = {1, 1, 1, C}, o_d = {1, H, W, C};
    cmsis_nn_dw_conv_params p = {128, -3, 1, {1, 1}, {1, 1}, {1, 1}, {-128, 127}};
    cmsis_nn_per_channel_quant_params q = {mult_buf, shift_buf};
    dw_ref(H, W, C, 1, p.input_offset, p.output_offset);
    const uint32_t macs = (uint32_t)(H * W * C * 9);

    /* The kernel arm_depthwise_conv_wrapper_s8 picks (same conditions as the wrapper, non-MVE build). */
    int32_t buf_size = arm_depthwise_conv_wrapper_s8_get_buffer_size(&p, &in_d, &f_d, &o_d);
    cmsis_nn_context ctx = {buf_size > 0 ? scratch : NULL, buf_size};
    int use_3x3 = (p.ch_mult == 1 && in_d.n == 1 && p.dilation.w == 1 && p.dilation.h == 1 && f_d.w == 3 &&
                   f_d.h == 3 && p.padding.h <= 1 && p.padding.w <= 1);
    int st;
    uint64_t t;
#if defined(ARM_MATH_MVEI)
    use_3x3 = 0;
#endif
    if (use_3x3) {
        TIME_CALL(st, t, H * W * C, arm_depthwise_conv_3x3_s8(&ctx, &p, &q, &in_d, in_buf, &f_d, w_buf, &b_d,
                                                              bias_buf, &o_d, out_buf));
        report("dwconv3x3_25x5x64", "arm_depthwise_conv_3x3_s8", st, t, macs, "macs", buf_size, H * W * C);
    } else {
        TIME_CALL(st, t, H * W * C, arm_depthwise_conv_s8_opt(&ctx, &p, &q, &in_d, in_buf, &f_d, w_buf, &b_d,
                                                              bias_buf, &o_d, out_buf));
        report("dwconv3x3_25x5x64", "arm_depthwise_conv_s8_opt", st, t, macs, "macs", buf_size, H * W * C);
    }
    /* the wrapper itself (what TFLite Micro calls) */
    TIME_CALL(st, t, H * W * C, arm_depthwise_conv_wrapper_s8(&ctx, &p, &q, &in_d, in_buf, &f_d, w_buf, &b_d,
                                                              bias_buf, &o_d, out_buf));
    report("dwconv3x3_25x5x64_wrapper", "arm_depthwise_conv_wrapper_s8", st, t, macs, "macs", buf_size, H * W * C);
    /* the generic optimised depthwise kernel on the same shape, for reference (what the wrapper picks for
     * other filter sizes); its buffer is im2col in int16 */
    int32_t opt_size = arm_depthwise_conv_s8_opt_get_buffer_size(&in_d, &f_d);
    cmsis_nn_context ctx_opt = {scratch, opt_size};
    TIME_CALL(st, t, H * W * C, arm_depthwise_conv_s8_opt(&ctx_opt, &p, &q, &in_d, in_buf, &f_d, w_buf, &b_d,
                                                          bias_buf, &o_d, out_buf));
    report("dwconv3x3_25x5x64_opt", "arm_depthwise_conv_s8_opt", st, t, macs, "macs", opt_size, H * W * C);
}

/* ---- 1x1 conv ---- */
static void case_conv1x1(void) {
    const int32_t H = 25, W = 5, CI = 64, CO = 64;
    rng_seed(202);
    fill_s8(in_buf, H * W * CI, -128, 127);
    fill_s8(w_buf, CO * CI, -127, 127);
    make_bias(bias_buf, CO, CI);
    make_quant(CO, CI, mult_buf, shift_buf);
    cmsis_nn_dims in_d = {1, H, W, CI}, f_d = {CO, 1, 1, CI}, b_d = {1, 1, 1, CO}, o_d = {1, H, W, CO};
    cmsis_nn_conv_params p = {128, -3, {1, 1}, {0, 0}, {1, 1}, {-128, 127}};
    cmsis_nn_per_channel_quant_params q = {mult_buf, shift_buf};
    for (int32_t i = 0; i < H * W; ++i)
        for (int32_t o = 0; o < CO; ++o) {
            int32_t acc = bias_buf[o];
            for (int32_t c = 0; c < CI; ++c) acc += (in_buf[i * CI + c] + p.input_offset) * w_buf[o * CI + c];
            ref_buf[i * CO + o] = clamp8(requant_ref(acc, mult_buf[o], shift_buf[o]) + p.output_offset, -128, 127);
        }
    int32_t buf_size = arm_convolve_1x1_s8_fast_get_buffer_size(&in_d);
    cmsis_nn_context ctx = {buf_size > 0 ? scratch : NULL, buf_size};
    int st;
    uint64_t t;
    TIME_CALL(st, t, H * W * CO, arm_convolve_1x1_s8_fast(&ctx, &p, &q, &in_d, in_buf, &f_d, w_buf, &b_d,
                                                          bias_buf, &o_d, out_buf));
    report("conv1x1_25x5x64x64", "arm_convolve_1x1_s8_fast", st, t, (uint32_t)(H * W * CI * CO), "macs",
           buf_size, H * W * CO);
}

/* ---- average pooling ---- */
static void avgpool_ref(int32_t H, int32_t W, int32_t C, int32_t KH, int32_t KW, int32_t SH, int32_t SW,
                        int32_t pad, int32_t OH, int32_t OW) {
    for (int32_t oy = 0; oy < OH; ++oy)
        for (int32_t ox = 0; ox < OW; ++ox)
            for (int32_t c = 0; c < C; ++c) {
                int32_t sum = 0, count = 0;
                for (int32_t ky = 0; ky < KH; ++ky)
                    for (int32_t kx = 0; kx < KW; ++kx) {
                        int32_t iy = oy * SH - pad + ky, ix = ox * SW - pad + kx;
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                        sum += in_buf[(iy * W + ix) * C + c];
                        ++count;
                    }
                int32_t avg = (sum > 0 ? sum + count / 2 : sum - count / 2) / count;
                ref_buf[(oy * OW + ox) * C + c] = clamp8(avg, -128, 127);
            }
}

static void case_avgpool(const char *name, int32_t H, int32_t W, int32_t C, int32_t KH, int32_t KW, int32_t SH,
                         int32_t SW, int32_t pad, uint32_t seed) {
    const int32_t OH = (H + 2 * pad - KH) / SH + 1, OW = (W + 2 * pad - KW) / SW + 1;
    rng_seed(seed);
    fill_s8(in_buf, H * W * C, -128, 127);
    cmsis_nn_dims in_d = {1, H, W, C}, f_d = {1, KH, KW, 1}, o_d = {1, OH, OW, C};
    cmsis_nn_pool_params p = {{SW, SH}, {pad, pad}, {-128, 127}};
    avgpool_ref(H, W, C, KH, KW, SH, SW, pad, OH, OW);
    int32_t buf_size = arm_avgpool_s8_get_buffer_size(OW, C);
    cmsis_nn_context ctx = {buf_size > 0 ? scratch : NULL, buf_size};
    int st;
    uint64_t t;
    TIME_CALL(st, t, OH * OW * C, arm_avgpool_s8(&ctx, &p, &in_d, in_buf, &f_d, &o_d, out_buf));
    /* elements: input elements read = output elements x window (the padded window for SAME, as in the brief) */
    report(name, "arm_avgpool_s8", st, t, (uint32_t)(OH * OW * C * KH * KW), "elements", buf_size, OH * OW * C);
}

/* ---- fully connected (per-tensor) ---- */
static void case_fc(const char *name, int32_t IN, int32_t OUT, uint32_t seed) {
    rng_seed(seed);
    fill_s8(in_buf, IN, -128, 127);
    fill_s8(w_buf, IN * OUT, -127, 127);
    make_bias(bias_buf, OUT, IN);
    int32_t mult, shift;
    make_quant(1, IN, &mult, &shift);
    cmsis_nn_dims in_d = {1, 1, 1, IN}, f_d = {IN, 1, 1, OUT}, b_d = {1, 1, 1, OUT}, o_d = {1, 1, 1, OUT};
    cmsis_nn_fc_params p = {128, 0, -3, {-128, 127}};
    cmsis_nn_per_tensor_quant_params q = {mult, shift};
    for (int32_t o = 0; o < OUT; ++o) {
        int32_t acc = bias_buf[o];
        for (int32_t c = 0; c < IN; ++c) acc += (in_buf[c] + p.input_offset) * (w_buf[o * IN + c] + p.filter_offset);
        ref_buf[o] = clamp8(requant_ref(acc, mult, shift) + p.output_offset, -128, 127);
    }
    /* Prepare (outside the timed region, like TFLite Micro): the kernel-sum buffer, when the build needs one
     * (MVE builds; 0 bytes on a DSP build, where the input offset is folded in inside the kernel). */
    int32_t buf_size = arm_fully_connected_s8_get_buffer_size(&f_d);
    cmsis_nn_context ctx = {NULL, 0};
    if (buf_size > 0) {
        arm_vector_sum_s8(scratch, IN, OUT, w_buf, p.input_offset, p.filter_offset, bias_buf);
        ctx.buf = scratch;
        ctx.size = buf_size;
    }
    int st;
    uint64_t t;
    TIME_CALL(st, t, OUT, arm_fully_connected_s8(&ctx, &p, &q, &in_d, in_buf, &f_d, w_buf, &b_d, bias_buf, &o_d,
                                                 out_buf));
    report(name, "arm_fully_connected_s8", st, t, (uint32_t)(IN * OUT), "macs", buf_size, OUT);
}

int main(void) {
    fw_systick_start_calibrated();
    uint64_t a = fw_platform_counter();
    uint64_t b = fw_platform_counter();
    printf("cmsis-empty-region ticks=%llu\n", (unsigned long long)(b - a));
#if defined(ARM_MATH_DSP)
    const int dsp = 1;
#else
    const int dsp = 0;
#endif
#if defined(ARM_MATH_MVEI)
    const int mvei = 1;
#else
    const int mvei = 0;
#endif
#if defined(CMSIS_NN_USE_SINGLE_ROUNDING)
    const int single_rounding = 1;
#else
    const int single_rounding = 0;
#endif
    printf("cmsis-config arm_math_dsp=%d arm_math_mvei=%d single_rounding=%d\n", dsp, mvei, single_rounding);

    case_depthwise();
    case_avgpool("avgpool_global_25x5x64", 25, 5, 64, 25, 5, 1, 1, 0, 303);
    case_fc("fc_64x12", 64, 12, 404);
    case_fc("fc_640x128", 640, 128, 505);
    case_fc("fc_128x128", 128, 128, 606);
    case_conv1x1();
    case_avgpool("avgpool3x3_same_17x72x32", 17, 72, 32, 3, 3, 1, 1, 1, 707);
    /* sscp_mobile_s1's shortcut pooling (export/s1): 66x19x32 in, 3x3, stride 1 x 2, VALID -> 64x9x32 */
    case_avgpool("avgpool3x3_s1x2_66x19x32", 66, 19, 32, 3, 3, 1, 2, 0, 808);
    printf("cmsis-done failures=%d\n", g_failures);
    return 0;
}
