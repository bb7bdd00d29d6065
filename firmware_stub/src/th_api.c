#include "th_api.h"

#include <stdio.h>
#include <string.h>

uint64_t th_layer_counter[FW_NUM_LAYERS + 1];

void (*th_layer_callback)(int32_t k);

void fw_layer_hook(int32_t k) {
    th_layer_counter[k] = fw_platform_counter();
    if (th_layer_callback) th_layer_callback(k);
}

void th_load_tensor(const int8_t *data, uint32_t n_bytes) {
    memcpy(fw_model_input(), data, n_bytes < FW_INPUT_SIZE ? n_bytes : FW_INPUT_SIZE);
}

void th_infer(void) { fw_model_invoke(); }

const int8_t *th_output(void) { return fw_model_output(); }

void th_results(void) {
    const int8_t *y = fw_model_output();
    printf("m-results-[");
    for (int i = 0; i < FW_OUTPUT_SIZE; ++i) printf(i ? ",%d" : "%d", y[i]);
    printf("]\n");
}

void th_timestamp(void) {
    printf("m-lap-%s-%llu\n", fw_platform_counter_unit, (unsigned long long)fw_platform_counter());
}
