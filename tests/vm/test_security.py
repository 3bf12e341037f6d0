"""Security against the real kernel: a uio device of another subtype is never opened,
the copy access policy over iSCSI with two initiators that see different LUNs, CHAP
secrets out of every log and output, and the modes of the files on their real paths."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import MiB, clear_unit_attention, run
from plugins.vm_iscsi import (
    INITIATOR,
    NETNS,
    STRANGER,
    TARGET_IP,
    discover,
    login,
    logout,
    node_auth,
    session_device,
    session_of,
    sessions,
)

from lio_xcopy.control import iscsi, provision
from lio_xcopy.control.shell import mask_secrets

BS = 512
SUBTYPE_DIR = Path("/sys/class/uio")


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def daemon_fds(pid: int) -> list[str]:
    fds = Path(f"/proc/{pid}/fd")
    out = []
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            out.append(os.readlink(fd))
    return out


# --- a uio device whose subtype is not ours ----------------------------------------------------
def test_a_foreign_subtype_is_never_opened_and_its_commands_are_not_answered(lab):
    """A user backstore of subtype ``other`` (as tcmu-runner's would be), exported by
    tcm_loop beside ours: the daemon leaves its uio device closed and says so at debug,
    the kernel's scan of it gets no answer from us (the kernel fails its INQUIRY after
    the LUN's cmd_time_out), so no SCSI device appears for it; ours go on serving."""
    import rtslib

    img = lab.work / "foreign.img"
    img.write_bytes(b"\xa5" * MiB)
    before = img.read_bytes()
    so = rtslib.UserBackedStorageObject("foreign0", config=f"other/{img}", size=MiB,
                                        wwn="5ec0ff0e-1234", control=provision.CONTROL)
    try:
        so.set_attribute("cmd_time_out", "2")  # only while not exported
        uio = next(p for p in SUBTYPE_DIR.iterdir()
                   if (p / "name").read_text().split("/")[2:4] == ["foreign0", "other"])
        sys_path = str(uio.resolve())
        hosts_before = set(os.listdir("/sys/bus/scsi/devices"))
        fabric = rtslib.FabricModule("loopback")
        tpg = rtslib.TPG(next(iter(fabric.targets)), 1)
        lun = rtslib.LUN(tpg, storage_object=so)  # tcm_loop scans it now, synchronously
        run("udevadm", "settle", check=False)
        new = set(os.listdir("/sys/bus/scsi/devices")) - hosts_before
        # the daemon never opened it
        assert f"/dev/{uio.name}" not in daemon_fds(lab.daemon.proc.pid)
        assert f"{sys_path}: not ours" in lab.daemon.text(), lab.daemon.text()[-2000:]
        mentions = [line for line in lab.daemon.text().splitlines() if "foreign0" in line]
        assert mentions and all(f"{sys_path}: not ours" in line for line in mentions), mentions
        # the kernel's INQUIRY for the scan was not answered, so nothing attached at its LUN
        hctl = next((h for h in new if h.endswith(f":{lun.lun}")), None)
        assert hctl is None, f"a SCSI device attached for the foreign LUN: {new}"
        # LIO itself lists the LUN (it answers REPORT LUNS), yet no device came of it
        luns = run("sg_luns", lab.disk_sg).stdout
        assert re.search(rf"^\s+{lun.lun:04x}0{{12}}\b", luns, re.M), luns  # SAM-5 4.7
        assert img.read_bytes() == before
        # our LUNs still serve
        clear_unit_attention(lab.disk_sg, lab.tape_sg)
        run("sg_turs", lab.disk_sg)
        assert lab.daemon.alive()
    finally:
        for attached in list(so.attached_luns):
            attached.delete()
        so.delete()
        clear_unit_attention(lab.disk_sg, lab.tape_sg)


# --- the copy access policy: every LUN the daemon serves, from every LUN an initiator sees -----
TARGET_POLICY = "iqn.2026-11.org.lio-xcopy:saved"  # test_iscsi's discover() looks for it
CHAP_A = ("policy-a", "p0licy-secret-a1")
CHAP_B = ("policy-b", "p0licy-secret-b2")


class Served:
    """A LUN the daemon serves: its NAA, kind and the files holding its data."""

    def __init__(self, so):
        from lio_xcopy.scsi.spc import naa_ieee_registered_extended

        self.name = so.name
        cfg = so.config.split("/", 1)[1]
        kind, path, *_ = cfg.split(";")
        self.kind = "tape" if kind == "tape" else kind  # library drives are tapes too
        self.path = Path(path)
        self.naa = naa_ieee_registered_extended(so.wwn)
        self.pdt = {"disk": 0, "tape": 1}.get(self.kind, 0)

    def digest(self) -> str:
        h = hashlib.sha256()
        files = [self.path] if self.path.is_file() else sorted(
            p for p in self.path.iterdir() if p.is_file() and not p.name.startswith("."))
        for f in files:
            h.update(f.name.encode())
            h.update(f.read_bytes())
        return h.hexdigest()


def served_luns(daemon) -> dict[str, Served]:
    """Every LUN the running daemon serves (its state file), with rtslib's settings."""
    import rtslib

    state = json.loads(Path("/run/lio-xcopy/state.json").read_text())
    return {so.name: Served(so) for so in rtslib.RTSRoot().storage_objects
            if so.plugin == "user" and so.name in state["luns"]}


def plist_between(src: Served, dst: Served, blocks: int = 2048,
                  src_lba: int = 0, dst_lba: int = 0) -> bytes:
    """One segment from ``src`` to ``dst`` of the type their kinds need."""
    from lio_xcopy.scsi import xcopy
    from lio_xcopy.scsi.xcopy import (
        BlockToBlock,
        BlockToStream,
        IdentificationCscd,
        StreamToBlock,
        StreamToStream,
    )

    cscds = [IdentificationCscd(x.naa, x.pdt, block_length=BS if x.pdt == 0 else 0)
             for x in (src, dst)]
    seg = {(0, 0): BlockToBlock(0, 1, blocks, src_lba, dst_lba),
           (0, 1): BlockToStream(0, 1, blocks, src_lba, 65536),
           (1, 0): StreamToBlock(0, 1, blocks, dst_lba, 65536),
           (1, 1): StreamToStream(0, 1, blocks * BS, 65536, 65536)}[(src.pdt, dst.pdt)]
    return xcopy.build_extended_copy(cscds, [seg])  # NO LIST ID


def extended_copy(sg: str, plist: bytes):
    """Send one EXTENDED COPY through SG_IO; the Result, whatever its status."""
    from lio_xcopy.scsi import xcopy
    from lio_xcopy.sg.sgio import SgIoDevice

    cdb = xcopy.ExtendedCopyLid1(parameter_list_length=len(plist)).encode()
    with SgIoDevice(sg) as dev:
        return dev.execute(cdb, data_out=plist, timeout=300, check=False)


@pytest.mark.usefixtures("net", "iscsid")
def test_every_cscd_the_policy_forbids_is_refused_from_every_lun_of_two_initiators(lab, work):
    """Initiator A sees a disk and a tape, initiator B another disk and tape (one target,
    ACLs with CHAP); the loopback LUNs are a third nexus. Each LUN A or B sees receives
    an EXTENDED COPY naming each other LUN the daemon serves, once as source and once as
    destination, and the loopback LUNs name each iSCSI LUN: exactly the pairs within one
    initiator's LUNs run (and move the bytes); every other one is COPY ABORTED, COPY
    TARGET DEVICE NOT REACHABLE (0Dh/0Dh/02h), logged, and changes no LUN's data."""
    from lio_xcopy.scsi.sense import SenseKey

    made = {"a": (provision.create_disk("seca-disk", work / "seca-disk.img", 8 * MiB),
                  provision.create_tape("seca-tape", work / "seca-tape.aws", 16 * MiB)),
            "b": (provision.create_disk("secb-disk", work / "secb-disk.img", 8 * MiB),
                  provision.create_tape("secb-tape", work / "secb-tape.aws", 16 * MiB))}
    data = {"a": os.urandom(MiB), "b": os.urandom(MiB)}
    for side, (disk, _) in made.items():
        with open(disk.path, "r+b") as f:
            f.write(data[side])
    try:
        for lun in (*made["a"], *made["b"]):
            iscsi.export_iscsi(lun, TARGET_POLICY, TARGET_IP, netns=NETNS)
        iscsi.allow_initiator(TARGET_POLICY, INITIATOR, luns=list(made["a"]), chap=CHAP_A)
        iscsi.allow_initiator(TARGET_POLICY, STRANGER, luns=list(made["b"]), chap=CHAP_B)
        discover()
        node_auth("stranger", *CHAP_B, None, target=TARGET_POLICY)
        login("stranger", target=TARGET_POLICY)
        node_auth("default", *CHAP_A, None, target=TARGET_POLICY)
        login("default", target=TARGET_POLICY)
        seen = {}  # LUN name -> (initiator side, sg, node)
        for side, iface in (("a", "default"), ("b", "stranger")):
            sid = session_of(TARGET_POLICY, iface)
            for lun in made[side]:
                node, sg = session_device(sid, lun, lun.kind)
                seen[lun.name] = (side, sg, node)
        clear_unit_attention(*(sg for _, sg, _ in seen.values()))
        served = served_luns(lab.daemon)
        assert set(seen) <= set(served) and {"vmdisk0", "vmtape0"} <= set(served), served
        group = {name: side for name, (side, _, _) in seen.items()}

        # the forbidden pairs first: nothing of any LUN may change
        before = {name: lun.digest() for name, lun in served.items()}
        log_start = len(lab.daemon.text())
        receivers = {**{n: sg for n, (_, sg, _) in seen.items()},
                     "vmdisk0": lab.disk_sg, "vmtape0": lab.tape_sg}
        tried: dict[str, list[tuple[str, str, str]]] = {"refused": [], "other": []}
        for receiver, sg in receivers.items():
            others = served if receiver in group else seen
            for other in sorted(others):
                if other == receiver or group.get(other, "?") == group.get(receiver, "!"):
                    continue
                for src, dst in ((other, receiver), (receiver, other)):
                    r = extended_copy(sg, plist_between(served[src], served[dst]))
                    key = (receiver, src, dst)
                    ok = (r.sense is not None and r.sense.key == SenseKey.COPY_ABORTED
                          and r.sense.asc == 0x0D02)
                    tried["refused" if ok else "other"].append(key)
        assert not tried["other"], tried["other"]
        after = {name: lun.digest() for name, lun in served.items()}
        assert after == before
        log = lab.daemon.text()[log_start:]
        for receiver, src, dst in tried["refused"]:
            other = dst if src == receiver else src
            assert re.search(rf"EXTENDED COPY at {receiver} names .*: {other}, which the copy "
                             "access policy keeps apart from it: refused", log), (receiver, other)
        # the allowed pairs: within one initiator's LUNs, each way, received by each
        allowed = []
        for side, (disk, tape) in made.items():
            nst = seen[tape.name][2]
            for i, receiver in enumerate((disk.name, tape.name)):
                sg = seen[receiver][1]
                run("mt", "-f", nst, "rewind")
                r = extended_copy(sg, plist_between(served[disk.name], served[tape.name]))
                assert r.good, r.explain()
                run("mt", "-f", nst, "rewind")
                lba = 4096 * (i + 1)
                r = extended_copy(sg, plist_between(served[tape.name], served[disk.name],
                                                    dst_lba=lba))
                assert r.good, r.explain()
                with open(disk.path, "rb") as f:
                    f.seek(lba * BS)
                    assert f.read(MiB) == data[side]
                allowed += [(receiver, disk.name, tape.name), (receiver, tape.name, disk.name)]
        print(f"policy: {len(tried['refused'])} forbidden copies refused "
              f"({len(receivers)} receiving LUNs, {len(served)} LUNs served), "
              f"{len(allowed)} allowed copies done")
        assert len(tried["refused"]) == 2 * (4 * (len(served) - 2) + 2 * 4)
    finally:
        logout("default", target=TARGET_POLICY)
        logout("stranger", target=TARGET_POLICY)
        with contextlib.suppress(Exception):
            iscsi.delete_target(TARGET_POLICY)
        for lun in (*made["a"], *made["b"]):
            with contextlib.suppress(Exception):
                provision.delete(lun.name)
        clear_unit_attention(lab.disk_sg, lab.tape_sg)


# --- CHAP secrets never appear in logs or outputs -------------------------------------------
SECRET, MUTUAL_SECRET = "Chap-S3cr3t-q7Zx41", "Mutu4l-S3cr3t-k9Wv22"
#: the CLI with every library's logging at debug, as `--log-level debug` would give it
DEBUG_CLI = ("import logging, sys; logging.basicConfig(level=logging.DEBUG); "
             "from lio_xcopy.cli import main; sys.exit(main(sys.argv[1:]))")


@pytest.mark.usefixtures("net", "iscsid")
def test_chap_secrets_never_appear_in_logs_status_or_info(lab, work):
    """CHAP and mutual CHAP set through the administrator's shell, saved, the target
    removed and restored, the initiator logging in each time: the secrets are in the
    saved file (0600) and in LIO, and nowhere else: not in any command's output or debug
    log, `status`, `info`, `ls`, the daemon's debug log, its state file, dmesg, the
    journal, or the shell's home."""
    iqn, ini = TARGET_POLICY, INITIATOR
    home = work / "chap-home"
    saved = work / "chap-etc" / "saveconfig.json"
    env = {**os.environ, "LIO_XCOPY_HOME": str(home)}
    outputs: list[str] = []

    def cli(*args: str, ok: bool = True):
        p = subprocess.run([sys.executable, "-c", DEBUG_CLI, *args], capture_output=True,
                           text=True, env=env, timeout=300)
        # the test's own echo of the command masked: only what the tool printed counts
        outputs.append(f"$ lio-xcopy {mask_secrets(' '.join(args))}\n{p.stdout}{p.stderr}")
        assert (p.returncode == 0) == ok, outputs[-1]
        return p

    tpg = f"/iscsi/{iqn}/tpg1"
    acl = f"userid=chapuser password={SECRET} mutual_userid=tgtuser " \
          f"mutual_password={MUTUAL_SECRET}"
    disk_img = work / "chapdisk.img"
    run("dmesg", "-C", check=False)
    log_start = len(lab.daemon.text())
    try:
        cli("/backstores/disk", "create", "name=chapdisk", f"file={disk_img}", "size=8M")
        cli("/iscsi", "create", iqn)
        cli(f"{tpg}/portals", "create", TARGET_IP, f"netns={NETNS}")
        cli(f"{tpg}/luns", "create", "/backstores/disk/chapdisk")
        # refused: the secret too long, then the same for both ways; neither echoes it
        cli(f"{tpg}/acls", "create", ini, "userid=chapuser", f"password={SECRET * 20}",
            ok=False)
        cli(f"{tpg}/acls", "create", ini, "userid=chapuser", f"password={SECRET}",
            "mutual_userid=tgtuser", f"mutual_password={SECRET}", ok=False)
        cli(f"{tpg}/acls", "create", ini, *acl.split())
        info = cli(f"{tpg}/acls/{ini}", "info").stdout
        assert "password: set" in info and "chapuser" in info, info
        cli("ls")
        cli("saveconfig", str(saved))
        assert SECRET in saved.read_text() and MUTUAL_SECRET in saved.read_text()
        assert mode(saved) == 0o600 and mode(saved.parent) == 0o700
        cli("status", str(saved))

        def log_in_and_out() -> None:
            discover()
            node_auth("default", "chapuser", SECRET, ("tgtuser", MUTUAL_SECRET), target=iqn)
            login("default", target=iqn)
            assert any(name == iqn for _, name in sessions())
            logout("default", target=iqn)

        log_in_and_out()
        cli("/iscsi", "delete", iqn)
        cli("/backstores/disk", "delete", "chapdisk")
        cli("restoreconfig", str(saved))
        cli("restoreconfig", str(saved))
        cli("status", str(saved))
        log_in_and_out()
        cli(f"{tpg}/acls/{ini}", "info")
    finally:
        logout("default", target=iqn)
        with contextlib.suppress(Exception):
            iscsi.delete_target(iqn)
        with contextlib.suppress(Exception):
            provision.delete("chapdisk")
        clear_unit_attention(lab.disk_sg, lab.tape_sg)
    places = {"outputs": "\n".join(outputs),
              "daemon log": lab.daemon.text()[log_start:],
              "dmesg": run("dmesg", check=False).stdout,
              "state file": Path("/run/lio-xcopy/state.json").read_text()}
    journal = run("journalctl", "--no-pager", "-q", check=False) \
        if os.path.exists("/run/systemd/journal") else None
    if journal is not None and journal.returncode == 0:
        places["journal"] = journal.stdout
    for f in (p for p in home.rglob("*") if p.is_file()) if home.exists() else ():
        places[str(f)] = f.read_text(errors="replace")
    assert "password: set" in places["outputs"]
    leaks = {where: [s for s in (SECRET, MUTUAL_SECRET) if s in text]
             for where, text in places.items()}
    assert not any(leaks.values()), leaks
    print(f"CHAP: {len(outputs)} commands, searched {sorted(places)}: no secret")


# --- modes of the files on their real paths, whatever the umask ------------------------------
def test_saved_config_catalog_library_images_and_state_file_modes_under_umask_000(lab, work):
    """With umask 000: the saved configuration (default path) is 0600 in a 0700
    directory, its backups 0600; the catalog 0600; a library's state and cartridges 0600;
    disk and tape images 0600; the daemon's state file 0644 (it holds no secrets) in a
    0755 directory: nothing others may write, nothing with secrets others may read."""
    env = {**os.environ, "LIO_XCOPY_HOME": str(work / "modes-home")}
    env.pop("LIO_XCOPY_CATALOG", None)

    def cli(*args: str) -> None:
        p = subprocess.run([sys.executable, "-m", "lio_xcopy", *args], capture_output=True,
                           text=True, env=env, timeout=300, preexec_fn=lambda: os.umask(0))
        assert p.returncode == 0, f"lio-xcopy {' '.join(args)}: {p.stdout}{p.stderr}"

    etc = Path("/etc/lio-xcopy")
    saved = etc / "saveconfig.json"
    new_etc = not etc.exists()
    kept = {p: p.read_bytes() for p in etc.glob("saveconfig.json*")} if not new_etc else {}
    catalog = Path("/var/lib/lio-xcopy/catalog.db")
    new_catalog_dir = not catalog.parent.exists()
    try:
        cli("/backstores/disk", "create", "name=modedisk", f"file={work}/modedisk.img",
            "size=4M")
        cli("/backstores/tape", "create", "name=modetape", f"file={work}/modetape.aws",
            "capacity=4M")
        deadline = time.monotonic() + 60  # the daemon opens the tape and makes its file
        while "serving modetape" not in lab.daemon.text():
            assert time.monotonic() < deadline, lab.daemon.text()[-2000:]
            time.sleep(0.2)
        assert mode(work / "modetape.aws") == 0o600
        cli("saveconfig")
        cli("/backstores/disk", "delete", "modedisk")
        cli("saveconfig")  # the first one becomes saveconfig.json.1
        assert mode(saved) == 0o600 and mode(f"{saved}.1") == 0o600
        if new_etc:
            assert mode(etc) == 0o700
        cli("catalog")
        assert mode(catalog) == 0o600
        if new_catalog_dir:
            assert mode(catalog.parent) == 0o700
        lib = work / "modelib"
        cli("library", str(lib), "create", "--slots", "4", "--drives", "1", "--barcodes", "2")
        files = {p.name: mode(p) for p in lib.iterdir()}
        assert "library.json" in files and set(files.values()) == {0o600}, files
        assert mode(lib) == 0o700
        assert mode(work / "modedisk.img") == 0o600
        state = Path("/run/lio-xcopy/state.json")
        assert mode(state) == 0o644 and mode(state.parent) & 0o022 == 0
    finally:
        with contextlib.suppress(Exception):
            provision.delete("modedisk")
        with contextlib.suppress(Exception):
            provision.delete("modetape")
        for p in etc.glob("saveconfig.json*"):
            p.unlink()
        for p, data in kept.items():
            p.write_bytes(data)
            p.chmod(0o600)
