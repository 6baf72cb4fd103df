"""Voter economics: the same rounds run with committees of several sizes (K independently trained
models), samples per member (N sampled answers of one model) and vote thresholds, and one table of
what the labels were worth (precision, recall, kept share) and what they cost (seconds).

    selfimprove sweep cpu-forward-add --size 1 --size 3 --size 5 --agree 0.8 --agree 1.0
    selfimprove sweep cpu-reverse-add --size 1 --size 3 --samples 1 --samples 3 --samples 9

Runs land in <out_dir>/<name>-sweep/k<K>[-n<N>]-a<agree>/ (each an ordinary run: resumable, reportable);
the table is printed and written to <out_dir>/<name>-sweep/sweep.md. A finished run is not run again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from selfimprove.config import Config, ConfigError, load_config
from selfimprove.rundir import trains


def sweep_configs(source: str | None, overrides: list[str], sizes: list[int], agrees: list[float],
                  samples: tuple[int, ...] = (1,), temperature: float | None = None) -> tuple[Path, list[Config]]:
    """One config per (committee size K, samples per member N, agree); K x N = 1 has no vote, so it runs
    once. Sampled committees (N > 1) draw at `temperature` (default: the config's, else 0.7)."""
    base = load_config(source, overrides)
    if any(k * n > 1 for k in sizes for n in samples) and "majority" not in base.loop.filters:
        raise ConfigError(f"a voter sweep needs 'majority' in loop.filters (now {base.loop.filters}); "
                          f"add it with --set \"loop.filters=['majority', 'length']\"")
    temperature = temperature if temperature is not None else base.committee.temperature or 0.7
    folder = Path(base.out_dir) / f"{base.name}-sweep"
    configs = []
    for k in sorted(set(sizes)):
        for n in sorted(set(samples)):
            sampling = [f"committee.samples={n}", f"committee.temperature={temperature if n > 1 else 0.0}"]
            for a in sorted(set(agrees)) if k * n > 1 else [1.0]:
                name = f"k{k}" + (f"-n{n}" if n > 1 else "") + (f"-a{a:g}" if k * n > 1 else "")
                configs.append(load_config(source, [*overrides, f"committee.size={k}", *sampling,
                                                    f"committee.agree={a}", f"out_dir={folder}", f"name={name}"]))
    return folder, configs


def _mean(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summarize(cfg: Config, metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """One row: label quality and frontier over the rounds the guard committed; seconds over every round."""
    committed = list(filter(trains, metrics))
    later = [m for m in committed if m["round"] > 0]
    return {
        "K": cfg.committee.size,
        "N": cfg.committee.samples,
        "agree": cfg.committee.agree if cfg.committee.size * cfg.committee.samples > 1 else None,
        "rounds": len(later),
        "label_precision": _mean([m.get("label_precision") for m in later]),
        "min_label_precision": min((m["label_precision"] for m in later if m.get("label_precision") is not None),
                                   default=None),
        "label_recall": _mean([m.get("label_recall") for m in later]),
        "kept_share": _mean([m["n_kept"] / m["n_generated"] for m in later if m["n_generated"]]),
        "frontier": committed[-1]["frontier"] if committed else None,
        "label_s_per_round": _mean([m["seconds"].get("act", 0.0) for m in later]),
        "train_s_per_round": _mean([m["seconds"].get("learn", 0.0) for m in later]),
        "total_min": sum(sum(m["seconds"].values()) for m in metrics) / 60,
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    def cell(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    head = list(rows[0]) if rows else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines) + "\n"
