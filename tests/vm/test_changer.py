"""A tape library through the real kernel: an SMC-3 changer LUN and two drive LUNs of
one library directory, driven by stock mtx and sg_raw; the drives by st (mt, dd).

The tests run in file order and share the library: each starts from what the previous
one left, as an operator's session would.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import MiB, clear_unit_attention, restart_daemon, run, sense_of

from lio_xcopy.control import library as ops
from lio_xcopy.control import provision
from lio_xcopy.devices.awstape import AwsTape
from lio_xcopy.errors import ConfigError

SLOTS, IE_SLOTS, DRIVES = 8, 2, 2
BARCODES = ops.lto_barcodes(6)  # L00001L8 .. L00006L8 in slots 1-6


@dataclass
class LabLibrary:
    path: Path
    changer: str  # /dev/sgN of the changer
    drive_sg: list[str]
    nst: list[str]
    hctls: list[str]

    def mtx(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("mtx", "-f", self.changer, *args, check=check)

    def status(self) -> list[str]:
        """``mtx status`` without the padding of the 32-byte volume tags."""
        return [line.rstrip() for line in self.mtx("status").stdout.splitlines()]

    def expected(self, drives: dict[int, tuple[int, str]], slots: dict[int, str]) -> list[str]:
        """mtx's status text: drive -> (source slot, barcode); slot (1-based, import/export
        after the storage slots) -> barcode."""
        out = [f"  Storage Changer {self.changer}:{DRIVES} Drives, {SLOTS + IE_SLOTS} Slots "
               f"( {IE_SLOTS} Import/Export )"]
        for d in range(DRIVES):
            if d in drives:
                src, bc = drives[d]
                out.append(f"Data Transfer Element {d}:Full (Storage Element {src} Loaded)"
                           f":VolumeTag = {bc}")
            else:
                out.append(f"Data Transfer Element {d}:Empty")
        for s in range(1, SLOTS + IE_SLOTS + 1):
            ie = " IMPORT/EXPORT" if s > SLOTS else ""
            out.append(f"      Storage Element {s}{ie}:Full :VolumeTag={slots[s]}" if s in slots
                       else f"      Storage Element {s}{ie}:Empty")
        return out


def _wait_gone(hctl: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while Path("/sys/bus/scsi/devices", hctl).exists():
        assert time.monotonic() < deadline, f"{hctl} still present"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def library(lab):
    path = lab.work / "library"
    names = [f"libtape{i}" for i in range(DRIVES)]
    ops.create_library(path, slots=SLOTS, ie_slots=IE_SLOTS, drives=DRIVES,
                       capacity=64 * MiB, barcodes=BARCODES, drive_luns=names)
    luns = [provision.create_changer("libchanger", path)]
    luns += [provision.create_library_drive(n, path, i) for i, n in enumerate(names)]
    for lun in luns:
        provision.export_loopback(lun)
    devs = [provision.find_kernel_device(lun) for lun in luns]
    sgs = [str(d.sg) for d in devs]
    clear_unit_attention(lab.disk_sg, lab.tape_sg, *sgs)
    yield LabLibrary(path, sgs[0], sgs[1:], [str(d.tape) for d in devs[1:]],
                  [d.hctl for d in devs])
    for lun in luns:
        provision.delete(lun.name)
    for d in devs:
        _wait_gone(d.hctl)
    clear_unit_attention(lab.disk_sg, lab.tape_sg)


def raw(sg: str, *cdb: str) -> tuple[str, str]:
    p = run("sg_raw", sg, *cdb, check=False)
    return sense_of(p.stdout + p.stderr)


def move(lib: LabLibrary, src: int, dst: int) -> tuple[str, str]:
    """MOVE MEDIUM by sg_raw, default transport; the sense it got."""
    return raw(lib.changer, "a5", "00", "00", "00", f"{src >> 8:02x}", f"{src & 0xFF:02x}",
               f"{dst >> 8:02x}", f"{dst & 0xFF:02x}", "00", "00", "00", "00")


def test_inquiry_and_status_of_a_new_library(library):
    out = library.mtx("inquiry").stdout
    assert "Product Type: Medium Changer" in out and "Product ID: 'lio-xcopy lib   '" in out
    assert library.status() == library.expected(
        {}, {i + 1: bc for i, bc in enumerate(BARCODES)})


def test_drive_identifiers_are_the_drives_vpd_83_naa(library):
    """READ ELEMENT STATUS with DVCID: each drive's identifier is the NAA designator the
    kernel read from that drive LUN's VPD page 83h, so a host can pair element and st."""
    from lio_xcopy.sg.sgio import SgIoDevice

    cdb = bytes.fromhex("b804" "0100" "0002" "01" "001000" "00" "00")
    with SgIoDevice(library.changer) as dev:
        data = dev.execute(cdb, data_in=4096).data
    assert struct.unpack_from(">HH", data) == (0x0100, 2)
    typ, _, dlen, count = struct.unpack_from(">BBHI", data, 8)
    assert (typ, dlen, count) == (4, 16 + 16, 64)
    for i, hctl in enumerate(library.hctls[1:]):
        d = data[16 + i * dlen: 16 + (i + 1) * dlen]
        assert d[12:16] == bytes([1, 3, 0, 16])  # binary, NAA, 16 bytes
        page = Path("/sys/bus/scsi/devices", hctl, "vpd_pg83").read_bytes()
        assert bytes([1, 3, 0, 16]) + d[16:] in page


def test_load_writes_through_the_drive_into_that_cartridge(library, lab):
    p = library.mtx("load", "3", "0")
    assert "Loading media from Storage Element 3 into drive 0...done" in p.stdout
    slots = {i + 1: bc for i, bc in enumerate(BARCODES) if i != 2}
    assert library.status() == library.expected({0: (3, "L00003L8")}, slots)
    nst = library.nst[0]
    clear_unit_attention(library.drive_sg[0])  # the drive reports the new cartridge once
    run("mt", "-f", nst, "setblk", "0")
    records = [os.urandom(65536), os.urandom(65536), os.urandom(1000)]
    src = lab.work / "lib.src"
    src.write_bytes(b"".join(records[:2]))
    run("dd", f"if={src}", f"of={nst}", "bs=64k")  # closing writes a filemark
    tail = lab.work / "lib.tail"
    tail.write_bytes(records[2])
    run("dd", f"if={tail}", f"of={nst}", "bs=1000")
    run("mt", "-f", nst, "rewind")
    back = lab.work / "lib.back"
    run("dd", f"if={nst}", f"of={back}", "bs=64k")
    assert back.read_bytes() == b"".join(records[:2])
    with AwsTape.open_readonly(library.path / "L00003L8.aws") as t:
        assert t.dump_records() == [records[0], records[1], None, records[2], None]
    with AwsTape.open_readonly(library.path / "L00001L8.aws") as t:
        assert t.objects == 0  # the others are untouched


def test_unload_transfer_and_load_the_second_drive(library):
    p = library.mtx("unload")
    assert "Unloading drive 0 into Storage Element 3...done" in p.stdout
    library.mtx("transfer", "3", "7")
    library.mtx("load", "7", "1")
    slots = {1: "L00001L8", 2: "L00002L8", 4: "L00004L8", 5: "L00005L8", 6: "L00006L8"}
    assert library.status() == library.expected({1: (7, "L00003L8")}, slots)
    # the second drive now reads what the first one wrote
    clear_unit_attention(library.drive_sg[1])
    run("mt", "-f", library.nst[1], "rewind")
    run("mt", "-f", library.nst[1], "fsf", "1")
    p = run("dd", f"if={library.nst[1]}", "of=/dev/null", "bs=64k")
    assert "1000 bytes" in p.stderr, p.stderr
    assert library.mtx("inventory").returncode == 0
    assert library.status() == library.expected({1: (7, "L00003L8")}, slots)


def test_illegal_moves_get_the_smc_sense(library):
    slot = [0x1000 + i for i in range(SLOTS)]
    drive = [0x0100, 0x0101]
    ir = "Illegal Request"
    assert move(library, slot[7], drive[0]) == (ir, "Medium source element empty")
    assert move(library, slot[0], drive[1]) == (ir, "Medium destination element full")
    assert move(library, slot[0], slot[1]) == (ir, "Medium destination element full")
    assert move(library, 0x1100, drive[0]) == (ir, "Invalid element address")
    assert move(library, slot[0], 0x0001) == (ir, "Invalid element address")
    # the host holding drive 1 locks it: the robot may not take its cartridge
    run("sg_raw", library.drive_sg[1], "1e", "00", "00", "00", "01", "00")
    assert move(library, drive[1], slot[7]) == (ir, "Medium removal prevented")
    run("sg_raw", library.drive_sg[1], "1e", "00", "00", "00", "00", "00")
    # EXCHANGE MEDIUM is not supported
    assert raw(library.changer, "a6", *["00"] * 11) == (ir, "Invalid command operation code")
    slots = {1: "L00001L8", 2: "L00002L8", 4: "L00004L8", 5: "L00005L8", 6: "L00006L8"}
    assert library.status() == library.expected({1: (7, "L00003L8")}, slots)


def test_import_and_export_through_the_mail_slots(library, lab):
    outside = lab.work / "IMP001.aws"
    with AwsTape(outside, 8 * MiB, create=True) as t:
        t.write_filemarks(1)
    assert ops.import_cartridge(library.path, outside).label == "import/export 1"
    # the host learns of it by UNIT ATTENTION, once
    assert raw(library.changer, "00", "00", "00", "00", "00", "00") == (
        "Unit Attention", "Import or export element accessed")
    library.mtx("transfer", "9", "8")
    # while a host prevents medium removal nothing leaves: no move into a mail slot...
    prevent = ("sg_raw", library.changer, "1e", "00", "00", "00", "01", "00")
    allow = ("sg_raw", library.changer, "1e", "00", "00", "00", "00", "00")
    run(*prevent)
    assert move(library, 0x1000, 0x0011) == ("Illegal Request", "Medium removal prevented")
    run(*allow)
    library.mtx("transfer", "1", "10")
    run(*prevent)  # ... and no export by the operator
    with pytest.raises(ConfigError, match="door"):
        ops.export_cartridge(library.path, "L00001L8", lab.work)
    run(*allow)
    out = ops.export_cartridge(library.path, "L00001L8", lab.work)
    assert out == lab.work / "L00001L8.aws" and out.is_file()
    assert raw(library.changer, "00", "00", "00", "00", "00", "00") == (
        "Unit Attention", "Import or export element accessed")
    slots = {2: "L00002L8", 4: "L00004L8", 5: "L00005L8", 6: "L00006L8", 8: "IMP001"}
    assert library.status() == library.expected({1: (7, "L00003L8")}, slots)
    assert ops.where(library.path, "IMP001").label == "slot 8"


def test_state_survives_a_daemon_restart(library, lab):
    before = library.status()
    restart_daemon(lab)
    assert library.status() == before
    # mtx's other way of reading element status: all types at once, then from the next
    # address on, until INVALID ELEMENT ADDRESS ends it
    altres = [line.rstrip() for line in library.mtx("altres", "status").stdout.splitlines()]
    assert altres == before
    assert library.mtx("position", "5").returncode == 0  # POSITION TO ELEMENT
    # drive 1 got its cartridge back: the data is there
    clear_unit_attention(library.drive_sg[1])
    run("mt", "-f", library.nst[1], "rewind")
    p = run("dd", f"if={library.nst[1]}", "of=/dev/null", "bs=64k")
    assert "131072 bytes" in p.stderr, p.stderr
    library.mtx("unload", "3", "1")
    assert library.status()[2] == "Data Transfer Element 1:Empty"
    clear_unit_attention(lab.disk_sg, lab.tape_sg)


def test_saved_configuration_brings_the_library_back(library, lab):
    """saveconfig, remove the changer and drive LUNs (as a reboot would), restoreconfig:
    the same LUNs (same NAA) come back and mtx sees the same library."""
    import json

    library.mtx("load", "2", "0")
    before = library.status()[1:]  # the first line names the changer's /dev/sgN
    saved = lab.work / "library-saved.json"
    cli = [sys.executable, "-m", "lio_xcopy"]
    out = run(*cli, "saveconfig", str(saved)).stdout
    assert "1 changer(s), 2 library drive(s)" in out, out
    doc = json.loads(saved.read_text())
    assert doc["changers"] == [{"name": "libchanger", "library": str(library.path),
                                "wwn": doc["changers"][0]["wwn"]}]
    assert [(d["name"], d["drive"]) for d in doc["library_drives"]] == [
        ("libtape0", 0), ("libtape1", 1)]
    luns = [provision.create_changer("libchanger", library.path)]  # lookups
    luns += [provision.create_library_drive(f"libtape{i}", library.path, i) for i in (0, 1)]
    for lun in luns:
        provision.delete(lun.name)
    for hctl in library.hctls:
        _wait_gone(hctl)
    p = run(*cli, "restoreconfig", str(saved))
    for what in ("changer libchanger", "library drive libtape0", "library drive libtape1"):
        assert f"created {what}" in p.stdout, p.stdout
    assert " 0 error(s)" in p.stdout, p.stdout
    devs = [provision.find_kernel_device(lun) for lun in luns]  # found by the same NAA
    clear_unit_attention(*(str(d.sg) for d in devs))
    after = run("mtx", "-f", str(devs[0].sg), "status").stdout.splitlines()[1:]
    assert [line.rstrip() for line in after] == before
    library.changer, library.hctls = str(devs[0].sg), [d.hctl for d in devs]
    run("mtx", "-f", library.changer, "unload", "2", "0")
    clear_unit_attention(lab.disk_sg, lab.tape_sg)
