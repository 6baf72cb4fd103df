"""selfimprove's tiny learner vs Hugging Face LlamaForCausalLM + generate, same size, same shapes.

    pip install -e '.[hf]' && python benchmarks/bench_round.py          # both sizes
    python benchmarks/bench_round.py --sizes cpu --label-prompts 512       # faster

Shapes are those of 17-digit reverse addition: `<bos>a+b=` is 37 tokens, the answer 18 digits + EOS.
The Hugging Face model is the reference implementation's building block: LlamaForCausalLM with
rope_theta = inf (rotary embedding is then the identity, i.e. NoPE), SDPA attention, untied
embeddings, fp32, the same threads. Training: forward + backward + AdamW step on the same batch.
Labeling: greedy generation of 19 new tokens for a batch of prompts (HF: `generate(do_sample=False)`).
Untrained weights may choose EOS anywhere, so both sides mask it (HF: min_new_tokens = 19; ours: a hook
on the output layer) and every row generates all 19 tokens; the run stops if either side generated fewer.
Per-phase seconds of one round are projected from the measured throughputs and the preset's work
(problems labelled, training steps, audit problems, times its committee size). Ends with grep-able `key: value` lines.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from selfimprove.config import ModelConfig, TrainConfig, load_config
from selfimprove.learner import Learner
from selfimprove.tasks import get_task

DIGITS = 17


def hf_model(m: ModelConfig, vocab_size: int):
    try:
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError:
        raise SystemExit("the benchmark compares with Hugging Face: pip install -e '.[hf]'") from None
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=m.d_model, intermediate_size=m.d_ff,
                      num_hidden_layers=m.n_layer, num_attention_heads=m.n_head, num_key_value_heads=m.n_head,
                      max_position_embeddings=1024,
                      rope_parameters={"rope_type": "default", "rope_theta": float("inf")},
                      tie_word_embeddings=False, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    torch.manual_seed(0)
    return LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa").float()


def check_same_work(generated: dict[str, list[int]], new_tokens: int) -> None:
    """Both sides must generate `new_tokens` tokens for every row, or the throughputs compare different work."""
    for side, counts in generated.items():
        short = [n for n in counts if n != new_tokens]
        if short:
            raise SystemExit(f"labelling: {side} generated {min(counts)}..{max(counts)} tokens per row instead of "
                             f"{new_tokens} in {len(short)} of {len(counts)} rows (it stopped at EOS), so it did "
                             "less work than the other side; the tok/s would not compare")


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def bench_size(name: str, preset: str, train_batch: int, label_prompts: int, train_steps: int) -> dict[str, float]:
    cfg = load_config(preset)
    task = get_task("reverse_add")
    learner = Learner.create(task.alphabet, cfg.model, TrainConfig(lr=1e-4), seed=0, device="cpu")
    batch = task.sample((DIGITS,), range(max(train_batch, label_prompts)), seed=0)
    seqs = learner.vocab.encode(["\0" + p + t + "\0" for p, t in zip(batch.prompts, batch.truths)])
    prompt_len = 1 + len(batch.prompts[0])
    tokens = seqs[:train_batch]
    starts = np.full(train_batch, prompt_len)
    new_tokens = seqs.shape[1] - prompt_len  # 18 digits + EOS

    # --- training: tokens/s over forward + backward + optimizer step ---
    def ours_train():
        learner.train(iter(lambda: (tokens, starts), None), train_steps, 0, 1)

    hf = hf_model(cfg.model, len(learner.vocab))
    hf_opt = torch.optim.AdamW(hf.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-12, weight_decay=0.01)
    x = torch.from_numpy(tokens)
    labels = x.clone()
    labels[:, :prompt_len] = -100

    def hf_train():
        for _ in range(train_steps):
            hf_opt.zero_grad(set_to_none=True)
            hf(input_ids=x, labels=labels).loss.backward()
            torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
            hf_opt.step()

    train_tokens = train_batch * (seqs.shape[1] - 1) * train_steps
    r = {"ours_train_tok_s": train_tokens / timed(ours_train, 2), "hf_train_tok_s": train_tokens / timed(hf_train, 2)}

    # --- labeling: new tokens/s of batched greedy decoding ---
    prompts = ["\0" + p for p in batch.prompts[:label_prompts]]
    ids = torch.from_numpy(seqs[:label_prompts, :prompt_len])
    hf.eval()
    # EOS logit to -inf, as HF's min_new_tokens does: no row stops early, so both sides do the same work.
    eos = torch.tensor([0])
    no_eos = learner.decoder.head.register_forward_hook(
        lambda module, args, logits: logits.index_fill(-1, eos, float("-inf")))

    generated: dict[str, list[int]] = {}  # side -> tokens generated per row, EOS included

    def ours_label():
        texts, _, _ = learner.generate(prompts, [new_tokens - 1] * label_prompts, batch_size=label_prompts)
        # the text and its EOS, or the text cut at the budget and the token after it
        generated["ours"] = [len(text) + 1 for text in texts]

    def hf_label():
        with torch.inference_mode():
            out = hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens, do_sample=False, eos_token_id=0, pad_token_id=0)
        is_eos = out[:, prompt_len:] == 0  # up to and including the first EOS, or all max_new_tokens
        generated["hf"] = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, is_eos.shape[1]).tolist()

    label_tokens = label_prompts * new_tokens
    r["ours_label_tok_s"] = label_tokens / timed(ours_label, 2)
    r["hf_label_tok_s"] = label_tokens / timed(hf_label, 1)
    no_eos.remove()
    check_same_work(generated, new_tokens)

    # --- one round of the preset (every member of its committee), projected from the throughputs ---
    audit_problems = cfg.audit.problems * (cfg.audit.below + cfg.audit.above + 1)
    k = cfg.committee.size
    work = {"act": k * cfg.loop.problems * new_tokens, "learn":
            k * cfg.train.round_steps * cfg.train.batch_size * (seqs.shape[1] - 1),
            "check": k * audit_problems * new_tokens}
    for impl in ("ours", "hf"):
        r[f"{impl}_round_act_s"] = work["act"] / r[f"{impl}_label_tok_s"]
        r[f"{impl}_round_learn_s"] = work["learn"] / r[f"{impl}_train_tok_s"]
        r[f"{impl}_round_check_s"] = work["check"] / r[f"{impl}_label_tok_s"]
    r["params"] = sum(p.numel() for p in learner.model.parameters())
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["cpu", "paper"], choices=["cpu", "paper"])
    parser.add_argument("--label-prompts", type=int, default=1024)
    parser.add_argument("--train-steps", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    sizes = {"cpu": ("cpu-reverse-add", 128), "paper": ("paper-reverse-add", 64)}
    for size in args.sizes:
        preset, train_batch = sizes[size]
        r = bench_size(size, preset, train_batch, args.label_prompts, args.train_steps)
        print(f"\n{size} model ({r['params'] / 1e6:.2f}M params), {DIGITS}-digit shapes, train batch {train_batch}, "
              f"label batch {args.label_prompts}")
        print(f"{'':24}{'selfimprove':>14}{'HF Llama':>14}{'ratio':>8}")
        rows = [("train tokens/s", "train_tok_s"), ("labeling new tokens/s", "label_tok_s"),
                (f"round act s ({preset})", "round_act_s"), ("round learn s", "round_learn_s"),
                ("round check s", "round_check_s")]
        for label, key in rows:
            ours, hf = r[f"ours_{key}"], r[f"hf_{key}"]
            ratio = ours / hf if key.endswith("tok_s") else hf / ours
            print(f"{label:24}{ours:14.1f}{hf:14.1f}{ratio:7.2f}x")
        print(f"{size}_train_ratio: {r['ours_train_tok_s'] / r['hf_train_tok_s']:.2f}")
        print(f"{size}_label_ratio: {r['ours_label_tok_s'] / r['hf_label_tok_s']:.2f}")


if __name__ == "__main__":
    main()
