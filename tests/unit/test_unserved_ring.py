"""Deleting a LUN whose ring no process serves: its queued commands are failed BUSY
through configfs first (``action/block_dev``, ``action/reset_ring``), so unexporting it
does not wait out the kernel's ``cmd_time_out``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lio_xcopy.control import provision
from lio_xcopy.errors import TransportError
from lio_xcopy.tcmu import uio


def fake_uio(root: Path, n: int, name: str) -> Path:
    d = root / f"uio{n}"
    (d / "maps" / "map0").mkdir(parents=True)
    (d / "name").write_text(f"tcm-user/1/{name}/xcopy/disk:/srv/{name}.img\n")
    (d / "maps" / "map0" / "size").write_text("0x1000000\n")
    return d


def test_the_uio_device_of_a_backstore_is_found_by_hba_and_name(tmp_path):
    fake_uio(tmp_path, 0, "db0")
    fake_uio(tmp_path, 3, "tape0")
    (tmp_path / "uio7").mkdir()  # being made: no attributes yet
    dev = uio.find_device(1, "tape0", tmp_path)
    assert dev is not None and dev.devnode == Path("/dev/uio3")
    assert uio.find_device(2, "tape0", tmp_path) is None
    assert uio.find_device(1, "nosuch", tmp_path) is None
    assert uio.find_device(1, "db0", tmp_path / "absent") is None


def test_ring_holders_are_the_processes_with_the_node_open(tmp_path):
    node = tmp_path / "uio9"
    node.write_bytes(b"")
    assert uio.ring_holders(node) == []
    with node.open("rb"):
        assert uio.ring_holders(node) == [os.getpid()]
    assert uio.ring_holders(node) == []


class FakeLun:
    def __init__(self, events: list[str], fail: bool = False):
        self.events, self.fail = events, fail

    def delete(self) -> None:
        if self.fail:
            raise RuntimeError("configfs said no")
        self.events.append("unexport")


class FakeStorageObject:
    def __init__(self, path: Path, events: list[str], fail: bool = False):
        self.path, self.name = str(path), path.name
        self.events = events
        self.attached_luns = [FakeLun(events, fail)]

    def delete(self) -> None:
        self.events.append("delete")


class Recording:
    """``action/`` attribute files that record each write, in order."""

    def __init__(self, configfs: Path, events: list[str]):
        (configfs / "action").mkdir(parents=True)
        self.configfs, self.events = configfs, events

    def patch(self, monkeypatch) -> None:
        real_write = Path.write_text

        def write_text(path: Path, text: str, *a, **kw):
            if path.parent == self.configfs / "action":
                self.events.append(f"{path.name}={text.strip()}")
            return real_write(path, text, *a, **kw)

        monkeypatch.setattr(Path, "write_text", write_text)


@pytest.fixture
def lun(tmp_path, monkeypatch):
    events: list[str] = []
    configfs = tmp_path / "core" / "user_1" / "db0"
    Recording(configfs, events).patch(monkeypatch)
    fake_uio(tmp_path / "class", 4, "db0")
    monkeypatch.setattr(uio, "UIO_CLASS", tmp_path / "class")
    return configfs, events


def test_an_unserved_ring_is_blocked_and_reset_before_the_lun_is_unexported(
        lun, monkeypatch, caplog):
    configfs, events = lun
    monkeypatch.setattr(uio, "ring_holders", lambda node: [])
    provision._unexport(FakeStorageObject(configfs, events))
    assert events == ["block_dev=1", "reset_ring=1", "unexport", "delete"]
    assert "no daemon serves it" in caplog.text


def test_a_served_ring_is_left_to_its_daemon(lun, monkeypatch):
    configfs, events = lun
    monkeypatch.setattr(uio, "ring_holders", lambda node: [1234])
    provision._unexport(FakeStorageObject(configfs, events))
    assert events == ["unexport", "delete"]


def test_a_failed_unexport_unblocks_the_ring_again(lun, monkeypatch):
    configfs, events = lun
    monkeypatch.setattr(uio, "ring_holders", lambda node: [])
    with pytest.raises(RuntimeError):
        provision._unexport(FakeStorageObject(configfs, events, fail=True))
    assert events == ["block_dev=1", "reset_ring=1", "block_dev=0"]


def test_a_kernel_without_the_actions_only_costs_the_wait(tmp_path, monkeypatch, caplog):
    events: list[str] = []
    configfs = tmp_path / "core" / "user_1" / "db0"
    configfs.mkdir(parents=True)  # no action/ directory
    fake_uio(tmp_path / "class", 4, "db0")
    monkeypatch.setattr(uio, "UIO_CLASS", tmp_path / "class")
    monkeypatch.setattr(uio, "ring_holders", lambda node: [])
    provision._unexport(FakeStorageObject(configfs, events))
    assert events == ["unexport", "delete"]
    assert "waits for the kernel's command timer" in caplog.text
    with pytest.raises(TransportError, match="block_dev"):
        uio.fail_unserved_ring(configfs)
