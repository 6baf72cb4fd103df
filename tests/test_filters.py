import pytest

from selfimprove.filters import apply_filters
from selfimprove.tasks import get_task

task = get_task("reverse_add")
PROMPTS = ["12+34=", "12+34=", "12+34=", "12+34="]


def test_length_filter_drops_missing_eos_and_short_answers_with_a_reason():
    v = apply_filters(["length"], task, PROMPTS, [["460"], ["46"], ["4600"], ["460"]],
                      [[True], [True], [True], [False]], [[1.0]] * 4)
    assert v.kept == [True, False, True, False]
    assert v.drop_reason == [None, "length: too short", None, "length: no EOS"]
    assert v.labels == ["460", "46", "4600", "460"]


def test_confidence_filter_uses_the_threshold():
    v = apply_filters(["confidence"], task, PROMPTS[:2], [["460"], ["460"]], [[True], [True]], [[0.9], [0.4]],
                      min_confidence=0.5)
    assert v.kept == [True, False] and v.drop_reason[1].startswith("confidence")


def test_none_keeps_everything_and_filters_compose_in_order():
    outputs, finished, conf = [["4"], ["460"]], [[False], [True]], [[0.1], [0.1]]
    assert apply_filters(["none"], task, PROMPTS[:2], outputs, finished, conf).kept == [True, True]
    v = apply_filters(["length", "confidence"], task, PROMPTS[:2], outputs, finished, conf, min_confidence=0.5)
    assert v.drop_reason == ["length: no EOS", "confidence: below threshold"]


def test_vote_takes_the_most_common_output_and_its_share():
    v = apply_filters(["none"], task, ["12+34="], [["460", "461", "460"]], [[True] * 3], [[0.9, 0.8, 0.7]])
    assert v.labels == ["460"] and abs(v.vote_share[0] - 2 / 3) < 1e-12


def test_majority_keeps_labels_with_enough_agreement_paper_and_strict():
    outputs = [["460"] * 4 + ["461"], ["460"] * 3 + ["461"] * 2, ["460"] * 5]
    finished, conf = [[True] * 5] * 3, [[0.9] * 5] * 3
    paper = apply_filters(["majority"], task, PROMPTS[:3], outputs, finished, conf, agree=0.8)
    assert paper.kept == [True, False, True] and paper.drop_reason[1] == "majority: too few agree"
    assert paper.vote_share == [0.8, 0.6, 1.0]
    strict = apply_filters(["majority"], task, PROMPTS[:3], outputs, finished, conf, agree=1.0)
    assert strict.kept == [False, False, True]


def test_an_answer_without_eos_is_a_different_vote():
    v = apply_filters(["majority", "length"], task, ["12+34="], [["460", "460", "460"]], [[True, False, False]],
                      [[0.9] * 3], agree=0.6)
    assert v.vote_share == [2 / 3] and v.drop_reason == ["length: no EOS"]


class PathTask(type(task)):
    """A stand-in task whose verifier accepts answers that start with the prompt's first digit."""

    def verify(self, prompt, answer):
        return answer[:1] == prompt[:1]


def test_verify_filter_uses_the_tasks_verifier_and_needs_eos():
    v = apply_filters(["verify"], PathTask(), PROMPTS[:3], [["19"], ["29"], ["19"]], [[True], [True], [False]],
                      [[1.0]] * 3)
    assert v.kept == [True, False, False] and v.drop_reason[1:] == ["verify: failed"] * 2


def test_a_tie_is_never_a_majority():
    v = apply_filters(["majority"], task, ["12+34="], [["460", "460", "461", "461"]], [[True] * 4], [[0.9] * 4],
                      agree=0.5)
    assert v.kept == [False] and v.drop_reason == ["majority: tie"]


def test_a_labels_confidence_is_the_mean_over_the_members_that_gave_it():
    from selfimprove.filters import vote

    c = vote("12+34=", ["460", "461", "460", "460"], [True] * 4, [0.9, 0.1, 0.6, 0.3])
    assert c.label == "460" and c.vote_share == 0.75 and c.confidence == pytest.approx(0.6)  # (0.9+0.6+0.3)/3
    kept = apply_filters(["confidence"], task, ["12+34="], [["460", "461", "460"]], [[True] * 3], [[0.8, 0.0, 0.7]],
                         min_confidence=0.75)
    assert kept.kept == [True]  # 0.75 from the two that gave it; over all three it would be 0.5


def test_defaults_are_the_papers_agreement_and_no_confidence_floor_and_no_filter_keeps_all():
    outputs = [["460"] * 4 + ["461"], ["460"] * 3 + ["461"] * 2]
    finished, conf = [[True] * 5] * 2, [[0.0] * 5] * 2
    assert apply_filters(["majority"], task, PROMPTS[:2], outputs, finished, conf).kept == [True, False]  # 0.8
    assert apply_filters(["confidence"], task, PROMPTS[:2], outputs, finished, conf).kept == [True, True]
    v = apply_filters([], task, PROMPTS[:2], outputs, finished, conf)  # an empty list of filters keeps all
    assert v.kept == [True, True] and v.drop_reason == [None, None]


def test_a_label_outside_the_tasks_characters_is_dropped_whatever_the_filters():
    """A Hugging Face model can answer in any token; such a label cannot be trained on."""
    v = apply_filters(["none"], task, PROMPTS[:3], [["12"], ["1x"], ["<pad>"]], [[True]] * 3, [[1.0]] * 3)
    assert v.kept == [True, False, False]
    assert v.drop_reason == [None] + ["alphabet: not the task's characters"] * 2
