"""The training loop, top to bottom in one function (nanoGPT style).

config -> data (cached 32 kHz waveforms) -> model -> optimiser -> resume? -> for each epoch: shuffle,
augment (roll, DIR, masks, Freq-MixStyle), forward, loss (labels, optionally KD against stored teacher
logits), step; validate; checkpoint. Every random draw comes from generators seeded by (seed, epoch,
rank), so the same seed gives the same weights and a resumed run equals an uninterrupted one, on the same
hardware and thread count (the order of floating-point sums depends on both); on CUDA, cuDNN is set to
deterministic kernels, but a few backward kernels use atomic adds, so GPU runs can differ in the last bits.

Data parallel: launched by `torchrun --nproc_per_node N -m edgeasc.cli train ...`; each rank takes
every N-th example of the same global batch, gradients are averaged by DistributedDataParallel (gloo on
CPU, nccl on CUDA), and rank 0 validates and writes.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from edgeasc.artifacts import (
    exclusive_run,
    load_torch,
    strict_json,
    write_json_atomic,
    write_text_atomic,
)
from edgeasc.checkpoint import nonfinite_tensors, save_checkpoint
from edgeasc.config import TrainConfig, to_dict
from edgeasc.data.augment import dir_augment, freq_mixstyle, mask_along, roll_waveform
from edgeasc.data.dataset import TAUDataset, load_waveforms
from edgeasc.errors import CheckpointError, ConfigError, DataError, DomainError
from edgeasc.evaluate import predict_logits
from edgeasc.features import LogMel
from edgeasc.metrics import classification_report
from edgeasc.plots import curves_title, plot_run_curves, plot_training_curves
from edgeasc.train.batchnorm import _debiased_copy
from edgeasc.train.clips import batches_per_epoch, select_devices, split_holdout
from edgeasc.train.distill import TeacherLogits, kd_loss
from edgeasc.train.runs import (
    BEST_FILE,
    STATE_FILE,
    _attach_log_file,
    _first_difference,
    _normalised_config,
    _recover_best,
    _save_best,
    _save_state,
)

log = logging.getLogger(__name__)

StepHook = Callable[[int, int, torch.nn.Module, torch.optim.Optimizer], "torch.optim.Optimizer | None"]
"""`(steps_done, total_steps, model, optimizer) -> new optimizer or None`, see `train(step_hook=...)`."""


MODEL_FILE = "model.pt"


CURVES_FILE = "curves.png"


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or already complete) run produced."""

    run_dir: Path
    model_path: Path
    epochs_run: int
    final_metrics: dict[str, Any]
    best_path: Path | None = None  # best.pt: the model of the best validated epoch (`final_metrics["best"]`)


def warmup_warning(warmup_steps: int, total_steps: int) -> str | None:
    """A warning when the linear warm-up takes more than half of a run's optimiser steps (else None): the
    learning rate then peaks near the end and the cosine decay is squeezed into the last steps. It happens
    to short runs that keep a long run's warm-up, e.g. a 2-epoch pruning or fine-tuning stage."""
    if total_steps < 1 or 2 * warmup_steps <= total_steps:
        return None
    fix = ("give short runs a shorter warm-up (optim.warmup_steps; for a prune's fine-tuning, "
           "prune.finetune_warmup_steps)")
    if warmup_steps >= total_steps:  # the warm-up never ends: the last step has the highest rate
        peak = get_lr(total_steps - 1, total_steps, 1.0, warmup_steps, 0.0)
        return (f"optim.warmup_steps={warmup_steps} is more than this run's {total_steps} optimiser steps: the "
                f"learning rate only reaches {100 * peak:.1f}% of optim.lr, at the last step; {fix}")
    return (f"optim.warmup_steps={warmup_steps} is more than half of this run's {total_steps} optimiser steps: the "
            f"learning rate peaks near the end of the run; {fix}")


def get_lr(step: int, total_steps: int, base_lr: float, warmup_steps: int, min_lr_ratio: float) -> float:
    """The learning rate of optimiser step `step` (0-based): linear warm-up from 0 to `base_lr` over
    `warmup_steps`, then cosine decay to min_lr_ratio * base_lr at `total_steps`.

    The official baseline's schedule step for step (transformers' `get_cosine_schedule_with_warmup`, stepped
    after every optimiser step by Lightning): step k of the warm-up uses k / warmup_steps of the rate, so the
    first step has rate 0 (it only fills AdamW's moment estimates), and the cosine starts at step warmup_steps.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return base_lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _dist_setup() -> tuple[int, int, int]:
    """(rank, world_size, local_rank); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    if not torch.cuda.is_available():
        # share the cores between the local processes instead of oversubscribing them
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return dist.get_rank(), world, local_rank


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device=cuda requested but CUDA is not available")
        # cuDNN's autotuner picks kernels by timing, and some of its kernels are not deterministic; fixed
        # choices make same-seed GPU runs repeat more closely (atomics in some backward kernels still vary)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        return torch.device(f"cuda:{local_rank}")
    return torch.device(name)


def _generator(seed: int, *parts: int) -> torch.Generator:
    ss = np.random.SeedSequence([seed, *parts])
    return torch.Generator().manual_seed(int(ss.generate_state(1, dtype=np.uint64)[0] % (2**63)))


def train(
    cfg: TrainConfig,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    resume: bool = False,
    progress: bool = True,
    step_hook: StepHook | None = None,
) -> TrainResult:
    """Train `cfg.model` on `cfg.data.train_split` of `data_dir`, writing the run into `out_dir`.

    Run directory: config.json, last.pt (full training state, every epoch), metrics.jsonl (one line per
    epoch), model.pt (final edgeasc checkpoint), best.pt (the checkpoint of the epoch with the best
    validation macro accuracy; model.pt's twin when that is the last), metrics.json (final validation
    report, with "best"), curves.png (loss and validation accuracy per epoch, `edgeasc.plots`), train.log.

    Each validation runs on the model as model.pt would hold it after that epoch: BatchNorm debiased
    (`debias_batchnorm`, when it applies) in a copy, so metrics.jsonl, best.pt and model.pt are comparable.

    Args:
        resume: continue from `out_dir/last.pt` if it exists (the config must match).
        step_hook: called as `step_hook(steps_done, total_steps, model, optimizer)` after every optimiser
            step (single process only); it may change the model in place (AGP pruning, edgeasc.prune) and
            then returns a new optimiser for the changed parameters, else None. A resumed run rebuilds the
            model from `last.pt`'s model_config, so a changed architecture resumes too.

    Raises:
        DataError: another process is training in `out_dir` (a lock file guards the folder), or `out_dir`
            holds a run and `resume` is False.
    """
    attached: list[logging.Handler] = []
    # one writer per run folder: rank 0 of a torchrun job holds the lock (the other ranks write nothing there)
    lock = exclusive_run(out_dir, "edgeasc train") if int(os.environ.get("RANK", "0")) == 0 else nullcontext()
    try:
        with lock:
            return _train(cfg, data_dir, out_dir, resume, progress, step_hook, attached)
    finally:  # the run's train.log stops here: a later run in this process logs to its own file only
        for handler in attached:
            logging.getLogger("edgeasc").removeHandler(handler)
            handler.close()


def _train(cfg: TrainConfig, data_dir: str | os.PathLike, out_dir: str | os.PathLike, resume: bool, progress: bool,
           step_hook: StepHook | None, attached: list[logging.Handler]) -> TrainResult:
    from edgeasc.models import create_model

    rank, world, local_rank = _dist_setup()
    if step_hook is not None and world > 1:
        raise ConfigError("a step hook (pruning) changes the model in place and runs in a single process only")
    device = _pick_device(cfg.device, local_rank)
    out = Path(out_dir)
    state_path = out / STATE_FILE
    cfg_dict = to_dict(cfg)

    # --- resume or start ----------------------------------------------------------------------
    state: dict[str, Any] | None = None
    if state_path.is_file():
        if not resume:
            raise DataError(f"{out} already holds a training run; pass --resume to continue it or choose another --out")
        state = load_torch(state_path, "training state")
        saved_cfg = _normalised_config(state.get("config"))
        if saved_cfg != cfg_dict:
            raise ConfigError(
                f"{state_path} was written with a different config; resume with the same recipe and --set "
                f"values (first difference: {_first_difference(saved_cfg, cfg_dict)})"
            )
    elif resume:
        log.info("nothing to resume in %s; starting a new run", out)

    # --- data ---------------------------------------------------------------------------------
    ds = TAUDataset(data_dir)
    train_clips = ds.clips(cfg.data.train_split)
    val_clips = ds.clips(cfg.data.val_split)
    if cfg.data.devices:
        train_clips = select_devices(train_clips, cfg.data.devices, cfg.data.train_split)
        val_clips = select_devices(val_clips, cfg.data.devices, cfg.data.val_split)
    if cfg.data.holdout_fraction > 0:
        train_clips, held = split_holdout(train_clips, cfg.data.holdout_fraction, cfg.seed)
        log.info("holding out %d of %d training clips (data.holdout_fraction %.2f)", len(held),
                 len(train_clips) + len(held), cfg.data.holdout_fraction)
    if not train_clips:
        raise DataError(f"split {cfg.data.train_split!r} of {data_dir} is empty")
    fe = cfg.frontend
    if rank == 0:  # rank 0 builds the caches, the others then map them
        train_waves = load_waveforms(ds.root, train_clips, fe.sample_rate_hz, fe.clip_samples, cfg.data.cache_dir, progress)
        val_waves = load_waveforms(ds.root, val_clips, fe.sample_rate_hz, fe.clip_samples, cfg.data.cache_dir, progress)
    _barrier(world)
    if rank != 0:
        train_waves = load_waveforms(ds.root, train_clips, fe.sample_rate_hz, fe.clip_samples, cfg.data.cache_dir)
        val_waves = load_waveforms(ds.root, val_clips, fe.sample_rate_hz, fe.clip_samples, cfg.data.cache_dir)
    labels = torch.tensor([c.label for c in train_clips], dtype=torch.long)
    is_dir_device = torch.tensor([c.device in cfg.augment.dir_devices for c in train_clips])

    teacher = teacher_found = None
    if cfg.kd.teacher_logits:
        tl = TeacherLogits.load(cfg.kd.teacher_logits)
        arr, found = tl.lookup([c.clip_id for c in train_clips], allow_missing=cfg.kd.allow_missing_teacher)
        teacher, teacher_found = torch.from_numpy(arr), torch.from_numpy(found)

    irs: list[torch.Tensor] = []
    if cfg.augment.dir_p > 0:
        from edgeasc.data.ir_bank import DIR_AUGMENT_IRS, load_irs

        irs = [torch.from_numpy(ir) for ir in load_irs(DIR_AUGMENT_IRS, fe.sample_rate_hz)]

    # --- model and optimiser ------------------------------------------------------------------
    torch.manual_seed(cfg.seed)
    if state is not None:  # a step hook may have changed the architecture since the run began
        from edgeasc.models import model_from_config

        model = model_from_config(state["model_config"]).to(device)
    else:
        model = create_model(cfg.model.name, **cfg.model.kwargs).to(device)
        if cfg.model.init_checkpoint:
            _load_init_weights(model, cfg.model.init_checkpoint)
    # Waveform-input models (PaSST) compute their own frontend and apply their own spectrogram augmentation
    # (masks, Freq-MixStyle, patchout: model kwargs) with the `aug` generator; roll and DIR still apply here.
    wave_input = getattr(model, "input_kind", "logmel") == "waveform"
    if wave_input and model.sample_rate_hz != fe.sample_rate_hz:
        raise ConfigError(f"{cfg.model.name} expects {model.sample_rate_hz} Hz audio, but frontend.sample_rate_hz "
                          f"is {fe.sample_rate_hz}")
    if cfg.quant.weight_fake_quant:
        if step_hook is not None:
            raise ConfigError("quant.weight_fake_quant is for fine-tuning a finished model; it cannot run with pruning")
        from edgeasc.train.qat import attach_weight_fake_quant

        log.info("fake-quantising %d weight tensors to the per-channel int8 grid", attach_weight_fake_quant(model))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if state is not None:
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
        history = list(state["history"])
        log.info("resuming %s at epoch %d/%d", out, start_epoch, cfg.optim.epochs)
    best: dict[str, Any] | None = None  # the best validated epoch so far: the one best.pt holds
    complete = state is not None and start_epoch >= cfg.optim.epochs and (out / MODEL_FILE).is_file()
    if state is not None and rank == 0 and not complete:
        best = _recover_best(state, history, model, cfg, cfg_dict, out / BEST_FILE, start_epoch)
    # NHWC log-mel input: convolutions then run channels-last (1.2-1.6x the CPU training throughput of the
    # frontend's transposed NCHW view; benchmarks/experiments/channels_last.py); the weights stay as they are
    input_format = torch.channels_last if cfg.optim.channels_last else torch.contiguous_format
    ddp_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp_model = DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    mel = LogMel(fe).to(device)
    amp_dtype = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}[cfg.optim.precision]
    if amp_dtype is torch.float16 and device.type != "cuda":
        raise ConfigError("optim.precision=16-mixed needs CUDA (float16 autocast with a gradient scaler); "
                          "on this device use bf16-mixed or 32")
    scaler = torch.amp.GradScaler("cuda") if amp_dtype is torch.float16 else None
    if scaler is not None and state is not None and state.get("grad_scaler"):
        scaler.load_state_dict(state["grad_scaler"])

    def autocast():
        return torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()

    n = len(train_clips)
    batch = cfg.optim.batch_size
    steps_per_epoch = batches_per_epoch(n, batch, world)
    total_steps = steps_per_epoch * cfg.optim.epochs
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "config.json", cfg_dict)
        attached += _attach_log_file(out / "train.log")
        subset = cfg.data.train_split + (f", devices {','.join(cfg.data.devices)}" if cfg.data.devices else "")
        log.info("training %s on %d clips (%s), %d steps/epoch, %d epochs, world %d, device %s",
                 cfg.model.name, n, subset, steps_per_epoch, cfg.optim.epochs, world, device)
        warning = warmup_warning(cfg.optim.warmup_steps, total_steps)
        if warning:
            log.warning(warning)

    bar = None
    if progress and rank == 0 and start_epoch < cfg.optim.epochs:
        from edgeasc.progress import progress_bar

        clips_per_epoch = min(steps_per_epoch * batch, n)
        bar = progress_bar(total=clips_per_epoch * cfg.optim.epochs, initial=clips_per_epoch * start_epoch,
                           unit="clip", unit_scale=True, dynamic_ncols=True, desc="train")

    # --- epochs -------------------------------------------------------------------------------
    final_rep: dict[str, Any] | None = None
    final_model, final_debias = model, None  # the last epoch's model as model.pt holds it (debiased copy)
    try:
        for epoch in range(start_epoch, cfg.optim.epochs):
            ddp_model.train()
            shuffle = _generator(cfg.seed, epoch)  # identical on every rank: the global batch order
            aug = _generator(cfg.seed, epoch, 1 + rank)  # per-rank augmentation draws
            perm = torch.randperm(n, generator=shuffle)
            sums = {"loss": 0.0, "label_loss": 0.0, "kd_loss": 0.0}
            t0 = time.perf_counter()
            seen = 0
            for i in range(steps_per_epoch):
                step = epoch * steps_per_epoch + i
                lr = get_lr(step, total_steps, cfg.optim.lr, cfg.optim.warmup_steps, cfg.optim.min_lr_ratio)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                global_batch = perm[i * batch : (i + 1) * batch]
                idx = global_batch[rank::world]
                idx_sorted, _ = torch.sort(idx)  # memmap reads in file order; labels follow idx_sorted
                wave = torch.from_numpy(np.asarray(train_waves[idx_sorted.numpy()], dtype=np.float32))
                y = labels[idx_sorted]
                wave = roll_waveform(wave, cfg.augment.roll_max_samples, aug)
                wave = dir_augment(wave, is_dir_device[idx_sorted], irs, cfg.augment.dir_p, aug)
                wave, y = wave.to(device, non_blocking=True), y.to(device)

                def mask(m: torch.Tensor) -> torch.Tensor:
                    m = mask_along(m, 1, cfg.augment.freq_mask_bins, cfg.augment.n_freq_masks, aug)
                    return mask_along(m, 2, cfg.augment.time_mask_frames, cfg.augment.n_time_masks, aug)

                if not wave_input:
                    with torch.no_grad():
                        x = mel(wave, mask_fn=mask)
                        x = freq_mixstyle(x, cfg.augment.mixstyle_p, cfg.augment.mixstyle_alpha, aug)
                        x = x.contiguous(memory_format=input_format)
                with autocast():
                    logits = ddp_model(wave, generator=aug) if wave_input else ddp_model(x)
                    if teacher is not None:
                        parts = _kd_parts(logits, y, teacher[idx_sorted].to(device),
                                          teacher_found[idx_sorted].to(device), cfg)
                    else:
                        ce = F.cross_entropy(logits, y)
                        parts = {"loss": ce, "label_loss": ce, "kd_loss": torch.zeros(())}
                loss_value = float(parts["loss"].detach())
                if not math.isfinite(loss_value):
                    raise DomainError(_diverged(f"loss {loss_value}", epoch, i, steps_per_epoch, lr, state_path))
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(parts["loss"]).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    parts["loss"].backward()
                    optimizer.step()
                if step_hook is not None:
                    optimizer = step_hook(step + 1, total_steps, model, optimizer) or optimizer
                for k in sums:
                    sums[k] += float(parts[k].detach())
                seen += len(global_batch)
                if bar is not None:
                    bar.update(len(global_batch))
                    bar.set_postfix(epoch=f"{epoch + 1}/{cfg.optim.epochs}", loss=f"{float(parts['loss'].detach()):.3f}")
            train_seconds = time.perf_counter() - t0

            # --- validate and checkpoint (rank 0) ---------------------------------------------
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "step": (epoch + 1) * steps_per_epoch,
                "lr": lr,
                **{k: v / steps_per_epoch for k, v in sums.items()},
                "train_clips_per_s": seen / max(train_seconds, 1e-9),
            }
            last = epoch + 1 == cfg.optim.epochs
            bad = nonfinite_tensors(model.state_dict())
            if bad:  # finite losses but a step that left NaN weights (the last good state stays in last.pt)
                raise DomainError(_diverged(f"weights ({bad[0]})", epoch, steps_per_epoch - 1, steps_per_epoch, lr,
                                            state_path))
            if rank == 0:
                new_best = False
                if last or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0):
                    snapshot, debiased = _debiased_copy(model, cfg)  # the model as model.pt would hold it now
                    try:
                        rep = _validate(snapshot, val_waves, val_clips, fe, batch, device)
                    except DomainError as exc:  # finite weights, but so large that the outputs overflow
                        raise DomainError(_diverged(f"validation outputs ({exc})", epoch, steps_per_epoch - 1,
                                                    steps_per_epoch, lr, state_path)) from None
                    if last:  # the final model and its report: not computed twice
                        final_rep, final_model, final_debias = rep, snapshot, debiased
                    record.update(val_macro_accuracy=rep["macro_accuracy"],
                                  val_per_device={d: v["macro_accuracy"] for d, v in rep["per_device"].items()})
                    if debiased:
                        record["val_bn_debias_start_weight"] = debiased["start_weight"]
                    # a step hook that changed the architecture starts the search again: best.pt is a model of
                    # the final widths (a wider one from before pruning is not a result of this run)
                    new_best = (best is None or best["model_config"] != model.model_config
                                or rep["macro_accuracy"] > best["val_macro_accuracy"])
                    if new_best:
                        best = {"epoch": epoch + 1, "val_macro_accuracy": rep["macro_accuracy"],
                                "model_config": copy.deepcopy(model.model_config)}
                history.append(record)
                # last.pt, then best.pt: a kill between the two leaves last.pt naming a best epoch whose
                # weights it holds itself, and the resume writes best.pt from them (`_recover_best`)
                _save_state(state_path, model, optimizer, epoch + 1, history, cfg_dict, scaler, best)
                write_text_atomic(out / "metrics.jsonl", "".join(strict_json(r) + "\n" for r in history))
                if new_best and not last:  # the last epoch's best.pt is model.pt's twin, written below
                    _save_best(out / BEST_FILE, snapshot, cfg, cfg_dict, best, debiased)
                if "val_macro_accuracy" in record and not last:  # the last epoch's plot comes with model.pt
                    title = curves_title(out, cfg.model.name, cfg.data.val_split)
                    plot_training_curves(history, out / CURVES_FILE, title, best=best)
                msg = f"epoch {epoch + 1}/{cfg.optim.epochs} loss {record['loss']:.4f}"
                if "val_macro_accuracy" in record:
                    msg += f" val macro acc {100 * record['val_macro_accuracy']:.2f}%"
                log.info(msg + f" ({record['train_clips_per_s']:.0f} clips/s)")
            _barrier(world)
    finally:
        if bar is not None:
            bar.close()

    # --- final artifacts (rank 0) ---------------------------------------------------------------
    model_path = out / MODEL_FILE
    final: dict[str, Any] = {}
    if rank == 0:
        if complete:
            log.info("%s is already complete (%d epochs)", out, start_epoch)
        else:
            if final_rep is None:  # resumed after the last epoch: its validation is not kept
                final_model, final_debias = _debiased_copy(model, cfg)
                final_rep = _validate(final_model, val_waves, val_clips, fe, batch, device)
            rep = final_rep
            if final_debias:
                before = _validate(model, val_waves, val_clips, fe, batch, device)["macro_accuracy"]
                rep["bn_debias"] = {**final_debias, "macro_accuracy_before": before}
                log.info("BatchNorm moving averages debiased (after %d steps their start held %.2g of them): val "
                         "macro acc %.2f%% -> %.2f%%", final_debias["steps"], final_debias["start_weight"],
                         100 * before, 100 * rep["macro_accuracy"])
            model = final_model
            if cfg.quant.weight_fake_quant:  # a plain model whose weights are the int8-grid values
                from edgeasc.train.qat import snapped_copy

                model = snapped_copy(model)
            extra = {"epochs": cfg.optim.epochs, "val_macro_accuracy": rep["macro_accuracy"],
                     "train_split": cfg.data.train_split, "val_split": cfg.data.val_split}
            if best is None or best["epoch"] == cfg.optim.epochs:
                # the last epoch is the best: best.pt is model.pt, written first so that a complete run has it
                best = {"epoch": cfg.optim.epochs, "val_macro_accuracy": rep["macro_accuracy"]}
                save_checkpoint(out / BEST_FILE, model, stage="train", config=cfg_dict,
                                extra={**extra, "epoch": cfg.optim.epochs, "selected_by": "val_macro_accuracy"})
            save_checkpoint(model_path, model, stage="train", config=cfg_dict, extra=extra)
            write_json_atomic(out / "metrics.json", {"split": cfg.data.val_split, **rep, "best": {
                "file": BEST_FILE, "epoch": best["epoch"], "val_macro_accuracy": best["val_macro_accuracy"]}})
            log.info("best validated epoch %d (val macro acc %.2f%%): %s", best["epoch"],
                     100 * best["val_macro_accuracy"], out / BEST_FILE)
            plot_run_curves(out)
        final = json.loads((out / "metrics.json").read_text())
    _barrier(world)
    best_path = out / BEST_FILE if (out / BEST_FILE).is_file() else None
    return TrainResult(out, model_path, cfg.optim.epochs - start_epoch, final, best_path)


def _kd_parts(logits, y, teacher, found, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """KD loss on clips with teacher logits; clips without them (if allowed) contribute labels only."""
    if bool(found.all()):
        return kd_loss(logits, teacher, y, cfg.kd.temperature, cfg.kd.label_weight)
    ce = F.cross_entropy(logits, y)
    if not bool(found.any()):
        return {"loss": ce, "label_loss": ce, "kd_loss": torch.zeros((), device=logits.device)}
    parts = kd_loss(logits[found], teacher[found], y[found], cfg.kd.temperature, cfg.kd.label_weight)
    frac = found.float().mean()
    loss = frac * parts["loss"] + (1 - frac) * F.cross_entropy(logits[~found], y[~found])
    return {"loss": loss, "label_loss": ce, "kd_loss": parts["kd_loss"]}


def _load_init_weights(model, path: str) -> None:
    """Start from the weights of checkpoint `path`, which must hold the same architecture."""
    from edgeasc.checkpoint import read_checkpoint

    ckpt = read_checkpoint(path)
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"model.init_checkpoint {path} holds {ckpt['model_config']}, which does not match "
                              f"model {model.model_config['name']!r} with the configured kwargs: "
                              f"{str(exc).splitlines()[0]}") from None
    log.info("initialised %s from %s", model.model_config["name"], path)


def _validate(model, waves, clips, fe, batch, device) -> dict[str, Any]:
    logits = predict_logits(model, waves, fe, batch_size=batch, device=device)
    return classification_report([c.label for c in clips], logits.argmax(1), [c.device for c in clips])


def _diverged(what: str, epoch: int, i: int, steps_per_epoch: int, lr: float, state_path: Path) -> str:
    """The one-line message when training produces a non-finite loss or weights (nothing more is written)."""
    kept = (f"{state_path} keeps the last good state (after epoch {epoch})" if state_path.is_file()
            else "no training state was saved")
    return (f"training diverged: non-finite {what} at epoch {epoch + 1}, step {epoch * steps_per_epoch + i} "
            f"(lr {lr:.3g}); {kept}; lower optim.lr or check the data for clips out of range")
