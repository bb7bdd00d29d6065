"""Structured channel pruning of CP-Mobile / SSCP-Mobile students with AGP during KD training.

The seed's systems (SPEC.md section 6) train wide students with KD, prune whole channels with the gradual
schedule of Zhu & Gupta (2017, "To prune, or not to prune", AGP) while KD training continues, and fine-tune the
pruned model with KD again; progressive pruning chains stages (96 -> 64 -> 32). Three parts, kept apart as in
Torch-Pruning (VainF/Torch-Pruning):

- schedule: `agp_sparsity` / `agp_schedule`, plain functions of the step;
- importance: `make_importance` (L1 / L2 magnitude, BatchNorm scale, Taylor), Torch-Pruning's criteria;
- executor: `prune_to_widths`, which removes channels through Torch-Pruning's DependencyGraph, so channels
  joined by a residual addition (stem output and every block output on a shortcut chain) or by a depthwise
  convolution (expansion conv, both depthwise branches, projection input) go together.

Sparsity -> widths (`scale_widths`): one uniform keep ratio r = 1 - s for every prunable width c0 of the
stage's starting model, `floor(c0 * r)` rounded down to a multiple of `round_to` (never below `round_to`;
widths of at most `round_to` stay). The class count is never pruned. Coupled widths start equal, so they stay
equal. A stage's target is either a base width B (r = B / the stem's output width; from base 64 to 32 with
round_to 8 this gives exactly `sscp_mobile_b32`'s widths) or a budget (`search_keep_ratio`: the largest r
whose widths meet it; complexity only grows with r, so bisection finds it).

Models are saved as explicit per-layer widths + a state_dict (never a pickled module): `model_config` is
`{"name": family, "kwargs": widths}`, rebuilt by `create_model`. Each block's shortcut flag is carried over
explicitly (`CPMobileSpec.shortcuts`), since pruning can make a block without a shortcut width-preserving.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from edgeasc.artifacts import write_json_atomic
from edgeasc.errors import ConfigError, DomainError
from edgeasc.prune.config import PruneConfig, resolve_prune_budget
from edgeasc.prune.hook import AGPPruningHook
from edgeasc.prune.plot import plot_pruning_curve
from edgeasc.prune.widths import budget_violations, complexity_of, family_of, scale_widths, search_keep_ratio, widths_of

log = logging.getLogger(__name__)


PRUNE_JSON = "prune.json"
CURVE_PNG = "pruning_curve.png"
STEPS_JSON = "prune_steps.json"
MODEL_FILE = "model.pt"


@dataclass(frozen=True)
class PruneResult:
    """What `prune_checkpoint` wrote: the final checkpoint and prune.json's content."""

    run_dir: Path
    model_path: Path
    report: dict[str, Any]
    final_metrics: dict[str, Any] = field(default_factory=dict)  # the last training run's metrics.json


def _evaluator(cfg: Any, data_dir: str | os.PathLike) -> Callable[[nn.Module], float]:
    """Macro accuracy on cfg.data.val_split; the waveforms are read (from train's cache) on first use."""
    from edgeasc.data.dataset import TAUDataset, load_waveforms
    from edgeasc.evaluate import predict_logits
    from edgeasc.metrics import classification_report

    cache: dict[str, Any] = {}

    def evaluate(model: nn.Module) -> float:
        if not cache:
            ds = TAUDataset(data_dir)
            clips = ds.clips(cfg.data.val_split)
            fe = cfg.frontend
            cache["clips"] = clips
            cache["waves"] = load_waveforms(ds.root, clips, fe.sample_rate_hz, fe.clip_samples, cfg.data.cache_dir)
        clips = cache["clips"]
        device = next(model.parameters()).device
        logits = predict_logits(model, cache["waves"], cfg.frontend, batch_size=cfg.optim.batch_size, device=device)
        rep = classification_report([c.label for c in clips], logits.argmax(1), [c.device for c in clips])
        return float(rep["macro_accuracy"])

    return evaluate


def plan_stages(model: nn.Module, cfg: PruneConfig, budget: Any) -> list[dict[str, Any]]:
    """Keep ratio and widths of every stage, each relative to the previous stage's widths."""
    from edgeasc.models import create_model

    family = family_of(model)
    spec = model.spec
    plans = []
    for i, target in enumerate(cfg.stages or ("budget",), 1):
        base = spec.stem_channels[1]
        if target == "budget":
            if budget is None:
                raise ConfigError("a 'budget' stage needs a budget: give --target/--max-param-bytes/--max-macs or "
                                  "a base width (--to-base-channels)")
            ratio, widths = search_keep_ratio(family, spec, budget, cfg.dtype_bytes, cfg.round_to)
        else:
            if target >= base:
                raise ConfigError(f"stage {i} prunes to base {target}, but the model's base width (stem output) "
                                  f"is already {base}")
            ratio = target / base
            widths = scale_widths(spec, ratio, cfg.round_to)
        nxt = create_model(family, **widths)
        plans.append({"stage": i, "target": target, "start_spec": spec, "keep_ratio": ratio, "widths": widths,
                      "start_widths": widths_of(model) if i == 1 else plans[-1]["final_widths"],
                      "final_widths": widths_of(nxt), "complexity": complexity_of(nxt, cfg.dtype_bytes)})
        model, spec = nxt, nxt.spec
    return plans


def _stage_config(cfg: Any, model_config: Mapping[str, Any], init: Path, **optim: Any) -> Any:
    model = dataclasses.replace(cfg.model, name=model_config["name"], kwargs=dict(model_config["kwargs"]),
                                init_checkpoint=str(init))
    return dataclasses.replace(cfg, model=model, optim=dataclasses.replace(cfg.optim, **optim))


def prune_checkpoint(
    checkpoint: str | os.PathLike,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    train_cfg: Any,
    cfg: PruneConfig,
    resume: bool = False,
    progress: bool = True,
    deploy_check: Callable[[Path, Path], dict[str, Any]] | None = None,
) -> PruneResult:
    """Prune a trained CPMobile-family checkpoint in stages (AGP during KD training, then KD fine-tuning).

    Run directory: `stage{i}_agp/` and `stage{i}_finetune/` (ordinary training runs; the AGP one also holds
    prune_steps.json), `model.pt` (the final model, stage "prune"), prune.json (plan, per-step widths,
    parameters, memory, MACs and accuracy, budget checks), pruning_curve.png, and `export/` with
    `cfg.export_int8`.

    Args:
        deploy_check: with `cfg.export_int8`, called as `deploy_check(final model.pt, out/"export")` when the
            final model is within budget; it exports the model to int8 TFLite, audits that file and returns
            {"path", "param_bytes", "macs_dcase", "macs", "within_budget", "violations"} (prune.json's
            `final.tflite_audit`). Export and audit are later stages: `edgeasc.pipeline.prune_and_export`
            passes them in (the `edgeasc prune` command).

    Raises:
        DomainError: the final model exceeds the budget on the DCASE rule or (with export) on the audit of
            its int8 TFLite file; prune.json and model.pt are written first.
        ConfigError, CheckpointError, DataError: bad input (checked before any training where possible).
    """
    if cfg.export_int8 and deploy_check is None:
        raise ConfigError("prune.export_int8 needs the export and audit stages: run it with `edgeasc prune` or "
                          "edgeasc.pipeline.prune_and_export")
    from edgeasc.checkpoint import load_model, save_checkpoint
    from edgeasc.config import FrontendConfig, from_dict, to_dict
    from edgeasc.train.loop import train

    checkpoint = Path(checkpoint).resolve()
    out = Path(out_dir)
    model, ckpt = load_model(checkpoint)
    family = family_of(model)
    ck_frontend = (ckpt.get("config") or {}).get("frontend")
    if ck_frontend is not None and from_dict(FrontendConfig, ck_frontend, where="frontend") != train_cfg.frontend:
        raise ConfigError(f"the recipe's frontend differs from the one {checkpoint.name} was trained with; give "
                          f"the same [frontend] values (checkpoint: {ck_frontend})")
    budget_name, budget = resolve_prune_budget(cfg)
    plans = plan_stages(model, cfg, budget)
    planned = plans[-1]["complexity"]
    bad = budget_violations(planned, budget)
    if bad:
        raise DomainError(f"the planned final widths miss budget {budget_name} at {cfg.param_dtype} ({'; '.join(bad)}); "
                          "prune to a smaller base width or use a 'budget' stage")
    evaluate = _evaluator(train_cfg, data_dir) if cfg.eval_during else None
    report: dict[str, Any] = {
        "source_checkpoint": str(checkpoint), "family": family, "importance": cfg.importance,
        "round_to": cfg.round_to, "param_dtype": cfg.param_dtype, "prune_config": to_dict(cfg),
        "budget": None if budget is None else {"name": budget_name, **dataclasses.asdict(budget)},
        "start": {"widths": widths_of(model), **complexity_of(model, cfg.dtype_bytes),
                  "val_macro_accuracy": (ckpt.get("extra") or {}).get("val_macro_accuracy")},
        "stages": [],
    }
    current = checkpoint
    current_config = ckpt["model_config"]
    train_result = None
    for plan in plans:
        i = plan["stage"]
        agp_dir = out / f"stage{i}_agp"
        hook = AGPPruningHook(plan["start_spec"], plan["keep_ratio"], cfg, evaluate=evaluate,
                              records_path=agp_dir / STEPS_JSON, stage=i)
        log.info("stage %d: AGP from base %d to %s (keep ratio %.4f) over %d steps", i,
                 plan["start_spec"].stem_channels[1], plan["target"], plan["keep_ratio"], cfg.n_steps)
        agp = train(_stage_config(train_cfg, current_config, current), data_dir, agp_dir, resume=resume,
                    progress=progress, step_hook=hook)
        pruned, pruned_ckpt = load_model(agp.model_path)
        if widths_of(pruned) != plan["final_widths"]:
            raise DomainError(f"stage {i} ended at widths {widths_of(pruned)}, planned {plan['final_widths']}: "
                              f"the AGP schedule did not reach its final step (check prune.end_fraction)")
        stage_rep = {
            "stage": i, "target": plan["target"], "keep_ratio": plan["keep_ratio"],
            "final_sparsity": 1.0 - plan["keep_ratio"], "start_widths": plan["start_widths"],
            "final_widths": plan["final_widths"], **plan["complexity"],
            "schedule": hook.timing or _timing_of_run(hook, agp_dir),
            "steps": [hook.records[t] for t in sorted(hook.records)],
            "agp_run": str(agp_dir), "val_macro_accuracy_agp": agp.final_metrics.get("macro_accuracy"),
        }
        current, current_config, train_result = agp.model_path, pruned_ckpt["model_config"], agp
        if cfg.finetune_epochs > 0:
            ft_dir = out / f"stage{i}_finetune"
            optim = {"epochs": cfg.finetune_epochs}
            if cfg.finetune_lr is not None:
                optim["lr"] = cfg.finetune_lr
            if cfg.finetune_warmup_steps is not None:
                optim["warmup_steps"] = cfg.finetune_warmup_steps
            ft = train(_stage_config(train_cfg, current_config, current, **optim), data_dir, ft_dir,
                       resume=resume, progress=progress)
            stage_rep.update(finetune_run=str(ft_dir),
                             val_macro_accuracy_finetuned=ft.final_metrics.get("macro_accuracy"))
            current, train_result = ft.model_path, ft
        report["stages"].append(stage_rep)

    # --- final model, checks, report ----------------------------------------------------------------
    final_model, final_ckpt = load_model(current)
    cx = complexity_of(final_model, cfg.dtype_bytes)
    violations = budget_violations(cx, budget)
    final_path = save_checkpoint(
        out / MODEL_FILE, final_model, stage="prune", config=final_ckpt.get("config"),
        extra={"source_checkpoint": str(checkpoint),
               "val_macro_accuracy": train_result.final_metrics.get("macro_accuracy"),
               "train_split": train_cfg.data.train_split, "val_split": train_cfg.data.val_split,
               "param_dtype": cfg.param_dtype, **cx, "within_budget": not violations},
    )
    report["final"] = {"model": str(final_path), "model_config": _jsonable(final_model.model_config),
                       "widths": widths_of(final_model), **cx,
                       "val_macro_accuracy": train_result.final_metrics.get("macro_accuracy"),
                       "dcase_rule": {"within_budget": not violations, "violations": violations},
                       "tflite_audit": None}
    if cfg.export_int8 and not violations:
        report["final"]["tflite_audit"] = deploy_check(final_path, out / "export")
        violations += [f"int8 TFLite: {v}" for v in report["final"]["tflite_audit"]["violations"]]
    report["success"] = not violations
    write_json_atomic(out / PRUNE_JSON, report)
    plot_pruning_curve(report, out / CURVE_PNG)
    if violations:
        raise DomainError(f"the pruned model misses budget {budget_name}: {'; '.join(violations)} "
                          f"(see {out / PRUNE_JSON})")
    return PruneResult(out, final_path, report, train_result.final_metrics)


def _timing_of_run(hook: AGPPruningHook, run_dir: Path) -> dict[str, int] | None:
    """The schedule of a run that was already complete (resumed: the hook never fired in this process)."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    hook.pruning_steps(int(json.loads(lines[-1])["step"]))
    return hook.timing


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=list))
