"""SSC-4 wire formats: CDB layouts, data builders and the stream sense (golden bytes)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lio_xcopy.scsi import ssc
from lio_xcopy.scsi.errors import CheckCondition, NotReady
from lio_xcopy.scsi.sense import Asc, SenseData, SenseKey, field_pointer


def test_cdb_layouts_decode_what_st_sends():
    # st: READ (6) variable with SILI, 10240 bytes; fixed 64 blocks
    r = ssc.Read6.decode(bytes.fromhex("080200280000"))
    assert (r.sili, r.fixed, r.transfer_length) == (1, 0, 10240)
    assert ssc.Read6.decode(bytes.fromhex("080100004000")).fixed == 1
    w = ssc.WriteFilemarks6.decode(bytes.fromhex("100000000200"))
    assert (w.wsmk, w.immed, w.filemark_count) == (0, 0, 2)
    sp = ssc.Space6.decode(bytes.fromhex("1101ffffff00"))  # MTBSF 1
    assert (sp.code, ssc.signed24(sp.count)) == (1, -1)
    lu = ssc.LoadUnload.decode(bytes.fromhex("1b0000000100"))
    assert (lu.load, lu.eot, lu.hold) == (1, 0, 0)
    loc = ssc.Locate10.decode(bytes.fromhex("2b0400000001000000 00".replace(" ", "")))
    assert (loc.bt, loc.logical_object_identifier) == (1, 0x100)
    assert ssc.ReadPositionShortVendor().encode() == bytes.fromhex("34010000000000000000")
    assert ssc.ReadPositionLong().encode()[1] == 0x06


def test_invalid_field_pointers():
    def sks(exc: CheckCondition) -> bytes:
        assert exc.sense.key == SenseKey.ILLEGAL_REQUEST
        assert exc.sense.asc == Asc.INVALID_FIELD_IN_CDB
        return exc.sense.sense_key_specific

    assert sks(ssc.Space6.invalid("code")) == field_pointer(1, 3)
    assert sks(ssc.Read6.invalid("fixed")) == field_pointer(1, 0)
    assert sks(ssc.Read6.invalid("sili")) == field_pointer(1, 1)
    assert sks(ssc.Write6.invalid("transfer_length")) == field_pointer(2)
    assert sks(ssc.WriteFilemarks6.invalid("wsmk")) == field_pointer(1, 1)
    assert sks(ssc.LoadUnload.invalid("eot")) == field_pointer(4, 2)


@given(st.integers(-(1 << 23), (1 << 23) - 1))
def test_signed24_round_trip(n):
    cdb = ssc.Space6(code=0, count=ssc.to_signed24(n)).encode()
    assert ssc.signed24(ssc.Space6.decode(cdb).count) == n


def test_to_signed24_range():
    with pytest.raises(ValueError):
        ssc.to_signed24(1 << 23)


def test_block_limits_golden():
    assert ssc.block_limits(0xFFFFFF, 1).hex() == "00ffffff0001"
    assert ssc.block_limits(0x800000, 4, granularity=2).hex() == "028000000004"
    data = ssc.maximum_logical_object_identifier(0xFFFFFFFF)
    assert len(data) == 20 and data[12:].hex() == "00000000ffffffff"


def test_read_position_short_golden():
    assert ssc.read_position_short(0, bop=True, eop=False).hex() == (
        "80000000" "00000000" "00000000" "00000000" "00000000"
    )
    b = ssc.read_position_short(0x01020304, bop=False, eop=True)
    assert b.hex() == "40000000" "01020304" "01020304" "00000000" "00000000"
    assert ssc.parse_read_position_short(b) == ssc.ShortPosition(False, True, 0, 0x01020304,
                                                                 0x01020304)
    assert ssc.read_position_short(1 << 32, bop=False, eop=False)[0] == 0x04  # LOLU


def test_read_position_long_golden():
    b = ssc.read_position_long(7, 2, bop=False, eop=False)
    assert len(b) == 32
    assert b.hex() == "00000000" "00000000" + "0000000000000007" "0000000000000002" + "00" * 8


def test_block_descriptor_and_device_specific_parameter():
    assert ssc.block_descriptor(0, 0).hex() == "0000000000000000"
    assert ssc.block_descriptor(0x40, 512, 7).hex() == "4000000700000200"
    assert ssc.parse_block_descriptor(bytes.fromhex("4000000700000200")) == (0x40, 7, 512)
    assert ssc.device_specific_parameter(write_protected=False, buffered_mode=1) == 0x10
    assert ssc.device_specific_parameter(write_protected=True, buffered_mode=1) == 0x90


def test_mode_pages():
    dc = ssc.device_configuration_page()
    assert len(dc) == 16 and dc[:2] == b"\x10\x0e" and dc[8] == 0x40 and dc[10] == 0x18
    # Data Compression (0Fh): DCC one (st's MTCOMPRESSION needs it), DCE as set, DDE one,
    # no algorithm
    assert ssc.data_compression_page().hex() == "0f0e" "4080" + "00" * 12
    assert ssc.data_compression_page(dce=True).hex() == "0f0e" "c080" + "00" * 12
    assert ssc.changeable(dc) == b"\x10\x0e" + bytes(14)


@pytest.mark.parametrize(
    "exc,fixed_hex",
    [
        # NO SENSE, FILEMARK, VALID, INFORMATION 10240, 00h/01h
        (ssc.FilemarkDetected(10240), "f0008000002800" "0a" "00000000" "0001" "0000" "0000"),
        # BLANK CHECK, VALID, INFORMATION 3, 00h/05h
        (ssc.EndOfData(3), "f0000800000003" "0a" "00000000" "0005" "0000" "0000"),
        # NO SENSE, ILI, INFORMATION -100
        (ssc.IncorrectLength(-100), "f00020ffffff9c" "0a" "00000000" "0000" "0000" "0000"),
        # NO SENSE, EOM, INFORMATION 0, 00h/02h
        (ssc.EarlyWarning(), "f0004000000000" "0a" "00000000" "0002" "0000" "0000"),
        # VOLUME OVERFLOW, EOM, INFORMATION 4, 00h/02h
        (ssc.VolumeOverflow(4), "f0004d00000004" "0a" "00000000" "0002" "0000" "0000"),
        # NO SENSE, EOM, INFORMATION 2, 00h/04h
        (ssc.BeginningOfPartition(2), "f0004000000002" "0a" "00000000" "0004" "0000" "0000"),
        # NOT READY, MEDIUM NOT PRESENT
        (ssc.MediumNotPresent(), "70000200000000" "0a" "00000000" "3a00" "0000" "0000"),
    ],
)
def test_stream_sense_golden(exc, fixed_hex):
    assert isinstance(exc, CheckCondition)
    assert exc.sense.fixed().hex() == fixed_hex


def test_stream_sense_carries_transfer_and_residue():
    e = ssc.IncorrectLength(-5, transferred=100)
    assert (e.transferred, e.residue) == (100, -5)
    assert SenseData.parse(e.sense.descriptor()).information_signed == -5
    assert ssc.EndOfData(None).sense.information is None
    assert ssc.EndOfData(1, eom=True).sense.eom
    assert isinstance(ssc.MediumNotPresent(), NotReady)
    assert ssc.FilemarkDetected(1, transferred=0).transferred == 0


def test_sixteen_byte_and_new_cdbs_decode_golden_bytes():
    # LOCATE (16): DEST_TYPE 001b (a logical file), CP, partition 0, identifier 3
    loc = ssc.Locate16.decode(bytes.fromhex("920a0000" "0000000000000003" "00000000"))
    assert (loc.dest_type, loc.cp, loc.immed, loc.partition, loc.logical_identifier) == (
        1, 1, 0, 0, 3)
    assert ssc.Locate16.invalid("dest_type").sense.sense_key_specific == field_pointer(1, 4)
    # SPACE (16): filemarks, count -2
    sp = ssc.Space16.decode(bytes.fromhex("91010000" "fffffffffffffffe" "00000000"))
    assert (sp.code, sp.count - (1 << 64), sp.parameter_length) == (1, -2, 0)
    assert ssc.ReadPositionExtended(allocation_length=32).encode().hex() == (
        "34080000000000002000")
    rds = ssc.ReportDensitySupport.decode(bytes.fromhex("44010000000000003800"))
    assert (rds.media, rds.medium_type, rds.allocation_length) == (1, 0, 56)
    ls = ssc.LogSense.decode(bytes.fromhex("4d004c00000003040000"))
    assert (ls.pc, ls.page_code, ls.parameter_pointer, ls.allocation_length) == (1, 0x0C, 3,
                                                                               0x400)
    assert ssc.LogSelect(pcr=1, pc=1).encode().hex() == "4c024000000000000000"
    fm = ssc.FormatMedium.decode(bytes.fromhex("040102000000"))
    assert (fm.immed, fm.format, fm.transfer_length) == (1, 2, 0)


def test_read_position_extended_golden():
    b = ssc.read_position_extended(0x0102030405, bop=False, eop=True, bpew=True)
    assert b.hex() == ("4100001c" "00000000" "0000000102030405" "0000000102030405"
                       "0000000000000000")
    long = ssc.read_position_long(9, 2, bop=True, eop=False, bpew=True)
    assert long[0] == 0x81
    assert ssc.parse_read_position_long(long) == ssc.LongPosition(True, False, True, 0, 9, 2)


def test_report_density_support_golden():
    d = ssc.density_support(0xA0, 268, writable=True)
    assert len(d) == 56 and d[:4].hex() == "00360000"
    assert d[4:20].hex() == "a0a0a1002f000000" "000000000000010c"
    assert d[20:56] == b"LIO-ORG AWSTAPE AWSTAPE file        "
    assert ssc.density_support(0xA0, 1, writable=False)[6] == 0x21  # WRTOK clear
    m = ssc.medium_type_support(0, (0xA0,))
    assert len(m) == 60 and m[:10].hex() == "003a0000" "00000034" "01a0"
    assert m[24:60] == b"LIO-ORG AWSTAPE AWSTAPE file        "


def test_mode_pages_golden():
    ext = ssc.device_configuration_extension_page(0x1234)
    assert len(ext) == 32 and ext[:8].hex() == "5001001c" "00021234" and ext[8:] == bytes(24)
    assert ssc.changeable(ext, {6: 0xFF, 7: 0xFF}) == bytes.fromhex("5001001c0000ffff") + (
        bytes(24))
    part = ssc.medium_partition_page(268)
    assert part.hex() == "1108" "0000" "1003" "0000" "010c"
    assert ssc.changeable(part) == bytes.fromhex("11080000000000000000")


def test_log_pages_golden():
    assert ssc.supported_log_pages((0x0C, 0x2E)).hex() == "00000003" "000c2e"
    assert ssc.supported_log_subpages((0x0C, 0x2E)).hex() == "40ff0008" "00000c002e0000ff"
    ta = ssc.tape_alert_page({0x09})
    assert len(ta) == 4 + 64 * 5 and ta[:4].hex() == "2e000140"
    assert ta[4:14].hex() == "0001030100" "0002030100"
    assert ta[4 + 8 * 5 : 4 + 9 * 5].hex() == "0009030101"  # flag 09h: write protect
    sa = ssc.sequential_access_page(ssc.SequentialAccessCounters(1, 2, 3, 4, 5, 6, 7, 8))
    assert sa[:4].hex() == "0c00" + f"{4 * 12 + 5 * 8 + 5:04x}"
    assert sa[4:16].hex() == "0000000800000000" "00000001"
    assert sa[52:60].hex() == "00040004" "00000005"
    assert sa[-5:].hex() == "0100000100"  # cleaning required: no


def test_programmable_early_warning_sense_golden():
    e = ssc.ProgrammableEarlyWarning()
    assert isinstance(e, ssc.EarlyWarning)
    # NO SENSE, EOM, VALID, INFORMATION 0, 00h/07h
    assert e.sense.fixed().hex() == "f0004000000000" "0a" "00000000" "0007" "0000" "0000"
