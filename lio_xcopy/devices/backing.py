"""The file or block device behind a LUN, opened once for positioned I/O.

Devices read and write it with ``os.preadv``/``os.pwritev`` through
:class:`~lio_xcopy.devices.buffer.DataBuffer`; this class only opens, sizes, syncs
and closes it.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat
import struct
from types import TracebackType

from lio_xcopy.errors import BackingStoreError

FALLOC_FL_KEEP_SIZE = 0x01  # <linux/falloc.h>
FALLOC_FL_PUNCH_HOLE = 0x02
BLKZEROOUT = 0x127F  # <linux/fs.h> _IO(0x12, 127)


def _fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """fallocate(2) with ``mode`` (os.posix_fallocate has no mode)."""
    libc = ctypes.CDLL(None, use_errno=True)
    call = libc.fallocate
    call.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    call.restype = ctypes.c_int
    if call(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class BackingStore:
    """A regular file or a block device.

    ``create=True`` with ``size`` creates a missing regular file, or extends a shorter
    one, sparsely (it never shrinks one). A block device is opened ``O_EXCL`` unless
    ``exclusive=False``, so a mounted filesystem is never served as a LUN.
    """

    __slots__ = ("block_device", "fd", "path", "read_only", "size")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        read_only: bool = False,
        create: bool = False,
        size: int | None = None,
        exclusive: bool = True,
    ):
        self.path = os.fspath(path)
        self.read_only = read_only
        self.fd = -1
        if create and (size is None or size <= 0):
            raise BackingStoreError(f"{self.path}: create=True needs a size in bytes above 0")
        if create and read_only:
            raise BackingStoreError(f"{self.path}: cannot create a read-only backing store")
        if size is not None and not create:
            raise BackingStoreError(f"{self.path}: size= is only used with create=True")
        self.block_device = _is_block_device(self.path)
        flags = (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC
        if create and not self.block_device:
            flags |= os.O_CREAT
        if self.block_device and exclusive:
            flags |= os.O_EXCL
        try:
            self.fd = os.open(self.path, flags, 0o600)
        except OSError as e:
            raise BackingStoreError(_open_advice(self.path, e,
                                                 block_device=self.block_device)) from e
        try:
            self._setup(create=create, size=size)
        except BaseException:
            self.close()
            raise

    def _setup(self, *, create: bool, size: int | None) -> None:
        try:
            st = os.fstat(self.fd)
        except OSError as e:
            raise BackingStoreError(f"{self.path}: cannot stat: {e.strerror}") from e
        if stat.S_ISBLK(st.st_mode):
            self.block_device = True
            self.size = self._device_size()
            if create and size is not None and size > self.size:
                raise BackingStoreError(
                    f"{self.path}: block device holds {self.size} bytes, {size} were asked for;"
                    " use a bigger device or a smaller size"
                )
        elif stat.S_ISREG(st.st_mode):
            self.size = st.st_size
            if create and size is not None and size > self.size:
                try:
                    os.ftruncate(self.fd, size)
                except OSError as e:
                    raise BackingStoreError(
                        f"{self.path}: cannot extend to {size} bytes: {e.strerror};"
                        " free space on its filesystem or choose a smaller size"
                    ) from e
                self.size = size
        else:
            raise BackingStoreError(
                f"{self.path}: neither a regular file nor a block device; give a file or a"
                " /dev block device"
            )

    def _device_size(self) -> int:
        try:
            return os.lseek(self.fd, 0, os.SEEK_END)
        except OSError as e:
            raise BackingStoreError(
                f"{self.path}: cannot find the block device's size: {e.strerror}"
            ) from e

    def refresh_size(self) -> int:
        """Size again (after the file or device was grown outside us)."""
        if self.block_device:
            self.size = self._device_size()
        else:
            try:
                self.size = os.fstat(self.fd).st_size
            except OSError as e:
                raise BackingStoreError(f"{self.path}: cannot stat: {e.strerror}") from e
        return self.size

    def fsync(self, *, data_only: bool = False) -> None:
        """Make written data durable: ``fdatasync`` when ``data_only``, else ``fsync``.
        OSError propagates: the device decides which sense it becomes."""
        (os.fdatasync if data_only else os.fsync)(self.fd)

    def deallocate(self, offset: int, length: int) -> None:
        """Make ``[offset, offset + length)`` read as zeros, freeing its space where the
        backing can: a hole punched in a regular file (fallocate(2) PUNCH_HOLE with
        KEEP_SIZE), BLKZEROOUT on a block device. OSError propagates, EOPNOTSUPP where
        the filesystem has no holes."""
        if self.block_device:
            fcntl.ioctl(self.fd, BLKZEROOUT, struct.pack("=QQ", offset, length))
        else:
            _fallocate(self.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)

    def next_data(self, offset: int) -> int:
        """The first byte at or after ``offset`` that is not in a hole (lseek(2)
        SEEK_DATA); the size when only holes follow."""
        try:
            return os.lseek(self.fd, offset, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return self.size
            raise

    def next_hole(self, offset: int) -> int:
        """The first byte at or after ``offset`` in a hole (lseek(2) SEEK_HOLE); the end
        of the file counts as one."""
        try:
            return os.lseek(self.fd, offset, os.SEEK_HOLE)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return self.size
            raise

    def prefetch(self, offset: int, length: int) -> None:
        """Ask the kernel to read ``[offset, offset + length)`` into the page cache
        (posix_fadvise WILLNEED): a hint that does not wait for the reads."""
        os.posix_fadvise(self.fd, offset, length, os.POSIX_FADV_WILLNEED)

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> BackingStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "block device" if self.block_device else "file"
        mode = "ro" if self.read_only else "rw"
        return f"BackingStore({self.path!r}, {kind}, {getattr(self, 'size', '?')} bytes, {mode})"


def _is_block_device(path: str) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def _open_advice(path: str, e: OSError, *, block_device: bool) -> str:
    """What went wrong opening ``path`` and what the operator should do about it."""
    reason = e.strerror or str(e)
    if isinstance(e, FileNotFoundError):
        hint = "check the path, or pass create=True with a size to make a new file"
    elif isinstance(e, PermissionError):
        hint = "run with the rights to open it read-write, or serve it read-only"
    elif isinstance(e, IsADirectoryError):
        hint = "give a file or a block device, not a directory"
    elif block_device and e.errno == errno.EBUSY:
        hint = "it is mounted or held by another program; release it first"
    elif e.errno == errno.EROFS:
        hint = "its filesystem is read-only; serve it read-only or remount"
    else:
        hint = "check that the path names a file or block device this daemon may open"
    return f"cannot open backing store {path}: {reason}; {hint}"
