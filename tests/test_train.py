"""Training: determinism, exact resume after a kill, KD coverage, data parallel with torchrun."""

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

from edgeasc.artifacts import exclusive_run
from edgeasc.checkpoint import load_model, read_checkpoint
from edgeasc.config import resolve_train_config
from edgeasc.data.dataset import TAUDataset
from edgeasc.errors import CheckpointError, ConfigError, DataError, DomainError
from edgeasc.labels import SCENES
from edgeasc.train.clips import batches_per_epoch
from edgeasc.train.distill import TeacherLogits
from edgeasc.train.loop import get_lr, train, warmup_warning


def same_weights(a: Path, b: Path) -> bool:
    sa, sb = read_checkpoint(a)["state_dict"], read_checkpoint(b)["state_dict"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_lr_schedule():
    """The official baseline's per-step schedule: step k of the warm-up at k / warmup (the first step at 0)."""
    assert get_lr(0, 100, 1.0, 10, 0.0) == 0.0
    assert get_lr(1, 100, 1.0, 10, 0.0) == pytest.approx(0.1)
    assert get_lr(9, 100, 1.0, 10, 0.0) == pytest.approx(0.9)
    assert get_lr(10, 100, 1.0, 10, 0.0) == pytest.approx(1.0)
    assert get_lr(0, 100, 1.0, 0, 0.0) == pytest.approx(1.0)
    assert get_lr(55, 100, 1.0, 10, 0.0) == pytest.approx(0.5)
    assert get_lr(100, 100, 1.0, 10, 0.1) == pytest.approx(0.1)


def test_an_epoch_keeps_the_last_partial_batch_as_the_official_dataloader_does():
    assert batches_per_epoch(3460, 256) == 14  # the official code's 14 steps per epoch on `small`
    assert batches_per_epoch(512, 256) == 2
    assert batches_per_epoch(513, 256) == 2  # a 1-clip batch would break BatchNorm
    assert batches_per_epoch(514, 256) == 3
    assert batches_per_epoch(515, 256, world=2) == 2 and batches_per_epoch(516, 256, world=2) == 3
    assert batches_per_epoch(40, 256) == 1


def forty_clips(tiny_data: Path, root: Path) -> Path:
    """A TAU22-layout folder of 4 clips per scene of `tiny_data`'s split25, each split (test included) those 40."""
    from conftest import load_benchmarks_module

    parity = load_benchmarks_module("experiments/training_parity/step_equivalence")
    kept, per_scene = [], {}
    for row in parity.split25_rows(tiny_data):
        scene = row.split("\t")[1]
        if per_scene.get(scene, 0) < 4:
            per_scene[scene] = per_scene.get(scene, 0) + 1
            kept.append(row)
    assert len(kept) == 40
    return parity.subset_folder(tiny_data, root, kept)


@pytest.mark.slow
def test_a_tiny_run_learns_its_clips_in_eval_mode(tiny_data, tmp_path, cache_dir):
    """48 steps on 40 clips end at >= 90% on those clips in eval mode (95% measured). With BatchNorm's moving
    averages as training leaves them (optim.debias_bn = false, the official code's behaviour) the same run
    ends at 77.5%, and one of cpmobile_baseline at 20% (eval mode predicting nearly one class): their start
    (mean 0, variance 1) still holds 0.9^48 of them, several times the true variance of some layers
    (docs/training.md). Augmentation is off: it slows memorising 40 clips, it does not stop it."""
    data = forty_clips(tiny_data, tmp_path / "forty")
    sets = ("model.name=test_cpmobile", "optim.batch_size=40", "optim.epochs=48", "optim.lr=0.01",
            "optim.warmup_steps=5", "augment.roll_max_samples=0", "augment.freq_mask_bins=0",
            "augment.mixstyle_p=0", "data.val_split=split25", "eval_every=0", f"data.cache_dir={str(cache_dir)!r}")
    result = train(resolve_train_config(None, sets), data, tmp_path / "run", progress=False)
    metrics = result.final_metrics
    assert metrics["n_clips"] == 40 and metrics["bn_debias"]["steps"] == 48
    assert metrics["macro_accuracy"] >= 0.9, metrics["bn_debias"]
    # a run that starts from a checkpoint keeps its moving averages: their start is that checkpoint's statistics
    init = f"model.init_checkpoint={str(result.model_path)!r}"
    tuned_cfg = resolve_train_config(None, sets + ("optim.epochs=2", init))
    tuned = train(tuned_cfg, data, tmp_path / "tuned", progress=False)
    assert "bn_debias" not in tuned.final_metrics


def test_debiasing_batchnorm_is_the_average_of_the_batch_statistics():
    """After k steps from (0, 1), debiasing gives the momentum-weighted average of the batch statistics; after
    enough steps (a long run) it changes nothing at all."""
    from edgeasc.train.batchnorm import debias_batchnorm

    g = torch.Generator().manual_seed(0)
    bn = torch.nn.BatchNorm2d(3)
    means, variances = [], []
    for _ in range(5):
        x = torch.randn(8, 3, 4, 4, generator=g) * 2 + 5
        means.append(x.mean(dim=(0, 2, 3)))
        variances.append(x.var(dim=(0, 2, 3), unbiased=True))
        bn(x)
    weights = torch.tensor([0.1 * 0.9 ** (4 - j) for j in range(5)])
    want_mean = (weights[:, None] * torch.stack(means)).sum(0) / weights.sum()
    want_var = (weights[:, None] * torch.stack(variances)).sum(0) / weights.sum()
    model = torch.nn.Sequential(bn)
    info = debias_batchnorm(model)
    assert info["steps"] == 5 and info["start_weight"] == pytest.approx(0.9 ** 5)
    assert torch.allclose(bn.running_mean, want_mean, atol=1e-5) and torch.allclose(bn.running_var, want_var, atol=1e-4)
    bn.num_batches_tracked.fill_(280)  # 20 epochs of `small`: 0.9^280 = 2e-13
    before = (bn.running_mean.clone(), bn.running_var.clone())
    assert debias_batchnorm(model) is None
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])


def test_warmup_longer_than_half_the_run_is_warned():
    """prune_gains found it: a 2-epoch stage (108 steps) with the student's 100 warm-up steps ended 10-15 points
    below where it started (docs/pruning.md)."""
    assert warmup_warning(100, 108) is not None and "100" in warmup_warning(100, 108)
    assert warmup_warning(54, 108) is None  # half is fine
    assert warmup_warning(100, 216) is None
    assert warmup_warning(0, 0) is None
    # the default 2,000-step warm-up on a 150-step run: the rate never gets past 149/2000 of its peak
    assert "only reaches 7.4% of optim.lr" in warmup_warning(2000, 150)  # 7.45%
    assert "peaks near the end" in warmup_warning(100, 108)


def test_same_seed_same_weights_and_run_artifacts(tiny_data, tmp_path, fast_overrides):
    cfg = resolve_train_config(None, fast_overrides)
    r1 = train(cfg, tiny_data, tmp_path / "r1", progress=False)
    r2 = train(cfg, tiny_data, tmp_path / "r2", progress=False)
    assert same_weights(r1.model_path, r2.model_path)
    for name in ("config.json", "last.pt", "model.pt", "metrics.json", "metrics.jsonl", "train.log"):
        assert (tmp_path / "r1" / name).is_file(), name
    lines = [json.loads(l) for l in (tmp_path / "r1" / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2]
    assert all(l["loss"] > 0 and "val_macro_accuracy" in l for l in lines)
    model, ckpt = load_model(r1.model_path)
    assert ckpt["config"]["frontend"]["n_mels"] == 256 and ckpt["stage"] == "train"
    cfg3 = resolve_train_config(None, fast_overrides + ("seed=1",))
    r3 = train(cfg3, tiny_data, tmp_path / "r3", progress=False)
    assert not same_weights(r1.model_path, r3.model_path)
    # each run's train.log holds that run only (runs in one process: pipeline, finetune, benchmarks)
    log1, log3 = (tmp_path / "r1" / "train.log").read_text(), (tmp_path / "r3" / "train.log").read_text()
    assert log1.count("training test_cpmobile on") == 1 and log3.count("training test_cpmobile on") == 1


def test_existing_run_needs_resume_and_same_config(tiny_data, tmp_path, fast_overrides):
    cfg = resolve_train_config(None, fast_overrides + ("optim.epochs=1",))
    train(cfg, tiny_data, tmp_path / "r", progress=False)
    with pytest.raises(DataError, match="--resume"):
        train(cfg, tiny_data, tmp_path / "r", progress=False)
    other = resolve_train_config(None, fast_overrides + ("optim.epochs=1", "optim.lr=0.1"))
    with pytest.raises(ConfigError, match="optim.lr"):
        train(other, tiny_data, tmp_path / "r", resume=True, progress=False)
    again = train(cfg, tiny_data, tmp_path / "r", resume=True, progress=False)  # already complete
    assert again.epochs_run == 0
    # two processes training into one folder would race on last.pt: the second is refused at once
    with exclusive_run(tmp_path / "r", "edgeasc train"):
        with pytest.raises(DataError, match="another edgeasc train is running in"):
            train(cfg, tiny_data, tmp_path / "r", resume=True, progress=False)
    assert train(cfg, tiny_data, tmp_path / "r", resume=True, progress=False).epochs_run == 0  # lock released


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights(tiny_data, tmp_path, fast_overrides):
    over = fast_overrides + ("optim.epochs=4",)
    ref = train(resolve_train_config(None, over), tiny_data, tmp_path / "ref", progress=False)
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "edgeasc.cli", "train", "--data", str(tiny_data), "--out", str(run), "--no-progress"]
    for o in over:
        cmd += ["--set", o]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "last.pt").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = torch.load(run / "last.pt", weights_only=True)
    assert 1 <= state["epoch"] < 4  # killed mid-run: epochs left to do
    assert not (run / "model.pt").exists()
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert same_weights(ref.model_path, run / "model.pt")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2, 3, 4]


def test_kd_training_checks_teacher_coverage(tiny_data, tmp_path, fast_overrides):
    clips = TAUDataset(tiny_data).clips("split25")
    ids = [c.clip_id for c in clips]
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(len(ids), len(SCENES), generator=g).numpy()
    full = TeacherLogits(tuple(ids), logits, tuple(SCENES), ("t",), (float("nan"),)).save(tmp_path / "full.npz")
    part = TeacherLogits(tuple(ids[1:]), logits[1:], tuple(SCENES), ("t",), (0.5,)).save(tmp_path / "part.npz")
    over = fast_overrides + ("optim.epochs=1", "kd.label_weight=0.5")
    r = train(resolve_train_config(None, over + (f"kd.teacher_logits={str(full)!r}",)), tiny_data, tmp_path / "kd",
              progress=False)
    rec = json.loads((r.run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert rec["kd_loss"] > 0 and rec["label_loss"] > 0
    assert rec["loss"] == pytest.approx(0.5 * rec["label_loss"] + 0.5 * rec["kd_loss"], rel=1e-5)
    with pytest.raises(DataError, match="1 of .* training clips have no teacher logits"):
        train(resolve_train_config(None, over + (f"kd.teacher_logits={str(part)!r}",)), tiny_data, tmp_path / "p1",
              progress=False)
    r = train(resolve_train_config(None, over + (f"kd.teacher_logits={str(part)!r}", "kd.allow_missing_teacher=true")),
              tiny_data, tmp_path / "p2", progress=False)
    assert r.model_path.is_file()


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tiny_data, tmp_path, fast_overrides):
    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "ddp"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "edgeasc.cli", "train",
           "--data", str(tiny_data), "--out", str(out), "--no-progress"]
    for o in fast_overrides:
        cmd += ["--set", o]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    model, ckpt = load_model(out / "model.pt")
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2]
    assert all(torch.isfinite(torch.tensor(l["loss"])) for l in lines)
    assert "world 2" in (out / "train.log").read_text()


@pytest.mark.parametrize("name", ["sscp_mobile_s1", "cpmobile_b48"])
def test_channels_last_input_gives_the_nchw_outputs_and_gradients(name):
    """optim.channels_last (default on) only changes the memory layout of the log-mel batch."""
    from conftest import randomize_batchnorm

    from edgeasc.models import create_model

    torch.manual_seed(0)
    model = randomize_batchnorm(create_model(name), 0)
    x = torch.randn(4, 1, 256, 65)
    outs, grads = [], []
    for fmt in (torch.contiguous_format, torch.channels_last):
        model.zero_grad()
        y = model(x.contiguous(memory_format=fmt))
        y.square().sum().backward()
        outs.append(y.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(outs[1], outs[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-3, rtol=1e-3)


def test_bf16_mixed_precision_trains_and_16_mixed_needs_cuda(tiny_data, tmp_path, fast_overrides):
    """optim.precision as the official baseline's --precision: bf16 autocast runs on a CPU too (and changes the
    weights), float16 with a gradient scaler is CUDA only and is refused before training, unknown values fail."""
    plain = train(resolve_train_config(None, fast_overrides + ("optim.epochs=1",)), tiny_data, tmp_path / "fp32",
                  progress=False)
    cfg = resolve_train_config(None, fast_overrides + ("optim.epochs=1", "optim.precision='bf16-mixed'"))
    mixed = train(cfg, tiny_data, tmp_path / "bf16", progress=False)
    state = read_checkpoint(mixed.model_path)["state_dict"]
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert not same_weights(plain.model_path, mixed.model_path)
    if not torch.cuda.is_available():
        cfg16 = resolve_train_config(None, fast_overrides + ("optim.precision='16-mixed'", "device='cpu'"))
        with pytest.raises(ConfigError, match="16-mixed needs CUDA"):
            train(cfg16, tiny_data, tmp_path / "fp16", progress=False)
        assert not (tmp_path / "fp16" / "last.pt").exists()
    with pytest.raises(ConfigError, match="optim.precision"):
        resolve_train_config(None, fast_overrides + ("optim.precision='fp16'",))
    assert resolve_train_config(None, ("optim.precision=32",)).optim.precision == "32"  # as a shell passes it
    assert resolve_train_config(None, ("optim.precision=bf16-mixed",)).optim.precision == "bf16-mixed"


def test_fp16_evaluation_runs_a_half_copy_and_agrees_with_fp32(tiny_data, tmp_path, fast_overrides, cache_dir):
    from edgeasc.evaluate import evaluate_checkpoint

    run = train(resolve_train_config(None, fast_overrides), tiny_data, tmp_path / "r", progress=False)
    full = evaluate_checkpoint(run.model_path, tiny_data, out_dir=tmp_path / "e32", cache_dir=cache_dir)
    half = evaluate_checkpoint(run.model_path, tiny_data, out_dir=tmp_path / "e16", cache_dir=cache_dir,
                               precision="fp16")
    assert full["precision"] == "fp32" and half["precision"] == "fp16"
    assert abs(half["macro_accuracy"] - full["macro_accuracy"]) <= 0.02
    assert read_checkpoint(run.model_path)["state_dict"]["in_c.0.0.weight"].dtype == torch.float32
    with pytest.raises(ConfigError, match="precision"):
        evaluate_checkpoint(run.model_path, tiny_data, out_dir=tmp_path / "e8", cache_dir=cache_dir, precision="int8")
    from edgeasc.config import FrontendConfig
    from edgeasc.evaluate import predict_logits
    from edgeasc.models import create_model

    with pytest.raises(ConfigError, match="log-mel models"):  # PaSST's own STFT has no half-precision CPU kernel
        predict_logits(create_model("passt_tiny"), np.zeros((1, 32000), np.float32), FrontendConfig(), precision="fp16")


def test_a_diverging_run_stops_at_once_and_keeps_the_last_good_state(tiny_data, tmp_path, cache_dir):
    """lr 1e30 without warm-up: the first step leaves huge weights, the second a NaN loss. Training raises
    (exit 1 in the CLI) and writes no model.pt; last.pt still holds epoch 1, whose weights are finite."""
    cfg = resolve_train_config(None, ("model.name=test_cpmobile", "optim.epochs=4", "optim.batch_size=512",
                                      "optim.warmup_steps=0", "optim.lr=1e30", "eval_every=0",
                                      f"data.cache_dir={str(cache_dir)!r}"))
    out = tmp_path / "run"
    with pytest.raises(DomainError, match=r"training diverged: non-finite loss nan at epoch 2, step 1 .*"
                                          r"last.pt keeps the last good state \(after epoch 1\)"):
        train(cfg, tiny_data, out, progress=False)
    assert not (out / "model.pt").exists() and DomainError.exit_code == 1
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["state_dict"].values()
                                       if v.is_floating_point())
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]


def test_no_checkpoint_with_nan_weights_is_written_or_read(tmp_path):
    from edgeasc.checkpoint import save_checkpoint
    from edgeasc.models import create_model

    model = create_model("test_cpmobile")
    save_checkpoint(tmp_path / "ok.pt", model, stage="train")
    with torch.no_grad():
        next(model.parameters())[0].fill_(float("nan"))
    with pytest.raises(DomainError, match=r"refusing to write .*nan.pt: the model's 1 of \d+ tensors hold NaN"):
        save_checkpoint(tmp_path / "nan.pt", model, stage="train")
    assert not (tmp_path / "nan.pt").exists()
    ckpt = read_checkpoint(tmp_path / "ok.pt")  # a NaN checkpoint written by something else
    first = next(iter(ckpt["state_dict"]))
    ckpt["state_dict"][first] = torch.full_like(ckpt["state_dict"][first], float("inf"))
    torch.save(ckpt, tmp_path / "inf.pt")
    with pytest.raises(CheckpointError, match=f"inf.pt is not a usable model: its 1 of .* \\(first: {first}\\)"):
        load_model(tmp_path / "inf.pt")


def test_json_artifacts_are_strict_json(tmp_path):
    """Reports and metrics.jsonl never hold a bare NaN or Infinity (most JSON readers refuse them): null."""
    from edgeasc.artifacts import strict_json, write_json_atomic

    obj = {"a": float("nan"), "b": [1.5, float("inf"), {"c": -float("inf")}], "d": "NaN", "e": 2}
    assert strict_json(obj) == '{"a": null, "b": [1.5, null, {"c": null}], "d": "NaN", "e": 2}'
    text = write_json_atomic(tmp_path / "r.json", obj).read_text()

    def refuse(name):
        raise ValueError(name)

    assert json.loads(text, parse_constant=refuse)["b"] == [1.5, None, {"c": None}]
