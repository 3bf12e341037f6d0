"""Helpers of the VM tests that send EXTENDED COPY (with stock tools or SG_IO), read its
results and the lab disk back, read a cartridge's records, and a bounded wait."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from conftest import MiB, run

from lio_xcopy.devices.awstape import AwsTape
from lio_xcopy.scsi import xcopy
from lio_xcopy.scsi.xcopy import (
    IdentificationCscd,
)
from lio_xcopy.sg import sgio

BS = 512


def cscd(lun, pdt: int, block_length: int) -> IdentificationCscd:
    return IdentificationCscd(bytes.fromhex(lun.naa), pdt, block_length=block_length)


def send(lab, sg: str, plist: bytes, name: str, check: bool = True):
    """One EXTENDED COPY (LID1) with the parameter list from a file, by stock sg_raw."""
    path = lab.work / name
    path.write_bytes(plist)
    n = len(plist).to_bytes(4, "big").hex(" ").split()
    return run("sg_raw", "-t", "600", "-s", str(len(plist)), "-i", str(path), sg,
               "83", "00", "00", "00", "00", "00", "00", "00", "00", "00", *n, "00", "00",
               check=check)


def fill_disk(lab, offset: int, data: bytes) -> None:
    src = lab.work / "fill.bin"
    src.write_bytes(data)
    run("dd", f"if={src}", f"of={lab.sd}", "bs=1M", f"seek={offset // MiB}",
        "oflag=direct,seek_bytes" if offset % MiB else "oflag=direct", "conv=notrunc")


def read_disk(lab, offset: int, length: int) -> bytes:
    with open(lab.sd, "rb", buffering=0) as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        f.seek(offset)
        return f.read(length)


def wait_for(what: str, cond, timeout: float = 120.0, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(step)


def tell(lab) -> int:
    m = re.search(r"At block (\d+)\.", run("mt", "-f", lab.nst, "tell").stdout)
    assert m
    return int(m.group(1))


def extended_copy(sg: str, plist: bytes) -> sgio.Result:
    """One EXTENDED COPY (LID1) through SG_IO, whatever its status."""
    cdb = xcopy.ExtendedCopyLid1(parameter_list_length=len(plist)).encode()
    with sgio.SgIoDevice(sg) as dev:
        return dev.execute(cdb, data_out=plist, timeout=600, check=False)


def copy_results(sg: str, list_id: int) -> tuple[xcopy.CopyStatus, bytes | None]:
    """RECEIVE COPY RESULTS: the copy's status and its FAILED SEGMENT DETAILS sense."""
    with sgio.SgIoDevice(sg) as dev:
        st = dev.execute(xcopy.ReceiveCopyResultsCopyStatus(
            list_identifier=list_id, allocation_length=12).encode(), data_in=12).data
        fsd = dev.execute(xcopy.ReceiveCopyResultsFailedSegmentDetails(
            list_identifier=list_id, allocation_length=255).encode(), data_in=255).data
    details = xcopy.FailedSegmentDetails.parse(fsd)
    return xcopy.CopyStatus.parse(st), details.sense_data if details else None


def records_on(cartridge: Path) -> list[bytes]:
    """The records of an AWSTAPE cartridge, from its start (filemarks left out)."""
    with AwsTape.open_readonly(cartridge, strict=False) as t:
        return [r for r in t.dump_records() if r is not None]
