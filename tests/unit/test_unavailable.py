"""A LUN whose device cannot be opened is still served: INQUIRY answers with its type,
every other command gets NOT READY, MANUAL INTERVENTION REQUIRED at once (not the
kernel's command timeout), and a reload serves the device once it opens."""

from __future__ import annotations

import threading

import pytest
from plugins.tcmu_ring import SimulatedKernel

from lio_xcopy.devices.backing import BackingStore
from lio_xcopy.devices.disk import Disk
from lio_xcopy.devices.unavailable import Unavailable
from lio_xcopy.errors import BackingStoreError, ConfigError
from lio_xcopy.scsi import spc
from lio_xcopy.scsi.sense import CHECK_CONDITION, GOOD, Asc, SenseData, SenseKey
from lio_xcopy.tcmu import handler
from lio_xcopy.tcmu.daemon import Daemon, TcmuDevice, open_lun
from lio_xcopy.tcmu.fastio import direct_serve
from lio_xcopy.tcmu.ring import CommandRing
from lio_xcopy.tcmu.uio import UioName

MANUAL = (SenseKey.NOT_READY, Asc.LOGICAL_UNIT_NOT_READY_MANUAL_INTERVENTION_REQUIRED)
TUR = bytes(6)
READ_10 = bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0])
SYNCHRONIZE_CACHE_10 = bytes([0x35]) + bytes(9)
INQUIRY = bytes([0x12, 0, 0, 0, 96, 0])
INQUIRY_VPD_83 = bytes([0x12, 1, 0x83, 0, 255, 0])
REQUEST_SENSE = bytes([0x03, 0, 0, 0, 18, 0])


@pytest.mark.parametrize("cfg,device_type", [
    ("disk;{d}/gone.img", spc.TYPE_DISK),
    ("tape;{d}/nodir/t.aws;capacity=8M", spc.TYPE_TAPE),
    ("changer;{d}/nolibrary", spc.TYPE_MEDIUM_CHANGER),
    ("passthrough;naa.6001405aaaaaaaaaaaaaaaaaaaaaaaaa;type=1", spc.TYPE_TAPE),
    ("cdrom;/x", spc.TYPE_DISK),
])
def test_a_device_that_cannot_open_is_unavailable_with_its_type(tmp_path, caplog, cfg,
                                                                 device_type):
    tcmu = UioName(1, "lun0", "xcopy", cfg.format(d=tmp_path))
    opener = open_lun.__defaults__[0]  # the daemon's own: open_device

    def failing(name, cfg, serial):
        if cfg.startswith("passthrough"):  # resolving would look for a real device
            raise ConfigError(f"{name}: no device holds that designator")
        return opener(name, cfg, serial)

    device = open_lun(tcmu, failing)
    assert isinstance(device, Unavailable) and device.peripheral_device_type == device_type
    assert device.copy_manager is None
    assert "lun0: cannot serve its device, answering NOT READY" in caplog.text
    assert "systemctl reload lio-xcopy" in caplog.text


def test_private_tmp_is_named_when_the_daemon_runs_under_systemd(monkeypatch):
    monkeypatch.setenv("INVOCATION_ID", "0123")
    with pytest.raises(BackingStoreError) as caught:
        BackingStore("/tmp/lio-xcopy-no-such/x.img")
    error = caught.value
    device = handler.unavailable_device("d", "disk;/tmp/lio-xcopy-no-such/x.img", None, error)
    assert "PrivateTmp=yes" in device.reason and "/var/lib/lio-xcopy" in device.reason
    monkeypatch.delenv("INVOCATION_ID")
    device = handler.unavailable_device("d", "disk;/tmp/lio-xcopy-no-such/x.img", None, error)
    assert "PrivateTmp" not in device.reason


def test_its_ring_is_answered_and_a_reload_serves_it_once_it_opens(tmp_path):
    img = tmp_path / "db0.img"
    tcmu = UioName(1, "db0", "xcopy", f"disk;{img}")
    kernel = SimulatedKernel(cmdr_size=16384, data_pages=64)
    daemon = Daemon()
    dev = TcmuDevice("db0", kernel.uio_fd, CommandRing(kernel.view), open_lun(tcmu))
    daemon.names[id(dev.device)] = tcmu
    daemon.attach("sim", dev)
    t = threading.Thread(target=daemon.run)
    t.start()
    try:
        # INQUIRY answers (standard and VPD, with the serial it will have), with no 3PC
        kernel.submit(INQUIRY, data_in_len=96)
        kernel.submit(INQUIRY_VPD_83, data_in_len=255)
        got = kernel.answers()
        if len(got) < 2:
            got += kernel.answers()
        std, vpd = sorted(got, key=lambda c: c.cmd_id)
        assert (std.status, vpd.status) == (GOOD, GOOD)
        assert std.data_in[0] == spc.TYPE_DISK and not std.data_in[5] & 0x08
        assert vpd.data_in[1] == 0x83
        # everything else: NOT READY, MANUAL INTERVENTION REQUIRED, at once
        for cdb, n in ((TUR, 0), (READ_10, 4096), (SYNCHRONIZE_CACHE_10, 0)):
            kernel.submit(cdb, data_in_len=n)
            (got,) = kernel.answers()
            assert got.status == CHECK_CONDITION, cdb.hex()
            sense = SenseData.parse(got.sense)
            assert (sense.key, sense.asc) == MANUAL, cdb.hex()
        kernel.submit(REQUEST_SENSE, data_in_len=18)
        (got,) = kernel.answers()
        assert got.status == GOOD
        assert (SenseData.parse(got.data_in).key, SenseData.parse(got.data_in).asc) == MANUAL

        # the operator makes the file and reloads: the same ring now serves the disk
        img.write_bytes(bytes(range(256)) * 16)
        daemon.reload()
        deadline = threading.Event()
        for _ in range(100):
            if isinstance(dev.device, Disk):
                break
            deadline.wait(0.05)
        assert isinstance(dev.device, Disk) and dev.device.copy_manager is daemon.copy_manager
        reached: list[int] = []  # commands that reached the disk's Python
        handle = dev.device.handle
        dev.device.handle = lambda cmd: (reached.append(cmd.cdb[0]), handle(cmd))[1]
        kernel.submit(READ_10, data_in_len=4096)
        (got,) = kernel.answers()
        assert got.status == GOOD and got.data_in == img.read_bytes()
        # the compiled ring path, where the install has it, serves the disk that opened
        assert reached == ([] if direct_serve() is not None else [0x28])
    finally:
        daemon.stop()
        t.join(5)
    assert not t.is_alive()
    kernel.close()
