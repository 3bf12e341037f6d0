"""The TCMU mailbox and command ring (``include/uapi/linux/target_core_user.h``).

The kernel appends entries at ``cmd_head``; we read them from our own cursor, answer
each command by writing a response into the next CMD slot at ``cmd_tail`` (any command
may complete in any slot: the kernel looks commands up by ``cmd_id``), advance
``cmd_tail`` and wake the kernel with a 4-byte write to the uio fd.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from lio_xcopy.devices.base import DirectIo
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.errors import TcmuError
from lio_xcopy.tcmu.fastio import ALLOW_WRITE, DSYNC_WRITES, DirectServe, WaitServe

MAILBOX_VERSION = 2
MB_VERSION, MB_FLAGS, MB_CMDR_OFF, MB_CMDR_SIZE, MB_CMD_HEAD, MB_CMD_TAIL = 0, 2, 4, 8, 12, 64
MAILBOX_SIZE = 128

FLAG_CAP_OOOC = 1 << 0
FLAG_CAP_READ_LEN = 1 << 1
FLAG_CAP_TMR = 1 << 2
FLAG_CAP_KEEP_BUF = 1 << 3

OP_PAD, OP_CMD, OP_TMR = 0, 1, 2
OP_MASK = 0x7

UFLAG_UNKNOWN_OP = 0x1
UFLAG_READ_LEN = 0x2
UFLAG_KEEP_BUF = 0x4

# struct tcmu_cmd_entry: hdr, then the req/rsp union (req's inner struct is not packed)
HDR = struct.Struct("<IHBB")  # len_op, cmd_id, kflags, uflags
REQ = struct.Struct("<III4xQ")  # iov_cnt, iov_bidi_cnt, iov_dif_cnt, cdb_off @ +8
REQ_OFF = 8
IOV_OFF = 48
IOV = struct.Struct("<QQ")  # iov_base (offset into the map), iov_len
RSP_STATUS_OFF = 8
RSP_READ_LEN_OFF = 12
# a response from cmd_id on: cmd_id, kflags, uflags, then rsp's scsi_status, pads, read_len
RSP = struct.Struct("<HBBB3xI")
RSP_OFF = 4
U32 = struct.Struct("<I")
RSP_SENSE_OFF = 16
SENSE_BUFFERSIZE = 96
ENTRY_SIZE = 112  # sizeof(struct tcmu_cmd_entry)
TMR = struct.Struct("<B3xI")  # tmr_type, cmd_cnt @ +8
TMR_IDS_OFF = 32
ALIGN = 8

# Linux scsi_command_size_tbl, by group code
_CDB_SIZE = (6, 10, 10, 12, 16, 12, 10, 10)


def scsi_command_size(first_bytes: bytes | memoryview) -> int:
    """The CDB length the kernel copied into the ring (``scsi_command_size``)."""
    if first_bytes[0] == 0x7F:  # VARIABLE LENGTH CDB
        return first_bytes[7] + 8
    return _CDB_SIZE[(first_bytes[0] >> 5) & 7]


@dataclass(slots=True)
class RingCommand:
    """A CMD entry read off the ring: the CDB copied out, the data as views of the map."""

    cmd_id: int
    cdb: bytes
    data: DataBuffer


@dataclass(frozen=True, slots=True)
class RingTmr:
    """A TMR entry (task management notification): its type and the cmd_ids it aborts."""

    tmr_type: int
    cmd_ids: tuple[int, ...]


class CommandRing:
    """The mailbox, command ring and data area of one TCMU device, over its mmap."""

    def __init__(self, buf: memoryview):
        self.map = buf.cast("B") if buf.format != "B" else buf
        fields: tuple[int, int, int, int] = struct.unpack_from("<HHII", self.map, 0)
        version, self.flags, self.cmdr_off, self.cmdr_size = fields
        if version != MAILBOX_VERSION:
            raise TcmuError(
                f"TCMU mailbox version {version}, expected {MAILBOX_VERSION}: "
                "this kernel's ring layout is not supported"
            )
        if not (self.cmdr_off >= MAILBOX_SIZE and self.cmdr_size >= HDR.size
                and self.cmdr_off + self.cmdr_size <= len(self.map)):
            raise TcmuError(
                f"TCMU ring at {self.cmdr_off:#x}+{self.cmdr_size:#x} outside the map"
            )
        self._cursor = self.tail  # next entry we have not read yet
        self.outstanding = 0  # commands read and not yet completed

    @property
    def read_len_honoured(self) -> bool:
        """The kernel copies back only ``read_len`` bytes of a Data-In buffer when told
        (TCMU_MAILBOX_FLAG_CAP_READ_LEN), and only when it is nonzero."""
        return bool(self.flags & FLAG_CAP_READ_LEN)

    def resync(self) -> None:
        """Start over at ``cmd_tail`` with nothing outstanding (after a ring reset)."""
        self._cursor = self.tail
        self.outstanding = 0

    def queued(self) -> int:
        """CMD entries between ``cmd_tail`` and ``cmd_head``, read or not."""
        n, pos, head = 0, self.tail, self.head
        while pos != head:
            op, length, _, _ = self._hdr(pos)
            n += op == OP_CMD
            pos = (pos + length) % self.cmdr_size
        return n

    # --- mailbox fields ----------------------------------------------------------------
    @property
    def head(self) -> int:
        head: int = U32.unpack_from(self.map, MB_CMD_HEAD)[0]
        return head % self.cmdr_size

    @property
    def tail(self) -> int:
        tail: int = U32.unpack_from(self.map, MB_CMD_TAIL)[0]
        return tail % self.cmdr_size

    def _set_tail(self, value: int) -> None:
        U32.pack_into(self.map, MB_CMD_TAIL, value % self.cmdr_size)

    def _hdr(self, pos: int) -> tuple[int, int, int, int]:
        if pos % ALIGN or pos + HDR.size > self.cmdr_size:
            raise TcmuError(f"TCMU ring entry at {pos:#x} misaligned: ring is broken")
        len_op, cmd_id, _kflags, uflags = HDR.unpack_from(self.map, self.cmdr_off + pos)
        length = len_op & ~OP_MASK
        if length == 0 or pos + length > self.cmdr_size:
            raise TcmuError(f"TCMU ring entry at {pos:#x} has length {length}")
        return len_op & OP_MASK, length, cmd_id, uflags

    # --- reading new entries -----------------------------------------------------------
    def entries(self) -> Iterator[RingCommand | RingTmr]:
        """Every entry the kernel queued since the last call, PAD entries skipped."""
        while (entry := self.next_entry()) is not None:
            yield entry

    def next_entry(self) -> RingCommand | RingTmr | None:
        """The next entry the kernel queued (PAD entries skipped), or None when there
        is none."""
        while True:
            pos, head = self._cursor, self.head
            if pos == head:
                self._release_idle()
                return None
            op, length, cmd_id, _ = self._hdr(pos)
            if length > (head - pos) % self.cmdr_size:
                raise TcmuError(f"TCMU ring entry at {pos:#x} runs past the head {head:#x}")
            self._cursor = (pos + length) % self.cmdr_size
            if op == OP_CMD:
                self.outstanding += 1
                return self._command(pos, length, cmd_id)
            if op == OP_TMR:
                return self._tmr(pos, length)
            if op != OP_PAD:
                raise TcmuError(f"TCMU ring entry at {pos:#x} has opcode {op}")

    def serve_direct(self, serve: DirectServe, io: DirectIo, wake_fd: int = -1,
                     answers: bytes = b"") -> tuple[int, bool]:
        """Let the compiled path answer the run of READ/WRITE (10/16) entries at the
        cursor on ``io``'s terms, as :meth:`complete` would answer each with GOOD, and
        of entries ``answers`` (:class:`~lio_xcopy.tcmu.fastio.HeldAnswers`) holds the
        answer to. It stops at the first entry it does not serve, which
        :meth:`next_entry` then reads. ``wake_fd`` is woken as long transfers complete.
        Returns how many it answered, and whether ``wake_fd`` was woken after the last."""
        flags = (ALLOW_WRITE if io.writable else 0) | (DSYNC_WRITES if io.dsync else 0)
        cursor, served, woken = serve(self.map, self.cmdr_off, self.cmdr_size, self._cursor,
                                      self.outstanding, io.fd, wake_fd, io.block_size,
                                      io.blocks, io.max_blocks, flags, answers)
        self._cursor = cursor
        return served, woken

    def serve_waiting(self, serve: WaitServe, io: DirectIo, uio_fd: int, wake_fd: int,
                      timeout_ms: int, answers: bytes = b"",
                      kick_fd: int = -1) -> tuple[int, bool, int]:
        """:meth:`serve_direct`, and each time the ring is drained, wake the kernel for
        the answers written and wait on ``uio_fd`` for more, until an entry it does not
        serve is at the cursor, ``wake_fd`` is readable or ``timeout_ms`` went by.
        Returns how many it answered, whether ``uio_fd`` was woken after the last of
        them, and why it returned (:data:`~lio_xcopy.tcmu.fastio.AT_ENTRY` ...).
        ``kick_fd``: the eventfd whose reader wakes ``uio_fd`` on its behalf, or -1."""
        flags = (ALLOW_WRITE if io.writable else 0) | (DSYNC_WRITES if io.dsync else 0)
        cursor, served, woken, why = serve(
            self.map, self.cmdr_off, self.cmdr_size, self._cursor, self.outstanding, io.fd,
            uio_fd, io.block_size, io.blocks, io.max_blocks, flags, wake_fd, timeout_ms,
            answers, kick_fd)
        self._cursor = cursor
        return served, woken, why

    def _command(self, pos: int, entry_length: int, cmd_id: int) -> RingCommand:
        base = self.cmdr_off + pos
        iov_cnt, _iov_bidi_cnt, _dif, cdb_off = REQ.unpack_from(self.map, base + REQ_OFF)
        if IOV_OFF + IOV.size * iov_cnt > entry_length:
            raise TcmuError(f"cmd {cmd_id}: {iov_cnt} iovecs in a {entry_length}-byte entry")
        mapped = len(self.map)
        first = self.map[cdb_off : cdb_off + 8]
        size = scsi_command_size(first) if first and (first[0] != 0x7F or len(first) == 8) else 0
        if not size or cdb_off + size > mapped:
            raise TcmuError(f"cmd {cmd_id}: CDB at {cdb_off:#x} outside the map")
        cdb = bytes(self.map[cdb_off : cdb_off + size])
        views = []
        total = 0
        iov = base + IOV_OFF
        for _ in range(iov_cnt):  # the Data-In or Data-Out buffer (bidi iovs follow; unused)
            off, length = IOV.unpack_from(self.map, iov)
            if off + length > mapped:
                raise TcmuError(f"cmd {cmd_id}: iovec {off:#x}+{length} outside the map")
            views.append(self.map[off : off + length])
            total += length
            iov += IOV.size
        return RingCommand(cmd_id, cdb, DataBuffer.of_views(views, total))

    def _tmr(self, pos: int, length: int) -> RingTmr:
        base = self.cmdr_off + pos
        tmr_type, cnt = TMR.unpack_from(self.map, base + REQ_OFF)
        if TMR_IDS_OFF + 2 * cnt > length:
            raise TcmuError(f"TMR entry at {pos:#x}: {cnt} cmd ids in {length} bytes")
        ids = struct.unpack_from(f"<{cnt}H", self.map, base + TMR_IDS_OFF) if cnt else ()
        return RingTmr(tmr_type, tuple(ids))

    # --- completing --------------------------------------------------------------------
    def complete(
        self, cmd_id: int, status: int, sense: bytes = b"", read_len: int | None = None
    ) -> None:
        """Write one response into the next CMD slot at ``cmd_tail`` and advance it.
        The kernel sees it when the daemon next writes 4 bytes to the uio fd
        (:data:`lio_xcopy.tcmu.daemon.WAKE`)."""
        if self.outstanding <= 0:
            raise TcmuError(f"completion of cmd {cmd_id} with no command outstanding")
        tail, size = self.tail, self.cmdr_size
        # The commands read and not yet answered occupy the entries from cmd_tail up to
        # our cursor, which never passes cmd_head. A tail moved past cmd_head would send
        # the kernel's tcmu_handle_completions walking over stale or zeroed entries (a
        # zero-length PAD: it spins there for good), so never write one.
        room = min((self._cursor - tail) % size, (self.head - tail) % size)
        walked = 0
        while True:
            if walked >= room:
                raise TcmuError(
                    f"completion of cmd {cmd_id}: no unanswered CMD entry between "
                    f"cmd_tail {tail:#x} and cmd_head {self.head:#x} (the ring was reset "
                    "underneath the daemon): not answering it")
            pos = (tail + walked) % size
            op, length, _, _ = self._hdr(pos)
            walked += length
            if op == OP_CMD:
                break  # PAD and TMR entries carry no response
        if walked > room:
            raise TcmuError(f"completion of cmd {cmd_id}: the entry at {pos:#x} runs past "
                            f"the last one read: ring is broken")
        base = self.cmdr_off + pos
        RSP.pack_into(self.map, base + RSP_OFF, cmd_id, 0,
                      UFLAG_READ_LEN if read_len else 0, status, read_len or 0)
        if sense:
            sense = sense[:SENSE_BUFFERSIZE]
            self.map[base + RSP_SENSE_OFF : base + RSP_SENSE_OFF + len(sense)] = sense
        self.outstanding -= 1
        self._set_tail(tail + walked)
        self._release_idle()

    def _release_idle(self) -> None:
        """With nothing outstanding, only PAD/TMR entries lie before the cursor: hand
        their ring space back to the kernel."""
        if self.outstanding == 0 and self.tail != self._cursor:
            self._set_tail(self._cursor)
