"""The initiator's side of SMC-3: READ ELEMENT STATUS parsing, the inventory, MOVE MEDIUM
and waiting for the drive."""

from __future__ import annotations

import struct

import pytest
from plugins.scsi_loopback import Loopback, Reply, Scripted

from lio_xcopy.control import library as ops
from lio_xcopy.initiator import changer as ch
from lio_xcopy.scsi import smc, spc
from lio_xcopy.scsi.sense import Asc, SenseData, SenseKey
from lio_xcopy.scsi.smc import ElementDescriptor, ElementType
from lio_xcopy.sg import sgio
from lio_xcopy.tcmu.handler import Libraries, open_device

NAA = bytes.fromhex("6001405" + "0123456789abcdef0123456789"[:25])


def _descriptor(addr, flags, asc=0, svalid_source=None, tag=None, ident=None, idlen=0):
    b9 = 0x80 | 1 if svalid_source is not None else 0
    d = struct.pack(">HBxBBxxxBH", addr, flags, asc >> 8, asc & 0xFF, b9, svalid_source or 0)
    if tag is not None:
        d += tag.encode().ljust(32, b" ") + bytes(4)
    if ident is None:
        return d + bytes(4 + idlen)
    code_set, kind, value = ident
    return d + struct.pack(">BBxB", code_set, kind, len(value)) + value.ljust(idlen, b"\0")


def _page(etype, tags, descriptors):
    body = b"".join(descriptors)
    return struct.pack(">BBHxBH", etype, tags, len(descriptors[0]), len(body) >> 16,
                       len(body) & 0xFFFF) + body


GOLDEN = (
    # element status header: first 0x0001, 5 elements, byte count filled in below
    _page(1, 0, [_descriptor(0x0001, 0)])
    + _page(4, 0x80, [
        _descriptor(0x0100, 0x09, svalid_source=0x1001, tag="L00002L8",
                    ident=(1, 3, NAA), idlen=16),
        # a library that reports the drive's serial number (ASCII, vendor specific)
        _descriptor(0x0101, 0x08, tag="", ident=(2, 0, b"SN0042  "), idlen=16),
    ])
    + _page(2, 0x80, [_descriptor(0x1000, 0x09, tag="L00001L8"),
                      _descriptor(0x1001, 0x0C, asc=0x3B0E, tag="")])
)
GOLDEN = struct.pack(">HHxBH", 1, 5, 0, len(GOLDEN)) + GOLDEN


def test_parse_golden_element_status():
    els = ch.parse_element_status(GOLDEN)
    assert [(e.element_type, e.address, e.full) for e in els] == [
        (ElementType.MEDIUM_TRANSPORT, 1, False),
        (ElementType.DATA_TRANSFER, 0x100, True), (ElementType.DATA_TRANSFER, 0x101, False),
        (ElementType.STORAGE, 0x1000, True), (ElementType.STORAGE, 0x1001, False)]
    drive = els[1]
    assert drive.barcode == "L00002L8" and drive.source == 0x1001
    assert drive.identifier == spc.Designator(1, 3, NAA)
    assert els[2].identifier.value == b"SN0042  " and els[2].barcode is None
    assert els[3].barcode == "L00001L8" and els[3].source is None
    assert els[4].barcode is None and els[4].exception and els[4].asc == 0x3B0E


def test_inventory_numbers_slots_like_mtx_and_finds_drives():
    inv = ch.Inventory.of(ch.parse_element_status(GOLDEN))
    assert inv.slot(1).address == 0x1000 and inv.slot_number(0x1001) == 2
    with pytest.raises(ch.ChangerError, match="slots 1-2"):
        inv.slot(3)
    assert inv.find("L00002L8").address == 0x100  # in a drive
    assert inv.find("L00001L8").address == 0x1000
    assert inv.find("L00009L8") is None
    assert inv.drive_for(NAA).address == 0x100
    assert inv.drive_for(b"\x60" * 16) is None
    assert inv.drive_for(None, "SN0042").address == 0x101  # by VPD 80h
    assert inv.free_slot().address == 0x1001


def test_truncated_data_gives_the_whole_descriptors():
    whole = ch.parse_element_status(GOLDEN)
    cut = ch.parse_element_status(GOLDEN[: 8 + 8 + 16 + 8 + 12 + 36 + 20 + 5])
    assert cut == whole[:2]


@pytest.mark.parametrize("data, words", [
    (b"\0" * 7, "header alone is 8"),
    (struct.pack(">HHxBH", 0, 1, 0, 20) + struct.pack(">BBHxBH", 9, 0, 12, 0, 12) + bytes(12),
     "SMC-3 defines 1-4"),
    (struct.pack(">HHxBH", 0, 1, 0, 12) + struct.pack(">BBHxBH", 2, 0, 4, 0, 4) + bytes(4),
     "at least 12"),
])
def test_malformed_element_status(data, words):
    with pytest.raises(smc.ElementStatusFormatError, match=words):
        ch.parse_element_status(data)


def test_round_trip_with_the_targets_encoder():
    drives = [ElementDescriptor(0x100 + i, smc.ACCESS | (smc.FULL if i == 0 else 0),
                                "A00001L8" if i == 0 else None, 0x1000 if i == 0 else None,
                                identifier=(1, 3, bytes([0x60 + i]) * 16)) for i in range(2)]
    slots = [ElementDescriptor(0x1000 + i, smc.ACCESS) for i in range(3)]
    pages = [smc.element_status_page(ElementType.DATA_TRANSFER, drives, voltag=True, dvcid=True),
             smc.element_status_page(ElementType.STORAGE, slots, voltag=True)]
    els = ch.parse_element_status(smc.element_status_data(0x100, 5, pages))
    assert [e.address for e in els] == [0x100, 0x101, 0x1000, 0x1001, 0x1002]
    assert els[0].barcode == "A00001L8" and els[0].source == 0x1000
    assert [e.identifier.value[0] for e in els[:2]] == [0x60, 0x61]
    assert all(e.identifier is None for e in els[2:])


# --- over the target's changer ------------------------------------------------------------------
@pytest.fixture
def changer(tmp_path):
    lib = tmp_path / "lib"
    ops.create_library(lib, slots=3, drives=1, barcodes=["B00001L8"], drive_luns=["d0"])
    libs = Libraries()
    dev = open_device("changer", f"changer;{lib}", None, libraries=libs)
    drive = open_device("d0", f"tape;{lib};drive=0", None, libraries=libs)
    yield ch.Changer(Loopback("/dev/sg3", dev)), Loopback("/dev/sg4", drive), lib
    dev.close()
    drive.close()


def test_move_and_find_the_drive_by_its_naa(changer):
    c, drive, lib = changer
    c.check_type()
    inv = c.inventory()
    (el,) = inv.drives
    assert inv.drive_for(drive.naa()) == el and not el.full
    c.move(inv.slot(1).address, el.address)
    assert ch.wait_ready(drive.__class__("/dev/sg4", drive.device), sleep=lambda s: None) == 1
    inv = c.inventory()
    assert inv.drives[0].barcode == "B00001L8" and inv.drives[0].source == inv.slot(1).address
    with pytest.raises(ch.ChangerError, match=r"(?i)medium source element empty"):
        c.move(inv.slot(2).address, el.address)
    # an operator's import is reported as UNIT ATTENTION and the command sent again
    ops.create_cartridges(lib, ["B00002L8"])
    before = len(c.dev.sent)
    assert c.inventory().find("B00002L8").address == inv.slot(1).address  # the free slot
    assert [cdb[0] for cdb in c.dev.sent[before:]] == [0xB8, 0xB8]


def test_a_disk_is_not_a_changer(tmp_path):
    (tmp_path / "d.img").write_bytes(bytes(1 << 20))
    disk = open_device("disk", f"disk;{tmp_path / 'd.img'}", None)
    with pytest.raises(ch.ChangerError, match="not a medium changer"):
        ch.Changer(Loopback("/dev/sg1", disk)).check_type()
    disk.close()


def tur_script(*senses: SenseData | None) -> Scripted:
    """TEST UNIT READY answered from a script of sense data (None: GOOD)."""
    return Scripted(Reply() if s is None else Reply.check_condition(s) for s in senses)


def test_wait_ready_consumes_unit_attention_and_waits_for_becoming_ready():
    ua = SenseData(SenseKey.UNIT_ATTENTION, Asc.NOT_READY_TO_READY_CHANGE_MEDIUM_MAY_HAVE_CHANGED)
    becoming = SenseData(SenseKey.NOT_READY, 0x0401)
    dev = tur_script(ua, becoming, becoming, None)
    slept = []
    assert ch.wait_ready(dev, sleep=slept.append) == 1 and len(slept) == 2
    assert dev.cdbs == [bytes(6)] * 4  # TEST UNIT READY each time
    empty = SenseData(SenseKey.NOT_READY, Asc.MEDIUM_NOT_PRESENT)
    now = [0.0]

    def tick(s):
        now[0] += s

    with pytest.raises(ch.ChangerError, match="no cartridge in the drive"):
        ch.wait_ready(tur_script(*[empty] * 100), timeout=1, sleep=tick, clock=lambda: now[0])
    with pytest.raises(sgio.ScsiCommandError):  # other errors are not waited out
        ch.wait_ready(tur_script(SenseData(SenseKey.MEDIUM_ERROR, 0x1100)), sleep=tick)
