"""TAU Urban Acoustic Scenes 2022 Mobile, development layout: the same code reads the real set and
the synthetic one `edgeasc synth` writes.

Layout (SPEC.md section 1):
    meta.csv                        filename  scene_label  identifier  source_label   (tab-separated)
    evaluation_setup/fold1_train.csv, fold1_evaluate.csv (filename, scene_label), fold1_test.csv (filename)
    split_setup/split{5,10,25,50,100}.csv (filename, scene_label): the DCASE 2024/2025 training subsets
    audio/{scene}-{city}-{location}-{segment}-{sub}-{device}.wav

Resampled waveforms are cached once per clip list as a memory-mapped float32 array, keyed by the file
list, file sizes and modification times and the target rate, so a changed list rebuilds the cache.
Loading never downloads anything.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeasc.artifacts import require_writable, write_atomic, write_json_atomic
from edgeasc.data.audio import load_clip
from edgeasc.errors import DataError
from edgeasc.labels import DEVICES, SCENES, device_key

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: torchaudio's resampling (edgeasc.data.audio.resample) instead of scipy's polyphase filter
SPLIT_FILES = {
    "train": "evaluation_setup/fold1_train.csv",
    "test": "evaluation_setup/fold1_evaluate.csv",
    **{f"split{p}": f"split_setup/split{p}.csv" for p in (5, 10, 25, 50, 100)},
}


@dataclass(frozen=True)
class Clip:
    """One 1-s clip of the dataset.

    Attributes:
        filename: path relative to the dataset root, as in the CSVs (`audio/...wav`).
        scene: scene label (one of `SCENES`).
        device: recording device id (`a`, `s1`, ...).
        identifier: `{city}-{location_id}`.
    """

    filename: str
    scene: str
    device: str
    identifier: str

    @property
    def clip_id(self) -> str:
        """File stem, the key used for teacher logits (`airport-lisbon-1000-40000-0-a`)."""
        return Path(self.filename).stem

    @property
    def recording_id(self) -> str:
        """The 10-s recording a clip was cut from: the stem without sub-segment and device."""
        return self.clip_id.rsplit("-", 2)[0]

    @property
    def label(self) -> int:
        return SCENES.index(self.scene)


def _read_tsv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise DataError(f"missing dataset file: {path}")
    try:  # utf-8-sig: a byte-order mark (as spreadsheet programs write) is not part of the first column's name
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if rows and "filename" not in rows[0]:
        raise DataError(f"{path}: expected a tab-separated file with a 'filename' column")
    return rows


class TAUDataset:
    """Metadata of a TAU22-layout dataset directory.

    Args:
        root: the dataset folder (holds meta.csv).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not (self.root / "meta.csv").is_file():
            raise DataError(
                f"{self.root} is not a TAU22-layout dataset (no meta.csv); "
                "create one with `edgeasc synth DIR` or point --data at the TAU22 development folder"
            )
        self.meta: dict[str, Clip] = {}
        for row in _read_tsv(self.root / "meta.csv"):
            try:
                # device ids as `edgeasc.devices.dcase` routes them: "A" is device a, not a tenth device
                clip = Clip(row["filename"], row["scene_label"], device_key(row["source_label"]),
                            row["identifier"])
            except KeyError as exc:
                raise DataError(f"{self.root / 'meta.csv'}: missing column {exc}") from None
            if clip.scene not in SCENES:
                raise DataError(f"{self.root / 'meta.csv'}: unknown scene {clip.scene!r} for {clip.filename}")
            self.meta[clip.filename] = clip

    def clips(self, split: str) -> list[Clip]:
        """Clips of a split (`train`, `test` or `split5` ... `split100`), in file order."""
        if split not in SPLIT_FILES:
            raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLIT_FILES)}")
        rows = _read_tsv(self.root / SPLIT_FILES[split])
        missing = [r["filename"] for r in rows if r["filename"] not in self.meta]
        if missing:
            raise DataError(
                f"{SPLIT_FILES[split]}: {len(missing)} files are not in meta.csv (first: {missing[0]})"
            )
        clips = [self.meta[r["filename"]] for r in rows]
        unknown = sorted({c.device for c in clips} - set(DEVICES))
        if unknown:
            log.warning("split %s has devices outside a, b, c, s1-s6: %s", split, ", ".join(unknown))
        return clips


def default_cache_dir(data_root: Path) -> Path:
    """`DATA/.edgeasc_cache` when the dataset folder is writable, else the user cache."""
    if os.access(data_root, os.W_OK):
        return data_root / ".edgeasc_cache"
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "edgeasc" / hashlib.sha256(str(data_root.resolve()).encode()).hexdigest()[:16]


def cache_key(root: Path, clips: list[Clip], sample_rate_hz: int, clip_samples: int) -> str:
    """Hash of everything that determines the cached array: list, sizes, mtimes, rate, length."""
    h = hashlib.sha256(f"v{CACHE_VERSION}:{sample_rate_hz}:{clip_samples}\n".encode())
    for clip in clips:
        try:
            st = (root / clip.filename).stat()
        except FileNotFoundError:
            raise DataError(f"audio file listed in the dataset is missing: {root / clip.filename}") from None
        h.update(f"{clip.filename}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def load_waveforms(
    root: str | os.PathLike,
    clips: list[Clip],
    sample_rate_hz: int,
    clip_samples: int,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> np.ndarray:
    """The clips' waveforms as a read-only memory-mapped (N, clip_samples) float32 array.

    Built once (resample to `sample_rate_hz`, mono, pad/crop to `clip_samples`) and reused while the
    key matches. The array file is written under a temporary name and renamed, so an interrupted build
    leaves no half cache behind.
    """
    root = Path(root)
    cache = Path(cache_dir) if cache_dir else default_cache_dir(root)
    key = cache_key(root, clips, sample_rate_hz, clip_samples)
    array_path = cache / f"wave_{key}.f32"
    info_path = cache / f"wave_{key}.json"
    if array_path.is_file() and info_path.is_file():
        return np.memmap(array_path, dtype=np.float32, mode="r", shape=(len(clips), clip_samples))

    require_writable(cache, "waveform cache (--cache-dir)")
    log.info("caching %d clips at %d Hz in %s", len(clips), sample_rate_hz, cache)

    def build(tmp: Path) -> None:
        arr = np.memmap(tmp, dtype=np.float32, mode="w+", shape=(len(clips), clip_samples))
        from edgeasc.progress import progress_bar

        for i, clip in enumerate(progress_bar(clips, progress, desc="caching audio", unit="clip")):
            arr[i] = load_clip(root / clip.filename, sample_rate_hz, clip_samples)
        arr.flush()
        del arr

    write_atomic(array_path, build)
    write_json_atomic(
        info_path,
        {"version": CACHE_VERSION, "root": str(root), "n_clips": len(clips), "sample_rate_hz": sample_rate_hz,
         "clip_samples": clip_samples, "first": clips[0].filename if clips else None},
    )
    return np.memmap(array_path, dtype=np.float32, mode="r", shape=(len(clips), clip_samples))
