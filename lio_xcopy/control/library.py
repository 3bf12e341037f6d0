"""The operator's side of a cartridge library: create it, make, list, import and export
cartridges, and see where each one is.

Every function works on the library directory directly (the daemon notices and reports
UNIT ATTENTION to the hosts); errors are :class:`~lio_xcopy.errors.ConfigError` with one
line saying what to do. The LUNs come from :mod:`lio_xcopy.control.provision`
(``create_changer``, ``create_library_drive``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from lio_xcopy.devices.library import Library, Location, check_barcode
from lio_xcopy.errors import ConfigError

if TYPE_CHECKING:
    from lio_xcopy.control.backing import InUse


def lto_barcodes(count: int, first: int = 1, prefix: str = "L", media: str = "L8") -> list[str]:
    """``count`` LTO-style labels: ``L00001L8``, ``L00002L8``, ..."""
    if count < 0 or first < 0:
        raise ConfigError("barcode count and first number cannot be negative")
    width = 8 - len(prefix) - len(media)
    if width < 1 or first + count - 1 >= 10**width:
        raise ConfigError(f"prefix {prefix!r} and media {media!r} leave no room for "
                          f"{first + count - 1}: shorten them")
    return [check_barcode(f"{prefix}{n:0{width}d}{media}") for n in range(first, first + count)]


def create_library(directory: str | os.PathLike[str], *, slots: int, ie_slots: int = 0,
                   drives: int = 1, capacity: int = 1 << 30, barcodes: list[str] | None = None,
                   drive_luns: list[str] | None = None) -> Library:
    """A new library directory with blank cartridges ``barcodes`` in its first storage
    slots. Its LUNs: ``provision.create_changer`` and one
    ``provision.create_library_drive`` per drive."""
    wanted = list(barcodes or [])
    for b in wanted:
        check_barcode(b)
    if len(wanted) > slots:
        raise ConfigError(f"{len(wanted)} barcodes for {slots} slots: add slots or give fewer")
    lib = Library.create(directory, slots=slots, ie_slots=ie_slots, drives=drives,
                         capacity=capacity, drive_luns=drive_luns)
    if wanted:
        lib.create_cartridges(wanted)
    return lib


def create_cartridges(directory: str | os.PathLike[str], barcodes: list[str], *,
                      import_export: bool = False, capacity: int | None = None
                      ) -> list[Location]:
    """Blank cartridges in the first free storage slots (or the import/export slots)."""
    return Library.open(directory).create_cartridges(
        barcodes, import_export=import_export, capacity=capacity)


def list_cartridges(directory: str | os.PathLike[str]) -> list[Location]:
    """Every cartridge in the library and the element that holds it, by address."""
    return sorted(Library.open(directory).locations(), key=lambda loc: loc.address)


def where(directory: str | os.PathLike[str], barcode: str) -> Location:
    """The slot, import/export slot or drive that holds ``barcode``."""
    for loc in Library.open(directory).locations():
        if loc.barcode == barcode:
            return loc
    raise ConfigError(f"{barcode} is not in the library: `list` shows what is")


def import_cartridge(directory: str | os.PathLike[str], file: str | os.PathLike[str],
                     barcode: str | None = None, *, read_only: bool = False,
                     copy: bool = False) -> Location:
    """Put a cartridge file (AWSTAPE) into the first free import/export slot; it moves
    into the library (``copy=True`` leaves the original). The barcode defaults to the
    file's name without ``.aws``; ``read_only`` sets its write-protect tab. A file a
    running LUN serves is not moved from under it."""
    owner = None if copy else _lun_of(Path(file))
    if owner is not None:
        raise ConfigError(f"{file} is the backing of {owner.kind} {owner.name!r}: delete "
                          "that LUN first, or import a copy (--copy)")
    return Library.open(directory).import_cartridge(file, barcode, read_only=read_only,
                                                    copy=copy)


def _lun_of(file: Path) -> InUse | None:
    """The running LUN (or other backstore) whose file ``file`` is, when LIO is here."""
    from lio_xcopy.control import backing, provision, rtslib_adapter

    if not (rtslib_adapter.CONFIGFS / "target").is_dir():
        return None
    return next((u for u in provision.in_use() if u.kind not in backing.LIBRARY_KINDS
                 and backing.same_file(file, u.path)), None)


def export_cartridge(directory: str | os.PathLike[str], barcode: str,
                     destination: str | os.PathLike[str]) -> Path:
    """Take a cartridge out of its import/export slot into ``destination``."""
    return Library.open(directory).export_cartridge(barcode, destination)


def format_contents(directory: str | os.PathLike[str]) -> str:
    """A table for the operator: every element, full or empty, then stray files."""
    lib = Library.open(directory)
    s = lib.state()
    held = {loc.address: loc for loc in lib.locations()}
    lines = [f"library {lib.path}: {len(s.slots)} slots, {len(s.ie)} import/export, "
             f"{len(s.drives)} drive(s)" + (", door locked by a host" if s.prevent_removal
                                           else "")]
    for kind, items in s.lists().items():
        for i in range(len(items)):
            addr = lib.address(kind, i, s)
            loc = held.get(addr) or Location("", kind, i, addr)
            extra = ""
            if kind.name == "DATA_TRANSFER" and s.drive_luns[i]:
                extra = f"  (LUN {s.drive_luns[i]})"
            lines.append(f"  {loc.label:<18} {addr:#06x}  {loc.barcode or '-'}{extra}")
    for stray in lib.strays():
        lines.append(f"  not in any slot: {stray.name} (import it)")
    return "\n".join(lines)
