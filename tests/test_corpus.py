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
