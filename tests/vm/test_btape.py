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


def btape(conf: Path, commands: str, timeout: float) -> str:
    """Run btape on our Device, its interactive commands (and answers) on stdin; what it
    printed. btape exits non-zero when a test failed."""
    p = subprocess.run(["btape", "-c", str(conf), DEVICE], input=commands,
                       capture_output=True, text=True, timeout=timeout)
    out = p.stdout + p.stderr
    keep = Path(os.environ.get("LIO_XCOPY_BTAPE_LOG", os.devnull))
    with keep.open("a") as f:  # the whole transcript, for a failure's post-mortem
        f.write(f"### btape {commands!r} exited {p.returncode}\n{out}\n")
    # Bacula's smartall reports its own leaks at exit: not ours, and they bury the verdict
    shown = "\n".join(line for line in out.splitlines() if "Orphaned buffer" not in line)
    assert p.returncode == 0, f"btape exited {p.returncode}\n{shown[-6000:]}"
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


def test_btape_test_passes(lab, cartridge):
    conf, path = cartridge("btape0", CAPACITY)
    out = btape(conf, "test\nquit\n", timeout=3600)
    lines = said(out)
    assert lab.daemon.alive()
    # no part failed, none had to be retried with another setting
    for bad in ("failed", "NOT correct", "Attempting again", "Please add", "please add",
                "ERR=", "You must correct"):
        assert not [line for line in lines if bad in line], (bad, out[-6000:])
    # === Write, rewind, and re-read test === (essential)
    part = between(lines, "=== Write, rewind, and re-read test ===",
                   "=== Test Succeeded. End Write, rewind, and re-read test ===")
    data_len = BLOCK - 100  # btape.c: a record of block->buf_len - 100 bytes per block
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
    size = BLOCK - 64
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
    # what the last part left on the cartridge: files of 1, 2, 3, 2, 1 Bacula blocks
    objects = AwsTape.open_readonly(path).dump_records()
    shape, count = [], 0
    for obj in objects:
        if obj is None:
            shape.append(count)
            count = 0
        else:
            assert obj[12:16] == b"BB02"  # Bacula's block header: checksum, length, number, id
            count += 1
    assert shape == [1, 2, 3, 2, 1] and count == 0


@pytest.mark.skipif(os.environ.get("LIO_XCOPY_BTAPE_FILL") != "1", reason=(
    "unfinished (LIO_XCOPY_BTAPE_FILL=1 runs it): btape 9.6.7 reaches end of medium "
    "('Write of 16384 bytes got -1', 'Re-read of last block succeeded'), then in simple "
    "mode fails its own next write at EOM ('Cannot write block. Device at EOM'), cancels "
    "the job and do_unfill fails; not yet known whether the drive or btape is at fault"))
def test_btape_fill_to_end_of_medium(lab, cartridge):
    """``fill``, the simple one-tape form: label, write Bacula records until the drive
    reports end of medium, close the volume, re-read it and the last block written."""
    conf, path = cartridge("btape1", 8 * MiB)
    out = btape(conf, "fill\ns\n\n\n\nquit\n", timeout=1800)
    lines = said(out)
    assert lab.daemon.alive()
    for line in ("Simple test (single tape) selected.", "Wrote Start of Session label.",
                 "Wrote End of Session label.", "Rewinding.",
                 "The last block on the tape matches. Test succeeded."):
        assert line in lines, (line, out[-6000:])
    assert not [line for line in lines if "failed" in line or "Error" in line], out[-6000:]
    # it wrote on past early warning (a sixteenth before the end), within the capacity
    used = sum(6 + len(o or b"") for o in AwsTape.open_readonly(path).dump_records())
    assert 8 * MiB - 8 * MiB // 16 < used <= 8 * MiB
