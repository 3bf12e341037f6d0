"""The copy benchmarks' table: EXTENDED COPY against the local ``dd`` of the same bytes,
throughput and CPU seconds per GiB, medians over the runs."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

MB = 1_000_000
GiB = 1 << 30


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
