"""EXTENDED COPY in four directions against the target host's own dd of the same bytes.

For disk->tape also against the initiator's dd.

Run in the VM: ``scripts/vm python bench/xcopy_disk_to_tape.py [--sizes 64M,256M]
[--runs 2] [--ways disk-tape,tape-disk,disk-disk,tape-tape]``. In one guest run it
serves two disks and two tapes from files in /dev/shm and times, for each size and
direction, with the order alternating between runs:

* ``xcopy``: one EXTENDED COPY sent by ``lio-xcopy copy`` (64 KiB records on tape):
  disk->tape, tape->disk (the records disk->tape just wrote), disk->disk and
  tape->tape (those records again, onto the second tape);
* ``dd``: ``dd bs=1M conv=fsync`` from the source's backing file to a file beside it on
  the target host (the physical limit of this machine's storage);
* ``dd-initiator`` (disk->tape only): ``dd if=/dev/sdX of=/dev/nstN bs=64k
  iflag=direct`` through the same LUNs (the classic backup: every byte crosses the
  initiator twice).

It prints MB/s, the ratio dd time / xcopy time, and CPU seconds per GiB moved: the
daemon's (every thread, /proc/PID/stat) for xcopy, dd's own for dd. Read the ratios,
not the absolute figures, which move between runs under software emulation. Then the
guest's SHA-256 and XXH3-128 speeds (the copy's digest, RECEIVE COPY DIGEST, hashes
every byte: XXH3-128 by default, SHA-256 with ``lio-xcopy daemon --copy-digest sha256``).
/dev/shm holds five files of the largest size at once: at the default 4 GiB of guest
memory that is 256 MiB at most; 1 GiB needs ``VM_MEMORY=12G`` (five 1 GiB files and
the tape's record headers do not fit the 4 GiB of an 8 GiB guest).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _guest import MB, Daemon, require_guest, run
from _ratios import Sample, print_table

from lio_xcopy.control import provision
from lio_xcopy.handler_config import parse_size
from lio_xcopy.initiator.copy import CopyRequest, run_copy

RECORD = 65536
WAYS = ("disk-tape", "tape-disk", "disk-disk", "tape-tape")


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


#: OpenSSL's SHA-256 code paths (OPENSSL_ia32cap masks): the guest's emulated CPU runs
#: some much slower than others
HASH_PATHS = {"default": "", "without SHA-NI": ":~0x20000000",
              "without AVX, AVX2, SHA-NI": "~0x1000000000000000:~0x20000020"}
HASH_PROBE = ("import hashlib, os, time; d = os.urandom(32 << 20); t = time.monotonic(); "
              "hashlib.sha256(d).digest(); print((32 << 20) / 1e6 / (time.monotonic() - t))")


def hash_speeds() -> dict[str, float]:
    """MB/s of hashlib's SHA-256 in this guest (what the copy's digest costs), for
    each of OpenSSL's code paths."""
    out = {}
    for name, mask in HASH_PATHS.items():
        env = {**os.environ, "OPENSSL_ia32cap": mask} if mask else dict(os.environ)
        p = subprocess.run([sys.executable, "-c", HASH_PROBE], capture_output=True, text=True,
                           env=env, timeout=600, check=True)
        out[name] = float(p.stdout)
    return out


XXH3_PROBE = ("import os, time, xxhash; d = os.urandom(32 << 20); t = time.monotonic(); "
              "xxhash.xxh3_128(d).digest(); print((32 << 20) / 1e6 / (time.monotonic() - t))")


def xxh3_speed() -> float:
    """MB/s of XXH3-128 in this guest (the daemon's default copy digest)."""
    p = subprocess.run([sys.executable, "-c", XXH3_PROBE], capture_output=True, text=True,
                       timeout=600, check=True)
    return float(p.stdout)


def main() -> int:
    require_guest("bench/xcopy_disk_to_tape.py")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="64M,256M")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--ways", default=",".join(WAYS), help=f"some of {','.join(WAYS)}")
    args = ap.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    ways = [w for w in WAYS if w in args.ways.split(",")]
    if "tape-disk" in ways or "tape-tape" in ways:
        ways = ["disk-tape", *[w for w in ways if w != "disk-tape"]]  # it fills the tape
    biggest = max(sizes)
    # two disks, two tapes (records and their headers) and dd's copy, at the largest size
    need = 5 * biggest + biggest // 16 + (64 << 20)
    shm_usage = shutil.disk_usage("/dev/shm")
    if shm_usage.free < need:
        want = need + shm_usage.used  # the guest's /dev/shm is half its memory
        raise SystemExit(
            f"bench/xcopy_disk_to_tape.py: /dev/shm has {shm_usage.free >> 20} MiB free and "
            f"--sizes up to {biggest >> 20} MiB need {need >> 20} MiB: free it, or run "
            f"with VM_MEMORY={-(-2 * want // (1 << 30))}G")
    shm = Path("/dev/shm/lio-xcopy-bench-xcopy")
    shm.mkdir(parents=True, exist_ok=True)
    log = Path(os.environ.get("LIO_XCOPY_WORK", "/tmp")) / "bench-xcopy-daemon.log"
    pidfile = shm / "pid"
    pidfile.unlink(missing_ok=True)
    daemon = Daemon.start("lio-xcopy", [sys.executable, "-m", "lio_xcopy", "daemon",
                                        "--pidfile", str(pidfile)], log,
                          lambda p: pidfile.exists())
    results: dict[tuple[int, str, str], list[Sample]] = {}
    initiator: dict[int, list[float]] = {}
    try:
        provision.delete_all()
        capacity = 2 * biggest + (64 << 20)
        disk = provision.create_disk("benchdisk", shm / "disk.img", biggest)
        disk2 = provision.create_disk("benchdisk2", shm / "disk2.img", biggest)
        tape = provision.create_tape("benchtape", shm / "tape.aws", capacity)
        tape2 = provision.create_tape("benchtape2", shm / "tape2.aws", capacity)
        luns = {"disk": disk, "disk2": disk2, "tape": tape, "tape2": tape2}
        for lun in luns.values():
            provision.export_loopback(lun)
        dev = {k: provision.find_kernel_device(v) for k, v in luns.items()}
        run("dd", "if=/dev/urandom", f"of={disk.path}", "bs=1M", f"count={biggest >> 20}",
            "conv=notrunc,fsync")
        print(f"disks {dev['disk'].block}, {dev['disk2'].block}; tapes {dev['tape'].tape}, "
              f"{dev['tape2'].tape}; backing files in {shm} (tmpfs); {os.cpu_count()} cpu(s)",
              flush=True)
        local = shm / "local.copy"
        ends = {"disk-tape": ("disk", "tape"), "tape-disk": ("tape", "disk2"),
                "disk-disk": ("disk", "disk2"), "tape-tape": ("tape", "tape2")}

        def rewind(tape: str) -> None:
            run("mt", "-f", tape, "rewind")

        def blank(tape: str) -> None:
            """Rewind ``tape`` and erase it from there, untimed: a copy or a dd onto a
            cartridge then starts on an empty one, as ``dd_local`` starts on a new file.
            Writing at BOT of a used cartridge ends its file there, and on tmpfs freeing
            the old GiB costs more than copying 64 MiB."""
            rewind(tape)
            run("mt", "-f", tape, "erase")
            rewind(tape)

        def xcopy(way: str, size: int) -> Sample:
            a, b = ends[way]
            for k in (a, b):
                if k.startswith("tape"):
                    (blank if k == b else rewind)(str(dev[k].tape))
            count = size if way == "tape-tape" else size // 512  # bytes, else disk blocks
            before = daemon.usage()
            outcome = run_copy(str(dev[a].sg), str(dev[b].sg), CopyRequest(count=count),
                               out=io.StringIO(), progress=False)
            used = daemon.usage() - before
            if outcome.moved != size:
                raise RuntimeError(f"{way}: the copy moved {outcome.moved} of {size} bytes")
            return Sample(outcome.seconds, used.usr + used.sys)

        def dd_local(way: str, size: int) -> Sample:
            src = luns[ends[way][0]].path
            local.unlink(missing_ok=True)
            c, t = children_cpu(), time.monotonic()
            run("dd", f"if={src}", f"of={local}", "bs=1M", f"count={size >> 20}", "conv=fsync")
            secs, cpu = time.monotonic() - t, children_cpu() - c
            local.unlink()
            return Sample(secs, cpu)

        def dd_initiator(size: int) -> float:
            t_dev = str(dev["tape"].tape)
            blank(t_dev)
            run("mt", "-f", t_dev, "setblk", "0")
            t = time.monotonic()
            run("dd", f"if={dev['disk'].block}", f"of={t_dev}", f"bs={RECORD}", "iflag=direct",
                f"count={size // RECORD}")
            return time.monotonic() - t

        for r in range(args.runs):
            for size in sizes:
                for way in ways:
                    order = ("xcopy", "dd") if r % 2 == 0 else ("dd", "xcopy")
                    if way == "disk-tape" and r % 2:
                        # dd-initiator first, so the tape ends holding xcopy's records
                        initiator.setdefault(size, []).append(dd_initiator(size))
                    for name in order:
                        got = xcopy(way, size) if name == "xcopy" else dd_local(way, size)
                        results.setdefault((size, way, name), []).append(got)
                        print(f"  run {r + 1} {size >> 20:>5} MiB {way:9} {name:5} "
                              f"{size / MB / got.seconds:8.1f} MB/s "
                              f"{got.cpu * (1 << 30) / size:6.2f} CPU s/GiB", flush=True)
                    if way == "disk-tape" and not r % 2:
                        # the same 64 KiB records (and a filemark st adds) for tape->...
                        initiator.setdefault(size, []).append(dd_initiator(size))
    finally:
        provision.delete_all()
        rc = daemon.stop()
        for f in shm.glob("*"):
            f.unlink()
    print_table(results, sizes, ways, "the daemon")
    if initiator:
        print("\ndisk->tape through the initiator (dd if=/dev/sdX of=/dev/nstN bs=64k):")
        for size in sizes:
            i = sorted(initiator[size])[len(initiator[size]) // 2]
            x = sorted(s.seconds for s in results[(size, "disk-tape", "xcopy")])
            print(f"{size >> 20:>5}Mi dd-initiator {size / MB / i:8.1f} MB/s, "
                  f"xcopy/dd-initiator {i / x[len(x) // 2]:5.2f}")
    print(f"\nXXH3-128 in this guest (the daemon's default copy digest, every byte): "
          f"{xxh3_speed():.1f} MB/s")
    print("SHA-256 in this guest (--copy-digest sha256): " + ", ".join(
        f"{name} {mbs:.1f} MB/s" for name, mbs in hash_speeds().items()))
    print(f"daemon exit {rc}; its log: {log}")
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
