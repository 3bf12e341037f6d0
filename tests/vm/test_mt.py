"""The mt-st operation matrix against the tape LUN, positions checked after each step with
``mt tell`` (st's READ POSITION) and READ POSITION long form (34h/06h) through sg_raw;
write protection, REPORT DENSITY SUPPORT, LOG SENSE 0Ch/2Eh, programmable early warning,
and what a backup application's tape self-test (Bacula's ``btape test``) does, with dd."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import struct
import time
from pathlib import Path

import pytest
from conftest import MiB, clear_unit_attention, extra_lun, run, sense_of

from lio_xcopy.control import provision
from lio_xcopy.control.provision import _create
from lio_xcopy.devices.awstape import AwsTape
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.handler_config import HandlerConfig
from lio_xcopy.scsi import ssc

MTIOCTOP = 0x40086D01  # _IOW('m', 1, struct mtop)
MTWEOF = 5


# --- helpers ----------------------------------------------------------------------------------
def mt(nst: str, *args: str, check: bool = True):
    return run("mt", "-f", nst, *args, check=check)


def tell(nst: str) -> int:
    out = mt(nst, "tell").stdout
    m = re.search(r"At block (\d+)\.", out)
    assert m, out
    return int(m.group(1))


def status(nst: str) -> tuple[int, int, str]:
    out = mt(nst, "status").stdout
    m = re.search(r"File number=(-?\d+), block number=(-?\d+)", out)
    assert m, out
    return int(m.group(1)), int(m.group(2)), out


def sg_in(sg: str, length: int, *cdb: int, tmp: Path) -> bytes:
    """Data-In of one CDB through sg_raw (binary, via --outfile)."""
    out = tmp / "sg_raw.out"
    out.unlink(missing_ok=True)
    run("sg_raw", "-r", str(length), "-o", str(out), sg, *(f"{b:02x}" for b in cdb))
    return out.read_bytes()


def sg_check(sg: str, *cdb: int, data: bytes | None = None, tmp: Path | None = None):
    """(sense key, additional sense) of a CDB expected to fail, as sg_raw prints them."""
    args = ["sg_raw"]
    if data is not None:
        assert tmp is not None
        src = tmp / "sg_raw.in"
        src.write_bytes(data)
        args += ["-s", str(len(data)), "-i", str(src)]
    p = run(*args, sg, *(f"{b:02x}" for b in cdb), check=False)
    return sense_of(p.stdout + p.stderr), p.stdout + p.stderr


def sg_out(sg: str, data: bytes, *cdb: int, tmp: Path) -> None:
    src = tmp / "sg_raw.in"
    src.write_bytes(data)
    run("sg_raw", "-s", str(len(data)), "-i", str(src), sg, *(f"{b:02x}" for b in cdb))


def long_position(sg: str, tmp: Path) -> ssc.LongPosition:
    """READ POSITION, long form (34h service action 06h): 32 bytes."""
    return ssc.parse_read_position_long(sg_in(sg, 32, 0x34, 0x06, 0, 0, 0, 0, 0, 0, 0, 0,
                                              tmp=tmp))


def where(nst: str, sg: str, tmp: Path) -> tuple[int, int, int]:
    """(mt tell, READ POSITION long object number, its logical file identifier)."""
    rp = long_position(sg, tmp)
    return tell(nst), rp.object_number, rp.file_identifier


def log_parameters(sg: str, page: int, tmp: Path) -> dict[int, int]:
    """LOG SENSE (4Dh) of ``page``, cumulative values: parameter code -> value."""
    data = sg_in(sg, 1024, 0x4D, 0, 0x40 | page, 0, 0, 0, 0, 0x04, 0x00, 0, tmp=tmp)
    assert data[0] & 0x3F == page
    end = 4 + struct.unpack_from(">H", data, 2)[0]
    out, pos = {}, 4
    while pos + 4 <= end:
        code, size = struct.unpack_from(">H", data, pos)[0], data[pos + 3]
        out[code] = int.from_bytes(data[pos + 4 : pos + 4 + size], "big")
        pos += 4 + size
    return out


def wait_gone(hctl: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while Path("/sys/bus/scsi/devices", hctl).exists():
        assert time.monotonic() < deadline, f"{hctl} still present"
        time.sleep(0.2)


def dd_write(nst: str, src: Path, bs: int) -> None:
    run("dd", f"if={src}", f"of={nst}", f"bs={bs}")


def dd_read(nst: str, dst: Path, bs: int, count: int | None = None) -> bytes:
    args = ["dd", f"if={nst}", f"of={dst}", f"bs={bs}"] + ([f"count={count}"] if count else [])
    run(*args)
    return dst.read_bytes()


@pytest.fixture
def tmp(lab) -> Path:
    d = lab.work / "mt"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture
def extra(lab):
    """Make extra tape LUNs; remove them afterwards."""
    made = []

    def make(name: str, path: Path, capacity: int, **options: str):
        hc = HandlerConfig("tape", str(path), {"capacity": str(capacity), **options})
        lun = _create(name, hc, capacity, None)
        dev = extra_lun(lab, lun)
        made.append((name, dev))
        return dev

    yield make
    for name, dev in made:
        provision.delete(name)
        wait_gone(dev.hctl)
    clear_unit_attention(lab.disk_sg, lab.tape_sg)


# --- the mt matrix ----------------------------------------------------------------------------
def test_mt_operation_matrix_with_exact_positions(lab, tmp):
    nst, sg = lab.nst, lab.tape_sg
    mt(nst, "rewind")
    mt(nst, "setblk", "0")
    # file 0: three 10 KiB records (objects 0-2, filemark 3)
    f0 = tmp / "f0"
    f0.write_bytes(os.urandom(3 * 10240))
    dd_write(nst, f0, 10240)
    # file 1: five 512-byte records (objects 4-8, filemark 9)
    f1 = tmp / "f1"
    f1.write_bytes(os.urandom(5 * 512))
    dd_write(nst, f1, 512)
    # file 2: a tar archive of 10 KiB records (objects 10.., then its filemark)
    tree = tmp / "tree"
    tree.mkdir(exist_ok=True)
    for i in range(3):
        (tree / f"m{i}").write_bytes(os.urandom(7000 + 1000 * i))
    run("tar", "-b", "20", "-cf", nst, "-C", str(tree), "m0", "m1", "m2")
    tar_end = tell(nst)  # after tar's filemark
    tar_records = tar_end - 1 - 10
    assert tar_records >= 2
    # file 3: two records
    f3 = tmp / "f3"
    f3.write_bytes(os.urandom(2 * 4096))
    dd_write(nst, f3, 4096)
    eod = tar_end + 3
    assert where(nst, sg, tmp) == (eod, eod, 4)
    assert status(nst)[:2] == (4, 0)

    mt(nst, "rewind")
    file, block, out = status(nst)
    assert (file, block) == (0, 0) and "BOT" in out and "ONLINE" in out
    assert where(nst, sg, tmp) == (0, 0, 0)
    assert long_position(sg, tmp).bop
    mt(nst, "fsf", "1")
    assert where(nst, sg, tmp) == (4, 4, 1) and status(nst)[:2] == (1, 0)
    mt(nst, "fsr", "2")
    assert where(nst, sg, tmp) == (6, 6, 1) and status(nst)[:2] == (1, 2)
    mt(nst, "bsr", "1")
    assert where(nst, sg, tmp) == (5, 5, 1) and status(nst)[:2] == (1, 1)
    # the rest of file 1 reads back byte-exact from there
    assert dd_read(nst, tmp / "f1.back", 512) == f1.read_bytes()[512:]
    assert where(nst, sg, tmp) == (10, 10, 2)  # dd stopped at the filemark, st moved past it
    mt(nst, "bsf", "1")  # back over that filemark: before it, still file 1
    assert where(nst, sg, tmp) == (9, 9, 1)
    mt(nst, "bsf", "1")  # and the previous one: before filemark 3
    assert where(nst, sg, tmp) == (3, 3, 0)
    mt(nst, "fsf", "2")
    assert where(nst, sg, tmp) == (10, 10, 2)
    listed = run("tar", "-b", "20", "-tf", nst).stdout.split()
    assert listed == ["m0", "m1", "m2"]
    mt(nst, "eod")
    assert where(nst, sg, tmp) == (eod, eod, 4)
    assert status(nst)[0] == 4  # st counts the files it spaced; the block number it drops
    mt(nst, "seek", "5")
    assert where(nst, sg, tmp) == (5, 5, 1)
    mt(nst, "seek", str(tar_end))
    assert where(nst, sg, tmp) == (tar_end, tar_end, 3)
    assert dd_read(nst, tmp / "f3.back", 4096) == f3.read_bytes()
    # seek past end of data: BLANK CHECK; the drive stays at end of data
    p = mt(nst, "seek", str(eod + 5), check=False)
    assert p.returncode != 0
    assert where(nst, sg, tmp) == (eod, eod, 4)

    # setblk: fixed 512-byte blocks read file 1 as one transfer; back to variable
    mt(nst, "setblk", "512")
    assert "Tape block size 512 bytes" in status(nst)[2]
    mt(nst, "seek", "4")
    assert dd_read(nst, tmp / "f1.fixed", 2560, count=1) == f1.read_bytes()
    mt(nst, "setblk", "0")
    assert "Tape block size 0 bytes" in status(nst)[2]

    # densities: our one density code, mt prints its own table; a foreign one is refused
    assert "0xa0" in status(nst)[2].lower()
    assert "LTO" in mt(nst, "densities").stdout
    assert mt(nst, "setdensity", "0x44", check=False).returncode != 0
    mt(nst, "setdensity", "0xa0")

    # erase from the position: the tape ends there
    mt(nst, "seek", "10")
    mt(nst, "erase")
    mt(nst, "rewind")
    mt(nst, "eod")
    assert where(nst, sg, tmp) == (10, 10, 2)
    objects = AwsTape.open_readonly(lab.tape_lun.path).dump_records()
    assert len(objects) == 10 and objects[3] is None and objects[9] is None
    assert b"".join(objects[4:9]) == f1.read_bytes()

    # offline: not ready (mt status: no ONLINE, DR_OPEN) until mt load; then at BOT
    mt(nst, "offline")
    out = status(nst)[2]
    assert "ONLINE" not in out and "DR_OPEN" in out
    assert sg_check(sg, 0, 0, 0, 0, 0, 0)[0] == ("Not Ready", "Medium not present")
    mt(nst, "load")
    run("sg_turs", sg)
    assert where(nst, sg, tmp) == (0, 0, 0)
    assert "ONLINE" in status(nst)[2]


def test_prevent_medium_removal_and_write_filemarks_immediate(lab, tmp):
    nst, sg = lab.nst, lab.tape_sg
    mt(nst, "rewind")
    mt(nst, "lock")  # PREVENT MEDIUM REMOVAL, kept after mt closes the device
    (key, add), _ = sg_check(sg, 0x1B, 0, 0, 0, 0, 0)  # UNLOAD
    assert (key, add) == ("Illegal Request", "Medium removal prevented")
    assert log_parameters(sg, 0x2E, tmp)[0x0A] == 1  # TapeAlert: no removal
    mt(nst, "unlock")
    # retension (LOAD with RETEN) ends at BOT (compression: test_mt_compression_and_one_partition)
    mt(nst, "fsf", "1")
    mt(nst, "retension")
    assert where(nst, sg, tmp) == (0, 0, 0)
    assert mt(nst, "wset", "1", check=False).returncode != 0  # setmarks: not supported
    # WRITE FILEMARKS (6) with IMMED: the drive moves on at once
    mt(nst, "seek", "4")
    run("sg_raw", sg, "10", "01", "00", "00", "02", "00")
    rp = long_position(sg, tmp)
    assert (rp.object_number, rp.file_identifier) == (6, 3)
    mt(nst, "eod")
    assert tell(nst) == 6
    mt(nst, "rewind")


def test_read_position_forms_agree(lab, tmp):
    nst, sg = lab.nst, lab.tape_sg
    mt(nst, "rewind")
    mt(nst, "setblk", "0")
    for name, n in (("a", 3), ("b", 2)):  # objects 0-2, filemark 3, 4-5, filemark 6
        (tmp / name).write_bytes(os.urandom(n * 1024))
        dd_write(nst, tmp / name, 1024)
    mt(nst, "rewind")
    mt(nst, "fsf", "1")
    short = ssc.parse_read_position_short(sg_in(sg, 20, 0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                tmp=tmp))
    ext = sg_in(sg, 32, 0x34, 0x08, 0, 0, 0, 0, 0, 0, 32, 0, tmp=tmp)
    assert short.first == 4 and not short.bop
    assert len(ext) == 32 and struct.unpack_from(">H", ext, 2)[0] == 0x1C
    assert struct.unpack_from(">QQ", ext, 8) == (4, 4)
    # LOCATE (16) to the start of logical file 1, then to end of data
    mt(nst, "rewind")
    run("sg_raw", sg, "92", "08", "00", "00", *["00"] * 7, "01", "00", "00", "00", "00")
    assert tell(nst) == 4
    run("sg_raw", sg, "92", "18", "00", "00", *["00"] * 12)
    assert tell(nst) == 7
    # SPACE (16): two filemarks back from end of data
    run("sg_raw", sg, "91", "01", "00", "00", *["ff"] * 7, "fe", "00", "00", "00", "00")
    assert tell(nst) == 3
    mt(nst, "rewind")


def test_sg_opcodes_lists_the_ssc_commands(lab):
    out = run("sg_opcodes", "-n", lab.tape_sg).stdout
    ops = {line.split()[0].lower() for line in out.splitlines()
           if re.match(r"\s*[0-9a-fA-F]{2}\s", line)}
    for op in ("04", "2b", "34", "44", "4c", "4d", "91", "92", "1b", "1e", "19", "11"):
        assert op in ops, (op, out)
    assert re.search(r"^\s*34\s+8\s", out, re.M), out  # READ POSITION, extended form


def test_report_density_support_and_log_pages(lab, tmp):
    nst, sg = lab.nst, lab.tape_sg
    data = sg_in(sg, 56, 0x44, 0, 0, 0, 0, 0, 0, 0, 56, 0, tmp=tmp)
    assert struct.unpack_from(">H", data)[0] == 54
    d = data[4:]
    assert d[0] == d[1] == ssc.DENSITY_AWSTAPE and d[2] & 0xA1 == 0xA1  # WRTOK DEFLT DLV
    assert d[16:24] == b"LIO-ORG " and d[24:32] == b"AWSTAPE "
    assert struct.unpack_from(">I", d, 12)[0] == (256 * MiB) // 1000000
    media = sg_in(sg, 56, 0x44, 1, 0, 0, 0, 0, 0, 0, 56, 0, tmp=tmp)
    assert media[4] == ssc.DENSITY_AWSTAPE and media[6] & 0x80
    # sg_logs lists the pages; the counters count what went through
    pages = run("sg_logs", sg).stdout.lower()
    assert "0x0c" in pages and "0x2e" in pages, pages
    run("sg_logs", "-R", sg)
    assert log_parameters(sg, 0x0C, tmp)[0] == 0
    mt(nst, "rewind")
    mt(nst, "setblk", "0")
    src = tmp / "log.bin"
    src.write_bytes(os.urandom(5 * 65536))
    dd_write(nst, src, 65536)
    mt(nst, "rewind")
    dd_read(nst, tmp / "log.back", 65536)
    params = log_parameters(sg, 0x0C, tmp)
    assert params[0] == params[1] == 5 * 65536
    assert params[2] == params[3] == 5 * 65536
    assert params[5] == (256 * MiB - 16 * MiB) // 1000000  # BOP to early warning, MB
    assert "equential access" in run("sg_logs", "-p", "0xc", sg).stdout
    alerts = log_parameters(sg, 0x2E, tmp)
    assert sorted(alerts) == list(range(1, 0x41)) and not any(alerts.values())


def test_write_protected_cartridge(lab, tmp, extra):
    path = tmp / "wp.aws"
    with AwsTape(path, 4 * MiB) as t:
        t.write_record(DataBuffer.of(b"kept" * 256), 0, 1024)
        t.write_filemarks(1)
    dev = extra("wptape", path, 4 * MiB, ro="1")
    nst, sg = str(dev.tape), str(dev.sg)
    assert "WR_PROT" in status(nst)[2]
    # st refuses to open it for writing; the drive itself says DATA PROTECT
    src = tmp / "wp.src"
    src.write_bytes(b"x" * 1024)
    p = run("dd", f"if={src}", f"of={nst}", "bs=1024", check=False)
    assert p.returncode != 0 and ("Read-only file system" in p.stderr
                                  or "Input/output error" in p.stderr), p.stderr
    assert os.strerror(errno.EROFS) in p.stderr or os.strerror(errno.EIO) in p.stderr
    (key, add), _ = sg_check(sg, 0x0A, 0, 0, 0x04, 0, 0, data=bytes(1024), tmp=tmp)
    assert (key, add) == ("Data Protect", "Write protected")
    (key, add), _ = sg_check(sg, 0x10, 0, 0, 0, 1, 0)
    assert (key, add) == ("Data Protect", "Write protected")
    (key, add), _ = sg_check(sg, 0x19, 1, 0, 0, 0, 0)
    assert (key, add) == ("Data Protect", "Write protected")
    # TapeAlert flag 09h (write protect) is set, and clears once read
    assert log_parameters(sg, 0x2E, tmp)[0x09] == 1
    assert log_parameters(sg, 0x2E, tmp)[0x09] == 0
    # the mode header says WP, REPORT DENSITY SUPPORT (MEDIA) clears WRTOK
    mode = sg_in(sg, 12, 0x1A, 0, 0, 0, 12, 0, tmp=tmp)
    assert mode[2] & 0x80
    media = sg_in(sg, 56, 0x44, 1, 0, 0, 0, 0, 0, 0, 56, 0, tmp=tmp)
    assert not media[6] & 0x80
    # and it still reads
    mt(nst, "rewind")
    assert dd_read(nst, tmp / "wp.back", 1024) == b"kept" * 256
    assert AwsTape.open_readonly(path).dump_records() == [b"kept" * 256, None]


def test_programmable_early_warning(lab, tmp, extra):
    capacity = 4 * MiB  # early warning 256 KiB before the end
    dev = extra("pewtape", tmp / "pew.aws", capacity)
    nst, sg = str(dev.tape), str(dev.sg)
    # MODE SENSE (6) page 10h subpage 01h: PEWS zero and changeable
    page = sg_in(sg, 44, 0x1A, 0x08, 0x10, 0x01, 44, 0, tmp=tmp)[4:]
    assert page[:4] == bytes([0x50, 0x01, 0x00, 0x1C]) and page[6:8] == b"\0\0"
    changeable = sg_in(sg, 44, 0x1A, 0x08, 0x50, 0x01, 44, 0, tmp=tmp)[4:]
    assert changeable[6:8] == b"\xff\xff"
    # MODE SELECT (6): PEWS 2 MB, so PEW lies 2,000,000 bytes before early warning
    body = bytearray(page)
    body[0] &= 0x7F
    struct.pack_into(">H", body, 6, 2)
    sg_out(sg, bytes([0, 0, 0x10, 0]) + bytes(body), 0x15, 0x10, 0, 0, 4 + len(body), 0,
           tmp=tmp)
    assert sg_in(sg, 44, 0x1A, 0x08, 0x10, 0x01, 44, 0, tmp=tmp)[4 + 6:4 + 8] == b"\0\x02"
    pew = capacity - capacity // 16 - 2 * 1000 * 1000
    # st: every record is written until PEW; crossing it, the write succeeds with EOM and
    # the next one reports ENOSPC once; then data is accepted up to the physical end
    record = 65536
    results: list[int | str] = []
    fd = os.open(nst, os.O_WRONLY)
    try:
        while results[-3:] != ["ENOSPC"] * 3 and len(results) < 200:
            try:
                results.append(os.write(fd, os.urandom(record)))
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                results.append("ENOSPC")
    finally:
        os.close(fd)
    first = results.index("ENOSPC")
    written = [r for r in results if r != "ENOSPC"]
    per = record + 6  # AWSTAPE header
    assert first == pew // per + 1  # the record that crossed PEW went through
    assert len(written) == capacity // per  # accepted up to the physical end
    assert all(r == record for r in written)
    rp = long_position(sg, tmp)
    assert rp.eop and rp.bpew
    # past early warning the sense is END-OF-PARTITION/MEDIUM DETECTED
    ew = capacity - capacity // 16
    run("sg_raw", sg, "2b", "00", "00", "00", "00", "00", f"{ew // per:02x}", "00", "00", "00")
    (key, add), text = sg_check(sg, 0x0A, 0, 0x01, 0, 0, 0, data=bytes(record), tmp=tmp)
    assert (key, add) == ("No Sense", "End-of-partition/medium detected"), text
    # and rewriting the record that crosses PEW gives PROGRAMMABLE EARLY WARNING DETECTED
    run("sg_raw", sg, "2b", "00", "00", "00", "00", "00", f"{pew // per:02x}", "00", "00", "00")
    (key, add), text = sg_check(sg, 0x0A, 0, 0x01, 0, 0, 0, data=bytes(record), tmp=tmp)
    assert (key, add) == ("No Sense", "Programmable early warning detected"), text
    rp = long_position(sg, tmp)
    assert rp.bpew and not rp.eop and rp.object_number == pew // per + 1


def test_what_a_backup_self_test_does(lab, tmp):
    """Bacula's ``btape test`` sequence with mt and dd: two files of fixed-size records,
    rewind and re-read, bsf/fsf/bsr/fsr to known records, append at end of data."""
    nst, sg = lab.nst, lab.tape_sg
    mt(nst, "rewind")
    mt(nst, "setblk", "0")
    block = 64512  # btape's default block size
    recs = [os.urandom(block) for _ in range(10)]
    (tmp / "bt1").write_bytes(b"".join(recs[:5]))
    (tmp / "bt2").write_bytes(b"".join(recs[5:]))
    fd = os.open(nst, os.O_WRONLY)  # write, weof, write, weof on one open (st is exclusive)
    try:
        for r in recs[:5]:
            assert os.write(fd, r) == block
        fcntl.ioctl(fd, MTIOCTOP, struct.pack("hi", MTWEOF, 1))
        for r in recs[5:]:
            assert os.write(fd, r) == block
    finally:
        os.close(fd)  # st writes the closing filemark
    assert where(nst, sg, tmp) == (12, 12, 2)
    mt(nst, "rewind")
    assert dd_read(nst, tmp / "bt1.back", block) == (tmp / "bt1").read_bytes()
    assert dd_read(nst, tmp / "bt2.back", block) == (tmp / "bt2").read_bytes()
    # "Backspace file" / "Forward space file" / records, then read the record found there
    mt(nst, "bsf", "1")
    mt(nst, "bsr", "1")
    assert where(nst, sg, tmp) == (10, 10, 1)
    assert dd_read(nst, tmp / "r.back", block, count=1) == recs[9]
    mt(nst, "rewind")
    mt(nst, "fsf", "1")
    mt(nst, "fsr", "3")
    assert where(nst, sg, tmp) == (9, 9, 1)
    assert dd_read(nst, tmp / "r.back", block, count=1) == recs[8]
    # append: end of data, one more file, then everything is there
    mt(nst, "eod")
    extra_rec = os.urandom(block)
    (tmp / "bt3").write_bytes(extra_rec)
    dd_write(nst, tmp / "bt3", block)
    mt(nst, "rewind")
    mt(nst, "fsf", "2")
    assert dd_read(nst, tmp / "bt3.back", block) == extra_rec
    mt(nst, "rewind")


def test_mt_compression_and_one_partition(lab, tmp, extra):
    """``mt compression`` is st's MODE SELECT of the Data Compression page: the drive
    reports DCC, accepts DCE and reports it back. With st's ``can-partitions`` option,
    ``mt mkpartition N`` (a second partition) fails with EIO and leaves the data, ``mt
    setpartition 1`` is EINVAL (page 11h: one partition), ``mt mkpartition 0`` leaves an
    empty tape in one partition."""
    path = tmp / "part.aws"
    dev = extra("parttape", path, 4 * MiB)
    nst, sg = str(dev.tape), str(dev.sg)

    def dce() -> int:
        page = sg_in(sg, 20, 0x1A, 0x08, 0x0F, 0, 20, 0, tmp=tmp)[4:]  # MODE SENSE, DBD
        assert page[:2] == b"\x0f\x0e" and page[2] & 0x40  # DCC
        return page[2] >> 7

    assert dce() == 0
    mt(nst, "compression", "1")
    assert dce() == 1
    mt(nst, "compression", "0")
    assert dce() == 0

    src = tmp / "part.src"
    src.write_bytes(b"p" * 1024)
    dd_write(nst, src, 1024)
    mt(nst, "stsetoptions", "can-partitions")
    try:
        p = mt(nst, "mkpartition", "100", check=False)
        assert p.returncode != 0 and os.strerror(errno.EIO) in p.stdout + p.stderr, p
        assert "Partitioning of tape failed" in run("dmesg").stdout
        assert AwsTape.open_readonly(path).dump_records() == [b"p" * 1024, None]
        p = mt(nst, "setpartition", "1", check=False)
        assert p.returncode != 0 and os.strerror(errno.EINVAL) in p.stdout + p.stderr, p
        mt(nst, "mkpartition", "0")
        assert AwsTape.open_readonly(path).dump_records() == []
        assert status(nst)[:2] == (0, 0)
    finally:
        mt(nst, "stclearoptions", "can-partitions")
