"""A "physical" tape library on the target host and its pass-through LUNs: a pytest
plugin (registered in tests/vm/conftest.py) with the module-scoped ``bridge`` fixture.

The physical library is a changer and one drive that a second daemon (subtype
``physlib``) serves over a loopback target of their own; the daemon under test passes
the drive (by its /dev/tape/by-id name) and the changer (by its NAA designator) through
on another loopback target.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import rtslib_fb
from conftest import MiB, clear_unit_attention, run

from lio_xcopy.control import library as ops
from lio_xcopy.control import provision, rtslib_adapter
from lio_xcopy.handler_config import HW_MAX_SECTORS, HandlerConfig

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


def phys_lun(name: str, hc: HandlerConfig, size: int = 64 * MiB) -> provision.Lun:
    """A storage object the second daemon serves (its subtype, not ours): a device of
    the "physical" library's kind, exported with :func:`provision.export_loopback` on
    PHYS_TARGET while the ``bridge`` fixture runs."""
    rts = rtslib_adapter.rtslib()
    so = rts.UserBackedStorageObject(
        name, config=f"{PHYS_SUBTYPE}/{hc.format()}", size=size, wwn=str(uuid.uuid4()),
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
    phys = [phys_lun("physchanger", HandlerConfig("changer", str(path))),
            phys_lun("physdrive0", HandlerConfig("tape", str(path), {"drive": "0"}))]
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
