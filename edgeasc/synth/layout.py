"""Planning a dataset in the TAU22 layout: cities and locations, segments, which devices record each segment,
the train/test folds and the nested training splits (split5 ... split100).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgeasc.labels import CITIES, DEVICE_GROUPS, SCENES
from edgeasc.synth.presets import (
    DEFAULT_DIFFICULTY,
    EXTRA_TRAIN_DEVICES,
    PIECES_PER_SEGMENT,
    SPLIT_PERCENTS,
    Difficulty,
    ScalePreset,
    _preset,
)
from edgeasc.synth.scenes import _latent_table


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
