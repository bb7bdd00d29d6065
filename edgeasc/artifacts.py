"""Atomic writes: every artifact appears whole or not at all (temp file in the same folder + rename)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def write_atomic(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call `writer(tmp_path)` and rename the result onto `path`, so readers never see a partial file.

    Args:
        path: final location.
        writer: function that writes the complete artifact to the temporary path it is given.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        writer(tmp_path)
        # mkstemp creates 0600 files; give artifacts the permissions a plain open() would
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def require_writable(folder: str | os.PathLike, what: str) -> Path:
    """Create `folder` if needed and check that a file can be written in it, before long work writes there.

    Raises:
        ConfigError: one line naming the folder and the reason (permission, read-only file system, full disk).
    """
    from edgeasc.errors import ConfigError

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_check_", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"cannot write the {what} in {folder}: {exc.strerror or exc}") from None
    return folder


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    return write_atomic(path, lambda p: p.write_bytes(data))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def strict_json(obj: Any, indent: int | None = None) -> str:
    """`json.dumps` that stays standard JSON: a NaN or infinite float is written as null (Python's default
    writes bare `NaN`, which most JSON readers refuse)."""

    def clean(o: Any) -> Any:
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o

    return json.dumps(clean(obj), indent=indent, allow_nan=False)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """`obj` as strict JSON (`strict_json`), written atomically."""
    return write_text_atomic(path, strict_json(obj, indent=2) + "\n")


def save_torch_atomic(path: str | os.PathLike, obj: Any) -> Path:
    import torch

    return write_atomic(path, lambda p: torch.save(obj, p))


def load_torch(path: str | os.PathLike, what: str = "checkpoint", safe_globals: tuple[type, ...] = ()) -> Any:
    """`torch.load` with `weights_only=True` (no pickled code runs), every failure one `CheckpointError` line.

    Args:
        path: the file.
        what: what the file should be, for the messages ("checkpoint", "training state", ...).
        safe_globals: inert classes the file may hold besides tensors (e.g. argparse.Namespace).

    Raises:
        CheckpointError: missing file, unreadable or foreign file, or one that pickles other Python objects.
            torch's own advice to retry with `weights_only=False` (which runs the file's code) is not passed on.
    """
    import torch

    from edgeasc.errors import CheckpointError

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise CheckpointError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    foreign = _not_torch(head)
    if foreign:
        raise CheckpointError(f"{path} is not a PyTorch {what} ({foreign})")
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        text = str(exc).strip()
        if "Weights only load failed" in text or "weights_only" in text:
            raise CheckpointError(
                f"cannot read {what} {path} safely: it pickles Python objects besides tensors, and edgeasc never "
                "runs a file's code; re-save only its tensors (e.g. torch.save({'state_dict': sd}, ...))"
            ) from None
        first = (text.splitlines() or [""])[0]
        raise CheckpointError(f"cannot read {what} {path}: {type(exc).__name__}: {first}") from None


_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"RIFF", "a WAV audio file"),
    (0, b"fLaC", "a FLAC audio file"),
    (4, b"TFL3", "a TFLite model"),
    (0, b"\x08", "an ONNX model or another protobuf file"),
    (0, b"\x89HDF", "an HDF5 file"),
)


def _not_torch(head: bytes) -> str:
    """What a file that `torch.save` did not write looks like ("" when it may be one: a zip archive, or the
    legacy pickle format)."""
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return ""
    for offset, magic, name in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return f"it is {name}"
    return "neither a zip archive nor a pickle" if head else "the file is empty"


@contextmanager
def exclusive_run(folder: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive lock on `folder/.edgeasc.lock` while a run writes into `folder`.

    A second process that tries the same folder fails at once with a one-line error instead of writing
    the same files concurrently. The lock (flock) dies with its process, so a killed run leaves no stale lock.

    Raises:
        DataError: another process holds the folder. ConfigError: the folder cannot be written.
    """
    import fcntl

    from edgeasc.errors import DataError

    folder = require_writable(folder, f"{what} run")
    try:
        fd = os.open(folder / ".edgeasc.lock", os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise DataError(f"cannot lock {folder / '.edgeasc.lock'}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(f"another {what} is running in {folder}; wait for it to finish or stop it") from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
