"""The operator's values on a shell command line, checked into what the control layer
takes. Each refusal is a :class:`ConfigError` whose one line says what to type instead.

The rules are the saved file's (:mod:`lio_xcopy.control.config`), so whatever the shell
creates, ``saveconfig`` can save and ``restoreconfig`` can restore.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from lio_xcopy.control import config, validators
from lio_xcopy.devices.members import FOREIGN, is_designator_text
from lio_xcopy.errors import ConfigError
from lio_xcopy.handler_config import parse_size


def name(v: str, what: str = "name") -> str:
    if not validators.NAME.fullmatch(v):
        raise ConfigError(f"{what}={v!r} is not usable: use letters, digits, '_', '.' and '-' "
                          "(at most 128, starting with a letter or digit)")
    return v


def size(v: str, what: str) -> int:
    try:
        n = parse_size(v)
    except ConfigError as e:
        raise ConfigError(f"{what}={v!r} is not a size: use e.g. 512M or 10G") from e
    if n <= 0:
        raise ConfigError(f"{what}={v!r} is not a positive size: use e.g. 512M or 10G")
    return n


def number(v: str, what: str, lo: int, hi: int) -> int:
    if not (v.isascii() and v.isdigit()) or not lo <= int(v) <= hi:
        raise ConfigError(f"{what}={v!r}: use a whole number from {lo} to {hi}")
    return int(v)


def block_size(v: str) -> int:
    if v not in {str(b) for b in config.BLOCK_SIZES}:
        raise ConfigError(f"block_size={v!r} is not supported: use "
                          f"{', '.join(map(str, config.BLOCK_SIZES))}")
    return int(v)


def unit_serial(v: str | None) -> str | None:
    if v is None:
        return None
    if not validators.UUID.fullmatch(v):
        raise ConfigError(f"wwn={v!r} is not a unit serial: give a UUID such as "
                          "6d1f2c34-5b6a-4c8d-9e0f-123456789abc, or leave wwn= out")
    return v.lower()


def backing_path(v: str, *, block_ok: bool) -> Path:
    """An absolute path the kernel can carry, whose directory exists; a path under /dev
    must be an existing block device (we never create files there)."""
    if not v:
        raise ConfigError("file= is empty: give the backing file's path, e.g. "
                          "file=/srv/db0.img")
    if any(c in v for c in validators.KERNEL_UNSAFE):
        raise ConfigError(f"file={v!r}: commas, colons, semicolons and newlines cannot be "
                          "passed to the kernel; rename or link the file")
    p = Path(os.path.abspath(v))
    if p.exists():
        mode = p.stat().st_mode
        if stat.S_ISBLK(mode) and not block_ok:
            raise ConfigError(f"file={v}: a tape's cartridge must be a regular file; give "
                              "a file path")
        if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
            raise ConfigError(f"file={v} is neither a regular file nor a block device; "
                              "give another path")
        return p
    if p.parts[1:2] == ("dev",):
        raise ConfigError(f"file={v}: no such block device; check `lsblk` for its name")
    if not p.parent.is_dir():
        raise ConfigError(f"file={v}: directory {p.parent} does not exist; create it first "
                          "or give another path")
    return p


def library_path(v: str) -> Path:
    """A library's directory: an absolute path the kernel can carry, whose parent
    exists; an existing one must be a directory."""
    if not v or any(c in v for c in validators.KERNEL_UNSAFE):
        raise ConfigError(f"library={v!r}: give a directory path without commas, colons, "
                          "semicolons or newlines, e.g. library=/srv/lib")
    p = Path(os.path.abspath(v))
    if p.exists() and not p.is_dir():
        raise ConfigError(f"library={v} is not a directory: give the library's directory")
    if not p.parent.is_dir():
        raise ConfigError(f"library={v}: directory {p.parent} does not exist; create it "
                          "first or give another path")
    return p


def barcodes(v: str) -> list[str]:
    """``6`` (L00001L8 ... L00006L8) or ``L00001L8,L00002L8``."""
    from lio_xcopy.control import library
    from lio_xcopy.devices.library import check_barcode

    if v.isascii() and v.isdigit():
        return library.lto_barcodes(int(v))
    out = [x for x in v.split(",") if x]
    for b in out:
        try:
            check_barcode(b)
        except ConfigError as e:
            raise ConfigError(f"barcodes={v}: {e}") from e
    if len(set(out)) < len(out):
        raise ConfigError(f"barcodes={v} names a cartridge twice: give each once")
    return out


def existing_size(p: Path) -> int | None:
    """The size of an existing file or block device (None when absent)."""
    if not p.exists():
        return None
    with open(p, "rb") as f:
        return f.seek(0, os.SEEK_END)


def iqn(v: str, what: str, *, initiator: bool = False) -> str:
    """An iSCSI name in lower case (rtslib lower-cases it too); initiators may also be
    eui./naa. names."""
    s = v.strip().lower()
    if validators.is_iscsi_name(s, initiator=initiator):
        return s
    raise ConfigError(f"{what}={v!r} is not an iSCSI name: write it as "
                      "iqn.YYYY-MM.reversed.domain:unique, e.g. iqn.2003-01.org.example:t1")


def naa(v: str) -> str:
    s = v.strip().lower()
    if not validators.NAA.fullmatch(s):
        raise ConfigError(f"wwn={v!r} is not a loopback WWN: use naa. and 16 hex digits, "
                          "e.g. naa.5001405123456789, or leave wwn= out")
    return s


def ip(v: str) -> str:
    try:
        return validators.portal_ip(v)
    except ConfigError as e:  # the same check, told with the shell's parameter name
        raise ConfigError(f"ip_address={v!r} is not an IP address: give one of this host's, "
                          "or 0.0.0.0 (all IPv4) / :: (all IPv6)") from e


def chap_pair(user: str | None, password: str | None, what: str) -> tuple[str, str] | None:
    """Both or neither; 1-255 printable characters without spaces (RFC 7143 12.1.3)."""
    if user is None and password is None:
        return None
    if user is None or password is None:
        given, missing = ("userid", "password") if password is None else ("password", "userid")
        raise ConfigError(f"{what}{given}= needs {what}{missing}= too: give both or neither")
    for key, s in ((f"{what}userid", user), (f"{what}password", password)):
        if not validators.is_chap_text(s) or s == "NULL":
            raise ConfigError(f"{key}= must be 1 to {validators.CHAP_MAX} printable characters "
                              "without spaces (and not NULL); choose another")
    return user, password


def members(v: str) -> tuple[str, ...]:
    out: list[str] = []
    for m in (x.strip() for x in v.split(",")):
        if not (m.startswith("/") or m.startswith(FOREIGN) or is_designator_text(m)):
            name(m, "members")
        if m in out:
            raise ConfigError(f"members={v!r} lists {m!r} twice; keep one")
        out.append(m)
    if len(out) < 2:
        raise ConfigError(f"members={v!r}: a copy group needs at least two members, "
                          "e.g. members=db0,tape0")
    return tuple(out)


def boolean(v: str, what: str) -> bool:
    if v.lower() in ("true", "yes", "1", "on"):
        return True
    if v.lower() in ("false", "no", "0", "off"):
        return False
    raise ConfigError(f"{what}={v!r}: use true or false")


def human(n: int) -> str:
    """Bytes as targetcli prints them: 10.0GiB."""
    x = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if x < 1024 or unit == "PiB":
            return f"{n} bytes" if unit == "bytes" else f"{x:.1f}{unit}"
        x /= 1024
    raise AssertionError("unreachable")
