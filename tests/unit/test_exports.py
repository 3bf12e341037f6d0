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


def test_a_storage_object_of_the_same_name_on_another_hba_is_another(configfs):
    mine = configfs.storage_object("db0", hba=1)
    other = configfs.storage_object("db0", hba=2)
    configfs.lun("loopback", "naa.5001405aaaa", 0, mine)
    configfs.nexus("naa.5001405aaaa", "naa.5001405bbbb")
    configfs.lun("loopback", "naa.5001405cccc", 0, other)
    configfs.nexus("naa.5001405cccc", "naa.5001405dddd")
    assert exposure(1, "db0", configfs.root) == {"loopback:naa.5001405bbbb"}
    assert exposure(2, "db0", configfs.root) == {"loopback:naa.5001405dddd"}


def test_an_acl_that_maps_another_lun_of_the_tpg_gives_no_access(configfs):
    disk = configfs.storage_object("db0")
    tape = configfs.storage_object("tape0", hba=2)
    iqn = "iqn.2026-11.org.example:target"
    configfs.lun("iscsi", iqn, 0, disk)
    l1 = configfs.lun("iscsi", iqn, 1, tape)
    configfs.acl("iscsi", iqn, "iqn.2026-11.org.example:app", 0, l1)
    assert exposure(1, "db0", configfs.root) == frozenset()
    assert exposure(2, "tape0", configfs.root) == {"iscsi:iqn.2026-11.org.example:app"}


def test_a_dangling_or_foreign_link_is_not_an_export(configfs):
    disk = configfs.storage_object("db0")
    lun = configfs.lun("loopback", "naa.5001405aaaa", 0, disk)
    configfs.nexus("naa.5001405aaaa", "naa.5001405bbbb")
    (lun / "dangling").symlink_to("../../../../core/user_9/gone")
    assert exposure(1, "db0", configfs.root) == {"loopback:naa.5001405bbbb"}
    for link in lun.iterdir():
        if link.is_symlink() and link.name != "dangling":
            link.unlink()
    assert exposure(1, "db0", configfs.root) == frozenset()
