"""KD loss golden value on a hand-written logit pair, and the teacher-logits file."""

import math

import numpy as np
import pytest
import torch

from edgeasc.errors import DataError
from edgeasc.labels import SCENES
from edgeasc.train.distill import TeacherLogits, kd_loss


def test_kd_loss_hand_computed():
    s = torch.tensor([[2.0, 0.0]])
    t = torch.tensor([[0.0, 2.0]])
    y = torch.tensor([0])
    T, lam = 2.0, 0.25
    # softmax([1, 0]) and softmax([0, 1]) at T = 2
    ps = [math.e / (math.e + 1), 1 / (math.e + 1)]
    pt = [1 / (math.e + 1), math.e / (math.e + 1)]
    kl_elems = [pt[k] * (math.log(pt[k]) - math.log(ps[k])) for k in range(2)]
    kd = sum(kl_elems) / 2 * T * T  # mean over batch x classes = 2 elements
    ce = -math.log(math.exp(2) / (math.exp(2) + 1))
    out = kd_loss(s, t, y, T, lam)
    assert out["kd_loss"].item() == pytest.approx(kd, rel=1e-6)
    assert out["label_loss"].item() == pytest.approx(ce, rel=1e-6)
    assert out["loss"].item() == pytest.approx(lam * ce + (1 - lam) * kd, rel=1e-6)
    assert kd == pytest.approx(0.9242343, rel=1e-6)


def test_teacher_logits_roundtrip_and_coverage(tmp_path):
    tl = TeacherLogits(("x-a", "y-b"), np.arange(20, dtype=np.float32).reshape(2, 10), tuple(SCENES),
                       ("t1", "t2"), (0.7, 0.8))
    path = tl.save(tmp_path / "t.npz")
    back = TeacherLogits.load(path)
    assert back.clip_ids == ("x-a", "y-b") and back.members == ("t1", "t2")
    arr, found = back.lookup(["y-b", "x-a"])
    assert arr[0, 0] == 10 and found.all()
    with pytest.raises(DataError, match="1 of 2 training clips have no teacher logits"):
        back.lookup(["x-a", "z-c"])
    arr, found = back.lookup(["x-a", "z-c"], allow_missing=True)
    assert found.tolist() == [True, False] and not arr[1].any()
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(DataError, match="not an edgeasc teacher-logits file"):
        TeacherLogits.load(tmp_path / "bad.npz")
