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


def test_the_loop_corrupts_kept_labels_only_and_trains_on_exactly_the_kept_ones(fake_overrides, monkeypatch):
    from pathlib import Path

    import fakes

    from selfimprove.config import dump_toml, load_config
    from selfimprove.loop import run_loop
    from selfimprove.rundir import RunDir

    trained = fakes.record_training(monkeypatch)
    cfg = load_config("quick", [*fake_overrides, "loop.rounds=1", "noise.round=1", "noise.share=0.5",
                                "noise.kind=perturb", "train.round_steps=200", "train.batch_size=64",
                                "guard.mode=off"])  # the guard would hold this round (tests/test_guard.py)
    run = RunDir.create(Path(cfg.out_dir) / cfg.name, dump_toml(cfg), cfg.seed)
    history = run_loop(cfg, run, make_learner=fakes.fake_learner)
    c = run.candidates(1).to_pydict()
    kept = [i for i, k in enumerate(c["kept"]) if k]
    corrupted = [i for i, x in enumerate(c["corrupted"]) if x]
    assert 0 < len(kept) < len(c["kept"])  # the unanimous vote dropped some
    assert set(corrupted) <= set(kept) and len(corrupted) == history[1]["n_corrupted"] == round(0.5 * len(kept))
    for i in kept:
        assert c["label_correct"][i] == (c["label"][i] == fakes.truth(c["prompt"][i]))
    assert history[1]["label_precision"] == sum(c["label_correct"][i] for i in kept) / len(kept)
    # round 1 trains on its kept (noisy) labels and round 0's seed data, nothing else
    allowed = {p + lab for p, lab in zip(c["prompt"], c["label"]) if lab is not None}
    allowed |= {p + t for p, t in zip(*[run.candidates(0).column(x).to_pylist() for x in ("prompt", "truth")])}
    round1 = trained[-200 * 64:]
    assert set(round1) <= allowed
    assert {x for x in round1 if len(x) == 11} == {c["prompt"][i] + c["label"][i] for i in kept}  # "abcde=" + 5
