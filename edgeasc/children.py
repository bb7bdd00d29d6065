"""Child processes that die with their parent, their own children included.

A child runs under a small watcher process that leads a process group of its own. The watcher starts the
command in that group and kills the whole group (the command and anything it started, such as onnx2tf's
`onnxsim` grandchild) as soon as the process that started it is gone, however it ended: SIGKILL included.
On Linux the kernel tells the watcher at once (the parent-death signal); elsewhere it notices within
`_POLL_S`. The parent ends a group with `kill_group`; `run_child` does so on a timeout or an interrupt.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

_POLL_S = 0.2


def _watch(parent: int, poll_s: float, cmd: list[str]) -> None:
    """The watcher (this file run as a script, in its own process group): runs `cmd` in the group and kills
    the group when `parent` is gone; exits with the command's status, a signal's included."""

    def end_group(*_: Any) -> None:
        os.killpg(0, signal.SIGKILL)

    signal.signal(signal.SIGTERM, end_group)
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # gone before the signal was armed
        end_group()
    child = subprocess.Popen(cmd)
    while True:
        try:
            code = child.wait(poll_s)
            break
        except subprocess.TimeoutExpired:
            if os.getppid() != parent:
                end_group()
    if code < 0:  # the command died of a signal: so does the watcher, and the parent reads the same status
        try:
            signal.signal(-code, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL and SIGSTOP keep their default anyway
            pass
        os.kill(os.getpid(), -code)
    sys.exit(code)


def _guarded(cmd: list[str]) -> tuple[list[str], dict[str, Any]]:
    """The watcher's command line and the Popen options that give it a process group of its own."""
    if os.name != "posix":  # no process groups: a plain child
        return list(cmd), {}
    return ([sys.executable, "-I", "-S", os.path.abspath(__file__), str(os.getpid()), str(_POLL_S),
             *map(str, cmd)],
            {"process_group": 0})


def start_child(cmd: list[str], **kwargs: Any) -> subprocess.Popen:
    """`subprocess.Popen(cmd, **kwargs)` under a watcher: the command and its descendants die with this process.

    End it early with `kill_group`, never with `Popen.kill` (that ends the watcher only)."""
    full, extra = _guarded(cmd)
    return subprocess.Popen(full, **extra, **kwargs)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL to a `start_child` process and everything it started; waits for the watcher."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL) if os.name == "posix" else proc.kill()
        except (ProcessLookupError, PermissionError):
            proc.kill()
    proc.wait()


def run_child(cmd: list[str], timeout: float | None = None, capture_output: bool = False,
              **kwargs: Any) -> subprocess.CompletedProcess:
    """`subprocess.run` of a `start_child` command: on a timeout (TimeoutExpired) or an interrupt its whole
    group is killed before the exception goes on."""
    if capture_output:
        kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc = start_child(cmd, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        kill_group(proc)
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


if __name__ == "__main__":
    _watch(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:])
