"""A backing store that fails on demand: a pytest plugin (after pyudev's fake plugins).

The ``faults`` fixture patches the os calls the devices already use (``pread``,
``pwrite``, ``preadv``, ``pwritev``, ``copy_file_range``, ``fsync``, ``fdatasync``; the
compiled loop of :mod:`lio_xcopy.devices.filecopy` is turned off) so that I/O on one file
fails the way a failing disk or a full filesystem does, with no hook in the devices:

- ``fail_read(path, at, length)`` / ``fail_write(...)``: bytes ``[at, at + length)``
  are bad; a call that starts before them moves the good bytes and returns a short
  count (as the kernel does), a call that starts on them raises ``OSError(err)``;
- ``short_writes(path, most)``: every write moves at most ``most`` bytes;
- ``fail_sync(path)``: ``fsync`` and ``fdatasync`` raise.

Registered in tests/unit/conftest.py.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

import pytest

from lio_xcopy.devices import filecopy

END = 1 << 63


@dataclass
class _Rule:
    op: str  # "read", "write" or "sync"
    path: str
    start: int = 0
    end: int = END
    err: int = errno.EIO
    most: int | None = None  # short transfers of at most this many bytes, no error


@dataclass
class FaultyStorage:
    """The faults in force, and the errors they raised (``raised``: op, offset)."""

    rules: list[_Rule] = field(default_factory=list)
    raised: list[tuple[str, int]] = field(default_factory=list)

    def fail_read(self, path, at: int = 0, length: int | None = None,
                  err: int = errno.EIO) -> None:
        self._add("read", path, at, length, err)

    def fail_write(self, path, at: int = 0, length: int | None = None,
                   err: int = errno.EIO) -> None:
        self._add("write", path, at, length, err)

    def fail_sync(self, path, err: int = errno.EIO) -> None:
        self._add("sync", path, 0, None, err)

    def short_writes(self, path, most: int) -> None:
        self.rules.append(_Rule("write", _real(path), most=most))

    def heal(self) -> None:
        self.rules.clear()

    def _add(self, op: str, path, at: int, length: int | None, err: int) -> None:
        end = END if length is None else at + length
        self.rules.append(_Rule(op, _real(path), at, end, err))

    # --- what a call on ``fd`` may do ---------------------------------------------------------
    def _rules(self, op: str, fd: int) -> list[_Rule]:
        if not any(r.op == op for r in self.rules):
            return []
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return []
        return [r for r in self.rules if r.op == op and r.path == path]

    def allowed(self, op: str, fd: int, offset: int, want: int) -> int:
        """How many of ``want`` bytes at ``offset`` this call moves; raises at a bad byte."""
        for r in self._rules(op, fd):
            if r.most is not None:
                want = min(want, r.most)
            elif r.start <= offset < r.end:
                self.raised.append((op, offset))
                raise OSError(r.err, os.strerror(r.err))
            elif offset < r.start < offset + want:
                want = r.start - offset
        return want

    def sync(self, fd: int) -> None:
        for r in self._rules("sync", fd):
            self.raised.append(("sync", 0))
            raise OSError(r.err, os.strerror(r.err))


def _real(path) -> str:
    return os.path.realpath(os.fspath(path))


def _clip(views, n: int) -> list[memoryview]:
    out, left = [], n
    for v in views:
        if left <= 0:
            break
        v = memoryview(v).cast("B")
        out.append(v[:left])
        left -= len(out[-1])
    return out


@pytest.fixture
def faults(monkeypatch) -> FaultyStorage:
    """Fault injection on the os calls of backing stores and cartridges."""
    state = FaultyStorage()
    # the kernel copies in the os calls patched here, not in the compiled loop
    monkeypatch.setattr(filecopy, "compiled_helpers", lambda: None)
    real = {name: getattr(os, name) for name in
            ("pread", "pwrite", "preadv", "pwritev", "copy_file_range", "fsync",
                          "fdatasync")}

    def preadv(fd, views, offset):
        want = sum(memoryview(v).nbytes for v in views)
        n = state.allowed("read", fd, offset, want)
        return real["preadv"](fd, _clip(views, n), offset) if n < want else \
            real["preadv"](fd, views, offset)

    def pwritev(fd, views, offset, flags=0):
        want = sum(memoryview(v).nbytes for v in views)
        n = state.allowed("write", fd, offset, want)
        done = real["pwritev"](fd, _clip(views, n), offset, flags) if n < want else \
            real["pwritev"](fd, views, offset, flags)
        if flags & os.RWF_DSYNC:  # the write's own sync fails as fdatasync would
            state.sync(fd)
        return done

    def copy_file_range(src, dst, count, offset_src=None, offset_dst=None):
        n = state.allowed("read", src, offset_src or 0, count)
        n = state.allowed("write", dst, offset_dst or 0, n) if n else 0
        return real["copy_file_range"](src, dst, n, offset_src, offset_dst) if n else 0

    def pread(fd, length, offset):
        return real["pread"](fd, state.allowed("read", fd, offset, length), offset)

    def pwrite(fd, data, offset):
        n = state.allowed("write", fd, offset, len(data))
        return real["pwrite"](fd, memoryview(data)[:n], offset)

    def syncer(name):
        def sync(fd):
            state.sync(fd)
            return real[name](fd)
        return sync

    for name, fake in (("preadv", preadv), ("pwritev", pwritev), ("pread", pread),
                       ("pwrite", pwrite), ("copy_file_range", copy_file_range),
                       ("fsync", syncer("fsync")),
                       ("fdatasync", syncer("fdatasync"))):
        monkeypatch.setattr(os, name, fake)
    return state
