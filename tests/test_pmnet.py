"""PMNet (arXiv 2605.13370): the parallel segmented phase sum against a token-by-token loop, the straight-through
gradient scale, streaming against one pass, sliding-window attention against full attention and its receptive
field, the memory switches, the presets and the synthetic retrieval tasks through the one trainer.

Tolerances. The equivalence tests run in float64 (unit roundoff u = 2⁻⁵³ ≈ 1.1e-16). The segmented sum of n rows of
|Δ| ≤ π computed as one cumulative sum over all B·T rows minus a segment offset carries an absolute error at most
B·T·u·Σ|Δ| ≤ (B·T)²·π·u (the standard bound of recursive summation), then one rounding of the mod; phases are
compared on the circle. Whole-model comparisons (streaming vs one pass, window T vs causal) differ only in the order
of float64 reductions of length ≤ d_model, a few layers deep, on O(1) activations: errors are O(depth·d·u) ≈ 1e-13;
the bound used, 1e-9, is four orders above that and many orders below the O(1e-2) change any real bug (a missed or
extra key, a lost carry) makes. Where two models run the identical sequence of operations the outputs are compared
exactly.
"""

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mechlab.cli import app
from mechlab.data.retrieval import FILLERS, IGNORE, VALUES, RetrievalTask, exact_match, training_task
from mechlab.errors import ConfigError, DataError
from mechlab.models import KVCache, build_model, preset
from mechlab.models.phasor import phase_sum_loop, segmented_phase_sum
from mechlab.train.trainer import TrainConfig, train

U64 = 2.0**-53
WHOLE_MODEL_TOL = 1e-9


def circle_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a − b| measured on the circle (phases mod 2π)."""
    return torch.remainder(a - b + math.pi, 2 * math.pi).sub(math.pi).abs()


def routing(pattern: str, B: int, T: int, G: int, gen: torch.Generator) -> torch.Tensor:
    if pattern == "random":
        return torch.randint(0, G, (B, T), generator=gen)
    if pattern == "one group":
        return torch.full((B, T), G - 1)
    if pattern == "alternating":
        return (torch.arange(T) % 2).expand(B, T).clone()
    if pattern == "blocks":  # long runs: segments of very different lengths
        return (torch.arange(T) * G // T).expand(B, T).clone()
    raise ValueError(pattern)


@pytest.mark.parametrize("pattern", ["random", "one group", "alternating", "blocks"])
@pytest.mark.parametrize("B,T,G", [(1, 33, 4), (3, 64, 16), (4, 50, 1)])
def test_segmented_phase_sum_equals_token_loop(pattern, B, T, G):
    gen = torch.Generator().manual_seed(B * 1000 + T + G)
    D = 6
    delta = ((torch.rand(B, T, D, generator=gen, dtype=torch.float64) * 2 - 1) * math.pi).requires_grad_()
    group = routing(pattern, B, T, G, gen).clamp(max=G - 1)
    fast, _ = segmented_phase_sum(delta, group, G)
    ref = phase_sum_loop(delta, group, G)
    tol = 4 * (B * T) ** 2 * math.pi * U64
    assert circle_diff(fast, ref).max() <= tol
    assert fast.min() >= 0 and fast.max() < 2 * math.pi
    # gradients: both are linear in Δ (the mod has derivative 1), compare d(Σ w·U)/dΔ
    w = torch.randn(B, T, D, generator=gen, dtype=torch.float64)
    g_fast, = torch.autograd.grad((fast * w).sum(), delta)
    g_ref, = torch.autograd.grad((ref * w).sum(), delta)
    assert (g_fast - g_ref).abs().max() <= 4 * T * w.abs().sum() * U64


def test_segmented_phase_sum_in_float32_and_with_a_carry():
    """float32 input: the sum runs in float64, so only the final cast rounds (≤ 2π·2⁻²⁴ on [0, 2π)); a carry c
    continues a previous chunk, and the new carry is each segment's last U (c where a segment has no token)."""
    gen = torch.Generator().manual_seed(7)
    B, T, G, D = 2, 200, 4, 3
    delta = (torch.rand(B, T, D, generator=gen) * 2 - 1) * math.pi
    group = torch.randint(0, G - 1, (B, T), generator=gen)  # group G − 1 never written
    carry = torch.rand(B, G, D, generator=gen) * 2 * math.pi
    fast, last = segmented_phase_sum(delta, group, G, carry=carry)
    ref = phase_sum_loop(delta.double(), group, G, carry=carry.double())
    assert fast.dtype == torch.float32
    assert circle_diff(fast.double(), ref).max() <= 2 * math.pi * 2.0**-24 + 4 * (B * T) ** 2 * math.pi * U64
    assert torch.equal(last[:, G - 1], carry[:, G - 1])
    for b in range(B):
        for g in range(G - 1):
            t = int(torch.nonzero(group[b] == g).max())
            assert torch.equal(last[b, g], fast[b, t])


def test_gradient_scaling_changes_gradients_not_values():
    gen = torch.Generator().manual_seed(3)
    B, T, G, D = 2, 40, 4, 5
    delta = torch.randn(B, T, D, generator=gen, dtype=torch.float64, requires_grad=True)
    group = torch.randint(0, G, (B, T), generator=gen)
    w = torch.randn(B, T, D, generator=gen, dtype=torch.float64)
    plain, _ = segmented_phase_sum(delta, group, G)
    scaled, _ = segmented_phase_sum(delta, group, G, scale_grad=True)
    assert torch.equal(plain, scaled)  # values bit for bit
    g_plain, = torch.autograd.grad((plain * w).sum(), delta)
    g_scaled, = torch.autograd.grad((scaled * w).sum(), delta)
    n = torch.stack([torch.bincount(group[b], minlength=G)[group[b]] for b in range(B)]).double()
    assert not torch.allclose(g_plain, g_scaled)
    torch.testing.assert_close(g_scaled, g_plain / n.clamp(min=1).sqrt().unsqueeze(-1), rtol=8 * U64, atol=0)


def tiny(**over):
    return preset("pmnet-tiny", **{"window": 5, "max_seq_len": 64, "d_model": 32, "n_heads": 2, "d_ff": 64,
                                   "mem_dim": 8, **over})


def model64(cfg, seed=0):
    torch.manual_seed(seed)
    return build_model(cfg).double().eval()


@pytest.mark.parametrize("over", [{}, {"mem_write_every": 2, "n_layers": 3}, {"mem_cumsum": False}, {"memory": False}])
def test_streaming_in_chunks_equals_one_pass(over):
    m = model64(tiny(**over))
    x = torch.randint(0, 48, (2, 40), generator=torch.Generator().manual_seed(1))
    full = m(x)[0]
    for chunk in (1, 3, 7, 16, 40):
        assert (m.forward_chunked(x, chunk) - full).abs().max() <= WHOLE_MODEL_TOL, chunk
    cache = KVCache(2, 40, window=m.config.window)
    m.forward_chunked(x, 7)
    for i in range(0, 40, 9):
        m(x[:, i : i + 9], cache=cache)
    assert all(k.shape[2] == m.config.window - 1 for k, _ in cache.slots.values())  # constant-size attention state
    if m.config.memory and m.config.mem_cumsum:
        assert sorted(cache.phasor) == list(range(m.config.mem_levels))
        assert all(c.shape == (2, 4**h, 4 * 8) for h, c in cache.phasor.items())


def test_generation_with_the_streaming_cache_equals_recomputation():
    m = model64(tiny())
    prompt = torch.randint(0, 48, (2, 9), generator=torch.Generator().manual_seed(2))
    a = m.generate(prompt, 20, temperature=0)
    b = m.generate(prompt, 20, temperature=0, use_cache=False)
    assert torch.equal(a, b)
    long = m.generate(prompt, 80, temperature=0)  # past max_seq_len = 64: a window model streams on
    assert long.shape == (2, 89)


def test_memory_off_is_the_plain_sliding_window_transformer():
    """The memory is purely additive: a PMNet whose read outputs are zero is, operation for operation, the
    sliding-window Transformer with the same backbone weights (memory=False builds exactly that model)."""
    pm = model64(tiny())
    plain = build_model(tiny(memory=False)).double().eval()
    missing, unexpected = plain.load_state_dict(pm.state_dict(), strict=False)
    assert not missing and unexpected and all(k.startswith("memory.") for k in unexpected)
    assert plain.num_params() == pm.num_params() - sum(p.numel() for p in pm.memory.parameters())
    for r in pm.memory.reads:
        torch.nn.init.zeros_(r.out.weight)
        torch.nn.init.zeros_(r.out.bias)
    x = torch.randint(0, 48, (3, 30), generator=torch.Generator().manual_seed(4))
    assert torch.equal(pm(x)[0], plain(x)[0])


def test_a_window_of_the_whole_sequence_is_full_causal_attention():
    T = 24
    x = torch.randint(0, 48, (2, T), generator=torch.Generator().manual_seed(5))
    causal = model64(tiny(window=None, memory=False))
    for w in (T, T + 5):
        windowed = build_model(tiny(window=w, memory=False)).double().eval()
        windowed.load_state_dict(causal.state_dict())
        assert (windowed(x)[0] - causal(x)[0]).abs().max() <= WHOLE_MODEL_TOL
    short = build_model(tiny(window=T - 1, memory=False)).double().eval()
    short.load_state_dict(causal.state_dict())
    assert (short(x)[0] - causal(x)[0]).abs().max() > 1e-6  # a shorter window does change the last position


def input_gradient(m, T: int) -> torch.Tensor:
    """|d logits[last] / d embedding[s]| summed over features, per position s (T,)."""
    x = torch.randint(0, 48, (1, T), generator=torch.Generator().manual_seed(6))
    emb = m.embed(x).detach().requires_grad_()
    cos, sin = m.rope_cos[:T], m.rope_sin[:T]
    out = m.head(m.body(emb, cos, sin))[0, -1]
    g, = torch.autograd.grad(out.sum(), emb)
    return g[0].abs().sum(-1)


@pytest.mark.parametrize("over", [{"memory": False}, {"mem_cumsum": False}])
def test_receptive_field_of_a_window_stack_is_layers_times_window_minus_one(over):
    cfg = tiny(n_layers=3, window=4, **over)
    assert cfg.receptive_field == 3 * (4 - 1)
    T = 20
    g = input_gradient(model64(cfg), T)
    edge = T - 1 - cfg.receptive_field
    assert torch.all(g[:edge] == 0)  # no gradient from beyond L·(W − 1): exactly zero (masked keys weigh 0)
    assert g[edge] > 0 and torch.all(g[edge:] > 0)


def test_the_phasor_memory_reaches_beyond_the_receptive_field():
    cfg = tiny(n_layers=3, window=4)
    g = input_gradient(model64(cfg), 20)
    assert g[0] > 0  # level 0 puts every token in one group: the first token's write reaches the last


def test_presets_and_parameter_counts():
    r = CliRunner().invoke(app, ["params", "pmnet-paper", "--json"])
    assert r.exit_code == 0 and '"params": 118970368' in r.output  # the authors' printed count
    assert preset("pmnet-paper").mem_levels == 4 and preset("pmnet-paper").receptive_field == 12 * 127
    with torch.device("meta"):
        assert build_model(preset("pmnet-tiny")).num_params() == 1_065_600
        assert build_model(preset("pmnet-tiny")).memory.state_bytes() == 85 * 4 * 64 * 4
    assert preset("tiny").window is None and not preset("tiny").memory and not preset("tiny").qk_norm


@pytest.mark.parametrize("bad", [dict(window=0), dict(mem_slots=1), dict(arch="mhc", n_streams=2),
                                 dict(mem_dim=True), dict(attn_head_dim=-2)])
def test_bad_pmnet_configs_are_refused(bad):
    with pytest.raises(ConfigError):
        preset("pmnet-tiny", **bad)


@pytest.mark.parametrize("kind", ["needle", "copy"])
def test_retrieval_rows(kind):
    task = RetrievalTask(kind, seq_len=64, max_gap=40, payload=4)
    x, y = task.batch(3, 5, 8)
    x2, y2 = task.batch(3, 5, 8)
    assert torch.equal(x, x2) and torch.equal(y, y2) and x.shape == y.shape == (8, 64)
    assert not torch.equal(x, task.batch(3, 6, 8)[0])
    assert torch.all(y[:, : 64 - task.answers] == IGNORE)  # only answers count
    ans = y[:, -task.answers :]
    assert torch.all((ans >= VALUES[0]) & (ans <= VALUES[-1]))
    long_x, long_y = task.rows(np.random.default_rng(0), np.array([300, 300]))
    assert long_x.shape[1] == task.core_length(300) - 1
    if kind == "needle":  # KEY k VAL v · G fillers · QUERY k → v
        g = 300
        assert torch.all(long_x[:, -(g + 2) : -2] >= FILLERS[0]) and torch.equal(long_x[:, 1], long_x[:, -1])
        assert torch.equal(long_x[:, 3], long_y[:, -1])
    else:
        assert torch.equal(long_x[:, :4], long_y[:, -4:])
    with pytest.raises(ConfigError):
        RetrievalTask("needle", seq_len=32, max_gap=40)


def test_needle_probes_add_queries_of_the_one_needle_inside_the_gap():
    """probes P: the row of one probe with up to P − 1 (QUERY, k) pairs written over gap fillers, each with the
    target v at its k, never v itself; every non-overlapping placement equally likely (brute force at G = 5)."""
    one, four = RetrievalTask("needle", seq_len=96, max_gap=80), RetrievalTask("needle", seq_len=96, max_gap=80,
                                                                               probes=4)
    x1, y1 = one.batch(7, 3, 64)
    x4, y4 = four.batch(7, 3, 64)
    changed = x4 != x1
    assert torch.all((x4[changed] == 2) | (x4[changed] == x1[:, -1:].expand_as(x4)[changed]))  # QUERY or the key
    k, v = x1[:, -1:], y1[:, -1:]
    extra = (y4 != IGNORE) & (y1 == IGNORE)
    assert torch.equal(y4[~extra], y1[~extra]) and torch.all(y4[extra] == v.expand_as(y4)[extra])
    assert torch.all(x4[extra] == k.expand_as(x4)[extra])
    assert torch.all(torch.roll(x4, 1, 1)[extra] == 2)  # each probe's k follows a QUERY
    assert torch.all((x4 == v).sum(1) == 1)  # the answer is written once: the needle
    gaps = x1.shape[1] - 4 - (x1 == 1).float().argmax(1)  # x = … KEY k VAL v · G symbols · QUERY k: VAL at L − G − 4
    assert torch.all(extra.sum(1) == torch.clamp(gaps // 2, max=3))  # up to P − 1, as many as fit in G
    task = RetrievalTask("needle", seq_len=12, max_gap=5, probes=3)
    rng = np.random.default_rng(0)
    counts: dict = {}
    n = 3000
    for _ in range(n):
        x, y = task.row(rng, 5, 13)
        task.add_probes(x, y, 5, 3, rng)
        # each probe's QUERY (one before its target) as an offset into the gap, which starts at len(x) − 2 − G
        offsets = tuple(int(i) - (12 - 2 - 5) for i in np.flatnonzero(y[:-1] != IGNORE) - 1)
        counts[offsets] = counts.get(offsets, 0) + 1
    assert set(counts) == {(0, 2), (0, 3), (1, 3)}  # the three ways two pairs fit in five symbols
    assert all(abs(c - n / 3) < 4 * math.sqrt(n * (1 / 3) * (2 / 3)) for c in counts.values())
    with pytest.raises(ConfigError, match="probes"):
        RetrievalTask("copy", seq_len=64, max_gap=40, payload=4, probes=2)
    with pytest.raises(ConfigError, match="probes"):
        RetrievalTask("needle", seq_len=64, max_gap=40, probes=0)
    with pytest.raises(ConfigError, match="at most probes=3"):  # the longest gap holds two earlier queries
        RetrievalTask("needle", seq_len=64, max_gap=5, probes=4)
    assert RetrievalTask("needle", seq_len=64, max_gap=40, probes=np.int64(3)).probes == 3
    x, y = one.row(np.random.default_rng(1), 10, 97)
    for wrong in (47, 30, 9, 200):  # another gap than the row's: refused before anything is written
        with pytest.raises(DataError, match="not a needle row of gap"):
            one.add_probes(x.copy(), y.copy(), wrong, 3, np.random.default_rng(0))
    once = x.copy(), y.copy()
    one.add_probes(*once, 10, 3, np.random.default_rng(0))
    with pytest.raises(DataError, match="without probes"):  # probes are written once
        one.add_probes(*once, 10, 3, np.random.default_rng(0))
    for bad in (dict(gaps=np.array([8]), probes=0), dict(gaps=np.array([8]), probes=2.5),
                dict(gaps=np.array([], dtype=int))):
        with pytest.raises(ConfigError):
            four.rows(np.random.default_rng(0), **bad)
    with pytest.raises(ConfigError, match="needle task"):
        RetrievalTask("copy", seq_len=64, max_gap=40, payload=4).rows(np.random.default_rng(0), np.array([8]), 2)
    with pytest.raises(ConfigError, match="batch_size"):
        four.batch(0, 0, 0)


@pytest.mark.slow
def test_pmnet_trains_on_needle_retrieval_through_the_one_trainer(tmp_path):
    task = RetrievalTask("needle", seq_len=32, max_gap=16)
    mcfg = tiny(window=8)
    cfg = TrainConfig(steps=30, batch_size=8, seq_len=32, lr=3e-3, warmup_steps=5, eval_every=30, log_every=1,
                      out_dir=str(tmp_path / "run"))
    res = train(cfg, task=training_task(mcfg, task, eval_gaps=(4, 100), eval_rows=16), progress=False)
    import json
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 30 and all(math.isfinite(r["grad_norm"]) for r in rows if "grad_norm" in r)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])  # it learns something in 30 steps (chance loss ln 48 ≈ 3.9)
    assert {"acc_G4", "acc_G100"} <= set(rows[-1])
    m = res.model.double()  # float64: streaming and one pass agree to ~1e-13, far from any argmax tie
    hits = exact_match(m, task, 100, 8, seed=0)
    assert hits.shape == (8,) and hits.dtype == bool
    assert np.array_equal(hits, exact_match(m, task, 100, 8, seed=0, chunk=13))  # streaming = one pass


def test_generation_streams_a_window_model_past_max_seq_len_and_switches_are_booleans():
    from types import SimpleNamespace

    from mechlab.data.tokenizers import ByteTokenizer
    from mechlab.generation import Sampling, generate_text
    from mechlab.models import build_model, preset

    class OneCharPerToken(ByteTokenizer):  # decoding never merges or replaces: one character per new token
        def decode(self, ids):
            return "".join(chr(0x4E00 + i) for i in ids)

    cfg = preset("window-tiny", vocab_size=259, max_seq_len=32)
    ck = SimpleNamespace(model=build_model(cfg), tokenizer=OneCharPerToken(), config=cfg, meta={})
    text = generate_text(ck, "abc", Sampling(max_new_tokens=60, temperature=1.0, top_k=None))
    assert len(text) == 60  # 3 + 60 > 32: streamed through the window cache
    for bad in ({"memory": "false"}, {"qk_norm": 0}):
        with pytest.raises(ConfigError, match="true or false"):
            preset("pmnet-tiny", **bad)
    with pytest.raises(ConfigError, match="unknown keys"):
        preset("pmnet-tiny", bogus_key=1)


def test_the_segmented_sum_differentiates_the_carry_as_the_token_loop():
    """The custom backward also gives the carry's gradient (Σ of dL/dU over its segment): float64, as above."""
    gen = torch.Generator().manual_seed(11)
    B, T, G, D = 2, 30, 4, 3
    delta = torch.randn(B, T, D, generator=gen, dtype=torch.float64, requires_grad=True)
    carry = torch.rand(B, G, D, generator=gen, dtype=torch.float64).requires_grad_()
    group = torch.randint(0, G, (B, T), generator=gen)
    w = torch.randn(B, T, D, generator=gen, dtype=torch.float64)
    fast, _ = segmented_phase_sum(delta, group, G, carry=carry)
    ref = phase_sum_loop(delta, group, G, carry=carry)
    gd_f, gc_f = torch.autograd.grad((fast * w).sum(), (delta, carry))
    gd_r, gc_r = torch.autograd.grad((ref * w).sum(), (delta, carry))
    bound = 4 * T * w.abs().sum() * U64
    assert (gd_f - gd_r).abs().max() <= bound and (gc_f - gc_r).abs().max() <= bound


def test_gap_distribution_with_far_rows():
    task = RetrievalTask("needle", seq_len=96, max_gap=88, far_gap=59, far_fraction=0.75)
    gaps = []
    for step in range(40):
        x, _ = task.batch(0, step, 16)
        # the gap is the distance from VAL's value to QUERY, read off the row: KEY k VAL v · G fillers · QUERY k v
        for row in x.numpy():
            q = int(np.flatnonzero(row == 2)[-1])
            gaps.append(q - int(np.flatnonzero(row == 1)[-1]) - 2)
    gaps = np.array(gaps)
    assert gaps.min() >= 0 and gaps.max() <= 88
    # P(G >= 59) = 0.75 + 0.25·30/89 ≈ 0.834; 640 rows: s.d. ≈ 0.015, so 5 s.d. either side
    assert abs((gaps >= 59).mean() - (0.75 + 0.25 * 30 / 89)) < 5 * 0.015
    assert torch.equal(RetrievalTask("needle", seq_len=96, max_gap=88).batch(0, 3, 16)[0],
                       RetrievalTask("needle", seq_len=96, max_gap=88, far_fraction=0.0).batch(0, 3, 16)[0])
    for bad in (dict(far_gap=90), dict(far_fraction=1.5), dict(far_fraction=True)):
        with pytest.raises(ConfigError):
            RetrievalTask("needle", seq_len=96, max_gap=88, **bad)


def test_retrieval_data_sources_and_tokenizer():
    from mechlab.data.retrieval import SYMBOLS, RetrievalTokenizer, parse_source
    from mechlab.data.tokenizers import tokenizer_from_json

    tok = RetrievalTokenizer()
    assert len(SYMBOLS) == len(set(SYMBOLS)) == tok.vocab_size == 48
    ids = list(range(48))
    assert tok.encode(tok.decode(ids)) == ids and tok.encode("#a =B 0?a") == [0, 5, 1, 22, 37, 2, 5]
    assert isinstance(tokenizer_from_json(tok.to_json()), RetrievalTokenizer)
    with pytest.raises(DataError, match="'x' is not a symbol"):
        tok.encode("#x")
    t = parse_source("retrieval:copy,payload=4,far_gap=50,far_fraction=0.5", 96)
    assert (t.kind, t.payload, t.seq_len, t.max_gap, t.far_gap, t.far_fraction) == ("copy", 4, 96, 87, 50, 0.5)
    assert parse_source("retrieval:needle", 64).max_gap == 58  # the longest gap a row of 64 + 1 symbols holds
    assert parse_source("retrieval:needle,probes=4", 64).probes == 4
    assert parse_source("retrieval:needle,min_gap=10", 64).min_gap == 10  # far_gap is checked only when used
    for bad, msg in (("retrieval:needle,seq_len=64", "the run's seq_len"), ("retrieval:haystack", "needle' or 'copy"),
                     ("retrieval:needle,gap=3", "not option=value"), ("retrieval:needle,max_gap=x", "an integer"),
                     ("retrieval:needle,max_gap=90", "raise seq_len"), ("retrieval:copy,probes=2", "probes"),
                     ("retrieval:needle,probes=3,probes=5", "given twice"),
                     ("retrieval:needle,probes=1000", "at most probes=30"),
                     ("retrieval:needle,payload=3", "payload applies to the copy task")):
        with pytest.raises(ConfigError, match=msg):
            parse_source(bad, 64)


def test_the_longest_gap_and_the_first_gap_beyond_a_receptive_field_by_brute_force():
    from mechlab.data.retrieval import longest_gap

    for kind, payload in (("needle", 8), ("copy", 1), ("copy", 4)):
        for seq_len in (8, 31, 96):
            fits = [g for g in range(200) if RetrievalTask(kind, payload=payload, seq_len=10_000,
                                                            max_gap=0).core_length(g) <= seq_len + 1]
            longest = longest_gap(kind, seq_len, payload)
            assert longest == max(fits) if fits else longest < 0  # negative: the row cannot hold the task
        task = RetrievalTask(kind, payload=payload, seq_len=10_000, max_gap=0)
        for rf in (0, 3, 60):
            assert task.first_gap_beyond(rf) == next(g for g in range(rf + 2) if task.distance(g) > rf)


def test_exact_match_and_the_run_config_refuse_bad_arguments_with_one_line():
    from mechlab.train.trainer import Task, run_model_config

    task = RetrievalTask("needle", seq_len=32, max_gap=16)
    m = build_model(tiny())
    for kw, name in ((dict(gap=-1), "gap"), (dict(n_rows=0), "n_rows"), (dict(batch_size=0), "batch_size"),
                     (dict(chunk=0), "chunk"), (dict(gap=1.5), "gap")):
        args = {**dict(gap=4, n_rows=4, seed=0), **kw}
        with pytest.raises(ConfigError, match=f"exact_match: {name}"):
            exact_match(m, task, **args)
    full = build_model(tiny(window=None, memory=False))  # max_seq_len 64, full attention: rows of 107 do not fit
    for chunk in (None, 13):  # streaming does not lift full attention's limit: refused up front, not deep inside
        with pytest.raises(ConfigError, match="exact_match: gap 100 .* max_seq_len"):
            exact_match(full, task, 100, 2, seed=0, chunk=chunk)
    cfg = TrainConfig(model="pmnet-tiny", steps=1, seq_len=32, model_overrides={"vocab_size": 300})
    with pytest.raises(ConfigError, match="conflicts with the tokenizer"):
        run_model_config(cfg, 259)
    with pytest.raises(ConfigError, match="below the run's seq_len"):
        run_model_config(dataclasses_replace(cfg, model_overrides={"max_seq_len": 16}), 259)
    mcfg = run_model_config(dataclasses_replace(cfg, model_overrides={}), 259)
    assert (mcfg.vocab_size, mcfg.max_seq_len) == (259, 64)
    t = training_task(tiny(), task)
    assert isinstance(t, Task) and t.seq_len == 32
    with pytest.raises(ConfigError, match="seq_len is 48"):
        train(TrainConfig(steps=1, batch_size=2, seq_len=48, out_dir="unused-dir"), task=t, progress=False)


def dataclasses_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


@pytest.mark.slow
def test_the_cli_trains_scores_and_samples_a_retrieval_task(tmp_path):
    import json

    run = tmp_path / "run"
    config = tmp_path / "run.json"  # through a config file: eval_windows (the rows scored per gap) kept small
    config.write_text(json.dumps({"model": "pmnet-tiny", "data": "retrieval:needle,max_gap=20", "seq_len": 32,
                                  "batch_size": 4, "warmup_steps": 1, "eval_every": 100, "eval_windows": 2,
                                  "save_every": 2, "steps": 2}))
    base = ["train", "--config", str(config), "--out", str(run)]
    r = CliRunner().invoke(app, base)
    assert r.exit_code == 0, r.output
    recorded = json.loads((run / "train_config.json").read_text())
    assert (run / "latest").exists() and recorded["seq_len"] == 32 and recorded["tokenizer"] == "retrieval"
    r = CliRunner().invoke(app, ["train", "--out", str(run), "--steps", "3", "--resume"])  # a checkpointed run resumes
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["exact-match", str(run), "--gap", "4", "--gap", "100", "--rows", "2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["task"] == "needle" and set(out["accuracy"]) == {"4", "100"} and out["receptive_field"] == 60
    r = CliRunner().invoke(app, ["generate", str(run), "--prompt", "#a=B0123?a", "--max-new-tokens", "2"])
    assert r.exit_code == 0 and r.output.startswith("#a=B0123?a")
    for argv, msg in ((["eval", str(run)], "exact-match"), (["exact-match", str(run), "--gap", "-3"], "gap must be"),
                      (["train", "--data", "retrieval:needle,seq_len=40", "--out", str(tmp_path / "r2")], "seq_len"),
                      (["train", "--data", "retrieval:needle", "--tokenizer", "bpe:300", "--out", str(tmp_path / "r3")],
                       "tokenizer"),
                      (["exact-match", str(run), "--rows", "0"], "--rows"),
                      (["exact-match", str(run), "--gap", "8", "--gap", "8"], "distinct"),
                      (["exact-match", str(run), "--data", "stdlib"], "--data 'stdlib' is not a retrieval task"),
                      (["exact-match", str(run), "--data", "retrieval:copy,payload=40"], "training seq_len (32)")):
        r = CliRunner().invoke(app, argv)  # a ConfigError: `mechlab` (cli.main) prints its line and exits 2
        assert isinstance(r.exception, ConfigError) and msg in str(r.exception), argv
    r = CliRunner().invoke(app, ["generate", str(run), "--prompt", "#a=Bxyz?a", "--max-new-tokens", "2"])
    assert r.exception is not None and "not a symbol" in str(r.exception) and r.output == ""  # nothing echoed first
    r = CliRunner().invoke(app, ["generate", str(run), "--prompt", "#a", "--max-new-tokens", "0"])
    assert r.exit_code == 0 and r.output.strip() == "#a", r.output  # a window model has no context to fill


def _script(folder: str, name: str):
    """A script of experiments/ or benchmarks/ as a module, its folder on sys.path as when it runs."""
    import importlib.util
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / folder
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    spec = importlib.util.spec_from_file_location(f"_pmnet_{name}", root / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("folder,name,argv,option", [
    ("experiments", "pmnet_retrieval", ["--max-gap", "500"], "--max-gap"),
    ("experiments", "pmnet_retrieval", ["--far-fraction", "2"], "--far-fraction"),
    ("experiments", "pmnet_retrieval", ["--task", "copy", "--payload", "60"], "--payload"),
    ("experiments", "pmnet_retrieval", ["--steps", "0"], "--steps"),
    ("experiments", "pmnet_retrieval", ["--partial"], "--partial"),
    ("experiments", "pmnet_retrieval", ["--probes", "0"], "--probes"),
    ("experiments", "pmnet_retrieval", ["--task", "copy", "--probes", "3"], "--probes"),
    ("experiments", "pmnet_retrieval", ["--gaps", "8", "3000"], "--gaps"),
    ("experiments", "pmnet_retrieval", ["--gaps", "8", "32"], "--gaps"),
    ("experiments", "pmnet_retrieval", ["--payload", "4"], "--payload"),
    ("experiments", "pmnet_retrieval", ["--far-gap", "70"], "--far-gap"),
    ("experiments", "pmnet_retrieval", ["--task", "copy", "--payload", "100"], "--seq-len"),
    ("experiments", "pmnet_retrieval", ["--gaps", "8", "8"], "--gaps"),
    ("experiments", "pmnet_retrieval", ["--seeds", "0", "0"], "--seeds"),
    ("experiments", "pmnet_retrieval", ["--runs", ""], "--runs"),
    ("experiments", "pmnet_retrieval", ["--partial", "--seeds", "1"], "--partial"),
    ("experiments", "pmnet_retrieval", ["--partial", "--seeds", "1", "--steps", "5"], "--partial"),
    ("benchmarks", "pmnet_throughput", ["--batch", "0"], "--batch"),
    ("benchmarks", "pmnet_throughput", ["--seq", "x"], "--seq"),
])
def test_bad_options_of_the_experiment_and_the_benchmark_are_one_line_errors(folder, name, argv, option, capsys,
                                                                             monkeypatch):
    module = _script(folder, name)
    monkeypatch.setattr("sys.argv", [f"{name}.py", *argv])
    with pytest.raises(SystemExit) as e:
        module.main(argv) if folder == "experiments" else module.main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and option in err and "Traceback" not in err, err


@pytest.mark.slow
def test_experiment_runs_of_other_settings_keep_their_own_seed_files(tmp_path, monkeypatch, capsys):
    """pmnet_retrieval names each seed's file and training runs by a hash of its settings: a run with other
    settings (here --probes 2) writes beside, never over, and the first settings' seed file is reused."""
    exp = _script("experiments", "pmnet_retrieval")
    monkeypatch.setattr(exp, "RESULTS", tmp_path / "results")
    argv = ["--quick", "--steps", "2", "--batch-size", "2", "--seq-len", "48", "--gaps", "8", "64", "--eval-rows", "2",
            "--bootstrap", "10", "--runs", str(tmp_path / "runs")]
    exp.main(argv)
    exp.main([*argv, "--probes", "2"])
    files = sorted((tmp_path / "runs").glob("seed-0-*.json"))
    settings = [json.loads(f.read_text())["settings"] for f in files]
    assert len(files) == 2 and settings[0] != settings[1]
    assert len(list((tmp_path / "runs").glob("pmnet-s0-*"))) == 2
    capsys.readouterr()
    res = exp.main(argv)
    assert "reusing" in capsys.readouterr().out and res["quick"]
    next(f for f, st in zip(files, settings) if st["probes"] == 4).unlink()  # argv's seed file (--probes by default
    # 4): a seed stopped after training; its trained arms are reused, and score the same
    again = exp.main(argv)
    out = capsys.readouterr().out
    assert out.count("reusing the trained run") == 3 and again["accuracy"] == res["accuracy"]
    for log in (tmp_path / "runs").glob("twin-s0-*/arm.json"):
        log.write_text("{}")  # readable JSON without the arm's log: that arm trains again, no KeyError
    for f in (tmp_path / "runs").glob("seed-0-*.json"):
        f.unlink()
    exp.main(argv)
    assert "unreadable" in capsys.readouterr().out


@pytest.mark.slow
def test_experiment_probes_default_to_four_for_the_needle_and_one_for_copy(tmp_path, monkeypatch, capsys):
    """pmnet_retrieval's --probes defaults by task: 4 (the committed needle run) and 1 for copy-paste, which takes no
    probes, so `--task copy` runs without naming --probes."""
    exp = _script("experiments", "pmnet_retrieval")
    monkeypatch.setattr(exp, "RESULTS", tmp_path / "results")
    argv = ["--quick", "--steps", "1", "--batch-size", "2", "--seq-len", "48", "--gaps", "8", "64", "--eval-rows", "2",
            "--bootstrap", "10", "--runs", str(tmp_path / "runs")]
    assert exp.main(argv)["settings"]["probes"] == 4
    assert exp.main([*argv, "--task", "copy", "--payload", "2"])["settings"]["probes"] == 1
    capsys.readouterr()
