"""The auditor: golden numbers computed by hand, the DCASE baseline, the MLPerf Tiny DS-CNN reference, budgets
and exit codes, and malformed files (exit 2, one line, no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import randomize_batchnorm
from torch import nn

from edgeasc.audit.checkpoint import audit_checkpoint
from edgeasc.audit.onnx import audit_onnx
from edgeasc.audit.report import audit_model, format_audit
from edgeasc.audit.result import peak_activation
from edgeasc.audit.tflite import audit_tflite
from edgeasc.budget import BUDGETS, Budget
from edgeasc.checkpoint import save_checkpoint
from edgeasc.cli import cli
from edgeasc.errors import AuditError
from edgeasc.models import create_model


# --------------------------------------------------------------------------------------------------
# Hand-built flatbuffers (no converter involved)
# --------------------------------------------------------------------------------------------------
def build_tflite(tensors, ops, inputs, outputs) -> bytes:
    """A .tflite from tensor specs `(name, shape, type name, data | None)` and ops `(builtin name | "CUSTOM:x",
    inputs, outputs)`, written with the TFLite schema's object API. int8 and int32 tensors (except one named
    `shape`) are quantised, so that LiteRT loads the model as the auditor requires."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    model = s.ModelT()
    model.version, model.description, model.buffers = 3, "hand-built", [s.BufferT()]
    sg = s.SubGraphT()
    sg.tensors = []
    for name, shape, ttype, data in tensors:
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name, list(shape), getattr(s.TensorType, ttype), 0
        if ttype in ("INT8", "INT32") and not (ttype == "INT32" and name == "shape"):
            t.quantization = s.QuantizationParametersT()  # int8 at scale 0.05; int32 biases at 0.05 * 0.05
            t.quantization.scale, t.quantization.zeroPoint = [0.05 if ttype == "INT8" else 0.0025], [0]
        if data is not None:
            b = s.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            model.buffers.append(b)
            t.buffer = len(model.buffers) - 1
        else:
            model.buffers.append(s.BufferT())
            t.buffer = len(model.buffers) - 1
        sg.tensors.append(t)
    codes, model.operatorCodes, sg.operators = {}, [], []
    for name, ins, outs in ops:
        if name not in codes:
            oc = s.OperatorCodeT()
            if name.startswith("CUSTOM:"):
                oc.builtinCode = oc.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
                oc.customCode = name.split(":", 1)[1]
            else:
                oc.builtinCode = oc.deprecatedBuiltinCode = getattr(s.BuiltinOperator, name)
            oc.version = 1
            codes[name] = len(model.operatorCodes)
            model.operatorCodes.append(oc)
        op = s.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = codes[name], list(ins), list(outs)
        sg.operators.append(op)
    sg.inputs, sg.outputs = list(inputs), list(outputs)
    model.subgraphs = [sg]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture(scope="module")
def hand_fc(tmp_path_factory):
    """int8 (1, 4) -> FULLY_CONNECTED (3 x 4 int8 weights, int32 bias) -> ADD (with itself) -> int8 (1, 3)."""
    pytest.importorskip("ai_edge_litert")
    path = tmp_path_factory.mktemp("hand") / "fc.tflite"
    path.write_bytes(build_tflite(
        [("in", (1, 4), "INT8", None), ("w", (3, 4), "INT8", np.ones((3, 4), np.int8)),
         ("b", (3,), "INT32", np.zeros(3, np.int32)), ("fc", (1, 3), "INT8", None), ("out", (1, 3), "INT8", None)],
        [("FULLY_CONNECTED", (0, 1, 2), (3,)), ("ADD", (3, 3), (4,))], (0,), (4,)))
    return path


def test_hand_built_tflite_golden(hand_fc):
    r = audit_tflite(hand_fc)
    assert r.param_count == 12 + 3
    assert r.param_bytes_by_dtype == {"int8": 12, "int32": 12}
    assert r.param_bytes == 24
    # FULLY_CONNECTED: 3 outputs x 4 inputs; ADD: one per output element
    assert r.macs == 12 + 3 and r.macs_dcase == 12
    assert r.macs_by_op == {"FULLY_CONNECTED": 12, "ADD": 3}
    # live at the ADD: fc (3) + out (3); at the FC: in (4) + fc (3)
    assert r.peak_activation_bytes == 7 and r.peak_activation_op == 0
    assert [(x.op, x.params, x.param_bytes, x.macs) for x in r.layers] == [
        ("FULLY_CONNECTED", 15, 24, 12), ("ADD", 0, 0, 3)]
    assert r.warnings == ()


def test_shape_constants_are_not_parameters_and_unknown_ops_warn(tmp_path):
    path = tmp_path / "custom.tflite"
    path.write_bytes(build_tflite(
        [("in", (1, 2, 3), "INT8", None), ("shape", (2,), "INT32", np.array([1, 6], np.int32)),
         ("flat", (1, 6), "INT8", None), ("scale", (6,), "INT8", np.arange(6, dtype=np.int8)),
         ("out", (1, 6), "INT8", None)],
        [("RESHAPE", (0, 1), (2,)), ("CUSTOM:MyOp", (2, 3), (4,))], (0,), (4,)))
    r = audit_tflite(path)
    assert r.param_count == 6 and r.param_bytes_by_dtype == {"int8": 6}  # the int32 shape is not a parameter
    assert r.macs == 0
    assert r.layers[1].op == "CUSTOM:MyOp"
    assert any("CUSTOM:MyOp has no MAC rule" in w for w in r.warnings)
    assert r.details["ops_without_rule"] == ["CUSTOM:MyOp"]


def test_peak_activation_takes_the_largest_live_set():
    # t0 (10 B) lives ops 0-2, t1 (5 B) op 1 only, t2 (7 B) ops 2-3
    assert peak_activation(4, {"t0": 10, "t1": 5, "t2": 7}, {"t0": 0, "t1": 1, "t2": 2},
                           {"t0": 2, "t1": 1, "t2": 3}) == (17, 2)
    assert peak_activation(0, {}, {}, {}) == (0, -1)


# --------------------------------------------------------------------------------------------------
# Budgets and the CLI
# --------------------------------------------------------------------------------------------------
def test_dcase_budget_is_data():
    assert BUDGETS["dcase2025"] == Budget(param_bytes=128_000, macs=30_000_000)
    assert BUDGETS["dcase2025"].mac_rule == "dcase"
    with pytest.raises(ValueError):
        Budget(param_bytes=0, macs=1)


def test_cli_within_and_over_budget(hand_fc):
    runner = CliRunner()
    res = runner.invoke(cli, ["audit", str(hand_fc)])
    assert res.exit_code == 0, res.output
    assert "within budget" in res.output and "FULLY_CONNECTED" in res.output
    res = runner.invoke(cli, ["audit", str(hand_fc), "--max-param-bytes", "20"])
    assert res.exit_code == 1
    assert "parameter memory 24 bytes exceeds 20 by 4 bytes" in res.output
    res = runner.invoke(cli, ["audit", str(hand_fc), "--max-macs", "14", "--mac-rule", "deployed", "--no-layers"])
    assert res.exit_code == 1
    assert "MACs (deployed rule) 15 exceed 14 by 1" in res.output
    assert runner.invoke(cli, ["audit", str(hand_fc), "--max-macs", "14"]).exit_code == 0  # DCASE rule: 12


def test_cli_json_has_the_documented_fields(hand_fc):
    res = CliRunner().invoke(cli, ["audit", str(hand_fc), "--json"])
    assert res.exit_code == 0
    d = json.loads(res.stdout)
    for key in ("param_count", "param_bytes", "param_bytes_by_dtype", "macs", "peak_activation_bytes", "budget",
                "within_budget", "layers"):
        assert key in d
    assert d["budget"] == {"name": "dcase2025", "param_bytes": 128_000, "macs": 30_000_000, "mac_rule": "dcase"}
    assert d["within_budget"] is True and d["macs"] == 15 and len(d["layers"]) == 2


def test_unknown_budget_suggests_the_close_name(hand_fc):
    res = CliRunner().invoke(cli, ["audit", str(hand_fc), "--budget", "dcase2024"])
    assert res.exit_code == 2
    assert "did you mean 'dcase2025'" in res.output


@pytest.fixture(scope="module")
def malformed(tmp_path_factory, hand_fc):
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    good = hand_fc.read_bytes()
    files = {
        "truncated.tflite": good[: len(good) // 2],
        "random.tflite": rng.bytes(2000),
        "empty.tflite": b"",
        "text.onnx": b"this is not an onnx model\n" * 20,
        "random.onnx": rng.bytes(2000),
        "empty.onnx": b"",
        "random.pt": rng.bytes(2000),
        "model.bin": rng.bytes(64),
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    return d, sorted(files) + ["missing.tflite"]


def test_malformed_files_exit_2_with_one_line(malformed):
    folder, names = malformed
    runner = CliRunner()
    for name in names:
        res = runner.invoke(cli, ["audit", str(folder / name)])
        assert res.exit_code == 2, (name, res.output)
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, res.output)
        assert "Traceback" not in res.output


def test_truncated_tflite_names_the_problem(malformed):
    folder, _ = malformed
    with pytest.raises(AuditError, match="not a readable TFLite model|not a TFLite flatbuffer"):
        audit_model(folder / "truncated.tflite")
    with pytest.raises(AuditError, match="not a TFLite flatbuffer"):
        audit_model(folder / "random.tflite")
    with pytest.raises(AuditError, match="too short"):
        audit_model(folder / "empty.tflite")


# --------------------------------------------------------------------------------------------------
# A hand-built torch model: numbers by hand for ONNX (fast) and int8 TFLite (slow, converted)
# --------------------------------------------------------------------------------------------------
class Golden(nn.Module):
    """x (1, 1, 8, 6) -> conv 3x3 (1->4, bias) + ReLU -> a + ReLU(depthwise 3x3 (a)) -> conv 1x1 (4->6) + ReLU
    -> global average pool -> Linear(6 -> 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.pw = nn.Conv2d(4, 6, 1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        a = torch.relu(self.conv1(x))
        c = a + torch.relu(self.dw(a))
        d = torch.relu(self.pw(c))
        return self.fc(nn.functional.adaptive_avg_pool2d(d, 1).flatten(1))


GOLDEN_INPUT = (1, 1, 8, 6)
# MACs by hand (output elements x kernel elements x input channels per group):
CONV1 = (4 * 8 * 6) * (3 * 3 * 1)  # 1,728
DW = (4 * 8 * 6) * (3 * 3)  # 1,728
ADD = 4 * 8 * 6  # 192: one per output element
PW = (6 * 8 * 6) * 4  # 1,152
MEAN = 6 * 8 * 6  # 288: one per input element
FC = 3 * 6  # 18
GOLDEN_PARAMS = (36 + 4) + (36 + 4) + (24 + 6) + (18 + 3)  # 131
GOLDEN_BIASES = 4 + 4 + 6 + 3


def test_golden_onnx_by_hand(tmp_path):
    pytest.importorskip("onnx")
    from edgeasc.deploy.onnx import export_onnx

    torch.manual_seed(0)
    path = export_onnx(Golden(), tmp_path / "golden.onnx", input_size=GOLDEN_INPUT)
    r = audit_onnx(path)
    assert r.param_count == GOLDEN_PARAMS
    assert r.param_bytes_by_dtype == {"float32": 4 * GOLDEN_PARAMS}
    assert r.macs == CONV1 + DW + ADD + PW + MEAN + FC == 5_106
    assert r.macs_dcase == CONV1 + DW + PW + FC == 4_626
    assert r.macs_by_op == {"Conv": CONV1 + DW + PW, "Relu": 0, "Add": ADD, "GlobalAveragePool": MEAN,
                            "Flatten": 0, "Gemm": FC}
    # float32, nothing in place: at the second ReLU a (768 B), the depthwise output (768 B) and b (768 B) live
    assert r.peak_activation_bytes == 3 * 4 * 192 == 2_304
    assert r.details["opset"] >= 17


def test_baseline_checkpoint_worked_example(tmp_path):
    """The DCASE baseline: 61,148 parameters and 29,419,156 MACs; BatchNorm explains the deployed difference."""
    pytest.importorskip("onnx")
    model = create_model("cpmobile_baseline").eval()
    path = save_checkpoint(tmp_path / "baseline.pt", model, stage="test")
    r = audit_checkpoint(path)
    dc, dep = r.details["dcase"], r.details["deployed"]
    assert (r.param_count, r.macs_dcase) == (61_148, 29_419_156)
    assert r.param_bytes == 122_296 and r.param_bytes_by_dtype == {"float16": 122_296}
    assert r.within_budget is None  # no budget attached by audit_checkpoint itself
    # Folding: each BatchNorm's 2C parameters become C conv biases; its 2C DCASE MACs disappear.
    assert dep["params"] == dc["params"] - dc["batchnorm_params"] // 2
    assert dep["macs_dcase_rule"] == dc["macs"] - dc["batchnorm_macs"]
    assert dep["macs_by_op"]["Conv"] == dep["macs_dcase_rule"]
    # fvcore counts the same convolutions (and BatchNorm at 2 per element, which folding removes).
    if r.details["fvcore"]["macs"] is not None:
        assert r.details["fvcore"]["by_operator"]["conv"] == dep["macs_by_op"]["Conv"]
    # int8 deployment: int8 weights plus int32 biases, one bias per BatchNorm channel
    assert dep["param_bytes_int8"] == dep["params"] + 3 * (dc["batchnorm_params"] // 2)
    text = format_audit(audit_model(path), layers=False)
    assert "61,148" in text and "29,419,156" in text and "within budget" in text


def test_seed_student_checkpoint_within_budget(tmp_path):
    pytest.importorskip("onnx")
    path = save_checkpoint(tmp_path / "s1.pt", create_model("sscp_mobile_s1").eval(), stage="test")
    res = CliRunner().invoke(cli, ["audit", str(path), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert (d["param_count"], d["macs_dcase"], d["param_bytes"]) == (63_748, 29_982_132, 127_496)
    assert d["within_budget"] is True


# --------------------------------------------------------------------------------------------------
# Converted models (slow): the hand-built model and the MLPerf Tiny keyword-spotting DS-CNN
# --------------------------------------------------------------------------------------------------
def _conv_bn_relu(cin, cout, k, stride=1, padding=0, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU())


class DSCNN(nn.Module):
    """MLPerf Tiny keyword spotting DS-CNN (input 49 x 10 MFCC): conv 10x4 stride 2 to 64 channels (25 x 5
    output, as TensorFlow's 'same' gives), four depthwise-separable blocks, average pool, 12 classes.

    Padding (5, 1) gives the 25 x 5 output of TF's asymmetric 'same' padding (4/5, 1/1); the MACs are the
    same. (A separate ZeroPad2d is mis-converted by onnx2tf 1.28.8: it pads the batch axis.)"""

    def __init__(self) -> None:
        super().__init__()
        self.pad = nn.Identity()
        self.conv = _conv_bn_relu(1, 64, (10, 4), stride=2, padding=(5, 1))
        self.blocks = nn.Sequential(*[nn.Sequential(_conv_bn_relu(64, 64, 3, padding=1, groups=64),
                                                    _conv_bn_relu(64, 64, 1)) for _ in range(4)])
        self.pool = nn.AdaptiveAvgPool2d(1)  # 25 x 5 window: becomes MEAN (onnx2tf fails on AvgPool2d((25, 5)))
        self.fc = nn.Linear(64, 12)

    def forward(self, x):
        return self.fc(self.pool(self.blocks(self.conv(self.pad(x)))).flatten(1))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Golden and DS-CNN converted to int8 TFLite in one converter process. Their values are irrelevant to
    the counts, so they calibrate on standard-normal inputs (products calibrate on real features)."""
    pytest.importorskip("onnx2tf")
    from edgeasc.deploy.convert import convert_onnx_to_tflite
    from edgeasc.deploy.onnx import INPUT_NAME, export_onnx

    d = tmp_path_factory.mktemp("converted")
    torch.manual_seed(0)
    jobs = []
    for name, model, size in (("golden", Golden(), GOLDEN_INPUT), ("dscnn", randomize_batchnorm(DSCNN()), (1, 1, 49, 10))):
        onnx_path = export_onnx(model.eval(), d / f"{name}.onnx", input_size=size)
        calib = d / f"{name}_calib.npy"
        np.save(calib, np.random.default_rng(0).standard_normal((8, size[2], size[3], 1)).astype(np.float32))
        jobs.append({"onnx": str(onnx_path), "out_dir": str(d / name), "calibration_npy": str(calib),
                     "input_name": INPUT_NAME})
    convert_onnx_to_tflite(jobs, d / "convert.log")
    return {name: d / name / f"{name}_full_integer_quant.tflite" for name in ("golden", "dscnn")} | {"dir": d}


@pytest.mark.slow
def test_golden_int8_tflite_by_hand(converted):
    r = audit_tflite(converted["golden"])
    assert [x.op for x in r.layers if x.op not in ("RESHAPE", "QUANTIZE", "DEQUANTIZE")] == [
        "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "CONV_2D", "MEAN", "FULLY_CONNECTED"]
    assert r.param_count == GOLDEN_PARAMS
    # int8 weights (1 B) and int32 biases (4 B)
    assert r.param_bytes_by_dtype == {"int8": GOLDEN_PARAMS - GOLDEN_BIASES, "int32": 4 * GOLDEN_BIASES}
    assert r.param_bytes == 114 + 68 == 182
    assert r.macs == 5_106 and r.macs_dcase == 4_626
    assert r.macs_by_op["CONV_2D"] == CONV1 + PW and r.macs_by_op["DEPTHWISE_CONV_2D"] == DW
    assert r.macs_by_op["ADD"] == ADD and r.macs_by_op["MEAN"] == MEAN and r.macs_by_op["FULLY_CONNECTED"] == FC
    # int8, 1 B per element: at the ADD, a (192), the depthwise output (192) and the sum (192) are live
    assert r.peak_activation_bytes == 3 * 192 == 576
    assert r.layers[r.peak_activation_op].op == "ADD"
    assert set(r.details["activation_dtypes"]) == {"int8"}


@pytest.mark.slow
def test_mlperf_tiny_dscnn_reference(converted):
    """The published reference: 2,664,768 MACs and 22,604 weights and biases."""
    r = audit_tflite(converted["dscnn"])
    assert r.param_count == 22_604
    assert r.macs == 2_664_768
    biases = 64 + 4 * 64 + 4 * 64 + 12
    assert r.param_bytes == (22_604 - biases) + 4 * biases
    res = CliRunner().invoke(cli, ["audit", str(converted["dscnn"]), "--no-layers"])
    assert res.exit_code == 0 and "2,664,768" in res.output


@pytest.mark.slow
def test_converted_models_run(converted):
    """Every converted file loads and runs in LiteRT (reference kernels)."""
    from edgeasc.deploy.runtime import TFLiteModel

    for name, shape in (("golden", (1, 1, 8, 6)), ("dscnn", (1, 1, 49, 10))):
        m = TFLiteModel(converted[name])
        y = m.predict(np.random.default_rng(1).standard_normal((2, *shape[1:])).astype(np.float32))
        assert y.shape == (2, 3 if name == "golden" else 12) and np.all(np.isfinite(y))


def _mutants(good: bytes, n: int, seed: int):
    """Seeded mutants of a model: 1, 4 or 50 random bytes replaced (most stay readable flatbuffers at 1)."""
    rng = np.random.default_rng(seed)
    for k in range(n):
        b = bytearray(good)
        for p in rng.integers(0, len(b), (1, 4, 50)[k % 3]):
            b[p] = rng.integers(0, 256)
        yield k, bytes(b)


def _tflm_runs(path) -> bool:
    """An independent check that a file is a usable model: TensorFlow Lite Micro (the runtime the file ships
    to) builds its interpreter and runs one inference, in a child process."""
    code = ("import sys, numpy as np; from tflite_micro.python.tflite_micro import runtime as t; "
            "i = t.Interpreter.from_file(sys.argv[1], arena_size=4_000_000); "
            "d = i.get_input_details(0); i.set_input(np.zeros(d['shape'], d['dtype']), 0); i.invoke()")
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True).returncode == 0


@pytest.mark.slow
def test_fuzzed_int8_models_never_pass_the_audit_invalid_nor_give_a_traceback(converted, tmp_path):
    """200 seeded mutants of a real int8 model (the DS-CNN converted above): `edgeasc audit --json` gives
    exit 0 or 1 only for a file TensorFlow Lite Micro still runs, with non-negative counts no larger than the file allows,
    and otherwise exit 2 with one line; never a traceback."""
    good = converted["dscnn"].read_bytes()
    runner, verdicts = CliRunner(), {0: 0, 1: 0, 2: 0}
    for k, data in _mutants(good, 200, seed=0):
        path = tmp_path / f"m{k}.tflite"
        path.write_bytes(data)
        res = runner.invoke(cli, ["audit", str(path), "--json"])
        assert res.exit_code in (0, 1, 2) and "Traceback" not in res.output, (k, res.output[-500:])
        assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), (k, res.exception)
        verdicts[res.exit_code] += 1
        if res.exit_code == 2:
            assert len(res.output.strip().splitlines()) == 1 and "error:" in res.output, (k, res.output)
            continue
        report = json.loads(res.output)
        assert 0 <= report["param_bytes"] <= len(data) and report["param_count"] >= 0, k
        assert report["macs"] >= 0 and report["macs_dcase"] >= 0 and report["peak_activation_bytes"] >= 0, k
        assert _tflm_runs(path), f"mutant {k} was audited (exit {res.exit_code}) but TFLite Micro cannot run it"
    assert verdicts[2] >= 50 and verdicts[0] + verdicts[1] >= 20, verdicts  # the mutants exercise both sides


@pytest.mark.slow
def test_fuzzed_int8_models_give_firmware_and_bench_one_line_errors(converted, tmp_path):
    from edgeasc.bench.harness import bench_model
    from edgeasc.errors import EdgeAscError
    from edgeasc.firmware.generate import generate_firmware

    good = converted["dscnn"].read_bytes()
    for k, data in _mutants(good, 60, seed=1):
        path = tmp_path / f"m{k}.tflite"
        path.write_bytes(data)
        for run in (lambda: generate_firmware(path, tmp_path / f"fw{k}"),
                    lambda: bench_model(path, runs=1, warmup=0, n_inputs=1)):
            try:
                run()
            except EdgeAscError as exc:
                assert exc.exit_code == 2 and "\n" not in str(exc), (k, str(exc))
