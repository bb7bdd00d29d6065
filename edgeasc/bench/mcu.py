"""The microcontroller latency estimate: measured anchors (cycles per MAC by operator class on a Cortex-M), the
operator classes of a graph, the target profiles and `estimate_mcu_latency` (docs/bench.md derives it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


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
