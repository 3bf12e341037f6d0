"""SCSI pass-through: the Linux SG_IO ioctl, and what crossed the wire.

:class:`ScsiDevice` sends one CDB at a time through ``SG_IO`` (``include/scsi/sg.h``,
version 3 interface) and returns a :class:`Result`, or raises an error whose message
says in words what the device answered and what to do next::

    with ScsiDevice("/dev/sg1") as dev:
        dev.inquiry().product          # 'lio-xcopy disk'
        dev.naa().hex()                # '6001405...'
        dev.execute(bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]), data_in=512).data

Which node to open. ``SG_IO`` works on the sg node (``/dev/sgN``, any device type) and
also on the sd and st nodes (``/dev/sdX``, ``/dev/nstN``): the kernel's
``scsi_ioctl()`` serves it for every upper driver. Two st rules matter:

* open the **non-rewinding** ``/dev/nstN``: closing ``/dev/stN`` rewinds the tape;
* st opens with ``O_NONBLOCK`` skip the wait for the drive to become ready (an open
  without it fails with EIO after ``ST_BLOCK_SECONDS`` when no cartridge is loaded);
  we always open with ``O_NONBLOCK`` (sg and sd ignore it for ``SG_IO``, which always
  waits for the command). st allows **one open at a time**: while a :class:`ScsiDevice`
  holds ``/dev/nstN``, ``mt``/``tar`` on it fail with EBUSY, and the other way round —
  use the drive's ``/dev/sgN`` to talk to it next to them (:func:`scsi_nodes` finds it).

What crossed the initiator. :func:`io_counters` reads the kernel's counters for the
SCSI device behind any of its nodes: bytes moved by the sd or st upper driver
(``/sys/block/sdX/stat`` sectors x 512, ``/sys/class/scsi_tape/stN/stats/*_byte_cnt``)
and the midlayer's command counts (``iorequest_cnt``, ``iodone_cnt``, ``ioerr_cnt``),
which include pass-through commands. Data moved *by* ``SG_IO`` is in no byte
counter of the kernel (sd and st count only their own I/O, the block layer does not
account pass-through requests): :class:`ScsiDevice` counts it itself
(:attr:`ScsiDevice.bytes_in`, :attr:`ScsiDevice.bytes_out`). st adds a read as its
requested length minus the residual the target reported.

The syscall glue (:func:`_sg_io`, :class:`SgIoHdr`) packs ``struct sg_io_hdr`` with
:mod:`struct` for the running ABI (88 bytes on 64-bit Linux, 64 on 32-bit) and hands
the kernel ctypes buffers (the data buffer page-aligned, see :class:`_PageBuffer`);
there are no third-party dependencies.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import math
import mmap
import os
import re
import stat
import struct
from dataclasses import dataclass, fields
from pathlib import Path

from lio_xcopy.errors import LioXcopyError
from lio_xcopy.scsi import sbc, spc, ssc
from lio_xcopy.scsi.cdb import Cdb, cdb_length
from lio_xcopy.scsi.sense import (
    CHECK_CONDITION,
    Asc,
    SenseData,
    SenseKey,
    asc_name,
    sense_key_specific_words,
    status_name,
)
from lio_xcopy.scsi.spc import Designator
from lio_xcopy.scsi.vendor_sense import PolicyApart

# --- include/scsi/sg.h ---------------------------------------------------------------------
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
_ioctl = fcntl.ioctl


def _sg_io(fd: int, hdr: SgIoHdr) -> SgIoHdr:
    """One SG_IO ioctl: the kernel reads the header, runs the command, writes the
    output fields back; returns the header as the kernel left it. The buffers that
    ``hdr`` points at must stay alive until this returns."""
    buf = bytearray(hdr.pack())
    _ioctl(fd, SG_IO, buf, True)  # noqa: FBT003 (mutate_flag is positional-only)
    return SgIoHdr.unpack(buf)


# --- errors --------------------------------------------------------------------------------
class SgIoError(LioXcopyError):
    """Root of this module's errors; :attr:`path` is the device node."""

    def __init__(self, message: str, path: str = ""):
        self.path = path
        super().__init__(message)


class NotScsiDevice(SgIoError):
    """The path is not a SCSI device node (a regular file, another driver's device)."""


class DeviceUnavailable(SgIoError):
    """The node exists but cannot be opened or used now (busy, gone, no permission)."""

    def __init__(self, message: str, path: str = "", errno_: int | None = None):
        self.errno = errno_
        super().__init__(message, path)


class SgIoUsageError(SgIoError, ValueError):
    """The caller asked for something SG_IO cannot do (bad CDB length, both directions)."""


class TransportFailure(SgIoError):
    """The command did not complete at the SCSI level: the host adapter or the kernel
    reported an error (timeout, reset, device gone) or the ioctl itself failed, so
    there is no SCSI status to trust. :attr:`result` is None when the ioctl failed."""

    def __init__(self, message: str, path: str = "", result: Result | None = None,
                 errno_: int | None = None):
        self.result = result
        self.errno = errno_
        super().__init__(message, path)


class ScsiCommandError(SgIoError):
    """The device completed the command with a status other than GOOD — normally CHECK
    CONDITION, with :attr:`sense` decoded. The message says what it means in words."""

    def __init__(self, message: str, path: str, result: Result):
        self.result = result
        super().__init__(message, path)

    @property
    def status(self) -> int:
        return self.result.status

    @property
    def sense(self) -> SenseData | None:
        return self.result.sense

    @property
    def key(self) -> SenseKey | None:
        return self.result.sense.key if self.result.sense else None

    @property
    def asc(self) -> int | None:
        """ASC << 8 | ASCQ, as :class:`~lio_xcopy.scsi.sense.Asc` values are."""
        return self.result.sense.asc if self.result.sense else None


# --- words for statuses and sense ------------------------------------------------------------
_SUCCESS_STATUSES = {0x00, 0x04, 0x10, 0x14}
_STATUS_ADVICE = {
    0x08: "the logical unit is busy; retry the command later",
    0x18: "another initiator holds a reservation on this logical unit; release it "
          "(sg_persist) or send the command from the initiator that holds it",
    0x28: "the device's command queue is full; retry with fewer commands outstanding",
    0x30: "an ACA condition is active on this I_T nexus; clear it (CLEAR ACA) and retry",
    0x40: "the command was aborted by another initiator or a task management function; "
          "retry it",
}

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

_KEY_ADVICE = {
    SenseKey.NO_SENSE: "no error of the device: the command stopped early at a filemark, "
                       "end of medium or a block of another length (see the flags)",
    SenseKey.RECOVERED_ERROR: "the command completed after the device recovered from an "
                              "error; nothing to do unless it keeps happening",
    SenseKey.NOT_READY: "the logical unit is not ready: wait and retry, and check that the "
                        "target (the lio-xcopy daemon) is serving it",
    SenseKey.MEDIUM_ERROR: "the medium failed at the reported position and the data there "
                           "cannot be trusted: check the LUN's backing file or device on "
                           "the target",
    SenseKey.HARDWARE_ERROR: "the target failed internally: read its log on the target host "
                             "(journalctl -u lio-xcopy, or the daemon's output)",
    SenseKey.ILLEGAL_REQUEST: "the device rejects the command as sent; fix the command, "
                              "sending it again unchanged fails the same way",
    SenseKey.UNIT_ATTENTION: "the device reports a change (reset, LUNs or parameters "
                             "changed) and did not run the command: send it again",
    SenseKey.DATA_PROTECT: "the medium or logical unit is write-protected: write-enable it "
                           "or write elsewhere",
    SenseKey.BLANK_CHECK: "the read met blank medium (end of recorded data): there is "
                          "nothing more to read here",
    SenseKey.VENDOR_SPECIFIC: "a vendor-specific condition: see the device's documentation",
    SenseKey.COPY_ABORTED: "the copy stopped part way: the fields above (or RECEIVE COPY "
                           "RESULTS) tell where; fix the cause and copy the rest",
    SenseKey.ABORTED_COMMAND: "the target aborted the command (transport or resources): "
                              "send it again",
    SenseKey.VOLUME_OVERFLOW: "the medium is full: the end of the partition was reached "
                              "and not all data was written",
    SenseKey.MISCOMPARE: "the data on the medium does not match the data sent",
}
_ASC_ADVICE = {
    Asc.INVALID_COMMAND_OPERATION_CODE: "the device does not implement this command "
        "(REPORT SUPPORTED OPERATION CODES lists what it does); do not retry",
    Asc.INVALID_FIELD_IN_CDB: "the device rejects the value of that CDB field; fix the "
        "command, sending it again unchanged fails the same way",
    Asc.INVALID_FIELD_IN_PARAMETER_LIST: "the device rejects the value at that byte of "
        "the data sent with the command; fix the parameter list",
    Asc.PARAMETER_LIST_LENGTH_ERROR: "the data sent does not match the lengths it "
        "declares; fix the parameter list length",
    Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE: "the command addresses blocks past the end "
        "of the logical unit; check its size with READ CAPACITY",
    Asc.LOGICAL_UNIT_NOT_SUPPORTED: "no logical unit answers at this LUN; check the "
        "target's LUN mapping",
    Asc.MEDIUM_NOT_PRESENT: "no medium is loaded: load a cartridge and retry",
    Asc.LOGICAL_UNIT_NOT_READY_OPERATION_IN_PROGRESS: "a long operation is running: "
        "wait for it and retry",
    0x0401: "the logical unit is becoming ready: wait a moment and retry",
    Asc.END_OF_DATA_DETECTED: "no data is recorded past this point (end of data)",
    Asc.COPY_TARGET_DEVICE_NOT_REACHABLE: "the copy manager cannot reach a device named "
        "in a target descriptor: check that its designator matches a LUN of the target",
    Asc.INCORRECT_COPY_TARGET_DEVICE_TYPE: "a target descriptor names a device of "
        "another type than its segments need",
    Asc.COPY_TARGET_DEVICE_DATA_UNDERRUN: "a copy source delivered less data than the "
        "segment asked for (end of medium or data?)",
    Asc.COPY_TARGET_DEVICE_DATA_OVERRUN: "a copy source delivered more data than the "
        "segment asked for",
    Asc.COMMANDS_CLEARED_BY_ANOTHER_INITIATOR: "task management (ABORT TASK, LUN RESET) "
        "or another initiator ended the command",
    Asc.COMMANDS_CLEARED_BY_DEVICE_SERVER: "the target ended the command itself (its "
        "copy service was stopped or restarted); the destination holds a partial copy: "
        "run the copy again",
}


def explain_sense(sense: SenseData) -> str:
    """Sense data as one line of words: what the device said, then what to do.

    ``ILLEGAL REQUEST, ASC/ASCQ 24h/00h (INVALID FIELD IN CDB) at CDB byte 1 bit 7: the
    device rejects the value of that CDB field; fix the command, ...``"""
    head = (
        f"{'DEFERRED error (of an earlier command): ' if sense.deferred else ''}"
        f"{sense.key.name.replace('_', ' ')}, ASC/ASCQ {sense.asc >> 8:02X}h/"
        f"{sense.asc & 0xFF:02X}h ({asc_name(sense.asc)})"
    )
    sks = sense_key_specific_words(sense.key, sense.sense_key_specific)
    if sks:
        head += f" {sks}"
    details = []
    flags = [name for name, on in (("FILEMARK", sense.filemark), ("EOM", sense.eom),
                                   ("ILI", sense.ili)) if on]
    if flags:
        details.append("+".join(flags))
    if sense.information is not None:
        if flags or sense.key == SenseKey.BLANK_CHECK:  # SSC: requested minus actual
            details.append(f"residue {sense.information_signed}")
        elif sense.key in (SenseKey.MEDIUM_ERROR, SenseKey.HARDWARE_ERROR) or (
            sense.asc == Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE
        ):
            details.append(f"at LBA {sense.information}")
        else:
            details.append(f"INFORMATION {sense.information}")
    if sense.key == SenseKey.COPY_ABORTED and sense.command_specific:
        details.append(f"COMMAND-SPECIFIC INFORMATION {sense.command_specific} "
                       "(for EXTENDED COPY: the segment being processed)")
    if details:
        head += f"; {', '.join(details)}"
    refusal = PolicyApart.decode(sense.vendor)
    advice = (refusal.advice() if refusal is not None
              else _ASC_ADVICE.get(sense.asc) or _KEY_ADVICE.get(sense.key, ""))
    return f"{head}: {advice}" if advice else head


def parse_sense(raw: bytes) -> SenseData | None:
    """SenseData from a sense buffer, or None when it is empty or not decodable (an
    unknown response code, a reserved sense key)."""
    if len(raw) < 8:
        return None
    try:
        return SenseData.parse(raw)
    except ValueError:  # SenseFormatError, or a reserved sense key
        return None


def _opcode_names() -> dict[tuple[int, int | None], str]:
    names: dict[tuple[int, int | None], str] = {}
    for module in (spc, sbc, ssc):
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Cdb) and obj is not Cdb:
                names.setdefault((obj.OPCODE, obj.SERVICE_ACTION), obj.NAME)
    names = {k: v for k, v in names.items() if k[0] != 0x34}  # three forms, one name
    names.update({
        (0x34, None): "READ POSITION",
        (0x83, None): "EXTENDED COPY",
        (0x84, None): "RECEIVE COPY RESULTS",
        (0xA0, None): "REPORT LUNS",
        (0x03, None): "REQUEST SENSE",
        (0x1D, None): "SEND DIAGNOSTIC",
        (0x1C, None): "RECEIVE DIAGNOSTIC RESULTS",
    })
    return names


_OPCODE_NAMES = _opcode_names()


def command_name(cdb: bytes) -> str:
    """``READ (10) (28h)``; the opcode alone when we have no name for it."""
    if not cdb:
        return "empty CDB"
    op = cdb[0]
    sa = cdb[1] & 0x1F if len(cdb) > 1 else None
    name = _OPCODE_NAMES.get((op, sa)) or _OPCODE_NAMES.get((op, None))
    return f"{name} ({op:02X}h)" if name else f"opcode {op:02X}h"


# --- results --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Result:
    """What one SG_IO command returned.

    ``data`` is the Data-In buffer trimmed by ``resid`` (empty for Data-Out and no-data
    commands); ``duration`` is in seconds as the kernel measured it (ms resolution);
    ``host_status``/``driver_status`` are the Linux host and driver bytes."""

    cdb: bytes
    status: int
    sense: SenseData | None
    data: bytes
    resid: int
    duration: float
    host_status: int = 0
    driver_status: int = 0
    requested: int = 0
    sense_bytes: bytes = b""
    info: int = 0

    @property
    def transferred(self) -> int:
        """Bytes that actually moved (dxfer_len minus resid)."""
        return self.requested - self.resid

    @property
    def good(self) -> bool:
        return self.status in _SUCCESS_STATUSES and not self.transport_failed

    @property
    def transport_failed(self) -> bool:
        return bool(self.host_status) or (self.driver_status & 0x0F) not in (0, DRIVER_SENSE)

    @property
    def status_name(self) -> str:
        return status_name(self.status)

    def explain(self) -> str:
        """The SCSI outcome in words (status, then the sense explained)."""
        if self.sense is not None:
            return f"{self.status_name}: {explain_sense(self.sense)}"
        if self.status == CHECK_CONDITION:
            raw = f" (undecodable sense {self.sense_bytes.hex(' ')})" if self.sense_bytes else ""
            return (f"CHECK CONDITION without usable sense data{raw}: send REQUEST SENSE "
                    "to learn why")
        advice = _STATUS_ADVICE.get(self.status)
        return f"{self.status_name}: {advice}" if advice else self.status_name


def _transport_words(result: Result) -> str:
    parts = []
    if result.host_status:
        name, words = HOST_STATUS.get(result.host_status, (f"host status {result.host_status:#x}",
                                                            "unknown host status"))
        parts.append(f"{words} ({name})")
    drv = result.driver_status & 0x0F
    if drv not in (0, DRIVER_SENSE):
        name = DRIVER_STATUS.get(drv, f"driver status {drv:#x}")
        parts.append("the command timed out (DRIVER_TIMEOUT)" if drv == DRIVER_TIMEOUT
                     else f"the kernel's SCSI driver reported {name}")
    return "; ".join(parts)


# --- the device -------------------------------------------------------------------------------
_NODE_HINT = "give /dev/sgN, /dev/sdX or /dev/nstN (`lsscsi -g` lists the SCSI devices)"


def _check_node(path: str) -> os.stat_result:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NotScsiDevice(f"{path}: no such file or device node; {_NODE_HINT}",
                            path) from None
    except OSError as e:
        raise DeviceUnavailable(f"{path}: {e.strerror}", path, e.errno) from None
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode)
                else "a regular file" if stat.S_ISREG(st.st_mode) else "not a device node")
        raise NotScsiDevice(f"{path} is {kind}, not a SCSI device node; {_NODE_HINT}", path)
    return st


def _open_error(path: str, e: OSError) -> SgIoError:
    if e.errno == errno.EBUSY:
        return DeviceUnavailable(
            f"{path} is busy: another process has it open (the st driver allows one open "
            "per tape drive: mt, tar or dd?); wait for it, or use the drive's /dev/sgN",
            path, e.errno)
    if e.errno in (errno.EACCES, errno.EPERM):
        return DeviceUnavailable(
            f"{path}: permission denied; SG_IO needs root (CAP_SYS_RAWIO) or write access "
            f"to the node (see `ls -l {path}`)", path, e.errno)
    if e.errno in (errno.ENXIO, errno.ENODEV):
        return DeviceUnavailable(
            f"{path}: no device behind this node (it went away?); `lsscsi -g` lists what "
            "is there now", path, e.errno)
    if e.errno == errno.ENOMEDIUM:
        return DeviceUnavailable(f"{path}: no medium loaded; load one, or open the /dev/sgN "
                                 "node", path, e.errno)
    return DeviceUnavailable(f"{path}: cannot open: {e.strerror}", path, e.errno)


class _PageBuffer:
    """The data phase's buffer: page-aligned anonymous memory. The block layer (SG_IO on
    sd and st nodes) maps a user buffer page by page, one segment each; a buffer that
    does not start on a page spans one page more than its length and a 1 MiB transfer
    then exceeds a queue's 256 segments (EINVAL). Aligned, it is also mapped without a
    copy."""

    def __init__(self, length: int, fill: bytes | bytearray | memoryview | None = None):
        self.mm = mmap.mmap(-1, length)
        if fill is not None:
            self.mm[:] = fill
        self._array: ctypes.Array[ctypes.c_char] | None = (
            ctypes.c_char * length).from_buffer(self.mm)
        self.address = ctypes.addressof(self._array)

    def read(self, n: int) -> bytes:
        return self.mm[:n]

    def close(self) -> None:
        self._array = None  # release the export before unmapping
        self.mm.close()


class ScsiDevice:
    """One SCSI logical unit reached through SG_IO on a device node.

    Opens ``path`` read-write (read-only when the node refuses writing, e.g. a
    write-protected disk) with ``O_NONBLOCK``, and checks with ``SG_GET_VERSION_NUM``
    that the node answers SG ioctls; a regular file or another driver's node raises
    :class:`NotScsiDevice`."""

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False):
        self.path = os.fspath(path)
        self.fd = -1
        #: Data-In / Data-Out bytes and commands this handle moved through SG_IO.
        self.bytes_in = 0
        self.bytes_out = 0
        self.commands = 0
        _check_node(self.path)
        flags = os.O_NONBLOCK | os.O_CLOEXEC | (os.O_RDONLY if read_only else os.O_RDWR)
        try:
            self.fd = os.open(self.path, flags)
        except OSError as e:
            if read_only or e.errno != errno.EROFS:
                raise _open_error(self.path, e) from None
            try:
                self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as e2:
                raise _open_error(self.path, e2) from None
        try:
            self.sg_version = self._probe()
        except BaseException:
            self.close()
            raise

    def _probe(self) -> int:
        buf = bytearray(4)
        try:
            _ioctl(self.fd, SG_GET_VERSION_NUM, buf, True)  # noqa: FBT003
        except OSError as e:
            if e.errno in (errno.ENOTTY, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise NotScsiDevice(
                    f"{self.path} does not answer SG ioctls ({errno.errorcode.get(e.errno)}): "
                    f"it is not a SCSI device node; {_NODE_HINT}", self.path) from None
            raise DeviceUnavailable(f"{self.path}: SG_GET_VERSION_NUM failed: {e.strerror}",
                                    self.path, e.errno) from None
        return int.from_bytes(buf, "little")

    # --- life cycle ---
    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def fileno(self) -> int:
        return self.fd

    def __del__(self) -> None:
        if getattr(self, "fd", -1) >= 0:
            os.close(self.fd)

    def __enter__(self) -> ScsiDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ScsiDevice({self.path!r}{'' if self.fd >= 0 else ', closed'})"

    # --- commands ---
    def execute(self, cdb: bytes | bytearray | memoryview, data_in: int = 0,
                data_out: bytes | bytearray | memoryview | None = None,
                timeout: float = 60, *, check: bool = True) -> Result:
        """Send ``cdb``; receive up to ``data_in`` bytes or send ``data_out`` (one
        direction per command). ``timeout`` is in seconds; the kernel aborts the
        command when it expires (the error handler may then reset the device).

        Raises :class:`TransportFailure` when the command did not complete (host or
        driver error: no SCSI status to trust), and — when ``check`` — a
        :class:`ScsiCommandError` for any status but GOOD / CONDITION MET; a CHECK
        CONDITION with RECOVERED ERROR counts as success (the sense is in the Result).
        With ``check=False`` the Result comes back whatever the status."""
        if self.fd < 0:
            raise SgIoUsageError(f"{self.path}: the device is closed", self.path)
        cdb = bytes(cdb)
        _validate(cdb, data_in, data_out, timeout)
        cdb_buf = ctypes.create_string_buffer(cdb, len(cdb))
        sense_buf = ctypes.create_string_buffer(SENSE_BUFFER_LENGTH)
        direction, length, fill = SG_DXFER_NONE, 0, None
        if data_out is not None and len(data_out):
            length, direction, fill = len(data_out), SG_DXFER_TO_DEV, data_out
        elif data_in:
            length, direction = data_in, SG_DXFER_FROM_DEV
        data_buf = _PageBuffer(length, fill) if length else None
        try:
            hdr = SgIoHdr(
                dxfer_direction=direction, cmd_len=len(cdb), mx_sb_len=SENSE_BUFFER_LENGTH,
                dxfer_len=length, dxferp=data_buf.address if data_buf else 0,
                cmdp=ctypes.addressof(cdb_buf), sbp=ctypes.addressof(sense_buf),
                timeout=min(MAX_TIMEOUT_MS, max(1, math.ceil(timeout * 1000))),
            )
            try:
                out = _sg_io(self.fd, hdr)
            except OSError as e:
                raise self._ioctl_error(cdb, length, e) from None
            resid = min(max(out.resid, 0), length)
            data = b""
            if direction == SG_DXFER_FROM_DEV and data_buf:
                data = data_buf.read(length - resid)
        finally:
            if data_buf:
                data_buf.close()
        sb_len = min(out.sb_len_wr, SENSE_BUFFER_LENGTH)
        sense_bytes = sense_buf.raw[:sb_len]
        result = Result(
            cdb=cdb, status=out.status, sense=parse_sense(sense_bytes), data=data, resid=resid,
            duration=out.duration / 1000, host_status=out.host_status,
            driver_status=out.driver_status, requested=length, sense_bytes=sense_bytes,
            info=out.info,
        )
        self.commands += 1
        if direction == SG_DXFER_FROM_DEV:
            self.bytes_in += result.transferred
        elif direction == SG_DXFER_TO_DEV:
            self.bytes_out += result.transferred
        if result.transport_failed:
            raise TransportFailure(
                f"{command_name(cdb)} on {self.path} did not complete: "
                f"{_transport_words(result)}. Check the kernel log (dmesg) here, and on the "
                "target host that the lio-xcopy daemon is running and serving the LUN",
                self.path, result)
        if check and not result.good and not (
            result.status == CHECK_CONDITION and result.sense is not None
            and result.sense.key == SenseKey.RECOVERED_ERROR
        ):
            raise ScsiCommandError(
                f"{command_name(cdb)} on {self.path} failed: {result.explain()} "
                f"[CDB {cdb.hex(' ')}]", self.path, result)
        return result

    def _ioctl_error(self, cdb: bytes, length: int, e: OSError) -> SgIoError:
        what = f"SG_IO {command_name(cdb)} on {self.path} failed: {e.strerror}"
        if e.errno == errno.EINVAL:
            return TransportFailure(
                f"{what}: the kernel refused the request; a transfer of {length} bytes may "
                "exceed the queue's limits (max_sectors_kb, max_segments in "
                "/sys/block/sdX/queue/; the sg node has fewer), or the CDB is malformed",
                self.path, errno_=e.errno)
        if e.errno == errno.EPERM:
            return TransportFailure(
                f"{what}: the kernel filters this command for unprivileged users or "
                "read-only opens; run as root or open the node read-write",
                self.path, errno_=e.errno)
        if e.errno == errno.ENOMEM:
            return TransportFailure(
                f"{what}: the kernel could not allocate a buffer of {length} bytes; send "
                "smaller transfers", self.path, errno_=e.errno)
        if e.errno in (errno.ENODEV, errno.ENXIO):
            return TransportFailure(f"{what}: the device went away", self.path,
                                    errno_=e.errno)
        if e.errno == errno.ENOTTY:
            return NotScsiDevice(f"{what}: the node does not do SG_IO; {_NODE_HINT}",
                                 self.path)
        return TransportFailure(what, self.path, errno_=e.errno)

    def reset(self, what: int = SG_SCSI_RESET_DEVICE) -> None:
        """Have the kernel's error handler reset the logical unit (``SG_SCSI_RESET``,
        sg only; root): the LLD sends LOGICAL UNIT RESET, the commands in flight end,
        and the device reports the reset to every initiator by a unit attention."""
        if self.fd < 0:
            raise SgIoUsageError(f"{self.path}: the device is closed", self.path)
        try:
            _ioctl(self.fd, SG_SCSI_RESET, bytearray(struct.pack("i", what)), True)  # noqa: FBT003
        except OSError as e:
            raise DeviceUnavailable(f"{self.path}: SG_SCSI_RESET failed: {e.strerror}",
                                    self.path, e.errno) from None

    # --- convenience ---
    def test_unit_ready(self, timeout: float = 30) -> None:
        """TEST UNIT READY; raises :class:`ScsiCommandError` (NOT READY, UNIT ATTENTION)."""
        self.execute(spc.TestUnitReady().encode(), timeout=timeout)

    def take_unit_attentions(self, limit: int = 5) -> list[SenseData]:
        """TEST UNIT READY until it reports no UNIT ATTENTION (SPC-4 5.9: LUNs added,
        power on, a new cartridge), at most ``limit`` times; the unit attentions taken.
        Other errors (NOT READY) are left for the next command to meet."""
        seen: list[SenseData] = []
        for _ in range(limit):
            try:
                self.test_unit_ready()
            except ScsiCommandError as e:
                if e.key != SenseKey.UNIT_ATTENTION or e.sense is None:
                    break
                seen.append(e.sense)
                continue
            break
        return seen

    def inquiry(self) -> spc.StandardInquiry:
        """Standard INQUIRY data."""
        data = self.execute(spc.Inquiry(allocation_length=0xFF).encode(), data_in=0xFF).data
        if len(data) >= 5:
            data = data[: 5 + data[4]]
        try:
            return spc.StandardInquiry.parse(data)
        except spc.InquiryFormatError as e:
            raise SgIoError(str(e)) from None

    def peripheral_device_type(self) -> int:
        """0 disk, 1 tape, 8 medium changer, ... (SPC-4 Table 142)."""
        return self.inquiry().device_type

    def vpd(self, page: int) -> bytes:
        """A VPD page with its 4-byte header (SPC-4 7.8); re-read when longer than 255."""
        if not 0 <= page <= 0xFF:
            raise SgIoUsageError(f"VPD page {page:#x}: page codes are 00h-FFh", self.path)
        alloc = 0xFF
        while True:
            data = self.execute(spc.Inquiry(evpd=1, page_code=page,
                                            allocation_length=alloc).encode(),
                                data_in=alloc).data
            if len(data) < 4 or data[1] != page:
                raise SgIoError(f"{self.path} returned {len(data)} bytes for VPD page "
                                f"{page:02X}h, not that page (does it ignore EVPD?)", self.path)
            full = 4 + int.from_bytes(data[2:4], "big")
            if full <= alloc or alloc == 0xFFFF:
                return data[:full]
            alloc = min(full, 0xFFFF)

    def unit_serial_number(self) -> str:
        """Unit Serial Number VPD page (80h)."""
        return spc.parse_vpd_unit_serial(self.vpd(0x80))

    def device_identification(self) -> list[Designator]:
        """Every designator of the Device Identification VPD page (83h)."""
        return Designator.parse_all(self.vpd(0x83))

    def naa(self) -> bytes | None:
        """The NAA designator of the logical unit (association 0), or None."""
        for d in self.device_identification():
            if d.designator_type == 3 and d.association == 0:
                return d.value
        return None

    def read_capacity16(self) -> sbc.Capacity16:
        """READ CAPACITY (16) (SBC-4 5.18), for disks."""
        cdb = sbc.ReadCapacity16(allocation_length=sbc.READ_CAPACITY_16_LENGTH).encode()
        data = self.execute(cdb, data_in=sbc.READ_CAPACITY_16_LENGTH).data
        try:
            return sbc.Capacity16.parse(data)
        except sbc.CapacityFormatError as e:
            raise SgIoError(str(e)) from None

    def nodes(self, sysfs_root: str | os.PathLike[str] = "/sys") -> ScsiNodes:
        """This device's H:C:T:L and sibling nodes (see :func:`scsi_nodes`)."""
        return scsi_nodes(self.path, sysfs_root=sysfs_root)


def _validate(cdb: bytes, data_in: int, data_out: object, timeout: float) -> None:
    if not 6 <= len(cdb) <= 16:
        raise SgIoUsageError(f"CDB of {len(cdb)} bytes: SG_IO takes 6 to 16")
    want = cdb_length(cdb[0])
    if want and want != len(cdb):
        raise SgIoUsageError(f"CDB {cdb.hex(' ')}: opcode {cdb[0]:02X}h is a {want}-byte "
                             f"command (SPC-4 4.2.5.1), got {len(cdb)} bytes")
    if isinstance(data_in, bool) or not isinstance(data_in, int):
        raise SgIoUsageError(f"data_in={data_in!r}: give the Data-In length in bytes")
    if not 0 <= data_in <= MAX_TRANSFER:
        raise SgIoUsageError(f"data_in={data_in}: must be 0 to {MAX_TRANSFER} bytes")
    if data_out is not None:
        if not isinstance(data_out, bytes | bytearray | memoryview):
            raise SgIoUsageError(f"data_out must be bytes, not {type(data_out).__name__}")
        if len(data_out) > MAX_TRANSFER:
            raise SgIoUsageError(f"data_out of {len(data_out)} bytes: at most {MAX_TRANSFER}")
        if len(data_out) and data_in:
            raise SgIoUsageError("a command moves data one way: give data_in or data_out, "
                                 "not both (SG_IO has no bidirectional transfers)")
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise SgIoUsageError(f"timeout={timeout!r}: give a positive number of seconds")


# --- sysfs: which device is it, and what crossed it ------------------------------------------
HCTL = re.compile(r"\d+:\d+:\d+:\d+")


@dataclass(frozen=True, slots=True)
class ScsiNodes:
    """A SCSI device as sysfs shows it: H:C:T:L and its nodes under ``dev_root``."""

    hctl: str
    sysfs: Path  # the SCSI device's directory (/sys/bus/scsi/devices/H:C:T:L)
    device_type: int | None
    sg: Path | None
    block: Path | None
    tape: Path | None  # the non-rewinding /dev/nstN


def _by_name(name: str, sysfs: Path) -> Path | None:
    """The class device directory of a node name (sg1, sdb, sdb1, nst0, st0l)."""
    if re.fullmatch(r"sg\d+", name):
        cand = sysfs / "class" / "scsi_generic" / name
    elif re.fullmatch(r"n?st\d+[lma]?", name):
        cand = sysfs / "class" / "scsi_tape" / name
    else:
        cand = sysfs / "class" / "block" / name
    return cand if cand.exists() else None


def _by_number(st: os.stat_result, sysfs: Path) -> Path | None:
    kind = "char" if stat.S_ISCHR(st.st_mode) else "block"
    cand = sysfs / "dev" / kind / f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return cand if cand.exists() else None


BLKSECTGET = 0x1267


def max_transfer_bytes(path: str | os.PathLike[str]) -> int | None:
    """The largest transfer one command may carry through the sg node ``path``: the
    sg driver answers BLKSECTGET with its request queue's limit, in bytes (SG_IO refuses
    a larger one). None when the node cannot say (not an sg node, gone)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        got = _ioctl(fd, BLKSECTGET, struct.pack("i", 0))
        value: int = struct.unpack("i", got)[0]
        return value if value > 0 else None
    except OSError:
        return None
    finally:
        os.close(fd)


def scsi_device_dir(path: str | os.PathLike[str], *, sysfs_root: str | os.PathLike[str] = "/sys",
                    dev_root: str | os.PathLike[str] = "/dev") -> Path:
    """The sysfs directory (named H:C:T:L) of the SCSI device behind a node.

    ``path`` is a node (``/dev/sg1``, ``/dev/sdb``, ``/dev/sdb1``, ``/dev/nst0``, or a
    udev symlink to one), a bare node name (``sg1``) or ``H:C:T:L``. An existing node is
    found by its device number (``/sys/dev/{char,block}/M:m``); a name under ``dev_root``
    that does not exist here is looked up by name (``/sys/class/...``)."""
    sysfs = Path(sysfs_root)
    spath = os.fspath(path)
    if HCTL.fullmatch(spath):
        d = sysfs / "bus" / "scsi" / "devices" / spath
        if d.exists():
            return d.resolve()
        raise NotScsiDevice(f"no SCSI device {spath} in {sysfs}/bus/scsi/devices", spath)
    cls_dir: Path | None = None
    if os.path.lexists(spath):
        real = os.path.realpath(spath)
        st = _check_node(real)
        cls_dir = _by_number(st, sysfs) or _by_name(os.path.basename(real), sysfs)
    elif os.sep not in spath or os.path.dirname(os.path.abspath(spath)) == os.path.abspath(
        dev_root
    ):
        cls_dir = _by_name(os.path.basename(spath), sysfs)
        if cls_dir is None:
            raise NotScsiDevice(f"{spath}: no such device node; {_NODE_HINT}", spath)
    if cls_dir is None:
        raise NotScsiDevice(f"{spath}: not found in {sysfs}; {_NODE_HINT}", spath)
    cls_dir = cls_dir.resolve()
    if (cls_dir / "partition").exists():  # /dev/sdb1: the disk is the parent
        cls_dir = cls_dir.parent
    dev = cls_dir / "device"
    target = dev.resolve() if dev.exists() else None
    if target is None or not HCTL.fullmatch(target.name):
        raise NotScsiDevice(f"{spath} is a device of another kind (not SCSI: "
                            f"{cls_dir.name}); {_NODE_HINT}", spath)
    return target


def scsi_nodes(path: str | os.PathLike[str], *, sysfs_root: str | os.PathLike[str] = "/sys",
               dev_root: str | os.PathLike[str] = "/dev") -> ScsiNodes:
    """Map any node of a SCSI device (or its H:C:T:L) to all of them: its sg node, its
    sd disk, its non-rewinding st tape."""
    d = scsi_device_dir(path, sysfs_root=sysfs_root, dev_root=dev_root)
    dev = Path(dev_root)

    def first(sub: str, pattern: str) -> str | None:
        try:
            names = sorted(p.name for p in (d / sub).iterdir())
        except OSError:
            return None
        return next((n for n in names if re.fullmatch(pattern, n)), None)

    sg, blk, st = first("scsi_generic", r"sg\d+"), first("block", r"sd[a-z]+"), first(
        "scsi_tape", r"st\d+")
    try:
        dtype: int | None = int((d / "type").read_text().strip())
    except (OSError, ValueError):
        dtype = None
    return ScsiNodes(
        hctl=d.name, sysfs=d, device_type=dtype,
        sg=dev / sg if sg else None, block=dev / blk if blk else None,
        tape=dev / f"n{st}" if st else None,
    )


@dataclass(frozen=True, slots=True)
class IoCounters:
    """The kernel's counters for one SCSI device, as the initiator sees it.

    ``read_bytes``/``written_bytes`` count what the sd driver (``/sys/block/sdX/stat``,
    sectors x 512) or the st driver (``stats/read_byte_cnt``, ``write_byte_cnt``) moved;
    ``source`` says which (``"sd"``, ``"st"``, or ``""`` for devices with neither).
    ``requests``/``completed``/``errors`` are the midlayer's ``iorequest_cnt``,
    ``iodone_cnt`` and ``ioerr_cnt``: every command dispatched to the device, SG_IO
    pass-through included. Subtract two snapshots for what crossed in between."""

    hctl: str
    source: str
    read_bytes: int
    written_bytes: int
    requests: int
    completed: int
    errors: int

    @property
    def total_bytes(self) -> int:
        return self.read_bytes + self.written_bytes

    def __sub__(self, before: IoCounters) -> IoCounters:
        if before.hctl != self.hctl:
            raise ValueError(f"counters of {before.hctl} and {self.hctl} do not subtract")
        return IoCounters(
            self.hctl, self.source, self.read_bytes - before.read_bytes,
            self.written_bytes - before.written_bytes, self.requests - before.requests,
            self.completed - before.completed, self.errors - before.errors,
        )

    def describe(self) -> str:
        via = f" via {self.source}" if self.source else ""
        return (f"{self.hctl}: read {_size(self.read_bytes)}, wrote "
                f"{_size(self.written_bytes)}{via}; {self.requests} SCSI commands "
                f"({self.errors} failed)")


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _read_count(path: Path) -> int:
    """A sysfs counter: decimal, or hex with 0x (the iostat counters)."""
    try:
        return int(path.read_text().strip(), 0)
    except FileNotFoundError:
        return 0
    except ValueError as e:
        raise SgIoError(f"{path}: not a counter ({e})") from None


def io_counters(path: str | os.PathLike[str], *, sysfs_root: str | os.PathLike[str] = "/sys",
                dev_root: str | os.PathLike[str] = "/dev") -> IoCounters:
    """The counters of the SCSI device behind ``path`` (any of its nodes, or H:C:T:L)."""
    d = scsi_device_dir(path, sysfs_root=sysfs_root, dev_root=dev_root)
    read = written = 0
    source = ""
    blocks = sorted((d / "block").glob("sd*")) if (d / "block").is_dir() else []
    tapes = sorted((d / "scsi_tape").glob("st*")) if (d / "scsi_tape").is_dir() else []
    tapes = [t for t in tapes if re.fullmatch(r"st\d+", t.name)] or tapes
    if blocks:
        try:
            stat_fields = (blocks[0] / "stat").read_text().split()
        except OSError as e:
            raise SgIoError(f"{blocks[0]}/stat: {e.strerror}") from None
        if len(stat_fields) < 7:
            raise SgIoError(f"{blocks[0]}/stat: {len(stat_fields)} fields, expected 11 or more")
        # Documentation/block/stat.rst: sectors are 512 bytes whatever the block size
        read, written = int(stat_fields[2]) * 512, int(stat_fields[6]) * 512
        source = "sd"
    elif tapes and (tapes[0] / "stats").is_dir():
        read = _read_count(tapes[0] / "stats" / "read_byte_cnt")
        written = _read_count(tapes[0] / "stats" / "write_byte_cnt")
        source = "st"
    return IoCounters(
        hctl=d.name, source=source, read_bytes=read, written_bytes=written,
        requests=_read_count(d / "iorequest_cnt"), completed=_read_count(d / "iodone_cnt"),
        errors=_read_count(d / "ioerr_cnt"),
    )
