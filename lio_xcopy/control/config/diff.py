"""Comparing saved configurations: :func:`diff` lists what a restore would create,
change or remove, so restoring twice is harmless."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lio_xcopy.control.config.model import SavedConfig, kind_of


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
class Entry:
    kind: str
    item: Any
    identity: Any  # differs: remove and create
    settings: Any  # differs only: change in place
    deps: tuple[tuple[Any, ...], ...]
    depth: int


def entries(cfg: SavedConfig) -> dict[tuple[Any, ...], Entry]:
    e: dict[tuple[Any, ...], Entry] = {}
    for b in cfg.backstores:
        e[("backstore", b.name)] = Entry(kind_of(b), b, b, None, (), 0)
    for lb in cfg.loopback:
        for lun_id, name in lb.luns.items():
            e[("loopback", lb.wwn, lun_id)] = Entry("loopback", name, name, None,
                                                    (("backstore", name),), 1)
    for t in cfg.iscsi:
        e[("target", t.iqn)] = Entry("target", t, None, None, (), 0)
        for g in t.tpgs:
            tk = ("tpg", t.iqn, g.tag)
            e[tk] = Entry("tpg", g, None, (g.enable, sorted(g.attributes.items())),
                           (("target", t.iqn),), 1)
            for p in g.portals:
                e[("portal", t.iqn, g.tag, p.ip, p.port)] = Entry("portal", p, None, None,
                                                                  (tk,), 2)
            for lun_id, name in g.luns.items():
                e[("lun", t.iqn, g.tag, lun_id)] = Entry("lun", name, name, None,
                                                          (tk, ("backstore", name)), 2)
            for a in g.acls:
                ak = ("acl", t.iqn, g.tag, a.initiator)
                e[ak] = Entry("acl", a, None, (a.chap, a.mutual_chap), (tk,), 2)
                for m in a.mapped_luns:
                    e[("mapped_lun", *ak[1:], m.mapped_lun)] = Entry(
                        "mapped_lun", m, m, None, (ak, ("lun", t.iqn, g.tag, m.tpg_lun)), 3)
    for name, members in cfg.copy_groups.items():
        e[("copy_group", name)] = Entry("copy_group", members, None, members, (), 1)
    return e


def diff(current: SavedConfig, wanted: SavedConfig) -> tuple[Change, ...]:
    """What turns ``current`` into ``wanted``: removals (innermost first), then creations
    (outermost first), then in-place changes. Empty when they are the same, so a restore
    that applies it is idempotent. A changed backstore or LUN is removed and created
    again, and so is everything that hangs on it."""
    a, b = entries(current), entries(wanted)
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
