"""The ring's compiled direct path (``_fastio.c``): a disk LUN's runs of READ and WRITE
(10/16) served from the ring without a Python step per command.

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
                 max_blocks: int, flags: int, /) -> tuple[int, int, bool]: ...


#: Why :class:`WaitServe` returned: an entry for the Python path is at the cursor, the
#: wake fd is readable, the time is up, or the uio fd failed.
AT_ENTRY, WOKEN, TIME_UP, UIO_ERROR = range(4)


class WaitServe(Protocol):
    """``_fastio.serve_wait``: as :class:`DirectServe`, and each time the ring is drained,
    wake ``uio_fd`` for the answers written since, wait on it and serve again, until an
    entry it does not serve is at the cursor, ``wake_fd`` is readable or ``timeout_ms``
    went by. Returns the new cursor, the commands served, whether ``uio_fd`` was woken
    after the last of them and why it returned (:data:`AT_ENTRY` ...)."""

    def __call__(self, ring_map: memoryview, cmdr_off: int, cmdr_size: int, cursor: int,
                 outstanding: int, fd: int, uio_fd: int, block_size: int, blocks: int,
                 max_blocks: int, flags: int, wake_fd: int, timeout_ms: int,
                 /) -> tuple[int, int, bool, int]: ...


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


def waiting_serve() -> WaitServe | None:
    """The compiled ``serve_wait``, where :func:`direct_serve` is there and has it."""
    if direct_serve() is None:
        return None
    module = importlib.import_module("lio_xcopy.tcmu._fastio")
    return cast(WaitServe | None, getattr(module, "serve_wait", None))
