"""The synthetic TAU22-layout generator: layout, splits, devices, determinism, audio format, refusals."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgeasc import synth
from edgeasc.errors import DataError
from edgeasc.labels import DEVICE_GROUPS, DEVICES, SCENES


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    text = path.read_text(encoding="utf-8")
    header = text.splitlines()[0].split("\t")
    with path.open(newline="", encoding="utf-8") as f:
        return header, list(csv.DictReader(f, delimiter="\t"))


def _recording(filename: str) -> str:
    """`audio/airport-lisbon-1000-40000-3-a.wav` -> `airport-lisbon-1000-40000` (all sub-pieces, all devices)."""
    return Path(filename).stem.rsplit("-", 2)[0]


@pytest.fixture(scope="module")
def meta(tiny_data) -> dict[str, dict[str, str]]:
    return {r["filename"]: r for r in _rows(tiny_data / "meta.csv")[1]}


def test_layout_and_names(tiny_data, meta):
    audio = {f"audio/{p.name}" for p in (tiny_data / "audio").iterdir()}
    assert audio == set(meta)  # every listed file exists, no stray or temporary files
    for name, row in meta.items():
        m = synth.FILENAME_RE.match(name)
        assert m, name
        assert m["scene"] == row["scene_label"] and m["scene"] in SCENES
        assert m["device"] == row["source_label"] and m["device"] in DEVICES
        assert row["identifier"] == f"{m['city']}-{m['location']}"
        assert int(m["location"]) >= 1000 and int(m["segment"]) >= 40000
    # Each recording is cut into exactly ten pieces on each of its devices.
    pieces = Counter((_recording(n), meta[n]["source_label"]) for n in meta)
    assert set(pieces.values()) == {synth.PIECES_PER_SEGMENT}
    readme = (tiny_data / "README.md").read_text(encoding="utf-8")
    assert "SYNTHETIC" in readme and "seed: 0" in readme and "scale: tiny" in readme


def test_csv_headers_and_tabs(tiny_data):
    expected = {
        "meta.csv": ["filename", "scene_label", "identifier", "source_label"],
        "evaluation_setup/fold1_train.csv": ["filename", "scene_label"],
        "evaluation_setup/fold1_evaluate.csv": ["filename", "scene_label"],
        "evaluation_setup/fold1_test.csv": ["filename"],
        **{f"split_setup/split{p}.csv": ["filename", "scene_label"] for p in synth.SPLIT_PERCENTS},
    }
    for rel, columns in expected.items():
        lines = (tiny_data / rel).read_text(encoding="utf-8").splitlines()
        assert lines[0].split("\t") == columns, rel
        assert all(len(line.split("\t")) == len(columns) and "," not in line for line in lines), rel
        assert all(line.startswith("audio/") for line in lines[1:]), rel


def test_folds_disjoint_locations_and_devices(tiny_data, meta):
    train = {r["filename"] for r in _rows(tiny_data / "evaluation_setup/fold1_train.csv")[1]}
    evaluate = _rows(tiny_data / "evaluation_setup/fold1_evaluate.csv")[1]
    test = [r["filename"] for r in _rows(tiny_data / "evaluation_setup/fold1_test.csv")[1]]
    assert test == [r["filename"] for r in evaluate]
    assert train.isdisjoint(test) and train | set(test) == set(meta)
    assert {meta[f]["identifier"] for f in train}.isdisjoint({meta[f]["identifier"] for f in test})
    train_devices = Counter(meta[f]["source_label"] for f in train)
    test_devices = Counter(meta[f]["source_label"] for f in test)
    assert set(train_devices) == {"a", "b", "c", "s1", "s2", "s3"}  # s4-s6 never in training
    assert set(test_devices) == set(DEVICES)
    assert train_devices["a"] / sum(train_devices.values()) > 0.6  # device a dominates
    assert {meta[f]["scene_label"] for f in train} == {meta[f]["scene_label"] for f in test} == set(SCENES)


def test_splits_nested_balanced_and_whole(tiny_data, meta):
    train = {r["filename"] for r in _rows(tiny_data / "evaluation_setup/fold1_train.csv")[1]}
    splits = {
        p: {r["filename"] for r in _rows(tiny_data / f"split_setup/split{p}.csv")[1]} for p in synth.SPLIT_PERCENTS
    }
    assert splits[100] == train
    for small, large in zip(synth.SPLIT_PERCENTS, synth.SPLIT_PERCENTS[1:]):
        assert splits[small] <= splits[large]
    files_of = defaultdict(set)
    for f in train:
        files_of[_recording(f)].add(f)
    for pct, files in splits.items():
        for rec, rec_files in files_of.items():
            assert rec_files <= files or rec_files.isdisjoint(files), (pct, rec)
        per_scene = Counter(meta[f]["scene_label"] for f in files if f.endswith("-0-a.wav"))
        assert set(per_scene) == set(SCENES) and len(set(per_scene.values())) == 1, pct


def test_small_plan_sizes_and_device_shares():
    plans = synth.plan_dataset("small", seed=0)
    splits = synth.make_splits(plans, seed=0)
    clips = lambda ps, dev=None: sum(  # noqa: E731
        synth.PIECES_PER_SEGMENT for p in ps for d in p.devices if dev in (None, d)
    )
    train = [p for p in plans if p.fold == "train"]
    test = [p for p in plans if p.fold == "test"]
    assert 3000 <= clips(splits[25]) <= 4000
    assert 2000 <= clips(test) <= 3000
    assert 0.70 <= clips(train, "a") / clips(train) <= 0.76
    assert len({clips(train, d) for d in synth.EXTRA_TRAIN_DEVICES}) == 1
    assert {clips(test, d) for d in DEVICES} == {clips(test) // len(DEVICES)}
    assert all(d not in p.devices for p in train for d in DEVICE_GROUPS["unseen"])
    # The 25% split keeps the training fold's device mix.
    share = lambda ps: clips(ps, "a") / clips(ps)  # noqa: E731
    assert abs(share(splits[25]) - share(train)) < 0.03


def test_wav_format(tiny_data, meta):
    for name in sorted(meta)[:: len(meta) // 7]:
        info = sf.info(tiny_data / name)
        assert (info.samplerate, info.channels, info.frames, info.subtype, info.format) == (
            44_100, 1, 44_100, "PCM_16", "WAV"
        )
        x, _ = sf.read(tiny_data / name)
        rms_db = 20 * np.log10(np.sqrt(np.mean(x**2)))
        assert -65 < rms_db < -10, (name, rms_db)


def test_same_seed_same_bytes_any_worker_count(tiny_data, tmp_path):
    # An interrupted earlier run (marker, stale wav, no meta.csv) is cleaned up and regenerated.
    out = tmp_path / "again"
    (out / "audio").mkdir(parents=True)
    (out / synth.generate._MARKER).write_text("partial")
    stale = out / "audio" / "park-paris-1-2-3-a.wav"
    stale.write_bytes(b"stale")
    synth.generate_dataset(out, scale="tiny", seed=0, progress=False, workers=2)
    assert not stale.exists()
    for rel in ("meta.csv", "split_setup/split25.csv", "README.md"):
        assert (out / rel).read_bytes() == (tiny_data / rel).read_bytes(), rel
    names = sorted(p.name for p in (tiny_data / "audio").iterdir())
    assert names == sorted(p.name for p in (out / "audio").iterdir())
    for name in names[::50]:
        assert (out / "audio" / name).read_bytes() == (tiny_data / "audio" / name).read_bytes(), name


def test_different_seed_differs():
    plans0, plans1 = synth.plan_dataset("tiny", seed=0), synth.plan_dataset("tiny", seed=1)
    assert [(p.city, p.location_latent) for p in plans0] != [(p.city, p.location_latent) for p in plans1]
    x0 = synth.render_clean_segment(*synth.sample_segment_params(plans0[0], seed=0))
    x1 = synth.render_clean_segment(*synth.sample_segment_params(plans0[0], seed=1))
    again = synth.render_clean_segment(*synth.sample_segment_params(plans0[0], seed=0))
    assert np.array_equal(x0, again) and not np.allclose(x0, x1)


def test_devices_differ_but_share_the_scene():
    plan = synth.plan_dataset("tiny", seed=0)[0]
    clean = synth.render_clean_segment(*synth.sample_segment_params(plan, seed=0))
    rng = np.random.default_rng(0)
    a, s4 = (synth.render_device(clean, d, rng) for d in ("a", "s4"))
    assert np.corrcoef(a, clean)[0, 1] > 0.99  # a is the clean scene plus a very low noise floor
    assert not np.allclose(a, s4, atol=1e-3)
    same = synth.render_device(clean, "s4", rng, replace(synth.DEFAULT_DIFFICULTY, device_strength=0.0))
    assert np.corrcoef(same, clean)[0, 1] > 0.99  # strength 0: every device is a


def test_scene_prototypes_differ():
    """Class prototypes carry their ingredients: a metro rumbles more than a park, a park has more birds."""

    def band_db(x, lo, hi):
        spec = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(len(x), 1 / synth.SAMPLE_RATE_HZ)
        return 10 * np.log10(spec[(f >= lo) & (f < hi)].mean())

    rng = np.random.default_rng(0)
    metro = synth.render_clean_segment(synth.scene_prototype("metro"), rng)
    park = synth.render_clean_segment(synth.scene_prototype("park"), rng)
    tilt = lambda x: band_db(x, 30, 200) - band_db(x, 1000, 2000)  # noqa: E731
    assert tilt(metro) > tilt(park) + 3
    birds = lambda x: band_db(x, 2500, 7000) - band_db(x, 1000, 2000)  # noqa: E731
    assert birds(park) > birds(metro)


def test_refusals(tiny_data, tmp_path):
    with pytest.raises(DataError, match="overwrite"):
        synth.generate_dataset(tiny_data, scale="tiny", seed=0, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        synth.generate_dataset(foreign, scale="tiny", progress=False)
    (foreign / "meta.csv").write_text("filename\tscene_label\tidentifier\tsource_label\n")
    with pytest.raises(DataError, match="did not generate"):
        synth.generate_dataset(foreign, scale="tiny", progress=False, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="did you mean 'small'"):
        synth.generate_dataset(tmp_path / "x", scale="smal", progress=False)


def test_difficulty_validation():
    with pytest.raises(ValueError, match="overlap"):
        synth.Difficulty(overlap=1.5)
    with pytest.raises(ValueError, match="snr_limits_db"):
        synth.Difficulty(snr_limits_db=(5.0, -5.0))
    with pytest.raises(ValueError, match="device_strength"):
        synth.Difficulty(device_strength=-1.0)
