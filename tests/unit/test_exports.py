"""Who can reach a LUN, from a fake configfs tree shaped like LIO's."""

from __future__ import annotations

from pathlib import Path

from lio_xcopy.tcmu.exports import exposure


def so(root: Path, hba: int, name: str) -> Path:
    p = root / "core" / f"user_{hba}" / name
    p.mkdir(parents=True)
    return p


def tpg_lun(root: Path, fabric: str, wwn: str, tpgt: int, lun: int, target: Path) -> Path:
    d = root / fabric / wwn / f"tpgt_{tpgt}" / "lun" / f"lun_{lun}"
    d.mkdir(parents=True)
    (d / "a1b2c3").symlink_to(target)
    (d / "alua_tg_pt_gp").write_text("default_tg_pt_gp\n")
    return d


def acl(root: Path, fabric: str, wwn: str, tpgt: int, initiator: str, mapped: int,
        lun: Path) -> None:
    d = root / fabric / wwn / f"tpgt_{tpgt}" / "acls" / initiator / f"lun_{mapped}"
    d.mkdir(parents=True)
    (d / "write_protect").write_text("0\n")
    (d / "f00d").symlink_to(lun)


def test_loopback_nexus(tmp_path):
    disk = so(tmp_path, 1, "db0")
    tpg_lun(tmp_path, "loopback", "naa.5001405aaaa", 1, 0, disk)
    (tmp_path / "loopback" / "naa.5001405aaaa" / "tpgt_1" / "nexus").write_text(
        "naa.5001405bbbb\n")
    assert exposure(1, "db0", tmp_path) == {"loopback:naa.5001405bbbb"}


def test_iscsi_acls_and_demo_mode(tmp_path):
    disk, tape, other = so(tmp_path, 1, "db0"), so(tmp_path, 2, "tape0"), so(tmp_path, 3, "x")
    iqn = "iqn.2026-11.org.example:target"
    l0 = tpg_lun(tmp_path, "iscsi", iqn, 1, 0, disk)
    l1 = tpg_lun(tmp_path, "iscsi", iqn, 1, 1, tape)
    acl(tmp_path, "iscsi", iqn, 1, "iqn.2026-11.org.example:backup", 0, l0)
    acl(tmp_path, "iscsi", iqn, 1, "iqn.2026-11.org.example:backup", 1, l1)
    acl(tmp_path, "iscsi", iqn, 1, "iqn.2026-11.org.example:app", 0, l0)
    assert exposure(1, "db0", tmp_path) == {"iscsi:iqn.2026-11.org.example:backup",
                                            "iscsi:iqn.2026-11.org.example:app"}
    assert exposure(2, "tape0", tmp_path) == {"iscsi:iqn.2026-11.org.example:backup"}
    assert exposure(3, "x", tmp_path) == frozenset()  # not exported anywhere
    demo = "iqn.2026-11.org.example:demo"
    tpg_lun(tmp_path, "iscsi", demo, 1, 0, other)
    attrib = tmp_path / "iscsi" / demo / "tpgt_1" / "attrib"
    attrib.mkdir()
    (attrib / "generate_node_acls").write_text("1\n")
    assert exposure(3, "x", tmp_path) == {f"iscsi:{demo}/tpgt_1:*"}
