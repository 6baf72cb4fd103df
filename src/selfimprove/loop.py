"""The self-improvement loop, one round at a time: plan -> act -> verify -> learn -> check -> commit.

    from selfimprove.config import load_config, dump_toml
    from selfimprove.rundir import RunDir
    cfg = load_config("quick", ["loop.rounds=2"])
    run_loop(cfg, RunDir.create(Path("runs/demo"), dump_toml(cfg), cfg.seed))

Round 0 trains the committee on seed data (truth) at the base difficulties. Every later round samples
problems one step harder (or several, with the accelerated planner), has every member label them,
filters the labels without truth (vote, length, verifier), trains on the mixture of new and earlier
data, and audits fresh held-out problems against truth (metrics only). A round whose filters keep
nothing is committed untrained with `decision: "stop"`, and the run ends there. The planner lives in
planner.py, the audit in audit.py.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from selfimprove.audit import check, held_out, label_quality
from selfimprove.committee import Committee, LearnerFactory, build_learner, labelling
from selfimprove.config import Config, TrainConfig
from selfimprove.filters import filter_outputs
from selfimprove.noise import corrupt
from selfimprove.planner import plan
from selfimprove.rundir import RunDir
from selfimprove.tasks import Difficulty, Task, difficulty_key, stream_seed


class UI(Protocol):
    def phase(self, name: str, total: int) -> AbstractContextManager[Any]: ...  # yields advance(n)
    def line(self, text: str) -> None: ...


class QuietUI:
    def phase(self, name: str, total: int):
        return nullcontext(lambda n=1: None)

    def line(self, text: str) -> None:
        pass


# --- the phases ------------------------------------------------------------------------------------


def draw(task: Task, cfg: Config, r: int, difficulties: list[Difficulty]):
    """The round's problems (prompts, hidden truths, difficulties, proposing member or None)."""
    if r == 0:
        streams = [(None, task.sample_seed, cfg.loop.seed_problems, stream_seed(cfg.seed, "train", r))]
    elif cfg.committee.problems == "per_member":
        streams = [(k, task.sample, cfg.loop.problems, stream_seed(cfg.seed, "train", r, k))
                   for k in range(cfg.committee.size)]
    else:
        streams = [(None, task.sample, cfg.loop.problems, stream_seed(cfg.seed, "train", r))]
    prompts, truths, diffs, proposer = [], [], [], []
    for k, sample, n, seed in streams:
        for d in difficulties:
            b = sample(d, range(n), seed)
            prompts += b.prompts
            truths += b.truths
            diffs += [list(d)] * len(b.prompts)
            proposer += [k] * len(b.prompts)
    return prompts, truths, diffs, proposer


CANDIDATE_SCHEMA = pa.schema([
    ("round", pa.int32()), ("difficulty", pa.list_(pa.int32())), ("prompt", pa.string()),
    ("proposer", pa.int32()), ("outputs", pa.list_(pa.string())), ("member", pa.list_(pa.int32())),
    ("sample", pa.list_(pa.int32())), ("finished", pa.list_(pa.bool_())),
    ("confidence", pa.list_(pa.float32())),
    ("label", pa.string()), ("kept", pa.bool_()), ("drop_reason", pa.string()), ("vote_share", pa.float64()),
    ("corrupted", pa.bool_()), ("truth", pa.string()), ("label_correct", pa.bool_()),
])


def schedule(train: TrainConfig, r: int) -> tuple[int, int, int, float]:
    """Round r's steps, warmup steps, decay steps and peak lr: round 0 warms up; every later round
    jumps straight back to its peak (`round_lr`, default `lr`) and decays again."""
    if r == 0:
        return train.steps, int(train.warmup * train.steps), max(1, int(train.decay * train.steps)), train.lr
    steps = train.round_steps
    return steps, 0, max(1, int(train.round_decay * steps)), train.round_lr or train.lr


# --- the loop --------------------------------------------------------------------------------------


def run_loop(cfg: Config, run: RunDir, ui: UI | None = None, make_learner: LearnerFactory = build_learner
             ) -> list[dict[str, Any]]:
    """Run (or resume) rounds until `loop.rounds`, `loop.target`, or a round whose filters keep nothing;
    returns the metrics of every round. `make_learner` builds each member's learner (default: the one
    `learner.kind` names, tiny or hf; the tests pass fakes)."""
    ui = ui or QuietUI()
    task = cfg.task.build()
    log_round = None
    if cfg.tracking == "tensorboard":
        from selfimprove.tracking import log_round  # fails here, before any work, if the extra is missing
    committee = Committee(cfg, task, make_learner)
    try:
        history, trained = run.metrics(), []
        for r in run.committed():  # resume: rebuild the corpus from the committed rounds' candidates
            data = run.candidates(r).select(["difficulty", "prompt", "label"]).to_pydict()
            committee.add(r, data["difficulty"], data["prompt"], data["label"])
            trained += sorted({tuple(d) for d in data["difficulty"]})
        if run.committed():
            committee.load(run.verified_checkpoint(run.committed()[-1]))
        for r in range(len(history), cfg.loop.rounds + 1):
            if history and history[-1].get("decision") == "stop":
                break
            if cfg.loop.target is not None and any(min(d) >= cfg.loop.target for d in trained):
                break
            if r > 0 and not all(map(task.drawable, task.next_difficulties(trained, cfg.task.step))):
                ui.line(f"stopped: task {task.name} has no harder difficulty after {max(trained)}")
                break
            metrics = run_round(cfg, run, task, committee, r, trained, ui, history[-1] if history else None)
            history.append(metrics)
            if log_round is not None:
                log_round(run.root, metrics)
            ui.line(round_line(metrics))
    finally:
        committee.close()
    stop = history[-1].get("stop_reason") if history else None
    if stop:
        ui.line(f"stopped: {stop}")
    run.set_status("finished", **({"stop_reason": stop} if stop else {}))
    return history


def run_round(cfg: Config, run: RunDir, task: Task, committee: Committee, r: int, trained: list[Difficulty],
              ui: UI, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """One round, committed atomically; `trained` grows by the round's difficulties."""
    seconds: dict[str, float] = {}
    current, t = "", time.perf_counter()

    def enter(name: str) -> None:
        """Close the running phase (its seconds) and make `name` the phase in flight."""
        nonlocal current, t
        if current:
            seconds[current] = time.perf_counter() - t
        current, t = name, time.perf_counter()
        run.set_progress(r, name)

    # plan (label-free)
    enter("plan")
    difficulties, probes = (task.base_difficulties(cfg.task.base), {}) if r == 0 else \
        plan(task, cfg, committee, trained, r, previous)

    # act: problems with hidden truth; round 0 uses truth as labels (seed data), later rounds the committee
    enter("act")
    prompts, truths, diffs, proposer = draw(task, cfg, r, difficulties)
    n = len(prompts)
    if r == 0:
        outputs, finished, confidence = [[] for _ in prompts], [[] for _ in prompts], [[] for _ in prompts]
    else:
        with ui.phase("label", n * committee.size * cfg.committee.samples) as advance:
            outputs, finished, confidence = committee.generate(
                prompts, advance, labelling(cfg, stream_seed(cfg.seed, "sample", r)))

    # verify: filters see prompts and outputs, never truth
    enter("verify")
    if r == 0:
        labels, answers, kept, reasons, shares = truths, truths, [True] * n, [None] * n, [None] * n
    else:
        v = filter_outputs(cfg, task, prompts, outputs, finished, confidence)
        labels, answers, kept, reasons, shares = v.labels, v.labels, v.kept, v.drop_reason, v.vote_share
    corrupted = [False] * n
    if r == cfg.noise.round:
        labels, corrupted = corrupt(labels, kept, cfg.noise.share, cfg.noise.kind,
                                    np.random.default_rng(stream_seed(cfg.seed, "noise", r)))
    n_kept = sum(kept)
    drop_reasons = dict(Counter(x for x in reasons if x is not None))

    # learn, unless the filters kept nothing: then the run stops here (in either loop.data mode), with
    # the models of the previous round; training on old data alone would only move them at random
    enter("learn")
    kept_labels = [lab if k else None for lab, k in zip(labels, kept)]
    committee.add(r, diffs, prompts, kept_labels)
    trained += difficulties
    steps, warmup, decay, peak = schedule(cfg.train, r) if n_kept else (0, 0, 0, 0.0)
    losses = []
    if steps:
        with ui.phase("train", steps * committee.size) as advance:
            losses = committee.train(r, steps, warmup, decay, peak, advance)

    # check
    enter("check")
    held = held_out(task, cfg, r, trained)
    with ui.phase("audit", committee.size * sum(len(b.prompts) for b in held)) as advance:
        accuracy, member_accuracy, solved, audit_table = check(committee, task, held, r, advance)

    # commit
    enter("commit")  # closes check; the commit itself is not timed
    precision, recall = label_quality(labels, kept, answers, truths)
    metrics = {
        "round": r,
        "difficulties": [list(d) for d in difficulties],
        "committee": committee.size,
        "samples": cfg.committee.samples,
        "n_generated": n,
        "n_kept": n_kept,
        "kept_share": n_kept / n if n else None,
        "drop_reasons": drop_reasons,
        "label_precision": None if r == 0 else precision,
        "label_recall": None if r == 0 else recall,
        "audit": accuracy,
        "frontier": solved,
        "train_steps": steps,
        "train_loss": float(np.mean([np.mean(x[-max(1, steps // 10):]) for x in losses])) if losses else None,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "decision": "commit" if n_kept else "stop",
    }
    if not n_kept:
        reasons_text = ", ".join(f"{k} {v}" for k, v in sorted(drop_reasons.items()))
        metrics["stop_reason"] = (f"round {r} kept none of its {n} labels at difficulty "
                                  f"{' '.join(map(_difficulty, difficulties))} ({reasons_text}); nothing to "
                                  f"train on")
    if committee.size > 1:
        metrics["audit_members"] = member_accuracy
    if probes:
        metrics["self_consistency"] = probes
    if any(corrupted):
        metrics["n_corrupted"] = sum(corrupted)
    # outputs[i][j] is member j // samples's sample j % samples
    who = [k for k in range(committee.size) for _ in range(cfg.committee.samples)]
    which = [s for _ in range(committee.size) for s in range(cfg.committee.samples)]
    candidates = pa.table({
        "round": [r] * n, "difficulty": diffs, "prompt": prompts, "proposer": proposer, "outputs": outputs,
        "member": [who if r else [] for _ in range(n)], "sample": [which if r else [] for _ in range(n)],
        "finished": finished, "confidence": confidence, "label": kept_labels, "kept": kept, "drop_reason": reasons,
        "vote_share": shares, "corrupted": corrupted, "truth": truths,
        "label_correct": [lab == tr if k else None for lab, tr, k in zip(labels, truths, kept)],
    }, schema=CANDIDATE_SCHEMA)
    run.commit_round(r, {"candidates": candidates, "audit": audit_table}, committee.save, metrics)
    return metrics


def _difficulty(d) -> str:
    return "(" + difficulty_key(d) + (",)" if len(d) == 1 else ")")


def round_line(m: dict[str, Any]) -> str:
    """`round 3 | difficulty (9,) | kept 5000/5000 | label_precision 0.998 | audit 9:1.00 10:0.42 | 41 s`"""
    diffs = " ".join(map(_difficulty, m["difficulties"]))
    precision = "n/a" if m["label_precision"] is None else f"{m['label_precision']:.3f}"
    audit = " ".join(f"{k}:{v:.2f}" for k, v in m["audit"].items())
    f = m["frontier"]
    front = "none" if f is None or f == [] else f if isinstance(f, int) else " ".join(map(_difficulty, f))
    return (f"round {m['round']} | difficulty {diffs} | kept {m['n_kept']}/{m['n_generated']} | "
            f"label_precision {precision} | audit {audit} | frontier {front} | "
            f"{sum(m['seconds'].values()):.0f} s")
