"""LIO's configfs (``/sys/kernel/config/target``) as plain files under a test's folder:
a pytest plugin with the ``configfs`` fixture.

Only what lio-xcopy reads is made, shaped as the 6.1 kernel shows it:

* a storage object: ``core/user_<hba>/<name>/`` with ``info`` (``Config: ...``),
  ``wwn/vpd_unit_serial`` and ``alua/default_tg_pt_gp/members``;
* a fabric's LUN: ``<fabric>/<wwn>/tpgt_<n>/lun/lun_<id>/`` holding a symlink to its
  storage object; the LUN is added to the storage object's ALUA ``members``;
* symlinks relative, as configfs gives them (``../../../../../core/user_1/db0``);
* a loopback TPG's ``nexus`` and ``address``; an ACL's mapped LUN; demo mode.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


class FakeConfigfs:
    """A configfs tree under :attr:`root`; :attr:`core` is its ``core`` folder."""

    def __init__(self, root: Path):
        self.root = root
        self.core = root / "core"
        root.mkdir(parents=True, exist_ok=True)

    def storage_object(self, name: str, *, hba: int = 1, config: str | None = None,
                       size: int = 1 << 20, serial: str | None = None) -> Path:
        so = self.core / f"user_{hba}" / name
        (so / "alua" / "default_tg_pt_gp").mkdir(parents=True)
        (so / "alua" / "default_tg_pt_gp" / "members").write_text("")
        if config is not None:
            (so / "info").write_text(f"Status: ACTIVATED  Config: {config} Size: {size} ")
        if serial is not None:
            (so / "wwn").mkdir()
            (so / "wwn" / "vpd_unit_serial").write_text(
                f"T10 VPD Unit Serial Number: {serial}\n")
        return so

    def remove(self, so: Path) -> None:
        """Delete a storage object (its LUNs must be gone: LIO refuses otherwise)."""
        shutil.rmtree(so)

    def tpg(self, fabric: str, wwn: str, tpgt: int = 1) -> Path:
        d = self.root / fabric / wwn / f"tpgt_{tpgt}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def lun(self, fabric: str, wwn: str, lun: int, so: Path, *, tpgt: int = 1) -> Path:
        """Export storage object ``so`` as LUN ``lun`` of a fabric's TPG."""
        d = self.tpg(fabric, wwn, tpgt) / "lun" / f"lun_{lun}"
        d.mkdir(parents=True)
        (d / "a1b2c3").symlink_to(os.path.relpath(so, d))
        (d / "alua_tg_pt_gp").write_text("default_tg_pt_gp\n")
        members = so / "alua" / "default_tg_pt_gp" / "members"
        if members.exists():
            members.write_text(members.read_text() + f"{fabric}/{wwn}/tpgt_{tpgt}/lun_{lun}\n")
        return d

    def nexus(self, wwn: str, initiator: str, *, tpgt: int = 1) -> None:
        """A loopback TPG's I_T nexus, by the initiator port's name."""
        (self.tpg("loopback", wwn, tpgt) / "nexus").write_text(f"{initiator}\n")

    def address(self, wwn: str, host_channel_target: str, *, tpgt: int = 1) -> None:
        """Where the loopback TPG's LUNs appear: ``H:C:T`` (LUN id appended)."""
        (self.tpg("loopback", wwn, tpgt) / "address").write_text(f"{host_channel_target}\n")

    def acl(self, fabric: str, wwn: str, initiator: str, mapped: int, lun: Path, *,
            tpgt: int = 1) -> None:
        """Map the TPG's LUN ``lun`` (a path :meth:`lun` made) for ``initiator``."""
        d = self.tpg(fabric, wwn, tpgt) / "acls" / initiator / f"lun_{mapped}"
        d.mkdir(parents=True)
        (d / "write_protect").write_text("0\n")
        (d / "f00d").symlink_to(os.path.relpath(lun, d))

    def demo_mode(self, fabric: str, wwn: str, *, tpgt: int = 1) -> None:
        """Every initiator may log in and sees every LUN (``generate_node_acls``)."""
        attrib = self.tpg(fabric, wwn, tpgt) / "attrib"
        attrib.mkdir(exist_ok=True)
        (attrib / "generate_node_acls").write_text("1\n")


@pytest.fixture
def configfs(tmp_path: Path) -> FakeConfigfs:
    return FakeConfigfs(tmp_path / "configfs")
