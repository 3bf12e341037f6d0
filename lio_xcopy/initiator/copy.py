"""``lio-xcopy copy``: one EXTENDED COPY from the backup server, dd-style.

Identifies both logical units (INQUIRY, VPD 83h), reads the copy manager's OPERATING
PARAMETERS, builds a complete parameter list for the segment type the two device types
call for (02h disk->disk, 00h disk->tape, 01h tape->disk, 03h tape->tape), with, to a
tape, a header record from inline data (04h) before and filemarks (10h) after, and sends
it with SG_IO. Where the copy manager lists EXTENDED COPY (LID4) and RECEIVE COPY STATUS
(LID4) (its Third-party Copy VPD page, else REPORT SUPPORTED OPERATION CODES), the list
is a LID4 one with IMMED: the command returns once the list is checked and the copy
runs in the background, polled with RECEIVE COPY STATUS (LID4), so no command waits on
the copy (SPC-4 5.17.4.3, 6.4, 6.24). Otherwise it is a LID1 list, sent on a worker
thread while COPY STATUS is polled on a second file descriptor. ``--emit-plist FILE``
writes the list instead, with the ``sg_raw`` line that sends it.
"""

from __future__ import annotations

import contextlib
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from lio_xcopy.errors import LioXcopyError
from lio_xcopy.initiator.progress import QUIET, make
from lio_xcopy.scsi import spc, tpc_vpd, xcopy
from lio_xcopy.scsi.sense import CHECK_CONDITION, TASK_ABORTED, SenseData, asc_name
from lio_xcopy.scsi.xcopy import (
    BlockToBlock,
    BlockToStream,
    IdentificationCscd,
    InlineToStream,
    ListIdUsage,
    Locate,
    StreamToBlock,
    StreamToStream,
    WriteFilemarks,
)
from lio_xcopy.sg import sgio
from lio_xcopy.sg.transport import ScsiTransport

MAX_BLOCKS_PER_SEGMENT = 0xFFFF  # the 16-bit NUMBER OF BLOCKS of 00h/01h/02h
MAX_BYTES_PER_SEGMENT = 0xFFFFFFFF  # BYTE COUNT of 03h
DEFAULT_RECORD = 65536  # tape record (stream transfer length) when not given
MAX_RECORD = 0xFFFFFF  # the 24-bit STREAM DEVICE TRANSFER LENGTH


class CopyUsageError(LioXcopyError):
    """A bad operand: the message says what to write instead."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One side of the copy, as the initiator identified it."""

    path: str
    device_type: int
    designator: spc.Designator
    block_size: int  # disks: logical block length; tapes: 0
    blocks: int  # disks: capacity in blocks; tapes: 0

    @property
    def is_tape(self) -> bool:
        return self.device_type == spc.TYPE_TAPE

    def cscd(self) -> IdentificationCscd:
        return IdentificationCscd.from_designator(self.designator, self.device_type,
                                                  self.block_size)

    def describe(self) -> str:
        kind = "tape" if self.is_tape else f"disk, {self.blocks} x {self.block_size} B"
        return f"{self.path} ({kind}, NAA {self.designator.value.hex()})"


def identify(dev: ScsiTransport) -> Endpoint:
    pdt = dev.peripheral_device_type()
    if pdt not in (spc.TYPE_DISK, spc.TYPE_TAPE):
        raise CopyUsageError(f"{dev.path}: peripheral device type {pdt:#04x} is neither a "
                             "disk nor a tape")
    ids = [d for d in dev.device_identification() if d.association == 0]
    naa = next((d for d in ids if d.designator_type == 3), None)
    chosen = naa or next((d for d in ids if len(d.value) <= 20), None)
    if chosen is None:
        raise CopyUsageError(f"{dev.path}: its VPD page 83h has no logical unit designator "
                             "short enough for a CSCD descriptor")
    if pdt == spc.TYPE_TAPE:
        return Endpoint(dev.path, pdt, chosen, 0, 0)
    cap = dev.read_capacity16()
    return Endpoint(dev.path, pdt, chosen, cap.block_length, cap.blocks)


#: Unit attentions after which a drive's position is not the one the user set up.
POSITION_LOST = (0x29, 0x28)  # POWER ON, RESET...; NOT READY TO READY CHANGE (new medium)


def _refuse_lost_position(dev: ScsiTransport, ep: Endpoint, seen: list) -> None:
    """Of the unit attentions taken (LUNs added, ...), a tape reset or reloaded since it
    was positioned is refused: the copy writes at the position."""
    for sense in seen:
        if ep.is_tape and sense.asc >> 8 in POSITION_LOST:
            raise CopyUsageError(
                f"{dev.path}: the drive reports UNIT ATTENTION, {asc_name(sense.asc)}: "
                "its position is "
                "not the one you set up; position the tape (mt rewind, mt fsf N) and run "
                "the copy again")


@dataclass(frozen=True, slots=True)
class CopyRequest:
    """The dd-style operands (counts in the disk's blocks; ``record`` in bytes)."""

    count: int | None = None  # disk blocks (tape->tape: bytes)
    skip: int = 0  # source disk blocks
    seek: int = 0  # destination disk blocks
    record: int | None = None  # tape record length (stream transfer length); None: 65536
    header: bytes = b""  # written to the destination tape as one record before the data (04h)
    filemarks: int = 0  # written to the destination tape after the data (10h)
    locate: int | None = None  # logical object the destination tape goes to first (12h)
    lid1: bool = False  # send EXTENDED COPY (LID1) and wait on it even where LID4 is listed


def _refuse_meaningless(src: Endpoint, dst: Endpoint, req: CopyRequest) -> None:
    """skip= and seek= address a disk, a tape is read and written at its position;
    tbs= is a tape's record length."""
    if not src.is_tape and not dst.is_tape and req.record is not None:
        raise CopyUsageError(f"tbs={req.record} is the record length of a tape, and "
                             f"neither {src.path} nor {dst.path} is one: leave tbs= out")
    if src.is_tape and req.skip:
        raise CopyUsageError(f"skip={req.skip}: the source {src.path} is a tape, read from "
                             "its position: position it (mt fsf N) and leave skip= out")
    if dst.is_tape and req.seek:
        raise CopyUsageError(f"seek={req.seek}: the destination {dst.path} is a tape, "
                             "written at its position: position it (mt eod) and leave seek= "
                             "out")


def plan_segments(src: Endpoint, dst: Endpoint, req: CopyRequest,
                  op: xcopy.OperatingParameters) -> list[xcopy.CopySegment]:
    """Cut the copy into segments the copy manager accepts."""
    limit_bytes = op.max_segment_length or MAX_BYTES_PER_SEGMENT
    _refuse_meaningless(src, dst, req)
    record = req.record or DEFAULT_RECORD
    if src.is_tape and dst.is_tape:
        total = req.count
        if not total:
            raise CopyUsageError("tape->tape needs count=BYTES")
        step = min(limit_bytes, MAX_BYTES_PER_SEGMENT) // record * record or record
        return [StreamToStream(0, 1, min(step, total - off), record, record)
                for off in range(0, total, step)]
    disk = dst if src.is_tape else src
    start = req.seek if src.is_tape else req.skip
    name = "seek" if src.is_tape else "skip"
    if start >= disk.blocks:
        raise CopyUsageError(f"{disk.path} has {disk.blocks} blocks: {name}={start} is past "
                             f"its end; give {name}= below {disk.blocks}")
    count = req.count if req.count is not None else disk.blocks - start
    if count <= 0 or start + count > disk.blocks:
        raise CopyUsageError(
            f"{disk.path} has {disk.blocks} blocks: {name}={start} count={count} does not "
            f"fit; give count={disk.blocks - start} or less (in blocks of the disk)")
    per_seg = min(MAX_BLOCKS_PER_SEGMENT, max(limit_bytes // disk.block_size, 1))
    if not src.is_tape and not dst.is_tape:
        if src.block_size != dst.block_size:
            raise CopyUsageError("both disks must have the same block size for a dd-style "
                                 "copy")
        if req.seek + count > dst.blocks:
            raise CopyUsageError(f"{dst.path} has {dst.blocks} blocks: seek={req.seek} "
                                 f"count={count} does not fit")
        return [BlockToBlock(0, 1, min(per_seg, count - i), req.skip + i, req.seek + i)
                for i in range(0, count, per_seg)]
    if (per_seg * disk.block_size) % record:  # keep every record whole
        per_seg = max(per_seg * disk.block_size // record * record
                      // disk.block_size, 1)
    cls = StreamToBlock if src.is_tape else BlockToStream
    return [cls(0, 1, min(per_seg, count - i), start + i, record)
            for i in range(0, count, per_seg)]


#: The segment type each tape operation of a request needs, and the operand that asks
#: for it (SPC-4 6.4.6.8, 6.4.6.18, 6.4.6.20).
TAPE_OPERATIONS = ((InlineToStream, "header="), (WriteFilemarks, "filemark="),
                   (Locate, "locate"))


def _refuse_tape_operations(dst: Endpoint, req: CopyRequest,
                            op: xcopy.OperatingParameters) -> None:
    """A header, filemarks or a locate go to the destination tape, in segments the copy
    manager must list in OPERATING PARAMETERS; a header is inline data, at most
    MAXIMUM INLINE DATA LENGTH bytes (SPC-4 r31 6.18.4), in one record."""
    asked = {InlineToStream: bool(req.header), WriteFilemarks: req.filemarks > 0,
             Locate: req.locate is not None}
    for cls, operand in TAPE_OPERATIONS:
        if not asked[cls]:
            continue
        if not dst.is_tape:
            raise CopyUsageError(f"{operand} writes to a tape, and the destination "
                                 f"{dst.path} is a disk: leave {operand} out")
        if cls.TYPE_CODE not in op.implemented_descriptor_types:
            raise CopyUsageError(
                f"{operand} needs segment type {cls.TYPE_CODE:02X}h ({cls.SHORTHAND}), which "
                "the copy manager does not list in OPERATING PARAMETERS: leave "
                f"{operand} out and do it on the tape yourself (dd, mt)")
    n = len(req.header)
    if n > op.max_inline_data_length:
        raise CopyUsageError(
            f"header= is {n} bytes, and the copy manager takes at most "
            f"{op.max_inline_data_length} bytes of inline data (MAXIMUM INLINE DATA "
            f"LENGTH): give a header of at most {op.max_inline_data_length} bytes")
    if n > MAX_RECORD:
        raise CopyUsageError(f"header= is {n} bytes, more than one tape record holds "
                             f"({MAX_RECORD}): give a shorter header")


def job_segments(src: Endpoint, dst: Endpoint, req: CopyRequest,
                 op: xcopy.OperatingParameters,
                 leading: tuple[xcopy.Segment, ...] = ()
                 ) -> tuple[list[xcopy.Segment], bytes]:
    """Every segment of the request in the order the copy manager runs them, and the
    inline data: locate (12h), ``leading``, the header record (04h), the copy segments,
    the filemarks (10h). The destination is CSCD 1."""
    _refuse_tape_operations(dst, req, op)
    segments: list[xcopy.Segment] = []
    if req.locate is not None:
        segments.append(Locate(1, req.locate))
    segments += leading
    if req.header:
        segments.append(InlineToStream(1, 0, len(req.header), len(req.header)))
    segments += plan_segments(src, dst, req, op)
    if req.filemarks:
        segments.append(WriteFilemarks(1, req.filemarks))
    if len(segments) > op.max_segment_count:
        raise CopyUsageError(
            f"{len(segments)} segments needed, the copy manager takes {op.max_segment_count}"
            ": copy in several runs (count=, skip=, seek=)")
    return segments, req.header + bytes(-len(req.header) % 4)  # offsets are multiples of 4


def build(src: Endpoint, dst: Endpoint, req: CopyRequest, op: xcopy.OperatingParameters,
          list_id: int, leading: tuple[xcopy.Segment, ...] = (), *, lid4: bool = False
          ) -> tuple[bytes, list[xcopy.Segment]]:
    """The EXTENDED COPY (LID1) parameter list of the request (SPC-4 6.5), or with
    ``lid4`` the EXTENDED COPY (LID4) one, with IMMED (SPC-4 6.4)."""
    segments, inline = job_segments(src, dst, req, op, leading)
    cscds = [src.cscd(), dst.cscd()]
    if lid4:
        plist = xcopy.build_extended_copy_lid4(
            cscds, segments, list_identifier=list_id, list_id_usage=ListIdUsage.HOLD,
            immed=True, inline_data=inline)
    else:
        plist = xcopy.build_extended_copy(
            cscds, segments, list_identifier=list_id, list_id_usage=ListIdUsage.HOLD,
            inline_data=inline)
    return plist, segments


#: The commands a LID4 copy needs: EXTENDED COPY (LID4) and RECEIVE COPY STATUS (LID4)
LID4_COMMANDS: tuple[tuple[int, int], ...] = (
    (xcopy.ExtendedCopyLid4.OPCODE, 0x01),  # EXTENDED COPY (LID4), SPC-4 6.4
    (xcopy.ReceiveCopyStatusLid4.OPCODE, 0x05),  # RECEIVE COPY STATUS (LID4), SPC-4 6.24
)


def supports_lid4(dev: ScsiTransport) -> bool:
    """Whether the copy manager behind ``dev`` takes EXTENDED COPY (LID4) and answers
    RECEIVE COPY STATUS (LID4): the Supported Commands descriptor of its Third-party
    Copy VPD page (8Fh, SPC-4 7.8.17) lists both; a device without the page (or the
    descriptor) is asked with REPORT SUPPORTED OPERATION CODES, one command each
    (SPC-4 6.35.3). A device that answers neither: no, and the copy goes as LID1."""
    with contextlib.suppress(sgio.SgIoError, xcopy.XcopyFormatError):
        page = tpc_vpd.ThirdPartyCopyPage.parse(dev.vpd(0x8F))
        listed = page.find(tpc_vpd.SupportedCommands)
        if isinstance(listed, tpc_vpd.SupportedCommands):
            sas = dict(listed.commands)
            return all(sa in sas.get(op, ()) for op, sa in LID4_COMMANDS)
    try:
        for op, sa in LID4_COMMANDS:
            cdb = spc.ReportSupportedOperationCodes(
                reporting_options=2, requested_operation_code=op,
                requested_service_action=sa, allocation_length=64).encode()
            if not spc.one_command_supported(dev.execute(cdb, data_in=64, timeout=10).data):
                return False
    except sgio.SgIoError:
        return False
    return True


def operating_parameters(dev: ScsiTransport) -> xcopy.OperatingParameters:
    cdb = xcopy.ReceiveCopyResultsOperatingParameters(allocation_length=256).encode()
    return xcopy.OperatingParameters.parse(dev.execute(cdb, data_in=256).data)


def copy_status(dev: ScsiTransport, list_id: int) -> xcopy.CopyStatus:
    cdb = xcopy.ReceiveCopyResultsCopyStatus(list_identifier=list_id,
                                                 allocation_length=12).encode()
    return xcopy.CopyStatus.parse(dev.execute(cdb, data_in=12, timeout=10).data)


#: What RECEIVE COPY STATUS (LID4) returns with up to 252 bytes of sense (SPC-4 6.24)
STATUS_LID4_LENGTH = xcopy.CopyStatusLid4.LENGTH + 252


def copy_status_lid4(dev: ScsiTransport, list_id: int) -> xcopy.CopyStatusLid4:
    """RECEIVE COPY STATUS (LID4) (SPC-4 6.24) of the copy with ``list_id``."""
    cdb = xcopy.ReceiveCopyStatusLid4(list_identifier=list_id,
                                         allocation_length=STATUS_LID4_LENGTH).encode()
    return xcopy.CopyStatusLid4.parse(dev.execute(cdb, data_in=STATUS_LID4_LENGTH,
                                                  timeout=10).data)


AnyCopyStatus = xcopy.CopyStatus | xcopy.CopyStatusLid4


class CopyStopped(LioXcopyError):
    """The operator interrupted the copy and had the target stop it (COPY OPERATION
    ABORT): ``status`` is its final COPY STATUS, with the exact count."""

    def __init__(self, list_id: int, status: AnyCopyStatus | None):
        self.list_id, self.status = list_id, status
        moved = (f"{status.transferred_bytes} bytes reached the destination"
                 if status is not None and status.transferred_bytes is not None
                 else "its count is unknown")
        super().__init__(f"stopped on the target with COPY OPERATION ABORT (list "
                         f"identifier {list_id}): {moved}")


def copy_operation_abort(dev: ScsiTransport, list_id: int) -> None:
    """COPY OPERATION ABORT (SPC-4 6.3) of the copy with ``list_id``."""
    dev.execute(xcopy.CopyOperationAbort(list_identifier=list_id).encode(), timeout=30)


def abort_line(path: str, list_id: int) -> str:
    """The stock ``sg_raw`` command that stops the copy: COPY OPERATION ABORT."""
    cdb = xcopy.CopyOperationAbort(list_identifier=list_id).encode()
    return f"sg_raw {path} {' '.join(f'{b:02x}' for b in cdb)}"


def ask_before_stopping(path: str, err: IO[str],
                        ask: Callable[[str], str] | None) -> Callable[[int], bool]:
    """What Ctrl-C during a copy does: say that the target goes on copying and how to
    stop it, then ask the operator (``ask``, e.g. ``input`` on a terminal; None: do not
    ask) whether to stop it now."""
    def decide(list_id: int) -> bool:
        print(f"\ninterrupted: the target goes on copying (list identifier {list_id} on "
              f"{path}); it can be stopped with `{abort_line(path, list_id)}`", file=err,
              flush=True)
        if ask is None:
            return False
        try:
            return ask("stop the copy on the target now? [y/N] ").strip().lower() in (
                "y", "yes")
        except (EOFError, KeyboardInterrupt):
            return False
    return decide


def send_and_poll(s: ScsiTransport, poll: ScsiTransport, plist: bytes, list_id: int, *,
                  on_status: Callable[[AnyCopyStatus, float], None] | None = None,
                  interval: float = 0.5,
                  timeout: float = 24 * 3600,
                  on_interrupt: Callable[[int], bool] | None = None,
                  lid4: bool = False,
                  ) -> tuple[AnyCopyStatus, float]:
    """Send EXTENDED COPY (LID1) on ``s`` from a worker thread and, while it runs, poll
    COPY STATUS (SPC-4 r31 6.18.3) on ``poll`` — a second handle to the same LUN, as
    the first one is busy — calling ``on_status(status, seconds)`` every ``interval``.
    Returns the final COPY STATUS and the seconds the copy took; raises what the
    EXTENDED COPY raised.

    Ctrl-C (KeyboardInterrupt) does not stop the copy on the target: ``on_interrupt``
    says so and decides; when it returns True, COPY OPERATION ABORT stops the copy and
    :class:`CopyStopped` carries its final count, else the interrupt goes on up.

    ``lid4``: ``plist`` is an EXTENDED COPY (LID4) list with IMMED, answered once it is
    checked: :func:`send_immed_and_poll` sends it and polls RECEIVE COPY STATUS (LID4)."""
    if lid4:
        return send_immed_and_poll(s, poll, plist, list_id, on_status=on_status,
                                   interval=interval, timeout=timeout,
                                   on_interrupt=on_interrupt)
    err: list[BaseException] = []

    def send() -> None:
        cdb = xcopy.ExtendedCopyLid1(parameter_list_length=len(plist)).encode()
        try:
            s.execute(cdb, data_out=plist, timeout=timeout)
        except BaseException as e:  # handed to the caller's thread
            err.append(e)

    started = time.monotonic()
    t = threading.Thread(target=send, daemon=True, name=f"xcopy-{list_id}")
    t.start()
    try:
        while t.is_alive():
            t.join(interval)
            if on_status is None or not t.is_alive():
                continue
            try:
                st = copy_status(poll, list_id)
            except sgio.SgIoError:
                continue
            on_status(st, time.monotonic() - started)
    except KeyboardInterrupt:
        if on_interrupt is None or not on_interrupt(list_id):
            raise
        copy_operation_abort(poll, list_id)
        t.join(120)  # the copy stops at its next chunk; its command ends TASK ABORTED
        final = None
        with contextlib.suppress(sgio.SgIoError):
            final = copy_status(poll, list_id)
        raise CopyStopped(list_id, final) from None
    dt = time.monotonic() - started
    if err:
        raise err[0]
    return copy_status(poll, list_id), dt


def send_immed_and_poll(s: ScsiTransport, poll: ScsiTransport, plist: bytes,
                        list_id: int, *,
                        on_status: Callable[[AnyCopyStatus, float], None] | None = None,
                        interval: float = 0.5, timeout: float = 24 * 3600,
                        on_interrupt: Callable[[int], bool] | None = None,
                        ) -> tuple[xcopy.CopyStatusLid4, float]:
    """Send an EXTENDED COPY (LID4) list with IMMED on ``s`` (GOOD once the list is
    checked, SPC-4 6.4) and poll RECEIVE COPY STATUS (LID4) on ``poll`` until the copy
    has ended: after the ESTIMATED STATUS UPDATE DELAY the copy manager suggests (at
    most 5 s), or where it suggests none soon at first, then every ``interval``;
    ``on_status`` hears each status in progress. A copy that
    ended with errors raises :class:`~lio_xcopy.sg.sgio.ScsiCommandError` with the
    sense it reports (as the LID1 command would have ended); one terminated (60h) with
    TASK ABORTED. Ctrl-C as :func:`send_and_poll`."""
    op = xcopy.CopyOperationStatus
    cdb = xcopy.ExtendedCopyLid4(parameter_list_length=len(plist)).encode()
    s.execute(cdb, data_out=plist, timeout=min(timeout, 600))
    started = time.monotonic()
    pause = min(interval, 0.02)  # short copies end soon: ask again quickly at first
    try:
        while True:
            try:
                st = copy_status_lid4(poll, list_id)
            except sgio.TransportFailure:  # a transport hiccup: ask again
                time.sleep(interval)
                continue
            if st.status not in (op.IN_PROGRESS, op.IN_PROGRESS_FOREGROUND,
                                 op.IN_PROGRESS_BACKGROUND):
                break
            if on_status is not None:
                on_status(st, time.monotonic() - started)
            if time.monotonic() - started > timeout:
                raise sgio.SgIoError(f"the copy with list identifier {list_id} on {s.path} "
                                     f"still runs after {timeout:.0f} s: stop it with "
                                     f"`{abort_line(s.path, list_id)}`", s.path)
            delay = st.estimated_status_update_delay
            suggested = delay / 1000 if delay < xcopy.STATUS_UPDATE_DELAY_ENDED else 0
            time.sleep(min(suggested or pause, 5.0))
            pause = min(pause * 2, interval)
    except KeyboardInterrupt:
        if on_interrupt is None or not on_interrupt(list_id):
            raise
        copy_operation_abort(poll, list_id)  # completes once the copy has stopped
        final = None
        with contextlib.suppress(sgio.SgIoError):
            final = copy_status_lid4(poll, list_id)
        raise CopyStopped(list_id, final) from None
    dt = time.monotonic() - started
    if st.status in (op.COMPLETED, op.COMPLETED_WITH_RESIDUAL_DATA):
        return st, dt
    status = TASK_ABORTED if st.status == op.TERMINATED else (
        st.completion_status or CHECK_CONDITION)
    result = sgio.Result(cdb=cdb, status=status,
                         sense=SenseData.parse(st.sense_data) if st.sense_data else None,
                         data=b"", resid=0, duration=dt, sense_bytes=st.sense_data)
    raise sgio.ScsiCommandError(
        f"{sgio.command_name(cdb)} on {s.path} (list identifier {list_id}, in the "
        f"background) failed: {result.explain()}; {st.describe()}", s.path, result)


def sg_raw_line(path: str, plist_file: str, length: int, *, lid4: bool = False) -> str:
    """The stock ``sg_raw`` command that sends the list in ``plist_file``: EXTENDED COPY
    (LID1), 83h service action 00h, or (LID4) service action 01h."""
    layout = xcopy.ExtendedCopyLid4 if lid4 else xcopy.ExtendedCopyLid1
    cdb = " ".join(f"{b:02x}" for b in layout(parameter_list_length=length).encode())
    return f"sg_raw -t 3600 -s {length} -i {plist_file} {path} {cdb}"


def status_line(path: str, list_id: int) -> str:
    """The stock ``sg_raw`` command that reads RECEIVE COPY STATUS (LID4) of a copy."""
    cdb = xcopy.ReceiveCopyStatusLid4(list_identifier=list_id,
                                         allocation_length=STATUS_LID4_LENGTH).encode()
    return f"sg_raw -r {STATUS_LID4_LENGTH} {path} {' '.join(f'{b:02x}' for b in cdb)}"


def _size(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


@dataclass(frozen=True, slots=True)
class CopyOutcome:
    """What one copy did: bytes the copy manager moved, wall time, and the bytes that
    crossed this host's SCSI devices for it (parameter list, status, identification)."""

    moved: int
    seconds: float
    initiator_bytes: int
    initiator_commands: int


def run_copy(src_path: str, dst_path: str, req: CopyRequest, *, emit: Path | None = None,
             progress: bool | str = True, out: IO[str] | None = None,
             err: IO[str] | None = None,
             timeout: float = 24 * 3600,
             on_interrupt: Callable[[int], bool] | None = None) -> CopyOutcome:
    """The whole initiator side. What was copied goes to ``out``; progress to ``err``
    (default stderr): ``progress`` as :func:`lio_xcopy.initiator.progress.make` takes it.
    ``on_interrupt``: see :func:`send_and_poll`."""
    out = sys.stdout if out is None else out
    with sgio.SgIoDevice(src_path) as s, sgio.SgIoDevice(dst_path) as d:
        taken = [s.take_unit_attentions(), d.take_unit_attentions()]  # before READ CAPACITY
        src, dst = identify(s), identify(d)
        for dev, ep, seen in ((s, src, taken[0]), (d, dst, taken[1])):
            _refuse_lost_position(dev, ep, seen)
        op = operating_parameters(s)
        lid4 = not req.lid1 and supports_lid4(s)
        list_id = random.randint(1, 255)
        plist, segments = build(src, dst, req, op, list_id, lid4=lid4)
        total = sum(_segment_bytes(seg, src, dst) for seg in segments)
        print(f"source      {src.describe()}\ndestination {dst.describe()}\n"
              f"{len(segments)} segment(s), {_size(total)}, list identifier {list_id}, "
              + ("EXTENDED COPY (LID4) in the background" if lid4 else "EXTENDED COPY (LID1)"),
              file=out)
        if emit is not None:
            emit.write_bytes(plist)
            print(f"parameter list written to {emit} ({len(plist)} bytes); send it with:\n"
                  f"  {sg_raw_line(src_path, str(emit), len(plist), lid4=lid4)}", file=out)
            if lid4:
                print(f"it returns at once (IMMED); follow the copy with:\n"
                      f"  {status_line(src_path, list_id)}", file=out)
            return CopyOutcome(0, 0.0, s.bytes_in + s.bytes_out + d.bytes_in + d.bytes_out,
                               s.commands + d.commands)
        bar = make(total, err if err is not None else sys.stderr, setting=progress)

        def show(st: AnyCopyStatus, dt: float) -> None:
            bar.show(st.transferred_bytes or 0, dt)

        with sgio.SgIoDevice(src_path) as poll:  # a second fd: the first is busy
            try:
                st, dt = send_and_poll(s, poll, plist, list_id,
                                       on_status=None if bar.mode == QUIET else show,
                                       timeout=timeout, on_interrupt=on_interrupt, lid4=lid4)
            except BaseException:
                bar.abandon()  # the error starts a line of its own
                with contextlib.suppress(sgio.SgIoError):
                    print(f"  copy status: {status_of(poll, list_id, lid4=lid4).describe()}",
                          file=out)
                raise
            crossed = sum(h.bytes_in + h.bytes_out for h in (s, d, poll))
            commands = sum(h.commands for h in (s, d, poll))
        moved = st.transferred_bytes or total
        bar.finish(moved, dt)
        print(f"  copied {_size(moved)} in {dt:.2f} s ({moved / (1 << 20) / dt:.1f} MiB/s), "
              f"{st.segments_processed} segment(s), by the target's copy manager", file=out)
        return CopyOutcome(moved, dt, crossed, commands)


def status_of(dev: ScsiTransport, list_id: int, *, lid4: bool) -> AnyCopyStatus:
    """The copy's status as the command that sent it asks for it."""
    return copy_status_lid4(dev, list_id) if lid4 else copy_status(dev, list_id)


def _segment_bytes(seg: xcopy.Segment, src: Endpoint, dst: Endpoint) -> int:
    """Bytes a segment writes to the destination (what COPY STATUS counts)."""
    if isinstance(seg, StreamToStream):
        return seg.byte_count
    if isinstance(seg, InlineToStream):
        return seg.number_of_bytes
    if isinstance(seg, (BlockToStream, StreamToBlock, BlockToBlock)):
        disk = dst if src.is_tape else src
        return seg.number_of_blocks * disk.block_size
    return 0


USAGE = """usage: lio-xcopy copy if=DEV of=DEV [count=N] [skip=N] [seek=N] [bs=N] [tbs=N]
                      [header=FILE] [filemark=N] [--emit-plist FILE] [--lid1]
                      [--quiet | --json]

One EXTENDED COPY: the target's copy manager moves the data; nothing crosses this host.
DEV is a /dev/sgN (or /dev/sdX, /dev/nstN) of a disk or tape LUN of one lio-xcopy target.
  count=N   disk blocks to copy (tape->tape: bytes); default: to the end of the disk
  skip=N    first block of the source disk        seek=N  first block of the destination
            disk (a tape is read and written at its position: no skip=/seek= for it)
  bs=N      must equal the disk's block size (checked); tbs=N  tape record bytes (65536)
  header=FILE  to a tape: FILE's bytes as one record before the data (inline data,
            segment 04h; at most the copy manager's MAXIMUM INLINE DATA LENGTH)
  filemark=N   to a tape: N filemarks after the data (segment 10h), in the same command
  --emit-plist FILE  write the parameter list and print the sg_raw line instead
  --lid1    send EXTENDED COPY (LID1) and wait on it, even where the target lists
            EXTENDED COPY (LID4), which is otherwise sent with IMMED and polled
  --quiet   no progress; --json: progress as one JSON object a line
Progress goes to stderr: a bar redrawn on a terminal, a line every 5 s elsewhere.
"""

OPERANDS = ("if", "of", "count", "skip", "seek", "bs", "tbs", "header", "filemark")


def parse_operands(args: list[str]) -> tuple[dict[str, str], Path | None, bool | str]:
    """The operands, the parameter list file and the progress setting (True, False for
    --quiet, "json" for --json)."""
    ops: dict[str, str] = {}
    emit = None
    quiet = as_json = False
    it = iter(args)
    for a in it:
        if a == "--emit-plist":
            emit = Path(next(it, ""))
            if not emit.name:
                raise CopyUsageError("--emit-plist needs a file name")
        elif a.startswith("--emit-plist="):
            emit = Path(a.split("=", 1)[1])
        elif a in ("-q", "--quiet"):
            quiet = True
        elif a == "--lid1":
            ops["lid1"] = "yes"
        elif a == "--json":
            as_json = True
        elif "=" in a and a.split("=", 1)[0] in OPERANDS:
            k, v = a.split("=", 1)
            if k in ops:
                raise CopyUsageError(f"{k}= is given twice ({k}={ops[k]} and {a}): give it "
                                     "once")
            ops[k] = v
        else:
            raise CopyUsageError(f"unknown operand {a!r}: see `lio-xcopy copy --help`")
    for k in ("if", "of"):
        if k not in ops:
            raise CopyUsageError(f"missing {k}=DEVICE: see `lio-xcopy copy --help`")
    if quiet and as_json:
        raise CopyUsageError("--quiet shows no progress, --json shows it as JSON: give one")
    return ops, emit, "json" if as_json else not quiet


def _int(ops: dict[str, str], key: str, default: int | None) -> int | None:
    if key not in ops:
        return default
    try:
        v = int(ops[key], 0)
    except ValueError as e:
        raise CopyUsageError(f"{key}={ops[key]!r} is not a number") from e
    if v < 0:
        raise CopyUsageError(f"{key}={v} is negative: give a number from 0")
    return v


def request(ops: dict[str, str]) -> CopyRequest:
    """The operands as a request; ``count=0``, ``tbs=0`` and ``bs=0`` mean nothing and
    are refused."""
    for key, what in (("count", "copies nothing: give at least 1, or leave count= out "
                                "for the rest of the disk"),
                      ("tbs", f"is no tape record length: give the bytes of a record, "
                              f"at least 1 (default {DEFAULT_RECORD})"),
                      ("bs", "is no block size: give the disk's, or leave bs= out"),
                      ("filemark", "writes no filemark: give 1 or more, or leave filemark= "
                                   "out")):
        if _int(ops, key, None) == 0:
            raise CopyUsageError(f"{key}=0 {what}")
    return CopyRequest(count=_int(ops, "count", None), skip=_int(ops, "skip", 0) or 0,
                       seek=_int(ops, "seek", 0) or 0, record=_int(ops, "tbs", None),
                       header=_header(ops), filemarks=_int(ops, "filemark", 0) or 0,
                       lid1="lid1" in ops)


def _header(ops: dict[str, str]) -> bytes:
    """The bytes of ``header=FILE``; an unreadable or empty file is refused."""
    if "header" not in ops:
        return b""
    path = ops["header"]
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_RECORD + 1)  # longer is refused: one record holds no more
    except OSError as e:
        raise CopyUsageError(f"header={path}: {e.strerror}: give a readable file") from None
    if not data:
        raise CopyUsageError(f"header={path} is empty: give a file holding the header, or "
                             "leave header= out")
    return data


def main(argv: list[str]) -> int:
    if not argv or any(a in ("-h", "--help") for a in argv):
        print(USAGE, end="")
        return 0 if argv else 2
    try:
        ops, emit, progress = parse_operands(argv)
        req = request(ops)
        bs = _int(ops, "bs", None)
        if bs is not None:
            for path in (ops["if"], ops["of"]):
                with sgio.SgIoDevice(path) as dev:
                    ep = identify(dev)
                if not ep.is_tape and ep.block_size != bs:
                    raise CopyUsageError(f"bs={bs}, but {path} has {ep.block_size}-byte "
                                         "blocks: counts are in the disk's blocks")
        run_copy(ops["if"], ops["of"], req, emit=emit, progress=progress,
                 on_interrupt=ask_before_stopping(
                     ops["if"], sys.stderr, input if sys.stdin.isatty() else None))
    except LioXcopyError as e:
        print(f"lio-xcopy copy: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lio-xcopy copy: interrupted", file=sys.stderr)
        return 130
    return 0
