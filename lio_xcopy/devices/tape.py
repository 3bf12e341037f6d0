"""SSC-4 sequential-access device (a tape drive) over AWSTAPE cartridges.

What the Linux ``st`` driver, ``mt`` (mt-st), ``tar``, ``dd`` and backup applications use:
READ/WRITE (6) in variable (block length 0) and fixed mode, WRITE FILEMARKS (IMMED),
SPACE (6)/(16), REWIND, LOCATE (10)/(16), READ POSITION (short, long and extended
forms), READ BLOCK LIMITS, ERASE, FORMAT MEDIUM, LOAD UNLOAD, PREVENT ALLOW MEDIUM
REMOVAL, REPORT DENSITY SUPPORT, MODE SENSE/SELECT (block descriptor, pages 0Fh, 10h,
10h/01h and 11h), LOG SENSE/SELECT (pages 0Ch and 2Eh). Exceptions are reported as
SSC-4 prescribes for a stream device (FILEMARK, ILI and EOM bits with the residue in
INFORMATION, see :mod:`lio_xcopy.scsi.ssc`).

A drive may be empty (``path=None``, a library drive): medium access is NOT READY,
MEDIUM NOT PRESENT until :meth:`Tape.load_cartridge`. UNLOAD leaves the cartridge in
the drive's mouth (:attr:`Tape.ejected`) until LOAD or :meth:`Tape.unload_cartridge`.

Writes land in the file's page cache (BUFFERED MODE 1); WRITE FILEMARKS without IMMED,
REWIND, LOAD UNLOAD and :meth:`flush` make them durable.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future

from lio_xcopy.devices.awstape import (
    AwsTape,
    Kind,
    RecordsKept,
    Stop,
    TapeFormatError,
    footprint,
)
from lio_xcopy.devices.base import Command, LogicalUnit, LunIdentity, command
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.filecopy import FileData, FileSource, KernelCopyFailed, KernelSink
from lio_xcopy.errors import BackingStoreError, ConfigError
from lio_xcopy.scsi import spc, ssc
from lio_xcopy.scsi.errors import (
    DataProtect,
    IllegalRequest,
    InvalidFieldInParameterList,
    MediumError,
    UnitAttention,
)
from lio_xcopy.scsi.sense import Asc

MIN_BLOCK_LENGTH = 1
MAX_BLOCK_LENGTH = 0xFFFFFF  # the largest a 24-bit TRANSFER LENGTH can ask for
MAX_LOGICAL_OBJECT_IDENTIFIER = 0xFFFFFFFF  # what LOCATE (10) and READ POSITION can address
#: SAM-5 unit attention: not reported to (nor cleared by) these commands.
_NO_UNIT_ATTENTION = frozenset({0x03, 0x12, 0xA0})  # REQUEST SENSE, INQUIRY, REPORT LUNS
#: Bits MODE SELECT may change, per (page, subpage): byte offset -> mask.
_CHANGEABLE = {
    (ssc.DATA_COMPRESSION_PAGE, 0): ssc.DATA_COMPRESSION_LAYOUT.bits("dce"),
    (ssc.DEVICE_CONFIGURATION_PAGE, ssc.DEVICE_CONFIGURATION_EXTENSION):
        ssc.DEVICE_CONFIGURATION_EXTENSION_LAYOUT.bits("pews"),
    # FDP/SDP/IDP, and partition 0's size: its own or FFFFh (the rest of the medium)
    (ssc.MEDIUM_PARTITION_PAGE, 0):
        ssc.MEDIUM_PARTITION_LAYOUT.bits("fdp", "sdp", "idp", "partition_size"),
}
#: PS (parameters saveable, SPC-4 7.5.7): the one bit of a page MODE SELECT ignores
_PS = spc.MODE_PAGE_0_HEADER.bits("ps")
_LOG_PAGES = (ssc.SEQUENTIAL_ACCESS_DEVICE_PAGE, ssc.TAPE_ALERT_PAGE)
#: SPACE codes served: logical blocks, filemarks, end of data (SSC-4 SPACE (6)).
SPACE_CODES = (ssc.SPACE_BLOCKS, ssc.SPACE_FILEMARKS, ssc.SPACE_END_OF_DATA)


class Tape(LogicalUnit):
    """A tape drive, with a cartridge loaded at start or empty (``path=None``)."""

    DEVICE_TYPE = spc.TYPE_TAPE
    PRODUCT = "lio-xcopy tape"
    REMOVABLE = True
    LONG_OPCODES = frozenset(c.OPCODE for c in (
        ssc.WriteFilemarks6, ssc.Space6, ssc.Space16, ssc.Locate10, ssc.Locate16,
        ssc.Erase6, ssc.LoadUnload, ssc.FormatMedium, ssc.Rewind))

    def __init__(
        self,
        identity: LunIdentity,
        path: str | os.PathLike[str] | None,
        capacity: int,
        *,
        create: bool = True,
        read_only: bool = False,
        early_warning_size: int | None = None,
        max_block_length: int = MAX_BLOCK_LENGTH,
    ):
        super().__init__(identity)
        if not MIN_BLOCK_LENGTH <= max_block_length <= MAX_BLOCK_LENGTH:
            raise ConfigError(
                f"{identity.name}: maximum block length {max_block_length} is outside"
                f" {MIN_BLOCK_LENGTH}..{MAX_BLOCK_LENGTH}"
            )
        self.capacity = capacity
        self.early_warning_size = early_warning_size
        self.max_block_length = max_block_length
        self.block_length = 0  # 0: variable mode
        self.density = ssc.DENSITY_AWSTAPE
        self.buffered_mode = 1
        self.pews = 0  # programmable early warning size, megabytes (0: none)
        self.compression = False  # DCE of the Data Compression page
        self.prevent_removal = False
        self.ejected = False  # unloaded, waiting in the drive for LOAD or the robot
        self._medium: AwsTape | None = None
        self._unit_attention: Asc | None = None
        self._alerts: set[int] = set()
        self._counters = [0, 0, 0, 0]  # log page 0Ch parameters 0000h-0003h
        self._lock = threading.RLock()
        if path is not None:
            self._medium = self._open(path, capacity, read_only=read_only, create=create)

    def _open(self, path: str | os.PathLike[str], capacity: int, *, read_only: bool,
              create: bool) -> AwsTape:
        try:
            medium = AwsTape(
                path, capacity, create=create, read_only=read_only,
                early_warning_size=self.early_warning_size, strict=False,
            )
        except OSError as e:
            raise BackingStoreError(
                f"{self.identity.name}: cannot open the cartridge {os.fspath(path)}: "
                f"{e.strerror or e}" + ("" if create else " (create=False makes no new one)")
            ) from e
        if medium.damage and medium.torn_tail and not read_only:
            damage = medium.damage
            try:
                cut = medium.cut_torn_tail()
            except OSError as e:
                medium.close()
                raise BackingStoreError(f"{damage}: cannot cut it off: {e.strerror or e}") from e
            self.log.warning("%s: %d bytes of a record never written whole (a write cut "
                             "short) cut off; end of data follows the last whole object",
                             damage, cut)
        if medium.damage:
            self.log.warning("%s: only the objects before it can be read", medium.damage)
        return medium

    def power_on(self) -> None:
        """SAM-5 power on (the daemon opened the drive): the position is BOT, and the next
        command gets UNIT ATTENTION, POWER ON, RESET, OR BUS DEVICE RESET OCCURRED."""
        with self._lock:
            self._unit_attention = Asc.POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED

    @property
    def unit_attention(self) -> Asc | None:
        """The unit attention the initiator has not been told yet (None: none)."""
        return self._unit_attention

    def pending_unit_attention(self) -> Asc | None:
        """The stream port's view of :attr:`unit_attention` (it stays pending)."""
        return self._unit_attention

    # --- the cartridge, for a medium changer -------------------------------------------------
    @property
    def medium(self) -> AwsTape | None:
        """The cartridge file in the drive (loaded or ejected), None when empty."""
        return self._medium

    @property
    def cartridge(self) -> str | None:
        """Path of the cartridge in the drive (loaded or ejected), None when empty."""
        return self._medium.path if self._medium is not None else None

    @property
    def removal_prevented(self) -> bool:
        """PREVENT ALLOW MEDIUM REMOVAL is in force (SSC-4: UNLOAD is refused)."""
        return self.prevent_removal

    def load_cartridge(self, path: str | os.PathLike[str], *, read_only: bool = False,
                       capacity: int | None = None) -> None:
        """Insert a cartridge (created empty when absent) at BOT, ready; the next command
        gets UNIT ATTENTION, NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED."""
        with self._lock:
            if self._medium is not None:
                raise ConfigError(
                    f"{self.identity.name}: {self._medium.path} is already in the drive; "
                    "unload it first"
                )
            self._medium = self._open(path, self.capacity if capacity is None else capacity,
                                      read_only=read_only, create=True)
            self.ejected = False
            self._unit_attention = Asc.NOT_READY_TO_READY_CHANGE_MEDIUM_MAY_HAVE_CHANGED
            self._counters = [0, 0, 0, 0]
            self._alerts.clear()

    def unload_cartridge(self) -> str | None:
        """Make the cartridge durable, rewind it and take it out; its path (None when the
        drive is empty). :class:`ConfigError` while medium removal is prevented,
        :class:`BackingStoreError` when it cannot be made durable: then it stays in."""
        with self._lock:
            medium = self._medium
            if medium is None:
                return None
            if self.prevent_removal:
                self._alerts.add(ssc.TA_NO_REMOVAL)
                raise ConfigError(
                    f"{self.identity.name}: medium removal is prevented; the initiator must "
                    "send PREVENT ALLOW MEDIUM REMOVAL (allow) first"
                )
            _sync(medium)  # a failure leaves the cartridge in the drive
            medium.rewind()
            medium.close()
            self._medium, self.ejected = None, False
            self._alerts.clear()
            return medium.path

    # --- the handler boundary ----------------------------------------------------------------
    def handle(self, cmd: Command) -> int | Future[int]:
        with self._lock:
            if self._unit_attention is not None and cmd.cdb[:1] and (
                cmd.cdb[0] not in _NO_UNIT_ATTENTION
            ):
                asc, self._unit_attention = self._unit_attention, None
                raise UnitAttention(asc)
            with self._io_errors(Asc.UNRECOVERED_READ_ERROR):
                return super().handle(cmd)

    def flush(self) -> None:
        with self._lock:
            if self._medium is not None:
                _sync(self._medium)

    def close(self) -> None:
        with self._lock:
            if self._medium is not None and not self._medium.closed:
                _sync(self._medium, close=True)

    @contextlib.contextmanager
    def _io_errors(self, asc: Asc, residue: int | None = None) -> Iterator[None]:
        """The cartridge file's failures as MEDIUM ERROR (and TapeAlert flags): a broken
        header chain is MEDIUM FORMAT CORRUPTED, an OSError ``asc`` (UNRECOVERED READ
        ERROR, WRITE ERROR) with INFORMATION the ``residue`` of a READ or WRITE: bytes
        (variable) or blocks (fixed) not transferred (SSC-4 READ (6), WRITE (6))."""
        try:
            yield
        except TapeFormatError as e:
            self._alerts.update((ssc.TA_MEDIA, ssc.TA_READ_FAILURE))
            raise MediumError(Asc.MEDIUM_FORMAT_CORRUPTED, message=str(e)) from e
        except OSError as e:
            write = asc == Asc.WRITE_ERROR
            self._alerts.update((ssc.TA_HARD_ERROR,
                                 ssc.TA_WRITE_FAILURE if write else ssc.TA_READ_FAILURE))
            path = self._medium.path if self._medium is not None else "cartridge"
            raise MediumError(asc, residue, message=f"{path}: {e.strerror or e}") from e

    def _ready(self) -> AwsTape:
        """The loaded cartridge, or NOT READY, MEDIUM NOT PRESENT."""
        if self._medium is None or self.ejected:
            raise ssc.MediumNotPresent()
        return self._medium

    def check_ready(self) -> None:
        self._ready()

    def check_writable(self) -> None:
        if self._ready().read_only:
            self._alerts.add(ssc.TA_WRITE_PROTECT)
            raise DataProtect()

    def _pew(self, tape: AwsTape) -> int | None:
        """File offset of programmable early warning (None when PEWS is zero)."""
        return max(0, tape.early_warning - self.pews * ssc.MB) if self.pews else None

    def _warn(self, tape: AwsTape) -> None:
        """After a write: EOM early warning past EW, else past PEW (SSC-4 early warning)."""
        if tape.beyond_early_warning:
            raise ssc.EarlyWarning()
        pew = self._pew(tape)
        if pew is not None and tape.offset > pew:
            raise ssc.ProgrammableEarlyWarning()

    # --- the narrow stream interface (SCSI handlers and the copy manager) ---------------------
    def read_record(
        self, buf: DataBuffer, max_len: int, *, start: int = 0, sili: bool = False
    ) -> int:
        """Read the next logical block into ``buf[start:start + max_len]`` (READ (6) with
        FIXED zero) and return the bytes transferred. A filemark, end of data or a block
        of another length raise :class:`~lio_xcopy.scsi.ssc.FilemarkDetected`,
        :class:`~lio_xcopy.scsi.ssc.EndOfData` or
        :class:`~lio_xcopy.scsi.ssc.IncorrectLength` carrying ``transferred``; ``sili``
        suppresses the last unless the block was longer and the block length nonzero.
        A ``max_len`` of zero reads nothing and does not move."""
        with self._lock:
            tape = self._ready()
            if not max_len:
                return 0
            with self._io_errors(Asc.UNRECOVERED_READ_ERROR, max_len):
                length, kind = tape.read_record_into(buf, max_len, start)
            if kind is Kind.FILEMARK:
                raise ssc.FilemarkDetected(max_len, transferred=0)
            if kind is Kind.EOD:
                raise ssc.EndOfData(max_len, transferred=0, eom=tape.beyond_early_warning)
            moved = min(length, max_len)
            self._count_read(moved)
            if length == max_len:
                return length
            if sili and not (length > max_len and self.block_length):
                return moved
            raise ssc.IncorrectLength(max_len - length, transferred=moved)

    def read_blocks(self, count: int, buf: DataBuffer) -> int:
        """Read ``count`` blocks of the current block length (READ (6) with FIXED one)."""
        with self._lock:
            tape = self._ready()
            size = self.block_length
            for i in range(count):
                with self._io_errors(Asc.UNRECOVERED_READ_ERROR, count - i):
                    length, kind = tape.read_record_into(buf, size, i * size)
                if kind is Kind.FILEMARK:
                    raise ssc.FilemarkDetected(count - i, transferred=i * size)
                if kind is Kind.EOD:
                    raise ssc.EndOfData(
                        count - i, transferred=i * size, eom=tape.beyond_early_warning
                    )
                self._count_read(min(length, size))
                if length != size:
                    raise ssc.IncorrectLength(count - i, transferred=i * size + min(length, size))
            return count * size

    def read_records(self, buf: DataBuffer, length: int, count: int, *, start: int = 0) -> int:
        """Read up to ``count`` logical blocks of exactly ``length`` bytes into
        ``buf[start:]``, as that many READ (6) commands with FIXED zero that each end
        GOOD would (SSC-4 6.4); the blocks read. It stops, without an error and without
        moving past it, before any object such a READ would not end GOOD on (a
        filemark, end of data, a block of another length): :meth:`read_record` reports
        that one."""
        with self._lock:
            tape = self._ready()
            if not length or not count:
                return 0
            with self._io_errors(Asc.UNRECOVERED_READ_ERROR, length):
                k = tape.read_records_into(buf, length, count, start)
            self._count_read(k * length)
            return k

    def _count_read(self, n: int) -> None:
        self._counters[2] += n
        self._counters[3] += n

    def _count_written(self, n: int) -> None:
        self._counters[0] += n
        self._counters[1] += n  # no compression: what is received is what is stored

    def write_record(self, buf: DataBuffer, length: int, *, start: int = 0) -> None:
        """Write ``buf[start:start + length]`` as one logical block (WRITE (6) with FIXED
        zero). :class:`~lio_xcopy.scsi.ssc.VolumeOverflow` when it does not fit (nothing
        written); :class:`~lio_xcopy.scsi.ssc.EarlyWarning` (or its subclass
        :class:`~lio_xcopy.scsi.ssc.ProgrammableEarlyWarning`) when it was written past
        (programmable) early warning. A ``length`` of zero writes nothing."""
        with self._lock:
            tape = self._ready()
            self.check_writable()
            if not length:
                return
            if not tape.fits(length):
                raise ssc.VolumeOverflow(length)
            with self._io_errors(Asc.WRITE_ERROR, length):  # a failed record is cut off
                tape.write_record(buf, start, length)
                if not self.buffered_mode:
                    tape.sync()
            self._count_written(length)
            self._warn(tape)

    def write_records(self, buf: DataBuffer, length: int, count: int, *, start: int = 0) -> int:
        """Write ``count`` logical blocks of ``length`` bytes from ``buf[start:]``, one
        after the other, as ``count`` WRITE (6) commands with FIXED zero would (SSC-4
        6.8), in one vector write; the blocks written. As many as fit are written, then
        :class:`~lio_xcopy.scsi.ssc.VolumeOverflow` with the residue of the first that
        did not (``transferred``: the bytes of those written); past early warning,
        :class:`~lio_xcopy.scsi.ssc.EarlyWarning` once they are all written."""
        with self._lock:
            tape = self._ready()
            self.check_writable()
            if not length or not count:
                return count
            fit = tape.fits(length, count)
            written = 0  # blocks on tape before a failed write (it is cut off after them)
            try:
                with self._io_errors(Asc.WRITE_ERROR, length):
                    try:
                        tape.write_record(buf, start, length, fit, keep_whole=True)
                    except RecordsKept as e:
                        written = e.done // footprint(length)
                        raise
                    if fit and not self.buffered_mode:
                        tape.sync()
            except MediumError as e:
                self._count_written(written * length)
                e.transferred = written * length
                raise
            self._count_written(fit * length)
            self._overflow_or_warn(tape, length, fit, count)
            return count

    def write_records_from(self, source: FileSource, pos: int, length: int, count: int, *,
                           seen: Callable[[FileData], object] | None = None) -> int:
        """:meth:`write_records` of data the kernel copies from ``source`` (from its
        byte ``pos``) into the cartridge file, never through a buffer of ours
        (:mod:`~lio_xcopy.devices.filecopy`); ``seen`` is then shown the data of the
        records written, as the file now holds it. Where the kernel does not copy,
        :class:`~lio_xcopy.devices.filecopy.KernelCopyFailed` with none of them written
        (the tape ends at the position): write them with :meth:`write_records`."""
        with self._lock:
            tape = self._ready()
            self.check_writable()
            start = tape.offset
            if not length or not count:
                return count
            fit = tape.fits(length, count)
            if fit:
                tape.write_records_from(source, pos, length, fit)
                if not self.buffered_mode:
                    with self._io_errors(Asc.WRITE_ERROR, length):
                        tape.sync()
                self._count_written(fit * length)
                if seen is not None:
                    with self._io_errors(Asc.UNRECOVERED_READ_ERROR, length):
                        seen(tape.records_at(start, length, fit))
            self._overflow_or_warn(tape, length, fit, count)
            return count

    def read_records_to(self, sink: KernelSink, lba: int, length: int, count: int, *,
                        seen: Callable[[FileData], object] | None = None) -> int:
        """:meth:`read_records` of ``count`` logical blocks of exactly ``length`` bytes
        whose data the kernel copies from the cartridge file into ``sink``'s blocks from
        ``lba`` (``kernel_write``), never through a buffer of ours; ``seen`` is then
        shown their data. All ``count`` or none: 0, nothing moved, unless the next
        ``count`` objects are all such blocks (a READ would end GOOD on each).
        :class:`~lio_xcopy.devices.filecopy.KernelCopyFailed` when the kernel did not
        copy them (the position does not move): read them with :meth:`read_records`."""
        with self._lock:
            tape = self._ready()
            if not length or not count:
                return 0
            blocks, odd = divmod(length * count, sink.block_size)
            if odd:
                return 0
            with sink.kernel_write(lba, blocks) as (fd, offset, commit), \
                    self._io_errors(Asc.UNRECOVERED_READ_ERROR, length), \
                    tape.records_out(length, count, fd, offset) as data:
                if data is None:
                    return 0
                if seen is None:
                    data.check()
                commit()
                if seen is not None:
                    seen(data)
            self._count_read(count * length)
            return count

    def copy_records_to(self, dst: Tape, length: int, count: int, *,
                        seen: Callable[[FileData], object] | None = None) -> int:
        """Of the next ``count`` logical blocks, those of exactly ``length`` bytes (up to
        the first other object, as :meth:`read_records`) written to ``dst`` as
        :meth:`write_records` writes them, copied by the kernel from this cartridge's
        file into ``dst``'s, never through a buffer of ours; ``seen`` is shown those
        written. The blocks copied, and this tape's position moves past them; past
        ``dst``'s early warning that is not reported (a copy goes on to the end of the
        medium). 0, nothing moved, when they do not all fit on ``dst``;
        :class:`~lio_xcopy.devices.filecopy.KernelCopyFailed`, nothing moved, where the
        kernel does not copy them or either tape is not ready for it. Move those with
        :meth:`read_records` and :meth:`write_records`, which report why."""
        first, second = sorted((self, dst), key=id)  # one order: no deadlock either way
        with first._lock, second._lock:
            if self._medium is None or self.ejected or dst._medium is None or dst.ejected \
                    or dst._medium.read_only or self is dst:
                raise KernelCopyFailed("a tape is not ready, or the same tape")
            src_tape, dst_tape = self._medium, dst._medium
            k = src_tape.equal_records(length, count)[0] if length > 0 else 0
            if not k or dst_tape.fits(length, k) < k:
                return 0
            n, start, before = dst_tape.write_records_copied(src_tape, length, k)
            try:
                if not dst.buffered_mode:
                    with dst._io_errors(Asc.WRITE_ERROR, length):
                        dst_tape.sync()
                data = dst_tape.records_at(start, length, k, check=True)
                with dst._io_errors(Asc.UNRECOVERED_READ_ERROR, length):
                    if seen is None:
                        data.check()
                    else:
                        seen(data)
            except KernelCopyFailed:
                dst_tape.unwrite(n, start, before)
                raise
            dst._count_written(k * length)
            src_tape.pass_records(k)
            self._count_read(k * length)
            return k

    def _overflow_or_warn(self, tape: AwsTape, length: int, fit: int, count: int) -> None:
        """After ``fit`` of ``count`` records of ``length`` bytes were written: VOLUME
        OVERFLOW with the bytes of those written when some did not fit, else the early
        warning due, if any."""
        if fit < count:
            overflow = ssc.VolumeOverflow(length)
            overflow.transferred = fit * length
            raise overflow
        self._warn(tape)

    def write_blocks(self, count: int, buf: DataBuffer) -> None:
        """Write ``count`` blocks of the current block length (WRITE (6) with FIXED one):
        as many as fit, then VOLUME OVERFLOW with the blocks left over."""
        with self._lock:
            tape = self._ready()
            self.check_writable()
            size = self.block_length
            fit = tape.fits(size, count)
            with self._io_errors(Asc.WRITE_ERROR, count):
                tape.write_record(buf, 0, size, fit)
                if fit and not self.buffered_mode:
                    tape.sync()
            self._count_written(fit * size)
            if fit < count:
                raise ssc.VolumeOverflow(count - fit)
            self._warn(tape)

    def write_filemarks(self, count: int, *, immed: bool = False) -> None:
        """Write ``count`` filemarks, then, unless ``immed``, make everything written
        durable (a count of zero only does that). Overflow and early warning as for
        :meth:`write_record`, the residue counting filemarks."""
        with self._lock:
            tape = self._ready()
            if count:
                self.check_writable()
            fit = tape.filemarks_fit(count)
            with self._io_errors(Asc.WRITE_ERROR, count):
                tape.write_filemarks(fit)
                if not immed or not self.buffered_mode:
                    tape.sync()
            if fit < count:
                raise ssc.VolumeOverflow(count - fit)
            if count:
                self._warn(tape)

    def rewind(self) -> None:
        """Make what was written durable and go to BOT (REWIND)."""
        with self._lock:
            tape = self._ready()
            with self._io_errors(Asc.WRITE_ERROR):
                tape.sync()
            tape.rewind()

    # --- SSC-4 commands ----------------------------------------------------------------------
    def _data_fits(self, cmd: Command, cdb: ssc.Read6 | ssc.Write6, length: int) -> None:
        if length > len(cmd.data):
            raise type(cdb).invalid(
                "transfer_length", f"{length} bytes for a {len(cmd.data)}-byte data buffer"
            )

    @command(ssc.Read6)
    def read_6(self, cmd: Command, cdb: ssc.Read6) -> int:
        n = cdb.transfer_length
        if cdb.fixed:
            if cdb.sili:
                raise ssc.Read6.invalid("sili", "SILI with FIXED")
            if not self.block_length:
                raise ssc.Read6.invalid("fixed", "FIXED in variable block mode")
            self._data_fits(cmd, cdb, n * self.block_length)
            self.check_ready()
            return self.read_blocks(n, cmd.data) if n else 0
        self._data_fits(cmd, cdb, n)
        self.check_ready()
        return self.read_record(cmd.data, n, sili=bool(cdb.sili)) if n else 0

    @command(ssc.Write6)
    def write_6(self, cmd: Command, cdb: ssc.Write6) -> int:
        n = cdb.transfer_length
        if cdb.fixed:
            if not self.block_length:
                raise ssc.Write6.invalid("fixed", "FIXED in variable block mode")
            self._data_fits(cmd, cdb, n * self.block_length)
        else:
            if n > self.max_block_length:
                raise ssc.Write6.invalid(
                    "transfer_length", f"{n} bytes exceed the block limit {self.max_block_length}"
                )
            self._data_fits(cmd, cdb, n)
        self.check_ready()
        self.check_writable()
        if n and cdb.fixed:
            self.write_blocks(n, cmd.data)
        elif n:
            self.write_record(cmd.data, n)
        return 0

    @command(ssc.WriteFilemarks6)
    def write_filemarks_6(self, cmd: Command, cdb: ssc.WriteFilemarks6) -> int:  # noqa: ARG002
        """IMMED one returns before the filemarks are durable (SSC-4: buffered mode)."""
        if cdb.wsmk:
            raise ssc.WriteFilemarks6.invalid("wsmk", "setmarks are not supported")
        self.write_filemarks(cdb.filemark_count, immed=bool(cdb.immed))
        return 0

    @command(ssc.Space6)
    def space_6(self, cmd: Command, cdb: ssc.Space6) -> int:  # noqa: ARG002
        return self._space(ssc.Space6, cdb.code, ssc.signed24(cdb.count))

    @command(ssc.Space16)
    def space_16(self, cmd: Command, cdb: ssc.Space16) -> int:  # noqa: ARG002
        """The 64-bit signed COUNT; no parameter data (PARAMETER LENGTH zero)."""
        if cdb.parameter_length:
            raise ssc.Space16.invalid("parameter_length", "SPACE (16) takes no parameter data")
        count = cdb.count - (1 << 64) if cdb.count >> 63 else cdb.count
        return self._space(ssc.Space16, cdb.code, count)

    def _space(self, layout: type[ssc.Space6 | ssc.Space16], code: int, count: int) -> int:
        if code not in SPACE_CODES:
            raise layout.invalid("code", f"space code {code}")
        self.space(code, count)
        return 0

    def space(self, code: int, count: int) -> None:
        """SPACE over ``count`` blocks or filemarks (negative: toward BOP), or to end of
        data (``code`` one of :data:`SPACE_CODES`); a stop short reports the count not
        spaced over (FILEMARK, BLANK CHECK at end of data, EOM at BOP)."""
        if code not in SPACE_CODES:
            raise ValueError(f"space code {code}")
        with self._lock:
            tape = self._ready()
            with self._io_errors(Asc.UNRECOVERED_READ_ERROR):
                if code == ssc.SPACE_END_OF_DATA:
                    tape.space_to_eod()
                    return
                spaced = (tape.space_records if code == ssc.SPACE_BLOCKS
                          else tape.space_filemarks)(count)
            residue = abs(count) - spaced.count
            if spaced.stop is Stop.FILEMARK:
                raise ssc.FilemarkDetected(residue)
            if spaced.stop is Stop.EOD:
                raise ssc.EndOfData(residue, eom=tape.beyond_early_warning)
            if spaced.stop is Stop.BOP:
                raise ssc.BeginningOfPartition(residue)

    @command(ssc.Rewind)
    def rewind_command(self, cmd: Command, cdb: ssc.Rewind) -> int:  # noqa: ARG002
        self.rewind()
        return 0

    @command(ssc.Locate10)
    def locate_10(self, cmd: Command, cdb: ssc.Locate10) -> int:  # noqa: ARG002
        """BT one (st's default) names the same logical object identifiers."""
        if cdb.cp and cdb.partition:
            raise ssc.Locate10.invalid("partition", "only partition 0 exists")
        return self._locate(cdb.logical_object_identifier)

    @command(ssc.Locate16)
    def locate_16(self, cmd: Command, cdb: ssc.Locate16) -> int:  # noqa: ARG002
        """DEST_TYPE 000b a logical object, 001b the first object of a logical file (the
        file number), 011b end of data."""
        if cdb.cp and cdb.partition:
            raise ssc.Locate16.invalid("partition", "only partition 0 exists")
        if cdb.dest_type not in (ssc.DEST_OBJECT, ssc.DEST_FILE, ssc.DEST_END_OF_DATA):
            raise ssc.Locate16.invalid("dest_type", f"destination type {cdb.dest_type}")
        tape = self._ready()
        target = cdb.logical_identifier
        if cdb.dest_type == ssc.DEST_END_OF_DATA:
            with self._io_errors(Asc.UNRECOVERED_READ_ERROR):
                tape.space_to_eod()
            return 0
        if cdb.dest_type == ssc.DEST_FILE:
            start = tape.file_start(target)
            if start is None:
                with self._io_errors(Asc.UNRECOVERED_READ_ERROR):
                    tape.space_to_eod()
                raise ssc.EndOfData(None, eom=tape.beyond_early_warning)
            target = start
        return self._locate(target)

    def _locate(self, target: int) -> int:
        self.locate(target)
        return 0

    def locate(self, logical_object_identifier: int) -> None:
        """LOCATE to a logical object of partition 0; past end of data: BLANK CHECK,
        END-OF-DATA DETECTED, positioned at end of data."""
        with self._lock:
            tape = self._ready()
            with self._io_errors(Asc.UNRECOVERED_READ_ERROR):
                if not tape.locate(logical_object_identifier):
                    raise ssc.EndOfData(None, eom=tape.beyond_early_warning)

    @command(ssc.ReadPositionShort, ssc.ReadPositionShortVendor, ssc.ReadPositionLong,
             ssc.ReadPositionExtended)
    def read_position(self, cmd: Command, cdb: ssc.AnyReadPosition) -> int:
        """Logical object identifiers serve as the vendor-specific block addresses too
        (st asks for those unless told otherwise). EOP: past early warning; BPEW: past
        programmable early warning (only while PEWS is nonzero)."""
        tape = self._ready()
        pew = self._pew(tape)
        flags = {"bop": tape.at_bop, "eop": tape.beyond_early_warning,
                 "bpew": pew is not None and tape.offset > pew}
        if isinstance(cdb, ssc.ReadPositionLong):
            data = ssc.read_position_long(tape.position, tape.file_number, **flags)
        elif isinstance(cdb, ssc.ReadPositionExtended):
            data = spc.truncate(ssc.read_position_extended(tape.position, **flags),
                                cdb.allocation_length)
        else:
            data = ssc.read_position_short(tape.position, **flags)
        return cmd.data.copy_in(data)

    @command(ssc.ReadBlockLimits)
    def read_block_limits(self, cmd: Command, cdb: ssc.ReadBlockLimits) -> int:
        if cdb.mloi:
            data = ssc.maximum_logical_object_identifier(MAX_LOGICAL_OBJECT_IDENTIFIER)
        else:
            data = ssc.block_limits(self.max_block_length, MIN_BLOCK_LENGTH)
        return cmd.data.copy_in(data)

    @command(ssc.Erase6)
    def erase_6(self, cmd: Command, cdb: ssc.Erase6) -> int:  # noqa: ARG002
        """Both a long erase and a short one (SHORT ERASE MODE 02h: write end of data)
        end the tape at the position."""
        tape = self._ready()
        self.check_writable()
        with self._io_errors(Asc.WRITE_ERROR):
            tape.erase()
            if not cdb.immed:
                tape.sync()
        return 0

    @command(ssc.FormatMedium)
    def format_medium(self, cmd: Command, cdb: ssc.FormatMedium) -> int:  # noqa: ARG002
        """At BOP only: FORMAT 0h (default) and 1h/2h (partition as the Medium Partition
        page says: one partition) all leave an empty tape; no format parameter data."""
        if cdb.format > 2:
            raise ssc.FormatMedium.invalid("format", f"format {cdb.format}")
        if cdb.transfer_length:
            raise ssc.FormatMedium.invalid("transfer_length", "no format parameters")
        self._format_at_bop("FORMAT MEDIUM")
        return 0

    def _format_at_bop(self, what: str) -> None:
        """Leave an empty tape in one partition (durable); ILLEGAL REQUEST, POSITION PAST
        BEGINNING OF MEDIUM away from BOP, nothing erased."""
        tape = self._ready()
        self.check_writable()
        if not tape.at_bop:
            raise IllegalRequest(Asc.POSITION_PAST_BEGINNING_OF_MEDIUM,
                                 message=f"{what} away from BOP")
        with self._io_errors(Asc.WRITE_ERROR):
            tape.erase()
            tape.sync()

    @command(ssc.LoadUnload)
    def load_unload(self, cmd: Command, cdb: ssc.LoadUnload) -> int:  # noqa: ARG002
        """LOAD readies the cartridge in the drive at BOT (a loaded one just rewinds);
        UNLOAD makes it durable, rewinds and leaves it in the drive's mouth: NOT READY,
        MEDIUM NOT PRESENT until LOAD, or until a changer takes it."""
        if cdb.load and cdb.eot:
            raise ssc.LoadUnload.invalid("eot", "LOAD with EOT")
        tape = self._medium
        if tape is None:
            raise ssc.MediumNotPresent()
        if cdb.load:
            self.ejected = False
        elif self.prevent_removal:
            self._alerts.add(ssc.TA_NO_REMOVAL)
            raise IllegalRequest(Asc.MEDIUM_REMOVAL_PREVENTED, message="medium removal prevented")
        elif not self.ejected:
            with self._io_errors(Asc.WRITE_ERROR):
                tape.sync()
            self.ejected = True
        tape.rewind()
        return 0

    @command(ssc.PreventAllowMediumRemoval)
    def prevent_allow_medium_removal(self, cmd: Command, cdb: ssc.PreventAllowMediumRemoval) -> int:  # noqa: ARG002
        if cdb.prevent > 1:
            raise ssc.PreventAllowMediumRemoval.invalid("prevent")
        self.prevent_removal = bool(cdb.prevent)
        return 0

    @command(ssc.ReportDensitySupport)
    def report_density_support(self, cmd: Command, cdb: ssc.ReportDensitySupport) -> int:
        """One density (and one medium type): the drive's (MEDIA zero) or the loaded
        cartridge's (MEDIA one: its capacity, WRTOK zero when write protected)."""
        capacity, writable = self.capacity, True
        if cdb.media:
            tape = self._ready()
            capacity, writable = tape.capacity, not tape.read_only
        if cdb.medium_type:
            data = ssc.medium_type_support(0, (ssc.DENSITY_AWSTAPE,))
        else:
            data = ssc.density_support(ssc.DENSITY_AWSTAPE, capacity // ssc.MB,
                                       writable=writable)
        return cmd.data.copy_in(spc.truncate(data, cdb.allocation_length))

    # --- log pages ---------------------------------------------------------------------------
    @command(ssc.LogSense)
    def log_sense(self, cmd: Command, cdb: ssc.LogSense) -> int:
        """Pages 00h (and 00h/FFh), 0Ch and 2Eh. Cumulative values (PC 01b) are the
        counters; the other page controls read the defaults (zero). Reading TapeAlert's
        current flags clears them."""
        if cdb.sp:
            raise ssc.LogSense.invalid("sp", "saving log parameters is not supported")
        page, sub = cdb.page_code, cdb.subpage_code
        current = cdb.pc == 1
        if page == ssc.SUPPORTED_LOG_PAGES and sub in (0, 0xFF):
            data = (ssc.supported_log_subpages if sub else ssc.supported_log_pages)(_LOG_PAGES)
        elif sub:
            raise ssc.LogSense.invalid("subpage_code")
        elif page == ssc.SEQUENTIAL_ACCESS_DEVICE_PAGE:
            data = ssc.sequential_access_page(self._sequential_counters(current=current))
        elif page == ssc.TAPE_ALERT_PAGE:
            data = ssc.tape_alert_page(self._alerts if current else set())
            if current:
                self._alerts.clear()
        else:
            raise ssc.LogSense.invalid("page_code", f"log page {page:#x}")
        if cdb.parameter_pointer and page != ssc.SUPPORTED_LOG_PAGES:
            data = _from_parameter(data, cdb.parameter_pointer)
        return cmd.data.copy_in(spc.truncate(data, cdb.allocation_length))

    def _sequential_counters(self, *, current: bool) -> ssc.SequentialAccessCounters:
        tape = self._medium
        received, written, read, transferred = self._counters if current else [0, 0, 0, 0]
        if tape is None:
            unknown = 0xFFFFFFFF
            return ssc.SequentialAccessCounters(received, written, read, transferred,
                                                unknown, unknown, unknown, unknown)
        mb = ssc.MB
        return ssc.SequentialAccessCounters(
            received, written, read, transferred,
            tape.end_of_data_offset // mb, tape.early_warning // mb,
            (tape.capacity - tape.early_warning) // mb, tape.offset // mb,
        )

    @command(ssc.LogSelect)
    def log_select(self, cmd: Command, cdb: ssc.LogSelect) -> int:  # noqa: ARG002
        """PCR one, or no parameter list: the counters and TapeAlert flags go back to
        zero (SPC-4 6.7). Parameter values cannot be set."""
        if cdb.sp:
            raise ssc.LogSelect.invalid("sp", "saving log parameters is not supported")
        if cdb.parameter_list_length:
            raise ssc.LogSelect.invalid("parameter_list_length", "log parameters are read-only")
        if cdb.page_code not in (0, *_LOG_PAGES) or cdb.subpage_code:
            raise ssc.LogSelect.invalid("page_code")
        if cdb.page_code in (0, ssc.SEQUENTIAL_ACCESS_DEVICE_PAGE):
            self._counters = [0, 0, 0, 0]
        if cdb.page_code in (0, ssc.TAPE_ALERT_PAGE):
            self._alerts.clear()
        return 0

    # --- mode parameters ---------------------------------------------------------------------
    @command(spc.ModeSense6, spc.ModeSense10)
    def mode_sense(self, cmd: Command, cdb: spc.AnyModeSense) -> int:
        """Page 00h (st's probe) is the header and block descriptor alone."""
        if cdb.page_code or cdb.subpage_code:
            return super().mode_sense(cmd, cdb)
        ten = cdb.OPCODE == spc.ModeSense10.OPCODE
        data = spc.mode_parameter_list(
            ten=ten, pages=b"", block_descriptors=b"" if cdb.dbd else self.block_descriptor(),
            device_specific=self.device_specific_parameter(), medium_type=self.medium_type(),
        )
        return cmd.data.copy_in(spc.truncate(data, cdb.allocation_length))

    def mode_pages(self, pc: int) -> dict[tuple[int, int], bytes]:
        tape = self._medium
        capacity = tape.capacity if tape is not None else self.capacity
        default = pc == spc.PC_DEFAULT
        pews = 0 if default else self.pews
        pages = {
            (ssc.DATA_COMPRESSION_PAGE, 0):
                ssc.data_compression_page(dce=self.compression and not default),
            (ssc.DEVICE_CONFIGURATION_PAGE, 0): ssc.device_configuration_page(),
            (ssc.DEVICE_CONFIGURATION_PAGE, ssc.DEVICE_CONFIGURATION_EXTENSION):
                ssc.device_configuration_extension_page(pews),
            (ssc.MEDIUM_PARTITION_PAGE, 0): ssc.medium_partition_page(capacity // ssc.MB),
        }
        if pc == spc.PC_CHANGEABLE:
            return {k: ssc.changeable(v, _CHANGEABLE.get(k)) for k, v in pages.items()}
        return pages

    def block_descriptor(self) -> bytes:
        loaded = self._medium is not None and not self.ejected
        return ssc.block_descriptor(self.density if loaded else ssc.DENSITY_DEFAULT,
                                    self.block_length)

    def device_specific_parameter(self) -> int:
        wp = self._medium is not None and self._medium.read_only
        return ssc.device_specific_parameter(write_protected=wp, buffered_mode=self.buffered_mode)

    @command(spc.ModeSelect6, spc.ModeSelect10)
    def mode_select(self, cmd: Command, cdb: spc.AnyModeSelect) -> int:
        """The block descriptor sets the block length (0 variable, else fixed within the
        block limits) and the header's BUFFERED MODE (0 or 1); the Data Compression page
        sets DCE (SSC-4 Data Compression mode page: the drive reports DCC one); the Device
        Configuration Extension page sets PEWS; other pages may only repeat the current
        values, each byte checked against the changeable mask (INVALID FIELD IN PARAMETER
        LIST at the first byte that differs, so a second partition is refused at
        ADDITIONAL PARTITIONS DEFINED). Nothing changes unless every page is accepted.

        With DCE one, records are still stored as they were received: the AWSTAPE format
        has no compressed record form other readers agree on, so log page 0Ch reports as
        many bytes written to the medium as received."""
        layout = type(cdb)
        ten = cdb.OPCODE == spc.ModeSelect10.OPCODE
        if cdb.sp:
            raise layout.invalid("sp", "saving parameters is not supported")
        length = cdb.parameter_list_length
        if length > len(cmd.data):
            raise layout.invalid("parameter_list_length")
        if not length:
            return 0
        data = cmd.data.tobytes(length)
        params = spc.parse_mode_parameters(data, ten=ten)
        header, dsp = spc.mode_header(ten=ten), ssc.DEVICE_SPECIFIC_PARAMETER_LAYOUT
        at_dsp = header.offset("device_specific_parameter")
        buffered = dsp.get("buffered_mode", data, at_dsp)
        if buffered > 1:
            byte, bit = dsp.pointer("buffered_mode")
            raise InvalidFieldInParameterList(at_dsp + byte, bit, f"buffered mode {buffered}")
        if len(params.block_descriptors) > 1:
            raise InvalidFieldInParameterList(*header.pointer("block_descriptor_length"),
                                              "one block descriptor")
        block_length = self.block_length
        at, bd_layout = params.block_descriptor_offset, ssc.BLOCK_DESCRIPTOR_LAYOUT
        for raw in params.block_descriptors:
            bd = ssc.parse_block_descriptor(raw)
            if bd.density not in (ssc.DENSITY_DEFAULT, ssc.DENSITY_NO_CHANGE, self.density):
                raise InvalidFieldInParameterList(
                    at + bd_layout.offset("density_code"),
                    message=f"density code {bd.density:#x}")
            if bd.block_length and not (
                MIN_BLOCK_LENGTH <= bd.block_length <= self.max_block_length
            ):
                raise InvalidFieldInParameterList(
                    at + bd_layout.offset("block_length"),
                    message=f"block length {bd.block_length} outside the block limits"
                )
            block_length = bd.block_length
        current = self.mode_pages(spc.PC_CURRENT)
        pews, compression, partition = self.pews, self.compression, False
        for page, sub, pos, raw in params.pages:
            mine = current.get((page, sub))
            if mine is None or len(raw) != len(mine):
                raise InvalidFieldInParameterList(pos, message=f"mode page {page:#x}")
            mask = _CHANGEABLE.get((page, sub), {})
            for i, (a, b) in enumerate(zip(raw, mine, strict=True)):
                if (a ^ b) & ~_PS.get(i, 0) & 0xFF & ~mask.get(i, 0):
                    raise InvalidFieldInParameterList(pos + i, message=f"page {page:#x} byte {i}")
            if (page, sub) == (ssc.DEVICE_CONFIGURATION_PAGE, ssc.DEVICE_CONFIGURATION_EXTENSION):
                pews = ssc.DEVICE_CONFIGURATION_EXTENSION_LAYOUT.get("pews", raw)
            if (page, sub) == (ssc.DATA_COMPRESSION_PAGE, 0):
                compression = bool(ssc.DATA_COMPRESSION_LAYOUT.get("dce", raw))
            if (page, sub) == (ssc.MEDIUM_PARTITION_PAGE, 0):
                partition_layout = ssc.MEDIUM_PARTITION_LAYOUT
                size = partition_layout.get("partition_size", raw)
                if size not in (partition_layout.get("partition_size", mine), 0xFFFF):
                    raise InvalidFieldInParameterList(
                        pos + partition_layout.offset("partition_size"),
                        message="partition 0 size")
                partition = any(partition_layout.get(name, raw) for name in ("fdp", "sdp", "idp"))
        if partition:
            # FDP, SDP or IDP with POFM zero partitions the medium at MODE SELECT (SSC-4
            # Medium Partition mode page): into the one partition there is (more were
            # refused at ADDITIONAL PARTITIONS DEFINED), at BOP as st's MTMKPART is
            self._format_at_bop("partitioning")
        self.block_length = block_length
        self.buffered_mode = buffered
        self.pews = pews
        self.compression = compression
        return 0



def _sync(medium: AwsTape, *, close: bool = False) -> None:
    """fsync the cartridge (BackingStoreError when that fails); ``close`` closes it
    either way."""
    try:
        medium.sync()
    except OSError as e:
        raise BackingStoreError(f"{medium.path}: fsync: {e.strerror}") from e
    finally:
        if close:
            medium.close()


def _from_parameter(page: bytes, pointer: int) -> bytes:
    """A log page with only the parameters whose code is at least ``pointer`` (SPC-4
    6.8: PARAMETER POINTER); INVALID FIELD IN CDB when none is."""
    head, pos, kept = page[:4], 4, bytearray()
    while pos + 4 <= len(page):
        code, size = struct.unpack_from(">H", page, pos)[0], page[pos + 3] + 4
        if code >= pointer:
            kept += page[pos : pos + size]
        pos += size
    if not kept:
        raise ssc.LogSense.invalid("parameter_pointer", f"no parameter from {pointer:#06x}")
    return head[:2] + struct.pack(">H", len(kept)) + bytes(kept)
