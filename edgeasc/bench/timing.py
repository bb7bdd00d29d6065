"""Inputs and timed invocations: random or dataset inputs for the model's input tensors, LiteRT and TFLite Micro
invocations timed alike, and the comparison of their outputs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeasc.bench.report import LatencyStats
from edgeasc.deploy.runtime import tflm_runtime
from edgeasc.errors import EdgeAscError


def random_inputs(details: Sequence[Mapping[str, Any]], n: int, seed: int) -> list[list[np.ndarray]]:
    """`n` seeded input sets, one array per model input: integers uniform over the dtype's range, floats
    standard normal."""
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(n):
        arrays = []
        for d in details:
            dtype, shape = np.dtype(d["dtype"]), tuple(int(s) for s in d["shape"])
            if np.issubdtype(dtype, np.integer):
                info = np.iinfo(dtype)
                arrays.append(rng.integers(info.min, int(info.max) + 1, shape, dtype=dtype))
            else:
                arrays.append(rng.standard_normal(shape).astype(dtype))
        sets.append(arrays)
    return sets


def dataset_inputs(
    path: Path, data_dir: str | os.PathLike, n: int, seed: int, split: str = "test"
) -> tuple[list[list[np.ndarray]], dict[str, Any]]:
    """`n` seeded, class-balanced clips of `split` as model inputs: log-mel with the model's frontend
    (its edgeasc metadata; the DCASE baseline frontend for a foreign model), normalised and quantised as
    the model states (`TFLiteModel.prepare`)."""
    from edgeasc.data.audio import load_clip
    from edgeasc.data.dataset import TAUDataset
    from edgeasc.deploy.calibration import select_calibration_clips
    from edgeasc.deploy.runtime import TFLiteModel, feature_batches
    from edgeasc.errors import DataError

    model = TFLiteModel(path)
    frontend, _, _ = model.frontend()
    ds = TAUDataset(data_dir)
    clips = ds.clips(split)
    if not clips:
        raise DataError(f"split {split!r} of {data_dir} is empty")
    chosen = select_calibration_clips(clips, n, seed=seed)
    waves = np.stack([load_clip(ds.root / c.filename, frontend.sample_rate_hz, frontend.clip_samples)
                      for c in chosen])
    feats = np.concatenate([x for _, x in feature_batches(waves, frontend, batch_size=64)])
    sets = [[xi[None]] for xi in model.prepare(feats)]
    return sets, {"kind": "dataset", "data_dir": str(data_dir), "split": split, "seed": seed, "n": len(sets),
                  "clips": [c.clip_id for c in chosen]}


def _time_invocations(set_inputs: Callable[[], None], invoke: Callable[[], None], runs: int, warmup: int
                      ) -> LatencyStats:
    for _ in range(warmup):
        set_inputs()
        invoke()
    samples = []
    for _ in range(runs):
        set_inputs()
        t0 = time.perf_counter_ns()
        invoke()
        samples.append(time.perf_counter_ns() - t0)
    return LatencyStats.from_ns(samples, warmup)


class _LiteRT:
    """A LiteRT interpreter (one thread) with positional input/output access."""

    def __init__(self, path: Path, reference_kernels: bool) -> None:
        from edgeasc.deploy.runtime import create_interpreter

        self.interp, _ = create_interpreter(path, reference_kernels=reference_kernels, num_threads=1)
        self.ins = [d["index"] for d in self.interp.get_input_details()]
        self.outs = [d["index"] for d in self.interp.get_output_details()]

    def set_inputs(self, arrays: Sequence[np.ndarray]) -> None:
        for idx, a in zip(self.ins, arrays):
            self.interp.set_tensor(idx, a)

    def invoke(self) -> None:
        self.interp.invoke()

    def outputs(self) -> list[np.ndarray]:
        return [self.interp.get_tensor(i).copy() for i in self.outs]


class _Micro:
    """A TFLite Micro interpreter with the same interface as `_LiteRT`."""

    def __init__(self, path: Path, arena_bytes: int, n_in: int, n_out: int) -> None:
        self.interp = tflm_runtime().Interpreter.from_file(str(path), arena_size=arena_bytes)
        self.n_in, self.n_out = n_in, n_out

    def set_inputs(self, arrays: Sequence[np.ndarray]) -> None:
        for i, a in enumerate(arrays):
            self.interp.set_input(a, i)

    def invoke(self) -> None:
        self.interp.invoke()

    def outputs(self) -> list[np.ndarray]:
        return [np.array(self.interp.get_output(i)) for i in range(self.n_out)]


def _run_all(runner: Any, input_sets: Sequence[Sequence[np.ndarray]]) -> list[list[np.ndarray]]:
    out = []
    for arrays in input_sets:
        runner.set_inputs(arrays)
        runner.invoke()
        out.append(runner.outputs())
    return out


def compare_outputs(a: Sequence[Sequence[np.ndarray]], b: Sequence[Sequence[np.ndarray]]) -> tuple[int, int, float]:
    """(inputs with any difference, differing values, max absolute difference) of two runs' outputs."""
    bad_inputs = bad_values = 0
    max_diff = 0.0
    for outs_a, outs_b in zip(a, b, strict=True):
        diff_here = 0
        for x, y in zip(outs_a, outs_b, strict=True):
            if x.shape != y.shape:
                raise EdgeAscError(f"output shapes differ between runtimes: {x.shape} vs {y.shape}")
            d = np.abs(x.astype(np.float64) - y.astype(np.float64))
            diff_here += int(np.count_nonzero(d))
            max_diff = max(max_diff, float(d.max()) if d.size else 0.0)
        bad_inputs += diff_here > 0
        bad_values += diff_here
    return bad_inputs, bad_values, max_diff
