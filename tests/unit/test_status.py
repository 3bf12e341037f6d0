"""The daemon's state file and the ``status`` report built from it."""

from __future__ import annotations

import os
from pathlib import Path

from lio_xcopy.control import config as c
from lio_xcopy.control import status
from lio_xcopy.tcmu import state as state_file
from lio_xcopy.tcmu.state import CopyState, DaemonState

MiB = 1 << 20
IQN = "iqn.2026-11.org.example:t"
INI = "iqn.2026-11.org.example:backup"
CFG = c.SavedConfig(
    disks=(c.DiskConfig("db0", Path("/srv/db0.img"), 64 * MiB, 512, "u-1"),),
    tapes=(c.TapeConfig("tape0", Path("/srv/t.aws"), 2 << 30, "u-2"),),
    loopback=(c.LoopbackTarget("naa.50014050aabbccdd", {3: "db0"}),),
    iscsi=(c.IscsiTarget(IQN, (c.Tpg(
        1, True, (c.Portal("10.0.0.1"),), {0: "db0", 1: "tape0"},
        (c.Acl(INI, (c.MappedLun(0, 0),), c.Chap("u", "secret-pw")),)),)),),
)


def copy(**kw) -> CopyState:
    base = dict(lun="db0", list_id=7, status="running", segments=2, segments_processed=0,
                transferred=16 * MiB, planned=64 * MiB, elapsed=2.0, description=("a",))
    return CopyState(**{**base, **kw})


def test_state_round_trip_and_a_dead_daemon(tmp_path):
    path = tmp_path / "run" / "state.json"
    st = DaemonState(os.getpid(), 1.0, {"db0": "disk"}, (copy(),))
    state_file.write(st, path)
    assert state_file.read(path) == st
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    state_file.write(DaemonState(2**22 + 12345, 1.0), path)  # no such pid
    assert state_file.read(path) is None
    path.write_text("{not json")
    assert state_file.read(path) is None
    state_file.remove(path)
    state_file.remove(path)  # twice is fine
    assert state_file.read(path) is None


def test_copy_line_shows_progress_rate_and_eta():
    assert status.copy_line(copy()) == (
        "db0 list 7: running, segment 1/2, 16.0/64.0 MiB (25%), 8.0 MiB/s, ETA 6s")
    done = copy(status="completed", segments_processed=2, transferred=64 * MiB)
    assert status.copy_line(done) == (
        "db0 list 7: completed, segment 2/2, 64.0/64.0 MiB (100%), 32.0 MiB/s")


def test_lines_show_backing_exports_acls_and_copies_but_no_secrets():
    st = DaemonState(1, 1.0, {"db0": "disk"}, (copy(),))
    out = status.lines(CFG, st, exposure=lambda name: frozenset())
    assert out[0] == "disk db0: /srv/db0.img, 64 MiB, 512-byte blocks, wwn u-1"
    assert out[1] == "  loopback lun 3 on naa.50014050aabbccdd"
    assert out[2] == (f"  iscsi {IQN} tpg 1 lun 0 at 10.0.0.1:3260; initiators: {INI} (CHAP)")
    assert out[3] == "tape tape0: /srv/t.aws, capacity 2.0 GiB, wwn u-2, NOT SERVED by the daemon"
    assert out[4] == f"  iscsi {IQN} tpg 1 lun 1 at 10.0.0.1:3260; initiators: none"
    assert out[5].startswith("copy access: db0, tape0 may copy only within itself")
    assert out[6] == "daemon: pid 1, serving 1 LUN(s), 1 copy(ies) in progress"
    assert out[7].startswith("  copy db0 list 7: running")
    assert not any("secret-pw" in line for line in out)


def test_lines_without_a_daemon_say_how_to_start_it():
    out = status.lines(c.SavedConfig(), None, Path("/run/x/state.json"))
    assert out == ["no LUNs: create them, or `lio-xcopy restoreconfig`",
                   "daemon: not running (no current /run/x/state.json); start it with "
                   "`systemctl start lio-xcopy`"]


def test_lines_list_the_foreign_devices_admitted_by_designator():
    naa = "naa.6001405f00d0000000000000000000aa"
    cfg = c.SavedConfig(tapes=CFG.tapes, disks=CFG.disks, copy_groups={
        "offsite": ("tape0", f"foreign:{naa}"), "local": ("db0", "tape0")})
    out = status.lines(cfg, None)
    assert f"foreign {naa}: copy group offsite, with tape0" in out
    assert sum(line.startswith("foreign ") for line in out) == 1


def test_copy_access_says_which_luns_may_copy_together_and_why():
    lib = c.SavedConfig(
        disks=(*CFG.disks, c.DiskConfig("db1", Path("/srv/db1.img"), MiB, 512, "u-3")),
        tapes=(*CFG.tapes, c.TapeConfig("tape1", Path("/srv/t1.aws"), MiB, "u-4")),
        copy_groups={"nightly": ("db1", "tape1")})
    seen = {"db0": frozenset({"loopback:naa.1"}), "tape0": frozenset({"loopback:naa.1"}),
            "db1": frozenset({"loopback:naa.1"}), "tape1": frozenset({"loopback:naa.2"})}
    out = status.copy_access(lib, lambda name: seen[name])
    assert out == [
        "copy access: db0, db1, tape0 may copy together (exported to exactly loopback:naa.1)",
        "copy access: db1, tape1 may copy together (copy group nightly)"]
    seen["db0"] = frozenset({"iscsi:iqn.x"})
    out = status.copy_access(lib, lambda name: seen[name])
    assert out[-1].startswith("copy access: db0 may copy only within itself")


def test_exposure_in_configfs_finds_the_storage_object_on_any_user_hba(configfs):
    so = configfs.storage_object("db0", hba=3)
    configfs.lun("loopback", "naa.5001", 0, so)
    configfs.nexus("naa.5001", "naa.5001ini")
    assert status.exposure_in_configfs("db0", configfs.root) == {"loopback:naa.5001ini"}
    assert status.exposure_in_configfs("nosuch", configfs.root) == frozenset()


def test_lines_describe_a_passthrough_lun_by_its_device():
    dev = "/dev/tape/by-id/scsi-35000e11156304001-nst"
    cfg = c.SavedConfig(passthrough=(c.PassThroughConfig("lto0", dev),))
    out = status.lines(cfg, None)
    assert f"passthrough lto0: device {dev}, wwn None" in out[0]
