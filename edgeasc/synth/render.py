"""Rendering one 10-s recording: the background, the scene's sound sources (vehicles, pass-bys, wind, babble
and voices, chimes, discrete events), the room, and the device chain applied to the clean scene.
"""

from __future__ import annotations

import math

import numpy as np

from edgeasc.synth.devices import DEVICE_CHAINS, _device_response
from edgeasc.synth.dsp import (
    _CONTROL_HZ,
    _CONTROL_N,
    _add_events,
    _burst,
    _complex_noise,
    _db,
    _event_times,
    _freqs,
    _irfft,
    _rfft,
    _shelf_db,
    _smooth_noise,
    _tone,
    _unit_rms,
    _upsample_control,
)
from edgeasc.synth.presets import (
    _N_BINS,
    DEFAULT_DIFFICULTY,
    SAMPLE_RATE_HZ,
    SEGMENT_SAMPLES,
    SEGMENT_SECONDS,
    Difficulty,
)


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
