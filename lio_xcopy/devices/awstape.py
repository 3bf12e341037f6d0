"""A tape cartridge kept as an AWSTAPE file (the Hercules / P/390 virtual tape format).

Each chunk is a 6-byte header {current chunk length u16 LE, previous chunk length u16 LE,
flags1, flags2 = 0} and its data; a record spans chunks of at most 65535 bytes (NEWREC on
the first, ENDREC on the last), a tapemark is a lone header with flags1 = TAPEMARK, and
end of data is end of file. See docs/tape-format.md.

Positions count SSC logical objects (records and filemarks) from BOT. One scan of the
headers at open builds the index (object offsets, data lengths, filemark numbers,
each kept as runs of arithmetic progressions, so runs of filemarks or of equal records
take constant memory); writes keep it current. Payloads move between the file and a
:class:`DataBuffer` with ``preadv``/``pwritev``, chunk headers read into or written from
small side buffers.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import re
import struct
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from lio_xcopy.devices.buffer import IOV_MAX, DataBuffer, PartialTransfer
from lio_xcopy.devices.filecopy import (
    FileData,
    FileMap,
    FileSource,
    KernelCopyFailed,
    compiled_helpers,
    copy_range,
    deinterleave,
    interleave,
)
from lio_xcopy.errors import BackingStoreError, ConfigError, LioXcopyError

HEADER = struct.Struct("<HHBB")
HEADER_LEN = HEADER.size
MAX_CHUNK = 0xFFFF
NEWREC = 0x80
TAPEMARK = 0x40
ENDREC = 0x20
WHOLE = NEWREC | ENDREC
#: the bytes of a chunk header a record's layout fixes: all but the previous length
_HEADER_MASK = b"\xff\xff\x00\x00\xff\xff"
EARLY_WARNING_MAX = 64 << 20
_SCAN_WINDOW = 1 << 16
_FILEMARK_HEADERS_PER_WRITE = (1 << 16) // HEADER_LEN
_TAPEMARKS_AFTER_TAPEMARK = re.compile(b"(?:%s)+" % re.escape(HEADER.pack(0, 0, TAPEMARK, 0)))


class TapeFormatError(BackingStoreError):
    """The cartridge breaks the AWSTAPE header chain at ``offset``."""

    def __init__(self, path: str, offset: int, reason: str):
        self.path = path
        self.offset = offset
        self.reason = reason
        super().__init__(f"{path}: corrupt AWSTAPE at byte {offset}: {reason}")


class RecordsKept(PartialTransfer):
    """A write of several records failed after ``done`` bytes of whole records, which
    stay on the tape (its end of data follows them)."""


class MediumFull(LioXcopyError):
    """A write does not fit before the capacity; nothing was written."""


class Kind(enum.Enum):
    """What :meth:`AwsTape.read_record_into` met."""

    DATA = "data"
    FILEMARK = "filemark"
    EOD = "eod"


class Stop(enum.Enum):
    """Why a space stopped short."""

    FILEMARK = "filemark"
    EOD = "eod"
    BOP = "bop"


@dataclass(frozen=True, slots=True)
class Spaced:
    count: int  # objects spaced over (records or filemarks, never negative)
    stop: Stop | None  # None when the whole count was spaced


class _Carver:
    """Consecutive pieces of a scatter list, walked once (not once per chunk)."""

    __slots__ = ("i", "skip", "views")

    def __init__(self, views: list[memoryview]):
        self.views, self.i, self.skip = views, 0, 0

    def take(self, n: int) -> list[memoryview]:
        out: list[memoryview] = []
        while n > 0 and self.i < len(self.views):
            v = self.views[self.i]
            end = min(len(v), self.skip + n)
            if end > self.skip:
                out.append(v[self.skip : end])
                n -= end - self.skip
            if end == len(v):
                self.i, self.skip = self.i + 1, 0
            else:
                self.skip = end
        return out

    def contiguous(self, n: int) -> memoryview | None:
        """The next ``n`` bytes as one view when they lie in one piece (taken), else
        None (nothing taken)."""
        if self.i >= len(self.views):
            return None
        v = self.views[self.i]
        if len(v) - self.skip < n:
            return None
        out = v[self.skip : self.skip + n]
        self.skip += n
        if self.skip == len(v):
            self.i, self.skip = self.i + 1, 0
        return out


class _Progressions:
    """A sequence of ints kept as runs of arithmetic progressions: run ``r`` starts at
    index ``starts[r]`` with value ``firsts[r]`` and goes up by ``steps[r]``; it ends
    where the next run starts (the last one at the length). :meth:`append` grows the
    last run while values continue it (two values always do), so evenly spaced values
    cost O(1) memory and others at most one run per two values."""

    __slots__ = ("_base", "_expect", "_firsts", "_hi", "_lo", "_mul", "_n", "_single",
                 "_starts", "_step", "_steps")

    def __init__(self) -> None:
        self._starts = array("q")
        self._firsts = array("q")
        self._steps = array("q")
        self._n = 0
        self._settle()

    def _settle(self) -> None:
        """Recompute what :meth:`append` knows of the last run; forget the last lookup."""
        self._single = False  # the last run holds one value (any next value continues it)
        self._expect: int | None = None  # the value continuing a longer last run
        self._step = 0
        if self._starts:
            count = self._n - self._starts[-1]
            self._step = self._steps[-1]
            if count == 1:
                self._single = True
            else:
                self._expect = self._firsts[-1] + count * self._step
        # the run the last lookup fell in: indexes lo..hi-1 hold base + index * mul
        self._lo = self._hi = self._base = self._mul = 0

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> int:
        if self._lo <= i < self._hi:
            return self._base + i * self._mul
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("index out of range")
        starts = self._starts
        r = bisect_right(starts, i) - 1
        self._lo, step = starts[r], self._steps[r]
        self._hi = starts[r + 1] if r + 1 < len(starts) else self._n
        self._base, self._mul = self._firsts[r] - self._lo * step, step
        return self._base + i * step

    def __iter__(self) -> Iterator[int]:
        starts, firsts, steps = self._starts, self._firsts, self._steps
        for r in range(len(starts)):
            end = starts[r + 1] if r + 1 < len(starts) else self._n
            for k in range(end - starts[r]):
                yield firsts[r] + k * steps[r]

    def __delitem__(self, key: slice) -> None:
        """Only ``del x[n:]``."""
        if not isinstance(key, slice) or key.stop is not None or key.step is not None:
            raise TypeError("only del x[n:] is supported")
        self.truncate(key.indices(self._n)[0])

    def append(self, value: int) -> None:
        if value == self._expect:
            self._n += 1
            self._expect = value + self._step
        elif self._single:
            step = self._step = self._steps[-1] = value - self._firsts[-1]
            self._n += 1
            self._expect, self._single = value + step, False
            self._hi = 0  # the last lookup may have computed with the old step
        else:
            self._starts.append(self._n)
            self._firsts.append(value)
            self._steps.append(0)
            self._n += 1
            self._expect, self._single, self._step = None, True, 0

    def extend_progression(self, first: int, step: int, count: int) -> None:
        """Append ``first, first + step, ...`` (``count`` values) in O(1)."""
        if count <= 0:
            return
        if count == 1:
            self.append(first)
            return
        if first == self._expect and step == self._step:
            self._n += count
        elif self._single and first - self._firsts[-1] == step:
            self._steps[-1] = step
            self._n += count
        else:
            self._starts.append(self._n)
            self._firsts.append(first)
            self._steps.append(step)
            self._n += count
        self._settle()

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` values."""
        if n >= self._n:
            return
        n = max(n, 0)
        r = bisect_left(self._starts, n)  # the first run starting at or after n
        del self._starts[r:]
        del self._firsts[r:]
        del self._steps[r:]
        self._n = n
        self._settle()

    def bisect_left(self, value: int) -> int:
        """Where ``value`` would go to keep the sequence (non-decreasing) sorted,
        before equal values."""
        r = bisect_left(self._firsts, value)  # the first run whose first value >= value
        if r == 0:
            return 0
        r -= 1  # its values start below value
        start, first, step = self._starts[r], self._firsts[r], self._steps[r]
        end = self._starts[r + 1] if r + 1 < len(self._starts) else self._n
        if step <= 0:
            return end
        return min(end, start - (first - value) // step)


def _record_pieces(
    carve: _Carver, lengths: list[int], before: int, count: int
) -> Iterable[DataBuffer]:
    """``count`` records of chunks ``lengths`` with their data from ``carve`` (the first
    header's previous length ``before``), a vector write's worth at a time."""
    per = max(1, IOV_MAX // (2 * len(lengths)))  # records per write
    if count <= per:
        return [DataBuffer(_record_views(carve, lengths, before, count))]
    return _record_batches(carve, lengths, before, count, per)


def _record_batches(
    carve: _Carver, lengths: list[int], before: int, count: int, per: int
) -> Iterator[DataBuffer]:
    """:func:`_record_pieces` ``per`` records at a time."""
    done, prev = 0, before
    while done < count:
        k = min(per, count - done)
        yield DataBuffer(_record_views(carve, lengths, prev, k))
        done += k
        prev = lengths[-1]


def _record_views(carve: _Carver, lengths: list[int], prev: int, count: int) -> list[memoryview]:
    """Headers and data of ``count`` records (the first header's previous length ``prev``)."""
    views: list[memoryview] = []
    last = len(lengths) - 1
    headers: list[memoryview] = []
    size = sum(lengths)
    whole = carve.contiguous(size * count) if count > 1 and size else None
    if whole is not None:  # the data in one piece: slice it, record by record
        return _sliced_record_views(whole, lengths, prev, count)
    for i in range(count):
        if i < 2:  # the records after the first have the same headers
            headers = []
            for j, cur in enumerate(lengths):
                flags = (NEWREC if j == 0 else 0) | (ENDREC if j == last else 0)
                headers.append(memoryview(HEADER.pack(cur, prev, flags, 0)))
                prev = cur
        for header, cur in zip(headers, lengths, strict=True):
            views.append(header)
            views.extend(carve.take(cur))
    return views


def _sliced_record_views(data: memoryview, lengths: list[int], prev: int,
                         count: int) -> list[memoryview]:
    """:func:`_record_views` of records whose data is ``data``, in one piece."""
    last = len(lengths) - 1
    chunks = []  # (header, start, end) of each chunk in the records after the first
    first = []  # the first record's headers: its previous length is ``prev``
    pos = 0
    for j, cur in enumerate(lengths):
        flags = (NEWREC if j == 0 else 0) | (ENDREC if j == last else 0)
        first.append(memoryview(HEADER.pack(cur, prev, flags, 0)))
        prev = lengths[j - 1] if j else lengths[-1]
        chunks.append((memoryview(HEADER.pack(cur, prev, flags, 0)), pos, pos + cur))
        prev = cur
        pos += cur
    views: list[memoryview] = []
    add = views.append
    for (_, a, b), header in zip(chunks, first, strict=True):
        add(header)
        add(data[a:b])
    for base in range(pos, pos * count, pos):
        for header, a, b in chunks:
            add(header)
            add(data[base + a : base + b])
    return views


def _filemark_pieces(before: int, count: int) -> Iterator[DataBuffer]:
    """The headers of ``count`` tapemarks (the first's previous length ``before``),
    at most 64 KiB a write, all from one buffer."""
    per = _FILEMARK_HEADERS_PER_WRITE
    head = memoryview(HEADER.pack(0, before, TAPEMARK, 0))
    rest = memoryview(HEADER.pack(0, 0, TAPEMARK, 0) * min(count - 1, per))
    first = min(count - 1, per - 1)
    yield DataBuffer([head, rest[: HEADER_LEN * first]] if first else [head])
    left = count - 1 - first
    while left > 0:
        k = min(left, per)
        yield DataBuffer([rest[: HEADER_LEN * k]])
        left -= k


def footprint(length: int) -> int:
    """File bytes one record of ``length`` data bytes takes."""
    return length + HEADER_LEN * max(1, -(-length // MAX_CHUNK))


def _chunk_lengths(length: int) -> list[int]:
    """The chunk lengths of a record of ``length`` data bytes."""
    lengths = [MAX_CHUNK] * (length // MAX_CHUNK)
    if length % MAX_CHUNK or not length:
        lengths.append(length % MAX_CHUNK)
    return lengths


def _chunk_flags(j: int, chunks: int) -> int:
    """flags1 of chunk ``j`` of a record of ``chunks`` chunks."""
    return (NEWREC if j == 0 else 0) | (ENDREC if j == chunks - 1 else 0)


class AwsTape:
    """One cartridge file, its index and the current position."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        capacity: int,
        *,
        create: bool = True,
        read_only: bool = False,
        early_warning_size: int | None = None,
        strict: bool = True,
    ):
        """Open (or create) the cartridge. ``capacity`` bounds writes (headers count);
        early warning lies ``early_warning_size`` bytes before it (default a sixteenth,
        at most 64 MiB). With ``strict`` a broken header chain raises
        :class:`TapeFormatError`; otherwise the objects before it are served, reading
        past them raises that error and writing there replaces the damage."""
        if capacity < 0:
            raise ConfigError(f"tape capacity {capacity} is negative")
        margin = min(capacity // 16, EARLY_WARNING_MAX) if early_warning_size is None else (
            early_warning_size
        )
        if not 0 <= margin <= capacity:
            raise ConfigError(f"early warning size {margin} is outside 0..{capacity}")
        self.path = os.fspath(path)
        self.capacity = capacity
        self.early_warning = capacity - margin
        self.read_only = read_only
        flags = os.O_RDONLY if read_only else os.O_RDWR | (os.O_CREAT if create else 0)
        self._fd = os.open(self.path, flags | os.O_CLOEXEC, 0o600)
        self._map = FileMap(self._fd, capacity)  # the file never grows past the capacity
        self._off = _Progressions()  # file offset of each object
        self._len = _Progressions()  # data length of each record, -1 for a filemark
        self._fms = _Progressions()  # object numbers of the filemarks
        self._eod = 0  # file offset of end of data
        self._eod_prev = 0  # length of the chunk before end of data
        self._pos = 0
        self.damage: TapeFormatError | None = None
        self.torn_tail = False
        try:
            self._size = os.fstat(self._fd).st_size
            self._scan()
            if strict and self.damage:
                raise self.damage
        except BaseException:
            os.close(self._fd)
            raise

    @classmethod
    def open_readonly(cls, path: str | os.PathLike[str], *, strict: bool = True) -> AwsTape:
        """Open a cartridge for inspection (its size is its capacity)."""
        return cls(path, os.stat(path).st_size, create=False, read_only=True, strict=strict)

    def __enter__(self) -> AwsTape:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<AwsTape {self.path} object {self._pos} of {len(self._off)}>"

    # --- the index ---------------------------------------------------------------------------
    def _scan(self) -> None:
        """Walk the header chain once; stop at the first inconsistency (kept in
        :attr:`damage`) or at end of file."""
        fd, size = self._fd, self._size
        window, base = b"", 0
        off = prev = 0
        start = -1  # offset of the record being assembled
        total = 0
        while off < size:
            if off + HEADER_LEN > size:
                return self._damaged(off, "truncated chunk header", torn=True)
            i = off - base
            if i < 0 or i + HEADER_LEN > len(window):
                # small chunks: read ahead a window of headers; big ones: just the header
                ahead = _SCAN_WINDOW if prev < _SCAN_WINDOW // 16 else HEADER_LEN
                window, base, i = os.pread(fd, ahead, off), off, 0
                if len(window) < HEADER_LEN:
                    return self._damaged(off, "short read of a chunk header", torn=True)
            cur, prv, f1, f2 = HEADER.unpack_from(window, i)
            if prv != prev:
                return self._damaged(off, f"previous length {prv}, expected {prev}")
            if f2 or f1 & ~(NEWREC | TAPEMARK | ENDREC):
                return self._damaged(off, f"unknown flags {f1:#04x} {f2:#04x}")
            end = off + HEADER_LEN + cur
            if f1 & TAPEMARK:
                if f1 != TAPEMARK or cur or start >= 0:
                    return self._damaged(off, f"bad tapemark (flags {f1:#04x}, length {cur})")
                n = len(self._off)
                self._fms.append(n)
                self._off.append(off)
                self._len.append(-1)
                # the tapemarks right after it in the window, in one step
                more = _TAPEMARKS_AFTER_TAPEMARK.match(window, i + HEADER_LEN)
                if more:
                    k = (more.end() - more.start()) // HEADER_LEN
                    self._fms.extend_progression(n + 1, 1, k)
                    self._off.extend_progression(end, HEADER_LEN, k)
                    self._len.extend_progression(-1, 0, k)
                    end += HEADER_LEN * k
                self._eod, self._eod_prev = end, cur
            else:
                if f1 & NEWREC:
                    if start >= 0:
                        return self._damaged(off, "record starts inside a record")
                    start, total = off, 0
                elif start < 0:
                    return self._damaged(off, "continuation chunk outside a record")
                if end > size:
                    return self._damaged(off, f"chunk of {cur} bytes runs past end of file",
                                         torn=True)
                total += cur
                if f1 & ENDREC:
                    self._off.append(start)
                    self._len.append(total)
                    self._eod, self._eod_prev = end, cur
                    start = -1
            prev = cur
            off = end
        if start >= 0:
            self._damaged(start, "record without its last chunk", torn=True)

    def _damaged(self, offset: int, reason: str, *, torn: bool = False) -> None:
        """``torn``: the file ends inside the object at ``offset`` and nothing follows it
        (a write cut short by a crash), unlike a header chain broken mid-file."""
        self.damage = TapeFormatError(self.path, offset, reason)
        self.torn_tail = torn

    def cut_torn_tail(self) -> int:
        """A record the file ends inside of was never written whole: end the tape after
        the last whole object, as a drive that lost power mid-write leaves end of data.
        Bytes cut (0 when the file does not end in a torn object)."""
        if not (self.damage and self.torn_tail) or self.read_only:
            return 0
        cut = self._size - self._eod
        os.ftruncate(self._fd, self._eod)
        self._size, self.damage, self.torn_tail = self._eod, None, False
        return cut

    def _end_of(self, n: int) -> int:
        """File offset where object ``n`` ends (the next object or end of data)."""
        return self._off[n + 1] if n + 1 < len(self._off) else self._eod

    def _cut(self, n: int) -> None:
        """Forget objects ``n`` and after (the caller fixes EOD)."""
        if n >= len(self._off):
            return
        del self._off[n:]
        del self._len[n:]
        del self._fms[self._fms.bisect_left(n):]

    def _prev_len(self, n: int) -> int:
        """The previous-length field a header written at object ``n`` must carry."""
        if n >= len(self._off):
            return self._eod_prev
        hdr = os.pread(self._fd, HEADER_LEN, self._off[n])
        if len(hdr) < HEADER_LEN:
            raise TapeFormatError(self.path, self._off[n], "short read of a chunk header")
        prev_len: int = HEADER.unpack(hdr)[1]
        return prev_len

    # --- position ----------------------------------------------------------------------------
    @property
    def position(self) -> int:
        """Logical object number from BOT (records and filemarks)."""
        return self._pos

    @property
    def objects(self) -> int:
        """Logical objects before end of data."""
        return len(self._off)

    @property
    def file_number(self) -> int:
        """Filemarks between BOT and the position."""
        return self._fms.bisect_left(self._pos)

    @property
    def block_in_file(self) -> int:
        f = self.file_number
        return self._pos - (self._fms[f - 1] + 1 if f else 0)

    @property
    def offset(self) -> int:
        """File offset of the position."""
        return self._off[self._pos] if self._pos < len(self._off) else self._eod

    @property
    def end_of_data_offset(self) -> int:
        """File offset of end of data (the bytes the tape holds)."""
        return self._eod

    def file_start(self, file_number: int) -> int | None:
        """Object number where logical file ``file_number`` starts (after that many
        filemarks); None when the tape has fewer filemarks."""
        if file_number == 0:
            return 0
        if file_number > len(self._fms):
            return None
        return self._fms[file_number - 1] + 1

    @property
    def at_bop(self) -> bool:
        return self._pos == 0

    @property
    def at_eod(self) -> bool:
        return self._pos >= len(self._off)

    @property
    def beyond_early_warning(self) -> bool:
        return self.offset > self.early_warning

    def record_length(self, n: int) -> int:
        """Data length of object ``n`` (-1 for a filemark)."""
        return self._len[n]

    # --- reading -----------------------------------------------------------------------------
    def read_record_into(
        self, buf: DataBuffer, max_len: int, start: int = 0
    ) -> tuple[int, Kind]:
        """Read the object at the position: a record's first ``max_len`` bytes go to
        ``buf[start:]`` and its full length is returned; the position moves past a record
        or filemark and stays at end of data."""
        n = self._pos
        if n >= len(self._off):
            if self.damage:
                raise self.damage
            return 0, Kind.EOD
        length = self._len[n]
        if length < 0:
            hdr = os.pread(self._fd, HEADER_LEN, self._off[n]).ljust(HEADER_LEN, b"\xff")
            cur, _, f1, f2 = HEADER.unpack(hdr)
            if cur or f1 != TAPEMARK or f2:
                raise TapeFormatError(self.path, self._off[n], "tapemark changed since open")
            self._pos = n + 1
            return 0, Kind.FILEMARK
        self._read_data(n, buf, start, min(length, max_len))
        self._pos = n + 1
        return length, Kind.DATA

    def read_records_into(self, buf: DataBuffer, length: int, count: int, start: int = 0) -> int:
        """Read up to ``count`` records of exactly ``length`` bytes from the position
        into ``buf[start:]``, one after the other, with one ``preadv``; stop before any
        other object (a filemark, end of data, a record of another length or cut into
        chunks otherwise than this class writes them). The records read; the position
        moves past them."""
        n = self._pos
        if length <= 0 or start + length * count > len(buf):
            return 0
        lengths = _chunk_lengths(length)
        k, first = self.equal_records(length, min(count, IOV_MAX // (2 * len(lengths))))
        if not k:
            return 0
        each = footprint(length)
        per = len(lengths)
        hdrs = memoryview(bytearray(HEADER_LEN * per * k))
        carve = _Carver(buf.slices(start, length * k))
        views: list[memoryview] = []
        for i in range(k * per):
            views.append(hdrs[i * HEADER_LEN : (i + 1) * HEADER_LEN])
            views.extend(carve.take(lengths[i % per]))
        got = DataBuffer(views).read_from(self._fd, first)
        if got != each * k:
            raise TapeFormatError(self.path, first + got, "short read of record data")
        flags = [(NEWREC if j == 0 else 0) | (ENDREC if j == per - 1 else 0) for j in range(per)]
        for i in range(k * per):
            cur, _, f1, f2 = HEADER.unpack_from(hdrs, i * HEADER_LEN)
            if cur != lengths[i % per] or f1 != flags[i % per] or f2:
                k = i // per  # chunked otherwise: the records before it were read whole
                break
        self._pos = n + k
        return k

    def equal_records(self, length: int, count: int) -> tuple[int, int]:
        """How many of the next ``count`` objects are records of ``length`` bytes laid
        one after the other as :meth:`write_record` lays them, and the file offset of
        the first (whose chunk headers the caller still checks)."""
        n = self._pos
        count = max(0, min(count, len(self._off) - n))
        each = footprint(length)
        first = self._off[n] if count > 0 else 0
        k = 0
        while k < count and self._len[n + k] == length and self._off[n + k] == first + k * each:
            k += 1
        if k and self._end_of(n + k - 1) != first + k * each:
            k -= 1  # the last one is followed by a chunk of its own
        return k, first

    @contextlib.contextmanager
    def records_out(self, length: int, count: int, fd: int, offset: int
                    ) -> Iterator[FileData | None]:
        """Copy the data of the next ``count`` records, of ``length`` bytes each, one
        after the other into file ``fd`` at ``offset``, by the kernel; yields their
        data as the cartridge holds it (:meth:`records_at`, headers checked: show it or
        :meth:`~lio_xcopy.devices.filecopy.FileData.check` it) and, when the block
        ends without an error, moves the position past them. Yields None, copying
        nothing, unless all ``count`` are such records, laid out as
        :meth:`write_record` lays them. :class:`KernelCopyFailed` when the kernel did
        not copy them (part may be in ``fd``); the position does not move."""
        if length <= 0 or count <= 0 or self.equal_records(length, count)[0] < count:
            yield None
            return
        first = self._off[self._pos]
        lengths = _chunk_lengths(length)
        try:
            deinterleave(self._fd, first, fd, offset, HEADER_LEN, lengths, count)
        except OSError as e:
            raise KernelCopyFailed(f"{self.path}: {e.strerror or e}") from e
        yield self.records_at(first, length, count, check=True)
        self._pos += count

    def _read_data(self, n: int, buf: DataBuffer, start: int, want: int) -> None:
        off, length = self._off[n], self._len[n]
        if start + want > len(buf):
            raise ValueError(f"{want} bytes at {start} do not fit a {len(buf)}-byte buffer")
        hdr = bytearray(HEADER_LEN)
        if self._end_of(n) - off == HEADER_LEN + length and length <= MAX_CHUNK:
            got = DataBuffer([memoryview(hdr), *buf.slices(start, want)]).read_from(self._fd, off)
            cur, _, f1, f2 = HEADER.unpack(hdr)
            if got != HEADER_LEN + want or cur != length or f1 != WHOLE or f2:
                raise TapeFormatError(self.path, off, "record changed since the tape was opened")
            return
        pos, done, first = off, 0, True
        carve = _Carver(buf.slices(start, want))
        while True:
            if os.preadv(self._fd, [hdr], pos) != HEADER_LEN:
                raise TapeFormatError(self.path, pos, "short read of a chunk header")
            cur, _, f1, f2 = HEADER.unpack(hdr)
            if f2 or f1 & TAPEMARK or bool(f1 & NEWREC) != first:
                raise TapeFormatError(self.path, pos, "record changed since the tape was opened")
            take = min(cur, want - done)
            if take and DataBuffer(carve.take(take)).read_from(self._fd, pos + HEADER_LEN) != take:
                raise TapeFormatError(self.path, pos, "short read of record data")
            done += take
            pos += HEADER_LEN + cur
            first = False
            if f1 & ENDREC or done >= want:
                break
        if done != want:
            raise TapeFormatError(self.path, off, "record shorter than its index entry")

    def dump_records(self, limit: int | None = None) -> list[bytes | None]:
        """The objects from the position to end of data (or ``limit`` of them): bytes for
        a record, None for a filemark. For tests and inspection."""
        out: list[bytes | None] = []
        while not self.at_eod and (limit is None or len(out) < limit):
            length = max(self._len[self._pos], 0)
            buf = DataBuffer.allocate(length)
            _, kind = self.read_record_into(buf, length)
            out.append(buf.tobytes() if kind is Kind.DATA else None)
        return out

    # --- writing -----------------------------------------------------------------------------
    def fits(self, length: int, count: int = 1) -> int:
        """How many of ``count`` records of ``length`` bytes fit before the capacity."""
        room = self.capacity - self.offset
        return max(0, min(count, room // footprint(length)))

    def filemarks_fit(self, count: int) -> int:
        """How many of ``count`` filemarks fit before the capacity."""
        return max(0, min(count, (self.capacity - self.offset) // HEADER_LEN))

    def write_record(self, buf: DataBuffer, start: int, length: int, count: int = 1, *,
                     keep_whole: bool = False) -> None:
        """Write ``count`` records of ``length`` bytes from ``buf[start:]`` at the position
        and make them the end of the tape (what followed is cut off, as on a real
        tape). :class:`MediumFull` when they do not all fit: then nothing is written.
        A failed write leaves none of them, or with ``keep_whole`` the whole records
        before the failure, with :class:`RecordsKept` giving their bytes."""
        if length < 0 or count < 0 or start + length * count > len(buf):
            raise ValueError(f"{count} records of {length} bytes at {start} exceed the buffer")
        if count == 0:
            return
        n, off, each, size, before, lengths = self._records_at_position(length, count)
        carve = _Carver(buf.slices(start, length * count))
        try:
            self._put(n, off, _record_pieces(carve, lengths, before, count), size, before,
                      each if keep_whole else 0)
        except RecordsKept as e:  # the whole records before the failure stay
            count = e.done // each
            self._off.extend_progression(off, each, count)
            self._len.extend_progression(length, 0, count)
            self._eod, self._eod_prev = off + e.done, lengths[-1]
            self._pos = n + count
            raise
        self._off.extend_progression(off, each, count)
        self._len.extend_progression(length, 0, count)
        self._eod_prev = lengths[-1]
        self._pos = n + count

    def _records_at_position(self, length: int, count: int
                             ) -> tuple[int, int, int, int, int, list[int]]:
        """For ``count`` records of ``length`` bytes written at the position: the object
        number and file offset there, each record's and all their file bytes, the first
        header's previous length and a record's chunk lengths. :class:`MediumFull` when
        they do not all fit."""
        self._writable()
        n, off = self._pos, self.offset
        each = footprint(length)
        size = each * count
        if off + size > self.capacity:
            raise MediumFull(f"{size} bytes at {off} exceed the capacity {self.capacity}")
        return n, off, each, size, self._prev_len(n), _chunk_lengths(length)

    def write_records_from(self, source: FileSource, pos: int, length: int, count: int) -> None:
        """Write ``count`` records of ``length`` bytes at the position, laid out as
        :meth:`write_record` lays them out, their data copied by the kernel from
        ``source`` (from its byte ``pos``, :mod:`~lio_xcopy.devices.filecopy`); they
        end the tape. :class:`MediumFull` when they do not all fit: nothing is written.
        When the kernel does not copy (or a header write fails), none of them stays:
        the tape ends at the position, with what followed it cut off as a write cuts
        it, and :class:`~lio_xcopy.devices.filecopy.KernelCopyFailed` tells the
        caller to write them from a buffer instead."""
        if length <= 0 or count <= 0:
            raise ValueError(f"{count} records of {length} bytes")
        n, off, _, size, before, lengths = self._records_at_position(length, count)
        src_fd, src_off = source.file_range(pos, length * count)
        heads = []
        for prev in (before, lengths[-1]):  # the first record's headers, the others'
            chunk_heads = []
            for j, cur in enumerate(lengths):
                chunk_heads.append(HEADER.pack(cur, prev, _chunk_flags(j, len(lengths)), 0))
                prev = cur
            heads.append(b"".join(chunk_heads))
        self._kernel_put(n, off, size, before, length, count, lambda: interleave(
            src_fd, src_off, self._fd, off, heads[0], heads[1], lengths, count))

    def _kernel_put(self, n: int, off: int, size: int, before: int, length: int, count: int,
                    write: Callable[[], object]) -> None:
        """Make ``count`` records of ``length`` bytes at object ``n`` (file ``off``,
        ``size`` bytes, the first header's previous length ``before``) the end of the
        tape, ``write`` putting their bytes in the file; when it fails,
        :class:`KernelCopyFailed` with the tape ending at ``n`` again."""
        self._cut(n)
        self._eod, self._eod_prev = off, before
        try:
            write()
            if self._size > off + size:
                os.ftruncate(self._fd, off + size)
            self._size = off + size
        except (OSError, KernelCopyFailed) as e:
            self.unwrite(n, off, before)
            if isinstance(e, KernelCopyFailed):
                raise
            raise KernelCopyFailed(f"{self.path}: {e.strerror or e}") from e
        self._eod = off + size
        self.damage = None
        self._off.extend_progression(off, footprint(length), count)
        self._len.extend_progression(length, 0, count)
        self._eod_prev = _chunk_lengths(length)[-1]
        self._pos = n + count

    def write_records_copied(self, source: AwsTape, length: int, count: int
                             ) -> tuple[int, int, int]:
        """Write the next ``count`` records of ``source`` (records of ``length`` bytes
        laid out as :meth:`write_record` lays them, :meth:`equal_records`) at the
        position, copied by the kernel headers and all, the first header given this
        tape's previous length; they end the tape, and ``source``'s position does not
        move. :class:`MediumFull` when they do not all fit; when the kernel does not
        copy them, :class:`KernelCopyFailed` with none of them kept (the tape ends at
        the position). The caller checks the headers (:meth:`records_at` with
        ``check``) and :meth:`unwrite` them when they are chunked otherwise: this
        returns what :meth:`unwrite` takes."""
        if length <= 0 or count <= 0 or source.equal_records(length, count)[0] < count:
            raise ValueError(f"{count} records of {length} bytes are not next on {source}")
        n, off, _, size, before, lengths = self._records_at_position(length, count)
        first = source._off[source._pos]

        def write() -> None:
            copy_range(source._fd, first, self._fd, off, size)
            head = HEADER.pack(lengths[0], before, _chunk_flags(0, len(lengths)), 0)
            if os.pwrite(self._fd, head, off) != HEADER_LEN:
                raise OSError(errno.EIO, "short write of a chunk header")

        self._kernel_put(n, off, size, before, length, count, write)
        return n, off, before

    def unwrite(self, n: int, offset: int, before: int) -> None:
        """End the tape at object ``n`` (file ``offset``, whose header would carry
        previous length ``before``) again, the position there: undo a write made
        there."""
        self._cut(n)
        self._size = 1 << 62  # unknown: the next write truncates
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, offset)
            self._size = offset
        self._eod, self._eod_prev, self._pos = offset, before, n

    def pass_records(self, count: int) -> None:
        """Move the position past ``count`` objects (records another call copied)."""
        self._pos = min(self._pos + count, len(self._off))

    def records_at(self, offset: int, length: int, count: int, *, check: bool = False
                   ) -> FileData:
        """The data of the ``count`` records of ``length`` bytes whose first header is at
        file ``offset``, as :meth:`write_record` laid them out. With ``check``, showing
        it finds a chunk header other than such a layout has (a record chunked
        otherwise) and is :class:`KernelCopyFailed`."""
        lengths = tuple(_chunk_lengths(length))
        mapping = self._map.get() if compiled_helpers() is not None else None
        if not check:
            return FileData(self._fd, offset, lengths, count, HEADER_LEN, mapping=mapping)
        per = len(lengths)
        expect = b"".join(HEADER.pack(n, 0, _chunk_flags(j, per), 0)
                          for j, n in enumerate(lengths))
        return FileData(self._fd, offset, lengths, count, HEADER_LEN, expect,
                        _HEADER_MASK * per, mapping=mapping)

    def write_filemarks(self, count: int) -> None:
        """Write ``count`` filemarks at the position, which becomes the end of the tape."""
        if count <= 0:
            return
        self._writable()
        n, off = self._pos, self.offset
        if off + HEADER_LEN * count > self.capacity:
            raise MediumFull(f"{count} filemarks at {off} exceed the capacity {self.capacity}")
        before = self._prev_len(n)
        self._put(n, off, _filemark_pieces(before, count), HEADER_LEN * count, before)
        self._fms.extend_progression(n, 1, count)
        self._off.extend_progression(off, HEADER_LEN, count)
        self._len.extend_progression(-1, 0, count)
        self._eod_prev = 0
        self._pos = n + count

    def _put(
        self, n: int, off: int, pieces: Iterable[DataBuffer], size: int, before: int,
        keep: int = 0,
    ) -> None:
        """Write the ``size`` bytes of ``pieces`` one after the other at object ``n``
        (whose header would carry previous length ``before``) and end the file and the
        index after them. A failed write ends the tape at ``off``: what followed was
        lost to the write anyway; with ``keep`` (the bytes of one of several equal
        objects) after the whole objects written, raising :class:`RecordsKept` with
        their bytes when there are any."""
        self._cut(n)
        self._eod, self._eod_prev = off, before
        done = 0
        try:
            for data in pieces:
                try:
                    wrote = data.write_to(self._fd, off + done)
                except PartialTransfer as e:
                    done += e.done
                    raise
                done += wrote
                if wrote != len(data):
                    break
            if done != size:
                raise OSError(errno.EIO, f"short write: {done} of {size} bytes")
            if self._size > off + size:
                os.ftruncate(self._fd, off + size)
            self._size = off + size
        except BaseException as e:
            kept = done // keep * keep if keep and isinstance(e, OSError) else 0
            self._size = 1 << 62  # unknown: the next write truncates
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, off + kept)
                self._size = off + kept
            if kept and self._size == off + kept and isinstance(e, OSError):
                raise RecordsKept(e, kept) from e
            raise
        self._eod = off + size
        self.damage = None

    def _writable(self) -> None:
        if self.read_only:
            raise OSError(errno.EROFS, f"{self.path} is open read-only")

    def erase(self) -> None:
        """End the tape at the position (ERASE: what follows is gone)."""
        self._writable()
        n, off = self._pos, self.offset
        prev = self._prev_len(n)
        os.ftruncate(self._fd, off)
        self._cut(n)
        self._size = self._eod = off
        self._eod_prev = prev
        self.damage = None

    # --- positioning -------------------------------------------------------------------------
    def rewind(self) -> None:
        self._pos = 0

    def locate(self, n: int) -> bool:
        """Go to object ``n``; False (and at end of data) when the tape is shorter."""
        if n > len(self._off):
            self._pos = len(self._off)
            if self.damage:
                raise self.damage
            return False
        self._pos = n
        return True

    def space_to_eod(self) -> None:
        self._pos = len(self._off)
        if self.damage:
            raise self.damage

    def space_records(self, count: int) -> Spaced:
        """Space over ``count`` records (backward when negative). A filemark stops it:
        forward the position ends after the filemark, backward before it."""
        n = self._pos
        f = self._fms.bisect_left(n)
        if count >= 0:
            limit = self._fms[f] if f < len(self._fms) else len(self._off)
            if n + count <= limit:
                self._pos = n + count
                return Spaced(count, None)
            if limit < len(self._off):
                self._pos = limit + 1
                return Spaced(limit - n, Stop.FILEMARK)
            return self._hit_eod(limit - n)
        limit = self._fms[f - 1] + 1 if f else 0
        if n + count >= limit:
            self._pos = n + count
            return Spaced(-count, None)
        self._pos = limit - 1 if f else 0
        return Spaced(n - limit, Stop.FILEMARK if f else Stop.BOP)

    def space_filemarks(self, count: int) -> Spaced:
        """Space over ``count`` filemarks: forward ending after the last one, backward
        ending before it."""
        f = self._fms.bisect_left(self._pos)
        if count >= 0:
            if f + count <= len(self._fms):
                if count:
                    self._pos = self._fms[f + count - 1] + 1
                return Spaced(count, None)
            return self._hit_eod(len(self._fms) - f)
        if -count <= f:
            self._pos = self._fms[f + count]
            return Spaced(-count, None)
        self._pos = 0
        return Spaced(f, Stop.BOP)

    def _hit_eod(self, done: int) -> Spaced:
        self._pos = len(self._off)
        if self.damage:
            raise self.damage
        return Spaced(done, Stop.EOD)

    # --- the file ----------------------------------------------------------------------------
    def sync(self) -> None:
        if not self.read_only:
            os.fsync(self._fd)

    def close(self) -> None:
        self._map.close()
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    @property
    def closed(self) -> bool:
        return self._fd < 0
