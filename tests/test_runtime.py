"""edgeasc.deploy.runtime: interpreter creation, backend preference and int8 (de)quantisation.

The model under test is a real .tflite written with the TFLite flatbuffer schema (one int8 FULLY_CONNECTED
whose requantisation scale is exactly 1), so its int8 output can be computed by hand and compared bit for
bit with LiteRT's reference kernels, and with TensorFlow's interpreter as the fallback backend.
"""

import sys

import numpy as np
import pytest

from edgeasc.deploy.runtime import (
    BACKENDS,
    ModelFileError,
    RuntimeUnavailableError,
    TFLiteModel,
    available_backend,
    dequantize,
    quantize,
)

S_IN, ZP_IN, S_W, ZP_OUT = 0.5, -3, 0.25, 5
S_OUT = S_IN * S_W  # requantisation multiplier exactly 1: the int8 result is integer arithmetic only


QUANT = (S_IN, ZP_IN, S_W, S_OUT, ZP_OUT)
"""(input scale, input zero point, weight scale, output scale, output zero point) of the int8 test model."""


def build_fc_tflite(weights: np.ndarray, bias: np.ndarray, quant: tuple | None = QUANT,
                    input_shape: tuple[int, ...] | None = None, description: str = "hand-built") -> bytes:
    """input (1, K) (or `input_shape`, K elements) -> FULLY_CONNECTED (weights (N, K), bias (N,)) -> (1, N).

    With `quant` (`QUANT`'s layout): int8 input, weights and output, int32 bias at scale s_in * s_w; with
    `quant=None`: float32 throughout."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    n, k = weights.shape
    model = s.ModelT()
    model.version = 3
    model.description = description
    model.buffers = []

    def buffer(data=None) -> int:
        b = s.BufferT()
        if data is not None:
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
        model.buffers.append(b)
        return len(model.buffers) - 1

    def tensor(name, shape, ttype, buf, scale=None, zp=None):
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name, list(shape), ttype, buf
        if scale is not None:
            q = s.QuantizationParametersT()
            q.scale, q.zeroPoint = [float(scale)], [int(zp)]
            t.quantization = q
        return t

    buffer()  # buffer 0 is the empty sentinel
    shape_in = input_shape or (1, k)
    if quant is None:
        f32 = s.TensorType.FLOAT32
        tensors = [tensor("input", shape_in, f32, buffer()),
                   tensor("weights", (n, k), f32, buffer(weights.astype(np.float32))),
                   tensor("bias", (n,), f32, buffer(bias.astype(np.float32))),
                   tensor("output", (1, n), f32, buffer())]
    else:
        s_in, zp_in, s_w, s_out, zp_out = quant
        tensors = [tensor("input", shape_in, s.TensorType.INT8, buffer(), s_in, zp_in),
                   tensor("weights", (n, k), s.TensorType.INT8, buffer(weights.astype(np.int8)), s_w, 0),
                   tensor("bias", (n,), s.TensorType.INT32, buffer(bias.astype(np.int32)), s_in * s_w, 0),
                   tensor("output", (1, n), s.TensorType.INT8, buffer(), s_out, zp_out)]
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.FULLY_CONNECTED
    code.version = 1 if quant is None else 4
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, 2], [3]
    op.builtinOptionsType = s.BuiltinOptions.FullyConnectedOptions
    op.builtinOptions = s.FullyConnectedOptionsT()
    sg = s.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators, sg.name = tensors, [0], [3], [op], "main"
    model.operatorCodes, model.subgraphs = [code], [sg]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


WEIGHTS = np.array([[3, -2, 1, 0], [-1, 4, -3, 2], [2, 2, -2, -1]])
BIAS = np.array([7, -11, 3])


def fc_reference(q_in: np.ndarray) -> np.ndarray:
    """TFLite's int8 FULLY_CONNECTED with multiplier 1: acc = sum((q - zp_in) * w) + bias; out = acc + zp_out."""
    acc = (q_in.astype(np.int64) - ZP_IN) @ WEIGHTS.T + BIAS
    return np.clip(acc + ZP_OUT, -128, 127).astype(np.int8)


@pytest.fixture(scope="module")
def fc_model(tmp_path_factory):
    pytest.importorskip("ai_edge_litert")
    path = tmp_path_factory.mktemp("fc") / "fc_int8.tflite"
    path.write_bytes(build_fc_tflite(WEIGHTS, BIAS))
    return path


def test_quantize_rounds_half_away_from_zero_and_saturates():
    x = np.array([0.25, -0.25, 0.75, 1.0, 100.0, -100.0])
    q = quantize(x, scale=0.5, zero_point=0)
    # 0.5 -> 1, -0.5 -> -1 (std::round), 1.5 -> 2, 2 -> 2, saturated at the int8 limits
    assert q.tolist() == [1, -1, 2, 2, 127, -128]
    assert q.dtype == np.int8
    assert quantize(np.array([0.0]), 0.1, -7).tolist() == [-7]


def test_dequantize_inverts_quantize_within_half_a_step():
    rng = np.random.default_rng(0)
    scale, zp = 10 / 255, 3
    x = rng.uniform((-128 - zp) * scale, (127 - zp) * scale, 1000)  # the representable range: no saturation
    back = dequantize(quantize(x, scale, zp), scale, zp)
    assert back.dtype == np.float32
    assert np.max(np.abs(back - x)) <= scale / 2 + 1e-6


def test_litert_is_preferred_when_installed():
    pytest.importorskip("ai_edge_litert")
    assert available_backend() == "ai-edge-litert"
    assert BACKENDS[0] == "ai-edge-litert"


def test_unknown_backend_is_a_clean_error(fc_model):
    with pytest.raises(RuntimeUnavailableError, match="unknown TFLite backend"):
        TFLiteModel(fc_model, backend="tflite-micro")


def test_missing_model_is_a_clean_error(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        TFLiteModel(tmp_path / "nope.tflite")


def test_int8_model_matches_hand_computed_integers(fc_model):
    m = TFLiteModel(fc_model)
    assert m.backend == "ai-edge-litert" and m.reference_kernels
    assert (m.input.dtype, m.input.scale, m.input.zero_point) == ("int8", S_IN, ZP_IN)
    assert (m.output.dtype, m.output.scale, m.output.zero_point) == ("int8", S_OUT, ZP_OUT)
    rng = np.random.default_rng(1)
    x = rng.uniform(-8, 8, (50, 4)).astype(np.float32)
    q_in = quantize(x, S_IN, ZP_IN)
    want = dequantize(fc_reference(q_in), S_OUT, ZP_OUT)
    got = np.stack([m.run_one(xi) for xi in x])
    np.testing.assert_array_equal(got, want)  # bit-exact: quantisation, kernel and dequantisation


def test_threads_give_the_same_results(fc_model):
    m = TFLiteModel(fc_model)
    x = np.random.default_rng(2).uniform(-8, 8, (40, 4)).astype(np.float32)
    serial = m.predict(x, workers=1)
    np.testing.assert_array_equal(m.predict(x, workers=4), serial)
    np.testing.assert_array_equal(serial, np.stack([m.run_one(xi) for xi in x]))
    with pytest.raises(ModelFileError, match="do not fit the model input"):
        m.predict(np.zeros((2, 1, 3, 4), np.float32))


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_tensorflow_fallback_is_bit_exact_with_litert(fc_model, monkeypatch):
    """With ai-edge-litert and tflite-runtime absent, tf.lite runs the same reference kernels."""
    pytest.importorskip("tensorflow")
    x = np.random.default_rng(3).uniform(-8, 8, (20, 4)).astype(np.float32)
    want = np.stack([TFLiteModel(fc_model).run_one(xi) for xi in x])
    for name in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` raise ImportError
    assert available_backend() == "tensorflow"
    m = TFLiteModel(fc_model)
    assert m.backend == "tensorflow"
    np.testing.assert_array_equal(np.stack([m.run_one(xi) for xi in x]), want)


def test_no_backend_installed_names_the_package(monkeypatch):
    for name in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter",
                 "tensorflow"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(RuntimeUnavailableError, match="ai-edge-litert"):
        available_backend()
