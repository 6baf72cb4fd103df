"""Which label-free signals carry the information? For every self-round of the given runs, each signal
in metrics.jsonl against the round's label precision (recomputed from candidates.parquet): how well the
signal alone separates rounds whose labels are < 0.9 right from the others (AUC: 1.0 separates them
perfectly, 0.5 is chance), and the rounds where it had a value.

    python experiments/signals_table.py runs/a runs/b ...
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from selfimprove.judge import MISS_BELOW, judge_run
from selfimprove.rundir import RunDir

HIGHER_IS_WORSE = {"drift", "no_eos", "bad_length", "confidence_dropped"}


def auc(bad: np.ndarray, good: np.ndarray) -> float:
    """P(a bad round's signal is worse than a good round's), ties counted half."""
    worse = (bad[:, None] < good[None, :]).mean() + 0.5 * (bad[:, None] == good[None, :]).mean()
    return float(worse)


def main(roots: list[Path]) -> None:
    rows = []
    for root in roots:
        precision = {r["round"]: r["precision"] for r in judge_run(root)}
        for m in RunDir.open(root).metrics():
            if m["round"] and precision.get(m["round"]) is not None:
                rows.append((precision[m["round"]], m.get("signals", {})))
    names = sorted({k for _, s in rows for k, v in s.items() if isinstance(v, (int, float))})
    n_bad = sum(p < MISS_BELOW for p, _ in rows)
    print(f"{len(rows)} self-rounds with kept labels, {n_bad} of them at label precision < {MISS_BELOW}\n")
    t = MISS_BELOW
    print(f"| signal | rounds | AUC (precision < {t}) | mean when < {t} | mean when >= {t} |")
    print("|---|---|---|---|---|")
    for name in names:
        pairs = [(p, s[name]) for p, s in rows if s.get(name) is not None]
        sign = -1 if name in HIGHER_IS_WORSE else 1
        bad = np.array([sign * v for p, v in pairs if p < MISS_BELOW])
        good = np.array([sign * v for p, v in pairs if p >= MISS_BELOW])
        score = f"{auc(bad, good):.2f}" if len(bad) and len(good) else "-"
        means = [f"{sign * x.mean() + 0.0:.3f}" if len(x) else "-" for x in (bad, good)]
        print(f"| {name} | {len(pairs)} | {score} | {means[0]} | {means[1]} |")


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]])
