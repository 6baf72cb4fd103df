from collections import Counter

import numpy as np

from selfimprove.corpus import Corpus, make_level
from selfimprove.learner import Vocab
from selfimprove.tasks import get_task

task = get_task("reverse_add")
vocab = Vocab(task.alphabet)


def level(n, r, weight=1.0, count=50):
    b = task.sample((n,), range(count), seed=r)  # equal operand lengths: one sequence length per level
    return make_level(vocab, (n,), r, b.prompts, b.truths, weight)


def test_every_batch_has_one_length_and_the_loss_starts_at_the_answer():
    b = task.sample_seed((3,), range(200), seed=0)  # mixed operand lengths: several sequence lengths
    corpus = Corpus([make_level(vocab, (3,), 0, b.prompts, b.truths)])
    assert len(corpus.levels[0].buckets) == 3
    batches = corpus.batches(0, "accumulate", 16, np.random.default_rng(0))
    for _ in range(20):
        tokens, starts = next(batches)
        assert tokens.shape[0] == 16 and (tokens[:, 0] == 0).all() and (tokens[:, -1] == 0).all()  # BOS, EOS
        for row, start in zip(tokens, starts):
            assert vocab.chars[row[start - 1]] == "="


def test_mixture_half_newest_half_earlier_by_weight():
    corpus = Corpus([level(1, 0, weight=0.5), level(2, 0, weight=1.5), level(3, 1), level(4, 2)])
    source = Counter()
    lengths = {n: {t.shape[1] for t, _ in lv.buckets} for n, lv in zip((1, 2, 3, 4), corpus.levels)}
    batches = corpus.batches(2, "accumulate", 1, np.random.default_rng(0))
    for _ in range(6000):
        tokens, _ = next(batches)
        source[next(n for n, ls in lengths.items() if tokens.shape[1] in ls)] += 1
    assert abs(source[4] / 6000 - 0.5) < 0.01  # newest round: every other step
    earlier = source[1] + source[2] + source[3]
    assert abs(source[3] / earlier - 1 / 3) < 0.05 and abs(source[2] / source[1] - 3) < 0.6


def test_replace_mode_uses_the_newest_round_only():
    corpus = Corpus([level(1, 0), level(3, 1)])
    batches = corpus.batches(1, "replace", 4, np.random.default_rng(0))
    new_lengths = {t.shape[1] for t, _ in corpus.levels[1].buckets}
    assert all(next(batches)[0].shape[1] in new_lengths for _ in range(50))


def test_an_empty_level_is_not_added_and_a_round_without_examples_cannot_train():
    import pytest

    corpus = Corpus([level(1, 0)])
    corpus.add(make_level(vocab, (2,), 1, [], []))
    assert [lv.round for lv in corpus.levels] == [0]
    corpus.add(level(2, 1, count=3))
    assert [(lv.round, lv.size) for lv in corpus.levels] == [(0, 50), (1, 3)]
    with pytest.raises(ValueError, match="round 2 has no training example"):
        next(corpus.batches(2, "accumulate", 4, np.random.default_rng(0)))


def test_batches_alternate_newest_first_and_buckets_are_drawn_by_size():
    corpus = Corpus([level(1, 0), level(3, 1)])
    lengths = [{t.shape[1] for t, _ in lv.buckets} for lv in corpus.levels]
    batches = corpus.batches(1, "accumulate", 2, np.random.default_rng(0))
    sources = [0 if next(batches)[0].shape[1] in lengths[0] else 1 for _ in range(6)]
    assert sources == [1, 0, 1, 0, 1, 0]  # even steps (the first one too) train on the newest round
    # one level with 1 sequence of one length and 19 of another: batches come from each by its size
    mixed = make_level(vocab, (2,), 0, ["1+2="] + ["12+34="] * 19, ["3"] + ["46"] * 19)
    assert make_level(vocab, (2,), 0, ["1+2="], ["3"]).weight == 1.0  # a level weighs 1 unless told
    batches = Corpus([mixed]).batches(0, "replace", 1, np.random.default_rng(0))
    short = sum(next(batches)[0].shape[1] == 7 for _ in range(400))  # BOS + "1+2=" + "3" + EOS
    assert 5 < short < 40  # about 400 / 20; uniform over the two buckets would give about 200
