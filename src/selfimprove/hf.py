"""The `hf` learner: a Hugging Face causal LM (pretrained or built from scratch), fine-tuned fully or
with LoRA, behind the same interface as the tiny learner (learner.py's Trainer: AdamW, the round
schedule, the moving average, answer-only loss and checkpoints are shared code).

    cfg = load_config("hf-copy")                       # learner.kind = "hf"
    check(cfg)                                         # bad model, tokenizer or LoRA targets: HFError
    learner = HFLearner.create(cfg, cfg.task.build(), seed=0)
    texts, finished, confidence = learner.generate(["abc="], budgets=[3])

Text becomes tokens one of two ways (`learner.tokens`): `chars` maps every character to the model's
token for that one character (digits one token each, as the paper's pretrained runs did); `model` uses
the model's own tokenizer on the prompt and on the answer separately (so an answer's tokens never merge
with its prompt's). Needs the `hf` extra: pip install -e '.[hf]'.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfimprove.config import Config, ConfigError, LearnerConfig, ModelConfig
from selfimprove.learner import Trainer, pick_device
from selfimprove.model import init_weights
from selfimprove.tasks import Task

INSTALL = "pip install -e '.[hf]'  (transformers, peft, accelerate)"
PAD = "<pad>"


class HFError(ConfigError):
    """The hf learner cannot be built as configured; the message says what to change."""


def _transformers():
    try:
        import transformers
    except ImportError:
        raise HFError(f"learner.kind = 'hf' needs the hf extra: {INSTALL}") from None
    return transformers


# --- building -------------------------------------------------------------------------------------


def char_tokenizer(alphabet: str):
    """A fast tokenizer with one token per character of `alphabet`, plus <eos> (also BOS) and <pad>."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    transformers = _transformers()
    vocab = {"<eos>": 0, PAD: 1} | {c: i + 2 for i, c in enumerate(sorted(set(alphabet)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=PAD))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()  # characters back to text without spaces between them
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", bos_token="<eos>",
                                                pad_token=PAD, clean_up_tokenization_spaces=False)


# Linear RoPE scaling by this factor turns every rotation (position / factor radians at most) into
# nothing measurable: attention then sees no position but the causal mask's, as in the tiny NoPE model.
NO_ROPE = {"rope_type": "linear", "factor": 1e9, "rope_theta": 10000.0}


def char_llama(alphabet: str, shapes: ModelConfig, rope: bool = True):
    """A Llama of the tiny model's shapes over `alphabet`'s characters (fresh weights) and its tokenizer."""
    transformers = _transformers()
    tokenizer = char_tokenizer(alphabet)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=shapes.d_model, intermediate_size=shapes.d_ff,
        num_hidden_layers=shapes.n_layer, num_attention_heads=shapes.n_head, num_key_value_heads=shapes.n_head,
        max_position_embeddings=4096, tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        **({} if rope else {"rope_parameters": NO_ROPE}))
    return transformers.LlamaForCausalLM(config), tokenizer


def _is_path(name: str) -> bool:
    """A folder rather than a Hub id (`owner/name`)."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).expanduser().exists()


def _load(what: str, loader, lc: LearnerConfig, **kwargs):
    """`loader.from_pretrained(lc.model)`, every failure turned into what to do about it."""
    name = lc.model
    if _is_path(name) and not Path(name).expanduser().exists():
        raise HFError(f"learner.model = {name!r}: no such folder; point it at a folder holding the model and its "
                      f"tokenizer (save_pretrained), or give a Hugging Face Hub id")
    try:
        return loader.from_pretrained(os.path.expanduser(name), revision=lc.revision, **kwargs)
    except ImportError as e:  # a tokenizer that needs sentencepiece, tiktoken, ...
        raise HFError(f"learner.model = {name!r}: its {what} needs a package that is not installed: {e}") from None
    except (OSError, ValueError) as e:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        if Path(name).expanduser().is_dir():
            raise HFError(f"learner.model = {name!r}: the folder has no usable {what} ({e})") from None
        raise HFError(f"learner.model = {name!r}: cannot load its {what} from the Hugging Face Hub"
                      f"{' (HF_HUB_OFFLINE is set)' if offline else ''}: {str(e).splitlines()[0]}. Download it "
                      f"where there is a network (`hf download {name}`) into the cache or a folder, then point "
                      f"learner.model at that folder") from None


def build(cfg: Config, task: Task, device: torch.device | str = "meta"):
    """(model, tokenizer) as `cfg.learner` says, on `device` ('meta': shapes only, no weights loaded)."""
    transformers = _transformers()
    lc = cfg.learner
    dtype = _dtype(lc, pick_device(cfg.device))
    if lc.model is None:
        with torch.device(device):
            model, tokenizer = char_llama(task.alphabet, cfg.model, lc.rope)
    else:
        tokenizer = _load("tokenizer", transformers.AutoTokenizer, lc)
        config = _load("config", transformers.AutoConfig, lc)
        if not lc.rope:
            config.rope_parameters = NO_ROPE
        if lc.init == "scratch" or str(device) == "meta":
            with torch.device(device):
                model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
        else:
            model = _load("weights", transformers.AutoModelForCausalLM, lc, dtype=dtype).to(device)
    if lc.init == "scratch" and str(device) != "meta":
        init_weights(model, model.config.num_hidden_layers, residual=("o_proj.weight", "down_proj.weight"))
    return model.to(dtype), tokenizer


def _dtype(lc: LearnerConfig, device: torch.device) -> torch.dtype:
    """auto: bf16 for the frozen base of a LoRA model on CUDA; fp32 weights otherwise (weights that train
    stay fp32 under bf16 autocast: AdamW steps of 1e-4 and the moving average vanish in bf16 rounding)."""
    if lc.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" and lc.lora_rank > 0 else torch.float32
    return getattr(torch, lc.dtype)


def _adapt(model, lc: LearnerConfig):
    """LoRA adapters on `lc.lora_targets` (lora_rank > 0), or every weight trainable."""
    if lc.lora_rank == 0:
        return model.requires_grad_(True)
    have = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules()  # Linear, GPT-2's Conv1D, ...
                   if not list(m.children()) and getattr(m, "weight", None) is not None and m.weight.dim() == 2})
    missing = [t for t in lc.lora_targets if t not in have]
    if missing:
        raise HFError(f"learner.lora_targets: the model has no {missing}; its layers with weight matrices are {have}")
    try:
        import peft
    except ImportError:
        raise HFError(f"learner.lora_rank > 0 needs peft: {INSTALL}") from None
    config = peft.LoraConfig(r=lc.lora_rank, lora_alpha=lc.lora_alpha, lora_dropout=lc.lora_dropout,
                             target_modules=list(lc.lora_targets), bias="none")
    return peft.get_peft_model(model, config)


# --- tokens ---------------------------------------------------------------------------------------


class Tokens:
    """Texts <-> a Hugging Face tokenizer's ids, for training sequences and generation."""

    def __init__(self, tokenizer, alphabet: str, lc: LearnerConfig):
        self.tokenizer, self.mode, self.chat = tokenizer, lc.tokens, lc.chat_template
        self.eos = tokenizer.eos_token_id
        if self.eos is None:
            raise HFError(f"learner.model = {lc.model!r}: its tokenizer has no EOS token; answers could not end")
        self.bos = [] if self.chat or tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos
        if self.chat and not getattr(tokenizer, "chat_template", None):
            raise HFError(f"learner.chat_template = true, but the tokenizer of {lc.model!r} has no chat template; "
                          f"set learner.chat_template = false")
        if self.mode == "chars":
            ids, missing = {}, []
            for c in sorted(set(alphabet)):
                for found in (tokenizer.encode(c, add_special_tokens=False), [tokenizer.convert_tokens_to_ids(c)]):
                    if len(found) == 1 and found[0] is not None and tokenizer.decode(found) == c:
                        ids[c] = found[0]  # a token that is this character and nothing else
                        break
                else:
                    missing.append(c)
            if missing:
                raise HFError(f"learner.tokens = 'chars': the tokenizer of {lc.model!r} has no single token for "
                              f"{missing} (the task's characters: {''.join(sorted(set(alphabet)))!r}); use "
                              f"learner.tokens = 'model'")
            self.ids, self.chars = ids, {i: c for c, i in ids.items()}
        else:  # the model's own tokens must give the task's text back, or no answer could ever be right
            text = "".join(sorted(set(alphabet)))
            if self.tokenizer.decode(self._text(text)) != text:
                raise HFError(f"learner.tokens = 'model': the tokenizer of {lc.model!r} does not give the task's "
                              f"characters back ({text!r} decodes to "
                              f"{self.tokenizer.decode(self._text(text))!r}); use learner.tokens = 'chars'")

    def _text(self, text: str) -> list[int]:
        if self.mode == "chars":
            try:
                return [self.ids[c] for c in text]
            except KeyError as e:
                raise ValueError(f"{text!r} has {e} outside the task's alphabet") from None
        return self.tokenizer.encode(text, add_special_tokens=False)

    def prompt(self, prompt: str) -> list[int]:
        if self.chat:
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                      add_generation_prompt=True)
            return self.tokenizer.encode(text, add_special_tokens=False)
        return self.bos + self._text(prompt)

    def encode_examples(self, prompts: list[str], answers: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Training sequences BOS + prompt + answer + EOS grouped by token length:
        [(tokens [N, L], answer_start [N])]."""
        by_length: dict[int, tuple[list[list[int]], list[int]]] = {}
        for p, a in zip(prompts, answers):
            head = self.prompt(p)
            seq = head + self._text(a) + [self.eos]
            rows, starts = by_length.setdefault(len(seq), ([], []))
            rows.append(seq)
            starts.append(len(head))
        return [(np.array(rows, dtype=np.int64), np.array(starts, dtype=np.int64))
                for _, (rows, starts) in sorted(by_length.items())]

    def limit(self, budget: int) -> int:
        """Tokens an answer of `budget` characters and its EOS may take: budget + 1 with one token a
        character; with the model's tokens, room for more (a tokenizer may open an answer with a word
        boundary piece); the text is cut at the budget either way."""
        return budget + 1 if self.mode == "chars" else 2 * budget + 2

    def decode(self, ids: list[int]) -> tuple[str, bool]:
        """Generated ids -> the text before the first EOS, and whether there was an EOS."""
        done = self.eos in ids
        ids = ids[: ids.index(self.eos)] if done else ids
        if self.mode == "chars":
            return "".join(self.chars.get(i) or self.tokenizer.decode([i]) for i in ids), done
        return self.tokenizer.decode(ids), done


# --- the learner ----------------------------------------------------------------------------------


class HFLearner(Trainer):
    def __init__(self, model, tokens: Tokens, cfg: Config, device: torch.device):
        super().__init__(model, cfg.train, device, torch.bfloat16 if device.type == "cuda" else None)
        self.vocab = tokens

    @classmethod
    def create(cls, cfg: Config, task: Task, seed: int) -> HFLearner:
        lc = cfg.learner
        device = pick_device(cfg.device)
        torch.manual_seed(seed)
        model, tokenizer = build(cfg, task, device)
        tokens = Tokens(tokenizer, task.alphabet, lc)
        model = _adapt(model, lc)
        if lc.gradient_checkpointing:
            if hasattr(model, "activation_checkpointing_enable"):  # its name since transformers 5.x
                model.activation_checkpointing_enable({"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            if lc.lora_rank:
                model.enable_input_require_grads()
        return cls(model, tokens, cfg, device)

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=tokens, use_cache=False).logits

    def generate(self, prompts: list[str], budgets: list[int], batch_size: int = 1024, samples: int = 1,
                 temperature: float = 0.0, top_p: float = 1.0, seed: int = 0
                 ) -> tuple[list[str], list[bool], list[float]]:
        """As the tiny learner's: answers cut at EOS or after budget characters (prompt-major,
        `samples` per prompt), whether EOS was produced, and the least probability the model gave a
        token it chose (up to EOS, within the answer's token limit `vocab.limit`). Batched and
        left-padded, with `generate`'s KV cache; several samples come from `num_return_sequences`."""
        transformers = _transformers()
        n = len(prompts) * samples
        texts: list[str] = [""] * n
        finished: list[bool] = [False] * n
        confidence: list[float] = [0.0] * n
        encoded = [self.vocab.prompt(p) for p in prompts]
        order = np.argsort([len(e) for e in encoded], kind="stable")  # similar lengths share a batch
        per_chunk = max(1, batch_size // samples)
        sampled = temperature > 0
        # The settings that shape the answer, explicitly: `generate` fills whatever is left unset from the
        # model's own generation_config (Llama-3.2: temperature 0.6, top_p 0.9) and then its defaults (top_k 50).
        settings = dict(
            do_sample=sampled, repetition_penalty=1.0, no_repeat_ngram_size=0, num_beams=1,
            num_return_sequences=samples, eos_token_id=self.vocab.eos, pad_token_id=self.vocab.pad,
            output_logits=True, return_dict_in_generate=True,
            **({"temperature": temperature, "top_p": top_p, "top_k": 0, "min_p": 0.0, "typical_p": 1.0}
               if sampled else {}))  # greedy decoding uses none of the sampling settings
        with self.averaged(), torch.inference_mode():
            for c0 in range(0, len(prompts), per_chunk):
                chunk = order[c0 : c0 + per_chunk]
                width = max(len(encoded[i]) for i in chunk)
                ids = torch.tensor([[self.vocab.pad] * (width - len(encoded[i])) + encoded[i] for i in chunk],
                                   device=self.device)
                mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in chunk],
                                    device=self.device)
                limits = torch.tensor([self.vocab.limit(budgets[i]) for i in chunk],
                                      device=self.device).repeat_interleave(samples)
                if sampled:  # every chunk its own random stream
                    torch.manual_seed(int(np.random.SeedSequence([seed, c0]).generate_state(1)[0]))
                with self._autocast():
                    config = transformers.GenerationConfig(max_new_tokens=int(limits.max()), **settings)
                    out = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
                new = out.sequences[:, width:]
                chosen = torch.stack([step.float().softmax(dim=-1).gather(1, new[:, t, None]).squeeze(1)
                                      for t, step in enumerate(out.logits)], dim=1)
                new = new[:, : chosen.shape[1]]
                steps = torch.arange(new.shape[1], device=self.device)
                ended = (new == self.vocab.eos).int().cumsum(dim=1)
                # a row's tokens count up to its first EOS and within its own limit
                live = (steps[None, :] < limits[:, None]) & ((ended == 0) | ((ended == 1) & (new == self.vocab.eos)))
                conf = chosen.masked_fill(~live, 1.0).min(dim=1).values
                for j, row in enumerate(new.tolist()):
                    i = int(chunk[j // samples])
                    text, done = self.vocab.decode(row[: int(limits[j])])
                    k = i * samples + j % samples
                    budget = budgets[i]
                    texts[k], finished[k], confidence[k] = text[:budget], done and len(text) <= budget, float(conf[j])
        return texts, finished, confidence


# --- checks before a run starts -------------------------------------------------------------------


def check(cfg: Config) -> dict[str, Any]:
    """Everything that can be checked before a run writes anything: the extra, the model and tokenizer
    (loaded without weights), the task's characters, the LoRA targets, and whether the members fit in
    memory. Returns what goes in the manifest (the resolved model and revision); raises HFError."""
    lc = cfg.learner
    task = cfg.task.build()
    model, tokenizer = build(cfg, task, "meta")
    Tokens(tokenizer, task.alphabet, lc)
    model = _adapt(model, lc)
    device = pick_device(cfg.device)
    dtype = _dtype(lc, device)
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    per_member = params * dtype.itemsize + trainable * (4 + 8 + (4 if cfg.train.ema else 0))
    members = cfg.committee.size  # worker processes or not, every member is on this device
    length = _longest_seed_example(task, cfg)
    batch = _activations(model.config, cfg.train.batch_size, length, lc.gradient_checkpointing, device)
    training_at_once = min(cfg.committee.workers, members)  # members of one worker train one after another
    need = per_member * members + batch * training_at_once
    free = _free_memory(device)
    if free is not None and need > free:
        raise HFError(f"{members} member(s) of {params / 1e6:.0f}M parameters need at least {need / 2**30:.1f} "
                      f"GiB on {device} for weights, gradients, AdamW state and the activations of a training "
                      f"batch (train.batch_size {cfg.train.batch_size}, {length} tokens at the base difficulties; "
                      f"harder rounds need more); {free / 2**30:.1f} GiB is free. Use LoRA (learner.lora_rank), "
                      f"a smaller batch, learner.gradient_checkpointing, fewer members (committee.size) or a "
                      f"smaller model")
    revision = getattr(model.config, "_commit_hash", None) or lc.revision
    return {"kind": "hf", "model": lc.model or f"llama from [model] shapes ({params} parameters)",
            "revision": revision, "init": lc.init, "parameters": params, "trainable": trainable}


def _longest_seed_example(task: Task, cfg: Config) -> int:
    """Characters of the longest seed example (BOS, prompt, answer, EOS): its tokens, at most."""
    samples = [task.sample_seed(d, range(16), 0) for d in task.base_difficulties(cfg.task.base)]
    return 2 + max(len(p) + len(t) for b in samples for p, t in zip(b.prompts, b.truths))


def _activations(config, batch: int, length: int, checkpointing: bool, device: torch.device) -> int:
    """Bytes a training step's activations take, roughly: about 34 values per hidden unit, layer and
    token (Korthikanti et al. 2022; SDPA keeps no attention matrix), one with gradient checkpointing;
    and the logits in fp32 three times (logits, softmax, gradient)."""
    width = 2 if device.type == "cuda" else 4  # bf16 autocast on CUDA
    per_token = config.num_hidden_layers * config.hidden_size * (1 if checkpointing else 34) * width
    return batch * length * (per_token + config.vocab_size * 12)


def _free_memory(device: torch.device) -> int | None:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        try:  # MemAvailable counts the page cache a model's files leave behind as free
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
    return None
