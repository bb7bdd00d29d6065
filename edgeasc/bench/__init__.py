"""bench: see harness.py.

The names of the former edgeasc/bench.py are re-exported here for one release (docs/layout.md).
"""

from edgeasc.bench.harness import (  # noqa: F401
    ARENA_GRANULARITY_BYTES, ArenaUsage, BenchReport, DSCNN_MACS_BY_CLASS, FIRMWARE_FIELDS, FIRMWARE_HOOK,
    LIBRARIES, LatencyStats, MAX_ARENA_BYTES, MCU_ANCHORS, MCU_ASSUMPTIONS, MCU_PROFILES,
    MIN_ARENA_START_BYTES, McuAnchor, McuProfile, Numerics, OP_CLASSES, OP_CLASS_WEIGHTS, RUNTIMES, SCHEMA,
    THREAD_VARIABLES, bench_model, capture_c_stderr, check_numerics, compare_outputs, cycles_per_mac,
    dataset_inputs, describe_machine, estimate_mcu_latency, find_min_arena, firmware_section, format_bench,
    macs_by_class, random_inputs, tflm_allocations,
)
