"""The committee end to end on tiny configs: K members vote, parallel workers give the same numbers as
members run in turn, resume with K > 1, a failing member stops the round cleanly, noise injection
and the accelerated planner."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from selfimprove.committee import Committee, Member, MemberError
from selfimprove.config import TrainConfig, dump_toml, load_config
from selfimprove.learner import Learner
from selfimprove.loop import plan, run_loop, schedule
from selfimprove.rundir import RunDir
from selfimprove.tasks import get_task


def start(overrides, name="tiny"):
    cfg = load_config("quick", [*overrides, f"name={name}"])
    return cfg, RunDir.create(Path(cfg.out_dir) / cfg.name, dump_toml(cfg), cfg.seed)


def without_seconds(metrics):
    return [{k: v for k, v in m.items() if k != "seconds"} for m in metrics]


K3 = ["committee.size=3", "loop.filters=['majority', 'length']", "committee.agree=0.6", "loop.rounds=1"]


def test_three_members_vote_and_every_candidate_records_each_output(tiny_overrides):
    cfg, run = start([*tiny_overrides, *K3])
    history = run_loop(cfg, run)
    m = history[1]
    assert m["committee"] == 3 and len(m["audit_members"]) == 3
    c = run.candidates(1).to_pydict()
    for outputs, share, kept, reason, label in zip(c["outputs"], c["vote_share"], c["kept"], c["drop_reason"],
                                                   c["label"]):
        assert len(outputs) == 3
        top = max(outputs.count(o) for o in outputs)
        assert share == pytest.approx(top / 3)
        if share < 0.6:
            assert not kept and reason in ("majority: too few agree", "majority: tie")
        if kept:
            assert outputs.count(label) == top
    answers = [max(o, key=o.count) for o in c["outputs"]]
    right = [k for a, t, k in zip(answers, c["truth"], c["kept"]) if a == t]
    assert m["label_recall"] == (np.mean(right) if right else None)
    assert sum(m["drop_reasons"].values()) == m["n_generated"] - m["n_kept"]
    files = sorted(p.name for p in run.checkpoint_dir(1).iterdir())
    assert files == sorted(f"learner-{k}{s}" for k in range(3) for s in (".safetensors", ".optim.safetensors"))


def test_worker_processes_give_the_same_run_as_members_in_turn(tiny_overrides):
    _, run_a = start([*tiny_overrides, *K3, "loop.rounds=1"], "inline")
    a = run_loop(load_config(str(run_a.root / "config.toml")), run_a)
    _, run_b = start([*tiny_overrides, *K3, "loop.rounds=1", "committee.workers=2"], "workers")
    b = run_loop(load_config(str(run_b.root / "config.toml")), run_b)
    assert without_seconds(a) == without_seconds(b)


@pytest.mark.parametrize("ema", [[], ["train.ema=0.9"]], ids=["raw", "ema"])
def test_resume_with_three_members_equals_an_uninterrupted_run(tiny_overrides, ema):
    cfg, run = start([*tiny_overrides, *K3, *ema, "loop.rounds=2"], "whole")
    whole = run_loop(cfg, run)
    cfg1, part = start([*tiny_overrides, *K3, *ema, "loop.rounds=1"], "part")
    run_loop(cfg1, part)
    resumed = run_loop(cfg1.model_copy(update={"loop": cfg1.loop.model_copy(update={"rounds": 2})}), part)
    assert without_seconds(resumed) == without_seconds(whole)
    files = {p.name for p in part.checkpoint_dir(2).iterdir()}
    assert ("learner-2.ema.safetensors" in files) == bool(ema)
    assert set(part.manifest()["rounds"]["0002"]["checkpoint"]) == files


def test_a_failing_member_is_named_by_seed_and_nothing_is_committed(tiny_overrides, monkeypatch):
    original = Member.train

    def train(self, r, *args):
        if self.k == 1 and r == 1:
            raise RuntimeError("out of memory")
        return original(self, r, *args)

    monkeypatch.setattr(Member, "train", train)
    cfg, run = start([*tiny_overrides, *K3, "seed=7"])
    with pytest.raises(MemberError, match=r"member 1 \(seed 1007\).*out of memory"):
        run_loop(cfg, run)
    assert run.committed() == [0] and not run.round_dir(1).exists() and len(run.metrics()) == 1


def test_a_dead_worker_is_reported_with_its_members_seeds(tiny_overrides):
    cfg = load_config("quick", [*tiny_overrides, *K3, "committee.workers=2"])
    committee = Committee(cfg, get_task(cfg.task.name))
    try:
        proc = committee.workers[1][0]
        proc.kill()
        proc.join()
        with pytest.raises(MemberError, match=r"\[1\] \(seeds \[1000\]\)"):
            committee.generate(["12+34="])
    finally:
        committee.close()
    assert not any(p.is_alive() for p, _, _ in committee.workers)


def test_noise_corrupts_the_asked_share_of_kept_labels(tiny_overrides):
    cfg, run = start([*tiny_overrides, "loop.filters=['none']", "noise.round=1", "noise.share=0.5",
                      "noise.kind=perturb"])
    history = run_loop(cfg, run)
    c = run.candidates(1).to_pydict()
    corrupted = [i for i, x in enumerate(c["corrupted"]) if x]
    assert len(corrupted) == history[1]["n_corrupted"] == round(0.5 * history[1]["n_kept"])
    assert all(c["label"][i] != c["outputs"][i][0] for i in corrupted)
    assert all(c["label"][i] == c["outputs"][i][0] for i in range(len(c["label"])) if i not in corrupted)
    assert not any(run.candidates(2).to_pydict()["corrupted"])


class Solver:
    """A stand-in committee that copies strings up to `limit` characters and garbles longer ones."""

    size = 1

    def __init__(self, limit):
        self.limit = limit

    def generate(self, prompts, advance=None):
        answers = [p[:-1] if len(p) - 1 <= self.limit else "x" for p in prompts]
        return [[a] for a in answers], [[True] for _ in prompts], [[1.0] for _ in prompts]


def test_accelerated_planner_takes_every_self_consistent_step_and_at_least_one():
    task = get_task("copy")
    cfg = load_config("quick", ["task.name=copy", "loop.planner=accelerated", "loop.probe_problems=20",
                                "committee.size=2", "loop.filters=['length']"])
    chosen, probes = plan(task, cfg, Solver(limit=7), [(1,), (2,), (3,), (4,)], r=1)
    assert chosen == [(5,), (6,), (7,)] and probes == {"6": 1.0, "7": 1.0, "8": 0.0}
    chosen, _ = plan(task, cfg, Solver(limit=0), [(1,), (2,), (3,), (4,)], r=1)
    assert chosen == [(5,)]
    fixed = cfg.model_copy(update={"loop": cfg.loop.model_copy(update={"planner": "fixed"})})
    assert plan(task, fixed, Solver(limit=99), [(4,)], r=1) == ([(5,)], {})
    capped = cfg.model_copy(update={"loop": cfg.loop.model_copy(update={"max_jump": 2})})
    assert plan(task, capped, Solver(limit=99), [(4,)], r=1)[0] == [(5,), (6,)]


def test_a_round_that_kept_too_little_is_followed_by_one_at_the_same_difficulty(tiny_overrides):
    cfg, run = start([*tiny_overrides, "loop.rounds=3", "loop.advance_at=0.9", "loop.filters=['length']"])
    history = run_loop(cfg, run)
    for before, after in zip(history[1:], history[2:]):
        held = before["n_kept"] < 0.9 * before["n_generated"]
        step = after["difficulties"][0][0] - before["difficulties"][0][0]
        assert step == (0 if held else 1)
    assert history[1]["n_kept"] < 0.9 * history[1]["n_generated"]  # the tiny learner fails the length filter
    task = get_task("copy")
    previous = {"round": 1, "difficulties": [[5]], "n_kept": 89, "n_generated": 100}
    assert plan(task, cfg, None, [(4,), (5,)], 2, previous) == ([(5,)], {})
    assert plan(task, cfg, None, [(4,), (5,)], 2, {**previous, "n_kept": 90}) == ([(6,)], {})
    assert plan(task, cfg, None, [(4,)], 1, {"round": 0, "difficulties": [[4]], "n_kept": 0, "n_generated": 9}
                ) == ([(5,)], {})


@pytest.mark.parametrize("overrides, message", [
    (["loop.filters=['verify']"], "no verifier"),
    (["task.name=maze_nodes", "task.base=7", "loop.filters=['verify']"], "base must exceed 9"),
    (["task.name=maze_hops", "task.base=30", "loop.filters=['verify']"], "cannot draw"),
    (["task.name=maze_hops", "task.nodes=3", "task.base=3", "loop.filters=['verify']"], "cannot draw"),
    (["task.nodes=10"], "task.nodes sets the tree size of maze_hops"),
    (["loop.planner=accelerated"], "committee.size > 1"),
    (["noise.round=9", "loop.rounds=3"], "after the last round"),
])
def test_configs_that_cannot_run_are_refused_up_front(overrides, message):
    from selfimprove.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_config("quick", overrides)


def test_members_differ_by_seed(tiny_overrides):
    cfg = load_config("quick", [*tiny_overrides, "committee.size=2"])
    committee = Committee(cfg, get_task(cfg.task.name))
    a, b = (m.learner.model.head.weight for m in committee.members)
    assert not np.allclose(a.detach().numpy(), b.detach().numpy())


def test_later_rounds_train_at_round_lr(tiny_overrides):
    cfg = load_config("quick", [*tiny_overrides, "train.lr=0.01", "train.round_lr=0.002"])
    member = Member(cfg, 0)
    seed = member.task.sample_seed((1,), range(50), 0)
    member.add(0, [((1,), seed.prompts, seed.truths, 1.0)], lambda n: None)
    for r, peak in [(0, 0.01), (1, 0.002), (2, 0.002)]:
        # every round's schedule ends its decay at 1% of that round's peak
        member.train(r, *schedule(cfg.train, r), advance=lambda n: None)
        assert member.learner.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * peak)


def test_the_moving_average_follows_every_step_and_is_what_labels(tiny_overrides):
    cfg = load_config("quick", [*tiny_overrides, "train.ema=0.75"])
    member = Member(cfg, 0)
    learner = member.learner
    seed = member.task.sample_seed((2,), range(50), 0)
    member.add(0, [((2,), seed.prompts, seed.truths, 1.0)], lambda n: None)
    expected = [p.detach().clone() for p in learner.model.parameters()]  # the average starts at the init

    def follow(step, loss):
        for e, p in zip(expected, learner.model.parameters()):
            e.mul_(0.75).add_(p.detach(), alpha=0.25)

    learner.train(member.corpus.batches(0, "accumulate", 32, np.random.default_rng(0)), 5, 0, 1, follow)
    for e, a, p in zip(expected, learner.ema.parameters(), learner.model.parameters()):
        torch.testing.assert_close(a, e)
        assert not torch.equal(a, p)
    # what labels is the average: a learner without one, holding the average's weights, answers alike
    plain = Learner(learner.vocab, copy.deepcopy(learner.ema), TrainConfig(), learner.device)
    prompts = member.task.sample((3,), range(40), 1).prompts
    assert plain.generate(prompts, [4] * 40) == learner.generate(prompts, [4] * 40)
