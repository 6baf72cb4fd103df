"""Template task: sort the digits of a random string. `n` digits, then `=`; the answer is the digits
in increasing order: `3707=` -> `0377`.

To add a task, copy this file to `tasks/<your_task>.py` and `tests/test_task_template.py` to
`tests/test_task_<your_task>.py`, rename, end the module with `register(YourTask())` (this template
registers itself only when imported, which tasks/__init__.py does not do) and add the module to the
import line in tasks/__init__.py. The checks every task must pass then run on it in tests/test_tasks.py.

    import selfimprove.tasks._template
    from selfimprove.tasks import get_task
    print(get_task("sort_digits").sample((4,), range(3), seed=0))
"""

from __future__ import annotations

import numpy as np

from selfimprove.tasks import register
from selfimprove.tasks._base import Batch, Task, uniform_ints
from selfimprove.tasks.arithmetic import rows_to_str


class SortDigits(Task):
    name = "sort_digits"
    axes = ("digits",)  # one name per difficulty axis; a difficulty is a tuple of positive ints
    alphabet = "0123456789="  # every character of prompts and answers
    description = "sort n random digits"

    def sample(self, difficulty, index, seed):
        """Item i must be a pure function of (seed, difficulty, i): draw from `uniform_ints` or
        `hash_uniform`, never from a global or shared generator, and work on whole arrays."""
        self.validate_difficulty(difficulty)
        (n,) = difficulty
        index = np.asarray(index, dtype=np.int64)
        digits = uniform_ints(seed, difficulty, index, n, 0, 10) + ord("0")
        prompts = rows_to_str(np.concatenate([digits, np.full((len(index), 1), ord("="))], axis=1))
        return Batch(difficulty, prompts, rows_to_str(np.sort(digits, axis=1)))

    def answer_length(self, prompt):
        """Exact here; return the least plausible length if it varies, or None if unknown (and then
        override `max_answer_length`, the generation budget)."""
        return len(prompt) - 1

    def verify(self, prompt, answer):
        """Optional: a check that reads the prompt and the answer, never the truth."""
        return sorted(answer) == sorted(prompt[:-1]) and list(answer) == sorted(answer)


register(SortDigits())
