"""The daemon: one process, every TCMU device of our subtype.

Devices present at start are opened at once; a pyudev monitor adds and removes
devices while the daemon runs. Each device's ring is serviced on a thread of its own
when its uio fd becomes readable (tcmu-runner's model), so a LUN whose storage is slow
holds up no other. The daemon's loop finds devices and drops broken ones: one not
ready when its "add" event comes is tried again with a back-off, and a periodic rescan
serves any device of ours whose event was missed.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import logging
import mmap
import os
import queue
import select
import selectors
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lio_xcopy import threads
from lio_xcopy.copy.executor import DaemonThreads, Executor
from lio_xcopy.copy.manager import CopyManager
from lio_xcopy.devices.base import Command, DirectIo, LogicalUnit, TaskManagement
from lio_xcopy.devices.foreign import ForeignDevices
from lio_xcopy.devices.members import foreign_designator
from lio_xcopy.devices.unavailable import Unavailable
from lio_xcopy.errors import LioXcopyError
from lio_xcopy.handler_config import SUBTYPE
from lio_xcopy.scsi.errors import CheckCondition, HardwareError
from lio_xcopy.scsi.sense import CHECK_CONDITION, GOOD, TASK_ABORTED, SenseKey
from lio_xcopy.scsi.xcopy import CopyCommandStatus, DigestAlgorithm, ExtendedCopyLid1
from lio_xcopy.sg.resolve import CONFIGFS_TARGET, own_exports
from lio_xcopy.tcmu import state as state_file
from lio_xcopy.tcmu import uio as uio_mod
from lio_xcopy.tcmu.exports import exposure
from lio_xcopy.tcmu.fastio import (
    AT_ENTRY,
    TIME_UP,
    WOKEN,
    DirectServe,
    HeldAnswers,
    Reap,
    WaitServe,
    direct_serve,
    reaper,
    waiting_serve,
)
from lio_xcopy.tcmu.handler import Libraries, open_device, unavailable_device
from lio_xcopy.tcmu.memory import tune_malloc
from lio_xcopy.tcmu.ring import CommandRing, RingCommand, RingTmr
from lio_xcopy.tcmu.service import sd_notify
from lio_xcopy.tcmu.uio import (
    UioDevice,
    UioName,
    UioNotReady,
    parse_uio_name,
    read_unit_serial,
)

log = logging.getLogger(__name__)

WAKE = struct.pack("<I", 0)
#: SPC-4 6.3: the opcode of EXTENDED COPY and the other commands that start copies
EXTENDED_COPY = ExtendedCopyLid1.OPCODE
Opener = Callable[[str, str, str | None], LogicalUnit]


RETRY_FIRST = 0.05  # s: first retry of a device not ready yet; doubles after each failure
RETRY_MAX = 2.0  # s: the longest wait between two tries
RETRY_FOR = 30.0  # s: give up on a device not ready after this long
SERIAL_WAIT = 5.0  # s: how long a device whose unit serial is not set yet is waited for
RESCAN_EVERY = 30.0  # s: the safety-net rescan's period
#: ms the compiled path waits for the kernel on a ring before the ring's thread takes the
#: LUN's terms afresh (a stop or a finished command wakes it at once)
WAIT_MS = 1000
STATE_EVERY = 1.0  # s: how often the state file shows the progress of running copies
RESCAN_SOON = 1.0  # s: the rescan comes this soon after a device failed to open
#: errors opening or mapping /dev/uioN that pass: the node not made yet (udev without
#: devtmpfs), the device still open in a daemon going away (tcmu_open: EBUSY)
TRANSIENT_OPEN = frozenset({errno.ENOENT, errno.EBUSY, errno.EAGAIN, errno.EINTR})


@dataclass(slots=True)
class Retry:
    """A device not ready yet: when it is tried next and since when."""

    started: float
    due: float
    delay: float
    attempts: int
    error: str


def read_uio_name(sys_path: str) -> str | None:
    """A uio device's ``name`` as the kernel shows it; None if unreadable."""
    try:
        return (Path(sys_path) / "name").read_text(errors="replace").strip()
    except OSError:
        return None


Outcome = tuple[int, bytes, int]  # SCSI status, sense bytes, Data-In bytes produced
#: what a device's handler returns: the Data-In byte count, or (EXTENDED COPY) a Future
#: that resolves to it
Handled = int | Future[int]
#: a command still running: on the LUN's worker (its handler's result to come), or a copy
Running = Future[int] | Future[Handled]
#: enum tcmu_tmr_type (include/uapi/linux/target_core_user.h)
TMR_NAMES = {1: "ABORT TASK", 2: "ABORT TASK SET", 3: "CLEAR ACA", 4: "CLEAR TASK SET",
             5: "LOGICAL UNIT RESET", 6: "TARGET WARM RESET", 7: "TARGET COLD RESET",
             128: "LOGICAL UNIT RESET (PR)"}
TMR_FUNCTIONS = {1: TaskManagement.ABORT_TASK, 2: TaskManagement.ABORT_TASK_SET,
                 3: TaskManagement.CLEAR_ACA, 4: TaskManagement.CLEAR_TASK_SET,
                 5: TaskManagement.LOGICAL_UNIT_RESET, 6: TaskManagement.TARGET_RESET,
                 7: TaskManagement.TARGET_RESET, 128: TaskManagement.LOGICAL_UNIT_RESET}


def execute(device: LogicalUnit, cmd: RingCommand) -> Outcome | Future[int]:
    """Run one command on a device: its outcome, or a Future for a long command
    (EXTENDED COPY) that completes later, on another thread."""
    return _outcome(lambda: device.handle(Command(cmd.cdb, cmd.data)), device, cmd)


def command_name(device: LogicalUnit, cdb: bytes) -> str:
    """The command's name as the device's CDB table has it (``READ (10)``), or its
    opcode in hex for a command the device does not know."""
    try:
        layout, _ = device._lookup(cdb)
        return layout.NAME
    except (CheckCondition, AttributeError):
        return f"opcode {cdb[0]:02X}h" if cdb else "empty CDB"


def shape_answer(device: LogicalUnit, cmd: RingCommand, outcome: Outcome,
                 *, read_len_honoured: bool = True) -> int | None:
    """The ``read_len`` to report for ``cmd`` (None: the whole buffer or none), after
    zeroing every byte of its buffer that the kernel would copy to the initiator but
    the device did not produce.

    ``tcmu_handle_completion`` (target_core_user.c) copies a Data-In buffer back from
    the data area, whose blocks held earlier commands' data: only ``read_len`` bytes
    when READ_LEN is set and nonzero (the transport then reports the residual), else
    the whole buffer after GOOD and nothing after CHECK CONDITION. A command that
    produced no bytes (INQUIRY with ALLOCATION LENGTH 0, READ of 0 blocks, TEST UNIT
    READY with a buffer) cannot say so: its buffer is zeroed. The initiator, not the
    CDB, names the buffer's direction: a command whose CDB carries Data-Out (VERIFY
    with BYTCHK, MODE SELECT) sent with a Data-In buffer found the data area's earlier
    contents in it, and the kernel copies them back. Such a buffer is zeroed once the
    device has used it; a true Data-Out buffer never goes back, so that costs nothing
    but the clearing."""
    status, _, produced = outcome
    length = cmd.data.length
    if device.carries_data_out(cmd.cdb):
        if length and (status == GOOD or produced):
            cmd.data.zero()
    elif produced < length and (status == GOOD or produced) and (
        produced == 0 or not read_len_honoured
    ):
        cmd.data.zero(produced)
    return produced if 0 < produced < length else None


def _outcome(call: Callable[[], Handled], device: LogicalUnit,
             cmd: RingCommand) -> Outcome | Future[int]:
    """The one place a SCSI error becomes CHECK CONDITION; any other failure is logged
    and reported as HARDWARE ERROR, INTERNAL TARGET FAILURE."""
    try:
        n = call()
    except CheckCondition as e:
        return e.status, e.sense_bytes(), min(e.transferred or 0, cmd.data.length)
    except Exception:
        log.exception("cmd %#04x on %s failed unexpectedly", cmd.cdb[0],
                      getattr(getattr(device, "identity", None), "name", "?"))
        return CHECK_CONDITION, HardwareError().sense.fixed(), 0
    if isinstance(n, Future):
        return n
    return GOOD, b"", min(n, cmd.data.length)


def open_lun(tcmu: UioName, opener: Opener = open_device) -> LogicalUnit:
    """The device a storage object describes; one that cannot be opened (its backing
    store missing, its configuration refused) is served as
    :class:`~lio_xcopy.devices.unavailable.Unavailable`, logged with the reason, so
    that its ring is answered rather than left to the kernel's command timeout."""
    serial = read_unit_serial(tcmu)
    try:
        return opener(tcmu.name, tcmu.cfg, serial)
    except (LioXcopyError, OSError) as e:
        device = unavailable_device(tcmu.name, tcmu.cfg, serial, e)
        log.error("%s: cannot serve its device, answering NOT READY (MANUAL INTERVENTION "
                  "REQUIRED) until it can: %s. Once that is fixed, run `systemctl reload "
                  "lio-xcopy` (SIGHUP)", tcmu.name, getattr(device, "reason", e))
        return device


class TcmuDevice:
    """A device's uio fd, its mapped ring and the SCSI device answering it.

    Commands are answered on the ring's thread (:meth:`start`), except those that may
    take long (:meth:`LogicalUnit.runs_long`): they run on this LUN's own worker, so a
    SPACE over millions of filemarks holds up neither this LUN's TEST UNIT READYs nor
    its task management. While the worker has commands, every later command of this
    LUN queues behind them: a LUN's commands run in the order the kernel queued them.
    :meth:`service` and :meth:`complete_finished` run on one thread, the only writer
    of the ring's ``cmd_tail``."""

    def __init__(self, name: str, fd: int, ring: CommandRing, device: LogicalUnit,
                 closer: Callable[[], None] = lambda: None):
        self.name = name
        self.fd = fd
        self.ring = ring
        self.device = device
        self._closer = closer
        self.deferred: dict[int, RingCommand] = {}  # cmd_id -> command still running
        self._futures: dict[int, Running] = {}  # cmd_id -> its worker's completion
        self._finished: queue.SimpleQueue[tuple[RingCommand, Running, bool]] = (
            queue.SimpleQueue())
        self._worker: ThreadPoolExecutor | None = None  # this LUN's long commands
        self._io: ThreadPoolExecutor | None = None  # its READs and WRITEs, several at once
        self._on_worker = 0  # commands handed to the worker and not yet answered
        self._queued: set[int] = set()  # cmd_ids of those, whose future is the worker's
        self._aborted: set[int] = set()  # cmd ids task management aborted on the worker
        self._started: dict[int, float] = {}  # cmd_id -> when read off the ring (DEBUG only)
        #: wakes whoever completes finished commands (the ring's thread, once started)
        self.notify: Callable[[], None] = lambda: None
        #: called on the ring's thread as a copy starts and as each command of opcode
        #: 83h (EXTENDED COPY, WRITE USING TOKEN, ...) is answered: a copy may have
        #: started or ended
        self.copy_news: Callable[[], None] = lambda: None
        self._thread: threading.Thread | None = None
        self._wake = -1  # the ring thread's eventfd: a worker finished, or stop
        #: the reaper's eventfd: the compiled path's wake-ups while it serves, given to
        #: the kernel by the reaper thread, which runs the kernel's completion work
        self._kick = -1
        self._reap_stop = 0
        self._reaper: threading.Thread | None = None
        self._stopping = False
        #: the compiled path for plain READ and WRITE, for a device that offers its terms,
        #: and its form that waits for the kernel itself between runs
        self._direct: DirectServe | None = None
        self._waiting: WaitServe | None = None
        #: the device's reports of its state that the compiled path may give again
        self._held = HeldAnswers()
        self.replace_device(device)

    def replace_device(self, device: LogicalUnit) -> None:
        """Answer the ring with ``device`` from now on (one opened at last)."""
        self.device = device
        self._held.drop()
        offers = type(device).direct_io is not LogicalUnit.direct_io
        self._direct = direct_serve() if offers else None
        self._waiting = waiting_serve() if offers else None

    @classmethod
    def open(cls, uio: UioDevice, opener: Opener = open_device, *,
             fresh: bool = False) -> TcmuDevice:
        """Open the LUN and map its ring. ``fresh``: the device was made while this
        daemon ran, so no process has read its ring (:meth:`take_over`)."""
        device = open_lun(uio.tcmu, opener)
        try:
            fd = os.open(uio.devnode, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            device.close()
            raise
        try:
            mm = mmap.mmap(fd, uio.map_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError:
            os.close(fd)
            device.close()
            raise
        view = memoryview(mm)

        def closer() -> None:
            view.release()
            with contextlib.suppress(BufferError):  # views still referenced: GC unmaps
                mm.close()
            os.close(fd)

        dev = cls(uio.tcmu.name, fd, CommandRing(view), device, closer)
        try:
            dev.take_over(uio.tcmu.reset_ring, fresh=fresh)
        except (LioXcopyError, OSError):
            dev.close()
            raise
        return dev

    def take_over(self, reset_ring: Callable[[], None], *, fresh: bool = False) -> int:
        """Take the ring over from whoever had it before (a daemon that was killed).

        A wake-up first lets the kernel reap the responses already written. Commands
        still between ``cmd_tail`` and ``cmd_head`` may have been read, and half done,
        by the other process, and with out-of-order completion their entries may be
        overwritten: they cannot be replayed from the ring. The kernel fails them BUSY
        and empties the ring (``reset_ring``); the initiator retries them, and a tape
        reports its power on first. A ``fresh`` ring (its device made while this
        daemon ran) was never read: its commands are served as they are, as
        tcmu-runner serves a device that its netlink "added" event announced and
        resets only those it finds at start. Returns how many were queued."""
        os.write(self.fd, WAKE)
        if self.ring.head == self.ring.tail:
            return 0
        queued = self.ring.queued()
        if fresh:
            log.info("%s: %d command(s) queued before the daemon opened the new LUN: "
                     "serving them", self.name, queued)
            return queued
        log.warning("%s: %d command(s) left on the ring by an earlier daemon (or queued "
                    "before this one opened it): the kernel fails them BUSY for the "
                    "initiator to retry", self.name, queued)
        reset_ring()
        self.ring.resync()
        return queued

    def service(self, *, drain_event: bool = True, at_entry: bool = False) -> int:
        """Answer every command queued on the ring; returns how many were answered.
        Long commands go on in their worker and complete in :meth:`complete_finished`.
        ``at_entry``: the compiled path has just stopped at the entry at the cursor, so
        the first one goes straight to the Python path."""
        if drain_event:
            with contextlib.suppress(BlockingIOError, InterruptedError):
                os.read(self.fd, 4)
        done = 0
        unannounced = False  # answers written since the kernel was last woken
        debug = log.isEnabledFor(logging.DEBUG)
        direct = self._direct
        while True:
            if direct is not None and not self._on_worker and not at_entry:
                served, woken = self._serve_direct(direct)
                done += served
                unannounced = (unannounced or served > 0) and not woken
            at_entry = False
            entry = self.ring.next_entry()
            if entry is None:
                break
            if isinstance(entry, RingTmr):
                self._held.drop()
                self.task_management(entry)
                continue
            if debug:
                self._started[entry.cmd_id] = time.monotonic()
            repeatable = direct is not None and self.device.repeatable(entry.cdb)
            if not repeatable:
                self._held.drop()  # it may change what the held answers report
            if self._on_worker or self.device.runs_long(Command(entry.cdb, entry.data)):
                self._to_worker(entry)
                continue
            outcome = execute(self.device, entry)
            if isinstance(outcome, Future):
                self._defer(entry, outcome, on_worker=False)
                continue
            read_len = self._respond(entry, outcome)
            if repeatable and outcome[0] == GOOD:
                self._hold(entry, read_len)
            done += 1
            unannounced = True
        if unannounced or self.ring.tail != self.ring.head:
            os.write(self.fd, WAKE)
        return done

    def _hold(self, entry: RingCommand, read_len: int | None) -> None:
        """Hold the answer just written for ``entry``: the bytes the kernel may copy
        back (those past ``read_len`` are zeros, whatever the buffer held)."""
        length = entry.data.length
        data = (entry.data.tobytes(read_len) + bytes(length - read_len) if read_len
                else entry.data.tobytes())
        self._held.hold(entry.cdb, length, data, read_len)

    def _answers(self, io: DirectIo) -> bytes:
        return self._held.packed((self.device, getattr(self.device, "copy_manager", None), io))

    def _serve_direct(self, serve: DirectServe) -> tuple[int, bool]:
        """The compiled path's run of plain READs and WRITEs, and of commands whose
        answers it holds, at the ring's cursor, on the device's terms of the moment
        (:meth:`LogicalUnit.direct_io`): how many it answered, and whether it woke the
        kernel after the last."""
        io = self.device.direct_io()
        if io is None:
            return 0, False
        try:
            served, woken = self.ring.serve_direct(serve, io, self.fd, self._answers(io))
        finally:
            self.device.direct_io_done(io)
        if served and log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %d command(s) answered GOOD by the compiled ring path",
                      self.name, served)
        return served, woken

    def task_management(self, tmr: RingTmr) -> None:
        """SAM-5 task management (TCMU tmr_notification): the kernel lists the commands
        of ours it aborted. Those still queued for this LUN's worker never run (they
        complete TASK ABORTED, which the kernel discards); copies stop at their next
        chunk and complete; then the device hears of the function (a pass-through LUN
        resets its device). Commands already answered have nothing left to stop."""
        name = TMR_NAMES.get(tmr.tmr_type, f"type {tmr.tmr_type}")
        log.info("%s: %s for cmd ids %s", self.name, name, list(tmr.cmd_ids))
        manager = getattr(self.device, "copy_manager", None)
        for cid in tmr.cmd_ids:
            fut = self._futures.get(cid)
            if fut is None or (cid in self._queued and fut.cancel()):
                continue
            if manager is not None and not manager.abort(fut):
                self._aborted.add(cid)  # an EXTENDED COPY still on the worker: its copy
                # is stopped as soon as the worker hands it over (complete_finished)
        function = TMR_FUNCTIONS.get(tmr.tmr_type)
        if manager is not None and function in (TaskManagement.LOGICAL_UNIT_RESET,
                                                TaskManagement.TARGET_RESET):
            manager.reset(self.device)  # background copies too (SPC-4 5.17.5)
        if function is not None:
            try:
                self.device.task_management(function)
            except LioXcopyError as e:
                log.error("%s: %s on the device failed: %s", self.name, name, e)

    def _to_worker(self, entry: RingCommand) -> None:
        """Hand a command to the LUN's worker, which runs them one after another in the
        order they came; a READ or WRITE of a device that may run several at once goes
        to its I/O workers instead (:attr:`LogicalUnit.IO_WORKERS`)."""
        if self.device.IO_WORKERS > 1 and self.device.unordered(entry.cdb):
            if self._io is None:
                self._io = ThreadPoolExecutor(self.device.IO_WORKERS,
                                              thread_name_prefix=f"lun-{self.name}-io",
                                              initializer=threads.name_os_thread)
            pool = self._io
        else:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"lun-{self.name}",
                                                  initializer=threads.name_os_thread)
            pool = self._worker
        self._on_worker += 1
        fut = pool.submit(self.device.handle, Command(entry.cdb, entry.data))
        self._queued.add(entry.cmd_id)
        self._defer(entry, fut, on_worker=True)

    def _defer(self, entry: RingCommand, fut: Running, *, on_worker: bool) -> None:
        self.deferred[entry.cmd_id] = entry
        self._futures[entry.cmd_id] = fut
        fut.add_done_callback(functools.partial(self._finished_elsewhere, entry,
                                                on_worker=on_worker))

    def _finished_elsewhere(self, entry: RingCommand, fut: Running, *,
                            on_worker: bool) -> None:
        """Runs on the worker's thread: hand the result to the ring's thread."""
        self._finished.put((entry, fut, on_worker))
        self.notify()

    def _respond(self, entry: RingCommand, outcome: Outcome) -> int | None:
        """Write the answer to ``entry``; returns the ``read_len`` it reported."""
        read_len = shape_answer(self.device, entry, outcome,
                                read_len_honoured=self.ring.read_len_honoured)
        self.ring.complete(entry.cmd_id, outcome[0], outcome[1], read_len)
        if entry.cdb[0] == EXTENDED_COPY:
            self.copy_news()
        if log.isEnabledFor(logging.DEBUG):
            self._log_command(entry, outcome)
        return read_len

    def _log_command(self, entry: RingCommand, outcome: Outcome) -> None:
        """One DEBUG line per command answered: opcode, cmd_id, LUN, data length,
        status (with sense key and ASC/ASCQ) and the time from ring to answer."""
        started = self._started.pop(entry.cmd_id, None)
        took = "?" if started is None else f"{(time.monotonic() - started) * 1e3:.2f} ms"
        status, sense, produced = outcome
        if status == GOOD:
            result = "GOOD"
        elif len(sense) >= 14:
            try:
                key = SenseKey(sense[2] & 0x0F).name
            except ValueError:
                key = f"sense key {sense[2] & 0x0F:#x}"
            result = f"CHECK CONDITION {key} {sense[12]:02X}h/{sense[13]:02X}h"
        else:
            result = f"status {status:#04x}"
        log.debug("%s: cmd %d %s, %d byte(s) buffer, %d in: %s in %s", self.name,
                  entry.cmd_id, command_name(self.device, entry.cdb), entry.data.length,
                  produced, result, took)

    def complete_finished(self) -> int:
        """On the ring's thread: complete every long command whose worker is done."""
        done = 0
        while True:
            try:
                entry, fut, on_worker = self._finished.get_nowait()
            except queue.Empty:
                break
            self._on_worker -= on_worker
            if on_worker:
                self._queued.discard(entry.cmd_id)
            outcome = ((TASK_ABORTED, b"", 0) if fut.cancelled()
                       else _outcome(fut.result, self.device, entry))
            if isinstance(outcome, Future):  # an EXTENDED COPY the worker started
                self._defer(entry, outcome, on_worker=False)
                self.copy_news()
                manager = getattr(self.device, "copy_manager", None)
                if entry.cmd_id in self._aborted and manager is not None:
                    manager.abort(outcome)
                continue
            self._aborted.discard(entry.cmd_id)
            self.deferred.pop(entry.cmd_id, None)
            self._futures.pop(entry.cmd_id, None)
            self._respond(entry, outcome)
            done += 1
        if done:
            os.write(self.fd, WAKE)
        return done

    # --- the ring's thread --------------------------------------------------------------
    def start(self, broken: Callable[[TcmuDevice, Exception], None]) -> None:
        """Service the ring on a thread of its own from now on: commands queued
        already and those its workers finished already, then each time the uio fd
        becomes readable, and the commands the LUN's workers finish. A ring that
        breaks (:class:`LioXcopyError`), a uio fd that fails (:class:`OSError`) or a
        bug ends the thread and is handed to ``broken``."""
        if self._thread is not None:
            return
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.notify = self._wake_ring
        loop = reaper() if self._waiting is not None else None
        if loop is not None:
            if self._kick < 0:
                self._kick = os.eventfd(0, os.EFD_CLOEXEC)
            self._reap_stop = loop.stop
            self._reaper = threads.start(self._reap, f"reap-{self.name}", loop.reap)
        self._thread = threads.start(self._serve_ring, f"ring-{self.name}", broken)

    def _reap(self, reap: Reap) -> None:
        """Wake the kernel each time the compiled path asks (its kicks on ``_kick``), in
        C without the GIL. The kernel completes the answers written in the thread that
        wakes it (target_core_user.c, tcmu_handle_completion: for a READ, the copy from
        the data area into the initiator's buffers), so here that work runs beside the
        ring thread's next command. A uio fd that fails ends the thread, and the ring
        thread wakes the kernel itself from then on; its own poll reports the failure.
        :meth:`stop` ends it after the ring thread, with a last wake-up."""
        err = reap(self._kick, self.fd)
        if err:
            self._reaper = None
            log.debug("%s: the reaper stops: %s", self.name, os.strerror(err))

    def _wake_ring(self) -> None:
        if self._wake >= 0:
            with contextlib.suppress(OSError):  # EAGAIN: the count is full, it is awake
                os.eventfd_write(self._wake, 1)

    def _serve_ring(self, broken: Callable[[TcmuDevice, Exception], None]) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(self._wake, select.POLLIN)
        try:
            self.service(drain_event=False)
            self.complete_finished()  # those finished before this thread was there to hear
            while not self._stopping:
                why = self._serve_waiting()
                if why == AT_ENTRY:
                    self.service(drain_event=False, at_entry=True)
                    continue
                if why == TIME_UP:
                    continue
                for fd, _ in poller.poll(0 if why == WOKEN else None):
                    if fd == self.fd:
                        self.service()
                    else:
                        with contextlib.suppress(BlockingIOError):
                            os.eventfd_read(self._wake)
                        self.complete_finished()
        except Exception as e:  # a bug too: the ring must not be left unread
            if not self._stopping:
                broken(self, e)

    def _serve_waiting(self) -> int | None:
        """Between commands of the Python path, let the compiled path serve the ring and
        wait for the kernel itself (:meth:`CommandRing.serve_waiting`) while the LUN's
        terms allow it and no command is on a worker. None where it cannot (the ring
        thread then polls); else why it returned: an entry for :meth:`service`
        (``AT_ENTRY``), the ring thread's eventfd (``WOKEN``: the poll that follows
        reads it), its time (``TIME_UP``: the terms are taken afresh) or a uio fd that
        failed (``UIO_ERROR``: the poll that follows reports it)."""
        waiting = self._waiting
        if waiting is None or self._on_worker or self._wake < 0:
            return None
        io = self.device.direct_io()
        if io is None:
            return None
        kick = self._kick if self._reaper is not None else -1
        try:
            served, _, why = self.ring.serve_waiting(waiting, io, self.fd, self._wake,
                                                     WAIT_MS, self._answers(io), kick)
        finally:
            self.device.direct_io_done(io)
        if served and log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %d command(s) answered GOOD by the compiled ring path",
                      self.name, served)
        return why

    def stop(self) -> None:
        """End the ring's thread (after the command it is answering); commands the
        kernel queues from now on are not read."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping = True
        self._wake_ring()
        if thread is not threading.current_thread():
            thread.join()
        ended, self._reaper = self._reaper, None
        if ended is not None:
            os.eventfd_write(self._kick, self._reap_stop)
            ended.join()

    def close(self) -> None:
        self.stop()
        for pool in (self._worker, self._io):  # what runs ends first; queued ones never run
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        try:
            self.device.flush()
        except LioXcopyError as e:
            log.error("%s: flush on close failed: %s", self.name, e)
        finally:
            self.device.close()
            self._closer()
            if self._wake >= 0:
                self.notify = lambda: None  # a copy ending now has no one to tell
                wake, self._wake = self._wake, -1
                os.close(wake)
            if self._kick >= 0:
                kick, self._kick = self._kick, -1
                os.close(kick)


class Daemon:
    """Serves every TCMU device whose subtype is ours, picking up new ones as they come."""

    def __init__(self, subtype: str = SUBTYPE, opener: Opener = open_device,
                 copy_executor: Executor | None = None, state_path: Path | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 rescan_every: float = RESCAN_EVERY,
                 copy_digest: DigestAlgorithm | str = DigestAlgorithm.XXH3_128):
        self.subtype = subtype
        #: the safety-net rescan's period (inf: serve only the devices added by hand)
        self.rescan_every = rescan_every
        self.state_path = state_path  # where `lio-xcopy status` finds us (None: nowhere)
        self._state_due = True
        self._state_next = 0.0  # while copies run: when their progress is written next
        self._copies_seen: tuple[tuple[str, int, bool], ...] = ()
        if opener is open_device:  # a changer and its drives share one Library per directory
            opener = functools.partial(open_device, libraries=Libraries(), subtype=subtype)
        self.opener = opener
        #: where copies and background WRITE USING TOKENs run: a daemon thread each,
        #: unless the caller passes its own (tests run them step by step)
        self.copy_executor = (copy_executor if copy_executor is not None
                              else DaemonThreads("xcopy"))
        self.copy_manager = CopyManager(
            policy=self.same_initiators, foreign=ForeignDevices(
                own_nodes=lambda: own_exports(subtype, CONFIGFS_TARGET)),
            admitted=self.admitted_foreign, executor=self.copy_executor, digest=copy_digest)
        self.names: dict[int, UioName] = {}  # id(LogicalUnit) -> its storage object
        self.copy_groups: dict[str, frozenset[str]] = {}
        self.copy_groups_loader: Callable[[], dict[str, tuple[str, ...]]] | None = None
        self.devices: dict[str, TcmuDevice] = {}  # by sys_path
        self.selector = selectors.DefaultSelector()
        self._stop = False
        self._reload = False
        self._monitor = None
        self.clock = clock  # drives retries and the rescan (tests pass their own)
        self.uio_class = Path("/sys/class/uio")
        self._retries: dict[str, Retry] = {}  # sys_path -> device not ready yet
        #: devices whose ring some process may have read: those there at start (an
        #: earlier daemon's), and every one this daemon opened
        self._known: set[str] = set()
        #: devices made while this daemon ran (their udev "add" event), not opened yet
        self._fresh: set[str] = set()
        self._passed: dict[str, str | None] = {}  # sys_path -> name: not ours, or failed
        self._next_rescan = clock() + rescan_every
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)  # noqa: FBT003 (socket's API)
        self._running = False  # run() started: each device attached gets its ring thread
        #: rings whose thread ended on a failure, for the loop to drop
        self._broken: queue.SimpleQueue[tuple[str, TcmuDevice, Exception]] = queue.SimpleQueue()

    # --- devices -----------------------------------------------------------------------
    def add(self, sys_path: str) -> TcmuDevice | None:
        """Serve a TCMU device of our subtype. One not ready yet (its attributes still
        being made, its node busy) is tried again later from the loop; a foreign,
        malformed or unopenable one is passed over."""
        if sys_path in self.devices:
            return self.devices[sys_path]
        try:
            uio = UioDevice.from_sys_path(sys_path)
        except UioNotReady as e:
            self._not_ready(sys_path, str(e))
            return None
        except LioXcopyError as e:
            self._pass_over(sys_path)
            log.warning("%s", e)
            return None
        if uio is None or uio.tcmu.subtype != self.subtype:
            self._pass_over(sys_path)
            log.debug("%s: not ours (%s)", sys_path, uio.tcmu if uio else "not TCMU")
            return None
        if not self._serial_set(sys_path, uio.tcmu):
            return None
        fresh = sys_path in self._fresh and sys_path not in self._known
        try:
            dev = TcmuDevice.open(uio, self.opener, fresh=fresh)
        except OSError as e:
            if e.errno in TRANSIENT_OPEN:
                self._not_ready(sys_path, f"{uio.tcmu.name}: cannot open {uio.devnode}: {e}")
            else:
                self._failed(sys_path)
                log.error("%s (%s): cannot serve: %s", uio.tcmu.name, sys_path, e)
            return None
        except LioXcopyError as e:
            self._failed(sys_path)
            log.error("%s (%s): cannot serve: %s", uio.tcmu.name, sys_path, e)
            return None
        retry = self._retries.pop(sys_path, None)
        self._passed.pop(sys_path, None)
        self._fresh.discard(sys_path)
        self._known.add(sys_path)
        self.names[id(dev.device)] = uio.tcmu
        self.attach(sys_path, dev)
        log.info("serving %s (%s, %s) on %s", dev.name, uio.tcmu.cfg,
                 type(dev.device).__name__.lower(), uio.devnode)
        if retry is not None:
            log.info("%s: ready after %d attempt(s) in %.2f s", dev.name, retry.attempts + 1,
                     self.clock() - retry.started)
        # Commands queued before we opened the device wait for the ring's thread, which
        # starts with the loop: at start-up, a copy retried after take_over() may name a
        # LUN that is opened after its own.
        return dev

    def _not_ready(self, sys_path: str, error: str) -> None:
        """Schedule the next try of a device not ready yet, or give up on it."""
        now = self.clock()
        r = self._retries.get(sys_path)
        if r is None:
            self._retries[sys_path] = Retry(now, now + RETRY_FIRST, RETRY_FIRST, 1, error)
            log.debug("%s: not ready yet (%s); trying again in %.2f s", sys_path, error,
                      RETRY_FIRST)
            return
        r.attempts += 1
        r.error = error
        if now - r.started >= RETRY_FOR:
            self._failed(sys_path)
            log.error("%s: still not ready after %.1f s and %d attempts, not serving it: %s. "
                      "Check the kernel log (dmesg); to look again, run `systemctl reload "
                      "lio-xcopy` (SIGHUP)", sys_path, now - r.started, r.attempts, error)
            return
        r.delay = min(r.delay * 2, RETRY_MAX)
        r.due = now + r.delay

    def _serial_set(self, sys_path: str, tcmu: UioName) -> bool:
        """Whether the storage object's unit serial is there to answer INQUIRY with.

        rtslib (so targetcli and ``provision``) enables the storage object, which makes
        the uio device, and only then writes ``wwn/vpd_unit_serial``: while it is empty
        the device is not ready. After :data:`SERIAL_WAIT` (someone enabled it by hand)
        it is served with a serial derived from its name."""
        if not tcmu.configfs.is_dir() or read_unit_serial(tcmu) is not None:
            return True
        r = self._retries.get(sys_path)
        if r is not None and self.clock() - r.started >= SERIAL_WAIT:
            log.warning("%s: no wwn/vpd_unit_serial in configfs after %.1f s; serving it "
                        "with a unit serial derived from its name", tcmu.name,
                        self.clock() - r.started)
            return True
        self._not_ready(sys_path, f"{tcmu.name}: its wwn/vpd_unit_serial is not set yet")
        return False

    def _pass_over(self, sys_path: str) -> None:
        """Stop trying a device; the rescan skips it while its name stays the same."""
        self._retries.pop(sys_path, None)
        self._passed[sys_path] = read_uio_name(sys_path)

    def _failed(self, sys_path: str) -> None:
        """A device of ours that cannot be served: pass it over and rescan soon, for
        others whose events went missing alongside it."""
        self._pass_over(sys_path)
        self._next_rescan = min(self._next_rescan, self.clock() + RESCAN_SOON)

    def forget(self, sys_path: str) -> None:
        """A device's "remove" event: stop waiting for it (a device made later may take
        its sys path, with a ring nobody has read)."""
        self._fresh.discard(sys_path)
        self._known.discard(sys_path)
        if self._retries.pop(sys_path, None) is not None:
            log.debug("%s: removed before it was ready; no longer trying it", sys_path)
        self._passed.pop(sys_path, None)

    def timeout(self, longest: float | None = None) -> float:
        """How long the loop may wait for events: until the next retry or rescan (at
        most RESCAN_EVERY: a loop with no rescan still wakes now and then)."""
        due = min([self._next_rescan, *(r.due for r in self._retries.values())])
        wait = min(max(0.0, due - self.clock()), RESCAN_EVERY)
        return wait if longest is None else min(wait, longest)

    def run_due(self) -> None:
        """Try each device whose retry is due; run the safety-net rescan when due."""
        now = self.clock()
        for path in [p for p, r in self._retries.items() if r.due <= now]:
            self.add(path)
        if now >= self._next_rescan:
            self.look_for_missed()

    def look_for_missed(self) -> list[str]:
        """The safety net: serve every uio device of our subtype that is neither served
        nor being retried (its "add" event lost, say when the netlink socket overflowed),
        with a WARNING each. Devices passed over are skipped while their name is the
        same. Returns the sys paths found."""
        self._next_rescan = self.clock() + self.rescan_every
        if self._monitor is not None:
            self._udev_event()  # events already queued are not missed
        found = []
        for path in self._uio_paths():
            if path in self.devices or path in self._retries:
                continue
            name = read_uio_name(path)
            if name is None or self._passed.get(path) == name:
                continue
            tcmu = parse_uio_name(name)
            if tcmu is None or tcmu.subtype != self.subtype:
                log.debug("%s: not ours (%s)", path, tcmu or "not TCMU")
                self._passed[path] = name
                continue
            log.warning("%s (%s): a device of ours that was not served (its udev event "
                        "was missed); serving it now", tcmu.name, path)
            found.append(path)
            self.add(path)
        return found

    def _uio_paths(self, uio_class: Path | None = None) -> list[str]:
        return sorted({str(p.resolve()) for p in (uio_class or self.uio_class).glob("uio*")})

    def attach(self, key: str, dev: TcmuDevice) -> None:
        dev.copy_news = self._notify
        self.devices[key] = dev
        if not isinstance(dev.device, Unavailable):  # a copy cannot name it
            self.copy_manager.register(dev.device)
        if self._running:
            self._start_ring(key, dev)
        self._state_due = True

    def _start_ring(self, key: str, dev: TcmuDevice) -> None:
        def broken(dev: TcmuDevice, error: Exception) -> None:
            self._broken.put((key, dev, error))
            self._notify()

        dev.start(broken)

    def remove(self, key: str, *, deleted: bool = False) -> None:
        """Stop serving a device and close it. ``deleted``: the LUN itself was deleted
        (its udev "remove" event, its uio device gone), logged once as "LUN <name>
        removed"; otherwise the daemon merely stops serving it."""
        dev = self.devices.pop(key, None)
        if dev is None:
            return
        self.copy_manager.unregister(dev.device)
        self.names.pop(id(dev.device), None)
        self._state_due = True
        dev.close()
        if deleted:
            log.info("LUN %s removed", dev.name)
        else:
            log.info("stopped serving %s", dev.name)

    def deleted(self, key: str, dev: TcmuDevice) -> bool:
        """Whether the kernel is deleting (or has deleted) this device's LUN.

        ``uio_unregister_device`` (drivers/uio/uio.c) removes ``maps/`` before it makes
        the fd fail with EIO, and removes the sysfs directory after; the storage object's
        configfs directory goes first of all (rtslib deletes it). Any of those missing
        means a deletion, not an I/O failure."""
        tcmu = self.names.get(id(dev.device))
        if tcmu is not None and uio_mod.CONFIGFS_CORE.is_dir() and not tcmu.configfs.is_dir():
            return True
        return key.startswith("/") and not (Path(key) / "maps").is_dir()

    def load_copy_groups(self) -> None:
        """Read the operator's copy groups again (at start and on SIGHUP)."""
        if self.copy_groups_loader is None:
            return
        try:
            groups = self.copy_groups_loader()
            for members in groups.values():
                for m in members:
                    foreign_designator(m)  # a foreign member must hold a designator
        except LioXcopyError as e:
            log.error("copy groups not reloaded, keeping the previous ones: %s", e)
            return
        self.copy_groups = {name: frozenset(members) for name, members in groups.items()}
        log.info("copy groups: %s", {k: sorted(v) for k, v in self.copy_groups.items()} or "none")

    def admitted_foreign(self, receiving: LogicalUnit) -> frozenset[str]:
        """The foreign devices (designator texts) a copy received by ``receiving`` may
        name: the ``foreign:`` members of the copy groups it is in. None by default."""
        groups = {g: members for g, members in self.copy_groups.items()
                  if receiving.name in members}
        admitted = frozenset(text for members in groups.values()
                             for text in map(foreign_designator, members) if text is not None)
        if log.isEnabledFor(logging.DEBUG):
            if admitted:
                log.debug("foreign admission: copies received by %s may name %s (copy "
                          "group(s) %s)", receiving.name, sorted(admitted), sorted(groups))
            else:
                log.debug("foreign admission: copies received by %s may name no foreign "
                          "device: no copy group holds it with a foreign: member",
                          receiving.name)
        return admitted

    def same_initiators(self, a: LogicalUnit, b: LogicalUnit) -> bool:
        """The copy access policy: both LUNs are in one copy group the operator made, or
        (the default) both are exported to exactly the same initiators (read from
        configfs at each copy, so ACL changes count at once)."""
        pair = {a.identity.name, b.identity.name}
        group = next((g for g, members in self.copy_groups.items() if pair <= members), None)
        if group is not None:
            log.debug("copy access policy: %s and %s may copy together: both in copy group "
                      "%r", a.name, b.name, group)
            return True
        na, nb = self.names.get(id(a)), self.names.get(id(b))
        if na is None or nb is None:
            log.debug("copy access policy keeps %s and %s apart: %s is not a storage object "
                      "of ours", a.name, b.name, a.name if na is None else b.name)
            return False
        ea, eb = exposure(na.hba, na.name), exposure(nb.hba, nb.name)
        if ea and ea == eb:
            log.debug("copy access policy: %s and %s may copy together: both exported to "
                      "exactly %s", a.name, b.name, sorted(ea))
            return True
        log.debug("copy access policy keeps %s and %s apart: %s; export them to the same "
                  "initiators or put both in one copy group", a.name, b.name,
                  "neither is exported" if not ea and not eb else
                  f"{a.name} is exported to {sorted(ea) or 'no initiator'}, "
                  f"{b.name} to {sorted(eb) or 'no initiator'}")
        return False

    # --- the loop ----------------------------------------------------------------------
    def start_udev(self) -> None:
        import pyudev

        context = pyudev.Context()
        monitor = pyudev.Monitor.from_netlink(context)
        monitor.filter_by("uio")
        monitor.start()
        self._monitor = monitor
        self.selector.register(monitor.fileno(), selectors.EVENT_READ, ("udev", None))
        self.add_present([d.sys_path for d in context.list_devices(subsystem="uio")])

    def add_present(self, paths: Sequence[str]) -> None:
        """Serve the devices there at start. An earlier daemon may have read their rings
        and died: :meth:`TcmuDevice.take_over` has the kernel fail what it left BUSY."""
        self._known.update(paths)
        for path in paths:
            self.add(path)

    def _udev_event(self) -> None:
        assert self._monitor is not None
        while True:
            try:
                d = self._monitor.poll(timeout=0)
            except OSError as e:  # ENOBUFS: the kernel dropped events for us
                log.warning("udev events lost (%s): looking for devices again in %.0f s",
                            e.strerror or e, RESCAN_SOON)
                self._next_rescan = min(self._next_rescan, self.clock() + RESCAN_SOON)
                return
            if d is None:
                return
            if d.action == "add":
                if d.sys_path not in self._known:  # not a replayed event ("udevadm trigger")
                    self._fresh.add(d.sys_path)
                self.add(d.sys_path)
            elif d.action == "remove":
                self.forget(d.sys_path)
                self.remove(d.sys_path, deleted=True)

    def _notify(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self._wake_w.send(b"c")

    def stop(self, *_: object) -> None:
        self._stop = True
        self._notify()

    def reload(self, *_: object) -> None:
        """SIGHUP: look again at every uio device (add what is new, drop what is gone)."""
        self._reload = True
        self._notify()

    def rescan(self, uio_class: Path | None = None) -> None:
        """Look at every uio device again: drop what is gone, add what is new, and try
        once more those passed over or given up."""
        present = set(self._uio_paths(uio_class))
        for key in [k for k in self.devices if k.startswith("/") and k not in present]:
            self.remove(key, deleted=True)
        for key in [k for k in self._retries if k not in present]:
            self.forget(key)
        self._passed.clear()
        for path in sorted(present):
            self.add(path)
        self.open_unavailable()

    def open_unavailable(self) -> None:
        """Open again each device served as unavailable (the operator fixed its backing
        store, say); one that opens now takes its place on the same ring."""
        for dev in self.devices.values():
            tcmu = self.names.get(id(dev.device))
            if not isinstance(dev.device, Unavailable) or tcmu is None:
                continue
            device = open_lun(tcmu, self.opener)
            if isinstance(device, Unavailable):
                continue
            del self.names[id(dev.device)]
            dev.replace_device(device)
            self.names[id(device)] = tcmu
            self.copy_manager.register(device)
            self._state_due = True
            log.info("serving %s (%s, %s): its device opened", dev.name, tcmu.cfg,
                     type(device).__name__.lower())

    def status_line(self) -> str:
        running = [j for j in self.copy_manager.jobs() if j.running]
        return (f"serving {len(self.devices)} LUN(s)"
                + (f", {len(running)} copy(ies) in progress" if running else ""))

    def state(self) -> state_file.DaemonState:
        """What the state file says: LUNs served and copies (running, or ended in the
        last minute)."""
        now = time.monotonic()
        copies = tuple(
            state_file.CopyState(
                j.lun, j.list_id,
                "running" if j.running else
                "completed" if j.status == CopyCommandStatus.COMPLETED else "failed",
                j.segments, j.segments_processed, j.transferred, j.planned,
                (j.finished or now) - j.started, tuple(j.description))
            for j in self.copy_manager.jobs()
            if j.running or (j.finished is not None and now - j.finished < 60))
        return state_file.DaemonState(
            os.getpid(), time.time(),
            {d.name: type(d.device).__name__.lower() for d in self.devices.values()}, copies)

    def _copies_changed(self) -> bool:
        """Whether a copy started or ended since the last look (the state file lists
        them): a command completed by its worker is no reason to rewrite the file."""
        seen = tuple((j.lun, j.list_id, j.running) for j in self.copy_manager.jobs())
        changed, self._copies_seen = seen != self._copies_seen, seen
        return changed

    def write_state(self) -> None:
        self._state_due = False
        self._state_next = self.clock() + STATE_EVERY
        if self.state_path is None:
            return
        try:
            state_file.write(self.state(), self.state_path)
        except OSError as e:
            log.warning("cannot write the state file %s: %s", self.state_path, e)

    def run(self, ready: Callable[[], None] | None = None) -> None:
        self.selector.register(self._wake_r.fileno(), selectors.EVENT_READ, ("wake", None))
        self._running = True
        self.write_state()  # the LUNs served, before any of them answers
        for key, dev in list(self.devices.items()):
            self._start_ring(key, dev)
        if ready:
            ready()
        while not self._stop:
            copying = any(j.running for j in self.copy_manager.jobs())
            if self._state_due or (copying and self.clock() >= self._state_next):
                self.write_state()
            for event, _ in self.selector.select(self.timeout(1.0 if copying else None)):
                kind, _ = event.data
                if kind == "udev":
                    self._udev_event()
                elif kind == "wake":
                    self._wake_r.recv(4096)
                    self._drop_broken()
                    self._state_due = self._state_due or self._copies_changed()
            self.run_due()
            if self._reload:
                self._reload = False
                sd_notify("RELOADING=1")
                log.info("reload: looking for devices again")
                self.rescan()
                self.load_copy_groups()
                sd_notify("READY=1", f"STATUS={self.status_line()}")
        for job in self.copy_manager.stop(wait=60.0):  # background copies end first
            log.warning("stopping: copy %s/%d ends in COPY ABORTED (COMMANDS CLEARED BY "
                        "DEVICE SERVER) in segment %d after %d bytes; the backup server "
                        "must run it again", job.lun, job.list_id, job.segments_processed,
                        job.transferred)
        self._drain_deferred()
        for key in list(self.devices):
            self.remove(key)
        self._running = False
        if self.state_path is not None:
            state_file.remove(self.state_path)

    def _on_ring(self, key: str, work: Callable[[TcmuDevice], int]) -> None:
        """Service or complete on one device's ring; a device whose ring broke or whose
        uio device failed is dropped, the others go on. EIO/ENODEV while the LUN is
        being deleted is the deletion (INFO, once); on a LUN that still exists it is a
        failure (WARNING)."""
        dev = self.devices[key]
        try:
            work(dev)
        except (LioXcopyError, OSError) as e:
            self._ring_failed(key, dev, e)

    def _drop_broken(self) -> None:
        """Drop each device whose ring thread ended on a failure."""
        while True:
            try:
                key, dev, error = self._broken.get_nowait()
            except queue.Empty:
                return
            if self.devices.get(key) is dev:
                self._ring_failed(key, dev, error)

    def _ring_failed(self, key: str, dev: TcmuDevice, error: Exception) -> None:
        if isinstance(error, LioXcopyError):
            log.error("%s: ring failure, device dropped: %s", key, error)
        elif not isinstance(error, OSError):  # a bug: the rescan serves the LUN again
            log.error("%s: ring failure, device dropped (a bug; please report it with this "
                      "traceback): %r", key, error, exc_info=error)
        elif error.errno in (errno.EIO, errno.ENODEV) and self.deleted(key, dev):
            self.remove(key, deleted=True)
            return
        else:
            log.warning("%s: its uio device failed (%s), no longer serving it; check the "
                        "kernel log (dmesg), then `systemctl reload lio-xcopy` to serve it "
                        "again", dev.name, error.strerror or error)
        self.remove(key)

    def _drain_deferred(self, timeout: float = 60.0) -> None:
        """Before closing: let long commands finish (bounded); each ring's thread
        completes its own."""
        deadline = time.monotonic() + timeout
        while any(d.deferred for d in self.devices.values()):
            if time.monotonic() > deadline:
                log.error("stopping with long commands still running: %s",
                          {d.name: list(d.deferred) for d in self.devices.values()})
                return
            time.sleep(0.05)
            self._drop_broken()


def main(argv: list[str] | None = None,
         copy_groups: Callable[[], dict[str, tuple[str, ...]]] | None = None,
         parents: Sequence[argparse.ArgumentParser] = ()) -> int:
    """``lio-xcopy daemon``: serve until SIGTERM/SIGINT. ``copy_groups`` reads the
    operator's copy groups (the control plane passes it; the saved configuration);
    ``parents`` are argparse parsers of the caller's options, shown in ``--help``.
    A second daemon with the same state directory refuses to start (one line naming
    the running one's pid, exit status 1) and touches nothing."""
    import sys

    from lio_xcopy.tcmu import pidlock

    p = argparse.ArgumentParser(
        prog="lio-xcopy daemon", parents=list(parents),
        description="Serve every TCMU device of our subtype until SIGTERM or SIGINT.")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log at debug level: one line per command answered, how each "
                        "EXTENDED COPY is planned, and each copy access policy decision")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                   help="log level (default info; -v means debug)")
    p.add_argument("--subtype", default=SUBTYPE, help="TCMU handler subtype to serve")
    p.add_argument("--pidfile", type=Path, help="write the daemon's pid here once ready")
    p.add_argument("--state-file", type=Path, default=state_file.DEFAULT_PATH,
                   help="where `lio-xcopy status` finds the LUNs served and copies in "
                        f"progress (default {state_file.DEFAULT_PATH})")
    p.add_argument("--copy-digest", choices=[a.label for a in DigestAlgorithm],
                   default=DigestAlgorithm.XXH3_128.label,
                   help="the digest of each copy's bytes (RECEIVE COPY DIGEST): xxh3-128 "
                        "(default) catches accidental corruption, sha256 tampering too")
    args = p.parse_args(argv)
    try:
        held = pidlock.acquire(args.state_file.with_name(pidlock.NAME))
    except (pidlock.AlreadyRunning, OSError) as e:
        print(f"lio-xcopy daemon: {e}", file=sys.stderr)
        return 1
    level = args.log_level or ("debug" if args.verbose else "info")
    journal = bool(os.environ.get("JOURNAL_STREAM"))  # systemd adds time and pid itself
    logging.basicConfig(
        level=level.upper(),
        format="%(levelname)s %(name)s: %(message)s" if journal
        else "%(asctime)s lio-xcopy[%(process)d] %(levelname)s %(name)s: %(message)s",
    )
    tune_malloc()
    daemon = Daemon(args.subtype, state_path=args.state_file, copy_digest=args.copy_digest)
    daemon.copy_groups_loader = copy_groups
    daemon.load_copy_groups()
    signal.signal(signal.SIGTERM, daemon.stop)
    signal.signal(signal.SIGINT, daemon.stop)
    signal.signal(signal.SIGHUP, daemon.reload)

    def ready() -> None:
        if args.pidfile:
            args.pidfile.write_text(f"{os.getpid()}\n")
        log.info("ready: serving %d device(s) of subtype %r", len(daemon.devices), args.subtype)
        sd_notify("READY=1", f"STATUS={daemon.status_line()}", f"MAINPID={os.getpid()}")

    try:
        daemon.start_udev()
    except (ImportError, OSError) as e:
        log.error("cannot watch for uio devices (pyudev/netlink): %s", e)
        held.release()
        return 1
    daemon.run(ready)
    sd_notify("STOPPING=1")
    held.release()
    return 0
