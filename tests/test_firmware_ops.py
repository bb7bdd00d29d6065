"""The firmware's operator coverage against TFLite Micro itself: the operators of the full-integer MLPerf Tiny
reference models, each table operator on all 256 input values and many quantisations, SOFTMAX on the host
build, and a TensorFlow-built model with every newer operator (int8 and float32 boundaries), on the host and
on the emulated Cortex-M4, output and every intermediate tensor."""

from __future__ import annotations

import json
import os
import zlib

import numpy as np
import pytest

from edgeasc import firmware as fw

pytest.importorskip("tflite_micro")

# Operator lists of the full-integer .tflite files of the MLPerf Tiny reference set (mlcommons/tiny,
# benchmark/training/*/trained_models, read with edgeasc.deploy.tflite_graph.read_graph). The float32 files
# of the set (ad01_fp32, kws_ref_model_float32, model_ToyCar, model_ToyCar_quant, pretrainedResnet,
# pretrainedResnet_large_float, vww_96_float) have float activations and no int8 firmware.
MLPERF_TINY_INT8_OPS = {
    "ad01_int8": {"FULLY_CONNECTED"},
    "model_ToyCar_quant_fullint_micro_intio": {"FULLY_CONNECTED"},
    "model_ToyCar_quant_fullint": {"QUANTIZE", "FULLY_CONNECTED", "DEQUANTIZE"},
    "model_ToyCar_quant_fullint_micro": {"QUANTIZE", "FULLY_CONNECTED", "DEQUANTIZE"},
    "kws_ref_model": {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"},
    "vww_96_int8": {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"},
    "pretrainedResnet_quant": {"CONV_2D", "ADD", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"},
    "pretrainedResnet_large_int8": {"CONV_2D", "ADD", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"},
    "str_ww_ref_model": {"CONV_2D", "DEPTHWISE_CONV_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"},
}

# What the issue names beyond those models (MobileNet-v3-style activations, unfused ReLUs, elementwise bounds)
EXTRA_OPS = {"MAX_POOL_2D", "LOGISTIC", "TANH", "RELU", "RELU6", "HARD_SWISH", "MINIMUM", "MAXIMUM"}


def test_every_mlperf_tiny_int8_operator_is_supported():
    needed = set().union(*MLPERF_TINY_INT8_OPS.values()) | EXTRA_OPS
    assert needed <= set(fw.SUPPORTED_OPS), sorted(needed - set(fw.SUPPORTED_OPS))


# --------------------------------------------------------------------------------------------------
# One-operator models built with the flatbuffer object API
# --------------------------------------------------------------------------------------------------
def one_op_model(op_name: str, shape: list[int], in_q: tuple[float, int] | None, out_q: tuple[float, int] | None,
                 in_type: str = "INT8", out_type: str = "INT8", beta: float | None = None) -> bytes:
    """A .tflite holding one unary operator (`in_q` / `out_q`: scale and zero point, None for float)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    def tensor(name: str, ttype: str, q: tuple[float, int] | None) -> object:
        t = schema.TensorT()
        t.shape, t.type, t.buffer, t.name = list(shape), getattr(schema.TensorType, ttype), 0, name
        if q is not None:
            qp = schema.QuantizationParametersT()
            qp.scale, qp.zeroPoint = [float(q[0])], [int(q[1])]
            t.quantization = qp
        return t

    model = schema.ModelT()
    model.version, model.buffers = 3, [schema.BufferT()]
    code = schema.OperatorCodeT()
    code.builtinCode = getattr(schema.BuiltinOperator, op_name)
    code.deprecatedBuiltinCode, code.version = min(code.builtinCode, 127), 1
    model.operatorCodes = [code]
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    if beta is not None:
        op.builtinOptionsType = schema.BuiltinOptions.SoftmaxOptions
        op.builtinOptions = schema.SoftmaxOptionsT()
        op.builtinOptions.beta = beta
    sg = schema.SubGraphT()
    sg.tensors = [tensor("x", in_type, in_q), tensor("y", out_type, out_q)]
    sg.inputs, sg.outputs, sg.operators = [0], [1], [op]
    model.subgraphs = [sg]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _quantisations(op_name: str, rng: np.random.Generator, n: int) -> list[tuple[tuple[float, int], tuple[float, int]]]:
    """(input, output) quantisations: TFLite's fixed outputs where the kernel assumes one, else random ones."""
    cases = []
    for _ in range(n):
        in_q = (float(np.float32(10 ** rng.uniform(-3, 0))), int(rng.integers(-128, 128)))
        if op_name == "LOGISTIC":
            out_q = (1 / 256, -128)
        elif op_name == "TANH":
            out_q = (1 / 128, 0)
        elif op_name == "RELU6":
            out_q = in_q  # the converter keeps the input's quantisation; TFLite Micro's kernel assumes it
        elif op_name == "HARD_SWISH":  # LiteRT and TFLite Micro need in_scale / 128 / out_scale below one
            out_q = (float(np.float32(in_q[0] * rng.uniform(0.2, 2.0))), int(rng.integers(-128, 128)))
        else:
            out_q = (float(np.float32(10 ** rng.uniform(-3, 0))), int(rng.integers(-128, 128)))
        cases.append((in_q, out_q))
    cases.append(((1 / 16, 0), (1 / 256, -128) if op_name == "LOGISTIC" else (1 / 128, 0)))  # power-of-two scales
    return cases


@pytest.mark.parametrize("op_name", ["LOGISTIC", "TANH", "HARD_SWISH", "RELU", "RELU6", "QUANTIZE", "DEQUANTIZE"])
def test_table_operators_equal_tflite_micro_on_all_256_values(op_name, tmp_path):
    every_value = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    rng = np.random.default_rng(zlib.crc32(op_name.encode()))
    for k, (in_q, out_q) in enumerate(_quantisations(op_name, rng, 12)):
        out_type = "FLOAT32" if op_name == "DEQUANTIZE" else "INT8"
        path = tmp_path / f"{op_name}_{k}.tflite"
        path.write_bytes(one_op_model(op_name, [1, 256], in_q, None if out_type == "FLOAT32" else out_q,
                                      out_type=out_type))
        graph = fw.read_graph(path)
        table = fw.unary_table(graph.ops[0], graph.tensors[0], graph.tensors[1])
        ref = fw.tflm_outputs(path, every_value)[0]
        assert table.dtype == ref.dtype and fw.same_bits(table, ref), (op_name, in_q, out_q,
                                                                        np.nonzero(table != ref)[0][:8])


def test_softmax_with_an_output_tflite_micro_rejects_is_one_clear_error(tmp_path):
    from click.testing import CliRunner

    from edgeasc.cli import cli

    path = tmp_path / "softmax.tflite"
    path.write_bytes(one_op_model("SOFTMAX", [1, 10], (0.1, 3), (1 / 128, 0), beta=1.0))
    res = CliRunner().invoke(cli, ["firmware", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert "SOFTMAX" in res.output and "zero_point != -128" in res.output
    assert not (tmp_path / "out").exists()


def test_logistic_with_an_output_zero_point_tflite_micro_rejects_is_refused(tmp_path):
    path = tmp_path / "logistic.tflite"
    path.write_bytes(one_op_model("LOGISTIC", [1, 8], (1 / 16, 0), (1 / 256, 0)))
    graph = fw.read_graph(path)
    with pytest.raises(fw.FirmwareError, match="LOGISTIC: output zero point 0; TFLite Micro requires -128"):
        fw.unary_table(graph.ops[0], graph.tensors[0], graph.tensors[1])
    with pytest.raises(RuntimeError):  # TFLite Micro itself refuses it in Prepare
        fw.tflm_outputs(path, np.zeros((1, 8), dtype=np.int8))


def test_float_activations_inside_the_graph_stay_refused(tmp_path):
    path = tmp_path / "relu_f32.tflite"
    path.write_bytes(one_op_model("RELU", [1, 8], None, None, in_type="FLOAT32", out_type="FLOAT32"))
    with pytest.raises(fw.FirmwareError, match="uses FLOAT32 activation 'x'; firmware needs a full-integer int8"):
        fw.generate_firmware(path, tmp_path / "out")


# --------------------------------------------------------------------------------------------------
# Slow: host and Cortex-M builds
# --------------------------------------------------------------------------------------------------
needs_host = pytest.mark.skipif(fw.toolchain_missing("host") is not None, reason="gcc/make not installed")


@pytest.mark.slow
@needs_host
@pytest.mark.parametrize("in_q,beta,depth", [((0.0625, -3), 1.0, 10), ((0.25, 12), 1.0, 12), ((0.011, -128), 1.0, 7),
                                             ((0.9, 5), 0.5, 35), ((0.003, 0), 2.0, 4)])
def test_softmax_on_host_equals_tflite_micro(in_q, beta, depth, tmp_path):
    """Input scales from tiny to large (every difference contributes, or most are below diff_min), rows that
    hit ties, and a row length that is not a multiple of four."""
    path = tmp_path / "softmax.tflite"
    path.write_bytes(one_op_model("SOFTMAX", [3, depth], in_q, (1 / 256, -128), beta=beta))
    gen = fw.generate_firmware(path, tmp_path / "model")
    assert [x.kernel for x in gen.layers] == ["fw_softmax_s8"]
    host = fw.build_firmware("host", tmp_path / "model", tmp_path / "build")
    rng = np.random.default_rng(depth)
    x = rng.integers(-128, 128, (400, 3 * depth), dtype=np.int8)
    x[:50] = rng.integers(-3, 3, (50, 3 * depth))  # near ties
    x[50:60] = 127  # one value per row everywhere
    np.testing.assert_array_equal(fw.run_host(host, x, 3 * depth), fw.tflm_outputs(path, x))


def _keras_ops_model(tmp_path_factory, float_io: bool):
    """Conv -> MAX_POOL_2D -> unfused RELU6 / LOGISTIC / TANH / HARD_SWISH branches -> MAXIMUM / MINIMUM ->
    Dense(7) -> Dense(6) -> SOFTMAX, converted to full int8 (int8 or float32 input and output). The 7 -> 6
    layer's depth is not a multiple of four: FULLY_CONNECTED's tail loop runs."""
    pytest.importorskip("tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(3)
    x_in = keras.Input((12, 10, 2), batch_size=1)
    r = keras.layers.ReLU()(x_in)  # on the input: nothing to fuse into
    a = keras.layers.Conv2D(8, 3, padding="same")(keras.layers.Concatenate()([x_in, r]))
    p = keras.layers.MaxPooling2D((2, 2), strides=(2, 2), padding="same")(a)
    s = keras.layers.Activation("sigmoid")(p)
    t = keras.layers.Activation("tanh")(p)
    h = keras.layers.Lambda(lambda v: v * tf.nn.relu6(v + 3.0) / 6.0)(p)  # the converter's HARD_SWISH pattern
    m = keras.layers.Maximum()([s, t])
    n = keras.layers.Minimum()([h, keras.layers.ReLU(max_value=6.0)(p)])
    f = keras.layers.Flatten()(keras.layers.Concatenate()([m, n]))
    out = keras.layers.Softmax()(keras.layers.Dense(6)(keras.layers.Dense(7)(f)))
    model = keras.Model(x_in, out)
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(32):
            yield [rng.normal(0, 2, (1, 12, 10, 2)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not float_io:
        conv.inference_input_type = conv.inference_output_type = tf.int8
    path = tmp_path_factory.mktemp("ops_float" if float_io else "ops_int8") / "ops.tflite"
    path.write_bytes(conv.convert())
    return path


@pytest.fixture(scope="module", params=[False, True], ids=["int8_io", "float32_io"])
def ops_model(request, tmp_path_factory):
    return _keras_ops_model(tmp_path_factory, request.param)


@pytest.mark.slow
@needs_host
def test_new_operators_are_bit_exact_on_host_with_every_intermediate(ops_model, tmp_path):
    graph = fw.read_graph(ops_model)
    ops = {op.name for op in graph.ops}
    assert {"MAX_POOL_2D", "LOGISTIC", "TANH", "HARD_SWISH", "RELU", "RELU6", "MAXIMUM", "MINIMUM",
            "SOFTMAX"} <= ops, ops
    float_io = graph.tensors[graph.inputs[0]].dtype == "FLOAT32"
    assert float_io == ({"QUANTIZE", "DEQUANTIZE"} <= ops)
    report = fw.check_firmware(ops_model, None, tmp_path / "check", n_inputs=120, targets=(), n_layer_checks=3)
    assert report["host"]["bit_identical"] == 120 and report["host"]["layer_mismatches"] == [], report["host"]
    assert report["host"]["distinct_outputs"] > 100  # the outputs really vary with the input
    info = json.loads((tmp_path / "check/model/firmware.json").read_text())
    kernels = {x["kernel"] for x in info["layers"]}
    assert {"fw_maxpool_s8", "fw_table_s8", "fw_maximum_s8", "fw_minimum_s8", "fw_softmax_s8"} <= kernels
    assert float_io == ({"fw_quantize_f32_s8", "fw_table_f32"} <= kernels)


@pytest.mark.slow
def test_new_operators_on_emulated_cortex_m4(ops_model, tmp_path):
    if fw.toolchain_missing("cortex-m4"):
        pytest.skip(fw.toolchain_missing("cortex-m4"))
    graph = fw.read_graph(ops_model)
    fc_depths = [graph.tensors[op.inputs[1]].shape[1] for op in graph.ops if op.name == "FULLY_CONNECTED"]
    assert sorted(fc_depths) == [7, 480]  # 7: the SIMD loop's tail runs on the Cortex-M4
    report = fw.check_firmware(ops_model, None, tmp_path / "check", n_inputs=8, targets=("cortex-m4",),
                               n_layer_checks=0, n_emulated=4)
    m4 = report["targets"]["cortex-m4"]
    assert m4["identical_to_host"] and report["host"]["bit_identical"] == 8 and report["passed"]


@pytest.fixture(scope="module")
def dscnn_model(tmp_path_factory):
    """The MLPerf Tiny keyword-spotting DS-CNN's shape (49x10 input, 10x4 stride-2 stem, 3x3 depthwise and 1x1
    blocks of 64 channels, global average pooling, FULLY_CONNECTED; no SOFTMAX), one block, built here with
    TensorFlow: it exercises the Cortex-M kernels for 3x3 depthwise, large-window pooling and FULLY_CONNECTED."""
    pytest.importorskip("tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(5)
    x_in = keras.Input((49, 10, 1), batch_size=1)
    x = keras.layers.Conv2D(64, (10, 4), strides=(2, 2), padding="same", activation="relu")(x_in)
    x = keras.layers.DepthwiseConv2D((3, 3), padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(64, 1)(x)  # no ReLU: pooled sums of both signs
    x = keras.layers.AveragePooling2D((25, 5))(x)
    out = keras.layers.Dense(12)(keras.layers.Flatten()(x))  # no SOFTMAX: it saturates on random inputs
    model = keras.Model(x_in, out)
    rng = np.random.default_rng(1)

    def representative():
        for _ in range(32):
            yield [rng.normal(0, 1, (1, 49, 10, 1)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    path = tmp_path_factory.mktemp("dscnn") / "dscnn.tflite"
    path.write_bytes(conv.convert())
    return path


@pytest.mark.slow
@needs_host
def test_dscnn_block_bit_exact_on_host_and_cortex_m4(dscnn_model, tmp_path):
    graph = fw.read_graph(dscnn_model)
    assert [op.name for op in graph.ops] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "AVERAGE_POOL_2D",
                                             "FULLY_CONNECTED"]
    targets = () if fw.toolchain_missing("cortex-m4") else ("cortex-m4",)
    report = fw.check_firmware(dscnn_model, None, tmp_path / "check", n_inputs=100, targets=targets,
                               n_layer_checks=2, n_emulated=12)
    assert report["host"]["bit_identical"] == 100 and report["host"]["layer_mismatches"] == []
    assert report["host"]["distinct_outputs"] > 50
    if targets:  # the DSP paths (depthwise four channels at a time, SXTAB16 pooling, SMLAD FULLY_CONNECTED)
        assert report["targets"]["cortex-m4"]["identical_to_host"], report["targets"]
