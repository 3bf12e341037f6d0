"""Copy ends on SCSI devices this daemon does not serve, reached through SG_IO.

:class:`ForeignDisk` is a block port over READ (16)/WRITE (16) (SBC-4 5.15, 5.39) in
transfers as large as the device and the kernel's queue take; :class:`ForeignTape` a
stream port over READ (6)/WRITE (6) (SSC-4) in the drive's variable or fixed block mode.
Both report the foreign device's conditions as the copy manager's ports do
(:mod:`lio_xcopy.copy.ports`): the SSC-4 stream conditions as the exceptions of
:mod:`lio_xcopy.scsi.ssc`, any other CHECK CONDITION as a
:class:`~lio_xcopy.scsi.errors.CheckCondition` carrying the device's sense bytes
verbatim (``raw_sense``), and a command that did not complete (the device went away, its
session died, the SG_IO timeout fired) as :class:`~lio_xcopy.scsi.errors.TargetUnreachable`.

:class:`ForeignDevices` finds them: it enumerates the target host's sg nodes
(``/sys/class/scsi_generic``), reads each device's Device Identification VPD page and
keeps, for each designator the operator admitted, the node that reported it. Before a
copy uses a node it reads the page again on that node: a renumbered ``/dev/sgN`` is
refused, never followed.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lio_xcopy.devices import members
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.errors import ConfigError
from lio_xcopy.scsi import sbc, spc, ssc
from lio_xcopy.scsi.errors import CheckCondition, TargetUnreachable
from lio_xcopy.scsi.sense import BUSY, CHECK_CONDITION, TASK_SET_FULL, Asc, SenseData, SenseKey
from lio_xcopy.scsi.spc import Designator
from lio_xcopy.sg import sgio

log = logging.getLogger(__name__)

DEFAULT_MAX_TRANSFER = 1 << 20  # bytes per READ/WRITE (16) when nothing says otherwise
DISK_TIMEOUT = 30.0  # seconds per READ/WRITE (16): sd's SD_TIMEOUT
TAPE_TIMEOUT = 900.0  # seconds per READ/WRITE (6): st's ST_TIMEOUT
INQUIRY_TIMEOUT = 10.0
UNIT_ATTENTION_RETRIES = 3  # a disk's unit attention: the command did not run; send again
BUSY_RETRIES = 10  # BUSY / TASK SET FULL: sent again up to this many times, waiting
BUSY_FIRST_WAIT, BUSY_LONGEST_WAIT = 0.01, 1.0  # seconds: doubling, ~4 s in all
_DID_TIME_OUT, _DID_ABORT, _DRIVER_TIMEOUT = 0x03, 0x05, 0x06


class Transport(Protocol):
    """One SCSI device node that runs CDBs (:class:`lio_xcopy.sg.sgio.SgIoDevice`)."""

    path: str

    def execute(self, cdb: bytes | bytearray | memoryview, data_in: int = 0,
                data_out: bytes | bytearray | memoryview | None = None,
                timeout: float = 60, *, check: bool = True) -> sgio.Result: ...

    def close(self) -> None: ...


Opener = Callable[[str], Transport]


def _timed_out(e: sgio.TransportFailure) -> bool:
    r = e.result
    return r is not None and (r.host_status in (_DID_TIME_OUT, _DID_ABORT)
                              or r.driver_status & 0x0F == _DRIVER_TIMEOUT)


def run(transport: Transport, cdb: bytes, *, data_in: int = 0,
        data_out: bytes | bytearray | memoryview | None = None,
        timeout: float, label: str) -> sgio.Result:
    """Run one CDB and return its Result whatever the SCSI status; a command that did
    not complete raises :class:`TargetUnreachable`. BUSY and TASK SET FULL (SAM-5 5.3:
    the device did not run the command, and it may be sent again) are retried
    :data:`BUSY_RETRIES` times with a growing wait before the status is returned."""
    wait, retries = BUSY_FIRST_WAIT, 0
    while True:
        try:
            r = transport.execute(cdb, data_in, data_out, timeout, check=False)
        except sgio.TransportFailure as e:
            raise TargetUnreachable(f"{label}: {e}", timed_out=_timed_out(e)) from e
        except sgio.SgIoError as e:  # closed, gone, refused by the kernel
            raise TargetUnreachable(f"{label}: {e}") from e
        if r.status not in (BUSY, TASK_SET_FULL) or retries == BUSY_RETRIES:
            return r
        log.info("%s: %s; sending it again in %.2f s", label, r.explain(), wait)
        time.sleep(wait)
        wait, retries = min(2 * wait, BUSY_LONGEST_WAIT), retries + 1


def _succeeded(r: sgio.Result) -> bool:
    return r.good or (r.status == CHECK_CONDITION and r.sense is not None
                      and r.sense.key == SenseKey.RECOVERED_ERROR)


def relay(r: sgio.Result, label: str, *, transferred: int | None = None) -> CheckCondition:
    """A foreign command's failure as a CheckCondition that carries the device's sense
    bytes verbatim. A status other than CHECK CONDITION (BUSY, RESERVATION CONFLICT,
    TASK SET FULL) or sense that cannot be decoded is ABORTED COMMAND, THIRD PARTY
    DEVICE FAILURE (SPC-4 Annex D) with the bytes it did send."""
    if r.status == CHECK_CONDITION and r.sense is not None:
        sense = r.sense
    else:
        sense = SenseData(SenseKey.ABORTED_COMMAND, Asc.THIRD_PARTY_DEVICE_FAILURE)
    return CheckCondition(sense, transferred=transferred, raw_sense=r.sense_bytes or None,
                          message=f"{label}: {r.explain()}")


def read_designators(transport: Transport, label: str) -> list[Designator]:
    """Every designator of the device's Device Identification VPD page (SPC-4 7.8.6)."""
    alloc = 0xFFFF
    r = run(transport, spc.Inquiry(evpd=1, page_code=0x83, allocation_length=alloc).encode(),
            data_in=alloc, timeout=INQUIRY_TIMEOUT, label=label)
    if not _succeeded(r) or len(r.data) < 4 or r.data[1] != 0x83:
        raise relay(r, f"{label}: VPD page 83h")
    return Designator.parse_all(r.data)


def _inquire(transport: Transport, page: int | None, label: str) -> bytes | None:
    """Standard INQUIRY data, or a VPD page; None when the device refuses it."""
    cdb = (spc.Inquiry(allocation_length=0xFF) if page is None
           else spc.Inquiry(evpd=1, page_code=page, allocation_length=0xFF)).encode()
    r = run(transport, cdb, data_in=0xFF, timeout=INQUIRY_TIMEOUT, label=label)
    return r.data if _succeeded(r) and len(r.data) >= 4 else None


class _ForeignPort:
    """What both kinds share: the node, its identity, the commands' timeout."""

    def __init__(self, transport: Transport, device_type: int,
                 designators: Sequence[Designator], label: str, timeout: float):
        self.transport = transport
        self._type = device_type
        self._designators = list(designators)
        self._label = label
        self.timeout = timeout

    @property
    def name(self) -> str:
        return self._label

    @property
    def peripheral_device_type(self) -> int:
        return self._type

    def designators(self) -> list[Designator]:
        return list(self._designators)

    def close(self) -> None:
        self.transport.close()

    def _run(self, cdb: bytes, *, data_in: int = 0,
             data_out: bytes | bytearray | memoryview | None = None) -> sgio.Result:
        return run(self.transport, cdb, data_in=data_in, data_out=data_out,
                   timeout=self.timeout, label=self._label)

    def check_ready(self) -> None:
        """TEST UNIT READY (SPC-4 6.47), for a verify CSCD segment with TUR set: the
        device's CHECK CONDITION (NOT READY, a unit attention, ...) relayed."""
        r = self._run(spc.TestUnitReady().encode())
        if not _succeeded(r):
            raise relay(r, self._label)


def _contiguous(buf: DataBuffer, start: int, length: int) -> bytes | memoryview:
    views = buf.slices(start, length)
    return views[0] if len(views) == 1 else b"".join(views)


class ForeignDisk(_ForeignPort):
    """A block port onto a direct-access device through SG_IO: READ (16)/WRITE (16)
    (SBC-4 5.15/5.39) of at most :attr:`max_blocks` blocks each."""

    def __init__(self, transport: Transport, designators: Sequence[Designator], label: str,
                 *, block_size: int, blocks: int, max_transfer: int = DEFAULT_MAX_TRANSFER,
                 device_type: int = spc.TYPE_DISK, timeout: float = DISK_TIMEOUT):
        super().__init__(transport, device_type, designators, label, timeout)
        self.block_size = block_size
        self.blocks = blocks
        self.max_blocks = max(1, max_transfer // block_size)

    def _transfer(self, layout: type, lba: int, count: int, buf: DataBuffer, *, write: bool) -> int:
        bs = self.block_size
        done = 0
        while done < count:
            n = min(count - done, self.max_blocks)
            cdb = layout(lba=lba + done, transfer_length=n).encode()
            for _ in range(UNIT_ATTENTION_RETRIES + 1):
                if write:
                    r = self._run(cdb, data_out=_contiguous(buf, done * bs, n * bs))
                else:
                    r = self._run(cdb, data_in=n * bs)
                if not (r.sense is not None and r.sense.key == SenseKey.UNIT_ATTENTION):
                    break
                log.info("%s: %s; sending the command again", self.name, r.sense.describe())
            if not _succeeded(r):
                raise relay(r, self.name, transferred=done * bs)
            if not write:
                if len(r.data) != n * bs:
                    raise CheckCondition(
                        SenseData(SenseKey.ABORTED_COMMAND, Asc.THIRD_PARTY_DEVICE_FAILURE),
                        transferred=done * bs,
                        message=f"{self.name}: READ (16) returned {len(r.data)} of "
                                f"{n * bs} bytes")
                buf.copy_in(r.data, done * bs)
            done += n
        return count * bs

    def read_blocks(self, lba: int, count: int, buf: DataBuffer) -> int:
        return self._transfer(sbc.Read16, lba, count, buf, write=False)

    def write_blocks(self, lba: int, count: int, buf: DataBuffer) -> int:
        return self._transfer(sbc.Write16, lba, count, buf, write=True)


class ForeignTape(_ForeignPort):
    """A stream port onto a tape drive through SG_IO: one READ (6)/WRITE (6) per logical
    block in variable mode (FIXED zero, SILI zero), FIXED one in the drive's fixed block
    mode (:attr:`block_length` from the MODE SENSE block descriptor, SSC-4 8.3.3)."""

    def __init__(self, transport: Transport, designators: Sequence[Designator], label: str,
                 *, block_length: int = 0, timeout: float = TAPE_TIMEOUT,
                 unit_attention: int | None = None):
        super().__init__(transport, spc.TYPE_TAPE, designators, label, timeout)
        self.block_length = block_length
        self._unit_attention = unit_attention  # taken while the port was opened

    def pending_unit_attention(self) -> int | None:
        """The unit attention the drive reported while the port was opened, else one
        TEST UNIT READY reports now (the drive then clears it): its ASC/ASCQ, or None.
        NOT READY is left for the first READ or WRITE."""
        if self._unit_attention is not None:
            return self._unit_attention
        r = self._run(spc.TestUnitReady().encode())
        if r.sense is not None and r.sense.key == SenseKey.UNIT_ATTENTION:
            return r.sense.asc
        return None

    def _fixed(self, length: int) -> int:
        """Blocks of a FIXED one command for ``length`` bytes; 0 for FIXED zero."""
        bl = self.block_length
        return length // bl if bl and length and length % bl == 0 else 0

    def read_record(self, buf: DataBuffer, max_len: int, *, start: int = 0) -> int:
        if not max_len:
            return 0
        blocks = self._fixed(max_len)
        cdb = ssc.Read6(fixed=1 if blocks else 0, transfer_length=blocks or max_len)
        r = self._run(cdb.encode(), data_in=max_len)
        if r.data:
            buf.copy_in(r.data, start)
        if _succeeded(r):
            return len(r.data)
        raise self._condition(r, max_len, blocks, write=False)

    def write_record(self, buf: DataBuffer, length: int, *, start: int = 0) -> None:
        if not length:
            return
        blocks = self._fixed(length)
        cdb = ssc.Write6(fixed=1 if blocks else 0, transfer_length=blocks or length)
        r = self._run(cdb.encode(), data_out=_contiguous(buf, start, length))
        if not _succeeded(r):
            raise self._condition(r, length, blocks, write=True)

    def write_filemarks(self, count: int, *, immed: bool = False) -> None:
        """WRITE FILEMARKS (6) (SSC-4); the drive's VOLUME OVERFLOW and early warning as
        our tapes report them, anything else relayed."""
        r = self._run(ssc.WriteFilemarks6(immed=1 if immed else 0,
                                            filemark_count=count).encode())
        if _succeeded(r):
            return
        s = r.sense
        e: CheckCondition
        if r.status == CHECK_CONDITION and s is not None and s.key == SenseKey.VOLUME_OVERFLOW:
            e = ssc.VolumeOverflow(s.information_signed or count)
        elif r.status == CHECK_CONDITION and s is not None and s.key == SenseKey.NO_SENSE \
                and s.eom:
            e = ssc.EarlyWarning()
        else:
            raise relay(r, self.name)
        e.raw_sense = r.sense_bytes or None
        raise e

    def space(self, code: int, count: int) -> None:
        """SPACE (6) (SSC-4), COUNT signed 24-bit; a stop short (filemark, end of data,
        beginning of partition) raises the stream condition with the drive's residue."""
        r = self._run(ssc.Space6(code=code, count=count & 0xFFFFFF).encode())
        if not _succeeded(r):
            raise self._position_condition(r)

    def locate(self, logical_object_identifier: int) -> None:
        """LOCATE (10) (SSC-4) in the current partition, BT zero."""
        r = self._run(ssc.Locate10(
            logical_object_identifier=logical_object_identifier).encode())
        if not _succeeded(r):
            raise self._position_condition(r)

    def _position_condition(self, r: sgio.Result) -> CheckCondition:
        s = r.sense
        if r.status != CHECK_CONDITION or s is None:
            return relay(r, self.name)
        residue = s.information_signed
        e: CheckCondition
        if s.filemark:
            e = ssc.FilemarkDetected(residue or 0)
        elif s.key == SenseKey.BLANK_CHECK:
            e = ssc.EndOfData(residue, eom=s.eom)
        elif s.key == SenseKey.NO_SENSE and s.eom:
            e = ssc.BeginningOfPartition(residue or 0)
        else:
            return relay(r, self.name)
        e.raw_sense = r.sense_bytes or None
        return e

    def _condition(self, r: sgio.Result, requested: int, blocks: int, *,
                   write: bool) -> CheckCondition:
        """The drive's stream sense as our own tapes raise it (SSC-4 READ (6), WRITE (6)):
        INFORMATION is requested minus actual, in bytes (FIXED zero) or blocks."""
        s = r.sense
        if r.status != CHECK_CONDITION or s is None:
            return relay(r, self.name)
        unit = self.block_length if blocks else 1
        info = s.information_signed
        moved = r.transferred if info is None else min(requested, max(0, requested - info * unit))
        e: CheckCondition
        if not write and s.filemark:
            e = ssc.FilemarkDetected(info or 0, transferred=moved)
        elif not write and s.key == SenseKey.BLANK_CHECK:
            e = ssc.EndOfData(info, transferred=moved, eom=s.eom)
        elif not write and s.ili and info is not None and s.key == SenseKey.NO_SENSE:
            e = ssc.IncorrectLength(info, transferred=moved)
        elif write and s.key == SenseKey.NO_SENSE and s.eom and not info:
            e = ssc.EarlyWarning()  # the block was written: early warning only
        elif write and s.key == SenseKey.VOLUME_OVERFLOW:
            e = ssc.VolumeOverflow(info if info is not None else (blocks or requested))
        else:
            return relay(r, self.name, transferred=moved)
        e.raw_sense = r.sense_bytes or None
        return e


# --- discovery ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SgNode:
    """One sg node as sysfs shows it (``/sys/class/scsi_generic/sgN/device``)."""

    path: str  # /dev/sgN
    hctl: str
    device_type: int | None  # the SCSI device's ``type`` attribute


def sg_nodes(*, sysfs_root: str | os.PathLike[str] = "/sys",
             dev_root: str | os.PathLike[str] = "/dev") -> list[SgNode]:
    """Every sg node of the host, in number order."""
    base = Path(sysfs_root) / "class" / "scsi_generic"
    try:
        names = [p.name for p in base.iterdir() if re.fullmatch(r"sg\d+", p.name)]
    except OSError:
        return []
    out = []
    for name in sorted(names, key=lambda n: int(n[2:])):
        dev = base / name / "device"
        try:
            dtype: int | None = int((dev / "type").read_text().strip())
        except (OSError, ValueError):
            dtype = None
        out.append(SgNode(os.path.join(os.fspath(dev_root), name), dev.resolve().name, dtype))
    return out


def _node_max_transfer(node: str, sysfs_root: str | os.PathLike[str]) -> int | None:
    """The queue's max_sectors_kb of the sd disk beside an sg node, in bytes."""
    device = Path(sysfs_root) / "class" / "scsi_generic" / os.path.basename(node) / "device"
    for queue in sorted(device.glob("block/*/queue/max_sectors_kb")):
        try:
            return int(queue.read_text().strip()) * 1024
        except (OSError, ValueError):
            return None
    return None


def open_port(transport: Transport, designators: Sequence[Designator], *,
              sysfs_root: str | os.PathLike[str] = "/sys",
              max_transfer: int = DEFAULT_MAX_TRANSFER) -> ForeignDisk | ForeignTape | None:
    """A port onto the device behind ``transport`` by its INQUIRY peripheral device
    type: a disk (READ CAPACITY (16), Block Limits MAXIMUM TRANSFER LENGTH) or a tape
    (the MODE SENSE (6) block descriptor's block length); None for other kinds."""
    label = transport.path
    std = _inquire(transport, None, label)
    if std is None or len(std) < 36:
        raise TargetUnreachable(f"{label}: no standard INQUIRY data")
    try:
        inq = spc.StandardInquiry.parse(std[: 5 + std[4]])
    except spc.InquiryFormatError as e:
        raise sgio.SgIoError(str(e)) from None
    label = f"{transport.path} ({inq.vendor} {inq.product})".replace("  ", " ")
    if inq.peripheral_qualifier != 0:
        return None
    if inq.device_type == spc.TYPE_TAPE:
        cdb = spc.ModeSense6(allocation_length=0xFF).encode()
        r, attention = _past_unit_attention(transport, cdb, 0xFF, label)
        if not _succeeded(r):
            raise relay(r, f"{label}: MODE SENSE (6)")
        block_length = 0
        if len(r.data) >= 12 and r.data[3] >= 8:
            block_length = ssc.parse_block_descriptor(r.data[4:12]).block_length
        return ForeignTape(transport, designators, label, block_length=block_length,
                           unit_attention=attention)
    if inq.device_type == spc.TYPE_DISK:
        cdb = sbc.ReadCapacity16(allocation_length=sbc.READ_CAPACITY_16_LENGTH).encode()
        r, _ = _past_unit_attention(transport, cdb, sbc.READ_CAPACITY_16_LENGTH, label)
        if not _succeeded(r):
            raise relay(r, f"{label}: READ CAPACITY (16)")
        try:
            cap = sbc.Capacity16.parse(r.data)
        except sbc.CapacityFormatError as e:
            raise sgio.SgIoError(str(e)) from None
        limit = max_transfer
        page = _inquire(transport, sbc.VPD_BLOCK_LIMITS, label)
        if page is not None and sbc.max_transfer_length(page):
            limit = min(limit, sbc.max_transfer_length(page) * cap.block_length)
        queue = _node_max_transfer(transport.path, sysfs_root)
        if queue:
            limit = min(limit, queue)
        return ForeignDisk(transport, designators, label, block_size=cap.block_length,
                           blocks=cap.blocks, max_transfer=limit)
    return None


def _past_unit_attention(transport: Transport, cdb: bytes, data_in: int,
                         label: str) -> tuple[sgio.Result, int | None]:
    """Run a command the device may answer with UNIT ATTENTION first (SAM-5: it did
    not run): again, up to :data:`UNIT_ATTENTION_RETRIES` times. The Result, and the
    ASC/ASCQ of the first unit attention taken (None: none)."""
    first: int | None = None
    for _ in range(UNIT_ATTENTION_RETRIES + 1):
        r = run(transport, cdb, data_in=data_in, timeout=INQUIRY_TIMEOUT, label=label)
        if r.sense is None or r.sense.key != SenseKey.UNIT_ATTENTION:
            break
        first = r.sense.asc if first is None else first
    return r, first


def stable_designator(designators: Sequence[Designator]) -> Designator | None:
    """The logical unit designator to admit a device by: NAA, then EUI-64, then a SCSI
    name string, then a T10 vendor ID (SPC-4 7.8.6)."""
    units = [d for d in designators if d.association == 0]
    for kind in spc.STABLE_DESIGNATOR_TYPES:
        for d in units:
            if d.designator_type == kind:
                return d
    return None


def admit_name(name: str, *, opener: Opener = sgio.SgIoDevice) -> str:
    """The designator text to admit a device by, from a stable name: a device node
    (``/dev/disk/by-id/...``, ``/dev/tape/by-id/...``, ``/dev/sgN``) is asked for its
    VPD page 83h; a designator text (``naa.6001405...``) is checked and kept."""
    if not name.startswith("/"):
        return members.check_designator_text(name)
    try:
        transport = opener(name)
    except sgio.SgIoError as e:
        raise ConfigError(f"{name}: {e}") from e
    try:
        designators = read_designators(transport, name)
    except CheckCondition as e:
        raise ConfigError(f"{name}: cannot read its Device Identification page: {e}") from e
    finally:
        transport.close()
    d = stable_designator(designators)
    if d is None:
        raise ConfigError(f"{name} reports no logical unit designator in VPD page 83h: it "
                          "cannot be admitted by a name that survives renumbering")
    return spc.designator_text(d)


@dataclass(frozen=True, slots=True)
class _Seen:
    node: str
    designators: tuple[Designator, ...]


class ForeignDevices:
    """The copy manager's :class:`~lio_xcopy.copy.ports.ForeignDirectory` over the
    target host's sg nodes. It remembers which node reported each admitted designator;
    :meth:`find` checks the node again before every copy."""

    def __init__(self, *, opener: Opener = sgio.SgIoDevice,
                 sysfs_root: str | os.PathLike[str] = "/sys",
                 dev_root: str | os.PathLike[str] = "/dev",
                 own_nodes: Callable[[], Collection[str]] = lambda: ()):
        self.opener = opener
        self.sysfs_root = sysfs_root
        self.dev_root = dev_root
        #: H:C:T:L of the SCSI devices the kernel made from our own LUNs (tcm_loop):
        #: never asked anything, since the LUN that runs the copy may be one of them and
        #: would have to answer its own INQUIRY behind the copy
        self.own_nodes = own_nodes
        self._seen: dict[str, _Seen] = {}  # admitted designator text -> where it was
        self._lock = threading.Lock()

    def scan(self, ours: Callable[[Sequence[Designator]], bool] = lambda _d: False
             ) -> list[tuple[SgNode, list[Designator]]]:
        """Every device on an sg node with its designators, ours (tcm_loop) left out.
        The designators come from the copy of VPD page 83h the kernel keeps in sysfs
        (``vpd_pg83``), else from an INQUIRY: our own LUNs are never asked."""
        found = []
        try:
            own = set(self.own_nodes())
        except OSError as e:
            log.warning("cannot tell our own LUNs' SCSI devices apart (%s): asking none "
                        "that lacks the kernel's copy of VPD page 83h", e)
            own, cached_only = set(), True
        else:
            cached_only = False
        for node in sg_nodes(sysfs_root=self.sysfs_root, dev_root=self.dev_root):
            if node.hctl in own:
                continue
            designators = self._cached_designators(node)
            if designators is None and cached_only:
                continue
            if designators is None:
                designators = self._ask_designators(node)
            if designators is not None and not ours(designators):
                found.append((node, designators))
        return found

    def _cached_designators(self, node: SgNode) -> list[Designator] | None:
        page = (Path(self.sysfs_root) / "class" / "scsi_generic" / os.path.basename(node.path)
                / "device" / "vpd_pg83")
        try:
            data = page.read_bytes()
        except OSError:
            return None
        return Designator.parse_all(data) if len(data) >= 4 and data[1] == 0x83 else None

    def _ask_designators(self, node: SgNode) -> list[Designator] | None:
        try:
            transport = self.opener(node.path)
        except sgio.SgIoError as e:
            log.debug("%s skipped: %s", node.path, e)
            return None
        try:
            return read_designators(transport, node.path)
        except CheckCondition as e:
            log.debug("%s skipped: %s", node.path, e)
            return None
        finally:
            transport.close()

    def _locate(self, admitted: Collection[str],
                ours: Callable[[Sequence[Designator]], bool]) -> None:
        for node, designators in self.scan(ours):
            for text in admitted:
                if any(spc.designator_matches(text, d) for d in designators):
                    self._seen[text] = _Seen(node.path, tuple(designators))

    def find(self, identifies: Callable[[Designator], bool], admitted: Collection[str],
             ours: Callable[[Sequence[Designator]], bool]) -> ForeignDisk | ForeignTape | None:
        with self._lock:
            if any(t not in self._seen for t in admitted):
                self._locate([t for t in admitted if t not in self._seen], ours)
            hit = next(((t, s) for t, s in self._seen.items()
                        if t in admitted and any(identifies(d) for d in s.designators)), None)
            if hit is None:
                return None
            text, seen = hit
            try:
                transport = self.opener(seen.node)
            except sgio.SgIoError as e:
                del self._seen[text]
                raise TargetUnreachable(f"{seen.node} (admitted as {text}): {e}") from e
            try:
                now = read_designators(transport, seen.node)
                if not any(spc.designator_matches(text, d) for d in now):
                    del self._seen[text]
                    log.warning("%s no longer reports %s (renumbered or replaced): refused; "
                                "the next copy looks for it again", seen.node, text)
                    raise TargetUnreachable(f"{seen.node} no longer reports the admitted "
                                            f"designator {text}")
                port = open_port(transport, now, sysfs_root=self.sysfs_root)
            except BaseException:
                transport.close()
                raise
            if port is None:
                transport.close()
            return port
