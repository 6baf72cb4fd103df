"""Noise injection (the paper's §8.2): corrupt a share of one round's kept labels to study whether
the loop recovers. Only digits are touched, so labels of every task stay in its alphabet.

    labels, corrupted = corrupt(labels, kept, share=0.2, kind="perturb", rng=np.random.default_rng(0))
"""

from __future__ import annotations

import numpy as np

DIGITS = "0123456789"


def _corrupt_one(label: str, kind: str, rng: np.random.Generator) -> str:
    places = [i for i, ch in enumerate(label) if ch in DIGITS]
    if not places:
        return label
    chars = list(label)
    if kind == "random":  # every digit replaced by a random one (drawn again if nothing changed)
        while "".join(chars) == label:
            for i in places:
                chars[i] = DIGITS[rng.integers(10)]
    elif kind == "drop":  # one digit deleted
        del chars[places[rng.integers(len(places))]]
    elif kind == "perturb":  # one digit changed to another digit
        i = places[rng.integers(len(places))]
        chars[i] = DIGITS[(DIGITS.index(chars[i]) + 1 + rng.integers(9)) % 10]
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
