"""Who can reach a LUN, from a fake configfs tree shaped like LIO's."""

from __future__ import annotations

from lio_xcopy.tcmu.exports import exposure


def test_loopback_nexus(configfs):
    disk = configfs.storage_object("db0")
    configfs.lun("loopback", "naa.5001405aaaa", 0, disk)
    configfs.nexus("naa.5001405aaaa", "naa.5001405bbbb")
    assert exposure(1, "db0", configfs.root) == {"loopback:naa.5001405bbbb"}


def test_iscsi_acls_and_demo_mode(configfs):
    disk = configfs.storage_object("db0")
    tape = configfs.storage_object("tape0", hba=2)
    other = configfs.storage_object("x", hba=3)
    iqn = "iqn.2026-11.org.example:target"
    l0 = configfs.lun("iscsi", iqn, 0, disk)
    l1 = configfs.lun("iscsi", iqn, 1, tape)
    configfs.acl("iscsi", iqn, "iqn.2026-11.org.example:backup", 0, l0)
    configfs.acl("iscsi", iqn, "iqn.2026-11.org.example:backup", 1, l1)
    configfs.acl("iscsi", iqn, "iqn.2026-11.org.example:app", 0, l0)
    root = configfs.root
    assert exposure(1, "db0", root) == {"iscsi:iqn.2026-11.org.example:backup",
                                        "iscsi:iqn.2026-11.org.example:app"}
    assert exposure(2, "tape0", root) == {"iscsi:iqn.2026-11.org.example:backup"}
    assert exposure(3, "x", root) == frozenset()  # not exported anywhere
    demo = "iqn.2026-11.org.example:demo"
    configfs.lun("iscsi", demo, 0, other)
    configfs.demo_mode("iscsi", demo)
    assert exposure(3, "x", root) == {f"iscsi:{demo}/tpgt_1:*"}
