"""Security on the host: malformed uio devices are refused without crashing, the files
that hold secrets or state get safe modes whatever the umask, CHAP secrets stay out of
reprs (and so out of logs and tracebacks)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from plugins.fake_uio import fake_uio

from lio_xcopy.control import config
from lio_xcopy.errors import ConfigError
from lio_xcopy.tcmu import state as state_file
from lio_xcopy.tcmu import uio
from lio_xcopy.tcmu.daemon import Daemon


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --- uio devices that are not ours, or not well formed -------------------------------------
MALFORMED = [
    "",                                   # no name at all
    "tcm-user",                           # the prefix alone
    "tcm-user/1",                         # no storage object
    "tcm-user/1/db0",                     # no subtype
    "tcm-user/x/db0/xcopy/disk;/srv/a",   # hba not a number
    "tcm-user/-1/db0/xcopy/disk;/srv/a",
    "tcm-user/1//xcopy/disk;/srv/a",      # empty storage object name
    "tcm-user/1/db0//disk;/srv/a",        # empty subtype
    "tcm-user/1/db0/xcopy",               # ours, but no handler config
    "tcm-user/1/db0/xcopy/",
    "tcm-user/1/db0/xcopy/bogus;/srv/a",  # ours, an unknown kind
    "tcm-user/1/db0/xcopy/disk;relative.img",
    "tcm-user/1/db0/xcopy/disk;/srv/a;block_size=abc",
    "tcm-user/1/db0/xcopy/tape;/srv/a;capacity=-5",
    "tcm-user/1/db0/xcopy/tape;/srv/lib;drive=x",
    "tcm-user/1/db0/xcopy/disk;/srv/a;=1",
    "uio_pci_generic",                    # another uio driver
    "TCM-USER/1/db0/xcopy/disk;/srv/a",
]


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_uio_names_are_refused_without_crashing(tmp_path, name):
    d = Daemon()
    assert d.add(str(fake_uio(tmp_path, 7, name))) is None
    assert not d.devices


def test_a_uio_whose_name_is_not_text_is_refused(tmp_path, caplog):
    path = fake_uio(tmp_path, 3, "x")
    (path / "name").write_bytes(b"tcm-user/1/\xff\xfe/xcopy/disk;/srv/a\n")
    d = Daemon()
    assert d.add(str(path)) is None
    assert "cannot read uio device" in caplog.text


@pytest.mark.parametrize("size", ["", "zero", "0x0", "-1"])
def test_a_uio_with_no_usable_map_is_refused(tmp_path, size):
    path = fake_uio(tmp_path, 4, "tcm-user/1/db0/xcopy/disk;/srv/a")
    (path / "maps" / "map0" / "size").write_text(size)
    opened = []
    d = Daemon(opener=lambda *a: opened.append(a))
    assert d.add(str(path)) is None
    assert not opened and not d.devices


def test_a_uio_without_maps_is_refused(tmp_path):
    path = tmp_path / "uio5"
    path.mkdir()
    (path / "name").write_text("tcm-user/1/db0/xcopy/disk;/srv/a\n")
    assert Daemon().add(str(path)) is None


def test_parse_uio_name_refuses_empty_parts():
    assert uio.parse_uio_name("tcm-user/1//xcopy/cfg") is None
    assert uio.parse_uio_name("tcm-user/1/db0//cfg") is None
    assert uio.parse_uio_name("tcm-user/1/db0/other/cfg").subtype == "other"


# --- file modes, whatever the umask ------------------------------------------------------------
@pytest.fixture
def umask_000():
    old = os.umask(0)
    yield
    os.umask(old)


def _secret_config() -> config.SavedConfig:
    acl = config.Acl("iqn.2026-11.org.example:ini", (),
                     config.Chap("user", "s3cret-one"), config.Chap("tgt", "s3cret-two"))
    tpg = config.Tpg(1, acls=(acl,), attributes={"authentication": "1"})
    return config.SavedConfig(iscsi=(config.IscsiTarget("iqn.2026-11.org.example:t", (tpg,)),))


def test_saved_config_is_0600_in_a_0700_directory_and_so_are_backups(tmp_path, umask_000):
    path = tmp_path / "etc" / "lio-xcopy" / "saveconfig.json"
    cfg = _secret_config()
    config.save(cfg, path)
    config.save(config.SavedConfig(), path)  # the first becomes the backup .1
    config.save(cfg, path)
    assert mode(path.parent) == 0o700 and mode(path.parent.parent) == 0o700
    assert mode(path) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "saveconfig.json", "saveconfig.json.1", "saveconfig.json.2"]
    assert {mode(p) for p in path.parent.iterdir()} == {0o600}
    assert "s3cret-one" in path.read_text()


def test_a_saved_config_holding_secrets_that_others_can_read_is_refused(tmp_path):
    path = tmp_path / "saveconfig.json"
    config.save(_secret_config(), path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        config.load(path)


def test_daemon_state_file_is_not_writable_by_others(tmp_path, umask_000):
    path = tmp_path / "run" / "lio-xcopy" / "state.json"
    state_file.write(state_file.DaemonState(os.getpid(), 0.0, {"db0": "disk"}), path)
    assert mode(path) == 0o644 and mode(path.parent) == 0o755
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]
    assert state_file.read(path).luns == {"db0": "disk"}


def test_catalog_is_0600_in_a_0700_directory(tmp_path, umask_000):
    from lio_xcopy.initiator.catalog import Catalog

    path = tmp_path / "var" / "lib" / "lio-xcopy" / "catalog.db"
    Catalog(path).db.close()
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    Catalog(path).db.close()  # an existing one keeps its mode
    assert mode(path) == 0o600


def test_library_state_and_cartridges_are_private(tmp_path, umask_000):
    from lio_xcopy.devices.library import Library

    lib = Library.create(tmp_path / "lib", slots=4, ie_slots=1, drives=1)
    lib.create_cartridges(["L00001L8"], capacity=1 << 20)
    assert mode(lib.path) == 0o700
    files = sorted(lib.path.iterdir())
    assert [p.name for p in files if not p.name.startswith(".")] == [
        "L00001L8.aws", "library.json"]
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}


def test_tape_and_disk_images_are_created_private(tmp_path, umask_000):
    from lio_xcopy.control import provision
    from lio_xcopy.devices.awstape import AwsTape

    AwsTape(tmp_path / "t.aws", 1 << 20, create=True).close()
    provision._sparse_file(tmp_path / "d.img", 1 << 20)
    assert mode(tmp_path / "t.aws") == 0o600
    assert mode(tmp_path / "d.img") == 0o600


# --- secrets in reprs --------------------------------------------------------------------------
def test_chap_secrets_are_not_in_reprs():
    cfg = _secret_config()
    for text in (repr(cfg), str(cfg), repr(cfg.iscsi[0].tpgs[0].acls[0]),
                 repr(config.diff(config.SavedConfig(), cfg))):
        assert "s3cret" not in text, text
    assert "user" in repr(cfg.iscsi[0].tpgs[0].acls[0].chap)


def test_the_shell_history_keeps_chap_secrets_masked():
    readline = pytest.importorskip("readline")
    from lio_xcopy.control.shell import forget_secrets, mask_secrets

    line = "acls create iqn.x userid=u password=s3cret-1 mutual_userid=t mutual_password=s3cret-2"
    assert mask_secrets(line) == ("acls create iqn.x userid=u password=*** mutual_userid=t "
                                  "mutual_password=***")
    readline.clear_history()
    readline.add_history("ls")
    readline.add_history(line)
    forget_secrets(line)
    forget_secrets("ls")
    items = [readline.get_history_item(i + 1)
             for i in range(readline.get_current_history_length())]
    assert items == ["ls", mask_secrets(line)]
    readline.clear_history()
