"""Field pointers into parameter lists (SPC-4 4.5.2.4.2) that come from the field
tables: MODE SELECT (6) and (10) on a disk and a tape (SPC-4 7.5, SBC-4 6.5, SSC-4
8.3), POPULATE TOKEN and WRITE USING TOKEN (SBC-4 5.9.2, 5.46.2). Each pointer is the
byte (and bit) the standard's table gives the field."""

from __future__ import annotations

import hashlib

import pytest

from lio_xcopy.copy.manager import CopyManager
from lio_xcopy.devices.backing import BackingStore
from lio_xcopy.devices.base import Command, LunIdentity
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.disk import Disk
from lio_xcopy.devices.tape import Tape
from lio_xcopy.scsi import rod, sbc, spc, ssc
from lio_xcopy.scsi.errors import CheckCondition
from lio_xcopy.scsi.sense import Asc, field_pointer

ID = LunIdentity("p0", "4a6f2d3c-1b2a-4c5d-8e9f-0123456789ab")


def refused(dev: Disk | Tape, cdb: bytes, data: bytes) -> CheckCondition:
    with pytest.raises(CheckCondition) as e:
        dev.handle(Command(cdb, DataBuffer.of(bytearray(data))))
    return e.value


def pointer(e: CheckCondition, asc: Asc = Asc.INVALID_FIELD_IN_PARAMETER_LIST) -> bytes | None:
    assert e.sense.asc == asc
    return e.sense.sense_key_specific


def select(ten: bool, data: bytes) -> bytes:
    cdb = spc.ModeSelect10 if ten else spc.ModeSelect6
    return cdb(pf=1, parameter_list_length=len(data)).encode()


def header(ten: bool, *, medium_type: int = 0, dsp: int = 0, bdl: int = 0) -> bytes:
    return bytes(spc.mode_header(ten=ten).encode({
        "medium_type": medium_type, "device_specific_parameter": dsp,
        "block_descriptor_length": bdl}))


def test_the_tables_place_the_fields_the_standards_name():
    # SPC-4 7.5.5 tables 451/452, 7.5.7 tables 454/455; SBC-4 6.5.2; SSC-4 8.3
    assert [spc.mode_header(ten=t).offset("medium_type") for t in (False, True)] == [1, 2]
    assert [spc.mode_header(ten=t).offset("block_descriptor_length")
            for t in (False, True)] == [3, 6]
    assert spc.MODE_PAGE_0_HEADER.pointer("spf") == (0, 6)
    assert spc.MODE_PAGE_0_HEADER.pointer("page_code") == (0, 5)
    assert spc.MODE_SUBPAGE_HEADER.offset("page_length") == 2
    assert ssc.DEVICE_SPECIFIC_PARAMETER_LAYOUT.pointer("buffered_mode") == (0, 6)
    assert sbc.SHORT_BLOCK_DESCRIPTOR_LAYOUT.offset("logical_block_length") == 5
    assert ssc.BLOCK_DESCRIPTOR_LAYOUT.offset("block_length") == 5
    # SBC-4 5.9.2, 5.46.2, 5.9.3; SPC-4 5.17.6.1
    assert [rod.POPULATE_TOKEN_LAYOUT.offset(n) for n in (
        "inactivity_timeout", "rod_type", "block_device_range_descriptor_length")] == [4, 8, 14]
    assert [rod.WRITE_USING_TOKEN_LAYOUT.offset(n) for n in (
        "offset_into_rod", "rod_token", "block_device_range_descriptor_length")] == [8, 16, 534]
    assert rod.ROD_TOKEN_LAYOUT.offset("number_of_bytes_represented") == 48


def test_layout_bits_is_the_mask_of_the_named_fields():
    assert ssc.MEDIUM_PARTITION_LAYOUT.bits("fdp", "sdp", "idp", "partition_size") == {
        4: ssc.PARTITION_NOW, 8: 0xFF, 9: 0xFF}
    assert spc.MODE_PAGE_0_HEADER.bits("ps") == {0: 0x80}


def test_block_descriptors_round_trip_through_their_tables():
    assert sbc.parse_short_block_descriptor(sbc.short_block_descriptor(2**33, 4096)) == (
        0xFFFFFFFF, 0, 4096)
    assert ssc.parse_block_descriptor(ssc.block_descriptor(0x42, 65536, 9)) == (0x42, 9, 65536)
    assert ssc.device_specific_parameter(write_protected=True, buffered_mode=1, speed=3) == 0x93


@pytest.fixture
def disk(tmp_path):
    d = Disk(ID, BackingStore(tmp_path / "d.img", create=True, size=1 << 20), 512)
    yield d
    d.close()


@pytest.mark.parametrize("ten", [False, True])
def test_disk_mode_select_points_into_both_headers(disk, ten):
    hl = spc.mode_header(ten=ten).length
    e = refused(disk, select(ten, header(ten, medium_type=1)), header(ten, medium_type=1))
    assert pointer(e) == field_pointer(2 if ten else 1, in_cdb=False)
    bd = bytearray(sbc.short_block_descriptor(2048, 512))
    bd[4] = 1  # reserved
    data = header(ten, bdl=8) + bytes(bd)
    assert pointer(refused(disk, select(ten, data), data)) == field_pointer(hl + 4, in_cdb=False)
    data = header(ten, bdl=8) + sbc.short_block_descriptor(2048, 4096)
    assert pointer(refused(disk, select(ten, data), data)) == field_pointer(hl + 5, in_cdb=False)
    caching = bytearray(sbc.caching_mode_page())
    data = header(ten) + bytes(caching[:1]) + bytes([caching[1] - 1]) + bytes(caching[2:-1])
    assert pointer(refused(disk, select(ten, data), data)) == field_pointer(hl + 1, in_cdb=False)
    data = header(ten) + bytes([0x40 | sbc.CACHING_PAGE, 0, 0, 2, 0, 0])  # a subpage
    assert pointer(refused(disk, select(ten, data), data)) == field_pointer(hl, 6, in_cdb=False)
    data = header(ten) + bytes([0x07, 2, 0, 0])  # a page this disk does not have
    assert pointer(refused(disk, select(ten, data), data)) == field_pointer(hl, 5, in_cdb=False)


@pytest.mark.parametrize("ten", [False, True])
def test_tape_mode_select_points_into_both_headers(tmp_path, ten):
    t = Tape(ID, tmp_path / "t.aws", 1 << 20, max_block_length=65536)
    hl = spc.mode_header(ten=ten).length
    data = header(ten, dsp=0x20)  # BUFFERED MODE 2
    assert pointer(refused(t, select(ten, data), data)) == field_pointer(
        3 if ten else 2, 6, in_cdb=False)
    data = header(ten, dsp=0x10, bdl=16) + ssc.block_descriptor(0, 512) * 2
    assert pointer(refused(t, select(ten, data), data)) == field_pointer(
        6 if ten else 3, in_cdb=False)
    data = header(ten, dsp=0x10, bdl=8) + ssc.block_descriptor(0x42, 512)
    assert pointer(refused(t, select(ten, data), data)) == field_pointer(hl, in_cdb=False)
    data = header(ten, dsp=0x10, bdl=8) + ssc.block_descriptor(0, 65537)
    assert pointer(refused(t, select(ten, data), data)) == field_pointer(hl + 5, in_cdb=False)
    page = bytearray(ssc.medium_partition_page(1))
    page[8:10] = b"\x00\x07"  # partition 0 of 7 MB: neither its size nor FFFFh
    data = header(ten, dsp=0x10) + bytes(page)
    assert pointer(refused(t, select(ten, data), data)) == field_pointer(hl + 8, in_cdb=False)
    t.close()


@pytest.fixture
def big(tmp_path):
    """A disk of 2^24 + 16 blocks (sparse) under a copy manager, for ROD tokens."""
    manager = CopyManager(policy=lambda _a, _b: False)
    path = tmp_path / "big.img"
    with open(path, "wb") as f:
        f.truncate(((1 << 24) + 16) * 512)
    d = Disk(LunIdentity("big", hashlib.sha256(b"big").hexdigest()[:32]), BackingStore(path),
             512)
    manager.register(d)
    yield d
    d.close()


def populate(dev: Disk, plist: bytes) -> CheckCondition:
    cdb = rod.PopulateToken(list_identifier=1, parameter_list_length=len(plist)).encode()
    return refused(dev, cdb, plist)


def test_populate_token_points_at_rod_type_and_the_ranges(big):
    ranges = (rod.BlockRange(0, 8),)
    e = populate(big, rod.PopulateTokenList(ranges, rod_type=rod.ROD_TYPE_PIT_PERSISTENT)
                 .encode())
    assert pointer(e) == field_pointer(8, in_cdb=False)
    e = populate(big, rod.PopulateTokenList((rod.BlockRange(0, 1),) * 65).encode())
    assert pointer(e) == field_pointer(14, in_cdb=False)
    # the second range takes the total past MAXIMUM TOKEN TRANSFER SIZE: its NUMBER OF
    # LOGICAL BLOCKS, at 16 + 16 + 8
    e = populate(big, rod.PopulateTokenList((rod.BlockRange(0, 1 << 24), rod.BlockRange(0, 1)))
                 .encode())
    assert pointer(e) == field_pointer(40, in_cdb=False)


def test_write_using_token_points_at_offset_into_rod_and_the_ranges(big):
    plist = rod.PopulateTokenList((rod.BlockRange(0, 8),)).encode()
    big.handle(Command(rod.PopulateToken(list_identifier=1, parameter_list_length=len(plist))
                       .encode(), DataBuffer.of(bytearray(plist))))
    buf = DataBuffer.allocate(1024)
    n = big.handle(Command(rod.ReceiveRodTokenInformation(
        list_identifier=1, allocation_length=1024).encode(), buf))
    token = rod.RodTokenInformation.parse(buf.tobytes(n)).token

    def write_using(plist: bytes) -> CheckCondition:
        cdb = rod.WriteUsingToken(list_identifier=2, parameter_list_length=len(plist)).encode()
        return refused(big, cdb, plist)

    e = write_using(rod.WriteUsingTokenList(token, (rod.BlockRange(100, 8),),
                                            offset_into_rod=8).encode())
    assert pointer(e) == field_pointer(8, in_cdb=False)
    e = write_using(rod.WriteUsingTokenList(token, (rod.BlockRange(100, 1),) * 65).encode())
    assert pointer(e) == field_pointer(534, in_cdb=False)
    bad = bytearray(rod.WriteUsingTokenList(token, (rod.BlockRange(100, 8),)).encode())
    bad[535] = 8  # BLOCK DEVICE RANGE DESCRIPTOR LENGTH no multiple of 16
    assert pointer(write_using(bytes(bad))) == field_pointer(534, in_cdb=False)
