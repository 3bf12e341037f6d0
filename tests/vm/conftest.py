"""VM tests: the real kernel (LIO, tcm_loop, sg, st) in one guest booted by scripts/vm.

One daemon and one disk + one tape LUN serve the whole session, as an administrator
would run them; each test leaves the LUNs usable for the next.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

# the one way the VM tests are skipped outside the guest (scripts/vm sets it): not
# collected at all, so no test module needs a check of its own
if os.environ.get("LIO_XCOPY_IN_VM") != "1":
    collect_ignore_glob = ["test_*.py"]

#: fixtures shared by several modules, each a pytest plugin under tests/plugins/
pytest_plugins = ["plugins.vm_bridge", "plugins.vm_iscsi", "plugins.vm_shard"]

MiB = 1 << 20
DISK_SIZE = 96 * MiB
TAPE_CAPACITY = 256 * MiB


def run(*cmd: str, check: bool = True, input: bytes | None = None,  # noqa: A002 (subprocess.run's)
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a stock tool; on failure show what it printed."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       input=input.decode() if input else None)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


@dataclass
class Daemon:
    proc: subprocess.Popen
    log: Path
    notify: socket.socket  # what the daemon told "systemd" over NOTIFY_SOCKET

    def notifications(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.notify.recv(4096))
            except BlockingIOError:
                return out

    def alive(self) -> bool:
        return self.proc.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Lab:
    work: Path
    daemon: Daemon
    disk_lun: object
    tape_lun: object
    disk: object  # provision.KernelDevice
    tape: object

    @property
    def sd(self) -> str:
        return str(self.disk.block)

    @property
    def disk_sg(self) -> str:
        return str(self.disk.sg)

    @property
    def nst(self) -> str:
        return str(self.tape.tape)

    @property
    def tape_sg(self) -> str:
        return str(self.tape.sg)


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lab")


# --- what the host can read while the guest runs (LIO_XCOPY_WORK is shared with it) ------
def _host_log() -> Path | None:
    where = os.environ.get("LIO_XCOPY_WORK")
    return Path(where, "vm-watchdog.log") if where else None


def pytest_runtest_logreport(report) -> None:
    """A failure's report, written out at once: a session that hangs afterwards (stuck in
    the kernel) never prints its summary."""
    out = _host_log()
    if out is not None and report.failed:
        with out.open("a") as f:
            f.write(f"\n=== {time.strftime('%H:%M:%S')} {report.nodeid} {report.when} FAILED\n"
                    f"{report.longreprtext}\n{report.capstderr[-4000:]}\n")


def _blocked_tasks() -> list[str]:
    """Kernel stacks of the tasks in uninterruptible sleep (D)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] == "D":
                comm = (stat.parent / "comm").read_text().strip()
                stack = (stat.parent / "stack").read_text()
                out.append(f"{stat.parent.name} {comm}:\n{stack}")
    return out


@pytest.fixture(scope="session", autouse=True)
def watchdog(work):
    """Every 20 s: the running test, each SCSI host's busy count, tasks blocked in the
    kernel, new kernel messages and the daemon log's tail, to vm-watchdog.log."""
    out = _host_log()
    if out is None:
        yield
        return
    import threading

    stop = threading.Event()

    def watch() -> None:
        seen = 0
        while not stop.wait(20):
            with contextlib.suppress(Exception):
                dmesg = run("dmesg", check=False).stdout.splitlines()
                busy = {h.name: (h / "host_busy").read_text().strip()
                        for h in Path("/sys/class/scsi_host").glob("host*")}
                room = {d: f"{os.statvfs(d).f_bavail * os.statvfs(d).f_frsize >> 20} MiB"
                        for d in ("/tmp", "/run")}
                daemon_log = (work / "daemon.log")
                tail = (daemon_log.read_text(errors="replace").splitlines()[-15:]
                        if daemon_log.exists() else [])
                with out.open("a") as f:
                    f.write(f"--- {time.strftime('%H:%M:%S')} "
                            f"{os.environ.get('PYTEST_CURRENT_TEST', '-')}\n"
                            f"host_busy {busy}, free {room}\n" + "".join(_blocked_tasks())
                            + "\n".join(dmesg[seen:][-40:]) + "\ndaemon: "
                            + "\n  ".join(tail) + "\n")
                seen = len(dmesg)

    threading.Thread(target=watch, name="watchdog", daemon=True).start()
    yield
    stop.set()


def _start_daemon(work: Path, mode: str) -> subprocess.Popen:
    """``lio-xcopy daemon`` as systemd would run it; returns once it wrote its pidfile."""
    log, pidfile = work / "daemon.log", work / "daemon.pid"
    pidfile.unlink(missing_ok=True)
    with log.open(mode) as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lio_xcopy", "daemon", "-v", "--pidfile", str(pidfile)],
            stdout=f, stderr=subprocess.STDOUT,
            env={**os.environ, "NOTIFY_SOCKET": str(work / "notify")},
        )
    deadline = time.monotonic() + 180  # a loaded TCG guest imports slowly
    while not pidfile.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"daemon did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return proc


def restart_daemon(lab, sig: int = signal.SIGTERM) -> None:
    """Stop the session's daemon with ``sig`` (SIGKILL: a crash) and start a new one."""
    d = lab.daemon
    d.proc.send_signal(sig)
    assert d.proc.wait(timeout=60) == (0 if sig == signal.SIGTERM else -sig)
    d.proc = _start_daemon(lab.work, "a")


@pytest.fixture(scope="session")
def daemon(work):
    log = work / "daemon.log"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(work / "notify"))
    notify.setblocking(False)
    proc = _start_daemon(work, "w")
    d = Daemon(proc, log, notify)
    yield d
    d.proc.send_signal(signal.SIGTERM)  # the last one started (restart_daemon replaces it)
    rc = d.proc.wait(timeout=60)
    text = log.read_text(errors="replace")
    sys.stderr.write("\n--- daemon log (tail) ---\n" + "\n".join(text.splitlines()[-40:]) + "\n")
    assert rc == 0, f"daemon exited {rc}"
    assert "Traceback" not in text, "the daemon logged a traceback"


@pytest.fixture(scope="session")
def lab(work, daemon):
    from lio_xcopy.control import provision

    provision.delete_all()
    disk_lun = provision.create_disk("vmdisk0", work / "disk0.img", DISK_SIZE)
    tape_lun = provision.create_tape("vmtape0", work / "tape0.aws", TAPE_CAPACITY)
    provision.export_loopback(disk_lun)
    provision.export_loopback(tape_lun)
    run("udevadm", "settle", check=False)
    lab = Lab(work, daemon, disk_lun, tape_lun, provision.find_kernel_device(disk_lun),
              provision.find_kernel_device(tape_lun))
    yield lab
    provision.delete_all()


def sense_of(output: str) -> tuple[str, str]:
    """(sense key, additional sense) as sg3_utils prints them."""
    key = re.search(r"[Ss]ense key: ([^\n\[]+)", output)
    add = re.search(r"Additional sense: ([^\n]+)", output)
    return (key.group(1).strip() if key else "", add.group(1).strip() if add else "")


def clear_unit_attention(*sgs: str) -> None:
    """After LUNs come or go, LIO reports REPORTED LUNS DATA HAS CHANGED once per LUN."""
    for sg in sgs:
        for _ in range(3):
            if run("sg_turs", sg, check=False).returncode == 0:
                break


@contextlib.contextmanager
def dm_disk(lab, name: str, data: bytes, table, *, modules: tuple[str, ...] = ("dm_mod",),
            timeout: float = 90.0):
    """A disk LUN ``name`` over a device-mapper device whose table ``table(loop)`` maps a
    loop device holding ``data``: yields its kernel device; all of it is removed after."""
    from lio_xcopy.control import provision

    for module in modules:
        run("modprobe", module)
    run("modprobe", "loop", check=False)  # built in on some kernels
    img = lab.work / f"{name}.img"
    img.write_bytes(data)
    loop = run("losetup", "-f", "--show", str(img)).stdout.strip()
    dm = f"lioxcopy-{name}"
    run("dmsetup", "create", dm, input=table(loop).encode())
    try:
        lun = provision.create_disk(name, f"/dev/mapper/{dm}", len(data))
        try:
            yield lun, extra_lun(lab, lun, timeout=timeout)
        finally:
            provision.delete(name)
            clear_unit_attention(lab.disk_sg, lab.tape_sg)
    finally:
        run("dmsetup", "remove", dm, check=False)
        run("losetup", "-d", loop, check=False)


def lab_target(lab) -> str:
    """The WWN of the loopback target that exports the lab's disk."""
    for link in Path("/sys/kernel/config/target/loopback").glob("naa.*/tpgt_1/lun/lun_*/*"):
        if link.is_symlink() and os.path.basename(os.readlink(link)) == lab.disk_lun.name:
            return link.parts[-5]
    raise AssertionError("the lab's disk is exported on no loopback target")


def extra_lun(lab, lun, timeout: float = 90.0):
    """Export one more LUN for a test; its kernel device, with unit attentions cleared."""
    from lio_xcopy.control import provision

    provision.export_loopback(lun, target_wwn=lab_target(lab))
    dev = provision.find_kernel_device(lun, timeout=timeout)
    # beside the lab's disk (one loopback target: one nexus, so the copy access policy
    # lets them copy together), whatever other targets earlier tests left behind
    host = lab.disk.hctl.split(":")[0]
    assert dev.hctl.split(":")[0] == host, (
        f"{lun.name} at {dev.hctl}, the lab's disk at {lab.disk.hctl}: "
        f"loopback targets {sorted(os.listdir('/sys/kernel/config/target/loopback'))}")
    clear_unit_attention(lab.disk_sg, lab.tape_sg, str(dev.sg))
    return dev


#: Commands that produce no Data-In however large the initiator's buffer (SPC-4: an
#: ALLOCATION LENGTH of 0 is not an error; SBC-4: a TRANSFER LENGTH of 0 moves nothing).
def _stale_probes() -> dict[str, bytes]:
    from lio_xcopy.scsi import sbc, spc, xcopy

    return {
        "INQUIRY, allocation length 0": spc.Inquiry(allocation_length=0).encode(),
        "MODE SENSE (6), allocation length 0":
            spc.ModeSense6(page_code=spc.ALL_PAGES, allocation_length=0).encode(),
        "RECEIVE COPY RESULTS, allocation length 0":
            xcopy.ReceiveCopyResultsOperatingParameters(allocation_length=0).encode(),
        "REQUEST SENSE, allocation length 0": spc.RequestSense(allocation_length=0).encode(),
        "READ (10) of 0 blocks": sbc.Read10(lba=0, transfer_length=0).encode(),
        "TEST UNIT READY with a Data-In buffer": spc.TestUnitReady().encode(),
    }


def check_no_stale_data(sg: str, lba: int, block_size: int = 512,
                        buffer: int = 4096) -> dict[str, int]:
    """Through ``sg``: write a marker at ``lba`` and READ it back (the target's data area
    then holds it), then send each probe with a ``buffer``-byte Data-In buffer. Each
    answers GOOD and hands the initiator no byte of the marker; INQUIRY with ALLOCATION
    LENGTH 36 reports the rest of the buffer as residual. Returns each probe's resid."""
    from lio_xcopy.scsi import sbc, spc
    from lio_xcopy.sg import sgio

    marker = (b"another initiator's data " * (buffer // 25 + 1))[:buffer]
    blocks = buffer // block_size
    resids: dict[str, int] = {}
    with sgio.SgIoDevice(sg) as dev:
        dev.execute(sbc.Write10(lba=lba, transfer_length=blocks).encode(), data_out=marker)
        for name, cdb in _stale_probes().items():
            got = dev.execute(sbc.Read10(lba=lba, transfer_length=blocks).encode(),
                              data_in=buffer)
            assert got.data == marker
            res = dev.execute(cdb, data_in=buffer, check=False)
            assert res.status == 0, f"{name}: {res.explain()}"
            assert not any(res.data), f"{name}: {len(res.data)} bytes, not all zero: " \
                f"{res.data[:48]!r}"
            resids[name] = res.resid
        dev.execute(sbc.Read10(lba=lba, transfer_length=blocks).encode(), data_in=buffer)
        inq = dev.execute(spc.Inquiry(allocation_length=36).encode(), data_in=buffer)
        assert len(inq.data) == 36 and inq.resid == buffer - 36, (len(inq.data), inq.resid)
        assert marker[:16] not in inq.data
        resids["INQUIRY, allocation length 36"] = inq.resid
    return resids
