"""The README's administrator path, command for command: with the daemon running, from no
LUN of ours to a verified backup through the tape library and a restore compared byte for
byte. The commands are read from README.md itself (the block after the
``<!-- admin-path:`` marker), so a README command that fails fails this test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import run

from lio_xcopy.scsi.xcopy import DigestAlgorithm

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
BEGIN, END = "<!-- admin-path:", "<!-- /admin-path -->"
#: what the path creates, removed again afterwards (the shared guest's lab stays)
LUNS = (("library_drive", "libtape0"), ("changer", "lib0"), ("disk", "db0copy"),
        ("disk", "db0"))
TARGET = "naa.5001405c0ffee013"
FILES = (Path("/srv/db0.img"), Path("/srv/db0copy.img"), Path("/srv/lib"))
#: state the path writes that other tests read: put back as it was
KEPT = (Path("/etc/lio-xcopy"), Path("/var/lib/lio-xcopy"))


def admin_path() -> list[str]:
    """The commands of the README's marked block, continuation lines joined, comment
    lines and blank lines left out."""
    text = README.read_text()
    start = text.index(BEGIN)
    block = text[start:text.index(END, start)]
    body = block.split("```sh\n", 1)[1].rsplit("```", 1)[0]
    commands: list[str] = []
    pending = ""
    for line in body.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        commands.append(pending + line)
        pending = ""
    assert not pending, f"the README's block ends in a continuation: {pending!r}"
    return commands


def test_the_readme_block_is_the_administrators_whole_path() -> None:
    """Host-independent: the block is there, and goes from creating LUNs to comparing
    the restored disk."""
    commands = admin_path()
    assert commands[0].startswith("lio-xcopy /backstores/disk create name=db0 ")
    assert any(c.startswith("lio-xcopy backup ") for c in commands)
    assert any(c.startswith("lio-xcopy restore ") for c in commands)
    assert commands[-1].startswith("cmp ")


@pytest.fixture
def kept(tmp_path: Path):
    """Put back the saved configuration and the catalog, and remove the path's LUNs,
    target and files, whatever happened."""
    saved = tmp_path / "kept"
    for d in KEPT:
        if d.exists():
            shutil.copytree(d, saved / d.relative_to("/"), symlinks=True)
    try:
        yield
    finally:
        for kind, name in LUNS:
            run("lio-xcopy", f"/backstores/{kind}", "delete", name, check=False)
        run("lio-xcopy", "/loopback", "delete", TARGET, check=False)
        for f in FILES:
            if f.is_dir():
                shutil.rmtree(f, ignore_errors=True)
            else:
                f.unlink(missing_ok=True)
        for d in KEPT:
            shutil.rmtree(d, ignore_errors=True)
            if (saved / d.relative_to("/")).exists():
                shutil.copytree(saved / d.relative_to("/"), d, symlinks=True)


def test_readme_admin_path_ends_in_a_verified_restore(lab, kept, tmp_path: Path) -> None:
    commands = admin_path()
    assert not any(Path(f).exists() for f in FILES), "the path's files exist already"
    # one shell runs the block, as the administrator's would (its variables carry over);
    # each command is announced, and the first that fails ends it
    script = ["set -u -o pipefail"]
    for i, cmd in enumerate(commands):
        script += [f"echo '### {i}'", cmd,
                   f"rc=$?; if [ $rc != 0 ]; then echo \"### command {i} exited $rc\"; "
                   "exit 1; fi"]
    t0 = time.monotonic()
    p = subprocess.run(["bash", "-c", "\n".join(script)], capture_output=True, text=True,
                       timeout=600, cwd=tmp_path, env=os.environ)
    took = time.monotonic() - t0
    ran = [line for line in p.stdout.splitlines() if line.startswith("### ")]
    if p.returncode != 0:
        last = int(ran[-2 if ran[-1].startswith("### command") else -1].split()[1])
        links = run("ls", "-l", "/dev/disk/by-id", "/dev/tape/by-id", check=False).stdout
        raise AssertionError(
            f"README command {last + 1} of {len(commands)} failed: {commands[last]}\n"
            f"{ran[-1]}\n--- stdout\n{p.stdout[-4000:]}\n--- stderr\n{p.stderr[-4000:]}\n"
            f"--- /dev links\n{links}")
    print(f"README path: {len(commands)} commands in {took:.0f} s")
    assert ran == [f"### {i}" for i in range(len(commands))]
    # what the administrator reads: 32 MiB backed up and restored, the restore checked
    # against the backup's digest, in the algorithm the daemon reported (XXH3-128 by
    # default); cmp (the last command) found the disks identical
    said = p.stdout + p.stderr
    m = re.search(r"job \d+ done: 32\.0 MiB in tape file \d+ of \S+, (\S+) [0-9a-f]+\n", said)
    assert m and m[1] == "xxh3-128", said
    title = DigestAlgorithm.named(m[1]).title
    assert re.search(rf"job \d+ done: 32\.0 MiB restored, verified: {title} matches", said), said
    assert lab.daemon.alive()
