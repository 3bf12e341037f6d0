"""What can go wrong behind a pass-through LUN, through the real kernel.

The "real" devices are LUNs the ``bridge`` fixture's second daemon (subtype physlib)
serves on the physical library's loopback target, as devices on the target host's HBA:

- a drive whose cartridge holds 6 MiB: it reports VOLUME OVERFLOW mid-copy;
- a drive whose cartridge file lies on a 2 MiB tmpfs: the write that finds it full fails
  in the kernel, and the drive reports MEDIUM ERROR, WRITE ERROR mid-copy;
- a disk, deleted from the target host (``/sys/.../device/delete``) while the backup
  server has commands queued on its pass-through LUN.

Our daemon passes each through by its designator, beside the lab's disk (one nexus: the
copy access policy lets them copy together).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conftest import MiB, clear_unit_attention, extra_lun, run, sense_of
from plugins.vm_bridge import PHYS_TARGET, phys_lun
from plugins.vm_xcopy import copy_results, cscd, extended_copy, fill_disk, records_on

from lio_xcopy.control import provision
from lio_xcopy.handler_config import HandlerConfig
from lio_xcopy.scsi import sbc, xcopy
from lio_xcopy.scsi.sense import Asc, SenseData, SenseKey
from lio_xcopy.scsi.xcopy import BlockToStream
from lio_xcopy.sg import sgio

BS = 512
SOURCE = 16 * MiB  # of the lab's disk, copied to the drive
RECORD = 256 * 1024


@dataclass
class Passed:
    phys: provision.Lun  # the device on the target host
    phys_dev: provision.KernelDevice  # as the target host sees it
    lun: provision.Lun  # our pass-through LUN
    dev: provision.KernelDevice  # as the backup server sees it


@contextlib.contextmanager
def passed_through(lab, bridge, name: str, hc: HandlerConfig,
                   size: int = 64 * MiB) -> Iterator[Passed]:
    """A physlib device ``phys<name>`` and our pass-through LUN ``pt<name>`` over it,
    made by its NAA designator; both are removed after."""
    phys = phys_lun(f"phys{name}", hc, size)
    pt: provision.Lun | None = None
    try:
        provision.export_loopback(phys, target_wwn=PHYS_TARGET)
        phys_dev = provision.find_kernel_device(phys)
        clear_unit_attention(str(phys_dev.sg))
        pt = provision.create_passthrough(f"pt{name}", f"naa.{phys.naa}")
        dev = extra_lun(lab, pt)
        yield Passed(phys, phys_dev, pt, dev)
    finally:
        if pt is not None:
            provision.delete(pt.name)
        provision.delete(phys.name)
        clear_unit_attention(lab.disk_sg, lab.tape_sg, bridge.phys_changer.sg,
                             bridge.phys_drive.sg, bridge.changer.sg, bridge.drive.sg)


def _tape(path: Path, capacity: int) -> HandlerConfig:
    path.unlink(missing_ok=True)
    path.touch()  # a blank cartridge
    return HandlerConfig("tape", str(path), {"capacity": str(capacity)})


def _copy_to(lab, drive: Passed, list_id: int) -> tuple[sgio.Result, bytes]:
    """SOURCE bytes of random data from the lab's disk to the pass-through drive, in
    RECORD-byte records, 4 MiB a segment: the EXTENDED COPY's Result and the data."""
    data = os.urandom(SOURCE)
    fill_disk(lab, 0, data)
    step = 4 * MiB // BS
    plist = xcopy.build_extended_copy(
        [cscd(lab.disk_lun, 0, BS), cscd(drive.phys, 1, 0)],
        [BlockToStream(0, 1, step, lba, RECORD) for lba in range(0, SOURCE // BS, step)],
        list_identifier=list_id, list_id_usage=xcopy.ListIdUsage.HOLD)
    clear_unit_attention(str(drive.dev.sg))
    return extended_copy(str(drive.dev.sg), plist), data


def _stopped_exactly(drive: Passed, r: sgio.Result, data: bytes, list_id: int,
                     cartridge: Path, asc: Asc) -> SenseData:
    """COPY ABORTED with ``asc`` (SPC-4 6.4.3: the destination's own sense in FAILED
    SEGMENT DETAILS); the count is the bytes of the whole records on the cartridge, a
    prefix of the source, and the drive is positioned after the last of them. The
    drive's sense."""
    assert r.status == 2 and r.sense is not None, r.explain()
    assert (r.sense.key, r.sense.asc) == (SenseKey.COPY_ABORTED, asc), r.explain()
    st, details = copy_results(str(drive.dev.sg), list_id)
    assert details is not None
    records = records_on(cartridge)
    assert st.status == xcopy.CopyCommandStatus.COMPLETED_WITH_ERRORS
    assert {len(rec) for rec in records} == {RECORD}
    assert 0 < st.transferred_bytes == RECORD * len(records) < SOURCE
    assert b"".join(records) == data[: st.transferred_bytes]
    tell = run("mt", "-f", str(drive.dev.tape), "tell").stdout
    assert re.search(rf"At block {len(records)}\.", tell), tell
    return SenseData.parse(details)


def test_the_real_drive_reaching_end_of_medium_ends_the_copy_exactly(lab, bridge):
    cartridge = lab.work / "physeom.aws"
    with passed_through(lab, bridge, "eom", _tape(cartridge, 6 * MiB)) as drive:
        r, data = _copy_to(lab, drive, 0x61)
        cause = _stopped_exactly(drive, r, data, 0x61, cartridge,
                                 Asc.END_OF_PARTITION_MEDIUM_DETECTED)
        # the drive's own VOLUME OVERFLOW, EOM set (SSC-4 4.2.5)
        assert (cause.key, cause.asc, cause.eom) == (
            SenseKey.VOLUME_OVERFLOW, Asc.END_OF_PARTITION_MEDIUM_DETECTED, True), \
            cause.describe()
        run("sg_turs", str(drive.dev.sg))  # the drive serves the next command
    assert "Traceback" not in lab.daemon.text()


def test_a_medium_error_of_the_real_drive_ends_the_copy_exactly(lab, bridge):
    full = lab.work / "tiny-fs"
    full.mkdir(exist_ok=True)
    run("mount", "-t", "tmpfs", "-o", "size=2m", "lioxc-tiny", str(full))
    try:
        cartridge = full / "physbad.aws"
        with passed_through(lab, bridge, "bad", _tape(cartridge, 64 * MiB)) as drive:
            r, data = _copy_to(lab, drive, 0x62)
            cause = _stopped_exactly(drive, r, data, 0x62, cartridge, Asc.WRITE_ERROR)
            # the drive's MEDIUM ERROR, WRITE ERROR (SSC-4 WRITE (6)): the whole record
            # was not written, so INFORMATION is its length (variable mode)
            assert (cause.key, cause.asc) == (SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR), \
                cause.describe()
            assert cause.information_signed == RECORD, cause.describe()
    finally:
        run("umount", "-l", str(full), check=False)
    assert "Traceback" not in lab.daemon.text()


READERS = 4
CHUNK = 256 * 1024


def test_a_pass_through_disk_deleted_with_commands_queued_answers_every_one(lab, bridge):
    """Four threads keep a READ (16) each queued on the pass-through disk; the disk is
    deleted from the target host under them. Every command gets an answer: the data, or
    HARDWARE ERROR, LOGICAL UNIT COMMUNICATION FAILURE (SPC-4 Annex D); nothing hangs,
    and the daemon's other LUNs go on serving."""
    img = lab.work / "physgone.img"
    data = os.urandom(8 * MiB)
    with img.open("wb") as f:
        f.write(data)
        f.truncate(64 * MiB)
    hc = HandlerConfig("disk", str(img), {"block_size": str(BS)})
    with passed_through(lab, bridge, "gone", hc) as disk:
        sg = str(disk.dev.sg)
        answers: list[list[sgio.Result]] = [[] for _ in range(READERS)]
        failures: list[BaseException] = []
        stop = threading.Event()  # a reader still asking at the end gives up

        def reader(i: int) -> None:
            try:
                with sgio.SgIoDevice(sg) as dev:
                    lba = i * (2 * MiB // BS)
                    while sum(a.status != 0 for a in answers[i]) < 3 and not stop.is_set():
                        answers[i].append(dev.execute(
                            sbc.Read16(lba=lba, transfer_length=CHUNK // BS).encode(),
                            data_in=CHUNK, timeout=120, check=False))
            except BaseException as e:  # shown below
                failures.append(e)

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(READERS)]
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + 60
            while min(len(a) for a in answers) < 3 and not failures:
                assert time.monotonic() < deadline, [len(a) for a in answers]
                time.sleep(0.05)
            t0 = time.monotonic()
            Path(f"/sys/class/scsi_device/{disk.phys_dev.hctl}/device/delete").write_text("1\n")
            for t in threads:
                t.join(timeout=120)
            took = time.monotonic() - t0
        finally:
            stop.set()
        assert not failures, failures
        assert not any(t.is_alive() for t in threads), "a command got no answer"
        for i, got in enumerate(answers):
            lba = i * (2 * MiB // BS)
            good = [a for a in got if a.status == 0]
            bad = [a for a in got if a.status != 0]
            assert len(good) >= 3 and len(bad) == 3, [a.explain() for a in got]
            assert all(a.data == data[lba * BS : lba * BS + CHUNK] for a in good)
            for a in bad:
                assert a.status == 2 and a.sense is not None, a.explain()
                # a READ in flight to the device as it went: ABORTED COMMAND (the
                # transport failed); one sent once it is known gone: HARDWARE ERROR
                assert a.sense.asc == Asc.LOGICAL_UNIT_COMMUNICATION_FAILURE and \
                    a.sense.key in (SenseKey.HARDWARE_ERROR, SenseKey.ABORTED_COMMAND), \
                    a.explain()
            # once an answer failed, every later one failed too: the device stays gone
            assert got.index(bad[0]) == len(good), [a.status for a in got]
        print(f"disk deleted -> {READERS} readers answered: {took:.1f} s")
        p = run("sg_turs", sg, check=False)
        assert sense_of(p.stdout + p.stderr) == (
            "Hardware Error", "Logical unit communication failure"), p.stdout + p.stderr
        run("sg_turs", lab.disk_sg)  # the daemon's other LUNs go on serving
        run("sg_turs", lab.tape_sg)
        run("sg_inq", bridge.drive.sg)  # and the bridge's other pass-through LUN
    assert "Traceback" not in lab.daemon.text()
