"""Reading a saved configuration: :func:`load` checks all of it and refuses a bad file
with one line naming the file, the JSON path of the field and what to do."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Any

from lio_xcopy.control.config.model import (
    BLOCK_SIZES,
    DEFAULT_ISCSI_PORT,
    DEFAULT_PATH,
    MAX_LUN,
    MIN_TAPE_CAPACITY,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    Acl,
    Backstore,
    ChangerConfig,
    Chap,
    DiskConfig,
    IscsiTarget,
    LibraryDriveConfig,
    LoopbackTarget,
    MappedLun,
    PassThroughConfig,
    Portal,
    SavedConfig,
    TapeConfig,
    Tpg,
)
from lio_xcopy.control.validators import (
    ATTRIBUTE,
    CHAP_MAX,
    DESIGNATOR,
    KERNEL_UNSAFE,
    NAA,
    NAME,
    UUID,
    is_chap_text,
    is_iscsi_name,
)
from lio_xcopy.devices.members import FOREIGN, foreign_designator
from lio_xcopy.errors import ConfigError
from lio_xcopy.handler_config import parse_size


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


class Reader:
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
        if not NAME.fullmatch(s):
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
        if any(c in s for c in KERNEL_UNSAFE):
            raise self.fail(where, f"{s!r}: commas, colons, semicolons and newlines cannot "
                            "be passed to the kernel; rename or link the file")
        return Path(s)

    def wwn(self, v: Any, where: str) -> str | None:
        if v is None:
            return None
        s = self.text(v, where)
        if not UUID.fullmatch(s):
            raise self.fail(where, f"{s!r} is not a unit serial; use a UUID such as "
                            "6d1f2c34-5b6a-4c8d-9e0f-123456789abc or leave it out")
        return s

    def iqn(self, v: Any, where: str, *, initiator: bool = False) -> str:
        s = self.text(v, where)
        if not is_iscsi_name(s, initiator=initiator):
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
            if not is_chap_text(s):
                raise self.fail(_at(where, k), f"must be 1 to {CHAP_MAX} printable "
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
            wwn = self.optional(o, "wwn", where, NAA, "is not a loopback target name; use "
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
            from lio_xcopy.sg.resolve import StableName

            StableName.parse(device)
        except ConfigError as e:
            raise self.fail(_at(where, "device"), str(e)) from e
        designator = self.optional(o, "designator", where, DESIGNATOR,
                                   "is not a designator; use naa.<hex> or eui.<hex>")
        return PassThroughConfig(self.name(o["name"], _at(where, "name")), device,
                                 designator, self.wwn(o.get("wwn"), _at(where, "wwn")))

    def unique_backstores(self, disks: tuple[DiskConfig, ...], tapes: tuple[TapeConfig, ...],
                          changers: tuple[ChangerConfig, ...] = (),
                          drives: tuple[LibraryDriveConfig, ...] = (),
                          passthrough: tuple[PassThroughConfig, ...] = ()) -> None:
        from lio_xcopy.scsi.spc import naa_ieee_registered_extended

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
            if not ATTRIBUTE.fullmatch(k):
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
            netns = self.optional(po, "netns", pw, NAME, "is not a network namespace name "
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
    return Reader(source).config(doc)


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
