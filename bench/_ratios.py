"""The copy benchmarks' table: EXTENDED COPY against the local ``dd`` of the same bytes,
throughput and CPU seconds per GiB, medians over the runs."""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import asdict, dataclass

MB = 1_000_000
GiB = 1 << 30
#: where a benchmark appends each ratio it measures against a goal, one JSON object a
#: line (``bench/goals.py`` sets it and prints them all in one table)
RESULTS_ENV = "LIO_XCOPY_BENCH_RESULTS"


@dataclass(frozen=True, slots=True)
class Measured:
    """One ratio a benchmark measured: ``ours`` against ``baseline`` (same unit), the
    ratio it reports (higher is better unless the goal says ``<=``), and its goal."""

    goal: str  # what is measured against what, e.g. "EXTENDED COPY vs local dd"
    metric: str  # e.g. "256 MiB disk-tape"
    unit: str
    ours: float
    baseline: float | None
    ratio: float | None
    target: str  # ">= 0.9", "<= 1.2", "< 150" (on ``ours``), "info"
    met: bool | None
    size: int = 0  # bytes per copy, for the goal that the ratio not fall as copies grow
    way: str = ""


def record(m: Measured) -> None:
    """Append ``m`` to the file ``$LIO_XCOPY_BENCH_RESULTS`` names, when it is set."""
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(m)) + "\n")


def read_records(path: str) -> list[Measured]:
    """What the benchmarks recorded in ``path``, in order."""
    with open(path, encoding="utf-8") as f:
        return [Measured(**json.loads(line)) for line in f if line.strip()]


@dataclass(frozen=True, slots=True)
class Sample:
    """One timed pass: wall seconds and the CPU seconds of the process that did it."""

    seconds: float
    cpu: float


def print_table(results: dict[tuple[int, str, str], list[Sample]], sizes: list[int],
                ways: list[str], who: str) -> None:
    """Per size and direction, medians of ``xcopy`` and ``dd`` samples: MB/s, the ratio
    (> 1: EXTENDED COPY faster) and CPU s/GiB (``who`` names whose CPU xcopy's is)."""
    print(f"\nmedian of {len(next(iter(results.values())))} run(s); ratio = dd time / "
          f"xcopy time (>= 0.9 is the goal); CPU s/GiB: xcopy = {who}, dd = dd")
    print(f"{'size':>7} {'direction':9} {'xcopy MB/s':>10} {'dd MB/s':>8} {'ratio':>6} "
          f"{'xcopy CPU s/GiB':>15} {'dd CPU s/GiB':>13}")
    for size in sizes:
        for way in ways:
            x, d = results[(size, way, "xcopy")], results[(size, way, "dd")]
            xs = statistics.median(s.seconds for s in x)
            ds = statistics.median(s.seconds for s in d)
            xc = statistics.median(s.cpu for s in x)
            dc = statistics.median(s.cpu for s in d)
            print(f"{size >> 20:>5}Mi {way:9} {size / MB / xs:10.1f} {size / MB / ds:8.1f} "
                  f"{ds / xs:6.2f} {xc * GiB / size:15.2f} {dc * GiB / size:13.2f}")
            metric = f"{size >> 20} MiB {way}"
            record(Measured("EXTENDED COPY vs local dd", metric, "MB/s", size / MB / xs,
                            size / MB / ds, ds / xs, ">= 0.9", ds / xs >= 0.9, size, way))
            if dc > 0:
                record(Measured("CPU per GiB: copy vs local dd", metric, "CPU s/GiB",
                                xc * GiB / size, dc * GiB / size, xc / dc, "<= 1.2",
                                xc / dc <= 1.2, size, way))
