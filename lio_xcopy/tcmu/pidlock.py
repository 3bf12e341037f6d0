"""One daemon per state directory: an exclusive ``flock`` on ``daemon.lock`` beside the
state file, held for the daemon's lifetime, with the holder's pid written in it.

The kernel drops the lock when the holder's process ends, however it ends (SIGKILL
included), so a stale lock file never blocks a restart.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from lio_xcopy.errors import LioXcopyError

#: the lock file's name, in the state file's directory
NAME = "daemon.lock"


class AlreadyRunning(LioXcopyError):
    """Another daemon holds the lock; ``pid`` is its process id (None: not written yet)."""

    def __init__(self, path: Path, pid: int | None):
        self.path = path
        self.pid = pid
        who = f"pid {pid}" if pid is not None else "a process that is starting"
        super().__init__(f"another lio-xcopy daemon is running ({who}, holding {path}): "
                         "stop it first (`systemctl stop lio-xcopy`"
                         + (f" or `kill {pid}`" if pid is not None else "") + ")")


class PidLock:
    """The held lock; :meth:`release` (or the process's end) lets the next daemon in."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None

    def __enter__(self) -> PidLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(path: Path) -> int | None:
    """The pid written in a lock file, None when there is none or it is unreadable."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def acquire(path: Path) -> PidLock:
    """Take the lock at ``path`` (its directory created 0755 if missing) and write this
    process's pid in it; raises :class:`AlreadyRunning` naming the holder, having
    changed nothing, when another process holds it."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(path, holder(path)) from None
    except OSError:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return PidLock(path, fd)


def running(path: Path, proc_locks: Path = Path("/proc/locks")) -> int | None:
    """The pid of the daemon holding the lock at ``path``, None when no process holds it
    (the file may remain after a daemon ended). Reads the kernel's table of locks
    rather than trying the lock, so a daemon starting meanwhile is never disturbed."""
    try:
        st = path.stat()
        table = proc_locks.read_text()
    except OSError:
        return None
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF" (fs/locks.c, lock_get_status)
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == want \
                and fields[4].isdigit():
            return int(fields[4])
    return None
