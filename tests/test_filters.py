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
