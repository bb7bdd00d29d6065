"""Plots and best.pt: curves.png of a run, best.pt across an interruption, the evaluation plots."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from edgeasc.checkpoint import load_model, read_checkpoint
from edgeasc.config import resolve_train_config
from edgeasc.errors import DataError
from edgeasc.evaluate import evaluate_checkpoint
from edgeasc.plots import evaluation_title, plot_confusion, plot_run_curves
from edgeasc.train.batchnorm import debias_batchnorm
from edgeasc.train.loop import train

# pixel sizes (height, width): figure inches x 110 dpi, as edgeasc.plots draws them
CURVES_PX = (715, 880)
CONFUSION_PX = (660, 770)
PER_DEVICE_PX = (495, 880)


class Interrupted(Exception):
    pass


def png_size(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:4] == b"\x89PNG", path
    return imread(path).shape[:2]


def history_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def best_validated_epoch(history: list[dict]) -> int:
    validated = [r for r in history if "val_macro_accuracy" in r]
    return max(validated, key=lambda r: r["val_macro_accuracy"])["epoch"]  # the first of equal accuracies


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture()
def overrides(fast_overrides):
    """3 epochs of 4 steps, validated every epoch on the training clips (split25: cheap, and it learns)."""
    return fast_overrides + ("optim.epochs=3", "eval_every=1", "data.val_split=split25")


def interrupt_after_epoch_1(run: Path):
    def hook(steps_done, total_steps, model, optimizer):
        if (run / "last.pt").is_file():  # written after epoch 1: stop at the first step of epoch 2
            raise Interrupted
    return hook


def zero_the_classifier(steps_done, total_steps, model, optimizer):
    """Constant logits from now on (the head's 1x1 convolution is zero): 10% macro accuracy, below epoch 1's."""
    with torch.no_grad():
        model.feed_forward[0].weight.zero_()


def test_best_pt_is_the_best_validated_epoch_and_survives_a_resume(tiny_data, tmp_path, overrides, cache_dir):
    cfg = resolve_train_config(None, overrides)
    run = tmp_path / "run"
    with pytest.raises(Interrupted):
        train(cfg, tiny_data, run, progress=False, step_hook=interrupt_after_epoch_1(run))
    # epoch 1 validated: best.pt and curves.png are there mid-run; best.pt is epoch 1's model, debiased
    assert png_size(run / "curves.png") == CURVES_PX and not (run / "model.pt").exists()
    best_before = read_checkpoint(run / "best.pt")
    assert best_before["extra"]["epoch"] == 1 and best_before["stage"] == "train"
    assert best_before["extra"]["val_macro_accuracy"] == history_of(run)[0]["val_macro_accuracy"] > 0.1
    state = torch.load(run / "last.pt", weights_only=True)
    raw, _ = load_model(run / "best.pt")
    raw.load_state_dict(state["state_dict"])  # epoch 1 as training left it
    info = debias_batchnorm(raw)
    assert info["steps"] == history_of(run)[0]["step"] == best_before["extra"]["bn_debias"]["steps"]
    assert same_state(best_before["state_dict"], raw.state_dict())
    # a kill after last.pt and before best.pt was written: the resume writes it from last.pt's weights
    lost = tmp_path / "lost"
    shutil.copytree(run, lost)
    (lost / "best.pt").unlink()

    for folder in (run, lost):
        result = train(cfg, tiny_data, folder, resume=True, progress=False, step_hook=zero_the_classifier)
        history = history_of(folder)
        assert [r["epoch"] for r in history] == [1, 2, 3]
        assert all(r["val_macro_accuracy"] == pytest.approx(0.1) for r in history[1:])
        assert best_validated_epoch(history) == 1
        best = read_checkpoint(folder / "best.pt")
        assert best["extra"]["epoch"] == 1 == result.final_metrics["best"]["epoch"]
        assert result.best_path == folder / "best.pt"
        assert same_state(best["state_dict"], best_before["state_dict"])  # the best from before the interruption
        assert not same_state(best["state_dict"], read_checkpoint(result.model_path)["state_dict"])
        assert png_size(folder / "curves.png") == CURVES_PX

    # best.pt is an ordinary checkpoint: `edgeasc evaluate` reads it and finds the accuracy it records
    ev = evaluate_checkpoint(run / "best.pt", tiny_data, split="split25", out_dir=tmp_path / "ev", cache_dir=cache_dir)
    assert ev["macro_accuracy"] == pytest.approx(best_before["extra"]["val_macro_accuracy"])
    assert evaluation_title(ev) == f"run/best.pt (test_cpmobile) on split25: macro {100 * ev['macro_accuracy']:.1f}%"
    arts = ev["artifacts"]
    assert json.loads(Path(arts["eval_json"]).read_text())["artifacts"] == arts
    assert png_size(Path(arts["confusion_png"])) == CONFUSION_PX
    assert png_size(Path(arts["confusion_counts_png"])) == CONFUSION_PX
    assert png_size(Path(arts["per_device_png"])) == PER_DEVICE_PX
    assert {Path(p).name for p in arts.values()} == {"eval.json", "confusion.png", "confusion_counts.png",
                                                     "per_device.png"}


def test_without_validation_before_the_end_best_pt_is_model_pt(tiny_data, tmp_path, fast_overrides):
    result = train(resolve_train_config(None, fast_overrides + ("eval_every=0",)), tiny_data, tmp_path / "r",
                   progress=False)
    assert [("val_macro_accuracy" in r) for r in history_of(result.run_dir)] == [False, True]
    best, final = read_checkpoint(result.best_path), read_checkpoint(result.model_path)
    assert best["extra"]["epoch"] == 2 and same_state(best["state_dict"], final["state_dict"])
    assert result.final_metrics["best"] == {"file": "best.pt", "epoch": 2,
                                            "val_macro_accuracy": result.final_metrics["macro_accuracy"]}
    # an old run (no curves.png, no best in metrics.json) is drawn from its files
    (result.run_dir / "curves.png").unlink()
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    del metrics["best"]
    (result.run_dir / "metrics.json").write_text(json.dumps(metrics))
    assert png_size(plot_run_curves(result.run_dir)) == CURVES_PX
    with pytest.raises(DataError, match="no metrics.jsonl"):
        plot_run_curves(tmp_path)


def test_confusion_shares_and_counts_are_different_pictures(tmp_path):
    cm = np.diag(np.arange(1, 11)) + 1  # rows of different sizes: shares and counts differ
    shares = plot_confusion(cm, tmp_path / "shares.png", title="t")
    counts = plot_confusion(cm, tmp_path / "counts.png", title="t", counts=True)
    a, b = imread(shares), imread(counts)
    assert a.shape[:2] == b.shape[:2] == CONFUSION_PX
    assert np.abs(a - b).mean() > 1e-3
