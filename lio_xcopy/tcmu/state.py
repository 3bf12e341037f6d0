"""The daemon's runtime state file: what it serves and the copies in progress.

``lio-xcopy status`` reads it; the daemon rewrites it atomically (temp file and rename)
when devices come and go and about once a second while copies run. It holds no secrets.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lio_xcopy.files import write_atomic

#: systemd's RuntimeDirectory=lio-xcopy
DEFAULT_PATH = Path("/run/lio-xcopy/state.json")


@dataclass(frozen=True, slots=True)
class CopyState:
    """One EXTENDED COPY as ``status`` shows it."""

    lun: str
    list_id: int
    status: str  # "running", "completed", "failed"
    segments: int
    segments_processed: int
    transferred: int
    planned: int
    elapsed: float
    description: tuple[str, ...] = ()

    @property
    def rate(self) -> float:
        """Bytes per second so far."""
        return self.transferred / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True, slots=True)
class DaemonState:
    pid: int
    written: float  # time.time()
    luns: dict[str, str] = field(default_factory=dict)  # name -> device class
    copies: tuple[CopyState, ...] = ()


def write(state: DaemonState, path: Path = DEFAULT_PATH) -> None:
    """Replace the state file atomically; a missing directory is created 0755."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    # others read it, never write it
    write_atomic(path, json.dumps(asdict(state), indent=1).encode(), 0o644)


def read(path: Path = DEFAULT_PATH) -> DaemonState | None:
    """The state the daemon wrote, or None when there is none (daemon not running)
    or it belongs to a process that is gone."""
    try:
        doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        state = DaemonState(int(doc["pid"]), float(doc["written"]), dict(doc["luns"]),
                            tuple(CopyState(**{**c, "description": tuple(c["description"])})
                                  for c in doc["copies"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(state.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return state


def remove(path: Path = DEFAULT_PATH) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def now() -> float:
    return time.time()
