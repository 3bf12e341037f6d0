"""The ring's compiled direct path (``_fastio.c``): a disk LUN's runs of READ and WRITE
(10/16) served from the ring without a Python step per command, and the LUN's reports
of its own state answered again from :class:`HeldAnswers`.

It is optional. Where the extension was not built (no compiler or Python headers at
install time) or ``LIO_XCOPY_FASTIO=0`` is set, :func:`direct_serve` is None and every
command takes the Python path (:meth:`lio_xcopy.tcmu.daemon.TcmuDevice.service`), which
answers the same commands the same way.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import struct
from dataclasses import dataclass
from typing import Protocol, cast

log = logging.getLogger(__name__)

ENV = "LIO_XCOPY_FASTIO"
ALLOW_WRITE = 0x1  # WRITE (10/16) too, not only READ
DSYNC_WRITES = 0x2  # every write with RWF_DSYNC (the write cache is disabled)


class DirectServe(Protocol):
    """``_fastio.serve``: answer the run of READ/WRITE (10/16) entries from ``cursor``
    (GOOD responses, ``cmd_tail`` advanced) and stop, leaving it unread, at the first
    entry not served in full. Returns the new cursor, the commands served and whether
    ``uio_fd`` was woken after the last of them (it is, every 256 KiB moved)."""

    def __call__(self, ring_map: memoryview, cmdr_off: int, cmdr_size: int, cursor: int,
                 outstanding: int, fd: int, uio_fd: int, block_size: int, blocks: int,
                 max_blocks: int, flags: int, answers: bytes = ...,
                 /) -> tuple[int, int, bool]: ...


#: Why :class:`WaitServe` returned: an entry for the Python path is at the cursor, the
#: wake fd is readable, the time is up, or the uio fd failed.
AT_ENTRY, WOKEN, TIME_UP, UIO_ERROR = range(4)


class WaitServe(Protocol):
    """``_fastio.serve_wait``: as :class:`DirectServe`, and each time the ring is drained,
    wake ``uio_fd`` for the answers written since, wait on it and serve again, until an
    entry it does not serve is at the cursor, ``wake_fd`` is readable or ``timeout_ms``
    went by. Returns the new cursor, the commands served, whether ``uio_fd`` was woken
    after the last of them and why it returned (:data:`AT_ENTRY` ...). With ``kick_fd``
    (an eventfd), the wake-ups due while it serves (every 256 KiB) that complete READs
    with another entry queued behind them are counts written to it, for the thread that
    reads it to give (the ring's reaper, :class:`Reap`): the kernel's completion work
    then runs beside the next command."""

    def __call__(self, ring_map: memoryview, cmdr_off: int, cmdr_size: int, cursor: int,
                 outstanding: int, fd: int, uio_fd: int, block_size: int, blocks: int,
                 max_blocks: int, flags: int, wake_fd: int, timeout_ms: int,
                 answers: bytes = ..., kick_fd: int = ...,
                 /) -> tuple[int, int, bool, int]: ...


class Reap(Protocol):
    """``_fastio.reap``: wake ``uio_fd`` each time ``kick_fd`` (a blocking eventfd) is
    counted up, with the GIL released throughout; 0 once a count of
    :data:`Reaper.stop` or more was given its wake-up, else the errno that ended it."""

    def __call__(self, kick_fd: int, uio_fd: int, /) -> int: ...


@dataclass(frozen=True, slots=True)
class Reaper:
    """The compiled reaper loop and the count that ends it."""

    reap: Reap
    stop: int


#: one held answer as ``_fastio.c`` reads it (host byte order): CDB length, buffer length
#: (the iovecs' total), Data-In length, read_len; the CDB and the Data-In bytes follow
ANSWER = struct.Struct("=IIII")


class HeldAnswers:
    """The GOOD answers the Python path gave to a LUN's reports of its own state
    (:meth:`~lio_xcopy.devices.base.LogicalUnit.repeatable`: TEST UNIT READY, INQUIRY,
    MODE SENSE, ...), by CDB and buffer length, packed for the compiled path, which
    gives a command with the same CDB and buffer the same Data-In bytes and response.

    They hold only while that state cannot have changed: any other command that reaches
    the Python path drops them all (:meth:`drop`), and so does a change of what
    :meth:`packed` is told they were given under (the device, its copy manager, its
    direct terms: the capacity, the write cache, whether it takes writes)."""

    MAX_ANSWERS = 32
    MAX_BYTES = 64 * 1024  # the whole table: sd's revalidation needs about 2 KiB

    def __init__(self) -> None:
        self._answers: dict[tuple[bytes, int], bytes] = {}
        self._packed = b""
        self._size = 0
        self._under: tuple[object, ...] = ()

    def __len__(self) -> int:
        return len(self._answers)

    def hold(self, cdb: bytes, buffer_length: int, data_in: bytes, read_len: int | None) -> None:
        """Hold the answer just given to ``cdb``: ``data_in`` is every byte of its
        buffer the kernel may copy to the initiator, ``read_len`` as the response said."""
        record = ANSWER.pack(len(cdb), buffer_length, len(data_in), read_len or 0) + cdb + data_in
        key = (cdb, buffer_length)
        if (key in self._answers or len(self._answers) >= self.MAX_ANSWERS
                or self._size + len(record) > self.MAX_BYTES):
            return
        self._answers[key] = record
        self._size += len(record)
        self._packed = b"".join(self._answers.values())

    def drop(self) -> None:
        """Forget every answer: the LUN's state may change."""
        if self._answers:
            self._answers.clear()
            self._packed = b""
            self._size = 0

    def packed(self, under: tuple[object, ...]) -> bytes:
        """The answers for the compiled path, given the LUN is now ``under`` these terms;
        none if they were held under others."""
        if under != self._under:
            self.drop()
            self._under = under
        return self._packed


@functools.cache
def direct_serve() -> DirectServe | None:
    """The compiled ``serve``, or None: not built, or turned off with ``LIO_XCOPY_FASTIO=0``."""
    if os.environ.get(ENV, "1") == "0":
        log.info("%s=0: every command takes the Python path", ENV)
        return None
    try:
        module = importlib.import_module("lio_xcopy.tcmu._fastio")
    except ImportError as e:
        log.info("the compiled ring path is not installed (%s): every command takes the "
                 "Python path; reinstall with a C compiler and the Python headers to "
                 "build it", e)
        return None
    log.info("plain READs and WRITEs of disk LUNs take the compiled ring path")
    return cast(DirectServe, module.serve)


def reaper() -> Reaper | None:
    """The compiled ``reap``, where :func:`direct_serve` is there and has it."""
    if direct_serve() is None:
        return None
    module = importlib.import_module("lio_xcopy.tcmu._fastio")
    reap = getattr(module, "reap", None)
    return None if reap is None else Reaper(cast(Reap, reap), module.REAP_STOP)


def waiting_serve() -> WaitServe | None:
    """The compiled ``serve_wait``, where :func:`direct_serve` is there and has it."""
    if direct_serve() is None:
        return None
    module = importlib.import_module("lio_xcopy.tcmu._fastio")
    return cast(WaitServe | None, getattr(module, "serve_wait", None))
