"""A disk over a temp file and the helpers that run its SBC-4 commands: Data-In bytes,
the fixed sense of a refusal, buffers scattered like a ring's."""

from __future__ import annotations

import os

import pytest

from lio_xcopy.devices.backing import BackingStore
from lio_xcopy.devices.base import Command, LunIdentity
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.disk import Disk
from lio_xcopy.scsi.errors import CheckCondition

BS = 512
BLOCKS = 64
IDENTITY = LunIdentity("disk0", "6001405abcdef0123456789abcdef012")


# --- helpers -------------------------------------------------------------------------------
def open_disk(path, blocks=BLOCKS, bs=BS, **kw) -> Disk:
    store = BackingStore(path, create=True, size=blocks * bs)
    return Disk(IDENTITY, store, bs, **kw)


def pattern(nbytes: int, seed: int = 1) -> bytes:
    return bytes((seed * 31 + i * 7 + (i >> 9)) & 0xFF for i in range(nbytes))


def scatter(nbytes: int, cuts=(1, 7, 500, 1024)) -> DataBuffer:
    """A buffer of several views of odd sizes, like a ring's scatter list."""
    views, left = [], nbytes
    for c in cuts:
        if left <= 0:
            break
        n = min(c, left)
        views.append(memoryview(bytearray(n)))
        left -= n
    if left > 0:
        views.append(memoryview(bytearray(left)))
    return DataBuffer(views)


def filled(data: bytes, cuts=(3, 509, 13)) -> DataBuffer:
    buf = scatter(len(data), cuts)
    assert buf.copy_in(data) == len(data)
    return buf


def run(d: Disk, cdb, data: DataBuffer | None = None) -> int:
    raw = cdb if isinstance(cdb, bytes) else cdb.encode()
    return d.handle(Command(raw, data if data is not None else DataBuffer()))


def data_in(d: Disk, cdb, length: int = 512) -> bytes:
    buf = DataBuffer.allocate(length)
    n = run(d, cdb, buf)
    return buf.tobytes(n)


def fails(d: Disk, cdb, data: DataBuffer | None = None) -> bytes:
    """Run a command that must end in CHECK CONDITION; return its fixed sense."""
    with pytest.raises(CheckCondition) as exc:
        run(d, cdb, data)
    return exc.value.sense.fixed()


def key_asc(sense: bytes) -> tuple[int, int, int]:
    return sense[2] & 0x0F, sense[12], sense[13]


def file_bytes(d: Disk) -> bytes:
    return os.pread(d.store.fd, d.store.size, 0)
