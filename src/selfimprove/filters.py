"""Filters keep or drop a candidate label and say why. They see prompts and the committee's
outputs, never truth.

    verdicts = apply_filters(["length"], task, prompts, outputs, finished)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from selfimprove.tasks import Task


@dataclass
class Verdicts:
    labels: list[str]  # the voted label of every candidate (kept or not)
    vote_share: list[float]
    kept: list[bool]
    drop_reason: list[str | None]


def vote(outputs: list[str], finished: list[bool]) -> tuple[str, bool, float]:
    """The most common output of the committee, whether it ended with EOS, and its share of voters."""
    (label, done), count = Counter(zip(outputs, finished)).most_common(1)[0]
    return label, done, count / len(outputs)


def _length(task: Task, prompt: str, label: str, done: bool) -> str | None:
    if not done:
        return "length: no EOS"
    expected = task.answer_length(prompt)
    if expected is not None and len(label) < expected:
        return "length: too short"
    return None


FILTERS = {"length": _length, "none": lambda task, prompt, label, done: None}


def apply_filters(names: list[str], task: Task, prompts: list[str], outputs: list[list[str]],
                  finished: list[list[bool]]) -> Verdicts:
    """outputs[i][k]: member k's answer to prompts[i]. Filters run in order; the first drop wins."""
    v = Verdicts([], [], [], [])
    for prompt, outs, dones in zip(prompts, outputs, finished):
        label, done, share = vote(outs, dones)
        reason = None
        for name in names:
            reason = FILTERS[name](task, prompt, label, done)
            if reason is not None:
                break
        v.labels.append(label)
        v.vote_share.append(share)
        v.kept.append(reason is None)
        v.drop_reason.append(reason)
    return v
