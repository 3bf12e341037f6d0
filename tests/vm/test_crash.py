"""VM tests: kill -9 of the daemon in the middle of writes and of an EXTENDED COPY.

The next daemon takes the rings over (the kernel fails what was left BUSY and the
initiator retries it), every acknowledged write is in the backing file, and a tape
holds only whole records: the copy the initiator retried finds the drive reporting
its power on and writes nothing at BOT.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import MiB, _start_daemon, clear_unit_attention, extra_lun, restart_daemon, run
from plugins.vm_xcopy import wait_for

from lio_xcopy.control import provision
from lio_xcopy.devices.awstape import AwsTape

RECORD = 64 * 1024
LEFT_ON_RING = re.compile(r"(\d+) command\(s\) left on the ring by an earlier daemon")


def written_by(pid: int) -> int:
    """Bytes a process has passed to write(2) so far (/proc/PID/io wchar)."""
    try:
        io = Path(f"/proc/{pid}/io").read_text()
    except OSError:
        return 0
    return int(re.search(r"^wchar: (\d+)", io, re.M).group(1))


def left_on_ring(lab, since: int) -> int:
    return sum(int(m.group(1)) for m in LEFT_ON_RING.finditer(lab.daemon.text()[since:]))


@pytest.fixture
def crash_disk(lab):
    lun = provision.create_disk("crashdisk", lab.work / "crashdisk.img", 64 * MiB)
    dev = extra_lun(lab, lun)
    yield lun, dev
    provision.delete(lun.name)
    clear_unit_attention(lab.disk_sg, lab.tape_sg)


def test_kill_9_during_writes_loses_no_acknowledged_write(lab, crash_disk, tmp_path):
    _, dev = crash_disk
    data = os.urandom(48 * MiB)
    src = tmp_path / "src"
    src.write_bytes(data)
    mark = len(lab.daemon.text())
    dd = subprocess.Popen(["dd", f"if={src}", f"of={dev.block}", "bs=1M", "oflag=direct",
                           "conv=fsync"], stderr=subprocess.PIPE, text=True)
    wait_for("dd to write 8 MiB", lambda: written_by(dd.pid) >= 8 * MiB or dd.poll() is not None)
    assert dd.poll() is None, "dd finished before the daemon could be killed"
    restart_daemon(lab, signal.SIGKILL)
    _, err = dd.communicate(timeout=300)
    # the write in flight was failed BUSY by the kernel and retried: dd never noticed
    assert dd.returncode == 0, err
    assert f"{len(data)} bytes" in err, err
    assert left_on_ring(lab, mark) >= 1, lab.daemon.text()[mark:]
    with open(lab.work / "crashdisk.img", "rb") as f:
        assert hashlib.sha256(f.read(len(data))).digest() == hashlib.sha256(data).digest()
    # the disk serves on: a read through sd sees the same bytes
    assert run_bytes("dd", f"if={dev.block}", "bs=1M", "count=4", "iflag=direct",
                     "status=none") == data[: 4 * MiB]
    # none of its I/O failed since it was attached (other tests' devices may log errors)
    name = os.path.basename(str(dev.block))
    assert not [ln for ln in run("dmesg").stdout.split("crashdisk")[-1].splitlines()
                if "I/O error" in ln and name in ln]


def test_kill_9_during_an_extended_copy_leaves_whole_records_and_file_0(lab, crash_disk,
                                                                       tmp_path):
    _, disk = crash_disk
    data = os.urandom(64 * MiB)
    with open(lab.work / "crashdisk.img", "r+b") as f:
        f.write(data)
    cart = lab.work / "crashtape.aws"
    tlun = provision.create_tape("crashtape", cart, 256 * MiB)
    tape = extra_lun(lab, tlun)
    try:
        nst = str(tape.tape)
        file0 = os.urandom(5 * RECORD)
        (tmp_path / "file0").write_bytes(file0)
        run("mt", "-f", nst, "rewind")
        run("dd", f"if={tmp_path / 'file0'}", f"of={nst}", f"bs={RECORD}", "status=none")
        # st wrote the filemark on close; the drive stands at the start of file 1
        mark = len(lab.daemon.text())
        copy = subprocess.Popen(
            [sys.executable, "-m", "lio_xcopy", "copy", f"if={disk.sg}", f"of={tape.sg}",
             f"tbs={RECORD}", "-q", "--lid1"],  # the EXTENDED COPY command's own fate
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for("the copy to put 8 MiB on tape",
                 lambda: cart.stat().st_size > 8 * MiB or copy.poll() is not None)
        assert copy.poll() is None, f"the copy ended before the kill: {copy.communicate()}"
        restart_daemon(lab, signal.SIGKILL)
        out, err = copy.communicate(timeout=300)
        assert copy.returncode != 0, f"a copy cut short reported success: {out}{err}"
        assert left_on_ring(lab, mark) >= 1, lab.daemon.text()[mark:]
        # the retried EXTENDED COPY met the power on and wrote nothing at BOT
        assert "power on" in err.lower() or "busy" in err.lower(), err
        with AwsTape.open_readonly(cart, strict=False) as t:
            lengths = [t.record_length(i) for i in range(t.objects)]
        assert lengths[:6] == [RECORD] * 5 + [-1]  # file 0 and its filemark
        file1 = lengths[6:]
        assert file1 and all(n == RECORD for n in file1), file1[-3:]  # whole records only
        # through st: file 0 intact, file 1 = a prefix of the disk in whole records
        clear_unit_attention(str(tape.sg))
        run("mt", "-f", nst, "rewind")
        got0 = run_bytes("dd", f"if={nst}", f"bs={RECORD}")
        assert got0 == file0
        got1 = run_bytes("dd", f"if={nst}", f"bs={RECORD}", f"count={len(file1)}")
        assert len(got1) == len(file1) * RECORD and got1 == data[: len(got1)]
        # then end of data (no filemark: the copy never finished): BLANK CHECK, no bytes
        past = subprocess.run(["dd", f"if={nst}", f"bs={RECORD}", "count=1"],
                              capture_output=True, timeout=60)
        assert past.returncode != 0 and past.stdout == b"", past.stderr
        # end of data is where the last whole record ended: appending works
        # file 1 has no filemark (the copy never ended): close it, as `lio-xcopy backup`
        # does for a job left open, then append file 2
        run("mt", "-f", nst, "eod")
        run("mt", "-f", nst, "weof", "1")
        run("dd", f"if={tmp_path / 'file0'}", f"of={nst}", f"bs={RECORD}", "status=none")
        run("mt", "-f", nst, "rewind")
        run("mt", "-f", nst, "fsf", "2")
        assert run_bytes("dd", f"if={nst}", f"bs={RECORD}") == file0
        print(f"\ncopy cut after {len(got1)} bytes in {len(file1)} records; "
              f"the initiator saw: {err.strip().splitlines()[-1]}")
    finally:
        provision.delete(tlun.name)


def run_bytes(*cmd: str) -> bytes:
    p = subprocess.run(cmd, capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return p.stdout


def test_a_stop_during_an_extended_copy_answers_it_and_nothing_is_retried(lab, crash_disk):
    """SIGTERM (``systemctl stop``/``restart``) mid-copy: the daemon ends the copy in
    COPY ABORTED, COMMANDS CLEARED BY DEVICE SERVER, answers it, exits 0; the copy is not
    left on the ring, so the next daemon does not run it again; the tape holds whole
    records, a prefix of the disk."""
    _, disk = crash_disk
    data = os.urandom(64 * MiB)
    with open(lab.work / "crashdisk.img", "r+b") as f:
        f.write(data)
    cart = lab.work / "stoptape.aws"
    tlun = provision.create_tape("stoptape", cart, 256 * MiB)
    tape = extra_lun(lab, tlun)
    try:
        mark = len(lab.daemon.text())
        copy = subprocess.Popen(
            [sys.executable, "-m", "lio_xcopy", "copy", f"if={disk.sg}", f"of={tape.sg}",
             f"tbs={RECORD}", "-q", "--lid1"],  # the EXTENDED COPY command's own fate
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for("the copy to put 8 MiB on tape",
                 lambda: cart.stat().st_size > 8 * MiB or copy.poll() is not None)
        assert copy.poll() is None, f"the copy ended before the stop: {copy.communicate()}"
        restart_daemon(lab, signal.SIGTERM)  # asserts the daemon exited 0
        out, err = copy.communicate(timeout=300)
        assert copy.returncode != 0, f"a copy cut short reported success: {out}{err}"
        assert "COMMANDS CLEARED BY DEVICE SERVER" in err, err
        log = lab.daemon.text()[mark:]
        assert "ends in COPY ABORTED (COMMANDS CLEARED BY DEVICE SERVER)" in log, log[-3000:]
        # answered before the daemon exited: the EXTENDED COPY ran once and no daemon
        # got it again (a COPY STATUS poll sent meanwhile may wait on the ring; it is
        # answered by the next daemon)
        assert len(re.findall(r"cmd \d+ EXTENDED COPY \(LID1\)", log)) == 1, log[-3000:]
        assert len(re.findall(r"copy crashdisk/\d+ started", log)) == 1, log[-3000:]
        with AwsTape.open_readonly(cart, strict=False) as t:
            records = [r for r in t.dump_records() if r is not None]
        assert records and all(len(r) == RECORD for r in records)
        assert b"".join(records) == data[:len(records) * RECORD]
        print(f"\ncopy stopped after {len(records) * RECORD} bytes; the initiator saw: "
              f"{err.strip().splitlines()[-1]}")
    finally:
        clear_unit_attention(str(tape.sg))
        provision.delete(tlun.name)


def test_a_lun_deleted_while_no_daemon_serves_it_returns_before_the_command_timer(lab):
    """With the daemon dead, a read sits on the LUN's ring; deleting the LUN serves the
    ring from the control plane meanwhile: the read is answered, and so is the
    SYNCHRONIZE CACHE sd sends as tcm_loop removes the disk, instead of each waiting out
    cmd_time_out (600 s) or BUSY retries (6 minutes)."""
    lun = provision.create_disk("orphan", lab.work / "orphan.img", 8 * MiB)
    dev = extra_lun(lab, lun)
    # the new LUN gave every LUN of the target REPORTED LUNS DATA HAS CHANGED: take them
    # all, and let udev finish with the new disk, so nothing else reaches a ring while
    # the daemon is dead (a command sd times out there starts error handling, whose
    # ABORT TASK no daemon answers, and that blocks every LUN of the SCSI host)
    clear_unit_attention(str(dev.sg), lab.disk_sg, lab.tape_sg)
    run("udevadm", "settle", "--timeout=60", check=False)
    name = os.path.basename(str(dev.block))
    for sd in (name, os.path.basename(lab.sd)):  # a loaded TCG guest: more than 30 s
        Path(f"/sys/block/{sd}/device/timeout").write_text("180\n")
    d = lab.daemon
    d.proc.send_signal(signal.SIGKILL)
    assert d.proc.wait(timeout=120) == -signal.SIGKILL
    reader = subprocess.Popen(["dd", f"if={dev.block}", "of=/dev/null", "bs=64k", "count=1",
                               "iflag=direct"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_for("the read to sit on the unserved ring", lambda: sum(
            int(n) for n in Path(f"/sys/block/{name}/inflight").read_text().split()) > 0,
            timeout=30, step=0.01)
        # the delete runs as a separate process: were it stuck in the kernel, the test
        # fails, and the daemon started in `finally` answers what holds it
        t0 = time.monotonic()
        deleter = subprocess.Popen(
            [sys.executable, "-c", "from lio_xcopy.control import provision; "
             f"provision.delete({lun.name!r})"], stderr=subprocess.PIPE, text=True)
        try:
            _, said = deleter.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail("deleting the unserved LUN did not return within 120 s")
        took = time.monotonic() - t0
        assert deleter.returncode == 0, said
        assert "no daemon serves it: serving it from here while it is deleted" in said
        assert not list(Path("/sys/kernel/config/target/core").glob("user_*/orphan"))
        _, err = reader.communicate(timeout=60)
        assert reader.returncode == 0, err  # served by the control plane, then deleted
        errors = [ln for ln in run("dmesg").stdout.splitlines()[-40:]
                  if name in ln and re.search(r"I/O error|timing out", ln)]
        assert not errors, errors
        print(f"\nunserved LUN deleted in {took:.1f} s; the queued read was answered")
    finally:
        d.proc = _start_daemon(lab.work, "a")
        for p in (reader, locals().get("deleter")):
            if p is not None and p.poll() is None:
                try:
                    p.wait(timeout=300)  # released by the daemon's take-over
                except subprocess.TimeoutExpired:
                    p.kill()
        clear_unit_attention(lab.disk_sg, lab.tape_sg)
