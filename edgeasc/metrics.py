"""Classification metrics shared by training-time validation and `edgeasc evaluate`.

DCASE Task 1 ranks by macro-average accuracy: the mean of the ten class-wise accuracies. Accuracy is
also reported per device (a, b, c, s1-s6), per device group (real / seen / unseen) and per class.
Group accuracies are macro accuracies over the clips of the group's devices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeasc.errors import DomainError
from edgeasc.labels import DEVICE_GROUPS, DEVICES, SCENES


def require_finite_logits(logits: Any, what: str = "the model") -> Any:
    """Return `logits` (array or tensor, one row per clip) if every value is finite, else raise.

    Raises:
        DomainError: some row holds a NaN or an infinity (an argmax would silently call it class 0).
    """
    values = np.asarray(logits, dtype=np.float64)
    if values.size == 0:
        return logits
    finite = np.isfinite(values).reshape(len(values), -1).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise DomainError(f"{what} gives NaN or infinite outputs for {len(bad)} of {len(finite)} clip(s) "
                          f"(first: clip {int(bad[0])}); its weights or input features are out of range")
    return logits


def macro_accuracy(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = len(SCENES)) -> float:
    """Mean over the classes present in `y_true` of the per-class accuracy (NaN when empty)."""
    accs = [float(np.mean(y_pred[y_true == k] == k)) for k in range(n_classes) if np.any(y_true == k)]
    return float(np.mean(accs)) if accs else float("nan")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = len(SCENES)) -> np.ndarray:
    """(true, predicted) counts."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def classification_report(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    devices: Sequence[str],
    classes: Sequence[str] = SCENES,
) -> dict[str, Any]:
    """All figures of one evaluation, JSON-ready.

    Returns:
        {"n_clips", "accuracy", "macro_accuracy", "per_device": {dev: {"n", "macro_accuracy",
        "accuracy"}}, "per_group": {...}, "per_class": {scene: {"n", "accuracy"}}, "confusion_matrix"}
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    dev = np.asarray(list(devices))
    n_classes = len(classes)
    report: dict[str, Any] = {
        "n_clips": int(y_true.size),
        "accuracy": float(np.mean(y_true == y_pred)) if y_true.size else float("nan"),
        "macro_accuracy": macro_accuracy(y_true, y_pred, n_classes),
    }
    present = [d for d in DEVICES if np.any(dev == d)] + sorted(set(dev.tolist()) - set(DEVICES))
    report["per_device"] = {
        d: {
            "n": int(np.sum(dev == d)),
            "macro_accuracy": macro_accuracy(y_true[dev == d], y_pred[dev == d], n_classes),
            "accuracy": float(np.mean(y_true[dev == d] == y_pred[dev == d])),
        }
        for d in present
    }
    report["per_group"] = {}
    for group, members in DEVICE_GROUPS.items():
        sel = np.isin(dev, members)
        if np.any(sel):
            report["per_group"][group] = {
                "n": int(sel.sum()),
                "macro_accuracy": macro_accuracy(y_true[sel], y_pred[sel], n_classes),
            }
    report["per_class"] = {
        c: {"n": int(np.sum(y_true == k)),
            "accuracy": float(np.mean(y_pred[y_true == k] == k)) if np.any(y_true == k) else float("nan")}
        for k, c in enumerate(classes)
    }
    report["confusion_matrix"] = confusion_matrix(y_true, y_pred, n_classes).tolist()
    return report


def format_report(report: dict[str, Any], title: str = "") -> str:
    """The per-device table in the layout of the seed's Table 2 (percent), then the per-class row."""
    devs = list(report["per_device"])
    groups = list(report["per_group"])
    head = ["", "macro"] + devs + groups
    row = ["acc %", pct(report["macro_accuracy"])]
    row += [pct(report["per_device"][d]["macro_accuracy"]) for d in devs]
    row += [pct(report["per_group"][g]["macro_accuracy"]) for g in groups]
    counts = ["clips", str(report["n_clips"])] + [str(report["per_device"][d]["n"]) for d in devs]
    counts += [str(report["per_group"][g]["n"]) for g in groups]
    lines = [title] if title else []
    lines += text_table([head, row, counts])
    lines.append("")
    cls = list(report["per_class"])
    short = [c.replace("street_", "st_").replace("metro_station", "metro_st").replace("public_square", "pub_sq")
             .replace("shopping_mall", "mall").replace("pedestrian", "ped").replace("traffic", "traf") for c in cls]
    lines += text_table([["class"] + short, ["acc %"] + [pct(report["per_class"][c]["accuracy"]) for c in cls]])
    return "\n".join(lines)


def pct(x: float) -> str:
    """A fraction as a percentage with two decimals; "-" for NaN."""
    return "-" if x != x else f"{100 * x:.2f}"


def text_table(rows: list[list[str]]) -> list[str]:
    """Rows of cells as aligned text lines: the first column left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))) for r in rows]
