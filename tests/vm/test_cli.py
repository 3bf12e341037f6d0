"""The administrator's shell against the real kernel, run as a user would:
``.venv/bin/lio-xcopy /backstores/disk create ...`` and friends. Every refusal is one
line on stderr, a non-zero exit status, and configfs exactly as it was."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MiB, clear_unit_attention, run

from lio_xcopy.control import provision

LIO_XCOPY = str(Path(sys.executable).parent / "lio-xcopy")
CFS = Path("/sys/kernel/config/target")
LOOP_WWN = "naa.5001405c11c11c11"
IQN = "iqn.2026-11.org.lio-xcopy:cli-test"
INI = "iqn.2026-11.org.lio-xcopy:cli-initiator"
INI2 = "iqn.2026-11.org.lio-xcopy:cli-other"
SECRET, MUTUAL = "cli-s3cret-9876", "cli-mutual-5432"


@pytest.fixture
def cli(lab, tmp_path):
    """Run ``lio-xcopy ARGS``; its preferences and history go to a throwaway home."""
    env = {**os.environ, "LIO_XCOPY_HOME": str(tmp_path / "home")}

    def run_cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([LIO_XCOPY, *args], capture_output=True, text=True, env=env,
                           timeout=120)
        if ok:
            assert p.returncode == 0, f"lio-xcopy {' '.join(args)}: {p.stderr}{p.stdout}"
        return p

    return run_cli


def configfs() -> dict[str, str]:
    """Every directory and link under LIO's configfs, plus the settings a refused
    command could have touched (TPG enable and attributes, ACL secrets)."""
    state: dict[str, str] = {}
    for d, dirs, files in os.walk(CFS):
        for name in dirs:
            state[os.path.join(d, name)] = "dir"
        for name in files:
            path = os.path.join(d, name)
            if os.path.islink(path):
                state[path] = os.readlink(path)
            elif "/iscsi/iqn." in path and (
                    "/auth/" in path or path.endswith(("/enable", "/attrib/authentication"))):
                state[path] = Path(path).read_text(errors="replace")
    return state


def refused(p: subprocess.CompletedProcess[str], before: dict[str, str], *words: str) -> None:
    assert p.returncode != 0, p.stdout
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("lio-xcopy: "), p.stderr
    for w in words:
        assert w in p.stderr, p.stderr
    assert configfs() == before


def user_dirs(name: str) -> list[Path]:
    return list(CFS.glob(f"core/user_*/{name}"))


def test_disk_and_tape_through_a_loopback_target(lab, cli):
    disk, tape = lab.work / "cli-db0.img", lab.work / "cli-t0.aws"
    out = cli("/backstores/disk", "create", "name=clidb0", f"file={disk}", "size=16M").stdout
    assert "Created disk clidb0" in out
    assert disk.stat().st_size == 16 * MiB
    cli("/backstores/tape", "create", "clitape0", str(tape), "capacity=64M")
    assert user_dirs("clidb0") and user_dirs("clitape0")
    cli("/loopback", "create", f"wwn={LOOP_WWN}")
    assert (CFS / "loopback" / LOOP_WWN / "tpgt_1").is_dir()
    cli(f"/loopback/{LOOP_WWN}/luns", "create", "storage_object=/backstores/disk/clidb0",
        "lun=0")
    cli(f"/loopback/{LOOP_WWN}/luns", "create", "/backstores/tape/clitape0")
    luns = CFS / "loopback" / LOOP_WWN / "tpgt_1" / "lun"
    assert sorted(p.name for p in luns.iterdir()) == ["lun_0", "lun_1"]

    # the initiator side sees them, with the unit serial `info` shows
    info = cli("/backstores/disk/clidb0", "info").stdout
    serial = re.search(r"unit_serial: (\S+)", info).group(1)
    dev = provision.find_kernel_device(provision.Lun("clidb0", "disk", disk, serial, None))
    assert int(run("blockdev", "--getsize64", str(dev.block)).stdout) == 16 * MiB

    tree = cli("ls").stdout
    assert re.search(r"o- clidb0 \.+ \[.*cli-db0\.img \(16\.0MiB, 512b\) exported\]", tree)
    assert re.search(r"o- clitape0 \.+ \[.*capacity 64\.0MiB\) exported\]", tree)
    assert re.search(r"o- lun1 \.+ \[tape/clitape0 ", tree), tree
    status = cli("status").stdout
    assert "disk clidb0:" in status and "tape clitape0:" in status

    cli(f"/loopback/{LOOP_WWN}/luns", "delete", "lun=1")
    assert [p.name for p in luns.iterdir()] == ["lun_0"]
    cli("/loopback", "delete", LOOP_WWN)
    assert not (CFS / "loopback" / LOOP_WWN).exists()
    cli("/backstores/disk", "delete", "clidb0")
    cli("/backstores/tape", "delete", "name=clitape0")
    assert not user_dirs("clidb0") and not user_dirs("clitape0")
    assert disk.exists()  # the data stays


def test_bad_arguments_change_nothing(lab, cli):
    cli("/backstores/disk", "create", "name=clierr", f"file={lab.work}/cli-err.img",
        "size=4M")
    cli("/loopback", "create", f"wwn={LOOP_WWN}")
    before = configfs()
    new = f"file={lab.work}/cli-new.img"
    cases = [
        (("/backstores/disk", "create", "name=clinew", new, "size=4M", "colour=red"),
         ["unknown parameter colour="]),
        (("/backstores/disk", "create", "name=clinew", new, "size=4Q"), ["not a size"]),
        (("/backstores/disk", "create", "name=_clinew", new, "size=4M"), ["not usable"]),
        (("/backstores/disk", "create", "name=vmdisk0", new, "size=4M"),
         ["'vmdisk0' exists", "choose another name"]),
        (("/backstores/disk", "create", "name=clinew", "file=/dev/sdzz", "size=4M"),
         ["no such block device"]),
        ((f"/loopback/{LOOP_WWN}/luns", "create", "storage_object=/backstores/disk/nosuch"),
         ["no such LUN"]),
        (("/iscsi", "create", "iqn.2026-13.org.example:x"), ["not an iSCSI name"]),
    ]
    for args, words in cases:
        refused(cli(*args, ok=False), before, *words)
    assert not Path(f"{lab.work}/cli-new.img").exists()
    cli("/loopback", "delete", LOOP_WWN)
    cli("/backstores/disk", "delete", "clierr")


def test_iscsi_target_portal_lun_and_chap_acls(lab, cli):
    run("ip", "link", "set", "lo", "up")
    cli("/backstores/disk", "create", "name=cliscsi", f"file={lab.work}/cli-iscsi.img",
        "size=8M")
    cli("/iscsi", "create", IQN)
    tpg = f"/iscsi/{IQN}/tpg1"
    cfs_tpg = CFS / "iscsi" / IQN / "tpgt_1"
    assert (cfs_tpg / "enable").read_text().strip() == "1"
    assert (cfs_tpg / "attrib" / "generate_node_acls").read_text().strip() == "0"
    cli(f"{tpg}/portals", "create", "127.0.0.1", "3261")
    assert (cfs_tpg / "np" / "127.0.0.1:3261").is_dir()
    cli(f"{tpg}/luns", "create", "storage_object=/backstores/disk/cliscsi")
    assert (cfs_tpg / "lun" / "lun_0").is_dir()
    cli(f"{tpg}/acls", "create", INI, "userid=backupsrv", f"password={SECRET}",
        "mutual_userid=target1", f"mutual_password={MUTUAL}")
    auth = cfs_tpg / "acls" / INI / "auth"
    assert (auth / "userid").read_text().strip() == "backupsrv"
    assert (auth / "password").read_text().strip() == SECRET
    assert (auth / "password_mutual").read_text().strip() == MUTUAL
    assert (cfs_tpg / "acls" / INI / "lun_0").is_dir()  # the TPG's LUN, mapped
    assert (cfs_tpg / "attrib" / "authentication").read_text().strip() == "1"

    before = configfs()
    for args, words in [
        ((f"{tpg}/acls", "create", INI2), ["use CHAP", "userid= and password="]),
        ((f"{tpg}/acls", "create", INI2, "userid=u", "password=" + "x" * 256), ["1 to 255"]),
        ((f"{tpg}/acls", "create", INI2, "userid=u", "password=same-secret",
          "mutual_userid=t", "mutual_password=same-secret"), ["must differ"]),
        ((f"{tpg}/acls", "create", INI, "userid=u", "password=other-secret"),
         ["already has an ACL"]),
        (("/iscsi", "create", IQN), ["exists"]),
    ]:
        refused(cli(*args, ok=False), before, *words)

    # secrets are never shown
    info = cli(f"{tpg}/acls/{INI}", "info").stdout
    tree = cli("ls", tpg).stdout
    assert SECRET not in info + tree and MUTUAL not in info + tree
    assert "userid: backupsrv" in info and "password: set" in info
    assert "mutual_password: set" in info
    assert "[Mapped LUNs: 1, mutual CHAP]" in tree

    cli(f"{tpg}/acls", "delete", INI)
    assert not (cfs_tpg / "acls" / INI).exists()
    cli("/iscsi", "delete", IQN)  # with its portal and LUN
    assert not (CFS / "iscsi" / IQN).exists()
    cli("/backstores/disk", "delete", "cliscsi")


def test_saveconfig_delete_restoreconfig(lab, cli):
    saved = lab.work / "cli-etc" / "saveconfig.json"
    img = lab.work / "cli-keep.img"
    cli("/backstores/disk", "create", "name=clikeep", f"file={img}", "size=8M")
    lab_target = next(p.name for p in (CFS / "loopback").iterdir() if p.name.startswith("naa."))
    cli(f"/loopback/{lab_target}/luns", "create", "clikeep")
    clear_unit_attention(lab.disk_sg, lab.tape_sg)
    serial = re.search(r"unit_serial: (\S+)", cli("/backstores/disk/clikeep", "info").stdout)[1]
    out = cli("/", "saveconfig", str(saved)).stdout
    assert "saved 2 disk(s), 1 tape(s)" in out
    doc = json.loads(saved.read_text())
    assert {d["name"]: d["wwn"] for d in doc["disks"]}["clikeep"] == serial

    # copy groups edit the saved file only
    cli("/copy_groups", "create", "name=clinight", "members=clikeep,vmtape0",
        f"savefile={saved}")
    assert json.loads(saved.read_text())["copy_groups"] == {"clinight": ["clikeep", "vmtape0"]}
    before = configfs()
    refused(cli("/copy_groups", "create", "name=clibad", "members=clikeep,nosuch",
                f"savefile={saved}", ok=False), before, "'nosuch' is not in")

    cli("/backstores/disk", "delete", "clikeep")
    clear_unit_attention(lab.disk_sg, lab.tape_sg)
    assert not user_dirs("clikeep")
    out = cli("/", "restoreconfig", str(saved)).stdout
    assert "created disk clikeep" in out and "0 error(s)" in out, out
    clear_unit_attention(lab.disk_sg, lab.tape_sg)
    assert user_dirs("clikeep")
    assert f"serial: {serial}" in cli("/backstores/disk/clikeep", "info").stdout
    assert "loopback" in cli("/backstores/disk/clikeep", "info").stdout
    assert json.loads(saved.read_text())["copy_groups"] == {"clinight": ["clikeep", "vmtape0"]}

    cli("/copy_groups", "delete", "clinight", f"savefile={saved}")
    cli("/backstores/disk", "delete", "clikeep")
    clear_unit_attention(lab.disk_sg, lab.tape_sg)


def test_old_subcommands_still_work(lab, cli):
    assert cli("version").stdout.strip() == cli("/", "version").stdout.strip()
    p = cli("frobnicate", ok=False)
    assert p.returncode == 2 and "unknown command" in p.stderr


def test_a_second_daemon_refuses_and_touches_nothing(lab, cli):
    """A daemon started by mistake while the session's runs: one line naming the running
    one's pid, exit status 1; the state file, the LUNs and `status` stay as they were."""
    state = Path("/run/lio-xcopy/state.json")
    before = state.read_bytes()
    log_before = lab.daemon.log.read_text(errors="replace")
    p = cli("daemon", "-v", ok=False)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr == (f"lio-xcopy daemon: another lio-xcopy daemon is running (pid "
                        f"{lab.daemon.proc.pid}, holding /run/lio-xcopy/daemon.lock): stop "
                        f"it first (`systemctl stop lio-xcopy` or `kill {lab.daemon.proc.pid}`)"
                        "\n")
    assert state.read_bytes() == before
    assert lab.daemon.proc.poll() is None
    assert lab.daemon.log.read_text(errors="replace").startswith(log_before)
    assert "daemon: not running" not in cli("status").stdout


def test_help_everywhere_does_nothing(lab, cli, tmp_path):
    """``-h`` and ``--help`` take one path (``shell.main``), so the commands alternate
    between them: each command and each flag is run, and every run costs seconds of
    imports under TCG."""
    before = configfs()
    commands = (["saveconfig"], ["restoreconfig"], ["status"], ["daemon"], ["ls"],
                ["/backstores/disk", "create"], ["backup", "/dev/null"])
    for i, args in enumerate(commands):
        flag = ("-h", "--help")[i % 2]
        p = subprocess.run([LIO_XCOPY, *args, flag], capture_output=True, text=True,
                           cwd=tmp_path, timeout=120)
        assert p.returncode == 0 and p.stderr == "" and p.stdout.strip(), (
            args, flag, p.stderr, p.stdout)
    assert list(tmp_path.iterdir()) == []  # no file named --help
    assert configfs() == before
    assert cli("--version").stdout.strip() == cli("version").stdout.strip()


def test_library_from_the_shell_and_backing_files_it_protects(lab, cli, capsys):
    """A library made with the shell alone (changer + drive, exported over loopback):
    `ls` and `info` show it as a changer, the kernel sees a medium changer (peripheral
    type 08h); a tape on /etc/passwd is refused in one line with configfs and the file
    exactly as they were. The setup runs the shell in-process (each `lio-xcopy` process
    costs seconds of imports under TCG); `ls` and the refusal run as the CLI."""
    from lio_xcopy.control import shell

    def sh(*words: str) -> str:
        capsys.readouterr()
        assert shell.run(list(words)) == 0, capsys.readouterr().err
        return capsys.readouterr().out

    lib, wwn = lab.work / "cli-lib", "naa.5001405c11c11c22"
    out = sh("/backstores/changer", "create", "name=clilib0", f"library={lib}", "slots=4",
             "ie_slots=1", "drives=1", "capacity=16M", "barcodes=2")
    assert "slots 4, drives 1, mail slots 1, cartridges 2" in out
    sh("/backstores/library_drive", "create", "name=clilibtape0", f"library={lib}")
    sh("/loopback", "create", f"wwn={wwn}")
    sh(f"/loopback/{wwn}/luns", "create", "/backstores/changer/clilib0")
    sh(f"/loopback/{wwn}/luns", "create", "/backstores/library_drive/clilibtape0")
    tree = cli("ls", "/backstores").stdout
    assert re.search(r"o- clilib0 \.+ \[.*cli-lib \(slots 4, drives 1, mail slots 1, "
                     r"cartridges 2\) exported\]", tree), tree
    assert re.search(r"o- clilibtape0 \.+ \[drive 0 of .*cli-lib \(empty\) exported\]",
                     tree), tree
    info = sh("/backstores/changer/clilib0", "info").splitlines()
    assert "storage slots: 4" in info and "drive 0: LUN clilibtape0" in info
    serial = next(x for x in info if x.startswith("unit_serial: ")).split()[1]
    dev = provision.find_kernel_device(provision.Lun("clilib0", "changer", lib, serial, None))
    assert int(Path(f"/sys/bus/scsi/devices/{dev.hctl}/type").read_text()) == 8

    passwd = Path("/etc/passwd").read_bytes()
    before = configfs()
    refused(cli("/backstores/tape", "create", "name=clipw", "file=/etc/passwd",
                "capacity=16M", ok=False), before, "not an AWSTAPE cartridge", "format=yes")
    assert Path("/etc/passwd").read_bytes() == passwd

    sh("/loopback", "delete", wwn)
    sh("/backstores/library_drive", "delete", "clilibtape0")
    sh("/backstores/changer", "delete", "clilib0")
    assert not user_dirs("clilib0") and (lib / "library.json").is_file()
