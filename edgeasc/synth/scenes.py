"""The ten scene classes as parameter prototypes: about forty parameters per class (`SCENE_PARAMS`), their
latent spread by difficulty, and the draw of one recording's parameters around its class prototype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgeasc.labels import SCENES
from edgeasc.synth.presets import DEFAULT_DIFFICULTY, Difficulty


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
