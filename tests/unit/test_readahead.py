"""Read-ahead of a copy's block source (lio_xcopy.copy.readahead): the component on its
own, and copies run with and without it, which must report exactly the same."""

from __future__ import annotations

import os
import threading
import time

import pytest
from plugins.copy_lab import cscd, read_file, report, tape_records
from plugins.copy_steps import InlineExecutor, ScriptedEnd

from lio_xcopy.copy.digest import BackgroundDigest
from lio_xcopy.copy.manager import CopyJob, CopyManager, _Plan, _same_device
from lio_xcopy.copy.readahead import ReadAhead
from lio_xcopy.copy.rod import RodSource
from lio_xcopy.devices.backing import BackingStore
from lio_xcopy.devices.base import Command, LunIdentity
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.disk import Disk
from lio_xcopy.scsi import xcopy
from lio_xcopy.scsi.errors import MediumError
from lio_xcopy.scsi.sense import Asc
from lio_xcopy.scsi.xcopy import (
    BlockToBlock,
    BlockToBlockHeld,
    BlockToBlockOffset,
    BlockToStream,
    BlockToStreamHeld,
    ListIdUsage,
)

MiB = 1 << 20
CHUNK = 64 * 1024
DISK_STEP = 256 * 1024  # disk to disk: whole blocks of both disks, 512 x 512 at least


def _readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "read" in t.name and t.name.startswith(
        ("xcopy-read", "copy-read"))]


def _wait_for(cond, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.001)


class _Source:
    """Bytes ``pos`` .. ``pos + n`` of a pattern, each read recorded; ``fail`` raises
    instead of reading at that piece number (from 1)."""

    def __init__(self, data: bytes, fail: dict[int, BaseException] | None = None):
        self.data, self.fail = data, fail or {}
        self.reads: list[tuple[int, int]] = []

    def __call__(self, pos: int, n: int, into: DataBuffer) -> None:
        self.reads.append((pos, n))
        e = self.fail.get(len(self.reads))
        if e is not None:
            raise e
        into.copy_in(self.data[pos:pos + n])


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_pieces_come_in_order_and_nothing_beyond_them_is_read(depth):
    data = os.urandom(10 * 1000 + 7)
    pieces = [(p, min(1000, len(data) - p)) for p in range(0, len(data), 1000)]
    src = _Source(data)
    digest = BackgroundDigest()
    got = b""
    with ReadAhead(src, pieces, 1000, depth, digest=digest) as ahead:
        for _pos, n in pieces:
            buf = ahead.next()
            assert len(buf) == n
            got += buf.tobytes()
            digest.update(buf.tobytes())
            ahead.done()
    assert got == data and src.reads == pieces
    assert not _readers()


def test_the_reader_stays_within_its_buffers():
    """Depth 2: three buffers, so with none given back it reads three pieces and waits;
    each piece given back lets it read one more."""
    pieces = [(p * 10, 10) for p in range(8)]
    src = _Source(bytes(80))
    with ReadAhead(src, pieces, 10, 2) as ahead:
        _wait_for(lambda: len(src.reads) == 3)
        time.sleep(0.05)
        assert len(src.reads) == 3
        ahead.next()
        time.sleep(0.05)
        assert len(src.reads) == 3  # taken, not yet written: its buffer is still in use
        ahead.done()
        _wait_for(lambda: len(src.reads) == 4)
        time.sleep(0.05)
        assert len(src.reads) == 4
    assert not _readers()


def test_a_buffer_is_read_into_again_only_once_hashed():
    class Digest:
        def __init__(self):
            self.hashed = 0
            self.waited: list[int] = []
            self.cv = threading.Condition()

        def ticket(self) -> int:
            return 1

        def wait(self, ticket: int) -> None:
            with self.cv:
                self.waited.append(ticket)
                self.cv.wait_for(lambda: self.hashed >= ticket)

    digest = Digest()
    src = _Source(bytes(50))
    with ReadAhead(src, [(p * 10, 10) for p in range(5)], 10, 1, digest=digest) as ahead:
        ahead.next()
        ahead.done()  # written, not yet hashed
        ahead.next()
        ahead.done()
        _wait_for(lambda: digest.waited)
        time.sleep(0.05)
        assert len(src.reads) == 2  # waits for the digest before the first buffer's reuse
        with digest.cv:
            digest.hashed = 1
            digest.cv.notify_all()
        _wait_for(lambda: len(src.reads) == 4)


def test_an_error_is_raised_where_its_piece_is_taken_and_reading_stops():
    pieces = [(p * 10, 10) for p in range(6)]
    src = _Source(bytes(60), {3: MediumError(Asc.UNRECOVERED_READ_ERROR, 2)})
    with ReadAhead(src, pieces, 10, 2) as ahead:
        for _ in range(2):
            ahead.next()
            ahead.done()
        with pytest.raises(MediumError):
            ahead.next()
    assert len(src.reads) == 3 and not _readers()


def test_closing_early_stops_the_reader():
    src = _Source(bytes(1000))
    with ReadAhead(src, [(p * 10, 10) for p in range(100)], 10, 2) as ahead:
        ahead.next()
    assert len(src.reads) <= 4 and not _readers()


# --- copies with and without read-ahead ----------------------------------------------------

def _copy(copy_lab, depth, segments, *, dst_kind="disk", script=(), source_script=(),
          same=False, data=None, capacity=16 * MiB):
    """Run the copy on fresh devices with read-ahead ``depth``; what it reports. A
    script entry is (method, n, make): ``make(manager, receiving)`` gives what to run
    (or raise) before the n-th call of ``method`` on the destination (the source)."""
    tag = f"r{depth}"
    data = data if data is not None else os.urandom(MiB)
    src = copy_lab.disk(f"src{tag}", data=data)
    dst = (src if same else copy_lab.tape(f"tape{tag}", capacity) if dst_kind == "tape"
           else copy_lab.disk(f"dst{tag}", size=MiB))
    manager = CopyManager(chunk=CHUNK, executor=InlineExecutor(), read_ahead=depth,
                          kernel_copy=False)  # the bytes through buffers read ahead
    source = ScriptedEnd(src)
    dest = source if same else ScriptedEnd(dst)
    for end, entries in ((dest, script), (source, source_script)):
        for method, n, make in entries:
            end.at(method, n, make(manager, src))
    plist = xcopy.build_extended_copy([cscd(source), cscd(dest)], segments,
                                      list_identifier=5, list_id_usage=ListIdUsage.HOLD)
    manager.register(src)  # the receiving LUN; the copy's ends are the scripted ones
    for end in {id(source): source, id(dest): dest}.values():
        manager.register(end)
    cdb = xcopy.ExtendedCopyLid1(parameter_list_length=len(plist)).encode()
    fut = src.handle(Command(cdb, DataBuffer.of(bytearray(plist))))
    out = report(manager, src, fut)
    out.update({
        "bytes": tape_records(dst) if dst_kind == "tape" else read_file(dst),
        "buffers kept": list(next(j for j in manager.jobs() if j.list_id == 5).scratch_buffers),
    })
    assert not _readers()
    return out


def _same_with_and_without(copy_lab, segments, **kw):
    data = os.urandom(MiB)
    without = _copy(copy_lab, 0, segments, data=data, **kw)
    for depth in (1, 2):
        assert _copy(copy_lab, depth, segments, data=data, **kw) == without
    return without


def test_disk_to_disk_reports_the_same(copy_lab):
    r = _same_with_and_without(copy_lab, [BlockToBlock(0, 1, 2048, 0, 0)])
    assert r["ended"] == ("ok", 0) and r["transferred"] == MiB


def test_disk_to_tape_reports_the_same(copy_lab):
    r = _same_with_and_without(copy_lab, [
        BlockToStream(0, 1, 1000, 0, 64 * 1024),
        BlockToStream(0, 1, 900, 1000, 64 * 1024, cat=True),  # CAT: the rest carried on
        BlockToStream(0, 1, 148, 1900, 64 * 1024),
        BlockToStreamHeld(0, 1, 300, 3, 4096)], dst_kind="tape")
    assert r["ended"] == ("ok", 0) and r["transferred"] == MiB + 300 * 512
    assert len(r["held"]) == 300 * 512


def test_byte_offsets_and_held_data_are_the_same(copy_lab):
    r = _same_with_and_without(copy_lab, [
        BlockToBlockOffset(0, 1, 300_001, 0, 0, 7, 13),
        BlockToBlockHeld(0, 1, 500, 1, 1000)])
    assert r["ended"] == ("ok", 0) and len(r["held"]) == 500 * 512


@pytest.mark.parametrize("dst_kind", ["disk", "tape"])
def test_a_read_error_of_a_later_chunk_surfaces_after_the_chunks_before_it(copy_lab,
                                                                          dst_kind):
    """The source fails its fourth read: three chunks were written, the OPERATION COUNTER
    and FAILED SEGMENT DETAILS say so, as without read-ahead."""
    step = DISK_STEP if dst_kind == "disk" else CHUNK
    error = MediumError(Asc.UNRECOVERED_READ_ERROR, 3 * step // 512)
    seg = (BlockToBlock(0, 1, 2048, 0, 0) if dst_kind == "disk"
           else BlockToStream(0, 1, 2048, 0, 64 * 1024))
    r = _same_with_and_without(copy_lab, [seg], dst_kind=dst_kind, source_script=[
        ("read_blocks", 4, lambda _m, _r: error)])
    assert r["ended"][0] == "error" and r["ended"][2] == Asc.UNRECOVERED_READ_ERROR
    assert r["transferred"] == 3 * step and r["fsd"] is not None


def test_an_abort_mid_copy_stops_at_the_next_chunk_with_an_exact_count(copy_lab):
    """COPY OPERATION ABORT during the third write: the copy ends before it takes the
    fourth chunk, three chunks counted, no reader thread left."""
    r = _same_with_and_without(copy_lab, [BlockToBlock(0, 1, 2048, 0, 0)], script=[
        ("write_blocks", 3, lambda m, receiving: lambda: m.copy_operation_abort(receiving, 5))])
    assert r["ended"][0] == "error" and r["transferred"] == 3 * DISK_STEP


def test_an_overlapping_copy_within_one_disk_reads_after_each_write(copy_lab):
    """Source and destination the same disk, the destination range starting inside the
    source range: each chunk is read after the write before it, as without read-ahead."""
    r = _same_with_and_without(copy_lab, [BlockToBlock(0, 0, 1024, 0, 100)], same=True)
    assert r["ended"] == ("ok", 0)


def test_the_end_of_the_medium_mid_copy_reports_the_same(copy_lab):
    """The cartridge fills up mid-segment: the records written before VOLUME OVERFLOW
    count, the copy stops, no reader is left, as without read-ahead."""
    r = _same_with_and_without(copy_lab, [BlockToStream(0, 1, 2048, 0, 64 * 1024)],
                               dst_kind="tape", capacity=400 * 1024)
    assert r["ended"][0] == "error" and 0 < r["transferred"] < MiB


def test_two_ports_onto_one_disk_count_as_one_device(copy_lab, tmp_path):
    """Two CSCDs may name one disk through ports of their own: overlapping ranges are
    read after each write there too; another disk is another device."""
    disk = copy_lab.disk("one")
    a, b = ScriptedEnd(disk), ScriptedEnd(disk)
    (tmp_path / "other.img").write_bytes(bytes(MiB))
    other = Disk(LunIdentity("other", "fedcba9876543210"), BackingStore(tmp_path / "other.img"))
    try:
        assert _same_device(a, b) and not _same_device(a, other)
    finally:
        other.close()


def test_a_rod_tokens_rod_is_read_when_taken(copy_lab):
    """A ROD token's ROD may be invalidated by the copy's own writes to its source: it
    is never read ahead; another source is."""
    manager = CopyManager(chunk=CHUNK, read_ahead=2)
    job = CopyJob("lun", 5, 0, 1, [])
    disk, other = copy_lab.disk("a"), copy_lab.disk("b")
    for source, threaded in ((RodSource.__new__(RodSource), False), (disk, True)):
        plan = _Plan(0, True, None, source, other, None, None)
        with manager._read_ahead(job, plan, [(0, 512)], 512, 0, 0, 512) as ahead:
            assert (ahead._thread is not None) == threaded


def test_a_copy_of_many_segments_reuses_its_buffers_and_digests_every_byte(copy_lab):
    """Each segment takes the previous one's staging and read-ahead buffers (once the
    digest has hashed what was in them); the digest is still that of the bytes moved,
    in order, and the buffers go with the copy's end."""
    import xxhash

    data = os.urandom(MiB)
    segments = [BlockToStream(0, 1, 256, lba, 64 * 1024) for lba in range(0, 2048, 256)]
    r = _copy(copy_lab, 2, segments, data=data, dst_kind="tape")
    assert r["ended"] == ("ok", 0) and r["segments"] == 8
    assert b"".join(r["bytes"]) == data
    assert r["digest"] == xxhash.xxh3_128(data).hexdigest()
    assert r["buffers kept"] == []


def test_a_job_hands_a_segment_the_last_ones_buffers_once_they_are_hashed():
    class Digest:
        def __init__(self):
            self.submitted, self.waited = 7, []

        def ticket(self) -> int:
            return self.submitted

        def wait(self, ticket: int) -> None:
            self.waited.append(ticket)

    job = CopyJob("lun", 5, 0, 1, [], digest=Digest())
    first = job.scratch("staging", 2, 4096)
    assert [len(v) for v in first] == [4096, 4096] and job.digest.waited == []
    again = job.scratch("staging", 2, 1024)  # smaller: the same memory, after the digest
    assert [v.obj for v in again] == [v.obj for v in first] and job.digest.waited == [7]
    assert [len(v) for v in again] == [1024, 1024]
    bigger = job.scratch("staging", 2, 8192)  # larger: new buffers, nothing to wait for
    assert all(v.obj is not w.obj for v, w in zip(bigger, first, strict=True))
    assert job.digest.waited == [7]
    other = job.scratch("read-ahead", 3, 1024)  # another use has buffers of its own
    assert {id(v.obj) for v in other}.isdisjoint({id(v.obj) for v in bigger})
