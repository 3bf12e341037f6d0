"""Segments 05h, 06h, 07h, 10h-13h on a foreign tape drive reached through SG_IO
(SPC-4 6.4.6.9, 6.4.6.10, 6.4.6.18-6.4.6.20): the SSC-4 commands the port sends, and
the drive's own sense, verbatim, in FAILED SEGMENT DETAILS when it stops short. The
drive is our Tape behind the fake SG_IO transport of tests/plugins/foreign_lab.py."""

from __future__ import annotations

import contextlib
import os

import pytest
from plugins.foreign_lab import copy, opcodes, records, results, text_of

from lio_xcopy.copy.manager import CopyAborted
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.foreign import ForeignTape
from lio_xcopy.scsi import ssc
from lio_xcopy.scsi.sense import Asc, SenseData, SenseKey
from lio_xcopy.scsi.xcopy import (
    BlockToStream,
    EmbeddedToStream,
    Locate,
    Space,
    StreamToDiscard,
    TapeImageCopy,
    VerifyCscd,
    WriteFilemarks,
)

LABEL = b"HDR1" + bytes(76)


@pytest.fixture
def lab(request):
    """test_foreign's fake target host, our LUNs and a copy manager running inline."""
    return request.getfixturevalue("foreign_lab")


def drive_with(lab, *objs: bytes | None):
    """A foreign drive holding ``objs`` (None: a filemark), admitted for LUN ``src``."""
    drive = lab.tape("drive")
    for o in objs:
        if o is None:
            drive.write_filemarks(1)
        else:
            drive.write_record(DataBuffer.of(bytearray(o)), len(o))
    fake = lab.host.attach(3, drive)
    lab.groups["src"] = {text_of(drive)}
    return drive, fake


def stopped(lab, src, drive, segments, asc: int) -> SenseData:
    """COPY ABORTED with ``asc``; the drive's sense from FAILED SEGMENT DETAILS."""
    with pytest.raises(CopyAborted) as e:
        copy(lab, src, [(drive, {})], segments)
    assert (e.value.sense.key, e.value.sense.asc) == (SenseKey.COPY_ABORTED, asc)
    raw = results(lab, src)[1]
    assert raw is not None
    return SenseData.parse(raw)


def test_a_backup_job_on_a_foreign_drive(lab):
    data = os.urandom(8192)
    src = lab.disk("src", data=data)
    drive, fake = drive_with(lab, b"old" * 10, None)
    copy(lab, src, [(src, {}), (drive, {})],
         [Locate(1, 0), EmbeddedToStream(1, LABEL, 80), BlockToStream(0, 1, 16, 0, 4096),
          WriteFilemarks(1, 2)], list_id=1)
    assert records(drive) == [LABEL, data[:4096], data[4096:], None, None]
    (locate,) = opcodes(fake, 0x2B)
    assert locate[3:7] == bytes(4)  # LOCATE (10) to logical object 0
    (wfm,) = opcodes(fake, 0x10)
    assert wfm[2:5] == b"\x00\x00\x02"  # WRITE FILEMARKS (6), two


def test_discard_and_space_on_a_foreign_drive(lab):
    src = lab.disk("src")
    drive, fake = drive_with(lab, b"a" * 100, b"b" * 200, None, b"c" * 300)
    copy(lab, src, [(drive, {})], [Locate(0, 0), StreamToDiscard(0, 100, 100),
                                    Space(0, 1, 1)])
    assert drive.medium.position == 3
    (space,) = opcodes(fake, 0x11)
    assert space[1:5] == b"\x01\x00\x00\x01"  # SPACE (6), filemarks, count 1
    copy(lab, src, [(drive, {})], [Space(0, 1, -1), Space(0, 0, -1)], list_id=2)
    assert drive.medium.position == 1
    assert opcodes(fake, 0x11)[-2][1:5] == b"\x01\xff\xff\xff"  # filemarks, -1


def test_a_foreign_space_over_a_filemark_keeps_the_drive_sense(lab):
    src = lab.disk("src")
    drive, _ = drive_with(lab, b"a" * 10, None, b"b" * 10)
    s = stopped(lab, src, drive, [Locate(0, 0), Space(0, 0, 5)], Asc.FILEMARK_DETECTED)
    assert (s.key, s.filemark, s.information) == (SenseKey.NO_SENSE, True, 4)
    assert drive.medium.position == 2


def test_a_foreign_space_back_past_bop_and_a_locate_past_end_of_data(lab):
    src = lab.disk("src")
    drive, _ = drive_with(lab, b"a" * 10, b"b" * 10)
    s = stopped(lab, src, drive, [Space(0, 0, -5)], Asc.BEGINNING_OF_PARTITION_MEDIUM_DETECTED)
    assert (s.key, s.eom, s.information) == (SenseKey.NO_SENSE, True, 3)
    s = stopped(lab, src, drive, [Locate(0, 7)], Asc.END_OF_DATA_DETECTED)
    assert s.key == SenseKey.BLANK_CHECK
    assert drive.medium.position == 2


def test_foreign_filemarks_at_the_end_of_the_medium(lab):
    src = lab.disk("src")
    drive = lab.tape("drive", capacity=8192)
    lab.host.attach(3, drive)
    lab.groups["src"] = {text_of(drive)}
    with contextlib.suppress(ssc.EarlyWarning):
        drive.write_record(DataBuffer.of(bytearray(8000)), 8000)
    s = stopped(lab, src, drive, [WriteFilemarks(0, 1000)], Asc.END_OF_PARTITION_MEDIUM_DETECTED)
    assert (s.key, s.eom) == (SenseKey.VOLUME_OVERFLOW, True)
    assert 0 < s.information < 1000


def test_the_port_raises_the_stream_conditions(lab):
    drive, fake = drive_with(lab, b"a" * 10, None)
    port = ForeignTape(fake, drive.designators(), "drive")
    port.locate(0)
    with pytest.raises(ssc.FilemarkDetected) as e:
        port.space(0, 3)
    assert e.value.residue == 2 and e.value.raw_sense
    with pytest.raises(ssc.EndOfData):
        port.locate(9)
    port.write_filemarks(1, immed=True)
    assert drive.medium.position == 3


def test_verify_cscd_sends_test_unit_ready_and_relays_not_ready(lab):
    src = lab.disk("src")
    drive, fake = drive_with(lab, b"x" * 10)
    copy(lab, src, [(drive, {})], [VerifyCscd(0, tur=True)])
    assert opcodes(fake, 0x00)  # TEST UNIT READY went to the drive
    drive.unload_cartridge()
    s = stopped(lab, src, drive, [VerifyCscd(0, tur=True)], Asc.MEDIUM_NOT_PRESENT)
    assert (s.key, s.asc) == (SenseKey.NOT_READY, Asc.MEDIUM_NOT_PRESENT)


def test_a_tape_image_copy_onto_a_foreign_drive(lab):
    src = lab.tape("src")  # the receiving LUN the drive is admitted for
    for o in (b"r1" * 50, None, b"r2" * 70, None, None):
        if o is None:
            src.write_filemarks(1)
        else:
            src.write_record(DataBuffer.of(bytearray(o)), len(o))
    src.rewind()
    drive, fake = drive_with(lab)
    copy(lab, src, [(src, {}), (drive, {})], [TapeImageCopy(0, 1)])
    assert records(drive) == [b"r1" * 50, None, b"r2" * 70, None, None]
    assert len(opcodes(fake, 0x10)) == 3  # one WRITE FILEMARKS (6) per filemark
