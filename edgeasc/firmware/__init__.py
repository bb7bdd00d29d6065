"""firmware: see generate.py.

The names of the former edgeasc/firmware.py are re-exported here for one release (docs/layout.md).
"""

from edgeasc.firmware.generate import (  # noqa: F401
    ALIAS_OPS, ARENA_ALIGN, ArenaPlan, FIRMWARE_CONSTANT_TYPES, FRONTEND_MAX_ABS_ERROR,
    FRONTEND_MIN_INT8_AGREEMENT, FirmwareResult, INPLACE_OPS, Layer, MAX_K, RSHIFT_MAX, STUB_DIR,
    SUPPORTED_OPS, TARGETS, activation_range, bench_figures, build_firmware, check_firmware,
    check_supported, dump_layers, evaluation_inputs, export_demo_model, firmware_size, format_check,
    frontend_tables, fuse_pads, generate_firmware, measure_firmware, multiply_by_quantized_multiplier,
    pack_conv_weights, plan_arena, quantize_multiplier, reference_layers, requant_records,
    rounding_divide_by_pot, run_host, run_host_frontend, run_qemu, srdhm, tflm_outputs, toolchain_missing,
)
