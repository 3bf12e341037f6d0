"""What the shell shows and changes in LIO: a read-only snapshot and the few steps the
control layer has no function for (an empty target, one portal, one LUN export).

Everything goes through :mod:`lio_xcopy.control.provision` and
:mod:`lio_xcopy.control.iscsi` where they have the step; rtslib is reached through
:mod:`lio_xcopy.control.rtslib_adapter`. The shell's tree takes any object with these methods,
so its unit tests run on a fake without configfs.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lio_xcopy.control import config, iscsi, provision, rtslib_adapter
from lio_xcopy.errors import ConfigError
from lio_xcopy.handler_config import SUBTYPE, HandlerConfig, parse_size

#: TPG attributes of an iSCSI target we create: explicit ACLs only (as export_iscsi sets)
ISCSI_TPG_ATTRIBUTES = {"generate_node_acls": "0", "cache_dynamic_acls": "0",
                        "demo_mode_write_protect": "1"}


@dataclass(frozen=True, slots=True)
class Backstore:
    """One LUN of ours: ``size`` is a disk's size or a tape's capacity (bytes)."""

    #: "disk", "tape", "passthrough" (path: the device's stable name), "changer" or
    #: "library_drive" (path: the library directory; drive: its drive number)
    kind: str
    name: str
    path: Path
    size: int
    wwn: str
    block_size: int | None = None
    drive: int | None = None


@dataclass(frozen=True, slots=True)
class LiveLoopbackTarget:
    """A tcm_loop target as LIO holds it now (its TPG 1): LUN id -> backstore name;
    the saved file's is :class:`lio_xcopy.control.config.LoopbackTarget`."""

    wwn: str
    luns: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What LIO holds now. ``other_names``: storage objects that are not ours (a new
    LUN may not take their names). iSCSI targets use the saved file's model."""

    backstores: tuple[Backstore, ...] = ()
    other_names: frozenset[str] = frozenset()
    loopback: tuple[LiveLoopbackTarget, ...] = ()
    iscsi: tuple[config.IscsiTarget, ...] = ()

    def backstore(self, name: str) -> Backstore | None:
        return next((b for b in self.backstores if b.name == name), None)

    def exports(self, name: str) -> list[str]:
        """Where a backstore is exported, e.g. ``loopback naa.5001405... lun 0``."""
        out = [f"loopback {t.wwn} lun {lid}" for t in self.loopback
               for lid, n in sorted(t.luns.items()) if n == name]
        out += [f"iscsi {t.iqn} tpg{g.tag} lun {lid}" for t in self.iscsi for g in t.tpgs
                for lid, n in sorted(g.luns.items()) if n == name]
        return out


def _chap(userid: str, password: str) -> config.Chap | None:
    return config.Chap(userid, password) if userid or password else None


class Lio:
    """The real LIO, through the control layer and rtslib."""

    # -- reading -------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        if not Path("/sys/kernel/config/target").is_dir():
            rtslib_adapter.ensure_configfs()  # raises the one-line "load LIO" error
        rts = rtslib_adapter.rtslib()
        ours, others = [], set()
        for so in rts.RTSRoot().storage_objects:
            if so.plugin != "user" or not (so.config or "").startswith(f"{SUBTYPE}/"):
                others.add(so.name)
                continue
            hc = HandlerConfig.parse(so.config.split("/", 1)[1])
            if hc.kind == "passthrough":
                ours.append(Backstore("passthrough", so.name, Path(hc.path), 0, so.wwn))
            elif hc.kind == "changer":
                ours.append(Backstore("changer", so.name, Path(hc.path), 0, so.wwn))
            elif "drive" in hc.options:
                ours.append(Backstore("library_drive", so.name, Path(hc.path), so.size,
                                      so.wwn, drive=int(hc.options["drive"])))
            elif hc.kind == "disk":
                ours.append(Backstore("disk", so.name, Path(hc.path), so.size, so.wwn,
                                      int(hc.options.get("block_size", "512"))))
            else:
                ours.append(Backstore("tape", so.name, Path(hc.path),
                                      parse_size(hc.options.get("capacity", "1G")), so.wwn))
        loop = []
        for t in rts.FabricModule("loopback").targets:
            luns = {lun.lun: lun.storage_object.name for tpg in t.tpgs for lun in tpg.luns}
            loop.append(LiveLoopbackTarget(t.wwn, luns))
        targets = []
        for t in rts.FabricModule("iscsi").targets:  # lists nothing when not loaded
            tpgs = []
            for g in t.tpgs:
                luns = {lun.lun: lun.storage_object.name for lun in g.luns}
                acls = tuple(config.Acl(
                    a.node_wwn,
                    tuple(config.MappedLun(m.mapped_lun, m.tpg_lun.lun, bool(m.write_protect))
                          for m in a.mapped_luns),
                    _chap(a.chap_userid, a.chap_password),
                    _chap(a.chap_mutual_userid, a.chap_mutual_password))
                    for a in g.node_acls)
                portals = tuple(config.Portal(ip, p.port, iscsi.portal_netns(ip))
                                for p in g.network_portals
                                for ip in (p.ip_address.strip("[]"),))
                attrs = {k: g.get_attribute(k) for k in ("authentication", "generate_node_acls")}
                tpgs.append(config.Tpg(g.tag, bool(g.enable), portals, luns, acls, attrs))
            targets.append(config.IscsiTarget(t.wwn, tuple(tpgs)))
        key = lambda x: x.name  # noqa: E731
        return Snapshot(tuple(sorted(ours, key=key)), frozenset(others),
                        tuple(sorted(loop, key=lambda t: t.wwn)),
                        tuple(sorted(targets, key=lambda t: t.iqn)))

    # -- backstores ----------------------------------------------------------------------
    def create_disk(self, name: str, path: Path, size: int, block_size: int,
                    wwn: str | None) -> None:
        created = not path.exists()
        try:
            provision.create_disk(name, path, size, block_size, wwn)
        except BaseException:
            if created:  # undo the sparse file we made
                with contextlib.suppress(OSError):
                    path.unlink()
            raise

    def create_tape(self, name: str, path: Path, capacity: int, wwn: str | None,
                    *, format: bool = False) -> None:  # noqa: A002
        created = not path.exists()
        try:
            provision.create_tape(name, path, capacity, wwn, format=format)
        except BaseException:
            if created:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise

    def create_changer(self, name: str, library: Path, wwn: str | None) -> None:
        provision.create_changer(name, library, wwn)

    def create_library_drive(self, name: str, library: Path, drive: int,
                             wwn: str | None) -> None:
        provision.create_library_drive(name, library, drive, wwn)

    def clear(self) -> list[str]:
        """Delete every LUN of ours, then every loopback and iSCSI target left without
        LUNs; returns what went, e.g. ``["disk db0", "loopback naa.5001405..."]``.
        Targets that still export other backstores stay."""
        rts = rtslib_adapter.rtslib()
        gone = []
        for b in self.snapshot().backstores:
            provision.delete(b.name)
            gone.append(f"{b.kind} {b.name}")
        for fabric in ("loopback", "iscsi"):
            if fabric == "iscsi" and not Path("/sys/kernel/config/target/iscsi").is_dir():
                continue
            for t in list(rts.FabricModule(fabric).targets):
                if all(not list(tpg.luns) for tpg in t.tpgs):
                    t.delete()
                    gone.append(f"{fabric} {t.wwn}")
        return gone

    def create_passthrough(self, name: str, device: str) -> None:
        provision.create_passthrough(name, device)

    def delete_backstore(self, name: str) -> None:
        provision.delete(name)

    def _lun(self, name: str) -> provision.Lun:
        for so in rtslib_adapter.rtslib().RTSRoot().storage_objects:
            if so.name == name and so.plugin == "user":
                hc = HandlerConfig.parse(so.config.split("/", 1)[1])
                return provision.Lun(name, hc.kind, Path(hc.path), so.wwn, so)
        raise ConfigError(f"no LUN named {name!r}: `ls /backstores` lists them")

    # -- loopback ------------------------------------------------------------------------
    def create_loopback(self, wwn: str | None) -> str:
        rtslib_adapter.ensure_configfs()
        rts = rtslib_adapter.rtslib()
        target = rts.Target(rts.FabricModule("loopback"), wwn)
        try:
            rts.TPG(target, 1)
        except BaseException:
            target.delete()
            raise
        return str(target.wwn)

    def delete_loopback(self, wwn: str) -> None:
        rts = rtslib_adapter.rtslib()
        for t in rts.FabricModule("loopback").targets:
            if t.wwn == wwn:
                t.delete()
                return
        raise ConfigError(f"no loopback target {wwn}: `ls /loopback` lists them")

    def export_loopback(self, wwn: str, name: str, lun_id: int | None) -> int:
        return provision.export_loopback(self._lun(name), lun_id, wwn)

    # -- iSCSI ---------------------------------------------------------------------------
    def create_iscsi(self, iqn: str | None) -> str:
        rts = rtslib_adapter.rtslib()
        fabric = rtslib_adapter.iscsi_fabric()
        target = rts.Target(fabric, iqn)
        try:
            tpg = rts.TPG(target, rtslib_adapter.TPG_TAG)
            for k, v in ISCSI_TPG_ATTRIBUTES.items():
                tpg.set_attribute(k, v)
            tpg.enable = True
        except BaseException:
            target.delete()
            raise
        return str(target.wwn)

    def delete_iscsi(self, iqn: str) -> None:
        iscsi.delete_target(iqn)

    def _tpg(self, iqn: str, tag: int) -> Any:
        rts = rtslib_adapter.rtslib()
        target = rtslib_adapter.find_target(rtslib_adapter.iscsi_fabric(), iqn)
        if target is None:
            raise ConfigError(f"no iSCSI target {iqn}: `ls /iscsi` lists them")
        return rts.TPG(target, tag, mode="lookup")

    def create_portal(self, iqn: str, tag: int, ip: str, port: int,
                      netns: str | None) -> None:
        rts = rtslib_adapter.rtslib()
        tpg = self._tpg(iqn, tag)
        host = f"[{ip}]" if ":" in ip else ip

        def make() -> Any:
            return rts.NetworkPortal(tpg, host, port)

        try:
            make() if netns is None else iscsi.in_netns(netns, make)
        except rts.RTSLibError as e:
            raise ConfigError(f"cannot listen on {host}:{port} ({e}): the address must be on "
                              "an interface of this host (or of netns=) and the port free"
                              ) from e

    def delete_portal(self, iqn: str, tag: int, ip: str, port: int) -> None:
        for p in self._tpg(iqn, tag).network_portals:
            if p.ip_address.strip("[]") == ip and p.port == port:
                p.delete()
                return
        raise ConfigError(f"no portal {ip}:{port} on {iqn}: `ls` lists the portals")

    def export_iscsi(self, iqn: str, tag: int, name: str, lun_id: int | None) -> int:
        """Add the LUN to the TPG and map it into every ACL of the TPG (as targetcli's
        auto_add_mapped_luns does); undone if a mapping fails."""
        rts = rtslib_adapter.rtslib()
        tpg = self._tpg(iqn, tag)
        lun = rts.LUN(tpg, lun=lun_id, storage_object=self._lun(name).storage_object)
        try:
            for acl in tpg.node_acls:
                used = {m.mapped_lun for m in acl.mapped_luns}
                mapped = lun.lun if lun.lun not in used else next(
                    i for i in range(config.MAX_LUN + 1) if i not in used)
                rts.MappedLUN(acl, mapped, lun)
        except BaseException:
            lun.delete()
            raise
        return int(lun.lun)

    def unexport(self, fabric: str, wwn: str, tag: int, lun_id: int) -> None:
        """Remove one LUN export (and its ACL mappings); the backstore stays."""
        rts = rtslib_adapter.rtslib()
        tpg = (self._tpg(wwn, tag) if fabric == "iscsi" else next(
            (rts.TPG(t, tag, mode="lookup") for t in rts.FabricModule("loopback").targets
             if t.wwn == wwn), None))
        for lun in tpg.luns if tpg is not None else ():
            if lun.lun == lun_id:
                lun.delete()
                return
        raise ConfigError(f"{wwn} has no LUN {lun_id}: `ls` lists its LUNs")

    def allow(self, iqn: str, initiator: str, chap: tuple[str, str] | None,
              mutual_chap: tuple[str, str] | None) -> list[int]:
        """A new ACL seeing every LUN of the TPG; removed again if the rest fails."""
        try:
            return iscsi.allow_initiator(iqn, initiator, None, chap, mutual_chap)
        except BaseException:
            with contextlib.suppress(Exception):
                iscsi.deny_initiator(iqn, initiator)
            raise

    def deny(self, iqn: str, initiator: str) -> None:
        iscsi.deny_initiator(iqn, initiator)
