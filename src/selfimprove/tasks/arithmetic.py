"""Arithmetic tasks in the paper's formats.

reverse_add, difficulty (n,): both operands have n digits; operands and sum are written least
significant digit first, the sum zero-padded to n + 1 digits.  `4321+8765=25011`  (1234 + 5678).
Seed data, as in the paper, draws the two operand lengths independently up to n (the longer one has n
digits), so that the model learns to align digits by their place, not by the sequence length.

forward_add, difficulty (n,): the same problems in normal digit order, the sum unpadded.
`1234+5678=6912`, `512+48=560`. The sum has max(len) or max(len) + 1 digits, so `answer_length` is
the minimum plausible length (what the length filter needs) and `max_answer_length` one more.

    from selfimprove.tasks import get_task
    print(get_task("forward_add").sample((4,), range(2), seed=0))
"""

from __future__ import annotations

import numpy as np

from selfimprove.tasks import register
from selfimprove.tasks._base import Batch, Difficulty, Task, uniform_ints

_ZERO = ord("0")


def rows_to_str(chars: np.ndarray) -> list[str]:
    """uint8 ASCII matrix [N, L] -> list of N strings."""
    chars = np.ascontiguousarray(chars, dtype=np.uint8)
    return [b.decode("ascii") for b in chars.view(f"S{chars.shape[1]}").ravel()]


def random_numbers(seed: int, difficulty: Difficulty, index: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    """One [N, n] digit array per requested length n, least significant digit first, each number
    with exactly n digits (the most significant digit is non-zero unless n == 1)."""
    low = np.concatenate([np.eye(1, n, n - 1, dtype=np.int64)[0] * (n > 1) for n in lengths])
    digits = uniform_ints(seed, difficulty, index, len(low), low, 10)
    return np.split(digits, np.cumsum(lengths)[:-1], axis=1)


def add_digits(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Digit-wise sum of [N, n] little-endian digit arrays -> [N, n + 1]."""
    n = a.shape[1]
    out = np.empty((a.shape[0], n + 1), dtype=np.int64)
    carry = np.zeros(a.shape[0], dtype=np.int64)
    for i in range(n):
        s = a[:, i] + b[:, i] + carry
        out[:, i], carry = s % 10, s // 10
    out[:, n] = carry
    return out


class ReverseAdd(Task):
    name = "reverse_add"
    axes = ("digits",)
    alphabet = "0123456789+="
    description = "n-digit + n-digit, all numbers least significant digit first, sum padded to n+1"
    forward = False  # ForwardAdd: most significant digit first, sum unpadded

    def sample(self, difficulty, index, seed):
        self.validate_difficulty(difficulty)
        (n,) = difficulty
        a, b = random_numbers(seed, difficulty, np.asarray(index, dtype=np.int64), [n, n])
        return Batch(difficulty, *self._format(a, b))

    def sample_seed(self, difficulty, index, seed):
        self.validate_difficulty(difficulty)
        (n,) = difficulty
        index = np.asarray(index, dtype=np.int64)
        a, b = random_numbers(seed, difficulty, index, [n, n])
        # The other operand has m = 1..n digits and is the first or the second one, at random.
        m, swap, top = uniform_ints(seed, (*difficulty, 0), index, 3, [1, 0, 1], [n + 1, 2, 10]).T
        prompts, truths = [""] * len(index), [""] * len(index)
        for length in range(1, n + 1):
            for s in (0, 1):
                rows = np.flatnonzero((m == length) & (swap == s))
                short = b[rows, :length].copy()
                if length > 1:
                    short[:, -1] = top[rows]  # exactly `length` digits
                p, t = self._format(*((short, a[rows]) if s else (a[rows], short)))
                for i, row in enumerate(rows):
                    prompts[row], truths[row] = p[i], t[i]
        return Batch(difficulty, prompts, truths)

    def _format(self, a: np.ndarray, b: np.ndarray) -> tuple[list[str], list[str]]:
        """Digit arrays (least significant first) -> prompts and sums (padded to max(len) + 1, or in
        forward order without the leading zero)."""
        n = max(a.shape[1], b.shape[1])
        rows = len(a)
        pad = lambda x: np.pad(x, ((0, 0), (0, n - x.shape[1])))  # noqa: E731
        total = add_digits(pad(a), pad(b))
        if self.forward:
            a, b, total = a[:, ::-1], b[:, ::-1], total[:, ::-1]
        plus, eq = np.full((rows, 1), ord("+")), np.full((rows, 1), ord("="))
        prompts = rows_to_str(np.concatenate([a + _ZERO, plus, b + _ZERO, eq], axis=1))
        sums = rows_to_str(total + _ZERO)
        if self.forward:  # only the carry digit can be a leading zero: the longer operand's top digit is not
            sums = [s[1:] if s[0] == "0" else s for s in sums]
        return prompts, sums

    def seed_weight(self, difficulty):
        # Operand lengths drawn independently from 1..base, as in the paper: 2n - 1 of the length
        # pairs have n digits in the longer operand.
        return 2.0 * difficulty[0] - 1

    def answer_length(self, prompt):
        a, b = prompt.removesuffix("=").split("+")
        return max(len(a), len(b)) + 1

    def invariant(self, prompt):
        a, b = prompt.removesuffix("=").split("+")
        return f"{b}+{a}="  # addition commutes


class ForwardAdd(ReverseAdd):
    name = "forward_add"
    description = "n-digit + n-digit in normal digit order, sum unpadded"
    forward = True

    def answer_length(self, prompt):
        a, b = prompt.removesuffix("=").split("+")
        return max(len(a), len(b))  # the least: the sum may carry into one more digit

    def max_answer_length(self, prompt):
        return self.answer_length(prompt) + 1


register(ReverseAdd())
register(ForwardAdd())
