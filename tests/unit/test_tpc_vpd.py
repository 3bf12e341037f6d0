"""The Third-party Copy VPD page (8Fh, SPC-4 7.8.17): its bytes, its agreement with
OPERATING PARAMETERS, and the LUNs that serve it."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lio_xcopy.control import library as ops
from lio_xcopy.copy.manager import CopyManager
from lio_xcopy.devices.backing import BackingStore
from lio_xcopy.devices.base import Command, LunIdentity
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.devices.changer import MediumChanger
from lio_xcopy.devices.disk import Disk
from lio_xcopy.devices.passthrough import PassThrough
from lio_xcopy.devices.tape import Tape
from lio_xcopy.scsi import spc, xcopy
from lio_xcopy.scsi.errors import CheckCondition
from lio_xcopy.scsi.sense import GOOD, SenseKey
from lio_xcopy.scsi.tpc_vpd import (
    GeneralCopyOperations,
    HeldData,
    ParameterData,
    StreamCopyOperations,
    SupportedCommands,
    SupportedCscdIds,
    SupportedDescriptors,
    ThirdPartyCopyPage,
    UnknownDescriptor,
    third_party_copy_page,
)
from lio_xcopy.scsi.xcopy import Limits, OperatingParameters, XcopyFormatError
from lio_xcopy.sg import sgio
from lio_xcopy.sg.resolve import Resolved

MiB = 1 << 20
LIMITS = Limits(max_cscd=10, max_segments=7, max_descriptor_list_length=544,
                max_segment_length=1 << 20, max_stream_transfer=65536,
                total_concurrent_copies=5, max_concurrent_copies=3,
                data_segment_granularity=9, segment_types=(0x02, 0x00),
                max_inline_data=4096)


def inquiry(dev, page: int, alloc: int = 1024) -> bytes:
    buf = DataBuffer.allocate(alloc)
    n = dev.handle(Command(spc.Inquiry(evpd=1, page_code=page, allocation_length=alloc).encode(),
                           buf))
    return buf.tobytes(n)


@pytest.fixture(params=[spc.TYPE_DISK, spc.TYPE_TAPE])
def lun(request, tmp_path):
    """A disk or a tape LUN served by a copy manager with :data:`LIMITS`."""
    dev = (Disk(LunIdentity("disk0", "6001405abcdef0123456789abcdef012"),
                BackingStore(tmp_path / "d.img", create=True, size=64 * 512), 512)
           if request.param == spc.TYPE_DISK else
           Tape(LunIdentity("tape0", "4a6f2d3c-1b2a-4c5d-8e9f-0123456789ab"),
                tmp_path / "t.aws", 64 * MiB))
    CopyManager(LIMITS).register(dev)
    yield dev
    dev.close()


# --- the wire format -------------------------------------------------------------------------
def test_golden_bytes_of_each_descriptor():
    page = third_party_copy_page(0x01, LIMITS, [(0x83, 0x00), (0x83, 0x1C), (0x84, 0x03),
                                                (0x84, 0x00), (0x12, None)])
    data = page.encode()
    assert data[:2] == b"\x01\x8f"
    assert struct.unpack_from(">H", data, 2)[0] == len(data) - 4
    body = data[4:]
    # 0001h: list length 9 (83h: 2 SAs, 84h: 2 SAs -> 4 + 4), padded to 12
    assert body[:16] == bytes.fromhex("0001000c" "08" "8302001c" "84020003" "000000")
    # 0004h, length 1Ch: CSCD 10, segments 7, list 544, inline 4096
    assert body[16:48] == bytes.fromhex("0004001c" "00000000" "000a" "0007" "00000220"
                                        "00001000") + bytes(12)
    # 0008h: 00h, 02h, E4h, FEh (the ROD CSCD descriptor), padded to 4
    assert body[48:60] == bytes.fromhex("00080008" "04" "0002e4fe" "000000")
    # 000Ch: FFFFh only
    assert body[60:68] == bytes.fromhex("000c0004" "0002" "ffff")
    # 8001h, length 20h: total 5, identified 3, segment 1 MiB, granularity 2^9 and 2^0
    assert body[68:104] == bytes.fromhex("80010020" "00000005" "00000003" "00100000" "0900"
                                         ) + bytes(18)
    # 9101h, length 1Ch: 64 KiB
    assert body[104:136] == bytes.fromhex("9101001c" "00010000") + bytes(24)
    # C001h, length 1Ch: HELD DATA LIMIT 256 KiB, granularity 2^0
    assert body[136:] == bytes.fromhex("c001001c" "00040000" "00") + bytes(23)


descriptors = st.one_of(
    st.builds(SupportedCommands, st.lists(st.tuples(
        st.integers(0, 255), st.lists(st.integers(0, 31), max_size=5).map(tuple)),
        max_size=5).map(tuple)),
    st.builds(ParameterData, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
              st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    st.builds(SupportedDescriptors, st.lists(st.integers(0, 255), max_size=40).map(tuple)),
    st.builds(SupportedCscdIds, st.lists(st.integers(0, 0xFFFF), max_size=6).map(tuple)),
    st.builds(GeneralCopyOperations, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
              st.integers(0, 2**32 - 1), st.integers(0, 255), st.integers(0, 255)),
    st.builds(StreamCopyOperations, st.integers(0, 2**32 - 1)),
    st.builds(HeldData, st.integers(0, 2**32 - 1), st.integers(0, 255)),
    st.builds(UnknownDescriptor, st.sampled_from([0x0002, 0x0107, 0xE000]),
              st.binary(max_size=12).map(lambda b: b + bytes(-len(b) % 4))),
)


@given(st.integers(0, 0x1F), st.integers(0, 7), st.lists(descriptors, max_size=8))
def test_round_trip(device_type, qualifier, descs):
    page = ThirdPartyCopyPage(device_type, tuple(descs), qualifier)
    data = page.encode()
    assert ThirdPartyCopyPage.parse(data) == page
    assert struct.unpack_from(">H", data, 2)[0] == len(data) - 4
    pos = 4
    while pos < len(data):  # every descriptor's LENGTH is a multiple of four
        (length,) = struct.unpack_from(">H", data, pos + 2)
        assert length % 4 == 0
        pos += 4 + length
    assert pos == len(data)


def test_a_page_cut_short_is_refused():
    data = third_party_copy_page(0, LIMITS, [(0x83, 0)]).encode()
    with pytest.raises(XcopyFormatError):
        ThirdPartyCopyPage.parse(data[:-1])
    bad = bytearray(data)
    bad[4 + 2 : 4 + 4] = (0x100).to_bytes(2, "big")  # a descriptor longer than the page
    with pytest.raises(XcopyFormatError):
        ThirdPartyCopyPage.parse(bytes(bad))


def test_fields_that_do_not_fit_are_refused():
    with pytest.raises(ValueError):
        ParameterData(1 << 16, 0, 0, 0).fields()
    with pytest.raises(ValueError):
        SupportedDescriptors((*range(256), 0)).fields()  # 257 codes: a 1-byte length


@pytest.mark.parametrize("limits", [Limits(), LIMITS, Limits(snlid=False, max_inline_data=4096,
                                                              held_data_limit=1 << 16,
                                                              held_data_granularity=2)])
def test_values_equal_operating_parameters(limits):
    page = ThirdPartyCopyPage.parse(third_party_copy_page(0, limits, []).encode())
    op = OperatingParameters.parse(xcopy.operating_parameters_data(limits))
    assert page.find(ParameterData) == ParameterData(
        op.max_cscd_count, op.max_segment_count, op.max_descriptor_list_length,
        op.max_inline_data_length)
    assert page.find(SupportedDescriptors) == SupportedDescriptors(
        op.implemented_descriptor_types)
    assert page.find(GeneralCopyOperations) == GeneralCopyOperations(
        op.total_concurrent_copies, op.max_concurrent_copies, op.max_segment_length,
        op.data_segment_granularity, op.inline_data_granularity)
    assert page.find(StreamCopyOperations) == StreamCopyOperations(
        op.max_stream_device_transfer_size)
    assert page.find(HeldData) == HeldData(op.held_data_limit, op.held_data_granularity)


# --- served by the LUNs ------------------------------------------------------------------------
def test_disk_and_tape_serve_it_and_list_it(lun):
    dev, byte0 = lun, lun.DEVICE_TYPE
    assert byte0 in (0x00, 0x01)
    data = inquiry(dev, 0x8F)
    assert data[0] == byte0  # PERIPHERAL QUALIFIER 000b, the LUN's PERIPHERAL DEVICE TYPE
    assert data[1] == 0x8F and struct.unpack_from(">H", data, 2)[0] == len(data) - 4
    page = ThirdPartyCopyPage.parse(data)
    assert page.find(ParameterData) == ParameterData(10, 7, 544, 4096)
    assert page.find(SupportedDescriptors) == SupportedDescriptors((0x00, 0x02, 0xE4, 0xFE))
    assert page.find(SupportedCscdIds) == SupportedCscdIds((xcopy.CSCD_ID_LOCAL,))
    # the 83h/84h service actions the LUN dispatches, and no other command
    dispatched = {(op, sa) for op, sa in type(dev)._dispatch if op in (0x83, 0x84)}
    commands = page.find(SupportedCommands)
    assert commands is not None
    assert {(op, sa) for op, sas in commands.commands for sa in sas} == dispatched
    assert {(0x83, 0x00), (0x83, 0x1C), (0x84, 0x00), (0x84, 0x03)} <= dispatched
    listed = inquiry(dev, 0x00)
    assert listed[0] == byte0 and 0x8F in listed[4:]
    assert list(listed[4:]) == sorted(listed[4:])


@pytest.mark.parametrize("alloc", [1, 4, 10, 37])
def test_truncated_by_the_allocation_length(lun, alloc):
    whole = inquiry(lun, 0x8F)
    cut = inquiry(lun, 0x8F, alloc)
    assert cut == whole[:alloc]
    if alloc >= 4:  # PAGE LENGTH stays the whole page's
        assert struct.unpack_from(">H", cut, 2)[0] == len(whole) - 4


def test_not_served_without_a_copy_manager(tmp_path):
    d = Disk(LunIdentity("disk1", "6001405abcdef0123456789abcdef099"),
             BackingStore(tmp_path / "d.img", create=True, size=64 * 512), 512)
    assert 0x8F not in inquiry(d, 0x00)[4:]
    with pytest.raises(CheckCondition) as e:
        inquiry(d, 0x8F)
    assert e.value.sense.key == SenseKey.ILLEGAL_REQUEST
    d.close()


def test_a_changer_does_not_serve_it(tmp_path):
    lib = ops.create_library(tmp_path / "lib", slots=2, ie_slots=1, drives=1, capacity=MiB,
                             barcodes=ops.lto_barcodes(1))
    changer = MediumChanger(LunIdentity("ch0", "0b7c6a2e-4f0e-4a44-9d1b-5d6c7e8f9a0b"), lib)
    CopyManager(LIMITS).register(changer)
    assert 0x8F not in inquiry(changer, 0x00)[4:]
    with pytest.raises(CheckCondition):
        inquiry(changer, 0x8F)


# --- a pass-through LUN: the page is ours, page 00h the device's plus ours ------------------
class _Sg:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def execute(self, cdb: bytes, data_in: int = 0, data_out: bytes | None = None,
                timeout: float = 0, check: bool = True) -> sgio.Result:
        self.sent.append(cdb)
        data = b""
        if cdb[0] == 0x12 and cdb[1] & 1 and cdb[2] == 0x00:
            data = bytes([0x01, 0x00, 0x00, 0x04, 0x00, 0x80, 0x83, 0xB0])[:data_in]
        return sgio.Result(cdb, GOOD, None, data, max(data_in - len(data), 0), 0.0,
                           requested=data_in, sense_bytes=b"")

    def reset(self, what: int = 0) -> None:
        pass


def test_pass_through_serves_our_page_and_adds_it_to_the_devices_list():
    sg = _Sg()
    dev = PassThrough(LunIdentity("pt0", "6001405c-0000-0000-0000-000000000001"),
                      spc.TYPE_TAPE,
                      lambda: Resolved(Path("/dev/sg1"), "2:0:0:1", 1, ()), lambda p: sg)
    CopyManager(LIMITS).register(dev)
    page = ThirdPartyCopyPage.parse(inquiry(dev, 0x8F))
    assert page.device_type == spc.TYPE_TAPE
    assert page.find(ParameterData) == ParameterData(10, 7, 544, 4096)
    assert sg.sent == []  # never asked of the device
    assert inquiry(dev, 0x00) == bytes([0x01, 0x00, 0x00, 0x05, 0x00, 0x80, 0x83, 0x8F, 0xB0])
    assert sg.sent[-1][3:5] == (4 + 0xFF).to_bytes(2, "big")  # asked for in full
    assert inquiry(dev, 0x00, 6) == bytes([0x01, 0x00, 0x00, 0x05, 0x00, 0x80])
