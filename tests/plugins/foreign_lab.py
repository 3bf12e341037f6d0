"""Copy ends on foreign devices: a pytest plugin with the ``foreign_lab`` fixture. The
foreign devices are fakes behind the SG_IO transport: our own Disk and Tape answering
the CDBs, with faults injected per command."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from plugins.copy_steps import InlineExecutor

from lio_xcopy.copy.manager import CopyAborted, CopyManager
from lio_xcopy.devices.backing import BackingStore
from lio_xcopy.devices.base import Command, LogicalUnit, LunIdentity
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.disk import Disk
from lio_xcopy.devices.foreign import ForeignDevices, stable_designator
from lio_xcopy.devices.tape import Tape
from lio_xcopy.scsi import spc, xcopy
from lio_xcopy.scsi.errors import CheckCondition
from lio_xcopy.scsi.sense import SenseData
from lio_xcopy.scsi.xcopy import (
    IdentificationCscd,
    ListIdUsage,
)
from lio_xcopy.sg import sgio

MiB = 1 << 20
CHECK = 0x02
#: What a command's fault hook returns: None (run it), a Result, or raises.
Fault = Callable[[bytes], "sgio.Result | None"]


class FakeSg:
    """An SG_IO transport onto one of our own devices: it runs each CDB through the
    device's handler and answers as the kernel would (status, sense bytes, resid)."""

    def __init__(self, path: str, device: LogicalUnit, fault: Fault | None = None):
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

    def attach(self, n: int, device: LogicalUnit, fault: Fault | None = None, *,
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
def foreign_lab(tmp_path):
    made: list[LogicalUnit] = []

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
                              executor=InlineExecutor())
    yield lab
    for d in made:
        d.close()


def text_of(dev: LogicalUnit) -> str:
    return spc.designator_text(stable_designator(dev.designators()))


def cscd(dev: LogicalUnit, **kw) -> IdentificationCscd:
    bl = kw.pop("block_length", getattr(dev, "block_size", 0))
    return IdentificationCscd.from_designator(dev.designators()[0], dev.DEVICE_TYPE, bl, **kw)


def copy(lab, receiving, ends, segments, list_id=1):
    """EXTENDED COPY through the receiving LUN's handler; the copy runs inline."""
    data = xcopy.build_extended_copy([cscd(d, **o) for d, o in ends], segments,
                                     list_identifier=list_id, list_id_usage=ListIdUsage.HOLD)
    lab.manager.register(receiving)
    cdb = xcopy.ExtendedCopyLid1(parameter_list_length=len(data)).encode()
    fut = receiving.handle(Command(cdb, DataBuffer.of(bytearray(data))))
    assert fut.done()  # an inline executor: no thread, nothing to wait for
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
