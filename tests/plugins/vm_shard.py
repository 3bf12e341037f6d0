"""The VM suite split across guests that run at once: a pytest plugin (registered in
tests/vm/conftest.py).

``LIO_XCOPY_VM_SHARD=i/n`` keeps the test files of guest *i* of *n* and deselects the
rest. Files are dealt whole (their module fixtures set up once), heaviest first, each to
the guest with the least weight so far, by the seconds in ``tests/vm/durations.txt``;
within a guest they run in the usual order (``test_zz_*`` last). ``test_00_*`` (what the
guest's kernel offers) runs in every guest, and ``test_systemd.py`` (skipped in a guest
without systemd as PID 1) in guest 1: where scripts/test runs the systemd guest first in
guest 1's lane (``LIO_XCOPY_VM_SYSTEMD_LANE=1``), that file's weight is guest 1's load
before the deal. Every guest computes the same split, so together they run each other
file exactly once.

At the end of a session the seconds each file took go to
``<LIO_XCOPY_WORK>/vm-durations.txt``, in the format of ``durations.txt``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import pytest

DURATIONS = Path(__file__).resolve().parent.parent / "vm" / "durations.txt"
#: the weight of a file that durations.txt does not list
UNLISTED = 30.0
#: the systemd guest's test: dealt to guest 1, whose lane runs the systemd guest first
SYSTEMD = "test_systemd.py"

_took: dict[str, float] = defaultdict(float)


def parse_shard(spec: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n), 1 <= i <= n."""
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise pytest.UsageError(f"LIO_XCOPY_VM_SHARD={spec!r}: give i/n, e.g. 1/2") from None
    if not 1 <= i <= n:
        raise pytest.UsageError(f"LIO_XCOPY_VM_SHARD={spec!r}: i must be 1..n")
    return i, n


def weights(path: Path = DURATIONS) -> dict[str, float]:
    """File name -> seconds, from lines ``SECONDS NAME`` (``#`` starts a comment)."""
    out: dict[str, float] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            secs, name = line.split()
            out[name] = float(secs)
    return out


def deal(files: list[str], n: int, weight: dict[str, float],
         systemd_lane: bool = False) -> list[set[str]]:
    """Files dealt to n guests: heaviest first, each to the lightest guest so far (ties
    by name, so that every guest computes the same split). :data:`SYSTEMD` goes to
    guest 1, its weight counted there only with ``systemd_lane``."""
    shards: list[set[str]] = [set() for _ in range(n)]
    load = [0.0] * n
    if SYSTEMD in files:
        shards[0].add(SYSTEMD)
        if systemd_lane:
            load[0] = weight.get(SYSTEMD, UNLISTED)
    for f in sorted((f for f in files if f != SYSTEMD),
                    key=lambda f: (-weight.get(f, UNLISTED), f)):
        k = min(range(n), key=lambda j: (load[j], j))
        shards[k].add(f)
        load[k] += weight.get(f, UNLISTED)
    return shards


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    spec = os.environ.get("LIO_XCOPY_VM_SHARD")
    if not spec:
        return
    i, n = parse_shard(spec)
    files = sorted({item.path.name for item in items})
    lane = os.environ.get("LIO_XCOPY_VM_SYSTEMD_LANE") == "1"
    mine = deal(files, n, weights(), systemd_lane=lane)[i - 1]
    def ours(item: pytest.Item) -> bool:
        return item.path.name in mine or item.path.name.startswith("test_00_")

    keep = [item for item in items if ours(item)]
    gone = [item for item in items if not ours(item)]
    if gone:
        config.hook.pytest_deselected(items=gone)
        items[:] = keep


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _took[report.nodeid.split("::", 1)[0].rsplit("/", 1)[-1]] += report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    where = os.environ.get("LIO_XCOPY_WORK")
    if where and _took:
        lines = [f"{max(1, round(s)):5d} {name}" for name, s in sorted(_took.items())]
        Path(where, "vm-durations.txt").write_text("\n".join(lines) + "\n")
