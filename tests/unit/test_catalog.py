"""The catalog's job states: running -> done | failed, and jobs whose process died."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from lio_xcopy.initiator import catalog as c
from lio_xcopy.initiator.catalog import DONE, FAILED, RUNNING, Catalog, CatalogError, Terminated

ROW = dict(disk="/dev/sdb", disk_naa="6001405aa", first_block=0, blocks=2048, block_size=512,
           cartridge="L00001L8", drive="/dev/sg3", drive_naa="6001405bb", record_length=65536)


@pytest.fixture
def cat(tmp_path):
    with Catalog(tmp_path / "sub" / "catalog.db") as cat:
        yield cat


def test_a_job_is_running_until_finished(cat):
    job = cat.begin("backup", **ROW)
    assert job.state == RUNNING and job.pid == os.getpid() and job.ended is None
    assert job.process_start == c.process_identity(os.getpid())
    cat.update(job.id, file_number=3, list_id=9)
    done = cat.finish(job.id, bytes=1 << 20, digest="ab" * 16, digest_algorithm="xxh3-128")
    assert (done.state, done.file_number, done.bytes, done.digest, done.algorithm) == (
        DONE, 3, 1 << 20, "ab" * 16, "xxh3-128")
    assert done.ended >= done.started
    with pytest.raises(CatalogError, match="not running"):
        cat.fail(job.id, "late")
    with pytest.raises(CatalogError, match="not running"):
        cat.finish(job.id, bytes=1, digest=None)
    assert cat.job(job.id).state == DONE


@pytest.mark.parametrize("exc, words", [
    (RuntimeError("SPACE (6) on /dev/sg3 failed: BLANK CHECK"),
     "SPACE (6) on /dev/sg3 failed: BLANK CHECK"),
    (KeyboardInterrupt(), "interrupted (Ctrl-C)"),
    (Terminated(), "interrupted (SIGTERM)"),
])
def test_whatever_escapes_the_job_fails_it(cat, exc, words):
    with pytest.raises(type(exc)), cat.running("backup", **ROW) as job:
        raise exc
    row = cat.job(job.id)
    assert row.state == FAILED and row.error == words and row.ended is not None


def test_a_job_that_is_not_finished_is_not_done(cat):
    with cat.running("backup", **ROW) as job:
        pass
    assert cat.job(job.id).state == FAILED
    assert cat.job(job.id).error == "ended without being finished"


def test_columns_are_checked(cat):
    with pytest.raises(ValueError, match="not catalog columns"):
        cat.begin("backup", **ROW, colour="blue")
    job = cat.begin("backup", **ROW)
    with pytest.raises(ValueError):
        cat.update(job.id, state=DONE)  # only finish/fail change the state


def test_orphans_are_failed_once_on_this_host_only(tmp_path):
    path = tmp_path / "catalog.db"
    with Catalog(path) as cat:
        dead = cat.begin("backup", **ROW)
        reused = cat.begin("backup", **ROW)
        mine = cat.begin("backup", **ROW)
        elsewhere = cat.begin("backup", **ROW)
        cat.db.execute("UPDATE jobs SET pid = 4194000 WHERE id = ?", (dead.id,))
        # our own pid, but the row says another process start: the pid was reused
        cat.db.execute("UPDATE jobs SET process_start = 'x:1' WHERE id = ?", (reused.id,))
        cat.db.execute("UPDATE jobs SET host = 'other' WHERE id = ?", (elsewhere.id,))
    with Catalog(path) as cat:
        assert sorted(o.id for o in cat.orphans) == [dead.id, reused.id]
        assert cat.job(mine.id).state == RUNNING  # this process is alive
        assert cat.job(elsewhere.id).state == RUNNING  # cannot tell from here
        assert "process 4194000 on" in cat.job(dead.id).error
    with Catalog(path) as cat:
        assert cat.orphans == []


JOB_SCRIPT = textwrap.dedent("""
    import sys, time
    from lio_xcopy.initiator.backup import sigterm_raises
    from lio_xcopy.initiator.catalog import Catalog
    with Catalog(sys.argv[1]) as cat:
        with cat.running("backup", disk="/dev/sdb", disk_naa="60", first_block=0, blocks=1,
                         block_size=512, drive="/dev/sg3", drive_naa="61",
                         record_length=512) as job, sigterm_raises():
            print(job.id, flush=True)
            time.sleep(60)
""")


@pytest.mark.parametrize("sig, error", [
    (signal.SIGTERM, "interrupted (SIGTERM)"),
    (signal.SIGKILL, "interrupted: process"),
    (signal.SIGINT, "interrupted (Ctrl-C)"),
])
def test_a_killed_job_process_is_failed(tmp_path, sig, error):
    path = tmp_path / "catalog.db"
    # a shell's background job ignores SIGINT, and Python then keeps it ignored: give
    # the child the default disposition, as a terminal's foreground job has it
    p = subprocess.Popen([sys.executable, "-c", JOB_SCRIPT, str(path)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    job_id = int(p.stdout.readline())
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    with Catalog(path) as cat:
        job = cat.job(job_id)
        assert job.state == FAILED and job.error.startswith(error), (job.error, err)
        assert [o.id for o in cat.orphans] == ([job_id] if sig == signal.SIGKILL else [])


def test_latest_done_backup_of_a_source(cat):
    a = cat.begin("backup", **ROW)
    cat.finish(a.id, bytes=1, digest=None)
    b = cat.begin("backup", **ROW)
    cat.finish(b.id, bytes=2, digest=None)
    failed = cat.begin("backup", **ROW)
    cat.fail(failed.id, "no")
    assert cat.latest("6001405AA".lower()).id == b.id
    assert cat.latest("naa.6001405aa").id == b.id
    with pytest.raises(CatalogError, match="no finished backup of NAA 6001405cc"):
        cat.latest("6001405cc")
    with pytest.raises(CatalogError, match=r"no job 99 .* `lio-xcopy catalog` lists"):
        cat.job(99)


def test_unusable_catalogs_say_what_to_do(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CatalogError, match="move it aside or give another with --catalog"):
        Catalog(bad)
    newer = tmp_path / "newer.db"
    with Catalog(newer) as cat:
        cat.db.execute("PRAGMA user_version = 99")
    with pytest.raises(CatalogError, match="newer lio-xcopy"):
        Catalog(newer)
    (tmp_path / "file").write_text("")
    with pytest.raises(CatalogError, match="give a writable place"):
        Catalog(tmp_path / "file" / "catalog.db")


def test_listing(cat, capsys, tmp_path):
    a = cat.begin("backup", **ROW)
    cat.update(a.id, file_number=0)
    cat.finish(a.id, bytes=1 << 20, digest="cd" * 16, digest_algorithm="xxh3-128")
    b = cat.begin("backup", **ROW)
    cat.fail(b.id, "interrupted (SIGTERM)")
    text = c.format_jobs(cat.jobs())
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["ID", "KIND", "STATE"]
    assert " done " in lines[1] and "L00001L8" in lines[1] and "1.0 MiB" in lines[1]
    assert lines[0].split()[-1] == "DIGEST" and "xxh3-128 cdcdcdcdcdcdcdcd" in lines[1]
    assert " failed " in lines[2] and lines[3].strip() == "interrupted (SIGTERM)"
    assert c.main(["--catalog", str(cat.path)]) == 0
    assert capsys.readouterr().out == text + "\n"
    assert c.main(["--catalog", str(cat.path), "--job", str(a.id)]) == 0
    out = capsys.readouterr().out
    assert "digest           " + "cd" * 16 in out and "state            done" in out
    assert "digest_algorithm xxh3-128" in out
    assert c.main(["--catalog", str(cat.path), "--job", "x"]) == 2


def test_process_identity_changes_with_the_process():
    me = c.process_identity(os.getpid())
    assert me and me == c.process_identity(os.getpid())
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        other = c.process_identity(p.pid)
        assert other and other != me
    finally:
        p.kill()
        p.wait()
    time.sleep(0)
    assert c.process_identity(p.pid) is None


#: The catalog as schema 2 made it (lio-xcopy before XXH3-128): every digest SHA-256, in
#: a column named after it.
SCHEMA_2 = """
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('backup', 'restore')),
    state TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed')),
    disk TEXT NOT NULL, disk_naa TEXT NOT NULL, first_block INTEGER NOT NULL,
    blocks INTEGER NOT NULL, block_size INTEGER NOT NULL, cartridge TEXT,
    drive TEXT NOT NULL, drive_naa TEXT NOT NULL, file_number INTEGER,
    record_length INTEGER NOT NULL, bytes INTEGER, sha256 TEXT, list_id INTEGER,
    restored_job INTEGER REFERENCES jobs(id), started REAL NOT NULL, ended REAL,
    host TEXT NOT NULL, pid INTEGER NOT NULL, process_start TEXT NOT NULL, error TEXT,
    label_length INTEGER
);
CREATE INDEX jobs_source ON jobs (disk_naa, state);
INSERT INTO jobs (kind, state, disk, disk_naa, first_block, blocks, block_size, cartridge,
                  drive, drive_naa, file_number, record_length, bytes, sha256, started,
                  ended, host, pid, process_start, label_length)
    VALUES ('backup', 'done', '/dev/sdb', '6001405aa', 0, 2048, 512, 'L00001L8',
            '/dev/sg3', '6001405bb', 0, 65536, 1048576,
            'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 1.0, 2.0,
            'otherhost', 1, '', 512);
PRAGMA user_version = 2;
"""


def test_a_catalog_of_schema_2_opens_with_its_digests_sha256(tmp_path, capsys):
    """A catalog written before the digest algorithm was recorded keeps working: its
    sha256 column becomes digest, and a NULL digest_algorithm means SHA-256."""
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_2)
    db.close()
    sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    with Catalog(path) as cat:
        assert cat.db.execute("PRAGMA user_version").fetchone()[0] == c.SCHEMA_VERSION == 3
        (old,) = cat.jobs()
        assert (old.digest, old.digest_algorithm, old.algorithm) == (sha, None, "sha256")
        assert (old.label_length, old.cartridge, old.state) == (512, "L00001L8", DONE)
        assert "sha256 e3b0c44298fc1c14" in c.format_jobs(cat.jobs())
        new = cat.begin("backup", **ROW)
        cat.finish(new.id, bytes=1, digest="ab" * 16, digest_algorithm="xxh3-128")
    with Catalog(path) as cat:  # opened again: already upgraded, nothing changes
        assert [(j.digest, j.algorithm) for j in cat.jobs()] == [(sha, "sha256"),
                                                                  ("ab" * 16, "xxh3-128")]
    assert c.main(["--catalog", str(path), "--job", "1"]) == 0
    assert "digest           " + sha in capsys.readouterr().out


def test_a_failed_upgrade_leaves_the_old_catalog_as_it_was(tmp_path, monkeypatch):
    """The upgrade is one transaction: a catalog is never left half upgraded."""
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_2)
    db.close()

    real = Catalog._upgrade

    def upgrade_then_fail(self):
        real_execute = self.db.execute

        class Db:  # the digest_algorithm column cannot be added
            def execute(self, sql, *args):
                if "ADD COLUMN digest_algorithm" in sql:
                    raise sqlite3.OperationalError("disk I/O error")
                return real_execute(sql, *args)

        db, self.db = self.db, Db()
        try:
            real(self)
        finally:
            self.db = db

    monkeypatch.setattr(Catalog, "_upgrade", upgrade_then_fail)
    with pytest.raises(CatalogError, match="not a usable catalog"):
        Catalog(path)
    monkeypatch.undo()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    assert "sha256" in [r[1] for r in db.execute("PRAGMA table_info(jobs)")]
    db.close()
    with Catalog(path) as cat:  # the next open upgrades it
        assert cat.jobs()[0].algorithm == "sha256"
