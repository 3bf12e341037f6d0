"""Two "hosts" in one guest for the iSCSI VM tests: a pytest plugin (registered in
tests/vm/conftest.py) with the ``net`` fixture (a veth pair, the target's end in network
namespace NETNS) and the ``iscsid`` fixture (open-iscsi in the foreground)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import run

NETNS = "lioxc-tgt"
TARGET_IP, INITIATOR_IP = "10.99.0.1", "10.99.0.2"
PORTAL = f"{TARGET_IP}:3260"
TARGET = "iqn.2026-11.org.lio-xcopy:vmtest"
#: the target test_iscsi saves and restores
TARGET2 = "iqn.2026-11.org.lio-xcopy:saved"
INITIATOR = "iqn.2026-11.org.lio-xcopy:backup-server"
STRANGER = "iqn.2026-11.org.lio-xcopy:stranger"


@pytest.fixture(scope="module")
def net():
    """A veth pair: 10.99.0.2 here (root namespace), 10.99.0.1 in namespace NETNS."""
    if not shutil.which("ip"):
        pytest.skip("ip (iproute2) is missing: run scripts/setup-host")
    run("ip", "netns", "del", NETNS, check=False)
    run("ip", "link", "del", "lioxc-i", check=False)
    run("ip", "netns", "add", NETNS)
    try:
        run("ip", "link", "add", "lioxc-i", "type", "veth", "peer", "name", "lioxc-t",
            "netns", NETNS)
        run("ip", "addr", "add", f"{INITIATOR_IP}/24", "dev", "lioxc-i")
        run("ip", "link", "set", "lioxc-i", "up")
        run("ip", "-n", NETNS, "addr", "add", f"{TARGET_IP}/24", "dev", "lioxc-t")
        run("ip", "-n", NETNS, "link", "set", "lioxc-t", "up")
        run("ip", "-n", NETNS, "link", "set", "lo", "up")
        yield NETNS
    finally:
        run("ip", "link", "del", "lioxc-i", check=False)
        run("ip", "netns", "del", NETNS, check=False)


def iscsiadm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("iscsiadm", *args, check=check, timeout=120)


@pytest.fixture(scope="module")
def iscsid(work):
    """open-iscsi's daemon in the foreground (no systemd in the guest)."""
    if not (shutil.which("iscsid") and shutil.which("iscsiadm")):
        pytest.skip("open-iscsi is missing: apt-get install open-iscsi (scripts/setup-host)")
    run("modprobe", "iscsi_tcp")
    etc = Path("/etc/iscsi")  # a throwaway overlay in the guest
    etc.mkdir(exist_ok=True)
    (etc / "initiatorname.iscsi").write_text(f"InitiatorName={INITIATOR}\n")
    for d in ("nodes", "send_targets", "ifaces"):
        shutil.rmtree(etc / d, ignore_errors=True)
    log = work / "iscsid.log"
    with log.open("w") as f:
        # its own session: on SIGTERM iscsid signals its whole process group
        proc = subprocess.Popen(["iscsid", "-f", "-d", "1"], stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 30
    while iscsiadm("-m", "session", check=False).returncode not in (0, 21):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"iscsid did not start:\n{log.read_text()}")
        time.sleep(0.2)
    # a second initiator name, through its own iface record
    iscsiadm("-m", "iface", "-I", "stranger", "-o", "new")
    iscsiadm("-m", "iface", "-I", "stranger", "-o", "update", "-n", "iface.initiatorname",
             "-v", STRANGER)
    yield proc
    iscsiadm("-m", "node", "--logoutall=all", check=False)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def node_auth(iface: str, user: str, password: str, mutual: tuple[str, str] | None,
              target: str = TARGET) -> None:
    """Create/refresh the node record for a target at PORTAL through iface, with CHAP."""
    base = ("-m", "node", "-T", target, "-p", PORTAL, "-I", iface)
    if iscsiadm(*base, check=False).returncode != 0:
        iscsiadm(*base, "-o", "new")
    settings = {
        "node.session.auth.authmethod": "CHAP",
        "node.session.auth.username": user,
        "node.session.auth.password": password,
        "node.session.auth.username_in": mutual[0] if mutual else "",
        "node.session.auth.password_in": mutual[1] if mutual else "",
        "node.session.initial_login_retry_max": "1",
        "node.conn[0].timeo.login_timeout": "10",
    }
    for k, v in settings.items():
        iscsiadm(*base, "-o", "update", "-n", k, "-v", v)


def login(iface: str, check: bool = True, target: str = TARGET):
    return iscsiadm("-m", "node", "-T", target, "-p", PORTAL, "-I", iface, "--login",
                    check=check)


def logout(iface: str, target: str = TARGET) -> None:
    iscsiadm("-m", "node", "-T", target, "-p", PORTAL, "-I", iface, "--logout", check=False)


def sessions() -> list[tuple[int, str]]:
    """(session id, target name) of every iSCSI session."""
    p = iscsiadm("-m", "session", check=False)
    return [(int(m.group(1)), m.group(2))
            for m in re.finditer(r"^\S+: \[(\d+)\] \S+ (\S+)", p.stdout, re.M)]


def session_device(sid: int, lun, kind: str, timeout: float = 60.0) -> tuple[str, str]:
    """(node, sg) of ``lun`` reached through iSCSI session ``sid``: its /dev/sdX (disk)
    or /dev/nstN (tape), found by our NAA in VPD 83h among the session's devices."""
    naa = bytes.fromhex(lun.naa)
    deadline = time.monotonic() + timeout
    while True:
        for dev in Path("/sys/bus/scsi/devices").glob("*:*:*:*"):
            if f"/session{sid}/" not in str(dev.resolve()):
                continue
            try:
                if naa not in (dev / "vpd_pg83").read_bytes():
                    continue
            except OSError:
                continue
            sg = next((f"/dev/{p.name}" for p in (dev / "scsi_generic").glob("sg*")), None)
            if kind == "disk":
                node = next((f"/dev/{p.name}" for p in (dev / "block").glob("sd*")), None)
            else:
                node = next((f"/dev/n{p.name}" for p in (dev / "scsi_tape").glob("st*")
                             if p.name[2:].isdigit()), None)
            if sg and node and Path(sg).exists() and Path(node).exists():
                return node, sg
        if time.monotonic() > deadline:
            raise AssertionError(f"{lun.name} did not appear in iSCSI session {sid}")
        time.sleep(0.2)


def discover() -> None:
    """SendTargets discovery, as an initiator finds a new target: it makes the node
    records (open-iscsi loses a hand-made default record when a second iface's is added)."""
    out = iscsiadm("-m", "discovery", "-t", "st", "-p", TARGET_IP).stdout
    assert f"{PORTAL},1 {TARGET2}" in out, out


def session_of(target: str, iface: str = "default") -> int:
    p = iscsiadm("-m", "session", "-P", "1", check=False)
    sid = None
    for block in p.stdout.split("Target: ")[1:]:
        name = block.split()[0]
        if name != target:
            continue
        for m in re.finditer(r"Iface Name: (\S+).*?SID: (\d+)", block, re.S):
            if m.group(1) == iface:
                sid = int(m.group(2))
    assert sid is not None, p.stdout
    return sid
