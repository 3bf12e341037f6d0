"""The Vagrant lab's scripts, run in the guest exactly as the two lab VMs run them.

``scripts/lab-target`` serves the disk and the tape over iSCSI from inside network
namespace ``lioxc-tgt`` (the target "host": its portal 10.99.0.1); ``scripts/lab-initiator``
runs in the root namespace (the backup server, 10.99.0.2): the network of
tests/plugins/vm_iscsi.py (its ``net`` fixture), since the kernel's iSCSI initiator works in
the initial network namespace only. Nothing is installed (``--no-install``: the guest's
root is read-only), and there is no systemd (``--no-systemd``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import run
from plugins.vm_iscsi import NETNS, TARGET_IP

from lio_xcopy.control import config, iscsi, provision

REPO = Path(__file__).resolve().parents[2]
DAEMON_PIDFILE = Path("/run/lio-xcopy/lab-daemon.pid")
ENV = {  # scripts/lab.env's defaults, spelled out so that the test checks them
    "LAB_TARGET_IQN": "iqn.2026-11.org.lio-xcopy:lab",
    "LAB_INITIATOR_IQN": "iqn.2026-11.org.lio-xcopy:lab-initiator",
}


def script(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """One lab script as root, output shown (pytest prints it for a failing test)."""
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600,
                       env={k: v for k, v in os.environ.items() if not k.startswith("LAB_")})
    print(f"$ {' '.join(str(a) for a in args)}\n{p.stdout}{p.stderr}")
    return p


def _kill_pidfile(path: Path) -> None:
    """Stop a process that a lab script started (and recorded), and wait for it."""
    try:
        pid = int(path.read_text())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        for _ in range(300):
            os.kill(pid, 0)
            subprocess.run(["sleep", "0.1"], check=False)
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def lab_target(work, net):
    """scripts/lab-target as the Vagrantfile runs it, plus the CI guest's options."""
    if not Path("/sys/module/iscsi_target_mod").exists():
        pytest.skip("iscsi_target_mod is not loaded in this kernel")
    d = work / "lab"
    paths = {"config": d / "etc" / "saveconfig.json", "data": d / "data",
             "initiator": d / "initiator"}
    p = script(REPO / "scripts" / "lab-target", "--no-systemd", "--no-install",
               "--netns", net, "--portal", TARGET_IP, "--config", paths["config"],
               "--data", paths["data"], "--disk-size", "16M", "--tape-capacity", "64M")
    try:
        assert p.returncode == 0, p.stderr
        yield paths
    finally:
        iwork = paths["initiator"]
        run("iscsiadm", "-m", "node", "-T", ENV["LAB_TARGET_IQN"], "--logout", check=False)
        _kill_pidfile(iwork / "iscsid.pid")
        with contextlib.suppress(Exception):
            iscsi.delete_target(ENV["LAB_TARGET_IQN"])
        for name in ("db0", "tape0"):
            with contextlib.suppress(Exception):
                provision.delete(name)
        _kill_pidfile(DAEMON_PIDFILE)  # only when lab-target started one


@pytest.fixture(scope="module")
def first_backup(lab_target):
    return script(REPO / "scripts" / "lab-initiator", TARGET_IP, "--no-install",
                  "--no-systemd", "--work", lab_target["initiator"])


def test_target_saves_the_lab_configuration(lab_target):
    path = lab_target["config"]
    assert path.stat().st_mode & 0o777 == 0o600  # it holds CHAP secrets
    cfg = config.load(path)
    assert [(d.name, d.size) for d in cfg.disks] == [("db0", 16 << 20)]
    assert [(t.name, t.capacity) for t in cfg.tapes] == [("tape0", 64 << 20)]
    (target,) = cfg.iscsi
    assert target.iqn == ENV["LAB_TARGET_IQN"]
    (tpg,) = target.tpgs
    assert tpg.portals == (config.Portal(TARGET_IP, 3260, NETNS),)
    assert tpg.luns == {0: "db0", 1: "tape0"}
    assert tpg.authentication
    (acl,) = tpg.acls
    assert acl.initiator == ENV["LAB_INITIATOR_IQN"]
    assert [m.tpg_lun for m in acl.mapped_luns] == [0, 1]
    assert acl.chap is not None and acl.mutual_chap is not None
    assert acl.chap.password != acl.mutual_chap.password


def test_portal_listens_only_in_the_targets_namespace(lab_target):
    inside = run("ip", "netns", "exec", NETNS, "ss", "-Hltn", "sport", "= :3260").stdout
    outside = run("ss", "-Hltn", "sport", "= :3260").stdout
    assert f"{TARGET_IP}:3260" in inside, inside
    assert f"{TARGET_IP}:3260" not in outside, outside


def test_initiator_backup_restores_byte_exact(lab_target, first_backup):
    assert first_backup.returncode == 0, first_backup.stderr
    assert "verified: the tape holds the disk byte for byte" in first_backup.stdout
    restored = lab_target["initiator"] / "db0-restored.img"
    # checked here against the target's own backing file, not only by the script
    disk = (lab_target["data"] / "db0.img").read_bytes()
    assert len(disk) == 16 << 20
    assert restored.read_bytes() == disk
    # the file system in the backup holds the file lab-target put on the disk
    out = lab_target["initiator"] / "random.bin"
    run("debugfs", "-R", f"dump /data/random.bin {out}", str(restored))
    sums = run("debugfs", "-R", "cat /data/SHA256SUMS", str(restored)).stdout.split()
    assert out.stat().st_size == 4 << 20
    assert sums[0] == hashlib.sha256(out.read_bytes()).hexdigest()


def test_both_scripts_run_again_harmlessly(lab_target, first_backup):
    assert first_backup.returncode == 0, first_backup.stderr
    before = lab_target["config"].read_bytes()
    again = script(REPO / "scripts" / "lab-target", "--no-systemd", "--no-install",
                   "--netns", NETNS, "--portal", TARGET_IP, "--config", lab_target["config"],
                   "--data", lab_target["data"], "--disk-size", "16M",
                   "--tape-capacity", "64M")
    assert again.returncode == 0, again.stderr
    assert "present: kept" in again.stdout
    assert "daemon already running" in again.stdout
    assert lab_target["config"].read_bytes() == before
    assert not list(lab_target["config"].parent.glob("saveconfig.json.*"))  # no new backup
    second = script(REPO / "scripts" / "lab-initiator", TARGET_IP, "--no-install",
                    "--no-systemd", "--work", lab_target["initiator"])
    assert second.returncode == 0, second.stderr
    assert "already logged in" in second.stdout
    assert "verified: the tape holds the disk byte for byte" in second.stdout
