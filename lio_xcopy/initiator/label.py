"""The label record a backup job writes at the start of its tape file.

A backup whose copy manager runs segment types 04h, 10h and 12h (SPC-4 6.4.6.8,
6.4.6.18, 6.4.6.20) writes, in the same EXTENDED COPY as its data, one record before the
data: this label. It is text, so that ``dd if=/dev/nst0 bs=64k count=1`` shows it, one
``key: value`` line each after a first line naming the format, padded with zero bytes
to exactly one block of the source disk::

    LIO-XCOPY BACKUP LABEL 1
    job: 12
    source: naa.6001405bfc642391715435c82fdd22ab
    first-block: 0
    blocks: 65536
    block-size: 512
    record: 65536
    written: 2026-12-05T00:10:00Z

One disk block, so that a restore can read the label into the first block of the range
it restores (then overwritten by the data): the copy manager's digest of the restore
then covers the same bytes as the backup's, label and data, and a match verifies both.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass

from lio_xcopy.errors import LioXcopyError

MAGIC = b"LIO-XCOPY BACKUP LABEL 1\n"


class LabelError(LioXcopyError):
    """Bytes that are not a backup label of this format."""


@dataclass(frozen=True, slots=True)
class BackupLabel:
    """What the label says about its tape file."""

    job: int
    source_naa: str  # hex, as the catalog keeps it
    first_block: int
    blocks: int
    block_size: int
    record: int
    written: float

    def encode(self) -> bytes:
        """The record: the text, zero padded to one disk block."""
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.written))
        text = MAGIC + (
            f"job: {self.job}\nsource: naa.{self.source_naa}\n"
            f"first-block: {self.first_block}\nblocks: {self.blocks}\n"
            f"block-size: {self.block_size}\nrecord: {self.record}\nwritten: {when}\n"
        ).encode()
        if len(text) > self.block_size:
            raise LabelError(f"a label of {len(text)} bytes does not fit a "
                             f"{self.block_size}-byte block")
        return text + bytes(self.block_size - len(text))


def parse_label(data: bytes) -> BackupLabel:
    """Decode a label record (its zero padding ignored)."""
    if not data.startswith(MAGIC):
        raise LabelError("not a lio-xcopy backup label (first line "
                         f"{data[:len(MAGIC)].rstrip(bytes(1))!r})")
    try:
        lines = data[len(MAGIC):].rstrip(b"\x00").decode("ascii").splitlines()
        f = dict(line.split(": ", 1) for line in lines)
        written = calendar.timegm(time.strptime(f["written"], "%Y-%m-%dT%H:%M:%SZ"))
        return BackupLabel(int(f["job"]), f["source"].removeprefix("naa."),
                           int(f["first-block"]), int(f["blocks"]), int(f["block-size"]),
                           int(f["record"]), written)
    except (UnicodeDecodeError, ValueError, KeyError) as e:
        raise LabelError(f"a damaged backup label: {e}") from e
