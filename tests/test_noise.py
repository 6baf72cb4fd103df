import numpy as np
import pytest

from selfimprove.noise import corrupt


@pytest.mark.parametrize("kind", ["random", "drop", "perturb"])
@pytest.mark.parametrize("labels, alphabet", [(["4600", "97", "0"], "0123456789"),
                                              (["abc", "zz", "q"], "abcdefghijklmnopqrstuvwxyz"),
                                              (["07>13>42", "01>99"], "0123456789>")])
def test_every_chosen_label_changes_and_stays_in_the_alphabet(kind, labels, alphabet):
    out, chosen = corrupt(labels, [True] * len(labels), 1.0, kind, np.random.default_rng(0))
    assert chosen == [True] * len(labels)
    for before, after in zip(labels, out):
        assert after != before and set(after) <= set(alphabet)
        assert after.count(">") == before.count(">")  # separators stay


def test_only_the_asked_share_of_kept_labels_is_chosen():
    labels = [str(i) for i in range(100)]
    kept = [i % 2 == 0 for i in range(100)]
    out, chosen = corrupt(labels, kept, 0.2, "perturb", np.random.default_rng(1))
    assert sum(chosen) == 10 and all(kept[i] for i in range(100) if chosen[i])
    assert [o == lab for o, lab in zip(out, labels)] == [not c for c in chosen]
