"""EXTENDED COPY segments for a tape backup job (SPC-4 6.4.6.8-6.4.6.10, 6.4.6.18-6.4.6.20):
04h inline->stream, 05h embedded->stream, 06h stream->discard, 10h write filemarks,
11h space, 12h locate. Wire bytes, then runs against our Tape: records, filemarks,
positions and the sense of every refusal."""

from __future__ import annotations

import os
import struct

import pytest
from plugins.copy_lab import aborted, details, objects, ptr, run, write

from lio_xcopy.copy.manager import CopyAborted
from lio_xcopy.scsi import xcopy as x
from lio_xcopy.scsi.errors import CheckCondition
from lio_xcopy.scsi.sense import Asc, SenseData, SenseKey
from lio_xcopy.scsi.xcopy import (
    BlockToStream,
    EmbeddedToStream,
    IdentificationCscd,
    InlineToStream,
    ListIdUsage,
    Locate,
    Space,
    StreamToBlock,
    StreamToDiscard,
    WriteFilemarks,
)

KiB = 1024
LABEL = b"VOL1" + b"BACKUP".ljust(76)  # an 80-byte ANSI-style volume label


# --- wire formats --------------------------------------------------------------------------------
def test_goldens():
    # 04h: 4-5 reserved, 6-7 DESTINATION, 9-11 STREAM DEVICE TRANSFER LENGTH, 12-15
    # reserved, 16-19 INLINE DATA OFFSET, 20-23 INLINE DATA NUMBER OF BYTES
    assert InlineToStream(1, 4, 80, 0x50, cat=True).encode() == bytes.fromhex(
        "04 01 0014 0000 0001 00 000050 00000000 00000004 00000050")
    # 05h: 14-15 EMBEDDED DATA NUMBER OF BYTES, data padded to a multiple of four
    assert EmbeddedToStream(2, b"hello", 5).encode() == bytes.fromhex(
        "05 00 0014 0000 0002 00 000005 0000 0005 68656c6c6f 000000")
    # 06h: 4-5 SOURCE, 6-7 reserved, 12-15 NUMBER OF BYTES
    assert StreamToDiscard(3, 0xDEADBEEF, 0x10000).encode() == bytes.fromhex(
        "06 00 000c 0003 0000 00 010000 deadbeef")
    # 10h/11h/12h: DESCRIPTOR LENGTH 8, 6-7 DESTINATION, 8-11 the CDB's bytes 1-4
    assert WriteFilemarks(1, 2, immed=True).encode() == bytes.fromhex(
        "10 00 0008 0000 0001 01 000002")
    assert WriteFilemarks(1, 0, wsmk=True).encode()[8] == 0x02
    assert Space(0, 1, -3).encode() == bytes.fromhex("11 00 0008 0000 0000 01 fffffd")
    assert Locate(0, 0x01020304).encode() == bytes.fromhex("12 00 0008 0000 0000 01020304")
    with pytest.raises(ValueError):
        Space(0, 0, 1 << 23).encode()
    with pytest.raises(ValueError):
        InlineToStream(0, 2, 1, 1).encode()  # offset not a multiple of four


def disks_and_tape() -> list[IdentificationCscd]:
    return [IdentificationCscd(b"\x60" + bytes(15), 0x00, block_length=512),
            IdentificationCscd(b"\x60" + bytes(14) + b"\x01", 0x01)]


ALL = (Locate(1, 0), InlineToStream(1, 0, 80, 80), EmbeddedToStream(1, b"hdr!", 4, 4),
       BlockToStream(0, 1, 8, 0, 4096), WriteFilemarks(1, 1), Space(1, 1, -1),
       StreamToDiscard(1, 4096, 4096, cat=True), Space(1, 3, 0))


def test_every_new_type_round_trips_through_the_parser():
    data = x.build_extended_copy(disks_and_tape(), ALL, inline_data=LABEL)
    plist = x.parse_extended_copy(data)
    assert plist.segments == ALL and plist.inline_data == LABEL
    assert [plist.segment_offset(i) for i in range(3)] == [80, 92, 116]
    assert all(s.describe().startswith(f"{s.TYPE_CODE:02X}h") for s in ALL)




def illegal(data: bytes | bytearray, limits: x.Limits | None = None) -> SenseData:
    with pytest.raises(CheckCondition) as e:
        x.parse_extended_copy(bytes(data), limits)
    assert e.value.sense.key == SenseKey.ILLEGAL_REQUEST
    return e.value.sense


def test_parse_errors_point_at_the_field():
    cscds = disks_and_tape()
    data = bytearray(x.build_extended_copy(cscds, [InlineToStream(1, 0, 4, 4)],
                                           inline_data=b"abcd"))
    data[80 + 19] = 2  # INLINE DATA OFFSET 2
    s = illegal(data)
    assert (s.asc, ptr(s)) == (Asc.INVALID_FIELD_IN_PARAMETER_LIST, 96)
    # 05h: DESCRIPTOR LENGTH below 12 or not a multiple of four
    for dlen in (8, 0x13):
        data = bytearray(x.build_extended_copy(cscds, [EmbeddedToStream(1, b"abcd", 4)]))
        struct.pack_into(">H", data, 82, dlen)
        s = illegal(data)
        assert (s.asc, ptr(s)) == (Asc.INVALID_FIELD_IN_PARAMETER_LIST, 82)
    # 10h with a 06h's length; a destination beyond the CSCD list (its bytes 6-7)
    data = bytearray(x.build_extended_copy(cscds, [WriteFilemarks(1, 1)]))
    struct.pack_into(">H", data, 82, 0x0C)
    assert ptr(illegal(data)) == 82
    s = illegal(x.build_extended_copy(cscds, [Locate(2, 0)]))
    assert (s.asc, ptr(s)) == (Asc.INVALID_FIELD_IN_PARAMETER_LIST, 86)
    s = illegal(x.build_extended_copy(cscds, [StreamToDiscard(5, 1, 1)]))
    assert ptr(s) == 84


@pytest.mark.parametrize("code", [0x14, 0x15, 0x16, 0xBE, 0xFF])
def test_types_still_refused_are_unsupported_and_not_listed(code):
    data = bytearray(x.build_extended_copy(disks_and_tape(), [Locate(1, 0)]))
    data[80] = code
    s = illegal(data)
    assert (s.asc, ptr(s)) == (Asc.UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE, 80)
    assert code not in x.OperatingParameters.from_limits(x.Limits()).implemented_descriptor_types


def test_a_manager_told_not_to_take_a_type_refuses_it_and_does_not_list_it():
    limits = x.Limits(segment_types=(0x00, 0x01, 0x02, 0x03))
    data = x.build_extended_copy(disks_and_tape(), [WriteFilemarks(1, 1)])
    assert illegal(data, limits).asc == Asc.UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE
    assert 0x10 not in x.OperatingParameters.from_limits(limits).implemented_descriptor_types


def test_inline_data_up_to_the_reported_maximum():
    big = bytes(x.MAX_INLINE_DATA)
    data = x.build_extended_copy(disks_and_tape(), [InlineToStream(1, 0, len(big), 65536)],
                                 inline_data=big)
    assert len(x.parse_extended_copy(data).inline_data) == x.MAX_INLINE_DATA
    over = x.build_extended_copy(disks_and_tape(), [], inline_data=big + bytes(4))
    s = illegal(over)
    assert (s.asc, ptr(s)) == (Asc.INLINE_DATA_LENGTH_EXCEEDED, 12)


# --- runs against our Tape ------------------------------------------------------------------------
@pytest.fixture
def lab(request):
    """test_copy's disks and tapes on temp files, with a copy manager."""
    return request.getfixturevalue("copy_lab")










def test_one_command_backup_job_label_data_filemark(lab):
    data = os.urandom(64 * KiB)
    src, t = lab.disk("src", data=data), lab.tape("t0")
    write(t, b"old" * 100, b"old" * 200, None)  # a previous job, overwritten from BOT
    t.locate(2)
    run(lab.manager, src, [(src, {}), (t, {})],
        [Locate(1, 0), InlineToStream(1, 0, 80, 80), BlockToStream(0, 1, 128, 0, 16 * KiB),
         WriteFilemarks(1, 1)],
        inline_data=LABEL + b"trailer!")
    assert t.medium.position == 1 + 4 + 1  # label, four records, the filemark
    objs = objects(t)
    assert objs[0] == LABEL
    assert objs[1:5] == [data[i : i + 16 * KiB] for i in range(0, len(data), 16 * KiB)]
    assert objs[5:] == [None]  # end of data follows the new filemark


def test_inline_from_an_offset_and_embedded_data_in_fixed_mode_with_pad(lab):
    t = lab.tape("t0")
    run(lab.manager, t, [(t, {"block_length": 32, "fixed": True, "pad": True})],
        [InlineToStream(0, 8, 40, 1), EmbeddedToStream(0, b"xyz", 1)],
        inline_data=bytes(8) + bytes(range(40)))
    assert objects(t) == [bytes(range(32)), bytes(range(32, 40)) + bytes(24),
                          b"xyz" + bytes(29)]


def test_inline_with_cat_joins_the_next_segment_record(lab):
    data = os.urandom(1024)
    src, t = lab.disk("src", data=data), lab.tape("t0")
    run(lab.manager, src, [(src, {}), (t, {})],
        [InlineToStream(1, 0, 100, 512, cat=True), BlockToStream(0, 1, 2, 0, 512)],
        inline_data=b"H" * 100)
    assert objects(t) == [b"H" * 100 + data[:412], data[412:924], data[924:]]


def test_zero_bytes_of_inline_or_embedded_data_write_nothing(lab):
    t = lab.tape("t0")
    run(lab.manager, t, [(t, {})], [InlineToStream(0, 0, 0, 0), EmbeddedToStream(0, b"", 0)])
    assert objects(t) == []


def test_inline_range_beyond_inline_data_is_inline_data_length_exceeded(lab):
    t = lab.tape("t0")
    with pytest.raises(CopyAborted) as e:
        run(lab.manager, t, [(t, {})], [Locate(0, 0), InlineToStream(0, 4, 8, 8)],
            inline_data=b"12345678")
    aborted(e, Asc.INLINE_DATA_LENGTH_EXCEEDED, 1, 20)
    assert objects(t) == []  # refused before any segment ran


def test_embedded_count_beyond_its_data_is_invalid_field(lab):
    t = lab.tape("t0")
    with pytest.raises(CopyAborted) as e:
        run(lab.manager, t, [(t, {})], [EmbeddedToStream(0, b"abcd", 4, number_of_bytes=5)])
    aborted(e, Asc.INVALID_FIELD_IN_PARAMETER_LIST, 0, 14)


@pytest.mark.parametrize(("segment", "byte"), [
    (WriteFilemarks(0, 1, wsmk=True), 8), (Space(0, 2, 1), 8), (Space(0, 4, 1), 8),
])
def test_setmarks_and_other_space_codes_are_refused(lab, segment, byte):
    t = lab.tape("t0")
    with pytest.raises(CopyAborted) as e:
        run(lab.manager, t, [(t, {})], [WriteFilemarks(0, 1), segment])
    aborted(e, Asc.INVALID_FIELD_IN_PARAMETER_LIST, 1, byte)
    assert objects(t) == []


def test_tape_operations_naming_a_disk_are_the_wrong_device_type(lab):
    d = lab.disk("d", data=bytes(4096))
    for seg in (WriteFilemarks(0, 1), Space(0, 0, 1), Locate(0, 0),
                InlineToStream(0, 0, 0, 1)):
        with pytest.raises(CopyAborted) as e:
            run(lab.manager, d, [(d, {})], [seg])
        aborted(e, Asc.INCORRECT_COPY_TARGET_DEVICE_TYPE, 0, 6)
    with pytest.raises(CopyAborted) as e:
        run(lab.manager, d, [(d, {})], [StreamToDiscard(0, 1, 1)])
    aborted(e, Asc.INCORRECT_COPY_TARGET_DEVICE_TYPE, 0, 4)


def test_discard_skips_records_then_a_restore_reads_the_next(lab):
    a, b, c = os.urandom(1000), os.urandom(3000), os.urandom(1024)
    t, dst = lab.tape("t0"), lab.disk("dst", data=bytes(4096))
    write(t, a, b, c)
    run(lab.manager, dst, [(t, {}), (dst, {})],
        [Locate(0, 0), StreamToDiscard(0, 4000, 4096), StreamToBlock(0, 1, 2, 0, 1024)])
    with open(dst.store.path, "rb") as f:
        assert f.read(1024) == c
    assert t.medium.position == 3


def test_discard_with_cat_hands_the_rest_of_a_record_to_the_next_segment(lab):
    rec = os.urandom(2048)
    t, dst = lab.tape("t0"), lab.disk("dst", data=bytes(4096))
    write(t, rec)
    t.rewind()
    run(lab.manager, dst, [(t, {}), (dst, {})],
        [StreamToDiscard(0, 1024, 2048, cat=True), StreamToBlock(0, 1, 2, 0, 2048)])
    with open(dst.store.path, "rb") as f:
        assert f.read(1024) == rec[1024:]


def test_discard_meeting_a_filemark_is_underrun_with_the_tape_sense(lab):
    t = lab.tape("t0")
    write(t, b"a" * 100, None, b"b" * 100)
    t.rewind()
    with pytest.raises(CopyAborted) as e:
        run(lab.manager, t, [(t, {})], [StreamToDiscard(0, 200, 100)],
            list_identifier=5, list_id_usage=ListIdUsage.HOLD)
    aborted(e, Asc.COPY_TARGET_DEVICE_DATA_UNDERRUN, 0)
    s = details(lab.manager, t)
    assert (s.key, s.asc, s.filemark) == (SenseKey.NO_SENSE, Asc.FILEMARK_DETECTED, True)
    assert t.medium.position == 2  # past the filemark it met


def test_space_filemarks_and_blocks(lab):
    t, dst = lab.tape("t0"), lab.disk("dst", data=bytes(4096))
    write(t, b"1" * 512, None, b"2" * 512, b"3" * 512, None)
    run(lab.manager, dst, [(t, {}), (dst, {})],
        [Locate(0, 0), Space(0, 1, 1), Space(0, 0, 1), StreamToBlock(0, 1, 1, 0, 512)])
    with open(dst.store.path, "rb") as f:
        assert f.read(512) == b"3" * 512
    assert t.medium.position == 4
    run(lab.manager, t, [(t, {})], [Space(0, 3, 0)])  # to end of data
    assert t.medium.position == 5
    run(lab.manager, t, [(t, {})], [Space(0, 1, -1), Space(0, 0, -1)])
    assert t.medium.position == 3


def test_space_over_a_filemark_is_copy_aborted_with_the_residue(lab):
    t = lab.tape("t0")
    write(t, b"1" * 10, None, b"2" * 10)
    with pytest.raises(CopyAborted) as e:
        run(lab.manager, t, [(t, {})], [Locate(0, 0), Space(0, 0, 3)],
            list_identifier=5, list_id_usage=ListIdUsage.HOLD)
    aborted(e, Asc.FILEMARK_DETECTED, 1, 6)
    s = details(lab.manager, t)
    assert (s.key, s.filemark, s.information) == (SenseKey.NO_SENSE, True, 2)
    assert t.medium.position == 2  # after the filemark, as SSC-4 leaves it


def test_space_to_bop_and_locate_past_end_of_data(lab):
    t = lab.tape("t0")
    write(t, b"1" * 10, b"2" * 10)
    with pytest.raises(CopyAborted) as e:
        run(lab.manager, t, [(t, {})], [Space(0, 0, -5)],
            list_identifier=5, list_id_usage=ListIdUsage.HOLD)
    aborted(e, Asc.BEGINNING_OF_PARTITION_MEDIUM_DETECTED, 0)
    s = details(lab.manager, t)
    assert (s.eom, s.information) == (True, 3)
    assert t.medium.position == 0
    with pytest.raises(CopyAborted) as e:
        run(lab.manager, t, [(t, {})], [Locate(0, 1), Locate(0, 9)],
            list_identifier=5, list_id_usage=ListIdUsage.HOLD)
    aborted(e, Asc.END_OF_DATA_DETECTED, 1)
    assert details(lab.manager, t).key == SenseKey.BLANK_CHECK
    assert t.medium.position == 2  # at end of data


def test_filemarks_at_the_end_of_the_medium_are_volume_overflow(lab):
    t = lab.tape("t0", capacity=64 * KiB)
    with pytest.raises(CheckCondition):
        for _ in range(100):
            write(t, bytes(4096))
    with pytest.raises(CopyAborted) as e:
        run(lab.manager, t, [(t, {})], [WriteFilemarks(0, 5000)],
            list_identifier=5, list_id_usage=ListIdUsage.HOLD)
    aborted(e, Asc.END_OF_PARTITION_MEDIUM_DETECTED, 0, 6)
    s = details(lab.manager, t)
    assert (s.key, s.eom) == (SenseKey.VOLUME_OVERFLOW, True)
    assert 0 < s.information < 5000  # the filemarks that did not fit


def test_a_cat_residual_before_a_tape_operation_is_an_inexact_segment(lab):
    data = os.urandom(1024)
    src, t = lab.disk("src", data=data), lab.tape("t0")
    with pytest.raises(CopyAborted) as e:
        run(lab.manager, src, [(src, {}), (t, {})],
            [BlockToStream(0, 1, 2, 0, 1000, cat=True), WriteFilemarks(1, 1)])
    aborted(e, Asc.UNEXPECTED_INEXACT_SEGMENT, 1)
    assert objects(t) == [data[:1000]]
