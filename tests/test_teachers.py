"""Ensemble teacher logits: the mean of the members' predictions, resumable, covering the split."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgeasc.checkpoint import save_checkpoint
from edgeasc.cli import cli
from edgeasc.config import FrontendConfig
from edgeasc.data.dataset import TAUDataset, load_waveforms
from edgeasc.errors import CheckpointError, ConfigError, DataError
from edgeasc.evaluate import predict_logits
from edgeasc.metrics import macro_accuracy
from edgeasc.models import create_model
from edgeasc.train.distill import TeacherLogits
from edgeasc.train.teachers import compute_teacher_logits


@pytest.fixture()
def teachers(tmp_path):
    """A CP-Mobile run directory whose checkpoint records its accuracy, and a bare PaSST checkpoint."""
    torch.manual_seed(0)
    cnn_run = tmp_path / "t_cnn"
    save_checkpoint(cnn_run / "model.pt", create_model("test_cpmobile").eval(), stage="train",
                    extra={"val_macro_accuracy": 0.25, "val_split": "test"})
    passt_ckpt = tmp_path / "passt_tiny.pt"
    save_checkpoint(passt_ckpt, create_model("passt_tiny").eval(), stage="train")
    return cnn_run, passt_ckpt


def member_predictions(model_path: Path, waves: np.ndarray) -> np.ndarray:
    from edgeasc.checkpoint import load_model

    model, _ = load_model(model_path)
    if getattr(model, "input_kind", "logmel") == "waveform":
        with torch.no_grad():
            return model(torch.from_numpy(np.array(waves))).numpy()
    return predict_logits(model, waves, FrontendConfig(), batch_size=16)


def test_ensemble_is_the_mean_of_its_members(tiny_data, cache_dir, tmp_path, teachers, caplog):
    cnn_run, passt_ckpt = teachers
    out = tmp_path / "teachers.npz"
    caplog.set_level(logging.INFO, logger="edgeasc")
    path = compute_teacher_logits([cnn_run, passt_ckpt], tiny_data, out, batch_size=7, cache_dir=cache_dir,
                                  progress=False)
    assert path == out and out.is_file()
    tl = TeacherLogits.load(out)

    ds = TAUDataset(tiny_data)
    clips = ds.clips("split25")
    assert tl.clip_ids == tuple(c.clip_id for c in clips)
    fe = FrontendConfig()
    waves = load_waveforms(ds.root, clips, fe.sample_rate_hz, fe.clip_samples, cache_dir)
    cnn = member_predictions(cnn_run / "model.pt", waves)
    passt = member_predictions(passt_ckpt, waves)
    np.testing.assert_allclose(tl.logits, (cnn + passt) / 2, rtol=1e-5, atol=1e-5)
    assert tl.members == (str(cnn_run), str(passt_ckpt))

    # accuracy: recorded by the CNN's run; computed on the test fold for the bare PaSST checkpoint
    test_clips = ds.clips("test")
    test_waves = load_waveforms(ds.root, test_clips, fe.sample_rate_hz, fe.clip_samples, cache_dir)
    expected = macro_accuracy(np.array([c.label for c in test_clips]), member_predictions(passt_ckpt, test_waves).argmax(1))
    assert tl.member_val_accuracy[0] == pytest.approx(0.25)
    assert tl.member_val_accuracy[1] == pytest.approx(expected)
    assert "computed on test" in caplog.text and "checkpoint (test)" in caplog.text

    # coverage: every training clip is found; clips outside the split are reported with a count
    arr, found = tl.lookup([c.clip_id for c in clips])
    assert found.all() and np.array_equal(arr, tl.logits)
    outside = [c.clip_id for c in ds.clips("train") if c.clip_id not in set(tl.clip_ids)]
    assert outside
    with pytest.raises(DataError, match=f"{len(outside)} of {len(outside) + 1} training clips have no teacher"):
        tl.lookup([clips[0].clip_id] + outside)


def test_finished_members_are_reused_and_changed_ones_recomputed(tiny_data, cache_dir, tmp_path, teachers, caplog):
    cnn_run, passt_ckpt = teachers
    out = tmp_path / "teachers.npz"
    compute_teacher_logits([cnn_run, passt_ckpt], tiny_data, out, cache_dir=cache_dir, progress=False)
    first = TeacherLogits.load(out)
    partial = tmp_path / ".teachers.npz.partial"
    assert len(list(partial.glob("member_*.npy"))) == 2 and len(list(partial.glob("member_*.json"))) == 2
    assert not list(partial.glob("*.rank*"))  # shards are merged and removed
    out.unlink()

    caplog.set_level(logging.INFO, logger="edgeasc")
    caplog.clear()
    compute_teacher_logits([cnn_run, passt_ckpt], tiny_data, out, cache_dir=cache_dir, progress=False)
    assert caplog.text.count("reusing logits computed earlier") == 2
    again = TeacherLogits.load(out)
    assert np.array_equal(first.logits, again.logits) and again.member_val_accuracy == first.member_val_accuracy

    # a retrained member (new weights, same path) is recomputed; the other is still reused
    torch.manual_seed(1)
    save_checkpoint(passt_ckpt, create_model("passt_tiny").eval(), stage="train")
    caplog.clear()
    compute_teacher_logits([cnn_run, passt_ckpt], tiny_data, out, cache_dir=cache_dir, progress=False)
    assert caplog.text.count("reusing logits computed earlier") == 1
    assert not np.array_equal(TeacherLogits.load(out).logits, first.logits)

    caplog.clear()
    compute_teacher_logits([cnn_run], tiny_data, out, cache_dir=cache_dir, progress=False, resume=False)
    assert "reusing" not in caplog.text


def test_member_accuracy_from_metrics_json(tiny_data, cache_dir, tmp_path):
    run = tmp_path / "run"
    save_checkpoint(run / "model.pt", create_model("test_cpmobile").eval(), stage="import")
    (run / "metrics.json").write_text(json.dumps({"split": "test", "macro_accuracy": 0.625}))
    tl = TeacherLogits.load(compute_teacher_logits([run], tiny_data, tmp_path / "t.npz", cache_dir=cache_dir,
                                                   progress=False))
    assert tl.member_val_accuracy == (0.625,)


def test_bad_teacher_lists_are_rejected(tiny_data, tmp_path, teachers):
    cnn_run, passt_ckpt = teachers
    out = tmp_path / "t.npz"
    with pytest.raises(ConfigError, match="no teachers"):
        compute_teacher_logits([], tiny_data, out)
    with pytest.raises(ConfigError, match="same checkpoint"):
        compute_teacher_logits([cnn_run, cnn_run / "model.pt"], tiny_data, out)
    with pytest.raises(CheckpointError, match="teacher not found"):
        compute_teacher_logits([tmp_path / "nope"], tiny_data, out)
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(CheckpointError, match="has no model.pt"):
        compute_teacher_logits([tmp_path / "empty_run"], tiny_data, out)
    wrong = tmp_path / "wrong.pt"
    save_checkpoint(wrong, create_model("test_cpmobile", n_classes=4), stage="train")
    with pytest.raises(CheckpointError, match="outputs 4 logits, expected 10"):
        compute_teacher_logits([wrong], tiny_data, out, progress=False)
    assert not out.exists()


def test_cli_teacher_logits(tiny_data, cache_dir, tmp_path, teachers):
    cnn_run, passt_ckpt = teachers
    out = tmp_path / "cli.npz"
    runner = CliRunner()
    result = runner.invoke(cli, ["teacher-logits", "--teacher", str(cnn_run), "--teacher", str(passt_ckpt),
                                 "--data", str(tiny_data), "--out", str(out), "--cache-dir", str(cache_dir),
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output and "next: edgeasc train" in result.output
    assert "val macro accuracy  25.00%" in result.output
    assert TeacherLogits.load(out).members == (str(cnn_run), str(passt_ckpt))
    bad = runner.invoke(cli, ["teacher-logits", "--teacher", str(tmp_path / "nope"), "--data", str(tiny_data),
                              "--out", str(out)])
    assert bad.exit_code == 2 and "error: teacher not found" in bad.output


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tiny_data, cache_dir, tmp_path, teachers):
    cnn_run, passt_ckpt = teachers
    single = compute_teacher_logits([cnn_run, passt_ckpt], tiny_data, tmp_path / "one.npz", cache_dir=cache_dir,
                                    progress=False)
    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "ddp" / "two.npz"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "edgeasc.cli", "teacher-logits",
           "--teacher", str(cnn_run), "--teacher", str(passt_ckpt), "--data", str(tiny_data), "--out", str(out),
           "--no-progress", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = TeacherLogits.load(single), TeacherLogits.load(out)
    assert a.clip_ids == b.clip_ids and a.member_val_accuracy == pytest.approx(b.member_val_accuracy)
    np.testing.assert_allclose(a.logits, b.logits, rtol=1e-5, atol=1e-5)


def test_kd_gains_checks_need_the_same_two_seeds_in_both_rows():
    """benchmarks/experiments/kd_gains.py: the ensemble check is per seed; the KD-gain verdict needs a seed-to-seed spread."""
    import argparse

    from conftest import load_benchmarks_module

    summarise = load_benchmarks_module("experiments/kd_gains").summarise
    args = argparse.Namespace(scale="tiny", seeds=[0, 1], set=[], teacher_seed=None, recorded=None)

    def r(macro: float) -> dict:
        return {"macro": macro, "per_device": {"a": macro}, "unseen": None}

    runs = {"student labels only": {0: r(60.0), 1: r(61.0)},
            "teacher t1": {0: r(62.0), 1: r(63.0)}, "teacher t2": {0: r(61.0), 1: r(64.0)},
            "teacher ensemble": {0: r(63.0), 1: r(63.5)},  # beats its best member in seed 0 only
            "student KD": {0: r(63.0), 1: r(62.5)}}
    checks = summarise(runs, args)["checks"]
    assert checks["ensemble_beats_best_member_every_seed"] is False
    assert checks["kd_gain_pp"] == pytest.approx(2.25)  # 62.75 - 60.5
    assert checks["seed_spread_pp"] == pytest.approx(1.0)  # the larger of the two rows' spreads
    assert checks["kd_gain_exceeds_spread"] is True
    runs["student KD"] = {0: r(64.0)}  # one seed of KD finished (--report-only): a gain, but no verdict
    checks = summarise(runs, args)["checks"]
    assert checks["kd_gain_pp"] == pytest.approx(3.5)
    assert checks["seed_spread_pp"] is None and checks["kd_gain_exceeds_spread"] is None
    # rows trained again: checked against their recorded figures on the same CPU model only
    again = [{"row": "teacher t1", "seed": 0, "recorded": 62.0, "measured": 61.0, "recorded_cpu_model": "Intel",
              "cpu_model": "AMD"}]
    assert summarise(runs, args, [], again)["checks"]["recorded_rows_reproduced"] is None
    again.append({**again[0], "recorded_cpu_model": "AMD"})
    assert summarise(runs, args, [], again)["checks"]["recorded_rows_reproduced"] is False


def test_kd_gains_recorded_rows_keep_kd_seeds_only_where_the_teachers_match(tmp_path):
    """benchmarks/experiments/kd_gains.py --recorded: an earlier result's per-seed figures are reused, except KD students that
    distilled another ensemble than --teacher-seed asks for; a result of another experiment is refused."""
    import argparse
    import json

    from conftest import load_benchmarks_module

    kd_gains = load_benchmarks_module("experiments/kd_gains")
    r = {"macro": 50.0, "per_device": {"a": 50.0}, "unseen": None}
    prev = {"benchmark": "kd_gains", "scale": "tiny", "student_recipe": kd_gains.STUDENT,
            "kd_recipe": kd_gains.KD_STUDENT, "overrides": [], "teacher_seed": None,
            "rows": {"student labels only": {"runs": {"0": r, "1": r}}, "student KD": {"runs": {"0": r, "1": r}},
                     "student KD label_weight0.5": {"runs": {"1": r}}}}
    path = tmp_path / "prev.json"
    path.write_text(json.dumps(prev))
    args = argparse.Namespace(scale="tiny", set=[], teacher_seed=None, recorded=[str(path)])
    rows = kd_gains._load_recorded(args)
    assert sorted(rows["student KD"]) == [0, 1] and sorted(rows["student labels only"]) == [0, 1]
    args.teacher_seed = 0  # now every seed distils seed 0's ensemble: seed 1's recorded KD students no longer fit
    rows = kd_gains._load_recorded(args)
    assert sorted(rows["student KD"]) == [0] and "student KD label_weight0.5" not in rows
    assert sorted(rows["student labels only"]) == [0, 1]
    args.set = ["optim.epochs=2"]
    with pytest.raises(SystemExit, match="another experiment"):
        kd_gains._load_recorded(args)
    path.write_text('{"rows": ')  # a truncated file: one clear line, not a traceback
    with pytest.raises(SystemExit, match="not a readable benchmark result"):
        kd_gains._load_recorded(args)


def test_kd_gains_training_fit_of_stored_ensemble_logits(tmp_path, tiny_data):
    """benchmarks/experiments/kd_gains.py: how well the KD targets fit their own training clips, from the stored logits."""
    from conftest import load_benchmarks_module

    from edgeasc.data.dataset import TAUDataset
    from edgeasc.labels import SCENES
    from edgeasc.train.distill import TeacherLogits

    clips = TAUDataset(tiny_data).clips("split25")
    y = np.array([SCENES.index(c.scene) for c in clips])
    logits = np.zeros((len(clips), len(SCENES)), np.float32)
    logits[np.arange(len(y)), y] = np.log(9.0)  # p(true) = 9 / (9 + 9) = 0.5 at T = 1
    logits[0] = 0.0
    logits[0, (y[0] + 1) % len(SCENES)] = 5.0  # one clip wrong
    TeacherLogits(tuple(c.clip_id for c in clips), logits, tuple(SCENES), ("m",), (0.5,)).save(tmp_path / "e.npz")
    fit = load_benchmarks_module("experiments/kd_gains").training_fit(tmp_path / "e.npz", tiny_data, 2.0)
    n = len(clips)
    assert fit["clips"] == n and fit["accuracy"] == pytest.approx(100 * (n - 1) / n)
    p0 = 1 / (np.exp(5.0) + 9)  # the wrong clip's true class
    assert fit["p_true_t1"] == pytest.approx(((n - 1) * 0.5 + p0) / n)
    p2, p0_2 = 3 / (3 + 9), 1 / (np.exp(2.5) + 9)  # T = 2: 9 ** 0.5 = 3
    assert fit["p_true_t2"] == pytest.approx(((n - 1) * p2 + p0_2) / n)
