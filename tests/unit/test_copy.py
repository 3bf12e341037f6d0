"""The copy manager over real devices on temp files: bytes, tape records, sense."""

from __future__ import annotations

import errno
import os

import pytest
from plugins.copy_lab import cscd, read_file, run, tape_records
from plugins.copy_steps import ScriptedEnd

from lio_xcopy.copy.manager import HELD_RESULTS_SECONDS, CopyAborted, CopyManager
from lio_xcopy.devices.base import Command
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.scsi import spc, xcopy
from lio_xcopy.scsi.errors import CheckCondition, IllegalRequest, MediumError
from lio_xcopy.scsi.sense import Asc, SenseData, SenseKey
from lio_xcopy.scsi.vendor_sense import PolicyApart
from lio_xcopy.scsi.xcopy import (
    BlockToBlock,
    BlockToStream,
    ListIdUsage,
    StreamToBlock,
    StreamToStream,
)
from lio_xcopy.sg.sgio import explain_sense

MiB = 1 << 20


@pytest.fixture
def lab(copy_lab):
    return copy_lab




def test_disk_to_tape_then_tape_to_disk_round_trip(lab):
    data = os.urandom(2 * MiB)
    src, t, dst = lab.disk("src", data=data), lab.tape("t0"), lab.disk("dst")
    blocks = len(data) // 512
    run(lab.manager, src, [(src, {}), (t, {})],
        [BlockToStream(0, 1, 2048, 0, 65536), BlockToStream(0, 1, blocks - 2048, 2048, 65536)])
    recs = tape_records(t)
    assert [len(r) for r in recs] == [65536] * 32
    assert b"".join(recs) == data
    t.rewind()
    run(lab.manager, dst, [(t, {}), (dst, {})], [StreamToBlock(0, 1, blocks, 0, 65536)])
    assert (read_file(dst)[: len(data)]) == data


def test_odd_record_size_leaves_a_short_last_record(lab):
    data = os.urandom(100 * 512)
    src, t = lab.disk("src", data=data), lab.tape("t0")
    run(lab.manager, src, [(src, {}), (t, {})], [BlockToStream(0, 1, 100, 0, 10240)])
    recs = tape_records(t)
    assert [len(r) for r in recs] == [10240] * 5
    assert b"".join(recs) == data


def test_fixed_mode_cscd_writes_fixed_blocks_and_pads(lab):
    data = os.urandom(3 * 512)
    src, t = lab.disk("src", data=data + bytes(MiB)), lab.tape("t0")
    run(lab.manager, src, [(src, {}), (t, {"block_length": 1024, "fixed": True, "pad": True})],
        [BlockToStream(0, 1, 3, 0, 4)])
    recs = tape_records(t)
    assert [len(r) for r in recs] == [1024, 1024]
    assert recs[0] + recs[1] == data + bytes(512)


def test_fixed_mode_without_pad_is_an_inexact_segment(lab):
    src, t = lab.disk("src"), lab.tape("t0")
    with pytest.raises(CopyAborted) as e:
        run(lab.manager, src, [(src, {}), (t, {"block_length": 1024, "fixed": True})],
            [BlockToStream(0, 1, 3, 0, 4)])
    assert e.value.sense.asc == Asc.UNEXPECTED_INEXACT_SEGMENT


def test_disk_to_disk_with_dc_and_different_block_sizes(lab):
    data = os.urandom(MiB)
    src = lab.disk("src", data=data)
    dst = lab.disk("dst", block_size=4096)
    run(lab.manager, src, [(src, {}), (dst, {})],
        [BlockToBlock(0, 1, 64, 0, 10, dc=True),       # 64 destination blocks = 256 KiB
         BlockToBlock(0, 1, 512, 512, 10 + 64)])       # 512 source blocks = 256 KiB
    got = read_file(dst)
    assert got[10 * 4096 : 10 * 4096 + 512 * 1024] == data[: 512 * 1024]


def test_tape_to_tape_rebuffers_records(lab):
    a, b = lab.tape("a"), lab.tape("b")
    payload = os.urandom(300000)
    buf = DataBuffer.of(bytearray(payload))
    for off in range(0, len(payload), 100000):
        a.write_record(buf, 100000, start=off)
    a.rewind()
    run(lab.manager, a, [(a, {}), (b, {})], [StreamToStream(0, 1, 300000, 100000, 65536)])
    recs = tape_records(b)
    assert [len(r) for r in recs] == [65536] * 4 + [300000 - 4 * 65536]
    assert b"".join(recs) == payload


def test_local_cscd_id_ffff_is_the_receiving_lun(lab):
    data = os.urandom(64 * 512)
    src, dst = lab.disk("src", data=data), lab.disk("dst")
    run(lab.manager, src, [(dst, {})], [BlockToBlock(0xFFFF, 0, 64, 0, 0)])
    assert read_file(dst)[: len(data)] == data


def test_unknown_designator_is_copy_target_device_not_reachable(lab):
    src = lab.disk("src")
    stranger = lab.disk("stranger")  # exists, but this manager does not serve it
    data = xcopy.build_extended_copy([cscd(src), cscd(stranger)],
                                     [BlockToBlock(0, 1, 1, 0, 0)])
    lab.manager.register(src)
    with pytest.raises(CopyAborted) as e:
        lab.manager.extended_copy(src, data)
    s = e.value.sense
    assert (s.key, s.asc) == (SenseKey.COPY_ABORTED, Asc.COPY_TARGET_DEVICE_NOT_REACHABLE)
    assert s.sense_key_specific == b"\x80\x00\x30"  # CSCD 1 at byte 48, SD clear


def test_wrong_device_type_for_segment(lab):
    src, t = lab.disk("src"), lab.tape("t0")
    with pytest.raises(CopyAborted) as e:
        run(lab.manager, src, [(src, {}), (t, {})], [BlockToBlock(0, 1, 1, 0, 0)])
    assert e.value.sense.asc == Asc.INCORRECT_COPY_TARGET_DEVICE_TYPE
    assert e.value.sense.command_specific == 0


def test_block_range_past_the_end_refused_before_any_io(lab):
    data = os.urandom(MiB)
    src, dst = lab.disk("src", data=data), lab.disk("dst", size=MiB)
    with pytest.raises(CopyAborted) as e:
        run(lab.manager, src, [(src, {}), (dst, {})],
            [BlockToBlock(0, 1, 8, 0, 0), BlockToBlock(0, 1, 8, 0, 2045)])
    s = e.value.sense
    assert (s.key, s.asc, s.command_specific) == (
        SenseKey.COPY_ABORTED, Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE, 1)
    assert read_file(dst) == bytes(MiB)  # segment 0 did not run either


def test_end_of_data_mid_copy_aborts_with_underrun_and_details(lab):
    t, dst = lab.tape("t0"), lab.disk("dst")
    t.write_record(DataBuffer.of(bytearray(os.urandom(8192))), 8192)
    t.rewind()
    with pytest.raises(CopyAborted) as e:
        run(lab.manager, dst, [(t, {}), (dst, {})], [StreamToBlock(0, 1, 64, 0, 8192)],
            list_identifier=7, list_id_usage=ListIdUsage.HOLD)
    s = e.value.sense
    assert (s.key, s.asc) == (SenseKey.COPY_ABORTED, Asc.COPY_TARGET_DEVICE_DATA_UNDERRUN)
    details = lab.manager.receive_copy_results(
        dst, xcopy.ReceiveCopyResultsFailedSegmentDetails(list_identifier=7))
    fsd = xcopy.FailedSegmentDetails.parse(details)
    assert fsd.sense.key == SenseKey.BLANK_CHECK
    status = xcopy.CopyStatus.parse(lab.manager.receive_copy_results(
        dst, xcopy.ReceiveCopyResultsCopyStatus(list_identifier=7)))
    assert status.status == xcopy.CopyCommandStatus.COMPLETED_WITH_ERRORS
    assert status.transferred_bytes == 8192  # the first record reached the disk


def test_tape_full_mid_copy_is_copy_aborted_and_keeps_what_was_written(lab):
    data = os.urandom(3 * MiB)
    src, t = lab.disk("src", data=data), lab.tape("t0", capacity=2 * MiB)
    with pytest.raises(CopyAborted) as e:
        run(lab.manager, src, [(src, {}), (t, {})],
            [BlockToStream(0, 1, len(data) // 512, 0, 65536)])
    s = e.value.sense
    assert (s.key, s.asc) == (SenseKey.COPY_ABORTED, Asc.END_OF_PARTITION_MEDIUM_DETECTED)
    assert e.value.cause.key == SenseKey.VOLUME_OVERFLOW
    recs = tape_records(t)
    assert b"".join(recs) == data[: len(b"".join(recs))] and len(recs) > 20


def test_copy_status_and_operating_parameters(lab):
    data = os.urandom(MiB)
    src, dst = lab.disk("src", data=data), lab.disk("dst")
    run(lab.manager, src, [(src, {}), (dst, {})], [BlockToBlock(0, 1, 2048, 0, 0)],
        list_identifier=3, list_id_usage=ListIdUsage.HOLD)
    st = xcopy.CopyStatus.parse(lab.manager.receive_copy_results(
        src, xcopy.ReceiveCopyResultsCopyStatus(list_identifier=3)))
    assert (st.status, st.segments_processed, st.transferred_bytes) == (
        xcopy.CopyCommandStatus.COMPLETED, 1, MiB)
    op = xcopy.OperatingParameters.parse(lab.manager.receive_copy_results(
        src, xcopy.ReceiveCopyResultsOperatingParameters()))
    assert op.max_segment_count >= 256 and op.max_segment_length >= 256 * MiB
    assert op.implemented_descriptor_types == (*range(0x14), 0xE4, 0xFE)
    assert op.held_data_limit == xcopy.HELD_DATA_LIMIT
    assert op.max_inline_data_length == xcopy.MAX_INLINE_DATA
    with pytest.raises(IllegalRequest):  # an unknown list identifier
        lab.manager.receive_copy_results(
            src, xcopy.ReceiveCopyResultsCopyStatus(list_identifier=99))


def test_inquiry_reports_3pc_once_a_copy_manager_serves_the_lun(lab):
    d = lab.disk("d")
    buf = DataBuffer.allocate(96)
    d.handle(Command(spc.Inquiry(allocation_length=96).encode(), buf))
    assert not buf.tobytes()[5] & 0x08
    lab.manager.register(d)
    d.handle(Command(spc.Inquiry(allocation_length=96).encode(), buf))
    assert buf.tobytes()[5] & 0x08


def test_zero_length_parameter_list_is_good(lab):
    d = lab.disk("d")
    lab.manager.register(d)
    assert d.handle(Command(xcopy.ExtendedCopyLid1().encode())) == 0


def test_cat_carries_the_residual_into_the_next_segment(lab):
    data = os.urandom(3 * 512)
    src, t = lab.disk("src", data=data + bytes(MiB)), lab.tape("t0")
    # 1.5 records then 1.5 records: with CAT the half record joins the next segment
    run(lab.manager, src, [(src, {}), (t, {})],
        [BlockToStream(0, 1, 1, 0, 1024, cat=True), BlockToStream(0, 1, 2, 1, 1024)])
    recs = tape_records(t)
    assert [len(r) for r in recs] == [1024, 512]
    assert b"".join(recs) == data


def test_without_cat_each_segment_ends_its_own_records(lab):
    data = os.urandom(3 * 512)
    src, t = lab.disk("src", data=data + bytes(MiB)), lab.tape("t0")
    run(lab.manager, src, [(src, {}), (t, {})],
        [BlockToStream(0, 1, 1, 0, 1024), BlockToStream(0, 1, 2, 1, 1024)])
    assert [len(r) for r in tape_records(t)] == [512, 1024]


def test_cat_on_stream_to_block_keeps_a_long_record_for_the_next_segment(lab):
    t, dst = lab.tape("t0"), lab.disk("dst")
    data = os.urandom(3 * 1024)
    buf = DataBuffer.of(bytearray(data))
    for off in range(0, len(data), 1024):
        t.write_record(buf, 1024, start=off)
    t.rewind()
    # segment 0 wants 1.5 records' worth (3 blocks of 512): the second record's tail
    # belongs to segment 1 (CAT), which writes it at LBA 10
    run(lab.manager, dst, [(t, {}), (dst, {})],
        [StreamToBlock(0, 1, 3, 0, 1024, cat=True), StreamToBlock(0, 1, 3, 10, 1024)])
    disk = read_file(dst)
    assert disk[: 3 * 512] == data[: 3 * 512]
    assert disk[10 * 512 : 13 * 512] == data[3 * 512 :]


def test_long_record_without_cat_or_pad_is_an_inexact_segment(lab):
    t, dst = lab.tape("t0"), lab.disk("dst")
    t.write_record(DataBuffer.of(bytearray(os.urandom(1024))), 1024)
    t.rewind()
    with pytest.raises(CopyAborted) as e:
        run(lab.manager, dst, [(t, {}), (dst, {})], [StreamToBlock(0, 1, 1, 0, 1024)])
    assert e.value.sense.asc == Asc.UNEXPECTED_INEXACT_SEGMENT


def test_pad_on_the_source_discards_the_rest_of_a_long_record(lab):
    t, dst = lab.tape("t0"), lab.disk("dst")
    data = os.urandom(1024)
    t.write_record(DataBuffer.of(bytearray(data)), 1024)
    t.rewind()
    run(lab.manager, dst, [(t, {"pad": True}), (dst, {})], [StreamToBlock(0, 1, 1, 0, 1024)])
    assert read_file(dst)[:1024] == data[:512] + bytes(512)


def test_copy_access_policy_refuses_a_lun_kept_apart(lab):
    src, dst = lab.disk("src"), lab.disk("dst")
    lab.manager.policy = lambda receiving, other: other.identity.name != "dst"
    with pytest.raises(CopyAborted) as e:
        run(lab.manager, src, [(src, {}), (dst, {})], [BlockToBlock(0, 1, 8, 0, 0)])
    assert e.value.sense.asc == Asc.COPY_TARGET_DEVICE_NOT_REACHABLE
    # the reason travels in the sense's vendor-specific bytes, and the backup server's
    # tools say it: which LUNs, and what to do on the target
    wire = SenseData.parse(e.value.sense.fixed())
    assert PolicyApart.decode(wire.vendor) == PolicyApart("src", "dst")
    assert PolicyApart.decode(SenseData.parse(e.value.sense.descriptor()).vendor) \
        == PolicyApart("src", "dst")
    words = explain_sense(wire)
    assert "COPY TARGET DEVICE NOT REACHABLE" in words
    assert "copy access policy keeps src and dst apart" in words
    assert "/copy_groups create name=GROUP members=src,dst" in words
    # the receiving LUN itself is always reachable
    run(lab.manager, src, [(src, {})], [BlockToBlock(0, 0, 8, 0, 8)])


@pytest.mark.parametrize("algorithm", [None, "xxh3-128", "sha256"])
def test_copy_digest_of_a_backup_equals_its_restore(lab, algorithm):
    """RECEIVE COPY DIGEST (vendor specific C5h): the digest (the copy manager's
    setting: XXH3-128 by default, or SHA-256) of the bytes each copy moved, so the backup
    server verifies a restore against its backup without reading data."""
    import hashlib

    import xxhash

    if algorithm is not None:
        lab.manager.digest_algorithm = xcopy.DigestAlgorithm.named(algorithm)
    code = xcopy.DigestAlgorithm.named(algorithm or "xxh3-128")
    data = os.urandom(MiB + 512)
    src, t, dst = lab.disk("src", data=data + bytes(512)), lab.tape("t0"), lab.disk("dst")
    blocks = len(data) // 512

    def digest(receiving, list_id):
        cdb = xcopy.ReceiveCopyDigest(list_identifier=list_id, allocation_length=48)
        out = bytearray(48)
        receiving.handle(Command(cdb.encode(), DataBuffer.of(out)))
        return xcopy.parse_copy_digest(bytes(out))

    run(lab.manager, src, [(src, {}), (t, {})], [BlockToStream(0, 1, blocks, 0, 65536)],
        list_identifier=5, list_id_usage=ListIdUsage.HOLD)
    backup = digest(src, 5)
    assert (backup.status, backup.byte_count) == (xcopy.CopyCommandStatus.COMPLETED, len(data))
    assert backup.algorithm == code
    want = (hashlib.sha256(data) if code == xcopy.DigestAlgorithm.SHA256
            else xxhash.xxh3_128(data)).digest()
    assert backup.value == want and backup.digest == want.ljust(32, b"\0")
    t.rewind()
    run(lab.manager, dst, [(t, {}), (dst, {})], [StreamToBlock(0, 1, blocks, 0, 65536)],
        list_identifier=6, list_id_usage=ListIdUsage.HOLD)
    assert digest(dst, 6).digest == backup.digest
    with pytest.raises(IllegalRequest):
        digest(dst, 5)  # list identifiers belong to the LUN that received the copy


def test_a_copy_failing_midway_reports_exactly_how_far_it_got(lab):
    """The destination fails its third write (MEDIUM ERROR, WRITE ERROR at the LBA it
    was to write): COPY ABORTED with WRITE ERROR, COPY STATUS counts exactly the two
    chunks that reached the disk, FAILED SEGMENT DETAILS carries the disk's own sense,
    and the disk holds those bytes only."""
    data = os.urandom(MiB)
    src, dst = lab.disk("src", data=data), lab.disk("dst", size=MiB)
    failing = ScriptedEnd(dst)  # the copy end in the disk's place

    def write_error() -> None:  # at the first LBA the call was to write
        raise MediumError(Asc.WRITE_ERROR, failing.made[-1][1][0])

    failing.at("write_blocks", 3, write_error)
    with pytest.raises(CheckCondition) as e:
        run(lab.manager, src, [(src, {}), (failing, {})], [BlockToBlock(0, 1, 2048, 0, 0)],
            list_identifier=9, list_id_usage=ListIdUsage.HOLD)
    assert (e.value.sense.key, e.value.sense.asc) == (SenseKey.COPY_ABORTED, Asc.WRITE_ERROR)
    lbas = [args[0] for name, args in failing.made if name == "write_blocks"]
    assert len(lbas) == 3  # nothing written after the failure
    chunk = (lbas[1] - lbas[0]) * 512  # whole blocks of both disks per write
    assert lbas[2] * 512 == 2 * chunk
    st = xcopy.CopyStatus.parse(lab.manager.receive_copy_results(
        src, xcopy.ReceiveCopyResultsCopyStatus(list_identifier=9)))
    assert (st.status, st.segments_processed, st.transferred_bytes) == (
        xcopy.CopyCommandStatus.COMPLETED_WITH_ERRORS, 0, 2 * chunk)
    details = xcopy.FailedSegmentDetails.parse(lab.manager.receive_copy_results(
        src, xcopy.ReceiveCopyResultsFailedSegmentDetails(list_identifier=9)))
    sense = SenseData.parse(details.sense_data)
    assert (sense.key, sense.asc, sense.information) == (SenseKey.MEDIUM_ERROR,
                                                         Asc.WRITE_ERROR, 2 * chunk // 512)
    got = read_file(dst)
    assert got[: 2 * chunk] == data[: 2 * chunk] and got[2 * chunk:] == bytes(MiB - 2 * chunk)


def test_a_tape_whose_power_on_the_initiator_has_not_seen_takes_no_copy(lab):
    """After a daemon restart the drive is at BOT: an EXTENDED COPY the initiator retried
    must not write there before the initiator has seen the power on and positioned."""
    data = os.urandom(256 * 1024)
    src, t = lab.disk("src", data=data), lab.tape("t0")
    t.write_record(DataBuffer.of(bytearray(b"file 0 of the cartridge")), 23)
    t.write_filemarks(1)
    t.rewind()
    t.power_on()
    with pytest.raises(CopyAborted) as e:
        run(lab.manager, src, [(src, {}), (t, {})], [BlockToStream(0, 1, 512, 0, 65536)])
    s = e.value.sense
    assert (s.key, s.asc) == (SenseKey.COPY_ABORTED,
                              Asc.POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED)
    assert tape_records(t) == [b"file 0 of the cartridge", None]  # untouched
    with pytest.raises(CheckCondition) as ua:  # the initiator's next command sees it ...
        t.handle(Command(spc.TestUnitReady().encode(), DataBuffer()))
    assert ua.value.sense.key == SenseKey.UNIT_ATTENTION
    t.rewind()
    t.medium.space_filemarks(1)  # ... positions, and the copy runs
    run(lab.manager, src, [(src, {}), (t, {})], [BlockToStream(0, 1, 512, 0, 65536)])
    recs = tape_records(t)
    assert recs[:2] == [b"file 0 of the cartridge", None] and b"".join(recs[2:]) == data


# --- a failing backing store (tests/unit/faults.py) ---------------------------------------
def copy_results(manager, lun, list_id):
    """COPY STATUS, and the device's sense from FAILED SEGMENT DETAILS."""
    from lio_xcopy.scsi.sense import SenseData

    st = xcopy.CopyStatus.parse(manager.receive_copy_results(
        lun, xcopy.ReceiveCopyResultsCopyStatus(list_identifier=list_id)))
    details = xcopy.FailedSegmentDetails.parse(manager.receive_copy_results(
        lun, xcopy.ReceiveCopyResultsFailedSegmentDetails(list_identifier=list_id)))
    assert st.status == xcopy.CopyCommandStatus.COMPLETED_WITH_ERRORS
    return st, SenseData.parse(details.sense_data)


def aborted(manager, receiving, cscds, segments, list_id):
    with pytest.raises(CheckCondition) as e:
        run(manager, receiving, cscds, segments, list_identifier=list_id,
            list_id_usage=ListIdUsage.HOLD)
    return e.value.sense


def test_a_source_read_error_aborts_its_segment_with_the_bytes_on_tape(lab, faults):
    """Segment 1's source fails at LBA 3000: COPY ABORTED, UNRECOVERED READ ERROR in
    segment 1; FAILED SEGMENT DETAILS holds the disk's MEDIUM ERROR at LBA 3000; the
    transfer count is exactly what the tape holds, the source's first bytes."""
    data = os.urandom(2 * MiB)
    src, t = lab.disk("src", data=data), lab.tape("t0")
    faults.fail_read(src.store.path, at=3000 * 512, length=512)
    sense = aborted(lab.manager, src, [(src, {}), (t, {})],
                    [BlockToStream(0, 1, 2048, 0, 65536), BlockToStream(0, 1, 2048, 2048, 65536)],
                    list_id=3)
    assert (sense.key, sense.asc, sense.command_specific) == (
        SenseKey.COPY_ABORTED, Asc.UNRECOVERED_READ_ERROR, 1)
    st, cause = copy_results(lab.manager, src, 3)
    assert (cause.key, cause.asc, cause.information) == (
        SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR, 3000)
    faults.heal()
    on_tape = b"".join(tape_records(t))
    assert st.segments_processed == 1
    assert 1 * MiB < st.transferred_bytes == len(on_tape) <= 3000 * 512
    assert on_tape == data[: len(on_tape)]


def test_a_destination_write_error_counts_the_blocks_before_its_lba(lab, faults):
    """The destination fails at LBA 300, inside a chunk: blocks 0-299 reached it and
    are counted, nothing after them was written."""
    data = os.urandom(MiB)
    src, dst = lab.disk("src", data=data), lab.disk("dst", size=MiB)
    faults.fail_write(dst.store.path, at=300 * 512)
    sense = aborted(lab.manager, src, [(src, {}), (dst, {})], [BlockToBlock(0, 1, 2048, 0, 0)],
                    list_id=4)
    assert (sense.key, sense.asc, sense.command_specific) == (
        SenseKey.COPY_ABORTED, Asc.WRITE_ERROR, 0)
    st, cause = copy_results(lab.manager, src, 4)
    assert (cause.key, cause.asc, cause.information) == (SenseKey.MEDIUM_ERROR,
                                                         Asc.WRITE_ERROR, 300)
    assert st.transferred_bytes == 300 * 512
    got = read_file(dst)
    assert got[: 300 * 512] == data[: 300 * 512] and got[300 * 512 :] == bytes(MiB - 300 * 512)


def test_a_full_destination_is_data_protect_in_failed_segment_details(lab, faults):
    data = os.urandom(256 * 1024)
    src, dst = lab.disk("src", data=data), lab.disk("dst", size=MiB)
    faults.fail_write(dst.store.path, at=100 * 512, err=errno.ENOSPC)
    sense = aborted(lab.manager, src, [(src, {}), (dst, {})], [BlockToBlock(0, 1, 512, 0, 0)],
                    list_id=5)
    assert (sense.key, sense.asc) == (SenseKey.COPY_ABORTED,
                                      Asc.SPACE_ALLOCATION_FAILED_WRITE_PROTECT)
    st, cause = copy_results(lab.manager, src, 5)
    assert (cause.key, cause.asc, cause.information) == (
        SenseKey.DATA_PROTECT, Asc.SPACE_ALLOCATION_FAILED_WRITE_PROTECT, 100)
    assert st.transferred_bytes == 100 * 512
    assert read_file(dst)[: 100 * 512] == data[: 100 * 512]


def test_a_fixed_mode_tape_failing_mid_write_counts_each_record_written(lab, faults):
    """16 fixed 512-byte blocks per WRITE; the tape fails on its 21st record: exactly
    20 records' bytes are counted, and the tape holds those 20."""
    from lio_xcopy.devices.awstape import footprint

    data = os.urandom(64 * 512)
    src, t = lab.disk("src", data=data), lab.tape("t0")
    faults.fail_write(t.cartridge, at=20 * footprint(512) + 3)
    aborted(lab.manager, src, [(src, {}), (t, {"block_length": 512, "fixed": True})],
            [BlockToStream(0, 1, 64, 0, 16)], list_id=6)
    st, cause = copy_results(lab.manager, src, 6)
    assert (cause.key, cause.asc, cause.information) == (SenseKey.MEDIUM_ERROR,
                                                         Asc.WRITE_ERROR, 512)
    faults.heal()
    assert st.transferred_bytes == 20 * 512
    assert b"".join(tape_records(t)) == data[: 20 * 512]


def test_a_tape_read_error_aborts_a_restore_after_what_was_read(lab, faults):
    from lio_xcopy.devices.awstape import footprint

    recs = [os.urandom(65536) for _ in range(8)]
    t, dst = lab.tape("t0"), lab.disk("dst", size=MiB)
    for r in recs:
        t.write_record(DataBuffer.of(r), len(r))
    t.rewind()
    faults.fail_read(t.cartridge, at=5 * footprint(65536) + 1000, length=1)
    sense = aborted(lab.manager, dst, [(t, {}), (dst, {})],
                    [StreamToBlock(0, 1, 1024, 0, 65536)], list_id=7)
    assert (sense.key, sense.asc) == (SenseKey.COPY_ABORTED, Asc.UNRECOVERED_READ_ERROR)
    st, cause = copy_results(lab.manager, dst, 7)
    assert (cause.key, cause.asc) == (SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR)
    assert st.transferred_bytes == 5 * 65536
    got = read_file(dst)
    assert got[: 5 * 65536] == b"".join(recs[:5]) and got[5 * 65536 :] == bytes(MiB - 5 * 65536)


def test_finished_copies_hold_no_buffers(lab):
    """RECEIVE COPY RESULTS keeps up to 64 finished copies per LUN; what they keep is
    their status and sense, not the staging buffers of the segment that failed (each
    here 2 MiB: the tape fills in the middle of a chunk)."""
    import gc
    import tracemalloc

    lab.manager.chunk = MiB
    src = lab.disk("src", data=os.urandom(3 * MiB))
    tapes = [lab.tape(f"t{i}", capacity=MiB) for i in range(2)]
    tracemalloc.start()
    try:
        for i in range(24):
            tapes[i % 2].rewind()
            aborted(lab.manager, src, [(src, {}), (tapes[i % 2], {})],
                    [BlockToStream(0, 1, 6144, 0, 65536)], list_id=i)
            if i == 3:
                gc.collect()
                before = tracemalloc.get_traced_memory()[0]
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert copy_results(lab.manager, src, 0)[1].key == SenseKey.VOLUME_OVERFLOW
    assert grown < MiB, f"20 finished copies hold {grown} bytes"


class FakeClock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _copy_status(manager, dev, list_identifier):
    return xcopy.CopyStatus.parse(manager.receive_copy_results(
        dev, xcopy.ReceiveCopyResultsCopyStatus(list_identifier=list_identifier)))


def _no_held_results(manager, dev, list_identifier):
    """RECEIVE COPY RESULTS for the list identifier answers INVALID FIELD IN CDB."""
    for cdb in (xcopy.ReceiveCopyResultsCopyStatus(list_identifier=list_identifier),
                xcopy.ReceiveCopyResultsFailedSegmentDetails(
                    list_identifier=list_identifier)):
        with pytest.raises(IllegalRequest) as e:
            manager.receive_copy_results(dev, cdb)
        s = e.value.sense
        assert (s.key, s.asc) == (SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB)
    return True


@pytest.fixture
def timed(lab):
    """A manager on a fake clock and a copy with list identifier 5 that finished at it."""
    clock = FakeClock()
    manager = CopyManager(chunk=64 * 1024, clock=clock)
    src, dst = lab.disk("src", data=os.urandom(MiB)), lab.disk("dst")
    run(manager, src, [(src, {}), (dst, {})], [BlockToBlock(0, 1, 2048, 0, 0)],
        list_identifier=5, list_id_usage=ListIdUsage.HOLD)
    return manager, clock, src


def test_finished_results_are_held_until_the_bound(timed):
    manager, clock, src = timed
    clock.now += HELD_RESULTS_SECONDS - 1
    st = _copy_status(manager, src, 5)
    assert (st.status, st.transferred_bytes) == (xcopy.CopyCommandStatus.COMPLETED, MiB)
    st = _copy_status(manager, src, 5)  # reporting them does not drop them
    assert st.status == xcopy.CopyCommandStatus.COMPLETED
    assert [j.list_id for j in manager.jobs()] == [5]


def test_finished_results_expire_after_the_bound(timed):
    manager, clock, src = timed
    clock.now += HELD_RESULTS_SECONDS
    assert _no_held_results(manager, src, 5)
    assert manager.jobs() == []


def test_a_list_identifier_never_used_has_no_held_results(timed):
    manager, _, src = timed
    assert _no_held_results(manager, src, 6)


def test_by_default_each_copy_runs_on_a_daemon_thread_named_after_it(lab):
    """No executor given: the copy's work runs apart from the command that started it,
    on a daemon thread of its own (a copy stuck in a device never keeps the daemon from
    exiting), called after the LUN and list identifier while it runs."""
    import threading

    src, dst = lab.disk("src", data=os.urandom(MiB)), lab.disk("dst")
    seen: list[tuple[str, bool, bool]] = []
    end = ScriptedEnd(dst)
    end.at("write_blocks", 1, lambda: seen.append((
        threading.current_thread().name, threading.current_thread().daemon,
        threading.current_thread() is threading.main_thread())))
    run(lab.manager, src, [(src, {}), (end, {})], [BlockToBlock(0, 1, 8, 0, 0)],
        list_identifier=3, list_id_usage=ListIdUsage.HOLD)
    assert seen == [("xcopy-src-3", True, False)]


def test_a_running_copy_is_not_expired(lab, steps):
    clock = FakeClock()
    manager = CopyManager(chunk=64 * 1024, clock=clock, executor=steps)
    src, dst = lab.disk("src", data=os.urandom(MiB)), lab.disk("dst")
    data = xcopy.build_extended_copy([cscd(src), cscd(dst)], [BlockToBlock(0, 1, 2048, 0, 0)],
                                     list_identifier=7, list_id_usage=ListIdUsage.HOLD)
    manager.register(src)
    manager.register(dst)
    cdb = xcopy.ExtendedCopyLid1(parameter_list_length=len(data)).encode()
    fut = src.handle(Command(cdb, DataBuffer.of(bytearray(data))))
    clock.now += 10 * HELD_RESULTS_SECONDS
    assert _copy_status(manager, src, 7).status == xcopy.CopyCommandStatus.IN_PROGRESS
    steps.run_next()  # the copy runs and finishes now
    assert fut.result(timeout=0) == 0
    clock.now += HELD_RESULTS_SECONDS - 1
    assert _copy_status(manager, src, 7).status == xcopy.CopyCommandStatus.COMPLETED
    clock.now += 1
    assert _no_held_results(manager, src, 7)


def test_planning_is_logged_at_debug_per_cscd_and_segment(lab, caplog):
    caplog.set_level("DEBUG", logger="lio_xcopy.copy.manager")
    src, dst = lab.disk("src", data=os.urandom(MiB)), lab.disk("dst")
    run(lab.manager, src, [(src, {}), (dst, {})],
        [BlockToBlock(0, 1, 64, 0, 0), BlockToBlock(0xFFFF, 1, 8, 64, 64)])
    debug = [r.getMessage() for r in caplog.records if r.levelname == "DEBUG"]
    naa = dst.designators()[0].value.hex()
    assert f"EXTENDED COPY at src: CSCD 1 (designator {naa}" in "\n".join(debug)
    assert any(m.startswith("EXTENDED COPY at src: CSCD 1 (") and m.endswith("is LUN dst")
               for m in debug)
    assert "EXTENDED COPY at src: CSCD ID 0xffff is src itself" in debug
    planned = [m for m in debug if "bytes planned" in m]
    assert len(planned) == 2
    assert planned[0].startswith("EXTENDED COPY at src: segment 0 (")
    assert planned[0].endswith(": src -> dst, 32768 bytes planned")
    assert planned[1].endswith(": src -> dst, 4096 bytes planned")


def test_vendor_sense_bytes_are_only_ours_behind_the_marker():
    long = PolicyApart("d" * 60, "t" * 60)
    wire = SenseData(SenseKey.COPY_ABORTED, Asc.COPY_TARGET_DEVICE_NOT_REACHABLE,
                     vendor=long.encode()).fixed()
    assert len(wire) <= 96  # what TCMU's sense buffer carries
    back = PolicyApart.decode(SenseData.parse(wire).vendor)
    assert back is not None and back.receiving.startswith("ddd") and back.other.startswith("t")
    for other in (b"", bytes(10), b"LIOX", b"LIOX\x02\x01a\x01b", b"LIOX\x01\x09ab",
                  b"XXXX\x01\x01a\x01b"):
        assert PolicyApart.decode(other) is None, other
