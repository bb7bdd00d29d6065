"""TFLite Micro's arena: the smallest arena the model allocates in, found by bisection in a child process (a
failed allocation can abort the interpreter), and the allocation read-out of its log.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeasc.children import kill_group, start_child
from edgeasc.deploy.runtime import tflm_runtime
from edgeasc.errors import ConfigError, EdgeAscError

ARENA_GRANULARITY_BYTES = 16
"""Bisection step: TFLite Micro aligns arena buffers to 16 bytes (kBufferAlignment)."""

MAX_ARENA_BYTES = 1 << 28
"""Give up looking for an arena that fits beyond this size (256 MiB: far beyond any microcontroller)."""

MIN_ARENA_START_BYTES = 16 * 1024


_ALLOC_RE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_ARENA_ERROR_RE = re.compile(r"(?i)allocat|arena|memory|buffer|missing")
"""TFLite Micro's lines about a too-small arena (the probe then tries a larger one). Any other line may be its
reason for refusing the model at every size (an unsupported operator or type, a hybrid model): one probe in
the largest arena tells the two apart."""


def capture_c_stderr(func: Callable[[], Any]) -> tuple[Any, str]:
    """Run `func` with the process's file descriptor 2 redirected to a temporary file; (result, text).

    TFLite Micro prints from C++ (`print_allocations()`, allocation errors), which `sys.stderr`
    redirection does not see.
    """
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            result = func()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        return result, tmp.read().decode("utf-8", "replace")


def tflm_allocations(interpreter: Any) -> dict[str, int]:
    """{"total", "head", "tail"} bytes of a TFLite Micro interpreter's arena, from `print_allocations()`."""
    _, text = capture_c_stderr(interpreter.print_allocations)
    found = {k: int(v) for k, v in _ALLOC_RE.findall(text)}
    if set(found) != {"total", "head", "tail"}:
        raise EdgeAscError(f"unexpected TFLite Micro print_allocations() output: {text.strip()[:200]!r}")
    return found


class _ArenaProbe:
    """A child process that answers "does the model fit in N bytes?" (see `_probe_main`).

    TFLite Micro raises for most too-small arenas but crashes (SIGSEGV) when even its own interpreter
    structures do not fit; a crash ends only the child, which is restarted and the size counted as failing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last_error = ""
        self.size_error = True
        self._proc: subprocess.Popen | None = None
        self._err = tempfile.TemporaryFile(mode="w+b")
        self._err_pos = 0

    def _start(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            self._err.seek(0)
            self._err.truncate()
            self._err_pos = 0
            # the child imports this very package, installed or not
            package_root = str(Path(__file__).resolve().parents[2])
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
            self._proc = start_child(
                [sys.executable, "-m", "edgeasc.bench", "--arena-probe", str(self.path)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True, bufsize=1, env=env,
            )
        return self._proc

    def _ask(self, line: str) -> bool:
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            answer = proc.stdout.readline().strip()
        except BrokenPipeError:
            answer = ""
        if answer == "ok":
            return True
        crashed = not answer
        if crashed:  # the child died: a crash on a too-small arena
            proc.wait()
            self._proc = None
        self._err.seek(self._err_pos)
        text = self._err.read()
        self._err_pos += len(text)
        lines = [ln for ln in text.decode("utf-8", "replace").splitlines() if ln.strip()]
        own = [ln for ln in lines if not ln.startswith(("RuntimeError: ", "ValueError: "))]  # what TFLite Micro said
        self.last_error = " ".join(own) or (lines[-1] if lines else (answer or "the probe process died"))
        self.size_error = crashed or not own or any(_ARENA_ERROR_RE.search(ln) for ln in own)
        return False

    def fits(self, arena_bytes: int) -> bool:
        """The interpreter allocates all tensors in `arena_bytes`."""
        return self._ask(f"fit {arena_bytes}")

    def runs(self, arena_bytes: int) -> bool:
        """Allocates and completes one `invoke()` on zero inputs."""
        return self._ask(f"run {arena_bytes}")

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                kill_group(self._proc)
        self._proc = None
        self._err.close()

    def __enter__(self) -> _ArenaProbe:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def find_min_arena(
    path: str | os.PathLike, start_bytes: int = MIN_ARENA_START_BYTES, granularity: int = ARENA_GRANULARITY_BYTES
) -> tuple[int, tuple[tuple[int, bool], ...]]:
    """The smallest TFLite Micro arena (a multiple of `granularity`) in which `path` allocates and runs.

    Doubles from `start_bytes` until the model fits, then bisects; the result fits and completes an
    `invoke()`, and the result minus `granularity` does not fit.

    Returns:
        (minimum arena bytes, the probes as (size, fits) pairs in order)

    Raises:
        ModelFileError: TFLite Micro cannot run the model at any arena size up to `MAX_ARENA_BYTES` (for
            example an operator it does not support), with its last error line.
    """
    from edgeasc.deploy.runtime import ModelFileError

    if granularity < 1:
        raise ConfigError(f"arena granularity must be >= 1 byte, got {granularity}")
    path = Path(path)
    probes: list[tuple[int, bool]] = []
    with _ArenaProbe(path) as probe:

        def fits(n: int) -> bool:
            ok = probe.fits(n)
            probes.append((n, ok))
            return ok

        lo = 0  # an empty arena never fits
        hi = max(granularity, -(-start_bytes // granularity) * granularity)
        confirmed = False
        while not fits(hi):
            if not probe.size_error and not confirmed:
                # not an arena-size message: does the model fail in the largest arena too? Then TFLite Micro
                # refuses the model itself (an operator or type, a hybrid model) and says why
                confirmed = True
                if not probe.fits(MAX_ARENA_BYTES):
                    raise ModelFileError(f"{path}: TFLite Micro cannot run this model: {probe.last_error}")
            lo = hi
            hi *= 2
            if hi > MAX_ARENA_BYTES:
                raise ModelFileError(f"{path}: TFLite Micro cannot allocate this model in {MAX_ARENA_BYTES:,} bytes "
                                     f"of arena ({probe.last_error})")
        while hi - lo > granularity:
            mid = (lo + hi) // 2 // granularity * granularity
            if fits(mid):
                hi = mid
            else:
                lo = mid
        if not probe.runs(hi):
            raise ModelFileError(f"{path}: TFLite Micro allocates this model in {hi:,} bytes but cannot run it "
                                 f"({probe.last_error})")
    return hi, tuple(probes)


def _probe_main(model_path: str) -> int:
    """Child-process loop of `_ArenaProbe`: reads `fit N` / `run N` lines, answers `ok` or `fail`."""
    from edgeasc.deploy.tflite_graph import read_tflite_model

    runtime = tflm_runtime()
    data = Path(model_path).read_bytes()
    n_inputs = read_tflite_model(data, model_path).Subgraphs(0).InputsLength()
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if not cmd:
            continue
        try:
            interp = runtime.Interpreter.from_bytes(data, arena_size=int(arg))
            if cmd == "run":
                for i in range(n_inputs):
                    detail = interp.get_input_details(i)
                    interp.set_input(np.zeros(detail["shape"], dtype=detail["dtype"]), i)
                interp.invoke()
            del interp
            answer = "ok"
        except (RuntimeError, ValueError) as exc:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            answer = "fail"
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()
    return 0
