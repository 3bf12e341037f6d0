"""An initiator whose expected data transfer length is not the CDB's, over the simulated
kernel: the buffer TCMU maps is that expected length (``se_cmd->data_length``), and the
only residual userspace can report is a Data-In underflow, through ``read_len``."""

from __future__ import annotations

import pytest
from plugins.tcmu_ring import SimulatedKernel

from lio_xcopy.devices.backing import BackingStore
from lio_xcopy.devices.base import LunIdentity
from lio_xcopy.devices.disk import Disk
from lio_xcopy.scsi import sbc
from lio_xcopy.scsi.sense import CHECK_CONDITION, GOOD, SenseData, SenseKey
from lio_xcopy.tcmu.daemon import TcmuDevice
from lio_xcopy.tcmu.ring import FLAG_CAP_READ_LEN, CommandRing

BS = 512
BLOCKS = 32
CONTENT = bytes((i * 7 + i // BS) & 0xFF for i in range(BLOCKS * BS))


@pytest.fixture(params=[0xF, 0xF & ~FLAG_CAP_READ_LEN], ids=["read_len", "no_read_len"])
def lun(request, tmp_path):
    kernel = SimulatedKernel(data_pages=16, flags=request.param)
    path = tmp_path / "d.img"
    path.write_bytes(CONTENT)
    disk = Disk(LunIdentity("d0", "6001405aaaaaaaaaaaaaaaaaaaaaaaa1"), BackingStore(path), BS)
    dev = TcmuDevice("d0", kernel.uio_fd, CommandRing(kernel.view), disk)
    yield kernel, dev, path
    dev.close()
    kernel.close()


def _run(kernel, dev, cdb, *, data_in_len: int = 0, data_out: bytes = b""):
    kernel.submit(cdb.encode(), data_out=data_out, data_in_len=data_in_len)
    dev.service()
    (c,) = kernel.reap()
    return c


def _mismatch(c) -> None:
    """INVALID FIELD IN COMMAND INFORMATION UNIT, no field pointer, nothing sent."""
    assert c.status == CHECK_CONDITION
    sense = SenseData.parse(c.sense)
    assert (sense.key, sense.asc) == (SenseKey.ILLEGAL_REQUEST, 0x0E03)
    assert sense.sense_key_specific is None
    assert c.data_in == b""


def test_read_underflow_sends_the_cdbs_blocks_and_their_length(lun):
    kernel, dev, _ = lun
    c = _run(kernel, dev, sbc.Read10(lba=4, transfer_length=2), data_in_len=5 * BS)
    assert c.status == GOOD
    if kernel.view[2] & FLAG_CAP_READ_LEN:  # the kernel reports 3 blocks of residual
        assert c.read_len == 2 * BS and c.data_in == CONTENT[4 * BS : 6 * BS]
    else:  # an old kernel copies the whole buffer: the rest is zeros
        assert c.read_len is None
        assert c.data_in == CONTENT[4 * BS : 6 * BS] + bytes(3 * BS)


def test_read_overflow_moves_nothing(lun):
    """fileio would send 3 blocks and an overflow residual; TCMU cannot report one."""
    kernel, dev, _ = lun
    _mismatch(_run(kernel, dev, sbc.Read16(lba=0, transfer_length=4), data_in_len=3 * BS))


@pytest.mark.parametrize("nbytes", [BS, 3 * BS], ids=["overflow", "underflow"])
def test_write_with_another_length_writes_nothing(lun, nbytes):
    kernel, dev, path = lun
    c = _run(kernel, dev, sbc.Write10(lba=8, transfer_length=2), data_out=b"\xee" * nbytes)
    _mismatch(c)
    assert path.read_bytes() == CONTENT


def test_write_with_the_cdbs_length_writes(lun):
    kernel, dev, path = lun
    c = _run(kernel, dev, sbc.Write10(lba=8, transfer_length=2), data_out=b"\xee" * 2 * BS)
    assert c.status == GOOD
    assert path.read_bytes() == CONTENT[: 8 * BS] + b"\xee" * 2 * BS + CONTENT[10 * BS :]
