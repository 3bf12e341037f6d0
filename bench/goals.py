"""Every performance goal in one guest run, in one table.

Run in the VM::

    scripts/vm python bench/goals.py                              # copies of 64M and 256M
    VM_MEMORY=12G scripts/vm python bench/goals.py --sizes 64M,256M,1G
    scripts/vm python bench/goals.py --quick                      # small sizes: a smoke run

It runs ``xcopy_disk_to_tape.py`` (EXTENDED COPY in four directions against the local
dd), ``disk_vs_tcmu_runner.py`` (plain I/O against tcmu-runner: 1 MiB sequential at
iodepth 1, 4 and 16, 4 KiB random at 32) and ``scale.py`` (16 LUNs at once against
tcmu-runner, 4 copies at once against 4 dd, the daemon's RSS) one after the other in
this guest; their own tables scroll by. Each records every ratio it prints
(``_ratios.record``, through the file ``$LIO_XCOPY_BENCH_RESULTS`` names); this script
then prints them all, grouped by goal, each with its target and whether this run met
it, and whether the copy's ratio holds as the copies grow (a cost linear in size).
``--runs`` is even: the benchmarks alternate which side goes first from run to run, and
the medians are fair only when each order runs as often as the other.
The figures are this guest's: ratios, each against a baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _guest import require_guest
from _ratios import RESULTS_ENV, Measured, read_records

HERE = Path(__file__).resolve().parent
#: a copy's ratio may drop this much from one size to the next and still hold (or to any
#: figure that meets the copy's goal)
HOLDS = 0.05
COPY_GOAL = 0.9


def benches(args: argparse.Namespace) -> list[list[str]]:
    """The command lines to run, in order."""
    runs = ["--runs", str(args.runs)]
    if args.quick:
        return [
            ["xcopy_disk_to_tape.py", "--sizes", "16M,32M", *runs],
            ["disk_vs_tcmu_runner.py", "--size", "64M", "--random-seconds", "3", *runs],
            ["scale.py", "--luns", "4", "--lun-size", "16M", "--copies", "2",
             "--copy-size", "32M", "--random-seconds", "5", *runs],
        ]
    return [
        ["xcopy_disk_to_tape.py", "--sizes", args.sizes, *runs],
        ["disk_vs_tcmu_runner.py", "--size", "256M", *runs],
        ["scale.py", "--copy-size", args.copy_size, *runs],
    ]


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.0f}" if abs(x) >= 1000 else f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}"


def summary(results: list[Measured]) -> tuple[int, int]:
    """Print the table; returns (goals met, goals judged)."""
    head = ("metric", "unit", "ours", "baseline", "ratio", "target", "")
    met = judged = 0
    groups: dict[str, list[Measured]] = {}
    for m in results:
        groups.setdefault(m.goal, []).append(m)
    for goal, ms in groups.items():
        rows = [head] + [(m.metric, m.unit, _fmt(m.ours), _fmt(m.baseline), _fmt(m.ratio),
                          m.target, "-" if m.met is None else "met" if m.met else "NOT met")
                         for m in ms]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        print(f"\n{goal}")
        for r in rows:
            print(f"  {r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  " + "  ".join(
                f"{c:>{w}}" for c, w in zip(r[2:], widths[2:], strict=True)))
        judged += sum(m.met is not None for m in ms)
        met += sum(bool(m.met) for m in ms)
    copies = [m for m in results if m.goal == "EXTENDED COPY vs local dd" and m.size]
    if len({m.size for m in copies}) > 1:
        print("\nthe copy's ratio as the copies grow (holds: no drop over "
              f"{HOLDS:.2f} from one size to the next, or still >= {COPY_GOAL})")
        for way in dict.fromkeys(m.way for m in copies):
            seq = sorted((m.size, m.ratio or 0.0) for m in copies if m.way == way)
            holds = all(b >= min(a - HOLDS, COPY_GOAL)
                        for (_, a), (_, b) in itertools.pairwise(seq))
            judged += 1
            met += holds
            print(f"  {way:9} " + " -> ".join(f"{r:.2f} ({s >> 20} MiB)" for s, r in seq)
                  + ("  holds" if holds else "  FALLS"))
    return met, judged


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="64M,256M",
                    help="copy sizes (default 64M,256M; 1G needs VM_MEMORY=12G)")
    ap.add_argument("--copy-size", default="128M", help="each of scale.py's copies (128M)")
    ap.add_argument("--runs", type=int, default=2,
                    help="runs of each benchmark, an even number (2)")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes and short passes: checks the run, not the goals")
    args = ap.parse_args()
    if args.runs < 2 or args.runs % 2:
        ap.error(f"--runs {args.runs}: give an even number, such as 2 or 4. Each benchmark "
                 "alternates which side goes first; with an even count each order runs as "
                 "often as the other, and the order cannot tilt the medians")
    require_guest("bench/goals.py")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lio-xcopy-goals-") as tmp:
        path = os.path.join(tmp, "results.jsonl")
        env = {**os.environ, RESULTS_ENV: path}
        for cmd in benches(args):
            print(f"\n=== {' '.join(['bench/' + cmd[0], *cmd[1:]])}", flush=True)
            p = subprocess.run([sys.executable, str(HERE / cmd[0]), *cmd[1:]], env=env,
                               check=False)
            if p.returncode:
                print(f"bench/goals.py: bench/{cmd[0]} exited {p.returncode}; its output is "
                      "above", file=sys.stderr)
                return 1
        results = read_records(path) if os.path.exists(path) else []
    print(f"\n=== every goal, this guest run ({(time.monotonic() - started) / 60:.0f} min)")
    met, judged = summary(results)
    print(f"\n{met} of {judged} met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
