"""Backup and restore jobs without a kernel: the initiator's SG_IO devices are replaced by
a loopback to the target's own devices (disk, library drive, medium changer, copy
manager) in this process, so every CDB the job sends is answered by the real target code.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
from pathlib import Path

import pytest
import xxhash
from plugins.scsi_loopback import Loopback

from lio_xcopy.control import library as ops
from lio_xcopy.copy.manager import CopyManager
from lio_xcopy.devices.awstape import AwsTape
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.errors import LioXcopyError
from lio_xcopy.initiator import backup as bk
from lio_xcopy.initiator import backup_cli, drive
from lio_xcopy.initiator.catalog import DONE, FAILED, RUNNING, Catalog, size
from lio_xcopy.initiator.changer import Changer
from lio_xcopy.initiator.label import BackupLabel, parse_label
from lio_xcopy.scsi import xcopy
from lio_xcopy.scsi.sense import CHECK_CONDITION, SenseKey
from lio_xcopy.sg import sgio
from lio_xcopy.tcmu.handler import Libraries, open_device

MiB = 1 << 20
DISK_SIZE = 3 * MiB + 64 * 1024  # not a whole number of MiB: the last segment is short


class Target:
    """One daemon's worth of LUNs over a temp directory, reachable as /dev/sgN paths."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.manager = CopyManager(chunk=256 * 1024)
        self.libraries = Libraries()
        self.luns: dict[str, object] = {}
        self.opened: list[Loopback] = []

    def add(self, path: str, name: str, cfg: str):
        dev = open_device(name, cfg, None, libraries=self.libraries)
        self.manager.register(dev)
        dev.copy_manager = self.manager
        self.luns[path] = dev
        return dev

    def open(self, path: str) -> Loopback:
        if path not in self.luns:
            raise sgio.NotScsiDevice(f"{path}: no such device", path)
        dev = Loopback(path, self.luns[path])
        self.opened.append(dev)
        return dev

    def close(self) -> None:
        for d in self.luns.values():
            d.close()

    def devices(self) -> bk.Devices:
        return _Devices(self)


class _Devices(bk.Devices):
    def __init__(self, target: Target):
        super().__init__(opener=target.open)
        self.target = target

    def sg_node(self, path: str) -> str:
        return path

    def tapes(self) -> list[str]:
        return [p for p, d in self.target.luns.items() if d.DEVICE_TYPE == 1]


@pytest.fixture
def target(tmp_path):
    t = Target(tmp_path)
    data = os.urandom(DISK_SIZE)
    (tmp_path / "src.img").write_bytes(data)
    (tmp_path / "dst.img").write_bytes(bytes(DISK_SIZE + MiB))
    t.source_data = data
    t.add("/dev/sg1", "src", f"disk;{tmp_path / 'src.img'}")
    t.add("/dev/sg2", "dst", f"disk;{tmp_path / 'dst.img'}")
    lib = tmp_path / "library"
    ops.create_library(lib, slots=4, drives=2, capacity=64 * MiB,
                       barcodes=["A00001L8", "A00002L8"], drive_luns=["drive0", "drive1"])
    t.library = lib
    t.add("/dev/sg3", "changer", f"changer;{lib}")
    t.add("/dev/sg4", "drive0", f"tape;{lib};drive=0")
    t.add("/dev/sg5", "drive1", f"tape;{lib};drive=1")
    t.add("/dev/sg6", "standalone", f"tape;{tmp_path / 'standalone.aws'};capacity=64M")
    yield t
    t.close()


@pytest.fixture
def cat(tmp_path):
    with Catalog(tmp_path / "catalog.db") as c:
        yield c


def records(path: Path) -> list[bytes | None]:
    with AwsTape.open_readonly(path) as t:
        return t.dump_records()


def files_of(recs: list[bytes | None]) -> list[bytes]:
    """The tape's files, their records joined."""
    out, cur = [], []
    for r in recs:
        if r is None:
            out.append(b"".join(cur))
            cur = []
        else:
            cur.append(r)
    return out + ([b"".join(cur)] if cur else [])


def do_backup(target, cat, **kw):
    """One backup; returns the job and its output (stdout, then the progress on stderr)."""
    out, err = io.StringIO(), io.StringIO()
    req = bk.BackupRequest(disk="/dev/sg1", **kw)
    try:
        job = bk.backup(req, cat, devs=target.devices(), out=out, err=err, tty=False)
    finally:
        assert "\r" not in err.getvalue() and "[" not in out.getvalue()
    return job, out.getvalue() + err.getvalue()


# --- the whole job --------------------------------------------------------------------------
def test_backup_through_the_changer_then_append_then_restore(target, cat):
    job, text = do_backup(target, cat, changer="/dev/sg3", slot=2)
    assert job.state == DONE and job.cartridge == "A00002L8" and job.file_number == 0
    assert job.bytes == DISK_SIZE and job.blocks == DISK_SIZE // 512
    cart = target.library / "A00002L8.aws"
    recs = records(cart)
    label = recs[0]  # the label record opens the file, one disk block long
    assert len(label) == 512 and parse_label(label) == BackupLabel(
        job.id, job.disk_naa, 0, DISK_SIZE // 512, 512, 65536, parse_label(label).written)
    assert job.label_length == 512
    # the copy manager digested what it wrote to the tape file: label, then data, with
    # the daemon's default algorithm
    assert job.digest_algorithm == "xxh3-128"
    assert job.digest == xxhash.xxh3_128(label + target.source_data).hexdigest()
    assert "loading A00002L8 from slot 2 into drive 0" in text
    assert "writing tape file 0" in text and "100%" in text and "MiB/s  in 0:0" in text
    assert "one EXTENDED COPY: locate to object 0, a 512-byte label record" in text
    assert recs[-1] is None and files_of(recs) == [label + target.source_data]
    assert all(len(r) == 65536 for r in recs[1:-2])  # records of the requested length

    # the cartridge is still in the drive: the second job appends file 1
    job2, text2 = do_backup(target, cat, changer="/dev/sg3", slot=2, first_block=128,
                            blocks=64, unload=True)
    assert job2.file_number == 1 and job2.bytes == 64 * 512
    assert "loading" not in text2 and "unloaded the cartridge to slot 2" in text2
    recs = records(cart)
    label2 = recs[recs.index(None) + 1]
    assert parse_label(label2).job == job2.id and parse_label(label2).first_block == 128
    assert files_of(recs) == [label + target.source_data,
                              label2 + target.source_data[128 * 512:192 * 512]]

    out = io.StringIO()
    r = bk.restore(bk.RestoreRequest("/dev/sg2", job=job.id, changer="/dev/sg3"), cat,
                   devs=target.devices(), out=out, tty=False)
    assert r.state == DONE and r.restored_job == job.id and r.digest == job.digest
    assert r.digest_algorithm == "xxh3-128"
    assert "verified: XXH3-128 matches the backup's" in out.getvalue()
    restored = (target.tmp / "dst.img").read_bytes()
    assert restored[:DISK_SIZE] == target.source_data
    assert restored[DISK_SIZE:] == bytes(MiB)  # nothing past the backup's size

    # the second file, by --latest of the source's NAA, at an offset
    out = io.StringIO()
    bk.restore(bk.RestoreRequest("/dev/sg2", latest_of=job.disk_naa, changer="/dev/sg3",
                                 seek=10), cat, devs=target.devices(), out=out, tty=False)
    restored = (target.tmp / "dst.img").read_bytes()
    assert restored[10 * 512:74 * 512] == target.source_data[128 * 512:192 * 512]


def test_standalone_drive_and_a_restore_that_does_not_match(target, cat):
    job, _ = do_backup(target, cat, drive="/dev/sg6")
    assert job.cartridge is None and job.file_number == 0 and job.state == DONE
    cat.db.execute("UPDATE jobs SET digest = ? WHERE id = ?", ("00" * 16, job.id))
    with pytest.raises(bk.BackupError, match="digest mismatch"):
        bk.restore(bk.RestoreRequest("/dev/sg2", job=job.id, drive="/dev/sg6"), cat,
                   devs=target.devices(), out=io.StringIO(), tty=False)
    failed = cat.jobs(kind="restore")[-1]
    assert failed.state == FAILED and "digest mismatch" in failed.error


def test_a_file_left_open_is_closed_before_appending(target, cat):
    tape = target.luns["/dev/sg6"]
    buf = DataBuffer.of(bytearray(b"x" * 1000))
    tape.write_record(buf, 1000)  # an interrupted job: data, no filemark
    job, text = do_backup(target, cat, drive="/dev/sg6", blocks=8)
    assert "closing tape file 0" in text
    assert job.file_number == 1
    recs = records(target.tmp / "standalone.aws")
    assert files_of(recs) == [b"x" * 1000, recs[2] + target.source_data[:4096]]
    assert parse_label(recs[2]).job == job.id


def test_an_error_marks_the_job_failed(target, cat, monkeypatch):
    def broken(*a, **k):
        raise sgio.TransportFailure("EXTENDED COPY on /dev/sg1 did not complete: the bus "
                                    "was reset", "/dev/sg1")

    monkeypatch.setattr(bk, "send_and_poll", broken)
    with pytest.raises(sgio.TransportFailure):
        do_backup(target, cat, drive="/dev/sg6")
    (job,) = cat.jobs()
    assert job.state == FAILED and "bus was reset" in job.error
    assert job.file_number == 0 and job.list_id is not None


def test_a_list_identifier_in_use_is_replaced(target, cat, monkeypatch):
    real = bk.send_and_poll
    tried = []

    def busy_once(s, poll, plist, list_id, **kw):
        tried.append(list_id)
        if len(tried) == 1:  # as the copy manager refuses a held list identifier
            from lio_xcopy.scsi.errors import IllegalRequest
            from lio_xcopy.scsi.sense import Asc

            e = IllegalRequest(Asc.OPERATION_IN_PROGRESS, 0, in_cdb=False)
            r = sgio.Result(b"\x83" + bytes(15), CHECK_CONDITION, e.sense, b"", 0, 0.0)
            raise sgio.ScsiCommandError("EXTENDED COPY failed", s.path, r)
        return real(s, poll, plist, list_id, **kw)

    monkeypatch.setattr(bk, "send_and_poll", busy_once)
    job, _ = do_backup(target, cat, drive="/dev/sg6", blocks=8)
    assert job.state == DONE and len(tried) == 2 and job.list_id == tried[1]


def test_ctrl_c_marks_the_job_failed(target, cat, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(bk, "send_and_poll", interrupted)
    with pytest.raises(KeyboardInterrupt):
        do_backup(target, cat, drive="/dev/sg6")
    assert [(j.state, j.error) for j in cat.jobs()] == [(FAILED, "interrupted (Ctrl-C)")]


def test_operator_errors_change_nothing(target, cat):
    with pytest.raises(LioXcopyError, match=r"slot 3 .* is empty"):
        do_backup(target, cat, changer="/dev/sg3", slot=3)
    with pytest.raises(LioXcopyError, match="no cartridge NOPE"):
        do_backup(target, cat, changer="/dev/sg3", barcode="NOPE")
    with pytest.raises(LioXcopyError, match="slots 1-4"):
        do_backup(target, cat, changer="/dev/sg3", slot=9)
    with pytest.raises(LioXcopyError, match="does not fit"):
        do_backup(target, cat, drive="/dev/sg6", first_block=10, blocks=DISK_SIZE // 512)
    with pytest.raises(LioXcopyError, match="no drive with NAA"):
        do_backup(target, cat, changer="/dev/sg3", slot=1, drive="/dev/sg6")
    assert cat.jobs() == []
    assert {p.name for p in target.library.glob("*.aws")} == {"A00001L8.aws", "A00002L8.aws"}


def test_restore_refuses_failed_jobs_and_small_disks(target, cat, tmp_path):
    job, _ = do_backup(target, cat, drive="/dev/sg6")
    (tmp_path / "tiny.img").write_bytes(bytes(MiB))
    target.add("/dev/sg7", "tiny", f"disk;{tmp_path / 'tiny.img'}")
    with pytest.raises(bk.BackupError, match="give a larger disk"):
        bk.restore(bk.RestoreRequest("/dev/sg7", job=job.id, drive="/dev/sg6"), cat,
                   devs=target.devices(), out=io.StringIO())
    cat.db.execute("UPDATE jobs SET state = 'failed' WHERE id = ?", (job.id,))
    with pytest.raises(bk.BackupError, match="failed backup"):
        bk.restore(bk.RestoreRequest("/dev/sg2", job=job.id, drive="/dev/sg6"), cat,
                   devs=target.devices(), out=io.StringIO())
    assert [j.kind for j in cat.jobs()] == ["backup"]


def test_the_second_drive_when_the_first_holds_another_cartridge(target, cat):
    do_backup(target, cat, changer="/dev/sg3", slot=1)  # A00001L8 stays in drive 0
    job, text = do_backup(target, cat, changer="/dev/sg3", slot=2, blocks=8)
    assert "into drive 1" in text and job.drive == "/dev/sg5"
    # named drive 0 for the cartridge in drive 1: refused before the job, nothing written
    with pytest.raises(bk.BackupError, match="A00002L8 is in drive 1, not in the drive chosen"):
        do_backup(target, cat, changer="/dev/sg3", barcode="A00002L8", drive="/dev/sg4")
    assert [j.state for j in cat.jobs()] == [DONE, DONE]  # no catalog id taken
    # slot 1's cartridge is in drive 0: --slot 1 still finds it there and appends
    job, text = do_backup(target, cat, changer="/dev/sg3", slot=1, blocks=8)
    assert job.drive == "/dev/sg4" and job.cartridge == "A00001L8" and job.file_number == 1
    # drive 1 named for A00001L8 (in drive 0) is refused; after mtx-style unloads of
    # both, naming drive 0 for A00002L8 loads it there
    lib = Changer(target.open("/dev/sg3"))
    inv = lib.inventory()
    for d in inv.drives:
        lib.move(d.address, d.source)
    job, text = do_backup(target, cat, changer="/dev/sg3", barcode="A00002L8",
                          drive="/dev/sg4", blocks=8)
    assert "loading A00002L8 from slot 2 into drive 0" in text and job.file_number == 1
    # a drive holding another cartridge gives it back to its slot first
    job, text = do_backup(target, cat, changer="/dev/sg3", slot=1, drive="/dev/sg4", blocks=8)
    assert "unloading A00002L8 from the drive to element" in text
    assert job.cartridge == "A00001L8" and job.file_number == 2
    inv = lib.inventory()
    assert [(e.barcode if e.full else None) for e in inv.slots] == [None, "A00002L8", None,
                                                                   None]


# --- one command per job ---------------------------------------------------------------------
def parse_plist(plist: bytes) -> xcopy.ExtendedCopyParameterList:
    """An EXTENDED COPY list of either format (LID4: the header CSCD type FFh at 16)."""
    if len(plist) >= 48 and plist[16] == 0xFF:
        return xcopy.parse_extended_copy_lid4(plist)
    return xcopy.parse_extended_copy(plist)


def sent(target, path: str) -> tuple[list[bytes], list[bytes]]:
    """(CDBs, EXTENDED COPY parameter lists) sent to ``path`` on all its handles."""
    handles = [d for d in target.opened if d.path == path]
    return ([c for d in handles for c in d.sent], [p for d in handles for p in d.plists])


WRITE_FILEMARKS_6, LOCATE_10, SPACE_6 = 0x10, 0x2B, 0x11


def test_a_backup_job_is_one_extended_copy(target, cat):
    """Locate (12h) to where the new file starts, the label record (04h, inline data),
    the data (00h) and the filemark (10h): one parameter list, no WRITE FILEMARKS from
    the backup server (SPC-4 6.4.6.2, 6.4.6.8, 6.4.6.18, 6.4.6.20)."""
    do_backup(target, cat, drive="/dev/sg6", blocks=8)  # file 0: 1 + 1 + 1 objects
    target.opened.clear()
    target.manager.limits = xcopy.Limits(max_segment_length=32768)  # four data segments
    job, _ = do_backup(target, cat, drive="/dev/sg6", first_block=16, blocks=256,
                       record=32768)
    cdbs, plists = sent(target, "/dev/sg1")
    (plist,) = plists
    # one EXTENDED COPY, LID4 with IMMED (our target lists it), polled with RECEIVE COPY
    # STATUS (LID4) until done
    assert [c[:2] for c in cdbs if c[0] == 0x83] == [b"\x83\x01"]
    assert b"\x84\x05" in [c[:2] for c in cdbs] and b"\x84\x00" not in [c[:2] for c in cdbs]
    p = xcopy.parse_extended_copy_lid4(plist)
    assert p.header.immed and p.header.list_id_usage == xcopy.ListIdUsage.HOLD
    assert [s.TYPE_CODE for s in p.segments] == [0x12, 0x04, 0x00, 0x00, 0x00, 0x00, 0x10]
    assert p.segments[0] == xcopy.Locate(1, 3)  # label, record, filemark of file 0
    recs = records(target.tmp / "standalone.aws")
    label = recs[3]
    assert p.segments[1] == xcopy.InlineToStream(1, 0, 512, 512)
    assert p.inline_data == label and parse_label(label).job == job.id
    assert [(s.lba, s.number_of_blocks, s.stream_transfer_length) for s in p.segments[2:6]] \
        == [(16 + 64 * i, 64, 32768) for i in range(4)]
    assert p.segments[6] == xcopy.WriteFilemarks(1, 1)
    assert [type(c).__name__ for c in p.cscds] == ["IdentificationCscd"] * 2
    assert [c.peripheral_device_type for c in p.cscds] == [0, 1]
    tape_cdbs, _ = sent(target, "/dev/sg6")
    assert not [c for c in tape_cdbs if c[0] in (WRITE_FILEMARKS_6, LOCATE_10)]
    assert (job.file_number, job.label_length, job.bytes) == (1, 512, 256 * 512)
    assert files_of(recs)[1] == label + target.source_data[16 * 512:272 * 512]
    assert recs[-1] is None and len(recs) == 3 + 1 + 4 + 1


@pytest.mark.parametrize("types", [(0x00, 0x01, 0x02, 0x03), (0x00, 0x01, 0x02, 0x03, 0x04,
                                                              0x10)])
def test_without_the_segment_types_the_job_is_copy_then_filemark(target, cat, types):
    """A copy manager whose OPERATING PARAMETERS lack 04h, 10h or 12h gets today's
    sequence: data segments only, then WRITE FILEMARKS from the backup server; the
    catalog says the file has no label, and the restore reads it back verified."""
    target.manager.limits = xcopy.Limits(segment_types=types)
    job, text = do_backup(target, cat, drive="/dev/sg6", blocks=256)
    missing = "12h" if 0x10 in types else "04h, 10h, 12h"
    assert f"does not list segment type{'s' if ',' in missing else ''} {missing}: no label" \
        in text
    _, plists = sent(target, "/dev/sg1")
    (plist,) = plists
    p = parse_plist(plist)
    assert [s.TYPE_CODE for s in p.segments] == [0x00] and p.inline_data == b""
    tape_cdbs, _ = sent(target, "/dev/sg6")
    assert [c[:5] for c in tape_cdbs if c[0] == WRITE_FILEMARKS_6] == [b"\x10\x00\x00\x00\x01"]
    assert job.label_length == 0 and job.digest == xxhash.xxh3_128(
        target.source_data[:256 * 512]).hexdigest()
    assert files_of(records(target.tmp / "standalone.aws")) == [target.source_data[:256 * 512]]
    out = io.StringIO()
    r = bk.restore(bk.RestoreRequest("/dev/sg2", job=job.id, drive="/dev/sg6", seek=4), cat,
                   devs=target.devices(), out=out, tty=False)
    assert r.state == DONE and "verified" in out.getvalue()
    assert (target.tmp / "dst.img").read_bytes()[4 * 512:260 * 512] == \
        target.source_data[:256 * 512]


def test_restore_of_a_labelled_file_reads_the_label_under_the_data(target, cat):
    """The restore's first segment reads the label record into the first block it
    restores (01h), the data overwrites it: the digest covers label and data as the
    backup's did, and the disk holds the data alone."""
    do_backup(target, cat, drive="/dev/sg6", blocks=8)
    job, _ = do_backup(target, cat, drive="/dev/sg6", first_block=100, blocks=300)
    target.opened.clear()
    out = io.StringIO()
    r = bk.restore(bk.RestoreRequest("/dev/sg2", job=job.id, drive="/dev/sg6", seek=7), cat,
                   devs=target.devices(), out=out, tty=False)
    assert "verified: XXH3-128 matches the backup's" in out.getvalue()
    assert (r.bytes, r.digest) == (300 * 512, job.digest)
    _, plists = sent(target, "/dev/sg6")
    p = parse_plist(plists[0])
    assert p.segments[0] == xcopy.StreamToBlock(0, 1, 1, 7, 512)
    assert [s.TYPE_CODE for s in p.segments] == [0x01] * 2
    assert (p.segments[1].lba, p.segments[1].stream_transfer_length) == (7, 65536)
    disk = (target.tmp / "dst.img").read_bytes()
    assert disk[7 * 512:307 * 512] == target.source_data[100 * 512:400 * 512]
    assert disk[:7 * 512] == bytes(7 * 512) and disk[307 * 512:308 * 512] == bytes(512)


def test_a_catalog_of_schema_1_opens_and_its_jobs_restore_without_a_label(target, tmp_path):
    """Jobs recorded before labels existed (no label_length column) restore as data
    alone; their digests, SHA-256 then, verify with a copy manager set to SHA-256."""
    import sqlite3

    from lio_xcopy.initiator import catalog

    path = tmp_path / "old.db"
    target.manager.limits = xcopy.Limits(segment_types=(0, 1, 2, 3))
    target.manager.digest_algorithm = xcopy.DigestAlgorithm.SHA256
    with Catalog(path) as c:
        job, _ = do_backup(target, c, drive="/dev/sg6", blocks=64)
    db = sqlite3.connect(path)  # as schema 1 left it
    db.execute("ALTER TABLE jobs DROP COLUMN label_length")
    db.execute("ALTER TABLE jobs DROP COLUMN digest_algorithm")
    db.execute("ALTER TABLE jobs RENAME COLUMN digest TO sha256")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    target.manager.limits = xcopy.Limits()
    with Catalog(path) as c:
        old = c.job(job.id)
        assert old.label_length is None and old.digest == job.digest
        assert old.digest_algorithm is None and old.algorithm == "sha256"
        assert c.db.execute("PRAGMA user_version").fetchone()[0] == catalog.SCHEMA_VERSION
        out = io.StringIO()
        bk.restore(bk.RestoreRequest("/dev/sg2", job=job.id, drive="/dev/sg6"), c,
                   devs=target.devices(), out=out, tty=False)
    assert "verified: SHA-256 matches the backup's" in out.getvalue()
    assert (target.tmp / "dst.img").read_bytes()[:64 * 512] == target.source_data[:64 * 512]


@pytest.mark.parametrize("backup_with, restore_with", [("sha256", "xxh3-128"),
                                                       ("xxh3-128", "sha256")])
def test_a_restore_digested_with_another_algorithm_is_not_verified_nor_a_mismatch(
        target, cat, backup_with, restore_with):
    """The daemon's --copy-digest changed between backup and restore: digests of two
    algorithms say nothing of each other, so the restore ends done and says in one line
    why it is not verified, as when there is no digest."""
    import hashlib

    target.manager.digest_algorithm = xcopy.DigestAlgorithm.named(backup_with)
    job, text = do_backup(target, cat, drive="/dev/sg6", blocks=64)
    assert job.algorithm == backup_with and f", {backup_with} {job.digest}" in text
    label = records(target.tmp / "standalone.aws")[0]
    want = {"sha256": hashlib.sha256, "xxh3-128": xxhash.xxh3_128}[backup_with]
    assert job.digest == want(label + target.source_data[:64 * 512]).hexdigest()
    target.manager.digest_algorithm = xcopy.DigestAlgorithm.named(restore_with)
    out = io.StringIO()
    r = bk.restore(bk.RestoreRequest("/dev/sg2", job=job.id, drive="/dev/sg6"), cat,
                   devs=target.devices(), out=out, tty=False)
    (line,) = [t for t in out.getvalue().splitlines() if t.startswith(f"job {r.id} done")]
    assert line == (f"job {r.id} done: 32.0 KiB restored, not verified: the copy manager "
                    f"digests with {restore_with}, the backup's is {backup_with} (the "
                    "target's `lio-xcopy daemon --copy-digest` changed since the backup; "
                    f"set it to {backup_with} to verify)")
    assert r.state == DONE and r.algorithm == restore_with and r.digest != job.digest
    assert (target.tmp / "dst.img").read_bytes()[:64 * 512] == target.source_data[:64 * 512]
    # the same algorithm again: verified
    target.manager.digest_algorithm = xcopy.DigestAlgorithm.named(backup_with)
    out = io.StringIO()
    bk.restore(bk.RestoreRequest("/dev/sg2", job=job.id, drive="/dev/sg6"), cat,
               devs=target.devices(), out=out, tty=False)
    title = xcopy.DigestAlgorithm.named(backup_with).title
    assert f"verified: {title} matches the backup's" in out.getvalue()


def test_label_round_trip_and_refusals():
    from lio_xcopy.initiator.label import LabelError

    lab = BackupLabel(7, "6001405abc", 16, 256, 4096, 65536, 1764892800.0)
    raw = lab.encode()
    assert len(raw) == 4096 and parse_label(raw) == lab
    assert raw.startswith(b"LIO-XCOPY BACKUP LABEL 1\njob: 7\nsource: naa.6001405abc\n")
    assert b"written: 2025-12-05T00:00:00Z\n" in raw
    with pytest.raises(LabelError, match="not a lio-xcopy backup label"):
        parse_label(bytes(512))
    with pytest.raises(LabelError, match="does not fit a 64-byte block"):
        BackupLabel(7, "60", 0, 1, 64, 512, 0.0).encode()


# --- pieces ----------------------------------------------------------------------------------
def test_sizes():
    assert [size(n) for n in (512, 32 << 10, 96 * MiB, 3 << 29)] == [
        "512 B", "32.0 KiB", "96.0 MiB", "1.5 GiB"]


def test_read_position_long_form():
    data = struct.pack(">BxxxIQQQ", 0x00, 0, 1234, 3, 0)
    assert drive.parse_position_long(data) == drive.Position(False, False, 0, 1234, 3)
    assert drive.parse_position_long(struct.pack(">BxxxIQQQ", 0x80, 0, 0, 0, 0)).bop
    with pytest.raises(bk.BackupError, match="does not know its position"):
        drive.parse_position_long(struct.pack(">BxxxIQQQ", 0x04, 0, 0, 0, 0))
    with pytest.raises(bk.BackupError, match="cannot report tape file numbers"):
        drive.parse_position_long(bytes(20))


def test_cli_errors_are_one_line(tmp_path, capsys):
    cat = str(tmp_path / "c.db")
    assert backup_cli.main(["--catalog", cat, "/dev/sg1"]) == 1
    assert capsys.readouterr().err == (
        "lio-xcopy backup: give --drive DEVICE, or --changer DEVICE --slot N\n")
    Catalog(cat).close()
    assert backup_cli.restore_main(["--catalog", cat, "7", "/dev/null", "--drive", "/dev/sg6"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lio-xcopy restore: no job 7 in ") and err.count("\n") == 1
    assert backup_cli.main(["--bogus"]) == 1
    assert backup_cli.main([]) == 2 and "usage" in capsys.readouterr().out


@pytest.mark.parametrize("main", [backup_cli.main, backup_cli.restore_main])
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_anywhere_prints_usage_and_does_nothing(main, flag, tmp_path, capsys):
    cat = tmp_path / "c.db"
    assert main(["1", "/dev/sg1", "--catalog", str(cat), "--drive", "/dev/sg6", flag]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: lio-xcopy ") and err == ""
    assert not cat.exists()


BACKUP_REFUSALS = [
    (["--changer", "/dev/sg3", "--slot", "3", "--barcode", "L00004L8"],
     "--slot 3 and --barcode L00004L8 name a cartridge twice: give one of them"),
    (["--drive", "/dev/sg6", "--slot", "3"], "--slot picks a cartridge of a library"),
    (["--changer", "/dev/sg3", "--slot", "0"], "slots are numbered from 1"),
    (["--drive", "/dev/sg6", "--record", "0"], "--record 0: give the tape record length"),
    (["--drive", "/dev/sg6", "--count", "0"], "--count 0 backs up nothing"),
    (["--drive", "/dev/sg6", "--skip", "-5"], "--skip -5 is negative"),
    (["--drive", "/dev/sg6", "--unload"], "--unload puts the cartridge back in its slot: "
                                           "it needs --changer"),
    (["--drive", "/dev/sg6", "--quiet", "--json"], "give one"),
    (["--drive", "/dev/sg6", "--drive", "/dev/sg5"], "--drive is given twice"),
    (["--drive", "/dev/sg6", "--seek", "1"], "unknown option --seek"),
    (["--driv", "/dev/sg6"], "unknown option --driv"),  # no abbreviations
    (["--changer=/dev/sg3", "--barcode=L1", "--slot=2"],
     "--slot 2 and --barcode L1 name a cartridge twice: give one of them"),
    (["--drive"], "--drive needs a value"),
    (["--drive", "/dev/sg6", "--count", "many"], "--count 'many' is not a number"),
]


@pytest.mark.parametrize(("args", "words"), BACKUP_REFUSALS)
def test_contradictory_or_meaningless_backup_options(args, words, tmp_path, capsys):
    cat = tmp_path / "c.db"
    assert backup_cli.main(["/dev/sg1", "--catalog", str(cat), *args]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("lio-xcopy backup: ")
    assert words in err
    assert not cat.exists()  # refused before the catalog: no job id taken


RESTORE_REFUSALS = [
    (["1", "/dev/sg2", "--drive", "/dev/sg6", "--unload"], "it needs --changer"),
    (["1", "/dev/sg2", "--drive", "/dev/sg6", "--source", "naa.6001"], "give --latest too"),
    (["--latest", "1", "/dev/sg2", "--source", "x", "--drive", "/dev/sg6"], "no JOB_ID"),
    (["1", "/dev/sg2"], "give --changer DEVICE"),
    (["1", "/dev/sg2", "--drive", "/dev/sg6", "--slot", "1"], "unknown option --slot"),
]


@pytest.mark.parametrize(("args", "words"), RESTORE_REFUSALS)
def test_contradictory_or_meaningless_restore_options(args, words, tmp_path, capsys):
    cat = tmp_path / "c.db"
    assert backup_cli.restore_main(["--catalog", str(cat), *args]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    assert not cat.exists()


def test_a_mistyped_catalog_is_never_created(tmp_path, capsys, monkeypatch):
    from lio_xcopy.initiator import catalog

    missing = tmp_path / "no-such-dir" / "catalog.db"
    assert backup_cli.main(["/dev/sg1", "--drive", "/dev/sg6", "--catalog", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err == (f"lio-xcopy backup: --catalog {missing}: there is no directory "
                   f"{missing.parent}; create it or give another path\n")
    typo = tmp_path / "catalgo.db"
    assert backup_cli.restore_main(["1", "/dev/sg2", "--drive", "/dev/sg6", "--catalog",
                            str(typo)]) == 1
    assert f"no catalog at {typo}: give the one your backups use" in capsys.readouterr().err
    assert catalog.main(["--catalog", str(typo)]) == 1
    assert f"no catalog at {typo}" in capsys.readouterr().err
    monkeypatch.setenv("LIO_XCOPY_CATALOG", str(missing))
    assert backup_cli.main(["/dev/sg1", "--drive", "/dev/sg6"]) == 1
    assert "$LIO_XCOPY_CATALOG" in capsys.readouterr().err
    assert not missing.parent.exists() and not typo.exists()


def test_a_skip_past_the_end_says_so_without_negative_counts(target, cat):
    with pytest.raises(bk.BackupError) as e:
        do_backup(target, cat, drive="/dev/sg6", first_block=200000)
    assert str(e.value) == ("/dev/sg1 has 6272 blocks: --skip 200000 is past its end; give "
                            "--skip below 6272")
    with pytest.raises(bk.BackupError, match=r"give --count 6262 or less$"):
        do_backup(target, cat, drive="/dev/sg6", first_block=10, blocks=6272)
    assert cat.jobs() == []


def test_not_a_tape_drive_is_refused_before_the_job(target, cat):
    with pytest.raises(bk.BackupError, match="/dev/sg2 is not a tape drive"):
        do_backup(target, cat, drive="/dev/sg2")
    assert cat.jobs() == []


def test_unload_after_a_failed_job_too(target, cat, monkeypatch):
    def broken(*a, **k):
        raise sgio.TransportFailure("EXTENDED COPY on /dev/sg1 did not complete: the bus "
                                    "was reset", "/dev/sg1")

    monkeypatch.setattr(bk, "send_and_poll", broken)
    out = io.StringIO()
    with pytest.raises(sgio.TransportFailure):
        bk.backup(bk.BackupRequest("/dev/sg1", changer="/dev/sg3", slot=1, unload=True), cat,
                  devs=target.devices(), out=out, err=io.StringIO(), tty=False)
    assert "the job failed: unloading the cartridge (--unload)" in out.getvalue()
    assert "unloaded the cartridge to slot 1" in out.getvalue()
    assert ops.where(target.library, "A00001L8").label == "slot 1"
    assert [j.state for j in cat.jobs()] == [FAILED]


def test_no_unload_while_the_failed_jobs_copy_still_runs(target, cat, monkeypatch):
    def lost_answer(*a, **k):
        raise sgio.TransportFailure("EXTENDED COPY timed out", "/dev/sg1")

    monkeypatch.setattr(bk, "send_and_poll", lost_answer)
    monkeypatch.setattr(bk, "copy_status", lambda dev, list_id: xcopy.CopyStatus(
        xcopy.CopyCommandStatus.IN_PROGRESS))
    out = io.StringIO()
    with pytest.raises(sgio.TransportFailure):
        bk.backup(bk.BackupRequest("/dev/sg1", changer="/dev/sg3", slot=1, unload=True), cat,
                  devs=target.devices(), out=out, err=io.StringIO(), tty=False)
    assert "its copy still runs on the target: the cartridge stays in the drive" in (
        out.getvalue())
    assert ops.where(target.library, "A00001L8").label == "drive 0"


def test_digest_is_optional_for_other_copy_managers(target):
    """A device without RECEIVE COPY DIGEST (INVALID COMMAND OPERATION CODE) has no
    digest to give; ours refuses a list identifier it does not know."""
    assert bk.copy_digest(target.open("/dev/sg3"), 1) is None  # the changer
    with pytest.raises(sgio.ScsiCommandError) as e:
        bk.copy_digest(target.open("/dev/sg1"), 77)  # no such copy: the device says so
    assert e.value.key == SenseKey.ILLEGAL_REQUEST


def test_a_running_job_of_a_dead_process_fails_at_the_next_open(tmp_path):
    with Catalog(tmp_path / "c.db") as c:
        job = c.begin("backup", disk="/dev/sg1", disk_naa="60", first_block=0, blocks=1,
                      block_size=512, drive="/dev/sg6", drive_naa="61", record_length=512)
        assert job.state == RUNNING
        c.db.execute("UPDATE jobs SET pid = ? WHERE id = ?", (2**22 + 7, job.id))
    with Catalog(tmp_path / "c.db") as c:
        (orphan,) = c.orphans
        assert orphan.id == job.id and c.job(job.id).state == FAILED
        assert "interrupted: process" in c.job(job.id).error


def test_the_next_job_waits_for_the_copy_an_interrupted_job_left_running(target, cat,
                                                                          monkeypatch):
    def killed(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(bk, "send_and_poll", killed)
        with pytest.raises(KeyboardInterrupt):
            do_backup(target, cat, drive="/dev/sg6")
    (job,) = cat.jobs()
    naa = bytes.fromhex(job.drive_naa)
    slept: list[float] = []
    out = io.StringIO()
    # the copy never reached the target: its list identifier is unknown there
    bk.wait_for_interrupted_copies(cat, target.devices(), naa, out, sleep=slept.append)
    assert out.getvalue() == "" and slept == []
    # a copy still in progress is waited for, then the job goes on
    states = [xcopy.CopyStatus(0, 3, 5 << 20), xcopy.CopyStatus(0, 4, 6 << 20),
              xcopy.CopyStatus(1, 9, 9 << 20)]
    asked = []

    def status(dev, list_id):
        asked.append((dev.path, list_id))
        return states.pop(0)

    monkeypatch.setattr(bk, "copy_status", status)
    bk.wait_for_interrupted_copies(cat, target.devices(), naa, out, sleep=slept.append)
    assert out.getvalue() == (f"waiting for the copy of interrupted job {job.id} to end on "
                              "the target (5.0 MiB so far)\n")
    assert slept == [1.0, 1.0] and asked == [("/dev/sg1", job.list_id)] * 3
    # other drives' jobs are not waited for
    states[:] = [xcopy.CopyStatus(0, 1, 1)]
    bk.wait_for_interrupted_copies(cat, target.devices(), b"\x60" * 16, out)
    assert len(states) == 1


# --- lio-xcopy copy through the same loopback -----------------------------------------------
@pytest.mark.parametrize("mode", ["--json", "lines", "--quiet"])
def test_copy_result_on_stdout_progress_on_stderr(target, monkeypatch, capsys, mode):
    import json

    from lio_xcopy.initiator import copy

    monkeypatch.setattr(sgio, "SgIoDevice", target.open)
    args = ["if=/dev/sg1", "of=/dev/sg2", "count=4096"] + ([mode] if mode != "lines" else [])
    assert copy.main(args) == 0
    out, err = capsys.readouterr()
    assert "\r" not in out + err
    assert out.splitlines()[-1].startswith("  copied 2.0 MiB in ")
    if mode == "--json":
        docs = [json.loads(line) for line in err.splitlines()]
        assert docs[-1]["done"] is True and docs[-1]["bytes"] == 4096 * 512
    elif mode == "lines":
        assert err.splitlines()[-1].startswith("  [########################] 100%")
    else:
        assert err == ""
    assert (target.tmp / "dst.img").read_bytes()[:4096 * 512] == target.source_data[:4096 * 512]


def test_copy_error_starts_its_own_line(target, monkeypatch):
    """On a terminal the bar is redrawn in place; a failure ends its line first."""
    from lio_xcopy.initiator import copy

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    def fails_midway(s, poll, plist, list_id, *, on_status=None, **kw):
        on_status(xcopy.CopyStatus.for_bytes(xcopy.CopyCommandStatus.IN_PROGRESS, 0, MiB),
                  1.0)
        raise sgio.TransportFailure("EXTENDED COPY on /dev/sg1 did not complete", "/dev/sg1")

    monkeypatch.setattr(sgio, "SgIoDevice", target.open)
    monkeypatch.setattr(copy, "send_and_poll", fails_midway)
    term = Terminal()
    with pytest.raises(sgio.TransportFailure):
        copy.run_copy("/dev/sg1", "/dev/sg2", copy.CopyRequest(count=4096), out=io.StringIO(),
                      err=term)
    assert term.getvalue().startswith("\r  [") and term.getvalue().endswith("\n")


def test_copy_with_a_header_and_a_filemark_then_emit_plist(target, monkeypatch, capsys):
    """``lio-xcopy copy header=FILE filemark=1``: one EXTENDED COPY writes the header
    record, the data and the filemark; ``--emit-plist`` writes that same list and the
    sg_raw line, and sends no EXTENDED COPY."""
    from lio_xcopy.initiator import copy

    monkeypatch.setattr(sgio, "SgIoDevice", target.open)
    target.open("/dev/sg6").take_unit_attentions()  # power on: seen before positioning
    hdr = target.tmp / "hdr.bin"
    hdr.write_bytes(b"HDR1 nightly db0")
    args = ["if=/dev/sg1", "of=/dev/sg6", "count=256", f"header={hdr}", "filemark=1"]
    assert copy.main([*args, "--quiet"]) == 0
    recs = records(target.tmp / "standalone.aws")
    d = target.source_data
    assert recs == [b"HDR1 nightly db0", d[:65536], d[65536:131072], None]
    ((plist,),) = [d.plists for d in target.opened if d.plists]
    emitted = target.tmp / "job.plist"
    target.opened.clear()
    assert copy.main([*args, "--emit-plist", str(emitted)]) == 0
    out = capsys.readouterr().out
    assert not [d.plists for d in target.opened if d.plists]  # nothing sent
    got = emitted.read_bytes()
    # EXTENDED COPY (LID4) with IMMED: all but the list identifier (bytes 20-23, chosen
    # per run) as sent
    assert got[:20] + got[24:] == plist[:20] + plist[24:]
    p = xcopy.parse_extended_copy_lid4(got)
    assert [s.TYPE_CODE for s in p.segments] == [4, 0, 16] and p.header.immed
    n = " ".join(f"{b:02x}" for b in len(got).to_bytes(4, "big"))
    assert (f"sg_raw -t 3600 -s {len(got)} -i {emitted} /dev/sg1 "
            f"83 01 00 00 00 00 00 00 00 00 {n} 00 00") in out
    ident = " ".join(f"{b:02x}" for b in p.header.list_identifier.to_bytes(4, "big"))
    assert f"sg_raw -r 284 /dev/sg1 84 05 {ident} 00 00 00 00 00 00 01 1c 00 00" in out


def test_copy_operator_errors_send_nothing(target, monkeypatch, capsys):
    from lio_xcopy.initiator import copy

    monkeypatch.setattr(sgio, "SgIoDevice", target.open)
    target.open("/dev/sg6").take_unit_attentions()  # power on: seen before positioning
    hdr = target.tmp / "hdr.bin"
    hdr.write_bytes(bytes(70000))
    assert copy.main(["if=/dev/sg1", "of=/dev/sg6", "count=8", f"header={hdr}"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "give a header of at most 65536 bytes" in err
    hdr.write_bytes(b"x")
    assert copy.main(["if=/dev/sg1", "of=/dev/sg2", "count=8", f"header={hdr}"]) == 1
    err = capsys.readouterr().err
    assert err == ("lio-xcopy copy: header= writes to a tape, and the destination /dev/sg2 "
                   "is a disk: leave header= out\n")
    assert not [d.plists for d in target.opened if d.plists]
    assert records(target.tmp / "standalone.aws") == []


# --- which copy manager a job is sent to ---------------------------------------------------
def _op(types: tuple[int, ...], segments: int = 256) -> xcopy.OperatingParameters:
    return dataclasses.replace(xcopy.OperatingParameters.from_limits(xcopy.Limits()),
                               max_segment_count=segments, implemented_descriptor_types=types)


class _Dev:
    def __init__(self, path: str, op: xcopy.OperatingParameters | None):
        self.path, self.op = path, op


@pytest.fixture
def answers(monkeypatch):
    def operating_parameters(dev):
        if dev.op is None:  # no copy manager: ILLEGAL REQUEST
            r = sgio.Result(b"\x84\x03", CHECK_CONDITION, None, b"", 0, 0.0)
            raise sgio.ScsiCommandError("INVALID COMMAND OPERATION CODE", dev.path, r)
        return dev.op

    monkeypatch.setattr(bk, "operating_parameters", operating_parameters)


@pytest.mark.usefixtures("answers")
def test_a_job_goes_to_the_drives_copy_manager_when_the_disks_copies_only_disks():
    """The disk is on another array whose copy manager lists only 02h (as LIO's does);
    the drive is served by a copy device: the EXTENDED COPY goes to the drive."""
    ours = tuple(sorted({*xcopy.SEGMENT_TYPES, xcopy.IDENTIFICATION_CSCD}))
    disk, drive = _Dev("/dev/sg3", _op((0x02, 0xE4), 1)), _Dev("/dev/sg7", _op(ours))
    assert bk.copy_manager(disk, drive, 512)[0] is drive
    assert bk.copy_manager(_Dev("/dev/sg3", None), drive, 512)[0] is drive
    both = _Dev("/dev/sg1", _op(ours))
    assert bk.copy_manager(both, drive, 512)[0] is both  # the disk's, where it can
    old = _Dev("/dev/sg7", _op((0x00, 0xE4)))  # block->stream, no one-command job
    assert bk.copy_manager(disk, old, 512)[0] is old
    with pytest.raises(bk.BackupError, match="neither /dev/sg3 nor /dev/sg9 answers"):
        bk.copy_manager(disk, _Dev("/dev/sg9", None), 512)


def test_copy_sends_lid4_with_immed_unless_lid1_is_asked(target, monkeypatch, capsys):
    """Our target lists EXTENDED COPY (LID4): sent with IMMED, followed with RECEIVE COPY
    STATUS (LID4) only; ``--lid1`` sends EXTENDED COPY (LID1) and polls COPY STATUS."""
    from lio_xcopy.initiator import copy

    monkeypatch.setattr(sgio, "SgIoDevice", target.open)
    target.open("/dev/sg6").take_unit_attentions()
    for flag, sa, poll in (([], 0x01, b"\x84\x05"), (["--lid1"], 0x00, b"\x84\x00")):
        target.opened.clear()
        assert copy.main(["if=/dev/sg1", "of=/dev/sg6", "count=64", "--quiet", *flag]) == 0
        cdbs, _ = sent(target, "/dev/sg1")
        assert [c[1] for c in cdbs if c[0] == 0x83] == [sa]
        polls = {c[:2] for c in cdbs if c[0] == 0x84 and c[1] in (0x00, 0x05)}
        assert polls <= {poll}
        assert ("in the background" in capsys.readouterr().out) == (sa == 0x01)
