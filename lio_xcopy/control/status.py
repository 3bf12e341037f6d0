"""``lio-xcopy status``: each LUN, its backing, where it is exported, and the copies the
daemon is running (from its state file, :mod:`lio_xcopy.tcmu.state`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lio_xcopy.control import config
from lio_xcopy.devices.members import foreign_designator
from lio_xcopy.tcmu import exports
from lio_xcopy.tcmu import state as state_file

MiB = 1 << 20


def _size(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / MiB:.0f} MiB"


def _exports(cfg: config.SavedConfig, name: str) -> list[str]:
    out = []
    for lb in cfg.loopback:
        out += [f"loopback lun {lun_id} on {lb.wwn}" for lun_id, n in sorted(lb.luns.items())
                if n == name]
    for t in cfg.iscsi:
        for g in t.tpgs:
            for lun_id, n in sorted(g.luns.items()):
                if n != name:
                    continue
                portals = ", ".join(f"{p.ip}:{p.port}" for p in g.portals) or "no portal"
                who = [a.initiator + (" (CHAP)" if a.chap else "") for a in g.acls
                       if any(m.tpg_lun == lun_id for m in a.mapped_luns)]
                out.append(f"iscsi {t.iqn} tpg {g.tag} lun {lun_id} at {portals}"
                           + ("" if g.enable else " (disabled)")
                           + f"; initiators: {', '.join(who) or 'none'}")
    return out


def _foreign(cfg: config.SavedConfig) -> list[str]:
    """``foreign naa.6001405...: copy group offsite, with tape0``: each device this
    daemon does not serve that the operator admitted, by designator."""
    admitted: dict[str, list[str]] = {}
    for group, members in sorted(cfg.copy_groups.items()):
        luns = [m for m in members if foreign_designator(m) is None]
        for m in members:
            text = foreign_designator(m)
            if text is not None:
                admitted.setdefault(text, []).append(f"copy group {group}, with "
                                                     f"{', '.join(luns)}")
    return [f"foreign {text}: {'; '.join(where)}" for text, where in sorted(admitted.items())]


def exposure_in_configfs(name: str, root: Path = exports.CONFIGFS_TARGET) -> frozenset[str]:
    """The initiators that reach our storage object ``name`` (any user_N HBA), as the
    daemon's copy access policy reads them."""
    for so in sorted((root / "core").glob(f"user_*/{name}")):
        hba = so.parent.name.removeprefix("user_")
        if hba.isdigit():
            return exports.exposure(int(hba), name, root)
    return frozenset()


def copy_access(cfg: config.SavedConfig,
                exposure: Callable[[str], frozenset[str]]) -> list[str]:
    """Which LUNs may be named together in one EXTENDED COPY, by the daemon's copy
    access policy: LUNs exported to exactly the same initiators, and each copy group."""
    by_set: dict[frozenset[str], list[str]] = {}
    for b in cfg.backstores:
        by_set.setdefault(exposure(b.name), []).append(b.name)
    grouped = {m for members in cfg.copy_groups.values() for m in members}
    out = []
    for seen, names in by_set.items():
        if seen and len(names) > 1:
            out.append(f"copy access: {', '.join(names)} may copy together (exported to "
                       f"exactly {', '.join(sorted(seen))})")
    for group, members in sorted(cfg.copy_groups.items()):
        out.append(f"copy access: {', '.join(members)} may copy together (copy group "
                   f"{group})")
    alone = [n for seen, names in by_set.items() for n in names
             if (not seen or len(names) == 1) and n not in grouped]
    if alone:
        out.append(f"copy access: {', '.join(alone)} may copy only within itself: export "
                   "the LUNs of one copy to the same initiators, or "
                   "`lio-xcopy /copy_groups create name=GROUP members=A,B`")
    return out


def copy_line(c: state_file.CopyState) -> str:
    """``db0 list 7: running, segment 1/2, 12.0/64.0 MiB (18%), 45.2 MiB/s, ETA 1s``"""
    done = f"{c.transferred / MiB:.1f}"
    if c.planned:
        done += f"/{c.planned / MiB:.1f} MiB ({100 * c.transferred // c.planned}%)"
    else:
        done += " MiB"
    line = (f"{c.lun} list {c.list_id}: {c.status}, segment "
            f"{min(c.segments_processed + (c.status == 'running'), c.segments)}/{c.segments}, "
            f"{done}, {c.rate / MiB:.1f} MiB/s")
    if c.status == "running" and c.rate and c.planned > c.transferred:
        line += f", ETA {(c.planned - c.transferred) / c.rate:.0f}s"
    return line


def lines(cfg: config.SavedConfig, state: state_file.DaemonState | None,
          state_path: Path = state_file.DEFAULT_PATH,
          exposure: Callable[[str], frozenset[str]] = exposure_in_configfs) -> list[str]:
    """The report, from the running configuration, the initiators configfs says reach
    each LUN, and the daemon's state."""
    out = []
    served = state.luns if state else {}
    for b in cfg.backstores:
        if isinstance(b, config.DiskConfig):
            what = f"disk {b.name}: {b.path}, {_size(b.size)}, {b.block_size}-byte blocks"
        elif isinstance(b, config.TapeConfig):
            what = f"tape {b.name}: {b.path}, capacity {_size(b.capacity)}"
        elif isinstance(b, config.ChangerConfig):
            what = f"changer {b.name}: library {b.library}"
        elif isinstance(b, config.LibraryDriveConfig):
            what = f"library drive {b.name}: drive {b.drive} of library {b.library}"
        else:
            what = f"passthrough {b.name}: device {b.device}"
        if state is None or served.get(b.name) not in (None, "unavailable"):
            health = ""
        elif b.name in served:
            health = (", UNAVAILABLE: the daemon cannot open it and answers NOT READY "
                      "(its log says why; fix it, then `systemctl reload lio-xcopy`)")
        else:
            health = ", NOT SERVED by the daemon"
        out.append(f"{what}, wwn {b.wwn}{health}")
        out += [f"  {e}" for e in _exports(cfg, b.name)] or ["  not exported"]
    if not cfg.backstores:
        out.append("no LUNs: create them, or `lio-xcopy restoreconfig`")
    out += copy_access(cfg, exposure)
    out += _foreign(cfg)
    if state is None:
        out.append(f"daemon: not running (no current {state_path}); start it with "
                   "`systemctl start lio-xcopy`")
        return out
    running = [c for c in state.copies if c.status == "running"]
    out.append(f"daemon: pid {state.pid}, serving {len(state.luns)} LUN(s), "
               f"{len(running)} copy(ies) in progress")
    out += [f"  copy {copy_line(c)}" for c in state.copies]
    return out
