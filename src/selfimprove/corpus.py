"""Training data of a run, grouped into levels (one difficulty from one round), and the paper's
mixture: half of training from the newest round, half spread evenly over all earlier levels.

Every batch holds sequences of one length, so no compute is spent on padding. The mixture is kept
across steps: even steps draw from the newest round, odd steps from an earlier level, each drawn with
probability proportional to its weight (1 for a self-improvement level; seed levels share out as
much weight as they are levels, in the proportions the task's seed distribution gives them). With an
explicit anchor share (`train.anchor`), that share of the steps comes from the seed levels instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from selfimprove.tasks import Difficulty


@dataclass
class Level:
    difficulty: Difficulty
    round: int
    buckets: list[tuple[np.ndarray, np.ndarray]]  # per sequence length: tokens [N, L], answer_start [N]
    weight: float = 1.0

    @property
    def size(self) -> int:
        return sum(len(t) for t, _ in self.buckets)


def make_level(vocab: Any, difficulty: Difficulty, round: int, prompts: list[str], labels: list[str],
               weight: float = 1.0) -> Level:
    """A level of training sequences, tokenized by the learner's `vocab` (its `encode_examples`)."""
    return Level(difficulty, round, vocab.encode_examples(prompts, labels), weight)


@dataclass
class Corpus:
    levels: list[Level] = field(default_factory=list)

    def add(self, level: Level) -> None:
        if level.size:
            self.levels.append(level)

    def batches(self, newest_round: int, mode: str, batch_size: int, rng: np.random.Generator,
                anchor: float | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Batches of the mixture. With `anchor` = a share, that share of the steps (spread evenly) draws
        from the seed levels (round 0, true labels) and the rest from the self-labelled levels only."""
        newest = [lv for lv in self.levels if lv.round == newest_round]
        anchored = anchor is not None and newest_round != 0
        seed = [lv for lv in self.levels if lv.round == 0] if anchored else []
        earlier = [] if mode == "replace" else [lv for lv in self.levels if lv.round != newest_round
                                                and not (anchored and lv.round == 0)]
        if not newest:  # the loop never trains a round whose filters kept nothing
            raise ValueError(f"round {newest_round} has no training example to train on")
        step = mixed = 0
        while True:
            if seed and int((step + 1) * anchor) > int(step * anchor):  # type: ignore[operator]
                pool = seed
            else:
                pool = newest if mixed % 2 == 0 or not earlier else earlier
                mixed += 1
            weights = np.array([lv.weight for lv in pool])
            level = pool[rng.choice(len(pool), p=weights / weights.sum())]
            sizes = np.array([len(t) for t, _ in level.buckets], dtype=np.float64)
            tokens, starts = level.buckets[rng.choice(len(sizes), p=sizes / sizes.sum())]
            rows = rng.integers(len(tokens), size=batch_size)
            yield tokens[rows], starts[rows]
            step += 1

    def drop(self, round: int) -> None:
        """Forget round `round`'s levels (a round the guard rolled back)."""
        self.levels = [lv for lv in self.levels if lv.round != round]
