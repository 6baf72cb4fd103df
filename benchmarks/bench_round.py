"""The tiny learner against the `hf` learner built at the same size and shapes, side by side in one run.

    pip install -e '.[hf]' && python benchmarks/bench_round.py                # both sizes, final numbers
    python benchmarks/bench_round.py --sizes cpu --label-prompts 64 --train-steps 1    # a quick check

For each size (cpu: cpu-reverse-add's model; paper: paper-reverse-add's), on 17-digit reverse-addition
shapes (BOS + `a+b=` is 37 tokens, the answer 18 digits + EOS), both learners are built from scratch:
the tiny `Learner` and an `HFLearner` (learner.kind = "hf", init = "scratch", rope = false: a Llama of the
same [model] shapes over the same characters, NoPE, fp32, full fine-tuning; its vocabulary has one more
token, <pad>). Everything runs through the learners' own `train` and `generate`, i.e. what the loop runs:

- training tokens/s: `train` on the same batch of 128 (cpu) or 64 (paper) problems: forward, backward,
  clipping, AdamW and the preset's moving average, --train-steps steps;
- greedy labelling new tokens/s: `generate` of 19 new tokens for --label-prompts prompts;
- sampling N = 5 at temperature 1 (--label-prompts rows: 1/5 as many prompts, 5 answers each), new tokens/s:
  the tiny learner's `samples=5` (one prefill per prompt, its KV cache copied to the 5 rows) against
  the hf learner's (Hugging Face `generate(num_return_sequences=5)`), and against the tiny learner
  given every prompt 5 times with `samples=1` (5 prefills: the gain of sharing it, on the same model).

Same work: the weights are untrained, so the answers (and their confidence) mean nothing and only the
throughput counts; but untrained weights may choose EOS anywhere and a row that stops early costs less.
So a forward hook on each model's output layer sets the EOS logit (and the hf learner's <pad>, which
is no character) to -inf while generating, every row generates all 19 tokens, and the run stops with
a message if any row of any side generated fewer. Each figure is the fastest of two timed calls after
a warm-up call (the host may be shared). Prints the machine, a markdown table per size (every ratio is
ours / reference) and grep-able `key: value` lines.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch

from selfimprove.config import load_config
from selfimprove.learner import Learner, Trainer
from selfimprove.tasks import get_task

DIGITS = 17
SAMPLES = 5
SIZES = {"cpu": ("cpu-reverse-add", 128), "paper": ("paper-reverse-add", 64)}  # preset, train batch


def build(preset: str):
    """The tiny learner and the hf learner of `preset`'s [model] shapes and [train] settings, on the CPU."""
    try:
        from selfimprove.hf import HFLearner
    except ImportError:
        raise SystemExit("the benchmark compares with the hf learner: pip install -e '.[hf]'") from None
    task = get_task("reverse_add")
    cfg = load_config(preset, ["learner.kind=hf", "learner.init=scratch", "learner.rope=false", "device=cpu"])
    tiny = Learner.create(task.alphabet, cfg.model, cfg.train, seed=0, device="cpu")
    return tiny, HFLearner.create(cfg, task, seed=0)


def timed(fn: Callable[[], object], repeats: int = 2) -> float:
    """Seconds of the fastest of `repeats` calls of `fn` after a warm-up call (the host may be shared)."""
    fn()
    seconds = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t)
    return min(seconds)


@contextmanager
def banned(layer: torch.nn.Module, ids: list[int]):
    """While inside, `layer`'s output (logits) gives the tokens `ids` probability 0."""
    index = torch.tensor(ids)
    hook = layer.register_forward_hook(lambda module, args, logits: logits.index_fill(-1, index, float("-inf")))
    try:
        yield
    finally:
        hook.remove()


def check_same_work(side: str, counts: list[int], new_tokens: int) -> None:
    """Every row must generate `new_tokens` tokens, or the throughputs compare different work."""
    short = [n for n in counts if n != new_tokens]
    if short:
        raise SystemExit(f"{side} generated {min(counts)}..{max(counts)} tokens per row instead of {new_tokens} in "
                         f"{len(short)} of {len(counts)} rows (it stopped at EOS), so it did less work than the "
                         "other side; the tok/s would not compare")


def train_tok_s(learner: Trainer, prompts: list[str], answers: list[str], steps: int) -> float:
    [(tokens, starts)] = learner.vocab.encode_examples(prompts, answers)  # all of one length: one batch
    batches = itertools.repeat((tokens, starts))
    return tokens.shape[0] * (tokens.shape[1] - 1) * steps / timed(lambda: learner.train(batches, steps, 0, 1))


def generate_tok_s(side: str, learner: Trainer, output_layer: torch.nn.Module, no_char: list[int],
                   prompts: list[str], new_tokens: int, samples: int = 1, temperature: float = 0.0) -> float:
    """New tokens/s of `learner.generate` on `prompts` in one batch, every row generating `new_tokens`."""
    counts: list[int] = []

    def call():
        budgets = [new_tokens - 1] * len(prompts)  # room for EOS: the learner generates budget + 1 tokens at most
        texts, _, _ = learner.generate(prompts, budgets, batch_size=len(prompts) * samples, samples=samples,
                                       temperature=temperature)
        # A text is cut at its EOS or at the budget: either way the row generated len(text) + 1 tokens.
        counts[:] = [len(text) + 1 for text in texts]

    with banned(output_layer, no_char):
        seconds = timed(call)
    check_same_work(side, counts, new_tokens)
    return len(counts) * new_tokens / seconds


def bench_size(preset: str, train_batch: int, label_prompts: int, train_steps: int) -> dict[str, float]:
    tiny, hf = build(preset)
    batch = get_task("reverse_add").sample((DIGITS,), range(max(train_batch, label_prompts)), seed=0)
    new_tokens = len(batch.truths[0]) + 1  # 18 digits + EOS
    r = {"tiny_params": sum(p.numel() for p in tiny.model.parameters()),
         "hf_params": sum(p.numel() for p in hf.model.parameters())}

    # --- training: tokens/s of forward + backward + optimizer step on the same batch ---
    for side, learner in (("tiny", tiny), ("hf", hf)):
        r[f"train_{side}_tok_s"] = train_tok_s(learner, batch.prompts[:train_batch], batch.truths[:train_batch],
                                               train_steps)

    # --- generation: new tokens/s, EOS (and HF's <pad>) masked so that every row generates all of them ---
    tiny_gen = (tiny.model.head, [0])
    hf_gen = (hf.model.get_output_embeddings(), [hf.vocab.eos, hf.vocab.pad])
    prompts = batch.prompts[:label_prompts]
    r["label_tiny_tok_s"] = generate_tok_s("tiny greedy", tiny, *tiny_gen, prompts, new_tokens)
    r["label_hf_tok_s"] = generate_tok_s("hf greedy", hf, *hf_gen, prompts, new_tokens)
    few = prompts[: max(1, label_prompts // SAMPLES)]
    r["sample_tiny_tok_s"] = generate_tok_s("tiny sampled", tiny, *tiny_gen, few, new_tokens, SAMPLES, 1.0)
    r["sample_repeat_tok_s"] = generate_tok_s("tiny repeated", tiny, *tiny_gen, few * SAMPLES, new_tokens, 1, 1.0)
    r["sample_hf_tok_s"] = generate_tok_s("hf sampled", hf, *hf_gen, few, new_tokens, SAMPLES, 1.0)
    return r


def machine() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one), torch's threads and version."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    cpu = names[0] if names else platform.processor() or platform.machine()
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


# (table row, key of ours, key of the reference, grep-able ratio key): every ratio is ours / reference
ROWS = [("train tokens/s: tiny vs hf", "train_tiny_tok_s", "train_hf_tok_s", "train_ratio"),
        ("greedy labelling new tokens/s: tiny vs hf", "label_tiny_tok_s", "label_hf_tok_s", "label_ratio"),
        (f"N={SAMPLES} sampling new tokens/s: tiny one prefill vs hf num_return_sequences={SAMPLES}",
         "sample_tiny_tok_s", "sample_hf_tok_s", "sample_ratio_hf"),
        (f"N={SAMPLES} sampling new tokens/s: tiny one prefill vs tiny prompt repeated {SAMPLES}x",
         "sample_tiny_tok_s", "sample_repeat_tok_s", "sample_ratio_prefill")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--label-prompts", type=int, default=1024, help="rows of a generation batch")
    parser.add_argument("--train-steps", type=int, default=3, help="optimizer steps per timed call")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    for size in args.sizes:
        preset, train_batch = SIZES[size]
        r = bench_size(preset, train_batch, args.label_prompts, args.train_steps)
        for _, ours, ref, ratio in ROWS:
            r[ratio] = r[ours] / r[ref]
        print(f"\n{size} ({preset}'s model: tiny {r['tiny_params'] / 1e6:.2f}M, hf {r['hf_params'] / 1e6:.2f}M "
              f"params), {DIGITS}-digit shapes, train batch {train_batch}, generation {args.label_prompts} rows\n")
        print("| measure | ours | reference | ratio |\n|---|---:|---:|---:|")
        for label, ours, ref, ratio in ROWS:
            print(f"| {label} | {r[ours]:,.0f} | {r[ref]:,.0f} | {r[ratio]:.2f}x |")
        print()
        for key, value in r.items():
            print(f"{size}_{key}: {value:.2f}" if isinstance(value, float) else f"{size}_{key}: {value}")


if __name__ == "__main__":
    main()
