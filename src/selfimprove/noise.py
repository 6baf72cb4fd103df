"""Noise injection (the paper's §8.2): corrupt a share of one round's kept labels to study whether
the loop recovers. Only digits and letters are touched, each replaced by one of its own kind, so
labels stay in the task's alphabet and separators (`+`, `>`, `=`) stay in place.

    labels, corrupted = corrupt(labels, kept, share=0.2, kind="perturb", rng=np.random.default_rng(0))
"""

from __future__ import annotations

import numpy as np

DIGITS = "0123456789"
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _kind(ch: str) -> str:
    return DIGITS if ch in DIGITS else LETTERS


def _corrupt_one(label: str, kind: str, rng: np.random.Generator) -> str:
    places = [i for i, ch in enumerate(label) if ch in DIGITS or ch in LETTERS]
    if not places:
        return label
    chars = list(label)
    if kind == "random":  # every digit or letter replaced at random (drawn again if nothing changed)
        while "".join(chars) == label:
            for i in places:
                pool = _kind(label[i])
                chars[i] = pool[rng.integers(len(pool))]
    elif kind == "drop":  # one digit or letter deleted
        del chars[places[rng.integers(len(places))]]
    elif kind == "perturb":  # one digit (letter) changed to another digit (letter)
        i = places[rng.integers(len(places))]
        pool = _kind(chars[i])
        chars[i] = pool[(pool.index(chars[i]) + 1 + rng.integers(len(pool) - 1)) % len(pool)]
    else:
        raise ValueError(f"unknown noise kind {kind!r}; known: random, drop, perturb")
    return "".join(chars)


def corrupt(labels: list[str], kept: list[bool], share: float, kind: str, rng: np.random.Generator
            ) -> tuple[list[str], list[bool]]:
    """Corrupt round(share * n_kept) kept labels chosen at random; returns the labels and which were chosen."""
    kept_idx = np.flatnonzero(kept)
    chosen = rng.choice(kept_idx, size=round(share * len(kept_idx)), replace=False) if len(kept_idx) else []
    labels, corrupted = list(labels), [False] * len(labels)
    for i in chosen:
        labels[i] = _corrupt_one(labels[i], kind, rng)
        corrupted[i] = True
    return labels, corrupted
