"""The planner: the difficulties of the next round, from what the loop has seen. Label-free: it reads
the previous round's metrics that need no truth (kept share) and the committee's own answers, never
truth.

    next_round = plan(task, cfg, committee, trained, r, history)  # a Plan

`fixed` takes one step per round; `accelerated` (the paper's fast mode) also takes every following
step on which the committee is already self-consistent >= `loop.tau`. With `loop.advance_at` either
holds at the same difficulty after a round that kept too little of its problems. The `controller`
sizes each step from the signals: as far as the committee is sure (enough probes pass the strict
filters: confidence at loop.strict_confidence, the task's invariant), drawing more problems where the
filters will drop more, labelling every new step strictly, and after a round the guard held or rolled
back, one step and more problems.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from selfimprove.committee import labelling
from selfimprove.config import Config
from selfimprove.filters import filter_outputs
from selfimprove.tasks import Difficulty, Task, difficulty_key, stream_seed


@dataclass(frozen=True)
class Plan:
    """What the next round does: its difficulties, the problems it draws per difficulty, whether its
    filters are strict (the confidence filter at loop.strict_confidence added), and the planner's
    self-consistency probes ({difficulties: share})."""

    difficulties: list[Difficulty]
    problems: int
    strict: bool = False
    probes: dict[str, float] = field(default_factory=dict)
    further: list[int] = field(default_factory=list)  # problems at each difficulty after the first step's

    def counts(self) -> list[int]:
        """Problems per difficulty: `problems` for the first step's difficulties, `further` for the others."""
        return [self.problems] * (len(self.difficulties) - len(self.further)) + self.further


def self_consistency(committee: Any, task: Task, cfg: Config, difficulties: list[Difficulty], r: int,
                     strict: bool = False) -> float:
    """Share of fresh probe problems that every member (every sample, with committee.samples > 1) answers
    alike and the filters keep (the least over `difficulties`); `strict` filters as the controller's
    further steps are labelled (a single greedy learner: the share it answers confidently). Label-free:
    no truth is read."""
    shares = []
    for d in difficulties:
        prompts = task.sample(d, range(cfg.loop.probe_problems), stream_seed(cfg.seed, "probe", r)).prompts
        answers = committee.generate(prompts, sampling=labelling(cfg, stream_seed(cfg.seed, "probe-sample", r)))
        v = filter_outputs(cfg, task, prompts, *answers, strict=strict, committee=committee)
        shares.append(float(np.mean([k and s == 1.0 for k, s in zip(v.kept, v.vote_share)])))
    return min(shares)


def failed_attempts(history: list[dict[str, Any]]) -> int:
    """Rounds at the end of `history` that the guard held or rolled back, in a row."""
    n = 0
    for m in reversed(history):
        if m.get("decision") not in ("hold", "rollback"):
            break
        n += 1
    return n


def plan(task: Task, cfg: Config, committee: Any, trained: list[Difficulty], r: int,
         history: list[dict[str, Any]] | None = None) -> Plan:
    """The next round: one step harder than what was trained, or the previous round's difficulties again
    if it kept less than `advance_at` of its problems; the accelerated planner and the controller also take
    each further step on which the committee is already self-consistent >= tau (the controller: on which
    at least `jump_at` of the probes pass the strict filters, with more problems there; it labels every
    new step with the strict filters, and a repeat after a round that kept too little with the configured
    ones: the members have just trained there, and the repeat is for the hard labels strictness drops).
    After a round the guard held or rolled back, the controller backs off to one step and retries it
    strictly with more problems (the fixed and accelerated planners retry the same step with the same
    settings)."""
    loop, history = cfg.loop, history or []
    previous = history[-1] if history else None
    if loop.planner == "controller" and (failed := failed_attempts(history)):
        most = loop.max_problems or 4 * loop.problems
        return Plan(task.next_difficulties(trained, cfg.task.step), min(most, loop.problems * 2 ** failed), True)
    if previous and previous["round"] > 0 and previous["n_kept"] < loop.advance_at * previous["n_generated"]:
        return Plan([tuple(d) for d in previous["difficulties"]], loop.problems)
    chosen = task.next_difficulties(trained, cfg.task.step)
    probes: dict[str, float] = {}
    further: list[int] = []
    if loop.planner in ("accelerated", "controller"):
        controller = loop.planner == "controller"
        for _ in range(loop.max_jump - 1):
            following = task.next_difficulties(trained + chosen, cfg.task.step)
            if not all(map(task.drawable, following)):
                break
            consistency = self_consistency(committee, task, cfg, following, r, strict=controller)
            probes[" ".join(map(difficulty_key, following))] = round(consistency, 4)
            if consistency < (loop.jump_at if controller else loop.tau):
                break
            chosen += following
            # the controller draws as many more problems as the strict filters will drop (up to max_problems)
            n = min(loop.max_problems or 4 * loop.problems, math.ceil(loop.problems / consistency)) \
                if controller else loop.problems
            further += [n] * len(following)
    # the controller labels further steps, extrapolations the committee was never trained near, strictly
    return Plan(chosen, loop.problems, strict=loop.planner == "controller", probes=probes, further=further)
