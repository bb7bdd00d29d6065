"""Bookkeeping of the multi-seed experiments (kd_gains.py, prune_gains.py): one model's results over seeds,
results of a benchmark done in parts (merged by row and seed, each run keeping the CPU it ran on), and the
provenance lines of a result table. Experiment code, not part of the edgeasc package.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeasc.labels import DEVICES


def summarise_seeds(by_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """One model's results over seeds (each with `macro` and `per_device` in %): seeds, mean, spread
    (max - min), per-device means over the devices every seed reports, and the per-seed results."""
    macros = np.array([r["macro"] for r in by_seed.values()])
    return {
        "seeds": sorted(by_seed),
        "macro_mean": float(macros.mean()),
        "macro_spread": float(macros.max() - macros.min()),
        "per_device_mean": {d: float(np.mean([r["per_device"][d] for r in by_seed.values()]))
                            for d in DEVICES if all(d in r["per_device"] for r in by_seed.values())},
        "runs": {str(s): r for s, r in by_seed.items()},
    }


def load_recorded_runs(paths: Sequence[str | Path], expect: dict[str, Any],
                       keep: Callable[[dict[str, Any], str, int], bool] | None = None) -> dict[str, dict[int, Any]]:
    """The per-seed results (`rows -> runs`, as `summarise_seeds` writes them) of earlier benchmark results, by
    row and seed, for a benchmark to reuse instead of training them again: a long experiment done in parts.

    `expect` holds the result fields that define the experiment (benchmark, scale, recipes, overrides...); a
    file that differs in any of them is refused, as is a missing or unreadable one, or two files with different
    figures for the same row and seed (SystemExit, one line). `keep(result, row, seed)` (an earlier result, one
    of its rows and seeds) drops what no longer fits (e.g. KD students of other teachers). Each result gets
    the `cpu_model` of the machine its file names, unless it has its own.
    """
    merged: dict[str, dict[int, Any]] = {}
    for path in paths:
        try:
            prev = json.loads(Path(path).read_text())
            rows = {row: {int(seed): r for seed, r in v["runs"].items()} for row, v in prev["rows"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise SystemExit(f"recorded results {path}: not a readable benchmark result ({type(e).__name__}: {e})")
        differs = {k: prev.get(k) for k, v in expect.items() if prev.get(k) != v}
        if differs:
            raise SystemExit(f"recorded results {path} are another experiment ({differs})")
        cpu = (prev.get("machine") or {}).get("cpu_model")
        for row, by_seed in rows.items():
            for seed, r in by_seed.items():
                if keep is not None and not keep(prev, row, seed):
                    continue
                r.setdefault("cpu_model", cpu)  # where it ran: the same seed trains another model on another CPU
                if seed in merged.get(row, {}) and merged[row][seed] != r:
                    raise SystemExit(f"recorded results {path}: {row} seed {seed} differs from an earlier file's")
                merged.setdefault(row, {})[seed] = r
    return merged


def distilled_same_ensemble(prev: dict[str, Any], teacher_seed: int | None, seed: int) -> bool:
    """Whether a recorded KD run of `seed` (in the earlier result `prev`) distilled the ensemble a run with
    `--teacher-seed teacher_seed` would: that of the teacher seed, or of the run's own seed when none is set."""
    then = prev.get("teacher_seed")
    return (seed if then is None else then) == (seed if teacher_seed is None else teacher_seed)


def cpu_models(runs: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    """The CPU models a benchmark's per-seed results (`cpu_model`, as `load_recorded_runs` sets it) come from:
    more than one means part of the differences between rows is the machine's, not the method's."""
    return sorted({r.get("cpu_model") or "unknown" for by_seed in runs.values() for r in by_seed.values()})


def machines_note(models: list[str]) -> str:
    """One line for a benchmark table whose rows come from several CPU models (`cpu_models`); empty if one."""
    if len(models) < 2:
        return ""
    return (f"rows from {len(models)} CPU models ({', '.join(models)}; per run in the result): the same seed "
            "trains a different model on another CPU")


def provenance_lines(result: dict[str, Any]) -> list[str]:
    """What a benchmark prints under its table about where its rows come from: several CPU models, and the
    rows taken from `--recorded` results."""
    note = machines_note(result["cpu_models"])
    lines = [note] if note else []
    if result["recorded_rows"]:
        lines.append(f"taken from {' '.join(result['recorded_from'])} (not trained again): "
                     + ", ".join(result["recorded_rows"]))
    return lines
