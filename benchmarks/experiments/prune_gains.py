"""Does pruning a wider student beat training the budget-sized one directly? (issue 5, synthetic benchmark)

Three ways to a base-32 SSCP-Mobile within the DCASE 2025 budget, each with the same total training epochs E,
with labels only and with KD from a teacher ensemble, for every seed:

- direct:    sscp_mobile_b32 trained from scratch for E epochs;
- from64:    sscp_mobile_b64 trained for E - 2p epochs, AGP-pruned to base 32 during p epochs, fine-tuned for p
             (p = max(1, E // 4)); round_to 8 makes its widths exactly sscp_mobile_b32's;
- from96:    sscp_mobile_b96 trained for E - 4q epochs, then two stages 96 -> 64 -> 32 of q AGP epochs + q
             fine-tuning epochs (q = max(1, E // 8)); widths (64, 32) x 3, (64, 56), (128, 56), (128, 104).

KD uses the same ensemble for every arm of a seed (the teacher recipes of recipes/demo_teacher_*.toml, E epochs
each, logits averaged by `edgeasc teacher-logits`). Every model is evaluated on the test fold (macro and
per-device accuracy). Prints a table (mean over seeds, spread = max - min, gain over `direct` with the same
supervision) and writes benchmarks/experiments/results/prune_gains_<scale>.json. Runs live under --out and are skipped
when complete, so a killed benchmark resumes.

    .venv/bin/python benchmarks/experiments/prune_gains.py --scale medium --seeds 0 1
    .venv/bin/python benchmarks/experiments/prune_gains.py --scale tiny --seeds 0 1 --epochs 5 --set optim.batch_size=32  # smoke
    # KD arms only, with the ensembles benchmarks/experiments/kd_gains.py already trained on the same data (16 epochs):
    .venv/bin/python benchmarks/experiments/prune_gains.py --scale small --data demo_out/data --kd-only \
        --ensemble-from runs/kd_gains_small --arms direct from64
    # another pruning criterion, step count, AGP/fine-tuning split or stage schedule on the same pretrained wide
    # models (folder *_pruned_<variant>):
    .venv/bin/python benchmarks/experiments/prune_gains.py --scale small --data demo_out/data --ensemble-from runs/kd_gains_small \
        --arms direct from64 --importance taylor --results benchmarks/experiments/results/prune_gains_small_taylor.json
    .venv/bin/python benchmarks/experiments/prune_gains.py --scale small --data demo_out/data --no-kd --arms from64 --agp-epochs 2
    .venv/bin/python benchmarks/experiments/prune_gains.py --scale small --data demo_out/data --ensemble-from runs/kd_gains_small \
        --stage-lr 0.002 --stage-warmup 20 --results benchmarks/experiments/results/prune_gains_small_stage_lr0.002_w20.json
    # a long benchmark in parts (e.g. one session each): rows earlier results hold are taken from them; KD arms
    # of every seed distil seed 0's ensemble (its teachers trained here, or --ensemble-from):
    .venv/bin/python benchmarks/experiments/prune_gains.py --scale medium --no-kd --arms direct from64 --seeds 0 \
        --results benchmarks/experiments/results/p1_s0.json   # and --seeds 1 ... p1_s1.json, in parallel
    .venv/bin/python benchmarks/experiments/prune_gains.py --scale medium --seeds 0 1 --teacher-seed 0 \
        --recorded benchmarks/experiments/results/p1_s0.json benchmarks/experiments/results/p1_s1.json
    # one table of what has finished (e.g. seeds run in parallel with their own --results), training nothing:
    .venv/bin/python benchmarks/experiments/prune_gains.py --scale small --data demo_out/data --seeds 0 1 --report-only

Every AGP and fine-tuning stage restarts the learning-rate schedule; the default is the student recipe's
(peak 0.004, 100 warm-up steps), which is most of a 2-epoch stage (docs/pruning.md: use --stage-warmup).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import Any

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

log = logging.getLogger("prune_gains")

STUDENT = "recipes/demo_student.toml"
KD_STUDENT = "recipes/demo_kd_student.toml"
TEACHERS = ("recipes/demo_teacher_cpmobile.toml", "recipes/demo_teacher_sscp.toml")
ARMS = ("direct", "from64", "from96")


def epoch_split(arm: str, total: int, agp: int | None = None) -> dict[str, int]:
    """Epochs of each phase of an arm; they always sum to `total`.

    A pruning stage gets 2p epochs (p = total // 4 from 64, total // 8 per stage from 96): p of AGP and p of
    fine-tuning, or `agp` of AGP and 2p - agp of fine-tuning, so the pretraining stays the same.
    """
    if arm == "direct":
        return {"pretrain": total}
    parts = 2 if arm == "from64" else 4
    p = max(1, total // (4 if arm == "from64" else 8))
    if total - parts * p < 1:
        raise SystemExit(f"--epochs {total} is too few for {arm} (needs at least {parts + 1})")
    a = p if agp is None else agp
    if not 1 <= a < 2 * p:
        raise SystemExit(f"--agp-epochs {a} does not fit {arm} with --epochs {total}: each pruning stage has "
                         f"{2 * p} epochs, and AGP needs at least 1 and leaves at least 1 for fine-tuning")
    return {"pretrain": total - parts * p, "agp": a, "finetune": 2 * p - a}


def _overrides(args: argparse.Namespace, seed: int, logits: Path | None, *extra: str) -> tuple[str, ...]:
    kd = (f"kd.teacher_logits={str(logits)!r}",) if logits is not None else ()
    return (f"seed={seed}", *kd, *args.set, *extra)


def _train(recipe: str, out: Path, data: Path, overrides: tuple[str, ...]) -> Path:
    from edgeasc.config import resolve_train_config
    from edgeasc.train.loop import train

    t0 = time.perf_counter()
    result = train(resolve_train_config(ROOT / recipe, overrides), data, out, resume=True, progress=False)
    log.info("%s: done in %.0f s", out.name, time.perf_counter() - t0)
    return result.model_path


def _n_steps(data: Path, recipe: str, overrides: tuple[str, ...], agp_epochs: int, wanted: int) -> int:
    """AGP steps that fit the stage: at most one per optimiser step of its first 75%."""
    from edgeasc.config import resolve_train_config
    from edgeasc.data.dataset import TAUDataset

    cfg = resolve_train_config(ROOT / recipe, overrides)
    n = len(TAUDataset(data).clips(cfg.data.train_split))
    per_epoch = n // cfg.optim.batch_size if n >= cfg.optim.batch_size else 1
    return max(1, min(wanted, int(0.75 * per_epoch * agp_epochs)))


def _prune(start: Path, out: Path, data: Path, recipe: str, overrides: tuple[str, ...], stages: tuple[int, ...],
           phases: dict[str, int], n_steps: int, importance: str, lr: float | None = None,
           warmup: int | None = None) -> Path:
    """AGP and fine-tuning stages from `start`; `lr` and `warmup` (default: the recipe's) set both stages'
    learning-rate schedule (linear warm-up, then cosine to 0, restarted at every stage)."""
    from edgeasc.config import resolve_train_config
    from edgeasc.prune.config import PruneConfig
    from edgeasc.prune.stage import prune_checkpoint

    final = out / "model.pt"
    if final.is_file():
        return final
    schedule = tuple(f"optim.{k}={v}" for k, v in (("lr", lr), ("warmup_steps", warmup)) if v is not None)
    cfg = resolve_train_config(ROOT / recipe, overrides + (f"optim.epochs={phases['agp']}",) + schedule)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, name="sscp_mobile", kwargs={}))
    pcfg = PruneConfig(stages=stages, round_to=8, n_steps=_n_steps(data, recipe, overrides, phases["agp"], n_steps),
                       finetune_epochs=phases["finetune"], eval_during=False, importance=importance,
                       finetune_lr=lr, finetune_warmup_steps=warmup)
    t0 = time.perf_counter()
    prune_checkpoint(start, data, out, cfg, pcfg, resume=True, progress=False)
    log.info("%s: pruned in %.0f s", out.name, time.perf_counter() - t0)
    return final


def _evaluate(model_path: Path, data: Path) -> dict[str, Any]:
    """Test-fold macro and per-device accuracy, and the DCASE-rule complexity, of a checkpoint."""
    from edgeasc.checkpoint import load_model
    from edgeasc.complexity import count_dcase
    from edgeasc.evaluate import evaluate_checkpoint

    r = evaluate_checkpoint(model_path, data, split="test", out_dir=model_path.parent / "eval", progress=False)
    model, _ = load_model(model_path)
    cx = count_dcase(model)
    return {"macro": 100 * r["macro_accuracy"],
            "per_device": {d: 100 * v["macro_accuracy"] for d, v in r["per_device"].items()},
            "params": cx.params, "macs": cx.macs, "widths": model.model_config["kwargs"]["block_channels"]}


def _ensemble_logits(args: argparse.Namespace, out: Path, data: Path, seed: int) -> Path:
    """The seed's stored ensemble logits: kd_gains.py's (--ensemble-from), or teachers trained here."""
    from edgeasc.train.teachers import compute_teacher_logits

    if args.ensemble_from:  # the same teachers, trained by kd_gains.py
        logits_file = Path(args.ensemble_from) / f"ensemble_s{seed}.npz"
        if not logits_file.is_file():
            raise SystemExit(f"--ensemble-from: {logits_file} does not exist (run benchmarks/experiments/kd_gains.py "
                             f"--seeds {seed} first)")
        return logits_file
    members = [_train(t, out / f"teacher_{Path(t).stem}_s{seed}", data,
                      _overrides(args, seed, None, f"optim.epochs={args.epochs}")) for t in TEACHERS]
    logits_file = out / f"ensemble_s{seed}.npz"
    if not logits_file.is_file():
        compute_teacher_logits(members, data, logits_file, progress=False)
    return logits_file


def run(args: argparse.Namespace) -> dict[str, Any]:
    from edgeasc.synth.generate import generate_dataset

    out = Path(args.out)
    data = Path(args.data) if args.data else out / "data"
    if not (data / "meta.csv").is_file():
        generate_dataset(data, scale=args.scale, seed=args.data_seed, progress=True)
    E = args.epochs
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    recorded = _load_recorded(args) if args.recorded else {}
    cpu = describe_machine()["cpu_model"]
    reused: list[str] = []
    supervisions = [False] if args.no_kd else [True] if args.kd_only else [False, True]
    for seed in args.seeds:
        t = seed if args.teacher_seed is None else args.teacher_seed
        kd_todo = True in supervisions and any(seed not in recorded.get(f"{arm} kd", {}) for arm in args.arms)
        # --report-only trains nothing, so it needs no teachers' logits; nor do KD rows --recorded holds (nor
        # finished ones, but the ensemble of a finished KD arm is there anyway)
        logits_file = _ensemble_logits(args, out, data, t) if kd_todo and not args.report_only else None
        for kd in supervisions:
            recipe = KD_STUDENT if kd else STUDENT
            tag = "kd" if kd else "labels"
            lf = logits_file if kd else None
            for arm in args.arms:
                phases = epoch_split(arm, E, args.agp_epochs)
                base = {"direct": "sscp_mobile_b32", "from64": "sscp_mobile_b64", "from96": "sscp_mobile_b96"}[arm]
                # a pruning variant (importance, steps, AGP epochs, stage schedule) reuses the pretrained wide
                # model, in a folder of its own
                variant = "" if (args.importance, args.n_steps) == ("l1", 8) else f"_{args.importance}_n{args.n_steps}"
                variant += "" if args.agp_epochs is None else f"_a{args.agp_epochs}"
                variant += "" if args.stage_lr is None else f"_lr{args.stage_lr:g}"
                variant += "" if args.stage_warmup is None else f"_w{args.stage_warmup}"
                who = f"s{seed}" if not kd or t == seed else f"s{seed}_t{t}"  # KD from another seed's ensemble
                pre_dir = out / f"{arm}_{tag}_{who}_pretrain"
                pruned_dir = out / f"{arm}_{tag}_{who}_pruned{variant}"
                final = (pre_dir if arm == "direct" else pruned_dir) / "model.pt"  # written when the arm completes
                if not final.is_file():  # a finished run here wins over --recorded
                    if seed in recorded.get(f"{arm} {tag}", {}):
                        runs.setdefault(f"{arm} {tag}", {})[seed] = recorded[f"{arm} {tag}"][seed]
                        reused.append(f"{arm} {tag}/s{seed}")
                        continue
                    if args.report_only:
                        log.info("%s %s seed %d: not run (--report-only)", arm, tag, seed)
                        continue
                    pre = _train(recipe, pre_dir, data, _overrides(args, seed, lf, f"model.name={base}",
                                                                   f"optim.epochs={phases['pretrain']}"))
                    final = pre if arm == "direct" else _prune(
                        pre, pruned_dir, data, recipe, _overrides(args, seed, lf),
                        (32,) if arm == "from64" else (64, 32), phases, args.n_steps, args.importance, args.stage_lr,
                        args.stage_warmup)
                row = _evaluate(final, data)
                row["epochs"] = phases
                row["cpu_model"] = cpu
                runs.setdefault(f"{arm} {tag}", {})[seed] = row
                log.info("%s %s seed %d: macro %.2f%%", arm, tag, seed, row["macro"])
    return summarise(runs, args, reused)


def _load_recorded(args: argparse.Namespace) -> dict[str, dict[int, dict[str, Any]]]:
    """Per-seed rows of an earlier result of this experiment (--recorded); its KD rows only where they distilled
    the ensemble this run's would (--teacher-seed)."""
    def keep(prev: dict[str, Any], row: str, seed: int) -> bool:
        return not row.endswith(" kd") or distilled_same_ensemble(prev, args.teacher_seed, seed)

    expect = {"benchmark": "prune_gains", "scale": args.scale, "epochs_total": args.epochs, "student_recipe": STUDENT,
              "kd_recipe": KD_STUDENT, "teachers": list(TEACHERS), "importance": args.importance,
              "n_steps": args.n_steps, "agp_epochs": args.agp_epochs, "stage_lr": args.stage_lr,
              "stage_warmup": args.stage_warmup, "overrides": list(args.set)}
    return load_recorded_runs(args.recorded, expect, keep)


def summarise(runs: dict[str, dict[int, dict[str, Any]]], args: argparse.Namespace,
              reused: list[str] = ()) -> dict[str, Any]:
    rows = {}
    for name, by_seed in runs.items():
        first = next(iter(by_seed.values()))
        rows[name] = {**summarise_seeds(by_seed), "params": first["params"], "macs": first["macs"],
                      "epochs": first["epochs"]}
    for name, row in rows.items():
        arm, tag = name.split()
        ref = rows.get(f"direct {tag}")
        if ref is not None and arm != "direct":
            row["gain_over_direct_pp"] = row["macro_mean"] - ref["macro_mean"]
            spread = max(row["macro_spread"], ref["macro_spread"])  # undefined with one seed
            two = len(row["seeds"]) > 1 and len(ref["seeds"]) > 1
            row["gain_exceeds_spread"] = bool(row["gain_over_direct_pp"] > spread) if two else None
    return {"benchmark": "prune_gains", "scale": args.scale, "seeds": args.seeds, "epochs_total": args.epochs,
            "student_recipe": STUDENT, "kd_recipe": KD_STUDENT, "teachers": list(TEACHERS),
            "ensemble_from": args.ensemble_from, "importance": args.importance, "n_steps": args.n_steps,
            "agp_epochs": args.agp_epochs, "stage_lr": args.stage_lr, "stage_warmup": args.stage_warmup,
            "overrides": list(args.set), "teacher_seed": args.teacher_seed, "recorded_from": args.recorded,
            "recorded_rows": list(reused), "cpu_models": cpu_models(runs), "rows": rows, "machine": describe_machine()}


def format_table(result: dict[str, Any]) -> str:
    lines = [f"synthetic {result['scale']}, seeds {result['seeds']}, {result['epochs_total']} epochs per arm: "
             "macro accuracy % on the test fold (mean over seeds; spread = max - min)",
             f"{'arm':<16}{'params':>8}{'MACs':>12}{'seeds':>6}{'macro':>8}{'spread':>8}{'gain':>8}  epochs"]
    for name, r in result["rows"].items():
        gain = r.get("gain_over_direct_pp")
        lines.append(f"{name:<16}{r['params']:>8,}{r['macs']:>12,}{len(r['seeds']):>6}{r['macro_mean']:>8.2f}"
                     f"{r['macro_spread']:>8.2f}"
                     f"{'' if gain is None else f'{gain:+.2f}':>8}  {r['epochs']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from edgeasc.prune.config import IMPORTANCE_NAMES

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", default="medium", choices=["tiny", "small", "medium"])
    p.add_argument("--data", help="An existing dataset (default: synthesise --scale into OUT/data).")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--epochs", type=int, default=16, help="Total training epochs of every arm.")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--n-steps", type=int, default=8, help="AGP pruning steps per stage (fewer if they do not fit).")
    p.add_argument("--importance", default="l1", choices=IMPORTANCE_NAMES,
                   help="Channel criterion of the AGP stages (a variant reuses the pretrained wide models).")
    p.add_argument("--agp-epochs", type=int, metavar="A",
                   help="AGP epochs of each pruning stage; its fine-tuning gets the rest of the stage's epochs "
                        "(default: half each). A variant: it reuses the pretrained wide models.")
    p.add_argument("--stage-lr", type=float, metavar="LR",
                   help="Peak learning rate of every AGP and fine-tuning stage (default: the student recipe's).")
    p.add_argument("--stage-warmup", type=int, metavar="STEPS",
                   help="Warm-up steps of every AGP and fine-tuning stage (default: the student recipe's, 100: "
                        "most of a 2-epoch stage). Both are variants: they reuse the pretrained wide models.")
    p.add_argument("--no-kd", action="store_true", help="Labels only (no teachers).")
    p.add_argument("--kd-only", action="store_true", help="KD arms only (skip the label-only arms).")
    p.add_argument("--report-only", action="store_true",
                   help="Train nothing: evaluate and tabulate the complete runs only (rows list their seeds).")
    p.add_argument("--ensemble-from", metavar="DIR",
                   help="Reuse DIR/ensemble_s<seed>.npz of benchmarks/experiments/kd_gains.py (same teacher recipes, 16 "
                        "epochs, same data) instead of training the teachers again.")
    p.add_argument("--teacher-seed", type=int,
                   help="KD arms of every seed distil this seed's ensemble (default: each seed its own).")
    p.add_argument("--recorded", metavar="RESULT_JSON", nargs="+",
                   help="Take the rows and seeds these earlier results of the same experiment hold, where no "
                        "finished run under --out has them, instead of training them (recorded_rows in the new "
                        "result): a long benchmark run in parts.")
    p.add_argument("--out", help="Run folder (default runs/prune_gains_<scale>).")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="Override applied to every training run (e.g. optim.batch_size=32).")
    p.add_argument("--results", help="Result JSON (default benchmarks/experiments/results/prune_gains_<scale>.json).")
    args = p.parse_args(argv)
    for arm in args.arms:
        epoch_split(arm, args.epochs, args.agp_epochs)
    args.out = args.out or f"runs/prune_gains_{args.scale}"
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = run(args)
    path = Path(args.results or ROOT / "benchmarks" / "experiments" / "results" / f"prune_gains_{args.scale}.json")
    write_json_atomic(path, result)
    print(format_table(result))
    for line in provenance_lines(result):
        print(line)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
