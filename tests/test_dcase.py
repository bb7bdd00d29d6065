"""The DCASE 2025 inference API (edgeasc.devices.dcase) and the submission package (edgeasc.submission)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from edgeasc.checkpoint import read_checkpoint
from edgeasc.cli import cli
from edgeasc.complexity import count_dcase
from edgeasc.config import FrontendConfig
from edgeasc.data.audio import load_clip, read_audio, split_windows
from edgeasc.devices import dcase
from edgeasc.devices.bundle import save_bundle
from edgeasc.errors import ConfigError, DataError, DomainError
from edgeasc.evaluate import predict_logits
from edgeasc.labels import SCENES
from edgeasc.submission.package import (
    describe_submission,
    over_budget_devices,
    package_name,
    rewrite_imports,
    vendored_modules,
    within_budget,
    write_submission,
)

LABEL = "Tester_EDGE_task1_2"
FE = FrontendConfig()
_MODELS: dict[str, Path] = {}


@pytest.fixture()
def models(tiny_data, fast_overrides, tmp_path_factory) -> dict[str, Path]:
    """A trained tiny general model (checkpoint) and a bundle with it plus a perturbed model for device a.

    Trained once per module (fast_overrides is function-scoped, so the result is kept here).
    """
    if not _MODELS:
        from edgeasc.config import resolve_train_config
        from edgeasc.train.loop import train

        root = tmp_path_factory.mktemp("dcase_models")
        result = train(resolve_train_config(None, fast_overrides), tiny_data, root / "run", progress=False)
        general = read_checkpoint(result.model_path)
        gen = torch.Generator().manual_seed(0)
        state = {k: (v * (1 + 0.5 * torch.randn(v.shape, generator=gen)) if k.endswith("weight") else v)
                 for k, v in general["state_dict"].items()}  # weights only: running variances stay positive
        device_a = {**general, "state_dict": state}
        _MODELS["checkpoint"] = result.model_path
        _MODELS["bundle"] = save_bundle(root / "bundle.pt", general, {"a": device_a}, {"test": True})
    return dict(_MODELS)


def _tone(seconds: float, rate: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    x = 0.3 * np.sin(2 * np.pi * (200 + 300 * seed) * t) + 0.05 * rng.standard_normal(t.shape)
    return np.stack([x * (1 - 0.3 * c) for c in range(channels)], axis=1) if channels > 1 else x


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory) -> dict[str, Path]:
    """Real-recording shapes: several rates, mono and stereo, 16- and 24-bit, 0.5 s to 2.5 s."""
    root = tmp_path_factory.mktemp("dcase_audio")
    specs = {
        "mono16k_pcm16_1s": (16_000, 1, "PCM_16", 1.0),
        "mono32k_pcm16_1s": (32_000, 1, "PCM_16", 1.0),
        "stereo32k_pcm24_0.5s": (32_000, 2, "PCM_24", 0.5),
        "stereo44k_pcm16_2.5s": (44_100, 2, "PCM_16", 2.5),
        "mono48k_pcm24_2.5s": (48_000, 1, "PCM_24", 2.5),
        "stereo48k_pcm16_1s": (48_000, 2, "PCM_16", 1.0),
    }
    out = {}
    for i, (name, (rate, ch, subtype, secs)) in enumerate(specs.items()):
        out[name] = root / f"{name}.wav"
        sf.write(out[name], _tone(secs, rate, ch, i), rate, subtype=subtype)
    return out


def _fp16_rounded(model: torch.nn.Module) -> torch.nn.Module:
    return model.half().float().eval()


def _reference_first(member: torch.nn.Module, path: Path) -> np.ndarray:
    """The first-second logits through the training-time path (load_clip + predict_logits)."""
    wave = load_clip(path, FE.sample_rate_hz, FE.clip_samples)[None]
    return predict_logits(member, wave, FE)[0]


def test_predict_matches_reference_path_on_mixed_files(models, audio_files):
    from edgeasc.checkpoint import load_model

    general = _fp16_rounded(load_model(models["checkpoint"])[0])
    files = list(audio_files.values())
    logits, classes = dcase.predict([str(f) for f in files], ["b"] * len(files), models["bundle"], use_cuda=False)
    assert classes == list(SCENES)
    assert len(logits) == len(files)
    for f, lg in zip(files, logits):
        assert lg.shape == (len(SCENES),) and lg.dtype == torch.float32
        np.testing.assert_allclose(lg.numpy(), _reference_first(general, f), atol=1e-4, rtol=0, err_msg=f.name)
    # the 32 kHz mono 1-s file needs no resampling: the spelled-out parity the DCASE API must keep
    ref = _reference_first(general, audio_files["mono32k_pcm16_1s"])
    np.testing.assert_allclose(logits[1].numpy(), ref, atol=1e-4, rtol=0)


def test_load_inputs_shapes_and_window_modes(models, audio_files):
    model = dcase.load_model(models["bundle"])
    files = [audio_files["stereo32k_pcm24_0.5s"], audio_files["stereo44k_pcm16_2.5s"], audio_files["mono32k_pcm16_1s"]]
    first = dcase.load_inputs(files, ["a"] * 3, model)
    assert [tuple(x.shape) for x in first] == [(1, 1, FE.n_mels, FE.n_frames)] * 3
    mean = dcase.load_inputs(files, ["a"] * 3, model, windows="mean", batch_size=2)
    assert [x.shape[0] for x in mean] == [1, 3, 1]
    torch.testing.assert_close(mean[1][:1], first[1])  # window 0 is the first second


def test_mean_windows_average_logits(models, audio_files):
    from edgeasc.checkpoint import load_model

    general = _fp16_rounded(load_model(models["checkpoint"])[0])
    long_file, one_s = audio_files["mono48k_pcm24_2.5s"], audio_files["stereo48k_pcm16_1s"]
    files = [str(long_file), str(one_s)]
    first, _ = dcase.predict(files, ["s5", "s5"], models["bundle"], use_cuda=False)
    mean, _ = dcase.predict(files, ["s5", "s5"], models["bundle"], use_cuda=False, windows="mean", batch_size=1)
    assert not torch.allclose(first[0], mean[0], atol=1e-3)
    torch.testing.assert_close(first[1], mean[1], atol=1e-6, rtol=0)  # one window: same logits
    windows = split_windows(read_audio(long_file, FE.sample_rate_hz), FE.clip_samples)
    assert len(windows) == 3
    np.testing.assert_allclose(mean[0].numpy(), predict_logits(general, windows, FE).mean(0), atol=1e-4, rtol=0)


def test_unknown_devices_use_the_general_model(models, audio_files, monkeypatch):
    model = dcase.load_model(models["bundle"])
    assert model.members() == ["general", "a"]
    for dev in ("s4", "s7", "s10", "X", "b", " S1 "):
        assert dcase.get_model_for_device(model, dev) is model.general
    assert dcase.get_model_for_device(model, "A") is model.devices["a"]
    assert dcase.get_model_for_device(model, "a") is not model.general
    f = str(audio_files["mono16k_pcm16_1s"])
    devs = ["a", "A", "s4", "s7", "s10", "X"]
    monkeypatch.setattr(dcase, "LOAD_CHUNK_FILES", 4)  # files read in two chunks, order kept
    logits, _ = dcase.predict([f] * len(devs), devs, models["bundle"], use_cuda=False, batch_size=1)
    by_dev = dict(zip(devs, logits))
    torch.testing.assert_close(by_dev["A"], by_dev["a"])
    for dev in ("s7", "s10", "X"):
        torch.testing.assert_close(by_dev[dev], by_dev["s4"])
    assert not torch.allclose(by_dev["a"], by_dev["s4"], atol=1e-3)
    # a plain checkpoint is the general model for every device, "a" included
    plain, _ = dcase.predict([f, f], ["a", "s4"], models["checkpoint"], use_cuda=False)
    torch.testing.assert_close(plain[0], by_dev["s4"])
    torch.testing.assert_close(plain[1], by_dev["s4"])


def test_api_errors(models, audio_files, tmp_path):
    f = str(audio_files["mono16k_pcm16_1s"])
    missing = tmp_path / "not_there.wav"
    with pytest.raises(DataError, match="not_there.wav"):
        dcase.predict([f, str(missing)], ["a", "b"], models["bundle"], use_cuda=False)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00junk")
    with pytest.raises(DataError, match="corrupt.wav"):
        dcase.predict([str(corrupt)], ["a"], models["bundle"], use_cuda=False)
    with pytest.raises(ConfigError, match="2 files but 1 device ids"):
        dcase.predict([f, f], ["a"], models["bundle"], use_cuda=False)
    with pytest.raises(ConfigError, match="windows"):
        dcase.load_inputs([f], ["a"], dcase.load_model(models["bundle"]), windows="all")
    with pytest.raises(ConfigError, match="needs a model file"):
        dcase.load_model(None)
    assert dcase.predict([], [], models["bundle"], use_cuda=False) == ([], list(SCENES))


def test_weights_are_fp16_rounded(models):
    model = dcase.load_model(models["bundle"])
    for p in model.general.parameters():
        assert p.dtype == torch.float32
        torch.testing.assert_close(p, p.half().float(), atol=0, rtol=0)


def test_complexity_json_matches_edgeasc_complexity(models):
    from edgeasc.checkpoint import load_model

    cx = dcase.complexity(models["bundle"])
    expected_devices = ["a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10"]
    assert list(cx["per_device"]) == expected_devices
    report = count_dcase(load_model(models["checkpoint"])[0], (1, 1, FE.n_mels, FE.n_frames))
    for dev in expected_devices:
        assert cx["per_device"][dev] == {"MACs": report.macs, "Params": 2 * report.params}
    assert cx["max_MACs"] == report.macs and cx["max_Params"] == 2 * report.params
    assert within_budget(cx) and over_budget_devices(cx) == []
    over = json.loads(json.dumps(cx))
    over["per_device"]["s9"]["MACs"] = 30_000_001
    over["per_device"]["b"]["Params"] = 128_001
    assert over_budget_devices(over) == ["b", "s9"] and not within_budget(over)
    assert over_budget_devices(over, "none") == []
    with pytest.raises(ConfigError, match="dcase2025"):
        over_budget_devices(cx, "dcase2052")


def test_label_validation():
    assert package_name("Zhang_AITHU_SJTU_task1_1") == "Zhang_AITHU_SJTU_task1"
    assert package_name("Schmid_CPJKU_task1_4") == "Schmid_CPJKU_task1"
    for bad in ("Zhang_task1_1", "Zhang_AITHU_task1_5", "Zhang_AITHU_task2_1", "Zhang-X_AITHU_task1_1",
                "Zhang_AITHU_task1", "", "Zhang_AITHU_SJTU_task1_1.py"):
        with pytest.raises(ConfigError, match="Surname"):
            package_name(bad)


def test_rewrite_imports_only_touches_import_statements():
    src = textwrap.dedent('''\
        """Uses edgeasc.devices.bundle; format "edgeasc-bundle"."""
        from edgeasc import __version__
        from edgeasc.errors import DataError
        import edgeasc.labels as labels


        def f():
            from edgeasc.models import create_model
            return "edgeasc.checkpoint"
        ''')
    out = rewrite_imports(src, "P_X_task1")
    assert "from P_X_task1._edgeasc import __version__" in out
    assert "from P_X_task1._edgeasc.errors import DataError" in out
    assert "import P_X_task1._edgeasc.labels as labels" in out
    assert "    from P_X_task1._edgeasc.models import create_model" in out
    assert '"edgeasc-bundle"' in out and 'return "edgeasc.checkpoint"' in out
    assert "edgeasc.devices.dcase" in vendored_modules() and "edgeasc.models.sscp_mobile" in vendored_modules()
    assert "edgeasc.train" not in vendored_modules()


_RUN_WITHOUT_EDGEASC = textwrap.dedent('''\
    import json, sys

    class NoEdgeasc:
        def find_spec(self, name, path=None, target=None):
            if name == "edgeasc" or name.startswith("edgeasc."):
                raise ImportError("the submission imported " + name)
            return None

    sys.meta_path.insert(0, NoEdgeasc())
    package, label, files, devices, out = sys.argv[1:6]
    api = __import__(package + "." + label, fromlist=["predict"])
    logits, classes = api.predict(json.loads(files), json.loads(devices), use_cuda=False)
    model = api.load_model()
    used = [api.get_model_for_device(model, d) is model.general for d in json.loads(devices)]
    assert not [m for m in sys.modules if m == "edgeasc" or m.startswith("edgeasc.")]
    json.dump({"logits": [l.tolist() for l in logits], "classes": classes, "general": used}, open(out, "w"))
    ''')


def _run_package(pythonpath: Path, files: list[str], devices: list[str], tmp_path: Path) -> dict:
    out = tmp_path / "out.json"
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    proc = subprocess.run(
        [sys.executable, "-c", _RUN_WITHOUT_EDGEASC, "Tester_EDGE_task1", LABEL, json.dumps(files),
         json.dumps(devices), str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_submission_package_runs_without_edgeasc(models, audio_files, tmp_path):
    out = tmp_path / "sub"
    root = write_submission(models["bundle"], out, LABEL)
    pkg = root / "Tester_EDGE_task1"
    assert root == out / "Tester_EDGE_task1"
    for rel in ("pyproject.toml", "README.md", "Tester_EDGE_task1/__init__.py", f"Tester_EDGE_task1/{LABEL}.py",
                f"Tester_EDGE_task1/ckpts/{LABEL}.pt", "Tester_EDGE_task1/complexity.json",
                "Tester_EDGE_task1/_edgeasc/devices/dcase.py", "Tester_EDGE_task1/_edgeasc/models/sscp_mobile.py"):
        assert (root / rel).is_file(), rel
    cx = json.loads((pkg / "complexity.json").read_text())
    assert cx == dcase.complexity(models["bundle"])
    assert json.loads((out / "predictions" / LABEL / "complexity.json").read_text()) == cx
    stored = torch.load(pkg / "ckpts" / f"{LABEL}.pt", weights_only=True)
    for member in (stored["general"], stored["devices"]["a"]):
        assert {v.dtype for v in member["state_dict"].values() if v.is_floating_point()} == {torch.float16}
    assert stored["extra"]["submission"]["label"] == LABEL

    files = [str(f) for f in audio_files.values()]
    devices = ["a", "s7", "B", "A", "x", "s10"]
    got = _run_package(root, files, devices, tmp_path)
    want, classes = dcase.predict(files, devices, models["bundle"], use_cuda=False)
    assert got["classes"] == classes
    assert got["general"] == [False, True, True, False, True, True]
    np.testing.assert_allclose(np.array(got["logits"]), torch.stack(want).numpy(), atol=1e-6, rtol=0)


def test_submission_refuses_to_overwrite(models, tmp_path):
    write_submission(models["checkpoint"], tmp_path, LABEL)
    with pytest.raises(ConfigError, match="--overwrite"):
        write_submission(models["checkpoint"], tmp_path, LABEL)
    write_submission(models["bundle"], tmp_path, LABEL, overwrite=True)
    summary = describe_submission(tmp_path, LABEL)
    assert summary.over_budget == [] and summary.complexity["per_device"]["a"]["MACs"] > 0
    with pytest.raises(ConfigError, match="Surname"):
        write_submission(models["checkpoint"], tmp_path, "bad_label")


def test_cli_submission(models, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["submission", str(models["bundle"]), "--out", str(tmp_path), "--label", LABEL])
    assert res.exit_code == 0, res.output
    assert f"ckpts/{LABEL}.pt" in res.output and "vendored edgeasc modules" in res.output
    rows = {line.split()[0]: line.split() for line in res.output.splitlines() if line.split()}
    for dev in ("a", "s1", "s10"):
        assert rows[dev][-1] == "ok"
    assert "next: pip install" in res.output
    res = runner.invoke(cli, ["submission", str(models["bundle"]), "--out", str(tmp_path), "--label", LABEL])
    assert res.exit_code == 2 and "--overwrite" in res.output and "Traceback" not in res.output
    res = runner.invoke(cli, ["submission", str(models["bundle"]), "--out", str(tmp_path), "--label", "x_task1_1"])
    assert res.exit_code == 2 and "Surname" in res.output
    res = runner.invoke(cli, ["submission", str(models["bundle"]), "--out", str(tmp_path), "--label", LABEL,
                              "--overwrite", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # logs go to stderr
    assert doc["within_budget"] and doc["complexity"]["per_device"]["s10"]["MACs"] > 0
    assert any(f.endswith(f"ckpts/{LABEL}.pt") for f in doc["files"])


def test_cli_submission_over_budget_writes_and_exits_1(tmp_path):
    from edgeasc.checkpoint import save_checkpoint
    from edgeasc.models import create_model

    big = save_checkpoint(tmp_path / "b64.pt", create_model("cpmobile_b64"), stage="test")  # no frontend: baseline's
    res = CliRunner().invoke(cli, ["submission", str(big), "--out", str(tmp_path / "out"), "--label", LABEL])
    assert res.exit_code == 1, res.output
    assert "OVER BUDGET" in res.output and "over the dcase2025 budget on device(s) a, b, c" in res.output
    cx = json.loads((tmp_path / "out" / "predictions" / LABEL / "complexity.json").read_text())
    assert cx["max_Params"] > 128_000 and not within_budget(cx)


@pytest.mark.slow
def test_submission_installs_with_pip(models, audio_files, tmp_path):
    """pip builds and installs the package (package data included) and the installed copy predicts."""
    root = write_submission(models["bundle"], tmp_path / "sub", LABEL)
    target = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
         "--target", str(target), str(root)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (target / "Tester_EDGE_task1" / "ckpts" / f"{LABEL}.pt").is_file()
    files = [str(audio_files["stereo44k_pcm16_2.5s"])]
    got = _run_package(target, files, ["a"], tmp_path)
    want, _ = dcase.predict(files, ["a"], models["bundle"], use_cuda=False)
    np.testing.assert_allclose(np.array(got["logits"][0]), want[0].numpy(), atol=1e-6, rtol=0)


def test_predict_wants_lists_and_refuses_nan_outputs(models, audio_files):
    path = str(audio_files["mono32k_pcm16_1s"])
    with pytest.raises(ConfigError, match="file_paths must be a list .* got the single str"):
        dcase.predict(path, ["a"], models["checkpoint"], use_cuda=False)
    with pytest.raises(ConfigError, match="device_ids must be a list"):
        dcase.predict([path], "a", models["checkpoint"], use_cuda=False)
    model = dcase.load_model(models["checkpoint"], "cpu")
    inputs = dcase.load_inputs([path], ["a"], model)
    inputs[0][..., 0] = float("inf")  # features out of range: the outputs overflow, never an argmax of NaN
    with pytest.raises(DomainError, match="NaN or infinite outputs for 1 of 1 clip"):
        dcase.predict_inputs(model, inputs, ["a"])
