"""Bytes moved between two backing files by the kernel (``copy_file_range(2)``), and the
bytes of a file range seen through a read-only mapping.

A copy between our own file-backed LUNs need not pass its payload through the daemon:
``copy_file_range`` copies page cache to page cache (or shares extents where the file
system can), one copy where ``dd`` makes two. Where the kernel cannot copy between the
two files (a block device, two file systems that do not support it, an old kernel) or
the copy fails part way, :class:`KernelCopyFailed` tells the caller to move the bytes
itself, which reports a failure against the right device.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import importlib
import mmap
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, cast

from lio_xcopy.errors import LioXcopyError

#: ``LIO_XCOPY_FASTIO=0`` turns the compiled helpers off (:func:`interleave` then loops
#: in Python), as it turns off the ring's compiled path
ENV = "LIO_XCOPY_FASTIO"


class FileSource(Protocol):
    """A copy source whose bytes lie in a file the kernel can copy from."""

    def file_range(self, pos: int, n: int) -> tuple[int, int]:
        """The open file (descriptor) and the offset in it of the source's bytes
        ``[pos, pos + n)``, for a kernel copy made now; :class:`KernelCopyFailed`
        where there is none."""
        ...


class KernelSink(Protocol):
    """A copy destination whose blocks lie in a file the kernel can write."""

    @property
    def block_size(self) -> int: ...

    def kernel_write(self, lba: int, count: int
                     ) -> contextlib.AbstractContextManager[tuple[int, int, Callable[[], None]]]:
        """The open file and offset of blocks ``[lba, lba + count)`` for the kernel to
        write in the ``with`` block, and what to call once they are written (it makes
        them durable where the device must); :class:`KernelCopyFailed` where there is
        none."""
        ...


class KernelCopyFailed(LioXcopyError):
    """The kernel did not copy the range: the caller moves those bytes itself."""


def copy_range(src_fd: int, src_offset: int, dst_fd: int, dst_offset: int, n: int) -> None:
    """Copy ``n`` bytes from ``src_fd`` at ``src_offset`` to ``dst_fd`` at ``dst_offset``
    with ``copy_file_range``; the file positions do not move. A failure, or the source
    ending first, is :class:`KernelCopyFailed` (part of the range may have been copied)."""
    done = 0
    while done < n:
        try:
            got = os.copy_file_range(src_fd, dst_fd, n - done, src_offset + done,
                                     dst_offset + done)
        except OSError as e:
            raise KernelCopyFailed(f"copy_file_range: {e.strerror or e}") from e
        if got <= 0:
            raise KernelCopyFailed(f"copy_file_range: the source ended after {done} of "
                                   f"{n} bytes")
        done += got


@contextlib.contextmanager
def mapped(fd: int, offset: int, length: int) -> Iterator[memoryview]:
    """The ``length`` bytes of file ``fd`` at ``offset``, mapped read-only for the
    ``with`` block (the caller keeps no view of them past it). An OSError when the
    file cannot be mapped."""
    base = offset - offset % mmap.ALLOCATIONGRANULARITY
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    m = mmap.mmap(fd, length + offset - base, flags=flags, prot=mmap.PROT_READ,
                  offset=base)
    whole = memoryview(m)
    view = whole[offset - base:]
    try:
        yield view
    finally:
        view.release()
        whole.release()
        with contextlib.suppress(BufferError):  # a view kept by mistake: unmapped with it
            m.close()


@dataclasses.dataclass(frozen=True)
class FileData:
    """Data as a file holds it, shown to a copy's digest: ``count`` records at ``offset``
    of ``fd``, each chunk ``j`` a ``header_len``-byte header and then ``lengths[j]``
    bytes of data (:meth:`span`: a plain range, no headers). With ``expect`` (and
    ``mask``, of the same size: a header for each chunk of one record) each chunk's
    header, masked, must be its ``expect``; else the data is not as the caller laid it
    (a record chunked otherwise) and showing it is :class:`KernelCopyFailed`."""

    fd: int
    offset: int
    lengths: tuple[int, ...]
    count: int = 1
    header_len: int = 0
    expect: bytes = b""
    mask: bytes = b""
    #: a read-only mapping of the whole file (:class:`FileMap`) to hash from, if any
    mapping: mmap.mmap | None = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def span(cls, fd: int, offset: int, n: int) -> FileData:
        """The ``n`` bytes of ``fd`` at ``offset``."""
        return cls(fd, offset, (n,))

    @property
    def size(self) -> int:
        """The bytes the records take in the file, headers and all."""
        return (self.header_len * len(self.lengths) + sum(self.lengths)) * self.count

    @property
    def nbytes(self) -> int:
        """The data bytes, headers left out."""
        return sum(self.lengths) * self.count

    @contextlib.contextmanager
    def views(self) -> Iterator[list[memoryview]]:
        """Read-only views of the data pieces in order, valid for the ``with`` block:
        mapped, or read where the file cannot be mapped (an OSError where it cannot be
        read either)."""
        size = self.size
        with contextlib.ExitStack() as stack:
            try:
                whole = stack.enter_context(mapped(self.fd, self.offset, size))
            except (OSError, ValueError):  # a file that cannot be mapped: read it
                data = os.pread(self.fd, size, self.offset)
                if len(data) < size:
                    raise OSError(errno.EIO, f"short read of {size} bytes at {self.offset}"
                                  ) from None
                whole = memoryview(data)
            views = []
            at, per = 0, len(self.lengths)
            try:
                for i in range(self.count * per):
                    j = i % per
                    if self.expect:
                        self._check(whole, at, j, i)
                    at += self.header_len
                    views.append(whole[at : at + self.lengths[j]])
                    at += self.lengths[j]
                yield views
            finally:
                for v in views:
                    v.release()
                views.clear()

    def check(self) -> None:
        """Check the headers (as :meth:`views` does) without showing the data."""
        if self.expect:
            with self.views():
                pass

    def _check(self, whole: memoryview, at: int, j: int, i: int) -> None:
        hl = self.header_len
        want, mask = self.expect[j * hl : (j + 1) * hl], self.mask[j * hl : (j + 1) * hl]
        have = int.from_bytes(whole[at : at + hl], "little")
        if have & int.from_bytes(mask, "little") != int.from_bytes(want, "little"):
            raise KernelCopyFailed(f"the record at chunk {i} is chunked otherwise")

    def hash_into(self, hasher: Any) -> bool:
        """Hash the data into ``hasher`` in one compiled call that maps the file, checks
        the headers and hashes with the GIL released once; True when done. False,
        nothing hashed, where ``hasher`` is not the compiled :func:`xxh3_128` or the
        file cannot be mapped: hash :meth:`views` then."""
        module: Any = compiled_helpers()
        kind = getattr(module, "xxh3_128", None)
        if kind is None or not isinstance(hasher, kind):
            return False
        layout = (self.offset, self.header_len, self.lengths, self.count, self.expect,
                  self.mask)
        try:
            if self.mapping is not None and self.offset + self.size <= len(self.mapping):
                bad: int = module.hash_mapped(hasher, self.mapping, *layout)
            else:
                bad = module.hash_file(hasher, self.fd, *layout)
        except (OSError, ValueError):  # a file that cannot be mapped, or one closed
            return False
        if bad >= 0:
            raise KernelCopyFailed(f"the record at chunk {bad} is chunked otherwise")
        return True


class FileMap:
    """A read-only shared mapping of a whole file, up to ``length`` bytes, made when first
    asked for and kept: hashing a copy's data through it costs no ``mmap`` and
    ``munmap`` per chunk (each takes the process's address-space lock for writing, and
    so serializes every copy thread). Only bytes within the file may be read through
    it, by a caller that keeps the file from shrinking meanwhile."""

    def __init__(self, fd: int, length: int):
        self._fd, self._length = fd, length
        self._map: mmap.mmap | None = None
        self._failed = False

    def get(self) -> mmap.mmap | None:
        """The mapping; None where the file cannot be mapped."""
        if self._map is None and not self._failed and self._length > 0:
            try:
                self._map = mmap.mmap(self._fd, self._length, flags=mmap.MAP_SHARED,
                                      prot=mmap.PROT_READ)
            except (OSError, ValueError, OverflowError):
                self._failed = True
        return self._map

    def close(self) -> None:
        """Unmap (a hash in progress holds it until it ends)."""
        m, self._map = self._map, None
        if m is not None:
            with contextlib.suppress(BufferError):
                m.close()


def xxh3_128() -> Any | None:
    """A fresh compiled XXH3-128 hash (the digest ``xxhash.xxh3_128`` gives), whose data
    :meth:`FileData.hash_into` hashes without the GIL; None where not built."""
    kind = getattr(compiled_helpers(), "xxh3_128", None)
    return None if kind is None else kind()


#: ``interleave(src_fd, src_off, dst_fd, dst_off, first, rest, lengths, count)``
Interleave = Callable[[int, int, int, int, bytes, bytes, Sequence[int], int], None]
#: ``deinterleave(src_fd, src_off, dst_fd, dst_off, header_len, lengths, count)``
Deinterleave = Callable[[int, int, int, int, int, Sequence[int], int], None]


@functools.cache
def compiled_helpers() -> object | None:
    """``_filecopy`` (``_filecopy.c``), or None: not built, or turned off."""
    if os.environ.get(ENV, "1") == "0":
        return None
    try:
        return importlib.import_module("lio_xcopy.devices._filecopy")
    except ImportError:
        return None


def compiled_interleave() -> Interleave | None:
    """The compiled :func:`interleave`, or None."""
    module = compiled_helpers()
    return cast(Interleave, getattr(module, "interleave", None))


def compiled_deinterleave() -> Deinterleave | None:
    """The compiled :func:`deinterleave`, or None."""
    module = compiled_helpers()
    return cast(Deinterleave, getattr(module, "deinterleave", None))


def interleave(src_fd: int, src_offset: int, dst_fd: int, dst_offset: int, first: bytes,
               rest: bytes, lengths: Sequence[int], count: int) -> None:
    """Write ``count`` records at ``dst_offset``: each chunk ``j`` a header (the j-th
    of the equal-sized headers in ``first`` for the first record, in ``rest`` for the
    others) followed by ``lengths[j]`` bytes of ``src_fd``, taken in order from
    ``src_offset`` and copied by the kernel. An OSError or :class:`KernelCopyFailed` on a
    failure, with part of it written; the file positions do not move. Compiled where
    built (one call, the GIL released throughout), else a loop of system calls."""
    fast = compiled_interleave()
    if fast is not None:
        fast(src_fd, src_offset, dst_fd, dst_offset, first, rest, lengths, count)
        return
    size = len(first) // len(lengths)
    at, pos = dst_offset, src_offset
    for i in range(count):
        heads = first if i == 0 else rest
        for j, n in enumerate(lengths):
            if os.pwrite(dst_fd, heads[j * size : (j + 1) * size], at) != size:
                raise OSError(errno.EIO, "short write of a header")
            copy_range(src_fd, pos, dst_fd, at + size, n)
            at += size + n
            pos += n


def deinterleave(src_fd: int, src_offset: int, dst_fd: int, dst_offset: int, header_len: int,
                 lengths: Sequence[int], count: int) -> None:
    """The data of ``count`` records laid out as :func:`interleave` lays them (each chunk
    ``header_len`` bytes of header, then ``lengths[j]`` bytes of data) at
    ``src_offset``, copied by the kernel one after the other to ``dst_offset``. An
    OSError or :class:`KernelCopyFailed` on a failure, with part of it written."""
    fast = compiled_deinterleave()
    if fast is not None:
        fast(src_fd, src_offset, dst_fd, dst_offset, header_len, lengths, count)
        return
    pos, at = src_offset, dst_offset
    for _ in range(count):
        for n in lengths:
            pos += header_len
            if n:
                copy_range(src_fd, pos, dst_fd, at, n)
            pos += n
            at += n
