"""The TCMU ring over the simulated kernel: same byte layout as Linux 6.1."""

from __future__ import annotations

import struct

import pytest
from plugins.tcmu_ring import (
    Boom,
    Echo,
    SimulatedKernel,
    Slow,
    Store,
    Toy,
    Worker,
    complete_from_worker,
)

from lio_xcopy.devices.base import Command, command
from lio_xcopy.errors import TcmuError
from lio_xcopy.scsi import spc
from lio_xcopy.scsi.cdb import Cdb
from lio_xcopy.scsi.sense import CHECK_CONDITION, GOOD, SenseData, SenseKey
from lio_xcopy.tcmu import ring as r
from lio_xcopy.tcmu.daemon import TcmuDevice, execute
from lio_xcopy.tcmu.ring import CommandRing, RingCommand, RingTmr


@pytest.fixture
def dev(kernel):
    d = TcmuDevice("toy", kernel.uio_fd, CommandRing(kernel.view), Toy())
    yield d


def test_inquiry_round_trip(kernel, dev):
    cid = kernel.submit(bytes([0x12, 0, 0, 0, 96, 0]), data_in_len=96)
    assert dev.service() == 1
    assert kernel.woken() == 1
    (c,) = kernel.reap()
    assert (c.cmd_id, c.status) == (cid, GOOD)
    assert c.data_in[0] == spc.TYPE_DISK and c.data_in[8:15] == b"LIO-ORG"
    assert c.read_len == 74  # the response is shorter than the allocation length


def test_data_out_scattered_over_pages(kernel, dev):
    payload = bytes(range(256)) * 40  # 10 KiB over three non-adjacent pages
    kernel.submit(Store(length=len(payload)).encode(), data_out=payload)
    dev.service()
    (c,) = kernel.reap()
    assert c.status == GOOD and dev.device.stored == payload


def test_check_condition_carries_fixed_sense(kernel, dev):
    kernel.submit(bytes([0x28] + [0] * 9), data_in_len=512)  # READ(10): not a Toy command
    dev.service()
    (c,) = kernel.reap()
    assert c.status == CHECK_CONDITION and c.data_in == b""
    sense = SenseData.parse(c.sense)
    assert sense.key == SenseKey.ILLEGAL_REQUEST and sense.asc == 0x2000


def test_unexpected_exception_is_hardware_error_and_ring_goes_on(kernel, dev):
    kernel.submit(Boom().encode())
    kernel.submit(Echo(length=8).encode(), data_in_len=8)
    assert dev.service() == 2
    boom, echo = kernel.reap()
    assert SenseData.parse(boom.sense).key == SenseKey.HARDWARE_ERROR
    assert echo.status == GOOD and echo.data_in == bytes(range(8))


def test_ring_wraps_with_pad_entries(kernel, dev):
    seen = 0
    pads = 0
    for i in range(200):  # far more than fits the 3968-byte ring at once
        before = kernel.head
        kernel.submit(Echo(length=i + 1).encode(), data_in_len=i + 1)
        pads += kernel.head < before
        dev.service()
        for c in kernel.reap():
            assert c.status == GOOD and c.data_in == bytes(j % 251 for j in range(len(c.data_in)))
            seen += 1
    assert seen == 200 and pads >= 5
    assert dev.ring.tail == kernel.head and not kernel.pending_ids()


def test_tmr_entries_are_skipped(kernel, dev):
    a = kernel.submit(Echo(length=4).encode(), data_in_len=4)
    kernel.submit_tmr(1, (a,))
    b = kernel.submit(Echo(length=4).encode(), data_in_len=4)
    assert dev.service() == 2
    assert [c.cmd_id for c in kernel.reap()] == [a, b]
    assert dev.ring.tail == kernel.head


def test_tmr_alone_returns_its_space(kernel):
    ring = CommandRing(kernel.view)
    kernel.submit_tmr(4, (7, 9))
    (t,) = list(ring.entries())
    assert t == RingTmr(4, (7, 9))
    assert ring.tail == kernel.head


def test_out_of_order_completion(kernel):
    ring = CommandRing(kernel.view)
    ids = [kernel.submit(Echo(length=4).encode(), data_in_len=4) for _ in range(3)]
    cmds = [e for e in ring.entries() if isinstance(e, RingCommand)]
    for c in reversed(cmds):  # complete the last first: responses go into slots in order
        c.data.copy_in(struct.pack("<I", c.cmd_id))
        ring.complete(c.cmd_id, GOOD)
    got = kernel.reap()
    assert [c.cmd_id for c in got] == list(reversed(ids))
    assert all(struct.unpack("<I", c.data_in)[0] == c.cmd_id for c in got)


def test_a_ring_reset_underneath_is_refused_and_tail_never_passes_head(kernel):
    ring = CommandRing(kernel.view)
    for n in (1, 2, 3):
        kernel.submit(Echo(length=n).encode(), data_in_len=n)
    first, second, _third = ring.entries()
    ring.complete(first.cmd_id, GOOD)
    kernel.reset_ring()  # someone else reset it: the stale entries stay in the ring
    with pytest.raises(TcmuError, match="reset underneath"):
        ring.complete(second.cmd_id, GOOD)
    assert (ring.head, ring.tail) == (0, 0)  # the kernel is not sent over stale entries
    kernel.submit(Echo(length=4).encode(), data_in_len=4)
    ring.resync()
    (fourth,) = ring.entries()
    ring.complete(fourth.cmd_id, GOOD)
    assert [c.cmd_id for c in kernel.reap()] == [fourth.cmd_id]


def test_an_answer_never_takes_the_slot_of_a_command_not_yet_read(kernel):
    ring = CommandRing(kernel.view)
    kernel.submit(Echo(length=1).encode(), data_in_len=1)
    (first,) = ring.entries()
    unread = kernel.submit(Echo(length=2).encode(), data_in_len=2)
    ring.complete(first.cmd_id, GOOD)
    ring.outstanding += 1  # a miscounted answer, with an unread command at the tail
    with pytest.raises(TcmuError, match="no unanswered CMD entry"):
        ring.complete(first.cmd_id, GOOD)
    assert ring.tail != ring.head
    (second,) = ring.entries()
    assert second.cmd_id == unread and Echo.decode(second.cdb).length == 2


def test_cdb_copied_before_slot_is_reused(kernel):
    ring = CommandRing(kernel.view)
    kernel.submit(Echo(length=1).encode(), data_in_len=1)
    kernel.submit(Echo(length=2).encode(), data_in_len=2)
    first, second = ring.entries()
    ring.complete(second.cmd_id, GOOD)  # lands in first's slot
    assert Echo.decode(first.cdb).length == 1


def test_bad_mailbox_version_refused(kernel):
    struct.pack_into("<H", kernel.mm, 0, 1)
    with pytest.raises(TcmuError, match="version 1"):
        CommandRing(kernel.view)


def test_corrupt_entry_length_refused(kernel):
    ring = CommandRing(kernel.view)
    kernel.submit(Echo(length=1).encode(), data_in_len=1)
    struct.pack_into("<I", kernel.mm, kernel.cmdr_off, r.OP_CMD)  # length 0
    with pytest.raises(TcmuError):
        list(ring.entries())


def test_iovec_outside_map_refused(kernel):
    ring = CommandRing(kernel.view)
    kernel.submit(Echo(length=1).encode(), data_in_len=1)
    r.IOV.pack_into(kernel.mm, kernel.cmdr_off + r.IOV_OFF, kernel.size, 4096)
    with pytest.raises(TcmuError, match="outside the map"):
        list(ring.entries())


def test_execute_reports_partial_transfer():
    class Short(Toy):
        @command(Echo)
        def echo(self, cmd, cdb):
            from lio_xcopy.scsi.errors import CheckCondition

            cmd.data.copy_in(b"abc")
            raise CheckCondition(SenseData(SenseKey.NO_SENSE, 0x0001, filemark=True),
                                 transferred=3)

    from lio_xcopy.devices.buffer import DataBuffer

    status, sense, read_len = execute(
        Short(), RingCommand(1, Echo(length=8).encode(), DataBuffer.allocate(8))
    )
    assert (status, read_len) == (CHECK_CONDITION, 3)
    assert SenseData.parse(sense).filemark


def test_long_command_completes_later_while_others_are_served(kernel):
    dev = TcmuDevice("w", kernel.uio_fd, CommandRing(kernel.view), Worker())
    notified = []
    dev.notify = lambda: notified.append(1)
    slow = kernel.submit(Slow(length=8).encode(), data_in_len=8)
    bad = kernel.submit(Slow(length=0).encode())
    quick = kernel.submit(Echo(length=4).encode(), data_in_len=4)
    assert dev.service() == 1  # only Echo completes now
    (c,) = kernel.reap()
    assert c.cmd_id == quick and set(dev.deferred) == {slow, bad}
    dev.device.release.set()
    for t in dev.device.threads:
        t.join(5)
    assert len(notified) == 2
    assert dev.complete_finished() == 2
    got = {c.cmd_id: c for c in kernel.reap()}
    assert got[slow].status == GOOD and got[slow].data_in == b"donedone"
    assert got[bad].status == CHECK_CONDITION
    assert SenseData.parse(got[bad].sense).asc == 0x2400
    assert not dev.deferred and dev.ring.tail == kernel.head and not kernel.pending_ids()


def test_a_new_daemon_takes_over_a_ring_the_killed_one_left(kernel):
    """A killed daemon read three commands and answered only the last (out of order: its
    response overwrote the first one's entry). The next daemon cannot replay the ring;
    the kernel reaps the one answer and fails the other two BUSY, and the ring goes on."""
    ids = [kernel.submit(Echo(length=4).encode(), data_in_len=4) for _ in range(3)]
    killed = CommandRing(kernel.view)
    cmds = [e for e in killed.entries() if isinstance(e, RingCommand)]
    cmds[2].data.copy_in(b"done")
    killed.complete(cmds[2].cmd_id, GOOD)  # ... and the process dies before waking the kernel
    resets = []

    def reset_ring():
        resets.append({c.cmd_id: c for c in kernel.reset_ring()})

    dev = TcmuDevice("toy", kernel.uio_fd, CommandRing(kernel.view), Toy())
    assert dev.take_over(reset_ring) == 2  # two entries still queued
    (done,) = resets
    assert (done[ids[2]].status, done[ids[2]].data_in) == (GOOD, b"done")
    assert [done[i].status for i in ids[:2]] == [0x08, 0x08]  # BUSY: the initiator retries
    again = kernel.submit(Echo(length=3).encode(), data_in_len=3)
    assert dev.service() == 1
    (c,) = kernel.reap()
    assert (c.cmd_id, c.status, c.data_in) == (again, GOOD, bytes([0, 1, 2]))
    assert not kernel.pending_ids()


def test_a_fresh_ring_is_served_as_it_is(kernel, caplog):
    """A device made while the daemon runs: what the kernel queued before the daemon
    opened it was never read, so it is answered, not failed BUSY."""
    caplog.set_level("INFO")
    ids = [kernel.submit(Echo(length=4).encode(), data_in_len=4) for _ in range(2)]
    dev = TcmuDevice("toy", kernel.uio_fd, CommandRing(kernel.view), Toy())
    assert dev.take_over(lambda: pytest.fail("a fresh ring is not reset"), fresh=True) == 2
    assert "toy: 2 command(s) queued before the daemon opened the new LUN" in caplog.text
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert dev.service() == 2
    assert [(c.cmd_id, c.status, c.data_in) for c in kernel.reap()] == [
        (i, GOOD, bytes([0, 1, 2, 3])) for i in ids]
    assert not kernel.pending_ids()


def test_taking_over_an_idle_ring_resets_nothing(kernel, dev):
    kernel.submit(Echo(length=2).encode(), data_in_len=2)
    dev.service()
    kernel.reap()
    assert dev.take_over(lambda: pytest.fail("an idle ring needs no reset")) == 0


class Hold(Cdb, name="HOLD", opcode=0xC4, length=6, clause="test"):
    pass


class Holding(Toy):
    """HOLD blocks until released, as a SPACE over millions of filemarks would; Echo
    records the order in which commands ran."""

    LONG_OPCODES = frozenset({Hold.OPCODE})

    def __init__(self):
        super().__init__()
        import threading

        self.release = threading.Event()
        self.ran: list[str] = []

    @command(Hold)
    def hold(self, cmd: Command, cdb) -> int:
        assert self.release.wait(5)
        self.ran.append("hold")
        return 0

    @command(Echo)
    def echo(self, cmd: Command, cdb) -> int:
        self.ran.append(f"echo{cdb.length}")
        return super().echo(cmd, cdb)


def test_a_long_command_holds_up_no_other_lun(kernel):
    other = SimulatedKernel(cmdr_size=4096, data_pages=8)
    slow = TcmuDevice("slow", kernel.uio_fd, CommandRing(kernel.view), Holding())
    quick = TcmuDevice("quick", other.uio_fd, CommandRing(other.view), Toy())
    try:
        held = kernel.submit(Hold().encode())
        assert slow.service() == 0 and set(slow.deferred) == {held}  # on the LUN's worker
        other.submit(Echo(length=4).encode(), data_in_len=4)
        assert quick.service() == 1  # answered while HOLD still runs
        assert other.reap()[0].data_in == bytes([0, 1, 2, 3])
        slow.device.release.set()
        assert complete_from_worker(slow, 1) == 1
        (c,) = kernel.reap()
        assert (c.cmd_id, c.status) == (held, GOOD)
    finally:
        slow.device.release.set()
        slow.close()
        other.close()


def test_a_lun_runs_its_commands_in_order_behind_a_long_one(kernel):
    dev = TcmuDevice("slow", kernel.uio_fd, CommandRing(kernel.view), Holding())
    try:
        kernel.submit(Echo(length=1).encode(), data_in_len=1)
        kernel.submit(Hold().encode())
        kernel.submit(Echo(length=2).encode(), data_in_len=2)
        kernel.submit(Echo(length=3).encode(), data_in_len=3)
        assert dev.service() == 1  # Echo 1 inline; the rest queue behind HOLD
        assert dev.device.ran == ["echo1"]
        dev.device.release.set()
        assert complete_from_worker(dev, 3) == 3
        assert dev.device.ran == ["echo1", "hold", "echo2", "echo3"]
        assert {c.status for c in kernel.reap()} == {GOOD}
        kernel.submit(Echo(length=4).encode(), data_in_len=4)
        assert dev.service() == 1  # the worker is idle again: answered on the loop
    finally:
        dev.device.release.set()
        dev.close()


def test_a_large_transfer_runs_on_the_worker(kernel):
    from lio_xcopy.devices.base import LONG_TRANSFER

    big = SimulatedKernel(cmdr_size=4096, data_pages=LONG_TRANSFER // 4096)
    dev = TcmuDevice("big", big.uio_fd, CommandRing(big.view), Toy())
    try:
        big.submit(Echo(length=LONG_TRANSFER).encode(), data_in_len=LONG_TRANSFER)
        assert dev.service() == 0 and len(dev.deferred) == 1
        assert complete_from_worker(dev, 1) == 1
        (c,) = big.reap()
        assert c.status == GOOD and c.data_in[:3] == bytes([0, 1, 2])
    finally:
        dev.close()
        big.close()
