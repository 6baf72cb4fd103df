"""The loop end to end on a tiny config: the run-directory contract, metrics that agree with the
parquet files, the truth rule, and resume after kill -9 giving the metrics of an uninterrupted run."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest.mock import ANY

import fakes
import numpy as np
import pyarrow.parquet as pq
import pytest

from selfimprove.config import dump_toml, load_config
from selfimprove.loop import CANDIDATE_SCHEMA, run_loop
from selfimprove.rundir import RunDir
from selfimprove.tasks import TASKS, Batch, register
from selfimprove.tasks.strings import Copy


def start(overrides):
    cfg = load_config("quick", overrides)
    return cfg, RunDir.create(Path(cfg.out_dir) / cfg.name, dump_toml(cfg), cfg.seed)


def without_seconds(metrics):
    return [{k: v for k, v in m.items() if k != "seconds"} for m in metrics]


@pytest.mark.learns
def test_run_directory_contract(tiny_overrides):
    cfg, run = start(tiny_overrides)
    history = run_loop(cfg, run)
    root = run.root
    assert [m["round"] for m in history] == [0, 1, 2]
    assert (root / "config.toml").read_text() == dump_toml(cfg)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["committed_rounds"] == [0, 1, 2]
    lines = [json.loads(x) for x in (root / "metrics.jsonl").read_text().splitlines()]
    assert lines == history
    for m in lines:
        assert {"round", "difficulties", "n_generated", "n_kept", "label_precision", "audit", "frontier",
                "train_steps", "seconds", "decision"} <= set(m)
        assert set(m["seconds"]) == {"plan", "act", "verify", "learn", "check"} | {"guard"} - {"guard"[m["round"]:]}
    for m in lines[1:]:  # label-free signals of every self-round, whatever the guard and the filters
        assert {"unanimity", "support", "confidence_kept", "no_eos", "bad_length", "drift"} <= set(m["signals"])
        assert m["attempt"] == 1 and m["plan"] == {"problems": [200], "strict": False}
    assert lines[1]["difficulties"] == [[4]] and lines[2]["difficulties"] == [[5]]
    assert set(lines[0]["audit"]) == set("12345") and set(lines[2]["audit"]) == set("234567")
    for r in range(3):
        cand = pq.read_table(root / "rounds" / f"{r:04d}" / "candidates.parquet")
        assert {"round", "difficulty", "prompt", "outputs", "label", "kept", "drop_reason", "vote_share",
                "truth", "label_correct"} <= set(cand.column_names)
        audit = pq.read_table(root / "rounds" / f"{r:04d}" / "audit.parquet").to_pydict()
        for d, acc in lines[r]["audit"].items():
            rows = [c for dd, c in zip(audit["difficulty"], audit["correct"]) if dd == [int(d)]]
            assert len(rows) == cfg.audit.problems and np.mean(rows) == acc
        files = sorted(p.name for p in (root / "checkpoints" / f"{r:04d}").iterdir())
        assert files == ["learner-0.optim.safetensors", "learner-0.safetensors"]
        assert set(manifest["rounds"][f"{r:04d}"]["checkpoint"]) == set(files)


@pytest.mark.learns
def test_label_precision_equals_recomputation_from_candidates(tiny_overrides):
    cfg, run = start(tiny_overrides)
    history = run_loop(cfg, run)
    for m in history[1:]:
        c = pq.read_table(run.round_dir(m["round"]) / "candidates.parquet").to_pydict()
        kept = [i for i, k in enumerate(c["kept"]) if k]
        assert m["n_generated"] == len(c["prompt"]) and m["n_kept"] == len(kept)
        recomputed = np.mean([c["label"][i] == c["truth"][i] for i in kept]) if kept else None
        assert m["label_precision"] == recomputed
        assert all(c["label_correct"][i] == (c["label"][i] == c["truth"][i]) for i in kept)
        dropped = [i for i, k in enumerate(c["kept"]) if not k]
        assert all(c["label"][i] is None and c["drop_reason"][i] for i in dropped)


# --- the truth rule ---------------------------------------------------------------------------------


class Oracle(list):
    """Truth that records every read."""

    reads: list[str] = []

    def __getitem__(self, i):
        Oracle.reads.append("item")
        return super().__getitem__(i)

    def __iter__(self):
        Oracle.reads.append("iter")
        return super().__iter__()


class SecretCopy(Copy):
    """Truth is a secret string unrelated to the prompt: no model can output it by itself."""

    name = "test_secret_copy"

    def sample(self, difficulty, index, seed):
        b = super().sample(difficulty, index, seed)
        secret = super().sample(difficulty, np.asarray(index) + 10**6, seed + 1).truths
        return Batch(b.difficulty, b.prompts, Oracle(secret))


def test_truth_rule_no_self_round_label_comes_from_truth(fake_overrides, monkeypatch):
    if "test_secret_copy" not in TASKS:
        register(SecretCopy())
    trained = fakes.record_training(monkeypatch)
    cfg, run = start([*fake_overrides, "task.name=test_secret_copy", "loop.filters=['none']", "committee.size=1"])
    run_loop(cfg, run, make_learner=fakes.fake_learner)
    assert Oracle.reads, "the oracle must be consulted (seed data and audit use truth)"
    self_truth, self_output = set(), set()
    for r in (1, 2):
        c = run.candidates(r).to_pydict()
        for prompt, outputs, lab, truth in zip(c["prompt"], c["outputs"], c["label"], c["truth"]):
            assert lab == outputs[0]  # the label is the model's answer
            if truth != outputs[0]:
                self_truth.add(prompt + truth)
            self_output.add(prompt + outputs[0])
    assert self_truth, "the test needs outputs that differ from truth"
    seen = set(trained)
    assert not seen & self_truth, "a self-round training example carries a truth label"
    assert seen & self_output, "self-round labels must reach training"


# --- crash and resume -------------------------------------------------------------------------------

KILL_DURING_LEARN = """
import os, signal, sys, torch
torch.set_num_threads(1)
from selfimprove.learner import Learner
from selfimprove.cli import main
calls = 0
original = Learner.train
def train(self, *a, **kw):
    global calls
    calls += 1
    if calls == 2:  # round 1, after labelling, in the middle of training
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, *a, **kw)
Learner.train = train
sys.argv = ["selfimprove", *sys.argv[1:]]
main()
"""

PLAIN = """
import sys, torch
torch.set_num_threads(1)
from selfimprove.cli import main
sys.argv = ["selfimprove", *sys.argv[1:]]
main()
"""


def cli(script, *args):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})


@pytest.mark.learns
def test_resume_after_kill_9_matches_an_uninterrupted_run(tiny_overrides, tmp_path):
    sets = [x for o in tiny_overrides if not o.startswith("name=") for x in ("--set", o)]
    ref = cli(PLAIN, "run", *sets, "--set", "name=ref")
    assert ref.returncode == 0, ref.stderr
    reference = RunDir.open(tmp_path / "runs" / "ref").metrics()
    assert len(reference) == 3

    # a kill at every file operation of the commit: tests/test_rundir.py
    for name, script in (("learn", KILL_DURING_LEARN),):
        killed = cli(script, "run", *sets, "--set", f"name={name}")
        assert killed.returncode == -9
        root = tmp_path / "runs" / name
        run = RunDir.open(root)
        assert run.committed() == [0] and len(run.metrics()) == 1  # no partial round is visible
        status = cli(PLAIN, "status", str(root))
        assert "committed rounds: 1" in status.stdout
        resumed = cli(PLAIN, "resume", str(root))
        assert resumed.returncode == 0, resumed.stderr
        assert RunDir.open(root).committed() == [0, 1, 2]
        assert not list(root.rglob("*.tmp"))
        assert without_seconds(RunDir.open(root).metrics()) == without_seconds(reference)


def test_loop_stops_at_the_target_difficulty(fake_overrides):
    cfg, run = start([*fake_overrides, "loop.rounds=5", "loop.target=6", "loop.filters=['none']"])
    history = run_loop(cfg, run, make_learner=fakes.fake_learner)
    assert [m["difficulties"] for m in history] == [[[1], [2], [3], [4]], [[5]], [[6]]]
    assert run.manifest()["status"] == "finished"


# --- exact values, with fake learners whose answers are known (tests/fakes.py) -----------------------


def expected_round(prompts, seeds, agree=1.0):
    """What the filters majority (at `agree`) + length must make of fake members' answers, computed here
    from tests/fakes.py and the test's own truth: outputs, kept, label, vote_share."""
    rows = []
    for p in prompts:
        outs = [fakes.answer(s, k, p) for k, s in enumerate(seeds)]
        top = max(set(outs), key=outs.count)
        share = outs.count(top) / len(outs)
        rows.append((outs, share >= agree, top, share))
    return rows


def test_metrics_are_exact_with_fake_members(fake_overrides):
    cfg, run = start(fake_overrides)
    history = run_loop(cfg, run, make_learner=fakes.fake_learner)
    seeds = [cfg.seed, cfg.seed + 1000, cfg.seed + 2000]
    assert [m["difficulties"] for m in history] == [[[1], [2], [3], [4]], [[5]], [[6]]]
    precisions = []
    for m in history[1:]:
        c = run.candidates(m["round"]).to_pydict()
        rows = expected_round(c["prompt"], seeds)
        assert c["outputs"] == [outs for outs, *_ in rows]  # each member's answer, in member order
        assert c["kept"] == [kept for _, kept, _, _ in rows]
        assert c["label"] == [top if kept else None for _, kept, top, _ in rows]
        assert c["vote_share"] == [share for *_, share in rows]
        kept_right = [top == fakes.truth(p) for p, (_, kept, top, _) in zip(c["prompt"], rows) if kept]
        vote_right = [kept for p, (_, kept, top, _) in zip(c["prompt"], rows) if top == fakes.truth(p)]
        assert m["n_kept"] == len(kept_right) and m["n_generated"] == len(rows) == cfg.loop.problems
        assert m["label_precision"] == sum(kept_right) / len(kept_right)
        assert m["label_recall"] == sum(vote_right) / len(vote_right)
        assert m["drop_reasons"] == {"majority: too few agree": len(rows) - len(kept_right)}
        precisions.append(m["label_precision"])
    assert 0 < min(precisions) < 0.9 and max(precisions) > 0.9  # the fake makes precision fall with length

    for m in history:
        a = pq.read_table(run.round_dir(m["round"]) / "audit.parquet").to_pydict()
        audit, members = {}, [{}, {}, {}]
        for d in sorted({d[0] for d in a["difficulty"]}):
            prompts = [p for p, dd in zip(a["prompt"], a["difficulty"]) if dd == [d]]
            assert len(prompts) == cfg.audit.problems
            rows = expected_round(prompts, seeds, agree=0)
            audit[str(d)] = np.mean([top == fakes.truth(p) for p, (_, _, top, _) in zip(prompts, rows)])
            for k in range(3):
                members[k][str(d)] = np.mean([outs[k] == fakes.truth(p) for p, (outs, *_) in zip(prompts, rows)])
        assert m["audit"] == audit and m["audit_members"] == members
        assert m["frontier"] == 4  # lengths up to 4 solved by every member; 5 by the vote 90% of the time
        assert min(map(int, audit)) < 4  # a solved length below the frontier is audited too
    # the audit is held out: none of its prompts is a training prompt of any round
    trained = {p for r in run.committed() for p in run.candidates(r).column("prompt").to_pylist()}
    audited = {p for r in run.committed() for p in pq.read_table(run.round_dir(r) / "audit.parquet")
               .column("prompt").to_pylist() if len(p) > 6}
    assert audited and not audited & trained


def test_a_round_that_keeps_nothing_stops_the_run_in_either_data_mode(fake_overrides):
    for mode in ("accumulate", "replace"):
        # at length 8 every member gives the same wrong answer, unanimously but with low confidence
        cfg, run = start([*fake_overrides, f"name={mode}", f"loop.data={mode}", "loop.rounds=8", "guard.mode=off",
                          "loop.filters=['majority', 'length', 'confidence']", "loop.min_confidence=0.5"])
        ui = RecordingUI()
        history = run_loop(cfg, run, ui, make_learner=fakes.fake_learner)
        last = history[-1]
        assert [m["decision"] for m in history] == ["commit"] * (len(history) - 1) + ["stop"]
        assert ui.lines[-1] == f"stopped: {last['stop_reason']}"
        assert last["n_kept"] == 0 and last["train_steps"] == 0 and last["train_loss"] is None
        assert last["difficulties"] == [[8]] and last["stop_reason"] == (
            f"round {last['round']} kept none of its 400 labels at difficulty (8,) (confidence: below threshold 400);"
            " nothing to train on")
        manifest = run.manifest()
        assert manifest["status"] == "finished" and manifest["stop_reason"] == last["stop_reason"]
        # no weights of its own: the run's models are the round before's, untrained
        assert manifest["rounds"][f"{last['round']:04d}"] == {"checkpoint": {}, "committed": ANY, "decision": "stop"}
        assert run_loop(cfg, run, make_learner=fakes.fake_learner) == history  # resume adds nothing


class RecordingUI:
    """A UI that keeps every line the loop prints, and every progress phase: [name, total, advanced]."""

    def __init__(self):
        self.lines, self.phases = [], []

    def phase(self, name, total):
        from contextlib import nullcontext

        entry = [name, total, 0]
        self.phases.append(entry)

        def advance(n=1):
            entry[2] += n

        return nullcontext(advance)

    def line(self, text):
        self.lines.append(text)


class CappedCopy(Copy):
    """Copy that cannot draw strings longer than 5 letters."""

    name = "test_capped_copy"

    def drawable(self, difficulty):
        return difficulty[0] <= 5


def test_a_task_without_a_harder_difficulty_stops_the_run_and_says_so(fake_overrides):
    if "test_capped_copy" not in TASKS:
        register(CappedCopy())
    # base 4, step 2: the next round would be 6 letters, which the task cannot draw (5 it could)
    cfg, run = start([*fake_overrides, "task.name=test_capped_copy", "task.step=2", "loop.rounds=3"])
    ui = RecordingUI()
    history = run_loop(cfg, run, ui, make_learner=fakes.fake_learner)
    assert [m["round"] for m in history] == [0] and run.committed() == [0]
    assert ui.lines[-1] == "stopped: task test_capped_copy has no harder difficulty after (4,)"
    assert run.manifest()["status"] == "finished"


def test_tracking_writes_event_files_only_when_asked(fake_overrides):
    pytest.importorskip("tensorboardX")
    cfg, run = start([*fake_overrides, "loop.rounds=1", "name=plain"])
    run_loop(cfg, run, make_learner=fakes.fake_learner)
    assert not (run.root / "tracking").exists()
    cfg, run = start([*fake_overrides, "loop.rounds=1", "name=tracked", "tracking=tensorboard"])
    run_loop(cfg, run, make_learner=fakes.fake_learner)
    assert list((run.root / "tracking").glob("events.out.tfevents.*"))


class ZeroLearner(fakes.FakeLearner):
    """Answers "0" to everything (in any task's alphabet), always with EOS."""

    def generate(self, prompts, budgets, batch_size=1024):
        return ["0"] * len(prompts), [True] * len(prompts), [1.0] * len(prompts)


def zero_learner(cfg, task, seed):
    return ZeroLearner(task.alphabet, seed, 0)


def test_resume_rebuilds_what_the_uninterrupted_run_had_on_a_two_axis_schedule(fake_overrides, monkeypatch):
    from selfimprove.committee import Member

    added = []
    original = Member.add

    def recording_add(self, r, levels, advance):
        added.append((r, [(d, list(p), list(lab), w) for d, p, lab, w in levels]))
        return original(self, r, levels, advance)

    monkeypatch.setattr(Member, "add", recording_add)
    # multiplication's schedule reads every trained difficulty: (1,3),(3,1) after the 2x2 base, then (2,3),(3,2)
    small = [*fake_overrides, "task.name=multiply", "task.base=2", "committee.size=1", "loop.filters=['none']",
             "loop.seed_problems=6", "loop.problems=6", "audit.problems=4"]
    cfg, whole = start([*small, "name=whole", "loop.rounds=2"])
    expected = run_loop(cfg, whole, make_learner=zero_learner)
    assert [m["difficulties"] for m in expected[1:]] == [[[1, 3], [3, 1]], [[2, 3], [3, 2]]]
    uninterrupted, added[:] = list(added), []
    cfg1, part = start([*small, "name=part", "loop.rounds=1"])
    run_loop(cfg1, part, make_learner=zero_learner)
    cfg2 = cfg1.model_copy(update={"loop": cfg1.loop.model_copy(update={"rounds": 2})})
    resumed = run_loop(cfg2, part, make_learner=zero_learner)
    assert without_seconds(resumed) == without_seconds(expected)
    # the resumed process rebuilt the corpus of rounds 0 and 1 exactly as the uninterrupted run built it
    assert added[2:] == uninterrupted


def test_a_round_that_kept_too_little_is_held_and_every_round_is_reported(fake_overrides):
    import time

    from selfimprove.loop import round_line

    # at 5 letters about half the problems get a unanimous vote (members right 90%, 80%, 70%): below 0.6
    cfg, run = start([*fake_overrides, "loop.advance_at=0.6"])
    ui = RecordingUI()
    began = time.perf_counter()
    history = run_loop(cfg, run, ui, make_learner=fakes.fake_learner)
    wall = time.perf_counter() - began
    assert [m["difficulties"] for m in history[1:]] == [[[5]], [[5]]]
    assert all(m["n_kept"] < 0.6 * m["n_generated"] for m in history[1:])
    assert [m["n_generated"] for m in history] == [4 * 50, 400, 400]  # seed problems, then loop.problems
    assert not set(run.candidates(1)["prompt"].to_pylist()) & set(run.candidates(2)["prompt"].to_pylist())
    # progress: label (2 self-rounds), train, audit per round; each phase advances to its total
    audited = 6  # lengths 1-6 after round 0 (3 below 4, capped at 1, to 2 above), then 2-7
    expected = [("train", 5 * 3), ("audit", 3 * 200 * audited)]
    expected += [("label", 400 * 3), ("train", 3 * 3), ("audit", 3 * 200 * audited)] * 2
    assert [(name, total) for name, total, _ in ui.phases] == expected
    assert all(done == total for _, total, done in ui.phases)
    assert ui.lines == [round_line(m) for m in history]
    for m in history:  # each phase's own duration (the guard's two check points together)
        assert set(m["seconds"]) == {"plan", "act", "verify", "learn", "check"} | {"guard"} - {"guard"[m["round"]:]}
        assert all(v >= 0 for v in m["seconds"].values())
    assert sum(v for m in history for v in m["seconds"].values()) <= wall
    assert run.progress()["round"] == 2 and run.progress()["phase"] == "commit"
    c = run.candidates(2)
    assert c.schema == CANDIDATE_SCHEMA  # candidates.parquet's column types are fixed
    c = c.to_pydict()
    assert c["label_correct"] == [lab == t if k else None for lab, t, k in zip(c["label"], c["truth"], c["kept"])]
    assert True in c["label_correct"] and None in c["label_correct"]
    # audit problems are fresh every round, also at the same difficulties (6 and 7 letters: no chance repeats)
    audited = [{p for p in pq.read_table(run.round_dir(r) / "audit.parquet")["prompt"].to_pylist() if len(p) > 6}
               for r in (1, 2)]
    assert len(audited[0]) == len(audited[1]) == 400 and not audited[0] & audited[1]
    # metrics.jsonl is read by reports and outside tools: every key of a self-round, and what it holds
    keys = {"round", "difficulties", "committee", "samples", "n_generated", "n_kept", "kept_share", "drop_reasons",
            "label_precision", "label_recall", "audit", "audit_members", "frontier", "train_steps", "train_loss",
            "seconds", "decision"}
    for m in history[1:]:
        assert set(m) == keys | {"attempt", "signals", "plan"} and m["decision"] == "commit"
        assert m["committee"] == 3 and m["samples"] == 1
        assert m["kept_share"] == m["n_kept"] / m["n_generated"] and m["train_steps"] == 3
    assert set(history[0]) == keys and history[0]["label_precision"] is None is history[0]["label_recall"]
    assert history[0]["kept_share"] == 1.0 and history[0]["drop_reasons"] == {}
    assert run.manifest()["status"] == "finished" and "stop_reason" not in run.manifest()


def test_the_accelerated_planner_probes_the_committee_on_the_rounds_probe_stream(fake_overrides):
    from selfimprove.tasks import get_task, stream_seed

    cfg, run = start([*fake_overrides, "loop.rounds=1", "loop.planner=accelerated", "loop.probe_problems=60"])
    history = run_loop(cfg, run, make_learner=fakes.fake_learner)
    probes = get_task("copy").sample((6,), range(60), stream_seed(cfg.seed, "probe", 1)).prompts
    seeds = [cfg.seed + 1000 * k for k in range(3)]
    unanimous = [len({fakes.answer(s, k, p) for k, s in enumerate(seeds)}) == 1 for p in probes]
    assert history[1]["self_consistency"] == {"6": round(float(np.mean(unanimous)), 4)}
    assert 0 < np.mean(unanimous) < cfg.loop.tau and history[1]["difficulties"] == [[5]]  # one step only


class ScheduleLearner(fakes.FakeLearner):
    """A fake that records the schedule every train call gets: (member, steps, warmup, decay, peak)."""

    calls: list = []

    def train(self, batches, steps, warmup, decay, on_step=None, peak=None):
        ScheduleLearner.calls.append((self.k, steps, warmup, decay, peak))
        super().train(batches, steps, warmup, decay, on_step, peak)
        return [float(step + 10 * self.k) for step in range(steps)]  # member k's loss at step s: s + 10k


def schedule_learner(cfg, task, seed):
    return ScheduleLearner(task.alphabet, seed, (seed - cfg.seed) // 1000)


def test_each_round_trains_every_member_on_its_schedule(fake_overrides):
    ScheduleLearner.calls = []
    cfg, run = start([*fake_overrides, "train.steps=20", "train.warmup=0.2", "train.decay=0.3", "train.lr=0.01",
                      "train.round_steps=4", "train.round_decay=0.5", "train.round_lr=0.002"])
    history = run_loop(cfg, run, make_learner=schedule_learner)
    # round 0: 20 steps, 4 of warmup, 6 of decay, peak lr; every later round: 4 steps, no warmup, 2 of decay
    first, later = [(k, 20, 4, 6, 0.01) for k in range(3)], [(k, 4, 0, 2, 0.002) for k in range(3)]
    assert ScheduleLearner.calls == first + later * 2
    assert [m["train_steps"] for m in history] == [20, 4, 4]
    # train_loss: the mean over members of each one's last tenth of steps (at least one): 18.5+10k, 3+10k
    assert [m["train_loss"] for m in history] == [28.5, 13.0, 13.0]


def test_round_line_by_hand():
    from selfimprove.loop import round_line

    m = {"round": 3, "difficulties": [[9]], "n_kept": 4990, "n_generated": 5000, "label_precision": 0.99849,
         "audit": {"9": 1.0, "10": 0.4249}, "frontier": 9, "seconds": {"plan": 0.4, "act": 20.3, "check": 20.6}}
    assert round_line(m) == ("round 3 | difficulty (9,) | kept 4990/5000 | label_precision 0.998 | "
                             "audit 9:1.00 10:0.42 | frontier 9 | 41 s")
    two_axes = {**m, "round": 0, "difficulties": [[1, 3], [3, 1]], "label_precision": None,
                "frontier": [[1, 3], [2, 2]]}
    assert round_line(two_axes) == ("round 0 | difficulty (1,3) (3,1) | kept 4990/5000 | label_precision n/a | "
                                    "audit 9:1.00 10:0.42 | frontier (1,3) (2,2) | 41 s")
    assert "| frontier none |" in round_line({**m, "frontier": None})
    assert "| frontier none |" in round_line({**two_axes, "frontier": []})
    held = {**m, "audit": {}, "decision": "hold", "signal": "invariant"}
    assert round_line(held).endswith("| audit - | frontier 9 | 41 s | hold (invariant)")
    assert round_line({**m, "decision": "stop"}).endswith("| 41 s | stop")


def test_schedule_decays_at_least_one_step():
    from selfimprove.config import TrainConfig
    from selfimprove.loop import schedule

    train = TrainConfig(steps=5, warmup=0.2, decay=0.1, lr=0.01, round_steps=3, round_decay=0.4)
    assert schedule(train, 0) == (5, 1, 1, 0.01)  # 10% of 5 steps rounds down to none: one step still decays
    assert schedule(train, 2) == (3, 0, 1, 0.01)  # round_lr unset: lr
    assert schedule(train.model_copy(update={"decay": 0.4, "round_lr": 0.002}), 1) == (3, 0, 1, 0.002)


@pytest.mark.parametrize("problems", ["shared", "per_member"])
def test_each_round_draws_from_its_own_training_stream(problems):
    from selfimprove.loop import draw
    from selfimprove.tasks import get_task, stream_seed

    task = get_task("copy")
    cfg = load_config("quick", ["task.name=copy", "seed=9", "loop.seed_problems=4", "loop.problems=3",
                                "committee.size=2", f"committee.problems={problems}"])
    prompts, truths, diffs, proposer = draw(task, cfg, 0, [(1,), (2,)], cfg.loop.seed_problems)
    seed_data = [task.sample_seed((d,), range(4), stream_seed(9, "train", 0)) for d in (1, 2)]
    assert prompts == [p for b in seed_data for p in b.prompts] and truths == [t for b in seed_data for t in b.truths]
    assert diffs == [[1]] * 4 + [[2]] * 4 and proposer == [None] * 8
    prompts, _, diffs, proposer = draw(task, cfg, 2, [(5,)], cfg.loop.problems)
    if problems == "shared":
        assert prompts == task.sample((5,), range(3), stream_seed(9, "train", 2)).prompts and proposer == [None] * 3
    else:  # each member proposes its own problems, from a stream of its own
        own = [task.sample((5,), range(3), stream_seed(9, "train", 2, k)).prompts for k in (0, 1)]
        assert prompts == own[0] + own[1]
        assert proposer == [0, 0, 0, 1, 1, 1]
    assert diffs == [[5]] * len(prompts)


def test_per_member_audit_only_for_a_committee_of_more_than_one(fake_overrides):
    for size in (1, 2):
        cfg, run = start([*fake_overrides, f"committee.size={size}", f"name=k{size}", "loop.rounds=0"])
        (m,) = run_loop(cfg, run, make_learner=fakes.fake_learner)
        assert len(m.get("audit_members", [])) == (2 if size == 2 else 0)


def test_round_schedule_by_hand():
    from selfimprove.config import TrainConfig
    from selfimprove.loop import schedule

    train = TrainConfig(steps=100, warmup=0.1, decay=0.2, round_steps=40, round_decay=0.5, lr=1e-3)
    assert schedule(train, 0) == (100, 10, 20, 1e-3)  # round 0 warms up
    assert schedule(train, 1) == schedule(train, 7) == (40, 0, 20, 1e-3)  # later rounds start at peak
    assert schedule(train.model_copy(update={"round_lr": 5e-4}), 2) == (40, 0, 20, 5e-4)
    assert schedule(train.model_copy(update={"round_steps": 1}), 1) == (1, 0, 1, 1e-3)  # at least one decay step
