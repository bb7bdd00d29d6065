"""Child processes die with their parent, grandchildren included (edgeasc.children)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edgeasc.children import run_child

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

REPO = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    """Running (a zombie that nobody reaps counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc's parent links."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - found
        found |= frontier
    return found


def wait_gone(pids: set[int], seconds: float = 10.0) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = {p for p in pids if _alive(p)}
        if not left:
            return left
        time.sleep(0.1)
    return {p for p in pids if _alive(p)}


def test_status_and_output_pass_through_the_watcher():
    res = run_child([sys.executable, "-c", "import sys; print('out'); sys.exit(3)"], capture_output=True, text=True)
    assert (res.returncode, res.stdout) == (3, "out\n")
    killed = run_child(["sh", "-c", "kill -TERM $$"])
    assert killed.returncode == -signal.SIGTERM  # a signal's death reads the same as without the watcher


def test_a_timeout_kills_the_grandchildren_too(tmp_path):
    pids = tmp_path / "pids"
    with pytest.raises(subprocess.TimeoutExpired):
        run_child(["sh", "-c", f"sleep 60 & echo $! > {pids}; sleep 60"], timeout=1.5)
    grandchild = int(pids.read_text())
    assert not wait_gone({grandchild}), "the background sleep outlived the timeout"


def test_sigkill_of_the_parent_ends_the_whole_tree(tmp_path):
    """The parent is SIGKILLed (nothing of it runs after): its guarded child and grandchild go within seconds."""
    ready = tmp_path / "ready"
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from edgeasc.children import start_child
        start_child(["sh", "-c", "sleep 60 & sleep 60 & touch {ready}; wait"])
        time.sleep(60)
    """)], env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the child never started"
        tree = descendants(parent.pid)
        assert len(tree) >= 4, tree  # watcher, sh, two sleeps
    finally:
        parent.kill()
        parent.wait()
    assert not wait_gone(tree), "processes outlived their killed parent"
