"""The disk's SBC-4 commands beyond READ and WRITE: COMPARE AND WRITE, VERIFY, WRITE AND
VERIFY, WRITE SAME, UNMAP, GET LBA STATUS, PRE-FETCH, READ/WRITE (12), over sparse files."""

from __future__ import annotations

import errno
import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from plugins.sbc_disk import (
    BLOCKS,
    BS,
    data_in,
    fails,
    file_bytes,
    filled,
    key_asc,
    open_disk,
    pattern,
    run,
    scatter,
)

from lio_xcopy.devices import backing
from lio_xcopy.devices import disk as disk_module
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.scsi import sbc, spc
from lio_xcopy.scsi.errors import CheckCondition
from lio_xcopy.scsi.sense import SenseData, SenseKey

MISCOMPARE = (SenseKey.MISCOMPARE, 0x1D, 0x00)
INVALID_FIELD_IN_CDB = (SenseKey.ILLEGAL_REQUEST, 0x24, 0x00)
LBA_OUT_OF_RANGE = (SenseKey.ILLEGAL_REQUEST, 0x21, 0x00)
INVALID_FIELD_IN_LIST = (SenseKey.ILLEGAL_REQUEST, 0x26, 0x00)


@pytest.fixture
def disk(tmp_path):
    d = open_disk(tmp_path / "disk.img")
    yield d
    d.close()


def put(d, lba: int, data: bytes) -> None:
    os.pwrite(d.store.fd, data, lba * BS)


def block(d, lba: int, count: int = 1) -> bytes:
    return os.pread(d.store.fd, count * BS, lba * BS)


def information(sense: bytes) -> int | None:
    return SenseData.parse(sense).information


def holes(d) -> list[tuple[int, int]]:
    """The store's holes as (first byte, end) pairs, from SEEK_HOLE/SEEK_DATA."""
    out, pos, size = [], 0, d.store.size
    while pos < size:
        hole = os.lseek(d.store.fd, pos, os.SEEK_HOLE)
        if hole >= size:
            break
        try:
            data = os.lseek(d.store.fd, hole, os.SEEK_DATA)
        except OSError as e:
            assert e.errno == errno.ENXIO
            data = size
        out.append((hole, data))
        pos = data
    return out


def assert_sense(sense: bytes, expect: tuple[int, int, int], sks: str | None) -> None:
    """Sense key, ASC/ASCQ and, when given, the sense-key specific field pointer."""
    assert key_asc(sense) == expect
    if sks:
        assert sense[15:18] == bytes.fromhex(sks)


def fill(d) -> None:
    """Every block written (no holes left)."""
    put(d, 0, b"".join(pattern(BS, i) for i in range(BLOCKS)))
    os.fsync(d.store.fd)


# --- READ (12) and WRITE (12) ---------------------------------------------------------------
def test_read_write_12(disk):
    assert run(disk, sbc.Write12(lba=7, transfer_length=2), filled(pattern(2 * BS))) == 0
    assert block(disk, 7, 2) == pattern(2 * BS)
    out = scatter(2 * BS)
    assert run(disk, sbc.Read12(lba=7, transfer_length=2), out) == 2 * BS
    assert out.tobytes() == pattern(2 * BS)


@pytest.mark.parametrize(("cdb", "expect", "sks"), [
    (sbc.Read12(lba=BLOCKS - 1, transfer_length=2), LBA_OUT_OF_RANGE, None),
    (sbc.Write12(lba=BLOCKS, transfer_length=1), LBA_OUT_OF_RANGE, None),
    (sbc.Read12(rdprotect=1, transfer_length=1), INVALID_FIELD_IN_CDB, "cf0001"),
    (sbc.Write12(wrprotect=3, transfer_length=1), INVALID_FIELD_IN_CDB, "cf0001"),
    (sbc.Write12(transfer_length=2), (5, 0x0E, 0x03), None),  # 1 block of data
])
def test_read_write_12_checks(disk, cdb, expect, sks):
    sense = fails(disk, cdb, filled(pattern(BS)))
    assert_sense(sense, expect, sks)
    assert file_bytes(disk) == bytes(BLOCKS * BS)


# --- COMPARE AND WRITE ----------------------------------------------------------------------
def caw(lba: int = 5, n: int = 1, **kw):
    return sbc.CompareAndWrite(lba=lba, number_of_blocks=n, **kw)


def test_compare_and_write_writes_when_equal(disk):
    put(disk, 5, pattern(BS, 1))
    assert run(disk, caw(), filled(pattern(BS, 1) + pattern(BS, 2))) == 0
    assert block(disk, 5) == pattern(BS, 2)
    assert block(disk, 4) == block(disk, 6) == bytes(BS)


def test_compare_and_write_miscompare_reports_the_offset(disk):
    old = bytearray(pattern(BS, 1))
    put(disk, 5, bytes(old))
    verify = bytearray(old)
    verify[300] ^= 0x40
    verify[400] ^= 0x01
    sense = fails(disk, caw(), filled(bytes(verify) + pattern(BS, 2)))
    assert key_asc(sense) == MISCOMPARE
    assert sense[0] & 0x80 and information(sense) == 300  # VALID, first differing byte
    assert block(disk, 5) == bytes(old)  # nothing written


@pytest.mark.parametrize(("cdb", "expect", "sks"), [
    (caw(n=2), INVALID_FIELD_IN_CDB, "c0000d"),  # MAXIMUM COMPARE AND WRITE LENGTH is 1
    (caw(wrprotect=1), INVALID_FIELD_IN_CDB, "cf0001"),
    (caw(lba=BLOCKS), LBA_OUT_OF_RANGE, None),
])
def test_compare_and_write_checks(disk, cdb, expect, sks):
    sense = fails(disk, cdb, filled(bytes(4 * BS)))
    assert_sense(sense, expect, sks)


def test_compare_and_write_zero_blocks_and_short_buffer(disk):
    assert run(disk, caw(n=0)) == 0
    sense = fails(disk, caw(), filled(bytes(BS)))  # verify data without write data
    assert key_asc(sense) == (5, 0x0E, 0x03)  # INVALID FIELD IN COMMAND INFORMATION UNIT
    sense = fails(disk, caw(), filled(bytes(3 * BS)))  # a block more than 2 x NUMBER
    assert key_asc(sense) == (5, 0x0E, 0x03)
    assert file_bytes(disk) == bytes(BLOCKS * BS)


def test_compare_and_write_on_read_only_disk(tmp_path):
    d = open_disk(tmp_path / "d.img", read_only=True)
    assert key_asc(fails(d, caw(), filled(bytes(2 * BS))))[:2] == (SenseKey.DATA_PROTECT, 0x27)
    d.close()


def test_compare_and_write_holds_out_other_writers(disk):
    """The compare and the write happen holding alone the lock every write shares."""
    put(disk, 5, pattern(BS, 1))
    seen = []
    real = disk._miscompare

    def spy(*a, **kw):
        seen.append(disk._atomic.held_alone)
        return real(*a, **kw)

    disk._miscompare = spy
    run(disk, caw(), filled(pattern(BS, 1) + pattern(BS, 2)))
    assert seen == [True]
    assert not disk._atomic.holders


# --- VERIFY ---------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", sbc.VERIFIES)
def test_verify_bytchk_compare(disk, layout):
    fill(disk)
    want = block(disk, 3, 4)
    assert run(disk, layout(lba=3, verification_length=4, bytchk=1), filled(want)) == 0
    bad = bytearray(want)
    bad[2 * BS + 17] ^= 0xFF
    sense = fails(disk, layout(lba=3, verification_length=4, bytchk=1), filled(bytes(bad)))
    assert key_asc(sense) == MISCOMPARE and information(sense) == 2 * BS + 17


@pytest.mark.parametrize("layout", sbc.VERIFIES)
def test_verify_bytchk_one_block(disk, layout):
    for lba in range(10, 14):
        put(disk, lba, pattern(BS, 9))
    assert run(disk, layout(lba=10, verification_length=4, bytchk=3), filled(pattern(BS, 9))) == 0
    put(disk, 12, pattern(BS, 8))
    sense = fails(disk, layout(lba=10, verification_length=4, bytchk=3), filled(pattern(BS, 9)))
    old, new = pattern(BS, 8), pattern(BS, 9)
    first = next(i for i in range(BS) if old[i] != new[i])
    assert key_asc(sense) == MISCOMPARE and information(sense) == 2 * BS + first


def test_verify_medium_only_reads(disk, monkeypatch):
    reads = []
    real = os.preadv
    monkeypatch.setattr(os, "preadv", lambda fd, v, o: reads.append(o) or real(fd, v, o))
    assert run(disk, sbc.Verify16(lba=0, verification_length=BLOCKS)) == 0
    assert reads == [0]


def test_verify_medium_error_is_reported_at_its_lba(disk, monkeypatch):
    monkeypatch.setattr(disk_module, "_CHUNK", 4 * BS)

    def eio_from_lba_8(fd, views, offset):
        if offset >= 8 * BS:
            raise OSError(errno.EIO, "Input/output error")
        return sum(len(v) for v in views)

    monkeypatch.setattr(os, "preadv", eio_from_lba_8)
    sense = fails(disk, sbc.Verify10(lba=2, verification_length=10))
    assert key_asc(sense) == (SenseKey.MEDIUM_ERROR, 0x11, 0x00) and information(sense) == 10


def test_verify_compares_in_chunks(disk, monkeypatch):
    monkeypatch.setattr(disk_module, "_CHUNK", 3 * BS)
    fill(disk)
    want = bytearray(block(disk, 0, 10))
    assert run(disk, sbc.Verify10(verification_length=10, bytchk=1), filled(bytes(want))) == 0
    want[7 * BS + 5] ^= 1
    sense = fails(disk, sbc.Verify10(verification_length=10, bytchk=1), filled(bytes(want)))
    assert information(sense) == 7 * BS + 5


@pytest.mark.parametrize(("cdb", "expect", "sks"), [
    (sbc.Verify10(verification_length=1, bytchk=2), INVALID_FIELD_IN_CDB, "ca0001"),
    (sbc.Verify12(verification_length=1, vrprotect=1), INVALID_FIELD_IN_CDB, "cf0001"),
    (sbc.Verify16(lba=BLOCKS - 1, verification_length=2), LBA_OUT_OF_RANGE, None),
    (sbc.Verify10(verification_length=2, bytchk=1), INVALID_FIELD_IN_CDB, "c00007"),
])
def test_verify_checks(disk, cdb, expect, sks):
    sense = fails(disk, cdb, filled(bytes(BS)))
    assert_sense(sense, expect, sks)


def test_verify_zero_blocks(disk):
    assert run(disk, sbc.Verify10(lba=BLOCKS, verification_length=0, bytchk=1)) == 0


# --- WRITE AND VERIFY -----------------------------------------------------------------------
@pytest.mark.parametrize("layout", sbc.WRITE_AND_VERIFIES)
@pytest.mark.parametrize("bytchk", [0, 1])
def test_write_and_verify(disk, layout, bytchk):
    assert run(disk, layout(lba=20, transfer_length=3, bytchk=bytchk),
               filled(pattern(3 * BS, 4))) == 0
    assert block(disk, 20, 3) == pattern(3 * BS, 4)


def test_write_and_verify_miscompare(disk, monkeypatch):
    """A block that does not read back as written is MISCOMPARE at its offset."""
    real = os.preadv

    def flip(fd, views, offset):
        n = real(fd, views, offset)
        views[0][BS + 3] ^= 0x80
        return n

    monkeypatch.setattr(os, "preadv", flip)
    sense = fails(disk, sbc.WriteAndVerify10(lba=1, transfer_length=2, bytchk=1),
                  filled(pattern(2 * BS)))
    assert key_asc(sense) == MISCOMPARE and information(sense) == BS + 3


@pytest.mark.parametrize(("cdb", "expect", "sks"), [
    (sbc.WriteAndVerify10(transfer_length=1, bytchk=3), INVALID_FIELD_IN_CDB, "ca0001"),
    (sbc.WriteAndVerify16(transfer_length=1, bytchk=2), INVALID_FIELD_IN_CDB, "ca0001"),
    (sbc.WriteAndVerify12(transfer_length=1, wrprotect=2), INVALID_FIELD_IN_CDB, "cf0001"),
    (sbc.WriteAndVerify16(lba=BLOCKS, transfer_length=1), LBA_OUT_OF_RANGE, None),
])
def test_write_and_verify_checks(disk, cdb, expect, sks):
    sense = fails(disk, cdb, filled(pattern(BS)))
    assert_sense(sense, expect, sks)
    assert file_bytes(disk) == bytes(BLOCKS * BS)


# --- WRITE SAME -----------------------------------------------------------------------------
@pytest.mark.parametrize("layout", sbc.WRITE_SAMES)
def test_write_same_repeats_the_block(disk, layout):
    assert run(disk, layout(lba=3, number_of_blocks=9), filled(pattern(BS, 5))) == 0
    assert block(disk, 3, 9) == pattern(BS, 5) * 9
    assert block(disk, 2) == block(disk, 12) == bytes(BS)


def test_write_same_batches_writes(disk, monkeypatch):
    """Many blocks per pwritev: a pattern of _CHUNK bytes, _SAME_IOV views a call."""
    monkeypatch.setattr(disk_module, "_CHUNK", 4 * BS)
    monkeypatch.setattr(disk_module, "_SAME_IOV", 3)
    calls = []
    real = os.pwritev

    def spy(fd, views, offset, *flags):
        calls.append((offset // BS, [len(v) // BS for v in views]))
        return real(fd, views, offset, *flags)

    monkeypatch.setattr(os, "pwritev", spy)
    run(disk, sbc.WriteSame16(lba=1, number_of_blocks=27), filled(pattern(BS, 6)))
    assert calls == [(1, [4, 4, 4]), (13, [4, 4, 4]), (25, [3])]
    assert block(disk, 1, 27) == pattern(BS, 6) * 27


def test_write_same_zero_blocks_means_to_the_end(disk):
    run(disk, sbc.WriteSame10(lba=BLOCKS - 5, number_of_blocks=0), filled(pattern(BS, 7)))
    assert block(disk, BLOCKS - 5, 5) == pattern(BS, 7) * 5
    assert block(disk, BLOCKS - 6) == bytes(BS)


def test_write_same_unmap_punches_holes(disk):
    fill(disk)
    assert holes(disk) == []
    run(disk, sbc.WriteSame16(lba=8, number_of_blocks=24, unmap=1), filled(bytes(BS)))
    assert block(disk, 8, 24) == bytes(24 * BS)
    assert block(disk, 7) == pattern(BS, 7) and block(disk, 32) == pattern(BS, 32)
    (hole,) = holes(disk)
    assert hole[0] >= 8 * BS and hole[0] < hole[1] <= 32 * BS


def test_write_same_ndob_unmaps_without_a_buffer(disk):
    fill(disk)
    run(disk, sbc.WriteSame16(lba=0, number_of_blocks=16, unmap=1, ndob=1))
    assert block(disk, 0, 16) == bytes(16 * BS) and holes(disk)
    run(disk, sbc.WriteSame16(lba=40, number_of_blocks=2, ndob=1))  # zeros, written
    assert block(disk, 40, 2) == bytes(2 * BS)


def test_write_same_zeros_without_unmap_are_written(disk):
    run(disk, sbc.WriteSame10(lba=0, number_of_blocks=BLOCKS), filled(bytes(BS)))
    assert holes(disk) == []


def test_write_same_unmap_with_data_writes_it(disk):
    run(disk, sbc.WriteSame10(lba=0, number_of_blocks=4, unmap=1), filled(pattern(BS)))
    assert block(disk, 0, 4) == pattern(BS) * 4


def test_write_same_without_holes_writes_zeros(disk, monkeypatch):
    fill(disk)

    def no_holes(fd, mode, offset, length):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(backing, "_fallocate", no_holes)
    run(disk, sbc.WriteSame16(lba=4, number_of_blocks=4, unmap=1), filled(bytes(BS)))
    assert block(disk, 4, 4) == bytes(4 * BS)


@pytest.mark.parametrize(("cdb", "expect", "sks"), [
    (sbc.WriteSame10(number_of_blocks=1, anchor=1), INVALID_FIELD_IN_CDB, "cc0001"),
    (sbc.WriteSame16(number_of_blocks=1, unmap=1, anchor=1), INVALID_FIELD_IN_CDB, "cc0001"),
    (sbc.WriteSame10(number_of_blocks=1, wrprotect=1), INVALID_FIELD_IN_CDB, "cf0001"),
    (sbc.WriteSame10(number_of_blocks=1, lbdata=1), INVALID_FIELD_IN_CDB, "c90001"),
    (sbc.WriteSame16(number_of_blocks=1, pbdata=1), INVALID_FIELD_IN_CDB, "ca0001"),
    (sbc.WriteSame16(lba=BLOCKS - 1, number_of_blocks=2), LBA_OUT_OF_RANGE, None),
    (sbc.WriteSame16(lba=BLOCKS, number_of_blocks=0), LBA_OUT_OF_RANGE, None),
    (sbc.WriteSame16(number_of_blocks=disk_module.MAX_WRITE_SAME_LENGTH + 1),
     INVALID_FIELD_IN_CDB, "c0000a"),
])
def test_write_same_checks(disk, cdb, expect, sks):
    sense = fails(disk, cdb, filled(pattern(BS)))
    assert_sense(sense, expect, sks)
    assert file_bytes(disk) == bytes(BLOCKS * BS)


def test_write_same_limit_applies_to_zero_blocks(disk, monkeypatch):
    monkeypatch.setattr(disk_module, "MAX_WRITE_SAME_LENGTH", BLOCKS - 1)
    sense = fails(disk, sbc.WriteSame10(number_of_blocks=0), filled(pattern(BS)))
    assert key_asc(sense) == INVALID_FIELD_IN_CDB
    run(disk, sbc.WriteSame10(lba=1, number_of_blocks=0), filled(pattern(BS)))


# --- UNMAP ----------------------------------------------------------------------------------
def unmap(d, extents, length: int | None = None, **kw) -> int:
    data = sbc.unmap_parameter_list(extents)
    cdb = sbc.Unmap(parameter_list_length=len(data) if length is None else length, **kw)
    return run(d, cdb, filled(data, cuts=(5, 11)))


def test_unmap_punches_each_extent(disk):
    fill(disk)
    assert unmap(disk, [(8, 8), (40, 16), (60, 0)]) == 0
    assert block(disk, 8, 8) == bytes(8 * BS) and block(disk, 40, 16) == bytes(16 * BS)
    assert block(disk, 16) == pattern(BS, 16) and block(disk, 56) == pattern(BS, 56)
    assert len(holes(disk)) == 2


def test_unmap_nothing(disk):
    assert run(disk, sbc.Unmap(parameter_list_length=0)) == 0


@pytest.mark.parametrize(("extents", "expect", "sks"), [
    ([(0, 1)] * (disk_module.MAX_UNMAP_BLOCK_DESCRIPTOR_COUNT + 1), INVALID_FIELD_IN_LIST,
     "800002"),
    ([(0, 1), (1, disk_module.MAX_UNMAP_LBA_COUNT)], INVALID_FIELD_IN_LIST, "800020"),
    ([(0, 1), (BLOCKS - 1, 2)], LBA_OUT_OF_RANGE, None),
])
def test_unmap_checks_the_list_first(disk, extents, expect, sks):
    fill(disk)
    with pytest.raises(CheckCondition) as exc:
        unmap(disk, extents)
    sense = exc.value.sense.fixed()
    assert_sense(sense, expect, sks)
    assert holes(disk) == []  # nothing deallocated


def test_unmap_cdb_and_length_checks(disk):
    sense = fails(disk, sbc.Unmap(anchor=1, parameter_list_length=24),
                  filled(sbc.unmap_parameter_list([(0, 1)])))
    assert key_asc(sense) == INVALID_FIELD_IN_CDB and sense[15:18] == bytes.fromhex("c80001")
    sense = fails(disk, sbc.Unmap(parameter_list_length=6), filled(bytes(6)))
    assert key_asc(sense) == (SenseKey.ILLEGAL_REQUEST, 0x1A, 0x00)
    sense = fails(disk, sbc.Unmap(parameter_list_length=24), filled(bytes(8)))
    assert key_asc(sense) == (SenseKey.ILLEGAL_REQUEST, 0x1A, 0x00)


def test_unmap_on_read_only_disk(tmp_path):
    d = open_disk(tmp_path / "d.img", read_only=True)
    with pytest.raises(CheckCondition) as exc:
        unmap(d, [(0, 1)])
    assert exc.value.sense.key == SenseKey.DATA_PROTECT
    d.close()


# --- GET LBA STATUS -------------------------------------------------------------------------
def lba_status(d, lba: int = 0, allocation_length: int = 4096) -> list[tuple[int, int, int]]:
    raw = data_in(d, sbc.GetLbaStatus(lba=lba, allocation_length=allocation_length),
                  allocation_length)
    return sbc.parse_lba_status_data(raw)


def test_get_lba_status_of_a_new_sparse_disk(disk):
    assert lba_status(disk) == [(0, BLOCKS, sbc.DEALLOCATED)]


def test_get_lba_status_after_writes_and_unmaps(disk):
    fill(disk)
    assert lba_status(disk) == [(0, BLOCKS, sbc.MAPPED)]
    unmap(disk, [(16, 16)])
    assert lba_status(disk) == [(0, 16, sbc.MAPPED), (16, 16, sbc.DEALLOCATED),
                                (32, BLOCKS - 32, sbc.MAPPED)]
    assert lba_status(disk, lba=20) == [(20, 12, sbc.DEALLOCATED), (32, BLOCKS - 32, sbc.MAPPED)]
    # as many descriptors as the allocation length holds
    assert lba_status(disk, allocation_length=8 + 16 * 2) == [
        (0, 16, sbc.MAPPED), (16, 16, sbc.DEALLOCATED)]


def test_get_lba_status_block_partly_written(disk):
    put(disk, 20, b"x")  # one byte makes its block (and its filesystem block) mapped
    status = lba_status(disk)
    assert (20 in range(status[1][0], status[1][0] + status[1][1])
            and status[1][2] == sbc.MAPPED)
    assert status[0] == (0, status[1][0], sbc.DEALLOCATED) and status[-1][2] == sbc.DEALLOCATED
    assert sum(n for _, n, _ in status) == BLOCKS


def test_get_lba_status_checks(disk):
    sense = fails(disk, sbc.GetLbaStatus(lba=BLOCKS, allocation_length=64), scatter(64))
    assert key_asc(sense) == LBA_OUT_OF_RANGE
    raw = data_in(disk, sbc.GetLbaStatus(lba=0, allocation_length=8), 64)
    assert raw == bytes.fromhex("00000014 00000000")  # header only, full length


# --- PRE-FETCH ------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", sbc.PRE_FETCHES)
def test_pre_fetch_advises_the_kernel(disk, monkeypatch, layout):
    advice = []
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, off, n, how: advice.append((off, n, how)))
    assert run(disk, layout(lba=4, prefetch_length=8, immed=1)) == 0
    assert run(disk, layout(lba=60, prefetch_length=0)) == 0  # to the last LBA
    assert advice == [(4 * BS, 8 * BS, os.POSIX_FADV_WILLNEED),
                      (60 * BS, 4 * BS, os.POSIX_FADV_WILLNEED)]
    assert key_asc(fails(disk, layout(lba=60, prefetch_length=5))) == LBA_OUT_OF_RANGE
    assert key_asc(fails(disk, layout(lba=BLOCKS, prefetch_length=0))) == LBA_OUT_OF_RANGE


def test_pre_fetch_failed_advice_is_still_good(disk, monkeypatch):
    def einval(*a):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "posix_fadvise", einval)
    assert run(disk, sbc.PreFetch10(lba=0, prefetch_length=1)) == 0


# --- what the LUN reports -------------------------------------------------------------------
def test_block_limits_report_the_new_limits(disk):
    data = data_in(disk, spc.Inquiry(evpd=1, page_code=0xB0, allocation_length=255))
    assert data[5] == 1  # MAXIMUM COMPARE AND WRITE LENGTH
    assert data[4] & 1 == 0  # WSNZ: 0 blocks means to the end
    max_unmap, max_desc, granularity, uga = struct.unpack_from(">IIII", data, 20)
    assert (max_unmap, max_desc) == (disk_module.MAX_UNMAP_LBA_COUNT,
                                     disk_module.MAX_UNMAP_BLOCK_DESCRIPTOR_COUNT)
    assert granularity == max(1, os.fstat(disk.store.fd).st_blksize // BS)
    assert uga == 0x80000000  # UGAVALID, alignment 0
    assert struct.unpack_from(">Q", data, 36)[0] == disk_module.MAX_WRITE_SAME_LENGTH


def test_logical_block_provisioning_page(disk):
    data = data_in(disk, spc.Inquiry(evpd=1, page_code=0xB2, allocation_length=255))
    page = sbc.LogicalBlockProvisioning.decode(data)
    assert (page.lbpu, page.lbpws, page.lbpws10, page.lbprz, page.anc_sup) == (
        True, True, True, sbc.LBPRZ_ZEROS, False)
    assert page.provisioning_type == sbc.PROVISIONING_THIN


def test_read_capacity_16_reports_lbpme_and_lbprz(disk):
    data = data_in(disk, sbc.ReadCapacity16(allocation_length=32))
    assert data[14] & 0xC0 == 0xC0


def test_mode_sense_reports_dpofua(disk):
    header = data_in(disk, spc.ModeSense10(page_code=0x08, allocation_length=255))
    assert header[3] & 0x10  # DPOFUA, SBC-4 6.5.1: sd then sends FUA


NEW_COMMANDS = [sbc.Read12, sbc.Write12, sbc.CompareAndWrite, *sbc.VERIFIES,
                *sbc.WRITE_AND_VERIFIES, *sbc.WRITE_SAMES, sbc.Unmap, sbc.GetLbaStatus,
                *sbc.PRE_FETCHES]


def test_report_supported_operation_codes_lists_them(disk):
    data = data_in(disk, spc.ReportSupportedOperationCodes(allocation_length=4096), 4096)
    listed = set()
    for pos in range(4, 4 + struct.unpack_from(">I", data)[0], 8):
        op, sa, flags, _ = struct.unpack_from(">BxHxBH", data, pos)
        listed.add((op, sa if flags & 1 else None))
    assert {(c.OPCODE, c.SERVICE_ACTION) for c in NEW_COMMANDS} <= listed


@pytest.mark.parametrize("layout", NEW_COMMANDS, ids=lambda c: c.NAME)
def test_report_one_command(disk, layout):
    sa = layout.SERVICE_ACTION
    cdb = spc.ReportSupportedOperationCodes(
        reporting_options=1 if sa is None else 2, requested_operation_code=layout.OPCODE,
        requested_service_action=sa or 0, allocation_length=64)
    data = data_in(disk, cdb, 64)
    assert data[1] & 7 == spc.SUPPORT_STANDARD
    assert data[4 : 4 + layout.LENGTH] == layout.usage_data()


def test_long_opcodes(disk):
    for layout in (sbc.CompareAndWrite, sbc.Unmap, *sbc.WRITE_SAMES, *sbc.VERIFIES,
                   *sbc.PRE_FETCHES):
        assert layout.OPCODE in disk.LONG_OPCODES


def test_data_out_commands(disk):
    data_in_only = (sbc.Read12, sbc.GetLbaStatus, *sbc.PRE_FETCHES)
    for layout in NEW_COMMANDS:
        assert layout.DATA_OUT is (layout not in data_in_only)


def test_block_device_store_reports_no_provisioning(disk, monkeypatch):
    disk.thin = False
    assert 0xB2 not in disk.vpd_pages()
    assert data_in(disk, sbc.ReadCapacity16(allocation_length=32))[14] & 0xC0 == 0
    assert lba_status(disk) == [(0, BLOCKS, sbc.MAPPED)]


def test_copy_buffer_is_not_reused(disk):
    """The WRITE SAME pattern is built from the first block only."""
    buf = DataBuffer([memoryview(bytearray(pattern(BS, 3))), memoryview(bytearray(BS))])
    run(disk, sbc.WriteSame10(lba=0, number_of_blocks=2), buf)
    assert block(disk, 0, 2) == pattern(BS, 3) * 2


@given(st.binary(min_size=1, max_size=3000), st.data())
def test_first_difference(data, draw):
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=4)))
    pieces = [memoryview(data)[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)],
                                                      strict=True)]
    medium = bytearray(data)
    assert disk_module._first_difference(memoryview(medium), pieces) is None
    at = draw.draw(st.integers(0, len(data) - 1))
    medium[at] ^= draw.draw(st.integers(1, 255))
    if at + 1 < len(data):  # a later difference changes nothing
        medium[draw.draw(st.integers(at + 1, len(data) - 1))] ^= 0x5A
    assert disk_module._first_difference(memoryview(medium), pieces) == at


def test_only_reads_and_writes_run_unordered(disk):
    """The transport runs a disk's READs and WRITEs on several workers at once; every
    other command (COMPARE AND WRITE, SYNCHRONIZE CACHE, the copy commands) in order."""
    for layout in (*sbc.READS, *sbc.WRITES):
        assert disk.unordered(bytes([layout.OPCODE]) + bytes(15)), layout.NAME
    for layout in (sbc.CompareAndWrite, sbc.SynchronizeCache10, *sbc.WRITE_SAMES,
                   *sbc.VERIFIES, sbc.Unmap):
        assert not disk.unordered(bytes([layout.OPCODE]) + bytes(15)), layout.NAME
    assert not disk.unordered(b"")
    assert disk.IO_WORKERS > 1
