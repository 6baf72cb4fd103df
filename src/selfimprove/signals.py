"""Label-free signals of a round: what the guard and the controller may see. Nothing here reads truth.

    s = label_signals(task, prompts, outputs, finished, confidence, labels, kept, samples)
    s["invariant"] = invariant(committee, task, prompts, labels, kept, n)   # needs generation
    before = votes(committee, probes); ...train...; s["drift"] = drift(before, votes(committee, probes))

From the candidates (no generation): `unanimity` (share of problems whose K x N answers are all alike),
`vote_share` (mean) and `vote_share_q10`, `support` (share of the kept labels that at least one answer
gave: 1 unless something changed labels after the vote), `confidence_kept` / `confidence_kept_q10` /
`confidence_dropped` (the least token probability of a label, mean over the answers that gave it),
`sample_agreement` (with committee.samples > 1: share of a member's samples that are its most common
answer), `no_eos` and `bad_length` (answer-shape anomalies over every answer), `verified` (share of kept
labels the task's verifier passes). From the models: `invariant` (share of checked kept labels that the
committee gives again to the task's invariant prompt, b+a for a+b), `invariant_after` (the trained
committee's answers to fresh problems and their invariant prompts agree) and `drift` (share of answers
on a fixed probe set at already-trained difficulties that training changed).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from selfimprove.filters import invariant_agrees, vote, votes
from selfimprove.tasks import Difficulty, Task, stream_seed


def _mean(xs: list[float]) -> float | None:
    return round(float(np.mean(xs)), 4) if xs else None


def _q10(xs: list[float]) -> float | None:
    return round(float(np.quantile(xs, 0.1)), 4) if xs else None


def label_signals(task: Task, prompts: list[str], outputs: list[list[str]], finished: list[list[bool]],
                  confidence: list[list[float]], labels: list[str], kept: list[bool], samples: int
                  ) -> dict[str, Any]:
    """The signals of a round's candidates; `labels` are the labels the round would train on."""
    votes = [vote(p, o, f, c) for p, o, f, c in zip(prompts, outputs, finished, confidence)]
    shares = [c.vote_share for c in votes]
    conf_kept = [c.confidence for c, k in zip(votes, kept) if k]
    every = [(p, a, f) for p, outs, fins in zip(prompts, outputs, finished) for a, f in zip(outs, fins)]
    lengths = [(lo, task.max_answer_length(p), len(a)) for p, a, _ in every
               if (lo := task.answer_length(p)) is not None]
    s: dict[str, Any] = {
        "unanimity": _mean([float(v == 1.0) for v in shares]),
        "vote_share": _mean(shares),
        "vote_share_q10": _q10(shares),
        "support": _mean([float(lab in outs) for lab, outs, k in zip(labels, outputs, kept) if k]),
        "confidence_kept": _mean(conf_kept),
        "confidence_kept_q10": _q10(conf_kept),
        "confidence_dropped": _mean([c.confidence for c, k in zip(votes, kept) if not k]),
        "no_eos": _mean([float(not f) for _, _, f in every]),
        "bad_length": _mean([float(not lo <= n <= hi) for lo, hi, n in lengths]),
    }
    if samples > 1:  # outputs[i][k * samples + s]: member k's sample s
        agreement = [Counter(outs[k : k + samples]).most_common(1)[0][1] / samples
                     for outs in outputs for k in range(0, len(outs), samples)]
        s["sample_agreement"] = _mean(agreement)
    if task.has_verifier():
        idx = [i for i, k in enumerate(kept) if k]
        s["verified"] = _mean([float(bool(ok)) for ok in task.verify_many([prompts[i] for i in idx],
                                                                          [labels[i] for i in idx])])
    return s


def invariant(committee: Any, task: Task, prompts: list[str], labels: list[str], kept: list[bool], n: int,
              seed: int) -> float | None:
    """Share of (up to n, drawn with `seed`) kept labels that the committee gives again when asked the task's
    invariant prompt; None when the task declares no invariant or nothing was kept."""
    idx = [i for i, k in enumerate(kept) if k and task.invariant(prompts[i]) is not None]
    if not idx:
        return None
    idx = sorted(np.random.default_rng(seed).permutation(idx)[:n].tolist())
    return _mean([float(ok) for ok in invariant_agrees(task, committee, [prompts[i] for i in idx],
                                                       [labels[i] for i in idx])])


def self_invariant(committee: Any, task: Task, difficulties: list[Difficulty], n: int, seed: int) -> float | None:
    """Share of n fresh problems per difficulty whose invariant prompt the committee answers as the problem
    itself (label-free: both answers are the committee's own); None when the task declares no invariant."""
    prompts = [p for d in difficulties for p in task.sample(d, range(n), seed).prompts]
    twins = [task.invariant(p) for p in prompts]
    if not prompts or any(t is None for t in twins):
        return None
    a, b = votes(committee, prompts), votes(committee, twins)  # type: ignore[arg-type]
    return _mean([float(x == y) for x, y in zip(a, b)])


def drift_probes(task: Task, trained: list[Difficulty], levels: int, n: int, seed: int) -> list[str]:
    """The fixed drift probe set: n problems at each of the hardest `levels` trained difficulties (by their
    sum over the axes), from a stream of their own (the same problems whenever a difficulty is probed)."""
    chosen = sorted(set(trained), key=lambda d: (sum(d), d))[-levels:]
    return [p for d in chosen for p in task.sample(d, range(n), stream_seed(seed, "drift")).prompts]


def drift(before: list[str], after: list[str], learned: list[bool | None] | None = None) -> float | None:
    """Share of probe answers that changed; with `learned` (the task's verifier on the answers before), of
    those the verifier accepted only: a wrong answer that changes is no forgetting."""
    pairs = [(a, b) for i, (a, b) in enumerate(zip(before, after)) if learned is None or learned[i]]
    return _mean([float(a != b) for a, b in pairs])
