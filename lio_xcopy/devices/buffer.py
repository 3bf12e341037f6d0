"""A command's data buffer: the scatter list the transport hands a device.

Over TCMU the views are slices of the ring's mmap, so ``read_from``/``write_to`` move
bytes straight between the backing file and the kernel's data area (``os.preadv`` /
``os.pwritev``), with no intermediate copy.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence

IOV_MAX = 1024
_ZEROS = memoryview(bytes(64 * 1024))  # the source of DataBuffer.zero


class PartialTransfer(OSError):
    """The OSError of a vector transfer after ``done`` bytes had moved (the kernel
    returned a short count, then the failure): the caller can name the first byte lost."""

    def __init__(self, cause: OSError, done: int):
        super().__init__(cause.errno, cause.strerror)
        self.done = done


class DataBuffer:
    """A scatter list of writable or read-only memoryviews."""

    __slots__ = ("length", "views")

    def __init__(self, views: Iterable[memoryview] = ()):
        self.views: list[memoryview] = [v.cast("B") if v.format != "B" else v for v in views]
        self.length = sum(len(v) for v in self.views)

    @classmethod
    def of_views(cls, views: list[memoryview], length: int) -> DataBuffer:
        """A buffer over ``views``, byte views whose lengths add up to ``length``, as
        the transport makes them for every command: taken as they are."""
        buf = cls.__new__(cls)
        buf.views = views
        buf.length = length
        return buf

    @classmethod
    def of(cls, data: bytes | bytearray | memoryview) -> DataBuffer:
        """A one-piece buffer, for tests and small internal transfers."""
        return cls([memoryview(data)])

    @classmethod
    def allocate(cls, length: int) -> DataBuffer:
        return cls([memoryview(bytearray(length))])

    def __len__(self) -> int:
        return self.length

    def slices(self, start: int = 0, length: int | None = None) -> list[memoryview]:
        """The views covering ``[start, start + length)`` (the whole buffer: its own
        list, which callers do not change)."""
        if not start and (length is None or length >= self.length):
            return self.views
        end = self.length if length is None else min(self.length, start + length)
        out: list[memoryview] = []
        pos = 0
        for v in self.views:
            lo, hi = max(start, pos), min(end, pos + len(v))
            if lo < hi:
                out.append(v[lo - pos : hi - pos])
            pos += len(v)
            if pos >= end:
                break
        return out

    def sub(self, start: int, length: int | None = None) -> DataBuffer:
        return DataBuffer(self.slices(start, length))

    def read_from(self, fd: int, offset: int, start: int = 0, length: int | None = None) -> int:
        """Fill ``[start, start+length)`` from ``fd`` at ``offset``; returns bytes read
        (short only at end of file)."""
        return _vector_io(os.preadv, fd, self.slices(start, length), offset)

    def write_to(self, fd: int, offset: int, start: int = 0, length: int | None = None,
                 flags: int = 0) -> int:
        """Write ``[start, start+length)`` to ``fd`` at ``offset``; returns bytes written.
        ``flags`` are pwritev2's (``os.RWF_DSYNC``: durable before it returns)."""
        if flags:
            return _vector_io(lambda f, v, o: os.pwritev(f, v, o, flags), fd,
                              self.slices(start, length), offset)
        return _vector_io(os.pwritev, fd, self.slices(start, length), offset)

    def copy_in(self, data: bytes | bytearray | memoryview, start: int = 0) -> int:
        """Copy a small payload into the buffer; returns how much fitted."""
        src = memoryview(data)
        done = 0
        for v in self.slices(start, len(src)):
            v[:] = src[done : done + len(v)]
            done += len(v)
        return done

    def zero(self, start: int = 0, length: int | None = None) -> None:
        """Fill ``[start, start+length)`` with zeros, allocating nothing per call."""
        for v in self.slices(start, length):
            for off in range(0, len(v), len(_ZEROS)):
                n = min(len(_ZEROS), len(v) - off)
                v[off : off + n] = _ZEROS[:n]

    def tobytes(self, length: int | None = None) -> bytes:
        """A copy of the first ``length`` bytes: for parameter lists, not payloads."""
        return b"".join(bytes(v) for v in self.slices(0, length))


def _vector_io(call: Callable[[int, list[memoryview], int], int], fd: int,
               views: Sequence[memoryview], offset: int) -> int:
    if len(views) <= IOV_MAX:  # one call moves it all, as nearly always
        want = sum(map(len, views))
        n = call(fd, list(views), offset)
        if n == want or n == 0:
            return n
        views = _after(views, n)
        done = n
    else:
        done = 0
    views = list(views)
    while views:
        batch = views[:IOV_MAX]
        want = sum(len(v) for v in batch)
        try:
            n = call(fd, batch, offset + done)
        except OSError as e:
            if not done:
                raise
            raise PartialTransfer(e, done) from e
        done += n
        if n == want:
            views = views[IOV_MAX:]
            continue
        if n == 0:
            break
        views = _after(views, n)  # a short transfer: drop what was moved, carry on
    return done


def _after(views: Sequence[memoryview], n: int) -> list[memoryview]:
    """``views`` without their first ``n`` bytes."""
    rest: list[memoryview] = []
    skip = n
    for v in views:
        if skip >= len(v):
            skip -= len(v)
            continue
        rest.append(v[skip:])
        skip = 0
    return rest
