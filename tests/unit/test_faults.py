"""A failing backing store (EIO, ENOSPC, short writes, fsync) as a disk's and a tape's
sense: the key, ASC/ASCQ and INFORMATION, and what reached the file."""

from __future__ import annotations

import errno
import os

import pytest

from lio_xcopy.devices.awstape import footprint
from lio_xcopy.devices.backing import BackingStore
from lio_xcopy.devices.base import Command, LunIdentity
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.disk import Disk
from lio_xcopy.devices.tape import Tape
from lio_xcopy.scsi import sbc, ssc
from lio_xcopy.scsi.errors import CheckCondition
from lio_xcopy.scsi.sense import Asc, SenseData, SenseKey

BS = 512
MiB = 1 << 20


@pytest.fixture
def disk(tmp_path):
    d = Disk(LunIdentity("disk0", "6001405abcdef0123456789abcdef099"),
             BackingStore(tmp_path / "d.img", create=True, size=64 * BS), BS)
    yield d
    d.close()


@pytest.fixture
def tape(tmp_path):
    t = Tape(LunIdentity("tape0", "4a6f2d3c-1b2a-4c5d-8e9f-0123456789ff"),
             tmp_path / "t.aws", 16 * MiB)
    yield t
    t.close()


def run(dev, cdb, data: bytes | None = None, alloc: int = 0) -> int:
    buf = DataBuffer.of(bytearray(data)) if data is not None else DataBuffer.allocate(alloc)
    return dev.handle(Command(cdb.encode(), buf))


def sense_of(dev, cdb, data: bytes | None = None, alloc: int = 0) -> SenseData:
    """The command's CHECK CONDITION, as the initiator gets it (fixed format)."""
    with pytest.raises(CheckCondition) as e:
        run(dev, cdb, data, alloc)
    return SenseData.parse(e.value.sense.fixed())


def on_disk(d: Disk) -> bytes:
    with open(d.store.path, "rb") as f:
        return f.read()


def blocks(n: int, seed: int) -> bytes:
    return bytes((seed + i * 13 + (i >> 9)) & 0xFF for i in range(n * BS))


# --- disk, SBC-4 ---------------------------------------------------------------------------
def test_read_eio_is_unrecovered_read_error_at_the_first_bad_lba(disk, faults):
    faults.fail_read(disk.store.path, at=10 * BS, length=BS)
    s = sense_of(disk, sbc.Read10(lba=8, transfer_length=4), alloc=4 * BS)
    assert (s.key, s.asc, s.information) == (SenseKey.MEDIUM_ERROR,
                                             Asc.UNRECOVERED_READ_ERROR, 10)
    assert run(disk, sbc.Read10(lba=11, transfer_length=2), alloc=2 * BS) == 2 * BS


def test_write_eio_is_write_error_and_only_the_blocks_before_it_are_written(disk, faults):
    faults.fail_write(disk.store.path, at=10 * BS)
    s = sense_of(disk, sbc.Write10(lba=8, transfer_length=4), blocks(4, 3))
    assert (s.key, s.asc, s.information) == (SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR, 10)
    got = on_disk(disk)
    assert got[8 * BS : 10 * BS] == blocks(4, 3)[: 2 * BS]
    assert got[10 * BS :] == bytes(54 * BS)


def test_enospc_is_space_allocation_failed_write_protect(disk, faults):
    """A sparse file is thin provisioned: SBC-4 4.7.3 DATA PROTECT 27h/07h, which Linux
    sd turns back into ENOSPC (scsi_check_sense: DID_ALLOC_FAILURE)."""
    faults.fail_write(disk.store.path, at=20 * BS, err=errno.ENOSPC)
    s = sense_of(disk, sbc.Write16(lba=20, transfer_length=1), blocks(1, 5))
    assert (s.key, s.asc, s.information) == (
        SenseKey.DATA_PROTECT, Asc.SPACE_ALLOCATION_FAILED_WRITE_PROTECT, 20)
    assert s.encode()[12:14] == b"\x27\x07"
    assert on_disk(disk) == bytes(64 * BS)


def test_short_writes_are_retried_until_everything_is_written(disk, faults):
    faults.short_writes(disk.store.path, most=700)  # not even a whole block per call
    assert run(disk, sbc.Write10(lba=3, transfer_length=8), blocks(8, 7)) == 0
    assert on_disk(disk)[3 * BS : 11 * BS] == blocks(8, 7)


def test_short_write_then_eio_fails_at_the_first_block_not_written(disk, faults):
    faults.short_writes(disk.store.path, most=BS)
    faults.fail_write(disk.store.path, at=6 * BS + 100)
    s = sense_of(disk, sbc.Write10(lba=4, transfer_length=4), blocks(4, 9))
    assert (s.key, s.asc, s.information) == (SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR, 6)


def test_a_write_that_moves_nothing_is_never_good(disk, faults):
    faults.short_writes(disk.store.path, most=0)
    s = sense_of(disk, sbc.Write10(lba=2, transfer_length=2), blocks(2, 1))
    assert (s.key, s.asc, s.information) == (SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR, 2)


def test_fsync_eio_fails_synchronize_cache_and_a_fua_write(disk, faults):
    assert run(disk, sbc.Write10(lba=1, transfer_length=1), blocks(1, 2)) == 0
    faults.fail_sync(disk.store.path)
    s = sense_of(disk, sbc.SynchronizeCache10())
    assert (s.key, s.asc, s.information) == (SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR, None)
    s = sense_of(disk, sbc.SynchronizeCache16(lba=1, number_of_blocks=1))
    assert (s.key, s.asc) == (SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR)
    s = sense_of(disk, sbc.Write10(lba=5, transfer_length=1, fua=1), blocks(1, 4))
    assert (s.key, s.asc, s.information) == (SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR, 5)
    faults.heal()
    assert run(disk, sbc.SynchronizeCache10()) == 0


# --- tape, SSC-4 ---------------------------------------------------------------------------
def write(t: Tape, data: bytes) -> None:
    assert run(t, ssc.Write6(transfer_length=len(data)), data) == 0


def records(t: Tape) -> list[bytes]:
    """Every record from BOT to end of data."""
    run(t, ssc.Rewind())
    out = []
    while True:
        buf = DataBuffer.allocate(1 << 18)
        try:
            n = t.read_record(buf, 1 << 18, sili=True)
        except CheckCondition as e:
            assert e.sense.key == SenseKey.BLANK_CHECK
            return out
        out.append(buf.tobytes(n))


def test_tape_write_eio_is_write_error_and_the_torn_record_is_cut(tape, faults):
    good = [os.urandom(10000), os.urandom(10000)]
    for r in good:
        write(tape, r)
    eod = tape.medium.offset
    # the third record's header goes out, its data fails half way
    faults.short_writes(tape.cartridge, most=4096)
    faults.fail_write(tape.cartridge, at=eod + 5000)
    s = sense_of(tape, ssc.Write6(transfer_length=10000), os.urandom(10000))
    assert (s.key, s.asc, s.information) == (SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR, 10000)
    assert os.path.getsize(tape.cartridge) == eod == 2 * footprint(10000)
    faults.heal()
    assert records(tape) == good  # end of data right after the last whole record
    run(tape, ssc.Space6(code=ssc.SPACE_END_OF_DATA))
    write(tape, b"after")
    assert records(tape) == [*good, b"after"]


def test_tape_fixed_write_eio_reports_every_block_unwritten(tape, faults):
    run(tape, ssc.Write6(transfer_length=2, fixed=0), b"ab")
    tape.block_length = 1024
    faults.fail_write(tape.cartridge, at=tape.medium.offset + 3 * footprint(1024))
    s = sense_of(tape, ssc.Write6(transfer_length=4, fixed=1), os.urandom(4096))
    assert (s.key, s.asc, s.information) == (SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR, 4)
    faults.heal()
    tape.block_length = 0
    assert records(tape) == [b"ab"]


def test_tape_read_eio_is_unrecovered_read_error_with_the_residue(tape, faults):
    data = [os.urandom(8192) for _ in range(3)]
    for r in data:
        write(tape, r)
    run(tape, ssc.Rewind())
    faults.fail_read(tape.cartridge, at=footprint(8192) + 100, length=10)
    assert t_read(tape, 8192) == data[0]
    s = sense_of(tape, ssc.Read6(transfer_length=8192), alloc=8192)
    assert (s.key, s.asc, s.information) == (SenseKey.MEDIUM_ERROR,
                                             Asc.UNRECOVERED_READ_ERROR, 8192)


def test_tape_fsync_eio_fails_write_filemarks(tape, faults):
    write(tape, b"x" * 100)
    faults.fail_sync(tape.cartridge)
    s = sense_of(tape, ssc.WriteFilemarks6(filemark_count=1))
    assert (s.key, s.asc) == (SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR)
    s = sense_of(tape, ssc.Rewind())
    assert (s.key, s.asc) == (SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR)


def t_read(t: Tape, n: int) -> bytes:
    buf = DataBuffer.allocate(n)
    got = t.handle(Command(ssc.Read6(transfer_length=n).encode(), buf))
    return buf.tobytes(got)
