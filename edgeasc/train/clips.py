"""Which clips a run trains on: batches per epoch (the last partial batch dropped, as DistributedSampler
would split it), a held-out share of whole recording locations, and the clips of chosen devices.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeasc.errors import DataError


def batches_per_epoch(n: int, batch: int, world: int = 1) -> int:
    """Optimiser steps per epoch over `n` clips: ceil(n / batch), the official baseline's count (a PyTorch
    DataLoader keeps the last, partial batch). The partial batch is dropped only when it would give a rank
    fewer than 2 clips, which BatchNorm's batch statistics cannot take; at least one step."""
    full, rest = divmod(n, batch)
    return max(1, full + (rest >= 2 * world))


def split_holdout(clips: list, fraction: float, seed: int) -> tuple[list, list]:
    """(kept, held out), holding out whole recording locations (`identifier`), as the official TAU22 split
    keeps locations apart: 1-s clips of one location share their sound, so a clip-level hold-out would
    score a model on near-copies of its training clips. A class recorded at one location only holds out
    whole 10-s recordings of it instead (`recording_id`).

    Groups are taken round-robin over the classes (classes and each class's groups in a seeded order) until
    at least `round(fraction * n)` of the n clips are held out; a class's last group always stays in
    training. Both lists keep the input order; the same clips, seed and fraction give the same split.
    """
    rng = np.random.default_rng(seed)
    locations: dict[int, set[str]] = {}
    for c in clips:
        locations.setdefault(c.label, set()).add(c.identifier)

    def group(c: Any) -> str:
        return c.identifier if len(locations[c.label]) > 1 else c.recording_id

    counts: dict[int, dict[str, int]] = {}
    for c in clips:
        per_class = counts.setdefault(c.label, {})
        per_class[group(c)] = per_class.get(group(c), 0) + 1
    labels = sorted(counts)
    queues = {k: [sorted(counts[k])[i] for i in rng.permutation(len(counts[k]))] for k in labels}
    order = [labels[i] for i in rng.permutation(len(labels))]
    want, held = int(round(fraction * len(clips))), 0
    held_groups: set[tuple[int, str]] = set()
    while held < want and any(len(queues[k]) > 1 for k in order):
        for k in order:
            if held >= want:
                break
            if len(queues[k]) > 1:
                g = queues[k].pop(0)
                held_groups.add((k, g))
                held += counts[k][g]
    is_held = [(c.label, group(c)) in held_groups for c in clips]
    return [c for c, h in zip(clips, is_held) if not h], [c for c, h in zip(clips, is_held) if h]


def select_devices(clips: list, devices: tuple[str, ...], split: str) -> list:
    """The clips recorded by `devices`, in their order; every device must have clips in `split`.

    Raises:
        DataError: a device has no clip in the split.
    """
    present = {c.device for c in clips}
    missing = [d for d in devices if d not in present]
    if missing:
        raise DataError(f"data.devices: split {split!r} has no clips of device(s) {', '.join(missing)} "
                        f"(it has: {', '.join(sorted(present)) or 'none'})")
    wanted = set(devices)
    return [c for c in clips if c.device in wanted]
