"""The copy manager's ends: a block port and a stream port (SPC-4 6.4.5, copy source and
copy destination devices).

The copy manager moves data only through these protocols. Our own LUNs implement them
(:class:`~lio_xcopy.devices.disk.Disk`, :class:`~lio_xcopy.devices.tape.Tape`), SCSI
devices reached through SG_IO do (:mod:`lio_xcopy.devices.foreign`), and so do test
fakes. The manager tells the two kinds apart by :attr:`Port.peripheral_device_type`
(SPC-4 6.6.2), never by class.

A port reports a failure as :class:`~lio_xcopy.scsi.errors.CheckCondition` with the
device's sense; one that relays another device's sense keeps its bytes in
``raw_sense``. :class:`~lio_xcopy.scsi.errors.TargetUnreachable` means the device could
not be reached at all. A stream port reports the SSC-4 stream conditions with the
exceptions of :mod:`lio_xcopy.scsi.ssc`: :class:`~lio_xcopy.scsi.ssc.FilemarkDetected`,
:class:`~lio_xcopy.scsi.ssc.EndOfData`, :class:`~lio_xcopy.scsi.ssc.IncorrectLength`
(each carrying ``transferred``) and :class:`~lio_xcopy.scsi.ssc.EarlyWarning` after a
write that completed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.scsi.spc import Designator
from lio_xcopy.scsi.xcopy import BLOCK_DEVICE_TYPES, SEQUENTIAL_ACCESS


class Port(Protocol):
    """What every copy end reports: a name for logs, its peripheral device type and the
    designators of its Device Identification VPD page (SPC-4 7.8.6)."""

    @property
    def name(self) -> str: ...

    @property
    def peripheral_device_type(self) -> int: ...

    def designators(self) -> Sequence[Designator]: ...


class BlockPort(Port, Protocol):
    """A direct-access end (SBC-4): logical blocks addressed by LBA."""

    @property
    def block_size(self) -> int:
        """LOGICAL BLOCK LENGTH IN BYTES (SBC-4 5.18.2)."""
        ...

    @property
    def blocks(self) -> int:
        """The number of logical blocks (RETURNED LOGICAL BLOCK ADDRESS + 1)."""
        ...

    def read_blocks(self, lba: int, count: int, buf: DataBuffer) -> int:
        """Read ``count`` blocks at ``lba`` into the front of ``buf``; the bytes read."""
        ...

    def write_blocks(self, lba: int, count: int, buf: DataBuffer) -> int:
        """Write ``count`` blocks from the front of ``buf`` at ``lba``; the bytes
        written. A failure raises CheckCondition: INFORMATION names the first LBA not
        written (MEDIUM ERROR), or ``transferred`` the bytes that were."""
        ...


class StreamPort(Port, Protocol):
    """A sequential-access end (SSC-4): logical blocks (records) one after another."""

    @property
    def block_length(self) -> int:
        """The BLOCK LENGTH of the mode parameter block descriptor: 0 is variable mode,
        else fixed blocks of that many bytes (SSC-4 8.3.3)."""
        ...

    def pending_unit_attention(self) -> int | None:
        """The ASC/ASCQ of a unit attention the initiators have not seen (power on, a
        new cartridge): the position is not what they last saw. None when none."""
        ...

    def read_record(self, buf: DataBuffer, max_len: int) -> int:
        """Read the next logical block (at most ``max_len`` bytes) into the front of
        ``buf``; the bytes transferred. A filemark, end of data or a block of another
        length raise the :mod:`~lio_xcopy.scsi.ssc` stream exceptions."""
        ...

    def write_record(self, buf: DataBuffer, length: int, *, start: int = 0) -> None:
        """Write ``buf[start:start + length]`` as one logical block;
        :class:`~lio_xcopy.scsi.ssc.EarlyWarning` when it was written past early
        warning, :class:`~lio_xcopy.scsi.ssc.VolumeOverflow` when not written."""
        ...

    def write_filemarks(self, count: int, *, immed: bool = False) -> None:
        """WRITE FILEMARKS (6) of ``count`` filemarks (SSC-4); IMMED zero also makes
        what was written durable. :class:`~lio_xcopy.scsi.ssc.VolumeOverflow` with the
        filemarks not written; :class:`~lio_xcopy.scsi.ssc.EarlyWarning` past early
        warning."""
        ...

    def space(self, code: int, count: int) -> None:
        """SPACE (SSC-4): ``code`` 0 logical blocks, 1 filemarks, 3 end of data;
        ``count`` signed (negative: toward the beginning). A stop short raises
        :class:`~lio_xcopy.scsi.ssc.FilemarkDetected`,
        :class:`~lio_xcopy.scsi.ssc.EndOfData` or
        :class:`~lio_xcopy.scsi.ssc.BeginningOfPartition` with the count not spaced over."""
        ...

    def locate(self, logical_object_identifier: int) -> None:
        """LOCATE (10) to a logical object of partition 0 (SSC-4);
        :class:`~lio_xcopy.scsi.ssc.EndOfData` when it lies past end of data."""
        ...


class ReadyPort(Port, Protocol):
    """A port that can be asked whether it is ready: what a verify CSCD segment with its
    TUR bit set (SPC-4 6.4.6, 07h) sends TEST UNIT READY to. Our LUNs and SG_IO devices
    are; a port without ``check_ready`` counts as ready once reached."""

    def check_ready(self) -> None:
        """Raise the device's CHECK CONDITION (e.g. NOT READY, MEDIUM NOT PRESENT) when it
        would not answer TEST UNIT READY with GOOD."""
        ...


class ForeignPort(Port, Protocol):
    """A port onto a device this daemon does not serve, opened for one copy."""

    def close(self) -> None:
        """Release the device node."""
        ...


class ForeignDirectory(Protocol):
    """The SCSI devices the target host reaches that this daemon does not serve."""

    def find(self, identifies: Callable[[Designator], bool], admitted: Collection[str],
             ours: Callable[[Sequence[Designator]], bool]) -> ForeignPort | None:
        """The device, among those admitted (designators in their text form), that
        reports a designator ``identifies`` accepts, re-identified on its node just now;
        None when no admitted device reports one. Devices for which ``ours`` is true
        (our own LUNs, seen back through the kernel) are skipped.
        :class:`~lio_xcopy.scsi.errors.TargetUnreachable` when the node no longer
        reports the admitted designator."""
        ...


def is_block(port: Port) -> bool:
    """A direct-access kind of device (SPC-4 6.4.5.3: disk, optical, ...)."""
    return port.peripheral_device_type in BLOCK_DEVICE_TYPES


def is_stream(port: Port) -> bool:
    """A sequential-access device (SPC-4 6.4.5.4)."""
    return port.peripheral_device_type == SEQUENTIAL_ACCESS
