"""Regenerate export/: reference int8 models that users can take without training anything (`make export`).

A fixed, seeded recipe on edgeasc's SYNTHETIC data (`edgeasc synth --scale tiny --seed 0`; nothing downloads),
driven only through the command line (`python -m edgeasc.cli ...`), two reference models in parallel, one
thread each:

- `demo_general`: the demo pipeline's general int8 student (recipes/pipeline_demo.toml): an SSCP-Mobile
  base-48 teacher (recipes/demo_teacher_sscp.toml), its logits, AGP pruning to base 32 with KD
  (recipes/demo_prune.toml), quantisation-aware KD fine-tuning (recipes/demo_qat.toml), int8 export;
- `s1`: the seed's S1 architecture (`sscp_mobile_s1`, recipes/demo_student.toml, labels only), then
  quantisation-aware fine-tuning (recipes/demo_qat.toml), int8 export.

The recipes are the demo's; `MODELS` below shortens their schedules (epochs, warm-up) and trains on the
`tiny` scale's split100 (400 clips) so that the whole run fits 15 minutes on 2 cores (7.1 to 9.6 minutes
measured on this project's 2 cores while other jobs used them, load average 2.5 to 4.4). For each model export/<model>/ gets the int8
.tflite and its sidecar, the .onnx, the audit JSON of each (`edgeasc audit FILE --json`), the export's parity
report (export_report.json, paths made relative), the calibration clip ids and model_card.md; export/ gets
README.md and manifest.json (sha256 and size of every file, the commands, the data). Everything is written
into a staging folder beside export/ and renamed into place at the end, so export/ holds the previous
complete set or the new one.
benchmarks/suite/check_export.py (`make bench-ci`) checks the committed folder.

Deterministic: the same seeds, one thread per training, on the same CPU type give byte-identical model files
(docs/training.md, "Determinism"); another CPU can give slightly different weights.

Usage:
    make export
    python benchmarks/suite/export_refs.py [--out export] [--work benchmarks/.work/export] [--jobs 2]
    python benchmarks/suite/export_refs.py --only s1            # one model (the other is kept from export/)
    python benchmarks/suite/export_refs.py --reaudit            # no training: re-audit the committed files and
                                                                # rewrite audits, model cards and manifest

Exit codes: 0 done; 1 a step failed (its command and the end of its log are printed) or a model is over the
budget; 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
import check_export  # noqa: E402  (the same audit options, fields and hashing as the check)

SCALE = "tiny"
DATA_SEED = 0
SEED = 0
TRAIN_SPLIT = "split100"
CALIB_CLIPS = 200
SHIPPED = ("model_int8.tflite", "model_int8.json", "model.onnx", "calibration_clips.txt")
"""Files copied from each `edgeasc export --int8` folder (plus export_report.json, with relative paths)."""

COMMON = ("--seed", str(SEED), "--device", "cpu", "--batch-size", "32",
          "--set", f'data.train_split="{TRAIN_SPLIT}"', "--no-progress")
"""Options of every training command: seed, CPU, batch 32 (tiny has 400 training clips), the split."""


@dataclass
class Step:
    name: str
    argv: Callable[[Path, Path], list[str]]
    """(data folder, run folder of the model) -> the `edgeasc` arguments."""


@dataclass
class Model:
    name: str
    title: str
    what: str
    steps: list[Step]
    export_dir: str
    """The `edgeasc export` output folder, relative to the model's run folder."""
    trained: list[str] = field(default_factory=list)
    """One line per training step for the model card."""


def _toml_inline(value: Any) -> str:
    """A JSON-like value as a TOML literal for `--set` (inline tables and arrays)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_inline(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def _pruned_model_overrides(run: Path) -> list[str]:
    """`--set` of the pruned network (name and widths from the prune run's prune.json), as the pipeline's
    `init = "pruned"` does: QAT starts from the pruned model with its own architecture."""
    config = json.loads((run / "pruned" / "prune.json").read_text(encoding="utf-8"))["final"]["model_config"]
    return ["--set", f"model.name={json.dumps(config['name'])}",
            "--set", f"model.kwargs={_toml_inline(config['kwargs'])}"]


def _rel(path: Path) -> str:
    return os.path.relpath(path, ROOT)


EXPORT_STEP = Step("export", lambda d, r: [
    "export", _rel(r / "qat" / "model.pt"), "--int8", "--data", _rel(d), "--out", _rel(r / "qat" / "export"),
    "--calib-clips", str(CALIB_CLIPS), "--seed", str(SEED), "--no-progress"])
"""The last step of both models: `edgeasc export --int8` of the QAT run (into qat/export, each model's export_dir)."""


MODELS: dict[str, Model] = {
    "demo_general": Model(
        name="demo_general",
        title="the demo pipeline's general int8 student (SSCP-Mobile base 48, AGP-pruned to base 32, QAT)",
        what=("The network of `make demo` (recipes/pipeline_demo.toml): its stages teachers (the SSCP member), "
              "teacher_logits, pruned and qat, whose result is the device bundle's general model. The demo's "
              "device-specific fine-tuning is not run: this is the model every device id without its own "
              "model gets."),
        steps=[
            Step("teacher", lambda d, r: [
                "train", "--recipe", "recipes/demo_teacher_sscp.toml", "--data", _rel(d), "--out", _rel(r / "teacher"),
                "--epochs", "12", "--set", "optim.warmup_steps=30", "--set", "eval_every=0", *COMMON]),
            Step("teacher_logits", lambda d, r: [
                "teacher-logits", "--teacher", _rel(r / "teacher"), "--data", _rel(d),
                "--out", _rel(r / "teacher_logits.npz"), "--split", TRAIN_SPLIT, "--device", "cpu", "--no-progress"]),
            Step("pruned", lambda d, r: [
                "prune", _rel(r / "teacher" / "model.pt"), "--recipe", "recipes/demo_prune.toml", "--data", _rel(d),
                "--out", _rel(r / "pruned"), "--epochs", "3", "--set", "prune.finetune_epochs=3",
                "--set", "optim.warmup_steps=5", "--set", "prune.finetune_warmup_steps=5",
                "--set", f'kd.teacher_logits="{_rel(r / "teacher_logits.npz")}"', *COMMON]),
            Step("qat", lambda d, r: [
                "train", "--recipe", "recipes/demo_qat.toml", "--data", _rel(d), "--out", _rel(r / "qat"),
                *_pruned_model_overrides(r), "--set", f'model.init_checkpoint="{_rel(r / "pruned" / "model.pt")}"',
                "--set", f'kd.teacher_logits="{_rel(r / "teacher_logits.npz")}"',
                "--epochs", "3", "--set", "optim.warmup_steps=5", *COMMON]),
            EXPORT_STEP,
        ],
        export_dir="qat/export",
        trained=[
            "teacher: `sscp_mobile_b48` (139,820 parameters), recipes/demo_teacher_sscp.toml, 12 epochs, labels only",
            "teacher logits: that one teacher's logits on the 400 training clips (the demo averages two teachers)",
            "pruned: AGP from base 48 to base 32 (recipes/demo_prune.toml: 3 steps, round_to 8) in 3 epochs with "
            "KD from those logits, then 3 epochs of KD fine-tuning",
            "qat: 3 epochs of KD fine-tuning with the weights on TFLite's per-channel int8 grid "
            "(recipes/demo_qat.toml, the pruned widths)",
        ],
    ),
    "s1": Model(
        name="s1",
        title="the seed's S1 architecture (`sscp_mobile_s1`), int8",
        what=("SSCP-Mobile with the seed's shipped S1 widths (stem 8/32; blocks (72, 32) x 3, (72, 56), "
              "(124, 56), (124, 104); `edgeasc models --pattern sscp_mobile_s1`), trained directly with labels "
              "(recipes/demo_student.toml, the demo student) and fine-tuned on the int8 grid "
              "(recipes/demo_qat.toml). Not the seed's S1 system, which distils from PaSST teachers and prunes "
              "from base 64 on TAU22 (recipes/pipeline_s1.toml)."),
        steps=[
            Step("student", lambda d, r: [
                "train", "--recipe", "recipes/demo_student.toml", "--data", _rel(d), "--out", _rel(r / "student"),
                "--epochs", "24", "--set", "optim.warmup_steps=30", "--set", "eval_every=0", *COMMON]),
            Step("qat", lambda d, r: [
                "train", "--recipe", "recipes/demo_qat.toml", "--data", _rel(d), "--out", _rel(r / "qat"),
                "--set", f'model.init_checkpoint="{_rel(r / "student" / "model.pt")}"',
                "--epochs", "3", "--set", "optim.warmup_steps=5", *COMMON]),
            EXPORT_STEP,
        ],
        export_dir="qat/export",
        trained=[
            "student: `sscp_mobile_s1` (63,748 parameters), recipes/demo_student.toml, 24 epochs, labels only",
            "qat: 3 epochs with the weights on TFLite's per-channel int8 grid (recipes/demo_qat.toml)",
        ],
    ),
}


assert tuple(MODELS) == check_export.REFERENCE_MODELS, "the check's REFERENCE_MODELS name these models"
assert SHIPPED[0] == check_export.MODEL_FILES[0] and SHIPPED[2] == check_export.MODEL_FILES[1]


class StepFailed(Exception):
    pass


def edgeasc(args: list[str], log_path: Path | None = None, capture: bool = False) -> subprocess.CompletedProcess:
    """`python -m edgeasc.cli ARGS` from the repository root, one thread; its output to `log_path`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "edgeasc.cli", *args]
    if capture:
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert log_path is not None
    with log_path.open("w", encoding="utf-8") as log:
        log.write(f"$ {printable(args)}\n")
        log.flush()
        return subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def printable(args: list[str]) -> str:
    return "edgeasc " + shlex.join(args)


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:])
    except OSError:
        return ""


_print_lock = threading.Lock()


def say(message: str) -> None:
    with _print_lock:
        print(message, flush=True)


def train_model(model: Model, data: Path, work: Path) -> dict[str, Any]:
    """Run the model's steps from scratch in WORK/runs/<model>; its commands and wall times."""
    run = work / "runs" / model.name
    logs = work / "logs"
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    logs.mkdir(parents=True, exist_ok=True)
    done = []
    for step in model.steps:
        args = step.argv(data, run)
        log_path = logs / f"{model.name}.{step.name}.log"
        say(f"[{model.name}] {step.name}: {printable(args)}")
        t0 = time.monotonic()
        proc = edgeasc(args, log_path)
        wall = time.monotonic() - t0
        if proc.returncode != 0:
            raise StepFailed(f"[{model.name}] {step.name} failed (exit {proc.returncode}) after {wall:.0f} s; "
                             f"log {_rel(log_path)}:\n{_tail(log_path)}")
        say(f"[{model.name}] {step.name} done in {wall:.0f} s")
        done.append({"step": step.name, "command": printable(args), "wall_s": round(wall, 1)})
    return {"steps": done, "export_dir": _rel(run / model.export_dir)}


def _normalised_report(report: dict[str, Any]) -> dict[str, Any]:
    """export_report.json with its artifact paths as file names (the files sit beside it)."""
    out = json.loads(json.dumps(report))
    for artifact in (out.get("artifacts") or {}).values():
        if isinstance(artifact, dict) and "path" in artifact:
            artifact["path"] = Path(artifact["path"]).name
    return out


def collect(model: Model, export_dir: Path, dest: Path) -> None:
    """Copy the shipped files of one `edgeasc export` folder into `dest`."""
    dest.mkdir(parents=True)
    for name in SHIPPED:
        shutil.copy2(export_dir / name, dest / name)
    report = json.loads((export_dir / "export_report.json").read_text(encoding="utf-8"))
    write_json(dest / "export_report.json", _normalised_report(report))


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def audit_folder(staging: Path, name: str) -> dict[str, dict[str, Any]]:
    """`edgeasc audit FILE --json` of each model file of staging/<name> into FILE-stem.audit.json (path made
    relative to export/); the audits by file name. A model over budget raises StepFailed."""
    audits = {}
    for file in check_export.MODEL_FILES:
        path = staging / name / file
        args = check_export.audit_command(path)[3:]
        proc = edgeasc(args, capture=True)
        if proc.returncode not in (0, 1) or not proc.stdout.strip():
            raise StepFailed(f"[{name}] edgeasc audit {file} failed (exit {proc.returncode}): {proc.stderr.strip()}")
        report = json.loads(proc.stdout)
        report["path"] = f"{name}/{file}"
        write_json(path.with_name(path.stem + ".audit.json"), report)
        if proc.returncode == 1:
            raise StepFailed(f"[{name}] {file} is over budget: {'; '.join(report['violations'])}")
        audits[file] = report
    return audits


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def model_card(model: Model, info: dict[str, Any], audits: dict[str, dict[str, Any]], report: dict[str, Any],
               sidecar: dict[str, Any], data: dict[str, Any]) -> str:
    t, o = audits["model_int8.tflite"], audits["model.onnx"]
    budget = t["budget"]
    res = report["results"]
    devices = list(res["torch"]["per_device"])
    ev = report["eval"]
    cal = report["calibration"]
    norm = sidecar.get("input_normalization") or {}
    qin, qout = sidecar["input"], sidecar["output"]
    lines = [
        f"# export/{model.name}: {model.title}",
        "",
        "**Trained on SYNTHETIC data only**: edgeasc's procedural TAU22-layout scenes "
        f"(`{data['command']}`), not the TAU Urban Acoustic Scenes 2022 Mobile recordings. Its accuracy says that "
        "the files work end to end, not how the model does on real audio; for real data, train the same recipes "
        "on TAU22 (docs/training.md).",
        "",
        model.what,
        "",
        "## What was trained",
        "",
        f"Data: SYNTHETIC `{SCALE}` (seed {DATA_SEED}): training split `{TRAIN_SPLIT}` ({data['train_clips']} clips; "
        f"devices a, b, c, s1-s3), test fold `fold1_evaluate` ({ev['n_clips']} clips, devices a-c and s1-s6). "
        f"Seed {SEED}, one thread, CPU, batch 32. Shortened from the demo so that `make export` fits a 2-core CPU:",
        "",
        *[f"- {line}" for line in model.trained],
        f"- export: `edgeasc export --int8`, calibrated on {cal['n_clips']} class-balanced clips of `{cal['split']}` "
        f"(calibration_clips.txt), normalised input, adaptive weight rounding, bias correction (the defaults)",
        "",
        "## Budget (DCASE 2025 Task 1), from the audit of the files",
        "",
        f"`edgeasc audit model_int8.tflite --json` (model_int8.audit.json); limits {budget['param_bytes']:,} "
        f"parameter bytes and {budget['macs']:,} MACs ({budget['mac_rule']} rule):",
        "",
        "| figure | model_int8.tflite | model.onnx (float32) |",
        "|---|---:|---:|",
        f"| parameters | {t['param_count']:,} | {o['param_count']:,} |",
        f"| parameter bytes | {t['param_bytes']:,} ("
        + ", ".join(f"{k} {v:,}" for k, v in t["param_bytes_by_dtype"].items())
        + f") | {o['param_bytes']:,} (float32; {2 * o['param_count']:,} at fp16) |",
        f"| MACs, DCASE rule | {t['macs_dcase']:,} | {o['macs_dcase']:,} |",
        f"| MACs, deployed rule (every operator) | {t['macs']:,} | {o['macs']:,} |",
        f"| peak activation bytes | {t['peak_activation_bytes']:,} | {o['peak_activation_bytes']:,} |",
        f"| file bytes | {t['details']['file_bytes']:,} | {info['onnx_bytes']:,} |",
        f"| within the DCASE 2025 budget | {'yes' if t['within_budget'] else 'NO'} | "
        f"{'yes' if o['within_budget'] else 'NO'} (counted at fp16, as DCASE counts a float model: "
        f"{o['budget']['param_bytes']:,} bytes at its 4 bytes per parameter) |",
        "",
    ]
    if t["macs"] > budget["macs"]:
        lines += [f"The deployed count ({t['macs']:,}, every operator, additions and pooling included) is above "
                  f"{budget['macs']:,}: the DCASE rule charges only the layers with weights (docs/audit.md, "
                  "\"Two MAC counts, kept apart\").", ""]
    lines += [
        "## Accuracy the export measured",
        "",
        f"`edgeasc export --int8` parity report (export_report.json): SYNTHETIC `{SCALE}` test fold "
        f"(`{ev['split']}`, {ev['n_clips']} clips), macro accuracy %, int8 on LiteRT's reference kernels:",
        "",
        "| runtime | macro | " + " | ".join(devices) + " | agreement with torch % |",
        "|---|---:|" + "---:|" * len(devices) + "---:|",
    ]
    for runtime in ("torch", "onnxruntime", "tflite_float32", "tflite_int8"):
        r = res[runtime]
        agree = "-" if runtime == "torch" else _pct(r["agreement"])
        lines.append(f"| {runtime} | {_pct(r['macro_accuracy'])} | "
                     + " | ".join(_pct(r["per_device"][d]) for d in devices) + f" | {agree} |")
    missed = [c for c in report.get("checks", []) if not c["passed"]]
    lines += [""]
    if missed:
        lines.append("Parity targets missed (reported, not hidden): " + "; ".join(
            f"{c['runtime']} {c['metric']} {c['value']:.4f} (target {c['target']})" for c in missed)
            + ". A short-trained model on SYNTHETIC data has tiny top-2 margins; docs/export.md explains the "
              "report and what to do about int8 losses.")
    else:
        lines.append("Every parity target of docs/export.md is met.")
    lines += [
        "",
        "## Using it",
        "",
        f"Input: the log-mel of one 1-s clip at {sidecar['frontend']['sample_rate_hz']:,} Hz "
        f"({sidecar['frontend']['n_mels']} mels x 65 frames, `{qin['shape']}` {qin['dtype']} {qin['layout']}), "
        f"normalised `u = (x - {norm.get('mean', 0):.6g}) / {norm.get('std', 1):.6g}`, quantised with scale "
        f"{qin['scale']:.6g} and zero point {qin['zero_point']}; output: int8 logits of the 10 scenes (scale "
        f"{qout['scale']:.6g}, zero point {qout['zero_point']}). The .tflite carries this as metadata; "
        "model_int8.json is the same as a file.",
        "",
        "```",
        f"edgeasc audit export/{model.name}/model_int8.tflite",
        f"edgeasc evaluate export/{model.name}/model_int8.tflite --data DATA",
        f"edgeasc predict clip.wav --model export/{model.name}/model_int8.tflite",
        f"edgeasc bench export/{model.name}/model_int8.tflite",
        f"edgeasc firmware export/{model.name}/model_int8.tflite --out fw/",
        "```",
        "",
        "## Regenerating it",
        "",
        "`make export` (benchmarks/suite/export_refs.py; about 15 minutes at most on 2 cores). It ran, from the "
        "repository root, with `OMP_NUM_THREADS=1`:",
        "",
        "```",
        data["command"],
        *[s["command"] for s in info["steps"]],
        "```",
        "",
        "then copied model_int8.tflite, model_int8.json, model.onnx, calibration_clips.txt and export_report.json "
        "(paths made relative) here and audited each model file (`edgeasc audit FILE --json`). `make bench-ci` "
        "checks these files against manifest.json and the committed audits (benchmarks/suite/check_export.py).",
        "",
    ]
    return "\n".join(lines)


README = """\
# export/: reference int8 models, ready to use

Two trained models under the DCASE 2025 Task 1 budget (128,000 parameter bytes, 30,000,000 MACs), exported to
full-integer int8 TFLite: use them with `edgeasc evaluate`, `predict`, `bench`, `firmware` or your own
interpreter without training anything. **They are trained on SYNTHETIC data** (`edgeasc synth --scale tiny`),
with shortened demo recipes: they show that the files work end to end, not how a model does on TAU22.

| folder | model |
|---|---|
| `demo_general/` | the demo pipeline's general int8 student (recipes/pipeline_demo.toml): SSCP-Mobile base 48 pruned by AGP to base 32 with KD, then QAT |
| `s1/` | the seed's S1 architecture, `sscp_mobile_s1` (recipes/demo_student.toml, then QAT) |

Each folder holds:

| file | what it is |
|---|---|
| `model_int8.tflite` | the deployable model: int8 weights, activations, input and output (`edgeasc export --int8`) |
| `model_int8.json` | its metadata (frontend, labels, input normalisation and quantisation), also embedded in the .tflite |
| `model.onnx` | the same network in float32 (BatchNorm folded, normalised input), opset 17 |
| `model_int8.audit.json`, `model.audit.json` | `edgeasc audit FILE --json` of each model file (`path` relative to export/) |
| `export_report.json` | the export's parity report: accuracy of torch, ONNX Runtime, TFLite float32 and int8 on the SYNTHETIC test fold, agreement, targets (paths relative; the float32 .tflite and convert.log it names are not shipped) |
| `calibration_clips.txt` | the training clips the int8 model was calibrated on |
| `model_card.md` | what it is, what it was trained on, the audited budget figures, the measured accuracy, the commands |

`manifest.json` lists every file with its size and sha256, the commands that made it, the data and the machine.

## Regenerating

```
make export                                         # trains and exports both (7-10 minutes on 2 shared cores)
python benchmarks/suite/export_refs.py --only s1    # one of them
python benchmarks/suite/export_refs.py --reaudit    # no training: re-audit after a change to edgeasc audit
```

The recipe is fixed and seeded (benchmarks/suite/export_refs.py); on the same CPU type it gives byte-identical
model files. The folder is rebuilt in a staging folder and renamed into place.

## How it is checked

`make bench-ci` (CI, after `make test`) runs `benchmarks/suite/check_export.py`: every file's sha256 against
manifest.json, `edgeasc audit` of every model file against the DCASE 2025 budget and field by field against
its committed audit JSON (the int8 .tflite at its stored width; the float32 .onnx at the fp16 width DCASE
counts a float model at, i.e. 256,000 bytes at 4 bytes per parameter), and each model card against its audit.
Any mismatch is one line naming the file, and exit 1. So a file edited here by hand fails the check: change
benchmarks/suite/export_refs.py (this README is written by it too) and regenerate.
"""


def finalize(staging: Path, infos: dict[str, dict[str, Any]], data: dict[str, Any], extra: dict[str, Any]) -> None:
    """Audits, model cards, README and manifest of a staging folder whose model folders are complete."""
    files = []
    models = {}
    for name, info in infos.items():
        model = MODELS[name]
        audits = audit_folder(staging, name)
        report = json.loads((staging / name / "export_report.json").read_text(encoding="utf-8"))
        sidecar = json.loads((staging / name / "model_int8.json").read_text(encoding="utf-8"))
        info["onnx_bytes"] = (staging / name / "model.onnx").stat().st_size
        (staging / name / "model_card.md").write_text(model_card(model, info, audits, report, sidecar, data),
                                                      encoding="utf-8")
        models[name] = {"title": model.title, "model_card": f"{name}/model_card.md",
                        "int8_audit": f"{name}/model_int8.audit.json", "steps": info["steps"]}
        for path in sorted((staging / name).iterdir()):
            entry: dict[str, Any] = {"path": f"{name}/{path.name}"}
            if path.suffix in check_export.MODEL_SUFFIXES:
                entry["audit"] = f"{name}/{path.stem}.audit.json"
                entry["audit_args"] = list(check_export.AUDIT_ARGS[path.suffix])
            entry["bytes"] = path.stat().st_size
            entry["sha256"] = check_export.sha256_of(path)
            files.append(entry)
    (staging / "README.md").write_text(README, encoding="utf-8")
    files.append({"path": "README.md", "bytes": (staging / "README.md").stat().st_size,
                  "sha256": check_export.sha256_of(staging / "README.md")})
    manifest = {"schema": check_export.MANIFEST_SCHEMA, "generated_by": "benchmarks/suite/export_refs.py",
                "synthetic": True, "data": data, "models": models, **extra, "files": files}
    write_json(staging / check_export.MANIFEST, manifest)


def publish(staging: Path, out: Path) -> None:
    """Rename `staging` to `out`; a previous `out` is renamed aside first and removed after."""
    old = out.with_name(f".{out.name}-old.tmp")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)
    staging.rename(out)
    if old.exists():
        shutil.rmtree(old)


def environment() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    except OSError:
        pass
    versions = {}
    for dist in ("edgeasc", "torch", "onnx", "onnx2tf", "tensorflow", "ai-edge-litert"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
            "logical_cores": os.cpu_count(), "threads": "OMP_NUM_THREADS=1 per command", "libraries": versions}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "export",
                        help="the folder to (re)generate (default: export/)")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".work" / "export",
                        help="synthetic data, training runs and logs (default: benchmarks/.work/export)")
    parser.add_argument("--jobs", type=int, default=2, choices=(1, 2), help="models trained at the same time")
    parser.add_argument("--only", choices=sorted(MODELS), action="append",
                        help="regenerate only this model (repeatable); the others are kept from --out")
    parser.add_argument("--reaudit", action="store_true",
                        help="train nothing: re-audit the model files in --out, rewrite audits, cards and manifest")
    args = parser.parse_args(argv)
    out, work = args.out.resolve(), args.work.resolve()
    if args.reaudit and args.only:
        parser.error("--reaudit re-audits every model; it takes no --only")
    previous = None
    if args.reaudit or args.only:
        try:
            previous = json.loads((out / check_export.MANIFEST).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            parser.error(f"{'--reaudit' if args.reaudit else '--only'} needs a complete {out} "
                         f"({check_export.MANIFEST}: {exc}); run without it first")
    staging = out.with_name(f".{out.name}-staging.tmp")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    t0 = time.monotonic()
    try:
        if args.reaudit:
            for name in MODELS:
                shutil.copytree(out / name, staging / name)
            infos = {name: {"steps": previous["models"][name]["steps"]} for name in MODELS}
            finalize(staging, infos, previous["data"],
                     {k: previous[k] for k in ("environment", "wall_s", "generated") if k in previous}
                     | {"reaudited": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        else:
            data_dir = work / f"data_{SCALE}_seed{DATA_SEED}"
            work.mkdir(parents=True, exist_ok=True)
            readme = data_dir / "README.md"  # a dataset of another scale or seed there is replaced
            text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
            same = f"- seed: {DATA_SEED}\n" in text and f"- scale: {SCALE} " in text
            synth = ["synth", _rel(data_dir), "--scale", SCALE, "--seed", str(DATA_SEED),
                     "--if-missing" if same or not data_dir.exists() else "--overwrite", "--no-progress"]
            say(f"[data] {printable(synth)}")
            (work / "logs").mkdir(exist_ok=True)
            proc = edgeasc(synth, work / "logs" / "synth.log")
            if proc.returncode != 0:
                raise StepFailed(f"[data] synth failed (exit {proc.returncode}):\n{_tail(work / 'logs' / 'synth.log')}")
            train_clips = sum(1 for _ in (data_dir / "split_setup" / f"{TRAIN_SPLIT}.csv").open()) - 1
            data = {"synthetic": True, "generator": "edgeasc synth", "scale": SCALE, "seed": DATA_SEED,
                    "command": printable(["synth", _rel(data_dir), "--scale", SCALE, "--seed", str(DATA_SEED)]),
                    "train_split": TRAIN_SPLIT, "train_clips": train_clips, "eval_split": "test (fold1_evaluate)"}
            todo = [MODELS[n] for n in (args.only or MODELS)]
            results: dict[str, Any] = {}
            errors: list[str] = []

            def worker(queue: list[Model]) -> None:
                for model in queue:
                    if errors:
                        return
                    try:
                        results[model.name] = train_model(model, data_dir, work)
                    except StepFailed as exc:
                        errors.append(str(exc))

            queues = [todo[i::args.jobs] for i in range(args.jobs)]
            threads = [threading.Thread(target=worker, args=(q,)) for q in queues if q]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            if errors:
                raise StepFailed("\n".join(errors))
            infos = {}
            for name in MODELS:
                if name in results:
                    collect(MODELS[name], ROOT / results[name]["export_dir"], staging / name)
                    infos[name] = {"steps": results[name]["steps"]}
                else:  # --only: keep the other model as committed
                    shutil.copytree(out / name, staging / name)
                    infos[name] = {"steps": previous["models"][name]["steps"]}
            wall = round(time.monotonic() - t0, 1)
            finalize(staging, infos, data, {"generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                            "wall_s": wall, "environment": environment()})
        publish(staging, out)
    except StepFailed as exc:
        print(f"export_refs: {exc}", file=sys.stderr)
        print(f"export_refs: {out} is unchanged", file=sys.stderr)
        shutil.rmtree(staging, ignore_errors=True)
        return 1
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    say(f"export_refs: wrote {_rel(out)} in {time.monotonic() - t0:.0f} s; check it: "
        "python benchmarks/suite/check_export.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
