"""The guard: after every round, from label-free signals only, commit it, hold its labels (do not train
on them), roll its training back, or stop the run. Its two check points:

    reason = before_training(cfg, signals, n_kept)       # None, or (signal, why): hold
    reason = after_training(cfg, signals)                # None, or (signal, why): roll back

`guard.mode = "oracle"` decides from the audit's label precision instead (it reads truth: an upper
bound to compare the signals with, never a default); `off` commits every round. The audit judges the
guard afterwards (`selfimprove judge`). After `guard.attempts` failed attempts in a row the loop stops
the run with a verdict naming the difficulty and the reason.
"""

from __future__ import annotations

from typing import Any

from selfimprove.config import Config

Reason = tuple[str, str] | None  # (the signal that decided, a sentence)


def _below(signals: dict[str, Any], name: str, least: float, what: str) -> Reason:
    value = signals.get(name)
    if value is not None and value < least:
        return name, f"{what}: {name} {value:.3f} < {least}"
    return None


def before_training(cfg: Config, signals: dict[str, Any], n_kept: int, precision: float | None = None) -> Reason:
    """Hold the round's labels? `precision` (truth) is read in oracle mode only."""
    g = cfg.guard
    if g.mode == "off":
        return None
    if not n_kept:
        return "kept_share", "the filters kept no label"
    if g.mode == "oracle":
        if precision is not None and precision < g.min_precision:
            return "oracle", f"label precision {precision:.3f} < {g.min_precision} (oracle: reads truth)"
        return None
    return (_below(signals, "support", g.min_support, "labels no committee answer gave")
            or _below(signals, "invariant", g.min_invariant, "labels that break the task's invariant"))


def after_training(cfg: Config, signals: dict[str, Any]) -> Reason:
    """Roll the trained round back?"""
    g = cfg.guard
    if g.mode != "signals":
        return None
    drift = signals.get("drift")
    if drift is not None and drift > g.max_drift:
        return "drift", f"training changed answers it had learned: drift {drift:.3f} > {g.max_drift}"
    return _below(signals, "invariant_after", g.min_invariant, "the trained model breaks the task's invariant")
