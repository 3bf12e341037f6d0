"""The SMC-3 changer LUN through ``MediumChanger.handle``: what mtx and ch send."""

from __future__ import annotations

import struct

import pytest
from plugins.fake_library import DRIVE, IE, SLOT, FakeDrive

from lio_xcopy.control import library as ops
from lio_xcopy.devices.awstape import AwsTape
from lio_xcopy.devices.base import Command, LunIdentity
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.changer import MediumChanger
from lio_xcopy.errors import ConfigError
from lio_xcopy.scsi import smc, spc, ssc
from lio_xcopy.scsi.errors import CheckCondition
from lio_xcopy.scsi.sense import Asc, SenseKey
from lio_xcopy.tcmu.handler import Libraries, open_device

MiB = 1 << 20
ID = LunIdentity("changer0", "0b7c6a2e-4f0e-4a44-9d1b-5d6c7e8f9a0b")


@pytest.fixture
def lib(tmp_path):
    return ops.create_library(tmp_path / "lib", slots=4, ie_slots=2, drives=2, capacity=2 * MiB,
                              barcodes=ops.lto_barcodes(3))


@pytest.fixture
def changer(lib):
    return MediumChanger(ID, lib)


def run(dev, cdb: bytes, alloc: int = 4096) -> bytes:
    buf = DataBuffer.allocate(alloc)
    n = dev.handle(Command(cdb, buf))
    return buf.tobytes(n)


def check(dev, cdb: bytes) -> tuple[SenseKey, int, bytes | None]:
    with pytest.raises(CheckCondition) as e:
        run(dev, cdb)
    s = e.value.sense
    return s.key, s.asc, s.sense_key_specific


def res(etype=0, start=0, count=0xFFFF, voltag=1, dvcid=0, alloc=0xFFFF) -> bytes:
    return smc.ReadElementStatus(voltag=voltag, element_type_code=etype,
                                   starting_element_address=start, number_of_elements=count,
                                   dvcid=dvcid, allocation_length=alloc).encode()


def move(src: int, dst: int, transport: int = 0, invert: int = 0) -> bytes:
    return smc.MoveMedium(transport_element_address=transport, source_address=src,
                           destination_address=dst, invert=invert).encode()


def pages(data: bytes) -> list[tuple[int, int, list[bytes]]]:
    """(type, PVolTag/AVolTag byte, descriptors) of each element status page."""
    out, at = [], 8
    while at < len(data):
        typ, flags, dlen, count = struct.unpack_from(">BBHI", data, at)
        body = data[at + 8: at + 8 + count]
        out.append((typ, flags, [body[i: i + dlen] for i in range(0, count, dlen)]))
        at += 8 + count
    return out


def test_inquiry_is_a_medium_changer_without_3pc(changer):
    changer.copy_manager = object()  # the daemon registers every LUN; a changer ignores it
    data = run(changer, spc.Inquiry(allocation_length=96).encode())
    assert data[0] == 0x08 and data[1] & 0x80 and not data[5] & 0x08
    assert struct.pack(">H", 0x0480) in data[58:74]


def test_report_supported_operation_codes_lists_only_what_the_changer_answers(changer):
    """No third-party copy on a changer: REPORT SUPPORTED OPERATION CODES (SPC-4 6.35)
    neither lists EXTENDED COPY nor RECEIVE COPY RESULTS, asked about one it says "not
    supported", and each command it does list is answered, not INVALID COMMAND OPCODE."""
    changer.copy_manager = object()
    data = run(changer, spc.ReportSupportedOperationCodes(allocation_length=4096).encode())
    listed = {d.opcode for d in spc.parse_all_commands(data)}
    assert {0xA5, 0xB8, 0x12} <= listed and not listed & {0x83, 0x84, 0xC5}
    for op, sa in ((0x83, 0x00), (0x84, 0x03), (0x83, 0x1C)):
        one = run(changer, spc.ReportSupportedOperationCodes(
            reporting_options=2, requested_operation_code=op, requested_service_action=sa,
            allocation_length=64).encode())
        assert one[1] & 0x07 == 0b001, (op, sa)  # SUPPORT: not supported
        key, asc, _ = check(changer, bytes([op, sa]) + bytes(14))
        assert (key, asc) == (SenseKey.ILLEGAL_REQUEST, Asc.INVALID_COMMAND_OPERATION_CODE)


def test_all_elements_with_volume_tags(changer, lib):
    lib.move(SLOT + 1, DRIVE + 1)
    data = run(changer, res())
    first, count, total = struct.unpack(">HHI", data[:8])
    assert (first, count, total) == (0x0001, 1 + 2 + 2 + 4, len(data) - 8)
    got = pages(data)
    assert [(t, f, len(d)) for t, f, d in got] == [(1, 0x80, 1), (3, 0x80, 2), (4, 0x80, 2),
                                                   (2, 0x80, 4)]
    mt, ie, dt, st = (d for _, _, d in got)
    assert all(len(x) == 12 + 36 + 4 for x in mt + ie + dt + st)
    assert mt[0][:12] == bytes.fromhex("000100000000000000000000")
    assert ie[0][:3] == bytes.fromhex("001038")  # InEnab ExEnab Access, empty
    assert dt[1][:12] == bytes.fromhex("0101" "09" "00" "0000" "000000" "81" "1001")
    assert dt[1][12:44] == b"L00002L8".ljust(32)
    assert st[0][:12] == bytes.fromhex("1000" "09" "00" "0000" "000000" "01" "0000")
    assert st[1][:3] == bytes.fromhex("100108") and st[1][12:48] == bytes(36)


def test_one_type_from_a_start_address_and_a_count(changer):
    data = run(changer, res(etype=2, start=SLOT + 1, count=2, voltag=0))
    assert struct.unpack(">HHI", data[:8]) == (SLOT + 1, 2, 8 + 2 * 16)
    (typ, flags, descs), = pages(data)
    assert (typ, flags, [d[:2] for d in descs]) == (2, 0, [b"\x10\x01", b"\x10\x02"])


def test_short_allocation_keeps_the_full_byte_count(changer):
    data = run(changer, res(alloc=8))
    assert len(data) == 8 and struct.unpack(">I", data[4:8])[0] == 4 * 8 + 9 * 52


def test_start_beyond_every_element_is_invalid_element_address(changer):
    assert check(changer, res(etype=4, start=0x0102))[:2] == (
        SenseKey.ILLEGAL_REQUEST, Asc.INVALID_ELEMENT_ADDRESS)
    assert check(changer, res(etype=5))[2] == bytes([0xCB, 0, 1])  # type code, bit 3


def test_dvcid_reports_the_drive_naa(changer, lib):
    drive = FakeDrive("tape9")
    lib.attach_drive(0, drive)
    data = run(changer, res(etype=4, voltag=0, dvcid=1))
    (_, _, (d0, d1)), = pages(data)
    naa = spc.naa_ieee_registered_extended("serial-tape9")
    assert d0[12:16] == bytes([1, 3, 0, 16]) and d0[16:] == naa
    assert d1[12:] == bytes(20)  # drive 1 never registered: no identifier yet


def test_move_medium_and_its_sense(changer, lib):
    d0 = FakeDrive("t0")
    lib.attach_drive(0, d0)
    run(changer, move(SLOT + 2, DRIVE))
    assert d0.path == str(lib.path / "L00003L8.aws")
    ir = SenseKey.ILLEGAL_REQUEST
    assert check(changer, move(SLOT + 3, DRIVE + 1))[:2] == (ir, Asc.MEDIUM_SOURCE_ELEMENT_EMPTY)
    assert check(changer, move(SLOT, DRIVE))[:2] == (ir, Asc.MEDIUM_DESTINATION_ELEMENT_FULL)
    assert check(changer, move(0x2000, DRIVE + 1)) == (ir, Asc.INVALID_ELEMENT_ADDRESS,
                                                       bytes([0xC0, 0, 4]))
    assert check(changer, move(SLOT, SLOT + 3, transport=0x1000)) == (
        ir, Asc.INVALID_ELEMENT_ADDRESS, bytes([0xC0, 0, 2]))
    assert check(changer, move(SLOT, SLOT + 3, invert=1)) == (
        ir, Asc.INVALID_FIELD_IN_CDB, bytes([0xC8, 0, 10]))
    d0.removal_prevented = True
    assert check(changer, move(DRIVE, SLOT + 3))[:2] == (ir, Asc.MEDIUM_REMOVAL_PREVENTED)
    run(changer, move(SLOT, SLOT + 3, transport=1))


def test_operator_import_is_a_unit_attention_once(changer, lib, tmp_path):
    f = tmp_path / "NEW001.aws"
    AwsTape(f, MiB, create=True).close()
    ops.import_cartridge(lib.path, f)
    run(changer, spc.Inquiry(allocation_length=36).encode())  # neither reports nor clears
    assert check(changer, spc.TestUnitReady().encode())[:2] == (
        SenseKey.UNIT_ATTENTION, Asc.IMPORT_OR_EXPORT_ELEMENT_ACCESSED)
    run(changer, spc.TestUnitReady().encode())
    ops.create_cartridges(lib.path, ["NEW002"])
    assert check(changer, res())[:2] == (
        SenseKey.UNIT_ATTENTION, Asc.NOT_READY_TO_READY_CHANGE_MEDIUM_MAY_HAVE_CHANGED)
    (_, _, ie), = (p for p in pages(run(changer, res(etype=3))))
    assert ie[0][2] == smc.INENAB | smc.EXENAB | smc.ACCESS | smc.IMPEXP | smc.FULL


def test_prevent_keeps_media_in_the_library(changer, lib, tmp_path):
    run(changer, smc.PreventAllowMediumRemoval(prevent=1).encode())
    assert check(changer, move(SLOT, IE))[:2] == (SenseKey.ILLEGAL_REQUEST,
                                                  Asc.MEDIUM_REMOVAL_PREVENTED)
    run(changer, smc.PreventAllowMediumRemoval(prevent=0).encode())
    run(changer, move(SLOT, IE))
    run(changer, smc.PreventAllowMediumRemoval(prevent=1).encode())
    with pytest.raises(ConfigError, match="door"):
        ops.export_cartridge(lib.path, "L00001L8", tmp_path)
    f = tmp_path / "IN0001.aws"  # importing still works
    AwsTape(f, MiB, create=True).close()
    ops.import_cartridge(lib.path, f)
    assert check(changer, move(IE + 1, SLOT))[0] == SenseKey.UNIT_ATTENTION  # 28h/01h
    run(changer, move(IE + 1, SLOT))
    run(changer, smc.PreventAllowMediumRemoval(prevent=0).encode())
    ops.export_cartridge(lib.path, "L00001L8", tmp_path)
    assert check(changer, spc.TestUnitReady().encode())[1] == (
        Asc.IMPORT_OR_EXPORT_ELEMENT_ACCESSED)
    assert check(changer, smc.PreventAllowMediumRemoval(prevent=2).encode())[2] == bytes(
        [0xC9, 0, 4])


def test_a_restart_ends_the_prevention(lib):
    lib.set_prevent(prevent=True)
    MediumChanger(ID, lib)  # the LUN opens again: a power on
    assert not lib.state().prevent_removal


def test_mode_sense_element_address_assignment_as_mtx_reads_it(changer):
    data = run(changer, bytes([0x1A, 0x08, 0x1D, 0, 136, 0]))
    assert data[3] == 0  # no block descriptor: mtx finds the page at 4 + data[3]
    assert data[4:] == bytes.fromhex("1d12 0001 0001 1000 0004 0010 0002 0100 0002 0000".replace(
        " ", ""))
    every = run(changer, bytes([0x1A, 0x08, 0x3F, 0, 255, 0]))
    assert [every[4], every[4 + 20], every[4 + 24]] == [0x1D, 0x1E, 0x1F]
    changeable = run(changer, bytes([0x1A, 0x08, 0x40 | 0x1D, 0, 136, 0]))
    assert changeable[4:6] == b"\x1d\x12" and changeable[6:] == bytes(18)


def test_initialize_position_and_unsupported_exchange(changer):
    run(changer, smc.InitializeElementStatus().encode())
    run(changer, smc.InitializeElementStatusWithRange(range=1, starting_element_address=SLOT,
                                                          number_of_elements=2).encode())
    assert check(changer, smc.InitializeElementStatusWithRange(
        range=1, starting_element_address=0x0050).encode())[1] == Asc.INVALID_ELEMENT_ADDRESS
    run(changer, smc.PositionToElement(destination_address=DRIVE).encode())
    assert check(changer, smc.PositionToElement(destination_address=0x0001).encode())[1] == (
        Asc.INVALID_ELEMENT_ADDRESS)
    assert check(changer, bytes([0xA6] + [0] * 11))[1] == Asc.INVALID_COMMAND_OPERATION_CODE


def test_handler_configs_share_one_library(lib):
    libraries = Libraries()
    drive = open_device("ltape0", f"tape;{lib.path};drive=0", "s-ltape0", libraries=libraries)
    changer = open_device("lchanger", f"changer;{lib.path}", "s-lchanger", libraries=libraries)
    try:
        assert isinstance(changer, MediumChanger) and drive.DEVICE_TYPE == spc.TYPE_TAPE
        assert check(drive, spc.TestUnitReady().encode())[:2] == (  # the daemon opened it
            SenseKey.UNIT_ATTENTION, Asc.POWER_ON_RESET_OR_BUS_DEVICE_RESET_OCCURRED)
        assert check(drive, spc.TestUnitReady().encode())[:2] == (
            SenseKey.NOT_READY, Asc.MEDIUM_NOT_PRESENT)
        run(changer, move(SLOT, DRIVE))
        assert check(drive, spc.TestUnitReady().encode())[:2] == (
            SenseKey.UNIT_ATTENTION, Asc.NOT_READY_TO_READY_CHANGE_MEDIUM_MAY_HAVE_CHANGED)
        payload = b"library bytes " * 100
        buf = DataBuffer.of(bytearray(payload))
        drive.handle(Command(ssc.Write6(transfer_length=len(payload)).encode(), buf))
        drive.handle(Command(ssc.WriteFilemarks6(filemark_count=1).encode(), DataBuffer()))
        run(changer, move(DRIVE, SLOT + 3))
        with AwsTape.open_readonly(lib.path / "L00001L8.aws") as t:
            assert t.dump_records() == [payload, None]
        assert ops.where(lib.path, "L00001L8").label == "slot 4"
    finally:
        drive.close()
