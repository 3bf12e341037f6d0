"""The SBC-4 commands beyond READ and WRITE through the real kernel, with sg3_utils: each
command's bytes on the backing file (a sparse file on tmpfs, which has holes) and its sense."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest
from conftest import MiB, clear_unit_attention, extra_lun, run, sense_of

BS = 512
SIZE = 16 * MiB
BLOCKS = SIZE // BS


@pytest.fixture(scope="module")
def lun(lab):
    """A disk LUN over a sparse file in /dev/shm: (path, sg node, block device)."""
    from lio_xcopy.control import provision

    path = Path("/dev/shm/sbc0.img")
    path.unlink(missing_ok=True)
    disk = provision.create_disk("sbc0", path, SIZE)
    dev = extra_lun(lab, disk)
    yield path, str(dev.sg), str(dev.block)
    provision.delete("sbc0")
    clear_unit_attention(lab.disk_sg, lab.tape_sg)
    path.unlink(missing_ok=True)


def medium(path: Path, lba: int, count: int = 1) -> bytes:
    with path.open("rb") as f:
        return os.pread(f.fileno(), count * BS, lba * BS)


def put(path: Path, lba: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, lba * BS)
        os.fsync(fd)
    finally:
        os.close(fd)


def holes(path: Path) -> list[tuple[int, int]]:
    """Holes of the backing file as (first block, end block)."""
    out, pos = [], 0
    fd = os.open(path, os.O_RDONLY)
    try:
        while pos < SIZE:
            hole = os.lseek(fd, pos, os.SEEK_HOLE)
            if hole >= SIZE:
                break
            try:
                data = os.lseek(fd, hole, os.SEEK_DATA)
            except OSError as e:
                assert e.errno == errno.ENXIO
                data = SIZE
            out.append((hole // BS, data // BS))
            pos = data
    finally:
        os.close(fd)
    return out


def covered(path: Path, lo: int, hi: int) -> bool:
    """Whether blocks [lo, hi) lie in one hole of the backing file."""
    return any(a <= lo and hi <= b for a, b in holes(path))


def block_of(seed: int) -> bytes:
    return bytes((seed * 37 + i * 11) & 0xFF for i in range(BS))


def tmpfile(lab, name: str, data: bytes) -> str:
    p = lab.work / name
    p.write_bytes(data)
    return str(p)


def be(value: int, width: int) -> list[str]:
    return [f"{b:02x}" for b in value.to_bytes(width, "big")]


def info_field(out: str) -> int | None:
    """INFORMATION as sg3_utils prints it ("Info fld=0x..")."""
    m = re.search(r"Info fld=0x([0-9a-f]+)", out)
    return int(m.group(1), 16) if m else None


# --- what the LUN reports ---------------------------------------------------------------------
def test_sg_opcodes_lists_the_new_commands(lun):
    out = run("sg_opcodes", lun[1]).stdout.lower()
    for name in ("read(12)", "write(12)", "compare and write", "verify(10)", "verify(12)",
                 "verify(16)", "write and verify(10)", "write and verify(12)",
                 "write and verify(16)", "write same(10)", "write same(16)", "unmap",
                 "get lba status", "pre-fetch(10)", "pre-fetch(16)"):
        assert name in out, f"{name} missing:\n{out}"


def test_vpd_block_limits_and_provisioning(lun):
    bl = run("sg_vpd", "-p", "bl", lun[1]).stdout
    assert re.search(r"compare and write length: 1 blocks?", bl, re.I), bl
    assert re.search(r"unmap LBA count: 4194304", bl, re.I), bl
    assert re.search(r"unmap block descriptor count: 256", bl, re.I), bl
    assert re.search(r"write same length: 0x400000", bl, re.I), bl
    lbp = run("sg_vpd", "-p", "lbpv", lun[1]).stdout
    assert re.search(r"\(LBPU\): 1", lbp) and re.search(r"\(LBPWS\): 1", lbp), lbp
    assert re.search(r"\(LBPWS10\): 1", lbp) and re.search(r"\(LBPRZ\): 1", lbp), lbp
    assert re.search(r"Provisioning type: 2", lbp), lbp
    cap = run("sg_readcap", "-l", lun[1]).stdout
    assert re.search(r"lbpme=1, lbprz=1", cap), cap


def test_sd_uses_unmap_and_fua(lun):
    name = Path(lun[2]).name
    disk = next(Path(f"/sys/block/{name}/device/scsi_disk").iterdir())
    assert (disk / "provisioning_mode").read_text().strip() == "unmap"
    assert int(Path(f"/sys/block/{name}/queue/discard_max_bytes").read_text()) > 0
    assert (disk / "FUA").read_text().strip() == "1"


# --- READ (12), WRITE (12) --------------------------------------------------------------------
def test_read_write_12(lab, lun):
    path, sg, _ = lun
    data = block_of(1) + block_of(2)
    src = tmpfile(lab, "w12", data)
    run("sg_raw", "-s", str(len(data)), "-i", src, sg, "aa", "08", *be(100, 4), *be(2, 4),
        "00", "00")  # FUA
    assert medium(path, 100, 2) == data
    out = lab.work / "r12"
    run("sg_raw", "-r", str(len(data)), "-o", str(out), sg, "a8", "18", *be(100, 4),
        *be(2, 4), "00", "00")  # DPO, FUA
    assert out.read_bytes() == data
    p = run("sg_raw", "-r", "512", sg, "a8", "00", *be(BLOCKS, 4), *be(1, 4), "00", "00",
            check=False)
    assert sense_of(p.stdout + p.stderr) == ("Illegal Request",
                                             "Logical block address out of range")


# --- COMPARE AND WRITE ------------------------------------------------------------------------
def test_compare_and_write(lab, lun):
    path, sg, _ = lun
    put(path, 10, block_of(3))
    f = tmpfile(lab, "caw", block_of(3) + block_of(4))
    run("sg_compare_and_write", f"--in={f}", "--lba=10", "--num=1", sg)
    assert medium(path, 10) == block_of(4)
    wrong = bytearray(block_of(4))
    wrong[100] ^= 0xFF
    f = tmpfile(lab, "caw2", bytes(wrong) + block_of(5))
    p = run("sg_compare_and_write", "-v", f"--in={f}", "--lba=10", "--num=1", sg, check=False)
    out = p.stdout + p.stderr
    assert p.returncode == 14, out  # sg3_utils' exit status for MISCOMPARE
    assert sense_of(out) == ("Miscompare", "Miscompare during verify operation"), out
    assert info_field(out) == 100, out
    assert medium(path, 10) == block_of(4)  # not written


# --- VERIFY -----------------------------------------------------------------------------------
def test_verify(lab, lun):
    path, sg, _ = lun
    data = b"".join(block_of(i) for i in range(4))
    put(path, 20, data)
    run("sg_verify", "--lba=20", "--count=4", sg)  # BYTCHK 0: medium verification
    run("sg_verify", "--16", "--lba=20", "--count=4", "--ndo=2048",
        f"--in={tmpfile(lab, 'v', data)}", sg)
    bad = bytearray(data)
    bad[1500] ^= 1
    p = run("sg_verify", "-v", "--lba=20", "--count=4", "--ndo=2048",
            f"--in={tmpfile(lab, 'v2', bytes(bad))}", sg, check=False)
    out = p.stdout + p.stderr
    assert p.returncode == 14 and info_field(out) == 1500, out
    # BYTCHK 11b: one block compared with each
    put(path, 30, block_of(7) * 3)
    one = tmpfile(lab, "v3", block_of(7))
    run("sg_verify", "--lba=30", "--count=3", "--ndo=512", "--ebytchk=3", f"--in={one}", sg)
    p = run("sg_verify", "--lba=29", "--count=3", "--ndo=512", "--ebytchk=3", f"--in={one}",
            sg, check=False)
    assert p.returncode == 14
    # VERIFY (12), BYTCHK 01b
    run("sg_raw", "-s", "1024", "-i", tmpfile(lab, "v4", data[:1024]), sg, "af", "02",
        *be(20, 4), *be(2, 4), "00", "00")
    p = run("sg_raw", sg, "2f", "04", *be(20, 4), "00", "00", "01", "00", check=False)
    assert sense_of(p.stdout + p.stderr) == ("Illegal Request", "Invalid field in cdb")


# --- WRITE AND VERIFY -------------------------------------------------------------------------
def test_write_and_verify(lab, lun):
    path, sg, _ = lun
    data = block_of(8) + block_of(9)
    f = tmpfile(lab, "wv", data)
    run("sg_write_verify", f"--in={f}", "--lba=40", "--num=2", "--bytchk=1", sg)
    assert medium(path, 40, 2) == data
    run("sg_write_verify", "--16", f"--in={f}", "--lba=50", "--num=2", sg)
    assert medium(path, 50, 2) == data
    run("sg_raw", "-s", "1024", "-i", f, sg, "ae", "02", *be(60, 4), *be(2, 4), "00", "00")
    assert medium(path, 60, 2) == data


# --- WRITE SAME -------------------------------------------------------------------------------
def test_write_same(lab, lun):
    path, sg, _ = lun
    f = tmpfile(lab, "ws", block_of(11))
    run("sg_write_same", "--10", f"--in={f}", "--lba=200", "--num=300", sg)
    assert medium(path, 200, 300) == block_of(11) * 300
    run("sg_write_same", "--16", f"--in={f}", "--lba=1000", "--num=5000", sg)
    assert medium(path, 1000, 5000) == block_of(11) * 5000
    # zeros with UNMAP: a hole where the blocks were written
    run("sg_write_same", "--16", "--unmap", "--lba=2048", "--num=2048", sg)
    assert medium(path, 2048, 2048) == bytes(2048 * BS)
    assert covered(path, 2048, 4096), holes(path)
    assert medium(path, 4096) == block_of(11)
    run("sg_write_same", "--16", "--ndob", "--unmap", "--lba=1000", "--num=8", sg)
    assert medium(path, 1000, 8) == bytes(8 * BS)
    p = run("sg_write_same", "-vv", "--anchor", "--unmap", "--lba=0", "--num=1", sg,
            check=False)
    assert sense_of(p.stdout + p.stderr) == ("Illegal Request", "Invalid field in cdb")
    p = run("sg_write_same", "-vv", f"--in={f}", f"--lba={BLOCKS - 1}", "--num=2", sg,
            check=False)
    assert sense_of(p.stdout + p.stderr) == ("Illegal Request",
                                             "Logical block address out of range")


# --- UNMAP and GET LBA STATUS -----------------------------------------------------------------
def test_unmap_and_get_lba_status(lab, lun):
    path, sg, _ = lun
    put(path, 8192, os.urandom(8192 * BS))
    run("sg_unmap", "--lba=8192,12288", "--num=1024,2048", sg)
    assert medium(path, 8192, 1024) == bytes(1024 * BS)
    assert medium(path, 12288, 2048) == bytes(2048 * BS)
    assert covered(path, 8192, 9216) and covered(path, 12288, 14336), holes(path)
    assert not covered(path, 9215, 9217) and not covered(path, 14335, 14337), holes(path)
    out = run("sg_get_lba_status", "--lba=8192", "--maxlen=4096", "-b", sg).stdout
    rows = [tuple(int(x, 16) if x.startswith("0x") else int(x) for x in line.split()[:3])
            for line in out.splitlines() if line.strip().startswith("0x")]
    assert rows[:4] == [(8192, 1024, 1), (9216, 3072, 0), (12288, 2048, 1),
                        (14336, 2048, 0)], out
    p = run("sg_unmap", "-vv", f"--lba={BLOCKS - 1}", "--num=2", sg, check=False)
    assert sense_of(p.stdout + p.stderr) == ("Illegal Request",
                                             "Logical block address out of range")
    p = run("sg_unmap", "-vv", "--anchor", "--lba=0", "--num=1", sg, check=False)
    assert sense_of(p.stdout + p.stderr) == ("Illegal Request", "Invalid field in cdb")


def test_blkdiscard_goes_through_unmap(lab, lun):
    path, _, sd = lun
    put(path, 16384, os.urandom(2048 * BS))
    run("blkdiscard", "-o", str(16384 * BS), "-l", str(2048 * BS), sd)
    assert medium(path, 16384, 2048) == bytes(2048 * BS)
    assert covered(path, 16384, 18432), holes(path)


# --- PRE-FETCH --------------------------------------------------------------------------------
def test_pre_fetch(lun):
    _, sg, _ = lun
    p = run("sg_raw", sg, "34", "02", *be(0, 4), "00", *be(64, 2), "00")
    assert "Condition Met" not in p.stdout + p.stderr
    run("sg_raw", sg, "90", "00", *be(100, 8), *be(0, 4), "00", "00")
    p = run("sg_raw", sg, "90", "00", *be(BLOCKS, 8), *be(1, 4), "00", "00", check=False)
    assert sense_of(p.stdout + p.stderr) == ("Illegal Request",
                                             "Logical block address out of range")
