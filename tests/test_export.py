"""Export: PyTorch -> ONNX -> TFLite float32 and full-integer int8, every artifact loaded and run, parity with
torch, deployment metadata, calibration on real training clips, and `edgeasc evaluate MODEL.tflite`.

Conversions run once per module (TensorFlow start-up dominates); they are marked slow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import randomize_batchnorm
from torch import nn

from edgeasc.checkpoint import save_checkpoint
from edgeasc.cli import cli
from edgeasc.config import TrainConfig, to_dict
from edgeasc.data.dataset import TAUDataset
from edgeasc.deploy.calibration import select_calibration_clips
from edgeasc.deploy.export import CALIBRATION_IDS_FILE, EXPORT_FORMATS
from edgeasc.deploy.onnx import export_onnx, fold_batchnorm
from edgeasc.deploy.parity import PARITY_TARGETS, format_export_report, parity_summary
from edgeasc.labels import SCENES
from edgeasc.models import create_model


def randomized(name: str, seed: int = 0) -> nn.Module:
    """A registered model with trained-looking BatchNorm statistics (so folding matters)."""
    torch.manual_seed(seed)
    return randomize_batchnorm(create_model(name), seed)


# --------------------------------------------------------------------------------------------------
# Fast: no converter
# --------------------------------------------------------------------------------------------------
def test_export_formats_table():
    assert [f.key for f in EXPORT_FORMATS] == ["onnx", "tflite_float32", "tflite_int8"]
    assert [f.filename for f in EXPORT_FORMATS] == ["model.onnx", "model_float32.tflite", "model_int8.tflite"]
    assert "calib_clips" in EXPORT_FORMATS[2].options
    assert PARITY_TARGETS["tflite_int8"] == {"min_agreement": 0.99, "max_accuracy_drop_pp": 1.0}


def test_fold_batchnorm_keeps_outputs_and_removes_every_batchnorm():
    model = randomized("test_sscp_mobile")
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.randn(3, 1, 256, 65)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)


def test_onnx_is_opset_17_batch_1_folded_with_metadata(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = randomized("test_cpmobile")
    path = export_onnx(model, tmp_path / "m.onnx", metadata={"model_name": "test_cpmobile", "labels": list(SCENES)})
    proto = onnx.load(str(path))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, 256, 65]
    assert not [n for n in proto.graph.node if n.op_type == "BatchNormalization"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["model_name"] == "test_cpmobile" and json.loads(meta["labels"]) == list(SCENES)
    # the zero-padded average pooling of the strided shortcuts becomes an explicit Pad + an unpadded pool
    pools = [n for n in proto.graph.node if n.op_type == "AveragePool"]
    producers = {o: n.op_type for n in proto.graph.node for o in n.output}
    assert pools and all(producers[n.input[0]] == "Pad" for n in pools)
    assert all(not any(onnx.helper.get_attribute_value(a)) for n in pools for a in n.attribute if a.name == "pads")
    x = np.random.default_rng(0).standard_normal((1, 1, 256, 65)).astype(np.float32)
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"logmel": x})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), model(torch.from_numpy(x)), rtol=1e-4, atol=1e-4)


def test_calibration_subset_is_seeded_and_class_balanced(tiny_data):
    clips = TAUDataset(tiny_data).clips("split25")
    a = select_calibration_clips(clips, 40, seed=0)
    assert a == select_calibration_clips(clips, 40, seed=0)
    assert a != select_calibration_clips(clips, 40, seed=1)
    counts = [sum(c.scene == s for c in a) for s in SCENES]
    assert counts == [4] * 10
    assert set(a) <= set(clips) and len(set(a)) == 40
    assert select_calibration_clips(clips, 10_000, seed=0) == clips  # the whole split, in file order
    with pytest.raises(ValueError):
        select_calibration_clips(clips, 0)


def test_calibration_features_do_not_depend_on_the_thread_count():
    """Every int8 scale comes from these numbers: the same checkpoint must calibrate the same on any machine."""
    from edgeasc.config import FrontendConfig
    from edgeasc.deploy.calibration import calibration_features

    waves = np.random.default_rng(0).standard_normal((8, 32000)).astype(np.float32) * 0.1
    threads = torch.get_num_threads()
    try:
        runs = []
        for n in (1, 2, 1):
            torch.set_num_threads(n)
            runs.append(calibration_features(waves, FrontendConfig()))
            assert torch.get_num_threads() == n  # restored
    finally:
        torch.set_num_threads(threads)
    assert runs[0].shape == (8, 1, 256, 65) and all(np.array_equal(runs[0], r) for r in runs[1:])


def test_parity_summary_arithmetic():
    y = np.array([0, 1, 2, 3])
    torch_logits = np.eye(10, dtype=np.float32)[[0, 1, 2, 2]] * 5  # 3 of 4 right
    other = torch_logits.copy()
    other[3] = np.eye(10)[3] * 5  # flips clip 3 to the right class
    results, checks = parity_summary({"torch": torch_logits, "tflite_int8": other}, y, ["a", "a", "b", "b"])
    assert results["tflite_int8"]["agreement"] == 0.75 and results["tflite_int8"]["disagreements"] == 1
    assert results["tflite_int8"]["max_abs_logit_error"] == 5.0
    assert results["torch"]["accuracy"] == 0.75 and results["tflite_int8"]["accuracy"] == 1.0
    assert results["tflite_int8"]["accuracy_drop_pp"] < 0  # it gained
    assert [(c["metric"], c["passed"]) for c in checks] == [("agreement", False), ("accuracy_drop_pp", True)]
    assert results["tflite_int8"]["disagreement_max_margin"] == 5.0 and results["tflite_int8"]["flippable_fraction"] == 1


def test_parity_summary_explains_misses_by_torch_margins():
    """Only clips whose torch top-2 margin is below 2 x the max logit error can flip: a hand-made near-tie."""
    torch_logits = np.zeros((4, 10), dtype=np.float32)
    torch_logits[:, 0] = [1.0, 1.0, 1.0, 1.0]
    torch_logits[:, 1] = [0.9, 0.5, 0.0, 0.95]  # margins 0.1, 0.5, 1.0, 0.05
    int8 = torch_logits.copy()
    int8[0, :2] = [0.96, 0.98]  # error 0.08 flips the 0.1 margin
    int8[1, :2] = [0.92, 0.56]  # the same error size cannot flip 0.5
    results, checks = parity_summary({"torch": torch_logits, "tflite_int8": int8}, np.zeros(4, dtype=int), ["a"] * 4)
    r = results["tflite_int8"]
    assert r["disagreements"] == 1 and r["max_abs_logit_error"] == pytest.approx(0.08, abs=1e-6)
    assert r["disagreement_max_margin"] == pytest.approx(0.1, abs=1e-6)
    assert r["flippable_fraction"] == 0.5  # margins 0.1 and 0.05 are <= 0.16; 0.5 and 1.0 are not
    text = format_export_report({"model_name": "m", "eval": {"split": "test", "n_clips": 4}, "results": results,
                                 "checks": checks})
    assert "its 1 disagreements have a torch top-2 margin <= 0.100; 50.0% of clips are within" in text


def test_export_rejects_bad_input_with_one_line(tmp_path, tiny_data):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    runner = CliRunner()
    res = runner.invoke(cli, ["export", str(bad), "--int8", "--data", str(tiny_data), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1
    ckpt = save_checkpoint(tmp_path / "ok.pt", randomized("test_cpmobile"), stage="test")
    res = runner.invoke(cli, ["export", str(ckpt), "--int8", "--calib-clips", "0", "--data", str(tiny_data)])
    assert res.exit_code == 2 and "--calib-clips must be >= 1" in res.output


# --------------------------------------------------------------------------------------------------
# Slow: one conversion of a tiny model through the CLI, shared by the tests below
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory, tiny_data, cache_dir):
    pytest.importorskip("onnx2tf")
    d = tmp_path_factory.mktemp("tiny_export")
    model = randomized("test_sscp_mobile")
    ckpt = save_checkpoint(d / "model.pt", model, stage="test", config=to_dict(TrainConfig()))
    out = d / "export"
    res = CliRunner().invoke(cli, ["export", str(ckpt), "--int8", "--data", str(tiny_data), "--out", str(out),
                                   "--calib-clips", "40"])
    return {"result": res, "model": model, "ckpt": ckpt, "out": out, "data": tiny_data}


@pytest.mark.slow
def test_cli_export_summary(tiny_export):
    res, out = tiny_export["result"], tiny_export["out"]
    assert res.exit_code == 0, res.output
    for runtime in ("torch", "onnxruntime", "tflite_float32", "tflite_int8"):
        assert runtime in res.output
    assert f"next: edgeasc audit {out / 'model_int8.tflite'}" in res.output.strip().splitlines()[-1]
    for name in ("model.onnx", "model_float32.tflite", "model_int8.tflite", "model_float32.json", "model_int8.json",
                 CALIBRATION_IDS_FILE, "export_report.json", "convert.log"):
        assert (out / name).is_file(), name
    assert "model_int8.tflite (" in res.output and " KB)" in res.output  # paths with sizes


@pytest.mark.slow
def test_report_parity_and_float_targets(tiny_export):
    report = json.loads((tiny_export["out"] / "export_report.json").read_text())
    assert report["eval"]["split"] == "test" and report["eval"]["n_clips"] == 300
    assert set(report["results"]) == {"torch", "onnxruntime", "tflite_float32", "tflite_int8"}
    for name in ("onnxruntime", "tflite_float32"):
        assert report["results"][name]["agreement"] >= 0.999
        assert report["results"][name]["max_abs_logit_error"] < 1e-3
    r8 = report["results"]["tflite_int8"]
    assert set(r8["per_device"]) == {"a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6"}
    assert 0 < r8["max_abs_logit_error"] < 1.0
    assert report["calibration"]["n_clips"] == 40 and report["calibration"]["split"] == "split25"


@pytest.mark.slow
def test_every_artifact_loads_and_runs(tiny_export):
    """ORT and TFLite float32 match torch closely; int8 stays within a few output quantisation steps."""
    import onnxruntime as ort

    from edgeasc.deploy.runtime import InputNormalization, TFLiteModel

    out, model = tiny_export["out"], tiny_export["model"]
    x = np.random.default_rng(0).normal(-4.0, 3.0, (6, 1, 256, 65)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    norm = InputNormalization.from_metadata(json.loads((out / "model_int8.json").read_text()))
    assert norm is not None  # --int8 exports the graph on the normalised log-mel
    onnx_out = np.concatenate([sess.run(None, {"logmel": xi[None]})[0] for xi in norm.apply(x)])
    np.testing.assert_allclose(onnx_out, ref, rtol=1e-4, atol=1e-4)
    f32 = TFLiteModel(out / "model_float32.tflite")
    assert f32.input.shape == (1, 256, 65, 1) and f32.input.dtype == "float32"
    np.testing.assert_allclose(f32.predict(x), ref, rtol=1e-4, atol=1e-4)
    q = TFLiteModel(out / "model_int8.tflite")
    assert (q.input.dtype, q.output.dtype) == ("int8", "int8") and q.input.quantized and q.output.quantized
    assert np.max(np.abs(q.predict(x) - ref)) < 20 * q.output.scale


@pytest.mark.slow
def test_int8_model_is_full_integer_and_carries_metadata(tiny_export):
    from edgeasc.audit.tflite import audit_tflite
    from edgeasc.deploy.runtime import TFLiteModel, embedded_metadata

    out = tiny_export["out"]
    path = out / "model_int8.tflite"
    details = audit_tflite(path).details
    assert set(details["activation_dtypes"]) == {"int8"}
    assert details["ops_without_rule"] == []
    side = json.loads((out / "model_int8.json").read_text())
    assert embedded_metadata(path) == side
    assert side["model_name"] == "test_sscp_mobile" and side["labels"] == list(SCENES)
    assert side["frontend"] == to_dict(TrainConfig().frontend)
    m = TFLiteModel(path)
    assert (side["input"]["scale"], side["input"]["zero_point"]) == (m.input.scale, m.input.zero_point)
    assert (side["output"]["scale"], side["output"]["zero_point"]) == (m.output.scale, m.output.zero_point)
    assert side["input"]["layout"] == "NHWC" and side["input"]["shape"] == [1, 256, 65, 1]
    assert side["calibration"]["ids_file"] == CALIBRATION_IDS_FILE
    f32 = json.loads((out / "model_float32.json").read_text())
    assert f32["input"]["dtype"] == "float32" and f32["calibration"] is None


@pytest.mark.slow
def test_calibration_ids_are_real_training_clips(tiny_export):
    ids = (tiny_export["out"] / CALIBRATION_IDS_FILE).read_text().split()
    train = TAUDataset(tiny_export["data"]).clips("split25")
    want = select_calibration_clips(train, 40, seed=0)
    assert ids == [c.clip_id for c in want]
    test_ids = {c.clip_id for c in TAUDataset(tiny_export["data"]).clips("test")}
    assert not set(ids) & test_ids


@pytest.mark.slow
def test_evaluate_tflite_like_a_checkpoint(tiny_export, tmp_path):
    out = tiny_export["out"]
    res = CliRunner().invoke(cli, ["evaluate", str(out / "model_int8.tflite"), "--data", str(tiny_export["data"]),
                                   "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "test_sscp_mobile on test (300 clips)" in res.output and "unseen" in res.output
    ev = json.loads((tmp_path / "model_int8.eval.json").read_text())
    report = json.loads((out / "export_report.json").read_text())
    assert ev["macro_accuracy"] == pytest.approx(report["results"]["tflite_int8"]["macro_accuracy"])
    assert ev["runtime"]["kernels"] == "reference" and ev["runtime"]["backend"] == "ai-edge-litert"
    assert (tmp_path / "model_int8.confusion.png").read_bytes()[:4] == b"\x89PNG"
    # every clip on TFLite Micro itself: this convolutional model's outputs are bit-identical there, so the
    # figures are the same
    res = CliRunner().invoke(cli, ["evaluate", str(out / "model_int8.tflite"), "--data", str(tiny_export["data"]),
                                   "--out", str(tmp_path / "tflm"), "--runtime", "tflm", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "kernels: TFLite Micro reference kernels (tflite-micro), every clip" in res.output
    tflm = json.loads((tmp_path / "tflm" / "model_int8.eval.json").read_text())
    assert tflm["runtime"]["backend"] == "tflite-micro" and tflm["n_clips"] == 300
    assert tflm["runtime"]["clips_on_tflite_micro"] == 300 and "tflite_micro" not in tflm["runtime"]
    assert tflm["macro_accuracy"] == ev["macro_accuracy"]
    res = CliRunner().invoke(cli, ["evaluate", str(out / "model.onnx"), "--data", str(tiny_export["data"]),
                                   "--runtime", "tflm"])
    assert res.exit_code == 2 and "--runtime tflm is for .tflite models" in res.output


@pytest.mark.slow
def test_audit_exported_tiny_model_exits_0(tiny_export):
    res = CliRunner().invoke(cli, ["audit", str(tiny_export["out"] / "model_int8.tflite"), "--no-layers"])
    assert res.exit_code == 0, res.output
    assert "within budget" in res.output and "test_sscp_mobile" in res.output


@pytest.mark.slow
def test_float_only_export_without_int8(tmp_path, tiny_data, cache_dir):
    """Also: the new export replaces an earlier int8 one whole (its int8 files and report go, a user's file
    stays), and the staging folder of an export that was killed is removed."""
    pytest.importorskip("onnx2tf")
    from edgeasc.deploy.export import export_checkpoint

    out = tmp_path / "out"
    dead = subprocess.Popen(["true"])
    dead.wait()
    (out / ".export_killed" / "work").mkdir(parents=True)
    (out / ".export_killed" / "pid").write_text(str(dead.pid))
    for name in ("model_int8.tflite", "model_int8.json", CALIBRATION_IDS_FILE, "export_report.json",
                 "convert_failed.log", "notes.txt"):
        (out / name).write_text("from before")
    ckpt = save_checkpoint(tmp_path / "model.pt", randomized("test_cpmobile"), stage="test")
    result = export_checkpoint(ckpt, tiny_data, out, int8=False, eval_clips=50, cache_dir=cache_dir)
    assert sorted(p.name for p in out.iterdir()) == ["convert.log", "export_report.json", "model.onnx",
                                                    "model_float32.json", "model_float32.tflite", "notes.txt"]
    assert all(Path(f).parent == out and Path(f).is_file() for f in result.artifacts.values())
    report = json.loads((out / "export_report.json").read_text())
    assert {Path(a["path"]) for a in report["artifacts"].values()} | {out / "export_report.json"} == set(
        result.artifacts.values())
    assert set(result.artifacts) >= {"onnx", "tflite_float32", "tflite_float32_metadata", "report"}
    assert "tflite_int8" not in result.artifacts and not (out / CALIBRATION_IDS_FILE).exists()
    assert set(result.report["results"]) == {"torch", "onnxruntime", "tflite_float32"}
    assert result.report["eval"]["n_clips"] == 50 and result.report["eval"]["subset"]
    assert result.report["targets_met"] and result.report["calibration"] is None


@pytest.mark.slow
def test_batched_conversion_names_the_log_of_the_model_that_failed(tmp_path):
    """Several conversions in one converter process; each writes its own log, and a failure names the
    failing conversion's log (the ones before it are complete)."""
    pytest.importorskip("onnx2tf")
    from edgeasc.deploy.convert import convert_onnx_to_tflite
    from edgeasc.deploy.export import ExportError
    from edgeasc.deploy.onnx import INPUT_NAME

    good = export_onnx(randomized("test_cpmobile").eval(), tmp_path / "good.onnx", input_size=(1, 1, 256, 65))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not an ONNX model")
    convs = [{"onnx": str(good), "out_dir": str(tmp_path / "good"), "input_name": INPUT_NAME,
              "calibration_npy": None, "log": str(tmp_path / "good.log")},
             {"onnx": str(bad), "out_dir": str(tmp_path / "bad"), "input_name": INPUT_NAME,
              "calibration_npy": None, "log": str(tmp_path / "bad.log")}]
    with pytest.raises(ExportError, match=r"failed: .*; see .*bad\.log$") as exc:
        convert_onnx_to_tflite(convs, tmp_path / "main.log", jobs=1)
    assert "\n" not in str(exc.value)
    assert (tmp_path / "good" / "good_float32.tflite").is_file()
    good_log, bad_log = (tmp_path / "good.log").read_text(), (tmp_path / "bad.log").read_text()
    assert "[edgeasc] done" in good_log and "bad.onnx" not in good_log
    assert "Traceback" in bad_log and "[edgeasc] done" not in bad_log


@pytest.mark.slow
def test_a_killed_export_leaves_the_previous_export_and_no_process(tmp_path, tiny_export, cache_dir):
    """SIGKILL of `edgeasc export` while onnx2tf converts: no converter (nor its children) keeps running, and
    the output folder still holds the previous complete export, byte for byte; the next export removes the
    killed one's staging folder."""
    from test_children import descendants, wait_gone

    out = tmp_path / "export"
    out.mkdir()
    before = {}
    for f in tiny_export["out"].iterdir():
        if f.is_file():
            before[f.name] = f.read_bytes()
            (out / f.name).write_bytes(before[f.name])
    cmd = [sys.executable, "-m", "edgeasc.cli", "export", str(tiny_export["ckpt"]), "--int8", "--data",
           str(tiny_export["data"]), "--out", str(out), "--calib-clips", "40", "--cache-dir", str(cache_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            logs = list(out.glob(".export_*/convert.log"))
            if logs and logs[0].stat().st_size > 0:  # the converter has started writing
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the export ended before its conversion could be interrupted"
        tree = descendants(proc.pid)
        assert tree, "no converter process below the export"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not wait_gone(tree, 3), "converter processes outlived the killed export"  # a conversion takes ~10 s
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == before
    assert len(list(out.glob(".export_*"))) == 1
    from edgeasc.deploy.export import _staging_folder

    stage = _staging_folder(out)
    assert [p.name for p in out.glob(".export_*")] == [stage.name] and (stage / "pid").read_text() == str(os.getpid())


# --------------------------------------------------------------------------------------------------
# Slow: the default student (sscp_mobile_s1, the seed's S1 widths)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def student_export(tmp_path_factory, tiny_data, cache_dir):
    """The default student with trained-looking BatchNorm statistics. (Its int8 accuracy targets need a
    trained model: docs/export.md has the measured numbers; tiny data cannot train one in CI time.)"""
    pytest.importorskip("onnx2tf")
    from edgeasc.deploy.export import export_checkpoint

    d = tmp_path_factory.mktemp("student")
    ckpt = save_checkpoint(d / "model.pt", randomized("sscp_mobile_s1", seed=1), stage="test",
                           config=to_dict(TrainConfig()))
    result = export_checkpoint(ckpt, tiny_data, d / "export", calib_clips=60, cache_dir=cache_dir)
    return {"ckpt": ckpt, "result": result}


@pytest.mark.slow
def test_default_student_float_parity_and_int8_runs(student_export):
    report = student_export["result"].report
    assert report["model_name"] == "sscp_mobile_s1"
    for name in ("onnxruntime", "tflite_float32"):
        assert report["results"][name]["agreement"] >= PARITY_TARGETS[name]["min_agreement"]
    assert report["results"]["tflite_int8"]["max_abs_logit_error"] < 1.0
    assert {c["runtime"] for c in report["checks"]} == {"onnxruntime", "tflite_float32", "tflite_int8"}


@pytest.mark.slow
def test_student_audited_as_checkpoint_onnx_and_tflite(student_export):
    """MACs of ONNX and TFLite agree within 1%; the difference to the DCASE rule is the folded BatchNorm."""
    from edgeasc.audit.report import audit_model

    arts = student_export["result"].artifacts
    ck = audit_model(student_export["ckpt"])
    on = audit_model(arts["onnx"])
    tf = audit_model(arts["tflite_int8"])
    dc = ck.details["dcase"]
    assert (ck.param_count, ck.macs_dcase) == (63_748, 29_982_132)
    assert abs(on.macs - tf.macs) / on.macs < 0.01  # the bound...
    assert on.macs == tf.macs  # ...and exact since the export writes explicit pooling padding (no MUL correction)
    # Folding removes each BatchNorm's 2C DCASE MACs and nothing else from the weighted layers...
    assert on.macs_dcase == tf.macs_dcase == dc["macs"] - dc["batchnorm_macs"] == 29_978_112
    # ...and turns its 2C parameters into C convolution biases.
    weighted = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
    tf_weighted = sum(x.params for x in tf.layers if x.op in weighted)
    assert on.param_count == tf_weighted == dc["params"] - dc["batchnorm_channels"] == 61_738
    # No other TFLite constants: the explicit Pad before the average pooling leaves onnx2tf no border
    # correction to add (STRIDED_SLICE, MUL with a constant, CONCATENATION; export.explicit_pool_padding).
    assert tf.param_count == tf_weighted
    assert not {x.op for x in tf.layers} & {"STRIDED_SLICE", "MUL", "CONCATENATION"}
    # The deployed graph's extra MACs are the operators the DCASE rule does not charge.
    assert on.macs - on.macs_dcase == on.macs_by_op["Add"] + on.macs_by_op["AveragePool"] + on.macs_by_op[
        "GlobalAveragePool"]
    assert ck.macs == on.macs  # a checkpoint's deployed rule is its exported ONNX graph
    assert tf.param_bytes_by_dtype["int32"] == 4 * dc["batchnorm_channels"]  # one int32 bias per folded channel
    assert tf.within_budget and ck.within_budget


# --------------------------------------------------------------------------------------------------
# Slow: the input normalisation in the converted graph, and int16 layers
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_normalised_input_graph_pads_with_the_raw_zero(tiny_export):
    """The first convolutions read the normalised input through PADV2 with the quantised raw zero, and the
    metadata's normalisation is what the runtime applies."""
    from edgeasc.deploy.runtime import InputNormalization, TFLiteModel, quantize
    from edgeasc.firmware.generate import read_graph

    out = tiny_export["out"]
    path = out / "model_int8.tflite"
    meta = json.loads((out / "model_int8.json").read_text())
    norm = InputNormalization.from_metadata(meta)
    assert meta["input_normalization"]["mean"] == norm.mean and meta["weight_rounding"] == "adaptive"
    calib = json.loads((out / "export_report.json").read_text())["calibration"]
    assert norm.mean == pytest.approx(calib["feature_mean"], rel=1e-6)
    graph = read_graph(path)
    m = TFLiteModel(path)
    pads = [op for op in graph.ops if op.name == "PADV2" and op.inputs[0] == graph.inputs[0]]
    assert len(pads) == 2  # both stem branches of SSCP-Mobile
    raw_zero = quantize(norm.apply(np.zeros(1, np.float32)), m.input.scale, m.input.zero_point)[0]
    for op in pads:
        assert int(np.asarray(graph.tensors[op.inputs[2]].data).reshape(-1)[0]) == int(raw_zero)
    x = np.random.default_rng(3).normal(-6.0, 2.0, (2, 1, 256, 65)).astype(np.float32)
    want = quantize(norm.apply(x).transpose(0, 2, 3, 1), m.input.scale, m.input.zero_point)
    np.testing.assert_array_equal(m.prepare(x), want)


@pytest.mark.slow
def test_bias_correction_is_reported_and_rewrites_biases_on_their_own_scales(tiny_export):
    from edgeasc.deploy.convert import rewrite_biases
    from edgeasc.deploy.export import ExportError
    from edgeasc.firmware.generate import read_graph

    out = tiny_export["out"]
    rep = json.loads((out / "export_report.json").read_text())
    assert rep["bias_correction"]["enabled"] and rep["bias_correction"]["layers"] > 0
    assert json.loads((out / "model_int8.json").read_text())["bias_correction"] is True
    buf = (out / "model_int8.tflite").read_bytes()
    graph = read_graph(out / "model_int8.tflite")
    conv = max((op for op in graph.ops if op.name == "CONV_2D"), key=lambda op: graph.tensors[op.inputs[2]].elements)
    bias = graph.tensors[conv.inputs[2]]
    before = np.asarray(bias.data).reshape(-1).astype(np.int64)
    steps = np.zeros(len(before))
    steps[:3] = (1, -2, 0.4)  # whole steps move; less than half a step does not
    scale = np.asarray(bias.scales, dtype=np.float64)
    new, changed = rewrite_biases(buf, {conv.inputs[2]: steps * scale})
    after_path = out.parent / "biased.tflite"
    after_path.write_bytes(new)
    after = np.asarray(read_graph(after_path).tensors[conv.inputs[2]].data).reshape(-1).astype(np.int64)
    np.testing.assert_array_equal(after - before, np.rint(steps).astype(np.int64))
    assert changed == 2
    with pytest.raises(ExportError, match="not a quantised integer bias"):
        rewrite_biases(buf, {conv.inputs[1]: np.zeros(1)})  # the int8 weights


@pytest.mark.slow
def test_int16_layers_export_bench_and_firmware_refusal(tmp_path, tiny_data, cache_dir):
    from edgeasc.deploy.export import export_checkpoint
    from edgeasc.deploy.runtime import TFLiteModel
    from edgeasc.errors import ConfigError, FirmwareError
    from edgeasc.firmware.generate import generate_firmware

    ckpt = save_checkpoint(tmp_path / "model.pt", randomized("test_sscp_mobile"), stage="test",
                           config=to_dict(TrainConfig()))
    with pytest.raises(ConfigError, match="did you mean 'in_c.0.0'"):
        export_checkpoint(ckpt, tiny_data, tmp_path / "bad", calib_clips=40, eval_clips=30, cache_dir=cache_dir,
                          int16_layers="in_c.0.O")
    result = export_checkpoint(ckpt, tiny_data, tmp_path / "out", calib_clips=40, eval_clips=30, cache_dir=cache_dir,
                               int16_layers="input,in_c.0.0,in_c2.0.0")
    rep = result.report
    assert rep["int16"]["layers"] == ["input", "in_c.0.0", "in_c2.0.0"] and rep["int16"]["int16_input"]
    assert {"input", "in_c.0.0", "in_c2.0.0"} <= set(rep["int16"]["int16_points"])
    m = TFLiteModel(result.artifacts["tflite_int8"])
    assert m.input.dtype == "int16" and m.input.zero_point == 0 and m.output.dtype == "int8"
    assert rep["results"]["tflite_int8"]["max_abs_logit_error"] < 1.0
    meta = json.loads((tmp_path / "out" / "model_int8.json").read_text())
    assert "int16 activations" in meta["quantization"] and meta["int16"]["layers"] == rep["int16"]["layers"]
    from edgeasc.audit.report import audit_model
    from edgeasc.bench.harness import bench_model

    audit = audit_model(result.artifacts["tflite_int8"])
    assert audit.param_bytes_by_dtype.get("int64", 0) > 0  # 16x8 convolutions keep int64 biases, 8 bytes each
    assert bench_model(result.artifacts["tflite_int8"], runs=2, warmup=1, seed=0, data_dir=tiny_data).numerics.bit_exact
    with pytest.raises(FirmwareError, match="int16 activation tensors"):
        generate_firmware(result.artifacts["tflite_int8"], tmp_path / "fw")
    assert not (tmp_path / "fw" / "model.c").exists()
    # auto: costliest activations first until the simulated logit error is down by 90% of what int16 can remove
    auto = export_checkpoint(ckpt, tiny_data, tmp_path / "auto", calib_clips=40, eval_clips=30, cache_dir=cache_dir,
                             int16_layers="auto").report["int16"]
    first, last = auto["steps"][0], auto["steps"][-1]
    assert auto["request"] == "auto" and first["layer"] is None
    assert [s["layer"] for s in auto["steps"][1:]] == auto["layers"]
    assert first["all_int16_logit_mse"] < first["logit_mse"]
    assert (last["agreement"] >= auto["target"] and last["logit_mse"] <= first["goal_logit_mse"]) \
        or len(auto["layers"]) == 24
    assert auto["simulated_agreement"] == last["agreement"]


@pytest.mark.slow
def test_evaluating_a_tflite_says_whether_tflite_micro_agrees(tiny_export, tmp_path):
    """`edgeasc evaluate MODEL.tflite` runs LiteRT's reference kernels and its first clips on TFLite Micro too:
    the report holds the measured comparison and the output says it (never an assumption)."""
    from edgeasc.deploy.runtime import TFLM_CHECK_CLIPS, format_tflm_check

    res = CliRunner().invoke(cli, ["evaluate", str(tiny_export["out"] / "model_int8.tflite"), "--data",
                                   str(tiny_export["data"]), "--out", str(tmp_path), "--no-progress"])
    assert res.exit_code == 0, res.output
    ev = json.loads((tmp_path / "model_int8.eval.json").read_text())
    assert ev["runtime"]["tflite_micro"] == {"checked": TFLM_CHECK_CLIPS, "identical": TFLM_CHECK_CLIPS,
                                             "max_abs_diff": 0.0}
    assert (f"kernels: LiteRT reference kernels (ai-edge-litert); TFLite Micro bit-identical on the first "
            f"{TFLM_CHECK_CLIPS} clips") in res.output
    differs = dict(ev["runtime"], tflite_micro={"checked": 8, "identical": 0, "max_abs_diff": 2.0})
    assert format_tflm_check(differs).endswith("TFLite Micro DIFFERS on 8 of the first 8 clips (max 2 output "
                                               "steps): these figures are LiteRT's, not TFLite Micro's")
