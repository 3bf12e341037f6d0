"""Read-ahead for a copy from a block device: the pieces of a segment's byte range read
in order on a worker thread into a few buffers, so that reading piece N+1 overlaps
writing piece N (``os.preadv`` lets go of the GIL).

What the copy reports stays as it would be without it (SPC-4 6.4, 6.18, 6.24): the copy
takes each piece (:meth:`ReadAhead.next`) where it would have read it, so an error of
piece N+1 is raised there, after piece N was written, and a copy that stops early
simply does not take the rest. Only the segment's pieces are ever read; a read error
ends the reading. A buffer is read into again only once the copy has written its bytes
(:meth:`ReadAhead.done`) and the digest has hashed them (``digest.wait`` of the ticket
taken then, :mod:`lio_xcopy.copy.digest`). With depth 0 each piece is read on the
caller's thread when taken, as a copy run step by step by a test needs.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from lio_xcopy import threads
from lio_xcopy.devices.buffer import DataBuffer

#: pieces read ahead of the one being written, by default
READ_AHEAD = 2

#: reads ``n`` bytes at byte ``pos`` into the front of the buffer given
Read = Callable[[int, int, DataBuffer], object]
#: ``count`` byte views of ``size`` bytes each, nothing in them that is still to be read
Allocate = Callable[[int, int], list[memoryview]]


class ReadAhead:
    """The ``pieces`` (byte position, length; at most ``size`` bytes each) read with
    ``read``, handed out in order by :meth:`next`; ``depth`` of them read ahead on a
    thread of its own. Use it as a context manager: leaving it stops the thread."""

    def __init__(self, read: Read, pieces: Sequence[tuple[int, int]], size: int,
                 depth: int = READ_AHEAD, *, digest: Any = None, name: str = "copy-read",
                 allocate: Allocate | None = None):
        self._read = read
        self._pieces = list(pieces)
        self._digest = digest
        #: buffers to read into, each with the digest ticket to wait for first: one for
        #: the piece being written, ``depth`` read ahead; two at least, so that one is
        #: read into while the digest hashes the other (from ``allocate`` when given)
        count = max(depth + 1, 2)
        views = (allocate(count, size) if allocate is not None
                 else [memoryview(bytearray(size)) for _ in range(count)])
        self._free: deque[tuple[DataBuffer, int]] = deque(
            (DataBuffer.of_views([v], size), 0) for v in views)
        self._out: deque[DataBuffer] = deque()  # handed out, not yet done
        self._ready: deque[tuple[DataBuffer, DataBuffer | None, BaseException | None]] = deque()
        self._taken = 0
        self._closed = False
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        if depth > 0 and self._pieces:
            self._thread = threads.start(self._run, name)

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def next(self, into: DataBuffer | None = None) -> DataBuffer:
        """The next piece's bytes, or the error its read raised. Given ``into``, they are
        put there (and need no :meth:`done`); else they are in a buffer of the
        read-ahead until :meth:`done`."""
        pos, n = self._pieces[self._taken]
        self._taken += 1
        if self._thread is None:
            if into is not None:
                self._read(pos, n, into)
                return into
            buf, ticket = self._free.popleft()
            self._wait(ticket)
            data = buf.sub(0, n)
            try:
                self._read(pos, n, data)
            except BaseException:
                self._free.appendleft((buf, 0))
                raise
            self._out.append(buf)
            return data
        with self._cv:
            while not self._ready:
                self._cv.wait()
            buf, got, error = self._ready.popleft()
        if error is not None:
            raise error
        assert got is not None
        data = got
        if into is not None:
            _copy(data, into)
            self._give_back(buf, 0)
            return into
        self._out.append(buf)
        return data

    def done(self) -> None:
        """The oldest piece handed out has been moved (written, and handed to the
        digest): its buffer may be read into once the digest has hashed it."""
        buf = self._out.popleft()
        self._give_back(buf, self._digest.ticket() if self._digest is not None else 0)

    def close(self) -> None:
        """Stop reading ahead and wait for the thread to end (a read under way ends
        first)."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _give_back(self, buf: DataBuffer, ticket: int) -> None:
        with self._cv:
            self._free.append((buf, ticket))
            self._cv.notify_all()

    def _wait(self, ticket: int) -> None:
        if ticket and self._digest is not None:
            self._digest.wait(ticket)

    def _run(self) -> None:
        for pos, n in self._pieces:
            with self._cv:
                while not self._free and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                buf, ticket = self._free.popleft()
            self._wait(ticket)
            data = buf.sub(0, n)
            try:
                self._read(pos, n, data)
            except BaseException as e:  # raised where the copy takes this piece
                with self._cv:
                    self._ready.append((buf, None, e))
                    self._cv.notify_all()
                return
            with self._cv:
                self._ready.append((buf, data, None))
                self._cv.notify_all()


def _copy(data: DataBuffer, into: DataBuffer) -> None:
    """The bytes of ``data`` to the front of ``into``."""
    pos = 0
    for view in data.slices():
        pos += into.copy_in(view, pos)
