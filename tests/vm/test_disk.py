"""A disk LUN through tcm_loop, talked to with sg3_utils and dd."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from conftest import DISK_SIZE, MiB, run, sense_of


def test_sg_inq_reports_our_disk(lab):
    out = run("sg_inq", lab.disk_sg).stdout
    assert re.search(r"PQual=0\s+PDT=0\b", out) or "Device_type=0" in out
    assert "LIO-ORG" in out and "lio-xcopy disk" in out


def test_sg_vpd_device_identification_has_lio_naa(lab):
    out = run("sg_vpd", "-p", "di", lab.disk_sg).stdout
    assert "0x" + lab.disk_lun.naa in out.replace(" ", "").lower() or lab.disk_lun.naa in out
    assert lab.disk_lun.naa.startswith("6001405")


def test_sg_vpd_unit_serial_is_the_lio_wwn(lab):
    out = run("sg_vpd", "-p", "sn", lab.disk_sg).stdout
    assert lab.disk_lun.unit_serial in out


def test_sg_readcap(lab):
    out = run("sg_readcap", "--16", lab.disk_sg).stdout
    blocks = DISK_SIZE // 512
    assert re.search(rf"Last LBA={blocks - 1}\b", out), out
    assert re.search(rf"Number of logical blocks={blocks}\b", out), out
    assert "Logical block length=512 bytes" in out


def test_o_direct_64mib_write_read_back_byte_exact(lab):
    src = lab.work / "random64"
    with src.open("wb") as f:
        f.write(os.urandom(64 * MiB))
    run("dd", f"if={src}", f"of={lab.sd}", "bs=1M", "oflag=direct", "conv=fsync")
    back = lab.work / "back64"
    run("dd", f"if={lab.sd}", f"of={back}", "bs=1M", "count=64", "iflag=direct")
    want = hashlib.sha256(src.read_bytes()).hexdigest()
    assert hashlib.sha256(back.read_bytes()).hexdigest() == want
    # the bytes are in the backing file, where the initiator put them
    with open(lab.disk_lun.path, "rb") as f:
        assert hashlib.sha256(f.read(64 * MiB)).hexdigest() == want
    back.unlink()


def test_read_past_end_is_lba_out_of_range(lab):
    blocks = DISK_SIZE // 512
    lba = blocks.to_bytes(4, "big").hex(" ").split()
    p = run("sg_raw", "-r", "512", lab.disk_sg, "28", "00", *lba, "00", "00", "01", "00",
            check=False)
    assert p.returncode != 0
    assert sense_of(p.stdout + p.stderr) == ("Illegal Request",
                                             "Logical block address out of range")


def test_unknown_opcode_is_invalid_command_operation_code(lab):
    p = run("sg_raw", lab.disk_sg, "c9", "00", "00", "00", "00", "00", check=False)
    assert sense_of(p.stdout + p.stderr) == ("Illegal Request", "Invalid command operation code")


def test_bad_field_points_at_it(lab):
    # READ(10) with RDPROTECT=7: no protection information on this LUN
    p = run("sg_raw", "-r", "512", lab.disk_sg, "28", "e0", "00", "00", "00", "00", "00",
            "00", "01", "00", check=False)
    out = p.stdout + p.stderr
    assert sense_of(out) == ("Illegal Request", "Invalid field in cdb")
    assert re.search(r"byte 1 bit 7", out), out


def test_daemon_still_serves_after_malformed_cdbs(lab):
    for raw in (["00"] * 6, ["12", "01", "99", "00", "ff", "00"], ["a3", "1f"] + ["00"] * 10):
        run("sg_raw", "-r", "255", lab.disk_sg, *raw, check=False)
    assert lab.daemon.alive()
    run("sg_turs", lab.disk_sg)
    out = run("sg_inq", lab.disk_sg).stdout
    assert "LIO-ORG" in out


def test_report_supported_operation_codes(lab):
    out = run("sg_opcodes", lab.disk_sg).stdout
    for name in ("Read(10)", "Write(10)", "Read capacity(10)", "Synchronize cache(10)"):
        assert name.lower() in out.lower(), out


def test_sd_sizes_requests_by_our_block_limits(lab):
    """VPD B0h: MAXIMUM and OPTIMAL TRANSFER LENGTH are the 4 MiB the kernel hands TCMU in
    one command (hw_max_sectors 8192), so sd sends requests up to that size."""
    queue = Path("/sys/block") / Path(lab.sd).name / "queue"
    assert int((queue / "optimal_io_size").read_text()) == 4 << 20
    assert int((queue / "max_sectors_kb").read_text()) == 4096
