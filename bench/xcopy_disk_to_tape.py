"""EXTENDED COPY disk->tape against the initiator's dd and the target host's own dd.

Run in the VM: ``scripts/vm python bench/xcopy_disk_to_tape.py [--sizes 16M,64M,128M]
[--runs 2]``. In one guest run it serves a disk and a tape LUN from files in /dev/shm and
times, for each size, with the order alternating between runs:

* ``xcopy``: one EXTENDED COPY disk->tape sent by ``lio-xcopy copy`` (64 KiB records);
* ``dd-initiator``: ``dd if=/dev/sdX of=/dev/nstN bs=64k iflag=direct`` through the
  same LUNs (the classic backup: every byte crosses the initiator twice);
* ``dd-local``: ``dd`` from the disk's backing file to a file beside it on the target
  host (the physical limit of this machine's storage).

It prints MB/s and the ratios xcopy/dd-initiator and xcopy/dd-local per size: read the
ratios, not the absolute figures, which move between runs under software emulation.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _guest import MB, Daemon, require_guest, run

from lio_xcopy.control import provision
from lio_xcopy.handler_config import parse_size
from lio_xcopy.initiator.copy import CopyRequest, run_copy

RECORD = 65536


def timed(fn) -> float:
    t = time.monotonic()
    fn()
    return time.monotonic() - t


def main() -> int:
    require_guest("bench/xcopy_disk_to_tape.py")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="16M,64M,128M")
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    biggest = max(sizes)
    shm = Path("/dev/shm/lio-xcopy-bench-xcopy")
    shm.mkdir(parents=True, exist_ok=True)
    log = Path(os.environ.get("LIO_XCOPY_WORK", "/tmp")) / "bench-xcopy-daemon.log"
    pidfile = shm / "pid"
    pidfile.unlink(missing_ok=True)
    daemon = Daemon.start("lio-xcopy", [sys.executable, "-m", "lio_xcopy", "daemon",
                                        "--pidfile", str(pidfile)], log,
                          lambda p: pidfile.exists())
    results: dict[tuple[int, str], list[float]] = {}
    try:
        provision.delete_all()
        disk = provision.create_disk("benchdisk", shm / "disk.img", biggest)
        tape = provision.create_tape("benchtape", shm / "tape.aws", 2 * biggest + (64 << 20))
        for lun in (disk, tape):
            provision.export_loopback(lun)
        d, t = provision.find_kernel_device(disk), provision.find_kernel_device(tape)
        run("dd", "if=/dev/urandom", f"of={disk.path}", "bs=1M", f"count={biggest >> 20}",
            "conv=notrunc,fsync")
        print(f"disk {d.block} ({d.sg}), tape {t.tape} ({t.sg}); backing files in {shm} "
              f"(tmpfs); {os.cpu_count()} cpu(s)", flush=True)
        local = shm / "local.copy"

        def xcopy(size: int) -> float:
            run("mt", "-f", str(t.tape), "rewind")
            out = io.StringIO()
            return run_copy(str(d.sg), str(t.sg), CopyRequest(count=size // 512), out=out,
                            progress=False).seconds

        def dd_initiator(size: int) -> float:
            run("mt", "-f", str(t.tape), "rewind")
            run("mt", "-f", str(t.tape), "setblk", "0")
            return timed(lambda: run("dd", f"if={d.block}", f"of={t.tape}", f"bs={RECORD}",
                                     "iflag=direct", f"count={size // RECORD}"))

        def dd_local(size: int) -> float:
            local.unlink(missing_ok=True)
            s = timed(lambda: run("dd", f"if={disk.path}", f"of={local}", "bs=1M",
                                  f"count={size >> 20}", "conv=fsync"))
            local.unlink()
            return s

        ways = {"xcopy": xcopy, "dd-initiator": dd_initiator, "dd-local": dd_local}
        for r in range(args.runs):
            order = list(ways) if r % 2 == 0 else list(reversed(ways))
            for size in sizes:
                for name in order:
                    secs = ways[name](size)
                    results.setdefault((size, name), []).append(size / MB / secs)
                    print(f"  run {r + 1} {size >> 20:>5} MiB {name:13} {size / MB / secs:8.1f}"
                          " MB/s", flush=True)
    finally:
        provision.delete_all()
        rc = daemon.stop()
        for f in shm.glob("*"):
            f.unlink()
    print(f"\nmedian MB/s over {args.runs} run(s); ratios > 1: xcopy faster")
    print(f"{'size':>8} {'xcopy':>9} {'dd-initiator':>13} {'dd-local':>9} "
          f"{'xcopy/dd-init':>14} {'xcopy/dd-local':>15}")
    for size in sizes:
        x, i, lo = (statistics.median(results[(size, n)])
                    for n in ("xcopy", "dd-initiator", "dd-local"))
        print(f"{size >> 20:>6}Mi {x:9.1f} {i:13.1f} {lo:9.1f} {x / i:14.2f} {x / lo:15.2f}")
    print(f"\ndaemon exit {rc}; its log: {log}")
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
