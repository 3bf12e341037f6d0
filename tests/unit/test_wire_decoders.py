"""Each data format the initiator reads is decoded in scsi/, beside its encoder: what our
LUNs build, the initiator reads back field for field (round trips, plus golden bytes)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lio_xcopy.scsi import sbc, spc, ssc

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
