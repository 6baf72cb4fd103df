"""The committee end to end on tiny configs: K members vote, parallel workers give the same numbers as
members run in turn, resume with K > 1, a failing member stops the round cleanly, noise injection
and the accelerated planner."""

import copy
from pathlib import Path

import fakes
import numpy as np
import pytest
import torch

from selfimprove.committee import GREEDY, Committee, Member, MemberError
from selfimprove.config import TrainConfig, dump_toml, load_config
from selfimprove.learner import Learner
from selfimprove.loop import run_loop, schedule
from selfimprove.rundir import RunDir
from selfimprove.tasks import get_task


def start(overrides, name="tiny"):
    cfg = load_config("quick", [*overrides, f"name={name}"])
    return cfg, RunDir.create(Path(cfg.out_dir) / cfg.name, dump_toml(cfg), cfg.seed)


def without_seconds(metrics):
    return [{k: v for k, v in m.items() if k != "seconds"} for m in metrics]


K3 = ["committee.size=3", "loop.filters=['majority', 'length']", "committee.agree=0.6", "loop.rounds=1"]


@pytest.mark.learns
def test_three_members_vote_and_every_candidate_records_each_output(tiny_overrides):
    cfg, run = start([*tiny_overrides, *K3])
    history = run_loop(cfg, run)
    m = history[1]
    assert m["committee"] == 3 and len(m["audit_members"]) == 3
    c = run.candidates(1).to_pydict()
    for outputs, finished, share, kept, reason, label in zip(c["outputs"], c["finished"], c["vote_share"], c["kept"],
                                                             c["drop_reason"], c["label"]):
        assert len(outputs) == len(finished) == 3
        votes = list(zip(outputs, finished))  # an answer cut at the budget is not the same vote as one with EOS
        top = max(votes.count(v) for v in votes)
        assert share == pytest.approx(top / 3)
        if share < 0.6:
            assert not kept and reason in ("majority: too few agree", "majority: tie")
        if kept:
            assert votes.count((label, True)) == top  # kept labels passed the length filter: they ended in EOS
    answers = [max(zip(o, f), key=list(zip(o, f)).count)[0] for o, f in zip(c["outputs"], c["finished"])]
    right = [k for a, t, k in zip(answers, c["truth"], c["kept"]) if a == t]
    assert m["label_recall"] == (np.mean(right) if right else None)
    assert sum(m["drop_reasons"].values()) == m["n_generated"] - m["n_kept"]
    files = sorted(p.name for p in run.checkpoint_dir(1).iterdir())
    assert files == sorted(f"learner-{k}{s}" for k in range(3) for s in (".safetensors", ".optim.safetensors"))


@pytest.mark.learns
def test_worker_processes_give_the_same_run_as_members_in_turn(tiny_overrides):
    _, run_a = start([*tiny_overrides, *K3, "loop.rounds=1"], "inline")
    a = run_loop(load_config(str(run_a.root / "config.toml")), run_a)
    _, run_b = start([*tiny_overrides, *K3, "loop.rounds=1", "committee.workers=2"], "workers")
    b = run_loop(load_config(str(run_b.root / "config.toml")), run_b)
    assert without_seconds(a) == without_seconds(b)


@pytest.mark.learns
@pytest.mark.parametrize("ema", [[], ["train.ema=0.9"]], ids=["raw", "ema"])
def test_resume_with_three_members_equals_an_uninterrupted_run(tiny_overrides, ema):
    cfg, run = start([*tiny_overrides, *K3, *ema, "loop.rounds=2"], "whole")
    whole = run_loop(cfg, run)
    cfg1, part = start([*tiny_overrides, *K3, *ema, "loop.rounds=1"], "part")
    run_loop(cfg1, part)
    resumed = run_loop(cfg1.model_copy(update={"loop": cfg1.loop.model_copy(update={"rounds": 2})}), part)
    assert without_seconds(resumed) == without_seconds(whole)
    last = max(m["round"] for m in whole if m["decision"] == "commit")  # a round that kept nothing has no weights
    files = {p.name for p in part.checkpoint_dir(last).iterdir()}
    assert ("learner-2.ema.safetensors" in files) == bool(ema)
    assert set(part.manifest()["rounds"][f"{last:04d}"]["checkpoint"]) == files


def test_a_failing_member_is_named_by_seed_and_nothing_is_committed(fake_overrides, monkeypatch):
    original = Member.train

    def train(self, r, *args):
        if self.k == 1 and r == 1:
            raise RuntimeError("out of memory")
        return original(self, r, *args)

    monkeypatch.setattr(Member, "train", train)
    cfg, run = start([*fake_overrides, "seed=7"])
    with pytest.raises(MemberError, match=r"member 1 \(seed 1007\).*out of memory"):
        run_loop(cfg, run, make_learner=fakes.fake_learner)
    assert run.committed() == [0] and not run.round_dir(1).exists() and len(run.metrics()) == 1


@pytest.mark.learns
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


def test_noise_corrupts_the_asked_share_of_kept_labels(fake_overrides):
    cfg, run = start([*fake_overrides, "committee.size=1", "loop.filters=['none']", "noise.round=1",
                      "noise.share=0.5", "noise.kind=perturb"])
    history = run_loop(cfg, run, make_learner=fakes.fake_learner)
    c = run.candidates(1).to_pydict()
    corrupted = [i for i, x in enumerate(c["corrupted"]) if x]
    assert len(corrupted) == history[1]["n_corrupted"] == round(0.5 * history[1]["n_kept"])
    assert all(c["label"][i] != c["outputs"][i][0] for i in corrupted)
    assert all(c["label"][i] == c["outputs"][i][0] for i in range(len(c["label"])) if i not in corrupted)
    assert not any(run.candidates(2).to_pydict()["corrupted"])
    # the corruption is drawn from the round's own noise stream: the same labels on every run of this config
    from selfimprove.noise import corrupt
    from selfimprove.tasks import stream_seed

    expected, chosen = corrupt([o[0] for o in c["outputs"]], c["kept"], 0.5, "perturb",
                               np.random.default_rng(stream_seed(cfg.seed, "noise", 1)))
    assert c["label"] == expected and c["corrupted"] == chosen


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
    for r, peak in [(0, 0.01), (1, 0.002), (2, 0.002)]:
        seed = member.task.sample_seed((r + 1,), range(50), 0)
        member.add(r, [((r + 1,), seed.prompts, seed.truths, 1.0)], lambda n: None)
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
    for e, a, p in zip(expected, learner.ema, learner.model.parameters()):
        torch.testing.assert_close(a, e)
        assert not torch.equal(a, p)
    # what labels is the average: a learner without one, holding the average's weights, answers alike
    average = copy.deepcopy(learner.model)
    with torch.no_grad():
        for p, a in zip(average.parameters(), learner.ema):
            p.copy_(a)
    raw = [p.detach().clone() for p in learner.model.parameters()]
    plain = Learner(learner.vocab, average, TrainConfig(), learner.device)
    prompts = member.task.sample((3,), range(40), 1).prompts
    assert plain.generate(prompts, [4] * 40) == learner.generate(prompts, [4] * 40)
    assert all(torch.equal(x, p) for x, p in zip(raw, learner.model.parameters()))  # and the raw weights are back


# --- exact values with fake members (tests/fakes.py) ----------------------------------------------


def test_worker_processes_return_each_members_answers_in_member_order(fake_overrides):
    cfg, inline = start([*fake_overrides, "loop.rounds=1"], "inline")
    a = run_loop(cfg, inline, make_learner=fakes.fake_learner)
    cfg, workers = start([*fake_overrides, "loop.rounds=1", "committee.workers=2"], "workers")
    b = run_loop(cfg, workers, make_learner=fakes.fake_learner)
    assert without_seconds(a) == without_seconds(b)
    c = workers.candidates(1).to_pydict()
    seeds = [cfg.seed + 1000 * k for k in range(3)]
    assert c["outputs"] == [[fakes.answer(s, k, p) for k, s in enumerate(seeds)] for p in c["prompt"]]
    assert c["confidence"] == [[fakes.RIGHT_CONFIDENCE if fakes.is_right(s, k, p) else fakes.WRONG_CONFIDENCE
                                for k, s in enumerate(seeds)] for p in c["prompt"]]
    # the members differ, so a permutation of them shows in every per-member figure
    assert len({str(m) for m in b[1]["audit_members"]}) == 3


@pytest.mark.parametrize("workers", [1, 2])
def test_sampled_votes_count_every_answer_of_every_member(fake_overrides, workers):
    cfg, run = start([*fake_overrides, "loop.rounds=1", "committee.size=2", "committee.samples=3",
                      "committee.temperature=0.7", "committee.agree=0.6", f"committee.workers={workers}"])
    history = run_loop(cfg, run, make_learner=fakes.fake_learner)
    c = run.candidates(1).to_pydict()
    who = [(k, s) for k in range(2) for s in range(3)]
    assert all(m == [k for k, _ in who] and s == [s for _, s in who] for m, s in zip(c["member"], c["sample"]))
    assert c["outputs"] == [[fakes.answer(fakes.sample_seed(1000 * k, s), k, p) for k, s in who]
                            for p in c["prompt"]]
    labels = []
    for outs, kept, share in zip(c["outputs"], c["kept"], c["vote_share"]):
        top = max(outs, key=outs.count)
        assert share == outs.count(top) / 6  # the vote is over all K x N answers
        assert kept == (share >= 0.6 and outs.count(top) > max((outs.count(o) for o in set(outs) - {top}), default=0))
        labels.append(top if kept else None)
    assert c["label"] == labels and 0 < sum(c["kept"]) < len(labels)
    good = [lab == fakes.truth(p) for lab, p in zip(labels, c["prompt"]) if lab is not None]
    assert history[1]["label_precision"] == sum(good) / len(good) and history[1]["samples"] == 3


def test_per_member_problems_are_each_members_own_and_all_vote(fake_overrides):
    cfg, run = start([*fake_overrides, "loop.rounds=1", "committee.problems=per_member"])
    history = run_loop(cfg, run, make_learner=fakes.fake_learner)
    c = run.candidates(1).to_pydict()
    assert history[1]["n_generated"] == 3 * cfg.loop.problems
    proposed = [[p for p, k in zip(c["prompt"], c["proposer"]) if k == member] for member in range(3)]
    assert [len(p) for p in proposed] == [cfg.loop.problems] * 3
    assert not set(proposed[0]) & set(proposed[1]) and not set(proposed[1]) & set(proposed[2])  # 26^5 strings
    assert all(len(outs) == 3 for outs in c["outputs"])


def test_vote_confidence_averages_only_the_members_that_gave_the_label(fake_overrides):
    # length 6: members right 60%, 50%, 40%; a label given by two members at confidence 0.75 and one wrong
    # member at 0.25 passes min_confidence 0.7 only if the wrong member's 0.25 is left out of the mean
    cfg, run = start([*fake_overrides, "loop.rounds=2", "committee.agree=0.6",
                      "loop.filters=['majority', 'length', 'confidence']", "loop.min_confidence=0.7"])
    history = run_loop(cfg, run, make_learner=fakes.fake_learner)
    c = run.candidates(2).to_pydict()
    split = [i for i, outs in enumerate(c["outputs"]) if len(set(outs)) == 2]
    assert split
    for i in split:
        right = c["label"][i] is not None
        assert right == (fakes.truth(c["prompt"][i]) == max(c["outputs"][i], key=c["outputs"][i].count))
    assert history[2]["label_precision"] == 1.0


class Weighted(type(get_task("copy"))):
    """Copy, with seed data of length d weighted d (hand-computable mixture weights)."""

    def seed_weight(self, difficulty):
        return float(difficulty[0])


@pytest.mark.parametrize("mix, expected", [("task", [0.5, 1.0, 1.5]), ("uniform", [1.0, 1.0, 1.0])])
def test_seed_levels_are_weighted_by_seed_mix_and_later_levels_weigh_one(tiny_overrides, mix, expected):
    cfg = load_config("quick", [*tiny_overrides, f"task.seed_mix={mix}"])
    committee = Committee(cfg, Weighted())
    seed = [(d, p) for d in (1, 2, 3) for p in Weighted().sample((d,), range(4), 0).prompts]
    committee.add(0, [[d] for d, _ in seed], [p for _, p in seed], [p[:-1] for _, p in seed])
    # weights d scaled to average 1 over the three seed levels: 3 / (1 + 2 + 3) * d
    assert [lv.weight for lv in committee.members[0].corpus.levels] == expected
    committee.add(1, [[4], [4], [5]], ["abcd=", "bcde=", "abcde="], ["abcd", None, "abcde"])
    levels = committee.members[0].corpus.levels
    new = [(lv.difficulty, lv.round, lv.weight, lv.size) for lv in levels[3:]]
    assert new == [((4,), 1, 1.0, 1), ((5,), 1, 1.0, 1)]  # the dropped label (None) is not added


def test_a_request_to_a_gone_worker_names_its_members_seeds(fake_overrides):
    import multiprocessing as mp

    cfg = load_config("quick", [*fake_overrides, "seed=7"])
    committee = Committee(cfg, get_task(cfg.task.name), fakes.fake_learner)
    parent, child = mp.Pipe()
    child.close()  # the worker's end is gone, as when its process died
    with pytest.raises(MemberError, match=r"member\(s\) \[1, 2\] \(seeds \[1007, 2007\]\) are gone"):
        committee._send(parent, ("generate", ()), [1, 2])


def test_an_explicit_device_wins_over_detection(tiny_overrides, monkeypatch):
    from selfimprove.committee import build_learner

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # `auto` would pick cuda
    cfg = load_config("quick", tiny_overrides)  # device=cpu
    assert build_learner(cfg, get_task(cfg.task.name), 0).device == torch.device("cpu")


def test_a_member_labels_in_label_batches_and_reports_every_answer(tiny_overrides):
    cfg = load_config("quick", [*tiny_overrides, "loop.label_batch=2"])
    member = Member(cfg, 0)
    prompts = member.task.sample((3,), range(5), 0).prompts
    advanced = []
    texts, finished, confidence = member.generate(prompts, [4] * 5, GREEDY, advanced.append)
    alone = member.learner.generate(prompts, [4] * 5)  # batching changes no answer
    assert (texts, finished) == alone[:2] and confidence == pytest.approx(alone[2], rel=1e-5)
    assert advanced == [2, 2, 1]


# --- what members pass their learners: sampling settings, random streams -----------------------


class Recorder:
    """A learner that records what it is asked: the generate calls' arguments, and the first draws of
    torch's random stream when a training round starts (what a Hugging Face model's dropout would draw)."""

    def __init__(self, cfg, task, seed):
        from selfimprove.learner import Vocab

        self.vocab, self.calls, self.draws = Vocab(task.alphabet), [], []

    def generate(self, prompts, budgets, batch_size=1024, **kwargs):
        self.calls.append((len(prompts), batch_size, kwargs))
        return [p[:-1] for p in prompts], [True] * len(prompts), [1.0] * len(prompts)

    def train(self, batches, steps, warmup, decay, on_step=None, peak=None):
        self.draws.append(torch.rand(4).tolist())
        return []


def test_a_member_passes_its_sampling_on_with_a_random_stream_per_chunk(fake_overrides):
    from selfimprove.committee import Sampling, labelling

    cfg = load_config("quick", [*fake_overrides, "loop.label_batch=2", "committee.samples=3",
                                "committee.temperature=0.7", "committee.top_p=0.9"])
    assert labelling(cfg, 11) == Sampling(samples=3, temperature=0.7, top_p=0.9, seed=11)
    members = [Member(cfg, k, Recorder) for k in range(2)]
    prompts = ["ab=", "b=", "ba=", "aab=", "a="]

    def calls(member, sampling):
        member.learner.calls.clear()
        member.generate(prompts, [4] * 5, sampling, lambda n: None)
        return member.learner.calls

    assert [c[:2] for c in calls(members[0], GREEDY)] == [(2, 2), (2, 2), (1, 2)]
    assert all(kwargs == {} for *_, kwargs in calls(members[0], GREEDY))
    sampled = calls(members[0], labelling(cfg, 11))
    seeds = [kwargs.pop("seed") for *_, kwargs in sampled]
    assert all(kwargs == {"samples": 3, "temperature": 0.7, "top_p": 0.9} for *_, kwargs in sampled)
    assert len(set(seeds)) == 3  # a stream per chunk ...
    assert seeds == [c[2]["seed"] for c in calls(members[0], labelling(cfg, 11))]  # ... the same on every call
    assert not set(seeds) & {c[2]["seed"] for c in calls(members[0], labelling(cfg, 12))}  # of this round's seed
    assert not set(seeds) & {c[2]["seed"] for c in calls(members[1], labelling(cfg, 11))}  # and this member
    # one sample at a temperature, or several greedy ones, still pass what they ask for
    for one in (Sampling(1, 0.7, 1.0, 11), Sampling(3, 0.0, 1.0, 11)):
        assert all(kwargs["samples"] == one.samples and kwargs["temperature"] == one.temperature
                   for *_, kwargs in calls(members[0], one))


def test_each_training_round_draws_from_its_own_torch_stream(fake_overrides):
    cfg = load_config("quick", fake_overrides)
    members = [Member(cfg, k, Recorder) for k in range(2)]
    for m in members:
        m.add(0, [((2,), ["ab=", "ba="], ["ab", "ba"], 1.0)], lambda n: None)
    for r, junk in [(0, 1), (1, 2), (0, 3)]:
        torch.manual_seed(junk)  # whatever drew before, the round draws alike
        for m in members:
            m.train(r, 2, 0, 1, 1e-3, lambda n: None)
    a, b = members[0].learner.draws, members[1].learner.draws
    assert a[0] == a[2] and a[0] != a[1]  # a round's own stream: the same on a rerun of round 0, not round 1's
    assert a[0] != b[0]  # and each member's own


@pytest.mark.parametrize("steps, reports", [(5, [1] * 5), (301, [3] * 100 + [1])])
def test_training_reports_progress_in_about_a_hundred_chunks_that_add_up(fake_overrides, steps, reports):
    cfg = load_config("quick", fake_overrides)
    member = Member(cfg, 0, fakes.fake_learner)
    member.add(0, [((2,), ["ab=", "ba="], ["ab", "ba"], 1.0)], lambda n: None)
    advanced = []
    member.train(0, steps, 0, 1, 1e-3, advanced.append)
    assert advanced == reports


def test_a_member_trains_on_its_newest_round_alone_when_data_replaces(fake_overrides, monkeypatch):
    cfg = load_config("quick", [*fake_overrides, "loop.data=replace"])
    member = Member(cfg, 0, fakes.fake_learner)
    member.add(0, [((2,), ["ab=", "ba="], ["ab", "ba"], 1.0)], lambda n: None)
    member.add(1, [((3,), ["abc=", "bca="], ["abc", "bca"], 1.0)], lambda n: None)
    trained = fakes.record_training(monkeypatch)
    member.train(1, 5, 0, 1, 1e-3, lambda n: None)
    assert trained and set(trained) <= {"abc=abc", "bca=bca"}
