"""SBC-4 wire formats: CDB layouts, READ CAPACITY data, VPD B0h/B1h, mode pages."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lio_xcopy.scsi import sbc
from lio_xcopy.scsi.errors import ParameterListLengthError
from lio_xcopy.scsi.sense import SenseKey

ALL_LAYOUTS = [
    sbc.Read6, sbc.Read10, sbc.Read16, sbc.Write6, sbc.Write10, sbc.Write16,
    sbc.ReadCapacity10, sbc.ReadCapacity16, sbc.SynchronizeCache10,
    sbc.SynchronizeCache16, sbc.Read12, sbc.Write12, sbc.CompareAndWrite, *sbc.VERIFIES,
    *sbc.WRITE_AND_VERIFIES, *sbc.WRITE_SAMES, sbc.Unmap, sbc.GetLbaStatus, *sbc.PRE_FETCHES,
]


# --- CDB layouts ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cdb", "golden"),
    [
        (sbc.Read6(lba=0x1FFFFF, transfer_length=0), "08 1f ff ff 00 00"),
        (sbc.Write6(lba=0x012345, transfer_length=8), "0a 01 23 45 08 00"),
        (sbc.Read10(lba=0x01020304, transfer_length=8, fua=1), "28 08 01020304 00 0008 00"),
        (sbc.Read10(rdprotect=5, dpo=1, group_number=0x1F), "28 b0 00000000 1f 0000 00"),
        (sbc.Write10(lba=0xFFFFFFFF, transfer_length=0xFFFF), "2a 00 ffffffff 00 ffff 00"),
        (
            sbc.Read16(lba=0x0102030405060708, transfer_length=0x11223344, fua=1),
            "88 08 0102030405060708 11223344 00 00",
        ),
        (
            sbc.Write16(lba=1, transfer_length=2, wrprotect=1, group_number=3),
            "8a 20 0000000000000001 00000002 03 00",
        ),
        (sbc.ReadCapacity10(lba=7, pmi=1), "25 00 00000007 0000 01 00"),
        (
            sbc.ReadCapacity16(allocation_length=32),
            "9e 10 0000000000000000 00000020 00 00",
        ),
        (
            sbc.SynchronizeCache10(immed=1, lba=16, number_of_blocks=4),
            "35 02 00000010 00 0004 00",
        ),
        (
            sbc.SynchronizeCache16(lba=2**40, number_of_blocks=9),
            "91 00 0000010000000000 00000009 00 00",
        ),
        (sbc.Read12(lba=0x01020304, transfer_length=0x05060708, fua=1, dpo=1),
         "a8 18 01020304 05060708 00 00"),
        (sbc.Write12(lba=9, transfer_length=1, wrprotect=7, group_number=2),
         "aa e0 00000009 00000001 02 00"),
        (sbc.CompareAndWrite(lba=0x1122334455667788, number_of_blocks=1, fua=1),
         "89 08 1122334455667788 000000 01 00 00"),
        (sbc.Verify10(lba=4, verification_length=3, bytchk=0b11), "2f 06 00000004 00 0003 00"),
        (sbc.Verify12(lba=4, verification_length=3, bytchk=0b01, vrprotect=1),
         "af 22 00000004 00000003 00 00"),
        (sbc.Verify16(lba=4, verification_length=3, dpo=1),
         "8f 10 0000000000000004 00000003 00 00"),
        (sbc.WriteAndVerify10(lba=4, transfer_length=3, bytchk=1), "2e 02 00000004 00 0003 00"),
        (sbc.WriteAndVerify12(lba=4, transfer_length=3), "ae 00 00000004 00000003 00 00"),
        (sbc.WriteAndVerify16(lba=4, transfer_length=3, bytchk=1),
         "8e 02 0000000000000004 00000003 00 00"),
        (sbc.WriteSame10(lba=4, number_of_blocks=0x100, unmap=1, anchor=1),
         "41 18 00000004 00 0100 00"),
        (sbc.WriteSame16(lba=4, number_of_blocks=0x10000, unmap=1, ndob=1),
         "93 09 0000000000000004 00010000 00 00"),
        (sbc.Unmap(anchor=1, parameter_list_length=24), "42 01 00000000 00 0018 00"),
        (sbc.GetLbaStatus(lba=0x20, allocation_length=0x1000),
         "9e 12 0000000000000020 00001000 00 00"),
        (sbc.PreFetch10(lba=8, prefetch_length=16, immed=1), "34 02 00000008 00 0010 00"),
        (sbc.PreFetch16(lba=8, prefetch_length=16), "90 00 0000000000000008 00000010 00 00"),
    ],
)
def test_golden_cdbs(cdb, golden):
    raw = bytes.fromhex(golden.replace(" ", ""))
    assert cdb.encode() == raw
    assert type(cdb).decode(raw) == cdb


@given(st.data())
def test_layout_round_trip(data):
    layout = data.draw(st.sampled_from(ALL_LAYOUTS))
    values = {
        f.name: data.draw(st.integers(0, f.mask), label=f.name)
        for f in layout.FIELDS
        if f.name != "service_action"
    }
    cdb = layout(**values)
    raw = cdb.encode()
    assert len(raw) == layout.LENGTH
    assert raw[0] == layout.OPCODE
    assert layout.decode(raw) == cdb


def test_read_capacity_16_is_a_service_action():
    assert sbc.ReadCapacity16.SERVICE_ACTION == 0x10
    assert sbc.ReadCapacity16().encode()[1] == 0x10


def test_read_10_usage_data():
    assert sbc.Read10.usage_data() == bytes.fromhex("28fcffffffff1fffffff")


def test_transfer_blocks_six_byte_zero_means_256():
    assert sbc.transfer_blocks(sbc.Read6(transfer_length=0)) == 256
    assert sbc.transfer_blocks(sbc.Write6(transfer_length=5)) == 5
    assert sbc.transfer_blocks(sbc.Read10(transfer_length=0)) == 0
    assert sbc.transfer_blocks(sbc.Write16(transfer_length=2**32 - 1)) == 2**32 - 1


@pytest.mark.parametrize(
    ("layout", "name", "sks"),
    [
        (sbc.Read10, "rdprotect", "cf0001"),  # byte 1, bit 7
        (sbc.Write16, "wrprotect", "cf0001"),
        (sbc.Read6, "lba", "cc0001"),  # byte 1, bit 4
        (sbc.Read10, "transfer_length", "c00007"),  # whole bytes from byte 7
        (sbc.ReadCapacity10, "lba", "c00002"),
        (sbc.ReadCapacity16, "pmi", "c8000e"),  # byte 14, bit 0
    ],
)
def test_invalid_field_pointer(layout, name, sks):
    sense = layout.invalid(name).sense
    fixed = sense.fixed()
    assert sense.key == SenseKey.ILLEGAL_REQUEST
    assert fixed[12:14] == b"\x24\x00"
    assert fixed[15:18] == bytes.fromhex(sks)


# --- READ CAPACITY data --------------------------------------------------------------------
def test_read_capacity_10_data():
    assert sbc.read_capacity_10_data(2047, 512) == bytes.fromhex("000007ff00000200")
    assert sbc.read_capacity_10_data(0xFFFFFFFE, 4096) == bytes.fromhex("fffffffe00001000")
    assert sbc.read_capacity_10_data(2**32, 512) == bytes.fromhex("ffffffff00000200")
    assert sbc.read_capacity_10_data(2**40, 512)[:4] == b"\xff" * 4


def test_read_capacity_16_data():
    data = sbc.read_capacity_16_data(0x123456789, 4096)
    assert len(data) == sbc.READ_CAPACITY_16_LENGTH == 32
    assert data == bytes.fromhex("0000000123456789" "00001000" "10" "00" "0000") + bytes(16)
    data = sbc.read_capacity_16_data(
        9, 512, lbppbe=3, lowest_aligned_lba=1, lbpme=True, lbprz=True, rc_basis=0
    )
    assert data[12:16] == bytes.fromhex("0003c001")


# --- VPD pages -----------------------------------------------------------------------------
def test_block_limits_page():
    page = sbc.vpd_block_limits(
        max_transfer_length=0x800,
        optimal_transfer_length=0x100,
        optimal_transfer_length_granularity=8,
        max_compare_and_write_length=1,
        wsnz=True,
        unmap_granularity_alignment=3,
        max_write_same_length=0x10000,
    )
    assert len(page) == 64
    assert page[:4] == bytes.fromhex("00b0003c")
    assert page[4] == 1 and page[5] == 1
    assert struct.unpack_from(">H", page, 6)[0] == 8
    assert struct.unpack_from(">II", page, 8) == (0x800, 0x100)
    assert struct.unpack_from(">I", page, 32)[0] == 0x80000003
    assert struct.unpack_from(">Q", page, 36)[0] == 0x10000
    assert page[44:] == bytes(20)


def test_block_limits_page_defaults_report_nothing():
    page = sbc.vpd_block_limits()
    assert page == bytes.fromhex("00b0003c") + bytes(60)


def test_block_device_characteristics_page():
    page = sbc.vpd_block_device_characteristics()
    assert len(page) == 64
    assert page[:8] == bytes.fromhex("00b1003c 0001 00 00".replace(" ", ""))
    assert page[8:] == bytes(56)
    page = sbc.vpd_block_device_characteristics(
        medium_rotation_rate=7200, nominal_form_factor=3, fuab=True, vbuls=True
    )
    assert page[4:9] == bytes.fromhex("1c20000303")


# --- mode parameters -----------------------------------------------------------------------
def test_caching_mode_page():
    page = sbc.caching_mode_page(wce=True)
    assert len(page) == 20
    assert page[:3] == bytes.fromhex("081204")
    assert page[3:] == bytes(17)
    assert sbc.caching_mode_page(rcd=True)[2] == 0x01


def test_control_mode_page():
    page = sbc.control_mode_page()
    assert page == bytes.fromhex("0a0a") + bytes(10)
    page = sbc.control_mode_page(
        tst=1, d_sense=True, gltsd=True, queue_algorithm_modifier=1, qerr=1, swp=True,
        tas=True, busy_timeout_period=0xFFFF,
    )
    assert page == bytes.fromhex("0a0a 26 12 08 40 0000 ffff 0000".replace(" ", ""))


def test_short_block_descriptor():
    assert sbc.short_block_descriptor(100, 512) == bytes.fromhex("0000006400000200")
    assert sbc.short_block_descriptor(2**33, 4096) == bytes.fromhex("ffffffff00001000")
    assert sbc.parse_short_block_descriptor(bytes.fromhex("0000006400000200")) == (100, 0, 512)
    assert sbc.parse_short_block_descriptor(bytes.fromhex("00000001ff010000")) == (1, 255, 65536)


def test_disk_device_specific_parameter():
    assert sbc.disk_device_specific_parameter() == 0x10
    assert sbc.disk_device_specific_parameter(wp=True) == 0x90
    assert sbc.disk_device_specific_parameter(wp=True, dpofua=False) == 0x80


# --- provisioning: VPD B2h, UNMAP parameter list, LBA status data ------------------------------
def test_logical_block_provisioning_page():
    page = sbc.LogicalBlockProvisioning(lbpu=True, lbpws=True, lbpws10=True,
                                        lbprz=sbc.LBPRZ_ZEROS,
                                        provisioning_type=sbc.PROVISIONING_THIN)
    raw = page.encode()
    # SBC-4 6.6.6: page length 4; LBPU LBPWS LBPWS10, LBPRZ 001b in bits 4-2; thin (010b)
    assert raw == bytes.fromhex("00b20004 00 e4 02 00")
    assert sbc.LogicalBlockProvisioning.decode(raw) == page


@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1)), max_size=8))
def test_unmap_parameter_list_round_trip(extents):
    raw = sbc.unmap_parameter_list(extents)
    assert struct.unpack_from(">HH", raw) == (len(raw) - 2, len(raw) - 8)
    parsed = sbc.parse_unmap_parameter_list(raw)
    assert [(lba, n) for lba, n, _ in parsed] == extents
    assert [pos for _, _, pos in parsed] == [8 + 16 * i for i in range(len(extents))]


def test_unmap_parameter_list_truncation():
    raw = sbc.unmap_parameter_list([(1, 2), (3, 4)])
    # a descriptor cut by the parameter list length, or by the descriptor data length
    assert sbc.parse_unmap_parameter_list(raw[:-1]) == [(1, 2, 8)]
    short = bytearray(raw)
    struct.pack_into(">H", short, 2, 20)
    assert sbc.parse_unmap_parameter_list(bytes(short)) == [(1, 2, 8)]
    with pytest.raises(ParameterListLengthError):
        sbc.parse_unmap_parameter_list(raw[:7])


def test_lba_status_data():
    raw = sbc.lba_status_data([(0, 3, sbc.MAPPED), (3, 5, sbc.DEALLOCATED)])
    assert raw[:8] == bytes.fromhex("00000024 00000000")
    assert raw[8:24] == bytes.fromhex("0000000000000000 00000003 00 000000")
    assert raw[24:40] == bytes.fromhex("0000000000000003 00000005 01 000000")
    assert sbc.parse_lba_status_data(raw) == [(0, 3, 0), (3, 5, 1)]
    assert sbc.parse_lba_status_data(raw[:30]) == [(0, 3, 0)]
