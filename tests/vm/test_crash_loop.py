"""VM test: the daemon killed with SIGKILL five times under load and restarted each time,
as systemd's ``Restart=always`` would.

fio writes random blocks (4 KiB-1 MiB, O_DIRECT, iodepth 8) with crc32c verify
(``verify_backlog``: written blocks are read back and checked all along) on two disk
LUNs, while EXTENDED COPY disk->tape runs again and again. Each kill lands at a seeded
random moment with fio's I/O in flight (half of them also during a copy); the test
restarts the daemon at once. The kernel fails what was left on the ring BUSY and sd
retries it, so fio never sees an error: no verify error, no failed job, no sd I/O error,
no SCSI error on the disks beyond the BUSY completions the daemon counted. After every
restart every LUN answers INQUIRY and both disks move data again. A copy cut by a kill
may end in COPY ABORTED or meet the tape's power-on unit attention (see test_crash.py);
every copy that reports success left the source on tape byte for byte, and every copy
that overlapped no kill succeeded. ``LIO_XCOPY_CRASH_SEED`` replays a run's kill points.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import MiB, _host_log, _start_daemon, clear_unit_attention, extra_lun, run
from plugins.vm_xcopy import wait_for

from lio_xcopy.control import provision
from lio_xcopy.devices.awstape import AwsTape
from lio_xcopy.scsi import spc, ssc, xcopy
from lio_xcopy.scsi.xcopy import BlockToStream, IdentificationCscd
from lio_xcopy.sg import sgio

KILLS = 5
BS = 512
FIO_DISK = 32 * MiB
COPY_SIZE = 8 * MiB
RECORD = 64 * 1024
IODEPTH = 8
SD_TIMEOUT = 180  # s: sd's command timer on the test's disks (the default is 30)
LEFT_ON_RING = re.compile(r"(\S+): (\d+) command\(s\) left on the ring by an earlier daemon")
#: What a copy cut by a kill may end in (test_crash.py): the copy manager's COPY ABORTED,
#: the tape's power-on unit attention met by the retried command, or BUSY itself.
CUT_COPY = re.compile(r"COPY ABORTED|UNIT ATTENTION|POWER ON|BUSY", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Kill:
    sent: float  # monotonic time of the SIGKILL
    dead: float  # the killed daemon was reaped
    ready: float  # the next daemon wrote its pidfile
    served: float  # every LUN answered INQUIRY and both disks moved data again
    during_copy: bool
    inflight: int  # requests in flight on the two disks just before the kill


@dataclass(frozen=True, slots=True)
class Attempt:
    started: float
    ended: float
    outcome: str  # "done" or what the initiator saw
    exact: bool | None  # a done copy: the cartridge holds the source exactly


def release_udev_queue() -> None:
    """Let udev run the events it held, and see them run: systemd-udevd 252 was seen to
    keep a queue of "change" events for disks going away stopped after one
    ``--start-exec-queue`` (no worker, /run/udev/queue left) until a second one."""
    for _ in range(3):
        run("udevadm", "control", "--start-exec-queue")
        if run("udevadm", "settle", "--timeout=60", check=False).returncode == 0:
            return
    raise AssertionError("udev's event queue did not drain after --start-exec-queue")


class Copier(threading.Thread):
    """EXTENDED COPY disk->tape over and over (rewind, copy, compare the cartridge)."""

    def __init__(self, src_sg: str, tape_sg: str, plist: bytes, cartridge: Path,
                 data: bytes):
        super().__init__(name="copier", daemon=True)
        self.src_sg, self.tape_sg, self.plist = src_sg, tape_sg, plist
        self.cartridge, self.data = cartridge, data
        self.stop = threading.Event()
        self.copying = threading.Event()  # the EXTENDED COPY is outstanding
        self.attempts: list[Attempt] = []
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            with sgio.SgIoDevice(self.src_sg) as src, sgio.SgIoDevice(self.tape_sg) as tape:
                while not self.stop.is_set():
                    t0 = time.monotonic()
                    outcome = self.one(src, tape)
                    exact = None
                    if outcome == "done":
                        with AwsTape.open_readonly(self.cartridge, strict=False) as t:
                            records = t.dump_records()
                        exact = b"".join(r for r in records if r is not None) == self.data
                    self.attempts.append(Attempt(t0, time.monotonic(), outcome, exact))
        except BaseException as e:  # handed to the test's thread
            self.failure = e

    def one(self, src: sgio.SgIoDevice, tape: sgio.SgIoDevice) -> str:
        try:
            for dev in (src, tape):  # a restart leaves the tape's power on to report
                for _ in range(3):
                    if dev.execute(spc.TestUnitReady().encode(), check=False).good:
                        break
            r = tape.execute(ssc.Rewind().encode(), timeout=120, check=False)
            if not r.good:
                return f"REWIND: {r.explain()}"
            cdb = xcopy.ExtendedCopyLid1(parameter_list_length=len(self.plist)).encode()
            self.copying.set()
            try:
                r = src.execute(cdb, data_out=self.plist, timeout=180, check=False)
            finally:
                self.copying.clear()
            return "done" if r.good else r.explain()
        except sgio.SgIoError as e:
            return f"no SCSI status: {e}"


@pytest.fixture
def loop_luns(lab):
    made: list[str] = []
    try:
        disks = []
        for i in range(2):
            lun = provision.create_disk(f"vmcl{i}", lab.work / f"cl{i}.img", FIO_DISK)
            made.append(lun.name)
            disks.append((lun, extra_lun(lab, lun)))
        data = os.urandom(COPY_SIZE)
        (lab.work / "clsrc.img").write_bytes(data)
        src = provision.create_disk("vmclsrc", lab.work / "clsrc.img", COPY_SIZE)
        made.append(src.name)
        src_dev = extra_lun(lab, src)
        tape = provision.create_tape("vmcltape", lab.work / "cltape.aws", 64 * MiB)
        made.append(tape.name)
        tape_dev = extra_lun(lab, tape)
        clear_unit_attention(*(str(d.sg) for _, d in disks), str(src_dev.sg),
                             str(tape_dev.sg))
        yield disks, (src, src_dev, data), (tape, tape_dev)
    finally:
        for name in made:
            provision.delete(name)
        clear_unit_attention(lab.disk_sg, lab.tape_sg)


def kill_and_restart(lab) -> tuple[float, float, float]:
    """SIGKILL the daemon and start the next one at once, as systemd's Restart=always
    would (conftest's restart_daemon, timed): when killed, reaped, ready."""
    d = lab.daemon
    sent = time.monotonic()
    d.proc.send_signal(signal.SIGKILL)
    assert d.proc.wait(timeout=120) == -signal.SIGKILL
    dead = time.monotonic()
    d.proc = _start_daemon(lab.work, "a")
    return sent, dead, time.monotonic()


def moved(sd: str) -> int:
    c = sgio.io_counters(sd)
    return c.read_bytes + c.written_bytes


def inflight(sd: str) -> int:
    """Requests the block layer has issued to the disk and not yet seen completed."""
    name = os.path.basename(sd)
    return sum(int(n) for n in Path(f"/sys/block/{name}/inflight").read_text().split())


def flowing(since: dict[str, int]):
    """A condition: every disk in ``since`` moved data since those counts."""
    return lambda: all(moved(sd) > n for sd, n in since.items())


def test_kill_9_five_times_under_fio_verify_and_copies(lab, loop_luns):
    disks, (src, src_dev, data), (tape, tape_dev) = loop_luns
    seed = int(os.environ.get("LIO_XCOPY_CRASH_SEED", str(random.randrange(1 << 32))))
    line = f"crash loop: seed {seed} (LIO_XCOPY_CRASH_SEED={seed} replays the kill points)"
    print(f"\n{line}")
    host_log = _host_log()
    if host_log is not None:  # where the host reads it even if a kill hangs the guest
        with host_log.open("a") as f:
            f.write(f"{line}\n")
    rng = random.Random(seed)
    t_begin = time.monotonic()
    sds = [str(d.block) for _, d in disks]
    names = [os.path.basename(sd) for sd in sds]
    every_sg = [lab.disk_sg, lab.tape_sg, *(str(d.sg) for _, d in disks), str(src_dev.sg),
                str(tape_dev.sg)]
    for sd in sds:  # a restart under TCG can take longer than sd's 30 s command timer
        Path(f"/sys/block/{os.path.basename(sd)}/device/timeout").write_text(
            f"{SD_TIMEOUT}\n")
    errors_before = {sd: sgio.io_counters(sd).errors for sd in sds}
    dmesg_lines = len(run("dmesg").stdout.splitlines())
    mark = len(lab.daemon.text())

    jobfile, out, stop_file = (lab.work / "crashloop.fio", lab.work / "crashloop.json",
                               lab.work / "crashloop.stop")
    stop_file.unlink(missing_ok=True)
    jobfile.write_text(
        f"[global]\nioengine=libaio\ndirect=1\niodepth={IODEPTH}\nrw=randwrite\n"
        "bssplit=4k/40:16k/20:64k/20:256k/10:1m/10\nblockalign=4k\n"
        "verify=crc32c\nverify_backlog=16\nverify_fatal=1\n"
        # runs until the test creates the trigger file (600 s: a bound only)
        "time_based=1\nruntime=600\n"
        + "".join(f"[{n}]\nfilename={sd}\nsize={FIO_DISK}\n"
                  for n, sd in zip(names, sds, strict=True)))
    fio = subprocess.Popen(["fio", "--output-format=json", f"--output={out}",
                            f"--trigger-file={stop_file}", "--trigger=true", str(jobfile)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    half = COPY_SIZE // BS // 2
    plist = xcopy.build_extended_copy(
        [IdentificationCscd(bytes.fromhex(src.naa), 0, block_length=BS),
         IdentificationCscd(bytes.fromhex(tape.naa), 1, block_length=0)],
        [BlockToStream(0, 1, half, i * half, RECORD) for i in range(2)])
    copier = Copier(str(src_dev.sg), str(tape_dev.sg), plist, Path(tape.path), data)
    kills: list[Kill] = []
    try:
        # udev runs scsi_id (an SG_IO INQUIRY with a timeout of seconds) on a disk's
        # "change" events; one that lands while the daemon is dead outlives its timeout
        # on the BUSY retries, and sd logs "timing out command" for it. Held till the end.
        run("udevadm", "control", "--stop-exec-queue")
        start = {sd: moved(sd) for sd in sds}
        wait_for("fio to write on both disks",
                 lambda: fio.poll() is not None or all(moved(sd) > start[sd] for sd in sds))
        assert fio.poll() is None, fio.communicate()
        copier.start()
        wait_for("the first copy", lambda: copier.attempts or copier.failure, timeout=120)
        for i in range(KILLS):
            during_copy = rng.random() < 0.5
            time.sleep(rng.uniform(0.5, 3.0))
            if during_copy:
                copier.copying.wait(timeout=60)
                time.sleep(rng.uniform(0.0, 0.5))
            seen = [0]  # the requests in flight when last looked at

            def in_flight(seen: list[int] = seen) -> bool:
                seen[0] = sum(inflight(sd) for sd in sds)
                return seen[0] > 0

            wait_for("I/O in flight on the disks", in_flight, timeout=10, step=0.01)
            n_inflight = seen[0]
            copying = copier.copying.is_set()
            assert fio.poll() is None, f"fio ended before kill {i + 1}: {fio.communicate()}"
            t_kill, t_dead, t_ready = kill_and_restart(lab)
            # every LUN served again: INQUIRY answered by the new daemon, both disks move data
            for sg in every_sg:
                assert "Vendor identification" in run("sg_inq", sg, timeout=120).stdout, sg
            wait_for(f"fio's I/O to flow again after kill {i + 1}",
                     flowing({sd: moved(sd) for sd in sds}), timeout=120)
            kills.append(Kill(t_kill, t_dead, t_ready, time.monotonic(), copying, n_inflight))
            print(f"crash loop: kill {i + 1} at {t_kill - t_begin:6.1f} s "
                  f"({n_inflight} request(s) in flight, copy running: {copying}); reaped after "
                  f"{t_dead - t_kill:.1f} s, the next daemon ready after {t_ready - t_kill:.1f}"
                  " s, all LUNs served after "
                  f"{time.monotonic() - t_kill:.1f} s")
        # a copy after the last restart goes through whole
        last = kills[-1].served
        wait_for("a whole copy after the last restart",
                 lambda: copier.failure or any(a.started > last and a.outcome == "done"
                                               for a in copier.attempts), timeout=180)
    finally:
        copier.stop.set()
        stop_file.touch()
        try:
            _, stderr = fio.communicate(timeout=180)
        finally:
            if fio.poll() is None:
                fio.kill()
                fio.wait()
            release_udev_queue()
        copier.join(timeout=300)
    assert copier.failure is None, repr(copier.failure)
    assert not copier.is_alive(), "the copier hung"
    assert lab.daemon.alive(), lab.daemon.text()[-3000:]
    log = lab.daemon.text()[mark:]
    if os.environ.get("LIO_XCOPY_WORK"):  # the daemons' log of the run, kept on the host
        Path(os.environ["LIO_XCOPY_WORK"], "crash-loop-daemon.log").write_text(log)
    assert "Traceback" not in log, log[-4000:]

    # fio: every job ran through every kill without an error, and verified what it wrote
    assert fio.returncode == 0, stderr
    text = out.read_text()  # fio's warnings may come first
    jobs = json.loads(text[text.index("{"):])["jobs"]
    assert sorted(j["jobname"] for j in jobs) == sorted(names)
    for job in jobs:
        assert job["error"] == 0, job
        assert job["write"]["io_bytes"] > 0 and job["read"]["io_bytes"] > 0, job["jobname"]
    written = sum(j["write"]["io_bytes"] for j in jobs)
    verified = sum(j["read"]["io_bytes"] for j in jobs)

    # no command failed: sd counts every completion that was not GOOD in ioerr_cnt, and
    # the only ones allowed are the BUSY the kernel answered at each ring take-over. The
    # daemon logs what it found on the ring; the reset also fails BUSY what sd queued
    # between the daemon's wake-up (which reaps the answers already written, and so
    # frees sd to send more) and the reset itself: at most one queue depth a take-over.
    busy: dict[str, int] = {}
    for m in LEFT_ON_RING.finditer(log):
        busy[m.group(1)] = busy.get(m.group(1), 0) + int(m.group(2))
    assert sum(busy.values()) >= 1, log[-4000:]  # the kills did catch commands on the rings
    for (lun, _), sd in zip(disks, sds, strict=True):
        extra = sgio.io_counters(sd).errors - errors_before[sd]
        assert extra <= busy.get(lun.name, 0) + KILLS * IODEPTH, (sd, extra, busy)
    new = run("dmesg").stdout.splitlines()[dmesg_lines:]
    bad = [ln for ln in new if any(re.search(rf"\b{n}\b", ln) for n in names)
           and re.search(r"I/O error|FAILED Result|timing out|abort", ln, re.IGNORECASE)]
    assert not bad, "\n".join(bad)

    # copies: whole ones are exact, cut ones overlapped a kill and ended as allowed
    attempts = copier.attempts
    done = [a for a in attempts if a.outcome == "done"]
    assert all(a.exact for a in done), [a for a in done if not a.exact]
    cut = [a for a in attempts if a.outcome != "done"]
    for a in cut:
        assert any(a.started <= k.served and a.ended >= k.sent for k in kills), a
        assert CUT_COPY.search(a.outcome), a.outcome
    assert len(kills) == KILLS and all(k.inflight > 0 for k in kills)
    print(f"crash loop: seed {seed}: {len(kills)} kills ({sum(k.during_copy for k in kills)} "
          f"during a copy), {sum(busy.values())} command(s) failed BUSY and retried; fio "
          f"{written} bytes written, {verified} bytes verified, 0 verify errors; copies "
          f"{len(done)} completed byte-exact, {len(cut)} cut by a kill; daemon alive; "
          f"{time.monotonic() - t_begin:.0f} s")
    for outcome, n in collections.Counter(a.outcome for a in cut).most_common():
        print(f"crash loop:   {n} cut cop(ies) ended: {outcome}")
