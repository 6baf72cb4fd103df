"""The self-improvement loop, one round at a time: plan -> act -> verify -> guard -> learn -> check ->
guard -> commit.

    from selfimprove.config import load_config, dump_toml
    from selfimprove.rundir import RunDir, trains
    cfg = load_config("quick", ["loop.rounds=2"])
    run_loop(cfg, RunDir.create(Path("runs/demo"), dump_toml(cfg), cfg.seed))

Round 0 trains the committee on seed data (truth) at the base difficulties. Every later round samples
problems one step harder (or several, with the accelerated planner), has every member label them,
filters the labels without truth (vote, length, verifier), trains on the mixture of new and earlier
data, and audits fresh held-out problems against truth (metrics only). The guard (guard.py) decides
from label-free signals (signals.py) whether the round is committed, held (its labels are not trained
on) or rolled back (the previous round's weights, optimizer state and corpus are restored); held and
rolled-back rounds are recorded with their decision and never trained on again. After
`guard.attempts` failed attempts in a row, or with the guard off after a round whose filters keep
nothing, the round is recorded with `decision: "stop"` and the run ends there. The planner lives in
planner.py, the audit in audit.py.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from selfimprove import guard
from selfimprove.audit import check, held_out, label_quality
from selfimprove.committee import Committee, LearnerFactory, build_learner, labelling
from selfimprove.config import Config, TrainConfig
from selfimprove.filters import filter_outputs, votes
from selfimprove.noise import corrupt
from selfimprove.planner import Plan, failed_attempts, plan
from selfimprove.rundir import RunDir, trains
from selfimprove.signals import drift, drift_probes, invariant, label_signals, self_invariant
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


def draw(task: Task, cfg: Config, r: int, difficulties: list[Difficulty], problems: int | list[int]):
    """The round's problems, `problems` per difficulty (or a count for each; per member with
    committee.problems = per_member): prompts, hidden truths, difficulties, proposing member or None."""
    counts = problems if isinstance(problems, list) else [problems] * len(difficulties)
    if r == 0:
        streams = [(None, task.sample_seed, stream_seed(cfg.seed, "train", r))]
    elif cfg.committee.problems == "per_member":
        streams = [(k, task.sample, stream_seed(cfg.seed, "train", r, k)) for k in range(cfg.committee.size)]
    else:
        streams = [(None, task.sample, stream_seed(cfg.seed, "train", r))]
    prompts, truths, diffs, proposer = [], [], [], []
    for k, sample, seed in streams:
        for d, n in zip(difficulties, counts):
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
    """Run (or resume) rounds until `loop.rounds`, `loop.target`, or a round that stops the run (the guard's
    verdict, or with the guard off a round whose filters keep nothing); returns the metrics of every round.
    `make_learner` builds each member's learner (default: the one `learner.kind` names, tiny or hf; the tests
    pass fakes)."""
    ui = ui or QuietUI()
    task = cfg.task.build()
    log_round = None
    if cfg.tracking == "tensorboard":
        from selfimprove.tracking import log_round  # fails here, before any work, if the extra is missing
    committee = Committee(cfg, task, make_learner)
    try:
        history, trained = run.metrics(), []
        for m in filter(trains, history):  # resume: rebuild the corpus from the rounds the guard committed
            data = run.candidates(m["round"]).select(["difficulty", "prompt", "label"]).to_pydict()
            committee.add(m["round"], data["difficulty"], data["prompt"], data["label"])
            trained += sorted({tuple(d) for d in data["difficulty"]})
        if history:
            committee.load(run.verified_checkpoint(last_trained(history)))
        for r in range(len(history), cfg.loop.rounds + 1):
            if history and history[-1].get("decision") == "stop":
                break
            if cfg.loop.target is not None and any(min(d) >= cfg.loop.target for d in trained):
                break
            if r > 0 and not all(map(task.drawable, task.next_difficulties(trained, cfg.task.step))):
                ui.line(f"stopped: task {task.name} has no harder difficulty after {max(trained)}")
                break
            metrics = run_round(cfg, run, task, committee, r, trained, ui, history)
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


def last_trained(history: list[dict[str, Any]]) -> int:
    return max(m["round"] for m in history if trains(m))


def run_round(cfg: Config, run: RunDir, task: Task, committee: Committee, r: int, trained: list[Difficulty],
              ui: UI, history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One round, recorded atomically with the guard's decision; `trained` grows by the round's
    difficulties when the guard commits it."""
    history = history or []
    seconds: dict[str, float] = {}
    current, t = "", time.perf_counter()

    def enter(name: str) -> None:
        """Close the running phase (its seconds) and make `name` the phase in flight."""
        nonlocal current, t
        if current:
            seconds[current] = seconds.get(current, 0.0) + time.perf_counter() - t
        current, t = name, time.perf_counter()
        run.set_progress(r, name)

    # plan (label-free)
    enter("plan")
    chosen = Plan(task.base_difficulties(cfg.task.base), cfg.loop.seed_problems) if r == 0 else \
        plan(task, cfg, committee, trained, r, history)
    difficulties = chosen.difficulties

    # act: problems with hidden truth; round 0 uses truth as labels (seed data), later rounds the committee
    enter("act")
    prompts, truths, diffs, proposer = draw(task, cfg, r, difficulties, chosen.counts())
    n = len(prompts)
    if r == 0:
        outputs, finished, confidence = [[] for _ in prompts], [[] for _ in prompts], [[] for _ in prompts]
    else:
        with ui.phase("label", n * committee.size * cfg.committee.samples) as advance:
            outputs, finished, confidence = committee.generate(
                prompts, advance, labelling(cfg, stream_seed(cfg.seed, "sample", r)))

    # verify: filters see prompts and outputs, never truth
    enter("verify")
    filtered = None  # the invariant filter's pass rate, where it ran
    if r == 0:
        labels, answers, kept, reasons, shares = truths, truths, [True] * n, [None] * n, [None] * n
    else:
        v = filter_outputs(cfg, task, prompts, outputs, finished, confidence, chosen.strict, committee)
        labels, answers, kept, reasons, shares = v.labels, v.labels, v.kept, v.drop_reason, v.vote_share
        filtered = v.invariant
    corrupted = [False] * n
    if r == cfg.noise.round:
        labels, corrupted = corrupt(labels, kept, cfg.noise.share, cfg.noise.kind,
                                    np.random.default_rng(stream_seed(cfg.seed, "noise", r)))
    n_kept = sum(kept)
    drop_reasons = dict(Counter(x for x in reasons if x is not None))
    precision, recall, label_correct = (None, None, [True] * n) if r == 0 else \
        label_quality(task, prompts, labels, kept, answers, truths)  # truth: metrics (and the oracle guard)

    # guard, before training: the labels' signals (label-free)
    decision, why = "commit", None
    signals: dict[str, Any] = {}
    if r > 0:
        enter("guard")
        signals = label_signals(task, prompts, outputs, finished, confidence, labels, kept, cfg.committee.samples)
        if filtered is None:
            signals["invariant"] = invariant(committee, task, prompts, labels, kept, cfg.guard.probe_problems,
                                             stream_seed(cfg.seed, "invariant", r))
        else:  # the invariant filter asked about every label already: what share survived it
            signals["invariant_filter"] = round(filtered, 4)
        why = guard.before_training(cfg, signals, n_kept, precision if cfg.guard.mode == "oracle" else None)
        if why or (not n_kept and cfg.guard.mode == "off"):
            decision = "hold"

    # learn
    kept_labels = [lab if k else None for lab, k in zip(labels, kept)]
    steps, losses, accuracy, member_accuracy, audit_table, rejected = 0, [], {}, [], None, {}
    committed_frontier = next((m["frontier"] for m in reversed(history) if trains(m)), None)
    solved = committed_frontier  # the run's models' frontier, unless this round commits new ones
    if decision == "commit":
        probes = drift_probes(task, trained, cfg.guard.drift_levels, cfg.guard.probe_problems, cfg.seed) if r else []
        if probes:  # the answers training may change, before it (where the task verifies, the ones it accepts)
            before = votes(committee, probes)
            learned = task.verify_many(probes, before) if task.has_verifier() else None
        enter("learn")
        committee.add(r, diffs, prompts, kept_labels)
        steps, warmup, decay, peak = schedule(cfg.train, r)
        with ui.phase("train", steps * committee.size) as advance:
            losses = committee.train(r, steps, warmup, decay, peak, advance)

        # check: the audit (truth, metrics only), then the guard on the trained model (label-free)
        enter("check")
        held = held_out(task, cfg, r, trained + difficulties)
        with ui.phase("audit", committee.size * sum(len(b.prompts) for b in held)) as advance:
            accuracy, member_accuracy, solved, audit_table = check(committee, task, held, r, advance)
        if r > 0:
            enter("guard")
            signals["drift"] = drift(before, votes(committee, probes), learned) if probes else None
            signals["invariant_after"] = self_invariant(committee, task, difficulties, cfg.guard.probe_problems,
                                                        stream_seed(cfg.seed, "invariant-after", r))
            why = guard.after_training(cfg, signals)
            if why:  # the run's models stay the last committed round's; the discarded model's audit is kept apart
                decision = "rollback"
                rejected = {"rejected_audit": accuracy, "rejected_frontier": solved}
                accuracy, member_accuracy = {}, []
                solved = committed_frontier
                committee.load(run.verified_checkpoint(last_trained(history)))
                committee.drop(r)

    # commit the record (a held or rolled-back round keeps its candidates and audit, never its weights)
    enter("commit")  # closes the last phase; the commit itself is not timed
    attempt = 1 + failed_attempts(history) if r else 1
    stop_reason = None
    if decision != "commit" and (cfg.guard.mode == "off" or attempt >= cfg.guard.attempts):
        decision = "stop"
        where = " ".join(map(_difficulty, difficulties))
        stop_reason = (f"no reliable labels at {where} after {attempt} attempt{'s' * (attempt > 1)}: {why[1]}"
                       if why else
                       f"round {r} kept none of its {n} labels at difficulty {where} "
                       f"({', '.join(f'{k} {v}' for k, v in sorted(drop_reasons.items()))}); nothing to train on")
    elif decision == "commit":
        trained += difficulties
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
        "decision": decision,
    }
    if r:
        metrics.update(attempt=attempt, signals=signals,
                       plan={"problems": chosen.counts(), "strict": chosen.strict})
    if why:
        metrics.update(signal=why[0], reason=why[1], **rejected)
    if stop_reason:
        metrics["stop_reason"] = stop_reason
    if committee.size > 1 and member_accuracy:
        metrics["audit_members"] = member_accuracy
    if chosen.probes:
        metrics["self_consistency"] = chosen.probes
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
        "label_correct": label_correct,
    }, schema=CANDIDATE_SCHEMA)
    tables = {"candidates": candidates, **({"audit": audit_table} if audit_table is not None else {})}
    run.commit_round(r, tables, committee.save if decision == "commit" else lambda folder: [], metrics)
    return metrics


def _difficulty(d) -> str:
    return "(" + difficulty_key(d) + (",)" if len(d) == 1 else ")")


def round_line(m: dict[str, Any]) -> str:
    """`round 3 | difficulty (9,) | kept 5000/5000 | label_precision 0.998 | audit 9:1.00 10:0.42 | 41 s`, and
    the guard's decision when it did not commit (`| rollback (drift)`); a held round has no audit (`-`)."""
    diffs = " ".join(map(_difficulty, m["difficulties"]))
    precision = "n/a" if m["label_precision"] is None else f"{m['label_precision']:.3f}"
    audit = " ".join(f"{k}:{v:.2f}" for k, v in m["audit"].items())
    f = m["frontier"]
    front = "none" if f is None or f == [] else f if isinstance(f, int) else " ".join(map(_difficulty, f))
    decision = m.get("decision", "commit")
    guard = "" if decision == "commit" else f" | {decision}" + (f" ({m['signal']})" if m.get("signal") else "")
    return (f"round {m['round']} | difficulty {diffs} | kept {m['n_kept']}/{m['n_generated']} | "
            f"label_precision {precision} | audit {audit or '-'} | frontier {front} | "
            f"{sum(m['seconds'].values()):.0f} s{guard}")
