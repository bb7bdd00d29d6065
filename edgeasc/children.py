"""Child processes that die with their parent (Linux: the parent-death signal; elsewhere a plain child)."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any


def die_with_parent() -> None:
    """`preexec_fn` of a child: the kernel sends it SIGKILL when the process that started it dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def run_child(cmd: list[str], timeout: float | None = None, **kwargs: Any) -> subprocess.CompletedProcess:
    """`subprocess.run` of a child that is killed when this process dies or when `timeout` passes."""
    return subprocess.run(cmd, timeout=timeout, preexec_fn=die_with_parent, **kwargs)
