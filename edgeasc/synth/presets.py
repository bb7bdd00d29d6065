"""How big and how hard a synthetic dataset is: the TAU22 constants (sample rate, 10-s segments of ten 1-s pieces,
the split percentages), `Difficulty` (the one place the task's hardness comes from) and the `SCALES` presets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeasc.labels import SCENES

GENERATOR_VERSION = "1.1"
"""Bumped whenever the same seed and scale would give different files."""

SAMPLE_RATE_HZ = 44_100
SEGMENT_SECONDS = 10
PIECES_PER_SEGMENT = 10
SEGMENT_SAMPLES = SAMPLE_RATE_HZ * SEGMENT_SECONDS
PIECE_SAMPLES = SEGMENT_SAMPLES // PIECES_PER_SEGMENT
SPLIT_PERCENTS: tuple[int, ...] = (5, 10, 25, 50, 100)
EXTRA_TRAIN_DEVICES: tuple[str, ...] = ("b", "c", "s1", "s2", "s3")


_N_BINS = SEGMENT_SAMPLES // 2 + 1


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


SCALES: dict[str, ScalePreset] = {
    "tiny": ScalePreset(3, 2, 1, 3, 1),
    "small": ScalePreset(100, 75, 9, 5, 3),
    "medium": ScalePreset(300, 225, 27, 5, 3),
}


def _preset(scale: str | ScalePreset) -> ScalePreset:
    if isinstance(scale, ScalePreset):
        return scale
    if scale not in SCALES:
        import difflib

        close = difflib.get_close_matches(str(scale), SCALES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown scale {scale!r}; choose one of {list(SCALES)}{hint}")
    return SCALES[scale]
