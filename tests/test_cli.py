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


def test_synth_hint_json_and_progress_lines(runner, tmp_path):
    """The hint after synth names a recipe whose warm-up fits the split (tiny: 120 clips of split25, 2 steps
    per epoch at batch 64, 32 steps: warm-up 8); --json prints the summary. CliRunner's stderr is not a
    terminal: the bar prints whole lines (no carriage-return redraws); -q and --no-progress print none."""
    import tomllib
    from pathlib import Path

    from edgeasc.synth.generate import DEMO_RECIPE_BATCH, DEMO_RECIPE_EPOCHS, DEMO_RECIPE_WARMUP

    recipe = tomllib.loads((Path(__file__).parents[1] / "recipes" / "demo_student.toml").read_text())
    assert (recipe["optim"]["epochs"], recipe["optim"]["batch_size"], recipe["optim"]["warmup_steps"]) == (
        DEMO_RECIPE_EPOCHS, DEMO_RECIPE_BATCH, DEMO_RECIPE_WARMUP)
    data = tmp_path / "d"
    res = runner.invoke(cli, ["synth", str(data), "--scale", "tiny"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == (
        f"next: edgeasc train --data {data} --out runs/student --recipe recipes/demo_student.toml "
        "--set optim.warmup_steps=8")
    bars = [ln for ln in res.stderr.splitlines() if ln.startswith("synthesising tiny")]
    assert bars and "100%" in bars[-1] and "\r" not in res.stderr
    res = runner.invoke(cli, ["-q", "synth", str(data), "--scale", "tiny", "--overwrite", "--json"])
    doc = json.loads(res.stdout)
    assert res.exit_code == 0 and doc["split_clips"]["25"] == 120 and doc["n_clips"] == 700
    assert "synthesising" not in res.stderr and "wrote 700 clips" not in res.stderr  # -q: warnings, errors only
    res = runner.invoke(cli, ["synth", str(data), "--scale", "tiny", "--overwrite", "--no-progress"])
    assert res.exit_code == 0 and "synthesising" not in res.stderr and "wrote 700 clips" in res.stderr


def test_shortcuts_print_config_and_recipes_in_help(runner, tmp_path):
    import tomllib

    from edgeasc.config import TrainConfig, from_dict, resolve_train_config

    res = runner.invoke(cli, ["train", "--help"])
    assert res.exit_code == 0 and "demo_student.toml" in res.output and "baseline_tau22.toml" in res.output
    res = runner.invoke(cli, ["train", "--recipe", "recipes/demo_student.toml", "--set", "optim.epochs=7",
                              "--epochs", "3", "--batch-size", "8", "--seed", "5", "--device", "cpu",
                              "--print-config"])
    assert res.exit_code == 0, res.output
    cfg = from_dict(TrainConfig, tomllib.loads(res.stdout))  # a recipe edgeasc reads back
    assert (cfg.optim.epochs, cfg.optim.batch_size, cfg.seed, cfg.device) == (3, 8, 5, "cpu")  # shortcuts win
    assert cfg.model.name == "sscp_mobile_s1" and cfg.optim.lr == 0.004
    assert cfg == resolve_train_config("recipes/demo_student.toml", ("optim.epochs=3", "optim.batch_size=8",
                                                                     "seed=5", 'device="cpu"'))
    res = runner.invoke(cli, ["train", "--print-config"])
    assert res.exit_code == 0 and from_dict(TrainConfig, tomllib.loads(res.stdout)) == TrainConfig()
    res = runner.invoke(cli, ["train", "--epochs", "2"])
    assert res.exit_code == 2 and "missing option --data and --out" in res.output
    res = runner.invoke(cli, ["train", "--data", "d", "--out", "o", "--epochs", "0"])
    assert res.exit_code == 2 and "--epochs" in res.output
    for verb in ("prune", "finetune"):
        res = runner.invoke(cli, [verb, "--help"])
        assert all(opt in res.output for opt in ("--epochs", "--batch-size", "--seed", "--device")), verb


def test_train_json(runner, tiny_data, tmp_path, fast_overrides):
    args = ["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--json", "--epochs", "1"]
    for o in fast_overrides:
        args += ["--set", o]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # the log lines go to stderr
    assert doc["model"].endswith("model.pt") and 0 <= doc["final_metrics"]["macro_accuracy"] <= 1
    assert json.loads((tmp_path / "run" / "config.json").read_text())["optim"]["epochs"] == 1


def test_unwritable_outputs_are_one_line_before_the_work(runner, tiny_data, tmp_path):
    """An --out, --cache-dir or run folder that cannot be written (here: below a file, which stops root too) is
    one line with exit 2, found before the evaluation or training runs; elsewhere the CLI still names the path."""
    from edgeasc.checkpoint import save_checkpoint
    from edgeasc.models import create_model

    ckpt = save_checkpoint(tmp_path / "model.pt", create_model("test_cpmobile"), stage="test")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cache = tmp_path / "cache"
    res = runner.invoke(cli, ["evaluate", str(ckpt), "--data", str(tiny_data), "--out", str(blocker / "ev"),
                              "--cache-dir", str(cache)])
    assert res.exit_code == 2 and "cannot write the evaluation report (--out) in" in res.output, res.output
    assert not cache.exists()  # refused before any audio was read
    res = runner.invoke(cli, ["evaluate", str(ckpt), "--data", str(tiny_data), "--cache-dir", str(blocker / "c")])
    assert res.exit_code == 2 and "cannot write the waveform cache (--cache-dir) in" in res.output, res.output
    res = runner.invoke(cli, ["train", "--data", str(tiny_data), "--out", str(blocker / "run"), "--epochs", "1"])
    assert res.exit_code == 2 and "cannot write the edgeasc train run in" in res.output, res.output
    res = runner.invoke(cli, ["export", str(ckpt), "--int8", "--data", str(tiny_data), "--out", str(blocker / "x"),
                              "--cache-dir", str(cache)])
    assert res.exit_code == 2 and "cannot write the export (--out) in" in res.output, res.output
    assert not cache.exists()  # refused before any calibration audio was read
    res = runner.invoke(cli, ["synth", str(blocker / "d"), "--scale", "tiny"])
    assert res.exit_code == 2 and f"error: cannot write {blocker / 'd'}: Not a directory" in res.output, res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
