"""Learners. `Trainer` is what every learner shares: AdamW over the trainable weights, whose state
carries across rounds, the warmup-stable-decay schedule of each round, answer-only loss, the moving
average of the weights (`train.ema > 0`; it then generates) and checkpoints. `Learner` is
selfimprove's own tiny NoPE transformer on the task's characters; hf.py has the Hugging Face one.

    learner = Learner.create(alphabet="0123456789+=", model=ModelConfig(), train=TrainConfig(), seed=0)
    learner.train(batches, steps=100, warmup=10, decay=20)
    texts, finished, confidence = learner.generate(["12+34="], budgets=[3])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
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

    def encode_examples(self, prompts: list[str], answers: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Training sequences BOS + prompt + answer + EOS, grouped by length: [(tokens [N, L], answer_start [N])]
        (answer_start: the position of the answer's first token)."""
        seqs = [BOS + p + a + EOS for p, a in zip(prompts, answers)]
        lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
        starts = np.fromiter(map(len, prompts), dtype=np.int64, count=len(prompts)) + len(BOS)
        buckets = []
        for length in np.unique(lengths):
            idx = np.flatnonzero(lengths == length)
            buckets.append((self.encode([seqs[i] for i in idx]), starts[idx]))
        return buckets

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


class Trainer:
    """What every learner shares: AdamW over the trainable weights, whose state carries across rounds;
    the warmup-stable-decay schedule of each round; answer-only loss; the moving average of the
    trainable weights (`train.ema`), which generates; and safetensors checkpoints of all three.

    A learner subclasses it with `vocab` (texts <-> token ids: `encode_examples` builds training
    sequences) and `logits(tokens)`, and generates inside `with self.averaged():`."""

    def __init__(self, model: torch.nn.Module, train_cfg: TrainConfig, device: torch.device,
                 amp: torch.dtype | None = None):
        self.model, self.cfg, self.device, self.amp = model, train_cfg, device, amp
        self.trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        decay = [p for _, p in self.trainable if p.dim() >= 2]
        no_decay = [p for _, p in self.trainable if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": train_cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=train_cfg.lr, betas=(0.9, train_cfg.beta2), eps=train_cfg.eps,
            fused=device.type == "cuda",
        )
        # The average generates; the raw weights only train. A tiny NoPE model's accuracy one step
        # beyond its data swings from step to step (reverse addition, 8-digit sums after a 7-digit
        # round: 0.00-0.72 every 50 steps); the average with decay 0.99 stays within 0.49-0.87.
        # Kept in fp32 whatever the weights' dtype: a 1% step toward a bf16 weight is below bf16's rounding.
        self.ema = [p.detach().float().clone() for _, p in self.trainable] if train_cfg.ema > 0 else None

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] -> next-token logits [B, T, vocab]."""
        raise NotImplementedError

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp) if self.amp is not None else nullcontext()

    # --- training -----------------------------------------------------------------------------

    def train(self, batches: Iterator[tuple[np.ndarray, np.ndarray]], steps: int, warmup: int, decay: int,
              on_step: Callable[[int, float], None] | None = None, peak: float | None = None) -> list[float]:
        """Run `steps` AdamW steps with peak learning rate `peak` (default: the config's lr). Each batch is
        (tokens [B, L] of BOS+prompt+answer+EOS, answer_start [B]); the loss covers the answer and its EOS
        only. Returns the loss of every step."""
        peak = self.cfg.lr if peak is None else peak
        self.model.train()
        params = [p for _, p in self.trainable]
        averaged = [] if self.ema is None else list(zip(self.ema, params))
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
                logits = self.logits(x[:, :-1])
            loss_all = F.cross_entropy(logits.float().transpose(1, 2), x[:, 1:], reduction="none")
            loss = (loss_all * mask).sum() / mask.sum()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
            self.optimizer.step()
            with torch.no_grad():
                for average, weight in averaged:
                    average.lerp_(weight.float(), 1 - self.cfg.ema)
            losses.append(loss.item())
            if on_step is not None:
                on_step(step, losses[-1])
        return losses

    @contextmanager
    def averaged(self):
        """The weights that label and are audited: inside this block the trainable weights are the
        moving average when there is one (the raw weights come back after it, bit for bit)."""
        self.model.eval()
        if self.ema is None:
            yield
            return
        with torch.no_grad():
            raw = [p.detach().clone() for _, p in self.trainable]
            for (_, p), average in zip(self.trainable, self.ema):
                p.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for (_, p), weight in zip(self.trainable, raw):
                    p.copy_(weight)

    # --- checkpoints --------------------------------------------------------------------------

    def _files(self, path: Path) -> list[tuple[list[torch.Tensor], Path]]:
        """The trainable weights in `path`.safetensors, their moving average in `path`.ema.safetensors."""
        files = [([p for _, p in self.trainable], path.with_suffix(".safetensors"))]
        if self.ema is not None:
            files.append((self.ema, path.with_suffix(".ema.safetensors")))
        return files

    def save(self, path: Path) -> list[Path]:
        """Write the trainable weights (never a pretrained model's frozen ones), their moving average,
        and `path`.optim.safetensors (AdamW state)."""
        names = [name for name, _ in self.trainable]
        for tensors, file in self._files(path):
            save_file({n: t.detach().contiguous() for n, t in zip(names, tensors)}, str(file))
        optim = path.with_suffix(".optim.safetensors")
        state: dict[str, torch.Tensor] = {}
        for i, st in self.optimizer.state_dict()["state"].items():
            for key, value in st.items():
                state[f"{i}.{key}"] = torch.as_tensor(value).reshape(-1) if key == "step" else value.contiguous()
        save_file(state, str(optim))
        return [file for _, file in self._files(path)] + [optim]

    def load(self, path: Path) -> None:
        names = [name for name, _ in self.trainable]
        for tensors, file in self._files(path):
            saved = load_file(str(file), device=str(self.device))
            if set(saved) != set(names):
                raise ValueError(f"{file} holds other weights than this learner trains "
                                 f"({len(saved)} tensors, expected {len(names)}): was it written by another config?")
            with torch.no_grad():
                for name, t in zip(names, tensors):
                    t.copy_(saved[name])
        optim = path.with_suffix(".optim.safetensors")
        tensors = load_file(str(optim), device=str(self.device))
        sd = self.optimizer.state_dict()
        state: dict[int, dict[str, torch.Tensor]] = {}
        for name, value in tensors.items():
            i, key = name.split(".", 1)
            state.setdefault(int(i), {})[key] = value.reshape(()) if key == "step" else value
        sd["state"] = state
        self.optimizer.load_state_dict(sd)


class Learner(Trainer):
    """selfimprove's own tiny model (model.py) on the task's characters."""

    def __init__(self, vocab: Vocab, model: GPT, train_cfg: TrainConfig, device: torch.device):
        super().__init__(model, train_cfg, device, torch.bfloat16 if device.type == "cuda" else None)
        self.vocab = vocab

    @classmethod
    def create(cls, alphabet: str, model: ModelConfig, train: TrainConfig, seed: int, device: str = "auto"):
        vocab = Vocab(alphabet)
        dev = pick_device(device)
        torch.manual_seed(seed)
        net = GPT(GPTConfig(len(vocab), model.n_layer, model.n_head, model.d_model, model.d_ff)).to(dev)
        return cls(vocab, net, train, dev)

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(tokens)

    def generate(self, prompts: list[str], budgets: list[int], batch_size: int = 1024, samples: int = 1,
                 temperature: float = 0.0, top_p: float = 1.0, seed: int = 0
                 ) -> tuple[list[str], list[bool], list[float]]:
        """Answers, each cut at EOS or after budget characters; whether EOS was produced; and the
        answer's confidence (smallest probability the model gave a token it chose). Greedy when
        temperature is 0; otherwise `samples` answers per prompt, drawn at that temperature (and top-p)
        from one prefill of the prompt, in prompt-major order (prompt i's sample s at i * samples + s).
        Prompts are grouped by length so that no batch carries padding; BOS is added here."""
        n = len(prompts) * samples
        texts: list[str] = [""] * n
        finished: list[bool] = [False] * n
        confidence: list[float] = [0.0] * n
        lengths = np.fromiter((len(p) for p in prompts), dtype=np.int64, count=len(prompts))
        order = np.argsort(lengths, kind="stable")
        per_chunk = max(1, batch_size // samples)
        with self.averaged():
            for length in np.unique(lengths):
                same = order[lengths[order] == length]
                for chunk in np.array_split(same, math.ceil(len(same) / per_chunk)):
                    ids = torch.from_numpy(self.vocab.encode([BOS + prompts[i] for i in chunk])).to(self.device)
                    # Each row generates its budget + 1 tokens at most (room for EOS), whatever its batch-mates'
                    # budgets: its confidence then covers what it would generate alone.
                    limits = [budgets[i] + 1 for i in chunk]
                    # every chunk its own random stream, whatever else this call generates
                    generator = None if temperature == 0 else torch.Generator(self.device).manual_seed(
                        int(np.random.SeedSequence([seed, int(length), int(chunk[0])]).generate_state(1)[0]))
                    with self._autocast():
                        out, conf = self.model.generate(ids, max(limits), eos_id=0,
                                                        limits=torch.tensor(limits, device=self.device),
                                                        samples=samples, temperature=temperature, top_p=top_p,
                                                        generator=generator)
                    rows = [i * samples + s for i in chunk for s in range(samples)]
                    for j, text, done, c in zip(rows, *self.vocab.decode(out.cpu().numpy()), conf.tolist()):
                        # A row cut at its limit decodes to budget + 1 characters (the filler after it is EOS).
                        budget = budgets[j // samples]
                        texts[j], finished[j], confidence[j] = text[:budget], bool(done) and len(text) <= budget, c
        return texts, finished, confidence
