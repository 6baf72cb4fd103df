"""The run directory's commit: a kill -9 at any file operation of a round's commit, then resume, ends
with the metrics of an uninterrupted run and never shows a half-written round."""

import os
import pathlib
import shutil
import signal
import time
from pathlib import Path

import fakes
import pyarrow.parquet as pq
import pytest

from selfimprove import rundir
from selfimprove.config import dump_toml, load_config
from selfimprove.loop import run_loop
from selfimprove.rundir import RunDir

KILL_ROUND = 1


def start(overrides, name):
    cfg = load_config("quick", [*overrides, f"name={name}"])
    return cfg, RunDir.create(Path(cfg.out_dir) / cfg.name, dump_toml(cfg), cfg.seed)


def without_seconds(metrics):
    return [{k: v for k, v in m.items() if k != "seconds"} for m in metrics]


class Operations:
    """Counts every file operation of round KILL_ROUND's commit; `kill_at` n sends SIGKILL to this
    process just before the n-th (n = count + 1: just after the commit returns)."""

    def __init__(self, monkeypatch, kill_at=None):
        self.count, self.kill_at, self.active = 0, kill_at, False
        for owner, name in [(os, "replace"), (os, "fsync"), (shutil, "rmtree"), (pathlib.Path, "mkdir"),
                            (pq, "write_table"), (rundir, "_fsync_write"), (fakes.FakeLearner, "save")]:
            monkeypatch.setattr(owner, name, self.wrap(getattr(owner, name)))
        commit = RunDir.commit_round

        def commit_round(run, r, *args):
            self.active = r == KILL_ROUND
            commit(run, r, *args)
            if self.active:
                self.tick()
            self.active = False

        monkeypatch.setattr(RunDir, "commit_round", commit_round)

    def tick(self):
        self.count += 1
        if self.count == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def wrap(self, fn):
        def op(*args, **kwargs):
            if self.active:
                self.tick()
            return fn(*args, **kwargs)
        return op


def killed_run(overrides, name, kill_at, monkeypatch):
    """Run in a forked child that kills itself at file operation `kill_at` of round 1's commit."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            Operations(monkeypatch, kill_at)
            cfg, run = start(overrides, name)
            run_loop(cfg, run, make_learner=fakes.fake_learner)
        finally:
            os._exit(3)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the child killed at operation {kill_at} did not finish in 60 s")


def assert_nothing_half_written(root: Path):
    run = RunDir.open(root)
    committed = run.committed()
    assert len(run.metrics()) == len(committed)
    for r in committed:
        run.verified_checkpoint(r)
        assert {p.name for p in run.round_dir(r).iterdir()} == {"candidates.parquet", "audit.parquet"}
    for folder in (root / "rounds").iterdir():  # a round that is visible under its own name is complete
        if not folder.name.endswith(".tmp"):
            for name in ("candidates.parquet", "audit.parquet"):
                pq.read_table(folder / name)
    return committed


def test_kill_at_every_file_operation_of_a_commit_then_resume(fake_overrides, monkeypatch):
    overrides = [*fake_overrides, "committee.size=2", "train.ema=0", "loop.rounds=2"]
    with monkeypatch.context() as m:
        counter = Operations(m)
        cfg, ref = start(overrides, "ref")
        reference = run_loop(cfg, ref, make_learner=fakes.fake_learner)
    n = counter.count
    assert n >= 15  # 2 temp folders made and renamed, 2 tables, 2 members' files, fsyncs, metrics, manifest
    seen = set()
    for kill_at in range(1, n + 1):
        name = f"kill{kill_at}"
        assert killed_run(overrides, name, kill_at, monkeypatch) == signal.SIGKILL
        root = Path(cfg.out_dir) / name
        seen.add(tuple(assert_nothing_half_written(root)))
        run = RunDir.open(root)
        run.discard_uncommitted()  # what `selfimprove resume` does before it continues
        resumed = run_loop(load_config(str(root / "config.toml")), run, make_learner=fakes.fake_learner)
        assert without_seconds(resumed) == without_seconds(reference), f"killed at operation {kill_at}"
        assert not list(root.rglob("*.tmp"))
        assert sorted(p.name for p in (root / "rounds").iterdir()) == ["0000", "0001", "0002"]
    assert seen == {(0,), (0, 1)}  # killed before the commit point, and after it


# --- the run directory by hand (no loop) ------------------------------------------------------------


def committed_by_hand(tmp_path, rounds=(0,)):
    """A run with `rounds` committed through `commit_round`, each with one checkpoint file."""
    import json

    import pyarrow as pa

    run = RunDir.create(tmp_path / "run", "seed = 0\n", 0)

    def save(folder):
        file = folder / "learner-0.safetensors"
        file.write_bytes(b"weights")
        return [file]

    for r in rounds:
        run.commit_round(r, {"candidates": pa.table({"prompt": ["a="]})}, save, {"round": r})
    assert [json.loads(x)["round"] for x in (run.root / "metrics.jsonl").read_text().splitlines()] == list(rounds)
    return run


def test_discard_uncommitted_deletes_what_a_crash_left_and_says_what(tmp_path):
    run = committed_by_hand(tmp_path)
    root = run.root
    for folder in ("rounds/0001", "rounds/0002.tmp", "checkpoints/0001.tmp"):
        (root / folder).mkdir(parents=True)
    (root / "manifest.json.tmp").write_text("{")
    (root / "metrics.jsonl.tmp").write_text("")
    with open(root / "metrics.jsonl", "a") as f:  # a crash after the metrics line, before the manifest
        f.write('{"round": 1}\n')
    assert run.discard_uncommitted() == ["rounds/0001", "rounds/0002.tmp", "checkpoints/0001.tmp"]
    assert sorted(p.name for p in (root / "rounds").iterdir()) == ["0000"]
    assert sorted(p.name for p in (root / "checkpoints").iterdir()) == ["0000"]
    assert not list(root.glob("*.tmp"))
    # outside tools read metrics.jsonl directly: it holds the committed rounds only
    assert (root / "metrics.jsonl").read_text() == '{"round": 0}\n'
    assert run.discard_uncommitted() == []  # nothing left to discard


def test_verified_checkpoint_names_the_missing_or_damaged_file_and_round(tmp_path):
    from selfimprove.rundir import RunError

    run = committed_by_hand(tmp_path, rounds=(0, 1))
    file = run.checkpoint_dir(1) / "learner-0.safetensors"
    assert run.verified_checkpoint(1) == run.checkpoint_dir(1)
    file.write_bytes(b"weightz")
    with pytest.raises(RunError, match=rf"{file}.*checksum.*round 1"):
        run.verified_checkpoint(1)
    file.unlink()
    with pytest.raises(RunError, match=rf"{file} is missing.*round 1"):
        run.verified_checkpoint(1)


def test_progress_says_the_round_and_phase_in_flight_and_whether_its_process_lives(tmp_path):
    import json

    run = committed_by_hand(tmp_path)
    assert run.progress() is None  # nothing in flight yet
    run.set_progress(1, "label")
    p = run.progress()
    assert (p["round"], p["phase"], p["pid"], p["alive"]) == (1, "label", os.getpid(), True)
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)  # a pid that no longer runs
    (run.root / "progress.json").write_text(json.dumps({**p, "pid": dead}))
    assert run.progress()["alive"] is False
    without_pid = {k: v for k, v in p.items() if k not in ("pid", "alive")}
    (run.root / "progress.json").write_text(json.dumps(without_pid))  # written by hand, or damaged
    assert {k: run.progress()[k] for k in without_pid} == without_pid and run.progress()["alive"] is False
    for pid in (0, -1, "1"):  # no process of its own: never taken for a live run
        (run.root / "progress.json").write_text(json.dumps({**without_pid, "pid": pid}))
        assert run.progress()["alive"] is False
    (run.root / "progress.json").write_text('{"round": 1}')  # damaged: a required key is missing
    assert run.progress() is None
    (run.root / "progress.json").write_text("{")
    assert run.progress() is None
