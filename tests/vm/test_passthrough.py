"""Pass-through LUNs through the real kernel: a "physical" library attached to the
target host, passed through by the daemon under test to the backup server.

The physical library is a changer and one drive that a second daemon (subtype
``physlib``, a process of its own) serves over a loopback target of their own: the
target host sees them as /dev/sgN and /dev/nstN, as it would a library on its HBA. The
daemon under test passes that drive (by its /dev/tape/by-id name) and that changer (by
its NAA designator) through on another loopback target, where the stock tools drive
them. The tests run in file order and share the library.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import rtslib_fb
from conftest import MiB, clear_unit_attention, restart_daemon, run, sense_of

from lio_xcopy.control import library as ops
from lio_xcopy.control import provision, rtslib_adapter
from lio_xcopy.handler_config import HW_MAX_SECTORS, SUBTYPE, HandlerConfig
from lio_xcopy.sg.resolve import DeviceNotFound, resolve

PHYS_SUBTYPE = "physlib"
PHYS_TARGET = "naa.5001405aaaaaaaa1"
PT_TARGET = "naa.5001405bbbbbbbb2"
BARCODES = ops.lto_barcodes(3)


@dataclass
class Node:
    hctl: str
    sg: str
    nst: str | None


@dataclass
class Bridge:
    phys_changer: Node
    phys_drive: Node
    changer: Node  # the pass-through changer, as the backup server sees it
    drive: Node
    drive_name: str  # the stable name the pass-through drive was made with
    phys_drive_lun: provision.Lun


def _node(dev) -> Node:
    return Node(dev.hctl, str(dev.sg), str(dev.tape) if dev.tape else None)


def _start_phys_daemon(work: Path) -> subprocess.Popen:
    log, pidfile = work / "physlib.log", work / "physlib.pid"
    with log.open("w") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lio_xcopy", "daemon", "-v", "--subtype", PHYS_SUBTYPE,
             "--pidfile", str(pidfile), "--state-file", str(work / "physlib.state")],
            stdout=f, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while not pidfile.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"physlib daemon did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return proc


def _phys_lun(name: str, hc: HandlerConfig) -> provision.Lun:
    """A storage object the second daemon serves (its subtype, not ours)."""
    rts = rtslib_adapter.rtslib()
    so = rts.UserBackedStorageObject(
        name, config=f"{PHYS_SUBTYPE}/{hc.format()}", size=64 * MiB, wwn=str(uuid.uuid4()),
        hw_max_sectors=HW_MAX_SECTORS, control=provision.CONTROL)
    return provision.Lun(name, hc.kind, Path(hc.path), so.wwn, so)


def _by_id(nst: str, timeout: float = 30) -> str:
    """udev's /dev/tape/by-id/...-nst link of a drive."""
    deadline = time.monotonic() + timeout
    while True:
        run("udevadm", "settle", check=False)
        for link in sorted(Path("/dev/tape/by-id").glob("*-nst")):
            if os.path.realpath(link) == nst:
                return str(link)
        assert time.monotonic() < deadline, f"no /dev/tape/by-id link to {nst}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def bridge(lab):
    work = lab.work
    proc = _start_phys_daemon(work)
    path = work / "physlib"
    ops.create_library(path, slots=4, drives=1, capacity=64 * MiB, barcodes=BARCODES,
                       drive_luns=["physdrive0"])
    phys = [_phys_lun("physchanger", HandlerConfig("changer", str(path))),
            _phys_lun("physdrive0", HandlerConfig("tape", str(path), {"drive": "0"}))]
    pt: list[provision.Lun] = []
    try:
        for lun in phys:
            provision.export_loopback(lun, target_wwn=PHYS_TARGET)
        pc, pd = (_node(provision.find_kernel_device(lun)) for lun in phys)
        clear_unit_attention(lab.disk_sg, lab.tape_sg, pc.sg, pd.sg)
        drive_name = _by_id(pd.nst)
        naa = phys[0].naa
        pt = [provision.create_passthrough("ptchanger", f"naa.{naa}"),
              provision.create_passthrough("ptdrive", drive_name)]
        for lun in pt:
            provision.export_loopback(lun, target_wwn=PT_TARGET)
        c, d = (_node(provision.find_kernel_device(lun)) for lun in pt)
        clear_unit_attention(lab.disk_sg, lab.tape_sg, pc.sg, pd.sg, c.sg, d.sg)
        yield Bridge(pc, pd, c, d, drive_name, phys[1])
    finally:
        for lun in [*pt, *phys]:
            provision.delete(lun.name)
        for wwn in (PHYS_TARGET, PT_TARGET):  # nothing left for later tests to export on
            with contextlib.suppress(rtslib_fb.RTSLibNotInCFSError):
                rtslib_fb.Target(rtslib_fb.FabricModule("loopback"), wwn, mode="lookup").delete()
        clear_unit_attention(lab.disk_sg, lab.tape_sg)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        shutil.rmtree(path, ignore_errors=True)  # another module may set up its own
        text = (work / "physlib.log").read_text(errors="replace")
        assert rc == 0 and "Traceback" not in text, text[-3000:]


def _tur(sg: str) -> tuple[str, str]:
    p = run("sg_raw", sg, "00", "00", "00", "00", "00", "00", check=False)
    return sense_of(p.stdout + p.stderr)


def test_an_empty_drive_is_passed_through(bridge, lab):
    """LIO's pscsi needs a ready device; ours is made on a drive with no cartridge and
    answers INQUIRY with the real drive's data, the 3PC bit set."""
    assert _tur(bridge.drive.sg) == ("Not Ready", "Medium not present")
    inq = run("sg_inq", bridge.drive.sg).stdout
    assert "lio-xcopy tape" in inq and "3PC=1" in inq, inq
    page = run("sg_vpd", "-p", "di", "-H", bridge.drive.sg).stdout
    assert page == run("sg_vpd", "-p", "di", "-H", bridge.phys_drive.sg).stdout
    # REPORT SUPPORTED OPERATION CODES: the drive's list, plus the copy commands the
    # pass-through LUN answers itself
    ops = run("sg_opcodes", bridge.drive.sg).stdout
    for name in ("Extended copy(LID1)", "Copy operation abort", "Receive copy status(LID1)",
                 "Rewind"):
        assert name.lower() in ops.lower(), ops
    # no larger command than the real drive's queue takes (LIO splits none for TCMU):
    # the sg driver's BLKSECTGET, in bytes
    fd = os.open(bridge.phys_drive.sg, os.O_RDONLY | os.O_NONBLOCK)
    try:
        limit = struct.unpack("i", fcntl.ioctl(fd, 0x1267, struct.pack("i", 0)))[0] // 512
    finally:
        os.close(fd)
    attrib = next(Path("/sys/kernel/config/target/core").glob("user_*/ptdrive/attrib"))
    assert int((attrib / "hw_max_sectors").read_text()) == min(HW_MAX_SECTORS, limit), limit
    assert "Traceback" not in lab.daemon.text()


def test_mtx_through_the_changer_loads_the_drive_and_the_initiator_sees_it(bridge):
    mtx = ("mtx", "-f", bridge.changer.sg)
    status = run(*mtx, "status").stdout
    assert "Data Transfer Element 0:Empty" in status
    assert run(*mtx, "load", "2", "0").returncode == 0
    assert "Data Transfer Element 0:Full (Storage Element 2 Loaded):VolumeTag = " \
        f"{BARCODES[1]}" in run(*mtx, "status").stdout
    # the real drive's unit attention reaches the backup server, once
    assert _tur(bridge.drive.sg) == ("Unit Attention",
                                     "Not ready to ready change, medium may have changed")
    assert _tur(bridge.drive.sg) == ("", "")


def test_mt_and_tar_through_the_drive(bridge, lab):
    nst = bridge.drive.nst
    src = lab.work / "pt-src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}").write_bytes(os.urandom(100_000 + i))
    run("mt", "-f", nst, "rewind")
    run("mt", "-f", nst, "setblk", "0")
    run("tar", "-C", str(src), "-b", "64", "-cf", nst, ".")  # closing writes a filemark
    run("tar", "-C", str(src), "-b", "64", "-cf", nst, "f0")
    run("mt", "-f", nst, "weof", "1")
    run("mt", "-f", nst, "rewind")
    assert "File number=0, block number=0" in run("mt", "-f", nst, "status").stdout
    out = lab.work / "pt-out"
    out.mkdir()
    run("tar", "-C", str(out), "-b", "64", "-xf", nst)
    for i in range(3):
        assert (out / f"f{i}").read_bytes() == (src / f"f{i}").read_bytes()
    run("mt", "-f", nst, "rewind")
    run("mt", "-f", nst, "fsf", "1")
    assert "File number=1" in run("mt", "-f", nst, "status").stdout
    assert run("tar", "-b", "64", "-tf", nst).stdout.split() == ["f0"]


def test_the_lun_survives_renumbering(bridge, lab):
    """The drive is unplugged from the target host and plugged back, coming back under
    another sg number (as after a reboot): the pass-through LUN finds it by its stable
    name, before and after a daemon restart."""
    d = bridge.phys_drive
    lun_id = int(d.hctl.rsplit(":", 1)[1])
    # an open sg file keeps its number taken after the device is gone (sg_device_destroy
    # runs at the last close): the drive cannot come back under it
    hold = os.open(d.sg, os.O_RDONLY | os.O_NONBLOCK)
    try:
        for export in list(bridge.phys_drive_lun.storage_object.attached_luns):
            export.delete()  # tcm_loop removes the SCSI device: a hot-unplug
        deadline = time.monotonic() + 30
        while Path("/sys/bus/scsi/devices", d.hctl).exists():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        # gone: the LUN answers, with the SPC-4 sense of a device it cannot reach
        assert _tur(bridge.drive.sg) == ("Hardware Error",
                                         "Logical unit communication failure")
        provision.export_loopback(bridge.phys_drive_lun, lun_id, target_wwn=PHYS_TARGET)
        deadline = time.monotonic() + 30
        while True:
            run("udevadm", "settle", check=False)
            try:
                back = resolve(bridge.drive_name, exclude_subtype=SUBTYPE)
                break
            except DeviceNotFound:
                assert time.monotonic() < deadline, sorted(os.listdir("/sys/bus/scsi/devices"))
                time.sleep(0.2)
    finally:
        os.close(hold)
    assert str(back.sg) != d.sg
    clear_unit_attention(bridge.drive.sg)
    run("mt", "-f", bridge.drive.nst, "rewind")
    assert "File number=0, block number=0" in run("mt", "-f", bridge.drive.nst,
                                                  "status").stdout
    assert "f0" in run("tar", "-b", "64", "-tf", bridge.drive.nst).stdout
    restart_daemon(lab)
    clear_unit_attention(bridge.drive.sg, bridge.changer.sg)
    run("mt", "-f", bridge.drive.nst, "rewind")
    assert "f0" in run("tar", "-b", "64", "-tf", bridge.drive.nst).stdout
    assert run("mtx", "-f", bridge.changer.sg, "unload", "2", "0").returncode == 0
    assert "Data Transfer Element 0:Empty" in run("mtx", "-f", bridge.changer.sg,
                                                  "status").stdout
