"""Copies with the bytes copied by the kernel (copy_file_range), disk to tape, disk to
disk, tape to disk and tape to tape: the same records, blocks, counts, digest, sense and
positions as the copy through the daemon's buffers, and back to the buffers wherever the
kernel does not copy."""

from __future__ import annotations

import logging
import os

import pytest
import xxhash
from plugins.copy_lab import cscd, read_file, report, tape_records, write

from lio_xcopy.copy import digest as copy_digest
from lio_xcopy.copy import manager as manager_module
from lio_xcopy.copy.digest import BackgroundDigest
from lio_xcopy.copy.manager import CopyManager
from lio_xcopy.devices import awstape as awstape_module
from lio_xcopy.devices import disk as disk_module
from lio_xcopy.devices import filecopy
from lio_xcopy.devices.awstape import AwsTape
from lio_xcopy.devices.base import Command
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.filecopy import FileData
from lio_xcopy.scsi import xcopy
from lio_xcopy.scsi.sense import Asc, SenseKey

BlockToStream, BlockToStreamHeld = xcopy.BlockToStream, xcopy.BlockToStreamHeld
BlockToBlock, BlockToBlockHeld = xcopy.BlockToBlock, xcopy.BlockToBlockHeld
StreamToBlock, StreamToStream = xcopy.StreamToBlock, xcopy.StreamToStream
BlockToStreamOffset, ListIdUsage = xcopy.BlockToStreamOffset, xcopy.ListIdUsage

MiB = 1 << 20
REC = 64 * 1024
CHUNK = 256 * 1024


def _spy(monkeypatch, name):
    """The last argument (a count of records) of each call of ``awstape.<name>``."""
    calls: list[int] = []
    real = getattr(awstape_module, name)

    def spy(*args):
        calls.append(args[-1])
        return real(*args)

    monkeypatch.setattr(awstape_module, name, spy)
    return calls


@pytest.fixture
def kernel_calls(monkeypatch):
    """The records the kernel copied into a cartridge, one count per copy."""
    return _spy(monkeypatch, "interleave")


def _copy(copy_lab, kernel, segments, *, data=b"", capacity=16 * MiB, before=(), fault=None,
          prepare=None, kind="disk-tape"):
    """One copy (``kind``: disk-tape, disk-disk or tape-disk, the tape holding ``before``
    first) with the kernel copying (or not); what it reports, and what the destination
    (and a tape) then holds."""
    tag = "k" if kernel else "b"
    if kind == "tape-disk":
        src = copy_lab.tape(f"tape{tag}", capacity)
        write(src, *before)
        src.rewind()
        dst = copy_lab.disk(f"dst{tag}", size=2 * MiB)
    else:
        src = copy_lab.disk(f"src{tag}", data=data)
        dst = copy_lab.disk(f"dst{tag}", size=MiB) if kind == "disk-disk" else \
            copy_lab.tape(f"tape{tag}", capacity)
        if kind == "disk-tape":
            write(dst, *before)
    if prepare is not None:
        prepare(src, dst)
    if fault is not None:
        fault(src, dst)
    manager = CopyManager(chunk=CHUNK, kernel_copy=kernel)
    disk = dst if kind == "tape-disk" else src
    for dev in (src, dst):
        manager.register(dev)
    plist = xcopy.build_extended_copy([cscd(src), cscd(dst)], segments, list_identifier=5,
                                      list_id_usage=ListIdUsage.HOLD)
    cdb = xcopy.ExtendedCopyLid1(parameter_list_length=len(plist)).encode()
    out = report(manager, disk, disk.handle(Command(cdb, DataBuffer.of(bytearray(plist)))))
    if fault is not None:
        fault.heal()
    tape = src if kind == "tape-disk" else dst
    if kind != "disk-tape":
        out["bytes"] = read_file(dst)
    if kind == "disk-disk":
        return out
    medium = tape.medium
    assert medium is not None
    out.update({"position": medium.position, "file size": os.path.getsize(medium.path)})
    if kind == "disk-tape":
        out["records"] = tape_records(tape)
    assert AwsTape.open_readonly(medium.path).damage is None
    return out


def _both(copy_lab, segments, **kw):
    """The copy through buffers and by the kernel report the same, and leave the same
    destination. A disk's blocks past the transfer count (from the copy's first block)
    may differ: a chunk the kernel began copying, then left to buffers, was written in
    part, as a failed WRITE may leave its blocks."""
    through_buffers = _copy(copy_lab, False, segments, **kw)
    by_kernel = _copy(copy_lab, True, segments, **kw)
    if "bytes" in by_kernel:
        first = getattr(segments[0], "destination_lba", getattr(segments[0], "lba", 0))
        end = first * 512 + by_kernel["transferred"]
        for r in (by_kernel, through_buffers):
            r["bytes"] = r["bytes"][:end]
    assert by_kernel == through_buffers
    return through_buffers


def test_a_plain_copy_is_the_same_and_the_kernel_copies_it(copy_lab, kernel_calls):
    data = os.urandom(MiB)
    r = _both(copy_lab, [BlockToStream(0, 1, 2048, 0, REC)], data=data)
    assert r["ended"] == ("ok", 0) and r["transferred"] == MiB
    assert r["records"] == [data[i : i + REC] for i in range(0, MiB, REC)]
    assert r["operations"] == 4 + 16  # a READ per chunk, a WRITE per record (SPC-4 6.24)
    assert kernel_calls == [16]  # the four chunks in one kernel call, none through a buffer


@pytest.mark.parametrize("segments", [
    pytest.param([BlockToStream(0, 1, 1000, 0, REC),
                  BlockToStream(0, 1, 900, 1000, REC, cat=True),  # the rest carried on
                  BlockToStream(0, 1, 148, 1900, REC),
                  BlockToStreamHeld(0, 1, 300, 3, 4096)], id="cat-and-held"),
    pytest.param([BlockToStreamOffset(0, 1, 700_001, 3, 17, REC, cat=True),
                  BlockToStream(0, 1, 600, 1400, 512)], id="byte-offset-then-small-records"),
    pytest.param([BlockToStream(0, 1, 2047, 0, 3 * 512)], id="records-that-do-not-divide-a-chunk"),
])
def test_segments_the_kernel_copies_in_part_are_the_same(copy_lab, segments):
    r = _both(copy_lab, segments, data=os.urandom(MiB))
    assert r["ended"] == ("ok", 0) and r["transferred"] > 0


def test_records_after_those_on_the_tape_chain_on_from_them(copy_lab, kernel_calls):
    """The first header's previous length is the last chunk's before it: a record, then
    a filemark, then a record written before the copy."""
    data, rec = os.urandom(MiB), 2 * REC  # three chunks a record: 65535, 65535, 2
    r = _both(copy_lab, [BlockToStream(0, 1, 1024, 0, rec)], data=data,
              before=(b"x" * 70_000, None, b"y" * 100))
    assert r["records"] == [b"x" * 70_000, None, b"y" * 100] + [
        data[i : i + rec] for i in range(0, 1024 * 512, rec)]
    assert kernel_calls == [4]


@pytest.mark.parametrize("chunks", [1, 2, 32], ids=lambda n: f"{n}-chunks-a-call")
def test_a_full_cartridge_counts_the_records_written_before_it(copy_lab, monkeypatch, chunks):
    """OPERATION COUNTER counts a READ per chunk however many the kernel copies at once."""
    monkeypatch.setattr(manager_module, "KERNEL_SPAN", chunks * CHUNK)
    r = _both(copy_lab, [BlockToStream(0, 1, 2048, 0, REC)], data=os.urandom(MiB),
              capacity=600 * 1024)
    assert r["ended"][:3] == ("error", SenseKey.COPY_ABORTED,
                              Asc.END_OF_PARTITION_MEDIUM_DETECTED)  # VOLUME OVERFLOW
    assert 0 < r["transferred"] < MiB and len(r["records"]) * REC == r["transferred"]


def test_a_source_read_error_is_reported_at_its_lba_as_through_buffers(copy_lab, faults,
                                                                        caplog):
    """The kernel's copy fails on the bad bytes; its chunks are read again through a
    buffer, whose READ reports the MEDIUM ERROR at the LBA, the chunks before on tape."""
    bad = 700 * 512

    def fault(src, _tape):
        faults.fail_read(src.store.path, at=bad, length=512)

    fault.heal = faults.heal
    with caplog.at_level(logging.INFO, logger="lio_xcopy.copy.manager"):
        r = _both(copy_lab, [BlockToStream(0, 1, 2048, 0, REC)], data=os.urandom(MiB),
                  fault=fault)
    assert r["ended"][:3] == ("error", SenseKey.COPY_ABORTED, Asc.UNRECOVERED_READ_ERROR)
    assert r["transferred"] == CHUNK  # the chunk before the bad one
    assert "copied through the daemon from byte 0 on" in caplog.text  # one kernel call


def test_a_tape_write_error_is_reported_as_through_buffers(copy_lab, faults):
    def fault(_src, tape):
        faults.fail_write(tape.medium.path, at=300 * 1024)

    fault.heal = faults.heal
    r = _both(copy_lab, [BlockToStream(0, 1, 2048, 0, REC)], data=os.urandom(MiB),
              fault=fault)
    assert r["ended"][:3] == ("error", SenseKey.COPY_ABORTED, Asc.WRITE_ERROR)


def test_a_disk_on_a_block_device_is_copied_through_buffers(copy_lab, kernel_calls):
    def on_a_block_device(src, _tape):
        src.store.block_device = True

    r = _both(copy_lab, [BlockToStream(0, 1, 2048, 0, REC)], data=os.urandom(MiB),
              prepare=on_a_block_device)
    assert r["ended"] == ("ok", 0) and kernel_calls == []


def test_records_of_more_than_64_chunks_are_the_same(copy_lab, kernel_calls):
    """A record of 4 MiB + 512 bytes is 65 AWSTAPE chunks (of 65535 bytes at most)."""
    big = 4 * MiB + 512
    data = os.urandom(2 * big)
    r = _both(copy_lab, [BlockToStream(0, 1, 2 * big // 512, 0, big)], data=data)
    assert r["ended"] == ("ok", 0) and r["records"] == [data[:big], data[big:]]
    assert sum(kernel_calls) == 2


def test_a_cartridge_that_cannot_be_mapped_is_digested_from_a_read(copy_lab, monkeypatch):
    def unmappable(*_args):
        raise OSError(19, "No such device")

    data = os.urandom(MiB)
    with_map = _copy(copy_lab, True, [BlockToStream(0, 1, 2048, 0, REC)], data=data)
    monkeypatch.setattr(filecopy, "mapped", unmappable)
    compiled = filecopy.compiled_helpers()
    if compiled is not None:  # its mappings fail too
        monkeypatch.setattr(compiled, "hash_file", unmappable)
        monkeypatch.setattr(compiled, "hash_mapped", unmappable)
    assert _copy(copy_lab, True, [BlockToStream(0, 1, 2048, 0, REC)], data=data) == with_map


# --- the layout itself ---------------------------------------------------------------------

class _File:
    def __init__(self, path):
        self.fd = os.open(path, os.O_RDONLY)

    def file_range(self, pos, _n):
        return self.fd, pos


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
@pytest.mark.parametrize("length", [1, 511, 512, 4096, 65535, 65536, 131070, 200_000,
                                    4_200_000])  # 65 chunks
def test_records_laid_by_the_kernel_are_those_a_write_lays(tmp_path, monkeypatch, compiled,
                                                          length):
    if compiled and filecopy.compiled_interleave() is None:
        pytest.skip("lio_xcopy.devices._filecopy is not built")
    if not compiled:
        monkeypatch.setattr(filecopy, "compiled_helpers", lambda: None)
    count = 3
    data = os.urandom(length * count + 7)
    (tmp_path / "src").write_bytes(data)
    src = _File(tmp_path / "src")
    ours, theirs = AwsTape(tmp_path / "k.aws", 1 << 24), AwsTape(tmp_path / "b.aws", 1 << 24)
    for t in (ours, theirs):
        t.write_record(DataBuffer.of(bytearray(b"z" * 70_000)), 0, 70_000)
        t.write_filemarks(1)
    ours.write_records_from(src, 7, length, count)
    theirs.write_record(DataBuffer.of(bytearray(data[7:])), 0, length, count)
    for t in (ours, theirs):
        t.close()
    assert (tmp_path / "k.aws").read_bytes() == (tmp_path / "b.aws").read_bytes()
    again = AwsTape.open_readonly(tmp_path / "k.aws")
    assert again.damage is None and again.dump_records()[2:] == [
        data[7 + i * length : 7 + (i + 1) * length] for i in range(count)]
    os.close(src.fd)


def test_a_kernel_copy_that_fails_leaves_the_tape_ending_at_the_position(tmp_path):
    """What followed the position is cut off, as a write cuts it; nothing of the
    records stays, and the tape reads back whole."""
    (tmp_path / "src").write_bytes(os.urandom(100_000))
    src = _File(tmp_path / "src")
    t = AwsTape(tmp_path / "t.aws", 1 << 24)
    for rec in (b"a" * 1000, b"b" * 2000, b"c" * 3000):
        t.write_record(DataBuffer.of(bytearray(rec)), 0, len(rec))
    t.locate(1)
    with pytest.raises(filecopy.KernelCopyFailed):
        t.write_records_from(src, 50_000, 40_000, 2)  # the source ends inside the 2nd
    assert (t.position, t.objects, t.offset) == (1, 1, 1006)
    t.close()
    again = AwsTape.open_readonly(tmp_path / "t.aws")
    assert again.damage is None and again.dump_records() == [b"a" * 1000]
    os.close(src.fd)


# --- the digest of data as a file holds it ------------------------------------------------

@pytest.fixture(params=["compiled", "python"])
def helpers(request, monkeypatch):
    """The compiled file helpers (their XXH3-128 hashing mapped data at once), or none."""
    if request.param == "compiled":
        if filecopy.compiled_helpers() is None:
            pytest.skip("lio_xcopy.devices._filecopy is not built")
    else:
        monkeypatch.setattr(filecopy, "compiled_helpers", lambda: None)
    return request.param


def test_the_compiled_xxh3_128_is_the_xxhash_packages():
    if filecopy.xxh3_128() is None:
        pytest.skip("lio_xcopy.devices._filecopy is not built")
    data = os.urandom(3 * MiB)
    ours = filecopy.xxh3_128()
    at = 0
    for n in (0, 1, 4095, 4096, 4097, 65_535, 1, MiB, 17):  # each side of the GIL's limit
        ours.update(memoryview(data)[at : at + n])
        at += n
    ours.update(data[at:])
    assert ours.digest() == xxhash.xxh3_128(data).digest()
    assert ours.hexdigest() == xxhash.xxh3_128(data).hexdigest()
    assert copy_digest.new(xcopy.DigestAlgorithm.XXH3_128).__class__ is type(ours)


@pytest.mark.parametrize("length", [1, 4096, REC, 200_000])
def test_records_are_digested_as_the_file_holds_them(tmp_path, helpers, length):
    t = AwsTape(tmp_path / "t.aws", 1 << 24)
    t.write_record(DataBuffer.of(bytearray(b"z" * 100)), 0, 100)
    start = t.offset
    data = os.urandom(length * 5)
    t.write_record(DataBuffer.of(bytearray(data)), 0, length, 5)
    for algorithm in xcopy.DigestAlgorithm:
        digest = BackgroundDigest(algorithm)
        digest.update_file(t.records_at(start, length, 5, check=True))
        want = copy_digest.new(algorithm)
        want.update(data)
        assert digest.digest() == want.digest()
    blocks = FileData.span(os.open(t.path, os.O_RDONLY), 0, 100)
    digest = BackgroundDigest()
    digest.update_file(blocks)
    assert digest.digest() == xxhash.xxh3_128((tmp_path / "t.aws").read_bytes()[:100]).digest()
    os.close(blocks.fd)
    t.close()


def test_a_header_that_differs_is_found_before_anything_is_hashed(tmp_path, helpers):
    """Only the layout's fields are compared: a first header's previous length (which
    depends on what came before) is not."""
    t = AwsTape(tmp_path / "t.aws", 1 << 24)
    t.write_record(DataBuffer.of(bytearray(b"z" * 100)), 0, 100)
    start = t.offset
    t.write_record(DataBuffer.of(bytearray(os.urandom(4 * REC))), 0, REC, 4)
    empty = BackgroundDigest().digest()
    second = start + awstape_module.footprint(REC)
    with open(t.path, "r+b") as f:  # the second record's last chunk: flags1 ENDREC off
        f.seek(second + awstape_module.HEADER_LEN + 65535 + 4)
        f.write(b"\x00")
    for check, raises in ((True, True), (False, False)):
        digest = BackgroundDigest()
        data = t.records_at(start, REC, 4, check=check)
        if raises:
            with pytest.raises(filecopy.KernelCopyFailed, match="chunk 3 "):
                digest.update_file(data)
            with pytest.raises(filecopy.KernelCopyFailed):
                data.check()
            assert digest.digest() == empty  # nothing of it hashed
        else:
            digest.update_file(data)
            assert digest.digest() != empty
    t.close()


# --- disk to disk --------------------------------------------------------------------------

@pytest.fixture
def disk_calls(monkeypatch):
    """The ranges the kernel copied into a disk, one (offset, bytes) per copy."""
    calls: list[tuple[int, int]] = []
    real = disk_module.copy_range

    def spy(src_fd, src_offset, dst_fd, dst_offset, n):
        calls.append((dst_offset, n))
        return real(src_fd, src_offset, dst_fd, dst_offset, n)

    monkeypatch.setattr(disk_module, "copy_range", spy)
    return calls


def test_disk_to_disk_is_the_same_and_the_kernel_copies_it(copy_lab, disk_calls):
    data = os.urandom(MiB)
    r = _both(copy_lab, [BlockToBlock(0, 1, 2000, 10, 20)], data=data, kind="disk-disk")
    assert r["ended"] == ("ok", 0) and r["transferred"] == 2000 * 512
    assert r["bytes"][20 * 512 : 2020 * 512] == data[10 * 512 : 2010 * 512]
    assert r["bytes"][: 20 * 512] == bytes(20 * 512)
    assert r["operations"] == 2 * 4  # a READ and a WRITE per chunk (SPC-4 6.24)
    assert disk_calls == [(20 * 512 + i * CHUNK, min(CHUNK, 2000 * 512 - i * CHUNK))
                          for i in range(4)]


def test_held_data_is_read_through_a_buffer(copy_lab, disk_calls):
    r = _both(copy_lab, [BlockToBlockHeld(0, 1, 500, 1, 1000)], data=os.urandom(MiB),
              kind="disk-disk")
    assert r["ended"] == ("ok", 0) and len(r["held"]) == 500 * 512 and disk_calls == []


def test_one_disk_copied_onto_itself_in_overlapping_ranges_is_read_after_each_write(
        copy_lab, disk_calls):
    """Source and destination the same disk, overlapping: each chunk is read after the
    write before it, through buffers, so later chunks copy what earlier ones wrote; in
    ranges apart, the kernel copies."""
    data = os.urandom(MiB)
    got = []
    for kernel in (False, True):
        disk = copy_lab.disk(f"one{kernel}", data=data)
        for segment, by_kernel in ((BlockToBlock(0, 0, 1024, 0, 100), False),
                                   (BlockToBlock(0, 0, 100, 0, 1500), kernel)):
            disk_calls.clear()
            manager = CopyManager(chunk=CHUNK, kernel_copy=kernel)
            manager.register(disk)
            plist = xcopy.build_extended_copy([cscd(disk)], [segment], list_identifier=5,
                                              list_id_usage=ListIdUsage.HOLD)
            cdb = xcopy.ExtendedCopyLid1(parameter_list_length=len(plist)).encode()
            assert report(manager, disk, disk.handle(Command(cdb, DataBuffer.of(
                bytearray(plist)))))["ended"] == ("ok", 0)
            assert bool(disk_calls) is by_kernel
        got.append(read_file(disk))
    assert got[0] == got[1]
    assert got[0][100 * 512 : 1124 * 512] != data[: 1024 * 512]  # chunks read after writes
    assert got[0][1500 * 512 : 1600 * 512] == data[: 100 * 512]


@pytest.mark.parametrize("where", ["source", "destination"])
def test_a_disk_error_is_reported_at_its_lba_as_through_buffers(copy_lab, faults, where):
    def fault(src, dst):
        if where == "source":
            faults.fail_read(src.store.path, at=700 * 512, length=512)
        else:
            faults.fail_write(dst.store.path, at=900 * 512)

    fault.heal = faults.heal
    r = _both(copy_lab, [BlockToBlock(0, 1, 2048, 0, 0)], data=os.urandom(MiB), fault=fault,
              kind="disk-disk")
    asc = Asc.UNRECOVERED_READ_ERROR if where == "source" else Asc.WRITE_ERROR
    assert r["ended"][:3] == ("error", SenseKey.COPY_ABORTED, asc)


def test_a_destination_without_write_cache_syncs_each_chunk_as_through_buffers(copy_lab,
                                                                               faults):
    """WCE off: each chunk is durable before it counts; a failing sync ends the copy
    with the destination's WRITE ERROR, as the buffered path's RWF_DSYNC write does."""
    def fault(_src, dst):
        dst.write_cache = False
        faults.fail_sync(dst.store.path)

    fault.heal = faults.heal
    r = _both(copy_lab, [BlockToBlock(0, 1, 2048, 0, 0)], data=os.urandom(MiB), fault=fault,
              kind="disk-disk")
    assert r["ended"][:3] == ("error", SenseKey.COPY_ABORTED, Asc.WRITE_ERROR)


# --- tape to disk --------------------------------------------------------------------------

@pytest.fixture
def tape_calls(monkeypatch):
    """The records the kernel copied out of a cartridge, one count per copy."""
    return _spy(monkeypatch, "deinterleave")


def _records(data, size=REC):
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_tape_to_disk_is_the_same_and_the_kernel_copies_it(copy_lab, tape_calls):
    data = os.urandom(MiB)
    r = _both(copy_lab, [StreamToBlock(0, 1, 2048, 16, REC)], before=_records(data),
              kind="tape-disk")
    assert r["ended"] == ("ok", 0) and r["transferred"] == MiB and r["position"] == 16
    assert r["bytes"][16 * 512 : 16 * 512 + MiB] == data
    assert r["operations"] == 16 + 4  # a READ per record, a WRITE per chunk (SPC-4 6.24)
    assert tape_calls == [4] * 4


@pytest.mark.parametrize(("objects", "ended", "transferred", "position"), [
    pytest.param(lambda d: [*_records(d[: 5 * REC]), d[5 * REC : 5 * REC + 1000],
                            *_records(d[5 * REC + 1000 :])], None, MiB, 17,
                 id="a-short-record-midway"),
    pytest.param(lambda d: [*_records(d[: 9 * REC]), None, *_records(d[9 * REC :])],
                 Asc.COPY_TARGET_DEVICE_DATA_UNDERRUN, 9 * REC, 10, id="a-filemark-midway"),
    pytest.param(lambda d: _records(d[: 3 * REC], 2 * REC) + _records(d[3 * REC :]),
                 Asc.UNEXPECTED_INEXACT_SEGMENT, 0, 1, id="records-of-another-length-first"),
])
def test_records_the_kernel_does_not_copy_are_read_as_through_buffers(
        copy_lab, objects, ended, transferred, position):
    """Where a flush's records are not all of the segment's length, that flush and the
    rest are read through buffers: a short record is taken as it comes (variable mode),
    a filemark is COPY TARGET DEVICE DATA UNDERRUN, a longer record an inexact segment."""
    r = _both(copy_lab, [StreamToBlock(0, 1, 2048, 0, REC)], before=objects(os.urandom(MiB)),
              kind="tape-disk")
    assert (r["ended"][2] if ended else r["ended"]) == (ended or ("ok", 0))
    assert (r["transferred"], r["position"]) == (transferred, position)


def test_a_record_chunked_otherwise_is_read_through_buffers(copy_lab, tape_calls, monkeypatch):
    """A cartridge written by another tool may cut a 64 KiB record into other chunks: the
    kernel's copy is checked against the headers and the flush read again."""
    data = os.urandom(MiB)
    ours = awstape_module._chunk_lengths

    def theirs(n):
        return [n // 2, n - n // 2] if n == REC else ours(n)

    got = []
    for kernel in (False, True):
        monkeypatch.setattr(awstape_module, "_chunk_lengths", theirs)  # while it is written
        got.append(_copy(copy_lab, kernel, [StreamToBlock(0, 1, 2048, 0, REC)],
                         before=_records(data), kind="tape-disk",
                         prepare=lambda *_: monkeypatch.setattr(
                             awstape_module, "_chunk_lengths", ours)))
    assert got[0] == got[1]
    assert got[1]["ended"] == ("ok", 0) and got[1]["bytes"][:MiB] == data
    assert tape_calls  # the kernel copied, the check sent it back


def _rechunk(tape, n, data):
    """Record ``n`` (of 64 KiB records from BOT) cut into two equal chunks where a write
    cuts it 65535 + 1, as another tool may have written it: the same footprint."""
    hl, half = awstape_module.HEADER_LEN, REC // 2
    head = awstape_module.HEADER
    at = n * awstape_module.footprint(REC)
    with open(tape.medium.path, "r+b") as f:
        f.seek(at)
        prev = head.unpack(f.read(hl))[1]
        f.seek(at)
        f.write(head.pack(half, prev, awstape_module._chunk_flags(0, 2), 0) + data[:half]
                + head.pack(half, half, awstape_module._chunk_flags(1, 2), 0) + data[half:])
        following = f.read(hl)
        if len(following) == hl:  # the next header's previous length is this chunk's
            cur, _, flags1, flags2 = head.unpack(following)
            f.seek(-hl, os.SEEK_CUR)
            f.write(head.pack(cur, half, flags1, flags2))


@pytest.mark.parametrize("n", [0, 2, 3])
def test_a_record_chunked_otherwise_after_others_is_read_through_buffers(
        copy_lab, tape_calls, n):
    """The records before it in the kernel's call are not taken either: the flush is
    read again through buffers, and each byte hashed once."""
    data = os.urandom(MiB)
    r = _both(copy_lab, [StreamToBlock(0, 1, 2048, 0, REC)], before=_records(data),
              kind="tape-disk", prepare=lambda src, _: _rechunk(src, n, _records(data)[n]))
    assert r["ended"] == ("ok", 0) and r["bytes"][:MiB] == data
    assert r["digest"] == xxhash.xxh3_128(data).hexdigest()
    assert len(tape_calls) == 1  # copied, checked, undone


@pytest.mark.parametrize("n", [0, 2, 5])
def test_tape_to_tape_with_a_record_chunked_otherwise_after_others_undoes_them(
        copy_lab, monkeypatch, n):
    copied = _spy(monkeypatch, "copy_range")
    data = os.urandom(8 * REC)
    runs = [_tape_to_tape(copy_lab, kernel, _records(data), 1 << 24, len(data),
                          before_copy=lambda a: _rechunk(a, n, _records(data)[n]))
            for kernel in (False, True)]
    per_batch = CHUNK // REC  # records the copy manager hands the kernel at once
    assert runs[0] == runs[1]
    assert len(copied) == n // per_batch + 1  # the batch with it copied, then undone
    assert runs[1]["records"] == _records(data) and runs[1]["ended"] == ("ok", 0)
    assert runs[1]["digest"] == xxhash.xxh3_128(data).hexdigest()


@pytest.mark.parametrize("where", ["tape", "disk", "disk-sync"])
def test_a_tape_to_disk_error_is_reported_as_through_buffers(copy_lab, faults, where):
    def fault(src, dst):
        if where == "tape":
            faults.fail_read(src.medium.path, at=5 * REC)
        elif where == "disk":
            faults.fail_write(dst.store.path, at=600 * 1024)
        else:
            dst.write_cache = False
            faults.fail_sync(dst.store.path)

    fault.heal = faults.heal
    r = _both(copy_lab, [StreamToBlock(0, 1, 2048, 0, REC)],
              before=_records(os.urandom(MiB)), kind="tape-disk", fault=fault)
    asc = Asc.UNRECOVERED_READ_ERROR if where == "tape" else Asc.WRITE_ERROR
    assert r["ended"][:3] == ("error", SenseKey.COPY_ABORTED, asc)


# --- tape to tape --------------------------------------------------------------------------

def _tape_to_tape(copy_lab, kernel, objects, capacity, count, on_b=(), before_copy=None,
                  batch=CHUNK):
    """A 06h copy of ``count`` bytes in 64 KiB records from a tape holding ``objects``
    to a new one of ``capacity`` (holding ``on_b``), the kernel given ``batch`` bytes of
    records at a time: the report, both positions and the records there."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(manager_module, "KERNEL_SPAN", batch)
        return _tape_to_tape_now(copy_lab, kernel, objects, capacity, count, on_b,
                                 before_copy)


def _tape_to_tape_now(copy_lab, kernel, objects, capacity, count, on_b, before_copy):
    tag = "k" if kernel else "b"
    a, b = copy_lab.tape(f"tt-a{tag}"), copy_lab.tape(f"tt-b{tag}", capacity=capacity)
    write(a, *objects)
    write(b, *on_b)
    a.rewind()
    if before_copy is not None:
        before_copy(a)
    manager = CopyManager(chunk=CHUNK, kernel_copy=kernel)
    for dev in (a, b):
        manager.register(dev)
    plist = xcopy.build_extended_copy([cscd(a), cscd(b)], [StreamToStream(0, 1, count, REC,
                                                                          REC)],
                                      list_identifier=5, list_id_usage=ListIdUsage.HOLD)
    cdb = xcopy.ExtendedCopyLid1(parameter_list_length=len(plist)).encode()
    out = report(manager, a, a.handle(Command(cdb, DataBuffer.of(bytearray(plist)))))
    out.update({"source position": a.medium.position, "position": b.medium.position,
                "records": tape_records(b)})
    assert AwsTape.open_readonly(b.medium.path).damage is None
    return out


@pytest.mark.parametrize(("records", "capacity_records", "tail"), [
    (40, 64, []),  # all of it
    (40, 10, []),  # the destination fills in the third batch
    (40, 17, []),  # ... in the fifth
    (9, 64, [None, os.urandom(REC)]),  # a filemark in the third batch: DATA UNDERRUN
    (12, 64, [b"s" * 1000, os.urandom(REC)]),  # a short record ends the third batch
])
def test_tape_to_tape_is_the_same_and_the_kernel_copies_it(copy_lab, monkeypatch, records,
                                                            capacity_records, tail):
    copied = _spy(monkeypatch, "copy_range")  # bytes of each region of records copied
    data = os.urandom(records * REC)
    objects = [*_records(data), *tail]
    count = len(data) + sum(len(t) for t in tail if t) + (REC if tail else 0)
    capacity = capacity_records * awstape_module.footprint(REC) + 10
    want = _tape_to_tape(copy_lab, False, objects, capacity, count)
    got = _tape_to_tape(copy_lab, True, objects, capacity, count)
    assert got == want
    assert want["records"][: min(records, capacity_records)] == _records(data)[
        : min(records, capacity_records)]
    assert copied and all(n % awstape_module.footprint(REC) == 0 for n in copied)


def test_tape_to_tape_hands_the_kernel_up_to_its_span_at_once(copy_lab, monkeypatch):
    """One kernel call per KERNEL_SPAN (8 MiB) of records, whatever the segment's
    chunk (1 MiB here)."""
    copied = _spy(monkeypatch, "copy_range")
    data = os.urandom(40 * REC)
    runs = [_tape_to_tape(copy_lab, kernel, _records(data), 1 << 24, len(data),
                          batch=manager_module.KERNEL_SPAN) for kernel in (False, True)]
    assert runs[0] == runs[1] and runs[1]["records"] == _records(data)
    each = awstape_module.footprint(REC)
    assert copied == [40 * each]


def test_tape_to_tape_after_records_on_the_destination_chains_on_from_them(copy_lab,
                                                                           monkeypatch):
    """The first header copied carries the destination's previous length, not the
    source's: a filemark and a 100-byte record already there."""
    copied = _spy(monkeypatch, "copy_range")
    data = os.urandom(8 * REC)
    runs = [_tape_to_tape(copy_lab, kernel, _records(data), 1 << 24, len(data),
                          on_b=(None, b"y" * 100)) for kernel in (False, True)]
    assert runs[0] == runs[1] and copied
    assert runs[1]["records"] == [None, b"y" * 100, *_records(data)]


def test_tape_to_tape_from_records_chunked_otherwise_is_read_through_buffers(copy_lab,
                                                                            monkeypatch):
    data = os.urandom(8 * REC)
    ours = awstape_module._chunk_lengths
    copied = _spy(monkeypatch, "copy_range")
    runs = []
    for kernel in (False, True):
        monkeypatch.setattr(awstape_module, "_chunk_lengths",
                            lambda n: [n // 2, n - n // 2] if n == REC else ours(n))
        runs.append(_tape_to_tape(
            copy_lab, kernel, _records(data), 1 << 24, len(data),
            before_copy=lambda _: monkeypatch.setattr(awstape_module, "_chunk_lengths", ours)))
    assert runs[0] == runs[1] and copied  # copied, checked, undone, read again
    assert runs[1]["records"] == _records(data) and runs[1]["ended"] == ("ok", 0)
