"""The voter sweep's table, from hand-made metrics."""

import pytest

from selfimprove.config import ConfigError, load_config
from selfimprove.sweep import markdown, summarize, sweep_configs


def metrics(r, precision, recall, kept, generated, frontier, act, learn):
    return {"round": r, "label_precision": precision, "label_recall": recall, "n_kept": kept,
            "n_generated": generated, "frontier": frontier, "seconds": {"act": act, "learn": learn, "check": 1.0}}


def test_summary_by_hand():
    cfg = load_config("quick", ["committee.size=3", "committee.agree=1.0"])
    rounds = [metrics(0, None, None, 100, 100, 6, 0.0, 60.0), metrics(1, 1.0, 0.5, 50, 100, 7, 2.0, 10.0),
              metrics(2, 0.5, None, 25, 100, 8, 4.0, 20.0), metrics(3, None, 1.0, 0, 100, 8, 6.0, 0.0)]
    row = summarize(cfg, rounds)
    assert row == {"K": 3, "N": 1, "agree": 1.0, "rounds": 3, "label_precision": 0.75, "min_label_precision": 0.5,
                   "label_recall": 0.75, "kept_share": 0.25, "frontier": 8, "label_s_per_round": 4.0,
                   "train_s_per_round": 10.0, "total_min": pytest.approx((60 + 12 + 24 + 6 + 4) / 60)}
    one = summarize(load_config("quick"), rounds[:1])
    assert one["agree"] is None and one["rounds"] == 0 and one["label_precision"] is None
    table = markdown([row, one]).splitlines()
    assert table[0].startswith("| K | N | agree | rounds | label_precision | min_label_precision |")
    assert table[2].startswith("| 3 | 1 | 1.000 | 3 | 0.750 | 0.500 | 0.750 | 0.250 | 8 | 4.000 | 10.000 |")
    assert table[3].startswith("| 1 | 1 | - | 0 | - | - |")


def test_a_committee_of_one_runs_once_and_every_other_size_once_per_threshold(tmp_path):
    folder, configs = sweep_configs("quick", [f"out_dir={tmp_path}", "loop.filters=['majority']"], [3, 1, 3],
                                    [1.0, 0.6])
    assert folder == tmp_path / "quick-sweep"
    assert [(c.committee.size, c.committee.agree, c.name) for c in configs] == [
        (1, 1.0, "k1"), (3, 0.6, "k3-a0.6"), (3, 1.0, "k3-a1")]
    assert {c.out_dir for c in configs} == {str(folder)}


def test_samples_are_an_axis_and_one_sampled_learner_votes(tmp_path):
    folder, configs = sweep_configs("quick", [f"out_dir={tmp_path}", "loop.filters=['majority']"], [1, 3], [1.0],
                                    (1, 3), temperature=0.5)
    assert [(c.committee.size, c.committee.samples, c.committee.temperature, c.name) for c in configs] == [
        (1, 1, 0.0, "k1"), (1, 3, 0.5, "k1-n3-a1"), (3, 1, 0.0, "k3-a1"), (3, 3, 0.5, "k3-n3-a1")]
    sampled = summarize(configs[1], [metrics(0, None, None, 10, 10, 6, 0.0, 1.0)])
    assert sampled["N"] == 3 and sampled["agree"] == 1.0  # one model sampled three times votes too
    _, defaults = sweep_configs("quick", [f"out_dir={tmp_path}", "loop.filters=['majority']"], [1], [1.0], (2,))
    assert defaults[0].committee.temperature == 0.7


def test_every_axis_of_a_preset_sweep_runs_and_names_its_runs(tmp_path):
    folder, configs = sweep_configs("cpu-reverse-add", [f"out_dir={tmp_path}", "committee.temperature=0.9"], [2, 1],
                                    [1.0, 0.6], (2, 1))
    assert folder == tmp_path / "cpu-reverse-add-sweep" and {c.task.name for c in configs} == {"reverse_add"}
    assert [(c.committee.size, c.committee.samples, c.committee.agree, c.committee.temperature, c.name)
            for c in configs] == [
        (1, 1, 1.0, 0.0, "k1"), (1, 2, 0.6, 0.9, "k1-n2-a0.6"), (1, 2, 1.0, 0.9, "k1-n2-a1"),
        (2, 1, 0.6, 0.0, "k2-a0.6"), (2, 1, 1.0, 0.0, "k2-a1"), (2, 2, 0.6, 0.9, "k2-n2-a0.6"),
        (2, 2, 1.0, 0.9, "k2-n2-a1")]
    assert [summarize(c, [])["agree"] for c in configs] == [None, 0.6, 1.0, 0.6, 1.0, 0.6, 1.0]
    empty = summarize(configs[0], [])  # a run with no metrics yet
    assert empty["rounds"] == 0 and empty["frontier"] is None and empty["total_min"] == 0


def test_a_sweep_without_the_majority_filter_fails_unless_nothing_votes(tmp_path):
    length_only = [f"out_dir={tmp_path}", "loop.filters=['length']"]
    assert [c.name for c in sweep_configs("quick", length_only, [1], [0.8])[1]] == ["k1"]  # one greedy answer
    for sizes, samples in (([2], (1,)), ([1], (2,))):
        with pytest.raises(ConfigError, match="needs 'majority' in loop.filters"):
            sweep_configs("quick", length_only, sizes, [0.8], samples)


def test_the_markdown_table_of_one_row():
    assert markdown([{"K": 1, "agree": None, "kept_share": 0.25}]) == (
        "| K | agree | kept_share |\n|---|---|---|\n| 1 | - | 0.250 |\n")
