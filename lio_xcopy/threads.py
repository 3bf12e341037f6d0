"""Threads that carry their names to the operating system.

Python gives its threads names that only Python sees: every thread of the daemon is
``python`` to ``top -H``, ``ps -L``, ``perf`` and ``/proc/PID/task/TID/comm``. The
daemon's threads set their Linux name (``PR_SET_NAME``, prctl(2), at most 15 bytes,
written through ``/proc/thread-self/comm``) as tcmu-runner names its own, so that an
administrator can tell a ring from a LUN's I/O worker or a copy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

#: The longest name Linux keeps for a thread (TASK_COMM_LEN less the NUL).
COMM_LEN = 15


def os_name(name: str) -> str:
    """``name`` as the kernel will hold it: whole when it fits, else its first word (up to
    the first ``-``) and as much of its end as fits, where names that share a start
    differ (``ring-scale-disk-12`` is ``ring-le-disk-12``)."""
    if len(name.encode()) <= COMM_LEN:
        return name
    kind, sep, rest = name.partition("-")
    if not sep or len(kind.encode()) > COMM_LEN - 2:
        return name.encode()[:COMM_LEN].decode(errors="ignore")
    room = COMM_LEN - len(kind.encode()) - 1
    tail = rest.encode()[-room:].decode(errors="ignore").lstrip("-")
    return f"{kind}-{tail}"


def name_os_thread(name: str | None = None) -> None:
    """Give the calling thread the Linux name ``name`` (default: its Python name), cut
    as :func:`os_name` cuts it. Where the kernel has no such file (not Linux) the
    thread keeps the name it had: the name is for people, nothing depends on it."""
    text = os_name(name if name is not None else threading.current_thread().name)
    try:
        with open("/proc/thread-self/comm", "w", encoding="utf-8", errors="ignore") as f:
            f.write(text)
    except OSError:
        pass


def start(target: Callable[..., object], name: str, *args: Any,
          daemon: bool = True) -> threading.Thread:
    """A thread called ``name``, to Python and to the kernel, running ``target(*args)``;
    started before it is returned."""

    def run() -> None:
        name_os_thread(name)
        target(*args)

    thread = threading.Thread(target=run, name=name, daemon=daemon)
    thread.start()
    return thread
