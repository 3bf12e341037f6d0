"""The cartridge library directory: state on disk, moves, the operator's import/export."""

from __future__ import annotations

import json
import os
import stat

import pytest
from plugins.fake_library import DRIVE, IE, SLOT, FakeDrive

from lio_xcopy.control import library as ops
from lio_xcopy.devices.awstape import AwsTape
from lio_xcopy.devices.library import Library
from lio_xcopy.errors import ConfigError
from lio_xcopy.scsi.errors import CheckCondition
from lio_xcopy.scsi.sense import Asc, SenseKey
from lio_xcopy.scsi.smc import ElementType

MiB = 1 << 20
@pytest.fixture
def lib(tmp_path):
    return ops.create_library(tmp_path / "lib", slots=4, ie_slots=2, drives=2, capacity=2 * MiB,
                              barcodes=ops.lto_barcodes(3), drive_luns=["t0", "t1"])


def sense(e: pytest.ExceptionInfo) -> tuple[SenseKey, int]:
    return e.value.sense.key, e.value.sense.asc


def test_created_library_state_file_and_cartridges(lib):
    st_mode = os.stat(lib.path / "library.json").st_mode
    assert stat.S_IMODE(st_mode) == 0o600
    assert [(loc.barcode, loc.label, loc.address) for loc in ops.list_cartridges(lib.path)] == [
        ("L00001L8", "slot 1", SLOT), ("L00002L8", "slot 2", SLOT + 1),
        ("L00003L8", "slot 3", SLOT + 2)]
    with AwsTape.open_readonly(lib.path / "L00001L8.aws") as t:
        assert t.objects == 0
    assert stat.S_IMODE(os.stat(lib.path / "L00001L8.aws").st_mode) == 0o600
    with pytest.raises(ConfigError, match="already holds a library"):
        ops.create_library(lib.path, slots=1)


def test_move_to_drive_loads_it_and_back_unloads(lib):
    d0 = FakeDrive("t0")
    lib.attach_drive(0, d0)
    assert lib.move(SLOT + 2, DRIVE) == "L00003L8"
    assert d0.path == str(lib.path / "L00003L8.aws")
    assert ops.where(lib.path, "L00003L8").label == "drive 0"
    # the drive reports its source slot; after going back it still names that slot
    assert lib.state().drives[0].source == SLOT + 2
    lib.move(DRIVE, SLOT + 3)
    assert d0.path is None
    assert lib.state().slots[3].source == SLOT + 2


def test_illegal_moves_leave_everything_as_it_was(lib):
    before = (lib.path / "library.json").read_bytes()
    cases = [
        (SLOT + 3, DRIVE, Asc.MEDIUM_SOURCE_ELEMENT_EMPTY),
        (SLOT, SLOT + 1, Asc.MEDIUM_DESTINATION_ELEMENT_FULL),
        (SLOT + 4, DRIVE, Asc.INVALID_ELEMENT_ADDRESS),
        (SLOT, 0x0001, Asc.INVALID_ELEMENT_ADDRESS),  # the transport holds nothing
        (SLOT, 0x0102, Asc.INVALID_ELEMENT_ADDRESS),
    ]
    for src, dst, asc in cases:
        with pytest.raises(CheckCondition) as e:
            lib.move(src, dst)
        assert sense(e) == (SenseKey.ILLEGAL_REQUEST, asc), (src, dst)
    assert (lib.path / "library.json").read_bytes() == before


def test_drive_that_prevents_removal_keeps_its_cartridge(lib):
    d0 = FakeDrive("t0")
    lib.attach_drive(0, d0)
    lib.move(SLOT, DRIVE)
    d0.removal_prevented = True
    with pytest.raises(CheckCondition) as e:
        lib.move(DRIVE, SLOT)
    assert sense(e) == (SenseKey.ILLEGAL_REQUEST, Asc.MEDIUM_REMOVAL_PREVENTED)
    assert d0.path is not None and ops.where(lib.path, "L00001L8").label == "drive 0"


def test_drive_to_drive_keeps_the_storage_source(lib):
    d0, d1 = FakeDrive("t0"), FakeDrive("t1")
    lib.attach_drive(0, d0)
    lib.attach_drive(1, d1)
    lib.move(SLOT + 1, DRIVE)
    lib.move(DRIVE, DRIVE + 1)
    assert d0.path is None and d1.path == str(lib.path / "L00002L8.aws")
    assert lib.state().drives[1].source == SLOT + 1


def test_state_survives_restart_and_the_drive_gets_its_cartridge_back(lib):
    lib.attach_drive(0, FakeDrive("t0"))
    lib.move(SLOT, DRIVE)
    again = Library.open(lib.path)  # the daemon restarted
    d0 = FakeDrive("t0")
    again.attach_drive(0, d0)
    assert d0.path == str(lib.path / "L00001L8.aws")
    assert again.state().drive_serials[0] == "serial-t0"


def test_another_process_sees_changes(lib):
    other = Library.open(lib.path)
    other.move(SLOT, SLOT + 3)
    assert lib.state().slots[3].barcode == "L00001L8"


def test_import_moves_the_file_into_a_free_ie_slot(lib, tmp_path):
    outside = tmp_path / "VOL001.aws"
    AwsTape(outside, MiB, create=True).close()
    loc = ops.import_cartridge(lib.path, outside)
    assert (loc.barcode, loc.kind, loc.address) == ("VOL001", ElementType.IMPORT_EXPORT, IE)
    assert not outside.exists() and (lib.path / "VOL001.aws").is_file()
    s = lib.state()
    assert s.ie[0].by_operator and s.ie_accesses == 1
    with pytest.raises(ConfigError, match="already in the library"):
        ops.create_cartridges(lib.path, ["VOL001"])


def test_import_refusals(lib, tmp_path):
    junk = tmp_path / "JUNK.aws"
    junk.write_bytes(b"not a tape header at all")
    with pytest.raises(ConfigError, match="not a readable AWSTAPE"):
        ops.import_cartridge(lib.path, junk)
    with pytest.raises(ConfigError, match="barcode 'bad code'"):
        ops.import_cartridge(lib.path, junk, "bad code")
    good = tmp_path / "GOOD.aws"
    AwsTape(good, MiB, create=True).close()
    ops.create_cartridges(lib.path, ["IE1", "IE2"], import_export=True)
    with pytest.raises(ConfigError, match="every import/export slot is full"):
        ops.import_cartridge(lib.path, good)
    assert good.exists()


def test_export_only_from_an_ie_slot(lib, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ConfigError, match="slot 1, not in an import/export slot"):
        ops.export_cartridge(lib.path, "L00001L8", out)
    lib.move(SLOT, IE + 1)
    path = ops.export_cartridge(lib.path, "L00001L8", out)
    assert path == out / "L00001L8.aws" and path.is_file()
    assert "L00001L8" not in json.loads(
        (lib.path / "library.json").read_text())["cartridges"]
    with pytest.raises(ConfigError, match="not in the library"):
        ops.where(lib.path, "L00001L8")


def test_contents_table_and_strays(lib):
    (lib.path / "LOST01.aws").write_bytes(b"")
    text = ops.format_contents(lib.path)
    assert "slot 1" in text and "L00001L8" in text and "(LUN t0)" in text
    assert "not in any slot: LOST01.aws" in text


def test_barcodes_and_sizes():
    assert ops.lto_barcodes(2, first=9) == ["L00009L8", "L00010L8"]
    with pytest.raises(ConfigError, match="leave no room"):
        ops.lto_barcodes(2, first=9999, prefix="LTO", media="L8")
    with pytest.raises(ConfigError, match=r"cannot open the library.*create it first"):
        Library.open("/nonexistent-lib")
