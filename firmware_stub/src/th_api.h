/* A harness shaped like the MLPerf Tiny (EEMBC EnergyRunner) submitter API: load a tensor, infer, report
 * results, timestamps. The platform (host or Cortex-M) supplies the counter behind th_timestamp. */
#ifndef TH_API_H
#define TH_API_H
#include <stdint.h>

#include "model.h"

void th_load_tensor(const int8_t *data, uint32_t n_bytes); /* copies one input (FW_INPUT_BYTES) into the model */
void th_infer(void);                                       /* one inference; per-layer counters recorded */
void th_results(void);                                     /* prints "m-results-[v0,v1,...]" (int8 or float) */
void th_timestamp(void);                                   /* prints "m-lap-<unit>-<counter>" */
const int8_t *th_output(void);

/* platform hooks */
uint64_t fw_platform_counter(void);
extern const char *const fw_platform_counter_unit;

/* counter at the start of each layer, and at the end (index FW_NUM_LAYERS), of the last th_infer */
extern uint64_t th_layer_counter[FW_NUM_LAYERS + 1];
/* optional: called at each layer boundary after the counter is read (the host dumps the arena with it) */
extern void (*th_layer_callback)(int32_t k);

#endif
