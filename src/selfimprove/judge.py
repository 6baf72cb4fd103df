"""Judging the guard: its decisions, round by round, against the audit's label precision (truth, read
here afterwards, never by the guard). A committed round whose labels are less than 0.9 right is a
**miss**; a held or rolled-back round whose labels are at least 0.97 right is a **false alarm**.

    rounds = judge_run(Path("runs/quick"))      # one row per self-round
    print(summary(rounds))                       # counts, misses, false alarms, lowest committed precision
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from selfimprove.rundir import RunDir, RunError

MISS_BELOW = 0.9  # a committed round with label precision below this: the guard missed it
FALSE_ALARM_AT = 0.97  # a held or rolled-back round with label precision at least this: a false alarm


def judge_run(root: Path, unreadable: list[int] | None = None) -> list[dict[str, Any]]:
    """One row per self-round of the run at `root`: its decision, the signal that triggered it, and label
    precision recomputed from candidates.parquet (share of kept labels that are right). A round whose
    candidates cannot be read raises RunError, or is left out and listed in `unreadable` if given."""
    run = RunDir.open(root)
    try:
        metrics = run.metrics()
    except ValueError as e:
        raise RunError(f"{root}/metrics.jsonl is damaged ({e}); `selfimprove report {root}` shows what can "
                       f"still be read") from None
    return judge_rounds(run, metrics, unreadable)


def judge_rounds(run: RunDir, metrics: list[dict[str, Any]], unreadable: list[int] | None = None
                 ) -> list[dict[str, Any]]:
    """`judge_run` over the given metrics lines of `run`."""
    rows = []
    for m in metrics:
        if m["round"] == 0:
            continue
        try:
            c = run.candidates(m["round"]).select(["kept", "label_correct"]).to_pydict()
        except (OSError, KeyError, ValueError) as e:
            if unreadable is not None:
                unreadable.append(m["round"])
                continue
            raise RunError(f"{run.round_dir(m['round'])}/candidates.parquet cannot be read ({e}); the guard "
                           f"cannot be judged on round {m['round']}") from None
        right = [bool(x) for x, k in zip(c["label_correct"], c["kept"]) if k]
        precision = sum(right) / len(right) if right else None
        decision = m.get("decision", "commit")
        failed = decision in ("hold", "rollback") or decision == "stop" and m.get("signal") is not None
        judgement = ("miss" if decision == "commit" and precision is not None and precision < MISS_BELOW else
                     "false alarm" if failed and precision is not None and precision >= FALSE_ALARM_AT else "")
        rows.append({"run": run.root.name, "round": m["round"], "difficulties": m.get("difficulties", []),
                     "decision": decision, "signal": m.get("signal"), "n_kept": len(right), "precision": precision,
                     "judgement": judgement, "frontier": m.get("frontier")})
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts over the rows of one or more runs."""
    decisions = Counter(r["decision"] for r in rows)
    committed = [r["precision"] for r in rows if r["decision"] == "commit" and r["precision"] is not None]
    return {
        "rounds": len(rows),
        **{d: decisions.get(d, 0) for d in ("commit", "hold", "rollback", "stop")},
        "misses": sum(r["judgement"] == "miss" for r in rows),
        "false_alarms": sum(r["judgement"] == "false alarm" for r in rows),
        "lowest_committed_precision": min(committed) if committed else None,
        "triggers": dict(Counter(r["signal"] for r in rows if r["signal"])),
    }
