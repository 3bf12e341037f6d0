"""Backing files no new LUN may ruin.

A disk LUN writes blocks anywhere in its file and a tape LUN writes records after what
it can read, so a new LUN never gets a file another owner keeps bytes in: a file of a
cartridge library (its directory holds ``library.json`` and one AWSTAPE file per
cartridge), another LUN's file or device (the same path, the same inode through another
name or hard link, the same block device through another node), or the saved
configuration and its backups. A tape's file is empty, absent or an AWSTAPE cartridge
(``format`` overwrites anything else with a blank one); a disk never takes a file that
holds a cartridge. Each refusal is one :class:`ConfigError` line saying what to do.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lio_xcopy.control import config
from lio_xcopy.devices.awstape import ENDREC, HEADER, HEADER_LEN, NEWREC, TAPEMARK
from lio_xcopy.errors import ConfigError

#: LUN kinds whose path is a library directory, not a file of their own
LIBRARY_KINDS = ("changer", "library_drive")
#: how many AWSTAPE chunk headers :func:`holds_cartridge` follows before it believes
PROBE_CHUNKS = 64


@dataclass(frozen=True, slots=True)
class InUse:
    """A LUN that owns ``path``: its file or device, or (a changer or a library drive)
    its library directory. ``kind`` is ours (disk, tape, changer, library_drive,
    passthrough) or another backstore plugin's (fileio, block, ...)."""

    name: str
    kind: str
    path: Path


def holds_cartridge(path: str | os.PathLike[str]) -> bool:
    """Whether the file starts as an AWSTAPE cartridge: its first chunk headers (up to
    :data:`PROBE_CHUNKS`) chain, with at least one whole record or tapemark
    (docs/tape-format.md). A file that ends inside its last object still counts, as
    a drive's crash leaves it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        off = prev = objects = 0
        in_record = False
        for _ in range(PROBE_CHUNKS):
            if off >= size:
                break
            raw = os.pread(fd, HEADER_LEN, off)
            if len(raw) < HEADER_LEN:
                break  # a torn header at the end
            cur, prv, f1, f2 = HEADER.unpack(raw)
            if prv != prev or f2 or f1 & ~(NEWREC | TAPEMARK | ENDREC):
                return False
            if f1 & TAPEMARK:
                if f1 != TAPEMARK or cur or in_record:
                    return False
                objects += 1
            else:
                if f1 & NEWREC:
                    if in_record:
                        return False
                    in_record = True
                elif not in_record:
                    return False
                if f1 & ENDREC:
                    in_record = False
                    objects += 1
            prev, off = cur, off + HEADER_LEN + cur
        return objects > 0
    finally:
        os.close(fd)


def _stat(p: Path) -> os.stat_result | None:
    try:
        return os.stat(p)
    except OSError:
        return None


def same_file(a: Path, b: Path) -> bool:
    """The same file or device: one real path, one inode, or one block device."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    sa, sb = _stat(a), _stat(b)
    if sa is None or sb is None:
        return False
    if stat.S_ISBLK(sa.st_mode) and stat.S_ISBLK(sb.st_mode):
        return sa.st_rdev == sb.st_rdev
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _library_of(path: Path, libraries: Iterable[Path]) -> tuple[Path, str] | None:
    """The library directory ``path`` belongs to, and what it is there."""
    from lio_xcopy.devices.library import STATE_FILE, SUFFIX

    here = Path(os.path.realpath(path.parent))
    candidates = list(dict.fromkeys([*libraries, path.parent]))
    for lib in candidates:
        if not (lib / STATE_FILE).is_file() and lib not in libraries:
            continue
        if Path(os.path.realpath(lib)) == here:
            return lib, _role(path.name)
        st = _stat(path)
        if st is None or not lib.is_dir():
            continue
        for entry in lib.iterdir():  # a hard link to a cartridge elsewhere
            if entry.name.endswith(SUFFIX) or entry.name == STATE_FILE:
                se = _stat(entry)
                if se is not None and (se.st_dev, se.st_ino) == (st.st_dev, st.st_ino):
                    return lib, _role(entry.name)
    return None


def _role(name: str) -> str:
    from lio_xcopy.devices.library import STATE_FILE, SUFFIX

    if name.endswith(SUFFIX):
        return f"its cartridge {name.removesuffix(SUFFIX)}"
    if name == STATE_FILE:
        return "its state file"
    return "its directory"


def _saved_files(saved: Iterable[Path]) -> list[Path]:
    """The saved configuration files and their rotated backups (``.1`` ...)."""
    out = []
    for s in saved:
        out.append(s)
        if s.parent.is_dir():
            out += [p for p in s.parent.iterdir() if p.name.startswith(f"{s.name}.")
                    or p.name.startswith(f".{s.name}.")]
    return out


def check(kind: str, path: str | os.PathLike[str], in_use: Iterable[InUse], *,
          format: bool = False, saved: Iterable[Path] = (config.DEFAULT_PATH,)) -> None:  # noqa: A002
    """Refuse ``path`` as the backing file of a new ``kind`` LUN (disk or tape) when it
    belongs to someone else or holds what the LUN would destroy; see the module."""
    from lio_xcopy.devices.library import STATE_FILE

    p = Path(os.path.abspath(path))
    owners = list(in_use)
    st = _stat(p)
    if st is not None and stat.S_ISDIR(st.st_mode):
        what = "a library directory" if (p / STATE_FILE).is_file() else "a directory"
        raise ConfigError(f"file={p} is {what}: give a file"
                          + (" (a library's LUNs are /backstores/changer and "
                             "/backstores/library_drive)" if "library" in what else ""))
    for s in _saved_files(saved):
        if same_file(p, s):
            raise ConfigError(f"file={p} is the saved configuration ({s}): give the LUN "
                              "a file of its own")
    found = _library_of(p, [u.path for u in owners if u.kind in LIBRARY_KINDS])
    if found is not None:
        lib, role = found
        raise ConfigError(f"file={p} belongs to the library in {lib} ({role}): give a file "
                          f"outside {lib}; cartridges move with the changer or `lio-xcopy "
                          f"library {lib} export`")
    for u in owners:
        if u.kind not in LIBRARY_KINDS and same_file(p, u.path):
            raise ConfigError(f"file={p} is already the backing of {u.kind} {u.name!r}"
                              + ("" if str(u.path) == str(p) else f" (as {u.path})")
                              + ": give each LUN its own file")
    if st is None or (not st.st_size and stat.S_ISREG(st.st_mode)):
        return
    if kind == "tape" and stat.S_ISREG(st.st_mode) and not format \
            and not holds_cartridge(p):
        raise ConfigError(f"file={p} holds {st.st_size} bytes that are not an AWSTAPE "
                          "cartridge: give a new file, or add format=yes to overwrite it "
                          "with a blank cartridge")
    if kind == "disk" and holds_cartridge(p):
        raise ConfigError(f"file={p} holds a tape cartridge (AWSTAPE) that a disk would "
                          "overwrite: give another file, or serve it as a tape "
                          "(/backstores/tape)")
