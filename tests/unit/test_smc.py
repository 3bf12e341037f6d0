"""SMC-3 wire formats: CDB layouts, element status data and the changer mode pages."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from lio_xcopy.scsi import smc
from lio_xcopy.scsi.smc import ElementDescriptor, ElementRange, ElementType


def test_read_element_status_cdb_golden():
    # what mtx sends for storage elements with barcodes: B8 12 1000 0008 00 000400 00 00
    cdb = bytes.fromhex("b8121000000800000400" "0000")
    d = smc.ReadElementStatus.decode(cdb)
    assert (d.voltag, d.element_type_code, d.starting_element_address) == (1, 2, 0x1000)
    assert (d.number_of_elements, d.allocation_length, d.dvcid, d.curdata) == (8, 0x400, 0, 0)
    assert d.encode() == cdb


def test_move_medium_cdb_golden():
    cdb = bytes.fromhex("a5000001100201000000" "0000")
    d = smc.MoveMedium.decode(cdb)
    assert (d.transport_element_address, d.source_address, d.destination_address) == (
        1, 0x1002, 0x0100)
    assert d.encode() == cdb
    assert smc.MoveMedium.invalid("invert").sense.sense_key_specific == bytes([0xC8, 0, 10])


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 1), st.integers(0, 1))
def test_position_and_range_round_trip(a, b, inv, rng):
    p = smc.PositionToElement(transport_element_address=a, destination_address=b, invert=inv)
    assert smc.PositionToElement.decode(p.encode()) == p
    r = smc.InitializeElementStatusWithRange(range=rng, starting_element_address=a,
                                                 number_of_elements=b)
    assert smc.InitializeElementStatusWithRange.decode(r.encode()) == r


def test_volume_tag_is_space_filled_and_empty_is_zeros():
    tag = smc.volume_tag("L00001L8")
    assert len(tag) == 36 and tag[:32] == b"L00001L8" + b" " * 24 and tag[32:] == bytes(4)
    assert smc.volume_tag(None) == bytes(36)


def test_storage_descriptor_with_volume_tag():
    d = ElementDescriptor(0x1002, smc.ACCESS | smc.FULL, "L00003L8", 0x1002,
                          medium_type=smc.MEDIUM_TYPE_DATA)
    raw = d.encode(voltag=True, identifier_length=None)
    assert len(raw) == 12 + 36 + 4
    assert raw[:12] == bytes.fromhex("1002 09 00 0000 000000 81 1002".replace(" ", ""))
    assert raw[12:20] == b"L00003L8"


def test_data_transfer_page_pads_identifiers_to_one_length():
    naa = bytes(range(16))
    full = ElementDescriptor(0x100, smc.ACCESS | smc.FULL, "A1", 0x1000, identifier=(1, 3, naa))
    unknown = ElementDescriptor(0x101, smc.ACCESS)
    page = smc.element_status_page(ElementType.DATA_TRANSFER, [full, unknown], voltag=False,
                                   dvcid=True)
    typ, flags, length, count = struct.unpack_from(">BBHI", page)
    assert (typ, flags, length, count) == (4, 0, 16 + 16, 64)
    first = page[8:40]
    assert first[12:16] == bytes([1, 3, 0, 16]) and first[16:] == naa
    assert page[40 + 12:] == bytes(20)  # no identifier: zero length, padded


def test_element_status_data_header_counts_every_page_byte():
    p = smc.element_status_page(ElementType.STORAGE, [ElementDescriptor(0x1000)], voltag=False)
    data = smc.element_status_data(0x1000, 1, [p, p])
    assert data[:8] == struct.pack(">HHI", 0x1000, 1, 2 * len(p))


def test_mode_pages():
    page = smc.element_address_assignment_page(
        ElementRange(1, 1), ElementRange(0x1000, 8), ElementRange(0x10, 2), ElementRange(0x100, 2))
    assert page == bytes.fromhex("1d12 0001 0001 1000 0008 0010 0002 0100 0002 0000".replace(
        " ", ""))
    assert smc.transport_geometry_page(1) == bytes.fromhex("1e020000")
    caps = smc.device_capabilities_page()
    assert len(caps) == 20 and caps[:2] == b"\x1f\x12"
    assert caps[2] == 0x0E and caps[4:8] == bytes([0, 0x0E, 0x0E, 0x0E]) and caps[12:16] == bytes(4)
