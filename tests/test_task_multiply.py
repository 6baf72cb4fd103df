import pytest

from selfimprove.tasks import get_task

task = get_task("multiply")


def test_multiply_format_example():
    # 1234 * 56: partial products 7404 and 61700 (reversed, padded), product 69104
    assert task.answer_length("4321*65=") == len("40470+007160=401960")


@pytest.mark.parametrize("shape", [(1, 1), (3, 1), (1, 4), (5, 5), (4, 7), (9, 9)])
def test_multiply_scores_true_products_with_its_chain_of_thought(shape):
    b = task.sample(shape, range(100), seed=1)
    for prompt, truth in zip(b.prompts, b.truths):
        ra, rb = prompt.removesuffix("=").split("*")
        assert (len(ra), len(rb)) == shape
        a, c = int(ra[::-1]), int(rb[::-1])
        assert all(len(x) == 1 or x[-1] != "0" for x in (ra, rb))  # exactly that many digits
        steps, product = truth.split("=")
        assert int(product[::-1]) == a * c and len(product) == len(ra) + len(rb)
        running = 0
        for i, step in enumerate(steps.split("+")):
            partial, _, total = step.removesuffix(")").partition("(")
            running += int(rb[i]) * a * 10**i
            assert int(partial[::-1]) == int(rb[i]) * a * 10**i and len(partial) == i + len(ra) + 1
            has_sum = 0 < i < len(rb) - 1  # no running sum after the first and the last partial product
            assert bool(total) == has_sum
            if has_sum:
                assert int(total[::-1]) == running and len(total) == i + len(ra) + 1
        assert task.answer_length(prompt) == len(truth)


def test_multiply_follows_the_papers_schedule_from_base_five():
    trained = task.base_difficulties(5)
    assert len(trained) == 25
    rounds = []
    for _ in range(8):
        rounds.append(task.next_difficulties(trained, step=1))
        trained = trained + rounds[-1]
    assert rounds == [[(1, 6), (6, 1)], [(2, 6), (6, 2)], [(3, 6), (6, 3)], [(4, 6), (6, 4)],
                      [(5, 6), (6, 5)], [(6, 6)], [(1, 7), (7, 1)], [(2, 7), (7, 2)]]


def test_multiply_schedule_fills_a_gap_first():
    trained = [*task.base_difficulties(5), (1, 6), (6, 1), (2, 6)]
    assert task.next_difficulties(trained) == [(6, 2)]
    assert task.next_difficulties([]) == [(1, 1)]
