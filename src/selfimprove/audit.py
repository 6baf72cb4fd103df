"""The audit: fresh held-out problems with truth, scored per difficulty, and the quality of a round's
labels. Truth is read here for metrics only; nothing in this module decides anything in the loop.

    accuracy, members, solved, table = check(committee, task, held_out(task, cfg, r, trained), r)
    precision, recall, label_correct = label_quality(task, prompts, labels, kept, answers, truths)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from selfimprove.config import Config
from selfimprove.filters import vote
from selfimprove.tasks import Batch, Difficulty, Task, difficulty_key, stream_seed

AUDIT_SCHEMA = pa.schema([
    ("round", pa.int32()), ("difficulty", pa.list_(pa.int32())), ("prompt", pa.string()),
    ("outputs", pa.list_(pa.string())), ("output", pa.string()), ("truth", pa.string()), ("correct", pa.bool_()),
])
SOLVED = 0.99  # a difficulty is solved at this audit accuracy or above


def frontier(task: Task, accuracy: dict[Difficulty, float]):
    """The hardest audited difficulty solved (accuracy >= 0.99), None if none; for several axes, the
    solved difficulties that no other solved difficulty dominates."""
    solved = [d for d, a in accuracy.items() if a >= SOLVED]
    if len(task.axes) == 1:
        return max(solved)[0] if solved else None
    return sorted(list(d) for d in solved
                  if not any(e != d and all(x >= y for x, y in zip(e, d)) for e in solved))


def held_out(task: Task, cfg: Config, r: int, trained: list[Difficulty]):
    """Round r's audit problems, from a stream of their own (never the training or probe streams):
    `audit.problems` per difficulty around the hardest trained one, and `audit.base` per base difficulty
    outside that window (for several axes, the base difficulties on the base range's edge), so that
    forgetting shows after the window has moved on."""
    window = task.audit_difficulties(trained, cfg.audit.below, cfg.audit.above)
    edge = [d for d in task.base_difficulties(cfg.task.base) if len(d) == 1 or max(d) == cfg.task.base]
    base = [d for d in edge if d not in window] if cfg.audit.base else []
    sizes = {**dict.fromkeys(base, cfg.audit.base), **dict.fromkeys(window, cfg.audit.problems)}
    return [task.sample(d, range(n), stream_seed(cfg.seed, "audit", r)) for d, n in sorted(sizes.items())]


def check(committee: Any, task: Task, batches: list[Batch], r: int, progress=None):
    """Accuracy of the committee's vote (and of each member) on round r's held-out problems (`held_out`),
    per difficulty: ({difficulty key: accuracy}, [{difficulty key: accuracy} per member], frontier, audit
    table)."""
    prompts = [p for b in batches for p in b.prompts]
    truths = [t for b in batches for t in b.truths]
    diffs = [list(b.difficulty) for b in batches for _ in b.prompts]
    outputs, finished, confidence = committee.generate(prompts, progress)
    keys = task.behaviours(prompts, outputs) or [None] * len(prompts)  # a program task votes by execution
    answers = [vote(*args).label for args in zip(prompts, outputs, finished, confidence, keys)]
    # every member's answer judged once (`Task.correct`); the vote's answer is one of them
    ok = task.correct([p for p, outs in zip(prompts, outputs) for _ in outs], [o for outs in outputs for o in outs],
                      [t for t, outs in zip(truths, outputs) for _ in outs])
    member_correct = np.array(ok, dtype=bool).reshape(len(prompts), committee.size)
    correct = np.array([row[outs.index(a)] for row, outs, a in zip(member_correct, outputs, answers)], dtype=bool)
    edges = np.cumsum([0] + [len(b.prompts) for b in batches])
    spans = [(b, edges[i], edges[i + 1]) for i, b in enumerate(batches)]  # each difficulty's rows
    accuracy = {b.difficulty: float(correct[i:j].mean()) for b, i, j in spans}
    members = [{difficulty_key(b.difficulty): float(member_correct[i:j, k].mean()) for b, i, j in spans}
               for k in range(committee.size)]
    table = pa.table({"round": [r] * len(prompts), "difficulty": diffs, "prompt": prompts, "outputs": outputs,
                      "output": answers, "truth": truths, "correct": correct.tolist()}, schema=AUDIT_SCHEMA)
    return {difficulty_key(d): a for d, a in accuracy.items()}, members, frontier(task, accuracy), table


def label_quality(task: Task, prompts, labels, kept, answers, truths):
    """label_precision: share of kept (training) labels that are correct (`Task.correct`); label_recall: share
    of the candidates whose committee answer is correct that were kept (None where a share has no
    denominator); and each label's correctness (None where not kept)."""
    answered = task.correct(prompts, answers, truths)
    idx = [i for i, k in enumerate(kept) if k]
    changed = [i for i in idx if labels[i] != answers[i]]  # labels noise changed: judged again (programs run once)
    relabelled = dict(zip(changed, task.correct([prompts[i] for i in changed], [labels[i] for i in changed],
                                                [truths[i] for i in changed])))
    good = [relabelled.get(i, answered[i]) for i in idx]
    right = [k for k, ok in zip(kept, answered) if ok]
    label_correct: list[bool | None] = [None] * len(labels)
    for i, g in zip(idx, good):
        label_correct[i] = bool(g)
    return (sum(good) / len(good) if good else None), (sum(right) / len(right) if right else None), label_correct
