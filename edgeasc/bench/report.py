"""The bench report: latency statistics per runtime, the TFLite Micro arena, numerics across runtimes, the
JSON form (`BenchReport.to_dict`) and the text form (`format_bench`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeasc.bench.machine import describe_machine

SCHEMA = "edgeasc.bench/1"
"""Version tag of the JSON report (`BenchReport.to_dict`)."""

RUNTIMES: dict[str, str] = {
    "litert_reference": "LiteRT reference kernels (BUILTIN_REF)",
    "litert_default": "LiteRT default kernels (XNNPACK)",
    "tflite_micro": "TFLite Micro interpreter",
}
"""Interpreters timed, by report key, with their table label."""


FIRMWARE_FIELDS: tuple[str, ...] = ("instructions_per_inference", "instructions_per_mac", "flash_bytes",
                                    "ram_bytes")
"""Figures the firmware section holds once the hook is implemented (plus any it adds, e.g. `target`)."""


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
