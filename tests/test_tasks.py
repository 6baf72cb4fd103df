import numpy as np
import pytest

from selfimprove.tasks import TASKS, Difficulty, Task, get_task, register


def some_difficulties(task: Task) -> list[Difficulty]:
    """The easiest, a middle and the hardest of the task's base difficulties at base 12."""
    ds = task.base_difficulties(12)
    return [ds[0], ds[len(ds) // 2], ds[-1]]


def check_task(task: Task) -> None:
    """The checks every task must pass (tests/test_task_template.py runs them on the template)."""
    assert task.name and task.axes and "\0" not in task.alphabet
    hard = some_difficulties(task)[-1]
    for sample in (task.sample, task.sample_seed):
        whole = sample(hard, range(50), seed=3)
        part = sample(hard, [10, 49, 0], seed=3)
        assert part.prompts == [whole.prompts[i] for i in (10, 49, 0)]  # item i is a pure function
        assert part.truths == [whole.truths[i] for i in (10, 49, 0)]
        assert sample(hard, range(50), seed=4).prompts != whole.prompts
        assert len(set(whole.prompts)) > 45  # random, not constant
    plan = task.next_difficulties(task.base_difficulties(12))
    audit = task.audit_difficulties(task.base_difficulties(12) + plan, 2, 2)
    assert plan and audit
    for d in some_difficulties(task) + plan + audit:
        for b in (task.sample(d, range(20), seed=0), task.sample_seed(d, range(20), seed=0)):
            assert b.difficulty == d and len(b.prompts) == len(b.truths) == 20
            assert set("".join(b.prompts + b.truths)) <= set(task.alphabet)
            for prompt, truth in zip(b.prompts, b.truths):
                # answer_length is exact (then max_answer_length, by default, equals it), a minimum or None
                assert (task.answer_length(prompt) or 0) <= len(truth) <= task.max_answer_length(prompt)
                assert task.verify(prompt, truth) in (None, True)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_passes_the_common_checks(name):
    check_task(get_task(name))


def test_reverse_add_scores_true_sums():
    b = get_task("reverse_add").sample((17,), range(200), seed=1)
    for prompt, truth in zip(b.prompts, b.truths):
        a, c = prompt.removesuffix("=").split("+")
        assert len(a) == len(c) == 17 and a[-1] != "0" and c[-1] != "0"
        assert int(truth[::-1]) == int(a[::-1]) + int(c[::-1])
        assert len(truth) == 18
    assert get_task("reverse_add").sample((3,), [0], seed=0).prompts[0].count("+") == 1


def test_reverse_add_one_digit_covers_zero():
    b = get_task("reverse_add").sample((1,), range(500), seed=0)
    assert {p[0] for p in b.prompts} == set("0123456789")


def test_copy_and_reverse():
    c = get_task("copy").sample((8,), range(20), seed=0)
    r = get_task("reverse").sample((8,), range(20), seed=0)
    assert c.prompts == r.prompts
    assert all(t == p[:-1] for p, t in zip(c.prompts, c.truths))
    assert all(t == p[:-1][::-1] for p, t in zip(r.prompts, r.truths))


def test_sampling_fifty_thousand_problems_is_vectorised():
    b = get_task("reverse_add").sample((17,), np.arange(50_000), seed=0)
    assert len(b.prompts) == 50_000 and len(set(b.prompts)) == 50_000


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(KeyError, match="reverse_add"):
        get_task("nope")


def test_bad_difficulty_is_refused():
    with pytest.raises(ValueError, match="positive"):
        get_task("copy").sample((0,), range(3), seed=0)


def test_reverse_add_seed_data_mixes_operand_lengths():
    task = get_task("reverse_add")
    b = task.sample_seed((5,), range(2000), seed=0)
    assert b.prompts[:7] == task.sample_seed((5,), range(7), seed=0).prompts  # pure in (seed, index)
    shapes = set()
    for prompt, truth in zip(b.prompts, b.truths):
        a, c = prompt.removesuffix("=").split("+")
        assert max(len(a), len(c)) == 5 and all(x[-1] != "0" for x in (a, c) if len(x) > 1)
        assert int(truth[::-1]) == int(a[::-1]) + int(c[::-1]) and len(truth) == 6
        assert task.answer_length(prompt) == len(truth)
        shapes.add((len(a), len(c)))
    assert shapes == {(5, k) for k in range(1, 6)} | {(k, 5) for k in range(1, 6)}


def test_seed_weights_follow_the_papers_length_distribution():
    task = get_task("reverse_add")
    assert [task.seed_weight((n,)) for n in (1, 2, 5)] == [1.0, 3.0, 9.0]
    assert get_task("copy").seed_weight((4,)) == 1.0


def test_registering_a_taken_name_says_to_choose_another():
    class Duplicate(Task):
        name = "reverse_add"

    before = dict(TASKS)
    with pytest.raises(ValueError, match=r"'reverse_add' is already registered.*another `name`"):
        register(Duplicate())
    assert TASKS == before  # the registered task is kept


def test_a_task_without_answer_length_must_override_the_budget():
    class Unsized(Task):
        name = "unsized"

    with pytest.raises(NotImplementedError, match=r"'unsized'.*override `max_answer_length`"):
        Unsized().max_answer_length("12+34=")
