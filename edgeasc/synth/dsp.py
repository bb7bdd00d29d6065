"""Signal helpers of the generator, all on the 10-s segment (spectra on the segment's rfft bins, 0.1 Hz apart):
coloured noise, smooth control curves, shelves, and event placement.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from edgeasc.synth.presets import _N_BINS, SAMPLE_RATE_HZ, SEGMENT_SAMPLES, SEGMENT_SECONDS


@lru_cache(maxsize=1)
def _freqs() -> np.ndarray:
    f = np.fft.rfftfreq(SEGMENT_SAMPLES, 1 / SAMPLE_RATE_HZ).astype(np.float32)
    f[0] = 0.1
    return f


def _irfft(spectrum: np.ndarray) -> np.ndarray:
    from scipy import fft

    return fft.irfft(spectrum, n=SEGMENT_SAMPLES, workers=1)


def _rfft(x: np.ndarray) -> np.ndarray:
    from scipy import fft

    return fft.rfft(x, workers=1)


def _complex_noise(rng: np.random.Generator) -> np.ndarray:
    """Spectrum of white noise drawn directly in the frequency domain (saves a forward FFT).

    Real and imaginary parts are uniform with unit variance (E|Z|^2 = 2): five times cheaper to draw than
    Gaussian values, and the time signal is Gaussian anyway (each sample sums 220,501 bins).
    """
    spec = rng.random(2 * _N_BINS, dtype=np.float32)
    spec -= 0.5
    spec *= math.sqrt(12.0)
    spec = spec.view(np.complex64)
    spec[0] = 0
    return spec


def _unit_rms(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float32))))
    return x / rms if rms > 0 else x


def _db(level_db: float) -> float:
    return float(10 ** (level_db / 20))


_CONTROL_HZ = 100
_CONTROL_N = SEGMENT_SECONDS * _CONTROL_HZ + 1


def _upsample_control(env: np.ndarray) -> np.ndarray:
    """Linear interpolation of a 100-Hz control signal (SEGMENT_SECONDS * 100 + 1 points) to audio rate."""
    step = SAMPLE_RATE_HZ // _CONTROL_HZ
    w = (np.arange(step, dtype=np.float32) / step)[None, :]
    env = env.astype(np.float32)
    return (env[:-1, None] + (env[1:] - env[:-1])[:, None] * w).ravel()


def _smooth_noise(rng: np.random.Generator, n: int, cutoff_hz: float) -> np.ndarray:
    """Unit-variance low-pass Gaussian noise at the control rate."""
    spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.fft.rfftfreq(n, 1 / _CONTROL_HZ)
    spec *= np.exp(-0.5 * (f / max(cutoff_hz, 1e-3)) ** 2)
    spec[0] = 0
    x = np.fft.irfft(spec, n)
    return x / (x.std() + 1e-12)


def _shelf_db(f: np.ndarray, corner_hz: float, gain_db: float, low: bool) -> np.ndarray:
    """A first-order shelf in dB: `gain_db` below (low=True) or above the corner."""
    ratio = (corner_hz / f) ** 2 if low else (f / corner_hz) ** 2
    return gain_db * ratio / (1 + ratio)


def _add_events(buffer: np.ndarray, waves: list[np.ndarray], starts: np.ndarray) -> None:
    for wave, start in zip(waves, starts):
        start = int(start)
        stop = min(start + len(wave), len(buffer))
        if stop > start:
            buffer[start:stop] += wave[: stop - start]


def _event_times(rng: np.random.Generator, rate_per_s: float) -> np.ndarray:
    count = rng.poisson(rate_per_s * SEGMENT_SECONDS)
    return np.sort(rng.uniform(-0.3, SEGMENT_SECONDS, count))


def _burst(rng: np.random.Generator, n: int, tau_s: float, centre_hz: float, width_oct: float) -> np.ndarray:
    """A noise burst with exponential decay and a log-Gaussian band around `centre_hz`, unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE_HZ), 1.0)
    spec *= np.exp(-0.5 * (np.log2(f / centre_hz) / width_oct) ** 2)
    t = np.arange(n) / SAMPLE_RATE_HZ
    x = np.fft.irfft(spec, n) * np.exp(-t / tau_s) * np.minimum(1.0, t / 0.001)
    return _unit_rms(x[: max(int(3 * tau_s * SAMPLE_RATE_HZ), 32)]).astype(np.float32)


def _tone(freqs_hz: np.ndarray, partials: tuple[float, ...], weights: tuple[float, ...], phase0: float) -> np.ndarray:
    """Sum of partials of a (possibly gliding) fundamental given per sample, in Hz."""
    phase = 2 * np.pi * np.cumsum(freqs_hz) / SAMPLE_RATE_HZ + phase0
    return sum(w * np.sin(k * phase) for k, w in zip(partials, weights))
