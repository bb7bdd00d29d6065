"""The recording devices b, c and s1-s6: a measured microphone response (edgeasc.data.ir_bank) plus a fixed EQ,
band limit, gain, noise floor and soft clipping per device (`DEVICE_CHAINS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from edgeasc.synth.presets import SAMPLE_RATE_HZ, SEGMENT_SAMPLES


@dataclass(frozen=True)
class DeviceChain:
    """A device's fixed signal chain after its microphone response (`edgeasc.data.ir_bank.DEVICE_IRS`).

    Attributes:
        highpass_hz / lowpass_hz: 2nd-order Butterworth magnitude band limit (0 = none).
        tilt_db_per_oct: EQ tilt around 1 kHz.
        gain_db: fixed gain.
        noise_dbfs: RMS of the device's own noise floor (coloured by `noise_slope_db_oct`).
        clip_level: soft clipping `c * tanh(x / c)` (1.0 = only the 16-bit limit).
    """

    highpass_hz: float = 0.0
    lowpass_hz: float = 0.0
    tilt_db_per_oct: float = 0.0
    gain_db: float = 0.0
    noise_dbfs: float = -88.0
    noise_slope_db_oct: float = 0.0
    clip_level: float = 1.0


DEVICE_CHAINS: dict[str, DeviceChain] = {
    # a: high-quality binaural recorder: flat, quiet, no clipping, no microphone response applied.
    "a": DeviceChain(),
    # Phones: low cut, limited top end, audible noise floor and clipping.
    "b": DeviceChain(150, 12_000, 0.5, 2.0, -64, -1.0, 0.5),
    "c": DeviceChain(120, 10_000, -0.3, -2.0, -66, -2.0, 0.6),
    # Simulated devices seen in training.
    "s1": DeviceChain(50, 15_000, 0.3, 0.0, -72, 0.0, 0.9),
    "s2": DeviceChain(90, 9_000, -0.5, 1.0, -68, -1.5, 0.7),
    "s3": DeviceChain(70, 13_000, -0.8, -2.0, -70, -3.0, 0.8),
    # Unseen simulated devices (test fold only).
    "s4": DeviceChain(100, 10_000, 0.5, 2.0, -66, 0.0, 0.6),
    "s5": DeviceChain(80, 11_000, -0.5, -2.0, -67, -3.0, 0.7),
    "s6": DeviceChain(150, 8_000, 0.8, 3.0, -64, -1.0, 0.5),
}
"""Hand-set and independent of the dataset seed, so a device sounds the same at every scale and seed."""


@lru_cache(maxsize=32)
def _device_response(device: str, strength: float) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(transfer function over the segment's rfft bins, noise colour, noise rms, clip level) of a device."""
    from edgeasc.data.ir_bank import device_ir

    chain = DEVICE_CHAINS[device]
    freqs = np.fft.rfftfreq(SEGMENT_SAMPLES, 1 / SAMPLE_RATE_HZ)
    f = np.maximum(freqs, 1.0)
    eq_db = chain.tilt_db_per_oct * np.log2(f / 1000.0)
    if chain.highpass_hz:
        eq_db += -10 * np.log10(1 + (chain.highpass_hz / f) ** 4)
    if chain.lowpass_hz:
        eq_db += -10 * np.log10(1 + (f / chain.lowpass_hz) ** 4)
    if device == "a" or strength == 0:  # the response's phase (its time spread) goes with its magnitude
        phase = np.ones_like(freqs, dtype=np.complex128)
        mic_db = np.zeros_like(freqs)
    else:
        spectrum = np.fft.rfft(device_ir(device, SAMPLE_RATE_HZ), SEGMENT_SAMPLES)
        magnitude = np.maximum(np.abs(spectrum), 1e-6)
        phase = spectrum / magnitude
        mic_db = 20 * np.log10(magnitude)
        # Reference the response to its median level over 200 Hz - 4 kHz, so the chain's gain is explicit.
        mic_db -= np.median(mic_db[(freqs >= 200) & (freqs <= 4000)])
    total_db = strength * (mic_db + eq_db + chain.gain_db)
    response = (phase * 10 ** (total_db / 20)).astype(np.complex64)
    noise_colour = (10 ** (chain.noise_slope_db_oct * np.log2(f / 1000.0) / 20)).astype(np.float32)
    noise_colour[0] = 0.0
    noise_dbfs = DEVICE_CHAINS["a"].noise_dbfs + strength * (chain.noise_dbfs - DEVICE_CHAINS["a"].noise_dbfs)
    clip_level = chain.clip_level**strength
    return response, noise_colour, 10 ** (noise_dbfs / 20), clip_level
