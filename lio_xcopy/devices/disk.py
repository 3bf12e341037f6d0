"""SBC-4 direct-access block device over a :class:`BackingStore` (after tcmu-runner's
file handler): logical block ``n`` is bytes ``[n * block_size, (n + 1) * block_size)``.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from lio_xcopy.devices.backing import BackingStore
from lio_xcopy.devices.base import Command, LunIdentity, ScsiDevice, command
from lio_xcopy.devices.buffer import DataBuffer, PartialTransfer
from lio_xcopy.errors import BackingStoreError, ConfigError
from lio_xcopy.scsi import sbc, spc
from lio_xcopy.scsi.errors import (
    DataProtect,
    HardwareError,
    IllegalRequest,
    InvalidFieldInParameterList,
    LbaOutOfRange,
    MediumError,
    ParameterListLengthError,
)
from lio_xcopy.scsi.sense import Asc

MIN_BLOCK_SIZE = 512
MAX_BLOCK_SIZE = 65536


class Disk(ScsiDevice):
    """A disk LUN: READ/WRITE (6/10/16), READ CAPACITY (10/16), SYNCHRONIZE CACHE (10/16),
    MODE SENSE/SELECT with the caching (08h) and control (0Ah) pages, VPD B0h/B1h."""

    DEVICE_TYPE = spc.TYPE_DISK
    VERSION_DESCRIPTORS = (0x00A0, 0x0460, 0x0600)  # SAM-5, SPC-4, SBC-4
    LONG_OPCODES = frozenset(c.OPCODE for c in (sbc.SYNCHRONIZE_CACHE_10,
                                                sbc.SYNCHRONIZE_CACHE_16))

    def __init__(
        self,
        identity: LunIdentity,
        store: BackingStore,
        block_size: int = 512,
        read_only: bool = False,
        *,
        max_transfer_length: int = 0,
    ):
        super().__init__(identity)
        if not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE or block_size & (block_size - 1):
            raise ConfigError(
                f"{identity.name}: block size {block_size} is not a power of two from"
                f" {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}; use 512 or 4096"
            )
        if store.size < block_size:
            raise ConfigError(
                f"{identity.name}: {store.path} holds {store.size} bytes, less than one"
                f" {block_size}-byte block; grow it or create it with a size"
            )
        self.store = store
        self.block_size = block_size
        self.blocks = store.size // block_size
        self.read_only = read_only or store.read_only
        self.max_transfer_length = max_transfer_length  # blocks; 0 = no limit reported
        self.write_cache = True  # WCE of the caching mode page
        if store.size % block_size:
            self.log.warning(
                "last %d bytes of %s are not a whole block and are not served",
                store.size % block_size, store.path,
            )

    # --- the narrow block interface (SCSI handlers and the copy manager) ------------------
    def check_range(self, lba: int, count: int) -> None:
        """SBC-4 4.5: every block of ``[lba, lba + count)`` must be on the LUN."""
        if lba < 0 or count < 0 or lba + count > self.blocks:
            raise LbaOutOfRange(lba)

    def check_writable(self) -> None:
        if self.read_only:
            raise DataProtect()

    def _transfer(self, move, asc: Asc, lba: int, count: int, buf: DataBuffer) -> int:
        """Move ``count`` blocks between ``buf`` and the store; an OSError or a short
        transfer is a MEDIUM ERROR with INFORMATION the first LBA that failed (SBC-4
        error reporting), a store out of space (ENOSPC) DATA PROTECT, SPACE ALLOCATION FAILED
        WRITE PROTECT (SBC-4 4.7.3: Linux sd passes it on as ENOSPC)."""
        nbytes = self._checked_length(lba, count, buf)
        what = "read" if asc == Asc.UNRECOVERED_READ_ERROR else "write"
        try:
            done = move(self.store.fd, lba * self.block_size, 0, nbytes)
        except OSError as e:
            bad = lba + (e.done if isinstance(e, PartialTransfer) else 0) // self.block_size
            self.log.error("%s of %d blocks at LBA %d failed at LBA %d: %s", what, count, lba,
                           bad, e)
            if e.errno == errno.ENOSPC and asc == Asc.WRITE_ERROR:
                raise DataProtect(Asc.SPACE_ALLOCATION_FAILED_WRITE_PROTECT, bad,
                                  str(e)) from e
            raise MediumError(asc, bad, str(e)) from e
        if done < nbytes:
            bad = lba + done // self.block_size
            self.log.error("short %s of %s at LBA %d", what, self.store.path, bad)
            raise MediumError(asc, bad, f"short {what}: {done} of {nbytes} bytes moved")
        return nbytes

    def read_blocks(self, lba: int, count: int, buf: DataBuffer) -> int:
        """Read ``count`` blocks at ``lba`` into the front of ``buf``; returns the bytes
        moved. Out of range or a buffer too small raises before any I/O."""
        return self._transfer(buf.read_from, Asc.UNRECOVERED_READ_ERROR, lba, count, buf)

    def write_blocks(self, lba: int, count: int, buf: DataBuffer, *, fua: bool = False) -> int:
        """Write ``count`` blocks from the front of ``buf`` at ``lba``; returns the bytes
        moved. ``fua`` (or a disabled write cache) makes them durable before returning."""
        self.check_writable()
        nbytes = self._transfer(buf.write_to, Asc.WRITE_ERROR, lba, count, buf)
        if fua or not self.write_cache:
            self._sync(lba, data_only=True)
        return nbytes

    def _checked_length(self, lba: int, count: int, buf: DataBuffer) -> int:
        self.check_range(lba, count)
        nbytes = count * self.block_size
        if len(buf) < nbytes:
            raise HardwareError(f"{count} blocks do not fit a buffer of {len(buf)} bytes")
        return nbytes

    def _sync(self, lba: int | None, *, data_only: bool) -> None:
        """fsync the store; a failure is MEDIUM ERROR, WRITE ERROR (tcmu-runner's
        file_flush too), at ``lba`` when the failed blocks are known."""
        try:
            self.store.fsync(data_only=data_only)
        except OSError as e:
            self.log.error("sync of %s failed: %s", self.store.path, e)
            raise MediumError(Asc.WRITE_ERROR, lba, str(e)) from e

    # --- READ and WRITE, SBC-4 5.13/5.15/5.37/5.39 (and SBC-3's 6-byte forms) ------------
    @command(*sbc.READS)
    def read(self, cmd: Command, cdb: Any) -> int:
        if getattr(cdb, "rdprotect", 0):
            raise type(cdb).invalid("rdprotect", "no protection information")
        count = self._transfer_length(cdb, cmd.data)
        return self.read_blocks(cdb.lba, count, cmd.data)

    @command(*sbc.WRITES)
    def write(self, cmd: Command, cdb: Any) -> int:
        if getattr(cdb, "wrprotect", 0):
            raise type(cdb).invalid("wrprotect", "no protection information")
        self.check_writable()
        count = self._transfer_length(cdb, cmd.data)
        self.write_blocks(cdb.lba, count, cmd.data, fua=bool(getattr(cdb, "fua", 0)))
        return 0

    def _transfer_length(self, cdb: Any, buf: DataBuffer) -> int:
        """The CDB's block count, checked against the Block Limits, the LUN and the
        buffer the transport handed us."""
        layout = type(cdb)
        count = sbc.transfer_blocks(cdb)
        if self.max_transfer_length and count > self.max_transfer_length:
            raise layout.invalid(
                "transfer_length", f"{count} blocks exceed {self.max_transfer_length}"
            )
        self.check_range(cdb.lba, count)
        if len(buf) < count * self.block_size:
            raise layout.invalid(
                "transfer_length", f"{count} blocks but a data buffer of {len(buf)} bytes"
            )
        return count

    # --- READ CAPACITY, SBC-4 5.17/5.18 -------------------------------------------------
    @command(sbc.READ_CAPACITY_10)
    def read_capacity_10(self, cmd: Command, cdb: Any) -> int:
        self._check_pmi(cdb)
        return cmd.data.copy_in(sbc.read_capacity_10_data(self.blocks - 1, self.block_size))

    @command(sbc.READ_CAPACITY_16)
    def read_capacity_16(self, cmd: Command, cdb: Any) -> int:
        self._check_pmi(cdb)
        data = sbc.read_capacity_16_data(self.blocks - 1, self.block_size)
        return cmd.data.copy_in(spc.truncate(data, cdb.allocation_length))

    def _check_pmi(self, cdb: Any) -> None:
        """PMI and LOGICAL BLOCK ADDRESS as SBC-3 defines them (obsolete in SBC-4)."""
        if not cdb.pmi:
            if cdb.lba:
                raise type(cdb).invalid("lba", "LOGICAL BLOCK ADDRESS without PMI")
        elif cdb.lba >= self.blocks:
            raise LbaOutOfRange(cdb.lba)

    # --- SYNCHRONIZE CACHE, SBC-4 5.30/5.31 ---------------------------------------------
    @command(sbc.SYNCHRONIZE_CACHE_10, sbc.SYNCHRONIZE_CACHE_16)
    def synchronize_cache(self, cmd: Command, cdb: Any) -> int:
        """The whole store is synced; NUMBER OF LOGICAL BLOCKS 0 means 'to the end'."""
        if cdb.lba >= self.blocks or cdb.lba + cdb.number_of_blocks > self.blocks:
            raise LbaOutOfRange(cdb.lba)
        self._sync(None, data_only=False)  # which cached block was lost is unknown
        return 0

    # --- VPD, SBC-4 6.6 ------------------------------------------------------------------
    def vpd_pages(self) -> dict[int, Callable[[], bytes]]:
        pages = super().vpd_pages()  # its page 00h lists whatever this dict holds
        t = self.DEVICE_TYPE
        # OPTIMAL TRANSFER LENGTH = the maximum: Linux sd then sizes its requests up to
        # it (else 1280 KiB), and each command costs us the same Python whatever its size
        pages[sbc.VPD_BLOCK_LIMITS] = lambda: sbc.vpd_block_limits(
            t, max_transfer_length=self.max_transfer_length,
            optimal_transfer_length=self.max_transfer_length,
        )
        pages[sbc.VPD_BLOCK_DEVICE_CHARACTERISTICS] = lambda: (
            sbc.vpd_block_device_characteristics(t)
        )
        return pages

    # --- mode parameters, SPC-4 7.5 / SBC-4 6.5 ------------------------------------------
    def mode_pages(self, pc: int) -> dict[tuple[int, int], bytes]:
        if pc == spc.PC_SAVED:
            pc_field = spc.MODE_SENSE_6.field("pc")  # byte 2 bits 7-6 in both CDBs
            raise IllegalRequest(
                Asc.SAVING_PARAMETERS_NOT_SUPPORTED, pc_field.byte, pc_field.msb_bit
            )
        if pc == spc.PC_CHANGEABLE:
            caching = sbc.caching_mode_page(wce=True)
            control = sbc.control_mode_page()
        else:
            wce = self.write_cache if pc == spc.PC_CURRENT else True
            caching = sbc.caching_mode_page(wce=wce)
            control = sbc.control_mode_page(gltsd=True, tas=True)  # TAS: LIO's emulate_tas
        return {(sbc.CACHING_PAGE, 0): caching, (sbc.CONTROL_PAGE, 0): control}

    def block_descriptor(self) -> bytes:
        return sbc.short_block_descriptor(self.blocks, self.block_size)

    def device_specific_parameter(self) -> int:
        return sbc.disk_device_specific_parameter(wp=self.read_only, dpofua=True)

    @command(spc.MODE_SELECT_6, spc.MODE_SELECT_10)
    def mode_select(self, cmd: Command, cdb: Any) -> int:
        """SPC-4 6.9/6.10: only changeable bits (WCE) may differ from the current values;
        anything else is INVALID FIELD IN PARAMETER LIST at the first differing bit."""
        layout = type(cdb)
        length = cdb.parameter_list_length
        if not length:
            return 0
        if cdb.sp:
            raise layout.invalid("sp", "saved pages are not supported")
        if len(cmd.data) < length:
            raise ParameterListLengthError(message=f"list of {length} bytes, {len(cmd.data)} came")
        ten = cdb.OPCODE == spc.MODE_SELECT_10.OPCODE
        params = spc.parse_mode_parameters(cmd.data.tobytes(length), ten)
        if params.medium_type:
            raise InvalidFieldInParameterList(2 if ten else 1, message="medium type")
        for i, desc in enumerate(params.block_descriptors):
            self._check_block_descriptor(desc, params.block_descriptor_offset + 8 * i)
        if params.pages and not cdb.pf:
            raise layout.invalid("pf", "vendor-specific mode pages")
        current = self.mode_pages(spc.PC_CURRENT)
        changeable = self.mode_pages(spc.PC_CHANGEABLE)
        wce = self.write_cache
        for page, sub, offset, raw in params.pages:
            ours = current.get((page, sub))
            if ours is None or raw[0] & 0x40:
                bit = 6 if raw[0] & 0x40 else 5  # SPF, or the PAGE CODE
                raise InvalidFieldInParameterList(offset, bit, f"mode page {page:#04x}/{sub:#04x}")
            if len(raw) != len(ours):
                raise InvalidFieldInParameterList(offset + 1, message="page length")
            mask = changeable[(page, sub)]
            for i in range(2, len(raw)):
                locked = (raw[i] ^ ours[i]) & ~mask[i] & 0xFF
                if locked:
                    raise InvalidFieldInParameterList(
                        offset + i, locked.bit_length() - 1, f"page {page:#04x} byte {i}"
                    )
            if page == sbc.CACHING_PAGE:
                wce = bool(raw[2] & sbc.WCE)
        if self.write_cache and not wce:
            self._sync(None, data_only=True)
        self.write_cache = wce
        return 0

    def _check_block_descriptor(self, desc: bytes, offset: int) -> None:
        """SBC-4 6.5.2: the capacity may be restated (or 0, 'unchanged'), never changed,
        and the block length is fixed."""
        blocks, reserved, block_length = sbc.parse_short_block_descriptor(desc)
        if blocks not in (0, min(self.blocks, 0xFFFFFFFF)):
            raise InvalidFieldInParameterList(offset, message="number of logical blocks")
        if reserved:
            raise InvalidFieldInParameterList(offset + 4, message="reserved")
        if block_length != self.block_size:
            raise InvalidFieldInParameterList(offset + 5, message="logical block length")

    # --- life cycle -----------------------------------------------------------------------
    def flush(self) -> None:
        if self.store.closed:
            return
        try:
            self.store.fsync()
        except OSError as e:
            raise BackingStoreError(f"{self.store.path}: fsync failed: {e.strerror}") from e

    def close(self) -> None:
        self.store.close()
