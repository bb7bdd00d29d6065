/* Log-mel frontend in C, matching edgeasc/features.py (the DCASE baseline's torchaudio MelSpectrogram):
 * centred STFT with reflect padding, periodic Hann window (win_length, centred in n_fft), power spectrum,
 * HTK mel filterbank without normalisation (tables generated from edgeasc.features in frontend_data.c),
 * log(mel + log_offset), then the model's input normalisation u = (x - mean) / std (float32; mean 0 and
 * std 1 for a model on the raw log-mel) and TFLite input quantisation (round half away from zero, saturate). */
#ifndef FW_FRONTEND_H
#define FW_FRONTEND_H
#include <stdint.h>

/* wave: FW_CLIP_SAMPLES float samples at FW_SAMPLE_RATE_HZ; logmel: FW_N_MELS x FW_N_FRAMES, frames fastest
 * (the bytes of the model's (1, n_mels, frames, 1) input). */
void fw_logmel(const float *wave, float *logmel);
void fw_quantize(const float *x, int8_t *q, int32_t n, float mean, float std, float scale, int32_t zero_point);

#endif
