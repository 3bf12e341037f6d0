"""The copy manager on the host, no kernel: EXTENDED COPY between backing files against
``dd`` of the same bytes, and where the time goes.

Run on the host (no VM, no LIO)::

    .venv/bin/python bench/xcopy_host.py                       # 256M, all four directions
    .venv/bin/python bench/xcopy_host.py --sizes 64M,256M --runs 3
    .venv/bin/python bench/xcopy_host.py --ways disk-tape --profile /tmp/d2t.prof

It builds, in ``--dir`` (default /dev/shm: tmpfs, so the storage is a memory copy),
a disk of random bytes and, per direction, the other end (a second disk, or an AWSTAPE
cartridge, filled first when it is the source), registers them with a
:class:`~lio_xcopy.copy.manager.CopyManager` that runs each copy on the calling thread
(where cProfile sees it), and sends the same EXTENDED COPY (LID1) list the
``lio-xcopy copy`` command would (64 KiB records), reading ahead of the writes as the
daemon does (``--read-ahead 0``: reading and writing in turn). It checks the destination bytes, and
times ``dd bs=1M conv=fsync`` from the source file to a new file beside it. Printed per
size and direction: MB/s of each, the ratio dd time / xcopy time, and the process CPU
seconds per GiB of each (ours: this process's user+system time during the copy, the
digest thread's too; dd's: its rusage). ``--profile FILE`` runs the copies under
cProfile and prints the 20 functions with the most own time. ``--digest sha256`` gives
the copies the daemon's other digest (``--copy-digest``; XXH3-128 by default).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _ratios import MB, GiB, Sample, print_table

from lio_xcopy.copy.digest import DEFAULT as DEFAULT_DIGEST
from lio_xcopy.copy.manager import CopyManager
from lio_xcopy.devices.backing import BackingStore
from lio_xcopy.devices.base import Command, LunIdentity
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.disk import Disk
from lio_xcopy.devices.tape import Tape
from lio_xcopy.handler_config import parse_size
from lio_xcopy.initiator.copy import DEFAULT_RECORD, MAX_BLOCKS_PER_SEGMENT
from lio_xcopy.scsi import xcopy
from lio_xcopy.scsi.xcopy import (
    BlockToBlock,
    BlockToStream,
    IdentificationCscd,
    StreamToBlock,
    StreamToStream,
)

BLOCK = 512
WAYS = ("disk-tape", "tape-disk", "disk-disk", "tape-tape")


def _cscd(dev: Disk | Tape) -> IdentificationCscd:
    return IdentificationCscd.from_designator(dev.designators()[0], dev.DEVICE_TYPE,
                                              getattr(dev, "block_size", 0))


def _segments(way: str, size: int) -> list[xcopy.Segment]:
    """What ``lio-xcopy copy`` sends for ``size`` bytes (initiator/copy.py plan_segments)."""
    if way == "tape-tape":
        step = (0xFFFFFFFF // DEFAULT_RECORD) * DEFAULT_RECORD
        return [StreamToStream(0, 1, min(step, size - off), DEFAULT_RECORD, DEFAULT_RECORD)
                for off in range(0, size, step)]
    count, per = size // BLOCK, MAX_BLOCKS_PER_SEGMENT
    if way == "disk-disk":
        return [BlockToBlock(0, 1, min(per, count - i), i, i) for i in range(0, count, per)]
    per = per * BLOCK // DEFAULT_RECORD * DEFAULT_RECORD // BLOCK
    cls = StreamToBlock if way == "tape-disk" else BlockToStream
    return [cls(0, 1, min(per, count - i), i, DEFAULT_RECORD) for i in range(0, count, per)]


class Inline:
    """An executor that runs the copy now, on the caller's thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        fut.set_running_or_notify_cancel()
        fut.set_result(fn(*args))
        return fut


class Lab:
    """The backing files of one size: a source disk and, made on demand, the rest."""

    def __init__(self, root: Path, size: int, digest: str, read_ahead: int | None = None):
        self.root, self.size = root, size
        self.disk_path = root / "src.img"
        with open(self.disk_path, "wb") as f:
            for _ in range(size >> 20):
                f.write(os.urandom(1 << 20))
        self.manager = CopyManager(executor=Inline(), digest=digest, read_ahead=read_ahead)
        self.n = 0

    def disk(self, path: Path, *, create: bool = False) -> Disk:
        self.n += 1
        store = BackingStore(path, create=create, size=self.size if create else None)
        d = Disk(LunIdentity(f"d{self.n}", f"bench-disk-{self.n:04d}-0123456789"), store)
        self.manager.register(d)
        return d

    def tape(self, path: Path) -> Tape:
        self.n += 1
        path.unlink(missing_ok=True)
        t = Tape(LunIdentity(f"t{self.n}", f"bench-tape-{self.n:04d}-0123456789"), path,
                 2 * self.size + (64 << 20))
        self.manager.register(t)
        return t

    def source_tape(self) -> Path:
        """A cartridge holding the source disk's bytes in 64 KiB records."""
        path = self.root / "src.aws"
        if not path.exists():
            src, t = self.disk(self.disk_path), self.tape(path)
            self.copy(src, t, _segments("disk-tape", self.size))
            src.close()
            t.close()
        return path

    def copy(self, src: Disk | Tape, dst: Disk | Tape, segs: list[xcopy.Segment]) -> None:
        data = xcopy.build_extended_copy([_cscd(src), _cscd(dst)], segs)
        cdb = xcopy.ExtendedCopyLid1(parameter_list_length=len(data)).encode()
        result = src.handle(Command(cdb, DataBuffer.of(bytearray(data))))
        if not isinstance(result, int):
            result.result()

    def ends(self, way: str) -> tuple[Disk | Tape, Disk | Tape, Path]:
        """Source, destination and the file the destination's bytes end up in."""
        a, b = way.split("-")
        src: Disk | Tape
        if a == "disk":
            src = self.disk(self.disk_path)
        else:
            src = Tape(LunIdentity("ts", "bench-tape-src-0123456789"), self.source_tape(),
                       2 * self.size + (64 << 20))
            self.manager.register(src)
        out = self.root / f"dst.{'img' if b == 'disk' else 'aws'}"
        out.unlink(missing_ok=True)
        dst = self.disk(out, create=True) if b == "disk" else self.tape(out)
        return src, dst, out

    def check(self, way: str, out: Path) -> None:
        """The destination holds the source disk's bytes (a tape: in 64 KiB records)."""
        with open(self.disk_path, "rb") as f:
            want = f.read()
        if way.endswith("disk"):
            got = out.read_bytes()[: self.size]
        else:
            t = Tape(LunIdentity("chk", "bench-check-0123456789"), out, 2 * self.size + (64 << 20))
            medium = t.medium
            assert medium is not None
            recs = medium.dump_records()
            t.close()
            if any(r is None or len(r) != DEFAULT_RECORD for r in recs):
                raise SystemExit(f"{way}: the cartridge holds other than 64 KiB records")
            got = b"".join(r for r in recs if r is not None)
        if got != want:
            raise SystemExit(f"{way}: the destination differs from the source")


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def xcopy_once(lab: Lab, way: str, prof: cProfile.Profile | None) -> tuple[float, float]:
    src, dst, out = lab.ends(way)
    segs = _segments(way, lab.size)
    c0, t0 = cpu(), time.monotonic()
    if prof is not None:
        prof.enable()
    lab.copy(src, dst, segs)
    dst.flush()
    if prof is not None:
        prof.disable()
    secs, cpus = time.monotonic() - t0, cpu() - c0
    for d in (src, dst):
        lab.manager.unregister(d)
        d.close()
    lab.check(way, out)
    out.unlink()
    return secs, cpus


def dd_once(lab: Lab, way: str) -> tuple[float, float]:
    src = lab.disk_path if way.startswith("disk") else lab.source_tape()
    out = lab.root / "dd.out"
    out.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    subprocess.run(["dd", f"if={src}", f"of={out}", "bs=1M", f"count={lab.size >> 20}",
                    "conv=fsync"], check=True, capture_output=True)
    secs = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out.unlink()
    return secs, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256M")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--ways", default=",".join(WAYS), help=f"some of {','.join(WAYS)}")
    ap.add_argument("--dir", default="/dev/shm/lio-xcopy-bench-host")
    ap.add_argument("--profile", metavar="FILE", help="cProfile the copies into FILE")
    ap.add_argument("--digest", choices=[a.label for a in xcopy.DigestAlgorithm],
                    default=DEFAULT_DIGEST.label,
                    help="the copy digest, as `lio-xcopy daemon --copy-digest` sets it "
                         f"(default {DEFAULT_DIGEST.label})")
    ap.add_argument("--read-ahead", type=int, metavar="N",
                    help="chunks read ahead of the one being written (default: the copy "
                         "manager's, lio_xcopy.copy.readahead.READ_AHEAD; 0: none)")
    args = ap.parse_args()
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    ways = args.ways.split(",")
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    prof = cProfile.Profile() if args.profile else None
    res: dict[tuple[int, str, str], list[Sample]] = {}
    try:
        for size in sizes:
            lab = Lab(root, size, args.digest, args.read_ahead)
            for r in range(args.runs):
                for way in ways:
                    for name in (("xcopy", "dd") if r % 2 == 0 else ("dd", "xcopy")):
                        secs, cpus = (xcopy_once(lab, way, prof) if name == "xcopy"
                                      else dd_once(lab, way))
                        res.setdefault((size, way, name), []).append(Sample(secs, cpus))
                        print(f"  run {r + 1} {size >> 20:>5} MiB {way:9} {name:5} "
                              f"{size / MB / secs:8.1f} MB/s  {cpus * GiB / size:6.2f} CPU s/GiB",
                              flush=True)
            for f in root.glob("*"):
                f.unlink()
    finally:
        for f in root.glob("*"):
            f.unlink()
    print_table(res, sizes, ways, "this process")
    if prof is not None:
        prof.dump_stats(args.profile)
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
