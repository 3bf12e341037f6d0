"""No byte of an earlier command's data reaches an initiator: over the simulated kernel,
whose data area keeps what earlier commands left in it, as the real one does."""

from __future__ import annotations

import pytest
from plugins.tcmu_ring import SimulatedKernel, complete_from_worker

from lio_xcopy.copy.manager import CopyManager
from lio_xcopy.devices.backing import BackingStore
from lio_xcopy.devices.base import LunIdentity
from lio_xcopy.devices.disk import Disk
from lio_xcopy.devices.tape import Tape
from lio_xcopy.scsi import sbc, spc, ssc, xcopy
from lio_xcopy.scsi.sense import CHECK_CONDITION, GOOD
from lio_xcopy.tcmu.daemon import TcmuDevice
from lio_xcopy.tcmu.ring import FLAG_CAP_READ_LEN, CommandRing

BS = 512
BUFFER = 4096
SECRET = b"another host's data " * 205  # what a READ leaves in the data area


def _disk(tmp_path) -> Disk:
    path = tmp_path / "d.img"
    path.write_bytes(SECRET[: 64 * BS].ljust(64 * BS, b"#"))
    return Disk(LunIdentity("d0", "6001405aaaaaaaaaaaaaaaaaaaaaaaa1"),
                BackingStore(path), BS)


@pytest.fixture(params=[0xF, 0xF & ~FLAG_CAP_READ_LEN], ids=["read_len", "no_read_len"])
def lun(request, tmp_path):
    """A disk over a ring with one data page: every command reuses the last one's."""
    kernel = SimulatedKernel(cmdr_size=4096, data_pages=1, flags=request.param)
    disk = _disk(tmp_path)
    CopyManager().register(disk)
    dev = TcmuDevice("d0", kernel.uio_fd, CommandRing(kernel.view), disk)
    yield kernel, dev
    dev.close()
    kernel.close()


def _run(kernel, dev, cdb: bytes, data_in_len: int = BUFFER):
    kernel.submit(cdb, data_in_len=data_in_len, scatter=False)
    if not dev.service():  # a command on the LUN's worker
        complete_from_worker(dev, 1)
    (c,) = kernel.reap()
    return c


def _read_secret(kernel, dev) -> None:
    c = _run(kernel, dev, sbc.Read10(lba=0, transfer_length=BUFFER // BS).encode())
    assert c.status == GOOD and c.data_in == SECRET[:BUFFER]


PROBES = {
    "INQUIRY, allocation length 0": spc.Inquiry(allocation_length=0).encode(),
    "MODE SENSE (6), allocation length 0":
        spc.ModeSense6(page_code=spc.ALL_PAGES, allocation_length=0).encode(),
    "RECEIVE COPY RESULTS, allocation length 0":
        xcopy.ReceiveCopyResultsOperatingParameters(allocation_length=0).encode(),
    "REQUEST SENSE, allocation length 0": spc.RequestSense(allocation_length=0).encode(),
    "READ (10) of 0 blocks": sbc.Read10(lba=0, transfer_length=0).encode(),
    "TEST UNIT READY with a Data-In buffer": spc.TestUnitReady().encode(),
}


@pytest.mark.parametrize("cdb", PROBES.values(), ids=PROBES.keys())
def test_a_command_that_produces_nothing_sends_no_stale_byte(lun, cdb):
    kernel, dev = lun
    _read_secret(kernel, dev)
    c = _run(kernel, dev, cdb)
    assert c.status == GOOD
    # the kernel copies the whole buffer back when read_len is 0: it must be zeros
    assert c.data_in == bytes(len(c.data_in)) and len(c.data_in) in (0, BUFFER)


def test_a_short_answer_reports_its_length_and_sends_nothing_past_it(lun):
    kernel, dev = lun
    _read_secret(kernel, dev)
    c = _run(kernel, dev, spc.Inquiry(allocation_length=36).encode())
    assert c.status == GOOD and c.data_in[:8] != bytes(8)
    if kernel.view[2] & FLAG_CAP_READ_LEN:
        assert c.read_len == 36 and len(c.data_in) == 36  # the transport reports 4060 resid
    else:  # an old kernel copies it all: the rest is zeros
        assert c.data_in[36:] == bytes(BUFFER - 36)


def test_a_write_is_written_and_answered_good(lun, tmp_path):
    kernel, dev = lun
    data = b"w" * BUFFER
    kernel.submit(sbc.Write10(lba=8, transfer_length=BUFFER // BS).encode(), data_out=data,
                  scatter=False)
    dev.service()
    (c,) = kernel.reap()
    assert c.status == GOOD
    assert (tmp_path / "d.img").read_bytes()[8 * BS : 8 * BS + BUFFER] == data


DATA_OUT_AS_DATA_IN = {
    # BYTCHK 01b compares the buffer with the medium: the earlier READ's bytes are the
    # medium's, so it ends GOOD and the kernel copies the whole buffer back
    "VERIFY (10), BYTCHK 01b": sbc.Verify10(bytchk=1, lba=0,
                                          verification_length=BUFFER // BS).encode(),
    "VERIFY (16), BYTCHK 11b": sbc.Verify16(bytchk=3, lba=0,
                                          verification_length=1).encode(),
}


@pytest.mark.parametrize("cdb", DATA_OUT_AS_DATA_IN.values(), ids=DATA_OUT_AS_DATA_IN.keys())
def test_a_data_out_command_sent_with_a_data_in_buffer_gets_zeros_back(lun, cdb):
    """The initiator names the direction (SG_IO, and LIO passes it on unchecked): a
    command that carries Data-Out sent with a Data-In buffer finds the data area's
    earlier contents there. The bytes it gets back are never those."""
    kernel, dev = lun
    _read_secret(kernel, dev)
    length = BUFFER if cdb[0] == 0x2F else BS
    c = _run(kernel, dev, cdb, length)
    assert c.status == GOOD
    assert c.data_in == bytes(len(c.data_in))


def test_check_condition_sends_nothing(lun):
    kernel, dev = lun
    _read_secret(kernel, dev)
    c = _run(kernel, dev, sbc.Read10(lba=1 << 20, transfer_length=8).encode())
    assert c.status == CHECK_CONDITION and c.data_in == b""


def test_a_short_tape_read_sends_only_the_record(tmp_path):
    """READ (6) of a 100-byte record into 4096 bytes: CHECK CONDITION with ILI and the
    record; the 3996 bytes after it are never the data area's earlier contents."""
    kernel = SimulatedKernel(cmdr_size=4096, data_pages=1)
    tape = Tape(LunIdentity("t0", "6001405bbbbbbbbbbbbbbbbbbbbbbbb1"), tmp_path / "t.aws",
                1 << 20)
    dev = TcmuDevice("t0", kernel.uio_fd, CommandRing(kernel.view), tape)
    try:
        c = _run(kernel, dev, spc.TestUnitReady().encode(), 0)  # the power-on UA
        kernel.submit(ssc.Write6(transfer_length=100).encode(), data_out=b"r" * 100,
                      scatter=False)
        dev.service()
        assert kernel.reap()[0].status == GOOD
        kernel.submit(ssc.Write6(transfer_length=BUFFER).encode(), data_out=SECRET[:BUFFER],
                      scatter=False)  # leaves SECRET in the page
        dev.service()
        assert kernel.reap()[0].status == GOOD
        c = _run(kernel, dev, bytes([0x01, 0, 0, 0, 0, 0]), 0)  # REWIND
        assert c.status == GOOD
        c = _run(kernel, dev, ssc.Read6(transfer_length=BUFFER).encode())
        assert c.status == CHECK_CONDITION and c.data_in == b"r" * 100
    finally:
        dev.close()
        kernel.close()
