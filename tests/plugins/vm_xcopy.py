"""Helpers of the VM tests that send EXTENDED COPY with stock tools and read the lab
disk back, and a bounded wait."""

from __future__ import annotations

import os
import re
import time

from conftest import MiB, run

from lio_xcopy.scsi.xcopy import (
    IdentificationCscd,
)

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
