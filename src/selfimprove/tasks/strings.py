"""String copy and reverse: `s=` -> `s` (or `s` reversed); difficulty (n,) is the length of s."""

from __future__ import annotations

import numpy as np

from selfimprove.tasks import register
from selfimprove.tasks._base import Batch, Task, uniform_ints
from selfimprove.tasks.arithmetic import rows_to_str

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


class Copy(Task):
    name = "copy"
    axes = ("length",)
    alphabet = _LETTERS + "="
    description = "copy a random lowercase string of length n"
    reverse = False

    def sample(self, difficulty, index, seed):
        self.validate_difficulty(difficulty)
        (n,) = difficulty
        index = np.asarray(index, dtype=np.int64)
        s = uniform_ints(seed, difficulty, index, n, 0, len(_LETTERS)) + ord("a")
        prompts = rows_to_str(np.concatenate([s, np.full((len(index), 1), ord("="))], axis=1))
        truths = rows_to_str(s[:, ::-1] if self.reverse else s)
        return Batch(difficulty, prompts, truths)

    def answer_length(self, prompt):
        return len(prompt) - 1


class Reverse(Copy):
    name = "reverse"
    description = "reverse a random lowercase string of length n"
    reverse = True


register(Copy())
register(Reverse())
