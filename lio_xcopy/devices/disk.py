"""SBC-4 direct-access block device over a :class:`BackingStore` (after tcmu-runner's
file handler): logical block ``n`` is bytes ``[n * block_size, (n + 1) * block_size)``.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Protocol

from lio_xcopy.devices.backing import BackingStore
from lio_xcopy.devices.base import Command, DirectIo, LogicalUnit, LunIdentity, command
from lio_xcopy.devices.buffer import DataBuffer, PartialTransfer
from lio_xcopy.devices.filecopy import FileData, FileSource, KernelCopyFailed, copy_range
from lio_xcopy.devices.locks import SharedExclusive
from lio_xcopy.errors import BackingStoreError, ConfigError
from lio_xcopy.scsi import rod, sbc, spc, tpc_vpd
from lio_xcopy.scsi.cdb import Cdb
from lio_xcopy.scsi.errors import (
    DataProtect,
    HardwareError,
    IllegalRequest,
    InvalidFieldInParameterList,
    InvalidOpcode,
    LbaOutOfRange,
    MediumError,
    Miscompare,
    ParameterListLengthError,
    TransferLengthMismatch,
)
from lio_xcopy.scsi.sense import Asc

MIN_BLOCK_SIZE = 512
MAX_BLOCK_SIZE = 65536

# Block Limits (SBC-4 6.6.4), in logical blocks
MAX_COMPARE_AND_WRITE_LENGTH = 1  # as LIO: what VMware's ATS sends
MAX_WRITE_SAME_LENGTH = 1 << 22
MAX_UNMAP_LBA_COUNT = 1 << 22
MAX_UNMAP_BLOCK_DESCRIPTOR_COUNT = 256

_CHUNK = 1 << 20  # bytes read per step of a verify; the size of a WRITE SAME pattern
_SAME_IOV = 32  # pattern views per pwritev of WRITE SAME (32 MiB)
_NO_HOLES = (errno.EOPNOTSUPP, errno.ENOTTY, errno.ENOSYS)


class Disk(LogicalUnit):
    """A disk LUN: READ/WRITE (6/10/12/16), COMPARE AND WRITE, VERIFY and WRITE AND VERIFY
    (10/12/16), WRITE SAME (10/16), UNMAP, GET LBA STATUS, PRE-FETCH (10/16), READ
    CAPACITY (10/16), SYNCHRONIZE CACHE (10/16), MODE SENSE/SELECT with the caching (08h)
    and control (0Ah) pages, VPD B0h/B1h and, over a regular file, B2h.

    A regular file is thin provisioned (SBC-4 4.7.3): UNMAP and WRITE SAME with UNMAP
    punch holes, which read as zeros (LBPRZ), and GET LBA STATUS reports them."""

    DEVICE_TYPE = spc.TYPE_DISK
    VERSION_DESCRIPTORS = (0x00A0, 0x0460, 0x0600)  # SAM-5, SPC-4, SBC-4
    #: a disk's READs and WRITEs may run at once (SAM-5 8.6, SIMPLE tasks): the
    #: transport gives each LUN this many I/O workers, whose preadv/pwritev overlap
    IO_WORKERS = 4
    UNORDERED: ClassVar[frozenset[int]] = frozenset(c.OPCODE for c in (*sbc.READS,
                                                                       *sbc.WRITES))
    #: what Linux sd asks each time it revalidates the disk (after a writer closes it):
    #: the answers change only by MODE SELECT or with the terms of :meth:`direct_io`
    REPEATABLE = (spc.TestUnitReady, spc.Inquiry, spc.ModeSense6, spc.ModeSense10,
                  sbc.ReadCapacity10, sbc.ReadCapacity16, spc.ReportSupportedOperationCodes)
    LONG_OPCODES = frozenset(c.OPCODE for c in (
        sbc.SynchronizeCache10, sbc.SynchronizeCache16, sbc.CompareAndWrite, sbc.Unmap,
        *sbc.WRITE_SAMES, *sbc.VERIFIES, *sbc.PRE_FETCHES,
    ))

    def __init__(
        self,
        identity: LunIdentity,
        store: BackingStore,
        block_size: int = 512,
        *,
        read_only: bool = False,
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
        self.thin = not store.block_device  # holes: logical block provisioning management
        self.unmap_granularity = 1 if store.block_device else max(
            1, os.fstat(store.fd).st_blksize // block_size)
        # writes share it (several run at once, on the LUN's workers and the copy
        # manager's threads); COMPARE AND WRITE, WRITE AND VERIFY, WRITE SAME and UNMAP
        # hold it alone, so no other write comes between their steps (SBC-4 5.3)
        self._atomic = SharedExclusive()
        #: told (first LBA, blocks) of every write, once a ROD token names this LUN
        self.write_watch: Callable[[int, int], None] | None = None
        self._direct_terms: dict[tuple[int, bool, bool], DirectIo] = {}  # direct_io's
        if store.size % block_size:
            self.log.warning(
                "last %d bytes of %s are not a whole block and are not served",
                store.size % block_size, store.path,
            )

    # --- the narrow block interface (SCSI handlers and the copy manager) ------------------
    def unordered(self, cdb: bytes) -> bool:
        """READ and WRITE run beside each other and any other command: writes share
        ``_atomic``, which COMPARE AND WRITE and the like hold alone."""
        return bool(cdb) and cdb[0] in self.UNORDERED

    def check_range(self, lba: int, count: int) -> None:
        """SBC-4 4.5: every block of ``[lba, lba + count)`` must be on the LUN."""
        if lba < 0 or count < 0 or lba + count > self.blocks:
            raise LbaOutOfRange(lba)

    def check_writable(self) -> None:
        if self.read_only:
            raise DataProtect()

    def _transfer(self, move: Callable[[int, int, int, int], int], asc: Asc, lba: int,
                  count: int, buf: DataBuffer) -> int:
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

    def file_range(self, pos: int, n: int) -> tuple[int, int]:
        """The backing file and offset of the LUN's bytes ``[pos, pos + n)``, for the
        copy manager to have the kernel copy them (:mod:`~lio_xcopy.devices.filecopy`)
        in place of READs. A range off the LUN is LBA OUT OF RANGE;
        :class:`~lio_xcopy.devices.filecopy.KernelCopyFailed` where the store is a
        block device or closed: the caller READs those bytes instead."""
        if pos < 0 or n < 0 or pos + n > self.blocks * self.block_size:
            raise LbaOutOfRange(max(0, pos) // self.block_size)
        if self.store.block_device or self.store.closed:
            raise KernelCopyFailed(f"{self.store.path} is a block device or closed")
        return self.store.fd, pos

    def write_from_file(self, source: FileSource, pos: int, lba: int, count: int, *,
                        seen: Callable[[FileData], object] | None = None) -> None:
        """:meth:`write_blocks` of ``count`` blocks at ``lba`` whose data the kernel
        copies from ``source`` (from its byte ``pos``) into the backing file, never
        through a buffer of ours (:mod:`~lio_xcopy.devices.filecopy`); ``seen`` is then
        shown the blocks as the file holds them. Where the kernel does not copy,
        :class:`~lio_xcopy.devices.filecopy.KernelCopyFailed` (some of the blocks may
        have been written): write them with :meth:`write_blocks`."""
        with self.kernel_write(lba, count) as (fd, offset, commit):
            src_fd, src_offset = source.file_range(pos, count * self.block_size)
            copy_range(src_fd, src_offset, fd, offset, count * self.block_size)
            commit()
            if seen is not None and count:
                self._show(offset, count * self.block_size, seen)

    @contextlib.contextmanager
    def kernel_write(self, lba: int, count: int
                     ) -> Iterator[tuple[int, int, Callable[[], None]]]:
        """The backing file and the offset of blocks ``[lba, lba + count)``, for the
        kernel to write them in the ``with`` block as one WRITE would (the LUN writable,
        ``_atomic`` shared, ROD tokens told), and what to call once they are written:
        with the write cache off it makes them durable.
        :class:`~lio_xcopy.devices.filecopy.KernelCopyFailed` where a WRITE would fail
        (the LUN read-only, blocks off it), the store is a block device or closed, or
        that sync fails: write the blocks with :meth:`write_blocks`, which reports it."""
        if self.read_only or lba < 0 or count < 0 or lba + count > self.blocks:
            raise KernelCopyFailed("read-only, or blocks off the LUN")  # WRITE reports it
        if self.store.block_device or self.store.closed:
            raise KernelCopyFailed(f"{self.store.path} is a block device or closed")
        self._atomic.acquire_shared()
        try:
            if self.write_watch is not None:
                self.write_watch(lba, count)
            yield self.store.fd, lba * self.block_size, self._commit_kernel_write
        finally:
            self._atomic.release_shared()

    def _commit_kernel_write(self) -> None:
        if not self.write_cache:
            try:
                self.store.fsync(data_only=True)
            except OSError as e:
                raise KernelCopyFailed(f"fdatasync: {e.strerror or e}") from e

    def _show(self, offset: int, nbytes: int, seen: Callable[[FileData], object]) -> None:
        """Show ``seen`` the store's ``nbytes`` at ``offset``."""
        try:
            seen(FileData.span(self.store.fd, offset, nbytes))
        except OSError as e:
            raise MediumError(Asc.UNRECOVERED_READ_ERROR, offset // self.block_size,
                              str(e)) from e

    def write_blocks(self, lba: int, count: int, buf: DataBuffer, *, fua: bool = False) -> int:
        """Write ``count`` blocks from the front of ``buf`` at ``lba``; returns the bytes
        moved. ``fua`` (or a disabled write cache) makes them durable before returning."""
        self.check_writable()
        self._atomic.acquire_shared()
        try:
            return self._write(lba, count, buf, fua=fua)
        finally:
            self._atomic.release_shared()

    def _write(self, lba: int, count: int, buf: DataBuffer, *, fua: bool) -> int:
        """The write itself, holding ``_atomic``: durable data goes with RWF_DSYNC, which
        syncs these bytes only (FUA, SBC-4 5.37), not the whole store."""
        flags = os.RWF_DSYNC if fua or not self.write_cache else 0

        def move(fd: int, offset: int, start: int, length: int) -> int:
            return buf.write_to(fd, offset, start, length, flags)

        if self.write_watch is not None:
            self.write_watch(lba, count)
        return self._transfer(move, Asc.WRITE_ERROR, lba, count, buf)

    def direct_io(self) -> DirectIo | None:
        """READ and WRITE (10/16) as :meth:`read` and :meth:`write` do them: WRITEs only
        while the LUN takes writes, no ROD token watches them (``write_watch``) and
        ``_atomic`` can be shared without waiting; it is then held shared, as
        :meth:`write_blocks` holds it for each write, until :meth:`direct_io_done`."""
        if self.store.closed:
            return None
        writable = (not self.read_only and self.write_watch is None
                    and self._atomic.try_acquire_shared())
        key = (self.store.fd, writable, not self.write_cache)
        io = self._direct_terms.get(key)
        if io is None:
            self._direct_terms.clear()  # the fd or the write cache changed: old terms go
            io = self._direct_terms[key] = DirectIo(
                self.store.fd, self.block_size, self.blocks, self.max_transfer_length,
                writable, not self.write_cache)
        return io

    def direct_io_done(self, io: DirectIo) -> None:
        if io.writable:
            self._atomic.release_shared()

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

    # --- READ and WRITE, SBC-4 5.13-5.15/5.37-5.39 (and SBC-3's 6-byte forms) -----------
    @command(*sbc.READS)
    def read(self, cmd: Command, cdb: sbc.AnyRead) -> int:
        """DPO is a hint and is ignored. FUA asks for the blocks from the medium rather
        than a volatile cache (SBC-4 5.13): we keep no cache of our own, and the page
        cache read through is the backing file's content, so nothing is synced first."""
        if getattr(cdb, "rdprotect", 0):
            raise type(cdb).invalid("rdprotect", "no protection information")
        count = self._transfer_length(cdb, cmd.data, data_out=False)
        return self.read_blocks(cdb.lba, count, cmd.data)

    @command(*sbc.WRITES)
    def write(self, cmd: Command, cdb: sbc.AnyWrite) -> int:
        if getattr(cdb, "wrprotect", 0):
            raise type(cdb).invalid("wrprotect", "no protection information")
        self.check_writable()
        count = self._transfer_length(cdb, cmd.data, data_out=True)
        self.write_blocks(cdb.lba, count, cmd.data, fua=bool(getattr(cdb, "fua", 0)))
        return 0

    # --- COMPARE AND WRITE, VERIFY, WRITE AND VERIFY, SBC-4 5.3/5.33-5.35/5.41-5.43 ------
    @command(sbc.CompareAndWrite)
    def compare_and_write(self, cmd: Command, cdb: sbc.CompareAndWrite) -> int:
        """Compare NUMBER OF LOGICAL BLOCKS of verify data (the first half of the Data-Out
        buffer) with the medium and, only if equal, write the second half; no other write
        comes between. A difference is MISCOMPARE with the offset of its first byte in the
        Data-Out buffer in INFORMATION. 0 blocks is not an error."""
        layout = type(cdb)
        if cdb.wrprotect:
            raise layout.invalid("wrprotect", "no protection information")
        count = cdb.number_of_blocks
        if count > MAX_COMPARE_AND_WRITE_LENGTH:
            raise layout.invalid("number_of_blocks", f"{count} blocks exceed"
                                 f" {MAX_COMPARE_AND_WRITE_LENGTH}")
        self.check_writable()
        self.check_range(cdb.lba, count)
        nbytes = count * self.block_size
        if len(cmd.data) != 2 * nbytes:  # as for WRITE: see _transfer_length
            raise TransferLengthMismatch(f"{count} blocks to compare and write with an "
                                         f"expected transfer length of {len(cmd.data)} bytes")
        if not count:
            return 0
        with self._atomic.exclusive():
            offset = self._miscompare(cdb.lba, count, cmd.data.sub(0, nbytes))
            if offset is not None:
                raise Miscompare(offset)
            self._write(cdb.lba, count, cmd.data.sub(nbytes, nbytes), fua=bool(cdb.fua))
        return 0

    @command(*sbc.VERIFIES)
    def verify(self, cmd: Command, cdb: sbc.AnyVerify) -> int:
        """BYTCHK 00b reads the blocks (a read error is the medium check failing), 01b
        compares the Data-Out buffer with them, 11b compares its one block with each. A
        difference is MISCOMPARE with the offset of the first differing byte, counted
        from the start of the verified range, in INFORMATION."""
        layout = type(cdb)
        if cdb.vrprotect:
            raise layout.invalid("vrprotect", "no protection information")
        bytchk = cdb.bytchk
        if bytchk not in (sbc.BYTCHK_NONE, sbc.BYTCHK_COMPARE, sbc.BYTCHK_ONE_BLOCK):
            raise layout.invalid("bytchk", f"BYTCHK {bytchk:02b}b is reserved")
        count = cdb.verification_length
        if (bytchk == sbc.BYTCHK_COMPARE and self.max_transfer_length
                and count > self.max_transfer_length):
            raise layout.invalid("verification_length",
                                 f"{count} blocks exceed {self.max_transfer_length}")
        self.check_range(cdb.lba, count)
        if not count:
            return 0
        bs = self.block_size
        need = {sbc.BYTCHK_NONE: 0, sbc.BYTCHK_COMPARE: count * bs,
                sbc.BYTCHK_ONE_BLOCK: bs}[bytchk]
        if len(cmd.data) < need:
            raise layout.invalid("verification_length",
                                 f"{need} bytes to compare but a data buffer of {len(cmd.data)}")
        if bytchk == sbc.BYTCHK_NONE:
            self._miscompare(cdb.lba, count, None)
            return 0
        offset = self._miscompare(cdb.lba, count, cmd.data.sub(0, need),
                                  one_block=bytchk == sbc.BYTCHK_ONE_BLOCK)
        if offset is not None:
            raise Miscompare(offset)
        return 0

    @command(*sbc.WRITE_AND_VERIFIES)
    def write_and_verify(self, cmd: Command, cdb: sbc.AnyWriteAndVerify) -> int:
        """Write the blocks to stable storage, then read them back: BYTCHK 01b compares
        them with the Data-Out buffer (MISCOMPARE with the offset on a difference), 00b
        only reads them; 1xb is reserved for this command."""
        layout = type(cdb)
        if cdb.wrprotect:
            raise layout.invalid("wrprotect", "no protection information")
        if cdb.bytchk not in (sbc.BYTCHK_NONE, sbc.BYTCHK_COMPARE):
            raise layout.invalid("bytchk", f"BYTCHK {cdb.bytchk:02b}b is reserved")
        self.check_writable()
        count = self._transfer_length(cdb, cmd.data, data_out=True)
        if not count:
            return 0
        nbytes = count * self.block_size
        with self._atomic.exclusive():
            self._write(cdb.lba, count, cmd.data, fua=True)
            expected = cmd.data.sub(0, nbytes) if cdb.bytchk else None
            offset = self._miscompare(cdb.lba, count, expected)
        if offset is not None:
            raise Miscompare(offset)
        return 0

    def _miscompare(self, lba: int, count: int, expected: DataBuffer | None,
                    *, one_block: bool = False) -> int | None:
        """Read ``count`` blocks at ``lba`` in steps of :data:`_CHUNK` bytes and compare
        them with ``expected`` (or with its one block repeated, ``one_block``); the
        offset of the first differing byte, or None. ``expected`` None only reads: a
        read error is MEDIUM ERROR at its LBA."""
        bs = self.block_size
        step = max(1, _CHUNK // bs)
        scratch = DataBuffer.allocate(min(step, count) * bs)
        medium = scratch.views[0]
        pattern: memoryview | None = None
        if one_block and expected is not None:
            pattern = memoryview(expected.tobytes(bs) * min(step, count))
        done = 0
        while done < count:
            n = min(step, count - done)
            self._transfer(scratch.read_from, Asc.UNRECOVERED_READ_ERROR, lba + done, n,
                           scratch)
            if expected is not None:
                want = ([pattern[: n * bs]] if pattern is not None
                        else expected.slices(done * bs, n * bs))
                offset = _first_difference(medium[: n * bs], want)
                if offset is not None:
                    return done * bs + offset
            done += n
        return None

    def _transfer_length(self, cdb: sbc.AnyRead | sbc.AnyWrite | sbc.AnyWriteAndVerify,
                         buf: DataBuffer, *, data_out: bool) -> int:
        """The CDB's block count, checked in LIO's order (``sbc_parse_cdb`` then
        ``target_cmd_size_check``): the Block Limits, the LUN's range, then the buffer
        the kernel mapped, which is the initiator's expected data transfer length.

        Residuals (FCP-4 9.4.2; RFC 7143 11.4.5), as LIO's fileio
        answers them within what TCMU lets us say:

        * Data-In, buffer longer than the CDB's (underflow): the CDB's blocks move and
          the daemon reports them as ``read_len``; the kernel reports the residual.
        * Data-In, buffer shorter (overflow): fileio moves what fits and the transport
          sets the overflow residual, but TCMU cannot: ``tcmu_handle_completion``
          takes ``read_len`` only below the buffer's length and
          ``target_complete_cmd_with_length`` sets only an underflow. Moving a part
          with GOOD would pass for a whole transfer, so nothing moves and the answer is
          FCP-4 9.4.2 b): INVALID FIELD IN COMMAND INFORMATION UNIT.
        * Data-Out, either way: TCMU ignores ``read_len`` for Data-Out, and LIO's core
          refuses such a WRITE for every backstore it parses ("Rejecting
          underflow/overflow for WRITE data CDB"): the same answer, nothing written.
        """
        layout = type(cdb)
        count = sbc.transfer_blocks(cdb)
        if self.max_transfer_length and count > self.max_transfer_length:
            raise layout.invalid(
                "transfer_length", f"{count} blocks exceed {self.max_transfer_length}"
            )
        self.check_range(cdb.lba, count)
        need = count * self.block_size
        if len(buf) < need or (data_out and len(buf) != need):
            raise TransferLengthMismatch(
                f"{layout.NAME} of {count} blocks ({need} bytes) with an expected "
                f"transfer length of {len(buf)} bytes"
            )
        return count

    # --- WRITE SAME and UNMAP, SBC-4 5.47/5.48/5.32, provisioning 4.7 ---------------------
    @command(*sbc.WRITE_SAMES)
    def write_same(self, cmd: Command, cdb: sbc.AnyWriteSame) -> int:
        """Write one block (zeros with NDOB) to NUMBER OF LOGICAL BLOCKS blocks, 0 meaning
        to the last LBA (WSNZ is 0). Zeros with UNMAP are deallocated instead (LBPRZ: they
        read back as zeros), and so are zeros on a block device (BLKZEROOUT); anything
        else is written in pwritev batches of :data:`_SAME_IOV` patterns. ANCHOR is
        refused (ANC_SUP 0, as LIO), and so are SBC-3's PBDATA and LBDATA."""
        layout = type(cdb)
        for name in ("wrprotect", "anchor", "pbdata", "lbdata"):
            if getattr(cdb, name):
                raise layout.invalid(name, f"{layout.NAME}: {name.upper()} is not supported")
        self.check_writable()
        if cdb.lba >= self.blocks:
            raise LbaOutOfRange(cdb.lba)
        count = cdb.number_of_blocks or self.blocks - cdb.lba
        if count > MAX_WRITE_SAME_LENGTH:
            raise layout.invalid("number_of_blocks",
                                 f"{count} blocks exceed {MAX_WRITE_SAME_LENGTH}")
        self.check_range(cdb.lba, count)
        bs = self.block_size
        if getattr(cdb, "ndob", 0):
            block = bytes(bs)
        elif len(cmd.data) < bs:
            raise layout.invalid("number_of_blocks", f"no {bs}-byte block to write")
        else:
            block = cmd.data.tobytes(bs)
        zeros = not block.strip(b"\0")
        with self._atomic.exclusive():
            if not (zeros and (cdb.unmap or self.store.block_device)
                    and self._deallocate(cdb.lba, count)):
                self._write_same(cdb.lba, count, block)
        return 0

    def _write_same(self, lba: int, count: int, block: bytes) -> None:
        """Write ``block`` to ``count`` blocks at ``lba``: a pattern of up to
        :data:`_CHUNK` bytes, repeated :data:`_SAME_IOV` times in each pwritev."""
        bs = self.block_size
        per = max(1, min(count, _CHUNK // bs))
        pattern = memoryview(block * per)
        done = 0
        while done < count:
            n = min(per * _SAME_IOV, count - done)
            whole, part = divmod(n, per)
            views = [pattern] * whole + ([pattern[: part * bs]] if part else [])
            self._write(lba + done, n, DataBuffer(views), fua=False)
            done += n

    def _deallocate(self, lba: int, count: int) -> bool:
        """Punch ``count`` blocks at ``lba`` out of the store (they read as zeros); False
        where the backing cannot, so the caller writes zeros instead."""
        if self.write_watch is not None:
            self.write_watch(lba, count)
        try:
            self.store.deallocate(lba * self.block_size, count * self.block_size)
        except OSError as e:
            if e.errno in _NO_HOLES:
                self.log.info("%s cannot deallocate (%s): zeros are written instead",
                              self.store.path, e.strerror)
                return False
            self.log.error("deallocating %d blocks at LBA %d failed: %s", count, lba, e)
            raise MediumError(Asc.WRITE_ERROR, lba, str(e)) from e
        if not self.write_cache:
            self._sync(lba, data_only=False)  # a hole is metadata
        return True

    @command(sbc.Unmap)
    def unmap(self, cmd: Command, cdb: sbc.Unmap) -> int:
        """Deallocate every extent of the parameter list, after checking them all: more
        descriptors or blocks than the Block Limits allow is INVALID FIELD IN PARAMETER
        LIST at the field that crossed the limit, an extent past the last LBA is LOGICAL
        BLOCK ADDRESS OUT OF RANGE; nothing is deallocated then. ANCHOR is refused."""
        layout = type(cdb)
        if cdb.anchor:
            raise layout.invalid("anchor", "anchored logical blocks are not supported")
        self.check_writable()
        length = cdb.parameter_list_length
        if not length:  # SBC-4 5.32.1: not an error
            return 0
        if len(cmd.data) < length:
            raise ParameterListLengthError(message=f"list of {length} bytes, {len(cmd.data)} came")
        extents = sbc.parse_unmap_parameter_list(cmd.data.tobytes(length))
        if len(extents) > MAX_UNMAP_BLOCK_DESCRIPTOR_COUNT:
            raise InvalidFieldInParameterList(
                2, message=f"{len(extents)} descriptors exceed {MAX_UNMAP_BLOCK_DESCRIPTOR_COUNT}")
        total = 0
        for lba, count, offset in extents:
            total += count
            if total > MAX_UNMAP_LBA_COUNT:
                raise InvalidFieldInParameterList(
                    offset + 8, message=f"{total} blocks exceed {MAX_UNMAP_LBA_COUNT}")
            if lba + count > self.blocks:
                raise LbaOutOfRange(lba)
        with self._atomic.exclusive():
            for lba, count, _ in extents:
                if count and not self._deallocate(lba, count):
                    self._write_same(lba, count, bytes(self.block_size))
        return 0

    @command(sbc.GetLbaStatus)
    def get_lba_status(self, cmd: Command, cdb: sbc.GetLbaStatus) -> int:
        """Mapped and deallocated extents from the STARTING LBA on, as many as the
        ALLOCATION LENGTH holds, from the store's holes (lseek SEEK_DATA/SEEK_HOLE)."""
        if cdb.lba >= self.blocks:
            raise LbaOutOfRange(cdb.lba)
        room = max(1, (min(cdb.allocation_length, len(cmd.data))
                       - sbc.LBA_STATUS_HEADER_LENGTH) // sbc.LBA_STATUS_DESCRIPTOR_LENGTH)
        data = sbc.lba_status_data(self._lba_status(cdb.lba, room))
        return cmd.data.copy_in(spc.truncate(data, cdb.allocation_length))

    def _lba_status(self, lba: int, room: int) -> list[tuple[int, int, int]]:
        """Up to ``room`` (lba, blocks, provisioning status) extents from ``lba``: a block
        holding any data is mapped; a block device is mapped throughout."""
        bs = self.block_size
        out: list[tuple[int, int, int]] = []
        blk = lba
        while blk < self.blocks and len(out) < room:
            off = blk * bs
            try:
                data = self.store.next_data(off) if self.thin else -1
                if data < 0:
                    status, end = sbc.MAPPED, self.blocks
                elif data >= off + bs:
                    status, end = sbc.DEALLOCATED, data // bs
                else:
                    status, end = sbc.MAPPED, -(-self.store.next_hole(max(data, off)) // bs)
            except OSError as e:
                self.log.warning("cannot find the holes of %s: %s", self.store.path, e)
                status, end = sbc.MAPPED, self.blocks
            end = max(blk + 1, min(end, self.blocks, blk + 0xFFFFFFFF))
            if out and out[-1][2] == status and out[-1][1] + end - blk <= 0xFFFFFFFF:
                out[-1] = (out[-1][0], out[-1][1] + end - blk, status)
            else:
                out.append((blk, end - blk, status))
            blk = end
        return out

    # --- PRE-FETCH, SBC-4 5.10/5.11 -----------------------------------------------------
    @command(*sbc.PRE_FETCHES)
    def pre_fetch(self, cmd: Command, cdb: sbc.AnyPreFetch) -> int:  # noqa: ARG002
        """Ask for the blocks in the page cache (posix_fadvise WILLNEED); PREFETCH LENGTH
        0 means to the last LBA. Whatever IMMED, the answer is GOOD, never CONDITION MET:
        the advice is a hint, so whether the cache will hold the blocks is unknown, and
        SBC-4 answers GOOD when they may not all fit (tcmu-runner does the same; LIO's
        fileio has no PRE-FETCH)."""
        if cdb.lba >= self.blocks:
            raise LbaOutOfRange(cdb.lba)
        count = cdb.prefetch_length or self.blocks - cdb.lba
        self.check_range(cdb.lba, count)
        try:
            self.store.prefetch(cdb.lba * self.block_size, count * self.block_size)
        except OSError as e:  # advice that could not be given changes no data
            self.log.warning("PRE-FETCH of %d blocks at LBA %d: %s", count, cdb.lba, e)
        return 0

    # --- READ CAPACITY, SBC-4 5.17/5.18 -------------------------------------------------
    @command(sbc.ReadCapacity10)
    def read_capacity_10(self, cmd: Command, cdb: sbc.ReadCapacity10) -> int:
        self._check_pmi(cdb)
        return cmd.data.copy_in(sbc.read_capacity_10_data(self.blocks - 1, self.block_size))

    @command(sbc.ReadCapacity16)
    def read_capacity_16(self, cmd: Command, cdb: sbc.ReadCapacity16) -> int:
        self._check_pmi(cdb)
        data = sbc.read_capacity_16_data(self.blocks - 1, self.block_size,
                                         lbpme=self.thin, lbprz=self.thin)
        return cmd.data.copy_in(spc.truncate(data, cdb.allocation_length))

    def _check_pmi(self, cdb: sbc.ReadCapacity10 | sbc.ReadCapacity16) -> None:
        """PMI and LOGICAL BLOCK ADDRESS as SBC-3 defines them (obsolete in SBC-4)."""
        if not cdb.pmi:
            if cdb.lba:
                raise type(cdb).invalid("lba", "LOGICAL BLOCK ADDRESS without PMI")
        elif cdb.lba >= self.blocks:
            raise LbaOutOfRange(cdb.lba)

    # --- SYNCHRONIZE CACHE, SBC-4 5.30/5.31 ---------------------------------------------
    @command(sbc.SynchronizeCache10, sbc.SynchronizeCache16)
    def synchronize_cache(self, cmd: Command, cdb: sbc.AnySynchronizeCache) -> int:  # noqa: ARG002
        """The whole store is synced; NUMBER OF LOGICAL BLOCKS 0 means 'to the end'."""
        if cdb.lba >= self.blocks or cdb.lba + cdb.number_of_blocks > self.blocks:
            raise LbaOutOfRange(cdb.lba)
        self._sync(None, data_only=False)  # which cached block was lost is unknown
        return 0

    # --- ROD tokens, SBC-4 5.9/5.46, SPC-4 6.19/6.20: handed to the copy manager's store ----
    def _rod(self, cdb: Cdb) -> RodLink:
        rods: RodLink | None = getattr(self.copy_manager, "rod", None)
        if rods is None:
            raise InvalidOpcode(cdb.OPCODE)
        return rods

    def _parameter_list(self, cmd: Command,
                        cdb: rod.PopulateToken | rod.WriteUsingToken) -> bytes:
        length = cdb.parameter_list_length
        if len(cmd.data) < length:
            raise ParameterListLengthError(10, "the Data-Out buffer is shorter than the list")
        return cmd.data.tobytes(length)

    @command(rod.PopulateToken)
    def populate_token(self, cmd: Command, cdb: rod.PopulateToken) -> int:
        """A point in time ROD token for block ranges of this LUN; PARAMETER LIST LENGTH
        0 is not an error and makes none (SBC-4 5.9.1)."""
        rods = self._rod(cdb)
        if cdb.parameter_list_length:
            rods.populate_token(self, cdb.list_identifier, self._parameter_list(cmd, cdb))
        return 0

    @command(rod.WriteUsingToken)
    def write_using_token(self, cmd: Command, cdb: rod.WriteUsingToken) -> int:
        """Write what a ROD token represents to block ranges of this LUN (SBC-4 5.46)."""
        rods = self._rod(cdb)
        if cdb.parameter_list_length:
            self.check_writable()
            rods.write_using_token(self, cdb.list_identifier, self._parameter_list(cmd, cdb))
        return 0

    @command(rod.ReceiveRodTokenInformation)
    def receive_rod_token_information(self, cmd: Command,
                                      cdb: rod.ReceiveRodTokenInformation) -> int:
        data = self._rod(cdb).token_information(self, cdb.list_identifier)
        return cmd.data.copy_in(spc.truncate(data, cdb.allocation_length))

    @command(rod.ReportAllRodTokens)
    def report_all_rod_tokens(self, cmd: Command, cdb: rod.ReportAllRodTokens) -> int:
        data = self._rod(cdb).report_all()
        return cmd.data.copy_in(spc.truncate(data, cdb.allocation_length))

    def third_party_copy_page(self) -> bytes:
        """The page of :class:`LogicalUnit`, with the ROD token descriptors (SBC-4 6.6.3,
        SPC-4 7.8.17.7/8) while the copy manager serves ROD tokens."""
        link = self.copy_manager
        rods: RodLink | None = getattr(link, "rod", None)
        if link is None or rods is None:
            return super().third_party_copy_page()
        return tpc_vpd.third_party_copy_page(
            self.DEVICE_TYPE, link.limits, self._dispatch, rod=rods.descriptors()).encode()

    # --- VPD, SBC-4 6.6 ------------------------------------------------------------------
    def vpd_pages(self) -> dict[int, Callable[[], bytes]]:
        pages = super().vpd_pages()  # its page 00h lists whatever this dict holds
        t = self.DEVICE_TYPE
        # OPTIMAL TRANSFER LENGTH = the maximum: Linux sd then sizes its requests up to
        # it (else 1280 KiB), and each command costs us the same Python whatever its size
        pages[sbc.VPD_BLOCK_LIMITS] = lambda: sbc.vpd_block_limits(
            t, max_transfer_length=self.max_transfer_length,
            optimal_transfer_length=self.max_transfer_length,
            max_compare_and_write_length=MAX_COMPARE_AND_WRITE_LENGTH,
            max_unmap_lba_count=MAX_UNMAP_LBA_COUNT,
            max_unmap_block_descriptor_count=MAX_UNMAP_BLOCK_DESCRIPTOR_COUNT,
            optimal_unmap_granularity=self.unmap_granularity,
            unmap_granularity_alignment=0,
            max_write_same_length=MAX_WRITE_SAME_LENGTH,
        )
        pages[sbc.VPD_BLOCK_DEVICE_CHARACTERISTICS] = lambda: (
            sbc.vpd_block_device_characteristics(t)
        )
        if self.thin:
            pages[sbc.VPD_LOGICAL_BLOCK_PROVISIONING] = lambda: sbc.LogicalBlockProvisioning(
                lbpu=True, lbpws=True, lbpws10=True, lbprz=sbc.LBPRZ_ZEROS,
                provisioning_type=sbc.PROVISIONING_THIN,
            ).encode(t)
        return pages

    # --- mode parameters, SPC-4 7.5 / SBC-4 6.5 ------------------------------------------
    def mode_pages(self, pc: int) -> dict[tuple[int, int], bytes]:
        if pc == spc.PC_SAVED:
            pc_field = spc.ModeSense6.field("pc")  # byte 2 bits 7-6 in both CDBs
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

    @command(spc.ModeSelect6, spc.ModeSelect10)
    def mode_select(self, cmd: Command, cdb: spc.AnyModeSelect) -> int:
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
        ten = cdb.OPCODE == spc.ModeSelect10.OPCODE
        params = spc.parse_mode_parameters(cmd.data.tobytes(length), ten=ten)
        if params.medium_type:
            raise InvalidFieldInParameterList(*spc.mode_header(ten=ten).pointer("medium_type"),
                                              "medium type")
        size = sbc.SHORT_BLOCK_DESCRIPTOR_LAYOUT.length
        for i, desc in enumerate(params.block_descriptors):
            self._check_block_descriptor(desc, params.block_descriptor_offset + size * i)
        if params.pages and not cdb.pf:
            raise layout.invalid("pf", "vendor-specific mode pages")
        current = self.mode_pages(spc.PC_CURRENT)
        changeable = self.mode_pages(spc.PC_CHANGEABLE)
        wce = self.write_cache
        head = spc.MODE_PAGE_0_HEADER
        for page, sub, offset, raw in params.pages:
            ours = current.get((page, sub))
            spf = head.get("spf", raw)
            if ours is None or spf:
                byte, bit = head.pointer("spf" if spf else "page_code")
                raise InvalidFieldInParameterList(
                    offset + byte, bit, f"mode page {page:#04x}/{sub:#04x}")
            if len(raw) != len(ours):
                raise InvalidFieldInParameterList(offset + head.offset("page_length"),
                                                  message="page length")
            mask = changeable[(page, sub)]
            for i in range(head.length, len(raw)):
                locked = (raw[i] ^ ours[i]) & ~mask[i] & 0xFF
                if locked:
                    raise InvalidFieldInParameterList(
                        offset + i, locked.bit_length() - 1, f"page {page:#04x} byte {i}"
                    )
            if page == sbc.CACHING_PAGE:
                wce = bool(sbc.CACHING_PAGE_LAYOUT.get("wce", raw))
        if self.write_cache and not wce:
            self._sync(None, data_only=True)
        self.write_cache = wce
        return 0

    def _check_block_descriptor(self, desc: bytes, offset: int) -> None:
        """SBC-4 6.5.2: the capacity may be restated (or 0, 'unchanged'), never changed,
        and the block length is fixed."""
        blocks, reserved, block_length = sbc.parse_short_block_descriptor(desc)
        layout = sbc.SHORT_BLOCK_DESCRIPTOR_LAYOUT
        if blocks not in (0, min(self.blocks, 0xFFFFFFFF)):
            raise InvalidFieldInParameterList(offset + layout.offset("number_of_logical_blocks"),
                                              message="number of logical blocks")
        if reserved:
            raise InvalidFieldInParameterList(offset + layout.offset("reserved"),
                                              message="reserved")
        if block_length != self.block_size:
            raise InvalidFieldInParameterList(offset + layout.offset("logical_block_length"),
                                              message="logical block length")

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


class RodLink(Protocol):
    """What a disk needs of the copy manager's ROD token store (``copy.rod``)."""

    def descriptors(self) -> Sequence[tpc_vpd.Descriptor]: ...

    def populate_token(self, lun: Any, list_id: int, data: bytes) -> None: ...

    def write_using_token(self, lun: Any, list_id: int, data: bytes) -> None: ...

    def token_information(self, lun: Any, list_id: int) -> bytes: ...

    def report_all(self) -> bytes: ...


def _first_difference(medium: memoryview, expected: Sequence[memoryview]) -> int | None:
    """Offset of the first byte where ``medium`` and the concatenated ``expected`` views
    differ (None if equal), then a bisection of the differing view. A bytearray compares
    with a view by memcmp; two memoryviews compare item by item, 20 times slower."""
    pos = 0
    for want in expected:
        got = medium[pos : pos + len(want)]
        if bytearray(got) != want:
            lo, hi = 0, len(want)  # the first difference lies in [lo, hi)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if bytearray(got[lo:mid]) == want[lo:mid]:
                    lo = mid
                else:
                    hi = mid
            return pos + lo
        pos += len(want)
    return None
