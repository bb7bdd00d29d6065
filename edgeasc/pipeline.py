"""One resumable pipeline for the seed's systems: `edgeasc pipeline RECIPE --data DIR --out DIR`.

A pipeline recipe (TOML) names its stages in order; each runs in `OUT/<stage name>/` and, when it has
finished, writes `stage.json` there (atomically): its kind, its recipe table, its outputs, its metrics and
its wall time. A stage whose `stage.json` exists, matches the recipe and whose outputs exist is skipped, so a
killed pipeline resumes where it stopped (training stages also resume mid-run from their `last.pt`).

    [pipeline]
    seed = 0                      # every training stage's seed (a stage's `set = ["seed=3"]` still wins)

    [[stage]]
    name = "teachers"             # folder name, unique
    kind = "teachers"             # see STAGE_KEYS for every kind and its keys
    members = [{ name = "sscp_b48", recipe = "demo_teacher_sscp.toml", set = ["optim.epochs=4"] }]

Kinds:
- `teachers`: train each member (`{name, recipe, set}`: `edgeasc train`) or take a trained one (`{name,
  checkpoint}`, a path from the working directory), then evaluate each and their logit average (the ensemble).
- `teacher_logits`: the ensemble's averaged logits over the training split (`edgeasc teacher-logits`).
- `train`: `edgeasc train` with `recipe`/`set`; `init` = a stage (or `stage.member`) whose model the run starts
  from (its architecture too, so pruned widths carry over); `kd = true` distils the last teacher_logits stage.
- `prune`: `edgeasc prune` of `input` (default: the last model) with `recipe`/`set`, KD with `kd = true`.
- `finetune`: device-specific fine-tuning into a bundle (`edgeasc finetune`), `devices`, `recipe`, `kd`,
  `select` and `holdout` (keep a device model only when it wins on held-out training clips).
- `export`: ONNX + int8 TFLite of the last model or bundle (`edgeasc export`), `calib_clips`, `eval_clips`.
- `evaluate`: float and int8 accuracy per device of the last model and the last export (test split).
- `audit`: `edgeasc audit` of every exported int8 file against `budget` (default dcase2025); over budget
  fails the pipeline (exit 1) and the stage stays unfinished.
- `bench`: `edgeasc bench` of the exported general int8 model (latency, TFLite Micro arena).
- `submission`: `edgeasc submission` of the last model or bundle as a DCASE 2025 package (`label`).

Relative recipe paths resolve against the pipeline recipe's folder. The run ends with `summary.json` and
one table (`format_summary`): accuracy per device in float and int8, parameters, MACs, parameter bytes,
arena bytes, latency and the wall time of every stage.

This is the one module that chains stages: one runner per stage kind, the driver, and the two commands
that chain two stages (`prune_and_export`, `export_bundle`); that is why it is over 700 lines.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeasc.artifacts import write_json_atomic
from edgeasc.config import CALIB_CLIPS
from edgeasc.errors import ConfigError, DomainError

log = logging.getLogger(__name__)

STAGE_FILE = "stage.json"
SUMMARY_FILE = "summary.json"
COMMON_KEYS = {"name", "kind"}
STAGE_KEYS: dict[str, set[str]] = {
    "teachers": {"members"},
    "teacher_logits": {"split", "batch_size"},
    "train": {"recipe", "set", "init", "kd"},
    "prune": {"recipe", "set", "input", "kd"},
    "finetune": {"recipe", "set", "input", "kd", "devices", "select", "holdout"},
    "export": {"input", "int8", "calib_clips", "eval_clips"},
    "evaluate": {"split"},
    "audit": {"budget"},
    "bench": {"runs", "warmup", "n_inputs"},
    "submission": {"label", "input"},
}
MEMBER_KEYS = {"name", "recipe", "set", "checkpoint"}
MODEL_KINDS = ("train", "prune", "finetune")


@dataclass(frozen=True)
class Stage:
    """One `[[stage]]` table of a pipeline recipe."""

    name: str
    kind: str
    table: dict[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        return self.table.get(key, default)


@dataclass(frozen=True)
class Pipeline:
    """A parsed pipeline recipe."""

    path: Path
    seed: int
    stages: tuple[Stage, ...]

    def resolve(self, recipe: str) -> Path:
        """A recipe path as given (absolute, or relative to the pipeline recipe's folder)."""
        p = Path(recipe)
        return p if p.is_absolute() else self.path.parent / p


def _suggest(word: str, options: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def load_pipeline(path: str | os.PathLike, seed: int | None = None) -> Pipeline:
    """Read and validate a pipeline recipe (unknown kinds and keys are errors, with a suggestion).

    Raises:
        ConfigError: missing file, invalid TOML, unknown stage kind or key, duplicate or missing names, a
            reference to a stage that does not come earlier.
    """
    from edgeasc.config import load_recipe

    path = Path(path)
    data = load_recipe(path)
    unknown = set(data) - {"pipeline", "stage"}
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {sorted(unknown)} (a pipeline has [pipeline] and [[stage]])")
    head = data.get("pipeline", {}) or {}
    extra = set(head) - {"seed", "description"}
    if extra:
        raise ConfigError(f"{path}: unknown [pipeline] key(s) {sorted(extra)} (known: seed, description)")
    tables = data.get("stage") or []
    if not tables:
        raise ConfigError(f"{path}: no [[stage]] tables")
    stages: list[Stage] = []
    names: set[str] = set()
    for i, t in enumerate(tables):
        kind, name = t.get("kind"), t.get("name")
        if kind not in STAGE_KEYS:
            raise ConfigError(f"{path}: stage {i + 1} has kind {kind!r}{_suggest(str(kind), list(STAGE_KEYS))} "
                              f"(known: {', '.join(STAGE_KEYS)})")
        if not name or not str(name).replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"{path}: stage {i + 1} needs a name of letters, digits, '_' or '-'")
        if name in names:
            raise ConfigError(f"{path}: stage name {name!r} is used twice")
        for key in set(t) - COMMON_KEYS - STAGE_KEYS[kind]:
            raise ConfigError(f"{path}: stage {name!r} ({kind}) has unknown key {key!r}"
                              f"{_suggest(key, sorted(STAGE_KEYS[kind]))}")
        for ref_key in ("init", "input"):
            ref = t.get(ref_key)
            if ref is not None and str(ref).split(".")[0] not in names:
                raise ConfigError(f"{path}: stage {name!r}: {ref_key} = {ref!r} is not an earlier stage")
        if kind == "teachers":
            members = t.get("members") or []
            if not members:
                raise ConfigError(f"{path}: stage {name!r} lists no members")
            for m in members:
                if (not isinstance(m, dict) or "name" not in m or set(m) - MEMBER_KEYS
                        or ("recipe" in m) == ("checkpoint" in m)):
                    raise ConfigError(f"{path}: stage {name!r}: each member is {{name, recipe, set}} (trained here) "
                                      f"or {{name, checkpoint}} (a trained model), got {m!r}")
        for r in [t.get("recipe")] + [m.get("recipe") for m in t.get("members", [])]:
            if r is not None and not (Path(r) if Path(r).is_absolute() else path.parent / r).is_file():
                raise ConfigError(f"{path}: stage {name!r}: recipe {r!r} not found next to the pipeline recipe")
        names.add(name)
        stages.append(Stage(name=str(name), kind=str(kind), table=dict(t)))
    return Pipeline(path=path, seed=int(seed if seed is not None else head.get("seed", 0)), stages=tuple(stages))


# --------------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------------
@dataclass
class RunState:
    """What earlier stages produced: their outputs, the current model and the teacher logits."""

    data_dir: Path
    out_dir: Path
    outputs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    model: Path | None = None            # last checkpoint or bundle
    model_stage: str | None = None
    teacher_logits: Path | None = None
    export: dict[str, Any] | None = None  # outputs of the last export stage
    cache_dir: Path | None = None

    def model_ref(self, ref: str | None) -> Path:
        """`stage` (its model) or `stage.member` (a teacher member); default the current model."""
        if ref is None:
            if self.model is None:
                raise ConfigError("this stage needs a model, but no earlier stage produced one")
            return self.model
        stage, _, member = str(ref).partition(".")
        out = self.outputs[stage]
        if member:
            members = out.get("members", {})
            if member not in members:
                raise ConfigError(f"stage {stage!r} has no member {member!r} (it has {sorted(members)})")
            return Path(members[member])
        if "model" not in out:
            raise ConfigError(f"stage {stage!r} produced no model")
        return Path(out["model"])


def _recipe_hashes(pipe: Pipeline, stage: Stage) -> dict[str, str]:
    """sha256 of every recipe file a stage reads: an edited recipe makes a finished stage stale."""
    import hashlib

    names = [stage.get("recipe")] + [m.get("recipe") for m in stage.get("members", [])]
    return {n: hashlib.sha256(pipe.resolve(n).read_bytes()).hexdigest()[:16] for n in names if n}


def _stage_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _relocate(obj: Any, fn: Callable[[str], str]) -> Any:
    """Apply `fn` to every path (string) in a stage's outputs."""
    if isinstance(obj, Mapping):
        return {k: _relocate(v, fn) for k, v in obj.items()}
    return fn(obj) if isinstance(obj, str) else obj


def _outputs_exist(outputs: Mapping[str, Any]) -> bool:
    for value in outputs.values():
        if isinstance(value, Mapping):
            if not _outputs_exist(value):
                return False
        elif isinstance(value, str) and value.endswith((".pt", ".npz", ".tflite", ".onnx", ".json")):
            if not Path(value).is_file():
                return False
    return True


# --------------------------------------------------------------------------------------------------
# Stage runners: each returns (outputs, metrics)
# --------------------------------------------------------------------------------------------------
def _train_config(pipe: Pipeline, recipe: str, overrides: Sequence[str], init: Path | None = None) -> Any:
    from edgeasc.config import resolve_train_config

    cfg = resolve_train_config(pipe.resolve(recipe), (f"seed={pipe.seed}", *overrides))
    if init is not None:  # start from `init`, architecture included (pruned widths)
        from edgeasc.checkpoint import read_checkpoint

        mc = read_checkpoint(init)["model_config"]
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(
            cfg.model, name=mc["name"], kwargs=dict(mc.get("kwargs") or {}), init_checkpoint=str(init)))
    return cfg


def _kd_overrides(stage: Stage, st: RunState) -> tuple[str, ...]:
    if not stage.get("kd", False):
        return ()
    if st.teacher_logits is None:
        raise ConfigError(f"stage {stage.name!r} has kd = true but no teacher_logits stage comes before it")
    return (f"kd.teacher_logits={str(st.teacher_logits)!r}",)


def _test_report(model_path: Path, st: RunState, out_dir: Path,
                 final: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Test-fold accuracy of a model: the report its training run already made when it validated on the
    test fold (`final`, its metrics.json), else a fresh evaluation."""
    from edgeasc.evaluate import evaluate_checkpoint

    if final and final.get("split") == "test" and "macro_accuracy" in final:
        return _accuracy(final)
    rep = evaluate_checkpoint(model_path, st.data_dir, "test", out_dir=out_dir, cache_dir=st.cache_dir)
    return _accuracy(rep)


def _accuracy(rep: Mapping[str, Any]) -> dict[str, Any]:
    return {"macro": rep["macro_accuracy"],
            "per_device": {d: v["macro_accuracy"] for d, v in rep["per_device"].items()}}


def _run_teachers(stage: Stage, pipe: Pipeline, st: RunState, out: Path, progress: bool):
    import numpy as np

    from edgeasc.checkpoint import frontend_of, load_model
    from edgeasc.data.dataset import TAUDataset, load_waveforms
    from edgeasc.evaluate import predict_logits
    from edgeasc.metrics import classification_report
    from edgeasc.train.loop import train

    members, metrics = {}, {}
    clips = TAUDataset(st.data_dir).clips("test")
    all_logits = []
    for m in stage.get("members"):
        if "checkpoint" in m:  # a model trained elsewhere (or a PaSST fine-tuned on a GPU)
            model_path = Path(m["checkpoint"]).resolve()
        else:
            cfg = _train_config(pipe, m["recipe"], tuple(m.get("set", ())))
            model_path = train(cfg, st.data_dir, out / m["name"], resume=True, progress=progress).model_path
        members[m["name"]] = str(model_path)
        model, ckpt = load_model(model_path)
        fe = frontend_of(ckpt)
        waves = load_waveforms(st.data_dir, clips, fe.sample_rate_hz, fe.clip_samples, st.cache_dir)
        logits = predict_logits(model, waves, fe)
        all_logits.append(logits)
        metrics[m["name"]] = _accuracy(classification_report([c.label for c in clips], logits.argmax(1),
                                                             [c.device for c in clips]))
    ens = np.mean(all_logits, axis=0)
    metrics["ensemble"] = _accuracy(classification_report([c.label for c in clips], ens.argmax(1),
                                                          [c.device for c in clips]))
    return {"members": members}, metrics


def _run_teacher_logits(stage: Stage, pipe: Pipeline, st: RunState, out: Path, progress: bool):
    from edgeasc.train.teachers import compute_teacher_logits

    teachers = [s for s in st.outputs.values() if "members" in s]
    if not teachers:
        raise ConfigError(f"stage {stage.name!r}: no teachers stage comes before it")
    members = list(teachers[-1]["members"].values())
    path = compute_teacher_logits(members, st.data_dir, out / "teacher_logits.npz", split=stage.get("split", "split25"),
                                  batch_size=int(stage.get("batch_size", 64)), cache_dir=st.cache_dir,
                                  progress=progress, resume=True)
    return {"logits": str(path)}, {}


def _run_train(stage: Stage, pipe: Pipeline, st: RunState, out: Path, progress: bool):
    from edgeasc.train.loop import train

    init = st.model_ref(stage.get("init")) if stage.get("init") else None
    cfg = _train_config(pipe, stage.get("recipe"), (*stage.get("set", ()), *_kd_overrides(stage, st)), init)
    result = train(cfg, st.data_dir, out, resume=True, progress=progress)
    return {"model": str(result.model_path)}, {"float": _test_report(result.model_path, st, out, result.final_metrics)}


def _run_prune(stage: Stage, pipe: Pipeline, st: RunState, out: Path, progress: bool):
    from edgeasc.prune.config import resolve_prune_config

    train_cfg, prune_cfg = resolve_prune_config(
        pipe.resolve(stage.get("recipe")), (f"seed={pipe.seed}", *stage.get("set", ()), *_kd_overrides(stage, st)))
    result = prune_and_export(st.model_ref(stage.get("input")), st.data_dir, out, train_cfg, prune_cfg,
                              resume=True, progress=progress)
    return {"model": str(result.model_path)}, {"float": _test_report(result.model_path, st, out, result.final_metrics)}


def _run_finetune(stage: Stage, pipe: Pipeline, st: RunState, out: Path, progress: bool):
    from edgeasc.devices.finetune import evaluate_bundle, finetune

    devices = stage.get("devices")
    result = finetune(st.model_ref(stage.get("input")), st.data_dir, out,
                      recipe=pipe.resolve(stage.get("recipe")) if stage.get("recipe") else None,
                      overrides=(f"seed={pipe.seed}", *stage.get("set", ()), *_kd_overrides(stage, st)),
                      devices=list(devices) if devices else None, resume=True, progress=progress,
                      select=bool(stage.get("select", False)), holdout=float(stage.get("holdout", 0.2)))
    rep = result.report  # finetune() already evaluated the bundle on the recipe's validation split
    if rep["split"] != "test":
        rep = evaluate_bundle(result.bundle_path, st.data_dir, "test", out_dir=out, cache_dir=st.cache_dir)
    metrics = {name: {"macro": rep["macro"][key], "per_device": {d: v[key] for d, v in rep["per_device"].items()}}
               for name, key in (("general", "general"), ("device_specific", "bundle"))}
    return {"model": str(result.bundle_path)}, metrics


def _run_export(stage: Stage, pipe: Pipeline, st: RunState, out: Path, progress: bool):
    from edgeasc.devices.bundle import is_bundle

    model = st.model_ref(stage.get("input"))
    int8 = bool(stage.get("int8", True))
    kwargs = dict(int8=int8, calib_clips=int(stage.get("calib_clips", CALIB_CLIPS)), eval_clips=stage.get("eval_clips"),
                  seed=pipe.seed, cache_dir=st.cache_dir, progress=progress)
    key = "tflite_int8" if int8 else "tflite_float32"
    if is_bundle(model):
        manifest = export_bundle(model, st.data_dir, out, **kwargs)
        members = {m: str(out / info["tflite"]) if not Path(info["tflite"]).is_absolute() else info["tflite"]
                   for m, info in manifest["members"].items()}
        routes = {d: str(out / f) if not Path(f).is_absolute() else f for d, f in manifest["devices"].items()}
        return {"members": members, "devices": routes, "manifest": str(out / "manifest.json")}, {}
    from edgeasc.deploy.export import export_checkpoint

    result = export_checkpoint(model, st.data_dir, out, **kwargs)
    return {"members": {"general": str(result.artifacts[key])}, "devices": {}}, {"parity": result.report}


def _run_evaluate(stage: Stage, pipe: Pipeline, st: RunState, out: Path, progress: bool):
    """Float and int8 accuracy per device of the current model / last export, each clip routed by device."""
    import numpy as np

    from edgeasc.data.dataset import load_waveforms
    from edgeasc.deploy.runtime import TFLiteModel, feature_batches
    from edgeasc.devices.bundle import is_bundle
    from edgeasc.evaluate import evaluation_clips
    from edgeasc.metrics import classification_report

    split = stage.get("split", "test")
    model = st.model_ref(None)
    if is_bundle(model):
        from edgeasc.devices.bundle import read_bundle, routed_logits

        bundle = read_bundle(model)
        fe = bundle.frontend()
        route = bundle.member_for
    else:
        from edgeasc.checkpoint import frontend_of, read_checkpoint

        bundle = None
        fe = frontend_of(read_checkpoint(model))
        route = lambda d: "general"  # noqa: E731
    clips = evaluation_clips(st.data_dir, split)
    waves = load_waveforms(st.data_dir, clips, fe.sample_rate_hz, fe.clip_samples, st.cache_dir, progress)
    labels, devices = [c.label for c in clips], [c.device for c in clips]
    if bundle is not None:
        float_logits, _ = routed_logits(bundle, waves, devices)
    else:
        from edgeasc.checkpoint import load_model
        from edgeasc.evaluate import predict_logits

        float_logits = predict_logits(load_model(model)[0], waves, fe)
    metrics: dict[str, Any] = {"float": _accuracy(classification_report(labels, float_logits.argmax(1), devices))}
    if st.export is not None:
        members = st.export["members"]
        used = [route(d) for d in devices]
        int8_logits = np.zeros_like(float_logits)
        feats = np.concatenate([x for _, x in feature_batches(waves, fe)])
        for member in dict.fromkeys(used):
            idx = np.array([i for i, m in enumerate(used) if m == member])
            path = members.get(member, members["general"])
            int8_logits[idx] = TFLiteModel(path).predict(feats[idx], workers=max(1, min(4, os.cpu_count() or 1)))
        metrics["int8"] = _accuracy(classification_report(labels, int8_logits.argmax(1), devices))
        metrics["int8_agreement"] = float(np.mean(int8_logits.argmax(1) == float_logits.argmax(1)))
    return {}, metrics


def _run_audit(stage: Stage, pipe: Pipeline, st: RunState, out: Path, progress: bool):
    from edgeasc.audit.report import audit_model

    if st.export is None:
        raise ConfigError(f"stage {stage.name!r}: no export stage comes before it")
    reports = {m: audit_model(p, budget=stage.get("budget", "dcase2025")) for m, p in st.export["members"].items()}
    write_json_atomic(out / "audit.json", {m: r.to_dict(layers=False) for m, r in reports.items()})
    over = [f"{m}: {'; '.join(r.violations)}" for m, r in reports.items() if r.within_budget is False]
    if over:
        raise DomainError(f"over budget ({out / 'audit.json'}): " + " | ".join(over))
    metrics = {m: {"param_count": r.param_count, "param_bytes": r.param_bytes, "macs": r.macs,
                   "macs_dcase": r.macs_dcase, "peak_activation_bytes": r.peak_activation_bytes,
                   "within_budget": r.within_budget} for m, r in reports.items()}
    return {"audit": str(out / "audit.json")}, metrics


def _run_bench(stage: Stage, pipe: Pipeline, st: RunState, out: Path, progress: bool):
    from edgeasc.bench.harness import bench_model

    if st.export is None:
        raise ConfigError(f"stage {stage.name!r}: no export stage comes before it")
    report = bench_model(st.export["members"]["general"], runs=int(stage.get("runs", 50)),
                         warmup=int(stage.get("warmup", 5)), n_inputs=int(stage.get("n_inputs", 8)),
                         seed=pipe.seed, data_dir=st.data_dir)
    d = report.to_dict(machine=True)
    write_json_atomic(out / "bench.json", d)
    return {"bench": str(out / "bench.json")}, {
        "latency_p50_ms": {k: v["p50_ms"] for k, v in d["latency_ms"].items()},
        "arena_bytes": d["memory"]["tflm_arena_min_bytes"],
        "bit_exact": bool(d["numerics"]["bit_exact"]),
        "mcu_estimate": d.get("mcu_estimate", {}),
    }


def _run_submission(stage: Stage, pipe: Pipeline, st: RunState, out: Path, progress: bool):
    from edgeasc.submission.package import describe_submission, write_submission

    label = stage.get("label")
    if not label:
        raise ConfigError(f"stage {stage.name!r} needs label = 'Surname_Institute_task1_N'")
    package = write_submission(st.model_ref(stage.get("input")), out, label, overwrite=True)
    summary = describe_submission(out, label)
    summary.check()  # over budget: DomainError, the stage stays unfinished
    return {"package": str(package), "complexity": str(out / "predictions" / label / "complexity.json")}, {}


RUNNERS: dict[str, Callable[..., tuple[dict[str, Any], dict[str, Any]]]] = {
    "teachers": _run_teachers, "teacher_logits": _run_teacher_logits, "train": _run_train, "prune": _run_prune,
    "finetune": _run_finetune, "export": _run_export, "evaluate": _run_evaluate, "audit": _run_audit,
    "bench": _run_bench, "submission": _run_submission,
}


def _absorb(st: RunState, stage: Stage, outputs: dict[str, Any]) -> None:
    st.outputs[stage.name] = outputs
    if stage.kind in MODEL_KINDS:
        st.model, st.model_stage = Path(outputs["model"]), stage.name
    elif stage.kind == "teacher_logits":
        st.teacher_logits = Path(outputs["logits"])
    elif stage.kind == "export":
        st.export = outputs


# --------------------------------------------------------------------------------------------------
# Commands that chain stages (the CLI's `prune` and bundle `export`)
# --------------------------------------------------------------------------------------------------
def prune_and_export(
    checkpoint: str | os.PathLike,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    train_cfg: Any,
    cfg: Any,
    resume: bool = False,
    progress: bool = True,
) -> Any:
    """`edgeasc prune`: `edgeasc.prune.stage.prune_checkpoint`, and with `cfg.export_int8` the int8 export of
    the final model into `out_dir/export/` and the audit of that file against the prune budget.

    Returns:
        The `PruneResult`; prune.json's `final.tflite_audit` holds the audit of the int8 file.

    Raises:
        DomainError: the final model, or its int8 file, misses the budget (prune.json is written first).
    """
    from edgeasc.prune.config import resolve_prune_budget
    from edgeasc.prune.stage import prune_checkpoint

    def deploy_check(model_path: Path, export_dir: Path) -> dict[str, Any]:
        from edgeasc.audit.tflite import audit_tflite
        from edgeasc.deploy.export import export_checkpoint

        budget_name, budget = resolve_prune_budget(cfg)
        result = export_checkpoint(model_path, data_dir, export_dir, int8=True, calib_clips=cfg.export_calib_clips,
                                   eval_clips=cfg.export_eval_clips, cache_dir=train_cfg.data.cache_dir,
                                   progress=progress)
        tfl = result.artifacts["tflite_int8"]
        rep = dataclasses.replace(audit_tflite(tfl), budget_name=budget_name, budget=budget)
        return {"path": str(tfl), "param_bytes": rep.param_bytes, "macs_dcase": rep.macs_dcase, "macs": rep.macs,
                "within_budget": rep.within_budget, "violations": rep.violations}

    return prune_checkpoint(checkpoint, data_dir, out_dir, train_cfg, cfg, resume=resume, progress=progress,
                            deploy_check=deploy_check if cfg.export_int8 else None)


def export_bundle(
    bundle_path: str | os.PathLike,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None,
    int8: bool = True,
    calib_clips: int = CALIB_CLIPS,
    eval_clips: int | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    budget: str | None = "dcase2025",
    calib_split: str | None = None,
    eval_split: str = "test",
) -> dict[str, Any]:
    """Export every member of a bundle (int8 TFLite, or float32 without `int8`), audit each, write a manifest.

    Each member becomes `out_dir/<member>/model.pt` (a plain edgeasc checkpoint), is exported with
    `edgeasc.deploy.manifest.export_members` into the same folder (parity on `eval_split`, `eval_clips` of it;
    the conversions run in parallel), and its .tflite is audited against `budget`. A member whose export
    finished with the same weights and options is not exported again. `out_dir/manifest.json` maps device ids
    to files (paths relative to the manifest): {"general": {"tflite"}, "devices": {dev: path},
    "unknown_devices": "general", "members": {member: {"tflite", "param_bytes", "macs", "within_budget",
    "int8_agreement", "int8_accuracy", ...}}}.

    Args:
        out_dir: output folder (default: `export/` beside the bundle).
        budget: named budget each member must meet (edgeasc.audit.BUDGETS), or "none".

    Raises:
        DomainError: a member is over budget (after the manifest is written).
        CheckpointError, DataError, ConfigError: bad input; ExportError: a conversion failed.
    """
    from edgeasc.audit.report import audit_model
    from edgeasc.budget import resolve_budget
    from edgeasc.deploy.manifest import export_members, write_manifest
    from edgeasc.devices.bundle import GENERAL, read_bundle

    bundle_path = Path(bundle_path)
    bundle = read_bundle(bundle_path)
    resolve_budget(budget)  # an unknown budget name fails before any conversion
    out = Path(out_dir) if out_dir is not None else bundle_path.parent / "export"
    key = "tflite_int8" if int8 else "tflite_float32"
    done = export_members(bundle, data_dir, out, int8=int8, calib_clips=calib_clips,
                                  eval_clips=eval_clips, seed=seed, cache_dir=cache_dir, progress=progress,
                                  calib_split=calib_split, eval_split=eval_split)
    members = bundle.members()
    entries: dict[str, dict[str, Any]] = {}
    for member in members:
        tflite, parity = out / member / done[member]["tflite"], done[member]["parity"]
        audit = audit_model(tflite, budget=budget)
        entries[member] = {
            "tflite": f"{member}/{tflite.name}",
            "answers": [member] if member != GENERAL else "every device without its own model",
            "param_bytes": audit.param_bytes,
            "macs": audit.budget_macs(),
            "macs_rule": audit.budget.mac_rule if audit.budget else "dcase",
            "macs_deployed": audit.macs,
            "peak_activation_bytes": audit.peak_activation_bytes,
            "within_budget": audit.within_budget,
            "violations": audit.violations,
            **parity,
        }
    manifest = write_manifest(out, bundle_path, bundle, key, budget, entries)
    path = manifest["path"]
    over = [m for m, e in entries.items() if e["within_budget"] is False]
    if over:
        raise DomainError(f"bundle member(s) {', '.join(over)} over budget {budget}: "
                          + "; ".join(f"{m}: {', '.join(entries[m]['violations'])}" for m in over)
                          + f" (manifest: {path})")
    return manifest


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------
@dataclass
class PipelineResult:
    out_dir: Path
    summary: dict[str, Any]


def run_pipeline(recipe: str | os.PathLike, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                 seed: int | None = None, cache_dir: str | os.PathLike | None = None,
                 progress: bool = True) -> PipelineResult:
    """Run (or resume) a pipeline; see the module docstring.

    Args:
        seed: replaces the recipe's `[pipeline] seed`.
        cache_dir: waveform cache (default: inside the dataset folder).

    Raises:
        ConfigError: invalid recipe, or a finished stage whose recipe table has changed since it ran.
        DomainError: the audit stage found a model over budget (summary.json is written first).
        DataError: another pipeline is running in `out_dir` (a lock file guards the folder).
    """
    from edgeasc.artifacts import exclusive_run

    pipe = load_pipeline(recipe, seed)
    out = Path(out_dir)
    with exclusive_run(out, "edgeasc pipeline"):
        return _run_stages(pipe, out, data_dir, cache_dir, progress)


def _run_stages(pipe: Pipeline, out: Path, data_dir: str | os.PathLike, cache_dir: str | os.PathLike | None,
                progress: bool) -> PipelineResult:
    st = RunState(data_dir=Path(data_dir), out_dir=out, cache_dir=Path(cache_dir) if cache_dir else None)
    records: dict[str, dict[str, Any]] = {}
    failure: DomainError | None = None
    for stage in pipe.stages:
        sdir = out / stage.name
        rec_path = sdir / STAGE_FILE
        rec = _stage_record(rec_path)
        fingerprint = {"kind": stage.kind, "table": stage.table, "seed": pipe.seed,
                       "recipes": _recipe_hashes(pipe, stage),
                       # the runs of the earlier stages it builds on: one that ran again makes this one stale
                       "after": {name: r.get("run") or r.get("completed") for name, r in records.items()}}
        if rec is not None:
            saved = rec.get("fingerprint") or {}
            current = json.loads(json.dumps(fingerprint))
            if "after" not in saved:  # written before edgeasc recorded the earlier stages' runs
                current.pop("after")
            if {k: v for k, v in saved.items() if k != "after"} != {k: v for k, v in current.items() if k != "after"}:
                raise ConfigError(f"{rec_path} was written with a different recipe for stage {stage.name!r} (its "
                                  f"table or a recipe file it reads changed); choose another --out or delete {sdir}")
            if saved != current:
                changed = [n for n in current["after"] if saved["after"].get(n) != current["after"][n]]
                raise ConfigError(f"stage {stage.name!r} in {sdir} was built on an earlier run of stage(s) "
                                  f"{', '.join(changed) or 'before it'}, which ran again since; delete {sdir} (and the "
                                  f"stages after it) to rebuild it")
            outputs = _relocate(rec.get("outputs", {}), lambda p: str(out / p))
            if _outputs_exist(outputs):
                log.info("[%s] complete (%.0f s when it ran); skipped", stage.name, rec.get("seconds", 0.0))
                _absorb(st, stage, outputs)
                records[stage.name] = rec
                continue
        log.info("[%s] %s ...", stage.name, stage.kind)
        t0 = time.perf_counter()
        sdir.mkdir(parents=True, exist_ok=True)
        try:
            outputs, metrics = RUNNERS[stage.kind](stage, pipe, st, sdir, progress)
        except DomainError as exc:
            failure = exc
            break
        # paths relative to OUT: the run folder can move
        rel = _relocate(outputs, lambda p: os.path.relpath(p, out))
        rec = {"stage": stage.name, "kind": stage.kind, "fingerprint": fingerprint, "outputs": rel,
               "metrics": metrics, "seconds": time.perf_counter() - t0,
               "completed": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "run": uuid.uuid4().hex}
        write_json_atomic(rec_path, rec)
        log.info("[%s] done in %.0f s", stage.name, rec["seconds"])
        _absorb(st, stage, outputs)
        records[stage.name] = rec
    summary = summarise(pipe, records)
    write_json_atomic(out / SUMMARY_FILE, summary)
    if failure is not None:
        raise failure
    return PipelineResult(out_dir=out, summary=summary)


def summarise(pipe: Pipeline, records: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """summary.json: accuracy rows, complexity of the shipped model, stage times."""
    rows: list[dict[str, Any]] = []
    complexity: dict[str, Any] = {}
    for stage in pipe.stages:
        rec = records.get(stage.name)
        if rec is None:
            continue
        m = rec.get("metrics", {})
        if stage.kind == "teachers":
            for name, acc in m.items():
                rows.append({"model": f"{stage.name}/{name}", "precision": "float", **acc})
        elif stage.kind in ("train", "prune") and "float" in m:
            rows.append({"model": stage.name, "precision": "float", **m["float"]})
        elif stage.kind == "finetune" and "device_specific" in m:
            rows.append({"model": f"{stage.name} (general)", "precision": "float", **m["general"]})
            rows.append({"model": f"{stage.name} (per device)", "precision": "float", **m["device_specific"]})
        elif stage.kind == "evaluate":
            for prec in ("float", "int8"):
                if prec in m:
                    rows.append({"model": f"{stage.name}", "precision": prec, **m[prec]})
            if "int8_agreement" in m:
                complexity["int8_agreement"] = m["int8_agreement"]
        elif stage.kind == "audit":
            complexity["audit"] = m
        elif stage.kind == "bench":
            complexity["bench"] = m
    return {"recipe": str(pipe.path), "seed": pipe.seed, "rows": rows, "complexity": complexity,
            "stage_seconds": {n: r.get("seconds", 0.0) for n, r in records.items()},
            "complete": len(records) == len(pipe.stages)}


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary as text: one accuracy table and one complexity block."""
    from edgeasc.labels import DEVICES

    rows = summary.get("rows", [])
    lines = ["accuracy on the test split (macro %, per device)"]
    head = f"{'model':34s} {'prec':5s} {'macro':>6s} " + " ".join(f"{d:>6s}" for d in DEVICES)
    lines.append(head)
    for r in rows:
        per = r.get("per_device", {})
        cells = " ".join(f"{100 * per[d]:6.2f}" if d in per else f"{'-':>6s}" for d in DEVICES)
        lines.append(f"{r['model'][:34]:34s} {r['precision']:5s} {100 * r['macro']:6.2f} {cells}")
    cx = summary.get("complexity", {})
    audit = cx.get("audit", {})
    if audit:
        lines.append("")
        lines.append(f"{'int8 model':12s} {'params':>8s} {'param B':>8s} {'MACs (DCASE)':>13s} {'MACs (deployed)':>16s}"
                     f" {'peak act B':>11s}  budget")
        for m, a in audit.items():
            lines.append(f"{m:12s} {a['param_count']:8,d} {a['param_bytes']:8,d} {a['macs_dcase']:13,d} "
                         f"{a['macs']:16,d} {a['peak_activation_bytes']:11,d}  "
                         f"{'within' if a['within_budget'] else 'OVER'}")
    if "int8_agreement" in cx:
        lines.append(f"int8 vs float top-1 agreement: {100 * cx['int8_agreement']:.2f}%")
    bench = cx.get("bench", {})
    if bench:
        lat = ", ".join(f"{k} {v:.1f} ms" for k, v in bench["latency_p50_ms"].items())
        lines.append(f"general int8 model: TFLite Micro arena {bench['arena_bytes']:,d} B; host latency p50 {lat}; "
                     f"LiteRT ref vs TFLite Micro {'bit-exact' if bench['bit_exact'] else 'DIFFERENT'}")
    secs = summary.get("stage_seconds", {})
    if secs:
        lines.append("")
        lines.append("stage wall time: " + ", ".join(f"{n} {s / 60:.1f} min" for n, s in secs.items())
                     + f"; total {sum(secs.values()) / 60:.1f} min")
    return "\n".join(lines)
