/* Cortex-M build under QEMU (mps2-an386 / mps2-an500, -icount shift=0, semihosting): reads int8 inputs from
 * the host file fw_inputs.bin (FW_INPUT_BYTES each: int8, or float32 for a float-input model), prints each input's logits, the per-layer and total instruction counts of the
 * first inference (SysTick under -icount: QEMU advances virtual time by 2^shift ns per instruction, so
 * SysTick counts instructions; the ratio is calibrated on a loop of known length), and the arena size. */
#include <stdint.h>
#include <stdio.h>

#include "fw_systick.h"
#include "th_api.h"

const char *const fw_platform_counter_unit = "ticks"; /* fw_platform_counter: fw_systick.h */

static int8_t input[FW_INPUT_BYTES] __attribute__((aligned(4)));

int main(void) {
    fw_systick_start_calibrated();
    printf("fw-model %s arena_bytes=%d layers=%d macs=%u\n", FW_MODEL_NAME, FW_ARENA_BYTES, FW_NUM_LAYERS, FW_MACS);
    FILE *f = fopen("fw_inputs.bin", "rb");
    if (!f) {
        printf("fw-error cannot open fw_inputs.bin\n");
        return 2;
    }
    int k = 0;
    while (fread(input, 1, FW_INPUT_BYTES, f) == FW_INPUT_BYTES) {
        th_load_tensor(input, FW_INPUT_BYTES);
        uint64_t t0 = fw_platform_counter();
        th_infer();
        uint64_t t1 = fw_platform_counter();
        printf("fw-logits %d ", k);
        th_results();
        printf("fw-total %d ticks=%llu\n", k, (unsigned long long)(t1 - t0));
        if (k == 0)
            for (int l = 0; l < FW_NUM_LAYERS; ++l)
                printf("fw-layer %d %s ticks=%llu macs=%lu\n", l, fw_layer_names[l],
                       (unsigned long long)(th_layer_counter[l + 1] - th_layer_counter[l]),
                       (unsigned long)fw_layer_macs[l]);
        ++k;
    }
    fclose(f);
    printf("fw-done inputs=%d\n", k);
    return 0;
}
