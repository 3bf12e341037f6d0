"""The split of the VM suite across guests (tests/plugins/vm_shard.py): every file runs
in exactly one guest, the split is the same in every guest, and the loads are even."""

from __future__ import annotations

from pathlib import Path

import pytest
from plugins.vm_shard import SYSTEMD, UNLISTED, deal, parse_shard, weights

VM_FILES = sorted(p.name for p in (Path(__file__).parent.parent / "vm").glob("test_*.py"))


def test_every_vm_test_file_has_a_weight() -> None:
    w = weights()
    assert VM_FILES and set(VM_FILES) <= set(w), set(VM_FILES) - set(w)


@pytest.mark.parametrize("systemd_lane", [False, True])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_each_file_goes_to_one_guest_and_the_loads_are_even(n: int, systemd_lane: bool) -> None:
    w = weights()
    shards = deal(VM_FILES, n, w, systemd_lane)
    assert sorted(f for s in shards for f in s) == VM_FILES
    assert SYSTEMD in shards[0]
    assert deal(list(reversed(VM_FILES)), n, w, systemd_lane) == shards
    # the systemd test weighs on guest 1 only where its guest runs in that lane
    loads = [sum(w[f] for f in s if f != SYSTEMD or systemd_lane) for s in shards]
    # greedy: no guest is heavier than another by more than the heaviest file
    assert max(loads) - min(loads) <= max(w[f] for f in VM_FILES if f != SYSTEMD)


def test_an_unlisted_file_weighs_the_default() -> None:
    shards = deal(["a.py", "b.py", "c.py"], 2, {"a.py": UNLISTED * 2})
    assert shards == [{"a.py"}, {"b.py", "c.py"}]


@pytest.mark.parametrize("spec", ["2", "0/2", "3/2", "a/b", "1/2/3"])
def test_a_bad_shard_is_a_usage_error(spec: str) -> None:
    with pytest.raises(pytest.UsageError, match="LIO_XCOPY_VM_SHARD"):
        parse_shard(spec)
