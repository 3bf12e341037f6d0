"""provision.export_loopback: which loopback target a LUN goes to when none is named."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from lio_xcopy.control import provision, rtslib_adapter


@dataclass
class _Target:
    wwn: str
    luns: list[str] = field(default_factory=list)

    @property
    def tpgs(self):
        return [SimpleNamespace(luns=[SimpleNamespace(storage_object=SimpleNamespace(name=n),
                                                      lun=i) for i, n in enumerate(self.luns)])]


class _Tpg:
    def __init__(self, target: _Target) -> None:
        self.target = target

    @property
    def luns(self):
        return self.target.tpgs[0].luns


@pytest.fixture
def loopback(monkeypatch):
    """A fake rtslib loopback fabric: the list of its targets, in configfs order."""
    targets: list[_Target] = []

    def target(fabric, wwn=None):
        found = next((t for t in targets if t.wwn == wwn), None)
        if found is None:
            found = _Target(wwn or f"naa.5001405{len(targets):09x}")
            targets.append(found)
        return found

    def lun(tpg, lun=None, storage_object=None):
        tpg.target.luns.append(storage_object.name)
        return SimpleNamespace(lun=len(tpg.target.luns) - 1)

    fake = SimpleNamespace(FabricModule=lambda name: SimpleNamespace(targets=list(targets)),
                           Target=target, TPG=lambda t, tag: _Tpg(t), LUN=lun)
    monkeypatch.setattr(rtslib_adapter, "rtslib", lambda: fake)
    return targets


def _lun(name: str) -> provision.Lun:
    return provision.Lun(name, "disk", None, "0" * 32, SimpleNamespace(name=name))


def test_a_new_lun_joins_the_target_that_already_exports_luns(loopback):
    loopback += [_Target("naa.5001405000000001"),  # left empty by another tool
                 _Target("naa.5001405000000009", ["db0", "t0"]),
                 _Target("naa.5001405000000005", ["apart0"])]
    provision.export_loopback(_lun("db1"))
    assert loopback[1].luns == ["db0", "t0", "db1"]
    assert loopback[0].luns == [] and loopback[2].luns == ["apart0"]


def test_with_no_loopback_target_one_is_made(loopback):
    provision.export_loopback(_lun("db0"))
    assert [t.luns for t in loopback] == [["db0"]]


def test_a_named_target_is_used_even_when_empty(loopback):
    loopback += [_Target("naa.5001405000000009", ["db0"])]
    provision.export_loopback(_lun("db1"), target_wwn="naa.5001405000000002")
    assert [(t.wwn, t.luns) for t in loopback] == [("naa.5001405000000009", ["db0"]),
                                                   ("naa.5001405000000002", ["db1"])]
