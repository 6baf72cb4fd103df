"""One trainable model: the tiny NoPE transformer with its character vocabulary, AdamW state and
warmup-stable-decay schedule.  `train` continues the same optimizer state across rounds.  With
`train.ema > 0` it also keeps an exponential moving average of the weights, which then generates.

    learner = Learner.create(alphabet="0123456789+=", model=ModelConfig(), train=TrainConfig(), seed=0)
    learner.train(batches, steps=100, warmup=10, decay=20)
    texts, finished, confidence = learner.generate(["12+34="], budgets=[3])
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from selfimprove.config import ModelConfig, TrainConfig
from selfimprove.model import GPT, GPTConfig

EOS = "\0"  # id 0; never part of a task's alphabet
BOS = EOS  # every sequence starts with it: NoPE models read positions off attention to a fixed first token


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class Vocab:
    """Characters <-> ids; id 0 is EOS."""

    def __init__(self, alphabet: str):
        self.chars = EOS + "".join(sorted(set(alphabet)))
        self.lut = np.full(256, -1, dtype=np.int64)
        for i, c in enumerate(self.chars):
            self.lut[ord(c)] = i

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Equal-length strings -> [N, L] int64 ids."""
        width = len(texts[0]) if texts else 0
        raw = np.frombuffer("".join(texts).encode("ascii"), dtype=np.uint8).reshape(len(texts), width)
        ids = self.lut[raw]
        if (ids < 0).any():
            bad = sorted({chr(c) for c in raw[ids < 0]})
            raise ValueError(f"characters {bad} are not in the vocabulary {self.chars[1:]!r}")
        return ids

    def decode(self, ids: np.ndarray) -> tuple[list[str], list[bool]]:
        """[N, T] generated ids -> texts cut at the first EOS, and whether an EOS was produced."""
        chars = np.frombuffer(self.chars.encode("ascii"), dtype=np.uint8)[ids]
        texts = [bytes(row).split(b"\0", 1)[0].decode("ascii") for row in chars]
        return texts, list((ids == 0).any(axis=1))


def wsd_lr(step: int, total: int, warmup: int, decay: int, peak: float, floor: float = 0.01) -> float:
    """Warmup-stable-decay: linear warmup to `peak`, flat, then linear decay to floor * peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    decay_start = total - decay
    if step < decay_start:
        return peak
    return peak * (1 - (1 - floor) * (step - decay_start + 1) / decay)


class Learner:
    def __init__(self, vocab: Vocab, model: GPT, train_cfg: TrainConfig, device: torch.device):
        self.vocab, self.model, self.cfg, self.device = vocab, model, train_cfg, device
        decay = [p for p in model.parameters() if p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": train_cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=train_cfg.lr, betas=(0.9, train_cfg.beta2), eps=train_cfg.eps,
            fused=device.type == "cuda",
        )
        # The average generates; the raw weights only train. A tiny NoPE model's accuracy one step
        # beyond its data swings from step to step (reverse addition, 8-digit sums after a 7-digit
        # round: 0.00-0.72 every 50 steps); the average with decay 0.99 stays within 0.49-0.87.
        self.ema = copy.deepcopy(model).requires_grad_(False) if train_cfg.ema > 0 else None

    @classmethod
    def create(cls, alphabet: str, model: ModelConfig, train: TrainConfig, seed: int, device: str = "auto"):
        vocab = Vocab(alphabet)
        dev = pick_device(device)
        torch.manual_seed(seed)
        net = GPT(GPTConfig(len(vocab), model.n_layer, model.n_head, model.d_model, model.d_ff)).to(dev)
        return cls(vocab, net, train, dev)

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    # --- training -----------------------------------------------------------------------------

    def train(self, batches: Iterator[tuple[np.ndarray, np.ndarray]], steps: int, warmup: int, decay: int,
              on_step: Callable[[int, float], None] | None = None, peak: float | None = None) -> list[float]:
        """Run `steps` AdamW steps with peak learning rate `peak` (default: the config's lr). Each batch is
        (tokens [B, L] of BOS+prompt+answer+EOS, answer_start [B]); the loss covers the answer and its EOS
        only. Returns the loss of every step."""
        peak = self.cfg.lr if peak is None else peak
        self.model.train()
        averaged = [] if self.ema is None else list(zip(self.ema.parameters(), self.model.parameters()))
        losses = []
        for step in range(steps):
            tokens, answer_start = next(batches)
            x = torch.from_numpy(tokens).to(self.device, non_blocking=True)
            mask = torch.arange(1, tokens.shape[1], device=self.device)[None, :] >= torch.from_numpy(
                answer_start).to(self.device)[:, None]
            lr = wsd_lr(step, steps, warmup, decay, peak)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            with self._autocast():
                logits = self.model(x[:, :-1])
            loss_all = F.cross_entropy(logits.float().transpose(1, 2), x[:, 1:], reduction="none")
            loss = (loss_all * mask).sum() / mask.sum()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.optimizer.step()
            with torch.no_grad():
                for average, weight in averaged:
                    average.lerp_(weight, 1 - self.cfg.ema)
            losses.append(loss.item())
            if on_step is not None:
                on_step(step, losses[-1])
        return losses

    # --- generation ---------------------------------------------------------------------------

    @property
    def decoder(self) -> GPT:
        """The weights that label and are audited: the moving average when there is one."""
        return self.model if self.ema is None else self.ema

    def generate(self, prompts: list[str], budgets: list[int], batch_size: int = 1024
                 ) -> tuple[list[str], list[bool], list[float]]:
        """Greedy answers, each cut at EOS or after budget characters; whether EOS was produced; and
        the answer's confidence (smallest probability of a chosen token).
        Prompts are grouped by length so that no batch carries padding; BOS is added here."""
        model = self.decoder
        model.eval()
        texts: list[str] = [""] * len(prompts)
        finished: list[bool] = [False] * len(prompts)
        confidence: list[float] = [0.0] * len(prompts)
        lengths = np.fromiter((len(p) for p in prompts), dtype=np.int64, count=len(prompts))
        order = np.argsort(lengths, kind="stable")
        for length in np.unique(lengths):
            same = order[lengths[order] == length]
            for chunk in np.array_split(same, math.ceil(len(same) / batch_size)):
                ids = torch.from_numpy(self.vocab.encode([BOS + prompts[i] for i in chunk])).to(self.device)
                # Each row generates its budget + 1 tokens at most (room for EOS), whatever its batch-mates'
                # budgets: its confidence then covers what it would generate alone.
                limits = [budgets[i] + 1 for i in chunk]
                with self._autocast():
                    out, conf = model.generate(ids, max(limits), eos_id=0,
                                               limits=torch.tensor(limits, device=self.device))
                for i, text, done, c in zip(chunk, *self.vocab.decode(out.cpu().numpy()), conf.tolist()):
                    # A row cut at its limit decodes to budget + 1 characters (the filler after it is EOS).
                    budget = budgets[i]
                    texts[i], finished[i], confidence[i] = text[:budget], bool(done) and len(text) <= budget, c
        return texts, finished, confidence

    # --- checkpoints --------------------------------------------------------------------------

    def _networks(self, path: Path) -> list[tuple[GPT, Path]]:
        """Each network with its weights file: `path`.safetensors, and `path`.ema.safetensors for the average."""
        networks = [(self.model, path.with_suffix(".safetensors"))]
        if self.ema is not None:
            networks.append((self.ema, path.with_suffix(".ema.safetensors")))
        return networks

    def save(self, path: Path) -> list[Path]:
        """Write the weights (and the moving average's) and `path`.optim.safetensors (AdamW state)."""
        for net, file in self._networks(path):
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(file))
        optim = path.with_suffix(".optim.safetensors")
        state: dict[str, torch.Tensor] = {}
        for i, st in self.optimizer.state_dict()["state"].items():
            for key, value in st.items():
                state[f"{i}.{key}"] = torch.as_tensor(value).reshape(-1) if key == "step" else value.contiguous()
        save_file(state, str(optim))
        return [file for _, file in self._networks(path)] + [optim]

    def load(self, path: Path) -> None:
        for net, file in self._networks(path):
            net.load_state_dict(load_file(str(file), device=str(self.device)))
        optim = path.with_suffix(".optim.safetensors")
        tensors = load_file(str(optim), device=str(self.device))
        sd = self.optimizer.state_dict()
        state: dict[int, dict[str, torch.Tensor]] = {}
        for name, value in tensors.items():
            i, key = name.split(".", 1)
            state.setdefault(int(i), {})[key] = value.reshape(()) if key == "step" else value
        sd["state"] = state
        self.optimizer.load_state_dict(sd)
