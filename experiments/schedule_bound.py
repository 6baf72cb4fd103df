"""How fast can any planner push a run's frontier with this learner? Rounds on a schedule of new
difficulties per round, from a run's committed round 0, labelled with the hidden truth (the best labels
a planner could hope for) or by the model itself.

    python experiments/schedule_bound.py runs/quick 1 1 1 1 1 1 1 1 1   # the fixed planner's schedule
    python experiments/schedule_bound.py runs/quick 3 3 3                # three new difficulties a round
    python experiments/schedule_bound.py runs/quick 2 2 2 2 2 --labels self --strict further --phases 2

Each number is a round: how many new difficulties (one step apart each) it trains on, with the source
run's settings (loop.problems per difficulty, train.round_steps and its schedule, the corpus mixture);
after it, the loop's own audit. `--labels self`: the model labels the round's problems greedily and the
run's filters keep what they keep, strictly (the confidence filter at loop.strict_confidence) on the
steps after the round's first (`--strict all`: on every step, as the controller labels; `none`: on
none); `--phases k` labels the round's problems again k - 1 times, evenly spaced through its training,
with the model in training (what it has learned of the round since is in its labels); `--grow` trains
one phase per new difficulty, phase k on the problems of the first k, labelled again. Prints each
round's audit above the base, frontier, the kept labels of each labelling and their precision, and
seconds of training (`train`; with self labels `train+label`, the labelling inside the round included).
One member of the tiny learner, a task of one axis.

A planner chooses only the difficulties, the problems (for copy, at one length no string is harder to
draw than another) and the filters; a schedule that cannot reach a frontier in some number of rounds
with true labels bounds every planner that trains `train.round_steps` a round.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from selfimprove.audit import check, held_out, label_quality
from selfimprove.committee import Committee, labelling
from selfimprove.config import load_config
from selfimprove.filters import filter_outputs
from selfimprove.loop import draw, schedule
from selfimprove.rundir import RunDir
from selfimprove.tasks import stream_seed


def self_labels(cfg, task, committee, r, prompts, diffs, first, strict) -> tuple[list[str], list[bool]]:
    """The committee's vote on each prompt and whether the filters keep it: the first step's difficulties with
    the run's filters, the further ones strictly (`strict` = further; all: every step strictly; none: none)."""
    outputs = committee.generate(prompts, sampling=labelling(cfg, stream_seed(cfg.seed, "sample", r)))
    labels, kept = [""] * len(prompts), [False] * len(prompts)
    for is_first in (True, False):
        rows = [i for i, d in enumerate(diffs) if (tuple(d) in first) == is_first]
        hard = strict == "all" or (strict == "further" and not is_first)
        v = filter_outputs(cfg, task, [prompts[i] for i in rows], *([x[i] for i in rows] for x in outputs),
                           strict=hard, committee=committee)
        for i, lab, k in zip(rows, v.labels, v.kept):
            labels[i], kept[i] = lab, k
    return labels, kept


def positive(text: str) -> int:
    if int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return int(text)


def round_batches(args, cfg, task, committee, r, prompts, truths, diffs, difficulties, first, steps, notes
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Round r's batches (as Member.train draws them); with self labels, the round's labels renewed at the
    start of every phase (noted in `notes`). The tiny model has no dropout: labelling mid-training changes
    nothing but the labels."""
    member = committee.members[0]
    rng = np.random.default_rng([member.seed, r])
    phases = 1 if args.labels == "truth" else len(difficulties) if args.grow else args.phases
    for p in range(phases):
        rows = [i for i, d in enumerate(diffs) if not args.grow or tuple(d) in difficulties[: p + 1]]
        ps, ds = [prompts[i] for i in rows], [diffs[i] for i in rows]
        labels = [truths[i] for i in rows]
        if args.labels == "self":
            votes, kept = self_labels(cfg, task, committee, r, ps, ds, first, args.strict)
            if not any(kept):
                raise SystemExit(f"round {r}, phase {p + 1}: the filters kept no label; nothing to train on")
            precision = label_quality(task, ps, votes, kept, votes, labels)[0]
            notes.append(f"{sum(kept)}/{len(kept)} at {precision:.4f}")
            labels = [lab if k else None for lab, k in zip(votes, kept)]
        member.corpus.drop(r)
        committee.add(r, ds, ps, labels)
        stream = member.corpus.batches(r, cfg.loop.data, cfg.train.batch_size, rng, cfg.train.anchor)
        for _ in range((p + 1) * steps // phases - p * steps // phases):
            yield next(stream)


def main() -> None:
    parser = argparse.ArgumentParser(description="How fast can any planner push a run's frontier with this "
                                     "learner? Rounds on a schedule of new difficulties, true or self labels.")
    parser.add_argument("source", type=Path, help="a run (one member) that committed round 0")
    parser.add_argument("schedule", type=int, nargs="+", help="new difficulties of each round")
    parser.add_argument("--labels", choices=["truth", "self"], default="truth")
    parser.add_argument("--strict", choices=["further", "all", "none"], default="further")
    parser.add_argument("--strict-confidence", type=float, help="loop.strict_confidence (default: the run's)")
    parser.add_argument("--phases", type=positive, default=1, help="self labels: label the round's problems this "
                        "many times, evenly spaced through its training")
    parser.add_argument("--grow", action="store_true", help="self labels: one phase per new difficulty; phase k "
                        "labels (again) the problems of the first k")
    args = parser.parse_args()
    if args.labels == "truth" and (args.phases > 1 or args.grow or args.strict != "further"
                                   or args.strict_confidence is not None):
        parser.error("--phases, --grow, --strict and --strict-confidence need --labels self")
    cfg = load_config(str(args.source / "config.toml"))
    if args.strict_confidence is not None:
        cfg.loop.strict_confidence = args.strict_confidence
    if cfg.committee.size != 1:
        raise SystemExit(f"{args.source} has a committee of {cfg.committee.size}; this script trains one member")
    if cfg.learner.kind != "tiny":  # labelling mid-round leaves the model in eval mode (the tiny one: no dropout)
        raise SystemExit(f"{args.source} trains a {cfg.learner.kind!r} learner; this script trains the tiny one")
    torch.set_num_threads(1)
    task, run = cfg.task.build(), RunDir.open(args.source)
    if len(task.axes) != 1:
        raise SystemExit(f"task {task.name!r} has {len(task.axes)} axes; this script schedules tasks of one")
    committee = Committee(cfg, task)
    member = committee.members[0]
    data = run.candidates(0).select(["difficulty", "prompt", "label"]).to_pydict()
    committee.add(0, data["difficulty"], data["prompt"], data["label"])
    committee.load(run.verified_checkpoint(0))
    trained = sorted({tuple(d) for d in data["difficulty"]})
    total = 0.0
    for r, n in enumerate(args.schedule, start=1):
        first = task.next_difficulties(trained, cfg.task.step)
        difficulties = list(first)
        for _ in range(n - 1):
            difficulties += task.next_difficulties(trained + difficulties, cfg.task.step)
        prompts, truths, diffs, _ = draw(task, cfg, r, difficulties, cfg.loop.problems)
        steps, warmup, decay, peak = schedule(cfg.train, r)
        notes: list[str] = []
        t = time.perf_counter()
        rounds = round_batches(args, cfg, task, committee, r, prompts, truths, diffs, difficulties, first, steps,
                               notes)
        member.learner.train(rounds, steps, warmup, decay, peak=peak)
        learn = time.perf_counter() - t
        total += learn
        trained += difficulties
        accuracy, _, solved, _ = check(committee, task, held_out(task, cfg, r, trained), r)
        audit = " ".join(f"{k}:{v:.2f}" for k, v in accuracy.items() if int(k) > cfg.task.base)
        kept = f" | kept {' -> '.join(notes)}" if notes else ""
        timed = "train+label" if notes else "train"
        print(f"round {r} | difficulty {' '.join(str(d[0]) for d in difficulties)} | audit {audit} | "
              f"frontier {solved}{kept} | {timed} {learn:.0f} s | total {total:.0f} s", flush=True)
    committee.close()


if __name__ == "__main__":
    main()
