"""Each data format the initiator reads is decoded in scsi/, beside its encoder: what our
LUNs build, the initiator reads back field for field (round trips, plus golden bytes)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lio_xcopy.scsi import sbc, sense, smc, spc, ssc
from lio_xcopy.scsi.sense import SenseKey

_text = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_ ", max_size=16).map(str.strip)


# --- standard INQUIRY data, SPC-4 6.6.2 ------------------------------------------------------
@given(
    device_type=st.integers(0, 0x1F), qualifier=st.integers(0, 7),
    vendor=_text.map(lambda t: t[:8].strip()), product=_text,
    revision=_text.map(lambda t: t[:4].strip()), removable=st.booleans(),
    tpc=st.booleans(), descriptors=st.lists(st.integers(1, 0xFFFF), max_size=8).map(tuple),
    version=st.integers(0, 0xFF),
)
def test_standard_inquiry_round_trip(device_type, qualifier, vendor, product, revision,
                                     removable, tpc, descriptors, version):
    inq = spc.StandardInquiry(device_type, vendor, product, revision, removable, tpc,
                              descriptors, qualifier, version)
    assert spc.StandardInquiry.parse(inq.encode()) == inq


def test_standard_inquiry_golden_and_short():
    data = spc.StandardInquiry(spc.TYPE_DISK, product="lio-xcopy disk").encode()
    assert data[:3] == b"\x00\x00\x06"  # qualifier 000b, type 0, VERSION 06h (SPC-4)
    # a device that returns only the 36 bytes every device must: no version descriptors
    inq = spc.StandardInquiry.parse(b"\x61\x80\x05" + bytes(5) + b"VENDOR  PRODUCT         0042")
    assert (inq.peripheral_qualifier, inq.device_type, inq.removable, inq.version) == (
        3, 1, True, 5)
    assert (inq.vendor, inq.product, inq.revision) == ("VENDOR", "PRODUCT", "0042")
    assert inq.version_descriptors == ()
    with pytest.raises(spc.InquiryFormatError, match="35 bytes"):
        spc.StandardInquiry.parse(data[:35])


# --- READ CAPACITY (16) parameter data, SBC-4 5.18.2 -----------------------------------------
@given(
    last_lba=st.integers(0, 2**64 - 1), block_length=st.integers(0, 2**32 - 1),
    lbppbe=st.integers(0, 15), lowest=st.integers(0, 0x3FFF), lbpme=st.booleans(),
    lbprz=st.booleans(), rc_basis=st.integers(0, 3),
)
def test_capacity16_round_trip(last_lba, block_length, lbppbe, lowest, lbpme, lbprz, rc_basis):
    cap = sbc.Capacity16(last_lba, block_length, lbppbe, lowest, lbpme, lbprz, rc_basis)
    assert sbc.Capacity16.parse(cap.encode()) == cap


def test_capacity16_golden_and_short():
    data = sbc.read_capacity_16_data(196607, 512, lbpme=True)
    assert data == bytes.fromhex("000000000002ffff 00000200 10 00 8000") + bytes(16)
    cap = sbc.Capacity16.parse(data)
    assert (cap.blocks, cap.size, cap.lbpme, cap.lbprz) == (196608, 96 << 20, True, False)
    # 14 bytes are enough for the size; the provisioning bits need bytes 14-15
    assert sbc.Capacity16.parse(data[:14]) == sbc.Capacity16(196607, 512)
    with pytest.raises(sbc.CapacityFormatError, match="13 bytes"):
        sbc.Capacity16.parse(data[:13])


# --- READ POSITION long form, SSC-4 -----------------------------------------------------------
@given(
    position=st.integers(0, 2**64 - 1), file_number=st.integers(0, 2**64 - 1),
    partition=st.integers(0, 2**32 - 1), flags=st.lists(st.booleans(), min_size=5, max_size=5),
)
def test_read_position_long_round_trip(position, file_number, partition, flags):
    bop, eop, bpew, mpu, lonu = flags
    data = ssc.read_position_long(position, file_number, bop=bop, eop=eop, partition=partition,
                                  bpew=bpew, mpu=mpu, lonu=lonu)
    assert ssc.parse_read_position_long(data) == ssc.LongPosition(
        bop, eop, bpew, partition, position, file_number, mpu=mpu, lonu=lonu)


def test_read_position_long_unknown_and_short():
    # byte 0: BOP 80h, EOP 40h, MPU 08h, LONU 04h, BPEW 01h
    rp = ssc.parse_read_position_long(bytes([0x0C]) + bytes(31))
    assert (rp.mpu, rp.lonu, rp.bop, rp.eop, rp.bpew) == (True, True, False, False, False)
    with pytest.raises(ssc.PositionFormatError, match="20 bytes"):
        ssc.parse_read_position_long(bytes(20))


# --- READ ELEMENT STATUS data, SMC-3 6.11 ------------------------------------------------------
def _descriptors(voltag: bool, identifiers: bool) -> st.SearchStrategy[list[smc.ElementDescriptor]]:
    barcode = (st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=32)
               if voltag else st.none())
    identifier = (st.tuples(st.integers(0, 15), st.integers(0, 0x3F),
                            st.binary(min_size=1, max_size=24)) if identifiers else st.none())
    one = st.builds(
        smc.ElementDescriptor, address=st.integers(0, 0xFFFF), flags=st.integers(0, 0xFF),
        barcode=st.one_of(st.none(), barcode), source=st.one_of(st.none(), st.integers(0, 0xFFFF)),
        asc=st.integers(0, 0xFFFF), medium_type=st.integers(0, 7),
        identifier=st.one_of(st.none(), identifier),
    )
    return st.lists(one, min_size=1, max_size=4)


@given(voltag=st.booleans(), dvcid=st.booleans(), data=st.data())
def test_element_status_round_trip(voltag, dvcid, data):
    pages = {
        t: data.draw(_descriptors(voltag, dvcid and t == smc.ElementType.DATA_TRANSFER))
        for t in (smc.ElementType.MEDIUM_TRANSPORT, smc.ElementType.STORAGE,
                  smc.ElementType.DATA_TRANSFER)
    }
    raw = smc.element_status_data(0, sum(map(len, pages.values())), [
        smc.element_status_page(t, ds, voltag=voltag, dvcid=dvcid) for t, ds in pages.items()])
    assert smc.parse_element_status(raw) == [(t, d) for t, ds in pages.items() for d in ds]


def test_element_status_golden_descriptor_and_refusals():
    d = smc.ElementDescriptor(0x100, smc.FULL | smc.ACCESS, "A00001L8", source=0x1000,
                              medium_type=smc.MEDIUM_TYPE_DATA, identifier=(1, 3, b"\x60\x01"))
    page = smc.element_status_page(smc.ElementType.DATA_TRANSFER, [d], voltag=True, dvcid=True)
    raw = smc.element_status_data(0x100, 1, [page])
    assert raw[:16].hex() == "01000001000000" "3e" "04800036" "00000036"
    assert raw[16:28].hex() == "0100" "09" "00" "0000" "000000" "81" "1000"
    assert raw[28:64] == b"A00001L8".ljust(32) + bytes(4)
    assert raw[64:70].hex() == "010300026001"
    assert smc.parse_element_status(raw) == [(smc.ElementType.DATA_TRANSFER, d)]
    with pytest.raises(smc.ElementStatusFormatError, match="header alone is 8"):
        smc.parse_element_status(raw[:7])
    with pytest.raises(smc.ElementStatusFormatError, match="type 5 at byte 8"):
        smc.parse_element_status(raw[:8] + b"\x05" + raw[9:])


# --- sense key specific fields and names, SPC-4 4.5.2.4, Annex D ----------------------------
@given(byte=st.integers(0, 0xFFFF), bit=st.one_of(st.none(), st.integers(0, 7)),
       inner=st.booleans())
def test_sense_key_specific_pointers_round_trip(byte, bit, inner):
    assert sense.parse_field_pointer(sense.field_pointer(byte, bit, in_cdb=inner)) == (
        byte, bit, inner)
    assert sense.parse_segment_pointer(sense.segment_pointer(byte, bit, in_segment=inner)) == (
        byte, bit, inner)


@given(st.integers(0, 0xFFFF))
def test_progress_indication_round_trip(done):
    fraction = done / 0x10000
    assert sense.parse_progress_indication(sense.progress_indication(fraction)) == fraction


def test_sense_key_specific_words_and_names():
    assert sense.parse_field_pointer(b"\x40\x00\x01") is None  # SKSV clear
    words = sense.sense_key_specific_words
    assert words(SenseKey.ILLEGAL_REQUEST, sense.field_pointer(1, 7)) == "at CDB byte 1 bit 7"
    assert words(SenseKey.ILLEGAL_REQUEST, sense.field_pointer(12, in_cdb=False)) == (
        "at parameter list byte 12")
    assert words(SenseKey.COPY_ABORTED, sense.segment_pointer(30, 4)) == (
        "at segment descriptor byte 30 bit 4")
    assert words(SenseKey.NOT_READY, sense.progress_indication(0.25)) == "progress 25%"
    assert words(SenseKey.MEDIUM_ERROR, b"\x80\x00\x03") == "after 3 retries"
    assert sense.asc_name(sense.Asc.INVALID_FIELD_IN_CDB) == "INVALID FIELD IN CDB"
    assert sense.asc_name(0x2A09) == "CAPACITY DATA HAS CHANGED"
    assert sense.asc_name(0x8001) == "vendor specific"
    # the table names what no device of ours raises; none of it is shadowed by Asc
    assert not set(sense.MORE_ASC_NAMES) & set(sense.Asc)
    assert sense.asc_name(0x3002) == "CANNOT READ MEDIUM - INCOMPATIBLE FORMAT"
    assert sense.asc_name(0x0400) == "LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE"
    assert (sense.status_name(0x18), sense.status_name(0x99)) == (
        "RESERVATION CONFLICT", "status 99h")
    # one table: the words a log line uses are the initiator's
    assert "(CAPACITY DATA HAS CHANGED)" in sense.SenseData(SenseKey.UNIT_ATTENTION,
                                                             0x2A09).describe()


@given(st.text(alphabet="0123456789abcdef-", min_size=1, max_size=64))
def test_unit_serial_number_page_round_trip(serial):
    page = spc.vpd_unit_serial(spc.TYPE_TAPE, serial)
    assert page[:2] == b"\x01\x80"
    assert spc.parse_vpd_unit_serial(page) == serial.strip()
    assert spc.parse_vpd_unit_serial(page + b"\0junk") == serial.strip()  # past PAGE LENGTH
