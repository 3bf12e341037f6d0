"""Discovery, handler configs and the daemon loop, over a fake sysfs and the simulated ring."""

from __future__ import annotations

import os
import threading
import time

import pytest
from plugins.copy_steps import ScriptedEnd, StepExecutor
from plugins.fake_uio import fake_uio
from plugins.tcmu_ring import SimulatedKernel, Slow, Worker

from lio_xcopy.devices.disk import Disk
from lio_xcopy.devices.tape import Tape
from lio_xcopy.errors import ConfigError
from lio_xcopy.handler_config import HandlerConfig, parse_size
from lio_xcopy.scsi import xcopy
from lio_xcopy.scsi.sense import GOOD, SenseData, SenseKey
from lio_xcopy.scsi.xcopy import BlockToBlock, IdentificationCscd
from lio_xcopy.tcmu import uio
from lio_xcopy.tcmu.daemon import Daemon, TcmuDevice
from lio_xcopy.tcmu.handler import open_device
from lio_xcopy.tcmu.ring import CommandRing


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


def test_unit_serial_from_configfs(configfs, monkeypatch):
    monkeypatch.setattr(uio, "CONFIGFS_CORE", configfs.core)
    configfs.storage_object("db0", serial="1c9e-77aa")
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


@pytest.mark.parametrize("argv, want", [
    ([], xcopy.DigestAlgorithm.XXH3_128),
    (["--copy-digest", "sha256"], xcopy.DigestAlgorithm.SHA256),
    (["--copy-digest=xxh3-128"], xcopy.DigestAlgorithm.XXH3_128),
])
def test_the_copy_digest_option_sets_the_copy_managers_algorithm(tmp_path, monkeypatch,
                                                                  argv, want):
    """``lio-xcopy daemon --copy-digest {xxh3-128,sha256}`` (default xxh3-128) is what
    RECEIVE COPY DIGEST reports of every copy."""
    from lio_xcopy.tcmu import daemon as daemon_mod

    made = []

    class Stopped(Daemon):
        def start_udev(self):  # the daemon as main() built it, before it serves anything
            made.append(self)
            raise OSError("not here")

    monkeypatch.setattr(daemon_mod, "Daemon", Stopped)
    monkeypatch.setattr(daemon_mod, "tune_malloc", lambda: None)
    monkeypatch.setattr(daemon_mod.signal, "signal", lambda *a: None)
    assert daemon_mod.main([*argv, "--state-file", str(tmp_path / "state.json")]) == 1
    assert made[0].copy_manager.digest_algorithm is want
    assert Daemon(copy_digest="sha256").copy_manager.digest_algorithm is \
        xcopy.DigestAlgorithm.SHA256


def test_an_unknown_copy_digest_is_a_usage_error(tmp_path, capsys):
    from lio_xcopy.tcmu import daemon as daemon_mod

    with pytest.raises(SystemExit) as e:
        daemon_mod.main(["--copy-digest", "md5", "--state-file", str(tmp_path / "s.json")])
    assert e.value.code == 2
    assert "invalid choice: 'md5' (choose from" in capsys.readouterr().err
    assert not (tmp_path / "s.json").exists()


def test_foreign_devices_are_admitted_only_with_their_copy_group(caplog):
    d = Daemon()
    naa = "naa.6001405f00d0000000000000000000aa"
    groups = {"offsite": ("db0", "t0", f"foreign:{naa}"), "other": ("db1", "t1")}
    d.copy_groups_loader = lambda: groups
    d.load_copy_groups()

    class Lun:
        def __init__(self, name):
            self.name = name

    assert d.admitted_foreign(Lun("t0")) == {naa}
    assert d.admitted_foreign(Lun("t1")) == frozenset()
    groups = {"offsite": ("t0", "foreign:/dev/sg3")}  # a node, not a designator
    d.load_copy_groups()
    assert d.admitted_foreign(Lun("t0")) == {naa}  # the previous groups stay
    assert "not reloaded" in caplog.text


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
        got = kernel.answers()
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
    kernel = SimulatedKernel(cmdr_size=16384, data_pages=64)
    device = Worker()
    daemon = Daemon()
    daemon.attach("sim", TcmuDevice("w", kernel.uio_fd, CommandRing(kernel.view), device))
    t = threading.Thread(target=daemon.run)
    t.start()
    try:
        cid = kernel.submit(Slow(length=4).encode(), data_in_len=4)
        assert device.started.wait(5)
        assert kernel.reap() == []  # still running
        device.release.set()
        got = kernel.answers()
        assert [(c.cmd_id, c.status, c.data_in) for c in got] == [(cid, GOOD, b"done")]
    finally:
        daemon.stop()
        t.join(5)
    assert not t.is_alive()
    kernel.close()


def test_a_command_its_worker_finished_before_the_ring_thread_started_is_answered():
    """A worker whose command ends before the ring's thread is there to be woken: the
    thread completes it as it starts (its eventfd did not exist yet)."""
    kernel = SimulatedKernel(cmdr_size=16384, data_pages=64)
    device = Worker()
    dev = TcmuDevice("w", kernel.uio_fd, CommandRing(kernel.view), device)
    daemon = Daemon()
    daemon.attach("sim", dev)
    cid = kernel.submit(Slow(length=4).encode(), data_in_len=4)
    dev.service()  # on the LUN's worker before any ring thread
    device.release.set()
    for t in list(device.threads):
        t.join(5)
    deadline = time.monotonic() + 5
    while dev._finished.empty() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not dev._finished.empty() and kernel.reap() == []
    t = threading.Thread(target=daemon.run)
    t.start()
    try:
        got = kernel.answers(timeout=5)
        assert [(c.cmd_id, c.status, c.data_in) for c in got] == [(cid, GOOD, b"done")]
    finally:
        daemon.stop()
        t.join(5)
    assert not t.is_alive()
    kernel.close()


def test_a_copy_queued_at_start_up_may_name_a_lun_opened_after_its_own(
        tmp_path, monkeypatch):
    """A daemon started after a crash: taking ``a``'s ring over makes the kernel send
    the EXTENDED COPY again at once, before ``b`` (the copy's other end) is opened. The
    rings are served only once every device there is has been opened, so the copy
    finds ``b`` and runs."""
    data = os.urandom(64 * 1024)
    (tmp_path / "a.img").write_bytes(data + bytes(64 * 1024))
    (tmp_path / "b.img").write_bytes(bytes(128 * 1024))
    ids = {"a": "aaaa", "b": "bbbb"}
    kernels: dict[str, SimulatedKernel] = {}
    submitted: list[int] = []
    naa = {n: next(d.value for d in open_device(n, f"disk;{tmp_path / n}.img", ids[n])
                   .designators() if d.designator_type == 3) for n in ids}
    plist = xcopy.build_extended_copy(
        [IdentificationCscd(naa["a"], 0, block_length=512),
         IdentificationCscd(naa["b"], 0, block_length=512)],
        [BlockToBlock(0, 1, number_of_blocks=128, source_lba=0, destination_lba=64)])

    def fake_open(cls, dev, opener=open_device, *, fresh=False):
        device = opener(dev.tcmu.name, dev.tcmu.cfg, ids[dev.tcmu.name])
        kernel = kernels[dev.tcmu.name] = SimulatedKernel(cmdr_size=16384, data_pages=16)
        if dev.tcmu.name == "a":  # the initiator's retry, queued as the ring is taken over
            submitted.append(kernel.submit(
                xcopy.ExtendedCopyLid1(parameter_list_length=len(plist)).encode(),
                data_out=plist))
        return cls(dev.tcmu.name, kernel.uio_fd, CommandRing(kernel.view), device)

    monkeypatch.setattr(TcmuDevice, "open", classmethod(fake_open))
    daemon = Daemon()
    daemon.copy_groups_loader = lambda: {"pair": ("a", "b")}
    daemon.load_copy_groups()
    for n, name in enumerate(ids):
        assert daemon.add(str(fake_uio(tmp_path, n, f"tcm-user/1/{name}/xcopy/"
                                                    f"disk;{tmp_path / name}.img")))
    loop = threading.Thread(target=daemon.run)
    loop.start()
    try:
        got = kernels["a"].answer(submitted[0], timeout=10)
        assert got.status == GOOD
        assert (tmp_path / "b.img").read_bytes()[32768:98304] == data
    finally:
        daemon.stop()
        loop.join(5)
        for kernel in kernels.values():
            kernel.close()
    assert not loop.is_alive()


def test_a_lun_busy_answering_holds_up_no_other_lun():
    """Each LUN's ring is serviced on a thread of its own: while one LUN's thread is
    inside a command (the compiled path reading slow storage, say), another LUN's
    commands are answered."""
    from plugins.tcmu_ring import Echo, Toy

    inside, release = threading.Event(), threading.Event()

    class Busy(Toy):
        def echo(self, cmd, cdb):
            inside.set()
            assert release.wait(5)
            return super().echo(cmd, cdb)

    kernels = [SimulatedKernel(cmdr_size=16384, data_pages=64) for _ in range(2)]
    daemon = Daemon()
    daemon.attach("busy", TcmuDevice("busy", kernels[0].uio_fd, CommandRing(kernels[0].view),
                                     Busy()))
    daemon.attach("free", TcmuDevice("free", kernels[1].uio_fd, CommandRing(kernels[1].view),
                                     Toy()))
    t = threading.Thread(target=daemon.run)
    t.start()
    try:
        held = kernels[0].submit(Echo(length=8).encode(), data_in_len=8)
        assert inside.wait(5)
        for _ in range(3):
            cid = kernels[1].submit(Echo(length=8).encode(), data_in_len=8)
            assert [(c.cmd_id, c.status) for c in kernels[1].answers()] == [(cid, GOOD)]
        assert kernels[0].reap() == []  # still inside its command
        release.set()
        assert [(c.cmd_id, c.status) for c in kernels[0].answers()] == [(held, GOOD)]
    finally:
        release.set()
        daemon.stop()
        t.join(5)
    assert not t.is_alive() and not daemon.devices
    for k in kernels:
        k.close()


@pytest.mark.parametrize("failure", ["ring", "bug"])
def test_a_ring_that_breaks_on_its_thread_is_dropped_and_the_others_go_on(caplog, failure):
    """A ring failure (or a bug) on a LUN's thread reaches the daemon's loop, which
    drops that LUN and logs why; the other LUN is still served."""
    from plugins.tcmu_ring import Echo, Toy

    from lio_xcopy.errors import TcmuError

    kernels = [SimulatedKernel(cmdr_size=16384, data_pages=64) for _ in range(2)]
    daemon = Daemon()
    bad = TcmuDevice("bad", kernels[0].uio_fd, CommandRing(kernels[0].view), Toy())
    good = TcmuDevice("good", kernels[1].uio_fd, CommandRing(kernels[1].view), Toy())

    def broken(**_):
        if failure == "bug":
            raise ValueError("entry 0: a bug")
        raise TcmuError("entry 0: opcode 7 is not a TCMU opcode")

    bad.service = broken
    daemon.attach("bad", bad)
    daemon.attach("good", good)
    t = threading.Thread(target=daemon.run)
    t.start()
    try:
        deadline = time.monotonic() + 5
        while "bad" in daemon.devices and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "bad" not in daemon.devices
        assert "bad: ring failure, device dropped" in caplog.text
        assert "entry 0: " in caplog.text
        assert ("Traceback" in caplog.text) == (failure == "bug")
        cid = kernels[1].submit(Echo(length=8).encode(), data_in_len=8)
        assert [(c.cmd_id, c.status) for c in kernels[1].answers()] == [(cid, GOOD)]
    finally:
        daemon.stop()
        t.join(5)
    assert not t.is_alive()
    for k in kernels:
        k.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_lun_runs_as_many_long_commands_at_once_as_it_has_workers(workers):
    """A disk's READs and WRITEs may run in any order (SIMPLE tasks): with IO_WORKERS 2
    two large ones run at once on the LUN's I/O workers; with 1 (a tape) they run one
    after another."""
    from plugins.tcmu_ring import Echo, Toy

    both = threading.Barrier(2, timeout=1.0)
    met: list[bool] = []

    class Parallel(Toy):
        IO_WORKERS = workers

        def runs_long(self, cmd):
            return True

        def unordered(self, cdb):
            return True

        def echo(self, cmd, cdb):
            try:
                both.wait()
                met.append(True)
            except threading.BrokenBarrierError:
                met.append(False)
            return super().echo(cmd, cdb)

    kernel = SimulatedKernel(cmdr_size=16384, data_pages=64)
    daemon = Daemon()
    daemon.attach("sim", TcmuDevice("p", kernel.uio_fd, CommandRing(kernel.view), Parallel()))
    t = threading.Thread(target=daemon.run)
    t.start()
    try:
        kernel.submit(Echo(length=8).encode(), data_in_len=8)
        kernel.submit(Echo(length=8).encode(), data_in_len=8)
        got = kernel.answers()
        if len(got) < 2:
            got += kernel.answers()
        assert [c.status for c in got] == [GOOD, GOOD]
    finally:
        daemon.stop()
        t.join(5)
    assert met == ([True, True] if workers == 2 else [False, False])
    kernel.close()


def test_commands_completed_by_workers_do_not_rewrite_the_state_file(tmp_path, monkeypatch):
    """The state file lists LUNs and copies: a worker's completion (every large READ or
    WRITE) changes neither, so the file is written once, not once per command."""
    from lio_xcopy.tcmu import state as state_file

    writes = []
    real = state_file.write
    monkeypatch.setattr(state_file, "write", lambda *a: (writes.append(a), real(*a)))
    kernel = SimulatedKernel(cmdr_size=16384, data_pages=64)
    device = Worker()
    device.release.set()
    daemon = Daemon(state_path=tmp_path / "state.json")
    daemon.attach("sim", TcmuDevice("w", kernel.uio_fd, CommandRing(kernel.view), device))
    t = threading.Thread(target=daemon.run)
    t.start()
    try:
        for _ in range(5):
            cid = kernel.submit(Slow(length=4).encode(), data_in_len=4)
            assert [(c.cmd_id, c.status) for c in kernel.answers()] == [(cid, GOOD)]
    finally:
        daemon.stop()
        t.join(5)
    assert not t.is_alive()
    assert len(writes) == 1, f"{len(writes)} state file writes for 5 commands"
    kernel.close()


def test_sd_notify_never_waits_on_a_receiver_that_does_not_read(tmp_path):
    """A NOTIFY_SOCKET whose reader stopped reading: its queue fills, and sd_notify
    drops the message instead of blocking the daemon's loop (every LUN would stall)."""
    import socket
    import threading

    from lio_xcopy.tcmu.service import sd_notify

    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind(str(path))
        env = {"NOTIFY_SOCKET": str(path)}
        sent: list[bool] = []
        t = threading.Thread(target=lambda: sent.extend(
            sd_notify("STATUS=" + "x" * 1024, env=env) for _ in range(5000)), daemon=True)
        t.start()
        t.join(10)
        assert not t.is_alive(), "sd_notify blocked on a full receiver"
        assert sent[0] and not all(sent)  # the first went; once full, messages are dropped


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


def test_the_daemon_runs_copies_and_background_writes_on_its_executor(steps):
    """The daemon's own executor (a daemon thread per copy by default) is the one its
    copy manager and ROD token store submit to; a caller's replaces it."""
    from lio_xcopy.copy.executor import DaemonThreads

    default = Daemon()
    assert isinstance(default.copy_executor, DaemonThreads)
    assert default.copy_manager.executor is default.copy_executor
    assert default.copy_manager.rod.executor is default.copy_executor
    given = Daemon(copy_executor=steps)
    assert given.copy_manager.executor is steps and given.copy_manager.rod.executor is steps


class CopyRig:
    """LUN ``a`` served by a daemon over a simulated ring and disk ``b`` beside it, in
    one copy group; the daemon's copies run when the test says (``steps``), and ``src``
    is ``a`` as a copy end whose calls the test scripts."""

    def __init__(self, tmp_path, steps: StepExecutor, src: bytes, dst_size: int):
        self.src_path, self.dst_path = tmp_path / "src.img", tmp_path / "dst.img"
        self.src_path.write_bytes(src)
        self.dst_path.write_bytes(bytes(dst_size))
        self.kernel = SimulatedKernel(cmdr_size=16384, data_pages=64)
        self.steps = steps
        self.daemon = Daemon(copy_executor=steps)
        self.daemon.copy_groups_loader = lambda: {"pair": ("a", "b")}
        self.daemon.load_copy_groups()
        self.manager = self.daemon.copy_manager
        a = open_device("a", f"disk;{self.src_path}", "aaaa")
        b = open_device("b", f"disk;{self.dst_path}", "bbbb")
        self.manager.register(b)
        self.lun = TcmuDevice("a", self.kernel.uio_fd, CommandRing(self.kernel.view), a)
        self.daemon.attach("sim", self.lun)
        self.src = ScriptedEnd(a)
        self.manager.register(self.src)  # the copy end in a's place
        self.naa = [next(d.value for d in dev.designators() if d.designator_type == 3)
                    for dev in (a, b)]
        self.loop: threading.Thread | None = None

    def plist(self, segments: list[BlockToBlock], list_id: int) -> bytes:
        return xcopy.build_extended_copy(
            [IdentificationCscd(self.naa[0], 0, block_length=512),
             IdentificationCscd(self.naa[1], 0, block_length=512)],
            segments, list_identifier=list_id, list_id_usage=xcopy.ListIdUsage.HOLD)

    def extended_copy(self, plist: bytes) -> int:
        return self.kernel.submit(
            xcopy.ExtendedCopyLid1(parameter_list_length=len(plist)).encode(), data_out=plist)

    def copy_status(self, list_id: int) -> xcopy.CopyStatus:
        """RECEIVE COPY RESULTS, COPY STATUS, through the ring."""
        rcr = xcopy.ReceiveCopyResultsCopyStatus(list_identifier=list_id, allocation_length=12)
        got = self.kernel.answer(self.kernel.submit(rcr.encode(), data_in_len=12))
        assert got.status == GOOD
        return xcopy.CopyStatus.parse(got.data_in)

    def serve(self) -> None:
        """Run the daemon's loop on a thread of its own."""
        self.loop = threading.Thread(target=self.daemon.run)
        self.loop.start()

    def close(self) -> None:
        self.daemon.stop()
        if self.loop is not None:
            self.loop.join(5)
        for key in list(self.daemon.devices):
            self.daemon.remove(key)
        self.kernel.close()


@pytest.fixture
def copy_rig(tmp_path, steps):
    rigs: list[CopyRig] = []

    def make(src: bytes, dst_size: int) -> CopyRig:
        rigs.append(CopyRig(tmp_path, steps, src, dst_size))
        return rigs[-1]

    yield make
    for rig in rigs:
        rig.close()


def test_abort_task_stops_a_running_copy(copy_rig):
    """TCMU tmr_notification: an ABORT TASK naming the EXTENDED COPY's cmd_id stops the
    copy at its next chunk; it completes (the kernel waits for that) as COPY ABORTED,
    having moved less than asked. The copy's work starts only when the test lets it:
    RECEIVE COPY RESULTS says it is in progress, then one chunk moves, then the abort
    comes, then the rest."""
    rig = copy_rig(os.urandom(1 << 20) * 32, 32 << 20)
    plist = rig.plist([BlockToBlock(0, 1, 0xFFFF, 0, 0)] * 256, 4)  # 8 GiB
    rig.serve()
    cid = rig.extended_copy(plist)
    st = rig.copy_status(4)  # planned, its work not started
    assert (st.status, st.segments_processed, st.transferred_bytes) == (
        xcopy.CopyCommandStatus.IN_PROGRESS, 0, 0)
    assert rig.kernel.reap() == []  # the EXTENDED COPY is still copying
    job = rig.manager.jobs()[0]

    def abort_task() -> None:  # the first chunk has reached the disk
        rig.kernel.submit_tmr(1, (cid,))  # TCMU_TMR_ABORT_TASK
        assert job.cancel.wait(10)  # the daemon's loop took the notice

    rig.src.at("read_blocks", 2, abort_task)
    rig.steps.run_next()
    got = rig.kernel.answer(cid)
    assert got.status == 2  # CHECK CONDITION
    sense = SenseData.parse(got.sense)
    assert (sense.key, sense.command_specific) == (SenseKey.COPY_ABORTED, 0)
    assert not job.running and job.transferred == 1 << 20  # one chunk
    assert rig.copy_status(4).transferred_bytes == 1 << 20
    assert rig.dst_path.read_bytes()[1 << 20 : 2 << 20] == bytes(1 << 20)


def test_abort_task_while_the_copy_is_being_planned_stops_it_when_it_starts(copy_rig):
    """EXTENDED COPY is planned on the LUN's worker (resolving its CSCDs may take
    SG_IO round trips): an ABORT TASK that arrives meanwhile still stops the copy, as
    soon as the worker hands it over; nothing is copied. The test is the daemon's loop
    here: it services the ring and completes what the worker finished."""
    rig = copy_rig(os.urandom(1 << 20), 1 << 20)
    planning, release, finished = threading.Event(), threading.Event(), threading.Event()
    rig.lun.notify = finished.set  # the worker is done with a command
    cid = rig.extended_copy(rig.plist([BlockToBlock(0, 1, 2048, 0, 0)], 5))

    def held() -> None:  # on the worker, while it resolves the source CSCD
        planning.set()
        assert release.wait(10)

    rig.src.at("copy_end", 1, held)
    rig.lun.service()  # the EXTENDED COPY goes to the worker
    assert planning.wait(10)
    rig.kernel.submit_tmr(1, (cid,))  # TCMU_TMR_ABORT_TASK
    rig.lun.service()
    assert cid in rig.lun._aborted  # too late to cancel, too early to stop the copy
    release.set()
    assert finished.wait(10)
    rig.lun.complete_finished()  # the copy is handed over, and stopped at once
    job = rig.manager.jobs()[0]
    assert job.cancel.is_set() and rig.kernel.reap() == []
    rig.steps.run_next()
    rig.lun.complete_finished()
    (got,) = rig.kernel.reap()
    assert (got.cmd_id, got.status) == (cid, 2)
    assert SenseData.parse(got.sense).key == SenseKey.COPY_ABORTED
    assert job.transferred == 0 and rig.dst_path.read_bytes() == bytes(1 << 20)
    assert rig.src.calls["read_blocks"] == 0 and rig.lun._aborted == set()


# --- devices not ready at their add event, and the rescan that finds missed ones --------
class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Monitor:
    """pyudev's Monitor as ``Daemon._udev_event`` polls it: queued events, then None."""

    def __init__(self) -> None:
        self.events: list[object] = []

    def event(self, action: str, sys_path) -> None:
        from types import SimpleNamespace

        self.events.append(SimpleNamespace(action=action, sys_path=str(sys_path)))

    def poll(self, timeout: float = 0):
        return self.events.pop(0) if self.events else None


@pytest.fixture
def sim_rings(monkeypatch):
    """``TcmuDevice.open`` over a simulated ring instead of /dev/uioN; how many it opened,
    with the ring of each."""
    kernels: list[SimulatedKernel] = []

    def fake_open(cls, dev, opener=open_device, *, fresh=False):
        device = opener(dev.tcmu.name, dev.tcmu.cfg, uio.read_unit_serial(dev.tcmu))
        kernel = SimulatedKernel(cmdr_size=16384, data_pages=16)
        kernel.fresh = fresh  # what TcmuDevice.take_over was told of the ring
        kernels.append(kernel)
        return cls(dev.tcmu.name, kernel.uio_fd, CommandRing(kernel.view), device)

    monkeypatch.setattr(TcmuDevice, "open", classmethod(fake_open))
    yield kernels
    for kernel in kernels:
        kernel.close()


@pytest.fixture
def img(tmp_path):
    path = tmp_path / "d.img"
    path.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    return path


def _answers_read(daemon: Daemon, key: str, kernel: SimulatedKernel, img) -> bool:
    cid = kernel.submit(bytes([0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0]), data_in_len=512)
    daemon.devices[key].service()
    got = kernel.reap()
    return [(c.cmd_id, c.status, c.data_in) for c in got] == [
        (cid, GOOD, img.read_bytes()[512:1024])]


def _close_all(daemon: Daemon) -> None:
    for key in list(daemon.devices):
        daemon.remove(key)


def test_a_device_whose_map_appears_after_the_add_event_is_served_on_retry(
        tmp_path, img, sim_rings, caplog):
    """``device_add`` sends the uevent before ``uio_dev_add_attributes`` makes maps/."""
    caplog.set_level("INFO")
    clock = Clock()
    path = fake_uio(tmp_path, 2, f"tcm-user/1/late0/xcopy/disk;{img}")
    size = path / "maps" / "map0" / "size"
    size.unlink()
    daemon = Daemon(clock=clock)
    assert daemon.add(str(path)) is None and not sim_rings
    assert daemon.timeout() == pytest.approx(0.05)  # the loop wakes for the retry
    assert daemon.timeout(0.01) == pytest.approx(0.01)
    clock.now += 0.04
    daemon.run_due()  # not due yet: not tried
    assert str(path) not in daemon.devices
    size.write_text("0x40800000\n")
    clock.now += 0.01
    daemon.run_due()
    assert str(path) in daemon.devices and len(sim_rings) == 1
    assert _answers_read(daemon, str(path), sim_rings[0], img)
    assert "serving late0" in caplog.text
    assert "late0: ready after 2 attempt(s) in 0.05 s" in caplog.text
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert daemon.timeout() == pytest.approx(30 - 0.05)  # only the rescan is left
    _close_all(daemon)


def test_a_device_never_ready_is_given_up_with_what_to_do(tmp_path, img, sim_rings, caplog):
    clock = Clock()
    (tmp_path / "class").mkdir()
    path = tmp_path / "class" / "uio3"
    path.mkdir()
    (path / "name").write_text(f"tcm-user/1/never0/xcopy/disk;{img}\n")
    daemon = Daemon(clock=clock)
    daemon.uio_class = tmp_path / "class"
    daemon.add(str(path))
    waits = []
    while str(path) in daemon._retries:
        wait = daemon.timeout()
        waits.append(round(wait, 3))
        clock.now += wait
        daemon.run_due()
    assert waits[:7] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0] and max(waits) == 2.0
    assert 30 <= sum(waits) <= 32
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert f"{path}: still not ready after" in errors[0]
    assert "No such file or directory" in errors[0] and "maps" in errors[0]
    assert "systemctl reload lio-xcopy" in errors[0]
    assert not sim_rings and not daemon.devices
    # a rescan follows soon (others may have been missed too) but leaves this one be
    assert daemon.timeout() <= 1.0
    caplog.clear()
    clock.now += daemon.timeout()
    daemon.run_due()
    assert not caplog.records and daemon.timeout() == pytest.approx(30)
    # once its map exists, a reload (SIGHUP) serves it
    (path / "maps" / "map0").mkdir(parents=True)
    (path / "maps" / "map0" / "size").write_text("0x40800000\n")
    daemon.rescan()
    assert str(path) in daemon.devices
    _close_all(daemon)


def test_a_device_is_served_once_its_unit_serial_is_set(tmp_path, img, sim_rings,
                                                        monkeypatch, caplog):
    """rtslib enables the storage object (the uio device appears) before it writes
    ``wwn/vpd_unit_serial``; INQUIRY must answer with that serial."""
    monkeypatch.setattr(uio, "CONFIGFS_CORE", tmp_path / "core")
    clock = Clock()
    daemon = Daemon(clock=clock)
    serials = {}
    for n, name in enumerate(["late1", "never1"]):
        wwn = tmp_path / "core" / "user_1" / name / "wwn"
        wwn.mkdir(parents=True)
        serials[name] = wwn / "vpd_unit_serial"
        serials[name].write_text("T10 VPD Unit Serial Number: \n")  # as before it is set
        daemon.add(str(fake_uio(tmp_path, n, f"tcm-user/1/{name}/xcopy/disk;{img}")))
    assert not daemon.devices and not sim_rings
    clock.now += daemon.timeout()
    daemon.run_due()
    serials["late1"].write_text("T10 VPD Unit Serial Number: 5e7a-0001\n")
    clock.now += daemon.timeout()
    daemon.run_due()
    assert [d.device.identity.unit_serial for d in daemon.devices.values()] == ["5e7a-0001"]
    while len(daemon.devices) < 2:  # never set: served after SERIAL_WAIT all the same
        assert clock.now < 1010, "never served"
        clock.now += daemon.timeout()
        daemon.run_due()
    assert "never1: no wwn/vpd_unit_serial in configfs after 5." in caplog.text
    _close_all(daemon)


def test_a_device_removed_before_it_was_ready_is_no_longer_tried(tmp_path, img, sim_rings):
    clock = Clock()
    path = fake_uio(tmp_path, 4, f"tcm-user/1/gone0/xcopy/disk;{img}")
    (path / "maps" / "map0" / "size").write_text("")  # not filled in yet
    daemon = Daemon(clock=clock)
    daemon._monitor = monitor = Monitor()
    monitor.event("add", path)
    daemon._udev_event()
    assert daemon.timeout() == pytest.approx(0.05)
    monitor.event("remove", path)
    daemon._udev_event()
    assert daemon.timeout() == pytest.approx(30)  # nothing left to retry
    (path / "maps" / "map0" / "size").write_text("0x40800000\n")
    clock.now += 5
    daemon.run_due()
    assert not sim_rings and not daemon.devices


def test_only_a_device_made_while_the_daemon_runs_keeps_its_queued_commands(
        tmp_path, img, sim_rings):
    """tcmu-runner's rule: a device its netlink "added" event announces is served from
    its ring as it is; one found at start, or read before, has its ring reset."""
    daemon = Daemon(clock=Clock())
    daemon._monitor = monitor = Monitor()
    old = fake_uio(tmp_path, 1, f"tcm-user/1/old0/xcopy/disk;{img}")
    daemon.add_present([str(old)])
    new = fake_uio(tmp_path, 2, f"tcm-user/1/new0/xcopy/disk;{img}")
    monitor.event("add", new)
    daemon._udev_event()
    assert [k.fresh for k in sim_rings] == [False, True]
    # a replayed "add" (udevadm trigger) of a device there at start, or of one this
    # daemon has read: never fresh
    for path in (old, new):
        daemon.remove(str(path))
        monitor.event("add", path)
        daemon._udev_event()
    assert [k.fresh for k in sim_rings] == [False, True, False, False]
    # a LUN deleted and another made on its uio node
    monitor.event("remove", new)
    daemon._udev_event()
    monitor.event("add", new)
    daemon._udev_event()
    assert [k.fresh for k in sim_rings] == [False, True, False, False, True]
    _close_all(daemon)


def test_a_device_gone_while_retried_is_dropped(tmp_path, img, sim_rings, caplog):
    import shutil

    clock = Clock()
    path = fake_uio(tmp_path, 4, f"tcm-user/1/gone1/xcopy/disk;{img}")
    (path / "maps" / "map0" / "size").unlink()
    daemon = Daemon(clock=clock)
    daemon.add(str(path))
    shutil.rmtree(path)  # its remove event never came
    clock.now += 0.05
    daemon.run_due()
    assert not daemon._retries and not daemon.devices
    assert "it is gone" in caplog.text


def test_a_busy_uio_node_is_tried_again(tmp_path, img, sim_rings, monkeypatch, caplog):
    """tcmu_open answers EBUSY while another process still has the device open."""
    caplog.set_level("INFO")
    clock = Clock()
    path = fake_uio(tmp_path, 5, f"tcm-user/1/busy0/xcopy/disk;{img}")
    real_open = TcmuDevice.open
    tries = []

    def open_once_busy(uio_dev, opener=open_device, *, fresh=False):
        tries.append(uio_dev.tcmu.name)
        if len(tries) == 1:
            raise OSError(16, "Device or resource busy")
        return real_open(uio_dev, opener, fresh=fresh)

    monkeypatch.setattr(TcmuDevice, "open", open_once_busy)
    daemon = Daemon(clock=clock)
    assert daemon.add(str(path)) is None
    clock.now += daemon.timeout()
    daemon.run_due()
    assert str(path) in daemon.devices and tries == ["busy0", "busy0"]
    assert "busy0: ready after 2 attempt(s)" in caplog.text
    _close_all(daemon)


def test_malformed_devices_are_not_retried(tmp_path, img, sim_rings):
    clock = Clock()
    daemon = Daemon(clock=clock)
    bad_size = fake_uio(tmp_path, 6, f"tcm-user/1/b0/xcopy/disk;{img}")
    (bad_size / "maps" / "map0" / "size").write_text("zero\n")
    daemon.add(str(bad_size))
    daemon.add(str(fake_uio(tmp_path, 7, f"tcm-user/1/b1/xcopy/disk;{img};block_size=abc")))
    daemon.add(str(fake_uio(tmp_path, 8, "tcm-user/1/q0/qcow//srv/q0.raw")))
    daemon.add(str(fake_uio(tmp_path, 9, "uio_hv_generic")))
    assert not daemon._retries and not sim_rings and not daemon.devices


def test_the_periodic_rescan_serves_a_missed_device_and_is_quiet_about_others(
        tmp_path, img, sim_rings, caplog):
    caplog.set_level("DEBUG")
    clock = Clock()
    cls = tmp_path / "class"
    cls.mkdir()
    daemon = Daemon(clock=clock)
    daemon.uio_class = cls
    served = fake_uio(cls, 0, f"tcm-user/1/seen0/xcopy/disk;{img}")
    daemon.add(str(served))  # its event came
    missed = fake_uio(cls, 1, f"tcm-user/1/missed0/xcopy/disk;{img}")  # its event did not
    fake_uio(cls, 2, "tcm-user/1/q0/qcow//srv/q0.raw")
    fake_uio(cls, 3, "uio_pci_generic")
    clock.now += 29.9
    daemon.run_due()
    assert list(daemon.devices) == [str(served)]
    clock.now += daemon.timeout()
    caplog.clear()
    daemon.run_due()
    assert sorted(daemon.devices) == [str(served), str(missed)]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "missed0" in warnings[0] and str(missed) in warnings[0]
    assert _answers_read(daemon, str(missed), sim_rings[-1], img)
    assert caplog.text.count("not ours") == 2  # the foreign two, at debug
    assert {r.levelname for r in caplog.records if "not ours" in r.getMessage()} == {"DEBUG"}
    caplog.clear()
    clock.now += 30
    daemon.run_due()  # nothing new: nothing said
    assert not [r for r in caplog.records if r.levelno >= 10] and len(daemon.devices) == 2
    _close_all(daemon)


def test_the_loop_wakes_for_a_retry_without_any_event(tmp_path, img, sim_rings):
    path = fake_uio(tmp_path, 2, f"tcm-user/1/loop0/xcopy/disk;{img}")
    size = path / "maps" / "map0" / "size"
    size.unlink()
    daemon = Daemon()
    daemon.add(str(path))
    t = threading.Thread(target=daemon.run)
    t.start()
    try:
        time.sleep(0.1)
        size.write_text("0x40800000\n")
        deadline = time.monotonic() + 5
        while str(path) not in daemon.devices:
            assert time.monotonic() < deadline, "not served"
            time.sleep(0.01)
    finally:
        daemon.stop()
        t.join(5)
    assert not t.is_alive()


def test_lost_udev_events_bring_the_rescan_forward(tmp_path, caplog):
    import errno

    from lio_xcopy.tcmu import daemon as daemon_module

    class Overflowing:
        def poll(self, timeout=None):
            raise OSError(errno.ENOBUFS, "No buffer space available")

    now = [100.0]
    d = Daemon(clock=lambda: now[0])
    d._monitor = Overflowing()
    d._next_rescan = now[0] + daemon_module.RESCAN_EVERY
    d._udev_event()  # no exception out of the loop
    assert d.timeout() <= daemon_module.RESCAN_SOON
    assert "udev events lost" in caplog.text


def test_the_allocator_keeps_large_buffers_returnable():
    """In a process of its own (mallopt changes the whole process): glibc accepts the
    fixed mmap threshold and the arena bound."""
    import subprocess
    import sys

    code = ("from lio_xcopy.tcmu.memory import tune_malloc; "
            "import sys; sys.exit(0 if tune_malloc() else 1)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# --- a LUN deleted, and a uio device that fails --------------------------------------------
def _eio(dev: TcmuDevice) -> int:
    import errno

    raise OSError(errno.EIO, os.strerror(errno.EIO))


def _loud(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")]


@pytest.mark.parametrize("eio_first", [True, False])
def test_a_deleted_lun_is_reported_removed_once_and_quietly(
        tmp_path, img, sim_rings, caplog, eio_first):
    """``uio_unregister_device`` removes maps/, fails the fd with EIO, then removes the
    device and sends "remove": in whichever order the daemon sees the EIO and the event."""
    import shutil

    caplog.set_level("DEBUG")
    path = fake_uio(tmp_path, 5, f"tcm-user/1/del0/xcopy/disk;{img}")
    daemon = Daemon(clock=Clock())
    daemon._monitor = monitor = Monitor()
    assert daemon.add(str(path)) is not None
    shutil.rmtree(path / "maps")
    if eio_first:
        daemon._on_ring(str(path), _eio)
    shutil.rmtree(path)
    monitor.event("remove", path)
    daemon._udev_event()
    assert not daemon.devices
    removed = [r for r in caplog.records if r.getMessage() == "LUN del0 removed"]
    assert len(removed) == 1 and removed[0].levelname == "INFO"
    assert not _loud(caplog) and "uio device gone" not in caplog.text


def test_a_deleted_storage_object_is_a_removal_even_before_sysfs_changes(
        tmp_path, configfs, img, sim_rings, caplog, monkeypatch):
    caplog.set_level("INFO")
    so = configfs.storage_object("del1", serial="abcd")
    monkeypatch.setattr(uio, "CONFIGFS_CORE", configfs.core)
    path = fake_uio(tmp_path, 6, f"tcm-user/1/del1/xcopy/disk;{img}")
    daemon = Daemon(clock=Clock())
    assert daemon.add(str(path)) is not None
    configfs.remove(so)
    daemon._on_ring(str(path), _eio)
    assert not daemon.devices and "LUN del1 removed" in caplog.text and not _loud(caplog)


def test_an_io_failure_on_a_lun_that_still_exists_is_a_warning(tmp_path, img, sim_rings,
                                                                caplog):
    caplog.set_level("INFO")
    path = fake_uio(tmp_path, 7, f"tcm-user/1/bad0/xcopy/disk;{img}")
    daemon = Daemon(clock=Clock())
    assert daemon.add(str(path)) is not None
    daemon._on_ring(str(path), _eio)
    assert not daemon.devices
    [warning] = _loud(caplog)
    assert warning.startswith("bad0: its uio device failed (Input/output error)")
    assert "LUN bad0 removed" not in caplog.text


# --- what -v adds ---------------------------------------------------------------------------
def _sim_lun(tmp_path, name="d0"):
    img = tmp_path / f"{name}.img"
    img.write_bytes(bytes(1 << 20))
    kernel = SimulatedKernel(cmdr_size=16384, data_pages=16)
    dev = TcmuDevice(name, kernel.uio_fd, CommandRing(kernel.view),
                     open_device(name, f"disk;{img}", "ab"))
    return kernel, dev


@pytest.mark.parametrize("direct", [True, False], ids=["compiled", "python"])
def test_each_command_is_one_debug_line_with_its_outcome_and_duration(tmp_path, caplog,
                                                                      direct):
    """A command the Python path answers is one line; the compiled ring path, which
    serves plain READs and WRITEs at every log level, says how many it answered."""
    from lio_xcopy.tcmu import fastio

    caplog.set_level("DEBUG", logger="lio_xcopy.tcmu.daemon")
    kernel, dev = _sim_lun(tmp_path)
    if direct and fastio.direct_serve() is None:
        pytest.skip("the compiled ring path is not built (or LIO_XCOPY_FASTIO=0)")
    if not direct:
        dev._direct = dev._waiting = None
    good = kernel.submit(bytes([0x28, 0, 0, 0, 0, 1, 0, 0, 2, 0]), data_in_len=1024)
    bad = kernel.submit(bytes([0xC7, 0, 0, 0, 0, 0]), data_in_len=0)
    assert dev.service() == 2
    lines = [r.getMessage() for r in caplog.records if r.levelname == "DEBUG"]
    import re

    assert len(lines) == 2, lines
    if direct:
        assert lines[0] == "d0: 1 command(s) answered GOOD by the compiled ring path"
    else:
        assert re.fullmatch(rf"d0: cmd {good} READ \(10\), 1024 byte\(s\) buffer, 1024 in: "
                            r"GOOD in \d+\.\d\d ms", lines[0]), lines[0]
    assert re.fullmatch(rf"d0: cmd {bad} opcode C7h, 0 byte\(s\) buffer, 0 in: CHECK "
                        r"CONDITION ILLEGAL_REQUEST 20h/00h in \d+\.\d\d ms", lines[1]), lines[1]
    assert not dev._started
    dev.close()
    kernel.close()


def test_without_debug_commands_log_nothing_and_keep_no_timing(tmp_path, caplog):
    caplog.set_level("INFO", logger="lio_xcopy.tcmu.daemon")
    kernel, dev = _sim_lun(tmp_path)
    kernel.submit(bytes([0x28, 0, 0, 0, 0, 1, 0, 0, 2, 0]), data_in_len=1024)
    assert dev.service() == 1
    assert not caplog.records and not dev._started
    dev.close()
    kernel.close()


def test_policy_decisions_say_why_at_debug(caplog, monkeypatch):
    from types import SimpleNamespace

    from lio_xcopy.tcmu import daemon as daemon_mod
    from lio_xcopy.tcmu.uio import UioName

    caplog.set_level("DEBUG", logger="lio_xcopy.tcmu.daemon")
    d = Daemon()
    d.copy_groups_loader = lambda: {"offsite": ("db0", "lib0"),
                                    "far": ("db0", "foreign:naa.6001405f00d0000000000000000000aa")}
    d.load_copy_groups()
    luns = {n: SimpleNamespace(name=n, identity=SimpleNamespace(name=n))
            for n in ("db0", "lib0", "db1", "db2")}
    for n, lun in luns.items():
        d.names[id(lun)] = UioName(1, n, "xcopy", "")
    seen = {"db1": frozenset({"loopback:naa.1"}), "db2": frozenset({"loopback:naa.2"})}
    monkeypatch.setattr(daemon_mod, "exposure", lambda hba, name: seen.get(name, frozenset()))

    def said() -> str:
        text = caplog.records[-1].getMessage()
        assert caplog.records[-1].levelname == "DEBUG"
        return text

    assert d.same_initiators(luns["db0"], luns["lib0"])
    assert said() == ("copy access policy: db0 and lib0 may copy together: both in copy "
                      "group 'offsite'")
    assert not d.same_initiators(luns["db1"], luns["db2"])
    assert said() == ("copy access policy keeps db1 and db2 apart: db1 is exported to "
                      "['loopback:naa.1'], db2 to ['loopback:naa.2']; export them to the same "
                      "initiators or put both in one copy group")
    seen["db2"] = seen["db1"]
    assert d.same_initiators(luns["db1"], luns["db2"])
    assert said() == ("copy access policy: db1 and db2 may copy together: both exported to "
                      "exactly ['loopback:naa.1']")
    assert d.admitted_foreign(luns["db0"])
    assert said() == ("foreign admission: copies received by db0 may name "
                      "['naa.6001405f00d0000000000000000000aa'] (copy group(s) ['far', "
                      "'offsite'])")
    assert not d.admitted_foreign(luns["db1"])
    assert "may name no foreign device" in said()


def test_the_state_file_lists_a_copy_as_it_starts_and_as_it_ends(copy_rig, tmp_path):
    """The daemon's loop hears from the LUN's ring thread when an EXTENDED COPY starts
    and when it completes, and rewrites the state file (`lio-xcopy status`) at once."""
    from lio_xcopy.tcmu import state as state_file

    rig = copy_rig(os.urandom(1 << 20), 1 << 20)
    rig.daemon.state_path = tmp_path / "state.json"
    rig.serve()

    def listed(running: bool) -> bool:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            st = state_file.read(rig.daemon.state_path)
            if st is not None and [(c.list_id, c.status == "running") for c in st.copies] \
                    == [(6, running)]:
                return True
            time.sleep(0.01)
        return False

    cid = rig.extended_copy(rig.plist([BlockToBlock(0, 1, 2048, 0, 0)], 6))
    assert listed(running=True)  # planned; its work waits for the test
    rig.steps.run_next()
    assert rig.kernel.answer(cid).status == GOOD
    assert listed(running=False)


def test_a_stop_answers_every_running_copy_before_the_daemon_exits(copy_rig):
    """SIGTERM during an EXTENDED COPY: the copy ends at its next chunk in COPY ABORTED,
    COMMANDS CLEARED BY DEVICE SERVER, naming its segment, and the daemon completes the
    command before it exits, so the kernel has nothing left to fail BUSY and no
    initiator retries the copy from its start on the next daemon."""
    from lio_xcopy.scsi.sense import Asc

    rig = copy_rig(os.urandom(1 << 20) * 8, 8 << 20)
    plist = rig.plist([BlockToBlock(0, 1, 4096, 0, 0), BlockToBlock(0, 1, 8192, 4096, 4096)], 5)
    rig.serve()
    cid = rig.extended_copy(plist)
    assert rig.copy_status(5).status == xcopy.CopyCommandStatus.IN_PROGRESS
    job = rig.manager.jobs()[0]

    def stop() -> None:  # segment 0 (two chunks) and segment 1's first chunk landed
        rig.daemon.stop()
        assert job.cancel.wait(10)  # the stopping daemon ended the copy

    rig.src.at("read_blocks", 4, stop)
    rig.steps.run_next()
    assert rig.loop is not None
    rig.loop.join(20)
    assert not rig.loop.is_alive()
    (got,) = rig.kernel.reap()
    assert (got.cmd_id, got.status) == (cid, 2)  # answered: CHECK CONDITION
    sense = SenseData.parse(got.sense)
    assert (sense.key, sense.asc) == (SenseKey.COPY_ABORTED,
                                      Asc.COMMANDS_CLEARED_BY_DEVICE_SERVER)
    assert sense.command_specific == 1  # the segment it was in
    assert job.transferred == (2 << 20) + (1 << 20)  # segment 0 whole, one chunk of 1
    assert rig.dst_path.read_bytes()[:job.transferred] == \
        rig.src_path.read_bytes()[:job.transferred]


def test_copy_operation_abort_stops_a_copy_by_list_identifier(copy_rig):
    """COPY OPERATION ABORT (SPC-4 6.3) through the ring, from any initiator: the copy
    stops at its next chunk, its EXTENDED COPY ends with TASK ABORTED, COPY STATUS keeps
    the exact count; an unknown list identifier, or that of a copy that ended, is
    INVALID FIELD IN CDB at byte 2."""
    from lio_xcopy.scsi.sense import Asc

    rig = copy_rig(os.urandom(1 << 20) * 8, 8 << 20)
    chunk = rig.manager.chunk
    rig.serve()

    def copy_operation_abort(list_id: int) -> int:
        return rig.kernel.submit(xcopy.CopyOperationAbort(list_identifier=list_id).encode())

    got = rig.kernel.answer(copy_operation_abort(8))
    sense = SenseData.parse(got.sense)
    assert (got.status, sense.key, sense.asc) == (2, SenseKey.ILLEGAL_REQUEST,
                                                  Asc.INVALID_FIELD_IN_CDB)
    assert sense.sense_key_specific == bytes([0xC0, 0, 2])  # CDB byte 2
    cid = rig.extended_copy(rig.plist([BlockToBlock(0, 1, 16384, 0, 0)], 9))
    assert rig.copy_status(9).status == xcopy.CopyCommandStatus.IN_PROGRESS
    job = rig.manager.jobs()[0]
    aborts: list[int] = []

    def abort() -> None:  # the first chunk has landed
        aborts.append(copy_operation_abort(9))
        assert job.cancel.wait(10)

    rig.src.at("read_blocks", 2, abort)
    rig.steps.run_next()
    assert rig.kernel.answer(cid).status == 0x40  # TASK ABORTED (sense only after CC)
    assert rig.kernel.answer(aborts[0]).status == GOOD  # the abort itself
    st = rig.copy_status(9)
    assert st.status == xcopy.CopyCommandStatus.COMPLETED_WITH_ERRORS
    assert st.transferred_bytes == chunk == job.transferred
    dst, src = rig.dst_path.read_bytes(), rig.src_path.read_bytes()
    assert dst[:chunk] == src[:chunk] and dst[chunk:] == bytes((8 << 20) - chunk)
    # the copy has ended: no copy operation with that list identifier is being
    # processed (SPC-4 6.3), INVALID FIELD IN CDB at byte 2; its results stay held
    got = rig.kernel.answer(copy_operation_abort(9))
    sense = SenseData.parse(got.sense)
    assert (got.status, sense.key, sense.asc, sense.sense_key_specific) == (
        2, SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB, bytes([0xC0, 0, 2]))


def test_a_daemon_without_rescans_still_waits_a_finite_time():
    """The control plane serves one LUN with ``rescan_every=inf``: select() needs a
    finite timeout."""
    import math

    d = Daemon(rescan_every=math.inf)
    assert 0 < d.timeout() <= 30.0 and d.timeout(1.0) == 1.0
