"""The README's guard table: one row per run, from its run directory alone. Lowest label precision among
the rounds the guard committed (recomputed from candidates.parquet), held and rolled-back rounds, how
the run ended, the final frontier (last committed round) and minutes (every round's seconds).

    python experiments/guard_table.py runs/a runs/b ...
"""

from __future__ import annotations

import sys
from pathlib import Path

from selfimprove.judge import judge_run, summary
from selfimprove.rundir import RunDir, trains


def failed(m: dict) -> str | None:
    """'held' or 'rolled back' for a round the guard did not commit (a stopping round by what it did)."""
    if m.get("decision") == "hold" or m.get("decision") == "stop" and m.get("signal") and not m["train_steps"]:
        return "held"
    if m.get("decision") == "rollback" or m.get("decision") == "stop" and m.get("signal") and m["train_steps"]:
        return "rolled back"
    return None


def row(root: Path) -> dict:
    run = RunDir.open(root)
    metrics = run.metrics()
    s = summary(judge_run(root))
    committed = list(filter(trains, metrics))
    kinds = [failed(m) for m in metrics[1:]]
    return {
        "run": root.name,
        "self-rounds": len(metrics) - 1,
        "lowest committed precision": s["lowest_committed_precision"],
        "held": kinds.count("held"),
        "rolled back": kinds.count("rolled back"),
        "misses": s["misses"],
        "false alarms": s["false_alarms"],
        "end": metrics[-1].get("stop_reason", "all rounds") if metrics else "-",
        "frontier": committed[-1]["frontier"] if committed else None,
        "minutes": sum(sum(m["seconds"].values()) for m in metrics) / 60,
        "guard minutes": sum(m["seconds"].get("guard", 0.0) for m in metrics) / 60,
    }


def cell(k: str, v) -> str:
    return "-" if v is None else f"{v:.1f}" if "minutes" in k else f"{v:.3f}" if isinstance(v, float) else str(v)


def main(roots: list[Path]) -> None:
    rows = [row(r) for r in roots]
    head = list(rows[0])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(cell(h, r[h]) for h in head) + " |")


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]])
