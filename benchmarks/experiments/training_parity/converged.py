"""The converged comparison of docs/training.md: the official DCASE 2025 baseline code and `edgeasc train`, the
same recipe, several seeds each, on a TAU22-layout folder (SYNTHETIC `small` in the committed figures).

    python benchmarks/experiments/training_parity/converged.py --official-code CHECKOUT \\
        --official-python OFFICIAL_VENV/bin/python --data DATA [--seeds 0 1 2] [--epochs 20] [--jobs 2]

Both sides: CP-Mobile base 32 (61,148 parameters), AdamW lr 0.005, weight decay 1e-4, batch 256, `--epochs`
epochs with `--warmup-steps` linear warm-up then cosine (per step), roll +-0.1 s, one 48-bin frequency mask,
Freq-MixStyle p 0.4 / alpha 0.3, one thread per process. The official side is train_base.py unchanged
(official_side.py train: seeded, soundfile's decoder, offline W&B); it validates once, at the last epoch
(float32), then tests the last checkpoint in float16 as it always does. The edgeasc side is
`edgeasc train --recipe recipes/baseline_tau22.toml` with the same schedule, then `edgeasc evaluate
--precision fp16`. `val_fp32_moving_average_bn` is the validation with BatchNorm's moving averages as
training left them, the official code's model (on 280 steps edgeasc's debiasing changes nothing; runs of
commit 11c65a8 recomputed the statistics on clean clips instead, and that is their other figure).

Each run works in WORK/<side>/seed<S>/ (ignored by git; an edgeasc run resumes there from its last epoch). A
finished run writes its record to RECORDS/<side>_seed<S>.json (committed: benchmarks/experiments/results/training_parity/),
with the commit and command that made it; runs that have a record are skipped, so a campaign can be stopped and
continued on another machine. Delete a record to run it again. The summary (mean, seed spread, Welch's t) goes
to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
OFFICIAL_SIDE = Path(__file__).with_name("official_side.py")


def official_command(args: argparse.Namespace, seed: int, work: Path) -> list[str]:
    return [args.official_python, str(OFFICIAL_SIDE), "train", "--code", str(args.official_code), "--data",
            str(args.data), "--work", str(work), "--seed", str(seed), "--", "--n_epochs", str(args.epochs),
            "--warmup_steps", str(args.warmup_steps), "--num_workers", "0",
            "--check_val_every_n_epoch", str(args.epochs)]


def edgeasc_commands(args: argparse.Namespace, seed: int, work: Path) -> list[list[str]]:
    py = sys.executable
    run = work / "run"
    train = [py, "-m", "edgeasc.cli", "train", "--data", str(args.data), "--out", str(run), "--recipe",
             str(ROOT / "recipes" / "baseline_tau22.toml"), "--no-progress", "--resume",
             "--set", f"seed={seed}", "--set", f"optim.epochs={args.epochs}",
             "--set", f"optim.warmup_steps={args.warmup_steps}", "--set", "eval_every=0"]
    fp16 = [py, "-m", "edgeasc.cli", "evaluate", str(run / "model.pt"), "--data", str(args.data), "--precision",
            "fp16", "--out", str(work / "eval_fp16"), "--json"]
    return [train, fp16]


def record_path(args: argparse.Namespace, side: str, seed: int) -> Path:
    return args.records / f"{side}_seed{seed}.json"


def git_commit(path: Path) -> str:
    out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def run_one(args: argparse.Namespace, side: str, seed: int) -> dict:
    record = record_path(args, side, seed)
    if record.is_file():
        return json.loads(record.read_text())
    work = args.work / side / f"seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    t0 = time.time()
    log = open(work / "log.txt", "a")
    try:
        if side == "official":
            subprocess.run(official_command(args, seed, work), check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
            metrics = json.loads((work / "result.json").read_text())["metrics"]
            result = {"side": side, "seed": seed, "val_fp32": metrics["val/macro_avg_acc"],
                      "test_fp16": metrics["test/macro_avg_acc"]}
        else:
            train, fp16 = edgeasc_commands(args, seed, work)
            subprocess.run(train, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
            out = subprocess.run(fp16, check=True, capture_output=True, text=True, env=env)
            final = json.loads((work / "run" / "metrics.json").read_text())
            # bn_recalibration: runs of commit 11c65a8, whose default recomputed the statistics on clean clips
            recal = final.get("bn_debias") or final.get("bn_recalibration") or {}
            result = {"side": side, "seed": seed, "val_fp32": final["macro_accuracy"],
                      "val_fp32_moving_average_bn": recal.get("macro_accuracy_before", final["macro_accuracy"]),
                      "test_fp16": json.loads(out.stdout)["macro_accuracy"]}
    finally:
        log.close()
    result["seconds"] = round(time.time() - t0, 1)
    result["data"] = str(args.data)
    result["epochs"], result["warmup_steps"] = args.epochs, args.warmup_steps
    result["edgeasc_commit"] = git_commit(ROOT)
    if side == "official":
        result["official_commit"] = git_commit(args.official_code)
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    result["commands"] = ([official_command(args, seed, work)] if side == "official"
                          else edgeasc_commands(args, seed, work))
    write_json(record, result)
    return result


def collect(args: argparse.Namespace, side: str, seed: int) -> dict | None:
    path = record_path(args, side, seed)
    return json.loads(path.read_text()) if path.is_file() else None


def stats(values: list[float]) -> dict:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else float("nan")
    return {"n": n, "mean": mean, "spread": max(values) - min(values), "var": var, "values": values}


def welch_t(a: dict, b: dict) -> float:
    se = math.sqrt(a["var"] / a["n"] + b["var"] / b["n"])
    return (a["mean"] - b["mean"]) / se if se > 0 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official-code", type=Path, required=True)
    parser.add_argument("--official-python", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--warmup-steps", type=int, default=28, help="28 = 2 epochs of `small` at batch 256")
    parser.add_argument("--sides", nargs="+", default=["official", "edgeasc"], choices=["official", "edgeasc"])
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".work" / "parity")
    parser.add_argument("--records", type=Path, default=ROOT / "benchmarks" / "experiments" / "results" / "training_parity")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "experiments" / "results" / "training_parity.json")
    args = parser.parse_args()
    args.data, args.official_code = args.data.resolve(), args.official_code.resolve()
    args.work, args.records = args.work.resolve(), args.records.resolve()
    todo = [(side, seed) for seed in args.seeds for side in args.sides]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for r in pool.map(lambda job: run_one(args, *job), todo):
            print(json.dumps(r), flush=True)
    rows = {side: [r for s in args.seeds if (r := collect(args, side, s))] for side in ("official", "edgeasc")}
    summary: dict = {"data": str(args.data), "epochs": args.epochs, "warmup_steps": args.warmup_steps,
                     "seeds": args.seeds, "runs": rows}
    for key in ("val_fp32", "test_fp16", "val_fp32_moving_average_bn"):
        for side, runs in rows.items():
            values = [100 * r[key] for r in runs if key in r]
            if values:
                summary.setdefault(key, {})[side] = stats(values)
    for key in ("val_fp32", "test_fp16", "val_fp32_moving_average_bn"):
        by_side = summary.get(key, {})
        if {"official", "edgeasc"} <= set(by_side):
            a, b = by_side["edgeasc"], by_side["official"]
            by_side["edgeasc_minus_official_pp"] = a["mean"] - b["mean"]
            by_side["welch_t"] = welch_t(a, b)
    write_json(args.out, summary)
    for key in ("val_fp32", "test_fp16", "val_fp32_moving_average_bn"):
        for side in ("official", "edgeasc"):
            s = summary.get(key, {}).get(side)
            if s:
                print(f"{key:<28} {side:<9} mean {s['mean']:.2f}% spread {s['spread']:.2f} pp over {s['n']} seeds "
                      f"{['%.2f' % v for v in s['values']]}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
