"""Runs the official DCASE 2025 Task 1 baseline code (CPJKU/dcase2025_task1_baseline) unchanged, on a
TAU22-layout folder, for the training-parity experiments (docs/training.md). Run it with the Python of the
official code's own virtualenv (PyTorch Lightning, torchaudio, torchvision, transformers, wandb), not edgeasc's.

    OFFICIAL_PY official_side.py train --code CHECKOUT --data DATA --work DIR --seed S -- [train_base.py args]

What it changes, without touching the checkout:
- `dataset/dcase25.py` has `dataset_dir = None` hard-coded (the user is meant to edit it): the module is loaded
  from the checkout's source with that one assignment set to DATA;
- the split files the code would download are links in DIR/split_setup to DATA's own (split25.csv and, as
  `test.csv`, evaluation_setup/fold1_evaluate.csv);
- the code does not seed anything; `pytorch_lightning.seed_everything(S)` runs first, so that a run repeats;
- `torchaudio.load` is soundfile's decoder: torchaudio 2.9 decodes through torchcodec (ffmpeg) at about 115 ms
  per one-second clip here, which would make a 20-epoch run take hours; the samples are the same (checked
  bit for bit on the first training file at start, else the run stops);
- a callback added to the Trainer times each training epoch (clips/s, written to result.json);
- Weights & Biases runs offline (WANDB_MODE=offline); one thread (OMP_NUM_THREADS / torch.set_num_threads).

The test metrics Lightning logs at the end (fp16 test of the last checkpoint, as the code does) and the last
validation metrics are written to DIR/result.json.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import time
import types
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def load_official_dataset_module(code: Path, data: Path) -> types.ModuleType:
    """`dataset.dcase25` of the checkout with its `dataset_dir` set to `data`, registered in sys.modules."""
    path = code / "dataset" / "dcase25.py"
    source = path.read_text()
    if "dataset_dir = None" not in source:
        raise SystemExit(f"{path}: no `dataset_dir = None` line; is this CPJKU/dcase2025_task1_baseline?")
    source = source.replace("dataset_dir = None", f"dataset_dir = {str(data)!r}", 1)
    package = types.ModuleType("dataset")
    package.__path__ = [str(code / "dataset")]
    module = types.ModuleType("dataset.dcase25")
    module.__file__ = str(path)
    exec(compile(source, str(path), "exec"), module.__dict__)
    sys.modules["dataset"], sys.modules["dataset.dcase25"] = package, module
    package.dcase25 = module
    return module


def link_split_files(work: Path, data: Path) -> None:
    split_dir = work / "split_setup"
    split_dir.mkdir(parents=True, exist_ok=True)
    for name, target in (("split25.csv", data / "split_setup" / "split25.csv"),
                         ("test.csv", data / "evaluation_setup" / "fold1_evaluate.csv")):
        link = split_dir / name
        if not target.is_file():
            raise SystemExit(f"{target} is missing")
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target.resolve())


def soundfile_load(path, *args, **kwargs):
    """torchaudio.load's (channels, samples) float32 tensor and rate, decoded by soundfile."""
    import soundfile as sf
    import torch

    if args or kwargs:
        raise TypeError("soundfile_load takes only a path (train_base.py passes nothing else)")
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(data.T.copy()), rate


def use_soundfile_decoder(sample_file: Path) -> None:
    import torch
    import torchaudio

    ref, ref_rate = torchaudio.load(str(sample_file))
    got, rate = soundfile_load(sample_file)
    if rate != ref_rate or got.shape != ref.shape or not torch.equal(got, ref):
        raise SystemExit(f"soundfile decodes {sample_file} differently from torchaudio.load; not replacing it")
    torchaudio.load = soundfile_load


def train(args: argparse.Namespace, rest: list[str]) -> None:
    code, data, work = args.code.resolve(), args.data.resolve(), args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    os.chdir(work)
    link_split_files(work, data)
    sys.path.insert(0, str(code))
    import pytorch_lightning as pl
    import torch

    torch.set_num_threads(args.threads)
    dcase25 = load_official_dataset_module(code, data)
    first = (data / "split_setup" / "split25.csv").read_text().splitlines()[1].split("\t")[0]
    use_soundfile_decoder(data / first)
    dcase25.torchaudio.load = soundfile_load
    pl.seed_everything(args.seed, workers=True)
    logged: dict[str, float] = {}
    original = pl.LightningModule.log_dict

    def keep(self, dictionary, *a, **kw):  # the metrics the code logs at the end of validation and test
        logged.update({k: float(v) for k, v in dictionary.items()})
        return original(self, dictionary, *a, **kw)

    pl.LightningModule.log_dict = keep
    epochs: list[dict] = []

    class EpochClock(pl.Callback):  # training throughput per epoch, as edgeasc's metrics.jsonl records it
        def on_train_epoch_start(self, trainer, pl_module):
            self.t0, self.clips = time.perf_counter(), 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.clips += len(batch[2])

        def on_train_epoch_end(self, trainer, pl_module):
            seconds = time.perf_counter() - self.t0
            epochs.append({"epoch": trainer.current_epoch + 1, "seconds": seconds,
                           "train_clips_per_s": self.clips / seconds})
            print(f"epoch {trainer.current_epoch + 1}: {self.clips / seconds:.1f} clips/s", flush=True)

    trainer_init = pl.Trainer.__init__

    def with_clock(self, *a, **kw):
        kw["callbacks"] = [*(kw.get("callbacks") or []), EpochClock()]
        trainer_init(self, *a, **kw)

    pl.Trainer.__init__ = with_clock
    sys.argv = [str(code / "train_base.py"), *rest]
    runpy.run_path(str(code / "train_base.py"), run_name="__main__")
    result = {"seed": args.seed, "args": rest, "metrics": logged, "epochs": epochs}
    tmp = work / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=1, sort_keys=True))
    tmp.replace(work / "result.json")
    print(f"test macro accuracy {100 * logged.get('test/macro_avg_acc', float('nan')):.2f}%", flush=True)


OFFICIAL_DEFAULTS = {
    # train_base.py's argparse defaults at 87a5f8c (the parser is built under `if __name__ == "__main__"`,
    # so it cannot be imported); `step` overrides some of them from the job file
    "project_name": "DCASE25_Task1", "experiment_name": "Baseline_general", "num_workers": 0, "precision": "32",
    "check_val_every_n_epoch": 10, "orig_sample_rate": 44100, "subset": 25, "n_classes": 10, "in_channels": 1,
    "base_channels": 32, "channels_multiplier": 1.8, "expansion_rate": 2.1, "n_epochs": 150, "batch_size": 256,
    "mixstyle_p": 0.4, "mixstyle_alpha": 0.3, "weight_decay": 0.0001, "roll_sec": 0.1, "lr": 0.005,
    "warmup_steps": 2000, "sample_rate": 32000, "window_length": 3072, "hop_length": 500, "n_fft": 4096,
    "n_mels": 256, "freqm": 48, "timem": 0, "f_min": 0, "f_max": None,
}


def step(args: argparse.Namespace) -> None:
    """Train the official PLModule with a Lightning Trainer on the job's fixed batches (32 kHz waveforms in
    edgeasc's batch order, so the Resample is the identity), from the job's initial weights, and record per
    optimiser step the learning rate, the loss, the gradient norm and the batch's clips; then the weights."""
    import numpy as np
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader, Dataset

    code = args.code.resolve()
    sys.path.insert(0, str(code))
    torch.set_num_threads(args.threads)
    job = torch.load(args.job, weights_only=False)
    load_official_dataset_module(code, Path("/nonexistent"))  # train_base imports it; the job brings the data
    os.environ.setdefault("WANDB_MODE", "disabled")
    train_base = runpy.run_path(str(code / "train_base.py"), run_name="train_base")
    config = argparse.Namespace(**{**OFFICIAL_DEFAULTS, **job["official_args"]})
    module = None
    waves, labels, epochs = job["waves"], job["labels"], job["batches"]  # batches: per epoch, per step, rows

    class Rows(Dataset):
        def __len__(self):
            return len(waves)

        def __getitem__(self, i):
            return waves[i].unsqueeze(0), str(i), labels[i], "a", 0

    class EpochBatches:
        """The job's batches of epoch 0, 1, ... on successive iterations (Lightning iterates once per epoch)."""

        def __init__(self):
            self.epoch = 0

        def __len__(self):
            return len(epochs[0])

        def __iter__(self):
            batches = epochs[self.epoch]
            self.epoch += 1
            return iter([list(b) for b in batches])

    record: dict[str, list] = {}

    class Recorder(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            record["lr"].append(trainer.optimizers[0].param_groups[0]["lr"])
            record["rows"].append([int(f) for f in batch[1]])

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            grads = [p.grad.detach().flatten() for p in pl_module.model.parameters() if p.grad is not None]
            record["grad_norm"].append(float(torch.cat(grads).norm()))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            record["loss"].append(float(outputs["loss"]))

    class TeacherForcing(pl.Callback):
        """Each step starts from edgeasc's state before that step (weights, BatchNorm buffers, AdamW moments),
        keeping this run's own learning rate; the weights after the step are recorded."""

        def __init__(self):
            self.step = 0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            pl_module.model.load_state_dict(job["before_state"][self.step], strict=True)
            saved = job["before_optimizer"][self.step]
            if saved is not None:
                optimizer = trainer.optimizers[0]
                lrs = [g["lr"] for g in optimizer.param_groups]
                optimizer.load_state_dict(saved)
                for g, lr in zip(optimizer.param_groups, lrs):
                    g["lr"] = lr

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            record["after"].append({k: v.detach().clone() for k, v in pl_module.model.state_dict().items()})
            self.step += 1

    def run(forced: bool) -> tuple[dict, pl.Trainer]:
        nonlocal record, module
        record = {"lr": [], "loss": [], "grad_norm": [], "rows": [], "after": []}
        module = train_base["PLModule"](config)
        module.model.load_state_dict(job["initial_state"], strict=True)
        loader = DataLoader(Rows(), batch_sampler=EpochBatches(), num_workers=0)
        callbacks = [TeacherForcing(), Recorder()] if forced else [Recorder()]
        trainer = pl.Trainer(max_epochs=len(epochs), accelerator="cpu", devices=1, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             limit_val_batches=0, num_sanity_val_steps=0, callbacks=callbacks)
        torch.manual_seed(job["seed"])
        np.random.seed(job["seed"])
        trainer.fit(module, loader)
        return record, trainer

    free, trainer = run(forced=False)
    state = {k: v.detach().clone() for k, v in module.model.state_dict().items()}
    forced, _ = run(forced=True)
    out = {"record": free, "state": state, "forced": forced,
           "estimated_stepping_batches": int(trainer.estimated_stepping_batches),
           "versions": {"torch": torch.__version__, "pytorch_lightning": pl.__version__}}
    tmp = args.out.with_name(args.out.name + ".tmp")
    torch.save(out, tmp)
    tmp.replace(args.out)


def masked_rows(masked: torch.Tensor) -> torch.Tensor:
    """(B, 2): first masked frequency bin (-1 if none) and the number of masked bins, from exact zeros."""
    import torch

    zero = (masked == 0).flatten(2).all(dim=2) if masked.dim() == 3 else (masked == 0).all(dim=-1).squeeze(1)
    width = zero.sum(dim=1)
    first = torch.where(width > 0, zero.float().argmax(dim=1), torch.full_like(width, -1))
    return torch.stack([first, width], dim=1)


def train_base_frontend(code: Path, files: list[str]) -> torch.Tensor:
    """Log-mel (B, 1, 256, 65) of audio files as train_base.py computes it: torchaudio.load (as replaced above,
    the same samples), then PLModule.mel (Resample 44.1 -> 32 kHz, MelSpectrogram) and log(x + 1e-5)."""
    import torch

    os.environ.setdefault("WANDB_MODE", "disabled")
    train_base = runpy.run_path(str(code / "train_base.py"), run_name="train_base")
    module = train_base["PLModule"](argparse.Namespace(**OFFICIAL_DEFAULTS)).eval()
    waves = torch.stack([soundfile_load(f)[0] for f in files])
    with torch.no_grad():
        return module.mel_forward(waves)


def augment(args: argparse.Namespace) -> None:
    """Each augmentation of the official code applied `draws` times to the job's inputs; per-draw statistics."""
    import numpy as np
    import torch
    import torchaudio

    code = args.code.resolve()
    sys.path.insert(0, str(code))
    torch.set_num_threads(args.threads)
    load_official_dataset_module(code, Path("/nonexistent"))
    from dataset.dcase25 import TimeShiftDataset
    from helpers.utils import mixstyle

    job = torch.load(args.job, weights_only=False)
    torch.manual_seed(job["seed"])
    np.random.seed(job["seed"])
    n = job["draws"]

    class Impulse(torch.utils.data.Dataset):  # one clip whose only non-zero sample is the first
        def __len__(self):
            return 1

        def __getitem__(self, i):
            wave = torch.zeros(1, job["roll_clip_samples"])
            wave[0, 0] = 1.0
            return wave, "f", 0, "a", 0

    rolled = TimeShiftDataset(Impulse(), shift_range=job["roll_samples"])  # as train_base.py builds it
    shifts = []
    for _ in range(n["roll"]):
        at = int(rolled[0][0][0].argmax())
        shifts.append(at if at <= job["roll_clip_samples"] // 2 else at - job["roll_clip_samples"])
    masking = torchaudio.transforms.FrequencyMasking(job["freqm"], iid_masks=True)  # PLModule.mel_augment's
    power = job["power_mel"]  # (B, 1, n_mels, frames), as self.mel gives it
    masks = torch.stack([masked_rows(masking(power)) for _ in range(n["mask"])])
    logmel = job["logmel"]
    mix = []
    for _ in range(n["mixstyle"]):
        out = mixstyle(logmel, job["mixstyle_p"], job["mixstyle_alpha"])
        changed = not torch.equal(out, logmel)
        mix.append([float(changed), float(out.mean()), float(out.std()), float((out - logmel).abs().mean())])
    # the data path: the clips' 44.1 kHz files through the official frontend (PLModule.mel, then the log)
    frontend = train_base_frontend(code, job["files"])
    result = {"roll_shifts": torch.tensor(shifts), "masks": masks, "mixstyle": torch.tensor(mix),
              "logmel_of_files": frontend}
    tmp = args.out.with_name(args.out.name + ".tmp")
    torch.save(result, tmp)
    tmp.replace(args.out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="one seeded run of train_base.py")
    t.add_argument("--code", type=Path, required=True, help="checkout of CPJKU/dcase2025_task1_baseline")
    t.add_argument("--data", type=Path, required=True, help="TAU22-layout folder (meta.csv, audio/, split files)")
    t.add_argument("--work", type=Path, required=True, help="run folder (split links, wandb, checkpoints)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1)
    st = sub.add_parser("step", help="N optimiser steps of the official PLModule on a job's fixed batches")
    st.add_argument("--code", type=Path, required=True)
    st.add_argument("--job", type=Path, required=True, help="written by step_equivalence.py")
    st.add_argument("--out", type=Path, required=True)
    st.add_argument("--threads", type=int, default=1)
    au = sub.add_parser("augment", help="the official augmentations applied many times to a job's inputs")
    au.add_argument("--code", type=Path, required=True)
    au.add_argument("--job", type=Path, required=True, help="written by step_equivalence.py")
    au.add_argument("--out", type=Path, required=True)
    au.add_argument("--threads", type=int, default=1)
    argv = sys.argv[1:]
    rest: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1:]
    args = parser.parse_args(argv)
    if args.command == "train":
        train(args, rest)
    elif args.command == "step":
        step(args)
    elif args.command == "augment":
        augment(args)


if __name__ == "__main__":
    main()
