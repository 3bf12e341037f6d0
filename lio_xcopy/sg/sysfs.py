"""Which SCSI device a node is, and what crossed it: the kernel's sysfs view.

Every node of a SCSI device (``/dev/sgN``, ``/dev/sdX``, ``/dev/nstN``, a udev symlink)
or its H:C:T:L leads to its directory ``/sys/bus/scsi/devices/H:C:T:L``;
:func:`scsi_nodes` names all its nodes, :func:`io_counters` reads the kernel's counters
for it: bytes moved by the sd or st upper driver (``/sys/block/sdX/stat`` sectors x
512, ``/sys/class/scsi_tape/stN/stats/*_byte_cnt``) and the midlayer's command counts
(``iorequest_cnt``, ``iodone_cnt``, ``ioerr_cnt``), which include pass-through
commands. Data moved *by* ``SG_IO`` is in no byte counter of the kernel:
:class:`~lio_xcopy.sg.sgio.SgIoDevice` counts it itself.
"""

from __future__ import annotations

import os
import re
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from lio_xcopy.sg import _sg_h
from lio_xcopy.sg.transport import DeviceUnavailable, NotScsiDevice, SgIoError

NODE_HINT = "give /dev/sgN, /dev/sdX or /dev/nstN (`lsscsi -g` lists the SCSI devices)"


def check_node(path: str) -> os.stat_result:
    """``os.stat`` of a node that must be a character or block device."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NotScsiDevice(f"{path}: no such file or device node; {NODE_HINT}",
                            path) from None
    except OSError as e:
        raise DeviceUnavailable(f"{path}: {e.strerror}", path, e.errno) from None
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode)
                else "a regular file" if stat.S_ISREG(st.st_mode) else "not a device node")
        raise NotScsiDevice(f"{path} is {kind}, not a SCSI device node; {NODE_HINT}", path)
    return st


HCTL = re.compile(r"\d+:\d+:\d+:\d+")


@dataclass(frozen=True, slots=True)
class ScsiNodes:
    """A SCSI device as sysfs shows it: H:C:T:L and its nodes under ``dev_root``."""

    hctl: str
    sysfs: Path  # the SCSI device's directory (/sys/bus/scsi/devices/H:C:T:L)
    device_type: int | None
    sg: Path | None
    block: Path | None
    tape: Path | None  # the non-rewinding /dev/nstN


def _by_name(name: str, sysfs: Path) -> Path | None:
    """The class device directory of a node name (sg1, sdb, sdb1, nst0, st0l)."""
    if re.fullmatch(r"sg\d+", name):
        cand = sysfs / "class" / "scsi_generic" / name
    elif re.fullmatch(r"n?st\d+[lma]?", name):
        cand = sysfs / "class" / "scsi_tape" / name
    else:
        cand = sysfs / "class" / "block" / name
    return cand if cand.exists() else None


def _by_number(st: os.stat_result, sysfs: Path) -> Path | None:
    kind = "char" if stat.S_ISCHR(st.st_mode) else "block"
    cand = sysfs / "dev" / kind / f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return cand if cand.exists() else None


def max_transfer_bytes(path: str | os.PathLike[str]) -> int | None:
    """The largest transfer one command may carry through the sg node ``path``: the
    sg driver answers BLKSECTGET with its request queue's limit, in bytes (SG_IO refuses
    a larger one). None when the node cannot say (not an sg node, gone)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        got = _sg_h.ioctl(fd, _sg_h.BLKSECTGET, struct.pack("i", 0))
        value: int = struct.unpack("i", got)[0]
        return value if value > 0 else None
    except OSError:
        return None
    finally:
        os.close(fd)


def scsi_device_dir(path: str | os.PathLike[str], *, sysfs_root: str | os.PathLike[str] = "/sys",
                    dev_root: str | os.PathLike[str] = "/dev") -> Path:
    """The sysfs directory (named H:C:T:L) of the SCSI device behind a node.

    ``path`` is a node (``/dev/sg1``, ``/dev/sdb``, ``/dev/sdb1``, ``/dev/nst0``, or a
    udev symlink to one), a bare node name (``sg1``) or ``H:C:T:L``. An existing node is
    found by its device number (``/sys/dev/{char,block}/M:m``); a name under ``dev_root``
    that does not exist here is looked up by name (``/sys/class/...``)."""
    sysfs = Path(sysfs_root)
    spath = os.fspath(path)
    if HCTL.fullmatch(spath):
        d = sysfs / "bus" / "scsi" / "devices" / spath
        if d.exists():
            return d.resolve()
        raise NotScsiDevice(f"no SCSI device {spath} in {sysfs}/bus/scsi/devices", spath)
    cls_dir: Path | None = None
    if os.path.lexists(spath):
        real = os.path.realpath(spath)
        st = check_node(real)
        cls_dir = _by_number(st, sysfs) or _by_name(os.path.basename(real), sysfs)
    elif os.sep not in spath or os.path.dirname(os.path.abspath(spath)) == os.path.abspath(
        dev_root
    ):
        cls_dir = _by_name(os.path.basename(spath), sysfs)
        if cls_dir is None:
            raise NotScsiDevice(f"{spath}: no such device node; {NODE_HINT}", spath)
    if cls_dir is None:
        raise NotScsiDevice(f"{spath}: not found in {sysfs}; {NODE_HINT}", spath)
    cls_dir = cls_dir.resolve()
    if (cls_dir / "partition").exists():  # /dev/sdb1: the disk is the parent
        cls_dir = cls_dir.parent
    dev = cls_dir / "device"
    target = dev.resolve() if dev.exists() else None
    if target is None or not HCTL.fullmatch(target.name):
        raise NotScsiDevice(f"{spath} is a device of another kind (not SCSI: "
                            f"{cls_dir.name}); {NODE_HINT}", spath)
    return target


def scsi_nodes(path: str | os.PathLike[str], *, sysfs_root: str | os.PathLike[str] = "/sys",
               dev_root: str | os.PathLike[str] = "/dev") -> ScsiNodes:
    """Map any node of a SCSI device (or its H:C:T:L) to all of them: its sg node, its
    sd disk, its non-rewinding st tape."""
    d = scsi_device_dir(path, sysfs_root=sysfs_root, dev_root=dev_root)
    dev = Path(dev_root)

    def first(sub: str, pattern: str) -> str | None:
        try:
            names = sorted(p.name for p in (d / sub).iterdir())
        except OSError:
            return None
        return next((n for n in names if re.fullmatch(pattern, n)), None)

    sg, blk, st = first("scsi_generic", r"sg\d+"), first("block", r"sd[a-z]+"), first(
        "scsi_tape", r"st\d+")
    try:
        dtype: int | None = int((d / "type").read_text().strip())
    except (OSError, ValueError):
        dtype = None
    return ScsiNodes(
        hctl=d.name, sysfs=d, device_type=dtype,
        sg=dev / sg if sg else None, block=dev / blk if blk else None,
        tape=dev / f"n{st}" if st else None,
    )


@dataclass(frozen=True, slots=True)
class IoCounters:
    """The kernel's counters for one SCSI device, as the initiator sees it.

    ``read_bytes``/``written_bytes`` count what the sd driver (``/sys/block/sdX/stat``,
    sectors x 512) or the st driver (``stats/read_byte_cnt``, ``write_byte_cnt``) moved;
    ``source`` says which (``"sd"``, ``"st"``, or ``""`` for devices with neither).
    ``requests``/``completed``/``errors`` are the midlayer's ``iorequest_cnt``,
    ``iodone_cnt`` and ``ioerr_cnt``: every command dispatched to the device, SG_IO
    pass-through included. Subtract two snapshots for what crossed in between."""

    hctl: str
    source: str
    read_bytes: int
    written_bytes: int
    requests: int
    completed: int
    errors: int

    @property
    def total_bytes(self) -> int:
        return self.read_bytes + self.written_bytes

    def __sub__(self, before: IoCounters) -> IoCounters:
        if before.hctl != self.hctl:
            raise ValueError(f"counters of {before.hctl} and {self.hctl} do not subtract")
        return IoCounters(
            self.hctl, self.source, self.read_bytes - before.read_bytes,
            self.written_bytes - before.written_bytes, self.requests - before.requests,
            self.completed - before.completed, self.errors - before.errors,
        )

    def describe(self) -> str:
        via = f" via {self.source}" if self.source else ""
        return (f"{self.hctl}: read {_size(self.read_bytes)}, wrote "
                f"{_size(self.written_bytes)}{via}; {self.requests} SCSI commands "
                f"({self.errors} failed)")


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _read_count(path: Path) -> int:
    """A sysfs counter: decimal, or hex with 0x (the iostat counters)."""
    try:
        return int(path.read_text().strip(), 0)
    except FileNotFoundError:
        return 0
    except ValueError as e:
        raise SgIoError(f"{path}: not a counter ({e})") from None


def io_counters(path: str | os.PathLike[str], *, sysfs_root: str | os.PathLike[str] = "/sys",
                dev_root: str | os.PathLike[str] = "/dev") -> IoCounters:
    """The counters of the SCSI device behind ``path`` (any of its nodes, or H:C:T:L)."""
    d = scsi_device_dir(path, sysfs_root=sysfs_root, dev_root=dev_root)
    read = written = 0
    source = ""
    blocks = sorted((d / "block").glob("sd*")) if (d / "block").is_dir() else []
    tapes = sorted((d / "scsi_tape").glob("st*")) if (d / "scsi_tape").is_dir() else []
    tapes = [t for t in tapes if re.fullmatch(r"st\d+", t.name)] or tapes
    if blocks:
        try:
            stat_fields = (blocks[0] / "stat").read_text().split()
        except OSError as e:
            raise SgIoError(f"{blocks[0]}/stat: {e.strerror}") from None
        if len(stat_fields) < 7:
            raise SgIoError(f"{blocks[0]}/stat: {len(stat_fields)} fields, expected 11 or more")
        # Documentation/block/stat.rst: sectors are 512 bytes whatever the block size
        read, written = int(stat_fields[2]) * 512, int(stat_fields[6]) * 512
        source = "sd"
    elif tapes and (tapes[0] / "stats").is_dir():
        read = _read_count(tapes[0] / "stats" / "read_byte_cnt")
        written = _read_count(tapes[0] / "stats" / "write_byte_cnt")
        source = "st"
    return IoCounters(
        hctl=d.name, source=source, read_bytes=read, written_bytes=written,
        requests=_read_count(d / "iorequest_cnt"), completed=_read_count(d / "iodone_cnt"),
        errors=_read_count(d / "ioerr_cnt"),
    )
