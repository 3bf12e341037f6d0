"""The copy manager's checks of an EXTENDED COPY (LID1) list, in their order, for the
cases where LIO's target_core_xcopy.c answers otherwise (see CopyManager.extended_copy):
sense key, ASC/ASCQ, COMMAND-SPECIFIC INFORMATION and the field pointer, and that no
data moved."""

from __future__ import annotations

from pathlib import Path

import pytest

from lio_xcopy.copy.manager import CopyManager
from lio_xcopy.devices.backing import BackingStore
from lio_xcopy.devices.base import Command, LunIdentity
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.disk import Disk
from lio_xcopy.scsi import xcopy
from lio_xcopy.scsi.errors import CheckCondition
from lio_xcopy.scsi.sense import SenseData, SenseKey
from lio_xcopy.scsi.xcopy import BlockToBlock, IdentificationCscd, Limits, StreamToStream

BS = 512
BLOCKS = 2048
SEGMENTS_AT = 16 + 2 * 32  # the first segment descriptor, after two CSCD descriptors


@pytest.fixture
def disks(tmp_path):
    made = []
    for i, name in enumerate(("src", "dst")):
        path = tmp_path / f"{name}.img"
        path.write_bytes(bytes([0x11 * (i + 1)]) * BLOCKS * BS)
        made.append(Disk(LunIdentity(name, f"{name}-serial-0123456789abcdef"),
                         BackingStore(path), BS))
    yield made
    for d in made:
        d.close()


def cscd(dev: Disk) -> IdentificationCscd:
    return IdentificationCscd.from_designator(dev.designators()[0], dev.DEVICE_TYPE, BS)


def refused(manager: CopyManager, disks, data: bytes) -> SenseData:
    """The CHECK CONDITION the command gets at once, before any copy starts; both disks
    untouched and no results held for the list."""
    src = disks[0]
    for d in disks:
        manager.register(d)
    before = [Path(d.store.path).read_bytes() for d in disks]
    cdb = xcopy.ExtendedCopyLid1(parameter_list_length=len(data)).encode()
    with pytest.raises(CheckCondition) as e:
        src.handle(Command(cdb, DataBuffer.of(bytearray(data))))
    assert [Path(d.store.path).read_bytes() for d in disks] == before
    assert manager.jobs() == []
    return e.value.sense


def sks(kind: int, byte: int) -> bytes:
    """Sense-key specific bytes: field pointer (kind 0x80: in the parameter list, 0xC0:
    in the CDB) or segment pointer (0xA0: SD set, within the segment)."""
    return bytes([kind]) + byte.to_bytes(2, "big")


def test_65_cscds_in_an_overlong_list_are_too_many_target_descriptors(disks):
    """TOO MANY TARGET DESCRIPTORS (26h/06h) at CSCD DESCRIPTOR LIST LENGTH, not LIO's
    PARAMETER LIST LENGTH ERROR: the count comes first."""
    src, dst = disks
    limits = Limits(max_descriptor_list_length=64 * 32 + 28)  # 64 CSCDs and 1 segment
    segments = [BlockToBlock(0, 1, 1, i, i) for i in range(2)]
    data = xcopy.build_extended_copy([cscd(src), cscd(dst)] * 32 + [cscd(src)], segments)
    s = refused(CopyManager(limits), disks, data)
    assert (s.key, s.asc >> 8, s.asc & 0xFF) == (SenseKey.ILLEGAL_REQUEST, 0x26, 0x06)
    assert s.sense_key_specific == sks(0x80, 2)
    # with 64 CSCDs the same list is only too long: PARAMETER LIST LENGTH ERROR (1Ah/00h)
    data = xcopy.build_extended_copy([cscd(src), cscd(dst)] * 32, segments)
    s = refused(CopyManager(limits), disks, data)
    assert (s.key, s.asc >> 8, s.asc & 0xFF) == (SenseKey.ILLEGAL_REQUEST, 0x1A, 0x00)
    assert s.sense_key_specific == sks(0x80, 8)


def test_stream_to_stream_naming_disks_is_refused_before_any_segment_runs(disks):
    """Segment 1 (03h) names two disks: COPY ABORTED, INCORRECT COPY TARGET DEVICE TYPE
    (0Dh/03h) for segment 1, its SOURCE CSCD DESCRIPTOR ID (SD set, byte 4), and segment
    0, a valid disk-to-disk copy, has not run."""
    src, dst = disks
    data = xcopy.build_extended_copy(
        [cscd(src), cscd(dst)], [BlockToBlock(0, 1, 8, 0, 0), StreamToStream(0, 1, BS, BS, BS)])
    s = refused(CopyManager(), disks, data)
    assert (s.key, s.asc >> 8, s.asc & 0xFF) == (SenseKey.COPY_ABORTED, 0x0D, 0x03)
    assert s.command_specific == 1
    assert s.sense_key_specific == sks(0xA0, 4)


def test_stream_to_stream_on_a_manager_without_it_is_an_unsupported_type(disks):
    """UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE (26h/09h) at the descriptor's byte 0."""
    src, dst = disks
    data = xcopy.build_extended_copy([cscd(src), cscd(dst)], [StreamToStream(0, 1, BS, BS, BS)])
    s = refused(CopyManager(Limits(segment_types=(0x00, 0x01, 0x02))), disks, data)
    assert (s.key, s.asc >> 8, s.asc & 0xFF) == (SenseKey.ILLEGAL_REQUEST, 0x26, 0x09)
    assert s.sense_key_specific == sks(0x80, SEGMENTS_AT)


@pytest.mark.parametrize(("source", "destination", "byte"), [(2, 1, 4), (0, 7, 6)])
def test_a_cscd_id_beyond_the_list_is_an_invalid_field(disks, source, destination, byte):
    """ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST (26h/00h) at the ID, not LIO's
    COPY ABORTED, COPY TARGET DEVICE NOT REACHABLE."""
    src, dst = disks
    data = xcopy.build_extended_copy([cscd(src), cscd(dst)],
                                     [BlockToBlock(source, destination, 1, 0, 0)])
    s = refused(CopyManager(), disks, data)
    assert (s.key, s.asc >> 8, s.asc & 0xFF) == (SenseKey.ILLEGAL_REQUEST, 0x26, 0x00)
    assert s.sense_key_specific == sks(0x80, SEGMENTS_AT + byte)
    assert s.information is None


def test_a_range_past_the_destinations_end_is_lba_out_of_range(disks):
    """COPY ABORTED, LOGICAL BLOCK ADDRESS OUT OF RANGE (21h/00h): INFORMATION the
    destination LBA, the segment number, the pointer at DESTINATION LOGICAL BLOCK
    ADDRESS (byte 20); not LIO's COPY TARGET DEVICE NOT REACHABLE."""
    src, dst = disks
    data = xcopy.build_extended_copy(
        [cscd(src), cscd(dst)],
        [BlockToBlock(0, 1, 8, 0, 0), BlockToBlock(0, 1, 8, 0, BLOCKS - 4)])
    s = refused(CopyManager(), disks, data)
    assert (s.key, s.asc >> 8, s.asc & 0xFF) == (SenseKey.COPY_ABORTED, 0x21, 0x00)
    assert s.information == BLOCKS - 4 and s.command_specific == 1
    assert s.sense_key_specific == sks(0xA0, 20)
