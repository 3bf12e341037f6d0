"""Scale: many LUNs and concurrent EXTENDED COPYs on one daemon, with its peak RSS.

Run in the VM: ``scripts/vm python bench/scale.py [--luns 16] [--lun-size 32M]
[--copies 4] [--copy-size 128M] [--random-seconds 20] [--runs 2]``. In one guest run:

* **LUNs**: one lio-xcopy daemon serves ``--luns`` disk LUNs, tcmu-runner (its qcow
  handler, which serves a file that is not QCOW as raw) as many more, each over a fully
  allocated file in /dev/shm. fio runs one job per LUN, all at once, on one daemon's
  LUNs, then on the other's (the order alternating between runs): 1 MiB sequential
  write, then read, of the whole LUN (O_DIRECT, libaio, queue depth 4 per LUN), and
  4 KiB random read/write for ``--random-seconds``. Aggregate MB/s (IOPS at 4 KiB),
  ratio ours/tcmu-runner.
* **Copies**: ``--copies`` disk/tape pairs on the same daemon; that many EXTENDED COPYs
  (disk->tape, 64 KiB records) sent at once from as many threads, against as many
  ``dd bs=1M conv=fsync`` of the same backing files run at once on the target host,
  after one untimed round of each. Aggregate MB/s, ratio dd time / copy time.
* **RSS**: a thread samples VmRSS (and RssAnon) of both daemons every 0.1 s through
  every phase; the maximum per phase, and the daemon's VmHWM at the end.
* **CPU**: the daemon's CPU seconds (every thread, /proc/PID/stat) per GiB moved, against
  tcmu-runner's for the same fio passes and against the dd processes' own.

The last table holds one row per metric: ours, the baseline, the ratio, the goal and
whether it was met. /dev/shm (half the guest's memory) holds 2 x luns x lun-size files
in the LUN phase, 2 x copies x copy-size in the copy phase; the defaults fit
``VM_MEMORY=4G``, larger sizes want more (``VM_MEMORY=8G --copy-size 256M``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _guest import MB, Daemon, MiB, require_guest, run, udev_quiet, udev_unwatched, work_dir
from _ratios import Measured, record
from disk_vs_tcmu_runner import (
    backing_file,
    create_runner_disk,
    delete_storage_object,
    environment,
    start_ours,
    start_runner,
)
from xcopy_disk_to_tape import children_cpu

from lio_xcopy.control import provision, rtslib_adapter
from lio_xcopy.handler_config import parse_size
from lio_xcopy.initiator.copy import CopyRequest, run_copy

SCRIPT = "bench/scale.py"
OURS, THEIRS, DD = "ours", "tcmu-runner", "dd"
GiB = 1 << 30
RSS_GOAL_MIB = 150


# --- RSS sampling -------------------------------------------------------------------------
def status_kib(pid: int, name: str) -> int:
    """One ``kB`` field of /proc/PID/status (0 when absent or the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    m = re.search(rf"^{name}:\s+(\d+)", text, re.M)
    return int(m.group(1)) if m else 0


@dataclass
class Peaks:
    """Maximum VmRSS and RssAnon (KiB) per (phase, daemon), sampled from a thread."""

    pids: dict[str, int]
    interval: float = 0.1
    phase: str = "start"
    rss: dict[tuple[str, str], int] = field(default_factory=dict)
    anon: dict[tuple[str, str], int] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="rss", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def enter(self, phase: str) -> None:
        if phase not in self.order:
            self.order.append(phase)
        self.phase = phase

    def _loop(self) -> None:
        while not self._stop.is_set():
            phase = self.phase
            for label, pid in list(self.pids.items()):
                key = (phase, label)
                self.rss[key] = max(self.rss.get(key, 0), status_kib(pid, "VmRSS"))
                self.anon[key] = max(self.anon.get(key, 0), status_kib(pid, "RssAnon"))
            self._stop.wait(self.interval)

    def peak(self, label: str, phases: list[str] | None = None) -> int:
        return max((v for (p, lab), v in self.rss.items()
                    if lab == label and (phases is None or p in phases)), default=0)


# --- the LUN phase: fio over every LUN at once --------------------------------------------
@dataclass(frozen=True, slots=True)
class Result:
    """One timed pass: bytes moved, I/Os, wall seconds, the CPU seconds it cost."""

    nbytes: int
    ios: int
    seconds: float
    cpu: float

    @property
    def mb_s(self) -> float:
        return self.nbytes / MB / self.seconds

    @property
    def iops(self) -> float:
        return self.ios / self.seconds

    @property
    def cpu_per_gib(self) -> float:
        return self.cpu * GiB / self.nbytes


TESTS = {  # name: (fio rw, block size, time based)
    "seq write": ("write", "1M", False),
    "seq read": ("read", "1M", False),
    "rand 4k": ("randrw", "4k", True),
}


def fio_all(devs: list[str], test: str, size: int, seconds: int, jobfile: Path,
            daemon: Daemon) -> Result:
    """One fio job per device, all started together; the daemon's CPU over the pass."""
    rw, bs, timed = TESTS[test]
    extra = f"time_based=1\nruntime={seconds}\nnorandommap=1\nrwmixread=50\n" if timed else ""
    jobfile.write_text(
        f"[global]\nioengine=libaio\ndirect=1\niodepth=4\nrw={rw}\nbs={bs}\nsize={size}\n"
        + extra + "".join(f"[{Path(d).name}]\nfilename={d}\n" for d in devs))
    before = daemon.usage()
    out = run("fio", "--output-format=json", str(jobfile), timeout=seconds + 900)
    used = daemon.usage() - before
    jobs = json.loads(out[out.index("{"):])["jobs"]
    for j in jobs:
        if j["error"]:
            raise RuntimeError(f"fio job {j['jobname']}: error {j['error']}")
    nbytes = sum(j[d]["io_bytes"] for j in jobs for d in ("read", "write"))
    ios = sum(j[d]["total_ios"] for j in jobs for d in ("read", "write"))
    ms = max(j[d]["runtime"] for j in jobs for d in ("read", "write"))
    return Result(nbytes, ios, ms / 1000, used.usr + used.sys)


def lun_phase(args: argparse.Namespace, shm: Path, out: Path, ours: Daemon, peaks: Peaks,
              results: dict[tuple[str, str], list[Result]]) -> None:
    """Serve ``--luns`` disks from each daemon and run every fio test over them."""
    peaks.enter("LUNs: setup")
    udev_quiet()  # a bench before this one may leave udev a backlog of disk events
    with contextlib.ExitStack() as stack:
        runner = start_runner(out)
        stack.callback(runner.stop)
        peaks.pids[THEIRS] = runner.pid
        stack.callback(peaks.pids.pop, THEIRS)
        stack.enter_context(udev_unwatched())  # no re-probing of the disks between passes
        stack.callback(provision.delete_all)  # ours, then the emptied loopback target
        luns: dict[str, list[provision.Lun]] = {OURS: [], THEIRS: []}
        for i in range(args.luns):
            for label in (OURS, THEIRS):
                f = shm / f"{label}-{i:02}.img"
                backing_file(f, args.lun_size)
                if label == OURS:
                    lun = provision.create_disk(f"scale-ours-{i:02}", f, args.lun_size)
                else:
                    lun = create_runner_disk(f"scale-runner-{i:02}", f, args.lun_size)
                    stack.callback(delete_storage_object, lun)
                provision.export_loopback(lun)
                luns[label].append(lun)
        subprocess.run(["udevadm", "settle"], check=False)
        devs: dict[str, list[str]] = {}
        for label, some in luns.items():
            devs[label] = [str(provision.find_kernel_device(lun).block) for lun in some]
            print(f"{label:11} pid {peaks.pids[label]:<5} {len(some)} LUNs of "
                  f"{args.lun_size // MiB} MiB: {' '.join(Path(d).name for d in devs[label])}",
                  flush=True)
        daemons = {OURS: ours, THEIRS: runner}
        peaks.enter("LUNs: warm-up")
        for label in (OURS, THEIRS):  # fault in the TCMU data areas, untimed
            fio_all(devs[label], "seq write", min(args.lun_size, 4 * MiB), 0,
                    out / "warmup.fio", daemons[label])
        for r in range(args.runs):
            order = (OURS, THEIRS) if r % 2 == 0 else (THEIRS, OURS)
            for test in TESTS:
                peaks.enter(f"LUNs: {test}")
                for label in order:
                    got = fio_all(devs[label], test, args.lun_size, args.random_seconds,
                                  out / f"{label}.fio", daemons[label])
                    results.setdefault((test, label), []).append(got)
                    speed = (f"{got.iops:9.0f} IOPS" if test == "rand 4k"
                             else f"{got.mb_s:9.1f} MB/s")
                    print(f"  run {r + 1} {args.luns} LUNs {test:9} {label:11} {speed} "
                          f"{got.cpu_per_gib:6.2f} CPU s/GiB", flush=True)
        peaks.enter("LUNs: teardown")
    for f in shm.glob("*.img"):
        f.unlink()
    print(f"{THEIRS} exit {runner.proc.returncode}; its logs in {out}", flush=True)


# --- the copy phase: EXTENDED COPYs at once against dd's at once --------------------------
def fill(path: Path, size: int) -> None:
    """``size`` bytes of random data (a 1 MiB random block, each copy with its index)."""
    block = bytearray(os.urandom(MiB))
    with path.open("r+b") as f:
        for i in range(size // MiB):
            block[:8] = i.to_bytes(8, "little")
            f.write(block)


def copies_at_once(pairs: list[tuple[str, str, str]], size: int, daemon: Daemon) -> Result:
    """One EXTENDED COPY per (disk sg, tape sg, tape nst) from its own thread, started
    together; wall time until the last ends."""
    for _, _, nst in pairs:
        run("mt", "-f", nst, "rewind")
    outcomes: list[int] = []
    errors: list[BaseException] = []
    gate = threading.Barrier(len(pairs) + 1)

    def one(src: str, dst: str) -> None:
        gate.wait()
        try:
            o = run_copy(src, dst, CopyRequest(count=size // 512), out=io.StringIO(),
                         progress=False)
            outcomes.append(o.moved)
        except BaseException as e:  # reported by the caller
            errors.append(e)

    # daemon threads: a copy stuck in SG_IO on a LUN whose daemon died must not keep
    # the bench from reporting that and exiting
    threads = [threading.Thread(target=one, args=(s, d), daemon=True) for s, d, _ in pairs]
    for t in threads:
        t.start()
    before = daemon.usage()
    gate.wait()
    t0 = time.monotonic()
    for t in threads:
        while t.is_alive():
            t.join(1.0)
            if daemon.proc.poll() is not None:
                raise RuntimeError(f"{daemon.name} exited {daemon.proc.returncode} during "
                                   f"the copies:\n{daemon.tail()}")
    secs = time.monotonic() - t0
    used = daemon.usage() - before
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(pairs)} copies failed: {errors[0]!r}"
                           ) from errors[0]
    if outcomes != [size] * len(pairs):
        raise RuntimeError(f"the copies moved {outcomes} bytes, not {size} each")
    for _, _, nst in pairs:  # a filemark at the start truncates the cartridge: frees /dev/shm
        run("mt", "-f", nst, "rewind")
        run("mt", "-f", nst, "weof", "1")
    return Result(size * len(pairs), 0, secs, used.usr + used.sys)


def dd_at_once(sources: list[Path], size: int) -> Result:
    """One ``dd bs=1M conv=fsync`` per source file to a file beside it, all at once."""
    env = {**os.environ, "LC_ALL": "C"}
    outs = [p.with_suffix(".dd") for p in sources]
    c, t0 = children_cpu(), time.monotonic()
    procs = [subprocess.Popen(["dd", f"if={s}", f"of={o}", "bs=1M", f"count={size // MiB}",
                               "conv=fsync"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env)
             for s, o in zip(sources, outs, strict=True)]
    texts = [p.communicate(timeout=900)[0] for p in procs]
    secs, cpu = time.monotonic() - t0, children_cpu() - c
    for p, text in zip(procs, texts, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"dd exited {p.returncode}:\n{text}")
    for o in outs:
        o.unlink()
    return Result(size * len(sources), 0, secs, cpu)


def copy_phase(args: argparse.Namespace, shm: Path, ours: Daemon, peaks: Peaks,
               results: dict[tuple[str, str], list[Result]]) -> None:
    size = args.copy_size
    with contextlib.ExitStack() as stack:
        stack.callback(provision.delete_all)
        peaks.enter("copies: setup")
        pairs, sources = [], []
        for i in range(args.copies):
            disk = provision.create_disk(f"scale-disk-{i}", shm / f"disk-{i}.img", size)
            tape = provision.create_tape(f"scale-tape-{i}", shm / f"tape-{i}.aws",
                                         size + 64 * MiB)
            for lun in (disk, tape):
                provision.export_loopback(lun)
            fill(disk.path, size)
            d, t = provision.find_kernel_device(disk), provision.find_kernel_device(tape)
            pairs.append((str(d.sg), str(t.sg), str(t.tape)))
            sources.append(disk.path)
        print(f"{args.copies} disk->tape pairs: "
              + ", ".join(f"{Path(s).name}->{Path(n).name}" for s, _, n in pairs), flush=True)
        # untimed: a fresh guest's memory costs a host page fault per page the first time
        # it is used (TCG), which would fall on whichever ran first
        peaks.enter("copies: warm-up")
        copies_at_once(pairs, size, ours)
        dd_at_once(sources, size)
        for r in range(args.runs):
            order = ("xcopy", DD) if r % 2 == 0 else (DD, "xcopy")
            for name in order:
                peaks.enter("copies" if name == "xcopy" else "copies: dd")
                got = (copies_at_once(pairs, size, ours) if name == "xcopy"
                       else dd_at_once(sources, size))
                results.setdefault(("copies", OURS if name == "xcopy" else DD), []).append(got)
                print(f"  run {r + 1} {args.copies} x {size // MiB} MiB {name:5} at once "
                      f"{got.mb_s:9.1f} MB/s {got.cpu_per_gib:6.2f} CPU s/GiB", flush=True)
        peaks.enter("copies: teardown")
    for f in list(shm.glob("disk-*")) + list(shm.glob("tape-*")):
        f.unlink()


# --- the table ----------------------------------------------------------------------------
def median_of(rs: list[Result], what: str) -> float:
    return statistics.median(getattr(r, what) for r in rs)


def table(args: argparse.Namespace, results: dict[tuple[str, str], list[Result]],
          peaks: Peaks, hwm_kib: int) -> None:
    rows: list[tuple[str, str, str, str, str, str]] = []

    def add(metric: str, ours: float, base: float | None, goal: str,
            met: bool | None, fmt: str = "{:.1f}", ratio: float | None = None) -> None:
        if ratio is None and base:
            ratio = ours / base
        rows.append((metric, fmt.format(ours), "-" if base is None else fmt.format(base),
                     "-" if ratio is None else f"{ratio:.2f}", goal,
                     "-" if met is None else ("met" if met else "NOT met")))
        record(Measured("scale", metric, "", ours, base, ratio, goal, met))

    n = args.luns
    for test, unit, what in (("seq write", "MB/s", "mb_s"), ("seq read", "MB/s", "mb_s"),
                             ("rand 4k", "IOPS", "iops")):
        o, t = (median_of(results[(test, lab)], what) for lab in (OURS, THEIRS))
        add(f"{n} LUNs {test} {unit} (vs tcmu-runner)", o, t, ">= 1.0", o / t >= 1.0,
            "{:.0f}" if what == "iops" else "{:.1f}")
    x, d = results[("copies", OURS)], results[("copies", DD)]
    xs, ds = median_of(x, "seconds"), median_of(d, "seconds")
    vol = args.copies * args.copy_size
    add(f"{args.copies} copies at once MB/s (vs {args.copies} dd)", vol / MB / xs,
        vol / MB / ds, ">= 0.9", ds / xs >= 0.9, ratio=ds / xs)
    for test in TESTS:
        o, t = (median_of(results[(test, lab)], "cpu_per_gib") for lab in (OURS, THEIRS))
        add(f"CPU s/GiB {test} (vs tcmu-runner)", o, t, "info", None, "{:.2f}")
    add("CPU s/GiB copies (vs dd)", median_of(x, "cpu_per_gib"),
        median_of(d, "cpu_per_gib"), "info", None, "{:.2f}")
    for phase in peaks.order:
        o = peaks.rss.get((phase, OURS), 0) / 1024
        kib = peaks.rss.get((phase, THEIRS))
        add(f"peak VmRSS MiB, {phase}", o, None if kib is None else kib / 1024,
            f"< {RSS_GOAL_MIB}", o < RSS_GOAL_MIB)
    add("VmHWM MiB at the end", hwm_kib / 1024, None, f"< {RSS_GOAL_MIB}",
        hwm_kib / 1024 < RSS_GOAL_MIB)
    head = ("metric", "ours", "baseline", "ratio", "goal", "")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(6)]
    print(f"\nmedian of {args.runs} run(s); ratio = ours/baseline (copies: dd time / copy "
          "time; CPU and RSS: lower is better)")
    for r in [head, *rows]:
        print(f"{r[0]:<{widths[0]}}  " + "  ".join(
            f"{c:>{w}}" for c, w in zip(r[1:], widths[1:], strict=True)))
    print("peak RssAnon MiB of ours per phase: " + ", ".join(
        f"{p} {peaks.anon.get((p, OURS), 0) / 1024:.1f}" for p in peaks.order))


# --- main ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--luns", type=int, default=16, help="disk LUNs per daemon (16)")
    ap.add_argument("--lun-size", default="32M", help="size of each LUN (32M)")
    ap.add_argument("--copies", type=int, default=4, help="EXTENDED COPYs at once (4)")
    ap.add_argument("--copy-size", default="128M", help="bytes each copy moves (128M)")
    ap.add_argument("--random-seconds", type=int, default=20,
                    help="length of the 4 KiB random pass (20)")
    ap.add_argument("--runs", type=int, default=2, help="measured runs (2)")
    args = ap.parse_args(argv)
    require_guest(SCRIPT)
    args.lun_size, args.copy_size = parse_size(args.lun_size), parse_size(args.copy_size)
    if min(args.luns, args.copies, args.runs, args.random_seconds) < 1:
        ap.error("--luns, --copies, --runs and --random-seconds must be at least 1")
    if args.lun_size < 4 * MiB or args.lun_size % MiB or args.copy_size % MiB:
        ap.error("--lun-size (at least 4M) and --copy-size must be whole MiB")
    if not shutil.which("fio"):
        sys.exit(f"{SCRIPT}: needs fio on the host (apt install fio)")
    shm = Path("/dev/shm/lio-xcopy-bench-scale")
    shutil.rmtree(shm, ignore_errors=True)
    st = os.statvfs("/dev/shm")
    free = st.f_bavail * st.f_frsize
    need = {"LUN": 2 * args.luns * args.lun_size,
            "copy": 2 * args.copies * args.copy_size + args.copies * 2 * MiB}
    for phase, n in need.items():
        if free < n + 64 * MiB:
            sys.exit(f"{SCRIPT}: /dev/shm has {free // MiB} MiB free; the {phase} phase needs "
                     f"{n // MiB} MiB there (+64 MiB spare): lower --luns/--lun-size or "
                     "--copies/--copy-size, or raise VM_MEMORY (/dev/shm is half of it)")
    out = work_dir("scale")
    results: dict[tuple[str, str], list[Result]] = {}
    with contextlib.ExitStack() as stack:
        shm.mkdir(parents=True)
        stack.callback(shutil.rmtree, shm, ignore_errors=True)
        print(environment("fio", shm), flush=True)
        rtslib_adapter.ensure_configfs()
        provision.delete_all()
        ours = start_ours(out, None)
        stack.callback(ours.stop)
        peaks = Peaks({OURS: ours.pid})
        peaks.start()
        stack.callback(peaks.stop)
        peaks.enter("idle")
        time.sleep(1)
        lun_phase(args, shm, out, ours, peaks, results)
        copy_phase(args, shm, ours, peaks, results)
        peaks.enter("idle after")
        time.sleep(1)
        hwm = status_kib(ours.pid, "VmHWM")
    print(f"\n{ours.name} exit {ours.proc.returncode}; its log: {ours.log}")
    table(args, results, peaks, hwm)
    return 0 if ours.proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
