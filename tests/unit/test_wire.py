"""Wire formats: sense data, CDB layouts, SPC-4 builders (golden bytes and round trips)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lio_xcopy.scsi import spc
from lio_xcopy.scsi.cdb import Cdb, bitfield, cdb_length
from lio_xcopy.scsi.errors import InvalidFieldInCdb, LbaOutOfRange
from lio_xcopy.scsi.sense import Asc, SenseData, SenseFormatError, SenseKey, field_pointer


class Read6(Cdb, name="READ (6)", opcode=0x08, length=6, clause="SBC-4"):
    lba: int = bitfield(1, 21)
    length: int = bitfield(4, 8)


class Read10(Cdb, name="READ (10)", opcode=0x28, length=10, clause="SBC-4"):
    rdprotect: int = bitfield(1, 3, lsb=5)
    fua: int = bitfield(1, 1, lsb=3)
    lba: int = bitfield(2, 32)
    length: int = bitfield(7, 16)


def test_fixed_sense_golden():
    s = SenseData(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB,
                  sense_key_specific=field_pointer(1, 3))
    assert s.fixed() == bytes.fromhex("700005000000000a000000002400" + "00cb0001")


def test_fixed_sense_stream_bits_and_negative_information():
    s = SenseData(SenseKey.NO_SENSE, Asc.NO_ADDITIONAL_SENSE_INFORMATION, information=-1024,
                  ili=True)
    b = s.fixed()
    assert b[0] == 0xF0 and b[2] == 0x20 and b[3:7] == bytes.fromhex("fffffc00")
    assert SenseData.parse(b).information_signed == -1024


def test_descriptor_sense_golden():
    s = SenseData(SenseKey.BLANK_CHECK, Asc.END_OF_DATA_DETECTED, information=5, eom=True)
    assert s.descriptor() == bytes.fromhex(
        "72080005000000" "10" "000a80000000000000000005" "04020040"
    )


@given(
    key=st.sampled_from(list(SenseKey)),
    asc=st.sampled_from(list(Asc)),
    info=st.none() | st.integers(0, 2**32 - 1),
    bits=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    sks=st.none() | st.tuples(st.integers(0, 0xFFFF), st.none() | st.integers(0, 7)),
    descriptor=st.booleans(),
)
def test_sense_round_trip(key, asc, info, bits, sks, descriptor):
    s = SenseData(key, asc, information=info, filemark=bits[0], eom=bits[1], ili=bits[2],
                  sense_key_specific=field_pointer(*sks) if sks else None)
    assert SenseData.parse(s.encode(descriptor=descriptor)) == s


def test_parse_rejects_garbage():
    with pytest.raises(SenseFormatError):
        SenseData.parse(b"\x00" * 18)
    with pytest.raises(SenseFormatError):
        SenseData.parse(b"\x70")


def test_field_pointer_bits():
    assert field_pointer(2) == b"\xc0\x00\x02"  # SKSV, C/D, no bit pointer
    assert field_pointer(1, 7, in_cdb=False) == b"\x8f\x00\x01"
    with pytest.raises(ValueError):
        field_pointer(1, 8)


def test_cdb_golden_and_round_trip():
    c = Read10(fua=1, lba=0x01020304, length=8)
    assert c.encode() == bytes.fromhex("28080102030400000800")
    assert Read10.decode(c.encode()) == c
    assert Read6.decode(bytes.fromhex("081fffff0400")).lba == 0x1FFFFF


def test_cdb_usage_data_marks_decoded_bits():
    assert Read10.usage_data() == bytes.fromhex("28e8ffffffff00ffffff")


def test_invalid_points_at_field_msb():
    e = Read10.invalid("rdprotect")
    assert isinstance(e, InvalidFieldInCdb)
    assert e.sense.sense_key_specific == field_pointer(1, 7)
    assert Read10.invalid("lba").sense.sense_key_specific == field_pointer(2)


def test_encode_refuses_values_that_do_not_fit():
    with pytest.raises(ValueError, match="does not fit"):
        Read6(lba=1 << 21).encode()


def test_short_cdb_is_invalid_field():
    with pytest.raises(InvalidFieldInCdb):
        Read10.decode(b"\x28\x00")


@given(st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF), st.integers(0, 7))
def test_read10_property(lba, length, rdprotect):
    c = Read10(rdprotect=rdprotect, lba=lba, length=length)
    assert Read10.decode(c.encode()) == c


def test_service_action_is_encoded_by_default():
    class Rc16(Cdb, name="READ CAPACITY (16)", opcode=0x9E, length=16, clause="SBC-4",
               service_action=0x10):
        alloc: int = bitfield(10, 32)

    assert Rc16().encode()[:2] == b"\x9e\x10"
    assert Rc16.decode(Rc16(alloc=7).encode()).alloc == 7


def test_cdb_length_by_group():
    assert [cdb_length(op) for op in (0x08, 0x28, 0x5A, 0xA3, 0x88)] == [6, 10, 10, 12, 16]


def test_lba_out_of_range_sense():
    s = LbaOutOfRange(1234).sense
    assert (s.key, s.asc, s.information) == (SenseKey.ILLEGAL_REQUEST, 0x2100, 1234)


def test_naa_matches_lio_scheme():
    # target_core_spc.c: 6h, company ID 001405, then the unit serial's hex digits
    naa = spc.naa_ieee_registered_extended("7d3e2f0a-91b4-4c55-a0e2-8f1c6d7e9a01")
    assert naa.hex() == "60014057d3e2f0a91b44c55a0e28f1c6"


def test_standard_inquiry_layout():
    data = spc.StandardInquiry(spc.TYPE_TAPE, product="tape", removable=True,
                               third_party_copy=True).encode()
    assert data[0] == 1 and data[1] == 0x80 and data[2] == 6 and data[3] == 0x12
    assert data[4] == len(data) - 5 and data[5] & 0x08
    assert data[8:16] == b"LIO-ORG " and data[16:32] == b"tape".ljust(16)


def test_device_identification_round_trip():
    ds = spc.lun_designators("abcdef0123456789")
    page = spc.vpd_device_identification(0, ds)
    assert page[1] == 0x83 and spc.Designator.parse_all(page) == ds
    assert ds[0].designator_type == 3 and len(ds[0].value) == 16


def test_mode_parameter_list_headers():
    six = spc.mode_parameter_list(ten=False, pages=b"\x08\x02\x04\x00",
                                  block_descriptors=b"\x00" * 8, device_specific=0x10)
    assert six[:4] == bytes([len(six) - 1, 0, 0x10, 8])
    ten = spc.mode_parameter_list(ten=True, pages=b"\x0a\x02\x00\x00",
                                  block_descriptors=b"", device_specific=0x80)
    assert ten[:8] == bytes([0, len(ten) - 2, 0, 0x80, 0, 0, 0, 0])


def test_parse_mode_parameters():
    data = spc.mode_parameter_list(ten=False, pages=b"\x10\x02\xaa\xbb",
                                   block_descriptors=bytes(8), device_specific=0)
    mp = spc.parse_mode_parameters(data, ten=False)
    assert mp.block_descriptors == (bytes(8),)
    assert mp.pages == ((0x10, 0, 12, b"\x10\x02\xaa\xbb"),)


@pytest.mark.parametrize("data", [b"\x00\x00\x00\x09" + bytes(8), b"\x00\x00\x00\x00\x10\x05\x01"])
def test_parse_mode_parameters_rejects_bad_lengths(data):
    from lio_xcopy.scsi.errors import IllegalRequest

    with pytest.raises(IllegalRequest):
        spc.parse_mode_parameters(data, ten=False)


def test_report_one_command_not_supported():
    assert spc.report_one_command(None, rctd=False) == b"\x00\x01\x00\x00"


def test_a_layout_whose_fields_overlap_is_refused_when_defined():
    with pytest.raises(ValueError, match="BAD: field 'control' overlaps another field"):
        class Bad(Cdb, name="BAD", opcode=0xC5, length=10, clause="test"):
            allocation_length: int = bitfield(6, 32)  # hits CONTROL

    class Good(Cdb, name="GOOD", opcode=0xC5, length=10, clause="test"):
        allocation_length: int = bitfield(5, 32)

    assert [f.name for f in Good.FIELDS] == ["allocation_length", "control"]


def test_every_handler_is_annotated_with_the_layouts_it_is_registered_for():
    """mypy checks the fields a handler reads against its ``cdb`` annotation; the
    dispatch table must hand it nothing else."""
    import typing

    from lio_xcopy.devices.changer import MediumChanger
    from lio_xcopy.devices.disk import Disk
    from lio_xcopy.devices.passthrough import PassThrough
    from lio_xcopy.devices.tape import Tape

    checked = 0
    for device in (Disk, Tape, MediumChanger, PassThrough):
        for layout, name in device._dispatch.values():
            hint = typing.get_type_hints(getattr(device, name))["cdb"]
            assert layout in (typing.get_args(hint) or (hint,)), (device.__name__, name, layout)
            checked += 1
    assert checked > 100


def test_a_layout_cannot_extend_another():
    class Base(Cdb, name="BASE", opcode=0xC6, length=6, clause="test"):
        a: int = bitfield(1, 8)

    with pytest.raises(TypeError, match="subclasses Cdb itself"):
        class Derived(Base, name="DERIVED", opcode=0xC7, length=6, clause="test"):
            b: int = bitfield(2, 8)
    with pytest.raises(TypeError, match="not placed with bitfield"):
        class Unplaced(Cdb, name="UNPLACED", opcode=0xC8, length=6, clause="test"):
            a: int = 3
