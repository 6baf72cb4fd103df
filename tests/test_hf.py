"""The hf learner on a tiny Llama this file builds and saves itself (no network: HF_HUB_OFFLINE=1):
loading through `from_pretrained`, generation against a plain forward pass, LoRA, checkpoints and
resume after kill -9, sampled votes, bad input, and a run that self-improves."""

import hashlib
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

if os.environ.get("CI"):
    import transformers  # noqa: F401  CI installs the hf extra: these tests must run there, never skip
else:
    pytest.importorskip("transformers", reason="the hf extra: pip install -e '.[hf]'")
os.environ["HF_HUB_OFFLINE"] = "1"  # noqa: E402  (before anything imports huggingface_hub's settings)

from selfimprove.committee import Member  # noqa: E402
from selfimprove.config import ConfigError, ModelConfig, dump_toml, load_config  # noqa: E402
from selfimprove.hf import HFError, HFLearner, char_llama, check  # noqa: E402
from selfimprove.loop import run_loop  # noqa: E402
from selfimprove.rundir import RunDir  # noqa: E402

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789+="  # copy's and the additions' characters


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A tiny Llama and its character tokenizer, saved as a Hub model would be."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    model, tokenizer = char_llama(ALPHABET, ModelConfig(n_layer=2, n_head=2, d_model=32, d_ff=64))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def hf_overrides(model_dir, *extra):
    return ["learner.kind=hf", f"learner.model={model_dir}", "device=cpu", *extra]


def learner(model_dir, tiny_overrides, *extra, seed=0):
    cfg = load_config("quick", [*tiny_overrides, *hf_overrides(model_dir, *extra)])
    return HFLearner.create(cfg, cfg.task.build(), seed)


def files_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# --- loading and generation ---------------------------------------------------------------------


def test_pretrained_weights_load_through_from_pretrained(model_dir, tiny_overrides):
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(model_dir)
    ours = learner(model_dir, tiny_overrides, seed=1).model  # not the seed the fixture was built with
    for (name, a), b in zip(saved.state_dict().items(), ours.state_dict().values()):
        assert torch.equal(a, b), name


def plain_answer(model, tokens, prompt: str, budget: int) -> tuple[str, float]:
    """Greedy decoding by full forward passes, one prompt alone: the reference for `generate`."""
    ids = tokens.prompt(prompt)
    out, least = [], 1.0
    for _ in range(budget + 1):
        with torch.no_grad():
            probs = model(input_ids=torch.tensor([ids + out])).logits[0, -1].softmax(-1)
        token = int(probs.argmax())
        least = min(least, float(probs[token]))
        out.append(token)
        if token == tokens.eos:
            break
    text, _ = tokens.decode(out)
    return text, least


def test_batched_left_padded_generation_equals_each_prompt_alone(model_dir, tiny_overrides):
    hf = learner(model_dir, tiny_overrides, "learner.init=scratch")  # fresh weights: answers of many lengths
    prompts = ["ab=", "abcdef=", "q=", "hello=", "xyzxyzxyz="]
    budgets = [2, 6, 1, 5, 3]  # the last one is cut before its answer could end
    texts, finished, confidence = hf.generate(prompts, budgets, batch_size=8)
    for p, b, text, done, conf in zip(prompts, budgets, texts, finished, confidence):
        expected, least = plain_answer(hf.model, hf.vocab, p, b)
        assert text == expected[:b]
        assert done == (len(expected) <= b and hf.generate([p], [b])[1][0])
        assert conf == pytest.approx(least, abs=1e-5)
    again = hf.generate(prompts, budgets, batch_size=2)  # other batch-mates, other padding: the same answers
    assert again[:2] == (texts, finished) and again[2] == pytest.approx(confidence, abs=1e-5)


def test_samples_are_drawn_per_prompt_reproducibly_and_scored_by_the_model(model_dir, tiny_overrides):
    hf = learner(model_dir, tiny_overrides, "learner.init=scratch")
    prompts = ["abc=", "hello="]
    texts, finished, confidence = hf.generate(prompts, [3, 5], samples=4, temperature=1.0, seed=7)
    assert len(texts) == 8 and len(set(texts[:4])) > 1  # prompt-major, and the samples differ
    assert (texts, finished, confidence) == hf.generate(prompts, [3, 5], samples=4, temperature=1.0, seed=7)
    assert texts != hf.generate(prompts, [3, 5], samples=4, temperature=1.0, seed=8)[0]
    plain = [j for j, t in enumerate(texts) if set(t) <= set(ALPHABET)]  # (not <pad> and the like)
    assert len(plain) >= 4
    for j in plain:  # confidence: the model's own probabilities of the tokens drawn
        text, conf = texts[j], confidence[j]
        ids = hf.vocab.prompt(prompts[j // 4])
        answer = hf.vocab.tokenizer.convert_tokens_to_ids(list(text)) + ([hf.vocab.eos] if finished[j] else [])
        with torch.no_grad():
            probs = hf.model(input_ids=torch.tensor([ids + answer])).logits[0].softmax(-1)
        chosen = [float(probs[len(ids) - 1 + t, tok]) for t, tok in enumerate(answer)]
        assert conf <= min(chosen, default=1.0) + 1e-5
    # a vanishing top-p leaves only the most likely token: greedy
    greedy = hf.generate(prompts, [3, 5])[0]
    assert hf.generate(prompts, [3, 5], samples=2, temperature=1.0, top_p=1e-6)[0] == [g for g in greedy
                                                                                          for _ in range(2)]


# --- LoRA and checkpoints -----------------------------------------------------------------------


def test_lora_trains_only_the_adapters_and_checkpoints_them_alone(model_dir, tiny_overrides, tmp_path):
    before = files_digest(model_dir)
    a = learner(model_dir, tiny_overrides, "learner.lora_rank=4", "learner.lora_targets=['q_proj', 'down_proj']",
                "train.ema=0.5")
    trainable = [n for n, p in a.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".")[-3] for n in trainable} == {"lora_A", "lora_B"}
    assert {n.split(".")[-4] for n in trainable} == {"q_proj", "down_proj"}
    frozen = {n: p.detach().clone() for n, p in a.model.named_parameters() if not p.requires_grad}
    task = load_config("quick", tiny_overrides).task.build()
    b = task.sample_seed((3,), range(64), 0)
    batches = iter([a.vocab.encode_examples(b.prompts, b.truths)[0]] * 4)
    a.train(batches, 2, 0, 1)
    assert all(torch.equal(p, frozen[n]) for n, p in a.model.named_parameters() if not p.requires_grad)
    files = a.save(tmp_path / "learner-0")
    assert [f.name for f in files] == ["learner-0.safetensors", "learner-0.ema.safetensors",
                                       "learner-0.optim.safetensors"]
    from safetensors.torch import load_file

    assert set(load_file(files[0])) == set(trainable)  # the adapters only: base weights are never written
    c = learner(model_dir, tiny_overrides, "learner.lora_rank=4", "learner.lora_targets=['q_proj', 'down_proj']",
                "train.ema=0.5", seed=1)
    c.load(tmp_path / "learner-0")
    prompts = task.sample((4,), range(10), 1).prompts
    assert c.generate(prompts, [4] * 10) == a.generate(prompts, [4] * 10)
    assert a.train(iter([batches_one := a.vocab.encode_examples(b.prompts, b.truths)[0]] * 2), 2, 0, 1) == \
        c.train(iter([batches_one] * 2), 2, 0, 1)  # the AdamW state came back too
    assert files_digest(model_dir) == before


def start(overrides, name):
    cfg = load_config("quick", [*overrides, f"name={name}"])
    return cfg, RunDir.create(Path(cfg.out_dir) / cfg.name, dump_toml(cfg), cfg.seed)


def without_seconds(metrics):
    return [{k: v for k, v in m.items() if k != "seconds"} for m in metrics]


@pytest.mark.learns
def test_resume_after_kill_9_in_the_middle_of_a_round_equals_an_uninterrupted_run(model_dir, tiny_overrides):
    overrides = [*tiny_overrides, *hf_overrides(model_dir, "learner.lora_rank=4", "train.ema=0.9",
                                                "committee.samples=2", "committee.temperature=1.0")]
    cfg, ref = start(overrides, "whole")
    reference = run_loop(cfg, ref)
    pid = os.fork()
    if pid == 0:  # the child kills itself when round 2 trains, after round 1 was committed
        try:
            original = HFLearner.train

            def train(self, *args, **kwargs):
                if len(RunDir(Path(cfg.out_dir) / "killed").committed()) == 2:
                    os.kill(os.getpid(), signal.SIGKILL)
                return original(self, *args, **kwargs)

            HFLearner.train = train
            c, run = start(overrides, "killed")
            run_loop(c, run)
        finally:
            os._exit(3)
    deadline = time.monotonic() + 120
    while not os.waitpid(pid, os.WNOHANG)[0]:
        assert time.monotonic() < deadline, "the child did not die"
        time.sleep(0.05)
    root = Path(cfg.out_dir) / "killed"
    run = RunDir.open(root)
    assert run.committed() == [0, 1]
    run.discard_uncommitted()
    resumed = run_loop(load_config(str(root / "config.toml")), run)
    assert without_seconds(resumed) == without_seconds(reference)


# --- the loop -----------------------------------------------------------------------------------


@pytest.mark.learns
def test_an_hf_llama_built_from_scratch_learns_and_labels_harder_problems(tiny_overrides):
    cfg, run = start([*tiny_overrides, "learner.kind=hf", "learner.init=scratch", "learner.rope=false",
                      "loop.rounds=1"], "scratch")
    history = run_loop(cfg, run)
    assert history[0]["audit"]["1"] == 1.0 and history[0]["frontier"] == 1  # it learned from seed data
    assert history[0]["audit"]["3"] > 0.2 and history[0]["audit"]["5"] < 0.2
    # one letter longer than it ever saw: some labels right, some wrong (the audit can tell them apart)
    assert 0 < history[1]["label_precision"] < 1 and 0 < history[1]["n_kept"] < history[1]["n_generated"]
    assert run.manifest()["rounds"]["0001"]["checkpoint"]


@pytest.mark.learns
def test_sampled_votes_record_every_answer_and_precision_recomputes(tiny_overrides):
    # a NoPE Llama of the fixture's shapes: it learns 1..3 letters and labels 4 letters partly right
    cfg, run = start([*tiny_overrides, "learner.kind=hf", "learner.init=scratch", "learner.rope=false",
                      "committee.size=2", "committee.samples=3", "committee.temperature=0.7", "committee.agree=0.5",
                      "loop.rounds=1", "loop.filters=['majority', 'length']"], "sampled")
    history = run_loop(cfg, run)
    assert 0 < history[1]["n_kept"] and 0 < history[1]["label_precision"] < 1  # right and wrong labels kept
    c = run.candidates(1).to_pydict()
    assert all(len(o) == 6 for o in c["outputs"])
    assert all(m == [0, 0, 0, 1, 1, 1] and s == [0, 1, 2, 0, 1, 2] for m, s in zip(c["member"], c["sample"]))
    kept = [lab == t for lab, t, k in zip(c["label"], c["truth"], c["kept"]) if k]
    assert history[1]["label_precision"] == (sum(kept) / len(kept) if kept else None)
    for outs, fins, share in zip(c["outputs"], c["finished"], c["vote_share"]):
        top = max(set(zip(outs, fins)), key=list(zip(outs, fins)).count)
        assert share == pytest.approx(list(zip(outs, fins)).count(top) / 6)


# --- presets and bad input ----------------------------------------------------------------------


def test_paper_pretrained_preset_validates_and_runs_a_round_on_the_fixture_model(model_dir, tmp_path):
    cfg = load_config("paper-pretrained-reverse-add")
    assert cfg.learner.kind == "hf" and cfg.learner.lora_rank == 64 and cfg.learner.lora_alpha == 128
    small = [f"learner.model={model_dir}", "learner.lora_rank=4", "device=cpu", f"out_dir={tmp_path}",
             "task.base=2", "train.steps=4", "train.round_steps=2", "train.batch_size=8", "loop.rounds=1",
             "loop.seed_problems=20", "loop.problems=20", "loop.probe_problems=10", "audit.problems=10",
             "committee.workers=1"]
    cfg = load_config("paper-pretrained-reverse-add", small)
    run = RunDir.create(Path(cfg.out_dir) / cfg.name, dump_toml(cfg), cfg.seed, learner=check(cfg))
    history = run_loop(cfg, run)
    assert [m["round"] for m in history] == [0, 1] and history[1]["n_generated"] > 0
    assert run.manifest()["learner"]["model"] == str(model_dir)


def test_hf_program_preset_runs_a_round_through_the_sandbox(tmp_path, program_sandbox):
    """The program task's Hugging Face preset on a tiny Llama with a character tokenizer for every character
    a program may hold: the sampled programs are run, voted on by execution and verified in the sandbox."""
    from selfimprove.tasks import get_task

    folder = tmp_path / "char-llama"
    torch.manual_seed(0)
    model, tokenizer = char_llama(get_task("program").alphabet, ModelConfig(n_layer=2, n_head=2, d_model=32, d_ff=64))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    cfg = load_config("hf-program")
    assert cfg.learner.lora_rank == 16 and cfg.committee.samples == 3 and "verify" in cfg.loop.filters
    small = [f"learner.model={folder}", "learner.lora_rank=4", "device=cpu", f"out_dir={tmp_path}", "task.base=1",
             "train.steps=4", "train.round_steps=2", "train.batch_size=8", "loop.rounds=1", "loop.seed_problems=20",
             "loop.problems=20", "audit.problems=5", "audit.below=1", "audit.above=1"]
    cfg = load_config("hf-program", small)
    run = RunDir.create(Path(cfg.out_dir) / cfg.name, dump_toml(cfg), cfg.seed, learner=check(cfg))
    history = run_loop(cfg, run)
    assert [m["round"] for m in history] == [0, 1] and history[1]["n_generated"] == 20
    c = run.candidates(1).to_pydict()
    assert all(len(outs) == 3 for outs in c["outputs"]) and not any(c["kept"])  # untrained: nothing verifies
    assert set(history[1]["drop_reasons"]) <= {"majority: too few agree", "vote: tie", "verify: failed"} | {
        f"sandbox: {s}" for s in ("error", "timeout", "memory", "output", "crash")}


def cli(*args, cwd):
    import subprocess

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "selfimprove", *args], capture_output=True, text=True, cwd=cwd,
                          env=env)


@pytest.mark.parametrize("setting, message", [
    ("learner.model=./no/such/folder", "no such folder"),
    ("learner.model=nobody-xyz/no-such-model", "cannot load its tokenizer from the Hugging Face Hub"),
    ("learner.lora_targets=['q_proj', 'c_attn']", "the model has no ['c_attn']; its layers with weight matrices are"),
], ids=["missing folder", "offline hub id", "lora targets"])
def test_bad_models_fail_before_anything_is_written(model_dir, tmp_path, setting, message):
    sets = ["--set", f"learner.model={model_dir}", "--set", "learner.kind=hf", "--set", "learner.lora_rank=4",
            "--set", f"out_dir={tmp_path / 'runs'}", "--set", setting]
    result = cli("run", "quick", *sets, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in " ".join(result.stderr.split()), result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_tokenizer_without_a_task_character_is_refused(model_dir, tmp_path):
    from transformers import AutoTokenizer

    from selfimprove.hf import char_tokenizer

    folder = tmp_path / "no-digits"
    model, _ = char_llama("abc=", ModelConfig(n_layer=1, n_head=1, d_model=8, d_ff=8))
    model.save_pretrained(folder)
    char_tokenizer("abc=").save_pretrained(folder)
    assert AutoTokenizer.from_pretrained(folder).encode("7", add_special_tokens=False) == [1]  # <pad>, not "7"
    cfg = load_config("quick", hf_overrides(folder, "task.name=reverse_add", "task.base=3"))
    with pytest.raises(HFError, match=r"no single token for \['\+', '0', '1'.*learner.tokens = 'model'"):
        check(cfg)


def test_too_large_for_memory_is_said_before_training(model_dir, monkeypatch):
    import selfimprove.hf as hf

    monkeypatch.setattr(hf, "_free_memory", lambda device: 1000)
    with pytest.raises(HFError, match=r"need at least .* GiB on cpu .* 0.0 GiB is free"):
        check(load_config("quick", hf_overrides(model_dir, "committee.size=2")))
    # the training batch counts: one that fits at batch 8 does not at batch 50,000
    small = load_config("quick", hf_overrides(model_dir, "train.batch_size=8"))
    monkeypatch.setattr(hf, "_free_memory", lambda device: None)  # unknown: nothing to check against
    info = check(small)
    weights = info["parameters"] * 4 + info["trainable"] * 12
    monkeypatch.setattr(hf, "_free_memory", lambda device: weights * 20)
    check(small)
    with pytest.raises(HFError, match=r"train.batch_size 50000, 15 tokens at the base difficulties"):
        check(load_config("quick", hf_overrides(model_dir, "train.batch_size=50000")))


def test_a_missing_extra_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(HFError, match=r"pip install -e '\.\[hf\]'"):
        check(load_config("hf-copy"))
    member_cfg = load_config("hf-copy", [f"out_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="hf extra"):
        Member(member_cfg, 0)
    from typer.testing import CliRunner

    from selfimprove.cli import app

    for command in (["run", "hf-copy"], ["sweep", "hf-copy", "--size", "1"]):
        result = CliRunner().invoke(app, [*command, "--set", f"out_dir={tmp_path / 'runs'}"])
        assert result.exit_code == 2 and "needs the hf extra: pip install -e '.[hf]'" in " ".join(result.output.split())
        assert not (tmp_path / "runs").exists()


def test_config_refuses_what_cannot_work():
    with pytest.raises(ConfigError, match="needs learner.model"):
        load_config("quick", ["learner.kind=hf"])
    with pytest.raises(ConfigError, match="rope = false .* needs learner.init = 'scratch'"):
        load_config("quick", ["learner.kind=hf", "learner.model=x/y", "learner.rope=false"])
    with pytest.raises(ConfigError, match="identical greedy answers"):
        load_config("quick", ["committee.samples=3"])
    with pytest.raises(ConfigError, match=r"learner.model, learner.lora_rank set Hugging Face settings, but "
                                          r"learner.kind is 'tiny'"):
        load_config("quick", ["learner.model=meta-llama/Llama-3.2-1B", "learner.lora_rank=64"])
    with pytest.raises(ConfigError, match="learner.lora_alpha shape LoRA adapters, but learner.lora_rank = 0"):
        load_config("quick", ["learner.kind=hf", "learner.init=scratch", "learner.lora_alpha=32"])
    with pytest.raises(ConfigError, match="committee.top_p = 0.5 shapes sampling"):
        load_config("quick", ["committee.top_p=0.5"])


def test_model_tokens_must_give_the_tasks_text_back_and_a_chat_template_must_exist(model_dir):
    from tokenizers import decoders
    from transformers import AutoTokenizer

    from selfimprove.config import LearnerConfig
    from selfimprove.hf import Tokens

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    own = Tokens(tokenizer, "abc=", LearnerConfig(kind="hf", model="m", tokens="model"))
    assert own.decode(tokenizer.encode("cab") + [own.eos, 5]) == ("cab", True)
    tokenizer.backend_tokenizer.decoder = decoders.WordPiece()  # joins tokens with spaces: "c a b"
    with pytest.raises(HFError, match="does not give the task's characters back"):
        Tokens(tokenizer, "abc=", LearnerConfig(kind="hf", model="m", tokens="model"))
    with pytest.raises(HFError, match="has no chat template"):
        Tokens(AutoTokenizer.from_pretrained(model_dir), "abc=",
               LearnerConfig(kind="hf", model="m", tokens="model", chat_template=True))


def test_selfimprove_init_for_models_built_from_scratch(model_dir, tiny_overrides):
    hf = learner(model_dir, tiny_overrides, "learner.init=scratch")
    embed = hf.model.get_input_embeddings().weight.detach()
    assert float(embed.std()) == pytest.approx(1.0, rel=0.1)  # not Hugging Face's 0.02
    q = hf.model.model.layers[0].self_attn.q_proj.weight.detach()
    o = hf.model.model.layers[0].self_attn.o_proj.weight.detach()
    assert float(q.std()) == pytest.approx(q.shape[1] ** -0.5, rel=0.15)
    assert float(o.std()) == pytest.approx(o.shape[1] ** -0.5 / np.sqrt(2 * 2), rel=0.15)


def test_model_tokens_and_a_chat_template_format_the_prompt(model_dir, tmp_path, tiny_overrides):
    from transformers import AutoTokenizer

    from selfimprove.config import LearnerConfig
    from selfimprove.hf import Tokens

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    chars = Tokens(tokenizer, "abc=", LearnerConfig(kind="hf", model="m"))
    own = Tokens(tokenizer, "abc=", LearnerConfig(kind="hf", model="m", tokens="model"))
    assert own.prompt("abc=") == chars.prompt("abc=") == [tokenizer.bos_token_id] + tokenizer.encode("abc=")
    (tokens, starts), = own.encode_examples(["ab=", "ca="], ["ab", "ca"])
    assert tokens.tolist()[0] == own.prompt("ab=") + tokenizer.encode("ab") + [own.eos] and starts.tolist() == [4, 4]
    tokenizer.chat_template = ("{% for m in messages %}x{{ m['content'] }}{% endfor %}"
                               "{% if add_generation_prompt %}y{% endif %}")
    chat = Tokens(tokenizer, "abc=", LearnerConfig(kind="hf", model="m", tokens="model", chat_template=True))
    assert chat.prompt("ab=") == tokenizer.encode("xab=y")  # the template, and no BOS of ours before it
    assert len(set(chat.prompt("ab="))) == 5  # five characters the tokenizer knows, not unknowns


@pytest.mark.parametrize("lora", [[], ["learner.lora_rank=4"]], ids=["full", "lora"])
def test_gradient_checkpointing_trains_alike(model_dir, tiny_overrides, lora):
    task = load_config("quick", tiny_overrides).task.build()
    b = task.sample_seed((3,), range(32), 0)
    runs = []
    for gc in (False, True):
        hf = learner(model_dir, tiny_overrides, *lora, f"learner.gradient_checkpointing={str(gc).lower()}")
        assert getattr(hf.model, "is_activation_checkpointing", None) == gc
        batch = hf.vocab.encode_examples(b.prompts, b.truths)[0]
        runs.append(hf.train(iter([batch] * 3), 3, 0, 1))
    assert runs[0] == pytest.approx(runs[1], rel=1e-5) and runs[0][0] != runs[0][-1]


@pytest.mark.learns
def test_eval_scores_an_hf_run_and_a_missing_extra_exits_2(model_dir, tiny_overrides, monkeypatch):
    import json

    from typer.testing import CliRunner

    from selfimprove.cli import app

    cfg, run = start([*tiny_overrides, *hf_overrides(model_dir), "loop.rounds=0"], "evaluated")
    history = run_loop(cfg, run)
    runner = CliRunner()
    # on the audit's own problems (its stream, round 0) eval gives the audit's numbers
    from selfimprove.tasks import stream_seed

    monkeypatch.setattr("selfimprove.evaluate.stream_seed",
                        lambda seed, *parts: stream_seed(seed, "audit", 0) if parts == ("eval", 0) else
                        stream_seed(seed, *parts))
    result = runner.invoke(app, ["eval", str(run.root), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["learner"] == "hf" and scores["vote"] == history[0]["audit"]
    monkeypatch.setitem(sys.modules, "transformers", None)
    result = runner.invoke(app, ["eval", str(run.root)])
    assert result.exit_code == 2 and "pip install -e '.[hf]'" in " ".join(result.output.split())


def test_the_resolved_revision_is_pinned_in_the_runs_config(model_dir):
    from selfimprove.cli import _pinned

    cfg = load_config("quick", hf_overrides(model_dir))
    pinned = _pinned(cfg, {"kind": "hf", "revision": "0123abcd"})  # what check() resolved from the Hub
    assert pinned.learner.revision == "0123abcd" and cfg.learner.revision is None
    assert _pinned(cfg, {"kind": "hf", "revision": None}) is cfg
    assert 'revision = "0123abcd"' in dump_toml(pinned)


def test_a_sweep_is_checked_at_its_largest_committee(model_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import selfimprove.hf as hf
    from selfimprove.cli import app

    one = check(load_config("quick", hf_overrides(model_dir)))
    per_member = one["parameters"] * 4 + one["trainable"] * 12
    monkeypatch.setattr(hf, "_free_memory", lambda device: int(per_member * 2.5))  # room for two members
    sets = [a for kv in [*hf_overrides(model_dir), f"out_dir={tmp_path / 'runs'}", "loop.filters=['majority']"]
            for a in ("--set", kv)]
    result = CliRunner().invoke(app, ["sweep", "quick", "--size", "1", "--size", "3", *sets])
    assert result.exit_code == 2 and "3 member(s)" in result.output and not (tmp_path / "runs").exists()
