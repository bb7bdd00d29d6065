"""The edgeasc benchmark suite: `make bench` (profile `full`) and `make bench-ci` (profile `ci`).

On synthetic data at a fixed seed it measures, for the default student (`sscp_mobile_s1`) and, through the
same harness as the timing reference, the DCASE baseline CP-Mobile (`cpmobile`):

1. training throughput of `edgeasc train` (clips/s, forward + backward + data loading + on-the-fly log-mel),
   side by side with a plain re-implementation of the DCASE baseline's training step on the same model
   (benchmarks/suite/dcase_baseline_step.py: audio decoded per clip, resampled and turned into a mel per batch);
2. teacher-logit throughput (`compute_teacher_logits`, the wide CP-Mobile teacher of the recipes);
3. export wall time (`export_checkpoint`, int8, calibration and parity) and the per-stage accuracy it
   measures: torch float, TFLite float32, TFLite int8, int8-vs-float agreement;
4. audit wall time (checkpoint and int8 .tflite);
5. `edgeasc bench` of each int8 model: latency, TFLite Micro arena, flash, bit-exactness, MCU estimate;
6. the firmware of the int8 student (edgeasc/firmware/generate.py, docs/firmware.md) built with arm-none-eabi-gcc and run
   under QEMU with `-icount` on a Cortex-M4 and a Cortex-M7: instructions per inference and per MAC, flash, static
   RAM and arena bytes. Without the Arm toolchain or QEMU the section records `skipped` and the reason.

Writes `benchmarks/suite/results/<name>.json` (atomically) with the machine description; `benchmarks/suite/compare.py`
checks it against `benchmarks/suite/baseline.json`. docs/bench.md explains the figures and the gate rules.

Usage: python benchmarks/suite/run.py --profile ci [--name ci] [--work benchmarks/.work] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCHEMA = "edgeasc.benchmarks/1"
STUDENT = "sscp_mobile_s1"
REFERENCE = "cpmobile"
TEACHER = ("cpmobile", {"base_channels": 96})  # recipes/teacher_cpmobile_wide.toml
FIRMWARE_TARGETS = ("cortex-m4", "cortex-m7")
FIRMWARE_FIGURES = ("instructions_per_inference", "instructions_per_mac", "flash_bytes", "ram_bytes", "arena_bytes")
"""Per-target firmware figures copied into the flat `figures` (benchmarks/suite/compare.py gates them)."""

log = logging.getLogger("benchmarks")


@dataclass(frozen=True)
class Profile:
    """One size of the suite.

    Attributes:
        scale: synthetic dataset preset (`edgeasc synth --scale`).
        train_split: training split of the student and the reference.
        epochs: student epochs (its accuracy is gated); throughput is the median over epochs after the first.
        reference_epochs: epochs of the CP-Mobile timing reference (at least 2).
        dcase_step_epochs: epochs of the DCASE-baseline-style loop (at least 2).
        batch_size: training batch of all three.
        warmup_steps: linear learning-rate warm-up of the student and the reference (optimiser steps).
        calib_clips: int8 calibration clips.
        bench_runs, bench_warmup: `edgeasc bench` settings.
    """

    scale: str
    train_split: str
    epochs: int
    reference_epochs: int
    dcase_step_epochs: int
    batch_size: int
    warmup_steps: int
    calib_clips: int
    bench_runs: int
    bench_warmup: int


PROFILES: dict[str, Profile] = {
    # 5.5-7.5 minutes on this project's 2-core machine (single thread, other jobs on the cores)
    "ci": Profile(scale="tiny", train_split="split100", epochs=8, reference_epochs=2, dcase_step_epochs=2,
                  batch_size=32, warmup_steps=100, calib_clips=100, bench_runs=30, bench_warmup=5),
    # the demo recipe (recipes/demo_student.toml) on `small`; about an hour single-threaded
    "full": Profile(scale="small", train_split="split25", epochs=16, reference_epochs=2, dcase_step_epochs=2,
                    batch_size=64, warmup_steps=100, calib_clips=300, bench_runs=100, bench_warmup=10),
}


@dataclass(frozen=True)
class PTQProfile:
    """The post-training-quantisation benchmark (`--profile ptq`, docs/export.md "Int8 on a real trained model").

    Two networks trained without QAT on synthetic data at real-recording levels (`edgeasc synth --gain-db
    -28`: log-mel mean about -6, as TAU22), then exported five ways each (`PTQ_VARIANTS`): plain PTQ (raw
    log-mel input, nearest rounding: the reproduction), each default step added in turn (normalised input,
    data-aware rounding, bias correction: the default export), and `--int16-layers auto`.

    Attributes:
        scale, gain_db: the synthetic dataset.
        recipe, overrides: the training (the DCASE baseline recipe; epochs and warm-up scaled to the data).
        models: the networks trained and exported.
        sensitivity_clips: clips of the test fold each sensitivity table is measured on.
    """

    scale: str = "medium"
    gain_db: float = -28.0
    recipe: str = "recipes/baseline_tau22.toml"
    overrides: tuple[str, ...] = ("optim.epochs=30", "optim.warmup_steps=120", "eval_every=10", "device='cpu'")
    models: tuple[str, ...] = ("cpmobile_baseline", "sscp_mobile_s1")
    sensitivity_clips: int = 500


PTQ = PTQProfile()
PTQ_VARIANTS: dict[str, dict[str, Any]] = {
    # what edgeasc did before: the reproduction
    "plain": {"input_norm": False, "weight_rounding": "nearest", "bias_correction": False},
    # each default step added on its own, in order
    "normalised": {"weight_rounding": "nearest", "bias_correction": False},
    "adaptive": {"bias_correction": False},
    "default": {},  # normalised input + data-aware rounding + bias correction
    "int16_auto": {"int16_layers": "auto"},
}
"""Export settings per variant (`export_checkpoint` keyword arguments)."""
PTQ_SENSITIVITY_VARIANTS = ("plain", "default")
"""Variants whose export also measures the sensitivity table."""


@dataclass(frozen=True)
class ParityProfile:
    """The edgeasc side of the converged comparison with the official baseline code (`--profile parity`,
    docs/training.md "The converged comparison"): `edgeasc train` with the DCASE baseline recipe on SYNTHETIC
    `small` (split25), at the comparison's schedule, then the float32 validation and the float16 test that the
    official code reports. The official side's figures are read from the comparison's committed records
    (`PARITY_RECORDS`), for the table; only edgeasc's are gated.

    Attributes:
        scale: the synthetic dataset.
        recipe, overrides: the training (seed added per run).
    """

    scale: str = "small"
    recipe: str = "recipes/baseline_tau22.toml"
    overrides: tuple[str, ...] = ("optim.epochs=20", "optim.warmup_steps=28", "eval_every=0")


PARITY = ParityProfile()
PARITY_RECORDS = ROOT / "benchmarks" / "experiments" / "results" / "training_parity"
"""One JSON record per finished run of benchmarks/experiments/training_parity/converged.py."""


def _median_after_first(rates: list[float]) -> float:
    """Steady-state rate: the median over epochs after the first (allocation and warm-up)."""
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


class Stage:
    """Times a block and logs its start and end."""

    def __init__(self, name: str) -> None:
        self.name, self.seconds = name, 0.0

    def __enter__(self) -> Stage:
        log.info("[%s] ...", self.name)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.t0
        log.info("[%s] %.1f s", self.name, self.seconds)


def train_model(model_name: str, epochs: int, prof: Profile, data: Path, out: Path, cache: Path,
                extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """`edgeasc train` with the demo recipe's optimiser and augmentation (plus `extra` overrides); throughput
    from its metrics."""
    from edgeasc.config import resolve_train_config
    from edgeasc.train.loop import train

    overrides = (f"model.name={model_name!r}", f"optim.epochs={epochs}", f"optim.batch_size={prof.batch_size}",
                 f"optim.warmup_steps={prof.warmup_steps}",
                 f"data.train_split={prof.train_split!r}", "eval_every=0", "device='cpu'",
                 f"data.cache_dir={str(cache)!r}", *extra)
    cfg = resolve_train_config(ROOT / "recipes" / "demo_student.toml", overrides)
    result = train(cfg, data, out, progress=False)
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rates = [h["train_clips_per_s"] for h in history]
    return {"checkpoint": str(result.model_path), "clips_per_s": _median_after_first(rates),
            "epoch_clips_per_s": rates, "val_macro_accuracy": result.final_metrics.get("macro_accuracy"),
            "epochs": epochs, "config": {"batch_size": cfg.optim.batch_size, "lr": cfg.optim.lr,
                                         "warmup_steps": cfg.optim.warmup_steps}}


def dcase_step_throughput(model_name: str, prof: Profile, data: Path, seed: int, workers: int) -> dict[str, Any]:
    """The same model trained the DCASE baseline's way (benchmarks/suite/dcase_baseline_step.py)."""
    sys.path.insert(0, str(HERE))
    import dcase_baseline_step as ref
    import torch

    from edgeasc.data.dataset import TAUDataset
    from edgeasc.models import create_model

    clips = TAUDataset(data).clips(prof.train_split)
    torch.manual_seed(seed)
    model = create_model(model_name)
    rates = ref.train_epochs(model, [data / c.filename for c in clips], [c.label for c in clips],
                             prof.dcase_step_epochs, prof.batch_size, lr=0.004, warmup_steps=100, roll=4000,
                             num_workers=workers, seed=seed)
    return {"clips_per_s": _median_after_first(rates), "epoch_clips_per_s": rates, "num_workers": workers}


def teacher_throughput(name: str, kwargs: dict[str, Any], prof: Profile, data: Path, work: Path, cache: Path,
                       seed: int) -> dict[str, Any]:
    """`compute_teacher_logits` with one freshly initialised member (it also measures the member's accuracy
    on the test split, so clips = training split + test split)."""
    import torch

    from edgeasc.checkpoint import save_checkpoint
    from edgeasc.config import TrainConfig, to_dict
    from edgeasc.data.dataset import TAUDataset
    from edgeasc.models import create_model
    from edgeasc.train.teachers import compute_teacher_logits

    torch.manual_seed(seed)
    tag = f"{name}_{'_'.join(f'{k}{v}' for k, v in kwargs.items())}" if kwargs else name
    ckpt = save_checkpoint(work / f"teacher_{tag}.pt", create_model(name, **kwargs).eval(), stage="bench",
                           config=to_dict(TrainConfig()))  # the default frontend, stated
    ds = TAUDataset(data)
    n = len(ds.clips(prof.train_split)) + len(ds.clips("test"))
    t0 = time.perf_counter()
    compute_teacher_logits([str(ckpt)], data, work / f"teacher_logits_{tag}.npz", prof.train_split,
                           val_split="test", batch_size=prof.batch_size, device="cpu", cache_dir=cache,
                           progress=False, resume=False)
    seconds = time.perf_counter() - t0
    return {"model": name, "kwargs": kwargs, "clips": n, "wall_s": seconds, "clips_per_s": n / seconds}


def export_and_audit(ckpt: Path, prof: Profile, data: Path, out: Path, cache: Path, seed: int) -> dict[str, Any]:
    """Export (int8) and audit one checkpoint; bench its int8 model. Wall times and figures."""
    from edgeasc.audit.report import audit_model
    from edgeasc.bench.harness import bench_model
    from edgeasc.deploy.export import export_checkpoint

    t0 = time.perf_counter()
    result = export_checkpoint(ckpt, data, out, int8=True, calib_clips=prof.calib_clips, seed=seed,
                               cache_dir=cache)
    export_s = time.perf_counter() - t0
    int8 = result.artifacts["tflite_int8"]
    t0 = time.perf_counter()
    audit_tflite = audit_model(int8)
    audit_tflite_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    audit_ckpt = audit_model(ckpt)
    audit_ckpt_s = time.perf_counter() - t0
    # real log-mel features of the test split: bit-exactness checked on what the model will see
    bench = bench_model(int8, runs=prof.bench_runs, warmup=prof.bench_warmup, seed=seed, data_dir=data)
    res = result.report["results"]
    return {
        "int8_model": str(int8),
        "export_s": export_s, "audit_tflite_s": audit_tflite_s, "audit_checkpoint_s": audit_ckpt_s,
        "accuracy": {"torch": res["torch"]["macro_accuracy"],
                     "tflite_float32": res["tflite_float32"]["macro_accuracy"],
                     "tflite_int8": res["tflite_int8"]["macro_accuracy"],
                     "int8_agreement": res["tflite_int8"]["agreement"],
                     "int8_max_abs_logit_error": res["tflite_int8"]["max_abs_logit_error"],
                     "eval_clips": result.report["eval"]["n_clips"]},
        "audit": {"tflite": audit_tflite.to_dict(layers=False), "checkpoint_macs_dcase": audit_ckpt.macs_dcase,
                  "checkpoint_param_count": audit_ckpt.param_count},
        "bench": bench.to_dict(),
    }


def firmware_figures(int8: Path, work: Path, seed: int) -> dict[str, Any]:
    """The int8 model's firmware on each emulated target: `measure_firmware` (one seeded random input, like
    `edgeasc bench --firmware`), its per-layer instructions and wall time; `skipped` with the reason for a
    target whose toolchain is missing. A build or run that fails on an installed toolchain raises."""
    from edgeasc.firmware.toolchain import measure_firmware, toolchain_missing

    out: dict[str, Any] = {}
    for target in FIRMWARE_TARGETS:
        reason = toolchain_missing(target)
        if reason:
            log.warning("firmware %s skipped: %s", target, reason)
            out[target] = {"status": "skipped", "reason": reason}
            continue
        t0 = time.perf_counter()
        fw = measure_firmware(int8, target, work_dir=work / target, seed=seed)
        fw.pop("logits")  # of a random input: no meaning beyond the firmware tests' bit-exactness checks
        out[target] = {"status": "measured", **fw, "wall_s": time.perf_counter() - t0}
        log.info("firmware %s: %s instructions per inference, %.3f per MAC, flash %s bytes, RAM %s bytes",
                 target, f"{fw['instructions_per_inference']:,}", fw["instructions_per_mac"],
                 f"{fw['flash_bytes']:,}", f"{fw['ram_bytes']:,}")
    return out


def toolchain_versions() -> dict[str, str | None]:
    """First version line of the cross compiler and QEMU (instruction counts and sizes depend on them)."""
    import subprocess

    versions: dict[str, str | None] = {}
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm"):
        if shutil.which(tool) is None:
            versions[tool] = None
            continue
        proc = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
        versions[tool] = (proc.stdout.strip().splitlines() or ["?"])[0]
    return versions


def flatten(stages: dict[str, Any]) -> dict[str, Any]:
    """The figures compare.py reads, as flat dotted keys."""
    f: dict[str, Any] = {}
    tr = stages["train"]
    for who in ("student", "reference"):
        f[f"train.{who}.clips_per_s"] = tr[who]["clips_per_s"]
    f["train.dcase_step.clips_per_s"] = tr["dcase_step"]["clips_per_s"]
    f["train.edgeasc_over_dcase_step"] = tr["student"]["clips_per_s"] / tr["dcase_step"]["clips_per_s"]
    f["teacher_logits.teacher.clips_per_s"] = stages["teacher_logits"]["teacher"]["clips_per_s"]
    f["teacher_logits.reference.clips_per_s"] = stages["teacher_logits"]["reference"]["clips_per_s"]
    for who in ("student", "reference"):
        e = stages["export"][who]
        f[f"export.{who}.wall_s"] = e["export_s"]
        f[f"audit.{who}.wall_s"] = e["audit_tflite_s"] + e["audit_checkpoint_s"]
        for rt, lat in e["bench"]["latency_ms"].items():
            f[f"bench.{who}.{rt}.p50_ms"] = lat["p50_ms"]
        mem, comp, num = e["bench"]["memory"], e["bench"]["compute"], e["bench"]["numerics"]
        f[f"static.{who}.macs"] = comp["macs"]
        f[f"static.{who}.macs_dcase"] = comp["macs_dcase"]
        f[f"static.{who}.param_bytes"] = mem["param_bytes"]
        f[f"static.{who}.tflm_arena_min_bytes"] = mem["tflm_arena_min_bytes"]
        f[f"static.{who}.tflm_arena_head_bytes"] = mem["tflm_arena_head_bytes"]
        f[f"static.{who}.bit_exact"] = num["bit_exact"]
        for k in ("torch", "tflite_float32", "tflite_int8", "int8_agreement"):
            f[f"accuracy.{who}.{k}"] = e["accuracy"][k]
        for p in e["bench"]["mcu_estimate"].get("profiles", []):
            f[f"mcu_estimate.{who}.{p['key']}.ms"] = p["latency_ms"]
    for target, fw in stages.get("firmware", {}).get("student", {}).items():
        if fw["status"] == "measured":
            for k in FIRMWARE_FIGURES:
                f[f"firmware.student.{target}.{k}"] = fw[k]
    return f


def _train_runs(data: Path, runs: Path, recipe: str, jobs: dict[str, tuple[str, ...]], threads: int) -> dict[str, Path]:
    """Train (or resume, or reuse when finished) each run of `jobs` (run name -> `--set` overrides of `recipe`):
    `edgeasc train --resume` in one child process per run, side by side when there are cores for it (each
    `threads` threads); children die with this process. A finished run in `runs/NAME` is reused only when its
    config.json is the one these overrides resolve to."""
    import subprocess

    from edgeasc.config import resolve_train_config, to_dict

    cmds = {}
    for run, overrides in jobs.items():
        if (runs / run / "model.pt").is_file():  # finished: reused only when it is this benchmark's run
            want = to_dict(resolve_train_config(ROOT / recipe, overrides))
            have = json.loads((runs / run / "config.json").read_text(encoding="utf-8"))
            if have != json.loads(json.dumps(want)):
                raise RuntimeError(f"{runs / run} holds a run with another config; move it away to retrain")
            continue
        cmds[run] = [sys.executable, "-m", "edgeasc.cli", "train", "--data", str(data), "--out", str(runs / run),
                     "--recipe", str(ROOT / recipe), *[a for o in overrides for a in ("--set", o)], "--resume",
                     "--no-progress"]
    parallel = max(1, min(len(cmds), (os.cpu_count() or 1) // threads))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    pending, procs = list(cmds.items()), []
    runs.mkdir(parents=True, exist_ok=True)
    try:
        while pending or procs:
            while pending and len(procs) < parallel:
                run, cmd = pending.pop(0)
                log_f = open(runs / f"{run}.log", "a", encoding="utf-8")
                log.info("training %s (log: %s)", run, log_f.name)
                procs.append((run, subprocess.Popen(cmd, stdout=log_f, stderr=subprocess.STDOUT, env=env), log_f))
            run, proc, log_f = procs[0]
            code = proc.wait()
            log_f.close()
            procs.pop(0)
            if code != 0:
                raise RuntimeError(f"training {run} failed (exit {code}); see {runs / (run + '.log')}")
    finally:
        for _, proc, log_f in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log_f.close()
    return {run: runs / run / "model.pt" for run in jobs}


def run_ptq(name: str, work: Path, threads: int, seed: int, models: tuple[str, ...] = PTQ.models) -> Path:
    """The PTQ benchmark: train, export each of `models` the `PTQ_VARIANTS` ways, audit and bench the default int8 file."""
    from edgeasc.artifacts import write_json_atomic
    from edgeasc.audit.report import audit_model
    from edgeasc.bench.harness import bench_model
    from edgeasc.bench.machine import describe_machine
    from edgeasc.deploy.export import export_checkpoint
    from edgeasc.synth.generate import generate_dataset
    from edgeasc.synth.presets import Difficulty

    t_all = time.perf_counter()
    work = work / "ptq"
    data, runs = work / "data", work / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    with Stage(f"synth {PTQ.scale} at {PTQ.gain_db:+g} dB"):
        if not (data / "meta.csv").is_file():
            generate_dataset(data, scale=PTQ.scale, seed=seed, progress=False, overwrite=True,
                             difficulty=Difficulty(output_gain_db=PTQ.gain_db))
    with Stage(f"train {', '.join(models)}"):
        checkpoints = _train_runs(data, runs, PTQ.recipe, {m: (f"model.name={m!r}", f"seed={seed}", *PTQ.overrides)
                                                           for m in models}, threads)
    stages: dict[str, Any] = {}
    figures: dict[str, Any] = {}
    for model, ckpt in checkpoints.items():
        stages[model] = {}
        for variant, options in PTQ_VARIANTS.items():
            with Stage(f"export {model} ({variant})") as st:
                sens = PTQ.sensitivity_clips if variant in PTQ_SENSITIVITY_VARIANTS else None
                result = export_checkpoint(ckpt, data, runs / model / f"export_{variant}", int8=True, seed=seed,
                                           sensitivity_clips=sens, **options)
            rep = result.report
            r8, rt = rep["results"]["tflite_int8"], rep["results"]["torch"]
            entry = {"wall_s": st.seconds, "report": str(result.artifacts["report"]),
                     "torch_macro": rt["macro_accuracy"], "int8_macro": r8["macro_accuracy"],
                     "int8_agreement": r8["agreement"], "accuracy_drop_pp": r8["accuracy_drop_pp"],
                     "max_abs_logit_error": r8["max_abs_logit_error"], "eval_clips": rep["eval"]["n_clips"],
                     "calibration": rep["calibration"], "int16": rep.get("int16")}
            if "sensitivity" in rep:
                sens_rep = rep["sensitivity"]
                entry["sensitivity"] = {k: sens_rep[k] for k in ("n_clips", "all", "weights_only", "activations_only")}
                entry["sensitivity"]["worst"] = sens_rep["rows"][:10]
            if variant == "default":
                int8 = result.artifacts["tflite_int8"]
                audit = audit_model(int8)
                bench = bench_model(int8, runs=20, warmup=3, seed=seed, data_dir=data)
                entry["audit"] = {"param_bytes": audit.param_bytes, "macs_dcase": audit.macs_dcase,
                                  "within_budget": not audit.violations}
                entry["bit_exact"] = bench.numerics.bit_exact
                figures[f"ptq.{model}.default.param_bytes"] = audit.param_bytes
                figures[f"ptq.{model}.default.macs_dcase"] = audit.macs_dcase
                figures[f"ptq.{model}.default.within_budget"] = not audit.violations
                figures[f"ptq.{model}.default.bit_exact"] = bench.numerics.bit_exact
            stages[model][variant] = entry
            for k in ("torch_macro", "int8_macro", "int8_agreement", "accuracy_drop_pp"):
                figures[f"ptq.{model}.{variant}.{k}"] = entry[k]
        cal = stages[model]["default"]["calibration"]
        figures[f"ptq.{model}.logmel_mean"] = cal["feature_mean"]
    result = {
        "schema": SCHEMA, "name": name, "profile": "ptq", "profile_settings": asdict(PTQ), "seed": seed,
        "torch_threads": threads, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_s": time.perf_counter() - t_all, "machine": describe_machine(), "figures": figures, "stages": stages,
    }
    path = write_json_atomic(HERE / "results" / f"{name}.json", result)
    log.info("wrote %s (%.0f s)", path, result["wall_s"])
    print(format_ptq(result))
    return path


def format_ptq(result: dict[str, Any]) -> str:
    """The PTQ table: per model and variant, accuracies, agreement and drop."""
    rows = [("model", "export", "torch macro %", "int8 macro %", "agreement %", "drop pp", "int16 layers")]
    for model, variants in result["stages"].items():
        for variant, e in variants.items():
            rows.append((model, variant, f"{100 * e['torch_macro']:.2f}", f"{100 * e['int8_macro']:.2f}",
                         f"{100 * e['int8_agreement']:.2f}", f"{e['accuracy_drop_pp']:+.2f}",
                         str(len(e["int16"]["layers"])) if e.get("int16") else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    return "\n".join(["PTQ benchmark (SYNTHETIC, real-recording log-mel levels)", *lines])


def official_parity_figures(records: Path = PARITY_RECORDS) -> dict[str, Any]:
    """The official code's runs of the converged comparison: per seed, float32 validation and float16 test."""
    runs = {}
    for path in sorted(records.glob("official_seed*.json")):
        rec = json.loads(path.read_text(encoding="utf-8"))
        runs[int(rec["seed"])] = {"val_fp32": rec["val_fp32"], "test_fp16": rec["test_fp16"]}
    out: dict[str, Any] = {"runs": runs}
    if runs:
        for k in ("val_fp32", "test_fp16"):
            out[f"mean_{k}"] = statistics.fmean(r[k] for r in runs.values())
    return out


def run_parity(name: str, work: Path, threads: int, seed: int) -> Path:
    """The parity benchmark: train (or reuse the finished run of this config), then validate and test."""
    from edgeasc.artifacts import write_json_atomic
    from edgeasc.bench.machine import describe_machine
    from edgeasc.evaluate import evaluate_checkpoint
    from edgeasc.synth.generate import generate_dataset

    t_all = time.perf_counter()
    work = work / "parity"
    data, runs = work / "data", work / "runs"
    with Stage(f"synth {PARITY.scale}"):
        if not (data / "meta.csv").is_file():
            generate_dataset(data, scale=PARITY.scale, seed=0, progress=False, overwrite=True)
    run_name = f"seed{seed}"
    with Stage(f"train cpmobile_baseline ({run_name}; {', '.join(PARITY.overrides)})") as st:
        ckpt = _train_runs(data, runs, PARITY.recipe, {run_name: (f"seed={seed}", *PARITY.overrides)},
                           threads)[run_name]
    train_s = st.seconds
    final = json.loads((ckpt.parent / "metrics.json").read_text(encoding="utf-8"))
    with Stage("float16 test"):
        fp16 = evaluate_checkpoint(ckpt, data, out_dir=runs / run_name / "eval_fp16", precision="fp16")
    official = official_parity_figures()
    figures: dict[str, Any] = {"parity.edgeasc.val_fp32": final["macro_accuracy"],
                               "parity.edgeasc.test_fp16": fp16["macro_accuracy"]}
    for k in ("val_fp32", "test_fp16"):
        if f"mean_{k}" in official:
            figures[f"parity.official.mean_{k}"] = official[f"mean_{k}"]
    result = {
        "schema": SCHEMA, "name": name, "profile": "parity", "profile_settings": asdict(PARITY), "seed": seed,
        "torch_threads": threads, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_s": time.perf_counter() - t_all, "machine": describe_machine(), "figures": figures,
        "stages": {"train_s": train_s, "checkpoint": str(ckpt), "bn_debias": final.get("bn_debias"),
                   "per_device": fp16.get("per_device"), "official": official},
    }
    path = write_json_atomic(HERE / "results" / f"{name}.json", result)
    log.info("wrote %s (%.0f s)", path, result["wall_s"])
    print(format_parity(result))
    return path


def format_parity(result: dict[str, Any]) -> str:
    """edgeasc's figures beside the official code's mean over its recorded seeds."""
    f, official = result["figures"], result["stages"]["official"]
    lines = [f"training parity (SYNTHETIC {PARITY.scale}, macro accuracy on the test fold, seed {result['seed']})"]
    for k, label in (("val_fp32", "float32 validation"), ("test_fp16", "float16 test")):
        line = f"  {label:<19} edgeasc {100 * f[f'parity.edgeasc.{k}']:.2f}%"
        if f"parity.official.mean_{k}" in f:
            line += (f"   official code {100 * f[f'parity.official.mean_{k}']:.2f}% (mean of seeds "
                     f"{', '.join(str(s) for s in official['runs'])})")
        lines.append(line)
    return "\n".join(lines)


def run(profile: str, name: str, work: Path, threads: int, seed: int, dcase_workers: int) -> Path:
    import torch

    from edgeasc.artifacts import write_json_atomic
    from edgeasc.bench.machine import describe_machine
    from edgeasc.config import FrontendConfig
    from edgeasc.data.dataset import TAUDataset, load_waveforms
    from edgeasc.synth.generate import generate_dataset

    prof = PROFILES[profile]
    torch.set_num_threads(threads)
    t_all = time.perf_counter()
    work = work / profile
    data, cache, runs = work / "data", work / "cache", work / "runs"
    if runs.exists():
        shutil.rmtree(runs)  # fresh training every time: throughput and accuracy are measured, not reused
    runs.mkdir(parents=True)
    stages: dict[str, Any] = {}

    with Stage(f"synth {prof.scale}") as st:
        if not (data / "meta.csv").is_file():
            generate_dataset(data, scale=prof.scale, seed=seed, progress=False, overwrite=True)
    stages["synth_s"] = st.seconds
    with Stage("waveform cache") as st:
        ds, fe = TAUDataset(data), FrontendConfig()
        for split in (prof.train_split, "test"):
            load_waveforms(ds.root, ds.clips(split), fe.sample_rate_hz, fe.clip_samples, cache)
    stages["cache_s"] = st.seconds

    train: dict[str, Any] = {}
    with Stage(f"train {STUDENT} ({prof.epochs} epochs)"):
        train["student"] = {"model": STUDENT, **train_model(STUDENT, prof.epochs, prof, data, runs / "student", cache)}
    # right after the student, so that both see the machine in the same state
    with Stage(f"DCASE-baseline-style training of {STUDENT} ({prof.dcase_step_epochs} epochs)"):
        train["dcase_step"] = {"model": STUDENT, **dcase_step_throughput(STUDENT, prof, data, seed, dcase_workers)}
    with Stage(f"train {REFERENCE} ({prof.reference_epochs} epochs, timing reference)"):
        train["reference"] = {"model": REFERENCE, **train_model(REFERENCE, prof.reference_epochs, prof, data,
                                                                runs / "reference", cache)}
    stages["train"] = train
    log.info("training throughput: edgeasc %.1f clips/s, DCASE-baseline-style %.1f clips/s (x%.2f)",
             train["student"]["clips_per_s"], train["dcase_step"]["clips_per_s"],
             train["student"]["clips_per_s"] / train["dcase_step"]["clips_per_s"])

    with Stage("teacher logits"):
        stages["teacher_logits"] = {
            "teacher": teacher_throughput(*TEACHER, prof, data, runs, cache, seed),
            "reference": teacher_throughput(REFERENCE, {}, prof, data, runs, cache, seed),
        }

    stages["export"] = {}
    for who in ("student", "reference"):
        with Stage(f"export, audit and bench of {train[who]['model']}"):
            stages["export"][who] = export_and_audit(Path(train[who]["checkpoint"]), prof, data,
                                                     runs / who / "export", cache, seed)
    with Stage(f"firmware of the int8 {STUDENT} ({', '.join(FIRMWARE_TARGETS)} under QEMU)"):
        stages["firmware"] = {
            "toolchain": toolchain_versions(),
            "student": firmware_figures(Path(stages["export"]["student"]["int8_model"]),
                                        runs / "student" / "firmware", seed),
        }

    result = {
        "schema": SCHEMA,
        "name": name,
        "profile": profile,
        "profile_settings": asdict(prof),
        "seed": seed,
        "torch_threads": threads,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_s": time.perf_counter() - t_all,
        "machine": describe_machine(),
        "figures": flatten(stages),
        "stages": stages,
    }
    path = write_json_atomic(HERE / "results" / f"{name}.json", result)
    log.info("wrote %s (%.0f s)", path, result["wall_s"])
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted([*PROFILES, "ptq", "parity"]), default="ci",
                        help="ci, full, ptq: the post-training-quantisation benchmark (hours; docs/export.md), or "
                             "parity: edgeasc's side of the training-parity comparison (20 min; docs/training.md)")
    parser.add_argument("--name", help="result name: benchmarks/suite/results/NAME.json (default: the profile)")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".work",
                        help="data, caches and runs (the synthetic data is kept between runs)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: accuracy at the fixed seed does not depend on the core "
                             "count, and timings are not disturbed by other load on the cores)")
    parser.add_argument("--dcase-workers", type=int, default=0,
                        help="DataLoader workers of the DCASE-baseline-style loop (0: load in the training process)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ptq-models", default=",".join(PTQ.models),
                        help=f"with --profile ptq: the networks, comma-separated (default {','.join(PTQ.models)}); "
                             "the gate checks the models of the baseline")
    args = parser.parse_args(argv)
    ptq_models = tuple(m for m in args.ptq_models.split(",") if m)
    if not ptq_models or not set(ptq_models) <= set(PTQ.models):
        parser.error(f"--ptq-models: choose from {', '.join(PTQ.models)}")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))  # before torch is imported
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("edgeasc").setLevel(logging.WARNING)
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing
    if args.profile == "ptq":
        run_ptq(args.name or "ptq", args.work, args.threads, args.seed, ptq_models)
    elif args.profile == "parity":
        run_parity(args.name or "parity", args.work, args.threads, args.seed)
    else:
        run(args.profile, args.name or args.profile, args.work, args.threads, args.seed, args.dcase_workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
