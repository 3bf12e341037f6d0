"""Guest side of scripts/demo: a serverless backup, end to end, through the real kernel.

Runs inside the VM (scripts/vm). The target side: the lio-xcopy daemon serves disk and
tape LUNs and a tape library (an SMC-3 changer and its drives) made with rtslib and
exported with tcm_loop. The initiator side (the backup server) sees /dev/sdX, /dev/nstN
and /dev/sgN, sends one EXTENDED COPY, then runs the product's backup job flow
(`lio-xcopy backup` through the changer, `catalog`, a verified `restore`). Every check
that fails makes the demo exit non-zero.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

import xxhash

from lio_xcopy.control import library, provision
from lio_xcopy.devices.awstape import AwsTape
from lio_xcopy.errors import LioXcopyError
from lio_xcopy.initiator.copy import CopyRequest, run_copy
from lio_xcopy.scsi.xcopy import DigestAlgorithm
from lio_xcopy.sg import sgio

MiB = 1 << 20
DISK = 64 * MiB
BARCODES = library.lto_barcodes(3)  # L00001L8 .. L00003L8 in slots 1-3

# The backup server's CLI runs as its own process (python -m lio_xcopy). SG_IO moves data
# that no kernel byte counter sees, so, as for the in-process copy of step 5, the tool's
# own SgIoDevice counters are summed: this module, put first on the CLI's PYTHONPATH,
# wraps SgIoDevice.execute to add them up and writes the totals at exit. It only counts.
METER = """\
import atexit, json, os
from lio_xcopy.sg import sgio
_totals = {"bytes": 0}
_execute = sgio.SgIoDevice.execute
def execute(self, *args, **kwargs):
    before = self.bytes_in + self.bytes_out
    try:
        return _execute(self, *args, **kwargs)
    finally:
        _totals["bytes"] += self.bytes_in + self.bytes_out - before
def _write():
    with open(os.environ["DEMO_SGIO_METER"], "w") as f:
        json.dump(_totals, f)
sgio.SgIoDevice.execute = execute
atexit.register(_write)
"""


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def sh(*cmd: str, show: bool = True) -> str:
    if show:
        print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"demo: `{' '.join(cmd)}` failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    return p.stdout + p.stderr


def fail(msg: str) -> NoReturn:
    sys.exit(f"demo: CHECK FAILED: {msg}")


def check(ok: bool, msg: str) -> None:
    if not ok:
        fail(msg)


def cli(work: Path, *args: str) -> tuple[str, int]:
    """Run ``lio-xcopy ARGS`` (the real entry point, ``python -m lio_xcopy``) as the
    operator would, showing its output as it comes; its text and the bytes its SG_IO
    commands moved."""
    print("$ lio-xcopy " + " ".join(args), flush=True)
    meter = work / "sgio-meter.json"
    meter.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DEMO_SGIO_METER": str(meter),
           "PYTHONPATH": os.pathsep.join(
               [str(work / "meter"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    p = subprocess.Popen([sys.executable, "-m", "lio_xcopy", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=env)
    assert p.stdout is not None
    text = []
    for line in p.stdout:
        text.append(line)
        print("  " + line.rstrip("\n").replace("\r", "\n  "), flush=True)
    rc = p.wait()
    if rc != 0:
        fail(f"`lio-xcopy {' '.join(args)}` exited {rc}")
    sgio_bytes = json.loads(meter.read_text())["bytes"] if meter.exists() else 0
    return "".join(text), sgio_bytes


def clear_unit_attention(*sgs: str) -> None:
    """New LUNs make LIO report REPORTED LUNS DATA HAS CHANGED once per LUN: take it."""
    for sg in sgs:
        for _ in range(3):
            if subprocess.run(["sg_turs", sg], capture_output=True).returncode == 0:
                break


def mtx_status(changer: str) -> str:
    out = sh("mtx", "-f", changer, "status")
    lines = [x.rstrip() for x in out.splitlines() if x.strip()]
    print("  " + "\n  ".join(lines))
    return "\n".join(lines)


def sqlite3_job(catalog: Path, job_id: int) -> sqlite3.Row:
    """One job's row, read from the catalog file the CLI wrote."""
    db = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        db.close()
    check(row is not None and row["state"] == "done" and row["bytes"] == DISK,
          f"catalog: job {job_id} is not a done backup of {DISK} bytes")
    return row


def kernel_device(lun: provision.Lun) -> provision.KernelDevice:
    """The initiator's device of a LUN; if it does not come, what the kernel did see."""
    try:
        return provision.find_kernel_device(lun, timeout=90)
    except LioXcopyError as e:
        for d in sorted(Path("/sys/bus/scsi/devices").glob("*:*:*:*")):
            kids = sorted(p.name for p in d.iterdir() if p.name.startswith(("scsi_", "block")))
            page = d / "vpd_pg83"
            print(f"  {d.name} type {(d / 'type').read_text().strip()} {kids} "
                  f"vpd83 {page.read_bytes().hex() if page.exists() else '-'}")
        print(subprocess.run(["dmesg"], capture_output=True, text=True).stdout[-4000:])
        fail(str(e))


def counters(*paths: str) -> list[sgio.IoCounters]:
    sh("udevadm", "settle", show=False)
    return [sgio.io_counters(p) for p in paths]


def crossed(before: list[sgio.IoCounters], after: list[sgio.IoCounters]) -> tuple[int, int]:
    """Bytes the initiator's sd/st drivers moved, and SCSI commands sent, in between."""
    diffs = [a - b for a, b in zip(after, before, strict=True)]
    return (sum(d.read_bytes + d.written_bytes for d in diffs),
            sum(d.requests for d in diffs))


def verify(block: Path, files: list[Path], src: Path, mnt: Path) -> int:
    """Mount a restored disk read-only and count the files that differ."""
    sh("blockdev", "--flushbufs", str(block), show=False)
    sh("mount", "-o", "ro", str(block), str(mnt))
    try:
        bad = sum((mnt / p.relative_to(src)).read_bytes() != p.read_bytes() for p in files)
    finally:
        sh("umount", str(mnt))
    print(f"  {len(files) - bad} of {len(files)} files identical")
    return bad


def main() -> int:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="lio-xcopy-demo-"))
    log = work / "daemon.log"
    step("1. Target host: start the lio-xcopy daemon (TCMU userspace, subtype 'xcopy')")
    pidfile = work / "pid"
    with log.open("w") as f:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "lio_xcopy", "daemon", "--pidfile", str(pidfile)],
            stdout=f, stderr=subprocess.STDOUT)
    while not pidfile.exists():
        if daemon.poll() is not None:
            sys.exit(f"demo: the daemon did not start:\n{log.read_text()}")
        time.sleep(0.1)
    print(f"  daemon pid {daemon.pid}, log {log}")
    try:
        return demo(work)
    finally:
        provision.delete_all()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        print("\n--- daemon log ---\n" + log.read_text())
        print(f"demo: {time.monotonic() - started:.0f} s in the guest")


def demo(work: Path) -> int:
    step("2. Target host: provision LUNs and a tape library with rtslib, export them over "
         "tcm_loop")
    libdir = work / "lib0"
    library.create_library(libdir, slots=4, drives=2, capacity=256 * MiB, barcodes=BARCODES,
                           drive_luns=["libtape0", "libtape1"])
    print(f"  library {libdir}: 4 slots, 2 drives, cartridges {', '.join(BARCODES)} "
          "in slots 1-3")
    luns = {
        "db0": provision.create_disk("db0", work / "db0.img", DISK),
        "restore0": provision.create_disk("restore0", work / "restore0.img", DISK),
        "restore1": provision.create_disk("restore1", work / "restore1.img", DISK),
        "clone0": provision.create_disk("clone0", work / "clone0.img", DISK),
        "restore2": provision.create_disk("restore2", work / "restore2.img", DISK),
        "tape0": provision.create_tape("tape0", work / "tape0.aws", 512 * MiB),
        "lib0": provision.create_changer("lib0", libdir),
        "libtape0": provision.create_library_drive("libtape0", libdir, 0),
        "libtape1": provision.create_library_drive("libtape1", libdir, 1),
    }
    for lun in luns.values():
        provision.export_loopback(lun)
        print(f"  {lun.kind:7} {lun.name:9} backing {lun.path}  NAA {lun.naa}")
    sh("udevadm", "settle", show=False)
    dev = {name: kernel_device(lun) for name, lun in luns.items()}
    db, tape = dev["db0"], dev["tape0"]
    print("  the backup server sees: " + ", ".join(
        f"{n}={d.block or d.tape} ({d.sg})" if d.block or d.tape else f"{n}={d.sg}"
        for n, d in dev.items()))

    step("3. Backup server: what stock tools see (3PC=1: the LUN takes EXTENDED COPY)")
    inq = sh("sg_inq", str(db.sg))
    print("  " + "\n  ".join(x.strip() for x in inq.splitlines()
                             if re.search(r"identification|PDT=|3PC=", x)))
    print("  " + sh("sg_readcap", str(db.sg)).strip().replace("\n", "\n  "))

    step("4. Backup server: a filesystem with files on db0")
    mnt = work / "mnt"
    mnt.mkdir()
    sh("modprobe", "ext4", show=False)
    sh("mkfs.ext4", "-q", "-F", str(db.block))
    sh("mount", str(db.block), str(mnt))
    src = Path("/usr/share/doc")
    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.is_symlink())[:600]
    for p in files:
        dst = mnt / p.relative_to(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(p.read_bytes())
    total = sum(p.stat().st_size for p in files)
    print(f"  copied {len(files)} files ({total / 1024:.0f} KiB) from {src}")
    sh("umount", str(mnt))
    sh("blockdev", "--flushbufs", str(db.block), show=False)

    step("5. SERVERLESS BACKUP: one EXTENDED COPY, db0 -> tape0, moved by the target host")
    sh("mt", "-f", str(tape.tape), "rewind")
    watch = [str(db.sg), str(tape.sg)]
    before = counters(*watch)
    print(f"$ lio-xcopy copy if={db.sg} of={tape.sg}")
    out = io.StringIO()
    xc = run_copy(str(db.sg), str(tape.sg), CopyRequest(), out=out, err=out)
    after = counters(*watch)
    lines = [x.strip() for x in out.getvalue().replace("\r", "\n").splitlines()]
    print("  " + "\n  ".join(x for x in lines if x))
    xc_bytes, xc_cmds = crossed(before, after)
    sh("mt", "-f", str(tape.tape), "weof", "1")  # close the backup as tape file 0

    step("6. Classic backup for comparison: the backup server reads db0 and writes tape0")
    before = counters(*watch)
    print(f"$ dd if={db.block} of={tape.tape} bs=64k iflag=direct")
    t = time.monotonic()
    sh("dd", f"if={db.block}", f"of={tape.tape}", "bs=64k", "iflag=direct", show=False)
    dd_s = time.monotonic() - t
    after = counters(*watch)
    dd_bytes, dd_cmds = crossed(before, after)
    print(f"  {DISK / MiB:.0f} MiB in {dd_s:.2f} s ({DISK / MiB / dd_s:.1f} MiB/s); the tape "
          "now holds the XCOPY backup as file 0 and the dd backup as file 1")

    step("7. Restore file 0 with dd from /dev/nst0 to restore0, and compare every file")
    sh("mt", "-f", str(tape.tape), "rewind")
    sh("dd", f"if={tape.tape}", f"of={dev['restore0'].block}", "bs=64k", "oflag=direct")
    bad0 = verify(dev["restore0"].block, files, src, mnt)

    step("8. Restore file 0 with a tape->disk EXTENDED COPY to restore1, and compare")
    sh("mt", "-f", str(tape.tape), "rewind")
    print(f"$ lio-xcopy copy if={tape.sg} of={dev['restore1'].sg}")
    out = io.StringIO()
    run_copy(str(tape.sg), str(dev["restore1"].sg), CopyRequest(), out=out, err=out)
    print("  " + out.getvalue().strip().splitlines()[-1].strip().split("\r")[-1].strip())
    bad1 = verify(dev["restore1"].block, files, src, mnt)

    step("9. Disk -> disk with stock sg_xcopy (block->block segments), db0 -> clone0")
    sh("sg_xcopy", f"if={db.sg}", f"of={dev['clone0'].sg}", "bs=512")
    bad2 = verify(dev["clone0"].block, files, src, mnt)

    step("10. Backup server: the tape library as mtx sees it (before the backup job)")
    changer = str(dev["lib0"].sg)
    drives = [str(dev[n].sg) for n in ("libtape0", "libtape1")]
    clear_unit_attention(changer, *drives)
    before_status = mtx_status(changer)
    check("Data Transfer Element 0:Empty" in before_status
          and f"Storage Element 1:Full :VolumeTag={BARCODES[0]}" in before_status,
          "mtx status: drive 0 should be empty and slot 1 hold " + BARCODES[0])

    step("11. BACKUP JOB: lio-xcopy backup db0 to the cartridge in slot 1 (load, EXTENDED "
         "COPY, filemark, catalogued)")
    catalog = work / "catalog.db"
    os.environ["LIO_XCOPY_CATALOG"] = str(catalog)
    print(f"  (catalog: LIO_XCOPY_CATALOG={catalog})")
    (work / "meter").mkdir()
    (work / "meter" / "sitecustomize.py").write_text(METER)
    watch = [str(db.sg), changer, *drives]
    before = counters(*watch)
    text, job_sgio = cli(work, "backup", str(db.block), "--changer", changer, "--slot", "1")
    after = counters(*watch)
    job_kernel, job_cmds = crossed(before, after)
    check(job_kernel + job_sgio < MiB, f"{job_kernel + job_sgio} bytes crossed the backup "
          "server for the backup job: the data should not")
    m = re.search(r"^job (\d+) done: .* in tape file 0 of (\S+), (\S+) ([0-9a-f]+)$", text,
                  re.M)
    if m is None or m.group(2) != BARCODES[0]:
        fail(f"the backup did not report job done in tape file 0 of {BARCODES[0]}")
    job_id, algorithm, job_sha = m.group(1), m.group(3), m.group(4)
    check(f"loading {BARCODES[0]} from slot 1 into drive" in text,
          "the backup did not load the cartridge from slot 1")
    # the job wrote its label record, then db0: the copy manager digested both
    with AwsTape.open_readonly(libdir / f"{BARCODES[0]}.aws") as cart:
        label = cart.dump_records()[0] or b""
    hasher = {"sha256": hashlib.sha256, "xxh3-128": xxhash.xxh3_128}[algorithm]
    image_sha = hasher(label + (work / "db0.img").read_bytes()).hexdigest()
    check(job_sha == image_sha, f"the copy manager's {algorithm} {job_sha} is not that of "
          f"the label record and db0's backing file {image_sha}")
    print(f"  target host: {algorithm} of the label record ({len(label)} bytes) and "
          f"{work / 'db0.img'} = {image_sha[:16]}...: the same")
    loaded = mtx_status(changer)
    check(f"(Storage Element 1 Loaded):VolumeTag = {BARCODES[0]}" in loaded
          and "Storage Element 1:Empty" in loaded,
          f"mtx status: {BARCODES[0]} should now be in a drive, slot 1 empty")

    step("12. Backup server: the catalog, and a verified restore of the job to restore2")
    text, _ = cli(work, "catalog")
    row = re.search(rf"^\s*{job_id}\s+backup\s+done\s.*\s{BARCODES[0]}\s+0\s", text, re.M)
    check(row is not None, f"the catalog does not list job {job_id} as a done backup")
    job = sqlite3_job(catalog, int(job_id))
    text, _ = cli(work, "restore", job_id, str(dev["restore2"].block), "--changer", changer,
                  "--unload")
    title = DigestAlgorithm.named(algorithm).title
    check(f"verified: {title} matches the backup's" in text,
          "the restore did not print that the digest was verified")
    bad3 = verify(dev["restore2"].block, files, src, mnt)
    check(bad3 == 0, f"{bad3} restored file(s) differ")
    after_status = mtx_status(changer)
    check(after_status.splitlines()[1:] == before_status.splitlines()[1:],
          "mtx status: the cartridge did not go back to slot 1")

    step("13. Target host: lio-xcopy status")
    text, _ = cli(work, "status")
    for name in luns:
        check(re.search(rf"^\S.* {name}: ", text, re.M) is not None,
              f"lio-xcopy status does not list {name}")
    check("NOT SERVED" not in text and "daemon: pid" in text,
          "lio-xcopy status: a LUN is not served, or the daemon is not running")

    step("Summary: backing up db0 (64 MiB) to tape")
    rate = xc.moved / MiB / xc.seconds
    print(f"  {'path':32} {'bytes':>12} {'time':>8} {'MiB/s':>8} {'crossed initiator':>18}")
    print(f"  {'EXTENDED COPY (serverless)':32} {xc.moved:>12} {xc.seconds:>7.2f}s {rate:>8.1f}"
          f" {xc_bytes + xc.initiator_bytes:>12} B in {xc_cmds} cmds")
    print(f"  {'dd if=/dev/sdX of=/dev/nst0':32} {DISK:>12} {dd_s:>7.2f}s "
          f"{DISK / MiB / dd_s:>8.1f} {dd_bytes:>12} B in {dd_cmds} cmds")
    job_s = job["ended"] - job["started"]
    print(f"  {'lio-xcopy backup (whole job)':32} {job['bytes']:>12} {job_s:>7.2f}s "
          f"{job['bytes'] / MiB / job_s:>8.1f} {job_kernel + job_sgio:>12} B in {job_cmds} cmds")
    print("  (crossed initiator: what the backup server's sd/st drivers and SG_IO moved for "
          "the copy, from the kernel's own counters)")
    print("  (the backup job's time runs from its catalog start to its end: load the "
          "cartridge, position, copy, digest, filemark; its commands include the changer's)")
    ok = not (bad0 or bad1 or bad2 or bad3)
    print("\n  RESULT: " + ("all restores identical to the originals" if ok
                            else "RESTORE MISMATCH"))
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
