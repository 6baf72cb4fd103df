"""Recompute every round's label precision and vote shares from a run's candidates.parquet and compare
them with metrics.jsonl: what the loop reports must be what its own records say.

    python experiments/recompute_precision.py runs/hf-copy-samples5

Prints one line per round (answers per candidate, precision from the file, from metrics) and exits 1
if any differs.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from selfimprove.rundir import RunDir


def main(root: Path) -> int:
    run = RunDir.open(root)
    bad = 0
    for m in run.metrics()[1:]:
        c = run.candidates(m["round"]).to_pydict()
        good = [lab == t for lab, t, k in zip(c["label"], c["truth"], c["kept"]) if k]
        precision = sum(good) / len(good) if good else None
        # the vote counts (answer, finished) pairs over all K x N answers
        shares = [Counter(zip(o, f)).most_common(1)[0][1] / len(o) for o, f in zip(c["outputs"], c["finished"])]
        same = precision == m["label_precision"] and shares == c["vote_share"]
        bad += not same
        answers = sorted({len(o) for o in c["outputs"]})
        agree = "agree" if shares == c["vote_share"] else "DIFFER"
        print(f"round {m['round']}: answers per candidate {answers}, label_precision from candidates "
              f"{precision}, in metrics {m['label_precision']}, vote shares {agree}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
