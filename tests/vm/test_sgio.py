"""SG_IO from Python through the real sg, sd and st drivers to our LUNs; the kernel's
counters of what crossed the initiator's SCSI devices."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import DISK_SIZE, MiB, run

from lio_xcopy.scsi import sbc, ssc
from lio_xcopy.scsi.sense import Asc, SenseKey
from lio_xcopy.sg import sgio

pytestmark = pytest.mark.vm


def ready(dev: sgio.SgIoDevice) -> None:
    """TEST UNIT READY until the LUN has no UNIT ATTENTION left for us (a LUN created or
    removed elsewhere in the session leaves REPORTED LUNS DATA HAS CHANGED)."""
    for _ in range(5):
        try:
            dev.test_unit_ready()
            return
        except sgio.ScsiCommandError as e:
            if e.key != SenseKey.UNIT_ATTENTION:
                raise
    dev.test_unit_ready()


@pytest.fixture
def disk(lab):
    with sgio.SgIoDevice(lab.disk_sg) as d:
        ready(d)
        yield d


@pytest.fixture
def tape(lab):
    with sgio.SgIoDevice(lab.tape_sg) as d:
        ready(d)
        yield d


def test_inquiry_through_sg_io(disk, tape):
    inq = disk.inquiry()
    assert (inq.vendor, inq.product, inq.device_type, inq.peripheral_qualifier) == (
        "LIO-ORG", "lio-xcopy disk", 0, 0)
    assert disk.peripheral_device_type() == 0
    inq = tape.inquiry()
    assert (inq.vendor, inq.product, inq.device_type) == ("LIO-ORG", "lio-xcopy tape", 1)
    assert disk.sg_version >= 30000


def test_naa_is_the_luns(lab, disk, tape):
    assert disk.naa() == bytes.fromhex(lab.disk_lun.naa)
    assert tape.naa() == bytes.fromhex(lab.tape_lun.naa)
    assert disk.unit_serial_number() == lab.disk_lun.unit_serial
    assert any(d.designator_type == 1 for d in disk.device_identification())


def test_read_capacity16(lab, disk):
    cap = disk.read_capacity16()
    assert (cap.blocks, cap.block_length, cap.size) == (DISK_SIZE // 512, 512, DISK_SIZE)
    sectors = int(Path("/sys/class/block", Path(lab.sd).name, "size").read_text())
    assert sectors * 512 == cap.size


def test_invalid_opcode_is_illegal_request_20h(disk):
    with pytest.raises(sgio.ScsiCommandError) as e:
        disk.execute(bytes([0xC9, 0, 0, 0, 0, 0]))
    assert e.value.key == SenseKey.ILLEGAL_REQUEST
    assert e.value.asc == Asc.INVALID_COMMAND_OPERATION_CODE
    msg = str(e.value)
    print(msg)
    assert "ILLEGAL REQUEST, ASC/ASCQ 20h/00h (INVALID COMMAND OPERATION CODE)" in msg
    assert "the device does not implement this command" in msg


def test_bad_field_is_decoded_to_byte_and_bit(disk):
    # READ (10) with RDPROTECT=7: the LUN has no protection information
    with pytest.raises(sgio.ScsiCommandError) as e:
        disk.execute(bytes.fromhex("28 e0 00 00 00 00 00 00 01 00"), data_in=512)
    print(e.value)
    assert e.value.asc == Asc.INVALID_FIELD_IN_CDB
    assert "(INVALID FIELD IN CDB) at CDB byte 1 bit 7: " in str(e.value)


def test_read_past_the_end_names_the_lba(disk):
    blocks = DISK_SIZE // 512
    with pytest.raises(sgio.ScsiCommandError) as e:
        disk.execute(sbc.Read16(lba=blocks, transfer_length=1).encode(), data_in=512)
    print(e.value)
    assert e.value.asc == Asc.LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE
    assert f"at LBA {blocks}" in str(e.value)


def test_data_in_with_resid_and_check_false(disk):
    r = disk.execute(bytes.fromhex("12 00 00 01 00 00"), data_in=256)  # INQUIRY, 256
    assert len(r.data) == r.data[4] + 5 and r.resid == 256 - len(r.data)
    r = disk.execute(bytes([0xC9, 0, 0, 0, 0, 0]), check=False)
    assert r.status == 2 and r.sense.key == SenseKey.ILLEGAL_REQUEST


def test_sg_io_through_the_sd_node(lab):
    with sgio.SgIoDevice(lab.sd) as d:
        ready(d)
        assert d.inquiry().product == "lio-xcopy disk"
        assert d.naa() == bytes.fromhex(lab.disk_lun.naa)


def test_sg_io_through_nst_opened_nonblocking(lab):
    run("mt", "-f", lab.nst, "rewind")
    with sgio.SgIoDevice(lab.nst) as d:
        ready(d)
        assert d.inquiry().product == "lio-xcopy tape"
        assert d.naa() == bytes.fromhex(lab.tape_lun.naa)
        pos = d.execute(ssc.ReadPositionShort().encode(), data_in=20).data
        assert pos[0] & 0x80  # BOP: we rewound
        # st allows one open per drive: mt cannot open it while we hold it
        p = run("mt", "-f", lab.nst, "status", check=False)
        assert p.returncode != 0 and "busy" in (p.stdout + p.stderr).lower(), p
    run("mt", "-f", lab.nst, "status")


def test_regular_file_is_not_a_scsi_device(lab):
    with pytest.raises(sgio.NotScsiDevice, match="regular file"):
        sgio.SgIoDevice(lab.disk_lun.path)


def test_nodes_map_to_their_siblings(lab):
    for node in (lab.sd, lab.disk_sg):
        n = sgio.scsi_nodes(node)
        assert (n.hctl, str(n.sg), str(n.block), n.tape) == (
            lab.disk.hctl, lab.disk_sg, lab.sd, None)
        assert n.device_type == 0
    for node in (lab.nst, lab.tape_sg, lab.tape.hctl):
        n = sgio.scsi_nodes(node)
        assert (n.hctl, str(n.sg), n.block, str(n.tape)) == (
            lab.tape.hctl, lab.tape_sg, None, lab.nst)
        assert n.device_type == 1


def test_disk_counters_move_by_exactly_what_dd_moved(lab):
    n = 8
    run("udevadm", "settle", check=False)
    saved = lab.work / "counted.bin"
    before = sgio.io_counters(lab.sd)
    assert before.source == "sd"
    run("dd", f"if={lab.sd}", f"of={saved}", "bs=1M", f"count={n}", "iflag=direct")
    after_read = sgio.io_counters(lab.disk_sg)
    delta = after_read - before
    print("read:", delta.describe())
    assert (delta.read_bytes, delta.written_bytes) == (n * MiB, 0)
    assert delta.requests >= n * MiB // (8192 * 512) and delta.errors == 0
    # write the same bytes back: the disk keeps its content
    run("dd", f"if={saved}", f"of={lab.sd}", "bs=1M", "oflag=direct", "conv=fsync")
    delta = sgio.io_counters(lab.sd) - after_read
    print("write:", delta.describe())
    assert delta.written_bytes == n * MiB
    saved.unlink()


def test_sg_io_data_is_counted_by_the_handle_not_by_sd(lab, disk):
    run("udevadm", "settle", check=False)
    before = sgio.io_counters(lab.sd)
    r = disk.execute(sbc.Read16(lba=0, transfer_length=2048).encode(), data_in=MiB)
    assert len(r.data) == MiB and r.resid == 0
    delta = sgio.io_counters(lab.sd) - before
    print("after 1 MiB by SG_IO on sg:", delta.describe(), "handle:", disk.bytes_in)
    assert disk.bytes_in >= MiB
    assert delta.requests >= 1  # the midlayer saw the command ...
    assert delta.read_bytes == 0  # ... sd did not move the bytes
    # nor does the block layer account SG_IO sent through the sd node itself (1 MiB in
    # one command: 256 pages, as many segments as the queue takes — the buffer must be
    # page-aligned for that)
    queue = Path("/sys/class/block", Path(lab.sd).name, "queue")
    print({k: (queue / k).read_text().strip()
           for k in ("max_sectors_kb", "max_hw_sectors_kb", "max_segments")})
    with sgio.SgIoDevice(lab.sd) as d:
        before = sgio.io_counters(lab.sd)
        assert len(d.execute(sbc.Read16(lba=2048, transfer_length=2048).encode(),
                             data_in=MiB).data) == MiB
        delta = sgio.io_counters(lab.sd) - before
    print("after 1 MiB by SG_IO on sd:", delta.describe(), "handle:", d.bytes_in)
    assert (delta.read_bytes, d.bytes_in) == (0, MiB) and delta.requests >= 1


def test_tape_counters_count_what_st_moved(lab):
    run("mt", "-f", lab.nst, "rewind")
    run("mt", "-f", lab.nst, "setblk", "0")
    before = sgio.io_counters(lab.tape_sg)
    assert before.source == "st"
    src = lab.work / "counted-tape.bin"
    src.write_bytes(os.urandom(4 * 65536))
    run("dd", f"if={src}", f"of={lab.nst}", "bs=64k")
    run("mt", "-f", lab.nst, "rewind")
    # count=4: st adds a read that meets the filemark to read_byte_cnt as requested
    # length minus the kernel's residual (see test_filemark_read_reports_its_residual)
    run("dd", f"if={lab.nst}", "of=/dev/null", "bs=64k", "count=4")
    delta = sgio.io_counters(lab.nst) - before
    print("tape:", delta.describe())
    assert (delta.written_bytes, delta.read_bytes) == (4 * 65536, 4 * 65536)
    run("mt", "-f", lab.nst, "rewind")
    src.unlink()


def _one_record_then_filemark(lab) -> None:
    run("mt", "-f", lab.nst, "rewind")
    run("mt", "-f", lab.nst, "setblk", "0")
    src = lab.work / "one-record.bin"
    src.write_bytes(os.urandom(65536))
    run("dd", f"if={src}", f"of={lab.nst}", "bs=64k")  # st writes the filemark on close
    run("mt", "-f", lab.nst, "rewind")
    src.unlink()


def test_filemark_read_through_sg_io_in_words(lab, tape):
    _one_record_then_filemark(lab)
    read = ssc.Read6(transfer_length=65536).encode()
    assert len(tape.execute(read, data_in=65536).data) == 65536
    r = tape.execute(read, data_in=65536, check=False)
    print(r.explain(), "resid", r.resid)
    assert r.status == 2 and r.sense.filemark and r.sense.key == SenseKey.NO_SENSE
    assert "(FILEMARK DETECTED); FILEMARK, residue 65536" in r.explain()
    with pytest.raises(sgio.ScsiCommandError, match=r"BLANK CHECK, ASC/ASCQ 00h/05h") as e:
        tape.execute(read, data_in=65536)  # the end of data follows the filemark
    print(e.value)
    run("mt", "-f", lab.nst, "rewind")


