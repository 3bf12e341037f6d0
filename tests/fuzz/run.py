"""Run the fuzz targets of fuzz_targets.py under atheris, one process per target.

    python tests/fuzz/run.py [--seconds N] [--workdir DIR] [TARGET...]

Each target runs for N seconds (default 60) over its corpus ``DIR/corpus/<target>``
(seeded from tests/fuzz/corpus/<target>; new inputs are kept there), crash and timeout
inputs go to ``DIR/crashes/<target>/``. Prints executions, coverage and crashes per
target; the exit status is 1 when any target crashed. A kept input replays with
``python tests/fuzz/run.py --replay FILE TARGET``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # tests/plugins: the simulated kernel ring

#: fuzz_targets.LAB_ENV (not imported here: the child imports fuzz_targets instrumented)
LAB_ENV = "LIO_XCOPY_FUZZ_LAB"
_STATS = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)")


def child(target: str, libfuzzer_args: list[str]) -> None:
    """In the child process: instrument lio_xcopy, then hand over to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=["lio_xcopy", "fuzz_targets", "plugins"]):
        import fuzz_targets

    fn = fuzz_targets.TARGETS[target]
    atheris.Setup([sys.argv[0], *libfuzzer_args], fn)
    atheris.Fuzz()


def replay(path: Path, target: str) -> int:
    import fuzz_targets

    try:
        fuzz_targets.TARGETS[target](path.read_bytes())
    finally:
        fuzz_targets.close_lab()
    print(f"{path}: no invariant broken")
    return 0


def fuzz_one(target: str, seconds: int, work: Path) -> dict:
    corpus = work / "corpus" / target
    crashes = work / "crashes" / target
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    log = work / f"{target}.log"
    before = set(crashes.iterdir())
    cmd = [sys.executable, __file__, "--child", target, "--",
           f"-max_total_time={seconds}", "-timeout=25", "-rss_limit_mb=3072",
           "-max_len=8192", "-print_final_stats=1", f"-artifact_prefix={crashes}/",
           str(corpus), str(HERE / "corpus" / target)]
    # libFuzzer ends the child with exit(), which runs no Python cleanup: the child's lab
    # (fuzz_targets.Lab, its LUNs' files) goes in a folder this process removes
    shm = Path("/dev/shm")
    lab = Path(tempfile.mkdtemp(prefix=f"lio-xcopy-fuzz-{target}-",
                                dir=shm if shm.is_dir() else None))
    t0 = time.monotonic()
    try:
        with open(log, "w") as out:
            rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                 env={**os.environ, "PYTHONHASHSEED": "0", LAB_ENV: str(lab)})
    finally:
        shutil.rmtree(lab, ignore_errors=True)
    elapsed = time.monotonic() - t0
    text = log.read_text(errors="replace")
    stats = _STATS.findall(text)
    execs, cov, ft, corp = (int(x) for x in stats[-1]) if stats else (0, 0, 0, 0)
    m = re.search(r"stat::number_of_executed_units: (\d+)", text)
    if m:
        execs = int(m.group(1))
    new = sorted(set(crashes.iterdir()) - before)
    return {"target": target, "rc": rc, "execs": execs, "cov": cov, "ft": ft, "corpus": corp,
            "seconds": elapsed, "crashes": new, "log": log}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        target, rest = argv[1], argv[3:] if argv[2:3] == ["--"] else argv[2:]
        child(target, rest)
        return 0
    import fuzz_targets

    names = list(fuzz_targets.TARGETS)
    p = argparse.ArgumentParser(prog="scripts/fuzz", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=60, help="per target (default 60)")
    p.add_argument("--workdir", type=Path, default=REPO / ".fuzz",
                   help="corpus, crashes and logs (default .fuzz/)")
    p.add_argument("--replay", type=Path, metavar="FILE", help="run one input and exit")
    p.add_argument("targets", nargs="*", metavar="TARGET", help=f"of {', '.join(names)}")
    args = p.parse_args(argv)
    unknown = [t for t in args.targets if t not in names]
    if unknown:
        p.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    if args.replay:
        if len(args.targets) != 1:
            p.error("--replay needs exactly one TARGET")
        return replay(args.replay, args.targets[0])
    failed = False
    for target in args.targets or names:
        print(f"fuzz: {target}: {args.seconds} s ...", flush=True)
        r = fuzz_one(target, args.seconds, args.workdir)
        rate = r["execs"] / max(r["seconds"], 1e-9)
        line = (f"fuzz: {target}: {r['execs']} execs in {r['seconds']:.0f} s ({rate:.0f}/s), "
                f"cov {r['cov']} ft {r['ft']}, corpus {r['corpus']}, "
                f"crashes {len(r['crashes'])}")
        print(line, flush=True)
        if r["crashes"] or r["rc"] not in (0,):
            failed = True
            for c in r["crashes"]:
                print(f"fuzz: {target}: kept {c} (replay: scripts/fuzz --replay {c} {target})")
            print(f"fuzz: {target}: exit status {r['rc']}; log {r['log']}")
    print("fuzz: FAILED" if failed else "fuzz: no crash")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
