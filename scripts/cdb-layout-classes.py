#!/usr/bin/env python3
"""One-off, for merging branches started before CDB layouts became classes.

Converts ``NAME = cdb_layout("...", op, len, "clause", Field(...), ...)`` assignments into
``class Name(Cdb, name=..., opcode=..., length=..., clause=...)`` classes with
``bitfield()`` fields, and renames every reference to the old layout constants
(``sbc.READ_10`` -> ``sbc.Read10``, ``x.EXTENDED_COPY_LID1`` -> ``x.ExtendedCopyLid1``),
in the Python files given (default: every tracked one). Strings and comments are left
alone (but getattr(module, "NAME") lookups follow), and so are imports of one test
module's layouts by another. Run it on a merge result, then ruff, mypy and the unit tests;
delete it once every branch is merged.

    scripts/cdb-layout-classes.py [FILE...]
"""

from __future__ import annotations

import ast
import io
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

#: the old constants and their classes
RENAMES = {
    "POPULATE_TOKEN": "PopulateToken",
    "WRITE_USING_TOKEN": "WriteUsingToken",
    "RECEIVE_ROD_TOKEN_INFORMATION": "ReceiveRodTokenInformation",
    "REPORT_ALL_ROD_TOKENS": "ReportAllRodTokens",
    "READ_6": "Read6",
    "WRITE_6": "Write6",
    "READ_CAPACITY_10": "ReadCapacity10",
    "READ_10": "Read10",
    "WRITE_10": "Write10",
    "SYNCHRONIZE_CACHE_10": "SynchronizeCache10",
    "READ_16": "Read16",
    "WRITE_16": "Write16",
    "SYNCHRONIZE_CACHE_16": "SynchronizeCache16",
    "READ_CAPACITY_16": "ReadCapacity16",
    "READ_12": "Read12",
    "WRITE_12": "Write12",
    "COMPARE_AND_WRITE": "CompareAndWrite",
    "VERIFY_10": "Verify10",
    "VERIFY_12": "Verify12",
    "VERIFY_16": "Verify16",
    "WRITE_AND_VERIFY_10": "WriteAndVerify10",
    "WRITE_AND_VERIFY_12": "WriteAndVerify12",
    "WRITE_AND_VERIFY_16": "WriteAndVerify16",
    "WRITE_SAME_10": "WriteSame10",
    "WRITE_SAME_16": "WriteSame16",
    "UNMAP": "Unmap",
    "GET_LBA_STATUS": "GetLbaStatus",
    "PRE_FETCH_10": "PreFetch10",
    "PRE_FETCH_16": "PreFetch16",
    "INITIALIZE_ELEMENT_STATUS": "InitializeElementStatus",
    "INITIALIZE_ELEMENT_STATUS_WITH_RANGE": "InitializeElementStatusWithRange",
    "PREVENT_ALLOW_MEDIUM_REMOVAL": "PreventAllowMediumRemoval",
    "POSITION_TO_ELEMENT": "PositionToElement",
    "MOVE_MEDIUM": "MoveMedium",
    "READ_ELEMENT_STATUS": "ReadElementStatus",
    "TEST_UNIT_READY": "TestUnitReady",
    "REQUEST_SENSE": "RequestSense",
    "INQUIRY": "Inquiry",
    "MODE_SELECT_6": "ModeSelect6",
    "MODE_SENSE_6": "ModeSense6",
    "MODE_SELECT_10": "ModeSelect10",
    "MODE_SENSE_10": "ModeSense10",
    "REPORT_SUPPORTED_OPERATION_CODES": "ReportSupportedOperationCodes",
    "REWIND": "Rewind",
    "READ_BLOCK_LIMITS": "ReadBlockLimits",
    "WRITE_FILEMARKS_6": "WriteFilemarks6",
    "SPACE_6": "Space6",
    "ERASE_6": "Erase6",
    "LOAD_UNLOAD": "LoadUnload",
    "LOCATE_10": "Locate10",
    "READ_POSITION_SHORT": "ReadPositionShort",
    "READ_POSITION_SHORT_VENDOR": "ReadPositionShortVendor",
    "READ_POSITION_LONG": "ReadPositionLong",
    "READ_POSITION_EXTENDED": "ReadPositionExtended",
    "FORMAT_MEDIUM": "FormatMedium",
    "REPORT_DENSITY_SUPPORT": "ReportDensitySupport",
    "SPACE_16": "Space16",
    "LOCATE_16": "Locate16",
    "LOG_SELECT": "LogSelect",
    "LOG_SENSE": "LogSense",
    "EXTENDED_COPY_LID1": "ExtendedCopyLid1",
    "EXTENDED_COPY_LID4": "ExtendedCopyLid4",
    "COPY_OPERATION_ABORT": "CopyOperationAbort",
    "RECEIVE_COPY_RESULTS_COPY_STATUS": "ReceiveCopyResultsCopyStatus",
    "RECEIVE_COPY_RESULTS_OPERATING_PARAMETERS": "ReceiveCopyResultsOperatingParameters",
    "RECEIVE_COPY_RESULTS_FAILED_SEGMENT_DETAILS": "ReceiveCopyResultsFailedSegmentDetails",
    "RECEIVE_COPY_STATUS_LID4": "ReceiveCopyStatusLid4",
    "RECEIVE_COPY_DATA_LID4": "ReceiveCopyDataLid4",
    "RECEIVE_COPY_DIGEST": "ReceiveCopyDigest",
}
ALIASES = {"sbc", "spc", "ssc", "smc", "rod", "xcopy", "x"}
LAYOUT_MODULES = {"sbc", "spc", "ssc", "smc", "rod", "xcopy"}


def camel(const: str) -> str:
    return "".join(w if w[0].isdigit() else w.capitalize() for w in const.lower().split("_"))


def header(cls: str, kws: list[str]) -> str:
    parts = ["Cdb", *kws]
    one = f"class {cls}(" + ", ".join(parts) + "):\n"
    if len(one) <= 101:
        return one
    rows, cur = [], "   "
    for k in parts:
        if len(cur) + len(k) + 2 > 100:
            rows.append(cur)
            cur = "   "
        cur += f" {k},"
    rows.append(cur)
    return f"class {cls}(\n" + "\n".join(rows) + "\n):\n"


def convert(src: str, renames: dict[str, str]) -> str:
    """cdb_layout assignments -> classes; new names are added to ``renames``."""
    tree = ast.parse(src)
    lines = src.splitlines(keepends=True)
    edits = []
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and getattr(node.value.func, "id", None) == "cdb_layout"):
            continue
        const = node.targets[0].id  # type: ignore[attr-defined]
        cls = renames.setdefault(const, RENAMES.get(const) or camel(const))
        call = node.value
        name, opcode, length, clause, *fields = call.args
        seg = lambda n: ast.get_source_segment(src, n)  # noqa: E731
        kws = [f"name={seg(name)}", f"opcode={seg(opcode)}", f"length={seg(length)}",
               f"clause={seg(clause)}"] + [f"{k.arg}={seg(k.value)}" for k in call.keywords]
        body = []
        for f in fields:
            args = [seg(a) for a in f.args[1:]] + [f"{k.arg}={seg(k.value)}" for k in f.keywords]
            body.append(f"    {f.args[0].value}: int = bitfield({', '.join(args)})\n")
        text = header(cls, kws) + ("".join(body) or "    pass\n")
        edits.append((node.lineno - 1, node.end_lineno, "\n\n" + text + "\n\n"))
    for a, b, text in reversed(edits):
        lines[a:b] = [text]
    out = "".join(lines)
    if edits:
        out = re.sub(r"from lio_xcopy\.scsi\.cdb import (Cdb, )?Field, cdb_layout",
                     "from lio_xcopy.scsi.cdb import Cdb, bitfield", out)
        for _ in range(3):
            out = re.sub(r"((?:#[^\n]*\n)+)\n\n\nclass ", r"\n\n\1class ", out)
            out = re.sub(r"\n{4,}", "\n\n\n", out)
    return out


def rename(path: str, src: str, renames: dict[str, str], local: dict[str, str]) -> str:
    module = re.fullmatch(r"lio_xcopy/scsi/(\w+)\.py", path)
    bare_ok = (module is not None and module.group(1) in LAYOUT_MODULES) or re.search(
        r"from lio_xcopy\.scsi\.(sbc|spc|ssc|smc|rod|xcopy) import", src)
    toks = list(tokenize.generate_tokens(io.StringIO(src).readline))
    lines = src.splitlines(keepends=True)
    edits = []
    for i, t in enumerate(toks):
        if t.type != tokenize.NAME or (t.string not in renames and t.string not in local):
            continue
        prev = toks[i - 1] if i else None
        dotted = prev is not None and prev.string == "."
        if not dotted and t.string in local:
            edits.append((t.start, t.end, local[t.string]))
        elif (dotted and toks[i - 2].string in ALIASES) or (bare_ok and not dotted):
            edits.append((t.start, t.end, renames[t.string]))
    for (r, c), (_, c2), new in reversed(edits):
        lines[r - 1] = lines[r - 1][:c] + new + lines[r - 1][c2:]
    return re.sub(r'getattr\((\w+), "(\w+)"', lambda m: (
        f'getattr({m[1]}, "{renames[m[2]]}"' if m[1] in ALIASES and m[2] in renames
        else m[0]), "".join(lines))


def main(paths: list[str]) -> None:
    if not paths:
        paths = subprocess.run(["git", "ls-files", "*.py"], capture_output=True, text=True,
                               check=True).stdout.split()
    renames = dict(RENAMES)  # layouts of scsi/ modules: renamed everywhere
    texts, local = {}, {}
    for p in paths:
        if not os.path.exists(p):
            continue
        found: dict[str, str] = {}
        texts[p] = convert(Path(p).read_text(), found)
        if re.fullmatch(r"lio_xcopy/scsi/\w+\.py", p):
            renames.update(found)
        else:
            local[p] = found  # a test's own layouts: renamed in that file only
    for p, src in texts.items():
        out = rename(p, src, renames, local.get(p, {}))
        if out != Path(p).read_text():
            Path(p).write_text(out)
            print(p)


if __name__ == "__main__":
    main(sys.argv[1:])
