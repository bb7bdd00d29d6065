/* Self-test of the requantisation shortcuts against TFLite's reference formula (fw_mbqm + clamp): the
 * generic path, the rshift path (SMLAL/QADD on Cortex-M) and the small-accumulator path (SMMULR), on edge
 * cases and pseudo-random values.
 * Prints "selftest ok N" or the first mismatch; exit code 0 / 1. */
#include <stdint.h>
#include <stdio.h>

#include "fw_kernels.h"

static uint32_t rng = 12345u;
static uint32_t next(void) { rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5; return rng; }

static int check(int32_t acc, int32_t m, int32_t shift, int32_t zp, int32_t lo, int32_t hi) {
    const int32_t ref = fw_clamp8(fw_mbqm(acc, m, shift) + zp, lo, hi);
    const int32_t e = shift <= -1 ? -shift : 0, h = e ? 1 << (e - 1) : shift;
    int32_t got = fw_requant(acc, m, e, h, zp, lo, hi);
    int32_t got_full = (lo == -128 && hi == 127) ? fw_requant_full(acc, m, e, h, zp, lo, hi, FW_FULL) : ref;
    int32_t got_fast = (e && e <= FW_RSHIFT_MAX) ? fw_requant_full(acc, m, e, h, zp, lo, hi, FW_RSHIFT) : ref;
    int32_t got_both = (e && e <= FW_RSHIFT_MAX && lo == -128 && hi == 127)
                           ? fw_requant_full(acc, m, e, h, zp, lo, hi, FW_FULL | FW_RSHIFT)
                           : ref;
    const int small_ok = e && e <= FW_RSHIFT_MAX && acc > -(1 << 30) && acc < (1 << 30);
    int32_t got_small = small_ok ? fw_requant_full(acc, m, e, h, zp, lo, hi, FW_RSHIFT | FW_SMALL) : ref;
    if (small_ok && lo == -128 && hi == 127 && got_small == ref)
        got_small = fw_requant_full(acc, m, e, h, zp, lo, hi, FW_FULL | FW_RSHIFT | FW_SMALL);
    if (got != ref || got_full != ref || got_fast != ref || got_both != ref || got_small != ref) {
        printf("selftest MISMATCH acc=%ld m=%ld shift=%ld zp=%ld: ref %ld got %ld %ld %ld %ld %ld\n", (long)acc,
               (long)m, (long)shift, (long)zp, (long)ref, (long)got, (long)got_full, (long)got_fast, (long)got_both,
               (long)got_small);
        return 1;
    }
    return 0;
}

int main(void) {
    static const int32_t accs[] = {0, 1, -1, 2, -2, 127, -128, 1 << 20, -(1 << 20), INT32_MAX, INT32_MIN,
                                   INT32_MAX - 1, INT32_MIN + 1, 1073741824, -1073741824, 1073741823, -1073741823,
                                   12345678, -12345678};
    static const int32_t mults[] = {0, 1, 1 << 30, (1 << 30) + 1, INT32_MAX, 1518500250, 1431655765};
    long n = 0;
    int bad = 0;
    for (unsigned a = 0; a < sizeof accs / sizeof *accs; ++a)
        for (unsigned k = 0; k < sizeof mults / sizeof *mults; ++k)
            for (int32_t shift = -31; shift <= 8; ++shift) {
                bad |= check(accs[a], mults[k], shift, -128, -128, 127);
                bad |= check(accs[a], mults[k], shift, 5, -3, 100);
                n += 2;
            }
    for (long i = 0; i < 2000000 && !bad; ++i) {
        const int32_t acc = (int32_t)next() >> (next() % 24);
        const int32_t m = (int32_t)(next() >> 1) | (1 << 30);
        const int32_t shift = -(int32_t)(next() % 32) + (int32_t)(next() % 2);
        const int32_t zp = (int32_t)(next() % 256) - 128;
        bad |= check(acc, m, shift, zp, -128, 127);
        bad |= check(acc, m, shift, zp, zp > -128 ? zp : -128, 127);
        n += 2;
    }
    if (!bad) printf("selftest ok %ld\n", n);
    return bad;
}
