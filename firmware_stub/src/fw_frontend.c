/* Log-mel frontend (see fw_frontend.h). The real FFT of n_fft points is one complex FFT of n_fft / 2
 * points on the even/odd samples plus the usual split step; arithmetic in float32 like torch.stft. */
#include "fw_frontend.h"

#include <math.h>
#include <string.h>

#include "model.h"

#define FFT_HALF (FW_N_FFT / 2)
#define N_BINS (FW_N_FFT / 2 + 1)

static float fft_re[FFT_HALF], fft_im[FFT_HALF];
static float tw_re[FFT_HALF], tw_im[FFT_HALF]; /* exp(-2 pi i k / n_fft), k < n_fft / 2 */
static float power[N_BINS];
static int fft_ready;

static void fft_init(void) {
    const double pi = 3.14159265358979323846;
    for (int k = 0; k < FFT_HALF; ++k) {
        tw_re[k] = (float)cos(2.0 * pi * k / FW_N_FFT);
        tw_im[k] = (float)-sin(2.0 * pi * k / FW_N_FFT);
    }
    fft_ready = 1;
}

/* In-place iterative radix-2 FFT of FFT_HALF points (twiddles of n_fft taken every 2nd). */
static void fft_half(float *re, float *im) {
    const int n = FFT_HALF;
    for (int i = 1, j = 0; i < n; ++i) {
        int bit = n >> 1;
        for (; j & bit; bit >>= 1) j ^= bit;
        j ^= bit;
        if (i < j) {
            float t = re[i]; re[i] = re[j]; re[j] = t;
            t = im[i]; im[i] = im[j]; im[j] = t;
        }
    }
    for (int len = 2; len <= n; len <<= 1) {
        const int step = (2 * n) / len; /* index step in the n_fft twiddle table */
        for (int i = 0; i < n; i += len) {
            for (int k = 0; k < len / 2; ++k) {
                const float wr = tw_re[k * step], wi = tw_im[k * step];
                const int a = i + k, b = i + k + len / 2;
                const float xr = re[b] * wr - im[b] * wi;
                const float xi = re[b] * wi + im[b] * wr;
                re[b] = re[a] - xr; im[b] = im[a] - xi;
                re[a] += xr; im[a] += xi;
            }
        }
    }
}

static inline int reflect(int i, int n) {
    if (i < 0) i = -i;
    if (i >= n) i = 2 * (n - 1) - i;
    return i;
}

void fw_logmel(const float *wave, float *logmel) {
    if (!fft_ready) fft_init();
    const int win_off = (FW_N_FFT - FW_WIN_LENGTH) / 2; /* torch.stft centres the window in n_fft */
    for (int t = 0; t < FW_N_FRAMES; ++t) {
        const int origin = t * FW_HOP_LENGTH - FW_N_FFT / 2; /* center=True: frame t is centred on t * hop */
        for (int j = 0; j < FFT_HALF; ++j) {
            float v[2];
            for (int e = 0; e < 2; ++e) {
                const int n = 2 * j + e, w = n - win_off;
                v[e] = (w >= 0 && w < FW_WIN_LENGTH) ? wave[reflect(origin + n, FW_CLIP_SAMPLES)] * fw_window[w] : 0.0f;
            }
            fft_re[j] = v[0];
            fft_im[j] = v[1];
        }
        fft_half(fft_re, fft_im);
        for (int k = 0; k <= FFT_HALF; ++k) {
            const int k1 = k % FFT_HALF, k2 = (FFT_HALF - k) % FFT_HALF;
            const float zr = fft_re[k1], zi = fft_im[k1], cr = fft_re[k2], ci = -fft_im[k2];
            const float er = 0.5f * (zr + cr), ei = 0.5f * (zi + ci);     /* even part */
            const float orr = 0.5f * (zi - ci), oi = -0.5f * (zr - cr);   /* odd part: (z - c) / 2i */
            float wr, wi;
            if (k < FFT_HALF) { wr = tw_re[k]; wi = tw_im[k]; } else { wr = -1.0f; wi = 0.0f; }
            const float xr = er + orr * wr - oi * wi, xi = ei + orr * wi + oi * wr;
            power[k] = xr * xr + xi * xi;
        }
        const float *w = fw_mel_weights;
        for (int m = 0; m < FW_N_MELS; ++m) {
            float acc = 0.0f;
            const float *p = power + fw_mel_start[m];
            for (int j = 0; j < fw_mel_length[m]; ++j) acc += p[j] * w[j];
            w += fw_mel_length[m];
            logmel[m * FW_N_FRAMES + t] = logf(acc + FW_LOG_OFFSET);
        }
    }
}

void fw_quantize(const float *x, int8_t *q, int32_t n, float mean, float std, float scale, int32_t zero_point) {
    for (int32_t i = 0; i < n; ++i) {
        const float u = (x[i] - mean) / std; /* float32, as edgeasc.runtime.InputNormalization.apply */
        const double v = (double)u / (double)scale;
        double r = floor(fabs(v) + 0.5);
        r = (v < 0 ? -r : r) + zero_point;
        q[i] = (int8_t)(r < -128 ? -128 : (r > 127 ? 127 : r));
    }
}
