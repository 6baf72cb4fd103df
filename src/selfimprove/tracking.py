"""Optional experiment tracking: each round's metrics as TensorBoard event files, no server needed.

    pip install -e '.[tracking]'
    log_round(Path("runs/quick"), metrics)     # -> runs/quick/tracking/events.out.tfevents.*
    tensorboard --logdir runs                  # (tensorboard itself is not needed to write the files)

Switched on by the config (`tracking = "tensorboard"`); the loop calls `log_round` after a round is
committed, so the events repeat what metrics.jsonl already holds and are never the source of truth.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from selfimprove.report import frontier_value, kept_share

__all__ = ["log_round", "scalars"]


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers of one metrics line under TensorBoard tags; missing and null values are left out."""
    out: dict[str, Any] = {
        "labels/precision": metrics.get("label_precision"),
        "labels/recall": metrics.get("label_recall"),
        "labels/n_generated": metrics.get("n_generated"),
        "labels/n_kept": metrics.get("n_kept"),
        "train/loss": metrics.get("train_loss"),
        "train/steps": metrics.get("train_steps"),
        "committee": metrics.get("committee"),
        "labels/kept_share": kept_share(metrics),
        "frontier": frontier_value(metrics),  # two-axis tasks: the largest i+j on the boundary
    }
    for group in ("audit", "seconds", "drop_reasons", "signals"):
        for k, v in (metrics.get(group) or {}).items():
            out[f"{group}/{str(k).replace(',', 'x')}"] = v
    return {k: float(v) for k, v in out.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


def log_round(run_root: Path, metrics: dict[str, Any]) -> Path:
    """Append one round's scalars, at step = round, to event files under RUN/tracking; returns that folder."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ImportError("tracking = \"tensorboard\" needs tensorboardX: pip install 'selfimprove[tracking]' "
                          "(or pip install tensorboardX)") from None
    folder = Path(run_root) / "tracking"
    r = int(metrics["round"])
    writer = SummaryWriter(str(folder), filename_suffix=f".round{r:04d}")
    try:
        for tag, value in scalars(metrics).items():
            writer.add_scalar(tag, value, global_step=r)
    finally:
        writer.close()
    return folder
