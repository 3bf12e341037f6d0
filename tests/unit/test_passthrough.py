"""Pass-through LUNs over a fake SG_IO device: what is forwarded and how, what the
daemon keeps, what comes back (verbatim), and finding the device by a stable name."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest
from plugins.tcmu_ring import SimulatedKernel

from lio_xcopy.copy.manager import CopyManager
from lio_xcopy.devices.base import Command, LunIdentity, TaskManagement
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.passthrough import PassThrough
from lio_xcopy.errors import ConfigError
from lio_xcopy.scsi import sbc, smc, spc, ssc, xcopy
from lio_xcopy.scsi.cdb import Cdb
from lio_xcopy.scsi.errors import CheckCondition, ForwardedStatus
from lio_xcopy.scsi.opcodes import DataDirection, data_direction, is_long
from lio_xcopy.scsi.sense import (
    BUSY,
    CHECK_CONDITION,
    GOOD,
    RESERVATION_CONFLICT,
    TASK_ABORTED,
    Asc,
    SenseData,
    SenseKey,
)
from lio_xcopy.sg import sgio
from lio_xcopy.sg.resolve import (
    DeviceNotFound,
    NotStableName,
    Resolved,
    StableName,
    designator_text,
    own_exports,
    resolve,
)
from lio_xcopy.tcmu.daemon import TcmuDevice
from lio_xcopy.tcmu.handler import open_device
from lio_xcopy.tcmu.ring import CommandRing

NAA = bytes.fromhex("6001405aaaaaaaaaaaaaaaaaaaaaaaa1")
OTHER_NAA = bytes.fromhex("6001405bbbbbbbbbbbbbbbbbbbbbbbb2")
IN, OUT, NONE = DataDirection.IN, DataDirection.OUT, DataDirection.NONE


# --- the opcode tables -----------------------------------------------------------------------
@pytest.mark.parametrize(("device_type", "cdb", "want"), [
    (spc.TYPE_TAPE, ssc.Read6(transfer_length=1).encode(), IN),
    (spc.TYPE_TAPE, ssc.Write6(transfer_length=1).encode(), OUT),
    (spc.TYPE_TAPE, ssc.Rewind().encode(), NONE),
    (spc.TYPE_TAPE, bytes([0x2B]) + bytes(9), NONE),  # LOCATE (10)
    (spc.TYPE_MEDIUM_CHANGER, bytes([0x2B]) + bytes(9), NONE),  # POSITION TO ELEMENT
    (spc.TYPE_MEDIUM_CHANGER, bytes([0xB5]) + bytes(11), IN),  # REQUEST VOLUME ELEMENT ADDR
    (spc.TYPE_DISK, bytes([0xB5]) + bytes(11), OUT),  # SECURITY PROTOCOL OUT
    (spc.TYPE_DISK, bytes([0x37]) + bytes(9), IN),  # READ DEFECT DATA (10)
    (spc.TYPE_MEDIUM_CHANGER, bytes([0x37]) + bytes(9), NONE),  # INIT ELEMENT STATUS W/ RANGE
    (spc.TYPE_DISK, bytes([0x9E, 0x10]) + bytes(14), IN),  # READ CAPACITY (16)
    (5, spc.Inquiry().encode(), IN),  # a CD-ROM: the SPC-4 table only
])
def test_direction_by_device_type_and_opcode(device_type, cdb, want):
    assert data_direction(device_type, cdb) is want


@pytest.mark.parametrize(("device_type", "opcode"), [
    (spc.TYPE_DISK, 0x53),  # XDWRITEREAD (10): bidirectional
    (spc.TYPE_DISK, 0x7F),  # variable length
    (spc.TYPE_TAPE, 0xC0),  # vendor specific
    (spc.TYPE_TAPE, 0x28),  # READ (10) is not a tape command
    (spc.TYPE_MEDIUM_CHANGER, 0x08),
])
def test_unknown_commands_have_no_direction(device_type, opcode):
    assert data_direction(device_type, bytes([opcode]) + bytes(9)) is None


def _layouts(*modules) -> list[type[Cdb]]:
    return [o for m in modules for o in vars(m).values()
            if isinstance(o, type) and issubclass(o, Cdb) and o is not Cdb]


@pytest.mark.parametrize(("device_type", "modules"), [
    (spc.TYPE_DISK, (spc, sbc, xcopy)), (spc.TYPE_TAPE, (spc, ssc, xcopy)),
    (spc.TYPE_MEDIUM_CHANGER, (spc, smc, xcopy)),
])
def test_tables_agree_with_every_layout_we_implement(device_type, modules):
    for layout in _layouts(*modules):
        if layout.OPCODE >= 0xC0:  # our vendor-specific RECEIVE COPY DIGEST
            continue
        got = data_direction(device_type, layout().encode())
        assert got in ((OUT,) if layout.DATA_OUT else (IN, NONE)), layout.NAME


def test_long_commands_by_type():
    assert is_long(spc.TYPE_TAPE, 0x01) and is_long(spc.TYPE_MEDIUM_CHANGER, 0xA5)
    assert is_long(spc.TYPE_TAPE, 0x2B) and not is_long(spc.TYPE_DISK, 0x2B)
    assert not is_long(spc.TYPE_TAPE, 0x08) and is_long(spc.TYPE_DISK, 0x3B)


# --- a fake SG_IO device ---------------------------------------------------------------------
class FakeSg:
    """Plays one SCSI device behind SG_IO: ``answer(cdb, data_in, data_out)`` -> Result."""

    def __init__(self, answer):
        self.answer = answer
        self.seen: list[tuple[bytes, int, bytes | None, float]] = []
        self.resets: list[int] = []
        self.reset_done = threading.Event()
        self.closed = False

    def execute(self, cdb, data_in=0, data_out=None, timeout=60, *, check=True):
        assert not check  # the LUN passes every status on
        self.seen.append((bytes(cdb), data_in, None if data_out is None else bytes(data_out),
                          timeout))
        return self.answer(bytes(cdb), data_in, data_out)

    def reset(self, what=sgio.SG_SCSI_RESET_DEVICE):
        self.resets.append(what)
        self.reset_done.set()

    def close(self):
        self.closed = True


def result(cdb: bytes, status: int = GOOD, data: bytes = b"", requested: int = 0,
           sense: bytes = b"") -> sgio.Result:
    resid = max(requested - len(data), 0)
    return sgio.Result(cdb, status, sgio.parse_sense(sense), data, resid, 0.0,
                       requested=requested, sense_bytes=sense)


TAPE_INQUIRY = bytes([0x01, 0x80, 0x06, 0x12, 31, 0, 0, 0x02]) + b"IBM     ULT3580-TD8     M3B0"
VPD83 = spc.vpd_device_identification(1, [spc.Designator(1, 3, NAA)])


def tape_answer(cdb: bytes, data_in: int, data_out: bytes | None) -> sgio.Result:
    if cdb[0] == 0x12 and cdb[1] & 1:
        return result(cdb, data=VPD83[:data_in], requested=data_in)
    if cdb[0] == 0x12:
        return result(cdb, data=TAPE_INQUIRY[:data_in], requested=data_in)
    if cdb[0] == 0x08:
        return result(cdb, data=b"R" * data_in, requested=data_in)
    return result(cdb)


def here(hctl: str = "2:0:0:1", sg: str = "/dev/sg1", device_type: int = 1) -> Resolved:
    return Resolved(Path(sg), hctl, device_type, (spc.Designator(1, 3, NAA),))


def lun(answer=tape_answer, device_type: int = spc.TYPE_TAPE, locate=None,
        manager: bool = True):
    fake = FakeSg(answer)
    opened: list[Path] = []

    def open_sg(path: Path) -> FakeSg:
        opened.append(path)
        return fake

    dev = PassThrough(LunIdentity("pt0", "6001405c-0000-0000-0000-000000000001"),
                      device_type, locate or (lambda: here(device_type=device_type)),
                      open_sg)
    if manager:
        CopyManager().register(dev)
    return dev, fake, opened


def run(dev, cdb: bytes, data: bytes | int = 0) -> tuple[int, bytes]:
    buf = DataBuffer.allocate(data) if isinstance(data, int) else DataBuffer.of(bytearray(data))
    n = dev.handle(Command(cdb, buf))
    return n, buf.tobytes()


# --- forwarding ----------------------------------------------------------------------------
def test_data_in_is_forwarded_with_the_buffer_length_and_the_tape_timeout():
    dev, fake, _ = lun()
    n, data = run(dev, ssc.Read6(transfer_length=4096).encode(), 4096)
    assert (n, data) == (4096, b"R" * 4096)
    assert fake.seen == [(ssc.Read6(transfer_length=4096).encode(), 4096, None, 900)]


def test_data_out_is_forwarded_byte_exact():
    dev, fake, _ = lun()
    block = os.urandom(8192)
    n, _ = run(dev, ssc.Write6(transfer_length=8192).encode(), block)
    assert n == 0 and fake.seen[0][1:] == (0, block, 900)


def test_long_commands_get_hours_and_no_data():
    dev, fake, _ = lun()
    run(dev, ssc.Rewind().encode(), 512)  # a buffer the command does not use
    run(dev, bytes([0x10, 0, 0, 0, 1, 0]))  # WRITE FILEMARKS (6)
    assert [(s[1], s[2], s[3]) for s in fake.seen] == [(0, None, 14000), (0, None, 14000)]


def test_changer_move_medium_is_long():
    dev, fake, _ = lun(device_type=spc.TYPE_MEDIUM_CHANGER)
    run(dev, smc.MoveMedium(source_address=0x400, destination_address=0x100).encode())
    assert fake.seen[0][3] == 14000
    run(dev, smc.ReadElementStatus(allocation_length=1024).encode(), 1024)
    assert fake.seen[1][1:] == (1024, None, 300)


def test_every_command_runs_on_the_luns_worker_and_direction_follows_the_tables():
    dev, _, _ = lun()
    assert dev.runs_long(Command(spc.TestUnitReady().encode()))
    assert dev.carries_data_out(ssc.Write6().encode())
    assert not dev.carries_data_out(ssc.Read6().encode())


def test_nothing_is_sent_at_open_or_connect():
    """An empty drive (no cartridge) makes a LUN like any other, and no TEST UNIT READY
    takes the unit attention meant for the initiator."""
    dev, fake, opened = lun()
    dev.connect()
    assert fake.seen == [] and opened == [Path("/dev/sg1")]


def test_unknown_direction_is_refused_and_not_sent():
    dev, fake, _ = lun()
    with pytest.raises(CheckCondition) as e:
        run(dev, bytes([0xC0]) + bytes(5), 512)
    assert (e.value.sense.key, e.value.sense.asc) == (
        SenseKey.ILLEGAL_REQUEST, Asc.INVALID_COMMAND_OPERATION_CODE)
    assert fake.seen == []


# --- what the daemon keeps -------------------------------------------------------------------
def test_standard_inquiry_gets_the_3pc_bit_and_is_otherwise_the_devices():
    dev, _, _ = lun()
    n, data = run(dev, spc.Inquiry(allocation_length=36).encode(), 36)
    assert n == 36 and data[5] == 0x08
    assert data[:5] + data[6:] == TAPE_INQUIRY[:5] + TAPE_INQUIRY[6:36]


def test_without_a_copy_manager_inquiry_is_untouched():
    dev, _, _ = lun(manager=False)
    _, data = run(dev, spc.Inquiry(allocation_length=36).encode(), 36)
    assert data == TAPE_INQUIRY[:36]


def test_vpd_pages_are_the_devices():
    dev, _, _ = lun()
    n, data = run(dev, spc.Inquiry(evpd=1, page_code=0x83, allocation_length=255).encode(), 255)
    assert data[:n] == VPD83 and not any(data[n:])


def test_copy_commands_are_answered_by_the_daemon_not_forwarded():
    dev, fake, _ = lun()
    n, data = run(dev, xcopy.ReceiveCopyResultsOperatingParameters(
        allocation_length=64).encode(), 64)
    assert n > 4 and int.from_bytes(data[:4], "big") + 4 >= n and fake.seen == []
    n, _ = run(dev, xcopy.ExtendedCopyLid1(parameter_list_length=0).encode())
    assert n == 0 and fake.seen == []


def test_designators_are_the_real_devices():
    dev, _, _ = lun()
    assert [d.value for d in dev.designators()] == [NAA]


# --- what comes back -----------------------------------------------------------------------
#: descriptor-format sense with a vendor-specific descriptor: nothing of ours would make it
VENDOR_SENSE = bytes([0x72, 0x03, 0x11, 0x00, 0, 0, 0, 12,
                      0x80, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10])


def _fails(status: int, sense: bytes = b"", data: bytes = b""):
    def answer(cdb, data_in, data_out):
        return result(cdb, status, data, data_in, sense)
    return answer


@pytest.mark.parametrize(("status", "sense"), [
    (CHECK_CONDITION, VENDOR_SENSE), (BUSY, b""), (RESERVATION_CONFLICT, b""),
])
def test_status_and_sense_are_passed_back_verbatim(status, sense):
    dev, _, _ = lun(_fails(status, sense))
    with pytest.raises(ForwardedStatus) as e:
        run(dev, ssc.Read6(transfer_length=512).encode(), 512)
    assert (e.value.status, e.value.sense_bytes()) == (status, sense)


def _sim(dev):
    kernel = SimulatedKernel(cmdr_size=16384, data_pages=16)
    return kernel, TcmuDevice("pt0", kernel.uio_fd, CommandRing(kernel.view), dev)


def _reap(kernel, tdev, n: int = 1):
    deadline = time.monotonic() + 10
    got = kernel.reap()
    while len(got) < n and time.monotonic() < deadline:
        tdev.complete_finished()  # each worker's end wakes the loop (here: polled)
        got += kernel.reap()
    return got


def test_sense_reaches_the_ring_verbatim():
    dev, _, _ = lun(_fails(CHECK_CONDITION, VENDOR_SENSE))
    kernel, tdev = _sim(dev)
    try:
        kernel.submit(spc.TestUnitReady().encode())
        tdev.service()
        (c,) = _reap(kernel, tdev)
        assert c.status == CHECK_CONDITION
        assert c.sense[:len(VENDOR_SENSE)] == VENDOR_SENSE and not any(c.sense[20:])
    finally:
        tdev.close()
        kernel.close()


def test_a_read_that_met_a_filemark_returns_what_it_read_and_no_stale_byte():
    """SSC-4 4.2.x: READ of 8 KiB meets a filemark after 3000 bytes; the sense says so
    (FILEMARK, ILI, INFORMATION = residue) and the 3000 bytes reach the initiator."""
    fm = SenseData(SenseKey.NO_SENSE, Asc.FILEMARK_DETECTED, information=8192 - 3000,
                   filemark=True, ili=True).fixed()
    dev, _, _ = lun(_fails(CHECK_CONDITION, fm, b"D" * 3000))
    kernel, tdev = _sim(dev)
    try:
        kernel.submit(ssc.Write6(transfer_length=8192).encode(), data_out=b"S" * 8192)
        tdev.service()
        _reap(kernel, tdev)  # a Data-Out that leaves "S" in the data area
        kernel.submit(ssc.Read6(transfer_length=8192).encode(), data_in_len=8192)
        tdev.service()
        (c,) = _reap(kernel, tdev)
        assert (c.status, c.read_len, c.sense[:18]) == (CHECK_CONDITION, 3000, fm)
        assert c.data_in == b"D" * 3000
    finally:
        tdev.close()
        kernel.close()


def test_a_short_data_in_reports_its_length():
    dev, _, _ = lun(lambda cdb, n, out: result(cdb, data=b"x" * 100, requested=n))
    kernel, tdev = _sim(dev)
    try:
        kernel.submit(spc.ModeSense6(page_code=0x3F, allocation_length=255).encode(),
                      data_in_len=255)
        tdev.service()
        (c,) = _reap(kernel, tdev)
        assert (c.status, c.read_len, c.data_in) == (GOOD, 100, b"x" * 100)
    finally:
        tdev.close()
        kernel.close()


# --- the device going away -------------------------------------------------------------------
def test_device_gone_is_a_check_condition_and_the_next_command_looks_again():
    calls: list[int] = []

    def locate() -> Resolved:
        calls.append(1)
        if len(calls) > 1:
            raise DeviceNotFound("naa.6001405aaaaaaaaaaaaaaaaaaaaaaaa1: no SCSI device now")
        return here()

    def gone(cdb, n, out):
        raise sgio.TransportFailure("READ (6) on /dev/sg1 failed: the device went away",
                                    "/dev/sg1", errno_=errno.ENODEV)

    dev, fake, _ = lun(gone, locate=locate)
    for _ in range(2):
        with pytest.raises(CheckCondition) as e:
            run(dev, ssc.Read6(transfer_length=512).encode(), 512)
        assert (e.value.sense.key, e.value.sense.asc) == (
            SenseKey.HARDWARE_ERROR, Asc.LOGICAL_UNIT_COMMUNICATION_FAILURE)
    # sent once; looked for again at once, and again for the next command
    assert fake.closed and len(calls) == 3 and len(fake.seen) == 1


def test_a_renumbered_device_is_found_again_and_the_command_sent_there():
    """The handle on /dev/sg1 is stale (ENODEV: the command never reached a device);
    the name now resolves to /dev/sg5, where the command runs: the initiator sees
    nothing of it."""
    stale = FakeSg(lambda cdb, n, out: (_ for _ in ()).throw(
        sgio.TransportFailure("gone", "/dev/sg1", errno_=errno.ENODEV)))
    fresh = FakeSg(tape_answer)
    where = iter([here(), here("3:0:0:4", "/dev/sg5")])
    nodes = {Path("/dev/sg1"): stale, Path("/dev/sg5"): fresh}
    dev = PassThrough(LunIdentity("pt0", "s"), spc.TYPE_TAPE, lambda: next(where),
                      nodes.__getitem__)
    n, data = run(dev, ssc.Read6(transfer_length=512).encode(), 512)
    assert (n, data) == (512, b"R" * 512)
    assert stale.closed and len(stale.seen) == len(fresh.seen) == 1
    assert dev.where.sg == Path("/dev/sg5")


def test_a_timed_out_command_is_aborted_command_and_the_handle_stays():
    def slow(cdb, n, out):
        r = sgio.Result(cdb, 0, None, b"", 0, 900.0, host_status=0x03)
        raise sgio.TransportFailure("timed out", "/dev/sg1", r)

    dev, fake, _ = lun(slow)
    with pytest.raises(CheckCondition) as e:
        run(dev, ssc.Space6(count=1).encode())
    assert (e.value.sense.key, e.value.sense.asc) == (
        SenseKey.ABORTED_COMMAND, Asc.LOGICAL_UNIT_COMMUNICATION_TIME_OUT)
    assert not fake.closed


def test_device_gone_through_the_ring_never_hangs():
    def gone(cdb, n, out):
        raise sgio.TransportFailure("gone", "/dev/sg1", errno_=errno.ENXIO)

    dev, _, _ = lun(gone)
    kernel, tdev = _sim(dev)
    try:
        kernel.submit(spc.TestUnitReady().encode())
        tdev.service()
        (c,) = _reap(kernel, tdev)
        sense = SenseData.parse(c.sense)
        assert (c.status, sense.key, sense.asc) == (
            CHECK_CONDITION, SenseKey.HARDWARE_ERROR, Asc.LOGICAL_UNIT_COMMUNICATION_FAILURE)
    finally:
        tdev.close()
        kernel.close()


def test_a_device_of_another_type_under_the_name_is_refused():
    dev, fake, _ = lun(locate=lambda: Resolved(Path("/dev/sg1"), "2:0:0:1", 0, ()))
    with pytest.raises(CheckCondition):
        run(dev, spc.TestUnitReady().encode())
    assert fake.closed and fake.seen == []


# --- task management ---------------------------------------------------------------------
def test_lun_reset_resets_the_device():
    dev, fake, _ = lun()
    dev.connect()
    dev.task_management(TaskManagement.ABORT_TASK)
    dev.task_management(TaskManagement.LOGICAL_UNIT_RESET)
    assert fake.reset_done.wait(10)
    assert fake.resets == [sgio.SG_SCSI_RESET_DEVICE]


def test_abort_task_of_a_queued_command_never_sends_it():
    """Two commands on the LUN's worker: the first in flight, the second queued. ABORT
    TASK of the second: it completes TASK ABORTED, the device never sees it."""
    started, release = threading.Event(), threading.Event()

    def answer(cdb, n, out):
        if cdb[0] == 0x01:  # REWIND: in flight until released
            started.set()
            assert release.wait(10)
        return result(cdb)

    dev, fake, _ = lun(answer)
    kernel, tdev = _sim(dev)
    try:
        first = kernel.submit(ssc.Rewind().encode())
        second = kernel.submit(bytes([0x11, 1, 0, 0, 1, 0]))  # SPACE (6) one filemark
        tdev.service()
        assert started.wait(10)
        kernel.submit_tmr(1, (second,))  # TCMU_TMR_ABORT_TASK
        tdev.service()
        release.set()
        got = sorted((c.cmd_id, c.status) for c in _reap(kernel, tdev, 2))
        assert got == [(first, GOOD), (second, TASK_ABORTED)]
        assert [s[0][0] for s in fake.seen] == [0x01]
    finally:
        tdev.close()
        kernel.close()


# --- stable names and renumbering ---------------------------------------------------------
def _link(at: Path, to: Path | str) -> None:
    at.parent.mkdir(parents=True, exist_ok=True)
    at.symlink_to(to)


def _device(sys: Path, hctl: str, sg: str, dtype: int, naa: bytes, devnum: str) -> Path:
    d = sys / "devices/platform/host" / hctl
    d.mkdir(parents=True)
    (d / "type").write_text(f"{dtype}\n")
    (d / "vpd_pg83").write_bytes(spc.vpd_device_identification(
        dtype, [spc.Designator(1, 3, naa), spc.Designator(2, 1, b"LIO-ORG x")]))
    _link(sys / "bus/scsi/devices" / hctl, d)
    c = d / "scsi_generic" / sg
    c.mkdir(parents=True)
    _link(c / "device", d)
    (c / "dev").write_text(devnum + "\n")
    _link(sys / "class/scsi_generic" / sg, c)
    _link(sys / "dev/char" / devnum, c)
    return d


@pytest.fixture
def host(tmp_path):
    """A tape at 2:0:0:1 (sg1) and a disk at 2:0:0:0 (sg0); /dev/null and /dev/zero
    stand in for their nodes (sysfs finds a node by its device number)."""
    sys, dev = tmp_path / "sys", tmp_path / "dev"
    null, zero = os.stat("/dev/null").st_rdev, os.stat("/dev/zero").st_rdev
    n_num = f"{os.major(null)}:{os.minor(null)}"
    z_num = f"{os.major(zero)}:{os.minor(zero)}"
    _device(sys, "2:0:0:1", "sg1", 1, NAA, n_num)
    _device(sys, "2:0:0:0", "sg0", 0, OTHER_NAA, z_num)
    _link(dev / "tape/by-id/scsi-3600140aa-nst", "/dev/null")
    return sys, dev, n_num, z_num


def test_by_id_name_resolves_to_the_sg_node(host):
    sys, dev, *_ = host
    r = resolve("/dev/tape/by-id/scsi-3600140aa-nst", sysfs_root=sys, dev_root=dev)
    assert (r.sg, r.hctl, r.device_type) == (dev / "sg1", "2:0:0:1", 1)
    assert designator_text(r.identifier()) == "naa." + NAA.hex()


def test_a_disks_transfer_limit_is_its_queues(host):
    """A pass-through LUN takes no command larger than its device does: for a disk,
    sysfs shows the request queue's limit (max_hw_sectors_kb); others: None here (their
    sg node answers BLKSECTGET)."""
    sys, dev, *_ = host
    tape, disk = "/dev/tape/by-id/scsi-3600140aa-nst", "naa." + OTHER_NAA.hex()
    queue = sys / "devices/platform/host/2:0:0:0/block/sda/queue"
    queue.mkdir(parents=True)
    (queue / "max_hw_sectors_kb").write_text("256\n")
    assert resolve(disk, sysfs_root=sys, dev_root=dev).max_sectors == 512
    assert resolve(tape, sysfs_root=sys, dev_root=dev).max_sectors is None


def test_a_node_that_is_no_sg_node_says_no_limit(tmp_path):
    from lio_xcopy.sg import sgio

    assert sgio.max_transfer_bytes("/dev/null") is None
    assert sgio.max_transfer_bytes(tmp_path / "gone") is None


def test_designator_name_survives_renumbering(host, tmp_path):
    sys, dev, n_num, _ = host
    name = "naa." + NAA.hex()
    assert resolve(name, sysfs_root=sys, dev_root=dev).sg == dev / "sg1"
    # a reboot: the tape comes back as 3:0:0:4, sg5
    for p in (sys / "bus/scsi/devices/2:0:0:1", sys / "class/scsi_generic/sg1",
              sys / "dev/char" / n_num):
        p.unlink()
    _device(sys, "3:0:0:4", "sg5", 1, NAA, "9:99")
    r = resolve(name, sysfs_root=sys, dev_root=dev)
    assert (r.sg, r.hctl) == (dev / "sg5", "3:0:0:4")


def test_a_by_id_link_to_another_device_is_not_followed(host):
    """The recorded designator wins: a link now pointing at the disk is not the tape."""
    sys, dev, *_ = host
    link = dev / "tape/by-id/scsi-3600140aa-nst"
    link.unlink()
    link.symlink_to("/dev/zero")  # the disk's node
    want = spc.Designator(1, 3, NAA)
    r = resolve(str(link).replace(str(dev), "/dev"), want, sysfs_root=sys, dev_root=dev)
    assert r.hctl == "2:0:0:1"
    with pytest.raises(DeviceNotFound):
        resolve("naa.6001405ccccccccccccccccccccccccc", sysfs_root=sys, dev_root=dev)


def test_our_own_exports_are_never_the_device(host, configfs):
    """The pass-through LUN shows the tape's VPD 83h too: resolving must not find it."""
    sys, dev, n_num, _ = host
    for p in (sys / "bus/scsi/devices/2:0:0:1", sys / "class/scsi_generic/sg1",
              sys / "dev/char" / n_num):
        p.unlink()
    _device(sys, "5:0:1:0", "sg7", 1, NAA, "9:98")  # our own export of it, listed first
    _device(sys, "6:0:0:1", "sg8", 1, NAA, "9:97")  # the real tape
    for n, (name, config) in enumerate([("pt0", "xcopy/passthrough;naa.x;type=1"),
                                        ("phys0", "physlib/tape;/srv/lib;drive=0")]):
        so = configfs.storage_object(name, hba=n, config=config)
        configfs.lun("loopback", f"naa.500140500000000{n + 1}", n, so)
        configfs.address(f"naa.500140500000000{n + 1}", f"{5 + n}:0:1")
    cfs = configfs.root
    assert own_exports("xcopy", cfs) == {"5:0:1:0": "pt0"}
    assert own_exports("physlib", cfs) == {"6:0:1:1": "phys0"}
    name = "naa." + NAA.hex()
    assert resolve(name, sysfs_root=sys, dev_root=dev).hctl == "5:0:1:0"
    r = resolve(name, exclude_subtype="xcopy", sysfs_root=sys, dev_root=dev, configfs=cfs)
    assert r.hctl == "6:0:0:1"


@pytest.mark.parametrize("name", ["/dev/sg3", "/dev/nst0", "/dev/sch0", "sg3",
                                  "/dev/tape/by-path/pci-0000:00:1f.2-nst", "naa.12"])
def test_names_that_renumber_are_refused_in_one_line(name):
    with pytest.raises(NotStableName) as e:
        StableName.parse(name)
    assert "/dev/tape/by-id/" in str(e.value) and "\n" not in str(e.value)


def test_handler_config_of_a_passthrough_lun():
    dev = open_device("pt0", f"passthrough;naa.{NAA.hex()};type=1", "s")
    assert isinstance(dev, PassThrough) and dev.DEVICE_TYPE == 1
    dev = open_device("pt1", "passthrough;/dev/tape/by-id/scsi-x-nst;"
                      f"id=naa.{NAA.hex()};type=8", "s")
    assert dev.DEVICE_TYPE == 8 and dev.timeouts.normal == 300
    with pytest.raises(ConfigError, match="/dev/tape/by-id/"):
        open_device("pt2", "passthrough;/dev/sg3;type=1", "s")
    with pytest.raises(ConfigError, match="type=N"):
        open_device("pt3", f"passthrough;naa.{NAA.hex()}", "s")


def test_create_passthrough_refuses_sg_numbers_before_touching_lio():
    from lio_xcopy.control import provision

    with pytest.raises(ConfigError, match=r"name the device by /dev/tape/by-id/"):
        provision.create_passthrough("pt0", "/dev/sg3")


def test_saved_config_keeps_the_stable_name_and_the_designator():
    from lio_xcopy.control import config

    text = ('{"version": 2, "passthrough": [{"name": "drive0", "device": '
            '"/dev/tape/by-id/scsi-350014380-nst", "designator": "naa.' + NAA.hex() + '"}], '
            '"loopback": [{"luns": {"0": "drive0"}}]}')
    cfg = config.loads(text)
    assert cfg.passthrough == (config.PassThroughConfig(
        "drive0", "/dev/tape/by-id/scsi-350014380-nst", "naa." + NAA.hex()),)
    assert config.loads(config.dump(cfg)) == cfg
    with pytest.raises(ConfigError, match=r"passthrough\[0\]\.device.*/dev/tape/by-id/"):
        config.loads('{"version": 2, "passthrough": [{"name": "d", "device": "/dev/nst0"}]}')


def test_lun_reset_on_the_ring_resets_the_device():
    """TCMU's TMR entry for LOGICAL UNIT RESET (tmr_notification) reaches the device."""
    dev, fake, _ = lun()
    kernel, tdev = _sim(dev)
    try:
        kernel.submit(spc.TestUnitReady().encode())
        tdev.service()
        assert [c.status for c in _reap(kernel, tdev)] == [GOOD]
        kernel.submit_tmr(5)  # TCMU_TMR_LUN_RESET
        tdev.service()
        assert fake.reset_done.wait(10) and fake.resets == [sgio.SG_SCSI_RESET_DEVICE]
    finally:
        tdev.close()
        kernel.close()


def _rsoc_answer(cdb: bytes, data_in: int, data_out: bytes | None) -> sgio.Result:
    if cdb[0] == 0xA3:
        rctd = bool(cdb[2] & 0x80)
        t = bytes(12) if rctd else b""
        device = spc.all_commands_data([
            spc.CommandDescriptor(0x08, None, 6, t), spc.CommandDescriptor(0x12, None, 6, t),
            spc.CommandDescriptor(0x83, 0x00, 16, t)])  # the drive's own copy manager
        return result(cdb, data=device[:data_in], requested=data_in)
    return tape_answer(cdb, data_in, data_out)


@pytest.mark.parametrize("rctd", [False, True])
def test_supported_operation_codes_list_the_copy_commands_this_lun_answers(rctd):
    dev, fake, _ = lun(_rsoc_answer)
    cdb = spc.ReportSupportedOperationCodes(rctd=int(rctd), reporting_options=0,
                                               allocation_length=4096).encode()
    n, data = run(dev, cdb, 4096)
    got = spc.parse_all_commands(data[:n])
    assert [(d.opcode, d.service_action) for d in got] == [
        (0x08, None), (0x12, None), (0x83, 0x00), (0x83, 0x01), (0x83, 0x1C), (0x84, 0x00),
        (0x84, 0x01), (0x84, 0x03), (0x84, 0x04), (0x84, 0x05), (0x84, 0x06), (0xC5, None)]
    assert all(bool(d.timeouts) == rctd for d in got)
    sent = fake.seen[-1][0]
    assert sent[0] == 0xA3 and int.from_bytes(sent[6:10], "big") == 0xFFFF  # the whole list
    # the initiator's allocation length still bounds the answer
    n, data = run(dev, spc.ReportSupportedOperationCodes(
        reporting_options=0, allocation_length=20).encode(), 20)
    assert n == 20 and int.from_bytes(data[:4], "big") == 12 * 8


def test_one_copy_command_is_answered_here_and_any_other_by_the_device():
    dev, fake, _ = lun(_rsoc_answer)
    ask = spc.ReportSupportedOperationCodes(reporting_options=2, requested_operation_code=0x83,
                                               requested_service_action=0x1C,
                                               allocation_length=64).encode()
    _, data = run(dev, ask, 64)
    assert data[1] & 0x07 == spc.SUPPORT_STANDARD and data[4] == 0x83  # usage data follows
    assert fake.seen == []
    other = spc.ReportSupportedOperationCodes(reporting_options=1,
                                                 requested_operation_code=0x08,
                                                 allocation_length=64).encode()
    run(dev, other, 64)
    assert fake.seen[-1][0] == other  # forwarded as it was
