"""EXTENDED COPY (LID1) and RECEIVE COPY RESULTS wire formats: golden bytes, round trips
and every parameter list error with its exact ASC/ASCQ and field pointer."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lio_xcopy.scsi import spc
from lio_xcopy.scsi import xcopy as x
from lio_xcopy.scsi.errors import CheckCondition
from lio_xcopy.scsi.sense import CHECK_CONDITION, Asc, SenseData, SenseKey, field_pointer

SRC_SERIAL = "8a3f4b2c-1d5e-4f60-9a7b-0c1d2e3f4a5b"
DST_SERIAL = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
SRC_NAA = bytes.fromhex("60014058a3f4b2c1d5e4f609a7b0c1d2")
DST_NAA = bytes.fromhex("60014050f1e2d3c4b5a69788796a5b4c")


def disk(naa: bytes = SRC_NAA, block_length: int = 512) -> x.IdentificationCscd:
    return x.IdentificationCscd(naa, 0x00, block_length=block_length)


def b2b(src: int = 0, dst: int = 1, n: int = 8, slba: int = 0, dlba: int = 0) -> x.BlockToBlock:
    return x.BlockToBlock(src, dst, n, slba, dlba)


def two_disk_list(*segments: x.Segment, **kw) -> bytearray:
    return bytearray(
        x.build_extended_copy([disk(), disk(DST_NAA)], segments or [b2b()], **kw)
    )


def illegal(data, limits: x.Limits | None = None) -> SenseData:
    with pytest.raises(CheckCondition) as e:
        x.parse_extended_copy(bytes(data), limits)
    assert e.value.sense.key == SenseKey.ILLEGAL_REQUEST
    return e.value.sense


def assert_sense(
    sense: SenseData, asc: Asc, byte: int, bit: int | None = None, *, in_cdb: bool = False
) -> None:
    assert (sense.asc >> 8, sense.asc & 0xFF) == (asc.asc, asc.ascq)
    assert sense.sense_key_specific == field_pointer(byte, bit, in_cdb=in_cdb)


# --- CDB layouts --------------------------------------------------------------------------------
def test_extended_copy_cdb_golden():
    # SPC-4 6.5: 83h, service action 00h, PARAMETER LIST LENGTH in bytes 10-13; what
    # sg_ll_3party_copy_out (sg3_utils lib/sg_cmds_extra.c) sends for SA_XCOPY_LID1
    cdb = bytes.fromhex("83 00 0000000000000000 0000006c 00 00")
    assert x.ExtendedCopyLid1(parameter_list_length=108).encode() == cdb
    d = x.ExtendedCopyLid1.decode(cdb)
    assert (d.service_action, d.parameter_list_length) == (0, 108)
    assert x.ExtendedCopyLid1.decode(bytes.fromhex("83 00" + "00" * 8 + "01000010 0000"))\
        .parameter_list_length == 0x01000010  # all four bytes


def test_receive_copy_results_cdbs_golden():
    # sg_ll_receive_copy_results: SA in byte 1, LIST IDENTIFIER in byte 2 (SA <= 4),
    # ALLOCATION LENGTH in bytes 10-13; sg_copy_results defaults to SA 03h, 520 bytes
    assert x.ReceiveCopyResultsOperatingParameters(allocation_length=520).encode() == (
        bytes.fromhex("84 03 00 00000000000000 00000208 00 00")
    )
    status = x.ReceiveCopyResultsCopyStatus.decode(
        bytes.fromhex("84 00 01 00000000000000 0000000c 00 00")
    )
    assert (status.service_action, status.list_identifier, status.allocation_length) == (0, 1, 12)
    assert x.ReceiveCopyResultsFailedSegmentDetails(
        list_identifier=0x7F, allocation_length=0x10000
    ).encode() == bytes.fromhex("84 04 7f 00000000000000 00010000 00 00")
    assert [c.SERVICE_ACTION for c in x.RECEIVE_COPY_RESULTS] == [0, 1, 3, 4]
    # RECEIVE DATA (SPC-4 r31 6.18.2): as sg_raw sends it, list identifier 5, 4 KiB
    assert x.ReceiveCopyResultsReceiveData(list_identifier=5, allocation_length=4096
                                               ).encode() == bytes.fromhex(
        "84 01 05 00000000000000 00001000 00 00")
    # our vendor-specific RECEIVE COPY DIGEST, as docs/copy-digest.md shows it for sg_raw
    assert x.ReceiveCopyDigest(list_identifier=7, allocation_length=48).encode() == \
        bytes.fromhex("c5 00 07 00 00 00 00 00 30 00")
    digest = x.CopyDigest(1, 1 << 33, bytes(range(32)))
    assert x.parse_copy_digest(digest.encode()) == digest and len(digest.encode()) == 48
    assert x.ReceiveCopyResultsCopyStatus.invalid("list_identifier").sense\
        .sense_key_specific == field_pointer(2)


@pytest.mark.parametrize("algorithm, code, length", [("sha256", 0x01, 32),
                                                     ("xxh3-128", 0x02, 16)])
def test_copy_digest_of_each_algorithm_round_trips(algorithm, code, length):
    """DIGEST ALGORITHM (docs/copy-digest.md): 01h SHA-256 fills DIGEST; 02h XXH3-128 is
    its first 16 bytes (canonical, big-endian), zero after them."""
    import hashlib

    import xxhash

    a = x.DigestAlgorithm.named(algorithm)
    assert (a, a.label, a.length) == (code, algorithm, length)
    data = b"lio-xcopy" * 1000
    value = (hashlib.sha256(data) if code == 1 else xxhash.xxh3_128(data)).digest()
    wire = x.CopyDigest(1, len(data), value, a).encode()
    assert wire[:8] == bytes.fromhex("0000002c 01") + bytes([code, 0, 0])
    assert wire[8:16] == len(data).to_bytes(8, "big")
    assert wire[16:16 + length] == value and wire[16 + length:] == bytes(32 - length)
    got = x.parse_copy_digest(wire)
    assert (got.known_algorithm, got.value, got.byte_count) == (a, value, len(data))
    # a code this version does not know parses, its DIGEST whole
    other = x.parse_copy_digest(wire[:5] + b"\x7f" + wire[6:])
    assert other.known_algorithm is None and other.value == wire[16:48]
    with pytest.raises(ValueError, match="one of sha256, xxh3-128"):
        x.DigestAlgorithm.named("md5")


# --- golden descriptors, built by hand from the standard's tables -----------------------------
def test_header_golden():
    # SPC-4 6.5 parameter list: byte 0 LIST IDENTIFIER, byte 1 STR(5) LIST ID USAGE(4-3)
    # PRIORITY(2-0), 2-3 CSCD DESCRIPTOR LIST LENGTH, 8-11 SEGMENT DESCRIPTOR LIST
    # LENGTH, 12-15 INLINE DATA LENGTH
    h = x.ParameterListHeader(0x5A, x.ListIdUsage.DISCARD, 5, sequential_striped=True)
    assert h.encode(0x40, 0x0102031C, 4) == bytes.fromhex(
        "5a 35 0040 00000000 0102031c 00000004"
    )
    assert x.ParameterListHeader().encode(0, 0, 0) == bytes.fromhex("00 19 0000" + "00" * 12)


def test_identification_cscd_golden_disk():
    # SPC-4 6.4.5.6 (E4h) + 6.4.5.3 block device type specific parameters
    c = x.IdentificationCscd(
        SRC_NAA, 0x00, code_set=1, designator_type=3, association=0, block_length=4096,
        pad=True, relative_initiator_port=2,
    )
    assert c.encode() == bytes.fromhex(
        "e4 00 0002 01 03 00 10" + SRC_NAA.hex() + "00000000" + "04 001000"
    )


def test_identification_cscd_golden_tape():
    # 6.4.5.4: byte 28 PAD (bit 2) and FIXED (bit 0), 29-31 STREAM BLOCK LENGTH; a T10
    # vendor ID designator (ASCII, type 1) padded to 20 bytes; LU ID TYPE and NUL bits
    t10 = b"LIO-ORG tape0"
    c = x.IdentificationCscd(
        t10, 0x01, code_set=2, designator_type=1, association=0, block_length=0x10000,
        pad=True, fixed=True, lu_id_type=1, nul=True,
    )
    assert c.encode() == bytes.fromhex(
        "e4 61 0000 02 01 00 0d" + t10.hex() + "00" * 7 + "05 010000"
    )
    parsed = x._parse_cscd(memoryview(c.encode()), 0)
    assert parsed == c and parsed.is_stream and not parsed.is_block


def test_segment_goldens():
    # 00h/01h: byte 8 reserved, 9-11 STREAM DEVICE TRANSFER LENGTH, 12-13 reserved,
    # 14-15 BLOCK DEVICE NUMBER OF BLOCKS, 16-23 BLOCK DEVICE LOGICAL BLOCK ADDRESS
    assert x.BlockToStream(0, 1, 0x0200, 0x1122334455667788, 0x010000, cat=True).encode() == (
        bytes.fromhex("00 01 0014 0000 0001 00 010000 0000 0200 1122334455667788")
    )
    assert x.StreamToBlock(1, 0, 3, 9, 0xFFFFFF).encode() == bytes.fromhex(
        "01 00 0014 0001 0000 00 ffffff 0000 0003 0000000000000009"
    )
    # 02h: DC bit 1, CAT bit 0; 8-9 reserved, 10-11 NUMBER OF BLOCKS, 12-19 and 20-27 LBAs
    assert x.BlockToBlock(2, 3, 0xFFFF, 1, 2, dc=True, cat=True).encode() == bytes.fromhex(
        "02 03 0018 0002 0003 0000 ffff 0000000000000001 0000000000000002"
    )
    # 03h: 9-11 SOURCE, 13-15 DESTINATION STREAM DEVICE TRANSFER LENGTH, 16-19 BYTE COUNT
    assert x.StreamToStream(0, 1, 0xDEADBEEF, 0x800, 0x10000).encode() == bytes.fromhex(
        "03 00 0010 0000 0001 00 000800 00 010000 deadbeef"
    )
    assert {t: c.size() for t, c in x.SEGMENT_CLASSES.items()} == {
        0x00: 24, 0x01: 24, 0x02: 28, 0x03: 20, 0x04: 24, 0x05: 16, 0x06: 16, 0x07: 12,
        0x08: 28, 0x09: 28, 0x0A: 32, 0x0B: 24, 0x0C: 24, 0x0D: 28, 0x0E: 20, 0x0F: 16,
        0x10: 12, 0x11: 12, 0x12: 12, 0x13: 12}


# --- what stock sg_xcopy sends ------------------------------------------------------------------
# sg3_utils src/sg_xcopy.c (version 0.80 20260620, doug-gilbert/sg3_utils fb3d289):
#   sg_xcopy if=/dev/sdb of=/dev/sdc bs=512 skip=16 seek=32 count=2048
# against two of our disks (LIO NAA 6h designators, held data limit 0):
# * scsi_operating_parameter: HELD DATA LIMIT 0 -> list_id_usage = 2; list_id stays 1,
#   priority 1 -> header byte 1 = (2 << 3) | 1 = 11h
# * scsi_extended_copy: byte 3 = src_desc_len + dst_desc_len (only the low byte),
#   byte 11 = seg_desc_len (only the low byte)
# * desc_from_vpd_id: first LU NAA designator; desc[0] = E4h, byte 1 left zero,
#   desc[4..7] = designation descriptor header masked with 0Fh/3Fh, designator at 8,
#   desc[28] = 04h only for iflag/oflag=pad, 29-31 = READ CAPACITY block size
# * scsi_encode_seg_desc (02h): length 0018h, byte 5 = 0, byte 7 = 1, 10-11 blocks,
#   12-19 skip, 20-27 seek; bpt = min(65535, max segment length / 512) > count
SG_XCOPY_B2B = bytes.fromhex(
    "01 11 0040 00000000 0000001c 00000000"
    "e4 00 0000 01 03 00 10" + SRC_NAA.hex() + "00000000 00 000200"
    "e4 00 0000 01 03 00 10" + DST_NAA.hex() + "00000000 00 000200"
    "02 00 0018 0000 0001 0000 0800 0000000000000010 0000000000000020"
)


def test_sg_xcopy_block_to_block_golden():
    assert spc.naa_ieee_registered_extended(SRC_SERIAL) == SRC_NAA
    assert spc.naa_ieee_registered_extended(DST_SERIAL) == DST_NAA
    assert len(SG_XCOPY_B2B) == 108
    p = x.parse_extended_copy(SG_XCOPY_B2B)
    assert p.header == x.ParameterListHeader(1, x.ListIdUsage.DISCARD, 1)
    src_lun, dst_lun = (spc.lun_designators(s)[0] for s in (SRC_SERIAL, DST_SERIAL))
    assert p.cscds == (
        x.IdentificationCscd.from_designator(src_lun, 0x00, 512),
        x.IdentificationCscd.from_designator(dst_lun, 0x00, 512),
    )
    assert p.cscds[0].identifies(src_lun) and not p.cscds[0].identifies(dst_lun)
    assert p.segments == (x.BlockToBlock(0, 1, 2048, 16, 32),)
    assert p.inline_data == b""
    assert (p.segment_offset(0), p.cscd_offset(1)) == (80, 48)
    assert p.cscd(1) is p.cscds[1] and p.cscd(x.CSCD_ID_LOCAL) is None
    # and our builder writes the same bytes
    assert x.build_extended_copy(
        p.cscds, p.segments, list_identifier=1, list_id_usage=x.ListIdUsage.DISCARD
    ) == SG_XCOPY_B2B
    text = p.describe()
    assert "02h block->block: 2048 source blocks, LBA 16 -> LBA 32" in text
    assert SRC_NAA.hex() in text


def test_sg_xcopy_block_to_stream_has_an_empty_body():
    # scsi_encode_seg_desc writes only the header for type 00h: DESCRIPTOR LENGTH 0000h
    data = bytearray(SG_XCOPY_B2B[:80]) + bytes.fromhex("00 00 0000")
    data[11] = 4
    assert_sense(illegal(data), Asc.INVALID_FIELD_IN_PARAMETER_LIST, 80 + 2)


# --- round trips --------------------------------------------------------------------------------
def _cscd_strategy() -> st.SearchStrategy[x.IdentificationCscd]:
    common = dict(
        designator=st.binary(max_size=20), code_set=st.integers(0, 15),
        designator_type=st.integers(0, 15), association=st.integers(0, 3),
        pad=st.booleans(), relative_initiator_port=st.integers(0, 0xFFFF),
        lu_id_type=st.integers(0, 3), nul=st.booleans(),
    )
    block = st.builds(
        x.IdentificationCscd, peripheral_device_type=st.sampled_from(sorted(x.BLOCK_DEVICE_TYPES)),
        block_length=st.integers(0, 0xFFFFFF), **common,
    )
    variable = st.builds(x.IdentificationCscd, peripheral_device_type=st.just(1), **common)
    fixed = st.builds(
        x.IdentificationCscd, peripheral_device_type=st.just(1), fixed=st.just(True),
        block_length=st.integers(1, 0xFFFFFF), **common,
    )
    processor = st.builds(
        x.IdentificationCscd, peripheral_device_type=st.just(3),
        block_length=st.integers(0, 0xFFFFFF), **common,
    )
    return block | variable | fixed | processor


@st.composite
def parameter_lists(draw, inline: bool = False) -> x.ExtendedCopyParameterList:
    cscds = draw(st.lists(_cscd_strategy(), min_size=1, max_size=6))
    ids = st.integers(0, len(cscds) - 1) | st.sampled_from(sorted(x.SPECIAL_CSCD_IDS))
    u8, u16, u24, u32, u64 = (st.integers(0, (1 << n) - 1) for n in (8, 16, 24, 32, 64))
    segment = st.one_of(
        st.builds(x.BlockToStream, ids, ids, u16, u64, u24, st.booleans()),
        st.builds(x.StreamToBlock, ids, ids, u16, u64, u24, st.booleans()),
        st.builds(x.BlockToBlock, ids, ids, u16, u64, u64, st.booleans(), st.booleans()),
        st.builds(x.StreamToStream, ids, ids, u32, u24, u24, st.booleans()),
    )
    usage = draw(st.sampled_from(list(x.ListIdUsage)))
    header = x.ParameterListHeader(
        0 if usage == x.ListIdUsage.NO_LIST_ID else draw(u8), usage,
        draw(st.integers(0, 7)), draw(st.booleans()),
    )
    segments = draw(st.lists(segment, max_size=8))
    data = draw(st.binary(max_size=64)) if inline else b""
    return x.ExtendedCopyParameterList(header, tuple(cscds), tuple(segments), data)


@given(parameter_lists())
def test_parameter_list_round_trip(plist):
    data = plist.encode()
    assert x.parse_extended_copy(data) == plist
    assert x.parse_extended_copy(memoryview(data + b"\xff" * 5)) == plist  # trailing bytes
    for i in range(len(plist.segments)):
        off = plist.segment_offset(i)
        assert data[off] == plist.segments[i].TYPE_CODE


@given(parameter_lists(inline=True))
def test_parameter_list_round_trip_with_inline_data(plist):
    assert x.parse_extended_copy(plist.encode(), x.Limits(max_inline_data=64)) == plist


@given(st.binary(max_size=200))
def test_parser_only_raises_illegal_request(data):
    try:
        x.parse_extended_copy(data, x.Limits(max_inline_data=16))
    except CheckCondition as e:
        assert e.sense.key == SenseKey.ILLEGAL_REQUEST


@given(parameter_lists(), st.data())
def test_corrupted_lists_only_raise_illegal_request(plist, data):
    buf = bytearray(plist.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
    buf = buf[: data.draw(st.integers(0, len(buf)))]
    try:
        x.parse_extended_copy(buf)
    except CheckCondition as e:
        assert e.sense.key == SenseKey.ILLEGAL_REQUEST


def test_encode_rejects_what_does_not_fit():
    with pytest.raises(ValueError):
        disk(b"\x01" * 21).encode()
    with pytest.raises(ValueError):
        x.IdentificationCscd(SRC_NAA, 0x00, fixed=True).encode()
    with pytest.raises(ValueError):
        x.BlockToBlock(0, 1, 0x10000, 0, 0).encode()
    with pytest.raises(ValueError):
        x.BlockToStream(0, 1, 1, 0, 1 << 24).encode()
    with pytest.raises(ValueError):
        x.ParameterListHeader(list_id_usage=4).encode(0, 0, 0)
    with pytest.raises(ValueError):
        x.Limits(segment_types=(0x02, 0x14))


# --- every parameter list error -----------------------------------------------------------------
def test_zero_and_short_lists_are_parameter_list_length_errors():
    # zero PARAMETER LIST LENGTH is a no-op the caller handles before parsing
    for data in (b"", SG_XCOPY_B2B[:15]):
        s = illegal(data)
        assert_sense(s, Asc.PARAMETER_LIST_LENGTH_ERROR, 10, in_cdb=True)  # CDB bytes 10-13
        assert s.fixed()[12:14] == b"\x1a\x00" and s.fixed()[15:18] == bytes.fromhex("c0000a")


@pytest.mark.parametrize(("cut", "byte"), [(47, 2), (79, 2), (80, 8), (107, 8)])
def test_list_shorter_than_its_lengths(cut, byte):
    assert_sense(illegal(SG_XCOPY_B2B[:cut]), Asc.PARAMETER_LIST_LENGTH_ERROR, byte)


def test_inline_data_shorter_than_its_length():
    data = two_disk_list()
    struct.pack_into(">I", data, 12, 8)
    data += b"\x00" * 4
    s = illegal(data, x.Limits(max_inline_data=8))
    assert_sense(s, Asc.PARAMETER_LIST_LENGTH_ERROR, 12)


def test_inline_data_beyond_the_limit():
    data = two_disk_list()
    struct.pack_into(">I", data, 12, 4)
    data += b"abcd"
    s = illegal(data, x.Limits(max_inline_data=0))  # no inline data at all
    assert_sense(s, Asc.INLINE_DATA_LENGTH_EXCEEDED, 12)
    assert s.fixed()[12:14] == b"\x26\x0b" and s.fixed()[15:18] == bytes.fromhex("80000c")
    assert x.parse_extended_copy(data, x.Limits(max_inline_data=4)).inline_data == b"abcd"
    assert_sense(illegal(data, x.Limits(max_inline_data=3)), Asc.INLINE_DATA_LENGTH_EXCEEDED, 12)


def test_list_id_usage_01b_is_reserved():
    data = two_disk_list()
    data[1] = (data[1] & ~0x18) | 0x08
    s = illegal(data)
    assert_sense(s, Asc.INVALID_FIELD_IN_PARAMETER_LIST, 1, 4)
    assert s.fixed()[12:14] == b"\x26\x00" and s.fixed()[15:18] == bytes.fromhex("8c0001")


def test_no_list_id_needs_a_zero_list_identifier_and_snlid():
    data = two_disk_list(list_identifier=7, list_id_usage=x.ListIdUsage.NO_LIST_ID)
    assert_sense(illegal(data), Asc.INVALID_FIELD_IN_PARAMETER_LIST, 0)
    data = two_disk_list(list_id_usage=x.ListIdUsage.NO_LIST_ID)
    assert x.parse_extended_copy(data).header.list_id_usage == x.ListIdUsage.NO_LIST_ID
    assert_sense(illegal(data, x.Limits(snlid=False)), Asc.INVALID_FIELD_IN_PARAMETER_LIST, 1, 4)
    for usage in (x.ListIdUsage.HOLD, x.ListIdUsage.DISCARD):  # any list id is fine
        data = two_disk_list(list_identifier=0xFF, list_id_usage=usage)
        assert x.parse_extended_copy(data).header.list_identifier == 0xFF


def test_too_many_cscd_descriptors():
    cscds = [disk()] * 3
    data = x.build_extended_copy(cscds, [b2b()])
    assert len(x.parse_extended_copy(data, x.Limits(max_cscd=3)).cscds) == 3
    s = illegal(data, x.Limits(max_cscd=2))
    assert_sense(s, Asc.TOO_MANY_TARGET_DESCRIPTORS, 2)
    assert s.fixed()[12:14] == b"\x26\x06" and s.fixed()[15:18] == bytes.fromhex("800002")
    # a 65th CSCD descriptor with the default limits
    assert_sense(
        illegal(x.build_extended_copy([disk()] * 65, [b2b()])),
        Asc.TOO_MANY_TARGET_DESCRIPTORS, 2,
    )


def test_unsupported_cscd_type():
    data = two_disk_list()
    data[48] = 0xE5  # second descriptor: IPv4 CSCD descriptor
    s = illegal(data)
    assert_sense(s, Asc.UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE, 48)
    assert s.fixed()[12:14] == b"\x26\x07" and s.fixed()[15:18] == bytes.fromhex("800030")


def test_cscd_list_length_not_a_multiple_of_32():
    data = two_disk_list()
    struct.pack_into(">H", data, 2, 40)  # one E4h descriptor and 8 bytes of the next
    struct.pack_into(">I", data, 8, 28 + 24)
    assert_sense(illegal(data), Asc.INVALID_FIELD_IN_PARAMETER_LIST, 2)
    data[48] = 0x00  # the partial descriptor is not even an E4h
    assert_sense(illegal(data), Asc.UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE, 48)


def test_cscd_field_checks():
    data = two_disk_list()
    data[48 + 7] = 21  # DESIGNATOR LENGTH
    assert_sense(illegal(data), Asc.INVALID_FIELD_IN_PARAMETER_LIST, 48 + 7)
    data = two_disk_list()
    data[16 + 1] = 0x08  # medium changer: reserved in EXTENDED COPY
    assert_sense(illegal(data), Asc.INVALID_FIELD_IN_PARAMETER_LIST, 17, 4)


@pytest.mark.parametrize(("fixed", "length"), [(False, 512), (True, 0)])
def test_stream_fixed_and_block_length_must_agree(fixed, length):
    tape = x.IdentificationCscd(DST_NAA, 0x01)
    data = bytearray(x.build_extended_copy([disk(), tape], [x.BlockToStream(0, 1, 1, 0, 512)]))
    data[48 + 28] = 0x01 if fixed else 0x00
    data[48 + 29 : 48 + 32] = length.to_bytes(3, "big")
    assert_sense(illegal(data), Asc.INVALID_FIELD_IN_PARAMETER_LIST, 48 + 29)


def test_too_many_segment_descriptors():
    data = two_disk_list(*[b2b()] * 3)
    assert len(x.parse_extended_copy(data, x.Limits(max_segments=3)).segments) == 3
    s = illegal(data, x.Limits(max_segments=2))
    assert_sense(s, Asc.TOO_MANY_SEGMENT_DESCRIPTORS, 8)
    assert s.fixed()[12:14] == b"\x26\x08" and s.fixed()[15:18] == bytes.fromhex("800008")


def test_unsupported_segment_types():
    data = two_disk_list(b2b(), b2b())
    data[80 + 28] = 0x14  # register persistent reservation key
    s = illegal(data)
    assert_sense(s, Asc.UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE, 108)
    assert s.fixed()[12:14] == b"\x26\x09" and s.fixed()[15:18] == bytes.fromhex("80006c")
    # a type this module parses but the copy manager was told not to take
    data = two_disk_list(x.StreamToStream(0, 1, 10, 0, 0))
    assert_sense(
        illegal(data, x.Limits(segment_types=(0x00, 0x02))),
        Asc.UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE, 80,
    )


@pytest.mark.parametrize("length", [0x00, 0x17, 0x19, 0xFFFF])
def test_wrong_segment_descriptor_length(length):
    data = two_disk_list()
    struct.pack_into(">H", data, 82, length)
    assert_sense(illegal(data), Asc.INVALID_FIELD_IN_PARAMETER_LIST, 82)


def test_segment_list_that_ends_inside_a_descriptor():
    data = two_disk_list()
    struct.pack_into(">I", data, 8, 20)  # a 28-byte 02h descriptor in a 20-byte list
    assert_sense(illegal(data), Asc.INVALID_FIELD_IN_PARAMETER_LIST, 8)
    data = two_disk_list()
    struct.pack_into(">I", data, 8, 28 + 3)  # three stray bytes after the descriptor
    data += b"\x02\x00\x00"
    assert_sense(illegal(data), Asc.INVALID_FIELD_IN_PARAMETER_LIST, 8)


@pytest.mark.parametrize(
    ("src", "dst", "byte"), [(2, 1, 84), (0, 2, 86), (0x7FF, 0, 84), (0, 0x800, 86),
                             (0xC002, 0, 84), (0, 0xFFFE, 86)],
)
def test_cscd_ids_must_name_a_descriptor(src, dst, byte):
    assert_sense(illegal(two_disk_list(b2b(src, dst))), Asc.INVALID_FIELD_IN_PARAMETER_LIST, byte)


def test_special_cscd_ids_are_accepted():
    for cscd_id in sorted(x.SPECIAL_CSCD_IDS):
        p = x.parse_extended_copy(two_disk_list(b2b(cscd_id, 1)))
        assert p.segments[0].source == cscd_id


def test_descriptor_list_longer_than_the_maximum():
    data = two_disk_list(*[b2b()] * 2)  # 64 + 56 bytes of descriptors
    assert x.parse_extended_copy(data, x.Limits(max_descriptor_list_length=120))
    s = illegal(data, x.Limits(max_descriptor_list_length=119))
    assert_sense(s, Asc.PARAMETER_LIST_LENGTH_ERROR, 8)
    assert s.fixed()[12:14] == b"\x1a\x00" and s.fixed()[15:18] == bytes.fromhex("800008")
    s = illegal(data, x.Limits(max_descriptor_list_length=32))  # the CSCD list alone
    assert_sense(s, Asc.PARAMETER_LIST_LENGTH_ERROR, 2)


# --- the tcmu-runner truncation bug -------------------------------------------------------------
# tcmur_cmd_handler.c xcopy_parse_parameter_list: "uint16_t sdll = be32toh(...&par[8])",
# then xcopy_parse_segment_descs(..., uint8_t sdll): a SEGMENT DESCRIPTOR LIST LENGTH of
# 0100001Ch reads as 1Ch, passes "sdll > RCR_OP_MAX_SEGMENT_DESC_COUNT * 28" and the
# list-length check. SPC-4 6.4.3.5 makes a descriptor list longer than MAXIMUM DESCRIPTOR
# LIST LENGTH a PARAMETER LIST LENGTH ERROR, and a count above MAXIMUM SEGMENT DESCRIPTOR
# COUNT (known only by walking the variable-length descriptors, so only when they were
# sent) TOO MANY SEGMENT DESCRIPTORS.
def test_segment_list_length_high_bytes_are_read():
    data = bytearray(SG_XCOPY_B2B)
    data[8:12] = bytes.fromhex("0100001c")
    assert data[11] == len(SG_XCOPY_B2B) - 80  # what a uint8_t/uint16_t read would see
    assert_sense(illegal(data), Asc.PARAMETER_LIST_LENGTH_ERROR, 8)  # > 10240
    # even with no maximum, 16 MiB of segment descriptors were not sent
    roomy = x.Limits(max_descriptor_list_length=0xFFFFFFFF)
    assert_sense(illegal(data, roomy), Asc.PARAMETER_LIST_LENGTH_ERROR, 8)


def test_segment_list_length_above_64k_counts_every_descriptor():
    n = 2341  # 2341 * 28 = 1000Ch bytes: a 16-bit read would see 000Ch
    data = x.build_extended_copy([disk(), disk(DST_NAA)], [b2b()] * n)
    assert data[8:12] == bytes.fromhex("0001000c")
    big = x.Limits(max_descriptor_list_length=1 << 20)
    assert_sense(illegal(data, big), Asc.TOO_MANY_SEGMENT_DESCRIPTORS, 8)
    everything = x.Limits(max_segments=0xFFFF, max_descriptor_list_length=1 << 20)
    assert len(x.parse_extended_copy(data, everything).segments) == n


# --- RECEIVE COPY RESULTS parameter data ----------------------------------------------------------
def test_copy_status_golden():
    # SPC-5 table 253: AVAILABLE DATA 8, HDD + COPY COMMAND STATUS, SEGMENTS PROCESSED,
    # TRANSFER COUNT UNITS, TRANSFER COUNT (sg_copy_results scsi_copy_status reads these)
    s = x.CopyStatus(x.CopyCommandStatus.COMPLETED, 1, 0x100000)
    assert s.encode() == bytes.fromhex("00000008 01 0001 00 00100000")
    assert x.copy_status_data(x.CopyCommandStatus.IN_PROGRESS, 3, 5 << 30, hdd=True) == (
        bytes.fromhex("00000008 80 0003 01 00500000")  # 5 GiB counted in KiB
    )
    assert x.CopyStatus.parse(s.encode()) == s
    assert x.CopyStatus.parse(s.encode()).transferred_bytes == 0x100000
    assert x.CopyStatus(2, 0, 7, x.TransferCountUnits.BLOCKS).transferred_bytes is None
    assert "completed with errors" in x.CopyStatus(2).describe()
    with pytest.raises(x.XcopyFormatError):
        x.CopyStatus.parse(b"\x00" * 11)


@given(
    st.integers(0, 0x7F), st.integers(0, 0xFFFF), st.integers(0, (1 << 70) - 1), st.booleans()
)
def test_copy_status_round_trip(status, segments, transferred, hdd):
    s = x.CopyStatus.for_bytes(status, segments, transferred, hdd=hdd)
    back = x.CopyStatus.parse(s.encode())
    assert back == s
    assert back.transferred_bytes <= transferred < back.transferred_bytes + (
        1 << (10 * back.transfer_count_units)
    )


def test_operating_parameters_golden():
    # SPC-5 table 244 (FreeBSD scsi_receive_copy_operating_parameters_data, LIO
    # target_rcr_operating_parameters, sg_xcopy scsi_operating_parameter offsets)
    assert x.operating_parameters_data(x.Limits()) == bytes.fromhex(
        "0000003e 01 000000 0040 0100 00002800 40000000 00010000 00040000 00ffffff"
        "0000 0010 10 00 00 00 000000 16 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f"
        "10 11 12 13 e4 fe"
    )
    # LIO's own answer, 2 implemented codes: AVAILABLE DATA 42 (put_unaligned_be32(42))
    lio = x.OperatingParameters(
        True, 2, 1, 1024, 0x10000000, 0, 0, 0, 1, 1, 9, 9, 9, (0x02, 0xE4)
    ).encode()
    assert len(lio) == 46 and lio[:4] == (42).to_bytes(4, "big")
    assert lio[43:] == bytes.fromhex("02 02 e4")
    no_snlid = x.OperatingParameters.from_limits(x.Limits(snlid=False))
    assert (no_snlid.snlid, no_snlid.total_concurrent_copies) == (False, 0)
    assert ("implemented descriptors 00h 01h 02h 03h 04h 05h 06h 07h 08h 09h 0Ah 0Bh 0Ch "
            "0Dh 0Eh 0Fh 10h 11h 12h 13h E4h FEh") in (
        x.OperatingParameters.from_limits(x.Limits()).describe()
    )


@given(
    st.builds(
        x.Limits,
        max_cscd=st.integers(0, 0xFFFF), max_segments=st.integers(0, 0xFFFF),
        max_descriptor_list_length=st.integers(0, 0xFFFFFFFF),
        max_segment_length=st.integers(0, 0xFFFFFFFF),
        max_inline_data=st.integers(0, 0xFFFFFFFF), held_data_limit=st.integers(0, 0xFFFFFFFF),
        max_stream_transfer=st.integers(0, 0xFFFFFFFF), total_concurrent_copies=st.just(0xFFFF),
        max_concurrent_copies=st.integers(0, 0xFF), data_segment_granularity=st.integers(0, 31),
        segment_types=st.sets(st.sampled_from(x.SEGMENT_TYPES)).map(tuple),
    ),
    st.integers(0, 60),
)
def test_operating_parameters_round_trip(limits, allocation_length):
    data = x.operating_parameters_data(limits)
    op = x.OperatingParameters.parse(data)
    assert op == x.OperatingParameters.from_limits(limits)
    if allocation_length >= 44:  # a list cut by the ALLOCATION LENGTH stays short
        short = x.OperatingParameters.parse(spc.truncate(data, allocation_length))
        assert short.implemented_descriptor_types == op.implemented_descriptor_types[
            : allocation_length - 44
        ]
    else:
        with pytest.raises(x.XcopyFormatError):
            x.OperatingParameters.parse(spc.truncate(data, allocation_length))


def test_failed_segment_details_golden():
    # SPC-5 table 246: AVAILABLE DATA (n-3), 4-55 reserved, 56 COPY COMMAND STATUS, 58-59
    # SENSE DATA LENGTH, 60.. sense (sg_copy_results scsi_failed_segment_details)
    sense = SenseData(SenseKey.COPY_ABORTED, Asc.COPY_TARGET_DEVICE_NOT_REACHABLE)
    data = x.failed_segment_details_data(CHECK_CONDITION, sense)
    assert data == bytes.fromhex("0000004a" + "00" * 52 + "02 00 0012") + sense.fixed()
    back = x.FailedSegmentDetails.parse(data)
    assert back == x.FailedSegmentDetails(CHECK_CONDITION, sense.fixed())
    assert back.sense == sense
    assert "COPY ABORTED" in back.describe()
    assert x.failed_segment_details_data(None) == bytes(4)
    assert x.FailedSegmentDetails.parse(bytes(4)) is None
    desc = x.failed_segment_details_data(CHECK_CONDITION, sense, descriptor_format=True)
    assert x.FailedSegmentDetails.parse(desc).sense == sense
    with pytest.raises(x.XcopyFormatError):
        x.FailedSegmentDetails.parse(data[:59])


@given(st.integers(0, 0xFF), st.binary(max_size=252))
def test_failed_segment_details_round_trip(status, sense):
    d = x.FailedSegmentDetails(status, sense)
    assert x.FailedSegmentDetails.parse(d.encode()) == d
