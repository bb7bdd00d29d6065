"""Pruning: AGP schedule goldens, sparsity -> widths, coupled-channel pruning, shortcuts, budgets, checkpoints,
AGP during training (with resume), the prune command's artifacts and exit codes."""

import json

import pytest
import torch
from click.testing import CliRunner
from conftest import load_benchmarks_module, randomize_batchnorm
from torch import nn

from edgeasc.budget import BUDGETS, Budget
from edgeasc.checkpoint import load_model, save_checkpoint
from edgeasc.cli import cli
from edgeasc.complexity import count_dcase
from edgeasc.config import resolve_train_config
from edgeasc.errors import ConfigError, DomainError
from edgeasc.models import create_model
from edgeasc.models.sscp_mobile import S1_WIDTHS
from edgeasc.prune.config import PruneConfig, resolve_prune_config
from edgeasc.prune.executor import prune_to_widths, rebuild
from edgeasc.prune.hook import AGPPruningHook
from edgeasc.prune.schedule import agp_schedule, agp_sparsity, agp_timing
from edgeasc.prune.widths import complexity_of, keep_width, scale_widths, search_keep_ratio
from edgeasc.train.loop import train


# --- schedule -------------------------------------------------------------------------------------
def test_agp_schedule_golden_values():
    # s_t = s_f + (s_i - s_f) * (1 - k / n)^3, k = 0..4, from 0 to 0.5
    assert agp_schedule(0.0, 0.5, 4) == pytest.approx([0.0, 0.2890625, 0.4375, 0.4921875, 0.5], abs=1e-12)
    # t0 = 100, dt = 10, n = 4: t = 115 -> 0.5 - 0.5 * (1 - 15/40)^3
    assert agp_sparsity(115, 0.0, 0.5, 100, 4, 10) == pytest.approx(0.3779296875, abs=1e-12)
    assert agp_sparsity(90, 0.1, 0.5, 100, 4, 10) == 0.1  # before t0: s_i
    assert agp_sparsity(500, 0.1, 0.5, 100, 4, 10) == 0.5  # after t0 + n dt: s_f
    assert agp_schedule(0.2, 2 / 3, 2)[0] == 0.2
    values = agp_schedule(0.0, 0.5, 8)
    assert all(a < b for a, b in zip(values, values[1:]))  # strictly increasing, steep first
    assert values[1] - values[0] > values[-1] - values[-2]


def test_agp_timing():
    assert agp_timing(100, 4, 0.0, 0.75) == (0, 18)
    assert agp_timing(100, 4, 0.2, 0.6) == (20, 10)
    with pytest.raises(ConfigError, match="n_steps=8"):
        agp_timing(6, 8, 0.0, 0.75)


# --- sparsity -> widths -----------------------------------------------------------------------------
def test_keep_width_rounding():
    assert keep_width(248, 0.5, 8) == 120  # 124 rounded down to a multiple of 8
    assert keep_width(248, 0.5, 1) == 124
    assert keep_width(96, 2 / 3, 8) == 64  # float 2/3 must not lose a multiple
    assert keep_width(16, 0.1, 8) == 8  # never below round_to
    assert keep_width(6, 0.5, 8) == 6  # widths <= round_to are not pruned


def test_uniform_half_of_base64_is_base32():
    kw = scale_widths(create_model("sscp_mobile_b64").spec, 0.5, 8)
    assert kw["shortcuts"] == (True, True, True, False, True, False)
    pruned = create_model("sscp_mobile", **kw)
    assert pruned.model_config["kwargs"] == create_model("sscp_mobile_b32").model_config["kwargs"]


def test_budget_search_reproduces_the_seeds_s1():
    """The largest uniform keep ratio of base 64 within 128,000 fp16 bytes and 30 M MACs, without rounding, is
    exactly the seed's shipped S1 (63,748 parameters, 29,982,132 MACs)."""
    spec = create_model("sscp_mobile_b64").spec
    ratio, kw = search_keep_ratio("sscp_mobile", spec, BUDGETS["dcase2025"], dtype_bytes=2, round_to=1)
    assert kw["stem_channels"] == S1_WIDTHS["stem_channels"] and kw["block_channels"] == S1_WIDTHS["block_channels"]
    assert 0.5 <= ratio < 0.51
    rep = count_dcase(create_model("sscp_mobile", **kw))
    assert (rep.params, rep.macs) == (63_748, 29_982_132)
    ratio8, kw8 = search_keep_ratio("sscp_mobile", spec, BUDGETS["dcase2025"], dtype_bytes=2, round_to=8)
    assert kw8["block_channels"] == create_model("sscp_mobile_b32").spec.block_channels


@pytest.mark.parametrize("budget", [Budget(param_bytes=20_000, macs=30_000_000), Budget(param_bytes=10**9, macs=8_000_000)])
def test_budget_search_lands_under_budget_and_is_tight(budget):
    spec = create_model("sscp_mobile_b64").spec
    ratio, kw = search_keep_ratio("sscp_mobile", spec, budget, dtype_bytes=1, round_to=8)
    cx = complexity_of(create_model("sscp_mobile", **kw), dtype_bytes=1)
    assert cx["param_bytes"] <= budget.param_bytes and cx["macs"] <= budget.macs
    bigger = scale_widths(spec, min(1.0, ratio + 0.02), 8)
    assert bigger != kw  # the next widths up exist ...
    cx_up = complexity_of(create_model("sscp_mobile", **bigger), dtype_bytes=1)
    assert cx_up["param_bytes"] > budget.param_bytes or cx_up["macs"] > budget.macs  # ... and do not fit
    with pytest.raises(DomainError, match="narrowest"):
        search_keep_ratio("sscp_mobile", spec, Budget(param_bytes=100, macs=10**9), dtype_bytes=1)


# --- executor: coupled channels, shortcuts, checkpoints ----------------------------------------------
def tagged_model(name: str, **kwargs) -> nn.Module:
    """A model whose BatchNorm running means tag each channel with its index (+ 1000 per layer), so the
    channels that survive pruning can be read back per layer."""
    model = randomize_batchnorm(create_model(name, **kwargs)).train()
    for i, m in enumerate(mod for mod in model.modules() if isinstance(mod, nn.BatchNorm2d)):
        m.running_mean.copy_(torch.arange(m.num_features, dtype=torch.float32) + 1000 * i)
    return model


def kept(bn: nn.BatchNorm2d) -> list[int]:
    return [int(v) % 1000 for v in bn.running_mean.tolist()]


@pytest.mark.parametrize("name", ["test_sscp_mobile", "test_cpmobile"])
def test_coupled_channels_are_pruned_together(name):
    model = tagged_model(name, base_channels=16)
    x = torch.randn(2, 1, 64, 40)
    kw = scale_widths(model.spec, 0.5, 8)
    prune_to_widths(model, kw, "l1")
    assert model.spec == type(model.spec)(**kw)
    y = model.eval()(x)
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    stem_out = model.in_c[1][1]
    chain = [stem_out] + [b.proj_conv[1] if hasattr(b, "proj_conv") else b.block[2][1]
                          for b in (model.stages.s1.b1, model.stages.s1.b2)]
    # the residual chain (stem output = b1 and b2 outputs) keeps the same channel indices everywhere
    assert len(kept(stem_out)) == 8 and all(kept(bn) == kept(stem_out) for bn in chain)
    if name == "test_sscp_mobile":
        assert kept(model.in_c2[1][1]) == kept(stem_out)  # the two stem branches are added
        b = model.stages.s1.b1
        assert kept(b.exp_conv[1]) == kept(b.depth_conv[1]) == kept(b.depth_conv2[1])  # depthwise coupling
        assert b.depth_conv[0].groups == b.depth_conv[0].out_channels == model.spec.block_channels[0][0] == 16
    # the in-place pruned module equals a fresh create_model build with its weights (what a checkpoint reloads)
    torch.testing.assert_close(rebuild(model).eval()(x), y)


def test_residual_block_forward_stays_valid_after_pruning():
    torch.manual_seed(0)
    model = randomize_batchnorm(create_model("test_sscp_mobile", base_channels=16))
    block = model.stages.s1.b1
    x = torch.randn(1, 16, 8, 8)
    prune_to_widths(model, scale_widths(model.spec, 0.5, 8), "l2")
    assert isinstance(block.shortcut, nn.Identity)
    assert block.exp_conv[0].in_channels == block.proj_conv[0].out_channels == 8
    assert block(x[:, :8]).shape == (1, 8, 8, 8)


def test_shortcuts_stay_identical_after_pruning(tmp_path):
    model = randomize_batchnorm(create_model("test_sscp_mobile"))  # base 8: b3 8 -> 16 and b4 16 -> 24, no shortcuts
    before = [b.shortcut is None for s in model.stages for b in s]
    kw = scale_widths(model.spec, 0.5, 8)
    assert kw["block_channels"][2:] == ((8, 8), (16, 8))  # b3 and b4 become width-preserving (8 -> 8) ...
    prune_to_widths(model, kw, "l1")
    assert [b.shortcut is None for s in model.stages for b in s] == before  # ... but gets no shortcut
    assert model.model_config["kwargs"]["shortcuts"] == (True, True, False, False)
    path = save_checkpoint(tmp_path / "p.pt", model, stage="prune")
    loaded, _ = load_model(path)
    assert [b.shortcut is None for s in loaded.stages for b in s] == before
    x = torch.randn(1, 1, 64, 40)
    torch.testing.assert_close(loaded(x), model.eval()(x))
    rule_only = {k: v for k, v in model.model_config["kwargs"].items() if k != "shortcuts"}
    assert create_model("sscp_mobile", **rule_only).stages.s2.b3.shortcut is not None  # why the flag is stored
    with pytest.raises(ConfigError, match="b3 has a shortcut"):
        create_model("test_sscp_mobile", shortcuts=(True, True, True, False))
    with pytest.raises(ConfigError, match="4 booleans"):
        create_model("test_sscp_mobile", shortcuts=(True, True))


@pytest.mark.parametrize("importance", ["l1", "l2", "bn_scale", "taylor"])
def test_importance_criteria(importance):
    torch.manual_seed(0)
    model = randomize_batchnorm(create_model("test_sscp_mobile", base_channels=16)).train()
    if importance == "taylor":
        model(torch.randn(4, 1, 64, 40)).logsumexp(1).mean().backward()
    prune_to_widths(model, scale_widths(model.spec, 0.5, 8), importance)
    assert model.spec.stem_channels == (4, 8)  # the 4-wide stem conv is below round_to
    assert model.eval()(torch.randn(1, 1, 64, 40)).shape == (1, 10)


def test_taylor_needs_gradients_and_pruning_cannot_grow():
    model = create_model("test_sscp_mobile", base_channels=16)
    with pytest.raises(ConfigError, match="gradients"):
        prune_to_widths(model, scale_widths(model.spec, 0.5, 8), "taylor")
    small = scale_widths(model.spec, 0.5, 8)
    prune_to_widths(model, small, "l1")
    with pytest.raises(ConfigError, match="cannot grow"):
        prune_to_widths(model, scale_widths(create_model("test_sscp_mobile", base_channels=16).spec, 1.0, 8), "l1")


# --- AGP during training, resume ---------------------------------------------------------------------
def test_agp_during_training_resumes_after_interruption(tiny_data, tmp_path, fast_overrides):
    base = {"model.name=test_sscp_mobile", "model.kwargs.base_channels=16"}
    ov = tuple(o for o in fast_overrides if not o.startswith("model.")) + ("optim.epochs=3", "eval_every=0")
    start = create_model("test_sscp_mobile", base_channels=16)
    init = save_checkpoint(tmp_path / "init.pt", start, stage="test")
    cfg = resolve_train_config(None, ov + tuple(base) + (f"model.init_checkpoint='{init}'",))
    pcfg = PruneConfig(stages=(8,), n_steps=4, end_fraction=1.0)

    class Stop(Exception):
        pass

    def interrupting(hook):
        def call(step, total, model, opt):
            if step == 7:  # epoch 2 of 3 (4 steps per epoch, the last of 24 clips); pruning steps 3, 6, 9, 12
                raise Stop
            return hook(step, total, model, opt)
        return call

    run = tmp_path / "agp"
    hook = AGPPruningHook(start.spec, 0.5, pcfg, records_path=run / "steps.json")
    with pytest.raises(Stop):
        train(cfg, tiny_data, run, progress=False, step_hook=interrupting(hook))
    assert [r["step"] for r in json.loads((run / "steps.json").read_text())] == [3, 6]
    hook2 = AGPPruningHook(start.spec, 0.5, pcfg, records_path=run / "steps.json")
    result = train(cfg, tiny_data, run, resume=True, progress=False, step_hook=hook2)
    model, ckpt = load_model(result.model_path)
    assert model.model_config["name"] == "sscp_mobile"
    assert model.spec == type(model.spec)(**scale_widths(start.spec, 0.5, 8))
    steps = json.loads((run / "steps.json").read_text())
    assert [r["step"] for r in steps] == [3, 6, 9, 12] and steps[-1]["sparsity"] == 0.5
    assert [r["macs"] for r in steps] == sorted((r["macs"] for r in steps), reverse=True)
    # the resumed run equals an uninterrupted one, weights included
    hook3 = AGPPruningHook(start.spec, 0.5, pcfg, records_path=tmp_path / "straight" / "steps.json")
    straight = train(cfg, tiny_data, tmp_path / "straight", progress=False, step_hook=hook3)
    a, b = load_model(straight.model_path)[1]["state_dict"], ckpt["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_init_checkpoint_must_match_the_model(tiny_data, tmp_path, fast_overrides):
    init = save_checkpoint(tmp_path / "init.pt", create_model("test_sscp_mobile"), stage="test")
    cfg = resolve_train_config(None, fast_overrides + (f"model.init_checkpoint='{init}'",))  # test_cpmobile
    from edgeasc.errors import CheckpointError

    with pytest.raises(CheckpointError, match="does not match"):
        train(cfg, tiny_data, tmp_path / "r", progress=False)


# --- the prune command ---------------------------------------------------------------------------------
@pytest.fixture()
def wide_checkpoint(tmp_path):
    return save_checkpoint(tmp_path / "wide.pt", randomize_batchnorm(create_model("test_sscp_mobile", base_channels=16)),
                           stage="test")


def prune_args(ckpt, data, out, cache_dir, *extra):
    sets = ["optim.epochs=2", "optim.batch_size=32", "optim.warmup_steps=2", f"data.cache_dir='{cache_dir}'",
            "prune.n_steps=2", "prune.finetune_epochs=1", "eval_every=0"]
    args = ["prune", str(ckpt), "--data", str(data), "--out", str(out), "--no-progress"]
    for s in sets:
        args += ["--set", s]
    return args + list(extra)


def test_prune_command_end_to_end(tiny_data, tmp_path, cache_dir, wide_checkpoint):
    out = tmp_path / "pruned"
    res = CliRunner().invoke(cli, prune_args(wide_checkpoint, tiny_data, out, cache_dir, "--to-base-channels", "8"))
    assert res.exit_code == 0, res.output
    assert "within dcase2025" in res.output and "next: edgeasc export" in res.output
    report = json.loads((out / "prune.json").read_text())
    assert report["success"] and report["final"]["dcase_rule"]["within_budget"]
    (stage,) = report["stages"]
    t0, dt = agp_timing(8, 2, 0.0, 0.75)  # 120 clips / batch 32 = 4 steps per epoch (the last of 24), 2 epochs
    assert stage["schedule"] == {"t0": t0, "dt": dt, "n": 2, "total_steps": 8}
    assert [s["step"] for s in stage["steps"]] == [t0 + dt, t0 + 2 * dt]
    assert all(s["val_macro_accuracy_before"] is not None for s in stage["steps"])
    assert stage["final_widths"]["stem_channels"] == [4, 8]
    assert (out / "pruning_curve.png").read_bytes()[:4] == b"\x89PNG"
    model, ckpt = load_model(out / "model.pt")
    assert ckpt["stage"] == "prune" and model.spec.stem_channels == (4, 8)
    assert ckpt["extra"]["params"] == count_dcase(model).params == report["final"]["params"]
    for d in ("stage1_agp", "stage1_finetune"):
        assert (out / d / "model.pt").is_file()
    # resuming a finished run redoes nothing and reports the same
    res = CliRunner().invoke(cli, prune_args(wide_checkpoint, tiny_data, out, cache_dir, "--to-base-channels", "8",
                                             "--resume"))
    assert res.exit_code == 0, res.output
    again = json.loads((out / "prune.json").read_text())
    assert again["final"] == report["final"] and again["stages"][0]["schedule"] == stage["schedule"]


def test_prune_command_exit_codes(tiny_data, tmp_path, cache_dir, wide_checkpoint):
    runner = CliRunner()
    # a budget the planned widths cannot meet: refused before training, exit 1
    res = runner.invoke(cli, prune_args(wide_checkpoint, tiny_data, tmp_path / "a", cache_dir, "--to-base-channels",
                                        "8", "--max-param-bytes", "2000"))
    assert res.exit_code == 1 and "miss budget" in res.output and not (tmp_path / "a").exists()
    res = runner.invoke(cli, prune_args(wide_checkpoint, tiny_data, tmp_path / "b", cache_dir, "--max-macs", "1000"))
    assert res.exit_code == 1 and "narrowest" in res.output
    # bad usage, exit 2
    res = runner.invoke(cli, prune_args(tmp_path / "missing.pt", tiny_data, tmp_path / "c", cache_dir))
    assert res.exit_code == 2 and "not found" in res.output
    res = runner.invoke(cli, prune_args(wide_checkpoint, tiny_data, tmp_path / "d", cache_dir, "--to-base-channels", "16"))
    assert res.exit_code == 2 and "already 16" in res.output
    res = runner.invoke(cli, prune_args(wide_checkpoint, tiny_data, tmp_path / "e", cache_dir, "--set",
                                        "prune.importance=l3"))
    assert res.exit_code == 2 and "importance" in res.output
    res = runner.invoke(cli, prune_args(wide_checkpoint, tiny_data, tmp_path / "f", cache_dir, "--set", "model.name=x"))
    assert res.exit_code == 2 and "[model]" in res.output


def test_prune_recipes_resolve():
    from pathlib import Path

    recipes = sorted(Path(__file__).parents[1].glob("recipes/*prune*.toml"))
    assert {p.name for p in recipes} >= {"prune_s1.toml", "prune_s3.toml", "demo_prune.toml"}
    for path in recipes:
        train_cfg, cfg = resolve_prune_config(path)
        assert cfg.stages and cfg.finetune_epochs >= 1 and train_cfg.data.train_split == "split25"
    _, s3 = resolve_prune_config(Path(__file__).parents[1] / "recipes/prune_s3.toml")
    assert s3.stages == (64, 32)
    _, s1 = resolve_prune_config(Path(__file__).parents[1] / "recipes/prune_s1.toml", to_base_channels=[48])
    assert s1.stages == (48,)


@pytest.mark.slow
def test_pruned_checkpoint_exports_to_int8_and_passes_the_audit(tiny_data, tmp_path, cache_dir):
    from edgeasc.audit.report import audit_model
    from edgeasc.deploy.export import export_checkpoint

    model = randomize_batchnorm(create_model("test_sscp_mobile"))
    prune_to_widths(model, scale_widths(model.spec, 0.5, 8), "l1")  # b3 loses its width change, keeps no shortcut
    path = save_checkpoint(tmp_path / "p.pt", model.eval(), stage="prune")
    result = export_checkpoint(path, tiny_data, tmp_path / "export", int8=True, calib_clips=20, eval_clips=30,
                               cache_dir=cache_dir)
    rep = audit_model(result.artifacts["tflite_int8"], budget="dcase2025")
    assert rep.within_budget
    assert rep.macs_dcase <= count_dcase(model).macs  # folded BatchNorm costs no MACs in the graph
    adds = [layer for layer in rep.layers if layer.op == "ADD"]
    # shortcuts in b1, b2 plus one branch sum per block and the stem sum: 2 + 4 + 1 = 7 ADDs
    assert len(adds) == 7


@pytest.mark.parametrize("recipe, start, blocks, params, macs", [
    ("prune_s1.toml", "sscp_mobile_b64", [[72, 32]] * 3 + [[72, 56], [124, 56], [124, 104]], 63_748, 29_982_132),
    ("prune_s2.toml", "sscp_mobile_b64", [[72, 32]] * 3 + [[72, 56], [120, 56], [120, 104]], 62_564, 29_654_916),
    ("prune_s3.toml", "sscp_mobile_b96", [[64, 32]] * 3 + [[64, 56], [128, 56], [128, 104]], 62_308, 28_346_660),
    ("prune_s4.toml", "sscp_mobile_b96", [[68, 31]] * 3 + [[68, 58], [127, 58], [127, 103]], 63_557, 28_964_884),
    ("demo_prune.toml", "sscp_mobile_b48", [[64, 32]] * 3 + [[64, 56], [128, 56], [128, 96]], 61_188, 28_028_692),
])
def test_recipe_plans_give_the_documented_widths(recipe, start, blocks, params, macs):
    """The widths and complexity recipes/*.toml and docs/pruning.md state, within the DCASE 2025 budget."""
    from pathlib import Path

    from edgeasc.prune.config import resolve_prune_budget
    from edgeasc.prune.stage import plan_stages

    _, cfg = resolve_prune_config(Path(__file__).parents[1] / "recipes" / recipe)
    plans = plan_stages(create_model(start), cfg, resolve_prune_budget(cfg)[1])
    assert len(plans) == len(cfg.stages)
    assert plans[-1]["final_widths"]["block_channels"] == blocks
    cx = plans[-1]["complexity"]
    assert (cx["params"], cx["macs"]) == (params, macs) and cx["param_bytes"] == 2 * params <= 128_000


def test_prune_gains_epoch_split_keeps_every_arm_at_the_same_total():
    """benchmarks/experiments/prune_gains.py: every arm trains `total` epochs; --agp-epochs moves epochs between AGP and
    fine-tuning only, so a variant reuses the same pretrained wide model."""
    split = load_benchmarks_module("experiments/prune_gains").epoch_split
    assert split("direct", 16) == {"pretrain": 16}
    assert split("from64", 16) == {"pretrain": 8, "agp": 4, "finetune": 4}
    assert split("from64", 16, 2) == {"pretrain": 8, "agp": 2, "finetune": 6}
    assert split("from96", 16) == {"pretrain": 8, "agp": 2, "finetune": 2}  # per stage, two stages
    assert split("from96", 16, 1) == {"pretrain": 8, "agp": 1, "finetune": 3}
    for bad in (0, 8):  # AGP needs an epoch and must leave one for fine-tuning
        with pytest.raises(SystemExit, match="--agp-epochs"):
            split("from64", 16, bad)
    with pytest.raises(SystemExit, match="too few"):
        split("from96", 4)


def test_prune_gains_runs_in_parts_from_recorded_rows(tmp_path, tiny_data):
    """benchmarks/experiments/prune_gains.py --recorded: rows and seeds an earlier result of the same experiment holds are
    taken from it (no training, no teachers when every KD row is there); KD rows distilled from another seed's
    ensemble than --teacher-seed asks for are not; another experiment's result is refused."""
    import json

    pg = load_benchmarks_module("experiments/prune_gains")

    def r(macro: float, params: int) -> dict:
        return {"macro": macro, "per_device": {"a": macro}, "params": params, "macs": 1000, "widths": [],
                "epochs": {"pretrain": 5}}

    rows = {f"{arm} {tag}": {"runs": {"0": r(base + 0.0, 100), "1": r(base + 1.0, 100)}}
            for arm, base in (("direct", 50.0), ("from64", 52.0)) for tag in ("labels", "kd")}
    prev = {"benchmark": "prune_gains", "scale": "tiny", "epochs_total": 5, "student_recipe": pg.STUDENT,
            "kd_recipe": pg.KD_STUDENT, "teachers": list(pg.TEACHERS), "importance": "l1", "n_steps": 8,
            "agp_epochs": None, "stage_lr": None, "stage_warmup": None, "overrides": [], "teacher_seed": None,
            "rows": rows}
    rec = tmp_path / "part1.json"
    rec.write_text(json.dumps(prev))
    argv = ["--scale", "tiny", "--data", str(tiny_data), "--out", str(tmp_path / "runs"), "--seeds", "0", "1",
            "--epochs", "5", "--arms", "direct", "from64", "--recorded", str(rec)]
    assert pg.main([*argv, "--results", str(tmp_path / "all.json")]) == 0
    result = json.loads((tmp_path / "all.json").read_text())
    assert len(result["recorded_rows"]) == 8 and not (tmp_path / "runs").exists()  # nothing trained
    assert result["rows"]["from64 kd"]["gain_over_direct_pp"] == pytest.approx(2.0)
    assert result["rows"]["from64 kd"]["gain_exceeds_spread"] is True  # +2.0 against a spread of 1.0
    args = pg.argparse.Namespace(scale="tiny", epochs=5, importance="l1", n_steps=8, agp_epochs=None, stage_lr=None,
                                 stage_warmup=None, set=[], recorded=[str(rec)], teacher_seed=0)
    kept = pg._load_recorded(args)  # every seed now distils seed 0's ensemble: seed 1's KD rows no longer fit
    assert sorted(kept["direct kd"]) == [0] and sorted(kept["direct labels"]) == [0, 1]
    with pytest.raises(SystemExit, match="another experiment"):
        pg.main([*argv, "--epochs", "6", "--results", str(tmp_path / "other.json")])
    (tmp_path / "part2.json").write_text(json.dumps({**prev, "rows": {"direct kd": {"runs": {"1": r(49.0, 100)}}}}))
    with pytest.raises(SystemExit, match="direct kd seed 1 differs"):  # two parts that disagree on a run
        pg.main([*argv, str(tmp_path / "part2.json"), "--results", str(tmp_path / "both.json")])
