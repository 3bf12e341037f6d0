"""Backup jobs through the real kernel: a library (changer + one drive) and disks exported
over tcm_loop; ``lio-xcopy backup``/``restore``/``catalog`` run as the backup server's
operator runs them, on the sg/sd/st nodes the kernel made.

The tests run in file order and share the library and the catalog, as one operator's
session: each starts from what the previous one left.
"""

from __future__ import annotations

import hashlib
import os
import pty
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import xxhash
from conftest import MiB, clear_unit_attention, extra_lun, run

from lio_xcopy.control import library as ops
from lio_xcopy.control import provision
from lio_xcopy.devices.awstape import AwsTape
from lio_xcopy.initiator.copy import copy_status
from lio_xcopy.initiator.label import BackupLabel, parse_label
from lio_xcopy.scsi.xcopy import DigestAlgorithm
from lio_xcopy.sg import sgio

SRC_SIZE = 32 * MiB
BARCODES = ["BKP001L8", "BKP002L8"]
#: the copy digest of each algorithm the daemon may report (docs/copy-digest.md)
DIGESTS = {"xxh3-128": xxhash.xxh3_128, "sha256": hashlib.sha256}


def digest_of(job: sqlite3.Row, data: bytes) -> str:
    """The digest of ``data`` in the algorithm the daemon reported for ``job``."""
    return DIGESTS[job["digest_algorithm"]](data).hexdigest()


def verified(text: str, job: sqlite3.Row) -> bool:
    """The restore ``job`` said that its digest matches the backup's."""
    title = DigestAlgorithm.named(job["digest_algorithm"]).title
    return f"verified: {title} matches the backup's" in text


@dataclass
class Setup:
    lib: Path
    changer: str  # /dev/sgN
    drive_sg: str
    nst: str
    src: str  # /dev/sdX of the source disk
    src_sg: str
    src_file: Path
    dst: str
    dst_file: Path
    catalog: Path
    transcript: Path

    def cli(self, *args: str, check: bool = True, env: dict | None = None):
        cmd = [sys.executable, "-m", "lio_xcopy", *args]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "LIO_XCOPY_CATALOG": str(self.catalog),
                                **(env or {})})
        with self.transcript.open("a") as f:
            f.write(f"# lio-xcopy {' '.join(args)}\n{p.stdout}{p.stderr}\n")
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout}\n"
                                 f"{p.stderr}")
        return p

    def jobs(self) -> list[sqlite3.Row]:
        db = sqlite3.connect(f"file:{self.catalog}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        try:
            return db.execute("SELECT * FROM jobs ORDER BY id").fetchall()
        finally:
            db.close()


@pytest.fixture(scope="module")
def setup(lab):
    work = lab.work
    lib = work / "bklib"
    ops.create_library(lib, slots=4, drives=1, capacity=512 * MiB, barcodes=BARCODES,
                       drive_luns=["bkdrive0"])
    luns = [provision.create_changer("bkchanger", lib),
            provision.create_library_drive("bkdrive0", lib, 0),
            provision.create_disk("bksrc", work / "bksrc.img", SRC_SIZE),
            provision.create_disk("bkdst", work / "bkdst.img", SRC_SIZE + 4 * MiB)]
    devs = [extra_lun(lab, lun) for lun in luns]
    clear_unit_attention(*(str(d.sg) for d in devs))
    changer, drive, src, dst = devs
    # the source: random data written through the kernel's sd
    run("dd", "if=/dev/urandom", f"of={src.block}", "bs=1M", f"count={SRC_SIZE // MiB}",
        "oflag=direct")
    out = Path(os.environ.get("LIO_XCOPY_WORK", str(work))) / "backup-transcript.txt"
    out.write_text("")
    s = Setup(lib, str(changer.sg), str(drive.sg), str(drive.tape), str(src.block),
              str(src.sg), work / "bksrc.img", str(dst.block), work / "bkdst.img",
              work / "catalog.db", out)
    yield s
    for lun in luns:
        provision.delete(lun.name)
    clear_unit_attention(lab.disk_sg, lab.tape_sg)


def labelled(file: bytes, block: int = 512) -> tuple[BackupLabel, bytes]:
    """A tape file a one-command backup wrote: its label record (one disk block), the
    data."""
    return parse_label(file[:block]), file[block:]


def tape_files(path: Path) -> list[bytes]:
    with AwsTape.open_readonly(path) as t:
        recs = t.dump_records()
    files, cur = [], []
    for r in recs:
        if r is None:
            files.append(b"".join(cur))
            cur = []
        else:
            cur.append(r)
    return files + ([b"".join(cur)] if cur else [])


def test_backup_through_the_changer(setup):
    p = setup.cli("backup", setup.src, "--changer", setup.changer, "--slot", "2")
    assert "loading BKP002L8 from slot 2 into drive 0" in p.stdout
    assert "writing tape file 0: 32.0 MiB in 65536-byte records" in p.stdout
    assert "100%     32.0/32.0 MiB" in p.stderr  # the progress bar's last line (stderr)
    (job,) = setup.jobs()
    data = setup.src_file.read_bytes()
    assert (job["state"], job["cartridge"], job["file_number"], job["bytes"]) == (
        "done", "BKP002L8", 0, SRC_SIZE)
    assert job["drive"] == setup.drive_sg  # found in the library by its DVCID NAA
    (file0,) = tape_files(setup.lib / "BKP002L8.aws")
    label, back = labelled(file0)
    assert back == data and (label.job, label.blocks) == (job["id"], SRC_SIZE // 512)
    # computed on the target, over what the job wrote: label record and data
    assert job["digest_algorithm"] == "xxh3-128"  # the daemon's default
    assert job["digest"] == digest_of(job, file0)
    assert ops.where(setup.lib, "BKP002L8").label == "drive 0"


def test_a_second_backup_appends_file_1_and_unloads(setup):
    p = setup.cli("backup", setup.src, "--changer", setup.changer, "--barcode", "BKP002L8",
                  "--drive", setup.nst, "--skip", "2048", "--count", "4096", "--unload")
    assert "loading" not in p.stdout  # the cartridge was still in the drive
    assert "unloaded the cartridge to slot 2" in p.stdout
    job = setup.jobs()[-1]
    assert (job["state"], job["file_number"], job["bytes"], job["first_block"]) == (
        "done", 1, 4096 * 512, 2048)
    data = setup.src_file.read_bytes()
    files = tape_files(setup.lib / "BKP002L8.aws")
    assert [labelled(f)[1] for f in files] == [data, data[2048 * 512:6144 * 512]]
    assert labelled(files[1])[0].first_block == 2048
    assert ops.where(setup.lib, "BKP002L8").label == "slot 2"
    status = run("mtx", "-f", setup.changer, "status").stdout
    assert "Data Transfer Element 0:Empty" in status
    assert "Storage Element 2:Full :VolumeTag=BKP002L8" in status


def test_restore_of_job_1_is_byte_exact_and_verified(setup):
    # on a terminal the progress bar is redrawn in place
    leader, follower = pty.openpty()
    cmd = [sys.executable, "-m", "lio_xcopy", "restore", "1", setup.dst,
           "--changer", setup.changer, "--unload"]
    p = subprocess.Popen(cmd, stdout=follower, stderr=follower,
                         env={**os.environ, "LIO_XCOPY_CATALOG": str(setup.catalog)})
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert p.wait(timeout=600) == 0, b"".join(chunks).decode()
    os.close(leader)
    text = b"".join(chunks).decode()
    with setup.transcript.open("a") as f:
        f.write(f"# lio-xcopy restore 1 {setup.dst} --changer {setup.changer} --unload "
                f"(on a terminal; each \\r redraw shown as a line)\n"
                f"{text.replace(chr(13) + chr(10), chr(10)).replace(chr(13), chr(10))}\n")
    assert "loading BKP002L8 from slot 2 into drive 0" in text
    assert "\r  [" in text  # redrawn in place
    restore, backup1 = setup.jobs()[-1], setup.jobs()[0]
    assert verified(text, restore)
    assert (restore["kind"], restore["state"], restore["restored_job"]) == ("restore", "done", 1)
    assert (restore["digest"], restore["digest_algorithm"]) == (backup1["digest"],
                                                                backup1["digest_algorithm"])
    got = setup.dst_file.read_bytes()
    assert got[:SRC_SIZE] == setup.src_file.read_bytes()
    assert got[SRC_SIZE:] == bytes(4 * MiB)
    # and through the kernel's block layer, as an application reads it
    r = subprocess.run(["dd", f"if={setup.dst}", "bs=1M", f"count={SRC_SIZE // MiB}",
                        "iflag=direct", "status=none"], capture_output=True, timeout=120)
    assert r.stdout == setup.src_file.read_bytes()


def test_restore_latest_of_a_source_at_an_offset(setup):
    naa = setup.jobs()[0]["disk_naa"]
    setup.cli("restore", "--latest", "--source", f"naa.{naa}", setup.dst, "--changer",
              setup.changer, "--seek", "100", "--unload")
    got = setup.dst_file.read_bytes()
    src = setup.src_file.read_bytes()
    assert got[100 * 512:(100 + 4096) * 512] == src[2048 * 512:6144 * 512]  # job 2's range
    assert setup.jobs()[-1]["restored_job"] == 2


def test_operator_errors_are_one_line_and_change_nothing(setup):
    before = setup.jobs()
    p = setup.cli("backup", setup.src, "--changer", setup.changer, "--slot", "4", check=False)
    assert p.returncode == 1 and p.stderr.count("\n") == 1
    assert "slot 4 of" in p.stderr and "is empty: pick a full slot" in p.stderr
    p = setup.cli("restore", "99", setup.dst, "--changer", setup.changer, check=False)
    assert p.returncode == 1 and "no job 99" in p.stderr
    assert setup.jobs() == before


def test_a_standalone_drive(setup, lab):
    """``--drive`` alone: the lab's tape LUN, no changer; the cartridge is whatever the
    drive holds, so the catalog has no barcode for it."""
    clear_unit_attention(lab.tape_sg)
    for op in ("rewind", "erase"):  # blank, whatever earlier tests left on the lab's tape
        run("mt", "-f", lab.nst, op)
    p = setup.cli("backup", setup.src, "--drive", lab.nst, "--skip", "512", "--count", "1024")
    job = setup.jobs()[-1]
    assert (job["state"], job["cartridge"], job["file_number"]) == ("done", None, 0)
    assert "-> the cartridge in " + lab.nst in p.stdout
    p = setup.cli("restore", str(job["id"]), setup.dst, "--changer", setup.changer,
                  check=False)
    assert p.returncode == 1 and "went to a drive without a changer" in p.stderr
    p = setup.cli("restore", str(job["id"]), setup.dst, "--drive", lab.tape_sg, "--seek", "8")
    assert verified(p.stdout, setup.jobs()[-1])
    src = setup.src_file.read_bytes()
    assert setup.dst_file.read_bytes()[8 * 512:1032 * 512] == src[512 * 512:1536 * 512]


def test_a_killed_backup_is_failed_and_the_next_one_closes_its_file(setup, lab):
    """SIGKILL mid-copy: nothing can catch it. The target's copy manager goes on with
    the copy, which ends with the job's own filemark (one EXTENDED COPY); the next
    backup marks the job failed when it opens the catalog, waits for that copy to end,
    and appends."""
    cmd = [sys.executable, "-m", "lio_xcopy", "backup", lab.sd, "--changer",
           setup.changer, "--slot", "2", "--record", "16384"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env={**os.environ, "LIO_XCOPY_CATALOG": str(setup.catalog)})
    deadline = time.monotonic() + 300
    list_id = None
    while list_id is None:
        assert p.poll() is None and time.monotonic() < deadline, p.stdout.read()
        rows = [r for r in setup.jobs() if r["state"] == "running"]
        list_id = rows[0]["list_id"] if rows else None
        time.sleep(0.02)
    killed_id = rows[0]["id"]
    with sgio.SgIoDevice(lab.disk_sg) as poll:
        while True:
            try:
                st = copy_status(poll, list_id)
            except sgio.ScsiCommandError:  # the catalog has it before the target does
                time.sleep(0.02)
                continue
            moved = st.transferred_bytes or 0
            if moved > 0 or st.status != 0:
                break
            time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    assert 0 < moved < 96 * MiB, "the copy was not caught mid-way"
    assert [r["state"] for r in setup.jobs() if r["id"] == killed_id] == ["running"]
    # straight away, the next backup to the same cartridge
    p = setup.cli("backup", setup.src, "--changer", setup.changer, "--slot", "2",
                  "--count", "64", "--unload")
    assert f"job {killed_id} marked failed: interrupted: process" in p.stderr
    assert "closing tape file" not in p.stdout  # the orphaned copy wrote its filemark
    job = setup.jobs()[-1]
    assert (job["state"], job["file_number"]) == ("done", 3)
    killed = setup.jobs()[killed_id - 1]
    assert killed["state"] == "failed" and killed["file_number"] == 2
    files = tape_files(setup.lib / "BKP002L8.aws")
    assert len(files) == 4 and labelled(files[3])[1] == setup.src_file.read_bytes()[:64 * 512]
    # the orphaned copy is whole: the next job did not write into it
    assert len(labelled(files[2])[1]) == 96 * MiB
    p = setup.cli("catalog")
    assert f"\n{killed_id:>4}  backup  failed" in "\n" + p.stdout
    assert "interrupted: process" in p.stdout


def test_a_backup_job_is_one_extended_copy(setup, lab):
    """Two jobs to a fresh cartridge: the daemon's log shows one EXTENDED COPY each
    (its list identifier as the catalog has it), running locate, the label record,
    the data and the filemark; read back through st, tape file 1 is the label record,
    the data up to the filemark, then file 2; the restore is byte-exact and verified."""
    src = setup.src_file.read_bytes()
    before = len(lab.daemon.text())
    setup.cli("backup", setup.src, "--changer", setup.changer, "--slot", "1",
              "--count", "512")
    p = setup.cli("backup", setup.src, "--changer", setup.changer, "--slot", "1",
                  "--skip", "4096", "--count", "1024")
    assert "one EXTENDED COPY: locate to object " in p.stdout
    first, second = setup.jobs()[-2:]
    assert (first["file_number"], second["file_number"]) == (0, 1)
    assert (first["label_length"], second["label_length"]) == (512, 512)
    copies = re.findall(r"copy (\S+)/(\d+) started: (.*)", lab.daemon.text()[before:])
    assert [int(c[1]) for c in copies] == [first["list_id"], second["list_id"]]
    steps = copies[1][2].split("; ")
    assert steps[0].startswith("12h locate: logical object 6 ")  # label, 4 records, filemark
    assert steps[1].startswith("04h inline->stream: 512 bytes of inline data")
    assert all(s.startswith("00h block->stream") for s in steps[2:-1])
    assert steps[-1].startswith("10h write filemarks: 1 ")
    # through the kernel's st, as an operator reads it
    clear_unit_attention(setup.drive_sg)
    run("mt", "-f", setup.nst, "rewind")
    run("mt", "-f", setup.nst, "setblk", "0")
    run("mt", "-f", setup.nst, "fsf", "1")
    label_file, data_file = setup.lib.parent / "onejob-label.bin", setup.lib.parent / "onejob.bin"
    run("dd", f"if={setup.nst}", f"of={label_file}", "bs=64k", "count=1")
    label = label_file.read_bytes()
    assert len(label) == 512
    head = parse_label(label)
    assert (head.job, head.source_naa, head.first_block, head.blocks, head.block_size) == (
        second["id"], second["disk_naa"], 4096, 1024, 512)
    run("dd", f"if={setup.nst}", f"of={data_file}", "bs=64k")  # stops at the filemark
    assert data_file.read_bytes() == src[4096 * 512:5120 * 512]
    assert "File number=2, block number=0" in run("mt", "-f", setup.nst, "status").stdout
    p = setup.cli("restore", str(second["id"]), setup.dst, "--changer", setup.changer,
                  "--seek", "16", "--unload")
    restore = setup.jobs()[-1]
    assert verified(p.stdout, restore)
    got = setup.dst_file.read_bytes()
    assert got[16 * 512:1040 * 512] == src[4096 * 512:5120 * 512]
    assert restore["digest"] == second["digest"] == digest_of(
        second, label + src[4096 * 512:5120 * 512])
