"""Hostile CDBs and Data-Out buffers against every device: property-based (hypothesis).
EXTENDED COPY parameter lists are drawn in both formats, LID1 and LID4 (with IMMED).

Invariants, for every opcode a device dispatches and for random bytes:
- the answer is a Data-In byte count or a :class:`CheckCondition` carrying sense data,
  never another exception;
- a Data-In count never exceeds the buffer or the CDB's ALLOCATION LENGTH;
- nothing is written outside the LUN: the backing files keep their size, and bytes
  beyond the LUN's end (a guard zone the LUN does not own) are never touched.
"""

from __future__ import annotations

import contextlib
import os
import random
from concurrent.futures import Future

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lio_xcopy.copy.manager import CopyManager
from lio_xcopy.devices.backing import BackingStore
from lio_xcopy.devices.base import Command, LogicalUnit, LunIdentity
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.changer import MediumChanger
from lio_xcopy.devices.disk import Disk
from lio_xcopy.devices.tape import Tape
from lio_xcopy.scsi import xcopy
from lio_xcopy.scsi.errors import CheckCondition
from lio_xcopy.scsi.xcopy import (
    BlockToBlock,
    BlockToStream,
    IdentificationCscd,
    StreamToBlock,
    StreamToStream,
)

BS = 512
BLOCKS = 256
GUARD = BS - 1  # a partial block after the LUN's last one: in the file, not in the LUN
GUARD_BYTE = 0xA5


class Lab:
    """A disk (with a guard zone after its last block) and a tape, one copy manager."""

    def __init__(self, tmp) -> None:
        self.disk_path = tmp / "disk.img"
        with open(self.disk_path, "wb") as f:
            f.write(bytes(BLOCKS * BS) + bytes([GUARD_BYTE]) * GUARD)
        store = BackingStore(self.disk_path)
        self.disk = Disk(LunIdentity("fz-disk", "6001405aaaaaaaaaaaaaaaaaaaaaaaa1"), store, BS)
        assert self.disk.blocks == BLOCKS
        self.tape_path = tmp / "tape.aws"
        self.tape = Tape(LunIdentity("fz-tape", "6001405bbbbbbbbbbbbbbbbbbbbbbbb2"),
                         self.tape_path, 2 << 20)
        from lio_xcopy.control.library import create_library, lto_barcodes

        lib = create_library(tmp / "lib", slots=4, ie_slots=1, drives=1, capacity=2 << 20,
                             barcodes=lto_barcodes(3))
        self.drive = Tape(LunIdentity("fz-drive", "6001405cccccccccccccccccccccccc3"), None,
                          2 << 20)
        lib.attach_drive(0, self.drive)
        self.changer = MediumChanger(
            LunIdentity("fz-changer", "6001405dddddddddddddddddddddddd4"), lib)
        self.manager = CopyManager()
        for d in self.devices():
            self.manager.register(d)

    def devices(self) -> list[LogicalUnit]:
        return [self.disk, self.tape, self.changer, self.drive]

    def check_bounds(self) -> None:
        with open(self.disk_path, "rb") as f:
            f.seek(BLOCKS * BS)
            assert f.read() == bytes([GUARD_BYTE]) * GUARD, "wrote past the LUN's end"
        assert os.path.getsize(self.disk_path) == BLOCKS * BS + GUARD

    def close(self) -> None:
        for d in self.devices():
            d.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("fuzz"))
    yield lab
    lab.close()


def answer(dev: LogicalUnit, cdb: bytes, data: bytearray) -> int | None:
    """Run one command as the transport does; None for CHECK CONDITION."""
    try:
        result = dev.handle(Command(cdb, DataBuffer.of(data)))
        if isinstance(result, Future):
            result = result.result(timeout=30)
    except CheckCondition as e:
        assert len(e.sense.encode()) >= 18  # the transport sends this as CHECK CONDITION
        return None
    assert isinstance(result, int) and 0 <= result <= len(data), result
    return result


def _layouts(dev: LogicalUnit):
    return sorted(type(dev).layouts(), key=lambda la: (la.OPCODE, la.SERVICE_ACTION or 0))


@st.composite
def structured_cdb(draw, layouts):
    """A CDB built from one layout's own fields, each any value its width allows."""
    layout = draw(st.sampled_from(layouts))
    values = {}
    for f in layout.FIELDS:
        if f.name == "service_action" and layout.SERVICE_ACTION is not None:
            continue
        values[f.name] = draw(st.one_of(st.just(0), st.just(f.mask), st.integers(0, f.mask),
                                        st.integers(0, min(16, f.mask))))
    return layout, layout(**values).encode()


@st.composite
def raw_cdb(draw, layouts):
    """A known opcode followed by random bytes of a random length (often wrong)."""
    layout = draw(st.sampled_from(layouts))
    tail = draw(st.binary(min_size=0, max_size=32))
    return layout, bytes([layout.OPCODE]) + tail


@st.composite
def data_out(draw):
    """A Data-Out/Data-In buffer: empty, short, block sized or large; zeros or noise."""
    n = draw(st.one_of(st.just(0), st.integers(0, 64), st.sampled_from([512, 4096, 65536]),
                       st.integers(0, 70000)))
    if draw(st.booleans()):
        return bytearray(n)
    return bytearray(random.Random(draw(st.integers(0, 1 << 32))).randbytes(n))


#: SSC-4 7.7: the short and long forms of READ POSITION return fixed-length data and
#: their ALLOCATION LENGTH is zero; only the extended form is bounded by it.
FIXED_LENGTH_DATA = {0x34}


def _fuzz(lab, which: int, layout, cdb: bytes, buf: bytearray) -> None:
    dev = lab.devices()[which]
    n = answer(dev, cdb, buf)
    if n is not None and len(cdb) >= layout.LENGTH and (
            layout.OPCODE not in FIXED_LENGTH_DATA or "EXTENDED" in layout.NAME):
        alloc = getattr(layout.decode(cdb[:layout.LENGTH]), "allocation_length", None)
        if alloc is not None:
            assert n <= alloc, f"{layout.NAME}: {n} bytes for allocation length {alloc}"
    lab.check_bounds()


FUZZ = settings(max_examples=int(os.environ.get("LIO_XCOPY_FUZZ_EXAMPLES", "300")),
                deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                      HealthCheck.too_slow])


KINDS = pytest.mark.parametrize("which", [0, 1, 2, 3],
                                ids=["disk", "tape", "changer", "library-drive"])


@KINDS
@FUZZ
@given(data=st.data())
def test_structured_cdbs_end_in_data_or_sense(lab, which, data):
    layout, cdb = data.draw(structured_cdb(_layouts(lab.devices()[which])))
    _fuzz(lab, which, layout, cdb, data.draw(data_out()))


@KINDS
@FUZZ
@given(data=st.data())
def test_random_cdb_bytes_end_in_data_or_sense(lab, which, data):
    layout, cdb = data.draw(raw_cdb(_layouts(lab.devices()[which])))
    _fuzz(lab, which, layout, cdb, data.draw(data_out()))


@FUZZ
@given(opcode=st.integers(0, 255), tail=st.binary(max_size=31))
def test_any_opcode_ends_in_data_or_sense(lab, opcode, tail):
    for dev in lab.devices():
        answer(dev, bytes([opcode]) + tail, bytearray(512))
    lab.check_bounds()


# --- EXTENDED COPY parameter lists: random descriptor mixes, then mutations -------------------
def _cscd(draw, lab) -> IdentificationCscd:
    dev = draw(st.sampled_from([lab.disk, lab.tape, lab.changer, lab.drive, None]))
    if dev is None:  # a LUN that is not here
        return IdentificationCscd(draw(st.binary(min_size=8, max_size=16)),
                                  draw(st.sampled_from([0, 1, 3, 8])))
    naa = next(d.value for d in dev.designators() if d.designator_type == 3)
    pdt = draw(st.sampled_from([dev.DEVICE_TYPE, 0, 1]))
    return IdentificationCscd(naa, pdt,
                              block_length=draw(st.sampled_from([0, 1, BS, 4096, 65536])),
                              pad=draw(st.booleans()), fixed=pdt == 1 and draw(st.booleans()))


@st.composite
def plists(draw, lab):
    cscds = [_cscd(draw, lab) for _ in range(draw(st.integers(0, 4)))]
    ids = st.one_of(st.integers(0, len(cscds) + 1), st.just(0xFFFF), st.integers(0, 0xFFFF))
    blocks = st.one_of(st.integers(0, 8), st.just(BLOCKS), st.integers(0, 0xFFFF))
    lba = st.one_of(st.integers(0, BLOCKS), st.integers(0, (1 << 64) - 1))
    length = st.one_of(st.sampled_from([0, 1, 511, BS, 65536]), st.integers(0, 0xFFFFFF))
    segment = st.one_of(
        st.builds(BlockToStream, ids, ids, blocks, lba, length, st.booleans()),
        st.builds(StreamToBlock, ids, ids, blocks, lba, length, st.booleans()),
        st.builds(BlockToBlock, ids, ids, blocks, lba, lba, st.booleans(), st.booleans()),
        st.builds(StreamToStream, ids, ids, st.integers(0, 1 << 20), length, length,
                  st.booleans()),
        # the tape backup job's segments (SPC-4 6.4.6.8-6.4.6.10, 6.4.6.18-6.4.6.20)
        st.builds(xcopy.InlineToStream, ids, st.integers(0, 40).map(lambda n: n * 4),
                  st.integers(0, 200), length, st.booleans()),
        st.builds(xcopy.EmbeddedToStream, ids, st.binary(max_size=40), length,
                  st.none() | st.integers(0, 0xFFFF), st.booleans()),
        st.builds(xcopy.StreamToDiscard, ids, st.integers(0, 1 << 16), length, st.booleans()),
        st.builds(xcopy.WriteFilemarks, ids, st.integers(0, 3), st.booleans(), st.booleans()),
        st.builds(xcopy.Space, ids, st.integers(0, 15), st.integers(-(1 << 23), (1 << 23) - 1)),
        st.builds(xcopy.Locate, ids, st.integers(0, 0xFFFFFFFF)),
    )
    segments, inline = draw(st.lists(segment, max_size=4)), draw(st.binary(max_size=160))
    usage = draw(st.sampled_from([0, 2, 3]))
    lid4 = draw(st.booleans())  # EXTENDED COPY(LID4), SPC-4 6.4.2: maybe IMMED, G_SENSE
    if lid4:
        data = bytearray(xcopy.build_extended_copy_lid4(
            cscds, segments, list_identifier=draw(st.integers(0, 0xFFFFFFFF)) if usage != 3
            else 0, list_id_usage=usage, immed=draw(st.booleans()),
            g_sense=draw(st.booleans()), inline_data=inline))
    else:
        data = bytearray(xcopy.build_extended_copy(
            cscds, segments, list_identifier=draw(st.integers(0, 255)), list_id_usage=usage,
            inline_data=inline))
    for _ in range(draw(st.integers(0, 3))):  # mutate: flip bytes, then maybe cut
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return data, lid4


@settings(max_examples=int(os.environ.get("LIO_XCOPY_FUZZ_EXAMPLES", "300")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_extended_copy_parameter_lists_end_in_good_or_sense(lab, data):
    plist, lid4 = data.draw(plists(lab))
    length = data.draw(st.sampled_from([len(plist), 0, max(len(plist) - 1, 0), len(plist) + 7]))
    layout = xcopy.ExtendedCopyLid4 if lid4 else xcopy.ExtendedCopyLid1
    cdb = layout(parameter_list_length=length).encode()
    receiving = data.draw(st.sampled_from(lab.devices()))
    with contextlib.suppress(CheckCondition):  # the fuzzing may have unloaded it
        lab.tape.rewind()
    answer(receiving, cdb, plist)
    for job in lab.manager.jobs():  # a background copy (IMMED) has ended before the check
        job.stopped.result(timeout=30)
    lab.check_bounds()
