"""The SSC tape through ``Tape.handle``: the behaviour st, mt, tar and dd rely on."""

from __future__ import annotations

import logging
import os
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lio_xcopy.devices.awstape import AwsTape
from lio_xcopy.devices.base import Command, LunIdentity
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.tape import MAX_BLOCK_LENGTH, Tape
from lio_xcopy.errors import BackingStoreError, ConfigError
from lio_xcopy.scsi import spc, ssc
from lio_xcopy.scsi.errors import CheckCondition
from lio_xcopy.scsi.sense import Asc, SenseData, SenseKey, field_pointer

MiB = 1 << 20
ID = LunIdentity("tape0", "4a6f2d3c-1b2a-4c5d-8e9f-0123456789ab")


@pytest.fixture
def tape(tmp_path):
    t = Tape(ID, tmp_path / "t.aws", 64 * MiB)
    yield t
    t.close()


def run(t: Tape, cdb: bytes, data: bytes | None = None, alloc: int = 0) -> tuple[int, bytes]:
    buf = DataBuffer.of(bytearray(data)) if data is not None else DataBuffer.allocate(alloc)
    n = t.handle(Command(cdb, buf))
    return n, buf.tobytes(n)


def check(t: Tape, cdb: bytes, data: bytes | None = None, alloc: int = 0) -> CheckCondition:
    with pytest.raises(CheckCondition) as e:
        run(t, cdb, data, alloc)
    return e.value


def write(t: Tape, data: bytes) -> None:
    assert run(t, ssc.Write6(transfer_length=len(data)).encode(), data)[0] == 0


def read(t: Tape, n: int, sili: bool = False) -> bytes:
    return run(t, ssc.Read6(transfer_length=n, sili=int(sili)).encode(), alloc=n)[1]


def read_cc(t: Tape, n: int, *, fixed: bool = False, sili: bool = False) -> CheckCondition:
    length = n * t.block_length if fixed else n
    return check(t, ssc.Read6(transfer_length=n, fixed=int(fixed), sili=int(sili)).encode(),
                 alloc=length)


def filemarks(t: Tape, n: int = 1, immed: int = 0) -> None:
    run(t, ssc.WriteFilemarks6(filemark_count=n, immed=immed).encode())


def space(t: Tape, code: int, count: int) -> None:
    run(t, ssc.Space6(code=code, count=ssc.to_signed24(count)).encode())


def space_cc(t: Tape, code: int, count: int) -> CheckCondition:
    return check(t, ssc.Space6(code=code, count=ssc.to_signed24(count)).encode())


def rewind(t: Tape) -> None:
    run(t, ssc.Rewind().encode())


def position(t: Tape) -> ssc.ShortPosition:
    return ssc.parse_read_position_short(run(t, ssc.ReadPositionShort().encode(), alloc=20)[1])


def mode_select_block_length(t: Tape, length: int, dsp: int = 0x10) -> None:
    param = bytes([0, 0, dsp, 8]) + ssc.block_descriptor(0, length)
    run(t, spc.ModeSelect6(pf=1, parameter_list_length=len(param)).encode(), param)


def sense(e: CheckCondition) -> tuple[SenseKey, int, int | None, bool, bool, bool]:
    s = SenseData.parse(e.sense.fixed())
    return s.key, s.asc, s.information_signed, s.filemark, s.eom, s.ili


def test_two_files_space_filemark_read_into_filemark_and_eod(tape):
    file1 = [os.urandom(10240) for _ in range(3)]
    file2 = [os.urandom(10240) for _ in range(2)]
    for r in file1:
        write(tape, r)
    filemarks(tape)
    for r in file2:
        write(tape, r)
    filemarks(tape)
    assert position(tape) == (False, False, 0, 7, 7)
    rewind(tape)
    assert position(tape) == (True, False, 0, 0, 0)
    space(tape, ssc.SPACE_FILEMARKS, 1)
    assert position(tape).first == 4
    assert read(tape, 10240) == file2[0]
    assert read(tape, 10240) == file2[1]
    e = read_cc(tape, 10240)
    assert sense(e) == (SenseKey.NO_SENSE, Asc.FILEMARK_DETECTED, 10240, True, False, False)
    assert e.transferred == 0
    assert position(tape).first == 7  # after the filemark
    e = read_cc(tape, 10240)
    assert sense(e) == (SenseKey.BLANK_CHECK, Asc.END_OF_DATA_DETECTED, 10240, False, False,
                        False)
    assert position(tape).first == 7  # stays at end of data
    # the cartridge holds exactly what was written
    tape.close()
    records = AwsTape.open_readonly(tape.cartridge).dump_records()
    assert records == [*file1, None, *file2, None]


def test_variable_mode_incorrect_length_both_ways(tape):
    write(tape, b"A" * 100)
    write(tape, b"B" * 100)
    write(tape, b"C" * 100)
    write(tape, b"D" * 100)
    rewind(tape)
    e = read_cc(tape, 40)  # the block is longer: 40 bytes move, residue -60
    assert sense(e) == (SenseKey.NO_SENSE, 0, -60, False, False, True)
    assert e.transferred == 40
    assert position(tape).first == 1  # past the whole block
    e = read_cc(tape, 300)  # shorter: all of it moves, residue +200
    assert sense(e) == (SenseKey.NO_SENSE, 0, 200, False, False, True)
    assert e.transferred == 100
    assert read(tape, 300, sili=True) == b"C" * 100  # SILI: underlength is not reported
    assert read(tape, 10, sili=True) == b"D" * 10  # nor overlength in variable mode
    assert position(tape).first == 4


def test_sili_reports_overlength_when_a_block_length_is_set(tape):
    write(tape, b"x" * 600)
    mode_select_block_length(tape, 512)
    rewind(tape)
    e = read_cc(tape, 100, sili=True)
    assert sense(e)[2] == -500 and e.sense.ili


def test_fixed_mode(tape):
    mode_select_block_length(tape, 512)
    assert tape.block_length == 512
    blocks = os.urandom(512 * 6)
    run(tape, ssc.Write6(fixed=1, transfer_length=6).encode(), blocks)
    filemarks(tape)
    write(tape, b"odd" * 100)  # FIXED zero still writes one block of 300 bytes
    rewind(tape)
    n, got = run(tape, ssc.Read6(fixed=1, transfer_length=2).encode(), alloc=1024)
    assert (n, got) == (1024, blocks[:1024])
    e = read_cc(tape, 8, fixed=True)  # 4 blocks then the filemark
    assert sense(e) == (SenseKey.NO_SENSE, Asc.FILEMARK_DETECTED, 4, True, False, False)
    assert e.transferred == 4 * 512
    assert position(tape).first == 7
    e = read_cc(tape, 2, fixed=True)  # a 300-byte block
    assert sense(e) == (SenseKey.NO_SENSE, 0, 2, False, False, True)
    assert e.transferred == 300
    assert position(tape).first == 8
    e = read_cc(tape, 3, fixed=True)
    assert sense(e)[:3] == (SenseKey.BLANK_CHECK, Asc.END_OF_DATA_DETECTED, 3)
    # mode sense shows the block length, and variable mode comes back with 0
    _, data = run(tape, bytes([0x1A, 0, 0, 0, 12, 0]), alloc=12)
    assert data == bytes([11, 0, 0x10, 8]) + ssc.block_descriptor(ssc.DENSITY_AWSTAPE, 512)
    mode_select_block_length(tape, 0)
    assert tape.block_length == 0


def test_mode_sense_page_zero_is_what_st_reads(tmp_path):
    t = Tape(ID, tmp_path / "t.aws", MiB)
    _, data = run(t, bytes.fromhex("1a0000000c00"), alloc=12)
    assert data.hex() == "0b001008" "a0000000" "00000000"  # the cartridge's density
    _, data = run(t, bytes.fromhex("5a00000000000000ff00"), alloc=255)  # MODE SENSE (10)
    assert data.hex() == "000e001000000008" "a000000000000000"
    _, data = run(t, bytes.fromhex("1a083f00ff00"), alloc=255)  # all pages, no descriptor
    assert data[3] == 0 and b"\x0f\x0e" in data and b"\x10\x0e" in data
    t.close()
    ro = Tape(ID, tmp_path / "t.aws", MiB, read_only=True)
    assert run(ro, bytes.fromhex("1a0000000c00"), alloc=12)[1][2] == 0x90  # WP, buffered
    e = check(ro, ssc.Write6(transfer_length=1).encode(), b"x")
    assert e.sense.key == SenseKey.DATA_PROTECT
    ro.close()


def test_mode_select_validation(tmp_path):
    t = Tape(ID, tmp_path / "t.aws", MiB, max_block_length=65536)
    param = bytes([0, 0, 0x10, 8]) + ssc.block_descriptor(0, 65537)
    e = check(t, spc.ModeSelect6(parameter_list_length=12).encode(), param)
    assert e.sense.asc == Asc.INVALID_FIELD_IN_PARAMETER_LIST
    assert e.sense.sense_key_specific == field_pointer(9, in_cdb=False)
    param = bytes([0, 0, 0x30, 8]) + ssc.block_descriptor(0, 512)  # buffered mode 3
    e = check(t, spc.ModeSelect6(parameter_list_length=12).encode(), param)
    assert e.sense.sense_key_specific == field_pointer(2, 6, in_cdb=False)
    param = bytes([0, 0, 0x10, 8]) + ssc.block_descriptor(0x42, 512)  # a foreign density
    e = check(t, spc.ModeSelect6(parameter_list_length=12).encode(), param)
    assert e.sense.sense_key_specific == field_pointer(4, in_cdb=False)
    e = check(t, spc.ModeSelect6(sp=1, parameter_list_length=12).encode(), bytes(12))
    assert e.sense.sense_key_specific == field_pointer(1, 0)
    # the current pages may be sent back unchanged, not changed
    page = ssc.device_configuration_page()
    ok = bytes([0, 0, 0x10, 0]) + page
    run(t, spc.ModeSelect6(pf=1, parameter_list_length=len(ok)).encode(), ok)
    bad = bytearray(ok)
    bad[4 + 8] = 0
    e = check(t, spc.ModeSelect6(pf=1, parameter_list_length=len(bad)).encode(), bytes(bad))
    assert e.sense.sense_key_specific == field_pointer(12, in_cdb=False)
    assert t.block_length == 0 and t.buffered_mode == 1
    # MODE SELECT (10) and the 10-byte header
    param = bytes([0, 0, 0, 0x10, 0, 0, 0, 8]) + ssc.block_descriptor(0x7F, 1024)
    run(t, spc.ModeSelect10(parameter_list_length=len(param)).encode(), param)
    assert t.block_length == 1024
    run(t, spc.ModeSelect6(parameter_list_length=0).encode(), b"")
    assert t.block_length == 1024
    t.close()


def test_read_block_limits(tape):
    assert run(tape, bytes([5, 0, 0, 0, 0, 0]), alloc=6)[1].hex() == "00ffffff0001"
    assert MAX_BLOCK_LENGTH == 0xFFFFFF
    n, data = run(tape, bytes([5, 1, 0, 0, 0, 0]), alloc=20)
    assert n == 20 and data[12:] == b"\x00\x00\x00\x00\xff\xff\xff\xff"


def test_early_warning_then_volume_overflow(tmp_path):
    t = Tape(ID, tmp_path / "small.aws", 64 * 1024, early_warning_size=16 * 1024)
    rec = bytes(10240)
    for _ in range(4):  # 4 x 10246 = 40984 bytes, before early warning at 49152
        write(t, rec)
    e = check(t, ssc.Write6(transfer_length=10240).encode(), rec)
    assert sense(e) == (SenseKey.NO_SENSE, Asc.END_OF_PARTITION_MEDIUM_DETECTED, 0, False, True,
                        False)
    e = check(t, ssc.Write6(transfer_length=10240).encode(), rec)  # 61476: still fits
    assert e.sense.eom and e.sense.key == SenseKey.NO_SENSE
    assert position(t) == (False, True, 0, 6, 6)  # EOP: between early warning and the end
    size = t.medium.offset
    e = check(t, ssc.Write6(transfer_length=10240).encode(), rec)
    assert sense(e) == (SenseKey.VOLUME_OVERFLOW, Asc.END_OF_PARTITION_MEDIUM_DETECTED, 10240,
                        False, True, False)
    assert os.path.getsize(tmp_path / "small.aws") == size and position(t).first == 6
    # the filemarks st writes at close still fit
    e = check(t, ssc.WriteFilemarks6(filemark_count=2).encode())
    assert e.sense.eom and e.sense.key == SenseKey.NO_SENSE
    # fixed mode: whole blocks up to the capacity, then the residue in blocks
    mode_select_block_length(t, 512)
    room = 64 * 1024 - t.medium.offset
    e = check(t, ssc.Write6(fixed=1, transfer_length=20).encode(), bytes(20 * 512))
    fit = room // 518
    assert sense(e)[:3] == (SenseKey.VOLUME_OVERFLOW, Asc.END_OF_PARTITION_MEDIUM_DETECTED,
                            20 - fit)
    assert t.medium.objects == 8 + fit
    e = check(t, ssc.WriteFilemarks6(filemark_count=100).encode())
    assert e.sense.key == SenseKey.VOLUME_OVERFLOW and e.sense.information > 0
    t.close()


def test_space_blocks_across_a_filemark_and_back_to_bot(tape):
    for r in (b"a", b"b", b"c"):
        write(tape, r)
    filemarks(tape)
    write(tape, b"d")
    rewind(tape)
    e = space_cc(tape, ssc.SPACE_BLOCKS, 5)
    assert sense(e) == (SenseKey.NO_SENSE, Asc.FILEMARK_DETECTED, 2, True, False, False)
    assert position(tape).first == 4  # after the filemark
    e = space_cc(tape, ssc.SPACE_BLOCKS, -2)
    assert sense(e)[:4] == (SenseKey.NO_SENSE, Asc.FILEMARK_DETECTED, 2, True)
    assert position(tape).first == 3  # before it
    space(tape, ssc.SPACE_BLOCKS, -1)
    assert position(tape).first == 2
    e = space_cc(tape, ssc.SPACE_BLOCKS, -5)
    assert sense(e) == (SenseKey.NO_SENSE, Asc.BEGINNING_OF_PARTITION_MEDIUM_DETECTED, 3, False,
                        True, False)
    assert position(tape) == (True, False, 0, 0, 0)
    e = space_cc(tape, ssc.SPACE_FILEMARKS, -1)
    assert sense(e)[:3] == (SenseKey.NO_SENSE, Asc.BEGINNING_OF_PARTITION_MEDIUM_DETECTED, 1)
    # MTEOM without fast_mteom: space 0x7fffff filemarks, BLANK CHECK with the residue
    e = space_cc(tape, ssc.SPACE_FILEMARKS, 0x7FFFFF)
    assert sense(e)[:3] == (SenseKey.BLANK_CHECK, Asc.END_OF_DATA_DETECTED, 0x7FFFFF - 1)
    assert position(tape).first == 5
    rewind(tape)
    space(tape, ssc.SPACE_END_OF_DATA, 0)
    assert position(tape).first == 5
    space(tape, ssc.SPACE_FILEMARKS, -1)
    assert position(tape).first == 3
    e = space_cc(tape, ssc.SPACE_BLOCKS, 3)
    assert sense(e)[:3] == (SenseKey.NO_SENSE, Asc.FILEMARK_DETECTED, 3)
    e = space_cc(tape, ssc.SPACE_BLOCKS, 3)
    assert sense(e)[:3] == (SenseKey.BLANK_CHECK, Asc.END_OF_DATA_DETECTED, 2)
    space(tape, ssc.SPACE_BLOCKS, 0)


def test_locate_and_long_read_position(tape):
    for r in (b"a", b"b"):
        write(tape, r)
    filemarks(tape, 1)
    write(tape, b"c")
    run(tape, ssc.Locate10(bt=1, logical_object_identifier=3).encode())
    _, data = run(tape, ssc.ReadPositionLong().encode(), alloc=32)
    assert data == ssc.read_position_long(3, 1, bop=False, eop=False)
    assert read(tape, 1) == b"c"
    _, data = run(tape, ssc.ReadPositionShortVendor().encode(), alloc=20)
    assert ssc.parse_read_position_short(data).first == 4
    e = check(tape, ssc.Locate10(logical_object_identifier=9).encode())
    assert sense(e)[:2] == (SenseKey.BLANK_CHECK, Asc.END_OF_DATA_DETECTED)
    assert position(tape).first == 4
    e = check(tape, ssc.Locate10(cp=1, partition=1).encode())
    assert e.sense.sense_key_specific == field_pointer(8)


def test_writing_in_the_middle_truncates(tape):
    for r in (b"one", b"two", b"three"):
        write(tape, r)
    filemarks(tape)
    rewind(tape)
    space(tape, ssc.SPACE_BLOCKS, 1)
    write(tape, b"TWO")
    assert position(tape).first == 2
    rewind(tape)
    assert read(tape, 3) == b"one"
    assert read(tape, 3) == b"TWO"
    assert sense(read_cc(tape, 5))[:2] == (SenseKey.BLANK_CHECK, Asc.END_OF_DATA_DETECTED)


def test_erase_ends_the_tape_at_the_position(tape):
    for r in (b"one", b"two"):
        write(tape, r)
    rewind(tape)
    space(tape, ssc.SPACE_BLOCKS, 1)
    run(tape, ssc.Erase6(long=1).encode())
    rewind(tape)
    assert read(tape, 3) == b"one"
    assert sense(read_cc(tape, 3))[0] == SenseKey.BLANK_CHECK


def test_bad_cdbs(tape):
    def pointer(cdb: bytes, data: bytes | None = None, alloc: int = 0) -> bytes:
        e = check(tape, cdb, data, alloc)
        assert e.sense.key == SenseKey.ILLEGAL_REQUEST
        assert e.sense.asc == Asc.INVALID_FIELD_IN_CDB
        return e.sense.sense_key_specific

    assert pointer(bytes.fromhex("110700000100")) == field_pointer(1, 3)  # SPACE code 7
    assert pointer(bytes.fromhex("110200000100")) == field_pointer(1, 3)  # sequential FMs
    assert pointer(bytes.fromhex("080100000100"), alloc=512) == field_pointer(1, 0)  # FIXED
    assert pointer(bytes.fromhex("0a0100000100"), bytes(512)) == field_pointer(1, 0)
    assert pointer(bytes.fromhex("100200000100")) == field_pointer(1, 1)  # WSMK
    assert pointer(bytes.fromhex("1b0000000500")) == field_pointer(4, 2)  # LOAD with EOT
    assert pointer(bytes.fromhex("1e0000000200")) == field_pointer(4, 1)  # PREVENT 2
    assert pointer(bytes.fromhex("34020000000000000000"), alloc=20) == field_pointer(1, 4)
    assert pointer(bytes.fromhex("080000100000"), alloc=16) == field_pointer(2)  # buffer short
    mode_select_block_length(tape, 512)
    assert pointer(bytes.fromhex("080300000100"), alloc=512) == field_pointer(1, 1)  # SILI+FIXED
    e = check(tape, bytes.fromhex("ee0000000000"))
    assert e.sense.asc == Asc.INVALID_COMMAND_OPERATION_CODE
    small = Tape(ID, Path(tape.cartridge).with_name("s.aws"), MiB, max_block_length=1024)
    e = check(small, ssc.Write6(transfer_length=1025).encode(), bytes(1025))
    assert e.sense.sense_key_specific == field_pointer(2)
    small.close()


def test_unload_load_and_prevent(tape):
    write(tape, b"x")
    run(tape, ssc.LoadUnload(load=0).encode())
    e = check(tape, bytes(6))  # TEST UNIT READY
    assert (e.sense.key, e.sense.asc) == (SenseKey.NOT_READY, Asc.MEDIUM_NOT_PRESENT)
    for cdb in (ssc.Read6(transfer_length=1).encode(), ssc.Rewind().encode(),
                ssc.ReadPositionShort().encode(), ssc.WriteFilemarks6().encode()):
        assert check(tape, cdb, alloc=20).sense.key == SenseKey.NOT_READY
    with pytest.raises(ssc.MediumNotPresent):
        tape.write_record(DataBuffer.of(b"y"), 1)
    run(tape, ssc.LoadUnload(load=1).encode())
    run(tape, bytes(6))
    assert position(tape).bop and read(tape, 1) == b"x"
    run(tape, ssc.PreventAllowMediumRemoval(prevent=1).encode())
    e = check(tape, ssc.LoadUnload(load=0).encode())
    assert (e.sense.key, e.sense.asc) == (SenseKey.ILLEGAL_REQUEST, Asc.MEDIUM_REMOVAL_PREVENTED)
    run(tape, ssc.PreventAllowMediumRemoval(prevent=0).encode())
    run(tape, ssc.LoadUnload(load=0).encode())


def test_corrupt_cartridge_reads_as_medium_error(tmp_path):
    p = tmp_path / "bad.aws"
    p.write_bytes(bytes.fromhex("03000000a000616263" "03000900a000646566"))  # bad chain
    t = Tape(ID, p, MiB)
    assert read(t, 3) == b"abc"
    e = read_cc(t, 3)
    assert (e.sense.key, e.sense.asc) == (SenseKey.MEDIUM_ERROR, Asc.MEDIUM_FORMAT_CORRUPTED)
    e = space_cc(t, ssc.SPACE_END_OF_DATA, 0)
    assert e.sense.key == SenseKey.MEDIUM_ERROR
    write(t, b"new")  # overwriting the damage repairs the cartridge
    t.close()
    assert AwsTape.open_readonly(p).dump_records() == [b"abc", b"new"]


@pytest.mark.parametrize("keep", [3, 6 + 1000, 6 + 65535, 6 + 65535 + 6])
def test_a_record_torn_by_a_crash_is_cut_off_at_open(tmp_path, keep, caplog):
    """A daemon killed inside a WRITE leaves part of a record (``keep`` bytes of its
    header and data): the next open ends the tape after the last whole record, as a
    drive that lost power mid-write, so the initiator reads BLANK CHECK there, not
    MEDIUM ERROR, and SPACE to end of data works."""
    p = tmp_path / "torn.aws"
    t = Tape(ID, p, 64 * MiB)
    recs = [os.urandom(65536) for _ in range(3)]  # two chunks each: 65535 + 1 bytes
    for r in recs[:2]:
        write(t, r)
    whole = os.path.getsize(p)
    write(t, recs[2])
    t.close()
    with open(p, "r+b") as f:
        f.truncate(whole + keep)
    logger = logging.getLogger("lio_xcopy.devices.base")  # other tests may stop propagation
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger=logger.name):
            t = Tape(ID, p, 64 * MiB)
    finally:
        logger.removeHandler(caplog.handler)
    assert os.path.getsize(p) == whole
    assert "never written whole" in caplog.text
    assert [read(t, 65536), read(t, 65536)] == recs[:2]
    e = read_cc(t, 65536)
    assert (e.sense.key, e.sense.asc) == (SenseKey.BLANK_CHECK, Asc.END_OF_DATA_DETECTED)
    run(t, ssc.Rewind().encode())
    space(t, ssc.SPACE_END_OF_DATA, 0)
    write(t, b"appended")
    t.close()
    assert AwsTape.open_readonly(p).dump_records() == [*recs[:2], b"appended"]


def test_a_chain_broken_mid_file_is_not_cut(tmp_path):
    """Damage with objects after it is corruption, not a torn write: the file stays."""
    p = tmp_path / "bad.aws"
    raw = bytes.fromhex("03000000a000616263" "03000900a000646566" "03000300a000676869")
    p.write_bytes(raw)
    Tape(ID, p, MiB).close()
    assert p.read_bytes() == raw


def test_os_errors_become_medium_errors(tape, monkeypatch):
    write(tape, b"data")

    def broken(*a):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    e = check(tape, ssc.WriteFilemarks6(filemark_count=0).encode())
    assert (e.sense.key, e.sense.asc) == (SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR)
    assert "Input/output error" in str(e)
    monkeypatch.setattr(os, "preadv", broken)
    rewind_e = check(tape, ssc.Rewind().encode())
    assert rewind_e.sense.key == SenseKey.MEDIUM_ERROR
    monkeypatch.undo()
    rewind(tape)
    monkeypatch.setattr(os, "preadv", broken)
    e = read_cc(tape, 4)
    assert (e.sense.key, e.sense.asc) == (SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR)
    monkeypatch.undo()


def test_missing_cartridge_without_create(tmp_path):
    with pytest.raises(BackingStoreError, match="cannot open the cartridge"):
        Tape(ID, tmp_path / "absent.aws", MiB, create=False)


def test_narrow_interface_for_the_copy_manager(tape):
    tape.write_record(DataBuffer.of(b"0123456789"), 4, start=3)
    tape.write_filemarks(1)
    tape.rewind()
    buf = DataBuffer.allocate(8)
    assert tape.read_record(buf, 4) == 4 and buf.tobytes(4) == b"3456"
    with pytest.raises(ssc.FilemarkDetected):
        tape.read_record(buf, 8)
    with pytest.raises(ssc.EndOfData):
        tape.read_record(buf, 8)
    tape.flush()
    tape.close()
    tape.close()


def test_standard_inquiry_says_removable_tape(tape):
    _, data = run(tape, bytes.fromhex("120000006000"), alloc=96)
    assert data[0] == 0x01 and data[1] == 0x80
    codes = spc.report_all_commands(tape.layouts(), rctd=False)
    for op in (0x01, 0x04, 0x05, 0x08, 0x0A, 0x10, 0x11, 0x19, 0x1B, 0x2B, 0x34, 0x44, 0x4C,
               0x4D, 0x91, 0x92):
        assert bytes([op]) in codes[4::8]


# --- an empty library drive and its cartridges -------------------------------------------
def ua(t: Tape) -> tuple[SenseKey, int]:
    e = check(t, bytes(6))
    return e.sense.key, e.sense.asc


def test_empty_drive_is_not_ready_but_answers_what_needs_no_medium(tmp_path):
    t = Tape(ID, None, 8 * MiB)
    assert t.cartridge is None and t.medium is None and not t.ejected
    assert ua(t) == (SenseKey.NOT_READY, Asc.MEDIUM_NOT_PRESENT)
    for cdb, alloc in (
        (ssc.Read6(transfer_length=1).encode(), 1),
        (ssc.Write6(transfer_length=1).encode(), 1),
        (ssc.WriteFilemarks6(filemark_count=1).encode(), 0),
        (ssc.Space6(code=1, count=1).encode(), 0),
        (ssc.Space16(code=3).encode(), 0),
        (ssc.Locate10(logical_object_identifier=1).encode(), 0),
        (ssc.Locate16(logical_identifier=1).encode(), 0),
        (ssc.ReadPositionLong().encode(), 32),
        (ssc.Rewind().encode(), 0),
        (ssc.Erase6(long=1).encode(), 0),
        (ssc.FormatMedium().encode(), 0),
        (ssc.LoadUnload(load=1).encode(), 0),
        (ssc.LoadUnload(load=0).encode(), 0),
        (ssc.ReportDensitySupport(media=1, allocation_length=56).encode(), 56),
    ):
        e = check(t, cdb, alloc=alloc)
        assert (e.sense.key, e.sense.asc) == (SenseKey.NOT_READY, Asc.MEDIUM_NOT_PRESENT), cdb
    assert run(t, bytes.fromhex("120000006000"), alloc=96)[1][0] == 0x01
    assert run(t, bytes([5, 0, 0, 0, 0, 0]), alloc=6)[0] == 6
    _, data = run(t, bytes.fromhex("1a0000000c00"), alloc=12)
    assert data.hex() == "0b001008" "00000000" "00000000"  # no medium: density 0
    _, data = run(t, ssc.ReportDensitySupport(allocation_length=56).encode(), alloc=56)
    assert data[4] == ssc.DENSITY_AWSTAPE and data[6] & 0x80
    params = log(t, ssc.SEQUENTIAL_ACCESS_DEVICE_PAGE)
    assert params[4] == params[7] == 0xFFFFFFFF  # capacities unknown without a cartridge
    run(t, ssc.PreventAllowMediumRemoval(prevent=1).encode())
    run(t, ssc.PreventAllowMediumRemoval(prevent=0).encode())
    assert t.unload_cartridge() is None
    t.flush()
    t.close()


def test_load_cartridge_unit_attention_then_ready_unload_returns_the_path(tmp_path):
    t = Tape(ID, None, 8 * MiB)
    path = tmp_path / "c1.aws"
    t.load_cartridge(path)
    assert path.exists() and t.cartridge == str(path) and not t.ejected
    # INQUIRY and REQUEST SENSE do not report (or clear) the unit attention
    run(t, bytes.fromhex("120000006000"), alloc=96)
    run(t, bytes.fromhex("030000001200"), alloc=18)
    assert ua(t) == (SenseKey.UNIT_ATTENTION,
                     Asc.NOT_READY_TO_READY_CHANGE_MEDIUM_MAY_HAVE_CHANGED)
    run(t, bytes(6))
    assert position(t).bop
    write(t, b"first")
    filemarks(t, 1, immed=1)
    with pytest.raises(ConfigError, match="already in the drive"):
        t.load_cartridge(tmp_path / "c2.aws")
    run(t, ssc.PreventAllowMediumRemoval(prevent=1).encode())
    assert t.removal_prevented
    with pytest.raises(ConfigError, match="prevented"):
        t.unload_cartridge()
    assert log(t, ssc.TAPE_ALERT_PAGE)[ssc.TA_NO_REMOVAL] == 1
    run(t, ssc.PreventAllowMediumRemoval(prevent=0).encode())
    assert t.unload_cartridge() == str(path)
    assert t.cartridge is None and ua(t) == (SenseKey.NOT_READY, Asc.MEDIUM_NOT_PRESENT)
    assert AwsTape.open_readonly(path).dump_records() == [b"first", None]  # durable
    # a second cartridge, write protected and of its own capacity
    t.load_cartridge(path, read_only=True, capacity=2 * MiB)
    assert ua(t)[0] == SenseKey.UNIT_ATTENTION
    assert read(t, 5) == b"first"
    e = check(t, ssc.Write6(transfer_length=1).encode(), b"x")
    assert (e.sense.key, e.sense.asc) == (SenseKey.DATA_PROTECT, Asc.WRITE_PROTECTED)
    assert run(t, bytes.fromhex("1a0000000c00"), alloc=12)[1][2] & 0x80  # WP
    _, data = run(t, ssc.ReportDensitySupport(media=1, allocation_length=56).encode(),
                  alloc=56)
    assert not data[6] & 0x80 and struct.unpack_from(">I", data, 16)[0] == 2  # 2 MB
    assert log(t, ssc.TAPE_ALERT_PAGE)[ssc.TA_WRITE_PROTECT] == 1
    assert log(t, ssc.TAPE_ALERT_PAGE)[ssc.TA_WRITE_PROTECT] == 0  # read clears it
    t.close()


def test_unload_leaves_the_cartridge_in_the_drive_until_load_or_the_changer(tape):
    write(tape, b"x")
    run(tape, ssc.LoadUnload(load=0).encode())
    assert tape.ejected and tape.cartridge is not None
    assert ua(tape) == (SenseKey.NOT_READY, Asc.MEDIUM_NOT_PRESENT)
    run(tape, ssc.LoadUnload(load=0).encode())  # unloading again is harmless
    run(tape, ssc.LoadUnload(load=1).encode())
    assert not tape.ejected and position(tape).bop and read(tape, 1) == b"x"
    run(tape, ssc.LoadUnload(load=0).encode())
    path = tape.unload_cartridge()  # the robot takes it from the drive's mouth
    assert path is not None and tape.cartridge is None and not tape.ejected
    e = check(tape, ssc.LoadUnload(load=1).encode())
    assert (e.sense.key, e.sense.asc) == (SenseKey.NOT_READY, Asc.MEDIUM_NOT_PRESENT)


def test_unit_attention_is_reported_once_and_survives_inquiry(tmp_path):
    t = Tape(ID, None, MiB)
    t.load_cartridge(tmp_path / "c.aws")
    run(t, bytes.fromhex("120000006000"), alloc=96)
    e = check(t, ssc.ReadPositionShort().encode(), alloc=20)  # any other command reports it
    assert (e.sense.key, e.sense.asc) == (SenseKey.UNIT_ATTENTION,
                                          Asc.NOT_READY_TO_READY_CHANGE_MEDIUM_MAY_HAVE_CHANGED)
    assert position(t).bop  # and only once
    t.close()


def test_unload_cartridge_that_cannot_be_made_durable_stays_in(tape, monkeypatch):
    write(tape, b"x")

    def broken(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(BackingStoreError, match="fsync"):
        tape.unload_cartridge()
    assert tape.cartridge is not None
    monkeypatch.undo()
    assert tape.unload_cartridge() is not None and tape.cartridge is None


# --- SSC-4 positioning beyond the 6-byte commands ----------------------------------------------
def lay_out(t: Tape) -> None:
    """Objects 0-2 records, 3 filemark, 4-5 records, 6 filemark: end of data at 7."""
    for r in (b"a", b"b", b"c", None, b"d", b"e", None):
        filemarks(t) if r is None else write(t, r)


def test_locate_16_by_object_file_and_end_of_data(tape):
    lay_out(tape)
    run(tape, ssc.Locate16(logical_identifier=5).encode())
    assert position(tape).first == 5
    run(tape, ssc.Locate16(dest_type=ssc.DEST_FILE, logical_identifier=1).encode())
    assert position(tape).first == 4 and read(tape, 1) == b"d"
    run(tape, ssc.Locate16(dest_type=ssc.DEST_FILE, logical_identifier=0).encode())
    assert position(tape).bop
    run(tape, ssc.Locate16(dest_type=ssc.DEST_END_OF_DATA).encode())
    assert position(tape).first == 7
    e = check(tape, ssc.Locate16(dest_type=ssc.DEST_FILE, logical_identifier=3).encode())
    assert (e.sense.key, e.sense.asc) == (SenseKey.BLANK_CHECK, Asc.END_OF_DATA_DETECTED)
    e = check(tape, ssc.Locate16(logical_identifier=8).encode())
    assert e.sense.key == SenseKey.BLANK_CHECK and position(tape).first == 7
    e = check(tape, ssc.Locate16(dest_type=2).encode())
    assert e.sense.sense_key_specific == field_pointer(1, 4)
    e = check(tape, ssc.Locate16(cp=1, partition=1).encode())
    assert e.sense.sense_key_specific == field_pointer(3)
    run(tape, ssc.Locate16(cp=1, partition=0, logical_identifier=2).encode())
    assert position(tape).first == 2


def test_space_16_counts_are_64_bit_signed(tape):
    lay_out(tape)
    neg = (1 << 64) - 2
    run(tape, ssc.Space16(code=ssc.SPACE_END_OF_DATA).encode())
    run(tape, ssc.Space16(code=ssc.SPACE_FILEMARKS, count=neg).encode())
    assert position(tape).first == 3
    run(tape, ssc.Space16(code=ssc.SPACE_BLOCKS, count=neg).encode())
    assert position(tape).first == 1
    e = check(tape, ssc.Space16(code=ssc.SPACE_FILEMARKS, count=5).encode())
    assert sense(e)[:3] == (SenseKey.BLANK_CHECK, Asc.END_OF_DATA_DETECTED, 3)
    e = check(tape, ssc.Space16(code=ssc.SPACE_BLOCKS, count=(1 << 64) - 100).encode())
    assert sense(e)[:5] == (SenseKey.NO_SENSE, Asc.FILEMARK_DETECTED, 100, True, False)
    assert position(tape).first == 6  # stopped before the filemark at 6
    assert check(tape, ssc.Space16(code=2).encode()).sense.sense_key_specific == (
        field_pointer(1, 3))
    e = check(tape, ssc.Space16(parameter_length=4).encode())
    assert e.sense.sense_key_specific == field_pointer(12)


def test_read_position_long_and_extended_forms(tape):
    lay_out(tape)
    run(tape, ssc.Locate10(logical_object_identifier=5).encode())
    _, data = run(tape, ssc.ReadPositionLong().encode(), alloc=32)
    assert ssc.parse_read_position_long(data) == ssc.LongPosition(False, False, False, 0, 5, 1)
    _, data = run(tape, ssc.ReadPositionExtended(allocation_length=32).encode(), alloc=32)
    assert data == ssc.read_position_extended(5, bop=False, eop=False)
    n, _ = run(tape, ssc.ReadPositionExtended(allocation_length=16).encode(), alloc=32)
    assert n == 16


def test_format_medium_only_at_bop(tape):
    lay_out(tape)
    e = check(tape, ssc.FormatMedium().encode())
    assert (e.sense.key, e.sense.asc) == (SenseKey.ILLEGAL_REQUEST,
                                          Asc.POSITION_PAST_BEGINNING_OF_MEDIUM)
    rewind(tape)
    assert check(tape, ssc.FormatMedium(format=3).encode()).sense.asc == (
        Asc.INVALID_FIELD_IN_CDB)
    run(tape, ssc.FormatMedium(format=2).encode())
    e = read_cc(tape, 1)
    assert (e.sense.key, e.sense.asc) == (SenseKey.BLANK_CHECK, Asc.END_OF_DATA_DETECTED)


# --- REPORT DENSITY SUPPORT, log pages, mode pages ----------------------------------------------
def log(t: Tape, page: int, pc: int = 1, pointer: int = 0) -> dict[int, int]:
    _, data = run(t, ssc.LogSense(pc=pc, page_code=page, parameter_pointer=pointer,
                                   allocation_length=2048).encode(), alloc=2048)
    assert data[0] == page and struct.unpack_from(">H", data, 2)[0] == len(data) - 4
    out, pos = {}, 4
    while pos < len(data):
        code, size = struct.unpack_from(">H", data, pos)[0], data[pos + 3]
        out[code] = int.from_bytes(data[pos + 4 : pos + 4 + size], "big")
        pos += 4 + size
    return out


def test_report_density_support(tape):
    _, data = run(tape, ssc.ReportDensitySupport(allocation_length=100).encode(), alloc=100)
    assert data == ssc.density_support(ssc.DENSITY_AWSTAPE, 64 * MiB // 1000000, writable=True)
    _, data = run(tape, ssc.ReportDensitySupport(medium_type=1, allocation_length=100)
                  .encode(), alloc=100)
    assert data == ssc.medium_type_support(0, (ssc.DENSITY_AWSTAPE,))
    n, _ = run(tape, ssc.ReportDensitySupport(allocation_length=8).encode(), alloc=100)
    assert n == 8


def test_log_sense_pages_counters_and_reset(tape):
    _, data = run(tape, ssc.LogSense(pc=1, allocation_length=64).encode(), alloc=64)
    assert data.hex() == "00000003" "000c2e"
    _, data = run(tape, ssc.LogSense(pc=1, subpage_code=0xFF, allocation_length=64).encode(),
                  alloc=64)
    assert data.hex() == "40ff0008" "0000" "0c00" "2e00" "00ff"
    write(tape, b"x" * 1000)
    mode_select_block_length(tape, 100)
    run(tape, ssc.Write6(fixed=1, transfer_length=3).encode(), bytes(300))
    rewind(tape)
    read(tape, 1000)
    run(tape, ssc.Read6(fixed=1, transfer_length=2).encode(), alloc=200)
    p = log(tape, ssc.SEQUENTIAL_ACCESS_DEVICE_PAGE)
    assert [p[i] for i in range(4)] == [1300, 1300, 1200, 1200]
    assert p[5] == (64 * MiB - 4 * MiB) // 1000000 and p[6] == 4 * MiB // 1000000
    assert p[7] == 0 and p[0x100] == 0  # at BOP; no cleaning needed
    assert sorted(p) == [*range(9), 0x100]
    assert sorted(log(tape, ssc.SEQUENTIAL_ACCESS_DEVICE_PAGE, pointer=3)) == [*range(3, 9),
                                                                               0x100]
    assert log(tape, ssc.SEQUENTIAL_ACCESS_DEVICE_PAGE, pc=3)[0] == 0  # default values
    e = check(tape, ssc.LogSense(page_code=0x2E, parameter_pointer=0x41,
                                  allocation_length=512).encode(), alloc=512)
    assert e.sense.sense_key_specific == field_pointer(5)
    run(tape, ssc.LogSelect(pcr=1, pc=1).encode())
    assert log(tape, ssc.SEQUENTIAL_ACCESS_DEVICE_PAGE)[0] == 0
    for bad, ptr in ((ssc.LogSense(sp=1, allocation_length=8), field_pointer(1, 0)),
                     (ssc.LogSense(page_code=0x0D, allocation_length=8), field_pointer(2, 5)),
                     (ssc.LogSense(page_code=0x0C, subpage_code=1, allocation_length=8),
                      field_pointer(3)),
                     (ssc.LogSelect(pcr=1, parameter_list_length=8), field_pointer(7)),
                     (ssc.LogSelect(sp=1), field_pointer(1, 0))):
        assert check(tape, bad.encode(), alloc=8).sense.sense_key_specific == ptr


def test_tape_alert_flags_from_medium_errors(tmp_path):
    p = tmp_path / "bad.aws"
    p.write_bytes(bytes.fromhex("03000000a000616263" "03000900a000646566"))  # bad chain
    t = Tape(ID, p, MiB)
    read(t, 3)
    read_cc(t, 3)
    flags = log(t, ssc.TAPE_ALERT_PAGE)
    assert sorted(f for f, v in flags.items() if v) == [ssc.TA_MEDIA, ssc.TA_READ_FAILURE]
    assert sorted(flags) == list(range(1, 0x41))
    assert not any(log(t, ssc.TAPE_ALERT_PAGE).values())
    t.close()


CAP_MB = 64 * MiB // 1000000  # the fixture's capacity in SSC megabytes


def test_mode_pages_partition_compression_and_pews(tape):
    _, data = run(tape, bytes.fromhex("1a083f00ff00"), alloc=255)  # all pages, subpage 0
    assert ssc.medium_partition_page(CAP_MB) in data and ssc.data_compression_page() in data
    assert ssc.device_configuration_extension_page() not in data
    _, data = run(tape, bytes.fromhex("1a083fffff00"), alloc=255)  # and the subpages
    assert ssc.device_configuration_extension_page() in data
    _, data = run(tape, bytes.fromhex("1a085001ff00"), alloc=255)  # changeable 10h/01h
    assert data[4:] == bytes([0x50, 1, 0, 0x1C, 0, 0, 0xFF, 0xFF]) + bytes(24)
    _, data = run(tape, bytes.fromhex("1a085100ff00"), alloc=255)  # changeable 11h
    assert data[4:] == bytes([0x11, 8, 0, 0, 0xE0, 0, 0, 0, 0xFF, 0xFF])  # FDP/SDP/IDP, size
    _, data = run(tape, bytes.fromhex("1a084f00ff00"), alloc=255)  # changeable 0Fh: DCE
    assert data[4:] == bytes([0x0F, 0x0E, 0x80]) + bytes(13)

    def select(page: bytes) -> None:
        param = bytes([0, 0, 0x10, 0]) + page
        run(tape, spc.ModeSelect6(pf=1, parameter_list_length=len(param)).encode(), param)

    def refused(page: bytes) -> bytes:
        param = bytes([0, 0, 0x10, 0]) + page
        return check(tape, spc.ModeSelect6(pf=1, parameter_list_length=len(param)).encode(),
                     param).sense.sense_key_specific

    select(ssc.device_configuration_extension_page(3))
    assert tape.pews == 3
    _, data = run(tape, bytes.fromhex("1a081001ff00"), alloc=255)
    assert data[4:] == ssc.device_configuration_extension_page(3)
    _, data = run(tape, bytes.fromhex("1a089001ff00"), alloc=255)  # defaults: PEWS 0
    assert data[4:] == ssc.device_configuration_extension_page(0)
    ext = bytearray(ssc.device_configuration_extension_page(3))
    ext[5] = 0x12  # append-only write mode: not changeable
    assert refused(bytes(ext)) == field_pointer(4 + 5, in_cdb=False)
    part = bytearray(ssc.medium_partition_page(CAP_MB))
    part[3] = 1  # one additional partition: one partition is all there is
    assert refused(bytes(part)) == field_pointer(4 + 3, in_cdb=False)
    select(ssc.medium_partition_page(CAP_MB))
    comp = bytearray(ssc.data_compression_page())
    comp[2] = 0x80  # DCE one but DCC zero: DCC is not changeable
    assert refused(bytes(comp)) == field_pointer(4 + 2, in_cdb=False)
    comp = bytearray(ssc.data_compression_page(dce=True))
    comp[7] = 0x10  # a COMPRESSION ALGORITHM
    assert refused(bytes(comp)) == field_pointer(4 + 7, in_cdb=False)
    assert tape.pews == 3 and not tape.compression


def test_programmable_early_warning_then_early_warning_then_overflow(tmp_path):
    mb = 1000 * 1000
    t = Tape(ID, tmp_path / "pew.aws", 4 * mb, early_warning_size=mb)  # EW at 3 MB
    rec = bytes(100000)
    t.pews = 1  # PEW at 2 MB
    for _ in range(19):  # 19 x 100006 bytes: before PEW
        write(t, rec)
    assert not ssc.parse_read_position_long(run(t, ssc.ReadPositionLong().encode(),
                                                alloc=32)[1]).bpew
    e = check(t, ssc.Write6(transfer_length=len(rec)).encode(), rec)
    assert isinstance(e, ssc.EarlyWarning)  # the copy manager writes on through PEW
    assert sense(e) == (SenseKey.NO_SENSE, Asc.PROGRAMMABLE_EARLY_WARNING_DETECTED, 0, False,
                        True, False)
    rp = ssc.parse_read_position_long(run(t, ssc.ReadPositionLong().encode(), alloc=32)[1])
    assert rp.bpew and not rp.eop and rp.object_number == 20
    assert run(t, ssc.ReadPositionShort().encode(), alloc=20)[1][0] == 0x01  # BPEW
    for _ in range(9):  # up to 2,900,174: still in the PEW zone
        assert check(t, ssc.Write6(transfer_length=len(rec)).encode(), rec).sense.asc == (
            Asc.PROGRAMMABLE_EARLY_WARNING_DETECTED)
    e = check(t, ssc.WriteFilemarks6(filemark_count=1).encode())  # filemarks too
    assert e.sense.asc == Asc.PROGRAMMABLE_EARLY_WARNING_DETECTED
    e = check(t, ssc.Write6(transfer_length=len(rec)).encode(), rec)
    assert e.sense.asc == Asc.END_OF_PARTITION_MEDIUM_DETECTED and e.sense.eom
    rp = ssc.parse_read_position_long(run(t, ssc.ReadPositionLong().encode(), alloc=32)[1])
    assert rp.bpew and rp.eop
    while True:
        e = check(t, ssc.Write6(transfer_length=len(rec)).encode(), rec)
        if e.sense.key != SenseKey.NO_SENSE:
            break
    assert e.sense.key == SenseKey.VOLUME_OVERFLOW and t.medium.offset <= 4 * mb
    t.pews = 0
    rp = ssc.parse_read_position_long(run(t, ssc.ReadPositionLong().encode(), alloc=32)[1])
    assert not rp.bpew and rp.eop  # BPEW only while PEWS is set
    t.close()


# --- properties -------------------------------------------------------------------------------
records = st.lists(
    st.one_of(st.none(), st.binary(min_size=1, max_size=300),
              st.integers(65530, 140000).map(lambda n: os.urandom(n))),
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records)
def test_whatever_is_written_reads_back_after_rewind(objects):
    with tempfile.TemporaryDirectory() as d:
        t = Tape(ID, Path(d) / "p.aws", 16 * MiB)
        for o in objects:
            if o is None:
                filemarks(t, 1, immed=1)
            else:
                write(t, o)
        assert position(t).first == len(objects)
        rewind(t)
        got: list[bytes | None] = []
        while True:
            try:
                got.append(read(t, 200000, sili=True))
            except CheckCondition as e:
                if e.sense.asc == Asc.END_OF_DATA_DETECTED:
                    break
                assert e.sense.filemark and e.transferred == 0
                got.append(None)
        assert got == objects
        t.close()
        # and an independent reopen of the file agrees
        assert AwsTape.open_readonly(Path(d) / "p.aws").dump_records() == objects


cdbs = st.tuples(
    st.sampled_from([0x00, 0x01, 0x03, 0x04, 0x05, 0x08, 0x0A, 0x10, 0x11, 0x12, 0x15, 0x19,
                     0x1A, 0x1B, 0x1E, 0x2B, 0x34, 0x44, 0x4C, 0x4D, 0x55, 0x5A, 0x91, 0x92,
                     0xA3, 0xEE]),
    st.binary(min_size=0, max_size=15),
    st.integers(0, 4096),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(cdbs, min_size=1, max_size=6), st.binary(max_size=64))
def test_no_cdb_escapes_as_anything_but_check_condition(commands, payload):
    with tempfile.TemporaryDirectory() as d:
        t = Tape(ID, Path(d) / "f.aws", 256 * 1024, early_warning_size=64 * 1024)
        for r in (b"a" * 100, b"b" * 512, None, b"c" * 512):
            if r is None:
                filemarks(t)
            else:
                write(t, r)
        rewind(t)
        for op, rest, size in commands:
            buf = DataBuffer.allocate(size)
            buf.copy_in(payload)
            try:
                n = t.handle(Command(bytes([op]) + rest, buf))
            except CheckCondition as e:
                assert e.transferred is None or 0 <= e.transferred <= size
            else:
                assert 0 <= n <= size
        t.close()
        AwsTape(Path(d) / "f.aws", 256 * 1024).close()  # the header chain is still sound


# --- what st sends for mt compression, mkpartition and setpartition -------------------------
def st_mode_sense(t: Tape, page: int, dbd: bool = False) -> bytearray:
    """st's read_mode_page(): MODE SENSE (6) of one page, 255 bytes allocated."""
    return bytearray(run(t, spc.ModeSense6(dbd=int(dbd), page_code=page,
                                             allocation_length=255).encode(), alloc=255)[1])


def st_mode_select(t: Tape, data: bytearray) -> None:
    """st's write_mode_page(): the sensed data with the reserved header fields, WP and PS
    cleared, sent back with MODE SELECT (6), PF one; the list ends with the page."""
    pgo = 4 + data[3]
    data[0] = data[1] = 0
    data[2] &= 0x7F
    data[pgo] &= 0x3F
    param = bytes(data[: pgo + data[pgo + 1] + 2])
    run(t, spc.ModeSelect6(pf=1, parameter_list_length=len(param)).encode(), param)


def st_compression(t: Tape, state: bool) -> None:
    """st's st_compression() (``mt compression``): EIO without a MODE SELECT unless DCC is
    one; else DCE set or cleared in the page just sensed, block descriptor included."""
    data = st_mode_sense(t, ssc.DATA_COMPRESSION_PAGE)
    pgo = 4 + data[3]
    if not data[pgo + 2] & 0x40:
        raise OSError(5, "st: compression not supported (DCC zero)")
    data[pgo + 2] = data[pgo + 2] | 0x80 if state else data[pgo + 2] & ~0x80
    st_mode_select(t, data)


def st_partition_tape(t: Tape, size: int) -> bytearray:
    """The page st's partition_tape() (``mt mkpartition size``, 6.1) sends for a drive whose
    Medium Partition page has POFM zero and PSUM in megabytes."""
    data = st_mode_sense(t, ssc.MEDIUM_PARTITION_PAGE)
    pgo = 4 + data[3]
    psd_cnt = (data[pgo + 1] + 2 - 8) // 2
    psdo = pgo + 8
    if psd_cnt > data[pgo + 2] or data[pgo + 2] != 1:
        data[psdo] = data[psdo + 1] = 0xFF  # partition 0: the rest of the tape
        psdo += 2
    data[psdo : psdo + data[pgo + 3] * 2] = bytes(data[pgo + 3] * 2)
    data.extend(bytes(4))
    if size == 0:
        data[pgo + 3] = 0
        if psd_cnt <= data[pgo + 2]:
            data[pgo + 1] = 6
    else:
        data[psdo : psdo + 2] = size.to_bytes(2, "big")
        data[pgo + 3] = 1
        data[pgo + 1] = max(data[pgo + 1], 8)
    data[pgo + 6] = data[pgo + 7] = 0
    data[pgo + 4] = 0x20 | 0x10 | (data[pgo + 4] & 0x07)  # IDP, PSUM megabytes
    data[pgo + 1] = 6 + psd_cnt * 2
    return data


def test_mt_compression_is_accepted_and_reported(tape):
    """SSC-4 Data Compression mode page: DCC one, so st sends MODE SELECT; DCE is then
    reported back by MODE SENSE (current values), defaults stay zero."""
    page = st_mode_sense(tape, ssc.DATA_COMPRESSION_PAGE)
    assert page[:4] == bytes([3 + 8 + 16, 0, 0x10, 8])  # header, one block descriptor
    assert page[12:] == bytes([0x0F, 0x0E, 0x40, 0x80]) + bytes(12)  # DCC, DDE; DCE zero
    st_compression(tape, True)
    assert tape.compression
    assert st_mode_sense(tape, ssc.DATA_COMPRESSION_PAGE, dbd=True)[4:8] == bytes(
        [0x0F, 0x0E, 0xC0, 0x80])
    _, default = run(tape, spc.ModeSense6(dbd=1, pc=spc.PC_DEFAULT, page_code=0x0F,
                                            allocation_length=255).encode(), alloc=255)
    assert default[6] == 0x40  # the default is still no compression
    write(tape, b"x" * 1000)  # records are stored as received either way
    rewind(tape)
    assert read(tape, 1000) == b"x" * 1000
    st_compression(tape, False)
    assert not tape.compression
    assert st_mode_sense(tape, ssc.DATA_COMPRESSION_PAGE)[14] == 0x40


def test_mt_mkpartition_two_partitions_refused_at_additional_partitions_defined(tape):
    """Medium Partition page: MAXIMUM ADDITIONAL PARTITIONS zero, so a page asking for one
    additional partition is ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST, the field
    pointer at ADDITIONAL PARTITIONS DEFINED (st then logs "Partitioning of tape failed"
    and returns EIO); the cartridge is untouched."""
    write(tape, b"keep")
    rewind(tape)
    data = st_partition_tape(tape, 100)
    assert data[12:22] == bytes([0x11, 8, 0, 1, 0x30, 3, 0, 0, 0xFF, 0xFF])
    e = check(tape, spc.ModeSelect6(pf=1, parameter_list_length=22).encode(),
              bytes([0, 0, 0x10, 8]) + bytes(data[4:22]))
    assert (e.sense.key, e.sense.asc) == (SenseKey.ILLEGAL_REQUEST,
                                          Asc.INVALID_FIELD_IN_PARAMETER_LIST)
    assert e.sense.sense_key_specific == field_pointer(12 + 3, in_cdb=False)
    assert read(tape, 4) == b"keep"


def test_mt_mkpartition_one_partition_formats_at_bop_only(tape):
    """IDP with ADDITIONAL PARTITIONS DEFINED zero and POFM zero: the MODE SELECT itself
    partitions the medium into one partition (an empty tape), at BOP; elsewhere ILLEGAL
    REQUEST, POSITION PAST BEGINNING OF MEDIUM and nothing is erased. A partition 0 size
    other than its own or FFFFh is refused at the descriptor."""
    write(tape, b"gone")
    data = st_partition_tape(tape, 0)
    assert data[12:22] == bytes([0x11, 8, 0, 0, 0x30, 3, 0, 0, 0xFF, 0xFF])
    param = bytes([0, 0, 0x10, 8]) + bytes(data[4:22])
    e = check(tape, spc.ModeSelect6(pf=1, parameter_list_length=22).encode(), param)
    assert (e.sense.key, e.sense.asc) == (SenseKey.ILLEGAL_REQUEST,
                                          Asc.POSITION_PAST_BEGINNING_OF_MEDIUM)
    assert tape.medium.objects == 1
    rewind(tape)
    bad = bytearray(param)
    bad[12 + 8 : 12 + 10] = b"\x00\x05"
    e = check(tape, spc.ModeSelect6(pf=1, parameter_list_length=22).encode(), bytes(bad))
    assert e.sense.sense_key_specific == field_pointer(12 + 8, in_cdb=False)
    assert tape.medium.objects == 1
    run(tape, spc.ModeSelect6(pf=1, parameter_list_length=22).encode(), param)
    assert tape.medium.objects == 0 and tape.medium.end_of_data_offset == 0
    assert read_cc(tape, 10).sense.asc == Asc.END_OF_DATA_DETECTED
    # still one partition: what st's nbr_partitions() reads (DBD) says so
    assert st_mode_sense(tape, ssc.MEDIUM_PARTITION_PAGE, dbd=True)[4:8] == bytes(
        [0x11, 8, 0, 0])


def test_setpartition_other_than_zero_is_invalid_field_in_cdb(tape):
    """LOCATE with CP one to a partition that does not exist: ILLEGAL REQUEST, INVALID
    FIELD IN CDB at the PARTITION byte (as mhvtl); partition 0 is fine."""
    write(tape, b"a")
    for cdb, at in ((ssc.Locate10(bt=1, cp=1, partition=1).encode(), 8),
                    (ssc.Locate16(cp=1, partition=1).encode(), 3)):
        e = check(tape, cdb)
        assert (e.sense.key, e.sense.asc) == (SenseKey.ILLEGAL_REQUEST,
                                              Asc.INVALID_FIELD_IN_CDB)
        assert e.sense.sense_key_specific == field_pointer(at, in_cdb=True)
    run(tape, ssc.Locate10(bt=1, cp=1, partition=0, logical_object_identifier=0).encode())
    assert position(tape) == (True, False, 0, 0, 0)
