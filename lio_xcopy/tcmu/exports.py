"""Who can reach a storage object: its exports and ACLs as LIO's configfs shows them.

TCMU does not tell the daemon which initiator sent a command, so the copy manager asks
this instead: the set of initiators a LUN is exported to (an ACL's initiator name, a
loopback nexus, or "any initiator of this TPG" in demo mode). Two LUNs with the same
set may appear together in one EXTENDED COPY (the CVE-2020-28374 class of leak is
copying from or to a LUN the sender cannot see).
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIGFS_TARGET = Path("/sys/kernel/config/target")


def _points_to(link: Path, target: Path) -> bool:
    try:
        return link.is_symlink() and Path(os.path.realpath(link)) == Path(
            os.path.realpath(target))
    except OSError:
        return False


def _luns_of(tpg: Path, so: Path) -> list[Path]:
    """The TPG's lun_N directories whose storage object link points at ``so``."""
    out = []
    for lun in sorted((tpg / "lun").glob("lun_*")):
        if any(_points_to(e, so) for e in lun.iterdir()):
            out.append(lun)
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def exposure(hba: int, name: str, root: Path = CONFIGFS_TARGET) -> frozenset[str]:
    """The initiators that can reach storage object ``user_<hba>/<name>``."""
    so = root / "core" / f"user_{hba}" / name
    seen: set[str] = set()
    for fabric in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "core"):
        for target in sorted(p for p in fabric.iterdir() if p.is_dir()):
            for tpg in sorted(target.glob("tpgt_*")):
                luns = _luns_of(tpg, so)
                if not luns:
                    continue
                nexus = _read(tpg / "nexus")
                if nexus:  # tcm_loop: one SCSI host, one initiator port
                    seen.add(f"{fabric.name}:{nexus}")
                    continue
                if _read(tpg / "attrib" / "generate_node_acls") == "1":
                    seen.add(f"{fabric.name}:{target.name}/{tpg.name}:*")
                    continue
                for acl in sorted(p for p in (tpg / "acls").glob("*") if p.is_dir()):
                    for mapped in acl.glob("lun_*"):
                        if any(_points_to(e, lun) for e in mapped.iterdir() for lun in luns):
                            seen.add(f"{fabric.name}:{acl.name}")
    return frozenset(seen)
