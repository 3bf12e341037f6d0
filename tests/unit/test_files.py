"""Atomic replacement of the saved configuration, a library's state.json and the
daemon's state file: one helper, every byte written, no temporary file left."""

from __future__ import annotations

import os
import stat

import pytest

from lio_xcopy import files


def short_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """``os.write`` writes at most 3 bytes per call, as a signal or a full pipe may."""
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, bytes(data[:3])))


def test_write_atomic_writes_every_byte_of_short_writes(tmp_path, monkeypatch):
    short_writes(monkeypatch)
    path = tmp_path / "state.json"
    path.write_bytes(b"old")
    files.write_atomic(path, b"0123456789abcdef", 0o644)
    assert path.read_bytes() == b"0123456789abcdef"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "saveconfig.json"
    path.write_bytes(b"old")

    def full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError):
        files.write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["saveconfig.json"]


def test_the_library_state_survives_short_writes(tmp_path, monkeypatch):
    from lio_xcopy.devices.library import Library, Place

    lib = Library.create(tmp_path / "lib", slots=4, drives=1, capacity=1 << 20)
    short_writes(monkeypatch)
    with lib.change() as state:
        state.slots[1] = Place("L00001L8", source=4096)
    assert Library.open(tmp_path / "lib").state().slots[:2] == [
        None, Place("L00001L8", source=4096)]


def test_the_daemon_state_file_is_whole_and_readable_by_others(tmp_path, monkeypatch):
    short_writes(monkeypatch)
    from lio_xcopy.tcmu import state as state_file

    path = tmp_path / "run" / "state.json"
    state_file.write(state_file.DaemonState(os.getpid(), 1.0, {"db0": "disk"}), path)
    assert state_file.read(path) == state_file.DaemonState(os.getpid(), 1.0, {"db0": "disk"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
