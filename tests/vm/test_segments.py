"""A whole tape backup job in one EXTENDED COPY, through the real kernel with stock sg_raw:
locate (12h), an inline label record (04h), disk->tape (00h) and a closing filemark
(10h), read back with mt and dd through st; then stream->discard (06h) and space (11h),
and a space that meets a filemark (COPY ABORTED, the tape's sense in FAILED SEGMENT
DETAILS). SPC-4 6.4.6.8, 6.4.6.10, 6.4.6.18-6.4.6.20."""

from __future__ import annotations

import os
import re

from conftest import MiB, clear_unit_attention, run, sense_of
from plugins.vm_xcopy import cscd, read_disk, send, tell

from lio_xcopy.devices.awstape import AwsTape
from lio_xcopy.scsi import xcopy
from lio_xcopy.scsi.sense import SenseKey
from lio_xcopy.scsi.xcopy import BlockToStream, InlineToStream, Locate, Space, WriteFilemarks

BS = 512
RECORD = 64 * 1024
RECORDS = 16
SOURCE = 40 * MiB  # the disk region the job backs up
RESTORE = 48 * MiB  # where a restored record lands
LABEL = b"VOL1" + b"LIOXCOPY".ljust(76)  # an 80-byte volume label


def mt(lab, *args: str) -> str:
    return run("mt", "-f", lab.nst, *args).stdout




def backup_job(lab) -> bytes:
    """Run the one-command backup job; the bytes it backed up."""
    data = os.urandom(RECORD * RECORDS)
    src = lab.work / "segments-src.bin"
    src.write_bytes(data)
    run("dd", f"if={src}", f"of={lab.sd}", "bs=1M", f"seek={SOURCE // MiB}", "oflag=direct",
        "conv=notrunc")
    mt(lab, "rewind")
    mt(lab, "setblk", "0")
    run("dd", "if=/dev/zero", f"of={lab.nst}", "bs=32k", "count=3")  # a previous job's data
    clear_unit_attention(lab.disk_sg, lab.tape_sg)
    plist = xcopy.build_extended_copy(
        [cscd(lab.disk_lun, 0, BS), cscd(lab.tape_lun, 1, 0)],
        [Locate(1, 0), InlineToStream(1, 0, len(LABEL), len(LABEL)),
         BlockToStream(0, 1, len(data) // BS, SOURCE // BS, RECORD), WriteFilemarks(1, 1)],
        inline_data=LABEL + b"padding!")
    send(lab, lab.disk_sg, plist, "segments-job.plist")
    return data


def test_one_extended_copy_writes_label_data_and_filemark(lab):
    data = backup_job(lab)
    # read back through st: the label record, the data up to the filemark, and the
    # position just past the filemark
    mt(lab, "rewind")
    label, back = lab.work / "segments-label.bin", lab.work / "segments-back.bin"
    run("dd", f"if={lab.nst}", f"of={label}", "bs=64k", "count=1")
    assert label.read_bytes() == LABEL
    run("dd", f"if={lab.nst}", f"of={back}", "bs=64k")  # stops at the filemark
    assert back.read_bytes() == data
    assert tell(lab) == 1 + RECORDS + 1
    assert re.search(r"File number=1, block number=0", mt(lab, "status"))
    # the cartridge: label, 16 records, the filemark, then end of data
    objs = AwsTape.open_readonly(lab.tape_lun.path).dump_records()
    assert objs[0] == LABEL and objs[-1] is None and len(objs) == RECORDS + 2
    assert [len(o) for o in objs[1:-1]] == [RECORD] * RECORDS


def test_discard_and_space_then_restore_one_record(lab):
    data = backup_job(lab)
    # skip the label (06h), space over two records (11h), restore the next to the disk
    plist = xcopy.build_extended_copy(
        [cscd(lab.tape_lun, 1, 0), cscd(lab.disk_lun, 0, BS)],
        [Locate(0, 0), xcopy.StreamToDiscard(0, len(LABEL), len(LABEL)), Space(0, 0, 2),
         xcopy.StreamToBlock(0, 1, RECORD // BS, RESTORE // BS, RECORD)])
    send(lab, lab.disk_sg, plist, "segments-discard.plist")
    assert read_disk(lab, RESTORE, RECORD) == data[2 * RECORD : 3 * RECORD]
    assert tell(lab) == 4
    # space filemarks: to just past the job's filemark
    plist = xcopy.build_extended_copy([cscd(lab.tape_lun, 1, 0)],
                                      [Locate(0, 0), Space(0, 1, 1)])
    send(lab, lab.tape_sg, plist, "segments-space-fm.plist")
    assert tell(lab) == RECORDS + 2
    # spacing 100 blocks meets the filemark: COPY ABORTED in segment 1, and the
    # tape's own sense (FILEMARK, residue) in FAILED SEGMENT DETAILS
    plist = xcopy.build_extended_copy(
        [cscd(lab.tape_lun, 1, 0)], [Locate(0, 0), Space(0, 0, 100)],
        list_identifier=0x5E, list_id_usage=xcopy.ListIdUsage.HOLD)
    p = send(lab, lab.disk_sg, plist, "segments-space-over.plist", check=False)
    assert p.returncode != 0
    key, add = sense_of(p.stdout + p.stderr)
    assert key.lower() == "copy aborted" and "filemark" in add.lower(), (key, add)
    out = lab.work / "segments-fsd.bin"
    run("sg_raw", "-r", "256", "-o", str(out), lab.disk_sg, "84", "04", "5e", "00", "00",
        "00", "00", "00", "00", "00", "00", "00", "01", "00", "00", "00")
    fsd = xcopy.FailedSegmentDetails.parse(out.read_bytes())
    assert fsd is not None and fsd.sense is not None
    s = fsd.sense
    assert (s.key, s.filemark, s.information) == (SenseKey.NO_SENSE, True, 100 - RECORDS - 1)
    assert tell(lab) == RECORDS + 2  # past the filemark it met
    mt(lab, "rewind")
