"""The copy manager over real devices on temp files: a pytest plugin with the
``copy_lab`` fixture, and helpers that send an EXTENDED COPY and read a tape back."""

from __future__ import annotations

import pytest

from lio_xcopy.copy.manager import CopyAborted, CopyManager
from lio_xcopy.devices.backing import BackingStore
from lio_xcopy.devices.base import Command, LunIdentity
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.disk import Disk
from lio_xcopy.devices.tape import Tape
from lio_xcopy.scsi import xcopy
from lio_xcopy.scsi import xcopy as x
from lio_xcopy.scsi.errors import CheckCondition
from lio_xcopy.scsi.sense import SenseData, SenseKey
from lio_xcopy.scsi.xcopy import IdentificationCscd

MiB = 1 << 20


@pytest.fixture
def copy_lab(tmp_path):
    """``disk(name, ...)`` and ``tape(name, ...)`` over temp files, and a copy manager."""
    made = []

    def disk(name, size=4 * MiB, block_size=512, data=None):
        path = tmp_path / f"{name}.img"
        path.write_bytes(data if data is not None else bytes(size))
        d = Disk(LunIdentity(name, f"{name}-serial-0123456789abcdef"), BackingStore(path),
                 block_size=block_size)
        made.append(d)
        return d

    def tape(name, capacity=16 * MiB):
        t = Tape(LunIdentity(name, f"{name}-serial-fedcba9876543210"), tmp_path / f"{name}.aws",
                 capacity)
        made.append(t)
        return t

    class Lab:
        pass

    lab = Lab()
    lab.disk, lab.tape, lab.manager = disk, tape, CopyManager(chunk=64 * 1024)
    yield lab
    for d in made:
        d.close()


def cscd(dev, **kw):
    naa = dev.designators()[0]
    bl = kw.pop("block_length", getattr(dev, "block_size", 0))
    return IdentificationCscd.from_designator(naa, dev.DEVICE_TYPE, bl, **kw)


def run(manager, receiving, cscds, segments, **kw):
    """Send the list as the SCSI command does; wait for the copy to end."""
    data = xcopy.build_extended_copy([cscd(d, **o) for d, o in cscds], segments, **kw)
    for dev in {id(d): d for d, _ in cscds}.values():
        manager.register(dev)
    manager.register(receiving)
    cdb = xcopy.ExtendedCopyLid1(parameter_list_length=len(data)).encode()
    result = receiving.handle(Command(cdb, DataBuffer.of(bytearray(data))))
    if isinstance(result, int):
        return result
    return result.result(timeout=30)


def tape_records(t: Tape):
    t.rewind()
    out = []
    buf = DataBuffer.allocate(1 << 24)
    while True:
        try:
            n = t.read_record(buf, 1 << 24, sili=True)
            out.append(buf.tobytes(n))
        except CheckCondition as e:
            if e.sense.filemark:
                out.append(None)
                continue
            assert e.sense.key == SenseKey.BLANK_CHECK
            return out


def read_file(disk: Disk) -> bytes:
    with open(disk.store.path, "rb") as f:
        return f.read()


def ptr(s: SenseData) -> int:
    """The byte a sense-key specific field or segment pointer names."""
    assert s.sense_key_specific is not None
    return int.from_bytes(s.sense_key_specific[1:3], "big")


def objects(t: Tape) -> list[bytes | None]:
    """Every object from BOT: a record's bytes, or None for a filemark."""
    return tape_records(t)


def write(t: Tape, *objs: bytes | None) -> None:
    for o in objs:
        if o is None:
            t.write_filemarks(1)
        else:
            t.write_record(DataBuffer.of(bytearray(o)), len(o))


def aborted(excinfo, asc: int, segment: int, byte: int | None = None) -> CopyAborted:
    e = excinfo.value
    assert (e.sense.key, e.sense.asc, e.sense.command_specific) == (
        SenseKey.COPY_ABORTED, asc, segment)
    if byte is not None:
        assert ptr(e.sense) == byte
    return e


def details(manager, lun, list_id=5) -> SenseData:
    fsd = x.FailedSegmentDetails.parse(manager.receive_copy_results(
        lun, x.ReceiveCopyResultsFailedSegmentDetails(list_identifier=list_id)))
    assert fsd is not None and fsd.sense is not None
    return fsd.sense


def report(manager, receiving, fut, list_id: int = 5) -> dict:
    """What an EXTENDED COPY sent as ``fut`` ended with and what its job reports: status,
    counts, digest, held data and FAILED SEGMENT DETAILS."""
    try:
        ended = ("ok", fut.result(timeout=30))
    except CheckCondition as e:
        ended = ("error", e.sense.key, e.sense.asc, e.sense.information,
                 e.sense.command_specific)
    job = next(j for j in manager.jobs() if j.list_id == list_id)
    fsd = xcopy.FailedSegmentDetails.parse(manager.receive_copy_results(
        receiving, xcopy.ReceiveCopyResultsFailedSegmentDetails(list_identifier=list_id)))
    return {
        "ended": ended, "status": job.status, "transferred": job.transferred,
        "segments": job.segments_processed, "operations": job.operations,
        "digest": job.digest.hexdigest(), "held": bytes(job.held), "carry": job.carry,
        "fsd": fsd.sense_data if fsd is not None else None,
    }
