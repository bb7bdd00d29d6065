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
    memcpy(fw_model_input(), data, n_bytes < FW_INPUT_BYTES ? n_bytes : FW_INPUT_BYTES);
}

void th_infer(void) { fw_model_invoke(); }

const int8_t *th_output(void) { return fw_model_output(); }

void th_results(void) {
    printf("m-results-[");
#if FW_OUTPUT_FLOAT /* 9 significant digits: each float32 reads back exactly */
    float y[FW_OUTPUT_SIZE];
    memcpy(y, fw_model_output(), sizeof y);
    for (int i = 0; i < FW_OUTPUT_SIZE; ++i) printf(i ? ",%.9g" : "%.9g", (double)y[i]);
#else
    const int8_t *y = fw_model_output();
    for (int i = 0; i < FW_OUTPUT_SIZE; ++i) printf(i ? ",%d" : "%d", y[i]);
#endif
    printf("]\n");
}

void th_timestamp(void) {
    printf("m-lap-%s-%llu\n", fw_platform_counter_unit, (unsigned long long)fw_platform_counter());
}
