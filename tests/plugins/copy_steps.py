"""Copies run step by step: a pytest plugin (registered in tests/unit/conftest.py) with
executors for the copy manager's work and a copy end that pauses or fails where a test
says, so a test drives a copy with no threads of its own, no sleeps and no patched
system calls.

- :class:`StepExecutor` (the ``steps`` fixture) queues each copy's work until the test
  runs it (:meth:`StepExecutor.run_next`): RECEIVE COPY RESULTS can be asked before a
  byte has moved, an abort sent before the copy starts.
- :class:`InlineExecutor` runs the work at once, on the caller's thread: the copy has
  ended when EXTENDED COPY returns its Future.
- :class:`ScriptedEnd` stands in for a LUN as a copy end (block or stream port): it
  passes every call to the LUN, counts them, and before the n-th call of a method
  runs what the test gave (an abort, a stop, a poll) or raises the error given
  instead of making the call.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

#: the calls the copy manager makes on a copy end (lio_xcopy.copy.ports), and on a LUN
#: for its copy end while it plans a copy
PORT_CALLS = frozenset({"copy_end", "read_blocks", "write_blocks", "read_record", "write_record",
                        "write_filemarks", "space", "locate", "check_ready"})
#: the calls by which the kernel would copy between two LUNs' files: a scripted end has
#: none, so that every byte moves through the port calls it scripts
KERNEL_CALLS = frozenset({"file_range", "kernel_write", "write_from_file", "read_records_to",
                          "write_records_from"})


class StepExecutor:
    """``submit`` queues the call (from any thread: a LUN's worker plans a copy); the
    test runs it with :meth:`run_next`."""

    read_ahead = 0  # every read of a copy on the copy's own thread, when the test says

    def __init__(self) -> None:
        self.queued: deque[tuple[Callable[..., Any], tuple[Any, ...], Future[Any]]] = deque()
        self._submitted = threading.Condition()

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        with self._submitted:
            self.queued.append((fn, args, fut))
            self._submitted.notify_all()
        return fut

    def __len__(self) -> int:
        return len(self.queued)

    def run_next(self, timeout: float = 10.0) -> Future[Any]:
        """Run the oldest queued call to its end, here, once one has been submitted
        (waiting ``timeout`` seconds at most); its Future."""
        with self._submitted:
            assert self._submitted.wait_for(lambda: self.queued, timeout), "nothing submitted"
            fn, args, fut = self.queued.popleft()
        return _run(fn, args, fut)


class InlineExecutor:
    """``submit`` runs the call at once, on the caller's thread."""

    read_ahead = 0  # every read of a copy on the caller's thread

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        return _run(fn, args, Future())


def _run(fn: Callable[..., Any], args: tuple[Any, ...], fut: Future[Any]) -> Future[Any]:
    """Call ``fn(*args)`` here and end ``fut`` as the call ended (unless cancelled)."""
    if fut.set_running_or_notify_cancel():
        try:
            fut.set_result(fn(*args))
        except BaseException as e:
            fut.set_exception(e)
    return fut


class ScriptedEnd:
    """A LUN as a copy end, with calls scripted by :meth:`at`. Register it with the copy
    manager in the LUN's place; everything not scripted is the LUN's own."""

    def __init__(self, lun: Any) -> None:
        self.lun = lun
        self.calls: Counter[str] = Counter()  # port calls made (or refused), by method
        self.made: list[tuple[str, tuple[Any, ...]]] = []  # each: method, arguments
        self._script: dict[tuple[str, int], Callable[[], object] | BaseException] = {}
        self.copy_manager = None  # set by CopyManager.register

    def at(self, method: str, n: int, then: Callable[[], object] | BaseException) -> None:
        """Before the ``n``-th call (from 1) of ``method``: run ``then``, or raise it
        instead of making the call."""
        assert method in PORT_CALLS, method
        self._script[(method, n)] = then

    def copy_end(self) -> ScriptedEnd:
        """What the copy manager asks a LUN for while it plans a copy: this end."""
        self._step("copy_end", ())
        return self

    def _step(self, name: str, args: tuple[Any, ...]) -> None:
        self.calls[name] += 1
        self.made.append((name, args))
        then = self._script.pop((name, self.calls[name]), None)
        if isinstance(then, BaseException):
            raise then
        if then is not None:
            then()

    def __getattr__(self, name: str) -> Any:
        if name in KERNEL_CALLS:
            raise AttributeError(name)
        real = getattr(self.lun, name)
        if name not in PORT_CALLS:
            return real

        def call(*args: Any, **kw: Any) -> Any:
            self._step(name, args)
            return real(*args, **kw)

        return call


@pytest.fixture
def steps() -> StepExecutor:
    return StepExecutor()
