"""EXTENDED COPY segments 07h-0Fh and 13h (SPC-4 6.4.6): verify CSCD, the byte-offset
copies 08h-0Ah, the held-data forms 0Bh-0Fh with RECEIVE COPY RESULTS RECEIVE DATA and
RECEIVE COPY DATA (LID4), and the tape image copy. Wire bytes, then runs against our
Disk and Tape: bytes, records, filemarks, positions, held data and the sense of each
refusal."""

from __future__ import annotations

import os

import pytest
from plugins.copy_lab import aborted, cscd, details, objects, read_file, run, write

from lio_xcopy.copy.manager import CopyAborted
from lio_xcopy.devices.base import Command
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.scsi import xcopy as x
from lio_xcopy.scsi.errors import CheckCondition
from lio_xcopy.scsi.sense import Asc, SenseKey
from lio_xcopy.scsi.tpc_vpd import (
    HeldData,
    SupportedCommands,
    SupportedDescriptors,
    ThirdPartyCopyPage,
)
from lio_xcopy.scsi.xcopy import (
    BlockToBlockHeld,
    BlockToBlockOffset,
    BlockToStreamHeld,
    BlockToStreamOffset,
    ListIdUsage,
    Locate,
    StreamToBlockHeld,
    StreamToBlockOffset,
    StreamToDiscardHeld,
    StreamToStreamHeld,
    TapeImageCopy,
    VerifyCscd,
)

KiB = 1024


# --- wire formats --------------------------------------------------------------------------
def test_goldens():
    # 07h: DESCRIPTOR LENGTH 8, 4-5 SOURCE, 6-7 reserved, byte 8 TUR (bit 0)
    assert VerifyCscd(3, tur=True).encode() == bytes.fromhex("07 00 0008 0003 0000 01 000000")
    # 08h/09h: length 18h, 9-11 STREAM DEVICE TRANSFER LENGTH, 12-15 BYTE COUNT, 16-23
    # LBA, 24-25 reserved, 26-27 BLOCK DEVICE BYTE OFFSET
    assert BlockToStreamOffset(0, 1, 1000, 7, 100, 0x200, cat=True).encode() == bytes.fromhex(
        "08 01 0018 0000 0001 00 000200 000003e8 0000000000000007 0000 0064")
    assert StreamToBlockOffset(1, 0, 5, 2, 511, 5).encode() == bytes.fromhex(
        "09 00 0018 0001 0000 00 000005 00000005 0000000000000002 0000 01ff")
    # 0Ah: length 1Ch, 8-11 BYTE COUNT, 12-19 and 20-27 LBAs, 28-29 and 30-31 offsets
    assert BlockToBlockOffset(0, 1, 0x12345, 1, 2, 3, 4).encode() == bytes.fromhex(
        "0a 00 001c 0000 0001 00012345 0000000000000001 0000000000000002 0003 0004")
    # 0Bh-0Fh: the layouts of 00h, 01h, 02h, 03h and 06h with their own type codes
    assert BlockToStreamHeld(0, 1, 2, 9, 512).encode()[0] == 0x0B
    assert StreamToBlockHeld(1, 0, 2, 9, 512).encode()[0] == 0x0C
    assert BlockToBlockHeld(0, 1, 2, 3, 4, dc=True).encode()[:2] == b"\x0d\x02"
    assert StreamToStreamHeld(0, 1, 10, 5, 5).encode()[0] == 0x0E
    assert StreamToDiscardHeld(1, 10, 10).encode() == bytes.fromhex(
        "0f 00 000c 0001 0000 00 00000a 0000000a")
    # 13h: length 8, 4-5 SOURCE, 6-7 DESTINATION, 8 reserved, 9-11 COUNT
    assert TapeImageCopy(0, 1, 2).encode() == bytes.fromhex("13 00 0008 0000 0001 00 000002")
    with pytest.raises(ValueError):
        TapeImageCopy(0, 1, 1 << 24).encode()
    with pytest.raises(ValueError):
        BlockToStreamOffset(0, 1, 1, 0, 1 << 16, 1).encode()
    # RECEIVE DATA parameter data: AVAILABLE DATA, then the held data
    assert x.ReceivedData(b"abc").encode() == bytes.fromhex("00000003 616263")
    assert x.ReceivedData.parse(bytes.fromhex("00000003 6162")) == x.ReceivedData(b"ab")


ALL = (VerifyCscd(0, tur=True), BlockToStreamOffset(0, 1, 10, 1, 3, 10),
       StreamToBlockOffset(1, 0, 10, 1, 3, 10), BlockToBlockOffset(0, 0, 5, 1, 2, 3, 4),
       BlockToStreamHeld(0, 1, 1, 0, 512), StreamToBlockHeld(1, 0, 1, 0, 512),
       BlockToBlockHeld(0, 0, 1, 0, 1), StreamToStreamHeld(1, 1, 4, 4, 4),
       StreamToDiscardHeld(1, 4, 4), TapeImageCopy(1, 1, 0))


def test_every_new_type_round_trips_through_the_parser():
    cscds = [x.IdentificationCscd(b"\x60" + bytes(15), 0x00, block_length=512),
             x.IdentificationCscd(b"\x60" + bytes(14) + b"\x01", 0x01)]
    plist = x.parse_extended_copy(x.build_extended_copy(cscds, ALL))
    assert plist.segments == ALL
    assert [type(s) for s in plist.segments] == [type(s) for s in ALL]
    assert all(s.describe().startswith(f"{s.TYPE_CODE:02X}h") for s in ALL)
    assert [s.HOLDS_DATA for s in ALL] == [False] * 4 + [True] * 5 + [False]


def test_a_verify_cscd_naming_no_cscd_points_at_its_source_id():
    cscds = [x.IdentificationCscd(b"\x60" + bytes(15), 0x00, block_length=512)]
    with pytest.raises(CheckCondition) as e:
        x.parse_extended_copy(x.build_extended_copy(cscds, [VerifyCscd(1)]))
    s = e.value.sense
    assert (s.key, s.asc, s.sense_key_specific) == (
        SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_PARAMETER_LIST, bytes.fromhex("800034"))


# --- runs ------------------------------------------------------------------------------
@pytest.fixture
def lab(request):
    return request.getfixturevalue("copy_lab")


def receive_data(manager, lun, list_id=5, alloc=1 << 20) -> bytes:
    return x.ReceivedData.parse(manager.receive_copy_results(
        lun, x.ReceiveCopyResultsReceiveData(list_identifier=list_id,
                                                 allocation_length=alloc))).held_data


def status(manager, lun, list_id=5) -> x.CopyStatus:
    return x.CopyStatus.parse(manager.receive_copy_results(
        lun, x.ReceiveCopyResultsCopyStatus(list_identifier=list_id)))


HOLD = {"list_identifier": 5, "list_id_usage": ListIdUsage.HOLD}


def test_verify_cscd_passes_for_a_ready_disk_and_tape(lab):
    d, t = lab.disk("d", data=bytes(4096)), lab.tape("t0")
    run(lab.manager, d, [(d, {}), (t, {})], [VerifyCscd(0), VerifyCscd(1, tur=True)], **HOLD)
    assert status(lab.manager, d).status == x.CopyCommandStatus.COMPLETED
    assert status(lab.manager, d).segments_processed == 2


def test_verify_cscd_with_tur_of_an_empty_drive_is_copy_aborted_medium_not_present(lab):
    d, t = lab.disk("d", data=bytes(4096)), lab.tape("t0")
    t.unload_cartridge()
    run(lab.manager, d, [(d, {}), (t, {})], [VerifyCscd(1)], **HOLD)  # reached: enough
    with pytest.raises(CopyAborted) as e:
        run(lab.manager, d, [(d, {}), (t, {})], [VerifyCscd(0), VerifyCscd(1, tur=True)],
            **HOLD)
    aborted(e, Asc.MEDIUM_NOT_PRESENT, 1, 4)
    assert details(lab.manager, d).key == SenseKey.NOT_READY


def test_verify_cscd_of_a_device_of_another_type_than_its_cscd(lab):
    d = lab.disk("d", data=bytes(4096))
    as_tape = x.IdentificationCscd.from_designator(d.designators()[0], 0x01)  # PDT 01h
    data = x.build_extended_copy([as_tape], [VerifyCscd(0)], **HOLD)
    lab.manager.register(d)
    with pytest.raises(CopyAborted) as e:
        d.handle(Command(x.ExtendedCopyLid1(parameter_list_length=len(data)).encode(),
                         DataBuffer.of(bytearray(data))))
    aborted(e, Asc.INCORRECT_COPY_TARGET_DEVICE_TYPE, 0, 4)


def test_block_with_offset_to_stream_reads_from_inside_a_block(lab):
    data = os.urandom(8 * KiB)
    src, t = lab.disk("src", data=data), lab.tape("t0")
    run(lab.manager, src, [(src, {}), (t, {})],
        [BlockToStreamOffset(0, 1, 3000, 2, 100, 1000)], **HOLD)
    start = 2 * 512 + 100
    assert objects(t) == [data[start + i : start + i + 1000] for i in range(0, 3000, 1000)]
    assert t.medium.position == 3
    assert status(lab.manager, src).transferred_bytes == 3000


def test_stream_to_block_with_offset_keeps_the_bytes_around_the_range(lab):
    recs = [os.urandom(700), os.urandom(700)]
    t, dst = lab.tape("t0"), lab.disk("dst", data=b"\xee" * 4096)
    write(t, *recs)
    t.rewind()
    run(lab.manager, t, [(t, {}), (dst, {})], [StreamToBlockOffset(0, 1, 1400, 1, 13, 700)],
        **HOLD)
    want = bytearray(b"\xee" * 4096)
    want[512 + 13 : 512 + 13 + 1400] = recs[0] + recs[1]
    assert read_file(dst) == bytes(want)
    assert t.medium.position == 2


def test_block_to_block_with_offsets_over_chunks(lab):
    data = os.urandom(512 * KiB)
    src, dst = lab.disk("src", data=data), lab.disk("dst", data=b"\x55" * (512 * KiB))
    n = 200 * KiB + 17  # more than one 64 KiB chunk, ending inside a block
    run(lab.manager, src, [(src, {}), (dst, {})],
        [BlockToBlockOffset(0, 1, n, 3, 10, 511, 1)], **HOLD)
    want = bytearray(b"\x55" * (512 * KiB))
    want[10 * 512 + 1 : 10 * 512 + 1 + n] = data[3 * 512 + 511 : 3 * 512 + 511 + n]
    assert read_file(dst) == bytes(want)
    assert status(lab.manager, src).transferred_bytes == n


def test_byte_offset_ranges_past_the_end_are_lba_out_of_range(lab):
    src, dst = lab.disk("src", size=4096), lab.disk("dst", size=4096)
    with pytest.raises(CopyAborted) as e:  # 8 blocks: LBA 7 + 100 + 500 bytes needs 2
        run(lab.manager, src, [(src, {}), (dst, {})], [BlockToBlockOffset(0, 1, 500, 0, 7, 0,
                                                                          100)])
    aborted(e, Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE, 0, 20)
    assert e.value.sense.information == 7
    t = lab.tape("t0")
    with pytest.raises(CopyAborted) as e:
        run(lab.manager, src, [(src, {}), (t, {})], [BlockToStreamOffset(0, 1, 4096, 0, 1, 512)])
    aborted(e, Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE, 0, 16)
    assert objects(t) == []


def test_held_data_of_each_form_is_returned_by_receive_data(lab):
    data = os.urandom(4 * KiB)
    src, t, dst = lab.disk("src", data=data), lab.tape("t0"), lab.disk("dst", size=8 * KiB)
    t2 = lab.tape("t2")
    write(t, b"A" * 300, b"B" * 200, b"C" * 100, b"D" * 50)
    t.rewind()
    run(lab.manager, src, [(src, {}), (t, {}), (dst, {}), (t2, {})], [
        BlockToStreamHeld(0, 3, 1, 1, 512),
        StreamToDiscardHeld(1, 300, 300),
        StreamToStreamHeld(1, 3, 200, 200, 200),
        BlockToBlockHeld(0, 2, 2, 6, 0),
    ], **HOLD)
    held = data[512:1024] + b"A" * 300 + b"B" * 200 + data[3072:4096]
    assert receive_data(lab.manager, src) == held
    assert objects(t2) == [data[512:1024], b"B" * 200]
    assert read_file(dst)[:1024] == data[3072:4096]
    assert t.medium.position == 2
    # all of it returned: discarded (SPC-4), a second request gets none
    assert receive_data(lab.manager, src) == b""
    assert status(lab.manager, src).held_data_discarded is False


def test_stream_to_block_held_keeps_the_bytes_read(lab):
    recs = [os.urandom(512), os.urandom(512)]
    t, dst = lab.tape("t0"), lab.disk("dst", size=4096)
    write(t, *recs)
    t.rewind()
    run(lab.manager, t, [(t, {}), (dst, {})], [StreamToBlockHeld(0, 1, 2, 3, 512)], **HOLD)
    assert read_file(dst)[3 * 512 : 5 * 512] == recs[0] + recs[1]
    assert receive_data(lab.manager, t) == recs[0] + recs[1]


def test_a_short_allocation_length_keeps_the_held_data_and_zero_discards_it(lab):
    data = os.urandom(1024)
    src, t = lab.disk("src", data=data), lab.tape("t0")
    run(lab.manager, src, [(src, {}), (t, {})], [BlockToStreamHeld(0, 1, 2, 0, 1024)], **HOLD)
    cut = lab.manager.receive_copy_results(src, x.ReceiveCopyResultsReceiveData(
        list_identifier=5, allocation_length=100))
    assert cut[:4] == (1024).to_bytes(4, "big")  # AVAILABLE DATA is the whole
    assert receive_data(lab.manager, src, alloc=4 + 1024) == data
    run(lab.manager, src, [(src, {}), (t, {})], [BlockToStreamHeld(0, 1, 2, 0, 1024)], **HOLD)
    assert lab.manager.receive_copy_results(src, x.ReceiveCopyResultsReceiveData(
        list_identifier=5, allocation_length=0))[:4] == (1024).to_bytes(4, "big")
    assert receive_data(lab.manager, src) == b""


@pytest.mark.parametrize("layout", [x.ReceiveCopyResultsReceiveData, x.ReceiveCopyDataLid4])
def test_held_data_shorter_buffer_than_allocation_keeps_it(lab, layout):
    """An ALLOCATION LENGTH that holds it all, in a Data-In buffer the transport gave
    shorter (SG_IO's dxfer_len under it): the initiator did not get the held data, so
    it is kept for the next request."""
    data = os.urandom(1024)
    src, t = lab.disk("src", data=data), lab.tape("t0")
    run(lab.manager, src, [(src, {}), (t, {})], [BlockToStreamHeld(0, 1, 2, 0, 1024)], **HOLD)
    cdb = layout(list_identifier=5, allocation_length=1 << 20).encode()
    short = Command(cdb, DataBuffer([memoryview(bytearray(3))]))
    assert src.handle(short) == 3
    whole = Command(cdb, DataBuffer([memoryview(bytearray(1 << 16))]))
    n = src.handle(whole)
    assert isinstance(n, int) and whole.data.tobytes(n)[:3] == short.data.tobytes(3)
    assert whole.data.tobytes(n)[-1024:] == data
    assert receive_data(lab.manager, src) == b""  # the whole answer went: discarded


def test_held_data_beyond_the_limit_keeps_the_newest_and_sets_hdd(lab):
    data = os.urandom(512 * KiB)
    src, dst = lab.disk("src", data=data), lab.disk("dst", size=512 * KiB)
    run(lab.manager, src, [(src, {}), (dst, {})],
        [BlockToBlockHeld(0, 1, 1024, 0, 0)], **HOLD)
    assert read_file(dst) == data  # the copy itself is whole
    limit = x.HELD_DATA_LIMIT
    assert receive_data(lab.manager, src) == data[-limit:]
    st = status(lab.manager, src)
    assert st.held_data_discarded and st.status == x.CopyCommandStatus.COMPLETED
    assert lab.manager.receive_copy_results(src, x.ReceiveCopyResultsCopyStatus(
        list_identifier=5))[4] == 0x81  # HDD and COMPLETED in byte 4


@pytest.mark.parametrize("usage", [ListIdUsage.DISCARD])
def test_list_id_usage_other_than_00b_holds_nothing(lab, usage):
    data = os.urandom(1024)
    src, t = lab.disk("src", data=data), lab.tape("t0")
    run(lab.manager, src, [(src, {}), (t, {})], [BlockToStreamHeld(0, 1, 2, 0, 1024)],
        list_identifier=5, list_id_usage=usage)
    assert objects(t) == [data]
    assert receive_data(lab.manager, src) == b""
    run(lab.manager, src, [(src, {}), (t, {})], [BlockToStreamHeld(0, 1, 2, 0, 1024)])
    with pytest.raises(CheckCondition) as e:  # 11b: no list identifier, nothing to ask for
        receive_data(lab.manager, src, list_id=0)
    assert (e.value.sense.key, e.value.sense.asc) == (SenseKey.ILLEGAL_REQUEST,
                                                      Asc.INVALID_FIELD_IN_CDB)


def test_receive_data_of_a_copy_in_progress_is_invalid_field_in_cdb(lab, steps):
    src, t = lab.disk("src", data=bytes(1024)), lab.tape("t0")
    lab.manager.executor = steps
    data = x.build_extended_copy([cscd(src), cscd(t)], [BlockToStreamHeld(0, 1, 2, 0, 1024)],
                                 **HOLD)
    lab.manager.register(src)
    lab.manager.register(t)
    run_result = src.handle(Command(x.ExtendedCopyLid1(parameter_list_length=len(data))
                                    .encode(), DataBuffer.of(bytearray(data))))
    with pytest.raises(CheckCondition) as e:
        receive_data(lab.manager, src)
    assert (e.value.sense.key, e.value.sense.asc, e.value.sense.sense_key_specific) == (
        SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB, bytes.fromhex("c00002"))
    steps.run_next()
    assert run_result.result(timeout=0) == 0
    assert len(receive_data(lab.manager, src)) == 1024


def test_receive_copy_data_lid4_returns_the_held_data_with_hdd(lab):
    data = os.urandom(1024)
    src, t = lab.disk("src", data=data), lab.tape("t0")
    plist = x.build_extended_copy_lid4([cscd(src), cscd(t)],
                                       [BlockToStreamHeld(0, 1, 2, 0, 1024)], list_identifier=77)
    lab.manager.register(src)
    lab.manager.register(t)
    fut = src.handle(Command(x.ExtendedCopyLid4(parameter_list_length=len(plist)).encode(),
                             DataBuffer.of(bytearray(plist))))
    assert fut.result(timeout=30) == 0
    got = x.CopyDataLid4.parse(lab.manager.receive_copy_results(
        src, x.ReceiveCopyDataLid4(list_identifier=77, allocation_length=4096)))
    assert got.held_data == data and not got.status.held_data_discarded
    assert got.status.status == x.CopyOperationStatus.COMPLETED


def test_tape_image_copy_copies_records_and_filemarks_to_end_of_data(lab):
    a, b, c = os.urandom(1000), os.urandom(65 * KiB), os.urandom(7)
    src, dst = lab.tape("src"), lab.tape("dst")
    write(src, a, b, None, c, None, None)
    src.rewind()
    run(lab.manager, src, [(src, {}), (dst, {})], [TapeImageCopy(0, 1)], **HOLD)
    assert objects(dst) == [a, b, None, c, None, None]
    assert status(lab.manager, src).transferred_bytes == 1000 + 65 * KiB + 7


def test_tape_image_copy_stops_after_count_consecutive_filemarks(lab):
    a, c = os.urandom(100), os.urandom(200)
    src, dst = lab.tape("src"), lab.tape("dst")
    write(src, a, None, c, None, None, b"after")
    src.rewind()
    run(lab.manager, src, [(src, {}), (dst, {})], [TapeImageCopy(0, 1, 2), Locate(0, 0),
                                                   TapeImageCopy(0, 1, 1)], **HOLD)
    # first: a, FM, c, FM, FM (two in a row); then from BOT again up to one filemark
    assert objects(dst) == [a, None, c, None, None, a, None]
    assert src.medium.position == 2  # after the first filemark


def test_tape_image_copy_naming_a_disk_is_the_wrong_device_type(lab):
    d, t = lab.disk("d", data=bytes(4096)), lab.tape("t0")
    with pytest.raises(CopyAborted) as e:
        run(lab.manager, t, [(t, {}), (d, {})], [TapeImageCopy(0, 1)])
    aborted(e, Asc.INCORRECT_COPY_TARGET_DEVICE_TYPE, 0, 6)



def test_the_third_party_copy_page_agrees_with_operating_parameters(lab):
    d = lab.disk("d", data=bytes(4096))
    lab.manager.register(d)
    op = x.OperatingParameters.parse(lab.manager.receive_copy_results(
        d, x.ReceiveCopyResultsOperatingParameters(allocation_length=1024)))
    page = ThirdPartyCopyPage.parse(d.third_party_copy_page())
    descriptors = page.find(SupportedDescriptors)
    held = page.find(HeldData)
    assert isinstance(descriptors, SupportedDescriptors) and isinstance(held, HeldData)
    assert descriptors.codes == op.implemented_descriptor_types == (*range(0x14), 0xE4, 0xFE)
    assert (held.held_data_limit, held.held_data_granularity) == (
        op.held_data_limit, op.held_data_granularity) == (x.HELD_DATA_LIMIT, 0)
    commands = page.find(SupportedCommands)
    assert isinstance(commands, SupportedCommands)
    assert 0x01 in dict(commands.commands)[0x84]  # RECEIVE DATA
