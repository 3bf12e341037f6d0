"""LUNs created and removed while the daemon runs; a small cartridge filled to its end."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from conftest import MiB, clear_unit_attention, run

from lio_xcopy.control import provision


def _wait_gone(hctl: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while Path("/sys/bus/scsi/devices", hctl).exists():
        assert time.monotonic() < deadline, f"{hctl} still present"
        time.sleep(0.2)


def test_lun_created_while_running_is_served_then_dropped(lab):
    lun = provision.create_disk("hotdisk", lab.work / "hot.img", 8 * MiB)
    provision.export_loopback(lun)
    dev = provision.find_kernel_device(lun)
    out = run("sg_readcap", str(dev.sg)).stdout
    assert re.search(r"Number of logical blocks=16384\b", out), out
    since = len(lab.daemon.text())
    provision.delete("hotdisk")
    _wait_gone(dev.hctl)
    deadline = time.monotonic() + 10
    while "LUN hotdisk removed" not in lab.daemon.text()[since:]:
        assert time.monotonic() < deadline, lab.daemon.text()[-2000:]
        time.sleep(0.2)
    assert lab.daemon.alive()
    # a deletion is not a failure: one INFO line, no WARNING or ERROR
    text = lab.daemon.text()[since:]
    assert text.count("LUN hotdisk removed") == 1, text
    assert "uio device gone" not in text and "its uio device failed" not in text, text
    assert not re.findall(r" (WARNING|ERROR) .*hotdisk", text), text
    # the other LUNs are still served; LIO first reports REPORTED LUNS DATA HAS CHANGED
    first = run("sg_turs", lab.disk_sg, check=False)
    assert first.returncode == 0 or "Reported luns data has changed" in first.stdout + first.stderr
    run("sg_turs", lab.disk_sg)


def test_small_cartridge_early_warning_then_end_of_medium(lab):
    capacity = 4 * MiB
    lun = provision.create_tape("smalltape", lab.work / "small.aws", capacity)
    provision.export_loopback(lun)
    dev = provision.find_kernel_device(lun)
    nst = str(dev.tape)
    try:
        run("mt", "-f", nst, "setblk", "0")
        src = lab.work / "eom.src"
        src.write_bytes(os.urandom(8 * MiB))
        p = run("dd", f"if={src}", f"of={nst}", "bs=64k", check=False)
        # st reports the end of the medium as ENOSPC after the early warning
        assert p.returncode != 0 and "No space left on device" in p.stderr, p.stderr
        m = re.search(r"(\d+) bytes .*copied", p.stderr)
        assert m, p.stderr
        written = int(m.group(1))
        assert 3 * MiB <= written <= capacity, written
        run("mt", "-f", nst, "rewind")
        back = lab.work / "eom.back"
        run("dd", f"if={nst}", f"of={back}", "bs=64k")
        # every acknowledged record is on the tape, byte for byte
        got = back.read_bytes()
        assert len(got) >= written
        assert got == src.read_bytes()[: len(got)]
    finally:
        provision.delete("smalltape")
        _wait_gone(dev.hctl)
        clear_unit_attention(lab.disk_sg, lab.tape_sg)


def test_fixed_block_mode_round_trip(lab):
    nst = lab.nst
    run("mt", "-f", nst, "rewind")
    run("mt", "-f", nst, "setblk", "512")
    try:
        src = lab.work / "fixed.src"
        src.write_bytes(os.urandom(512 * 300))
        run("dd", f"if={src}", f"of={nst}", "bs=10240")
        run("mt", "-f", nst, "rewind")
        back = lab.work / "fixed.back"
        run("dd", f"if={nst}", f"of={back}", "bs=10240")
        assert back.read_bytes() == src.read_bytes()
        out = run("mt", "-f", nst, "status").stdout
        assert re.search(r"[Tt]ape block size 512 bytes", out), out
    finally:
        run("mt", "-f", nst, "setblk", "0")


def test_daemon_tells_systemd_it_is_ready_and_reloads_on_sighup(lab):
    import signal

    first = lab.daemon.notifications()
    assert any(b"READY=1" in n and b"STATUS=serving" in n for n in first), first
    os.kill(lab.daemon.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    got: list[bytes] = []
    while not any(b"READY=1" in n for n in got):
        assert time.monotonic() < deadline, (got, lab.daemon.text()[-2000:])
        time.sleep(0.2)
        got += lab.daemon.notifications()
    assert any(b"RELOADING=1" in n for n in got)
    assert re.search(rb"STATUS=serving [1-9]\d* LUN", b"".join(got))
    assert "reload: looking for devices again" in lab.daemon.text()
    run("sg_turs", lab.disk_sg)
    assert lab.daemon.alive()
