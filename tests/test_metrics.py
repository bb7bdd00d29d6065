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


def test_recorded_runs_merge_parts_and_name_their_machines(tmp_path):
    """A benchmark done in parts: results merge by row and seed, each run keeps the CPU it ran on, another
    experiment's file and two parts that disagree are refused with one line."""
    import json

    from conftest import load_benchmarks_module

    seeds = load_benchmarks_module("experiments/seeds")  # the experiments' bookkeeping, beside them
    cpu_models, load_recorded_runs = seeds.cpu_models, seeds.load_recorded_runs
    machines_note, provenance_lines = seeds.machines_note, seeds.provenance_lines

    def part(name: str, cpu: str, runs: dict, **fields) -> str:
        path = tmp_path / name
        path.write_text(json.dumps({"benchmark": "b", "scale": "medium", **fields, "machine": {"cpu_model": cpu},
                                    "rows": {row: {"runs": by_seed} for row, by_seed in runs.items()}}))
        return str(path)

    r = {"macro": 70.0, "per_device": {"a": 70.0}}
    a = part("a.json", "Intel", {"direct": {"0": r}})
    b = part("b.json", "AMD", {"direct": {"1": {**r, "macro": 71.0}}, "kd": {"0": r}})
    runs = load_recorded_runs([a, b], {"benchmark": "b", "scale": "medium"})
    assert sorted(runs["direct"]) == [0, 1] and runs["direct"][1]["macro"] == 71.0
    assert runs["direct"][0]["cpu_model"] == "Intel" and runs["kd"][0]["cpu_model"] == "AMD"
    assert cpu_models(runs) == ["AMD", "Intel"] and "2 CPU models" in machines_note(cpu_models(runs))
    assert machines_note(["AMD"]) == ""
    lines = provenance_lines({"cpu_models": cpu_models(runs), "recorded_from": [a, b], "recorded_rows": ["kd/s0"]})
    assert len(lines) == 2 and lines[1].startswith(f"taken from {a} {b} (not trained again): kd/s0")
    assert provenance_lines({"cpu_models": ["AMD"], "recorded_from": None, "recorded_rows": []}) == []
    runs = load_recorded_runs([a, b], {"benchmark": "b"}, keep=lambda prev, row, seed: row != "kd")
    assert "kd" not in runs
    with pytest.raises(SystemExit, match="another experiment"):
        load_recorded_runs([a], {"benchmark": "b", "scale": "small"})
    c = part("c.json", "AMD", {"direct": {"0": {**r, "macro": 69.0}}})
    with pytest.raises(SystemExit, match="direct seed 0 differs"):
        load_recorded_runs([a, c], {"benchmark": "b"})
    with pytest.raises(SystemExit, match="not a readable benchmark result"):
        load_recorded_runs([tmp_path / "missing.json"], {"benchmark": "b"})
