"""`selfimprove report`: the page and its figures from a real tiny run and from hand-written run
directories (100 rounds, a two-axis task, damaged runs and fields), the verdict rule, the overlay of
several runs, a bug in figure code failing the command, and the page rendered by a real headless
chromium from file://."""

import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from selfimprove import report as report_module
from selfimprove.cli import app
from selfimprove.config import dump_toml, load_config
from selfimprove.loop import run_loop
from selfimprove.report import fig_audit_heatmaps, load_run, verdict, write_report
from selfimprove.rundir import RunDir

runner = CliRunner()
FIGURES = {"audit", "frontier", "labels", "vote_share", "loss", "seconds"}


def fake_run(root: Path, rounds: int = 5, axes: int = 1, frontier=lambda r: 3 + r, precision=lambda r: 0.99,
             audit=None, drop_keys=()) -> Path:
    """A run directory written by hand, as the loop would leave it; `drop_keys` imitates older runs."""
    root.mkdir(parents=True)
    task = "multiply" if axes == 2 else "copy"
    (root / "config.toml").write_text(f'name = "{root.name}"\n\n[task]\nname = "{task}"\n')
    lines = []
    for r in range(rounds + 1):
        if axes == 1:
            acc = audit(r) if audit else {str(d): 1.0 if d <= (frontier(r) or 0) else 0.2 for d in range(1, 8 + r)}
            front = frontier(r)
        else:
            acc = {f"{i},{j}": max(0.0, 1 - 0.1 * max(0, i + j - 6 - r)) for i in range(1, 6 + r) for j in range(1, 6)}
            front = [[i, j] for i in range(1, 6 + r) for j in range(1, 6) if i + j == 6 + r]
        n_kept = 100 if r == 0 else 80 + r % 20
        m = {"round": r, "difficulties": [[4 + r]] if axes == 1 else [[5 + r, 1]], "n_generated": 100,
             "n_kept": n_kept, "drop_reasons": {"majority: too few agree": 100 - n_kept},
             "label_precision": None if r == 0 else precision(r), "label_recall": None if r == 0 else 0.9,
             "audit": acc, "frontier": front, "train_steps": 10, "train_loss": 1.0 / (r + 1), "committee": 5,
             "seconds": {"plan": 0.01, "act": 2.0, "verify": 0.1, "learn": 10.0 + r % 3, "check": 1.5},
             "decision": "commit"}
        lines.append(json.dumps({k: v for k, v in m.items() if k not in drop_keys}))
        folder = root / "rounds" / f"{r:04d}"
        folder.mkdir(parents=True)
        shares = [None] * 100 if r == 0 else [(i % 5 + 1) / 5 for i in range(100)]
        pq.write_table(pa.table({"round": [r] * 100, "vote_share": pa.array(shares, pa.float64()),
                                 "kept": [i < n_kept for i in range(100)],
                                 "label_correct": [None if i >= n_kept else i % 10 > 0 for i in range(100)]}),
                       folder / "candidates.parquet")
    (root / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (root / "manifest.json").write_text(json.dumps({"status": "finished", "committed_rounds": list(range(rounds + 1)),
                                                    "rounds": {}}))
    return root


# --- a real run -------------------------------------------------------------------------------------


@pytest.mark.learns
def test_report_of_a_real_tiny_run(tiny_overrides):
    cfg = load_config("quick", tiny_overrides)
    run = RunDir.create(Path(cfg.out_dir) / cfg.name, dump_toml(cfg), cfg.seed)
    run_loop(cfg, run)
    result = runner.invoke(app, ["report", str(run.root)])
    assert result.exit_code == 0, result.output
    page = run.root / "report" / "index.html"
    assert f"report: {page}" in result.output and "verdict tiny: " in result.output
    assert {p.stem for p in page.parent.glob("*.png")} == FIGURES
    text = page.read_text()
    assert all(f'src="{name}.png"' in text for name in FIGURES)
    assert "Metrics per round" in text and "name = &quot;copy&quot;" in text  # the resolved config
    word, _ = verdict(load_run(run.root))
    assert f'class="verdict {word}"' in text


# --- the verdict ------------------------------------------------------------------------------------


def test_verdict_rule(tmp_path):
    def judge(name, **kwargs):
        return verdict(load_run(fake_run(tmp_path / name, **kwargs)))

    assert judge("up")[0] == "improved" and "from 3 (round 0) to 8 (round 5)" in judge("up2")[1]
    assert judge("flat", frontier=lambda r: 3)[0] == "stalled"
    assert judge("none", frontier=lambda r: None)[0] == "stalled"
    word, reason = judge("avalanche", precision=lambda r: 0.9 if r < 3 else 0.04)
    assert word == "collapsed" and "0.040 in round 3" in reason
    forgot = judge("forgot", audit=lambda r: {"4": 1.0 if r < 5 else 0.7, "5": 1.0, "6": 1.0}, frontier=lambda r: 6 + r)
    assert forgot[0] == "collapsed" and "trained difficulty 4 fell from 1.00" in forgot[1]
    assert judge("short", rounds=0)[0] == "pending"
    assert judge("grid", axes=2)[0] == "improved"


# --- many rounds, two axes, several runs ------------------------------------------------------------


def test_hundred_rounds_give_every_figure_and_a_row_per_round(tmp_path):
    root = fake_run(tmp_path / "long", rounds=100)
    report = write_report([root])
    assert {p.stem for p in report.figures} == FIGURES and report.warnings == []
    text = report.page.read_text()
    assert text.count("<tr>") == 102  # header + rounds 0..100


def test_two_axis_task_gets_heatmaps_at_first_middle_and_last_round(tmp_path):
    run = load_run(fake_run(tmp_path / "grid", rounds=10, axes=2))
    fig = fig_audit_heatmaps(run)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["round 0", "round 5", "round 10"]
    report = write_report([run.root])
    assert {p.stem for p in report.figures} == FIGURES
    assert "<th>audit</th>" not in report.page.read_text()  # a 2-axis audit does not fit a table cell


def test_several_runs_are_overlaid_with_a_legend(tmp_path):
    a = fake_run(tmp_path / "k1", precision=lambda r: 0.3)
    b = fake_run(tmp_path / "k5")
    result = runner.invoke(app, ["report", str(a), str(b)])
    assert result.exit_code == 0, result.output
    page = tmp_path / "compare-k1-vs-k5" / "index.html"
    assert page.is_file() and (page.parent / "compare.png").is_file()
    assert "verdict k1: collapsed" in result.output and "verdict k5: improved" in result.output
    text = page.read_text()
    assert "<td>k1</td>" in text and "<td>k5</td>" in text
    out = tmp_path / "elsewhere"
    assert runner.invoke(app, ["report", str(a), str(b), "--out", str(out)]).exit_code == 0
    assert (out / "index.html").is_file()


# --- damaged and incomplete runs ----------------------------------------------------------------------


def test_not_a_run_and_damaged_manifest_exit_2(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not a selfimprove run" in result.output
    root = fake_run(tmp_path / "bad")
    (root / "manifest.json").write_text("{not json")
    result = runner.invoke(app, ["report", str(root)])
    assert result.exit_code == 2 and "manifest.json is damaged" in result.output
    (root / "manifest.json").write_text(json.dumps({"committed_rounds": 5, "rounds": {}}))
    result = runner.invoke(app, ["report", str(root)])
    assert result.exit_code == 2 and "committed_rounds is not a list" in result.output


def test_missing_metrics_exit_2(tmp_path):
    root = fake_run(tmp_path / "nometrics")
    (root / "metrics.jsonl").unlink()
    result = runner.invoke(app, ["report", str(root)])
    assert result.exit_code == 2 and "metrics.jsonl is missing" in result.output


def test_damaged_line_and_missing_parquet_are_reported_with_warnings(tmp_path):
    root = fake_run(tmp_path / "hurt")
    lines = (root / "metrics.jsonl").read_text().splitlines()
    lines[2] = lines[2][:40]
    (root / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (root / "rounds" / "0004" / "candidates.parquet").unlink()
    (root / "rounds" / "0003" / "candidates.parquet").write_bytes(b"not parquet")
    result = runner.invoke(app, ["report", str(root)])
    assert result.exit_code == 0, result.output
    assert "metrics.jsonl line 3 is damaged" in result.output
    assert "candidates.parquet (column vote_share) missing or unreadable for round(s) 3, 4" in result.output
    assert ("candidates.parquet (columns kept, label_correct) missing or unreadable for round(s) 3, 4; the guard's "
            "judgement leaves them out") in result.output.replace("\n", " ")
    text = (root / "report" / "index.html").read_text()
    assert "line 3 is damaged" in text
    assert [m["round"] for m in load_run(root).metrics] == [0, 1, 3, 4, 5]


def test_damaged_fields_become_warnings_and_every_figure_is_still_drawn(tmp_path):
    root = fake_run(tmp_path / "fields", rounds=8)
    lines = [json.loads(x) for x in (root / "metrics.jsonl").read_text().splitlines()]
    damage = {  # round: fields written over with the wrong type or shape
        1: {"audit": {"3": "high"}, "seconds": [1, 2]},
        2: {"frontier": [[1, "x"]], "label_precision": "0.9", "n_kept": True},
        3: {"audit": {"3": 1.0, "2,5": 0.5}, "difficulties": [4], "train_loss": {"mean": 1}},
        4: {"audit": {"x": 1.0}, "seconds": {"act": "slow"}, "label_recall": [0.9]},
        5: {"audit": {"2,5": 1.0}, "frontier": "seven", "seconds": None},  # 2 axes in a 1-axis run
        6: {"audit": None, "n_generated": "100", "committee": [5]},
    }
    for r, fields in damage.items():
        lines[r].update(fields)
    lines[7], lines[8]["round"] = [1, 2], "eight"  # a line that is not an object, a round that is not a number
    (root / "metrics.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")

    result = runner.invoke(app, ["report", str(root)])
    assert result.exit_code == 0, result.output
    report = write_report([root])
    assert {p.stem for p in report.figures} == FIGURES, report.warnings
    for r, fields in damage.items():
        warning = next(w for w in report.warnings if f"line {r + 1} (round {r}) has damaged" in w)
        assert all(f"{k} " in warning for k in fields), warning
    assert any("line 8 is damaged (not an object)" in w for w in report.warnings)
    assert any("line 9 is damaged (round 'eight' is not a whole number)" in w for w in report.warnings)
    assert len(report.warnings) == len(damage) + 2
    assert all(w in result.output.replace("\n", "") for w in ("line 3 (round 2) has damaged", "line 8 is damaged"))
    metrics = load_run(root).metrics
    assert [m["round"] for m in metrics] == [0, 1, 2, 3, 4, 5, 6]
    for m in metrics:
        assert not set(damage.get(m["round"], {})) & set(m)  # damaged fields are gone, the rest kept
        assert {"round", "decision", "drop_reasons"} <= set(m)
    assert (write_report([root, fake_run(tmp_path / "good")]).page.parent / "compare.png").is_file()


@pytest.mark.parametrize(("figure", "error", "axes"), [
    ("fig_seconds", AttributeError, 1), ("fig_lines", TypeError, 1), ("fig_audit_curves", KeyError, 1),
    ("fig_audit_heatmaps", ValueError, 2), ("fig_vote_share", IndexError, 1)])
def test_a_bug_in_figure_code_fails_the_command(tmp_path, monkeypatch, figure, error, axes):
    """Only an empty figure becomes a warning; a programming error must not be hidden behind exit 0."""
    def broken(*args, **kwargs):
        raise error("a bug in figure code")

    monkeypatch.setattr(report_module, figure, broken)
    root = fake_run(tmp_path / "run", axes=axes)
    with pytest.raises(error, match="a bug in figure code"):
        write_report([root])
    result = runner.invoke(app, ["report", str(root)])
    assert result.exit_code != 0 and isinstance(result.exception, error)


def test_older_run_without_new_keys_and_a_run_with_no_round(tmp_path):
    old = fake_run(tmp_path / "old", drop_keys=("label_recall", "committee", "train_loss", "seconds", "drop_reasons"))
    result = runner.invoke(app, ["report", str(old)])
    assert result.exit_code == 0, result.output
    assert "figure loss left out: metrics.jsonl has no train loss" in result.output
    assert "figure seconds left out" in result.output and "figure labels" not in result.output
    empty = tmp_path / "empty"
    RunDir.create(empty, 'name = "empty"\n', 0)
    result = runner.invoke(app, ["report", str(empty)])
    assert result.exit_code == 0, result.output
    assert "no committed round yet" in result.output
    assert "pending" in result.output


# --- a real browser ----------------------------------------------------------------------------------


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    """Headless chromium driven over the DevTools protocol on a pipe (fds 3 and 4): no extra package."""

    def __init__(self, profile: Path):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire_fds():  # in the child: chrome reads commands on fd 3 and writes replies on fd 4
            import fcntl

            a, b = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome_r, from_chrome_w))
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=False, preexec_fn=wire_fds)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._id, self._buffer, self.events = 0, b"", []

    def send(self, method: str, session: str | None = None, timeout: float = 30, **params):
        self._id += 1
        message = {"id": self._id, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        return self.wait(lambda m: m.get("id") == self._id, timeout).get("result", {})

    def wait(self, match, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "error" in message:
                    raise RuntimeError(message["error"])
                if match(message):
                    return message
                self.events.append(message)
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium exited")
            self._buffer += chunk

    def images_and_errors(self, page: Path) -> tuple[list[dict], list[str]]:
        """Open `page` from file://; every img's load state and every console error or failed load."""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session)
        self.events.clear()
        self.send("Page.navigate", session, url=page.resolve().as_uri())
        loaded = [e for e in self.events if e.get("method") == "Page.loadEventFired"]
        if not loaded:
            self.wait(lambda m: m.get("method") == "Page.loadEventFired" and m.get("sessionId") == session)
        js = ("JSON.stringify([...document.images].map(i => ({src: i.getAttribute('src'), complete: i.complete,"
              " w: i.naturalWidth, h: i.naturalHeight})))")
        value = self.send("Runtime.evaluate", session, expression=js, returnByValue=True)["result"]["value"]
        images = json.loads(value)
        errors = [json.dumps(e["params"]) for e in self.events
                  if e.get("method") == "Runtime.exceptionThrown"
                  or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
                  or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
        return images, errors

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it: apt-get install chromium)")
def test_pages_render_in_headless_chromium(tmp_path):
    single = write_report([fake_run(tmp_path / "long", rounds=100)]).page
    grid = write_report([fake_run(tmp_path / "grid", rounds=6, axes=2)]).page
    compare = write_report([tmp_path / "long", tmp_path / "grid"]).page
    broken = tmp_path / "broken.html"
    broken.write_text('<!doctype html><link rel="icon" href="data:,"><img src="missing.png">')
    browser = Chromium(tmp_path / "profile")
    try:
        for page, n_figures in ((single, len(FIGURES)), (grid, len(FIGURES)), (compare, 1)):
            images, errors = browser.images_and_errors(page)
            assert errors == [], (page, errors)
            assert len(images) == n_figures, images
            for image in images:
                assert image["complete"] and image["w"] > 0 and image["h"] > 0, image
        images, errors = browser.images_and_errors(broken)  # the check itself can fail
        assert images[0]["w"] == 0 and any("missing.png" in e or "ERR_FILE_NOT_FOUND" in e for e in errors)
    finally:
        browser.close()
