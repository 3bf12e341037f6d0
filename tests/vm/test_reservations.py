"""Persistent reservations on a disk LUN of ours through the real kernel with sg_persist.

LIO answers PERSISTENT RESERVE IN and OUT (SPC-4) itself and writes its
APTPL state to /etc/target/pr/aptpl_<unit serial> on every PERSISTENT RESERVE OUT, so
these commands fail unless the target setup created that directory.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import run

PR_DIR = Path("/etc/target/pr")
KEY = "0x1"


def persist(sg: str, *args: str) -> str:
    out = run("sg_persist", "--no-inquiry", *args, sg).stdout
    print(f"$ sg_persist --no-inquiry {' '.join(args)} {sg}\n{out}", end="")
    return out


def aptpl_file(lab) -> Path:
    """LIO's APTPL file for the session's disk: named by LIO's own unit serial."""
    serial = lab.disk_lun.storage_object.wwn
    return PR_DIR / f"aptpl_{serial}"


@pytest.fixture
def clean(lab):
    """No registration left behind for the next test, whatever this one did."""
    yield
    keys = run("sg_persist", "--no-inquiry", "--in", "-k", lab.disk_sg, check=False).stdout
    if re.search(r"^\s+0x1\s*$", keys, re.M):
        run("sg_persist", "--no-inquiry", "--out", "--register", f"--param-rk={KEY}",
            "--param-sark=0", lab.disk_sg, check=False)


def _register_reserve_read_release(lab, *aptpl: str) -> None:
    sg = lab.disk_sg
    persist(sg, "--out", "--register", f"--param-sark={KEY}", *aptpl)
    persist(sg, "--out", "--reserve", f"--param-rk={KEY}", "--prout-type=1", *aptpl)

    keys = persist(sg, "--in", "-k")
    assert "1 registered reservation key follows" in keys
    assert re.search(r"^\s+0x1\s*$", keys, re.M), keys

    res = persist(sg, "--in", "-r")
    assert "Reservation follows" in res
    assert re.search(r"Key\s*=\s*0x1\b", res), res
    assert "Write Exclusive" in res and "LU_SCOPE" in res, res

    if aptpl:
        text = aptpl_file(lab).read_text(errors="replace")
        print(f"--- {aptpl_file(lab)} ---\n{text}", end="")
        assert "PR_REG_START" in text and "sa_res_key=1\n" in text, text
        assert "res_holder=1" in text and "res_type=01" in text, text

    persist(sg, "--out", "--release", f"--param-rk={KEY}", "--prout-type=1")
    assert "no reservation held" in persist(sg, "--in", "-r").lower()
    persist(sg, "--out", "--register", f"--param-rk={KEY}", "--param-sark=0")
    assert "there are NO registered reservation keys" in persist(sg, "--in", "-k")


def test_register_reserve_read_release(lab, clean):
    assert PR_DIR.is_dir() and Path("/etc/target/alua").is_dir()
    _register_reserve_read_release(lab)


def test_aptpl_state_is_written_under_etc_target_pr(lab, clean):
    _register_reserve_read_release(lab, "--param-aptpl")
    # the last PERSISTENT RESERVE OUT (without APTPL) leaves no registration to persist
    text = aptpl_file(lab).read_text(errors="replace")
    print(f"--- {aptpl_file(lab)} after unregistering ---\n{text}", end="")
    assert "PR_REG_START" not in text
