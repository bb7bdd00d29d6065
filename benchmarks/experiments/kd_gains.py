"""Measured gains of ensemble-teacher distillation on the synthetic benchmark (issue 4).

For each seed: train every teacher recipe, average the teachers' logits (the ensemble), train the student on
labels only and with KD from that seed's ensemble, all with the same epochs; then evaluate each on the
development test fold (macro and per-device accuracy). Prints one table (mean and spread over seeds per
row) and writes `benchmarks/experiments/results/kd_gains_<scale>.json` with every run's figures and the machine.

Every run lives in its own folder under --out and is skipped when complete, so a killed benchmark resumes
(`edgeasc train --resume` semantics). Usage (from the repository root, after `make setup`):

    .venv/bin/python benchmarks/experiments/kd_gains.py --scale small --seeds 0 1
    .venv/bin/python benchmarks/experiments/kd_gains.py --scale medium --seeds 0 1 --out runs/kd_medium
    # plus the KD student with other KD settings (one extra row each; finished runs are reused):
    .venv/bin/python benchmarks/experiments/kd_gains.py --scale small --seeds 0 1 --kd-variant kd.label_weight=0.5
    # the table of whatever has finished so far, training nothing (e.g. while the seeds run as two processes):
    .venv/bin/python benchmarks/experiments/kd_gains.py --scale medium --seeds 0 1 --out runs/kd_medium --report-only
    # every seed's KD student distils seed 0's ensemble (logits computed once), and the rows an earlier result
    # already measured are taken from it (teachers a KD student needs are trained again and must reproduce it):
    .venv/bin/python benchmarks/experiments/kd_gains.py --scale medium --seeds 0 1 --teacher-seed 0 \
        --recorded benchmarks/experiments/results/kd_gains_medium_part1.json

The checks the issue asks for are evaluated and printed (they do not change the exit code: the numbers are
the result, whatever they are): the ensemble beats its best member, and the KD student beats the
label-only student by more than the seed-to-seed spread.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # seeds.py beside this script

from seeds import (  # noqa: E402,E501
    cpu_models,
    distilled_same_ensemble,
    load_recorded_runs,
    provenance_lines,
    summarise_seeds,
)

from edgeasc.artifacts import write_json_atomic  # noqa: E402
from edgeasc.bench.machine import describe_machine  # noqa: E402
from edgeasc.labels import DEVICES  # noqa: E402

log = logging.getLogger("kd_gains")

TEACHERS = {
    # name: (recipe, --set overrides). Student-sized and twice-student-sized CNNs that train on this CPU.
    "cpmobile_b48": ("recipes/demo_teacher_cpmobile.toml", ()),
    "sscp_b48": ("recipes/demo_teacher_sscp.toml", ()),
}
STUDENT = "recipes/demo_student.toml"
KD_STUDENT = "recipes/demo_kd_student.toml"


def _train(recipe: str, out: Path, data: Path, seed: int, extra: tuple[str, ...]) -> Path:
    from edgeasc.config import resolve_train_config
    from edgeasc.train.loop import train

    overrides = (f"seed={seed}", *extra)
    cfg = resolve_train_config(ROOT / recipe, overrides)
    t0 = time.perf_counter()
    result = train(cfg, data, out, resume=True, progress=False)
    log.info("%s: %s in %.0f s", out.name, result.model_path, time.perf_counter() - t0)
    return result.model_path


def _test_logits(model_path: Path, data: Path) -> tuple[np.ndarray, list[Any]]:
    """Logits on the test fold, cached next to the model (keyed by the checkpoint's mtime)."""
    from edgeasc.checkpoint import frontend_of, load_model
    from edgeasc.data.dataset import TAUDataset, load_waveforms
    from edgeasc.evaluate import predict_logits

    ds = TAUDataset(data)
    clips = ds.clips("test")
    stamp = f"{model_path.stat().st_mtime_ns}-{len(clips)}"
    cached = model_path.parent / "test_logits.npz"
    if cached.is_file():
        z = np.load(cached)
        if str(z["stamp"]) == stamp:
            return z["logits"], clips
    model, ckpt = load_model(model_path)
    fe = frontend_of(ckpt)
    waves = load_waveforms(ds.root, clips, fe.sample_rate_hz, fe.clip_samples)
    logits = predict_logits(model, waves, fe)
    tmp = cached.with_suffix(".tmp.npz")
    np.savez(tmp, logits=logits, stamp=np.array(stamp))
    os.replace(tmp, cached)
    return logits, clips


def training_fit(logits_file: Path, data: Path, temperature: float) -> dict[str, float]:
    """How well the stored ensemble logits fit their own training clips (the KD targets): accuracy %, and the
    mean probability of the true class at T = 1 and at the KD temperature."""
    from edgeasc.data.dataset import TAUDataset
    from edgeasc.labels import SCENES
    from edgeasc.train.distill import TeacherLogits

    tl = TeacherLogits.load(logits_file)
    label = {c.clip_id: SCENES.index(c.scene) for c in TAUDataset(data).clips("split25")}
    keep = [i for i, c in enumerate(tl.clip_ids) if c in label]
    y = np.array([label[tl.clip_ids[i]] for i in keep])
    z = tl.logits[keep].astype(np.float64)

    def p_true(t: float) -> float:
        e = np.exp((z - z.max(1, keepdims=True)) / t)
        return float(np.mean((e / e.sum(1, keepdims=True))[np.arange(len(y)), y]))

    return {"clips": len(y), "accuracy": 100 * float(np.mean(z.argmax(1) == y)), "p_true_t1": p_true(1.0),
            f"p_true_t{temperature:g}": p_true(temperature)}


def _report(logits: np.ndarray, clips: list[Any]) -> dict[str, Any]:
    from edgeasc.metrics import classification_report

    r = classification_report([c.label for c in clips], logits.argmax(1), [c.device for c in clips])
    return {
        "macro": 100 * r["macro_accuracy"],
        "per_device": {d: 100 * v["macro_accuracy"] for d, v in r["per_device"].items()},
        "unseen": 100 * r["per_group"]["unseen"]["macro_accuracy"] if "unseen" in r.get("per_group", {}) else None,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from edgeasc.synth.generate import generate_dataset
    from edgeasc.train.teachers import compute_teacher_logits

    out = Path(args.out)
    data = Path(args.data) if args.data else out / "data"
    if not (data / "meta.csv").is_file():
        generate_dataset(data, scale=args.scale, seed=args.data_seed, progress=True)
    extra = tuple(args.set)

    def model(recipe: str, run_dir: Path, seed: int, overrides: tuple[str, ...]) -> Path | None:
        """Train (or resume) a run; a finished one's model as it is (no run lock: several benchmark processes
        share finished runs); with --report-only, the finished model or None."""
        path = run_dir / "model.pt"  # written only when the run completes
        if path.is_file():
            return path
        if args.report_only:
            log.info("%s: not finished (--report-only)", run_dir.name)
            return None
        return _train(recipe, run_dir, data, seed, overrides)

    recorded = _load_recorded(args) if args.recorded else {}
    cpu = describe_machine()["cpu_model"]
    kd_temperature = _kd_temperature(extra)
    fit: dict[int, dict[str, float]] = {}  # the ensembles on their own training clips, by seed
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    reused: list[str] = []  # row/seed figures taken from --recorded
    reproduced: list[dict[str, Any]] = []  # rows --recorded has and this run measured again

    def measure(row: str, seed: int, recipe: str, run_dir: Path, overrides: tuple[str, ...],
                force: bool = False) -> Path | None:
        """One row's figures for one seed: a finished run under --out is evaluated; else --recorded's figures
        are taken when it has them (unless the model is needed here, `force`); else the run is trained (or
        resumed) and evaluated. Returns the model when this run has it."""
        if not force and not (run_dir / "model.pt").is_file() and reuse(row, seed):
            return None
        path = model(recipe, run_dir, seed, overrides)
        if path:
            record(row, seed, _report(*_test_logits(path, data)))
        return path

    def reuse(row: str, seed: int) -> bool:
        """Take the row's figures for the seed from --recorded, if it has them."""
        if seed not in recorded.get(row, {}):
            return False
        runs.setdefault(row, {})[seed] = recorded[row][seed]
        reused.append(f"{row}/s{seed}")
        return True

    def record(row: str, seed: int, result: dict[str, Any]) -> None:
        runs.setdefault(row, {})[seed] = {**result, "cpu_model": cpu}
        rec = recorded.get(row, {}).get(seed)
        if rec is not None:
            reproduced.append({"row": row, "seed": seed, "recorded": rec["macro"], "measured": result["macro"],
                               "recorded_cpu_model": rec.get("cpu_model"), "cpu_model": cpu})

    def teachers(seed: int, force: bool) -> Path | None:
        """The seed's teacher and ensemble rows; with `force`, the ensemble's training logits (None until all
        its members have finished)."""
        members = [measure(f"teacher {name}", seed, recipe, out / f"teacher_{name}_s{seed}", (*overrides, *extra),
                           force)
                   for name, (recipe, overrides) in TEACHERS.items()]
        if not all(members):
            if not force:
                reuse("teacher ensemble", seed)
            return None
        # The ensemble on the test fold: the mean of its members' logits, as the stored training logits are.
        member_logits = [_test_logits(p, data) for p in members]
        mean = np.mean([m[0] for m in member_logits], 0)
        record("teacher ensemble", seed, _report(mean, member_logits[0][1]))
        logits_file = out / f"ensemble_s{seed}.npz"
        if not logits_file.is_file() and not args.report_only:
            compute_teacher_logits(members, data, logits_file, progress=False)
        if logits_file.is_file():
            fit[seed] = training_fit(logits_file, data, kd_temperature)
        return logits_file if logits_file.is_file() else None

    def teacher_seed(seed: int) -> int:
        return seed if args.teacher_seed is None else args.teacher_seed

    def kd_rows(seed: int) -> list[tuple[str, str, tuple[str, ...]]]:
        """(row, run folder, overrides) of the seed's KD students: the recipe's and each --kd-variant."""
        t = teacher_seed(seed)
        suffix = f"_s{seed}" if t == seed else f"_s{seed}_t{t}"  # KD from another seed's ensemble
        rows = [("student KD", f"student_kd{suffix}", ())]
        for variant in args.kd_variant:  # the KD student again with changed KD settings (an investigation)
            tag = "_".join(v.replace("kd.", "").replace("=", "") for v in variant.split(","))
            rows.append((f"student KD {tag}", f"student_kd_{tag}{suffix}", tuple(variant.split(","))))
        return rows

    # An ensemble is trained when a KD student that --recorded does not have distils it.
    needed = {teacher_seed(s) for s in args.seeds
              if any(seed_missing(recorded, row, s) for row, _, _ in kd_rows(s))}
    ensembles: dict[int, Path | None] = {}
    for seed in args.seeds:
        # The label-only student first: it is also the reference for the export experiments.
        measure("student labels only", seed, STUDENT, out / f"student_label_s{seed}", extra)
        ensembles[seed] = teachers(seed, force=seed in needed)
    for seed in args.seeds:
        logits_file = ensembles[teacher_seed(seed)]
        for row, run_dir, variant in kd_rows(seed):
            if logits_file is None and not seed_missing(recorded, row, seed):
                measure(row, seed, KD_STUDENT, out / run_dir, ())
            elif logits_file is not None:
                measure(row, seed, KD_STUDENT, out / run_dir,
                        (f"kd.teacher_logits={str(logits_file)!r}", *extra, *variant))
    result = summarise(runs, args, reused, reproduced)
    result["ensemble_training_fit"] = fit
    return result


def _kd_temperature(extra: tuple[str, ...]) -> float:
    from edgeasc.config import resolve_train_config

    return resolve_train_config(ROOT / KD_STUDENT, extra).kd.temperature


def seed_missing(recorded: dict[str, dict[int, Any]], row: str, seed: int) -> bool:
    return seed not in recorded.get(row, {})


def _load_recorded(args: argparse.Namespace) -> dict[str, dict[int, dict[str, Any]]]:
    """Per-seed figures of an earlier result of this experiment, by row and seed. A KD row's seed is kept only
    where it distilled the ensemble this run's would (--teacher-seed)."""
    def keep(prev: dict[str, Any], row: str, seed: int) -> bool:
        return not row.startswith("student KD") or distilled_same_ensemble(prev, args.teacher_seed, seed)

    expect = {"benchmark": "kd_gains", "scale": args.scale, "student_recipe": STUDENT, "kd_recipe": KD_STUDENT,
              "overrides": list(args.set)}
    return load_recorded_runs(args.recorded, expect, keep)


def summarise(runs: dict[str, dict[int, dict[str, Any]]], args: argparse.Namespace,
              reused: list[str] = (), reproduced: list[dict[str, Any]] = ()) -> dict[str, Any]:
    rows = {}
    for name, by_seed in runs.items():
        rows[name] = summarise_seeds(by_seed)
    teachers = [k for k in rows if k.startswith("teacher ") and k != "teacher ensemble"]
    checks = {}
    if "teacher ensemble" in rows and teachers:
        per_seed = [runs["teacher ensemble"][s]["macro"] > max(runs[t][s]["macro"] for t in teachers)
                    for s in runs["teacher ensemble"]]
        checks["ensemble_beats_best_member_every_seed"] = bool(all(per_seed))
    if "student KD" in rows and "student labels only" in rows:
        kd, lab = rows["student KD"], rows["student labels only"]
        gain = kd["macro_mean"] - lab["macro_mean"]
        # a spread needs two seeds, and the same seeds in both rows (--report-only can tabulate unfinished seeds)
        comparable = kd["seeds"] == lab["seeds"] and len(kd["seeds"]) >= 2
        spread = max(kd["macro_spread"], lab["macro_spread"]) if comparable else None
        checks["kd_gain_pp"] = gain
        checks["seed_spread_pp"] = spread
        checks["kd_gain_exceeds_spread"] = bool(gain > spread) if comparable else None
    # the same seed, recipe, data and CPU model give the same model, so the same figure again; another CPU model
    # trains another model, so rows recorded elsewhere are compared (`reproduced`) but not checked
    same_cpu = [r for r in reproduced if r["recorded_cpu_model"] == r["cpu_model"]]
    if reproduced:
        checks["recorded_rows_reproduced"] = (all(abs(r["recorded"] - r["measured"]) < 1e-9 for r in same_cpu)
                                              if same_cpu else None)
    return {"benchmark": "kd_gains", "scale": args.scale, "seeds": args.seeds, "teachers": TEACHERS,
            "student_recipe": STUDENT, "kd_recipe": KD_STUDENT, "overrides": list(args.set),
            "teacher_seed": args.teacher_seed, "recorded_from": args.recorded, "recorded_rows": list(reused),
            "reproduced": list(reproduced), "cpu_models": cpu_models(runs),
            "rows": rows, "checks": checks, "machine": describe_machine()}


def format_table(result: dict[str, Any]) -> str:
    devs = [d for d in DEVICES if all(d in r["per_device_mean"] for r in result["rows"].values())]
    head = f"{'model':<28}{'seeds':>6}{'macro':>7}{'spread':>8}" + "".join(f"{d:>7}" for d in devs)
    lines = [f"synthetic {result['scale']}, seeds {result['seeds']}: macro accuracy % on the test fold "
             "(mean over seeds; spread = max - min)", head]
    for name, r in result["rows"].items():
        lines.append(f"{name:<28}{len(r['seeds']):>6}{r['macro_mean']:>7.2f}{r['macro_spread']:>8.2f}"
                     + "".join(f"{r['per_device_mean'][d]:>7.2f}" for d in devs))
    for k, v in result["checks"].items():
        lines.append(f"{k}: {v:.2f}" if isinstance(v, float) else f"{k}: {v}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", default="medium", choices=["tiny", "small", "medium"])
    p.add_argument("--data", help="An existing dataset (default: synthesise --scale into OUT/data).")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--out", help="Run folder (default runs/kd_gains_<scale>).")
    p.add_argument("--kd-variant", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                   help="Also train the KD student with these overrides (e.g. kd.label_weight=0.5), one extra row "
                        "per variant.")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="Override applied to every run (e.g. optim.epochs=2 for a smoke test).")
    p.add_argument("--results", help="Result JSON (default benchmarks/experiments/results/kd_gains_<scale>.json).")
    p.add_argument("--teacher-seed", type=int,
                   help="KD students of every seed distil this seed's ensemble (teacher logits computed once, as "
                        "in the seed's system); default: each seed its own ensemble.")
    p.add_argument("--recorded", metavar="RESULT_JSON", nargs="+",
                   help="Take the per-seed figures of rows and seeds these earlier results of the same experiment "
                        "hold, where no finished run under --out has them, instead of training them (listed as "
                        "recorded_rows in the new result); teachers a KD student needs are trained again. Rows "
                        "measured again are compared with their recorded figures (`reproduced`).")
    p.add_argument("--report-only", action="store_true",
                   help="Train nothing: tabulate the runs under --out that have finished (rows list their seeds).")
    args = p.parse_args(argv)
    if args.teacher_seed is not None and args.teacher_seed not in args.seeds:
        p.error("--teacher-seed must be one of --seeds")
    args.out = args.out or f"runs/kd_gains_{args.scale}"
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = run(args)
    path = Path(args.results or ROOT / "benchmarks" / "experiments" / "results" / f"kd_gains_{args.scale}.json")
    write_json_atomic(path, result)
    print(format_table(result))
    for seed, f in result["ensemble_training_fit"].items():
        p_true = ", ".join(f"{v:.2f} at T = {k[8:]}" for k, v in f.items() if k.startswith("p_true_t"))
        print(f"ensemble seed {seed} on its {f['clips']} training clips: accuracy {f['accuracy']:.2f}%, mean "
              f"probability of the true class {p_true}")
    for line in provenance_lines(result):
        print(line)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
