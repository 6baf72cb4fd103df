"""One typed config tree, loaded from TOML (a file or a shipped preset) plus `--set key=value`.

    cfg = load_config("quick", ["loop.rounds=3", "train.lr=5e-4"])
    print(dump_toml(cfg))

Every mistake raises ConfigError with a message naming the key, the value and what is allowed.
"""

from __future__ import annotations

import copy
import tomllib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

if TYPE_CHECKING:
    from selfimprove.tasks import Task


class ConfigError(ValueError):
    """A config that cannot be run; the message says what is wrong and how to fix it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Strict):
    n_layer: int = Field(4, ge=1, le=64, description="transformer blocks")
    n_head: int = Field(4, ge=1, le=64, description="attention heads per block")
    d_model: int = Field(128, ge=8, le=8192, description="residual stream width")
    d_ff: int = Field(512, ge=8, le=32768, description="SwiGLU hidden width")

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_head ({self.n_head})")
        return self


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class LearnerConfig(_Strict):
    kind: Literal["tiny", "hf"] = Field(
        "tiny", description="tiny: selfimprove's own NoPE transformer ([model] shapes, the task's characters); "
        "hf: a Hugging Face causal LM (pip install -e '.[hf]')")
    model: str | None = Field(None, min_length=1, description="hf: a Hub id or a local folder with the model and its "
                              "tokenizer; unset with init = 'scratch': a Llama of [model]'s shapes on the task's "
                              "characters")
    revision: str | None = Field(None, min_length=1, description="hf: the Hub revision (branch, tag or commit)")
    init: Literal["pretrained", "scratch"] = Field(
        "pretrained", description="hf: pretrained weights, or the model's architecture with fresh weights "
        "(selfimprove's initialisation)")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="hf: weight dtype; auto is bfloat16 for a LoRA model's frozen base on CUDA, float32 "
        "otherwise (weights that train stay float32, under bfloat16 autocast on CUDA)")
    tokens: Literal["chars", "model"] = Field(
        "chars", description="hf: chars maps every character to the model's token for that one character (digits "
        "one token each, as the paper's pretrained runs); model uses the model's own tokenizer")
    chat_template: bool = Field(False, description="hf, tokens = 'model': wrap each prompt in the tokenizer's chat "
                                "template (off for base models)")
    lora_rank: int = Field(0, ge=0, le=4096, description="hf: LoRA rank; 0 fine-tunes every weight")
    lora_alpha: float = Field(16.0, gt=0, description="hf: LoRA alpha (scale alpha / rank)")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="hf: LoRA dropout")
    lora_targets: list[str] = Field(LORA_TARGETS, min_length=1, description="hf: module names LoRA adapts")
    rope: bool = Field(True, description="hf, init = 'scratch': rotary position embeddings; false scales them to "
                       "nothing (every rotation below 1e-5 rad), a NoPE model like the tiny one")
    gradient_checkpointing: bool = Field(False, description="hf: recompute activations in the backward pass "
                                         "(less memory, more time)")

    @model_validator(mode="after")
    def _hf_settings_need_hf(self):
        ignored = [k for k, f in type(self).model_fields.items() if k != "kind" and getattr(self, k) != f.default]
        if self.kind == "tiny" and ignored:
            raise ValueError(f"learner.{', learner.'.join(ignored)} set Hugging Face settings, but learner.kind is "
                             f"'tiny': set learner.kind = 'hf' (or remove them)")
        lora = [k for k in ("lora_alpha", "lora_dropout", "lora_targets")
                if getattr(self, k) != type(self).model_fields[k].default]
        if self.lora_rank == 0 and lora:
            raise ValueError(f"learner.{', learner.'.join(lora)} shape LoRA adapters, but learner.lora_rank = 0 "
                             f"fine-tunes every weight: set learner.lora_rank (for example 16) or remove them")
        if self.kind == "hf" and self.model is None and self.init == "pretrained":
            raise ValueError("learner.kind = 'hf' needs learner.model (a Hub id or a local folder), or "
                             "learner.init = 'scratch' for a Llama of [model]'s shapes")
        if not self.rope and self.init != "scratch":
            raise ValueError("learner.rope = false changes a model's architecture: it needs learner.init = 'scratch' "
                             "(a pretrained model keeps the positions it was trained with)")
        if self.chat_template and self.tokens != "model":
            raise ValueError("learner.chat_template needs learner.tokens = 'model' (a chat template is text for "
                             "the model's own tokenizer)")
        return self


class TrainConfig(_Strict):
    batch_size: int = Field(256, ge=1, description="examples per optimizer step")
    lr: float = Field(1e-3, gt=0, le=1, description="peak learning rate")
    beta2: float = Field(0.98, gt=0, lt=1, description="AdamW beta2")
    eps: float = Field(1e-12, gt=0, description="AdamW epsilon")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (matrices only)")
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 turns clipping off")
    steps: int = Field(2000, ge=1, description="round-0 steps on seed data")
    round_steps: int = Field(400, ge=1, description="steps of every later round (lr jumps back to peak)")
    round_lr: float | None = Field(None, gt=0, le=1, description="peak learning rate of every later round "
                                   "(default: lr); a lower one keeps what round 0 learned")
    warmup: float = Field(0.1, ge=0, lt=1, description="share of round-0 steps spent warming up")
    decay: float = Field(0.2, gt=0, le=1, description="share of round-0 steps spent decaying to 1% lr")
    round_decay: float = Field(0.5, gt=0, le=1, description="share of every later round's steps spent decaying")
    anchor: float | None = Field(None, ge=0, le=1, description="share of every round's training steps drawn from "
                                 "the true-labelled seed data (round 0); the rest from the newest round and earlier "
                                 "self-labelled data; unset: the mixture's own share (seed levels among the earlier "
                                 "levels); 0 with loop.data = 'replace' is the unanchored loop")
    ema: float = Field(0.0, ge=0, lt=1, description="decay of an exponential moving average of the weights, "
                       "updated every step; when > 0 the average labels and is audited (it extrapolates more "
                       "steadily than the raw weights); 0 turns it off")


class TaskConfig(_Strict):
    name: str = Field("reverse_add", description="registered task; `selfimprove tasks` lists them")
    base: int = Field(7, ge=1, le=1000, description="seed data covers difficulties 1..base on every axis")
    step: int = Field(1, ge=1, le=100, description="how much harder each self-improvement round gets")
    nodes: int | None = Field(None, ge=3, le=99, description="maze_hops only: nodes of every tree (default: the "
                              "paper's 30); prompts have 9 characters a node, so fewer nodes train faster")
    seed_mix: Literal["task", "uniform"] = Field(
        "task", description="share of round-0 steps per base difficulty: the task's seed distribution (for "
        "addition, as the paper's independently drawn operand lengths) or the same for every difficulty")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        from selfimprove.tasks import TASKS

        if name not in TASKS:
            raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
        return name

    def build(self) -> Task:
        """The registered task, with this config's settings applied (task.nodes replaces a task's fixed
        tree size; only tasks that have one, maze_hops, take it)."""
        from selfimprove.tasks import get_task

        task = get_task(self.name)
        if self.nodes is None:
            return task
        if getattr(task, "nodes", None) is None:
            raise ValueError(f"task.nodes sets the tree size of maze_hops; task {self.name!r} has no such "
                             f"setting: remove task.nodes")
        task = copy.copy(task)
        task.nodes = self.nodes
        return task


class LoopConfig(_Strict):
    rounds: int = Field(8, ge=0, le=10_000, description="self-improvement rounds after round 0")
    target: int | None = Field(None, ge=1, description="stop once a round has trained on this difficulty")
    seed_problems: int = Field(20_000, ge=1, description="seed examples (with truth) per base difficulty")
    problems: int = Field(10_000, ge=1, description="new self-labelled problems per difficulty per round")
    filters: list[Literal["majority", "length", "verify", "confidence", "invariant", "none"]] = Field(
        ["majority", "length"], description="truth-free filters applied in order: majority (committee "
        "vote, see committee.agree), length, verify (the task's verifier), confidence, invariant (the committee "
        "must give the label again to the task's invariant prompt, b+a for a+b; one more labelling pass), none")
    min_confidence: float = Field(0.0, ge=0, le=1, description="the confidence filter keeps labels whose "
                                  "least likely token had at least this probability")
    data: Literal["accumulate", "replace"] = Field(
        "accumulate", description="accumulate: half of training from the newest round, half from all "
        "earlier difficulties (the paper); replace: newest round only (collapse studies)")
    label_batch: int = Field(1024, ge=1, description="prompts per generation batch")
    planner: Literal["fixed", "accelerated", "controller"] = Field(
        "fixed", description="fixed: one step per round; accelerated: also take every following step on "
        "which the committee is self-consistent (share of probe problems kept unanimously) >= tau; controller: "
        "also every following step on which at least jump_at of the probes pass the strict filters (confidence "
        "at strict_confidence, the task's invariant), with which it labels every new step (a repeat after "
        "advance_at uses the configured filters); after a held or rolled-back round one step and more problems")
    advance_at: float = Field(0.0, ge=0, le=1, description="take the next step only after a round that kept at "
                              "least this share of its problems; otherwise the next round draws fresh problems at "
                              "the same difficulties, which the members have since trained on (0: always advance)")
    tau: float = Field(0.99, gt=0, le=1, description="self-consistency the accelerated planner asks for")
    jump_at: float = Field(0.25, gt=0, le=1, description="controller: take a further step when at least this "
                           "share of its probe problems passes the strict filters with every answer agreeing; it "
                           "then draws loop.problems / that share problems there (up to max_problems)")
    strict_confidence: float = Field(0.9, ge=0, le=1, description="controller: the least confidence of a label "
                                     "(its strict filters add the confidence filter at this threshold)")
    max_problems: int | None = Field(None, ge=1, description="controller: most problems per difficulty on a retry "
                                     "(each failed attempt doubles loop.problems up to this; default 4 x problems)")
    probe_problems: int = Field(500, ge=1, description="problems per difficulty the accelerated planner probes")
    max_jump: int = Field(8, ge=1, description="most steps the accelerated planner takes in one round")


class CommitteeConfig(_Strict):
    size: int = Field(1, ge=1, le=64, description="K learners, seeds seed, seed+1000, ...; they vote")
    agree: float = Field(0.8, gt=0, le=1, description="the majority filter keeps a label that at least this "
                         "share of members gave (0.8: 4 of 5, the paper; 1.0: unanimous, its strict mode)")
    problems: Literal["shared", "per_member"] = Field(
        "shared", description="shared: all members label the same problems; per_member: each member "
        "draws its own loop.problems and all members vote on all of them")
    workers: int = Field(1, ge=1, le=64, description="worker processes for the members; 1 runs them one "
                         "after another in this process (best on a small CPU)")
    samples: int = Field(1, ge=1, le=256, description="answers per member per problem; the vote counts all "
                         "size x samples answers (1: the greedy answer)")
    temperature: float = Field(0.0, ge=0, le=10, description="sampling temperature of the labelling answers; 0 is "
                               "greedy (needs samples = 1); the audit is always greedy")
    top_p: float = Field(1.0, gt=0, le=1, description="sample from the smallest set of tokens whose probability "
                         "reaches top_p")

    @model_validator(mode="after")
    def _samples_need_temperature(self):
        if self.top_p < 1 and self.temperature == 0:
            raise ValueError(f"committee.top_p = {self.top_p} shapes sampling, but committee.temperature = 0 is "
                             f"greedy: set committee.temperature (for example 0.7) or remove top_p")
        if self.samples > 1 and self.temperature == 0:
            raise ValueError(f"committee.samples = {self.samples} with committee.temperature = 0 gives {self.samples} "
                             f"identical greedy answers: set committee.temperature (for example 0.7)")
        return self


class GuardConfig(_Strict):
    mode: Literal["signals", "oracle", "off"] = Field(
        "signals", description="signals: decide every round from label-free signals whether to commit it, hold "
        "its labels (no training) or roll its training back; oracle: decide from the audit's label precision "
        "(reads truth: an upper bound for comparison only); off: commit every round (the paper's loop)")
    attempts: int = Field(3, ge=1, le=100, description="failed attempts (held or rolled back) in a row at which the "
                          "guard stops the run with a verdict")
    min_support: float = Field(0.9, ge=0, le=1, description="hold when a smaller share of the kept labels is an "
                               "answer some member gave (labels changed after the vote)")
    min_invariant: float = Field(0.9, ge=0, le=1, description="hold when a smaller share of the checked labels "
                                 "survives the task's invariant (a+b and b+a answered alike); roll back when the "
                                 "trained model's answers survive it less")
    max_drift: float = Field(0.1, ge=0, le=1, description="roll back when training changed more than this share of "
                             "the committee's answers on already-trained difficulties")
    min_precision: float = Field(0.9, ge=0, le=1, description="oracle mode: hold labels below this precision")
    probe_problems: int = Field(200, ge=1, le=100_000, description="problems per check (invariant, drift)")
    drift_levels: int = Field(2, ge=1, le=100, description="the hardest this many trained difficulties make the "
                              "drift probe set")


class NoiseConfig(_Strict):
    round: int | None = Field(None, ge=1, description="corrupt labels of this round (none by default)")
    share: float = Field(0.1, ge=0, le=1, description="share of that round's kept labels to corrupt")
    kind: Literal["random", "drop", "perturb"] = Field(
        "random", description="random: every digit (letter) replaced at random; drop: one deleted; "
        "perturb: one digit changed")


class AuditConfig(_Strict):
    problems: int = Field(500, ge=1, description="held-out problems per audited difficulty")
    below: int = Field(2, ge=0, description="audit this many difficulties below the hardest trained one")
    above: int = Field(4, ge=0, description="... and this many above it")
    base: int = Field(100, ge=0, description="held-out problems per base difficulty outside that window, so "
                      "forgetting shows after the window has moved on (0: none)")


class Config(_Strict):
    name: str = Field("quick", min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                      description="run name; the run lives in <out_dir>/<name>")
    out_dir: str = Field("runs", description="folder that holds runs")
    seed: int = Field(0, ge=0, description="seeds model init, data streams and batch order")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$", description="auto, cpu, cuda or mps")
    task: TaskConfig = TaskConfig()
    learner: LearnerConfig = LearnerConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    loop: LoopConfig = LoopConfig()
    committee: CommitteeConfig = CommitteeConfig()
    guard: GuardConfig = GuardConfig()
    noise: NoiseConfig = NoiseConfig()
    audit: AuditConfig = AuditConfig()
    tracking: Literal["none", "tensorboard"] = Field(
        "none", description="also write per-round metrics as TensorBoard event files under <run>/tracking")

    @model_validator(mode="after")
    def _task_can_verify(self):
        from selfimprove.tasks import Task

        task = self.task.build()
        if "verify" in self.loop.filters and type(task).verify is Task.verify:
            raise ValueError(f"loop.filters has 'verify' but task {self.task.name!r} has no verifier; "
                             f"remove it (tasks with a verifier: the maze tasks)")
        if "invariant" in self.loop.filters and not task.has_invariant():
            raise ValueError(f"loop.filters has 'invariant' but task {self.task.name!r} declares no invariant; "
                             f"remove it (tasks with one: reverse_add, forward_add)")
        try:
            base = task.base_difficulties(self.task.base)
        except ValueError as e:
            raise ValueError(f"task.base = {self.task.base}: {e}") from None
        if not all(map(task.drawable, base)):
            raise ValueError(f"task.base = {self.task.base} asks for problems task {task.name!r} cannot draw")
        if (self.loop.planner == "accelerated" and self.committee.size * self.committee.samples == 1
                and not {"verify", "confidence"} & set(self.loop.filters)):
            raise ValueError("loop.planner = 'accelerated' measures self-consistency across committee members: "
                             "set committee.size > 1 or committee.samples > 1 (or add the 'verify' or "
                             "'confidence' filter)")
        if self.loop.max_problems is not None and self.loop.max_problems < self.loop.problems:
            raise ValueError(f"loop.max_problems = {self.loop.max_problems} is below loop.problems = "
                             f"{self.loop.problems}: a retry draws at least as many problems; raise it or remove it")
        if self.noise.round is not None and self.noise.round > self.loop.rounds:
            raise ValueError(f"noise.round = {self.noise.round} is after the last round ({self.loop.rounds})")
        return self


# --- loading --------------------------------------------------------------------------------------


def presets() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in resources.files("selfimprove.presets").iterdir()
                  if p.name.endswith(".toml"))


def _read_toml(source: str) -> dict[str, Any]:
    if source in presets():
        text = resources.files("selfimprove.presets").joinpath(f"{source}.toml").read_text()
    elif source.endswith(".toml") or "/" in source or Path(source).is_file():
        if not Path(source).is_file():
            raise ConfigError(f"config file {source} does not exist; pass a TOML file or one of the "
                              f"presets: {', '.join(presets())}")
        text = Path(source).read_text()
    else:
        raise ConfigError(f"{source!r} is neither a TOML file nor a preset; presets: {', '.join(presets())}")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source} is not valid TOML: {e}") from None


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word such as `task.name=copy`


def apply_override(data: dict[str, Any], assignment: str) -> None:
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set takes key=value (for example train.lr=5e-4), got {assignment!r}")
    *parents, leaf = key.strip().split(".")
    node, schema = data, Config
    for part in parents:
        field = schema.model_fields.get(part)
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            raise ConfigError(f"unknown config section {key!r}; sections: {', '.join(_sections())}")
        schema = field.annotation
        node = node.setdefault(part, {})
    if leaf not in schema.model_fields:
        allowed = ", ".join(".".join([*parents, k]) for k in schema.model_fields)
        raise ConfigError(f"unknown config key {key!r}; allowed here: {allowed}")
    node[leaf] = _parse_value(value.strip())


def _sections() -> list[str]:
    return [k for k, f in Config.model_fields.items()
            if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)]


def validate(data: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "config"
            if err["type"] == "extra_forbidden":
                lines.append(f"unknown config key {key!r} (remove it, or check its spelling)")
            else:
                value = f" = {err['input']!r}" if not isinstance(err["input"], dict) else ""
                lines.append(f"{key}{value}: {err['msg']}")
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines)) from None


def load_config(source: str | None = None, overrides: list[str] | None = None) -> Config:
    """Preset or TOML file (default: the `quick` preset), then `key=value` overrides, validated."""
    data = _read_toml(source or "quick")
    for assignment in overrides or []:
        apply_override(data, assignment)
    return validate(data)


def dump_toml(cfg: Config) -> str:
    return tomli_w.dumps(cfg.model_dump(exclude_none=True))
