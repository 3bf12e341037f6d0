"""SCSI pass-through: the Linux SG_IO ioctl, and what crossed the wire.

:class:`SgIoDevice` sends one CDB at a time through ``SG_IO`` (``include/scsi/sg.h``,
version 3 interface) and returns a :class:`Result`, or raises an error whose message
says in words what the device answered and what to do next::

    with SgIoDevice("/dev/sg1") as dev:
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
  waits for the command). st allows **one open at a time**: while a :class:`SgIoDevice`
  holds ``/dev/nstN``, ``mt``/``tar`` on it fail with EBUSY, and the other way round —
  use the drive's ``/dev/sgN`` to talk to it next to them (:func:`scsi_nodes` finds it).

What crossed the initiator. :func:`io_counters` reads the kernel's counters for the
SCSI device behind any of its nodes: bytes moved by the sd or st upper driver
(``/sys/block/sdX/stat`` sectors x 512, ``/sys/class/scsi_tape/stN/stats/*_byte_cnt``)
and the midlayer's command counts (``iorequest_cnt``, ``iodone_cnt``, ``ioerr_cnt``),
which include pass-through commands. Data moved *by* ``SG_IO`` is in no byte
counter of the kernel (sd and st count only their own I/O, the block layer does not
account pass-through requests): :class:`SgIoDevice` counts it itself
(:attr:`SgIoDevice.bytes_in`, :attr:`SgIoDevice.bytes_out`). st adds a read as its
requested length minus the residual the target reported.

The sg driver's ABI is :mod:`lio_xcopy.sg._sg_h` (``struct sg_io_hdr`` packed with
:mod:`struct`, 88 bytes on 64-bit Linux); the data buffer handed to the kernel is
page-aligned (:class:`_PageBuffer`); the sysfs lookups are :mod:`lio_xcopy.sg.sysfs`;
the protocol this device implements, its results and errors are
:mod:`lio_xcopy.sg.transport`. The names callers use are importable from here.
"""

from __future__ import annotations

import ctypes
import errno
import math
import mmap
import os
import struct

from lio_xcopy.scsi.cdb import cdb_length
from lio_xcopy.scsi.sense import SenseData, parse_sense
from lio_xcopy.sg import _sg_h
from lio_xcopy.sg._sg_h import (
    DRIVER_TIMEOUT,
    MAX_TIMEOUT_MS,
    MAX_TRANSFER,
    SENSE_BUFFER_LENGTH,
    SG_DXFER_FROM_DEV,
    SG_DXFER_NONE,
    SG_DXFER_TO_DEV,
    SG_GET_VERSION_NUM,
    SG_IO,
    SG_SCSI_RESET,
    SG_SCSI_RESET_DEVICE,
    SgIoHdr,
    hdr_struct,
    host_driver_words,
)
from lio_xcopy.sg.sysfs import (
    NODE_HINT,
    IoCounters,
    ScsiNodes,
    check_node,
    io_counters,
    max_transfer_bytes,
    scsi_device_dir,
    scsi_nodes,
)
from lio_xcopy.sg.transport import (
    DeviceUnavailable,
    NotScsiDevice,
    Result,
    ScsiCommandError,
    ScsiTransport,
    SgIoError,
    SgIoUsageError,
    TransportFailure,
    checked,
)

__all__ = [
    "DRIVER_TIMEOUT",
    "MAX_TIMEOUT_MS",
    "SENSE_BUFFER_LENGTH",
    "SG_DXFER_FROM_DEV",
    "SG_DXFER_NONE",
    "SG_DXFER_TO_DEV",
    "SG_GET_VERSION_NUM",
    "SG_IO",
    "SG_SCSI_RESET_DEVICE",
    "DeviceUnavailable",
    "IoCounters",
    "NotScsiDevice",
    "Result",
    "ScsiCommandError",
    "ScsiNodes",
    "ScsiTransport",
    "SgIoDevice",
    "SgIoError",
    "SgIoHdr",
    "SgIoUsageError",
    "TransportFailure",
    "command_name",
    "explain_sense",
    "hdr_struct",
    "io_counters",
    "max_transfer_bytes",
    "parse_sense",
    "scsi_device_dir",
    "scsi_nodes",
]


def explain_sense(sense: SenseData) -> str:
    """:func:`lio_xcopy.scsi.explain.explain_sense`, imported when first worded (it
    brings every command table of SPC, SBC and SSC)."""
    from lio_xcopy.scsi.explain import explain_sense as explain

    return explain(sense)


def command_name(cdb: bytes) -> str:
    """:func:`lio_xcopy.scsi.explain.command_name`, imported when first worded."""
    from lio_xcopy.scsi.explain import command_name as name

    return name(cdb)


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


class SgIoDevice(ScsiTransport):
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
        check_node(self.path)
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
            _sg_h.ioctl(self.fd, SG_GET_VERSION_NUM, buf, True)  # noqa: FBT003
        except OSError as e:
            if e.errno in (errno.ENOTTY, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise NotScsiDevice(
                    f"{self.path} does not answer SG ioctls ({errno.errorcode.get(e.errno)}): "
                    f"it is not a SCSI device node; {NODE_HINT}", self.path) from None
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

    def __enter__(self) -> SgIoDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SgIoDevice({self.path!r}{'' if self.fd >= 0 else ', closed'})"

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
                out = _sg_h.sg_io(self.fd, hdr)
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
                f"{host_driver_words(result.host_status, result.driver_status)}. Check the "
                "kernel log (dmesg) here, and on the target host that the lio-xcopy daemon "
                "is running and serving the LUN",
                self.path, result)
        return checked(result, self.path) if check else result

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
            return NotScsiDevice(f"{what}: the node does not do SG_IO; {NODE_HINT}",
                                 self.path)
        return TransportFailure(what, self.path, errno_=e.errno)

    def reset(self, what: int = SG_SCSI_RESET_DEVICE) -> None:
        """Have the kernel's error handler reset the logical unit (``SG_SCSI_RESET``,
        sg only; root): the LLD sends LOGICAL UNIT RESET, the commands in flight end,
        and the device reports the reset to every initiator by a unit attention."""
        if self.fd < 0:
            raise SgIoUsageError(f"{self.path}: the device is closed", self.path)
        try:
            _sg_h.ioctl(self.fd, SG_SCSI_RESET, bytearray(struct.pack("i", what)), True)  # noqa: FBT003
        except OSError as e:
            raise DeviceUnavailable(f"{self.path}: SG_SCSI_RESET failed: {e.strerror}",
                                    self.path, e.errno) from None

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

