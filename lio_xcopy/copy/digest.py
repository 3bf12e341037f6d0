"""The digest of a copy's bytes (RECEIVE COPY DIGEST, vendor specific, docs/copy-digest.md),
taken on a thread of its own so that hashing runs beside the copy's reads and writes.

XXH3-128 (``xxhash``) by default, SHA-256 (``hashlib``) where the daemon is told to
(``lio-xcopy daemon --copy-digest sha256``): as ZFS does, a fast non-cryptographic
checksum catches accidental corruption, and a cryptographic one is there for those who
want tampering caught too. Both let go of the GIL while they hash a large buffer, so
the hashing of one chunk overlaps the I/O of the next. The bytes handed to
:meth:`BackgroundDigest.update` are hashed later, in order, from the caller's own
buffer: before the caller writes into that buffer again it waits
(:meth:`BackgroundDigest.wait`) for the :meth:`ticket` it took when the buffer's bytes
had all been handed over.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from typing import Any, Protocol

import xxhash

from lio_xcopy import threads
from lio_xcopy.devices.filecopy import FileData, xxh3_128
from lio_xcopy.scsi.xcopy import DigestAlgorithm

#: The copy manager's digest unless the daemon is told otherwise.
DEFAULT = DigestAlgorithm.XXH3_128

#: Seconds an idle digest thread waits for more bytes before it ends (a later update
#: starts another).
IDLE_SECONDS = 1.0
#: Bytes hashed at once on the caller's thread when nothing is pending.
INLINE = 16 * 1024


class Hash(Protocol):
    def update(self, data: Any, /) -> None: ...

    def digest(self) -> bytes: ...


def new(algorithm: DigestAlgorithm) -> Hash:
    """A fresh hash of ``algorithm``: XXH3-128 compiled with our file helpers where they
    are built (the same digest, and :meth:`FileData.hash_into` hashes into it with the
    GIL released), else the xxhash package's."""
    if algorithm is DigestAlgorithm.XXH3_128:
        compiled = xxh3_128()
        return compiled if compiled is not None else xxhash.xxh3_128()
    return hashlib.sha256()


class BackgroundDigest:
    """The digest (:data:`DEFAULT`, or ``algorithm``) of the views handed to
    :meth:`update`, in order, hashed on a worker."""

    def __init__(self, algorithm: DigestAlgorithm | str = DEFAULT):
        self.algorithm = (algorithm if isinstance(algorithm, DigestAlgorithm)
                          else DigestAlgorithm.named(algorithm))
        self._hash = new(self.algorithm)
        self._queue: deque[Any] = deque()
        self._cv = threading.Condition()
        self._submitted = 0
        self._done = 0
        self._worker: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def name(self) -> str:
        return self.algorithm.label

    def update(self, data: Any) -> None:
        """Hash ``data`` (a bytes-like object) after what came before. The caller keeps
        its bytes unchanged until :meth:`wait` for a later :meth:`ticket` returns."""
        with self._cv:
            if self._done == self._submitted and len(memoryview(data).cast("B")) < INLINE:
                self._hash.update(data)  # nothing pending: a handover would cost more
                return
            self._queue.append(data)
            self._submitted += 1
            if self._worker is None:
                self._worker = threads.start(self._run, "copy-digest")
            self._cv.notify_all()

    def update_now(self, *data: Any) -> None:
        """Hash each of ``data`` after what came before, on the caller's thread, before
        returning: for bytes the caller cannot keep unchanged."""
        with self._cv:
            while self._done < self._submitted:
                self._cv.wait()
            for piece in data:
                self._hash.update(piece)

    def update_file(self, data: FileData) -> None:
        """Hash the data a file holds (a kernel copy's, as its destination now holds
        it) after what came before, before returning: in one compiled call where it can
        (:meth:`FileData.hash_into`), else piece by piece through a mapping. A
        :class:`~lio_xcopy.devices.filecopy.KernelCopyFailed` from a header check
        leaves the digest as it was."""
        with self._cv:
            while self._done < self._submitted:
                self._cv.wait()
            if data.hash_into(self._hash):
                return
            with data.views() as views:
                for piece in views:
                    self._hash.update(piece)

    def ticket(self) -> int:
        """What has been handed over so far: :meth:`wait` for it to be hashed."""
        return self._submitted

    def wait(self, ticket: int) -> None:
        """Return once everything handed over before ``ticket`` was taken is hashed."""
        with self._cv:
            while self._done < ticket:
                self._cv.wait()

    def digest(self) -> bytes:
        """The digest of everything handed over (it waits for the worker)."""
        self.wait(self._submitted)
        if self._error is not None:
            raise self._error
        out: bytes = self._hash.digest()
        return out

    def hexdigest(self) -> str:
        return self.digest().hex()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    if not self._cv.wait(IDLE_SECONDS) and not self._queue:
                        self._worker = None
                        return
                data = self._queue.popleft()
            try:
                self._hash.update(data)
            except BaseException as e:  # a bug: digest() reports it, wait() must not hang
                self._error = e
            finally:
                data = None  # the caller's buffer is the caller's again
                with self._cv:
                    self._done += 1
                    self._cv.notify_all()
