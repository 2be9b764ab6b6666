import copy
import math

import pytest
import torch
import torch.nn.functional as F

from mechlab.errors import ConfigError
from mechlab.models import PRESETS, KVCache, ModelConfig, build_model, preset
from mechlab.models.transformer import apply_rope, rope_tables

U32 = 2.0**-24  # float32 unit roundoff


def float64_logits(model, x: torch.Tensor, inplace: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, bound) of ``model`` on tokens x (B, T) run in float64 (on a copy, or converting the model with
    ``inplace``), both (B, T, V): the bound on |float32 logits − float64 logits| of any float32 evaluation of the
    same network (another summation order, BLAS, kernel, cache layout or equivalent architecture).

    Every dot product a position's state passes through rounds with a practical error of √n·u relative to the sum
    of its |terms| (n = d_model for the projections, d_ff for the MLP's down projection, T keys in attention,
    n_streams for hyper-connection mixing); the unrolled depth's layers add their errors to the residual stream
    like a random walk, and the head's own d_model-term dot product adds √d·u. Relative to the head's magnitude
    M_pv = Σ_i |ĥ_pi|·|E_vi| (ĥ the head's input, E the output embedding):
        |δ logit_pv| ≤ u·(√depth·(√d + √d_ff + √T + √n_streams) + √d)·M_pv.
    A float32 evaluation that is wrong (a leak from the future, a mis-shaped head, a wrong rope) moves logits by
    orders of magnitude more."""
    cfg = model.config
    ref_model = model if inplace else copy.deepcopy(model)
    normed = []
    hook = ref_model.norm.register_forward_hook(lambda mod, args, out: normed.append(out))
    with torch.no_grad():
        ref = ref_model.double()(x)[0]
    hook.remove()
    head = ref_model.embed.weight if ref_model.lm_head is None else ref_model.lm_head.weight
    d, T = cfg.d_model, x.shape[1]
    k = math.sqrt(cfg.depth) * (math.sqrt(d) + math.sqrt(cfg.d_ff) + math.sqrt(T) + math.sqrt(cfg.n_streams)) + math.sqrt(d)
    h = normed[0].abs() / cfg.width_mult
    return ref, U32 * k * (h @ head.detach().abs().T)


def small(**kw) -> ModelConfig:
    return ModelConfig(**{**dict(vocab_size=50, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, max_seq_len=64), **kw})


def test_tiny_presets_are_cpu_sized():
    for name in ("tiny", "small"):
        n = build_model(preset(name)).num_params()
        assert 0.5e6 <= n <= 2.5e6, (name, n)
    with torch.device("meta"):
        assert build_model(preset("smollm2-135m")).num_params() == 134_515_008


@pytest.mark.parametrize("bad", [dict(d_model=30), dict(n_kv_heads=3), dict(n_layers=0), dict(d_model=36, n_heads=4),
                                 dict(vocab_size=-1), dict(rope_base=1.0)])
def test_invalid_configs_raise(bad):
    with pytest.raises(ConfigError):
        small(**bad)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown model preset"):
        preset("gpt5")


def test_loss_is_cross_entropy_and_causal():
    torch.manual_seed(0)
    m = build_model(small())
    x = torch.randint(0, 50, (2, 16))
    logits, loss = m(x, x)
    assert torch.equal(loss, F.cross_entropy(logits.reshape(-1, 50), x.reshape(-1)))  # the same call, same values
    y = x.clone()
    y[:, 10:] = (y[:, 10:] + 1) % 50
    # the past does not see the future: the first 10 positions are the same function of the same tokens, each run
    # within float64_logits' bound of it
    _, bound = float64_logits(m, x)
    assert ((m(y)[0][:, :10] - logits[:, :10]).abs() <= 2 * bound[:, :10]).all()


def test_grouped_query_attention_equals_mha_with_repeated_kv_heads():
    torch.manual_seed(0)
    gqa = build_model(small(n_kv_heads=2))
    mha = build_model(small(n_kv_heads=4))
    sd = gqa.state_dict()
    hd = 8
    for k, v in sd.items():
        if k.endswith(("attn.k.weight", "attn.v.weight")):
            sd[k] = v.view(2, hd, -1).repeat_interleave(2, dim=0).reshape(4 * hd, -1)
    mha.load_state_dict(sd)
    x = torch.randint(0, 50, (2, 12))
    _, bound = float64_logits(mha, x)  # the same function: both within the bound of its float64 value
    assert ((gqa(x)[0] - mha(x)[0]).abs() <= 2 * bound).all()


def test_rope_scores_depend_only_on_relative_position():
    cos, sin = rope_tables(8, 32, 10000.0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i, j):
        qi = apply_rope(q, cos[i : i + 1], sin[i : i + 1])
        kj = apply_rope(k, cos[j : j + 1], sin[j : j + 1])
        return (qi * kj).sum()

    # exactly equal in exact arithmetic; in float32 each rotated component x_a·cos ∓ x_b·sin carries 3u·(|x_a| +
    # |x_b|) (cos/sin from float64 rounded, two products, a sum) and the 8-term dot product 8u: per score
    # (2·3 + 8 + 1)·u·Σ_j p_j·r_j with p = |q| + |q's partner|, r the same for k
    p, r = q.abs() + q.roll(4, -1).abs(), k.abs() + k.roll(4, -1).abs()
    assert (score(5, 2) - score(20, 17)).abs() <= 2 * 15 * U32 * (p * r).sum()
    assert torch.equal(apply_rope(q, cos[:1], sin[:1]), q)  # cos 0 = 1 and sin 0 = 0 exactly


def test_tied_and_untied_heads():
    tied, untied = build_model(small()), build_model(small(tie_embeddings=False))
    assert tied.lm_head is None and untied.lm_head is not None
    assert untied.num_params() == untied.num_params(exclude_embedding=False) - 50 * 32


def test_kv_cache_chunks_equal_full_forward():
    torch.manual_seed(1)
    m = build_model(small()).eval()
    x = torch.randint(0, 50, (3, 20))
    full, _ = m(x)
    cache = KVCache(3, 32)
    parts = [m(x[:, a:b], cache=cache)[0] for a, b in [(0, 7), (7, 8), (8, 15), (15, 20)]]
    _, bound = float64_logits(m, x)  # chunked or whole: the same function, other matmul shapes
    assert ((torch.cat(parts, dim=1) - full).abs() <= 2 * bound).all()


def test_cached_generation_equals_uncached():
    torch.manual_seed(2)
    m = build_model(small()).eval()
    prompt = torch.randint(0, 50, (2, 5))
    greedy_c = m.generate(prompt, 30, temperature=0, use_cache=True)
    greedy_u = m.generate(prompt, 30, temperature=0, use_cache=False)
    assert torch.equal(greedy_c, greedy_u)
    s1 = m.generate(prompt, 30, temperature=0.9, top_k=10, generator=torch.Generator().manual_seed(3))
    s2 = m.generate(prompt, 30, temperature=0.9, top_k=10, use_cache=False, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s1, s2)


def test_top_k_one_is_greedy_and_context_limit_is_checked():
    m = build_model(small()).eval()
    prompt = torch.randint(0, 50, (1, 4))
    assert torch.equal(m.generate(prompt, 10, temperature=1.0, top_k=1), m.generate(prompt, 10, temperature=0))
    with pytest.raises(ConfigError, match="max_seq_len"):
        m.generate(prompt, 100)


def test_presets_build():
    for name in PRESETS:
        with torch.device("meta"):
            build_model(preset(name))
