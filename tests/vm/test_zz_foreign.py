"""Copy ends on a device this daemon does not serve: "another array".

The other array is LIO's own in-kernel fileio backstore, exported over iSCSI from
network namespace ``lioxc-tgt`` (a target host that is not ours); this host logs in with
open-iscsi and sees it as /dev/sdX and /dev/sgN. The operator admits it into a copy group
with our tape by a stable name, recorded by designator; an EXTENDED COPY sent to our tape
copies that disk onto the cartridge through SG_IO. Then the disk is deleted mid-copy:
COPY ABORTED, COPY TARGET DEVICE NOT REACHABLE, with an exact count, and nothing hangs.

It runs last in the session (hence ``zz``). Run first, the daemon-kill tests after it
(test_crash_loop, and the delete with no daemon) failed in the full suite with the
guest's SCSI host stuck; run after them, they passed. What state it leaves is not known
yet. Its own copies once failed late in a full run, before foreign discovery learned to
skip our own LUNs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import MiB, clear_unit_attention, extra_lun, run
from plugins.vm_bridge import BARCODES
from plugins.vm_iscsi import INITIATOR, NETNS, TARGET_IP, iscsiadm, session_of
from plugins.vm_xcopy import copy_results, extended_copy, records_on

from lio_xcopy.control import iscsi, provision
from lio_xcopy.devices.foreign import admit_name
from lio_xcopy.scsi import xcopy
from lio_xcopy.scsi.sense import Asc, SenseData, SenseKey
from lio_xcopy.scsi.xcopy import BlockToStream, IdentificationCscd
from lio_xcopy.sg import sgio

ARRAY = "iqn.2026-12.org.example:array"
ARRAY_SIZE = 32 * MiB
BS = 512
SAVED = Path("/etc/lio-xcopy/saveconfig.json")


@pytest.fixture(scope="module", autouse=True)
def blank_tape_after(lab):
    """The session's tape is left empty at BOT, as the next module expects it."""
    yield
    _rewind(lab)
    run("mt", "-f", lab.nst, "erase")


@pytest.fixture(scope="module")
def array(lab, net, iscsid):
    """The other array's disk, logged in: (its naa hex, /dev/sdX, /dev/sgN, data)."""
    if not Path("/sys/module/iscsi_target_mod").exists():
        pytest.skip("iscsi_target_mod is not loaded in this kernel")
    from rtslib_fb import FileIOStorageObject

    data = os.urandom(ARRAY_SIZE)
    img = lab.work / "array0.img"
    img.write_bytes(data)
    so = FileIOStorageObject("array0", dev=str(img), size=ARRAY_SIZE)
    try:
        iscsi.export_iscsi(SimpleNamespace(name="array0", storage_object=so), ARRAY,
                           TARGET_IP, netns=net)
        iscsi.allow_initiator(ARRAY, INITIATOR)
        iscsiadm("-m", "discovery", "-t", "st", "-p", TARGET_IP, "-I", "default")
        iscsiadm("-m", "node", "-T", ARRAY, "-p", f"{TARGET_IP}:3260", "-I", "default",
                 "--login")
        run("udevadm", "settle", check=False)
        lun = provision.Lun("array0", "disk", img, so.wwn, so)
        dev = provision.find_kernel_device(lun, timeout=60)
        assert _naa_of(str(dev.sg)) == lun.naa
        yield SimpleNamespace(naa=lun.naa, sd=str(dev.block), sg=str(dev.sg), data=data)
    finally:
        iscsiadm("-m", "node", "-T", ARRAY, "--logout", check=False)
        with contextlib.suppress(Exception):
            iscsi.delete_target(ARRAY)
        so.delete()
        clear_unit_attention(lab.disk_sg, lab.tape_sg)


def _naa_of(sg: str) -> str:
    with sgio.SgIoDevice(sg) as dev:
        naa = dev.naa()
    assert naa is not None
    return naa.hex()


def _reload(lab, expect: str) -> None:
    os.kill(lab.daemon.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 30
    while expect not in lab.daemon.text():
        assert time.monotonic() < deadline, lab.daemon.text()[-1500:]
        time.sleep(0.2)


@pytest.fixture(scope="module")
def admitted(lab, array):
    """The operator's copy group: our tape and the array's disk, admitted by a stable
    name (its /dev/disk/by-id link when udev made one) and recorded by designator."""
    by_id = Path(f"/dev/disk/by-id/wwn-0x{array.naa}")
    name = str(by_id) if by_id.exists() else array.sd
    text = admit_name(name)  # what `/copy_groups create ... members=vmtape0,<name>` records
    print(f"admitted {name} as {text}", file=sys.stderr)
    assert text == f"naa.{array.naa}"
    SAVED.parent.mkdir(mode=0o700, exist_ok=True)
    SAVED.write_text(json.dumps({"version": 2, "tapes": [
        {"name": "vmtape0", "path": str(lab.tape_lun.path), "capacity": 256 * MiB}],
        "copy_groups": {"offsite": ["vmtape0", f"foreign:{text}"]}}))
    SAVED.chmod(0o600)
    try:
        _reload(lab, f"'offsite': ['foreign:{text}', 'vmtape0']")
        yield
    finally:
        SAVED.unlink(missing_ok=True)
        os.kill(lab.daemon.proc.pid, signal.SIGHUP)


def _plist(lab, array, passes: int, list_id: int) -> bytes:
    """The whole array disk onto our tape ``passes`` times, 16 MiB a segment."""
    step = 16 * MiB // BS
    return xcopy.build_extended_copy(
        [IdentificationCscd(bytes.fromhex(array.naa), 0, block_length=BS),
         IdentificationCscd(bytes.fromhex(lab.tape_lun.naa), 1)],
        [BlockToStream(0, 1, step, lba, 256 * 1024)
         for lba in range(0, ARRAY_SIZE // BS, step)] * passes,
        list_identifier=list_id, list_id_usage=xcopy.ListIdUsage.HOLD)


def _on_tape(lab) -> bytes:
    return b"".join(records_on(lab.tape_lun.path))


def _rewind(lab) -> None:
    clear_unit_attention(lab.tape_sg)
    run("mt", "-f", lab.nst, "rewind")


def test_a_copy_naming_a_foreign_disk_outside_every_copy_group_is_refused(lab, array):
    _rewind(lab)
    r = extended_copy(lab.tape_sg, _plist(lab, array, 1, 0x51))
    assert r.status == 2 and r.sense is not None
    assert (r.sense.key, r.sense.asc) == (SenseKey.COPY_ABORTED,
                                          Asc.COPY_TARGET_DEVICE_NOT_REACHABLE)
    assert "nor a foreign device admitted to a copy group with vmtape0" in lab.daemon.text()


def test_the_other_arrays_disk_copies_to_our_tape_byte_exact(lab, array, admitted):
    _rewind(lab)
    t0 = time.monotonic()
    r = extended_copy(lab.tape_sg, _plist(lab, array, 1, 0x52))
    took = time.monotonic() - t0
    assert r.status == 0, r.explain()
    t0 = time.monotonic()  # for comparison: the host's own dd over the same disk
    run("dd", f"if={array.sd}", "of=/dev/null", "bs=1M", "iflag=direct")
    print(f"EXTENDED COPY array disk -> our tape: {ARRAY_SIZE / MiB / took:.1f} MiB/s; "
          f"dd {array.sd} -> /dev/null: {ARRAY_SIZE / MiB / (time.monotonic() - t0):.1f} "
          "MiB/s", file=sys.stderr)
    st, _ = copy_results(lab.tape_sg, 0x52)
    assert (st.status, st.transferred_bytes) == (xcopy.CopyCommandStatus.COMPLETED, ARRAY_SIZE)
    assert _on_tape(lab) == array.data
    assert f"is the foreign device {array.sg}" in lab.daemon.text()


def _backup_cli(work: Path, *args: str) -> str:
    p = subprocess.run([sys.executable, "-m", "lio_xcopy", *args],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "LIO_XCOPY_CATALOG": str(work / "pt-catalog.db")})
    assert p.returncode == 0, f"lio-xcopy {' '.join(args)} exited {p.returncode}\n" \
                              f"{p.stdout}\n{p.stderr}"
    return p.stdout


def test_a_backup_job_from_the_other_array_through_the_pass_through_library(
        lab, array, admitted, bridge):
    """`lio-xcopy backup --changer` against a real library the daemon passes through:
    the cartridge is loaded in the real library, the other array's disk goes to it by one
    EXTENDED COPY at the pass-through drive (run on the target host: the backup server's
    own disks and tapes move almost nothing), the job is catalogued, and `restore` brings
    it back onto a disk of ours byte for byte."""
    work = lab.work
    back = provision.create_disk("ptrestore", work / "ptrestore.img", ARRAY_SIZE)
    dst = extra_lun(lab, back)
    before = SAVED.read_text()
    saved = json.loads(before)
    saved["disks"] = [{"name": "ptrestore", "path": str(back.path), "size": ARRAY_SIZE}]
    saved["passthrough"] = [{"name": "ptdrive", "device": bridge.drive_name}]
    saved["copy_groups"]["ptbackup"] = ["ptdrive", "ptrestore", f"foreign:naa.{array.naa}"]
    SAVED.write_text(json.dumps(saved))
    try:
        _reload(lab, "'ptbackup': [")
        clear_unit_attention(bridge.changer.sg, bridge.drive.sg)
        run("mtx", "-f", bridge.changer.sg, "unload", check=False)  # a cartridge left in
        before_src = sgio.io_counters(array.sd)
        before_dst = sgio.io_counters(bridge.drive.sg)
        out = _backup_cli(work, "backup", array.sd, "--changer", bridge.changer.sg,
                          "--drive", bridge.drive.sg, "--slot", "3", "--quiet")
        assert "job 1:" in out and "done" in out, out
        # the backup server's views of the source disk (sd) and of the pass-through drive
        # (st) moved (almost) nothing: the copy ran on the target host, from the array
        # straight to the real drive
        moved = sgio.io_counters(array.sd) - before_src
        assert moved.total_bytes <= ARRAY_SIZE >> 20, (moved, out)  # 1 KiB a GiB at most
        moved = sgio.io_counters(bridge.drive.sg) - before_dst
        assert moved.source == "st" and moved.total_bytes <= ARRAY_SIZE >> 20, (moved, out)
        status = run("mtx", "-f", bridge.phys_changer.sg, "status").stdout
        assert f"Data Transfer Element 0:Full (Storage Element 3 Loaded):VolumeTag = " \
               f"{BARCODES[2]}" in status, status  # the real library moved the cartridge
        jobs = _backup_cli(work, "catalog")
        assert BARCODES[2] in jobs, jobs
        out = _backup_cli(work, "restore", "1", str(dst.block), "--changer",
                          bridge.changer.sg, "--drive", bridge.drive.sg, "--quiet")
        assert "verified" in out, out
        with open(back.path, "rb") as f:
            assert f.read(ARRAY_SIZE) == array.data
    finally:
        SAVED.write_text(before)
        _reload(lab, "copy groups")
        provision.delete("ptrestore")
        clear_unit_attention(lab.disk_sg, lab.tape_sg)


def _copy_cut_short(lab, array, list_id: int, cut) -> tuple[sgio.Result, float]:
    """Three passes of the array disk onto our tape, and ``cut()`` once 8 MiB are on it:
    the EXTENDED COPY's Result and the seconds from the cut to its end."""
    _rewind(lab)
    plist = _plist(lab, array, 3, list_id)  # 96 MiB: long enough to cut it mid-way
    done: list[sgio.Result] = []
    copy = threading.Thread(target=lambda: done.append(extended_copy(lab.tape_sg, plist)))
    copy.start()
    try:
        deadline = time.monotonic() + 120
        while True:
            assert time.monotonic() < deadline and copy.is_alive(), "the copy ended early"
            with contextlib.suppress(sgio.SgIoError):
                if copy_results(lab.tape_sg, list_id)[0].transferred_bytes >= 8 * MiB:
                    break
            time.sleep(0.1)
        t0 = time.monotonic()
        cut()
    finally:
        copy.join(timeout=300)
    assert not copy.is_alive() and done, "the EXTENDED COPY did not return"
    return done[0], time.monotonic() - t0


def _aborted_unreachable_with_an_exact_count(lab, array, r: sgio.Result,
                                             list_id: int) -> SenseData:
    """COPY ABORTED, COPY TARGET DEVICE NOT REACHABLE (SPC-4 6.4.3); the tape holds
    exactly the bytes the copy counted, a prefix of the source. The cause it keeps for
    FAILED SEGMENT DETAILS (SPC-4 6.21.5)."""
    assert r.status == 2 and r.sense is not None, r.explain()
    assert (r.sense.key, r.sense.asc) == (SenseKey.COPY_ABORTED,
                                          Asc.COPY_TARGET_DEVICE_NOT_REACHABLE), r.explain()
    st, details = copy_results(lab.tape_sg, list_id)
    assert details is not None
    on_tape = _on_tape(lab)
    assert st.status == xcopy.CopyCommandStatus.COMPLETED_WITH_ERRORS
    assert 8 * MiB <= st.transferred_bytes == len(on_tape) < 3 * ARRAY_SIZE
    whole = array.data * 3
    assert on_tape == whole[: len(on_tape)]
    run("sg_turs", lab.tape_sg)  # our tape serves the next command
    return SenseData.parse(details)


def test_the_arrays_session_killed_mid_copy_aborts_it_with_an_exact_count(
        lab, array, admitted):
    """The other array's link goes down mid-copy: open-iscsi's NOP-Out finds the
    connection dead and fails the command in flight; the copy ends at once, nothing
    waits for the session to come back. With the link up again the session recovers
    and the array serves again."""
    sid = session_of(ARRAY)
    recovery = Path(f"/sys/class/iscsi_session/session{sid}/recovery_tmo")
    before = recovery.read_text().strip()
    recovery.write_text("5\n")  # queued commands fail 5 s into recovery, not 120 s
    link = ("ip", "-n", NETNS, "link", "set", "lioxc-t")
    try:
        r, took = _copy_cut_short(lab, array, 0x54, lambda: run(*link, "down"))
    finally:
        run(*link, "up")
    print(f"link down -> EXTENDED COPY ended: {took:.1f} s", file=sys.stderr)
    cause = _aborted_unreachable_with_an_exact_count(lab, array, r, 0x54)
    # the command that never completed: ABORTED COMMAND, LOGICAL UNIT COMMUNICATION
    # FAILURE (08h/00h), or TIME-OUT (08h/01h) if its SG_IO timeout fired first
    assert cause.key == SenseKey.ABORTED_COMMAND, cause.describe()
    assert cause.asc in (Asc.LOGICAL_UNIT_COMMUNICATION_FAILURE,
                         Asc.LOGICAL_UNIT_COMMUNICATION_TIME_OUT), cause.describe()
    assert took < 60, took
    deadline = time.monotonic() + 90  # iscsid logs in again
    while run("sg_turs", array.sg, check=False).returncode != 0:
        assert time.monotonic() < deadline, iscsiadm("-m", "session", "-P", "1").stdout
        time.sleep(1)
    recovery.write_text(f"{before}\n")


def test_a_disk_deleted_mid_copy_aborts_it_with_an_exact_count(lab, array, admitted):
    device = Path(f"/sys/block/{Path(array.sd).name}/device/delete")
    r, _ = _copy_cut_short(lab, array, 0x53, lambda: device.write_text("1\n"))
    cause = _aborted_unreachable_with_an_exact_count(lab, array, r, 0x53)
    assert (cause.key, cause.asc) == (SenseKey.ABORTED_COMMAND,
                                      Asc.LOGICAL_UNIT_COMMUNICATION_FAILURE)
