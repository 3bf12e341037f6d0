"""Guest side of scripts/demo: a backup to tape and a restore, through the real kernel.

Runs inside the VM (scripts/vm): starts the lio-xcopy daemon, provisions a disk and a
tape LUN with rtslib, exports them with tcm_loop, and drives them with stock tools.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lio_xcopy.control import provision

MiB = 1 << 20


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def sh(*cmd: str, show: bool = True) -> str:
    if show:
        print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"demo: `{' '.join(cmd)}` failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    return p.stdout + p.stderr


def timed_dd(src: str, dst: str, nbytes: int, extra: tuple[str, ...] = ()) -> float:
    print(f"$ dd if={src} of={dst} bs=1M count={nbytes // MiB} {' '.join(extra)}", flush=True)
    t = time.monotonic()
    sh("dd", f"if={src}", f"of={dst}", "bs=1M", f"count={nbytes // MiB}", *extra, show=False)
    dt = time.monotonic() - t
    print(f"  {nbytes / MiB:.0f} MiB in {dt:.2f} s = {nbytes / MiB / dt:.1f} MiB/s", flush=True)
    return dt


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="lio-xcopy-demo-"))
    log = work / "daemon.log"
    step("1. Start the lio-xcopy daemon (TCMU userspace half, subtype 'xcopy')")
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
        daemon.wait(timeout=30)
        print("\n--- daemon log ---\n" + log.read_text())


def demo(work: Path) -> int:
    size = 64 * MiB
    step("2. Provision LUNs with rtslib and export them over tcm_loop")
    db = provision.create_disk("db0", work / "db0.img", size)
    restore = provision.create_disk("restore0", work / "restore0.img", size)
    tape = provision.create_tape("tape0", work / "tape0.aws", 256 * MiB)
    for lun in (db, restore, tape):
        provision.export_loopback(lun)
        print(f"  {lun.kind:4} {lun.name:9} backing {lun.path}  NAA {lun.naa}")
    sh("udevadm", "settle", show=False)
    d_db, d_restore, d_tape = (provision.find_kernel_device(x) for x in (db, restore, tape))
    print(f"  initiator sees: {d_db.block} ({d_db.sg}), {d_restore.block} ({d_restore.sg}),"
          f" tape {d_tape.tape} ({d_tape.sg})")

    step("3. What the initiator's stock tools see")
    inq = sh("sg_inq", str(d_db.sg))
    print("  " + "\n  ".join(line for line in inq.splitlines()
                             if re.search(r"identification|revision level|PDT=", line)))
    vpd = sh("sg_vpd", "-p", "di", str(d_db.sg))
    print("  " + "\n  ".join(line.strip() for line in vpd.splitlines() if "0x6001405" in line))
    print("  " + sh("sg_readcap", str(d_db.sg)).strip().replace("\n", "\n  "))
    print("  " + sh("mt", "-f", str(d_tape.tape), "status").strip().replace("\n", "\n  "))

    step("4. A filesystem with files on the disk LUN")
    mnt = work / "mnt"
    mnt.mkdir()
    sh("modprobe", "ext4", show=False)
    sh("mkfs.ext4", "-q", "-F", str(d_db.block))
    sh("mount", str(d_db.block), str(mnt))
    src = Path("/usr/share/doc")
    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.is_symlink())[:400]
    for p in files:
        dst = mnt / p.relative_to(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(p.read_bytes())
    total = sum(p.stat().st_size for p in files)
    print(f"  copied {len(files)} files ({total / 1024:.0f} KiB) from {src}")
    sh("umount", str(mnt))

    step("5. Classic backup: the initiator reads the disk and writes the tape (dd)")
    sh("mt", "-f", str(d_tape.tape), "rewind")
    sh("mt", "-f", str(d_tape.tape), "setblk", "0")
    timed_dd(str(d_db.block), str(d_tape.tape), size, ("iflag=direct",))
    st = sh("mt", "-f", str(d_tape.tape), "status")
    print("  " + next(line.strip() for line in st.splitlines() if "File number" in line))
    print(f"  cartridge file: {tape.path} ({tape.path.stat().st_size} bytes, AWSTAPE)")

    step("6. Restore: tape -> second disk LUN, then compare every file")
    sh("mt", "-f", str(d_tape.tape), "rewind")
    timed_dd(str(d_tape.tape), str(d_restore.block), size, ("oflag=direct",))
    sh("mount", "-o", "ro", str(d_restore.block), str(mnt))
    bad = [p for p in files if (mnt / p.relative_to(src)).read_bytes() != p.read_bytes()]
    sh("umount", str(mnt))
    if bad:
        print(f"  RESTORE MISMATCH in {len(bad)} files, e.g. {bad[0]}")
        return 1
    print(f"  all {len(files)} restored files are identical to the originals")

    step("Done")
    print("  Served by one daemon through the real kernel: 2 disk LUNs and 1 tape LUN.\n"
          "  Next (issue 3): one EXTENDED COPY moves the disk to tape on the target host,\n"
          "  without these bytes crossing the initiator.")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
