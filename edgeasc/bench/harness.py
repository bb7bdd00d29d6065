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
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeasc.children import kill_group, start_child
from edgeasc.errors import ConfigError, DomainError, EdgeAscError

log = logging.getLogger(__name__)

SCHEMA = "edgeasc.bench/1"
"""Version tag of the JSON report (`BenchReport.to_dict`)."""

RUNTIMES: dict[str, str] = {
    "litert_reference": "LiteRT reference kernels (BUILTIN_REF)",
    "litert_default": "LiteRT default kernels (XNNPACK)",
    "tflite_micro": "TFLite Micro interpreter",
}
"""Interpreters timed, by report key, with their table label."""

ARENA_GRANULARITY_BYTES = 16
"""Bisection step: TFLite Micro aligns arena buffers to 16 bytes (kBufferAlignment)."""

MAX_ARENA_BYTES = 1 << 28
"""Give up looking for an arena that fits beyond this size (256 MiB: far beyond any microcontroller)."""

MIN_ARENA_START_BYTES = 16 * 1024


# --------------------------------------------------------------------------------------------------
# Microcontroller latency estimate: anchors, operator classes, profiles (data, derivation below)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class McuAnchor:
    """A published whole-network latency of an int8 model on a microcontroller.

    Attributes:
        key: name used by `McuProfile.anchor`.
        board: the measured part and its core.
        latency_ms: published inference latency.
        clock_hz: the core clock assumed for that measurement (not published with the result: UNVERIFIED).
        macs_by_class: the measured model's MACs per operator class (deployed rule).
        source: where the latency comes from.
    """

    key: str
    board: str
    latency_ms: float
    clock_hz: float
    macs_by_class: Mapping[str, int]
    source: str

    @property
    def cycles(self) -> float:
        return self.latency_ms * 1e-3 * self.clock_hz


DSCNN_MACS_BY_CLASS: dict[str, int] = {"dense": 2_368_768, "depthwise": 288_000, "elementwise": 8_000}
"""MLPerf Tiny keyword-spotting DS-CNN (kws_ref_model.tflite, 2,664,768 MACs): dense = the 10x4 stem conv
(320,000) + four 1x1 pointwise convs (4 x 512,000) + the classifier (768); depthwise = four 3x3 depthwise
convs (4 x 72,000); elementwise = the 25x5 average pool (8,000)."""

MCU_ANCHORS: dict[str, McuAnchor] = {
    a.key: a
    for a in (
        McuAnchor("mlperf_tiny_kws_m4", "STM32L4R5 (Cortex-M4)", 72.7, 120e6, DSCNN_MACS_BY_CLASS,
                  "MLPerf Tiny v1.1 keyword spotting (DS-CNN, int8), optimised vendor runtime"),
        McuAnchor("mlperf_tiny_kws_m7", "STM32H7A3 (Cortex-M7)", 16.4, 280e6, DSCNN_MACS_BY_CLASS,
                  "MLPerf Tiny v1.1 keyword spotting (DS-CNN, int8), optimised vendor runtime"),
    )
}
"""Public anchors (TOOLCHAIN.md). Clocks are the parts' maximum clocks: 72.7 ms x 120 MHz / 2.66 M MACs
= 3.27 cycles/MAC on the M4, 16.4 ms x 280 MHz / 2.66 M MACs = 1.72 on the M7 (network averages)."""

OP_CLASS_WEIGHTS: dict[str, float] = {"dense": 1.0, "depthwise": 2.0, "elementwise": 3.0}
"""Cost per MAC of each class relative to a dense MAC. Assumptions, not measurements: optimised depthwise
kernels (CMSIS-NN) reuse no input across output channels and reach about half the dense MAC rate;
element-wise operators (ADD, MUL, pooling, MEAN: one "MAC" per element) requantise every element."""

OP_CLASSES: dict[str, str] = {
    "CONV_2D": "dense", "FULLY_CONNECTED": "dense", "BATCH_MATMUL": "dense", "CONV_3D": "dense",
    "TRANSPOSE_CONV": "dense", "CONV_3D_TRANSPOSE": "dense", "DEPTHWISE_CONV_2D": "depthwise",
}
"""Operator -> class; every other operator with MACs (audit's deployed rule) is `elementwise`."""


@dataclass(frozen=True)
class McuProfile:
    """A target: a core at a clock, costed with the cycles per MAC of an anchor.

    Attributes:
        key: short name (`cortex-m4@120MHz`).
        core: the Arm core.
        clock_hz: the clock the estimate assumes.
        anchor: key into `MCU_ANCHORS` whose cycles per MAC this core is costed with.
        note: what is assumed beyond the anchor.
    """

    key: str
    core: str
    clock_hz: float
    anchor: str
    note: str = ""


MCU_PROFILES: tuple[McuProfile, ...] = (
    McuProfile("cortex-m4@120MHz", "Cortex-M4", 120e6, "mlperf_tiny_kws_m4", "the anchor's own core and clock"),
    McuProfile("cortex-m7@480MHz", "Cortex-M7", 480e6, "mlperf_tiny_kws_m7",
               "M7 cycles/MAC measured at 280 MHz, assumed unchanged at 480 MHz (flash wait states grow with "
               "the clock, so this is optimistic)"),
    McuProfile("cortex-m33@160MHz", "Cortex-M33", 160e6, "mlperf_tiny_kws_m4",
               "no public M33 anchor here: costed like the M4 (same DSP/SIMD MAC instructions, similar "
               "pipeline); UNVERIFIED"),
)
"""The target profiles of the estimate."""

MCU_ASSUMPTIONS: tuple[str, ...] = (
    "an estimate, not a measurement: MACs per operator class (deployed rule) x cycles per MAC / clock",
    "cycles per MAC derived from one published whole-network latency per core (MLPerf Tiny v1.1 KWS DS-CNN) "
    "at the part's maximum clock (the clock is not published with the result)",
    "depthwise MACs cost 2x and element-wise operations 3x a dense MAC (OP_CLASS_WEIGHTS)",
    "optimised int8 kernels (CMSIS-NN or a vendor runtime), not TFLite Micro's reference kernels (several "
    "times slower); data movement (PAD, CONCATENATION, STRIDED_SLICE, RESHAPE), interpreter overhead and "
    "the log-mel frontend are not counted",
    "weights in zero-wait memory; caches and flash wait states are not modelled",
)


def cycles_per_mac(anchor: McuAnchor, weights: Mapping[str, float] = OP_CLASS_WEIGHTS) -> dict[str, float]:
    """Cycles per MAC of each operator class that reproduce `anchor`'s latency exactly.

    Solves `cycles = c_dense * sum(weight[k] * macs[k])` for `c_dense`; class k costs `weight[k] * c_dense`.
    """
    weighted = sum(weights[k] * m for k, m in anchor.macs_by_class.items())
    dense = anchor.cycles / weighted
    return {k: w * dense for k, w in weights.items()}


def macs_by_class(macs_by_op: Mapping[str, int]) -> dict[str, int]:
    """Deployed-rule MACs per operator (audit) -> MACs per operator class."""
    out = {k: 0 for k in OP_CLASS_WEIGHTS}
    for op, macs in macs_by_op.items():
        out[OP_CLASSES.get(op, "elementwise")] += int(macs)
    return out


def estimate_mcu_latency(
    macs_by_op: Mapping[str, int], profiles: Sequence[McuProfile] = MCU_PROFILES
) -> list[dict[str, Any]]:
    """The latency estimate of one inference per profile (see `MCU_ASSUMPTIONS`).

    Returns:
        One dict per profile: key, core, clock_mhz, anchor, cycles_per_mac (per class), cycles,
        latency_ms, note.
    """
    by_class = macs_by_class(macs_by_op)
    rows = []
    for p in profiles:
        cpm = cycles_per_mac(MCU_ANCHORS[p.anchor])
        cycles = sum(cpm[k] * by_class[k] for k in by_class)
        rows.append({"key": p.key, "core": p.core, "clock_mhz": p.clock_hz / 1e6, "anchor": p.anchor,
                     "cycles_per_mac": {k: round(v, 4) for k, v in cpm.items()}, "cycles": round(cycles),
                     "latency_ms": 1e3 * cycles / p.clock_hz, "note": p.note})
    return rows


# --------------------------------------------------------------------------------------------------
# Firmware hook (issue 8 fills it)
# --------------------------------------------------------------------------------------------------
FIRMWARE_HOOK = "edgeasc.firmware:bench_figures"
"""`bench_figures(model_path: Path) -> dict` in edgeasc/firmware/generate.py supplies the firmware section."""

FIRMWARE_FIELDS: tuple[str, ...] = ("instructions_per_inference", "instructions_per_mac", "flash_bytes",
                                    "ram_bytes")
"""Figures the firmware section holds once the hook is implemented (plus any it adds, e.g. `target`)."""


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


# --------------------------------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------------------------------
LIBRARIES: tuple[str, ...] = ("edgeasc", "numpy", "ai-edge-litert", "tflite-micro", "torch", "tensorflow",
                              "onnx", "onnxruntime", "onnx2tf")
THREAD_VARIABLES: tuple[str, ...] = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> dict[str, Any]:
    """CPU model, cores, OS, Python, library versions and thread settings: what a timing depends on."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads: dict[str, Any] = {v: os.environ.get(v) for v in THREAD_VARIABLES}
    if "torch" in sys.modules:  # report torch's setting only where torch is already in use
        threads["torch_num_threads"] = sys.modules["torch"].get_num_threads()
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": versions,
        "threads": threads,
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatencyStats:
    """Latency of `runs` timed invocations after `warmup` untimed ones (milliseconds)."""

    runs: int
    warmup: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float

    @classmethod
    def from_ns(cls, samples_ns: Sequence[int], warmup: int) -> LatencyStats:
        ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(len(ms), warmup, float(p50), float(p90), float(p99), float(ms.mean()), float(ms.min()))


@dataclass(frozen=True)
class ArenaUsage:
    """TFLite Micro arena figures (bytes).

    Attributes:
        min_bytes: the smallest arena (a multiple of `granularity_bytes`) that allocates and runs the model;
            `min_bytes - granularity_bytes` fails.
        head_bytes: planned activations (the portable RAM figure).
        tail_bytes: persistent interpreter data (64-bit host pointers: overstates a 32-bit MCU).
        total_bytes: head + tail as TFLite Micro records it.
        granularity_bytes: bisection step.
        probes: arena sizes tried, with whether each worked, in order.
    """

    min_bytes: int
    head_bytes: int
    tail_bytes: int
    total_bytes: int
    granularity_bytes: int
    probes: tuple[tuple[int, bool], ...] = ()


@dataclass(frozen=True)
class Numerics:
    """LiteRT reference kernels vs TFLite Micro on the same inputs.

    Attributes:
        n_inputs: inputs compared.
        integer_outputs: every output is an integer tensor (then bit-identity is required).
        mismatched_inputs: inputs with any differing output value.
        mismatched_values: differing output values over all inputs.
        max_abs_diff: largest absolute difference (in the output's stored units).
        default_vs_reference_mismatched_values: the same count for LiteRT's default kernels against its
            reference kernels (informational: XNNPACK may round differently).
    """

    n_inputs: int
    integer_outputs: bool
    mismatched_inputs: int
    mismatched_values: int
    max_abs_diff: float
    default_vs_reference_mismatched_values: int

    @property
    def bit_exact(self) -> bool:
        return self.mismatched_values == 0

    @property
    def ok(self) -> bool:
        """Bit-identical, or float outputs (which are compared but not required to be identical)."""
        return self.bit_exact or not self.integer_outputs


@dataclass(frozen=True)
class BenchReport:
    """Everything `edgeasc bench` measures for one .tflite model (see the module docstring)."""

    path: str
    model_name: str
    file_bytes: int
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    input_source: dict[str, Any]
    latency: dict[str, LatencyStats]
    arena: ArenaUsage
    numerics: Numerics
    param_count: int
    param_bytes: int
    param_bytes_by_dtype: dict[str, int]
    macs: int
    macs_dcase: int
    macs_by_op: dict[str, int]
    peak_activation_bytes: int
    mcu_estimate: dict[str, Any]
    firmware: dict[str, Any]
    wall_s: float = 0.0
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self, machine: bool = False) -> dict[str, Any]:
        """JSON-ready dict; `machine=True` adds `describe_machine()` (what `--json` prints)."""
        arena = asdict(self.arena)
        arena["probes"] = [list(p) for p in self.arena.probes]
        d = {
            "schema": SCHEMA,
            "model": {"path": self.path, "name": self.model_name, "file_bytes": self.file_bytes,
                      "inputs": self.inputs, "outputs": self.outputs},
            "input_source": self.input_source,
            "latency_ms": {k: asdict(v) for k, v in self.latency.items()},
            "latency_settings": {"threads": 1, "timed": "invoke() only; input written before each call"},
            "memory": {
                "tflm_arena_min_bytes": self.arena.min_bytes,
                "tflm_arena_head_bytes": self.arena.head_bytes,
                "tflm_arena_tail_bytes": self.arena.tail_bytes,
                "audit_peak_activation_bytes": self.peak_activation_bytes,
                "flash_file_bytes": self.file_bytes,
                "param_bytes": self.param_bytes,
                "param_bytes_by_dtype": dict(self.param_bytes_by_dtype),
                "tflm_arena": arena,
            },
            "compute": {"param_count": self.param_count, "macs": self.macs, "macs_dcase": self.macs_dcase,
                        "macs_by_op": dict(self.macs_by_op)},
            "numerics": {**asdict(self.numerics), "compared": "litert_reference vs tflite_micro",
                         "bit_exact": self.numerics.bit_exact, "ok": self.numerics.ok},
            "mcu_estimate": self.mcu_estimate,
            "firmware": self.firmware,
            "warnings": list(self.warnings),
            "wall_s": round(self.wall_s, 3),
        }
        if machine:
            d["machine"] = describe_machine()
        return d


# --------------------------------------------------------------------------------------------------
# TFLite Micro: arena probing in a child process, allocation read-out
# --------------------------------------------------------------------------------------------------
_ALLOC_RE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


def _tflm_runtime() -> Any:
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        from edgeasc.deploy.runtime import RuntimeUnavailableError

        raise RuntimeUnavailableError("edgeasc bench needs TFLite Micro (pip install "
                                      "'tflite-micro==0.dev20261023182759')") from None
    return runtime


def capture_c_stderr(func: Callable[[], Any]) -> tuple[Any, str]:
    """Run `func` with the process's file descriptor 2 redirected to a temporary file; (result, text).

    TFLite Micro prints from C++ (`print_allocations()`, allocation errors), which `sys.stderr`
    redirection does not see.
    """
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            result = func()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        return result, tmp.read().decode("utf-8", "replace")


def tflm_allocations(interpreter: Any) -> dict[str, int]:
    """{"total", "head", "tail"} bytes of a TFLite Micro interpreter's arena, from `print_allocations()`."""
    _, text = capture_c_stderr(interpreter.print_allocations)
    found = {k: int(v) for k, v in _ALLOC_RE.findall(text)}
    if set(found) != {"total", "head", "tail"}:
        raise EdgeAscError(f"unexpected TFLite Micro print_allocations() output: {text.strip()[:200]!r}")
    return found


class _ArenaProbe:
    """A child process that answers "does the model fit in N bytes?" (see `_probe_main`).

    TFLite Micro raises for most too-small arenas but crashes (SIGSEGV) when even its own interpreter
    structures do not fit; a crash ends only the child, which is restarted and the size counted as failing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last_error = ""
        self._proc: subprocess.Popen | None = None
        self._err = tempfile.TemporaryFile(mode="w+b")

    def _start(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            self._err.seek(0)
            self._err.truncate()
            # the child imports this very package, installed or not
            package_root = str(Path(__file__).resolve().parents[2])
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
            self._proc = start_child(
                [sys.executable, "-m", "edgeasc.bench", "--arena-probe", str(self.path)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True, bufsize=1, env=env,
            )
        return self._proc

    def _ask(self, line: str) -> bool:
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            answer = proc.stdout.readline().strip()
        except BrokenPipeError:
            answer = ""
        if answer == "ok":
            return True
        if not answer:  # the child died: a crash on a too-small arena
            proc.wait()
            self._proc = None
        self._err.seek(0)
        lines = [ln for ln in self._err.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        self.last_error = lines[-1] if lines else (answer or "the probe process died")
        return False

    def fits(self, arena_bytes: int) -> bool:
        """The interpreter allocates all tensors in `arena_bytes`."""
        return self._ask(f"fit {arena_bytes}")

    def runs(self, arena_bytes: int) -> bool:
        """Allocates and completes one `invoke()` on zero inputs."""
        return self._ask(f"run {arena_bytes}")

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                kill_group(self._proc)
        self._proc = None
        self._err.close()

    def __enter__(self) -> _ArenaProbe:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def find_min_arena(
    path: str | os.PathLike, start_bytes: int = MIN_ARENA_START_BYTES, granularity: int = ARENA_GRANULARITY_BYTES
) -> tuple[int, tuple[tuple[int, bool], ...]]:
    """The smallest TFLite Micro arena (a multiple of `granularity`) in which `path` allocates and runs.

    Doubles from `start_bytes` until the model fits, then bisects; the result fits and completes an
    `invoke()`, and the result minus `granularity` does not fit.

    Returns:
        (minimum arena bytes, the probes as (size, fits) pairs in order)

    Raises:
        ModelFileError: TFLite Micro cannot run the model at any arena size up to `MAX_ARENA_BYTES` (for
            example an operator it does not support), with its last error line.
    """
    from edgeasc.deploy.runtime import ModelFileError

    if granularity < 1:
        raise ConfigError(f"arena granularity must be >= 1 byte, got {granularity}")
    path = Path(path)
    probes: list[tuple[int, bool]] = []
    with _ArenaProbe(path) as probe:

        def fits(n: int) -> bool:
            ok = probe.fits(n)
            probes.append((n, ok))
            return ok

        lo = 0  # an empty arena never fits
        hi = max(granularity, -(-start_bytes // granularity) * granularity)
        while not fits(hi):
            lo = hi
            hi *= 2
            if hi > MAX_ARENA_BYTES:
                raise ModelFileError(f"{path}: TFLite Micro cannot allocate this model in {MAX_ARENA_BYTES:,} bytes "
                                     f"of arena ({probe.last_error})")
        while hi - lo > granularity:
            mid = (lo + hi) // 2 // granularity * granularity
            if fits(mid):
                hi = mid
            else:
                lo = mid
        if not probe.runs(hi):
            raise ModelFileError(f"{path}: TFLite Micro allocates this model in {hi:,} bytes but cannot run it "
                                 f"({probe.last_error})")
    return hi, tuple(probes)


def _probe_main(model_path: str) -> int:
    """Child-process loop of `_ArenaProbe`: reads `fit N` / `run N` lines, answers `ok` or `fail`."""
    from edgeasc.deploy.tflite_graph import read_tflite_model

    runtime = _tflm_runtime()
    data = Path(model_path).read_bytes()
    n_inputs = read_tflite_model(data, model_path).Subgraphs(0).InputsLength()
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if not cmd:
            continue
        try:
            interp = runtime.Interpreter.from_bytes(data, arena_size=int(arg))
            if cmd == "run":
                for i in range(n_inputs):
                    detail = interp.get_input_details(i)
                    interp.set_input(np.zeros(detail["shape"], dtype=detail["dtype"]), i)
                interp.invoke()
            del interp
            answer = "ok"
        except (RuntimeError, ValueError) as exc:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            answer = "fail"
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()
    return 0


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------
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
    from edgeasc.errors import DataError
    from edgeasc.deploy.calibration import select_calibration_clips
    from edgeasc.deploy.runtime import TFLiteModel, feature_batches

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


# --------------------------------------------------------------------------------------------------
# Timing and numerics
# --------------------------------------------------------------------------------------------------
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
        self.interp = _tflm_runtime().Interpreter.from_file(str(path), arena_size=arena_bytes)
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


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------
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
    from edgeasc.audit.report import AuditError, audit_tflite, detect_format

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


# --------------------------------------------------------------------------------------------------
# Human output
# --------------------------------------------------------------------------------------------------
def _table(rows: Sequence[Sequence[str]], right: Sequence[bool]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right)).rstrip()
            for row in rows]


def format_bench(report: BenchReport) -> str:
    """Aligned tables: latency, memory, numerics, MCU estimate, firmware status."""
    ins = ", ".join(f"{d['dtype']} {'x'.join(map(str, d['shape']))}" for d in report.inputs)
    outs = ", ".join(f"{d['dtype']} {'x'.join(map(str, d['shape']))}" for d in report.outputs)
    src = report.input_source
    src_text = (f"{src['n']} seeded random inputs (seed {src['seed']})" if src["kind"] == "random"
                else f"{src['n']} clips of {src['split']} in {src['data_dir']} (seed {src['seed']})")
    any_lat = next(iter(report.latency.values()))
    lines = [f"{Path(report.path).name}  ({report.model_name}; in {ins}; out {outs})",
             f"inputs: {src_text}; latency input: the first; {any_lat.runs} timed runs after {any_lat.warmup} "
             "warm-up, 1 thread", ""]
    rows = [("latency on this host (ms)", "p50", "p90", "p99", "mean")]
    rows += [(RUNTIMES[k], f"{v.p50_ms:.3f}", f"{v.p90_ms:.3f}", f"{v.p99_ms:.3f}", f"{v.mean_ms:.3f}")
             for k, v in report.latency.items()]
    lines += _table(rows, (False, True, True, True, True)) + [""]
    a = report.arena
    rows = [("memory", "bytes"),
            ("TFLite Micro arena, minimum (bisection)", f"{a.min_bytes:,}"),
            ("  head: planned activations (portable RAM)", f"{a.head_bytes:,}"),
            ("  tail: persistent, 64-bit host pointers", f"{a.tail_bytes:,}"),
            ("audit peak activation estimate", f"{report.peak_activation_bytes:,}"),
            ("flash: .tflite file", f"{report.file_bytes:,}"),
            ("flash: parameters", f"{report.param_bytes:,}")]
    lines += _table(rows, (False, True)) + [""]
    n = report.numerics
    if n.bit_exact:
        verdict = f"bit-identical on {n.n_inputs}/{n.n_inputs} inputs"
    else:
        verdict = (f"MISMATCH on {n.mismatched_inputs}/{n.n_inputs} inputs ({n.mismatched_values} values, "
                   f"max |diff| {n.max_abs_diff:g})" + ("" if n.integer_outputs else "; float outputs, not required"))
    lines.append(f"numerics: LiteRT reference vs TFLite Micro: {verdict}")
    lines.append(f"          LiteRT default vs reference: {n.default_vs_reference_mismatched_values} differing "
                 "output values (informational)")
    lines.append("")
    mcu = report.mcu_estimate
    if "profiles" in mcu:
        lines.append(f"MCU latency ESTIMATE (not measured; {report.macs:,} MACs, deployed rule; "
                     "assumptions in docs/bench.md)")
        rows = [("profile", "dense c/MAC", "depthwise c/MAC", "elementwise c/op", "est. ms")]
        rows += [(p["key"], f"{p['cycles_per_mac']['dense']:.2f}", f"{p['cycles_per_mac']['depthwise']:.2f}",
                  f"{p['cycles_per_mac']['elementwise']:.2f}", f"{p['latency_ms']:.1f}") for p in mcu["profiles"]]
        lines += _table(rows, (False, True, True, True, True))
    else:
        lines.append(f"MCU latency estimate: {mcu['reason']}")
    fw = report.firmware
    if fw.get("status") == "measured":
        def show(v: Any) -> str:
            return f"{v:,}" if isinstance(v, int) else (f"{v:,.2f}" if isinstance(v, float) else str(v))

        figures = ", ".join(f"{k} {show(fw[k])}" for k in FIRMWARE_FIELDS if k in fw)
        lines.append(f"firmware: {figures}")
    for w in report.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)

