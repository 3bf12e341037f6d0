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

import fcntl
import os
import struct
import time
from pathlib import Path

from conftest import clear_unit_attention, restart_daemon, run, sense_of
from plugins.vm_bridge import BARCODES, PHYS_TARGET

from lio_xcopy.control import provision
from lio_xcopy.handler_config import HW_MAX_SECTORS, SUBTYPE
from lio_xcopy.sg.resolve import DeviceNotFound, resolve


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
