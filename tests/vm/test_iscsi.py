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
import json
import os
import time
from pathlib import Path

import pytest
from conftest import MiB, check_no_stale_data, clear_unit_attention, run, sense_of
from plugins.vm_iscsi import (
    INITIATOR,
    PORTAL,
    STRANGER,
    TARGET,
    TARGET2,
    TARGET_IP,
    discover,
    iscsiadm,
    login,
    logout,
    node_auth,
    session_device,
    session_of,
    sessions,
)

from lio_xcopy.control import iscsi

CHAP = ("backupsrv", "s3cret-chap-1234")
MUTUAL = ("vmtarget", "mutual-secret-5678")
BS = 512


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


# --- saved configuration and the copy access policy over iSCSI -------------------------------
SAVE_CHAP = ("saver", "s4ved-chap-secret")
STRANGER_CHAP = ("strange", "str4nger-secret-1")


def cli(*args: str, check: bool = True):
    import sys

    return run(sys.executable, "-m", "lio_xcopy", *args, check=check)


def test_save_stop_restore_over_iscsi_then_log_in_again(lab, net, iscsid, target, work):
    """Save a target with CHAP and a portal inside a network namespace, remove the LUNs
    and the target as a reboot would, restore: the initiator logs in again with the same
    secrets and finds its data."""
    from lio_xcopy.control import provision

    disk = provision.create_disk("savedisk", work / "savedisk.img", 8 * MiB)
    tape = provision.create_tape("savetape", work / "savetape.aws", 16 * MiB)
    saved = work / "iscsi-saved.json"
    try:
        iscsi.export_iscsi(disk, TARGET2, TARGET_IP, netns=net)
        iscsi.export_iscsi(tape, TARGET2, TARGET_IP, netns=net)
        iscsi.allow_initiator(TARGET2, INITIATOR, luns=[disk, tape], chap=SAVE_CHAP)
        discover()
        node_auth("default", *SAVE_CHAP, None, target=TARGET2)
        login("default", target=TARGET2)
        sd, sg = session_device(session_of(TARGET2), disk, "disk")
        nst, tsg = session_device(session_of(TARGET2), tape, "tape")
        clear_unit_attention(sg, tsg)
        data = os.urandom(4 * MiB)
        (work / "saved.src").write_bytes(data)
        run("dd", f"if={work / 'saved.src'}", f"of={sd}", "bs=1M", "oflag=direct")
        run("dd", f"if={work / 'saved.src'}", f"of={nst}", "bs=64k")
        run("mt", "-f", nst, "weof", "1")
        cli("saveconfig", str(saved))
        doc = json.loads(saved.read_text())
        t = next(x for x in doc["iscsi"] if x["iqn"] == TARGET2)
        assert t["tpgs"][0]["portals"] == [{"ip": TARGET_IP, "port": 3260, "netns": net}]
        assert t["tpgs"][0]["attributes"]["authentication"] == "1"
        acl = t["tpgs"][0]["acls"][0]
        assert acl["initiator"] == INITIATOR and acl["chap"] == {
            "userid": SAVE_CHAP[0], "password": SAVE_CHAP[1]}
        assert os.stat(saved).st_mode & 0o777 == 0o600
        # stop everything: the session, the target, the LUNs
        logout("default", target=TARGET2)
        iscsi.delete_target(TARGET2)
        provision.delete("savedisk")
        provision.delete("savetape")
        assert TARGET2 not in iscsi.list_targets()
        p = cli("restoreconfig", str(saved))
        for what in ("disk savedisk", "tape savetape", f"portal {TARGET2} 1 {TARGET_IP}",
                     f"acl {INITIATOR} on {TARGET2}", f"mapped_lun {TARGET2} 1 {INITIATOR}"):
            assert what in p.stdout, p.stdout
        assert " 0 error(s)" in p.stdout, p.stdout + p.stderr
        again = cli("restoreconfig", str(saved)).stdout
        assert " 0 created, 0 changed" in again and " 0 error(s)" in again, again
        # the initiator comes back with the same secret
        login("default", target=TARGET2)
        sd, sg = session_device(session_of(TARGET2), disk, "disk")
        nst, tsg = session_device(session_of(TARGET2), tape, "tape")
        clear_unit_attention(sg, tsg)
        with open(sd, "rb", buffering=0) as f:
            assert f.read(len(data)) == data
        run("mt", "-f", nst, "rewind")
        back = work / "saved.back"
        run("dd", f"if={nst}", f"of={back}", "bs=64k")
        assert back.read_bytes() == data
        status = cli("status").stdout
        assert f"iscsi {TARGET2} tpg 1 lun 0 at {TARGET_IP}:3260" in status, status
        assert f"initiators: {INITIATOR} (CHAP)" in status, status
        assert SAVE_CHAP[1] not in status
    finally:
        logout("default", target=TARGET2)
        with contextlib.suppress(Exception):
            iscsi.delete_target(TARGET2)
        for name in ("savedisk", "savetape"):
            with contextlib.suppress(Exception):
                provision.delete(name)
        clear_unit_attention(lab.disk_sg, lab.tape_sg)


def test_copy_policy_with_two_initiators_that_see_different_luns(lab, net, iscsid, work):
    """Two backup servers on one target, each with its own disk. An EXTENDED COPY sent by
    one to its disk, naming the other's disk, is refused (COPY TARGET DEVICE NOT
    REACHABLE) and nothing is written; naming its own tape works."""
    from lio_xcopy.control import provision
    from lio_xcopy.scsi import xcopy
    from lio_xcopy.scsi.xcopy import BlockToBlock, BlockToStream, IdentificationCscd

    def cscd(lun, pdt, bl):
        return IdentificationCscd(bytes.fromhex(lun.naa), pdt, block_length=bl)

    mine = provision.create_disk("mine0", work / "mine0.img", 8 * MiB)
    mytape = provision.create_tape("mytape0", work / "mytape0.aws", 16 * MiB)
    theirs = provision.create_disk("theirs0", work / "theirs0.img", 8 * MiB)
    secret = os.urandom(MiB)
    with open(theirs.path, "r+b") as f:
        f.write(secret)
    try:
        for lun in (mine, mytape, theirs):
            iscsi.export_iscsi(lun, TARGET2, TARGET_IP, netns=net)
        iscsi.allow_initiator(TARGET2, INITIATOR, luns=[mine, mytape], chap=SAVE_CHAP)
        iscsi.allow_initiator(TARGET2, STRANGER, luns=[theirs], chap=STRANGER_CHAP)
        discover()
        # open-iscsi drops the default iface's record of a target when another iface's is
        # made: make and use one record at a time (a session outlives its record)
        node_auth("stranger", *STRANGER_CHAP, None, target=TARGET2)
        login("stranger", target=TARGET2)
        node_auth("default", *SAVE_CHAP, None, target=TARGET2)
        login("default", target=TARGET2)
        _, my_sg = session_device(session_of(TARGET2), mine, "disk")
        _, tape_sg = session_device(session_of(TARGET2), mytape, "tape")
        _, their_sg = session_device(session_of(TARGET2, "stranger"), theirs, "disk")
        clear_unit_attention(my_sg, tape_sg, their_sg)

        def send(sg, plist, name):
            path = work / name
            path.write_bytes(plist)
            n = len(plist).to_bytes(4, "big").hex(" ").split()
            return run("sg_raw", "-t", "600", "-s", str(len(plist)), "-i", str(path), sg,
                       "83", *["00"] * 9, *n, "00", "00", check=False)

        def refused(sg, plist, name):
            p = send(sg, plist, name)
            assert sense_of(p.stdout + p.stderr) == ("Copy Aborted",
                                                     "Copy target device not reachable")

        # theirs -> mine, received by mine: a read of what this initiator may not see
        steal = xcopy.build_extended_copy([cscd(theirs, 0, BS), cscd(mine, 0, BS)],
                                          [BlockToBlock(0, 1, 2048, 0, 0)])
        refused(my_sg, steal, "steal.plist")
        with open(mine.path, "rb") as f:
            assert f.read(MiB) != secret
        # mine -> theirs: a write into the other server's disk
        spoil = xcopy.build_extended_copy([cscd(mine, 0, BS), cscd(theirs, 0, BS)],
                                          [BlockToBlock(0, 1, 2048, 0, 0)])
        refused(my_sg, spoil, "spoil.plist")
        with open(theirs.path, "rb") as f:
            assert f.read(MiB) == secret
        # the other server's own LUN receiving a copy naming ours: refused too
        refused(their_sg, steal, "steal2.plist")
        # mine -> my tape: both exported to exactly this initiator, so allowed
        ok = xcopy.build_extended_copy([cscd(mine, 0, BS), cscd(mytape, 1, 0)],
                                       [BlockToStream(0, 1, 2048, 0, 65536)])
        p = send(my_sg, ok, "ok.plist")
        assert p.returncode == 0, p.stdout + p.stderr
        assert "copy access policy keeps apart" in lab.daemon.text()
    finally:
        logout("default", target=TARGET2)
        logout("stranger", target=TARGET2)
        with contextlib.suppress(Exception):
            iscsi.delete_target(TARGET2)
        for name in ("mine0", "mytape0", "theirs0"):
            with contextlib.suppress(Exception):
                provision.delete(name)
        clear_unit_attention(lab.disk_sg, lab.tape_sg)


def test_no_stale_data_over_iscsi(lab, attached):
    """The same probes over the iSCSI session: the residual reaches the initiator in the
    SCSI Response PDU, and no buffer holds the data area's earlier contents."""
    last = int(run("blockdev", "--getsz", attached["disk"]).stdout) - 8
    resids = check_no_stale_data(attached["disk_sg"], lba=last)
    assert resids["INQUIRY, allocation length 36"] == 4096 - 36
