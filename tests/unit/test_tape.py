"""The SSC tape through ``Tape.handle``: the behaviour st, mt, tar and dd rely on."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lio_xcopy.devices.awstape import AwsTape
from lio_xcopy.devices.base import Command, LunIdentity
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.tape import MAX_BLOCK_LENGTH, Tape
from lio_xcopy.errors import BackingStoreError
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
    assert run(t, ssc.WRITE_6(transfer_length=len(data)).encode(), data)[0] == 0


def read(t: Tape, n: int, sili: bool = False) -> bytes:
    return run(t, ssc.READ_6(transfer_length=n, sili=int(sili)).encode(), alloc=n)[1]


def read_cc(t: Tape, n: int, *, fixed: bool = False, sili: bool = False) -> CheckCondition:
    length = n * t.block_length if fixed else n
    return check(t, ssc.READ_6(transfer_length=n, fixed=int(fixed), sili=int(sili)).encode(),
                 alloc=length)


def filemarks(t: Tape, n: int = 1, immed: int = 0) -> None:
    run(t, ssc.WRITE_FILEMARKS_6(filemark_count=n, immed=immed).encode())


def space(t: Tape, code: int, count: int) -> None:
    run(t, ssc.SPACE_6(code=code, count=ssc.to_signed24(count)).encode())


def space_cc(t: Tape, code: int, count: int) -> CheckCondition:
    return check(t, ssc.SPACE_6(code=code, count=ssc.to_signed24(count)).encode())


def rewind(t: Tape) -> None:
    run(t, ssc.REWIND().encode())


def position(t: Tape) -> ssc.ShortPosition:
    return ssc.parse_read_position_short(run(t, ssc.READ_POSITION_SHORT().encode(), alloc=20)[1])


def mode_select_block_length(t: Tape, length: int, dsp: int = 0x10) -> None:
    param = bytes([0, 0, dsp, 8]) + ssc.block_descriptor(0, length)
    run(t, spc.MODE_SELECT_6(pf=1, parameter_list_length=len(param)).encode(), param)


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
    run(tape, ssc.WRITE_6(fixed=1, transfer_length=6).encode(), blocks)
    filemarks(tape)
    write(tape, b"odd" * 100)  # FIXED zero still writes one block of 300 bytes
    rewind(tape)
    n, got = run(tape, ssc.READ_6(fixed=1, transfer_length=2).encode(), alloc=1024)
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
    e = check(ro, ssc.WRITE_6(transfer_length=1).encode(), b"x")
    assert e.sense.key == SenseKey.DATA_PROTECT
    ro.close()


def test_mode_select_validation(tmp_path):
    t = Tape(ID, tmp_path / "t.aws", MiB, max_block_length=65536)
    param = bytes([0, 0, 0x10, 8]) + ssc.block_descriptor(0, 65537)
    e = check(t, spc.MODE_SELECT_6(parameter_list_length=12).encode(), param)
    assert e.sense.asc == Asc.INVALID_FIELD_IN_PARAMETER_LIST
    assert e.sense.sense_key_specific == field_pointer(9, in_cdb=False)
    param = bytes([0, 0, 0x30, 8]) + ssc.block_descriptor(0, 512)  # buffered mode 3
    e = check(t, spc.MODE_SELECT_6(parameter_list_length=12).encode(), param)
    assert e.sense.sense_key_specific == field_pointer(2, 6, in_cdb=False)
    param = bytes([0, 0, 0x10, 8]) + ssc.block_descriptor(0x42, 512)  # a foreign density
    e = check(t, spc.MODE_SELECT_6(parameter_list_length=12).encode(), param)
    assert e.sense.sense_key_specific == field_pointer(4, in_cdb=False)
    e = check(t, spc.MODE_SELECT_6(sp=1, parameter_list_length=12).encode(), bytes(12))
    assert e.sense.sense_key_specific == field_pointer(1, 0)
    # the current pages may be sent back unchanged, not changed
    page = ssc.device_configuration_page()
    ok = bytes([0, 0, 0x10, 0]) + page
    run(t, spc.MODE_SELECT_6(pf=1, parameter_list_length=len(ok)).encode(), ok)
    bad = bytearray(ok)
    bad[4 + 8] = 0
    e = check(t, spc.MODE_SELECT_6(pf=1, parameter_list_length=len(bad)).encode(), bytes(bad))
    assert e.sense.sense_key_specific == field_pointer(12, in_cdb=False)
    assert t.block_length == 0 and t.buffered_mode == 1
    # MODE SELECT (10) and the 10-byte header
    param = bytes([0, 0, 0, 0x10, 0, 0, 0, 8]) + ssc.block_descriptor(0x7F, 1024)
    run(t, spc.MODE_SELECT_10(parameter_list_length=len(param)).encode(), param)
    assert t.block_length == 1024
    run(t, spc.MODE_SELECT_6(parameter_list_length=0).encode(), b"")
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
    e = check(t, ssc.WRITE_6(transfer_length=10240).encode(), rec)
    assert sense(e) == (SenseKey.NO_SENSE, Asc.END_OF_PARTITION_MEDIUM_DETECTED, 0, False, True,
                        False)
    e = check(t, ssc.WRITE_6(transfer_length=10240).encode(), rec)  # 61476: still fits
    assert e.sense.eom and e.sense.key == SenseKey.NO_SENSE
    assert position(t) == (False, True, 0, 6, 6)  # EOP: between early warning and the end
    size = t.medium.offset
    e = check(t, ssc.WRITE_6(transfer_length=10240).encode(), rec)
    assert sense(e) == (SenseKey.VOLUME_OVERFLOW, Asc.END_OF_PARTITION_MEDIUM_DETECTED, 10240,
                        False, True, False)
    assert os.path.getsize(tmp_path / "small.aws") == size and position(t).first == 6
    # the filemarks st writes at close still fit
    e = check(t, ssc.WRITE_FILEMARKS_6(filemark_count=2).encode())
    assert e.sense.eom and e.sense.key == SenseKey.NO_SENSE
    # fixed mode: whole blocks up to the capacity, then the residue in blocks
    mode_select_block_length(t, 512)
    room = 64 * 1024 - t.medium.offset
    e = check(t, ssc.WRITE_6(fixed=1, transfer_length=20).encode(), bytes(20 * 512))
    fit = room // 518
    assert sense(e)[:3] == (SenseKey.VOLUME_OVERFLOW, Asc.END_OF_PARTITION_MEDIUM_DETECTED,
                            20 - fit)
    assert t.medium.objects == 8 + fit
    e = check(t, ssc.WRITE_FILEMARKS_6(filemark_count=100).encode())
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
    run(tape, ssc.LOCATE_10(bt=1, logical_object_identifier=3).encode())
    _, data = run(tape, ssc.READ_POSITION_LONG().encode(), alloc=32)
    assert data == ssc.read_position_long(3, 1, bop=False, eop=False)
    assert read(tape, 1) == b"c"
    _, data = run(tape, ssc.READ_POSITION_SHORT_VENDOR().encode(), alloc=20)
    assert ssc.parse_read_position_short(data).first == 4
    e = check(tape, ssc.LOCATE_10(logical_object_identifier=9).encode())
    assert sense(e)[:2] == (SenseKey.BLANK_CHECK, Asc.END_OF_DATA_DETECTED)
    assert position(tape).first == 4
    e = check(tape, ssc.LOCATE_10(cp=1, partition=1).encode())
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
    run(tape, ssc.ERASE_6(long=1).encode())
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
    e = check(small, ssc.WRITE_6(transfer_length=1025).encode(), bytes(1025))
    assert e.sense.sense_key_specific == field_pointer(2)
    small.close()


def test_unload_load_and_prevent(tape):
    write(tape, b"x")
    run(tape, ssc.LOAD_UNLOAD(load=0).encode())
    e = check(tape, bytes(6))  # TEST UNIT READY
    assert (e.sense.key, e.sense.asc) == (SenseKey.NOT_READY, Asc.MEDIUM_NOT_PRESENT)
    for cdb in (ssc.READ_6(transfer_length=1).encode(), ssc.REWIND().encode(),
                ssc.READ_POSITION_SHORT().encode(), ssc.WRITE_FILEMARKS_6().encode()):
        assert check(tape, cdb, alloc=20).sense.key == SenseKey.NOT_READY
    with pytest.raises(ssc.MediumNotPresent):
        tape.write_record(DataBuffer.of(b"y"), 1)
    run(tape, ssc.LOAD_UNLOAD(load=1).encode())
    run(tape, bytes(6))
    assert position(tape).bop and read(tape, 1) == b"x"
    run(tape, ssc.PREVENT_ALLOW_MEDIUM_REMOVAL(prevent=1).encode())
    e = check(tape, ssc.LOAD_UNLOAD(load=0).encode())
    assert (e.sense.key, e.sense.asc) == (SenseKey.ILLEGAL_REQUEST, Asc.MEDIUM_REMOVAL_PREVENTED)
    run(tape, ssc.PREVENT_ALLOW_MEDIUM_REMOVAL(prevent=0).encode())
    run(tape, ssc.LOAD_UNLOAD(load=0).encode())


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


def test_os_errors_become_medium_errors(tape, monkeypatch):
    write(tape, b"data")

    def broken(*a):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    e = check(tape, ssc.WRITE_FILEMARKS_6(filemark_count=0).encode())
    assert (e.sense.key, e.sense.asc) == (SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR)
    assert "Input/output error" in str(e)
    monkeypatch.setattr(os, "preadv", broken)
    rewind_e = check(tape, ssc.REWIND().encode())
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
    codes = spc.report_all_commands(tape.layouts(), False)
    for op in (0x01, 0x05, 0x08, 0x0A, 0x10, 0x11, 0x19, 0x1B, 0x2B, 0x34):
        assert bytes([op]) in codes[4::8]


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
    st.sampled_from([0x00, 0x01, 0x03, 0x05, 0x08, 0x0A, 0x10, 0x11, 0x12, 0x15, 0x19, 0x1A,
                     0x1B, 0x1E, 0x2B, 0x34, 0x55, 0x5A, 0xA3, 0x44, 0xEE]),
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
