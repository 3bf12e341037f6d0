"""Load: fio (random writes of 4 KiB-1 MiB, crc32c verify, two jobs per LUN) on two
disk LUNs of the daemon through sd, while an EXTENDED COPY moves a third disk to a
tape. No verify error, no failed I/O, no sd error, and the tape holds the disk exactly."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from conftest import MiB, clear_unit_attention, extra_lun, run, sense_of

from lio_xcopy.control import provision
from lio_xcopy.devices.awstape import AwsTape
from lio_xcopy.scsi import xcopy
from lio_xcopy.scsi.xcopy import BlockToStream, IdentificationCscd
from lio_xcopy.sg import sgio

BS = 512
FIO_DISK = 48 * MiB
JOB_SPAN = 16 * MiB  # each of the two jobs of a LUN writes and verifies its own 16 MiB
COPY_SIZE = 32 * MiB


@pytest.fixture(scope="module")
def luns(lab):
    made = []
    try:
        disks = []
        for i in range(2):
            lun = provision.create_disk(f"vmload{i}", lab.work / f"load{i}.img", FIO_DISK)
            made.append(lun.name)
            disks.append(extra_lun(lab, lun))
        data = os.urandom(COPY_SIZE)
        (lab.work / "loadsrc.img").write_bytes(data)
        src = provision.create_disk("vmloadsrc", lab.work / "loadsrc.img", COPY_SIZE)
        made.append(src.name)
        src_dev = extra_lun(lab, src)
        tape = provision.create_tape("vmloadtape", lab.work / "loadtape.aws", 128 * MiB)
        made.append(tape.name)
        tape_dev = extra_lun(lab, tape)
        clear_unit_attention(*(str(d.sg) for d in (*disks, src_dev, tape_dev)))
        yield disks, (src, src_dev, data), (tape, tape_dev)
    finally:
        for name in made:
            provision.delete(name)
        clear_unit_attention(lab.disk_sg, lab.tape_sg)


def fio_job(path) -> str:
    return (f"[{os.path.basename(path)}]\nfilename={path}\nnumjobs=2\nsize={JOB_SPAN}\n"
            f"offset_increment={JOB_SPAN}\n")


def test_fio_verify_on_two_luns_while_a_copy_runs_to_tape(lab, luns):
    disks, (src, src_dev, data), (tape, tape_dev) = luns
    sds = [str(d.block) for d in disks]
    before = {sd: sgio.io_counters(sd) for sd in sds}
    dmesg_lines = len(run("dmesg").stdout.splitlines())
    jobfile = lab.work / "load.fio"
    jobfile.write_text(
        "[global]\nioengine=libaio\ndirect=1\niodepth=4\nrw=randwrite\n"
        "bssplit=4k/40:16k/20:64k/20:256k/10:1m/10\nblockalign=4k\n"
        "verify=crc32c\ndo_verify=1\nverify_fatal=1\ngroup_reporting=0\n"
        + "".join(fio_job(sd) for sd in sds))
    out = lab.work / "load.json"
    fio = subprocess.Popen(["fio", "--output-format=json", f"--output={out}", str(jobfile)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while all(sgio.io_counters(sd).written_bytes == before[sd].written_bytes for sd in sds):
            assert fio.poll() is None, fio.communicate()
            assert time.monotonic() < deadline, "fio wrote nothing in 120 s"
            time.sleep(0.2)
        run("mt", "-f", str(tape_dev.tape), "rewind")
        half = COPY_SIZE // BS // 2
        plist = xcopy.build_extended_copy(
            [IdentificationCscd(bytes.fromhex(src.naa), 0, block_length=BS),
             IdentificationCscd(bytes.fromhex(tape.naa), 1, block_length=0)],
            [BlockToStream(0, 1, half, i * half, 65536) for i in range(2)])  # 16-bit counts
        path = lab.work / "load.plist"
        path.write_bytes(plist)
        t0 = time.monotonic()
        p = run("sg_raw", "-t", "900", "-s", str(len(plist)), "-i", str(path), str(src_dev.sg),
                "83", *["00"] * 9, *len(plist).to_bytes(4, "big").hex(" ").split(), "00", "00",
                check=False, timeout=900)
        copy_s = time.monotonic() - t0
        assert p.returncode == 0, sense_of(p.stdout + p.stderr)
        fio_running_at_copy_end = fio.poll() is None
        _, stderr = fio.communicate(timeout=1800)
    finally:
        if fio.poll() is None:
            fio.kill()
            fio.wait()
    assert fio.returncode == 0, stderr
    text = out.read_text()  # fio's warnings come first (multiple writers: ours write apart)
    report = json.loads(text[text.index("{"):])
    jobs = report["jobs"]
    assert len(jobs) == 4
    for job in jobs:
        assert job["error"] == 0, job["jobname"]
        # the verify phase read back what the job wrote (a block rewritten by a later
        # overlapping write is verified once, as the later one)
        assert 0 < job["read"]["io_bytes"] <= job["write"]["io_bytes"], job["jobname"]
        assert job["write"]["io_bytes"] >= JOB_SPAN
    for sd in sds:
        assert sgio.io_counters(sd).errors == before[sd].errors, sd
    new = run("dmesg").stdout.splitlines()[dmesg_lines:]
    names = [os.path.basename(sd) for sd in sds]
    bad = [ln for ln in new if any(n in ln for n in names) and "error" in ln.lower()]
    assert not bad, "\n".join(bad)
    on_tape = AwsTape.open_readonly(tape.path).dump_records()
    assert b"".join(r for r in on_tape if r is not None) == data
    w_iops = sum(j["write"]["iops"] for j in jobs)
    r_iops = sum(j["read"]["iops"] for j in jobs)
    w_bw = sum(j["write"]["bw_bytes"] for j in jobs) / 1e6
    r_bw = sum(j["read"]["bw_bytes"] for j in jobs) / 1e6
    print(f"\nfio: 4 jobs on {names}: write {w_iops:.0f} IOPS {w_bw:.1f} MB/s, verify read "
          f"{r_iops:.0f} IOPS {r_bw:.1f} MB/s, {sum(j['write']['io_bytes'] for j in jobs)} "
          f"bytes written and verified, 0 verify errors; copy {len(data)} bytes to tape in "
          f"{copy_s:.1f} s (fio still running at its end: {fio_running_at_copy_end})")
