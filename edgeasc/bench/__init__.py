"""Benchmarks of a deployed .tflite (edgeasc bench, docs/bench.md): timing (inputs, LiteRT and TFLite Micro
invocations, numerics), arena (the TFLite Micro arena in a child process), mcu (the microcontroller latency
estimate), machine (the machine description), report (the report and its text) and harness (bench_model).

The names of the former edgeasc/bench.py are re-exported here for one release (docs/layout.md).
"""


from edgeasc.bench.timing import (
    compare_outputs, dataset_inputs, random_inputs,
)
from edgeasc.bench.arena import (
    ARENA_GRANULARITY_BYTES, MAX_ARENA_BYTES, MIN_ARENA_START_BYTES, capture_c_stderr, find_min_arena,
    tflm_allocations,
)
from edgeasc.bench.mcu import (
    DSCNN_MACS_BY_CLASS, MCU_ANCHORS, MCU_ASSUMPTIONS, MCU_PROFILES, McuAnchor, McuProfile, OP_CLASSES,
    OP_CLASS_WEIGHTS, cycles_per_mac, estimate_mcu_latency, macs_by_class,
)
from edgeasc.bench.machine import (
    LIBRARIES, THREAD_VARIABLES, describe_machine,
)
from edgeasc.bench.report import (
    ArenaUsage, BenchReport, FIRMWARE_FIELDS, LatencyStats, Numerics, RUNTIMES, SCHEMA, format_bench,
)
from edgeasc.bench.harness import (
    FIRMWARE_HOOK, bench_model, check_numerics, firmware_section,
)

__all__ = [
    "ARENA_GRANULARITY_BYTES", "ArenaUsage", "BenchReport", "DSCNN_MACS_BY_CLASS", "FIRMWARE_FIELDS",
    "FIRMWARE_HOOK", "LIBRARIES", "LatencyStats", "MAX_ARENA_BYTES", "MCU_ANCHORS", "MCU_ASSUMPTIONS",
    "MCU_PROFILES", "MIN_ARENA_START_BYTES", "McuAnchor", "McuProfile", "Numerics", "OP_CLASSES",
    "OP_CLASS_WEIGHTS", "RUNTIMES", "SCHEMA", "THREAD_VARIABLES", "bench_model", "capture_c_stderr",
    "check_numerics", "compare_outputs", "cycles_per_mac", "dataset_inputs", "describe_machine",
    "estimate_mcu_latency", "find_min_arena", "firmware_section", "format_bench", "macs_by_class",
    "random_inputs", "tflm_allocations",
]
