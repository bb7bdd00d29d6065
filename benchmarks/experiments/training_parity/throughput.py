"""Training throughput of `edgeasc train` against the official DCASE 2025 baseline code, same network, same data,
one thread each, in alternating rounds (docs/training.md, README).

    python benchmarks/experiments/training_parity/throughput.py --official-code CHECKOUT \\
        --official-python OFFICIAL_VENV/bin/python --data data/small [--rounds 3]

Each round runs the official code (official_side.py train: train_base.py unchanged, seeded) and then edgeasc
(`recipes/baseline_tau22.toml`) for 2 epochs each, one process at a time; the steady throughput is the second
epoch's training clips per second (the first includes warm-up effects: first-touch allocations, caches),
as each side measures it around its own epoch (official_side.py's epoch clock; edgeasc's metrics.jsonl).
Reported: the median of each and the median of the per-round ratios. Run it on quiet cores: another job
on the machine changes both sides, and not by the same factor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
OFFICIAL_SIDE = Path(__file__).with_name("official_side.py")


def provenance(args: argparse.Namespace) -> dict:
    """What the figures depend on besides the code: each side's torch, the commits, the date, the command."""
    def out(cmd: list[str]) -> str | None:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else None

    version = "import torch; print(torch.__version__)"
    return {"edgeasc_torch": out([sys.executable, "-c", version]),
            "official_torch": out([args.official_python, "-c", version]),
            "edgeasc_commit": out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
            "official_commit": out(["git", "-C", str(args.official_code), "rev-parse", "--short", "HEAD"]),
            "date": time.strftime("%Y-%m-%d"),
            "command": "python benchmarks/experiments/training_parity/throughput.py " + " ".join(sys.argv[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official-code", type=Path, required=True)
    parser.add_argument("--official-python", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".work" / "throughput")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "experiments" / "results" / "training_throughput.json")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    rounds = []
    for r in range(args.rounds):
        official_dir, edgeasc_dir = args.work / f"official{r}", args.work / f"edgeasc{r}"
        for d in (official_dir, edgeasc_dir):
            shutil.rmtree(d, ignore_errors=True)
        subprocess.run([args.official_python, str(OFFICIAL_SIDE), "train", "--code", str(args.official_code.resolve()),
                        "--data", str(args.data.resolve()), "--work", str(official_dir), "--seed", str(r), "--",
                        "--n_epochs", "2", "--warmup_steps", "28", "--num_workers", "0",
                        "--check_val_every_n_epoch", "2"], check=True, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        official = json.loads((official_dir / "result.json").read_text())["epochs"][1]["train_clips_per_s"]
        subprocess.run([sys.executable, "-m", "edgeasc.cli", "train", "--data", str(args.data), "--out", str(edgeasc_dir),
                        "--recipe", str(ROOT / "recipes" / "baseline_tau22.toml"), "--no-progress",
                        "--set", f"seed={r}", "--set", "optim.epochs=2", "--set", "optim.warmup_steps=28",
                        "--set", "eval_every=0"],
                       check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lines = (edgeasc_dir / "metrics.jsonl").read_text().splitlines()
        edgeasc = json.loads(lines[1])["train_clips_per_s"]
        rounds.append({"official_clips_per_s": official, "edgeasc_clips_per_s": edgeasc, "ratio": edgeasc / official})
        print(f"round {r + 1}: official {official:.1f} clips/s, edgeasc {edgeasc:.1f} clips/s, "
              f"ratio {edgeasc / official:.2f}", flush=True)
    result = {
        "data": str(args.data), "rounds": rounds,
        "official_clips_per_s_median": statistics.median(r["official_clips_per_s"] for r in rounds),
        "edgeasc_clips_per_s_median": statistics.median(r["edgeasc_clips_per_s"] for r in rounds),
        "ratio_median": statistics.median(r["ratio"] for r in rounds),
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
        **provenance(args),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out)
    print(f"median: official {result['official_clips_per_s_median']:.1f} clips/s, edgeasc "
          f"{result['edgeasc_clips_per_s_median']:.1f} clips/s, edgeasc/official {result['ratio_median']:.2f}x; "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
