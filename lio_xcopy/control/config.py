"""The saved configuration of a lio-xcopy target: one JSON file, versioned.

It holds the backstores (disks, tapes), their loopback exports, the iSCSI targets and
the copy groups of the copy access policy. :func:`load` checks all of it and refuses a
bad file with one line naming the file, the JSON path of the field and what to do;
:func:`save` writes it atomically, mode 0600, keeping rotated backups; :func:`diff`
lists what a restore would create, change or remove, so restoring twice is harmless.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lio_xcopy import files
from lio_xcopy.devices.members import FOREIGN, foreign_designator
from lio_xcopy.errors import ConfigError
from lio_xcopy.handler_config import parse_size
from lio_xcopy.scsi.spc import naa_ieee_registered_extended
from lio_xcopy.sg.resolve import StableName

SCHEMA_VERSION = 2
#: versions :func:`loads` still reads (1: ``loopback`` was ``{name: lun_id}``)
READABLE_VERSIONS = (1, 2)
DEFAULT_PATH = Path("/etc/lio-xcopy/saveconfig.json")
BLOCK_SIZES = (512, 1024, 2048, 4096)
MIN_TAPE_CAPACITY = 1 << 20
MAX_LUN = 65535  # rtslib's LUN and mapped-LUN limit
DEFAULT_ISCSI_PORT = 3260

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_UUID = re.compile(r"[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")
# rtslib's tests (utils.normalize_wwn), in their lower-case form
_IQN = re.compile(r"iqn\.[0-9]{4}-(0[1-9]|1[0-2])\.[^\s_]*\.[^\s_]*")
_EUI = re.compile(r"eui\.[0-9a-f]{16}")
_NAA = re.compile(r"naa\.[125c-f][0-9a-f]{15}")
_DESIGNATOR = re.compile(r"(naa|eui)\.([0-9a-f]{16}|[0-9a-f]{32})")
_ATTRIBUTE = re.compile(r"[a-z][a-z0-9_]*")
_KERNEL_UNSAFE = ",:;\n\0"  # HandlerConfig.format refuses these in a path
_CHAP_MAX = 255


# --- the model ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DiskConfig:
    """A disk LUN over a file or block device; ``wwn`` is its unit serial (a UUID)."""

    name: str
    path: Path
    size: int
    block_size: int = 512
    wwn: str | None = None


@dataclass(frozen=True, slots=True)
class TapeConfig:
    """A tape drive and its cartridge file; ``wwn`` is its unit serial (a UUID)."""

    name: str
    path: Path
    capacity: int
    wwn: str | None = None


@dataclass(frozen=True, slots=True)
class ChangerConfig:
    """The medium changer (SMC-3) LUN of a library directory."""

    name: str
    library: Path
    wwn: str | None = None


@dataclass(frozen=True, slots=True)
class LibraryDriveConfig:
    """Tape drive number ``drive`` of a library: its cartridges come from the changer."""

    name: str
    library: Path
    drive: int
    wwn: str | None = None


@dataclass(frozen=True, slots=True)
class PassThroughConfig:
    """A LUN forwarding to a device of the target host: ``device`` is its stable name
    (``/dev/tape/by-id/...`` or ``naa.<hex>``), ``designator`` the one it had when the
    LUN was made (a restore refuses a device that no longer carries it)."""

    name: str
    device: str
    designator: str | None = None
    wwn: str | None = None


@dataclass(frozen=True, slots=True)
class LoopbackTarget:
    """A tcm_loop target and its LUNs (LUN id -> backstore name). ``wwn`` None means
    the first loopback target, created when there is none."""

    wwn: str | None
    luns: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Portal:
    """An iSCSI network portal; ``netns`` names the network namespace it listens in
    (``ip netns``), None for the host's own."""

    ip: str
    port: int = DEFAULT_ISCSI_PORT
    netns: str | None = None


@dataclass(frozen=True, slots=True)
class Chap:
    """A CHAP user name and secret."""

    userid: str
    password: str = field(repr=False)  # never in a log line or a traceback


@dataclass(frozen=True, slots=True)
class MappedLun:
    """The LUN an initiator sees (``mapped_lun``) for a LUN of its TPG (``tpg_lun``)."""

    mapped_lun: int
    tpg_lun: int
    write_protect: bool = False


@dataclass(frozen=True, slots=True)
class Acl:
    """One initiator's access to a TPG; ``mutual_chap`` authenticates the target to it."""

    initiator: str
    mapped_luns: tuple[MappedLun, ...] = ()
    chap: Chap | None = None
    mutual_chap: Chap | None = None


@dataclass(frozen=True, slots=True)
class Tpg:
    """A target portal group: portals, LUNs (LUN id -> backstore name), ACLs, attributes."""

    tag: int
    enable: bool = True
    portals: tuple[Portal, ...] = ()
    luns: dict[int, str] = field(default_factory=dict)
    acls: tuple[Acl, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def authentication(self) -> bool:
        """Whether initiators must log in with CHAP."""
        return self.attributes.get("authentication", "0") == "1"


@dataclass(frozen=True, slots=True)
class IscsiTarget:
    """An iSCSI target and its portal groups."""

    iqn: str
    tpgs: tuple[Tpg, ...] = ()


@dataclass(frozen=True, slots=True)
class SavedConfig:
    """Everything a restore recreates. ``copy_groups`` maps a group name to the backstore
    names that may copy to each other, and the foreign devices (``foreign:naa.<hex>``,
    by designator) their copies may name."""

    disks: tuple[DiskConfig, ...] = ()
    tapes: tuple[TapeConfig, ...] = ()
    loopback: tuple[LoopbackTarget, ...] = ()
    iscsi: tuple[IscsiTarget, ...] = ()
    copy_groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    changers: tuple[ChangerConfig, ...] = ()
    library_drives: tuple[LibraryDriveConfig, ...] = ()
    passthrough: tuple[PassThroughConfig, ...] = ()

    @property
    def backstores(self) -> tuple[Backstore, ...]:
        """Every LUN: disks, tapes, changers, library drives and pass-through LUNs."""
        return (*self.disks, *self.tapes, *self.changers, *self.library_drives,
                *self.passthrough)

    def loopback_luns(self) -> dict[str, tuple[str | None, int]]:
        """Backstore name -> (loopback target WWN, LUN id), first export of each."""
        out: dict[str, tuple[str | None, int]] = {}
        for t in self.loopback:
            for lun_id, name in sorted(t.luns.items()):
                out.setdefault(name, (t.wwn, lun_id))
        return out

    @property
    def has_secrets(self) -> bool:
        """Whether any ACL holds a CHAP password."""
        return any(c is not None and c.password
                   for t in self.iscsi for g in t.tpgs for a in g.acls
                   for c in (a.chap, a.mutual_chap))


Backstore = DiskConfig | TapeConfig | ChangerConfig | LibraryDriveConfig | PassThroughConfig


#: the kinds of :class:`Change` that are backstores (keyed ``("backstore", name)``)
BACKSTORE_KINDS = ("disk", "tape", "changer", "library_drive", "passthrough")


def kind_of(b: Backstore) -> str:
    """``disk``, ``tape``, ``changer``, ``library_drive`` or ``passthrough``."""
    return {DiskConfig: "disk", TapeConfig: "tape", ChangerConfig: "changer",
            LibraryDriveConfig: "library_drive", PassThroughConfig: "passthrough"}[type(b)]


# --- reading ---------------------------------------------------------------------------------
class _Object(dict[str, Any]):
    """A JSON object that remembers keys it saw twice (json keeps only the last)."""

    duplicates: tuple[str, ...] = ()


def _pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    seen: set[str] = set()
    twice: list[str] = []
    for k, _ in pairs:
        if k in seen:
            twice.append(k)
        seen.add(k)
    obj.duplicates = tuple(twice)
    return obj


def _at(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{where}.{key}" if where else key
    return f"{where}[{json.dumps(key)}]"


class _Reader:
    """Checks decoded JSON into the model; every error names ``source`` and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {where or 'top level'}: {message}")

    # -- JSON shapes
    def obj(self, v: Any, where: str, required: tuple[str, ...],
            optional: tuple[str, ...] = ()) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.fail(where, f"expected an object {{...}}, got {_kind(v)}")
        for k in getattr(v, "duplicates", ()):
            raise self.fail(_at(where, k), "appears twice in the same object; keep one")
        for k in v:
            if k not in required and k not in optional:
                allowed = ", ".join((*required, *optional))
                raise self.fail(_at(where, k), f"unknown field; remove it (fields: {allowed})")
        for k in required:
            if k not in v:
                raise self.fail(_at(where, k), "missing; add it")
        return v

    def mapping(self, v: Any, where: str) -> dict[str, Any]:
        if v is None:
            return {}
        return self.obj(v, where, (), tuple(v) if isinstance(v, dict) else ())

    def items(self, v: Any, where: str) -> list[Any]:
        if v is None:
            return []
        if not isinstance(v, list):
            raise self.fail(where, f"expected a list [...], got {_kind(v)}")
        return v

    def text(self, v: Any, where: str) -> str:
        if not isinstance(v, str):
            raise self.fail(where, f"expected a string, got {_kind(v)}")
        return v

    def integer(self, v: Any, where: str, lo: int, hi: int) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(where, f"expected a whole number, got {_kind(v)}")
        if not lo <= v <= hi:
            raise self.fail(where, f"{v} is out of range; use {lo} to {hi}")
        return v

    def flag(self, v: Any, where: str) -> bool:
        if not isinstance(v, bool):
            raise self.fail(where, f"expected true or false, got {_kind(v)}")
        return v

    def optional(self, o: dict[str, Any], key: str, where: str, pattern: re.Pattern[str],
                 advice: str) -> str | None:
        """An optional string field that must match ``pattern``."""
        if o.get(key) is None:
            return None
        s = self.text(o[key], _at(where, key))
        if not pattern.fullmatch(s):
            raise self.fail(_at(where, key), f"{s!r} {advice}")
        return s

    # -- domain values
    def name(self, v: Any, where: str) -> str:
        s = self.text(v, where)
        if not _NAME.fullmatch(s):
            raise self.fail(where, f"{s!r} is not a usable name; use letters, digits, "
                            "'_', '.' and '-' (at most 128, not starting with '_', '.', '-')")
        return s

    def size(self, v: Any, where: str) -> int:
        if isinstance(v, int) and not isinstance(v, bool):
            n = v
        elif isinstance(v, str):
            try:
                n = parse_size(v)
            except ConfigError as e:
                raise self.fail(where, f"{v!r} is not a size; use e.g. 10G") from e
        else:
            raise self.fail(where, f"{_kind(v)} is not a size; use e.g. 10G")
        if n <= 0:
            raise self.fail(where, f"{v!r} is not a positive size; use e.g. 10G")
        return n

    def path(self, v: Any, where: str) -> Path:
        s = self.text(v, where)
        if not s.startswith("/"):
            raise self.fail(where, f"{s!r} is relative; give an absolute path")
        if any(c in s for c in _KERNEL_UNSAFE):
            raise self.fail(where, f"{s!r}: commas, colons, semicolons and newlines cannot "
                            "be passed to the kernel; rename or link the file")
        return Path(s)

    def wwn(self, v: Any, where: str) -> str | None:
        if v is None:
            return None
        s = self.text(v, where)
        if not _UUID.fullmatch(s):
            raise self.fail(where, f"{s!r} is not a unit serial; use a UUID such as "
                            "6d1f2c34-5b6a-4c8d-9e0f-123456789abc or leave it out")
        return s

    def iqn(self, v: Any, where: str, initiator: bool = False) -> str:
        s = self.text(v, where)
        ok = _IQN.fullmatch(s) or (initiator and (_EUI.fullmatch(s) or _NAA.fullmatch(s)))
        if not ok:
            example = "iqn.2003-01.org.example:host1"
            raise self.fail(where, f"{s!r} is not an iSCSI name; use e.g. {example}"
                            if s.lower() == s else f"{s!r}: write it in lower case")
        return s

    def chap(self, v: Any, where: str) -> Chap | None:
        if v is None:
            return None
        o = self.obj(v, where, ("userid", "password"))
        userid, password = (self.text(o[k], _at(where, k)) for k in ("userid", "password"))
        for k, s in (("userid", userid), ("password", password)):
            if not s or len(s) > _CHAP_MAX or any(c.isspace() or not c.isprintable() for c in s):
                raise self.fail(_at(where, k), f"must be 1 to {_CHAP_MAX} printable "
                                "characters without spaces; choose another")
        return Chap(userid, password)

    def lun_key(self, k: str, where: str) -> int:
        if not (k.isascii() and k.isdigit() and str(int(k)) == k):
            raise self.fail(where, f"LUN id {k!r} is not a number; use \"0\" to \"{MAX_LUN}\"")
        return self.integer(int(k), where, 0, MAX_LUN)

    # -- the document
    def config(self, doc: Any) -> SavedConfig:
        fields = ("disks", "tapes", "changers", "library_drives", "passthrough", "loopback",
                  "iscsi", "copy_groups")
        if isinstance(doc, dict) and "version" in doc:
            version = doc["version"]
            if isinstance(version, int) and not isinstance(version, bool) \
                    and version > max(READABLE_VERSIONS):
                raise self.fail("version", f"{version} is newer than this lio-xcopy "
                                f"understands ({SCHEMA_VERSION}); upgrade lio-xcopy")
        o = self.obj(doc, "", ("version",), fields)
        if type(o["version"]) is not int or o["version"] not in READABLE_VERSIONS:
            raise self.fail("version", f"{o['version']!r} is not a schema version; "
                            f"use {SCHEMA_VERSION}")

        disks = tuple(self.disk(d, f"disks[{i}]")
                      for i, d in enumerate(self.items(o.get("disks"), "disks")))
        tapes = tuple(self.tape(t, f"tapes[{i}]")
                      for i, t in enumerate(self.items(o.get("tapes"), "tapes")))
        changers = tuple(self.changer(c, f"changers[{i}]")
                         for i, c in enumerate(self.items(o.get("changers"), "changers")))
        drives = tuple(self.library_drive(d, f"library_drives[{i}]") for i, d in
                       enumerate(self.items(o.get("library_drives"), "library_drives")))
        passthrough = tuple(self.passthrough(p, f"passthrough[{i}]") for i, p in
                            enumerate(self.items(o.get("passthrough"), "passthrough")))
        self.unique_backstores(disks, tapes, changers, drives, passthrough)
        every: tuple[Backstore, ...] = (*disks, *tapes, *changers, *drives, *passthrough)
        names = {b.name for b in every}

        if o["version"] == 1:
            loopback = self.loopback_v1(o.get("loopback"), names)
        else:
            loopback = self.loopback(o.get("loopback"), names)

        iscsi: list[IscsiTarget] = []
        for i, t in enumerate(self.items(o.get("iscsi"), "iscsi")):
            target = self.target(t, f"iscsi[{i}]", names)
            if any(x.iqn == target.iqn for x in iscsi):
                raise self.fail(f"iscsi[{i}].iqn", f"{target.iqn!r} is listed twice; "
                                "merge the two targets")
            iscsi.append(target)

        groups: dict[str, tuple[str, ...]] = {}
        for name, members in self.mapping(o.get("copy_groups"), "copy_groups").items():
            where = _at("copy_groups", name)
            self.name(name, where)
            seen: list[str] = []
            for j, m in enumerate(self.items(members, where)):
                self.member(self.text(m, f"{where}[{j}]"), names, f"{where}[{j}]")
                if m in seen:
                    raise self.fail(f"{where}[{j}]", f"{m!r} is listed twice; keep one")
                seen.append(m)
            groups[name] = tuple(seen)
        return SavedConfig(disks, tapes, loopback, tuple(iscsi), groups, changers, drives,
                           passthrough)

    def loopback_v1(self, v: Any, names: set[str]) -> tuple[LoopbackTarget, ...]:
        """Schema 1: ``{backstore: lun_id}`` on the first loopback target."""
        luns: dict[int, str] = {}
        for name, lun in self.mapping(v, "loopback").items():
            where = _at("loopback", name)
            self.known(name, names, where)
            lun_id = self.integer(lun, where, 0, MAX_LUN)
            if lun_id in luns:
                raise self.fail(where, f"LUN id {lun_id} is already {luns[lun_id]!r}'s; "
                                "give each export its own LUN id")
            luns[lun_id] = name
        return (LoopbackTarget(None, luns),) if luns else ()

    def loopback(self, v: Any, names: set[str]) -> tuple[LoopbackTarget, ...]:
        targets: list[LoopbackTarget] = []
        for i, t in enumerate(self.items(v, "loopback")):
            where = f"loopback[{i}]"
            o = self.obj(t, where, ("luns",), ("wwn",))
            wwn = self.optional(o, "wwn", where, _NAA, "is not a loopback target name; use "
                                "naa. and 16 hex digits, or leave it out")
            if any(x.wwn == wwn for x in targets):
                raise self.fail(_at(where, "wwn"), f"target {wwn or '(default)'} is listed "
                                "twice; merge the two")
            luns: dict[int, str] = {}
            lw = _at(where, "luns")
            for k, name in self.mapping(o["luns"], lw).items():
                self.known(self.text(name, _at(lw, k)), names, _at(lw, k))
                luns[self.lun_key(k, _at(lw, k))] = name
            targets.append(LoopbackTarget(wwn, luns))
        return tuple(targets)

    def disk(self, v: Any, where: str) -> DiskConfig:
        o = self.obj(v, where, ("name", "path", "size"), ("block_size", "wwn"))
        block_size = o.get("block_size", 512)
        if type(block_size) is not int or block_size not in BLOCK_SIZES:
            raise self.fail(_at(where, "block_size"), f"{block_size!r} is not supported; "
                            "use 512, 1024, 2048 or 4096")
        size = self.size(o["size"], _at(where, "size"))
        if size % block_size:
            raise self.fail(_at(where, "size"), f"{size} is not a multiple of the block "
                            f"size {block_size}; round it to one")
        return DiskConfig(self.name(o["name"], _at(where, "name")),
                          self.path(o["path"], _at(where, "path")), size, block_size,
                          self.wwn(o.get("wwn"), _at(where, "wwn")))

    def tape(self, v: Any, where: str) -> TapeConfig:
        o = self.obj(v, where, ("name", "path", "capacity"), ("wwn",))
        capacity = self.size(o["capacity"], _at(where, "capacity"))
        if capacity < MIN_TAPE_CAPACITY:
            raise self.fail(_at(where, "capacity"), f"{capacity} is too small; use at least 1M")
        return TapeConfig(self.name(o["name"], _at(where, "name")),
                          self.path(o["path"], _at(where, "path")), capacity,
                          self.wwn(o.get("wwn"), _at(where, "wwn")))

    def changer(self, v: Any, where: str) -> ChangerConfig:
        o = self.obj(v, where, ("name", "library"), ("wwn",))
        return ChangerConfig(self.name(o["name"], _at(where, "name")),
                             self.path(o["library"], _at(where, "library")),
                             self.wwn(o.get("wwn"), _at(where, "wwn")))

    def library_drive(self, v: Any, where: str) -> LibraryDriveConfig:
        o = self.obj(v, where, ("name", "library", "drive"), ("wwn",))
        return LibraryDriveConfig(self.name(o["name"], _at(where, "name")),
                                  self.path(o["library"], _at(where, "library")),
                                  self.integer(o["drive"], _at(where, "drive"), 0, 255),
                                  self.wwn(o.get("wwn"), _at(where, "wwn")))

    def passthrough(self, v: Any, where: str) -> PassThroughConfig:
        o = self.obj(v, where, ("name", "device"), ("designator", "wwn"))
        device = self.text(o["device"], _at(where, "device"))
        try:
            StableName.parse(device)
        except ConfigError as e:
            raise self.fail(_at(where, "device"), str(e)) from e
        designator = self.optional(o, "designator", where, _DESIGNATOR,
                                   "is not a designator; use naa.<hex> or eui.<hex>")
        return PassThroughConfig(self.name(o["name"], _at(where, "name")), device,
                                 designator, self.wwn(o.get("wwn"), _at(where, "wwn")))

    def unique_backstores(self, disks: tuple[DiskConfig, ...], tapes: tuple[TapeConfig, ...],
                          changers: tuple[ChangerConfig, ...] = (),
                          drives: tuple[LibraryDriveConfig, ...] = (),
                          passthrough: tuple[PassThroughConfig, ...] = ()) -> None:
        names: dict[str, str] = {}
        paths: dict[Path, str] = {}
        serials: dict[str, str] = {}
        designators: dict[bytes, str] = {}
        slots: dict[tuple[Path, int], str] = {}
        labelled: list[tuple[str, Any]] = [(f"disks[{i}]", d) for i, d in enumerate(disks)]
        labelled += [(f"tapes[{i}]", t) for i, t in enumerate(tapes)]
        labelled += [(f"changers[{i}]", c) for i, c in enumerate(changers)]
        labelled += [(f"library_drives[{i}]", d) for i, d in enumerate(drives)]
        labelled += [(f"passthrough[{i}]", p) for i, p in enumerate(passthrough)]
        devices: dict[str, str] = {}
        for where, b in labelled:
            if b.name in names:
                raise self.fail(f"{where}.name", f"{b.name!r} is already {names[b.name]}; "
                                "give each backstore its own name")
            if isinstance(b, LibraryDriveConfig):
                if (b.library, b.drive) in slots:
                    raise self.fail(f"{where}.drive", f"drive {b.drive} of {b.library} is "
                                    f"already {slots[b.library, b.drive]!r}; give each LUN "
                                    "its own drive")
                slots[b.library, b.drive] = b.name
            elif isinstance(b, PassThroughConfig):
                if b.device in devices:
                    raise self.fail(f"{where}.device", f"{b.device!r} is already passed "
                                    f"through by {devices[b.device]!r}; keep one")
                devices[b.device] = b.name
            elif isinstance(b, ChangerConfig):
                if (b.library, -1) in slots:
                    raise self.fail(f"{where}.library", f"{b.library} already has changer "
                                    f"{slots[b.library, -1]!r}; keep one")
                slots[b.library, -1] = b.name
            elif b.path in paths:
                raise self.fail(f"{where}.path", f"{str(b.path)!r} is already used by "
                                f"{paths[b.path]!r}; give each LUN its own file")
            if b.wwn is not None and b.wwn.lower() in serials:
                raise self.fail(f"{where}.wwn", f"{b.wwn!r} is already "
                                f"{serials[b.wwn.lower()]!r}'s; use a fresh UUID or leave it out")
            naa = b.wwn and naa_ieee_registered_extended(b.wwn)
            if naa and naa in designators:  # LIO's NAA keeps only the serial's first digits
                raise self.fail(f"{where}.wwn", f"{b.wwn!r} gives the same NAA designator as "
                                f"{designators[naa]!r}'s serial; its first 25 hex digits must "
                                "differ: use a fresh UUID or leave it out")
            if naa:
                designators[naa] = b.name
            names[b.name] = where
            if isinstance(b, DiskConfig | TapeConfig):
                paths[b.path] = b.name
            if b.wwn is not None:
                serials[b.wwn.lower()] = b.name

    def member(self, m: str, names: set[str], where: str) -> None:
        """A copy group member: a saved LUN, or ``foreign:`` and a designator."""
        if not m.startswith(FOREIGN):
            self.known(m, names, where)
            return
        try:
            foreign_designator(m)
        except ConfigError as e:
            raise self.fail(where, str(e)) from None

    def known(self, name: str, names: set[str], where: str) -> None:
        if name not in names:
            raise self.fail(where, f"no disk or tape named {name!r}; add it to disks or "
                            "tapes, or remove this reference")

    def target(self, v: Any, where: str, names: set[str]) -> IscsiTarget:
        o = self.obj(v, where, ("iqn",), ("tpgs",))
        iqn = self.iqn(o["iqn"], _at(where, "iqn"))
        tpgs: list[Tpg] = []
        for i, g in enumerate(self.items(o.get("tpgs"), _at(where, "tpgs"))):
            tpg = self.tpg(g, f"{where}.tpgs[{i}]", names)
            if any(x.tag == tpg.tag for x in tpgs):
                raise self.fail(f"{where}.tpgs[{i}].tag", f"tag {tpg.tag} is used twice; "
                                "give each TPG its own tag")
            tpgs.append(tpg)
        return IscsiTarget(iqn, tuple(tpgs))

    def tpg(self, v: Any, where: str, names: set[str]) -> Tpg:
        o = self.obj(v, where, ("tag",), ("enable", "portals", "luns", "acls", "attributes"))
        tag = self.integer(o["tag"], _at(where, "tag"), 1, 65535)
        enable = self.flag(o.get("enable", True), _at(where, "enable"))

        attributes: dict[str, str] = {}
        at = _at(where, "attributes")
        for k, val in self.mapping(o.get("attributes"), at).items():
            if not _ATTRIBUTE.fullmatch(k):
                raise self.fail(_at(at, k), "is not a TPG attribute name; use the name "
                                "LIO shows under tpgt_N/attrib")
            if isinstance(val, bool):
                val = "1" if val else "0"
            elif isinstance(val, int):
                val = str(val)
            attributes[k] = self.text(val, _at(at, k))
        if attributes.get("authentication", "0") not in ("0", "1"):
            raise self.fail(_at(at, "authentication"), f"{attributes['authentication']!r}: "
                            "use 1 (CHAP required) or 0")

        portals: list[Portal] = []
        for i, p in enumerate(self.items(o.get("portals"), _at(where, "portals"))):
            pw = f"{where}.portals[{i}]"
            po = self.obj(p, pw, ("ip",), ("port", "netns"))
            ip = self.text(po["ip"], _at(pw, "ip"))
            try:
                ip = str(ipaddress.ip_address(ip))
            except ValueError as e:
                raise self.fail(_at(pw, "ip"), f"{ip!r} is not an IP address; use e.g. "
                                "0.0.0.0 (all IPv4) or :: (all IPv6)") from e
            if ip != po["ip"]:
                raise self.fail(_at(pw, "ip"), f"{po['ip']!r}: write it as {ip!r}")
            netns = self.optional(po, "netns", pw, _NAME, "is not a network namespace name "
                                  "(`ip netns list`); fix it or leave it out")
            portal = Portal(ip, self.integer(po.get("port", DEFAULT_ISCSI_PORT),
                                         _at(pw, "port"), 1, 65535), netns)
            if any((x.ip, x.port) == (ip, portal.port) for x in portals):
                raise self.fail(pw, f"{ip} port {portal.port} is listed twice; keep one")
            portals.append(portal)

        luns: dict[int, str] = {}
        lw = _at(where, "luns")
        for k, name in self.mapping(o.get("luns"), lw).items():
            lun_id = self.lun_key(k, _at(lw, k))
            self.known(self.text(name, _at(lw, k)), names, _at(lw, k))
            luns[lun_id] = name

        acls: list[Acl] = []
        for i, a in enumerate(self.items(o.get("acls"), _at(where, "acls"))):
            acl = self.acl(a, f"{where}.acls[{i}]", luns)
            if any(x.initiator == acl.initiator for x in acls):
                raise self.fail(f"{where}.acls[{i}].initiator", f"{acl.initiator!r} has two "
                                "ACLs in this TPG; merge them")
            if attributes.get("authentication") == "1" and acl.chap is None:
                raise self.fail(f"{where}.acls[{i}].chap", "the TPG requires authentication; "
                                "add a chap userid and password, or set "
                                "attributes.authentication to 0")
            acls.append(acl)
        return Tpg(tag, enable, tuple(portals), luns, tuple(acls), attributes)

    def acl(self, v: Any, where: str, luns: dict[int, str]) -> Acl:
        o = self.obj(v, where, ("initiator",), ("mapped_luns", "chap", "mutual_chap"))
        initiator = self.iqn(o["initiator"], _at(where, "initiator"), initiator=True)
        mapped: list[MappedLun] = []
        for i, m in enumerate(self.items(o.get("mapped_luns"), _at(where, "mapped_luns"))):
            mw = f"{where}.mapped_luns[{i}]"
            mo = self.obj(m, mw, ("mapped_lun", "tpg_lun"), ("write_protect",))
            ml = MappedLun(self.integer(mo["mapped_lun"], _at(mw, "mapped_lun"), 0, MAX_LUN),
                           self.integer(mo["tpg_lun"], _at(mw, "tpg_lun"), 0, MAX_LUN),
                           self.flag(mo.get("write_protect", False), _at(mw, "write_protect")))
            if ml.tpg_lun not in luns:
                raise self.fail(_at(mw, "tpg_lun"), f"the TPG has no LUN {ml.tpg_lun}; add it "
                                "to the TPG's luns or map another")
            if any(x.mapped_lun == ml.mapped_lun for x in mapped):
                raise self.fail(_at(mw, "mapped_lun"), f"{ml.mapped_lun} is mapped twice; "
                                "give each mapping its own number")
            mapped.append(ml)
        chap = self.chap(o.get("chap"), _at(where, "chap"))
        mutual = self.chap(o.get("mutual_chap"), _at(where, "mutual_chap"))
        if mutual is not None and chap is None:
            raise self.fail(_at(where, "mutual_chap"), "needs one-way chap too; add chap "
                            "or remove mutual_chap")
        return Acl(initiator, tuple(mapped), chap, mutual)


def _kind(v: Any) -> str:
    return {dict: "an object", _Object: "an object", list: "a list", str: "a string",
            bool: "true/false", int: "a number", float: "a number",
            type(None): "null"}.get(type(v), type(v).__name__)


def loads(text: str, source: str = "saveconfig.json") -> SavedConfig:
    """Check a saved configuration's text; ``source`` names it in errors."""
    try:
        doc = json.loads(text, object_pairs_hook=_pairs)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{source}: not valid JSON ({e.msg} at line {e.lineno} column "
                          f"{e.colno}): the file is corrupt or truncated; fix it or restore "
                          f"a backup ({source}.1)") from e
    except ValueError as e:  # e.g. a number too long to convert
        raise ConfigError(f"{source}: not valid JSON ({e}); fix it or restore a backup "
                          f"({source}.1)") from e
    except RecursionError as e:
        raise ConfigError(f"{source}: nested too deeply to be a saved configuration; "
                          f"restore a backup ({source}.1)") from e
    return _Reader(source).config(doc)


def load(path: str | os.PathLike[str] = DEFAULT_PATH) -> SavedConfig:
    """Read and check a saved configuration file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            data = f.read()
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: no saved configuration there; save one first or give "
                          "another path") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror}); check the path and "
                          "its permissions") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}): the file is corrupt; "
                          f"restore a backup ({path}.1)") from e
    cfg = loads(text, str(path))
    if mode & 0o044 and cfg.has_secrets:
        raise ConfigError(f"{path}: holds CHAP secrets but others can read it; "
                          f"run `chmod 600 {path}`")
    return cfg


# --- writing ---------------------------------------------------------------------------------
def _chap(c: Chap | None) -> dict[str, str] | None:
    return None if c is None else {"userid": c.userid, "password": c.password}


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def to_json(cfg: SavedConfig) -> dict[str, Any]:
    """The JSON document of a configuration, keys in a fixed order."""
    return {
        "version": SCHEMA_VERSION,
        "disks": [_drop_none({"name": d.name, "path": str(d.path), "size": d.size,
                              "block_size": d.block_size, "wwn": d.wwn}) for d in cfg.disks],
        "tapes": [_drop_none({"name": t.name, "path": str(t.path), "capacity": t.capacity,
                              "wwn": t.wwn}) for t in cfg.tapes],
        "changers": [_drop_none({"name": c.name, "library": str(c.library), "wwn": c.wwn})
                     for c in cfg.changers],
        "library_drives": [_drop_none({"name": d.name, "library": str(d.library),
                                       "drive": d.drive, "wwn": d.wwn})
                           for d in cfg.library_drives],
        "passthrough": [_drop_none({"name": p.name, "device": p.device,
                                    "designator": p.designator, "wwn": p.wwn})
                        for p in cfg.passthrough],
        "loopback": [_drop_none({"wwn": t.wwn,
                                 "luns": {str(k): v for k, v in sorted(t.luns.items())}})
                     for t in cfg.loopback],
        "iscsi": [{"iqn": t.iqn, "tpgs": [{
            "tag": g.tag,
            "enable": g.enable,
            "attributes": dict(sorted(g.attributes.items())),
            "portals": [_drop_none({"ip": p.ip, "port": p.port, "netns": p.netns})
                        for p in g.portals],
            "luns": {str(k): v for k, v in sorted(g.luns.items())},
            "acls": [_drop_none({
                "initiator": a.initiator,
                "mapped_luns": [{"mapped_lun": m.mapped_lun, "tpg_lun": m.tpg_lun,
                                 "write_protect": m.write_protect} for m in a.mapped_luns],
                "chap": _chap(a.chap),
                "mutual_chap": _chap(a.mutual_chap),
            }) for a in g.acls],
        } for g in t.tpgs]} for t in cfg.iscsi],
        "copy_groups": {k: list(v) for k, v in sorted(cfg.copy_groups.items())},
    }


def dump(cfg: SavedConfig) -> str:
    """The file's text: the same configuration always gives the same bytes."""
    return json.dumps(to_json(cfg), indent=2) + "\n"


def _backup(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def _make_dir(directory: Path) -> None:
    missing = []
    d = directory
    while not d.exists():
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, 0o700)
            os.chmod(d, 0o700)  # whatever the umask


def _rotate(path: Path, old: bytes, backups: int) -> None:
    """``.1`` becomes ``.2`` ...; ``.N`` drops off; the old content becomes ``.1``."""
    prefix = f"{path.name}."
    for p in path.parent.iterdir():
        suffix = p.name.removeprefix(prefix)
        if p.name.startswith(prefix) and suffix.isascii() and suffix.isdigit() \
                and int(suffix) > backups:
            p.unlink()
    for n in range(backups - 1, 0, -1):
        if _backup(path, n).exists():
            os.replace(_backup(path, n), _backup(path, n + 1))
            os.chmod(_backup(path, n + 1), 0o600)
    files.replace(files.write_temp(path, old), _backup(path, 1))


def save(cfg: SavedConfig, path: str | os.PathLike[str] = DEFAULT_PATH,
         backups: int = 5) -> Path:
    """Write ``cfg`` atomically, mode 0600, keeping ``backups`` older versions
    (``saveconfig.json.1`` newest); nothing changes on disk when the content is the same."""
    if backups < 0:
        raise ConfigError(f"backups {backups}: use 0 or more")
    path = Path(path)
    text = dump(cfg)
    loads(text, str(path))  # never save what load would refuse
    try:
        _save(path, text.encode(), backups)
    except OSError as e:
        raise ConfigError(f"{path}: cannot save ({e.strerror or e}); check the directory's "
                          "permissions and free space") from e
    return path


def _save(path: Path, data: bytes, backups: int) -> None:
    _make_dir(path.parent)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(dfd, fcntl.LOCK_EX)  # one saver at a time
        try:
            old: bytes | None = path.read_bytes()
        except FileNotFoundError:
            old = None
        if old == data:
            os.chmod(path, 0o600)
            return
        tmp = files.write_temp(path, data)
        previous = old
        files.replace(tmp, path, (lambda: _rotate(path, previous, backups))
                      if previous is not None and backups > 0 else None)
        os.fsync(dfd)
    finally:
        os.close(dfd)


# --- comparing ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Change:
    """One step of a restore. ``kind`` is disk, tape, changer, library_drive, loopback,
    target, tpg, portal, lun, acl, mapped_lun or copy_group; ``key`` locates it (e.g.
    ``(iqn, tag, lun_id)``);
    ``item`` is the model object (the wanted one, or for "remove" the existing one).
    A "change" keeps the object and resets its settings (TPG enable and attributes,
    ACL CHAP, copy group members)."""

    action: str  # "remove", "create" or "change"
    kind: str
    key: tuple[Any, ...]
    item: Any

    def __str__(self) -> str:
        return f"{self.action} {self.kind} {' '.join(str(k) for k in self.key)}"


@dataclass(frozen=True, slots=True)
class _Entry:
    kind: str
    item: Any
    identity: Any  # differs: remove and create
    settings: Any  # differs only: change in place
    deps: tuple[tuple[Any, ...], ...]
    depth: int


def _entries(cfg: SavedConfig) -> dict[tuple[Any, ...], _Entry]:
    e: dict[tuple[Any, ...], _Entry] = {}
    for b in cfg.backstores:
        e[("backstore", b.name)] = _Entry(kind_of(b), b, b, None, (), 0)
    for lb in cfg.loopback:
        for lun_id, name in lb.luns.items():
            e[("loopback", lb.wwn, lun_id)] = _Entry("loopback", name, name, None,
                                                    (("backstore", name),), 1)
    for t in cfg.iscsi:
        e[("target", t.iqn)] = _Entry("target", t, None, None, (), 0)
        for g in t.tpgs:
            tk = ("tpg", t.iqn, g.tag)
            e[tk] = _Entry("tpg", g, None, (g.enable, sorted(g.attributes.items())),
                           (("target", t.iqn),), 1)
            for p in g.portals:
                e[("portal", t.iqn, g.tag, p.ip, p.port)] = _Entry("portal", p, None, None,
                                                                  (tk,), 2)
            for lun_id, name in g.luns.items():
                e[("lun", t.iqn, g.tag, lun_id)] = _Entry("lun", name, name, None,
                                                          (tk, ("backstore", name)), 2)
            for a in g.acls:
                ak = ("acl", t.iqn, g.tag, a.initiator)
                e[ak] = _Entry("acl", a, None, (a.chap, a.mutual_chap), (tk,), 2)
                for m in a.mapped_luns:
                    e[("mapped_lun", *ak[1:], m.mapped_lun)] = _Entry(
                        "mapped_lun", m, m, None, (ak, ("lun", t.iqn, g.tag, m.tpg_lun)), 3)
    for name, members in cfg.copy_groups.items():
        e[("copy_group", name)] = _Entry("copy_group", members, None, members, (), 1)
    return e


def diff(current: SavedConfig, wanted: SavedConfig) -> tuple[Change, ...]:
    """What turns ``current`` into ``wanted``: removals (innermost first), then creations
    (outermost first), then in-place changes. Empty when they are the same, so a restore
    that applies it is idempotent. A changed backstore or LUN is removed and created
    again, and so is everything that hangs on it."""
    a, b = _entries(current), _entries(wanted)
    same: dict[tuple[Any, ...], bool] = {}

    def kept(key: tuple[Any, ...]) -> bool:
        if key not in same:
            same[key] = (key in a and key in b and a[key].kind == b[key].kind
                         and a[key].identity == b[key].identity
                         and all(kept(d) for d in b[key].deps))
        return same[key]

    removes = sorted((k for k in a if not kept(k)), key=lambda k: -a[k].depth)
    creates = sorted((k for k in b if not kept(k)), key=lambda k: b[k].depth)
    changes = [k for k in b if kept(k) and a[k].settings != b[k].settings]
    return (*(Change("remove", a[k].kind, k[1:], a[k].item) for k in removes),
            *(Change("create", b[k].kind, k[1:], b[k].item) for k in creates),
            *(Change("change", b[k].kind, k[1:], b[k].item) for k in changes))
