"""``lio-xcopy``: the command line. ``lio-xcopy daemon`` serves the LUNs.

Every subcommand answers ``-h``/``--help`` (anywhere among its arguments) with its help
on stdout and exit status 0, and does nothing else.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from lio_xcopy.control.commands import HELP, Parser, config_command, wants_help

USAGE = """usage: lio-xcopy COMMAND [ARGS]
       lio-xcopy COMMAND --help | lio-xcopy --version

commands:
  daemon      serve every LUN of the xcopy subtype (the TCMU userspace half)
  copy        send one EXTENDED COPY from this host (disk/tape -> disk/tape), dd-style
  library DIR create|list|where|add|import|export
              a tape library's cartridges (`lio-xcopy library --help`)
  backup      back a disk up to a cartridge (changer slot or drive) by EXTENDED COPY, catalogued
  restore     copy a catalogued backup back to a disk; the copy's digest is checked
  catalog     list the backup catalog's jobs
  saveconfig [FILE]     save the running LUNs and exports (default /etc/lio-xcopy/saveconfig.json)
  restoreconfig [FILE]  recreate what the saved file holds; harmless when already there
  status      list the LUNs, their backing and where they are exported
  version     print the version
  completion bash       print the bash completion script

the administrator's shell (a tree in the style of targetcli):
  lio-xcopy                         interactive, with ls, cd, help and tab completion
  lio-xcopy /PATH COMMAND [ARGS]    one command, e.g.
      lio-xcopy /backstores/disk create name=db0 file=/srv/db0.img size=10G
  lio-xcopy ls [PATH]               the tree: backstores, loopback, iscsi, copy_groups
  lio-xcopy /PATH help [COMMAND]    a node's commands, or one command's syntax
  lio-xcopy /PATH info              what a node is (a LUN, a changer, a target, a portal...)
  lio-xcopy clearconfig confirm=true  delete every LUN and target of ours (files stay)

`man lio-xcopy` and `man lio-xcopy.json` describe the commands and the saved file.
"""

#: the subcommands (the completion script and the man page list each of them; a test checks)
COMMANDS = ("daemon", "copy", "library", "backup", "restore", "catalog", "saveconfig",
            "restoreconfig", "status", "version", "completion")

def _daemon_options() -> argparse.ArgumentParser:
    """The control plane's option of ``lio-xcopy daemon`` (the daemon adds its own)."""
    from lio_xcopy.control import config

    p = Parser(prog="lio-xcopy daemon", add_help=False)
    p.add_argument("--config", type=Path, default=config.DEFAULT_PATH, metavar="FILE",
                   help="the saved configuration the copy groups are read from (default "
                        f"{config.DEFAULT_PATH}; absent: no copy groups)")
    return p


def _version(rest: list[str]) -> int:
    from lio_xcopy import __version__

    if rest and not wants_help(rest):
        print(f"lio-xcopy version: takes no arguments, got {rest[0]!r}", file=sys.stderr)
        return 2
    print("usage: lio-xcopy version\n\nPrints the version." if rest else __version__)
    return 0


def _completion(rest: list[str]) -> int:
    usage = ("usage: lio-xcopy completion bash\n\nPrints the bash completion script; "
             "install it with\n  lio-xcopy completion bash > "
             "/etc/bash_completion.d/lio-xcopy\n")
    if wants_help(rest):
        print(usage, end="")
        return 0
    if rest != ["bash"]:
        print("lio-xcopy completion: give the shell, `lio-xcopy completion bash` (bash is "
              "the one there is)", file=sys.stderr)
        return 2
    from importlib.resources import files

    print(files("lio_xcopy").joinpath("data", "lio-xcopy.bash").read_text(encoding="utf-8"),
          end="")
    return 0


def _commands() -> dict[str, Callable[[list[str]], int]]:
    def copy(rest: list[str]) -> int:
        from lio_xcopy.initiator.copy import main as copy_main

        return copy_main(rest)

    def library(rest: list[str]) -> int:
        from lio_xcopy.control.library_cli import main as library_main

        return library_main(rest)

    def backup(rest: list[str]) -> int:
        from lio_xcopy.initiator.backup_cli import main as backup_main

        return backup_main(rest)

    def restore(rest: list[str]) -> int:
        from lio_xcopy.initiator.backup_cli import restore_main

        return restore_main(rest)

    def catalog(rest: list[str]) -> int:
        from lio_xcopy.initiator.catalog import main as catalog_main

        return catalog_main(rest)

    def saved_file(cmd: str) -> Callable[[list[str]], int]:
        return lambda rest: config_command(cmd, rest)

    return {"daemon": _daemon, "copy": copy, "library": library, "backup": backup,
            "restore": restore, "catalog": catalog,
            "saveconfig": saved_file("saveconfig"),
            "restoreconfig": saved_file("restoreconfig"),
            "status": saved_file("status"), "version": _version,
            "completion": _completion}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if _to_shell(args, from_argv=argv is None):
        from lio_xcopy.control import shell

        return shell.main(args)
    if not args or args[0] in HELP:
        print(USAGE, end="")
        return 0 if args else 2
    if args[0] in ("--version", "-V"):
        return _version([])
    cmd, rest = args[0], args[1:]
    if cmd == "help":  # `lio-xcopy help [COMMAND]`: that command's --help
        if not rest:
            print(USAGE, end="")
            return 0
        if _to_shell(rest[:1], from_argv=False):  # `help ls`, `help /iscsi`: the shell's help
            from lio_xcopy.control import shell

            return shell.main([*rest[:1], "--help"])
        cmd, rest = rest[0], ["--help"]
    run = _commands().get(cmd)
    if run is None:
        print(f"lio-xcopy: unknown command {cmd!r}; `lio-xcopy --help` lists the commands",
              file=sys.stderr)
        return 2
    return run(rest)


def _to_shell(args: list[str], *, from_argv: bool) -> bool:
    """A path (``/backstores ...``), a shell-only command (``ls``), or nothing at all
    on a terminal goes to the administrator's shell."""
    from lio_xcopy.control.shell import ROOT_COMMANDS

    if args:
        return args[0].startswith("/") or args[0] in ROOT_COMMANDS
    return from_argv and sys.stdin.isatty() and sys.stdout.isatty()


def _daemon(rest: list[str]) -> int:
    """The daemon, with its copy groups read from the saved configuration
    (``--config FILE``, default /etc/lio-xcopy/saveconfig.json; absent = none)."""
    from lio_xcopy.control import config
    from lio_xcopy.tcmu.daemon import main as daemon_main

    options = _daemon_options()
    path: Path = options.get_default("config")

    def groups() -> dict[str, tuple[str, ...]]:
        return dict(config.load(path).copy_groups) if path.exists() else {}

    try:
        if not wants_help(rest):
            path = options.parse_known_args(rest)[0].config
        return daemon_main(rest, copy_groups=groups, parents=[options])
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else 2


if __name__ == "__main__":
    sys.exit(main())
