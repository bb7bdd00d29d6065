"""The calibration benchmark (benchmarks/suite/calibration.py): its target checks, and one real run of the
harness on tiny data with a test network."""

from __future__ import annotations

import json
import math

import pytest
from conftest import load_benchmarks_module

cal = load_benchmarks_module("suite/calibration")


def _summary(curve: dict[int, float], widths: dict[int, float], devices: dict[str, float]) -> dict:
    return {"splits": {k: {"mean": v, "runs": [v]} for k, v in curve.items()},
            "widths": {k: {"mean": v, "runs": [v]} for k, v in widths.items()}, "devices_split25": devices}


def test_tau22_meets_its_own_data_targets():
    """The published TAU22 figures satisfy the targets they were written from (a check of the arithmetic)."""
    t = cal.check_targets(_summary(cal.TAU22["splits"], {}, cal.TAU22["devices_split25"]))
    assert set(t) == {"gain_per_doubling", "gain_5_to_100", "split25", "device_gap"}
    assert all(v["holds"] for v in t.values()), t
    assert t["gain_5_to_100"]["value"] == pytest.approx(56.99 - 42.40)
    gap = 62.27 - (47.39 + 46.75 + 41.75) / 3
    assert t["device_gap"]["value"] == pytest.approx(gap)
    # split5 -> 10 is one doubling: 2.89 pp
    assert t["gain_per_doubling"]["value"][0] == pytest.approx(45.29 - 42.40)


def test_targets_fail_where_the_figures_do():
    # today's generator: flat in data and width, small device gap
    t = cal.check_targets(_summary({5: 70.0, 25: 75.0, 100: 76.0}, {32: 75.0, 64: 75.5, 96: 75.4},
                                   {"a": 80, "s4": 74, "s5": 75, "s6": 73}))
    assert not t["gain_5_to_100"]["holds"] and not t["split25"]["holds"] and not t["device_gap"]["holds"]
    assert not t["base64_over_32"]["holds"] and not t["base96_over_64"]["holds"]
    # split5 -> 25 is log2(5) doublings
    assert t["gain_per_doubling"]["value"][0] == pytest.approx(5.0 / math.log2(5))
    assert not t["gain_per_doubling"]["holds"]
    ok = cal.check_targets(_summary({5: 40.0, 25: 50.0, 100: 57.0}, {32: 50.0, 64: 53.0, 96: 54.0},
                                    {"a": 65, "s4": 47, "s5": 46, "s6": 42}))
    assert all(v["holds"] for v in ok.values()), ok


def test_a_step_floor_gives_small_splits_more_epochs(tiny_data):
    prof = cal.CalibrationProfile(scale="tiny", splits=(25, 100), widths=(), seeds=(0,), epochs=2, warmup_steps=0,
                                  overrides=("optim.batch_size=32",), min_steps=20)
    n25, n100 = cal.split_clips(tiny_data, 25), cal.split_clips(tiny_data, 100)
    assert 0 < n25 < n100
    per25, per100 = math.ceil(n25 / 32), math.ceil(n100 / 32)
    assert cal.split_epochs(prof, tiny_data, 25) == max(2, math.ceil(20 / per25))
    assert cal.split_epochs(prof, tiny_data, 100) == max(2, math.ceil(20 / per100))
    assert cal.split_epochs(prof, tiny_data, 25) > cal.split_epochs(prof, tiny_data, 100)
    job = cal.jobs(prof, tiny_data)["b32_split25_seed0"]
    assert f"optim.epochs={cal.split_epochs(prof, tiny_data, 25)}" in job
    # without a floor every split gets the profile's epochs, and no dataset is needed
    flat = cal.CalibrationProfile(scale="tiny", splits=(25, 100), widths=(), seeds=(0,), epochs=2, warmup_steps=0)
    assert all("optim.epochs=2" in j for j in cal.jobs(flat).values())
    with pytest.raises(ValueError, match="min_steps needs the dataset"):
        cal.jobs(prof)


def test_a_calibration_run_trains_reads_and_reuses(tiny_data, cache_dir, tmp_path, capsys):
    prof = cal.CalibrationProfile(scale="tiny", splits=(25, 100), widths=(16,), seeds=(0,), epochs=1,
                                  warmup_steps=0, overrides=("model.name='test_cpmobile'", "optim.batch_size=32",
                                                             f"data.cache_dir={str(cache_dir)!r}"))
    assert set(cal.jobs(prof)) == {"b32_split25_seed0", "b32_split100_seed0", "b16_split25_seed0"}
    path = cal.run_calibration(prof, "cal_test", tmp_path / "work", 1, tiny_data, results=tmp_path)
    result = json.loads(path.read_text())
    assert result["data_label"].startswith("SYNTHETIC: tiny (generator ")
    assert set(result["runs"]) == set(cal.jobs(prof))
    for run in result["runs"].values():
        assert 0.0 <= run["macro"] <= 100.0 and set(run["devices"]) <= set(cal.DEVICES)
    s = result["summary"]
    assert set(s["splits"]) == {"25", "100"} and set(s["widths"]) == {"32", "16"}
    assert s["widths"]["32"] == s["splits"]["25"]
    assert "split25" in result["targets"] and "gain_per_doubling" in result["targets"]
    out = capsys.readouterr().out
    assert "| TAU22 | 50.29 | 56.99 |" in out and "split25 macro accuracy between 45% and 60%" in out
    # finished runs are reused, not retrained
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "work").rglob("model.pt")}
    assert len(stamp) == 3
    cal.run_calibration(prof, "cal_test", tmp_path / "work", 1, tiny_data, results=tmp_path)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "work").rglob("model.pt")} == stamp
