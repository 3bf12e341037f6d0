"""scripts/check-commit-msg, the commit-msg hook: a short subject, a blank line, a body."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

HOOK = Path(__file__).resolve().parents[2] / "scripts" / "check-commit-msg"


def check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    msg = tmp_path / "COMMIT_EDITMSG"
    msg.write_text(text)
    return subprocess.run([str(HOOK), str(msg)], capture_output=True, text=True, check=False)


@pytest.mark.parametrize("text", [
    "tape: one vector write per chunk\n",
    "tape: one vector write per chunk\n\nSSC-4 6.8: the records of a chunk in one pwritev.\n",
    "x" * 72 + "\n# a comment git drops\n",
])
def test_a_short_subject_with_or_without_a_body_passes(tmp_path: Path, text: str) -> None:
    r = check(tmp_path, text)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(("text", "says"), [
    ("x" * 73 + "\n", "73 characters"),
    ("a subject\nglued to its body\n", "line 2 blank"),
    ("# only a comment\n", "empty"),
])
def test_a_long_subject_a_glued_body_or_none_is_refused(tmp_path: Path, text: str,
                                                        says: str) -> None:
    r = check(tmp_path, text)
    assert r.returncode == 1
    assert says in r.stderr and r.stderr[-1] == "\n" and r.stderr.count("\n") == 1
