"""Disk to tape with the bytes copied by the kernel (copy_file_range): the same records,
counts, digest and sense as the copy through the daemon's buffers, and back to the
buffers wherever the kernel does not copy."""

from __future__ import annotations

import logging
import os

import pytest
from plugins.copy_lab import cscd, report, tape_records, write

from lio_xcopy.copy.manager import CopyManager
from lio_xcopy.devices import awstape as awstape_module
from lio_xcopy.devices import filecopy
from lio_xcopy.devices.awstape import AwsTape
from lio_xcopy.devices.base import Command
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.scsi import xcopy
from lio_xcopy.scsi.sense import Asc, SenseKey

BlockToStream, BlockToStreamHeld = xcopy.BlockToStream, xcopy.BlockToStreamHeld
BlockToStreamOffset, ListIdUsage = xcopy.BlockToStreamOffset, xcopy.ListIdUsage

MiB = 1 << 20
REC = 64 * 1024
CHUNK = 256 * 1024


@pytest.fixture
def kernel_calls(monkeypatch):
    """The records the kernel copied, one entry per ``interleave`` call."""
    calls: list[int] = []
    real = awstape_module.interleave

    def spy(*args):
        calls.append(args[-1])
        return real(*args)

    monkeypatch.setattr(awstape_module, "interleave", spy)
    return calls


def _copy(copy_lab, kernel, segments, *, data, capacity=16 * MiB, before=(), fault=None,
          prepare=None):
    """One disk->tape copy with the kernel copying (or not); what it reports."""
    tag = "k" if kernel else "b"
    src = copy_lab.disk(f"src{tag}", data=data)
    tape = copy_lab.tape(f"tape{tag}", capacity)
    write(tape, *before)
    if prepare is not None:
        prepare(src, tape)
    if fault is not None:
        fault(src, tape)
    manager = CopyManager(chunk=CHUNK, kernel_copy=kernel)
    for dev in (src, tape):
        manager.register(dev)
    plist = xcopy.build_extended_copy([cscd(src), cscd(tape)], segments, list_identifier=5,
                                      list_id_usage=ListIdUsage.HOLD)
    cdb = xcopy.ExtendedCopyLid1(parameter_list_length=len(plist)).encode()
    fut = src.handle(Command(cdb, DataBuffer.of(bytearray(plist))))
    medium = tape.medium
    assert medium is not None
    out = report(manager, src, fut)
    out.update({
        "position": medium.position, "file size": os.path.getsize(medium.path),
    })
    if fault is not None:
        faults_heal = getattr(fault, "heal", None)
        if faults_heal is not None:
            faults_heal()
    out["records"] = tape_records(tape)
    assert AwsTape.open_readonly(medium.path).damage is None
    return out


def _both(copy_lab, segments, **kw):
    through_buffers = _copy(copy_lab, False, segments, **kw)
    assert _copy(copy_lab, True, segments, **kw) == through_buffers
    return through_buffers


def test_a_plain_copy_is_the_same_and_the_kernel_copies_it(copy_lab, kernel_calls):
    data = os.urandom(MiB)
    r = _both(copy_lab, [BlockToStream(0, 1, 2048, 0, REC)], data=data)
    assert r["ended"] == ("ok", 0) and r["transferred"] == MiB
    assert r["records"] == [data[i : i + REC] for i in range(0, MiB, REC)]
    assert r["operations"] == 4 + 16  # a READ per chunk, a WRITE per record (SPC-4 6.24)
    assert kernel_calls == [4] * 4  # every chunk by the kernel, none through a buffer


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
    assert kernel_calls == [2, 2]


def test_a_full_cartridge_counts_the_records_written_before_it(copy_lab):
    r = _both(copy_lab, [BlockToStream(0, 1, 2048, 0, REC)], data=os.urandom(MiB),
              capacity=600 * 1024)
    assert r["ended"][:3] == ("error", SenseKey.COPY_ABORTED,
                              Asc.END_OF_PARTITION_MEDIUM_DETECTED)  # VOLUME OVERFLOW
    assert 0 < r["transferred"] < MiB and len(r["records"]) * REC == r["transferred"]


def test_a_source_read_error_is_reported_at_its_lba_as_through_buffers(copy_lab, faults,
                                                                        caplog):
    """The kernel's copy fails on the bad bytes; the chunk is read again through a
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
    assert "copied through the daemon from byte 262144 on" in caplog.text


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


def test_a_cartridge_that_cannot_be_mapped_is_digested_from_a_read(copy_lab, monkeypatch):
    def unmappable(*_args):
        raise OSError(19, "No such device")

    data = os.urandom(MiB)
    with_map = _copy(copy_lab, True, [BlockToStream(0, 1, 2048, 0, REC)], data=data)
    monkeypatch.setattr(awstape_module, "mapped", unmappable)
    assert _copy(copy_lab, True, [BlockToStream(0, 1, 2048, 0, REC)], data=data) == with_map


# --- the layout itself ---------------------------------------------------------------------

class _File:
    def __init__(self, path):
        self.fd = os.open(path, os.O_RDONLY)

    def file_range(self, pos, _n):
        return self.fd, pos


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
@pytest.mark.parametrize("length", [1, 511, 512, 4096, 65535, 65536, 131070, 200_000])
def test_records_laid_by_the_kernel_are_those_a_write_lays(tmp_path, monkeypatch, compiled,
                                                          length):
    if compiled and filecopy.compiled_interleave() is None:
        pytest.skip("lio_xcopy.devices._filecopy is not built")
    if not compiled:
        monkeypatch.setattr(filecopy, "compiled_interleave", lambda: None)
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
