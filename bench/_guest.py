"""Guest-side plumbing for the benchmarks: daemons, CPU accounting, fio/dd passes.

Everything here runs inside the VM that ``scripts/vm`` boots (root, LIO loaded).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

MB = 1_000_000  # throughput is reported in MB/s (decimal), as fio and dd print it
MiB = 1 << 20
CLK_TCK = os.sysconf("SC_CLK_TCK")


def require_guest(script: str) -> None:
    """Exit with the right command line when run on the host."""
    if os.environ.get("LIO_XCOPY_IN_VM") != "1":
        sys.exit(f"{script} needs LIO: run it in the VM, `scripts/vm python {script} [ARGS]`")


def work_dir(name: str) -> Path:
    """A folder under the shared work dir (``.vmwork``, kept on the host after the run)."""
    root = Path(os.environ.get("LIO_XCOPY_WORK", ".vmwork"))
    d = root / "bench" / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def udev_quiet(timeout: float = 300) -> bool:
    """Wait for udev's queue to empty (``udevadm settle``), up to ``timeout`` seconds; a
    bench that creates LUNs needs udev's events to reach the daemon. When the queue does
    not empty, print what udev and any process in uninterruptible sleep are waiting on,
    for the run's log, and return False."""
    t = time.monotonic()
    settled = subprocess.run(["udevadm", "settle", f"--timeout={timeout:g}"],
                             check=False).returncode == 0
    if settled:
        return True
    print(f"udev: its queue did not empty in {time.monotonic() - t:.0f}s", flush=True)
    ping = subprocess.run(["udevadm", "control", "--ping", "--timeout=10"],
                          capture_output=True, text=True, check=False)
    print(f"udev: `udevadm control --ping` exited {ping.returncode} {ping.stderr.strip()}")
    ps = subprocess.run(["ps", "-eo", "pid,stat,wchan:32,etime,args"],
                        capture_output=True, text=True, check=False).stdout.splitlines()
    for line in ps:
        fields = line.split(None, 2)
        if len(fields) > 2 and ("D" in fields[1] or any(
                k in fields[2] for k in ("systemd-udevd", "udev-worker", "scsi_id", "blkid"))):
            print(f"udev: {line}")
    for pid in subprocess.run(["pgrep", "systemd-udevd"], capture_output=True, text=True,
                              check=False).stdout.split():
        with contextlib.suppress(OSError):
            stack = Path(f"/proc/{pid}/stack").read_text().strip().replace("\n", " <- ")
            print(f"udev: udevd {pid} kernel stack: {stack}")
    print(flush=True)
    return False


UNWATCHED_RULES = Path("/run/udev/rules.d/99-lio-xcopy-bench-nowatch.rules")


@contextlib.contextmanager
def udev_unwatched() -> Iterator[None]:
    """Keep udev from watching LIO's disks while a bench runs: without the watch, a
    writer closing a disk makes no "change" event, so udev does not re-probe it (blkid
    and scsi_id reads in the middle of the passes). A rule in /run (after 60-block.rules'
    ``OPTIONS+="watch"``), for the disks the block holds creates; it goes at the end.
    This replaces holding udev's queue with ``--stop-exec-queue``: after it, systemd-udevd
    252 was seen, once in a few runs, to keep its queue after ``--start-exec-queue``, with
    no worker, until a second ``--start-exec-queue``."""
    UNWATCHED_RULES.parent.mkdir(parents=True, exist_ok=True)
    UNWATCHED_RULES.write_text('ACTION!="remove", SUBSYSTEM=="block", '
                               'ATTRS{vendor}=="LIO-ORG*", OPTIONS+="nowatch"\n')
    run("udevadm", "control", "--reload")
    try:
        yield
    finally:
        UNWATCHED_RULES.unlink(missing_ok=True)
        run("udevadm", "control", "--reload", check=False)


def run(*cmd: str, timeout: float = 600, check: bool = True) -> str:
    """Run a tool (C locale); what it printed, or RuntimeError when it failed."""
    env = {**os.environ, "LC_ALL": "C"}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {p.returncode}:\n{p.stdout}{p.stderr}")
    return p.stdout + p.stderr


@dataclass(frozen=True, slots=True)
class Usage:
    """What a process has used so far: CPU seconds and times it went to sleep."""

    usr: float  # user CPU seconds, every thread, live or exited (tick-sampled split)
    sys: float  # system CPU seconds
    sleeps: int  # voluntary context switches of its live threads (a daemon's wake-ups)

    @classmethod
    def of(cls, pid: int) -> Usage:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text[text.rindex(")") + 2 :].split()  # fields[0] is stat(5)'s field 3
        sleeps = 0
        for status in Path(f"/proc/{pid}/task").glob("*/status"):
            with contextlib.suppress(OSError):  # a thread that just ended
                m = re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status.read_text(), re.M)
                sleeps += int(m.group(1)) if m else 0
        return cls(int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK, sleeps)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.usr - other.usr, self.sys - other.sys, self.sleeps - other.sleeps)


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """The name and CPU seconds (user + system) of each live thread of ``pid``, by id."""
    out: dict[int, tuple[str, float]] = {}
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        with contextlib.suppress(OSError):  # a thread that just ended
            text = stat.read_text()
            fields = text[text.rindex(")") + 2 :].split()
            out[int(stat.parent.name)] = (text[text.index("(") + 1 : text.rindex(")")],
                                          (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def thread_split(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                 mb: float) -> str:
    """``name ms/MB`` for each thread name that used CPU between two :func:`thread_cpu`
    readings, the busiest first."""
    used: dict[str, float] = {}
    for tid, (name, cpu) in after.items():
        used[name] = used.get(name, 0.0) + cpu - before.get(tid, (name, 0.0))[1]
    return ", ".join(f"{name} {1000 * sec / mb:.2f}"
                     for name, sec in sorted(used.items(), key=lambda kv: -kv[1]) if sec > 0)


@dataclass
class Daemon:
    """A background process with its log file."""

    name: str
    proc: subprocess.Popen
    log: Path

    @classmethod
    def start(cls, name: str, cmd: list[str], log: Path,
              ready: Callable[[subprocess.Popen], bool], timeout: float = 60) -> Daemon:
        """Start ``cmd`` and wait until ``ready(proc)`` holds; stop it again on failure."""
        with log.open("w") as f:
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        d = cls(name, proc, log)
        deadline = time.monotonic() + timeout
        try:
            while not ready(proc):
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited {proc.returncode}:\n{d.tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} not ready in {timeout:.0f} s:\n{d.tail()}")
                time.sleep(0.1)
        except BaseException:
            d.stop()
            raise
        return d

    @property
    def pid(self) -> int:
        return self.proc.pid

    def usage(self) -> Usage:
        return Usage.of(self.pid)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                print(f"{self.name} ignored SIGTERM for {timeout:.0f} s: killed", flush=True)
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


# --- one sequential pass over a block device -------------------------------------------
@dataclass(frozen=True, slots=True)
class Pass:
    nbytes: int
    seconds: float

    @property
    def mb_s(self) -> float:
        return self.nbytes / MB / self.seconds


def random_4k(dev: str, rw: str, nbytes: int, seconds: float, iodepth: int) -> Pass:
    """``seconds`` of 4 KiB O_DIRECT random ``rw`` ("read"/"write") over the first
    ``nbytes`` of ``dev``, with fio at ``iodepth``; IOPS = :attr:`Pass.nbytes` / 4096 /
    :attr:`Pass.seconds`."""
    out = run("fio", "--name=rand", f"--filename={dev}", f"--rw=rand{rw}", "--bs=4k",
              "--direct=1", "--ioengine=libaio", f"--iodepth={iodepth}", f"--size={nbytes}",
              f"--runtime={seconds:g}", "--time_based", "--norandommap",
              "--randrepeat=0", "--output-format=json")
    job = json.loads(out[out.index("{"):])["jobs"][0][rw]
    return Pass(job["io_bytes"], job["runtime"] / 1000)


def io_tool(prefer: str = "auto") -> str:
    """``fio`` when installed (or asked for), else ``dd``."""
    if prefer == "auto":
        return "fio" if shutil.which("fio") else "dd"
    if not shutil.which(prefer):
        sys.exit(f"{prefer} is not installed (on the host, which the guest shares)")
    return prefer


def sequential(tool: str, dev: str, rw: str, nbytes: int, iodepth: int = 1) -> Pass:
    """One 1 MiB O_DIRECT sequential ``rw`` ("write"/"read") pass over ``nbytes``."""
    if tool == "fio":
        out = run("fio", "--name=seq", f"--filename={dev}", f"--rw={rw}", "--bs=1M",
                  "--direct=1", "--ioengine=libaio", f"--iodepth={iodepth}",
                  f"--size={nbytes}", "--output-format=json")
        job = json.loads(out[out.index("{"):])["jobs"][0][rw]
        return Pass(job["io_bytes"], job["runtime"] / 1000)
    if iodepth != 1:
        raise ValueError("dd keeps one request in flight: iodepth 1 only")
    count = f"count={nbytes // MiB}"
    if rw == "write":
        out = run("dd", "if=/dev/zero", f"of={dev}", "bs=1M", count, "oflag=direct")
    else:
        out = run("dd", f"if={dev}", "of=/dev/null", "bs=1M", count, "iflag=direct")
    m = re.search(r"^(\d+) bytes .* copied, ([\d.e-]+) s", out, re.M)
    if not m:
        raise RuntimeError(f"cannot read dd's summary:\n{out}")
    return Pass(int(m.group(1)), float(m.group(2)))
