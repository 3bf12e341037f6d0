"""``lio-xcopy``: the command line. ``lio-xcopy daemon`` serves the LUNs."""

from __future__ import annotations

import sys

USAGE = """usage: lio-xcopy COMMAND [ARGS]

commands:
  daemon      serve every LUN of the xcopy subtype (the TCMU userspace half)
  copy        send one EXTENDED COPY from this host (disk/tape -> disk/tape), dd-style
  library DIR create|list|where|add|import|export
              a tape library's cartridges (`lio-xcopy library --help`)
  backup      back a disk up to a cartridge (changer slot or drive) by EXTENDED COPY, catalogued
  restore     copy a catalogued backup back to a disk; the copy's SHA-256 is checked
  catalog     list the backup catalog's jobs
  saveconfig [FILE]     save the running LUNs and exports (default /etc/lio-xcopy/saveconfig.json)
  restoreconfig [FILE]  recreate what the saved file holds; harmless when already there
  status      list the LUNs, their backing and where they are exported
  version     print the version

the administrator's shell (a tree in the style of targetcli):
  lio-xcopy                         interactive, with ls, cd, help and tab completion
  lio-xcopy /PATH COMMAND [ARGS]    one command, e.g.
      lio-xcopy /backstores/disk create name=db0 file=/srv/db0.img size=10G
  lio-xcopy ls [PATH]               the tree: backstores, loopback, iscsi, copy_groups
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if _to_shell(args, argv is None):
        from lio_xcopy.control import shell

        return shell.main(args)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 2
    cmd, rest = args[0], args[1:]
    if cmd == "daemon":
        return _daemon(rest)
    if cmd == "copy":
        from lio_xcopy.initiator.copy import main as copy_main

        return copy_main(rest)
    if cmd == "library":
        from lio_xcopy.control.library_cli import main as library_main

        return library_main(rest)
    if cmd in ("backup", "restore", "catalog"):
        from lio_xcopy.initiator import backup, catalog

        run = {"backup": backup.main, "restore": backup.restore_main, "catalog": catalog.main}
        return run[cmd](rest)
    if cmd in ("saveconfig", "restoreconfig", "status"):
        return _config_command(cmd, rest)
    if cmd == "version":
        from lio_xcopy import __version__

        print(__version__)
        return 0
    print(f"lio-xcopy: unknown command {cmd!r}; `lio-xcopy --help` lists the commands",
          file=sys.stderr)
    return 2


def _to_shell(args: list[str], from_argv: bool) -> bool:
    """A path (``/backstores ...``), a shell-only command (``ls``), or nothing at all
    on a terminal goes to the administrator's shell."""
    from lio_xcopy.control.shell import ROOT_COMMANDS

    if args:
        return args[0].startswith("/") or args[0] in ROOT_COMMANDS
    return from_argv and sys.stdin.isatty() and sys.stdout.isatty()


def _daemon(rest: list[str]) -> int:
    """The daemon, with its copy groups read from the saved configuration
    (``--config FILE``, default /etc/lio-xcopy/saveconfig.json; absent = none)."""
    from pathlib import Path

    from lio_xcopy.control import config
    from lio_xcopy.tcmu.daemon import main as daemon_main

    path = config.DEFAULT_PATH
    if "--config" in rest:
        i = rest.index("--config")
        if i + 1 >= len(rest):
            print("lio-xcopy daemon: --config needs a file", file=sys.stderr)
            return 2
        path = Path(rest[i + 1])
        rest = rest[:i] + rest[i + 2 :]

    def groups() -> dict[str, tuple[str, ...]]:
        return dict(config.load(path).copy_groups) if path.exists() else {}

    return daemon_main(rest, copy_groups=groups)


def _config_command(cmd: str, rest: list[str]) -> int:
    from pathlib import Path

    from lio_xcopy.control import config, saved
    from lio_xcopy.errors import LioXcopyError

    path = Path(rest[0]) if rest else config.DEFAULT_PATH
    try:
        if cmd == "saveconfig":
            cfg = saved.save(path)
            extra = (f", {len(cfg.changers)} changer(s), {len(cfg.library_drives)} library "
                     "drive(s)" if cfg.changers or cfg.library_drives else "")
            print(f"saved {len(cfg.disks)} disk(s), {len(cfg.tapes)} tape(s){extra} to {path}")
            return 0
        if cmd == "restoreconfig":
            report = saved.restore(config.load(path))
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


if __name__ == "__main__":
    sys.exit(main())
