"""Calibration data of the int8 export: a seeded, class-balanced subset of the training split and its log-mel
features (`(N, 1, n_mels, frames)`, float32).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def select_calibration_clips(clips: list[Any], n_clips: int, seed: int = 0) -> list[Any]:
    """A seeded, class-balanced subset: classes take turns (each in its own shuffled order) until `n_clips`
    are chosen or the split runs out. Returned in the split's file order.

    Raises:
        ValueError: `n_clips` < 1 or no clips.
    """
    if n_clips < 1:
        raise ValueError(f"calibration needs at least 1 clip, got {n_clips}")
    if not clips:
        raise ValueError("no clips to calibrate on")
    rng = np.random.default_rng(seed)
    labels = sorted({c.label for c in clips})
    queues = {k: list(rng.permutation([i for i, c in enumerate(clips) if c.label == k])) for k in labels}
    chosen: list[int] = []
    while len(chosen) < n_clips and any(queues.values()):
        for k in labels:
            if queues[k] and len(chosen) < n_clips:
                chosen.append(int(queues[k].pop(0)))
    return [clips[i] for i in sorted(chosen)]


def calibration_features(waves: np.ndarray, frontend: Any) -> np.ndarray:
    """Log-mel features `(N, 1, n_mels, frames)` of the calibration clips, computed on one thread.

    The log-mel's float rounding depends on the thread count (FFT and matmul split the work differently:
    up to 5e-7 between 1 and 2 threads), and every scale of the int8 model depends on these numbers; on one
    thread the same checkpoint exports to the same int8 file whatever the core count or OMP_NUM_THREADS.
    """
    import torch

    from edgeasc.deploy.runtime import feature_batches

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return np.concatenate([x for _, x in feature_batches(waves, frontend, 64)])
    finally:
        torch.set_num_threads(threads)
