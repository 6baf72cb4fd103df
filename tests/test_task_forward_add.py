from selfimprove.tasks import get_task

task = get_task("forward_add")


def test_forward_add_scores_true_sums():
    b = task.sample((12,), range(300), seed=1)
    carries = set()
    for prompt, truth in zip(b.prompts, b.truths):
        a, c = prompt.removesuffix("=").split("+")
        assert len(a) == len(c) == 12 and a[0] != "0" and c[0] != "0"
        assert truth == str(int(a) + int(c))  # normal order, unpadded
        assert task.answer_length(prompt) == 12 and task.max_answer_length(prompt) == 13
        carries.add(len(truth))
    assert carries == {12, 13}


def test_forward_add_is_reverse_add_written_forward():
    f, r = task.sample((6,), range(50), seed=2), get_task("reverse_add").sample((6,), range(50), seed=2)
    assert [p[:6][::-1] + "+" + p[7:13][::-1] + "=" for p in r.prompts] == f.prompts
    assert [str(int(t[::-1])) for t in r.truths] == f.truths


def test_forward_add_one_digit_sums_have_no_leading_zero():
    b = task.sample((1,), range(500), seed=0)
    assert all(t == str(int(p[0]) + int(p[2])) for p, t in zip(b.prompts, b.truths))
    assert {p[0] for p in b.prompts} == set("0123456789")


def test_forward_add_seed_data_mixes_operand_lengths():
    b = task.sample_seed((5,), range(2000), seed=0)
    shapes = set()
    for prompt, truth in zip(b.prompts, b.truths):
        a, c = prompt.removesuffix("=").split("+")
        assert max(len(a), len(c)) == 5 and all(x[0] != "0" for x in (a, c) if len(x) > 1)
        assert truth == str(int(a) + int(c))
        assert task.answer_length(prompt) <= len(truth) <= task.max_answer_length(prompt)
        shapes.add((len(a), len(c)))
    assert shapes == {(5, k) for k in range(1, 6)} | {(k, 5) for k in range(1, 6)}
    assert [task.seed_weight((n,)) for n in (1, 2, 5)] == [1.0, 3.0, 9.0]
