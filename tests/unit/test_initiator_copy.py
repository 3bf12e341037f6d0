"""The initiator tool's planning: segments, limits, operands (no device needed)."""

from __future__ import annotations

import pytest
from plugins.scsi_loopback import Reply, Scripted, Sent

from lio_xcopy.initiator.copy import (
    CopyRequest,
    CopyUsageError,
    Endpoint,
    build,
    parse_operands,
    plan_segments,
    sg_raw_line,
)
from lio_xcopy.scsi import spc, xcopy
from lio_xcopy.scsi.sense import TASK_ABORTED
from lio_xcopy.scsi.xcopy import BlockToBlock, BlockToStream, StreamToBlock, StreamToStream

OP = xcopy.OperatingParameters.from_limits(xcopy.Limits())


def disk(blocks=1 << 20, bs=512, n=1):
    return Endpoint(f"/dev/sg{n}", 0, spc.Designator(1, 3, bytes([0x60 + n]) * 16), bs, blocks)


def tape(n=9):
    return Endpoint(f"/dev/sg{n}", 1, spc.Designator(1, 3, bytes([0x60 + n]) * 16), 0, 0)


def test_disk_to_tape_segments_keep_records_whole():
    segs = plan_segments(disk(), tape(), CopyRequest(count=200000), OP)
    assert all(isinstance(s, BlockToStream) for s in segs)
    assert sum(s.number_of_blocks for s in segs) == 200000
    assert all(s.number_of_blocks * 512 % 65536 == 0 for s in segs[:-1])
    assert [s.lba for s in segs] == [sum(x.number_of_blocks for x in segs[:i])
                                     for i in range(len(segs))]


def test_tape_to_disk_defaults_to_the_rest_of_the_disk():
    segs = plan_segments(tape(), disk(blocks=100000), CopyRequest(seek=1000), OP)
    assert all(isinstance(s, StreamToBlock) for s in segs)
    assert segs[0].lba == 1000 and sum(s.number_of_blocks for s in segs) == 99000


def test_disk_to_disk_uses_block_to_block():
    segs = plan_segments(disk(n=1), disk(n=2), CopyRequest(count=70000, skip=5, seek=7), OP)
    assert [type(s) for s in segs] == [BlockToBlock, BlockToBlock]
    assert (segs[1].source_lba, segs[1].destination_lba) == (5 + 65535, 7 + 65535)


def test_tape_to_tape_needs_a_byte_count():
    with pytest.raises(CopyUsageError, match="count=BYTES"):
        plan_segments(tape(1), tape(2), CopyRequest(), OP)
    (seg,) = plan_segments(tape(1), tape(2), CopyRequest(count=10 << 20), OP)
    assert isinstance(seg, StreamToStream) and seg.byte_count == 10 << 20


def test_range_errors_say_what_to_do():
    with pytest.raises(CopyUsageError, match="give count="):
        plan_segments(disk(blocks=100), tape(), CopyRequest(count=50, skip=60), OP)
    with pytest.raises(CopyUsageError, match="does not fit"):
        plan_segments(disk(n=1), disk(blocks=10, n=2), CopyRequest(count=20), OP)


def test_too_many_segments_for_the_copy_manager():
    small = xcopy.OperatingParameters.from_limits(xcopy.Limits(max_segments=2))
    with pytest.raises(CopyUsageError, match="several runs"):
        build(disk(), tape(), CopyRequest(count=300000), small, 1)


def test_built_list_parses_back_with_both_cscds():
    plist, segs = build(disk(), tape(), CopyRequest(count=1000, record=10240), OP, 42)
    parsed = xcopy.parse_extended_copy(plist)
    assert parsed.header.list_identifier == 42
    assert parsed.header.list_id_usage == xcopy.ListIdUsage.HOLD
    assert [c.peripheral_device_type for c in parsed.cscds] == [0, 1]
    assert parsed.segments == tuple(segs)


def test_operands():
    ops, emit, progress = parse_operands(["if=/dev/sg1", "of=/dev/sg2", "count=8",
                                          "--emit-plist", "/tmp/p", "-q"])
    assert ops == {"if": "/dev/sg1", "of": "/dev/sg2", "count": "8"}
    assert str(emit) == "/tmp/p" and progress is False
    assert parse_operands(["if=a", "of=b", "--json"])[2] == "json"
    assert parse_operands(["if=a", "of=b"])[2] is True
    assert parse_operands(["if=a", "of=b", "--lid1"])[0]["lid1"] == "yes"
    with pytest.raises(CopyUsageError, match="missing of="):
        parse_operands(["if=/dev/sg1"])
    with pytest.raises(CopyUsageError, match="unknown operand"):
        parse_operands(["if=/dev/sg1", "of=/dev/sg2", "conv=sync"])


def test_a_start_past_the_end_is_said_without_negative_counts():
    with pytest.raises(CopyUsageError) as e:
        plan_segments(disk(blocks=131072), tape(), CopyRequest(skip=200000), OP)
    assert str(e.value) == ("/dev/sg1 has 131072 blocks: skip=200000 is past its end; give "
                            "skip= below 131072")
    with pytest.raises(CopyUsageError) as e:
        plan_segments(tape(), disk(blocks=100), CopyRequest(seek=60, count=50), OP)
    assert str(e.value) == ("/dev/sg1 has 100 blocks: seek=60 count=50 does not fit; give "
                            "count=40 or less (in blocks of the disk)")


def test_a_record_length_between_two_disks_is_refused():
    with pytest.raises(CopyUsageError) as e:
        plan_segments(disk(n=1), disk(n=2), CopyRequest(count=8, record=4096), OP)
    assert str(e.value) == ("tbs=4096 is the record length of a tape, and neither /dev/sg1 "
                            "nor /dev/sg2 is one: leave tbs= out")
    (seg,) = plan_segments(disk(n=1), tape(), CopyRequest(count=128), OP)
    assert seg.stream_transfer_length == 65536  # no tbs=: the default record


def test_skip_or_seek_on_a_tape_is_refused():
    with pytest.raises(CopyUsageError, match=r"skip=5: the source /dev/sg9 is a tape"):
        plan_segments(tape(), disk(), CopyRequest(skip=5), OP)
    with pytest.raises(CopyUsageError, match=r"seek=5: the destination /dev/sg9 is a tape"):
        plan_segments(disk(), tape(), CopyRequest(seek=5), OP)


@pytest.mark.parametrize(("args", "words"), [
    (["tbs=0"], "tbs=0 is no tape record length"),
    (["count=0"], "count=0 copies nothing"),
    (["bs=0"], "bs=0 is no block size"),
    (["count=-3"], "count=-3 is negative"),
    (["count=1", "count=2"], "count= is given twice (count=1 and count=2): give it once"),
    (["--quiet", "--json"], "give one"),
])
def test_meaningless_operands_are_refused_before_any_device(args, words, capsys):
    from lio_xcopy.initiator.copy import main

    assert main(["if=/nonexistent/sg1", "of=/nonexistent/sg2", *args]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("lio-xcopy copy: ")
    assert words in err


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_anywhere(flag, capsys):
    from lio_xcopy.initiator.copy import main

    assert main(["if=/nonexistent/sg1", flag, "of=/x"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: lio-xcopy copy ") and err == ""


def test_sg_raw_line():
    assert sg_raw_line("/dev/sg1", "p.bin", 300) == (
        "sg_raw -t 3600 -s 300 -i p.bin /dev/sg1 83 00 00 00 00 00 00 00 00 00 00 00 01 2c 00 00")


class _Reports:
    """A device whose TEST UNIT READYs report these unit attentions."""

    def __init__(self, *ascs):
        from lio_xcopy.scsi.sense import SenseData, SenseKey

        self.path = "/dev/sg9"
        self.sense = [SenseData(SenseKey.UNIT_ATTENTION, a) for a in ascs]

    def take_unit_attentions(self):
        return self.sense


@pytest.mark.parametrize("asc", [0x2900, 0x2800])
def test_a_tape_reset_or_reloaded_since_it_was_positioned_is_refused(asc):
    from lio_xcopy.initiator.copy import _refuse_lost_position

    with pytest.raises(CopyUsageError, match=r"position the tape \(mt rewind"):
        _refuse_lost_position(_Reports(), tape(), _Reports(0x3F0E, asc).sense)
    _refuse_lost_position(_Reports(), disk(), _Reports(0x3F0E, asc).sense)  # a disk has no position


def test_luns_data_changed_is_taken_and_the_copy_goes_on():
    from lio_xcopy.initiator.copy import _refuse_lost_position

    _refuse_lost_position(_Reports(), tape(), _Reports(0x3F0E, 0x3F0E).sense)


class _CopyTarget(Scripted):
    """Two handles to one LUN running a copy: EXTENDED COPY blocks on ``s`` until COPY
    OPERATION ABORT arrives on ``poll``, then ends TASK ABORTED; COPY STATUS reports
    what moved."""

    def __init__(self):
        import threading

        self.stopped = threading.Event()
        super().__init__(self.respond, "/dev/sg7")

    def respond(self, sent: Sent) -> Reply:
        cdb = sent.cdb
        if cdb[:2] == b"\x83\x00":  # EXTENDED COPY: runs until aborted
            assert self.stopped.wait(10)
            return Reply(TASK_ABORTED)
        if cdb[:2] == b"\x83\x1c":
            assert int.from_bytes(cdb[2:6], "big") == 7
            self.stopped.set()
            return Reply()
        status = xcopy.CopyStatus.for_bytes(
            xcopy.CopyCommandStatus.COMPLETED_WITH_ERRORS if self.stopped.is_set()
            else xcopy.CopyCommandStatus.IN_PROGRESS, 0, 3 << 20)
        return Reply(data=status.encode())


@pytest.mark.parametrize("stop", [True, False])
def test_ctrl_c_says_the_target_goes_on_and_stops_it_only_when_asked(stop):
    import io

    from lio_xcopy.initiator.copy import CopyStopped, ask_before_stopping, send_and_poll

    dev, err, asked = _CopyTarget(), io.StringIO(), []

    def operator(prompt):
        asked.append(prompt)
        return "y" if stop else ""

    def ctrl_c(st, seconds):
        raise KeyboardInterrupt

    decide = ask_before_stopping(dev.path, err, operator)
    with pytest.raises(CopyStopped if stop else KeyboardInterrupt) as e:
        send_and_poll(dev, dev, b"plist", 7, on_status=ctrl_c, interval=0.01,
                      on_interrupt=decide)
    said = err.getvalue()
    assert "the target goes on copying (list identifier 7 on /dev/sg7)" in said
    assert "sg_raw /dev/sg7 83 1c 00 00 00 07 00 00 00 00 00 00 00 00 00 00" in said
    assert asked == ["stop the copy on the target now? [y/N] "]
    aborts = [c for c in dev.cdbs if c[:2] == b"\x83\x1c"]
    if stop:
        assert len(aborts) == 1
        assert "3145728 bytes reached the destination" in str(e.value)
    else:
        assert aborts == []
        dev.stopped.set()  # let the worker thread end
    # not on a terminal: nothing is asked, the copy goes on
    assert ask_before_stopping(dev.path, io.StringIO(), None)(7) is False


# --- a header record and closing filemarks (SPC-4 6.4.6.8, 6.4.6.18) ---------------------------
def test_header_and_filemark_to_a_tape_are_one_parameter_list():
    header = b"HDR1 backup of db0\n"  # 19 bytes: the inline data is padded to 20
    plist, segs = build(disk(), tape(), CopyRequest(count=1000, header=header, filemarks=2),
                        OP, 9)
    p = xcopy.parse_extended_copy(plist)
    assert [s.TYPE_CODE for s in p.segments] == [0x04, 0x00, 0x10]
    assert p.segments[0] == xcopy.InlineToStream(1, 0, 19, 19)
    assert p.segments[2] == xcopy.WriteFilemarks(1, 2)
    assert p.inline_data == header + b"\x00"
    assert list(p.segments) == segs
    # the header bytes close the list, after the segment descriptors
    assert plist.endswith(header + b"\x00") and int.from_bytes(plist[12:16], "big") == 20
    # a locate first, when asked (the backup job's)
    _, segs = build(disk(), tape(), CopyRequest(count=8, locate=41), OP, 9)
    assert segs[0] == xcopy.Locate(1, 41) and [s.TYPE_CODE for s in segs] == [0x12, 0x00]
    # without them, the list is what it was
    plist, segs = build(disk(), tape(), CopyRequest(count=8), OP, 9)
    assert [s.TYPE_CODE for s in segs] == [0x00] and plist[12:16] == bytes(4)


LIO = xcopy.OperatingParameters.from_limits(xcopy.Limits(segment_types=(0x02,),
                                                         max_inline_data=0))


@pytest.mark.parametrize(("dst", "req", "op", "words"), [
    (disk(n=2), CopyRequest(count=8, header=b"x"), OP,
     "header= writes to a tape, and the destination /dev/sg2 is a disk: leave header= out"),
    (disk(n=2), CopyRequest(count=8, filemarks=1), OP,
     "filemark= writes to a tape, and the destination /dev/sg2 is a disk: leave filemark= out"),
    (tape(), CopyRequest(count=8, header=bytes(70000)), OP,
     "header= is 70000 bytes, and the copy manager takes at most 65536 bytes of inline data "
     "(MAXIMUM INLINE DATA LENGTH): give a header of at most 65536 bytes"),
    (tape(), CopyRequest(count=8, header=b"x"), LIO,
     "header= needs segment type 04h (inline->stream), which the copy manager does not list "
     "in OPERATING PARAMETERS: leave header= out and do it on the tape yourself (dd, mt)"),
    (tape(), CopyRequest(count=8, filemarks=1), LIO,
     "filemark= needs segment type 10h (write filemarks)"),
])
def test_header_and_filemark_refusals_say_what_to_do(dst, req, op, words):
    with pytest.raises(CopyUsageError) as e:
        build(disk(), dst, req, op, 1)
    assert str(e.value).startswith(words) and "\n" not in str(e.value)


def test_header_and_filemark_operands(tmp_path):
    from lio_xcopy.initiator.copy import request

    hdr = tmp_path / "hdr.bin"
    hdr.write_bytes(b"VOL1LABEL")
    req = request({"if": "a", "of": "b", "header": str(hdr), "filemark": "1"})
    assert (req.header, req.filemarks) == (b"VOL1LABEL", 1)
    assert request({"if": "a", "of": "b"}).header == b""


@pytest.mark.parametrize(("args", "words"), [
    (["header=/nonexistent/hdr"], "header=/nonexistent/hdr: No such file or directory: give "
                                  "a readable file"),
    (["header=/dev/null"], "header=/dev/null is empty"),
    (["filemark=0"], "filemark=0 writes no filemark"),
])
def test_header_and_filemark_operand_refusals(args, words, capsys):
    from lio_xcopy.initiator.copy import main

    assert main(["if=/nonexistent/sg1", "of=/nonexistent/sg2", *args]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"lio-xcopy copy: {words}") and err.count("\n") == 1


# --- LID4 with IMMED where the copy manager lists it (SPC-4 6.4, 6.24, 7.8.17) -------------
def lid4_target(commands=None, rsoc=(), statuses=()) -> Scripted:
    """A copy manager as the initiator sees it: its VPD page 8Fh (or none: INVALID
    FIELD IN CDB), REPORT SUPPORTED OPERATION CODES, and RECEIVE COPY STATUS (LID4)
    answers from ``statuses``; any other command completes GOOD."""
    from lio_xcopy.scsi import tpc_vpd
    from lio_xcopy.scsi.sense import Asc, SenseData, SenseKey

    statuses = list(statuses)

    def respond(sent: Sent) -> Reply:
        cdb = sent.cdb
        if cdb[0] == 0x12 and cdb[1] & 1:
            assert cdb[2] == 0x8F
            if commands is None:
                return Reply.check_condition(SenseData(SenseKey.ILLEGAL_REQUEST,
                                                       Asc.INVALID_FIELD_IN_CDB))
            return Reply(data=tpc_vpd.ThirdPartyCopyPage(
                0, (tpc_vpd.SupportedCommands(commands),)).encode())
        if cdb[0] == 0xA3:  # one command: SUPPORT 011b or 001b
            op, sa = cdb[3], int.from_bytes(cdb[4:6], "big")
            return Reply(data=bytes([0, 3 if (op, sa) in rsoc else 1, 0, 0]))
        if cdb[:2] == b"\x84\x05":
            assert int.from_bytes(cdb[2:6], "big") == 9
            return Reply(data=statuses.pop(0).encode())
        return Reply()

    return Scripted(respond, "/dev/sg5")


LID1_ONLY = ((0x83, (0x00,)), (0x84, (0x00, 0x03, 0x04)))
WITH_LID4 = ((0x83, (0x00, 0x01, 0x1C)), (0x84, (0x00, 0x03, 0x04, 0x05)))


@pytest.mark.parametrize(("commands", "rsoc", "lid4"), [
    (WITH_LID4, (), True),  # the Supported Commands descriptor lists both
    (LID1_ONLY, ((0x83, 1), (0x84, 5)), False),  # the page is believed
    (None, ((0x83, 1), (0x84, 5)), True),  # no page: asked one command at a time
    (None, ((0x83, 1),), False),  # EXTENDED COPY (LID4) without its status: LID1
    (None, (), False),
])
def test_lid4_is_used_only_where_the_copy_manager_lists_it(commands, rsoc, lid4):
    from lio_xcopy.initiator.copy import supports_lid4

    dev = lid4_target(commands, rsoc)
    assert supports_lid4(dev) is lid4
    asked = [c for c in dev.cdbs if c[0] == 0xA3]
    assert (asked == []) == (commands is not None)
    if asked:  # reporting options 010b: by operation code and service action
        assert asked[0][2] & 0x07 == 2 and asked[0][3:6] == bytes([0x83, 0, 1])


def test_a_lid4_build_and_its_sg_raw_lines():
    from lio_xcopy.initiator.copy import status_line

    plist, _ = build(disk(n=1), disk(n=2), CopyRequest(count=8), OP, 9, lid4=True)
    p = xcopy.parse_extended_copy_lid4(plist)
    assert (p.header.list_identifier, p.header.immed) == (9, True)
    assert p.header.list_id_usage == xcopy.ListIdUsage.HOLD
    assert sg_raw_line("/dev/sg1", "p.bin", 300, lid4=True) == (
        "sg_raw -t 3600 -s 300 -i p.bin /dev/sg1 83 01 00 00 00 00 00 00 00 00 00 00 01 2c 00 00")
    assert status_line("/dev/sg1", 9) == (
        "sg_raw -r 284 /dev/sg1 84 05 00 00 00 09 00 00 00 00 00 00 01 1c 00 00")


def _lid4(status, count, **kw):
    return xcopy.CopyStatusLid4(0x01, status, count, 1, estimated_status_update_delay=1, **kw)


def test_an_immed_copy_is_polled_until_it_ends():
    from lio_xcopy.initiator.copy import send_and_poll

    S = xcopy.CopyOperationStatus
    dev = lid4_target(statuses=[_lid4(S.IN_PROGRESS_BACKGROUND, 1 << 20),
                                _lid4(S.IN_PROGRESS_BACKGROUND, 2 << 20),
                                _lid4(S.COMPLETED, 3 << 20, operation_counter=6)])
    seen = []
    st, _ = send_and_poll(dev, dev, b"plist", 9, interval=0.001, lid4=True,
                          on_status=lambda s, t: seen.append(s.transferred_bytes))
    assert seen == [1 << 20, 2 << 20]  # progress from the polled TRANSFER COUNT
    assert (st.status, st.transferred_bytes) == (S.COMPLETED, 3 << 20)
    assert [c[:2] for c in dev.cdbs] == [b"\x83\x01"] + [b"\x84\x05"] * 3


@pytest.mark.parametrize(("status", "completion", "key"), [
    (xcopy.CopyOperationStatus.COMPLETED_WITH_ERRORS, 0x02, 0x0A),  # COPY ABORTED
    (xcopy.CopyOperationStatus.TERMINATED, 0x40, None),  # COPY OPERATION ABORT
])
def test_a_background_copy_that_fails_raises_what_the_command_would_have(
        status, completion, key):
    from lio_xcopy.initiator.copy import send_and_poll
    from lio_xcopy.scsi.sense import SenseData, SenseKey
    from lio_xcopy.sg.sgio import ScsiCommandError

    sense = SenseData(SenseKey.COPY_ABORTED, 0x0D01, command_specific=2).fixed() \
        if key else b""
    dev = lid4_target(statuses=[_lid4(status, 4096, completion_status=completion,
                                      sense_data=sense)])
    with pytest.raises(ScsiCommandError) as e:
        send_and_poll(dev, dev, b"plist", 9, interval=0.001, lid4=True)
    assert e.value.status == completion
    assert e.value.key == key
    assert "in the background" in str(e.value)


def test_the_poller_waits_what_the_copy_manager_suggests(monkeypatch):
    """ESTIMATED STATUS UPDATE DELAY (SPC-4 6.24) sets the wait between polls; with none
    (FFFFFFFFh: unknown) the poller starts soon and backs off to its interval."""
    from lio_xcopy.initiator import copy as initiator_copy

    S = xcopy.CopyOperationStatus
    slept: list[float] = []
    monkeypatch.setattr(initiator_copy.time, "sleep", slept.append)

    def status(delay):
        return xcopy.CopyStatusLid4(0x01, S.IN_PROGRESS_BACKGROUND, 1, 1,
                                    estimated_status_update_delay=delay)

    done = _lid4(S.COMPLETED, 3)
    dev = lid4_target(statuses=[status(25), status(10), status(7000), done])
    initiator_copy.send_and_poll(dev, dev, b"plist", 9, interval=0.5, lid4=True)
    assert slept == [0.025, 0.01, 5.0]
    slept.clear()
    unknown = xcopy.STATUS_UPDATE_DELAY_UNKNOWN
    dev = lid4_target(statuses=[status(unknown)] * 7 + [done])
    initiator_copy.send_and_poll(dev, dev, b"plist", 9, interval=0.5, lid4=True)
    assert slept == [0.02, 0.04, 0.08, 0.16, 0.32, 0.5, 0.5]
