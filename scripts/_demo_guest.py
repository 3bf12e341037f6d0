"""Guest side of scripts/demo: a serverless backup, end to end, through the real kernel.

Runs inside the VM (scripts/vm). The target side: the lio-xcopy daemon serves disk and
tape LUNs made with rtslib and exported with tcm_loop. The initiator side (the backup
server) sees /dev/sdX, /dev/nstN and /dev/sgN, and sends one EXTENDED COPY.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lio_xcopy.control import provision
from lio_xcopy.initiator import sgio
from lio_xcopy.initiator.copy import CopyRequest, run_copy

MiB = 1 << 20
DISK = 64 * MiB


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def sh(*cmd: str, show: bool = True) -> str:
    if show:
        print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"demo: `{' '.join(cmd)}` failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    return p.stdout + p.stderr


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


def demo(work: Path) -> int:
    step("2. Target host: provision LUNs with rtslib, export them over tcm_loop")
    luns = {
        "db0": provision.create_disk("db0", work / "db0.img", DISK),
        "restore0": provision.create_disk("restore0", work / "restore0.img", DISK),
        "restore1": provision.create_disk("restore1", work / "restore1.img", DISK),
        "clone0": provision.create_disk("clone0", work / "clone0.img", DISK),
        "tape0": provision.create_tape("tape0", work / "tape0.aws", 512 * MiB),
    }
    for lun in luns.values():
        provision.export_loopback(lun)
        print(f"  {lun.kind:4} {lun.name:9} backing {lun.path}  NAA {lun.naa}")
    sh("udevadm", "settle", show=False)
    dev = {name: provision.find_kernel_device(lun) for name, lun in luns.items()}
    db, tape = dev["db0"], dev["tape0"]
    print("  the backup server sees: " + ", ".join(
        f"{n}={d.block or d.tape} ({d.sg})" for n, d in dev.items()))

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
    xc = run_copy(str(db.sg), str(tape.sg), CopyRequest(), out=out)
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
    run_copy(str(tape.sg), str(dev["restore1"].sg), CopyRequest(), out=out)
    print("  " + out.getvalue().strip().splitlines()[-1].strip().split("\r")[-1].strip())
    bad1 = verify(dev["restore1"].block, files, src, mnt)

    step("9. Disk -> disk with stock sg_xcopy (block->block segments), db0 -> clone0")
    sh("sg_xcopy", f"if={db.sg}", f"of={dev['clone0'].sg}", "bs=512")
    bad2 = verify(dev["clone0"].block, files, src, mnt)

    step("Summary: backing up db0 (64 MiB) to tape")
    rate = xc.moved / MiB / xc.seconds
    print(f"  {'path':32} {'bytes':>12} {'time':>8} {'MiB/s':>8} {'crossed initiator':>18}")
    print(f"  {'EXTENDED COPY (serverless)':32} {xc.moved:>12} {xc.seconds:>7.2f}s {rate:>8.1f}"
          f" {xc_bytes + xc.initiator_bytes:>12} B in {xc_cmds} cmds")
    print(f"  {'dd if=/dev/sdX of=/dev/nst0':32} {DISK:>12} {dd_s:>7.2f}s "
          f"{DISK / MiB / dd_s:>8.1f} {dd_bytes:>12} B in {dd_cmds} cmds")
    print("  (crossed initiator: what the backup server's sd/st drivers and SG_IO moved for "
          "the copy, from the kernel's own counters)")
    ok = not (bad0 or bad1 or bad2)
    print("\n  RESULT: " + ("all restores identical to the originals" if ok
                            else "RESTORE MISMATCH"))
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
