"""``lio-xcopy``: the command line. ``lio-xcopy daemon`` serves the LUNs."""

from __future__ import annotations

import sys

USAGE = """usage: lio-xcopy COMMAND [ARGS]

commands:
  daemon      serve every LUN of the xcopy subtype (the TCMU userspace half)
  copy        send one EXTENDED COPY from this host (disk/tape -> disk/tape), dd-style
  version     print the version
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 2
    cmd, rest = args[0], args[1:]
    if cmd == "daemon":
        from lio_xcopy.tcmu.daemon import main as daemon_main

        return daemon_main(rest)
    if cmd == "copy":
        from lio_xcopy.initiator.copy import main as copy_main

        return copy_main(rest)
    if cmd == "version":
        from lio_xcopy import __version__

        print(__version__)
        return 0
    print(f"lio-xcopy: unknown command {cmd!r}; `lio-xcopy --help` lists the commands",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
