"""The cartridge library behind a medium changer: a directory of AWSTAPE cartridges.

``<dir>/library.json`` (0600, written atomically) holds the elements and what is in
each: storage slots, import/export slots and drives, by barcode. Each cartridge is
``<dir>/<BARCODE>.aws`` (docs/tape-format.md). The changer LUN (in the daemon) and the
operator's CLI (another process) share the file under ``flock`` on ``<dir>/.lock``;
each re-reads it when it changed.

Element addresses follow the layout of common libraries (SMC-3 leaves them to the
device): the medium transport at 0001h, import/export elements from 0010h, data
transfer elements (drives) from 0100h, storage elements from 1000h.

Drives are tape LUNs of the same daemon: a drive registers with :meth:`Library.attach_drive`
when its LUN opens and gets the cartridge the state says it holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lio_xcopy.devices.base import LunIdentity
from lio_xcopy.errors import BackingStoreError, ConfigError
from lio_xcopy.files import write_atomic
from lio_xcopy.scsi.errors import HardwareError, IllegalRequest
from lio_xcopy.scsi.sense import Asc
from lio_xcopy.scsi.smc import ElementRange, ElementType

log = logging.getLogger(__name__)

STATE_FILE = "library.json"
LOCK_FILE = ".lock"
SUFFIX = ".aws"
FORMAT_VERSION = 1

TRANSPORT_FIRST = 0x0001
IMPORT_EXPORT_FIRST = 0x0010
DATA_TRANSFER_FIRST = 0x0100
STORAGE_FIRST = 0x1000
MAX_IMPORT_EXPORT = DATA_TRANSFER_FIRST - IMPORT_EXPORT_FIRST
MAX_DRIVES = STORAGE_FIRST - DATA_TRANSFER_FIRST
MAX_SLOTS = 0xFFFF - STORAGE_FIRST
DEFAULT_CAPACITY = 1 << 30

#: A volume identifier we accept: what LTO labels use (upper-case letters and digits)
#: plus ``_`` and ``-``, at most the 32 characters of a volume tag (SMC-3).
BARCODE = re.compile(r"[A-Z0-9][A-Z0-9_-]{0,31}")


class LibraryDrive(Protocol):
    """What the library needs of a tape LUN (``devices.tape.Tape``)."""

    identity: LunIdentity

    def load_cartridge(self, path: str, *, read_only: bool = False,
                       capacity: int | None = None) -> None: ...

    def unload_cartridge(self) -> str | None: ...

    @property
    def removal_prevented(self) -> bool: ...


def check_barcode(barcode: str) -> str:
    if not BARCODE.fullmatch(barcode):
        raise ConfigError(
            f"barcode {barcode!r}: use 1 to 32 upper-case letters, digits, '_' or '-' "
            "(e.g. L00001L8)"
        )
    return barcode


@dataclass(slots=True)
class Place:
    """A cartridge in an element: its barcode, the storage or import/export element it
    last came from (SValid and SOURCE STORAGE ELEMENT ADDRESS), and whether an operator
    put it there (ImpExp of an import/export element)."""

    barcode: str
    source: int | None = None
    by_operator: bool = False


@dataclass(slots=True)
class State:
    """What ``library.json`` holds."""

    slots: list[Place | None]
    ie: list[Place | None]
    drives: list[Place | None]
    capacity: int = DEFAULT_CAPACITY
    drive_luns: list[str | None] = field(default_factory=list)
    drive_serials: list[str | None] = field(default_factory=list)
    cartridges: dict[str, dict[str, Any]] = field(default_factory=dict)  # per barcode
    prevent_removal: bool = False
    inventory_changes: int = 0  # bumped when an operator changes the storage contents
    ie_accesses: int = 0  # bumped when an operator imports or exports

    def to_json(self) -> dict[str, Any]:
        def places(items: list[Place | None]) -> list[dict[str, Any] | None]:
            return [None if p is None else {"barcode": p.barcode, "source": p.source,
                                            "by_operator": p.by_operator} for p in items]

        return {
            "version": FORMAT_VERSION, "capacity": self.capacity,
            "slots": places(self.slots), "ie_slots": places(self.ie),
            "drives": places(self.drives), "drive_luns": self.drive_luns,
            "drive_serials": self.drive_serials, "cartridges": self.cartridges,
            "prevent_removal": self.prevent_removal,
            "inventory_changes": self.inventory_changes, "ie_accesses": self.ie_accesses,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        def places(items: list[dict[str, Any] | None]) -> list[Place | None]:
            return [None if p is None else Place(str(p["barcode"]), p.get("source"),
                                                 bool(p.get("by_operator")))
                    for p in items]

        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"format version {data.get('version')!r}")
        drives = places(data["drives"])
        n = len(drives)
        return cls(
            slots=places(data["slots"]), ie=places(data["ie_slots"]), drives=drives,
            capacity=int(data.get("capacity", DEFAULT_CAPACITY)),
            drive_luns=(list(data.get("drive_luns") or []) + [None] * n)[:n],
            drive_serials=(list(data.get("drive_serials") or []) + [None] * n)[:n],
            cartridges=dict(data.get("cartridges") or {}),
            prevent_removal=bool(data.get("prevent_removal")),
            inventory_changes=int(data.get("inventory_changes", 0)),
            ie_accesses=int(data.get("ie_accesses", 0)),
        )

    def lists(self) -> dict[ElementType, list[Place | None]]:
        return {ElementType.IMPORT_EXPORT: self.ie, ElementType.DATA_TRANSFER: self.drives,
                ElementType.STORAGE: self.slots}

    def where(self, barcode: str) -> tuple[ElementType, int] | None:
        for kind, items in self.lists().items():
            for i, p in enumerate(items):
                if p is not None and p.barcode == barcode:
                    return kind, i
        return None


@dataclass(frozen=True, slots=True)
class Location:
    """Where a cartridge is, for the operator."""

    barcode: str
    kind: ElementType
    index: int
    address: int

    @property
    def label(self) -> str:
        if self.kind is ElementType.DATA_TRANSFER:
            return f"drive {self.index}"
        if self.kind is ElementType.IMPORT_EXPORT:
            return f"import/export {self.index + 1}"
        return f"slot {self.index + 1}"


class Library:
    """One library directory; every read and change goes through the state file."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._state: State | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._mutex = threading.RLock()
        self._drives: dict[int, weakref.ref[LibraryDrive]] = {}

    # --- creation and the state file --------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], *, slots: int, ie_slots: int = 0,
               drives: int = 1, capacity: int = DEFAULT_CAPACITY,
               drive_luns: list[str] | None = None) -> Library:
        """A new, empty library (refused if ``path`` already holds one)."""
        if not 1 <= slots <= MAX_SLOTS:
            raise ConfigError(f"{slots} storage slots: use 1 to {MAX_SLOTS}")
        if not 0 <= ie_slots <= MAX_IMPORT_EXPORT:
            raise ConfigError(f"{ie_slots} import/export slots: use 0 to {MAX_IMPORT_EXPORT}")
        if not 1 <= drives <= MAX_DRIVES:
            raise ConfigError(f"{drives} drives: use 1 to {MAX_DRIVES}")
        if capacity < 1 << 20:
            raise ConfigError(f"cartridge capacity {capacity}: use at least 1M")
        luns = list(drive_luns or [])
        if len(luns) > drives:
            raise ConfigError(f"{len(luns)} drive LUNs named for {drives} drives")
        lib = cls(path)
        lib.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        with lib._locked():
            if (lib.path / STATE_FILE).exists():
                raise ConfigError(f"{lib.path} already holds a library: use it or choose "
                                  "another directory")
            names: list[str | None] = [*luns, *[None] * (drives - len(luns))]
            state = State([None] * slots, [None] * ie_slots, [None] * drives,
                          capacity=capacity, drive_luns=names, drive_serials=[None] * drives)
            lib._write(state)
        return lib

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Library:
        lib = cls(path)
        lib.state()  # fails now, with the operator's message, if it is not a library
        return lib

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._mutex:
            try:
                fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as e:
                raise ConfigError(f"{self.path}: cannot open the library: {e.strerror}; "
                                  "create it first (create_library)") from e
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _read(self) -> State:
        """The state, read again only when the file changed (under the lock)."""
        file = self.path / STATE_FILE
        try:
            st = os.stat(file)
        except FileNotFoundError as e:
            raise ConfigError(f"{self.path} is not a library (no {STATE_FILE}): create it "
                              "first") from e
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._state is None or stamp != self._stamp:
            try:
                self._state = State.from_json(json.loads(file.read_text()))
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise ConfigError(f"{file} is unreadable ({e}): restore it from a backup "
                                  "copy") from e
            self._stamp = stamp
        return self._state

    def _write(self, state: State) -> None:
        file = self.path / STATE_FILE
        write_atomic(file, (json.dumps(state.to_json(), indent=1) + "\n").encode())
        st = os.stat(file)
        self._state, self._stamp = state, (st.st_ino, st.st_mtime_ns, st.st_size)

    def state(self) -> State:
        """The current state (re-read if another process changed it)."""
        with self._locked():
            return self._read()

    @contextlib.contextmanager
    def change(self) -> Iterator[State]:
        """Read, let the caller change, write: one transaction under the lock. An
        exception leaves the file as it was (and the in-memory copy is read again)."""
        with self._locked():
            state = State.from_json(self._read().to_json())  # a private copy
            yield state
            self._write(state)

    def cartridge_path(self, barcode: str) -> Path:
        return self.path / f"{barcode}{SUFFIX}"

    # --- element addresses ----------------------------------------------------------------
    def ranges(self, state: State | None = None) -> dict[ElementType, ElementRange]:
        s = state or self.state()
        return {
            ElementType.MEDIUM_TRANSPORT: ElementRange(TRANSPORT_FIRST, 1),
            ElementType.IMPORT_EXPORT: ElementRange(IMPORT_EXPORT_FIRST, len(s.ie)),
            ElementType.DATA_TRANSFER: ElementRange(DATA_TRANSFER_FIRST, len(s.drives)),
            ElementType.STORAGE: ElementRange(STORAGE_FIRST, len(s.slots)),
        }

    def element(self, address: int, state: State) -> tuple[ElementType, int] | None:
        for kind, r in self.ranges(state).items():
            if address in r:
                return kind, address - r.first
        return None

    def address(self, kind: ElementType, index: int, state: State) -> int:
        return self.ranges(state)[kind].first + index

    def locations(self) -> list[Location]:
        s = self.state()
        out = []
        for kind, items in s.lists().items():
            for i, p in enumerate(items):
                if p is not None:
                    out.append(Location(p.barcode, kind, i, self.address(kind, i, s)))
        return out

    # --- drives -----------------------------------------------------------------------------
    def attach_drive(self, index: int, drive: LibraryDrive) -> None:
        """A drive's LUN opened: remember it and load the cartridge the state puts in it."""
        with self.change() as s:
            if not 0 <= index < len(s.drives):
                raise ConfigError(f"{self.path} has {len(s.drives)} drive(s); drive={index} "
                                  "does not exist")
            s.drive_luns[index] = drive.identity.name
            s.drive_serials[index] = drive.identity.unit_serial
            self._drives[index] = weakref.ref(drive)
            place = s.drives[index]
            if place is not None:
                try:
                    self._load(s, place.barcode, drive)
                except HardwareError as e:  # the LUN still serves, without a cartridge
                    log.error("%s: drive %d: %s", self.path, index, e)
        log.info("%s: drive %d is LUN %s", self.path, index, drive.identity.name)

    def drive(self, index: int) -> LibraryDrive | None:
        ref = self._drives.get(index)
        return ref() if ref else None

    def _load(self, s: State, barcode: str, drive: LibraryDrive) -> None:
        meta = s.cartridges.get(barcode, {})
        try:
            drive.load_cartridge(str(self.cartridge_path(barcode)),
                                 read_only=bool(meta.get("read_only")),
                                 capacity=int(meta.get("capacity", s.capacity)))
        except (ConfigError, BackingStoreError, OSError) as e:
            raise HardwareError(f"loading {barcode} into {drive.identity.name}: {e}") from e

    # --- moving media (SMC-3 MOVE MEDIUM) --------------------------------------------------
    def check_transport(self, address: int, state: State, byte: int = 2) -> None:
        """0 is the default medium transport (SMC-3 MOVE MEDIUM); anything else must be one."""
        if address and address not in self.ranges(state)[ElementType.MEDIUM_TRANSPORT]:
            raise IllegalRequest(Asc.INVALID_ELEMENT_ADDRESS, byte,
                                 message=f"{address:#06x} is not a medium transport")

    def _slot_of(self, address: int, state: State, byte: int) -> tuple[ElementType, int]:
        hit = self.element(address, state)
        if hit is None or hit[0] is ElementType.MEDIUM_TRANSPORT:
            raise IllegalRequest(Asc.INVALID_ELEMENT_ADDRESS, byte,
                                 message=f"no element can hold media at {address:#06x}")
        return hit

    def move(self, source: int, destination: int) -> str:
        """Move the cartridge at ``source`` to ``destination``; returns its barcode.
        Drives are unloaded and loaded as the cartridge leaves or arrives."""
        with self.change() as s:
            skind, si = self._slot_of(source, s, 4)
            dkind, di = self._slot_of(destination, s, 6)
            lists = s.lists()
            place = lists[skind][si]
            if place is None:
                raise IllegalRequest(Asc.MEDIUM_SOURCE_ELEMENT_EMPTY,
                                     message=f"element {source:#06x} is empty")
            if lists[dkind][di] is not None:
                raise IllegalRequest(Asc.MEDIUM_DESTINATION_ELEMENT_FULL,
                                     message=f"element {destination:#06x} is full")
            if dkind is ElementType.IMPORT_EXPORT and s.prevent_removal:
                raise IllegalRequest(Asc.MEDIUM_REMOVAL_PREVENTED,
                                     message="medium removal is prevented: nothing goes to "
                                     "the import/export slots")
            unloaded: LibraryDrive | None = None
            if skind is ElementType.DATA_TRANSFER:
                unloaded = self.drive(si)
                if unloaded is not None:
                    self._unload(unloaded)
            if dkind is ElementType.DATA_TRANSFER and (d := self.drive(di)) is not None:
                try:
                    self._load(s, place.barcode, d)
                except HardwareError:
                    if unloaded is not None:  # put it back where it was
                        self._load(s, place.barcode, unloaded)
                    raise
            lists[skind][si] = None
            if skind is not ElementType.DATA_TRANSFER:
                place.source = source  # the last storage (or import/export) element
            place.by_operator = False
            lists[dkind][di] = place
            log.info("%s: moved %s from %#06x to %#06x", self.path, place.barcode, source,
                     destination)
            return place.barcode

    def _unload(self, drive: LibraryDrive) -> None:
        if drive.removal_prevented:
            raise IllegalRequest(Asc.MEDIUM_REMOVAL_PREVENTED,
                                 message=f"{drive.identity.name} prevents medium removal")
        try:
            drive.unload_cartridge()
        except ConfigError as e:  # prevented in the meantime
            raise IllegalRequest(Asc.MEDIUM_REMOVAL_PREVENTED, message=str(e)) from e
        except (BackingStoreError, OSError) as e:
            raise HardwareError(f"unloading {drive.identity.name}: {e}") from e

    def set_prevent(self, *, prevent: bool) -> None:
        """The host's PREVENT ALLOW MEDIUM REMOVAL (SMC-3): no medium may leave the
        library, neither moved into an import/export slot nor exported by the operator;
        importing still works (as Quantum's and others' libraries behave)."""
        with self.change() as s:
            s.prevent_removal = prevent

    # --- the operator's side ------------------------------------------------------------------
    def _door(self, s: State) -> None:
        if s.prevent_removal:
            raise ConfigError("cannot export: a host locked the library door (PREVENT "
                              "MEDIUM REMOVAL); have it allow removal, then retry")

    def _new_cartridge(self, s: State, barcode: str, capacity: int | None,
                       *, read_only: bool) -> None:
        check_barcode(barcode)
        if s.where(barcode) is not None:
            raise ConfigError(f"{barcode} is already in the library: choose another barcode")
        s.cartridges[barcode] = {"capacity": capacity or s.capacity, "read_only": read_only}

    def create_cartridges(self, barcodes: list[str], *, import_export: bool = False,
                          capacity: int | None = None) -> list[Location]:
        """New blank cartridges, each in the first free storage slot (or import/export
        slot, as if an operator put them in the door)."""
        from lio_xcopy.devices.awstape import AwsTape

        if len(set(barcodes)) != len(barcodes):
            raise ConfigError("a barcode is given twice: each cartridge needs its own")
        with self.change() as s:
            slots = s.ie if import_export else s.slots
            free = [i for i, p in enumerate(slots) if p is None]
            if len(free) < len(barcodes):
                kind = "import/export" if import_export else "storage"
                raise ConfigError(f"{len(barcodes)} cartridge(s) but {len(free)} free {kind} "
                                  "slot(s): export or remove some first")
            for barcode, i in zip(barcodes, free, strict=False):
                self._new_cartridge(s, barcode, capacity, read_only=False)
                path = self.cartridge_path(barcode)
                if path.exists():
                    raise ConfigError(f"{path} exists but is not in the library: import it "
                                      "instead")
                AwsTape(path, s.cartridges[barcode]["capacity"], create=True).close()
                os.chmod(path, 0o600)
                slots[i] = Place(barcode, by_operator=import_export)
            if import_export:
                s.ie_accesses += 1
            else:
                s.inventory_changes += 1
        return [loc for loc in self.locations() if loc.barcode in barcodes]

    def import_cartridge(self, file: str | os.PathLike[str], barcode: str | None = None, *,
                         read_only: bool = False, copy: bool = False) -> Location:
        """An operator puts a cartridge file into the first free import/export slot; the
        file moves (or is copied) into the library as ``<BARCODE>.aws``."""
        from lio_xcopy.devices.awstape import AwsTape, TapeFormatError

        src = Path(file)
        barcode = barcode or src.name.removesuffix(SUFFIX)
        with self.change() as s:
            free = [i for i, p in enumerate(s.ie) if p is None]
            if not s.ie:
                raise ConfigError(f"{self.path} has no import/export slots")
            if not free:
                raise ConfigError("every import/export slot is full: move a cartridge into "
                                  "the library or export one first")
            self._new_cartridge(s, barcode, None, read_only=read_only)
            if not src.is_file():
                raise ConfigError(f"{src} is not a file: give the cartridge's AWSTAPE file")
            try:
                AwsTape.open_readonly(src).close()
            except (TapeFormatError, OSError) as e:
                raise ConfigError(f"{src} is not a readable AWSTAPE cartridge ({e})") from e
            dest = self.cartridge_path(barcode)
            if dest.exists() and not dest.samefile(src):
                raise ConfigError(f"{dest} exists: remove it or import under another barcode")
            s.cartridges[barcode]["capacity"] = max(s.capacity, src.stat().st_size)
            if not dest.exists():
                (shutil.copy2 if copy else shutil.move)(src, dest)
                os.chmod(dest, 0o600)
            s.ie[free[0]] = Place(barcode, by_operator=True)
            s.ie_accesses += 1
            return Location(barcode, ElementType.IMPORT_EXPORT, free[0],
                            self.address(ElementType.IMPORT_EXPORT, free[0], s))

    def export_cartridge(self, barcode: str, destination: str | os.PathLike[str]) -> Path:
        """An operator takes a cartridge out of an import/export slot; its file moves to
        the ``destination`` directory. Returns the file's new path."""
        dest_dir = Path(destination)
        if not dest_dir.is_dir():
            raise ConfigError(f"{dest_dir} is not a directory: give where the cartridge goes")
        with self.change() as s:
            self._door(s)
            at = s.where(barcode)
            if at is None:
                raise ConfigError(f"{barcode} is not in the library: `list` shows what is")
            kind, i = at
            if kind is not ElementType.IMPORT_EXPORT:
                label = Location(barcode, kind, i, 0).label
                raise ConfigError(f"{barcode} is in {label}, not in an import/export slot: "
                                  "move it there first (MOVE MEDIUM, e.g. mtx transfer)")
            target = dest_dir / f"{barcode}{SUFFIX}"
            if target.exists():
                raise ConfigError(f"{target} exists: choose another destination")
            shutil.move(self.cartridge_path(barcode), target)
            s.ie[i] = None
            s.cartridges.pop(barcode, None)
            s.ie_accesses += 1
            return target

    def strays(self) -> list[Path]:
        """Cartridge files in the directory that no element holds."""
        held = {loc.barcode for loc in self.locations()}
        return sorted(p for p in self.path.glob(f"*{SUFFIX}")
                      if p.name.removesuffix(SUFFIX) not in held)
