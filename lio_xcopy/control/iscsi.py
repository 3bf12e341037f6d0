"""Exporting LUNs over iSCSI through rtslib-fb: targets, portals, ACLs and CHAP.

Create-or-lookup, as :mod:`lio_xcopy.control.provision` does: exporting a LUN that the
target already exports returns its LUN id; allowing an initiator that already has an
ACL updates its mapped LUNs and secrets.

Access is always by explicit ACL (``generate_node_acls=0``): an initiator without one is
refused at login. CHAP is per ACL; a target whose ACLs carry CHAP secrets requires CHAP
from every initiator (TPG attribute ``authentication=1``).

The portal's listening socket belongs to the network namespace of the process (thread)
that creates it: ``export_iscsi(..., netns=NAME)`` creates it from a thread that has
entered ``/run/netns/NAME`` (``ip netns add NAME``), so a target can listen inside a
namespace while the daemon runs outside it.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from lio_xcopy.control import rtslib_adapter, validators
from lio_xcopy.control.validators import CHAP_MAX, is_chap_text, is_iscsi_name
from lio_xcopy.errors import ConfigError

T = TypeVar("T")


class Exportable(Protocol):
    """What is exported as a LUN: a :class:`provision.Lun`, or any storage object
    with a name."""

    name: str
    storage_object: Any

CLONE_NEWNET = 0x40000000

@dataclass(frozen=True, slots=True)
class IscsiExport:
    """Where an initiator finds a LUN: target name, portal, LUN id."""

    target_iqn: str
    portal_ip: str
    port: int
    lun_id: int

    @property
    def portal(self) -> str:
        ip = ipaddress.ip_address(self.portal_ip)
        host = f"[{ip}]" if ip.version == 6 else str(ip)
        return f"{host}:{self.port}"


def _iqn(name: str, what: str) -> str:
    iqn = name.strip().lower()
    if not is_iscsi_name(iqn):
        raise ConfigError(f"{what} {name!r} is not an iSCSI name: write it as "
                          "iqn.YYYY-MM.reversed.domain:unique-part (no spaces or '_')")
    return iqn


def in_netns(netns: str | os.PathLike[str], fn: Callable[[], T]) -> T:
    """Run ``fn()`` in a fresh thread that has entered network namespace ``netns``
    (a name under /run/netns or a path); return its result or raise its error."""
    path = Path(netns) if os.sep in str(netns) else Path("/run/netns") / str(netns)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise ConfigError(f"network namespace {str(netns)!r} not found ({e.strerror}): "
                          f"create it with `ip netns add {netns}`") from e
    out: list[T] = []
    failed: list[BaseException] = []

    def worker() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise ConfigError(f"cannot enter network namespace {str(netns)!r}: "
                                  f"{os.strerror(err)}; run as root")
            out.append(fn())  # this thread ends here: the process's namespace is untouched
        except BaseException as e:  # handed to the caller
            failed.append(e)

    try:
        t = threading.Thread(target=worker, name=f"netns-{netns}")
        t.start()
        t.join()
    finally:
        os.close(fd)
    if failed:
        raise failed[0]
    return out[0]


def export_iscsi(lun: Exportable, target_iqn: str, portal_ip: str, port: int = 3260,
                 lun_id: int | None = None, *,
                 netns: str | os.PathLike[str] | None = None) -> IscsiExport:
    """Export ``lun`` (a :class:`provision.Lun`) on iSCSI target ``target_iqn``, TPG 1,
    listening on ``portal_ip:port``; create whatever is missing. Returns where it is."""
    rts = rtslib_adapter.rtslib()
    iqn = _iqn(target_iqn, "target name")
    ip = validators.portal_ip(portal_ip)
    if not 0 < int(port) < 65536:
        raise ConfigError(f"port {port}: use 1-65535 (3260 is iSCSI's)")
    fabric = rtslib_adapter.iscsi_fabric()
    try:
        target = rts.Target(fabric, iqn)
        tpg = rtslib_adapter.tpg(target)
        if not any(p.ip_address.strip("[]") == ip and p.port == int(port)
                   for p in tpg.network_portals):
            host = f"[{ip}]" if ":" in ip else ip

            def make_portal() -> Any:
                return rts.NetworkPortal(tpg, host, int(port))

            try:
                make_portal() if netns is None else in_netns(netns, make_portal)
            except rts.RTSLibError as e:
                raise ConfigError(
                    f"cannot listen on {host}:{port} ({e}): the address must be on an "
                    "interface of this host (or of the given network namespace) and the "
                    "port free") from e
        tpg.set_attribute("generate_node_acls", "0")
        tpg.set_attribute("cache_dynamic_acls", "0")
        tpg.set_attribute("demo_mode_write_protect", "1")
        if not tpg.enable:
            tpg.enable = True
        for existing in tpg.luns:
            if existing.storage_object.name == lun.name:
                if lun_id is not None and existing.lun != lun_id:
                    raise ConfigError(
                        f"LUN {lun.name!r} is already LUN {existing.lun} of {iqn}: "
                        f"unexport it first or use lun_id={existing.lun}")
                return IscsiExport(iqn, ip, int(port), existing.lun)
        if lun_id is not None and any(x.lun == lun_id for x in tpg.luns):
            raise ConfigError(f"LUN id {lun_id} of {iqn} is taken: choose another or "
                              "leave lun_id out")
        new = rts.LUN(tpg, lun=lun_id, storage_object=lun.storage_object)
        return IscsiExport(iqn, ip, int(port), new.lun)
    except rts.RTSLibError as e:
        raise ConfigError(f"exporting {lun.name!r} on {iqn} failed: {e}") from e


def _check_chap(pair: Any, what: str) -> tuple[str, str] | None:
    if pair is None:
        return None
    try:
        user, secret = pair
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what} must be (user, password)") from e
    for v, name in ((user, "user"), (secret, "password")):
        if not isinstance(v, str) or not is_chap_text(v) or v == "NULL":
            raise ConfigError(f"{what} {name} must be 1-{CHAP_MAX} characters without "
                              "spaces (and not 'NULL')")
    return user, secret


def allow_initiator(target_iqn: str, initiator_iqn: str,
                    luns: Iterable[int | object] | None = None,
                    chap: tuple[str, str] | None = None,
                    mutual_chap: tuple[str, str] | None = None,
                    *, write_protect: bool = False) -> list[int]:
    """Let ``initiator_iqn`` log in to ``target_iqn`` and see ``luns`` (LUN ids or
    :class:`provision.Lun`; default: every LUN of the target), with CHAP when given
    (``mutual_chap``: the secret the target answers with). Returns the mapped LUN ids."""
    rts = rtslib_adapter.rtslib()
    iqn = _iqn(target_iqn, "target name")
    ini = _iqn(initiator_iqn, "initiator name")
    chap = _check_chap(chap, "chap")
    mutual_chap = _check_chap(mutual_chap, "mutual_chap")
    if mutual_chap and not chap:
        raise ConfigError("mutual_chap needs chap too: the initiator authenticates first")
    if chap and mutual_chap and chap[1] == mutual_chap[1]:
        raise ConfigError("use different passwords for chap and mutual_chap (RFC 7143)")
    fabric = rtslib_adapter.iscsi_fabric()
    target = rtslib_adapter.find_target(fabric, iqn)
    if target is None:
        raise ConfigError(f"no iSCSI target {iqn}: export a LUN on it first "
                          "(export_iscsi)")
    try:
        tpg = rtslib_adapter.tpg(target)
        by_id = {x.lun: x for x in tpg.luns}
        want: list[int] = []
        for item in (by_id if luns is None else luns):
            lid: int | None
            if isinstance(item, int):
                lid = item
            else:
                lid = next((x.lun for x in by_id.values()
                            if x.storage_object.name == getattr(item, "name", None)), None)
                if lid is None:
                    raise ConfigError(f"LUN {getattr(item, 'name', item)!r} is not exported "
                                      f"on {iqn}: export_iscsi it first")
            if lid not in by_id:
                raise ConfigError(f"{iqn} has no LUN {lid}: it has {sorted(by_id)}")
            want.append(lid)
        others_chap = [a for a in tpg.node_acls if a.node_wwn != ini and a.chap_userid]
        others_plain = [a for a in tpg.node_acls if a.node_wwn != ini and not a.chap_userid]
        if chap is None and others_chap:
            raise ConfigError(f"{iqn} requires CHAP (other initiators have secrets): give "
                              f"chap=(user, password) for {ini} too")
        if chap is not None and others_plain:
            raise ConfigError(f"{iqn} has initiators without CHAP "
                              f"({', '.join(a.node_wwn for a in others_plain)}): give them "
                              "secrets too, or export on another target")
        acl = rts.NodeACL(tpg, ini)
        kept = set()
        for m in list(acl.mapped_luns):
            if m.mapped_lun in want and m.tpg_lun.lun == m.mapped_lun \
                    and bool(m.write_protect) == write_protect:
                kept.add(m.mapped_lun)
            else:
                m.delete()
        for lid in want:
            if lid not in kept:
                rts.MappedLUN(acl, lid, by_id[lid], write_protect=write_protect)
        acl.chap_userid, acl.chap_password = chap or ("", "")
        acl.chap_mutual_userid, acl.chap_mutual_password = mutual_chap or ("", "")
        tpg.set_attribute("authentication", "1" if chap else "0")
        return sorted(want)
    except rts.RTSLibError as e:
        raise ConfigError(f"allowing {ini} on {iqn} failed: {e}") from e


def deny_initiator(target_iqn: str, initiator_iqn: str) -> None:
    """Remove an initiator's ACL (its sessions end)."""
    rts = rtslib_adapter.rtslib()
    iqn = _iqn(target_iqn, "target name")
    ini = _iqn(initiator_iqn, "initiator name")
    target = rtslib_adapter.find_target(rtslib_adapter.iscsi_fabric(), iqn)
    if target is not None:
        for acl in rtslib_adapter.tpg(target).node_acls:
            if acl.node_wwn == ini:
                try:
                    acl.delete()
                except rts.RTSLibError as e:
                    raise ConfigError(f"removing {ini} from {iqn} failed: {e}") from e
                return
    raise ConfigError(f"{ini} has no ACL on {iqn}: nothing to remove")


def delete_target(target_iqn: str) -> None:
    """Remove an iSCSI target with its portals, ACLs and LUN exports (the LUNs stay)."""
    rts = rtslib_adapter.rtslib()
    iqn = _iqn(target_iqn, "target name")
    target = rtslib_adapter.find_target(rtslib_adapter.iscsi_fabric(), iqn)
    if target is None:
        raise ConfigError(f"no iSCSI target {iqn}: `targetcli ls /iscsi` lists them")
    try:
        target.delete()
    except rts.RTSLibError as e:
        raise ConfigError(f"deleting {iqn} failed ({e}): log its initiators out and "
                          "retry") from e


def list_targets() -> list[str]:
    """The IQNs of the iSCSI targets configured in LIO."""
    return sorted(t.wwn for t in rtslib_adapter.iscsi_fabric().targets)


# --- the pieces a saved configuration is restored from -------------------------------------
#: TPG attributes a saved configuration keeps (the ones lio-xcopy sets)
SAVED_ATTRIBUTES = ("authentication", "generate_node_acls", "cache_dynamic_acls",
                    "demo_mode_write_protect")


def _target_tpg(target_iqn: str, tag: int, *, create: bool = True) -> Any:
    rts = rtslib_adapter.rtslib()
    fabric = rtslib_adapter.iscsi_fabric()
    target = (rts.Target(fabric, target_iqn) if create
              else rtslib_adapter.find_target(fabric, target_iqn))
    if target is None:
        raise ConfigError(f"no iSCSI target {target_iqn}")
    return rts.TPG(target, tag, mode="any" if create else "lookup")


def ensure_tpg(target_iqn: str, tag: int, *, enable: bool, attributes: dict[str, str]) -> None:
    """Create-or-lookup target ``target_iqn`` and its TPG ``tag``; set its attributes,
    then its enable flag."""
    rts = rtslib_adapter.rtslib()
    try:
        tpg = _target_tpg(target_iqn, tag)
        for k, v in attributes.items():
            tpg.set_attribute(k, v)
        if bool(tpg.enable) != enable:
            tpg.enable = enable
    except rts.RTSLibError as e:
        raise ConfigError(f"setting up {target_iqn} TPG {tag} failed: {e}") from e


def ensure_portal(target_iqn: str, tag: int, ip: str, port: int,
                  netns: str | None = None) -> None:
    """Create-or-lookup a network portal, listening in ``netns`` when given."""
    rts = rtslib_adapter.rtslib()
    tpg = _target_tpg(target_iqn, tag)
    ip = validators.portal_ip(ip)
    if any(p.ip_address.strip("[]") == ip and p.port == port for p in tpg.network_portals):
        return
    host = f"[{ip}]" if ":" in ip else ip

    def make() -> Any:
        return rts.NetworkPortal(tpg, host, port)

    try:
        make() if netns is None else in_netns(netns, make)
    except rts.RTSLibError as e:
        raise ConfigError(f"cannot listen on {host}:{port} ({e}): the address must be on an "
                          "interface of this host (or of its network namespace) and the "
                          "port free") from e


def ensure_lun(target_iqn: str, tag: int, lun_id: int, storage_object: Any) -> None:
    """Export a storage object as LUN ``lun_id`` of the TPG (create-or-lookup)."""
    rts = rtslib_adapter.rtslib()
    tpg = _target_tpg(target_iqn, tag)
    for existing in tpg.luns:
        if existing.lun == lun_id:
            if existing.storage_object.name != storage_object.name:
                raise ConfigError(f"LUN {lun_id} of {target_iqn} is "
                                  f"{existing.storage_object.name!r}: unexport it first")
            return
    try:
        rts.LUN(tpg, lun=lun_id, storage_object=storage_object)
    except rts.RTSLibError as e:
        raise ConfigError(f"exporting LUN {lun_id} on {target_iqn} failed: {e}") from e


def ensure_acl(target_iqn: str, tag: int, initiator: str,
               chap: tuple[str, str] | None, mutual_chap: tuple[str, str] | None) -> None:
    """Create-or-lookup an initiator's ACL and set (or clear) its CHAP secrets."""
    rts = rtslib_adapter.rtslib()
    tpg = _target_tpg(target_iqn, tag)
    try:
        acl = rts.NodeACL(tpg, initiator)
        acl.chap_userid, acl.chap_password = chap or ("", "")
        acl.chap_mutual_userid, acl.chap_mutual_password = mutual_chap or ("", "")
    except rts.RTSLibError as e:
        raise ConfigError(f"ACL for {initiator} on {target_iqn} failed: {e}") from e


def ensure_mapped_lun(target_iqn: str, tag: int, initiator: str, mapped_lun: int,
                      tpg_lun: int, *, write_protect: bool) -> None:
    """Let an ACL's initiator see TPG LUN ``tpg_lun`` as ``mapped_lun``."""
    rts = rtslib_adapter.rtslib()
    tpg = _target_tpg(target_iqn, tag)
    try:
        acl = rts.NodeACL(tpg, initiator, mode="lookup")
        lun = next((x for x in tpg.luns if x.lun == tpg_lun), None)
        if lun is None:
            raise ConfigError(f"{target_iqn} has no LUN {tpg_lun} to map for {initiator}")
        rts.MappedLUN(acl, mapped_lun, lun, write_protect=write_protect)
    except rts.RTSLibError as e:
        raise ConfigError(f"mapping LUN {tpg_lun} for {initiator} on {target_iqn} "
                          f"failed: {e}") from e


def _has_address(ip: str, netns: str | None) -> bool:
    import subprocess

    cmd = ["ip", *(["-n", netns] if netns else []), "-o", "addr", "show"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(f" {ip}/" in line for line in out.splitlines())


def portal_netns(ip: str, netns_dir: Path = Path("/run/netns")) -> str | None:
    """The named network namespace (``ip netns``) whose interfaces hold ``ip``, when the
    host's own do not: where a saved portal has to listen again."""
    if ipaddress.ip_address(ip).is_unspecified or _has_address(ip, None):
        return None
    names = sorted(p.name for p in netns_dir.iterdir()) if netns_dir.is_dir() else []
    return next((n for n in names if _has_address(ip, n)), None)


def running_targets(ours: set[str]) -> list[dict[str, Any]]:
    """The iSCSI targets LIO holds, as plain data, keeping only LUNs of the storage
    objects named in ``ours`` (and targets that have at least one)."""
    if not Path("/sys/kernel/config/target/iscsi").is_dir():
        return []
    out = []
    for target in rtslib_adapter.rtslib().FabricModule("iscsi").targets:
        tpgs = []
        for tpg in target.tpgs:
            luns = {x.lun: x.storage_object.name for x in tpg.luns
                    if x.storage_object.name in ours}
            if not luns:
                continue
            acls = []
            for acl in tpg.node_acls:
                mapped = [(m.mapped_lun, m.tpg_lun.lun, bool(m.write_protect))
                          for m in acl.mapped_luns if m.tpg_lun.lun in luns]
                acls.append({
                    "initiator": acl.node_wwn, "mapped_luns": sorted(mapped),
                    "chap": (acl.chap_userid, acl.chap_password) if acl.chap_userid else None,
                    "mutual_chap": ((acl.chap_mutual_userid, acl.chap_mutual_password)
                                    if acl.chap_mutual_userid else None),
                })
            tpgs.append({
                "tag": tpg.tag, "enable": bool(tpg.enable),
                "attributes": {k: str(tpg.get_attribute(k)) for k in SAVED_ATTRIBUTES},
                "portals": [(p.ip_address.strip("[]"), int(p.port),
                             portal_netns(p.ip_address.strip("[]")))
                            for p in tpg.network_portals],
                "luns": luns, "acls": acls,
            })
        if tpgs:
            out.append({"iqn": target.wwn, "tpgs": tpgs})
    return out
