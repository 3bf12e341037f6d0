"""The ring's compiled direct path (``lio_xcopy/tcmu/_fastio.c``) against the Python path:
the same commands over the simulated kernel answer the same way (status, sense, the
bytes sent back) and leave the same bytes in the backing file, whichever path serves
them. Each test runs with the compiled path and with the Python path alone
(``direct``), so both stay covered."""

from __future__ import annotations

import contextlib
import os
import random

import pytest
from plugins.tcmu_ring import SimulatedKernel

from lio_xcopy.devices.backing import BackingStore
from lio_xcopy.devices.base import LunIdentity
from lio_xcopy.devices.disk import Disk
from lio_xcopy.errors import TcmuError
from lio_xcopy.scsi import sbc, spc
from lio_xcopy.scsi.cdb import Cdb
from lio_xcopy.scsi.sense import CHECK_CONDITION, GOOD, SenseData, SenseKey
from lio_xcopy.tcmu import fastio
from lio_xcopy.tcmu import ring as r
from lio_xcopy.tcmu.daemon import TcmuDevice
from lio_xcopy.tcmu.ring import CommandRing

BS = 512
BLOCKS = 256


def compiled():
    serve = fastio.direct_serve()
    if serve is None:
        pytest.skip("the compiled ring path is not built (or LIO_XCOPY_FASTIO=0)")
    return serve


def test_the_compiled_path_is_built_unless_turned_off():
    """The suite's install builds it (scripts/setup-host): its absence is a failure
    unless the run turned it off on purpose."""
    if os.environ.get(fastio.ENV) == "0":
        assert fastio.direct_serve() is None
    else:
        assert fastio.direct_serve() is not None


@contextlib.contextmanager
def terms(disk):
    """The disk's direct terms while the block runs, handed back after."""
    io = disk.direct_io()
    try:
        yield io
    finally:
        if io is not None:
            disk.direct_io_done(io)


class Lun:
    """A disk over a file behind the simulated kernel, served with or without the
    compiled path; ``handled`` lists the opcodes that reached the disk's Python."""

    def __init__(self, tmp_path, content: bytes, *, direct: bool, cmdr_size: int = 64 * 1024,
                 **disk_kw):
        if direct:
            compiled()
        self.path = tmp_path / ("direct.img" if direct else "python.img")
        self.path.write_bytes(content)
        self.kernel = SimulatedKernel(cmdr_size=cmdr_size, data_pages=512)
        self.disk = Disk(LunIdentity("d0", "6001405aaaaaaaaaaaaaaaaaaaaaaaa1"),
                         BackingStore(self.path), BS, **disk_kw)
        self.dev = TcmuDevice("d0", self.kernel.uio_fd, CommandRing(self.kernel.view),
                              self.disk)
        if not direct:
            self.dev._direct = self.dev._waiting = None
        self.handled: list[int] = []
        handle = self.disk.handle

        def spy(cmd):
            self.handled.append(cmd.cdb[0])
            return handle(cmd)

        self.disk.handle = spy

    def run(self, batch: list[tuple[bytes, bytes, int]]) -> list[tuple]:
        """Queue ``batch`` (cdb, data out, data-in length) at once, serve it, and return
        each command's (status, sense key, ASC/ASCQ, data in, read_len) in queue order."""
        ids = [self.kernel.submit(cdb, data_out=out, data_in_len=n) for cdb, out, n in batch]
        self.dev.service()
        done = {c.cmd_id: c for c in self.kernel.reap()}
        assert sorted(done) == sorted(ids), "every command answered once"
        return [_summary(done[i]) for i in ids]

    def close(self):
        self.dev.close()
        self.kernel.close()


def _summary(c) -> tuple:
    if c.status == GOOD:
        return (GOOD, None, None, c.data_in, c.read_len)
    sense = SenseData.parse(c.sense)
    return (c.status, sense.key, sense.asc, c.data_in, c.read_len)


@pytest.fixture
def both(tmp_path):
    """A pair of LUNs over equal files: one with the compiled path, one without."""
    made: list[Lun] = []

    def make(content: bytes = b"", **kw) -> tuple[Lun, Lun]:
        content = content or random.Random(1).randbytes(BLOCKS * BS)
        pair = (Lun(tmp_path, content, direct=True, **kw),
                Lun(tmp_path, content, direct=False, **kw))
        made.extend(pair)
        return pair

    yield make
    for lun in made:
        lun.close()


def _same(pair: tuple[Lun, Lun], batch) -> list[tuple]:
    """Run ``batch`` on both; they must answer alike and hold the same bytes."""
    fast, slow = pair
    got = fast.run(batch)
    assert got == slow.run(batch)
    assert fast.path.read_bytes() == slow.path.read_bytes()
    return got


def _read(layout, lba, count, data_in_len=None, **kw):
    return (layout(lba=lba, transfer_length=count, **kw).encode(), b"",
            count * BS if data_in_len is None else data_in_len)


def _write(layout, lba, count, rnd, **kw):
    return (layout(lba=lba, transfer_length=count, **kw).encode(), rnd.randbytes(count * BS), 0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_reads_and_writes_answer_as_the_python_path(both, seed):
    """Batches of READ/WRITE (10/16) of 1-64 blocks, with DPO and FUA, around the ring
    (PAD entries at its end) and over scattered data-area pages."""
    pair = both(cmdr_size=8 * 1024)
    rnd = random.Random(seed)
    served_direct = 0
    for _ in range(40):
        batch = []
        for _ in range(rnd.randint(1, 6)):
            count = rnd.randint(1, 64)
            lba = rnd.randrange(BLOCKS - count + 1)
            flags = {"dpo": rnd.randint(0, 1), "fua": rnd.randint(0, 1)}
            if rnd.random() < 0.5:
                batch.append(_write(rnd.choice([sbc.Write10, sbc.Write16]), lba,
                                    count, rnd, **flags))
            else:
                batch.append(_read(rnd.choice([sbc.Read10, sbc.Read16]), lba, count, **flags))
        before = len(pair[0].handled)
        answers = _same(pair, batch)
        assert all(a[0] == GOOD for a in answers)
        served_direct += len(batch) - (len(pair[0].handled) - before)
    assert pair[0].handled == [], "the compiled path served every plain READ and WRITE"
    assert served_direct > 100


def test_it_stops_at_what_it_does_not_serve_and_goes_on_after(both):
    """A READ (6), an INQUIRY and a TEST UNIT READY between plain READs and WRITEs go to
    the disk; the commands after them are served directly again."""
    pair = both()
    rnd = random.Random(5)
    batch = [_write(sbc.Write10, 0, 8, rnd), _read(sbc.Read6, 0, 8),
             _read(sbc.Read10, 0, 8), (spc.Inquiry(allocation_length=96).encode(), b"", 96),
             (spc.TestUnitReady().encode(), b"", 0), _write(sbc.Write16, 100, 3, rnd),
             _read(sbc.Read16, 99, 5)]
    answers = _same(pair, batch)
    assert [a[0] for a in answers] == [GOOD] * 7
    assert answers[1][3] == answers[2][3] == batch[0][1]
    assert pair[0].handled == [0x08, 0x12, 0x00]
    assert len(pair[1].handled) == 7


@pytest.mark.parametrize("cdb_kw, key, asc", [
    ({"layout": sbc.Read10, "lba": BLOCKS - 2, "count": 4}, SenseKey.ILLEGAL_REQUEST, 0x2100),
    ({"layout": sbc.Read16, "lba": 1 << 40, "count": 1}, SenseKey.ILLEGAL_REQUEST, 0x2100),
    ({"layout": sbc.Write16, "lba": BLOCKS, "count": 1}, SenseKey.ILLEGAL_REQUEST, 0x2100),
    ({"layout": sbc.Read10, "lba": 0, "count": 1, "rdprotect": 1},
     SenseKey.ILLEGAL_REQUEST, 0x2400),
    ({"layout": sbc.Write10, "lba": 0, "count": 1, "wrprotect": 3},
     SenseKey.ILLEGAL_REQUEST, 0x2400),
])
def test_refused_commands_carry_the_python_paths_sense(both, cdb_kw, key, asc):
    pair = both()
    rnd = random.Random(7)
    layout, lba, count = cdb_kw.pop("layout"), cdb_kw.pop("lba"), cdb_kw.pop("count")
    cmd = (_write(layout, lba, count, rnd, **cdb_kw) if layout.DATA_OUT
           else _read(layout, lba, count, **cdb_kw))
    (answer,) = _same(pair, [cmd])
    assert answer[:3] == (CHECK_CONDITION, key, asc)
    assert pair[0].handled == [layout.OPCODE]


def test_residuals_and_zero_lengths_are_the_python_paths(both):
    """A READ whose buffer is longer than its blocks (underflow: ``read_len``), shorter
    (overflow), a WRITE whose buffer differs, and transfer lengths of 0."""
    pair = both()
    rnd = random.Random(9)
    write = _write(sbc.Write10, 8, 2, rnd)
    batch = [_read(sbc.Read10, 4, 2, data_in_len=5 * BS), _read(sbc.Read16, 4, 4, 2 * BS),
             (write[0], write[1] + bytes(BS), 0), _read(sbc.Read10, 4, 0, data_in_len=0),
             (sbc.Write16(lba=3, transfer_length=0).encode(), b"", 0)]
    answers = _same(pair, batch)
    assert answers[0][0] == GOOD and answers[0][4] == 2 * BS
    assert answers[1][:3] == answers[2][:3] == (CHECK_CONDITION, SenseKey.ILLEGAL_REQUEST,
                                                0x0E03)
    assert answers[3][0] == answers[4][0] == GOOD
    assert len(pair[0].handled) == 5


def test_a_cdb_with_fields_it_does_not_read_goes_to_the_disk(both):
    """A group number, a control byte, a reserved bit: not the compiled path's to judge."""
    pair = both()
    group = bytearray(sbc.Read10(lba=1, transfer_length=1).encode())
    group[6] = 5
    control = bytearray(sbc.Read16(lba=1, transfer_length=1).encode())
    control[15] = 0x04  # NACA
    reserved = bytearray(sbc.Write10(lba=1, transfer_length=1).encode())
    reserved[1] |= 0x02
    batch = [(bytes(group), b"", BS), (bytes(control), b"", BS),
             (bytes(reserved), bytes(BS), 0)]
    _same(pair, batch)
    assert pair[0].handled == [0x28, 0x88, 0x2A]


def test_a_read_only_disk_refuses_writes_through_the_python_path(both):
    pair = both(read_only=True)
    rnd = random.Random(3)
    answers = _same(pair, [_read(sbc.Read10, 0, 4), _write(sbc.Write16, 0, 4, rnd)])
    assert answers[0][0] == GOOD
    assert answers[1][:3] == (CHECK_CONDITION, SenseKey.DATA_PROTECT, 0x2700)
    assert pair[0].handled == [0x8A]


def test_the_maximum_transfer_length_is_the_disks_to_enforce(both):
    pair = both(max_transfer_length=8)
    answers = _same(pair, [_read(sbc.Read10, 0, 8), _read(sbc.Read10, 0, 9)])
    assert answers[0][0] == GOOD
    assert answers[1][:3] == (CHECK_CONDITION, SenseKey.ILLEGAL_REQUEST, 0x2400)
    assert pair[0].handled == [0x28]


def test_watched_writes_go_through_the_disk(both):
    """A ROD token over the LUN watches its writes: the compiled path leaves them."""
    fast, slow = both()
    seen = {id(fast): [], id(slow): []}
    for lun in (fast, slow):
        lun.disk.write_watch = lambda lba, n, lun=lun: seen[id(lun)].append((lba, n))
    rnd = random.Random(4)
    _same((fast, slow), [_read(sbc.Read10, 0, 2), _write(sbc.Write10, 10, 2, rnd)])
    assert seen[id(fast)] == seen[id(slow)] == [(10, 2)]
    assert fast.handled == [0x2A]


def test_the_terms_follow_the_write_cache(both):
    """WCE 0: the terms ask for durable writes (RWF_DSYNC), as the disk's own are."""
    fast, _ = both()
    fast.disk.write_cache = False
    with terms(fast.disk) as io:
        assert io is not None and io.dsync and io.writable
    rnd = random.Random(6)
    assert fast.run([_write(sbc.Write10, 0, 4, rnd)])[0][0] == GOOD
    assert fast.handled == []


def test_writes_wait_for_an_exclusive_holder(both):
    """While COMPARE AND WRITE (or another command that must see no write between its
    steps) holds the disk alone, WRITEs are not served directly; READs are."""
    fast, _ = both()
    with fast.disk._atomic.exclusive():
        with terms(fast.disk) as io:
            assert io is not None and not io.writable
        assert fast.disk._atomic.holders == 1
    with terms(fast.disk) as io:
        assert io.writable and fast.disk._atomic.holders == 1
    assert fast.disk._atomic.holders == 0


def test_io_errors_become_the_python_paths_medium_errors(both, tmp_path):
    """A write the file refuses (EBADF: opened read-only underneath) and a read past a
    file cut short after the disk opened it: MEDIUM ERROR from the disk, as without the
    compiled path; nothing is answered GOOD."""
    pair = both()
    for lun in pair:
        ro = os.open(lun.path, os.O_RDONLY)
        os.dup2(ro, lun.disk.store.fd)
        os.close(ro)
        os.truncate(lun.path, (BLOCKS - 8) * BS)
    rnd = random.Random(8)
    answers = _same(pair, [_write(sbc.Write10, 0, 1, rnd), _read(sbc.Read10, BLOCKS - 4, 2),
                           _read(sbc.Read10, 0, 2)])
    assert answers[0][:3] == (CHECK_CONDITION, SenseKey.MEDIUM_ERROR, 0x0C00)
    assert answers[1][:3] == (CHECK_CONDITION, SenseKey.MEDIUM_ERROR, 0x1100)
    assert answers[2][0] == GOOD
    assert pair[0].handled == [0x2A, 0x28]


def test_task_management_between_commands_reaches_the_device(both):
    fast, _ = both()
    calls = []
    fast.disk.task_management = calls.append
    rnd = random.Random(2)
    ids = [fast.kernel.submit(*_write(sbc.Write10, 0, 1, rnd)[:2])]
    fast.kernel.submit_tmr(5)  # LOGICAL UNIT RESET
    ids.append(fast.kernel.submit(sbc.Read10(lba=0, transfer_length=1).encode(),
                                  data_in_len=BS))
    fast.dev.service()
    assert sorted(c.cmd_id for c in fast.kernel.reap()) == sorted(ids)
    assert len(calls) == 1 and fast.handled == []


def test_an_answer_takes_the_first_slot_while_a_command_runs_elsewhere(tmp_path):
    """Out-of-order completion: with one command read and not yet answered (an EXTENDED
    COPY running), each direct answer goes into the first CMD slot from ``cmd_tail``,
    and the kernel finds every answer by its cmd_id."""
    serve = compiled()
    kernel = SimulatedKernel(cmdr_size=4096, data_pages=64)
    path = tmp_path / "d.img"
    content = random.Random(3).randbytes(BLOCKS * BS)
    path.write_bytes(content)
    disk = Disk(LunIdentity("d0", "6001405aaaaaaaaaaaaaaaaaaaaaaaa1"), BackingStore(path), BS)
    ring = CommandRing(kernel.view)
    try:
        first = kernel.submit(sbc.Read10(lba=0, transfer_length=1).encode(), data_in_len=BS)
        held = ring.next_entry()
        assert held.cmd_id == first and ring.outstanding == 1
        ids = [kernel.submit(sbc.Read10(lba=i, transfer_length=1).encode(), data_in_len=BS)
               for i in range(1, 4)]
        with terms(disk) as io:
            assert ring.serve_direct(serve, io) == (3, False)
        assert ring.outstanding == 1
        done = {c.cmd_id: c for c in kernel.reap()}
        assert sorted(done) == sorted(ids)
        for i, cid in enumerate(ids, 1):
            assert done[cid].status == GOOD
            assert done[cid].data_in == content[i * BS : (i + 1) * BS]
        held.data.views[0][:] = content[:BS]
        ring.complete(first, GOOD)
        (last,) = kernel.reap()
        assert last.cmd_id == first and last.data_in == content[:BS]
        assert ring.outstanding == 0 and ring.tail == ring.head
    finally:
        disk.close()
        kernel.close()


def test_a_malformed_entry_is_left_for_the_python_path_to_refuse(tmp_path):
    """An iovec outside the map: the compiled path answers nothing and moves nothing;
    the ring's own reading refuses the entry (the daemon drops the device)."""
    serve = compiled()
    kernel = SimulatedKernel(cmdr_size=4096, data_pages=64)
    path = tmp_path / "d.img"
    path.write_bytes(bytes(BLOCKS * BS))
    disk = Disk(LunIdentity("d0", "6001405aaaaaaaaaaaaaaaaaaaaaaaa1"), BackingStore(path), BS)
    ring = CommandRing(kernel.view)
    try:
        kernel.submit(sbc.Write10(lba=0, transfer_length=1).encode(), data_out=b"x" * BS)
        base = kernel.cmdr_off
        r.IOV.pack_into(kernel.mm, base + r.IOV_OFF, kernel.size - 8, BS)
        with terms(disk) as io:
            assert ring.serve_direct(serve, io) == (0, False)
        assert ring.tail == 0 and path.read_bytes() == bytes(BLOCKS * BS)
        with pytest.raises(TcmuError, match="outside the map"):
            ring.next_entry()
    finally:
        disk.close()
        kernel.close()


@pytest.mark.parametrize("direct", [True, False], ids=["compiled", "python"])
def test_one_wake_up_per_batch_and_one_per_long_transfer(tmp_path, direct):
    """The kernel is woken once the answers of a batch are written, and (compiled)
    already as each long transfer completes, not twice for the same answers."""
    lun = Lun(tmp_path, bytes(BLOCKS * BS), direct=direct)
    try:
        lun.kernel.woken()
        lun.run([_read(sbc.Read10, i, 1) for i in range(4)])
        assert lun.kernel.woken() == 1
        lun.run([_read(sbc.Read16, 0, 128)])  # 64 KiB: announced at the end
        assert lun.kernel.woken() == 1
        lun.run([_write(sbc.Write10, 0, 256, random.Random(1))] * 3)  # 128 KiB each
        assert lun.kernel.woken() == (2 if direct else 1)  # at 256 KiB, then the rest
        lun.run([_read(sbc.Read10, 0, BLOCKS)])  # 128 KiB, the whole LUN
        assert lun.kernel.woken() == 1
    finally:
        lun.close()


def test_without_the_extension_every_command_takes_the_python_path(monkeypatch, caplog,
                                                                  tmp_path):
    """An install that could not build it (no compiler) serves all the same, and the log
    says why and what to do."""
    import importlib

    def missing(name):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.delenv(fastio.ENV, raising=False)
    monkeypatch.setattr(importlib, "import_module", missing)
    fastio.direct_serve.cache_clear()
    try:
        with caplog.at_level("INFO", logger="lio_xcopy.tcmu.fastio"):
            assert fastio.direct_serve() is None
        assert "every command takes the Python path" in caplog.text
        assert "C compiler" in caplog.text
        kernel = SimulatedKernel(data_pages=16)
        path = tmp_path / "d.img"
        path.write_bytes(bytes(BLOCKS * BS))
        disk = Disk(LunIdentity("d0", "6001405aaaaaaaaaaaaaaaaaaaaaaaa1"),
                    BackingStore(path), BS)
        dev = TcmuDevice("d0", kernel.uio_fd, CommandRing(kernel.view), disk)
        try:
            assert dev._direct is None
            data = random.Random(12).randbytes(2 * BS)
            kernel.submit(sbc.Write10(lba=3, transfer_length=2).encode(), data_out=data)
            cid = kernel.submit(sbc.Read10(lba=3, transfer_length=2).encode(),
                                data_in_len=2 * BS)
            assert dev.service() == 2
            assert {c.cmd_id: c for c in kernel.reap()}[cid].data_in == data
        finally:
            dev.close()
            kernel.close()
    finally:
        fastio.direct_serve.cache_clear()


def test_long_transfers_are_served_on_the_rings_thread_too(tmp_path):
    """Each LUN's ring has a thread of its own, so a transfer of LONG_TRANSFER bytes or
    more on a slow device holds up no other LUN: the compiled path serves it as it
    serves short ones, where the Python path hands it to the LUN's I/O workers."""
    from lio_xcopy.devices.base import LONG_TRANSFER

    content = random.Random(13).randbytes(4096 * BS)
    lun = Lun(tmp_path, content, direct=True)
    try:
        blocks = 2 * LONG_TRANSFER // BS
        read = lun.kernel.submit(*_read(sbc.Read16, 1, blocks)[:1], data_in_len=blocks * BS)
        data = random.Random(14).randbytes(blocks * BS)
        write = lun.kernel.submit(sbc.Write10(lba=2048, transfer_length=blocks).encode(),
                                  data_out=data)
        assert lun.dev.service() == 2 and lun.handled == []
        done = {c.cmd_id: c for c in lun.kernel.reap()}
        assert done[read].data_in == content[BS : BS + blocks * BS]
        assert done[write].status == GOOD
        assert lun.path.read_bytes()[2048 * BS : 2048 * BS + blocks * BS] == data
    finally:
        lun.close()


def _revalidation() -> list[tuple[bytes, bytes, int]]:
    """What Linux sd asks as it revalidates a disk, with allocation lengths that cut
    the data short and that leave a residual."""
    cdbs: list[tuple[Cdb, int]] = [
        (spc.TestUnitReady(), 0),
        (spc.Inquiry(allocation_length=36), 36), (spc.Inquiry(allocation_length=255), 255),
        (spc.Inquiry(evpd=1, page_code=0x00, allocation_length=255), 255),
        (spc.Inquiry(evpd=1, page_code=0x83, allocation_length=8), 8),
        (spc.Inquiry(evpd=1, page_code=0xB0, allocation_length=64), 64),
        (sbc.ReadCapacity16(allocation_length=32), 32), (sbc.ReadCapacity10(), 8),
        (spc.ModeSense6(page_code=spc.ALL_PAGES, allocation_length=192), 192),
        (spc.ModeSense6(page_code=sbc.CACHING_PAGE, allocation_length=4), 4),
        (spc.ModeSense10(dbd=1, page_code=sbc.CACHING_PAGE, allocation_length=512), 512),
        (spc.ReportSupportedOperationCodes(reporting_options=1, requested_operation_code=0x93,
                                           allocation_length=512), 512),
        (spc.ReportSupportedOperationCodes(allocation_length=4096), 4096),
    ]
    return [(cdb.encode(), b"", n) for cdb, n in cdbs]


def _caching_page(lun: Lun) -> tuple:
    (answer,) = lun.run([(spc.ModeSense6(dbd=1, page_code=sbc.CACHING_PAGE,
                                         allocation_length=64).encode(), b"", 64)])
    return answer


def test_a_disks_reports_of_its_state_are_answered_again_as_python_answered(both):
    """sd's revalidation, twice, between READs and WRITEs: the first answers come from
    the disk, the second from the compiled path, byte for byte (residuals too)."""
    pair = both()
    rnd = random.Random(30)
    asks = _revalidation()
    first = _same(pair, [_write(sbc.Write10, 0, 8, rnd), *asks, _read(sbc.Read10, 0, 8)])
    assert all(a[0] == GOOD for a in first)
    assert any(a[4] is not None for a in first), "some answer is shorter than its buffer"
    asked = [cdb[0] for cdb, _, _ in asks]
    assert pair[0].handled == asked
    again = _same(pair, [*asks, _write(sbc.Write16, 4, 2, rnd), *asks])
    assert again == [*first[1:-1], again[len(asks)], *first[1:-1]]
    assert pair[0].handled == asked, "the compiled path gave every answer again"
    assert pair[1].handled == [0x2A, *asked, 0x28, *asked, 0x8A, *asked]


def test_an_answer_is_given_again_only_to_the_same_cdb_and_buffer(both):
    pair = both()
    inquiry = spc.Inquiry(allocation_length=96).encode()
    answers = _same(pair, [(inquiry, b"", 96), (inquiry, b"", 128), (inquiry, b"", 96),
                           (spc.Inquiry(allocation_length=97).encode(), b"", 97)])
    assert answers[0][3] == answers[1][3][:96] == answers[2][3] == answers[3][3][:96]
    assert pair[0].handled == [0x12, 0x12, 0x12]  # 96 again: from the compiled path


@pytest.mark.parametrize("between", [
    (spc.RequestSense(allocation_length=18).encode(), b"", 18),  # any other command
    (sbc.Read6(lba=0, transfer_length=1).encode(), b"", BS),  # a READ for Python
    (bytes([0xC5, 0, 0, 0, 0, 0]), b"", 0),  # one it refuses
])
def test_any_other_command_for_python_drops_the_answers(both, between):
    pair = both()
    inquiry = (spc.Inquiry(allocation_length=36).encode(), b"", 36)
    _same(pair, [inquiry, inquiry, between, inquiry])
    assert pair[0].handled == [0x12, between[0][0], 0x12]


def test_task_management_drops_the_answers(both):
    fast, _ = both()
    inquiry = (spc.Inquiry(allocation_length=36).encode(), b"", 36)
    fast.run([inquiry])
    fast.kernel.submit_tmr(5)  # LOGICAL UNIT RESET
    fast.run([inquiry])
    assert fast.handled == [0x12, 0x12]


def test_mode_select_changes_what_mode_sense_answers(both):
    """MODE SELECT turning the write cache off: the MODE SENSE after it reports WCE 0,
    as the disk does, not the answer held before."""
    pair = both()
    before = [_caching_page(lun) for lun in pair]
    assert before[0] == before[1] and before[0][3][4 + 2] & 0x04  # WCE
    page = sbc.caching_mode_page(wce=False)
    param = bytes(4) + page
    select = (spc.ModeSelect6(pf=1, parameter_list_length=len(param)).encode(), param, 0)
    _same(pair, [select])
    after = [_caching_page(lun) for lun in pair]
    assert after[0] == after[1] and not after[0][3][4 + 2] & 0x04
    assert pair[0].handled == [0x1A, 0x15, 0x1A]


def test_new_terms_drop_the_answers(both):
    """A change of the disk's terms that no command made (here its write cache, set
    by hand) drops what was held under the old ones."""
    fast, _ = both()
    assert _caching_page(fast)[3][6] & 0x04
    fast.disk.write_cache = False
    assert not _caching_page(fast)[3][6] & 0x04
    assert fast.handled == [0x1A, 0x1A]


@pytest.mark.parametrize("table", [
    lambda cdb: fastio.ANSWER.pack(len(cdb), 96, 1 << 30, 0) + cdb,  # data past its end
    lambda cdb: fastio.ANSWER.pack(len(cdb), 96, 97, 0) + cdb + bytes(97),  # more than fits
    lambda cdb: fastio.ANSWER.pack(len(cdb), 96, 96, 0)[:-2],  # a header cut short
    lambda cdb: fastio.ANSWER.pack(1 << 31, 96, 0, 0) + cdb,  # a CDB past the map
])
def test_a_table_that_is_not_whole_answers_nothing(tmp_path, table):
    """The compiled path checks the answers it is handed against themselves and the map:
    what does not fit is left for the Python path."""
    lun = Lun(tmp_path, bytes(BLOCKS * BS), direct=True)
    try:
        cdb = spc.Inquiry(allocation_length=96).encode()
        cid = lun.kernel.submit(cdb, data_in_len=96)
        with terms(lun.disk) as io:
            assert lun.dev.ring.serve_direct(compiled(), io, -1, table(cdb)) == (0, False)
        assert lun.dev.service() == 1 and lun.handled == [0x12]
        assert lun.kernel.answer(cid).status == GOOD
    finally:
        lun.close()


def test_the_answers_held_are_bounded():
    held = fastio.HeldAnswers()
    for n in range(fastio.HeldAnswers.MAX_ANSWERS + 8):
        held.hold(spc.Inquiry(allocation_length=n).encode(), n, bytes(n), None)
    assert len(held) == fastio.HeldAnswers.MAX_ANSWERS
    held.hold(bytes(6), 0, b"", None)  # full: not held
    assert len(held) == fastio.HeldAnswers.MAX_ANSWERS
    assert held.packed(("terms",)) == b"" and len(held) == 0  # new terms: none hold
    held.hold(bytes(6), 0, b"", None)
    assert held.packed(("terms",)) == fastio.ANSWER.pack(6, 0, 0, 0) + bytes(6)
    held.hold(bytes([0x12]) + bytes(5), 1 << 20, bytes(fastio.HeldAnswers.MAX_BYTES), None)
    assert len(held) == 1  # too large


def waiting():
    serve = fastio.waiting_serve()
    if serve is None:
        pytest.skip("the compiled ring path is not built (or LIO_XCOPY_FASTIO=0)")
    return serve


class Waiter:
    """``serve_wait`` on a LUN's ring, on a thread, with an eventfd to wake it."""

    def __init__(self, lun: Lun, timeout_ms: int = 10_000, kick: int = -1):
        import threading

        self.lun, self.wake = lun, os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.kick = kick
        self.result: tuple[int, bool, int] | None = None
        self.thread = threading.Thread(target=self._run, args=(timeout_ms,), daemon=True)

    def _run(self, timeout_ms: int) -> None:
        with terms(self.lun.disk) as io:
            self.result = self.lun.dev.ring.serve_waiting(waiting(), io, self.lun.kernel.uio_fd,
                                                          self.wake, timeout_ms, b"", self.kick)

    def __enter__(self) -> Waiter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        os.eventfd_write(self.wake, 1)
        self.thread.join(10)
        os.close(self.wake)


def test_the_waiting_path_serves_what_comes_while_it_waits_and_wakes_the_kernel(tmp_path):
    """Between runs it waits on the uio fd itself: commands queued while it waits are
    answered, each run announced to the kernel, with no step back to Python until the
    wake fd is written (WOKEN)."""
    waiting()
    content = random.Random(20).randbytes(BLOCKS * BS)
    lun = Lun(tmp_path, content, direct=True)
    rnd = random.Random(21)
    try:
        with Waiter(lun) as w:
            for lba in (0, 9, 100):
                data = rnd.randbytes(4 * BS)
                cid = lun.kernel.submit(sbc.Write10(lba=lba, transfer_length=4).encode(),
                                        data_out=data)
                assert lun.kernel.answer(cid).status == GOOD  # waits for its wake-up
                back = lun.kernel.submit(*_read(sbc.Read16, lba, 4)[:1], data_in_len=4 * BS)
                assert lun.kernel.answer(back).data_in == data
            assert w.thread.is_alive() and w.result is None
        assert w.result == (6, True, fastio.WOKEN)
        assert lun.handled == []
    finally:
        lun.close()


def test_the_waiting_path_asks_the_reaper_for_its_wake_ups_while_it_serves(tmp_path):
    """With a kick fd, the wake-ups due every 256 KiB after a READ with another entry
    queued behind it are counts on it, not writes to the uio fd: the kernel hears of those
    answers when the reaper wakes it, beside the next READ. The last READ, with nothing
    queued behind it, is woken by the serving thread itself."""
    import time

    waiting()
    big = 512  # blocks: 256 KiB, a wake-up due after each READ
    content = random.Random(25).randbytes(4 * big * BS)
    lun = Lun(tmp_path, content, direct=True)
    kick = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    try:
        ids = [lun.kernel.submit(*_read(sbc.Read16, n * big, big)[:1], data_in_len=big * BS)
               for n in range(3)]
        with Waiter(lun, kick=kick) as w:
            kicks, woken, t0 = 0, 0, time.monotonic()
            while woken == 0 and time.monotonic() - t0 < 30:
                time.sleep(0.01)
                woken = lun.kernel.woken()
            with contextlib.suppress(BlockingIOError):
                kicks = os.eventfd_read(kick)
            assert kicks == 2  # one per READ with another queued behind it ...
            assert woken == 1  # ... and one wake-up, for the last
        assert w.result == (3, True, fastio.WOKEN)
        done = {c.cmd_id: c for c in lun.kernel.reap()}
        for n, cid in enumerate(ids):
            assert done[cid].status == GOOD
            assert done[cid].data_in == content[n * big * BS:(n + 1) * big * BS]
    finally:
        os.close(kick)
        lun.close()


def test_a_read_alone_in_the_ring_is_woken_by_the_serving_thread(tmp_path):
    """One READ at a time (queue depth 1): there is no next entry for the reaper's
    completion copy to run beside, so the serving thread wakes the kernel for each READ
    itself and the kick fd is left alone."""
    waiting()
    big = 512
    content = random.Random(26).randbytes(4 * big * BS)
    lun = Lun(tmp_path, content, direct=True)
    kick = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    try:
        with Waiter(lun, kick=kick):
            for n in range(3):
                cid = lun.kernel.submit(*_read(sbc.Read16, n * big, big)[:1],
                                        data_in_len=big * BS)
                answer = lun.kernel.answer(cid)  # waits for its wake-up
                assert answer.status == GOOD
                assert answer.data_in == content[n * big * BS:(n + 1) * big * BS]
        with pytest.raises(BlockingIOError):
            os.eventfd_read(kick)
    finally:
        os.close(kick)
        lun.close()


def test_the_waiting_path_wakes_the_kernel_itself_after_writes_only(tmp_path):
    """A wake-up that completes WRITEs alone is given on the serving thread (their
    completion copies nothing): the kick fd is left alone."""
    waiting()
    big = 512
    lun = Lun(tmp_path, bytes(4 * big * BS), direct=True)
    kick = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    rnd = random.Random(28)
    try:
        data = [rnd.randbytes(big * BS) for _ in range(3)]
        with Waiter(lun, kick=kick):
            ids = [lun.kernel.submit(sbc.Write16(lba=n * big, transfer_length=big).encode(),
                                     data_out=d) for n, d in enumerate(data)]
            assert [lun.kernel.answer(cid).status for cid in ids] == [GOOD] * 3
        assert lun.kernel.woken() >= 1
        with pytest.raises(BlockingIOError):
            os.eventfd_read(kick)
        assert lun.path.read_bytes()[:3 * big * BS] == b"".join(data)
    finally:
        os.close(kick)
        lun.close()


def test_the_waiting_path_stops_at_a_command_for_python_and_when_its_time_is_up(tmp_path):
    waiting()
    lun = Lun(tmp_path, bytes(BLOCKS * BS), direct=True)
    try:
        data = random.Random(22).randbytes(2 * BS)
        first = lun.kernel.submit(sbc.Write10(lba=5, transfer_length=2).encode(),
                                  data_out=data)
        inquiry = lun.kernel.submit(bytes([0x12, 0, 0, 0, 96, 0]), data_in_len=96)
        w = Waiter(lun)
        w._run(10_000)
        assert w.result == (1, False, fastio.AT_ENTRY)  # the WRITE, then the INQUIRY is Python's
        assert lun.dev.service() == 1 and lun.handled == [0x12]
        done = {c.cmd_id: c for c in lun.kernel.reap()}
        assert done[first].status == GOOD and done[inquiry].status == GOOD
        w._run(50)
        assert w.result == (0, False, fastio.TIME_UP)  # nothing came
        os.close(w.wake)
    finally:
        lun.close()


def test_the_rings_thread_waits_in_the_compiled_path_and_stops_at_once(tmp_path,
                                                                       monkeypatch):
    """Started, a disk's ring thread serves READs and WRITEs in the compiled path's own
    wait, hands the other commands to the Python path in their order, and stops at once
    when told to, however long that wait would have been."""
    import time

    from lio_xcopy.tcmu import daemon as daemon_mod

    waiting()
    monkeypatch.setattr(daemon_mod, "WAIT_MS", 600_000)  # only a wake-up ends the wait
    content = random.Random(23).randbytes(BLOCKS * BS)
    lun = Lun(tmp_path, content, direct=True)
    broken: list[Exception] = []
    lun.dev.start(lambda dev, e: broken.append(e))
    try:
        rnd = random.Random(24)
        for i in range(20):
            data = rnd.randbytes(BS)
            cid = lun.kernel.submit(sbc.Write16(lba=i, transfer_length=1).encode(),
                                    data_out=data)
            assert lun.kernel.answer(cid).status == GOOD
            if i % 5 == 4:
                tur = lun.kernel.submit(bytes(6))
                assert lun.kernel.answer(tur).status == GOOD
            back = lun.kernel.submit(*_read(sbc.Read10, i, 1)[:1], data_in_len=BS)
            assert lun.kernel.answer(back).data_in == data
        # the first TEST UNIT READY only: the compiled path gives the other three its
        # answer again and serves every READ and WRITE
        assert lun.handled == [0x00]
        t0 = time.monotonic()
        lun.dev.stop()
        assert time.monotonic() - t0 < 60  # not the 600 s wait
        assert broken == []
    finally:
        lun.close()


def test_the_reaper_wakes_the_kernel_for_large_transfers_and_ends_with_the_ring(tmp_path):
    """Started, a disk's ring has a reaper thread: large READs and WRITEs queued at once
    are answered (their wake-ups given by the reaper), and stopping ends both threads."""
    import threading

    waiting()
    big = 512  # blocks: 256 KiB
    content = random.Random(26).randbytes(4 * big * BS)
    lun = Lun(tmp_path, content, direct=True)
    broken: list[Exception] = []
    lun.dev.start(lambda dev, e: broken.append(e))
    try:
        reaper = next(t for t in threading.enumerate() if t.name == "reap-d0")
        rnd = random.Random(27)
        for _ in range(3):
            data = rnd.randbytes(big * BS)
            ids = [lun.kernel.submit(*_read(sbc.Read16, n * big, big)[:1],
                                     data_in_len=big * BS) for n in (1, 2)]
            ids.append(lun.kernel.submit(sbc.Write16(lba=0, transfer_length=big).encode(),
                                         data_out=data))
            got = {cid: lun.kernel.answer(cid) for cid in ids}
            assert [got[cid].status for cid in ids] == [GOOD] * 3
            assert got[ids[0]].data_in == content[big * BS:2 * big * BS]
            assert got[ids[1]].data_in == content[2 * big * BS:3 * big * BS]
            back = lun.kernel.submit(*_read(sbc.Read16, 0, big)[:1], data_in_len=big * BS)
            assert lun.kernel.answer(back).data_in == data
        lun.dev.stop()
        assert not reaper.is_alive() and broken == []
    finally:
        lun.close()


def test_the_reaper_loop_wakes_once_per_read_of_its_counts_and_stops_on_its_mark():
    """``reap`` gives one wake-up for the kicks counted since it last read, a last one
    for the stop count, and returns the errno of a uio fd that fails."""
    import errno
    import threading
    import time

    from plugins.tcmu_ring import SimulatedKernel

    loop = fastio.reaper()
    if loop is None:
        pytest.skip("the compiled ring path is not built (or LIO_XCOPY_FASTIO=0)")
    kernel = SimulatedKernel()
    kick = os.eventfd(0, os.EFD_CLOEXEC)
    try:
        ended: list[int] = []
        t = threading.Thread(target=lambda: ended.append(loop.reap(kick, kernel.uio_fd)))
        t.start()
        os.eventfd_write(kick, 1)
        t0 = time.monotonic()
        woken = 0
        while woken == 0 and time.monotonic() - t0 < 10:
            woken += kernel.woken()
            time.sleep(0.01)
        assert woken == 1
        os.eventfd_write(kick, loop.stop)
        t.join(10)
        assert not t.is_alive() and ended == [0] and kernel.woken() == 1
        r_fd, w_fd = os.pipe()
        os.close(r_fd)  # writes to w_fd fail with EPIPE
        os.eventfd_write(kick, 1)
        assert loop.reap(kick, w_fd) == errno.EPIPE
        os.close(w_fd)
    finally:
        os.close(kick)
        kernel.close()
