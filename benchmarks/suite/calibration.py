"""The calibration benchmark (`make bench-calibration`, docs/bench.md "Calibration against TAU22"): does the
synthetic task reward data and capacity the way TAU22 does?

It trains the DCASE baseline network and recipe (`recipes/baseline_tau22.toml`, `cpmobile_baseline`) at a fixed
epoch budget on each training split of a synthetic dataset, then base 64 and base 96 CP-Mobile at split25, and
prints the figures beside the published TAU22 ones (`TAU22`) with the targets of issue 25 (`TARGETS`):

    python benchmarks/suite/calibration.py [--profile full|lite] [--data DIR] [--work benchmarks/.work]
        [--threads 1] [--name NAME]

- `full`: splits 5, 10, 25, 50, 100 and widths 64, 96 at split25, 2 seeds each, 20 epochs.
- `lite`: splits 5, 25, 100 and width 64, 1 seed, 10 epochs: a quick reading of a candidate generator.

Without `--data` it synthesises `small` (seed 0) into WORK/calibration/data. Every run is an `edgeasc train`
child process (`run._train_runs`): side by side on the cores, resumed after an interruption, reused when
finished with the same config. The warm-up is a fixed number of optimiser steps for every split, as the official
code's 2,000 (10% of split25's steps; at split5 it is about half of the run, as the official 2,000 of about 4,000
steps there). Writes benchmarks/suite/results/NAME.json (default: calibration or calibration_lite).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from run import SCHEMA, Stage, _train_runs  # noqa: E402

log = logging.getLogger("benchmarks")

RECIPE = "recipes/baseline_tau22.toml"
DEVICES = ("a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6")
UNSEEN = ("s4", "s5", "s6")

TAU22: dict[str, Any] = {
    "source": "CPJKU/dcase2024_task1_baseline README: the DCASE 2024 baseline (the network and recipe of 2025), "
              "5 runs per split, macro accuracy on the TAU22 development-set test fold",
    "splits": {5: 42.40, 10: 45.29, 25: 50.29, 50: 53.19, 100: 56.99},
    "devices_split25": {"a": 62.27, "b": 53.27, "c": 55.39, "s1": 47.52, "s2": 46.68, "s3": 51.59, "s4": 47.39,
                        "s5": 46.75, "s6": 41.75},
}
"""Published TAU22 figures (%), the calibration's reference."""

TARGETS: dict[str, str] = {
    "gain_per_doubling": "accuracy rises with every split doubling, by 2 to 5 pp each",
    "gain_5_to_100": "10 to 20 pp from split5 to split100",
    "split25": "split25 macro accuracy between 45% and 60%",
    "device_gap": "device a minus the unseen-device mean between 10 and 25 pp",
    "base64_over_32": "base 64 at least 2 pp above base 32 at split25",
    "base96_over_64": "base 96 above base 64 at split25",
}
"""Issue 25's targets, as checked by `check_targets`."""


@dataclass(frozen=True)
class CalibrationProfile:
    """One size of the calibration benchmark.

    Attributes:
        scale: the synthetic dataset synthesised when no `--data` is given.
        splits: training splits of base 32 (percent).
        widths: CP-Mobile base widths trained at split25 beside base 32.
        seeds: seeds of every run.
        epochs: the fixed epoch budget of every run.
        warmup_steps: linear warm-up in optimiser steps, the same for every split.
        overrides: more `--set` overrides of the recipe for every run (none in the suite's profiles).
        min_steps: a floor on each run's optimiser steps: a split whose `epochs` give fewer trains for
            ceil(min_steps / steps per epoch) epochs instead (0: every run gets `epochs`). With a fixed epoch
            budget alone the small splits stop far from convergence (benchmarks/experiments/evidence/PLAN.md,
            "Phase A").
    """

    scale: str
    splits: tuple[int, ...]
    widths: tuple[int, ...]
    seeds: tuple[int, ...]
    epochs: int
    warmup_steps: int
    overrides: tuple[str, ...] = ()
    min_steps: int = 0


PROFILES: dict[str, CalibrationProfile] = {
    # about 12 CPU hours on `small` (benchmarks/experiments/evidence/PLAN.md, phase C)
    "full": CalibrationProfile(scale="small", splits=(5, 10, 25, 50, 100), widths=(64, 96), seeds=(0, 1),
                               epochs=20, warmup_steps=28),
    # about 1.4 CPU hours on `small`: one reading of a candidate generator (PLAN.md, phase B)
    "lite": CalibrationProfile(scale="small", splits=(5, 25, 100), widths=(64,), seeds=(0,), epochs=10,
                               warmup_steps=14),
}


def split_clips(data: Path, split: int) -> int:
    """Training clips of `split_setup/split{split}.csv` (one row per clip under a header)."""
    lines = (data / "split_setup" / f"split{split}.csv").read_text(encoding="utf-8").splitlines()
    return sum(1 for line in lines[1:] if line.strip())


def split_epochs(prof: CalibrationProfile, data: Path | None, split: int) -> int:
    """The epochs a run on `split` trains for: `prof.epochs`, or more where `prof.min_steps` asks for them."""
    if not prof.min_steps:
        return prof.epochs
    if data is None:
        raise ValueError("a profile with min_steps needs the dataset to count its splits")
    from edgeasc.config import resolve_train_config

    batch = resolve_train_config(ROOT / RECIPE, prof.overrides).optim.batch_size
    steps_per_epoch = math.ceil(split_clips(data, split) / batch)  # the last partial batch is kept
    return max(prof.epochs, math.ceil(prof.min_steps / steps_per_epoch))


def jobs(prof: CalibrationProfile, data: Path | None = None) -> dict[str, tuple[str, ...]]:
    """Run name -> `--set` overrides of the recipe, for every run of `prof` (`data`: needed with min_steps)."""
    common = (f"optim.warmup_steps={prof.warmup_steps}", "eval_every=0", "device='cpu'", *prof.overrides)
    out = {}
    for seed in prof.seeds:
        for split in prof.splits:
            out[f"b32_split{split}_seed{seed}"] = (f"seed={seed}", f"data.train_split='split{split}'",
                                                   f"optim.epochs={split_epochs(prof, data, split)}", *common)
        for width in prof.widths:
            out[f"b{width}_split25_seed{seed}"] = (f"seed={seed}", "data.train_split='split25'",
                                                   f"model.kwargs.base_channels={width}",
                                                   f"optim.epochs={split_epochs(prof, data, 25)}", *common)
    return out


def read_run(run_dir: Path) -> dict[str, Any]:
    """A finished run's final validation: macro accuracy and per-device macro accuracy, in %."""
    m = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    return {"macro": 100 * m["macro_accuracy"],
            "devices": {d: 100 * v["macro_accuracy"] for d, v in m["per_device"].items()}}


def summarise(prof: CalibrationProfile, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Means over seeds: the split curve, the widths at split25 and the device table at split25."""
    splits = {}
    for split in prof.splits:
        accs = [runs[f"b32_split{split}_seed{s}"]["macro"] for s in prof.seeds]
        splits[split] = {"mean": statistics.fmean(accs), "runs": accs}
    widths = {32: splits[25]} if 25 in splits else {}
    for width in prof.widths:
        accs = [runs[f"b{width}_split25_seed{s}"]["macro"] for s in prof.seeds]
        widths[width] = {"mean": statistics.fmean(accs), "runs": accs}
    devices = {}
    if 25 in prof.splits:
        for d in DEVICES:
            vals = [runs[f"b32_split25_seed{s}"]["devices"][d] for s in prof.seeds
                    if d in runs[f"b32_split25_seed{s}"]["devices"]]
            if vals:
                devices[d] = statistics.fmean(vals)
    return {"splits": splits, "widths": widths, "devices_split25": devices}


def check_targets(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target of `TARGETS` that the summary can answer: its value and whether it holds."""
    out: dict[str, dict[str, Any]] = {}
    curve = {int(k): v["mean"] for k, v in summary["splits"].items()}
    ordered = sorted(curve)
    if len(ordered) >= 2:
        # gain per doubling of data between neighbouring measured splits (split5 -> 25 is log2(5) doublings)
        per_doubling = [(curve[b] - curve[a]) / math.log2(b / a) for a, b in zip(ordered, ordered[1:])]
        out["gain_per_doubling"] = {"value": per_doubling, "holds": all(2.0 <= g <= 5.0 for g in per_doubling)}
    if 5 in curve and 100 in curve:
        gain = curve[100] - curve[5]
        out["gain_5_to_100"] = {"value": gain, "holds": 10.0 <= gain <= 20.0}
    if 25 in curve:
        out["split25"] = {"value": curve[25], "holds": 45.0 <= curve[25] <= 60.0}
    dev = summary["devices_split25"]
    if "a" in dev and all(d in dev for d in UNSEEN):
        gap = dev["a"] - statistics.fmean(dev[d] for d in UNSEEN)
        out["device_gap"] = {"value": gap, "holds": 10.0 <= gap <= 25.0}
    widths = {int(k): v["mean"] for k, v in summary["widths"].items()}
    if 32 in widths and 64 in widths:
        out["base64_over_32"] = {"value": widths[64] - widths[32], "holds": widths[64] - widths[32] >= 2.0}
    if 64 in widths and 96 in widths:
        out["base96_over_64"] = {"value": widths[96] - widths[64], "holds": widths[96] > widths[64]}
    return out


def format_table(result: dict[str, Any]) -> str:
    """The synthetic figures beside TAU22's, then the targets."""
    s, prof = result["summary"], result["profile_settings"]
    budget = f"{prof['epochs']} epochs" + (f", at least {prof['min_steps']} steps" if prof.get("min_steps") else "")
    lines = [f"calibration ({result['data_label']}, {budget}, seeds "
             f"{', '.join(str(x) for x in prof['seeds'])}; macro accuracy on the test fold, %)",
             "", "| split | " + " | ".join(f"{k}%" for k in s["splits"]) + " |",
             "|---|" + "---:|" * len(s["splits"]),
             "| synthetic | " + " | ".join(f"{v['mean']:.2f}" for v in s["splits"].values()) + " |",
             "| TAU22 | " + " | ".join(f"{TAU22['splits'].get(int(k), float('nan')):.2f}" for k in s["splits"]) + " |"]
    if s["widths"]:
        lines += ["", "| CP-Mobile width at split25 | " + " | ".join(f"base {k}" for k in s["widths"]) + " |",
                  "|---|" + "---:|" * len(s["widths"]),
                  "| synthetic | " + " | ".join(f"{v['mean']:.2f}" for v in s["widths"].values()) + " |"]
    if s["devices_split25"]:
        devs = list(s["devices_split25"])
        lines += ["", "| device at split25 | " + " | ".join(devs) + " |", "|---|" + "---:|" * len(devs),
                  "| synthetic | " + " | ".join(f"{s['devices_split25'][d]:.2f}" for d in devs) + " |",
                  "| TAU22 | " + " | ".join(f"{TAU22['devices_split25'][d]:.2f}" for d in devs) + " |"]
    lines.append("")
    for key, t in result["targets"].items():
        v = t["value"]
        shown = ", ".join(f"{x:+.2f}" for x in v) if isinstance(v, list) else f"{v:.2f}"
        lines.append(f"  [{'ok' if t['holds'] else 'no'}] {TARGETS[key]}: {shown}")
    return "\n".join(lines)


def dataset_label(data: Path) -> str:
    """`NAME (generator V, scale S, seed N)` from a synthetic dataset's README; the folder name otherwise."""
    readme = data / "README.md"
    facts = {}
    if readme.is_file():
        for line in readme.read_text(encoding="utf-8").splitlines():
            for key in ("generator version", "scale", "seed"):
                if line.startswith(f"- {key}: "):
                    facts[key] = line.split(": ", 1)[1].split(" ")[0]
    if not facts:
        return data.name
    return f"{data.name} (generator {facts.get('generator version', '?')}, scale {facts.get('scale', '?')}, " \
           f"seed {facts.get('seed', '?')})"


def run_calibration(profile: str | CalibrationProfile, name: str, work: Path, threads: int, data: Path | None,
                    results: Path = HERE / "results") -> Path:
    """Train every run of the profile (or reuse it), then write RESULTS/NAME.json and print the table."""
    import hashlib

    from edgeasc.artifacts import write_json_atomic
    from edgeasc.bench.machine import describe_machine
    from edgeasc.synth.generate import generate_dataset

    prof = PROFILES[profile] if isinstance(profile, str) else profile
    t_all = time.perf_counter()
    work = work / "calibration"
    if data is None:
        data = work / "data"
        with Stage(f"synth {prof.scale}"):
            if not (data / "meta.csv").is_file():
                generate_dataset(data, scale=prof.scale, seed=0, progress=False, overwrite=True)
    label = dataset_label(data)
    # one folder of runs per dataset: a finished run is reused only on the data it was trained on
    runs_dir = work / "runs" / f"{data.resolve().name}-{hashlib.sha1(str(data.resolve()).encode()).hexdigest()[:8]}"
    todo = jobs(prof, data)
    with Stage(f"train {len(todo)} runs ({', '.join(todo)})") as st:
        ckpts = _train_runs(data, runs_dir, RECIPE, todo, threads)
    runs = {name_: read_run(ckpt.parent) for name_, ckpt in ckpts.items()}
    summary = summarise(prof, runs)
    result = {
        "schema": SCHEMA, "name": name, "profile": f"calibration-{profile if isinstance(profile, str) else 'custom'}",
        "profile_settings": asdict(prof),
        "recipe": RECIPE, "data": str(data), "data_label": f"SYNTHETIC: {label}", "torch_threads": threads,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "wall_s": time.perf_counter() - t_all,
        "train_s": st.seconds, "machine": describe_machine(), "runs": runs, "summary": summary,
        "targets": check_targets(summary), "tau22": TAU22,
    }
    path = write_json_atomic(results / f"{name}.json", result)
    log.info("wrote %s (%.0f s)", path, result["wall_s"])
    print(format_table(result))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--name", help="result name: benchmarks/suite/results/NAME.json "
                                       "(default: calibration, or calibration_lite)")
    parser.add_argument("--data", type=Path, help="a TAU22-layout synthetic dataset (default: synthesise `small`)")
    parser.add_argument("--work", type=Path, default=HERE.parent / ".work")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    name = args.name or ("calibration" if args.profile == "full" else f"calibration_{args.profile}")
    run_calibration(args.profile, name, args.work, args.threads, args.data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
