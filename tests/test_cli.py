"""The command line: bad input gets a message naming the problem and the fix, exit code 2, and
nothing is overwritten."""

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import learning_overrides
from typer.testing import CliRunner

from selfimprove.cli import app
from selfimprove.rundir import RunDir

runner = CliRunner()
pytestmark = pytest.mark.learns


def sets(overrides):
    return [x for o in overrides for x in ("--set", o)]


@pytest.fixture(scope="module")
def _finished(tmp_path_factory):
    """One finished run of the learning config, made once for this module."""
    out = tmp_path_factory.mktemp("cli") / "runs"
    result = runner.invoke(app, ["run", *sets(learning_overrides(out))])
    assert result.exit_code == 0, result.output
    return out / "tiny"


@pytest.fixture
def finished_run(_finished, tmp_path):
    """A copy of that run, where each test's `tiny_overrides` put it."""
    root = tmp_path / "runs" / "tiny"
    shutil.copytree(_finished, root)
    return root


def test_run_prints_one_greppable_line_per_round(finished_run, tiny_overrides):
    result = runner.invoke(app, ["status", str(finished_run)])
    assert result.exit_code == 0
    assert "status: finished" in result.output and "committed rounds: 3" in result.output
    line = next(x for x in result.output.splitlines() if x.startswith("round 2 |"))
    assert line.startswith("round 2 | difficulty (5,) | kept ") and "| audit 2:" in line and line.endswith(" s")


def test_existing_run_is_refused_and_kept(finished_run, tiny_overrides):
    before = (finished_run / "manifest.json").read_text()
    result = runner.invoke(app, ["run", *sets(tiny_overrides)])
    assert result.exit_code == 2
    assert "already exists" in result.output and "resume" in result.output and "--overwrite" in result.output
    assert (finished_run / "manifest.json").read_text() == before


def test_overwrite_replaces_a_run(finished_run, tiny_overrides):
    result = runner.invoke(app, ["run", *sets([*tiny_overrides, "loop.rounds=0", "train.steps=1"]), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert json.loads((finished_run / "manifest.json").read_text())["committed_rounds"] == [0]


def test_bad_config_is_refused_before_anything_is_written(tiny_overrides, tmp_path):
    result = runner.invoke(app, ["run", *sets([*tiny_overrides, "train.lr=-1"])])
    assert result.exit_code == 2 and "train.lr" in result.output
    assert not (tmp_path / "runs").exists()
    result = runner.invoke(app, ["run", *sets([*tiny_overrides, "task.name=sorting"])])
    assert result.exit_code == 2 and "known tasks" in result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_out_dir(tiny_overrides, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = runner.invoke(app, ["run", *sets([*tiny_overrides, f"out_dir={locked}"])])
    assert result.exit_code == 2 and "out_dir" in result.output


def test_out_dir_that_is_a_file(tiny_overrides, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(app, ["run", *sets([*tiny_overrides, f"out_dir={blocker}"])])
    assert result.exit_code == 2 and "cannot" in result.output


def test_resume_refuses_a_damaged_checkpoint(finished_run):
    ckpt = finished_run / "checkpoints" / "0002" / "learner-0.safetensors"
    data = bytearray(ckpt.read_bytes())
    data[-1] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    manifest = json.loads((finished_run / "manifest.json").read_text())
    manifest["status"] = "interrupted"
    (finished_run / "manifest.json").write_text(json.dumps(manifest))
    result = runner.invoke(app, ["resume", str(finished_run)])
    assert result.exit_code == 2
    assert "checksum" in result.output and "learner-0.safetensors" in result.output
    assert ckpt.read_bytes() == bytes(data)  # nothing repaired or overwritten behind the user's back


def test_resume_of_a_finished_run_adds_nothing(finished_run):
    result = runner.invoke(app, ["resume", str(finished_run)])
    assert result.exit_code == 0, result.output
    assert json.loads((finished_run / "manifest.json").read_text())["committed_rounds"] == [0, 1, 2]


def test_resume_and_status_of_something_that_is_not_a_run(tmp_path):
    for command in ("resume", "status"):
        result = runner.invoke(app, [command, str(tmp_path)])
        assert result.exit_code == 2 and "not a selfimprove run" in result.output


def test_damaged_manifest(finished_run):
    (finished_run / "manifest.json").write_text("{not json")
    result = runner.invoke(app, ["resume", str(finished_run)])
    assert result.exit_code == 2 and "damaged" in result.output


def test_tasks_lists_every_task_with_an_example():
    result = runner.invoke(app, ["tasks"])
    assert result.exit_code == 0
    for name in ("reverse_add", "copy", "reverse", "digits", "length"):
        assert name in result.output


def test_status_lists_runs_in_the_working_directory(finished_run, monkeypatch):
    monkeypatch.chdir(finished_run.parent.parent)
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0 and "tiny" in result.output and "finished" in result.output
    assert Path("runs").is_dir()


def test_status_shows_the_round_and_phase_in_flight(finished_run):
    run = RunDir.open(finished_run)
    run.set_status("running")
    run.set_progress(3, "learn")  # as the loop writes it, from this (live) process
    result = runner.invoke(app, ["status", str(finished_run)])
    assert "in flight: round 3, phase learn" in result.output, result.output
    progress = json.loads((finished_run / "progress.json").read_text())
    progress["pid"] = 2**22 + 12345  # a process that does not exist
    (finished_run / "progress.json").write_text(json.dumps(progress))
    result = runner.invoke(app, ["status", str(finished_run)])
    assert "stopped in round 3, phase learn" in result.output and "selfimprove resume" in result.output


def test_a_failing_committee_member_exits_non_zero_with_its_seed(tiny_overrides, monkeypatch):
    from selfimprove.committee import Member

    def broken(self, *args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Member, "generate", broken)
    result = runner.invoke(app, ["run", *sets(tiny_overrides), "--set", "committee.size=2", "--set", "train.steps=1"])
    assert result.exit_code == 2 and "seed 0" in result.output and "disk full" in result.output
    assert RunDir.open(Path(tiny_overrides[0].split("=", 1)[1]) / "tiny").manifest()["status"] == "failed"


def test_sweep_tabulates_each_committee_and_reuses_finished_runs(tiny_overrides, tmp_path):
    args = ["sweep", "--size", "1", "--size", "2", "--agree", "1.0", *sets(tiny_overrides),
            "--set", "loop.rounds=1", "--set", "loop.filters=['majority', 'length']"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "runs" / "tiny-sweep"
    table = (folder / "sweep.md").read_text().splitlines()
    assert table[0].startswith("| K | N | agree | rounds | label_precision |") and len(table) == 4
    assert table[2].startswith("| 1 | 1 | - | 1 |") and table[3].startswith("| 2 | 1 | 1.000 | 1 |")
    assert sorted(p.name for p in folder.iterdir()) == ["k1", "k2-a1", "sweep.md"]
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "committee of" not in again.output  # nothing ran twice
    assert (folder / "sweep.md").read_text().splitlines() == table
    no_vote = runner.invoke(app, ["sweep", *sets(tiny_overrides), "--set", "loop.filters=['length']"])
    assert no_vote.exit_code == 2 and "majority" in no_vote.output


def test_resume_refuses_a_run_that_is_running_and_status_survives_damage(finished_run):
    run = RunDir.open(finished_run)
    run.set_status("running")
    run.set_progress(3, "learn")  # this live process "runs" it
    result = runner.invoke(app, ["resume", str(finished_run)])
    assert result.exit_code == 2 and "being run right now" in result.output
    (finished_run / "metrics.jsonl").write_text("{not json\n")
    result = runner.invoke(app, ["status", str(finished_run)])
    assert result.exit_code == 2 and "damaged" in result.output


def test_status_says_why_a_run_stopped(finished_run):
    RunDir.open(finished_run).set_status("finished", stop_reason="round 2 kept none of its 200 labels at (5,)")
    result = runner.invoke(app, ["status", str(finished_run)])
    assert "stopped: round 2 kept none of its 200 labels at (5,)" in result.output
