"""Bacula's own tape-drive self-test against a tape LUN: ``btape test`` (Debian's
bacula-sd 9.6.7) through the st driver, with the Device resource an administrator
writes for an LTO drive on Linux, and the verdict lines btape prints for each part."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import MiB, clear_unit_attention, extra_lun

from lio_xcopy.control import provision
from lio_xcopy.devices.awstape import AwsTape

pytestmark = [
    pytest.mark.skipif(shutil.which("btape") is None,
                       reason="btape missing: scripts/setup-host installs bacula-sd"),
]

#: ``btape test`` writes 2 x 10,000 blocks (btape.c ``num_recs``) before its smaller parts.
#: At Bacula's default Maximum Block Size (64,512) that is 1.3 GB and, under TCG, half an
#: hour; 16 KiB blocks (a multiple of btape's 1,024-byte granularity) keep it in the guest's
#: RAM and the run short. Every block is one WRITE (6) or READ (6) either way.
NUM_RECS = 10000
BLOCK = 16384
CAPACITY = 512 * MiB
SMALL = 8 * MiB  # the fill test's cartridge: early warning 512 KiB before its end
DEVICE = "LTO-Drive"

#: A Linux st drive: positions from MTIOCGET, MTEOM to end of data, MTFSF that leaves
#: the file number known, one filemark at end of data (Bacula's manual, "Tape Testing"
#: and the Device resource's directives).
SD_CONF = """\
Storage {{
  Name = btape-sd
  WorkingDirectory = "{work}"
  Pid Directory = "{work}"
}}
Director {{
  Name = btape-dir
  Password = "btape-test"
}}
Device {{
  Name = {device}
  Device Type = Tape
  Media Type = LTO
  Archive Device = {nst}
  AutomaticMount = yes
  AlwaysOpen = yes
  RemovableMedia = yes
  RandomAccess = no
  Hardware End of Medium = yes
  Fast Forward Space File = yes
  BSF at EOM = no
  Two EOF = no
  Backward Space Record = yes
  Backward Space File = yes
  Forward Space Record = yes
  Forward Space File = yes
  Use MTIOCGET = yes
  Block Positioning = yes
  Offline On Unmount = no
  Maximum Block Size = {block}
}}
Messages {{
  Name = Standard
  stdout = all, !skipped
}}
"""


def btape(conf: Path, commands: str, timeout: float, *, passes: bool = True) -> str:
    """Run btape on our Device, its interactive commands (and answers) on stdin; what it
    printed. btape exits non-zero when a test failed: ``passes`` says which to expect."""
    p = subprocess.run(["btape", "-c", str(conf), DEVICE], input=commands,
                       capture_output=True, text=True, timeout=timeout)
    out = p.stdout + p.stderr
    keep = Path(os.environ.get("LIO_XCOPY_BTAPE_LOG", os.devnull))
    with keep.open("a") as f:  # the whole transcript, for a failure's post-mortem
        f.write(f"### btape {commands!r} exited {p.returncode}\n{out}\n")
    # Bacula's smartall reports its own leaks at exit: not ours, and they bury the verdict
    shown = "\n".join(line for line in out.splitlines() if "Orphaned buffer" not in line)
    assert (p.returncode == 0) == passes, f"btape exited {p.returncode}\n{shown[-6000:]}"
    return out


def said(out: str) -> list[str]:
    """btape's lines without the ``btape: btape.c:NNN-0`` prefix of its level-0 messages."""
    return [re.sub(r"^btape: \S+:\d+-\d+ ", "", line).rstrip() for line in out.splitlines()]


def between(lines: list[str], start: str, end: str) -> list[str]:
    i = lines.index(start)
    return lines[i + 1 : lines.index(end, i + 1)]


@pytest.fixture(scope="module")
def cartridge(lab):
    """Make a tape LUN of this module and a bacula-sd.conf whose Device is its drive;
    (config, cartridge path). The LUNs go at the end of the module."""
    work = Path(tempfile.mkdtemp(prefix="btape-", dir=lab.work))
    made = []

    def make(name: str, capacity: int) -> tuple[Path, Path]:
        lun = provision.create_tape(name, work / f"{name}.aws", capacity)
        made.append(name)
        dev = extra_lun(lab, lun)
        conf = work / f"{name}.conf"
        conf.write_text(SD_CONF.format(work=work, device=DEVICE, nst=dev.tape, block=BLOCK))
        return conf, lun.path

    yield make
    for name in made:
        provision.delete(name)
    clear_unit_attention(lab.disk_sg, lab.tape_sg)
    shutil.rmtree(work, ignore_errors=True)


def check_test_passed(out: str, block: int) -> None:
    """What ``btape test`` printed, on a Device of ``block``-byte Maximum Block Size:
    every part passed, none was retried with another setting, and each printed the
    positions and counts that part must find."""
    lines = said(out)
    # no part failed, none had to be retried with another setting
    for bad in ("failed", "NOT correct", "Attempting again", "Please add", "please add",
                "ERR=", "You must correct"):
        assert not [line for line in lines if bad in line], (bad, out[-6000:])
    # === Write, rewind, and re-read test === (essential)
    part = between(lines, "=== Write, rewind, and re-read test ===",
                   "=== Test Succeeded. End Write, rewind, and re-read test ===")
    data_len = block - 100  # btape.c: a record of block->buf_len - 100 bytes per block
    wrote = f"Wrote {NUM_RECS} blocks of {data_len} bytes."
    assert part.count(wrote) == 2 and "Rewind OK." in part
    assert part.count(f"{NUM_RECS} blocks re-read correctly.") == 2
    # block positioning: MTIOCGET file:block, then read the block found there
    part = between(lines, "Block position test",
                   "=== Test Succeeded. End Write, rewind, and re-read test ===")
    spots = [(0, 4, 5), (0, 200, 201), (0, NUM_RECS - 1, NUM_RECS), (1, 0, NUM_RECS + 1),
             (1, 600, NUM_RECS + 601), (1, NUM_RECS - 1, 2 * NUM_RECS)]
    got = [line for line in part if line.startswith(("Reposition to", "Block "))]
    assert got == [x for f, b, n in spots
                   for x in (f"Reposition to file:block {f}:{b}", f"Block {n} re-read correctly.")]
    # === Append files test === (essential): end of data, append, Bacula's scan
    part = between(lines, "=== Append files test ===", "End scanning the tape.")
    assert "We should be in file 3. I am at file 3. This is correct!" in part
    assert "Done appending, there should be no I/O errors" in part
    scan = between(lines, "Doing Bacula scan of blocks:", "End scanning the tape.")
    sample = between(lines, "=== Sample correct output ===", "=== End sample correct output ===")
    # btape's sample is for 64,512-byte blocks; a block holds its record and 64 bytes of
    # block and record headers
    size = block - 64
    assert [line for line in scan if line] == [
        line.replace("64448", str(size)).replace("451,136", f"{7 * size:,}") for line in sample]
    i = lines.index("End scanning the tape.")
    assert lines[i + 1] == "We should be in file 4. I am at file 4. This is correct!"
    # === Write, backup, and re-read test ===: back over the filemark and a record
    part = between(lines, "=== Write, backup, and re-read test ===",
                   "=== End Write, backup, and re-read test ===")
    for line in ("Backspaced over EOF OK.", "Backspace record OK.",
                 "Block re-read correct. Test succeeded!"):
        assert line in part
    # === Forward space files test === (essential), with Fast Forward Space File
    part = between(lines, "=== Forward space files test ===",
                   "=== End Forward space files test ===")
    assert [line for line in part if line.startswith("We should be")] == [
        f"We should be in file {n}. I am at file {n}. This is correct!" for n in (1, 3, 4, 5)]


def check_last_part_on(cartridge: Path) -> None:
    """What the last part of ``btape test`` left on the cartridge file: files of 1, 2,
    3, 2, 1 Bacula blocks, each block with Bacula's header."""
    objects = AwsTape.open_readonly(cartridge).dump_records()
    shape, count = [], 0
    for obj in objects:
        if obj is None:
            shape.append(count)
            count = 0
        else:
            assert obj[12:16] == b"BB02"  # Bacula's block header: checksum, length, number, id
            count += 1
    assert shape == [1, 2, 3, 2, 1] and count == 0


def test_btape_test_passes(lab, cartridge):
    conf, path = cartridge("btape0", CAPACITY)
    out = btape(conf, "test\nquit\n", timeout=3600)
    assert lab.daemon.alive()
    check_test_passed(out, BLOCK)
    check_last_part_on(path)


def test_btape_fill_to_end_of_medium(lab, cartridge):
    """``fill``, the simple one-tape form, on an 8 MiB cartridge: Bacula writes until st
    reports ENOSPC, which is right after early warning (SSC-4: the WRITE that crosses it
    completes with NO SENSE, EOM, END-OF-PARTITION/MEDIUM DETECTED; st returns its byte
    count and ENOSPC for the next write). Bacula closes the file with a filemark and
    re-reads the last block there. btape 9.6.7 then fails its own simple fill, as the
    README says ("Tapes: end of medium, compression, partitions"): its loop stops only
    past 1,000 blocks, so on a cartridge that holds fewer it writes on, Bacula refuses
    ("Device at EOM", a fatal message that cancels btape's job) and the re-read
    (do_unfill) gives up."""
    conf, path = cartridge("btape1", SMALL)
    out = btape(conf, "fill\ns\n\n\n\nquit\n", timeout=600, passes=False)
    lines = said(out)
    assert lab.daemon.alive()
    assert any(line.endswith("Simple test (single tape) selected.") for line in lines)
    eom = [line for line in lines if "Write of 16384 bytes got -1." in line]
    assert len(eom) == 1 and 'End of Volume "TestVolume1" at 1:' in eom[0], out[-6000:]
    assert any(line.endswith("Re-read of last block succeeded.") for line in lines)
    # btape's own end of a simple fill on a cartridge of fewer than 1,000 blocks
    assert any("Cannot write block. Device at EOM." in line for line in lines)
    assert "Wrote 1000 blocks on second tape. Done." in lines
    assert "do_unfill failed." in lines
    # the cartridge: label file, then Bacula blocks up to the first one that crossed
    # early warning, then the filemark Bacula wrote at EOM
    objects = AwsTape.open_readonly(path).dump_records()
    marks = [i for i, o in enumerate(objects) if o is None]
    assert len(marks) == 2 and marks[1] == len(objects) - 1
    blocks = objects[marks[0] + 1 : marks[1]]
    assert all(len(b) == BLOCK for b in blocks)
    early_warning = SMALL - SMALL // 16
    end = sum(6 + len(o or b"") for o in objects[: marks[1]])  # AWSTAPE header: 6 bytes
    assert end - (6 + BLOCK) <= early_warning < end <= SMALL
    assert f"End of Volume \"TestVolume1\" at 1:{len(blocks)} " in eom[0]
