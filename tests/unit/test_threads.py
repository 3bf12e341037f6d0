"""The daemon's threads carry their names to the kernel (``/proc/PID/task/TID/comm``),
where ``top -H``, ``ps -L`` and ``perf`` read them."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from lio_xcopy import threads
from lio_xcopy.copy.digest import BackgroundDigest
from lio_xcopy.copy.executor import DaemonThreads, named


def comm(thread: threading.Thread | None = None) -> str:
    tid = (thread or threading.current_thread()).native_id
    return Path(f"/proc/self/task/{tid}/comm").read_text().rstrip("\n")


pytestmark = pytest.mark.skipif(not Path("/proc/thread-self/comm").exists(),
                                reason="no /proc/thread-self/comm: not Linux")


@pytest.mark.parametrize(("name", "kept"), [
    ("copy-digest", "copy-digest"),
    ("ring-tape0", "ring-tape0"),
    ("exactly15chars!", "exactly15chars!"),
    # names that share a start differ at their end: keep the kind and the end
    ("ring-scale-disk-12", "ring-le-disk-12"),
    ("lun-scale-disk-0-io_3", "lun-disk-0-io_3"),
    ("xcopy-backupdisk-7", "xcopy-kupdisk-7"),
    # no kind to keep: the start
    ("averyveryverylongname", "averyveryverylo"),
    ("ringé-scale-disk-12", "ringé-disk-12"),
    ("ringé-scale-disk-1é", "ringé-disk-1é"),
])
def test_os_name_fits_the_kernel(name, kept):
    got = threads.os_name(name)
    assert got == kept
    assert len(got.encode()) <= threads.COMM_LEN


def test_a_started_thread_has_its_name_in_the_kernel():
    seen: list[str] = []
    go = threading.Event()
    t = threads.start(lambda: (seen.append(comm()), go.wait(5)), "ring-scale-disk-12")
    try:
        assert t.name == "ring-scale-disk-12" and t.daemon
    finally:
        go.set()
        t.join(5)
    assert seen == ["ring-le-disk-12"]


def test_a_copy_names_its_thread_while_it_runs_and_gives_the_name_back():
    pool = DaemonThreads("xcopy")
    during: list[str] = []
    after: list[str] = []

    def work() -> None:
        during.append(comm())

    def job() -> None:
        named("xcopy-disk0-7", work)()
        after.append(comm())

    pool.submit(job).result(5)
    assert during == ["xcopy-disk0-7"]
    assert after == [threads.os_name("xcopy-1")]


def test_the_digest_worker_is_named():
    digest = BackgroundDigest()
    seen: list[str] = []

    class Probe:
        def update(self, data: object) -> None:
            seen.append(comm())

        def digest(self) -> bytes:
            return b""

    digest._hash = Probe()
    digest.update(bytearray(1 << 20))  # large enough to go to the worker
    digest.digest()
    assert seen == ["copy-digest"]


def test_naming_where_the_kernel_has_no_file_changes_nothing(monkeypatch):
    before = comm()

    def refuse(*a, **k):
        raise FileNotFoundError("/proc/thread-self/comm")

    monkeypatch.setattr("builtins.open", refuse)
    threads.name_os_thread("ring-x")  # no error: the name is for people
    monkeypatch.undo()
    assert comm() == before
