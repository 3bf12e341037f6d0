"""A simulated kernel side of the TCMU ring, for tests without a kernel: a pytest
plugin (registered in tests/unit/conftest.py) with the ``kernel`` fixture, and a toy
SCSI device to put behind it.

It lays out the mailbox, ring and data area with the byte layout of
``target_core_user.c`` (PAD at the ring's end, CDB after the iovecs, offsets relative
to the map) and reaps completions the way ``tcmu_handle_completions`` does.
"""

from __future__ import annotations

import contextlib
import mmap
import socket
import struct
import threading
from concurrent.futures import Future
from dataclasses import dataclass

import pytest

from lio_xcopy.devices.base import Command, LogicalUnit, LunIdentity, command
from lio_xcopy.scsi import spc
from lio_xcopy.scsi.cdb import Cdb, bitfield
from lio_xcopy.scsi.errors import InvalidFieldInCdb
from lio_xcopy.tcmu import ring as r
from lio_xcopy.tcmu.daemon import TcmuDevice

PAGE = 4096
SAM_STAT_BUSY = 0x08


def kernel_gathers(status: int, read_len: int | None, data_in_len: int) -> int:
    """How many bytes of a Data-In buffer ``tcmu_handle_completion`` copies back to
    the initiator: ``read_len`` when the response set it (nonzero), else the whole
    buffer after GOOD and nothing after CHECK CONDITION."""
    if read_len is not None:
        return min(read_len, data_in_len)
    return data_in_len if status == 0 else 0


@dataclass(slots=True)
class SimCompletion:
    cmd_id: int
    status: int
    sense: bytes
    data_in: bytes
    read_len: int | None


@dataclass(slots=True)
class _Inflight:
    iovs: list[tuple[int, int]]
    data_in_len: int
    pages: list[int]


class SimulatedKernel:
    """Kernel side of one TCMU device. ``uio_fd`` is what the daemon polls, reads and
    writes, like ``/dev/uioN``."""

    def __init__(self, cmdr_size: int = 64 * 1024, data_pages: int = 1024, flags: int = 0xF):
        self.cmdr_off = r.MAILBOX_SIZE
        self.cmdr_size = cmdr_size - r.MAILBOX_SIZE
        self.data_off = cmdr_size
        self.size = cmdr_size + data_pages * PAGE
        self.mm = mmap.mmap(-1, self.size)
        self.flags = flags
        self.view = memoryview(self.mm)
        struct.pack_into("<HHII", self.mm, 0, r.MAILBOX_VERSION, flags, self.cmdr_off,
                         self.cmdr_size)
        self.head = 0
        self.last_cleaned = 0
        self.free_pages = list(range(data_pages))
        self.inflight: dict[int, _Inflight] = {}
        self.next_id = 1
        self._kernel_end, self.uio_end = socket.socketpair()
        self.uio_fd = self.uio_end.fileno()
        self.events = 0
        self._answered: dict[int, SimCompletion] = {}  # reaped, not yet asked for

    def close(self) -> None:
        self.view.release()
        with contextlib.suppress(BufferError):  # a test still holds a view: GC unmaps
            self.mm.close()
        self._kernel_end.close()
        self.uio_end.close()

    # --- queueing (queue_cmd_ring / queue_tmr_ring) -------------------------------------
    def _space(self) -> int:
        used = (self.head - self.last_cleaned) % self.cmdr_size
        return self.cmdr_size - used - 1

    def _insert(self, size: int) -> int:
        to_end = self.cmdr_size - self.head
        needed = size if to_end >= size else size + to_end
        if self._space() < needed:
            raise BufferError("ring full")
        if to_end < size:  # ring_insert_padding
            struct.pack_into("<IHBB", self.mm, self.cmdr_off + self.head, to_end | r.OP_PAD,
                             0, 0, 0)
            self.head = 0
        return self.head

    def _publish(self, size: int) -> None:
        self.head = (self.head + size) % self.cmdr_size
        struct.pack_into("<I", self.mm, r.MB_CMD_HEAD, self.head)
        self.events += 1
        self._kernel_end.send(struct.pack("<I", self.events))  # uio_event_notify

    def submit(self, cdb: bytes, data_out: bytes = b"", data_in_len: int = 0,
               scatter: bool = True) -> int:
        """Queue one command; ``scatter`` spreads its data over non-adjacent pages."""
        length = len(data_out) or data_in_len
        npages = (length + PAGE - 1) // PAGE
        if npages > len(self.free_pages):
            raise BufferError("data area full")
        pages = self.free_pages[:npages] if not scatter else self.free_pages[::2][:npages]
        if len(pages) < npages:
            pages = self.free_pages[:npages]
        for p in pages:
            self.free_pages.remove(p)
        iovs: list[tuple[int, int]] = []
        left = length
        for p in pages:
            off, n = self.data_off + p * PAGE, min(PAGE, left)
            if iovs and iovs[-1][0] + iovs[-1][1] == off:
                iovs[-1] = (iovs[-1][0], iovs[-1][1] + n)
            else:
                iovs.append((off, n))
            left -= n
        pos_data = 0
        for off, n in iovs:  # a Data-In buffer keeps what earlier commands left there
            if data_out:
                self.mm[off : off + n] = data_out[pos_data : pos_data + n]
            pos_data += n
        base_size = max(r.IOV_OFF + r.IOV.size * len(iovs), r.ENTRY_SIZE)
        size = base_size + (len(cdb) + 7) // 8 * 8
        pos = self._insert(size)
        base = self.cmdr_off + pos
        self.mm[base : base + size] = bytes(size)
        cmd_id = self.next_id
        self.next_id = self.next_id % 0xFFFF + 1
        struct.pack_into("<IHBB", self.mm, base, size | r.OP_CMD, cmd_id, 0, 0)
        cdb_off = self.cmdr_off + pos + base_size
        struct.pack_into("<III4xQ", self.mm, base + 8, len(iovs), 0, 0, cdb_off)
        for i, (off, n) in enumerate(iovs):
            r.IOV.pack_into(self.mm, base + r.IOV_OFF + i * r.IOV.size, off, n)
        self.mm[cdb_off : cdb_off + len(cdb)] = cdb
        self.inflight[cmd_id] = _Inflight(iovs, data_in_len, pages)
        self._publish(size)
        return cmd_id

    def submit_tmr(self, tmr_type: int, cmd_ids: tuple[int, ...] = ()) -> None:
        size = (r.TMR_IDS_OFF + 2 * len(cmd_ids) + 7) // 8 * 8
        pos = self._insert(size)
        base = self.cmdr_off + pos
        self.mm[base : base + size] = bytes(size)
        struct.pack_into("<IHBB", self.mm, base, size | r.OP_TMR, 0, 0, 0)
        r.TMR.pack_into(self.mm, base + 8, tmr_type, len(cmd_ids))
        struct.pack_into(f"<{len(cmd_ids)}H", self.mm, base + r.TMR_IDS_OFF, *cmd_ids)
        self._publish(size)

    # --- completions (tcmu_handle_completions) -----------------------------------------
    def woken(self) -> int:
        """How many 4-byte wake-up writes the daemon made since the last call."""
        self._kernel_end.setblocking(False)
        n = 0
        try:
            while True:
                got = self._kernel_end.recv(4096)
                if not got:
                    break
                n += len(got) // 4
        except BlockingIOError:
            pass
        return n

    def reap(self) -> list[SimCompletion]:
        done = []
        tail = struct.unpack_from("<I", self.mm, r.MB_CMD_TAIL)[0]
        while self.last_cleaned != tail:
            base = self.cmdr_off + self.last_cleaned
            len_op, cmd_id, _k, uflags = struct.unpack_from("<IHBB", self.mm, base)
            op, length = len_op & r.OP_MASK, len_op & ~r.OP_MASK
            if op == r.OP_CMD:
                cmd = self.inflight.pop(cmd_id)  # KeyError = "ring is broken"
                status = self.mm[base + r.RSP_STATUS_OFF]
                read_len = struct.unpack_from("<I", self.mm, base + r.RSP_READ_LEN_OFF)[0]
                honoured = self.flags & r.FLAG_CAP_READ_LEN and uflags & r.UFLAG_READ_LEN
                read_len = read_len if honoured and read_len else None
                sense = bytes(self.mm[base + r.RSP_SENSE_OFF : base + r.RSP_SENSE_OFF + 96])
                want = kernel_gathers(status, read_len, cmd.data_in_len)
                data = b"".join(bytes(self.mm[o : o + n]) for o, n in cmd.iovs)[:want]
                self.free_pages.extend(cmd.pages)
                done.append(SimCompletion(cmd_id, status, sense, data, read_len))
            self.last_cleaned = (self.last_cleaned + length) % self.cmdr_size
        return done

    def answers(self, timeout: float = 10.0) -> list[SimCompletion]:
        """The completions the daemon has written, waiting for its next wake-up write
        while there are none (it writes one after every answer it gives); an
        AssertionError when none comes within ``timeout`` seconds."""
        while not (done := self.reap()):
            self._kernel_end.settimeout(timeout)
            try:
                if not self._kernel_end.recv(4):
                    raise AssertionError("the daemon closed its end of the uio device")
            except TimeoutError:
                raise AssertionError(f"no answer within {timeout} s") from None
        return done

    def answer(self, cmd_id: int, timeout: float = 10.0) -> SimCompletion:
        """The completion of one command, waiting for it as :meth:`answers` does; the
        others that come meanwhile are kept for their own calls."""
        while cmd_id not in self._answered:
            for c in self.answers(timeout):
                self._answered[c.cmd_id] = c
        return self._answered.pop(cmd_id)

    def pending_ids(self) -> set[int]:
        return set(self.inflight)

    def reset_ring(self) -> list[SimCompletion]:
        """``action/reset_ring`` = 1 (``tcmu_reset_ring``), after the wake-up that comes
        before it: the responses written are reaped, every other command still in
        flight completes BUSY, and the ring starts over empty at offset 0."""
        done = self.reap()
        for cmd_id, cmd in sorted(self.inflight.items()):
            self.free_pages.extend(cmd.pages)
            done.append(SimCompletion(cmd_id, SAM_STAT_BUSY, b"", b"", None))
        self.inflight.clear()
        self.head = self.last_cleaned = 0
        struct.pack_into("<I", self.mm, r.MB_CMD_HEAD, 0)
        struct.pack_into("<I", self.mm, r.MB_CMD_TAIL, 0)
        return done


def complete_from_worker(dev: TcmuDevice, want: int, timeout: float = 10.0) -> int:
    """Play the daemon's loop for a LUN whose long commands run on its worker: complete
    them as the worker finishes each (it calls ``dev.notify``) until ``want`` have been
    answered; how many were."""
    finished = threading.Event()
    dev.notify = finished.set
    done = dev.complete_finished()
    while done < want:
        assert finished.wait(timeout), f"{done} of {want} commands answered"
        finished.clear()
        done += dev.complete_finished()
    return done


def mmap_view(kernel: SimulatedKernel) -> memoryview:
    """What the daemon maps: the whole region."""
    return kernel.view


# --- a toy device behind the ring ---------------------------------------------------------


class Echo(Cdb, name="ECHO", opcode=0xC0, length=10, clause="test"):
    length: int = bitfield(2, 32)


class Store(Cdb, name="STORE", opcode=0xC1, length=10, clause="test"):
    length: int = bitfield(2, 32)


class Boom(Cdb, name="BOOM", opcode=0xC2, length=6, clause="test"):
    pass


class Toy(LogicalUnit):
    """Returns ``length`` bytes of a pattern; stores Data-Out; BOOM raises a bug."""

    DEVICE_TYPE = spc.TYPE_DISK

    def __init__(self):
        super().__init__(LunIdentity("toy", "0123456789abcdef"))
        self.stored = b""

    @command(Echo)
    def echo(self, cmd: Command, cdb) -> int:
        pattern = bytes(i % 251 for i in range(cdb.length))
        return cmd.data.copy_in(pattern)

    @command(Store)
    def store(self, cmd: Command, cdb) -> int:
        self.stored = cmd.data.tobytes()
        return 0

    @command(Boom)
    def boom(self, cmd: Command, cdb) -> int:
        raise ZeroDivisionError("a bug")


class Slow(Cdb, name="SLOW", opcode=0xC3, length=10, clause="test"):
    length: int = bitfield(2, 32)


class Worker(Toy):
    """SLOW runs on a thread until released; it fills its Data-In buffer there."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()
        self.started = threading.Event()  # a SLOW is running
        self.threads = []

    @command(Slow)
    def slow(self, cmd: Command, cdb):
        fut: Future = Future()

        def work():
            self.started.set()
            self.release.wait(5)
            if cdb.length == 0:
                fut.set_exception(InvalidFieldInCdb(2))
            else:
                fut.set_result(cmd.data.copy_in(b"done" * (cdb.length // 4)))

        t = threading.Thread(target=work)
        t.start()
        self.threads.append(t)
        return fut


@pytest.fixture
def kernel():
    k = SimulatedKernel(cmdr_size=4096, data_pages=64)
    yield k
    k.close()
