"""Seconds to write the report of finished runs (issue 4's target: under 10 s on 2 cores).

    python benchmarks/bench_report.py runs/quick [RUN ...]

Times `selfimprove report`'s work (reading the run directory, drawing every figure, writing the
page) for each run given, three times, and prints the best and the median.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from selfimprove.report import write_report


def main(paths: list[str]) -> None:
    if not paths:
        sys.exit("usage: python benchmarks/bench_report.py RUN [RUN ...]")
    for path in paths:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            write_report([Path(path)])
            times.append(time.perf_counter() - start)
        print(f"report {path}: best {min(times):.2f} s, median {statistics.median(times):.2f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
