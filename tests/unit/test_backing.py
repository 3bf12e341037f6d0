"""Backing files no new LUN may ruin: a library's files, another LUN's file or device,
the saved configuration, a non-cartridge file as a tape, a cartridge as a disk. Checked
directly, through provision (over a fake rtslib) and through restoreconfig."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from lio_xcopy import cli
from lio_xcopy.control import backing, config, library, provision, rtslib_adapter, saved
from lio_xcopy.control.backing import InUse
from lio_xcopy.devices.awstape import AwsTape
from lio_xcopy.devices.buffer import DataBuffer
from lio_xcopy.errors import ConfigError
from lio_xcopy.handler_config import SUBTYPE

MiB = 1 << 20
PASSWD = b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"


def cartridge(path: Path, records: int = 2) -> Path:
    with AwsTape(path, 4 * MiB, create=True) as t:
        for i in range(records):
            t.write_record(DataBuffer.of(bytes([i]) * 1000), 0, 1000)
        t.write_filemarks(1)
    return path


@pytest.fixture
def lib(tmp_path) -> Path:
    d = tmp_path / "lib"
    library.create_library(d, slots=4, drives=1, capacity=4 * MiB,
                           barcodes=["L00001L8", "L00002L8"])
    return d


def refused(fn, *words: str) -> str:
    with pytest.raises(ConfigError) as e:
        fn()
    text = str(e.value)
    assert "\n" not in text
    for w in words:
        assert w in text, text
    return text


# --- the rules ------------------------------------------------------------------------------
def test_holds_cartridge_reads_the_header_chain(tmp_path):
    assert backing.holds_cartridge(cartridge(tmp_path / "t.aws"))
    torn = tmp_path / "torn.aws"
    torn.write_bytes((tmp_path / "t.aws").read_bytes()[:-3])  # a crash mid-write
    assert backing.holds_cartridge(torn)
    (tmp_path / "passwd").write_bytes(PASSWD)
    (tmp_path / "zero.img").write_bytes(bytes(MiB))
    (tmp_path / "empty").write_bytes(b"")
    for name in ("passwd", "zero.img", "empty", "absent"):
        assert not backing.holds_cartridge(tmp_path / name), name


def test_a_library_file_is_refused_by_path_or_hard_link(tmp_path, lib):
    for f, role in ((lib / "L00002L8.aws", "its cartridge L00002L8"),
                    (lib / "library.json", "its state file"),
                    (lib / "new.img", "its directory")):
        for kind in ("disk", "tape"):
            refused(lambda f=f, kind=kind: backing.check(kind, f, [], saved=()),
                    f"belongs to the library in {lib}", role, "give a file outside")
    link = tmp_path / "elsewhere.aws"
    os.link(lib / "L00001L8.aws", link)
    refused(lambda: backing.check("tape", link, [InUse("lib0", "changer", lib)], saved=()),
            "its cartridge L00001L8")
    refused(lambda: backing.check("disk", lib, [], saved=()), "is a library directory")


def test_another_luns_file_or_device_is_refused(tmp_path):
    img = tmp_path / "db0.img"
    img.write_bytes(bytes(MiB))
    alias = tmp_path / "alias.img"
    alias.symlink_to(img)
    hard = tmp_path / "hard.img"
    os.link(img, hard)
    owners = [InUse("db0", "disk", img), InUse("fio", "fileio", tmp_path / "f.img")]
    for p in (img, alias, hard):
        refused(lambda p=p: backing.check("disk", p, owners, saved=()),
                "already the backing of disk 'db0'", "give each LUN its own file")
    refused(lambda: backing.check("tape", tmp_path / "f.img", owners, saved=()),
            "already the backing of fileio 'fio'")
    backing.check("disk", tmp_path / "other.img", owners, saved=())


def test_the_saved_configuration_and_its_backups_are_refused(tmp_path):
    cfg = tmp_path / "etc" / "saveconfig.json"
    config.save(config.SavedConfig(), cfg)
    config.save(config.SavedConfig(copy_groups={}), cfg)  # same content: no backup
    (cfg.parent / "saveconfig.json.1").write_text("{}")
    for p in (cfg, cfg.parent / "saveconfig.json.1"):
        refused(lambda p=p: backing.check("disk", p, [], saved=(cfg,)),
                "is the saved configuration")


def test_tape_on_a_file_that_is_not_a_cartridge_needs_format(tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_bytes(PASSWD)
    refused(lambda: backing.check("tape", passwd, [], saved=()),
            f"holds {len(PASSWD)} bytes that are not an AWSTAPE cartridge",
            "format=yes")
    backing.check("tape", passwd, [], format=True, saved=())
    backing.check("tape", cartridge(tmp_path / "t.aws"), [], saved=())
    (tmp_path / "blank.aws").write_bytes(b"")
    backing.check("tape", tmp_path / "blank.aws", [], saved=())
    backing.check("tape", tmp_path / "new.aws", [], saved=())


def test_disk_on_a_cartridge_is_refused(tmp_path):
    refused(lambda: backing.check("disk", cartridge(tmp_path / "t.aws"), [], saved=()),
            "holds a tape cartridge (AWSTAPE)", "/backstores/tape")
    (tmp_path / "zero.img").write_bytes(bytes(MiB))
    backing.check("disk", tmp_path / "zero.img", [], saved=())


# --- provision, over a fake rtslib ----------------------------------------------------------
class FakeRtslib:
    """The parts of rtslib that provision and restore use."""

    class RTSLibError(Exception):
        pass

    def __init__(self) -> None:
        self.objects: list[SimpleNamespace] = []
        rts = self

        class UserBackedStorageObject(SimpleNamespace):
            def __init__(self, name, config, size, wwn, **_):
                super().__init__(name=name, plugin="user", config=config, size=size,
                                 wwn=wwn, path="/nonexistent", attached_luns=[])
                rts.objects.append(self)

        self.UserBackedStorageObject = UserBackedStorageObject

    def RTSRoot(self):
        return SimpleNamespace(storage_objects=list(self.objects))

    def FabricModule(self, name):
        return SimpleNamespace(targets=[])

    def ours(self, name: str, cfg: str) -> None:
        self.UserBackedStorageObject(name, f"{SUBTYPE}/{cfg}", MiB, "w")

    def fileio(self, name: str, path: Path) -> None:
        self.objects.append(SimpleNamespace(name=name, plugin="fileio", config=None,
                                            udev_path=str(path), wwn="x"))


@pytest.fixture
def rts(monkeypatch) -> FakeRtslib:
    fake = FakeRtslib()
    monkeypatch.setattr(rtslib_adapter, "rtslib", lambda: fake)
    monkeypatch.setattr(rtslib_adapter, "ensure_configfs", lambda: None)
    return fake


def test_provision_refuses_and_touches_nothing(tmp_path, lib, rts):
    passwd = tmp_path / "passwd"
    passwd.write_bytes(PASSWD)
    refused(lambda: provision.create_tape("t0", passwd, 4 * MiB), "format=yes")
    assert passwd.read_bytes() == PASSWD and rts.objects == []
    before = (lib / "L00001L8.aws").read_bytes()
    refused(lambda: provision.create_disk("d0", lib / "L00001L8.aws", MiB),
            "belongs to the library")
    assert (lib / "L00001L8.aws").read_bytes() == before and rts.objects == []
    rts.fileio("fio0", tmp_path / "fio.img")
    refused(lambda: provision.create_disk("d0", tmp_path / "fio.img", MiB),
            "already the backing of fileio 'fio0'")
    assert not (tmp_path / "fio.img").exists()
    rts.ours("lib0", f"changer;{tmp_path / 'lib2'}")
    (tmp_path / "lib2").mkdir()
    refused(lambda: provision.create_tape("t1", tmp_path / "lib2" / "X.aws", 4 * MiB),
            "belongs to the library in")
    assert not (tmp_path / "lib2" / "X.aws").exists()
    assert [o.name for o in rts.objects] == ["fio0", "lib0"]


def test_provision_format_yes_blanks_the_file_and_lookup_never_does(tmp_path, rts):
    passwd = tmp_path / "passwd"
    passwd.write_bytes(PASSWD)
    lun = provision.create_tape("t0", passwd, 4 * MiB, format=True)
    assert passwd.read_bytes() == b"" and lun.name == "t0"
    cart = cartridge(tmp_path / "t1.aws")
    data = cart.read_bytes()
    provision.create_tape("t1", cart, 4 * MiB)
    provision.create_tape("t1", cart, 4 * MiB, format=True)  # exists: looked up, kept
    assert cart.read_bytes() == data
    assert [o.name for o in rts.objects] == ["t0", "t1"]


# --- restoreconfig --------------------------------------------------------------------------
def test_restore_naming_a_conflict_fails_in_one_line_and_changes_nothing(
        tmp_path, lib, rts, monkeypatch, capsys):
    monkeypatch.setattr(config, "DEFAULT_PATH", tmp_path / "none.json")
    good = config.DiskConfig("d0", tmp_path / "d0.img", MiB)
    (tmp_path / "d0.img").write_bytes(bytes(MiB))
    for bad in (config.DiskConfig("d1", lib / "L00002L8.aws", MiB),
                config.TapeConfig("t1", Path("/etc/passwd"), 4 * MiB),
                config.DiskConfig("d1", tmp_path / "saved.json", MiB)):
        f = tmp_path / "saved.json"
        disks = (good, bad) if isinstance(bad, config.DiskConfig) else (good,)
        tapes = (bad,) if isinstance(bad, config.TapeConfig) else ()
        config.save(config.SavedConfig(disks, tapes), f, backups=0)
        text = f.read_text()
        capsys.readouterr()
        assert cli.main(["restoreconfig", str(f)]) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1, err
        assert err.startswith(f"lio-xcopy restoreconfig: {config.kind_of(bad)} {bad.name}: ")
        assert "nothing was restored" in err
        assert rts.objects == [] and f.read_text() == text
    config.save(config.SavedConfig((good,)), tmp_path / "ok.json")
    report = saved.restore(config.load(tmp_path / "ok.json"))
    assert report.created == ["disk d0"] and [o.name for o in rts.objects] == ["d0"]


def test_library_import_never_moves_a_running_luns_cartridge(tmp_path, lib, monkeypatch):
    (tmp_path / "cfs" / "target").mkdir(parents=True)
    monkeypatch.setattr(rtslib_adapter, "CONFIGFS", tmp_path / "cfs")
    live = cartridge(tmp_path / "T00001L8.aws")
    monkeypatch.setattr(provision, "in_use", lambda exclude=None: [InUse("t0", "tape", live)])
    library.create_library(tmp_path / "lib2", slots=2, ie_slots=1)
    refused(lambda: library.import_cartridge(tmp_path / "lib2", live),
            "is the backing of tape 't0'", "--copy")
    assert live.exists() and library.list_cartridges(tmp_path / "lib2") == []
    loc = library.import_cartridge(tmp_path / "lib2", live, copy=True)
    assert loc.barcode == "T00001L8" and live.exists()
