"""The AWSTAPE cartridge: golden bytes, chunking, the index, positioning, corruption."""

from __future__ import annotations

import bisect
import errno
import os
import struct
import tracemalloc
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lio_xcopy.devices import awstape
from lio_xcopy.devices.awstape import (
    AwsTape,
    Kind,
    MediumFull,
    Spaced,
    Stop,
    TapeFormatError,
    footprint,
)
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.errors import LioXcopyError

MiB = 1 << 20


def hdr(cur: int, prev: int, flags: int) -> bytes:
    return struct.pack("<HHBB", cur, prev, flags, 0)


def put(tape: AwsTape, data: bytes) -> None:
    tape.write_record(DataBuffer.of(data), 0, len(data))


def get(tape: AwsTape, max_len: int = 1 << 20) -> tuple[bytes | None, Kind]:
    buf = DataBuffer.allocate(max_len)
    n, kind = tape.read_record_into(buf, max_len)
    return (buf.tobytes(min(n, max_len)) if kind is Kind.DATA else None), kind


@pytest.fixture
def path(tmp_path):
    return tmp_path / "cart.aws"


def test_golden_bytes_two_records_and_a_filemark(path):
    with AwsTape(path, MiB) as t:
        put(t, b"ab")
        put(t, b"xyz")
        t.write_filemarks(1)
        assert (t.position, t.objects, t.file_number) == (3, 3, 1)
    assert path.read_bytes() == (
        hdr(2, 0, 0xA0) + b"ab" + hdr(3, 2, 0xA0) + b"xyz" + hdr(0, 3, 0x40)
    )
    assert path.read_bytes().hex() == "02000000a0006162" "03000200a00078797a" "000003004000"


def test_reads_a_file_written_by_hand_and_reports_eod(path):
    path.write_bytes(hdr(4, 0, 0xA0) + b"VOL1" + hdr(0, 4, 0x40) + hdr(0, 0, 0x40)
                     + hdr(1, 0, 0xA0) + b"z")
    with AwsTape(path, MiB) as t:
        assert t.objects == 4
        assert get(t) == (b"VOL1", Kind.DATA)
        assert get(t) == (None, Kind.FILEMARK)
        assert get(t) == (None, Kind.FILEMARK)
        assert t.file_number == 2
        assert get(t) == (b"z", Kind.DATA)
        assert get(t) == (None, Kind.EOD)
        assert get(t) == (None, Kind.EOD)
        assert t.position == 4 and t.at_eod


def test_multi_chunk_record_layout_and_round_trip(path):
    big = os.urandom(2 * 65535 + 10)
    with AwsTape(path, 4 * MiB) as t:
        put(t, big)
        put(t, b"next")
        assert footprint(len(big)) == len(big) + 18
    raw = path.read_bytes()
    assert raw[:6] == hdr(65535, 0, 0x80)
    assert raw[6 + 65535 : 12 + 65535] == hdr(65535, 65535, 0x00)
    assert raw[2 * 65541 : 2 * 65541 + 6] == hdr(10, 65535, 0x20)
    assert raw[footprint(len(big)) :][:6] == hdr(4, 10, 0xA0)
    with AwsTape(path, 4 * MiB) as t:
        assert t.record_length(0) == len(big)
        assert get(t) == (big, Kind.DATA)
        assert get(t) == (b"next", Kind.DATA)
        t.rewind()
        buf = DataBuffer.allocate(70000)
        assert t.read_record_into(buf, 70000) == (len(big), Kind.DATA)  # truncated read
        assert buf.tobytes() == big[:70000]
        assert get(t) == (b"next", Kind.DATA)  # and the position is past the whole record


@pytest.mark.parametrize("length,chunks", [(65535, 1), (65536, 2), (3 * 65535, 3)])
def test_chunk_boundaries(path, length, chunks):
    data = os.urandom(length)
    with AwsTape(path, 4 * MiB) as t:
        put(t, data)
    assert path.stat().st_size == length + 6 * chunks
    with AwsTape(path, 4 * MiB) as t:
        assert get(t) == (data, Kind.DATA)


def test_scatter_buffer_and_offset_reads(path):
    with AwsTape(path, MiB) as t:
        put(t, bytes(range(200)))
        t.rewind()
        parts = [bytearray(7), bytearray(100), bytearray(150)]
        buf = DataBuffer([memoryview(p) for p in parts])
        assert t.read_record_into(buf, 200, start=5) == (200, Kind.DATA)
        assert buf.tobytes()[5:205] == bytes(range(200))


def test_scatter_lists_with_records_across_views_and_chunks(path):
    data = os.urandom(150000)
    pieces = [bytearray(data[i : i + 1000]) for i in range(0, len(data), 1000)]
    with AwsTape(path, MiB) as t:
        t.write_record(DataBuffer([memoryview(p) for p in pieces]), 0, 150000)
        t.write_record(DataBuffer([memoryview(p) for p in pieces]), 500, 300, 3)  # 3 records
        t.rewind()
        out = [bytearray(999) for _ in range(151)]
        buf = DataBuffer([memoryview(o) for o in out])
        assert t.read_record_into(buf, 150000, start=1) == (150000, Kind.DATA)
        assert buf.tobytes()[1:150001] == data
        assert t.dump_records() == [data[500:800], data[800:1100], data[1100:1400]]


def test_index_is_rebuilt_at_reopen(path):
    with AwsTape(path, MiB) as t:
        for i in range(5):
            put(t, bytes([i]) * (100 + i))
        t.write_filemarks(2)
        put(t, b"second file")
        t.write_filemarks(1)
    with AwsTape(path, MiB) as t:
        assert t.objects == 9 and t.position == 0
        assert t.space_filemarks(2) == Spaced(2, None)
        assert (t.position, t.file_number, t.block_in_file) == (7, 2, 0)
        assert get(t) == (b"second file", Kind.DATA)
        assert t.space_records(-1) == Spaced(1, None)
        assert t.position == 7
        # appending after a reopen continues the previous-length chain
        t.space_to_eod()
        put(t, b"tail")
    with AwsTape(path, MiB) as t:
        assert t.objects == 10
        assert t.dump_records()[-3:] == [b"second file", None, b"tail"]


def test_space_records_and_filemarks(path):
    with AwsTape(path, MiB) as t:
        for _ in range(3):
            put(t, b"r")
        t.write_filemarks(1)  # object 3
        put(t, b"s")  # object 4
        t.write_filemarks(1)  # object 5
        t.rewind()
        assert t.space_records(2) == Spaced(2, None) and t.position == 2
        assert t.space_records(5) == Spaced(1, Stop.FILEMARK) and t.position == 4
        assert t.space_records(-1) == Spaced(0, Stop.FILEMARK) and t.position == 3
        assert t.space_records(-2) == Spaced(2, None) and t.position == 1
        assert t.space_records(-3) == Spaced(1, Stop.BOP) and t.position == 0
        assert t.space_filemarks(1) == Spaced(1, None) and t.position == 4
        assert t.space_filemarks(5) == Spaced(1, Stop.EOD) and t.position == 6
        assert t.space_records(1) == Spaced(0, Stop.EOD)
        assert t.space_filemarks(-1) == Spaced(1, None) and t.position == 5
        assert t.space_filemarks(-2) == Spaced(1, Stop.BOP) and t.position == 0
        t.locate(5)
        assert t.space_filemarks(-1) == Spaced(1, None) and t.position == 3
        assert t.space_filemarks(-1) == Spaced(0, Stop.BOP) and t.position == 0
        assert t.space_filemarks(0) == Spaced(0, None) and t.position == 0
        t.locate(4)
        assert t.space_records(1) == Spaced(1, None) and t.position == 5
        assert t.locate(6) and not t.locate(7) and t.at_eod


def test_writing_in_the_middle_truncates(path):
    with AwsTape(path, MiB) as t:
        for d in (b"one", b"two", b"three"):
            put(t, d)
        t.write_filemarks(1)
        t.rewind()
        t.space_records(1)
        put(t, b"TWO!")
        assert t.objects == 2 and t.at_eod and t.file_number == 0
    assert path.stat().st_size == footprint(3) + footprint(4)
    with AwsTape(path, MiB) as t:
        assert t.dump_records() == [b"one", b"TWO!"]


def test_filemarks_in_the_middle_and_erase(path):
    with AwsTape(path, MiB) as t:
        for d in (b"a", b"b", b"c"):
            put(t, d)
        t.locate(1)
        t.write_filemarks(2)
        assert t.objects == 3 and t.file_number == 2
        t.locate(1)
        t.erase()
        assert t.objects == 1 and t.at_eod
        put(t, b"d")
    assert path.stat().st_size == 2 * footprint(1)
    with AwsTape(path, MiB) as t:
        assert t.dump_records() == [b"a", b"d"]


def test_capacity_is_enforced_and_nothing_is_half_written(path):
    with AwsTape(path, 100, early_warning_size=30) as t:
        assert t.early_warning == 70
        assert t.fits(20, 10) == 3
        t.write_record(DataBuffer.of(bytes(60)), 0, 20, 3)
        assert t.objects == 3 and t.offset == 78 and t.beyond_early_warning
        with pytest.raises(MediumFull):
            put(t, bytes(20))
        assert path.stat().st_size == 78 and t.objects == 3
        assert t.filemarks_fit(5) == 3
        t.write_filemarks(3)
        with pytest.raises(MediumFull):
            t.write_filemarks(1)
    # a file bigger than the capacity still reads
    with AwsTape(path, 10) as t:
        assert t.dump_records() == [bytes(20)] * 3 + [None] * 3


def test_default_early_warning_is_a_sixteenth_up_to_64_mib(path):
    with AwsTape(path, 16 * MiB) as t:
        assert t.early_warning == 15 * MiB
    with AwsTape(path, 4096 * MiB) as t:
        assert t.early_warning == 4096 * MiB - awstape.EARLY_WARNING_MAX


@pytest.mark.parametrize(
    "raw,offset",
    [
        (hdr(2, 0, 0xA0) + b"ab" + hdr(3, 7, 0xA0) + b"xyz", 8),  # bad previous length
        (hdr(2, 0, 0xA0) + b"ab" + hdr(0, 2, 0x41), 8),  # unknown flag bit
        (hdr(2, 0, 0xA0) + b"ab" + hdr(5, 2, 0x40) + b"12345", 8),  # tapemark with data
        (hdr(2, 0, 0xA0) + b"ab" + hdr(9, 2, 0xA0) + b"short", 8),  # data past end of file
        (hdr(2, 0, 0x80) + b"ab" + hdr(2, 2, 0x80) + b"cd", 8),  # record inside a record
        (hdr(2, 0, 0x20) + b"ab", 0),  # continuation without a start
        (hdr(2, 0, 0x80) + b"ab", 0),  # record without its last chunk
        (hdr(2, 0, 0xA0) + b"ab" + b"\x00\x00", 8),  # truncated header
        (struct.pack("<HHBB", 2, 0, 0xA0, 1) + b"ab", 0),  # flags2 is not zero (HET)
    ],
)
def test_corruption_is_detected_at_open(path, raw, offset):
    path.write_bytes(raw)
    with pytest.raises(TapeFormatError) as e:
        AwsTape(path, MiB)
    assert e.value.offset == offset
    assert isinstance(e.value, LioXcopyError)
    assert str(path) in str(e.value)


def test_lenient_open_serves_what_precedes_the_damage(path):
    path.write_bytes(hdr(2, 0, 0xA0) + b"ab" + hdr(0, 2, 0x40) + hdr(3, 9, 0xA0) + b"xyz")
    with AwsTape(path, MiB, strict=False) as t:
        assert isinstance(t.damage, TapeFormatError) and t.objects == 2
        assert get(t) == (b"ab", Kind.DATA)
        assert get(t) == (None, Kind.FILEMARK)
        with pytest.raises(TapeFormatError):
            get(t)
        with pytest.raises(TapeFormatError):
            t.space_to_eod()
        t.rewind()
        with pytest.raises(TapeFormatError):
            t.space_filemarks(3)
        # writing at the end of the good part replaces the damage
        t.locate(2)
        put(t, b"new")
        assert t.damage is None
    with AwsTape(path, MiB) as t:
        assert t.dump_records() == [b"ab", None, b"new"]


def test_a_record_changed_after_open_is_a_format_error(path):
    with AwsTape(path, MiB) as t:
        put(t, b"hello")
        put(t, os.urandom(70000))
        with open(path, "r+b") as f:
            f.write(hdr(6, 0, 0xA0))
            f.seek(11 + 6 + 65535)
            f.write(hdr(1, 1, 0x80))
        t.rewind()
        with pytest.raises(TapeFormatError):
            get(t)
        t.locate(1)
        with pytest.raises(TapeFormatError):
            get(t, 100000)
        t.space_to_eod()
        t.write_filemarks(1)
        with open(path, "r+b") as f:
            f.seek(t.offset - 6)
            f.write(hdr(0, 0, 0xA0))
        t.locate(2)
        with pytest.raises(TapeFormatError):
            get(t)


def test_dump_records_and_read_only(path):
    with AwsTape(path, MiB) as t:
        put(t, b"r1")
        t.write_filemarks(1)
    t = AwsTape.open_readonly(path)
    assert t.capacity == path.stat().st_size
    assert t.dump_records(limit=1) == [b"r1"]
    assert t.dump_records() == [None]
    with pytest.raises(OSError) as e:
        put(t, b"no")
    assert e.value.errno == errno.EROFS
    t.close()
    assert t.closed
    t.close()


def test_open_without_create_fails_for_a_missing_file(path):
    with pytest.raises(FileNotFoundError):
        AwsTape(path, MiB, create=False)


def test_failed_write_ends_the_tape_at_the_position(path, monkeypatch):
    with AwsTape(path, MiB) as t:
        for d in (b"one", b"two", b"three"):
            put(t, d)
        t.locate(1)

        def broken(fd, views, offset):
            raise OSError(errno.EIO, "I/O error")

        monkeypatch.setattr(os, "pwritev", broken)
        with pytest.raises(OSError):
            put(t, b"TWO")
        monkeypatch.undo()
        assert t.objects == 1 and t.at_eod
        put(t, b"2")
    with AwsTape(path, MiB) as t:
        assert t.dump_records() == [b"one", b"2"]


def test_big_tape_scan_reads_headers_only(path, monkeypatch):
    with AwsTape(path, 64 * MiB) as t:
        t.write_record(DataBuffer.allocate(8 * 65535), 0, 65535, 8)
        t.write_record(DataBuffer.allocate(1000), 0, 10, 100)
    reads: list[int] = []
    real = os.pread

    def counting(fd, n, off):
        reads.append(n)
        return real(fd, n, off)

    monkeypatch.setattr(os, "pread", counting)
    with AwsTape(path, 64 * MiB) as t:
        assert t.objects == 108
    assert sum(reads) <= 8 * 6 + 2 * 65536


def test_file_start_and_end_of_data_offset(path):
    with AwsTape(path, MiB) as t:
        assert t.file_start(0) == 0 and t.file_start(1) is None and t.end_of_data_offset == 0
        t.write_record(DataBuffer.of(b"ab"), 0, 2)
        t.write_filemarks(2)
        t.write_record(DataBuffer.of(b"xyz"), 0, 3)
        assert [t.file_start(n) for n in range(4)] == [0, 2, 3, None]
        assert t.end_of_data_offset == 8 + 12 + 9
        t.rewind()
        assert t.end_of_data_offset == 29  # wherever the position is


# --- the compact index -------------------------------------------------------------------------
_ops = st.one_of(
    st.tuples(st.just("append"), st.integers(-4, 4)),
    st.tuples(st.just("extend"), st.integers(-40, 40), st.integers(-3, 3), st.integers(0, 30)),
    st.tuples(st.just("cut"), st.integers(-2, 80)),
    st.tuples(st.just("get"), st.integers(-90, 90)),
)


@given(st.lists(_ops, max_size=60))
def test_progressions_behave_as_a_list(ops):
    seq, ref = awstape._Progressions(), []
    extends = 0
    for op, *args in ops:
        if op == "append":
            v = (ref[-1] if ref else 0) + args[0] if args[0] % 3 else args[0] * 7
            seq.append(v)
            ref.append(v)
        elif op == "extend":
            first, step, count = args
            seq.extend_progression(first, step, count)
            ref.extend(first + k * step for k in range(count))
            extends += 1
        elif op == "cut":
            del seq[args[0]:]
            del ref[args[0]:]
        else:
            if -len(ref) <= args[0] < len(ref):
                assert seq[args[0]] == ref[args[0]]
            else:
                with pytest.raises(IndexError):
                    seq[args[0]]
        assert len(seq) == len(ref)
        assert list(seq) == ref
        assert [seq[i] for i in range(len(ref))] == ref
        # all runs but the last hold two values or more, except ones extend_progression began
        assert len(seq._starts) <= len(ref) // 2 + 1 + extends


@given(st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(0, 3)),
    st.tuples(st.just("extend"), st.integers(0, 3), st.integers(0, 3), st.integers(0, 20)),
    st.tuples(st.just("cut"), st.integers(0, 60)),
), max_size=40))
def test_progressions_bisect_left_as_bisect_on_a_sorted_list(ops):
    seq, ref = awstape._Progressions(), []
    for op, *args in ops:
        last = ref[-1] if ref else 0
        if op == "append":
            seq.append(last + args[0])
            ref.append(last + args[0])
        elif op == "extend":
            gap, step, count = args
            seq.extend_progression(last + gap, step, count)
            ref.extend(last + gap + k * step for k in range(count))
        else:
            seq.truncate(args[0])
            del ref[args[0]:]
        for v in range(-1, (ref[-1] if ref else 0) + 3):
            assert seq.bisect_left(v) == bisect.bisect_left(ref, v), (v, ref)


def index_bytes(t: AwsTape) -> int:
    """The bytes the index's arrays hold."""
    total = 0
    for seq in (t._off, t._len, t._fms):
        arrays = [seq] if isinstance(seq, array) else [seq._starts, seq._firsts, seq._steps]
        total += sum(a.buffer_info()[1] * a.itemsize for a in arrays)
    return total


FMS, RECS = 2_000_000, 100_000


def check_big_tape(t: AwsTape) -> None:
    """The cartridge :func:`test_millions_of_filemarks_and_records_take_a_small_index`
    writes: 3 records, FMS filemarks, RECS records of 512 bytes, a filemark, 1 record."""
    assert t.objects == 3 + FMS + RECS + 2
    t.rewind()
    assert t.space_records(5) == Spaced(3, Stop.FILEMARK) and t.position == 4
    assert (t.file_number, t.block_in_file) == (1, 0)
    assert t.space_filemarks(FMS - 2) == Spaced(FMS - 2, None) and t.file_number == FMS - 1
    assert t.position == 3 + FMS - 1 and t.offset == footprint(3) * 3 + 6 * (FMS - 1)
    assert t.space_filemarks(1) == Spaced(1, None) and t.position == 3 + FMS
    assert (t.file_number, t.block_in_file) == (FMS, 0)
    assert t.space_records(RECS + 5) == Spaced(RECS, Stop.FILEMARK)
    assert (t.file_number, t.block_in_file) == (FMS + 1, 0)
    assert get(t) == (b"end", Kind.DATA) and t.at_eod
    assert t.space_filemarks(-1) == Spaced(1, None) and t.position == 3 + FMS + RECS
    assert t.space_records(-7) == Spaced(7, None) and t.block_in_file == RECS - 7
    assert t.space_filemarks(-3) == Spaced(3, None) and t.position == 3 + FMS - 3
    assert t.space_filemarks(-FMS) == Spaced(FMS - 3, Stop.BOP) and t.position == 0
    assert t.locate(3 + FMS + 1234)
    assert (t.file_number, t.block_in_file) == (FMS, 1234)
    assert t.record_length(t.position) == 512 and t.record_length(3 + FMS - 1) == -1
    assert get(t) == (bytes([1234 % 256]) * 512, Kind.DATA)
    assert t.locate(2) and get(t) == (b"ccc", Kind.DATA) and get(t)[1] is Kind.FILEMARK
    assert [t.file_start(n) for n in (1, FMS, FMS + 1, FMS + 2)] == [
        4, 3 + FMS, 3 + FMS + RECS + 1, None]
    assert t.end_of_data_offset == (footprint(3) * 3 + 6 * FMS + footprint(512) * RECS + 6
                                    + footprint(3))


def test_millions_of_filemarks_and_records_take_a_small_index(path):
    data = DataBuffer.of(b"".join(bytes([i]) * 512 for i in range(256)) * (RECS // 256 + 1))
    with AwsTape(path, 1 << 30) as t:
        for d in (b"aaa", b"bbb", b"ccc"):
            put(t, d)
        tracemalloc.start()
        try:
            t.write_filemarks(FMS)
            t.write_record(data, 0, 512, 10_000)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        t.write_record(data, 512 * 10_000, 512, RECS - 10_000)
        t.write_filemarks(1)
        put(t, b"end")
        assert index_bytes(t) < 4096
        assert peak < 1 << 20  # headers and views are built a bounded piece at a time
        check_big_tape(t)
    assert path.stat().st_size == t.end_of_data_offset
    with AwsTape(path, 1 << 30) as t:  # the scan at open builds the same small index
        assert index_bytes(t) < 4096
        check_big_tape(t)
        # writing inside the runs cuts them
        t.locate(3 + FMS // 2)
        put(t, b"mid")
        assert t.objects == 3 + FMS // 2 + 1 and t.file_number == FMS // 2
        assert t.space_filemarks(-1) == Spaced(1, None) and t.position == 3 + FMS // 2 - 1
        assert path.stat().st_size == footprint(3) * 3 + 6 * (FMS // 2) + footprint(3)


def test_a_filemark_write_failing_in_a_later_piece_ends_the_tape_where_it_began(
    path, monkeypatch
):
    with AwsTape(path, 1 << 30) as t:
        put(t, b"one")
        put(t, b"two")
        t.locate(1)
        real, calls = os.pwritev, []

        def third_fails(fd, views, offset):
            calls.append(offset)
            if len(calls) == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(fd, views, offset)

        monkeypatch.setattr(os, "pwritev", third_fails)
        with pytest.raises(OSError):
            t.write_filemarks(100_000)
        monkeypatch.undo()
        assert len(calls) == 3 and calls[2] > calls[1] > calls[0] == footprint(3)
        assert t.objects == 1 and t.at_eod and t.file_number == 0
        assert path.stat().st_size == footprint(3)
        t.write_filemarks(2)
        put(t, b"2")
    with AwsTape(path, 1 << 30) as t:
        assert t.dump_records() == [b"one", None, None, b"2"]


def test_a_record_write_failing_in_a_later_piece_ends_the_tape_where_it_began(
    path, monkeypatch
):
    with AwsTape(path, 1 << 30) as t:
        put(t, b"one")
        real, calls = os.pwritev, []

        def second_fails(fd, views, offset):
            calls.append(offset)
            if len(calls) == 2:
                raise OSError(errno.EIO, "Input/output error")
            return real(fd, views, offset)

        monkeypatch.setattr(os, "pwritev", second_fails)
        with pytest.raises(OSError) as e:
            t.write_record(DataBuffer.allocate(10 * 2000), 0, 10, 2000)
        monkeypatch.undo()
        assert e.value.errno == errno.EIO and len(calls) == 2
        assert t.objects == 1 and t.at_eod
        assert path.stat().st_size == footprint(3)
        t.write_record(DataBuffer.of(b"xy" * 3000), 0, 2, 3000)  # several pieces
    with AwsTape(path, 1 << 30) as t:
        assert t.dump_records() == [b"one"] + [b"xy"] * 3000
        assert index_bytes(t) < 1024


@given(st.lists(st.one_of(
    st.tuples(st.just("rec"), st.integers(0, 70000), st.integers(1, 3)),
    st.tuples(st.just("fm"), st.integers(1, 12000)),
    st.tuples(st.just("locate"), st.integers(0, 30000)),
), max_size=8))
@settings(max_examples=50)
def test_the_scan_builds_the_index_the_writes_built(tmp_path_factory, ops):
    path = tmp_path_factory.mktemp("scan") / "cart.aws"
    with AwsTape(path, 1 << 30) as t:
        for op, *args in ops:
            if op == "rec":
                length, count = args
                t.write_record(DataBuffer.allocate(length * count), 0, length, count)
            elif op == "fm":
                t.write_filemarks(args[0])
            else:
                t.locate(args[0])
        written = [list(t._off), list(t._len), list(t._fms), t.end_of_data_offset]
    with AwsTape(path, 1 << 30) as t:
        assert [list(t._off), list(t._len), list(t._fms), t.end_of_data_offset] == written
        fms = [n for n, length in enumerate(written[1]) if length < 0]
        assert written[2] == fms
        ends = [*written[0], written[3]][1:]
        assert [b - a for a, b in zip(written[0], ends, strict=True)] == [
            footprint(n) if n >= 0 else 6 for n in written[1]]


@pytest.mark.parametrize("length", [1, 1000, 0xFFFF, 0x10000, 200_000])
@pytest.mark.parametrize("prev", [0, 77])
def test_records_from_one_piece_are_laid_out_as_from_a_scatter_list(length, prev):
    """The headers and data of several records written from one contiguous buffer are
    the bytes the same records get from a buffer in uneven pieces."""
    from lio_xcopy.devices import awstape

    count = 5
    data = os.urandom(length * count)
    lengths = [awstape.MAX_CHUNK] * (length // awstape.MAX_CHUNK)
    if length % awstape.MAX_CHUNK:
        lengths.append(length % awstape.MAX_CHUNK)
    cut = [memoryview(data)[i : i + 999] for i in range(0, len(data), 999)]

    def laid_out(views):
        return b"".join(bytes(v) for v in awstape._record_views(
            awstape._Carver(views), lengths, prev, count))

    assert laid_out([memoryview(data)]) == laid_out(cut)
    assert len(laid_out(cut)) == count * awstape.footprint(length)
