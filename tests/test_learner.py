"""Learner.generate: batching by prompt length and per-prompt budgets give each prompt the answer it
gets alone. A random-init model suffices: its answers already differ from prompt to prompt. Then the
learner's pieces by hand: decoding, the lr schedule, device choice, AdamW settings, the loss mask."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from selfimprove.config import ModelConfig, TrainConfig
from selfimprove.corpus import make_level
from selfimprove.learner import BOS, Learner, Vocab, pick_device, wsd_lr
from selfimprove.model import GPT, GPTConfig

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


# --- pieces of the learner, by hand ---------------------------------------------------------------


def test_decode_cuts_at_the_first_eos_and_says_whether_there_was_one():
    vocab = Vocab("ab")  # ids: EOS 0, a 1, b 2
    texts, finished = vocab.decode(np.array([[1, 2, 0, 1, 0], [2, 2, 1, 1, 1], [0, 1, 1, 1, 1]]))
    assert texts == ["ab", "bbaaa", ""] and finished == [True, False, True]


def test_wsd_lr_warms_up_holds_and_decays_to_the_floor():
    lrs = [wsd_lr(step, total=10, warmup=4, decay=3, peak=1.0) for step in range(10)]
    assert lrs == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 0.67, 0.34, 0.01])


def test_auto_picks_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device() == pick_device("auto") == torch.device("cpu")
    small = ModelConfig(n_layer=1, n_head=1, d_model=8, d_ff=8)
    assert Learner.create("ab", small, TrainConfig(), 0).device == torch.device("cpu")  # device defaults to auto
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device() == torch.device("cuda")
    assert pick_device("cpu") == torch.device("cpu")


def tiny(train=None, seed=0):
    return Learner.create("ab=", ModelConfig(n_layer=1, n_head=1, d_model=16, d_ff=16), train or TrainConfig(),
                          seed=seed, device="cpu")


def test_adamw_uses_the_configured_betas_eps_and_decays_matrices_only():
    learner = tiny(TrainConfig(beta2=0.95, eps=1e-7, weight_decay=0.05))
    matrices, vectors = learner.optimizer.param_groups
    assert all(p.dim() >= 2 for p in matrices["params"]) and all(p.dim() < 2 for p in vectors["params"])
    assert matrices["weight_decay"] == 0.05 and vectors["weight_decay"] == 0.0
    for group in (matrices, vectors):
        assert group["betas"] == (0.9, 0.95) and group["eps"] == 1e-7


def test_a_learner_without_ema_saves_no_average(tmp_path):
    names = [p.name for p in tiny(TrainConfig(ema=0)).save(tmp_path / "plain")]
    assert names == ["plain.safetensors", "plain.optim.safetensors"]
    names = [p.name for p in tiny(TrainConfig(ema=0.9)).save(tmp_path / "avg")]
    assert names == ["avg.safetensors", "avg.ema.safetensors", "avg.optim.safetensors"]


def one_batch():
    """Three sequences BOS + "xy=" + "xy" + EOS, and an endless stream of that one batch."""
    level = make_level(tiny().vocab, (2,), 0, ["ab=", "ba=", "aa="], ["ab", "ba", "aa"])
    tokens, starts = level.buckets[0]

    def repeat():
        while True:
            yield tokens, starts

    return tokens, starts, repeat()


def test_the_loss_covers_the_answer_and_its_eos_only_and_reaches_on_step():
    learner = tiny(TrainConfig(ema=0))
    tokens, starts, batches = one_batch()
    x = torch.from_numpy(tokens)
    with torch.no_grad():
        logits = learner.model(x[:, :-1])
    per_token = F.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")
    # target position j (predicting x[:, j]) counts from the first answer character on: j >= start
    answer = torch.arange(1, x.shape[1])[None, :] >= torch.from_numpy(starts)[:, None]
    assert answer.sum(1).tolist() == [3, 3, 3]  # two letters and EOS
    seen = []
    losses = learner.train(batches, 1, 0, 1, on_step=lambda step, loss: seen.append(loss))
    assert losses == pytest.approx([float(per_token[answer].mean())], rel=1e-5) and seen == losses


def test_grad_clip_zero_turns_clipping_off():
    def trained(grad_clip):
        learner = tiny(TrainConfig(ema=0, grad_clip=grad_clip))
        learner.train(one_batch()[2], 2, 0, 1)
        return torch.cat([p.detach().flatten() for p in learner.model.parameters()])

    off = trained(0.0)
    assert torch.equal(off, trained(1e9))  # 0: no clipping, the same as a clip never reached
    assert not torch.allclose(off, trained(1e-6))  # a small clip does clip


def test_confidence_covers_the_budget_and_one_more_token_for_eos():
    learner = tiny(seed=3)
    prompts = ["ab=", "ba=", "aab=", "b="]
    for budget in (0, 1, 2, 5):
        _, _, confidence = learner.generate(prompts, [budget] * len(prompts))
        for p, c in zip(prompts, confidence):
            ids = torch.from_numpy(learner.vocab.encode([BOS + p]))
            _, alone = learner.model.generate(ids, budget + 1, eos_id=0)
            assert c == pytest.approx(alone.item(), rel=1e-5)


def test_save_then_load_restores_the_weights_the_average_and_the_adamw_state(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing else to read here: only the files this test saves
    a = tiny(TrainConfig(ema=0.5), seed=0)
    a.train(one_batch()[2], 2, 0, 1)
    a.save(tmp_path / "learner-0")
    b = tiny(TrainConfig(ema=0.5), seed=1)  # other initial weights, a fresh optimizer
    b.load(tmp_path / "learner-0")
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), name
    for x, y in zip(a.ema, b.ema):
        assert torch.equal(x, y)
    # the optimizer state came back too: both continue alike
    assert a.train(one_batch()[2], 2, 0, 1) == b.train(one_batch()[2], 2, 0, 1)
    for x, y in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(x, y)


def test_the_moving_average_of_bf16_weights_is_kept_in_fp32():
    """A 1% step toward a bf16 weight is below bf16's rounding: an average kept in bf16 would never move."""
    torch.manual_seed(0)
    vocab = Vocab("ab=")
    net = GPT(GPTConfig(len(vocab), 1, 1, 16, 16)).to(torch.bfloat16)
    learner = Learner(vocab, net, TrainConfig(ema=0.99, lr=1e-3), torch.device("cpu"))
    expected = [p.detach().float().clone() for p in net.parameters()]

    def follow(step, loss):  # the average in fp32, by hand
        for e, p in zip(expected, net.parameters()):
            e.mul_(0.99).add_(p.detach().float(), alpha=0.01)

    tokens, starts = vocab.encode_examples(["ab=", "ba="], ["ab", "ba"])[0]
    learner.train(iter([(tokens, starts)] * 3), 3, 0, 1, follow)
    for a, e in zip(learner.ema, expected):
        torch.testing.assert_close(a, e, rtol=1e-6, atol=1e-7)


# --- sampled answers (samples, temperature, top_p, seed) -----------------------------------------


def test_sampled_answers_are_prompt_major_and_each_seed_draws_its_own_streams():
    learner = tiny(seed=3)
    prompts, budgets = ["ab=", "b=", "ba=", "aab=", "a="], [5, 2, 4, 6, 3]
    greedy = learner.generate(prompts, budgets)
    # a nucleus of the top token alone draws the greedy answer: prompt i's sample s sits at i * 3 + s
    narrow = learner.generate(prompts, budgets, samples=3, temperature=1.0, top_p=1e-9, seed=5)
    assert narrow[:2] == ([t for t in greedy[0] for _ in range(3)], [f for f in greedy[1] for _ in range(3)])
    assert narrow[2] == pytest.approx([c for c in greedy[2] for _ in range(3)], rel=1e-5)
    drawn = learner.generate(prompts, budgets, samples=3, temperature=3.0, seed=5)
    assert len(drawn[0]) == len(drawn[1]) == len(drawn[2]) == 15
    assert drawn == learner.generate(prompts, budgets, samples=3, temperature=3.0, seed=5)
    assert drawn[0] != learner.generate(prompts, budgets, samples=3, temperature=3.0, seed=6)[0]
    at_one = learner.generate(prompts, budgets, samples=3, temperature=1.0, seed=5)  # temperature 1 is no special case
    assert at_one == learner.generate(prompts, budgets, samples=3, temperature=1.0, seed=5)
    assert all(len(t) <= budgets[j // 3] for j, t in enumerate(drawn[0]))
    assert any(len(t) == budgets[j // 3] for j, t in enumerate(drawn[0]))
    assert all(len(set(drawn[0][i * 3 : i * 3 + 3])) > 1 for i in (0, 3))  # the samples of a prompt differ
    # each chunk draws from a stream of its own: chunks of one prompt (batch_size 3 rows) give every prompt
    # the answers it gets in a call with the same chunks; a longer prompt list after it changes none of them
    one = learner.generate(prompts, budgets, batch_size=3, samples=3, temperature=3.0, seed=5)
    assert one == learner.generate(prompts, budgets, batch_size=1, samples=3, temperature=3.0, seed=5)
    alone = learner.generate(prompts[:1], budgets[:1], batch_size=3, samples=3, temperature=3.0, seed=5)
    assert tuple(x[:3] for x in one) == alone  # prompt 0 alone draws from the stream of its one-prompt chunk
    more = learner.generate([*prompts, "bb="], [*budgets, 4], batch_size=3, samples=3, temperature=3.0, seed=5)
    assert tuple(x[:15] for x in more) == one


def test_loading_weights_of_another_config_says_so(tmp_path):
    tiny().save(tmp_path / "small")
    other = Learner.create("ab=", ModelConfig(n_layer=2, n_head=1, d_model=16, d_ff=16), TrainConfig(), seed=0,
                           device="cpu")
    with pytest.raises(ValueError, match=r"small.safetensors holds other weights than this learner trains "
                                         r"\(\d+ tensors, expected \d+\): was it written by another config\?"):
        other.load(tmp_path / "small")
