"""`selfimprove eval`: a committed round's models on fresh held-out problems, scored against truth per
difficulty: each member's greedy accuracy and that of the members' vote (as the audit scores them); with
sampled answers, pass@N (some answer right) and maj@N (the vote of the answers right), per member and for
the whole committee (all K x N answers). It only reads the run directory.

    spec = resolve(Path("runs/quick"), round_=2, difficulties=[(9,), (10,)], samples=4)
    result = evaluate(spec)
    result["vote"]["9"], result["members"][0]["9"], result["pass"]["9"], result["maj"]["9"]

The problems come from a stream of their own per `seed`, `stream_seed(cfg.seed, "eval", seed)`, never
one of the run's training, probe or audit streams: seed 0, 1, ... give fresh sets of problems.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from selfimprove.audit import check
from selfimprove.committee import Advance, Committee, LearnerFactory, Sampling, build_learner
from selfimprove.config import Config, load_config
from selfimprove.filters import vote
from selfimprove.rundir import RunDir, RunError
from selfimprove.tasks import Difficulty, Task, difficulty_key, stream_seed

DEFAULT_TEMPERATURE = 0.7  # of sampled answers, when --samples N > 1 is given without a temperature


@dataclass(frozen=True)
class EvalSpec:
    """What to evaluate, checked against the run before any model is built."""

    root: Path
    cfg: Config  # the run's config, with committee.workers = 1
    task: Task
    round: int
    checkpoint: Path  # the round's checkpoint folder, checksums verified
    difficulties: list[Difficulty]
    problems: int  # per difficulty
    seed: int  # picks the stream of problems (and of samples)
    sampling: Sampling | None  # None: greedy answers only


def parse_difficulty(text: str) -> Difficulty:
    """'9' -> (9,), '3,4' -> (3, 4)."""
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"a difficulty is ints separated by commas (9, or 3,4 for two axes), got {text!r}") from None


def resolve(root: Path, round_: int | None = None, difficulties: list[Difficulty] | None = None,
            problems: int | None = None, samples: int = 1, temperature: float | None = None, seed: int = 0
            ) -> EvalSpec:
    """The request, checked: RunError for the run or round, ConfigError for its config.toml, ValueError for
    the other arguments. Defaults: the last committed round, that round's audit difficulties,
    `audit.problems` problems; sampled answers when samples > 1 (at temperature 0.7) or temperature > 0."""
    run = RunDir.open(root)
    cfg = load_config(str(root / "config.toml"), ["committee.workers=1"])
    committed = run.trained_rounds()
    if not committed:
        raise RunError(f"{root} has no committed round yet; there is no model to evaluate.")
    r = committed[-1] if round_ is None else round_
    if r not in committed:
        raise RunError(f"round {r} of {root} is not a committed round with weights of its own (held, rolled "
                       f"back or in flight); committed rounds: {', '.join(map(str, committed))}")
    task = cfg.task.build()
    if difficulties is None:  # the audit's window of round r
        trained = [tuple(d) for m in run.metrics() if m["round"] <= r and m["round"] in committed
                   for d in m["difficulties"]]
        difficulties = task.audit_difficulties(trained, cfg.audit.below, cfg.audit.above)
    for d in difficulties:
        task.validate_difficulty(d)
        if not task.drawable(d):
            raise ValueError(f"task {task.name!r} cannot draw problems of difficulty {difficulty_key(d)}")
    problems = cfg.audit.problems if problems is None else problems
    if problems < 1:
        raise ValueError(f"problems per difficulty must be at least 1, got {problems}")
    if samples < 1:
        raise ValueError(f"samples per member must be at least 1, got {samples}")
    if temperature is None:
        temperature = DEFAULT_TEMPERATURE if samples > 1 else 0.0
    if not 0 <= temperature <= 10:
        raise ValueError(f"temperature must be between 0 and 10, got {temperature:g}")
    if samples > 1 and temperature == 0:
        raise ValueError(f"{samples} samples at temperature 0 are {samples} identical greedy answers; give a "
                         f"temperature above 0 (for example {DEFAULT_TEMPERATURE})")
    sampling = Sampling(samples, temperature, 1.0, stream_seed(cfg.seed, "eval", seed, "sample")) \
        if temperature > 0 else None
    return EvalSpec(root, cfg, task, r, run.verified_checkpoint(r), list(dict.fromkeys(difficulties)), problems,
                    seed, sampling)


# --- scoring --------------------------------------------------------------------------------------

def _score(task: Task, prompts: list[str], truths: list[str], answers, k: int) -> dict[str, Any]:
    """`answers` = (outputs, finished, confidence) as [prompt][answer], member j's at j*n ... (j+1)*n - 1:
    the share of prompts where some answer is right ("pass") and where the vote of the answers is right
    ("maj"), over all answers and per member ("members_pass", "members_maj"); right as `Task.correct` says
    (a program task: by behaviour, its vote by execution)."""
    outputs, finished, confidence = answers
    n = len(outputs[0]) // k
    keys = task.behaviours(prompts, outputs) or [[None] * (k * n) for _ in prompts]
    ok = task.correct([p for p in prompts for _ in range(k * n)], [o for outs in outputs for o in outs],
                      [t for t in truths for _ in range(k * n)])
    right = np.array(ok, dtype=bool).reshape(len(prompts), k, n)

    def maj(i: int, a: int, b: int) -> bool:
        key = keys[i][a:b] if keys[i][0] is not None else None
        label = vote(prompts[i], outputs[i][a:b], finished[i][a:b], confidence[i][a:b], key).label
        return bool(right[i].reshape(-1)[outputs[i].index(label)])

    rows = range(len(prompts))
    return {"pass": float(right.any(axis=(1, 2)).mean()),
            "maj": float(np.mean([maj(i, 0, k * n) for i in rows])),
            "members_pass": right.any(axis=2).mean(axis=0).tolist(),
            "members_maj": np.mean([[maj(i, j * n, (j + 1) * n) for j in range(k)] for i in rows], axis=0).tolist()}


def evaluate(spec: EvalSpec, make_learner: LearnerFactory = build_learner, advance: Advance | None = None
             ) -> dict[str, Any]:
    """Load the round's members, answer the problems (greedy, then sampled if asked) and score them per
    difficulty key: "vote" and "members" (greedy accuracy, as in metrics.jsonl's audit and audit_members),
    "frontier"; with sampling also "pass", "maj", "members_pass" and "members_maj"."""
    s, seed = spec.sampling, stream_seed(spec.cfg.seed, "eval", spec.seed)
    batches = [spec.task.sample(d, range(spec.problems), seed) for d in spec.difficulties]
    sampled_scores = {}  # difficulty key -> _score
    committee = Committee(spec.cfg, spec.task, make_learner)
    k = committee.size
    try:
        committee.load(spec.checkpoint)
        # greedy: scored exactly as the audit scores a round
        accuracy, members, solved, _ = check(committee, spec.task, batches, spec.round, advance)
        for b in batches if s else []:  # one difficulty at a time: its samples do not depend on the others asked
            answers = committee.generate(b.prompts, advance, replace(s, seed=stream_seed(s.seed, b.difficulty)))
            sampled_scores[difficulty_key(b.difficulty)] = _score(spec.task, b.prompts, b.truths, answers, k)
    finally:
        committee.close()

    def per_difficulty(scores: dict[str, dict[str, Any]], name: str, member: int | None = None) -> dict[str, float]:
        return {key: x[name] if member is None else x[name][member] for key, x in scores.items()}

    result: dict[str, Any] = {
        "run": str(spec.root), "round": spec.round, "task": spec.task.name, "learner": spec.cfg.learner.kind,
        "committee": k, "problems": spec.problems, "seed": spec.seed,
        "samples": s.samples if s else None, "temperature": s.temperature if s else None,
        "vote": accuracy, "members": members, "frontier": solved}
    if s:
        result.update({"pass": per_difficulty(sampled_scores, "pass"), "maj": per_difficulty(sampled_scores, "maj"),
                       "members_pass": [per_difficulty(sampled_scores, "members_pass", j) for j in range(k)],
                       "members_maj": [per_difficulty(sampled_scores, "members_maj", j) for j in range(k)]})
    return result


def heading(result: dict[str, Any]) -> str:
    """`eval runs/quick round 2 | 500 problems per difficulty | seed 0 | 4 samples at temperature 0.7`"""
    n = result["samples"]
    return (f"eval {result['run']} round {result['round']} | {result['problems']} problems per difficulty | seed "
            f"{result['seed']}" + (f" | {n} sample{'s' if n > 1 else ''} at temperature {result['temperature']:g}"
                                    if n else ""))


def table(result: dict[str, Any]) -> Table:
    """Per difficulty, a row for the vote (pass and maj over all K x N answers), then one per member when
    there are several."""
    n, k = result["samples"], result["committee"]
    who = [("vote" if k > 1 else "member 0", result["vote"], result.get("pass"), result.get("maj"))]
    if k > 1:
        who += [(f"member {j}", result["members"][j], *(result[f][j] if n else None for f in
                                                        ("members_pass", "members_maj"))) for j in range(k)]
    t = Table("difficulty", "who", "greedy", *([f"pass@{n}", f"maj@{n}"] if n else []))
    for key in result["vote"]:
        for name, *scores in who:
            t.add_row(key, name, *(f"{x[key]:.3f}" for x in scores if x is not None))
    return t
