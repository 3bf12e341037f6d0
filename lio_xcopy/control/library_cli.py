"""``lio-xcopy library DIR ...``: the operator's commands for a cartridge library.

Every refusal is one line on stderr that says what to do, and changes nothing (the
library's state file is written only after a change is checked).
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from lio_xcopy.errors import LioXcopyError

USAGE = """usage: lio-xcopy library DIR COMMAND [ARGS]

commands:
  create --slots N [--ie N] [--drives N] [--capacity SIZE] [--barcodes N|L00001L8,...]
                      make the library directory with blank cartridges in its first slots
  list                every slot, import/export slot and drive, and the cartridge in it
  where BARCODE       the element that holds a cartridge
  add BARCODE...      blank cartridges into free slots (--ie: into import/export slots)
  import FILE [--barcode L] [--read-only] [--copy]
                      put a cartridge file into a free import/export slot
  export BARCODE DEST take a cartridge out of its import/export slot into DEST
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, the usage on --help only
        raise LioXcopyError(f"{message}; `lio-xcopy library --help` lists the commands")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lio-xcopy library", add_help=False)
    p.add_argument("directory")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    c = sub.add_parser("create", add_help=False)
    c.add_argument("--slots", type=int, required=True)
    c.add_argument("--ie", type=int, default=0)
    c.add_argument("--drives", type=int, default=1)
    c.add_argument("--capacity", default="1G")
    c.add_argument("--barcodes", default="")
    sub.add_parser("list", add_help=False)
    w = sub.add_parser("where", add_help=False)
    w.add_argument("barcode")
    a = sub.add_parser("add", add_help=False)
    a.add_argument("barcodes", nargs="+")
    a.add_argument("--ie", action="store_true")
    i = sub.add_parser("import", add_help=False)
    i.add_argument("file")
    i.add_argument("--barcode")
    i.add_argument("--read-only", action="store_true")
    i.add_argument("--copy", action="store_true")
    e = sub.add_parser("export", add_help=False)
    e.add_argument("barcode")
    e.add_argument("destination")
    return p


def _barcodes(text: str) -> list[str]:
    from lio_xcopy.control import library

    if not text:
        return []
    if text.isdigit():
        return library.lto_barcodes(int(text))
    return [b for b in text.split(",") if b]


def main(argv: list[str]) -> int:
    if not argv or any(a in ("-h", "--help") for a in argv):
        print(USAGE, end="")
        return 0 if argv else 2
    from lio_xcopy.control import library
    from lio_xcopy.handler_config import parse_size

    try:
        args = _parser().parse_args(argv)
        d = args.directory
        if args.cmd == "create":
            library.create_library(d, slots=args.slots, ie_slots=args.ie, drives=args.drives,
                                   capacity=parse_size(args.capacity),
                                   barcodes=_barcodes(args.barcodes))
            print(library.format_contents(d))
        elif args.cmd == "list":
            print(library.format_contents(d))
        elif args.cmd == "where":
            loc = library.where(d, args.barcode)
            print(f"{args.barcode}: {loc.label} (element {loc.address:#06x})")
        elif args.cmd == "add":
            for loc in library.create_cartridges(d, args.barcodes, import_export=args.ie):
                print(f"{loc.barcode}: {loc.label}")
        elif args.cmd == "import":
            loc = library.import_cartridge(d, args.file, args.barcode,
                                           read_only=args.read_only, copy=args.copy)
            print(f"{loc.barcode}: {loc.label}")
        else:
            path = library.export_cartridge(d, args.barcode, args.destination)
            print(f"{args.barcode}: exported to {path}")
        return 0
    except LioXcopyError as e:
        print(f"lio-xcopy library: {e}", file=sys.stderr)
        return 1
