"""Measured gains of ensemble-teacher distillation on the synthetic benchmark (issue 4).

For each seed: train every teacher recipe, average the teachers' logits (the ensemble), train the student on
labels only and with KD from that seed's ensemble, all with the same epochs; then evaluate each on the
development test fold (macro and per-device accuracy). Prints one table (mean and spread over seeds per
row) and writes `benchmarks/results/kd_gains_<scale>.json` with every run's figures and the machine.

Every run lives in its own folder under --out and is skipped when complete, so a killed benchmark resumes
(`edgeasc train --resume` semantics). Usage (from the repository root, after `make setup`):

    .venv/bin/python benchmarks/kd_gains.py --scale small --seeds 0 1
    .venv/bin/python benchmarks/kd_gains.py --scale medium --seeds 0 1 --out runs/kd_medium
    # plus the KD student with other KD settings (one extra row each; finished runs are reused):
    .venv/bin/python benchmarks/kd_gains.py --scale small --seeds 0 1 --kd-variant kd.label_weight=0.5
    # the table of whatever has finished so far, training nothing (e.g. while the seeds run as two processes):
    .venv/bin/python benchmarks/kd_gains.py --scale medium --seeds 0 1 --out runs/kd_medium --report-only

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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeasc.artifacts import write_json_atomic  # noqa: E402
from edgeasc.bench import describe_machine  # noqa: E402
from edgeasc.labels import DEVICES  # noqa: E402
from edgeasc.metrics import summarise_seeds  # noqa: E402

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
    from edgeasc.train import train

    overrides = (f"seed={seed}", *extra)
    cfg = resolve_train_config(ROOT / recipe, overrides)
    t0 = time.perf_counter()
    result = train(cfg, data, out, resume=True, progress=False)
    log.info("%s: %s in %.0f s", out.name, result.model_path, time.perf_counter() - t0)
    return result.model_path


def _test_logits(model_path: Path, data: Path) -> tuple[np.ndarray, list[Any]]:
    """Logits on the test fold, cached next to the model (keyed by the checkpoint's mtime)."""
    from edgeasc.checkpoint import load_model
    from edgeasc.dataset import TAUDataset, load_waveforms
    from edgeasc.evaluate import frontend_of, predict_logits

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


def _report(logits: np.ndarray, clips: list[Any]) -> dict[str, Any]:
    from edgeasc.metrics import classification_report

    r = classification_report([c.label for c in clips], logits.argmax(1), [c.device for c in clips])
    return {
        "macro": 100 * r["macro_accuracy"],
        "per_device": {d: 100 * v["macro_accuracy"] for d, v in r["per_device"].items()},
        "unseen": 100 * r["per_group"]["unseen"]["macro_accuracy"] if "unseen" in r.get("per_group", {}) else None,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from edgeasc.synth import generate_dataset
    from edgeasc.teachers import compute_teacher_logits

    out = Path(args.out)
    data = Path(args.data) if args.data else out / "data"
    if not (data / "meta.csv").is_file():
        generate_dataset(data, scale=args.scale, seed=args.data_seed, progress=True)
    extra = tuple(args.set)

    def model(recipe: str, run_dir: Path, seed: int, overrides: tuple[str, ...]) -> Path | None:
        """Train (or resume) a run; with --report-only, its finished model or None."""
        if args.report_only:
            path = run_dir / "model.pt"  # written only when the run completes
            if not path.is_file():
                log.info("%s: not finished (--report-only)", run_dir.name)
            return path if path.is_file() else None
        return _train(recipe, run_dir, data, seed, overrides)

    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for seed in args.seeds:
        # The label-only student first: it is also the reference for the export experiments.
        label = model(STUDENT, out / f"student_label_s{seed}", seed, extra)
        if label:
            runs.setdefault("student labels only", {})[seed] = _report(*_test_logits(label, data))
        members = []
        for name, (recipe, overrides) in TEACHERS.items():
            path = model(recipe, out / f"teacher_{name}_s{seed}", seed, (*overrides, *extra))
            members.append(path)
            if path:
                runs.setdefault(f"teacher {name}", {})[seed] = _report(*_test_logits(path, data))
        if not all(members):
            continue
        # The ensemble on the test fold: the mean of its members' logits, as the stored training logits are.
        member_logits = [_test_logits(p, data) for p in members]
        clips = member_logits[0][1]
        runs.setdefault("teacher ensemble", {})[seed] = _report(np.mean([m[0] for m in member_logits], 0), clips)
        logits_file = out / f"ensemble_s{seed}.npz"
        if not logits_file.is_file():
            if args.report_only:
                continue
            compute_teacher_logits(members, data, logits_file, progress=False)
        kd = model(KD_STUDENT, out / f"student_kd_s{seed}", seed, (f"kd.teacher_logits={str(logits_file)!r}", *extra))
        if kd:
            runs.setdefault("student KD", {})[seed] = _report(*_test_logits(kd, data))
        for variant in args.kd_variant:  # the KD student again with changed KD settings (an investigation)
            tag = "_".join(v.replace("kd.", "").replace("=", "") for v in variant.split(","))
            path = model(KD_STUDENT, out / f"student_kd_{tag}_s{seed}", seed,
                         (f"kd.teacher_logits={str(logits_file)!r}", *extra, *variant.split(",")))
            if path:
                runs.setdefault(f"student KD {tag}", {})[seed] = _report(*_test_logits(path, data))
    return summarise(runs, args)


def summarise(runs: dict[str, dict[int, dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
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
    return {"benchmark": "kd_gains", "scale": args.scale, "seeds": args.seeds, "teachers": TEACHERS,
            "student_recipe": STUDENT, "kd_recipe": KD_STUDENT, "overrides": list(args.set),
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
    p.add_argument("--results", help="Result JSON (default benchmarks/results/kd_gains_<scale>.json).")
    p.add_argument("--report-only", action="store_true",
                   help="Train nothing: tabulate the runs under --out that have finished (rows list their seeds).")
    args = p.parse_args(argv)
    args.out = args.out or f"runs/kd_gains_{args.scale}"
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = run(args)
    path = Path(args.results or ROOT / "benchmarks" / "results" / f"kd_gains_{args.scale}.json")
    write_json_atomic(path, result)
    print(format_table(result))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
