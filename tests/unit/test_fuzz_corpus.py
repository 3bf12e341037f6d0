"""The fuzz targets (tests/fuzz/fuzz_targets.py) without atheris: every checked-in seed
replays through its target, and the inputs the fuzzer found crashes with stay fixed.

``scripts/fuzz`` runs the same targets coverage-guided; here they run once per seed.
"""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path

import pytest
from plugins.tcmu_ring import SimulatedKernel

from lio_xcopy.errors import TcmuError
from lio_xcopy.scsi import xcopy
from lio_xcopy.tcmu import ring as r
from lio_xcopy.tcmu.ring import CommandRing

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"


def _load():
    spec = importlib.util.spec_from_file_location("fuzz_targets", FUZZ / "fuzz_targets.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_targets"] = module
    spec.loader.exec_module(module)
    return module


ft = _load()
SEEDS = sorted((t, p) for t in ft.TARGETS for p in (ft.CORPUS / t).iterdir())


@pytest.fixture(scope="module", autouse=True)
def _lab():
    yield
    ft.close_lab()


def test_every_target_has_seeds():
    assert {t for t, _ in SEEDS} == set(ft.TARGETS)
    assert all(sum(1 for t2, _ in SEEDS if t2 == t) >= 5 for t in ft.TARGETS)


@pytest.mark.parametrize(("target", "path"), SEEDS, ids=[f"{t}/{p.name}" for t, p in SEEDS])
def test_seed_keeps_every_invariant(target, path):
    ft.TARGETS[target](path.read_bytes())


def test_the_invariants_can_fail():
    """A target notices a write past a disk LUN's end and a Data-In beyond ALLOCATION
    LENGTH: the checks themselves are live."""
    lab = ft.lab()
    with lab.armed():
        lab.reset()
        disk = lab.disks["fz-disk"]
        with open(disk.store.path, "r+b") as f:
            f.seek(disk.blocks * disk.block_size)
            f.write(b"\0")
        with pytest.raises(ft.Broken, match="after the LUN's end"):
            lab.check()
        with open(disk.store.path, "r+b") as f:
            f.seek(disk.blocks * disk.block_size)
            f.write(bytes([ft.DISK_GUARD]))
        lab.check()
        with pytest.raises(ft.Broken, match="write of bytes"):
            ft.buffer_module.os.pwritev(disk.store.fd, [b"x"], disk.blocks * disk.block_size)
        inquiry = bytes([0x12, 0, 0, 0, 10, 0])  # ALLOCATION LENGTH 10
        assert ft.run(lab, disk, inquiry, 96).count == 10
        disk.inquiry = lambda cmd, cdb: cmd.data.copy_in(bytes(20))
        with pytest.raises(ft.Broken, match="ALLOCATION LENGTH 10"):
            ft.run(lab, disk, inquiry, 96)


# --- what the ring target found (scripts/fuzz ring), each now a TcmuError ------------------
@pytest.fixture
def kernel():
    k = SimulatedKernel(cmdr_size=4096, data_pages=16)
    yield k
    k.close()


INQUIRY = bytes([0x12, 0, 0, 0, 96, 0])


def test_ring_of_size_zero_refused(kernel):
    """Fuzz input a3a1ab3d: cmdr_size 0 in the mailbox was a ZeroDivisionError."""
    struct.pack_into("<I", kernel.mm, r.MB_CMDR_SIZE, 0)
    with pytest.raises(TcmuError, match="outside the map"):
        CommandRing(kernel.view)
    ft.ring_target(bytes.fromhex("00001200001d2300020c013a0800000000"))


def test_tmr_with_more_ids_than_its_entry_refused(kernel):
    """Fuzz input dc9fd64f: a TMR cmd_cnt beyond its entry was a struct.error."""
    ring = CommandRing(kernel.view)
    kernel.submit_tmr(5, (1, 2))
    struct.pack_into("<I", kernel.mm, kernel.cmdr_off + 12, 0x11FFFF00)
    with pytest.raises(TcmuError, match="cmd ids"):
        list(ring.entries())
    ft.ring_target(bytes.fromhex("010012000000600060008005010b0101000000000000020109"))


def test_iov_cnt_beyond_its_entry_refused(kernel):
    """Fuzz input 219e9e65: iov_cnt read past the entry (and the map): a struct.error."""
    ring = CommandRing(kernel.view)
    kernel.submit(INQUIRY, data_in_len=96)
    struct.pack_into("<I", kernel.mm, kernel.cmdr_off + 8, 0x10000)
    with pytest.raises(TcmuError, match="iovecs in a"):
        list(ring.entries())
    ft.ring_target(bytes.fromhex("000028000000000000001000002001060002100000020000000000000000"))


def test_entry_running_past_the_head_refused(kernel):
    """An entry longer than what the kernel queued (a PAD of the whole ring) looped
    over the ring for ever."""
    ring = CommandRing(kernel.view)
    kernel.submit(INQUIRY, data_in_len=96)
    struct.pack_into("<I", kernel.mm, kernel.cmdr_off, kernel.cmdr_size | r.OP_PAD)
    with pytest.raises(TcmuError, match="past the head"):
        list(ring.entries())
    ft.ring_target(bytes.fromhex("0000120000006000600001060000800f0000"))


def test_variable_length_cdb_at_the_end_of_the_map_refused(kernel):
    """A 7Fh opcode in the map's last bytes was an IndexError (its length byte is
    missing)."""
    ring = CommandRing(kernel.view)
    kernel.submit(INQUIRY, data_in_len=96)
    kernel.mm[kernel.size - 3] = 0x7F
    struct.pack_into("<Q", kernel.mm, kernel.cmdr_off + 24, kernel.size - 3)
    with pytest.raises(TcmuError, match="CDB at"):
        list(ring.entries())
    ft.ring_target(bytes.fromhex(
        "0000120000006000600002070005fd0f01000000000008fd0f01007f"))


# --- what the xcopy target found ---------------------------------------------------------------
OOM_INPUT = (
    "000008110060000000000000003000000000e40000000103001060014056001405aaaaaaaaaaaaaa"
    "aaaa0000000000000200e40100000103001060014056001405bbbbbbbbbbbbbbbbbb00000000fffe"
    "0000e40000000103001060014056001405aaaaaaaaaaaaaaaaaa0000000000000000000000140000"
    "00013b00020000000002000000000000000001000014000100020000100000000001000000000000"
    "0000"
)


def _copy(plist: bytes):
    lab = ft.lab()
    with lab.armed():
        lab.reset(tapes=True)
        cdb = xcopy.ExtendedCopyLid1(parameter_list_length=len(plist)).encode()
        return ft.run(lab, lab.disks["fz-disk"], cdb, len(plist), plist)


def test_stream_transfer_beyond_the_reported_maximum_refused():
    """Fuzz input a0de1203 (xcopy): a FIXED CSCD of STREAM BLOCK LENGTH 16646144 and a
    TRANSFER LENGTH of 512 blocks asked for 8 GiB per WRITE; the copy manager allocated
    twice that and the daemon ran out of memory. More than MAXIMUM STREAM DEVICE TRANSFER
    SIZE is now COPY ABORTED, INVALID FIELD IN PARAMETER LIST."""
    data = bytes.fromhex(OOM_INPUT)
    ft.xcopy_target(data)
    got = _copy(data[2:])
    assert (got.status, got.sense[2] & 0xF, got.sense[12:14]) == (2, 0x0A, b"\x26\x00")


def test_fixed_stream_transfer_length_zero_refused():
    """A FIXED CSCD with STREAM DEVICE TRANSFER LENGTH 0 spun the copy's worker for ever
    (found while fixing the above)."""
    lab = ft.lab()
    disk = xcopy.IdentificationCscd(ft._naa(lab.disks["fz-disk"]), 0, block_length=512)
    tape = xcopy.IdentificationCscd(ft._naa(lab.tapes["fz-tape"]), 1, block_length=512,
                                    fixed=True)
    got = _copy(xcopy.build_extended_copy([disk, tape], [xcopy.BlockToStream(0, 1, 4, 0, 0)]))
    assert (got.status, got.sense[2] & 0xF, got.sense[12:14]) == (2, 0x0A, b"\x26\x00")
