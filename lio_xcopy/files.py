"""Atomic file replacement: readers see the old content or the new, never a part, and
after a crash the file holds one of the two.

The new content goes to a temporary file in the same directory (every byte written,
however short each ``write``), is flushed with ``fsync``, renamed over the file, and the
directory is flushed so the rename itself survives a crash.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data``: ``os.write`` may write fewer than it was given."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_temp(path: Path, data: bytes, mode: int = 0o600) -> str:
    """A temporary file next to ``path`` holding ``data`` with permissions ``mode``
    (whatever the umask, set before any byte is written), flushed to disk."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            os.fchmod(fd, mode)
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def replace(tmp: str, path: Path, before: Callable[[], None] | None = None) -> None:
    """Rename ``tmp`` over ``path`` (after ``before()``); on failure ``tmp`` is removed."""
    try:
        if before is not None:
            before()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def fsync_dir(directory: Path) -> None:
    """Flush a directory's entries (a rename in it) to disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably, permissions ``mode``."""
    replace(write_temp(path, data, mode), path)
    fsync_dir(path.parent)
