"""On-device-style benchmark of a .tflite model: host latency on three interpreters, TFLite Micro arena
use, flash, bit-exactness of LiteRT's reference kernels against TFLite Micro, and a labelled
microcontroller latency *estimate*.

What each figure means (docs/bench.md has the long form):

- Latency: single thread, after warm-up, N timed `invoke()` calls each; p50/p90/p99/mean in ms. The input is
  written before every call and not timed (TFLite Micro's memory planner reuses the input buffer for
  intermediate tensors, so a second `invoke()` without a fresh input computes on garbage). Three
  interpreters: LiteRT with TFLite's reference kernels (`BUILTIN_REF`, the arithmetic of a microcontroller),
  LiteRT with its default kernels (XNNPACK where it applies; fast on a PC, says nothing about an MCU), and
  the TFLite Micro interpreter (`tflite-micro`, reference kernels).
- Memory: the smallest TFLite Micro arena that allocates and runs the model, found by bisection in a child
  process (too small an arena can crash TFLite Micro with SIGSEGV instead of raising), and the arena split
  that `print_allocations()` reports: the *head* holds the planned activations and is the portable RAM
  figure; the *tail* holds interpreter structures with 64-bit host pointers and overstates a 32-bit MCU.
  Beside it the audit's peak-activation estimate (`edgeasc.audit`), and flash: the .tflite bytes and the
  parameter bytes.
- Numerics: every input runs through LiteRT's reference kernels and TFLite Micro; integer outputs must be
  bit-identical (the premise that host evaluation predicts the device). Mismatches are counted.
- MCU estimate: MACs per operator class (audit, deployed rule) x cycles per MAC derived from public MLPerf
  Tiny anchors (`MCU_ANCHORS`, `MCU_PROFILES`), divided by the clock. An estimate with stated assumptions
  (`MCU_ASSUMPTIONS`), not a measurement.
- Firmware: a section reserved for figures of the firmware harness (issue 8) through
  `edgeasc.firmware.bench_figures` (`FIRMWARE_HOOK`); filled only with `firmware=True`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgeasc.bench.arena import ARENA_GRANULARITY_BYTES, MIN_ARENA_START_BYTES, find_min_arena, tflm_allocations
from edgeasc.bench.mcu import MCU_ANCHORS, MCU_ASSUMPTIONS, OP_CLASS_WEIGHTS, estimate_mcu_latency, macs_by_class
from edgeasc.bench.report import FIRMWARE_FIELDS, ArenaUsage, BenchReport, Numerics
from edgeasc.bench.timing import (
    _LiteRT,
    _Micro,
    _run_all,
    _time_invocations,
    compare_outputs,
    dataset_inputs,
    random_inputs,
)
from edgeasc.errors import ConfigError, DomainError

log = logging.getLogger(__name__)


FIRMWARE_HOOK = "edgeasc.firmware:bench_figures"
"""`bench_figures(model_path: Path) -> dict` in edgeasc/firmware/generate.py supplies the firmware section."""


def firmware_section(model_path: Path, requested: bool) -> dict[str, Any]:
    """The report's `firmware` section: the hook's figures when requested, else a placeholder naming it.

    Raises:
        ConfigError: requested, but edgeasc.firmware or its `bench_figures` does not exist yet.
    """
    base = {"hook": FIRMWARE_HOOK, "fields": list(FIRMWARE_FIELDS)}
    if not requested:
        return {"status": "not requested (edgeasc bench --firmware)", **base}
    module_name, func_name = FIRMWARE_HOOK.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise ConfigError(f"--firmware needs {module_name} (the firmware harness, issue 8), which is not "
                          "installed in this version") from None
    func: Callable[[Path], dict[str, Any]] | None = getattr(module, func_name, None)
    if func is None:
        raise ConfigError(f"--firmware needs {FIRMWARE_HOOK}(model_path), which {module_name} does not define yet")
    figures = dict(func(model_path))
    missing = [k for k in FIRMWARE_FIELDS if k not in figures]
    if missing:
        log.warning("%s returned no %s", FIRMWARE_HOOK, ", ".join(missing))
    return {"status": "measured", **base, **figures}


def _tensor_dict(d: Mapping[str, Any]) -> dict[str, Any]:
    scale, zero_point = d.get("quantization", (0.0, 0))
    return {"name": str(d["name"]), "shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
            "scale": float(scale), "zero_point": int(zero_point)}


def bench_model(
    path: str | os.PathLike,
    runs: int = 100,
    warmup: int = 10,
    n_inputs: int = 8,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    firmware: bool = False,
    progress: bool = False,
) -> BenchReport:
    """Benchmark a .tflite model (see the module docstring for each figure).

    Args:
        path: the .tflite file.
        runs: timed invocations per interpreter.
        warmup: untimed invocations before them.
        n_inputs: inputs of the numerics check (the first one is also the latency input).
        seed: seed of the random inputs, or of the clip choice with `data_dir`.
        data_dir: a TAU22-layout dataset: use log-mel features of its test clips instead of random inputs.
        firmware: fill the firmware section through `FIRMWARE_HOOK`.
        progress: a bar over the measuring steps (arena search, numerics, three latencies) on stderr.

    Raises:
        AuditError / ModelFileError: missing, malformed or unsupported model (exit code 2).
        ConfigError: bad arguments.
    """
    from edgeasc.audit.report import AuditError, detect_format
    from edgeasc.audit.tflite import audit_tflite

    t_start = time.perf_counter()
    if runs < 1 or warmup < 0 or n_inputs < 1:
        raise ConfigError(f"need runs >= 1, warmup >= 0 and inputs >= 1 (got {runs}, {warmup}, {n_inputs})")
    path = Path(path)
    fmt = detect_format(path)
    if fmt != "tflite":  # named by its suffix only: the file is not read, so not called a checkpoint or a model
        raise AuditError(f"{path}: edgeasc bench runs .tflite models, not {path.suffix or 'suffix-less'} files "
                         "(export a checkpoint first: edgeasc export CHECKPOINT --int8 --data DATA)")
    audit = audit_tflite(path)  # the loader's checks: missing, truncated or foreign files fail here
    ref = _LiteRT(path, reference_kernels=True)
    in_details = ref.interp.get_input_details()
    out_details = ref.interp.get_output_details()
    warnings = list(audit.warnings)
    firmware_figures = firmware_section(path, firmware)  # before the measurements: a missing hook fails fast

    if data_dir is not None:
        if len(in_details) != 1:
            raise ConfigError(f"--data needs a single-input model; {path.name} has {len(in_details)} inputs")
        input_sets, source = dataset_inputs(path, data_dir, n_inputs, seed)
    else:
        input_sets = random_inputs(in_details, n_inputs, seed)
        source = {"kind": "random", "seed": seed, "n": n_inputs,
                  "distribution": "integers uniform over the dtype's range; floats standard normal"}

    # Arena first (a child process): the interpreters below then get a size known to work.
    from edgeasc.progress import progress_bar

    bar = progress_bar(total=5, enabled=progress, desc="arena search", unit="step")
    start = max(MIN_ARENA_START_BYTES, int(1.25 * audit.peak_activation_bytes))
    min_arena, probes = find_min_arena(path, start_bytes=start)
    bar.set_description("numerics")
    bar.update()
    # The child proved `min_arena` works; the margin only guards this process against a different buffer
    # alignment. Head and tail do not depend on the arena size.
    micro = _Micro(path, min_arena + 4096, len(in_details), len(out_details))
    alloc = tflm_allocations(micro.interp)
    arena = ArenaUsage(min_arena, alloc["head"], alloc["tail"], alloc["total"], ARENA_GRANULARITY_BYTES, probes)

    # Numerics on every input, then latency on the first.
    default = _LiteRT(path, reference_kernels=False)
    out_ref, out_micro, out_default = (_run_all(r, input_sets) for r in (ref, micro, default))
    bad_inputs, bad_values, max_diff = compare_outputs(out_ref, out_micro)
    _, default_bad, _ = compare_outputs(out_ref, out_default)
    integer_out = all(np.issubdtype(np.dtype(d["dtype"]), np.integer) for d in out_details)
    numerics = Numerics(len(input_sets), integer_out, bad_inputs, bad_values, max_diff, default_bad)

    first = input_sets[0]
    latency = {}
    for key, runner in (("litert_reference", ref), ("litert_default", default), ("tflite_micro", micro)):
        bar.set_description(f"latency {key}")
        bar.update()
        latency[key] = _time_invocations(lambda r=runner: r.set_inputs(first), runner.invoke, runs, warmup)
    bar.update()
    bar.close()

    act = set(audit.details.get("activation_dtypes", {}))
    if act and act <= {"int8", "int32"} and all(_tensor_dict(d)["dtype"] == "int8" for d in in_details):
        mcu = {"label": "ESTIMATE (not measured)", "assumptions": list(MCU_ASSUMPTIONS),
               "anchors": {k: {"board": a.board, "latency_ms": a.latency_ms, "clock_mhz": a.clock_hz / 1e6,
                               "macs": sum(a.macs_by_class.values()), "source": a.source}
                           for k, a in MCU_ANCHORS.items()},
               "op_class_weights": dict(OP_CLASS_WEIGHTS), "macs_by_class": macs_by_class(audit.macs_by_op),
               "profiles": estimate_mcu_latency(audit.macs_by_op)}
    else:
        mcu = {"label": "not available",
               "reason": f"the anchors are int8 networks; this model has {sorted(act)} activations"}

    meta_name = audit.model_name
    return BenchReport(
        path=str(path), model_name=meta_name, file_bytes=path.stat().st_size,
        inputs=[_tensor_dict(d) for d in in_details], outputs=[_tensor_dict(d) for d in out_details],
        input_source=source, latency=latency, arena=arena, numerics=numerics, param_count=audit.param_count,
        param_bytes=audit.param_bytes, param_bytes_by_dtype=dict(audit.param_bytes_by_dtype), macs=audit.macs,
        macs_dcase=audit.macs_dcase, macs_by_op=dict(audit.macs_by_op),
        peak_activation_bytes=audit.peak_activation_bytes, mcu_estimate=mcu,
        firmware=firmware_figures, wall_s=time.perf_counter() - t_start, warnings=tuple(warnings),
    )


def check_numerics(report: BenchReport) -> None:
    """Raise `DomainError` (exit 1) when integer outputs of LiteRT's reference kernels and TFLite Micro differ."""
    n = report.numerics
    if not n.ok:
        raise DomainError(f"{Path(report.path).name}: LiteRT reference kernels and TFLite Micro differ on "
                          f"{n.mismatched_inputs} of {n.n_inputs} inputs ({n.mismatched_values} output values, "
                          f"max |diff| {n.max_abs_diff:g}); host results do not predict the device")
