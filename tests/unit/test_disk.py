"""The SBC disk over temp files, and the backing store under it."""

from __future__ import annotations

import errno
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plugins.sbc_disk import (
    BLOCKS,
    BS,
    IDENTITY,
    data_in,
    fails,
    file_bytes,
    filled,
    key_asc,
    open_disk,
    pattern,
    run,
    scatter,
)

from lio_xcopy.devices.backing import BackingStore
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.disk import Disk
from lio_xcopy.errors import BackingStoreError, ConfigError
from lio_xcopy.scsi import sbc, spc
from lio_xcopy.scsi.errors import CheckCondition, HardwareError, LbaOutOfRange
from lio_xcopy.scsi.sense import SenseKey


@pytest.fixture
def disk(tmp_path):
    d = open_disk(tmp_path / "disk.img")
    yield d
    d.close()


# --- backing store -------------------------------------------------------------------------
def test_store_creates_sparse_file(tmp_path):
    path = tmp_path / "new.img"
    with BackingStore(path, create=True, size=1 << 30) as s:
        assert s.size == 1 << 30 and not s.block_device and not s.read_only
        st = os.fstat(s.fd)
        assert st.st_size == 1 << 30
        assert st.st_blocks * 512 < 1 << 20
        assert os.get_inheritable(s.fd) is False
    assert s.closed


def test_store_extends_but_never_shrinks(tmp_path):
    path = tmp_path / "f.img"
    path.write_bytes(b"x" * 4096)
    with BackingStore(path, create=True, size=8192) as s:
        assert s.size == 8192
    with BackingStore(path, create=True, size=1024) as s:
        assert s.size == 8192
    assert path.read_bytes()[:4096] == b"x" * 4096


def test_store_opens_existing_and_read_only(tmp_path):
    path = tmp_path / "f.img"
    path.write_bytes(bytes(3000))
    with BackingStore(path) as s:
        assert s.size == 3000
    with BackingStore(path, read_only=True) as s:
        assert s.read_only
        with pytest.raises(OSError):
            os.pwrite(s.fd, b"a", 0)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({}, "create=True"),
        ({"create": True}, "size"),
        ({"create": True, "size": 10, "read_only": True}, "read-only"),
        ({"size": 10}, "create=True"),
    ],
)
def test_store_errors_say_what_to_do(tmp_path, kwargs, words):
    with pytest.raises(BackingStoreError, match=words):
        BackingStore(tmp_path / "missing.img", **kwargs)


def test_store_rejects_directory_and_char_device(tmp_path):
    with pytest.raises(BackingStoreError, match="cannot open"):
        BackingStore(tmp_path)
    with pytest.raises(BackingStoreError, match="block device"):
        BackingStore("/dev/null")


def test_store_fsync_and_fdatasync(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(("fsync", fd)))
    monkeypatch.setattr(os, "fdatasync", lambda fd: calls.append(("fdatasync", fd)))
    with BackingStore(tmp_path / "f.img", create=True, size=4096) as s:
        s.fsync()
        s.fsync(data_only=True)
        assert calls == [("fsync", s.fd), ("fdatasync", s.fd)]
        s.close()
    s.close()


def test_store_refresh_size(tmp_path):
    path = tmp_path / "f.img"
    with BackingStore(path, create=True, size=4096) as s:
        os.truncate(path, 8192)
        assert s.refresh_size() == 8192 == s.size


# --- construction and identity -------------------------------------------------------------
@pytest.mark.parametrize("bs", [0, 256, 520, 3000, 131072])
def test_bad_block_size(tmp_path, bs):
    store = BackingStore(tmp_path / "d.img", create=True, size=1 << 20)
    with pytest.raises(ConfigError, match="block size"):
        Disk(IDENTITY, store, bs)
    store.close()


def test_store_smaller_than_a_block(tmp_path):
    store = BackingStore(tmp_path / "d.img", create=True, size=100)
    with pytest.raises(ConfigError, match="less than one"):
        Disk(IDENTITY, store, 512)
    store.close()


def test_partial_trailing_block_is_not_served(tmp_path):
    store = BackingStore(tmp_path / "d.img", create=True, size=10 * 4096 + 100)
    d = Disk(IDENTITY, store, 4096)
    assert d.blocks == 10
    d.close()


def test_standard_inquiry(disk):
    data = data_in(disk, spc.Inquiry(allocation_length=96))
    assert data[0] == 0x00
    assert data[5] & 0x08 == 0  # 3PC
    assert struct.unpack_from(">3H", data, 58) == (0x00A0, 0x0460, 0x0600)


def test_supported_vpd_pages(disk):
    data = data_in(disk, spc.Inquiry(evpd=1, page_code=0, allocation_length=255))
    assert data[4:] == bytes([0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2])


def test_vpd_block_limits(tmp_path):
    d = open_disk(tmp_path / "d.img", max_transfer_length=128)
    data = data_in(d, spc.Inquiry(evpd=1, page_code=0xB0, allocation_length=255))
    assert len(data) == 64
    assert data[:4] == bytes.fromhex("00b0003c")
    assert struct.unpack_from(">II", data, 8) == (128, 128)  # MAXIMUM, OPTIMAL TRANSFER
    d.close()


def test_vpd_block_device_characteristics(disk):
    data = data_in(disk, spc.Inquiry(evpd=1, page_code=0xB1, allocation_length=255))
    assert data[:6] == bytes.fromhex("00b1003c0001")
    assert len(data) == 64


def test_test_unit_ready(disk):
    assert run(disk, spc.TestUnitReady()) == 0


# --- READ and WRITE ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("layout", "lba", "count"),
    [
        (sbc.Write10, 0, 1),
        (sbc.Write10, 5, 3),
        (sbc.Write16, 17, 9),
        (sbc.Write6, 40, 24),  # up to the last block
        (sbc.Write16, BLOCKS - 1, 1),
    ],
)
def test_read_after_write(disk, layout, lba, count):
    payload = pattern(count * BS, seed=lba)
    assert run(disk, layout(lba=lba, transfer_length=count), filled(payload)) == 0
    assert file_bytes(disk)[lba * BS : (lba + count) * BS] == payload
    for read in sbc.READS:
        if read is sbc.Read6 and count == 256:
            continue
        buf = scatter(count * BS)
        assert run(disk, read(lba=lba, transfer_length=count), buf) == count * BS
        assert buf.tobytes() == payload


def test_write_leaves_neighbours_alone(disk):
    run(disk, sbc.Write10(lba=0, transfer_length=BLOCKS), filled(pattern(BLOCKS * BS)))
    before = file_bytes(disk)
    run(disk, sbc.Write10(lba=10, transfer_length=2), filled(b"\xee" * 2 * BS))
    after = file_bytes(disk)
    assert after[: 10 * BS] == before[: 10 * BS]
    assert after[10 * BS : 12 * BS] == b"\xee" * 2 * BS
    assert after[12 * BS :] == before[12 * BS :]


def test_longer_read_buffer_moves_only_the_blocks(disk):
    """Underflow on Data-In: the CDB's blocks, and their length for read_len."""
    run(disk, sbc.Write10(lba=3, transfer_length=1), filled(b"\x55" * BS))
    buf = DataBuffer.allocate(4 * BS)
    buf.copy_in(b"\xaa" * 4 * BS)
    assert run(disk, sbc.Read10(lba=3, transfer_length=1), buf) == BS
    assert buf.tobytes() == b"\x55" * BS + b"\xaa" * 3 * BS


def test_six_byte_transfer_length_zero_means_256(tmp_path):
    d = open_disk(tmp_path / "d.img", blocks=300)
    payload = pattern(256 * BS, seed=9)
    assert run(d, sbc.Write6(lba=2, transfer_length=0), filled(payload)) == 0
    buf = scatter(256 * BS)
    assert run(d, sbc.Read6(lba=2, transfer_length=0), buf) == 256 * BS
    assert buf.tobytes() == payload
    sense = fails(d, sbc.Read6(lba=45, transfer_length=0), scatter(256 * BS))
    assert key_asc(sense) == (5, 0x21, 0x00)
    d.close()


def test_zero_length_transfers(disk):
    assert run(disk, sbc.Read10(lba=BLOCKS, transfer_length=0)) == 0
    assert run(disk, sbc.Write16(lba=0, transfer_length=0)) == 0
    assert key_asc(fails(disk, sbc.Read10(lba=BLOCKS + 1, transfer_length=0))) == (5, 0x21, 0)


@pytest.mark.parametrize(
    ("layout", "lba", "count"),
    [
        (sbc.Read10, BLOCKS - 1, 2),
        (sbc.Read16, BLOCKS, 1),
        (sbc.Read16, 2**64 - 1, 1),
        (sbc.Write10, 0, BLOCKS + 1),
        (sbc.Write16, 2**63, 2**32 - 1),
        (sbc.Write6, BLOCKS - 3, 4),
    ],
)
def test_out_of_range(disk, layout, lba, count):
    before = file_bytes(disk)
    buf = filled(pattern(min(count, BLOCKS + 1) * BS)) if count <= BLOCKS + 1 else DataBuffer()
    sense = fails(disk, layout(lba=lba, transfer_length=count), buf)
    assert key_asc(sense) == (SenseKey.ILLEGAL_REQUEST, 0x21, 0x00)
    assert file_bytes(disk) == before


def test_out_of_range_reports_the_lba(disk):
    with pytest.raises(LbaOutOfRange) as exc:
        run(disk, sbc.Read10(lba=BLOCKS - 1, transfer_length=2), scatter(2 * BS))
    assert exc.value.sense.information == BLOCKS - 1


@pytest.mark.parametrize(("layout", "nbytes"), [
    (sbc.Read10, 4 * BS - 1),  # overflow: TCMU could not report its residual
    (sbc.Read16, 0),
    (sbc.Write16, 4 * BS - 1),  # overflow
    (sbc.Write10, 4 * BS + 1),  # underflow: TCMU reports no residual for Data-Out
    (sbc.Write6, 8 * BS),
    (sbc.WriteAndVerify16, 5 * BS),
])
def test_expected_length_other_than_the_cdbs(disk, layout, nbytes):
    """ILLEGAL REQUEST, INVALID FIELD IN COMMAND INFORMATION UNIT (0Eh/03h) without a
    field pointer, nothing moved: LIO's answer to a WRITE so mismatched (FCP-4 9.4.2 b)."""
    before = file_bytes(disk)
    buf = filled(pattern(nbytes, seed=3)) if nbytes else DataBuffer()
    snapshot = buf.tobytes()
    sense = fails(disk, layout(lba=2, transfer_length=4), buf)
    assert key_asc(sense) == (SenseKey.ILLEGAL_REQUEST, 0x0E, 0x03)
    assert sense[15] & 0x80 == 0  # SKSV clear
    assert file_bytes(disk) == before
    assert buf.tobytes() == snapshot  # a Data-In buffer got nothing either


def test_range_is_checked_before_the_expected_length(disk):
    """LIO checks the LBA range (sbc_parse_cdb) before the length (target_cmd_size_check)."""
    sense = fails(disk, sbc.Write10(lba=BLOCKS - 1, transfer_length=2), filled(bytes(BS)))
    assert key_asc(sense) == (SenseKey.ILLEGAL_REQUEST, 0x21, 0x00)


def test_narrow_methods_check_range_and_buffer(disk):
    buf = scatter(3 * BS)
    with pytest.raises(LbaOutOfRange):
        disk.read_blocks(BLOCKS - 2, 3, buf)
    with pytest.raises(LbaOutOfRange):
        disk.write_blocks(-1, 1, buf)
    with pytest.raises(HardwareError):
        disk.read_blocks(0, 4, buf)
    before = file_bytes(disk)
    with pytest.raises(HardwareError):
        disk.write_blocks(0, 4, buf)
    assert file_bytes(disk) == before
    buf.copy_in(pattern(3 * BS))
    assert disk.write_blocks(BLOCKS - 3, 3, buf) == 3 * BS
    out = scatter(3 * BS, cuts=(511, 2))
    assert disk.read_blocks(BLOCKS - 3, 3, out) == 3 * BS
    assert out.tobytes() == pattern(3 * BS)


@pytest.mark.parametrize(
    ("cdb", "sks"),
    [
        (sbc.Read10(rdprotect=1, transfer_length=1), "cf0001"),
        (sbc.Read16(rdprotect=7, transfer_length=1), "cf0001"),
        (sbc.Write10(wrprotect=2, transfer_length=1), "cf0001"),
        (sbc.Write16(wrprotect=4, transfer_length=1), "cf0001"),
    ],
)
def test_protection_fields_rejected(disk, cdb, sks):
    sense = fails(disk, cdb, filled(pattern(BS)))
    assert key_asc(sense) == (5, 0x24, 0x00)
    assert sense[15:18] == bytes.fromhex(sks)


def test_max_transfer_length(tmp_path):
    d = open_disk(tmp_path / "d.img", max_transfer_length=8)
    assert run(d, sbc.Read10(transfer_length=8), scatter(8 * BS)) == 8 * BS
    sense = fails(d, sbc.Read10(transfer_length=9), scatter(9 * BS))
    assert key_asc(sense) == (5, 0x24, 0) and sense[15:18] == bytes.fromhex("c00007")
    d.close()


def test_unknown_opcode(disk):
    sense = fails(disk, bytes([0x04]) + bytes(5))  # FORMAT UNIT
    assert key_asc(sense) == (5, 0x20, 0x00)
    assert sense[15:18] == bytes.fromhex("c00000")


def test_unknown_service_action_of_9eh(disk):
    sense = fails(disk, bytes([0x9E, 0x13]) + bytes(14))  # REPORT REFERRALS
    assert key_asc(sense) == (5, 0x24, 0x00)
    assert sense[15:18] == bytes.fromhex("cc0001")


# --- write protection, FUA, caches, I/O errors ---------------------------------------------
def test_write_to_read_only_disk(tmp_path):
    path = tmp_path / "d.img"
    d = open_disk(path, read_only=True)
    sense = fails(d, sbc.Write10(lba=0, transfer_length=1), filled(pattern(BS)))
    assert key_asc(sense) == (SenseKey.DATA_PROTECT, 0x27, 0x00)
    assert file_bytes(d) == bytes(BLOCKS * BS)
    header = data_in(d, spc.ModeSense6(page_code=0x3F, allocation_length=255))
    assert header[2] == 0x90  # WP, DPOFUA
    d.close()
    store = BackingStore(path, read_only=True)
    d = Disk(IDENTITY, store)
    assert key_asc(fails(d, sbc.Write6(lba=1, transfer_length=1), filled(pattern(BS))))[0] == 7
    assert run(d, sbc.Read6(lba=1, transfer_length=1), scatter(BS)) == BS
    d.close()


@pytest.fixture
def syncs(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync"))
    monkeypatch.setattr(os, "fdatasync", lambda fd: calls.append("fdatasync"))
    return calls


@pytest.fixture
def write_flags(monkeypatch):
    """The pwritev2 flags of every write to a backing store."""
    flags: list[int] = []
    real = os.pwritev

    def pwritev(fd, views, offset, f=0):
        flags.append(f)
        return real(fd, views, offset, f)

    monkeypatch.setattr(os, "pwritev", pwritev)
    return flags


@pytest.mark.parametrize("layout", [*sbc.WRITES[1:], *sbc.WRITE_AND_VERIFIES])
def test_fua_writes_with_rwf_dsync(disk, syncs, write_flags, layout):
    """FUA makes the written blocks durable before GOOD (SBC-4 5.37) with RWF_DSYNC:
    these bytes only, without an fdatasync of the whole store. WRITE AND VERIFY always
    does (the verify reads the medium)."""
    always = layout in sbc.WRITE_AND_VERIFIES
    run(disk, layout(lba=1, transfer_length=1), filled(pattern(BS)))
    assert write_flags == [os.RWF_DSYNC if always else 0]
    run(disk, layout(lba=2, transfer_length=1, fua=1, dpo=1) if not always
        else layout(lba=2, transfer_length=1, dpo=1), filled(pattern(BS, 2)))
    assert write_flags[-1] == os.RWF_DSYNC
    assert syncs == []
    assert file_bytes(disk)[BS : 3 * BS] == pattern(BS) + pattern(BS, 2)


@pytest.mark.parametrize("layout", sbc.READS[1:])
def test_fua_and_dpo_reads_need_no_sync(disk, syncs, layout):
    """A FUA read reads the backing file through the page cache, which is the file's
    content: we keep no volatile cache to bypass (SBC-4 5.13), so nothing is synced."""
    os.pwrite(disk.store.fd, pattern(BS, 3), 5 * BS)
    buf = scatter(BS)
    assert run(disk, layout(lba=5, transfer_length=1, fua=1, dpo=1), buf) == BS
    assert buf.tobytes() == pattern(BS, 3)
    assert syncs == []


@pytest.mark.parametrize("layout", [sbc.SynchronizeCache10, sbc.SynchronizeCache16])
def test_synchronize_cache(disk, syncs, layout):
    assert run(disk, layout()) == 0
    assert run(disk, layout(lba=BLOCKS - 4, number_of_blocks=4, immed=1)) == 0
    assert syncs == ["fsync", "fsync"]
    for lba, n in ((BLOCKS, 0), (BLOCKS - 4, 5)):
        sense = fails(disk, layout(lba=lba, number_of_blocks=n))
        assert key_asc(sense) == (5, 0x21, 0x00)
    assert syncs == ["fsync", "fsync"]


def test_flush_and_close(disk, syncs):
    disk.flush()
    assert syncs == ["fsync"]
    disk.close()
    assert disk.store.closed
    disk.flush()
    assert syncs == ["fsync"]
    sense = fails(disk, sbc.Read10(lba=0, transfer_length=1), scatter(BS))
    assert key_asc(sense) == (SenseKey.MEDIUM_ERROR, 0x11, 0x00)


def test_read_error_is_medium_error(disk, monkeypatch):
    def eio(*a):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "preadv", eio)
    with pytest.raises(CheckCondition) as exc:
        run(disk, sbc.Read10(lba=7, transfer_length=2), scatter(2 * BS))
    sense = exc.value.sense
    assert (sense.key, sense.asc, sense.information) == (SenseKey.MEDIUM_ERROR, 0x1100, 7)


def test_write_error_is_medium_error(disk, monkeypatch):
    def eio(*a):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "pwritev", eio)
    with pytest.raises(CheckCondition) as exc:
        run(disk, sbc.Write16(lba=9, transfer_length=1), filled(pattern(BS)))
    sense = exc.value.sense
    assert (sense.key, sense.asc, sense.information) == (SenseKey.MEDIUM_ERROR, 0x0C00, 9)


def test_sync_error_is_write_error(disk, monkeypatch):
    def eio(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", eio)
    monkeypatch.setattr(os, "fsync", eio)
    assert key_asc(fails(disk, sbc.SynchronizeCache10())) == (3, 0x0C, 0x00)
    with pytest.raises(BackingStoreError):
        disk.flush()


def test_store_shrunk_underneath_is_a_read_error(disk):
    os.ftruncate(disk.store.fd, 10 * BS + 100)
    with pytest.raises(CheckCondition) as exc:
        run(disk, sbc.Read10(lba=8, transfer_length=4), scatter(4 * BS))
    sense = exc.value.sense
    assert (sense.key, sense.asc, sense.information) == (SenseKey.MEDIUM_ERROR, 0x1100, 10)


# --- READ CAPACITY -------------------------------------------------------------------------
def test_read_capacity_10(disk):
    assert data_in(disk, sbc.ReadCapacity10()) == struct.pack(">II", BLOCKS - 1, BS)
    assert data_in(disk, sbc.ReadCapacity10(pmi=1, lba=5)) == struct.pack(">II", BLOCKS - 1, BS)


def test_read_capacity_10_too_big(disk):
    disk.blocks = 2**32 + 5
    assert data_in(disk, sbc.ReadCapacity10()) == struct.pack(">II", 0xFFFFFFFF, BS)
    data = data_in(disk, sbc.ReadCapacity16(allocation_length=32))
    assert struct.unpack_from(">QI", data) == (2**32 + 4, BS)


def test_read_capacity_lba_without_pmi(disk):
    sense = fails(disk, sbc.ReadCapacity10(lba=1))
    assert key_asc(sense) == (5, 0x24, 0x00)
    assert sense[15:18] == bytes.fromhex("c00002")
    sense = fails(disk, sbc.ReadCapacity16(lba=1, allocation_length=32))
    assert sense[15:18] == bytes.fromhex("c00002")
    assert key_asc(fails(disk, sbc.ReadCapacity10(lba=BLOCKS, pmi=1))) == (5, 0x21, 0x00)


def test_read_capacity_16(tmp_path):
    d = open_disk(tmp_path / "d.img", blocks=100, bs=4096)
    data = data_in(d, sbc.ReadCapacity16(allocation_length=32))
    assert len(data) == 32
    assert struct.unpack_from(">QI", data) == (99, 4096)
    assert data[12] == 0x10  # RC BASIS 01b, no protection
    assert data_in(d, sbc.ReadCapacity16(allocation_length=12)) == data[:12]
    assert data_in(d, sbc.ReadCapacity16(allocation_length=0)) == b""
    d.close()


# --- MODE SENSE / MODE SELECT --------------------------------------------------------------
def split_pages(pages: bytes) -> dict[int, bytes]:
    out, pos = {}, 0
    while pos < len(pages):
        out[pages[pos] & 0x3F] = pages[pos : pos + 2 + pages[pos + 1]]
        pos += 2 + pages[pos + 1]
    return out


def test_mode_sense_6(disk):
    data = data_in(disk, spc.ModeSense6(page_code=0x3F, allocation_length=255))
    assert data[0] == len(data) - 1 == 4 + 8 + 20 + 12 - 1
    assert data[1:4] == bytes([0x00, 0x10, 0x08])  # medium type, DPOFUA, descriptor length
    assert sbc.parse_short_block_descriptor(data[4:12]) == (BLOCKS, 0, BS)
    pages = split_pages(data[12:])
    assert pages[0x08][:3] == bytes.fromhex("081204")  # WCE
    assert pages[0x0A][:3] == bytes.fromhex("0a0a02")  # GLTSD
    assert set(pages) == {0x08, 0x0A}


def test_mode_sense_10(disk):
    data = data_in(disk, spc.ModeSense10(page_code=0x08, allocation_length=255))
    mode_data_length, medium, dsp, bdl = struct.unpack_from(">HBBxxH", data)
    assert mode_data_length == len(data) - 2 == 8 + 8 + 20 - 2
    assert (medium, dsp, bdl) == (0, 0x10, 8)
    assert data[8:16] == sbc.short_block_descriptor(BLOCKS, BS)
    assert data[16:] == sbc.caching_mode_page(wce=True)
    data = data_in(disk, spc.ModeSense10(dbd=1, page_code=0x0A, allocation_length=255))
    assert struct.unpack_from(">H", data, 6)[0] == 0
    assert data[8:] == sbc.control_mode_page(gltsd=True, tas=True)


def test_mode_sense_truncated_keeps_full_length(disk):
    data = data_in(disk, spc.ModeSense6(page_code=0x3F, allocation_length=4))
    assert data == bytes([43, 0, 0x10, 8])


def test_mode_sense_page_control(disk):
    changeable = data_in(disk, spc.ModeSense6(dbd=1, pc=1, page_code=0x3F, allocation_length=255))
    pages = split_pages(changeable[4:])
    assert pages[0x08] == bytes.fromhex("081204") + bytes(17)
    assert pages[0x0A] == bytes.fromhex("0a0a") + bytes(10)
    default = data_in(disk, spc.ModeSense6(dbd=1, pc=2, page_code=0x08, allocation_length=255))
    assert default[4:] == sbc.caching_mode_page(wce=True)
    sense = fails(disk, spc.ModeSense10(pc=3, page_code=0x08, allocation_length=255))
    assert key_asc(sense) == (5, 0x39, 0x00)
    assert sense[15:18] == bytes.fromhex("cf0002")


def test_mode_sense_unknown_page(disk):
    sense = fails(disk, spc.ModeSense6(page_code=0x1C, allocation_length=255))
    assert key_asc(sense) == (5, 0x24, 0x00)


def mode_select(d: Disk, data: bytes, ten: bool = False, **kw) -> int:
    layout = spc.ModeSelect10 if ten else spc.ModeSelect6
    cdb = layout(pf=1, parameter_list_length=len(data), **kw)
    return run(d, cdb, DataBuffer.of(bytearray(data)))


def sensed(d: Disk, ten: bool = False) -> bytes:
    layout = spc.ModeSense10 if ten else spc.ModeSense6
    return data_in(d, layout(page_code=0x3F, allocation_length=255))


@pytest.mark.parametrize("ten", [False, True])
def test_mode_select_echo_is_accepted(disk, ten):
    assert mode_select(disk, sensed(disk, ten), ten) == 0
    assert disk.write_cache


def test_mode_select_nothing(disk):
    assert run(disk, spc.ModeSelect6(pf=1, parameter_list_length=0)) == 0
    assert mode_select(disk, bytes(4)) == 0


def test_mode_select_clears_wce(disk, syncs, write_flags):
    data = bytearray(sensed(disk))
    data[0] = 0  # MODE DATA LENGTH is reserved in MODE SELECT
    data[12 + 2] &= ~sbc.WCE
    assert mode_select(disk, bytes(data)) == 0
    assert syncs == ["fdatasync"]
    assert not disk.write_cache
    assert split_pages(sensed(disk)[12:])[0x08][2] == 0
    run(disk, sbc.Write10(lba=0, transfer_length=1), filled(pattern(BS)))
    assert syncs == ["fdatasync"] and write_flags == [os.RWF_DSYNC]
    data[12 + 2] |= sbc.WCE
    assert mode_select(disk, bytes(data)) == 0
    assert disk.write_cache


@pytest.mark.parametrize(
    ("offset", "value", "sks"),
    [
        (12 + 2, 0x05, "88000e"),  # RCD: byte 14 bit 0
        (12 + 12, 0x20, "8d0018"),  # DRA: byte 24 bit 5
        (32 + 2, 0x06, "8a0022"),  # control page D_SENSE: byte 34 bit 2
        (4 + 6, 0x10, "800009"),  # block length 512 -> 4096: descriptor byte 5
        (4 + 3, 0x07, "800004"),  # number of blocks changed
        (1, 0x05, "800001"),  # medium type
    ],
)
def test_mode_select_rejects_changes(disk, offset, value, sks):
    data = bytearray(sensed(disk))
    data[offset] = value
    sense = fails(disk, spc.ModeSelect6(pf=1, parameter_list_length=len(data)),
                  DataBuffer.of(data))
    assert key_asc(sense) == (5, 0x26, 0x00)
    assert sense[15:18] == bytes.fromhex(sks)
    assert disk.write_cache


def test_mode_select_unknown_page_and_bad_length(disk):
    unknown = bytes(4) + bytes.fromhex("1c0a") + bytes(10)
    sense = fails(disk, spc.ModeSelect6(pf=1, parameter_list_length=len(unknown)),
                  DataBuffer.of(bytearray(unknown)))
    assert key_asc(sense) == (5, 0x26, 0x00) and sense[15:18] == bytes.fromhex("8d0004")
    short = bytes(4) + bytes.fromhex("0810") + bytes(16)
    sense = fails(disk, spc.ModeSelect6(pf=1, parameter_list_length=len(short)),
                  DataBuffer.of(bytearray(short)))
    assert key_asc(sense) == (5, 0x26, 0x00) and sense[15:18] == bytes.fromhex("800005")


def test_mode_select_rejects_subpages(disk):
    sub = bytes(4) + bytes.fromhex("4800000e") + bytes(14)  # caching page in subpage form
    sense = fails(disk, spc.ModeSelect6(pf=1, parameter_list_length=len(sub)),
                  DataBuffer.of(bytearray(sub)))
    assert key_asc(sense) == (5, 0x26, 0x00) and sense[15:18] == bytes.fromhex("8e0004")


def test_mode_select_cdb_checks(disk):
    data = sensed(disk)
    sense = fails(disk, spc.ModeSelect6(pf=1, sp=1, parameter_list_length=len(data)),
                  DataBuffer.of(bytearray(data)))
    assert key_asc(sense) == (5, 0x24, 0x00) and sense[15:18] == bytes.fromhex("c80001")
    sense = fails(disk, spc.ModeSelect6(pf=0, parameter_list_length=len(data)),
                  DataBuffer.of(bytearray(data)))
    assert key_asc(sense) == (5, 0x24, 0x00) and sense[15:18] == bytes.fromhex("cc0001")
    sense = fails(disk, spc.ModeSelect6(pf=1, parameter_list_length=len(data) + 1),
                  DataBuffer.of(bytearray(data)))
    assert key_asc(sense) == (5, 0x1A, 0x00)


# --- REPORT SUPPORTED OPERATION CODES ------------------------------------------------------
def test_report_all_commands_lists_the_block_commands(disk):
    cdb = spc.ReportSupportedOperationCodes(allocation_length=4096)
    data = data_in(disk, cdb, 4096)
    length = struct.unpack_from(">I", data)[0]
    assert length == len(data) - 4
    listed = {}
    for pos in range(4, len(data), 8):
        op, sa, flags, cdb_len = struct.unpack_from(">BxHxBH", data, pos)
        listed[(op, sa if flags & 1 else None)] = cdb_len
    for layout in (*sbc.READS, *sbc.WRITES, sbc.ReadCapacity10, sbc.SynchronizeCache10,
                   sbc.SynchronizeCache16, spc.ModeSelect6, spc.ModeSelect10):
        assert listed[(layout.OPCODE, None)] == layout.LENGTH
    assert listed[(0x9E, 0x10)] == 16


def test_report_one_command_read_10(disk):
    cdb = spc.ReportSupportedOperationCodes(reporting_options=1, requested_operation_code=0x28,
                                               allocation_length=64)
    data = data_in(disk, cdb)
    assert data[1] & 0x07 == 0b011
    assert struct.unpack_from(">H", data, 2)[0] == 10
    assert data[4:14] == bytes.fromhex("28fcffffffff1fffffff")


def test_report_one_command_read_capacity_16(disk):
    cdb = spc.ReportSupportedOperationCodes(
        reporting_options=2, requested_operation_code=0x9E, requested_service_action=0x10,
        allocation_length=64,
    )
    data = data_in(disk, cdb)
    assert data[1] & 0x07 == 0b011
    # SPC-4 6.35.3: the SERVICE ACTION field holds the service action code, not a mask
    assert data[4:20] == bytes.fromhex("9e10ffffffffffffffffffffffff01ff")


# --- properties ----------------------------------------------------------------------------
PBLOCKS = 24


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = open_disk(tmp_path_factory.mktemp("prop") / "d.img", blocks=PBLOCKS)
    shadow = bytearray(PBLOCKS * BS)
    yield d, shadow
    d.close()


cuts = st.lists(st.integers(1, 1500), max_size=5)


@settings(max_examples=60, deadline=None)
@given(
    lba=st.integers(0, PBLOCKS - 1),
    count=st.integers(0, PBLOCKS),
    seed=st.integers(0, 255),
    wcuts=cuts,
    rcuts=cuts,
    sixteen=st.booleans(),
)
def test_in_range_write_then_read(model, lba, count, seed, wcuts, rcuts, sixteen):
    d, shadow = model
    count = min(count, PBLOCKS - lba)
    payload = pattern(count * BS, seed)
    write, read = (sbc.Write16, sbc.Read16) if sixteen else (sbc.Write10, sbc.Read10)
    run(d, write(lba=lba, transfer_length=count), filled(payload, tuple(wcuts)))
    shadow[lba * BS : (lba + count) * BS] = payload
    buf = scatter(count * BS, tuple(rcuts))
    assert run(d, read(lba=lba, transfer_length=count), buf) == count * BS
    assert buf.tobytes() == payload
    assert file_bytes(d) == shadow


@settings(max_examples=60, deadline=None)
@given(lba=st.integers(0, 2**64 - 1), count=st.integers(1, 2 * PBLOCKS), write=st.booleans())
def test_out_of_range_changes_nothing(model, lba, count, write):
    d, shadow = model
    if lba + count <= PBLOCKS:
        lba = PBLOCKS - count + 1 + lba % count
    buf = filled(pattern(count * BS)) if write else scatter(count * BS)
    with pytest.raises(LbaOutOfRange):
        if write:
            d.write_blocks(lba, count, buf)
        else:
            d.read_blocks(lba, count, buf)
    assert file_bytes(d) == shadow
    if not write:
        assert buf.tobytes() == bytes(count * BS)
