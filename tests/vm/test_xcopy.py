"""EXTENDED COPY through the real kernel: sent with stock sg_raw and sg_xcopy."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DISK_SIZE, MiB, clear_unit_attention, extra_lun, run, sense_of
from plugins.vm_xcopy import cscd, fill_disk, read_disk, send

from lio_xcopy.control import provision
from lio_xcopy.devices.awstape import AwsTape
from lio_xcopy.scsi import xcopy
from lio_xcopy.scsi.xcopy import (
    BlockToBlock,
    BlockToStream,
    IdentificationCscd,
    StreamToBlock,
    StreamToStream,
)

BS = 512


def test_disk_to_tape_then_tape_to_disk_with_sg_raw(lab):
    data = os.urandom(8 * MiB)
    fill_disk(lab, 0, data)
    run("mt", "-f", lab.nst, "rewind")
    half = len(data) // BS // 2
    plist = xcopy.build_extended_copy(
        [cscd(lab.disk_lun, 0, BS), cscd(lab.tape_lun, 1, 0)],
        [BlockToStream(0, 1, half, 0, 65536), BlockToStream(0, 1, half, half, 65536)])
    send(lab, lab.disk_sg, plist, "d2t.plist")
    # what the initiator reads back through st is what was on the disk
    back = lab.work / "d2t.back"
    run("mt", "-f", lab.nst, "rewind")
    run("mt", "-f", lab.nst, "setblk", "0")
    run("dd", f"if={lab.nst}", f"of={back}", "bs=64k", "count=128")
    assert back.read_bytes() == data
    # and the cartridge holds 128 records of 64 KiB
    recs = AwsTape.open_readonly(lab.tape_lun.path).dump_records(limit=129)
    assert [len(r) for r in recs[:128]] == [65536] * 128
    # restore: tape -> the second half of the disk, by a tape->disk EXTENDED COPY
    run("mt", "-f", lab.nst, "rewind")
    dest_lba = DISK_SIZE // BS // 2
    plist = xcopy.build_extended_copy(
        [cscd(lab.tape_lun, 1, 0), cscd(lab.disk_lun, 0, BS)],
        [StreamToBlock(0, 1, len(data) // BS, dest_lba, 65536)])
    send(lab, lab.tape_sg, plist, "t2d.plist")
    assert read_disk(lab, dest_lba * BS, len(data)) == data


def test_stock_sg_xcopy_disk_to_disk(lab):
    other = provision.create_disk("xcopydst", lab.work / "xcopydst.img", 16 * MiB)
    dev = extra_lun(lab, other)
    try:
        data = os.urandom(4 * MiB)
        fill_disk(lab, 16 * MiB, data)
        out = run("sg_xcopy", f"if={lab.disk_sg}", f"of={dev.sg}", "bs=512",
                  f"skip={16 * MiB // BS}", f"count={len(data) // BS}", "-v")
        print(out.stdout, out.stderr)
        with open(other.path, "rb") as f:
            assert f.read(len(data)) == data
    finally:
        provision.delete("xcopydst")
        clear_unit_attention(lab.disk_sg, lab.tape_sg)


def test_receive_copy_results_operating_parameters(lab):
    out = lab.work / "opparams.bin"
    run("sg_raw", "-r", "128", "-o", str(out), lab.disk_sg, "84", "03", "00", "00", "00",
        "00", "00", "00", "00", "00", "00", "00", "00", "80", "00", "00")
    op = xcopy.OperatingParameters.parse(out.read_bytes())
    assert op.max_segment_count >= 256 and op.max_cscd_count >= 64
    assert op.max_segment_length >= 256 * MiB
    assert op.implemented_descriptor_types == (*range(0x14), 0xE4, 0xFE)  # 00h-13h, E4h, FEh
    assert op.max_inline_data_length == xcopy.MAX_INLINE_DATA


def test_stock_sg_xcopy_style_empty_block_to_stream_body_is_refused(lab):
    # what sg_xcopy sends for disk->tape: segment type 00h with no body
    good = xcopy.build_extended_copy(
        [cscd(lab.disk_lun, 0, BS), cscd(lab.tape_lun, 1, 0)],
        [BlockToStream(0, 1, 8, 0, 4096)])
    head, seg = good[:16 + 64], bytearray(good[16 + 64 : 16 + 64 + 8])
    seg[2:4] = b"\x00\x04"
    bad = bytearray(head + bytes(seg))
    bad[8:12] = (8).to_bytes(4, "big")
    p = send(lab, lab.disk_sg, bytes(bad), "empty.plist", check=False)
    assert sense_of(p.stdout + p.stderr) == ("Illegal Request", "Invalid field in parameter list")


def test_unknown_designator_is_copy_target_device_not_reachable(lab):
    stranger = IdentificationCscd(bytes.fromhex("6001405" + "0" * 25), 0, block_length=BS)
    plist = xcopy.build_extended_copy([cscd(lab.disk_lun, 0, BS), stranger],
                                      [BlockToBlock(0, 1, 8, 0, 0)])
    p = send(lab, lab.disk_sg, plist, "stranger.plist", check=False)
    assert sense_of(p.stdout + p.stderr) == ("Copy Aborted", "Copy target device not reachable")
    assert "Copy target device not reachable" in lab.daemon.text() or lab.daemon.alive()


def test_range_past_the_end_is_refused_and_nothing_moves(lab):
    before = read_disk(lab, 0, MiB)
    last = DISK_SIZE // BS - 4
    plist = xcopy.build_extended_copy([cscd(lab.disk_lun, 0, BS)],
                                      [BlockToBlock(0, 0, 8, last, 0)])
    p = send(lab, lab.disk_sg, plist, "range.plist", check=False)
    assert sense_of(p.stdout + p.stderr) == ("Copy Aborted",
                                             "Logical block address out of range")
    assert read_disk(lab, 0, MiB) == before
    assert lab.daemon.alive()
    run("sg_turs", lab.disk_sg)


def lio_xcopy(*args: str):
    return run(sys.executable, "-m", "lio_xcopy", "copy", *args)


def test_initiator_tool_disk_to_tape_and_back(lab):
    data = os.urandom(6 * MiB)
    fill_disk(lab, 32 * MiB, data)
    run("mt", "-f", lab.nst, "rewind")
    blocks = len(data) // BS
    out = lio_xcopy(f"if={lab.disk_sg}", f"of={lab.tape_sg}", f"skip={32 * MiB // BS}",
                    f"count={blocks}", "bs=512").stdout
    print(out)
    assert "copied 6.0 MiB" in out and "by the target's copy manager" in out
    run("mt", "-f", lab.nst, "rewind")
    back = lab.work / "tool.back"
    run("dd", f"if={lab.nst}", f"of={back}", "bs=64k", f"count={len(data) // 65536}")
    assert back.read_bytes() == data
    # and back to another place on the disk, tape -> disk
    run("mt", "-f", lab.nst, "rewind")
    out = lio_xcopy(f"if={lab.tape_sg}", f"of={lab.disk_sg}", f"seek={48 * MiB // BS}",
                    f"count={blocks}").stdout
    assert "copied 6.0 MiB" in out
    assert read_disk(lab, 48 * MiB, len(data)) == data


def test_initiator_tool_emits_a_list_stock_sg_raw_sends(lab):
    data = os.urandom(2 * MiB)
    fill_disk(lab, 64 * MiB, data)
    run("mt", "-f", lab.nst, "rewind")
    plist = lab.work / "emitted.plist"
    out = lio_xcopy(f"if={lab.disk_sg}", f"of={lab.tape_sg}", f"skip={64 * MiB // BS}",
                    f"count={len(data) // BS}", "--emit-plist", str(plist)).stdout
    send, status = (x.strip().split() for x in out.splitlines()
                    if x.strip().startswith("sg_raw "))
    assert send[send.index(lab.disk_sg) + 1 :][:2] == ["83", "01"], out  # LID4, IMMED
    run(*send)  # GOOD once the list is checked: follow the copy with the status line
    deadline = time.monotonic() + 60
    while True:
        st_file = lab.work / "emitted.status"
        run(status[0], "-o", str(st_file), *status[1:])
        st = xcopy.CopyStatusLid4.parse(st_file.read_bytes())
        if st.status not in (0x10, 0x11, 0x12):
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.2)
    assert (st.status, st.transferred_bytes) == (0x01, len(data)), st
    run("mt", "-f", lab.nst, "rewind")
    back = lab.work / "emitted.back"
    run("dd", f"if={lab.nst}", f"of={back}", "bs=64k", f"count={len(data) // 65536}")
    assert back.read_bytes() == data


def test_initiator_tool_reports_errors_in_words(lab):
    p = run(sys.executable, "-m", "lio_xcopy", "copy", f"if={lab.disk_sg}",
            f"of={lab.tape_sg}", f"skip={DISK_SIZE // BS - 8}", "count=16", check=False)
    assert p.returncode == 1
    assert "does not fit" in p.stderr and "Traceback" not in p.stderr


def _disk_to_tape_list(lab, blocks: int = 8) -> bytes:
    return xcopy.build_extended_copy(
        [cscd(lab.disk_lun, 0, BS), cscd(lab.tape_lun, 1, 0)],
        [BlockToStream(0, 1, blocks, 0, 4096)])


def _bad_lists(lab) -> dict[str, tuple[bytes, tuple[str, str]]]:
    good = _disk_to_tape_list(lab)
    ir = "Illegal Request"
    truncated = good[:-6]  # the segment descriptor cut short
    cscd_e5 = bytearray(good)
    cscd_e5[16] = 0xE5  # an unsupported CSCD type code
    seg_14 = bytearray(good)
    seg_14[16 + 64] = 0x14  # an unsupported segment type code (register key)
    too_many = xcopy.build_extended_copy(
        [cscd(lab.disk_lun, 0, BS), cscd(lab.tape_lun, 1, 0)],
        [BlockToStream(0, 1, 1, i, 512) for i in range(257)])
    wrong_type = xcopy.build_extended_copy(  # a disk->disk segment naming the tape
        [cscd(lab.disk_lun, 0, BS), cscd(lab.tape_lun, 1, 0)], [BlockToBlock(0, 1, 8, 0, 0)])
    return {
        "truncated": (truncated, (ir, "Parameter list length error")),
        "cscd-type": (bytes(cscd_e5), (ir, "Unsupported target descriptor type code")),
        "segment-type": (bytes(seg_14), (ir, "Unsupported segment descriptor type code")),
        "too-many-segments": (too_many, (ir, "Too many segment descriptors")),
        "wrong-device-type": (wrong_type, ("Copy Aborted", "Incorrect copy target device type")),
    }


def test_bad_parameter_lists_get_the_sense_spc4_names(lab):
    for name, (plist, want) in _bad_lists(lab).items():
        p = send(lab, lab.disk_sg, plist, f"bad-{name}.plist", check=False)
        assert sense_of(p.stdout + p.stderr) == want, (name, p.stdout + p.stderr)
    assert lab.daemon.alive()
    run("sg_turs", lab.disk_sg)


def test_end_of_tape_mid_copy_is_copy_aborted_with_the_failing_segment(lab):
    small = provision.create_tape("xcopysmall", lab.work / "xcopysmall.aws", 2 * MiB)
    dev = extra_lun(lab, small)
    try:
        run("mt", "-f", str(dev.tape), "rewind")
        plist = xcopy.build_extended_copy(
            [cscd(lab.disk_lun, 0, BS), cscd(small, 1, 0)],
            [BlockToStream(0, 1, 2048, 0, 65536), BlockToStream(0, 1, 8192, 2048, 65536)],
            list_identifier=9, list_id_usage=xcopy.ListIdUsage.HOLD)
        p = send(lab, lab.disk_sg, plist, "eot.plist", check=False)
        out = p.stdout + p.stderr
        assert sense_of(out) == ("Copy Aborted", "End-of-partition/medium detected"), out
        assert "Segment pointer: Relative to start of segment descriptor, byte 6" in out
        # FAILED SEGMENT DETAILS carries the tape's own sense: VOLUME OVERFLOW
        fsd = lab.work / "fsd.bin"
        run("sg_raw", "-r", "255", "-o", str(fsd), lab.disk_sg, "84", "04", "09", "00", "00",
            "00", "00", "00", "00", "00", "00", "00", "00", "ff", "00", "00")
        details = xcopy.FailedSegmentDetails.parse(fsd.read_bytes())
        assert details.sense.key.name == "VOLUME_OVERFLOW"
        status = lab.work / "status.bin"
        run("sg_raw", "-r", "12", "-o", str(status), lab.disk_sg, "84", "00", "09", "00",
            "00", "00", "00", "00", "00", "00", "00", "00", "00", "0c", "00", "00")
        st = xcopy.CopyStatus.parse(status.read_bytes())
        assert st.segments_processed == 1  # the first segment (1 MiB) completed
        assert MiB <= st.transferred_bytes <= 2 * MiB
    finally:
        provision.delete("xcopysmall")
        clear_unit_attention(lab.disk_sg, lab.tape_sg)


def test_other_commands_are_served_while_a_copy_runs(lab):
    import subprocess
    import time

    run("mt", "-f", lab.nst, "rewind")
    blocks = 64 * MiB // BS
    copy = subprocess.Popen(
        [sys.executable, "-m", "lio_xcopy", "copy", f"if={lab.disk_sg}", f"of={lab.tape_sg}",
         f"count={blocks}", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        time.sleep(1.0)
        served = 0
        while copy.poll() is None and served < 5:
            run("sg_turs", lab.disk_sg)
            run("sg_inq", lab.disk_sg)
            read_disk(lab, served * MiB, 4096)
            served += 1
        still_copying = copy.poll() is None
    finally:
        _out, err = copy.communicate(timeout=600)
    assert copy.returncode == 0, err
    assert served == 5 and still_copying, "the copy ended before the other commands ran"


def test_too_many_cscd_descriptors(lab):
    many = [cscd(lab.disk_lun, 0, BS)] * 65
    plist = xcopy.build_extended_copy(many, [BlockToBlock(0, 1, 8, 0, 0)])
    p = send(lab, lab.disk_sg, plist, "many-cscd.plist", check=False)
    assert sense_of(p.stdout + p.stderr) == ("Illegal Request", "Too many target descriptors")


def test_io_error_mid_copy_is_copy_aborted_at_its_segment(lab):
    """The backing file of a disk shrinks under the copy manager: a MEDIUM ERROR on the
    source becomes COPY ABORTED naming segment 1; nothing lies about success."""
    lun = provision.create_disk("shrinks", lab.work / "shrinks.img", 8 * MiB)
    dev = extra_lun(lab, lun)
    try:
        os.truncate(lun.path, 2 * MiB)  # the LUN still says 8 MiB
        run("mt", "-f", lab.nst, "rewind")
        plist = xcopy.build_extended_copy(
            [cscd(lun, 0, BS), cscd(lab.tape_lun, 1, 0)],
            [BlockToStream(0, 1, 2048, 0, 65536), BlockToStream(0, 1, 2048, 4096, 65536)])
        p = send(lab, str(dev.sg), plist, "ioerr.plist", check=False)
        out = p.stdout + p.stderr
        assert sense_of(out) == ("Copy Aborted", "Unrecovered read error"), out
        assert lab.daemon.alive()
        assert "aborted in segment 1" in lab.daemon.text()
    finally:
        provision.delete("shrinks")
        clear_unit_attention(lab.disk_sg, lab.tape_sg)


def test_tape_to_tape_with_sg_raw(lab):
    second = provision.create_tape("xcopytape2", lab.work / "xcopytape2.aws", 64 * MiB)
    dev = extra_lun(lab, second)
    try:
        src = lab.work / "t2t.src"
        src.write_bytes(os.urandom(3 * MiB))
        run("mt", "-f", lab.nst, "rewind")
        run("mt", "-f", lab.nst, "setblk", "0")
        run("dd", f"if={src}", f"of={lab.nst}", "bs=256k")  # 12 records of 256 KiB
        run("mt", "-f", lab.nst, "rewind")
        run("mt", "-f", str(dev.tape), "rewind")
        plist = xcopy.build_extended_copy(
            [cscd(lab.tape_lun, 1, 0), cscd(second, 1, 0)],
            [StreamToStream(0, 1, 3 * MiB, 262144, 65536)])
        send(lab, lab.tape_sg, plist, "t2t.plist")
        # re-blocked: 48 records of 64 KiB on the second tape, the same bytes
        recs = AwsTape.open_readonly(second.path).dump_records(limit=49)
        assert [len(r) for r in recs] == [65536] * 48
        assert b"".join(recs) == src.read_bytes()
        run("mt", "-f", str(dev.tape), "rewind")
        back = lab.work / "t2t.back"
        run("dd", f"if={dev.tape}", f"of={back}", "bs=64k", "count=48")  # no filemark yet
        assert back.read_bytes() == src.read_bytes()
    finally:
        provision.delete("xcopytape2")
        clear_unit_attention(lab.disk_sg, lab.tape_sg)


def test_copy_access_policy_keeps_luns_of_other_initiators_apart(lab):
    """A LUN exported to another initiator (a second loopback target, so another
    nexus) may not appear in a copy received by our LUNs: COPY TARGET DEVICE NOT
    REACHABLE, and the refusal is logged."""
    apart = provision.create_disk("apart0", lab.work / "apart0.img", 8 * MiB)
    provision.export_loopback(apart, target_wwn="naa.5001405" + "abcdef012")
    dev = provision.find_kernel_device(apart)
    clear_unit_attention(lab.disk_sg, lab.tape_sg, str(dev.sg))
    try:
        secret = os.urandom(MiB)
        with open(apart.path, "r+b") as f:
            f.write(secret)
        plist = xcopy.build_extended_copy(
            [cscd(apart, 0, BS), cscd(lab.disk_lun, 0, BS)],
            [BlockToBlock(0, 1, 2048, 0, 80 * MiB // BS)])
        p = send(lab, lab.disk_sg, plist, "apart.plist", check=False)
        assert sense_of(p.stdout + p.stderr) == ("Copy Aborted",
                                                 "Copy target device not reachable")
        assert read_disk(lab, 80 * MiB, MiB) != secret
        assert "copy access policy keeps apart" in lab.daemon.text()
        # received by the isolated LUN itself, naming our disk: refused the same way
        p = send(lab, str(dev.sg), plist, "apart2.plist", check=False)
        assert sense_of(p.stdout + p.stderr) == ("Copy Aborted",
                                                 "Copy target device not reachable")
        # our own tool tells the backup server why, from the sense's vendor bytes
        tool = subprocess.run(
            [sys.executable, "-m", "lio_xcopy", "copy", f"if={dev.sg}", f"of={lab.disk_sg}",
             "count=2048", f"seek={80 * MiB // BS}", "-q"],
            capture_output=True, text=True, timeout=120)
        assert tool.returncode != 0
        assert re.search(r"copy access policy keeps (apart0 and vmdisk0|vmdisk0 and apart0) "
                         r"apart: export them to the same initiators, or on the target run "
                         r"`lio-xcopy /copy_groups create name=GROUP members=", tool.stderr), \
            tool.stderr
        # status says which LUNs may copy together: apart0 only within itself
        status = subprocess.run([sys.executable, "-m", "lio_xcopy", "status"],
                                capture_output=True, text=True, timeout=120).stdout
        assert re.search(r"copy access: .*apart0.* may copy only within itself", status), \
            status
        # the operator saves the LUNs and puts both in one copy group: the shell
        # reloads the running daemon, and the copy runs
        saved = Path("/etc/lio-xcopy/saveconfig.json")
        saved.unlink(missing_ok=True)
        for cmd in (["saveconfig"],
                    ["/copy_groups", "create", "name=migrate", "members=apart0,vmdisk0"]):
            out = subprocess.run([sys.executable, "-m", "lio_xcopy", *cmd],
                                 capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, out.stderr
        assert f"the daemon (pid {lab.daemon.proc.pid}) reloads" in out.stdout, out.stdout
        deadline = time.monotonic() + 20
        while "'migrate': ['apart0', 'vmdisk0']" not in lab.daemon.text():
            assert time.monotonic() < deadline, lab.daemon.text()[-1500:]
            time.sleep(0.2)
        status = subprocess.run([sys.executable, "-m", "lio_xcopy", "status"],
                                capture_output=True, text=True, timeout=120).stdout
        assert "copy access: apart0, vmdisk0 may copy together (copy group migrate)" in status
        send(lab, lab.disk_sg, plist, "apart3.plist")
        assert read_disk(lab, 80 * MiB, MiB) == secret
    finally:
        for p in Path("/etc/lio-xcopy").glob("saveconfig.json*"):
            p.unlink()
        os.kill(lab.daemon.proc.pid, signal.SIGHUP)
        provision.delete("apart0")
        clear_unit_attention(lab.disk_sg, lab.tape_sg)


def test_lun_reset_stops_a_long_copy_and_nothing_hangs(lab):
    """sg_reset -d (a LOGICAL UNIT RESET through tcm_loop) while a long EXTENDED COPY runs:
    `lio-xcopy status` shows the copy in progress; the kernel hands the daemon the task
    management notice, the copy stops at its next chunk, the reset and the copy's command
    both return, COPY STATUS says it ended with errors before its last segment, and the
    LUN serves commands again."""
    import subprocess

    segments = 200  # 200 x 32 MiB of disk onto itself: minutes, unless stopped
    plist = xcopy.build_extended_copy(
        [cscd(lab.disk_lun, 0, BS)], [BlockToBlock(0, 0, 0xFFFF, 0, 0)] * segments,
        list_identifier=0x3C, list_id_usage=xcopy.ListIdUsage.HOLD)
    path = lab.work / "reset.plist"
    path.write_bytes(plist)
    n = len(plist).to_bytes(4, "big").hex(" ").split()
    copy = subprocess.Popen(["sg_raw", "-t", "600", "-s", str(len(plist)), "-i", str(path),
                             lab.disk_sg, "83", *["00"] * 9, *n, "00", "00"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while "copy vmdisk0/60 started" not in lab.daemon.text():
            assert time.monotonic() < deadline and copy.poll() is None, lab.daemon.text()
            time.sleep(0.2)
        status = run(sys.executable, "-m", "lio_xcopy", "status").stdout
        reset = run("sg_reset", "-d", lab.disk_sg, check=False, timeout=300)
        copy.communicate(timeout=300)  # the aborted command returns (its status is moot)
    finally:
        if copy.poll() is None:
            copy.kill()
    assert re.search(r"copy vmdisk0 list 60: running, segment \d+/200, [\d.]+/6399\.9 MiB "
                     r"\(\d+%\), [\d.]+ MiB/s", status), status
    assert re.search(r"daemon: pid \d+, serving \d+ LUN\(s\), 1 copy\(ies\) in progress",
                     status), status
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert re.search(r"LOGICAL UNIT RESET for cmd ids \[\d+\]", lab.daemon.text())
    assert "aborted by task management" in lab.daemon.text()
    clear_unit_attention(lab.disk_sg, lab.tape_sg)
    st = run("sg_raw", "-r", "12", "-o", str(lab.work / "reset.status"), lab.disk_sg,
             "84", "00", "3c", *["00"] * 7, "00", "00", "00", "0c", "00", "00")
    status = xcopy.CopyStatus.parse((lab.work / "reset.status").read_bytes())
    assert status.status == xcopy.CopyCommandStatus.COMPLETED_WITH_ERRORS, st.stdout
    assert status.segments_processed < segments
    run("sg_turs", lab.disk_sg)


def test_copy_operation_abort_from_stock_sg_raw_stops_a_long_copy(lab):
    """COPY OPERATION ABORT (83h/1Ch) sent with sg_raw on another handle while a long
    EXTENDED COPY runs: GOOD; the copy stops at its next chunk and its command ends with
    TASK ABORTED; COPY STATUS says it ended with errors, with a count that no longer
    grows; an unknown list identifier is INVALID FIELD IN CDB."""
    segments = 200
    plist = xcopy.build_extended_copy(
        [cscd(lab.disk_lun, 0, BS)], [BlockToBlock(0, 0, 0xFFFF, 0, 0)] * segments,
        list_identifier=0x3D, list_id_usage=xcopy.ListIdUsage.HOLD)
    path = lab.work / "coa.plist"
    path.write_bytes(plist)
    n = len(plist).to_bytes(4, "big").hex(" ").split()
    bad = run("sg_raw", lab.disk_sg, "83", "1c", "00", "00", "00", "3e", *["00"] * 10,
              check=False)
    assert sense_of(bad.stdout + bad.stderr) == ("Illegal Request", "Invalid field in cdb")
    copy = subprocess.Popen(["sg_raw", "-t", "600", "-s", str(len(plist)), "-i", str(path),
                             lab.disk_sg, "83", *["00"] * 9, *n, "00", "00"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while "copy vmdisk0/61 started" not in lab.daemon.text():
            assert time.monotonic() < deadline and copy.poll() is None, lab.daemon.text()
            time.sleep(0.2)
        time.sleep(1.0)  # let it move some chunks
        abort = run("sg_raw", lab.disk_sg, "83", "1c", "00", "00", "00", "3d", *["00"] * 10)
        out, _ = copy.communicate(timeout=300)
    finally:
        if copy.poll() is None:
            copy.kill()
    assert "Task Aborted" in out or "TASK ABORTED" in out.upper(), out
    assert "COPY OPERATION ABORT after" in lab.daemon.text()
    first = _copy_status(lab.disk_sg, 0x3D)
    time.sleep(1.0)
    again = _copy_status(lab.disk_sg, 0x3D)
    assert first.status == xcopy.CopyCommandStatus.COMPLETED_WITH_ERRORS, abort.stdout
    assert first == again and 0 < (first.transferred_bytes or 0) < segments * 0xFFFF * BS
    run("sg_turs", lab.disk_sg)


def _copy_status(sg: str, list_id: int) -> xcopy.CopyStatus:
    from lio_xcopy.sg.sgio import SgIoDevice

    cdb = xcopy.ReceiveCopyResultsCopyStatus(list_identifier=list_id,
                                                 allocation_length=12).encode()
    with SgIoDevice(sg) as dev:
        return xcopy.CopyStatus.parse(dev.execute(cdb, data_in=12).data)


def test_abort_task_after_an_sg_io_timeout_stops_the_copy_and_keeps_what_it_moved(lab):
    """A long EXTENDED COPY sent with a 3 s SG_IO timeout: the initiator's SCSI midlayer
    times it out and tcm_loop sends ABORT TASK for it; the daemon gets the TCMU TMR, the
    copy stops at its next chunk, SG_IO returns DID_TIME_OUT, COPY STATUS says the copy
    ended with errors and its transfer count no longer grows, the bytes it counted are on
    the destination (and no more), and the LUN serves the next commands."""
    from lio_xcopy.sg.sgio import SgIoDevice, TransportFailure

    region = 16 * MiB
    data = os.urandom(region)
    fill_disk(lab, 0, data)
    fill_disk(lab, 48 * MiB, bytes(region))
    segments = 200  # 200 x 16 MiB: far longer than the timeout
    plist = xcopy.build_extended_copy(
        [cscd(lab.disk_lun, 0, BS)],
        [BlockToBlock(0, 0, region // BS, 0, 48 * MiB // BS)] * segments,
        list_identifier=0x3D, list_id_usage=xcopy.ListIdUsage.HOLD)
    cdb = xcopy.ExtendedCopyLid1(parameter_list_length=len(plist)).encode()
    log_start = len(lab.daemon.text())
    with SgIoDevice(lab.disk_sg) as dev, pytest.raises(TransportFailure) as failed:
        dev.execute(cdb, data_out=plist, timeout=3)
    assert failed.value.result is not None
    assert failed.value.result.host_status == 0x03, failed.value  # DID_TIME_OUT
    log = lab.daemon.text()[log_start:]
    assert re.search(r"ABORT TASK for cmd ids \[\d+\]", log), log[-2000:]
    assert re.search(r"copy vmdisk0/61 aborted by task management after \d+ bytes", log)
    clear_unit_attention(lab.disk_sg, lab.tape_sg)
    status = _copy_status(lab.disk_sg, 0x3D)
    assert status.status == xcopy.CopyCommandStatus.COMPLETED_WITH_ERRORS, status
    assert status.segments_processed < segments
    time.sleep(1)
    assert _copy_status(lab.disk_sg, 0x3D) == status  # stopped: the count does not grow
    moved = status.transferred_bytes
    assert moved is not None and moved % MiB == 0, status
    back = read_disk(lab, 48 * MiB, region)
    n = min(moved, region)
    assert back[:n] == data[:n]
    if moved < region:  # stopped within the first segment: nothing past what it counted
        assert back[moved:] == bytes(region - moved)
    # the LUN goes on serving: a TEST UNIT READY and a short copy
    run("sg_turs", lab.disk_sg)
    short = xcopy.build_extended_copy([cscd(lab.disk_lun, 0, BS)],
                                      [BlockToBlock(0, 0, 2048, 0, 80 * MiB // BS)])
    send(lab, lab.disk_sg, short, "after-abort.plist")
    assert read_disk(lab, 80 * MiB, MiB) == data[:MiB]
