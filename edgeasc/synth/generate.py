"""A procedural, seeded stand-in for TAU Urban Acoustic Scenes 2022 Mobile (DCASE 2025 Task 1 development set).

`generate_dataset` writes a folder in the exact TAU22 layout (`audio/`, `meta.csv`, `evaluation_setup/`,
`split_setup/`; see `docs/synthetic_data.md`), so every stage of edgeasc runs end to end without the real
data. The sounds are not meant to be realistic, only to pose the same kind of problem:

- Scenes are mixtures of shared ingredients (coloured background noise, hum, engine harmonics and motor
  whine, pass-by vehicles, wind, crowd babble and voices, footsteps, clicks, rail clacks, door beeps, brake
  squeals, bird chirps, announcement chimes, room reverberation, amplitude modulation). Each class has its
  own typical values of about forty parameters (`SCENE_PARAMS`), and the distributions overlap.
- Parameters are drawn per location and per 10-s recording (segment) around the class prototype, shifted by
  a fixed random offset per city; the ten 1-s pieces of a segment share them, as in real recordings.
- Devices: a is clean; b, c and s1-s6 are the same scene through a measured microphone response
  (`edgeasc.data.ir_bank.DEVICE_IRS`) plus a fixed EQ, band limit, gain, noise floor and soft clipping
  (`DEVICE_CHAINS`). s4-s6 appear only in the test fold.
- How hard the task is comes from one place, `Difficulty` (default `DEFAULT_DIFFICULTY`).

Everything is seeded: segment i is rendered from `SeedSequence(seed, spawn_key=(2, i))`, so the files do not
depend on the number of worker processes.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from edgeasc.artifacts import write_bytes_atomic, write_text_atomic
from edgeasc.errors import DataError
from edgeasc.labels import CITIES, DEVICE_GROUPS, DEVICES, SCENES

logger = logging.getLogger(__name__)

GENERATOR_VERSION = "1.1"
"""Bumped whenever the same seed and scale would give different files."""

SAMPLE_RATE_HZ = 44_100
SEGMENT_SECONDS = 10
PIECES_PER_SEGMENT = 10
SEGMENT_SAMPLES = SAMPLE_RATE_HZ * SEGMENT_SECONDS
PIECE_SAMPLES = SEGMENT_SAMPLES // PIECES_PER_SEGMENT
SPLIT_PERCENTS: tuple[int, ...] = (5, 10, 25, 50, 100)
EXTRA_TRAIN_DEVICES: tuple[str, ...] = ("b", "c", "s1", "s2", "s3")

FILENAME_RE = re.compile(
    r"^audio/(?P<scene>[a-z_]+)-(?P<city>[a-z]+)-(?P<location>\d+)-(?P<segment>\d+)"
    r"-(?P<sub>\d)-(?P<device>a|b|c|s\d+)\.wav$"
)
"""A file name as listed in the CSVs, e.g. `audio/airport-lisbon-1000-40000-0-a.wav`."""

_MARKER = ".edgeasc_synth"
_README_TAG = "edgeasc synthetic TAU22 stand-in"
_N_BINS = SEGMENT_SAMPLES // 2 + 1


# --------------------------------------------------------------------------------------------------
# Difficulty and scale
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Difficulty:
    """Every knob that makes the synthetic task easier or harder.

    Attributes:
        overlap: pulls each class prototype towards the mean over classes (0 = prototypes as written in
            `SCENE_PARAMS`, 1 = all classes identical).
        spread: multiplies every within-class standard deviation.
        location_share: fraction of the within-class variance drawn once per location (the rest is drawn
            per segment); a high share makes unseen locations harder.
        city_shift: standard deviation of each city's fixed offset vector, in within-class standard
            deviations.
        snr_offset_db: added to the level of every foreground ingredient relative to the background noise
            (negative = buried in noise, harder).
        snr_limits_db: foreground levels relative to the background are clipped to this range.
        event_jitter_db: level spread of single events (footsteps, chirps...) around their segment level.
        device_strength: scales every device colouring in dB (microphone response, EQ, band limit, gain),
            the noise floor above device a's and the soft clipping; 0 makes all devices equal to a.
        output_gain_db: recording gain applied to every device's output just before the 16-bit WAV is
            written: a pure level shift of the files (the task is unchanged; `log(mel + 1e-5)` moves by
            `output_gain_db * ln(10) / 10` until quiet bins reach the log floor). The default files have a
            log-mel mean near +0.5; real TAU22 recordings sit near -6, which `REAL_LEVEL_GAIN_DB` matches
            (docs/synthetic_data.md, "Recording level").
    """

    overlap: float = 0.05
    spread: float = 0.3
    location_share: float = 0.6
    city_shift: float = 0.3
    snr_offset_db: float = 0.0
    snr_limits_db: tuple[float, float] = (-45.0, 15.0)
    event_jitter_db: float = 4.0
    device_strength: float = 1.0
    output_gain_db: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.overlap <= 1.0:
            raise ValueError(f"overlap must be in [0, 1], got {self.overlap}")
        if not 0.0 <= self.location_share <= 1.0:
            raise ValueError(f"location_share must be in [0, 1], got {self.location_share}")
        for name in ("spread", "city_shift", "event_jitter_db", "device_strength"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not -60.0 <= self.output_gain_db <= 0.0:
            raise ValueError(f"output_gain_db must be in [-60, 0] (a gain above 0 dB would clip), got {self.output_gain_db}")
        low, high = self.snr_limits_db
        if not low < high:
            raise ValueError(f"snr_limits_db must be (low, high) with low < high, got {self.snr_limits_db}")


DEFAULT_DIFFICULTY = Difficulty()

REAL_LEVEL_GAIN_DB = -28.0
"""`Difficulty.output_gain_db` that puts the synthetic log-mel mean where real TAU22 recordings have it:
-5.9 against about -6 (measured on `small`, split25; docs/synthetic_data.md, "Recording level")."""


@dataclass(frozen=True)
class ScalePreset:
    """Dataset size. Clip counts follow from these numbers (see `docs/synthetic_data.md`).

    Attributes:
        train_segments_per_scene: 10-s recordings per scene in fold1_train, each on device a.
        extra_train_segments_per_device: recordings (over all scenes) that each of b, c, s1, s2, s3 also
            has in fold1_train; a recording carries at most one extra device.
        test_segments_per_scene: 10-s recordings per scene in the test fold; each is rendered on three
            devices (one real, one seen simulated, one unseen simulated), all nine in equal numbers.
        train_segments_per_location / test_segments_per_location: recordings per location.
    """

    train_segments_per_scene: int
    extra_train_segments_per_device: int
    test_segments_per_scene: int
    train_segments_per_location: int
    test_segments_per_location: int

    def __post_init__(self) -> None:
        per_scene = math.ceil(self.extra_train_segments_per_device * len(EXTRA_TRAIN_DEVICES) / len(SCENES))
        if per_scene > self.train_segments_per_scene:
            raise ValueError("too many extra-device recordings for the number of training recordings")
        if min(self.train_segments_per_scene, self.test_segments_per_scene) < 1:
            raise ValueError("every scene needs at least one training and one test recording")


DEMO_RECIPE_EPOCHS, DEMO_RECIPE_BATCH, DEMO_RECIPE_WARMUP = 16, 64, 100
"""recipes/demo_student.toml's epochs, batch size and warm-up steps (`DatasetSummary.train_hint`; a test reads
the recipe against them)."""

SCALES: dict[str, ScalePreset] = {
    "tiny": ScalePreset(3, 2, 1, 3, 1),
    "small": ScalePreset(100, 75, 9, 5, 3),
    "medium": ScalePreset(300, 225, 27, 5, 3),
}


# --------------------------------------------------------------------------------------------------
# Class prototypes
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SceneParam:
    """One synthesis parameter: its domain, bounds, within-class spread and per-class means.

    `log` parameters are drawn in log10 units: `sd` is in decades, means and bounds are natural values.
    Levels (`*_db`) are relative to the background noise; rates are events per second.
    """

    name: str
    log: bool
    low: float
    high: float
    sd: float
    means: tuple[float, ...]  # in SCENES order


# Columns:           airport bus  metro m_stat park  p_sq  mall  s_ped s_traf tram
_P = SceneParam
SCENE_PARAMS: tuple[SceneParam, ...] = (
    # Background noise colour: slope in dB/octave, low rumble shelf, high "air" shelf.
    _P("bg_slope_db_oct", False, -9, 1, 1.0, (-3.5, -5.2, -4.8, -4.0, -4.3, -4.0, -3.6, -4.0, -4.6, -5.0)),
    _P("rumble_db", False, -5, 25, 3.5, (6, 11, 13, 8, 3, 5, 5, 5, 9, 10)),
    _P("air_db", False, -20, 10, 3.0, (0, -4, -1, 0, -3, -4, 0, -4, -2, -5)),
    # Tonal lines: mains/HVAC hum.
    _P("hum_db", False, -50, 0, 6.0, (-14, -20, -22, -16, -38, -32, -12, -32, -30, -20)),
    _P("hum_f0_hz", True, 40, 400, 0.15, (100, 110, 100, 100, 100, 100, 120, 100, 100, 100)),
    # Engine harmonics and electric motor whine (on board, or idling nearby).
    _P("engine_db", False, -45, 10, 5.0, (-16, 0, -3, -11, -30, -17, -24, -17, -4, -4)),
    _P("engine_f0_hz", True, 20, 400, 0.12, (90, 45, 110, 100, 60, 55, 100, 55, 50, 80)),
    _P("engine_decay", False, 0.2, 3.0, 0.35, (1.5, 0.8, 1.3, 1.3, 1.2, 1.0, 1.5, 1.0, 0.9, 1.3)),
    _P("engine_width", True, 0.003, 0.3, 0.2, (0.02, 0.04, 0.02, 0.03, 0.04, 0.05, 0.02, 0.05, 0.06, 0.025)),
    _P("whine_db", False, -50, 5, 6.0, (-26, -22, -9, -18, -40, -35, -30, -35, -28, -11)),
    _P("whine_f_hz", True, 300, 6000, 0.12, (1500, 1200, 1600, 1600, 1500, 1500, 1500, 1500, 1300, 1100)),
    _P("vehicle_am_depth", False, 0.0, 0.9, 0.15, (0.1, 0.35, 0.3, 0.25, 0.1, 0.15, 0.1, 0.15, 0.35, 0.3)),
    _P("vehicle_am_rate_hz", True, 0.05, 4.0, 0.2, (0.2, 0.3, 0.25, 0.15, 0.2, 0.2, 0.2, 0.2, 0.4, 0.25)),
    # Vehicles passing by (tyre noise + engine, swelling and fading).
    _P("passby_rate", True, 0.003, 2.0, 0.3, (0.01, 0.08, 0.01, 0.02, 0.03, 0.1, 0.01, 0.12, 0.45, 0.08)),
    _P("passby_db", False, -30, 15, 4.0, (-10, 0, -5, -5, -4, 2, -10, 2, 6, 0)),
    # Wind rumble at the microphone (outdoors).
    _P("wind_db", False, -50, 10, 6.0, (-40, -35, -35, -30, -8, -12, -40, -15, -14, -35)),
    # Crowd babble (speech-shaped noise modulated by the syllables of many talkers) and near voices.
    _P("babble_talkers", True, 1, 80, 0.2, (20, 4, 5, 14, 3, 8, 25, 8, 2, 4)),
    _P("babble_db", False, -45, 10, 4.0, (0, -6, -8, -2, -10, -4, 2, -3, -12, -6)),
    _P("voice_db", False, -45, 10, 5.0, (-6, -2, -6, -6, -6, -6, -4, -4, -12, -3)),
    # Impulsive events.
    _P("footstep_rate", True, 0.01, 6.0, 0.25, (1.2, 0.1, 0.15, 1.8, 0.3, 0.8, 1.5, 1.5, 0.3, 0.1)),
    _P("footstep_db", False, -30, 15, 4.0, (-2, -10, -10, 0, -6, -4, -2, -2, -10, -10)),
    _P("footstep_brightness", False, 0.0, 1.0, 0.2, (0.6, 0.4, 0.45, 0.6, 0.25, 0.4, 0.7, 0.35, 0.3, 0.4)),
    _P("click_rate", True, 0.005, 5.0, 0.3, (0.5, 0.4, 0.4, 0.3, 0.05, 0.2, 0.6, 0.2, 0.1, 0.4)),
    _P("click_db", False, -30, 15, 4.0, (-4, -4, -4, -4, -6, -4, -3, -4, -6, -4)),
    _P("clack_rate", True, 0.01, 3.0, 0.2, (0.01, 0.05, 0.9, 0.05, 0.01, 0.01, 0.01, 0.01, 0.05, 0.6)),
    _P("clack_db", False, -30, 15, 4.0, (-6, -4, 0, -4, -8, -8, -8, -8, -4, 0)),
    _P("beep_rate", True, 0.001, 1.0, 0.3, (0.02, 0.04, 0.04, 0.03, 0.003, 0.005, 0.03, 0.01, 0.01, 0.05)),
    _P("beep_db", False, -30, 15, 4.0, (-2, -2, -2, -2, -4, -4, -2, -4, -4, -2)),
    _P("beep_f_hz", True, 500, 5000, 0.1, (2000, 2500, 2200, 2000, 2000, 2000, 3000, 2000, 2000, 1800)),
    _P("squeal_rate", True, 0.001, 0.5, 0.3, (0.003, 0.04, 0.05, 0.04, 0.003, 0.01, 0.003, 0.015, 0.05, 0.06)),
    _P("squeal_db", False, -30, 15, 4.0, (-4, -2, -2, -2, -6, -4, -6, -4, -2, -2)),
    _P("squeal_f_hz", True, 1000, 9000, 0.1, (4000, 3500, 5000, 4500, 4000, 3500, 4000, 3500, 3000, 4500)),
    _P("bird_rate", True, 0.001, 3.0, 0.3, (0.003, 0.003, 0.001, 0.002, 0.8, 0.25, 0.01, 0.12, 0.05, 0.005)),
    _P("bird_db", False, -30, 15, 4.0, (-6, -6, -6, -6, -2, -4, -6, -4, -6, -6)),
    _P("chime_rate", True, 0.001, 0.3, 0.3, (0.05, 0.01, 0.03, 0.05, 0.001, 0.003, 0.03, 0.002, 0.001, 0.02)),
    _P("chime_db", False, -30, 15, 4.0, (0, -2, -2, 0, -4, -4, -2, -4, -4, -2)),
    _P("chime_f0_hz", True, 300, 2000, 0.1, (700, 800, 900, 900, 700, 700, 600, 700, 700, 800)),
    # Room: reverberation time and reverberant-to-direct energy ratio.
    _P("rt60_s", True, 0.05, 4.0, 0.12, (1.6, 0.45, 0.6, 2.0, 0.12, 0.5, 1.3, 0.35, 0.3, 0.5)),
    _P("wet_db", False, -30, 6, 3.0, (0, -6, -4, 1, -18, -10, -2, -12, -14, -6)),
    # Recording level: where the reference (unit-RMS white noise) lands, in dB re full scale.
    _P("level_dbfs", False, -55, -20, 3.0, (-38, -36, -34, -37, -40, -38, -38, -38, -35, -36)),
)
del _P
PARAM_NAMES: tuple[str, ...] = tuple(p.name for p in SCENE_PARAMS)
_FOREGROUND_DB = tuple(
    p.name for p in SCENE_PARAMS if p.name.endswith("_db") and p.name not in ("wet_db", "rumble_db", "air_db")
)


def _check_params() -> None:
    names = set()
    for p in SCENE_PARAMS:
        if len(p.means) != len(SCENES) or p.name in names:
            raise ValueError(f"SCENE_PARAMS entry {p.name!r} is malformed")
        names.add(p.name)
        if any(not p.low <= m <= p.high for m in p.means):
            raise ValueError(f"SCENE_PARAMS entry {p.name!r} has a mean outside [{p.low}, {p.high}]")


_check_params()


def _latent_table(difficulty: Difficulty) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Class means (n_scenes, n_params), within-class sds, and bounds, all in latent (log10 for log) units."""
    means = np.array([[math.log10(m) if p.log else m for m in p.means] for p in SCENE_PARAMS]).T
    means = (1 - difficulty.overlap) * means + difficulty.overlap * means.mean(axis=0, keepdims=True)
    sds = np.array([p.sd for p in SCENE_PARAMS]) * difficulty.spread
    low = np.array([math.log10(p.low) if p.log else p.low for p in SCENE_PARAMS])
    high = np.array([math.log10(p.high) if p.log else p.high for p in SCENE_PARAMS])
    return means, sds, low, high


def _to_params(latent: np.ndarray, difficulty: Difficulty) -> dict[str, float]:
    """Clip a latent vector to the bounds and map it to natural units."""
    _, _, low, high = _latent_table(difficulty)
    latent = np.clip(latent, low, high)
    params = {p.name: float(10**v if p.log else v) for p, v in zip(SCENE_PARAMS, latent)}
    low_db, high_db = difficulty.snr_limits_db
    for name in _FOREGROUND_DB:
        params[name] = float(np.clip(params[name] + difficulty.snr_offset_db, low_db, high_db))
    return params


def scene_prototype(scene: str, difficulty: Difficulty = DEFAULT_DIFFICULTY) -> dict[str, float]:
    """The class-mean parameters of `scene` (after `overlap`; no city, location or segment draw)."""
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r}; known: {list(SCENES)}")
    means, _, _, _ = _latent_table(difficulty)
    return _to_params(means[SCENES.index(scene)], difficulty)


# --------------------------------------------------------------------------------------------------
# Devices
# --------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------
# Signal helpers (all on the 10-s segment; spectra use the segment's rfft bins, 0.1 Hz apart)
# --------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------
# Scene rendering
# --------------------------------------------------------------------------------------------------
def _background(p: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """Spectrum of the stationary background: coloured noise with shelves, plus hum lines.

    The reference level of every ingredient is unit-RMS white noise: the background has that noise's
    density at 1 kHz (its slope and shelves are 0 dB there), so a rumbling background is louder overall
    instead of pushing the other ingredients down.
    """
    f = _freqs()
    shape_db = p["bg_slope_db_oct"] * np.log2(f / 1000.0)
    shape_db += _shelf_db(f, 150.0, p["rumble_db"], low=True)
    shape_db += _shelf_db(f, 5000.0, p["air_db"], low=False)
    shape = 10 ** (shape_db / 20) / np.sqrt(1 + (20.0 / f) ** 4)  # below 20 Hz: nothing
    # White noise spectrum Z (E|Z|^2 = 2) gives time-domain variance 2 / N: scale to unit variance.
    spec = _complex_noise(rng) * (shape * math.sqrt(SEGMENT_SAMPLES / 2)).astype(np.float32)
    # Hum: lines exactly on bins (0.1 Hz grid); a bin value A N / 2 gives a sinusoid of amplitude A.
    amps = np.array([1.0, 0.6, 0.35, 0.25, 0.15, 0.1])
    amps *= _db(p["hum_db"]) / np.sqrt(np.sum(amps**2) / 2)
    f0 = round(p["hum_f0_hz"] * SEGMENT_SECONDS) / SEGMENT_SECONDS
    for k, amp in enumerate(amps, start=1):
        b = int(round(k * f0 * SEGMENT_SECONDS))
        if b < _N_BINS - 1:
            spec[b] += amp * SEGMENT_SAMPLES / 2 * np.exp(1j * rng.uniform(0, 2 * np.pi))
    return spec


def _comb(f0: float, width: float, decay: float) -> np.ndarray:
    """Magnitude of harmonic lines at k*f0 with relative width `width`, amplitudes k**-decay."""
    f = _freqs()
    u = f / f0
    k = np.maximum(np.rint(u), 1.0)
    w = np.maximum(width * k, 0.3 / f0)  # at least 0.3 Hz wide
    lines = np.exp(-0.5 * ((u - k) / w) ** 2) + 0.03
    envelope = np.where(u < 1, u**4, u ** (-decay)) / np.sqrt(1 + (f / 6000.0) ** 4)
    return (lines * envelope).astype(np.float32)


def _vehicle(p: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """Engine harmonics and motor whine under slow amplitude modulation, at their combined level."""
    f = _freqs()
    engine = _comb(p["engine_f0_hz"] * rng.uniform(0.95, 1.05), p["engine_width"], p["engine_decay"])
    engine_power = float(np.sum(engine**2))
    wf = p["whine_f_hz"] * rng.uniform(0.95, 1.05)
    whine = np.exp(-0.5 * ((f - wf) / (0.02 * wf)) ** 2) + 0.3 * np.exp(-0.5 * ((f - 2 * wf) / (0.03 * wf)) ** 2)
    whine_power = float(np.sum(whine**2))
    shape = _db(p["engine_db"]) * engine / math.sqrt(engine_power)
    shape += _db(p["whine_db"]) * whine.astype(np.float32) / math.sqrt(whine_power)
    x = _irfft(_complex_noise(rng) * shape)
    total_db = 10 * math.log10(10 ** (p["engine_db"] / 10) + 10 ** (p["whine_db"] / 10))
    rate = p["vehicle_am_rate_hz"]
    t = np.arange(_CONTROL_N) / _CONTROL_HZ
    am = 1 + p["vehicle_am_depth"] * (
        0.7 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
        + 0.3 * np.sin(2 * np.pi * 2.3 * rate * t + rng.uniform(0, 2 * np.pi))
        + 0.3 * _smooth_noise(rng, _CONTROL_N, 0.5)
    )
    x = _unit_rms(x * _upsample_control(np.maximum(am, 0.05)))
    return x * _db(total_db)


def _passby(p: dict[str, float], rng: np.random.Generator) -> np.ndarray | None:
    """Vehicles passing: tyre noise and engine lines under a 1/distance swell per vehicle."""
    count = rng.poisson(p["passby_rate"] * SEGMENT_SECONDS)
    if count == 0:
        return None
    f = _freqs()
    tyre = np.exp(-0.5 * (np.log2(f / rng.uniform(600, 1400)) / 1.3) ** 2).astype(np.float32)
    engine = _comb(p["engine_f0_hz"] * rng.uniform(0.7, 1.4), 0.05, 1.0)
    shape = tyre / math.sqrt(float(np.sum(tyre**2))) + 0.7 * engine / math.sqrt(float(np.sum(engine**2)))
    x = _irfft(_complex_noise(rng) * shape)
    t = np.arange(_CONTROL_N) / _CONTROL_HZ
    env = np.full(_CONTROL_N, 1e-3)
    for _ in range(count):
        centre, width = rng.uniform(-1.5, SEGMENT_SECONDS + 1.5), rng.uniform(0.6, 2.5)
        env += _db(rng.normal(0, 4)) ** 2 / (1 + ((t - centre) / width) ** 2)  # power ~ 1 / distance^2
    env = np.sqrt(env)
    x = x * _upsample_control(env)
    # Level: RMS over the loudest second equals passby_db (a quiet segment is not rescaled upwards).
    peak_rms = float(np.sqrt(np.max(np.mean(x.reshape(SEGMENT_SECONDS, -1) ** 2, axis=1))))
    return x * (_db(p["passby_db"]) / peak_rms)


def _wind(p: dict[str, float], rng: np.random.Generator) -> np.ndarray | None:
    """Gusty low-passed noise at the microphone (None when negligible: saves an FFT indoors)."""
    if p["wind_db"] < -38:
        return None
    f = _freqs()
    shape = (1 / np.sqrt(1 + (f / rng.uniform(60, 200)) ** 4) / np.sqrt(1 + (10.0 / f) ** 4)).astype(np.float32)
    x = _irfft(_complex_noise(rng) * shape)
    gust = np.exp(0.8 * _smooth_noise(rng, _CONTROL_N, 0.4))
    return _unit_rms(x * _upsample_control(gust)) * _db(p["wind_db"])


def _talker_envelopes(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, _CONTROL_N) syllabic amplitude envelopes: talk spurts times 3-6 Hz syllables."""
    rate = rng.uniform(3.0, 6.0, (n, 1)) * (1 + 0.15 * rng.standard_normal((n, _CONTROL_N)).cumsum(1) / 30)
    phase = 2 * np.pi * np.cumsum(rate, axis=1) / _CONTROL_HZ + rng.uniform(0, 2 * np.pi, (n, 1))
    syllables = (0.5 - 0.5 * np.cos(phase)) ** 1.5
    # Talk spurts: a slow random process thresholded, on about 60% of the time.
    spurts = np.stack([_smooth_noise(rng, _CONTROL_N, 0.3) for _ in range(n)]) > -0.25
    spurts = spurts.astype(np.float64)
    kernel = np.hanning(9) / np.hanning(9).sum()
    spurts = np.apply_along_axis(lambda s: np.convolve(s, kernel, mode="same"), 1, spurts)
    return syllables * spurts


def _babble(p: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """Crowd babble (speech-shaped noise with the summed envelope of many talkers) plus up to 3 voices."""
    f = _freqs()
    speech_shape = (
        1 / np.sqrt(1 + (f / 600.0) ** 2) / np.sqrt(1 + (120.0 / f) ** 4) / np.sqrt(1 + (f / 7000.0) ** 4)
    ).astype(np.float32)
    talkers = max(1, int(round(p["babble_talkers"])))
    env = _talker_envelopes(rng, min(talkers, 40))
    power = np.sum(env**2, axis=0) * (talkers / env.shape[0])
    crowd_env = np.sqrt(power / max(float(power.mean()), 1e-12))
    crowd = _unit_rms(_irfft(_complex_noise(rng) * speech_shape) * _upsample_control(crowd_env))
    out = crowd * _db(p["babble_db"])

    # Near voices: glottal pulse trains (intonation contour, syllable gating) through a formant filter.
    n_voices = min(talkers, 3)
    pulses = np.zeros(SEGMENT_SAMPLES, dtype=np.float64)
    voice_env = _talker_envelopes(rng, n_voices)
    t = np.arange(_CONTROL_N) / _CONTROL_HZ
    for i in range(n_voices):
        f0 = rng.uniform(90, 240) * (1 + 0.12 * _smooth_noise(rng, _CONTROL_N, 0.7))
        cycles = np.concatenate([[0.0], np.cumsum(f0[1:] / _CONTROL_HZ)]) + rng.uniform()
        times = np.interp(np.arange(math.ceil(cycles[0]), int(cycles[-1])), cycles, t)
        amp = np.interp(times, t, voice_env[i]) * _db(rng.normal(0, 3))
        idx = np.minimum((times * SAMPLE_RATE_HZ).astype(np.int64), SEGMENT_SAMPLES - 1)
        pulses += np.bincount(idx, weights=amp, minlength=SEGMENT_SAMPLES)
    formants = sum(
        np.exp(-0.5 * ((f - fc) / bw) ** 2) * g
        for fc, bw, g in ((rng.uniform(400, 800), 150, 1.0), (rng.uniform(1000, 1800), 250, 0.5), (2600, 400, 0.25))
    )
    vocal = (speech_shape * (0.25 + formants)).astype(np.float32)
    voices = _irfft(_rfft(pulses.astype(np.float32)) * vocal)
    return out + _unit_rms(voices) * _db(p["voice_db"]) * 1.6  # voices are silent ~60% of the time


_CHIME_PATTERNS = ((0, -4, -7), (0, 4, 7), (0, -5), (7, 4, 0, -5))


def _events(p: dict[str, float], rng: np.random.Generator, jitter_db: float) -> np.ndarray:
    """All impulsive events of the segment in one time-domain buffer (levels relative to the background)."""
    sr = SAMPLE_RATE_HZ
    buf = np.zeros(SEGMENT_SAMPLES + sr, dtype=np.float32)  # one second of slack, cut at the end

    def level(name: str) -> float:
        return _db(p[name] + rng.normal(0, jitter_db))

    # Footsteps: a few decaying noise templates per segment (the floor and the shoes).
    times = _event_times(rng, p["footstep_rate"])
    if len(times):
        centre = 200 * 2 ** (4 * p["footstep_brightness"])
        templates = [
            _burst(rng, 4096, rng.uniform(0.008, 0.02), centre * rng.uniform(0.8, 1.25), 1.5) for _ in range(4)
        ]
        waves = [templates[rng.integers(4)] * level("footstep_db") for _ in times]
        _add_events(buf, waves, (times + 0.3) * sr)
    # Clicks: short, bright.
    times = _event_times(rng, p["click_rate"])
    if len(times):
        waves = [
            _burst(rng, 1024, rng.uniform(0.001, 0.004), rng.uniform(2000, 6000), 1.5) * level("click_db")
            for _ in times
        ]
        _add_events(buf, waves, (times + 0.3) * sr)
    # Rail clacks: double thumps (two axles of a bogie) at a roughly regular interval.
    rate = p["clack_rate"]
    if rng.uniform() < min(1.0, rate * SEGMENT_SECONDS):
        interval = 1 / rate
        times = np.arange(rng.uniform(0, interval), SEGMENT_SECONDS, interval) * rng.uniform(0.9, 1.1)
        gap = rng.uniform(0.08, 0.2)
        thump = _burst(rng, 8192, 0.03, rng.uniform(150, 400), 1.2)
        click = _burst(rng, 2048, 0.004, rng.uniform(1500, 3500), 1.0)
        clack = np.zeros(int(gap * sr) + len(thump), dtype=np.float32)
        for start in (0, int(gap * sr)):
            clack[start : start + len(thump)] += thump
            clack[start : start + len(click)] += 0.5 * click
        clack = _unit_rms(clack)
        _add_events(buf, [clack * level("clack_db") for _ in times], (times + 0.3) * sr)
    # Door beeps: a short pattern of square-ish tones.
    for start in _event_times(rng, p["beep_rate"]):
        n_beeps, on, off = rng.integers(2, 6), rng.uniform(0.1, 0.2), rng.uniform(0.08, 0.2)
        fb = p["beep_f_hz"] * rng.uniform(0.97, 1.03)
        beep = _tone(np.full(int(on * sr), fb), (1, 3, 5), (1, 0.3, 0.15), 0.0) * np.hanning(int(on * sr)) ** 0.2
        pattern = np.zeros(int(n_beeps * (on + off) * sr) + 1, dtype=np.float32)
        for i in range(n_beeps):
            s = int(i * (on + off) * sr)
            pattern[s : s + len(beep)] += beep
        _add_events(buf, [_unit_rms(pattern) * level("beep_db")], [(start + 0.3) * sr])
    # Brake squeals: a narrow gliding tone with vibrato, rising and fading.
    for start in _event_times(rng, p["squeal_rate"]):
        n = int(rng.uniform(0.5, 2.5) * sr)
        t = np.arange(n) / sr
        glide = rng.uniform(-0.04, 0.04) * t / t[-1]
        fs = p["squeal_f_hz"] * (1 + glide + 0.004 * np.sin(2 * np.pi * rng.uniform(4, 8) * t))
        wave = _tone(fs, (1, 2), (1, 0.3), rng.uniform(0, 6.28)) * np.sqrt(np.clip(np.sin(np.pi * t / t[-1]), 0, None))
        _add_events(buf, [_unit_rms(wave) * level("squeal_db")], [(start + 0.3) * sr])
    # Bird chirps: bursts of repeated FM sweeps, two "species" per segment.
    times = _event_times(rng, p["bird_rate"])
    if len(times):
        species = [(rng.uniform(2000, 5000), rng.uniform(2500, 7000), rng.uniform(0.03, 0.12)) for _ in range(2)]
        for start in times:
            f1, f2, dur = species[rng.integers(2)]
            n = int(dur * sr)
            t = np.arange(n) / sr
            syllable = _tone(f1 + (f2 - f1) * t / dur, (1, 2), (1, 0.2), 0.0) * np.hanning(n)
            reps, gap = rng.integers(2, 8), int(rng.uniform(0.04, 0.1) * sr)
            song = np.zeros(reps * (n + gap), dtype=np.float32)
            for i in range(reps):
                song[i * (n + gap) : i * (n + gap) + n] += syllable * _db(rng.normal(0, 2))
            _add_events(buf, [_unit_rms(song) * level("bird_db")], [(start + 0.3) * sr])
    # Announcement chimes: 2-4 decaying bell-like notes on a descending or rising pattern.
    for start in _event_times(rng, p["chime_rate"]):
        steps = _CHIME_PATTERNS[rng.integers(len(_CHIME_PATTERNS))]
        spacing, tau = rng.uniform(0.35, 0.6), rng.uniform(0.4, 0.8)
        n_note = int(3 * tau * sr)
        t = np.arange(n_note) / sr
        chime = np.zeros(int(spacing * sr) * len(steps) + n_note, dtype=np.float32)
        for i, semis in enumerate(steps):
            fn = p["chime_f0_hz"] * 2 ** (semis / 12)
            note = _tone(np.full(n_note, fn), (1, 2.01, 3.0), (1, 0.4, 0.15), 0.0) * np.exp(-t / tau)
            s = int(i * spacing * sr)
            chime[s : s + n_note] += note
        _add_events(buf, [_unit_rms(chime[: int(spacing * sr * len(steps))]) * level("chime_db")], [(start + 0.3) * sr])
    return buf[int(0.3 * sr) : int(0.3 * sr) + SEGMENT_SAMPLES]


def _room(p: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """Transfer function of the room: direct path plus an exponentially decaying noise tail (circular)."""
    rt60 = p["rt60_s"]
    n = min(int(1.2 * rt60 * SAMPLE_RATE_HZ), SEGMENT_SAMPLES // 2)
    delay = int(rng.uniform(0.003, 0.015) * SAMPLE_RATE_HZ)
    t = np.arange(n) / SAMPLE_RATE_HZ
    rir = np.zeros(delay + n, dtype=np.float32)
    rir[delay:] = rng.standard_normal(n).astype(np.float32) * np.exp(-6.91 * t / rt60).astype(np.float32)
    tail = _rfft(np.pad(rir, (0, SEGMENT_SAMPLES - len(rir))))
    # Air absorption: longer rooms are darker.
    tail *= (1 / np.sqrt(1 + (_freqs() / (9000 / (1 + rt60))) ** 2)).astype(np.float32)
    energy = 2 * float(np.sum(np.abs(tail) ** 2)) / SEGMENT_SAMPLES
    return 1 + tail * (_db(p["wet_db"]) / math.sqrt(energy))


def render_clean_segment(
    params: dict[str, float], rng: np.random.Generator, difficulty: Difficulty = DEFAULT_DIFFICULTY
) -> np.ndarray:
    """One 10-s scene as heard by an ideal microphone.

    Args:
        params: a value for every name in `PARAM_NAMES` (natural units).
        rng: the segment's generator.
        difficulty: only `event_jitter_db` is used here.

    Returns:
        float32 (SEGMENT_SAMPLES,); the reference level (unit-RMS white noise) sits at `level_dbfs`; peak
        at most 0.9.
    """
    dry = _vehicle(params, rng) + _babble(params, rng) + _events(params, rng, difficulty.event_jitter_db)
    passby = _passby(params, rng)
    if passby is not None:
        dry += passby
    spectrum = _rfft(dry.astype(np.float32)) * _room(params, rng) + _background(params, rng)
    x = _irfft(spectrum.astype(np.complex64))
    wind = _wind(params, rng)
    if wind is not None:
        x += wind
    x *= _db(params["level_dbfs"])
    peak = float(np.max(np.abs(x)))
    if peak > 0.9:  # the recordist lowers the gain
        x *= 0.9 / peak
    return x.astype(np.float32)


def render_device(
    clean: np.ndarray,
    device: str,
    rng: np.random.Generator,
    difficulty: Difficulty = DEFAULT_DIFFICULTY,
    clean_spectrum: np.ndarray | None = None,
) -> np.ndarray:
    """The clean segment as recorded by `device`: response, EQ, gain, noise floor, soft clipping.

    Returns:
        float32 (SEGMENT_SAMPLES,) in [-1, 1].
    """
    if device not in DEVICE_CHAINS:
        raise ValueError(f"unknown device {device!r}; known: {list(DEVICE_CHAINS)}")
    response, noise_colour, noise_rms, clip_level = _device_response(device, float(difficulty.device_strength))
    if device == "a":  # flat and white: no FFT needed
        noise = rng.random(SEGMENT_SAMPLES, dtype=np.float32) - np.float32(0.5)
        y = clean + noise * np.float32(noise_rms * math.sqrt(12.0))
    else:
        if clean_spectrum is None:
            clean_spectrum = _rfft(clean)
        # irfft of Z * c has RMS 2 sqrt(sum |c|^2) / N for E|Z|^2 = 2.
        noise_norm = 2 * math.sqrt(float(np.sum(noise_colour**2))) / SEGMENT_SAMPLES
        noise_spec = _complex_noise(rng) * noise_colour
        y = _irfft(clean_spectrum * response + noise_spec * np.float32(noise_rms / noise_norm))
    if clip_level < 1.0:
        y = clip_level * np.tanh(y / clip_level)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Planning: locations, segments, devices, folds and splits
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SegmentPlan:
    """One 10-s recording and the devices it is rendered on."""

    index: int
    scene: str
    city: str
    location_id: int
    segment_id: int
    fold: str  # "train" or "test"
    devices: tuple[str, ...]
    location_latent: tuple[float, ...]

    def filenames(self, device: str) -> list[str]:
        stem = f"{self.scene}-{self.city}-{self.location_id}-{self.segment_id}"
        return [f"audio/{stem}-{sub}-{device}.wav" for sub in range(PIECES_PER_SEGMENT)]


def _seed_rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


_TEST_LATIN = (DEVICE_GROUPS["real"], DEVICE_GROUPS["seen"], DEVICE_GROUPS["unseen"])


def _test_devices(g: int) -> tuple[str, ...]:
    """Devices of the g-th test recording: one per group, rotating as two orthogonal Latin squares, so
    every 3 consecutive recordings cover each device once and every 9 cover each (real, seen, unseen) pair."""
    real, seen, unseen = _TEST_LATIN
    return (real[g % 3], seen[(g + g // 3) % 3], unseen[(g + 2 * (g // 3)) % 3])


def plan_dataset(scale: str | ScalePreset, seed: int, difficulty: Difficulty = DEFAULT_DIFFICULTY) -> list[SegmentPlan]:
    """Every recording of the dataset, without rendering audio (deterministic in `seed`)."""
    preset = _preset(scale)
    rng = _seed_rng(seed, 0)
    means, sds, _, _ = _latent_table(difficulty)
    city_offsets = {c: difficulty.city_shift * sds * rng.standard_normal(len(sds)) for c in CITIES}
    loc_sd = sds * math.sqrt(difficulty.location_share)

    # Which training recordings also carry an extra device: device i's recordings go round the scenes.
    n_scenes = len(SCENES)
    extra_per_scene: dict[int, list[str]] = {s: [] for s in range(n_scenes)}
    for i, device in enumerate(EXTRA_TRAIN_DEVICES):
        for t in range(preset.extra_train_segments_per_device):
            extra_per_scene[(i * preset.extra_train_segments_per_device + t) % n_scenes].append(device)

    plans: list[SegmentPlan] = []
    location_id, segment_id = 1000, 40000
    g_test = 0
    for s, scene in enumerate(SCENES):
        cities = [str(c) for c in rng.permutation(CITIES)]
        extras: list[str | None] = [str(d) for d in rng.permutation(extra_per_scene[s])]
        extras += [None] * (preset.train_segments_per_scene - len(extras))
        extras = [extras[i] for i in rng.permutation(len(extras))]
        for fold, n_seg, per_loc in (
            ("train", preset.train_segments_per_scene, preset.train_segments_per_location),
            ("test", preset.test_segments_per_scene, preset.test_segments_per_location),
        ):
            for start in range(0, n_seg, per_loc):
                city = cities.pop(0)
                cities.append(city)  # round-robin over the scene's shuffled cities
                latent = means[s] + city_offsets[city] + loc_sd * rng.standard_normal(len(sds))
                for j in range(start, min(start + per_loc, n_seg)):
                    if fold == "train":
                        devices = ("a",) if extras[j] is None else ("a", extras[j])
                    else:
                        devices = _test_devices(g_test)
                        g_test += 1
                    plans.append(
                        SegmentPlan(
                            len(plans), scene, city, location_id, segment_id, fold, devices, tuple(map(float, latent))
                        )
                    )
                    segment_id += 1
                location_id += 1
    return plans


def _split_order(plans: list[SegmentPlan], rng: np.random.Generator) -> list[SegmentPlan]:
    """Training recordings of one scene in an order whose every prefix is stratified by device set.

    Systematic sampling: within each device-set group the recordings are shuffled and placed at evenly
    spaced keys with a random offset, then all are sorted by key.
    """
    groups: dict[tuple[str, ...], list[SegmentPlan]] = {}
    for plan in plans:
        groups.setdefault(plan.devices, []).append(plan)
    keyed = []
    for devices in sorted(groups):
        members = [groups[devices][i] for i in rng.permutation(len(groups[devices]))]
        offset = rng.uniform()
        keyed += [((i + offset) / len(members), rng.uniform(), m) for i, m in enumerate(members)]
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [m for _, _, m in keyed]


def make_splits(plans: list[SegmentPlan], seed: int) -> dict[int, list[SegmentPlan]]:
    """Nested training subsets {percent: recordings}: the same number of recordings per scene (at least one),
    stratified by device set, each recording wholly in or out; 100 is the whole training fold."""
    rng = _seed_rng(seed, 1)
    splits: dict[int, list[SegmentPlan]] = {pct: [] for pct in SPLIT_PERCENTS}
    for scene in SCENES:
        ordered = _split_order([p for p in plans if p.fold == "train" and p.scene == scene], rng)
        for pct in SPLIT_PERCENTS:
            n = len(ordered) if pct == 100 else max(1, math.floor(pct / 100 * len(ordered) + 0.5))
            splits[pct] += ordered[:n]
    return splits


# --------------------------------------------------------------------------------------------------
# Rendering jobs
# --------------------------------------------------------------------------------------------------
def sample_segment_params(
    plan: SegmentPlan, seed: int, difficulty: Difficulty = DEFAULT_DIFFICULTY
) -> tuple[dict[str, float], np.random.Generator]:
    """The recording's parameters (location draw + its own draw) and the generator that renders it."""
    rng = _seed_rng(seed, 2, plan.index)
    _, sds, _, _ = _latent_table(difficulty)
    seg_sd = sds * math.sqrt(1 - difficulty.location_share)
    latent = np.asarray(plan.location_latent) + seg_sd * rng.standard_normal(len(sds))
    return _to_params(latent, difficulty), rng


def _write_wav(path: Path, samples: np.ndarray) -> None:
    import soundfile as sf

    pcm = np.clip(np.rint(samples * 32767.0), -32768, 32767).astype(np.int16)
    buffer = io.BytesIO()
    sf.write(buffer, pcm, SAMPLE_RATE_HZ, format="WAV", subtype="PCM_16")
    write_bytes_atomic(path, buffer.getvalue())


def _render_job(job: tuple[SegmentPlan, int, str, Difficulty]) -> int:
    """Render one recording on all its devices and write its pieces. Returns the number of files written."""
    plan, seed, root, difficulty = job
    params, rng = sample_segment_params(plan, seed, difficulty)
    clean = render_clean_segment(params, rng, difficulty)
    clean_spectrum = _rfft(clean)
    written = 0
    for device in plan.devices:
        device_rng = _seed_rng(seed, 3, plan.index, DEVICES.index(device))
        y = render_device(clean, device, device_rng, difficulty, clean_spectrum)
        if difficulty.output_gain_db:
            y = y * np.float32(_db(difficulty.output_gain_db))
        for sub, name in enumerate(plan.filenames(device)):
            _write_wav(Path(root) / name, y[sub * PIECE_SAMPLES : (sub + 1) * PIECE_SAMPLES])
            written += 1
    return written


# --------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SynthSummary:
    """What `generate_dataset` wrote.

    Attributes:
        path: the dataset folder.
        clips: {fold: {device: count}} for folds "train" and "test".
        scene_clips: {fold: {scene: count}}.
        split_clips: {percent: clip count} of split_setup/split{percent}.csv.
        seconds: wall time of the generation.
    """

    path: Path
    scale: str
    seed: int
    generator_version: str
    clips: dict[str, dict[str, int]]
    scene_clips: dict[str, dict[str, int]]
    split_clips: dict[int, int]
    seconds: float = field(compare=False)

    @property
    def n_clips(self) -> int:
        return sum(sum(per_device.values()) for per_device in self.clips.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what `edgeasc synth --json` prints)."""
        return {"path": str(self.path), "scale": self.scale, "seed": self.seed,
                "generator_version": self.generator_version, "n_clips": self.n_clips, "clips": self.clips,
                "scene_clips": self.scene_clips, "split_clips": {str(k): v for k, v in self.split_clips.items()},
                "seconds": round(self.seconds, 2)}

    def train_hint(self, out: str = "runs/student") -> str:
        """An `edgeasc train` command that fits this dataset: the demo recipe (16 epochs, batch 64) on split25,
        its 100-step warm-up shortened to a quarter of the run when the split is too small for it."""
        epochs, batch, warmup = DEMO_RECIPE_EPOCHS, DEMO_RECIPE_BATCH, DEMO_RECIPE_WARMUP
        steps = epochs * math.ceil(self.split_clips.get(25, 0) / batch)
        cmd = f"edgeasc train --data {self.path} --out {out} --recipe recipes/demo_student.toml"
        if 0 < steps < 4 * warmup:
            cmd += f" --set optim.warmup_steps={max(1, steps // 4)}"
        return cmd

    def describe(self) -> str:
        """Clip counts per fold and device in aligned columns, then the splits and the folder."""
        width = 7
        lines = ["fold   " + "".join(f"{d:>{width}}" for d in DEVICES) + f"{'total':>{width + 1}}"]
        for fold, per_device in self.clips.items():
            counts = "".join(f"{per_device.get(d, 0):>{width}}" for d in DEVICES)
            lines.append(f"{fold:<7}{counts}{sum(per_device.values()):>{width + 1}}")
        lines.append("splits " + ", ".join(f"split{pct}: {n}" for pct, n in self.split_clips.items()))
        lines.append(
            f"wrote {self.n_clips} clips ({self.scale}, seed {self.seed}) to {self.path} in {self.seconds:.1f} s"
        )
        return "\n".join(lines)


def _preset(scale: str | ScalePreset) -> ScalePreset:
    if isinstance(scale, ScalePreset):
        return scale
    if scale not in SCALES:
        import difflib

        close = difflib.get_close_matches(str(scale), SCALES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown scale {scale!r}; choose one of {list(SCALES)}{hint}")
    return SCALES[scale]


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse to clobber a complete dataset (unless asked) or a folder that is not ours; clear our leftovers."""
    if (out_dir / "meta.csv").exists():
        if not overwrite:
            raise DataError(
                f"{out_dir} already holds a complete dataset (meta.csv found); regenerate it with --overwrite "
                "(edgeasc synth) or overwrite=True (generate_dataset), or keep it with --if-missing"
            )
        readme = out_dir / "README.md"
        if not (out_dir / _MARKER).exists() and not (readme.exists() and _README_TAG in readme.read_text("utf-8")):
            raise DataError(f"{out_dir} holds a dataset that edgeasc did not generate; refusing to overwrite it")
        (out_dir / "meta.csv").unlink()  # first, so an interrupted overwrite reads as incomplete
    elif out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / _MARKER).exists():
        raise DataError(f"{out_dir} is not empty and is not an unfinished synthetic dataset; choose another folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / _MARKER, f"{_README_TAG}, generator {GENERATOR_VERSION}\n")
    # An unfinished or replaced generation: remove only files this generator writes.
    audio = out_dir / "audio"
    if audio.is_dir():
        for path in audio.iterdir():
            if FILENAME_RE.match(f"audio/{path.name}") or path.name.endswith(".tmp"):
                path.unlink()
    for name in ("evaluation_setup", "split_setup"):
        folder = out_dir / name
        if folder.is_dir():
            for path in folder.glob("*.csv"):
                path.unlink()
    (out_dir / "README.md").unlink(missing_ok=True)


def _csv(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    return "\n".join("\t".join(row) for row in [header, *rows]) + "\n"


def generate_dataset(
    out_dir: str | os.PathLike,
    scale: str = "small",
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
    difficulty: Difficulty = DEFAULT_DIFFICULTY,
    workers: int | None = None,
) -> SynthSummary:
    """Write a synthetic dataset in the TAU Urban Acoustic Scenes 2022 Mobile development layout.

    Audio files are written atomically one by one, the CSVs after them and `meta.csv` last: a folder without
    `meta.csv` is an unfinished generation and is regenerated by the next call.

    Args:
        out_dir: dataset folder (created).
        scale: "tiny" (unit tests), "small" (demo) or "medium"; see `SCALES`.
        seed: same seed and scale give byte-identical files.
        progress: show a progress bar.
        overwrite: replace a complete synthetic dataset already in `out_dir`.
        difficulty: see `Difficulty`.
        workers: processes (default: up to 2; 1 for tiny). The files do not depend on it.

    Raises:
        DataError: `out_dir` holds a complete dataset and `overwrite` is False, or holds something else.
    """
    start = time.perf_counter()
    preset = _preset(scale)
    scale_name = scale if isinstance(scale, str) else "custom"
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, overwrite)
    (out_dir / "audio").mkdir(exist_ok=True)

    plans = plan_dataset(preset, seed, difficulty)
    splits = make_splits(plans, seed)
    jobs = [(plan, seed, str(out_dir), difficulty) for plan in plans]
    if workers is None:
        workers = 1 if len(jobs) < 100 else max(1, min(2, os.cpu_count() or 1))
    from edgeasc.progress import progress_bar

    n_total = sum(len(p.devices) * PIECES_PER_SEGMENT for p in plans)
    bar = progress_bar(total=n_total, enabled=progress, unit="clip", desc=f"synthesising {scale_name}")
    if workers == 1:
        for job in jobs:
            bar.update(_render_job(job))
    else:
        import multiprocessing

        # fork where available: no re-import of the caller's script, instant start; the workers use no
        # threads, locks or torch. Every job is seeded on its own, so scheduling order does not matter.
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with context.Pool(workers) as pool:
            for n in pool.imap_unordered(_render_job, jobs, chunksize=4):
                bar.update(n)
    bar.close()

    # CSVs: evaluation setup and splits first, meta.csv last.
    def rows(selected: list[SegmentPlan]) -> list[tuple[str, str]]:
        return sorted((name, p.scene) for p in selected for d in p.devices for name in p.filenames(d))

    train = [p for p in plans if p.fold == "train"]
    test = [p for p in plans if p.fold == "test"]
    setup = out_dir / "evaluation_setup"
    write_text_atomic(setup / "fold1_train.csv", _csv(("filename", "scene_label"), rows(train)))
    write_text_atomic(setup / "fold1_evaluate.csv", _csv(("filename", "scene_label"), rows(test)))
    write_text_atomic(setup / "fold1_test.csv", _csv(("filename",), [(name,) for name, _ in rows(test)]))
    split_clips = {}
    for pct, selected in splits.items():
        split_rows = rows(selected)
        split_clips[pct] = len(split_rows)
        write_text_atomic(out_dir / "split_setup" / f"split{pct}.csv", _csv(("filename", "scene_label"), split_rows))

    clips: dict[str, dict[str, int]] = {}
    scene_clips: dict[str, dict[str, int]] = {}
    for fold in ("train", "test"):
        in_fold = [p for p in plans if p.fold == fold]
        per_device = Counter(d for p in in_fold for d in p.devices)
        clips[fold] = {d: per_device[d] * PIECES_PER_SEGMENT for d in DEVICES if per_device[d]}
        per_scene = Counter(p.scene for p in in_fold for _ in p.devices)
        scene_clips[fold] = {s: per_scene[s] * PIECES_PER_SEGMENT for s in SCENES}
    summary = SynthSummary(
        out_dir, scale_name, seed, GENERATOR_VERSION, clips, scene_clips, split_clips, time.perf_counter() - start
    )
    write_text_atomic(out_dir / "README.md", _readme(summary, preset, difficulty))
    meta_rows = sorted(
        (name, p.scene, f"{p.city}-{p.location_id}", d) for p in plans for d in p.devices for name in p.filenames(d)
    )
    write_text_atomic(out_dir / "meta.csv", _csv(("filename", "scene_label", "identifier", "source_label"), meta_rows))
    logger.info("wrote %d clips to %s in %.1f s", summary.n_clips, out_dir, summary.seconds)
    return summary


def _readme(summary: SynthSummary, preset: ScalePreset, difficulty: Difficulty) -> str:
    lines = [
        f"# Synthetic acoustic scenes ({_README_TAG})",
        "",
        "SYNTHETIC DATA: procedurally generated by `edgeasc.synth`, not recorded. It mimics the layout of",
        "TAU Urban Acoustic Scenes 2022 Mobile (development set), not its sound. See docs/synthetic_data.md.",
        "",
        f"- generator version: {summary.generator_version} (edgeasc.synth)",
        f"- seed: {summary.seed}",
        f"- scale: {summary.scale} {asdict(preset)}",
        f"- difficulty: {asdict(difficulty)}",
        f"- clips: {summary.n_clips} (1 s, 44.1 kHz, 16-bit mono)",
        "",
        "| fold | " + " | ".join(DEVICES) + " | total |",
        "|---" * (len(DEVICES) + 2) + "|",
    ]
    for fold, per_device in summary.clips.items():
        counts = [str(per_device.get(d, 0)) for d in DEVICES]
        lines.append(f"| {fold} | " + " | ".join(counts) + f" | {sum(per_device.values())} |")
    lines += ["", "Splits (clips): " + ", ".join(f"split{k}: {v}" for k, v in summary.split_clips.items()), ""]
    return "\n".join(lines)
