"""A disk LUN over a device-mapper table whose middle MiB is the `error` target: real
EIO from the kernel becomes MEDIUM ERROR at the first bad LBA, through sd, sg and an
EXTENDED COPY to tape that stops exactly where the source failed."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import pytest
from conftest import MiB, dm_disk, run, sense_of

from lio_xcopy.control import provision
from lio_xcopy.devices.awstape import AwsTape
from lio_xcopy.scsi import xcopy
from lio_xcopy.scsi.sense import Asc, SenseKey
from lio_xcopy.scsi.xcopy import BlockToStream, IdentificationCscd
from lio_xcopy.sg import sgio

BS = 512
SIZE = 16 * MiB
BAD = 4 * MiB // BS  # sectors [BAD, BAD + BAD_LEN) fail with EIO
BAD_LEN = MiB // BS
WRITE_LBA = BAD + BAD_LEN // 2  # the write test's LBA: never read, so never cached


@dataclass
class Faulty:
    lun: provision.Lun
    dev: provision.KernelDevice
    data: bytes  # what the good sectors hold


@pytest.fixture(scope="module")
def faulty(lab):
    data = os.urandom(SIZE)
    sectors = SIZE // BS

    def table(loop: str) -> str:
        return (f"0 {BAD} linear {loop} 0\n{BAD} {BAD_LEN} error\n"
                f"{BAD + BAD_LEN} {sectors - BAD - BAD_LEN} linear {loop} {BAD + BAD_LEN}\n")

    # the kernel's first probes retry the bad range: on a loaded guest that took > 90 s
    with dm_disk(lab, "vmfaulty", data, table, timeout=300) as (lun, dev):
        yield Faulty(lun, dev, data)


def info_field(out: str) -> int | None:
    """The INFORMATION field as sg3_utils prints it (fixed format)."""
    m = re.search(r"Info fld=0x([0-9a-f]+)", out)
    return int(m.group(1), 16) if m else None


def be(n: int, width: int) -> list[str]:
    return n.to_bytes(width, "big").hex(" ").split()


def test_read_of_a_bad_range_is_unrecovered_read_error_at_its_first_lba(lab, faulty):
    sg, sd = str(faulty.dev.sg), str(faulty.dev.block)
    # READ (16) of 16 blocks from 8 before the bad range: the good 8 are read, then EIO
    p = run("sg_raw", "-r", str(16 * BS), sg, "88", "00", *be(BAD - 8, 8), *be(16, 4),
            "00", "00", check=False)
    out = p.stdout + p.stderr
    assert sense_of(out) == ("Medium Error", "Unrecovered read error"), out
    assert info_field(out) == BAD, out
    # through sd: the read fails, and sd names the sector the INFORMATION field gave
    p = run("dd", f"if={sd}", "of=/dev/null", "bs=8k", "count=1", "iflag=direct,skip_bytes",
            f"skip={(BAD - 8) * BS}", check=False)
    assert p.returncode != 0, p.stderr  # ENODATA: sd's BLK_STS_MEDIUM
    dmesg = run("dmesg").stdout
    assert re.search(rf"critical medium error, dev {os.path.basename(sd)}, sector {BAD}\b",
                     dmesg), dmesg[-3000:]
    # the good range around it still reads back what the image holds
    with open(sd, "rb", buffering=0) as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        f.seek((BAD - 8) * BS)
        assert f.read(8 * BS) == faulty.data[(BAD - 8) * BS : BAD * BS]


def test_a_fua_write_to_a_bad_range_is_write_error_at_its_lba(lab, faulty):
    src = lab.work / "fua.bin"
    src.write_bytes(os.urandom(8 * BS))
    # WRITE (10) with FUA: the block device's fdatasync meets the error target
    p = run("sg_raw", "-s", str(8 * BS), "-i", str(src), str(faulty.dev.sg), "2a", "08",
            *be(WRITE_LBA, 4), "00", *be(8, 2), "00", check=False)
    out = p.stdout + p.stderr
    assert sense_of(out) == ("Medium Error", "Write error"), out
    assert info_field(out) == WRITE_LBA, out


def test_a_copy_from_the_bad_disk_to_tape_stops_at_the_failing_segment(lab, faulty):
    """Three 3 MiB segments; the second meets the bad range at 4 MiB: COPY ABORTED in
    segment 1, FAILED SEGMENT DETAILS holds MEDIUM ERROR at LBA 8192, and the transfer
    count is the tape's bytes, which are the disk's first bytes."""
    run("mt", "-f", lab.nst, "rewind")
    seg = 3 * MiB // BS
    plist = xcopy.build_extended_copy(
        [IdentificationCscd(bytes.fromhex(faulty.lun.naa), 0, block_length=BS),
         IdentificationCscd(bytes.fromhex(lab.tape_lun.naa), 1, block_length=0)],
        [BlockToStream(0, 1, seg, i * seg, 65536) for i in range(3)],
        list_identifier=0x21, list_id_usage=xcopy.ListIdUsage.HOLD)
    with sgio.SgIoDevice(str(faulty.dev.sg)) as d:
        r = d.execute(xcopy.ExtendedCopyLid1(parameter_list_length=len(plist)).encode(),
                      data_out=plist, timeout=600, check=False)
        assert r.sense is not None, r.explain()
        assert (r.sense.key, r.sense.asc, r.sense.command_specific) == (
            SenseKey.COPY_ABORTED, Asc.UNRECOVERED_READ_ERROR, 1)
        fsd = d.execute(xcopy.ReceiveCopyResultsFailedSegmentDetails(
            list_identifier=0x21, allocation_length=255).encode(), data_in=255)
        cause = xcopy.FailedSegmentDetails.parse(fsd.data).sense
        assert (cause.key, cause.asc, cause.information) == (
            SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR, BAD)
        st = xcopy.CopyStatus.parse(d.execute(xcopy.ReceiveCopyResultsCopyStatus(
            list_identifier=0x21, allocation_length=12).encode(), data_in=12).data)
    on_tape = b"".join(r for r in AwsTape.open_readonly(lab.tape_lun.path).dump_records()
                       if r is not None)
    print(f"copy aborted in segment 1 after {st.transferred_bytes} bytes; "
          f"{len(on_tape)} bytes on tape")
    assert st.status == xcopy.CopyCommandStatus.COMPLETED_WITH_ERRORS
    assert st.segments_processed == 1
    assert st.transferred_bytes == len(on_tape)
    assert seg * BS < len(on_tape) <= BAD * BS
    assert on_tape == faulty.data[: len(on_tape)]
    assert lab.daemon.alive()
