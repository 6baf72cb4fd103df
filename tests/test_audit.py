"""The audit: the frontier, label quality, and held-out problems, with hand-computed values."""

import pytest

from selfimprove.audit import frontier, held_out, label_quality
from selfimprove.config import load_config
from selfimprove.loop import draw
from selfimprove.tasks import get_task, stream_seed

copy, multiply = get_task("copy"), get_task("multiply")


def test_frontier_is_the_hardest_difficulty_at_or_above_099():
    assert frontier(copy, {(3,): 1.0, (4,): 0.99, (5,): 0.989, (6,): 1.0}) == 6  # 6 is solved past a gap
    assert frontier(copy, {(3,): 1.0, (4,): 0.99, (5,): 0.989}) == 4
    assert frontier(copy, {(2,): 0.98, (3,): 0.5}) is None
    assert frontier(copy, {}) is None


def test_frontier_of_two_axes_is_the_solved_boundary():
    accuracy = {(1, 1): 1.0, (1, 2): 1.0, (2, 1): 1.0, (2, 2): 0.99, (1, 3): 1.0, (3, 1): 0.5, (2, 3): 0.98}
    # (2,2) dominates (1,1), (1,2), (2,1); (1,3) is not dominated by (2,2); (3,1) and (2,3) are unsolved
    assert frontier(multiply, accuracy) == [[1, 3], [2, 2]]
    assert frontier(multiply, {(1, 1): 0.2}) == []


def test_label_quality_by_hand():
    labels = ["a", "b", "c", "d", "e"]
    truths = ["a", "x", "c", "d", "y"]
    kept = [True, True, False, True, False]
    answers = labels  # the committee's answer is the label
    # kept: a (right), b (wrong), d (right) -> precision 2/3; right answers: a, c, d -> kept 2 of 3
    task, p = get_task("copy"), ["?"] * 5
    assert label_quality(task, p, labels, kept, answers, truths) == (2 / 3, 2 / 3, [True, False, None, True, None])
    # labels differ from answers after noise: precision reads the label, recall the answer
    noisy = ["a", "b", "c", "z", "e"]
    assert label_quality(task, p, noisy, kept, answers, truths)[:2] == (1 / 3, 2 / 3)
    assert label_quality(task, p, labels, [False] * 5, answers, truths) == (None, 0.0, [None] * 5)
    assert label_quality(task, ["?"], ["q"], [True], ["q"], ["r"])[:2] == (0.0, None)


@pytest.mark.parametrize("problems", ["shared", "per_member"])
def test_audit_prompts_are_never_training_or_probe_prompts(problems):
    # strings of 8..10 letters: 26^8 of them, so a shared prompt would not happen by chance
    cfg = load_config("quick", ["task.name=copy", "audit.problems=300", "audit.below=1", "audit.above=1",
                                "loop.problems=3000", "committee.size=3", f"committee.problems={problems}",
                                "audit.base=0"])
    for r in (1, 2):
        trained = [(9,)]
        audit = {p for b in held_out(copy, cfg, r, trained) for p in b.prompts}
        assert len(audit) == 900 and {len(p) - 1 for p in audit} == {8, 9, 10}
        training = set(draw(copy, cfg, r, [(8,), (9,), (10,)], cfg.loop.problems)[0])
        probes = set(copy.sample((9,), range(500), stream_seed(cfg.seed, "probe", r)).prompts)
        assert len(training) == 9000 * (3 if problems == "per_member" else 1)
        assert not audit & training and not audit & probes
    assert held_out(copy, cfg, 1, trained)[0].prompts != held_out(copy, cfg, 2, trained)[0].prompts  # fresh each round


def test_the_planners_probes_are_not_audit_problems():
    from selfimprove.planner import plan

    class Recorder:
        size = 2

        def __init__(self):
            self.prompts = []

        def generate(self, prompts, advance=None, sampling=None):
            self.prompts += prompts
            return [[p[:-1]] * 2 for p in prompts], [[True] * 2 for _ in prompts], [[1.0] * 2 for _ in prompts]

    cfg = load_config("quick", ["task.name=copy", "loop.planner=accelerated", "committee.size=2", "loop.max_jump=3",
                                "loop.probe_problems=300", "audit.problems=300", "audit.below=0", "audit.above=2",
                                "audit.base=0"])
    recorder = Recorder()
    chosen = plan(copy, cfg, recorder, [(7,)], r=1).difficulties
    assert chosen == [(8,), (9,), (10,)] and len(recorder.prompts) == 600  # probed lengths 9 and 10
    audit = {p for b in held_out(copy, cfg, 1, [(8,)]) for p in b.prompts}
    assert {len(p) - 1 for p in audit} == {8, 9, 10} and not audit & set(recorder.prompts)


def test_held_out_problems_are_the_rounds_audit_stream_from_below_to_above_the_hardest():
    cfg = load_config("quick", ["task.name=copy", "audit.problems=5", "audit.below=2", "audit.above=1", "seed=3",
                                "audit.base=0"])
    batches = held_out(copy, cfg, 4, [(2,), (6,), (5,)])
    assert [b.difficulty for b in batches] == [(4,), (5,), (6,), (7,)]
    for b in batches:
        assert b.prompts == copy.sample(b.difficulty, range(5), stream_seed(3, "audit", 4)).prompts


def test_the_audit_keeps_the_base_range_after_the_window_has_moved_on():
    cfg = load_config("quick", ["task.name=copy", "task.base=3", "audit.problems=5", "audit.below=1",
                                "audit.above=1", "audit.base=2"])
    batches = held_out(copy, cfg, 4, [(1,), (2,), (3,), (7,)])
    assert [(b.difficulty, len(b.prompts)) for b in batches] == [((1,), 2), ((2,), 2), ((3,), 2), ((6,), 5),
                                                                  ((7,), 5), ((8,), 5)]
    two = load_config("quick", ["task.name=multiply", "task.base=2", "audit.problems=3", "audit.below=0",
                                "audit.above=0", "audit.base=1"])
    batches = held_out(get_task("multiply"), two, 1, [(1, 1), (2, 2), (3, 3)])  # the base range's edge only
    assert [(b.difficulty, len(b.prompts)) for b in batches] == [((1, 2), 1), ((2, 1), 1), ((2, 2), 1), ((3, 3), 3)]


class Copier:
    """A stand-in committee of two: member 0 copies strings, member 1 copies those up to 2 letters."""

    size = 2

    def generate(self, prompts, advance=None, sampling=None):
        outputs = [[p[:-1], p[:-1] if len(p) <= 3 else "x"] for p in prompts]
        return outputs, [[True, True] for _ in prompts], [[1.0, 1.0] for _ in prompts]


def test_check_scores_the_vote_and_each_member_and_writes_the_audit_schema():
    from selfimprove.audit import AUDIT_SCHEMA, check

    cfg = load_config("quick", ["task.name=copy", "audit.problems=4", "audit.below=1", "audit.above=1",
                                "audit.base=0"])
    accuracy, members, solved, table = check(Copier(), copy, held_out(copy, cfg, 1, [(2,)]), 1)
    assert accuracy == {"1": 1.0, "2": 1.0, "3": 1.0}  # a tie goes to the first answer given: member 0's
    assert members == [{"1": 1.0, "2": 1.0, "3": 1.0}, {"1": 1.0, "2": 1.0, "3": 0.0}] and solved == 3
    assert table.schema == AUDIT_SCHEMA and table.num_rows == 12  # audit.parquet's column types are fixed
