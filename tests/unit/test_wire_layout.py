"""Parameter data field tables (scsi/layout.py): one table encodes, decodes and names the
byte a field pointer reports, for the EXTENDED COPY descriptors (SPC-4 6.4.5, 6.4.6)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lio_xcopy.scsi import sbc, smc, spc, ssc
from lio_xcopy.scsi import xcopy as x
from lio_xcopy.scsi.layout import Layout, bitfield


def test_a_layout_refuses_overlapping_and_overlong_fields():
    with pytest.raises(ValueError, match="'b' overlaps"):
        Layout("t", 4, a=bitfield(1, 16), b=bitfield(2, 1, lsb=3))
    with pytest.raises(ValueError, match="'a' runs past byte 3"):
        Layout("t", 4, a=bitfield(2, 24))


def test_a_layout_encodes_checks_and_decodes_at_an_offset():
    t = Layout("t", 4, flag=bitfield(0, 1, lsb=5), n=bitfield(1, 24))
    assert t.encode({"flag": 1, "n": 0x010203}) == bytes.fromhex("20010203")
    with pytest.raises(ValueError, match="n=16777216 does not fit 24 bits"):
        t.encode({"n": 1 << 24})
    assert t.decode(b"\xff\xdf\x01\x02\x03", 1) == {"flag": 0, "n": 0x010203}
    assert t.pointer("flag") == (0, 5)
    assert t.pointer("n") == (1, None)


# SPC-4 6.4.6: the byte of each field a COPY ABORTED segment pointer names
@pytest.mark.parametrize(("cls", "name", "byte"), [
    (x.BlockToStream, "stream_transfer_length", 9), (x.BlockToStream, "number_of_blocks", 14),
    (x.StreamToBlock, "lba", 16), (x.BlockToBlock, "number_of_blocks", 10),
    (x.BlockToBlock, "source_lba", 12), (x.BlockToBlock, "destination_lba", 20),
    (x.StreamToStream, "destination_transfer_length", 13),
    (x.InlineToStream, "number_of_bytes", 20), (x.EmbeddedToStream, "number_of_bytes", 14),
    (x.WriteFilemarks, "wsmk", 8), (x.Space, "code", 8),
    (x.BlockToStreamOffset, "byte_count", 12), (x.BlockToBlockOffset, "source_lba", 12),
    (x.BlockToBlockOffset, "destination_lba", 20), (x.TapeImageCopy, "count", 9),
])
def test_segment_field_offsets_are_the_standards(cls, name, byte):
    assert cls.field_offset(name) == byte


def test_every_segment_type_has_a_table_as_long_as_its_descriptor():
    for code, cls in x.SEGMENT_CLASSES.items():
        assert cls.LAYOUT.length == cls.size(), f"{code:02X}h"
        assert cls.LAYOUT.offset("type_code") == 0
        assert cls.LAYOUT.offset("descriptor_length") == 2


def test_cscd_ids_come_from_the_table():
    assert x.BlockToBlock(3, 4, 1, 0, 0).cscd_ids() == (("source", 3, 4), ("destination", 4, 6))
    assert x.InlineToStream(5, 0, 0, 0).cscd_ids() == (("destination", 5, 6),)
    assert x.StreamToDiscard(6, 1, 1).cscd_ids() == (("source", 6, 4),)
    assert x.VerifyCscd(7).cscd_ids() == (("source", 7, 4),)


@given(count=st.integers(-(1 << 23), (1 << 23) - 1), code=st.integers(0, 15))
def test_space_count_is_twos_complement_on_the_wire(count, code):
    seg = x.Space(2, code, count)
    wire = seg.encode()
    assert wire[8] == code and int.from_bytes(wire[9:12], "big") == count & 0xFFFFFF
    assert x.Space.decode(wire) == seg


def test_a_misaligned_inline_offset_points_at_its_field():
    wire = bytearray(bytes(8) + x.InlineToStream(0, 4, 8, 8).encode())
    wire[8 + 19] = 6  # INLINE DATA OFFSET 6
    with pytest.raises(x.InvalidFieldInParameterList) as e:
        x.InlineToStream.decode(memoryview(wire), 8)
    assert e.value.sense.sense_key_specific == bytes.fromhex("800018")  # SKSV, C/D 0: byte 24


def test_header_and_cscd_tables_place_the_fields_spc4_names():
    # SPC-4 6.5 (LID1 header), 6.4.2 table 126 (LID4 header), 6.4.5.6 (E4h), 6.4.5.9 (FEh)
    assert x.ParameterListHeader.LENGTH_FIELDS == (2, 8, 12)
    assert x.Lid4Header.LENGTH_FIELDS == (42, 44, 46)
    assert x.HEADER_LAYOUT.pointer("list_id_usage") == (1, 4)
    assert x.LID4_HEADER_LAYOUT.pointer("immed") == (15, 0)
    assert x.LID4_HEADER_LAYOUT.pointer("g_sense") == (15, 1)
    assert x.LID4_HEADER_LAYOUT.offset("list_identifier") == 20
    assert x.IdentificationCscd.LAYOUT.offset("block_length") == 29
    assert x.IdentificationCscd.LAYOUT.pointer("peripheral_device_type") == (1, 4)
    assert x.RodCscd.LAYOUT.pointer("r_token") == (22, 0)
    assert x.RodCscd.LAYOUT.offset("rod_token_offset") == 24


def test_a_lid4_header_with_g_sense_points_at_its_bit():
    plist = bytearray(x.build_extended_copy_lid4([], []))
    plist[15] |= 0x02
    with pytest.raises(x.InvalidFieldInParameterList) as e:
        x.parse_extended_copy_lid4(plist)
    assert e.value.sense.sense_key_specific == bytes.fromhex("89000f")  # SKSV, BPV 1, byte 15
    assert x.parse_extended_copy_lid4(x.build_extended_copy_lid4(
        [], [], list_identifier=0x01020304)).header.list_identifier == 0x01020304


def test_receive_copy_results_tables_round_trip_at_the_standards_bytes():
    # SPC-4 r31 6.18.3/6.18.4/6.18.5, SPC-4 6.24 table 248
    assert x.OPERATING_PARAMETERS_LAYOUT.offset("implemented_descriptor_list_length") == 43
    assert x.FAILED_SEGMENT_DETAILS_LAYOUT.offset("sense_data_length") == 58
    assert x.COPY_STATUS_LID4_LAYOUT.offset("transfer_count") == 16
    status = x.CopyStatus(x.CopyCommandStatus.COMPLETED, 3, 0x01020304, 1, True)
    assert status.encode() == bytes.fromhex("00000008 81 0003 01 01020304")
    assert x.CopyStatus.parse(status.encode()) == status
    lid4 = x.CopyStatusLid4(1, x.CopyOperationStatus.COMPLETED, 5, 2, 0, b"\x70\x00\x05",
                            held_data_discarded=True)
    wire = lid4.encode()
    assert wire[4:6] == b"\x01\x81" and wire[13:15] == b"\x04\x03" and len(wire) == 36
    assert x.CopyStatusLid4.parse(wire) == lid4


def test_mode_pages_from_their_tables_golden():
    # SSC-4 8.3.2 (0Fh), 8.3.4 (10h/01h), 8.3.5 (11h); SBC-4 6.5.5 (08h); SMC-3 7.3.3 (1Fh)
    assert ssc.data_compression_page(dce=True) == bytes.fromhex("0f0ec080") + bytes(12)
    assert ssc.device_configuration_extension_page(3) == bytes.fromhex(
        "5001001c 00020003") + bytes(24)
    assert ssc.medium_partition_page(0x12345) == bytes.fromhex("110800001003 0000 ffff")
    assert sbc.caching_mode_page(wce=True) == bytes.fromhex("0812 04") + bytes(17)
    assert sbc.control_mode_page(gltsd=True, tas=True) == bytes.fromhex(
        "0a0a 02 00 00 40 0000 0000 0000")
    assert smc.device_capabilities_page() == bytes.fromhex("1f12 0e00 000e0e0e") + bytes(12)
    assert smc.transport_geometry_page(2) == bytes.fromhex("1e04 0000 0001")


def test_mode_select_header_pointers_come_from_the_header_tables():
    with pytest.raises(x.InvalidFieldInParameterList) as e:
        spc.parse_mode_parameters(bytes.fromhex("0000 00 00 01 00 0000"), ten=True)
    assert e.value.sense.sense_key_specific == bytes.fromhex("880004")  # LONGLBA: byte 4 bit 0
    with pytest.raises(x.InvalidFieldInParameterList) as e:
        spc.parse_mode_parameters(bytes.fromhex("00000004"), ten=False)
    assert e.value.sense.sense_key_specific == bytes.fromhex("800003")
    assert spc.mode_parameter_list(ten=False, pages=bytes(300))[0] == 0xFF  # saturates
