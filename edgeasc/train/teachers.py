"""Ensemble-teacher logits, computed once and stored by clip id (CP-JKU DCASE 2023; EfficientAT).

`compute_teacher_logits` runs every teacher (an edgeasc checkpoint, or a run directory holding `model.pt`)
once over the training split, in evaluation mode and without augmentation, averages the members' logits
and writes an `edgeasc.train.distill.TeacherLogits` file (format in that module). The student's training then
looks the logits up by clip id and checks coverage (SPEC.md section 4).

Resumable: each member's logits are kept under `OUT_DIR/.{out name}.partial/` as `member_{key}.npy` plus a
`member_{key}.json` written last (its presence marks the member complete). The key hashes the checkpoint
file's bytes and the clip list (file names, sizes and modification times, as the waveform cache does), so
a changed teacher or dataset is recomputed and an unchanged one is reused. The folder is kept after
success (N x 10 floats per member); delete it or pass `resume=False` to recompute.

Data parallel: under `torchrun --nproc_per_node N -m edgeasc.cli teacher-logits ...` rank r computes clips
r, r + N, ... of each member and writes them as a shard file in the same folder; rank 0 merges the shards
(so the ranks need a shared file system, as on one machine) and writes the result. A single process is
the same code with N = 1.

Each member's validation accuracy is, in order of preference: the `val_macro_accuracy` its checkpoint
recorded at the end of `edgeasc train` (on that run's validation split), the `macro_accuracy` of a
`metrics.json` beside the checkpoint, or else computed here on `val_split` (the development test fold by
default) with the same batched pass.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeasc.artifacts import write_atomic, write_json_atomic
from edgeasc.checkpoint import frontend_of, load_model
from edgeasc.config import FrontendConfig, valid_device
from edgeasc.data.dataset import Clip, TAUDataset, cache_key, load_waveforms
from edgeasc.errors import CheckpointError, ConfigError, DataError
from edgeasc.evaluate import predict_logits
from edgeasc.labels import SCENES
from edgeasc.metrics import macro_accuracy
from edgeasc.train.distill import FORMAT, TeacherLogits

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"


@dataclass(frozen=True)
class Member:
    """One ensemble member.

    Attributes:
        member_id: how the member is named in the logits file (the path the user gave).
        checkpoint: the edgeasc checkpoint file.
        run_dir: the folder that may hold the run's `metrics.json`.
    """

    member_id: str
    checkpoint: Path
    run_dir: Path


def resolve_member(teacher: str | os.PathLike) -> Member:
    """A checkpoint file, or a run directory holding `model.pt`.

    Raises:
        CheckpointError: neither exists.
    """
    path = Path(teacher)
    if path.is_dir():
        ckpt = path / MODEL_FILE
        if not ckpt.is_file():
            raise CheckpointError(f"teacher run directory {path} has no {MODEL_FILE}; train it first or pass the checkpoint")
        return Member(str(teacher), ckpt, path)
    if not path.is_file():
        raise CheckpointError(f"teacher not found: {path} (expected a run directory or an edgeasc checkpoint)")
    return Member(str(teacher), path, path.parent)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _recorded_accuracy(ckpt: dict[str, Any], member: Member) -> tuple[float, str] | None:
    """The member's validation macro accuracy as its training run recorded it, with where it came from."""
    extra = ckpt.get("extra") or {}
    acc = extra.get("val_macro_accuracy")
    if isinstance(acc, (int, float)):
        return float(acc), f"checkpoint ({extra.get('val_split', 'validation split')})"
    metrics = member.run_dir / "metrics.json"
    if metrics.is_file():
        try:
            data = json.loads(metrics.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read {metrics}: {exc}") from None
        if isinstance(data.get("macro_accuracy"), (int, float)):
            return float(data["macro_accuracy"]), f"metrics.json ({data.get('split', 'validation split')})"
    return None


def _sharded_logits(
    tag: str,
    partial: Path,
    model: nn.Module,
    waves: np.ndarray,
    frontend: FrontendConfig,
    batch_size: int,
    device: torch.device,
    rank: int,
    world: int,
    resume: bool,
    bar: Any,
) -> np.ndarray | None:
    """This rank's shard (rows rank, rank + world, ...) written to a file; rank 0 returns the merged array."""
    from edgeasc.train.loop import _barrier

    n = len(waves)
    shard_path = partial / f"{tag}.rank{rank}of{world}.npy"
    rows = np.arange(rank, n, world)
    if resume and shard_path.is_file() and np.load(shard_path).shape[0] == len(rows):
        log.info("reusing shard %s", shard_path.name)
        if bar is not None:
            bar.update(len(rows))
    else:
        logits = predict_logits(model, waves, frontend, batch_size, device, rows=rows, bar=bar)
        _save_npy(shard_path, logits)
    _barrier(world)
    if rank != 0:
        return None
    shards = [np.load(partial / f"{tag}.rank{r}of{world}.npy") for r in range(world)]
    width = shards[0].shape[1]
    merged = np.zeros((n, width), dtype=np.float32)
    for r, shard in enumerate(shards):
        merged[r::world] = shard
    return merged


def _save_npy(path: Path, arr: np.ndarray) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to the temporary name
            np.save(f, np.ascontiguousarray(arr, dtype=np.float32))

    return write_atomic(path, write)


def compute_teacher_logits(
    teachers: Sequence[str | os.PathLike],
    data_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    split: str = "split25",
    *,
    val_split: str = "test",
    batch_size: int = 64,
    device: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    resume: bool = True,
) -> Path:
    """Average the teachers' logits over `split` of `data_dir` and store them at `out_path`.

    Args:
        teachers: edgeasc checkpoints or run directories holding `model.pt`; one ensemble member each.
        split: the clips to cover (the student's training split; DCASE 2025 allows only split25).
        val_split: where a member's validation accuracy is computed when its run recorded none.
        batch_size: clips per forward pass.
        device: "auto", "cpu", "cuda" or "cuda:N" (under torchrun each rank takes its local GPU).
        cache_dir: waveform cache (default: inside the dataset folder).
        resume: reuse complete member results from an earlier, possibly interrupted, call.

    Returns:
        `out_path` (on every rank).

    Raises:
        ConfigError: no teachers, or a teacher given twice.
        CheckpointError: a teacher is missing or unreadable, or does not output one logit per scene.
        DataError: the dataset or split is missing or empty.
    """
    from edgeasc.train.loop import _barrier, _dist_setup, _pick_device

    if not teachers:
        raise ConfigError("no teachers given; pass at least one --teacher RUN_DIR_OR_CHECKPOINT")
    if not valid_device(device):
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    members = [resolve_member(t) for t in teachers]
    seen: dict[Path, str] = {}
    for m in members:
        real = m.checkpoint.resolve()
        if real in seen:
            raise ConfigError(f"teacher {m.member_id} is the same checkpoint as {seen[real]}; give each member once")
        seen[real] = m.member_id

    rank, world, local_rank = _dist_setup()
    dev = _pick_device(device, local_rank)
    out_path = Path(out_path)
    partial = out_path.parent / f".{out_path.name}.partial"
    ds = TAUDataset(data_dir)
    clips = ds.clips(split)
    if not clips:
        raise DataError(f"split {split!r} of {data_dir} is empty")
    partial.mkdir(parents=True, exist_ok=True)

    member_logits: list[np.ndarray] = []
    member_acc: list[float] = []
    for i, member in enumerate(members):
        ckpt_sha = file_sha256(member.checkpoint)
        model, ckpt = load_model(member.checkpoint)
        frontend = frontend_of(ckpt)
        key = hashlib.sha256(
            f"{FORMAT}\n{ckpt_sha}\n{split}\n{cache_key(ds.root, clips, frontend.sample_rate_hz, frontend.clip_samples)}".encode()
        ).hexdigest()[:20]
        logits_path, info_path = partial / f"member_{key}.npy", partial / f"member_{key}.json"
        name = f"teacher {i + 1}/{len(members)} ({member.member_id})"
        if resume and info_path.is_file() and logits_path.is_file():
            logits = np.load(logits_path)
            info = json.loads(info_path.read_text(encoding="utf-8"))
            if logits.shape == (len(clips), len(SCENES)):
                log.info("%s: reusing logits computed earlier (%s; val macro accuracy %.2f%%, %s)", name,
                         logits_path.name, 100 * info["val_macro_accuracy"], info["val_accuracy_source"])
                member_logits.append(logits)
                member_acc.append(float(info["val_macro_accuracy"]))
                continue
        model = model.to(dev).eval()
        recorded = _recorded_accuracy(ckpt, member)
        logits = _member_logits(f"member_{key}", partial, model, ds, clips, frontend, cache_dir, batch_size, dev,
                                rank, world, resume, progress, name)
        if recorded is not None:
            acc, source = recorded
        else:
            val_clips = ds.clips(val_split)
            val_logits = _member_logits(f"member_{key}_val_{val_split}", partial, model, ds, val_clips, frontend,
                                        cache_dir, batch_size, dev, rank, world, resume, progress,
                                        f"{name} on {val_split}")
            acc, source = float("nan"), f"computed on {val_split}"
            if rank == 0:
                acc = macro_accuracy(np.array([c.label for c in val_clips]), val_logits.argmax(1))
        if rank == 0:
            if not np.isfinite(logits).all():
                raise CheckpointError(f"{name} produced non-finite logits; check the checkpoint")
            _save_npy(logits_path, logits)
            write_json_atomic(info_path, {
                "member": member.member_id, "checkpoint": str(member.checkpoint), "checkpoint_sha256": ckpt_sha,
                "model": ckpt["model_config"]["name"], "split": split, "n_clips": len(clips),
                "val_macro_accuracy": acc, "val_accuracy_source": source,
            })
            for shard in partial.glob(f"member_{key}*.rank*of*.npy"):
                shard.unlink()
            log.info("%s: val macro accuracy %.2f%% (%s)", name, 100 * acc, source)
        member_logits.append(logits if rank == 0 else np.zeros(0))
        member_acc.append(acc)
        _barrier(world)

    if rank == 0:
        ensemble = np.mean(np.stack(member_logits), axis=0).astype(np.float32)
        TeacherLogits(
            clip_ids=tuple(c.clip_id for c in clips),
            logits=ensemble,
            class_order=tuple(SCENES),
            members=tuple(m.member_id for m in members),
            member_val_accuracy=tuple(member_acc),
        ).save(out_path)
        log.info("wrote ensemble logits of %d teachers for %d clips of %s to %s",
                 len(members), len(clips), split, out_path)
    _barrier(world)
    return out_path


def _member_logits(
    tag: str,
    partial: Path,
    model: nn.Module,
    ds: TAUDataset,
    clips: list[Clip],
    frontend: FrontendConfig,
    cache_dir: str | os.PathLike | None,
    batch_size: int,
    device: torch.device,
    rank: int,
    world: int,
    resume: bool,
    progress: bool,
    name: str,
) -> np.ndarray:
    """One member's logits on `clips` (merged on rank 0; an empty array on the other ranks)."""
    from edgeasc.progress import progress_bar
    from edgeasc.train.loop import _barrier

    if rank == 0:  # rank 0 builds the waveform cache, the others then map it
        waves = load_waveforms(ds.root, clips, frontend.sample_rate_hz, frontend.clip_samples, cache_dir, progress)
    _barrier(world)
    if rank != 0:
        waves = load_waveforms(ds.root, clips, frontend.sample_rate_hz, frontend.clip_samples, cache_dir)
    bar = None
    if progress and rank == 0:
        bar = progress_bar(total=len(range(0, len(clips), world)), desc=name, unit="clip", unit_scale=True,
                           dynamic_ncols=True)
    try:
        merged = _sharded_logits(tag, partial, model, waves, frontend, batch_size, device, rank, world, resume, bar)
    finally:
        if bar is not None:
            bar.close()
    if merged is not None and merged.shape[1] != len(SCENES):
        raise CheckpointError(f"{name} outputs {merged.shape[1]} logits, expected {len(SCENES)} (one per scene)")
    return merged if merged is not None else np.zeros(0, dtype=np.float32)
