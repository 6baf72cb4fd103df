"""A committee: K learners trained from different seeds on the same data; they label and vote.

    committee = Committee(cfg, task)            # cfg.committee.size members, cfg.committee.workers processes
    committee.add(0, difficulties, prompts, labels)
    losses = committee.train(0, steps=100, warmup=10, decay=20, peak=1e-3)
    outputs, finished, confidence = committee.generate(prompts)   # [prompt][member]
    committee.close()

Member k has seed `cfg.seed + 1000 * k`, so a committee of 5 contains the committee of 3 and the single
learner of the same config (voter sweeps compare nested committees). With `workers = 1` the members
run one after another in this process; with more, each worker process holds some of the members and
the workers run at the same time (members of one worker run one after another). A member that fails
or whose worker dies raises MemberError naming its seed; the loop then stops before committing.

What a member trains is built by a `LearnerFactory` (default `build_learner`: the tiny model or a
Hugging Face one, as `learner.kind` says). Anything with the Learner's `vocab` (its `encode_examples`),
`train`, `generate`, `save` and `load` will do: the tests drive
the whole loop with fake learners whose answers are right on a known share. With worker processes the
factory must be importable by name (a module-level function), as the workers receive it by pickle.
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfimprove.config import Config
from selfimprove.corpus import Corpus, make_level
from selfimprove.learner import Learner
from selfimprove.tasks import Difficulty, Task

Advance = Callable[[int], None]
LearnerFactory = Callable[[Config, Task, int], Any]  # (config, task, seed) -> a learner


def build_learner(cfg: Config, task: Task, seed: int) -> Any:
    """The learner `learner.kind` names: the tiny model, or a Hugging Face causal LM (hf.py)."""
    if cfg.learner.kind == "hf":
        from selfimprove.hf import HFLearner

        return HFLearner.create(cfg, task, seed)
    return Learner.create(task.alphabet, cfg.model, cfg.train, seed, cfg.device)


@dataclass(frozen=True)
class Sampling:
    """How members answer: `samples` answers each, at `temperature` (0: greedy) and top-p; `seed` picks
    the random streams (the loop passes one per round, so a resumed round draws the same samples)."""

    samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0


GREEDY = Sampling()


def labelling(cfg: Config, seed: int) -> Sampling:
    """How the members label (committee.samples, temperature, top_p), drawing from stream `seed`."""
    c = cfg.committee
    return Sampling(c.samples, c.temperature, c.top_p, seed)


class MemberError(RuntimeError):
    """A committee member failed; nothing of the round in flight is committed."""


def member_seed(cfg: Config, k: int) -> int:
    return cfg.seed + 1000 * k


class Member:
    """One learner and its copy of the corpus."""

    def __init__(self, cfg: Config, k: int, make_learner: LearnerFactory = build_learner):
        self.cfg, self.k, self.seed = cfg, k, member_seed(cfg, k)
        self.task = cfg.task.build()
        self.learner = make_learner(cfg, self.task, self.seed)
        self.corpus = Corpus()

    def add(self, r: int, levels: list[tuple[Difficulty, list[str], list[str], float]], advance: Advance) -> None:
        for d, prompts, labels, weight in levels:
            self.corpus.add(make_level(self.learner.vocab, d, r, prompts, labels, weight))

    def train(self, r: int, steps: int, warmup: int, decay: int, peak: float, advance: Advance) -> list[float]:
        rng = np.random.default_rng([self.seed, r])
        # what else draws at random while training (a Hugging Face model's dropout) draws from this round's own
        # stream, so a resumed round trains exactly as an uninterrupted one
        torch.manual_seed(int(np.random.SeedSequence([self.seed, r]).generate_state(1)[0]))
        batches = self.corpus.batches(r, self.cfg.loop.data, self.cfg.train.batch_size, rng, self.cfg.train.anchor)
        every = max(1, steps // 100)  # report in about 100 chunks (a worker sends each over a pipe)

        def on_step(step: int, loss: float) -> None:
            if (step + 1) % every == 0 or step + 1 == steps:
                advance(step + 1 - step // every * every)

        return self.learner.train(batches, steps, warmup, decay, on_step, peak=peak)

    def generate(self, prompts: list[str], budgets: list[int], sampling: Sampling, advance: Advance
                 ) -> tuple[list[str], list[bool], list[float]]:
        """`sampling.samples` answers per prompt, prompt-major; each chunk of prompts draws from a random
        stream of its own (this member's seed, the call's seed, the chunk)."""
        texts, finished, confidence = [], [], []
        step = self.cfg.loop.label_batch
        for i in range(0, len(prompts), step):
            kwargs = {} if sampling.samples == 1 and sampling.temperature == 0 else {
                "samples": sampling.samples, "temperature": sampling.temperature, "top_p": sampling.top_p,
                "seed": int(np.random.SeedSequence([self.seed, sampling.seed, i]).generate_state(1)[0])}
            t, f, c = self.learner.generate(prompts[i : i + step], budgets[i : i + step], batch_size=step, **kwargs)
            texts += t
            finished += f
            confidence += c
            advance(len(t))
        return texts, finished, confidence

    def drop(self, r: int, advance: Advance) -> None:
        self.corpus.drop(r)

    def save(self, folder: Path, advance: Advance) -> list[Path]:
        return self.learner.save(folder / f"learner-{self.k}")

    def load(self, folder: Path, advance: Advance) -> None:
        self.learner.load(folder / f"learner-{self.k}")


def _worker(conn, cfg_json: str, ks: list[int], threads: int, make_learner: LearnerFactory) -> None:
    """A worker process: holds members `ks` and runs the parent's requests on each, in turn."""
    import torch

    torch.set_num_threads(threads)
    cfg = Config.model_validate_json(cfg_json)
    members = [Member(cfg, k, make_learner) for k in ks]
    progress = lambda n: conn.send(("progress", n))  # noqa: E731
    while (request := conn.recv()) is not None:
        method, args = request
        results = {}
        for m in members:
            try:
                results[m.k] = getattr(m, method)(*args, progress)
            except Exception:
                conn.send(("error", m.k, traceback.format_exc()))
                break
        else:
            conn.send(("done", results))


class Committee:
    def __init__(self, cfg: Config, task: Task, make_learner: LearnerFactory = build_learner):
        self.cfg, self.task, self.size = cfg, task, cfg.committee.size
        self.seeds = [member_seed(cfg, k) for k in range(self.size)]
        n_workers = min(cfg.committee.workers, self.size)
        self.members: list[Member] = []
        self.workers: list[tuple[Any, Any, list[int]]] = []  # (process, pipe, member indices)
        if n_workers == 1:
            self.members = [Member(cfg, k, make_learner) for k in range(self.size)]
            return
        import torch

        ctx = mp.get_context("spawn")  # fork would copy torch's thread pools
        threads = max(1, torch.get_num_threads() // n_workers)  # the workers share this process's threads
        for w in range(n_workers):
            ks = list(range(w, self.size, n_workers))
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, cfg.model_dump_json(), ks, threads, make_learner),
                               daemon=True)
            proc.start()
            child.close()
            self.workers.append((proc, parent, ks))

    def _call(self, method: str, *args: Any, advance: Advance | None = None) -> list[Any]:
        """Run `method` on every member (in parallel across workers); results in member order."""
        advance = advance or (lambda n: None)
        if self.members:
            results = {}
            for m in self.members:
                try:
                    results[m.k] = getattr(m, method)(*args, advance)
                except Exception as e:
                    raise MemberError(f"committee member {m.k} (seed {m.seed}) failed in {method}: "
                                      f"{type(e).__name__}: {e}") from e
            return [results[k] for k in range(self.size)]
        for _, pipe, ks in self.workers:
            self._send(pipe, (method, args), ks)
        results = {}
        for proc, pipe, ks in self.workers:
            while True:
                try:
                    msg = pipe.recv()
                except (EOFError, OSError):
                    proc.join(timeout=5)
                    raise MemberError(f"committee member(s) {ks} (seeds {[self.seeds[k] for k in ks]}) crashed in "
                                      f"{method}: their worker process exited with code {proc.exitcode}") from None
                if msg[0] == "progress":
                    advance(msg[1])
                elif msg[0] == "error":
                    raise MemberError(f"committee member {msg[1]} (seed {self.seeds[msg[1]]}) failed in {method}:\n"
                                      f"{msg[2]}")
                else:
                    results.update(msg[1])
                    break
        return [results[k] for k in range(self.size)]

    def _send(self, pipe, message, ks: list[int]) -> None:
        try:
            pipe.send(message)
        except (BrokenPipeError, OSError):
            raise MemberError(f"committee member(s) {ks} (seeds {[self.seeds[k] for k in ks]}) are gone: their "
                              f"worker process died") from None

    # --- the committee's work -------------------------------------------------------------------

    def add(self, r: int, difficulties: list[list[int]], prompts: list[str], labels: list[str | None]) -> None:
        """Add the kept examples (label not None) of round r, one level per difficulty. Seed levels (round
        0) are weighted by the task's seed distribution, every later level weighs 1."""
        by_difficulty: dict[Difficulty, tuple[list[str], list[str]]] = {}
        for d, p, lab in zip(difficulties, prompts, labels):
            if lab is not None:
                ps, ls = by_difficulty.setdefault(tuple(d), ([], []))
                ps.append(p)
                ls.append(lab)
        task_mix = r == 0 and self.cfg.task.seed_mix == "task"
        weights = {d: self.task.seed_weight(d) if task_mix else 1.0 for d in by_difficulty}
        scale = len(weights) / sum(weights.values()) if weights and r == 0 else 1.0
        levels = [(d, ps, ls, weights[d] * scale) for d, (ps, ls) in sorted(by_difficulty.items())]
        self._call("add", r, levels)

    def train(self, r: int, steps: int, warmup: int, decay: int, peak: float, advance: Advance | None = None
              ) -> list[list[float]]:
        """Every member trains `steps` steps on its corpus at peak lr `peak`; the losses of each member."""
        return self._call("train", r, steps, warmup, decay, peak, advance=advance)

    def generate(self, prompts: list[str], advance: Advance | None = None, sampling: Sampling = GREEDY
                 ) -> tuple[list[list[str]], list[list[bool]], list[list[float]]]:
        """Every member's answers to every prompt, as [prompt][answer] lists: member k's sample s at
        k * samples + s (greedy: one answer per member, in member order)."""
        budgets = [self.task.max_answer_length(p) for p in prompts]
        per_member = self._call("generate", prompts, budgets, sampling, advance=advance)
        n = sampling.samples
        return tuple([[x for member in part for x in member[i * n : (i + 1) * n]] for i in range(len(prompts))]
                     for part in zip(*per_member))  # type: ignore[return-value]

    def drop(self, r: int) -> None:
        """Every member forgets round r's examples (a round the guard rolled back)."""
        self._call("drop", r)

    def save(self, folder: Path) -> list[Path]:
        return [f for files in self._call("save", folder) for f in files]

    def load(self, folder: Path) -> None:
        self._call("load", folder)

    def close(self) -> None:
        for _, pipe, _ in self.workers:
            try:
                pipe.send(None)
            except (BrokenPipeError, OSError):
                pass
        for proc, _, _ in self.workers:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        self.workers = []
