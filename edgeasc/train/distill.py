"""Knowledge distillation from stored ensemble-teacher logits (CP-JKU DCASE 2023; EfficientAT).

Teacher logits are computed once per training clip and looked up by clip id at training time. The loss
(fschmid56/cpjku_dcase23 run_training.py; SPEC.md section 4):

    kd   = KLDivLoss(log_target=True, reduction="none")(log_softmax(s / T), log_softmax(t / T)).mean() * T^2
    loss = lambda * CE(s, y) + (1 - lambda) * kd

The KL mean runs over all batch x class elements, as in the CP-JKU code.

Teacher-logits file (`.npz`, no pickled objects):
    format        "edgeasc-teacher-logits-v1"
    clip_ids      (N,) str         file stems, e.g. "airport-lisbon-1000-40000-0-a"
    logits        (N, C) float32   ensemble mean of the members' logits
    class_order   (C,) str         must equal edgeasc.labels.SCENES
    members       (M,) str         member ids (run dirs or checkpoint names)
    member_val_accuracy (M,) float32  each member's macro accuracy on the validation split (NaN if unknown)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgeasc.artifacts import write_atomic
from edgeasc.errors import DataError
from edgeasc.labels import SCENES

log = logging.getLogger(__name__)

FORMAT = "edgeasc-teacher-logits-v1"


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    label_weight: float,
) -> dict[str, torch.Tensor]:
    """Named loss parts: {"loss", "label_loss", "kd_loss"} (unweighted parts, weighted total)."""
    label_loss = F.cross_entropy(student_logits, labels)
    t = temperature
    kl = F.kl_div(
        F.log_softmax(student_logits / t, dim=-1),
        F.log_softmax(teacher_logits / t, dim=-1),
        reduction="none",
        log_target=True,
    )
    kd = kl.mean() * t * t
    return {"loss": label_weight * label_loss + (1.0 - label_weight) * kd, "label_loss": label_loss, "kd_loss": kd}


@dataclass(frozen=True)
class TeacherLogits:
    """Stored ensemble logits, indexed by clip id."""

    clip_ids: tuple[str, ...]
    logits: np.ndarray
    class_order: tuple[str, ...]
    members: tuple[str, ...]
    member_val_accuracy: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.logits.ndim != 2 or self.logits.shape[0] != len(self.clip_ids):
            raise ValueError(f"logits shape {self.logits.shape} does not match {len(self.clip_ids)} clip ids")
        if self.logits.shape[1] != len(self.class_order):
            raise ValueError("logits width differs from the class order")

    def save(self, path: str | os.PathLike) -> Path:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    format=np.array(FORMAT),
                    clip_ids=np.array(self.clip_ids, dtype=str),
                    logits=self.logits.astype(np.float32),
                    class_order=np.array(self.class_order, dtype=str),
                    members=np.array(self.members, dtype=str),
                    member_val_accuracy=np.array(self.member_val_accuracy, dtype=np.float32),
                )

        return write_atomic(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TeacherLogits":
        path = Path(path)
        if not path.is_file():
            raise DataError(f"teacher logits file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                fmt = str(z["format"])
                obj = cls(
                    clip_ids=tuple(z["clip_ids"].tolist()),
                    logits=z["logits"].astype(np.float32),
                    class_order=tuple(z["class_order"].tolist()),
                    members=tuple(z["members"].tolist()),
                    member_val_accuracy=tuple(float(v) for v in z["member_val_accuracy"]),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"{path} is not an edgeasc teacher-logits file: {exc}") from None
        if fmt != FORMAT:
            raise DataError(f"{path}: format {fmt!r}, expected {FORMAT!r}")
        if obj.class_order != tuple(SCENES):
            raise DataError(f"{path}: class order {obj.class_order} differs from {SCENES}")
        return obj

    def lookup(self, clip_ids: list[str], allow_missing: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Logits for `clip_ids` in order, and a bool mask of which were found.

        Raises:
            DataError: some clips have no teacher logits and `allow_missing` is False.
        """
        index = {c: i for i, c in enumerate(self.clip_ids)}
        rows = np.array([index.get(c, -1) for c in clip_ids], dtype=np.int64)
        found = rows >= 0
        n_missing = int((~found).sum())
        if n_missing:
            first = clip_ids[int(np.argmin(found))]
            if not allow_missing:
                raise DataError(
                    f"{n_missing} of {len(clip_ids)} training clips have no teacher logits (first: {first}); "
                    "recompute them with `edgeasc teacher-logits` or pass --allow-missing-teacher"
                )
            log.warning("%d of %d training clips have no teacher logits; they train on labels only",
                        n_missing, len(clip_ids))
        out = np.zeros((len(clip_ids), self.logits.shape[1]), dtype=np.float32)
        out[found] = self.logits[rows[found]]
        return out, found
