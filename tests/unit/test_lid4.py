"""EXTENDED COPY (LID4), RECEIVE COPY STATUS/DATA (LID4) and COPY OPERATION ABORT of
background copies (SPC-4 5.17.4, 6.3, 6.4, 6.20, 6.24): wire goldens, refusals with
their field pointers, and copies run through the LUN's own command dispatch, with the
copy's work handed to the test (no threads, no sleeps)."""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable
from concurrent.futures import Future

import pytest
from plugins.copy_steps import InlineExecutor, ScriptedEnd, StepExecutor

from lio_xcopy.copy.manager import CopyManager
from lio_xcopy.devices.backing import BackingStore
from lio_xcopy.devices.base import Command, LogicalUnit, LunIdentity
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.disk import Disk
from lio_xcopy.devices.tape import Tape
from lio_xcopy.scsi import spc, xcopy
from lio_xcopy.scsi import xcopy as x
from lio_xcopy.scsi.errors import CheckCondition
from lio_xcopy.scsi.sense import Asc, SenseData, SenseKey
from lio_xcopy.scsi.tpc_vpd import SupportedCommands, ThirdPartyCopyPage
from lio_xcopy.scsi.xcopy import (
    BlockToBlock,
    CopyDataLid4,
    CopyOperationStatus,
    CopyStatusLid4,
    IdentificationCscd,
    ListIdUsage,
    StreamToBlock,
)

BS = 512
CHUNK = BS * BS  # a 02h segment between 512-byte disks moves whole multiples of both
SIZE = 4 * CHUNK  # the copies below move four chunks


# --- wire formats --------------------------------------------------------------------------
def test_cdb_goldens():
    assert x.ExtendedCopyLid4(parameter_list_length=0x50).encode() == bytes.fromhex(
        "8301 0000 0000 0000 0000 0000 0050 0000".replace(" ", ""))
    assert x.ReceiveCopyStatusLid4(list_identifier=0x12345678,
                                      allocation_length=0x60).encode() == bytes.fromhex(
        "8405 12345678 00000000 00000060 0000".replace(" ", ""))
    assert x.ReceiveCopyDataLid4(list_identifier=1, allocation_length=36).encode() == \
        bytes.fromhex("8406 00000001 00000000 00000024 0000".replace(" ", ""))
    assert x.CopyOperationAbort(list_identifier=0xCAFE0001).encode()[:6] == \
        bytes.fromhex("831C CAFE0001".replace(" ", ""))
    # the same 32-bit list identifier field decoded back
    cdb = x.ReceiveCopyStatusLid4.decode(bytes.fromhex("8405deadbeef000000000000002000 00"
                                                          .replace(" ", "")))
    assert (cdb.list_identifier, cdb.allocation_length) == (0xDEADBEEF, 0x20)


NAA_A = bytes.fromhex("6001405aaaaaaaaaaaaaaaaaaaaaaaa1")
LID4_GOLDEN = bytes.fromhex(
    "01 01 0020" + "00" * 11 + "01"  # format, usage 00b priority 1, header CSCD length, IMMED
    + "ff 000000 12345678" + "00" * 18  # header CSCD type, LIST IDENTIFIER
    + "0020 001c 0000"  # one CSCD, one 02h segment, no inline data
    + "e4 00 0000 01 03 00 10" + NAA_A.hex() + "00" * 4 + "00 000200"  # CSCD 0 at byte 48
    + "02 00 0018 0000 0000 0000 0008" + "0000000000000000" + "0000000000000010"
)


def test_lid4_parameter_list_golden_and_round_trip():
    cscd = IdentificationCscd(NAA_A, 0, block_length=512)
    seg = BlockToBlock(0, 0, 8, 0, 16)
    data = x.build_extended_copy_lid4([cscd], [seg], list_identifier=0x12345678, immed=True)
    assert data == LID4_GOLDEN
    p = x.parse_extended_copy_lid4(data)
    assert p.header == x.Lid4Header(0x12345678, ListIdUsage.HOLD, 1, immed=True)
    assert (p.cscds, p.segments) == ((cscd,), (seg,))
    assert p.encode() == data
    assert p.cscd_offset(0) == 48 and p.segment_offset(0) == 80
    assert "EXTENDED COPY (LID4)" in p.describe() and "IMMED" in p.describe()


def test_lid4_inline_data_and_every_length_at_its_own_offset():
    data = x.build_extended_copy_lid4(
        [IdentificationCscd(NAA_A, 1)], [x.InlineToStream(0, 0, 5, 5)],
        list_identifier=7, list_id_usage=ListIdUsage.DISCARD, inline_data=b"LABEL")
    assert struct.unpack_from(">HHH", data, 42) == (32, 24, 5)
    p = x.parse_extended_copy_lid4(data)
    assert p.inline_data == b"LABEL" and p.header.list_id_usage == ListIdUsage.DISCARD


def _illegal(data: bytes | bytearray, limits: x.Limits | None = None) -> SenseData:
    with pytest.raises(CheckCondition) as e:
        x.parse_extended_copy_lid4(bytes(data), limits)
    assert e.value.sense.key == SenseKey.ILLEGAL_REQUEST
    return e.value.sense


def _patched(byte: int, value: int) -> bytearray:
    data = bytearray(LID4_GOLDEN)
    data[byte] = value
    return data


@pytest.mark.parametrize(("data", "asc", "pointer"), [
    (_patched(0, 0x02), Asc.INVALID_FIELD_IN_PARAMETER_LIST, "800000"),  # PARAMETER LIST FORMAT
    (_patched(1, 0x09), Asc.INVALID_FIELD_IN_PARAMETER_LIST, "8c0001"),  # LIST ID USAGE 01b
    (_patched(3, 0x40), Asc.INVALID_FIELD_IN_PARAMETER_LIST, "800002"),  # header CSCD length
    (_patched(16, 0xE4), Asc.INVALID_FIELD_IN_PARAMETER_LIST, "800010"),  # header CSCD type
    (_patched(15, 0x03), Asc.INVALID_FIELD_IN_CDB, "88000f"),  # IMMED with G_SENSE
    (_patched(1, 0x19), Asc.INVALID_FIELD_IN_CDB, "88000f"),  # IMMED with usage 11b
    (_patched(15, 0x02), Asc.INVALID_FIELD_IN_PARAMETER_LIST, "89000f"),  # G_SENSE alone
    (_patched(43, 0x40), Asc.PARAMETER_LIST_LENGTH_ERROR, "80002a"),  # CSCD list past the end
    (_patched(45, 0x40), Asc.PARAMETER_LIST_LENGTH_ERROR, "80002c"),  # segment list past it
    (_patched(47, 0x01), Asc.PARAMETER_LIST_LENGTH_ERROR, "80002e"),  # inline past the end
    (_patched(80, 0x14), Asc.UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE, "800050"),
])
def test_header_refusals_point_into_the_parameter_list(data, asc, pointer):
    sense = _illegal(data)
    assert sense.asc == asc
    assert sense.sense_key_specific == bytes.fromhex(pointer)


def test_usage_11b_with_a_list_identifier_and_a_short_list():
    no_id = bytearray(LID4_GOLDEN)
    no_id[1], no_id[15] = 0x19, 0  # usage 11b without IMMED: only LIST IDENTIFIER 0
    assert _illegal(no_id).sense_key_specific == bytes.fromhex("800014")  # byte 20
    no_id[20:24] = bytes(4)
    assert x.parse_extended_copy_lid4(bytes(no_id)).header.list_id_usage == 0b11
    short = _illegal(LID4_GOLDEN[:47])
    assert (short.asc, short.sense_key_specific) == (Asc.PARAMETER_LIST_LENGTH_ERROR,
                                                     bytes.fromhex("c0000a"))  # CDB byte 10
    many = _illegal(LID4_GOLDEN, x.Limits(max_cscd=0, total_concurrent_copies=16))
    assert (many.asc, many.sense_key_specific) == (Asc.TOO_MANY_TARGET_DESCRIPTORS,
                                                   bytes.fromhex("80002a"))


def test_copy_status_lid4_goldens():
    running = CopyStatusLid4(0x01, CopyOperationStatus.IN_PROGRESS_BACKGROUND, 0x10000, 1,
                             estimated_status_update_delay=100)
    assert running.encode() == bytes.fromhex(
        "0000001c 01 12 0000 00000064 00 00 00 00 0000000000010000 0001 000000000000"
        .replace(" ", ""))
    sense = SenseData(SenseKey.COPY_ABORTED, Asc.COPY_TARGET_DEVICE_DATA_UNDERRUN,
                      command_specific=0).fixed()
    failed = CopyStatusLid4(0x01, CopyOperationStatus.COMPLETED_WITH_ERRORS, 512, 1, 0x02,
                            sense, estimated_status_update_delay=0xFFFFFFFE)
    wire = failed.encode()
    assert len(sense) == 18 and len(wire) == 32 + 20  # the sense field padded to 4 bytes
    assert wire[:16] == bytes.fromhex("00000030 01 02 0000 fffffffe 02 14 12 00".replace(" ", ""))
    assert wire[32:50] == sense and wire[50:] == bytes(2)
    assert CopyStatusLid4.parse(wire) == failed and CopyStatusLid4.parse(running.encode()) == \
        running
    assert failed.sense is not None and failed.sense.asc == Asc.COPY_TARGET_DEVICE_DATA_UNDERRUN
    assert failed.transferred_bytes == 512


def test_copy_data_lid4_golden_holds_data_only_for_a_good_copy():
    done = CopyStatusLid4(0x01, CopyOperationStatus.COMPLETED, 4096, 2,
                          estimated_status_update_delay=0xFFFFFFFE)
    assert CopyDataLid4(done).encode() == bytes.fromhex(
        "00000020 01 01 0000 fffffffe 00 00 00 00 0000000000001000 0002 000000000000 00000000"
        .replace(" ", ""))
    held = CopyDataLid4(done, b"abc").encode()
    assert held[-7:] == b"\0\0\0\x03abc" and CopyDataLid4.parse(held) == CopyDataLid4(done, b"abc")
    failed = CopyStatusLid4(0x01, CopyOperationStatus.COMPLETED_WITH_ERRORS)
    assert CopyDataLid4(failed, b"abc").encode()[-4:] == bytes(4)  # HELD DATA LENGTH 0


# --- the copy manager, through the LUN's dispatch ---------------------------------------------
class Lab:
    def __init__(self, tmp, executor: StepExecutor | InlineExecutor):
        self.steps = executor
        self.src_bytes = os.urandom(SIZE)
        (tmp / "src.img").write_bytes(self.src_bytes + bytes(SIZE))
        (tmp / "dst.img").write_bytes(bytes(2 * SIZE))
        self.src = Disk(LunIdentity("src", "6001405aaaaaaaaaaaaaaaaaaaaaaaa1"),
                        BackingStore(tmp / "src.img"), BS)
        self.dst = Disk(LunIdentity("dst", "6001405bbbbbbbbbbbbbbbbbbbbbbbb2"),
                        BackingStore(tmp / "dst.img"), BS)
        self.tape = Tape(LunIdentity("tape", "6001405cccccccccccccccccccccccc3"),
                         tmp / "tape.aws", 1 << 24)
        self.dst_path = tmp / "dst.img"
        self.manager = CopyManager(chunk=CHUNK, executor=executor)
        for d in (self.src, self.dst, self.tape):
            self.manager.register(d)
        self.source = ScriptedEnd(self.src)  # src as a copy end, its calls scripted
        self.manager.register(self.source)

    def cscd(self, dev: LogicalUnit, **kw) -> IdentificationCscd:
        naa = next(d for d in dev.designators() if d.designator_type == 3)
        return IdentificationCscd.from_designator(naa, dev.DEVICE_TYPE, **kw)

    def disk_to_disk(self, list_id: int, *, immed: bool = False, lid4: bool = True,
                     blocks: int = SIZE // BS) -> bytes:
        cscds = [self.cscd(self.src, block_length=BS), self.cscd(self.dst, block_length=BS)]
        seg = [BlockToBlock(0, 1, blocks, 0, 0)]
        if lid4:
            return x.build_extended_copy_lid4(cscds, seg, list_identifier=list_id, immed=immed)
        return x.build_extended_copy(cscds, seg, list_identifier=list_id,
                                     list_id_usage=ListIdUsage.HOLD)

    def send(self, plist: bytes, *, lid4: bool = True) -> int | Future[int]:
        layout = x.ExtendedCopyLid4 if lid4 else x.ExtendedCopyLid1
        return self.src.handle(Command(layout(parameter_list_length=len(plist)).encode(),
                                       DataBuffer.of(bytearray(plist))))

    def status(self, list_id: int) -> CopyStatusLid4:
        buf = bytearray(256)
        n = self.src.handle(Command(x.ReceiveCopyStatusLid4(
            list_identifier=list_id, allocation_length=256).encode(), DataBuffer.of(buf)))
        assert isinstance(n, int)
        return CopyStatusLid4.parse(bytes(buf[:n]))

    def abort(self, list_id: int) -> int | Future[int]:
        return self.src.handle(Command(x.CopyOperationAbort(list_identifier=list_id).encode()))

    def close(self) -> None:
        for d in (self.src, self.dst, self.tape):
            d.close()


@pytest.fixture
def lab(tmp_path):
    """Copies run when the test says: ``lab.steps`` holds each copy's work."""
    lab = Lab(tmp_path, StepExecutor())
    yield lab
    lab.close()


@pytest.fixture
def inline_lab(tmp_path):
    lab = Lab(tmp_path, InlineExecutor())
    yield lab
    lab.close()


def test_a_lid4_copy_runs_to_completion(inline_lab):
    lab = inline_lab
    fut = lab.send(lab.disk_to_disk(0x01020304))
    assert isinstance(fut, Future) and fut.result(0) == 0  # foreground: ends with the copy
    assert lab.dst_path.read_bytes()[:SIZE] == lab.src_bytes
    st = lab.status(0x01020304)
    assert (st.response_to_service_action, st.status, st.completion_status) == (
        0x01, CopyOperationStatus.COMPLETED, 0x00)
    assert (st.transferred_bytes, st.segments_processed) == (SIZE, 1)
    assert st.estimated_status_update_delay == 0xFFFFFFFE and st.sense_data == b""
    buf = bytearray(64)  # RECEIVE COPY DATA(LID4): no segment type holds data
    n = lab.src.handle(Command(x.ReceiveCopyDataLid4(list_identifier=0x01020304,
                                                        allocation_length=64).encode(),
                               DataBuffer.of(buf)))
    data = CopyDataLid4.parse(bytes(buf[:n]))
    assert n == 36 and data.held_data == b"" and data.status == st


def test_an_immed_copy_answers_good_at_once_and_is_polled_until_done(lab):
    result = lab.send(lab.disk_to_disk(77, immed=True))
    done = result.result(0) if isinstance(result, Future) else result
    assert done == 0 and len(lab.steps) == 1  # GOOD before any byte moved
    st = lab.status(77)
    assert (st.status, st.transfer_count, st.segments_processed) == (
        CopyOperationStatus.IN_PROGRESS_BACKGROUND, 0, 0)
    assert st.estimated_status_update_delay == 500 and st.completion_status == 0
    job = lab.manager.jobs()[0]
    real_moved, polls = job.moved, []

    def moved_then_poll(data, n):  # the backup server polls between chunks
        real_moved(data, n)
        polls.append(lab.status(77))

    job.moved = moved_then_poll
    lab.steps.run_next()
    assert [p.status for p in polls] == [CopyOperationStatus.IN_PROGRESS_BACKGROUND] * 4
    assert [p.transferred_bytes for p in polls] == [CHUNK * k for k in range(1, 5)]
    assert [p.segments_processed for p in polls] == [1] * 4  # the one being processed
    # OPERATION COUNTER (SPC-4 6.24): commands to the copy source or destination that
    # completed GOOD: one READ and one WRITE per chunk
    assert [p.operation_counter for p in polls] == [2, 4, 6, 8]
    final = lab.status(77)
    assert (final.status, final.transferred_bytes, final.segments_processed,
            final.completion_status) == (CopyOperationStatus.COMPLETED, SIZE, 1, 0)
    assert final.operation_counter == 8
    assert lab.dst_path.read_bytes()[:SIZE] == lab.src_bytes


def test_copy_operation_abort_stops_an_immed_copy_with_an_exact_count(lab):
    lab.send(lab.disk_to_disk(0xABCDEF01, immed=True))
    job = lab.manager.jobs()[0]
    aborts: list[int | Future[int]] = []
    # three chunks land, then the abort arrives
    lab.source.at("read_blocks", 4, lambda: aborts.append(lab.abort(0xABCDEF01)))
    lab.steps.run_next()
    (answer,) = aborts
    # SPC-4 5.17.4.7 a): the abort completes once the copy has stopped
    assert isinstance(answer, Future) and answer.done() and answer.result(0) == 0
    st = lab.status(0xABCDEF01)
    assert (st.status, st.completion_status, st.sense_data) == (
        CopyOperationStatus.TERMINATED, 0x40, b"")  # TASK ABORTED, no sense (table 250)
    assert st.transferred_bytes == 3 * CHUNK == job.transferred
    got = lab.dst_path.read_bytes()
    assert got[:3 * CHUNK] == lab.src_bytes[:3 * CHUNK]
    assert got[3 * CHUNK:] == bytes(2 * SIZE - 3 * CHUNK)
    # ended: "not processing a copy operation with the specified list identifier"
    # (SPC-4 6.3) is INVALID FIELD IN CDB at the LIST IDENTIFIER; its status stays held
    ended = _refused(lambda: lab.abort(0xABCDEF01))
    assert (ended.asc, ended.sense_key_specific) == (Asc.INVALID_FIELD_IN_CDB,
                                                     bytes.fromhex("c00002"))
    assert lab.status(0xABCDEF01).status == CopyOperationStatus.TERMINATED


def test_an_abort_that_arrives_before_the_copy_starts_moves_nothing(lab):
    lab.send(lab.disk_to_disk(5, immed=True))
    answer = lab.abort(5)
    assert isinstance(answer, Future) and not answer.done()  # the copy has not stopped yet
    lab.steps.run_next()
    assert answer.result(0) == 0
    st = lab.status(5)
    assert (st.status, st.transfer_count) == (CopyOperationStatus.TERMINATED, 0)
    assert lab.dst_path.read_bytes() == bytes(2 * SIZE)


def test_a_daemon_stop_ends_a_background_copy(lab):
    lab.send(lab.disk_to_disk(6, immed=True))
    assert [j.list_id for j in lab.manager.stop()] == [6]
    lab.steps.run_next()
    st = lab.status(6)
    assert (st.status, st.completion_status) == (CopyOperationStatus.COMPLETED_WITH_ERRORS, 0x02)
    sense = st.sense
    assert sense is not None and (sense.key, sense.asc) == (
        SenseKey.COPY_ABORTED, Asc.COMMANDS_CLEARED_BY_DEVICE_SERVER)
    assert st.transfer_count == 0


def _refused(call: Callable[[], object]) -> SenseData:
    with pytest.raises(CheckCondition) as e:
        call()
    assert e.value.sense.key == SenseKey.ILLEGAL_REQUEST
    return e.value.sense


def test_a_list_identifier_in_use(lab):
    lab.send(lab.disk_to_disk(7, immed=True))
    again = _refused(lambda: lab.send(lab.disk_to_disk(7, immed=True)))
    assert (again.asc, again.sense_key_specific) == (Asc.OPERATION_IN_PROGRESS,
                                                     bytes.fromhex("800014"))  # byte 20
    # one 32-bit space for both formats (SPC-4 5.17.4.2): the other format is refused
    other = _refused(lambda: lab.send(lab.disk_to_disk(7, lid4=False), lid4=False))
    assert (other.asc, other.sense_key_specific) == (Asc.INVALID_FIELD_IN_PARAMETER_LIST,
                                                     bytes.fromhex("800000"))
    assert len(lab.steps) == 1  # nothing else started
    lab.steps.run_next()
    lab.send(lab.disk_to_disk(7, lid4=False), lid4=False)  # the copy ended: 7 is free
    lab.steps.run_next()
    st = lab.status(7)  # RECEIVE COPY STATUS(LID4) reports the LID1 copy now holding 7
    assert (st.response_to_service_action, st.status) == (0x00, CopyOperationStatus.COMPLETED)


def test_an_unknown_list_identifier_is_invalid_field_in_cdb(lab):
    for cdb in (x.ReceiveCopyStatusLid4(list_identifier=0xDEADBEEF, allocation_length=64),
                x.ReceiveCopyDataLid4(list_identifier=0xDEADBEEF, allocation_length=64),
                x.CopyOperationAbort(list_identifier=0xDEADBEEF)):
        sense = _refused(lambda c=cdb: lab.src.handle(Command(c.encode(),
                                                              DataBuffer.of(bytearray(64)))))
        assert (sense.asc, sense.sense_key_specific) == (Asc.INVALID_FIELD_IN_CDB,
                                                         bytes.fromhex("c00002"))


def test_a_failed_background_copy_keeps_its_sense_for_copy_status(lab):
    plist = x.build_extended_copy_lid4(  # the tape is empty: the read meets end of data
        [lab.cscd(lab.tape), lab.cscd(lab.dst, block_length=BS)],
        [StreamToBlock(0, 1, 8, 0, BS)], list_identifier=0x100, immed=True)
    lab.send(plist)
    lab.steps.run_next()
    st = lab.status(0x100)
    assert (st.status, st.completion_status, st.segments_processed) == (
        CopyOperationStatus.COMPLETED_WITH_ERRORS, 0x02, 1)  # it stopped in segment 0
    sense = st.sense
    assert sense is not None and (sense.key, sense.asc, sense.command_specific) == (
        SenseKey.COPY_ABORTED, Asc.COPY_TARGET_DEVICE_DATA_UNDERRUN, 0)
    # FAILURE DETAILS (LID1) reports EXTENDED COPY(LID1) commands only (SPC-4 6.23)
    fsd = _refused(lambda: lab.src.handle(Command(
        x.ReceiveCopyResultsFailedSegmentDetails(list_identifier=0,
                                                      allocation_length=64).encode(),
        DataBuffer.of(bytearray(64)))))
    assert fsd.asc == Asc.INVALID_FIELD_IN_CDB


def test_checks_before_good_still_fail_an_immed_copy_at_once(lab):
    too_far = x.build_extended_copy_lid4(
        [lab.cscd(lab.src, block_length=BS), lab.cscd(lab.dst, block_length=BS)],
        [BlockToBlock(0, 1, 8, 2 * SIZE // BS, 0)], list_identifier=9, immed=True)
    with pytest.raises(CheckCondition) as e:
        lab.send(too_far)
    assert (e.value.sense.key, e.value.sense.asc) == (SenseKey.COPY_ABORTED,
                                                      Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE)
    assert len(lab.steps) == 0 and lab.manager.jobs() == []


def test_the_new_commands_are_reported_where_the_copy_commands_are(lab):
    buf = bytearray(4096)
    n = lab.src.handle(Command(spc.ReportSupportedOperationCodes(
        reporting_options=0, allocation_length=4096).encode(), DataBuffer.of(buf)))
    listed = {(d.opcode, d.service_action) for d in spc.parse_all_commands(bytes(buf[:n]))}
    assert {(0x83, 0x01), (0x83, 0x1C), (0x84, 0x05), (0x84, 0x06)} <= listed
    page = ThirdPartyCopyPage.parse(lab.src.third_party_copy_page())
    commands = page.find(SupportedCommands)
    assert commands is not None
    # with the disk's ROD token commands (POPULATE TOKEN, WRITE USING TOKEN, 84h/07h-08h)
    assert dict(commands.commands)[0x83] == (0x00, 0x01, 0x10, 0x11, 0x1C)
    assert dict(commands.commands)[0x84] == (0x00, 0x01, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08)
    assert xcopy.ExtendedCopyLid4.DATA_OUT and lab.src.runs_long(Command(
        x.ExtendedCopyLid4(parameter_list_length=48).encode()))


def test_stop_waits_for_a_running_background_copy_to_end(tmp_path):
    """The daemon closes its LUNs after :meth:`CopyManager.stop`: a background copy has
    no command the daemon drains, so ``stop(wait=...)`` returns once it has ended."""
    steps = StepExecutor()
    lab = Lab(tmp_path, steps)
    try:
        lab.send(lab.disk_to_disk(12, immed=True))
        job = lab.manager.jobs()[0]
        reached, go = threading.Event(), threading.Event()

        def hold() -> None:  # one chunk lands, then the copy is held
            reached.set()
            assert go.wait(10)

        lab.source.at("read_blocks", 2, hold)
        copier = threading.Thread(target=steps.run_next)
        copier.start()
        assert reached.wait(10)
        ended_when_stop_returned: list[bool] = []

        def stopper() -> None:
            lab.manager.stop(wait=10)
            ended_when_stop_returned.append(job.stopped.done())

        stopping = threading.Thread(target=stopper)
        stopping.start()
        assert job.cancel.wait(10)  # the daemon is stopping; the copy is still held
        go.set()
        stopping.join(10)
        copier.join(10)
        assert ended_when_stop_returned == [True]
        st = lab.status(12)
        assert (st.status, st.transferred_bytes) == (CopyOperationStatus.COMPLETED_WITH_ERRORS,
                                                    CHUNK)
        assert st.sense is not None and st.sense.asc == Asc.COMMANDS_CLEARED_BY_DEVICE_SERVER
    finally:
        lab.close()


def test_a_logical_unit_reset_ends_the_lun_s_background_copies(lab):
    """SPC-4 5.17.5 table 109: as if COPY OPERATION ABORT named each of them."""
    lab.send(lab.disk_to_disk(13, immed=True))
    other = lab.manager.reset(lab.dst)  # another LUN's reset leaves it alone
    assert other == []
    assert [j.list_id for j in lab.manager.reset(lab.src)] == [13]
    lab.steps.run_next()
    st = lab.status(13)
    assert (st.status, st.completion_status, st.transfer_count) == (
        CopyOperationStatus.TERMINATED, 0x40, 0)


def test_the_operation_counter_wraps_and_leaves_out_a_failed_command(lab):
    """SPC-4 6.24: a wrapping counter of the commands that completed GOOD; the READ
    that failed is not counted."""
    lab.send(lab.disk_to_disk(0x55, immed=True))
    job = lab.manager.jobs()[0]
    job.operations = 0xFFFF
    lab.source.at("read_blocks", 3, CheckCondition(SenseData(SenseKey.MEDIUM_ERROR, 0x1100)))
    lab.steps.run_next()
    st = lab.status(0x55)
    assert st.status == CopyOperationStatus.COMPLETED_WITH_ERRORS
    assert st.operation_counter == 3  # 0xFFFF + 2 READs + 2 WRITEs, wrapped
    assert st.transferred_bytes == 2 * CHUNK


@pytest.mark.parametrize(("moved", "elapsed", "delay"), [
    (0, 1.0, 500),  # no pace yet: the usual delay
    (10 << 20, 1.0, 500),  # 90 MiB left at 10 MiB/s: 9 s
    (95 << 20, 9.5, 500),  # 0.5 s left: the usual delay is as short
    (98 << 20, 9.8, 200),  # 0.2 s left
    ((100 << 20) - (1 << 18), 10.0, 25),  # 256 KiB left at 10 MiB/s: 25 ms
    (100 << 20, 10.0, 10),  # all moved, the end is near: the least delay
])
def test_the_suggested_status_delay_shortens_as_a_copy_nears_its_end(moved, elapsed, delay):
    """ESTIMATED STATUS UPDATE DELAY (SPC-4 6.24): 500 ms, or the time the copy's pace
    says is left when shorter, at least 10 ms: a poller learns of the end soon after."""
    import time

    from lio_xcopy.copy.manager import CopyJob, _status_delay

    job = CopyJob("d0", 1, 0, 1, [], transferred=moved, planned=100 << 20,
                  started=time.monotonic() - elapsed)
    assert _status_delay(job) == delay
