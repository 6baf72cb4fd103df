"""Fake learners for the copy task, to drive the real loop, committee and run directory with answers
that are right on a known share (as httpx tests with an in-memory transport):

    run_loop(cfg, run, make_learner=fake_learner)

Member k answers a prompt of length d right when `draw(seed_k, prompt) < SHARES[k][d]`; otherwise it
gives the same wrong answer as every other wrong member (the last letter changed), so wrong answers
can win a vote. A test computes what every metric must be from `answer` and its own truth
(prompt[:-1]) and compares exactly. Factories are module-level functions: worker processes receive
them by pickle.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from selfimprove.learner import Vocab

# right share per string length, per member; lengths not listed: never right
SHARES = [
    {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0, 5: 0.9, 6: 0.6, 7: 0.3},
    {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0, 5: 0.8, 6: 0.5, 7: 0.2},
    {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0, 5: 0.7, 6: 0.4, 7: 0.1},
]
WRONG_CONFIDENCE, RIGHT_CONFIDENCE = 0.25, 0.75


def draw(seed: int, prompt: str) -> float:
    digest = hashlib.blake2b(repr((seed, prompt)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def truth(prompt: str) -> str:
    return prompt[:-1]  # copy: "abc=" -> "abc"


def sample_seed(seed: int, s: int) -> int:
    """The fake's seed for its sample s (sample 0: its own seed)."""
    return seed + 7919 * s


def is_right(seed: int, k: int, prompt: str) -> bool:
    return draw(seed, prompt) < SHARES[k].get(len(prompt) - 1, 0.0)


def answer(seed: int, k: int, prompt: str) -> str:
    t = truth(prompt)
    return t if is_right(seed, k, prompt) else t[:-1] + ("b" if t[-1] == "a" else "a")


class FakeLearner:
    """Answers by `answer`, never learns. Its "loss" at each step is a fingerprint of everything it was
    trained on so far (every batch, its schedule), so `train_loss` in metrics.jsonl changes when the
    training data does, and a resumed run matches an uninterrupted one only if it trained alike."""

    def __init__(self, alphabet: str, seed: int, k: int):
        self.vocab, self.seed, self.k = Vocab(alphabet), seed, k
        self.steps, self.fingerprint = 0, b""

    def train(self, batches, steps, warmup, decay, on_step=None, peak=None) -> list[float]:
        losses = []
        digest = hashlib.blake2b(self.fingerprint + repr((steps, warmup, decay, peak)).encode(), digest_size=8)
        for step in range(steps):
            tokens, starts = next(batches)
            digest.update(tokens.tobytes() + starts.tobytes())
            self.steps += 1
            losses.append(int.from_bytes(digest.digest(), "little") / 2**64)
            if on_step is not None:
                on_step(step, losses[-1])
        self.fingerprint = digest.digest()
        return losses

    def generate(self, prompts, budgets, batch_size=1024, samples=1, temperature=0.0, top_p=1.0, seed=0):
        """`samples` answers per prompt, prompt-major (as the Learner's sampled answers): sample s is
        `answer(sample_seed(self.seed, s), k, prompt)`, so sample 0 is the greedy answer."""
        texts, finished, confidence = [], [], []
        for p, budget in zip(prompts, budgets):
            for s in range(samples):
                a = answer(sample_seed(self.seed, s), self.k, p)
                texts.append(a[:budget])
                finished.append(len(a) <= budget)
                confidence.append(RIGHT_CONFIDENCE if is_right(sample_seed(self.seed, s), self.k, p)
                                  else WRONG_CONFIDENCE)
        return texts, finished, confidence

    def save(self, path: Path) -> list[Path]:
        file = path.with_suffix(".safetensors")
        fingerprint = torch.tensor(list(self.fingerprint), dtype=torch.uint8)
        save_file({"steps": torch.tensor([self.steps]), "fingerprint": fingerprint}, str(file))
        return [file]

    def load(self, path: Path) -> None:
        state = load_file(str(path.with_suffix(".safetensors")))
        self.steps, self.fingerprint = int(state["steps"][0]), bytes(state["fingerprint"].tolist())


class ForgetfulLearner(FakeLearner):
    """A FakeLearner that, once it has trained on strings of FORGET_AT letters or more, answers every string
    of up to 4 letters wrongly (it forgot them); its checkpoint remembers whether it has. The guard's drift
    probe sees that; a rollback must bring the learner back."""

    FORGET_AT = 6

    def __init__(self, alphabet: str, seed: int, k: int):
        super().__init__(alphabet, seed, k)
        self.forgot = False

    def train(self, batches, *args, **kwargs):
        def watch():
            for tokens, starts in batches:
                texts = ("".join(self.vocab.chars[i] for i in row).strip("\0") for row in tokens)
                self.forgot |= any(len(t.split("=")[0]) >= self.FORGET_AT for t in texts)
                yield tokens, starts
        return super().train(watch(), *args, **kwargs)

    def generate(self, prompts, budgets, *args, **kwargs):
        texts, finished, confidence = super().generate(prompts, budgets, *args, **kwargs)
        n = len(texts) // max(1, len(prompts))
        if self.forgot:  # texts are prompt-major: n answers per prompt
            texts = [t if len(prompts[i // n]) - 1 > 4 else "q" * len(t) for i, t in enumerate(texts)]
        return texts, finished, confidence

    def save(self, path: Path) -> list[Path]:
        files = super().save(path)
        save_file({"forgot": torch.tensor([self.forgot])}, str(path.with_suffix(".forgot.safetensors")))
        return [*files, path.with_suffix(".forgot.safetensors")]

    def load(self, path: Path) -> None:
        super().load(path)
        self.forgot = bool(load_file(str(path.with_suffix(".forgot.safetensors")))["forgot"][0])


def forgetful_learner(cfg, task, seed) -> ForgetfulLearner:
    return ForgetfulLearner(task.alphabet, seed, (seed - cfg.seed) // 1000)


def fake_learner(cfg, task, seed) -> FakeLearner:
    return FakeLearner(task.alphabet, seed, (seed - cfg.seed) // 1000)


def record_training(monkeypatch) -> list[str]:
    """Every example fake learners (in this process) train on from now on, as prompt + answer text."""
    trained: list[str] = []
    original = FakeLearner.train

    def train(self, batches, *args, **kwargs):
        def seen():
            for tokens, starts in batches:
                trained.extend("".join(self.vocab.chars[i] for i in row).strip("\0") for row in tokens)
                yield tokens, starts
        return original(self, seen(), *args, **kwargs)

    monkeypatch.setattr(FakeLearner, "train", train)
    return trained


# --- programs (task `program`): a test task shows the hidden program after the prompt ----------------

PROGRAM_SHARES = [{1: 1.0, 2: 1.0, 3: 0.8}, {1: 1.0, 2: 1.0, 3: 0.6}, {1: 1.0, 2: 0.9, 3: 0.4}]


def program_answer(seed: int, k: int, prompt: str) -> str:
    """Right on PROGRAM_SHARES[k] of the prompts of d operations, as the hidden program itself or (half the
    time) with `|rev|rev` after it, which does the same; wrong: without its last operation."""
    hidden = prompt.split("=")[1]
    d = hidden.count("|") - hidden.endswith("|rev")
    if draw(seed, prompt) < PROGRAM_SHARES[k].get(d, 0.0):
        return hidden + "|rev|rev" * (draw(seed + 1, prompt) < 0.5)
    return hidden[:hidden.rindex("|")] if hidden.count("|") > 1 else "x|rev"  # one operation fewer


class ProgramLearner(FakeLearner):
    def generate(self, prompts, budgets, batch_size=1024, samples=1, temperature=0.0, top_p=1.0, seed=0):
        texts = [program_answer(sample_seed(self.seed, s), self.k, p) for p in prompts for s in range(samples)]
        return texts, [True] * len(texts), [RIGHT_CONFIDENCE] * len(texts)


def program_learner(cfg, task, seed) -> ProgramLearner:
    return ProgramLearner(task.alphabet, seed, (seed - cfg.seed) // 1000)
