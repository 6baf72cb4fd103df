"""The planner: fixed and accelerated steps, and holding at a difficulty after a round that kept too
little. Label-free: it sees the committee's answers and kept shares, never truth."""

from pathlib import Path

import fakes

from selfimprove.config import dump_toml, load_config
from selfimprove.loop import run_loop
from selfimprove.planner import Plan, plan
from selfimprove.rundir import RunDir
from selfimprove.tasks import get_task


def start(overrides, name="tiny"):
    cfg = load_config("quick", [*overrides, f"name={name}"])
    return cfg, RunDir.create(Path(cfg.out_dir) / cfg.name, dump_toml(cfg), cfg.seed)


class Solver:
    """A stand-in committee that copies strings up to `limit` characters and garbles longer ones."""

    size = 1

    def __init__(self, limit):
        self.limit = limit

    def generate(self, prompts, advance=None, sampling=None):
        answers = [p[:-1] if len(p) - 1 <= self.limit else "x" for p in prompts]
        return [[a] for a in answers], [[True] for _ in prompts], [[1.0] for _ in prompts]


def test_accelerated_planner_takes_every_self_consistent_step_and_at_least_one():
    task = get_task("copy")
    cfg = load_config("quick", ["task.name=copy", "loop.planner=accelerated", "loop.probe_problems=20",
                                "committee.size=2", "loop.filters=['length']"])
    chosen = plan(task, cfg, Solver(limit=7), [(1,), (2,), (3,), (4,)], r=1)
    n = cfg.loop.problems
    assert chosen == Plan([(5,), (6,), (7,)], n, probes={"6": 1.0, "7": 1.0, "8": 0.0}, further=[n, n])
    assert plan(task, cfg, Solver(limit=0), [(1,), (2,), (3,), (4,)], r=1).difficulties == [(5,)]
    fixed = cfg.model_copy(update={"loop": cfg.loop.model_copy(update={"planner": "fixed"})})
    assert plan(task, fixed, Solver(limit=99), [(4,)], r=1) == Plan([(5,)], cfg.loop.problems)
    capped = cfg.model_copy(update={"loop": cfg.loop.model_copy(update={"max_jump": 2})})
    assert plan(task, capped, Solver(limit=99), [(4,)], r=1).difficulties == [(5,), (6,)]


def test_a_round_that_kept_too_little_is_followed_by_one_at_the_same_difficulty(fake_overrides):
    # fake members agree unanimously on about half of the 5-letter strings and a quarter of the 6-letter ones
    cfg, run = start([*fake_overrides, "loop.rounds=4", "loop.advance_at=0.4"])
    history = run_loop(cfg, run, make_learner=fakes.fake_learner)
    shares = [m["n_kept"] / m["n_generated"] for m in history[1:]]
    assert [m["difficulties"] for m in history[1:]] == [[[5]], [[6]], [[6]], [[6]]]
    assert shares[0] >= 0.4 and max(shares[1:]) < 0.4
    task = get_task("copy")
    previous = {"round": 1, "difficulties": [[5]], "n_kept": 39, "n_generated": 100}
    n = cfg.loop.problems
    assert plan(task, cfg, None, [(4,), (5,)], 2, [previous]) == Plan([(5,)], n)
    assert plan(task, cfg, None, [(4,), (5,)], 2, [{**previous, "n_kept": 40}]) == Plan([(6,)], n)
    assert plan(task, cfg, None, [(4,)], 1, [{"round": 0, "difficulties": [[4]], "n_kept": 0, "n_generated": 9}]
                ) == Plan([(5,)], n)


class Recorder(Solver):
    """A Solver that records every prompt it is asked."""

    def __init__(self, limit):
        super().__init__(limit)
        self.asked = []

    def generate(self, prompts, advance=None, sampling=None):
        self.asked.append(list(prompts))
        return super().generate(prompts, advance)


def test_probes_are_drawn_from_the_rounds_own_probe_stream():
    from selfimprove.tasks import stream_seed

    task = get_task("copy")
    cfg = load_config("quick", ["task.name=copy", "loop.planner=accelerated", "loop.probe_problems=7",
                                "committee.size=2", "loop.filters=['length']", "seed=5"])
    committee = Recorder(limit=6)
    plan(task, cfg, committee, [(4,)], r=3)
    # probes of 6 and 7 letters (5 is the fixed step): each from the stream (seed, "probe", round)
    assert committee.asked == [task.sample((d,), range(7), stream_seed(5, "probe", 3)).prompts for d in (6, 7)]
