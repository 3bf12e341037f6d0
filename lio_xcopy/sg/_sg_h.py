"""The Linux sg driver's ABI (``include/scsi/sg.h``, version 3 interface), private to
:mod:`lio_xcopy.sg`: the ioctl numbers, ``struct sg_io_hdr`` packed with :mod:`struct`
for the running ABI (88 bytes on 64-bit Linux, 64 on 32-bit), the one ioctl call, and
the Linux host and driver bytes a completed request carries. Nothing here runs at
import time but building the header layout."""

from __future__ import annotations

import ctypes
import fcntl
import struct
from dataclasses import dataclass, fields

SG_IO = 0x2285
SG_GET_VERSION_NUM = 0x2282
SG_SCSI_RESET = 0x2284
SG_SCSI_RESET_DEVICE = 1  # a LOGICAL UNIT RESET of this device (scsi_ioctl_reset)
SG_SCSI_RESET_TARGET = 4
SG_INTERFACE_ID = ord("S")
SG_DXFER_NONE = -1
SG_DXFER_TO_DEV = -2
SG_DXFER_FROM_DEV = -3
SG_INFO_CHECK = 0x1

#: Sense buffer we offer (mx_sb_len is one byte; the kernel keeps at most 96).
SENSE_BUFFER_LENGTH = 252
#: dxfer_len is an unsigned int; the real limit is the queue's max_hw_sectors_kb.
MAX_TRANSFER = 0xFFFFFFFF
#: timeout is in milliseconds; 0xFFFFFFFF would mean "no timeout" to some paths.
MAX_TIMEOUT_MS = 0xFFFFFFFE

HDR_FIELDS = (
    "interface_id", "dxfer_direction", "cmd_len", "mx_sb_len", "iovec_count", "dxfer_len",
    "dxferp", "cmdp", "sbp", "timeout", "flags", "pack_id", "usr_ptr", "status",
    "masked_status", "msg_status", "sb_len_wr", "host_status", "driver_status", "resid",
    "duration", "info",
)


def hdr_struct(pointer_size: int = ctypes.sizeof(ctypes.c_void_p)) -> struct.Struct:
    """``struct sg_io_hdr`` with the C ABI's padding made explicit: on LP64 the pointer
    ``usr_ptr`` after ``int pack_id`` is aligned to 8 (4 pad bytes) and the struct is
    rounded up to 8 (4 more): 88 bytes. On ILP32 there is no padding: 64 bytes."""
    if pointer_size == 8:
        return struct.Struct("=iiBBHIQQQIIi4xQBBBBHHiII4x")
    if pointer_size == 4:
        return struct.Struct("=iiBBHIIIIIIiIBBBBHHiII")
    raise ValueError(f"pointer size {pointer_size}")


_HDR = hdr_struct()


@dataclass(slots=True)
class SgIoHdr:
    """``struct sg_io_hdr`` (sg version 3 interface), field for field."""

    interface_id: int = SG_INTERFACE_ID
    dxfer_direction: int = SG_DXFER_NONE
    cmd_len: int = 0
    mx_sb_len: int = 0
    iovec_count: int = 0
    dxfer_len: int = 0
    dxferp: int = 0
    cmdp: int = 0
    sbp: int = 0
    timeout: int = 0
    flags: int = 0
    pack_id: int = 0
    usr_ptr: int = 0
    status: int = 0
    masked_status: int = 0
    msg_status: int = 0
    sb_len_wr: int = 0
    host_status: int = 0
    driver_status: int = 0
    resid: int = 0
    duration: int = 0
    info: int = 0

    def pack(self) -> bytes:
        return _HDR.pack(*(getattr(self, n) for n in HDR_FIELDS))

    @classmethod
    def unpack(cls, buf: bytes | bytearray | memoryview) -> SgIoHdr:
        return cls(*_HDR.unpack(bytes(buf)))


assert tuple(f.name for f in fields(SgIoHdr)) == HDR_FIELDS

#: The ioctl, an indirection the unit tests replace with a simulated kernel.
ioctl = fcntl.ioctl


def sg_io(fd: int, hdr: SgIoHdr) -> SgIoHdr:
    """One SG_IO ioctl: the kernel reads the header, runs the command, writes the
    output fields back; returns the header as the kernel left it. The buffers that
    ``hdr`` points at must stay alive until this returns."""
    buf = bytearray(hdr.pack())
    ioctl(fd, SG_IO, buf, True)  # noqa: FBT003 (mutate_flag is positional-only)
    return SgIoHdr.unpack(buf)


#: The block layer's BLKSECTGET: the sg driver answers it with its queue's limit in bytes.
BLKSECTGET = 0x1267

#: Linux host byte (DID_*, include/scsi/scsi_status.h) in words.
HOST_STATUS = {
    0x01: ("DID_NO_CONNECT", "could not connect to the target (is the device gone?)"),
    0x02: ("DID_BUS_BUSY", "the bus stayed busy"),
    0x03: ("DID_TIME_OUT", "the command timed out"),
    0x04: ("DID_BAD_TARGET", "the target does not answer (bad target)"),
    0x05: ("DID_ABORT", "the command was aborted (often: its timeout fired)"),
    0x06: ("DID_PARITY", "parity error on the bus"),
    0x07: ("DID_ERROR", "internal error of the host adapter driver"),
    0x08: ("DID_RESET", "the bus or device was reset"),
    0x09: ("DID_BAD_INTR", "unexpected interrupt"),
    0x0A: ("DID_PASSTHROUGH", "forced pass-through"),
    0x0B: ("DID_SOFT_ERROR", "retryable error of the low-level driver"),
    0x0C: ("DID_IMM_RETRY", "retry requested by the low-level driver"),
    0x0D: ("DID_REQUEUE", "requeue requested by the low-level driver"),
    0x0E: ("DID_TRANSPORT_DISRUPTED", "the transport was disrupted"),
    0x0F: ("DID_TRANSPORT_FAILFAST", "the transport failed (fast fail)"),
    0x10: ("DID_TARGET_FAILURE", "permanent target failure"),
    0x11: ("DID_NEXUS_FAILURE", "permanent I_T nexus failure"),
    0x12: ("DID_ALLOC_FAILURE", "the target could not allocate resources"),
    0x13: ("DID_MEDIUM_ERROR", "medium error reported by the low-level driver"),
    0x14: ("DID_TRANSPORT_MARGINAL", "the transport is marginal"),
}
#: Linux driver byte (low nibble; DRIVER_SENSE only says that sense data is present).
DRIVER_SENSE = 0x08
DRIVER_TIMEOUT = 0x06
DRIVER_STATUS = {
    0x01: "DRIVER_BUSY", 0x02: "DRIVER_SOFT", 0x03: "DRIVER_MEDIA", 0x04: "DRIVER_ERROR",
    0x05: "DRIVER_INVALID", 0x06: "DRIVER_TIMEOUT", 0x07: "DRIVER_HARD",
    0x08: "DRIVER_SENSE",
}


def host_driver_words(host_status: int, driver_status: int) -> str:
    """The Linux host and driver bytes of a request that did not complete, in words."""
    parts = []
    if host_status:
        name, words = HOST_STATUS.get(host_status, (f"host status {host_status:#x}",
                                                    "unknown host status"))
        parts.append(f"{words} ({name})")
    drv = driver_status & 0x0F
    if drv not in (0, DRIVER_SENSE):
        name = DRIVER_STATUS.get(drv, f"driver status {drv:#x}")
        parts.append("the command timed out (DRIVER_TIMEOUT)" if drv == DRIVER_TIMEOUT
                     else f"the kernel's SCSI driver reported {name}")
    return "; ".join(parts)


def transport_failed(host_status: int, driver_status: int) -> bool:
    """True when the host or driver byte says the command did not complete (a driver
    byte of DRIVER_SENSE only says that sense data came back)."""
    return bool(host_status) or (driver_status & 0x0F) not in (0, DRIVER_SENSE)
