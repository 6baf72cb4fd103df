"""The tiny learner's network: a decoder-only transformer without positional encoding (NoPE),
RMSNorm, SwiGLU, untied embeddings, PyTorch's scaled_dot_product_attention; plus batched greedy
decoding with a KV cache that stops each sequence at EOS.

    from selfimprove.model import GPT, GPTConfig
    model = GPT(GPTConfig(vocab_size=16, n_layer=2, n_head=2, d_model=64))
    tokens, confidence = model.generate(torch.zeros(3, 5, dtype=torch.long), max_new_tokens=4, eos_id=1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    n_layer: int = 6
    n_head: int = 6
    d_model: int = 384
    d_ff: int = 1536


def init_weights(model: nn.Module, n_layer: int, residual: tuple[str, ...] = ("proj.weight", "down.weight")) -> None:
    """selfimprove's initialisation, for its own model and for Hugging Face models built from scratch:
    unit-scale embeddings and std 1/sqrt(fan_in) matrices, the residual projections (names ending in
    `residual`) scaled down by sqrt(2 * n_layer). GPT-2's fixed 0.02 (Hugging Face's default too) suits
    widths near 2,500; at width 64 it leaves attention logits near zero and the NoPE learner on a
    plateau for thousands of steps before it finds where the digits are (reverse addition of 1..4
    digits at width 64: 2-digit sums reach 0.8 after 6,000 steps with 0.02, after 1,500 with this init;
    at widths 96 and 128 on 1..5 digits, 0.02 had not left the plateau after 8,000 steps; with the
    paper's own code at the tiny size, 0.02 left reverse addition at 0.19-0.46 on 3-digit sums where
    this init reached 1.00)."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if id(p) in embeddings:
                nn.init.normal_(p, std=1.0)
            elif p.dim() == 2:
                std = p.shape[1] ** -0.5
                if name.endswith(residual):
                    std /= math.sqrt(2 * n_layer)
                nn.init.normal_(p, std=std)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.attn_norm = nn.RMSNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.mlp_norm = nn.RMSNorm(cfg.d_model)
        self.gate_up = nn.Linear(cfg.d_model, 2 * cfg.d_ff, bias=False)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None, pos: int = 0,
                last_only: bool = False):
        """x: [B, T, C]. With a cache ([B, H, T_max, D] keys and values), the new keys and values are
        written at pos..pos+T and attention covers everything up to pos+T. `last_only` returns the
        last position only (the last block of a prefill: nothing reads the other positions)."""
        B, T, C = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        if cache is not None:
            cache[0][:, :, pos : pos + T] = k
            cache[1][:, :, pos : pos + T] = v
            k, v = cache[0][:, :, : pos + T], cache[1][:, :, : pos + T]
        if last_only:
            x, q, T = x[:, -1:], q[:, :, -1:], 1
        # Causal masking is only needed when queries see keys after them: never for one new token.
        y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        gate, up = self.gate_up(self.mlp_norm(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = nn.RMSNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        init_weights(self, cfg.n_layer)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx [B, T] -> logits [B, T, vocab]."""
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))

    @torch.inference_mode()
    def generate(self, prompts: torch.Tensor, max_new_tokens: int, eos_id: int, limits: torch.Tensor | None = None,
                 samples: int = 1, temperature: float = 0.0, top_p: float = 1.0,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Continuation of equal-length prompts [B, P] -> [B * samples, max_new_tokens] tokens, and the
        confidence of each row: the smallest probability the model gave a token the row chose (EOS
        included). Greedy when temperature is 0; otherwise each prompt's `samples` rows (rows
        i * samples .. i * samples + samples - 1) are drawn from softmax(logits / temperature), cut to
        the top-p nucleus, all from the one prefill of the prompt (its keys and values are computed once
        and copied to the samples' rows).

        Each row stops at its first EOS (the EOS is kept, later positions are filled with EOS), or
        after limits[prompt] tokens when `limits` [B] is given (later positions are filled with EOS too).
        Finished rows are dropped from the batch so they cost nothing further."""
        B, P = prompts.shape
        cfg = self.cfg
        n = B * samples
        out = torch.full((n, max_new_tokens), eos_id, dtype=torch.long, device=prompts.device)
        confidence = torch.ones(n, device=prompts.device)
        if B == 0 or max_new_tokens == 0:
            return out, confidence
        shape = (B, cfg.n_head, P + max_new_tokens, cfg.d_model // cfg.n_head)
        device = prompts.device
        autocast = torch.is_autocast_enabled(device.type)
        dtype = torch.get_autocast_dtype(device.type) if autocast else self.embed.weight.dtype
        caches = [(torch.empty(shape, dtype=dtype, device=device), torch.empty(shape, dtype=dtype, device=device))
                  for _ in self.blocks]
        rows = torch.arange(n, device=device)  # the output row of each batch row
        if limits is not None:
            limits = limits.repeat_interleave(samples)
        finished = torch.zeros(n, dtype=torch.bool, device=device) if limits is None else limits <= 0
        x, pos = self.embed(prompts), 0
        for t in range(max_new_tokens):
            n_new = x.shape[1]
            for i, (block, cache) in enumerate(zip(self.blocks, caches)):
                x = block(x, cache, pos, last_only=i == len(self.blocks) - 1)
            pos += n_new
            if t == 0 and samples > 1:  # the prefill is done once per prompt; each sample gets a copy
                x = x.repeat_interleave(samples, dim=0)
                caches = [(k.repeat_interleave(samples, dim=0), v.repeat_interleave(samples, dim=0))
                          for k, v in caches]
            logits = self.head(self.norm(x[:, -1])).float()
            token, chosen = pick(logits, temperature, top_p, generator)
            token = token.masked_fill(finished, eos_id)
            out[rows, t] = token
            confidence[rows] = torch.minimum(confidence[rows], chosen.masked_fill(finished, 1.0))
            finished = finished | (token == eos_id)
            if limits is not None:
                finished |= limits[rows] <= t + 1
            n_alive = int((~finished).sum())
            if n_alive == 0:
                break
            # Compacting copies the caches, so only do it once enough rows have finished.
            if n_alive <= 0.75 * rows.numel():
                rows, token, finished, caches = self._compact(~finished, rows, token, finished, caches)
            x = self.embed(token[:, None])
        return out, confidence

    @staticmethod
    def _compact(keep: torch.Tensor, rows: torch.Tensor, token: torch.Tensor, finished: torch.Tensor,
                 caches: list[tuple[torch.Tensor, torch.Tensor]]):
        """Drop the batch rows where `keep` is False from the row map, last tokens, flags and caches."""
        keep = keep.nonzero().squeeze(1)
        return rows[keep], token[keep], finished[keep], [(k[keep], v[keep]) for k, v in caches]


def pick(logits: torch.Tensor, temperature: float = 0.0, top_p: float = 1.0,
         generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Next tokens from logits [B, V]: the most likely (temperature 0) or a draw from
    softmax(logits / temperature) cut to the smallest set of tokens whose probability reaches top_p;
    and the probability the model itself (temperature 1) gave each chosen token."""
    probs = logits.softmax(dim=-1)
    if temperature == 0:
        chosen, token = probs.max(dim=-1)
        return token, chosen
    warped = (logits / temperature).softmax(dim=-1)
    if top_p < 1.0:
        ranked, order = warped.sort(dim=-1, descending=True)
        outside = ranked.cumsum(dim=-1) - ranked >= top_p  # tokens after the nucleus is full
        warped = warped.scatter(-1, order, ranked.masked_fill(outside, 0.0))
    token = torch.multinomial(warped, 1, generator=generator).squeeze(1)
    return token, probs.gather(1, token[:, None]).squeeze(1)
