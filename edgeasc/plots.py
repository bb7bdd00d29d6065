"""The PNG plots of a training run and of an evaluation, each drawn by one function.

Training: `curves.png`, the training loss and the validation macro accuracy per epoch (from the run's
metrics.jsonl, so an old run can be drawn again with `plot_run_curves`). Evaluation (`edgeasc evaluate` of a
checkpoint or a .tflite): the confusion matrix as shares of each true class (`confusion.png`) and as clip
counts (`confusion_counts.png`), and macro accuracy per device (`per_device.png`), the DCASE Task 1 ranking
figure broken down by recording device.

Figures are `matplotlib.figure.Figure` objects drawn on the Agg canvas without pyplot: no global backend
switch and no open-figure registry in a training process. Every file is written atomically.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeasc.artifacts import write_atomic
from edgeasc.errors import DataError
from edgeasc.labels import DEVICE_GROUPS, DEVICES, SCENES

DPI = 110
"""Pixels per inch of every PNG: a figure of w x h inches is a (w * DPI) x (h * DPI) pixel image."""
CONFUSION_SIZE_IN = (7.0, 6.0)
PER_DEVICE_SIZE_IN = (8.0, 4.5)
CURVES_SIZE_IN = (8.0, 6.5)

EVALUATION_PLOTS = {"confusion_png": "confusion.png", "confusion_counts_png": "confusion_counts.png",
                    "per_device_png": "per_device.png"}
"""Artifact key -> file name of the plots `write_evaluation_plots` writes (after a prefix, e.g. `model_int8.`)."""

GROUP_COLOURS = {"real": "tab:blue", "seen": "tab:orange", "unseen": "tab:red"}
OTHER_COLOUR = "tab:gray"  # devices outside DEVICE_GROUPS (e.g. s7-s10 of the 2025 evaluation set)


def _figure(size_in: tuple[float, float], layout: str | None = None) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=size_in, dpi=DPI, layout=layout)


def _save(fig: Any, path: str | os.PathLike) -> Path:
    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=DPI)

    return write_atomic(path, write)


def plot_confusion(cm: np.ndarray, path: str | os.PathLike, title: str = "", counts: bool = False) -> Path:
    """The confusion matrix (true class x predicted class) as a PNG, written atomically.

    Args:
        cm: (n_classes, n_classes) clip counts, rows = true class.
        counts: cells show clip counts; else (default) the share of the true class's clips, in % of the row.
    """
    cm = np.asarray(cm)
    rows = cm.sum(axis=1)
    values = cm if counts else 100 * cm / np.maximum(rows[:, None], 1)
    top = max(int(cm.max()), 1) if counts else 100.0
    fig = _figure(CONFUSION_SIZE_IN)
    ax = fig.add_subplot()
    im = ax.imshow(values, cmap="Blues", vmin=0, vmax=top)
    ax.set_xticks(range(len(SCENES)), SCENES, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(SCENES)), [f"{s} ({int(n)})" for s, n in zip(SCENES, rows)], fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (its clips)")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            text = f"{int(cm[i, j])}" if counts else f"{values[i, j]:.0f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=6,
                    color="white" if values[i, j] > 0.5 * top else "black")
    ax.set_title(title, fontsize=9)
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("clips" if counts else "share of the true class's clips (% of row)", fontsize=8)
    bar.ax.tick_params(labelsize=8)
    fig.tight_layout()
    return _save(fig, path)


def device_group(device: str) -> str | None:
    """The report group (`edgeasc.labels.DEVICE_GROUPS`: real, seen, unseen) of a device id, or None."""
    return next((g for g, members in DEVICE_GROUPS.items() if device in members), None)


def plot_per_device(report: Mapping[str, Any], path: str | os.PathLike, title: str = "") -> Path:
    """Macro accuracy per device as bars coloured by device group, with the overall macro accuracy as a
    dashed line, written atomically.

    Args:
        report: an `edgeasc.metrics.classification_report` (its `per_device`, `per_group`, `macro_accuracy`).
    """
    per_device = report["per_device"]
    devices = list(per_device)
    accs = [100 * per_device[d]["macro_accuracy"] for d in devices]
    groups = [device_group(d) for d in devices]
    fig = _figure(PER_DEVICE_SIZE_IN, layout="constrained")  # makes room for the legend above the axes
    ax = fig.add_subplot()
    bars = ax.bar(range(len(devices)), accs, color=[GROUP_COLOURS.get(g, OTHER_COLOUR) for g in groups])
    for rect, acc in zip(bars, accs):  # on a white box: readable where the overall line crosses it
        ax.text(rect.get_x() + rect.get_width() / 2, rect.get_height() + 1, f"{acc:.1f}", ha="center",
                va="bottom", fontsize=8, zorder=4, bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})
    ax.set_xticks(range(len(devices)), [f"{d}\n{per_device[d]['n']} clips" for d in devices], fontsize=8)
    macro = 100 * report["macro_accuracy"]
    handles = [ax.axhline(macro, color="black", linestyle="--", linewidth=1, label=f"all devices: {macro:.1f}%")]
    from matplotlib.patches import Patch

    for group in list(GROUP_COLOURS) + [None]:
        members = [d for d, g in zip(devices, groups) if g == group]
        if not members:
            continue
        name = group or "other"
        acc = (report.get("per_group") or {}).get(group, {}).get("macro_accuracy")
        label = f"{name} ({', '.join(members)})" + (f": {100 * acc:.1f}%" if acc is not None else "")
        handles.append(Patch(color=GROUP_COLOURS.get(group, OTHER_COLOUR), label=label))
    ax.legend(handles=handles, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(handles), 4),
              frameon=False)
    ax.set_ylim(0, 109)  # room for the value above a 100% bar
    pad = max(0.0, (len(DEVICES) - len(devices)) / 2)  # a few devices: bars as wide as with all nine
    ax.set_xlim(-0.5 - pad, len(devices) - 0.5 + pad)
    ax.set_ylabel("macro accuracy (%)")
    ax.set_xlabel("recording device")
    ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def evaluation_title(report: Mapping[str, Any]) -> str:
    """'student/model.pt (test_cpmobile) on test: macro 53.2%': the model file with its folder, the
    architecture, the split (and precision when not fp32), and the macro accuracy."""
    model = Path(str(report["model"]))
    where = f"{model.parent.name}/{model.name}" if model.parent.name else model.name
    name = report.get("model_name")
    precision = report.get("precision", "fp32")
    at = f", {precision}" if precision != "fp32" else ""
    return (f"{where}{f' ({name})' if name else ''} on {report['split']}{at}: "
            f"macro {100 * report['macro_accuracy']:.1f}%")


def write_evaluation_plots(report: Mapping[str, Any], out_dir: str | os.PathLike, prefix: str = "") -> dict[str, str]:
    """Write the three evaluation plots of `report` into `out_dir` and return their paths by artifact key
    (`EVALUATION_PLOTS`), for `report["artifacts"]`.

    Args:
        report: a classification report with "model", "model_name", "split" (`edgeasc evaluate`'s).
        prefix: put before each file name (a .tflite's `{stem}.`, so several models share a folder).
    """
    out = Path(out_dir)
    paths = {key: out / f"{prefix}{name}" for key, name in EVALUATION_PLOTS.items()}
    title = evaluation_title(report)
    cm = np.asarray(report["confusion_matrix"])
    plot_confusion(cm, paths["confusion_png"], title=title)
    plot_confusion(cm, paths["confusion_counts_png"], title=f"{title} (clip counts)", counts=True)
    plot_per_device(report, paths["per_device_png"], title=f"{title}, per device")
    return {key: str(p) for key, p in paths.items()}


def plot_training_curves(history: Sequence[Mapping[str, Any]], path: str | os.PathLike, title: str = "",
                         best: Mapping[str, Any] | None = None, final: Mapping[str, Any] | None = None) -> Path:
    """Training loss (top) and validation macro accuracy (bottom) per epoch, written atomically.

    Args:
        history: the run's metrics.jsonl records ("epoch", "loss", "lr", optional "label_loss", "kd_loss",
            "val_macro_accuracy").
        best: {"epoch", "val_macro_accuracy"} of best.pt, marked with a star; None marks the best validated
            epoch of `history` instead.
        final: the run's metrics.json (model.pt's validation), marked at the last epoch; None while training.
    """
    from matplotlib.ticker import MaxNLocator

    epochs = [int(r["epoch"]) for r in history]
    fig = _figure(CURVES_SIZE_IN)
    ax_loss, ax_acc = fig.subplots(2, 1, sharex=True)
    ax_loss.plot(epochs, [r["loss"] for r in history], "o-", markersize=3, label="training loss")
    if any(r.get("kd_loss", 0.0) > 0 for r in history):  # a KD run: its two parts as well
        ax_loss.plot(epochs, [r.get("label_loss", math.nan) for r in history], "--", color="tab:purple",
                     label="label loss")
        ax_loss.plot(epochs, [r.get("kd_loss", math.nan) for r in history], ":", color="tab:brown", label="KD loss")
    ax_loss.set_ylabel("loss (mean over the epoch)")
    ax_loss.grid(alpha=0.3)
    lines, labels = ax_loss.get_legend_handles_labels()
    if all("lr" in r for r in history):
        ax_lr = ax_loss.twinx()
        lines += ax_lr.plot(epochs, [r["lr"] for r in history], color="tab:gray", linewidth=1, linestyle="-.")
        labels.append("learning rate (right)")
        ax_lr.set_ylabel("learning rate at the epoch's end", fontsize=8)
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        ax_lr.tick_params(labelsize=8)
        ax_lr.set_ylim(bottom=0)
    ax_loss.legend(lines, labels, fontsize=8, loc="upper right")

    val = [(int(r["epoch"]), 100 * r["val_macro_accuracy"]) for r in history if r.get("val_macro_accuracy") is not None]
    if val:
        ax_acc.plot([e for e, _ in val], [a for _, a in val], "o-", markersize=3, color="tab:green",
                    label="validation macro accuracy")
        if best is None:
            e, a = max(val, key=lambda p: p[1])  # max() keeps the first of equal values: the earliest epoch
            label = f"best validated epoch: {e}, {a:.1f}%"
        else:
            e, a = int(best["epoch"]), 100 * best["val_macro_accuracy"]
            label = f"best.pt: epoch {e}, {a:.1f}%"
        ax_acc.plot([e], [a], "*", markersize=13, color="tab:orange", label=label, zorder=3)
        if final is not None and final.get("macro_accuracy") is not None:
            ax_acc.plot([epochs[-1]], [100 * final["macro_accuracy"]], "D", markersize=6, markerfacecolor="none",
                        color="black", label=f"model.pt: epoch {epochs[-1]}, {100 * final['macro_accuracy']:.1f}%")
        ax_acc.legend(fontsize=8, loc="best")  # away from the points (a drop at the end, a rise)
    else:
        ax_acc.text(0.5, 0.5, "no validated epoch yet (eval_every)", ha="center", va="center",
                    transform=ax_acc.transAxes, fontsize=9, color="tab:gray")
    ax_acc.set_ylabel("validation macro accuracy (%)")
    ax_acc.set_xlabel("epoch")
    ax_acc.grid(alpha=0.3)
    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def curves_title(run_dir: str | os.PathLike, model_name: str, val_split: str | None = None) -> str:
    """'student: test_cpmobile, validated on test': the run folder's name, the model trained in it and the
    validation split."""
    return f"{Path(run_dir).resolve().name}: {model_name}" + (f", validated on {val_split}" if val_split else "")


def plot_run_curves(run_dir: str | os.PathLike, path: str | os.PathLike | None = None) -> Path:
    """Draw `curves.png` of an existing run folder (default: into it) from its metrics.jsonl, config.json and,
    if the run is complete, metrics.json; works for runs trained before edgeasc wrote the plot.

    Raises:
        DataError: the folder has no metrics.jsonl, or it holds no epoch.
    """
    run = Path(run_dir)
    history_path = run / "metrics.jsonl"
    if not history_path.is_file():
        raise DataError(f"{run} has no metrics.jsonl; is it an `edgeasc train` run folder?")
    history = [json.loads(line) for line in history_path.read_text().splitlines() if line.strip()]
    if not history:
        raise DataError(f"{history_path} holds no epoch yet")
    config_path = run / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    model_name = (config.get("model") or {}).get("name", "model")
    val_split = (config.get("data") or {}).get("val_split")
    final_path = run / "metrics.json"
    final = json.loads(final_path.read_text()) if final_path.is_file() else None
    best = (final or {}).get("best")
    return plot_training_curves(history, path or run / "curves.png", title=curves_title(run, model_name, val_split),
                                best=best, final=final)
