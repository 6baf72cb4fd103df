"""The `selfimprove` command line: plain functions made into commands by typer.

    selfimprove run [CONFIG] [--set key=value ...] [--overwrite]
    selfimprove resume RUN
    selfimprove status [RUN]
    selfimprove report RUN [RUN ...] [--out DIR]
    selfimprove sweep [CONFIG] [--size K ...] [--samples N ...] [--agree SHARE ...] [--set key=value ...]
    selfimprove judge RUN [RUN ...] [--rounds] [--json]
    selfimprove tasks
    selfimprove eval RUN [--round R] [--difficulty D ...] [--samples N] [--json] [--out FILE]
    selfimprove sandbox PROGRAM.py [--input JSON] [--timeout S]
"""

from __future__ import annotations

import json
import math
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from selfimprove.config import ConfigError, dump_toml, load_config, presets, validate
from selfimprove.rundir import RunDir, RunError, trains
from selfimprove.tasks import difficulty_key

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Recursive self-improvement loops, audited against held-out truth every round.")
console = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)  # a message is text: '.[hf]' is no markup
    raise typer.Exit(2)


class RichUI:
    """Progress bars for rounds and phases; one plain grep-able line per committed round."""

    def __init__(self, progress: Progress, total_rounds: int, done: int):
        self.progress = progress
        self.rounds = progress.add_task("rounds", total=total_rounds, completed=done)

    @contextmanager
    def phase(self, name: str, total: int):
        task = self.progress.add_task(name, total=total)
        try:
            yield lambda n=1: self.progress.advance(task, n)
        finally:
            self.progress.remove_task(task)

    def line(self, text: str) -> None:
        self.progress.console.print(text, markup=False, soft_wrap=True)
        self.progress.advance(self.rounds)


def _check_extras(cfg) -> dict:
    """Fail before anything is written if the config needs what is missing; returns what the manifest
    records about the learner (an hf learner: the resolved model and revision)."""
    learner = {"kind": cfg.learner.kind}
    if cfg.learner.kind == "hf":
        from selfimprove.hf import check

        learner = check(cfg)
    if cfg.task.build().runs_code:  # no round may start that could not run its programs in the sandbox
        from selfimprove.sandbox import Sandbox, SandboxUnavailable

        try:
            Sandbox(workers=1).close()
        except SandboxUnavailable as e:
            raise ConfigError(f"task {cfg.task.name!r} runs the model's programs: {e}") from None
    if cfg.tracking == "tensorboard":
        try:
            import tensorboardX  # noqa: F401
        except ImportError:
            raise ConfigError("tracking = 'tensorboard' needs tensorboardX: pip install -e '.[tracking]'") from None
    return learner


def _pinned(cfg, learner: dict):
    """The config with the Hub revision the check resolved, so that `resume` loads the same base weights
    even after the Hub's branch has moved on."""
    revision = learner.get("revision")
    if cfg.learner.kind != "hf" or not revision or cfg.learner.revision == revision:
        return cfg
    return cfg.model_copy(update={"learner": cfg.learner.model_copy(update={"revision": revision})})


def _refuse_live(run_dir: RunDir) -> None:
    progress = run_dir.progress()
    if run_dir.manifest().get("status") == "running" and progress and progress["alive"]:
        raise RunError(f"{run_dir.root} is being run right now by process {progress.get('pid')} (round "
                       f"{progress['round']}, {progress['phase']}); wait for it or stop it first.")


def _execute(cfg, run: RunDir) -> None:
    from selfimprove.committee import MemberError
    from selfimprove.loop import run_loop

    done = len(run.committed())
    progress = Progress(TextColumn("{task.description:>7}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=False)
    try:
        with progress:
            history = run_loop(cfg, run, RichUI(progress, cfg.loop.rounds + 1, done))
    except KeyboardInterrupt:
        run.set_status("interrupted")
        err.print(f"interrupted; committed rounds are kept. Continue with `selfimprove resume {run.root}`.")
        raise typer.Exit(130) from None
    except RunError as e:
        fail(str(e))
    except MemberError as e:
        run.set_status("failed")
        fail(f"{e}\nCommitted rounds are kept; fix the cause and continue with `selfimprove resume {run.root}`.")
    except Exception as e:
        run.set_status("failed")
        fail(f"the run stopped: {type(e).__name__}: {e}\nCommitted rounds are kept; continue with "
             f"`selfimprove resume {run.root}` once the cause is fixed.")
    last = next(filter(trains, reversed(history)), {})
    console.print(f"run: {run.root}")
    console.print(f"rounds: {len(history)}")
    console.print(f"frontier: {last.get('frontier')}")


@app.command()
def run(
    config: Annotated[str | None, typer.Argument(
        help=f"TOML file or preset ({', '.join(presets())}); default quick")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a config value: key=value")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing run directory of the same name")] = False,
) -> None:
    """Start a new run."""
    try:
        cfg = load_config(config, set_)
        learner = _check_extras(cfg)
        cfg = _pinned(cfg, learner)
        run_dir = RunDir.create(Path(cfg.out_dir) / cfg.name, dump_toml(cfg), cfg.seed, overwrite, learner=learner)
    except (ConfigError, RunError) as e:
        fail(str(e))
    seeds = [difficulty_key(d) for d in cfg.task.build().base_difficulties(cfg.task.base)]
    console.print(f"run {run_dir.root}: task {cfg.task.name}, seed data {seeds[0]}..{seeds[-1]}, "
                  f"{cfg.loop.rounds} rounds")
    _execute(cfg, run_dir)


@app.command()
def resume(run_path: Annotated[Path, typer.Argument(metavar="RUN", help="run directory")]) -> None:
    """Continue a run from its last committed round (after a crash, kill or Ctrl-C)."""
    import tomllib

    try:
        run_dir = RunDir.open(run_path)
        data = tomllib.loads((run_path / "config.toml").read_text())
        if "guard" not in data:  # a run begun before the guard existed goes on as it began
            data["guard"], data.setdefault("audit", {})["base"] = {"mode": "off"}, 0
        cfg = validate(data)
        _check_extras(cfg)
        _refuse_live(run_dir)
        removed = run_dir.discard_uncommitted()
        if removed:
            console.print(f"discarded the unfinished round(s): {', '.join(removed)}")
        committed = run_dir.committed()
        if run_dir.trained_rounds():
            run_dir.verified_checkpoint(run_dir.trained_rounds()[-1])
        run_dir.set_status("running")
    except (ConfigError, RunError) as e:
        fail(str(e))
    except tomllib.TOMLDecodeError as e:
        fail(f"{run_path}/config.toml is damaged ({e}); this run cannot be resumed.")
    console.print(f"resuming {run_path} after round {committed[-1] if committed else 'none'}")
    _execute(cfg, run_dir)


@app.command()
def status(run_path: Annotated[Path | None, typer.Argument(
        metavar="[RUN]", help="run directory; default: all runs under ./runs")] = None) -> None:
    """Show a run's state and its last round, or list the runs under ./runs."""
    if run_path is None:
        runs = sorted(p.parent for p in Path("runs").glob("*/manifest.json"))
        if not runs:
            console.print("no runs under ./runs; start one with `selfimprove run`")
            return
        table = Table("run", "status", "rounds", "frontier")
        for path in runs:
            try:
                r = RunDir.open(path)
                m = r.metrics()
                table.add_row(str(path), r.manifest()["status"], str(len(m)), str(m[-1]["frontier"] if m else "-"))
            except (RunError, ValueError, KeyError):
                table.add_row(str(path), "damaged", "-", "-")
        console.print(table)
        return
    try:
        run_dir = RunDir.open(run_path)
        m = run_dir.manifest()
        metrics = run_dir.metrics()
        m["status"]  # noqa: B018
    except RunError as e:
        fail(str(e))
    except (ValueError, KeyError) as e:
        fail(f"{run_path} is damaged ({type(e).__name__}: {e}); `selfimprove report {run_path}` says what is there.")
    console.print(f"run: {run_path}\nstatus: {m['status']}\ncommitted rounds: {len(metrics)}")
    if m.get("stop_reason"):
        console.print(f"stopped: {m['stop_reason']}", markup=False, soft_wrap=True)
    progress = run_dir.progress()
    if m["status"] == "running" and progress and progress["round"] >= len(metrics):
        since = time.time() - progress["since"]
        if progress["alive"]:
            console.print(f"in flight: round {progress['round']}, phase {progress['phase']} (for {since:.0f} s)")
        else:
            console.print(f"stopped in round {progress['round']}, phase {progress['phase']} (its process is "
                          f"gone); continue with `selfimprove resume {run_path}`")
    if metrics:
        from selfimprove.loop import round_line

        console.print(round_line(metrics[-1]), markup=False, soft_wrap=True)


@app.command()
def sweep(
    config: Annotated[str | None, typer.Argument(help="TOML file or preset; default quick")] = None,
    size: Annotated[list[int] | None, typer.Option(help="committee sizes to compare (repeat the option)")] = None,
    agree: Annotated[list[float] | None, typer.Option(
        help="vote thresholds: share of members that must agree (repeat the option)")] = None,
    samples: Annotated[list[int] | None, typer.Option(
        help="sampled answers per member to compare (repeat the option); default 1 (greedy)")] = None,
    temperature: Annotated[float | None, typer.Option(
        help="sampling temperature where samples > 1; default the config's, else 0.7")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a config value: key=value")] = None,
) -> None:
    """Voter economics: run the same rounds with several committee sizes, samples per member and vote
    thresholds, then tabulate label precision, recall, kept share and seconds."""
    from selfimprove.sweep import markdown, summarize, sweep_configs

    try:
        folder, configs = sweep_configs(config, set_ or [], size or [1, 3, 5], agree or [0.8], samples or [1],
                                        temperature)
        # the runs differ only in their committees: the largest one is checked (memory grows with it)
        learner = _check_extras(max(configs, key=lambda c: c.committee.size))
        configs = [_pinned(c, learner) for c in configs]
    except ConfigError as e:
        fail(str(e))
    rows = []
    for cfg in configs:
        root = Path(cfg.out_dir) / cfg.name
        try:
            if (root / "manifest.json").exists():
                run_dir = RunDir.open(root)
                if (root / "config.toml").read_text() != dump_toml(cfg):
                    fail(f"{root} holds a run with another config; delete it or sweep under another "
                         f"name (--set name=NEW)")
                _refuse_live(run_dir)
                run_dir.discard_uncommitted()
            else:
                run_dir = RunDir.create(root, dump_toml(cfg), cfg.seed, learner=learner)
        except RunError as e:
            fail(str(e))
        if run_dir.manifest()["status"] != "finished":
            console.print(f"run {root}: committee of {cfg.committee.size}, {cfg.committee.samples} answer(s) each, "
                          f"agree {cfg.committee.agree:g}")
            run_dir.set_status("running")
            _execute(cfg, run_dir)
        rows.append(summarize(cfg, run_dir.metrics()))
    table = markdown(rows)
    (folder / "sweep.md").write_text(table)
    console.print(table, markup=False, soft_wrap=True)
    console.print(f"table: {folder / 'sweep.md'}")


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN...", help="one run, or several to overlay")],
    out: Annotated[Path | None, typer.Option(
        help="folder for index.html and the figures; default RUN/report, or <parent>/compare-A-vs-B")] = None,
) -> None:
    """Write an HTML page with figures, metrics, config and a verdict; several runs are overlaid."""
    from rich.markup import escape

    from selfimprove.report import verdict, write_report

    try:
        result = write_report(runs, out)
    except RunError as e:
        fail(str(e))
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
    for run in result.runs:
        word, reason = verdict(run)
        console.print(f"verdict {run.name}: {word} ({reason})", markup=False, soft_wrap=True)
    console.print(f"report: {result.page}", markup=False, soft_wrap=True)


@app.command()
def judge(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN...", help="runs whose guard to judge")],
    rounds: Annotated[bool, typer.Option("--rounds", help="also list every round's decision")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON (rows and summaries) instead of tables")] = False,
) -> None:
    """Judge the guard against the audit: per run, its decisions, the misses (committed rounds whose label
    precision is below 0.9), the false alarms (held or rolled-back rounds at 0.97 or above), and the
    signals that triggered; precision is recomputed from candidates.parquet."""
    from selfimprove.judge import FALSE_ALARM_AT, MISS_BELOW, judge_run, summary

    try:
        per_run = {r.name if [x.name for x in runs].count(r.name) == 1 else str(r): judge_run(r) for r in runs}
    except RunError as e:
        fail(str(e))
    everything = [row for rows in per_run.values() for row in rows]
    if as_json:
        console.print_json(json.dumps({"rounds": everything, "runs": {k: summary(v) for k, v in per_run.items()},
                                       "all": summary(everything)}))
        return
    if rounds:
        table = Table("run", "round", "difficulties", "decision", "signal", "kept", "precision", "judgement")
        for r in everything:
            table.add_row(r["run"], str(r["round"]), " ".join(map(difficulty_key, r["difficulties"])), r["decision"],
                          r["signal"] or "", str(r["n_kept"]), _fmt3(r["precision"]), r["judgement"])
        console.print(table)
    console.print(f"misses: committed rounds at label precision < {MISS_BELOW}; false alarms: held or rolled-back "
                  f"rounds at >= {FALSE_ALARM_AT}", markup=False)
    table = Table("run", "rounds", "commit", "hold", "rollback", "stop", "misses", "false alarms",
                  "lowest committed precision", "triggers")
    for name, rows in [*per_run.items(), *([("all", everything)] if len(per_run) > 1 else [])]:
        s = summary(rows)
        table.add_row(name, *(str(s[k]) for k in ("rounds", "commit", "hold", "rollback", "stop", "misses",
                                                 "false_alarms")), _fmt3(s["lowest_committed_precision"]),
                      ", ".join(f"{k} {v}" for k, v in sorted(s["triggers"].items())))
    console.print(table)


def _fmt3(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


@app.command()
def tasks() -> None:
    """List the registered tasks, their difficulty axes and an example problem."""
    from selfimprove.tasks import TASKS

    table = Table("task", "axes", "example", "answer", "about")
    for name, task in sorted(TASKS.items()):
        batch = task.sample(task.example(), [0], seed=0)
        table.add_row(name, ", ".join(task.axes), batch.prompts[0], batch.truths[0], task.description)
    console.print(table)


@app.command("eval")
def eval_(
    run_path: Annotated[Path, typer.Argument(metavar="RUN", help="run directory")],
    round_: Annotated[int | None, typer.Option("--round", help="committed round to evaluate; default the last")] = None,
    difficulty: Annotated[list[str] | None, typer.Option(
        help="difficulty to evaluate, e.g. 9, or 3,4 for two axes (repeat the option); default the round's "
             "audit difficulties")] = None,
    problems: Annotated[int | None, typer.Option(help="fresh problems per difficulty; default audit.problems")] = None,
    samples: Annotated[int, typer.Option(help="sampled answers per member, for pass@N and maj@N")] = 1,
    temperature: Annotated[float | None, typer.Option(
        help="of the sampled answers (from the whole distribution: top-p 1, whatever the run's "
             "committee.top_p); default 0.7 with --samples above 1")] = None,
    seed: Annotated[int, typer.Option(help="which set of fresh problems (each seed has a stream of its own)")] = 0,
    json_: Annotated[bool, typer.Option("--json", help="print the result as JSON instead of a table")] = False,
    out: Annotated[Path | None, typer.Option(help="also write the result as JSON to this file (outside RUN)")] = None,
) -> None:
    """Score a committed round's models on fresh held-out problems: greedy accuracy of each member and of
    their vote; with --samples N also pass@N and maj@N. Writes nothing into RUN."""
    from selfimprove.committee import MemberError
    from selfimprove.evaluate import evaluate, heading, parse_difficulty, resolve, table

    try:
        difficulties = [parse_difficulty(d) for d in difficulty] if difficulty else None
        spec = resolve(run_path, round_, difficulties, problems, samples, temperature, seed)
    except (RunError, ConfigError, ValueError) as e:
        fail(str(e))
    except KeyError as e:
        fail(f"{run_path} is damaged (no {e} in its metrics); `selfimprove report {run_path}` says what is there.")
    if out is not None and out.resolve().is_relative_to(run_path.resolve()):
        fail(f"--out {out} is inside the run directory, which eval never writes; choose a path outside it.")
    n = spec.cfg.committee.size * len(spec.difficulties) * spec.problems * (
        1 + (spec.sampling.samples if spec.sampling else 0))
    progress = Progress(TextColumn("{task.description:>7}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=err, transient=True)
    try:
        with progress:
            bar = progress.add_task("answers", total=n)
            result = evaluate(spec, advance=lambda k: progress.advance(bar, k))
    except MemberError as e:
        fail(f"{e}\nIs {spec.checkpoint} a checkpoint of this run's learners?")
    except ConfigError as e:  # the learner cannot be built here (say, the hf extra is missing)
        fail(str(e))
    text = json.dumps(result, indent=1)
    if out is not None:
        try:
            out.write_text(text + "\n")
        except OSError as e:
            fail(f"cannot write {out}: {e}")
    if json_:
        typer.echo(text)
        return
    console.print(heading(result), markup=False, soft_wrap=True)
    console.print(table(result))
    for name in ("vote", "pass", "maj"):
        if name in result:
            label = name if name == "vote" else f"{name}@{result['samples']}"
            console.print(f"{label}: " + " ".join(f"{k}:{v:.3f}" for k, v in result[name].items()), markup=False)
    console.print(f"frontier: {result['frontier']}", markup=False)
    if out is not None:
        console.print(f"json: {out}", markup=False, soft_wrap=True)


@app.command()
def sandbox(
    program: Annotated[Path, typer.Argument(metavar="PROGRAM.py", help="Python source that defines f")],
    input_: Annotated[str, typer.Option("--input", help="JSON list of inputs; f is called on each")] = "[]",
    timeout: Annotated[float, typer.Option(help="wall-clock seconds before the program's processes are killed")] = 2.0,
) -> None:
    """Run one untrusted program in the sandbox exactly as the loop does (bubblewrap, no network, a
    read-only /usr, limits) and print its result as JSON: status, outputs, reason. Exit 0 when the
    program ran to its outputs, 1 when it failed (error, timeout, memory, output, crash), 2 when the
    sandbox cannot run here."""
    from selfimprove.sandbox import Limits, Sandbox, SandboxUnavailable

    try:
        source = program.read_text()
    except (OSError, UnicodeDecodeError) as e:
        fail(f"cannot read {program}: {e}")
    try:
        inputs = json.loads(input_)
    except ValueError as e:
        fail(f"--input is not JSON ({e}); give a JSON list of inputs, e.g. --input '[[3, 1, 2]]'")
    if not isinstance(inputs, list):
        fail(f"--input must be a JSON list of inputs (f is called on each), got {input_}; e.g. --input '[[3, 1, 2]]'")
    try:
        limits = Limits(timeout=timeout, cpu=max(1, math.ceil(timeout)))
    except ValueError as e:
        fail(str(e))
    try:
        with Sandbox(workers=1, limits=limits) as box:
            result = box.run(source, inputs)
    except SandboxUnavailable as e:
        fail(str(e))
    typer.echo(json.dumps({"status": result.status, "outputs": result.outputs, "reason": result.reason}))
    raise typer.Exit(0 if result.ok else 1)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
