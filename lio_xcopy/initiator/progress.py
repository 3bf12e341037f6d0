"""The progress display of ``lio-xcopy copy``, ``backup`` and ``restore``.

Progress goes to its own stream (stderr), never to the command's output. On a terminal
one line is redrawn in place (``\\r``); anywhere else (a log, a pipe) each update is a
line of its own, at most one every ``interval`` seconds, and no ``\\r`` is written.
``json`` mode writes one JSON object per update (keys in :func:`as_json`) for scripts;
``quiet`` writes nothing. :meth:`Progress.abandon` ends a drawn line so that an error
printed next starts on a line of its own.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

MiB = 1 << 20

BAR, LINES, JSON, QUIET = "bar", "lines", "json", "quiet"


def clock(seconds: float) -> str:
    """``0:05``, ``12:34``, ``2:46:39``."""
    s = int(seconds + 0.5)
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def _rate(moved: int, seconds: float) -> float:
    """MiB/s."""
    return moved / MiB / seconds if seconds > 0 else 0.0


def _eta(moved: int, total: int, seconds: float) -> float | None:
    rate = _rate(moved, seconds)
    if moved >= total:
        return 0.0
    return (total - moved) / MiB / rate if rate > 0 else None


def format_progress(moved: int, total: int, seconds: float, width: int = 24) -> str:
    """``[#########...............]  37%   35.5/96.0 MiB   11.8 MiB/s  ETA 0:05``."""
    frac = min(moved / total, 1.0) if total > 0 else 1.0
    fill = int(frac * width)
    eta = _eta(moved, total, seconds)
    unit, scale = next((u, n) for u, n in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1 << 10))
                       if total >= n or n == 1 << 10)
    return (f"[{'#' * fill}{'.' * (width - fill)}] {100 * frac:3.0f}%  "
            f"{moved / scale:7.1f}/{total / scale:.1f} {unit}  "
            f"{_rate(moved, seconds):6.1f} MiB/s  ETA {'--:--' if eta is None else clock(eta)}")


def as_json(moved: int, total: int, seconds: float, *, done: bool = False) -> str:
    """One update as a JSON object on one line: ``bytes``, ``total``, ``percent``,
    ``mib_per_s``, ``elapsed`` and ``eta`` (seconds; null while unknown), ``done``."""
    eta = _eta(moved, total, seconds)
    return json.dumps({
        "bytes": moved, "total": total,
        "percent": round(100 * min(moved / total, 1.0), 1) if total > 0 else 100.0,
        "mib_per_s": round(_rate(moved, seconds), 2), "elapsed": round(seconds, 2),
        "eta": None if eta is None else round(eta, 1), "done": done}, separators=(",", ":"))


def mode_for(out: IO[str], *, quiet: bool = False, as_json_lines: bool = False) -> str:
    """The mode for the options given and the stream: a bar on a terminal, else lines."""
    if quiet:
        return QUIET
    if as_json_lines:
        return JSON
    isatty = getattr(out, "isatty", None)
    return BAR if isatty is not None and isatty() else LINES


class Progress:
    """Shows how far a copy of ``total`` bytes is, on ``out`` in ``mode``."""

    def __init__(self, total: int, out: IO[str], mode: str = LINES, *, interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        if mode not in (BAR, LINES, JSON, QUIET):
            raise ValueError(f"no progress mode {mode!r}")
        self.total = total
        self.out = out
        self.mode = mode
        self.interval = interval
        self.clock = clock
        self._last: float | None = None
        self._width = 0  # of the line drawn in place; 0: none open

    def show(self, moved: int, seconds: float) -> None:
        """One update; on a terminal at once, elsewhere at most every ``interval``."""
        if self.mode == QUIET:
            return
        if self.mode == BAR:
            line = "  " + format_progress(moved, self.total, seconds)
            self.out.write("\r" + line.ljust(self._width))
            self._width = len(line)
            self.out.flush()
            return
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            return
        self._last = now
        self._line(moved, seconds, done=False)

    def finish(self, moved: int, seconds: float) -> None:
        """The last update, always shown: ``in M:SS`` instead of the ETA."""
        if self.mode == QUIET:
            return
        if self.mode == BAR:
            line = self._final(moved, seconds)
            self.out.write("\r" + line.ljust(self._width) + "\n")
            self._width = 0
            self.out.flush()
            return
        self._line(moved, seconds, done=True)

    def abandon(self) -> None:
        """End the line drawn in place, if any: what is printed next starts a line."""
        if self.mode == BAR and self._width:
            self.out.write("\n")
            self.out.flush()
            self._width = 0

    def _final(self, moved: int, seconds: float) -> str:
        return "  " + format_progress(moved, self.total, seconds).replace(
            "ETA 0:00", f"in {clock(seconds)}")

    def _line(self, moved: int, seconds: float, *, done: bool) -> None:
        if self.mode == JSON:
            text = as_json(moved, self.total, seconds, done=done)
        else:
            text = (self._final(moved, seconds) if done
                    else "  " + format_progress(moved, self.total, seconds))
        print(text, file=self.out, flush=True)


def make(total: int, out: IO[str], *, setting: bool | str = True,
         tty: bool | None = None) -> Progress:
    """A display for ``setting``: True picks by the stream (``tty`` overrides what
    ``out.isatty()`` says), False is quiet, or a mode by name."""
    if isinstance(setting, str):
        return Progress(total, out, setting)
    if not setting:
        return Progress(total, out, QUIET)
    if tty is None:
        return Progress(total, out, mode_for(out))
    return Progress(total, out, BAR if tty else LINES)


@dataclass(frozen=True, slots=True)
class Display:
    """Where a job's progress goes: ``progress`` as :func:`make` takes it (True: a bar on
    a terminal, lines elsewhere, ``tty`` overriding what the stream says; False: none;
    or a mode by name); ``err`` defaults to stderr."""

    progress: bool | str = True
    err: IO[str] | None = None
    tty: bool | None = None

    def make(self, total: int) -> Progress:
        """The display of a copy of ``total`` bytes."""
        return make(total, self.err if self.err is not None else sys.stderr,
                    setting=self.progress, tty=self.tty)
