"""`selfimprove report RUN [RUN ...]`: an HTML page with figures, read only from run directories.

    selfimprove report runs/quick                  # -> runs/quick/report/index.html + PNG figures
    selfimprove report runs/k1 runs/k5             # -> runs/compare-k1-vs-k5/index.html (overlay)
    selfimprove report runs/k1 runs/k5 --out cmp   # -> cmp/index.html

    from selfimprove.report import write_report
    print(write_report([Path("runs/quick")]).page)

A thin reader of the run-directory contract (DESIGN.md): metrics.jsonl for almost everything, and
only the `vote_share` column of candidates.parquet. Keys that older runs lack are left out of the
figures. Damage is caught where the data is read: a metrics line that is not a JSON object, a field
of the wrong type or shape (see FIELDS), or a missing parquet file becomes a warning on the page and
on stderr, and that line or field is left out, so the figures only ever see well-formed data. A
figure with nothing to plot is left out with a warning; any other error in figure code is a bug and
propagates. Only a directory that is not a run at all (no manifest.json or config.toml, or a manifest
that cannot be read) raises RunError. The page needs no network and no JavaScript: it opens from
file:// with its PNGs beside it.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from selfimprove.rundir import RunDir, RunError, atomic_write, trains
from selfimprove.tasks import difficulty_key

__all__ = ["Run", "Report", "load_run", "verdict", "write_report"]

PHASES = ("plan", "act", "verify", "guard", "learn", "check")
MIN_PRECISION = 0.5  # label precision below this in any self-round: the loop trained on mostly wrong labels
MAX_AUDIT_DROP = 0.1  # audit accuracy at a trained difficulty falling this much below its best: forgetting


@dataclass
class Run:
    """What the report knows about one run directory."""

    root: Path
    name: str
    status: str
    config: str
    metrics: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)


@dataclass
class Report:
    page: Path
    figures: list[Path]
    runs: list[Run]
    warnings: list[str]  # what is damaged or missing in the runs, and figures the data could not support


# --- reading ---------------------------------------------------------------------------------------


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _is_number_or_null(x: Any) -> bool:
    return x is None or _is_number(x)


def _is_difficulty(x: Any) -> bool:
    return isinstance(x, list) and bool(x) and all(map(_is_int, x))


def _key(k: str) -> tuple[int, ...]:
    """An audit key ("7" or "2,5") as a difficulty; ValueError if it is not one."""
    return tuple(int(x) for x in k.split(","))


def _is_audit(x: Any) -> bool:
    """{"7": 0.98} or {"2,5": 0.4}: difficulty keys with one number of axes, numbers as values."""
    try:
        return isinstance(x, dict) and all(map(_is_number, x.values())) and len({len(_key(k)) for k in x}) <= 1
    except ValueError:
        return False


# The metrics fields the figures, the table and the verdict read, and their shape. A field of another
# shape is left out with a warning; a field that is absent (older runs) is left out silently.
FIELDS: dict[str, Callable[[Any], bool]] = {
    **dict.fromkeys(("n_generated", "n_kept", "committee", "train_steps", "train_loss", "label_precision",
                     "label_recall"), _is_number_or_null),
    "difficulties": lambda x: isinstance(x, list) and all(map(_is_difficulty, x)),
    "frontier": lambda x: _is_number_or_null(x) or isinstance(x, list) and all(map(_is_difficulty, x)),
    "audit": _is_audit,
    "seconds": lambda x: isinstance(x, dict) and all(map(_is_number, x.values())),
}


def load_run(root: Path) -> Run:
    """Read one run; RunError if `root` is not a run, warnings for what is damaged or missing inside."""
    run_dir = RunDir.open(root)
    manifest = run_dir.manifest()
    if not isinstance(manifest["committed_rounds"], list):
        raise RunError(f"{root}/manifest.json is damaged (committed_rounds is not a list); there is nothing to report.")
    committed = [r for r in manifest["committed_rounds"] if _is_int(r)]
    run = Run(root, root.name, str(manifest.get("status", "unknown")),
              (root / "config.toml").read_text(errors="replace"), [])
    path = root / "metrics.jsonl"
    lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()] if path.is_file() else []
    axes = None  # the number of difficulty axes of the first audit: every round's audit must agree
    for number, line in enumerate(lines[: len(committed)], start=1):
        try:
            m = json.loads(line)
            if not isinstance(m, dict):
                raise ValueError("not an object")
            if not _is_int(m.setdefault("round", committed[number - 1])):
                raise ValueError(f"round {reprlib.repr(m['round'])} is not a whole number")
        except ValueError as e:
            run.warnings.append(f"{path} line {number} is damaged ({e}); that round is left out")
            continue
        bad = [k for k, ok in FIELDS.items() if k in m and not ok(m[k])]
        if "audit" not in bad and (keys := list(audit(m))):
            axes = axes or len(keys[0])
            if len(keys[0]) != axes:
                bad.append("audit")
        if bad:
            fields = ", ".join(f"{k} {reprlib.repr(m.pop(k))}" for k in bad)
            run.warnings.append(f"{path} line {number} (round {m['round']}) has damaged {fields}; left out")
        run.metrics.append(m)
    if committed and not run.metrics:
        raise RunError(f"{root} lists committed rounds {committed} in manifest.json but metrics.jsonl is "
                       f"{'damaged' if lines else 'missing or empty'}; there is nothing to report.")
    if len(lines) < len(committed):
        run.warnings.append(f"{path} has {len(lines)} line(s) for {len(committed)} committed round(s)")
    if not committed:
        run.warnings.append(f"{root} has no committed round yet (status: {run.status})")
    return run


def vote_shares(run: Run, warn: list[str]) -> dict[int, np.ndarray]:
    """vote_share of every candidate of rounds >= 1, one parquet column per round; warns on what is missing."""
    shares, missing = {}, []
    for m in run.metrics:
        r = m["round"]
        if r < 1:
            continue
        path = run.root / "rounds" / f"{r:04d}" / "candidates.parquet"
        try:
            column = pq.read_table(path, columns=["vote_share"]).column("vote_share").drop_null()
            shares[r] = column.to_numpy(zero_copy_only=False).astype(float)
        except (OSError, KeyError, ValueError, TypeError):
            missing.append(r)
    if missing:
        warn.append(f"candidates.parquet (column vote_share) missing or unreadable for round(s) "
                            f"{', '.join(map(str, missing))}; the vote-share histogram leaves them out")
    return shares


def _num(x: float | None) -> float:
    """A metric as a float, NaN when absent (older runs) or null (round 0's label precision)."""
    return math.nan if x is None else float(x)


def series(run: Run, get: Callable[[dict[str, Any]], Any]) -> tuple[np.ndarray, np.ndarray]:
    rounds = np.array([_num(m.get("round")) for m in run.metrics])
    return rounds, np.array([_num(get(m)) for m in run.metrics])


def kept_share(m: dict[str, Any]) -> float:
    return _num(m.get("n_kept")) / _num(m.get("n_generated")) if _num(m.get("n_generated")) else math.nan


def frontier_value(m: dict[str, Any]) -> float:
    """The frontier as one number: the difficulty for one-axis tasks, the largest i+j on the boundary for
    two-axis tasks; 0 when no audited difficulty reached 0.99; NaN when the run did not record it."""
    f = m.get("frontier", math.nan)
    if isinstance(f, list):
        return float(max((sum(d) for d in f), default=0))
    return 0.0 if f is None else float(f)


def difficulties(m: dict[str, Any]) -> list[tuple[int, ...]]:
    return [tuple(d) for d in m.get("difficulties", [])]


def audit(m: dict[str, Any]) -> dict[tuple[int, ...], float]:
    """{difficulty: accuracy} of one round."""
    return {_key(k): float(v) for k, v in m.get("audit", {}).items()}


def n_axes(run: Run) -> int:
    for m in run.metrics:
        for d in audit(m):
            return len(d)
    return 1


def frontier_label(runs: list[Run]) -> str:
    """The frontier axis's label: what frontier_value plots for these runs' tasks."""
    axes = {n_axes(run) for run in runs}
    return "frontier (0: none)" if axes == {1} else "frontier (largest i+j)" if 1 not in axes else "frontier"


# --- the verdict -----------------------------------------------------------------------------------


def verdict(run: Run) -> tuple[str, str]:
    """("improved" | "stalled" | "collapsed" | "pending", the reason in one sentence), from the numbers:

    Only the rounds the guard committed count (held and rolled-back labels were never trained on).

    - pending: fewer than two committed rounds; nothing self-made was trained on yet.
    - collapsed: some round >= 1 kept labels with precision below 0.5 (the loop trained on mostly wrong
      labels: the error avalanche), or the last round's audit at a difficulty the loop trained on is
      0.1 or more below the best accuracy any earlier round had there (forgetting).
    - improved: not collapsed, and the last round's frontier is past the round-0 frontier (no frontier
      counts as 0; two-axis tasks compare the largest i+j on the frontier).
    - stalled: otherwise.
    """
    ms = sorted(filter(trains, run.metrics), key=lambda m: m["round"])
    if len(ms) < 2:
        return "pending", "only round 0 is committed; the verdict needs a self-improvement round."
    for m in ms[1:]:
        p = _num(m.get("label_precision"))
        if p < MIN_PRECISION:
            return "collapsed", (f"label precision fell to {p:.3f} in round {m['round']} (below {MIN_PRECISION}): "
                                 f"the loop trained on mostly wrong labels.")
    trained = {d for m in ms for d in difficulties(m)}
    last = audit(ms[-1])
    for d in sorted(trained & set(last)):
        best, best_round = max(((a[d], m["round"]) for m in ms[:-1] if d in (a := audit(m))), default=(None, 0))
        if best is not None and best - last[d] >= MAX_AUDIT_DROP:
            return "collapsed", (f"audit accuracy at trained difficulty {difficulty_key(d)} fell from {best:.2f} "
                                 f"(round {best_round}) to {last[d]:.2f} (round {ms[-1]['round']}).")
    first, final = frontier_value(ms[0]), frontier_value(ms[-1])
    was, now = ("none" if not x or math.isnan(x) else f"{x:g}" for x in (first, final))
    r0, r1 = ms[0]["round"], ms[-1]["round"]
    if np.nan_to_num(final) > np.nan_to_num(first):
        return "improved", f"the frontier advanced from {was} (round {r0}) to {now} (round {r1})."
    return "stalled", f"the frontier did not advance past round {r0}'s ({was} then, {now} in round {r1})."


# --- figures ---------------------------------------------------------------------------------------


class NothingToPlot(Exception):
    """Raised by a figure whose data is well-formed but holds nothing it can draw: the figure is left out."""


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (7, 4), sharex: bool = False):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # explicit Agg: no display, no global pyplot state
    return fig, fig.subplots(nrows, ncols, squeeze=False, sharex=sharex)


def _integers(*axes) -> None:
    """Rounds and difficulties are whole numbers: no 0.5 ticks."""
    from matplotlib.ticker import MaxNLocator

    for axis in axes:
        axis.set_major_locator(MaxNLocator(integer=True))


def _round_colors(rounds: list[int]):
    """viridis by round with a colorbar: readable at 3 rounds and at 300, unlike a legend."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    norm = Normalize(min(rounds), max(max(rounds), min(rounds) + 1))
    return ScalarMappable(norm, colormaps["viridis"])


def fig_audit_curves(run: Run, ax, fig) -> None:
    """Audit accuracy vs difficulty, one curve per round (the paper's Figure 1)."""
    rows = [(m["round"], acc) for m in run.metrics if (acc := audit(m))]
    if not rows:
        raise NothingToPlot("no audit results")
    sm = _round_colors([r for r, _ in rows])
    many = len(rows) > 12
    for r, acc in rows:
        xs = sorted(acc)
        ax.plot([d[0] for d in xs], [acc[d] for d in xs], color=sm.to_rgba(r), lw=1 if many else 1.8,
                marker=None if many else "o", ms=3, alpha=0.8 if many else 1)
    _integers(ax.xaxis, fig.colorbar(sm, ax=ax, label="round").ax.yaxis)
    ax.set(xlabel="difficulty", ylabel="audit accuracy", ylim=(-0.03, 1.03), title="Audit accuracy per round")
    ax.grid(alpha=0.3)


def fig_audit_heatmaps(run: Run):
    """Two-axis tasks: accuracy over the (i, j) grid at the first, middle and last round, one colour scale."""
    from matplotlib import colormaps

    rows = [(m["round"], acc) for m in run.metrics if (acc := audit(m))]
    if not rows or len(next(iter(rows[0][1]))) != 2:
        raise NothingToPlot("heatmaps need audit results of a two-axis task")
    chosen = [rows[i] for i in sorted({0, len(rows) // 2, len(rows) - 1})]
    cells = {d for _, acc in chosen for d in acc}
    i0, i1 = min(d[0] for d in cells), max(d[0] for d in cells)
    j0, j1 = min(d[1] for d in cells), max(d[1] for d in cells)
    fig, axes = _figure(1, len(chosen), (4.2 * len(chosen) + 1, 4))
    cmap = colormaps["viridis"].with_extremes(bad="#dddddd")
    for ax, (r, acc) in zip(axes[0], chosen):
        grid = np.full((i1 - i0 + 1, j1 - j0 + 1), np.nan)
        for (i, j), a in acc.items():
            grid[i - i0, j - j0] = a
        image = ax.imshow(grid, origin="lower", cmap=cmap, vmin=0, vmax=1, aspect="auto",
                          extent=(j0 - 0.5, j1 + 0.5, i0 - 0.5, i1 + 0.5))
        if grid.size <= 144:
            for (i, j), a in acc.items():
                ax.text(j, i, f"{a:.2f}", ha="center", va="center", fontsize=7, color="w" if a < 0.6 else "k")
        ax.set(title=f"round {r}", xlabel="difficulty axis 2", ylabel="difficulty axis 1")
        _integers(ax.xaxis, ax.yaxis)
    fig.colorbar(image, ax=list(axes[0]), label="audit accuracy")
    return fig


def fig_lines(run_list: list[Run], panels: list[tuple[str, Callable, dict]], title: str):
    """One panel per metric, one line per run (legend by run name when there are several)."""
    fig, axes = _figure(len(panels), 1, (7, 2.4 * len(panels) + 0.6), sharex=True)
    drawn = 0
    for ax, (label, get, opts) in zip(axes[:, 0], panels):
        for run in run_list:
            x, y = series(run, get)
            if np.isfinite(y).any():
                ax.plot(x, y, marker="o" if len(x) <= 30 else None, ms=3, label=run.name, **opts.get("line", {}))
                mark_decisions(ax, run, get)
                drawn += 1
        ax.set(ylabel=label, **opts.get("axes", {}))
        ax.grid(alpha=0.3)
        _integers(ax.xaxis)
    if not drawn:
        raise NothingToPlot(f"metrics.jsonl has no {', '.join(label for label, _, _ in panels)}")
    axes[-1, 0].set_xlabel("round")
    axes[0, 0].set_title(title)
    if len(run_list) > 1:
        axes[0, 0].legend(fontsize=8, ncols=max(1, len(run_list) // 8))
    return fig


DECISION_MARKERS = {"hold": ("v", "tab:purple"), "rollback": ("X", "tab:red"), "stop": ("s", "black")}


def mark_decisions(ax, run: Run, get: Callable[[dict[str, Any]], Any], legend: bool = False) -> None:
    """Mark the rounds the guard did not commit on a line of `get` (held, rolled back, stopped)."""
    for decision, (marker, color) in DECISION_MARKERS.items():
        points = [(m["round"], _num(get(m))) for m in run.metrics if m.get("decision") == decision]
        points = [(x, y) for x, y in points if np.isfinite(y)]
        if points:
            ax.scatter(*zip(*points), marker=marker, color=color, s=40, zorder=3,
                       label=f"guard: {decision}" if legend else None)


def fig_labels(run: Run, ax) -> None:
    lines = [(label, *series(run, get)) for label, get in (
        ("label precision", lambda m: m.get("label_precision")), ("label recall", lambda m: m.get("label_recall")),
        ("kept share", kept_share))]
    lines = [(label, x, y) for label, x, y in lines if np.isfinite(y).any()]
    if not lines:
        raise NothingToPlot("metrics.jsonl has no label precision, recall or kept share")
    for label, x, y in lines:
        ax.plot(x, y, marker="o" if len(x) <= 30 else None, ms=3, label=label)
    mark_decisions(ax, run, lambda m: m.get("label_precision"), legend=True)
    ax.set(xlabel="round", ylabel="share", ylim=(-0.03, 1.03), title="Labels: precision, recall, kept share")
    ax.axhline(MIN_PRECISION, color="grey", ls=":", lw=1)
    _integers(ax.xaxis)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def fig_vote_share(shares: dict[int, np.ndarray], ax, fig) -> None:
    """A histogram per round drawn as one column of a heatmap: readable for 2 rounds and for 100."""
    if not shares:
        raise NothingToPlot("no vote shares in rounds >= 1")
    rounds = sorted(shares)
    bins = np.linspace(0, 1, 21)
    grid = np.zeros((len(bins) - 1, len(rounds)))
    for c, r in enumerate(rounds):
        counts, _ = np.histogram(np.clip(shares[r], 0, 1), bins)
        grid[:, c] = counts / max(1, counts.sum())
    image = ax.imshow(grid, origin="lower", aspect="auto", cmap="magma_r", vmin=0, vmax=1,
                      extent=(rounds[0] - 0.5, rounds[-1] + 0.5, 0, 1))
    fig.colorbar(image, ax=ax, label="share of the round's candidates")
    ax.set(xlabel="round", ylabel="vote share of the label", title="Vote share of candidates (rounds ≥ 1)")
    _integers(ax.xaxis)


def fig_seconds(run: Run, ax) -> None:
    rounds, _ = series(run, lambda m: m.get("round"))
    bottom = np.zeros(len(rounds))
    for phase in PHASES:
        _, y = series(run, lambda m, p=phase: m.get("seconds", {}).get(p))
        y = np.nan_to_num(y)
        ax.bar(rounds, y, bottom=bottom, width=0.8, label=phase)
        bottom += y
    if not bottom.any():
        raise NothingToPlot("metrics.jsonl has no seconds per phase")
    ax.set(xlabel="round", ylabel="seconds", title="Seconds per phase")
    _integers(ax.xaxis)
    ax.legend(fontsize=8, ncols=len(PHASES))


# --- the page --------------------------------------------------------------------------------------


CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}
img{max-width:100%;height:auto;display:block;margin:1em 0}table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f3f3f3}td.l{text-align:left}
pre{background:#f6f6f6;padding:1em;overflow:auto}.verdict{font-size:18px;padding:.6em 1em;border-radius:4px}
.improved{background:#e3f6e3}.stalled{background:#fff5d6}.collapsed{background:#fde2e2}.pending{background:#eee}
.warn{color:#9a3b00}"""


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return html.escape(str(x))


def metrics_table(run: Run) -> str:
    one_axis = n_axes(run) == 1
    head = ["round", "difficulties", "kept / generated", "precision", "recall", "frontier", "loss", "steps",
            "K", "seconds", "decision", *(["audit"] if one_axis else [])]
    rows = []
    for m in run.metrics:
        secs = m.get("seconds", {})
        cells = [_fmt(m.get("round")), _fmt(" ".join(difficulty_key(d) for d in difficulties(m)))]
        cells.append(f"{_fmt(m.get('n_kept'))} / {_fmt(m.get('n_generated'))}")
        cells += [_fmt(m.get(k)) for k in ("label_precision", "label_recall", "frontier", "train_loss", "train_steps")]
        signal = f" ({m['signal']})" if m.get("signal") else ""
        cells += [_fmt(m.get("committee", 1)), f"{sum(secs.values()):.0f}",
                  _fmt(m.get("decision")) + html.escape(signal)]
        audit_cell = " ".join(f"{difficulty_key(d)}:{a:.2f}" for d, a in sorted(audit(m).items()))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells)
                    + (f'<td class="l">{audit_cell}</td>' if one_axis else "") + "</tr>")
    return (f"<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{''.join(rows)}</table>"
            if rows else "<p>no committed round yet</p>")


def _page(title: str, body: list[str]) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<link rel="icon" href="data:,"><style>{CSS}</style></head><body>'
            f"<h1>{html.escape(title)}</h1>{''.join(body)}</body></html>\n")


def _warnings(items: list[str]) -> str:
    return f"<ul class=warn>{''.join(f'<li>{html.escape(w)}</li>' for w in items)}</ul>" if items else ""


class _Figures:
    """Draws each figure into `out`; a figure with nothing to plot becomes a warning, a bug a traceback."""

    def __init__(self, out: Path, warn: list[str]):
        self.out, self.warn, self.paths, self.html = out, warn, [], []

    def add(self, name: str, alt: str, draw: Callable[[], Any]) -> None:
        try:
            fig = draw()
        except NothingToPlot as e:
            self.warn.append(f"figure {name} left out: {e}")
            return
        path = self.out / f"{name}.png"
        fig.savefig(path)
        self.paths.append(path)
        w, h = (fig.get_size_inches() * fig.dpi).astype(int)
        self.html.append(f'<img src="{path.name}" alt="{html.escape(alt)}" width="{w}" height="{h}">')

    def single(self, draw: Callable) -> Callable[[], Any]:
        def make():
            fig, axes = _figure()
            draw(axes[0, 0], fig)
            return fig
        return make


def _single_run_page(run: Run, figs: _Figures) -> tuple[list[str], list[str]]:
    axes = n_axes(run)
    if axes == 1:
        figs.add("audit", "audit accuracy vs difficulty per round",
                 figs.single(lambda ax, f: fig_audit_curves(run, ax, f)))
    else:
        figs.add("audit", "audit accuracy heatmaps at chosen rounds", lambda: fig_audit_heatmaps(run))
    figs.add("frontier", "frontier vs round", lambda: fig_lines(
        [run], [(frontier_label([run]), frontier_value, {"line": {"drawstyle": "steps-mid"}})],
        "Frontier (hardest difficulty with audit ≥ 0.99)"))
    figs.add("labels", "label precision, recall and kept share", figs.single(lambda ax, f: fig_labels(run, ax)))
    shares = vote_shares(run, figs.warn)
    figs.add("vote_share", "vote-share histogram", figs.single(lambda ax, f: fig_vote_share(shares, ax, f)))
    figs.add("loss", "training loss vs round", lambda: fig_lines(
        [run], [("train loss", lambda m: m.get("train_loss"), {"axes": {"yscale": "log"}})], "Training loss"))
    figs.add("seconds", "seconds per phase per round", figs.single(lambda ax, f: fig_seconds(run, ax)))
    word, reason = verdict(run)
    head = [f"<p>{html.escape(str(run.root))} · status <b>{html.escape(run.status)}</b> · "
            f"{len(run.metrics)} recorded round(s)</p>",
            f'<p class="verdict {word}"><b>{word}</b>: {html.escape(reason)}</p>', guard_line(run, figs.warn)]
    return head, ["<h2>Metrics per round</h2>", metrics_table(run),
                  "<h2>Config</h2>", f"<pre>{html.escape(run.config)}</pre>"]


def guard_line(run: Run, warnings: list[str]) -> str:
    """The guard judged against the audit (selfimprove judge), in one line."""
    from selfimprove.judge import FALSE_ALARM_AT, MISS_BELOW, judge_rounds, summary

    unreadable: list[int] = []
    s = summary(judge_rounds(RunDir(run.root), run.metrics, unreadable))
    if unreadable:
        warnings.append(f"candidates.parquet (columns kept, label_correct) missing or unreadable for round(s) "
                        f"{', '.join(map(str, unreadable))}; the guard's judgement leaves them out")
    triggers = ", ".join(f"{k} {v}" for k, v in sorted(s["triggers"].items())) or "none"
    return (f"<p>guard: {s['commit']} committed, {s['hold']} held, {s['rollback']} rolled back, {s['stop']} "
            f"stopped; <b>{s['misses']}</b> miss(es) (committed at label precision &lt; {MISS_BELOW}), "
            f"<b>{s['false_alarms']}</b> false alarm(s) (held or rolled back at &ge; {FALSE_ALARM_AT}); "
            f"triggers: {html.escape(triggers)}</p>")


def _compare_page(run_list: list[Run], figs: _Figures) -> tuple[list[str], list[str]]:
    figs.add("compare", "frontier, label precision and kept share of every run", lambda: fig_lines(run_list, [
        (frontier_label(run_list), frontier_value, {"line": {"drawstyle": "steps-mid"}}),
        ("label precision", lambda m: m.get("label_precision"), {"axes": {"ylim": (-0.03, 1.03)}}),
        ("kept share", kept_share, {"axes": {"ylim": (-0.03, 1.03)}})], "Runs compared"))
    rows = []
    for run in run_list:
        word, reason = verdict(run)
        last = run.metrics[-1] if run.metrics else {}
        rows.append(f"<tr><td>{html.escape(run.name)}</td><td>{html.escape(run.status)}</td><td>{len(run.metrics)}</td>"
                    f"<td>{_fmt(last.get('frontier'))}</td><td>{_fmt(last.get('label_precision'))}</td>"
                    f'<td class="{word} l"><b>{word}</b>: {html.escape(reason)}</td></tr>')
    head = ["<table><tr><th>run</th><th>status</th><th>rounds</th><th>last frontier</th><th>last precision</th>"
            f"<th>verdict</th></tr>{''.join(rows)}</table>"]
    tail = []
    for run in run_list:
        tail += [f"<h2>{html.escape(run.name)}</h2><p>{html.escape(str(run.root))}</p>", guard_line(run, figs.warn),
                 metrics_table(run),
                 f"<details><summary>config</summary><pre>{html.escape(run.config)}</pre></details>"]
    return head, tail


def default_out(roots: list[Path]) -> Path:
    """RUN/report for one run; <parent of the first run>/compare-A-vs-B for several."""
    if len(roots) == 1:
        return roots[0] / "report"
    name = "compare-" + "-vs-".join(r.name for r in roots)
    if len(name) > 80:
        name = name[:60] + "-" + hashlib.blake2b(name.encode(), digest_size=4).hexdigest()
    return roots[0].parent / name


def write_report(roots: list[Path], out: Path | None = None) -> Report:
    """Write index.html and its figures for one run, or an overlay of several; returns what was written."""
    run_list = [load_run(Path(r)) for r in roots]
    names = [r.name for r in run_list]
    for run in run_list:
        if names.count(run.name) > 1:
            run.name = str(run.root)
    out = Path(out) if out is not None else default_out([r.root for r in run_list])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"cannot write the report folder {out} ({e.strerror}); choose another with --out") from None
    warnings = [w for run in run_list for w in run.warnings]
    figs = _Figures(out, warnings)
    title = f"selfimprove report: {' vs '.join(r.name for r in run_list)}"
    if len(run_list) == 1:
        head, tail = _single_run_page(run_list[0], figs)
    else:
        head, tail = _compare_page(run_list, figs)
    atomic_write(out / "index.html", _page(title, [*head, _warnings(warnings), *figs.html, *tail]))
    return Report(out / "index.html", figs.paths, run_list, warnings)
