"""Where a copy's work runs once its command has been checked: an executor of the shape
of :class:`concurrent.futures.Executor` (its ``submit``), injected into the copy
manager and the ROD token store.

The work of an EXTENDED COPY runs apart from the command that started it, so that
RECEIVE COPY RESULTS, COPY OPERATION ABORT and task management reach the copy while it
runs (SPC-4 5.17.4.3, 6.3, 6.18). By default each copy gets a daemon thread of its own
(:class:`DaemonThreads`); tests pass an executor that queues the work and runs it when
the test says.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from lio_xcopy import threads

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class Executor(Protocol):
    """Runs ``fn(*args)`` some time after :meth:`submit`; the Future it returns ends as
    the call did (``concurrent.futures.Executor.submit``)."""

    def submit(self, fn: Callable[..., _T], /, *args: Any) -> Future[_T]: ...


class DaemonThreads:
    """A daemon thread per call, started at once: a copy never waits for another to end,
    and one that hangs in a device never keeps the process from exiting."""

    def __init__(self, prefix: str = "copy") -> None:
        self.prefix = prefix
        self._numbers = itertools.count(1)

    def submit(self, fn: Callable[..., _T], /, *args: Any) -> Future[_T]:
        fut: Future[_T] = Future()

        def run() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args)
            except BaseException as e:  # a bug in the work: say so, as a thread would
                log.exception("%s failed", threading.current_thread().name)
                fut.set_exception(e)
            else:
                fut.set_result(result)

        threads.start(run, f"{self.prefix}-{next(self._numbers)}")
        return fut


def named(name: str, work: Callable[[], None]) -> Callable[[], None]:
    """``work`` on a thread called ``name`` while it runs, to Python and to the kernel
    (which copy a thread dump, ``top -H`` or ``perf`` shows), whichever executor runs
    it; the thread's own name comes back after."""

    def run() -> None:
        thread = threading.current_thread()
        before, thread.name = thread.name, name
        threads.name_os_thread(name)
        try:
            work()
        finally:
            thread.name = before
            threads.name_os_thread(before)

    return run
