import pytest
import torch
import torch.nn.functional as F

from mechlab.errors import ConfigError
from mechlab.models import KVCache, ModelConfig, PRESETS, build_model, preset
from mechlab.models.transformer import apply_rope, rope_tables


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
    assert torch.allclose(loss, F.cross_entropy(logits.reshape(-1, 50), x.reshape(-1)))
    y = x.clone()
    y[:, 10:] = (y[:, 10:] + 1) % 50
    assert torch.allclose(m(y)[0][:, :10], logits[:, :10], atol=1e-6)  # the past does not see the future


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
    assert torch.allclose(gqa(x)[0], mha(x)[0], atol=1e-5)


def test_rope_scores_depend_only_on_relative_position():
    cos, sin = rope_tables(8, 32, 10000.0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i, j):
        qi = apply_rope(q, cos[i : i + 1], sin[i : i + 1])
        kj = apply_rope(k, cos[j : j + 1], sin[j : j + 1])
        return (qi * kj).sum()

    assert torch.allclose(score(5, 2), score(20, 17), atol=1e-5)
    assert torch.allclose(apply_rope(q, cos[:1], sin[:1]), q)


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
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-5)


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
