"""Child-process entry of the ONNX -> TFLite step: `python -m edgeasc.deploy._convert_tflite JOB.json`.

TensorFlow and onnx2tf are imported only here, in a process of their own: the training side never loads
TensorFlow, and a converter crash (onnx2tf has died with SIGFPE on a badly shaped calibration array) ends
this process, not the CLI. The parent (`edgeasc.deploy.export.convert_onnx_to_tflite`) reads the exit status.

JOB.json: {"conversions": [{"onnx": path, "out_dir": path, "calibration_npy": path | null,
                            "input_name": str, "log": path (optional: this conversion's output),
                            "signature_float": path (optional), "mixed": {...} (optional)}, ...]}
A conversion with "mixed" ({"float", "out", "int16_scopes", "int16_input"}) only runs `quantize_mixed` on a
float TFLite written earlier with "signature_float" (`--int16-layers`).
For each conversion onnx2tf writes `{stem}_float32.tflite` (and the SavedModel it converted from); with
calibration data this module then writes `{stem}_full_integer_quant.tflite` (int8 weights per channel, int8
activations, int8 input and output) from that SavedModel, with exactly the converter settings onnx2tf's own
`output_integer_quantized_tflite` uses for that file (the same bytes; checked when this was written). It
does not ask onnx2tf for it because onnx2tf then also builds four int8/int16 variants that edgeasc never
ships, each calibrated again: about 5x the conversion time.
Several conversions in one job share one TensorFlow start-up; the parent runs several jobs side by side.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any


def convert_one(onnx_path: str, out_dir: str, calibration_npy: str | None, input_name: str,
                signature_float_path: str | None = None) -> None:
    """Run onnx2tf on one model, then quantise its SavedModel to full integer when calibration is given.

    The calibration array is float32 NHWC `(N, n_mels, frames, 1)` of already normalised features; each clip
    is one calibration sample (batch 1, as onnx2tf feeds them). `signature_float_path`: also write the
    SavedModel as a float32 TFLite with its signature there (for `quantize_mixed`)."""
    import onnx2tf

    onnx2tf.convert(
        input_onnx_file_path=onnx_path,
        output_folder_path=out_dir,
        output_signaturedefs=True,  # a signature'd SavedModel; without it, ONNX names starting with "/" fail
        non_verbose=True,
    )
    if calibration_npy:
        quantize_full_integer(out_dir, Path(out_dir) / f"{Path(onnx_path).stem}_full_integer_quant.tflite",
                              calibration_npy, input_name)
    if signature_float_path:
        signature_float(out_dir, Path(signature_float_path))


def quantize_full_integer(saved_model_dir: str, out_path: Path, calibration_npy: str, input_name: str) -> None:
    """Full-integer int8 TFLite from a SavedModel: per-channel int8 weights, int8 activations calibrated on
    `calibration_npy`, int8 input and output (the settings of onnx2tf 1.28's `*_full_integer_quant.tflite`)."""
    import numpy as np
    import tensorflow as tf

    calib = np.load(calibration_npy)

    def representative_dataset():
        for i in range(len(calib)):
            yield {input_name: tf.convert_to_tensor(calib[i : i + 1], dtype=tf.float32)}

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.SELECT_TF_OPS]
    converter._experimental_disable_per_channel = False  # per-channel weight scales
    converter.representative_dataset = representative_dataset
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    out_path.write_bytes(converter.convert())  # the parent moves it into place atomically


def signature_float(saved_model_dir: str, out_path: Path) -> None:
    """A float32 TFLite of the SavedModel with its serving signature (ai-edge-quantizer calibrates through
    signatures; onnx2tf's own float32 file has none). Same graph and tensor names as what it quantises."""
    import tensorflow as tf

    out_path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(saved_model_dir).convert())


def _op_config(bits: int) -> Any:
    from ai_edge_quantizer import qtyping

    return qtyping.OpQuantizationConfig(
        activation_tensor_config=qtyping.TensorQuantizationConfig(
            num_bits=bits, symmetric=bits == 16, granularity=qtyping.QuantGranularity.TENSORWISE),
        weight_tensor_config=qtyping.TensorQuantizationConfig(
            num_bits=8, symmetric=True, granularity=qtyping.QuantGranularity.CHANNELWISE),
        compute_precision=qtyping.ComputePrecision.INTEGER, explicit_dequantize=False)


def quantize_mixed(float_tflite: str, out_path: Path, calibration_npy: str, int16_scopes: list[str],
                   int16_input: bool) -> None:
    """Int8 TFLite with TFLite's 16x8 scheme (int16 activations, int8 weights) in the ops whose output tensor
    names are `int16_scopes`, by ai-edge-quantizer per-op recipes (min/max calibration on the same clips);
    `int16_input`: the model input is int16 too."""
    import re

    import numpy as np
    from ai_edge_litert import interpreter as litert
    from ai_edge_quantizer import calibrator, qtyping, quantizer
    from ai_edge_quantizer.utils import qsv_utils

    # ai-edge-quantizer 0.10 keeps a moving average (0.95) of each tensor's per-clip min/max; TFLite's
    # converter, the int8 path and edgeasc.deploy.sensitivity use the min/max over all calibration clips. With the
    # average, test clips beyond the averaged range saturate (max |dlogit| 3.1 on a trained CP-Mobile).
    calibrator.algorithm_manager.get_update_qsv_func = lambda *args, **kwargs: qsv_utils.min_max_update

    q = quantizer.Quantizer(float_tflite)
    q.update_quantization_recipe(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                 op_config=_op_config(8))
    for scope in int16_scopes:
        q.update_quantization_recipe(regex="^" + re.escape(scope) + ";$",
                                     operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, op_config=_op_config(16))
    signatures = litert.Interpreter(model_path=float_tflite).get_signature_list()
    key = next(iter(signatures))
    (input_name,) = signatures[key]["inputs"]
    if int16_input:
        q.update_quantization_recipe(regex=".*", operation_name=qtyping.TFLOperationName.INPUT,
                                     op_config=_op_config(16))
    calib = np.load(calibration_npy)
    result = q.calibrate({key: [{input_name: calib[i : i + 1]} for i in range(len(calib))]})
    out_path.write_bytes(q.quantize(result).quantized_model)


@contextlib.contextmanager
def _output_to(path: str | None):
    """Send this process's stdout and stderr (file descriptors 1 and 2: TensorFlow's C++ logging writes there
    directly) to `path` for the duration of the block."""
    if not path:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m edgeasc.deploy._convert_tflite JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for conv in job["conversions"]:
        start = f"[edgeasc] converting {conv['onnx']} -> {conv['out_dir']}"
        print(start, flush=True)
        with _output_to(conv.get("log")):
            if conv.get("log"):
                print(start, flush=True)
            try:
                if conv.get("mixed"):
                    mixed = conv["mixed"]
                    quantize_mixed(mixed["float"], Path(mixed["out"]), conv["calibration_npy"], mixed["int16_scopes"],
                                   mixed["int16_input"])
                else:
                    convert_one(conv["onnx"], conv["out_dir"], conv.get("calibration_npy"), conv["input_name"],
                                conv.get("signature_float"))
            except BaseException:
                traceback.print_exc()  # into this conversion's log, where the parent looks for the error
                raise
            print(f"[edgeasc] done {conv['onnx']}", flush=True)
        if conv.get("log"):
            print(f"[edgeasc] done {conv['onnx']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
