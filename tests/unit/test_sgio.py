"""SG_IO on the host, without a SCSI device: the header layout, a simulated kernel behind
the ioctl, sense in words, and the sysfs counters over a fake tree."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lio_xcopy.errors import LioXcopyError
from lio_xcopy.scsi import sbc, spc
from lio_xcopy.scsi.sense import (
    Asc,
    SenseData,
    SenseKey,
    field_pointer,
    progress_indication,
    segment_pointer,
    sense_key_specific_words,
)
from lio_xcopy.sg import _sg_h, sgio
from lio_xcopy.sg import sysfs as sg_sysfs

# --- struct sg_io_hdr ------------------------------------------------------------------------


class CSgIoHdr(ctypes.Structure):
    """The kernel header transcribed as C types: ctypes applies the platform ABI."""

    _fields_ = [
        ("interface_id", ctypes.c_int), ("dxfer_direction", ctypes.c_int),
        ("cmd_len", ctypes.c_ubyte), ("mx_sb_len", ctypes.c_ubyte),
        ("iovec_count", ctypes.c_ushort), ("dxfer_len", ctypes.c_uint),
        ("dxferp", ctypes.c_void_p), ("cmdp", ctypes.c_void_p), ("sbp", ctypes.c_void_p),
        ("timeout", ctypes.c_uint), ("flags", ctypes.c_uint), ("pack_id", ctypes.c_int),
        ("usr_ptr", ctypes.c_void_p), ("status", ctypes.c_ubyte),
        ("masked_status", ctypes.c_ubyte), ("msg_status", ctypes.c_ubyte),
        ("sb_len_wr", ctypes.c_ubyte), ("host_status", ctypes.c_ushort),
        ("driver_status", ctypes.c_ushort), ("resid", ctypes.c_int),
        ("duration", ctypes.c_uint), ("info", ctypes.c_uint),
    ]


#: Offsets on x86_64 (pahole of struct sg_io_hdr): 4 pad bytes before usr_ptr and at the end.
X86_64_OFFSETS = {
    "interface_id": 0, "dxfer_direction": 4, "cmd_len": 8, "mx_sb_len": 9, "iovec_count": 10,
    "dxfer_len": 12, "dxferp": 16, "cmdp": 24, "sbp": 32, "timeout": 40, "flags": 44,
    "pack_id": 48, "usr_ptr": 56, "status": 64, "masked_status": 65, "msg_status": 66,
    "sb_len_wr": 67, "host_status": 68, "driver_status": 70, "resid": 72, "duration": 76,
    "info": 80,
}


def test_header_is_88_bytes_on_64_bit_and_64_on_32_bit():
    assert sgio.hdr_struct(8).size == 88
    assert sgio.hdr_struct(4).size == 64
    assert sgio.hdr_struct().size == ctypes.sizeof(CSgIoHdr)


def _distinct() -> sgio.SgIoHdr:
    """Every field a different value whose bytes cannot be confused."""
    return sgio.SgIoHdr(
        interface_id=0x53, dxfer_direction=-3, cmd_len=0x10, mx_sb_len=0xFC,
        iovec_count=0x0102, dxfer_len=0x03040506, dxferp=0x1112131415161718,
        cmdp=0x2122232425262728, sbp=0x3132333435363738, timeout=0x41424344,
        flags=0x45464748, pack_id=-2, usr_ptr=0x5152535455565758, status=0x61,
        masked_status=0x62, msg_status=0x63, sb_len_wr=0x64, host_status=0x6566,
        driver_status=0x6768, resid=-5, duration=0x71727374, info=0x75767778,
    )


@pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8, reason="LP64 layout")
def test_field_offsets_match_the_kernel_header():
    hdr = _distinct()
    raw = hdr.pack()
    c = CSgIoHdr.from_buffer_copy(raw)
    for name, offset in X86_64_OFFSETS.items():
        assert getattr(CSgIoHdr, name).offset == offset, name
        assert getattr(c, name) == getattr(hdr, name), name
    assert ctypes.sizeof(CSgIoHdr) == 88


@pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8, reason="LP64 layout")
def test_golden_bytes():
    raw = sgio.SgIoHdr(
        dxfer_direction=sgio.SG_DXFER_FROM_DEV, cmd_len=6, mx_sb_len=32, dxfer_len=96,
        dxferp=0x1000, cmdp=0x2000, sbp=0x3000, timeout=20000,
    ).pack()
    assert raw.hex() == (
        "53000000" "fdffffff" "06" "20" "0000" "60000000"
        "0010000000000000" "0020000000000000" "0030000000000000"
        "204e0000" "00000000" "00000000" "00000000" "0000000000000000"
        "00" "00" "00" "00" "0000" "0000" "00000000" "00000000" "00000000" "00000000"
    )


u8, u16 = st.integers(0, 0xFF), st.integers(0, 0xFFFF)
u32, i32 = st.integers(0, 0xFFFFFFFF), st.integers(-(1 << 31), (1 << 31) - 1)
ptr = st.integers(0, (1 << (8 * ctypes.sizeof(ctypes.c_void_p))) - 1)


@given(st.builds(sgio.SgIoHdr, i32, i32, u8, u8, u16, u32, ptr, ptr, ptr, u32, u32, i32, ptr,
                 u8, u8, u8, u8, u16, u16, i32, u32, u32))
def test_pack_unpack_round_trip(hdr):
    raw = hdr.pack()
    assert len(raw) == ctypes.sizeof(CSgIoHdr)
    assert sgio.SgIoHdr.unpack(raw) == hdr
    c = CSgIoHdr.from_buffer_copy(raw)
    assert c.resid == hdr.resid and c.info == hdr.info and c.pack_id == hdr.pack_id


# --- a simulated kernel behind the ioctl -------------------------------------------------------
@dataclass
class Reply:
    status: int = 0
    data: bytes = b""
    sense: bytes = b""
    host_status: int = 0
    driver_status: int = 0
    duration: int = 3
    resid: int | None = None  # default: dxfer_len - len(data) for Data-In


@dataclass
class Seen:
    cdb: bytes
    direction: int
    dxfer_len: int
    data_out: bytes
    timeout: int
    dxferp: int
    mx_sb_len: int


class FakeKernel:
    """Plays the sg driver: reads the header and the buffers it points at, asks a
    handler what the device answers, writes data, sense and status back."""

    def __init__(self, handler: Callable[[Seen], Reply]):
        self.handler = handler
        self.seen: list[Seen] = []
        self.error: OSError | None = None

    def __call__(self, fd: int, request: int, buf: bytearray, mutate: bool = True) -> int:
        assert mutate and isinstance(buf, bytearray)
        if request == sgio.SG_GET_VERSION_NUM:
            buf[:4] = (30536).to_bytes(4, "little")
            return 0
        assert request == sgio.SG_IO
        if self.error:
            raise self.error
        hdr = sgio.SgIoHdr.unpack(buf)
        assert hdr.interface_id == ord("S")
        data_out = b""
        if hdr.dxfer_direction == sgio.SG_DXFER_TO_DEV:
            data_out = ctypes.string_at(hdr.dxferp, hdr.dxfer_len)
        seen = Seen(ctypes.string_at(hdr.cmdp, hdr.cmd_len), hdr.dxfer_direction,
                    hdr.dxfer_len, data_out, hdr.timeout, hdr.dxferp, hdr.mx_sb_len)
        self.seen.append(seen)
        r = self.handler(seen)
        n = 0
        if hdr.dxfer_direction == sgio.SG_DXFER_FROM_DEV:
            n = min(len(r.data), hdr.dxfer_len)
            ctypes.memmove(hdr.dxferp, r.data, n)
        sense = r.sense[: min(hdr.mx_sb_len, 96)]
        if sense:
            ctypes.memmove(hdr.sbp, sense, len(sense))
        hdr.status, hdr.masked_status = r.status, r.status >> 1
        hdr.sb_len_wr = len(sense)
        hdr.host_status, hdr.driver_status = r.host_status, r.driver_status
        if r.resid is not None:
            hdr.resid = r.resid
        elif hdr.dxfer_direction == sgio.SG_DXFER_FROM_DEV:
            hdr.resid = hdr.dxfer_len - n
        hdr.duration = r.duration
        hdr.info = 1 if (r.status or r.host_status or r.driver_status) else 0
        buf[:] = hdr.pack()
        return 0


def lio_like_lun(seen: Seen) -> Reply:
    """A disk as lio-xcopy serves it: INQUIRY, VPD 00h/80h/83h, READ CAPACITY (16)."""
    cdb = seen.cdb
    if cdb[0] == 0x12 and not cdb[1] & 1:
        return Reply(data=spc.StandardInquiry(0, product="lio-xcopy disk").encode())
    if cdb[0] == 0x12:
        page = cdb[2]
        if page == 0x00:
            return Reply(data=spc.vpd_supported_pages(0, [0x80, 0x83]))
        if page == 0x80:
            return Reply(data=spc.vpd_unit_serial(0, SERIAL))
        if page == 0x83:
            return Reply(data=spc.vpd_device_identification(0, spc.lun_designators(SERIAL)))
        return Reply(status=2, sense=SenseData(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB,
                                               sense_key_specific=field_pointer(2)).fixed())
    if cdb[0] == 0x9E and cdb[1] & 0x1F == 0x10:
        return Reply(data=sbc.read_capacity_16_data(196607, 512))
    if cdb[0] == 0x00:
        return Reply()
    return Reply(status=2, sense=SenseData(SenseKey.ILLEGAL_REQUEST,
                                           Asc.INVALID_COMMAND_OPERATION_CODE,
                                           sense_key_specific=field_pointer(0)).fixed())


SERIAL = "0b7c4bd4-6a3e-4c1f-9a40-5f1e2d3c4b5a"


@pytest.fixture
def kernel(monkeypatch) -> FakeKernel:
    k = FakeKernel(lio_like_lun)
    monkeypatch.setattr(_sg_h, "ioctl", k)
    return k


@pytest.fixture
def dev(kernel):
    # /dev/null: a character device every host has; the fake kernel answers its ioctls
    with sgio.SgIoDevice("/dev/null") as d:
        yield d


def test_inquiry_through_sg_io(dev, kernel):
    inq = dev.inquiry()
    assert (inq.vendor, inq.product, inq.device_type, inq.peripheral_qualifier) == (
        "LIO-ORG", "lio-xcopy disk", 0, 0)
    seen = kernel.seen[-1]
    assert seen.cdb == bytes.fromhex("12 00 00 00 ff 00")
    assert (seen.direction, seen.dxfer_len) == (sgio.SG_DXFER_FROM_DEV, 255)
    assert seen.mx_sb_len == sgio.SENSE_BUFFER_LENGTH
    assert seen.dxferp % mmap.PAGESIZE == 0
    assert dev.peripheral_device_type() == 0


def test_data_in_is_trimmed_by_resid(dev):
    r = dev.execute(bytes.fromhex("12 00 00 00 ff 00"), data_in=255)
    want = spc.StandardInquiry(0, product="lio-xcopy disk").encode()
    assert r.data == want
    assert r.resid == 255 - len(want) and r.transferred == len(want) and r.requested == 255
    assert r.status == 0 and r.sense is None and r.good
    assert r.duration == pytest.approx(0.003)
    assert dev.bytes_in == len(want) and dev.bytes_out == 0 and dev.commands == 1


def test_vpd_naa_serial_capacity(dev):
    assert dev.naa() == spc.naa_ieee_registered_extended(SERIAL)
    assert dev.naa().hex().startswith("6001405")
    assert dev.unit_serial_number() == SERIAL
    kinds = {(d.designator_type, d.association) for d in dev.device_identification()}
    assert (3, 0) in kinds and (1, 0) in kinds
    cap = dev.read_capacity16()
    assert (cap.last_lba, cap.block_length, cap.blocks, cap.size) == (
        196607, 512, 196608, 96 << 20)
    dev.test_unit_ready()


def test_naa_is_none_without_an_lu_naa_designator(kernel, dev):
    only_t10 = spc.vpd_device_identification(0, [spc.Designator(2, 1, b"LIO-ORG x"),
                                                 spc.Designator(1, 3, b"\x50" * 8,
                                                                association=1)])
    kernel.handler = lambda s: Reply(data=only_t10)
    assert dev.naa() is None


def test_long_vpd_page_is_read_again_at_full_length(kernel, dev):
    page = spc.vpd_page(0, 0x83, b"".join(
        spc.Designator(2, 1, b"LIO-ORG %03d" % i + b"x" * 30).encode() for i in range(12)))
    assert len(page) > 255

    def handler(seen: Seen) -> Reply:
        alloc = int.from_bytes(seen.cdb[3:5], "big")
        return Reply(data=page[:alloc])

    kernel.handler = handler
    assert len(dev.device_identification()) == 12
    assert [int.from_bytes(s.cdb[3:5], "big") for s in kernel.seen] == [255, len(page)]


def test_data_out_reaches_the_kernel_and_counts(dev, kernel):
    kernel.handler = lambda s: Reply()
    payload = bytearray(os.urandom(4096))
    cdb = sbc.Write10(lba=8, transfer_length=8).encode()
    r = dev.execute(cdb, data_out=payload, timeout=2.5)
    seen = kernel.seen[-1]
    assert (seen.direction, seen.dxfer_len, seen.data_out) == (
        sgio.SG_DXFER_TO_DEV, 4096, bytes(payload))
    assert seen.timeout == 2500
    assert seen.dxferp % mmap.PAGESIZE == 0  # page-aligned: one segment per page
    assert r.data == b"" and dev.bytes_out == 4096
    dev.execute(cdb, data_out=bytes(payload))  # immutable buffers are copied
    assert kernel.seen[-1].data_out == bytes(payload)


def test_no_data_command_has_direction_none(dev, kernel):
    dev.test_unit_ready()
    seen = kernel.seen[-1]
    assert (seen.direction, seen.dxfer_len, seen.dxferp) == (sgio.SG_DXFER_NONE, 0, 0)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"cdb": b"\x00" * 5}, "6 to 16"),
        ({"cdb": b"\x00" * 17}, "6 to 16"),
        ({"cdb": bytes.fromhex("28 00 00 00 00 00")}, "10-byte command"),
        ({"cdb": bytes(10), "data_in": 0}, "6-byte command"),
        ({"data_in": 512, "data_out": b"x"}, "one way"),
        ({"data_in": -1}, "0 to"),
        ({"data_in": True}, "length in bytes"),
        ({"data_in": 1 << 32}, "0 to"),
        ({"data_out": "text"}, "must be bytes"),
        ({"timeout": 0}, "positive"),
        ({"timeout": -1}, "positive"),
        ({"timeout": float("nan")}, "positive"),
    ],
)
def test_direction_and_length_validation(dev, kernel, kwargs, words):
    args = {"cdb": bytes(6), **kwargs}
    with pytest.raises(sgio.SgIoUsageError, match=words) as e:
        dev.execute(**args)
    assert isinstance(e.value, ValueError) and isinstance(e.value, LioXcopyError)
    assert kernel.seen == []


def test_timeout_is_rounded_up_and_clamped(dev, kernel):
    kernel.handler = lambda s: Reply()
    dev.execute(bytes(6), timeout=0.0001)
    dev.execute(bytes(6), timeout=10**9)
    assert [s.timeout for s in kernel.seen] == [1, sgio.MAX_TIMEOUT_MS]


def test_empty_data_out_is_a_no_data_command(dev, kernel):
    kernel.handler = lambda s: Reply()
    dev.execute(bytes(6), data_out=b"")
    assert kernel.seen[-1].direction == sgio.SG_DXFER_NONE


# --- CHECK CONDITION and transport errors ------------------------------------------------------
def check(sense: SenseData, *, descriptor: bool = False) -> Callable[[Seen], Reply]:
    return lambda s: Reply(status=2, sense=sense.encode(descriptor=descriptor), driver_status=0x08)


def test_check_condition_raises_with_words_and_field_pointer(dev, kernel):
    kernel.handler = check(SenseData(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB,
                                     sense_key_specific=field_pointer(1, 7)))
    cdb = bytes.fromhex("28 e0 00 00 00 00 00 00 01 00")
    with pytest.raises(sgio.ScsiCommandError) as e:
        dev.execute(cdb, data_in=512)
    err = e.value
    assert isinstance(err, LioXcopyError)
    assert err.key == SenseKey.ILLEGAL_REQUEST and err.asc == Asc.INVALID_FIELD_IN_CDB
    assert err.status == 2 and err.result.cdb == cdb and err.path == "/dev/null"
    msg = str(err)
    assert msg.startswith("READ (10) (28h) on /dev/null failed: CHECK CONDITION: ")
    assert ("ILLEGAL REQUEST, ASC/ASCQ 24h/00h (INVALID FIELD IN CDB) at CDB byte 1 bit 7: "
            "the device rejects the value of that CDB field") in msg
    assert "[CDB 28 e0 00 00 00 00 00 00 01 00]" in msg
    assert "Traceback" not in msg


def test_descriptor_sense_is_decoded_too(dev, kernel):
    kernel.handler = check(SenseData(SenseKey.ILLEGAL_REQUEST,
                                     Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE,
                                     information=1 << 40), descriptor=True)
    with pytest.raises(sgio.ScsiCommandError) as e:
        dev.execute(sbc.Read16(lba=1 << 40, transfer_length=1).encode(), data_in=512)
    assert e.value.sense.information == 1 << 40
    assert "(LOGICAL BLOCK ADDRESS OUT OF RANGE); at LBA 1099511627776: " in str(e.value)
    assert "READ CAPACITY" in str(e.value)


def test_check_false_returns_the_result(dev, kernel):
    sense = SenseData(SenseKey.UNIT_ATTENTION, 0x3F0E)
    kernel.handler = check(sense)
    r = dev.execute(bytes(6), check=False)
    assert r.status == 2 and r.sense == sense and not r.good
    assert "REPORTED LUNS DATA HAS CHANGED" in r.explain()
    assert "send it again" in r.explain()


def test_recovered_error_is_success(dev, kernel):
    kernel.handler = check(SenseData(SenseKey.RECOVERED_ERROR, 0x1701,
                                     sense_key_specific=b"\x80\x00\x03"))
    r = dev.execute(bytes(6))
    assert r.sense.key == SenseKey.RECOVERED_ERROR
    assert "after 3 retries" in r.explain()


def test_check_condition_without_sense(dev, kernel):
    kernel.handler = lambda s: Reply(status=2)
    with pytest.raises(sgio.ScsiCommandError, match=r"without usable sense data.*REQUEST SENSE"):
        dev.execute(bytes(6))


def test_undecodable_sense_is_kept_raw(dev, kernel):
    raw = bytes([0x70, 0, 0x0F]) + bytes(15)  # sense key Fh is reserved
    kernel.handler = lambda s: Reply(status=2, sense=raw)
    with pytest.raises(sgio.ScsiCommandError, match="undecodable sense 70 00 0f") as e:
        dev.execute(bytes(6))
    assert e.value.sense is None and e.value.result.sense_bytes == raw


@pytest.mark.parametrize(
    ("status", "words"),
    [(0x08, "BUSY: the logical unit is busy"), (0x18, "RESERVATION CONFLICT: another"),
     (0x28, "TASK SET FULL"), (0x40, "TASK ABORTED")],
)
def test_other_statuses_raise_in_words(dev, kernel, status, words):
    kernel.handler = lambda s: Reply(status=status)
    with pytest.raises(sgio.ScsiCommandError, match=words):
        dev.execute(bytes(6))


def test_condition_met_is_success(dev, kernel):
    kernel.handler = lambda s: Reply(status=0x04)
    assert dev.execute(bytes(6)).good


@pytest.mark.parametrize(
    ("host", "driver", "words"),
    [(0x03, 0, r"timed out \(DID_TIME_OUT\)"), (0x01, 0, "is the device gone"),
     (0x08, 0, "reset"), (0, 0x06, r"timed out \(DRIVER_TIMEOUT\)"), (0, 0x04, "DRIVER_ERROR")],
)
def test_host_and_driver_errors_are_transport_failures(dev, kernel, host, driver, words):
    kernel.handler = lambda s: Reply(host_status=host, driver_status=driver)
    with pytest.raises(sgio.TransportFailure, match=words) as e:
        dev.execute(bytes(6), check=False)  # even unchecked: there is no status to trust
    assert e.value.result.host_status == host
    assert "dmesg" in str(e.value) and "lio-xcopy daemon" in str(e.value)


def test_driver_sense_alone_is_not_a_transport_failure(dev, kernel):
    kernel.handler = lambda s: Reply(status=0, driver_status=0x08)
    assert dev.execute(bytes(6)).good


@pytest.mark.parametrize(
    ("err", "cls", "words"),
    [(errno.EINVAL, sgio.TransportFailure, "max_segments"),
     (errno.EPERM, sgio.TransportFailure, "run as root"),
     (errno.ENOMEM, sgio.TransportFailure, "smaller transfers"),
     (errno.ENODEV, sgio.TransportFailure, "went away"),
     (errno.ENOTTY, sgio.NotScsiDevice, "does not do SG_IO"),
     (errno.EIO, sgio.TransportFailure, "failed")],
)
def test_ioctl_errors_become_errors_in_words(dev, kernel, err, cls, words):
    kernel.error = OSError(err, os.strerror(err))
    with pytest.raises(cls, match=words):
        dev.execute(bytes(6))


def test_closed_device(kernel):
    d = sgio.SgIoDevice("/dev/null")
    d.close()
    d.close()
    with pytest.raises(sgio.SgIoUsageError, match="closed"):
        d.execute(bytes(6))


# --- sense in words ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sense", "words"),
    [
        (SenseData(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB,
                   sense_key_specific=field_pointer(1, 7)),
         "ILLEGAL REQUEST, ASC/ASCQ 24h/00h (INVALID FIELD IN CDB) at CDB byte 1 bit 7: "
         "the device rejects the value of that CDB field"),
        (SenseData(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB,
                   sense_key_specific=field_pointer(4)),
         "(INVALID FIELD IN CDB) at CDB byte 4: "),
        (SenseData(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_PARAMETER_LIST,
                   sense_key_specific=field_pointer(300, 2, in_cdb=False)),
         "26h/00h (INVALID FIELD IN PARAMETER LIST) at parameter list byte 300 bit 2: "
         "the device rejects the value at that byte of the data sent"),
        (SenseData(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_COMMAND_OPERATION_CODE,
                   sense_key_specific=field_pointer(0)),
         "20h/00h (INVALID COMMAND OPERATION CODE) at CDB byte 0: the device does not "
         "implement this command"),
        (SenseData(SenseKey.COPY_ABORTED, Asc.COPY_TARGET_DEVICE_NOT_REACHABLE,
                   command_specific=2, sense_key_specific=segment_pointer(4)),
         "COPY ABORTED, ASC/ASCQ 0Dh/02h (COPY TARGET DEVICE NOT REACHABLE) at segment "
         "descriptor byte 4; COMMAND-SPECIFIC INFORMATION 2 (for EXTENDED COPY: the segment "
         "being processed): the copy manager cannot reach"),
        (SenseData(SenseKey.COPY_ABORTED, Asc.UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE,
                   sense_key_specific=segment_pointer(16, 0, in_segment=False)),
         "at parameter list byte 16 bit 0: the copy stopped part way"),
        (SenseData(SenseKey.NOT_READY, 0x0401, sense_key_specific=progress_indication(0.25)),
         "NOT READY, ASC/ASCQ 04h/01h (LOGICAL UNIT IS IN PROCESS OF BECOMING READY) "
         "progress 25%: the logical unit is becoming ready: wait"),
        (SenseData(SenseKey.NOT_READY, Asc.MEDIUM_NOT_PRESENT),
         "3Ah/00h (MEDIUM NOT PRESENT): no medium is loaded: load a cartridge"),
        (SenseData(SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR, information=1234,
                   sense_key_specific=b"\x80\x00\x05"),
         "MEDIUM ERROR, ASC/ASCQ 11h/00h (UNRECOVERED READ ERROR) after 5 retries; at LBA "
         "1234: the medium failed"),
        (SenseData(SenseKey.NO_SENSE, 0, information=(-1536) & 0xFFFFFFFF, ili=True),
         "NO SENSE, ASC/ASCQ 00h/00h (NO ADDITIONAL SENSE INFORMATION); ILI, residue -1536"),
        (SenseData(SenseKey.NO_SENSE, Asc.FILEMARK_DETECTED, information=7, filemark=True),
         "(FILEMARK DETECTED); FILEMARK, residue 7: no error of the device"),
        (SenseData(SenseKey.BLANK_CHECK, Asc.END_OF_DATA_DETECTED, eom=True),
         "BLANK CHECK, ASC/ASCQ 00h/05h (END OF DATA DETECTED); EOM: no data is recorded"),
        (SenseData(SenseKey.BLANK_CHECK, Asc.END_OF_DATA_DETECTED, information=65536),
         "(END OF DATA DETECTED); residue 65536: no data is recorded"),
        (SenseData(SenseKey.UNIT_ATTENTION, Asc.POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED,
                   sense_key_specific=b"\x81\x00\x00"),
         "(unit attention queue overflowed"),
        (SenseData(SenseKey.HARDWARE_ERROR, Asc.INTERNAL_TARGET_FAILURE, deferred=True),
         "DEFERRED error (of an earlier command): HARDWARE ERROR, ASC/ASCQ 44h/00h "
         "(INTERNAL TARGET FAILURE): the target failed internally"),
        (SenseData(SenseKey.ILLEGAL_REQUEST, 0x2C00), "(COMMAND SEQUENCE ERROR): the device "
         "rejects the command as sent"),
        (SenseData(SenseKey.ABORTED_COMMAND, 0x4B00), "ABORTED COMMAND, ASC/ASCQ 4Bh/00h "
         "(DATA PHASE ERROR): the target aborted the command"),
        (SenseData(SenseKey.ILLEGAL_REQUEST, 0x2C7F), "2Ch/7Fh (not in lio-xcopy's table; see "
         "SPC-4 Annex D)"),
        (SenseData(SenseKey.VENDOR_SPECIFIC, 0x8001), "80h/01h (vendor specific)"),
    ],
)
def test_sense_in_words(sense, words):
    assert words in sgio.explain_sense(sense)
    # and the same through the wire formats, fixed and descriptor
    for raw in (sense.fixed(), sense.descriptor()):
        parsed = sgio.parse_sense(raw)
        if sense.information is None or sense.information < 1 << 32:
            assert words in sgio.explain_sense(parsed)


def test_sense_key_specific_without_sksv_says_nothing():
    assert sense_key_specific_words(SenseKey.ILLEGAL_REQUEST, b"\x40\x00\x01") == ""
    assert sense_key_specific_words(SenseKey.ILLEGAL_REQUEST, None) == ""


def test_parse_sense_rejects_garbage_quietly():
    assert sgio.parse_sense(b"") is None
    assert sgio.parse_sense(b"\x70\x00") is None
    assert sgio.parse_sense(bytes([0x7F]) + bytes(17)) is None


def test_command_names():
    assert sgio.command_name(bytes.fromhex("12 00 00 00 ff 00")) == "INQUIRY (12h)"
    assert sgio.command_name(bytes.fromhex("9e 10") + bytes(14)) == "READ CAPACITY (16) (9Eh)"
    assert sgio.command_name(bytes([0x83]) + bytes(15)) == "EXTENDED COPY (83h)"
    assert sgio.command_name(bytes([0x34]) + bytes(9)) == "READ POSITION (34h)"
    assert sgio.command_name(bytes([0xC9]) + bytes(5)) == "opcode C9h"


# --- not a SCSI device -------------------------------------------------------------------------
def test_regular_file_is_a_clear_error(tmp_path):
    f = tmp_path / "disk.img"
    f.write_bytes(bytes(4096))
    with pytest.raises(sgio.NotScsiDevice) as e:
        sgio.SgIoDevice(f)
    msg = str(e.value)
    assert "is a regular file, not a SCSI device node" in msg and "/dev/sgN" in msg
    assert isinstance(e.value, LioXcopyError)


def test_directory_and_missing_path(tmp_path):
    with pytest.raises(sgio.NotScsiDevice, match="is a directory"):
        sgio.SgIoDevice(tmp_path)
    with pytest.raises(sgio.NotScsiDevice, match="no such file or device node"):
        sgio.SgIoDevice(tmp_path / "sg9")


def test_character_device_of_another_driver_is_a_clear_error():
    # the real kernel: /dev/null answers SG_GET_VERSION_NUM with ENOTTY
    with pytest.raises(sgio.NotScsiDevice, match=r"does not answer SG ioctls \(ENOTTY\)"):
        sgio.SgIoDevice("/dev/null")


def test_open_errors_in_words(monkeypatch):
    def busy(path, flags, *a):
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(sgio.os, "open", busy)
    with pytest.raises(sgio.DeviceUnavailable, match="one open per tape drive") as e:
        sgio.SgIoDevice("/dev/null")
    assert e.value.errno == errno.EBUSY


def test_read_only_fallback_on_erofs(monkeypatch, kernel):
    real_open = os.open
    modes = []

    def erofs_for_rw(path, flags, *a):
        modes.append(flags & os.O_ACCMODE)
        if flags & os.O_ACCMODE == os.O_RDWR:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, flags, *a)

    monkeypatch.setattr(sgio.os, "open", erofs_for_rw)
    with sgio.SgIoDevice("/dev/null") as d:
        assert d.fd >= 0
    assert modes == [os.O_RDWR, os.O_RDONLY]


def test_nonblock_open(monkeypatch, kernel):
    real_open = os.open
    seen = []

    def spy(path, flags, *a):
        seen.append(flags)
        return real_open(path, flags, *a)

    monkeypatch.setattr(sgio.os, "open", spy)
    sgio.SgIoDevice("/dev/null").close()
    assert seen[0] & os.O_NONBLOCK and seen[0] & os.O_CLOEXEC


# --- sysfs: nodes and counters over a fake tree ---------------------------------------------------
def _link(at: Path, to: Path) -> None:
    at.parent.mkdir(parents=True, exist_ok=True)
    at.symlink_to(os.path.relpath(to, at.parent))


def _scsi_device(root: Path, hctl: str, dtype: int, counters: tuple[str, str, str]) -> Path:
    host = hctl.split(":")[0]
    d = root / "devices/platform/tcm_loop_0" / f"host{host}" / f"target{hctl.rsplit(':', 1)[0]}"
    d = d / hctl
    d.mkdir(parents=True)
    (d / "type").write_text(f"{dtype}\n")
    for name, value in zip(("iorequest_cnt", "iodone_cnt", "ioerr_cnt"), counters, strict=True):
        (d / name).write_text(value + "\n")
    _link(root / "bus/scsi/devices" / hctl, d)
    _link(root / "class/scsi_device" / hctl / "device", d)
    return d


def _class_dev(root: Path, d: Path, sub: str, name: str, cls: str, devnum: str) -> Path:
    c = d / sub / name
    c.mkdir(parents=True)
    _link(c / "device", d)
    (c / "dev").write_text(devnum + "\n")
    _link(root / "class" / cls / name, c)
    _link(root / "dev" / ("block" if cls == "block" else "char") / devnum, c)
    return c


@pytest.fixture
def sysfs(tmp_path) -> Path:
    """Two SCSI devices as the kernel shows a tcm_loop disk and tape, plus a virtio disk."""
    root = tmp_path / "sys"
    disk = _scsi_device(root, "2:0:0:1", 0, ("0x1a2", "0x1a0", "0x2"))
    _class_dev(root, disk, "scsi_generic", "sg1", "scsi_generic", "21:1")
    sdb = _class_dev(root, disk, "block", "sdb", "block", "8:16")
    (sdb / "stat").write_text(
        "     120        0    24576      310       40        0     8192      120        0"
        "      430      430        0        0        0        0        0        0\n")
    part = sdb / "sdb1"
    part.mkdir()
    (part / "partition").write_text("1\n")
    (part / "stat").write_text("1 0 8 0 0 0 0 0 0 0 0\n")
    _link(root / "class/block/sdb1", part)
    tape = _scsi_device(root, "2:0:0:2", 1, ("17", "17", "0"))
    _class_dev(root, tape, "scsi_generic", "sg2", "scsi_generic", "21:2")
    for name in ("st0", "st0l", "nst0", "nst0l"):
        c = _class_dev(root, tape, "scsi_tape", name, "scsi_tape",
                       f"9:{(32 if name.endswith('l') else 0) + (128 if name[0] == 'n' else 0)}")
        stats = c / "stats"
        stats.mkdir()
        (stats / "read_byte_cnt").write_text("1048576\n")
        (stats / "write_byte_cnt").write_text("3145728\n")
    virtio = root / "devices/pci0000:00/0000:00:04.0/virtio1"
    virtio.mkdir(parents=True)
    _class_dev(root, virtio, "block", "vda", "block", "254:0")
    return root


@pytest.mark.parametrize("node", ["/dev/sg1", "/dev/sdb", "sdb", "/dev/sdb1", "2:0:0:1"])
def test_disk_nodes_map_to_hctl_and_siblings(sysfs, node):
    n = sgio.scsi_nodes(node, sysfs_root=sysfs)
    assert n.hctl == "2:0:0:1" and n.device_type == 0
    assert (n.sg, n.block, n.tape) == (Path("/dev/sg1"), Path("/dev/sdb"), None)


@pytest.mark.parametrize("node", ["/dev/nst0", "/dev/st0l", "/dev/sg2", "2:0:0:2"])
def test_tape_nodes_map_to_hctl_and_siblings(sysfs, node):
    n = sgio.scsi_nodes(node, sysfs_root=sysfs, dev_root="/dev")
    assert n.hctl == "2:0:0:2" and n.device_type == 1
    assert (n.sg, n.block, n.tape) == (Path("/dev/sg2"), None, Path("/dev/nst0"))


def test_dev_root_is_injectable(sysfs, tmp_path):
    n = sgio.scsi_nodes(tmp_path / "dev" / "sg1", sysfs_root=sysfs, dev_root=tmp_path / "dev")
    assert n.block == tmp_path / "dev" / "sdb"


def test_disk_counters(sysfs):
    c = sgio.io_counters("/dev/sdb", sysfs_root=sysfs)
    assert c == sgio.IoCounters("2:0:0:1", "sd", 24576 * 512, 8192 * 512, 0x1A2, 0x1A0, 2)
    assert sgio.io_counters("/dev/sg1", sysfs_root=sysfs) == c
    assert sgio.io_counters("/dev/sdb1", sysfs_root=sysfs) == c  # the whole disk
    assert c.total_bytes == (24576 + 8192) * 512
    assert c.describe() == ("2:0:0:1: read 12.0 MiB, wrote 4.0 MiB via sd; 418 SCSI commands "
                            "(2 failed)")


def test_tape_counters(sysfs):
    c = sgio.io_counters("/dev/nst0", sysfs_root=sysfs)
    assert c == sgio.IoCounters("2:0:0:2", "st", 1 << 20, 3 << 20, 17, 17, 0)


def test_counters_subtract(sysfs):
    before = sgio.io_counters("/dev/sdb", sysfs_root=sysfs)
    stat = sysfs / "class/block/sdb/stat"
    fields = stat.read_text().split()
    fields[2] = str(int(fields[2]) + 2048)
    stat.write_text(" ".join(fields) + "\n")
    (sysfs / "bus/scsi/devices/2:0:0:1/iorequest_cnt").write_text("0x1b2\n")
    delta = sgio.io_counters("/dev/sg1", sysfs_root=sysfs) - before
    assert (delta.read_bytes, delta.written_bytes, delta.requests) == (1 << 20, 0, 16)
    with pytest.raises(ValueError, match="do not subtract"):
        _ = before - sgio.io_counters("/dev/nst0", sysfs_root=sysfs)


def test_not_scsi_in_sysfs(sysfs, tmp_path):
    with pytest.raises(sgio.NotScsiDevice, match=r"another kind \(not SCSI: vda"):
        sgio.io_counters("/dev/vda", sysfs_root=sysfs)
    with pytest.raises(sgio.NotScsiDevice, match="no such device node"):
        sgio.scsi_nodes("/dev/sg7", sysfs_root=sysfs)
    with pytest.raises(sgio.NotScsiDevice, match="no SCSI device 9:0:0:0"):
        sgio.scsi_nodes("9:0:0:0", sysfs_root=sysfs)
    f = tmp_path / "sdb"  # a regular file named like a disk is still a regular file
    f.write_bytes(b"x")
    with pytest.raises(sgio.NotScsiDevice, match="regular file"):
        sgio.io_counters(f, sysfs_root=sysfs)
    with pytest.raises(sgio.NotScsiDevice, match="not found"):
        sgio.io_counters(tmp_path / "nothing" / "sdb", sysfs_root=sysfs)


def test_existing_node_is_found_by_device_number(sysfs):
    # a node that exists here (any name, e.g. a udev symlink target) is looked up by
    # its device number under /sys/dev, as the kernel publishes it
    class Chr:
        st_mode, st_rdev = 0o20660, os.makedev(9, 128)

    class Blk:
        st_mode, st_rdev = 0o60660, os.makedev(8, 16)

    assert sg_sysfs._by_number(Chr, sysfs).resolve().name == "nst0"
    assert sg_sysfs._by_number(Blk, sysfs).resolve().name == "sdb"
    Blk.st_rdev = os.makedev(8, 32)
    assert sg_sysfs._by_number(Blk, sysfs) is None


def test_malformed_counters_are_errors(sysfs):
    (sysfs / "bus/scsi/devices/2:0:0:1/iodone_cnt").write_text("lots\n")
    with pytest.raises(sgio.SgIoError, match="not a counter"):
        sgio.io_counters("/dev/sdb", sysfs_root=sysfs)

