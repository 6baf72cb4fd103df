"""What every task provides, and the counter-based randomness that makes item i a pure
function of (seed, difficulty, i)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Difficulty = tuple[int, ...]


def difficulty_key(d: Difficulty) -> str:
    """How metrics, audits and the console name a difficulty: (3, 4) -> "3,4"."""
    return ",".join(map(str, d))


def stream_seed(seed: int, *parts: object) -> int:
    """A seed for one named stream of problems (training, probe, audit, ... of one round), independent
    of every other stream."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def hash_uniform(seed: int, difficulty: Difficulty, index: np.ndarray, n_cols: int) -> np.ndarray:
    """uint64 array [len(index), n_cols]; entry (r, c) depends only on (seed, difficulty, index[r], c)."""
    key = np.uint64(seed & 0xFFFFFFFFFFFFFFFF)
    for d in difficulty:
        key = _splitmix64(key ^ np.uint64(d & 0xFFFFFFFF))
    idx = np.asarray(index, dtype=np.uint64)[:, None]
    col = np.arange(n_cols, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        return _splitmix64(_splitmix64(key ^ idx) + col * np.uint64(0xD1B54A32D192ED03))


def uniform_ints(seed: int, difficulty: Difficulty, index: np.ndarray, n_cols: int, low, high) -> np.ndarray:
    """Integers in [low, high) (broadcast per column), int64 [len(index), n_cols]."""
    h = hash_uniform(seed, difficulty, index, n_cols) >> np.uint64(11)  # 53 random bits
    u = h.astype(np.float64) / float(1 << 53)
    low, high = np.asarray(low), np.asarray(high)
    return (low + np.floor(u * (high - low))).astype(np.int64)


@dataclass(frozen=True)
class Batch:
    """Problems of one difficulty. `truths` is hidden ground truth: the loop only reads it for seed
    data, anchors and the audit, never for labels of self-generated data."""

    difficulty: Difficulty
    prompts: list[str]
    truths: list[str]


class Task:
    """Subclasses set the class attributes and implement `sample`; the rest has sensible defaults."""

    name: str = ""
    axes: tuple[str, ...] = ()
    alphabet: str = ""  # every character a prompt or answer may contain
    description: str = ""
    runs_code: bool = False  # answers are programs, run in the sandbox (a run checks for it before it starts)

    def sample(self, difficulty: Difficulty, index: Sequence[int] | np.ndarray, seed: int) -> Batch:
        raise NotImplementedError

    def sample_seed(self, difficulty: Difficulty, index: Sequence[int] | np.ndarray, seed: int) -> Batch:
        """Seed data (with truth) at a base difficulty; the same as `sample` unless a task varies it."""
        return self.sample(difficulty, index, seed)

    def seed_weight(self, difficulty: Difficulty) -> float:
        """Relative share of training steps that seed data at this difficulty gets (default: even)."""
        return 1.0

    def example(self) -> Difficulty:
        """A small difficulty to show the task with (`selfimprove tasks`)."""
        return max(self.base_difficulties(3))

    def base_difficulties(self, base: int) -> list[Difficulty]:
        """Every difficulty up to `base` on each axis (the seed data's range)."""
        grids = np.meshgrid(*[np.arange(1, base + 1)] * len(self.axes), indexing="ij")
        return sorted(tuple(int(g) for g in point) for point in zip(*(g.ravel() for g in grids)))

    def harder(self, difficulty: Difficulty, step: int = 1) -> list[Difficulty]:
        """The difficulties one step harder than `difficulty`."""
        return [tuple(d + step for d in difficulty)]

    def next_difficulties(self, trained: list[Difficulty], step: int = 1) -> list[Difficulty]:
        """The fixed-step planner's choice for the next round, from the difficulties trained so far
        (a task with a schedule, such as multiplication's (k,6),(6,k)..., overrides this)."""
        return self.harder(max(trained), step)

    def audit_difficulties(self, trained: list[Difficulty], below: int, above: int) -> list[Difficulty]:
        """Held-out difficulties to audit: on every axis, from `below` under to `above` over the
        hardest value trained on that axis (the grid of them for several axes)."""
        top = [max(d[i] for d in trained) for i in range(len(self.axes))]
        ranges = [np.arange(max(1, h - below), h + above + 1) for h in top]
        grids = np.meshgrid(*ranges, indexing="ij")
        return sorted(tuple(int(g) for g in point) for point in zip(*(g.ravel() for g in grids)))

    def drawable(self, difficulty: Difficulty) -> bool:
        """Whether problems of this difficulty exist (a maze of 30 nodes has no 30-hop path)."""
        return True

    def verify(self, prompt: str, answer: str) -> bool | None:
        """A truth-free check of an answer (the `verify` filter): True if it passes, False if not,
        None when the task has no verifier. It may read the prompt and the answer, never the truth."""
        return None

    def verify_many(self, prompts: list[str], answers: list[str]) -> list[bool | None]:
        """`verify` over many answers at once (a task whose verifier runs programs batches them)."""
        return [self.verify(p, a) for p, a in zip(prompts, answers)]

    def behaviours(self, prompts: list[str], outputs: list[list[str]]) -> list[list[str]] | None:
        """Execution voting: for each prompt, a key per answer saying what the answer does (its outputs on
        fresh probe inputs), so that the vote counts answers that behave alike as one; None (the default)
        votes on the answers' text."""
        return None

    def correct(self, prompts: list[str], answers: list[str], truths: list[str]) -> list[bool]:
        """Whether each answer is right (the audit's and label precision's question; reads truth): equal to
        the truth, unless a task judges answers by what they do."""
        return [a == t for a, t in zip(answers, truths)]

    def invariant(self, prompt: str) -> str | None:
        """A truth-free consistency check (a guard signal): another prompt whose correct answer is the
        same as this one's (a+b and b+a), or None when the task declares none. A model whose answers
        to the two differ is wrong on at least one."""
        return None

    def has_verifier(self) -> bool:
        return type(self).verify is not Task.verify

    def has_invariant(self) -> bool:
        return type(self).invariant is not Task.invariant

    def answer_length(self, prompt: str) -> int | None:
        """Length of a correct answer, computed from the prompt alone (for the `length` filter);
        None when the task cannot tell."""
        return None

    def max_answer_length(self, prompt: str) -> int:
        """Generation budget for one prompt, in characters (EOS excluded)."""
        n = self.answer_length(prompt)
        if n is None:
            raise NotImplementedError(
                f"task {self.name!r} ({type(self).__name__}) cannot tell an answer's length from the prompt: "
                "override `max_answer_length` (the generation budget) or make `answer_length` return an int")
        return n

    def validate_difficulty(self, difficulty: Difficulty) -> None:
        if len(difficulty) != len(self.axes) or any(d < 1 for d in difficulty):
            raise ValueError(
                f"task {self.name!r} takes difficulties of {len(self.axes)} positive int(s) "
                f"({', '.join(self.axes)}), got {difficulty}"
            )
