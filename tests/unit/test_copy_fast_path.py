"""The copy's data path: records written and read many to a vector call, the digest
taken behind the copy, and the same bytes, counts and sense as one command per record."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest
import xxhash
from plugins.copy_lab import aborted, run, tape_records, write

from lio_xcopy.copy import digest as digest_module
from lio_xcopy.copy.digest import BackgroundDigest
from lio_xcopy.devices.awstape import AwsTape, Kind, footprint
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.scsi import ssc, xcopy
from lio_xcopy.scsi.sense import Asc, SenseKey
from lio_xcopy.scsi.xcopy import DigestAlgorithm

BlockToBlock, BlockToStream, StreamToBlock = xcopy.BlockToBlock, xcopy.BlockToStream, \
    xcopy.StreamToBlock
StreamToStream, ListIdUsage = xcopy.StreamToStream, xcopy.ListIdUsage

MiB = 1 << 20
REC = 65536


@pytest.fixture
def lab(copy_lab):
    copy_lab.manager.chunk = MiB
    return copy_lab


def _status(manager, lun, list_id):
    return xcopy.CopyStatusLid4.parse(manager.receive_copy_results(
        lun, xcopy.ReceiveCopyStatusLid4(list_identifier=list_id)))


def test_disk_to_tape_writes_a_chunk_of_records_in_one_pwritev(lab, monkeypatch):
    data = os.urandom(2 * MiB)
    src, t = lab.disk("src", data=data), lab.tape("t0")
    lab.manager.kernel_copy = False  # through a buffer, as with a disk on a block device
    calls = []
    real = os.pwritev

    def counting(fd, views, offset, *flags):
        calls.append(len(views))
        return real(fd, views, offset, *flags)

    monkeypatch.setattr(os, "pwritev", counting)
    run(lab.manager, src, [(src, {}), (t, {})], [BlockToStream(0, 1, 4096, 0, REC)],
        list_id_usage=ListIdUsage.HOLD, list_identifier=3)
    monkeypatch.undo()
    assert calls == [64, 64]  # 16 records of 2 chunks (header + data) per 1 MiB chunk
    assert tape_records(t) == [data[i : i + REC] for i in range(0, len(data), REC)]
    # OPERATION COUNTER (SPC-4 6.24): 2 READs of the disk, one WRITE per record
    assert _status(lab.manager, src, 3).operation_counter == 2 + 32


def test_tape_to_disk_reads_equal_records_in_one_preadv(lab, monkeypatch):
    data = os.urandom(MiB)
    t, dst = lab.tape("t0"), lab.disk("dst")
    lab.manager.kernel_copy = False  # through a buffer, as with a disk on a block device
    write(t, *(data[i : i + REC] for i in range(0, len(data), REC)))
    t.rewind()
    calls = []
    real = os.preadv

    def counting(fd, views, offset):
        calls.append(len(views))
        return real(fd, views, offset)

    monkeypatch.setattr(os, "preadv", counting)
    run(lab.manager, dst, [(t, {}), (dst, {})], [StreamToBlock(0, 1, 2048, 0, REC)],
        list_id_usage=ListIdUsage.HOLD, list_identifier=4)
    monkeypatch.undo()
    assert calls == [64]
    with open(dst.store.path, "rb") as f:
        assert f.read(len(data)) == data
    assert _status(lab.manager, dst, 4).operation_counter == 16 + 1  # 16 READs, 1 WRITE


def test_a_batched_read_stops_at_a_short_record_and_a_filemark(lab):
    """Tape to tape: whole 64 KiB records batched, the short record read alone (a
    variable-mode READ that ends GOOD), then the filemark: COPY TARGET DEVICE DATA
    UNDERRUN, with every whole 64 KiB destination record written and counted (the
    rest never made a WRITE), as with one READ per record."""
    a, b = lab.tape("a"), lab.tape("b")
    recs = [os.urandom(REC) for _ in range(5)] + [os.urandom(1000)] + \
        [os.urandom(REC) for _ in range(3)]
    write(a, *recs, None, os.urandom(REC))
    a.rewind()
    total = sum(len(r) for r in recs)
    with pytest.raises(Exception) as e:
        run(lab.manager, a, [(a, {}), (b, {})],
            [StreamToStream(0, 1, total + REC, REC, REC)], list_id_usage=ListIdUsage.HOLD,
            list_identifier=9)
    aborted(e, Asc.COPY_TARGET_DEVICE_DATA_UNDERRUN, 0)
    assert e.value.cause.filemark
    got = tape_records(b)
    assert got == [b"".join(recs)[i : i + REC] for i in range(0, total // REC * REC, REC)]
    assert _status(lab.manager, a, 9).transfer_count == total // REC * REC
    assert a.medium.position == len(recs) + 1  # just past the filemark


def test_a_fixed_record_batch_running_out_of_tape_counts_the_records_written(lab):
    """VOLUME OVERFLOW in a batch of WRITEs of 4 fixed 64 KiB blocks: the blocks that
    fit are on tape and counted, the sense is that of the block that did not fit, and
    the OPERATION COUNTER counts the WRITEs that ended GOOD (SPC-4 6.24)."""
    data = os.urandom(2 * MiB)
    src, t = lab.disk("src", data=data), lab.tape("t0", capacity=20 * footprint(REC))
    with pytest.raises(Exception) as e:
        run(lab.manager, src, [(src, {}), (t, {"block_length": REC, "fixed": True})],
            [BlockToStream(0, 1, 4096, 0, 4)], list_id_usage=ListIdUsage.HOLD,
            list_identifier=2)
    aborted(e, Asc.END_OF_PARTITION_MEDIUM_DETECTED, 0)
    assert (e.value.cause.key, e.value.cause.information) == (SenseKey.VOLUME_OVERFLOW, REC)
    assert tape_records(t) == [data[i : i + REC] for i in range(0, 20 * REC, REC)]
    st = _status(lab.manager, src, 2)
    assert (st.transfer_count, st.operation_counter) == (20 * REC, 2 + 5)  # READs, WRITEs


def test_write_records_writes_what_fits_then_volume_overflow(lab):
    t = lab.tape("t0", capacity=3 * footprint(1000) + 10)
    buf = DataBuffer.of(bytearray(os.urandom(5000)))
    with pytest.raises(ssc.VolumeOverflow) as e:
        t.write_records(buf, 1000, 5)
    assert (e.value.sense.information, e.value.transferred) == (1000, 3000)
    assert tape_records(t) == [buf.tobytes()[i : i + 1000] for i in range(0, 3000, 1000)]


def test_read_records_into_stops_before_another_object(tmp_path):
    tape = AwsTape(tmp_path / "t.aws", 16 * MiB)
    recs = [os.urandom(100) for _ in range(3)]
    for r in recs:
        tape.write_record(DataBuffer.of(r), 0, 100)
    tape.write_record(DataBuffer.of(b"x" * 99), 0, 99)
    tape.write_filemarks(1)
    tape.rewind()
    buf = DataBuffer.allocate(1000)
    assert tape.read_records_into(buf, 100, 10) == 3
    assert buf.tobytes(300) == b"".join(recs) and tape.position == 3
    assert tape.read_records_into(buf, 100, 10) == 0 and tape.position == 3
    assert tape.read_record_into(buf, 100) == (99, Kind.DATA)
    assert tape.read_records_into(buf, 99, 10) == 0 and tape.position == 4  # the filemark
    tape.close()


class _SlowHash:
    """A digest that takes its time, so a copy that wrote into a buffer before it was
    hashed would get another digest."""

    def __init__(self, h) -> None:
        self._h = h

    def update(self, data) -> None:
        time.sleep(0.002)
        self._h.update(data)

    def digest(self) -> bytes:
        return self._h.digest()


@pytest.mark.parametrize("way", ["disk-tape", "tape-disk", "disk-disk", "tape-tape"])
def test_the_digest_behind_the_copy_covers_the_bytes_moved(lab, monkeypatch, way):
    lab.manager.chunk = 256 * 1024  # many buffer turns
    new = digest_module.new
    monkeypatch.setattr(digest_module, "new", lambda algorithm: _SlowHash(new(algorithm)))
    data = os.urandom(3 * MiB)
    blocks = len(data) // 512
    if way.startswith("disk"):
        src = lab.disk("src", data=data)
    else:
        src = lab.tape("src")
        write(src, *(data[i : i + REC] for i in range(0, len(data), REC)))
        src.rewind()
    dst = lab.disk("dst") if way.endswith("disk") else lab.tape("dst")
    seg = {"disk-tape": BlockToStream(0, 1, blocks, 0, REC),
           "tape-disk": StreamToBlock(0, 1, blocks, 0, REC),
           "disk-disk": BlockToBlock(0, 1, blocks, 0, 0),
           "tape-tape": StreamToStream(0, 1, len(data), REC, REC)}[way]
    run(lab.manager, src, [(src, {}), (dst, {})], [seg], list_identifier=7,
        list_id_usage=ListIdUsage.HOLD)
    job = next(j for j in lab.manager.jobs() if j.list_id == 7)
    assert job.digest.algorithm is DigestAlgorithm.XXH3_128  # the default
    assert job.digest.digest() == xxhash.xxh3_128(data).digest()


HASHES = {"sha256": hashlib.sha256, "xxh3-128": xxhash.xxh3_128}


@pytest.mark.parametrize("algorithm", sorted(HASHES))
def test_background_digest_hashes_in_order_and_its_thread_ends_when_idle(monkeypatch,
                                                                         algorithm):
    monkeypatch.setattr(digest_module, "IDLE_SECONDS", 0.05)
    d = BackgroundDigest(algorithm)
    assert d.name == algorithm and d.algorithm.label == algorithm
    parts = [os.urandom(n) for n in (10, 100_000, 5, 300_000, 20_000)]
    for p in parts:
        d.update(memoryview(p))
    want = HASHES[algorithm]
    assert d.digest() == want(b"".join(parts)).digest()
    deadline = time.monotonic() + 5
    while any(t.name == "copy-digest" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the idle digest thread did not end"
        time.sleep(0.01)
    d.update(b"more" * 10_000)  # a new thread takes over
    assert d.digest() == want(b"".join(parts) + b"more" * 10_000).digest()


def _tape_to_tape(lab, name, manager, recs, tail, capacity, **seg):
    """A 06h copy of ``recs`` (then ``tail``: records or filemarks) from a new tape to one
    of ``capacity``: the exception it ended with (None), the destination's records, the
    source's position, and COPY STATUS."""
    from lio_xcopy.copy.manager import CopyAborted

    a, b = lab.tape(f"{name}-a"), lab.tape(f"{name}-b", capacity=capacity)
    write(a, *recs, *tail)
    a.rewind()
    error = None
    try:
        run(manager, a, [(a, {}), (b, {})], [StreamToStream(0, 1, seg.get(
            "count", sum(map(len, recs))), REC, REC)], list_id_usage=ListIdUsage.HOLD,
            list_identifier=3)
    except CopyAborted as e:
        error = (e.sense.asc, e.sense.command_specific, getattr(e.cause, "key", None),
                 getattr(e.cause, "filemark", None))
    st = _status(manager, a, 3)
    return error, tape_records(b), a.medium.position, (st.transfer_count,
                                                       st.operation_counter)


@pytest.mark.parametrize(("records", "capacity_records", "tail"), [
    (40, 64, []),  # all of it
    (40, 10, []),  # the destination fills in the third batch
    (40, 17, []),  # ... in the fifth
    (9, 64, [None, REC]),  # a filemark in the second batch: DATA UNDERRUN
    (12, 64, [1000, REC]),  # a short record ends the third batch
])
def test_tape_to_tape_read_ahead_ends_where_reading_record_by_record_does(
        lab, monkeypatch, records, capacity_records, tail):
    """Tape to tape, the source read ahead in batches of 4 records on a thread while
    the batch before is written: the destination's records, the sense a copy ends with,
    COPY STATUS and the source's position are those of the same copy read without
    read-ahead. A copy the destination stops spaces the source back over the records
    read ahead and not written (SSC-4 SPACE)."""
    from lio_xcopy.copy.manager import CopyManager
    from lio_xcopy.devices.tape import Tape

    recs = [os.urandom(REC) for _ in range(records)]
    tail = [None if t is None else os.urandom(t) for t in tail]
    count = sum(map(len, recs)) + sum(len(t) for t in tail if t) + (REC if tail else 0)
    capacity = capacity_records * footprint(REC) + 10
    threads: set[str] = set()
    ahead = CopyManager(chunk=4 * REC, read_ahead=2, kernel_copy=False)
    real = Tape.read_records

    def spy(self, *a, **kw):
        threads.add(threading.current_thread().name.split("-")[1])
        return real(self, *a, **kw)

    monkeypatch.setattr(Tape, "read_records", spy)
    got = _tape_to_tape(lab, "ahead", ahead, recs, tail, capacity, count=count)
    monkeypatch.undo()
    want = _tape_to_tape(lab, "plain", CopyManager(chunk=4 * REC, read_ahead=0,
                                                   kernel_copy=False), recs, tail,
                         capacity, count=count)
    assert got == want
    assert "read" in threads  # batches were read on the read-ahead's thread
    if capacity_records < records:
        assert want[0] is not None and len(want[1]) == capacity_records
