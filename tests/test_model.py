import torch

from selfimprove.model import GPT, GPTConfig, pick


def uncached_greedy(model, prompts, max_new, eos_id):
    seq = prompts.clone()
    out = torch.full((prompts.shape[0], max_new), eos_id, dtype=torch.long)
    finished = torch.zeros(prompts.shape[0], dtype=torch.bool)
    for t in range(max_new):
        token = model(seq)[:, -1].argmax(-1)
        token = token.masked_fill(finished, eos_id)
        out[:, t] = token
        finished |= token == eos_id
        seq = torch.cat([seq, token[:, None]], dim=1)
    return out


def spy_on_compaction(monkeypatch) -> list[tuple[int, int]]:
    """Record (rows kept, batch rows) of every compaction GPT.generate does."""
    calls, compact = [], GPT._compact

    def spy(keep, *args):
        calls.append((int(keep.sum()), keep.numel()))
        return compact(keep, *args)

    monkeypatch.setattr(GPT, "_compact", staticmethod(spy))
    return calls


def eos_biased_model() -> GPT:
    torch.manual_seed(4)
    model = GPT(GPTConfig(vocab_size=7, n_layer=2, n_head=2, d_model=32, d_ff=48)).eval()
    # Train-free weights put EOS (id 0) in some rows and not others: bias the EOS logit so rows end
    # at different steps (with this seed and 64 prompts drawn next: at every step from 0 to 10, 17 rows
    # never) and the batch gets compacted three times.
    with torch.no_grad():
        model.head.weight[0] += 0.1 * torch.randn(32)
    return model


def test_cached_generation_equals_step_by_step_argmax(monkeypatch):
    compactions = spy_on_compaction(monkeypatch)
    model = eos_biased_model()
    prompts = torch.randint(1, 7, (64, 9))
    cached, confidence = model.generate(prompts, max_new_tokens=12, eos_id=0)
    reference = uncached_greedy(model, prompts, 12, eos_id=0)
    assert torch.equal(cached, reference)
    ends = (cached == 0).float().argmax(1)
    assert len(set(ends.tolist())) > 5, "test must cover rows ending at different steps"
    # The batch shrank more than once, and rows decoded after a compaction still match the reference.
    assert len(compactions) >= 2 and all(kept < rows for kept, rows in compactions)
    # confidence: the smallest probability among the tokens each row chose, up to and including EOS
    seq = torch.cat([prompts, reference], dim=1)
    probs = model(seq[:, :-1]).softmax(-1)[:, prompts.shape[1] - 1:].gather(-1, reference[..., None])[..., 0]
    alive = torch.arange(12)[None, :] <= torch.where((reference == 0).any(1), ends, 11)[:, None]
    assert torch.allclose(confidence, probs.masked_fill(~alive, 1.0).min(1).values, atol=1e-5)


def test_limits_stop_each_row_after_its_own_number_of_tokens(monkeypatch):
    compactions = spy_on_compaction(monkeypatch)
    model = eos_biased_model()
    prompts = torch.randint(1, 7, (64, 9))
    limits = torch.arange(64) % 13  # 0..12 new tokens
    cut, confidence = model.generate(prompts, max_new_tokens=12, eos_id=0, limits=limits)
    assert len(compactions) >= 2
    full, full_confidence = model.generate(prompts, max_new_tokens=12, eos_id=0)
    for row, limit in enumerate(limits.tolist()):
        assert torch.equal(cut[row, :limit], full[row, :limit]) and (cut[row, limit:] == 0).all()
        # confidence as if the row were generated alone with its limit as max_new_tokens
        _, alone = model.generate(prompts[row : row + 1], max_new_tokens=max(limit, 1), eos_id=0)
        assert torch.allclose(confidence[row], alone[0] if limit else torch.tensor(1.0), atol=1e-5)
    assert not torch.allclose(confidence, full_confidence), "limits must cut some rows before their end"


def test_generation_after_eos_is_eos_only():
    torch.manual_seed(1)
    model = GPT(GPTConfig(vocab_size=5, n_layer=1, n_head=1, d_model=16, d_ff=16)).eval()
    out, _ = model.generate(torch.randint(1, 5, (32, 4)), max_new_tokens=10, eos_id=0)
    for row in out:
        hits = (row == 0).nonzero()
        if len(hits):
            assert (row[hits[0, 0]:] == 0).all()


def test_no_positional_encoding():
    """NoPE: permuting earlier tokens changes nothing but through causal attention; a model whose
    first tokens are equal gives equal logits at those positions regardless of index."""
    model = GPT(GPTConfig(vocab_size=5, n_layer=2, n_head=2, d_model=16, d_ff=16))
    names = [n for n, _ in model.named_parameters()]
    assert not any("pos" in n or "wpe" in n for n in names)
    x = torch.full((1, 6), 3)
    logits = model(x)
    assert torch.allclose(logits[0, 0], logits[0, 5], atol=1e-5)  # identical prefix tokens, no position signal


def test_no_position_sees_a_later_token_at_any_length():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=5, n_layer=2, n_head=2, d_model=16, d_ff=16)).eval()
    x = torch.randint(1, 5, (4, 6))
    for length in range(2, 7):
        other = x.clone()
        other[:, length - 1] = (other[:, length - 1] % 4) + 1  # change the last token only
        a, b = model(x[:, :length]), model(other[:, :length])
        assert torch.allclose(a[:, : length - 1], b[:, : length - 1], atol=1e-6)
        assert not torch.allclose(a[:, -1], b[:, -1])


def test_cached_generation_of_short_prompts_equals_step_by_step_argmax():
    torch.manual_seed(3)
    model = GPT(GPTConfig(vocab_size=7, n_layer=3, n_head=2, d_model=32, d_ff=48)).eval()
    for length in (1, 2, 3):
        prompts = torch.randint(1, 7, (16, length))
        cached, _ = model.generate(prompts, max_new_tokens=6, eos_id=0)
        assert torch.equal(cached, uncached_greedy(model, prompts, 6, eos_id=0))


def test_cached_generation_is_right_on_the_reference_attention_kernel(monkeypatch):
    """PyTorch's plain (math) attention checks that keys and values match: a cache read that only works
    on a fused kernel fails here."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = eos_biased_model()
    prompts = torch.randint(1, 7, (8, 5))
    with sdpa_kernel(SDPBackend.MATH):
        cached, _ = model.generate(prompts, max_new_tokens=6, eos_id=0)
        assert torch.equal(cached, uncached_greedy(model, prompts, 6, eos_id=0))


def test_initial_weights_have_the_documented_scales():
    torch.manual_seed(0)
    n_layer, d = 4, 256
    model = GPT(GPTConfig(vocab_size=64, n_layer=n_layer, n_head=4, d_model=d, d_ff=512))
    residual = (2 * n_layer) ** -0.5
    expected = {"embed.weight": 1.0, "head.weight": d**-0.5, "blocks.0.qkv.weight": d**-0.5,
                "blocks.0.gate_up.weight": d**-0.5, "blocks.0.proj.weight": d**-0.5 * residual,
                "blocks.3.down.weight": 512**-0.5 * residual}
    params = dict(model.named_parameters())
    for name, std in expected.items():
        assert abs(params[name].std().item() / std - 1) < 0.05, name


def test_samples_share_one_prefill_and_each_is_scored_by_the_model(monkeypatch):
    """Every sample's confidence equals the least probability an uncached forward pass gives the tokens it
    drew: the prefill's keys and values reached each sample's row intact, also across compactions."""
    compactions = spy_on_compaction(monkeypatch)
    model = eos_biased_model()
    prompts = torch.randint(1, 7, (8, 9))
    limits = torch.tensor([12, 3, 12, 12, 5, 12, 12, 12])
    out, confidence = model.generate(prompts, 12, eos_id=0, limits=limits, samples=4, temperature=1.0,
                                     generator=torch.Generator().manual_seed(0))
    assert out.shape == (32, 12) and compactions
    rows = torch.arange(32) // 4  # prompt-major: prompt i's samples are rows 4i..4i+3
    assert all(len({tuple(r) for r in out[rows == i].tolist()}) > 1 for i in range(8))  # samples differ
    out = out.clone()  # out of inference mode
    seq = torch.cat([prompts[rows], out], dim=1)
    with torch.no_grad():
        probs = model(seq[:, :-1]).softmax(-1)[:, prompts.shape[1] - 1:].gather(-1, out[..., None])[..., 0]
    ends = torch.where((out == 0).any(1), (out == 0).float().argmax(1), 11)
    alive = (torch.arange(12)[None, :] <= ends[:, None]) & (torch.arange(12)[None, :] < limits[rows][:, None])
    assert torch.allclose(confidence, probs.masked_fill(~alive, 1.0).min(1).values, atol=1e-5)
    assert (out[rows == 1][:, 3:] == 0).all()  # a prompt's limit holds for each of its samples
    again, _ = model.generate(prompts, 12, eos_id=0, limits=limits, samples=4, temperature=1.0,
                              generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_a_vanishing_nucleus_or_temperature_samples_the_greedy_answer():
    model = eos_biased_model()
    prompts = torch.randint(1, 7, (16, 9))
    greedy, conf = model.generate(prompts, 10, eos_id=0)
    for kwargs in ({"temperature": 1.0, "top_p": 1e-6}, {"temperature": 1e-4}):
        sampled, sconf = model.generate(prompts, 10, eos_id=0, samples=3, generator=torch.Generator().manual_seed(1),
                                        **kwargs)
        assert torch.equal(sampled, greedy.repeat_interleave(3, dim=0))
        assert torch.allclose(sconf, conf.repeat_interleave(3))


def test_pick_is_greedy_by_default_and_draws_from_the_nucleus_at_a_temperature():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().repeat(4000, 1)
    token, chosen = pick(logits)
    assert (token == 0).all() and torch.allclose(chosen, torch.tensor(0.5))
    # at temperature 0.5 the odds are squared: 0.685, 0.247, 0.062, 0.007; the first two reach top_p 0.75
    token, chosen = pick(logits, temperature=0.5, top_p=0.75, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(token, minlength=4)
    assert counts[2:].sum() == 0 and abs(counts[0] / counts[:2].sum() - 0.25 / 0.34) < 0.03
    assert torch.allclose(chosen, probs[token])  # the model's own probability, not the warped one
