"""`edgeasc predict` (edgeasc.deploy.predict) on an untrained tiny checkpoint, a bundle and a hand-built .tflite."""

import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner
from test_runtime import build_fc_tflite

from edgeasc.checkpoint import read_checkpoint, save_checkpoint
from edgeasc.cli import cli
from edgeasc.config import FrontendConfig
from edgeasc.deploy.predict import predict_files
from edgeasc.devices import dcase
from edgeasc.devices.bundle import save_bundle
from edgeasc.errors import ConfigError
from edgeasc.features import LogMel
from edgeasc.labels import SCENES
from edgeasc.models import create_model

RATE = 32_000
LINE = re.compile(r"^(\S+)\s+(\S+)\s+(\d\.\d\d)\s+\((\S+) model\)$")


def _strict_json(text: str):
    def refuse(name):
        raise ValueError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 1-s WAV, a 3-s FLAC whose seconds differ (tone, noise, silence), and a folder holding both plus a .txt."""
    root = tmp_path_factory.mktemp("predict_audio")
    rng = np.random.default_rng(0)
    t = np.arange(RATE) / RATE
    one = 0.3 * np.sin(2 * np.pi * 440 * t)
    three = np.concatenate([0.3 * np.sin(2 * np.pi * 200 * t), 0.2 * rng.standard_normal(RATE), np.zeros(RATE)])
    folder = root / "clips"
    folder.mkdir()
    paths = {"one": folder / "b_one.wav", "three": folder / "a_three.flac"}
    sf.write(paths["one"], one, RATE)
    sf.write(paths["three"], three, RATE)
    (folder / "notes.txt").write_text("not audio")
    for i in range(3):  # the seconds of the 3-s file as separate files, for the mean-of-windows reference
        paths[f"second{i}"] = root / f"second{i}.wav"
        sf.write(paths[f"second{i}"], three[i * RATE : (i + 1) * RATE], RATE, subtype="FLOAT")
    sf.write(root / "three_float.wav", three, RATE, subtype="FLOAT")
    paths["three_float"] = root / "three_float.wav"
    paths["folder"] = folder
    return paths


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A fresh test_cpmobile checkpoint (untrained: the wiring is under test) and a bundle with a device-a model."""
    root = tmp_path_factory.mktemp("predict_models")
    torch.manual_seed(0)
    general = save_checkpoint(root / "general.pt", create_model("test_cpmobile"), stage="test")
    torch.manual_seed(1)
    dev_a = save_checkpoint(root / "a.pt", create_model("test_cpmobile"), stage="test")
    bundle = save_bundle(root / "bundle.pt", read_checkpoint(general), {"a": read_checkpoint(dev_a)}, {"test": True})
    return {"checkpoint": general, "bundle": bundle}


def _invoke(*args):
    return CliRunner().invoke(cli, ["predict", *map(str, args)])


def _softmax(z) -> np.ndarray:
    return torch.softmax(torch.as_tensor(z).double(), dim=-1).numpy()


def test_one_aligned_line_per_file_matching_the_dcase_api(models, files):
    res = _invoke(files["folder"], files["one"], "--model", models["checkpoint"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert len(lines) == 3  # the folder's two audio files (sorted, .txt skipped), then the file
    paths = [str(files["folder"] / "a_three.flac"), str(files["folder"] / "b_one.wav"), str(files["one"])]
    logits, classes = dcase.predict(paths, ["unknown"] * 3, models["checkpoint"], use_cuda=False)
    for line, path, z in zip(lines, paths, logits):
        m = LINE.match(line)
        assert m, line
        p = _softmax(z)
        assert m.group(1) == path and m.group(2) == classes[int(p.argmax())]
        assert m.group(3) == f"{p.max():.2f}" and m.group(4) == "general"
    columns = {(m.start(2), m.start(3), m.start(4)) for m in map(LINE.match, lines)}
    assert len(columns) == 1  # scene, probability and model columns are aligned
    top3 = _invoke(files["one"], "--model", models["checkpoint"], "--top", "3").stdout.strip()
    assert len(re.findall(r"\b\d\.\d\d\b", top3)) == 3
    ranked = sorted(zip(_softmax(logits[2]), SCENES), reverse=True)[:3]
    assert [s for s in top3.split() if s in SCENES] == [s for _, s in ranked]


def test_json_is_strict_and_probabilities_sum_to_one(models, files):
    res = _invoke(files["one"], files["three"], "--model", models["checkpoint"], "--json")
    assert res.exit_code == 0, res.output
    rows = _strict_json(res.stdout)
    assert [r["file"] for r in rows] == [str(files["one"]), str(files["three"])]
    for r in rows:
        assert set(r) == {"file", "device_id", "model", "scene", "probabilities"}
        assert list(r["probabilities"]) == list(SCENES)
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-9)
        assert r["scene"] == max(r["probabilities"], key=r["probabilities"].get)
        assert (r["device_id"], r["model"]) == ("unknown", "general")


def test_windows_mean_averages_the_logits_of_each_second(models, files):
    seconds = [files[f"second{i}"] for i in range(3)]
    logits, _ = dcase.predict(list(map(str, seconds)), ["a"] * 3, models["checkpoint"], use_cuda=False)
    want = _softmax(torch.stack(logits).mean(0))
    first = _softmax(logits[0])

    def probs(windows):
        res = _invoke(files["three_float"], "--model", models["checkpoint"], "--json", "--windows", windows)
        assert res.exit_code == 0, res.output
        return np.array(list(_strict_json(res.stdout)[0]["probabilities"].values()))

    np.testing.assert_allclose(probs("mean"), want, atol=1e-6, rtol=0)
    np.testing.assert_allclose(probs("first"), first, atol=1e-6, rtol=0)
    assert np.abs(want - first).max() > 1e-4  # the two modes differ on this file


def test_bundle_routes_by_device_id(models, files):
    def row(device_id):
        res = _invoke(files["one"], "--model", models["bundle"], "--json", "--device-id", device_id)
        assert res.exit_code == 0, res.output
        return _strict_json(res.stdout)[0]

    a, s4, unknown = row("A"), row("s4"), row("unknown")
    assert (a["device_id"], a["model"]) == ("a", "a")
    assert s4["model"] == unknown["model"] == "general"
    assert s4["probabilities"] == unknown["probabilities"] != a["probabilities"]
    human = _invoke(files["one"], "--model", models["bundle"], "--device-id", "a").stdout
    assert human.rstrip().endswith("(a model)")


def test_tflite_uses_its_metadata_frontend_and_normalisation(files, tmp_path):
    """A linear .tflite on a small frontend: the expected logits are computed here with numpy."""
    pytest.importorskip("ai_edge_litert")
    fe = FrontendConfig(sample_rate_hz=8_000, n_fft=256, win_length=256, hop_length=500, n_mels=8)
    k = fe.n_mels * fe.n_frames
    rng = np.random.default_rng(0)
    w, b = rng.normal(0, 0.05, (len(SCENES), k)).astype(np.float32), rng.normal(0, 1, len(SCENES)).astype(np.float32)
    path = tmp_path / "fc.tflite"
    path.write_bytes(build_fc_tflite(w, b, quant=None, input_shape=(1, 1, fe.n_mels, fe.n_frames),
                                     description="hand-built float FC"))
    mean, std = -6.0, 3.0
    meta = {"frontend": {f: getattr(fe, f) for f in fe.__dataclass_fields__}, "labels": list(SCENES),
            "input_normalization": {"mean": mean, "std": std}}
    path.with_suffix(".json").write_text(json.dumps(meta))  # the sidecar, read when nothing is embedded

    res = _invoke(files["three"], "--model", path, "--json", "--windows", "mean")
    assert res.exit_code == 0, res.output
    row = _strict_json(res.stdout)[0]
    wave, _ = sf.read(files["three"], dtype="float32")
    from edgeasc.data.audio import resample

    windows = torch.from_numpy(resample(wave, RATE, fe.sample_rate_hz).reshape(3, -1))
    with torch.no_grad():
        x = LogMel(fe)(windows).numpy()  # (3, 1, n_mels, frames)
    want = _softmax((((x - mean) / std).reshape(3, k) @ w.T + b).mean(0))
    np.testing.assert_allclose(list(row["probabilities"].values()), want, atol=1e-5, rtol=0)
    assert row["model"] == "tflite"
    assert _invoke(files["one"], "--model", path).stdout.rstrip().endswith("(tflite model)")


@pytest.mark.parametrize("case", ["missing audio", "corrupt audio", "empty folder", "text as model",
                                  "foreign torch file", "missing model", "onnx model"])
def test_bad_input_is_one_error_line_and_exit_2(case, models, files, tmp_path):
    audio, model = files["one"], models["checkpoint"]
    if case == "missing audio":
        audio = tmp_path / "not_there.wav"
    elif case == "corrupt audio":
        audio = tmp_path / "corrupt.wav"
        audio.write_bytes(b"RIFF\x00\x00junk")
    elif case == "empty folder":
        audio = tmp_path / "empty"
        audio.mkdir()
    elif case == "text as model":
        model = tmp_path / "model.pt"
        model.write_text("not a model")
    elif case == "foreign torch file":
        model = tmp_path / "weights.pt"
        torch.save({"weight": torch.zeros(3)}, model)
    elif case == "missing model":
        model = tmp_path / "nope.pt"
    else:
        model = tmp_path / "model.onnx"
        model.write_bytes(b"\x08\x07")
    res = _invoke(audio, "--model", model)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and isinstance(res.exception, SystemExit), res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and res.stderr.strip().endswith(errors[0]), res.stderr  # after any log lines
    assert res.stdout == ""


def test_top_is_checked_before_any_file_is_read(models, tmp_path):
    res = _invoke(tmp_path / "not_there.wav", "--model", models["checkpoint"], "--top", "11")
    assert res.exit_code == 2 and "--top" in res.output and "not_there" not in res.output


def test_a_single_path_instead_of_a_list_is_refused(models, files):
    one = str(files["one"])
    with pytest.raises(ConfigError, match="file_paths must be a list .* got the single str"):
        dcase.predict(one, ["a"], models["checkpoint"], use_cuda=False)
    with pytest.raises(ConfigError, match="device_ids must be a list"):
        dcase.predict([one], "a", models["checkpoint"], use_cuda=False)
    with pytest.raises(ConfigError, match="file_paths must be a list .* got the single PosixPath"):
        dcase.log_mel_inputs(files["one"], FrontendConfig())
    with pytest.raises(ConfigError, match="paths must be a list .* got the single str"):
        predict_files(one, models["checkpoint"])
