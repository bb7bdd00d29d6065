"""The one metrics module: macro accuracy, per device, per group, per class."""

import numpy as np
import pytest

from edgeasc.metrics import classification_report, format_report, macro_accuracy


def test_macro_accuracy_is_mean_of_class_accuracies():
    y = np.array([0, 0, 0, 0, 1])
    p = np.array([0, 0, 0, 0, 0])
    assert macro_accuracy(y, p, 2) == pytest.approx(0.5)  # plain accuracy would be 0.8


def test_report_per_device_group_class():
    y = [0, 1, 0, 1, 2, 2]
    p = [0, 1, 1, 1, 2, 0]
    dev = ["a", "a", "b", "s4", "s4", "s5"]
    rep = classification_report(y, p, dev)
    assert rep["n_clips"] == 6
    assert rep["per_device"]["a"]["macro_accuracy"] == pytest.approx(1.0)
    assert rep["per_device"]["b"]["macro_accuracy"] == pytest.approx(0.0)
    assert rep["per_device"]["s4"] == {"n": 2, "macro_accuracy": 1.0, "accuracy": 1.0}
    assert rep["per_group"]["real"]["n"] == 3
    assert rep["per_group"]["unseen"]["macro_accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    assert rep["per_class"]["bus"]["accuracy"] == pytest.approx(1.0)
    assert rep["per_class"]["airport"]["accuracy"] == pytest.approx(0.5)
    assert np.isnan(rep["per_class"]["tram"]["accuracy"])
    assert np.array(rep["confusion_matrix"]).sum() == 6
    assert list(rep["per_device"]) == ["a", "b", "s4", "s5"]
    table = format_report(rep)
    assert "macro" in table and "s4" in table and "unseen" in table
