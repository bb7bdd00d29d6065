"""Progress bars: one factory for every long loop.

On a terminal, a tqdm bar on stderr. When stderr is not a terminal (a log file, CI, `nohup`), tqdm's
carriage-return redraws would pile up into one unreadable line: the bar then prints a plain line at most every
`PLAIN_INTERVAL_S` seconds, and one at the end. `edgeasc -q` (`set_enabled(False)`) and each command's
`--no-progress` switch bars off.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

PLAIN_INTERVAL_S = 30.0

_enabled = True


def set_enabled(enabled: bool) -> None:
    """Switch every bar of this process on or off (`edgeasc -q` switches them off)."""
    global _enabled
    _enabled = enabled


class _Lines:
    """A file for tqdm that turns each redraw into one newline-terminated line."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").replace("\x1b[A", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable: Iterable[Any] | None = None, enabled: bool = True, **kwargs: Any) -> Any:
    """`tqdm(iterable, **kwargs)` on stderr, disabled unless `enabled` and bars are on (`set_enabled`).

    Plain lines instead of redraws when stderr is not a terminal (see the module docstring)."""
    from tqdm import tqdm

    stream = sys.stderr
    disable = not (enabled and _enabled)
    if not disable and not (hasattr(stream, "isatty") and stream.isatty()):
        kwargs = {**kwargs, "file": _Lines(stream), "mininterval": PLAIN_INTERVAL_S, "ncols": 100,
                  "dynamic_ncols": False}
    return tqdm(iterable, disable=disable, **kwargs)
