"""``lio-xcopy backup`` and ``lio-xcopy restore``: the command line of the jobs in
:mod:`lio_xcopy.initiator.backup`.

Each subcommand has an argparse parser; options and operands mix in any order, and
``-h``/``--help`` anywhere prints the help on stdout and does nothing else. A mistake
(an unknown option, one given twice, contradictory ones, a value out of range) is one
line on stderr that says what to do next, exit status 1, before any device or the
catalog is opened; no arguments at all print the help, exit status 2. Progress goes
to stderr (:mod:`lio_xcopy.initiator.progress`), ``--quiet`` or ``--json``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from lio_xcopy.errors import LioXcopyError
from lio_xcopy.initiator import backup as jobs
from lio_xcopy.initiator.catalog import DEFAULT_PATH as DEFAULT_CATALOG
from lio_xcopy.initiator.catalog import Catalog, CatalogError, Job, Terminated
from lio_xcopy.initiator.changer import ChangerError
from lio_xcopy.initiator.copy import DEFAULT_RECORD
from lio_xcopy.initiator.drive import BackupError

Request = TypeVar("Request", jobs.BackupRequest, jobs.RestoreRequest)

HELP = ("-h", "--help")

BACKUP_USAGE = """%(prog)s DISK
           (--changer SG (--slot N | --barcode LABEL) [--drive SG] [--unload] | --drive SG)
           [--skip BLOCKS] [--count BLOCKS] [--record BYTES]
           [--catalog PATH] [--quiet | --json]"""

RESTORE_USAGE = """%(prog)s (JOB_ID | --latest --source NAA) DISK
                          (--changer SG [--drive SG] [--unload] | --drive SG)
                          [--seek BLOCKS] [--catalog PATH] [--quiet | --json]"""

#: what two options of one mutually exclusive group mean together, and what to do
CONFLICTS = {
    frozenset({"--slot", "--barcode"}):
        "--slot {--slot} and --barcode {--barcode} name a cartridge twice: give one of them",
    frozenset({"--quiet", "--json"}):
        "--quiet shows no progress, --json shows it as JSON: give one",
}


class UsageError(BackupError):
    """The command line is wrong; nothing was opened."""


class _Parser(argparse.ArgumentParser):
    """A parser whose mistakes raise :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}: see `{self.prog} --help`")


class _Once(argparse.Action):
    """An option that takes one value and may be given once."""

    def __call__(self, parser: argparse.ArgumentParser,  # noqa: ARG002 (argparse's)
                 namespace: argparse.Namespace, values: str | Sequence[Any] | None,
                 option_string: str | None = None) -> None:  # noqa: ARG002 (argparse's)
        given: set[str] = namespace.__dict__.setdefault("_given", set())
        if self.dest in given:
            raise argparse.ArgumentError(self, "is given twice: give it once")
        given.add(self.dest)
        setattr(namespace, self.dest, values)


def _count(name: str) -> Callable[[str], int]:
    """A number from 0 (decimal, or 0x... hexadecimal), for option ``name``."""
    def parse(text: str) -> int:
        try:
            v = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} {text!r} is not a number") from None
        if v < 0:
            raise argparse.ArgumentTypeError(f"{name} {v} is negative: give a number from 0")
        return v

    return parse


def _common(catalog: str) -> argparse.ArgumentParser:
    """The options both jobs take: the devices, --unload, the catalog (``catalog``: what
    it must be) and the display."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--changer", action=_Once, metavar="SG",
                   help="the library's medium changer (/dev/sgN)")
    p.add_argument("--drive", action=_Once, metavar="SG",
                   help="the tape drive (/dev/sgN or /dev/nstN); with a changer, default: "
                        "a free drive of the library that this host reaches")
    p.add_argument("--unload", action="store_true",
                   help="put the cartridge back in its slot afterwards, also after a "
                        "failure (not while the failed job's copy still runs on the target)")
    p.add_argument("--catalog", action=_Once, metavar="PATH",
                   help="the catalog (default /var/lib/lio-xcopy/catalog.db, or "
                        f"$LIO_XCOPY_CATALOG); {catalog}")
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--quiet", action="store_true", help="no progress")
    shown.add_argument("--json", action="store_true",
                       help="progress as one JSON object a line, on stderr")
    return p


def backup_parser() -> argparse.ArgumentParser:
    """``lio-xcopy backup``'s arguments."""
    p = _Parser(
        prog="lio-xcopy backup", usage=BACKUP_USAGE,
        parents=[_common("its directory must exist")], allow_abbrev=False,
        exit_on_error=False,
        description="Backs DISK up to a new file at the end of a cartridge: the target's "
                    "copy manager moves the data, in one EXTENDED COPY with a label record "
                    "and the closing filemark where it lists segment types 04h, 10h and "
                    "12h; the job goes into the catalog with the cartridge, tape file "
                    "number, size and digest.",
        epilog="Progress goes to stderr: a bar redrawn on a terminal, a line every 5 s "
               "elsewhere.")
    p.add_argument("operands", nargs="*", metavar="DISK", help="the disk to back up")
    cartridge = p.add_mutually_exclusive_group()
    cartridge.add_argument("--slot", action=_Once, type=_count("--slot"), metavar="N",
                           help="the cartridge's slot, numbered from 1 as `mtx status` "
                                "does (with --changer)")
    cartridge.add_argument("--barcode", action=_Once, metavar="LABEL",
                           help="the cartridge's barcode (with --changer)")
    p.add_argument("--skip", action=_Once, type=_count("--skip"), default=0,
                   metavar="BLOCKS", help="first block of DISK to back up (default 0)")
    p.add_argument("--count", action=_Once, type=_count("--count"), metavar="BLOCKS",
                   help="blocks to back up (default: to the end of DISK)")
    p.add_argument("--record", action=_Once, type=_count("--record"), default=DEFAULT_RECORD,
                   metavar="BYTES", help=f"tape record length (default {DEFAULT_RECORD})")
    return p


def restore_parser() -> argparse.ArgumentParser:
    """``lio-xcopy restore``'s arguments."""
    p = _Parser(
        prog="lio-xcopy restore", usage=RESTORE_USAGE,
        parents=[_common("the one the backup is in: it must exist")],
        allow_abbrev=False, exit_on_error=False,
        description="Copies a backup back from its cartridge and tape file (from the "
                    "catalog) onto DISK and checks the copy manager's digest against the "
                    "catalog's (when both are of one algorithm). With --changer the "
                    "cartridge is found by its barcode; with --drive alone it must be in "
                    "that drive.")
    p.add_argument("operands", nargs="*", metavar="JOB_ID DISK",
                   help="the backup job (`lio-xcopy catalog` lists them) and the disk")
    p.add_argument("--latest", action="store_true",
                   help="the newest done backup of the disk --source names")
    p.add_argument("--source", action=_Once, metavar="NAA",
                   help="the backed-up disk's NAA, with --latest")
    p.add_argument("--seek", action=_Once, type=_count("--seek"), default=0,
                   metavar="BLOCKS", help="first block of DISK to write (default 0)")
    return p


PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "backup": backup_parser, "restore": restore_parser}


def options(cmd: str) -> list[str]:
    """Every option string of ``cmd`` (what the completion script offers)."""
    return [o for a in PARSERS[cmd]()._actions for o in a.option_strings]


def _given_value(argv: list[str], option: str) -> str:
    """The value ``option`` has on the command line (``--opt V`` or ``--opt=V``)."""
    for i, a in enumerate(argv):
        if a == option and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(option + "="):
            return a.partition("=")[2]
    return ""


def _explain(e: argparse.ArgumentError, argv: list[str], prog: str) -> str:
    """One line for what argparse found wrong, in the words the jobs use."""
    name, message = e.argument_name or "", e.message
    if message.startswith("not allowed with argument "):
        pair = frozenset({name, message.removeprefix("not allowed with argument ")})
        if pair in CONFLICTS:
            text = CONFLICTS[pair]
            for option in pair:
                text = text.replace("{" + option + "}", _given_value(argv, option))
            return text
    if message == "expected one argument":
        return f"{name} needs a value"
    if message == "is given twice: give it once":
        return f"{name} {message}"
    if name and message.startswith(name):  # our own (a value out of range)
        return message
    return f"{name}: {message}: see `{prog} --help`"


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv`` (options and operands in any order); raise :class:`UsageError`."""
    try:
        ns, unknown = parser.parse_known_intermixed_args(argv)
    except argparse.ArgumentError as e:
        raise UsageError(_explain(e, argv, parser.prog)) from None
    for a in unknown:
        if a.startswith("-"):
            raise UsageError(f"unknown option {a}: `{parser.prog} --help` lists them")
    ns.operands = [*ns.operands, *unknown]
    return ns


def _progress(ns: argparse.Namespace) -> bool | str:
    return "json" if ns.json else not ns.quiet


def catalog_path(named_option: str | None, *, existing: bool) -> Path:
    """The catalog to open: ``--catalog`` (``named_option``), ``$LIO_XCOPY_CATALOG`` or
    the default. One named (a typo is likely there) must be in an existing directory
    and, for ``existing`` (commands that only read jobs), exist; the default and its
    directory are created when missing."""
    named = named_option or os.environ.get("LIO_XCOPY_CATALOG")
    if not named:
        return DEFAULT_CATALOG
    path = Path(named)
    where = "--catalog" if named_option else "$LIO_XCOPY_CATALOG"
    if existing and not path.is_file():
        raise CatalogError(f"no catalog at {path}: give the one your backups use with "
                           "--catalog PATH (`lio-xcopy backup` creates it)")
    if not path.parent.is_dir():
        raise CatalogError(f"{where} {path}: there is no directory {path.parent}; create it "
                           "or give another path")
    return path


def backup_request(ns: argparse.Namespace) -> jobs.BackupRequest:
    """The backup the arguments ask for, checked as far as it can be without a device."""
    if len(ns.operands) != 1:
        raise UsageError("give one DISK to back up: see `lio-xcopy backup --help`")
    req = jobs.BackupRequest(
        disk=ns.operands[0], drive=ns.drive, changer=ns.changer, slot=ns.slot,
        barcode=ns.barcode, first_block=ns.skip, blocks=ns.count, record=ns.record,
        unload=ns.unload)
    jobs.check_backup_request(req)
    return req


def restore_request(ns: argparse.Namespace) -> jobs.RestoreRequest:
    """The restore the arguments ask for, checked as far as it can be without a device."""
    pos = ns.operands
    if ns.latest:
        if ns.source is None or len(pos) != 1:
            raise UsageError("--latest needs --source NAA and one DISK (no JOB_ID)")
        disk, job_id, latest = pos[0], None, ns.source
    else:
        if ns.source is not None:
            raise UsageError("--source picks the newest backup of a disk with --latest: "
                             "give --latest too, or a JOB_ID instead")
        if len(pos) != 2 or not pos[0].isdigit():
            raise UsageError("give JOB_ID and DISK (`lio-xcopy catalog` lists jobs)")
        disk, job_id, latest = pos[1], int(pos[0]), None
    req = jobs.RestoreRequest(disk, job_id, latest, ns.drive, ns.changer, ns.seek, ns.unload)
    jobs.check_restore_request(req)
    return req


def _run(cmd: str, argv: list[str], request: Callable[[argparse.Namespace], Request],
         job: Callable[[Request, Catalog, bool | str], Job], *, existing: bool) -> int:
    """Parse, make the ``request`` (checking what can be checked without a device or
    the catalog), open the catalog, run the job; one line on stderr for any refusal or
    failure."""
    parser = PARSERS[cmd]()
    if not argv or any(a in HELP for a in argv):
        print(parser.format_help(), end="")
        return 0 if argv else 2
    try:
        ns = _parse(parser, argv)
        req = request(ns)
        path = catalog_path(ns.catalog, existing=existing)
        with Catalog(path) as cat:
            for o in cat.orphans:
                print(f"lio-xcopy {cmd}: job {o.id} marked failed: {o.error}", file=sys.stderr)
            job(req, cat, _progress(ns))
    except (LioXcopyError, ChangerError) as e:
        print(f"lio-xcopy {cmd}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"lio-xcopy {cmd}: interrupted; the job is marked failed in the catalog",
              file=sys.stderr)
        return 130
    except Terminated:
        print(f"lio-xcopy {cmd}: terminated; the job is marked failed in the catalog",
              file=sys.stderr)
        return 143
    return 0


def main(argv: list[str]) -> int:
    """``lio-xcopy backup``."""
    def job(req: jobs.BackupRequest, cat: Catalog, progress: bool | str) -> Job:  # noqa: FBT001 (_run's)
        return jobs.backup(req, cat, progress=progress)

    return _run("backup", argv, backup_request, job, existing=False)


def restore_main(argv: list[str]) -> int:
    """``lio-xcopy restore``."""
    def job(req: jobs.RestoreRequest, cat: Catalog, progress: bool | str) -> Job:  # noqa: FBT001 (_run's)
        return jobs.restore(req, cat, progress=progress)

    return _run("restore", argv, restore_request, job, existing=True)
