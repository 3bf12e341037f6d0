"""LIO in memory for the administrator's shell: a pytest plugin with the ``lio`` fixture,
a :class:`FakeLio` with the real :class:`~lio_xcopy.control.shell.lio.Lio`'s interface."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from lio_xcopy.control import config
from lio_xcopy.control.shell.lio import Backstore, LiveLoopbackTarget, Snapshot


class FakeLio:
    """LIO in memory, with the real one's interface; ``calls`` records the changes."""

    def __init__(self) -> None:
        self.backstores: dict[str, Backstore] = {}
        self.others: set[str] = {"fileio0"}
        self.loop: dict[str, dict[int, str]] = {}
        self.iscsi: dict[str, config.Tpg] = {}
        self.calls: list[tuple] = []
        self.serial = 0

    def snapshot(self) -> Snapshot:
        return Snapshot(
            tuple(sorted(self.backstores.values(), key=lambda b: b.name)),
            frozenset(self.others),
            tuple(LiveLoopbackTarget(w, dict(luns)) for w, luns in sorted(self.loop.items())),
            tuple(config.IscsiTarget(i, (g,)) for i, g in sorted(self.iscsi.items())))

    def _wwn(self) -> str:
        self.serial += 1
        return f"00000000-0000-4000-8000-{self.serial:012d}"

    def create_disk(self, name, path, size, block_size, wwn):
        self.calls.append(("create_disk", name, path, size, block_size, wwn))
        self.backstores[name] = Backstore("disk", name, path, size, wwn or self._wwn(),
                                          block_size)

    def create_tape(self, name, path, capacity, wwn, **kw):
        self.calls.append(("create_tape", name, path, capacity, wwn, *kw.values()))
        self.backstores[name] = Backstore("tape", name, path, capacity, wwn or self._wwn())

    def create_changer(self, name, library, wwn):
        self.calls.append(("create_changer", name, library, wwn))
        self.backstores[name] = Backstore("changer", name, library, 0, wwn or self._wwn())

    def create_library_drive(self, name, library, drive, wwn):
        self.calls.append(("create_library_drive", name, library, drive, wwn))
        self.backstores[name] = Backstore("library_drive", name, library, 1 << 30,
                                          wwn or self._wwn(), drive=drive)

    def clear(self):
        self.calls.append(("clear",))
        gone = [f"{b.kind} {b.name}" for b in self.backstores.values()]
        gone += [f"loopback {w}" for w in self.loop] + [f"iscsi {i}" for i in self.iscsi]
        self.backstores.clear(), self.loop.clear(), self.iscsi.clear()
        return gone

    def create_passthrough(self, name, device):
        self.calls.append(("create_passthrough", name, device))
        self.backstores[name] = Backstore("passthrough", name, Path(device), 0, self._wwn())

    def delete_backstore(self, name):
        self.calls.append(("delete", name))
        del self.backstores[name]
        for luns in self.loop.values():
            for k in [k for k, v in luns.items() if v == name]:
                del luns[k]

    def create_loopback(self, wwn):
        wwn = wwn or "naa.5001405000000001"
        self.calls.append(("create_loopback", wwn))
        self.loop[wwn] = {}
        return wwn

    def delete_loopback(self, wwn):
        self.calls.append(("delete_loopback", wwn))
        del self.loop[wwn]

    def _free(self, luns, lun_id):
        return lun_id if lun_id is not None else min(set(range(100)) - set(luns))

    def export_loopback(self, wwn, name, lun_id):
        self.calls.append(("export_loopback", wwn, name, lun_id))
        got = self._free(self.loop[wwn], lun_id)
        self.loop[wwn][got] = name
        return got

    def create_iscsi(self, iqn):
        iqn = iqn or "iqn.2003-01.org.linux-iscsi.host:sn.1"
        self.calls.append(("create_iscsi", iqn))
        self.iscsi[iqn] = config.Tpg(1)
        return iqn

    def delete_iscsi(self, iqn):
        self.calls.append(("delete_iscsi", iqn))
        del self.iscsi[iqn]

    def create_portal(self, iqn, tag, ip, port, netns):
        self.calls.append(("create_portal", iqn, tag, ip, port, netns))
        g = self.iscsi[iqn]
        self.iscsi[iqn] = replace(g, portals=(*g.portals, config.Portal(ip, port)))

    def delete_portal(self, iqn, tag, ip, port):
        self.calls.append(("delete_portal", iqn, tag, ip, port))
        g = self.iscsi[iqn]
        self.iscsi[iqn] = replace(g, portals=tuple(
            p for p in g.portals if p != config.Portal(ip, port)))

    def export_iscsi(self, iqn, tag, name, lun_id):
        self.calls.append(("export_iscsi", iqn, tag, name, lun_id))
        g = self.iscsi[iqn]
        got = self._free(g.luns, lun_id)
        self.iscsi[iqn] = replace(g, luns={**g.luns, got: name})
        return got

    def unexport(self, fabric, wwn, tag, lun_id):
        self.calls.append(("unexport", fabric, wwn, tag, lun_id))
        if fabric == "loopback":
            del self.loop[wwn][lun_id]
        else:
            g = self.iscsi[wwn]
            self.iscsi[wwn] = replace(g, luns={k: v for k, v in g.luns.items() if k != lun_id})

    def allow(self, iqn, initiator, chap, mutual_chap):
        self.calls.append(("allow", iqn, initiator, chap, mutual_chap))
        g = self.iscsi[iqn]
        acl = config.Acl(initiator, tuple(config.MappedLun(k, k) for k in sorted(g.luns)),
                         config.Chap(*chap) if chap else None,
                         config.Chap(*mutual_chap) if mutual_chap else None)
        self.iscsi[iqn] = replace(g, acls=(*g.acls, acl),
                                  attributes={"authentication": "1" if chap else "0"})
        return sorted(g.luns)

    def deny(self, iqn, initiator):
        self.calls.append(("deny", iqn, initiator))
        g = self.iscsi[iqn]
        self.iscsi[iqn] = replace(g, acls=tuple(a for a in g.acls if a.initiator != initiator))


@pytest.fixture
def lio():
    return FakeLio()
