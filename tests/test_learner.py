"""Learner.generate: batching by prompt length and per-prompt budgets give each prompt the answer it
gets alone. A random-init model suffices: its answers already differ from prompt to prompt."""

import pytest

from selfimprove.config import ModelConfig, TrainConfig
from selfimprove.learner import Learner

# Mixed lengths (1, 2, 4, 5, 6, 8), not in length order, several per length.
PROMPTS = ["1+2=", "8", "12+34=", "7+8=", "99+1=", "3=", "0+0=", "6", "123+456=", "2+9=", "44", "5+55=",
           "1", "4+4=", "70", "31+7=", "9="]


@pytest.fixture(scope="module")
def learner():
    # Seed 2 gives answers that differ between prompts, some ending in EOS, some not within 20 characters.
    return Learner.create("0123456789+=", ModelConfig(n_layer=2, n_head=2, d_model=32, d_ff=64), TrainConfig(),
                          seed=2, device="cpu")


def alone(learner, prompts, budgets):
    """Each prompt generated on its own: the reference for the batched call."""
    answers = [learner.generate([p], [b]) for p, b in zip(prompts, budgets)]
    return tuple([a[k][0] for a in answers] for k in range(3))


@pytest.mark.parametrize("batch_size", [2, 1024])
def test_mixed_lengths_give_each_prompt_its_own_answer(learner, batch_size):
    budgets = [12] * len(PROMPTS)
    texts, finished, confidence = learner.generate(PROMPTS, budgets, batch_size=batch_size)
    ref_texts, ref_finished, ref_confidence = alone(learner, PROMPTS, budgets)
    # Answers must differ between prompts (also within a length), or a permutation would go unseen.
    assert len(set(ref_texts)) >= 12
    assert len({t for p, t in zip(PROMPTS, ref_texts) if len(p) == 4}) >= 4
    assert 0 < sum(ref_finished) < len(PROMPTS)
    assert texts == ref_texts
    assert finished == ref_finished
    assert confidence == pytest.approx(ref_confidence, rel=1e-5)


@pytest.mark.parametrize("batch_size", [3, 1024])
def test_each_prompts_budget_is_enforced(learner, batch_size):
    full, full_finished, _ = alone(learner, PROMPTS, [30] * len(PROMPTS))
    # Budgets differ within each length, and the largest of a length is not its first prompt's ("1").
    budgets = {"1+2=": 12, "7+8=": 0, "0+0=": 8, "2+9=": 4, "4+4=": 3, "44": 0, "9=": 2, "70": 10, "1": 15}
    budgets = [budgets.get(p, 5) for p in PROMPTS]
    texts, finished, confidence = learner.generate(PROMPTS, budgets, batch_size=batch_size)
    for text, done, answer, answer_done, budget in zip(texts, finished, full, full_finished, budgets):
        assert len(text) <= budget
        assert text == answer[:budget]
        assert done == (answer_done and len(answer) <= budget)
    cases = list(zip(PROMPTS, full, full_finished, budgets))
    # Cut short: EOS after the budget but within the batch's longest budget ("2+9=": "030303030" in 4) ...
    assert any(d and b < len(a) < max(budgets) for p, a, d, b in cases)
    # ... an answer exactly as long as its budget ("4+4=": "+98" in 3), one well within ("0+0=" in 8),
    # an answer that never ends cut at its budget, and a budget of 0.
    assert any(d and len(a) == b for p, a, d, b in cases)
    assert any(d and len(a) < b for p, a, d, b in cases)
    assert any(not d for p, a, d, b in cases)
    assert 0 in budgets
    # Confidence covers what the prompt's own budget lets it generate, not its batch-mates' budgets.
    assert confidence == pytest.approx(alone(learner, PROMPTS, budgets)[2], rel=1e-5)
