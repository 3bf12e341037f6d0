"""The disk and tape LUNs over iSCSI: LIO's iSCSI target, open-iscsi as the initiator.

Network: one veth pair inside the guest. The target's portal (10.99.0.1:3260) listens
inside network namespace ``lioxc-tgt``; the initiator (iscsid, iscsiadm, the kernel's
iscsi_tcp) stays in the root namespace at 10.99.0.2. It has to: the kernel's iSCSI
initiator control socket (NETLINK_ISCSI) exists in the initial network namespace only,
so an iscsid started with ``ip netns exec`` dies at its first login ("sendmsg: bug?
ctrl_fd"). LIO's portal socket, by contrast, lives in whichever namespace created it:
:func:`iscsi.export_iscsi` (``netns=``) creates it from a thread inside the namespace.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import MiB, clear_unit_attention, run

from lio_xcopy.control import iscsi

pytestmark = pytest.mark.skipif(os.environ.get("LIO_XCOPY_IN_VM") != "1",
                                reason="needs the guest kernel: scripts/test --vm")

NETNS = "lioxc-tgt"
TARGET_IP, INITIATOR_IP = "10.99.0.1", "10.99.0.2"
PORTAL = f"{TARGET_IP}:3260"
TARGET = "iqn.2026-11.org.lio-xcopy:vmtest"
INITIATOR = "iqn.2026-11.org.lio-xcopy:backup-server"
STRANGER = "iqn.2026-11.org.lio-xcopy:stranger"
CHAP = ("backupsrv", "s3cret-chap-1234")
MUTUAL = ("vmtarget", "mutual-secret-5678")
BS = 512


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


@pytest.fixture(scope="module")
def target(lab, net, iscsid):
    if not Path("/sys/module/iscsi_target_mod").exists():
        pytest.skip("iscsi_target_mod is not loaded in this kernel")
    with contextlib.suppress(Exception):
        iscsi.delete_target(TARGET)
    disk = iscsi.export_iscsi(lab.disk_lun, TARGET, TARGET_IP, netns=net)
    tape = iscsi.export_iscsi(lab.tape_lun, TARGET, TARGET_IP, netns=net)
    assert iscsi.export_iscsi(lab.disk_lun, TARGET, TARGET_IP, netns=net) == disk  # lookup
    mapped = iscsi.allow_initiator(TARGET, INITIATOR, luns=[lab.disk_lun, lab.tape_lun],
                                   chap=CHAP, mutual_chap=MUTUAL)
    assert mapped == sorted([disk.lun_id, tape.lun_id])
    yield disk, tape
    iscsiadm("-m", "node", "--logoutall=all", check=False)
    iscsi.delete_target(TARGET)
    assert TARGET not in iscsi.list_targets()


def node_auth(iface: str, user: str, password: str, mutual: tuple[str, str] | None) -> None:
    """Create/refresh the node record for TARGET at PORTAL through iface, with CHAP."""
    base = ("-m", "node", "-T", TARGET, "-p", PORTAL, "-I", iface)
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


def login(iface: str, check: bool = True):
    return iscsiadm("-m", "node", "-T", TARGET, "-p", PORTAL, "-I", iface, "--login",
                    check=check)


def logout(iface: str) -> None:
    iscsiadm("-m", "node", "-T", TARGET, "-p", PORTAL, "-I", iface, "--logout", check=False)


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


def test_discovery_lists_the_target_at_its_portal(target):
    out = iscsiadm("-m", "discovery", "-t", "st", "-p", TARGET_IP).stdout
    assert f"{PORTAL},1 {TARGET}" in out, out


def test_wrong_chap_secret_is_refused(target):
    node_auth("default", CHAP[0], "not-the-secret-0", MUTUAL)
    p = login("default", check=False)
    assert p.returncode != 0, p.stdout
    assert "authoriz" in (p.stdout + p.stderr).lower(), p.stdout + p.stderr
    assert not sessions()


def test_initiator_without_acl_is_refused(target):
    node_auth("stranger", *CHAP, MUTUAL)  # right secrets, unknown initiator name
    p = login("stranger", check=False)
    assert p.returncode != 0, p.stdout
    assert not sessions()


def test_wrong_mutual_secret_is_refused(target):
    """Mutual CHAP: the initiator refuses a target that does not know its secret."""
    node_auth("default", *CHAP, (MUTUAL[0], "other-mutual-999"))
    p = login("default", check=False)
    assert p.returncode != 0, p.stdout
    assert not sessions()


@pytest.fixture(scope="module")
def attached(lab, target):
    node_auth("default", *CHAP, MUTUAL)
    login("default")
    found = [sid for sid, name in sessions() if name == TARGET]
    assert len(found) == 1, sessions()
    disk, disk_sg = session_device(found[0], lab.disk_lun, "disk")
    nst, tape_sg = session_device(found[0], lab.tape_lun, "tape")
    # new I_T nexus: clear any unit attention before the tests count on status
    clear_unit_attention(disk_sg, tape_sg)
    yield {"disk": disk, "disk_sg": disk_sg, "nst": nst, "tape_sg": tape_sg}
    logout("default")


def test_login_with_chap_attaches_the_disk_and_the_tape(lab, attached):
    assert attached["disk"] != lab.sd and attached["disk_sg"] != lab.disk_sg
    assert attached["nst"] != lab.nst
    size = int(run("blockdev", "--getsize64", attached["disk"]).stdout)
    assert size == int(run("blockdev", "--getsize64", lab.sd).stdout)
    inq = run("sg_inq", attached["tape_sg"]).stdout
    assert "Peripheral device type: tape" in inq, inq


def test_serverless_backup_disk_to_tape_over_iscsi(lab, attached):
    from lio_xcopy.initiator.copy import CopyRequest, run_copy

    data = os.urandom(4 * MiB)
    src = lab.work / "iscsi-fill.bin"
    src.write_bytes(data)
    run("dd", f"if={src}", f"of={attached['disk']}", "bs=1M", "oflag=direct",
        "conv=notrunc")
    run("mt", "-f", attached["nst"], "rewind")
    out = io.StringIO()
    t0 = time.monotonic()
    outcome = run_copy(attached["disk_sg"], attached["tape_sg"],
                       CopyRequest(count=len(data) // BS), progress=False, out=out)
    print(out.getvalue(), f"({time.monotonic() - t0:.2f} s)")
    assert outcome.moved == len(data)
    # what crossed iSCSI for the copy is the parameter list and status, not the data
    assert outcome.initiator_bytes < len(data) // 16
    run("mt", "-f", attached["nst"], "rewind")
    run("mt", "-f", attached["nst"], "setblk", "0")
    back = lab.work / "iscsi-back.bin"
    run("dd", f"if={attached['nst']}", f"of={back}", "bs=64k",
        f"count={len(data) // 65536}")
    assert back.read_bytes() == data
