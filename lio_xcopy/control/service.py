"""The running daemon, seen from the control plane: is it there, and asking it to read
its configuration again (SIGHUP, what ``systemctl reload lio-xcopy`` sends)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from lio_xcopy.tcmu import pidlock
from lio_xcopy.tcmu import state as state_file

#: the lock the daemon holds while it runs (beside its state file)
DEFAULT_LOCK = state_file.DEFAULT_PATH.with_name(pidlock.NAME)


def reload_daemon(lock: Path | None = None) -> str:
    """Have the running daemon read its copy groups again (and look for devices again);
    returns the sentence to tell the operator. Never raises: a daemon that is not
    running reads the saved file when it starts."""
    lock = lock or DEFAULT_LOCK
    pid = pidlock.running(lock)
    if pid is None:
        return "no lio-xcopy daemon is running; it reads this when it starts"
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as e:
        return (f"could not ask the daemon (pid {pid}) to reload ({e.strerror or e}): run "
                "`systemctl reload lio-xcopy`")
    return f"the daemon (pid {pid}) reloads its copy groups now"
