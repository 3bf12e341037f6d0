"""The backup catalog: which source went to which cartridge and tape file, and whether
the job finished.

One sqlite3 database (default ``/var/lib/lio-xcopy/catalog.db``). A job is inserted
*running* (with the host and the process that runs it) before anything is copied and
marked *done* only once its data is on tape, closed by a filemark, and its digest
read; any error, Ctrl-C or SIGTERM marks it *failed* with the reason. A job left
*running* by a process that no longer exists (SIGKILL, a crash, a reboot) is marked
failed, and reported, the next time the catalog is opened on that host.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from lio_xcopy.errors import LioXcopyError

DEFAULT_PATH = Path("/var/lib/lio-xcopy/catalog.db")
SCHEMA_VERSION = 3  # 2: label_length; 3: digest (was sha256), digest_algorithm
RUNNING, DONE, FAILED = "running", "done", "failed"
BACKUP, RESTORE = "backup", "restore"
SHA256 = "sha256"  # the digest of jobs that name none (DigestAlgorithm.SHA256.label)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('backup', 'restore')),
    state TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed')),
    disk TEXT NOT NULL,            -- the disk's device node as given
    disk_naa TEXT NOT NULL,        -- its VPD 83h NAA designator, hex
    first_block INTEGER NOT NULL,  -- the range copied, in the disk's blocks
    blocks INTEGER NOT NULL,
    block_size INTEGER NOT NULL,
    cartridge TEXT,                -- barcode; NULL for a drive without a changer
    drive TEXT NOT NULL,           -- the drive's device node as given
    drive_naa TEXT NOT NULL,
    file_number INTEGER,           -- tape file (0 = first) holding the data
    record_length INTEGER NOT NULL,
    bytes INTEGER,                 -- bytes the copy manager moved
    digest TEXT,                   -- their digest, from the copy manager, hex
    list_id INTEGER,               -- the EXTENDED COPY list identifier
    restored_job INTEGER REFERENCES jobs(id),  -- restores: the backup job read
    started REAL NOT NULL,
    ended REAL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    process_start TEXT NOT NULL,   -- boot id and start time: a reused pid is not ours
    error TEXT,
    label_length INTEGER,          -- bytes of the label record opening the tape file; 0 or
                                   -- NULL (jobs of schema 1): the file holds the data alone
    digest_algorithm TEXT          -- 'xxh3-128' or 'sha256' (docs/copy-digest.md); NULL
                                   -- (jobs of schema 1 and 2): sha256
);
CREATE INDEX IF NOT EXISTS jobs_source ON jobs (disk_naa, state);
"""


class CatalogError(LioXcopyError):
    """The catalog cannot be opened or has no such job; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Job:
    """One row of the catalog."""

    id: int
    kind: str
    state: str
    disk: str
    disk_naa: str
    first_block: int
    blocks: int
    block_size: int
    cartridge: str | None
    drive: str
    drive_naa: str
    file_number: int | None
    record_length: int
    bytes: int | None
    digest: str | None
    list_id: int | None
    restored_job: int | None
    started: float
    ended: float | None
    host: str
    pid: int
    process_start: str
    error: str | None
    label_length: int | None = None
    digest_algorithm: str | None = None

    @property
    def size(self) -> int:
        return self.blocks * self.block_size

    @property
    def algorithm(self) -> str:
        """What :attr:`digest` is: ``sha256`` for the jobs of schemas 1 and 2."""
        return self.digest_algorithm or SHA256


_COLUMNS = tuple(f.name for f in fields(Job))


def process_identity(pid: int, proc: Path = Path("/proc")) -> str | None:
    """``<boot id>:<start time>`` of a live process (proc(5): field 22 of
    ``/proc/PID/stat``, in clock ticks since boot), None when there is no such
    process. A pid reused after a reboot or by a later process differs."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        boot = (proc / "sys" / "kernel" / "random" / "boot_id").read_text().strip()
    except OSError:
        return None
    after_comm = stat[stat.rindex(")") + 2:].split()
    return f"{boot}:{after_comm[19]}"


def _private_file(path: Path) -> None:
    """Create ``path`` (and its directory) for the owner alone, whatever the umask: the
    catalog's digests are what a restore trusts. sqlite gives its journals the same mode."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    if not path.stat().st_size:  # only a file made here: an existing catalog keeps its mode
        os.chmod(path, 0o600)


class Catalog:
    """The catalog database. Opening it marks this host's orphaned running jobs failed
    (:attr:`orphans` lists them for the caller to report)."""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH, *, host: str | None = None,
                 proc: Path = Path("/proc")):
        self.path = Path(path)
        self.host = host or socket.gethostname()
        self._proc = proc
        try:
            _private_file(self.path)
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise CatalogError(f"cannot open the catalog {self.path}: {e}; give a writable "
                               "place with --catalog PATH") from e
        self.db.row_factory = sqlite3.Row
        try:
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise CatalogError(f"{self.path} is a catalog of a newer lio-xcopy (schema "
                                   f"{version}): use that version")
            self.db.executescript(_SCHEMA)
            if version < SCHEMA_VERSION:
                self._upgrade()
            self.orphans = self._fail_orphans()
        except sqlite3.DatabaseError as e:
            self.db.close()
            raise CatalogError(f"{self.path} is not a usable catalog ({e}): move it aside "
                               "or give another with --catalog PATH") from e

    def _upgrade(self) -> None:
        """Bring a catalog of an older schema (or a new file) to :data:`SCHEMA_VERSION`,
        in one transaction: a catalog is never left half upgraded."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            version = self.db.execute("PRAGMA user_version").fetchone()[0]  # another
            # process may have upgraded it while this one waited for the lock
            if version == 1:  # jobs written before labels: their files have none
                self.db.execute("ALTER TABLE jobs ADD COLUMN label_length INTEGER")
            if version in (1, 2):  # every digest was SHA-256: a NULL algorithm says so
                self.db.execute("ALTER TABLE jobs RENAME COLUMN sha256 TO digest")
                self.db.execute("ALTER TABLE jobs ADD COLUMN digest_algorithm TEXT")
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- jobs ---------------------------------------------------------------------------------
    def begin(self, kind: str, **values: Any) -> Job:
        """Insert a running job of this process."""
        me = os.getpid()
        row = {"kind": kind, "state": RUNNING, "started": time.time(), "host": self.host,
               "pid": me, "process_start": process_identity(me, self._proc) or "", **values}
        unknown = set(row) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"not catalog columns: {sorted(unknown)}")
        names = ", ".join(row)
        marks = ", ".join("?" * len(row))
        cur = self.db.execute(f"INSERT INTO jobs ({names}) VALUES ({marks})", tuple(row.values()))
        return self.job(int(cur.lastrowid or 0))

    def update(self, job_id: int, **values: Any) -> Job:
        """Record what a running job learned (file number, list identifier)."""
        if set(values) - set(_COLUMNS) or {"id", "state"} & set(values):
            raise ValueError(f"cannot update {sorted(values)}")
        sets = ", ".join(f"{k} = ?" for k in values)
        self.db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*values.values(), job_id))
        return self.job(job_id)

    def finish(self, job_id: int, *, bytes: int, digest: str | None,  # noqa: A002
               digest_algorithm: str | None = None) -> Job:
        """running -> done, with the copy's digest (hex) and its algorithm."""
        return self._end(job_id, DONE, None, bytes=bytes, digest=digest,
                         digest_algorithm=digest_algorithm if digest is not None else None)

    def fail(self, job_id: int, error: str) -> Job:
        """running -> failed, with the reason in words."""
        return self._end(job_id, FAILED, error or "failed")

    def _end(self, job_id: int, state: str, error: str | None, **values: Any) -> Job:
        sets = "".join(f", {k} = ?" for k in values)
        cur = self.db.execute(
            f"UPDATE jobs SET state = ?, ended = ?, error = ?{sets} WHERE id = ? AND "
            "state = 'running'", (state, time.time(), error, *values.values(), job_id))
        if cur.rowcount != 1:
            raise CatalogError(f"job {job_id} is not running (another process ended it?)")
        return self.job(job_id)

    @contextlib.contextmanager
    def running(self, kind: str, **values: Any) -> Iterator[Job]:
        """A job for the body: whatever escapes it (an error, KeyboardInterrupt, a
        :class:`Terminated` from SIGTERM) marks the job failed, then propagates. The body
        calls :meth:`finish` itself when all is done."""
        job = self.begin(kind, **values)
        try:
            yield job
        except BaseException as e:
            with contextlib.suppress(CatalogError, sqlite3.Error):
                self.fail(job.id, describe(e))
            raise
        else:
            if self.job(job.id).state == RUNNING:
                self.fail(job.id, "ended without being finished")

    def job(self, job_id: int) -> Job:
        row = self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise CatalogError(f"no job {job_id} in {self.path}: `lio-xcopy catalog` lists "
                               "the jobs")
        return Job(**{k: row[k] for k in _COLUMNS})

    def jobs(self, *, kind: str | None = None, state: str | None = None,
             disk_naa: str | None = None, cartridge: str | None = None) -> list[Job]:
        where, args = [], []
        for col, val in (("kind", kind), ("state", state), ("disk_naa", disk_naa),
                         ("cartridge", cartridge)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = "SELECT * FROM jobs" + (f" WHERE {' AND '.join(where)}" if where else "")
        rows = self.db.execute(sql + " ORDER BY id", args).fetchall()
        return [Job(**{k: r[k] for k in _COLUMNS}) for r in rows]

    def latest(self, disk_naa: str) -> Job:
        """The newest finished backup of a source (by its NAA)."""
        naa = disk_naa.lower().removeprefix("naa.").removeprefix("0x")
        done = self.jobs(kind=BACKUP, state=DONE, disk_naa=naa)
        if not done:
            raise CatalogError(f"no finished backup of NAA {naa} in {self.path}: "
                               "`lio-xcopy catalog` lists the jobs")
        return done[-1]

    # --- orphans ------------------------------------------------------------------------------
    def _alive(self, job: Job) -> bool:
        now = process_identity(job.pid, self._proc)
        return now is not None and (not job.process_start or now == job.process_start)

    def _fail_orphans(self) -> list[Job]:
        out = []
        for job in self.jobs(state=RUNNING):
            if job.host != self.host or self._alive(job):
                continue
            why = (f"interrupted: process {job.pid} on {job.host} ended without finishing "
                   "the job (killed, crashed or the host rebooted)")
            with contextlib.suppress(CatalogError):
                out.append(self._end(job.id, FAILED, why))
        return out


class Terminated(BaseException):
    """SIGTERM arrived: ends the job like Ctrl-C, as a failure."""


def describe(e: BaseException) -> str:
    if isinstance(e, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(e, Terminated):
        return "interrupted (SIGTERM)"
    return str(e) or type(e).__name__


# --- listing --------------------------------------------------------------------------------
def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def size(n: int) -> str:
    """Bytes for people: ``512 B``, ``32.0 KiB``, ``96.0 MiB``, ``1.5 GiB``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def format_jobs(jobs: list[Job]) -> str:
    """The catalog as a table; failed jobs say why on the next line."""
    head = (f"{'ID':>4}  {'KIND':<7} {'STATE':<7} {'STARTED':<19}  {'SOURCE':<34} "
            f"{'CARTRIDGE':<10} {'FILE':>4} {'SIZE':>11}  DIGEST")
    lines = [head]
    for j in jobs:
        src = f"{j.disk} ({j.disk_naa[:16]})"
        if j.kind == RESTORE:
            src = f"job {j.restored_job} -> {j.disk}"
        lines.append(
            f"{j.id:>4}  {j.kind:<7} {j.state:<7} {_when(j.started):<19}  {src:<34.34} "
            f"{j.cartridge or '(drive)':<10} {'-' if j.file_number is None else j.file_number:>4}"
            f" {size(j.bytes if j.bytes is not None else j.size):>11}  "
            + (f"{j.algorithm} {j.digest[:16]}" if j.digest else "-"))
        if j.error:
            lines.append(f"      {j.error}")
    return "\n".join(lines)


USAGE = """usage: lio-xcopy catalog [--catalog PATH] [--job ID]

Lists the backup and restore jobs of the catalog (default /var/lib/lio-xcopy/catalog.db,
or $LIO_XCOPY_CATALOG); a catalog named that does not exist is an error, never created.
  --job ID   every field of one job
"""


def main(argv: list[str]) -> int:
    import sys

    path = Path(os.environ.get("LIO_XCOPY_CATALOG") or DEFAULT_PATH)
    named = bool(os.environ.get("LIO_XCOPY_CATALOG"))
    one = None
    it = iter(argv)
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE, end="")
        return 0
    for a in it:
        if a == "--catalog" or a.startswith("--catalog="):
            v = a.split("=", 1)[1] if "=" in a else next(it, "")
            if not v or v.startswith("-"):
                print("lio-xcopy catalog: --catalog needs the catalog's path", file=sys.stderr)
                return 2
            path, named = Path(v), True
        elif a == "--job" or a.startswith("--job="):
            v = a.split("=", 1)[1] if "=" in a else next(it, "")
            if not v.isdigit():
                print("lio-xcopy catalog: --job needs a job number", file=sys.stderr)
                return 2
            one = int(v)
        else:
            print(f"lio-xcopy catalog: unknown argument {a!r}; see --help", file=sys.stderr)
            return 2
    if named and not path.is_file():
        print(f"lio-xcopy catalog: no catalog at {path}: give the one your backups use with "
              "--catalog PATH (`lio-xcopy backup` creates it)", file=sys.stderr)
        return 1
    try:
        with Catalog(path) as cat:
            for o in cat.orphans:
                print(f"lio-xcopy catalog: job {o.id} marked failed: {o.error}",
                      file=sys.stderr)
            if one is not None:
                job = cat.job(one)
                for k in _COLUMNS:
                    v = getattr(job, k)
                    print(f"{k:<16} {_when(v) if k in ('started', 'ended') else v}")
            else:
                print(format_jobs(cat.jobs()))
    except CatalogError as e:
        print(f"lio-xcopy catalog: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
