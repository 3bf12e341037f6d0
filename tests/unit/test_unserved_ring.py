"""Deleting a LUN whose ring no process serves: the control plane serves that ring
itself while the LUN is unexported and deleted, so the initiator's last commands (sd's
SYNCHRONIZE CACHE as tcm_loop removes the disk) do not wait out ``cmd_time_out``."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from lio_xcopy.control import provision
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


class FakeServer:
    """Stands in for the daemon the control plane starts for one unserved LUN."""

    made: list[FakeServer] = []

    def __init__(self, subtype, rescan_every, events, can_serve=True):
        self.subtype, self.rescan_every, self.events = subtype, rescan_every, events
        self.can_serve = can_serve
        self.stopped = threading.Event()

    def add(self, sys_path):
        self.events.append(f"serve {sys_path}")
        return object() if self.can_serve else None

    def run(self):
        self.events.append("running")
        assert self.stopped.wait(10)

    def stop(self):
        self.events.append("stop")
        self.stopped.set()


@pytest.fixture
def lun(tmp_path, monkeypatch):
    from lio_xcopy.tcmu import daemon

    events: list[str] = []
    configfs = tmp_path / "core" / "user_1" / "db0"
    configfs.mkdir(parents=True)
    fake_uio(tmp_path / "class", 4, "db0")
    monkeypatch.setattr(uio, "UIO_CLASS", tmp_path / "class")
    servers: list[FakeServer] = []

    def make(subtype, rescan_every):
        servers.append(FakeServer(subtype, rescan_every, events))
        return servers[-1]

    monkeypatch.setattr(daemon, "Daemon", make)
    return configfs, events, servers


def test_an_unserved_lun_is_served_from_here_while_it_is_deleted(lun, monkeypatch, caplog):
    configfs, events, servers = lun
    monkeypatch.setattr(uio, "ring_holders", lambda node: [])
    so = FakeStorageObject(configfs, events)
    real_delete = so.delete

    def delete():  # the ring is served while the storage object goes
        assert "running" in events and "stop" not in events
        real_delete()

    so.delete = delete
    provision._unexport(so)
    assert events[0] == f"serve {configfs.parent.parent.parent / 'class' / 'uio4'}"
    assert events[-3:] == ["unexport", "delete", "stop"]
    assert servers[0].subtype == "xcopy" and servers[0].rescan_every == float("inf")
    assert "no daemon serves it" in caplog.text


def test_a_served_lun_is_left_to_its_daemon(lun, monkeypatch):
    configfs, events, servers = lun
    monkeypatch.setattr(uio, "ring_holders", lambda node: [1234])
    provision._unexport(FakeStorageObject(configfs, events))
    assert events == ["unexport", "delete"] and servers == []


def test_a_failed_unexport_still_stops_the_server(lun, monkeypatch):
    configfs, events, _ = lun
    monkeypatch.setattr(uio, "ring_holders", lambda node: [])
    with pytest.raises(RuntimeError):
        provision._unexport(FakeStorageObject(configfs, events, fail=True))
    assert events[-1] == "stop" and "delete" not in events
