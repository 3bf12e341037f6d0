"""SSC-4 sequential-access device (a tape drive) over an AWSTAPE cartridge.

The subset the Linux ``st`` driver, ``mt``, ``tar`` and ``dd`` use: READ/WRITE (6) in
variable (block length 0) and fixed mode, WRITE FILEMARKS, SPACE, REWIND, LOCATE, READ
POSITION, READ BLOCK LIMITS, ERASE, LOAD UNLOAD, PREVENT ALLOW MEDIUM REMOVAL and the
mode block descriptor. Exceptions are reported as SSC-4 prescribes for a stream device
(FILEMARK, ILI and EOM bits with the residue in INFORMATION, see :mod:`lio_xcopy.scsi.ssc`).

Writes land in the file's page cache (BUFFERED MODE 1); WRITE FILEMARKS without IMMED,
REWIND, LOAD UNLOAD and :meth:`flush` make them durable.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

from lio_xcopy.devices.awstape import AwsTape, Kind, Stop, TapeFormatError
from lio_xcopy.devices.base import Command, LunIdentity, ScsiDevice, command
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.errors import BackingStoreError, ConfigError
from lio_xcopy.scsi import spc, ssc
from lio_xcopy.scsi.errors import (
    DataProtect,
    IllegalRequest,
    InvalidFieldInParameterList,
    MediumError,
)
from lio_xcopy.scsi.sense import Asc

MIN_BLOCK_LENGTH = 1
MAX_BLOCK_LENGTH = 0xFFFFFF  # the largest a 24-bit TRANSFER LENGTH can ask for
MAX_LOGICAL_OBJECT_IDENTIFIER = 0xFFFFFFFF  # what LOCATE (10) and READ POSITION can address


class Tape(ScsiDevice):
    """A tape drive with one cartridge, loaded at start."""

    DEVICE_TYPE = spc.TYPE_TAPE
    PRODUCT = "lio-xcopy tape"
    REMOVABLE = True

    def __init__(
        self,
        identity: LunIdentity,
        path: str | os.PathLike[str],
        capacity: int,
        create: bool = True,
        *,
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
        try:
            self.cartridge = AwsTape(
                path, capacity, create=create, read_only=read_only,
                early_warning_size=early_warning_size, strict=False,
            )
        except OSError as e:
            raise BackingStoreError(
                f"{identity.name}: cannot open the cartridge {os.fspath(path)}: "
                f"{e.strerror or e}" + ("" if create else " (create=False makes no new one)")
            ) from e
        if self.cartridge.damage:
            self.log.warning("%s: only the objects before it can be read", self.cartridge.damage)
        self.max_block_length = max_block_length
        self.block_length = 0  # 0: variable mode
        self.density = ssc.DENSITY_DEFAULT
        self.buffered_mode = 1
        self.loaded = True
        self.prevent_removal = False
        self._lock = threading.RLock()

    # --- the handler boundary ----------------------------------------------------------------
    def handle(self, cmd: Command) -> int:
        with self._lock, self._medium(Asc.UNRECOVERED_READ_ERROR):
            return super().handle(cmd)

    def flush(self) -> None:
        with self._lock:
            try:
                self.cartridge.sync()
            except OSError as e:
                raise BackingStoreError(f"{self.cartridge.path}: fsync: {e.strerror}") from e

    def close(self) -> None:
        with self._lock:
            if self.cartridge.closed:
                return
            try:
                self.cartridge.sync()
            except OSError as e:
                raise BackingStoreError(f"{self.cartridge.path}: fsync: {e.strerror}") from e
            finally:
                self.cartridge.close()

    @contextlib.contextmanager
    def _medium(self, asc: Asc) -> Iterator[None]:
        """The cartridge file's failures as MEDIUM ERROR: a broken header chain is MEDIUM
        FORMAT CORRUPTED, an OSError ``asc`` (UNRECOVERED READ ERROR, WRITE ERROR)."""
        try:
            yield
        except TapeFormatError as e:
            raise MediumError(Asc.MEDIUM_FORMAT_CORRUPTED, message=str(e)) from e
        except OSError as e:
            raise MediumError(
                asc, message=f"{self.cartridge.path}: {e.strerror or e}"
            ) from e

    def check_ready(self) -> None:
        if not self.loaded:
            raise ssc.MediumNotPresent()

    def check_writable(self) -> None:
        if self.cartridge.read_only:
            raise DataProtect()

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
            self.check_ready()
            if not max_len:
                return 0
            with self._medium(Asc.UNRECOVERED_READ_ERROR):
                length, kind = self.cartridge.read_record_into(buf, max_len, start)
            if kind is Kind.FILEMARK:
                raise ssc.FilemarkDetected(max_len, transferred=0)
            if kind is Kind.EOD:
                raise ssc.EndOfData(max_len, transferred=0, eom=self.cartridge.beyond_early_warning)
            if length == max_len:
                return length
            moved = min(length, max_len)
            if sili and not (length > max_len and self.block_length):
                return moved
            raise ssc.IncorrectLength(max_len - length, transferred=moved)

    def read_blocks(self, buf: DataBuffer, count: int) -> int:
        """Read ``count`` blocks of the current block length (READ (6) with FIXED one)."""
        with self._lock:
            self.check_ready()
            size = self.block_length
            for i in range(count):
                with self._medium(Asc.UNRECOVERED_READ_ERROR):
                    length, kind = self.cartridge.read_record_into(buf, size, i * size)
                if kind is Kind.FILEMARK:
                    raise ssc.FilemarkDetected(count - i, transferred=i * size)
                if kind is Kind.EOD:
                    raise ssc.EndOfData(
                        count - i, transferred=i * size, eom=self.cartridge.beyond_early_warning
                    )
                if length != size:
                    raise ssc.IncorrectLength(count - i, transferred=i * size + min(length, size))
            return count * size

    def write_record(self, buf: DataBuffer, length: int, *, start: int = 0) -> None:
        """Write ``buf[start:start + length]`` as one logical block (WRITE (6) with FIXED
        zero). :class:`~lio_xcopy.scsi.ssc.VolumeOverflow` when it does not fit (nothing
        written); :class:`~lio_xcopy.scsi.ssc.EarlyWarning` when it was written past
        early warning. A ``length`` of zero writes nothing."""
        with self._lock:
            self.check_ready()
            self.check_writable()
            if not length:
                return
            if not self.cartridge.fits(length):
                raise ssc.VolumeOverflow(length)
            with self._medium(Asc.WRITE_ERROR):
                self.cartridge.write_record(buf, start, length)
                if not self.buffered_mode:
                    self.cartridge.sync()
            if self.cartridge.beyond_early_warning:
                raise ssc.EarlyWarning()

    def write_blocks(self, buf: DataBuffer, count: int) -> None:
        """Write ``count`` blocks of the current block length (WRITE (6) with FIXED one):
        as many as fit, then VOLUME OVERFLOW with the blocks left over."""
        with self._lock:
            self.check_ready()
            self.check_writable()
            size = self.block_length
            fit = self.cartridge.fits(size, count)
            with self._medium(Asc.WRITE_ERROR):
                self.cartridge.write_record(buf, 0, size, fit)
                if fit and not self.buffered_mode:
                    self.cartridge.sync()
            if fit < count:
                raise ssc.VolumeOverflow(count - fit)
            if self.cartridge.beyond_early_warning:
                raise ssc.EarlyWarning()

    def write_filemarks(self, count: int, *, immed: bool = False) -> None:
        """Write ``count`` filemarks, then, unless ``immed``, make everything written
        durable (a count of zero only does that). Overflow and early warning as for
        :meth:`write_record`, the residue counting filemarks."""
        with self._lock:
            self.check_ready()
            if count:
                self.check_writable()
            fit = self.cartridge.filemarks_fit(count)
            with self._medium(Asc.WRITE_ERROR):
                self.cartridge.write_filemarks(fit)
                if not immed or not self.buffered_mode:
                    self.cartridge.sync()
            if fit < count:
                raise ssc.VolumeOverflow(count - fit)
            if count and self.cartridge.beyond_early_warning:
                raise ssc.EarlyWarning()

    def rewind(self) -> None:
        """Make what was written durable and go to BOT (REWIND)."""
        with self._lock:
            self.check_ready()
            with self._medium(Asc.WRITE_ERROR):
                self.cartridge.sync()
            self.cartridge.rewind()

    # --- SSC-4 commands ----------------------------------------------------------------------
    def _data_fits(self, cmd: Command, cdb: Any, length: int) -> None:
        if length > len(cmd.data):
            raise type(cdb).invalid(
                "transfer_length", f"{length} bytes for a {len(cmd.data)}-byte data buffer"
            )

    @command(ssc.READ_6)
    def read_6(self, cmd: Command, cdb: Any) -> int:
        n = cdb.transfer_length
        if cdb.fixed:
            if cdb.sili:
                raise ssc.READ_6.invalid("sili", "SILI with FIXED")
            if not self.block_length:
                raise ssc.READ_6.invalid("fixed", "FIXED in variable block mode")
            self._data_fits(cmd, cdb, n * self.block_length)
            self.check_ready()
            return self.read_blocks(cmd.data, n) if n else 0
        self._data_fits(cmd, cdb, n)
        self.check_ready()
        return self.read_record(cmd.data, n, sili=bool(cdb.sili)) if n else 0

    @command(ssc.WRITE_6)
    def write_6(self, cmd: Command, cdb: Any) -> int:
        n = cdb.transfer_length
        if cdb.fixed:
            if not self.block_length:
                raise ssc.WRITE_6.invalid("fixed", "FIXED in variable block mode")
            self._data_fits(cmd, cdb, n * self.block_length)
        else:
            if n > self.max_block_length:
                raise ssc.WRITE_6.invalid(
                    "transfer_length", f"{n} bytes exceed the block limit {self.max_block_length}"
                )
            self._data_fits(cmd, cdb, n)
        self.check_ready()
        self.check_writable()
        if n and cdb.fixed:
            self.write_blocks(cmd.data, n)
        elif n:
            self.write_record(cmd.data, n)
        return 0

    @command(ssc.WRITE_FILEMARKS_6)
    def write_filemarks_6(self, cmd: Command, cdb: Any) -> int:
        if cdb.wsmk:
            raise ssc.WRITE_FILEMARKS_6.invalid("wsmk", "setmarks are not supported")
        self.write_filemarks(cdb.filemark_count, immed=bool(cdb.immed))
        return 0

    @command(ssc.SPACE_6)
    def space_6(self, cmd: Command, cdb: Any) -> int:
        code, count = cdb.code, ssc.signed24(cdb.count)
        if code not in (ssc.SPACE_BLOCKS, ssc.SPACE_FILEMARKS, ssc.SPACE_END_OF_DATA):
            raise ssc.SPACE_6.invalid("code", f"space code {code}")
        self.check_ready()
        tape = self.cartridge
        with self._medium(Asc.UNRECOVERED_READ_ERROR):
            if code == ssc.SPACE_END_OF_DATA:
                tape.space_to_eod()
                return 0
            spaced = (tape.space_records if code == ssc.SPACE_BLOCKS else tape.space_filemarks)(
                count
            )
        residue = abs(count) - spaced.count
        if spaced.stop is Stop.FILEMARK:
            raise ssc.FilemarkDetected(residue)
        if spaced.stop is Stop.EOD:
            raise ssc.EndOfData(residue, eom=tape.beyond_early_warning)
        if spaced.stop is Stop.BOP:
            raise ssc.BeginningOfPartition(residue)
        return 0

    @command(ssc.REWIND)
    def rewind_command(self, cmd: Command, cdb: Any) -> int:
        self.rewind()
        return 0

    @command(ssc.LOCATE_10)
    def locate_10(self, cmd: Command, cdb: Any) -> int:
        if cdb.cp and cdb.partition:
            raise ssc.LOCATE_10.invalid("partition", "only partition 0 exists")
        self.check_ready()
        with self._medium(Asc.UNRECOVERED_READ_ERROR):
            if not self.cartridge.locate(cdb.logical_object_identifier):
                raise ssc.EndOfData(None, eom=self.cartridge.beyond_early_warning)
        return 0

    @command(ssc.READ_POSITION_SHORT, ssc.READ_POSITION_SHORT_VENDOR, ssc.READ_POSITION_LONG)
    def read_position(self, cmd: Command, cdb: Any) -> int:
        """Logical object identifiers serve as the vendor-specific block addresses too
        (st asks for those unless told otherwise)."""
        self.check_ready()
        tape = self.cartridge
        if cdb.service_action == ssc.READ_POSITION_LONG.SERVICE_ACTION:
            data = ssc.read_position_long(
                tape.position, tape.file_number, bop=tape.at_bop, eop=tape.beyond_early_warning
            )
        else:
            data = ssc.read_position_short(
                tape.position, bop=tape.at_bop, eop=tape.beyond_early_warning
            )
        return cmd.data.copy_in(data)

    @command(ssc.READ_BLOCK_LIMITS)
    def read_block_limits(self, cmd: Command, cdb: Any) -> int:
        if cdb.mloi:
            data = ssc.maximum_logical_object_identifier(MAX_LOGICAL_OBJECT_IDENTIFIER)
        else:
            data = ssc.block_limits(self.max_block_length, MIN_BLOCK_LENGTH)
        return cmd.data.copy_in(data)

    @command(ssc.ERASE_6)
    def erase_6(self, cmd: Command, cdb: Any) -> int:
        """Both a short and a long erase end the tape at the position."""
        self.check_ready()
        self.check_writable()
        with self._medium(Asc.WRITE_ERROR):
            self.cartridge.erase()
            if not cdb.immed:
                self.cartridge.sync()
        return 0

    @command(ssc.LOAD_UNLOAD)
    def load_unload(self, cmd: Command, cdb: Any) -> int:
        """LOAD rewinds (a loaded tape too); UNLOAD makes it durable, rewinds and leaves
        the LUN NOT READY, MEDIUM NOT PRESENT until the next LOAD."""
        if cdb.load and cdb.eot:
            raise ssc.LOAD_UNLOAD.invalid("eot", "LOAD with EOT")
        if cdb.load:
            self.loaded = True
        elif self.prevent_removal:
            raise IllegalRequest(Asc.MEDIUM_REMOVAL_PREVENTED, message="medium removal prevented")
        elif self.loaded:
            with self._medium(Asc.WRITE_ERROR):
                self.cartridge.sync()
            self.loaded = False
        self.cartridge.rewind()
        return 0

    @command(ssc.PREVENT_ALLOW_MEDIUM_REMOVAL)
    def prevent_allow_medium_removal(self, cmd: Command, cdb: Any) -> int:
        if cdb.prevent > 1:
            raise ssc.PREVENT_ALLOW_MEDIUM_REMOVAL.invalid("prevent")
        self.prevent_removal = bool(cdb.prevent)
        return 0

    # --- mode parameters ---------------------------------------------------------------------
    @command(spc.MODE_SENSE_6, spc.MODE_SENSE_10)
    def mode_sense(self, cmd: Command, cdb: Any) -> int:
        """Page 00h (st's probe) is the header and block descriptor alone."""
        if cdb.page_code or cdb.subpage_code:
            return super().mode_sense(cmd, cdb)
        ten = cdb.OPCODE == spc.MODE_SENSE_10.OPCODE
        data = spc.mode_parameter_list(
            ten, b"", b"" if cdb.dbd else self.block_descriptor(),
            self.device_specific_parameter(), self.medium_type(),
        )
        return cmd.data.copy_in(spc.truncate(data, cdb.allocation_length))

    def mode_pages(self, pc: int) -> dict[tuple[int, int], bytes]:
        pages = {
            (ssc.DATA_COMPRESSION_PAGE, 0): ssc.data_compression_page(),
            (ssc.DEVICE_CONFIGURATION_PAGE, 0): ssc.device_configuration_page(),
        }
        if pc == spc.PC_CHANGEABLE:
            return {k: ssc.changeable(v) for k, v in pages.items()}
        return pages

    def block_descriptor(self) -> bytes:
        return ssc.block_descriptor(self.density, self.block_length)

    def device_specific_parameter(self) -> int:
        return ssc.device_specific_parameter(self.cartridge.read_only, self.buffered_mode)

    @command(spc.MODE_SELECT_6, spc.MODE_SELECT_10)
    def mode_select(self, cmd: Command, cdb: Any) -> int:
        """The block descriptor sets the block length (0 variable, else fixed within the
        block limits) and the header's BUFFERED MODE (0 or 1); pages may only repeat
        the current values."""
        layout = type(cdb)
        ten = cdb.OPCODE == spc.MODE_SELECT_10.OPCODE
        if cdb.sp:
            raise layout.invalid("sp", "saving parameters is not supported")
        length = cdb.parameter_list_length
        if length > len(cmd.data):
            raise layout.invalid("parameter_list_length")
        if not length:
            return 0
        params = spc.parse_mode_parameters(cmd.data.tobytes(length), ten)
        buffered = params.device_specific >> 4 & 7
        if buffered > 1:
            raise InvalidFieldInParameterList(3 if ten else 2, 6, f"buffered mode {buffered}")
        if len(params.block_descriptors) > 1:
            raise InvalidFieldInParameterList(6 if ten else 3, message="one block descriptor")
        block_length = self.block_length
        at = params.block_descriptor_offset
        for raw in params.block_descriptors:
            bd = ssc.parse_block_descriptor(raw)
            if bd.density not in (ssc.DENSITY_DEFAULT, ssc.DENSITY_NO_CHANGE, self.density):
                raise InvalidFieldInParameterList(at, message=f"density code {bd.density:#x}")
            if bd.block_length and not (
                MIN_BLOCK_LENGTH <= bd.block_length <= self.max_block_length
            ):
                raise InvalidFieldInParameterList(
                    at + 5, message=f"block length {bd.block_length} outside the block limits"
                )
            block_length = bd.block_length
        current = self.mode_pages(spc.PC_CURRENT)
        for page, sub, pos, raw in params.pages:
            mine = current.get((page, sub))
            if mine is None or len(raw) != len(mine):
                raise InvalidFieldInParameterList(pos, message=f"mode page {page:#x}")
            for i, (a, b) in enumerate(zip(raw, mine, strict=True)):
                if (a ^ b) & (0x7F if i == 0 else 0xFF):
                    raise InvalidFieldInParameterList(pos + i, message=f"page {page:#x} byte {i}")
        self.block_length = block_length
        self.buffered_mode = buffered
        return 0
