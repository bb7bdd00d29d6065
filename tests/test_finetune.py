"""Device-specific fine-tuning: the data.devices filter, the bundle, routing and its fallback, evaluation,
resume, the CLI and (slow) the per-member int8 export with its manifest."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgeasc.checkpoint import read_checkpoint
from edgeasc.cli import cli
from edgeasc.config import resolve_train_config
from edgeasc.data.dataset import TAUDataset, load_waveforms
from edgeasc.devices.bundle import GENERAL, is_bundle, read_bundle, routed_logits
from edgeasc.devices.finetune import evaluate_bundle, finetune, format_bundle_report
from edgeasc.errors import CheckpointError, ConfigError, DataError, DomainError
from edgeasc.evaluate import evaluate_checkpoint, predict_logits
from edgeasc.labels import SCENES
from edgeasc.train.distill import TeacherLogits
from edgeasc.train.loop import train
from edgeasc.train.runs import resolved_config_of

DEVICES = ["a", "c"]  # the tiny dataset's split25 holds clips of a and c only
RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def _fast(cache_dir: Path) -> tuple[str, ...]:
    # the `fast_overrides` values; module-scoped fixtures cannot take that function-scoped fixture
    return ("model.name=test_cpmobile", "optim.epochs=2", "optim.batch_size=32", "optim.warmup_steps=2",
            "optim.lr=0.003", f"data.cache_dir={str(cache_dir)!r}")


def _ft_overrides(cache_dir: Path) -> tuple[str, ...]:
    """The default recipe (recipes/finetune_device.toml) shortened for the tiny data."""
    return ("optim.epochs=2", "optim.batch_size=32", "optim.warmup_steps=2", "optim.lr=0.003", "eval_every=0",
            f"data.cache_dir={str(cache_dir)!r}")


@pytest.fixture(scope="module")
def general(tiny_data, cache_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("general")
    return train(resolve_train_config(None, _fast(cache_dir)), tiny_data, out, progress=False).model_path


@pytest.fixture(scope="module")
def tuned(general, tiny_data, cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("finetune")
    return finetune(general, tiny_data, out, overrides=_ft_overrides(cache_dir), devices=DEVICES)


def _same(sa: dict, sb: dict) -> bool:
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- data.devices ---------------------------------------------------------------------------------
def test_data_devices_restricts_train_and_validation(tiny_data, tmp_path, fast_overrides):
    r = train(resolve_train_config(None, fast_overrides + ("optim.epochs=1", "data.devices=['c']")), tiny_data,
              tmp_path / "c", progress=False)
    assert json.loads((r.run_dir / "config.json").read_text())["data"]["devices"] == ["c"]
    assert "on 20 clips (split25, devices c)" in (r.run_dir / "train.log").read_text()  # 20 of 120 clips are c
    assert set(r.final_metrics["per_device"]) == {"c"} and r.final_metrics["n_clips"] == 30


def test_data_devices_errors(tiny_data, tmp_path, fast_overrides):
    with pytest.raises(ConfigError, match=r"'zz'.*valid ids: a, b, c, s1"):
        resolve_train_config(None, ("data.devices=['a', 'zz']",))
    with pytest.raises(ConfigError, match="must be a list"):
        resolve_train_config(None, ("data.devices='a'",))
    assert resolve_train_config(None, ()).data.devices == ()
    with pytest.raises(DataError, match=r"split 'split25' has no clips of device\(s\) b"):
        train(resolve_train_config(None, fast_overrides + ("data.devices=['a', 'b']",)), tiny_data, tmp_path / "b",
              progress=False)
    assert not (tmp_path / "b" / "last.pt").exists()


# --- the bundle and its routing --------------------------------------------------------------------
def test_finetune_writes_a_bundle_of_device_models(tuned, general):
    bundle = read_bundle(tuned.bundle_path)
    assert bundle.members() == [GENERAL, *DEVICES]
    assert set(tuned.runs) == set(DEVICES)
    source = read_checkpoint(general)
    assert _same(bundle.general["state_dict"], source["state_dict"])
    for dev in DEVICES:
        ckpt = bundle.checkpoint(dev)
        assert ckpt["model_config"] == source["model_config"]
        assert ckpt["stage"] == "finetune" and ckpt["extra"]["device"] == dev
        assert ckpt["config"]["data"]["devices"] == [dev]
        assert ckpt["config"]["model"]["init_checkpoint"] == str(general.resolve())
        assert ckpt["config"]["augment"]["mixstyle_p"] == 0.0 and ckpt["config"]["optim"]["lr"] == 0.003
        assert not _same(ckpt["state_dict"], source["state_dict"])  # fine-tuning moved the weights
        assert _same(ckpt["state_dict"], read_checkpoint(tuned.runs[dev] / "model.pt")["state_dict"])
    assert not _same(bundle.checkpoint("a")["state_dict"], bundle.checkpoint("c")["state_dict"])
    assert bundle.extra["devices"] == DEVICES and bundle.extra["source_checkpoint"] == str(general.resolve())
    assert is_bundle(tuned.bundle_path) and not is_bundle(general)


def test_unknown_devices_fall_back_to_the_general_model(tuned, tiny_data, cache_dir):
    bundle = read_bundle(tuned.bundle_path)
    for dev in ("s4", "s6", "s8", "s10", "b", "zz", ""):
        assert bundle.member_for(dev) == GENERAL
    assert bundle.member_for("a") == "a" and bundle.member_for(" C ") == "c"

    ds = TAUDataset(tiny_data)
    clips = [c for c in ds.clips("test") if c.device in ("a", "c", "s4")]
    fe = bundle.frontend()
    waves = np.asarray(load_waveforms(ds.root, clips, fe.sample_rate_hz, fe.clip_samples, cache_dir))
    ids = [c.device for c in clips]
    ids[:5] = ["s8"] * 5  # evaluation-set devices unseen in development
    ids[5:8] = ["zz"] * 3
    logits, used = routed_logits(bundle, waves, ids, batch_size=64)
    assert logits.shape == (len(clips), len(SCENES))
    for member in (GENERAL, "a", "c"):
        idx = np.array([i for i, d in enumerate(ids) if bundle.member_for(d) == member])
        assert idx.size and all(used[i] == member for i in idx)
        own = predict_logits(bundle.build(member), waves[idx], fe, batch_size=64)
        np.testing.assert_allclose(logits[idx], own, rtol=1e-5, atol=1e-5)
    # the device models answer differently from the general one on their own clips
    idx_a = np.array([i for i, d in enumerate(ids) if d == "a"])
    general_on_a = predict_logits(bundle.build(GENERAL), waves[idx_a], fe, batch_size=64)
    assert not np.allclose(logits[idx_a], general_on_a)


def test_evaluate_bundle_matches_evaluating_each_model(tuned, general, tiny_data, cache_dir, tmp_path):
    rep = evaluate_bundle(tuned.bundle_path, tiny_data, out_dir=tmp_path, cache_dir=cache_dir)
    alone = evaluate_checkpoint(general, tiny_data, out_dir=tmp_path / "g", cache_dir=cache_dir)
    assert rep["general"]["macro_accuracy"] == alone["macro_accuracy"]
    assert rep["macro"]["general"] == alone["macro_accuracy"]
    assert set(rep["per_device"]) == {"a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6"}
    for dev, row in rep["per_device"].items():
        assert row["general"] == alone["per_device"][dev]["macro_accuracy"]
        assert row["clips"] == alone["per_device"][dev]["n"]
        assert row["diff_pp"] == pytest.approx(100 * (row["bundle"] - row["general"]))
        assert row["member"] == (dev if dev in DEVICES else GENERAL)
        if dev not in DEVICES:
            assert row["bundle"] == row["general"]
    for dev in DEVICES:  # the device rows are that device model's own accuracy on its clips
        own = evaluate_checkpoint(tuned.runs[dev] / "model.pt", tiny_data, out_dir=tmp_path / dev, cache_dir=cache_dir)
        assert rep["per_device"][dev]["bundle"] == own["per_device"][dev]["macro_accuracy"]
    assert json.loads((tmp_path / "eval_bundle.json").read_text())["macro"] == rep["macro"]
    table = format_bundle_report(rep)
    assert "device-specific" in table and "diff (pp)" in table and table.count("general") >= 8
    fin = json.loads((tuned.bundle_path.parent / "finetune.json").read_text())
    assert fin["per_device"] == rep["per_device"] and fin["trained"] == DEVICES


def _diverse_model(seed: int, feats: torch.Tensor) -> torch.nn.Module:
    """A random test_cpmobile whose BatchNorm statistics are measured on real features: unlike a freshly
    initialised one, it predicts different classes for different clips, so a routing error shows."""
    from edgeasc.models import create_model

    torch.manual_seed(seed)
    model = create_model("test_cpmobile")
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batch
    with torch.no_grad():
        model.train()(feats)
    return model.eval()


def test_evaluate_bundle_routes_each_clip_to_its_model(tiny_data, cache_dir, tmp_path):
    from edgeasc.checkpoint import save_checkpoint
    from edgeasc.config import FrontendConfig
    from edgeasc.deploy.runtime import feature_batches
    from edgeasc.devices.bundle import save_bundle

    ds = TAUDataset(tiny_data)
    fe = FrontendConfig()
    waves = load_waveforms(ds.root, ds.clips("split25"), fe.sample_rate_hz, fe.clip_samples, cache_dir)
    feats = torch.from_numpy(next(feature_batches(waves, fe))[1])
    paths = {m: save_checkpoint(tmp_path / f"{m}.pt", _diverse_model(seed, feats), stage="test")
             for seed, m in enumerate((GENERAL, "a", "s1"))}
    ckpts = {m: read_checkpoint(p) for m, p in paths.items()}
    bundle = save_bundle(tmp_path / "bundle.pt", ckpts[GENERAL], {"a": ckpts["a"], "S1": ckpts["s1"]})
    assert read_bundle(bundle).members() == [GENERAL, "a", "s1"]
    rep = evaluate_bundle(bundle, tiny_data, cache_dir=cache_dir)
    alone = {m: evaluate_checkpoint(p, tiny_data, out_dir=tmp_path / m, cache_dir=cache_dir) for m, p in paths.items()}
    assert rep["macro"]["general"] == alone[GENERAL]["macro_accuracy"]
    for dev, row in rep["per_device"].items():
        member = dev if dev in ("a", "s1") else GENERAL
        assert row["member"] == member
        assert row["general"] == alone[GENERAL]["per_device"][dev]["macro_accuracy"]
        assert row["bundle"] == alone[member]["per_device"][dev]["macro_accuracy"]
    assert rep["per_device"]["a"]["diff_pp"] != 0 and rep["per_device"]["s1"]["diff_pp"] != 0  # the test can see it
    assert rep["device_specific"]["per_device"]["s4"] == rep["general"]["per_device"]["s4"]


def test_finetune_with_soft_labels_only(general, tiny_data, cache_dir, tmp_path):
    # a KD run per device needs teacher logits for that device's clips only
    clips = [c for c in TAUDataset(tiny_data).clips("split25") if c.device == "c"]
    logits = torch.randn(len(clips), len(SCENES), generator=torch.Generator().manual_seed(0)).numpy()
    ids = tuple(c.clip_id for c in clips)
    path = TeacherLogits(ids, logits, tuple(SCENES), ("t",), (0.5,)).save(tmp_path / "t.npz")
    over = _ft_overrides(cache_dir) + (f"kd.teacher_logits={str(path)!r}", "kd.label_weight=0.0")
    res = finetune(general, tiny_data, tmp_path / "kd", overrides=over, devices="c")
    rec = json.loads((res.runs["c"] / "metrics.jsonl").read_text().splitlines()[0])
    assert rec["kd_loss"] > 0 and rec["loss"] == pytest.approx(rec["kd_loss"], rel=1e-6)
    assert read_bundle(res.bundle_path).members() == [GENERAL, "c"]


def test_finetune_resumes_and_skips_finished_devices(tuned, general, tiny_data, cache_dir):
    out = tuned.bundle_path.parent
    mtimes = {d: (tuned.runs[d] / "model.pt").stat().st_mtime_ns for d in DEVICES}
    again = finetune(general, tiny_data, out, overrides=_ft_overrides(cache_dir), devices=DEVICES)
    assert again.report["skipped"] == DEVICES and again.report["trained"] == []
    assert {d: (tuned.runs[d] / "model.pt").stat().st_mtime_ns for d in DEVICES} == mtimes
    assert _same(read_bundle(again.bundle_path).checkpoint("c")["state_dict"],
                 read_bundle(tuned.bundle_path).checkpoint("c")["state_dict"])

    (tuned.runs["c"] / "model.pt").unlink()  # killed after its last epoch, before the model was written
    again = finetune(general, tiny_data, out, overrides=_ft_overrides(cache_dir), devices=DEVICES)
    assert again.report["skipped"] == ["a"] and again.report["trained"] == ["c"]
    assert (tuned.runs["a"] / "model.pt").stat().st_mtime_ns == mtimes["a"]

    with pytest.raises(ConfigError, match="different config"):  # a changed recipe does not resume silently
        finetune(general, tiny_data, out, overrides=_ft_overrides(cache_dir) + ("optim.lr=0.001",), devices=DEVICES)
    with pytest.raises(DataError, match="already holds a training run"):
        finetune(general, tiny_data, out, overrides=_ft_overrides(cache_dir), devices=DEVICES, resume=False)


def test_bad_inputs(tuned, general, tiny_data, cache_dir, tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a bundle")
    for path in (garbage, general, tmp_path / "missing.pt"):
        with pytest.raises(CheckpointError):
            read_bundle(path)
        assert not is_bundle(path)
    with pytest.raises(CheckpointError, match="not an edgeasc device bundle"):
        evaluate_bundle(general, tiny_data, cache_dir=cache_dir)
    with pytest.raises(CheckpointError, match="already a device bundle"):
        finetune(tuned.bundle_path, tiny_data, tmp_path / "x", overrides=_ft_overrides(cache_dir))
    with pytest.raises(CheckpointError):
        finetune(garbage, tiny_data, tmp_path / "x", overrides=_ft_overrides(cache_dir))
    with pytest.raises(ConfigError, match="evaluation set only"):
        finetune(general, tiny_data, tmp_path / "x", overrides=_ft_overrides(cache_dir), devices="a,s8")
    with pytest.raises(ConfigError, match=r"unknown device id 'zz'.*valid ids: a, b, c"):
        finetune(general, tiny_data, tmp_path / "x", overrides=_ft_overrides(cache_dir), devices=["zz"])
    with pytest.raises(DataError, match=r"split 'split25' has no clips of device\(s\) s4"):
        finetune(general, tiny_data, tmp_path / "x", overrides=_ft_overrides(cache_dir), devices=["a", "s4"])
    with pytest.raises(ConfigError, match=r"takes the model .* from"):
        finetune(general, tiny_data, tmp_path / "x", overrides=_ft_overrides(cache_dir) + ("model.name=test_cpmobile",))
    with pytest.raises(ConfigError, match=r"\[frontend\] differs"):
        finetune(general, tiny_data, tmp_path / "x", overrides=_ft_overrides(cache_dir) + ("frontend.n_mels=128",))
    assert not (tmp_path / "x").exists()  # every check ran before any training


def test_cli_finetune_and_evaluate_bundle(general, tiny_data, cache_dir, tmp_path):
    runner = CliRunner()
    args = ["finetune", str(general), "--data", str(tiny_data), "--out", str(tmp_path / "ft"), "--devices", "c",
            "--recipe", str(RECIPES / "demo_finetune.toml"), "--no-progress",
            "--set", f"data.cache_dir={str(cache_dir)!r}"]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "device-specific" in res.output and "bundle: " in res.output and "next: edgeasc export" in res.output
    bundle = tmp_path / "ft" / "bundle.pt"
    # the demo recipe fine-tunes with weights fake-quantised: the device model stays on the int8 grid
    from edgeasc.train.qat import grid_error

    assert grid_error(read_bundle(bundle).build("c")) < 1e-3

    res = runner.invoke(cli, ["evaluate", str(bundle), "--data", str(tiny_data), "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert any(line.startswith("general ") for line in lines) and any(line.startswith("diff (pp)") for line in lines)
    assert "s4" in res.output and (tmp_path / "ev" / "eval_bundle.json").is_file()
    res = runner.invoke(cli, ["evaluate", str(bundle), "--data", str(tiny_data), "--out", str(tmp_path / "ev"),
                              "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["per_device"]["s4"]["member"] == GENERAL

    res = runner.invoke(cli, ["finetune", str(general), "--data", str(tiny_data), "--out", str(tmp_path / "x"),
                              "--devices", "s9"])
    assert res.exit_code == 2 and "evaluation set only" in res.output and "Traceback" not in res.output
    sel = args[:4] + ["--out", str(tmp_path / "sel"), "--select", "--holdout", "0.3"] + args[6:]
    res = runner.invoke(cli, sel)  # device c of the tiny data: one 1-s clip pair per class, nothing to hold out
    assert res.exit_code == 2 and "--select: device c has no location or recording to hold out" in res.output
    assert not (tmp_path / "sel" / "devices").exists()  # refused before any training
    # device a of the tiny data's full training fold: 3 recordings per class
    res = runner.invoke(cli, ["a" if x == "c" else x for x in sel] + ["--set", "data.train_split='train'"])
    assert res.exit_code == 0, res.output
    assert "selection a: held-out accuracy general" in res.output


# --- export -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_export_bundle_writes_one_audited_int8_model_per_member(tuned, tiny_data, cache_dir, tmp_path, monkeypatch):
    from edgeasc.audit.report import audit_model
    from edgeasc.budget import BUDGETS, Budget
    from edgeasc.deploy.manifest import manifest_tflite
    from edgeasc.deploy.runtime import TFLiteModel, feature_batches
    from edgeasc.pipeline import export_bundle

    out = tmp_path / "export"
    manifest = export_bundle(tuned.bundle_path, tiny_data, out, int8=True, calib_clips=20, eval_clips=30,
                             cache_dir=cache_dir)
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["devices"] == {d: f"{d}/model_int8.tflite" for d in DEVICES}
    assert on_disk["general"]["tflite"] == "general/model_int8.tflite" and on_disk["unknown_devices"] == GENERAL
    assert set(on_disk["members"]) == {GENERAL, *DEVICES} and on_disk["within_budget"] is True
    for member, entry in on_disk["members"].items():
        audit = audit_model(out / entry["tflite"], budget="dcase2025")
        assert entry["within_budget"] is True and audit.within_budget
        assert entry["param_bytes"] == audit.param_bytes and entry["macs"] == audit.macs_dcase
        assert 0.0 <= entry["int8_agreement"] <= 1.0 and entry["int8_accuracy"] is not None
        assert (out / member / "model.pt").is_file() and (out / member / "export_report.json").is_file()
        convert_log = (out / member / "convert.log").read_text()  # parallel converters, a log per member
        # the converter worked on the member's staging folder (OUT/<member>/.export_XXXX/, edgeasc.deploy.export)
        assert re.search(rf"/{member}/\.export_\w+/model\.onnx", convert_log) and "[edgeasc] done" in convert_log
        assert not any(re.search(rf"/{m}/\.export_", convert_log) for m in on_disk["members"] if m != member)
        assert not list((out / member).glob(".export_*"))  # published and removed

    bundle = read_bundle(tuned.bundle_path)
    ds = TAUDataset(tiny_data)
    clips = ds.clips("test")[:4]
    fe = bundle.frontend()
    feats = next(feature_batches(load_waveforms(ds.root, clips, fe.sample_rate_hz, fe.clip_samples, cache_dir), fe))[1]
    for dev in ("a", "c", "s4", "s8", "zz"):
        path = manifest_tflite(out / "manifest.json", dev)
        expected = dev if dev in DEVICES else GENERAL
        assert path == out / expected / "model_int8.tflite" and path.is_file()
        model = TFLiteModel(path)
        assert model.input.quantized and model.output.quantized
        y = model.predict(feats)
        assert y.shape == (4, len(SCENES)) and np.isfinite(y).all()
    a_int8 = TFLiteModel(manifest_tflite(out / "manifest.json", "a")).predict(feats)
    g_int8 = TFLiteModel(manifest_tflite(out / "manifest.json", "s8")).predict(feats)
    assert not np.array_equal(a_int8, g_int8)  # different models behind different device ids

    # finished members are not exported again; a budget a member misses exits 1 after writing the manifest
    stamp = (out / "a" / "model_int8.tflite").stat().st_mtime_ns
    monkeypatch.setitem(BUDGETS, "tiny_test", Budget(param_bytes=1_000, macs=30_000_000))
    with pytest.raises(DomainError, match="over budget tiny_test"):
        export_bundle(tuned.bundle_path, tiny_data, out, calib_clips=20, eval_clips=30, cache_dir=cache_dir,
                      budget="tiny_test")
    assert (out / "a" / "model_int8.tflite").stat().st_mtime_ns == stamp
    over = json.loads((out / "manifest.json").read_text())
    assert over["within_budget"] is False and all(e["within_budget"] is False for e in over["members"].values())
    assert manifest["members"]["a"]["tflite"] == over["members"]["a"]["tflite"]


# --- selection on held-out training clips ------------------------------------------------------------
def test_split_holdout_holds_out_whole_locations_seeded(tiny_data):
    from edgeasc.train.clips import split_holdout

    clips = TAUDataset(tiny_data).clips("train")  # one location, 3 recordings per class and device a
    kept, held = split_holdout(clips, 0.25, seed=0)
    assert len(kept) + len(held) == len(clips) and not {c.clip_id for c in kept} & {c.clip_id for c in held}
    assert [c.clip_id for c in kept] == [c.clip_id for c in clips if c in kept]  # input order kept
    assert not {c.recording_id for c in kept} & {c.recording_id for c in held}  # no recording on both sides
    from edgeasc.data.dataset import Clip

    several = [Clip(f"audio/{scene}-lyon-{100 * i + loc}-{40000 + rec}-{sub}-a.wav", scene, "a", f"lyon-{100 * i + loc}")
               for i, scene in enumerate(SCENES) for loc in range(3) for rec in range(2) for sub in range(2)]
    k2, h2 = split_holdout(several, 0.25, seed=0)
    assert len(h2) == 32 and len({c.identifier for c in h2}) == 8  # 8 whole locations of 4 clips: >= 30 of 120
    assert not {c.identifier for c in k2} & {c.identifier for c in h2}  # no location on both sides
    assert all(len({c.identifier for c in k2 if c.scene == s}) >= 1 for s in SCENES)
    assert len(held) >= round(0.25 * len(clips)) and {c.label for c in kept} == {c.label for c in clips}
    assert split_holdout(list(reversed(clips)), 0.25, seed=0)[1] == list(reversed(held))  # order-independent
    assert {c.clip_id for c in split_holdout(clips, 0.25, seed=1)[1]} != {c.clip_id for c in held}
    assert split_holdout(clips, 0.0, seed=0) == (clips, [])


def test_finetune_select_keeps_a_device_model_only_when_it_wins_on_held_out_clips(general, tiny_data, cache_dir,
                                                                                  tmp_path):
    from edgeasc.devices.finetune import _holdout_choice

    over = _ft_overrides(cache_dir) + ("data.train_split='train'",)  # tiny split25: one recording per class
    res = finetune(general, tiny_data, tmp_path / "sel", overrides=over, devices="a", select=True, holdout=0.25)
    sel = res.report["selection"]
    assert set(sel) == {"a"}
    for dev, s in sel.items():
        n_dev = sum(c.device == dev for c in TAUDataset(tiny_data).clips("train"))
        assert 0 < s["n_clips"] < n_dev and s["kept"] == (s["finetuned"] > s["general"])
        assert f"on {n_dev - s['n_clips']} clips" in (res.runs[dev] / "train.log").read_text()  # held out of training
    assert read_bundle(res.bundle_path).members() == [GENERAL, *[d for d in ["a"] if sel[d]["kept"]]]
    assert read_bundle(res.bundle_path).extra["selection"] == sel
    # a tie goes to the general model: the general model against itself is never "kept"
    cfg = resolved_config_of(res.runs["a"])
    from edgeasc.train.clips import select_devices, split_holdout

    held = split_holdout(select_devices(TAUDataset(tiny_data).clips("train"), ("a",), "train"), 0.25, cfg.seed)[1]
    assert len(held) == sel["a"]["n_clips"]  # the clips finetune held out of device a's run
    tie = _holdout_choice(general, general, TAUDataset(tiny_data), cfg, held)
    assert tie["general"] == tie["finetuned"] and tie["kept"] is False
    with pytest.raises(ConfigError, match="--holdout"):
        finetune(general, tiny_data, tmp_path / "bad", overrides=_ft_overrides(cache_dir), devices="c", select=True,
                 holdout=1.0)


def test_export_of_a_bundle_refuses_the_per_model_int8_options_in_one_line(tuned, tiny_data, tmp_path):
    res = CliRunner().invoke(cli, ["export", str(tuned.bundle_path), "--int8", "--data", str(tiny_data), "--out",
                                   str(tmp_path / "x"), "--int16-layers", "auto", "--no-bias-correction"])
    assert res.exit_code == 2, res.output
    assert "--no-bias-correction and --int16-layers: not available for a device bundle" in res.output
    assert not (tmp_path / "x").exists()  # nothing written
