"""C99 firmware for a full-int8 .tflite (docs/firmware.md), in the order of its steps: the operators it accepts and
the arena plan (plan), TFLite's fixed-point arithmetic evaluated at generation time (fixedpoint) and the tables of
elementwise operators and SOFTMAX (tables), the C code (emit) and the generator that writes model.c/model.h
(generate), building and running it on the host and under QEMU (toolchain), and the end-to-end check against
TFLite Micro (check).

The names of the former edgeasc/firmware.py are re-exported here for one release (docs/layout.md).
"""


from edgeasc.firmware.plan import (
    ALIAS_OPS, ARENA_ALIGN, ArenaPlan, FIRMWARE_CONSTANT_TYPES, INPLACE_OPS, SUPPORTED_OPS, TABLE_OPS,
    check_supported, float_boundaries, plan_arena, tensor_bytes,
)
from edgeasc.firmware.fixedpoint import (
    RSHIFT_MAX, activation_range, multiply_by_quantized_multiplier, quantize_multiplier,
    rounding_divide_by_pot, srdhm,
)
from edgeasc.firmware.tables import (
    softmax_exp_table, unary_table,
)
from edgeasc.firmware.emit import (
    MAX_K, WEIGHT_STORAGE, pack_conv_weights, pack_conv_weights_int8, requant_records,
)
from edgeasc.firmware.generate import (
    FRONTEND_MIN_INT8_AGREEMENT, FirmwareResult, Layer, STUB_DIR, frontend_tables, fuse_pads,
    generate_firmware,
)
from edgeasc.firmware.toolchain import (
    TARGETS, bench_figures, build_firmware, dump_layers, firmware_size, measure_firmware, output_dtype,
    random_inputs, reference_layers, run_host, run_host_frontend, run_qemu, toolchain_missing,
)
from edgeasc.firmware.check import (
    FRONTEND_MAX_ABS_ERROR, check_firmware, evaluation_inputs, export_demo_model, format_check, same_bits,
)
from edgeasc.deploy.runtime import tflm_outputs  # the one TFLite Micro runner (deploy.runtime)
from edgeasc.deploy.tflite_graph import (
    Graph, Op, Tensor, read_graph,
)
from edgeasc.errors import (
    FirmwareError,
)

__all__ = [
    "ALIAS_OPS", "ARENA_ALIGN", "ArenaPlan", "FIRMWARE_CONSTANT_TYPES", "FRONTEND_MAX_ABS_ERROR",
    "FRONTEND_MIN_INT8_AGREEMENT", "FirmwareError", "FirmwareResult", "Graph", "INPLACE_OPS", "Layer", "MAX_K",
    "Op", "RSHIFT_MAX", "STUB_DIR", "SUPPORTED_OPS", "TABLE_OPS", "TARGETS", "Tensor", "WEIGHT_STORAGE",
    "activation_range", "bench_figures", "build_firmware", "check_firmware", "check_supported", "dump_layers",
    "evaluation_inputs", "export_demo_model", "firmware_size", "float_boundaries", "format_check",
    "frontend_tables", "fuse_pads", "generate_firmware", "measure_firmware", "multiply_by_quantized_multiplier",
    "output_dtype", "pack_conv_weights", "pack_conv_weights_int8", "plan_arena", "quantize_multiplier",
    "random_inputs", "read_graph", "reference_layers", "requant_records", "rounding_divide_by_pot", "run_host",
    "run_host_frontend", "run_qemu", "same_bits", "softmax_exp_table", "srdhm", "tensor_bytes", "tflm_outputs",
    "toolchain_missing", "unary_table",
]
