"""The template task's tests: copy this file with `tasks/_template.py` when adding a task."""

from test_tasks import check_task

import selfimprove.tasks._template  # noqa: F401  (registers sort_digits; a real task is imported by tasks/__init__.py)
from selfimprove.tasks import get_task

task = get_task("sort_digits")


def test_template_passes_the_common_checks():
    check_task(task)


def test_template_scores_sorted_digits():
    b = task.sample((9,), range(100), seed=1)
    for prompt, truth in zip(b.prompts, b.truths):
        assert truth == "".join(sorted(prompt.removesuffix("=")))
        assert task.verify(prompt, truth)
    assert task.verify("3707=", "0377") and not task.verify("3707=", "0737") and not task.verify("3707=", "0378")
