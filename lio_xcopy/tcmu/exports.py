"""Who can reach a storage object: its exports and ACLs as LIO's configfs shows them.

TCMU does not tell the daemon which initiator sent a command, so the copy manager asks
this instead: the set of initiators a LUN is exported to (an ACL's initiator name, a
loopback nexus, or "any initiator of this TPG" in demo mode). Two LUNs with the same
set may appear together in one EXTENDED COPY (the CVE-2020-28374 class of leak is
copying from or to a LUN the sender cannot see).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CONFIGFS_TARGET = Path("/sys/kernel/config/target")


def _links(folder: str) -> list[str]:
    """Where the symlinks in ``folder`` point, as normalized absolute paths (configfs
    links are relative, ``../../../../core/user_1/db0``): one ``readlink`` each and no
    ``stat``, as :func:`exposure` reads them at every copy."""
    out = []
    try:
        with os.scandir(folder) as entries:
            for e in entries:
                if e.is_symlink():
                    with contextlib.suppress(OSError):  # removed meanwhile
                        out.append(os.path.normpath(os.path.join(folder, os.readlink(e.path))))
    except OSError:  # the folder went away (the LUN was deleted)
        pass
    return out


def _subfolders(folder: str, prefix: str = "") -> list[str]:
    """The folders in ``folder`` whose names start with ``prefix``, sorted."""
    try:
        with os.scandir(folder) as entries:
            return sorted(e.path for e in entries
                          if e.name.startswith(prefix) and e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def _luns_of(tpg: str, so: str) -> list[str]:
    """The TPG's lun_N directories whose storage object link points at ``so``."""
    return [lun for lun in _subfolders(os.path.join(tpg, "lun"), "lun_")
            if so in _links(lun)]


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def exposure(hba: int, name: str, root: Path = CONFIGFS_TARGET) -> frozenset[str]:
    """The initiators that can reach storage object ``user_<hba>/<name>``."""
    top = os.path.realpath(root)
    so = os.path.join(top, "core", f"user_{hba}", name)
    seen: set[str] = set()
    for fabric in _subfolders(top):
        if os.path.basename(fabric) == "core":
            continue
        fabric_name = os.path.basename(fabric)
        for target in _subfolders(fabric):
            for tpg in _subfolders(target, "tpgt_"):
                luns = set(_luns_of(tpg, so))
                if not luns:
                    continue
                nexus = _read(Path(tpg, "nexus"))
                if nexus:  # tcm_loop: one SCSI host, one initiator port
                    seen.add(f"{fabric_name}:{nexus}")
                    continue
                if _read(Path(tpg, "attrib", "generate_node_acls")) == "1":
                    seen.add(f"{fabric_name}:{os.path.basename(target)}/"
                             f"{os.path.basename(tpg)}:*")
                    continue
                for acl in _subfolders(os.path.join(tpg, "acls")):
                    if any(luns.intersection(_links(mapped))
                           for mapped in _subfolders(acl, "lun_")):
                        seen.add(f"{fabric_name}:{os.path.basename(acl)}")
    return frozenset(seen)
