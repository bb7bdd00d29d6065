"""Firmware generation: an int8 .tflite -> C99 sources for a microcontroller, bit-exact with TFLite Micro.

`generate_firmware` reads a full-integer int8 TFLite model (the flatbuffer schema classes of LiteRT or
TensorFlow) and writes, per model, `model.h`, `model.c` (constant weights, int32 biases, per-channel
requantisation multipliers and shifts, a static activation-arena plan and one kernel call per operator)
and `frontend_data.c` (the log-mel window and filterbank of the model's frontend). The hand-written parts
live in `firmware_stub/src/`: int8 kernels with TFLite's reference integer arithmetic (fw_kernels.c), a C
log-mel frontend (fw_frontend.c) and a harness shaped like the MLPerf Tiny API (th_api.c).

Quantisation parameters are derived exactly as TFLite Micro's Prepare functions do
(tensorflow/lite/kernels/kernel_util.cc PopulateConvolutionQuantizationParams, quantization_util.cc
QuantizeMultiplier, micro/kernels/add_common.cc, mul_common.cc, reduce_common.cc): double-precision real
multipliers, `frexp` significand rounded half away from zero to Q31, flush to zero below 2^-31.

The activation arena is planned from tensor lifetimes (produced by op a, last read by op b; the graph input
is live from the start, the output to the end) with a greedy first-fit by size, like TFLM's
GreedyMemoryPlanner; RESHAPE outputs alias their input. `measure_firmware` builds the firmware for a
Cortex-M4 or M7, runs it under QEMU with `-icount shift=0` and returns the instruction counts, flash and RAM.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeasc.artifacts import write_json_atomic, write_text_atomic
from edgeasc.deploy.runtime import tflite_frontend
from edgeasc.deploy.tflite_graph import Graph, Op, OpEntry, TensorEntry, read_graph, tflite_macs
from edgeasc.firmware.emit import _c_float, _c_float_array, _c_ident, _Emitter
from edgeasc.firmware.plan import TABLE_OPS, check_supported, plan_arena, tensor_bytes

log = logging.getLogger(__name__)

STUB_DIR = Path(__file__).resolve().parents[2] / "firmware_stub"
"""The hand-written firmware sources (kernels, frontend, harness, Makefile)."""


@dataclass
class Layer:
    """One generated operator call.

    Attributes:
        index: op index in the graph.
        op: TFLite operator name.
        kernel: C kernel it calls (`alias` for RESHAPE and friends).
        output_shape: its output shape.
        macs: MACs by the audit's deployed rule.
    """

    index: int
    op: str
    kernel: str
    output_shape: tuple[int, ...]
    macs: int
    output_tensor: int = -1
    output_offset: int = 0  # -1: no bytes of its own (a PAD folded into its convolution)
    output_dtype: str = "int8"  # float32 for a DEQUANTIZE writing the model output


@dataclass
class FirmwareResult:
    """What `generate_firmware` wrote.

    Attributes:
        out_dir: the folder with model.h, model.c, frontend_data.c and firmware.json.
        arena_bytes: activation arena size.
        weight_bytes: bytes of constant tensors (weights, biases, requantisation tables) in model.c.
        layers: generated operator calls.
        macs: total MACs (deployed rule of the audit).
        files: written files.
    """

    out_dir: Path
    arena_bytes: int
    weight_bytes: int
    layers: list[Layer]
    macs: int
    files: list[Path]

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir), "arena_bytes": self.arena_bytes, "weight_bytes": self.weight_bytes,
                "macs": self.macs, "n_layers": len(self.layers),
                "layers": [{"index": x.index, "op": x.op, "kernel": x.kernel, "output_shape": list(x.output_shape),
                            "macs": x.macs, "output_tensor": x.output_tensor, "output_offset": x.output_offset,
                            "output_dtype": x.output_dtype}
                           for x in self.layers],
                "files": [str(p) for p in self.files]}


def fuse_pads(graph: Graph) -> dict[int, tuple[int, int, int, int, int, int, int]]:
    """PAD operators that only feed convolutions, folded into them: op index -> (source tensor, consumer op,
    pad top, pad left, height added, width added, pad value).

    A convolution kernel reads taps outside its input as its `pad_value` (fw_kernels.c), normally the input
    zero point, which is what a PAD with the zero point as its value wrote there. So a PAD whose output goes
    only to one CONV_2D or DEPTHWISE_CONV_2D, pads only height and width, and pads with the input zero point
    needs no copy: the consumer reads the PAD's input with the padding added to its own. A PADV2 with another
    constant (the raw log-mel zero in front of a normalised-input convolution, docs/export.md) is folded the
    same way into a one-group CONV_2D, whose gathered window then holds that constant: the sum over a window
    is `w * (value - zero point)` per outside tap either way. The graph is rewritten in place.
    """
    consumers: dict[int, list[Op]] = {}
    for op in graph.ops:
        for t in op.inputs:
            consumers.setdefault(t, []).append(op)
    fused = {}
    for op in graph.ops:
        if op.name not in ("PAD", "PADV2") or op.outputs[0] in graph.outputs:
            continue
        users = consumers.get(op.outputs[0], [])
        if (len(users) != 1 or users[0].name not in ("CONV_2D", "DEPTHWISE_CONV_2D")
                or users[0].inputs[0] != op.outputs[0]):
            continue
        src, pads = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
        out = graph.tensors[op.outputs[0]]
        if pads.data is None or len(src.shape) != 4 or (src.scale, src.zero_point) != (out.scale, out.zero_point):
            continue
        p = np.asarray(pads.data).reshape(-1, 2)
        if p[0].any() or p[3].any():
            continue
        value = src.zero_point
        if op.name == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
            value = int(np.asarray(graph.tensors[op.inputs[2]].data).reshape(-1)[0])
            filt = graph.tensors[users[0].inputs[1]]
            one_group = users[0].name == "CONV_2D" and len(filt.shape) == 4 and filt.shape[3] == src.shape[3]
            if value != src.zero_point and not one_group:  # grouped and depthwise kernels skip outside taps
                continue
        fused[op.index] = (op.inputs[0], users[0].index, int(p[1, 0]), int(p[2, 0]), int(p[1].sum()), int(p[2].sum()),
                           value)
        users[0].inputs[0] = op.inputs[0]
    return fused


def _op_macs(graph: Graph) -> list[int]:
    """Per-op MACs by the audit's deployed rule (edgeasc.audit)."""

    tensors = [TensorEntry(t.name, t.shape, t.dtype, 1, 0 if t.data is None else t.data.nbytes, 0, False, 0)
               for t in graph.tensors]
    out = []
    for op in graph.ops:
        options = {}
        if op.name == "AVERAGE_POOL_2D":
            options = {"filter_h": int(op.options.filterHeight), "filter_w": int(op.options.filterWidth)}
        out.append(tflite_macs(OpEntry(op.name, op.inputs, op.outputs, options), tensors)[0])
    return out


def frontend_tables(frontend: Any) -> dict[str, Any]:
    """The window and the sparse mel filterbank the C frontend uses, as float32 from edgeasc.features."""
    import torch

    from edgeasc.features import mel_filterbank

    f_max = frontend.f_max_hz if frontend.f_max_hz is not None else frontend.sample_rate_hz / 2
    fb = mel_filterbank(frontend.n_fft // 2 + 1, frontend.f_min_hz, f_max, frontend.n_mels,
                        frontend.sample_rate_hz).numpy()
    window = torch.hann_window(frontend.win_length, periodic=True).numpy()
    starts, lengths, weights = [], [], []
    for m in range(frontend.n_mels):
        nz = np.nonzero(fb[:, m])[0]
        lo, hi = (int(nz[0]), int(nz[-1]) + 1) if len(nz) else (0, 0)
        starts.append(lo)
        lengths.append(hi - lo)
        weights.append(fb[lo:hi, m])
    return {"window": window, "starts": np.array(starts), "lengths": np.array(lengths),
            "weights": np.concatenate(weights) if weights else np.zeros(0, np.float32)}


def generate_firmware(tflite_path: str | os.PathLike, out_dir: str | os.PathLike,
                      weights: str = "int16") -> FirmwareResult:
    """Write C99 sources of a full-integer int8 .tflite for the firmware stub.

    Args:
        tflite_path: the model (`edgeasc export --int8` writes `model_int8.tflite`).
        out_dir: folder for `model.h`, `model.c`, `frontend_data.c` and `firmware.json`.
        weights: storage of one-group convolution weights, `int16` (fewest instructions) or `int8` (half
            their flash, widened in the kernel); `WEIGHT_STORAGE`.

    Returns:
        What was written, with the arena size.

    Raises:
        FirmwareError: an unsupported operator, tensor type or option (nothing is written then).
    """
    from edgeasc.deploy.runtime import InputNormalization, read_tflite_metadata

    tflite_path, out_dir = Path(tflite_path), Path(out_dir)
    graph = read_graph(tflite_path)
    check_supported(graph, tflite_path)
    macs = _op_macs(graph)
    fused = fuse_pads(graph)
    executed = Graph(graph.tensors, [op for op in graph.ops if op.index not in fused], graph.inputs, graph.outputs)
    plan = plan_arena(executed)
    em = _Emitter(graph, plan, weights)
    em.extra_pad = {f[1]: (f[2], f[3]) for f in fused.values()}
    em.padded_dims = {f[1]: (f[4], f[5]) for f in fused.values()}
    em.pad_value = {f[1]: f[6] for f in fused.values()}
    layers = []
    for op in graph.ops:
        if op.index in fused:
            kernel = "fused"
            em.stmt(op.index, f"/* {op.name}: folded into op {fused[op.index][1]} (outside taps read "
                              f"{fused[op.index][6]}) */")
        elif op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            kernel = em.conv(op, op.name == "DEPTHWISE_CONV_2D")
        elif op.name == "FULLY_CONNECTED":
            kernel = em.fully_connected(op)
        elif op.name in ("ADD", "MUL", "MAXIMUM", "MINIMUM"):
            kernel = em.binary(op)
        elif op.name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            kernel = em.pool(op)
        elif op.name == "SOFTMAX":
            kernel = em.softmax(op)
        elif op.name == "QUANTIZE":
            kernel = em.quantize(op)
        elif op.name in TABLE_OPS:
            kernel = em.table(op)
        elif op.name == "MEAN":
            kernel = em.mean(op)
        elif op.name in ("PAD", "PADV2"):
            kernel = em.pad(op)
        elif op.name == "STRIDED_SLICE":
            kernel = em.strided_slice(op)
        elif op.name == "CONCATENATION":
            kernel = em.concat(op)
        else:
            kernel = em.alias(op)
        layers.append(Layer(op.index, op.name, kernel, graph.tensors[op.outputs[0]].shape, macs[op.index],
                            op.outputs[0], plan.offsets.get(op.outputs[0], -1),
                            graph.tensors[op.outputs[0]].dtype.lower()))
    inp, out = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    frontend = tflite_frontend(tflite_path)[0]
    norm = InputNormalization.from_metadata(read_tflite_metadata(tflite_path))
    model_name = _c_ident(tflite_path.stem)
    names = ",\n    ".join(f'"{x.index}:{x.op}"' for x in layers)
    layer_macs = ", ".join(str(x.macs) for x in layers)
    header = f"""/* Generated by `edgeasc firmware` from {tflite_path.name}: do not edit. */
#ifndef FW_MODEL_H
#define FW_MODEL_H
#include <stdint.h>

#define FW_MODEL_NAME "{model_name}"
#define FW_INPUT_SIZE {inp.elements}
#define FW_OUTPUT_SIZE {out.elements}
/* bytes of one input and one output; *_FLOAT: a float32 boundary (QUANTIZE in, DEQUANTIZE out), else int8 */
#define FW_INPUT_BYTES {tensor_bytes(inp)}
#define FW_OUTPUT_BYTES {tensor_bytes(out)}
#define FW_INPUT_FLOAT {int(inp.dtype == "FLOAT32")}
#define FW_OUTPUT_FLOAT {int(out.dtype == "FLOAT32")}
/* 1: one-group convolution weights are int8 (edgeasc firmware --weights int8), else int16 pairs */
#define FW_WEIGHTS_INT8 {int(weights == "int8")}
#define FW_ARENA_BYTES {plan.arena_bytes}
#define FW_NUM_LAYERS {len(layers)}
#define FW_MACS {sum(macs)}u
#define FW_INPUT_SCALE {_c_float(inp.scale)}
#define FW_INPUT_ZERO_POINT {inp.zero_point}
/* input normalisation before quantising: u = (x - FW_INPUT_MEAN) / FW_INPUT_STD in float32 (0 and 1: raw log-mel) */
#define FW_INPUT_MEAN {_c_float(norm.mean if norm else 0.0)}
#define FW_INPUT_STD {_c_float(norm.std if norm else 1.0)}
#define FW_OUTPUT_SCALE {_c_float(out.scale)}
#define FW_OUTPUT_ZERO_POINT {out.zero_point}

/* log-mel frontend of this model (edgeasc metadata) */
#define FW_SAMPLE_RATE_HZ {frontend.sample_rate_hz}
#define FW_CLIP_SAMPLES {frontend.clip_samples}
#define FW_N_FFT {frontend.n_fft}
#define FW_WIN_LENGTH {frontend.win_length}
#define FW_HOP_LENGTH {frontend.hop_length}
#define FW_N_MELS {frontend.n_mels}
#define FW_N_FRAMES {1 + frontend.clip_samples // frontend.hop_length}
#define FW_LOG_OFFSET {_c_float(frontend.log_offset)}

extern const char *const fw_layer_names[FW_NUM_LAYERS];
extern const uint32_t fw_layer_macs[FW_NUM_LAYERS];
extern const float fw_window[FW_WIN_LENGTH];
extern const uint16_t fw_mel_start[FW_N_MELS];
extern const uint16_t fw_mel_length[FW_N_MELS];
extern const float fw_mel_weights[];

int8_t *fw_model_input(void);
const int8_t *fw_model_output(void);
const int8_t *fw_model_arena(void);
void fw_model_invoke(void);
/* Called with k before layer k and with FW_NUM_LAYERS after the last one (the harness times layers). */
void fw_layer_hook(int32_t k);

#endif
"""
    source = (f"/* Generated by `edgeasc firmware` from {tflite_path.name}: do not edit.\n"
              f" * {len(layers)} operators, {sum(macs):,} MACs, arena {plan.arena_bytes} bytes. */\n"
              "#include <stddef.h>\n#include \"model.h\"\n#include \"fw_kernels.h\"\n\n"
              "#if defined(__GNUC__)\n#define FW_ALIGN __attribute__((aligned(4)))\n#else\n#define FW_ALIGN\n#endif\n\n"
              f"static int8_t fw_arena[{max(plan.arena_bytes, 4)}] __attribute__((aligned(8)));\n\n"
              + "".join(em.consts)
              + f"\nconst char *const fw_layer_names[FW_NUM_LAYERS] = {{\n    {names}\n}};\n"
              + f"const uint32_t fw_layer_macs[FW_NUM_LAYERS] = {{{layer_macs}}};\n\n"
              + "const int8_t *fw_model_arena(void) { return fw_arena; }\n"
              + f"int8_t *fw_model_input(void) {{ return fw_arena + {plan.offsets[graph.inputs[0]]}; }}\n"
              + f"const int8_t *fw_model_output(void) {{ return fw_arena + {plan.offsets[graph.outputs[0]]}; }}\n\n"
              + "void fw_model_invoke(void) {\n" + "".join(em.body) + "    fw_layer_hook(FW_NUM_LAYERS);\n}\n")
    tables = frontend_tables(frontend)
    fe_source = (f"/* Generated by `edgeasc firmware`: the log-mel window and mel filterbank (float32, from\n"
                 f" * edgeasc.features) of {tflite_path.name}'s frontend. */\n#include \"model.h\"\n\n"
                 + _c_float_array("fw_window", tables["window"])
                 + "const uint16_t fw_mel_start[FW_N_MELS] = {" + ", ".join(map(str, tables["starts"])) + "};\n"
                 + "const uint16_t fw_mel_length[FW_N_MELS] = {" + ", ".join(map(str, tables["lengths"])) + "};\n"
                 + _c_float_array("fw_mel_weights", tables["weights"]))
    result = FirmwareResult(out_dir, plan.arena_bytes, em.const_bytes, layers, sum(macs), [])
    result.files = [write_text_atomic(out_dir / "model.h", header), write_text_atomic(out_dir / "model.c", source),
                    write_text_atomic(out_dir / "frontend_data.c", fe_source)]
    info = result.to_dict()
    info.update({"model": str(tflite_path), "weights": weights,
                 "input": {"shape": list(inp.shape), "dtype": inp.dtype.lower(), "scale": inp.scale,
                           "zero_point": inp.zero_point},
                 "output": {"shape": list(out.shape), "dtype": out.dtype.lower(), "scale": out.scale,
                            "zero_point": out.zero_point}})
    result.files.append(write_json_atomic(out_dir / "firmware.json", info))
    log.info("firmware for %s: %d layers, arena %d bytes, %d constant bytes", tflite_path.name, len(layers),
             plan.arena_bytes, em.const_bytes)
    return result


FRONTEND_MIN_INT8_AGREEMENT = 0.99
"""Smallest fraction of int8 input elements on which the C frontend and the Python path must agree."""
