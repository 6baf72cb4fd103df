"""`selfimprove eval`: exact greedy, pass@N and maj@N scores on fake members, the round's checkpoint is the
one loaded (a real run's audit is reproduced on its own problems), nothing is written into the run, and
bad input exits 2 with a message."""

import functools
import hashlib
import io
import json
import re
from collections import Counter
from pathlib import Path

import fakes
import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import selfimprove.evaluate as ev
from selfimprove.cli import app
from selfimprove.committee import Sampling
from selfimprove.config import dump_toml, load_config
from selfimprove.loop import run_loop
from selfimprove.rundir import RunDir, RunError
from selfimprove.tasks import stream_seed
from selfimprove.tasks.strings import Copy

runner = CliRunner()


def start(overrides):
    cfg = load_config("quick", overrides)
    return cfg, RunDir.create(Path(cfg.out_dir) / cfg.name, dump_toml(cfg), cfg.seed)


@pytest.fixture
def fake_run(fake_overrides):
    """A finished run of three fake members (rounds 0, 1, 2: lengths 1..4, then 5, then 6)."""
    cfg, run = start(fake_overrides)
    run_loop(cfg, run, make_learner=fakes.fake_learner)
    return cfg, run


@pytest.fixture
def fake_cli(monkeypatch):
    """The eval command with fake members instead of the run's learners."""
    monkeypatch.setattr(ev, "evaluate", functools.partial(ev.evaluate, make_learner=fakes.fake_learner))


def eval_prompts(cfg, d, n, seed=0):
    return cfg.task.build().sample((d,), range(n), stream_seed(cfg.seed, "eval", seed))


def majority(answers):
    (top, count), *rest = Counter(answers).most_common()
    assert not rest or rest[0][1] < count  # the tests use odd numbers of answers of two kinds: no ties
    return top


def hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --- exact scores -----------------------------------------------------------------------------------

def test_greedy_scores_of_each_member_and_of_the_vote_are_exact(fake_run):
    cfg, run = fake_run
    result = ev.evaluate(ev.resolve(run.root), make_learner=fakes.fake_learner)
    assert result["round"] == 2 and result["committee"] == 3 and result["samples"] is None
    assert list(result["vote"]) == ["3", "4", "5", "6", "7", "8"]  # round 2's audit window: 6 - 3 .. 6 + 2
    seeds = [cfg.seed + 1000 * k for k in range(3)]
    for d in range(3, 9):
        batch = eval_prompts(cfg, d, cfg.audit.problems)
        answers = [[fakes.answer(s, k, p) for k, s in enumerate(seeds)] for p in batch.prompts]
        truths = [fakes.truth(p) for p in batch.prompts]
        assert truths == batch.truths
        assert result["vote"][str(d)] == np.mean([majority(a) == t for a, t in zip(answers, truths)])
        for k in range(3):
            assert result["members"][k][str(d)] == np.mean([a[k] == t for a, t in zip(answers, truths)])
    assert 0 < result["vote"]["6"] < 1 and result["members"][0]["6"] != result["members"][2]["6"]
    assert result["frontier"] == 4
    # fresh problems: none is one of the run's audit or training problems
    audited = {p for r in run.committed() for p in pq.read_table(run.round_dir(r) / "audit.parquet")["prompt"]
               .to_pylist()}
    trained = {p for r in run.committed() for p in run.candidates(r)["prompt"].to_pylist()}
    fresh = {p for d in range(7, 9) for p in eval_prompts(cfg, d, cfg.audit.problems).prompts}
    assert not fresh & (audited | trained)


class Sampler(fakes.FakeLearner):
    """Greedy: as the FakeLearner. Sample s of a prompt: the FakeLearner's answer under seed + s, so a
    member's samples differ from one another (and sample 0 is its greedy answer). Records the random
    stream of each sampling call in `streams`."""

    streams: list[int] = []

    def generate(self, prompts, budgets, batch_size=1024, samples=1, temperature=0.0, top_p=1.0, seed=0):
        if temperature == 0:
            return super().generate(prompts, budgets, batch_size)
        self.streams.append(seed)
        texts = [fakes.answer(self.seed + s, self.k, p) for p in prompts for s in range(samples)]
        return texts, [True] * len(texts), [0.5] * len(texts)


def sampler(cfg, task, seed):
    return Sampler(task.alphabet, seed, (seed - cfg.seed) // 1000)


def test_pass_and_maj_of_sampled_answers_are_exact(fake_run, monkeypatch):
    cfg, run = fake_run
    monkeypatch.setattr(Sampler, "streams", [])
    spec = ev.resolve(run.root, difficulties=[(5,), (6,), (7,)], problems=100, samples=3)
    assert spec.sampling.samples == 3 and spec.sampling.temperature == 0.7
    result = ev.evaluate(spec, make_learner=sampler)
    assert result["samples"] == 3 and result["temperature"] == 0.7
    seeds = [cfg.seed + 1000 * k for k in range(3)]
    for d in (5, 6, 7):
        prompts = eval_prompts(cfg, d, 100).prompts
        truths = [fakes.truth(p) for p in prompts]
        # answers[i][k][s]: member k's sample s to prompt i
        answers = [[[fakes.answer(seed + s, k, p) for s in range(3)] for k, seed in enumerate(seeds)] for p in prompts]
        every = [[x for member in a for x in member] for a in answers]
        assert result["pass"][str(d)] == np.mean([t in a for a, t in zip(every, truths)])
        assert result["maj"][str(d)] == np.mean([majority(a) == t for a, t in zip(every, truths)])
        for k in range(3):
            assert result["members_pass"][k][str(d)] == np.mean([t in a[k] for a, t in zip(answers, truths)])
            assert result["members_maj"][k][str(d)] == np.mean([majority(a[k]) == t for a, t in zip(answers, truths)])
            assert result["members"][k][str(d)] == np.mean([a[k][0] == t for a, t in zip(answers, truths)])
    assert result["pass"]["6"] > result["maj"]["6"] and result["members_pass"][0]["6"] > result["members"][0]["6"]
    assert len(set(Sampler.streams)) == len(Sampler.streams) == 3 * 3  # each member and difficulty: a stream of its own


def test_one_sample_at_a_temperature_is_scored_as_sampled(fake_run):
    _, run = fake_run
    spec = ev.resolve(run.root, difficulties=[(6,)], problems=50, temperature=1.0)
    result = ev.evaluate(spec, make_learner=sampler)
    assert result["samples"] == 1 and result["members_pass"] == result["members_maj"] == result["members"]


def test_the_result_names_its_run_and_progress_counts_every_answer(fake_run):
    cfg, run = fake_run
    counted = []
    spec = ev.resolve(run.root, difficulties=[(5,), (6,)], problems=20, samples=3)
    result = ev.evaluate(spec, make_learner=sampler, advance=counted.append)
    assert (result["run"], result["task"], result["learner"]) == (str(run.root), "copy", cfg.learner.kind)
    assert sum(counted) == 3 * 2 * 20 * (1 + 3)  # members x difficulties x problems x (greedy + 3 samples)


def test_each_seed_samples_from_streams_of_its_own(fake_run, monkeypatch):
    _, run = fake_run
    streams = {}
    for seed in (0, 1):
        monkeypatch.setattr(Sampler, "streams", [])
        ev.evaluate(ev.resolve(run.root, difficulties=[(6,)], problems=20, samples=3, seed=seed), make_learner=sampler)
        streams[seed] = set(Sampler.streams)
    assert len(streams[0]) == 3 and not streams[0] & streams[1]


def test_resolve_at_the_bounds_of_its_arguments(fake_run):
    cfg, run = fake_run
    config = run.root / "config.toml"
    config.write_text(config.read_text().replace("workers = 1", "workers = 3"))  # as if run with 3 workers
    spec = ev.resolve(run.root, problems=1, samples=2)
    assert spec.cfg.committee.workers == 1 and spec.problems == 1  # eval answers in this process
    assert spec.sampling == Sampling(2, 0.7, 1.0, stream_seed(cfg.seed, "eval", 0, "sample"))
    assert ev.resolve(run.root, temperature=10).sampling.temperature == 10
    for kwargs, error, message in (({"temperature": 10.5}, ValueError, "between 0 and 10"),
                                   ({"samples": 2, "temperature": 0}, ValueError, "2 identical greedy answers"),
                                   ({"round_": 7}, RunError, "committed rounds: 0, 1, 2$")):
        with pytest.raises(error, match=message):
            ev.resolve(run.root, **kwargs)


def test_a_run_without_a_committed_round_has_nothing_to_evaluate(fake_overrides):
    _, run = start(fake_overrides)
    with pytest.raises(RunError, match="no committed round yet"):
        ev.resolve(run.root)


# --- which checkpoint, and read-only ----------------------------------------------------------------

def test_round_loads_that_rounds_checkpoint(fake_run, monkeypatch):
    _, run = fake_run
    loaded = []
    monkeypatch.setattr(fakes.FakeLearner, "load", lambda self, path: loaded.append(path))
    assert ev.resolve(run.root).checkpoint == run.checkpoint_dir(2)
    spec = ev.resolve(run.root, round_=1)
    assert spec.round == 1 and list(ev.evaluate(spec, make_learner=fakes.fake_learner)["vote"]) == \
        ["2", "3", "4", "5", "6", "7"]  # round 1's audit window: 5 - 3 .. 5 + 2
    assert loaded == [run.checkpoint_dir(1) / f"learner-{k}" for k in range(3)]


def test_eval_writes_nothing_into_the_run(fake_run, fake_cli, tmp_path):
    _, run = fake_run
    before = hashes(run.root)
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["eval", str(run.root), "--difficulty", "6", "--samples", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "vote: 6:" in result.output and "pass@3: 6:" in result.output and "member 2" in result.output
    result = runner.invoke(app, ["eval", str(run.root), "--round", "0", "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["round"] == 0 and json.loads(out.read_text())["maj"].keys() == {"6"}
    assert hashes(run.root) == before


@pytest.mark.parametrize(("args", "message"), [
    (["--round", "7"], "round 7 of"),
    (["--difficulty", "3,4"], "takes difficulties of 1 positive int"),
    (["--difficulty", "x"], "ints separated by commas"),
    (["--difficulty", "12"], "cannot draw problems of difficulty 12"),
    (["--samples", "0"], "at least 1"),
    (["--samples", "4", "--temperature", "0"], "identical greedy answers"),
    (["--problems", "0"], "at least 1"),
    (["--out", "{run}/eval.json"], "inside the run directory"),
])
def test_bad_input_exits_2_with_a_message(fake_run, fake_cli, monkeypatch, args, message):
    _, run = fake_run
    monkeypatch.setattr(Copy, "drawable", lambda self, d: d[0] <= 10)
    before = hashes(run.root)
    result = runner.invoke(app, ["eval", str(run.root), *[a.format(run=run.root) for a in args]])
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert hashes(run.root) == before


def test_a_folder_that_is_not_a_run_exits_2(tmp_path):
    result = runner.invoke(app, ["eval", str(tmp_path)])
    assert result.exit_code == 2 and "is not a selfimprove run" in " ".join(result.output.split())


# --- what is printed ----------------------------------------------------------------------------------

def made_result(k, n):
    """A hand-made result of K members with N samples each (None: greedy only) on difficulties 5 and 6."""
    def scores(x):
        return {"5": x, "6": x / 2}

    result = {"run": "runs/quick", "round": 2, "problems": 500, "seed": 1, "committee": k, "samples": n,
              "temperature": 0.7 if n else None, "vote": scores(0.8),
              "members": [scores(0.1 + j / 100) for j in range(k)]}
    if n:
        result |= {"pass": scores(0.9), "maj": scores(0.7), "members_pass": [scores(0.2 + j / 100) for j in range(k)],
                   "members_maj": [scores(0.3 + j / 100) for j in range(k)]}
    return result


def cells(table) -> list[list[str]]:
    from rich.console import Console

    console = Console(width=200, file=io.StringIO(), color_system=None)
    console.print(table)
    lines = console.file.getvalue().splitlines()
    return [[c.strip() for c in re.split("[┃│]", line)[1:-1]] for line in lines if line[:1] in "┃│"]


def test_the_table_has_a_row_per_difficulty_for_the_vote_then_each_member():
    assert cells(ev.table(made_result(1, None))) == [
        ["difficulty", "who", "greedy"], ["5", "member 0", "0.800"], ["6", "member 0", "0.400"]]
    assert cells(ev.table(made_result(2, None)))[1:4] == [
        ["5", "vote", "0.800"], ["5", "member 0", "0.100"], ["5", "member 1", "0.110"]]
    assert cells(ev.table(made_result(2, 3))) == [
        ["difficulty", "who", "greedy", "pass@3", "maj@3"],
        ["5", "vote", "0.800", "0.900", "0.700"], ["5", "member 0", "0.100", "0.200", "0.300"],
        ["5", "member 1", "0.110", "0.210", "0.310"],
        ["6", "vote", "0.400", "0.450", "0.350"], ["6", "member 0", "0.050", "0.100", "0.150"],
        ["6", "member 1", "0.055", "0.105", "0.155"]]


def test_the_heading_says_what_was_evaluated():
    greedy = "eval runs/quick round 2 | 500 problems per difficulty | seed 1"
    assert ev.heading(made_result(2, None)) == greedy
    assert ev.heading(made_result(2, 3)) == greedy + " | 3 samples at temperature 0.7"


# --- a real run ---------------------------------------------------------------------------------------

@pytest.mark.learns
def test_eval_reproduces_each_rounds_audit_on_its_problems_and_writes_nothing(tiny_overrides, monkeypatch):
    cfg, run = start(tiny_overrides)
    history = run_loop(cfg, run)
    before = hashes(run.root)
    printed = {}
    for r in (0, 2):
        args = ["eval", str(run.root), "--round", str(r), "--difficulty", "3", "--difficulty", "4", "--json"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        printed[r] = json.loads(result.stdout)
        # on the audit's own problems, eval gives the audit's numbers: the round's models are the ones loaded
        spec = ev.resolve(run.root, round_=r)
        monkeypatch.setattr(ev, "stream_seed", lambda seed, *parts, r=r: stream_seed(seed, "audit", r))
        assert ev.evaluate(spec)["vote"] == history[r]["audit"]
        monkeypatch.undo()
    assert printed[0]["vote"] != printed[2]["vote"]  # rounds 1 and 2 trained on more letters
    # a difficulty's sampled answers do not depend on which other difficulties are asked
    alone, both = (ev.evaluate(ev.resolve(run.root, difficulties=ds, samples=3)) for ds in ([(3,)], [(4,), (3,)]))
    assert alone["pass"]["3"] == both["pass"]["3"] and alone["maj"]["3"] == both["maj"]["3"]
    assert hashes(run.root) == before
