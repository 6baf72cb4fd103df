"""Which strings does a copy run's model get wrong beyond its data? The share of a round's candidates
the committee answered right (its first answer against the hidden truth), per length and per number of
adjacent repeated letters in the string.

    python experiments/copy_errors.py runs/quick-controller 1
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from selfimprove.rundir import RunDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("round", type=int)
    args = parser.parse_args()
    if args.round < 1:
        raise SystemExit("round 0 is the seed data (true labels, no answers): give a round of 1 or more")
    rows = RunDir.open(args.run).candidates(args.round).select(["difficulty", "outputs", "truth"]).to_pylist()
    right: dict[int, dict[int, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        repeats = sum(a == b for a, b in zip(row["truth"], row["truth"][1:]))
        right[row["difficulty"][0]][repeats].append(row["outputs"][0] == row["truth"])
    for length, by in sorted(right.items()):
        cells = "  ".join(f"{k} repeats: {sum(v) / len(v):.2f} of {len(v)}" for k, v in sorted(by.items()))
        print(f"length {length}: {cells}")


if __name__ == "__main__":
    main()
