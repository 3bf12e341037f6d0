"""EXTENDED COPY (LID4) with IMMED through the real kernel, sent with stock sg_raw: GOOD at
once, the copy runs in the background, RECEIVE COPY STATUS (LID4) (84h/05h, sent with
sg_raw: sg_copy_results 1.26 knows only the LID1 service actions) reports it in progress
and then done; COPY OPERATION ABORT (83h/1Ch) stops a running one with an exact count.
SPC-4 5.17.4.3, 5.17.4.7, 6.3, 6.4, 6.24."""

from __future__ import annotations

import os
import re
import time

from conftest import MiB, clear_unit_attention, run, sense_of
from plugins.vm_xcopy import cscd, fill_disk

from lio_xcopy.scsi import xcopy
from lio_xcopy.scsi.xcopy import BlockToBlock, BlockToStream, CopyOperationStatus, CopyStatusLid4

BS = 512
RECORD = 64 * 1024
SOURCE = 8 * MiB  # where the backed-up data sits on the disk
SIZE = 24 * MiB


def send_lid4(lab, sg: str, plist: bytes, name: str, check: bool = True):
    """One EXTENDED COPY (LID4), 83h service action 01h, by stock sg_raw."""
    path = lab.work / name
    path.write_bytes(plist)
    n = len(plist).to_bytes(4, "big").hex(" ").split()
    return run("sg_raw", "-t", "600", "-s", str(len(plist)), "-i", str(path), sg,
               "83", "01", *["00"] * 8, *n, "00", "00", check=check)


def copy_status(lab, sg: str, list_id: int, check: bool = True):
    """RECEIVE COPY STATUS (LID4) by stock sg_raw: (the parsed data, sg_raw's output)."""
    out = lab.work / "lid4.status"
    out.unlink(missing_ok=True)
    ident = list_id.to_bytes(4, "big").hex(" ").split()
    p = run("sg_raw", "-r", "96", "-o", str(out), sg, "84", "05", *ident, *["00"] * 4,
            "00", "00", "00", "60", "00", "00", check=check)
    data = out.read_bytes() if out.exists() else b""
    return (CopyStatusLid4.parse(data) if p.returncode == 0 else None), p.stdout + p.stderr


def test_immed_disk_to_tape_polled_until_done(lab):
    data = os.urandom(SIZE)
    fill_disk(lab, SOURCE, data)
    clear_unit_attention(lab.disk_sg, lab.tape_sg)
    run("mt", "-f", lab.nst, "rewind")
    list_id = 0x4C494434
    plist = xcopy.build_extended_copy_lid4(
        [cscd(lab.disk_lun, 0, BS), cscd(lab.tape_lun, 1, 0)],
        [BlockToStream(0, 1, SIZE // BS, SOURCE // BS, RECORD)],
        list_identifier=list_id, immed=True)
    t0 = time.monotonic()
    send_lid4(lab, lab.disk_sg, plist, "lid4-d2t.plist")  # GOOD before the copy is done
    polls: list[CopyStatusLid4] = []
    deadline = t0 + 120
    while True:
        st, out = copy_status(lab, lab.disk_sg, list_id)
        assert st is not None, out
        polls.append(st)
        if st.status != CopyOperationStatus.IN_PROGRESS_BACKGROUND:
            break
        assert time.monotonic() < deadline, polls[-1]
        time.sleep(st.estimated_status_update_delay / 1000)
    print(f"{len(polls)} polls in {time.monotonic() - t0:.1f} s: "
          f"{[p.transfer_count for p in polls]}")
    assert polls[0].status == CopyOperationStatus.IN_PROGRESS_BACKGROUND, polls
    assert all(p.response_to_service_action == 0x01 for p in polls)
    counts = [p.transferred_bytes or 0 for p in polls]
    assert counts == sorted(counts)
    final = polls[-1]
    assert (final.status, final.completion_status, final.transferred_bytes,
            final.segments_processed, final.estimated_status_update_delay) == (
        CopyOperationStatus.COMPLETED, 0x00, SIZE, 1, 0xFFFFFFFE), final
    # what the initiator reads back through st is what was on the disk
    back = lab.work / "lid4-d2t.back"
    run("mt", "-f", lab.nst, "rewind")
    run("mt", "-f", lab.nst, "setblk", "0")
    run("dd", f"if={lab.nst}", f"of={back}", f"bs={RECORD}", f"count={SIZE // RECORD}")
    assert back.read_bytes() == data
    # the new commands are reported (REPORT SUPPORTED OPERATION CODES, stock sg_opcodes)
    ops = run("sg_opcodes", "-n", lab.disk_sg).stdout
    for op, sa in (("83", "1"), ("84", "5"), ("84", "6")):
        assert re.search(rf"^\s*{op}\s+{sa}\b", ops, re.M), ops
    unknown = copy_status(lab, lab.disk_sg, 0x0BADCAFE, check=False)[1]
    assert sense_of(unknown) == ("Illegal Request", "Invalid field in cdb"), unknown


def test_copy_operation_abort_stops_a_running_immed_copy(lab):
    segments = 200  # far more than the abort lets it move
    list_id = 0x00010203
    plist = xcopy.build_extended_copy_lid4(
        [cscd(lab.disk_lun, 0, BS)], [BlockToBlock(0, 0, 0xFFFF, 0, 0)] * segments,
        list_identifier=list_id, immed=True)
    clear_unit_attention(lab.disk_sg)
    send_lid4(lab, lab.disk_sg, plist, "lid4-abort.plist")
    deadline = time.monotonic() + 60
    while True:
        st, out = copy_status(lab, lab.disk_sg, list_id)
        assert st is not None and st.status == CopyOperationStatus.IN_PROGRESS_BACKGROUND, out
        if (st.transferred_bytes or 0) > 0:
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.1)
    # COPY OPERATION ABORT completes once the background copy has stopped (5.17.4.7 a)
    ident = list_id.to_bytes(4, "big").hex(" ").split()
    run("sg_raw", lab.disk_sg, "83", "1c", *ident, *["00"] * 10)
    first, out = copy_status(lab, lab.disk_sg, list_id)
    time.sleep(1.0)
    again, _ = copy_status(lab, lab.disk_sg, list_id)
    assert first is not None and first == again, (first, again)  # the count no longer grows
    assert (first.status, first.completion_status, first.sense_data) == (
        CopyOperationStatus.TERMINATED, 0x40, b""), out  # TASK ABORTED
    assert 0 < (first.transferred_bytes or 0) < segments * 0xFFFF * BS
    # OPERATION COUNTER (SPC-4 6.24): the READs and WRITEs that completed GOOD
    assert first.operation_counter >= 2, first
    assert "COPY OPERATION ABORT after" in lab.daemon.text()
    # the copy has ended: SPC-4 6.3 refuses an abort of a copy not being processed
    late = run("sg_raw", lab.disk_sg, "83", "1c", *ident, *["00"] * 10, check=False)
    assert sense_of(late.stdout + late.stderr) == ("Illegal Request", "Invalid field in cdb")
    run("sg_turs", lab.disk_sg)
