"""The saved configuration: checking, atomic saving with backups, and restore diffs."""

from __future__ import annotations

import copy
import json
import os
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lio_xcopy.control import config
from lio_xcopy.control.config import (
    Acl,
    Chap,
    DiskConfig,
    IscsiTarget,
    LoopbackTarget,
    MappedLun,
    Portal,
    SavedConfig,
    TapeConfig,
    Tpg,
    diff,
    dump,
    load,
    loads,
    save,
)
from lio_xcopy.errors import ConfigError

UUID0 = "6d1f2c34-5b6a-4c8d-9e0f-123456789abc"
UUID1 = "0b8e8f5e-1c1d-4f4a-8a7c-0d5e6f7a8b9c"
IQN = "iqn.2003-01.org.example:backup"
CLIENT = "iqn.1994-05.com.redhat:client1"
LOOP = "naa.50014050aabbccdd"


def base() -> dict:
    """A valid document using every section."""
    return {
        "version": 2,
        "disks": [
            {"name": "db0", "path": "/srv/db0.img", "size": "64M", "block_size": 512,
             "wwn": UUID0},
            {"name": "db1", "path": "/srv/db1.img", "size": 1048576},
        ],
        "tapes": [{"name": "tape0", "path": "/srv/tape0.aws", "capacity": "1G", "wwn": UUID1}],
        "loopback": [{"wwn": LOOP, "luns": {"0": "db0", "1": "tape0"}}],
        "iscsi": [{"iqn": IQN, "tpgs": [{
            "tag": 1,
            "attributes": {"authentication": 1, "generate_node_acls": False},
            "portals": [{"ip": "0.0.0.0"}],
            "luns": {"0": "db0", "1": "tape0"},
            "acls": [{
                "initiator": CLIENT,
                "mapped_luns": [{"mapped_lun": 0, "tpg_lun": 0}],
                "chap": {"userid": "client1", "password": "s3cret-one"},
                "mutual_chap": {"userid": "target", "password": "s3cret-two"},
            }],
        }]}],
        "copy_groups": {"nightly": ["db0", "tape0"]},
    }


def write(path: Path, doc, mode: int = 0o600) -> Path:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    path.chmod(mode)
    return path


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- loading -----------------------------------------------------------------------------------
def test_base_loads_into_the_model(tmp_path):
    cfg = load(write(tmp_path / "saveconfig.json", base()))
    assert cfg.disks[0] == DiskConfig("db0", Path("/srv/db0.img"), 64 << 20, 512, UUID0)
    assert cfg.disks[1].wwn is None and cfg.disks[1].block_size == 512
    assert cfg.tapes == (TapeConfig("tape0", Path("/srv/tape0.aws"), 1 << 30, UUID1),)
    assert cfg.loopback == (LoopbackTarget(LOOP, {0: "db0", 1: "tape0"}),)
    assert cfg.loopback_luns() == {"db0": (LOOP, 0), "tape0": (LOOP, 1)}
    tpg = cfg.iscsi[0].tpgs[0]
    assert tpg.enable and tpg.authentication
    assert tpg.attributes == {"authentication": "1", "generate_node_acls": "0"}
    assert tpg.portals == (Portal("0.0.0.0", 3260),)
    assert tpg.luns == {0: "db0", 1: "tape0"}
    assert tpg.acls[0].mapped_luns == (MappedLun(0, 0, False),)
    assert tpg.acls[0].mutual_chap == Chap("target", "s3cret-two")
    assert cfg.copy_groups == {"nightly": ("db0", "tape0")}
    assert cfg.has_secrets


def test_a_copy_group_admits_a_foreign_device_by_designator(tmp_path):
    doc = base()
    doc["copy_groups"]["offsite"] = ["tape0", "foreign:naa.6001405f00d0000000000000000000aa"]
    cfg = load(write(tmp_path / "saveconfig.json", doc))
    assert cfg.copy_groups["offsite"] == ("tape0", "foreign:naa.6001405f00d0000000000000000000aa")


def test_empty_sections_are_optional():
    assert loads('{"version": 1}') == SavedConfig()


def _set(path, value):
    def mutate(d):
        *parents, last = path
        for p in parents:
            d = d[p]
        if value is _DELETE:
            del d[last]
        else:
            d[last] = value
    return mutate


_DELETE = object()
TPG = ("iscsi", 0, "tpgs", 0)
ACL = (*TPG, "acls", 0)
T = "iscsi[0].tpgs[0]"
A = f"{T}.acls[0]"

# (mutation, JSON path named in the message, what the message says to do)
BAD = [
    (_set(("disks", 1, "size"), "ten"), "disks[1].size", "'ten' is not a size; use e.g. 10G"),
    (_set(("disks", 1, "size"), True), "disks[1].size", "use e.g. 10G"),
    (_set(("disks", 1, "size"), 0), "disks[1].size", "use e.g. 10G"),
    (_set(("disks", 1, "size"), 1000), "disks[1].size", "round it to one"),
    (_set(("disks", 0, "block_size"), 500), "disks[0].block_size", "use 512, 1024, 2048 or 4096"),
    (_set(("disks", 0, "block_size"), 512.0), "disks[0].block_size", "use 512, 1024"),
    (_set(("disks", 0, "path"), "db0.img"), "disks[0].path", "give an absolute path"),
    (_set(("disks", 0, "path"), "/srv/a,b"), "disks[0].path", "rename or link the file"),
    (_set(("disks", 0, "path"), 7), "disks[0].path", "expected a string"),
    (_set(("disks", 0, "name"), "db 0"), "disks[0].name", "use letters, digits"),
    (_set(("disks", 0, "name"), None), "disks[0].name", "expected a string"),
    (_set(("disks", 0, "wwn"), "xyz"), "disks[0].wwn", "use a UUID"),
    (_set(("disks", 0, "colour"), "red"), "disks[0].colour", "unknown field; remove it"),
    (_set(("disks", 0, "name"), _DELETE), "disks[0].name", "missing; add it"),
    (_set(("disks",), {}), "disks", "expected a list"),
    (_set(("disks", 0), "db0"), "disks[0]", "expected an object"),
    (_set(("tapes", 0, "capacity"), "100K"), "tapes[0].capacity", "use at least 1M"),
    (_set(("tapes", 0, "name"), "db1"), "tapes[0].name", "give each backstore its own name"),
    (_set(("tapes", 0, "path"), "/srv/db1.img"), "tapes[0].path", "its own file"),
    (_set(("tapes", 0, "wwn"), UUID0.upper()), "tapes[0].wwn", "use a fresh UUID"),
    (_set(("loopback", 0, "luns", "5"), "ghost"), 'loopback[0].luns["5"]',
     "add it to disks or tapes"),
    (_set(("loopback", 0, "luns", "x"), "db1"), 'loopback[0].luns.x',
     "is not a number"),
    (_set(("loopback", 0, "wwn"), "naa.123"), "loopback[0].wwn", "16 hex digits"),
    (lambda d: d["loopback"].append({"wwn": LOOP, "luns": {}}), "loopback[1].wwn",
     "merge the two"),
    (_set(("iscsi", 0, "iqn"), "backup"), "iscsi[0].iqn", "use e.g. iqn."),
    (_set(("iscsi", 0, "iqn"), IQN.upper()), "iscsi[0].iqn", "write it in lower case"),
    (lambda d: d["iscsi"].append({"iqn": IQN}), "iscsi[1].iqn", "merge the two targets"),
    (lambda d: d["iscsi"][0]["tpgs"].append({"tag": 1}), f"{T[:-3]}[1].tag",
     "give each TPG its own tag"),
    (_set((*TPG, "tag"), 0), f"{T}.tag", "use 1 to 65535"),
    (_set((*TPG, "enable"), "yes"), f"{T}.enable", "expected true or false"),
    (_set((*TPG, "portals", 0, "ip"), "1.2.3"), f"{T}.portals[0].ip", "use e.g. 0.0.0.0"),
    (_set((*TPG, "portals", 0, "ip"), "::0"), f"{T}.portals[0].ip", "write it as '::'"),
    (_set((*TPG, "portals", 0, "port"), 70000), f"{T}.portals[0].port", "use 1 to 65535"),
    (lambda d: d["iscsi"][0]["tpgs"][0]["portals"].append({"ip": "0.0.0.0", "port": 3260}),
     f"{T}.portals[1]", "keep one"),
    (_set((*TPG, "luns", "x"), "db1"), f"{T}.luns.x", 'use "0" to "65535"'),
    (_set((*TPG, "luns", "07"), "db1"), f'{T}.luns["07"]', 'use "0" to "65535"'),
    (_set((*TPG, "luns", "2"), "ghost"), f'{T}.luns["2"]', "add it to disks or tapes"),
    (_set((*TPG, "attributes", "authentication"), "2"), f"{T}.attributes.authentication",
     "use 1 (CHAP required) or 0"),
    (_set((*TPG, "attributes", "Bad-Name"), "1"), f'{T}.attributes["Bad-Name"]',
     "use the name LIO shows"),
    (_set((*ACL, "initiator"), "client1"), f"{A}.initiator", "use e.g. iqn."),
    (lambda d: d["iscsi"][0]["tpgs"][0]["acls"].append(
        {"initiator": CLIENT, "chap": {"userid": "u", "password": "p"}}),
     f"{T}.acls[1].initiator", "merge them"),
    (_set((*ACL, "mapped_luns", 0, "tpg_lun"), 9), f"{A}.mapped_luns[0].tpg_lun",
     "add it to the TPG's luns"),
    (lambda d: d["iscsi"][0]["tpgs"][0]["acls"][0]["mapped_luns"].append(
        {"mapped_lun": 0, "tpg_lun": 1}), f"{A}.mapped_luns[1].mapped_lun",
     "give each mapping its own number"),
    (_set((*ACL, "chap", "password"), ""), f"{A}.chap.password", "choose another"),
    (_set((*ACL, "chap", "userid"), "a b"), f"{A}.chap.userid", "choose another"),
    (_set((*ACL, "chap"), _DELETE), f"{A}.mutual_chap", "add chap or remove mutual_chap"),
    (_set((*ACL, "chap"), None), f"{A}.mutual_chap", "add chap or remove mutual_chap"),
    (lambda d: d["iscsi"][0]["tpgs"][0]["acls"].append({"initiator": "eui.0123456789abcdef"}),
     f"{T}.acls[1].chap", "set attributes.authentication to 0"),
    (_set(("copy_groups", "nightly"), ["db0", "ghost"]), "copy_groups.nightly[1]",
     "add it to disks or tapes"),
    (_set(("copy_groups", "nightly"), ["db0", "db0"]), "copy_groups.nightly[1]", "keep one"),
    (_set(("copy_groups", "no good"), []), 'copy_groups["no good"]', "use letters, digits"),
    (_set(("copy_groups", "nightly"), ["db0", "foreign:/dev/sg3"]), "copy_groups.nightly[1]",
     "naa.<hex>"),
    (_set(("version",), 3), "version", "upgrade lio-xcopy"),
    (_set(("version",), 0), "version", "not a schema version; use 2"),
    (_set(("version",), "1"), "version", "not a schema version; use 2"),
    (_set(("version",), _DELETE), "version", "missing; add it"),
]


@pytest.mark.parametrize(("mutate", "where", "advice"), BAD,
                         ids=[f"{i}:{w}" for i, (_, w, _) in enumerate(BAD)])
def test_every_bad_field_is_named_with_what_to_do(tmp_path, mutate, where, advice):
    doc = copy.deepcopy(base())
    mutate(doc)
    path = write(tmp_path / "saveconfig.json", doc)
    with pytest.raises(ConfigError) as e:
        load(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: {where}: "), msg
    assert advice in msg
    assert "\n" not in msg


def test_the_documented_example_message():
    doc = base()
    doc["disks"][1]["size"] = "ten"
    with pytest.raises(ConfigError, match=r"^saveconfig\.json: disks\[1\]\.size: 'ten' is not "
                                          r"a size; use e\.g\. 10G$"):
        loads(json.dumps(doc))


def test_top_level_must_be_an_object():
    with pytest.raises(ConfigError, match=r"^x: top level: expected an object"):
        loads("[]", "x")


def test_duplicate_json_keys_are_refused():
    text = json.dumps(base()).replace('"luns": {"0": "db0"', '"luns": {"4": "db1", "4": "db0"')
    with pytest.raises(ConfigError,
                       match=r"loopback\[0\]\.luns\[\"4\"\]: appears twice .*; keep one"):
        loads(text)


@pytest.mark.parametrize("damage", [
    lambda b: b[: len(b) // 2],  # truncated
    lambda b: b"",
    lambda b: b.replace(b"{", b"[", 1),
    lambda b: b"\xff\xfe" + b,  # not UTF-8
    lambda b: b"\0" * 4096,  # a crash left zeroes
])
def test_a_corrupt_file_is_refused_and_nothing_is_written(tmp_path, damage):
    path = tmp_path / "saveconfig.json"
    path.write_bytes(damage(dump(loads(json.dumps(base()))).encode()))
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError, match=r"corrupt.*(restore|fix)") as e:
        load(path)
    assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)
    assert snapshot(tmp_path) == before


def test_a_number_too_long_for_python_is_refused():
    with pytest.raises(ConfigError, match=r"not valid JSON .*; fix it or restore a backup"):
        loads('{"version": ' + "9" * 5000 + "}")


def test_a_missing_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match="no saved configuration there; save one first"):
        load(tmp_path / "nope.json")


def test_secrets_readable_by_others_are_refused_with_the_fix(tmp_path):
    path = write(tmp_path / "saveconfig.json", base(), 0o644)
    with pytest.raises(ConfigError, match=rf"others can read it; run `chmod 600 {path}`"):
        load(path)
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        load(path)
    path.chmod(0o600)
    assert load(path).has_secrets


def test_a_readable_file_without_secrets_loads(tmp_path):
    doc = base()
    doc["iscsi"] = []
    assert not load(write(tmp_path / "saveconfig.json", doc, 0o644)).has_secrets


# --- round trips ---------------------------------------------------------------------------
ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
NAMES = st.builds(str.__add__, st.sampled_from(ALNUM), st.text(ALNUM + "_.-", max_size=8))
PATHS = st.text(ALNUM + "_/ .é-", min_size=1, max_size=16).map("/".__add__)
IQNS = st.builds("iqn.{}-{:02d}.{}.{}".format, st.integers(2000, 2099), st.integers(1, 12),
                 st.text(ALNUM[:36] + "-", min_size=1, max_size=6),
                 st.text(ALNUM[:36] + ":.-", min_size=1, max_size=8))
SECRET = st.text(st.characters(blacklist_categories=("C", "Z")), min_size=1, max_size=12)
CHAPS = st.builds(Chap, SECRET, SECRET)
ATTRS = st.dictionaries(st.sampled_from(["authentication", "generate_node_acls",
                                         "demo_mode_write_protect", "cache_dynamic_acls"]),
                        st.sampled_from(["0", "1"]), max_size=3)


@st.composite
def tpgs(draw, tag, names):
    lun_ids = draw(st.lists(st.integers(0, config.MAX_LUN), unique=True,
                            max_size=3 if names else 0))
    luns = {i: draw(st.sampled_from(names)) for i in lun_ids}
    acls = []
    for initiator in draw(st.lists(IQNS, unique=True, max_size=2)):
        mapped = draw(st.lists(st.integers(0, config.MAX_LUN), unique=True,
                               max_size=len(lun_ids)))
        chap = draw(st.none() | CHAPS)
        mutual = draw(st.none() | CHAPS) if chap else None
        acls.append(Acl(initiator, tuple(
            MappedLun(m, draw(st.sampled_from(lun_ids)), draw(st.booleans())) for m in mapped),
            chap, mutual))
    attributes = draw(ATTRS)
    if any(a.chap is None for a in acls) and attributes.get("authentication") == "1":
        attributes["authentication"] = "0"
    portals = draw(st.lists(st.builds(Portal, st.ip_addresses().map(str),
                                      st.integers(1, 65535)), unique=True, max_size=2))
    return Tpg(tag, draw(st.booleans()), tuple(portals), luns, tuple(acls), attributes)


@st.composite
def saved_configs(draw):
    names = draw(st.lists(NAMES, unique=True, max_size=5))
    paths = draw(st.lists(PATHS, unique_by=Path, min_size=len(names), max_size=len(names)))
    serials = draw(st.lists(st.uuids().map(str), unique=True, min_size=len(names),
                            max_size=len(names)))
    wwns = [draw(st.sampled_from([None, s, s.upper()])) for s in serials]
    n_disks = draw(st.integers(0, len(names)))
    disks, tapes = [], []
    for i, (name, path, wwn) in enumerate(zip(names, paths, wwns, strict=True)):
        if i < n_disks:
            bs = draw(st.sampled_from(config.BLOCK_SIZES))
            disks.append(DiskConfig(name, Path(path), bs * draw(st.integers(1, 1 << 30)), bs,
                                    wwn))
        else:
            tapes.append(TapeConfig(name, Path(path), draw(st.integers(1 << 20, 1 << 50)), wwn))
    exported = draw(st.lists(st.sampled_from(names), unique=True) if names else st.just([]))
    ids = draw(st.lists(st.integers(0, config.MAX_LUN), unique=True, min_size=len(exported),
                        max_size=len(exported)))
    targets = []
    for iqn in draw(st.lists(IQNS, unique=True, max_size=2)):
        tags = draw(st.lists(st.integers(1, 65535), unique=True, max_size=2))
        targets.append(IscsiTarget(iqn, tuple(draw(tpgs(t, names)) for t in tags)))
    groups = draw(st.dictionaries(NAMES, st.lists(st.sampled_from(names), unique=True)
                                  .map(tuple) if names else st.just(()), max_size=2))
    loop = (LoopbackTarget(draw(st.sampled_from([None, LOOP])),
                           dict(zip(ids, exported, strict=True))),) if exported else ()
    return SavedConfig(tuple(disks), tuple(tapes), loop, tuple(targets), groups)


@settings(max_examples=20, deadline=None)
@given(saved_configs())
def test_dump_then_load_gives_the_same_config(cfg):
    text = dump(cfg)
    again = loads(text)
    assert again == cfg
    assert dump(again) == text  # stable
    assert diff(cfg, again) == ()


@settings(max_examples=6, deadline=None)
@given(saved_configs())
def test_save_then_load_gives_the_same_config(cfg):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "etc" / "saveconfig.json"
        assert save(cfg, path) == path
        assert load(path) == cfg
        save(cfg, path)  # the same again: nothing to back up
        assert sorted(p.name for p in path.parent.iterdir()) == ["saveconfig.json"]


def test_dump_key_order_does_not_depend_on_insertion_order():
    cfg = loads(json.dumps(base()))
    tpg = cfg.iscsi[0].tpgs[0]
    lb = cfg.loopback[0]
    shuffled = SavedConfig(cfg.disks, cfg.tapes,
                           (LoopbackTarget(lb.wwn, dict(reversed(lb.luns.items()))),),
                           (IscsiTarget(IQN, (Tpg(tpg.tag, tpg.enable, tpg.portals,
                                                  dict(reversed(tpg.luns.items())), tpg.acls,
                                                  dict(reversed(tpg.attributes.items()))),)),),
                           cfg.copy_groups)
    assert shuffled == cfg and dump(shuffled) == dump(cfg)


# --- saving ----------------------------------------------------------------------------------
CFG1 = SavedConfig(disks=(DiskConfig("db0", Path("/srv/db0.img"), 1 << 20),))


def numbered(n: int) -> SavedConfig:
    return SavedConfig(disks=(DiskConfig("db0", Path("/srv/db0.img"), n << 20),))


def test_save_creates_the_directory_0700_and_the_file_0600(tmp_path):
    old = os.umask(0)
    try:
        path = save(CFG1, tmp_path / "etc" / "lio-xcopy" / "saveconfig.json")
    finally:
        os.umask(old)
    assert mode(path.parent) == 0o700 and mode(path.parent.parent) == 0o700
    assert mode(path) == 0o600
    assert load(path) == CFG1


def test_save_leaves_an_existing_directory_alone(tmp_path):
    tmp_path.chmod(0o755)
    save(CFG1, tmp_path / "saveconfig.json")
    assert mode(tmp_path) == 0o755


def test_backups_rotate_cap_at_n_and_stay_0600(tmp_path):
    path = tmp_path / "saveconfig.json"
    for n in range(1, 8):
        save(numbered(n), path, backups=3)
    assert load(path) == numbered(7)
    assert [load(path.with_name(f"saveconfig.json.{k}")) for k in (1, 2, 3)] == \
        [numbered(6), numbered(5), numbered(4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        ["saveconfig.json", "saveconfig.json.1", "saveconfig.json.2", "saveconfig.json.3"]
    assert all(mode(p) == 0o600 for p in tmp_path.iterdir())


def test_unchanged_content_does_not_rotate(tmp_path):
    path = tmp_path / "saveconfig.json"
    save(numbered(1), path)
    save(numbered(2), path)
    before = snapshot(tmp_path)
    save(numbered(2), path)
    assert snapshot(tmp_path) == before


def test_fewer_backups_drop_the_older_ones_and_zero_keeps_none(tmp_path):
    path = tmp_path / "saveconfig.json"
    for n in range(1, 6):
        save(numbered(n), path, backups=4)
    (tmp_path / "saveconfig.json.²").write_text("not ours")
    save(numbered(6), path, backups=2)
    (tmp_path / "saveconfig.json.²").unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        ["saveconfig.json", "saveconfig.json.1", "saveconfig.json.2"]
    other = tmp_path / "other.json"
    save(numbered(1), other, backups=0)
    save(numbered(2), other, backups=0)
    assert not other.with_name("other.json.1").exists()


def test_save_tightens_a_lax_mode_even_when_unchanged(tmp_path):
    path = save(CFG1, tmp_path / "saveconfig.json")
    path.chmod(0o644)
    save(CFG1, path)
    assert mode(path) == 0o600


@pytest.mark.parametrize("failing", ["fsync", "replace", "write"])
def test_a_failed_write_leaves_the_old_file_and_backups_intact(tmp_path, monkeypatch, failing):
    path = tmp_path / "saveconfig.json"
    save(numbered(1), path)
    save(numbered(2), path)
    before = snapshot(tmp_path)

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(ConfigError, match=r"cannot save \(No space left on device\); check"):
        save(numbered(3), path)
    monkeypatch.undo()
    assert snapshot(tmp_path) == before  # no temp file left behind either
    assert load(path) == numbered(2)


def test_a_failure_after_rotating_still_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "saveconfig.json"
    save(numbered(1), path)
    real = os.replace

    def replace(src, dst):
        if Path(dst) == path:
            raise OSError(5, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(ConfigError, match="Input/output error"):
        save(numbered(2), path)
    monkeypatch.undo()
    assert load(path) == numbered(1)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_save_refuses_what_load_would_refuse_and_writes_nothing(tmp_path):
    bad = SavedConfig(disks=CFG1.disks, loopback=(LoopbackTarget(None, {0: "ghost"}),))
    with pytest.raises(ConfigError,
                       match=r"loopback\[0\]\.luns\[\"0\"\]: no disk or tape named 'ghost'"):
        save(bad, tmp_path / "d" / "saveconfig.json")
    assert not (tmp_path / "d").exists()


# --- restore diffs ---------------------------------------------------------------------------
def actions(changes) -> list[str]:
    return [str(c) for c in changes]


def test_restoring_onto_nothing_creates_outermost_first():
    cfg = loads(json.dumps(base()))
    steps = actions(diff(SavedConfig(), cfg))
    assert steps[:4] == ["create disk db0", "create disk db1", "create tape tape0",
                         f"create target {IQN}"]
    assert steps.index(f"create loopback {LOOP} 0") > steps.index("create disk db0")
    assert steps.index(f"create mapped_lun {IQN} 1 {CLIENT} 0") > \
        steps.index(f"create lun {IQN} 1 0")
    assert all(s.startswith("create") for s in steps)
    assert diff(cfg, SavedConfig()) and all(c.action == "remove"
                                            for c in diff(cfg, SavedConfig()))
    assert actions(diff(cfg, SavedConfig()))[0] == f"remove mapped_lun {IQN} 1 {CLIENT} 0"


def test_restoring_twice_is_harmless():
    cfg = loads(json.dumps(base()))
    assert diff(cfg, loads(dump(cfg))) == ()


def test_a_changed_disk_is_recreated_with_what_hangs_on_it():
    doc = base()
    cur = loads(json.dumps(doc))
    doc["disks"][0]["size"] = "128M"
    steps = actions(diff(cur, loads(json.dumps(doc))))
    hanging = ["mapped_lun " + f"{IQN} 1 {CLIENT} 0", f"lun {IQN} 1 0", f"loopback {LOOP} 0",
               "disk db0"]
    assert steps == [f"remove {h}" for h in hanging] + \
        [f"create {h}" for h in reversed(hanging)]


def test_settings_change_in_place():
    doc = base()
    cur = loads(json.dumps(doc))
    doc["iscsi"][0]["tpgs"][0]["acls"][0]["chap"]["password"] = "n3w-secret"
    doc["iscsi"][0]["tpgs"][0]["enable"] = False
    doc["copy_groups"]["nightly"] = ["db1", "tape0"]
    changes = diff(cur, loads(json.dumps(doc)))
    assert actions(changes) == [f"change tpg {IQN} 1", f"change acl {IQN} 1 {CLIENT}",
                                "change copy_group nightly"]
    assert changes[1].item.chap == Chap("client1", "n3w-secret")


def test_a_moved_loopback_lun_and_a_dropped_portal():
    doc = base()
    cur = loads(json.dumps(doc))
    doc["loopback"][0]["luns"] = {"7": "db0", "1": "tape0"}
    doc["iscsi"][0]["tpgs"][0]["portals"] = []
    assert actions(diff(cur, loads(json.dumps(doc)))) == [
        f"remove portal {IQN} 1 0.0.0.0 3260", f"remove loopback {LOOP} 0",
        f"create loopback {LOOP} 7"]


def test_schema_1_files_still_load():
    doc = base()
    doc["version"] = 1
    doc["loopback"] = {"db0": 0, "tape0": 1}
    cfg = loads(json.dumps(doc))
    assert cfg.loopback == (LoopbackTarget(None, {0: "db0", 1: "tape0"}),)
    assert loads(dump(cfg)) == cfg and json.loads(dump(cfg))["version"] == 2
    doc["loopback"] = {"db0": 0, "tape0": 0}
    with pytest.raises(ConfigError, match=r"loopback\.tape0: .*own LUN id"):
        loads(json.dumps(doc))


def test_a_portal_in_a_network_namespace():
    doc = base()
    doc["iscsi"][0]["tpgs"][0]["portals"] = [{"ip": "10.99.0.1", "netns": "lioxc-tgt"}]
    cfg = loads(json.dumps(doc))
    assert cfg.iscsi[0].tpgs[0].portals == (Portal("10.99.0.1", 3260, "lioxc-tgt"),)
    assert loads(dump(cfg)) == cfg
    doc["iscsi"][0]["tpgs"][0]["portals"][0]["netns"] = "../x"
    with pytest.raises(ConfigError, match=r"portals\[0\]\.netns: .*leave it out"):
        loads(json.dumps(doc))


@settings(max_examples=12, deadline=None)
@given(saved_configs(), saved_configs())
def test_applying_a_diff_in_order_reaches_the_wanted_config(current, wanted):
    have, want = config.entries(current), config.entries(wanted)
    state = dict(have)
    for c in diff(current, wanted):
        key = ("backstore" if c.kind in ("disk", "tape") else c.kind, *c.key)
        if c.action == "remove":
            del state[key]
            assert not [k for k, e in state.items() if key in e.deps]  # children went first
        else:
            assert all(d in state for d in want[key].deps)  # parents came first
            state[key] = want[key]
    assert state.keys() == want.keys()
    assert all((e.kind, e.identity, e.settings) == (want[k].kind, want[k].identity,
                                                   want[k].settings) for k, e in state.items())


def test_changers_and_library_drives_round_trip_and_are_checked():
    doc = base()
    doc["changers"] = [{"name": "lib0", "library": "/srv/lib"}]
    doc["library_drives"] = [{"name": "libtape0", "library": "/srv/lib", "drive": 0},
                             {"name": "libtape1", "library": "/srv/lib", "drive": 1}]
    doc["loopback"][0]["luns"]["5"] = "lib0"
    cfg = loads(json.dumps(doc))
    assert cfg.changers == (config.ChangerConfig("lib0", Path("/srv/lib")),)
    assert [d.drive for d in cfg.library_drives] == [0, 1]
    assert loads(dump(cfg)) == cfg
    assert "create changer lib0" in actions(diff(SavedConfig(), cfg))
    doc["library_drives"][1]["drive"] = 0
    with pytest.raises(ConfigError, match=r"library_drives\[1\]\.drive: drive 0 of /srv/lib "
                                          r"is already 'libtape0'"):
        loads(json.dumps(doc))
    doc["library_drives"][1]["drive"] = 1
    doc["changers"].append({"name": "lib1", "library": "/srv/lib"})
    with pytest.raises(ConfigError, match=r"changers\[1\]\.library: .* already has changer"):
        loads(json.dumps(doc))


def test_serials_whose_naa_designators_collide_are_refused():
    doc = base()
    # LIO's NAA 6h keeps the first 25 hex digits: these two differ only after them
    doc["disks"][0]["wwn"] = "6d1f2c34-5b6a-4c8d-9e0f-123456789abc"
    doc["disks"][1]["wwn"] = "6d1f2c34-5b6a-4c8d-9e0f-1234567899ff"
    with pytest.raises(ConfigError, match=r"disks\[1\]\.wwn: .* same NAA designator as 'db0'"):
        loads(json.dumps(doc))
