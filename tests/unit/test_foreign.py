"""Copy ends on foreign devices (SG_IO): bytes, counts, the foreign sense verbatim, and
admission by designator. The foreign devices are fakes behind the SG_IO transport:
our own Disk and Tape answering the CDBs, with faults injected per command."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import pytest

from lio_xcopy.copy.manager import CopyAborted, CopyManager, run_inline
from lio_xcopy.devices import foreign
from lio_xcopy.devices.backing import BackingStore
from lio_xcopy.devices.base import Command, LunIdentity, ScsiDevice
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.disk import Disk
from lio_xcopy.devices.foreign import ForeignDevices, admit_name, stable_designator
from lio_xcopy.devices.tape import Tape
from lio_xcopy.errors import ConfigError
from lio_xcopy.scsi import spc, xcopy
from lio_xcopy.scsi.errors import CheckCondition
from lio_xcopy.scsi.sense import Asc, SenseData, SenseKey
from lio_xcopy.scsi.xcopy import (
    BlockToStream,
    IdentificationCscd,
    ListIdUsage,
    StreamToBlock,
)
from lio_xcopy.sg import sgio

MiB = 1 << 20
CHECK = 0x02
#: What a command's fault hook returns: None (run it), a Result, or raises.
Fault = Callable[[bytes], "sgio.Result | None"]


class FakeSg:
    """An SG_IO transport onto one of our own devices: it runs each CDB through the
    device's handler and answers as the kernel would (status, sense bytes, resid)."""

    def __init__(self, path: str, device: ScsiDevice, fault: Fault | None = None):
        self.path = path
        self.device = device
        self.fault = fault
        self.cdbs: list[bytes] = []
        self.closed = False

    def execute(self, cdb, data_in=0, data_out=None, timeout=60, *, check=True):
        assert not self.closed and timeout > 0 and not check
        cdb = bytes(cdb)
        self.cdbs.append(cdb)
        if self.fault is not None:
            got = self.fault(cdb)
            if got is not None:
                return got
        length = data_in or (len(data_out) if data_out is not None else 0)
        buf = DataBuffer.of(bytearray(data_out) if data_out is not None else bytearray(length))
        try:
            n = self.device.handle(Command(cdb, buf))
            status, sense, moved = 0, b"", n if data_in else length
        except CheckCondition as e:
            status, sense = CHECK, e.sense.fixed()
            moved = (e.transferred or 0) if data_in else 0
        data = buf.tobytes(moved) if data_in else b""
        return sgio.Result(cdb, status, sgio.parse_sense(sense), data, length - moved, 0.0,
                           requested=length, sense_bytes=sense)

    def close(self) -> None:
        self.closed = True


def check_condition(cdb: bytes, sense: bytes) -> sgio.Result:
    return sgio.Result(cdb, CHECK, sgio.parse_sense(sense), b"", 0, 0.0, sense_bytes=sense)


class Host:
    """A fake target host: sysfs sg nodes and what answers on each."""

    def __init__(self, root):
        self.root = root
        self.nodes: dict[str, FakeSg] = {}
        (root / "sys/class/scsi_generic").mkdir(parents=True)

    def attach(self, n: int, device: ScsiDevice, fault: Fault | None = None, *,
               vpd_pg83: bool = False) -> FakeSg:
        """``vpd_pg83``: sysfs holds the kernel's copy of the device's VPD page 83h."""
        hctl = self.root / f"sys/devices/host0/0:0:{n}:0"
        hctl.mkdir(parents=True, exist_ok=True)
        (hctl / "type").write_text(f"{device.DEVICE_TYPE}\n")
        (hctl / "vpd_pg83").unlink(missing_ok=True)
        if vpd_pg83:
            (hctl / "vpd_pg83").write_bytes(
                spc.vpd_device_identification(device.DEVICE_TYPE, device.designators()))
        node = self.root / f"sys/class/scsi_generic/sg{n}"
        node.mkdir(exist_ok=True)
        link = node / "device"
        if link.is_symlink():
            link.unlink()
        link.symlink_to(hctl)
        fake = FakeSg(f"/dev/sg{n}", device, fault)
        self.nodes[fake.path] = fake
        return fake

    def open(self, path: str) -> FakeSg:
        fake = self.nodes.get(path)
        if fake is None:
            raise sgio.NotScsiDevice(f"{path}: no such device", path)
        fake.closed = False
        return fake

    def directory(self) -> ForeignDevices:
        return ForeignDevices(opener=self.open, sysfs_root=self.root / "sys", dev_root="/dev")


@pytest.fixture
def lab(tmp_path):
    made: list[ScsiDevice] = []

    def disk(name, data=None, size=4 * MiB, **kw):
        path = tmp_path / f"{name}.img"
        path.write_bytes(data if data is not None else bytes(size))
        d = Disk(LunIdentity(name, f"{name}-serial-0123456789ab"), BackingStore(path), **kw)
        made.append(d)
        return d

    def tape(name, capacity=16 * MiB, **kw):
        t = Tape(LunIdentity(name, f"{name}-serial-ba9876543210"), tmp_path / f"{name}.aws",
                 capacity, **kw)
        made.append(t)
        return t

    class Lab:
        pass

    lab = Lab()
    lab.disk, lab.tape, lab.host = disk, tape, Host(tmp_path)
    lab.groups = {}  # receiving LUN name -> admitted designator texts
    lab.manager = CopyManager(chunk=256 * 1024, foreign=lab.host.directory(),
                              admitted=lambda lun: lab.groups.get(lun.name, ()),
                              start=run_inline)
    yield lab
    for d in made:
        d.close()


def text_of(dev: ScsiDevice) -> str:
    return spc.designator_text(stable_designator(dev.designators()))


def cscd(dev: ScsiDevice, **kw) -> IdentificationCscd:
    bl = kw.pop("block_length", getattr(dev, "block_size", 0))
    return IdentificationCscd.from_designator(dev.designators()[0], dev.DEVICE_TYPE, bl, **kw)


def copy(lab, receiving, ends, segments, list_id=1):
    """EXTENDED COPY through the receiving LUN's handler; the copy runs inline."""
    data = xcopy.build_extended_copy([cscd(d, **o) for d, o in ends], segments,
                                     list_identifier=list_id, list_id_usage=ListIdUsage.HOLD)
    lab.manager.register(receiving)
    cdb = xcopy.ExtendedCopyLid1(parameter_list_length=len(data)).encode()
    fut = receiving.handle(Command(cdb, DataBuffer.of(bytearray(data))))
    assert fut.done()  # run_inline: no thread, nothing to wait for
    return fut.result()


def aborted(lab, receiving, ends, segments, list_id=1) -> SenseData:
    with pytest.raises(CopyAborted) as e:
        copy(lab, receiving, ends, segments, list_id)
    return e.value.sense


def results(lab, receiving, list_id=1):
    st = xcopy.CopyStatus.parse(lab.manager.receive_copy_results(
        receiving, xcopy.ReceiveCopyResultsCopyStatus(list_identifier=list_id)))
    fsd = xcopy.FailedSegmentDetails.parse(lab.manager.receive_copy_results(
        receiving, xcopy.ReceiveCopyResultsFailedSegmentDetails(list_identifier=list_id)))
    return st, fsd.sense_data if fsd is not None else None


def records(t: Tape) -> list[bytes | None]:
    t.rewind()
    out: list[bytes | None] = []
    buf = DataBuffer.allocate(MiB)
    while True:
        try:
            out.append(buf.tobytes(t.read_record(buf, MiB, sili=True)))
        except CheckCondition as e:
            if e.sense.filemark:
                out.append(None)
                continue
            return out


def opcodes(fake: FakeSg, op: int) -> list[bytes]:
    return [c for c in fake.cdbs if c[0] == op]


# --- bytes and counts ----------------------------------------------------------------------
def test_a_foreign_disk_copies_to_our_tape_in_large_reads(lab):
    data = os.urandom(3 * MiB)
    far = lab.disk("array", data=data, max_transfer_length=1024)  # VPD B0h: 512 KiB
    fake = lab.host.attach(2, far)
    t = lab.tape("t0")
    lab.groups["t0"] = {text_of(far)}
    lab.manager.chunk = 2 * MiB  # the manager reads 2 MiB at a time; the array takes 512 KiB
    copy(lab, t, [(far, {}), (t, {})], [BlockToStream(0, 1, len(data) // 512, 0, 65536)])
    assert b"".join(records(t)) == data
    st, _ = results(lab, t)
    assert (st.status, st.transferred_bytes) == (xcopy.CopyCommandStatus.COMPLETED, len(data))
    reads = opcodes(fake, 0x88)
    assert [int.from_bytes(c[10:14], "big") for c in reads] == [1024] * 6
    assert [int.from_bytes(c[2:10], "big") for c in reads] == list(range(0, 6144, 1024))
    assert fake.closed  # the node is released when the copy ends


def test_our_disk_to_a_foreign_tape_and_back_byte_exact(lab):
    data = os.urandom(MiB + 4096)
    src, dst = lab.disk("src", data=data), lab.disk("dst")
    drive = lab.tape("drive")  # the foreign drive, with its own cartridge
    fake = lab.host.attach(3, drive)
    lab.groups["src"] = lab.groups["dst"] = {text_of(drive)}
    copy(lab, src, [(src, {}), (drive, {})], [BlockToStream(0, 1, len(data) // 512, 0, 65536)])
    recs = records(drive)
    assert [len(r) for r in recs] == [65536] * 16 + [4096]
    assert b"".join(recs) == data
    writes = opcodes(fake, 0x0A)
    assert len(writes) == 17 and all(not c[1] & 1 for c in writes)  # variable: FIXED zero
    drive.rewind()
    copy(lab, dst, [(drive, {}), (dst, {})], [StreamToBlock(0, 1, len(data) // 512, 0, 65536)],
         list_id=2)
    with open(dst.store.path, "rb") as f:
        assert f.read(len(data)) == data
    assert results(lab, dst, 2)[0].transferred_bytes == len(data)


def test_a_foreign_tape_in_fixed_mode_gets_fixed_writes(lab):
    data = os.urandom(64 * 512)
    src, drive = lab.disk("src", data=data), lab.tape("drive")
    drive.block_length = 512  # the drive's mode: fixed 512-byte blocks
    fake = lab.host.attach(3, drive)
    lab.groups["src"] = {text_of(drive)}
    copy(lab, src, [(src, {}), (drive, {"block_length": 512, "fixed": True})],
         [BlockToStream(0, 1, 64, 0, 16)])
    writes = opcodes(fake, 0x0A)
    assert [(c[1] & 1, int.from_bytes(c[2:5], "big")) for c in writes] == [(1, 1)] * 64
    drive.block_length = 0
    assert b"".join(records(drive)) == data


def test_a_restore_from_a_foreign_tape_in_fixed_mode_reads_fixed_blocks(lab):
    data = os.urandom(40 * 512)
    drive, dst = lab.tape("drive"), lab.disk("dst")
    for off in range(0, 32 * 512, 512):
        drive.write_record(DataBuffer.of(bytearray(data)), 512, start=off)
    drive.write_filemarks(1)  # after 32 blocks: the second segment meets it
    drive.block_length = 512
    drive.rewind()
    fake = lab.host.attach(3, drive)
    lab.groups["dst"] = {text_of(drive)}
    copy(lab, dst, [(drive, {"block_length": 512, "fixed": True}), (dst, {})],
         [StreamToBlock(0, 1, 16, 0, 16)])
    reads = opcodes(fake, 0x08)
    assert [(c[1] & 1, int.from_bytes(c[2:5], "big")) for c in reads] == [(1, 16)]
    sense = aborted(lab, dst, [(drive, {"block_length": 512, "fixed": True}), (dst, {})],
                    [StreamToBlock(0, 1, 24, 16, 16)], list_id=2)
    assert sense.asc == Asc.COPY_TARGET_DEVICE_DATA_UNDERRUN
    st, raw = results(lab, dst, 2)
    cause = SenseData.parse(raw)
    assert (cause.filemark, cause.information) == (True, 8)  # the 8 blocks asked for
    assert st.transferred_bytes == 16 * 512  # the whole READ before the filemark's
    with open(dst.store.path, "rb") as f:
        assert f.read(32 * 512) == data[: 32 * 512]


def test_a_foreign_drive_with_a_unit_attention_takes_no_copy_until_it_was_reported(lab):
    data = os.urandom(8 * 512)
    src, drive = lab.disk("src", data=data), lab.tape("drive")
    drive.power_on()  # the drive was reset: its position is not what anyone last saw
    lab.host.attach(3, drive)
    lab.groups["src"] = {text_of(drive)}
    sense = aborted(lab, src, [(src, {}), (drive, {})], [BlockToStream(0, 1, 8, 0, 4096)])
    assert (sense.key, sense.asc) == (SenseKey.COPY_ABORTED,
                                      Asc.POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED)
    assert drive.medium.end_of_data_offset == 0  # nothing written
    copy(lab, src, [(src, {}), (drive, {})], [BlockToStream(0, 1, 8, 0, 4096)], list_id=2)
    assert b"".join(records(drive)) == data  # TEST UNIT READY took the unit attention


# --- stream conditions of the foreign drive, as our own tapes raise them ---------------------
def test_end_of_data_on_a_foreign_tape_reports_its_sense_verbatim(lab):
    drive, dst = lab.tape("drive"), lab.disk("dst")
    rec = os.urandom(8192)
    drive.write_record(DataBuffer.of(bytearray(rec)), len(rec))
    drive.rewind()
    lab.host.attach(3, drive)
    lab.groups["dst"] = {text_of(drive)}
    sense = aborted(lab, dst, [(drive, {}), (dst, {})], [StreamToBlock(0, 1, 64, 0, 8192)])
    assert (sense.key, sense.asc) == (SenseKey.COPY_ABORTED, Asc.COPY_TARGET_DEVICE_DATA_UNDERRUN)
    st, raw = results(lab, dst)
    drive_sense = SenseData(SenseKey.BLANK_CHECK, Asc.END_OF_DATA_DETECTED, information=8192)
    assert raw == drive_sense.fixed()  # the drive's bytes, as it sent them
    assert st.transferred_bytes == 8192


def test_a_filemark_mid_restore_is_an_underrun_after_the_records_before_it(lab):
    drive, dst = lab.tape("drive"), lab.disk("dst")
    recs = [os.urandom(4096) for _ in range(3)]
    for r in recs:
        drive.write_record(DataBuffer.of(bytearray(r)), 4096)
    drive.write_filemarks(1)
    drive.rewind()
    lab.host.attach(3, drive)
    lab.groups["dst"] = {text_of(drive)}
    sense = aborted(lab, dst, [(drive, {}), (dst, {})], [StreamToBlock(0, 1, 32, 0, 4096)])
    assert sense.asc == Asc.COPY_TARGET_DEVICE_DATA_UNDERRUN
    st, raw = results(lab, dst)
    cause = SenseData.parse(raw)
    assert (cause.key, cause.asc, cause.filemark, cause.information) == (
        SenseKey.NO_SENSE, Asc.FILEMARK_DETECTED, True, 4096)
    assert st.transferred_bytes == 3 * 4096
    with open(dst.store.path, "rb") as f:
        assert f.read(3 * 4096) == b"".join(recs)


def test_a_longer_record_on_a_foreign_tape_is_an_inexact_segment_with_its_ili(lab):
    drive, dst = lab.tape("drive"), lab.disk("dst")
    drive.write_record(DataBuffer.of(bytearray(os.urandom(1024))), 1024)
    drive.rewind()
    lab.host.attach(3, drive)
    lab.groups["dst"] = {text_of(drive)}
    sense = aborted(lab, dst, [(drive, {}), (dst, {})], [StreamToBlock(0, 1, 1, 0, 512)])
    assert sense.asc == Asc.UNEXPECTED_INEXACT_SEGMENT
    cause = SenseData.parse(results(lab, dst)[1])
    assert (cause.ili, cause.information_signed) == (True, -512)


def test_a_foreign_tape_filling_up_stops_with_an_exact_count(lab):
    data = os.urandom(3 * MiB)
    src = lab.disk("src", data=data)
    drive = lab.tape("drive", capacity=2 * MiB, early_warning_size=256 * 1024)
    lab.host.attach(3, drive)
    lab.groups["src"] = {text_of(drive)}
    sense = aborted(lab, src, [(src, {}), (drive, {})],
                    [BlockToStream(0, 1, len(data) // 512, 0, 65536)])
    assert (sense.key, sense.asc) == (SenseKey.COPY_ABORTED, Asc.END_OF_PARTITION_MEDIUM_DETECTED)
    st, raw = results(lab, src)
    cause = SenseData.parse(raw)
    assert (cause.key, cause.eom) == (SenseKey.VOLUME_OVERFLOW, True)
    on_tape = b"".join(records(drive))
    assert st.transferred_bytes == len(on_tape) > MiB  # written on past early warning
    assert on_tape == data[: len(on_tape)]


# --- failures of the foreign device --------------------------------------------------------
def test_a_medium_error_of_a_foreign_disk_lands_verbatim_in_failed_segment_details(lab):
    data = os.urandom(2 * MiB)
    t = lab.tape("t0")
    far = lab.disk("array", data=data)
    raw = bytearray(SenseData(SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR,
                              information=1500).fixed())
    raw[7] += 6
    raw += b"\x00\x00\xde\xad\xbe\xef"  # vendor bytes the array adds

    def fault(cdb: bytes):
        lba, n = int.from_bytes(cdb[2:10], "big"), int.from_bytes(cdb[10:14], "big")
        if cdb[0] == 0x88 and lba <= 1500 < lba + n:
            return check_condition(cdb, bytes(raw))
        return None

    lab.host.attach(2, far, fault)
    lab.groups["t0"] = {text_of(far)}
    sense = aborted(lab, t, [(far, {}), (t, {})], [BlockToStream(0, 1, 4096, 0, 65536)])
    assert (sense.key, sense.asc) == (SenseKey.COPY_ABORTED, Asc.UNRECOVERED_READ_ERROR)
    st, details = results(lab, t)
    assert details == bytes(raw)
    on_tape = b"".join(records(t))
    assert st.transferred_bytes == len(on_tape) == 1024 * 512  # the chunks before LBA 1500
    assert on_tape == data[: len(on_tape)]


def _status(cdb: bytes, status: int) -> sgio.Result:
    return sgio.Result(cdb, status, None, b"", 0, 0.0)


@pytest.mark.parametrize("status", [0x08, 0x28])  # BUSY, TASK SET FULL
def test_a_busy_foreign_disk_is_asked_again_and_the_copy_completes(lab, monkeypatch, status):
    monkeypatch.setattr(foreign, "BUSY_FIRST_WAIT", 0.0)
    data = os.urandom(MiB)
    t, far = lab.tape("t0"), lab.disk("array", data=data)
    busy = {"left": foreign.BUSY_RETRIES}  # the first READ (16): BUSY until the last try

    def fault(cdb: bytes):
        if cdb[0] == 0x88 and busy["left"]:
            busy["left"] -= 1
            return _status(cdb, status)
        return None

    node = lab.host.attach(2, far, fault)
    lab.groups["t0"] = {text_of(far)}
    copy(lab, t, [(far, {}), (t, {})], [BlockToStream(0, 1, 2048, 0, 65536)])
    assert b"".join(records(t)) == data
    reads = opcodes(node, 0x88)
    assert len(reads) == foreign.BUSY_RETRIES + len(data) // (256 * 1024)
    assert reads[0] == reads[foreign.BUSY_RETRIES]  # the same READ, sent again


def test_a_foreign_disk_busy_past_every_retry_aborts_the_copy(lab, monkeypatch):
    monkeypatch.setattr(foreign, "BUSY_FIRST_WAIT", 0.0)
    t, far = lab.tape("t0"), lab.disk("array", data=os.urandom(MiB))
    node = lab.host.attach(2, far, lambda cdb: _status(cdb, 0x08) if cdb[0] == 0x88 else None)
    lab.groups["t0"] = {text_of(far)}
    sense = aborted(lab, t, [(far, {}), (t, {})], [BlockToStream(0, 1, 2048, 0, 65536)])
    assert (sense.key, sense.asc) == (SenseKey.COPY_ABORTED, Asc.THIRD_PARTY_DEVICE_FAILURE)
    assert len(opcodes(node, 0x88)) == foreign.BUSY_RETRIES + 1
    assert results(lab, t)[0].transferred_bytes == 0


def test_a_write_failing_on_a_foreign_disk_counts_the_blocks_before_its_lba(lab):
    rec = os.urandom(64 * 1024)
    t = lab.tape("t0")
    for _ in range(4):
        t.write_record(DataBuffer.of(bytearray(rec)), len(rec))
    t.rewind()
    far = lab.disk("array")
    raw = SenseData(SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR, information=300).fixed()

    def fault(cdb: bytes):
        lba, n = int.from_bytes(cdb[2:10], "big"), int.from_bytes(cdb[10:14], "big")
        if cdb[0] == 0x8A and lba <= 300 < lba + n:
            return check_condition(cdb, raw)
        return None

    lab.host.attach(2, far, fault)
    lab.groups["t0"] = {text_of(far)}
    sense = aborted(lab, t, [(t, {}), (far, {})], [StreamToBlock(0, 1, 512, 0, 65536)])
    assert sense.asc == Asc.WRITE_ERROR
    st, details = results(lab, t)
    assert details == raw and st.transferred_bytes == 300 * 512


@pytest.mark.parametrize(("host_status", "asc"), [
    (0x01, Asc.LOGICAL_UNIT_COMMUNICATION_FAILURE),  # DID_NO_CONNECT: the device went away
    (0x03, Asc.LOGICAL_UNIT_COMMUNICATION_TIME_OUT),  # DID_TIME_OUT: SG_IO's timeout fired
])
def test_a_foreign_disk_lost_mid_copy_is_copy_target_device_not_reachable(lab, host_status, asc):
    data = os.urandom(2 * MiB)
    t, far = lab.tape("t0"), lab.disk("array", data=data)
    reads = []

    def fault(cdb: bytes):
        if cdb[0] == 0x88:
            reads.append(cdb)
            if len(reads) == 3:
                r = sgio.Result(cdb, 0, None, b"", 0, 0.0, host_status=host_status)
                raise sgio.TransportFailure("READ (16) did not complete", "/dev/sg2", r)
        return None

    lab.host.attach(2, far, fault)
    lab.groups["t0"] = {text_of(far)}
    sense = aborted(lab, t, [(far, {}), (t, {})], [BlockToStream(0, 1, 4096, 0, 65536)])
    assert (sense.key, sense.asc) == (SenseKey.COPY_ABORTED, Asc.COPY_TARGET_DEVICE_NOT_REACHABLE)
    st, details = results(lab, t)
    cause = SenseData.parse(details)
    assert (cause.key, cause.asc) == (SenseKey.ABORTED_COMMAND, asc)
    assert st.transferred_bytes == 2 * 256 * 1024 == len(b"".join(records(t)))


# --- admission and resolution --------------------------------------------------------------
def test_a_foreign_device_outside_every_copy_group_is_refused_and_logged(lab, caplog):
    far, t = lab.disk("array"), lab.tape("t0")
    fake = lab.host.attach(2, far)
    lab.groups["other-lun"] = {text_of(far)}  # admitted, but not with t0
    with caplog.at_level(logging.WARNING, "lio_xcopy.copy.manager"):
        sense = aborted(lab, t, [(far, {}), (t, {})], [BlockToStream(0, 1, 8, 0, 4096)])
    assert (sense.key, sense.asc) == (SenseKey.COPY_ABORTED, Asc.COPY_TARGET_DEVICE_NOT_REACHABLE)
    assert sense.sense_key_specific == b"\x80\x00\x10"  # CSCD 0 at byte 16
    assert "neither a LUN of ours nor a foreign device admitted" in caplog.text
    assert fake.cdbs == []  # not even asked who it is
    assert t.medium.end_of_data_offset == 0


def test_a_renumbered_node_is_refused_then_found_again(lab, caplog):
    data = os.urandom(MiB)
    far, other = lab.disk("array", data=data), lab.disk("other", data=os.urandom(MiB))
    t = lab.tape("t0")
    lab.host.attach(2, far)
    lab.host.attach(3, other)
    lab.groups["t0"] = {text_of(far)}
    copy(lab, t, [(far, {}), (t, {})], [BlockToStream(0, 1, 8, 0, 4096)])
    lab.host.attach(2, other)  # a reboot: the nodes now answer the other way round
    lab.host.attach(3, far)
    with caplog.at_level(logging.WARNING):
        sense = aborted(lab, t, [(far, {}), (t, {})], [BlockToStream(0, 1, 8, 0, 4096)], 2)
    assert sense.asc == Asc.COPY_TARGET_DEVICE_NOT_REACHABLE
    assert f"/dev/sg2 no longer reports {text_of(far)}" in caplog.text
    assert len(records(t)) == 1  # the refused copy wrote nothing
    t.rewind()
    copy(lab, t, [(far, {}), (t, {})], [BlockToStream(0, 1, 2048, 0, 65536)], 3)
    assert b"".join(records(t)) == data  # found again on /dev/sg3


def test_our_own_luns_seen_back_through_the_kernel_are_not_foreign(lab):
    ours, t = lab.disk("ours", data=os.urandom(MiB)), lab.tape("t0")
    lab.manager.register(ours)
    fake = lab.host.attach(4, ours, vpd_pg83=True)  # tcm_loop shows it as /dev/sg4
    far = lab.disk("array")
    lab.host.attach(2, far)
    assert [n.path for n, _ in lab.host.directory().scan(lab.manager.serves)] == ["/dev/sg2"]
    assert fake.cdbs == []  # known by the kernel's copy of its page: never asked
    lab.groups["t0"] = {text_of(ours), text_of(far)}
    copy(lab, t, [(ours, {}), (t, {})], [BlockToStream(0, 1, 8, 0, 4096)])
    assert fake.cdbs == []  # read directly, not through SG_IO


def test_our_own_luns_are_never_asked_even_without_the_kernels_copy_of_their_page(lab):
    """A LUN of ours whose SCSI device has no ``vpd_pg83`` in sysfs (the kernel could not
    read it at scan) is still never sent an INQUIRY: the LUN running the copy would
    have to answer it behind the copy. Our exports are known from configfs by H:C:T:L."""
    ours, far = lab.disk("ours", data=os.urandom(MiB)), lab.disk("array")
    lab.manager.register(ours)
    fake = lab.host.attach(4, ours)  # no vpd_pg83
    lab.host.attach(2, far)
    directory = ForeignDevices(opener=lab.host.open, sysfs_root=lab.host.root / "sys",
                               dev_root="/dev", own_nodes=lambda: {"0:0:4:0"})
    assert [n.path for n, _ in directory.scan(lab.manager.serves)] == ["/dev/sg2"]
    assert fake.cdbs == []


def test_admit_name_keeps_a_designator_and_asks_a_node_for_one(lab):
    far = lab.disk("array")
    lab.host.attach(2, far)
    naa = far.designators()[0].value.hex()
    assert admit_name(f"NAA.{naa.upper()}") == f"naa.{naa}"
    assert admit_name("/dev/sg2", opener=lab.host.open) == f"naa.{naa}"
    with pytest.raises(ConfigError):
        admit_name("sg2")
    with pytest.raises(ConfigError):
        admit_name("/dev/sg9", opener=lab.host.open)


def test_designator_text_matches_its_hex_and_logical_units_only():
    d = spc.Designator(1, 3, bytes.fromhex("6001405abcdef0123456789abcdef012"))
    assert spc.designator_text(d) == "naa.6001405abcdef0123456789abcdef012"
    assert spc.designator_matches("6001405ABCDEF0123456789ABCDEF012", d)
    port = spc.Designator(1, 3, d.value, association=1)
    assert not spc.designator_matches("naa.6001405abcdef0123456789abcdef012", port)
    assert not spc.designator_matches("eui.6001405abcdef0123456789abcdef012", d)


# --- a pass-through LUN as a copy end --------------------------------------------------------
def test_a_copy_naming_a_pass_through_lun_moves_the_bytes_through_its_device(lab):
    """The CSCD names a drive our pass-through LUN exports (the LUN reports the drive's
    designators): the copy reaches the drive with WRITE (6) over an SG_IO handle of its
    own, closed at the end, and the LUN's own handle stays as it was."""
    from pathlib import Path

    from lio_xcopy.devices.passthrough import PassThrough
    from lio_xcopy.sg.resolve import Resolved

    data = os.urandom(MiB + 4096)
    src = lab.disk("src", data=data)
    drive = lab.tape("drive")  # the real drive behind the pass-through LUN
    fake = lab.host.attach(4, drive)
    where = Resolved(Path(fake.path), "2:0:0:4", spc.TYPE_TAPE, tuple(drive.designators()))
    pt = PassThrough(LunIdentity("pt0", "pt0-serial-0123456789ab"), spc.TYPE_TAPE,
                     lambda: where, lambda path: lab.host.open(str(path)))
    lab.manager.register(pt)
    copy(lab, src, [(src, {}), (pt, {})], [BlockToStream(0, 1, len(data) // 512, 0, 65536)])
    assert b"".join(records(drive)) == data
    assert len(opcodes(fake, 0x0A)) == 17
    st, _ = results(lab, src)
    assert (st.status, st.transferred_bytes) == (xcopy.CopyCommandStatus.COMPLETED, len(data))


def test_a_pass_through_lun_whose_device_is_gone_is_copy_target_device_not_reachable(lab):
    from lio_xcopy.devices.passthrough import PassThrough
    from lio_xcopy.sg.resolve import DeviceNotFound

    def gone():
        raise DeviceNotFound("no device reports naa.6001405...")

    src = lab.disk("src", data=os.urandom(MiB))
    drive = lab.tape("drive")
    pt = PassThrough(LunIdentity("pt0", "pt0-serial-0123456789ab"), spc.TYPE_TAPE, gone,
                     lambda path: lab.host.open(str(path)))
    pt.designators = drive.designators  # what it reported while the drive was there
    lab.manager.register(pt)
    sense = aborted(lab, src, [(src, {}), (pt, {})], [BlockToStream(0, 1, 2048, 0, 65536)])
    assert (sense.key, sense.asc) == (SenseKey.COPY_ABORTED, Asc.COPY_TARGET_DEVICE_NOT_REACHABLE)
    assert records(drive) == []
