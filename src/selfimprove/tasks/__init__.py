"""Task registry: a task is a family of verifiable problems with a difficulty knob.

    from selfimprove.tasks import get_task
    task = get_task("reverse_add")
    batch = task.sample((7,), range(3), seed=0)
    print(batch.prompts[0], batch.truths[0])

A task is one module that defines a `Task` subclass (see `_base.py` for what it provides) and
ends with `register(MyTask())`.

To add a task, copy _template.py and tests/test_task_template.py (a small working task and its
tests), rename, and add the module to the import line below; tests/test_tasks.py then runs the checks
every task must pass on it too.
"""

from __future__ import annotations

from selfimprove.tasks._base import Batch, Difficulty, Task, difficulty_key, hash_uniform, stream_seed

TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.name in TASKS:
        raise ValueError(f"task name {task.name!r} is already registered (by {type(TASKS[task.name]).__name__}); "
                         f"give {type(task).__name__} another `name`")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


from selfimprove.tasks import arithmetic, maze, multiply, programs, strings  # noqa: E402,F401  (registration)

__all__ = ["TASKS", "Batch", "Difficulty", "Task", "difficulty_key", "get_task", "hash_uniform", "register",
           "stream_seed"]
