"""A tape LUN through tcm_loop and the Linux st driver, with mt, tar and dd."""

from __future__ import annotations

import errno
import os
import re

from conftest import MiB, run, sense_of

from lio_xcopy.devices.awstape import AwsTape


def mt(lab, *args: str) -> str:
    return run("mt", "-f", lab.nst, *args).stdout


def status(lab) -> tuple[int, int]:
    out = mt(lab, "status")
    m = re.search(r"[Ff]ile number\s*=\s*(-?\d+),\s*block number\s*=\s*(-?\d+)", out)
    assert m, out
    return int(m.group(1)), int(m.group(2))


def make_tree(root, names, seed):
    root.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(names):
        (root / n).write_bytes(os.urandom(20000 + 3000 * i + seed))
    return sorted(names)


def test_mt_status_at_bot(lab):
    mt(lab, "rewind")
    out = mt(lab, "status")
    assert "BOT" in out or "ONLINE" in out
    assert status(lab) == (0, 0)


def test_two_tar_archives_then_fsf_lists_the_second(lab):
    mt(lab, "rewind")
    first = make_tree(lab.work / "t1", ["alpha", "beta"], 1)
    second = make_tree(lab.work / "t2", ["gamma", "delta", "epsilon"], 2)
    run("tar", "-cf", lab.nst, "-C", str(lab.work / "t1"), *first)
    run("tar", "-cf", lab.nst, "-C", str(lab.work / "t2"), *second)
    assert status(lab)[0] == 2
    mt(lab, "rewind")
    mt(lab, "fsf", "1")
    assert status(lab) == (1, 0)
    listed = run("tar", "-tf", lab.nst).stdout.split()
    assert sorted(listed) == second
    # and the first archive extracts byte-exact
    mt(lab, "rewind")
    out = lab.work / "x1"
    out.mkdir()
    run("tar", "-xf", lab.nst, "-C", str(out))
    for n in first:
        assert (out / n).read_bytes() == (lab.work / "t1" / n).read_bytes()


def test_variable_block_dd_round_trip_and_bytes_on_tape(lab):
    mt(lab, "rewind")
    mt(lab, "setblk", "0")
    src = lab.work / "var.bin"
    src.write_bytes(os.urandom(16 * 65536))
    run("dd", f"if={src}", f"of={lab.nst}", "bs=64k")
    mt(lab, "rewind")
    back = lab.work / "var.back"
    run("dd", f"if={lab.nst}", f"of={back}", "bs=64k")
    assert back.read_bytes() == src.read_bytes()
    # the cartridge holds 16 records of 64 KiB, then a filemark
    tape = AwsTape.open_readonly(lab.tape_lun.path)
    records = tape.dump_records(limit=17)
    assert [len(r) if r is not None else None for r in records] == [65536] * 16 + [None]
    assert b"".join(records[:16]) == src.read_bytes()


def test_read_past_last_file_ends_as_st_expects(lab):
    mt(lab, "rewind")
    src = lab.work / "one.bin"
    src.write_bytes(os.urandom(10240 * 3))
    run("dd", f"if={src}", f"of={lab.nst}", "bs=10240")
    mt(lab, "rewind")
    with open(lab.nst, "rb", buffering=0) as f:
        got = [len(f.read(10240)) for _ in range(4)]
    assert got == [10240, 10240, 10240, 0]  # three records, then the filemark
    # past the last filemark lies the end of data: st returns 0 bytes, then EIO
    with open(lab.nst, "rb", buffering=0) as f:
        first = f.read(10240)
        try:
            again = f.read(10240)
        except OSError as e:
            again = e.errno
    print("read at end of data:", first, again)
    assert first == b""
    assert again == errno.EIO
    assert status(lab)[0] >= 1


def test_malformed_tape_cdbs_get_check_condition(lab):
    p = run("sg_raw", lab.tape_sg, "11", "07", "00", "00", "01", "00", check=False)  # SPACE code 7
    assert sense_of(p.stdout + p.stderr) == ("Illegal Request", "Invalid field in cdb")
    p = run("sg_raw", lab.tape_sg, "ee", "00", "00", "00", "00", "00", check=False)
    assert sense_of(p.stdout + p.stderr) == ("Illegal Request", "Invalid command operation code")
    assert lab.daemon.alive()
    mt(lab, "rewind")
    assert status(lab) == (0, 0)


def test_big_records_fill_several_awstape_chunks(lab):
    mt(lab, "rewind")
    mt(lab, "setblk", "0")
    src = lab.work / "big.bin"
    src.write_bytes(os.urandom(4 * MiB))
    run("dd", f"if={src}", f"of={lab.nst}", "bs=1M")
    mt(lab, "rewind")
    back = lab.work / "big.back"
    run("dd", f"if={lab.nst}", f"of={back}", "bs=1M")
    assert back.read_bytes() == src.read_bytes()


def test_block_limits_match_the_kernel_transfer_limit(lab):
    # READ BLOCK LIMITS: the largest record is what one command may carry (4 MiB)
    p = run("sg_raw", "-r", "6", lab.tape_sg, "05", "00", "00", "00", "00", "00")
    m = re.search(r"\n\s*00\s+((?:[0-9a-f]{2}\s+){6})", p.stdout + p.stderr)
    assert m, p.stdout + p.stderr
    data = bytes.fromhex(m.group(1).replace(" ", ""))
    assert int.from_bytes(data[1:4], "big") == 4 * MiB
    # st checks a variable-mode record against those limits before it reaches the drive
    mt(lab, "rewind")
    mt(lab, "setblk", "0")
    src = lab.work / "max.bin"
    src.write_bytes(os.urandom(8 * MiB))
    p = run("dd", f"if={src}", f"of={lab.nst}", "bs=8M", "count=1", check=False)
    assert p.returncode != 0 and "Invalid argument" in p.stderr, p.stderr
    assert status(lab) == (0, 0)  # nothing was written
