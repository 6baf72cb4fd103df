"""The loop end to end on a tiny config: the run-directory contract, metrics that agree with the
parquet files, the truth rule, and resume after kill -9 giving the metrics of an uninterrupted run."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import fakes
import numpy as np
import pyarrow.parquet as pq
import pytest

from selfimprove.config import dump_toml, load_config
from selfimprove.loop import run_loop
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
        assert set(m["seconds"]) == {"plan", "act", "verify", "learn", "check"}
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
    trained: list[str] = []
    original = fakes.FakeLearner.train

    def recording_train(self, batches, *args, **kw):
        def spy():
            for tokens, starts in batches:
                trained.extend("".join(self.vocab.chars[i] for i in row).strip("\0") for row in tokens)
                yield tokens, starts
        return original(self, spy(), *args, **kw)

    monkeypatch.setattr(fakes.FakeLearner, "train", recording_train)
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
        cfg, run = start([*fake_overrides, f"name={mode}", f"loop.data={mode}", "loop.rounds=8",
                          "loop.filters=['majority', 'length', 'confidence']", "loop.min_confidence=0.5"])
        history = run_loop(cfg, run, make_learner=fakes.fake_learner)
        last = history[-1]
        assert [m["decision"] for m in history] == ["commit"] * (len(history) - 1) + ["stop"]
        assert last["n_kept"] == 0 and last["train_steps"] == 0 and last["train_loss"] is None
        assert last["difficulties"] == [[8]] and "kept none of its 400 labels" in last["stop_reason"]
        manifest = run.manifest()
        assert manifest["status"] == "finished" and manifest["stop_reason"] == last["stop_reason"]
        before = run.verified_checkpoint(last["round"] - 1) / "learner-0.safetensors"
        after = run.verified_checkpoint(last["round"]) / "learner-0.safetensors"
        assert before.read_bytes() == after.read_bytes()  # the models of the round before, untrained
        assert run_loop(cfg, run, make_learner=fakes.fake_learner) == history  # resume adds nothing
