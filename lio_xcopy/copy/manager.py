"""The copy manager: EXTENDED COPY (LID1 and LID4) run on the target host (SPC-4 6.4,
6.5); a LID4 copy sent with IMMED runs in the background (SPC-4 5.17.4.3).

An EXTENDED COPY arrives at one LUN; the manager parses its parameter list, resolves
each identification CSCD (E4h) by the designators of VPD page 83h, first to a LUN this
daemon serves, then to a foreign SCSI device the operator admitted to a copy group with
the receiving LUN (:class:`~lio_xcopy.copy.ports.ForeignDirectory`), checks every
segment against its devices, then runs the segments on a worker through the block and
stream ports of :mod:`lio_xcopy.copy.ports` (a tape gets real records, a disk real
blocks). The command completes when the copy ends; RECEIVE COPY RESULTS reports its
progress meanwhile (SPC-4 r31 6.18).

Residuals (SPC-4 6.4.6.1): CAT holds bytes that do not fill a stream WRITE, or that a
stream record brings beyond a segment, for the next segment; PAD pads a last fixed
block with zeros (destination) or discards the rest of a record (source). Without
either, a variable-mode tape gets a shorter last record, and anything else that does
not divide evenly is COPY ABORTED, UNEXPECTED INEXACT SEGMENT.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, cast

from lio_xcopy.copy import digest as copy_digest
from lio_xcopy.copy.digest import BackgroundDigest
from lio_xcopy.copy.executor import DaemonThreads, Executor, named
from lio_xcopy.copy.ports import (
    BlockPort,
    ForeignDirectory,
    ForeignPort,
    Port,
    StreamPort,
    is_block,
    is_stream,
)
from lio_xcopy.copy.readahead import READ_AHEAD, ReadAhead
from lio_xcopy.copy.rod import RodSource, RodTokens
from lio_xcopy.devices.base import LogicalUnit
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.filecopy import FileData, KernelCopyFailed
from lio_xcopy.scsi import ssc, xcopy
from lio_xcopy.scsi.errors import (
    CheckCondition,
    IllegalRequest,
    InvalidFieldInCdb,
    TargetUnreachable,
    TaskAborted,
)
from lio_xcopy.scsi.sense import (
    CHECK_CONDITION,
    GOOD,
    TASK_ABORTED,
    Asc,
    SenseData,
    SenseKey,
    segment_pointer,
)
from lio_xcopy.scsi.vendor_sense import PolicyApart
from lio_xcopy.scsi.xcopy import (
    SEGMENT_HEADER,
    BlockToBlock,
    BlockToBlockOffset,
    BlockToStream,
    BlockToStreamOffset,
    CopyCommandStatus,
    EmbeddedToStream,
    ExtendedCopyParameterList,
    IdentificationCscd,
    InlineToStream,
    Limits,
    ListIdUsage,
    Locate,
    RodCscd,
    Segment,
    Space,
    StreamToBlock,
    StreamToBlockOffset,
    StreamToDiscard,
    StreamToStream,
    TapeImageCopy,
    VerifyCscd,
    WriteFilemarks,
)

log = logging.getLogger(__name__)

#: SPACE codes a space segment (11h) may carry: blocks, filemarks, end of data (SSC-4).
SPACE_CODES = (ssc.SPACE_BLOCKS, ssc.SPACE_FILEMARKS, ssc.SPACE_END_OF_DATA)

CHUNK = 1 << 20  # bytes moved per read/write between block devices
#: bytes the kernel copies from a disk into a tape per call (whole chunks, each counted as
#: its READ): the daemon's work per call is the same whatever its size
KERNEL_SPAN = 8 << 20
HELD_RESULTS = 64  # finished copies remembered per LUN for RECEIVE COPY RESULTS
#: Seconds a finished copy's results stay held for RECEIVE COPY RESULTS. SPC-4 lets the
#: copy manager discard held results after a vendor-specific period; since TCMU does not
#: tell us the I_T nexus, every initiator of the LUN sees them until then.
HELD_RESULTS_SECONDS = 300.0

#: ESTIMATED STATUS UPDATE DELAY (ms) of a copy in progress (SPC-4 6.24): how long we
#: suggest a poller of RECEIVE COPY STATUS(LID4) waits (each poll is a command the
#: daemon answers beside the copies: twice a second is enough for a progress bar) ...
STATUS_POLL_MS = 500
#: ... and the least, once the copy's pace says it ends sooner than that
STATUS_POLL_MIN_MS = 10

#: :attr:`CopyJob.cancelled_by` of a copy COPY OPERATION ABORT stopped
OPERATION_ABORTED = -1


class CopyAborted(CheckCondition):
    """COPY ABORTED for segment ``segment`` (SPC-4 6.4): COMMAND-SPECIFIC
    INFORMATION bytes 10-11 hold the segment number, the sense-key specific segment
    pointer the byte of the parameter list at fault (SD set: within the segment).
    ``cause`` is the copy end's own sense, ``cause_raw`` its bytes when the end relayed
    them from another device; FAILED SEGMENT DETAILS reports them."""

    def __init__(self, asc: int, segment: int, *, byte: int | None = None,
                 in_segment: bool = True, information: int | None = None,
                 cause: SenseData | None = None, cause_raw: bytes | None = None,
                 vendor: bytes = b"", message: str = ""):
        self.segment = segment
        self.cause = cause
        self.cause_raw = cause_raw
        super().__init__(
            SenseData(
                SenseKey.COPY_ABORTED, asc, information=information,
                command_specific=segment & 0xFFFF,
                sense_key_specific=(segment_pointer(byte, in_segment=in_segment)
                                    if byte is not None else None),
                vendor=vendor,
            ),
            message=message or f"copy aborted in segment {segment}",
        )


@dataclass
class CopyJob:
    """One EXTENDED COPY: what RECEIVE COPY RESULTS and ``lio-xcopy status`` report."""

    lun: str
    list_id: int
    usage: int
    segments: int
    description: list[str]
    segments_processed: int = 0
    transferred: int = 0
    planned: int = 0  # bytes all segments move
    #: of the bytes moved, in order, hashed behind the copy: a buffer is written again
    #: only once what was moved out of it is hashed (:class:`_Staging`, :class:`_Alternating`,
    #: :class:`~lio_xcopy.copy.readahead.ReadAhead`)
    digest: Any = field(default_factory=BackgroundDigest)
    status: int = CopyCommandStatus.IN_PROGRESS
    sense: SenseData | bytes | None = None  # for FAILED SEGMENT DETAILS
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    #: the ASC of the COPY ABORTED a cancelled copy ends in: task management or another
    #: initiator cleared it, or the device server itself did (the daemon is stopping);
    #: OPERATION_ABORTED: COPY OPERATION ABORT stopped it (TASK ABORTED status)
    cancelled_by: int = Asc.COMMANDS_CLEARED_BY_ANOTHER_INITIATOR
    future: Future[int] | None = None  # the EXTENDED COPY command's completion
    carry: bytes = b""  # residual held for the next segment (CAT, SPC-4 6.4.6.1)
    #: the originating command's service action (RESPONSE TO SERVICE ACTION, SPC-4 6.24):
    #: 00h EXTENDED COPY(LID1), 01h EXTENDED COPY(LID4)
    service_action: int = 0x00
    immed: bool = False  # runs in the background (SPC-4 5.17.4.3): GOOD was returned
    copy_sense: SenseData | None = None  # what the EXTENDED COPY ended with (COPY ABORTED)
    stopped: Future[None] = field(default_factory=Future)  # set when the copy has ended
    begun: bool = False  # its first segment descriptor is being processed
    #: bytes of held data kept (0Bh-0Fh): the HELD DATA LIMIT with LIST ID USAGE 00b,
    #: else none (SPC-4 6.4.3.2: 10b and 11b ask for no held data)
    held_limit: int = 0
    held: bytearray = field(default_factory=bytearray)  # for RECEIVE DATA
    held_discarded: bool = False  # HDD: the oldest held bytes went beyond the limit
    #: the buffers its segments read and stage into, by use, kept from one segment to
    #: the next until the copy ends (:meth:`scratch`)
    scratch_buffers: dict[str, list[memoryview]] = field(default_factory=dict, repr=False)

    def scratch(self, use: str, count: int, size: int) -> list[memoryview]:
        """``count`` buffers of ``size`` bytes for one segment's ``use``: those of an
        earlier segment when they are large enough, once the digest has hashed all it
        was handed (no byte it has yet to read is overwritten). A copy of many segments
        allocates them, and the kernel zero-fills their pages, once."""
        kept = self.scratch_buffers.get(use, [])
        if len(kept) >= count and all(len(v) >= size for v in kept[:count]):
            wait = getattr(self.digest, "wait", None)
            if wait is not None:
                wait(self.digest.ticket())
            return [v[:size] for v in kept[:count]]
        bufs = [memoryview(bytearray(size)) for _ in range(count)]
        self.scratch_buffers[use] = bufs
        return bufs

    def hold(self, data: DataBuffer, n: int) -> None:
        """Hold the first ``n`` bytes of ``data`` for the application client; beyond
        the limit the oldest held bytes are discarded and HDD set (SPC-4 r31 6.18.4:
        the copy manager keeps the data of the most recently processed segments)."""
        if not self.held_limit or n <= 0:
            return
        for view in data.slices(0, n):
            self.held += view
        extra = len(self.held) - self.held_limit
        if extra > 0:
            del self.held[:extra]
            self.held_discarded = True
    #: commands sent to a copy source or destination that completed GOOD (the OPERATION
    #: COUNTER of RECEIVE COPY STATUS (LID4), SPC-4 6.24; wraps at 16 bits when reported)
    operations: int = 0

    @property
    def running(self) -> bool:
        return self.status == CopyCommandStatus.IN_PROGRESS

    def moved(self, data: DataBuffer, n: int) -> None:
        """``n`` bytes of ``data`` reached the destination."""
        for view in data.slices(0, n):
            self.digest.update(view)
        self.transferred += n


@dataclass(frozen=True, slots=True)
class _Plan:
    """A checked segment: its descriptor and the ports it moves data between."""

    index: int
    last: bool
    segment: Any
    source: Any  # a BlockPort or StreamPort, as the segment's type says; None when the
    destination: Any  # descriptor names no such end (04h-06h, 10h-12h)
    source_cscd: IdentificationCscd | None
    destination_cscd: IdentificationCscd | None
    inline_data: bytes = b""  # the parameter list's inline data (04h)


class CopyManager:
    """Serves EXTENDED COPY and RECEIVE COPY RESULTS for every LUN of the daemon."""

    def __init__(self, limits: Limits | None = None, chunk: int = CHUNK,
                 policy: Callable[[LogicalUnit, LogicalUnit], bool] | None = None, *,
                 foreign: ForeignDirectory | None = None,
                 admitted: Callable[[LogicalUnit], Collection[str]] | None = None,
                 executor: Executor | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 digest: xcopy.DigestAlgorithm | str = copy_digest.DEFAULT,
                 read_ahead: int | None = None, kernel_copy: bool = True):
        self.limits = limits or Limits()
        self.chunk = chunk
        #: between two file-backed ends, let the kernel move the bytes
        #: (:mod:`lio_xcopy.devices.filecopy`) where the segment allows it
        self.kernel_copy = kernel_copy
        #: what RECEIVE COPY DIGEST reports of each copy (docs/copy-digest.md)
        self.digest_algorithm = (digest if isinstance(digest, xcopy.DigestAlgorithm)
                                 else xcopy.DigestAlgorithm.named(digest))
        #: May a copy received by the first LUN name the second? (the copy access policy)
        self.policy = policy or (lambda _receiving, _other: True)
        #: The devices this daemon does not serve (None: copies use our own LUNs only).
        self.foreign = foreign
        #: The foreign designators (text form) a copy received by a LUN may name: those
        #: the operator admitted to a copy group with it. None admitted by default.
        self.admitted = admitted or (lambda _receiving: ())
        #: runs each copy's work apart from its command (SPC-4 5.17.4.3): a daemon
        #: thread per copy by default
        self.executor: Executor = executor if executor is not None else DaemonThreads("xcopy")
        self.clock = clock  # seconds, monotonic: when copies finish and results expire
        #: chunks read from a block device ahead of the one being written
        #: (:mod:`lio_xcopy.copy.readahead`): an executor that runs copies step by step
        #: says 0 (its ``read_ahead``), so every read stays on the copy's thread
        self.read_ahead: int = (read_ahead if read_ahead is not None
                                else getattr(self.executor, "read_ahead", READ_AHEAD))
        self._devices: dict[str, LogicalUnit] = {}
        self._jobs: dict[str, OrderedDict[int, CopyJob]] = {}
        self._running: list[CopyJob] = []
        self._lock = threading.Lock()
        #: ROD tokens (POPULATE TOKEN / WRITE USING TOKEN), under the same access policy
        self.rod = RodTokens(lambda receiving, other: self.policy(receiving, other), clock=clock,
                             executor=self.executor, busy=self._copy_running)

    # --- the LUNs a copy may name -------------------------------------------------------------
    def register(self, device: LogicalUnit) -> None:
        with self._lock:
            self._devices[device.identity.name] = device
        device.copy_manager = self

    def unregister(self, device: LogicalUnit) -> None:
        with self._lock:
            self._devices.pop(device.identity.name, None)
            running = [j for j in self._running if j.lun == device.identity.name]
        self.rod.forget(device, device.identity.name)
        for job in running:
            job.cancel.set()
        device.copy_manager = None

    def abort(self, fut: Future[int]) -> bool:
        """Task management (ABORT TASK, LUN RESET, ...) aborted the EXTENDED COPY that
        ``fut`` completes: stop it at its next chunk. False when no copy runs for it."""
        with self._lock:
            job = next((j for j in self._running if j.future is fut), None)
        if job is None:
            return False
        log.warning("copy %s/%d aborted by task management after %d bytes", job.lun,
                    job.list_id, job.transferred)
        job.cancel.set()
        return True

    def copy_operation_abort(self, receiving: LogicalUnit, list_id: int) -> Future[int] | None:
        """COPY OPERATION ABORT (SPC-4 6.3): stop the copy operation the LUN received
        with this list identifier, from whichever initiator sends it (TCMU does not
        tell the nexus apart). The copy stops at its next chunk; its EXTENDED COPY
        ends with TASK ABORTED status, as FreeBSD CTL's does, and COPY STATUS keeps the
        exact count of what reached the destination. "If the copy manager is not
        processing a copy operation with the specified list identifier", SPC-4 6.3
        wants ILLEGAL REQUEST, INVALID FIELD IN CDB (here at byte 2, the LIST
        IDENTIFIER): so for a copy that already ended (its results stay held, as they
        were), a list identifier the LUN holds nothing for, and one sent with LIST ID
        USAGE 11b, which has none. (FreeBSD CTL answers GOOD for a copy that ended.)

        A copy running in the background (EXTENDED COPY(LID4) with IMMED) has no command
        left to end: SPC-4 5.17.4.7 a) wants its transfers stopped before COPY OPERATION
        ABORT completes, so the Future returned then completes (GOOD) once the copy has
        ended; its COPY STATUS (LID4) says 60h, terminated, with the exact count."""
        with self._lock:
            self._expire()
            table = self._jobs.get(receiving.identity.name)
            job = table.get(list_id) if table is not None else None
        if job is None:  # a WRITE USING TOKEN with IMMED, or nothing being processed
            return self.rod.abort(receiving, list_id)
        if not job.running:
            raise InvalidFieldInCdb(2, message=f"the copy with list identifier {list_id} "
                                               "has ended")
        log.warning("copy %s/%d: COPY OPERATION ABORT after %d bytes", job.lun,
                    job.list_id, job.transferred)
        job.cancelled_by = OPERATION_ABORTED
        job.cancel.set()
        if job.immed:
            done: Future[int] = Future()
            done.set_running_or_notify_cancel()
            job.stopped.add_done_callback(lambda _: done.set_result(0))
            return done
        return None

    def reset(self, receiving: LogicalUnit) -> list[CopyJob]:
        """LOGICAL UNIT RESET (or a target reset) reached the LUN: its background copies
        end as if COPY OPERATION ABORT named each (SPC-4 5.17.5 table 109), at their
        next chunk, COPY STATUS (LID4) 60h with the exact count. Foreground copies end
        with their commands, which the transport aborts (:meth:`abort`)."""
        self.rod.stop(receiving.identity.name)
        with self._lock:
            jobs = [j for j in self._running if j.lun == receiving.identity.name and j.immed]
        for job in jobs:
            log.warning("copy %s/%d: reset after %d bytes", job.lun, job.list_id,
                        job.transferred)
            job.cancelled_by = OPERATION_ABORTED
            job.cancel.set()
        return jobs

    def stop(self, wait: float = 0.0) -> list[CopyJob]:
        """The copy manager is stopping: every running copy ends at its next chunk in
        COPY ABORTED, COMMANDS CLEARED BY DEVICE SERVER (SPC-4 Annex D, 2Fh/02h), with
        the segment it was in, so no EXTENDED COPY is left unanswered for the kernel to
        fail BUSY and an initiator to retry from its start. A background copy (LID4
        IMMED) has no command to wait for: ``wait`` seconds at most are given to those
        to end before the LUNs close. Returns the copies ended."""
        self.rod.stop()  # background WRITE USING TOKENs too
        with self._lock:
            running = list(self._running)
        for job in running:
            job.cancelled_by = Asc.COMMANDS_CLEARED_BY_DEVICE_SERVER
            job.cancel.set()
        deadline = time.monotonic() + wait
        for job in running:
            if job.immed and wait > 0:
                with contextlib.suppress(TimeoutError):
                    job.stopped.result(timeout=max(deadline - time.monotonic(), 0))
        if wait > 0:
            self.rod.stop(wait=max(deadline - time.monotonic(), 0))
        return running

    def resolve(self, cscd: IdentificationCscd) -> LogicalUnit | None:
        """The LUN of ours whose VPD page 83h reports the CSCD's designator."""
        with self._lock:
            devices = list(self._devices.values())
        for dev in devices:
            if any(cscd.identifies(d) for d in dev.designators()):
                return dev
        return None

    def serves(self, designators: Collection[Any]) -> bool:
        """Whether a device reporting ``designators`` is one of our LUNs (seen back
        through the kernel, e.g. over tcm_loop)."""
        with self._lock:
            devices = list(self._devices.values())
        mine = {(d.designator_type, bytes(d.value)) for dev in devices
                for d in dev.designators() if d.association == 0}
        return any((d.designator_type, bytes(d.value)) in mine for d in designators
                   if d.association == 0)

    def _resolve_foreign(self, cscd: IdentificationCscd,
                         receiving: LogicalUnit) -> ForeignPort | None:
        """The admitted foreign device the CSCD names, re-identified on its node now."""
        if self.foreign is None:
            return None
        admitted = self.admitted(receiving)
        if not admitted:
            return None
        return self.foreign.find(cscd.identifies, admitted, self.serves)

    def jobs(self) -> list[CopyJob]:
        with self._lock:
            self._expire()
            return [j for table in self._jobs.values() for j in table.values()]

    # --- EXTENDED COPY (LID1), SPC-4 6.5 ------------------------------------------------------
    def extended_copy(self, receiving: LogicalUnit, data: bytes, *,
                      lid4: bool = False) -> Future[int]:
        """Check the parameter list and start the copy; raise its CHECK CONDITION now
        when the list is wrong, or return the Future the copy completes.

        ``lid4``: the list is an EXTENDED COPY(LID4) one (SPC-4 6.4), with the same
        descriptors after a 48-byte header and a 32-bit list identifier. With its IMMED
        bit set the returned Future is already done (GOOD) once the checks below have
        passed, and the copy runs in the background (SPC-4 5.17.4.3): RECEIVE COPY
        STATUS(LID4) reports it, COPY OPERATION ABORT or :meth:`stop` end it.

        The checks, in order; nothing moves until all have passed:

        1. The parameter list alone (:func:`~lio_xcopy.scsi.xcopy.parse_extended_copy`,
           whose docstring has the order): ILLEGAL REQUEST with a field pointer into the
           list, as SPC-4 asks of errors found before segment descriptors are processed
           (the sense key is the condition's, not COPY ABORTED).
        2. Each segment in turn, against the devices its CSCDs resolve to: the source,
           then the destination CSCD (unreachable: COPY ABORTED, COPY TARGET DEVICE NOT
           REACHABLE), their device types (INCORRECT COPY TARGET DEVICE TYPE), block
           length and pending unit attention, then its ranges (LOGICAL BLOCK ADDRESS OUT
           OF RANGE, INFORMATION the LBA) and its length. These are errors in processing
           a segment descriptor (SPC-4 6.4.6): COPY ABORTED with the segment number in
           COMMAND-SPECIFIC INFORMATION and an SD field pointer within the segment, the
           same sense a manager checking each segment only as it reaches it would give,
           except that no segment has run.
        3. Resources: too many copies, or the list identifier of a running copy.

        Where LIO's ``target_core_xcopy.c`` answers otherwise, SPC-4 allows ours:

        * 65 CSCD descriptors in a list also longer than MAXIMUM DESCRIPTOR LIST LENGTH:
          TOO MANY TARGET DESCRIPTORS (LIO: PARAMETER LIST LENGTH ERROR, since it
          checks the combined length first). SPC-4 6.4.3.4 and 6.4.3.5 name both
          conditions and rank neither; ours follows the fields in the order 6.4.3
          describes them and points at the CSCD DESCRIPTOR LIST LENGTH, the field an
          initiator that read our OPERATING PARAMETERS got wrong first.
        * A 03h segment naming disks: COPY ABORTED, INCORRECT COPY TARGET DEVICE TYPE
          before any segment runs. A manager without 03h (LIO; ``Limits.segment_types``
          without it) answers UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE in step 1; ours
          supports the type, so that would be false, and the mismatch is between the
          segment and the devices its CSCDs name, known once they resolve.
        * A CSCD DESCRIPTOR ID beyond the CSCD list: ILLEGAL REQUEST, INVALID FIELD IN
          PARAMETER LIST at the ID (LIO: COPY ABORTED, COPY TARGET DEVICE NOT
          REACHABLE). The list itself is wrong, found before any segment is processed;
          no device was tried, and "not reachable" would send the initiator to copy by
          itself a list that names nothing.
        * A range past the destination's end: COPY ABORTED, LOGICAL BLOCK ADDRESS OUT
          OF RANGE with the LBA (LIO: COPY TARGET DEVICE NOT REACHABLE, its answer to
          any failed READ or WRITE it issues). SPC-4 wants the sense key COPY ABORTED
          and an additional sense code that describes the condition; the destination
          was reachable.
        """
        plist = (xcopy.parse_extended_copy_lid4 if lid4 else xcopy.parse_extended_copy)(
            data, self.limits)
        ends: dict[int, tuple[Port, IdentificationCscd | None]] = {}
        foreign: list[ForeignPort] = []  # opened for this copy: closed when it ends
        try:
            plans = [self._plan(plist, i, receiving, ends, foreign)
                     for i in range(len(plist.segments))]
            job = CopyJob(
                receiving.identity.name, plist.header.list_identifier,
                plist.header.list_id_usage, len(plans), [s.describe() for s in plist.segments],
                planned=sum(_segment_bytes(p.segment, p.source, p.destination) for p in plans),
                started=self.clock(), service_action=plist.header.SERVICE_ACTION,
                immed=plist.header.immed, digest=BackgroundDigest(self.digest_algorithm),
                held_limit=(self.limits.held_data_limit
                            if plist.header.list_id_usage == ListIdUsage.HOLD else 0),
            )
            self._admit(job)
        except BaseException:
            _close(foreign)
            raise
        fut: Future[int] = Future()
        fut.set_running_or_notify_cancel()
        job.future = None if job.immed else fut  # a background copy has no command to end

        def work() -> None:
            try:
                self._run(job, plans, fut)
            finally:
                _close(foreign)

        self.executor.submit(named(f"xcopy-{job.lun}-{job.list_id}", work))
        if job.immed:
            good: Future[int] = Future()
            good.set_running_or_notify_cancel()
            good.set_result(0)
            return good
        return fut

    def _copy_running(self, lun: str, list_id: int) -> bool:
        """Whether the LUN's EXTENDED COPY with ``list_id`` is running (for the ROD
        token store: one list identifier space, SPC-4 5.17.4.2). It takes no lock: the
        store calls it with its own lock held, and :meth:`_admit` asks the store before
        taking this one, so no lock order is inverted."""
        return any(j.lun == lun and j.list_id == list_id and j.usage != ListIdUsage.NO_LIST_ID
                   for j in list(self._running))

    def _admit(self, job: CopyJob) -> None:
        if job.usage != ListIdUsage.NO_LIST_ID and self.rod.running(job.lun, job.list_id):
            byte = 20 if job.service_action == xcopy.Lid4Header.SERVICE_ACTION else 0
            raise IllegalRequest(Asc.OPERATION_IN_PROGRESS, byte, in_cdb=False,
                                 message=f"list identifier {job.list_id} in use by a "
                                         "WRITE USING TOKEN")
        with self._lock:
            if len(self._running) >= self.limits.max_concurrent_copies:
                raise IllegalRequest(Asc.INSUFFICIENT_RESOURCES,
                                     message="too many copies in progress")
            self._expire()
            table = self._jobs.setdefault(job.lun, OrderedDict())
            if job.usage != ListIdUsage.NO_LIST_ID:
                # one 32-bit space for LID1 and LID4 list identifiers (SPC-4 5.17.4.2):
                # a running copy's identifier is OPERATION IN PROGRESS in the same list
                # format, INVALID FIELD IN PARAMETER LIST in the other (6.4.3.2)
                old = table.get(job.list_id)
                byte = 20 if job.service_action == xcopy.Lid4Header.SERVICE_ACTION else 0
                if old is not None and old.running and \
                        old.service_action != job.service_action:
                    raise IllegalRequest(
                        Asc.INVALID_FIELD_IN_PARAMETER_LIST, byte, in_cdb=False,
                        message=f"list identifier {job.list_id} in use by a copy in the "
                                "other list format")
                if old is not None and old.running:
                    raise IllegalRequest(Asc.OPERATION_IN_PROGRESS, byte, in_cdb=False,
                                         message=f"list identifier {job.list_id} in use")
                table.pop(job.list_id, None)
                table[job.list_id] = job
                while len(table) > HELD_RESULTS:
                    table.popitem(last=False)
            self._running.append(job)

    def _expire(self) -> None:
        """Drop the results of copies that finished HELD_RESULTS_SECONDS ago or more
        (with the lock held). Running copies are always kept."""
        now = self.clock()
        for table in self._jobs.values():
            for list_id in [k for k, j in table.items() if j.finished is not None
                            and now - j.finished >= HELD_RESULTS_SECONDS]:
                del table[list_id]

    def _cscd_device(self, plist: ExtendedCopyParameterList, seg_index: int, cscd_id: int,
                     receiving: LogicalUnit, field_byte: int, foreign: list[ForeignPort]
                     ) -> tuple[Port, IdentificationCscd | None]:
        if cscd_id == xcopy.CSCD_ID_LOCAL:
            log.debug("EXTENDED COPY at %s: CSCD ID %#06x is %s itself", receiving.name,
                      cscd_id, receiving.name)
            return self._copy_end(receiving, seg_index, foreign, lambda why: CopyAborted(
                Asc.COPY_TARGET_DEVICE_NOT_REACHABLE, seg_index, byte=field_byte,
                message=f"{receiving.name}: {why}")), None
        cscd = plist.cscd(cscd_id)
        if cscd is None:  # null LUs (C000h/C001h) and ROD tokens: nothing to copy with
            raise CopyAborted(Asc.UNREACHABLE_COPY_TARGET, seg_index, byte=field_byte,
                              message=f"CSCD ID {cscd_id:#06x} names no logical unit here")
        if isinstance(cscd, RodCscd):  # a ROD token in the inline data (SPC-4 6.4.5.9)
            start = cscd.rod_token_offset
            token = plist.inline_data[start : start + xcopy.ROD_TOKEN_BYTES]
            at = plist.segment_offset(len(plist.segments)) + start
            return self.rod.rod_source(receiving, token, at, del_tkn=cscd.del_tkn), None

        def unreachable(why: str, vendor: bytes = b"") -> CopyAborted:
            log.warning("EXTENDED COPY at %s names %s: %s: refused", receiving.name,
                        cscd.describe(), why)
            return CopyAborted(Asc.COPY_TARGET_DEVICE_NOT_REACHABLE, seg_index,
                               byte=plist.cscd_offset(cscd_id), in_segment=False,
                               vendor=vendor,
                               message=f"no device reachable here has designator "
                                       f"{cscd.designator.hex()}: {why}")

        own = self.resolve(cscd)
        if own is not None:
            if own is not receiving and not self.policy(receiving, own):
                raise unreachable(f"{own.name}, which the copy access policy keeps apart "
                                  "from it",
                                  PolicyApart(receiving.name, own.name).encode())
            log.debug("EXTENDED COPY at %s: CSCD %d (designator %s) is LUN %s", receiving.name,
                      cscd_id, cscd.designator.hex(), own.name)
            return self._copy_end(own, seg_index, foreign, unreachable), cscd
        try:
            far = self._resolve_foreign(cscd, receiving)
        except CheckCondition as e:  # gone, renumbered, or it refused to say what it is
            err = unreachable(str(e))
            err.cause, err.cause_raw = e.sense, e.raw_sense
            raise err from e
        if far is None:
            raise unreachable("neither a LUN of ours nor a foreign device admitted to a copy "
                              f"group with {receiving.name}")
        foreign.append(far)
        log.info("EXTENDED COPY at %s: CSCD %d is the foreign device %s", receiving.name,
                 cscd_id, far.name)
        return far, cscd

    @staticmethod
    def _copy_end(lun: LogicalUnit, seg_index: int, opened: list[ForeignPort],
                  unreachable: Callable[[str], CopyAborted]) -> Port:
        """The port a LUN of ours offers for copies (:meth:`LogicalUnit.copy_end`): the LUN
        itself, or a port onto the device a pass-through LUN forwards to, which the copy
        closes when it ends."""
        try:
            end = lun.copy_end()
        except CheckCondition as e:
            if e.sense.asc == Asc.INCORRECT_COPY_TARGET_DEVICE_TYPE:
                raise CopyAborted(e.sense.asc, seg_index, message=str(e)) from e
            err = unreachable(str(e))
            err.cause, err.cause_raw = e.sense, e.raw_sense
            raise err from e
        if end is not lun:
            foreign: ForeignPort = end
            opened.append(foreign)
            return foreign
        own: Port = lun
        return own

    def _plan(self, plist: ExtendedCopyParameterList, i: int, receiving: LogicalUnit,
              ends: dict[int, tuple[Port, IdentificationCscd | None]],
              foreign: list[ForeignPort]) -> _Plan:
        seg = plist.segments[i]
        named: dict[str, tuple[Port | None, IdentificationCscd | None]] = {
            "source": (None, None), "destination": (None, None)}
        for role, cscd_id, byte in seg.cscd_ids():
            if role == "destination" and isinstance(plist.cscd(cscd_id), RodCscd):
                raise CopyAborted(Asc.INVALID_FIELD_IN_PARAMETER_LIST, i, byte=byte,
                                  message="a ROD token's ROD is read-only here")
            if cscd_id not in ends:  # each CSCD is resolved once per EXTENDED COPY
                ends[cscd_id] = self._cscd_device(plist, i, cscd_id, receiving, byte, foreign)
            named[role] = ends[cscd_id]
        src, scscd = named["source"]
        dst, dcscd = named["destination"]
        kinds = _end_kinds(seg)
        for dev, cscd, fits, role in ((src, scscd, kinds[0], "source"),
                                      (dst, dcscd, kinds[1], "destination")):
            byte = SEGMENT_HEADER.offset(role)
            if dev is None or fits is None:
                continue
            if not fits(dev) or (
                cscd is not None and cscd.peripheral_device_type != dev.peripheral_device_type
            ):
                kind = ("block device" if fits is is_block else "stream device"
                        if fits is is_stream else "device of the CSCD's type")
                raise CopyAborted(Asc.INCORRECT_COPY_TARGET_DEVICE_TYPE, i, byte=byte,
                                  message=f"{dev.name} is not a {kind} for {seg.describe()}")
            if fits is is_block and cscd is not None and cscd.block_length not in (
                0, cast(BlockPort, dev).block_size
            ):
                raise CopyAborted(Asc.INCORRECT_COPY_TARGET_DEVICE_TYPE, i,
                                  byte=plist.cscd_offset(getattr(seg, role))
                                  + cscd.LAYOUT.offset("block_length"),
                                  in_segment=False,
                                  message=f"{dev.name} has {cast(BlockPort, dev).block_size}"
                                          f"-byte blocks, the CSCD says {cscd.block_length}")
            if fits is is_stream:
                try:
                    attention = cast(StreamPort, dev).pending_unit_attention()
                except CheckCondition as e:
                    raise CopyAborted(Asc.COPY_TARGET_DEVICE_NOT_REACHABLE, i, byte=byte,
                                      cause=e.sense, cause_raw=e.raw_sense,
                                      message=f"{dev.name}: {e}") from e
                if attention is not None:
                    # its position is not what the initiator last saw (power on, new cartridge)
                    raise CopyAborted(attention, i, byte=byte,
                                      cause=SenseData(SenseKey.UNIT_ATTENTION, attention),
                                      message=f"{dev.name} has a unit attention the "
                                              "initiator has not seen: position the tape first")
        self._check_ranges(i, seg, src, dst)
        self._check_stream_fields(i, seg, len(plist.inline_data))
        log.debug("EXTENDED COPY at %s: segment %d (%s): %s -> %s, %d bytes planned",
                  receiving.name, i, seg.describe(), src.name if src else "-",
                  dst.name if dst else "-", _segment_bytes(seg, src, dst))
        return _Plan(i, i == len(plist.segments) - 1, seg, src, dst, scscd, dcscd,
                     plist.inline_data if isinstance(seg, InlineToStream) else b"")

    @staticmethod
    def _check_stream_fields(i: int, seg: Any, inline_length: int) -> None:
        """The fields of 04h, 05h, 10h and 11h checked before any segment runs: COPY
        ABORTED with the segment pointer (SPC-4 6.4.6.8: an inline range beyond INLINE
        DATA LENGTH is INLINE DATA LENGTH EXCEEDED; a count beyond the embedded data, a
        setmark (WSMK) or a SPACE code other than blocks, filemarks and end of data,
        INVALID FIELD IN PARAMETER LIST)."""
        if isinstance(seg, InlineToStream) and \
                seg.inline_data_offset + seg.number_of_bytes > inline_length:
            raise CopyAborted(Asc.INLINE_DATA_LENGTH_EXCEEDED, i,
                              byte=InlineToStream.field_offset("number_of_bytes"),
                              message=f"inline data {seg.inline_data_offset}+"
                                      f"{seg.number_of_bytes} beyond {inline_length} bytes")
        if isinstance(seg, EmbeddedToStream) and seg.embedded_bytes > len(seg.data):
            raise CopyAborted(Asc.INVALID_FIELD_IN_PARAMETER_LIST, i,
                              byte=EmbeddedToStream.field_offset("number_of_bytes"),
                              message=f"{seg.embedded_bytes} bytes of embedded data in a "
                                      f"{len(seg.data)}-byte area")
        if isinstance(seg, WriteFilemarks) and seg.wsmk:
            raise CopyAborted(Asc.INVALID_FIELD_IN_PARAMETER_LIST, i,
                              byte=WriteFilemarks.field_offset("wsmk"),
                              message="setmarks (WSMK) are not supported")
        if isinstance(seg, Space) and seg.code not in SPACE_CODES:
            raise CopyAborted(Asc.INVALID_FIELD_IN_PARAMETER_LIST, i,
                              byte=Space.field_offset("code"),
                              message=f"space code {seg.code}")

    def _check_ranges(self, i: int, seg: Any, src: Any, dst: Any) -> None:
        def check(disk: BlockPort, lba: int, blocks: int, byte: int) -> None:
            if lba + blocks > disk.blocks:
                raise CopyAborted(Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE, i, byte=byte,
                                  information=lba,
                                  message=f"LBA {lba}+{blocks} beyond {disk.name}")

        if isinstance(seg, BlockToBlock):
            nbytes = seg.number_of_blocks * (dst.block_size if seg.dc else src.block_size)
            if nbytes % src.block_size or nbytes % dst.block_size:
                raise CopyAborted(Asc.UNEXPECTED_INEXACT_SEGMENT, i,
                                  byte=seg.field_offset("number_of_blocks"))
            check(src, seg.source_lba, nbytes // src.block_size, seg.field_offset("source_lba"))
            check(dst, seg.destination_lba, nbytes // dst.block_size,
                  seg.field_offset("destination_lba"))
        elif isinstance(seg, BlockToStream):
            check(src, seg.lba, seg.number_of_blocks, seg.field_offset("lba"))
        elif isinstance(seg, StreamToBlock):
            check(dst, seg.lba, seg.number_of_blocks, seg.field_offset("lba"))
        elif isinstance(seg, BlockToBlockOffset):
            check(src, seg.source_lba, _blocks_spanned(src, seg.source_byte_offset,
                                                       seg.byte_count),
                  seg.field_offset("source_lba"))
            check(dst, seg.destination_lba, _blocks_spanned(dst, seg.destination_byte_offset,
                                                            seg.byte_count),
                  seg.field_offset("destination_lba"))
        elif isinstance(seg, BlockToStreamOffset):
            check(src, seg.lba, _blocks_spanned(src, seg.block_byte_offset, seg.byte_count),
                  seg.field_offset("lba"))
        elif isinstance(seg, StreamToBlockOffset):
            check(dst, seg.lba, _blocks_spanned(dst, seg.block_byte_offset, seg.byte_count),
                  seg.field_offset("lba"))
        nbytes = _segment_bytes(seg, src, dst)
        if self.limits.max_segment_length and nbytes > self.limits.max_segment_length:
            # the first byte after the common header: the segment's own fields
            raise CopyAborted(Asc.INVALID_FIELD_IN_PARAMETER_LIST, i, byte=SEGMENT_HEADER.length,
                              message=f"segment of {nbytes} bytes")

    # --- running a copy ----------------------------------------------------------------------
    def _run(self, job: CopyJob, plans: list[_Plan], fut: Future[int]) -> None:
        log.info("copy %s/%d started: %s", job.lun, job.list_id, "; ".join(job.description))
        job.begun = True
        try:
            for plan in plans:
                self._segment(job, plan)
                job.segments_processed += 1
            for end in {id(p.source): p.source for p in plans}.values():
                if isinstance(end, RodSource):  # DEL_TKN once the copy completed
                    end.copy_completed()
        except CopyAborted as e:
            job.copy_sense = e.sense
            self._finish(job, CopyCommandStatus.COMPLETED_WITH_ERRORS,
                         e.cause_raw or e.cause or e.sense)
            log.error("copy %s/%d aborted in segment %d: %s", job.lun, job.list_id,
                      e.segment, e)
            fut.set_exception(_without_frames(
                TaskAborted(f"COPY OPERATION ABORT in segment {e.segment}")
                if job.cancelled_by == OPERATION_ABORTED else e))
            return
        except Exception as e:  # a bug: report it, never leave the command hanging
            log.exception("copy %s/%d failed", job.lun, job.list_id)
            err = CopyAborted(Asc.THIRD_PARTY_DEVICE_FAILURE, job.segments_processed)
            job.copy_sense = err.sense
            self._finish(job, CopyCommandStatus.COMPLETED_WITH_ERRORS, err.sense)
            fut.set_exception(err)
            del e
            return
        self._finish(job, CopyCommandStatus.COMPLETED, None)
        dt = max(job.finished - job.started, 1e-9) if job.finished else 0
        log.info("copy %s/%d done: %d segments, %d bytes in %.2f s (%.1f MiB/s)", job.lun,
                 job.list_id, job.segments, job.transferred, dt,
                 job.transferred / (1 << 20) / dt if dt else 0)
        fut.set_result(0)

    def _finish(self, job: CopyJob, status: int, sense: SenseData | bytes | None) -> None:
        job.digest.wait(job.digest.ticket())  # final once the copy ends, buffers let go
        with self._lock:
            job.status, job.sense, job.finished = status, sense, self.clock()
            job.future = None  # the command completes now; RECEIVE COPY RESULTS needs no more
            job.carry = b""  # a residual no later segment of this list will take
            job.scratch_buffers = {}  # the results outlive the copy; its buffers need not
            with contextlib.suppress(ValueError):
                self._running.remove(job)
            if job.usage == ListIdUsage.NO_LIST_ID:
                table = self._jobs.get(job.lun)
                if table is not None:
                    table.pop(job.list_id, None)
        if not job.stopped.done():
            job.stopped.set_result(None)

    @contextlib.contextmanager
    def _device_errors(self, job: CopyJob, plan: _Plan, *, source: bool) -> Iterator[None]:
        """A device's CHECK CONDITION mid-copy becomes COPY ABORTED for this segment,
        keeping the device's own sense for FAILED SEGMENT DETAILS; a device that could
        not be reached, COPY TARGET DEVICE NOT REACHABLE (SPC-4 6.4.3). Each block
        names one command to a copy source or destination; one that completes counts
        in the OPERATION COUNTER (SPC-4 6.24)."""
        if job.cancel.is_set():
            raise CopyAborted(Asc.COMMANDS_CLEARED_BY_ANOTHER_INITIATOR
                              if job.cancelled_by == OPERATION_ABORTED else job.cancelled_by,
                              plan.index,
                              message="copy cancelled"
                              if job.cancelled_by != Asc.COMMANDS_CLEARED_BY_DEVICE_SERVER
                              else f"the daemon is stopping: ended after {job.transferred}"
                                   " bytes")
        try:
            yield
        except CopyAborted:
            raise
        except CheckCondition as e:
            which = plan.source if source else plan.destination
            asc = (Asc.COPY_TARGET_DEVICE_NOT_REACHABLE if isinstance(e, TargetUnreachable)
                   else e.sense.asc)
            raise CopyAborted(asc, plan.index,
                              byte=SEGMENT_HEADER.offset("source" if source else "destination"),
                              cause=e.sense, cause_raw=e.raw_sense,
                              message=f"{which.name}: {e}") from e
        job.operations += 1  # the command completed GOOD: OPERATION COUNTER (SPC-4 6.24)

    def _segment(self, job: CopyJob, plan: _Plan) -> None:
        seg = plan.segment
        if isinstance(seg, BlockToBlock):
            self._block_to_block(job, plan)
        elif isinstance(seg, BlockToBlockOffset):
            self._block_to_block_offset(job, plan)
        elif isinstance(seg, (BlockToStream, BlockToStreamOffset)):
            self._block_to_stream(job, plan)
        elif isinstance(seg, (StreamToBlock, StreamToBlockOffset)):
            self._stream_to_block(job, plan)
        elif isinstance(seg, VerifyCscd):
            self._verify_cscd(job, plan)
        elif isinstance(seg, TapeImageCopy):
            self._tape_image_copy(job, plan)
        elif isinstance(seg, StreamToStream):
            self._stream_to_stream(job, plan)
        elif isinstance(seg, InlineToStream):
            start = seg.inline_data_offset
            self._data_to_stream(job, plan, plan.inline_data[start : start + seg.number_of_bytes],
                                 seg.stream_transfer_length, seg.field_offset("number_of_bytes"))
        elif isinstance(seg, EmbeddedToStream):
            self._data_to_stream(job, plan, seg.payload, seg.stream_transfer_length,
                                 seg.field_offset("number_of_bytes"))
        elif isinstance(seg, StreamToDiscard):
            self._stream_to_discard(job, plan)
        else:
            self._tape_operation(job, plan)

    def _data_to_stream(self, job: CopyJob, plan: _Plan, payload: bytes,
                        transfer_length: int, count_byte: int) -> None:
        """04h and 05h (SPC-4 6.4.6.8, 6.4.6.9): the parameter list's own bytes (and a
        residual held by CAT) written to the stream device as for 00h, in records of
        the STREAM DEVICE TRANSFER LENGTH. Zero bytes write nothing."""
        tape: StreamPort = plan.destination
        cscd = plan.destination_cscd
        data = job.carry + payload
        job.carry = b""
        if not data:
            return
        per_write, fixed = self._stream_writes(cscd, tape, transfer_length, plan)
        record = (cscd.block_length if cscd else tape.block_length) if fixed else per_write
        if not record or not per_write:
            raise CopyAborted(Asc.INVALID_FIELD_IN_PARAMETER_LIST, plan.index,
                              byte=plan.segment.transfer_length_offset())
        pad = cscd is not None and cscd.pad
        carry_on = plan.segment.cat and not plan.last
        if fixed and len(data) % record and not (pad or carry_on):
            raise CopyAborted(Asc.UNEXPECTED_INEXACT_SEGMENT, plan.index, byte=count_byte)
        buf = DataBuffer.of(bytearray(data))
        pos = 0
        while pos < len(data):
            left = len(data) - pos
            if left < per_write and carry_on:
                job.carry = data[pos:]  # CAT: to the next segment
                return
            length = min(per_write, left)
            self._write_records(job, plan, tape, buf.sub(pos, length), length, record, fixed=fixed)
            pos += length

    def _stream_to_discard(self, job: CopyJob, plan: _Plan) -> None:
        """06h (SPC-4 6.4.6.10): read NUMBER OF BYTES from the stream device and drop
        them. A filemark or end of data first is COPY ABORTED, COPY TARGET DEVICE DATA
        UNDERRUN with the tape's sense; what a last record brings beyond the count is
        held for the next segment (CAT), dropped (PAD on the source CSCD) or an
        UNEXPECTED INEXACT SEGMENT, as for 01h."""
        seg: StreamToDiscard = plan.segment
        tape: StreamPort = plan.source
        total = seg.byte_count
        held = job.carry
        job.carry = b""
        done = min(len(held), total)
        carry_on = seg.cat and not plan.last
        if done < len(held) and carry_on:
            job.carry = held[done:]
        if done == total:
            return
        per_read, _ = self._stream_writes(plan.source_cscd, tape, seg.stream_transfer_length,
                                         plan)
        if not per_read:
            raise CopyAborted(Asc.INVALID_FIELD_IN_PARAMETER_LIST, plan.index,
                              byte=plan.segment.transfer_length_offset())
        whole_records = carry_on or bool(plan.source_cscd and plan.source_cscd.pad)
        buf = DataBuffer.allocate(per_read)
        while done < total:
            want = per_read if whole_records else min(per_read, total - done)
            with self._device_errors(job, plan, source=True):
                n = _read_stream(tape, buf, want, plan)
            if seg.HOLDS_DATA:
                job.hold(buf, min(n, total - done))
            if done + n > total and carry_on:
                job.carry = buf.sub(total - done, done + n - total).tobytes()
            done += n

    def _tape_operation(self, job: CopyJob, plan: _Plan) -> None:
        """10h, 11h, 12h (SPC-4 6.4.6.18 to 6.4.6.20): WRITE FILEMARKS, SPACE or LOCATE
        on the stream device. A stop short (a filemark or end of data met while spacing,
        a locate past end of data, the end of the medium) is COPY ABORTED with the
        tape's own sense kept for FAILED SEGMENT DETAILS. Bytes a previous segment held
        with CAT would have to be written before them: UNEXPECTED INEXACT SEGMENT."""
        seg = plan.segment
        tape: StreamPort = plan.destination
        if job.carry:
            raise CopyAborted(Asc.UNEXPECTED_INEXACT_SEGMENT, plan.index,
                              byte=SEGMENT_HEADER.offset("type_code"),
                              message=f"{len(job.carry)} bytes held by CAT before "
                                      f"{seg.describe()}")
        with self._device_errors(job, plan, source=False):
            if isinstance(seg, WriteFilemarks):
                _quiet_early_warning(tape.write_filemarks, seg.count, immed=seg.immed)
            elif isinstance(seg, Space):
                tape.space(seg.code, seg.count)
            else:
                tape.locate(cast(Locate, seg).logical_object_identifier)

    def _block_to_block(self, job: CopyJob, plan: _Plan) -> None:
        seg: BlockToBlock = plan.segment
        src: BlockPort = plan.source
        dst: BlockPort = plan.destination
        total = _segment_bytes(seg, src, dst)
        step = max(self.chunk // src.block_size // dst.block_size, 1) * src.block_size * \
            dst.block_size
        s, d = seg.source_lba * src.block_size, seg.destination_lba * dst.block_size
        done = self._kernel_to_block(job, plan, s, d, total, step)
        s, d, total = s + done, d + done, total - done
        pieces = [(s + done, min(step, total - done)) for done in range(0, total, step)]
        if not pieces:
            return
        with self._read_ahead(job, plan, pieces, min(step, total) or 1, s, d, total) as ahead:
            for pos, n in pieces:
                with self._device_errors(job, plan, source=True):
                    buf = ahead.next()
                if seg.HOLDS_DATA:
                    job.hold(buf, n)
                self._write_disk(job, plan, dst, (d + pos - s) // dst.block_size, buf, n)
                ahead.done()

    def _kernel_to_block(self, job: CopyJob, plan: _Plan, s: int, d: int, total: int,
                         step: int) -> int:
        """The pieces of :meth:`_block_to_block` copied by the kernel from the source's
        file into the destination's (``write_from_file``), where both ends are files,
        the segment holds no data and the two ranges are not of one device and
        overlapping: the same blocks, counts, digest and errors as READs and WRITEs of
        ``step`` bytes. The bytes done; where the kernel does not copy, the rest is left
        to the caller's buffers."""
        src, dst = plan.source, plan.destination
        if not (self.kernel_copy and hasattr(src, "file_range")
                and hasattr(dst, "write_from_file")) or plan.segment.HOLDS_DATA \
                or (_same_device(src, dst) and s < d + total and d < s + total):
            return 0
        done = 0
        while done < total:
            n = min(step, total - done)
            try:
                with self._device_errors(job, plan, source=False):
                    dst.write_from_file(src, s + done, (d + done) // dst.block_size,
                                        n // dst.block_size,
                                        seen=functools.partial(_hash_now, job))
            except KernelCopyFailed as e:
                self._kernel_stopped(job, src, dst, done, e)
                break
            job.operations += 1  # the READ (the WRITE counted above)
            job.transferred += n
            done += n
        return done

    def _block_to_block_offset(self, job: CopyJob, plan: _Plan) -> None:
        """0Ah (SPC-4 6.4.6): BYTE COUNT bytes from a byte offset into the source's block
        at its LBA to a byte offset into the destination's; bytes of a first or last
        destination block outside the range keep their data."""
        seg: BlockToBlockOffset = plan.segment
        src: BlockPort = plan.source
        dst: BlockPort = plan.destination
        s = seg.source_lba * src.block_size + seg.source_byte_offset
        d = seg.destination_lba * dst.block_size + seg.destination_byte_offset
        pieces, done = [], 0
        while done < seg.byte_count:
            n = min(self.chunk, seg.byte_count - done)
            end = (d + done + n) // dst.block_size * dst.block_size
            if done + n < seg.byte_count and end > d + done:
                n = end - d - done  # a write ends on a destination block boundary
            pieces.append((s + done, n))
            done += n
        size = max((n for _, n in pieces), default=1)
        with self._read_ahead(job, plan, pieces, size, s, d, seg.byte_count) as ahead:
            for pos, n in pieces:
                data = self._take(job, plan, ahead, n)
                self._write_range(job, plan, dst, d + pos - s, data, n)
                ahead.done()

    def _read_ahead(self, job: CopyJob, plan: _Plan, pieces: list[tuple[int, int]],
                    size: int, src_pos: int, dst_pos: int, total: int) -> ReadAhead:
        """The segment's source ``pieces`` read ahead (:mod:`lio_xcopy.copy.readahead`),
        except where a piece would be read before an earlier piece's write changes it
        (source and destination the same device, the byte ranges overlapping) or could
        invalidate it (a ROD token's ROD, SPC-4 5.17.4.3, whose source the copy may
        write): there each is read when taken, as without read-ahead."""
        src, dst = plan.source, plan.destination
        same = isinstance(src, RodSource) or (
            _same_device(src, dst) and src_pos < dst_pos + total and dst_pos < src_pos + total)
        return ReadAhead(lambda pos, n, into: _read_bytes(src, pos, n, into), pieces, size,
                         0 if same else self.read_ahead, digest=job.digest,
                         name=f"xcopy-read-{job.lun}-{job.list_id}",
                         allocate=functools.partial(job.scratch, "read-ahead"))

    def _take(self, job: CopyJob, plan: _Plan, ahead: ReadAhead, n: int,
              into: DataBuffer | None = None) -> DataBuffer:
        """The next ``n`` bytes read from the block device (into ``into`` when given),
        one READ of the source as the copy would send it now; held for the application
        client when the segment holds data (0Bh, 0Dh)."""
        with self._device_errors(job, plan, source=True):
            data = ahead.next(into)
        if plan.segment.HOLDS_DATA:
            job.hold(data, n)
        return data

    def _write_range(self, job: CopyJob, plan: _Plan, dst: BlockPort, pos: int,
                     buf: DataBuffer, n: int) -> None:
        """Write ``n`` bytes of ``buf`` at byte ``pos`` of the block device; a first or
        last block written in part is read first, so its other bytes keep their data."""
        bs = dst.block_size
        first, skip = divmod(pos, bs)
        if not skip and not n % bs:
            self._write_disk(job, plan, dst, first, buf, n)
            return
        blocks = -(-(skip + n) // bs)
        whole = DataBuffer.allocate(blocks * bs)
        with self._device_errors(job, plan, source=False):
            if skip:
                dst.read_blocks(first, 1, whole)
            if (skip + n) % bs and not (blocks == 1 and skip):
                dst.read_blocks(first + blocks - 1, 1, whole.sub((blocks - 1) * bs))
            whole.copy_in(buf.tobytes(n), skip)
            dst.write_blocks(first, blocks, whole)
        job.moved(buf, n)

    def _verify_cscd(self, job: CopyJob, plan: _Plan) -> None:
        """07h (SPC-4 6.4.6): the CSCD was reached and identified when the list was
        checked; with TUR set it must also answer TEST UNIT READY with GOOD, else COPY
        ABORTED with its own additional sense code (e.g. MEDIUM NOT PRESENT) and its
        sense kept for FAILED SEGMENT DETAILS."""
        seg: VerifyCscd = plan.segment
        check = getattr(plan.source, "check_ready", None)
        if not seg.tur or check is None:
            return
        with self._device_errors(job, plan, source=True):
            check()

    def _tape_image_copy(self, job: CopyJob, plan: _Plan) -> None:
        """13h (SPC-4 6.4.6): from both tapes' positions, each logical block read from
        the source is written to the destination as one of the same length and each
        filemark as a filemark, until the source's end of data, or until COUNT
        consecutive filemarks have been copied (COUNT zero: end of data only). A block
        longer than the MAXIMUM STREAM DEVICE TRANSFER SIZE is UNEXPECTED INEXACT
        SEGMENT; a residual held by CAT before it, the same."""
        seg: TapeImageCopy = plan.segment
        src: StreamPort = plan.source
        dst: StreamPort = plan.destination
        if job.carry:
            raise CopyAborted(Asc.UNEXPECTED_INEXACT_SEGMENT, plan.index,
                              byte=SEGMENT_HEADER.offset("type_code"),
                              message=f"{len(job.carry)} bytes held by CAT before "
                                      f"{seg.describe()}")
        size = src.block_length or self.limits.max_stream_transfer
        bufs = _Alternating(size, job.digest)
        filemarks = 0
        while True:
            buf = bufs.next()
            with self._device_errors(job, plan, source=True):
                n = _read_image_block(src, buf, size, plan)
            if n is None:  # end of data
                return
            with self._device_errors(job, plan, source=False):
                if n < 0:
                    _quiet_early_warning(dst.write_filemarks, 1)
                else:
                    _quiet_early_warning(dst.write_record, buf, n)
            if n >= 0:
                job.moved(buf, n)
                filemarks = 0
                continue
            filemarks += 1
            if seg.count and filemarks >= seg.count:
                return

    def _write_disk(self, job: CopyJob, plan: _Plan, dst: BlockPort, lba: int,
                    buf: DataBuffer, n: int) -> None:
        """Write ``n`` bytes of ``buf`` at ``lba`` and count them; a failed write still
        counts the blocks before the LBA its INFORMATION names (MEDIUM ERROR, DATA
        PROTECT), or else the whole blocks the port says it wrote (``transferred``),
        which reached the disk (COPY STATUS: the data written to the destination,
        SPC-4 r31 6.18.3)."""
        try:
            with self._device_errors(job, plan, source=False):
                dst.write_blocks(lba, n // dst.block_size, buf)
        except CopyAborted as e:
            cause, failed = e.cause, e.__cause__
            if cause is not None and cause.key in (SenseKey.MEDIUM_ERROR, SenseKey.DATA_PROTECT) \
                    and cause.information is not None \
                    and lba < cause.information < lba + n // dst.block_size:
                job.moved(buf, (cause.information - lba) * dst.block_size)
            elif isinstance(failed, CheckCondition) and failed.transferred:
                job.moved(buf, min(failed.transferred, n) // dst.block_size * dst.block_size)
            raise
        job.moved(buf, n)

    def _stream_writes(self, cscd: IdentificationCscd | None, tape: StreamPort,
                       transfer_length: int, plan: _Plan, role: str = "source"
                       ) -> tuple[int, bool]:
        """(bytes per WRITE, fixed): the CSCD's FIXED bit makes TRANSFER LENGTH a block
        count of STREAM BLOCK LENGTH (SPC-4 6.4.5.4), else a byte count. More than the
        MAXIMUM STREAM DEVICE TRANSFER SIZE we report (SPC-4 r31 6.18.4) is refused."""
        if cscd is not None and cscd.fixed:
            n, fixed = transfer_length * cscd.block_length, True
        elif cscd is None and tape.block_length:
            n, fixed = transfer_length * tape.block_length, True
        else:
            n, fixed = transfer_length, False
        if n > self.limits.max_stream_transfer:
            raise CopyAborted(Asc.INVALID_FIELD_IN_PARAMETER_LIST, plan.index,
                              byte=plan.segment.transfer_length_offset(role),
                              message=f"{n} bytes per stream transfer exceed "
                                      f"{self.limits.max_stream_transfer}")
        return n, fixed

    def _block_to_stream(self, job: CopyJob, plan: _Plan) -> None:
        """00h, 0Bh and 08h (SPC-4 6.4.6): blocks (from a byte offset into the first, for
        08h) read from the block device and written to the stream device in records of
        the STREAM DEVICE TRANSFER LENGTH."""
        seg: BlockToStream | BlockToStreamOffset = plan.segment
        src: BlockPort = plan.source
        tape: StreamPort = plan.destination
        cscd = plan.destination_cscd
        per_write, fixed = self._stream_writes(cscd, tape, seg.stream_transfer_length, plan)
        record = (cscd.block_length if cscd else tape.block_length) if fixed else per_write
        if isinstance(seg, BlockToStreamOffset):
            start = seg.lba * src.block_size + seg.block_byte_offset
            total, count_byte = seg.byte_count, seg.field_offset("byte_count")
        else:
            start, total, count_byte = seg.lba * src.block_size, seg.number_of_blocks * \
                src.block_size, seg.field_offset("number_of_blocks")
        if not record or not per_write:
            raise CopyAborted(Asc.INVALID_FIELD_IN_PARAMETER_LIST, plan.index,
                              byte=plan.segment.transfer_length_offset())
        pad = cscd is not None and cscd.pad
        carry_on = seg.cat and not plan.last
        if fixed and (total + len(job.carry)) % record and not (pad or carry_on):
            raise CopyAborted(Asc.UNEXPECTED_INEXACT_SEGMENT, plan.index, byte=count_byte)
        span = max(per_write, self.chunk) // src.block_size * src.block_size or src.block_size
        done = self._kernel_to_stream(job, plan, start, total, span, per_write, record)
        start, total = start + done, total - done
        if not total:
            return
        staging = _Staging(2 * max(span, per_write) + record + len(job.carry), job.digest,
                           job)
        staging.put(job.carry)
        job.carry = b""
        pieces = [(start + read, min(span, total - read)) for read in range(0, total, span)]
        with ReadAhead(lambda pos, n, into: _read_bytes(src, pos, n, into), pieces,
                       min(span, total) or 1, self.read_ahead, digest=job.digest,
                       name=f"xcopy-read-{job.lun}-{job.list_id}",
                       allocate=functools.partial(job.scratch, "read-ahead")) as ahead:
            self._stage_to_stream(job, plan, ahead, staging, total, span, per_write, record,
                                  fixed=fixed, carry_on=carry_on)

    def _kernel_to_stream(self, job: CopyJob, plan: _Plan, start: int, total: int, span: int,
                          per_write: int, record: int) -> int:
        """The whole chunks of :meth:`_block_to_stream` copied by the kernel from the
        block device's file into the tape's (``write_records_from``, several chunks in a
        call), where both ends are files and the segment holds no data: the same
        records, counts, digest and errors as READs of ``span`` bytes and WRITEs of
        ``per_write``. The bytes done;
        where the kernel does not copy, the rest is left to the caller's buffers."""
        src, tape = plan.source, plan.destination
        if not (self.kernel_copy and hasattr(src, "file_range")
                and hasattr(tape, "write_records_from")) \
                or plan.segment.HOLDS_DATA or job.carry or span % per_write or per_write % record:
            return 0
        done = 0
        group = max(span, KERNEL_SPAN // span * span)
        while done < total:
            n = min(group, total - done)
            if n % per_write:
                n -= n % span  # a WRITE in part: padded or carried on by the caller
                if not n:
                    break
            try:
                with self._device_errors(job, plan, source=False):
                    try:
                        _quiet_early_warning(tape.write_records_from, src,
                                             start + done, record, n // record,
                                             seen=functools.partial(_hash_now, job))
                    except CheckCondition as e:  # the READs and each WRITE done
                        moved = e.transferred or 0
                        job.operations += moved // span + 1 + moved // per_write
                        job.transferred += moved
                        raise
            except KernelCopyFailed as e:
                self._kernel_stopped(job, src, tape, done, e)
                break
            # a READ per chunk and the WRITEs, one counted by _device_errors
            job.operations += -(-n // span) + n // per_write - 1
            job.transferred += n
            done += n
        return done

    @staticmethod
    def _kernel_stopped(job: CopyJob, src: Port, dst: Port, done: int,
                        e: KernelCopyFailed) -> None:
        log.info("copy %s/%d: %s to %s is copied through the daemon from byte %d on: %s",
                 job.lun, job.list_id, src.name, dst.name, done, e)

    def _stage_to_stream(self, job: CopyJob, plan: _Plan, ahead: ReadAhead, staging: _Staging,
                         total: int, span: int, per_write: int, record: int, *, fixed: bool,
                         carry_on: bool) -> None:
        """The loop of :meth:`_block_to_stream`: read into ``staging`` while it holds
        less than a WRITE, write whole WRITEs from its front. Read ahead, a chunk that
        finds ``staging`` empty is written from the read-ahead's buffer, only what is
        left of it (less than a WRITE) put in ``staging``: the same WRITEs."""
        tape: StreamPort = plan.destination
        read = 0
        while read < total or len(staging):
            if read == total and len(staging) < per_write and carry_on:
                job.carry = staging.head(len(staging)).tobytes()  # CAT: to the next segment
                break
            if read < total and len(staging) < per_write:
                n = min(span, total - read)
                read += n
                if len(staging) or not self.read_ahead:
                    self._take(job, plan, ahead, n, staging.room(n))
                    staging.filled(n)
                    continue
                data = self._take(job, plan, ahead, n)
                pos = self._write_whole(job, plan, tape, data, n, per_write, record,
                                        fixed=fixed)
                if pos < n:
                    staging.put(data.sub(pos, n - pos).tobytes())
                ahead.done()
                continue
            length = min(per_write, len(staging))
            if len(staging) >= 2 * per_write and hasattr(tape, "write_records"):
                length = len(staging) // per_write * per_write
                self._write_batch(job, plan, tape, staging.head(length), record if fixed
                                  else per_write, per_write, length)
            else:
                self._write_records(job, plan, tape, staging.head(length), length, record,
                                    fixed=fixed)
            staging.consume(length)

    def _write_whole(self, job: CopyJob, plan: _Plan, tape: StreamPort, data: DataBuffer,
                     n: int, per_write: int, record: int, *, fixed: bool) -> int:
        """The whole WRITEs of ``per_write`` bytes in the first ``n`` bytes of ``data``,
        as :meth:`_stage_to_stream` sends them from its staging; the bytes written."""
        pos = 0
        while n - pos >= per_write:
            length = per_write
            if n - pos >= 2 * per_write and hasattr(tape, "write_records"):
                length = (n - pos) // per_write * per_write
                self._write_batch(job, plan, tape, data.sub(pos, length), record if fixed
                                  else per_write, per_write, length)
            else:
                self._write_records(job, plan, tape, data.sub(pos, length), length, record,
                                    fixed=fixed)
            pos += length
        return pos

    def _write_records(self, job: CopyJob, plan: _Plan, tape: StreamPort, data: DataBuffer,
                       length: int, record: int, *, fixed: bool) -> None:
        """One stream WRITE's worth of ``data``: records of ``record`` bytes in fixed
        mode, the last filled with zeros (PAD), or one record of ``length`` bytes."""
        whole = length // record * record if fixed else length
        with self._device_errors(job, plan, source=False):
            for off in range(0, whole, record):  # each record counts once it is on tape
                _quiet_early_warning(tape.write_record, data, min(record, whole - off),
                                     start=off)
                job.moved(data.sub(off), min(record, whole - off))
            if whole < length:  # PAD: the last fixed block is filled with zeros
                last = DataBuffer.allocate(record)
                last.copy_in(data.sub(whole).tobytes())
                _quiet_early_warning(tape.write_record, last, record)
                job.moved(data.sub(whole), length - whole)

    def _write_batch(self, job: CopyJob, plan: _Plan, tape: StreamPort, data: DataBuffer,
                     record: int, per_write: int, length: int) -> None:
        """``length`` bytes of ``data`` (whole WRITEs of ``per_write`` bytes) as records
        of ``record`` bytes, as those WRITE commands would leave them (SSC-4 6.8) but in
        one vector write (``write_records``): each record counts once it is on tape,
        also those before a VOLUME OVERFLOW; each WRITE that would have ended GOOD
        counts in the OPERATION COUNTER (SPC-4 6.24)."""
        with self._device_errors(job, plan, source=False):
            try:
                _quiet_early_warning(tape.write_records, data, record, length // record)  # type: ignore[attr-defined]
            except CheckCondition as e:
                if e.transferred:
                    job.operations += e.transferred // per_write
                    job.moved(data, e.transferred)
                raise
            job.operations += length // per_write - 1
            job.moved(data, length)

    def _read_batch(self, job: CopyJob, plan: _Plan, tape: StreamPort, room: DataBuffer,
                    record: int, most: int) -> int:
        """Records of exactly ``record`` bytes, as many as fit ``most`` bytes, read into
        ``room`` as one READ each would (SSC-4 6.4) but in one vector read
        (``read_records``), stopping before any other object; the bytes read."""
        with self._device_errors(job, plan, source=True):
            k: int = tape.read_records(room, record, most // record)  # type: ignore[attr-defined]
            job.operations += k - 1  # one READ per record (SPC-4 6.24)
        return k * record

    def _stream_to_block(self, job: CopyJob, plan: _Plan) -> None:
        """01h, 0Ch and 09h (SPC-4 6.4.6): records read from the stream device written to
        the block device (from a byte offset into the first block, for 09h: the bytes of
        a first or last block outside the range keep their data)."""
        seg: StreamToBlock | StreamToBlockOffset = plan.segment
        tape: StreamPort = plan.source
        dst: BlockPort = plan.destination
        per_read, _ = self._stream_writes(plan.source_cscd, tape, seg.stream_transfer_length,
                                         plan)
        if not per_read:
            raise CopyAborted(Asc.INVALID_FIELD_IN_PARAMETER_LIST, plan.index,
                              byte=plan.segment.transfer_length_offset())
        bs = dst.block_size
        by_bytes = isinstance(seg, StreamToBlockOffset)
        if isinstance(seg, StreamToBlockOffset):
            start, total = seg.lba * bs + seg.block_byte_offset, seg.byte_count
        else:
            start, total = seg.lba * bs, seg.number_of_blocks * bs
        flush_at = max(self.chunk, per_read) // bs * bs or bs
        written = 0 if by_bytes else self._kernel_from_stream(job, plan, start, total,
                                                              flush_at, per_read)
        if written == total:
            return
        staging = _Staging(2 * max(flush_at, per_read) + bs + len(job.carry), job.digest,
                           job)
        taken = written + len(job.carry)  # bytes of the segment's count in hand or written
        staging.put(job.carry)
        job.carry = b""
        # CAT holds what a last record brings beyond the segment for the next one; PAD
        # on the source discards it; otherwise a longer record is an inexact segment
        carry_on = seg.cat and not plan.last
        whole_records = carry_on or bool(plan.source_cscd and plan.source_cscd.pad)

        def flush(n: int) -> None:
            nonlocal written
            self._write_range(job, plan, dst, start + written, staging.head(n), n)
            staging.consume(n)
            written += n

        while written < total:
            need = min(flush_at, total - written)
            if len(staging) < need:
                want = per_read if whole_records else min(per_read,
                                                          total - written - len(staging))
                most = (need - len(staging)) // per_read * per_read
                batch = want == per_read and most >= 2 * per_read and \
                    hasattr(tape, "read_records")
                room = staging.room(most if batch else want)
                try:
                    got = self._read_batch(job, plan, tape, room, per_read, most) if batch else 0
                    if not got:
                        with self._device_errors(job, plan, source=True):
                            got = _read_stream(tape, room, want, plan)
                except CopyAborted:
                    n = min(len(staging), total - written)
                    n = n if by_bytes else n // bs * bs
                    if n:  # what was read reaches the disk first
                        flush(n)
                    raise
                staging.filled(got)
                if seg.HOLDS_DATA:
                    job.hold(room, min(got, total - taken))
                taken += got
                continue
            end = (start + written + need) // bs * bs
            if written + need < total and end > start + written:
                need = end - start - written  # a flush ends on a block boundary
            flush(need)
        if carry_on and len(staging):
            job.carry = staging.head(len(staging)).tobytes()

    def _kernel_from_stream(self, job: CopyJob, plan: _Plan, start: int, total: int,
                            flush_at: int, per_read: int) -> int:
        """The flushes of :meth:`_stream_to_block` whose records are all of ``per_read``
        bytes, copied by the kernel from the cartridge's file into the block device's
        (``read_records_to``), where both ends are files, the segment holds no data and
        nothing is carried in: the same blocks, counts, digest and errors as a READ per
        record and a WRITE per ``flush_at`` bytes. The bytes done; the first flush that
        is not such records (a filemark, a record of another length, the end of the
        segment in part) and the rest are left to the caller's buffers."""
        tape, dst = plan.source, plan.destination
        if not (self.kernel_copy and hasattr(tape, "read_records_to")
                and hasattr(dst, "kernel_write")) or plan.segment.HOLDS_DATA or job.carry:
            return 0
        done = 0
        while done < total:
            need = min(flush_at, total - done)
            if need % per_read or need < 2 * per_read:
                break
            try:
                with self._device_errors(job, plan, source=True):
                    k = tape.read_records_to(dst, (start + done) // dst.block_size, per_read,
                                             need // per_read,
                                             seen=functools.partial(_hash_now, job))
            except KernelCopyFailed as e:
                self._kernel_stopped(job, tape, dst, done, e)
                break
            if not k:
                job.operations -= 1  # nothing was read: not a command that completed
                break
            job.operations += k  # a READ per record and the WRITE, one counted above
            job.transferred += need
            done += need
        return done

    def _stream_to_stream(self, job: CopyJob, plan: _Plan) -> None:
        seg: StreamToStream = plan.segment
        src: StreamPort = plan.source
        dst: StreamPort = plan.destination
        per_read, _ = self._stream_writes(plan.source_cscd, src, seg.source_transfer_length,
                                         plan)
        per_write, _ = self._stream_writes(plan.destination_cscd, dst,
                                           seg.destination_transfer_length, plan, "destination")
        if not per_read or not per_write:
            raise CopyAborted(Asc.INVALID_FIELD_IN_PARAMETER_LIST, plan.index,
                              byte=plan.segment.transfer_length_offset())
        span = max(per_read, per_write, self.chunk)  # bytes read before they are written
        total = seg.byte_count
        done = 0
        equal = per_read == per_write and not job.carry and not _same_device(src, dst)
        batch, whole = span // per_read * per_read, total // per_read * per_read
        if equal:
            done = self._kernel_stream_to_stream(job, plan, batch, per_read, whole)
        if equal and self.read_ahead and hasattr(src, "read_records") \
                and hasattr(dst, "write_records") and done < whole:
            done += self._records_ahead(job, plan, batch, per_read, whole - done)
        staging = _Staging(2 * span + per_read + len(job.carry), job.digest, job)
        staging.put(job.carry)
        job.carry = b""
        while done < total:
            if len(staging) < min(per_write, total - done):
                want = min(per_read, total - done - len(staging))
                most = min(span, total - done) - len(staging)
                most -= most % per_read
                batch = want == per_read and most >= 2 * per_read and \
                    hasattr(src, "read_records")
                room = staging.room(most if batch else want)
                got = self._read_batch(job, plan, src, room, per_read, most) if batch else 0
                if not got:
                    with self._device_errors(job, plan, source=True):
                        got = _read_stream(src, room, want, plan)
                staging.filled(got)
                if seg.HOLDS_DATA:
                    job.hold(room, got)
                continue
            n = min(per_write, len(staging), total - done)
            if len(staging) >= 2 * per_write and total - done >= 2 * per_write and \
                    hasattr(dst, "write_records"):
                n = min(len(staging), total - done) // per_write * per_write
                self._write_batch(job, plan, dst, staging.head(n), per_write, per_write, n)
            else:
                with self._device_errors(job, plan, source=False):
                    _quiet_early_warning(dst.write_record, staging.head(n), n)
                job.moved(staging.head(n), n)
            staging.consume(n)
            done += n

    def _kernel_stream_to_stream(self, job: CopyJob, plan: _Plan, span: int, record: int,
                                 total: int) -> int:
        """Of 06h and 0Fh (SPC-4 6.4.6): the first ``total`` bytes, whole records of
        ``record`` bytes written as records of the same length, copied by the kernel
        from one cartridge's file into the other's in batches of :data:`KERNEL_SPAN`
        bytes, ``span`` at least (``copy_records_to``), where both tapes are files and
        the segment holds no data: the same records, counts, digest and positions as a
        READ and a WRITE per record. It stops, the bytes done, at the first batch that
        is not all such records or does not all fit; the caller moves the rest."""
        src, dst = plan.source, plan.destination
        if not (self.kernel_copy and hasattr(src, "copy_records_to")
                and hasattr(dst, "copy_records_to")) or plan.segment.HOLDS_DATA:
            return 0  # both ends our own cartridges
        done = 0
        group = max(span, KERNEL_SPAN // record * record)
        while done < total:
            n = min(group, total - done)
            try:
                with self._device_errors(job, plan, source=False):
                    k: int = src.copy_records_to(dst, record, n // record,
                                                 seen=functools.partial(_hash_now, job))
            except KernelCopyFailed as e:
                self._kernel_stopped(job, src, dst, done, e)
                break
            job.operations += 2 * k - 1  # a READ and a WRITE per record, one counted above
            job.transferred += k * record
            done += k * record
            if k * record < n:
                break
        return done

    def _records_ahead(self, job: CopyJob, plan: _Plan, span: int, record: int,
                       total: int) -> int:
        """Of 06h and 0Fh (SPC-4 6.4.6): the first ``total`` bytes, whole records of
        ``record`` bytes written as records of the same length, read ahead from the
        source tape in batches of ``span`` bytes (:mod:`lio_xcopy.copy.readahead`) while
        the one before is written. Reading stops at the first object that is not such a
        record (a filemark, end of data, a record of another length), which the caller
        then reads as it would without read-ahead; the bytes done. A copy that stops
        early spaces the source back over the records read ahead and not written, so it
        is left where the copy would have left it (SSC-4 7.2: SPACE)."""
        src: StreamPort = plan.source
        dst: StreamPort = plan.destination
        counts: deque[int] = deque()  # records in each batch read, in order
        short = False

        def read(_pos: int, n: int, into: DataBuffer) -> None:
            nonlocal short
            if short:
                raise _NotRead
            k: int = src.read_records(into, record, n // record)  # type: ignore[attr-defined]
            counts.append(k)
            short = k * record < n

        done = 0
        pieces = [(pos, min(span, total - pos)) for pos in range(0, total, span)]
        ahead = ReadAhead(read, pieces, min(span, total) or 1, self.read_ahead,
                          digest=job.digest, name=f"xcopy-read-{job.lun}-{job.list_id}",
                          allocate=functools.partial(job.scratch, "read-ahead"))
        try:
            for _, n in pieces:
                with self._device_errors(job, plan, source=True):
                    data = ahead.next()
                k = counts.popleft()
                job.operations += k - 1  # one READ per record (SPC-4 6.24)
                if plan.segment.HOLDS_DATA:
                    job.hold(data, k * record)
                if k:
                    if k > 1:
                        self._write_batch(job, plan, dst, data, record, record, k * record)
                    else:
                        with self._device_errors(job, plan, source=False):
                            _quiet_early_warning(dst.write_record, data, record)
                        job.moved(data, record)
                    done += k * record
                ahead.done()
                if k * record < n:
                    break
        finally:
            ahead.close()
            unread = sum(counts)
            if unread:
                _space_back(src, unread, job)
        return done

    # --- RECEIVE COPY RESULTS, SPC-4 r31 6.18 ------------------------------------------------
    def _held_data(self, job: CopyJob, cdb: Any, sa: int,
                   status: xcopy.CopyStatusLid4, room: int | None) -> bytes:
        """RECEIVE DATA (SPC-4 r31 6.18.2; RECEIVE COPY DATA(LID1) in r37) or RECEIVE
        COPY DATA(LID4) (SPC-4 6.20, HDD in byte 5): the data the copy's 0Bh-0Fh
        segments held, the most recent HELD DATA LIMIT bytes. Once the whole of it has
        been returned (within the ALLOCATION LENGTH and the ``room`` of the Data-In
        buffer, which a transport may give shorter), or an ALLOCATION LENGTH of zero
        asks for none, it is discarded (a later request gets none)."""
        with self._lock:
            held = bytes(job.held)
            if sa == xcopy.ReceiveCopyResultsReceiveData.SERVICE_ACTION:
                data = xcopy.ReceivedData(held).encode()
            else:
                data = xcopy.CopyDataLid4(dataclasses.replace(
                    status, held_data_discarded=job.held_discarded), held).encode()
                if status.status != xcopy.CopyOperationStatus.COMPLETED:
                    return data  # no held data returned: nothing to discard
            returned = min(cdb.allocation_length,
                           cdb.allocation_length if room is None else room)
            if cdb.allocation_length == 0 or returned >= len(data):
                job.held = bytearray()
        return data


    def receive_copy_results(self, receiving: LogicalUnit, cdb: Any, *,
                             room: int | None = None) -> bytes:
        """COPY STATUS, FAILED SEGMENT DETAILS and OPERATING PARAMETERS (SPC-4 6.18), and
        RECEIVE COPY DIGEST, for a list identifier of a copy the LUN received. ``room``:
        the length of the Data-In buffer, if known (held data is discarded only once
        the whole of it reached the initiator).

        Results are held per LUN and list identifier, not per I_T nexus as SPC-4 6.4.3.2
        scopes list identifiers: TCMU passes the daemon the CDB and data but not the
        nexus, so any initiator of the LUN can read another's results by list
        identifier. A finished copy's results are held for HELD_RESULTS_SECONDS (SPC-4:
        a vendor-specific period) and at most HELD_RESULTS per LUN; a copy sent with
        LIST ID USAGE 11b holds none. A list identifier with no held results is
        ILLEGAL REQUEST, INVALID FIELD IN CDB.
        """
        sa = cdb.SERVICE_ACTION
        if sa == xcopy.ReceiveCopyResultsOperatingParameters.SERVICE_ACTION:
            return xcopy.operating_parameters_data(self.limits)
        with self._lock:
            self._expire()
            job = self._jobs.get(receiving.identity.name, {}).get(cdb.list_identifier)
        if job is None and sa == xcopy.ReceiveCopyStatusLid4.SERVICE_ACTION and \
                cdb.OPCODE == xcopy.ReceiveCopyStatusLid4.OPCODE:
            # a POPULATE TOKEN or WRITE USING TOKEN (SPC-4 6.24, 5.17.3 table 107)
            rod_status = self.rod.copy_status(receiving, cdb.list_identifier)
            if rod_status is not None:
                return rod_status.encode()
        if job is None:
            raise InvalidFieldInCdb(2, message=f"no copy with list identifier "
                                               f"{cdb.list_identifier}")
        if cdb.OPCODE == xcopy.ReceiveCopyStatusLid4.OPCODE and sa in (
                xcopy.ReceiveCopyStatusLid4.SERVICE_ACTION,
                xcopy.ReceiveCopyDataLid4.SERVICE_ACTION,
                xcopy.ReceiveCopyResultsReceiveData.SERVICE_ACTION):
            status = _copy_status_lid4(job)
            if sa == xcopy.ReceiveCopyStatusLid4.SERVICE_ACTION:
                return status.encode()
            if sa == xcopy.ReceiveCopyResultsReceiveData.SERVICE_ACTION and job.running:
                raise InvalidFieldInCdb(2, message=f"copy {cdb.list_identifier} is still "
                                                   "in progress: no held data yet")
            return self._held_data(job, cdb, sa, status, room)
        if cdb.OPCODE == xcopy.ReceiveCopyDigest.OPCODE:
            done = job.digest.digest() if not job.running else b""
            return xcopy.CopyDigest(job.status, job.transferred, done,
                                    job.digest.algorithm).encode()
        if sa == xcopy.ReceiveCopyResultsCopyStatus.SERVICE_ACTION:
            return xcopy.copy_status_data(job.status, job.segments_processed, job.transferred,
                                          hdd=job.held_discarded)
        if job.service_action != xcopy.ExtendedCopyLid1.SERVICE_ACTION:
            # SPC-4 6.23: details of EXTENDED COPY(LID1) commands only; a LID4 copy's
            # sense is in its COPY STATUS (LID4)
            raise InvalidFieldInCdb(2, message=f"list identifier {cdb.list_identifier} "
                                               "names an EXTENDED COPY (LID4)")
        if job.running or job.status == CopyCommandStatus.COMPLETED:
            return xcopy.failed_segment_details_data(None)
        return xcopy.failed_segment_details_data(0x02, job.sense)


def _copy_status_lid4(job: CopyJob) -> xcopy.CopyStatusLid4:
    """The RECEIVE COPY STATUS(LID4) data of a copy (SPC-4 6.24): in progress in the
    foreground (11h) or background (12h) with the bytes written so far, completed
    (01h, GOOD), completed with errors (02h, CHECK CONDITION with the COPY ABORTED
    sense the copy ended in) or terminated by COPY OPERATION ABORT (60h, TASK ABORTED,
    no sense). The OPERATION COUNTER counts the commands sent to a copy source or
    destination that completed GOOD, wrapping at 16 bits. SEGMENTS PROCESSED counts the
    segment being processed (or the one the copy stopped in), zero before the first."""
    op = xcopy.CopyOperationStatus
    segments = min(job.segments_processed + 1, job.segments) if job.begun else 0
    counter = job.operations & 0xFFFF
    if job.running:
        return xcopy.CopyStatusLid4(
            job.service_action,
            op.IN_PROGRESS_BACKGROUND if job.immed else op.IN_PROGRESS_FOREGROUND,
            job.transferred, segments, operation_counter=counter,
            estimated_status_update_delay=_status_delay(job))
    ended = xcopy.STATUS_UPDATE_DELAY_ENDED
    if job.status == CopyCommandStatus.COMPLETED:
        return xcopy.CopyStatusLid4(job.service_action, op.COMPLETED, job.transferred,
                                    job.segments, GOOD, operation_counter=counter,
                                    estimated_status_update_delay=ended)
    if job.cancelled_by == OPERATION_ABORTED:
        return xcopy.CopyStatusLid4(job.service_action, op.TERMINATED, job.transferred,
                                    segments, TASK_ABORTED, operation_counter=counter,
                                    estimated_status_update_delay=ended)
    sense = job.copy_sense.fixed() if job.copy_sense is not None else b""
    return xcopy.CopyStatusLid4(job.service_action, op.COMPLETED_WITH_ERRORS, job.transferred,
                                segments, CHECK_CONDITION, sense[:255], operation_counter=counter,
                                estimated_status_update_delay=ended)


def _status_delay(job: CopyJob) -> int:
    """ESTIMATED STATUS UPDATE DELAY of a copy in progress (SPC-4 6.24), in ms:
    :data:`STATUS_POLL_MS`, or the time its pace so far says is left when that is
    shorter (at least :data:`STATUS_POLL_MIN_MS`), so that a poller hears of the end
    soon after it rather than up to a whole delay later."""
    moved, planned = job.transferred, job.planned
    elapsed = time.monotonic() - job.started
    if moved <= 0 or planned <= 0 or elapsed <= 0:
        return STATUS_POLL_MS
    left_ms = max(planned - moved, 0) * elapsed * 1000 / moved
    return int(max(STATUS_POLL_MIN_MS, min(STATUS_POLL_MS, left_ms)))


def _segment_bytes(seg: Segment, src: Port | None, dst: Port | None) -> int:
    """Bytes a segment writes to its destination; its type says which ends are block
    ports (SPC-4 6.4.6). Discarding, filemarks and positioning write no data."""
    if isinstance(seg, BlockToBlock):
        return seg.number_of_blocks * cast(BlockPort, dst if seg.dc else src).block_size
    if isinstance(seg, BlockToStream):
        return seg.number_of_blocks * cast(BlockPort, src).block_size
    if isinstance(seg, StreamToBlock):
        return seg.number_of_blocks * cast(BlockPort, dst).block_size
    if isinstance(seg, (StreamToStream, BlockToStreamOffset, StreamToBlockOffset,
                        BlockToBlockOffset)):
        return seg.byte_count
    if isinstance(seg, InlineToStream):
        return seg.number_of_bytes
    if isinstance(seg, EmbeddedToStream):
        return min(seg.embedded_bytes, len(seg.data))
    return 0


def _any_device(port: Port) -> bool:  # noqa: ARG001
    """Any kind of device: a verify CSCD segment (07h) names either."""
    return True


def _end_kinds(seg: Segment) -> tuple[Callable[[Port], bool] | None,
                                      Callable[[Port], bool] | None]:
    """The kind of device each end of a segment must be (SPC-4 6.4.6), source first;
    None where the descriptor names no such end. The held-data forms 0Bh-0Fh are
    subclasses of the segments whose layout they share."""
    if isinstance(seg, (BlockToBlock, BlockToBlockOffset)):
        return is_block, is_block
    if isinstance(seg, (BlockToStream, BlockToStreamOffset)):
        return is_block, is_stream
    if isinstance(seg, (StreamToBlock, StreamToBlockOffset)):
        return is_stream, is_block
    if isinstance(seg, (StreamToStream, TapeImageCopy)):
        return is_stream, is_stream
    if isinstance(seg, StreamToDiscard):
        return is_stream, None
    if isinstance(seg, VerifyCscd):
        return _any_device, None
    return None, is_stream  # 04h, 05h, 10h-12h: a stream destination


def _blocks_spanned(disk: BlockPort, offset: int, count: int) -> int:
    """Blocks from the one at an LBA that hold ``count`` bytes from ``offset`` bytes
    into it (the byte-offset segments 08h-0Ah)."""
    return -(-(offset + count) // disk.block_size) if count else 0


def _read_image_block(tape: StreamPort, buf: DataBuffer, size: int,
                      plan: _Plan) -> int | None:
    """The next logical block of a tape image copy (13h): its length, -1 for a
    filemark, None at end of data. A block longer than ``size`` would be cut: COPY
    ABORTED, UNEXPECTED INEXACT SEGMENT."""
    try:
        return tape.read_record(buf, size)
    except ssc.FilemarkDetected:
        return -1
    except ssc.EndOfData:
        return None
    except ssc.IncorrectLength as e:
        if e.sense.information_signed is not None and e.sense.information_signed < 0:
            raise CopyAborted(Asc.UNEXPECTED_INEXACT_SEGMENT, plan.index,
                              byte=SEGMENT_HEADER.offset("type_code"),
                              cause=e.sense, cause_raw=e.raw_sense,
                              message=f"a block longer than {size} bytes") from e
        return e.transferred or 0


def _without_frames(e: BaseException) -> BaseException:
    """``e`` and the exceptions it was raised from, without their tracebacks: the copy's
    result outlives the copy, and a traceback would keep every frame of the failed
    segment alive with its buffers (megabytes per copy) as long as RECEIVE COPY
    RESULTS remembers it."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        cur.__traceback__ = None
        cur = cur.__cause__ or cur.__context__
    return e


def _quiet_early_warning(write: Any, *args: Any, **kw: Any) -> None:
    """A write past early warning succeeded: go on until the tape is really full."""
    with contextlib.suppress(ssc.EarlyWarning):
        write(*args, **kw)


def _hash_now(job: CopyJob, data: FileData) -> None:
    """Hand ``data`` (a kernel copy's, as the file holds it) to the copy's digest,
    hashed before this returns."""
    now = getattr(job.digest, "update_file", None)
    if now is not None:
        now(data)
        return
    with data.views() as views:
        for view in views:
            job.digest.update(view)


class _Staging:
    """Bytes read from a source and not yet written: filled at the end, drained from
    the front; only a leftover smaller than one transfer is ever moved. It works in two
    buffers in turn, and goes back into one only once ``digest`` has hashed what was
    moved out of it (the digest runs behind the copy, :mod:`lio_xcopy.copy.digest`)."""

    def __init__(self, size: int, digest: Any = None, job: CopyJob | None = None):
        first, second = (job.scratch("staging", 2, size) if job is not None
                         else [memoryview(bytearray(size)) for _ in range(2)])
        self._bufs = (first, second)
        self._tickets = [0, 0]
        self._cur = 0
        self._mv = self._bufs[0]
        self._wait = getattr(digest, "wait", None)
        self._ticket = getattr(digest, "ticket", None)
        self._pos = self._end = 0

    def __len__(self) -> int:
        return self._end - self._pos

    def room(self, n: int) -> DataBuffer:
        if self._end + n > len(self._mv):
            self._switch()
        return DataBuffer([self._mv[self._end : self._end + n]])

    def _switch(self) -> None:
        """Go on in the other buffer, with the leftover at its front."""
        old, k = self._mv, len(self)
        if self._ticket is not None:
            self._tickets[self._cur] = self._ticket()
        self._cur ^= 1
        self._mv = self._bufs[self._cur]
        if self._wait is not None:
            self._wait(self._tickets[self._cur])
        self._mv[:k] = old[self._pos : self._end]
        self._pos, self._end = 0, k

    def filled(self, n: int) -> None:
        self._end += n

    def put(self, data: bytes) -> None:
        if data:
            self.room(len(data)).copy_in(data)
            self.filled(len(data))

    def head(self, n: int) -> DataBuffer:
        return DataBuffer([self._mv[self._pos : self._pos + n]])

    def consume(self, n: int) -> None:
        self._pos += n


class _Alternating:
    """Two buffers of ``size`` bytes used in turn: :meth:`next` hands out the other one
    once ``digest`` has hashed what was moved out of it."""

    def __init__(self, size: int, digest: Any):
        self._bufs = (DataBuffer.allocate(size), DataBuffer.allocate(size))
        self._tickets = [0, 0]
        self._cur = 1
        self._digest = digest

    def next(self) -> DataBuffer:
        self._tickets[self._cur] = self._digest.ticket()
        self._cur ^= 1
        self._digest.wait(self._tickets[self._cur])
        return self._bufs[self._cur]


#: designator types that name one logical unit (SPC-4 7.8.6.1): EUI-64, NAA, SCSI name string
_LU_DESIGNATORS = (2, 3, 8)


class _NotRead(Exception):
    """A batch of records the read-ahead did not read: the one before stopped short."""


def _space_back(tape: StreamPort, records: int, job: CopyJob) -> None:
    """SPACE the source tape back over ``records`` records read ahead and not copied."""
    try:
        tape.space(0, -records)
    except CheckCondition as e:
        log.error("copy %s/%d: the source tape %s could not space back over %d record(s) "
                  "read ahead: %s; it is that many records past where the copy stopped",
                  job.lun, job.list_id, tape.name, records, e)


def _same_device(a: Port, b: Port) -> bool:
    """Whether two copy ends are one device: the same port, or ports reporting a
    logical unit designator in common (two CSCDs may name one device, each with a port
    of its own)."""
    if a is b:
        return True

    def names(p: Port) -> set[tuple[int, bytes]]:
        return {(d.designator_type, bytes(d.value)) for d in p.designators()
                if d.association == 0 and d.designator_type in _LU_DESIGNATORS}

    return bool(names(a) & names(b))


def _read_bytes(src: BlockPort, pos: int, n: int, into: DataBuffer) -> None:
    """``n`` bytes of the block device from byte ``pos`` into the front of ``into``,
    read as the whole blocks that hold them (one READ)."""
    bs = src.block_size
    first, skip = divmod(pos, bs)
    if not skip and not n % bs:
        src.read_blocks(first, n // bs, into)
        return
    blocks = -(-(skip + n) // bs)
    whole = DataBuffer.allocate(blocks * bs)
    src.read_blocks(first, blocks, whole)
    into.copy_in(whole.sub(skip, n).tobytes())


def _read_stream(tape: StreamPort, buf: DataBuffer, want: int, plan: _Plan) -> int:
    """Read one record of at most ``want`` bytes into ``buf``; a shorter record
    is fine (variable mode), a filemark or the end of data before the segment is
    complete aborts the copy with COPY TARGET DEVICE DATA UNDERRUN."""
    try:
        return tape.read_record(buf, want)
    except ssc.IncorrectLength as e:
        if e.sense.information_signed is not None and e.sense.information_signed < 0:
            raise CopyAborted(Asc.UNEXPECTED_INEXACT_SEGMENT, plan.index,
                              byte=plan.segment.transfer_length_offset(),
                              cause=e.sense, cause_raw=e.raw_sense,
                              message="a record longer than the transfer length would be "
                              "cut") from e
        return e.transferred or 0
    except (ssc.FilemarkDetected, ssc.EndOfData) as e:
        raise CopyAborted(Asc.COPY_TARGET_DEVICE_DATA_UNDERRUN, plan.index,
                          byte=plan.segment.transfer_length_offset(),
                          cause=e.sense, cause_raw=e.raw_sense,
                          message=f"{tape.name}: {e}") from e


def _close(ports: list[ForeignPort]) -> None:
    """Release the foreign ports a copy opened."""
    for port in ports:
        try:
            port.close()
        except Exception:  # a failing close must not hide how the copy ended
            log.exception("closing %s failed", port.name)
    ports.clear()
