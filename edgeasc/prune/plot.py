"""The pruning curve: validation accuracy against MACs and parameter bytes along the schedule, one line per
stage (pruning_curve.png), and the summary text of a prune run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeasc.artifacts import write_atomic


def plot_pruning_curve(report: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Validation accuracy against MACs and against parameter bytes along the schedule, one line per stage.

    Points: the accuracy measured just before each pruning step, plotted at the widths it was measured at;
    the end of each AGP run; and the fine-tuned model (star). Dashed lines: the budget.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    start = report["start"]
    budget = report.get("budget")
    for stage in report["stages"]:
        pts = curve_points(start, stage)
        xs = [(p["macs"], p["param_bytes"]) for p in pts]
        ys = [100 * p["val_macro_accuracy"] if p["val_macro_accuracy"] is not None else math.nan for p in pts]
        for ax, j in zip(axes, (0, 1)):
            ax.plot([x[j] for x in xs], ys, "o-", label=f"stage {stage['stage']} (to {stage['target']})")
            if stage.get("val_macro_accuracy_finetuned") is not None:
                ax.plot([stage[("macs", "param_bytes")[j]]], [100 * stage["val_macro_accuracy_finetuned"]], "*",
                        markersize=13, color=ax.lines[-1].get_color())
        start = {"widths": stage["final_widths"], **{k: stage[k] for k in ("params", "param_bytes", "macs")},
                 "val_macro_accuracy": stage.get("val_macro_accuracy_finetuned", stage.get("val_macro_accuracy_agp"))}
    from matplotlib.ticker import FuncFormatter

    labels = ("MACs (DCASE rule), millions", f"parameter memory at {report['param_dtype']}, thousand bytes")
    for ax, scale in zip(axes, (1e6, 1e3)):
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _, s=scale: f"{x / s:g}"))
    for ax, key, label in zip(axes, ("macs", "param_bytes"), labels):
        if budget:
            ax.axvline(budget[key], linestyle="--", color="grey", label="budget")
        ax.set_xlabel(label)
        ax.set_ylabel("validation macro accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("AGP pruning curve (star: after KD fine-tuning)")
    fig.tight_layout()

    def write(p: Path) -> None:
        fig.savefig(p, format="png", dpi=110)

    try:
        return write_atomic(path, write)
    finally:
        plt.close(fig)


def curve_points(start: Mapping[str, Any], stage: Mapping[str, Any]) -> list[dict[str, Any]]:
    """(complexity, accuracy) points of one stage: each accuracy measured before a pruning step belongs to the
    widths in force then (the start, or the previous step's); the last point is the end of the AGP run."""
    pts = []
    prev = {k: start[k] for k in ("params", "param_bytes", "macs")}
    for rec in stage["steps"]:
        if rec.get("val_macro_accuracy_before") is not None:
            pts.append({**prev, "val_macro_accuracy": rec["val_macro_accuracy_before"], "step": rec["step"]})
        prev = {k: rec[k] for k in ("params", "param_bytes", "macs")}
    pts.append({**prev, "val_macro_accuracy": stage.get("val_macro_accuracy_agp"), "step": None})
    return pts


def format_prune_summary(report: Mapping[str, Any]) -> str:
    """Aligned lines for people: one per stage, then the final model against the budget."""
    lines = []
    s = report["start"]
    lines.append(f"start      {s['params']:>9,} params  {s['param_bytes']:>9,} B  {s['macs']:>12,} MACs")
    for st in report["stages"]:
        acc = st.get("val_macro_accuracy_finetuned", st.get("val_macro_accuracy_agp"))
        lines.append(f"stage {st['stage']}    {st['params']:>9,} params  {st['param_bytes']:>9,} B  {st['macs']:>12,} MACs"
                     f"  keep {st['keep_ratio']:.3f}  ({len(st['steps'])} AGP steps)"
                     + ("" if acc is None else f"  val macro acc {100 * acc:.2f}%"))
    f = report["final"]
    b = report.get("budget")
    verdict = "no budget" if b is None else ("within" if f["dcase_rule"]["within_budget"] else "OVER") + f" {b['name']}"
    lines.append(f"final: {f['params']:,} parameters = {f['param_bytes']:,} bytes at {report['param_dtype']}, "
                 f"{f['macs']:,} MACs (DCASE rule): {verdict}")
    if f.get("tflite_audit"):
        t = f["tflite_audit"]
        lines.append(f"int8 TFLite audit: {t['param_bytes']:,} bytes, {t['macs_dcase']:,} MACs (DCASE rule): "
                     f"{'within budget' if t['within_budget'] else 'OVER budget'} ({t['path']})")
    return "\n".join(lines)
