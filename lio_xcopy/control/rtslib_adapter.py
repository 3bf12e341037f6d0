"""The one adapter to rtslib-fb: the control plane reaches LIO's configfs tree through
these functions, and rtslib is imported only when one of them runs (never at import
time)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lio_xcopy.errors import ConfigError

#: where configfs is mounted; LIO's tree is its ``target`` directory
CONFIGFS = Path("/sys/kernel/config")
#: rtslib-fb's dbroot, and the directories LIO itself writes under it: APTPL persistent
#: reservations (PERSISTENT RESERVE OUT fails without ``pr``) and ALUA metadata.
TARGET_DIRS = (Path("/etc/target"), Path("/etc/target/pr"), Path("/etc/target/alua"))
#: the iSCSI target portal group we create and use
TPG_TAG = 1


def rtslib() -> Any:
    """The rtslib module (rtslib-fb ships no type information)."""
    import rtslib  # rtslib-fb: imported only when provisioning

    return rtslib


def ensure_configfs() -> None:
    """rtslib needs configfs mounted, target_core_mod loaded and its dbroot present
    (kernel facts note), LIO needs ``pr`` and ``alua`` under it. Without LIO, one line
    says which step is missing and the commands that make it."""
    if not (CONFIGFS / "target").is_dir():
        if not os.path.ismount(CONFIGFS):
            raise ConfigError(
                f"LIO is not available on this host: configfs is not mounted on {CONFIGFS}; "
                f"run `modprobe configfs && mount -t configfs none {CONFIGFS} && "
                "modprobe target_core_user tcm_loop`")
        raise ConfigError(
            f"LIO is not available on this host: target_core_mod is not loaded (no "
            f"{CONFIGFS / 'target'}); run `modprobe target_core_user tcm_loop`")
    for d in TARGET_DIRS:
        d.mkdir(parents=True, exist_ok=True)


def iscsi_fabric() -> Any:
    """LIO's iSCSI fabric module; ConfigError when it cannot be loaded."""
    ensure_configfs()
    try:
        return rtslib().FabricModule("iscsi")
    except Exception as e:  # rtslib raises RTSLibError (or OSError) when unloadable
        raise ConfigError(f"the LIO iSCSI target is not available ({e}): load it with "
                          "`modprobe iscsi_target_mod`") from e


def find_target(fabric: Any, wwn: str) -> Any:
    """The fabric's target named ``wwn``, or None."""
    for target in fabric.targets:
        if target.wwn == wwn:
            return target
    return None


def tpg(target: Any) -> Any:
    """The target's portal group :data:`TPG_TAG`."""
    return rtslib().TPG(target, TPG_TAG)
