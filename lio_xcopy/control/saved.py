"""Saving what runs and restoring it: between LIO (through rtslib) and the saved file.

``running()`` reads our storage objects, their loopback and iSCSI exports, ACLs and CHAP
secrets back from configfs; ``restore(cfg)`` applies :func:`config.diff` from what runs
to what the file holds, creating what is missing and resetting settings in place, so
restoring twice changes nothing. What LIO holds beyond the file is left alone, and
something that exists with other settings is reported, not replaced. Errors are
collected and reported together, as rtslib's targetctl does; a LUN whose backing file is
gone is refused rather than recreated empty.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from lio_xcopy.control import backing, config, iscsi, provision, rtslib_adapter
from lio_xcopy.errors import ConfigError
from lio_xcopy.handler_config import SUBTYPE, HandlerConfig, parse_size

#: one kind of saved backstore
B = TypeVar("B", bound=config.Backstore)


def _iscsi_model(raw: list[dict[str, Any]], keep_from: config.SavedConfig | None) \
        -> tuple[config.IscsiTarget, ...]:
    netns = {(t.iqn, g.tag, p.ip, p.port): p.netns
             for t in (keep_from.iscsi if keep_from else ()) for g in t.tpgs for p in g.portals}
    targets = []
    for t in raw:
        tpgs = []
        for g in t["tpgs"]:
            portals = tuple(config.Portal(ip, port,
                                          found or netns.get((t["iqn"], g["tag"], ip, port)))
                            for ip, port, found in g["portals"])
            acls = tuple(config.Acl(
                a["initiator"],
                tuple(config.MappedLun(*m) for m in a["mapped_luns"]),
                config.Chap(*a["chap"]) if a["chap"] else None,
                config.Chap(*a["mutual_chap"]) if a["mutual_chap"] else None,
            ) for a in g["acls"])
            tpgs.append(config.Tpg(g["tag"], g["enable"], portals, dict(g["luns"]), acls,
                                   dict(g["attributes"])))
        targets.append(config.IscsiTarget(t["iqn"], tuple(tpgs)))
    return tuple(sorted(targets, key=lambda t: t.iqn))


def running(keep_from: config.SavedConfig | None = None) -> config.SavedConfig:
    """The configuration LIO holds now. Copy groups and portal network namespaces live
    only in the saved file, so they are carried over from ``keep_from``. Without LIO
    on this host, :class:`ConfigError` says how to load it."""
    rtslib_adapter.ensure_configfs()
    rts = rtslib_adapter.rtslib()
    disks, tapes, changers, drives, passthrough = [], [], [], [], []
    for so in rts.RTSRoot().storage_objects:
        if so.plugin != "user" or not (so.config or "").startswith(f"{SUBTYPE}/"):
            continue
        hc = HandlerConfig.parse(so.config.split("/", 1)[1])
        if hc.kind == "passthrough":
            passthrough.append(config.PassThroughConfig(so.name, hc.path, hc.options.get("id"),
                                                        so.wwn))
        elif hc.kind == "changer":
            changers.append(config.ChangerConfig(so.name, Path(hc.path), so.wwn))
        elif "drive" in hc.options:
            drives.append(config.LibraryDriveConfig(so.name, Path(hc.path),
                                                    int(hc.options["drive"]), so.wwn))
        elif hc.kind == "disk":
            disks.append(config.DiskConfig(so.name, Path(hc.path), so.size,
                                           int(hc.options.get("block_size", "512")), so.wwn))
        else:
            tapes.append(config.TapeConfig(so.name, Path(hc.path),
                                           parse_size(hc.options.get("capacity", "1G")),
                                           so.wwn))
    every: tuple[config.Backstore, ...] = (*disks, *tapes, *changers, *drives, *passthrough)
    names = {b.name for b in every}
    loopback = []
    for target in rts.FabricModule("loopback").targets:
        luns = {lun.lun: lun.storage_object.name for tpg in target.tpgs for lun in tpg.luns
                if lun.storage_object.name in names}
        if luns:
            loopback.append(config.LoopbackTarget(target.wwn, luns))
    return config.SavedConfig(
        tuple(sorted(disks, key=lambda d: d.name)), tuple(sorted(tapes, key=lambda t: t.name)),
        tuple(sorted(loopback, key=lambda t: t.wwn or "")),
        _iscsi_model(iscsi.running_targets(names), keep_from),
        dict(keep_from.copy_groups) if keep_from else {},
        tuple(sorted(changers, key=lambda c: c.name)),
        tuple(sorted(drives, key=lambda d: d.name)),
        tuple(sorted(passthrough, key=lambda p: p.name)),
    )


def save(path: Path = config.DEFAULT_PATH, backups: int = 5) -> config.SavedConfig:
    """Write the running configuration to ``path`` (atomically, with backups)."""
    previous = config.load(path) if path.exists() else None
    cfg = running(previous)
    config.save(cfg, path, backups=backups)
    return cfg


@dataclass
class RestoreReport:
    created: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _bind_serials(cfg: config.SavedConfig, now: config.SavedConfig) -> config.SavedConfig:
    """A saved LUN without a unit serial (``wwn``) is the running LUN of that name
    whatever serial LIO gave it."""
    have = {b.name: b.wwn for b in now.backstores}

    def bind(items: tuple[B, ...]) -> tuple[B, ...]:
        return tuple(replace(b, wwn=have[b.name]) if b.wwn is None and b.name in have else b
                     for b in items)

    return replace(cfg, disks=bind(cfg.disks), tapes=bind(cfg.tapes),
                   changers=bind(cfg.changers), library_drives=bind(cfg.library_drives),
                   passthrough=bind(cfg.passthrough))


def _bind_default_loopback(cfg: config.SavedConfig, now: config.SavedConfig) \
        -> config.SavedConfig:
    """A saved loopback target without a WWN is the first one LIO has, if any."""
    have = [t.wwn for t in now.loopback] or [
        t.wwn for t in rtslib_adapter.rtslib().FabricModule("loopback").targets]
    if not have:
        return cfg
    bound = tuple(replace(t, wwn=have[0]) if t.wwn is None else t for t in cfg.loopback)
    return replace(cfg, loopback=bound)


def _label(c: config.Change) -> str:
    if c.kind in config.BACKSTORE_KINDS:
        return f"{c.kind.replace('_', ' ')} {c.key[0]}"
    if c.kind == "loopback":
        wwn, lun_id = c.key
        return f"loopback {c.item} lun {lun_id}" + (f" on {wwn}" if wwn else "")
    if c.kind == "acl":
        return f"acl {c.key[2]} on {c.key[0]} tpg {c.key[1]}"
    return str(c).split(" ", 1)[1]


class _Restorer:
    """Applies one :class:`config.Change` at a time to LIO."""

    def __init__(self) -> None:
        self.luns: dict[str, Any] = {}  # backstore name -> rtslib storage object
        for so in rtslib_adapter.rtslib().RTSRoot().storage_objects:
            if so.plugin == "user":
                self.luns[so.name] = so
        self.new_loopback: str | None = None

    def apply(self, c: config.Change) -> None:
        getattr(self, f"{c.action}_{c.kind}")(c)

    def create_disk(self, c: config.Change) -> None:
        b = c.item
        if not os.path.exists(b.path):
            raise ConfigError(f"backing {b.path} is missing; restore the file first, or "
                              "remove the LUN from the saved file")
        lun = provision.create_disk(b.name, b.path, b.size, b.block_size, b.wwn)
        self.luns[b.name] = lun.storage_object

    def create_tape(self, c: config.Change) -> None:
        b = c.item
        lun = provision.create_tape(b.name, b.path, b.capacity, b.wwn)
        self.luns[b.name] = lun.storage_object

    def create_changer(self, c: config.Change) -> None:
        b = c.item
        self.luns[b.name] = provision.create_changer(b.name, b.library, b.wwn).storage_object

    def create_library_drive(self, c: config.Change) -> None:
        b = c.item
        lun = provision.create_library_drive(b.name, b.library, b.drive, b.wwn)
        self.luns[b.name] = lun.storage_object

    def create_passthrough(self, c: config.Change) -> None:
        b = c.item
        lun = provision.create_passthrough(b.name, b.device, b.wwn, expect=b.designator)
        self.luns[b.name] = lun.storage_object

    def _so(self, name: str) -> Any:
        if name not in self.luns:
            raise ConfigError(f"no LUN {name!r} to export")
        return self.luns[name]

    def create_loopback(self, c: config.Change) -> None:
        wwn, lun_id = c.key
        so = self._so(c.item)
        lun = provision.Lun(c.item, "", Path("/"), so.wwn, so)
        provision.export_loopback(lun, lun_id, target_wwn=wwn or self.new_loopback)
        if wwn is None and self.new_loopback is None:
            targets = list(rtslib_adapter.rtslib().FabricModule("loopback").targets)
            self.new_loopback = targets[0].wwn if targets else None

    def create_target(self, c: config.Change) -> None:
        pass  # made with its first TPG

    def create_tpg(self, c: config.Change) -> None:
        iqn, tag = c.key
        iscsi.ensure_tpg(iqn, tag, enable=c.item.enable, attributes=c.item.attributes)

    change_tpg = create_tpg

    def create_portal(self, c: config.Change) -> None:
        iqn, tag, ip, port = c.key
        iscsi.ensure_portal(iqn, tag, ip, port, c.item.netns)

    def create_lun(self, c: config.Change) -> None:
        iqn, tag, lun_id = c.key
        iscsi.ensure_lun(iqn, tag, lun_id, self._so(c.item))

    def create_acl(self, c: config.Change) -> None:
        iqn, tag, initiator = c.key
        a = c.item
        iscsi.ensure_acl(iqn, tag, initiator,
                         (a.chap.userid, a.chap.password) if a.chap else None,
                         (a.mutual_chap.userid, a.mutual_chap.password)
                         if a.mutual_chap else None)

    change_acl = create_acl

    def create_mapped_lun(self, c: config.Change) -> None:
        iqn, tag, initiator, _ = c.key
        m = c.item
        iscsi.ensure_mapped_lun(iqn, tag, initiator, m.mapped_lun, m.tpg_lun,
                                write_protect=m.write_protect)

    def create_copy_group(self, c: config.Change) -> None:
        pass  # lives in the saved file only; the daemon reads it

    change_copy_group = create_copy_group


def _owned(b: config.Backstore) -> Path:
    """What a saved LUN owns: its file, its library directory or its device."""
    if isinstance(b, config.ChangerConfig | config.LibraryDriveConfig):
        return b.library
    return Path(b.device) if isinstance(b, config.PassThroughConfig) else b.path


def _check_backings(cfg: config.SavedConfig, changes: tuple[config.Change, ...],
                    source: Path | None) -> None:
    """Every disk and tape the restore would create, checked as a new LUN's backing is
    (:func:`backing.check`) against what LIO holds, the file's other LUNs and the saved
    file itself: the first conflict refuses the whole restore, before anything changes."""
    new = {c.key[0] for c in changes if c.action == "create" and c.kind in ("disk", "tape")}
    running_luns = provision.in_use()
    saved_files = (config.DEFAULT_PATH, *((source,) if source is not None else ()))
    new_files: tuple[config.DiskConfig | config.TapeConfig, ...] = (*cfg.disks, *cfg.tapes)
    for b in new_files:
        if b.name not in new or any(u.name == b.name for u in running_luns):
            continue
        others = running_luns + [backing.InUse(o.name, config.kind_of(o), _owned(o))
                                 for o in cfg.backstores if o.name != b.name]
        try:
            backing.check(config.kind_of(b), b.path, others, saved=saved_files)
        except ConfigError as e:
            raise ConfigError(f"{config.kind_of(b)} {b.name}: {e}; fix the saved file, "
                              "nothing was restored") from e


def restore(cfg: config.SavedConfig,
            progress: Callable[[str], None] | None = None,
            source: Path | None = None) -> RestoreReport:
    """Recreate whatever of ``cfg`` LIO does not hold; reset ACL secrets and TPG settings
    that differ. Never removes anything. A disk or tape whose backing file belongs to a
    library, another LUN or the saved file (``source``) refuses the whole restore."""
    rtslib_adapter.ensure_configfs()
    report = RestoreReport()
    now = running(cfg)
    cfg = _bind_default_loopback(_bind_serials(cfg, now), now)
    wanted = config.entries(cfg)
    failed: set[tuple[Any, ...]] = set()
    changes = config.diff(now, cfg)
    _check_backings(cfg, changes, source)
    restorer = _Restorer()
    for c in changes:
        key = ("backstore" if c.kind in config.BACKSTORE_KINDS else c.kind, *c.key)
        if c.action == "remove":
            if key in wanted:  # the same name with other settings
                failed.add(key)
                report.errors.append(f"{_label(c)}: exists with other settings; delete it "
                                     "or edit the saved file")
            continue
        if key in failed:
            continue
        if any(d in failed for d in wanted[key].deps):
            failed.add(key)
            continue
        try:
            restorer.apply(c)
        except (ConfigError, OSError) as e:
            failed.add(key)
            report.errors.append(f"{_label(c)}: {e}")
            continue
        if c.kind in ("target", "copy_group"):
            continue
        (report.created if c.action == "create" else report.changed).append(_label(c))
        if progress:
            progress(f"{c.action}d {_label(c)}")
    touched = {("backstore" if c.kind in config.BACKSTORE_KINDS else c.kind, *c.key)
               for c in changes}
    for key, entry in wanted.items():
        if key not in touched and entry.kind in (*config.BACKSTORE_KINDS, "loopback"):
            report.present.append(" ".join(str(k) for k in key[1:]) if entry.kind == "loopback"
                                  else f"{entry.kind} {key[1]}")
    return report

