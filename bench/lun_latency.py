"""An idle LUN's latency while another LUN runs long commands.

In one guest: a daemon, a disk LUN and a tape LUN of ``--tape-size`` bytes. TEST UNIT
READY goes to the disk again and again: first with nothing else running (the baseline),
then while the tape runs WRITE FILEMARKS 0xFFFFFF (until the cartridge is full), SPACE
over every filemark, and ERASE. For each phase it prints how many TURs were answered,
their median and worst latency, and the worst against the baseline's worst; and the
daemon's RSS before and after.

    scripts/vm python bench/lun_latency.py [--tape-size 16M]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _guest import Daemon, require_guest, run, work_dir


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def turs(sg: str, until: Callable[[], bool]) -> list[float]:
    """TEST UNIT READY latencies on ``sg`` until ``until()`` holds."""
    from lio_xcopy.scsi import spc
    from lio_xcopy.sg import sgio

    out = []
    with sgio.SgIoDevice(sg) as dev:
        while not until():
            t0 = time.monotonic()
            dev.execute(spc.TestUnitReady().encode(), timeout=600)
            out.append(time.monotonic() - t0)
    return out


def during(sg: str, call: Callable[[], object]) -> tuple[list[float], float]:
    """TUR latencies on ``sg`` while ``call`` runs on a thread; and how long it ran."""
    t = threading.Thread(target=call)
    t0 = time.monotonic()
    t.start()
    lat = turs(sg, lambda: not t.is_alive())
    t.join()
    return lat, time.monotonic() - t0


def main() -> int:
    require_guest("bench/lun_latency.py")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tape-size", default="16M", help="the tape's capacity (default 16M)")
    args = ap.parse_args()
    from lio_xcopy.control import provision
    from lio_xcopy.handler_config import parse_size
    from lio_xcopy.scsi import ssc
    from lio_xcopy.sg import sgio

    work = work_dir("lun_latency")
    pidfile, log = work / "daemon.pid", work / "daemon.log"
    pidfile.unlink(missing_ok=True)
    daemon = Daemon.start("lio-xcopy", [sys.executable, "-m", "lio_xcopy", "daemon",
                                        "--pidfile", str(pidfile)], log,
                          lambda p: pidfile.exists())
    try:
        provision.delete_all()
        disk = provision.create_disk("latdisk", work / "disk.img", 16 << 20)
        tape = provision.create_tape("lattape", work / "tape.aws", parse_size(args.tape_size))
        for lun in (disk, tape):
            provision.export_loopback(lun)
        d, t = provision.find_kernel_device(disk), provision.find_kernel_device(tape)
        for sg in (d.sg, t.sg):
            for _ in range(3):
                run("sg_turs", str(sg), check=False)
        rss0 = _rss_kib(daemon.pid)
        end = time.monotonic() + 3
        phases = {"idle": (turs(str(d.sg), lambda: time.monotonic() > end), 3.0)}
        with sgio.SgIoDevice(str(t.sg)) as dev:
            dev.execute(ssc.Rewind().encode())
            for name, cdb in [
                ("WRITE FILEMARKS 0xFFFFFF", ssc.WriteFilemarks6(filemark_count=0xFFFFFF)),
                ("SPACE 0x7FFFFF filemarks", ssc.Space6(code=ssc.SPACE_FILEMARKS,
                                                         count=0x7FFFFF)),
                ("ERASE", ssc.Erase6(long=1)),
            ]:
                if name == "ERASE" or name.startswith("SPACE"):
                    dev.execute(ssc.Rewind().encode(), timeout=600)
                phases[name] = during(str(d.sg), lambda c=cdb: dev.execute(
                    c.encode(), timeout=600, check=False))
                if name.startswith("WRITE"):
                    marks = (work / "tape.aws").stat().st_size // 6
            rss1 = _rss_kib(daemon.pid)
        base = max(phases["idle"][0])
        print(f"\n{'while the tape runs':<28} {'s':>6} {'TURs':>6} {'median ms':>10} "
              f"{'worst ms':>9} {'worst/idle':>10}")
        for name, (lat, secs) in phases.items():
            med = statistics.median(lat) * 1000 if lat else float("nan")
            worst = max(lat) * 1000 if lat else float("nan")
            print(f"{name:<28} {secs:6.1f} {len(lat):6d} {med:10.1f} {worst:9.1f} "
                  f"{worst / (base * 1000):10.1f}")
        print(f"daemon RSS: {rss0} KiB before, {rss1} KiB after "
              f"({(rss1 - rss0) / 1024:+.1f} MiB) over {marks} filemarks")
    finally:
        provision.delete_all()
        daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
