"""Multiplication in the paper's chain-of-thought format; difficulty (a_digits, b_digits).

Every number is written least significant digit first. The answer lists, for each digit b_i of the
second operand, the partial product b_i * a * 10^i padded with zeros to i + len(a) + 1 digits; from
the second partial product on, each one is preceded by `+`, and (except after the last one) followed
by the running sum in parentheses, padded to the same width; then `=` and the product padded to
len(a) + len(b) digits. 1234 * 56:

    4321*65=40470+007160=401960

Every part has a fixed width, so the answer's length follows from the operand lengths alone
(`answer_length` is exact). The planner follows the paper's schedule: after the square 1..n x 1..n,
the rounds take (1,n+1)&(n+1,1), (2,n+1)&(n+1,2), ..., (n,n+1)&(n+1,n), then (n+1,n+1) alone.

    from selfimprove.tasks import get_task
    task = get_task("multiply")
    print(task.sample((4, 2), range(2), seed=0))
    print(task.next_difficulties(task.base_difficulties(5)))  # [(1, 6), (6, 1)]
"""

from __future__ import annotations

import numpy as np

from selfimprove.tasks import register
from selfimprove.tasks._base import Batch, Task
from selfimprove.tasks.arithmetic import add_digits, random_numbers, rows_to_str

_ZERO = ord("0")


def times_digit(a: np.ndarray, d: np.ndarray) -> np.ndarray:
    """[N, n] little-endian digits times one digit per row [N] -> [N, n + 1]."""
    out = np.empty((a.shape[0], a.shape[1] + 1), dtype=np.int64)
    carry = np.zeros(a.shape[0], dtype=np.int64)
    for i in range(a.shape[1]):
        s = a[:, i] * d + carry
        out[:, i], carry = s % 10, s // 10
    out[:, -1] = carry
    return out


def _chars(*parts) -> np.ndarray:
    """Digit arrays and single characters -> one [N, L] ASCII matrix (N taken from the arrays)."""
    rows = next(p.shape[0] for p in parts if isinstance(p, np.ndarray))
    return np.concatenate([p + _ZERO if isinstance(p, np.ndarray) else np.full((rows, 1), ord(p)) for p in parts],
                          axis=1)


class Multiply(Task):
    name = "multiply"
    axes = ("a_digits", "b_digits")
    alphabet = "0123456789*+()="
    description = "a_digits x b_digits, reversed operands, partial products and running sums, reversed product"

    def sample(self, difficulty, index, seed):
        self.validate_difficulty(difficulty)
        la, lb = difficulty
        a, b = random_numbers(seed, difficulty, np.asarray(index, dtype=np.int64), [la, lb])
        rows = len(a)
        answer: list = []
        total = np.zeros((rows, la), dtype=np.int64)  # running sum, i + la digits before step i
        for i in range(lb):
            partial = np.concatenate([np.zeros((rows, i), dtype=np.int64), times_digit(a, b[:, i])], axis=1)
            # The running sum stays below a * 10^(i+1): it fits i + la + 1 digits, the carry is 0.
            total = add_digits(np.pad(total, ((0, 0), (0, 1))), partial)[:, :-1]
            answer += [partial] if i == 0 else ["+", partial]
            if 0 < i < lb - 1:
                answer += ["(", total, ")"]
        prompts = rows_to_str(_chars(a, "*", b, "="))
        return Batch(difficulty, prompts, rows_to_str(_chars(*answer, "=", total)))

    def next_difficulties(self, trained, step=1):
        """The paper's schedule (`step` is not used: a round is always one pair or the corner)."""
        done = set(trained)
        n = 0
        while all((i, j) in done for i in range(1, n + 2) for j in range(1, n + 2)):
            n += 1
        rounds = [[(k, n + 1), (n + 1, k)] for k in range(1, n + 1)] + [[(n + 1, n + 1)]]
        return next([d for d in pair if d not in done] for pair in rounds if not set(pair) <= done)

    def answer_length(self, prompt):
        a, b = prompt.removesuffix("=").split("*")
        la, lb = len(a), len(b)
        partials = sum(i + la + 1 for i in range(lb)) + (lb - 1)  # with a `+` before all but the first
        sums = sum(i + la + 1 + 2 for i in range(1, lb - 1))  # running sums in parentheses
        return partials + sums + 1 + la + lb


register(Multiply())
