"""The guard: label-free signals, hold / rollback / stop, the rule that it never reads truth, exact
rollback and resume, and the controller's retry."""

from __future__ import annotations

import json

import fakes
import numpy as np
import pytest
from test_loop import KILL_DURING_LEARN, PLAIN, cli, start, without_seconds
from test_planner import Solver
from typer.testing import CliRunner

from selfimprove import guard
from selfimprove.cli import app
from selfimprove.config import ConfigError, load_config
from selfimprove.corpus import Corpus, Level
from selfimprove.filters import filter_names, filter_outputs
from selfimprove.filters import votes as answers
from selfimprove.judge import judge_run, summary
from selfimprove.loop import run_loop
from selfimprove.planner import Plan, plan
from selfimprove.rundir import RunDir, RunError
from selfimprove.signals import _q10, drift, drift_probes, invariant, label_signals, self_invariant
from selfimprove.tasks import TASKS, Batch, get_task, register, stream_seed
from selfimprove.tasks.strings import Copy


def guarded(tiny_overrides):
    """The learning fixture with the guard on. Its small model labels 4-letter strings 38% right: with
    these settings round 1 commits, and every try at 5 letters (11-13% right) changes more than 16% of
    its answers at 3 and 4 letters, so the guard rolls it back, and stops the run after the third."""
    return [o for o in tiny_overrides if o != "guard.mode=off"] + ["guard.max_drift=0.16", "loop.rounds=4"]


# --- the never-reads-truth property -----------------------------------------------------------------


class GarbageCopy(Copy):
    """Copy with true seed data, but every other problem's hidden truth is garbage."""

    name = "test_garbage_copy"

    def sample(self, difficulty, index, seed):
        b = super().sample(difficulty, index, seed)
        return Batch(b.difficulty, b.prompts, ["q" * (len(t) + 1) for t in b.truths])

    def sample_seed(self, difficulty, index, seed):
        return super().sample(difficulty, index, seed)


def decisions(history):
    keys = ("round", "difficulties", "decision", "signal", "reason", "signals", "n_kept", "train_loss", "plan",
            "attempt", "stop_reason")
    return [{k: m.get(k) for k in keys} for m in history]


def training_data(run):
    return [run.candidates(r).select(["prompt", "label", "kept"]).to_pydict() for r in run.committed()]


@pytest.mark.learns
@pytest.mark.parametrize("mode", ["signals", "controller", "oracle"])
def test_the_guard_decides_alike_when_every_hidden_truth_is_garbage(tiny_overrides, mode):
    if GarbageCopy.name not in TASKS:
        register(GarbageCopy())
    sets = [*guarded(tiny_overrides), "noise.round=1", "noise.share=0.3",
            *(["loop.planner=controller"] if mode == "controller" else [f"guard.mode={mode}"])]
    cfg, real = start([*sets, "name=real"])
    real_history = run_loop(cfg, real)
    cfg, garbage = start([*sets, "name=garbage", f"task.name={GarbageCopy.name}"])
    garbage_history = run_loop(cfg, garbage)
    assert [m["label_precision"] for m in garbage_history[1:]] == [0.0] * (len(garbage_history) - 1)
    if mode == "oracle":  # the test can tell: a guard that reads truth decides otherwise
        assert decisions(real_history) != decisions(garbage_history)
        return
    # the run holds the noisy round, rolls back a round and stops: every decision is exercised
    assert [m["decision"] for m in real_history][:3] == ["commit", "hold", "rollback"]
    assert real_history[-1]["decision"] == "stop"
    assert decisions(real_history) == decisions(garbage_history)
    assert training_data(real) == training_data(garbage)


# --- hold, rollback, stop -------------------------------------------------------------------------


def test_a_round_with_labels_no_member_gave_is_held_and_never_trained_on(fake_overrides, monkeypatch):
    trained = fakes.record_training(monkeypatch)
    cfg, run = start([*fake_overrides, "loop.rounds=2", "noise.round=1", "noise.share=0.3"])
    history = run_loop(cfg, run, make_learner=fakes.fake_learner)
    held, retry = history[1], history[2]
    assert held["decision"] == "hold" and held["signal"] == "support" and held["train_steps"] == 0
    assert held["signals"]["support"] == pytest.approx(0.7, abs=0.01) and held["n_corrupted"] > 0
    assert retry["decision"] == "commit" and retry["difficulties"] == held["difficulties"] == [[5]]
    assert retry["attempt"] == 2 and retry["signals"]["support"] == 1.0
    c = run.candidates(1).to_pydict()
    held_examples = {p + lab for p, lab in zip(c["prompt"], c["label"]) if lab is not None}
    assert held_examples and not held_examples & set(trained)
    entry = run.manifest()["rounds"]["0001"]
    assert entry["decision"] == "hold" and entry["checkpoint"] == {}
    assert not list(run.checkpoint_dir(1).iterdir())  # a held round has no weights of its own
    # judged against truth afterwards: precision recomputed from candidates.parquet
    rows = judge_run(run.root)
    kept = [x for x, k in zip(c["label_correct"], c["kept"]) if k]
    assert [(r["round"], r["decision"], r["signal"]) for r in rows] == [(1, "hold", "support"), (2, "commit", None)]
    assert rows[0]["precision"] == sum(kept) / len(kept) < 0.97 and rows[0]["judgement"] == ""
    out = CliRunner().invoke(app, ["judge", str(run.root), "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["all"] == summary(rows)
    assert summary(rows)["hold"] == 1 and summary(rows)["triggers"] == {"support": 1}


def test_judge_counts_misses_and_false_alarms(fake_overrides, tmp_path):
    cfg, run = start([*fake_overrides, "loop.rounds=3", "guard.mode=off"])
    history = run_loop(cfg, run, make_learner=fakes.fake_learner)
    assert [m["decision"] for m in history] == ["commit"] * 4
    precision = [judge_run(run.root)[i]["precision"] for i in range(3)]
    assert precision[0] >= 0.97 and precision[1] < 0.9 and precision[2] < 0.9  # what the fakes give
    metrics = run.root / "metrics.jsonl"  # pretend the guard had held round 1 and rolled back round 3
    lines = [json.loads(x) for x in metrics.read_text().splitlines()]
    lines[1].update(decision="hold", signal="invariant")
    lines[3].update(decision="rollback", signal="drift")
    metrics.write_text("".join(json.dumps(m) + "\n" for m in lines))
    rows = judge_run(run.root)
    assert [r["judgement"] for r in rows] == ["false alarm", "miss", ""]
    for decision, signal, judgement in (("rollback", "drift", "false alarm"), ("stop", "drift", "false alarm"),
                                        ("stop", None, "")):  # a stop without a signal: the guard was off
        lines[1].update(decision=decision, signal=signal)
        metrics.write_text("".join(json.dumps(m) + "\n" for m in lines))
        assert judge_run(run.root)[0]["judgement"] == judgement, (decision, signal)
    lines[1].update(decision="hold", signal="invariant")
    metrics.write_text("".join(json.dumps(m) + "\n" for m in lines))
    s = summary(rows)
    assert (s["rollback"], s["hold"], s["commit"]) == (1, 1, 1) and s["triggers"] == {"drift": 1, "invariant": 1}
    assert s["lowest_committed_precision"] == precision[1]
    del lines[2]["decision"]  # a run from before the guard: every round committed
    metrics.write_text("".join(json.dumps(m) + "\n" for m in lines))
    assert judge_run(run.root)[1]["decision"] == "commit" and judge_run(run.root)[1]["judgement"] == "miss"
    manifest = json.loads((run.root / "manifest.json").read_text())
    for entry in manifest["rounds"].values():
        entry.pop("decision")
    (run.root / "manifest.json").write_text(json.dumps(manifest))
    assert run.trained_rounds() == [0, 1, 2, 3]
    (run.round_dir(2) / "candidates.parquet").write_bytes(b"not parquet")
    out = CliRunner().invoke(app, ["judge", str(run.root)])
    assert out.exit_code == 2 and "candidates.parquet cannot be read" in out.output
    metrics.write_text(metrics.read_text()[:-20])
    out = CliRunner().invoke(app, ["judge", str(run.root)])
    assert out.exit_code == 2 and "metrics.jsonl is damaged" in out.output


def test_eval_and_sweep_read_a_run_whose_last_round_was_held(fake_overrides):
    from selfimprove.evaluate import resolve
    from selfimprove.sweep import summarize

    cfg, run = start([*fake_overrides, "loop.rounds=1", "noise.round=1", "noise.share=0.3"])
    history = run_loop(cfg, run, make_learner=fakes.fake_learner)
    assert [m["decision"] for m in history] == ["commit", "hold"] and run.trained_rounds() == [0]
    spec = resolve(run.root)
    assert spec.round == 0 and spec.difficulties == get_task("copy").audit_difficulties([(4,)], 3, 2)
    with pytest.raises(RunError, match="round 1 .* is not a committed round with weights of its own"):
        resolve(run.root, round_=1)
    row = summarize(cfg, history)
    assert row["rounds"] == 0 and row["frontier"] == history[0]["frontier"] and row["train_s_per_round"] is None


def test_failed_attempts_are_bounded_and_the_verdict_names_difficulty_and_reason(fake_overrides):
    # at length 8 the fakes answer alike and wrongly with low confidence: the filters keep nothing
    cfg, run = start([*fake_overrides, "loop.rounds=9", "loop.filters=['majority', 'length', 'confidence']",
                      "loop.min_confidence=0.5", "guard.attempts=2"])
    history = run_loop(cfg, run, make_learner=fakes.fake_learner)
    assert [m["decision"] for m in history][-3:] == ["commit", "hold", "stop"]
    assert history[-1]["stop_reason"] == "no reliable labels at (8,) after 2 attempts: the filters kept no label"
    assert run.manifest()["stop_reason"] == history[-1]["stop_reason"]
    assert run_loop(cfg, run, make_learner=fakes.fake_learner) == history  # resume adds nothing


@pytest.mark.learns
def test_rollback_restores_the_last_committed_round_exactly(tiny_overrides):
    cfg, run = start([*guarded(tiny_overrides), "name=whole"])
    whole = run_loop(cfg, run)
    assert [m["decision"] for m in whole] == ["commit", "commit", "rollback", "rollback", "stop"]
    assert all(m["label_precision"] < 0.5 and m["signal"] == "drift" for m in whole[2:])
    assert whole[2]["difficulties"] == whole[3]["difficulties"] == whole[4]["difficulties"] == [[5]]
    assert whole[-1]["stop_reason"].startswith("no reliable labels at (5,) after 3 attempts: training changed")
    # each attempt after a rollback starts from round 1's weights and corpus, as a resumed run does
    cfg, part = start([*guarded(tiny_overrides), "name=part", "loop.rounds=2"])
    run_loop(cfg, part)
    resumed = run_loop(cfg.model_copy(update={"loop": cfg.loop.model_copy(update={"rounds": 4})}), part)
    assert without_seconds(resumed) == without_seconds(whole)
    # a rolled-back round keeps its candidates and audit for analysis, never weights; its metrics show the
    # run's models (round 1's frontier), the discarded model's audit apart
    assert (run.round_dir(2) / "audit.parquet").is_file() and not list(run.checkpoint_dir(2).iterdir())
    assert whole[2]["audit"] == {} and whole[2]["frontier"] == whole[1]["frontier"]
    assert set(whole[2]["rejected_audit"]) == set("234567")  # the window around 5 letters it was trained on


def test_rollback_brings_back_a_learner_that_forgot_and_resume_agrees(fake_overrides):
    cfg, run = start([*fake_overrides, "name=whole", "loop.rounds=4"])
    whole = run_loop(cfg, run, make_learner=fakes.forgetful_learner)
    # 5-letter strings commit; training on 6-letter ones makes the members forget 1..4 letters: rolled back
    assert [m["decision"] for m in whole] == ["commit", "commit", "rollback", "rollback", "stop"]
    # probes at 4 and 5 letters: half of them forgotten, on every attempt, so each starts from round 1's state
    assert [m["signals"].get("drift") for m in whole[1:]] == [0.0, 0.5, 0.5, 0.5]
    assert [m["attempt"] for m in whole[1:]] == [1, 1, 2, 3] and whole[-1]["difficulties"] == [[6]]
    cfg, part = start([*fake_overrides, "name=part", "loop.rounds=2"])
    run_loop(cfg, part, make_learner=fakes.forgetful_learner)
    resumed = run_loop(cfg.model_copy(update={"loop": cfg.loop.model_copy(update={"rounds": 4})}), part,
                       make_learner=fakes.forgetful_learner)
    assert without_seconds(resumed) == without_seconds(whole)


KILL_AFTER_ROLLBACK = KILL_DURING_LEARN.replace("calls == 2", "calls == 4")  # round 3: after round 2's rollback


@pytest.mark.learns
def test_resume_after_kill_9_in_an_attempt_after_a_rollback_matches_an_uninterrupted_run(tiny_overrides, tmp_path):
    sets = [x for o in guarded(tiny_overrides) if not o.startswith("name=") for x in ("--set", o)]
    assert cli(PLAIN, "run", *sets, "--set", "name=ref").returncode == 0
    reference = RunDir.open(tmp_path / "runs" / "ref").metrics()
    assert [m["decision"] for m in reference] == ["commit", "commit", "rollback", "rollback", "stop"]
    killed = cli(KILL_AFTER_ROLLBACK, "run", *sets, "--set", "name=killed")
    assert killed.returncode == -9
    root = tmp_path / "runs" / "killed"
    assert RunDir.open(root).committed() == [0, 1, 2]
    assert cli(PLAIN, "resume", str(root)).returncode == 0
    assert without_seconds(RunDir.open(root).metrics()) == without_seconds(reference)


# --- signals and decisions by hand ----------------------------------------------------------------


def test_label_signals_by_hand():
    copy = get_task("copy")
    prompts = ["ab=", "cd=", "ef="]
    outputs = [["ab", "ab"], ["cd", "cx"], ["e", "e"]]  # two members
    finished = [[True, True], [True, True], [True, False]]
    confidence = [[0.9, 0.7], [0.8, 0.2], [0.5, 0.5]]
    labels, kept = ["ab", "zz", "e"], [True, True, False]  # "zz": changed after the vote
    s = label_signals(copy, prompts, outputs, finished, confidence, labels, kept, samples=1)
    assert s["unanimity"] == pytest.approx(1 / 3, abs=1e-4) and s["vote_share"] == pytest.approx(2 / 3, abs=1e-4)
    assert s["vote_share_q10"] == 0.5 and s["confidence_kept_q10"] == 0.8  # shares 1, 0.5, 0.5 (the last: EOS splits)
    assert s["support"] == 0.5 and s["confidence_kept"] == pytest.approx((0.8 + 0.8) / 2, abs=1e-4)
    assert s["confidence_dropped"] == 0.5 and s["no_eos"] == pytest.approx(1 / 6, abs=1e-4)
    assert s["bad_length"] == pytest.approx(2 / 6, abs=1e-4) and "sample_agreement" not in s and "verified" not in s
    sampled = label_signals(copy, prompts[:1], [["ab", "ax", "ab", "ab"]], [[True] * 4], [[1.0] * 4], ["ab"],
                            [True], samples=2)
    assert sampled["sample_agreement"] == 0.75  # member 0: 1 of 2 alike, member 1: 2 of 2
    split = label_signals(copy, prompts[:1], [["ab", "ab", "ax", "ax"]], [[True] * 4], [[1.0] * 4], ["ab"], [True],
                          samples=2)
    assert split["sample_agreement"] == 1.0  # each member agrees with itself (pooled: 0.5)
    assert _q10([0.1 * k for k in range(1, 11)]) == 0.19 and _q10([0.0, 1 / 3]) == 0.0333 and _q10([]) is None

    class Checked(Copy):  # a verifier that passes an answer without "x"
        def verify(self, prompt, answer):
            return "x" not in answer

    verified = label_signals(Checked(), prompts, outputs, finished, confidence, ["ab", "cx", "e"], [True, True, False],
                             samples=1)
    assert verified["verified"] == 0.5  # of the kept labels only: "ab" passes, "cx" does not
    assert drift(["a", "b", "c", "d"], ["a", "x", "c", "y"]) == 0.5 and drift([], []) is None


def test_the_invariant_signal_asks_b_plus_a_and_compares_with_the_label():
    add = get_task("reverse_add")
    assert add.invariant("12+345=") == "345+12=" and get_task("copy").invariant("ab=") is None

    class Echo:
        size, asked = 1, []

        def generate(self, prompts, advance=None, sampling=None):
            Echo.asked += prompts
            answers = {"21+43=": "640", "99+11=": "001"}  # 12+34 = 46, 99+11 = 110 (reversed digits)
            return [[answers.get(p, "x")] for p in prompts], [[True] for _ in prompts], [[1.0] for _ in prompts]

    share = invariant(Echo(), add, ["43+21=", "11+99=", "55+55="], ["640", "002", "011"], [True, True, False],
                      n=10, seed=0)
    assert share == 0.5 and sorted(Echo.asked) == ["21+43=", "99+11="]  # dropped labels are not checked
    assert invariant(Echo(), get_task("copy"), ["ab="], ["ab"], [True], n=10, seed=0) is None


def test_drift_probes_are_fixed_problems_at_the_hardest_trained_difficulties():
    copy = get_task("copy")
    probes = drift_probes(copy, [(1,), (2,), (3,), (2,), (5,)], levels=2, n=4, seed=7)
    assert probes == [*copy.sample((3,), range(4), stream_seed(7, "drift")).prompts,
                      *copy.sample((5,), range(4), stream_seed(7, "drift")).prompts]
    assert probes[4:] == drift_probes(copy, [(5,)], levels=2, n=4, seed=7)  # the same whenever probed
    multiply = get_task("multiply")  # hardest by the sum of the axes: both sides of the schedule
    probes = drift_probes(multiply, [(1, 6), (6, 1), (2, 6), (6, 2), (5, 1)], levels=2, n=1, seed=7)
    assert {tuple(map(len, p.removesuffix("=").split("*"))) for p in probes} == {(2, 6), (6, 2)}


def test_drift_counts_changed_answers_and_where_the_task_verifies_only_accepted_ones():
    assert drift(["a", "b", "c", "d"], ["a", "x", "y", "d"]) == 0.5
    assert drift(["a", "b", "c", "d"], ["a", "x", "y", "d"], [True, True, False, False]) == 0.5
    assert drift(["a", "b", "c"], ["a", "x", "y"], [True, False, False]) == 0.0  # wrong answers that changed
    assert drift(["a"], ["b"], [False]) is None


def test_the_committees_answers_and_its_self_invariant():
    add = get_task("reverse_add")
    committee = Twins(wrong={"34+12="})
    assert answers(committee, ["12+34=", "34+12="]) == ["460", "000"]  # 21 + 43 = 64, reversed and padded

    class Unfinished(Twins):
        def generate(self, prompts, advance=None, sampling=None):
            out, finished, confidence = super().generate(prompts)
            return out, [[False] for _ in prompts], confidence

    assert answers(Unfinished(()), ["12+34="]) == ["460\0"]  # an answer without EOS never equals a label
    assert self_invariant(Twins(()), add, [(2,), (3,)], n=5, seed=0) == 1.0
    sampled = add.sample((2,), range(5), 0).prompts
    half = Twins({add.invariant(p) for p in sampled[:2]})
    assert self_invariant(half, add, [(2,)], n=5, seed=0) == 0.6
    assert self_invariant(half, get_task("copy"), [(2,)], n=5, seed=0) is None


def test_guard_thresholds_by_hand():
    cfg = load_config("quick", ["guard.min_support=0.9", "guard.min_invariant=0.8", "guard.max_drift=0.1"])
    assert guard.before_training(cfg, {"support": 1.0, "invariant": 0.8}, 5) is None
    assert guard.before_training(cfg, {"support": 0.89, "invariant": 1.0}, 5) == (
        "support", "labels no committee answer gave: support 0.890 < 0.9")
    assert guard.before_training(cfg, {"support": 1.0, "invariant": 0.79}, 5) == (
        "invariant", "labels that break the task's invariant: invariant 0.790 < 0.8")
    assert guard.before_training(cfg, {"support": 1.0, "invariant": None}, 5) is None  # no invariant declared
    assert guard.before_training(cfg, {"support": 1.0}, 0) == ("kept_share", "the filters kept no label")
    assert guard.after_training(cfg, {"drift": 0.1, "invariant_after": 0.8}) is None
    assert guard.after_training(cfg, {"drift": 0.11})[0] == "drift"
    assert guard.after_training(cfg, {"drift": 0.0, "invariant_after": 0.7})[0] == "invariant_after"
    off = load_config("quick", ["guard.mode=off"])
    assert guard.before_training(off, {"support": 0.0}, 0) is None and guard.after_training(off, {"drift": 1}) is None
    oracle = load_config("quick", ["guard.mode=oracle", "guard.min_precision=0.9"])
    assert guard.before_training(oracle, {"support": 0.0}, 5, precision=0.95) is None  # signals are not read
    assert guard.before_training(oracle, {"support": 1.0}, 5, precision=0.85)[0] == "oracle"
    assert guard.before_training(oracle, {"support": 1.0}, 5, precision=0.9) is None  # at the threshold: kept
    assert guard.after_training(oracle, {"drift": 1.0}) is None


# --- the controller and the anchor ----------------------------------------------------------------


def test_the_controller_backs_off_and_retries_with_more_problems_and_strict_filters():
    copy = get_task("copy")
    cfg = load_config("quick", ["loop.planner=controller", "loop.problems=100", "loop.max_problems=300",
                                "loop.strict_confidence=0.95", "loop.filters=['none']"])
    failed = {"round": 3, "difficulties": [[8], [9]], "n_kept": 10, "n_generated": 100, "decision": "rollback"}
    assert plan(copy, cfg, None, [(7,)], 4, [failed]) == Plan([(8,)], 200, strict=True)
    assert plan(copy, cfg, None, [(7,)], 5, [failed, {**failed, "decision": "hold"}]) == Plan([(8,)], 300, True)
    committed = {**failed, "decision": "commit", "n_kept": 100}
    sure = cfg.model_copy(update={"loop": cfg.loop.model_copy(update={"probe_problems": 20,
                                                                        "filters": ["length"]})})
    assert plan(copy, sure, Solver(limit=10), [(7,)], 4, [committed]) == Plan(  # several steps: strict
        [(8,), (9,), (10,)], 100, True, {"9": 1.0, "10": 1.0, "11": 0.0}, [100, 100])
    half = Solver(limit=9)
    half.generate = lambda prompts, advance=None, sampling=None: (  # sure of a third, up to 10 letters
        [[p[:-1] if len(p) <= 11 else "x"] for p in prompts], [[True] for _ in prompts],
        [[1.0 if i % 3 == 0 else 0.5] for i in range(len(prompts))])
    chosen = plan(copy, sure, half, [(7,)], 4, [committed])
    assert chosen.difficulties == [(8,), (9,), (10,)] and chosen.counts() == [100, 286, 286]  # 100 / 0.35
    assert chosen.probes == {"9": 0.35, "10": 0.35, "11": 0.0} and chosen.strict
    capped = sure.model_copy(update={"loop": sure.loop.model_copy(update={"max_problems": 250})})
    assert plan(copy, capped, half, [(7,)], 4, [committed]).counts() == [100, 250, 250]
    assert plan(copy, sure, Solver(limit=8), [(7,)], 4, [committed]) == Plan([(8,)], 100, True, {"9": 0.0})
    paced = sure.model_copy(update={"loop": sure.loop.model_copy(update={"advance_at": 0.5})})
    little = {**committed, "difficulties": [[8]], "n_kept": 40}  # a repeat uses the configured filters
    assert plan(copy, paced, Solver(limit=8), [(7,), (8,)], 4, [little]) == Plan([(8,)], 100)
    v = filter_outputs(cfg, copy, ["ab=", "cd="], [["ab"], ["cd"]], [[True], [True]], [[0.96], [0.9]], strict=True)
    assert v.kept == [True, False] and v.drop_reason[1] == "confidence: below threshold"
    assert filter_outputs(cfg, copy, ["cd="], [["cd"]], [[True]], [[0.9]]).kept == [True]


def test_the_controllers_caps_by_default_and_its_jump_threshold_is_inclusive():
    copy = get_task("copy")
    cfg = load_config("quick", ["loop.planner=controller", "loop.problems=100", "loop.probe_problems=20",
                                "loop.filters=['length']"])  # max_problems unset: 4 x problems
    failed = {"round": 3, "difficulties": [[8]], "n_kept": 10, "n_generated": 100, "decision": "rollback"}
    assert plan(copy, cfg, None, [(7,)], 6, [failed] * 3).problems == 400  # 100 * 2 ** 3, capped at 4 x 100
    wide = cfg.model_copy(update={"loop": cfg.loop.model_copy(update={"max_problems": 1000})})
    assert plan(copy, wide, None, [(7,)], 6, [failed] * 3).problems == 800

    def third(prompts, advance=None, sampling=None):  # right (and sure) on every third prompt up to 10 letters
        return ([[p[:-1] if len(p) <= 11 and i % 3 == 0 else "x"] for i, p in enumerate(prompts)],
                [[True] for _ in prompts], [[1.0] for _ in prompts])

    committee = Solver(limit=0)
    committee.generate = third
    committed = {**failed, "decision": "commit", "n_kept": 100}
    at = cfg.model_copy(update={"loop": cfg.loop.model_copy(update={"jump_at": 0.35})})
    assert plan(copy, at, committee, [(7,)], 4, [committed]).counts() == [100, 286, 286]  # 0.35 >= 0.35: jumps
    low = cfg.model_copy(update={"loop": cfg.loop.model_copy(update={"jump_at": 0.1})})
    sparse = Solver(limit=0)
    sparse.generate = lambda prompts, advance=None, sampling=None: (  # right on every sixth: 0.2 of the probes
        [[p[:-1] if len(p) <= 11 and i % 6 == 0 else "x"] for i, p in enumerate(prompts)],
        [[True] for _ in prompts], [[1.0] for _ in prompts])
    assert plan(copy, low, sparse, [(7,)], 4, [committed]).counts() == [100, 400, 400]  # 100 / 0.2, capped
    accelerated = cfg.model_copy(update={"loop": cfg.loop.model_copy(update={"planner": "accelerated", "tau": 0.3})})
    assert plan(copy, accelerated, committee, [(7,)], 4, [committed]).counts() == [100, 100, 100]  # same problems
    thirds = cfg.model_copy(update={"loop": cfg.loop.model_copy(update={"probe_problems": 21, "jump_at": 0.3})})
    assert plan(copy, thirds, committee, [(7,)], 4, [committed]).probes == {"9": 0.3333, "10": 0.3333, "11": 0.0}
    two = cfg.model_copy(update={"task": cfg.task.model_copy(update={"step": 2})})
    assert plan(copy, two, None, [(7,)], 6, [failed]).difficulties == [(9,)]  # the retry: one step of 2
    assert plan(copy, two, Solver(limit=12), [(7,)], 4, [committed]).difficulties == [(9,), (11,)]  # not 13: beyond

    class Short(Copy):  # no string beyond 9 letters exists
        def drawable(self, difficulty):
            return difficulty[0] <= 9

    assert plan(Short(), cfg, Solver(limit=99), [(7,)], 4, [committed]) == Plan(
        [(8,), (9,)], 100, True, {"9": 1.0}, [100])  # stops before what cannot be drawn, probes nothing there
    assert filter_names(cfg, copy) == ["length"]  # not strict unless asked


def level(round_, n=4):
    return Level((1,), round_, [(np.full((n, 3), round_), np.zeros(n, dtype=np.int64))])


@pytest.mark.parametrize("mode", ["accumulate", "replace"])
def test_the_anchor_share_of_steps_comes_from_the_seed_data(mode):
    corpus = Corpus([level(0), level(1), level(2), level(3)])

    def rounds(anchor):  # the round each of 100 steps draws from
        batches = corpus.batches(3, mode, 2, np.random.default_rng(0), anchor)
        return [int(next(batches)[0][0, 0]) for _ in range(100)]

    drawn = rounds(0.25)
    assert drawn.count(0) == 25 and drawn[:4].count(0) == 1  # spread evenly
    self_labelled = [x for x in drawn if x != 0]
    assert self_labelled.count(3) == (38 if mode == "accumulate" else 75)  # half of the rest, or all of it
    assert rounds(0.0).count(0) == 0 and set(rounds(0.0)) == ({1, 2, 3} if mode == "accumulate" else {3})
    assert 0 in rounds(None) or mode == "replace"  # unset: seed levels are among the earlier ones


class Twins:
    """A committee of one that adds right (reverse notation), except on the prompts in `wrong`."""

    size = 1

    def __init__(self, wrong):
        self.wrong, self.asked = set(wrong), []

    def generate(self, prompts, advance=None, sampling=None):
        self.asked += prompts
        out = []
        for p in prompts:
            a, b = p.removesuffix("=").split("+")
            right = str(int(a[::-1]) + int(b[::-1])).zfill(max(len(a), len(b)) + 1)[::-1]
            out.append(["0" * len(right) if p in self.wrong else right])
        return out, [[True] for _ in prompts], [[0.99] for _ in prompts]


def test_the_invariant_filter_drops_labels_the_committee_answers_otherwise_for_b_plus_a():
    add = get_task("reverse_add")
    cfg = load_config("quick", ["task.name=reverse_add", "loop.filters=['length', 'invariant']"])
    prompts = ["12+34=", "56+78=", "9+1="]
    committee = Twins(wrong={"78+56="})
    outputs, finished, confidence = committee.generate(prompts)
    outputs[2] = ["0"]  # too short: dropped by the length filter, so its twin is never asked
    v = filter_outputs(cfg, add, prompts, outputs, finished, confidence, committee=committee)
    assert v.kept == [True, False, False] and v.invariant == 0.5  # of the two it checked, one survived
    assert v.drop_reason == [None, "invariant: answered otherwise", "length: too short"]
    assert committee.asked[3:] == ["34+12=", "78+56="]
    with pytest.raises(ConfigError, match="declares no invariant"):
        load_config("quick", ["loop.filters=['invariant']"])  # copy has none
    strict = load_config("quick", ["task.name=reverse_add", "loop.filters=['none']"])
    assert filter_names(strict, add, strict=True) == ["confidence", "invariant"]
    assert filter_names(strict, get_task("copy"), strict=True) == ["confidence"]


@pytest.mark.learns
def test_a_run_begun_before_the_guard_existed_resumes_without_it(tiny_overrides, tmp_path):
    import tomllib

    import tomli_w

    sets = [x for o in tiny_overrides if o != "guard.mode=off" and not o.startswith("name=")
            for x in ("--set", o)]
    assert cli(PLAIN, "run", *sets, "--set", "loop.rounds=0", "--set", "name=old").returncode == 0
    path = tmp_path / "runs" / "old" / "config.toml"
    data = tomllib.loads(path.read_text())
    del data["guard"], data["audit"]["base"]  # as written before the guard existed
    data["loop"]["rounds"] = 1
    path.write_text(tomli_w.dumps(data))
    assert cli(PLAIN, "resume", str(path.parent)).returncode == 0
    last = RunDir.open(path.parent).metrics()[-1]
    # the default guard would roll this round back (drift > 0.1); the old run goes on without it
    assert last["decision"] == "commit" and last["signals"]["drift"] > 0.1
