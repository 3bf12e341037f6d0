"""Save, remove everything, restore: the LUNs come back with their data and names."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys

from conftest import MiB, clear_unit_attention, run

from lio_xcopy.control import provision


def cli(*args: str, check: bool = True):
    return run(sys.executable, "-m", "lio_xcopy", *args, check=check)


def test_save_stop_restore_round_trip(lab):
    saved = lab.work / "etc" / "saveconfig.json"
    lun = provision.create_disk("keepme", lab.work / "keepme.img", 8 * MiB)
    provision.export_loopback(lun)
    dev = provision.find_kernel_device(lun)
    clear_unit_attention(lab.disk_sg, lab.tape_sg, str(dev.sg))
    data = os.urandom(2 * MiB)
    src = lab.work / "keep.src"
    src.write_bytes(data)
    run("dd", f"if={src}", f"of={dev.block}", "bs=1M", "oflag=direct", "conv=fsync")
    out = cli("saveconfig", str(saved)).stdout
    assert "saved 2 disk(s), 1 tape(s)" in out
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.parent.stat().st_mode) == 0o700
    doc = json.loads(saved.read_text())
    assert {d["name"] for d in doc["disks"]} == {"vmdisk0", "keepme"}
    # remove the LUN (as a reboot would), then restore from the file
    provision.delete("keepme")
    clear_unit_attention(lab.disk_sg, lab.tape_sg)
    p = cli("restoreconfig", str(saved))
    assert "created disk keepme" in p.stdout and "0 error(s)" in p.stdout, p.stdout
    again = provision.find_kernel_device(lun)  # the same NAA: the wwn was restored
    clear_unit_attention(lab.disk_sg, lab.tape_sg, str(again.sg))
    with open(again.block, "rb", buffering=0) as f:
        got = f.read(len(data))
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    # restoring twice is harmless
    p = cli("restoreconfig", str(saved))
    assert "0 created" in p.stdout and "0 error(s)" in p.stdout, p.stdout
    status = cli("status").stdout
    assert "disk keepme:" in status and "loopback lun" in status
    provision.delete("keepme")
    clear_unit_attention(lab.disk_sg, lab.tape_sg)


def test_corrupt_saved_file_is_refused_and_changes_nothing(lab):
    bad = lab.work / "corrupt.json"
    bad.write_text('{"version": 1, "disks": [')
    before = cli("status").stdout
    p = cli("restoreconfig", str(bad), check=False)
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and "corrupt.json" in p.stderr, p.stderr
    assert cli("status").stdout == before


def test_missing_backing_file_is_refused_not_recreated_empty(lab):
    cfgfile = lab.work / "missing.json"
    gone = lab.work / "gone.img"
    cfgfile.write_text(json.dumps({"version": 1, "disks": [
        {"name": "ghost", "path": str(gone), "size": 8 * MiB, "block_size": 512}]}))
    os.chmod(cfgfile, 0o600)
    p = cli("restoreconfig", str(cfgfile), check=False)
    assert p.returncode == 1 and "backing" in p.stderr and "missing" in p.stderr, p.stderr
    assert not gone.exists()
    assert "ghost" not in cli("status").stdout


def test_a_saved_lun_without_a_serial_restores_twice_harmlessly(lab):
    """A hand-written file may leave ``wwn`` out: LIO picks a serial, and the next
    restore takes the running LUN of that name as the same one."""
    cfgfile = lab.work / "noserial.json"
    img = lab.work / "noserial.img"
    img.write_bytes(bytes(4 * MiB))
    cfgfile.write_text(json.dumps({"version": 2, "disks": [
        {"name": "noserial", "path": str(img), "size": 4 * MiB}]}))
    os.chmod(cfgfile, 0o600)
    try:
        p = cli("restoreconfig", str(cfgfile))
        assert "created disk noserial" in p.stdout and " 0 error(s)" in p.stdout, p.stdout
        p = cli("restoreconfig", str(cfgfile))
        assert "0 created, 0 changed, 1 already present, 0 error(s)" in p.stdout, p.stdout
    finally:
        provision.delete("noserial")
