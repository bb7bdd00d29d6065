"""`edgeasc pipeline`: recipe validation, stage records, skipping finished stages, resuming a killed run,
and the whole seed system (teachers -> KD -> AGP -> QAT -> device bundle -> int8 -> audit -> bench) on tiny data."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeasc.cli import cli
from edgeasc.errors import ConfigError
from edgeasc.pipeline import format_summary, load_pipeline, run_pipeline

TRAIN = """
seed = 0
eval_every = 0
[model]
name = "{model}"
kwargs = {kwargs}
[optim]
epochs = {epochs}
batch_size = 32
lr = 0.003
warmup_steps = 2
[data]
cache_dir = '{cache}'
"""


def write_recipes(root: Path, cache_dir: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "t_cp.toml").write_text(TRAIN.format(model="test_cpmobile", kwargs="{}", epochs=2, cache=cache_dir))
    (root / "t_sscp.toml").write_text(TRAIN.format(model="test_sscp_mobile", kwargs="{ base_channels = 16 }",
                                                   epochs=2, cache=cache_dir))
    (root / "student.toml").write_text(TRAIN.format(model="test_cpmobile", kwargs="{}", epochs=2, cache=cache_dir))
    (root / "qat.toml").write_text(TRAIN.format(model="test_cpmobile", kwargs="{}", epochs=1, cache=cache_dir)
                                   + "[quant]\nweight_fake_quant = true\n")
    (root / "prune.toml").write_text(f"""
seed = 0
eval_every = 0
[optim]
epochs = 2
batch_size = 32
warmup_steps = 2
[data]
cache_dir = '{cache_dir}'
[prune]
stages = [8]
n_steps = 2
finetune_epochs = 1
""")
    (root / "finetune.toml").write_text(f"""
seed = 0
eval_every = 0
[optim]
epochs = 1
batch_size = 16
lr = 5e-4
warmup_steps = 1
[augment]
mixstyle_p = 0.0
[data]
cache_dir = '{cache_dir}'
""")


HEAD = """
[pipeline]
seed = 0

[[stage]]
name = "teachers"
kind = "teachers"
members = [
  { name = "cp", recipe = "t_cp.toml" },
  { name = "sscp", recipe = "t_sscp.toml" },
]

[[stage]]
name = "teacher_logits"
kind = "teacher_logits"
"""

KD_STUDENT = """
[[stage]]
name = "student"
kind = "train"
recipe = "student.toml"
kd = true
set = [{student_set}]

[[stage]]
name = "evaluate"
kind = "evaluate"
"""


@pytest.fixture()
def recipes(tmp_path, cache_dir):
    root = tmp_path / "recipes"
    write_recipes(root, cache_dir)
    return root


def test_kd_pipeline_records_stages_and_skips_finished_ones(tiny_data, tmp_path, recipes):
    recipe = recipes / "p.toml"
    recipe.write_text(HEAD + KD_STUDENT.format(student_set='"optim.lr=0.003"'))
    out = tmp_path / "run"
    result = run_pipeline(recipe, tiny_data, out, progress=False)
    s = result.summary
    assert s["complete"] and set(s["stage_seconds"]) == {"teachers", "teacher_logits", "student", "evaluate"}
    models = [r["model"] for r in s["rows"]]
    assert models == ["teachers/cp", "teachers/sscp", "teachers/ensemble", "student", "evaluate"]
    student = json.loads((out / "student" / "stage.json").read_text())
    assert student["outputs"] == {"model": "student/model.pt"}  # relative to the run folder
    cfg = json.loads((out / "student" / "config.json").read_text())
    assert cfg["kd"]["teacher_logits"] == str(out / "teacher_logits" / "teacher_logits.npz")
    # the evaluate stage re-measures the student it follows: the same float accuracy
    rows = {r["model"]: r for r in s["rows"]}
    assert rows["evaluate"]["macro"] == pytest.approx(rows["student"]["macro"])
    assert "teachers/ensemble" in format_summary(s)
    # a second run skips every stage (records untouched)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/stage.json")}
    again = run_pipeline(recipe, tiny_data, out, progress=False)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/stage.json")} == stamps
    assert again.summary["rows"] == s["rows"]
    # a changed stage table is refused, not silently reused
    recipe.write_text(HEAD + KD_STUDENT.format(student_set='"optim.lr=0.002"'))
    with pytest.raises(ConfigError, match="different recipe for stage 'student'"):
        run_pipeline(recipe, tiny_data, out, progress=False)
    # so is an edited recipe file a finished stage read
    recipe.write_text(HEAD + KD_STUDENT.format(student_set='"optim.lr=0.003"'))
    original = (recipes / "t_cp.toml").read_text()
    (recipes / "t_cp.toml").write_text(original + "\n# edited\n")
    with pytest.raises(ConfigError, match="stage 'teachers'"):
        run_pipeline(recipe, tiny_data, out, progress=False)
    # an earlier stage that runs again makes the later ones stale: refused, not reused
    (recipes / "t_cp.toml").write_text(original)
    shutil.rmtree(out / "teacher_logits")
    with pytest.raises(ConfigError, match="stage 'student' .* built on an earlier run of stage\\(s\\) teacher_logits"):
        run_pipeline(recipe, tiny_data, out, progress=False)
    assert (out / "teacher_logits" / "stage.json").is_file()  # the earlier stage itself was rebuilt


@pytest.mark.parametrize("body, message", [
    ('[[stage]]\nname = "a"\nkind = "trian"\nrecipe = "student.toml"\n', "did you mean 'train'"),
    ('[[stage]]\nname = "a"\nkind = "train"\nrecipee = "student.toml"\n', "unknown key 'recipee'"),
    ('[[stage]]\nname = "a"\nkind = "train"\nrecipe = "missing.toml"\n', "recipe 'missing.toml' not found"),
    ('[[stage]]\nname = "a"\nkind = "train"\nrecipe = "student.toml"\ninit = "b"\n', "not an earlier stage"),
    ('[[stage]]\nname = "a"\nkind = "audit"\n[[stage]]\nname = "a"\nkind = "bench"\n', "used twice"),
    ('[pipline]\nseed = 1\n', "unknown section"),
    ('[pipeline]\nseed = 1\n', "no [[stage]]"),
])
def test_invalid_recipes_are_one_line_errors(recipes, body, message):
    recipe = recipes / "bad.toml"
    recipe.write_text(body)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_pipeline(recipe)


def test_cli_exit_code_for_a_bad_recipe(recipes, tiny_data, tmp_path):
    recipe = recipes / "bad.toml"
    recipe.write_text('[[stage]]\nname = "a"\nkind = "nope"\n')
    res = CliRunner().invoke(cli, ["pipeline", str(recipe), "--data", str(tiny_data), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1


def test_kd_without_a_logits_stage_is_an_error(recipes, tiny_data, tmp_path):
    recipe = recipes / "p.toml"
    recipe.write_text('[[stage]]\nname = "s"\nkind = "train"\nrecipe = "student.toml"\nkd = true\n')
    with pytest.raises(ConfigError, match="no teacher_logits stage"):
        run_pipeline(recipe, tiny_data, tmp_path / "o", progress=False)


FULL = HEAD + """
[[stage]]
name = "pruned"
kind = "prune"
input = "teachers.sscp"
recipe = "prune.toml"
kd = true

[[stage]]
name = "qat"
kind = "train"
init = "pruned"
recipe = "qat.toml"
kd = true

[[stage]]
name = "devices"
kind = "finetune"
recipe = "finetune.toml"
devices = ["a", "c"]

[[stage]]
name = "export"
kind = "export"
calib_clips = 20
eval_clips = 30

[[stage]]
name = "evaluate"
kind = "evaluate"

[[stage]]
name = "audit"
kind = "audit"

[[stage]]
name = "bench"
kind = "bench"
runs = 3
warmup = 1
n_inputs = 2

[[stage]]
name = "submission"
kind = "submission"
label = "Test_EDGEASC_task1_1"
"""


@pytest.mark.slow
def test_full_pipeline_killed_and_resumed(tiny_data, tmp_path, recipes):
    """The seed's system on tiny data through the CLI; killed (SIGKILL) once the teacher logits exist, then
    resumed: finished stages are skipped, the rest completes."""
    recipe = recipes / "full.toml"
    recipe.write_text(FULL)
    out = tmp_path / "run"
    args = [sys.executable, "-m", "edgeasc.cli", "pipeline", str(recipe), "--data", str(tiny_data),
            "--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 600
    while not (out / "teacher_logits" / "stage.json").is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.kill()  # SIGKILL: no cleanup at all (stage records and checkpoints are written atomically)
    proc.wait(timeout=120)
    assert (out / "teachers" / "stage.json").is_file()
    first = (out / "teachers" / "stage.json").stat().st_mtime_ns

    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "[teachers] complete" in res.stderr and "skipped" in res.stderr
    assert (out / "teachers" / "stage.json").stat().st_mtime_ns == first
    s = json.loads((out / "summary.json").read_text())
    assert s["complete"]
    rows = {(r["model"], r["precision"]) for r in s["rows"]}
    assert {("devices (general)", "float"), ("devices (per device)", "float"), ("evaluate", "int8")} <= rows
    audit = s["complexity"]["audit"]
    assert set(audit) == {"general", "a", "c"} and all(a["within_budget"] for a in audit.values())
    assert s["complexity"]["bench"]["bit_exact"] and s["complexity"]["bench"]["arena_bytes"] > 0
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    assert set(manifest["devices"]) == {"a", "c"}
    assert (out / "submission" / "predictions" / "Test_EDGEASC_task1_1" / "complexity.json").is_file()
    assert "accuracy on the test split" in res.stdout and "TFLite Micro arena" in res.stdout


@pytest.mark.parametrize("name", ["pipeline_demo", "pipeline_s1", "pipeline_s2", "pipeline_s3", "pipeline_s4"])
def test_shipped_pipeline_recipes_resolve(name):
    """Every shipped pipeline parses, and every training/pruning stage's recipe resolves with its overrides."""
    from edgeasc.config import resolve_train_config
    from edgeasc.pipeline import _train_config
    from edgeasc.prune.config import resolve_prune_config

    root = Path(__file__).resolve().parents[1] / "recipes"
    pipe = load_pipeline(root / f"{name}.toml")
    kinds = [s.kind for s in pipe.stages]
    assert kinds[:2] == ["teachers", "teacher_logits"] and {"prune", "finetune", "export", "audit"} <= set(kinds)
    for stage in pipe.stages:
        for m in stage.get("members", []):
            if "recipe" in m:  # a member trains its own recipe at the pipeline's seed unless it sets one
                cfg = _train_config(pipe, m["recipe"], tuple(m.get("set", ())))
                own = [o.split("=", 1)[1] for o in m.get("set", ()) if o.replace(" ", "").startswith("seed=")]
                assert cfg.seed == (int(own[-1]) if own else pipe.seed)
                assert cfg.model.name == resolve_train_config(pipe.resolve(m["recipe"])).model.name
        if stage.kind == "train":
            cfg = _train_config(pipe, stage.get("recipe"), tuple(stage.get("set", ())))
            assert cfg.seed == pipe.seed
        if stage.kind == "prune":
            train_cfg, prune_cfg = resolve_prune_config(pipe.resolve(stage.get("recipe")), ())
            assert prune_cfg.budget == "dcase2025"


def test_a_second_pipeline_on_the_same_folder_is_refused(recipes, tiny_data, tmp_path):
    """Two pipelines writing one folder would race on the same files: the second fails at once, and the
    lock dies with its holder (here: released when the first context exits)."""
    from edgeasc.artifacts import exclusive_run
    from edgeasc.errors import DataError

    recipe = recipes / "p.toml"
    recipe.write_text('[[stage]]\nname = "s"\nkind = "train"\nrecipe = "student.toml"\n')
    out = tmp_path / "run"
    with exclusive_run(out, "edgeasc pipeline"):
        with pytest.raises(DataError, match="another edgeasc pipeline is running in"):
            run_pipeline(recipe, tiny_data, out, progress=False)
        assert not (out / "s").exists()
    assert run_pipeline(recipe, tiny_data, out, progress=False).summary["complete"]
