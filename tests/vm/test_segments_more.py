"""EXTENDED COPY segments 07h-0Fh and 13h through the real kernel with stock sg_raw
(SPC-4 6.4.6): verify CSCD with TEST UNIT READY (07h), the byte-offset copies (08h, 09h,
0Ah), the held-data forms (0Bh-0Fh) read back with RECEIVE COPY RESULTS 01h RECEIVE
DATA, and the tape image copy (13h) onto a second tape LUN; a type still refused
(14h) gets ILLEGAL REQUEST, UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import MiB, clear_unit_attention, extra_lun, run, sense_of
from plugins.vm_xcopy import cscd, fill_disk, read_disk, send, tell

from lio_xcopy.devices.awstape import AwsTape
from lio_xcopy.scsi import xcopy

BS = 512
SRC = 56 * MiB  # disk regions this module uses
DST = 57 * MiB


@pytest.fixture(scope="module")
def tape1(lab):
    """A second tape LUN beside the lab's, for 0Eh and 13h: (its LUN, kernel device)."""
    from lio_xcopy.control import provision

    work = Path(tempfile.mkdtemp(prefix="segs-", dir=lab.work))
    lun = provision.create_tape("segtape1", work / "tape1.aws", 64 * MiB)
    try:
        yield lun, extra_lun(lab, lun)
    finally:
        provision.delete("segtape1")
        clear_unit_attention(lab.disk_sg, lab.tape_sg)
        shutil.rmtree(work, ignore_errors=True)


def rcr(lab, sa: int, list_id: int, alloc: int, name: str) -> bytes:
    """RECEIVE COPY RESULTS with service action ``sa`` by sg_raw: its Data-In."""
    out = lab.work / name
    run("sg_raw", "-r", str(alloc), "-o", str(out), lab.disk_sg, "84", f"{sa:02x}",
        f"{list_id:02x}", *["00"] * 7, *alloc.to_bytes(4, "big").hex(" ").split(), "00", "00")
    return out.read_bytes()


def test_operating_parameters_list_every_supported_type_and_the_held_data_limit(lab):
    op = xcopy.OperatingParameters.parse(rcr(lab, 0x03, 0, 256, "segs-op.bin"))
    assert op.implemented_descriptor_types == (*range(0x14), 0xE4, 0xFE)  # 00h-13h, E4h, FEh
    assert op.held_data_limit == xcopy.HELD_DATA_LIMIT and op.held_data_granularity == 0
    # a type still refused: ILLEGAL REQUEST, UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE (26h/09h)
    plist = bytearray(xcopy.build_extended_copy([cscd(lab.tape_lun, 1, 0)], [xcopy.Locate(0, 0)]))
    plist[48] = 0x14  # register persistent reservation key
    p = send(lab, lab.disk_sg, bytes(plist), "segs-14h.plist", check=False)
    key, add = sense_of(p.stdout + p.stderr)
    assert key.lower() == "illegal request" and "unsupported segment descriptor" in add.lower()


def test_verify_and_the_byte_offset_copies(lab):
    data = os.urandom(64 * 1024)
    fill_disk(lab, SRC, data)
    fill_disk(lab, DST, b"\xab" * (64 * 1024))
    clear_unit_attention(lab.disk_sg, lab.tape_sg)
    first = SRC // BS
    plist = xcopy.build_extended_copy(
        [cscd(lab.disk_lun, 0, BS), cscd(lab.tape_lun, 1, 0)],
        [xcopy.VerifyCscd(0, tur=True), xcopy.VerifyCscd(1, tur=True), xcopy.Locate(1, 0),
         xcopy.BlockToStreamOffset(0, 1, 3000, first + 1, 100, 1000),  # 08h: from byte 612
         xcopy.WriteFilemarks(1, 1), xcopy.Locate(1, 0),
         xcopy.StreamToBlockOffset(1, 0, 3000, DST // BS + 2, 7, 1000),  # 09h: to byte 1031
         xcopy.BlockToBlockOffset(0, 0, 5000, first, DST // BS + 20, 13, 509)])  # 0Ah
    send(lab, lab.disk_sg, plist, "segs-offsets.plist")
    assert AwsTape.open_readonly(lab.tape_lun.path).dump_records() == [
        data[612 + i : 1612 + i] for i in (0, 1000, 2000)] + [None]
    assert tell(lab) == 3  # past the three records the 09h segment read
    want = bytearray(b"\xab" * (64 * 1024))
    want[1031 : 1031 + 3000] = data[612:3612]
    want[20 * BS + 509 : 20 * BS + 509 + 5000] = data[13:5013]
    assert read_disk(lab, DST, 64 * 1024) == bytes(want)


def test_held_data_of_0bh_to_0fh_read_back_with_receive_data(lab, tape1):
    lun1, _ = tape1
    data = os.urandom(8 * 1024)
    fill_disk(lab, SRC, data + bytes(56 * 1024))
    clear_unit_attention(lab.disk_sg, lab.tape_sg)
    first = SRC // BS
    plist = xcopy.build_extended_copy(
        [cscd(lab.disk_lun, 0, BS), cscd(lab.tape_lun, 1, 0), cscd(lun1, 1, 0)],
        [xcopy.Locate(1, 0), xcopy.BlockToStreamHeld(0, 1, 8, first, 4096),  # 0Bh
         xcopy.Locate(1, 0), xcopy.StreamToBlockHeld(1, 0, 8, DST // BS, 4096),  # 0Ch
         xcopy.BlockToBlockHeld(0, 0, 2, first + 8, DST // BS + 8),  # 0Dh
         xcopy.Locate(1, 0), xcopy.Locate(2, 0),
         xcopy.StreamToStreamHeld(1, 2, 4096, 4096, 4096),  # 0Eh
         xcopy.Locate(1, 0), xcopy.StreamToDiscardHeld(1, 4096, 4096)],  # 0Fh
        list_identifier=0x61, list_id_usage=xcopy.ListIdUsage.HOLD)
    send(lab, lab.disk_sg, plist, "segs-held.plist")
    held = data[:4096] * 2 + data[4096:5120] + data[:4096] * 2
    got = rcr(lab, 0x01, 0x61, 32 * 1024, "segs-held.bin")  # sg_raw ... 84 01 61 ...
    assert int.from_bytes(got[:4], "big") == len(held) == 17408
    assert got[4:] == held
    assert read_disk(lab, DST, 5120) == data[:4096] + data[4096:5120]
    assert AwsTape.open_readonly(lun1.path).dump_records() == [data[:4096]]
    status = xcopy.CopyStatus.parse(rcr(lab, 0x00, 0x61, 12, "segs-held-status.bin"))
    assert (status.status, status.segments_processed, status.held_data_discarded) == (
        xcopy.CopyCommandStatus.COMPLETED, 10, False)
    # all of it was returned: SPC-4 discards it, a second RECEIVE DATA has none
    assert rcr(lab, 0x01, 0x61, 32 * 1024, "segs-held-again.bin") == bytes(4)


def test_tape_image_copy_to_a_second_drive(lab, tape1):
    lun1, dev1 = tape1
    clear_unit_attention(lab.disk_sg, lab.tape_sg, str(dev1.sg))
    image = [b"A" * 1000, b"B" * 3000, None, b"C" * 10, None, None]
    t0, t1 = cscd(lab.tape_lun, 1, 0), cscd(lun1, 1, 0)
    build = [xcopy.Locate(0, 0)] + [xcopy.WriteFilemarks(0, 1) if o is None else
                              xcopy.EmbeddedToStream(0, o, len(o)) for o in image]
    send(lab, lab.tape_sg, xcopy.build_extended_copy([t0], build), "segs-image-src.plist")
    # COUNT 0: the whole medium up to end of data
    send(lab, lab.tape_sg, xcopy.build_extended_copy(
        [t0, t1], [xcopy.Locate(0, 0), xcopy.Locate(1, 0), xcopy.TapeImageCopy(0, 1)]),
        "segs-image.plist")
    assert AwsTape.open_readonly(lun1.path).dump_records() == image
    assert tell(lab) == len(image)  # the source at end of data
    # read back through st on the second drive: the first record, then the second
    back = lab.work / "segs-image-back.bin"
    run("mt", "-f", str(dev1.tape), "rewind")
    run("mt", "-f", str(dev1.tape), "setblk", "0")
    run("dd", f"if={dev1.tape}", f"of={back}", "bs=64k", "count=2")
    assert back.read_bytes() == b"A" * 1000 + b"B" * 3000
    # COUNT 1: up to and including the first filemark
    send(lab, lab.tape_sg, xcopy.build_extended_copy(
        [t0, t1], [xcopy.Locate(0, 0), xcopy.Locate(1, 0), xcopy.TapeImageCopy(0, 1, 1)]),
        "segs-image-count.plist")
    assert AwsTape.open_readonly(lun1.path).dump_records() == image[:3]
    assert tell(lab) == 3  # the source just past the first filemark
    run("mt", "-f", lab.nst, "rewind")
