"""An iSCSI initiator whose expected data transfer length (sg_raw's buffer) is not the
length the CDB asks for, sent to one of our disks and to LIO's own fileio backstore on
the same target. Ours answers as fileio does wherever TCMU lets a daemon say the same
(Disk._transfer_length): a READ with more room moves the CDB's blocks and the initiator
sees the underflow residual; a WRITE of another length is refused by both; a READ with
less room is refused by ours, where fileio reports an overflow TCMU cannot."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import MiB, clear_unit_attention, run, sense_of
from plugins.vm_iscsi import INITIATOR, TARGET_IP, iscsiadm

from lio_xcopy.control import iscsi, provision
from lio_xcopy.scsi import sbc

TARGET = "iqn.2026-12.org.lio-xcopy:residuals"
SIZE = 4 * MiB
BS = 512
MISMATCH = ("Illegal Request", "Invalid field in command information unit")


@pytest.fixture(scope="module")
def disks(lab, net, iscsid):
    """Our disk and a fileio disk, both logged in over iSCSI: their /dev/sgN."""
    if not Path("/sys/module/iscsi_target_mod").exists():
        pytest.skip("iscsi_target_mod is not loaded in this kernel")
    from rtslib_fb import FileIOStorageObject

    theirs_img = lab.work / "resid-fileio.img"
    theirs_img.write_bytes(os.urandom(SIZE))
    ours = provision.create_disk("vmresid", lab.work / "resid-ours.img", SIZE)
    so = FileIOStorageObject("resid0", dev=str(theirs_img), size=SIZE)
    theirs = provision.Lun("resid0", "disk", theirs_img, so.wwn, so)
    try:
        for export in (ours, SimpleNamespace(name="resid0", storage_object=so)):
            iscsi.export_iscsi(export, TARGET, TARGET_IP, netns=net)
        iscsi.allow_initiator(TARGET, INITIATOR)
        node = ("-m", "node", "-T", TARGET, "-p", f"{TARGET_IP}:3260", "-I", "default")
        iscsiadm("-m", "discovery", "-t", "st", "-p", TARGET_IP, "-I", "default")
        iscsiadm(*node, "--login")
        run("udevadm", "settle", check=False)
        sgs = SimpleNamespace(ours=str(provision.find_kernel_device(ours, 60).sg),
                              fileio=str(provision.find_kernel_device(theirs, 60).sg))
        clear_unit_attention(sgs.ours, sgs.fileio)
        with open("/dev/urandom", "rb") as rnd:  # our disk gets data too
            _raw(sgs.ours, sbc.Write10(lba=0, transfer_length=64), lab.work,
                 send=rnd.read(64 * BS))
        yield sgs
    finally:
        iscsiadm("-m", "node", "-T", TARGET, "--logout", check=False)
        with contextlib.suppress(Exception):
            iscsi.delete_target(TARGET)
        so.delete()
        provision.delete(ours.name)
        clear_unit_attention(lab.disk_sg, lab.tape_sg)


def _raw(sg: str, cdb, work: Path, *, room: int = 0, send: bytes | None = None):
    """sg_raw with a Data-In buffer of ``room`` bytes or the Data-Out ``send``:
    (status line, (sense key, additional sense), bytes received)."""
    out, src = work / "sg_raw.out", work / "sg_raw.in"
    out.unlink(missing_ok=True)
    args = ["sg_raw", "-t", "30"]
    if send is not None:
        src.write_bytes(send)
        args += ["-s", str(len(send)), "-i", str(src)]
    if room:
        args += ["-r", str(room), "-o", str(out)]
    p = run(*args, sg, *(f"{b:02x}" for b in cdb.encode()), check=False)
    text = p.stdout + p.stderr
    status = next((ln for ln in text.splitlines() if "SCSI Status" in ln), text[-200:])
    return status, sense_of(text), out.read_bytes() if out.exists() else b""


def _content(sg: str, lba: int, blocks: int, work: Path) -> bytes:
    status, _, data = _raw(sg, sbc.Read10(lba=lba, transfer_length=blocks), work,
                           room=blocks * BS)
    assert "Good" in status and len(data) == blocks * BS, status
    return data


def test_read_with_more_room_moves_the_cdbs_blocks(lab, disks):
    for name, sg in vars(disks).items():
        want = _content(sg, 8, 2, lab.work)
        status, _, got = _raw(sg, sbc.Read10(lba=8, transfer_length=2), lab.work,
                              room=8 * BS)
        print(f"\n{name}: READ (10) of 2 blocks into {8 * BS} bytes: {status}, "
              f"{len(got)} bytes")
        assert "Good" in status, (name, status)
        assert got == want, name  # 1024 bytes: the initiator saw a 3072-byte residual


@pytest.mark.parametrize("nbytes", [BS, 3 * BS], ids=["overflow", "underflow"])
def test_write_of_another_length_is_refused_by_both(lab, disks, nbytes):
    for name, sg in vars(disks).items():
        before = _content(sg, 16, 4, lab.work)
        status, sense, _ = _raw(sg, sbc.Write10(lba=17, transfer_length=2), lab.work,
                                send=b"\xee" * nbytes)
        print(f"\n{name}: WRITE (10) of 2 blocks with {nbytes} bytes: {status}, {sense}")
        assert sense == MISMATCH, (name, status, sense)
        assert _content(sg, 16, 4, lab.work) == before, name


def test_read_with_less_room(lab, disks):
    """fileio sends what fits and an overflow residual; TCMU cannot say overflow, so
    ours refuses and sends nothing."""
    cdb = sbc.Read10(lba=24, transfer_length=4)
    status, sense, got = _raw(disks.fileio, cdb, lab.work, room=3 * BS)
    print(f"\nfileio: READ (10) of 4 blocks into {3 * BS} bytes: {status}, {len(got)} bytes")
    assert "Good" in status and got == _content(disks.fileio, 24, 4, lab.work)[: len(got)]
    status, sense, got = _raw(disks.ours, cdb, lab.work, room=3 * BS)
    print(f"ours: {status}, {sense}, {len(got)} bytes")
    assert sense == MISMATCH and got == b"", (status, sense, len(got))
