"""Disk LUN throughput: the lio-xcopy daemon against tcmu-runner, in one guest run.

Both daemons serve one disk LUN each over a same-sized, fully allocated file on the
guest's /dev/shm; tcm_loop exports both and fio (or dd) moves 1 MiB O_DIRECT sequential
writes and reads (qd1, qd4, qd16) and 4 KiB O_DIRECT random writes and reads (qd32, for
a fixed time) through the kernel's ``sd`` devices, alternating which daemon goes first
from run to run. Prints MB/s (IOPS for the random rows), the ours/tcmu-runner ratio and
each daemon's CPU time per MB moved, per run and as medians; ``--profile FILE`` runs our
daemon under cProfile and writes the top functions to ``FILE.txt``; ``--threads`` splits
each daemon's CPU per MB by thread (which thread makes which copy).

    scripts/vm python bench/disk_vs_tcmu_runner.py [--size 256M] [--runs 3] [--profile F]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import time
import uuid
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from _guest import (
    MB,
    Daemon,
    MiB,
    Pass,
    io_tool,
    random_4k,
    require_guest,
    run,
    sequential,
    thread_cpu,
    thread_split,
    udev_unwatched,
    work_dir,
)
from _ratios import Measured, record

from lio_xcopy.control import provision, rtslib_adapter
from lio_xcopy.handler_config import HW_MAX_SECTORS, parse_size

SCRIPT = "bench/disk_vs_tcmu_runner.py"
RUNNER = "tcmu-runner"
RUNNER_HANDLERS = Path("/usr/lib/x86_64-linux-gnu/tcmu-runner")
OURS, THEIRS = "ours", "tcmu-runner"
WARMUP = 32 * MiB

warnings.filterwarnings("ignore", message="Cannot set dbroot")  # rtslib, once per RTSRoot


@dataclass
class Backend:
    label: str
    daemon: Daemon
    lun: provision.Lun
    dev: str = ""  # /dev/sdX on the initiator side


@dataclass(frozen=True, slots=True)
class Sample:
    mb_s: float  # IOPS for a random test
    usr_ms_per_mb: float  # the daemon's user CPU time per MB moved
    sys_ms_per_mb: float  # ... and its system time (its syscalls: backing I/O, ring wakes)
    sleeps_per_cmd: float  # the daemon's voluntary context switches per 1 MiB command

    def cpu(self) -> str:
        u, s = self.usr_ms_per_mb, self.sys_ms_per_mb
        return f"{u + s:5.2f}={u:4.2f}+{s:4.2f}"


# --- the two daemons ---------------------------------------------------------------------
def start_ours(out: Path, profile: Path | None) -> Daemon:
    pidfile = out / "lio-xcopy.pid"
    pidfile.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "lio_xcopy", "daemon", "--pidfile", str(pidfile)]
    if profile:
        profile.unlink(missing_ok=True)
        cmd[1:1] = ["-m", "cProfile", "-o", str(profile)]
    return Daemon.start("lio-xcopy daemon", cmd, out / "lio-xcopy.log",
                        lambda _: pidfile.exists())


def genl_listening(pid: int) -> bool:
    """Whether ``pid`` holds a generic netlink socket joined to a multicast group.

    tcmu-runner joins TCMU's config group last thing before its main loop; a device of
    its subtype added before that would leave the kernel waiting for a reply forever."""
    inodes = set()
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir() if fds.exists() else ():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    for line in Path("/proc/net/netlink").read_text().splitlines()[1:]:
        f = line.split()  # sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
        if f[1] == "16" and int(f[3], 16) and f[9] in inodes:  # 16: NETLINK_GENERIC
            return True
    return False


def start_runner(out: Path) -> Daemon:
    if not shutil.which(RUNNER) or not (RUNNER_HANDLERS / "handler_qcow.so").exists():
        sys.exit(f"{SCRIPT}: needs Debian's tcmu-runner on the host (apt install tcmu-runner)")
    logdir = out / "tcmu-runner-logs"
    logdir.mkdir(exist_ok=True)
    (logdir / "tcmu-runner.log").unlink(missing_ok=True)  # it appends
    cmd = [RUNNER, "--handler-path", str(RUNNER_HANDLERS), "--tcmu-log-dir", str(logdir)]
    return Daemon.start(RUNNER, cmd, out / "tcmu-runner.out",
                        lambda proc: genl_listening(proc.pid))


# --- LUNs ----------------------------------------------------------------------------------
def backing_file(path: Path, size: int) -> None:
    """Exactly ``size`` bytes, every page allocated (tcmu-runner's raw probe wants the
    file's size to equal the LUN's; allocation keeps page faults out of the timed writes)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)


def create_runner_disk(name: str, path: Path, size: int) -> provision.Lun:
    """A ``qcow/<path>`` user backstore: tcmu-runner's qcow handler serves a file that is
    not QCOW as a raw image. No ``nl_reply_supported=-1``: tcmu-runner answers."""
    import rtslib

    so = rtslib.UserBackedStorageObject(name, config=f"qcow/{path}", size=size,
                                        wwn=str(uuid.uuid4()), hw_max_sectors=HW_MAX_SECTORS)
    # tcmu-runner builds its VPD 83h NAA from the unit serial as LIO does: Lun.naa finds it
    return provision.Lun(name, "disk", path, so.wwn, so)


def delete_storage_object(lun: provision.Lun) -> None:
    so = lun.storage_object
    for exported in list(so.attached_luns):
        exported.delete()
    so.delete()


def queue_setting(dev: str, name: str) -> str:
    p = Path("/sys/block") / Path(dev).name / "queue" / name
    return p.read_text().strip() if p.exists() else "?"


def requests(dev: str) -> str:
    """Requests the block layer completed on ``dev`` so far, and their mean size."""
    f = [int(x) for x in (Path("/sys/block") / Path(dev).name / "stat").read_text().split()]
    return (f"{f[0]} reads of {f[2] * 512 // 1024 // max(f[0], 1)} KiB, "
            f"{f[4]} writes of {f[6] * 512 // 1024 // max(f[4], 1)} KiB on average")


# --- measuring -----------------------------------------------------------------------------
def measure(b: Backend, tool: str, test: Test, size: int, seconds: float,
            threads: bool = False) -> Sample:
    before, by_thread = b.daemon.usage(), thread_cpu(b.daemon.pid) if threads else {}
    p: Pass = (random_4k(b.dev, test.rw, size, seconds, test.iodepth) if test.random
               else sequential(tool, b.dev, test.rw, size, test.iodepth))
    used = b.daemon.usage() - before
    if threads:
        split = thread_split(by_thread, thread_cpu(b.daemon.pid), p.nbytes / MB)
        print(f"     {b.label:11} {test!s:13} CPU ms/MB by thread: {split}", flush=True)
    per_mb = 1000 / (p.nbytes / MB)
    rate = p.nbytes / RANDOM_BLOCK / p.seconds if test.random else p.mb_s
    return Sample(rate, used.usr * per_mb, used.sys * per_mb,
                  used.sleeps / (p.nbytes / (RANDOM_BLOCK if test.random else MiB)))


@dataclass(frozen=True, slots=True)
class Test:
    rw: str  # "write" or "read"
    iodepth: int
    random: bool = False  # 4 KiB random for a fixed time, else 1 MiB sequential

    def __str__(self) -> str:
        return f"{'4k rand' if self.random else ''}{self.rw[0] if self.random else self.rw}" \
               f" qd{self.iodepth}"


RANDOM_BLOCK = 4096


HEAD = (f"{'':41}{'MB/s or IOPS':^21}  {'ours/':>6}  {'CPU ms/MB = usr+sys':^31}  "
        f"{'sleeps/cmd':^13}\n"
        f"{'run':>3}  {'test':12}  {'first':11}  {'ours':>9}  {'runner':>10}  {'runner':>6}  "
        f"{'ours':>15}  {'runner':>14}  {'ours':>6} {'runner':>6}")


def row(run_: str, test: str, first: str, ours: Sample, theirs: Sample, ratio: float) -> str:
    return (f"{run_:>3}  {test:12}  {first:11}  {ours.mb_s:9.1f}  {theirs.mb_s:10.1f}  "
            f"{ratio:6.2f}  {ours.cpu():>15}  {theirs.cpu():>14}  "
            f"{ours.sleeps_per_cmd:6.2f} {theirs.sleeps_per_cmd:6.2f}")


def benchmark(backends: list[Backend], tool: str, size: int, runs: int,
              tests: list[Test], seconds: float, threads: bool = False) -> None:
    for b in backends:
        print(f"{b.dev} before the passes: {requests(b.dev)} (udev's probing)")
    for b in backends:  # fault in the TCMU data areas and warm the caches, untimed
        for rw in ("write", "read"):
            sequential(tool, b.dev, rw, min(size, WARMUP), max(t.iodepth for t in tests))
    samples: dict[Test, dict[str, list[Sample]]] = defaultdict(lambda: defaultdict(list))
    print(HEAD, flush=True)
    for r in range(runs):
        order = backends if r % 2 == 0 else backends[::-1]
        for test in tests:
            got = {b.label: measure(b, tool, test, size, seconds, threads) for b in order}
            samples[test][OURS].append(got[OURS])
            samples[test][THEIRS].append(got[THEIRS])
            print(row(str(r + 1), str(test), order[0].label, got[OURS], got[THEIRS],
                      got[OURS].mb_s / got[THEIRS].mb_s), flush=True)
    print(f"\nmedians over {runs} run(s), column by column; ours/runner = median of the "
          "per-run ratios")
    print(HEAD)
    for test, by in samples.items():
        med = {label: Sample(statistics.median(s.mb_s for s in ss),
                             statistics.median(s.usr_ms_per_mb for s in ss),
                             statistics.median(s.sys_ms_per_mb for s in ss),
                             statistics.median(s.sleeps_per_cmd for s in ss))
               for label, ss in by.items()}
        ratio = statistics.median(o.mb_s / t.mb_s for o, t in zip(by[OURS], by[THEIRS],
                                                                  strict=True))
        print(row("med", str(test), "alternating", med[OURS], med[THEIRS], ratio))
        unit = "IOPS" if test.random else "MB/s"
        record(Measured("plain I/O vs tcmu-runner", str(test), unit, med[OURS].mb_s,
                        med[THEIRS].mb_s, ratio, ">= 1.0", ratio >= 1.0))
        cpu_o, cpu_t = (m.usr_ms_per_mb + m.sys_ms_per_mb for m in (med[OURS], med[THEIRS]))
        if cpu_t > 0:
            record(Measured("CPU per MB: plain I/O vs tcmu-runner", str(test), "CPU ms/MB",
                            cpu_o, cpu_t, cpu_o / cpu_t, "<= 1.0", cpu_o / cpu_t <= 1.0))
    for b in backends:
        print(f"{b.dev} ({b.label}) in all: {requests(b.dev)}")


# --- the profile ---------------------------------------------------------------------------
CLOCKSOURCE = Path("/sys/devices/system/clocksource/clocksource0/current_clocksource")


def clock_read_cost(n: int = 100_000) -> float:
    """Seconds one ``time.perf_counter()`` (cProfile's clock) takes in this guest."""
    clock = time.perf_counter
    t0 = clock()
    for _ in range(n):
        clock()
    t1 = clock()
    for _ in range(n):
        pass
    return max(2 * t1 - t0 - clock(), 0.0) / n


def profile_report(prof: Path, top: int = 15) -> None:
    """Top functions by cumulative and by own time into ``<prof>.txt``; a summary here."""
    text = io.StringIO()
    st = pstats.Stats(str(prof), stream=text).strip_dirs()
    for key in ("cumulative", "tottime"):
        print(f"=== top {top} by {key} time", file=text)
        st.sort_stats(key).print_stats(top)
    report = Path(f"{prof}.txt")
    report.write_text(text.getvalue())
    stats = st.stats  # (file, line, name) -> (primitive calls, calls, own, cumulative, callers)

    def pick(name: str, file: str = "~") -> tuple[int, float, float]:
        """(calls, own s, cumulative s) of one function; builtins have file "~"."""
        hits = [v for (f, _, fn), v in stats.items() if fn == name and f == file]
        return (sum(v[1] for v in hits), sum(v[2] for v in hits), sum(v[3] for v in hits))

    idle = pick("<method 'poll' of 'select.epoll' objects>")[1]
    nserv, _, serv = pick("service", "daemon.py")
    ncmd, _, handle = pick("handle", "base.py")
    nr, rd, _ = pick("<built-in method posix.preadv>")
    nw, wr, _ = pick("<built-in method posix.pwritev>")
    wake = pick("<built-in method posix.write>")[1]
    drain = pick("<built-in method posix.read>")[1]
    ring = pick("entries", "ring.py")[2] + pick("complete", "ring.py")[2]
    parts = {
        "backing preadv/pwritev": rd + wr,
        "uio write (kernel completes the commands)": wake,
        "device Python (dispatch, CDB decode, checks)": handle - rd - wr,
        "ring Python (entries, complete)": ring,  # a generator's time excludes its consumer
        "uio read (event drain)": drain,
    }
    parts["rest of service()"] = serv - sum(parts.values())
    us = 1e6 / max(ncmd, 1)
    print(f"\nprofile of our daemon (cProfile: main thread, wall clock, Python calls slowed"
          f" by the profiler): {report}")
    print(f"  {st.total_tt:.1f} s profiled, {idle:.1f} s of it idle in epoll;"
          f" {serv:.1f} s in TcmuDevice.service: {nserv} calls for {ncmd} commands"
          f" ({ncmd / max(nserv, 1):.2f} commands per wake-up, one uio write each)")
    print(f"  per command ({serv * us:.0f} us in service()):")
    for what, t in parts.items():
        print(f"    {t * us:7.0f} us  {t / serv:4.0%}  {what}")
    print(f"  preadv {rd * 1e6 / max(nr, 1):.0f} us/call ({nr} calls), pwritev "
          f"{wr * 1e6 / max(nw, 1):.0f} us/call ({nw} calls)")
    calls, tick = st.total_calls, clock_read_cost()
    print(f"  a clock read costs ~{tick * 1e6:.2f} us here (clocksource "
          f"{CLOCKSOURCE.read_text().strip()}); cProfile reads it twice per call: {calls} "
          f"calls ~ {2 * tick * calls:.1f} s of the profile are the profiler's own")
    print(f"  top {top} by own time:")
    for (f, line, fn), (_, nc, t, c, _) in sorted(stats.items(), key=lambda kv: -kv[1][2])[:top]:
        print(f"    {t:8.3f} s own {c:8.3f} s cum {nc:8d} calls  {fn} ({f}:{line})")


# --- main ----------------------------------------------------------------------------------
def environment(tool: str, backing: Path) -> str:
    fs = run("stat", "-f", "-c", "%T", str(backing)).strip()
    versions = [run(RUNNER, "-V", check=False).strip().splitlines()[-1],  # -V exits 1
                run("fio", "--version").strip() if tool == "fio" else "dd"]
    return (f"kernel {platform.release()}, {os.cpu_count()} cpu(s), Python "
            f"{platform.python_version()}, {', '.join(versions)}, clocksource "
            f"{CLOCKSOURCE.read_text().strip()}; backing files on {backing} ({fs})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="256M", help="LUN size = bytes per pass (default 256M)")
    p.add_argument("--runs", type=int, default=3, help="measured runs (default 3)")
    p.add_argument("--iodepth", default="1,4,16",
                   help="fio iodepths of the 1 MiB sequential passes, comma-separated (1,4,16)")
    p.add_argument("--random-iodepth", default="32",
                   help="fio iodepths of the 4 KiB random passes, comma-separated (32; "
                        "none: no random passes)")
    p.add_argument("--random-seconds", type=float, default=10.0,
                   help="length of each 4 KiB random pass (default 10 s)")
    p.add_argument("--tool", choices=("auto", "fio", "dd"), default="auto",
                   help="I/O generator (auto: fio if installed, else dd at iodepth 1)")
    p.add_argument("--dir", type=Path, default=Path("/dev/shm"),
                   help="where the two backing files go (default /dev/shm, a tmpfs)")
    p.add_argument("--profile", type=Path, metavar="FILE",
                   help="run our daemon under cProfile, stats to FILE, top functions to "
                        "FILE.txt (put it under .vmwork to keep it)")
    p.add_argument("--threads", action="store_true",
                   help="also print each daemon's CPU per MB by thread, for every pass")
    args = p.parse_args(argv)
    require_guest(SCRIPT)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    size = parse_size(args.size)
    if size < WARMUP or size % MiB:
        sys.exit(f"{SCRIPT}: --size must be a whole number of MiB, at least 32M")
    tool = io_tool(args.tool)
    depths = [1] if tool == "dd" else [int(x) for x in args.iodepth.split(",")]
    random_depths = ([] if tool == "dd" or args.random_iodepth == "none"
                     else [int(x) for x in args.random_iodepth.split(",")])
    tests = [Test(rw, qd) for qd in depths for rw in ("write", "read")]
    tests += [Test(rw, qd, random=True) for qd in random_depths for rw in ("write", "read")]
    backing = args.dir / "lio-xcopy-bench"
    st = os.statvfs(args.dir)
    if st.f_bavail * st.f_frsize < 2 * size + 16 * MiB:
        sys.exit(f"{SCRIPT}: {args.dir} has {st.f_bavail * st.f_frsize // MiB} MiB free, two "
                 f"{size // MiB} MiB files do not fit: lower --size or raise VM_MEMORY")
    out = work_dir("disk_vs_tcmu_runner")
    profile = args.profile.absolute() if args.profile else None

    with contextlib.ExitStack() as stack:  # cleans up in reverse order, even on error
        backing.mkdir(parents=True, exist_ok=True)
        stack.callback(shutil.rmtree, backing, ignore_errors=True)
        print(environment(tool, backing), flush=True)
        ours_daemon = start_ours(out, profile)
        stack.callback(ours_daemon.stop)
        runner = start_runner(out)
        stack.callback(runner.stop)
        rtslib_adapter.ensure_configfs()
        stack.enter_context(udev_unwatched())  # no re-probing of the disks between passes
        stack.callback(provision.delete_all)  # ours, then the emptied loopback target
        files = {OURS: backing / "ours.img", THEIRS: backing / "tcmu-runner.img"}
        for f in files.values():
            backing_file(f, size)
        ours = Backend(OURS, ours_daemon, provision.create_disk("bench-ours", files[OURS], size))
        provision.export_loopback(ours.lun)
        theirs = Backend(THEIRS, runner, create_runner_disk("bench-runner", files[THEIRS], size))
        stack.callback(delete_storage_object, theirs.lun)
        provision.export_loopback(theirs.lun)
        subprocess.run(["udevadm", "settle"], check=False)
        for b in (ours, theirs):
            b.dev = str(provision.find_kernel_device(b.lun).block)
            print(f"{b.label:11} pid {b.daemon.pid:<5} {b.lun.storage_object.config:48} "
                  f"-> {b.dev} (max_sectors_kb {queue_setting(b.dev, 'max_sectors_kb')}, "
                  f"scheduler {queue_setting(b.dev, 'scheduler')})")
        print(f"\n{tool}: 1 MiB O_DIRECT sequential passes of {size // MiB} MiB, MB/s = 10^6 B/s;"
              f" 4 KiB O_DIRECT random passes of {args.random_seconds:g} s over it, in IOPS;"
              " CPU = daemon utime+stime per MB moved"
              " (usr/sys split tick-sampled); sleeps = daemon's voluntary context switches")
        if profile:
            print("NOTE: our daemon runs under cProfile: its MB/s and CPU are inflated by the "
                  "profiler; take the comparison from a run without --profile")
        benchmark([ours, theirs], tool, size, args.runs, tests, args.random_seconds,
                  args.threads)

    print(f"\nstopped: {ours_daemon.name} exit {ours_daemon.proc.returncode}, {runner.name} "
          f"exit {runner.proc.returncode}; logs in {out}")
    if profile:
        if ours_daemon.proc.returncode != 0 or not profile.exists():
            print(f"our daemon exited {ours_daemon.proc.returncode} without writing {profile}:\n"
                  f"{ours_daemon.tail()}")
            return 1
        profile_report(profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
