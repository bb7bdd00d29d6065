"""A procedural, seeded stand-in for TAU Urban Acoustic Scenes 2022 Mobile (DCASE 2025 Task 1 development set).

`generate_dataset` writes a folder in the exact TAU22 layout (`audio/`, `meta.csv`, `evaluation_setup/`,
`split_setup/`; see `docs/synthetic_data.md`), so every stage of edgeasc runs end to end without the real
data. The sounds are not meant to be realistic, only to pose the same kind of problem:

- Scenes are mixtures of shared ingredients (coloured background noise, hum, engine harmonics and motor
  whine, pass-by vehicles, wind, crowd babble and voices, footsteps, clicks, rail clacks, door beeps, brake
  squeals, bird chirps, announcement chimes, room reverberation, amplitude modulation). Each class has its
  own typical values of about forty parameters (`SCENE_PARAMS`), and the distributions overlap.
- Parameters are drawn per location and per 10-s recording (segment) around the class prototype, shifted by
  a fixed random offset per city; the ten 1-s pieces of a segment share them, as in real recordings.
- Devices: a is clean; b, c and s1-s6 are the same scene through a measured microphone response
  (`edgeasc.data.ir_bank.DEVICE_IRS`) plus a fixed EQ, band limit, gain, noise floor and soft clipping
  (`DEVICE_CHAINS`). s4-s6 appear only in the test fold.
- How hard the task is comes from one place, `Difficulty` (default `DEFAULT_DIFFICULTY`).

Everything is seeded: segment i is rendered from `SeedSequence(seed, spawn_key=(2, i))`, so the files do not
depend on the number of worker processes.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeasc.artifacts import write_bytes_atomic, write_text_atomic
from edgeasc.errors import DataError
from edgeasc.labels import DEVICES, SCENES
from edgeasc.synth.dsp import _db, _rfft
from edgeasc.synth.layout import SegmentPlan, _seed_rng, make_splits, plan_dataset
from edgeasc.synth.presets import (
    DEFAULT_DIFFICULTY,
    GENERATOR_VERSION,
    PIECE_SAMPLES,
    PIECES_PER_SEGMENT,
    SAMPLE_RATE_HZ,
    Difficulty,
    ScalePreset,
    _preset,
)
from edgeasc.synth.render import render_clean_segment, render_device
from edgeasc.synth.scenes import _P, _check_params, _latent_table, _to_params

logger = logging.getLogger(__name__)


FILENAME_RE = re.compile(
    r"^audio/(?P<scene>[a-z_]+)-(?P<city>[a-z]+)-(?P<location>\d+)-(?P<segment>\d+)"
    r"-(?P<sub>\d)-(?P<device>a|b|c|s\d+)\.wav$"
)
"""A file name as listed in the CSVs, e.g. `audio/airport-lisbon-1000-40000-0-a.wav`."""

_MARKER = ".edgeasc_synth"
_README_TAG = "edgeasc synthetic TAU22 stand-in"


DEMO_RECIPE_EPOCHS, DEMO_RECIPE_BATCH, DEMO_RECIPE_WARMUP = 16, 64, 100
"""recipes/demo_student.toml's epochs, batch size and warm-up steps (`DatasetSummary.train_hint`; a test reads
the recipe against them)."""


del _P


_check_params()


def sample_segment_params(
    plan: SegmentPlan, seed: int, difficulty: Difficulty = DEFAULT_DIFFICULTY
) -> tuple[dict[str, float], np.random.Generator]:
    """The recording's parameters (location draw + its own draw) and the generator that renders it."""
    rng = _seed_rng(seed, 2, plan.index)
    _, sds, _, _ = _latent_table(difficulty)
    seg_sd = sds * math.sqrt(1 - difficulty.location_share)
    latent = np.asarray(plan.location_latent) + seg_sd * rng.standard_normal(len(sds))
    return _to_params(latent, difficulty), rng


def _write_wav(path: Path, samples: np.ndarray) -> None:
    import soundfile as sf

    pcm = np.clip(np.rint(samples * 32767.0), -32768, 32767).astype(np.int16)
    buffer = io.BytesIO()
    sf.write(buffer, pcm, SAMPLE_RATE_HZ, format="WAV", subtype="PCM_16")
    write_bytes_atomic(path, buffer.getvalue())


def _render_job(job: tuple[SegmentPlan, int, str, Difficulty]) -> int:
    """Render one recording on all its devices and write its pieces. Returns the number of files written."""
    plan, seed, root, difficulty = job
    params, rng = sample_segment_params(plan, seed, difficulty)
    clean = render_clean_segment(params, rng, difficulty)
    clean_spectrum = _rfft(clean)
    written = 0
    for device in plan.devices:
        device_rng = _seed_rng(seed, 3, plan.index, DEVICES.index(device))
        y = render_device(clean, device, device_rng, difficulty, clean_spectrum)
        if difficulty.output_gain_db:
            y = y * np.float32(_db(difficulty.output_gain_db))
        for sub, name in enumerate(plan.filenames(device)):
            _write_wav(Path(root) / name, y[sub * PIECE_SAMPLES : (sub + 1) * PIECE_SAMPLES])
            written += 1
    return written


@dataclass(frozen=True)
class SynthSummary:
    """What `generate_dataset` wrote.

    Attributes:
        path: the dataset folder.
        clips: {fold: {device: count}} for folds "train" and "test".
        scene_clips: {fold: {scene: count}}.
        split_clips: {percent: clip count} of split_setup/split{percent}.csv.
        seconds: wall time of the generation.
    """

    path: Path
    scale: str
    seed: int
    generator_version: str
    clips: dict[str, dict[str, int]]
    scene_clips: dict[str, dict[str, int]]
    split_clips: dict[int, int]
    seconds: float = field(compare=False)

    @property
    def n_clips(self) -> int:
        return sum(sum(per_device.values()) for per_device in self.clips.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what `edgeasc synth --json` prints)."""
        return {"path": str(self.path), "scale": self.scale, "seed": self.seed,
                "generator_version": self.generator_version, "n_clips": self.n_clips, "clips": self.clips,
                "scene_clips": self.scene_clips, "split_clips": {str(k): v for k, v in self.split_clips.items()},
                "seconds": round(self.seconds, 2)}

    def train_hint(self, out: str = "runs/student") -> str:
        """An `edgeasc train` command that fits this dataset: the demo recipe (16 epochs, batch 64) on split25,
        its 100-step warm-up shortened to a quarter of the run when the split is too small for it."""
        epochs, batch, warmup = DEMO_RECIPE_EPOCHS, DEMO_RECIPE_BATCH, DEMO_RECIPE_WARMUP
        steps = epochs * math.ceil(self.split_clips.get(25, 0) / batch)
        cmd = f"edgeasc train --data {self.path} --out {out} --recipe recipes/demo_student.toml"
        if 0 < steps < 4 * warmup:
            cmd += f" --set optim.warmup_steps={max(1, steps // 4)}"
        return cmd

    def describe(self) -> str:
        """Clip counts per fold and device in aligned columns, then the splits and the folder."""
        width = 7
        lines = ["fold   " + "".join(f"{d:>{width}}" for d in DEVICES) + f"{'total':>{width + 1}}"]
        for fold, per_device in self.clips.items():
            counts = "".join(f"{per_device.get(d, 0):>{width}}" for d in DEVICES)
            lines.append(f"{fold:<7}{counts}{sum(per_device.values()):>{width + 1}}")
        lines.append("splits " + ", ".join(f"split{pct}: {n}" for pct, n in self.split_clips.items()))
        lines.append(
            f"wrote {self.n_clips} clips ({self.scale}, seed {self.seed}) to {self.path} in {self.seconds:.1f} s"
        )
        return "\n".join(lines)


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse to clobber a complete dataset (unless asked) or a folder that is not ours; clear our leftovers."""
    if (out_dir / "meta.csv").exists():
        if not overwrite:
            raise DataError(
                f"{out_dir} already holds a complete dataset (meta.csv found); regenerate it with --overwrite "
                "(edgeasc synth) or overwrite=True (generate_dataset), or keep it with --if-missing"
            )
        readme = out_dir / "README.md"
        if not (out_dir / _MARKER).exists() and not (readme.exists() and _README_TAG in readme.read_text("utf-8")):
            raise DataError(f"{out_dir} holds a dataset that edgeasc did not generate; refusing to overwrite it")
        (out_dir / "meta.csv").unlink()  # first, so an interrupted overwrite reads as incomplete
    elif out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / _MARKER).exists():
        raise DataError(f"{out_dir} is not empty and is not an unfinished synthetic dataset; choose another folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / _MARKER, f"{_README_TAG}, generator {GENERATOR_VERSION}\n")
    # An unfinished or replaced generation: remove only files this generator writes.
    audio = out_dir / "audio"
    if audio.is_dir():
        for path in audio.iterdir():
            if FILENAME_RE.match(f"audio/{path.name}") or path.name.endswith(".tmp"):
                path.unlink()
    for name in ("evaluation_setup", "split_setup"):
        folder = out_dir / name
        if folder.is_dir():
            for path in folder.glob("*.csv"):
                path.unlink()
    (out_dir / "README.md").unlink(missing_ok=True)


def _csv(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    return "\n".join("\t".join(row) for row in [header, *rows]) + "\n"


def generate_dataset(
    out_dir: str | os.PathLike,
    scale: str = "small",
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
    difficulty: Difficulty = DEFAULT_DIFFICULTY,
    workers: int | None = None,
) -> SynthSummary:
    """Write a synthetic dataset in the TAU Urban Acoustic Scenes 2022 Mobile development layout.

    Audio files are written atomically one by one, the CSVs after them and `meta.csv` last: a folder without
    `meta.csv` is an unfinished generation and is regenerated by the next call.

    Args:
        out_dir: dataset folder (created).
        scale: "tiny" (unit tests), "small" (demo) or "medium"; see `SCALES`.
        seed: same seed and scale give byte-identical files.
        progress: show a progress bar.
        overwrite: replace a complete synthetic dataset already in `out_dir`.
        difficulty: see `Difficulty`.
        workers: processes (default: up to 2; 1 for tiny). The files do not depend on it.

    Raises:
        DataError: `out_dir` holds a complete dataset and `overwrite` is False, or holds something else.
    """
    start = time.perf_counter()
    preset = _preset(scale)
    scale_name = scale if isinstance(scale, str) else "custom"
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, overwrite)
    (out_dir / "audio").mkdir(exist_ok=True)

    plans = plan_dataset(preset, seed, difficulty)
    splits = make_splits(plans, seed)
    jobs = [(plan, seed, str(out_dir), difficulty) for plan in plans]
    if workers is None:
        workers = 1 if len(jobs) < 100 else max(1, min(2, os.cpu_count() or 1))
    from edgeasc.progress import progress_bar

    n_total = sum(len(p.devices) * PIECES_PER_SEGMENT for p in plans)
    bar = progress_bar(total=n_total, enabled=progress, unit="clip", desc=f"synthesising {scale_name}")
    if workers == 1:
        for job in jobs:
            bar.update(_render_job(job))
    else:
        import multiprocessing

        # fork where available: no re-import of the caller's script, instant start; the workers use no
        # threads, locks or torch. Every job is seeded on its own, so scheduling order does not matter.
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with context.Pool(workers) as pool:
            for n in pool.imap_unordered(_render_job, jobs, chunksize=4):
                bar.update(n)
    bar.close()

    # CSVs: evaluation setup and splits first, meta.csv last.
    def rows(selected: list[SegmentPlan]) -> list[tuple[str, str]]:
        return sorted((name, p.scene) for p in selected for d in p.devices for name in p.filenames(d))

    train = [p for p in plans if p.fold == "train"]
    test = [p for p in plans if p.fold == "test"]
    setup = out_dir / "evaluation_setup"
    write_text_atomic(setup / "fold1_train.csv", _csv(("filename", "scene_label"), rows(train)))
    write_text_atomic(setup / "fold1_evaluate.csv", _csv(("filename", "scene_label"), rows(test)))
    write_text_atomic(setup / "fold1_test.csv", _csv(("filename",), [(name,) for name, _ in rows(test)]))
    split_clips = {}
    for pct, selected in splits.items():
        split_rows = rows(selected)
        split_clips[pct] = len(split_rows)
        write_text_atomic(out_dir / "split_setup" / f"split{pct}.csv", _csv(("filename", "scene_label"), split_rows))

    clips: dict[str, dict[str, int]] = {}
    scene_clips: dict[str, dict[str, int]] = {}
    for fold in ("train", "test"):
        in_fold = [p for p in plans if p.fold == fold]
        per_device = Counter(d for p in in_fold for d in p.devices)
        clips[fold] = {d: per_device[d] * PIECES_PER_SEGMENT for d in DEVICES if per_device[d]}
        per_scene = Counter(p.scene for p in in_fold for _ in p.devices)
        scene_clips[fold] = {s: per_scene[s] * PIECES_PER_SEGMENT for s in SCENES}
    summary = SynthSummary(
        out_dir, scale_name, seed, GENERATOR_VERSION, clips, scene_clips, split_clips, time.perf_counter() - start
    )
    write_text_atomic(out_dir / "README.md", _readme(summary, preset, difficulty))
    meta_rows = sorted(
        (name, p.scene, f"{p.city}-{p.location_id}", d) for p in plans for d in p.devices for name in p.filenames(d)
    )
    write_text_atomic(out_dir / "meta.csv", _csv(("filename", "scene_label", "identifier", "source_label"), meta_rows))
    logger.info("wrote %d clips to %s in %.1f s", summary.n_clips, out_dir, summary.seconds)
    return summary


def _readme(summary: SynthSummary, preset: ScalePreset, difficulty: Difficulty) -> str:
    lines = [
        f"# Synthetic acoustic scenes ({_README_TAG})",
        "",
        "SYNTHETIC DATA: procedurally generated by `edgeasc.synth`, not recorded. It mimics the layout of",
        "TAU Urban Acoustic Scenes 2022 Mobile (development set), not its sound. See docs/synthetic_data.md.",
        "",
        f"- generator version: {summary.generator_version} (edgeasc.synth)",
        f"- seed: {summary.seed}",
        f"- scale: {summary.scale} {asdict(preset)}",
        f"- difficulty: {asdict(difficulty)}",
        f"- clips: {summary.n_clips} (1 s, 44.1 kHz, 16-bit mono)",
        "",
        "| fold | " + " | ".join(DEVICES) + " | total |",
        "|---" * (len(DEVICES) + 2) + "|",
    ]
    for fold, per_device in summary.clips.items():
        counts = [str(per_device.get(d, 0)) for d in DEVICES]
        lines.append(f"| {fold} | " + " | ".join(counts) + f" | {sum(per_device.values())} |")
    lines += ["", "Splits (clips): " + ", ".join(f"split{k}: {v}" for k, v in summary.split_clips.items()), ""]
    return "\n".join(lines)
