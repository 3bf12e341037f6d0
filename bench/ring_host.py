"""What the daemon spends per command, on the host, no kernel: a disk LUN's READ (10) and
WRITE (10) served over the simulated TCMU ring, against the bare ``preadv``/``pwritev``
of the same bytes.

Run on the host (no VM, no LIO)::

    .venv/bin/python bench/ring_host.py                         # 4 KiB random, 1 MiB sequential
    .venv/bin/python bench/ring_host.py --commands 100000 --profile /tmp/ring.prof

It puts a disk over a file in ``--dir`` (default /dev/shm) behind the test suite's
simulated kernel (``tests/plugins/tcmu_ring.py``: the ring's byte layout as Linux 6.1
has it), queues ``--iodepth`` commands at a time, and times only the daemon's side:
``TcmuDevice.service`` reading the entries, answering each on the disk and writing the
responses (process CPU time). The baseline, in the same run, is the system call alone:
``os.preadv``/``os.pwritev`` of the same lengths at the same offsets into a buffer of the
same shape. Printed per path: CPU microseconds per command for each, and ``ratio``, the
daemon's over the system call's (1.0 would be no cost beyond the I/O itself). Under the
guest's emulation every microsecond here costs some forty, which is why the per-command
Python shows in the guest's 4 KiB figures (``disk_vs_tcmu_runner.py``).
``--profile FILE`` runs the daemon's side under cProfile and prints the 20 functions
with the most own time.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from plugins.tcmu_ring import SimulatedKernel, complete_from_worker

from lio_xcopy.devices.backing import BackingStore
from lio_xcopy.devices.base import LunIdentity
from lio_xcopy.devices.disk import Disk
from lio_xcopy.handler_config import parse_size
from lio_xcopy.scsi import sbc
from lio_xcopy.tcmu.daemon import TcmuDevice
from lio_xcopy.tcmu.ring import CommandRing

BLOCK = 512


@dataclass(frozen=True, slots=True)
class Path_:
    name: str
    write: bool
    length: int  # bytes per command
    sequential: bool
    iodepth: int


class Bench:
    """One disk LUN over ``store`` behind a simulated kernel."""

    def __init__(self, path: Path, size: int, seed: int):
        self.store = BackingStore(str(path), size=size, create=True)
        self.disk = Disk(LunIdentity("ringbench", "ringbench-0"), self.store, BLOCK)
        self.kernel = SimulatedKernel(cmdr_size=1 << 20, data_pages=16384)
        self.dev = TcmuDevice("ringbench", self.kernel.uio_fd,
                              CommandRing(self.kernel.view), self.disk)
        self.blocks = size // BLOCK
        self.rnd = random.Random(seed)
        self.payload = os.urandom(1 << 20)

    def close(self) -> None:
        self.dev.close()
        self.kernel.close()

    def _drain_wakeups(self) -> None:
        sock = self.kernel.uio_end
        sock.setblocking(False)
        try:
            while sock.recv(1 << 16):
                pass
        except BlockingIOError:
            pass

    def offsets(self, p: Path_, n: int) -> list[int]:
        per = p.length // BLOCK
        if p.sequential:
            return [(i * per) % (self.blocks - per + 1) for i in range(n)]
        return [self.rnd.randrange(0, self.blocks // per) * per for _ in range(n)]

    def daemon(self, p: Path_, lbas: list[int]) -> float:
        """CPU seconds the daemon spends answering ``lbas`` (``p.iodepth`` at a time),
        on every thread of the process (its LUN workers' too)."""
        spent = 0.0
        per = p.length // BLOCK
        layout = sbc.Write10 if p.write else sbc.Read10
        data = self.payload[: p.length]
        for start in range(0, len(lbas), p.iodepth):
            batch = lbas[start : start + p.iodepth]
            for lba in batch:
                cdb = layout(lba=lba, transfer_length=per).encode()
                if p.write:
                    self.kernel.submit(cdb, data_out=data, scatter=False)
                else:
                    self.kernel.submit(cdb, data_in_len=p.length, scatter=False)
            self._drain_wakeups()
            t0 = time.process_time()
            answered = self.dev.service(drain_event=False)
            if answered < len(batch):  # large transfers go to the LUN's workers
                complete_from_worker(self.dev, len(batch) - answered)
            spent += time.process_time() - t0
            done = self.kernel.reap()
            self.kernel.woken()
            if len(done) != len(batch) or any(c.status for c in done):
                raise SystemExit(f"{p.name}: {len(done)} of {len(batch)} answered, "
                                 f"statuses {[c.status for c in done][:4]}")
        return spent

    def syscalls(self, p: Path_, lbas: list[int]) -> float:
        """CPU seconds of the bare ``preadv``/``pwritev`` of the same transfers, from or
        into one buffer, as the kernel hands a command whose data blocks are adjacent
        (``new_block_to_iov`` merges them into one iovec)."""
        area = memoryview(bytearray(self.payload[: p.length]))
        views = [area]
        call: Callable[[int, list[memoryview], int], int] = (
            os.pwritev if p.write else os.preadv)
        fd = self.store.fd
        t0 = time.process_time()
        for lba in lbas:
            call(fd, views, lba * BLOCK)
        return time.process_time() - t0


PATHS = (
    Path_("4K random read qd32", False, 4096, False, 32),
    Path_("4K random write qd32", True, 4096, False, 32),
    Path_("1M sequential read qd4", False, 1 << 20, True, 4),
    Path_("1M sequential write qd4", True, 1 << 20, True, 4),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commands", type=int, default=32000,
                    help="4 KiB commands per path per run (1 MiB paths: 1/32 of it)")
    ap.add_argument("--runs", type=int, default=3, help="runs; the best is printed (3)")
    ap.add_argument("--size", default="256M", help="the disk's size (256M)")
    ap.add_argument("--dir", type=Path, default=Path("/dev/shm"))
    ap.add_argument("--profile", type=Path, metavar="FILE",
                    help="profile the daemon's side (cProfile) and print its top functions")
    args = ap.parse_args()
    size = parse_size(args.size)
    backing = args.dir / f"lio-xcopy-ring-bench-{os.getpid()}.img"
    bench = Bench(backing, size, seed=1)
    try:
        if args.profile:
            prof = cProfile.Profile()
            for p in PATHS[:2]:
                lbas = bench.offsets(p, args.commands)
                prof.enable()
                bench.daemon(p, lbas)
                prof.disable()
            prof.dump_stats(args.profile)
            pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(20)
            return 0
        print(f"{'path':26} {'daemon us/cmd':>14} {'syscall us/cmd':>15} {'ratio':>6}")
        for p in PATHS:
            n = args.commands if p.length <= 4096 else max(p.iodepth, args.commands // 32)
            ours, bare = [], []
            for _ in range(args.runs):
                lbas = bench.offsets(p, n)
                ours.append(bench.daemon(p, lbas) / n * 1e6)
                bare.append(bench.syscalls(p, lbas) / n * 1e6)
            print(f"{p.name:26} {min(ours):14.1f} {min(bare):15.1f} "
                  f"{min(ours) / min(bare):6.2f}")
    finally:
        bench.close()
        backing.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
