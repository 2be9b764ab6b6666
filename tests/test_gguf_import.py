"""GGUF metadata read fully or refused by name: RoPE scaling, pre-tokenizers, user-defined tokens, SentencePiece
vocabularies, inconsistent or missing metadata, tensors without a place. Tiny files written by tests/gguf_files.py;
transformers (which loads the same GGUF files and Hugging Face directories) is the reference where it implements
the same thing."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from gguf_files import DROP, TEXT, bpe_vocab, tiny_config, tiny_model, write_gguf
from mechlab.errors import ConfigError
from mechlab.models import build_model
from mechlab.pretrained import read_gguf, read_hf, to_model
from mechlab.pretrained.rope import llama3_freq_factors
from mechlab.pretrained.vocab import PRE_TOKENIZERS
from test_model import float64_logits

transformers = pytest.importorskip("transformers")
SAMPLES = ["x\n\n\ny", "In 2024, 12345 foxes; isn't it ODD?  Twice  spaced\tand\r\nwindows", "émoji 🙂 and 中文",
           " leading space", "a <think> b</s> c", TEXT[:300]]
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 64}


def logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids]))[0][0]


def ids_of(n: int = 40) -> list[int]:
    return list(np.random.default_rng(1).integers(3, 300, n))


def test_tiny_gguf_round_trip(tmp_path):
    source = write_gguf(tmp_path / "m.gguf")
    got = read_gguf(tmp_path / "m.gguf")
    assert got.config.rope_freq_factors is None and got.meta["end_of_generation_ids"] == [1]
    assert torch.equal(logits(to_model(got), ids_of()), logits(source, ids_of()))  # same weights, same operations


# ---- RoPE scaling -----------------------------------------------------------------------------------------------

def hf_directory(tmp_path, model, rope_scaling: dict | None):
    """A Hugging Face Llama directory holding ``model``'s weights, with ``rope_scaling`` in its config."""
    from safetensors.torch import save_file

    cfg = model.config
    names = {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm", "attn.q": "self_attn.q_proj",
             "attn.k": "self_attn.k_proj", "attn.v": "self_attn.v_proj", "attn.o": "self_attn.o_proj",
             "mlp.gate": "mlp.gate_proj", "mlp.up": "mlp.up_proj", "mlp.down": "mlp.down_proj"}
    sd = model.state_dict()
    state = {"model.embed_tokens.weight": sd["embed.weight"], "model.norm.weight": sd["norm.weight"]}
    for i in range(cfg.n_layers):
        for src, dst in names.items():
            state[f"model.layers.{i}.{dst}.weight"] = sd[f"blocks.{i}.{src}.weight"]
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model, "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads, "intermediate_size": cfg.d_ff, "rope_theta": cfg.rope_base,
        "max_position_embeddings": cfg.max_seq_len, "tie_word_embeddings": True, "rms_norm_eps": cfg.norm_eps,
        "rope_scaling": rope_scaling}))
    from mechlab.data.tokenizers import BPETokenizer

    tok = BPETokenizer.train([TEXT], vocab_size=300)
    (tmp_path / "tokenizer.json").write_text(tok.to_json())
    return tmp_path


def assert_matches_transformers(directory, ours_model) -> None:
    """mechlab's and transformers' float32 logits each within the derived float32 bound of mechlab's model run in
    float64 (test_model.float64_logits)."""
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32).eval()
    x = torch.tensor([ids_of(60)])
    with torch.no_grad():
        ours, theirs = ours_model(x)[0][0].double(), hf(x).logits[0].double()
    ref, bound = float64_logits(ours_model, x, inplace=True)
    assert ((ours - ref).abs() <= bound).all() and ((theirs - ref).abs() <= bound).all()


@pytest.mark.parametrize("scaling", [{"rope_type": "linear", "factor": 4.0}, LLAMA3], ids=["linear", "llama3"])
def test_hf_rope_scaling_matches_transformers(tmp_path, scaling):
    source = tiny_model(tiny_config(300))
    got = read_hf(hf_directory(tmp_path, source, scaling))
    assert got.config.rope_freq_factors is not None
    model = to_model(got)
    (tmp_path / "plain").mkdir()
    plain = to_model(read_hf(hf_directory(tmp_path / "plain", source, None)))
    assert (logits(model, ids_of(60)) - logits(plain, ids_of(60))).abs().max() > 1e-3  # the scaling is not a no-op
    assert_matches_transformers(tmp_path, model)


def test_gguf_linear_scaling_and_rope_freqs_agree_with_the_hf_path(tmp_path):
    write_gguf(tmp_path / "lin.gguf", fields={"llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": 4.0})
    lin = read_gguf(tmp_path / "lin.gguf")
    assert lin.config.rope_freq_factors == (4.0,) * 8
    cfg = tiny_config(300)
    factors = llama3_freq_factors(cfg.head_dim, cfg.rope_base, 8.0, 1.0, 4.0, 64)
    assert len(set(factors)) > 2  # the test design: all three regimes (1, interpolated, factor) are present
    source = write_gguf(tmp_path / "l3.gguf", tensors={"rope_freqs.weight": np.array(factors, np.float32)})
    l3 = read_gguf(tmp_path / "l3.gguf")
    from_hf = read_hf(hf_directory(tmp_path, source, LLAMA3))
    # the GGUF stores the divisors in float32: each within one float32 rounding (relative 2^-24) of the float64 ones
    assert np.allclose(l3.config.rope_freq_factors, from_hf.config.rope_freq_factors, rtol=2**-24, atol=0)
    a, b = logits(to_model(l3), ids_of()), logits(to_model(from_hf), ids_of())
    ref, bound = float64_logits(to_model(from_hf), torch.tensor([ids_of()]), inplace=True)
    assert ((a.double() - ref).abs() <= 2 * bound).all() and ((b.double() - ref).abs() <= bound).all()


@pytest.mark.parametrize("kind", ["yarn", "longrope"])
def test_rope_scalings_not_implemented_are_refused_by_name_on_both_paths(tmp_path, kind):
    write_gguf(tmp_path / "y.gguf", fields={"llama.rope.scaling.type": kind, "llama.rope.scaling.factor": 4.0})
    with pytest.raises(ConfigError, match=kind):
        read_gguf(tmp_path / "y.gguf")
    hf_directory(tmp_path, tiny_model(tiny_config(300)), {"rope_type": kind, "factor": 4.0})
    with pytest.raises(ConfigError, match=kind):
        read_hf(tmp_path)


# ---- tokenizers -------------------------------------------------------------------------------------------------

def hf_gguf_tokenizer(path):
    return transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def test_llama_bpe_pre_tokenizer_is_used(tmp_path):
    write_gguf(tmp_path / "g.gguf")
    write_gguf(tmp_path / "l.gguf", fields={"tokenizer.ggml.pre": "llama-bpe"})
    gpt2, llama = read_gguf(tmp_path / "g.gguf").tokenizer, read_gguf(tmp_path / "l.gguf").tokenizer
    def pieces(tok):
        return [p for p, _ in tok.tok.pre_tokenizer.pre_tokenize_str("x\n\n\ny")]

    assert len(pieces(gpt2)) == 4 and len(pieces(llama)) == 3  # llama-bpe's \s*[\r\n]+ keeps "\n\n\n" whole


@pytest.mark.parametrize("pre", ["gpt-2", "llama-bpe", "qwen2", "tekken"])
def test_pre_tokenizers_match_transformers(tmp_path, pre):
    path = tmp_path / "t.gguf"
    write_gguf(path, fields={"tokenizer.ggml.pre": pre})
    ours, theirs = read_gguf(path).tokenizer, hf_gguf_tokenizer(path)
    for text in SAMPLES:
        assert ours.encode(text) == theirs.encode(text, add_special_tokens=False), (pre, text)
        assert ours.decode(ours.encode(text)) == text.replace("</s>", "")


def regex_pieces(text: str, exprs: tuple[str, ...]) -> list[str]:
    """Reference split: each expression in turn cuts the pieces of the last (matches and the stretches between
    them are pieces), with the ``regex`` module: llama.cpp's unicode_regex_split as specified."""
    import regex

    pieces = [text]
    for expr in exprs:
        out = []
        for p in pieces:
            pos = 0
            for m in regex.finditer(expr, p):
                out += [p[pos:m.start()]] if m.start() > pos else []
                out += [m.group()] if m.end() > m.start() else []
                pos = m.end()
            out += [p[pos:]] if pos < len(p) else []
        pieces = out
    return pieces


@pytest.mark.parametrize("pre", sorted(set(PRE_TOKENIZERS) - {"tekken"}))
def test_every_pre_tokenizer_splits_as_its_expressions(pre):
    from mechlab.data.tokenizers import byte_level_alphabet
    from mechlab.pretrained.vocab import pre_tokenizer

    split = pre_tokenizer(pre)
    inverse = {b: ch for ch, b in byte_level_alphabet().items()}  # pieces come out in the byte-level alphabet
    for text in SAMPLES:
        got = [p for p, _ in split.pre_tokenize_str(text)]
        want = regex_pieces(text, PRE_TOKENIZERS[pre])
        assert got == ["".join(inverse[b] for b in p.encode()) for p in want], (pre, text)


def test_smollm_splits_digits_one_by_one(tmp_path):
    write_gguf(tmp_path / "s.gguf", fields={"tokenizer.ggml.pre": "smollm"})
    tok = read_gguf(tmp_path / "s.gguf").tokenizer
    pieces = [tok.tok.id_to_token(i) for i in tok.encode("12345")]
    assert pieces == list("12345")


def test_unknown_pre_tokenizer_is_refused_by_name(tmp_path):
    write_gguf(tmp_path / "u.gguf", fields={"tokenizer.ggml.pre": "jais-v9"})
    with pytest.raises(ConfigError, match="jais-v9"):
        read_gguf(tmp_path / "u.gguf")


def test_user_defined_tokens_stay_whole(tmp_path):
    path = tmp_path / "u.gguf"
    write_gguf(path)
    tok = read_gguf(path).tokenizer
    think = bpe_vocab()[0].index("<think>")
    ids = tok.encode("a <think> b")
    assert think in ids and ids == hf_gguf_tokenizer(path).encode("a <think> b", add_special_tokens=False)
    assert "<think>" in tok.decode(ids)  # user-defined: kept when decoding, unlike control tokens


def test_sentencepiece_vocabulary_matches_transformers_token_for_token(tmp_path):
    path = tmp_path / "spm.gguf"
    write_gguf(path, spm=True)
    got = read_gguf(path)
    ours, theirs = got.tokenizer, hf_gguf_tokenizer(path)
    assert ours.add_bos and ours.bos_id == 1 and got.meta["add_bos_token"]
    for text in SAMPLES + ["", " ", "  two", "end with space ", "new\nline", "\u00e9t\u00e9 caf\u00e9"]:
        assert ours.encode(text, add_bos=True) == theirs.encode(text), text
        assert ours.encode(text) == theirs.encode(text, add_special_tokens=False), text
        assert ours.decode(ours.encode(text)) == theirs.decode(theirs.encode(text, add_special_tokens=False),
                                                               skip_special_tokens=True), text
    byte_piece = ours.tok.token_to_id("<0xF0>")
    assert byte_piece in ours.encode("🙂") and ours.token_byte_lengths()[byte_piece] == 1


def test_sentencepiece_without_space_prefix(tmp_path):
    path = tmp_path / "spm.gguf"
    write_gguf(path, spm=True, fields={"tokenizer.ggml.add_space_prefix": False})
    tok = read_gguf(path).tokenizer
    assert tok.tok.id_to_token(tok.encode("hello")[0]).startswith("\u2581") is False


# ---- inconsistent, missing or unimplemented metadata: one message each, at import --------------------------------

BAD = {
    "vocabulary longer than the embedding": (dict(vocab_rows=len(bpe_vocab()[0]) - 1), "only .* rows"),
    "vocab_size missing, vocabulary too long": (dict(vocab_rows=len(bpe_vocab()[0]) - 1,
                                                     fields={"llama.vocab_size": DROP}), "only .* rows"),
    "vocab_size disagrees with the embedding": (dict(fields={"llama.vocab_size": 7}), "vocab_size = 7"),
    "merges missing": (dict(fields={"tokenizer.ggml.merges": DROP}), "tokenizer.ggml.merges"),
    "context_length missing": (dict(fields={"llama.context_length": DROP}), "context_length"),
    "head_count missing": (dict(fields={"llama.attention.head_count": DROP}), "head_count"),
    "tokens missing": (dict(fields={"tokenizer.ggml.tokens": DROP}), "tokenizer.ggml.tokens"),
    "eos id out of range": (dict(fields={"tokenizer.ggml.eos_token_id": 99999}), "eos_token_id = 99999"),
    "unimplemented metadata": (dict(fields={"llama.attention.clamp_kqv": 8.0}), "llama.attention.clamp_kqv"),
    "logit scale": (dict(fields={"llama.logit_scale": 0.5}), "llama.logit_scale"),
    "partial rotary": (dict(fields={"llama.rope.dimension_count": 8}), "rope.dimension_count"),
    "separate head size": (dict(fields={"llama.attention.key_length": 32}), "key_length"),
    "experts": (dict(fields={"llama.expert_count": 4}), "expert"),
    "bias tensor": (dict(tensors={"blk.0.attn_q.bias": np.zeros(64)}), "blk.0.attn_q.bias"),
    "scale without a type": (dict(fields={"llama.rope.scaling.factor": 2.0}), "without a scaling type"),
    "bad rope_freqs": (dict(tensors={"rope_freqs.weight": np.zeros(8)}), "rope_freqs"),
    "add_eos_token": (dict(fields={"tokenizer.ggml.add_eos_token": True}), "add_eos_token"),
    "unknown vocabulary model": (dict(fields={"tokenizer.ggml.model": "rwkv"}), "rwkv"),
    "head_count_kv missing (tensors say 2)": (dict(fields={"llama.attention.head_count_kv": DROP}), "shape"),
    "merge of an unknown token": (dict(fields={"tokenizer.ggml.merges": ["zzqq xxyy"]}), "zzqq"),
    "padding id out of range": (dict(fields={"tokenizer.ggml.padding_token_id": 99999}), "padding_token_id"),
    "epsilon missing": (dict(fields={"llama.attention.layer_norm_rms_epsilon": DROP}), "epsilon"),
    "head of the wrong size": (dict(tensors={"output.weight": np.zeros((300, 64))}), "shape"),
    "NaN weights": (dict(tensors={"blk.1.ffn_up.weight": np.full((128, 64), np.nan)}), "NaN"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_metadata_is_one_named_error(tmp_path, case):
    kw, message = BAD[case]
    write_gguf(tmp_path / "bad.gguf", **kw)
    with pytest.raises(ConfigError, match=message):
        to_model(read_gguf(tmp_path / "bad.gguf"))  # shapes and values are checked where weights meet the model


def test_eos_list_and_named_templates(tmp_path):
    write_gguf(tmp_path / "m.gguf", fields={"tokenizer.ggml.eos_token_id": [1, 2], "tokenizer.chat_template.tool_use": "T"})
    got = read_gguf(tmp_path / "m.gguf")
    assert got.meta["end_of_generation_ids"] == [1, 2] and got.meta["chat_templates"] == {"tool_use": "T"}


def test_cli_import_exits_2_with_one_line(tmp_path):
    write_gguf(tmp_path / "bad.gguf", vocab_rows=len(bpe_vocab()[0]) - 1)
    r = subprocess.run([sys.executable, "-m", "mechlab", "import", "gguf", str(tmp_path / "bad.gguf"), "-o",
                        str(tmp_path / "out")], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "rows" in r.stderr
    assert not (tmp_path / "out").exists()


def test_config_rope_factors_round_trip_and_validate():
    cfg = tiny_config(300, rope_freq_factors=[2.0] * 8)
    assert cfg.rope_freq_factors == (2.0,) * 8 and hash(cfg)
    assert build_model(cfg).config.from_dict(json.loads(cfg.to_json())) == cfg
    for bad in ([1.0] * 7, [0.0] * 8, [float("nan")] * 8):
        with pytest.raises(ConfigError, match="rope_freq_factors"):
            tiny_config(300, rope_freq_factors=bad)
