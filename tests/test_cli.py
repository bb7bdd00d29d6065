"""The CLI end to end on tiny data: exit codes and the key lines a user reads."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_runtime import BIAS, WEIGHTS, build_fc_tflite

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


# --------------------------------------------------------------------------------------------------
# The other commands: their documented exit codes and the line a user reads, on bad input first
# (missing files, a file of the wrong kind, bad option values), plus the happy paths that take well
# under a second (the expensive ones live in test_export, test_prune, test_finetune, test_pipeline)
# --------------------------------------------------------------------------------------------------
LABEL = "Zhang_AITHU_SJTU_task1_1"
RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _one_error(res, code: int, text: str, stdout_empty: bool = True) -> None:
    """Exit `code` with one `error: ...` line holding `text`, last on stderr (after any log lines); no traceback."""
    assert isinstance(res.exception, SystemExit) and res.exit_code == code, (res.exit_code, res.output)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and res.stderr.rstrip().endswith(errors[0]), res.stderr
    assert text in errors[0], (text, errors[0])
    assert "Traceback" not in res.output
    if stdout_empty:
        assert res.stdout == "", res.stdout


def _usage_error(res, text: str) -> None:
    """Click's usage error: exit 2, the usage line and `Error: <text>` on stderr, nothing on stdout."""
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("Usage: ") and f"Error: {text}" in res.stderr, res.stderr
    assert res.stdout == ""


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_data):
    """An untrained test_cpmobile checkpoint, a text file, a WAV of the tiny data, the first bytes of a .tflite
    (no interpreter needed) and a path that does not exist."""
    import torch

    from edgeasc.checkpoint import save_checkpoint
    from edgeasc.models import create_model

    root = tmp_path_factory.mktemp("cli_files")
    torch.manual_seed(0)
    ckpt = save_checkpoint(root / "model.pt", create_model("test_cpmobile"), stage="test")
    text = root / "notes.txt"
    text.write_text("not a model\n")
    tflite = root / "header_only.tflite"  # what the checkpoint readers sniff: the TFL3 file identifier
    tflite.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(24))
    return {"ckpt": ckpt, "text": text, "wav": sorted(tiny_data.glob("audio/*.wav"))[0], "tflite": tflite,
            "missing": root / "missing.pt", "root": root}


@pytest.fixture(scope="module")
def fc_tflite(tmp_path_factory) -> Path:
    """The hand-built int8 FULLY_CONNECTED .tflite of test_runtime (4 inputs, 3 outputs, no edgeasc metadata)."""
    pytest.importorskip("ai_edge_litert")
    path = tmp_path_factory.mktemp("cli_fc") / "fc_int8.tflite"
    path.write_bytes(build_fc_tflite(WEIGHTS, BIAS))
    return path


def test_audit_exit_codes_and_lines(runner, files, fc_tflite):
    res = runner.invoke(cli, ["audit", str(fc_tflite), "--no-layers"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == "fc_int8.tflite  (tflite, fc_int8)" and lines[-1] == "within budget"
    assert "budget dcase2025: parameter memory 24 / 128,000 bytes, MACs (dcase rule) 12 / 30,000,000" in lines
    res = runner.invoke(cli, ["audit", str(fc_tflite), "--budget", "none", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert (doc["param_count"], doc["param_bytes"], doc["macs"]) == (15, 24, 12)
    # over budget: 1, the report still printed, the last line says which limit and by how much
    res = runner.invoke(cli, ["audit", str(fc_tflite), "--max-param-bytes", "23", "--no-layers"])
    _one_error(res, 1, "fc_int8.tflite is over budget dcase2025+overrides: parameter memory 24 bytes exceeds 23 by "
                       "1 bytes", stdout_empty=False)
    assert res.stdout.splitlines()[-1].startswith("OVER BUDGET: parameter memory 24 bytes")
    for args, text in (([files["missing"]], f"model not found: {files['missing']}"),
                       ([files["wav"]], "unsupported model file; expected .tflite, .onnx or an edgeasc checkpoint"),
                       ([files["text"]], "unsupported model file"),
                       ([files["root"]], f"{files['root']} is not a file"),
                       ([fc_tflite, "--budget", "dcase2099"],
                        "unknown budget 'dcase2099'; did you mean 'dcase2025'? (known: dcase2025, none)"),
                       ([fc_tflite, "--max-macs", "0"], "invalid budget: budget limits must be positive")):
        _one_error(runner.invoke(cli, ["audit", *map(str, args)]), 2, text)
    text_pt = files["root"] / "notes.pt"
    text_pt.write_text("not a checkpoint\n")
    _one_error(runner.invoke(cli, ["audit", str(text_pt)]), 2, "notes.pt: not an edgeasc checkpoint")
    _usage_error(runner.invoke(cli, ["audit", str(fc_tflite), "--mac-rule", "macs"]),
                 "Invalid value for '--mac-rule': 'macs' is not one of 'dcase', 'deployed'.")


def test_bench_exit_codes_and_lines(runner, files, fc_tflite):
    pytest.importorskip("tflite_micro")
    res = runner.invoke(cli, ["bench", str(fc_tflite), "--runs", "2", "--warmup", "0", "--inputs", "1",
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("fc_int8.tflite  (fc_int8; in int8 1x4; out int8 1x3)")
    assert "numerics: LiteRT reference vs TFLite Micro: bit-identical on 1/1 inputs" in res.stdout
    assert "\r" not in res.stderr and "arena search" not in res.stderr  # --no-progress: no bars
    for args, text in (([files["ckpt"]], "edgeasc bench runs .tflite models, not .pt files (export a checkpoint "
                                         "first: edgeasc export CHECKPOINT --int8 --data DATA)"),
                       ([files["wav"]], "unsupported model file"),
                       ([fc_tflite, "--inputs", "0"], "need runs >= 1, warmup >= 0 and inputs >= 1 (got 100, 10, 0)"),
                       ([fc_tflite, "--warmup", "-1"], "need runs >= 1, warmup >= 0 and inputs >= 1 (got 100, -1, 8)")):
        _one_error(runner.invoke(cli, ["bench", *map(str, args)]), 2, text)
    _usage_error(runner.invoke(cli, ["bench", str(fc_tflite), "--runs", "many"]),
                 "Invalid value for '--runs': 'many' is not a valid integer.")


def test_firmware_exit_codes_and_lines(runner, files, fc_tflite, tmp_path):
    out = tmp_path / "fw"
    res = runner.invoke(cli, ["firmware", str(fc_tflite), "--out", str(out)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[:2] == ["fc_int8.tflite: 1 layers, 12 MACs, 32 constant bytes", "arena: 8 bytes"]
    assert lines[2].startswith(f"wrote {out / 'model.c'} (")
    assert lines[3] == f"next: make -C firmware_stub host GEN={out}"
    assert {"model.h", "model.c"} <= {p.name for p in out.iterdir()}
    float32 = tmp_path / "fc_f32.tflite"
    float32.write_bytes(build_fc_tflite(WEIGHTS, BIAS, quant=None))
    for model, text in ((float32, "fc_f32.tflite: op 0 (FULLY_CONNECTED) uses FLOAT32 activation 'input'; firmware "
                                  "needs a full-integer int8 model (edgeasc export --int8)"),
                        (files["wav"], "not a TFLite flatbuffer (file identifier"),
                        (files["text"], "notes.txt: not a TFLite flatbuffer (file identifier b'a mo', "
                                        "expected b'TFL3')"),
                        (files["ckpt"], "not a TFLite flatbuffer"),
                        (files["missing"], f"model not found: {files['missing']}")):
        _one_error(runner.invoke(cli, ["firmware", str(model), "--out", str(tmp_path / "bad")]), 2, text)
    assert not (tmp_path / "bad").exists()  # refused before anything is written
    _usage_error(runner.invoke(cli, ["firmware", str(fc_tflite)]), "Missing option '--out'.")


def test_import_checkpoint_exit_codes_and_lines(runner, files, tmp_path):
    import torch

    from edgeasc.checkpoint import load_model
    from edgeasc.models import create_model

    torch.manual_seed(0)
    src_model = create_model("test_cpmobile", strides={"b3": (1, 2), "b4": (2, 1)}).eval()
    src = tmp_path / "lightning.ckpt"
    torch.save({"epoch": 3, "state_dict": {"model." + k: v for k, v in src_model.state_dict().items()}}, src)
    dst = tmp_path / "imported" / "model.pt"
    res = runner.invoke(cli, ["import-checkpoint", str(src), str(dst)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith(f"wrote {dst} (") and lines[1] == f"next: edgeasc evaluate {dst} --data DATA_DIR"
    assert "stores no mel filterbank; assuming the DCASE 2025 frontend" in res.stderr
    imported, _ = load_model(dst)
    x = torch.randn(2, 1, 256, 65)
    with torch.no_grad():
        torch.testing.assert_close(imported.eval()(x), src_model(x), rtol=0, atol=0)
    mel_only = tmp_path / "mel_only.ckpt"
    torch.save({"state_dict": {"mel.1.mel_scale.fb": torch.zeros(4, 4)}}, mel_only)
    out = tmp_path / "o.pt"
    for model, text in ((files["missing"], f"checkpoint not found: {files['missing']}"),
                        (files["wav"], "is not a PyTorch checkpoint (it is a WAV audio file"),
                        (files["tflite"], "is not a PyTorch checkpoint (it is a TFLite model"),
                        (files["text"], "is not a PyTorch checkpoint (neither a zip archive nor a pickle)"),
                        (mel_only, "no CP-Mobile/SSCP-Mobile weights found")):
        _one_error(runner.invoke(cli, ["import-checkpoint", str(model), str(out)]), 2, text)
    assert not out.exists()
    _usage_error(runner.invoke(cli, ["import-checkpoint", str(src)]), "Missing argument 'DST'.")
    _usage_error(runner.invoke(cli, ["import-checkpoint", str(src), str(tmp_path)]),
                 f"Invalid value for 'DST': File '{tmp_path}' is a directory.")


def test_predict_exit_codes_and_lines(runner, files):
    import re

    wav, ckpt = files["wav"], files["ckpt"]
    res = runner.invoke(cli, ["predict", str(wav), "--model", str(ckpt), "--top", "3"])
    assert res.exit_code == 0, res.output
    (line,) = res.stdout.splitlines()
    m = re.fullmatch(rf"{re.escape(str(wav))}  (\S+)  0\.\d\d  \S+  0\.\d\d  \S+  0\.\d\d  \(general model\)", line)
    assert m, line
    res = runner.invoke(cli, ["predict", str(wav), "--model", str(ckpt), "--json"])
    assert res.exit_code == 0, res.output
    (doc,) = json.loads(res.stdout)
    probs = doc["probabilities"]
    assert doc["scene"] == m.group(1) == max(probs, key=probs.get) and abs(sum(probs.values()) - 1) < 1e-9
    for args, text in (([wav, "--model", files["missing"]], f"checkpoint not found: {files['missing']}"),
                       ([wav, "--model", wav], "is not a PyTorch checkpoint (it is a WAV audio file"),
                       ([wav, "--model", files["text"]], "is not a PyTorch checkpoint"),
                       ([files["root"] / "nope.wav", "--model", ckpt], "audio file not found: "),
                       ([files["text"], "--model", ckpt], f"cannot read audio {files['text']}")):
        _one_error(runner.invoke(cli, ["predict", *map(str, args)]), 2, text)
    _usage_error(runner.invoke(cli, ["predict", str(wav), "--model", str(ckpt), "--windows", "all"]),
                 "Invalid value for '--windows': 'all' is not one of 'first', 'mean'.")
    _usage_error(runner.invoke(cli, ["predict", str(wav), "--model", str(ckpt), "--top", "0"]),
                 "Invalid value for '--top': 0 is not between 1 and 10 (the number of scenes)")
    _usage_error(runner.invoke(cli, ["predict", "--model", str(ckpt)]), "Missing argument 'FILES...'.")


def test_predict_refuses_a_tflite_with_the_wrong_outputs(runner, files, fc_tflite):
    res = runner.invoke(cli, ["predict", str(files["wav"]), "--model", str(fc_tflite)])
    _one_error(res, 2, "fc_int8.tflite: 3 outputs for 10 labels")


def test_submission_exit_codes_and_lines(runner, files, tmp_path):
    out = tmp_path / "sub"
    res = runner.invoke(cli, ["submission", str(files["ckpt"]), "--out", str(out), "--label", LABEL])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    root = out / "Zhang_AITHU_SJTU_task1"
    assert lines[0] == f"wrote {root}:" and lines[-1].startswith(f"next: pip install {root} && python -c")
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.split()}
    for dev in ("a", "s1", "s10"):  # a plain checkpoint: the general model answers every device
        assert rows[dev] == ["1,673,944", "7,540", "ok"], rows[dev]
    assert (out / "predictions" / LABEL / "complexity.json").is_file()
    for model, label, text in ((files["ckpt"], "bad label", "invalid submission label 'bad label': expected "
                                                            "<Surname>_<Institute>_task1_<1-4>"),
                               (files["ckpt"], "Zhang_AITHU_task1_5", "invalid submission label 'Zhang_AITHU_task1_5'"),
                               (files["missing"], LABEL, f"checkpoint not found: {files['missing']}"),
                               (files["wav"], LABEL, "is not a PyTorch checkpoint (it is a WAV audio file"),
                               (files["tflite"], LABEL, "is not a PyTorch checkpoint (it is a TFLite model")):
        res = runner.invoke(cli, ["submission", str(model), "--out", str(tmp_path / "bad"), "--label", label])
        _one_error(res, 2, text)
    assert not (tmp_path / "bad").exists()
    _usage_error(runner.invoke(cli, ["submission", str(files["ckpt"]), "--out", str(out)]),
                 "Missing option '--label'.")


def test_teacher_logits_exit_codes_and_lines(runner, files, tiny_data, cache_dir, tmp_path):
    from edgeasc.train.distill import TeacherLogits

    ckpt, out = files["ckpt"], tmp_path / "t.npz"
    args = ["teacher-logits", "--teacher", str(ckpt), "--data", str(tiny_data), "--out", str(out),
            "--cache-dir", str(cache_dir), "--no-progress"]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith(f"{ckpt}  val macro accuracy ") and lines[0].endswith("%")
    assert lines[1] == "ensemble of 1 teachers on 120 clips of split25" and lines[2].startswith(f"wrote {out} (")
    assert lines[3].startswith(f"next: edgeasc train --data {tiny_data} ") and f"kd.teacher_logits='{out}'" in lines[3]
    assert len(TeacherLogits.load(out).clip_ids) == 120
    res = runner.invoke(cli, args)  # a second run reuses the finished member
    assert res.exit_code == 0 and res.stdout.splitlines() == lines, res.output
    assert "reusing logits computed earlier" in res.stderr
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for extra, text in ((["--teacher", files["wav"]], "is not a PyTorch checkpoint (it is a WAV audio file"),
                        (["--teacher", files["text"]], "is not a PyTorch checkpoint"),
                        (["--teacher", run_dir], f"teacher run directory {run_dir} has no model.pt"),
                        (["--teacher", ckpt, "--split", "split99"], "unknown split 'split99'; expected one of train"),
                        (["--teacher", ckpt, "--batch-size", "0"], "batch_size must be >= 1, got 0")):
        res = runner.invoke(cli, ["teacher-logits", *map(str, extra), "--data", str(tiny_data),
                                  "--out", str(tmp_path / "bad.npz")])
        _one_error(res, 2, text)
    res = runner.invoke(cli, ["teacher-logits", "--teacher", str(ckpt), "--data", str(tmp_path / "nowhere"),
                              "--out", str(tmp_path / "bad.npz")])
    _one_error(res, 2, f"{tmp_path / 'nowhere'} is not a TAU22-layout dataset (no meta.csv)")
    assert not (tmp_path / "bad.npz").exists()
    _usage_error(runner.invoke(cli, ["teacher-logits", "--teacher", str(ckpt), "--data", str(tiny_data),
                                     "--out", str(tmp_path)]),
                 f"Invalid value for '--out': File '{tmp_path}' is a directory.")


def test_export_bad_input_exit_codes(runner, files, tiny_data, tmp_path):
    """Refusals before any conversion (the conversions themselves are test_export's)."""
    from edgeasc.checkpoint import read_checkpoint
    from edgeasc.devices.bundle import save_bundle

    ckpt, out = files["ckpt"], tmp_path / "export"
    for model, extra, text in ((files["wav"], [], "is not a PyTorch checkpoint (it is a WAV audio file"),
                               (files["tflite"], [], "is not a PyTorch checkpoint (it is a TFLite model"),
                               (files["missing"], [], f"checkpoint not found: {files['missing']}"),
                               (ckpt, ["--sensitivity"], "--sensitivity needs --int8 (it measures the int8 model's "
                                                         "rounding)")):
        res = runner.invoke(cli, ["export", str(model), "--data", str(tiny_data), "--out", str(out), *extra])
        _one_error(res, 2, text)
    res = runner.invoke(cli, ["export", str(ckpt), "--int8", "--data", str(tmp_path / "nowhere"), "--out", str(out)])
    _one_error(res, 2, f"{tmp_path / 'nowhere'} is not a TAU22-layout dataset (no meta.csv)")
    general = read_checkpoint(ckpt)
    bundle = save_bundle(tmp_path / "bundle.pt", general, {"a": general}, {"test": True})
    res = runner.invoke(cli, ["export", str(bundle), "--int8", "--data", str(tiny_data), "--out", str(out),
                              "--no-input-norm", "--sensitivity"])
    _one_error(res, 2, "--no-input-norm and --sensitivity: not available for a device bundle; export the bundle, "
                       "then a member's OUT/<member>/model.pt with these options")
    assert not out.exists()
    _usage_error(runner.invoke(cli, ["export", str(ckpt), "--data", str(tiny_data), "--weight-rounding", "floor"]),
                 "Invalid value for '--weight-rounding': 'floor' is not one of 'adaptive', 'nearest'.")
    _usage_error(runner.invoke(cli, ["export", str(ckpt)]), "Missing option '--data'.")


def test_prune_bad_input_exit_codes(runner, files, tiny_data, tmp_path):
    """Refusals before any pruning stage trains (the pruning runs are test_prune's)."""
    ckpt, out = files["ckpt"], tmp_path / "pruned"
    for model, extra, text in (
            (files["wav"], [], "is not a PyTorch checkpoint (it is a WAV audio file"),
            (files["missing"], [], f"checkpoint not found: {files['missing']}"),
            (ckpt, ["--target", "dcase2099"], "unknown budget 'dcase2099'; did you mean 'dcase2025'?"),
            (ckpt, ["--set", "prune.n_stepz=3"], "unknown config key 'prune.n_stepz'; did you mean 'n_steps'?"),
            (ckpt, ["--to-base-channels", "0"], "prune.stages entries must be positive base widths or 'budget', got 0"),
            (ckpt, ["--max-macs", "-5"], "invalid config: prune.max_macs must be positive, got -5"),
            (ckpt, ["--device", "tpu"], "invalid config: device must be auto, cpu or cuda[:N], got 'tpu'"),
            (ckpt, ["--recipe", files["missing"].with_suffix(".toml")], "recipe not found: "),
            (ckpt, ["--recipe", files["text"]], f"recipe {files['text']} is not valid TOML: ")):
        res = runner.invoke(cli, ["prune", str(model), "--data", str(tiny_data), "--out", str(out), *map(str, extra)])
        _one_error(res, 2, text)
    assert not out.exists()
    _usage_error(runner.invoke(cli, ["prune", str(ckpt), "--data", str(tiny_data), "--out", str(out),
                                     "--param-dtype", "int4"]),
                 "Invalid value for '--param-dtype': 'int4' is not one of 'fp16', 'int8', 'fp32', 'bf16'.")
    _usage_error(runner.invoke(cli, ["prune", str(ckpt), "--data", str(tiny_data)]), "Missing option '--out'.")


def test_finetune_bad_input_exit_codes(runner, files, tiny_data, tmp_path):
    """Refusals before any device run trains (the fine-tuning runs are test_finetune's)."""
    ckpt, out = files["ckpt"], tmp_path / "devices"
    for model, extra, text in (
            (files["wav"], [], "is not a PyTorch checkpoint (it is a WAV audio file"),
            (files["missing"], [], f"checkpoint not found: {files['missing']}"),
            (ckpt, ["--devices", "a,zz"], "unknown device id 'zz' (valid ids: a, b, c, s1, s2, s3, s4, s5, s6)"),
            (ckpt, ["--select", "--holdout", "1.5"], "--holdout must be in (0, 1), got 1.5"),
            (ckpt, ["--set", 'model.name="cpmobile"'],
             "finetune takes the model (name, widths, weights) from model.pt; remove [model] name"),
            (ckpt, ["--device", "tpu"], "invalid config: device must be auto, cpu or cuda[:N], got 'tpu'"),
            (ckpt, ["--recipe", files["text"]], f"recipe {files['text']} is not valid TOML: ")):
        res = runner.invoke(cli, ["finetune", str(model), "--data", str(tiny_data), "--out", str(out),
                                  *map(str, extra)])
        _one_error(res, 2, text)
    res = runner.invoke(cli, ["finetune", str(ckpt), "--data", str(tmp_path / "nowhere"), "--out", str(out)])
    _one_error(res, 2, f"{tmp_path / 'nowhere'} is not a TAU22-layout dataset (no meta.csv)")
    assert not out.exists()
    _usage_error(runner.invoke(cli, ["finetune", str(files["root"]), "--data", str(tiny_data), "--out", str(out)]),
                 f"Invalid value for 'CHECKPOINT': File '{files['root']}' is a directory.")


def test_pipeline_bad_input_exit_codes(runner, files, tiny_data, tmp_path):
    """Refusals before any stage runs (the pipeline runs are test_pipeline's)."""
    out = tmp_path / "pipeline"
    for recipe, text in ((files["missing"].with_suffix(".toml"), "recipe not found: "),
                         (files["text"], f"recipe {files['text']} is not valid TOML: "),
                         (RECIPES / "demo_student.toml", "demo_student.toml: unknown section(s) ['augment', 'data', ")):
        res = runner.invoke(cli, ["pipeline", str(recipe), "--data", str(tiny_data), "--out", str(out)])
        _one_error(res, 2, text)
    assert "(a pipeline has [pipeline] and [[stage]])" in res.stderr
    assert not out.exists()
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    res = runner.invoke(cli, ["pipeline", str(RECIPES / "pipeline_demo.toml"), "--data", str(tiny_data),
                              "--out", str(blocker / "p")])
    _one_error(res, 2, f"cannot write the edgeasc pipeline run in {blocker / 'p'}: Not a directory")
    _usage_error(runner.invoke(cli, ["pipeline", str(RECIPES / "pipeline_demo.toml"), "--data", str(tiny_data),
                                     "--out", str(out), "--seed", "x"]),
                 "Invalid value for '--seed': 'x' is not a valid integer.")


def test_four_inputs_that_used_to_crash_are_one_line_errors(runner, files, tiny_data, tmp_path):
    """A recipe that is not text, an output path below a file, an unknown torch device for teacher-logits and a
    negative seed: each was a Python traceback (exit 1) before; now one line and exit 2."""
    out = tmp_path / "run"
    res = runner.invoke(cli, ["train", "--data", str(tiny_data), "--out", str(out), "--recipe", str(files["wav"])])
    _one_error(res, 2, "is not a text file (not UTF-8)")
    assert not out.exists()

    res = runner.invoke(cli, ["import-checkpoint", str(files["ckpt"]), str(files["text"] / "x.pt")])
    _one_error(res, 2, f"cannot write {files['text']}")

    res = runner.invoke(cli, ["teacher-logits", "--teacher", str(files["ckpt"]), "--data", str(tiny_data),
                              "--out", str(tmp_path / "t.npz"), "--device", "tpu", "--no-progress"])
    _one_error(res, 2, "device must be auto, cpu or cuda[:N], got 'tpu'")
    assert not (tmp_path / "t.npz").exists()

    for args in (["synth", str(tmp_path / "d"), "--scale", "tiny", "--seed", "-1"],
                 ["export", str(files["ckpt"]), "--int8", "--data", str(tiny_data), "--seed", "-1"],
                 ["bench", str(files["tflite"]), "--seed", "-1"]):
        _usage_error(runner.invoke(cli, args), "Invalid value for '--seed': -1 is negative; a seed is >= 0")
