"""The control plane's commands that both the ``lio-xcopy`` command line and the
administrator's shell run: ``saveconfig``, ``restoreconfig`` and ``status``, and the
argument conventions every subcommand shares (``-h``/``--help`` anywhere; a mistake is
one line on stderr that points at ``--help``, exit status 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

HELP = ("-h", "--help")


def wants_help(args: list[str]) -> bool:
    """``-h`` or ``--help`` among the arguments (before a ``--``), as argparse reads it."""
    for a in args:
        if a == "--":
            return False
        if a in HELP:
            return True
    return False


class Parser(argparse.ArgumentParser):
    """An argparse parser whose mistakes are one line on stderr that points at --help
    (exit status 2, as argparse), the usage shown only on --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}; see `{self.prog} --help`\n")


def config_parser(cmd: str) -> argparse.ArgumentParser:
    """The arguments of ``saveconfig``, ``restoreconfig`` or ``status``: [FILE]."""
    from lio_xcopy.control import config

    about = {
        "saveconfig": "Save the running disks, tapes, changers, loopback and iSCSI exports "
                      "and copy groups to FILE (written atomically, mode 0600: it holds "
                      "CHAP secrets).",
        "restoreconfig": "Recreate what FILE holds: LUNs, exports, ACLs. What is already "
                         "there is left alone; every error is reported, and the exit "
                         "status is 1 if there was one.",
        "status": "List the LUNs, their backing files, where they are exported, the "
                  "daemon and the copies it runs; FILE (the saved configuration) marks "
                  "what is not saved.",
    }[cmd]
    p = Parser(prog=f"lio-xcopy {cmd}", description=about,
               epilog="`man lio-xcopy.json` describes the file.")
    p.add_argument("file", metavar="FILE", nargs="?", type=Path, default=config.DEFAULT_PATH,
                   help=f"the saved configuration (default {config.DEFAULT_PATH})")
    return p


def config_command(cmd: str, rest: list[str]) -> int:
    """Run ``saveconfig``, ``restoreconfig`` or ``status`` with its arguments ``rest``;
    the exit status (0 done, 1 an error reported on stderr, 2 a usage error)."""
    from lio_xcopy.control import config, saved
    from lio_xcopy.errors import LioXcopyError

    try:
        path: Path = config_parser(cmd).parse_args(rest).file
    except SystemExit as e:  # --help (0) or a usage error (2): nothing read or written
        return e.code if isinstance(e.code, int) else 2
    try:
        if cmd == "saveconfig":
            cfg = saved.save(path)
            extra = (f", {len(cfg.changers)} changer(s), {len(cfg.library_drives)} library "
                     "drive(s)" if cfg.changers or cfg.library_drives else "")
            print(f"saved {len(cfg.disks)} disk(s), {len(cfg.tapes)} tape(s){extra} to {path}")
            return 0
        if cmd == "restoreconfig":
            report = saved.restore(config.load(path), source=path)
            for line in report.created:
                print(f"created {line}")
            for line in report.errors:
                print(f"lio-xcopy restoreconfig: {line}", file=sys.stderr)
            for line in report.changed:
                print(f"changed {line}")
            print(f"restored from {path}: {len(report.created)} created, "
                  f"{len(report.changed)} changed, {len(report.present)} already present, "
                  f"{len(report.errors)} error(s)")
            return 1 if report.errors else 0
        from lio_xcopy.control import status
        from lio_xcopy.tcmu import state as state_file

        keep = None
        if path.exists():
            try:
                keep = config.load(path)
            except LioXcopyError as e:
                print(f"lio-xcopy status: {e} (showing what runs)", file=sys.stderr)
        print("\n".join(status.lines(saved.running(keep), state_file.read())))
        return 0
    except LioXcopyError as e:
        print(f"lio-xcopy {cmd}: {e}", file=sys.stderr)
        return 1
