"""The program task: answers judged by what they do in the sandbox (verifier, execution voting, audit),
hostile candidates costing one candidate each, and the loop end to end with fake members."""

from __future__ import annotations

from pathlib import Path

import fakes
import pyarrow.parquet as pq
import pytest

from selfimprove.config import dump_toml, load_config
from selfimprove.filters import apply_filters
from selfimprove.loop import run_loop
from selfimprove.rundir import RunDir
from selfimprove.tasks import TASKS, get_task, register
from selfimprove.tasks.programs import Programs, examples, fresh_inputs, interpret


class ShownPrograms(Programs):
    """The program task with the hidden program written after the prompt, for fake learners to read."""

    name = "program_shown"

    def sample(self, difficulty, index, seed):
        b = super().sample(difficulty, index, seed)
        return type(b)(b.difficulty, [p + t for p, t in zip(b.prompts, b.truths)], b.truths)


if "program_shown" not in TASKS:
    register(ShownPrograms())

TASK = get_task("program")
REV = "123>321;45>54="  # examples of x|rev


pytestmark = pytest.mark.usefixtures("program_sandbox")  # every test here runs programs in the sandbox


def run(answers, prompts=None):
    prompts = prompts or [REV] * len(answers)
    return TASK.verify_many(prompts, answers), TASK.correct(prompts, answers, ["x|rev"] * len(answers))


def test_sample_shows_each_operations_digit_and_zero_to_nine_with_the_hidden_programs_outputs():
    b = TASK.sample((4,), range(200), seed=0)
    for p, t in zip(b.prompts, b.truths):
        assert t.count("|") - t.endswith("|rev") == 4  # four maps and filters, and perhaps rev
        touched = sorted(int(op[op.index("(") + 1]) for op in t.split("|")[1:] if op != "rev")
        assert [i for i, _ in examples(p)] == [[v] for v in touched] + [list(range(10))]
        assert all(interpret(t, i) == o for i, o in examples(p))
    assert TASK.verify_many(b.prompts[:50], b.truths[:50]) == [True] * 50
    assert TASK.correct(b.prompts[:50], b.truths[:50], b.truths[:50]) == [True] * 50


def test_the_examples_show_whether_a_program_reverses():
    # a program whose output on 0..9 reads the same both ways would pass its examples reversed or not;
    # wherever reversing changes what it does, its examples must show it
    for d in range(1, 10):
        b = TASK.sample((d,), range(300), seed=1)
        for p, t in zip(b.prompts, b.truths):
            toggled = t.removesuffix("|rev") if t.endswith("|rev") else t + "|rev"
            differs = any(interpret(toggled, x) != interpret(t, x) for x in fresh_inputs(p, "hidden", 8, 8))
            assert not differs or any(interpret(toggled, i) != o for i, o in examples(p)), (p, t)


def test_any_program_that_behaves_the_same_is_right():
    verified, correct = run(["x[::-1]", "list(reversed(x))", "x|rev|rev|rev", "x|rev"])
    assert verified == correct == [True] * 4


def test_reproducing_the_examples_is_not_enough_for_the_audit():
    # descending order agrees with reversal on both examples, not on hidden inputs; a map of a digit the
    # examples lack passes the verifier (truth-free) and fails the audit (hidden inputs show every digit)
    verified, correct = run(["sorted(x)[::-1]", "x|sub(9,0)|rev", "x", "x|drop("])
    assert verified == [True, True, False, False]
    assert correct == [False, False, False, False]


def test_execution_voting_counts_programs_that_behave_alike_as_one():
    v = apply_filters(["none"], TASK, [REV] * 3,
                      [["x[::-1]", "list(reversed(x))", "x"], ["x", "x", "x[::-1]"], ["x[::-1]", "x", "sorted(x)"]],
                      [[True] * 3] * 3, [[0.9] * 3] * 3)
    assert v.labels[0] in ("x[::-1]", "list(reversed(x))") and v.vote_share[0] == pytest.approx(2 / 3)
    assert v.labels[1] == "x" and v.kept == [True, True, False] and v.drop_reason[2] == "vote: tie"
    # a failing program outvotes no working one
    v = apply_filters(["none"], TASK, [REV], [["x|drop(", "x|drop(", "x"]], [[True] * 3], [[0.9] * 3])
    assert (v.labels, v.kept, v.vote_share) == (["x"], [True], [pytest.approx(1 / 3)])


def test_with_the_verifier_only_verified_programs_vote():
    v = apply_filters(["verify"], TASK, [REV] * 3,
                      [["x", "x", "x[::-1]"], ["x", "x", "sorted(x)"], ["x[::-1]", "x", "x|rev"]],
                      [[True] * 3] * 3, [[0.9] * 3] * 3)
    assert v.labels[0] == "x[::-1]" and v.vote_share[0] == pytest.approx(1 / 3)  # two wrong ones do not outvote it
    assert v.labels[2] in ("x[::-1]", "x|rev") and v.vote_share[2] == pytest.approx(2 / 3)
    assert v.kept == [True, False, True] and v.drop_reason[1] == "verify: failed"


HOSTILE = {
    "loops forever": "sum(1 for _ in iter(int, 1))",
    "exits 0 early": "__import__('os')._exit(0)",
    "kills its sandbox": "__import__('os').kill(-1, 9)",
    "allocates 4 GB": "bytearray(4 << 30)",
    "writes outside": "open('/usr/planted', 'w').write('x')",
    "opens a connection": "__import__('socket').create_connection(('127.0.0.1', 22), 1)",
    "fork-bombs": "[__import__('os').fork() for _ in iter(int, 1)]",
    "reads the examples' outputs": "[int(c) for c in open('/proc/self/cmdline').read() if c.isdigit()]",
}


def test_hostile_programs_cost_one_candidate_each_and_the_round_carries_on():
    n = len(HOSTILE)
    v = apply_filters(["verify"], TASK, [REV] * (n + 1), [[a] * 3 for a in HOSTILE.values()] + [["x[::-1]"] * 3],
                      [[True] * 3] * (n + 1), [[0.9] * 3] * (n + 1))
    assert v.kept == [False] * n + [True]
    reasons = dict(zip(HOSTILE, v.drop_reason))
    assert reasons["loops forever"] == "sandbox: timeout"
    assert reasons["exits 0 early"] == reasons["kills its sandbox"] == "sandbox: crash"
    assert reasons["allocates 4 GB"] == "sandbox: memory"
    assert reasons["writes outside"] == reasons["opens a connection"] == "sandbox: error"
    assert reasons["fork-bombs"] in ("sandbox: timeout", "sandbox: error", "sandbox: crash")
    assert reasons["reads the examples' outputs"] == "verify: failed"
    assert not Path("/usr/planted").exists()


@pytest.fixture
def program_overrides(fake_overrides):
    return [*fake_overrides, "task.name=program_shown", "task.base=2", "loop.filters=['verify']",
            "loop.problems=60", "loop.rounds=1", "audit.problems=150", "audit.below=2", "audit.above=1",
            "guard.mode=off"]


def test_loop_judges_labels_by_behaviour(program_overrides):
    cfg = load_config("quick", program_overrides)
    run_dir = RunDir.create(Path(cfg.out_dir) / cfg.name, dump_toml(cfg), cfg.seed)
    history = run_loop(cfg, run_dir, make_learner=fakes.program_learner)
    m = history[1]
    assert m["difficulties"] == [[3]]
    c = run_dir.candidates(1).to_pydict()
    seeds = [cfg.seed, cfg.seed + 1000, cfg.seed + 2000]
    for p, outs, kept, label, reason, right in zip(c["prompt"], c["outputs"], c["kept"], c["label"],
                                                   c["drop_reason"], c["label_correct"]):
        assert outs == [fakes.program_answer(s, k, p) for k, s in enumerate(seeds)]
        good = [o for o in outs if o.removesuffix("|rev|rev") == p.split("=")[1]]
        # the right programs (some with |rev|rev after them) are one behaviour; the wrong ones fail the
        # verifier and do not vote: a problem is kept when any member is right
        assert kept == (len(good) >= 1)
        assert (label in good and right is True) if kept else (reason == "verify: failed" and right is None)
    assert m["label_precision"] == 1.0 and 0 < m["n_kept"] < 60
    # the audit counts an answer with |rev|rev as right: string equality would not
    a = pq.read_table(run_dir.round_dir(1) / "audit.parquet").to_pydict()
    suffixed = [ok for out, ok in zip(a["output"], a["correct"]) if out.endswith("|rev|rev")]
    assert suffixed and all(suffixed)
    assert m["audit"]["1"] == m["audit"]["2"] == 1.0
    # the audit's vote is by execution too: right when two of the three programs behave as the hidden one
    hard = [p for p, d in zip(a["prompt"], a["difficulty"]) if d == [3]]
    answers = [[fakes.program_answer(s, k, p) for k, s in enumerate(seeds)] for p in hard]
    right = [sum(o.removesuffix("|rev|rev") == p.split("=")[1] for o in outs) >= 2 for p, outs in zip(hard, answers)]
    assert m["audit"]["3"] == sum(right) / len(right) < 1.0
    # a vote on the text would not: where the first answer is wrong and the two right ones are written
    # differently, three texts tie and the first wins
    assert any(r and len(set(outs)) == 3 and outs[0].removesuffix("|rev|rev") != p.split("=")[1]
               for p, outs, r in zip(hard, answers, right))
