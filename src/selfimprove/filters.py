"""Filters keep or drop a candidate label and say why. They see prompts and the committee's
outputs, never truth. Filters run in the configured order; the first drop wins.

    verdicts = apply_filters(["majority", "length"], task, prompts, outputs, finished, confidence, agree=0.8)

The candidate label is the committee's most common answer (exact match, EOS included) among all its
answers (K members x N samples each); `majority` keeps it when at least `agree` of the answers are it.
A task whose answers are programs votes by execution instead (`Task.behaviours`): answers that do the same
on fresh probe inputs count as one; a failing behaviour ("sandbox: timeout") or a tie is dropped.
A label with a character outside the task's alphabet is dropped whatever the filters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from selfimprove.tasks import Task

if TYPE_CHECKING:
    from selfimprove.config import Config


@dataclass(frozen=True)
class Candidate:
    prompt: str
    label: str  # the committee's most common answer
    finished: bool  # the label ended with EOS
    confidence: float  # smallest probability of a chosen token, mean over the members that gave the label
    vote_share: float  # share of the answers (K members x N samples) that are the label
    tied: bool = False  # another answer was given as often
    failure: str | None = None  # execution voting: the most common behaviour is a failure ("sandbox: timeout")
    verified: bool | None = None  # the task's verifier on the label, where it ran in a batch beforehand


@dataclass
class Verdicts:
    labels: list[str]
    vote_share: list[float]
    kept: list[bool]
    drop_reason: list[str | None]
    invariant: float | None = None  # share of the labels the invariant filter checked that it kept


def vote(prompt: str, outputs: list[str], finished: list[bool], confidence: list[float],
         keys: list[str] | None = None) -> Candidate:
    """The most common answer; with `keys` (execution voting: what each answer does, `Task.behaviours`) the
    most common behaviour among those that do not fail (a key starting with "\0" names a failure, and
    failing programs outvote no working one), labelled by its most common answer."""
    failing = keys is not None
    keys = outputs if keys is None else keys
    ranked = sorted(Counter(zip(keys, finished)).items(),
                    key=lambda kv: (failing and kv[0][0].startswith("\0"), -kv[1]))[:2]
    (key, done), count = ranked[0]
    group = [(o, c) for o, k, f, c in zip(outputs, keys, finished, confidence) if (k, f) == (key, done)]
    label = Counter(o for o, _ in group).most_common(1)[0][0]
    tied = len(ranked) > 1 and ranked[1][1] == count and not (failing and ranked[1][0][0].startswith("\0"))
    failure = key[1:] if failing and key.startswith("\0") else None
    return Candidate(prompt, label, done, sum(c for _, c in group) / len(group), count / len(outputs), tied, failure)


@dataclass(frozen=True)
class Thresholds:
    agree: float = 0.8  # majority: least share of the answers that are the label
    min_confidence: float = 0.0  # confidence: least probability of the label's least likely token


def _majority(task: Task, c: Candidate, t: Thresholds) -> str | None:
    if c.tied:
        return "majority: tie"
    return None if c.vote_share >= t.agree - 1e-9 else "majority: too few agree"


def _length(task: Task, c: Candidate, t: Thresholds) -> str | None:
    """The paper's length filter: drop answers without EOS or shorter than the prompt implies."""
    if not c.finished:
        return "length: no EOS"
    expected = task.answer_length(c.prompt)
    if expected is not None and len(c.label) < expected:
        return "length: too short"
    return None


def _verify(task: Task, c: Candidate, t: Thresholds) -> str | None:
    """The task's truth-free verifier (a maze path must be valid and join the asked endpoints)."""
    verified = task.verify(c.prompt, c.label) if c.verified is None else c.verified
    return None if c.finished and verified else "verify: failed"


def _confidence(task: Task, c: Candidate, t: Thresholds) -> str | None:
    """Drop answers in which some token was chosen with probability below `loop.min_confidence`."""
    return None if c.confidence >= t.min_confidence else "confidence: below threshold"


FILTERS: dict[str, Callable[[Task, Candidate, Thresholds], str | None]] = {
    "majority": _majority,
    "length": _length,
    "verify": _verify,
    "confidence": _confidence,
    "invariant": lambda task, c, t: None,  # needs the committee: `check_invariant`, after the others
    "none": lambda task, c, t: None,
}


def apply_filters(names: list[str], task: Task, prompts: list[str], outputs: list[list[str]],
                  finished: list[list[bool]], confidence: list[list[float]], agree: float = 0.8,
                  min_confidence: float = 0.0) -> Verdicts:
    """outputs[i][j]: answer j to prompts[i] (member j // N's sample j % N; likewise finished and confidence)."""
    thresholds = Thresholds(agree, min_confidence)
    alphabet = set(task.alphabet)
    v = Verdicts([], [], [], [])
    keys = task.behaviours(prompts, outputs)
    if keys is not None and "verify" in names:  # execution voting: answers the verifier rejects do not vote
        flat = iter(task.verify_many([p for p, outs in zip(prompts, outputs) for _ in outs],
                                     [o for outs in outputs for o in outs]))
        keys = [[k if ok or k.startswith("\0") else "\0verify: failed" for k, ok in zip(ks, flat)] for ks in keys]
    by_behaviour, keys = keys is not None, keys or [None] * len(prompts)
    candidates = [vote(*args) for args in zip(prompts, outputs, finished, confidence, keys)]
    if "verify" in names:  # one batch (a verifier that runs programs starts them all at once)
        verified = [c.failure is None for c in candidates] if by_behaviour else \
            task.verify_many(prompts, [c.label for c in candidates])
        candidates = [replace(c, verified=ok) for c, ok in zip(candidates, verified)]
    for c, key in zip(candidates, keys):
        # a model with a larger vocabulary than the task's (a Hugging Face model) can answer in any character;
        # such a label could not even be trained on
        reason = None if alphabet.issuperset(c.label) else "alphabet: not the task's characters"
        if reason is None and key is not None:  # execution voting drops failures and ties whatever the filters
            reason = c.failure or ("vote: tie" if c.tied else None)
        for name in names if reason is None else []:
            reason = FILTERS[name](task, c, thresholds)
            if reason is not None:
                break
        v.labels.append(c.label)
        v.vote_share.append(c.vote_share)
        v.kept.append(reason is None)
        v.drop_reason.append(reason)
    return v


def filter_names(cfg: Config, task: Task, strict: bool = False) -> list[str]:
    """The run's filters; `strict` (the controller's retry after a round the guard held or rolled back) adds
    the confidence filter and, where the task declares one, the invariant filter."""
    names = list(cfg.loop.filters)
    if strict:
        extra = ["confidence"] + ["invariant"] * task.has_invariant()
        names = [f for f in names if f != "none"] + [f for f in extra if f not in names]
    return names


def filter_outputs(cfg: Config, task: Task, prompts: list[str], outputs: list[list[str]],
                   finished: list[list[bool]], confidence: list[list[float]], strict: bool = False,
                   committee: Any = None) -> Verdicts:
    """`apply_filters` with the run's filters and thresholds (loop.filters, committee.agree,
    loop.min_confidence); `strict` as `filter_names`, with the confidence filter at no less than
    loop.strict_confidence. The invariant filter asks `committee` (without it, it keeps every label)."""
    names, least = filter_names(cfg, task, strict), cfg.loop.min_confidence
    if strict:
        least = max(least, cfg.loop.strict_confidence)
    v = apply_filters(names, task, prompts, outputs, finished, confidence, cfg.committee.agree, least)
    if "invariant" in names and committee is not None:
        v.invariant = check_invariant(task, committee, prompts, v)
    return v


def votes(committee: Any, prompts: list[str]) -> list[str]:
    """The committee's greedy vote on each prompt; an answer without EOS is marked ("\0" appended), so that it
    never equals a label."""
    outputs, finished, confidence = committee.generate(prompts)
    out = []
    for p, o, f, c in zip(prompts, outputs, finished, confidence):
        v = vote(p, o, f, c)
        out.append(v.label if v.finished else v.label + "\0")
    return out


def invariant_agrees(task: Task, committee: Any, prompts: list[str], labels: list[str]) -> list[bool]:
    """Whether the committee's greedy vote on each prompt's invariant prompt (b+a for a+b) is its label.
    Truth-free: both are the committee's own answers."""
    return [t == lab for t, lab in zip(votes(committee, [task.invariant(p) for p in prompts]), labels)]


def check_invariant(task: Task, committee: Any, prompts: list[str], v: Verdicts) -> float | None:
    """The invariant filter: drops every kept label that `invariant_agrees` rejects. Returns the share of the
    checked labels it kept (None if none was)."""
    idx = [i for i, k in enumerate(v.kept) if k]
    if not idx:
        return None
    for i, ok in zip(idx, invariant_agrees(task, committee, [prompts[i] for i in idx], [v.labels[i] for i in idx])):
        if not ok:
            v.kept[i], v.drop_reason[i] = False, "invariant: answered otherwise"
    return sum(v.kept[i] for i in idx) / len(idx)
