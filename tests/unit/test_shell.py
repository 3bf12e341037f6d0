"""The administrator's shell over a fake LIO: the tree, argument checks (one line, nothing
changed), completions and help. The real LIO is exercised in tests/vm/test_cli.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from plugins.fake_lio import FakeLio

from lio_xcopy import cli
from lio_xcopy.control import commands, config, service
from lio_xcopy.control import shell as shell_mod
from lio_xcopy.control.shell.lio import Backstore
from lio_xcopy.errors import ConfigError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MiB = 1 << 20
UUID = "6d1f2c34-5b6a-4c8d-9e0f-123456789abc"
T1 = "iqn.2003-01.org.example:t1"
INI = "iqn.1994-05.com.redhat:backup"


@pytest.fixture
def sh(lio, capsys):
    """Run one non-interactive command line; returns (rc, stdout, stderr)."""

    def run(line: str):
        capsys.readouterr()
        rc = shell_mod.run(line.split(), lio=lio)
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def refused(result, *words: str) -> str:
    """A refusal: rc 1, exactly one line on stderr containing ``words``."""
    rc, out, err = result
    assert rc == 1, (out, err)
    assert err.count("\n") == 1 and err.startswith("lio-xcopy: "), err
    for w in words:
        assert w in err, err
    return err


# --- backstores -----------------------------------------------------------------------------
def test_create_disk_passes_checked_values(sh, lio, tmp_path):
    img = tmp_path / "db0.img"
    rc, out, err = sh(f"/backstores/disk create name=db0 file={img} size=10M block_size=4096 "
                      f"wwn={UUID.upper()}")
    assert rc == 0, err
    assert lio.calls == [("create_disk", "db0", img, 10 * MiB, 4096, UUID)]
    assert "Created disk db0" in out and "10.0MiB" in out


def test_create_disk_positional_and_size_of_existing_file(sh, lio, tmp_path):
    img = tmp_path / "old.img"
    img.write_bytes(b"\0" * (3 * MiB + 100))
    assert sh(f"/backstores/disk create db1 {img}")[0] == 0
    assert lio.calls == [("create_disk", "db1", img, 3 * MiB, 512, None)]


@pytest.mark.parametrize("args, words", [
    ("name=db0 file={d}/x.img size=10M colour=red", ["unknown parameter colour=",
                                                     "create name file"]),
    ("name=db0 size=10M", ["file= is missing"]),
    ("name=db0 file={d}/x.img size=ten", ["size='ten' is not a size"]),
    ("name=db0 file={d}/x.img size=0", ["not a positive size"]),
    ("name=db0 file={d}/x.img size=1000", ["not a multiple of block_size=512"]),
    ("name=db0 file={d}/x.img size=10M block_size=520", ["block_size='520'", "4096"]),
    ("name=-db file={d}/x.img size=10M", ["name='-db' is not usable"]),
    ("name=db0 file={d}/x.img", ["size= is missing", "new or empty"]),
    ("name=db0 file={d}/no/such/x.img size=10M", ["does not exist; create it first"]),
    ("name=db0 file=/dev/nosuchdisk size=10M", ["no such block device"]),
    ("name=db0 file={d}/a,b.img size=10M", ["commas"]),
    ("name=db0 file={d}/x.img size=10M wwn=1234", ["wwn='1234' is not a unit serial"]),
    ("name=db0 file={d}/x.img size=10M name=db1", ["given twice"]),
    ("db0 {d}/x.img 10M 512 " + UUID + " extra", ["unexpected 'extra'"]),
    ("name=db0 file={d}/x.img size=10M 512", ["name is given twice"]),
    ("name=db0 file={d}/x.img size=10M wwn=\"a b\"", ["cannot read the command"]),
])
def test_create_disk_refusals_change_nothing(sh, lio, tmp_path, args, words):
    refused(sh("/backstores/disk create " + args.format(d=tmp_path)), *words)
    assert lio.calls == []
    assert not (tmp_path / "x.img").exists()


def test_existing_name_path_or_serial_is_refused(sh, lio, tmp_path):
    assert sh(f"/backstores/disk create name=db0 file={tmp_path}/a.img size=1M "
              f"wwn={UUID}")[0] == 0
    lio.calls.clear()
    refused(sh(f"/backstores/disk create name=db0 file={tmp_path}/b.img size=1M"),
            "a LUN named 'db0' exists", "choose another name")
    refused(sh(f"/backstores/tape create name=db0 file={tmp_path}/t.aws capacity=1G"),
            "'db0' exists")
    refused(sh(f"/backstores/disk create name=fileio0 file={tmp_path}/b.img size=1M"),
            "'fileio0' exists")
    refused(sh(f"/backstores/disk create name=db1 file={tmp_path}/a.img size=1M"),
            "already the backing of disk 'db0'")
    refused(sh(f"/backstores/disk create name=db1 file={tmp_path}/b.img size=1M wwn={UUID}"),
            "already the unit serial of disk db0")
    assert lio.calls == []


def test_tape_create_and_refusals(sh, lio, tmp_path):
    rc, out, _ = sh(f"/backstores/tape create name=t0 file={tmp_path}/t0.aws capacity=2G")
    assert rc == 0 and "Created tape t0" in out
    assert lio.calls == [("create_tape", "t0", tmp_path / "t0.aws", 2 << 30, None)]
    refused(sh(f"/backstores/tape create name=t1 file={tmp_path}/t1.aws capacity=1K"),
            "too small", "1M")
    refused(sh(f"/backstores/tape create name=t1 file={tmp_path}/t1.aws"), "capacity= is missing")
    refused(sh("/backstores/tape create name=t1 file=/dev/null capacity=1G"),
            "neither a regular file nor a block device")
    assert len(lio.calls) == 1


def test_delete_backstore(sh, lio, tmp_path):
    sh(f"/backstores/disk create name=db0 file={tmp_path}/a.img size=1M")
    sh(f"/backstores/tape create name=t0 file={tmp_path}/t.aws capacity=1G")
    lio.calls.clear()
    refused(sh("/backstores/disk delete nope"), "no disk named 'nope'", "ls /backstores/disk")
    refused(sh("/backstores/disk delete t0"), "it is a tape, under /backstores/tape")
    assert lio.calls == []
    rc, out, _ = sh("/backstores/disk delete name=db0")
    assert rc == 0 and lio.calls == [("delete", "db0")] and "Deleted disk db0" in out


def test_ls_tree_summaries(sh, lio, tmp_path):
    sh(f"/backstores/disk create name=db0 file={tmp_path}/a.img size=10M")
    sh("/loopback create wwn=naa.5001405aaaaaaaaa")
    sh("/loopback/naa.5001405aaaaaaaaa/luns create storage_object=/backstores/disk/db0")
    rc, out, _ = sh("ls")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith("o- / ")
    tree = {re.search(r"o- (\S+)", ln).group(1): ln for ln in lines}
    for node in ("backstores", "disk", "tape", "loopback", "iscsi", "copy_groups",
                 "naa.5001405aaaaaaaaa", "luns", "lun0", "db0"):
        assert node in tree, out
    assert f"[{tmp_path}/a.img (10.0MiB, 512b) exported]" in tree["db0"]
    assert "[disk/db0" in tree["lun0"]
    assert "[LUNs: 1]" in tree["disk"] and "[Targets: 1]" in tree["loopback"]


def test_info_of_a_backstore(sh, tmp_path):
    sh(f"/backstores/disk create name=db0 file={tmp_path}/a.img size=1M wwn={UUID}")
    rc, out, _ = sh("/backstores/disk/db0 info")
    assert rc == 0
    assert f"unit_serial: {UUID}" in out and "export: none" in out
    # LIO's NAA 6h from the serial (SPC-4 7.8.6.6.5): company ID 001405, then its digits
    assert "naa: 60014056d1f2c345b6a4c8d9e0f12345" in out


def test_unknown_path_and_command(sh):
    refused(sh("/backstores/floppy ls"), "No such path /backstores/floppy")
    refused(sh("/backstores/disk frobnicate"), "frobnicate")


# --- loopback -------------------------------------------------------------------------------
def test_loopback_luns(sh, lio, tmp_path):
    sh(f"/backstores/disk create name=db0 file={tmp_path}/a.img size=1M")
    sh(f"/backstores/tape create name=t0 file={tmp_path}/t.aws capacity=1G")
    refused(sh("/loopback create wwn=naa.123"), "not a loopback WWN")
    assert sh("/loopback create")[0] == 0
    w = "naa.5001405000000001"
    refused(sh("/loopback create wwn=" + w), "exists")
    lio.calls.clear()
    luns = f"/loopback/{w}/luns"
    refused(sh(f"{luns} create storage_object=/backstores/disk/nope"), "no such LUN")
    refused(sh(f"{luns} create storage_object=/backstores/tape/db0"), "no such LUN")
    refused(sh(f"{luns} create storage_object=/iscsi/db0"), "/backstores/disk/NAME")
    refused(sh(f"{luns} create storage_object=db0 lun=x"), "lun='x'", "0 to 65535")
    assert lio.calls == []
    assert sh(f"{luns} create storage_object=db0 lun=3")[0] == 0
    refused(sh(f"{luns} create storage_object=/backstores/disk/db0"), "already LUN 3")
    refused(sh(f"{luns} create storage_object=t0 lun=lun3"), "lun=3 is taken by db0")
    assert sh(f"{luns} create /backstores/tape/t0")[0] == 0
    assert lio.calls == [("export_loopback", w, "db0", 3), ("export_loopback", w, "t0", None)]
    refused(sh(f"{luns} delete lun=7"), "has no LUN 7")
    assert sh(f"{luns} delete lun3")[0] == 0
    assert lio.calls[-1] == ("unexport", "loopback", w, 1, 3)
    refused(sh("/loopback delete naa.5001405000000009"), "no loopback target")
    assert sh(f"/loopback delete {w}")[0] == 0


# --- iSCSI ----------------------------------------------------------------------------------
@pytest.fixture
def target(sh, lio, tmp_path):
    sh(f"/backstores/disk create name=db0 file={tmp_path}/a.img size=1M")
    assert sh(f"/iscsi create {T1}")[0] == 0
    assert sh(f"/iscsi/{T1}/tpg1/luns create storage_object=/backstores/disk/db0")[0] == 0
    lio.calls.clear()
    return f"/iscsi/{T1}/tpg1"


def test_iscsi_names_are_checked(sh, lio):
    refused(sh("/iscsi create iqn.2003-13.org.example:t1"), "not an iSCSI name")
    refused(sh("/iscsi create iqn=target_1"), "not an iSCSI name")
    refused(sh(f"/iscsi delete {T1}"), "no iSCSI target")
    assert lio.calls == []
    assert sh(f"/iscsi create {T1.upper()}")[0] == 0
    assert lio.calls == [("create_iscsi", T1)]
    refused(sh(f"/iscsi create {T1}"), "exists")


def test_portals(sh, lio, target):
    refused(sh(f"{target}/portals create 10.0.0.300"), "not an IP address")
    refused(sh(f"{target}/portals create 127.0.0.1 ip_port=70000"), "1 to 65535")
    refused(sh(f"{target}/portals create 127.0.0.1 netns=nosuchns"), "ip netns add nosuchns")
    assert lio.calls == []
    assert sh(f"{target}/portals create 127.0.0.1")[0] == 0
    refused(sh(f"{target}/portals create 127.0.0.1 3260"), "already listens")
    assert sh(f"{target}/portals create ::1 3261")[0] == 0
    out = sh(f"ls {target}/portals")[1]
    assert "127.0.0.1:3260" in out and "[::1]:3261" in out
    assert sh(f"{target}/portals delete 127.0.0.1 3260")[0] == 0
    refused(sh(f"{target}/portals delete 127.0.0.1 3260"), "no portal")


@pytest.mark.parametrize("args, words", [
    ("initiator_iqn=iqn.bad", ["not an iSCSI name"]),
    (f"{INI} userid=u", ["userid= needs password="]),
    (f"{INI} password=secret12", ["password= needs userid="]),
    (f"{INI} userid=u password=NULL", ["password= must be 1 to 255"]),
    (f"{INI} userid=u password={'x' * 256}", ["password= must be 1 to 255"]),
    (f"{INI} mutual_userid=t mutual_password=other123", ["needs userid= and password="]),
    (f"{INI} userid=u password=same123 mutual_userid=t mutual_password=same123",
     ["must differ"]),
    (f"{INI} userid=u password=p secret=x", ["unknown parameter secret="]),
])
def test_acl_refusals(sh, lio, target, args, words):
    refused(sh(f"{target}/acls create {args}"), *words)
    assert lio.calls == []


def test_acls_with_chap_never_show_secrets(sh, lio, target):
    rc, out, _ = sh(f"{target}/acls create {INI} userid=backup password=s3cret-pass1 "
                    "mutual_userid=tgt mutual_password=t4rget-pass2")
    assert rc == 0 and "mutual CHAP" in out
    assert lio.calls == [("allow", T1, INI, ("backup", "s3cret-pass1"),
                          ("tgt", "t4rget-pass2"))]
    refused(sh(f"{target}/acls create {INI} userid=x password=yyyyyyyy"),
            "already has an ACL", "delete it first")
    refused(sh(f"{target}/acls create iqn.1994-05.com.redhat:other"), "use CHAP",
            "userid= and password=")
    for line in (f"ls {target}", f"{target}/acls/{INI} info", "ls"):
        rc, out, _ = sh(line)
        assert rc == 0
        assert "s3cret" not in out and "t4rget" not in out
    rc, out, _ = sh(f"{target}/acls/{INI} info")
    assert "userid: backup" in out and "password: set" in out
    assert "mutual_password: set" in out
    rc, out, _ = sh(f"ls {target}")
    assert "[Mapped LUNs: 1, mutual CHAP]" in out and "mapped_lun0" in out
    assert sh(f"{target}/acls delete {INI}")[0] == 0
    refused(sh(f"{target}/acls delete {INI}"), "has no ACL")


def test_plain_acl_blocks_chap_acl(sh, target):
    assert sh(f"{target}/acls create {INI}")[0] == 0
    refused(sh(f"{target}/acls create iqn.1994-05.com.redhat:x userid=a password=bbbbbbbb"),
            "initiators without CHAP")


# --- copy groups ----------------------------------------------------------------------------
def test_copy_groups_edit_only_the_saved_file(sh, lio, tmp_path):
    saved = tmp_path / "saveconfig.json"
    cfg = config.SavedConfig(
        disks=(config.DiskConfig("db0", tmp_path / "a.img", MiB),),
        tapes=(config.TapeConfig("t0", tmp_path / "t.aws", 1 << 30),))
    config.save(cfg, saved)
    refused(sh(f"/copy_groups create name=g members=db0 savefile={saved}"), "at least two")
    refused(sh(f"/copy_groups create name=g members=db0,db9 savefile={saved}"),
            "'db9' is not in", "saveconfig")
    refused(sh(f"/copy_groups create name=g members=db0,db0 savefile={saved}"), "twice")
    assert config.load(saved).copy_groups == {}
    rc, out, _ = sh(f"/copy_groups create name=g members=db0,t0 savefile={saved}")
    assert rc == 0 and "the daemon reads /etc/lio-xcopy/saveconfig.json, not this file" in out
    assert config.load(saved).copy_groups == {"g": ("db0", "t0")}
    refused(sh(f"/copy_groups create name=g members=db0,t0 savefile={saved}"), "exists")
    assert sh(f"/copy_groups delete g savefile={saved}")[0] == 0
    assert json.loads(saved.read_text())["copy_groups"] == {}
    refused(sh(f"/copy_groups delete g savefile={saved}"), "no copy group")
    assert lio.calls == []


def test_a_copy_group_records_a_foreign_device_by_its_designator(sh, tmp_path):
    saved = tmp_path / "saveconfig.json"
    config.save(config.SavedConfig(
        tapes=(config.TapeConfig("t0", tmp_path / "t.aws", 1 << 30),)), saved)
    naa = "naa.6001405F00D0000000000000000000AA"
    refused(sh(f"/copy_groups create name=g members={naa},eui.0011223344556677 "
               f"savefile={saved}"), "needs a LUN of ours")
    refused(sh(f"/copy_groups create name=g members=t0,naa.123 savefile={saved}"),
            "is not a designator")
    refused(sh(f"/copy_groups create name=g members=t0,/nonexistent/disk savefile={saved}"),
            "/nonexistent/disk")
    assert sh(f"/copy_groups create name=g members=t0,{naa} savefile={saved}")[0] == 0
    assert config.load(saved).copy_groups == {"g": ("t0", f"foreign:{naa.lower()}")}


def test_a_copy_group_in_the_daemons_file_reloads_the_running_daemon(sh, monkeypatch,
                                                                    tmp_path):
    saved = tmp_path / "saveconfig.json"
    config.save(config.SavedConfig(
        disks=(config.DiskConfig("db0", tmp_path / "a.img", MiB),),
        tapes=(config.TapeConfig("t0", tmp_path / "t.aws", 1 << 30),)), saved)
    monkeypatch.setattr(config, "DEFAULT_PATH", saved)
    asked = []
    monkeypatch.setattr(service, "reload_daemon", lambda: asked.append(1) or "reloaded")
    rc, out, _ = sh("/copy_groups create name=g members=db0,t0")
    assert rc == 0 and "reloaded" in out and asked == [1]
    assert sh("/copy_groups delete g")[0] == 0 and asked == [1, 1]


def test_reload_signals_the_process_holding_the_daemons_lock(tmp_path):
    lock, got = tmp_path / "daemon.lock", tmp_path / "got"
    assert "no lio-xcopy daemon is running" in service.reload_daemon(lock)
    child = subprocess.Popen([sys.executable, "-c", f"""
import pathlib, signal, sys, time
from lio_xcopy.tcmu import pidlock
held = pidlock.acquire(pathlib.Path({str(lock)!r}))
signal.signal(signal.SIGHUP, lambda *a: (pathlib.Path({str(got)!r}).write_text("hup"),
                                          sys.exit(0)))
print("ready", flush=True)
time.sleep(30)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert f"pid {child.pid}" in service.reload_daemon(lock)
        assert child.wait(timeout=10) == 0 and got.read_text() == "hup"
    finally:
        child.kill()
        child.wait()
    assert "no lio-xcopy daemon is running" in service.reload_daemon(lock)  # file remains


# --- root commands, routing -----------------------------------------------------------------
def test_saveconfig_and_status_go_through_the_subcommands(sh, monkeypatch, tmp_path):
    seen = []

    def fake(cmd, rest):
        seen.append((cmd, rest))
        return 0 if cmd != "restoreconfig" else 1

    monkeypatch.setattr(commands, "config_command", fake)
    assert sh(f"/ saveconfig {tmp_path}/x.json")[0] == 0
    assert sh("status")[0] == 0  # from the root node
    assert sh("/ status")[0] == 0
    rc, _, err = sh("/ restoreconfig")
    assert rc == 1 and err == ""  # restoreconfig printed its own errors
    assert seen == [("saveconfig", [f"{tmp_path}/x.json"]), ("status", []),
                    ("status", []), ("restoreconfig", [])]


def test_cli_routes_paths_and_shell_commands(monkeypatch):
    got = []
    monkeypatch.setattr(shell_mod, "main", lambda argv: got.append(argv) or 0)
    assert cli.main(["/backstores", "ls"]) == 0
    assert cli.main(["ls", "/iscsi"]) == 0
    assert got == [["/backstores", "ls"], ["ls", "/iscsi"]]
    assert cli.main(["nonsense"]) == 2  # unknown commands keep their old answer
    assert cli.main([]) == 2  # no argv given programmatically: usage, as before


def test_version(sh):
    from lio_xcopy import __version__

    assert sh("/ version")[1].strip() == __version__


def test_lio_not_loaded_is_one_line(monkeypatch, capsys):
    class NoLio(FakeLio):
        def snapshot(self):
            raise ConfigError("LIO is not available: load it with `modprobe configfs`")

    assert shell_mod.run(["ls"], lio=NoLio()) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "modprobe" in err


# --- help and completion --------------------------------------------------------------------
def test_help_shows_syntax_and_docstring(sh):
    rc, out, _ = sh("/backstores/disk help create")
    assert rc == 0
    assert "create name file [size] [block_size] [wwn]" in out
    assert "create name=db0 file=/srv/db0.img size=10G" in out
    rc, out, _ = sh("/iscsi/ help")
    assert "create [iqn]" in out and "delete iqn" in out


def test_completions(lio, tmp_path):
    sh = shell_mod.make_shell(lio)
    root = sh._root_node
    disk = root.get_node("/backstores/disk")
    (tmp_path / "a.img").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    got = disk.ui_complete_create({}, f"{tmp_path}/", "file")
    assert got == [f"{tmp_path}/a.img", f"{tmp_path}/sub/"]
    assert disk.ui_complete_create({}, "4", "block_size") == ["4096 "]
    assert disk.ui_complete_create({}, "10", "size") == ["10G", "10M", "10T"]
    lio.backstores["db0"] = Backstore("disk", "db0", Path("/x"), MiB, UUID, 512)
    lio.backstores["t0"] = Backstore("tape", "t0", Path("/t"), 1 << 30, UUID)
    root.refresh()
    disk = root.get_node("/backstores/disk")
    assert disk.ui_complete_delete({}, "d", "name") == ["db0 "]
    groups = root.get_node("/copy_groups")
    assert groups.ui_complete_create({}, "db0,", "members") == ["db0,t0"]
    lio.create_loopback(None)
    root.refresh()
    luns = root.get_node("/loopback/naa.5001405000000001/luns")
    assert luns.ui_complete_create({}, "/backstores/t", "storage_object") == [
        "/backstores/tape/t0 "]
    assert luns.ui_complete_create({}, "", "lun") == ["0 "]


def test_interactive_session_saves_on_exit(lio, monkeypatch, tmp_path, capsys):
    import io

    saved = []
    monkeypatch.setattr(commands, "config_command", lambda c, r: saved.append((c, r)) or 0)
    monkeypatch.setattr("sys.stdin", io.StringIO(
        f"cd /backstores/disk\ncreate name=db0 file={tmp_path}/a.img size=1M\nbogus\n"
        "cd /nowhere\nls\nexit\n"))
    assert shell_mod.interactive(lio=lio, home=tmp_path / "home") == 0
    out, err = capsys.readouterr()
    assert "Created disk db0" in out and "o- db0" in out
    assert "no command 'bogus' at /backstores/disk" in err
    assert "No such path /nowhere: `ls` shows the tree" in err
    assert lio.calls[0][:2] == ("create_disk", "db0")
    assert saved == [("saveconfig", [])]  # auto_save_on_exit, as targetcli


def test_global_preference_persists(lio, tmp_path, capsys):
    home = tmp_path / "home"
    assert shell_mod.run(["set", "global", "auto_save_on_exit=false"], lio=lio, home=home) == 0
    capsys.readouterr()
    assert shell_mod.run(["get", "global", "auto_save_on_exit"], lio=lio, home=home) == 0
    assert "auto_save_on_exit=false" in capsys.readouterr().out
    assert shell_mod.run(["set", "global", "auto_save_on_exit=maybe"], lio=lio, home=home) == 1
    assert capsys.readouterr().err.count("\n") == 1
    shell_mod.run(["set", "global", "auto_save_on_exit=true"], lio=lio, home=home)


@pytest.mark.parametrize("level", ["info", "debug"])
def test_chap_secrets_reach_no_file_of_the_shell_home(lio, target, tmp_path, capsys, level):
    """configshell logs each command line to ``log.txt`` in the home (at debug level, its
    parsed parameters too): the secrets stay masked there and in every other file."""
    from configshell_fb import Log

    home = tmp_path / "home"
    assert shell_mod.run(["set", "global", f"loglevel_file={level}"], lio=lio, home=home) == 0
    line = (f"{target}/acls create {INI} userid=backup password=s3cret-pass1 "
            "mutual_userid=tgt mutual_password=t4rget-pass2")
    assert shell_mod.run(line.split(), lio=lio, home=home) == 0
    assert shell_mod.run([f"{target}/acls/{INI}", "info"], lio=lio, home=home) == 0
    log = Path(Log().prefs["logfile"])  # configshell's preferences are process-wide
    files = {log, *(p for p in home.rglob("*") if p.is_file())}
    assert f"Created ACL for {INI}" in log.read_text()
    if level == "debug":
        assert "'password': '***', 'mutual_userid': 'tgt'" in log.read_text()
    for f in files:
        data = f.read_bytes()
        assert b"s3cret" not in data and b"t4rget" not in data, f
    assert "s3cret" not in "".join(capsys.readouterr())


def test_passthrough_by_stable_name_only(sh, lio):
    by_id = "/dev/tape/by-id/scsi-35000e11122334455-nst"
    assert sh(f"/backstores/passthrough create name=drive0 device={by_id}")[0] == 0
    assert lio.calls == [("create_passthrough", "drive0", by_id)]
    for bad in ("/dev/sg3", "/dev/nst0"):
        refused(sh(f"/backstores/passthrough create name=drive1 device={bad}"),
                "not a stable device name", "/dev/tape/by-id/")
    refused(sh(f"/backstores/passthrough create name=drive2 device={by_id}"),
            "already passed through")
    assert len(lio.calls) == 1
    rc, out, _ = sh("/backstores/passthrough/drive0 info")
    assert rc == 0 and f"device: {by_id}" in out and "kind: passthrough" in out


# --- backing files no LUN may ruin ----------------------------------------------------------
PASSWD = b"root:x:0:0:root:/root:/bin/bash\n"


def test_tape_on_a_file_that_is_not_a_cartridge_needs_format_yes(sh, lio, tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_bytes(PASSWD)
    refused(sh(f"/backstores/tape create name=t0 file={passwd} capacity=1G"),
            "not an AWSTAPE cartridge", "format=yes")
    refused(sh(f"/backstores/tape create name=t0 file={passwd} capacity=1G format=maybe"),
            "format='maybe'", "true or false")
    assert lio.calls == [] and passwd.read_bytes() == PASSWD
    rc, out, err = sh(f"/backstores/tape create name=t0 file={passwd} capacity=1G format=yes")
    assert rc == 0, err
    assert lio.calls == [("create_tape", "t0", passwd, 1 << 30, None, True)]
    assert "formatted blank" in out


def test_a_library_cartridge_is_no_disk_or_tape(sh, lio, tmp_path):
    assert sh(f"/backstores/changer create name=lib0 library={tmp_path}/lib slots=4 "
              "barcodes=2")[0] == 0
    lio.calls.clear()
    cart = tmp_path / "lib" / "L00002L8.aws"
    before = cart.read_bytes()
    refused(sh(f"/backstores/disk create name=db0 file={cart} size=1M"),
            "belongs to the library", "(its cartridge L00002L8)")
    refused(sh(f"/backstores/tape create name=t0 file={cart} capacity=1G format=yes"),
            "belongs to the library")
    refused(sh(f"/backstores/disk create name=db0 file={tmp_path}/lib/x.img size=1M"),
            "belongs to the library")
    assert lio.calls == [] and cart.read_bytes() == before


# --- a cartridge library: changer and drives ------------------------------------------------
@pytest.fixture
def library(sh, lio, tmp_path):
    lib = tmp_path / "lib"
    rc, out, err = sh(f"/backstores/changer create name=lib0 library={lib} slots=8 "
                      "ie_slots=2 drives=2 barcodes=6")
    assert rc == 0, err
    assert "Created changer lib0" in out and "slots 8, drives 2, mail slots 2, cartridges 6" \
        in out
    return lib


def test_changer_create_makes_the_library_and_its_lun(library, lio):
    assert lio.calls == [("create_changer", "lib0", library, None)]
    assert sorted(p.name for p in library.glob("*.aws")) == [
        f"L0000{i}L8.aws" for i in range(1, 7)]


@pytest.mark.parametrize("args, words", [
    ("name=lib1 library={d}/other slots=4 drives=1", ["holds a library already",
                                                      "slots=, drives= out"]),
    ("name=lib1 library={d}/lib", ["already has changer 'lib0'"]),
    ("name=lib1 library={d}/new", ["holds no library", "add slots="]),
    ("name=lib1 library={d}/new slots=0", ["slots='0'", "1 to"]),
    ("name=lib1 library={d}/new slots=2 barcodes=3", ["3 cartridges for 2 slots"]),
    ("name=lib1 library={d}/new slots=2 barcodes=l1", ["barcodes=l1", "upper-case"]),
    ("name=lib1 library={d}/new slots=2 capacity=1K", ["capacity=1K is too small"]),
    ("name=lib1 library={d}/no/such slots=2", ["does not exist; create it first"]),
    ("name=lib1 library={d}/lib/L00001L8.aws", ["is not a directory"]),
    ("name=lib0 library={d}/new slots=2", ["'lib0' exists"]),
])
def test_changer_refusals_change_nothing(sh, lio, library, tmp_path, args, words):
    from lio_xcopy.control import library as lib_ops

    lib_ops.create_library(tmp_path / "other", slots=2)
    lio.calls.clear()
    state = (library / "library.json").read_bytes()
    refused(sh("/backstores/changer create " + args.format(d=tmp_path)), *words)
    assert lio.calls == [] and not (tmp_path / "new").exists()
    assert (library / "library.json").read_bytes() == state


def test_changer_on_an_existing_library_and_the_lun_failing_undoes_a_new_one(
        sh, lio, tmp_path, monkeypatch):
    from lio_xcopy.control import library as lib_ops

    lib_ops.create_library(tmp_path / "old", slots=3)
    assert sh(f"/backstores/changer create lib0 {tmp_path}/old")[0] == 0

    def broken(*a):
        raise ConfigError("LIO said no")

    monkeypatch.setattr(lio, "create_changer", broken)
    refused(sh(f"/backstores/changer create lib1 {tmp_path}/new slots=2"), "LIO said no")
    assert not (tmp_path / "new").exists()


def test_library_drives(sh, lio, library):
    lio.calls.clear()
    refused(sh(f"/backstores/library_drive create name=d0 library={library} drive=2"),
            "drive='2'", "0 to 1")
    refused(sh(f"/backstores/library_drive create name=d0 library={library.parent}"),
            "holds no library", "/backstores/changer create")
    assert lio.calls == []
    assert sh(f"/backstores/library_drive create name=libtape0 library={library}")[0] == 0
    refused(sh(f"/backstores/library_drive create name=d1 library={library} drive=0"),
            "drive 0 of", "is LUN 'libtape0' already")
    assert sh(f"/backstores/library_drive create libtape1 {library}")[0] == 0
    refused(sh(f"/backstores/library_drive create name=d2 library={library}"),
            "every drive of", "has a LUN already")
    assert lio.calls == [("create_library_drive", "libtape0", library, 0, None),
                         ("create_library_drive", "libtape1", library, 1, None)]
    refused(sh("/backstores/library_drive delete lib0"), "it is a changer")
    assert sh("/backstores/library_drive delete libtape1")[0] == 0
    assert lio.calls[-1] == ("delete", "libtape1")


def test_ls_and_info_show_a_changer_as_a_changer(sh, lio, library):
    sh(f"/backstores/library_drive create name=libtape0 library={library} drive=0")
    sh("/loopback create")
    sh("/loopback/naa.5001405000000001/luns create /backstores/changer/lib0")
    rc, out, _ = sh("ls /backstores")
    assert rc == 0
    tree = {re.search(r"o- (\S+)", ln).group(1): ln for ln in out.splitlines()}
    assert f"[{library} (slots 8, drives 2, mail slots 2, cartridges 6) exported]" \
        in tree["lib0"]
    assert f"[drive 0 of {library} (empty) not exported]" in tree["libtape0"]
    assert "capacity" not in tree["lib0"] and "GiB" not in tree["lib0"]
    rc, out, _ = sh("/backstores/changer/lib0 info")
    assert rc == 0
    lines = out.splitlines()
    for want in ("kind: changer", f"library: {library}", "storage slots: 8",
                 "mail slots (import/export): 2", "drives: 2", "drive 0: LUN libtape0",
                 "drive 1: LUN none", "cartridges: 6",
                 "cartridge L00001L8: slot 1 (0x1000)", "door: unlocked",
                 "export: loopback naa.5001405000000001 lun 0"):
        assert want in lines, out
    rc, out, _ = sh("/backstores/library_drive/libtape0 info")
    assert "drive: 0" in out.splitlines() and "cartridge: empty" in out.splitlines()


def test_changer_completions(lio, library):
    root = shell_mod.make_shell(lio)._root_node
    changer = root.get_node("/backstores/changer")
    assert changer.ui_complete_create({}, "1", "capacity") == ["1G", "1M", "1T"]
    assert changer.ui_complete_create({}, f"{library.parent}/l", "library") == [f"{library}/"]
    drives = root.get_node("/backstores/library_drive")
    assert drives.ui_complete_create({}, "", "library") == [f"{library} "]
    assert drives.ui_complete_create({"library": str(library)}, "", "drive") == ["0", "1"]
    assert root.get_node("/").ui_complete_clearconfig({}, "", "confirm") == ["true "]
    assert "lib0 " in root.get_node("/backstores/changer").ui_complete_delete({}, "l", "name")


# --- info everywhere, portals' namespaces, clearconfig --------------------------------------
def _every_path(root) -> list[str]:
    out, todo = [], [root]
    while todo:
        node = todo.pop()
        out.append(node.path)
        todo += list(node.children)
    return out


def test_info_exists_on_every_node(sh, lio, tmp_path):
    sh(f"/backstores/disk create name=db0 file={tmp_path}/a.img size=1M")
    sh("/loopback create")
    sh("/loopback/naa.5001405000000001/luns create db0")
    sh(f"/iscsi create {T1}")
    sh(f"/iscsi/{T1}/tpg1/portals create 127.0.0.1")
    sh(f"/iscsi/{T1}/tpg1/luns create db0")
    sh(f"/iscsi/{T1}/tpg1/acls create {INI}")
    paths = _every_path(shell_mod.make_shell(lio)._root_node)
    assert f"/iscsi/{T1}/tpg1/portals/127.0.0.1:3260" in paths
    assert len(paths) > 20
    for path in paths:
        rc, out, err = sh(f"{path} info")
        assert rc == 0 and out.strip() and err == "", (path, err)
    rc, out, _ = sh(f"/iscsi/{T1}/tpg1 info")
    for want in (f"target: {T1}", "tpg: 1", "enabled: yes", "portal: 127.0.0.1:3260",
                 "lun0: db0", f"acl: {INI} (no CHAP)"):
        assert want in out.splitlines(), out
    rc, out, _ = sh(f"/iscsi/{T1}/tpg1/luns/lun0 info")
    assert "backstore: /backstores/disk/db0" in out.splitlines()
    rc, out, _ = sh("/loopback/naa.5001405000000001 info")
    assert "lun0: db0" in out.splitlines()


def test_a_portal_shows_its_network_namespace(sh, lio):
    import os

    sh(f"/iscsi create {T1}")
    g = lio.iscsi[T1]
    lio.iscsi[T1] = replace(g, portals=(config.Portal("10.9.0.1", 3260, "backupnet"),
                                        config.Portal("0.0.0.0", 3260)))
    _, out, _ = sh(f"ls /iscsi/{T1}/tpg1/portals")
    assert re.search(r"o- 10\.9\.0\.1:3260 \.+ \[netns backupnet\]", out), out
    _, out, _ = sh(f"/iscsi/{T1}/tpg1/portals/10.9.0.1:3260 info")
    assert out.splitlines() == ["ip_address: 10.9.0.1", "ip_port: 3260", "netns: backupnet"]
    _, out, _ = sh(f"/iscsi/{T1}/tpg1/portals/0.0.0.0:3260 info")
    mine = os.stat("/proc/self/ns/net").st_ino
    assert f"netns: net:[{mine}] (this host's; LIO does not record" in out
    refused(sh(f"/iscsi/{T1}/tpg1/portals create 10.9.0.1"), "already listens")


def test_clearconfig_needs_confirm(sh, lio, tmp_path):
    sh(f"/backstores/disk create name=db0 file={tmp_path}/a.img size=1M")
    sh("/loopback create")
    lio.calls.clear()
    for line in ("clearconfig", "/ clearconfig confirm=false", "clearconfig confirm=no"):
        refused(sh(line), "type `clearconfig confirm=true`")
    refused(sh("clearconfig confirm=maybe"), "true or false")
    assert lio.calls == []
    rc, out, _ = sh("/ clearconfig confirm=true")
    assert rc == 0 and lio.calls == [("clear",)]
    assert "deleted 2 object(s) (disk db0, loopback naa.5001405000000001)" in out
    assert lio.snapshot().backstores == ()


def test_clearconfig_from_the_command_line_goes_to_the_shell(monkeypatch):
    seen = []
    monkeypatch.setattr(shell_mod, "main", lambda argv: seen.append(argv) or 0)
    assert cli.main(["clearconfig", "confirm=true"]) == 0
    assert seen == [["clearconfig", "confirm=true"]]
