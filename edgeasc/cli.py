"""Command-line interface: `edgeasc <verb> ...`. Parses, calls one library function, prints.

Exit codes: 0 ok; 1 a domain failure (e.g. a check that fails); 2 bad usage or unreadable input
(missing or corrupt files, invalid config) or an output location that cannot be written (permission,
read-only file system, full disk: one line naming the path); 130 interrupted (Ctrl-C; the message says how
to continue).

One click command per user command and nothing else, which is why this module is over 700 lines.
"""

from __future__ import annotations

import errno
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import click

from edgeasc import __version__
from edgeasc.artifacts import strict_json
from edgeasc.config import CALIB_CLIPS
from edgeasc.errors import EdgeAscError

log = logging.getLogger("edgeasc")


def _setup_logging(quiet: bool) -> None:
    from edgeasc.progress import set_enabled

    set_enabled(not quiet)  # -q: no progress bars either
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("edgeasc")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    root.propagate = False


_cache_dir_option = click.option(
    "--cache-dir", type=click.Path(file_okay=False, path_type=Path),
    help="Waveform cache (default: inside the dataset folder, as `edgeasc train`).")


def _size(path: Path) -> str:
    n = path.stat().st_size
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _seed_value(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """A seed must be >= 0 (numpy's SeedSequence refuses a negative one)."""
    if value is not None and value < 0:
        raise click.BadParameter(f"{value} is negative; a seed is >= 0", ctx, param)
    return value


def _run_shortcuts(epochs_help: str = "Training epochs (optim.epochs).") -> Callable[[Callable], Callable]:
    """--epochs, --batch-size, --seed and --device: short for `--set optim.epochs=N` etc. (they win over --set)."""
    options = [
        click.option("--epochs", type=click.IntRange(min=1), help=epochs_help),
        click.option("--batch-size", type=click.IntRange(min=1), help="Clips per optimiser step (optim.batch_size)."),
        click.option("--seed", type=int, callback=_seed_value, help="Seed of the run (seed)."),
        click.option("--device", help="auto, cpu, cuda or cuda:N (device)."),
    ]

    def decorate(f: Callable) -> Callable:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def _with_shortcuts(overrides: tuple[str, ...], epochs: int | None, batch_size: int | None, seed: int | None,
                    device: str | None) -> tuple[str, ...]:
    """The `--set` overrides followed by those of the shortcut options that were given."""
    given = (("optim.epochs", epochs), ("optim.batch_size", batch_size), ("seed", seed), ("device", device))
    return (*overrides, *(f"{key}={json.dumps(v)}" for key, v in given if v is not None))


_RESUME_HINTS = {
    "train": "; continue the run with --resume",
    "prune": "; continue the stages with --resume",
    "finetune": "; run the same command again to resume the device runs",
    "teacher-logits": "; run the same command again to reuse the finished members",
    "pipeline": "; run the same command again to continue from the interrupted stage",
    "export": "; the output folder keeps its previous export, if it had one",
}
"""What a Ctrl-C leaves behind, per command (every other command simply stops)."""


_WRITE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR,
                           errno.EEXIST})  # EEXIST: a folder of the path is a file


class _Group(click.Group):
    """Turns expected errors into one line on stderr and their documented exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgeAscError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:  # where no up-front check caught it (artifacts.require_writable)
            if exc.errno not in _WRITE_ERRNOS:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: cannot write {where}{exc.strerror}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo(f"interrupted{_RESUME_HINTS.get(ctx.invoked_subcommand or '', '')}", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeasc")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr (no progress bars).")
def cli(quiet: bool) -> None:
    """edgeasc: acoustic scene classification from raw audio to an int8 model under the DCASE 2025 budget."""
    _setup_logging(quiet)


@cli.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--scale", type=click.Choice(["tiny", "small", "medium"]), default="small", show_default=True)
@click.option("--seed", type=int, callback=_seed_value, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace a complete dataset in OUT_DIR.")
@click.option("--if-missing", is_flag=True, help="Do nothing when OUT_DIR already holds a complete dataset.")
@click.option("--gain-db", type=float, default=0.0, show_default=True,
              help="Recording gain of every file, in dB (<= 0): -28 gives real TAU22 log-mel levels "
                   "(mean about -6; docs/synthetic_data.md).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the dataset summary as JSON (no progress bar).")
def synth(out_dir: Path, scale: str, seed: int, overwrite: bool, if_missing: bool, gain_db: float,
          no_progress: bool, as_json: bool) -> None:
    """Write a synthetic acoustic-scene dataset in the TAU Urban Acoustic Scenes 2022 Mobile layout.

    Example: edgeasc synth data/synth --scale small
    """
    from edgeasc.errors import ConfigError
    from edgeasc.synth.generate import generate_dataset
    from edgeasc.synth.presets import Difficulty

    if if_missing and (out_dir / "meta.csv").is_file():
        click.echo(strict_json({"path": str(out_dir), "skipped": True}) if as_json else
                   f"{out_dir} already holds a dataset (meta.csv present); skipping generation")
        return
    try:
        difficulty = Difficulty(output_gain_db=gain_db)
    except ValueError as exc:
        raise ConfigError(f"--gain-db: {exc}") from None
    summary = generate_dataset(out_dir, scale=scale, seed=seed, progress=not (no_progress or as_json),
                               overwrite=overwrite, difficulty=difficulty)
    if as_json:
        click.echo(strict_json(summary.to_dict(), indent=2))
        return
    click.echo(summary.describe())
    click.echo(f"next: {summary.train_hint()}")


@cli.command()
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path),
              help="TAU22-layout dataset folder (real or synthetic). Required, except with --print-config.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory (config, checkpoints, metrics). Required, except with --print-config.")
@click.option("--recipe", type=click.Path(dir_okay=False, path_type=Path), help="TOML recipe file.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set optim.epochs=10 (repeatable).")
@click.option("--teacher-checkpoint", type=click.Path(dir_okay=False, path_type=Path),
              help="Start a PaSST from an official checkpoint (sets model.kwargs.checkpoint_path).")
@_run_shortcuts()
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last completed epoch.")
@click.option("--print-config", is_flag=True,
              help="Print the resolved config (defaults <- recipe <- --set <- shortcuts) as a TOML recipe and exit.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the final validation report as JSON (no progress bar).")
def train(data_dir: Path, out_dir: Path, recipe: Path | None, overrides: tuple[str, ...],
          teacher_checkpoint: Path | None, epochs: int | None, batch_size: int | None, seed: int | None,
          device: str | None, resume: bool, print_config: bool, no_progress: bool, as_json: bool) -> None:
    """Train a student (or teacher) model.

    Recipes (recipes/ of the repository; any TOML file of the same sections works):
    demo_student.toml (the demo's S1 student on synthetic data), baseline_tau22.toml (the DCASE 2025
    baseline on TAU22), sscp_student_tau22.toml (the seed's S1 on TAU22), demo_kd_student.toml (with teacher
    logits), demo_qat.toml (int8 weight fine-tuning), teacher_*.toml (teachers). Without a recipe: the
    defaults of edgeasc.config.TrainConfig (the baseline recipe, 150 epochs).

    Example: edgeasc train --data data/synth --out runs/student --recipe recipes/demo_student.toml --epochs 10
    """
    from edgeasc.config import format_recipe, resolve_train_config, to_dict
    from edgeasc.train.loop import train as run_training

    if teacher_checkpoint is not None:
        overrides = (*overrides, f"model.kwargs.checkpoint_path={str(teacher_checkpoint)!r}")
    cfg = resolve_train_config(recipe, _with_shortcuts(overrides, epochs, batch_size, seed, device))
    if print_config:
        click.echo(format_recipe(to_dict(cfg)), nl=False)
        return
    missing = [flag for flag, v in (("--data", data_dir), ("--out", out_dir)) if v is None]
    if missing:
        raise click.UsageError(f"missing option {' and '.join(missing)}")
    if as_json:
        result = run_training(cfg, data_dir, out_dir, resume=resume, progress=False)
        click.echo(strict_json({"model": str(result.model_path), "final_metrics": result.final_metrics}, indent=2))
        return
    result = run_training(cfg, data_dir, out_dir, resume=resume, progress=not no_progress)
    if result.final_metrics:
        from edgeasc.metrics import format_report

        m = result.final_metrics
        click.echo(format_report(m, title=f"{cfg.model.name} on {m.get('split')} ({m['n_clips']} clips), "
                                          "macro accuracy %"))
        debiased = m.get("bn_debias")
        if debiased:
            click.echo(f"BatchNorm moving averages debiased after {debiased['steps']} steps "
                       f"(before: {100 * debiased['macro_accuracy_before']:.2f}%)")
        click.echo(f"validation macro accuracy ({m.get('split')}): {100 * m['macro_accuracy']:.2f}%")
    if result.model_path.is_file():
        click.echo(f"model: {result.model_path} ({_size(result.model_path)})")
        if result.best_path is not None and "best" in result.final_metrics:
            b = result.final_metrics["best"]
            click.echo(f"best: {result.best_path} (epoch {b['epoch']}, val {100 * b['val_macro_accuracy']:.2f}%); "
                       f"curves: {result.run_dir / 'curves.png'}")
        click.echo(f"next: edgeasc evaluate {result.model_path} --data {data_dir}")


@cli.command()
@click.argument("model_path", type=click.Path(path_type=Path))
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--split", default="test", show_default=True, help="test (fold1_evaluate), train or splitNN.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where eval.json and confusion.png go (default: next to the model).")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
              help="Checkpoints only: fp16 runs a half-precision copy, as the official baseline's test does.")
@click.option("--runtime", type=click.Choice(["litert", "tflm"]), default="litert", show_default=True,
              help=".tflite only: litert (LiteRT reference kernels, first clips compared with TFLite Micro) or tflm "
                   "(every clip on TFLite Micro itself; slower).")
@_cache_dir_option
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (no progress bar).")
def evaluate(model_path: Path, data_dir: Path, split: str, out_dir: Path | None, batch_size: int,
             precision: str, runtime: str, cache_dir: Path | None, no_progress: bool, as_json: bool) -> None:
    """Macro, per-device and per-class accuracy of a model (checkpoint, .tflite or device bundle) on a split.

    A .tflite runs on LiteRT's reference kernels; its first clips also run on TFLite Micro and the report says
    whether the two agree (they can differ, e.g. on some FULLY_CONNECTED models). --runtime tflm runs every
    clip on TFLite Micro itself. A device bundle (`edgeasc
    finetune`) reports general vs device-specific accuracy per device, routing each clip by its device id.

    Example: edgeasc evaluate runs/student/model.pt --data data/synth
    """
    from edgeasc.deploy.runtime import evaluate_tflite, format_tflm_check
    from edgeasc.devices.bundle import is_bundle
    from edgeasc.errors import ConfigError
    from edgeasc.evaluate import evaluate_checkpoint
    from edgeasc.metrics import format_report

    tflite = model_path.suffix.lower() == ".tflite"
    if runtime != "litert" and not tflite:
        raise ConfigError(f"--runtime {runtime} is for .tflite models; {model_path} is not one")
    if precision != "fp32" and (tflite or is_bundle(model_path)):
        raise ConfigError(f"--precision {precision} is for checkpoints; {model_path} is a "
                          f"{'TFLite file' if tflite else 'device bundle'}, which runs at its own precision")
    if is_bundle(model_path):
        from edgeasc.devices.finetune import evaluate_bundle, format_bundle_report

        report = evaluate_bundle(model_path, data_dir, split=split, out_dir=out_dir, batch_size=batch_size,
                                 cache_dir=cache_dir, progress=not (no_progress or as_json))
        click.echo(strict_json(report, indent=2) if as_json else format_bundle_report(report))
        if not as_json:
            click.echo(f"\nwrote {report['artifacts']['eval_json']}")
        return
    if tflite:
        report = evaluate_tflite(model_path, data_dir, split=split, out_dir=out_dir, batch_size=batch_size,
                                 cache_dir=cache_dir, progress=not (no_progress or as_json), runtime=runtime)
    else:
        report = evaluate_checkpoint(model_path, data_dir, split=split, out_dir=out_dir, batch_size=batch_size,
                                     cache_dir=cache_dir, progress=not (no_progress or as_json), precision=precision)
    if as_json:
        click.echo(strict_json(report, indent=2))
        return
    at = f", {report['precision']}" if report.get("precision", "fp32") != "fp32" else ""
    click.echo(format_report(report, title=f"{report['model_name']} on {split} ({report['n_clips']} clips{at}), "
                                           "macro accuracy %"))
    if "runtime" in report:
        click.echo(format_tflm_check(report["runtime"]))
    click.echo(f"\nwrote {', '.join(report['artifacts'].values())}")


@cli.command("export")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="TAU22-layout dataset: calibration (training split) and parity (evaluation split).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: export/ beside the checkpoint).")
@click.option("--int8", is_flag=True, help="Also write the full-integer int8 TFLite (int8 weights, activations, I/O).")
@click.option("--calib-clips", type=int, default=CALIB_CLIPS, show_default=True,
              help="Calibration clips: a seeded, class-balanced subset of the training split.")
@click.option("--calib-split", help="Training split to calibrate on (default: the checkpoint's, else split25).")
@click.option("--eval-split", default="test", show_default=True, help="Split for the parity report.")
@click.option("--eval-clips", type=int, help="Measure parity on a class-balanced subset of this size.")
@click.option("--seed", type=int, callback=_seed_value, default=0, show_default=True)
@click.option("--input-norm/--no-input-norm", default=True, show_default=True,
              help="With --int8: the exported graph takes the log-mel normalised by the calibration clips' mean "
                   "and std, folded exactly into the first convolutions (docs/export.md).")
@click.option("--weight-rounding", type=click.Choice(["adaptive", "nearest"]), default="adaptive", show_default=True,
              help="With --int8: round each convolution's int8 weights to cancel their error on the calibration "
                   "inputs (adaptive), or to the nearest step (the TFLite converter's rounding).")
@click.option("--bias-correction/--no-bias-correction", default=True, show_default=True,
              help="With --int8: move each convolution's int32 bias by minus the mean error of its output on the "
                   "calibration clips (empirical bias correction).")
@click.option("--int16-layers", metavar="NAMES|auto",
              help="With --int8: keep these activations (comma-separated names from the sensitivity table) at int16 "
                   "with int8 weights (TFLite 16x8), or 'auto': the costliest, chosen in simulation on held-out "
                   "training clips (docs/export.md). The firmware stub runs int8 only.")
@click.option("--sensitivity", is_flag=True,
              help="With --int8: also print and report the int8 sensitivity table (one tensor quantised at a "
                   "time, torch simulation): what to read when int8 loses accuracy.")
@click.option("--sensitivity-clips", type=int, default=1000, show_default=True,
              help="Clips of the evaluation split the sensitivity table is measured on.")
@_cache_dir_option
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print export_report.json (no progress bars).")
def export_cmd(checkpoint: Path, data_dir: Path, out_dir: Path | None, int8: bool, calib_clips: int,
               calib_split: str | None, eval_split: str, eval_clips: int | None, seed: int, input_norm: bool,
               weight_rounding: str, bias_correction: bool, int16_layers: str | None, sensitivity: bool,
               sensitivity_clips: int,
               cache_dir: Path | None, no_progress: bool, as_json: bool) -> None:
    """Export a checkpoint to ONNX and TFLite (float32; int8 with --int8) and measure parity with torch.

    A device bundle (`edgeasc finetune`) exports every member into OUT/<member>/, audits each against the
    DCASE 2025 budget and writes OUT/manifest.json (device id -> file); exit code 1 if a member is over budget.

    Example: edgeasc export runs/student/model.pt --int8 --data data/synth --out runs/student/export
    """
    from edgeasc.deploy.export import export_checkpoint
    from edgeasc.deploy.parity import format_export_report
    from edgeasc.deploy.sensitivity import format_sensitivity
    from edgeasc.devices.bundle import is_bundle
    from edgeasc.errors import ConfigError

    progress = not (no_progress or as_json)
    if is_bundle(checkpoint):
        changed = [flag for flag, on in (("--no-input-norm", not input_norm),
                                         ("--weight-rounding nearest", weight_rounding != "adaptive"),
                                         ("--no-bias-correction", not bias_correction),
                                         ("--int16-layers", int16_layers is not None),
                                         ("--sensitivity", sensitivity)) if on]
        if changed:
            raise ConfigError(f"{' and '.join(changed)}: not available for a device bundle; export the bundle, "
                              "then a member's OUT/<member>/model.pt with these options")
        from edgeasc.deploy.manifest import format_export_manifest
        from edgeasc.pipeline import export_bundle

        manifest = export_bundle(checkpoint, data_dir, out_dir, int8=int8, calib_clips=calib_clips,
                                 eval_clips=eval_clips, seed=seed, cache_dir=cache_dir, progress=progress,
                                 calib_split=calib_split, eval_split=eval_split)
        click.echo(strict_json(manifest, indent=2) if as_json else format_export_manifest(manifest))
        if not as_json:
            click.echo(f"manifest: {manifest['path']}")
            click.echo(f"next: edgeasc audit {Path(manifest['path']).parent / manifest['general']['tflite']}")
        return
    if sensitivity and not int8:
        raise ConfigError("--sensitivity needs --int8 (it measures the int8 model's rounding)")
    result = export_checkpoint(checkpoint, data_dir, out_dir, int8=int8, calib_clips=calib_clips,
                               calib_split=calib_split, eval_split=eval_split, eval_clips=eval_clips, seed=seed,
                               cache_dir=cache_dir, progress=progress, input_norm=input_norm,
                               sensitivity_clips=sensitivity_clips if sensitivity else None,
                               weight_rounding=weight_rounding, bias_correction=bias_correction,
                               int16_layers=int16_layers)
    if as_json:
        click.echo(strict_json(result.report, indent=2))
        return
    click.echo(format_export_report(result.report))
    if result.report.get("int16"):
        i16 = result.report["int16"]
        click.echo(f"int16 layers ({len(i16['layers'])}): {', '.join(i16['layers']) or 'none'}; simulated agreement "
                   f"{100 * i16['simulated_agreement']:.2f}% on {i16['held_out_clips']} held-out training clips")
    if "sensitivity" in result.report:
        click.echo("")
        click.echo(format_sensitivity(result.report["sensitivity"]))
    click.echo("")
    for key in ("onnx", "tflite_float32", "tflite_int8", "calibration_ids", "report"):
        if key in result.artifacts:
            click.echo(f"{key:16s} {result.artifacts[key]} ({_size(result.artifacts[key])})")
    final = result.artifacts.get("tflite_int8", result.artifacts.get("tflite_float32"))
    click.echo(f"next: edgeasc audit {final}")


@cli.command()
@click.argument("model_path", type=click.Path(path_type=Path))
@click.option("--budget", default="dcase2025", show_default=True, help="Named budget, or 'none'.")
@click.option("--max-param-bytes", type=int, help="Override the parameter-memory limit (bytes).")
@click.option("--max-macs", type=int, help="Override the MAC limit.")
@click.option("--mac-rule", type=click.Choice(["dcase", "deployed"]),
              help="Which MAC count the limit applies to (default: the budget's; dcase2025: dcase).")
@click.option("--layers/--no-layers", default=True, show_default=True, help="Print the per-layer table.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def audit(model_path: Path, budget: str, max_param_bytes: int | None, max_macs: int | None, mac_rule: str | None,
          layers: bool, as_json: bool) -> None:
    """Parameters, parameter memory, MACs and peak activation memory of a .tflite, .onnx or checkpoint.

    Exit code 0 within budget, 1 over budget, 2 unreadable or unsupported file.

    Example: edgeasc audit runs/student/export/model_int8.tflite --budget dcase2025
    """
    from edgeasc.audit.report import audit_model, format_audit
    from edgeasc.errors import DomainError

    report = audit_model(model_path, budget=budget, max_param_bytes=max_param_bytes, max_macs=max_macs,
                         mac_rule=mac_rule)
    click.echo(strict_json(report.to_dict(), indent=2) if as_json else format_audit(report, layers=layers))
    if report.violations:
        raise DomainError(f"{model_path.name} is over budget {report.budget_name}: " + "; ".join(report.violations))


@cli.command("import-checkpoint")
@click.argument("src", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(dir_okay=False, path_type=Path))
def import_checkpoint_cmd(src: Path, dst: Path) -> None:
    """Convert a CPJKU baseline or seed (SSCP-Mobile) Lightning checkpoint to an edgeasc checkpoint.

    Widths are read from the state_dict shapes, so pruned models import too.

    Example: edgeasc import-checkpoint baseline.ckpt runs/baseline/model.pt
    """
    from edgeasc.models.import_ckpt import import_checkpoint

    path = import_checkpoint(src, dst)
    click.echo(f"wrote {path} ({_size(path)})")
    click.echo(f"next: edgeasc evaluate {path} --data DATA_DIR")


@cli.command("models")
@click.option("--pattern", default="*", show_default=True, help="Glob over registered names.")
@click.option("--json", "as_json", is_flag=True)
def models_cmd(pattern: str, as_json: bool) -> None:
    """List registered models with parameters and MACs (DCASE rule, 1-s input).

    Example: edgeasc models --pattern 'sscp*'
    """
    from edgeasc.budget import BUDGETS
    from edgeasc.complexity import DCASE_INPUT_SIZE, count_dcase
    from edgeasc.models import create_model, list_models

    rows = []
    for name in list_models(pattern):
        model = create_model(name)
        # waveform-input teachers (PaSST) are counted on one 1-s clip, frontend excluded from the MACs
        rep = count_dcase(model, getattr(model, "example_input_size", DCASE_INPUT_SIZE))
        rows.append({"name": name, "params": rep.params, "macs": rep.macs, "param_bytes_fp16": rep.params * 2})
    if as_json:
        click.echo(strict_json(rows, indent=2))
        return
    budget = BUDGETS["dcase2025"]
    head = ["model", "params", "MACs", "fp16 bytes", "within DCASE 2025 budget"]
    table = [head] + [[r["name"], f"{r['params']:,}", f"{r['macs']:,}", f"{r['param_bytes_fp16']:,}",
                       "yes" if r["param_bytes_fp16"] <= budget.param_bytes and r["macs"] <= budget.macs else "no"]
                      for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        click.echo("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))


@cli.command("teacher-logits")
@click.option("--teacher", "teachers", multiple=True, required=True, metavar="RUN_OR_CKPT",
              help="A teacher run directory (holding model.pt) or checkpoint; repeat for each ensemble member.")
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="TAU22-layout dataset folder (real or synthetic).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Teacher-logits file to write (.npz).")
@click.option("--split", default="split25", show_default=True, help="Clips to cover: the student's training split.")
@click.option("--val-split", default="test", show_default=True,
              help="Where a member's accuracy is measured when its run recorded none.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@_cache_dir_option
@click.option("--no-resume", is_flag=True, help="Recompute every member instead of reusing finished ones.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def teacher_logits_cmd(teachers: tuple[str, ...], data_dir: Path, out_path: Path, split: str, val_split: str,
                       batch_size: int, device: str, cache_dir: Path | None, no_resume: bool,
                       no_progress: bool) -> None:
    """Average the logits of an ensemble of teachers over the training split, stored by clip id for KD.

    Runs once per teacher (no augmentation, batched), resumes finished members, and runs data-parallel
    under torchrun (torchrun --nproc_per_node N -m edgeasc.cli teacher-logits ...).

    Example: edgeasc teacher-logits --teacher runs/t_passt --teacher runs/t_cpmobile --data data/synth
    --out runs/teachers.npz
    """
    from edgeasc.train.distill import TeacherLogits
    from edgeasc.train.teachers import compute_teacher_logits

    path = compute_teacher_logits(list(teachers), data_dir, out_path, split, val_split=val_split,
                                  batch_size=batch_size, device=device, cache_dir=cache_dir,
                                  progress=not no_progress, resume=not no_resume)
    tl = TeacherLogits.load(path)
    width = max(len(m) for m in tl.members)
    for member, acc in zip(tl.members, tl.member_val_accuracy):
        click.echo(f"{member.ljust(width)}  val macro accuracy {100 * acc:6.2f}%")
    click.echo(f"ensemble of {len(tl.members)} teachers on {len(tl.clip_ids)} clips of {split}")
    click.echo(f"wrote {path} ({_size(path)})")
    click.echo(f"next: edgeasc train --data {data_dir} --out runs/student_kd --recipe recipes/demo_kd_student.toml "
               f"--set kd.teacher_logits='{path}'")


@cli.command("bench")
@click.argument("model_path", type=click.Path(path_type=Path))
@click.option("--runs", type=int, default=100, show_default=True, help="Timed invocations per interpreter.")
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed invocations before them.")
@click.option("--inputs", "n_inputs", type=int, default=8, show_default=True,
              help="Inputs compared between LiteRT reference kernels and TFLite Micro.")
@click.option("--seed", type=int, callback=_seed_value, default=0, show_default=True,
              help="Seed of the inputs (or of the clip choice).")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Use log-mel features of this dataset's test clips instead of seeded random int8 inputs.")
@click.option("--firmware", is_flag=True, help="Also fill the firmware section (edgeasc.firmware.bench_figures).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON, with a machine description.")
def bench_cmd(model_path: Path, runs: int, warmup: int, n_inputs: int, seed: int, data_dir: Path | None,
              firmware: bool, no_progress: bool, as_json: bool) -> None:
    """Latency (LiteRT reference, LiteRT default, TFLite Micro), TFLite Micro arena, flash, LiteRT-vs-TFLite
    Micro bit-exactness and a microcontroller latency estimate of a .tflite model.

    Exit code 0 ok, 1 when int8 outputs of LiteRT's reference kernels and TFLite Micro differ, 2 unreadable
    or unsupported file.

    Example: edgeasc bench runs/student/export/model_int8.tflite
    """
    from edgeasc.bench.harness import bench_model, check_numerics
    from edgeasc.bench.report import format_bench

    report = bench_model(model_path, runs=runs, warmup=warmup, n_inputs=n_inputs, seed=seed, data_dir=data_dir,
                         firmware=firmware, progress=not (no_progress or as_json))
    click.echo(strict_json(report.to_dict(machine=True), indent=2) if as_json else format_bench(report))
    check_numerics(report)


@cli.command("firmware")
@click.argument("model_path", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the generated C sources (model.h, model.c, frontend_data.c).")
@click.option("--weights", type=click.Choice(["int16", "int8"]), default="int16", show_default=True,
              help="Convolution weight storage: int16 (fewest instructions) or int8 (half their flash).")
@click.option("--json", "as_json", is_flag=True, help="Print firmware.json.")
def firmware_cmd(model_path: Path, out_dir: Path, weights: str, as_json: bool) -> None:
    """Generate C99 firmware sources (int8 kernels' calls, weights, arena plan) for an int8 .tflite.

    Exit code 0 ok, 2 unreadable model or an operator the firmware kernels do not cover.

    Example: edgeasc firmware runs/student/export/model_int8.tflite --out firmware_stub/build/model
    """
    from edgeasc.firmware.generate import generate_firmware

    result = generate_firmware(model_path, out_dir, weights)
    if as_json:
        click.echo(strict_json(result.to_dict(), indent=2))
        return
    click.echo(f"{model_path.name}: {len(result.layers)} layers, {result.macs:,} MACs, "
               f"{result.weight_bytes:,} constant bytes")
    click.echo(f"arena: {result.arena_bytes:,} bytes")
    click.echo(f"wrote {out_dir / 'model.c'} ({_size(out_dir / 'model.c')})")
    click.echo(f"next: make -C firmware_stub host GEN={out_dir.resolve()}")


@cli.command("prune")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="TAU22-layout dataset folder (real or synthetic).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run directory (one training run per stage, model.pt, prune.json, pruning_curve.png).")
@click.option("--recipe", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML recipe: training sections plus [prune] (see recipes/prune_s1.toml).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set prune.n_steps=4 (repeatable).")
@click.option("--target", help="Named budget the final model must meet (default dcase2025), or 'none'.")
@click.option("--max-param-bytes", type=int, help="Parameter-memory limit in bytes (at --param-dtype).")
@click.option("--max-macs", type=int, help="MAC limit (DCASE rule).")
@click.option("--param-dtype", type=click.Choice(["fp16", "int8", "fp32", "bf16"]),
              help="Deployment dtype of the parameter-memory count (default fp16, the DCASE rule).")
@click.option("--to-base-channels", type=int, multiple=True,
              help="Prune to this base width; repeat for progressive stages (--to-base-channels 64 "
                   "--to-base-channels 32). Default: the largest uniform width within the budget.")
@click.option("--export/--no-export", "export_int8", default=None,
              help="Also export the final model to int8 TFLite and audit that file (default: the recipe's).")
@_run_shortcuts("Epochs of each AGP pruning stage (optim.epochs; its KD fine-tuning: --set prune.finetune_epochs).")
@click.option("--resume", is_flag=True, help="Continue the stages in --out.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print prune.json.")
def prune_cmd(checkpoint: Path, data_dir: Path, out_dir: Path, recipe: Path | None, overrides: tuple[str, ...],
              target: str | None, max_param_bytes: int | None, max_macs: int | None, param_dtype: str | None,
              to_base_channels: tuple[int, ...], export_int8: bool | None, epochs: int | None,
              batch_size: int | None, seed: int | None, device: str | None, resume: bool, no_progress: bool,
              as_json: bool) -> None:
    """Prune a trained student's channels with AGP during KD training, then fine-tune it with KD.

    Exit code 0 when the final model meets the budget (DCASE rule; with --export also its int8 TFLite
    audit), 1 when it does not, 2 bad usage or unreadable input.

    Example: edgeasc prune runs/student_b64/model.pt --data data/synth --out runs/pruned
    --recipe recipes/demo_prune.toml --set kd.teacher_logits='runs/teachers.npz'
    """
    from edgeasc.pipeline import prune_and_export
    from edgeasc.prune.config import resolve_prune_config
    from edgeasc.prune.plot import format_prune_summary

    overrides = _with_shortcuts(overrides, epochs, batch_size, seed, device)
    train_cfg, prune_cfg = resolve_prune_config(recipe, overrides, target=target, max_param_bytes=max_param_bytes,
                                                max_macs=max_macs, param_dtype=param_dtype,
                                                to_base_channels=to_base_channels, export_int8=export_int8)
    result = prune_and_export(checkpoint, data_dir, out_dir, train_cfg, prune_cfg, resume=resume,
                              progress=not (no_progress or as_json))
    if as_json:
        click.echo(strict_json(result.report, indent=2))
        return
    click.echo(format_prune_summary(result.report))
    click.echo(f"model: {result.model_path} ({_size(result.model_path)}); curve: {out_dir / 'pruning_curve.png'}")
    click.echo(f"next: edgeasc export {result.model_path} --int8 --data {data_dir} --out {out_dir / 'export'}")


@cli.command("submission")
@click.argument("model_path", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for <package>/ (installable) and predictions/<label>/complexity.json.")
@click.option("--label", required=True, help="DCASE submission label <Surname>_<Institute>_task1_<1-4>.")
@click.option("--overwrite", is_flag=True, help="Replace the files of an existing package folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the files and complexity.json as JSON.")
def submission_cmd(model_path: Path, out_dir: Path, label: str, overwrite: bool, as_json: bool) -> None:
    """Write a self-contained DCASE 2025 Task 1 submission package (inference API, fp16 weights,
    complexity.json) from an edgeasc bundle or checkpoint.

    Exit code 0 ok, 1 when a device's model exceeds the DCASE budget (the package is still written),
    2 bad label, existing package folder or unreadable model.

    Example: edgeasc submission runs/finetune/bundle.pt --out submission --label Zhang_AITHU_SJTU_task1_1
    """
    from edgeasc.submission.package import describe_submission, write_submission

    root = write_submission(model_path, out_dir, label, overwrite=overwrite)
    summary = describe_submission(out_dir, label)
    if as_json:
        click.echo(strict_json({"package": str(root), **summary.to_dict()}, indent=2))
        summary.check()
        return
    click.echo(f"wrote {root}:")
    click.echo(summary.format())
    click.echo(f"next: pip install {root} && python -c \"from {root.name} import {label} as api; "
               f"print(api.predict(['clip.wav'], ['a']))\"")
    summary.check()


@cli.command("finetune")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="TAU22-layout dataset folder (real or synthetic).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: devices/<dev>/ runs, bundle.pt, eval_bundle.json, finetune.json.")
@click.option("--recipe", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML recipe without [model] (default: recipes/finetune_device.toml, the seed's numbers).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe value, e.g. --set optim.epochs=10 or --set kd.teacher_logits='t.npz'.")
@click.option("--devices", help="Comma-separated device ids to fine-tune (default: a,b,c,s1,s2,s3 where present "
                                "in the training split).")
@click.option("--select", is_flag=True,
              help="Keep a device's fine-tuned model only if it beats the general model on held-out training "
                   "clips of that device (else the general model answers it).")
@click.option("--holdout", type=float, default=0.2, show_default=True,
              help="With --select: the share of each device's training clips held out of its run.")
@_run_shortcuts("Epochs of each device's fine-tuning run (optim.epochs).")
@click.option("--no-resume", is_flag=True, help="Fail on existing device runs instead of resuming/skipping them.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print finetune.json.")
def finetune_cmd(checkpoint: Path, data_dir: Path, out_dir: Path, recipe: Path | None, overrides: tuple[str, ...],
                 devices: str | None, select: bool, holdout: float, epochs: int | None, batch_size: int | None,
                 seed: int | None, device: str | None, no_resume: bool, no_progress: bool, as_json: bool) -> None:
    """Fine-tune one copy of a general model per recording device and bundle them with the general model.

    The bundle answers any device id; devices without their own model (s4-s6, s7-s10) get the general one.

    Example: edgeasc finetune runs/student/model.pt --data data/synth --out runs/finetune
    --recipe recipes/demo_finetune.toml --devices a,b,c
    """
    from edgeasc.devices.finetune import finetune, format_bundle_report

    overrides = _with_shortcuts(overrides, epochs, batch_size, seed, device)
    result = finetune(checkpoint, data_dir, out_dir, recipe=recipe, overrides=overrides, devices=devices,
                      resume=not no_resume, progress=not (no_progress or as_json), select=select, holdout=holdout)
    if as_json:
        click.echo(strict_json(result.report, indent=2))
        return
    click.echo(format_bundle_report(json.loads(Path(result.report["eval_json"]).read_text())))
    for dev, s in (result.report.get("selection") or {}).items():
        click.echo(f"selection {dev}: held-out accuracy general {100 * s['general']:.2f}%, fine-tuned "
                   f"{100 * s['finetuned']:.2f}% ({s['n_clips']} clips) -> "
                   + ("fine-tuned model" if s["kept"] else "general model"))
    click.echo(f"\nbundle: {result.bundle_path} ({_size(result.bundle_path)})")
    click.echo(f"next: edgeasc export {result.bundle_path} --int8 --data {data_dir} --out {out_dir / 'export'}")


@cli.command("pipeline")
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder: one subfolder per stage, summary.json.")
@click.option("--seed", type=int, callback=_seed_value, help="Replace the recipe's [pipeline] seed.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print summary.json.")
def pipeline_cmd(recipe: Path, data_dir: Path, out_dir: Path, seed: int | None, no_progress: bool,
                 as_json: bool) -> None:
    """Run the stages a pipeline recipe names (teachers, teacher logits, KD student, pruning, device
    fine-tuning, int8 export, evaluation, audit, benchmark), each in OUT/<stage>/; finished stages are
    skipped, so a killed pipeline resumes. Ends with the summary table.

    Exit code 0 ok, 1 a model over budget (audit stage), 2 bad recipe or input.

    Example: edgeasc pipeline recipes/pipeline_demo.toml --data demo_out/data --out demo_out/pipeline
    """
    from edgeasc.pipeline import format_summary, run_pipeline

    result = run_pipeline(recipe, data_dir, out_dir, seed=seed, progress=not (no_progress or as_json))
    if as_json:
        click.echo(strict_json(result.summary, indent=2))
        return
    click.echo(format_summary(result.summary))
    click.echo(f"\nwrote {out_dir / 'summary.json'}")


def _check_top(ctx: click.Context, param: click.Parameter, value: int) -> int:
    from edgeasc.labels import SCENES

    if not 1 <= value <= len(SCENES):  # checked before any file is read
        raise click.BadParameter(f"{value} is not between 1 and {len(SCENES)} (the number of scenes)")
    return value


@cli.command("predict")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path),
              help="An edgeasc checkpoint (.pt), a device bundle (edgeasc finetune's bundle.pt) or a .tflite.")
@click.option("--device-id", default="unknown", show_default=True,
              help="Recording device of every file (a, b, c, s1-s10); ids without their own model in a bundle "
                   "(and 'unknown') use the general model.")
@click.option("--windows", type=click.Choice(["first", "mean"]), default="first", show_default=True,
              help="Files longer than 1 s: classify the first second, or average the logits of every 1-s window.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Files per forward pass.")
@click.option("--top", type=int, default=1, show_default=True, callback=_check_top,
              help="Show the K most probable scenes per file (the JSON always holds all of them).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list: per file its scene and probabilities.")
def predict_cmd(files: tuple[Path, ...], model_path: Path, device_id: str, windows: str, batch_size: int,
                top: int, as_json: bool) -> None:
    """Predict the acoustic scene of WAV/FLAC files of any length (a folder: its .wav/.flac files, sorted).

    Prints one line per file: the scene, its probability (softmax of the logits) and the model that answered.
    Checkpoints and bundles run through the DCASE inference API (edgeasc.devices.dcase, on the GPU when there is one);
    a .tflite runs on LiteRT's reference kernels. Exit code 0 ok, 2 a missing or unreadable audio file or model.

    Example: edgeasc predict clip.wav street.flac --model runs/finetune/bundle.pt --device-id a --top 3
    """
    from edgeasc.deploy.predict import format_predictions, predict_files

    predictions = predict_files(list(files), model_path, device_id=device_id, windows=windows,
                                batch_size=batch_size)
    if as_json:
        click.echo(strict_json([p.to_dict() for p in predictions], indent=2))
        return
    click.echo(format_predictions(predictions, top=top))


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="edgeasc")


if __name__ == "__main__":
    main()
