"""The planner: the difficulties of the next round, from what the loop has seen. Label-free: it reads
the previous round's metrics that need no truth (kept share) and the committee's own answers, never
truth.

    difficulties, probes = plan(task, cfg, committee, trained, r, previous_metrics)

`fixed` takes one step per round; `accelerated` (the paper's fast mode) also takes every following
step on which the committee is already self-consistent >= `loop.tau`. With `loop.advance_at` either
holds at the same difficulty after a round that kept too little of its problems.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from selfimprove.committee import labelling
from selfimprove.config import Config
from selfimprove.filters import filter_outputs
from selfimprove.tasks import Difficulty, Task, difficulty_key, stream_seed


def self_consistency(committee: Any, task: Task, cfg: Config, difficulties: list[Difficulty], r: int) -> float:
    """Share of fresh probe problems that every member (every sample, with committee.samples > 1) answers
    alike and the filters keep (the least over `difficulties`). Label-free: no truth is read."""
    shares = []
    for d in difficulties:
        prompts = task.sample(d, range(cfg.loop.probe_problems), stream_seed(cfg.seed, "probe", r)).prompts
        answers = committee.generate(prompts, sampling=labelling(cfg, stream_seed(cfg.seed, "probe-sample", r)))
        v = filter_outputs(cfg, task, prompts, *answers)
        shares.append(float(np.mean([k and s == 1.0 for k, s in zip(v.kept, v.vote_share)])))
    return min(shares)


def plan(task: Task, cfg: Config, committee: Any, trained: list[Difficulty], r: int,
         previous: dict[str, Any] | None = None) -> tuple[list[Difficulty], dict[str, float]]:
    """The next round's difficulties: one step harder than what was trained, or the previous round's
    again if it kept less than `advance_at` of its problems; the accelerated planner also takes each
    further step on which the committee is already self-consistent >= tau."""
    if previous and previous["round"] > 0 and previous["n_kept"] < cfg.loop.advance_at * previous["n_generated"]:
        return [tuple(d) for d in previous["difficulties"]], {}
    chosen = task.next_difficulties(trained, cfg.task.step)
    probes: dict[str, float] = {}
    if cfg.loop.planner == "accelerated":
        for _ in range(cfg.loop.max_jump - 1):
            following = task.next_difficulties(trained + chosen, cfg.task.step)
            if not all(map(task.drawable, following)):
                break
            consistency = self_consistency(committee, task, cfg, following, r)
            probes[" ".join(map(difficulty_key, following))] = round(consistency, 4)
            if consistency < cfg.loop.tau:
                break
            chosen += following
    return chosen, probes
