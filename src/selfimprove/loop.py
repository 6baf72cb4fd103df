"""The self-improvement loop, one round at a time: plan -> act -> verify -> learn -> check -> commit.

    from selfimprove.config import load_config, dump_toml
    from selfimprove.rundir import RunDir
    cfg = load_config("quick", ["loop.rounds=2"])
    run_loop(cfg, RunDir.create(Path("runs/demo"), dump_toml(cfg), cfg.seed))

Round 0 trains on seed data (truth) at the base difficulties. Every later round samples problems one
step harder, labels them with the model, filters the labels without truth, trains on the mixture of
new and earlier data, and audits fresh held-out problems against truth (metrics only).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from selfimprove.config import Config
from selfimprove.corpus import Corpus, make_level
from selfimprove.filters import apply_filters
from selfimprove.learner import Learner
from selfimprove.rundir import RunDir
from selfimprove.tasks import Difficulty, Task, get_task


class UI(Protocol):
    def phase(self, name: str, total: int) -> AbstractContextManager[Any]: ...  # yields advance(n)
    def line(self, text: str) -> None: ...


class QuietUI:
    def phase(self, name: str, total: int):
        return nullcontext(lambda n=1: None)

    def line(self, text: str) -> None:
        pass


def stream_seed(seed: int, *parts: object) -> int:
    """A seed for one named stream of problems, independent of every other stream."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def key(d: Difficulty) -> str:
    return ",".join(map(str, d))


# --- the phases ------------------------------------------------------------------------------------


def plan(task: Task, cfg: Config, trained: list[Difficulty]) -> list[Difficulty]:
    """Fixed step: one step harder than the hardest difficulty trained so far. Label-free."""
    return task.next_difficulties(trained, cfg.task.step)


def label(learner: Learner, task: Task, prompts: list[str], cfg: Config, advance
          ) -> tuple[list[str], list[bool], list[float]]:
    """Greedy answers in chunks (for the progress bar): texts, EOS produced, confidence."""
    budgets = [task.max_answer_length(p) for p in prompts]
    texts, finished, confidence = [], [], []
    step = cfg.loop.label_batch
    for i in range(0, len(prompts), step):
        t, f, c = learner.generate(prompts[i : i + step], budgets[i : i + step], batch_size=step)
        texts += t
        finished += f
        confidence += c
        advance(len(t))
    return texts, finished, confidence


def check(learner: Learner, task: Task, cfg: Config, r: int, trained: list[Difficulty], ui: UI):
    """Accuracy on fresh held-out problems per difficulty. Truth is read here for metrics only."""
    difficulties = task.audit_difficulties(trained, cfg.audit.below, cfg.audit.above)
    rows: dict[str, list] = {"round": [], "difficulty": [], "prompt": [], "output": [], "truth": [], "correct": []}
    accuracy = {}
    with ui.phase("audit", cfg.audit.problems * len(difficulties)) as advance:
        for d in difficulties:
            batch = task.sample(d, range(cfg.audit.problems), stream_seed(cfg.seed, "audit", r))
            outputs, _, _ = label(learner, task, batch.prompts, cfg, advance)
            correct = [o == t for o, t in zip(outputs, batch.truths)]
            accuracy[key(d)] = float(np.mean(correct))
            n = len(correct)
            rows["round"] += [r] * n
            rows["difficulty"] += [list(d)] * n
            rows["prompt"] += batch.prompts
            rows["output"] += outputs
            rows["truth"] += list(batch.truths)
            rows["correct"] += correct
    solved = [d for d in difficulties if accuracy[key(d)] >= 0.99]
    frontier = max(solved)[0] if solved else None
    return accuracy, frontier, pa.table(rows, schema=AUDIT_SCHEMA)


CANDIDATE_SCHEMA = pa.schema([
    ("round", pa.int32()), ("difficulty", pa.list_(pa.int32())), ("prompt", pa.string()),
    ("outputs", pa.list_(pa.string())), ("confidence", pa.list_(pa.float32())), ("label", pa.string()),
    ("kept", pa.bool_()),
    ("drop_reason", pa.string()), ("vote_share", pa.float64()), ("truth", pa.string()),
    ("label_correct", pa.bool_()),
])
AUDIT_SCHEMA = pa.schema([
    ("round", pa.int32()), ("difficulty", pa.list_(pa.int32())), ("prompt", pa.string()),
    ("output", pa.string()), ("truth", pa.string()), ("correct", pa.bool_()),
])


def add_round(corpus: Corpus, task: Task, learner: Learner, r: int, difficulties: list[list[int]],
              prompts: list[str], labels: list[str | None]) -> None:
    """Add the kept examples (label not None) of round r to the corpus, one level per difficulty."""
    by_difficulty: dict[Difficulty, tuple[list[str], list[str]]] = {}
    for d, p, lab in zip(difficulties, prompts, labels):
        if lab is not None:
            ps, ls = by_difficulty.setdefault(tuple(d), ([], []))
            ps.append(p)
            ls.append(lab)
    weights = {d: task.seed_weight(d) if r == 0 else 1.0 for d in by_difficulty}
    scale = len(weights) / sum(weights.values()) if r == 0 else 1.0
    for d, (ps, ls) in sorted(by_difficulty.items()):
        corpus.add(make_level(learner.vocab, d, r, ps, ls, weights[d] * scale))


def _rebuild_corpus(run: RunDir, task: Task, learner: Learner, rounds: Iterable[int]
                    ) -> tuple[Corpus, list[Difficulty]]:
    """The corpus and trained difficulties of committed rounds, read back from candidates.parquet."""
    corpus, trained = Corpus(), []
    for r in rounds:
        data = run.candidates(r).select(["difficulty", "prompt", "label"]).to_pydict()
        add_round(corpus, task, learner, r, data["difficulty"], data["prompt"], data["label"])
        trained += sorted({tuple(d) for d in data["difficulty"]})
    return corpus, trained


# --- the loop --------------------------------------------------------------------------------------


def run_loop(cfg: Config, run: RunDir, ui: UI | None = None) -> list[dict[str, Any]]:
    """Run (or resume) rounds until `loop.rounds` or `loop.target`; returns the metrics of every round."""
    ui = ui or QuietUI()
    task = get_task(cfg.task.name)
    learner = Learner.create(task.alphabet, cfg.model, cfg.train, cfg.seed, cfg.device)
    done = run.committed()
    corpus, trained = _rebuild_corpus(run, task, learner, done)
    if done:
        learner.load(run.verified_checkpoint(done[-1]) / "learner-0")
    history = run.metrics()

    for r in range(len(done), cfg.loop.rounds + 1):
        if cfg.loop.target is not None and trained and max(trained)[0] >= cfg.loop.target:
            break
        seconds: dict[str, float] = {}
        t = time.perf_counter()

        # plan
        difficulties = task.base_difficulties(cfg.task.base) if r == 0 else plan(task, cfg, trained)
        seconds["plan"], t = time.perf_counter() - t, time.perf_counter()

        # act: problems with hidden truth; round 0 uses truth as labels (seed data), later rounds the model
        sample = task.sample_seed if r == 0 else task.sample
        batches = [sample(d, range(cfg.loop.seed_problems if r == 0 else cfg.loop.problems),
                               stream_seed(cfg.seed, "train", r)) for d in difficulties]
        prompts = [p for b in batches for p in b.prompts]
        truths = [t_ for b in batches for t_ in b.truths]
        diffs = [list(b.difficulty) for b in batches for _ in b.prompts]
        if r == 0:
            outputs, finished, confidence = [[] for _ in prompts], [[] for _ in prompts], [[] for _ in prompts]
        else:
            with ui.phase("label", len(prompts)) as advance:
                texts, dones, confs = label(learner, task, prompts, cfg, advance)
            outputs, finished, confidence = [[x] for x in texts], [[x] for x in dones], [[x] for x in confs]
        seconds["act"], t = time.perf_counter() - t, time.perf_counter()

        # verify: filters see prompts and outputs, never truth
        if r == 0:
            labels, kept, reasons, shares = truths, [True] * len(prompts), [None] * len(prompts), [None] * len(prompts)
        else:
            v = apply_filters(cfg.loop.filters, task, prompts, outputs, finished, confidence,
                              cfg.loop.min_confidence)
            labels, kept, reasons, shares = v.labels, v.kept, v.drop_reason, v.vote_share
        seconds["verify"], t = time.perf_counter() - t, time.perf_counter()

        # learn
        kept_labels = [lab if k else None for lab, k in zip(labels, kept)]
        add_round(corpus, task, learner, r, diffs, prompts, kept_labels)
        trained += difficulties
        steps = cfg.train.steps if r == 0 else cfg.train.round_steps
        warmup = int(cfg.train.warmup * steps) if r == 0 else 0
        decay = max(1, int((cfg.train.decay if r == 0 else cfg.train.round_decay) * steps))
        rng = np.random.default_rng([cfg.seed, r])
        with ui.phase("train", steps) as advance:
            losses = learner.train(corpus.batches(r, cfg.loop.data, cfg.train.batch_size, rng), steps, warmup, decay,
                                   on_step=lambda s, loss: advance(1))
        seconds["learn"], t = time.perf_counter() - t, time.perf_counter()

        # check
        accuracy, frontier, audit_table = check(learner, task, cfg, r, trained, ui)
        seconds["check"] = time.perf_counter() - t

        # commit
        correct = [lab == tr if k else None for lab, tr, k in zip(labels, truths, kept)]
        n_kept = sum(kept)
        metrics = {
            "round": r,
            "difficulties": [list(d) for d in difficulties],
            "n_generated": len(prompts),
            "n_kept": n_kept,
            "drop_reasons": dict(Counter(x for x in reasons if x is not None)),
            "label_precision": sum(c for c in correct if c) / n_kept if n_kept else None,
            "audit": accuracy,
            "frontier": frontier,
            "train_steps": steps,
            "train_loss": float(np.mean(losses[-max(1, steps // 10):])),
            "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "decision": "commit",
        }
        candidates = pa.table({
            "round": [r] * len(prompts), "difficulty": diffs, "prompt": prompts, "outputs": outputs,
            "confidence": confidence,
            "label": kept_labels, "kept": kept,
            "drop_reason": reasons, "vote_share": shares, "truth": truths, "label_correct": correct,
        }, schema=CANDIDATE_SCHEMA)
        run.commit_round(r, {"candidates": candidates, "audit": audit_table},
                         lambda folder: learner.save(folder / "learner-0"), metrics)
        history.append(metrics)
        ui.line(round_line(metrics))

    run.set_status("finished")
    return history


def round_line(m: dict[str, Any]) -> str:
    """`round 3 | difficulty (9,) | kept 5000/5000 | label_precision 0.998 | audit 9:1.00 10:0.42 | 41 s`"""
    diffs = " ".join("(" + ",".join(map(str, d)) + (",)" if len(d) == 1 else ")") for d in m["difficulties"])
    precision = "n/a" if m["label_precision"] is None else f"{m['label_precision']:.3f}"
    audit = " ".join(f"{k}:{v:.2f}" for k, v in m["audit"].items())
    frontier = "none" if m["frontier"] is None else m["frontier"]
    return (f"round {m['round']} | difficulty {diffs} | kept {m['n_kept']}/{m['n_generated']} | "
            f"label_precision {precision} | audit {audit} | frontier {frontier} | "
            f"{sum(m['seconds'].values()):.0f} s")
