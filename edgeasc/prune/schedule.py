"""The AGP schedule (Zhu & Gupta 2017, SPEC.md section 5): sparsity at step t, the pruning steps of a run and
their timing.
"""

from __future__ import annotations

from edgeasc.errors import ConfigError


def agp_sparsity(t: int, s_i: float, s_f: float, t0: int, n: int, dt: int) -> float:
    """AGP sparsity at step t (Zhu & Gupta 2017): `s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt))**3`.

    s_i before t0, s_f from t0 + n * dt on.
    """
    if n < 1 or dt < 1:
        raise ValueError(f"AGP needs n >= 1 and dt >= 1, got n={n}, dt={dt}")
    if t <= t0:
        return s_i
    if t >= t0 + n * dt:
        return s_f
    return s_f + (s_i - s_f) * (1.0 - (t - t0) / (n * dt)) ** 3


def agp_schedule(s_i: float, s_f: float, n: int) -> list[float]:
    """Sparsities at the n + 1 pruning points t0 + k * dt, k = 0..n (independent of t0 and dt)."""
    return [agp_sparsity(k, s_i, s_f, 0, n, 1) for k in range(n + 1)]


def agp_timing(total_steps: int, n: int, start_fraction: float, end_fraction: float) -> tuple[int, int]:
    """(t0, dt) placing n pruning steps in a run of `total_steps` optimiser steps.

    Raises:
        ConfigError: too few steps for n pruning steps.
    """
    t0 = int(start_fraction * total_steps)
    dt = int((end_fraction - start_fraction) * total_steps / n)
    if dt < 1 or t0 + n * dt > total_steps:
        raise ConfigError(f"prune.n_steps={n} needs at least {n} optimiser steps between start_fraction and "
                          f"end_fraction, but the stage has {total_steps} steps in all; train more epochs or "
                          f"lower prune.n_steps")
    return t0, dt
