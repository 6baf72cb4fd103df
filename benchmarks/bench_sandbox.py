"""Sandboxed program executions per second (issue 17's target: at least 200 on 2 cores), against
starting one bubblewrap sandbox per program.

    python benchmarks/bench_sandbox.py [--jobs 2000] [--baseline-jobs 200] [--workers 2]

Both run the same program task program (primitives + a three-operation pipeline, on six inputs) under
the same bubblewrap flags and limits as the loop and the attack tests (tests/test_sandbox.py), with
`workers` programs at a time: `pooled` is selfimprove's sandbox (one long-lived sandbox per worker, a
fresh forked child per program, every leftover process killed and the scratch wiped after each);
`per-program` starts bubblewrap and Python anew for every program.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from selfimprove.sandbox import NOBODY, Sandbox, _bwrap_args, _preflight
from selfimprove.tasks.programs import fresh_inputs, source

PROGRAM = source("x|sub(3,7)|drop(5)|rev")
INPUTS = fresh_inputs("bench", "probe", 6, 8)

# the per-program runner: read one job, run it, print its result (what the fork server does for one job)
ONE = """import json, sys
job = json.loads(sys.stdin.read())
namespace = {}
exec(compile(job["source"], "program.py", "exec"), namespace)
print(json.dumps({"status": "ok", "outputs": [namespace["f"](x) for x in job["inputs"]]}))
"""


def pooled(n: int, workers: int) -> float:
    with Sandbox(workers=workers) as box:
        box.run_many([(PROGRAM, INPUTS)] * (2 * workers))  # every worker started
        start = time.perf_counter()
        results = box.run_many([(PROGRAM, INPUTS)] * n)
        seconds = time.perf_counter() - start
    assert all(r.ok for r in results), results[0]
    return n / seconds


def per_program(n: int, workers: int) -> float:
    args = _bwrap_args(_preflight())
    args[-1] = ONE  # the same flags; the runner instead of the fork server
    job = json.dumps({"source": PROGRAM, "inputs": INPUTS}).encode()
    root = os.geteuid() == 0

    def one(_):
        out = subprocess.run(args, input=job, capture_output=True, env={"PATH": "/usr/bin:/bin"}, timeout=30,
                             **({"user": NOBODY, "group": NOBODY, "extra_groups": []} if root else {}))
        return json.loads(out.stdout)["status"] == "ok"

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        ok = list(pool.map(one, range(n)))
    seconds = time.perf_counter() - start
    assert all(ok)
    return n / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--baseline-jobs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    a = parser.parse_args()
    print(f"pooled (selfimprove.sandbox): {pooled(a.jobs, a.workers):.0f} programs/s ({a.jobs} programs, "
          f"{a.workers} workers)")
    print(f"per-program bubblewrap: {per_program(a.baseline_jobs, a.workers):.0f} programs/s "
          f"({a.baseline_jobs} programs, {a.workers} at a time)")


if __name__ == "__main__":
    main()
