"""Discovery, handler configs and the daemon loop, over a fake sysfs and the simulated ring."""

from __future__ import annotations

import os
import threading
import time

import pytest

from lio_xcopy.devices.disk import Disk
from lio_xcopy.devices.tape import Tape
from lio_xcopy.errors import ConfigError
from lio_xcopy.scsi.sense import GOOD, SenseData, SenseKey
from lio_xcopy.tcmu import uio
from lio_xcopy.tcmu.daemon import Daemon, TcmuDevice
from lio_xcopy.tcmu.handler import HandlerConfig, open_device, parse_size
from lio_xcopy.tcmu.ring import CommandRing
from lio_xcopy.tcmu.sim import SimulatedKernel


def fake_uio(root, n: int, name: str, size: int = 0x40800000):
    d = root / f"uio{n}"
    (d / "maps" / "map0").mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "maps" / "map0" / "size").write_text(f"{size:#x}\n")
    return d


def test_parse_uio_name():
    n = uio.parse_uio_name("tcm-user/3/db0/xcopy/disk;/srv/db0.img;block_size=512\n")
    assert n == uio.UioName(3, "db0", "xcopy", "disk;/srv/db0.img;block_size=512")
    assert n.configfs.as_posix() == "/sys/kernel/config/target/core/user_3/db0"
    assert uio.parse_uio_name("uio_pdrv_genirq") is None
    assert uio.parse_uio_name("tcm-user/x/db0/xcopy/cfg") is None


def test_uio_device_from_sysfs(tmp_path):
    d = fake_uio(tmp_path, 4, "tcm-user/1/t0/xcopy/tape;/srv/t0.aws")
    dev = uio.UioDevice.from_sys_path(d)
    assert dev.devnode.as_posix() == "/dev/uio4" and dev.map_size == 0x40800000
    assert dev.tcmu.subtype == "xcopy"
    assert uio.UioDevice.from_sys_path(fake_uio(tmp_path, 5, "some_other_uio")) is None


def test_unit_serial_from_configfs(tmp_path, monkeypatch):
    monkeypatch.setattr(uio, "CONFIGFS_CORE", tmp_path)
    wwn = tmp_path / "user_1" / "db0" / "wwn"
    wwn.mkdir(parents=True)
    (wwn / "vpd_unit_serial").write_text("T10 VPD Unit Serial Number: 1c9e-77aa\n")
    assert uio.read_unit_serial(uio.UioName(1, "db0", "xcopy", "")) == "1c9e-77aa"
    assert uio.read_unit_serial(uio.UioName(2, "nope", "xcopy", "")) is None


@pytest.mark.parametrize("text,value", [("512", 512), ("64M", 64 << 20), ("1G", 1 << 30),
                                        ("2GiB", 2 << 30), ("0x1000", 4096)])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["ten", "-1", "12Q"])
def test_parse_size_rejects(text):
    with pytest.raises(ConfigError):
        parse_size(text)


def test_handler_config_round_trip():
    hc = HandlerConfig.parse("disk;/srv/db0.img;block_size=4096")
    assert hc == HandlerConfig("disk", "/srv/db0.img", {"block_size": "4096"})
    assert HandlerConfig.parse(hc.format()) == hc


@pytest.mark.parametrize("cfg", ["disk", "cdrom;/x", "disk;relative.img", "disk;/x;novalue"])
def test_handler_config_errors_say_what_to_do(cfg):
    with pytest.raises(ConfigError, match="handler config"):
        HandlerConfig.parse(cfg)


def test_handler_config_refuses_what_the_kernel_would_split():
    with pytest.raises(ConfigError, match="commas"):
        HandlerConfig("disk", "/srv/a,b.img").format()


def test_open_device_kinds(tmp_path):
    img = tmp_path / "d.img"
    img.write_bytes(bytes(1 << 20))
    disk = open_device("d0", f"disk;{img};block_size=4096", "abcd")
    tape = open_device("t0", f"tape;{tmp_path / 't.aws'};capacity=8M", None)
    try:
        assert isinstance(disk, Disk) and disk.identity.unit_serial == "abcd"
        assert isinstance(tape, Tape) and tape.identity.unit_serial  # derived from the name
    finally:
        disk.close()
        tape.close()


def test_daemon_ignores_foreign_subtypes(tmp_path):
    opened = []
    d = Daemon(opener=lambda *a: opened.append(a))
    assert d.add(str(fake_uio(tmp_path, 0, "tcm-user/1/q0/qcow//srv/q0.raw"))) is None
    assert d.add(str(fake_uio(tmp_path, 1, "uio_hv_generic"))) is None
    assert not opened and not d.devices


def test_daemon_reports_unopenable_device_and_goes_on(tmp_path, caplog):
    d = Daemon()
    path = fake_uio(tmp_path, 2, f"tcm-user/1/bad/xcopy/disk;{tmp_path}/missing.img")
    assert d.add(str(path)) is None
    assert "bad" in caplog.text and "cannot serve" in caplog.text


def test_daemon_loop_serves_sim_ring_and_stops(tmp_path):
    img = tmp_path / "d.img"
    img.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    kernel = SimulatedKernel(cmdr_size=16384, data_pages=64)
    device = open_device("d0", f"disk;{img}", "abcd")
    state = tmp_path / "run" / "state.json"
    daemon = Daemon(state_path=state)
    daemon.attach("sim", TcmuDevice("d0", kernel.uio_fd, CommandRing(kernel.view), device))
    t = threading.Thread(target=daemon.run)
    t.start()
    try:
        read10 = bytes([0x28, 0, 0, 0, 0, 2, 0, 0, 4, 0])  # LBA 2, 4 blocks
        cid = kernel.submit(read10, data_in_len=2048)
        deadline = time.monotonic() + 5
        got = []
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
            got = kernel.reap()
        assert [(c.cmd_id, c.status) for c in got] == [(cid, GOOD)]
        assert got[0].data_in == img.read_bytes()[1024:3072]
        from lio_xcopy.tcmu import state as state_file

        written = state_file.read(state)  # what `lio-xcopy status` reads
        assert written is not None and written.luns == {"d0": "disk"} and not written.copies
    finally:
        daemon.stop()
        t.join(5)
    assert not t.is_alive() and not daemon.devices  # stop closes every device
    assert not state.exists()  # a stopped daemon leaves no state behind
    kernel.close()


def test_daemon_completes_long_commands_from_workers():
    from test_ring import SLOW, Worker

    kernel = SimulatedKernel(cmdr_size=16384, data_pages=64)
    device = Worker()
    daemon = Daemon()
    daemon.attach("sim", TcmuDevice("w", kernel.uio_fd, CommandRing(kernel.view), device))
    t = threading.Thread(target=daemon.run)
    t.start()
    try:
        cid = kernel.submit(SLOW(length=4).encode(), data_in_len=4)
        time.sleep(0.2)
        assert kernel.reap() == []  # still running
        device.release.set()
        deadline = time.monotonic() + 5
        got = []
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
            got = kernel.reap()
        assert [(c.cmd_id, c.status, c.data_in) for c in got] == [(cid, GOOD, b"done")]
    finally:
        daemon.stop()
        t.join(5)
    assert not t.is_alive()
    kernel.close()


def test_sd_notify_sends_one_datagram(tmp_path):
    import socket

    from lio_xcopy.tcmu.service import sd_notify

    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(path))
        assert sd_notify("READY=1", "STATUS=serving 2 LUN(s)", env={"NOTIFY_SOCKET": str(path)})
        assert s.recv(4096) == b"READY=1\nSTATUS=serving 2 LUN(s)"
    assert not sd_notify("READY=1", env={})  # not under systemd: nothing to do


def test_reload_rescan_drops_vanished_devices_and_keeps_the_rest(tmp_path):
    kernel = SimulatedKernel(cmdr_size=16384, data_pages=16)
    img = tmp_path / "d.img"
    img.write_bytes(bytes(1 << 20))
    daemon = Daemon()
    gone = str(tmp_path / "sys" / "uio7")
    daemon.attach(gone, TcmuDevice("d0", kernel.uio_fd, CommandRing(kernel.view),
                                   open_device("d0", f"disk;{img}", "ab")))
    (tmp_path / "class").mkdir()
    fake_uio(tmp_path / "class", 3, "uio_pdrv_genirq")  # present, not ours
    daemon.rescan(tmp_path / "class")
    assert gone not in daemon.devices and not daemon.devices
    kernel.close()


def test_abort_task_stops_a_running_copy(tmp_path):
    """TCMU tmr_notification: an ABORT TASK naming the EXTENDED COPY's cmd_id stops the
    copy at its next chunk; it completes (the kernel waits for that) as COPY ABORTED,
    having moved less than asked."""
    from lio_xcopy.copy.manager import CopyManager
    from lio_xcopy.scsi import xcopy
    from lio_xcopy.scsi.xcopy import BlockToBlock, IdentificationCscd

    size = 32 << 20
    src, dst = tmp_path / "src.img", tmp_path / "dst.img"
    src.write_bytes(os.urandom(1 << 20) * 32)
    dst.write_bytes(bytes(size))
    kernel = SimulatedKernel(cmdr_size=16384, data_pages=64)
    manager = CopyManager()
    daemon = Daemon(copy_manager=manager)
    a = open_device("a", f"disk;{src}", "aaaa")
    b = open_device("b", f"disk;{dst}", "bbbb")
    manager.register(b)
    daemon.attach("sim", TcmuDevice("a", kernel.uio_fd, CommandRing(kernel.view), a))
    naa = [next(d.value for d in dev.designators() if d.designator_type == 3) for dev in (a, b)]
    plist = xcopy.build_extended_copy(
        [IdentificationCscd(naa[0], 0, block_length=512),
         IdentificationCscd(naa[1], 0, block_length=512)],
        [BlockToBlock(0, 1, 0xFFFF, 0, 0)] * 256,  # 8 GiB: long enough to be aborted
        list_identifier=4, list_id_usage=xcopy.ListIdUsage.HOLD)
    t = threading.Thread(target=daemon.run)
    t.start()
    try:
        cid = kernel.submit(xcopy.EXTENDED_COPY_LID1(parameter_list_length=len(plist)).encode(),
                            data_out=plist)
        time.sleep(0.3)
        assert kernel.reap() == []  # still copying
        kernel.submit_tmr(1, (cid,))  # TCMU_TMR_ABORT_TASK
        deadline = time.monotonic() + 10
        got = []
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
            got = kernel.reap()
        assert [(c.cmd_id, c.status) for c in got] == [(cid, 2)]  # CHECK CONDITION
        sense = SenseData.parse(got[0].sense)
        assert sense.key == SenseKey.COPY_ABORTED
        job = manager.jobs()[0]
        assert not job.running and 0 < job.transferred < 256 * 0xFFFF * 512
    finally:
        daemon.stop()
        t.join(5)
        kernel.close()
