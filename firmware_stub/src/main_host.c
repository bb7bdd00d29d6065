/* Host build: run the generated model (and the C frontend) on files, for checks against TFLite Micro.
 *   fw_host info
 *   fw_host infer INPUTS.i8 OUTPUTS.i8        N x FW_INPUT_BYTES -> N x FW_OUTPUT_BYTES (int8 values, or
 *                                             float32 where the model's input or output is float)
 *   fw_host frontend WAVES.f32 LOGMEL.f32 QUANT.i8   N x FW_CLIP_SAMPLES float32 -> log-mel and int8 input
 *   fw_host run WAVES.f32 OUTPUTS.i8          frontend + model, th_results per clip
 *   fw_host dump INPUT.i8 ARENA.bin           one input; the whole arena at every layer boundary
 *                                             ((FW_NUM_LAYERS + 1) x FW_ARENA_BYTES), for per-layer checks */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fw_frontend.h"
#include "th_api.h"

const char *const fw_platform_counter_unit = "ns";
uint64_t fw_platform_counter(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *read_all(const char *path, long *size) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", path); exit(2); }
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(*size ? *size : 1);
    if (fread(buf, 1, *size, f) != (size_t)*size) { fprintf(stderr, "short read %s\n", path); exit(2); }
    fclose(f);
    return buf;
}

static FILE *dump_file;
static void dump_arena(int32_t k) { fwrite(fw_model_arena(), 1, FW_ARENA_BYTES, dump_file); }

static FILE *open_out(const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) { fprintf(stderr, "cannot write %s\n", path); exit(2); }
    return f;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "info")) {
        printf("model %s\narena_bytes %d\nlayers %d\nmacs %u\ninput %d\noutput %d\n", FW_MODEL_NAME, FW_ARENA_BYTES,
               FW_NUM_LAYERS, FW_MACS, FW_INPUT_SIZE, FW_OUTPUT_SIZE);
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "infer")) {
        long size;
        int8_t *in = read_all(argv[2], &size);
        if (size % FW_INPUT_BYTES) {
            fprintf(stderr, "input size %ld is not a multiple of %d\n", size, FW_INPUT_BYTES);
            return 2;
        }
        FILE *out = open_out(argv[3]);
        for (long k = 0; k < size / FW_INPUT_BYTES; ++k) {
            th_load_tensor(in + k * FW_INPUT_BYTES, FW_INPUT_BYTES);
            th_infer();
            fwrite(th_output(), 1, FW_OUTPUT_BYTES, out);
        }
        fclose(out);
        free(in);
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "dump")) {
        long size;
        int8_t *in = read_all(argv[2], &size);
        if (size < FW_INPUT_BYTES) { fprintf(stderr, "input has %ld bytes, need %d\n", size, FW_INPUT_BYTES); return 2; }
        dump_file = open_out(argv[3]);
        th_load_tensor(in, FW_INPUT_BYTES);
        th_layer_callback = dump_arena;
        th_infer();
        th_layer_callback = 0;
        fclose(dump_file);
        free(in);
        return 0;
    }
    if ((argc == 5 && !strcmp(argv[1], "frontend")) || (argc == 4 && !strcmp(argv[1], "run"))) {
        const int run = !strcmp(argv[1], "run");
        if (FW_INPUT_FLOAT || FW_OUTPUT_FLOAT) {
            fprintf(stderr, "the log-mel frontend feeds int8 models; this one has a float32 input or output\n");
            return 2;
        }
        long size;
        float *waves = read_all(argv[2], &size);
        const long clip_bytes = (long)sizeof(float) * FW_CLIP_SAMPLES;
        if (size % clip_bytes) {
            fprintf(stderr, "wave size %ld is not a multiple of %ld\n", size, clip_bytes);
            return 2;
        }
        static float logmel[FW_N_MELS * FW_N_FRAMES];
        static int8_t q[FW_N_MELS * FW_N_FRAMES];
        FILE *f_mel = run ? NULL : open_out(argv[3]);
        FILE *f_q = open_out(run ? argv[3] : argv[4]);
        for (long k = 0; k < size / clip_bytes; ++k) {
            fw_logmel(waves + k * FW_CLIP_SAMPLES, logmel);
            fw_quantize(logmel, q, FW_N_MELS * FW_N_FRAMES, FW_INPUT_MEAN, FW_INPUT_STD, FW_INPUT_SCALE, FW_INPUT_ZERO_POINT);
            if (run) {
                th_load_tensor(q, sizeof q);
                th_infer();
                th_results();
                fwrite(th_output(), 1, FW_OUTPUT_BYTES, f_q);
            } else {
                fwrite(logmel, sizeof(float), FW_N_MELS * FW_N_FRAMES, f_mel);
                fwrite(q, 1, sizeof q, f_q);
            }
        }
        if (f_mel) fclose(f_mel);
        fclose(f_q);
        free(waves);
        return 0;
    }
    fprintf(stderr, "usage: fw_host info | infer IN.i8 OUT.i8 | dump IN.i8 ARENA.bin | "
                    "frontend WAVES.f32 LOGMEL.f32 Q.i8 | run WAVES.f32 OUT.i8\n");
    return 2;
}
