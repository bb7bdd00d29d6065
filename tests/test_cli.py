"""The CLI end to end on tiny data: exit codes and the key lines a user reads."""

import json

import pytest
from click.testing import CliRunner

from edgeasc.cli import cli


@pytest.fixture()
def runner():
    return CliRunner()


def test_help_lists_commands(runner):
    res = runner.invoke(cli, ["--help"])
    assert res.exit_code == 0
    for verb in ("synth", "train", "evaluate", "import-checkpoint", "models", "export", "audit", "teacher-logits",
                 "prune", "finetune", "submission", "pipeline", "bench", "firmware"):
        assert verb in res.output


def test_train_then_evaluate(runner, tiny_data, tmp_path, fast_overrides):
    args = ["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--no-progress"]
    for o in fast_overrides:
        args += ["--set", o]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "next: edgeasc evaluate" in res.output
    # the final report as the official code prints its test metrics: per device, per group, per class
    assert "unseen" in res.output and "st_traf" in res.output and "BatchNorm moving averages debiased after 8 steps" in res.output
    model = tmp_path / "run" / "model.pt"
    res = runner.invoke(cli, ["evaluate", str(model), "--data", str(tiny_data), "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    assert "macro" in res.output and "s4" in res.output and "unseen" in res.output
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    for key in ("macro_accuracy", "per_device", "per_class", "per_group"):
        assert key in report
    assert set(report["per_device"]) == {"a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6"}
    assert (tmp_path / "ev" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    res = runner.invoke(cli, ["evaluate", str(model), "--data", str(tiny_data), "--out", str(tmp_path / "ev"), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["n_clips"] == report["n_clips"]
    # --cache-dir: the decoded waveforms go where the user says (a read-only dataset stays untouched)
    res = runner.invoke(cli, ["evaluate", str(model), "--data", str(tiny_data), "--out", str(tmp_path / "ev2"),
                              "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "ev2" / "eval.json").read_text())["macro_accuracy"] == report["macro_accuracy"]
    assert list((tmp_path / "cache").glob("wave_*.f32"))
    res = runner.invoke(cli, ["evaluate", str(model), "--data", str(tiny_data), "--out", str(tmp_path / "ev3"),
                              "--precision", "fp16"])
    assert res.exit_code == 0 and "fp16" in res.output, res.output
    assert json.loads((tmp_path / "ev3" / "eval.json").read_text())["precision"] == "fp16"
    tflite = tmp_path / "m.tflite"
    tflite.write_bytes(b"not read")
    res = runner.invoke(cli, ["evaluate", str(tflite), "--data", str(tiny_data), "--precision", "fp16"])
    assert res.exit_code == 2 and "for checkpoints" in res.output, res.output


def test_bad_input_exit_codes(runner, tiny_data, tmp_path):
    res = runner.invoke(cli, ["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "no meta.csv" in res.output
    res = runner.invoke(cli, ["train", "--data", str(tiny_data), "--out", str(tmp_path / "r"), "--set", "optim.epoch=1"])
    assert res.exit_code == 2 and "did you mean 'epochs'" in res.output
    res = runner.invoke(cli, ["train", "--data", str(tiny_data), "--out", str(tmp_path / "r"),
                              "--set", "model.name=sscp_mobil_s1"])
    assert res.exit_code == 2 and "sscp_mobile_s1" in res.output
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    res = runner.invoke(cli, ["evaluate", str(bad), "--data", str(tiny_data)])
    assert res.exit_code == 2 and "is not a PyTorch checkpoint (neither a zip archive nor a pickle)" in res.output
    assert "Traceback" not in res.output
    # foreign files that torch.load misreads ("IndexError: pop from empty list") are named for what they are
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x08\x12\x07pytorch")  # an ONNX ModelProto starts with its ir_version field
    wav = next(tiny_data.glob("audio/*.wav"))
    for path, what in ((onnx, "an ONNX model"), (wav, "a WAV audio file")):
        res = runner.invoke(cli, ["evaluate", str(path), "--data", str(tiny_data)])
        assert res.exit_code == 2 and f"is not a PyTorch checkpoint (it is {what}" in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1
    for override, line in (("optim.lr=inf", "optim.lr must be a finite number, got inf"),
                           ("seed=abc", "seed must be an integer, got 'abc'")):
        res = runner.invoke(cli, ["train", "--data", str(tiny_data), "--out", str(tmp_path / "r"), "--set", override])
        assert res.exit_code == 2 and line in res.output and "Traceback" not in res.output, res.output


def test_nan_weights_and_a_diverging_run_are_one_line_errors(runner, tiny_data, tmp_path, cache_dir):
    import torch

    from edgeasc.checkpoint import save_checkpoint
    from edgeasc.models import create_model

    save_checkpoint(tmp_path / "ok.pt", create_model("test_cpmobile"), stage="train")
    ckpt = torch.load(tmp_path / "ok.pt", weights_only=True)
    ckpt["state_dict"] = {k: v * float("nan") if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, tmp_path / "nan.pt")
    for args in (["evaluate", str(tmp_path / "nan.pt"), "--data", str(tiny_data)],
                 ["export", str(tmp_path / "nan.pt"), "--data", str(tiny_data), "--out", str(tmp_path / "ex")],
                 ["audit", str(tmp_path / "nan.pt")]):
        res = runner.invoke(cli, args)
        assert res.exit_code == 2 and "is not a usable model" in res.output, (args[0], res.output)
        assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    res = runner.invoke(cli, ["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--no-progress",
                              "--set", "model.name=test_cpmobile", "--set", "optim.lr=1e30", "--set", "eval_every=0",
                              "--set", "optim.warmup_steps=0", "--set", "optim.batch_size=512",
                              "--set", f"data.cache_dir={str(cache_dir)!r}"])
    assert res.exit_code == 1 and "error: training diverged: non-finite loss nan" in res.output, res.output
    assert not (tmp_path / "run" / "model.pt").exists() and "Traceback" not in res.output


def test_models_table(runner):
    res = runner.invoke(cli, ["models", "--pattern", "cpmobile_baseline", "--json"])
    assert res.exit_code == 0
    (row,) = json.loads(res.output)
    assert (row["params"], row["macs"]) == (61_148, 29_419_156)


def test_synth_refuses_to_overwrite(runner, tiny_data):
    res = runner.invoke(cli, ["synth", str(tiny_data), "--scale", "tiny"])
    assert res.exit_code == 2
    res = runner.invoke(cli, ["synth", str(tiny_data), "--scale", "tiny", "--if-missing"])
    assert res.exit_code == 0 and "skipping" in res.output
