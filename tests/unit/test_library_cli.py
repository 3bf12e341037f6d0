"""``lio-xcopy library``: the operator's cartridge commands, and their one-line errors."""

from __future__ import annotations

import pytest

from lio_xcopy.cli import main


def lines(capsys) -> tuple[list[str], list[str]]:
    out, err = capsys.readouterr()
    return out.splitlines(), err.splitlines()


def test_create_list_add_import_export(tmp_path, capsys):
    lib = str(tmp_path / "lib")
    assert main(["library", lib, "create", "--slots", "4", "--ie", "1", "--drives", "1",
                 "--capacity", "2M", "--barcodes", "2"]) == 0
    out, _ = lines(capsys)
    assert out[0] == f"library {lib}: 4 slots, 1 import/export, 1 drive(s)"
    assert [x.split() for x in out[1:]] == [
        ["import/export", "1", "0x0010", "-"], ["drive", "0", "0x0100", "-"],
        ["slot", "1", "0x1000", "L00001L8"], ["slot", "2", "0x1001", "L00002L8"],
        ["slot", "3", "0x1002", "-"], ["slot", "4", "0x1003", "-"]]
    assert main(["library", lib, "add", "TAPE03L8"]) == 0
    assert lines(capsys)[0] == ["TAPE03L8: slot 3"]
    outside = tmp_path / "OLD001L8.aws"
    outside.write_bytes(b"")
    assert main(["library", lib, "import", str(outside)]) == 0
    assert lines(capsys)[0] == ["OLD001L8: import/export 1"]
    assert main(["library", lib, "where", "OLD001L8"]) == 0
    assert lines(capsys)[0] == ["OLD001L8: import/export 1 (element 0x0010)"]
    (tmp_path / "out").mkdir()
    assert main(["library", lib, "export", "OLD001L8", str(tmp_path / "out")]) == 0
    assert lines(capsys)[0] == [f"OLD001L8: exported to {tmp_path / 'out' / 'OLD001L8.aws'}"]
    assert (tmp_path / "out" / "OLD001L8.aws").exists()
    assert main(["library", lib, "list"]) == 0
    assert lines(capsys)[0][1].split() == ["import/export", "1", "0x0010", "-"]


@pytest.mark.parametrize("argv", [
    ["library", "{lib}", "where", "NOPE01L8"],
    ["library", "{lib}", "frobnicate"],
    ["library", "{lib}", "add", "bad barcode"],
    ["library", "{lib}", "export", "L00001L8", "/tmp/x"],  # in a slot, not import/export
])
def test_refusals_are_one_line_and_change_nothing(tmp_path, capsys, argv):
    lib = str(tmp_path / "lib")
    main(["library", lib, "create", "--slots", "2", "--capacity", "1M", "--barcodes", "1"])
    capsys.readouterr()
    before = (tmp_path / "lib" / "library.json").read_bytes()
    assert main([a.format(lib=lib) for a in argv]) != 0
    out, err = lines(capsys)
    assert out == [] and len(err) == 1 and err[0].startswith("lio-xcopy library: "), err
    assert (tmp_path / "lib" / "library.json").read_bytes() == before
