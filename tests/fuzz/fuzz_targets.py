"""Coverage-guided fuzz targets (atheris): each takes the fuzzer's bytes and raises on a
broken invariant. ``tests/fuzz/run.py`` drives them under atheris; the unit suite replays
the seed corpus (tests/fuzz/corpus/<target>/) through the same functions without it.

Targets:

- ``disk``, ``tape``, ``changer``: a sequence of commands (CDB, Data-Out, buffer size
  and scatter list from the input) run through :func:`lio_xcopy.tcmu.daemon.execute`,
  the daemon's own entry point;
- ``xcopy``: EXTENDED COPY parameter lists through the copy manager;
- ``rcr``: RECEIVE COPY RESULTS (and COPY DIGEST) with any allocation length, after a
  few copies that succeed or fail;
- ``ring``: the TCMU ring parser over a simulated ring corrupted by the input;
- ``rod``: POPULATE TOKEN, WRITE USING TOKEN (with the tokens the input got back) and
  RECEIVE ROD TOKEN INFORMATION on the disks, and the ROD token and parameter list
  decoders.

Invariants: every command ends in GOOD or CHECK CONDITION with fixed-format sense
(70h/71h), never in another exception (the daemon's catch-all, HARDWARE ERROR, counts
as a crash); a Data-In count never exceeds the buffer or the CDB's ALLOCATION LENGTH; no
read or write leaves a LUN (the disks' file offsets are checked on every ``preadv`` and
``pwritev``, their guard bytes after the LUN's end must not change, a cartridge never
grows past its capacity, a library never loses or duplicates a cartridge); bytes around
each iovec of the buffer are never touched. The ring target may end only in a
:class:`~lio_xcopy.errors.TcmuError`.

Each input starts from the same state (the LUNs are reset), so a crash input replays.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

from plugins.copy_steps import InlineExecutor
from plugins.tcmu_ring import PAGE, SimulatedKernel, kernel_gathers

from lio_xcopy.control.library import create_library, lto_barcodes
from lio_xcopy.copy.manager import CopyManager
from lio_xcopy.devices import buffer as buffer_module
from lio_xcopy.devices.backing import BackingStore
from lio_xcopy.devices.base import LogicalUnit, LunIdentity
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.changer import MediumChanger
from lio_xcopy.devices.disk import Disk
from lio_xcopy.devices.library import Library
from lio_xcopy.devices.tape import Tape
from lio_xcopy.errors import TcmuError
from lio_xcopy.scsi import rod, sbc, smc, spc, ssc, xcopy
from lio_xcopy.scsi.errors import CheckCondition
from lio_xcopy.scsi.sense import CHECK_CONDITION, GOOD
from lio_xcopy.tcmu import ring as r
from lio_xcopy.tcmu.daemon import TcmuDevice, _outcome, execute, shape_answer
from lio_xcopy.tcmu.ring import CommandRing, RingCommand, scsi_command_size

MAX_COMMANDS = 12
MAX_BUFFER = 1 << 20
IOV_GUARD = b"\x5a" * 16
STALE = b"stale data of an earlier READ "  # what a reused data area block holds
DISK_GUARD = 0xA5
TAPE_CAPACITY = 256 << 10
CARTRIDGE_CAPACITY = 1 << 20
COPY_TIMEOUT = 30.0
#: SSC-4 7.7: the short and long READ POSITION forms return fixed-length data whatever
#: the (zero) ALLOCATION LENGTH; only the extended form (service action 08h) is bounded.
FIXED_LENGTH_DATA = {(0x34, 0x00), (0x34, 0x01), (0x34, 0x06)}


class Broken(AssertionError):
    """An invariant did not hold."""


# --- the input, read as a stream of fields (zeros once it is used up) ------------------------
class Stream:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    @property
    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, pad: bool = True) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += len(chunk)
        return chunk.ljust(n, b"\0") if pad else chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "little")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "little")

    def cdb(self) -> bytes:
        """A CDB as long as the kernel copies it into the ring (scsi_command_size)."""
        op = self.take(1)
        if op[0] == 0x7F:
            head = op + self.take(7)
            return head + self.take(scsi_command_size(head) - 8)
        return op + self.take(scsi_command_size(op + bytes(7)) - 1)


# --- what the daemon would have answered -----------------------------------------------------
class _Catch(logging.Handler):
    """The daemon's and copy manager's catch-alls log the exception: collect it."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.caught: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.caught.append(record.exc_info[1])

    def check(self) -> None:
        if self.caught:
            exc, self.caught = self.caught[0], []
            raise exc


class _GuardedOs:
    """``os`` for :mod:`lio_xcopy.devices.buffer`: preadv/pwritev on a LUN's file must stay
    inside the LUN (the fds in ``limits``, each with the byte size its LUN owns)."""

    def __init__(self, limits: dict[int, int]):
        self.limits = limits

    def __getattr__(self, name: str):
        return getattr(os, name)

    def _check(self, fd: int, views, offset: int, what: str) -> None:
        limit = self.limits.get(fd)
        if limit is None:
            return
        end = offset + sum(len(v) for v in views)
        if offset < 0 or end > limit:
            raise Broken(f"{what} of bytes {offset}..{end} on a LUN of {limit} bytes")

    def preadv(self, fd: int, views, offset: int) -> int:
        self._check(fd, views, offset, "read")
        return os.preadv(fd, views, offset)

    def pwritev(self, fd: int, views, offset: int, flags: int = 0) -> int:
        self._check(fd, views, offset, "write")
        return os.pwritev(fd, views, offset, flags)


def scattered(size: int, data_out: bytes, split: bool
              ) -> tuple[bytearray, list[int], DataBuffer]:
    """A buffer of ``size`` bytes over an arena, as page-sized iovecs (``split``) or
    one, with guard bytes around each; Data-Out copied in. Returns the arena, where its
    guards are, and the buffer."""
    pieces = ([PAGE] * (size // PAGE) + ([size % PAGE] if size % PAGE else [])) if split else [size]
    arena, guards, spans = bytearray(), [], []
    for n in pieces:
        guards.append(len(arena))
        arena += IOV_GUARD
        spans.append((len(arena), n))
        arena += bytes(n)
    guards.append(len(arena))
    arena += IOV_GUARD
    mv = memoryview(arena)
    buf = DataBuffer([mv[o : o + n] for o, n in spans])
    buf.copy_in(data_out)
    return arena, guards, buf


def check_guards(arena: bytearray, guards: list[int]) -> None:
    for g in guards:
        if arena[g : g + len(IOV_GUARD)] != IOV_GUARD:
            raise Broken(f"bytes around an iovec changed at {g}")


def check_sense(sense: bytes) -> None:
    if len(sense) < 18 or sense[0] & 0x7F not in (0x70, 0x71) or sense[7] + 8 != len(sense):
        raise Broken(f"CHECK CONDITION without fixed-format sense: {sense.hex()}")


def allocation_length(dev: LogicalUnit, cdb: bytes) -> int | None:
    """The CDB's ALLOCATION LENGTH when its layout has one that bounds the Data-In."""
    try:
        layout, _ = dev._lookup(cdb)
        fields = layout.decode(cdb)
    except CheckCondition:
        return None
    if (layout.OPCODE, layout.SERVICE_ACTION) in FIXED_LENGTH_DATA:
        return None
    return getattr(fields, "allocation_length", None)


class Answer:
    """One command's end: status, sense, the Data-In count the device returned."""

    def __init__(self, status: int, sense: bytes, read_len: int | None, count: int | None,
                 data: bytes):
        self.status, self.sense, self.read_len, self.count, self.data = (
            status, sense, read_len, count, data)


def run(lab: Lab, dev: LogicalUnit, cdb: bytes, size: int, data_out: bytes = b"",
        split: bool = False) -> Answer:
    """Run one command as the daemon does and check what every command must satisfy."""
    arena, guards, buf = scattered(size, data_out, split)
    data_in = not dev.carries_data_out(cdb)  # as an honest initiator would send it
    if data_in:  # what earlier commands left in the data area
        buf.copy_in(STALE * (size // len(STALE) + 1))
    counts: list[int | Future] = []
    real = type(dev).handle

    def handle(cmd):  # what the device returned, before the transport shapes it
        n = real(dev, cmd)
        counts.append(n)
        return n

    dev.handle = handle  # type: ignore[method-assign]
    cmd = RingCommand(1, cdb, buf)
    try:
        outcome = execute(dev, cmd)
        if isinstance(outcome, Future):
            with contextlib.suppress(Exception):
                outcome.result(timeout=COPY_TIMEOUT)
            if not outcome.done():
                raise Broken(f"EXTENDED COPY still running after {COPY_TIMEOUT} s")
            outcome = _outcome(outcome.result, dev, cmd)
        for job in lab.manager.jobs():  # a background copy (LID4 IMMED) ends first
            with contextlib.suppress(Exception):
                job.stopped.result(timeout=COPY_TIMEOUT)
            if job.running:
                raise Broken(f"background copy {job.list_id} still running after "
                             f"{COPY_TIMEOUT} s")
    finally:
        del dev.handle
    lab.catch.check()
    status, sense, produced = outcome
    if status not in (GOOD, CHECK_CONDITION):
        raise Broken(f"status {status:#x}")
    if status == CHECK_CONDITION:
        check_sense(sense)
    if not 0 <= produced <= size:
        raise Broken(f"{produced} bytes produced for a {size}-byte buffer")
    read_len = shape_answer(dev, cmd, outcome)
    if data_in:  # no byte the device did not produce reaches the initiator
        sent = buf.tobytes(kernel_gathers(status, read_len, size))
        if any(sent[produced:]):
            raise Broken(f"{len(sent) - produced} bytes past the {produced} produced "
                         f"reach the initiator: {sent[produced:produced + 16].hex()}")
    count = counts[0] if counts and isinstance(counts[0], int) else None
    if count is not None:
        if not 0 <= count <= size:
            raise Broken(f"{count} bytes of Data-In for a {size}-byte buffer")
        alloc = allocation_length(dev, cdb)
        if alloc is not None and count > alloc:
            raise Broken(f"{count} bytes of Data-In for ALLOCATION LENGTH {alloc}")
    check_guards(arena, guards)
    lab.check()
    n = count if count is not None else (read_len or 0)
    return Answer(status, sense, read_len, count, buf.tobytes(n))


# --- the LUNs, reset before each input --------------------------------------------------------
def _naa(dev: LogicalUnit) -> bytes:
    return next(d.value for d in dev.designators() if d.designator_type == 3)


#: the folder a lab's files go in, when the fuzz runner gives one (tests/fuzz/run.py)
LAB_ENV = "LIO_XCOPY_FUZZ_LAB"


class Lab:
    """Two disks (512- and 4096-byte blocks, guard bytes after each), two tapes with a
    few records and filemarks, a library (changer + one drive) with three cartridges."""

    DISKS = (("fz-disk", 512, 64, "6001405aaaaaaaaaaaaaaaaaaaaaaaa1"),
             ("fz-disk4k", 4096, 16, "6001405aaaaaaaaaaaaaaaaaaaaaaaa2"))
    TAPES = (("fz-tape", "6001405bbbbbbbbbbbbbbbbbbbbbbbb1"),
             ("fz-tape2", "6001405bbbbbbbbbbbbbbbbbbbbbbbb2"))

    def __init__(self) -> None:
        shm = Path("/dev/shm")
        self.dir = Path(tempfile.mkdtemp(prefix="lio-xcopy-fuzz-", dir=os.environ.get(
            LAB_ENV, shm if shm.is_dir() else None)))
        self.catch = _Catch()
        self.limits: dict[int, int] = {}
        self.disks: dict[str, Disk] = {}
        self.tapes: dict[str, Tape] = {}
        self._disk_bytes: dict[str, bytes] = {}
        for name, bs, blocks, serial in self.DISKS:
            path = self.dir / f"{name}.img"
            content = bytes(i * 7 % 251 for i in range(bs * blocks))
            self._disk_bytes[name] = content
            path.write_bytes(content + bytes([DISK_GUARD]) * (bs - 1))
            store = BackingStore(path)
            self.limits[store.fd] = bs * blocks
            self.disks[name] = Disk(LunIdentity(name, serial), store, bs)
        self._tape_bytes = self._make_tape_image()
        self.library_dir = self.dir / "lib"
        create_library(self.library_dir, slots=4, ie_slots=1, drives=1,
                       capacity=CARTRIDGE_CAPACITY, barcodes=lto_barcodes(3))
        self._library_files = {p.name: p.read_bytes() for p in self.library_dir.iterdir()
                               if p.is_file() and p.name != ".lock"}
        self.barcodes = sorted(lto_barcodes(3))
        self.changer: MediumChanger | None = None
        self.drive: Tape | None = None
        self.library: Library | None = None
        self.manager = CopyManager()

    def _make_tape_image(self) -> bytes:
        path = self.dir / "image.aws"
        t = Tape(LunIdentity("image", "0"), path, TAPE_CAPACITY)
        for n in (512, 1000, 512):
            t.write_record(DataBuffer.of(bytes(range(256)) * (n // 256) + bytes(n % 256)), n)
        t.write_filemarks(1)
        t.write_record(DataBuffer.of(bytes(4096)), 4096)
        t.write_filemarks(1)
        t.close()
        return path.read_bytes()

    # --- per input -------------------------------------------------------------------------
    def reset(self, *, disks: bool = True, tapes: bool = False, library: bool = False) -> None:
        """The LUNs an input uses as they were; a new copy manager that knows them."""
        if disks:
            for name, data in self._disk_bytes.items():
                disk = self.disks[name]
                os.pwrite(disk.store.fd, data, 0)
                self.disks[name] = Disk(disk.identity, disk.store, disk.block_size)
        if tapes:
            for name, serial in self.TAPES:
                old = self.tapes.pop(name, None)
                if old is not None:
                    old.close()
                path = self.dir / f"{name}.aws"
                path.write_bytes(self._tape_bytes)
                self.tapes[name] = Tape(LunIdentity(name, serial), path, TAPE_CAPACITY)
        if library:
            self._reset_library()
        self.manager = CopyManager()
        for dev in self.devices():
            dev.copy_manager = None
        used = [*(self.disks.values() if disks else ()), *(self.tapes.values() if tapes else ()),
                *((self.changer, self.drive) if library else ())]
        for dev in used:
            self.manager.register(dev)

    def _reset_library(self) -> None:
        if self.drive is not None:
            self.drive.close()
        for p in self.library_dir.iterdir():
            if p.name not in self._library_files and p.name != ".lock":
                p.unlink()
        for name, data in self._library_files.items():
            (self.library_dir / name).write_bytes(data)
        self.library = Library(self.library_dir)
        self.drive = Tape(LunIdentity("fz-drive", "6001405cccccccccccccccccccccccc1"), None,
                          CARTRIDGE_CAPACITY)
        self.library.attach_drive(0, self.drive)
        self.changer = MediumChanger(
            LunIdentity("fz-changer", "6001405dddddddddddddddddddddddd1"), self.library)

    def devices(self) -> list[LogicalUnit]:
        out: list[LogicalUnit] = [*self.disks.values(), *self.tapes.values()]
        return out + [d for d in (self.changer, self.drive) if d is not None]

    # --- after each command --------------------------------------------------------------
    def check(self) -> None:
        for name, bs, blocks, _ in self.DISKS:
            fd = self.disks[name].store.fd
            if os.fstat(fd).st_size != bs * (blocks + 1) - 1:
                raise Broken(f"{name}: the backing file changed size")
            if os.pread(fd, bs, bs * blocks) != bytes([DISK_GUARD]) * (bs - 1):
                raise Broken(f"{name}: bytes after the LUN's end changed")
        for name, tape in self.tapes.items():
            size = os.fstat(tape.medium._fd).st_size if tape.medium else 0
            if size > TAPE_CAPACITY:
                raise Broken(f"{name}: {size} bytes on a {TAPE_CAPACITY}-byte cartridge")
        if self.library is not None:
            self._check_library()

    def _check_library(self) -> None:
        assert self.library is not None and self.drive is not None
        s = self.library.state()
        held = sorted(p.barcode for p in (*s.slots, *s.ie, *s.drives) if p is not None)
        if held != self.barcodes:
            raise Broken(f"the library holds {held}, it had {self.barcodes}")
        for b in self.barcodes:
            size = self.library.cartridge_path(b).stat().st_size
            if size > CARTRIDGE_CAPACITY:
                raise Broken(f"{b}: {size} bytes past the capacity")
        in_drive = s.drives[0].barcode if s.drives[0] is not None else None
        loaded = Path(self.drive.cartridge).stem if self.drive.cartridge else None
        if in_drive != loaded:
            raise Broken(f"the library says the drive holds {in_drive}, it holds {loaded}")

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        """While one input runs: the I/O guard and the catch-all collector in place, the
        package's own logging quiet (the inputs make it complain)."""
        pkg = logging.getLogger("lio_xcopy")
        saved = (buffer_module.os, pkg.propagate, pkg.level)
        buffer_module.os = _GuardedOs(self.limits)  # type: ignore[assignment]
        pkg.addHandler(self.catch)
        pkg.propagate, pkg.level = False, logging.ERROR
        try:
            yield
        finally:
            buffer_module.os, pkg.propagate, pkg.level = saved  # type: ignore[assignment]
            pkg.removeHandler(self.catch)
            self.catch.caught.clear()

    def close(self) -> None:
        for dev in self.devices():
            dev.close()
        shutil.rmtree(self.dir, ignore_errors=True)


_LAB: Lab | None = None


def lab() -> Lab:
    global _LAB
    if _LAB is None:
        pkg = logging.getLogger("lio_xcopy")
        level = pkg.level
        pkg.setLevel(logging.ERROR)  # "last bytes are not a whole block": the guard zone
        try:
            _LAB = Lab()
        finally:
            pkg.setLevel(level)
    return _LAB


def close_lab() -> None:
    global _LAB
    if _LAB is not None:
        _LAB.close()
        _LAB = None


# --- targets ------------------------------------------------------------------------------
def _commands(data: bytes, pick: Callable[[Lab, int], LogicalUnit], luns: dict[str, bool]
              ) -> None:
    """Input: records of {flags u8, CDB, buffer size u16, Data-Out length u16, Data-Out}.
    flags bits 0-1 pick the LUN, bit 6 scatters the buffer over pages, bit 7 makes the
    size count 16-byte units."""
    lb = lab()
    with lb.armed():
        lb.reset(**luns)
        s = Stream(data)
        for _ in range(MAX_COMMANDS):
            if not s.left:
                break
            flags = s.u8()
            cdb = s.cdb()
            size = min(s.u16() * (16 if flags & 0x80 else 1), MAX_BUFFER)
            data_out = s.take(min(s.u16(), size), pad=False)
            run(lb, pick(lb, flags & 3), cdb, size, data_out, split=bool(flags & 0x40))


def disk_target(data: bytes) -> None:
    _commands(data, lambda lb, i: list(lb.disks.values())[i & 1], {})


def tape_target(data: bytes) -> None:
    _commands(data, lambda lb, i: lb.tapes["fz-tape"], {"disks": False, "tapes": True})


def changer_target(data: bytes) -> None:
    def pick(lb: Lab, i: int) -> LogicalUnit:
        dev = lb.drive if i & 1 else lb.changer
        assert dev is not None
        return dev

    _commands(data, pick, {"disks": False, "library": True})


def _receiving(lb: Lab, i: int) -> LogicalUnit:
    devs = [*lb.disks.values(), *lb.tapes.values()]
    return devs[i % len(devs)]


def xcopy_target(data: bytes) -> None:
    """Input: {receiving LUN u8, length mode u8 (bit 2: sent as EXTENDED COPY(LID4)),
    [length u32], parameter list}."""
    lb = lab()
    with lb.armed():
        lb.reset(tapes=True)
        s = Stream(data)
        dev = _receiving(lb, s.u8())
        flags = s.u8()
        mode = flags & 3
        raw = s.u32() if mode == 3 else 0
        plist = s.take(s.left, pad=False)
        length = (len(plist), 0, max(len(plist) - 1, 0), raw)[mode]
        layout = xcopy.ExtendedCopyLid4 if flags & 4 else xcopy.ExtendedCopyLid1
        cdb = layout(parameter_list_length=length).encode()
        run(lb, dev, cdb, len(plist), plist)


_RCR = (xcopy.ReceiveCopyResultsCopyStatus, xcopy.ReceiveCopyResultsOperatingParameters,
        xcopy.ReceiveCopyResultsFailedSegmentDetails, xcopy.ReceiveCopyDigest,
        xcopy.ReceiveCopyResultsReceiveData)
_RCR_LID4 = (xcopy.ReceiveCopyStatusLid4, xcopy.ReceiveCopyDataLid4,
             xcopy.CopyOperationAbort)
#: the answers that hand over held data, which a whole answer consumes
_RCR_HELD = (xcopy.ReceiveCopyResultsReceiveData, xcopy.ReceiveCopyDataLid4)


def _canned_copies(lb: Lab) -> list[bytes]:
    """Parameter lists (list identifier 0) that succeed, fail at a segment, or fail
    at once: the copies RECEIVE COPY RESULTS then reports."""
    disk, tape = lb.disks["fz-disk"], lb.tapes["fz-tape"]
    d = xcopy.IdentificationCscd(_naa(disk), 0, block_length=512)
    t = xcopy.IdentificationCscd(_naa(tape), 1)
    return [
        xcopy.build_extended_copy([d, t], [xcopy.BlockToStream(0, 1, 4, 0, 2048)]),
        xcopy.build_extended_copy([t, d], [xcopy.StreamToBlock(0, 1, 1, 0, 512)]),
        xcopy.build_extended_copy([t, d], [xcopy.StreamToBlock(0, 1, 60, 0, 512)]),  # underrun
        xcopy.build_extended_copy([d, t], [xcopy.BlockToStream(0, 1, 8, 60, 512)]),  # out of range
        xcopy.build_extended_copy([d, d], [xcopy.BlockToBlock(0, 1, 2, 0, 10)]),
        xcopy.build_extended_copy([d, t], [xcopy.BlockToStreamHeld(0, 1, 2, 0, 512),
                                           xcopy.VerifyCscd(1, tur=True)]),  # held data
    ]


def rcr_target(data: bytes) -> None:
    """Input: {copies u8 (two bits each: which canned copy), then records of {which
    u8, list identifier u8, allocation length u32, buffer size u16}}. The list
    identifier and usage of each copy come from the input too. A canned copy index with
    bit 7 set is sent as EXTENDED COPY(LID4), with IMMED when bit 6 is set; a ``which``
    with bit 6 set asks with a LID4 command (RECEIVE COPY STATUS/DATA (LID4), COPY
    OPERATION ABORT)."""
    lb = lab()
    with lb.armed():
        lb.reset(tapes=True)
        s = Stream(data)
        canned = _canned_copies(lb)
        disk = lb.disks["fz-disk"]
        for _ in range(s.u8() & 3):
            pick = s.u8()
            plist = bytearray(canned[pick % len(canned)])
            plist[0] = s.u8()  # LIST IDENTIFIER
            plist[1] = (plist[1] & 0xE7) | (s.u8() & 3) << 3  # LIST ID USAGE
            layout = xcopy.ExtendedCopyLid1
            if pick & 0x80:
                try:  # a list the input made invalid (usage 11b with an identifier) goes
                    p = xcopy.parse_extended_copy(bytes(plist))  # as LID1, to be refused
                except CheckCondition:
                    p = None
                if p is not None:
                    plist = bytearray(xcopy.build_extended_copy_lid4(
                        p.cscds, p.segments, list_identifier=plist[0],
                        list_id_usage=p.header.list_id_usage, immed=bool(pick & 0x40)))
                    layout = xcopy.ExtendedCopyLid4
            lb.tapes["fz-tape"].rewind()
            cdb = layout(parameter_list_length=len(plist)).encode()
            run(lb, disk, cdb, len(plist), bytes(plist))
        for _ in range(MAX_COMMANDS):
            if not s.left:
                break
            which, list_id = s.u8(), s.u8()
            alloc, size = s.u32(), s.u16()
            layout = _RCR_LID4[which % 3] if which & 0x40 else _RCR[which % len(_RCR)]
            fields = {"allocation_length": alloc}
            if "allocation_length" not in {f.name for f in layout.FIELDS}:
                fields = {}
            if "list_identifier" in {f.name for f in layout.FIELDS}:
                fields["list_identifier"] = list_id
            cdb = bytearray(layout(**fields).encode())
            if which & 0x80:  # any service action
                cdb[1] = which & 0x1F
            got = run(lb, disk, bytes(cdb), size)
            if got.status != GOOD or got.count is None or "allocation_length" not in fields:
                continue
            if layout in _RCR_HELD and got.count >= 4 and \
                    4 + struct.unpack_from(">I", got.data)[0] <= min(alloc, size):
                # all of the held data was returned (the ALLOCATION LENGTH and the
                # buffer held it): SPC-4 discards it then
                continue
            full = run(lb, disk, bytes(cdb[:-6] + struct.pack(">I", 1 << 20) + cdb[-2:])
                       if layout.LENGTH == 16 else
                       bytes(cdb[:5] + struct.pack(">I", 1 << 20) + cdb[9:]), 1 << 20)
            if full.data[: got.count] != got.data:
                raise Broken(f"{layout.NAME}: a shorter allocation is not a prefix of the "
                             f"whole answer ({got.data.hex()} / {full.data.hex()})")


def _check_rod_decoders(data: bytes) -> None:
    """Any 512 bytes decode as a ROD token that survives its own encoding (SPC-4
    5.17.6.1); a POPULATE TOKEN or WRITE USING TOKEN parameter list either decodes to
    one that does too or is refused with a CHECK CONDITION (SBC-4 5.9.2, 5.46.2)."""
    tok = rod.RodToken.parse(data[:rod.TOKEN_LENGTH].ljust(rod.TOKEN_LENGTH, b"\0"))
    if rod.RodToken.parse(tok.encode()) != tok:
        raise Broken("a ROD token does not survive its own encoding")
    for kind in (rod.PopulateTokenList, rod.WriteUsingTokenList):
        try:
            plist = kind.parse(data)
        except CheckCondition as e:
            check_sense(e.sense.fixed())
            continue
        if kind.parse(plist.encode()) != plist:  # type: ignore[attr-defined]
            raise Broken(f"{kind.__name__} does not survive its own encoding")


def rod_target(data: bytes) -> None:
    """Input: records of {kind u8, list identifier u8, length u16, bytes}. ``kind`` bits
    0-1: POPULATE TOKEN, WRITE USING TOKEN (the bytes its parameter list), WRITE USING
    TOKEN whose ROD TOKEN field (bytes 16-527) is replaced by the last token a RECEIVE ROD
    TOKEN INFORMATION returned (so the copy itself is reached), RECEIVE ROD TOKEN
    INFORMATION (``length`` its ALLOCATION LENGTH); bit 2 picks the other disk; bit 3
    sends ``length`` as the PARAMETER LIST LENGTH whatever the bytes. A background
    WRITE USING TOKEN (IMMED) runs before its answer is checked. Every whole RECEIVE ROD
    TOKEN INFORMATION answer decodes, and a token in it round-trips; the first record's
    bytes also go through the decoders (:func:`_check_rod_decoders`)."""
    lb = lab()
    with lb.armed():
        lb.reset()
        lb.manager.rod.executor = InlineExecutor()
        s = Stream(data)
        token = b""
        for i in range(MAX_COMMANDS):
            if not s.left:
                break
            kind, list_id, length = s.u8(), s.u8(), s.u16()
            dev = list(lb.disks.values())[kind >> 2 & 1]
            if kind & 3 == 3:
                cdb = rod.ReceiveRodTokenInformation(list_identifier=list_id,
                                                        allocation_length=length).encode()
                got = run(lb, dev, cdb, min(length, 4096))
                if got.status != GOOD or got.count is None or got.count < 4 or \
                        got.count != 4 + int.from_bytes(got.data[:4], "big"):
                    continue
                info = rod.RodTokenInformation.parse(got.data)
                if info.token:
                    if len(info.token) != rod.TOKEN_LENGTH or \
                            rod.RodToken.parse(info.token).encode() != info.token:
                        raise Broken("RECEIVE ROD TOKEN INFORMATION returned a bad token")
                    token = info.token
                continue
            plist = bytearray(s.take(length, pad=False))
            if i == 0:
                _check_rod_decoders(bytes(plist))
            if kind & 3 == 2 and token and len(plist) >= 16 + rod.TOKEN_LENGTH:
                plist[16 : 16 + rod.TOKEN_LENGTH] = token
            layout = rod.PopulateToken if kind & 3 == 0 else rod.WriteUsingToken
            n = length if kind & 8 else len(plist)
            run(lb, dev, layout(list_identifier=list_id, parameter_list_length=n).encode(),
                len(plist), bytes(plist))


#: Fields of a ring entry the ring target writes over: len_op, cmd_id, iov_cnt, bidi,
#: dif, cdb_off, the first iovecs' base and length, TMR cmd_cnt.
_ENTRY_FIELDS = (0, 4, 8, 12, 16, 24, 48, 56, 64, 72, 8 + 4)


def ring_target(data: bytes) -> None:
    """Input: {commands u8, per command {kind u8, CDB or TMR type, data length u16},
    patches u8, per patch {where u8, offset, value}}. The daemon's device then services
    the ring: it may end in TcmuError, nothing else."""
    lb = lab()
    with lb.armed():
        lb.reset()
        s = Stream(data)
        k = SimulatedKernel(cmdr_size=4096, data_pages=16)
        try:
            for _ in range(1 + s.u8() % 4):
                kind = s.u8()
                try:
                    if kind & 0x80:
                        k.submit_tmr(s.u8() % 8, tuple(s.u16() for _ in range(kind & 3)))
                    else:
                        cdb, n = s.cdb(), s.u16() % (8 * PAGE)
                        k.submit(cdb, data_out=s.take(n) if kind & 1 else b"",
                                 data_in_len=0 if kind & 1 else n, scatter=bool(kind & 2))
                except BufferError:
                    break
            entries = _entry_offsets(k)
            for _ in range(s.u8() % 8):
                where = s.u8()
                width = (1, 2, 4, 8)[where & 3]
                region = where >> 2 & 3
                if region == 0:
                    off = s.u8() % r.MAILBOX_SIZE
                elif region == 1 and entries:
                    off = (k.cmdr_off + entries[s.u8() % len(entries)]
                           + _ENTRY_FIELDS[s.u8() % len(_ENTRY_FIELDS)])
                else:
                    off = s.u32() % k.size
                value = s.take(width)
                k.mm[off : off + width] = value[: max(0, min(width, k.size - off))]
            try:
                dev = TcmuDevice("fz-ring", k.uio_fd, CommandRing(k.view), lb.disks["fz-disk"])
                dev.service()
            except TcmuError:
                pass
            lb.catch.check()
            lb.check()
        finally:
            k.close()


def _entry_offsets(k: SimulatedKernel) -> list[int]:
    """Where the entries the simulated kernel queued start (before any patch)."""
    out, pos = [], k.last_cleaned
    while pos != k.head:
        out.append(pos)
        len_op = struct.unpack_from("<I", k.mm, k.cmdr_off + pos)[0]
        pos = (pos + (len_op & ~r.OP_MASK)) % k.cmdr_size
    return out


TARGETS: dict[str, Callable[[bytes], None]] = {
    "disk": disk_target, "tape": tape_target, "changer": changer_target,
    "xcopy": xcopy_target, "rcr": rcr_target, "ring": ring_target, "rod": rod_target,
}


# --- seeds ----------------------------------------------------------------------------------
def _rec(cdb: bytes, size: int = 0, data_out: bytes = b"", flags: int = 0) -> bytes:
    big = size > 0xFFFF
    units = -(-size // 16) if big else size
    return (bytes([flags | (0x80 if big else 0)]) + cdb + struct.pack("<H", units)
            + struct.pack("<H", min(len(data_out), 0xFFFF)) + data_out)


def _mode_select_6(header_dsp: int, bd: bytes = b"", pages: bytes = b"") -> tuple[bytes, bytes]:
    plist = bytes([0, 0, header_dsp, len(bd)]) + bd + pages
    return spc.ModeSelect6(pf=1, parameter_list_length=len(plist)).encode(), plist


def seeds() -> dict[str, list[bytes]]:
    """A few dozen small, valid inputs per target: where the fuzzer starts."""
    lb = lab()
    with lb.armed():
        lb.reset(tapes=True, library=True)
    inq = spc.Inquiry(allocation_length=96).encode()
    common = [
        _rec(spc.TestUnitReady().encode()),
        _rec(inq, 96),
        _rec(spc.Inquiry(evpd=1, page_code=0x83, allocation_length=255).encode(), 255),
        _rec(spc.Inquiry(evpd=1, page_code=0x00, allocation_length=4).encode(), 4),
        _rec(spc.RequestSense(allocation_length=18).encode(), 18),
        _rec(spc.ModeSense6(page_code=0x3F, allocation_length=255).encode(), 255),
        _rec(spc.ModeSense10(page_code=0x3F, pc=1, allocation_length=512).encode(), 512),
        _rec(spc.ReportSupportedOperationCodes(allocation_length=4096).encode(), 4096),
        _rec(spc.ReportSupportedOperationCodes(reporting_options=1,
             requested_operation_code=0x12, allocation_length=64).encode(), 64),
        _rec(bytes([0xFF] + [0] * 9), 16),
    ]
    disk = [
        _rec(sbc.ReadCapacity10().encode(), 8) + _rec(sbc.ReadCapacity16(
            allocation_length=32).encode(), 32),
        _rec(sbc.Read10(lba=0, transfer_length=4).encode(), 2048, flags=0x40),
        _rec(sbc.Read16(lba=60, transfer_length=4).encode(), 2048),
        _rec(sbc.Read6(lba=1, transfer_length=1).encode(), 4096, flags=1),
        _rec(sbc.Write10(lba=2, transfer_length=2).encode(), 1024, bytes(range(256)) * 4),
        _rec(sbc.Write16(lba=63, transfer_length=1).encode(), 512, b"\x11" * 512)
        + _rec(sbc.Read16(lba=63, transfer_length=1).encode(), 512),
        _rec(sbc.Write6(lba=15, transfer_length=1).encode(), 4096, b"\x22" * 4096, flags=0x41),
        _rec(sbc.SynchronizeCache10().encode()),
        _rec(sbc.SynchronizeCache16(lba=10, number_of_blocks=5).encode()),
        _rec(spc.Inquiry(evpd=1, page_code=0xB0, allocation_length=64).encode(), 64),
        _rec(spc.ModeSense6(page_code=0x08, allocation_length=64).encode(), 64)
        + _rec(*_mode_select_6(0, b"", sbc.caching_mode_page(wce=False))[:1], 64,
               _mode_select_6(0, b"", sbc.caching_mode_page(wce=False))[1]),
        _rec(*_mode_select_6(0, sbc.short_block_descriptor(64, 512))[:1], 12,
             _mode_select_6(0, sbc.short_block_descriptor(64, 512))[1]),
    ]
    var = ssc.Write6(transfer_length=300).encode()
    tape = [
        _rec(ssc.Read6(transfer_length=512).encode(), 512),
        _rec(ssc.Read6(transfer_length=100, sili=1).encode(), 100),
        _rec(ssc.Space6(code=1, count=1).encode()) + _rec(ssc.Read6(
            transfer_length=4096).encode(), 4096, flags=0x40),
        _rec(ssc.Space6(code=3).encode()) + _rec(var, 300, b"\x33" * 300)
        + _rec(ssc.WriteFilemarks6(filemark_count=2).encode()),
        _rec(ssc.Locate10(logical_object_identifier=4).encode())
        + _rec(ssc.ReadPositionShort().encode(), 20)
        + _rec(ssc.ReadPositionLong().encode(), 32),
        _rec(ssc.ReadPositionExtended(allocation_length=32).encode(), 32),
        _rec(ssc.Locate16(dest_type=1, logical_identifier=1).encode())
        + _rec(ssc.Space16(code=0, count=(1 << 64) - 1).encode()),
        _rec(ssc.ReadBlockLimits().encode(), 6),
        _rec(ssc.Rewind().encode()) + _rec(ssc.Erase6().encode()),
        _rec(ssc.FormatMedium().encode()),
        _rec(ssc.LoadUnload(load=0).encode()) + _rec(ssc.Read6(transfer_length=10).encode(),
                                                      10)
        + _rec(ssc.LoadUnload(load=1).encode()),
        _rec(ssc.PreventAllowMediumRemoval(prevent=1).encode())
        + _rec(ssc.LoadUnload(load=0).encode()),
        _rec(ssc.ReportDensitySupport(allocation_length=64).encode(), 64),
        _rec(ssc.LogSense(pc=1, page_code=0x0C, allocation_length=255).encode(), 255)
        + _rec(ssc.LogSense(pc=1, page_code=0x2E, allocation_length=255).encode(), 255),
        _rec(ssc.LogSelect(pcr=1, pc=1).encode()),
        _rec(*_mode_select_6(0x10, ssc.block_descriptor(0, 512))[:1], 12,
             _mode_select_6(0x10, ssc.block_descriptor(0, 512))[1])
        + _rec(ssc.Write6(fixed=1, transfer_length=2).encode(), 1024, b"\x44" * 1024)
        + _rec(ssc.Rewind().encode()) + _rec(ssc.Read6(fixed=1, transfer_length=3).encode(),
                                             1536),
        _rec(ssc.Write6(transfer_length=0xFFFF).encode(), 0xFFFF, b"\x55" * 1000),
        _rec(spc.ModeSense6(page_code=0x10, subpage_code=1, allocation_length=64).encode(),
             64),
    ]
    st = smc.ReadElementStatus(element_type_code=0, starting_element_address=0,
                                 number_of_elements=0xFFFF, voltag=1, dvcid=1,
                                 allocation_length=4096).encode()
    to_drive = smc.MoveMedium(source_address=0x1000, destination_address=0x0100).encode()
    back = smc.MoveMedium(source_address=0x0100, destination_address=0x1000).encode()
    changer = [
        _rec(st, 4096),
        _rec(smc.ReadElementStatus(element_type_code=4, starting_element_address=0x100,
                                     number_of_elements=1, allocation_length=16).encode(), 16),
        _rec(to_drive) + _rec(spc.TestUnitReady().encode(), flags=1)
        + _rec(ssc.Write6(transfer_length=512).encode(), 512, b"\x66" * 512, flags=1)
        + _rec(back) + _rec(st, 4096),
        _rec(to_drive) + _rec(spc.TestUnitReady().encode(), flags=1)
        + _rec(ssc.LoadUnload(load=0).encode(), flags=1) + _rec(back),
        _rec(smc.MoveMedium(source_address=0x1001, destination_address=0x0010).encode())
        + _rec(smc.MoveMedium(source_address=0x0010, destination_address=0x1003).encode()),
        _rec(smc.InitializeElementStatus().encode())
        + _rec(smc.InitializeElementStatusWithRange(range=1, starting_element_address=0x1000,
                                                        number_of_elements=2).encode()),
        _rec(smc.PositionToElement(destination_address=0x1002).encode()),
        _rec(smc.PreventAllowMediumRemoval(prevent=1).encode())
        + _rec(smc.MoveMedium(source_address=0x1000, destination_address=0x0010).encode()),
        _rec(spc.ModeSense6(page_code=0x1D, allocation_length=64).encode(), 64)
        + _rec(spc.ModeSense10(page_code=0x1F, allocation_length=64).encode(), 64),
        _rec(ssc.Read6(transfer_length=10).encode(), 10, flags=1),
    ]
    d, d4 = lb.disks["fz-disk"], lb.disks["fz-disk4k"]
    t, t2 = lb.tapes["fz-tape"], lb.tapes["fz-tape2"]
    cd = xcopy.IdentificationCscd(_naa(d), 0, block_length=512)
    cd4 = xcopy.IdentificationCscd(_naa(d4), 0)
    ct, ct2 = xcopy.IdentificationCscd(_naa(t), 1), xcopy.IdentificationCscd(_naa(t2), 1)
    ctf = xcopy.IdentificationCscd(_naa(t), 1, block_length=512, fixed=True, pad=True)
    lists = [
        ([cd, ct], [xcopy.BlockToStream(0, 1, 8, 0, 1024)]),
        ([cd, ctf], [xcopy.BlockToStream(0, 1, 3, 0, 2)]),
        ([ct, cd], [xcopy.StreamToBlock(0, 1, 1, 0, 512)]),
        ([ct, cd], [xcopy.StreamToBlock(0, 1, 4, 0, 1000, cat=True),
                    xcopy.StreamToBlock(0, 1, 1, 10, 512)]),
        ([cd, cd4], [xcopy.BlockToBlock(0, 1, 16, 0, 2)]),
        ([cd4, cd], [xcopy.BlockToBlock(0, 1, 1, 15, 0, dc=True)]),
        ([ct, ct2], [xcopy.StreamToStream(0, 1, 2024, 512, 512)]),
        ([cd, ct], [xcopy.BlockToStream(0, 1, 4, 0, 2048),
                    xcopy.BlockToStream(0, 1, 4, 4, 2048)]),
        ([cd, ct, cd4], [xcopy.BlockToStream(0, 1, 2, 0, 512),
                         xcopy.StreamToBlock(1, 2, 1, 0, 4096)]),
        ([cd], [xcopy.BlockToBlock(0, 0xFFFF, 1, 0, 1)]),
        ([xcopy.IdentificationCscd(b"\x60" + bytes(15), 0)], [xcopy.BlockToBlock(0, 0, 1, 0, 1)]),
        ([], []),
    ]
    xc = []
    for i, (cscds, segs) in enumerate(lists):
        plist = xcopy.build_extended_copy(cscds, segs, list_identifier=i,
                                          list_id_usage=xcopy.ListIdUsage.HOLD if i % 2 else 2)
        xc.append(bytes([0, 0]) + plist)
    xc.append(bytes([2, 0]) + xc[0][2:])  # received by a tape
    xc.append(bytes([0, 3]) + struct.pack("<I", 0xFFFFFFFF) + xc[0][2:])
    xc.append(bytes([0, 2]) + xc[4][2:])
    label = b"VOL1" + bytes(76)
    tape_jobs = [  # the segments of a one-command backup job, and positioning
        ([cd, ct], [xcopy.Locate(1, 0), xcopy.InlineToStream(1, 0, 80, 80),
                    xcopy.BlockToStream(0, 1, 8, 0, 1024), xcopy.WriteFilemarks(1, 1)], label),
        ([ct], [xcopy.Space(0, 1, 1), xcopy.StreamToDiscard(0, 4096, 4096),
                xcopy.Space(0, 0, -1), xcopy.Locate(0, 0)], b""),
        ([ctf], [xcopy.EmbeddedToStream(0, b"hdr", 1), xcopy.InlineToStream(0, 4, 4, 1),
                 xcopy.Space(0, 3, 0)], label[:8]),
        ([ct, cd], [xcopy.StreamToDiscard(0, 612, 4096, cat=True),
                    xcopy.StreamToBlock(0, 1, 1, 0, 512)], b""),
    ]
    for i, (cscds, segs, inline) in enumerate(tape_jobs):
        xc.append(bytes([0, 0]) + xcopy.build_extended_copy(
            cscds, segs, list_identifier=0x40 + i, list_id_usage=xcopy.ListIdUsage.HOLD,
            inline_data=inline))
    more = [  # 07h-0Fh, 13h (SPC-4 6.4.6): verify, byte offsets, held data, tape image
        ([cd, ct], [xcopy.VerifyCscd(0), xcopy.VerifyCscd(1, tur=True)], b""),
        ([cd, ct], [xcopy.BlockToStreamOffset(0, 1, 1000, 1, 17, 300),
                    xcopy.WriteFilemarks(1, 1), xcopy.Locate(1, 0),
                    xcopy.StreamToBlockOffset(1, 0, 1000, 20, 511, 300)], b""),
        ([cd, cd4], [xcopy.BlockToBlockOffset(0, 1, 5000, 3, 1, 100, 4095),
                     xcopy.BlockToBlockOffset(1, 0, 10, 15, 62, 4090, 510)], b""),
        ([cd, ct, cd4], [xcopy.BlockToStreamHeld(0, 1, 4, 0, 512), xcopy.Locate(1, 0),
                         xcopy.StreamToDiscardHeld(1, 512, 512),
                         xcopy.StreamToBlockHeld(1, 2, 1, 0, 512),
                         xcopy.BlockToBlockHeld(0, 2, 8, 8, 1)], b""),
        ([cd, ct, ct2], [xcopy.BlockToStream(0, 1, 4, 0, 512), xcopy.WriteFilemarks(1, 1),
                         xcopy.Space(1, 1, -1), xcopy.Space(1, 0, -4),
                         xcopy.StreamToStreamHeld(1, 2, 1024, 512, 256),
                         xcopy.TapeImageCopy(1, 2, 1), xcopy.Locate(1, 0),
                         xcopy.TapeImageCopy(1, 2, 0)], b""),
    ]
    for i, (cscds, segs, inline) in enumerate(more):
        xc.append(bytes([i % 3, 0]) + xcopy.build_extended_copy(
            cscds, segs, list_identifier=0x50 + i, list_id_usage=xcopy.ListIdUsage.HOLD,
            inline_data=inline))
    lid4 = [  # EXTENDED COPY(LID4): foreground, IMMED, and headers SPC-4 6.4.2 refuses
        xcopy.build_extended_copy_lid4([cd, ct], [xcopy.BlockToStream(0, 1, 8, 0, 1024)],
                                       list_identifier=0x4C494434),
        xcopy.build_extended_copy_lid4([cd, cd4], [xcopy.BlockToBlock(0, 1, 16, 0, 2)],
                                       list_identifier=0xFFFFFFFF, immed=True),
        xcopy.build_extended_copy_lid4([ct, cd], [xcopy.StreamToBlock(0, 1, 60, 0, 512)],
                                       list_identifier=3, immed=True),  # fails: underrun
        xcopy.build_extended_copy_lid4([cd, ct], [xcopy.InlineToStream(1, 0, 80, 80),
                                                  xcopy.WriteFilemarks(1, 1)],
                                       list_identifier=4, immed=True, inline_data=label),
        xcopy.build_extended_copy_lid4([cd], [xcopy.BlockToBlock(0, 0, 1, 0, 1)],
                                       immed=True, g_sense=True),
        xcopy.build_extended_copy_lid4([cd], [xcopy.BlockToBlock(0, 0, 1, 0, 1)],
                                       list_id_usage=xcopy.ListIdUsage.NO_LIST_ID),
    ]
    xc += [bytes([i % 4, 4]) + plist for i, plist in enumerate(lid4)]
    xc.append(bytes([0, 6]) + lid4[1])  # one byte short
    xc.append(bytes([0, 7]) + struct.pack("<I", 47) + lid4[0])  # a header cut short
    for token in (rod.block_device_zero_token(), bytes.fromhex("00800001000001f8") + bytes(504)):
        # a ROD CSCD descriptor (FEh) naming a token in the inline data: the zero token
        # copies zeros, a token we never made is refused
        xc.append(bytes([0, 4]) + xcopy.build_extended_copy_lid4(
            [xcopy.RodCscd(rod_token_offset=4, del_tkn=True), cd],
            [xcopy.BlockToBlock(0, 1, 4, 0, 8)], list_identifier=0x524F44,
            inline_data=b"pad!" + token))

    def ask(which: int, list_id: int, alloc: int, size: int) -> bytes:
        return bytes([which, list_id]) + struct.pack("<IH", alloc, size)

    rcr = [  # {copies, per copy {which, list id, usage}}, then RECEIVE COPY RESULTS
        bytes([0]) + ask(1, 0, 60, 60) + ask(1, 0, 3, 0) + ask(0, 0, 0, 0),
        bytes([1, 0, 7, 0]) + ask(0, 7, 0xFFFFFFFF, 512) + ask(2, 7, 100, 100),
        bytes([1, 2, 9, 0]) + ask(2, 9, 60, 60) + ask(2, 9, 10, 60) + ask(0, 9, 1, 12),
        bytes([2, 0, 1, 0, 4, 2, 0]) + ask(0, 1, 8, 8) + ask(0, 2, 12, 4),
        bytes([1, 2, 4, 0]) + ask(3, 4, 44, 64) + ask(3, 4, 0, 64) + ask(3, 4, 47, 47),
        bytes([1, 4, 5, 0]) + ask(0x83, 5, 32, 32) + ask(0x81, 5, 32, 32),
        bytes([1, 0, 6, 3]) + ask(0, 0, 12, 12),
        bytes([3, 0, 1, 0, 0, 1, 0, 0, 1, 0]) + ask(0, 1, 12, 12) + ask(3, 1, 48, 48),
        # LID4 copies (bit 7), IMMED (bit 6), read back with the LID4 commands (0x40)
        bytes([1, 0xC0, 8, 0]) + ask(0x40, 8, 32, 64) + ask(0x40, 8, 96, 96)
        + ask(0x41, 8, 36, 36) + ask(0, 8, 12, 12) + ask(2, 8, 60, 60),
        bytes([2, 0x81, 9, 0, 0xC2, 10, 2]) + ask(0x40, 9, 96, 96) + ask(0x42, 10, 0, 0)
        + ask(0x40, 10, 31, 31) + ask(0x41, 10, 0, 0),
        bytes([2, 0xC0, 11, 0, 0x00, 11, 0]) + ask(0x40, 11, 96, 96) + ask(0x42, 12, 0, 0),
        # held data (0Bh) read with RECEIVE DATA (01h): short, whole, again (discarded)
        bytes([1, 5, 13, 0]) + ask(4, 13, 100, 100) + ask(4, 13, 1 << 20, 2048)
        + ask(4, 13, 1 << 20, 2048) + ask(0, 13, 12, 12),
        bytes([1, 0x83, 14, 0]) + ask(0x43, 14, 1 << 20, 2048) + ask(4, 14, 0, 0),
    ]
    def patch(region: int, width: int, where: bytes, value: int) -> bytes:
        return (bytes([region << 2 | (1, 2, 4, 8).index(width)]) + where
                + value.to_bytes(width, "little"))

    def entry(i: int, field: int) -> bytes:
        return bytes([i, _ENTRY_FIELDS.index(field)])

    size = 4096 + 16 * PAGE  # the simulated map
    read = bytes([0]) + sbc.Read10(lba=0, transfer_length=16).encode() + struct.pack("<H", 8192)
    ring = [  # {commands, per command {kind, CDB, length[, Data-Out]}, patches, patches}
        bytes([0, 0]) + inq + struct.pack("<H", 96) + bytes([0]),
        bytes([1, 1]) + sbc.Write10(lba=1, transfer_length=1).encode() + struct.pack("<H", 512)
        + b"\x77" * 512 + bytes([0x82, 5, 1, 0, 0]) + bytes([0]),
        bytes([0]) + read + bytes([1]) + patch(1, 4, entry(0, 8), 0x10),  # iov_cnt
        bytes([0]) + read + bytes([1]) + patch(1, 8, entry(0, 48), 1 << 40),  # iov_base
        bytes([0]) + read + bytes([1]) + patch(1, 8, entry(0, 56), size),  # iov_len
        bytes([0]) + read + bytes([1]) + patch(1, 8, entry(0, 24), size - 3),  # cdb_off
        bytes([1, 0]) + inq + struct.pack("<H", 96) + bytes([0x80, 5])
        + bytes([1]) + patch(1, 1, entry(1, 4), 9),  # cmd_id of the second
        bytes([0, 0]) + bytes([0x7F]) + bytes(6) + bytes([0xF8]) + bytes(248)
        + struct.pack("<H", 0) + bytes([0]),
        bytes([0, 0]) + inq + struct.pack("<H", 96) + bytes([1]) + patch(0, 4, bytes([12]), 8),
    ]
    def rod_rec(kind: int, list_id: int, body: bytes, length: int | None = None) -> bytes:
        return bytes([kind, list_id]) + struct.pack(
            "<H", len(body) if length is None else length) + body

    def pt(*ranges: tuple[int, int], **kw: object) -> bytes:
        return rod.PopulateTokenList(tuple(rod.BlockRange(*r) for r in ranges),
                                     **kw).encode()  # type: ignore[arg-type]

    def wut(*ranges: tuple[int, int], token: bytes = bytes(512), **kw: object) -> bytes:
        return rod.WriteUsingTokenList(token, tuple(rod.BlockRange(*r) for r in ranges),
                                       **kw).encode()  # type: ignore[arg-type]

    zero = rod.block_device_zero_token()
    rrti = bytes([3, 1]) + struct.pack("<H", 1024)
    rods = [  # {kind, list id, length, bytes}: kind 0 PT, 1 WUT, 2 WUT with the last
        # token, 3 RRTI; bit 2 the 4096-byte disk; bit 3 the length as sent
        rod_rec(0, 1, pt((0, 8))) + rrti + rod_rec(2, 2, wut((16, 8)))
        + bytes([3, 2]) + struct.pack("<H", 1024),
        rod_rec(0, 1, pt((0, 8), (40, 4), inactivity_timeout=5)) + rrti
        + rod_rec(2, 3, wut((16, 12), immed=True, del_tkn=True))
        + bytes([3, 3]) + struct.pack("<H", 64) + rod_rec(2, 4, wut((30, 2))),
        rod_rec(1 | 4, 5, wut((0, 16), token=zero)) + bytes([3 | 4, 5]) + struct.pack("<H", 40),
        rod_rec(1, 6, wut((0, 4), (56, 8), token=zero, immed=True)),
        rod_rec(0, 7, pt((0, 8), rod_type=0x00800002)),  # a ROD type we do not make
        rod_rec(0, 8, pt((60, 8))),  # past the end of the 64-block disk
        rod_rec(0 | 8, 9, pt((0, 8))[:20], 32),  # PARAMETER LIST LENGTH past the data
        rod_rec(0, 1, pt((0, 8))) + rrti + rod_rec(2, 10, wut((16, 8), offset_into_rod=9)),
        rod_rec(0, 1, pt((0, 8))) + rrti + rod_rec(2 | 4, 11, wut((0, 1))),  # 4096-byte LUN
        rod_rec(1, 12, wut((0, 8), token=zero)[:530]),  # a list cut short
    ]
    return {"disk": common + disk, "tape": common + tape, "changer": common + changer,
            "xcopy": xc, "rcr": rcr, "ring": ring, "rod": rods}


CORPUS = Path(__file__).resolve().parent / "corpus"


def write_seeds(root: Path = CORPUS) -> dict[str, int]:
    """(Re)write tests/fuzz/corpus/<target>/seed-NN; returns how many per target."""
    import hashlib

    counts = {}
    for name, inputs in seeds().items():
        d = root / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        for i, data in enumerate(inputs):
            tag = hashlib.sha1(data).hexdigest()[:8]
            (d / f"seed-{i:02d}-{tag}").write_bytes(data)
        counts[name] = len(inputs)
    return counts


if __name__ == "__main__":
    print(write_seeds())
    close_lab()
