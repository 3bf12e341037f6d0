"""One daemon per state directory: a second ``lio-xcopy daemon`` refuses to start, says
which pid runs, and touches nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lio_xcopy import cli
from lio_xcopy.tcmu import daemon, pidlock

HOLD = """
import sys
from pathlib import Path
from lio_xcopy.tcmu import pidlock
lock = pidlock.acquire(Path(sys.argv[1]))
print("held", flush=True)
sys.stdin.read()  # until the test closes the pipe
"""


@pytest.fixture
def state(tmp_path):
    """A running daemon's state file, as the second daemon must leave it."""
    path = tmp_path / "run" / "state.json"
    path.parent.mkdir()
    path.write_text('{"pid": 1, "written": 0, "luns": {"db0": "Disk"}, "copies": []}\n')
    return path


@pytest.fixture
def no_daemon(monkeypatch):
    """Fails the test if the second daemon gets as far as serving (probing LUNs)."""
    def refuse(*a, **k):
        raise AssertionError("the second daemon went on to serve")

    monkeypatch.setattr(daemon, "Daemon", refuse)
    monkeypatch.setattr(daemon, "tune_malloc", refuse)


def _refused(capsys, state, before: str, pid: int) -> None:
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err == (f"lio-xcopy daemon: another lio-xcopy daemon is running (pid {pid}, "
                   f"holding {state.parent / 'daemon.lock'}): stop it first "
                   f"(`systemctl stop lio-xcopy` or `kill {pid}`)\n")
    assert state.read_text() == before  # neither deleted nor rewritten
    assert sorted(p.name for p in state.parent.iterdir()) == ["daemon.lock", "state.json"]


def test_a_second_daemon_in_this_process_is_refused(state, no_daemon, capsys):
    before = state.read_text()
    with pidlock.acquire(state.with_name(pidlock.NAME)):
        assert daemon.main(["--state-file", str(state)]) == 1
        _refused(capsys, state, before, os.getpid())
        # through the command line too, with the control plane's --config
        assert cli.main(["daemon", "--config", str(state.parent / "none.json"),
                         "--state-file", str(state)]) == 1
        _refused(capsys, state, before, os.getpid())
    # once released, the lock is free again (and a killed holder's is freed by the kernel)
    pidlock.acquire(state.with_name(pidlock.NAME)).release()


def test_a_second_daemon_names_the_running_ones_pid(state, no_daemon, capsys):
    before = state.read_text()
    lock = state.with_name(pidlock.NAME)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert pidlock.holder(lock) == holder.pid
        assert daemon.main(["--state-file", str(state)]) == 1
        _refused(capsys, state, before, holder.pid)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    with pidlock.acquire(lock):  # the holder's end dropped its lock
        assert pidlock.holder(lock) == os.getpid()


def test_daemon_help_shows_the_control_planes_option_and_does_nothing(tmp_path, no_daemon,
                                                                      capsys):
    state = tmp_path / "state.json"
    assert cli.main(["daemon", "--state-file", str(state), "--help"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: lio-xcopy daemon") and "--config FILE" in out
    assert "--state-file" in out and err == ""
    assert not tmp_path.joinpath("daemon.lock").exists() and not state.exists()
