"""Small GGUF files made for the tests: a random mechlab Transformer written the way llama.cpp's converter writes a
Llama checkpoint (q/k rows permuted for interleaved RoPE), with a byte-level BPE or a SentencePiece vocabulary,
and any metadata or tensor added, changed or removed."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mechlab.models import ModelConfig, build_model

TEXT = ("The quick brown fox jumps over the lazy dog. In 2024 the 12345 foxes said: \"isn't it odd?\"\n\n\n"
        "def f(x):\n    return x ** 2  # comment\n") * 20
DROP = object()  # a value in ``fields`` that removes the key


def llama_cpp_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """What llama.cpp's converter does to q and k rows."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@lru_cache(maxsize=1)
def bpe_vocab() -> tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...]]:
    """(tokens, token types, merges) of a small byte-level BPE trained on TEXT, with control tokens first and a
    user-defined ``<think>`` last."""
    from mechlab.data.tokenizers import BPETokenizer

    tok = BPETokenizer.train([TEXT], vocab_size=420, specials=("<s>", "</s>", "<|im_end|>"))
    spec = json.loads(tok.tok.to_str())
    vocab = spec["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])] + ["<think>"]
    types = [3 if t in ("<s>", "</s>", "<|im_end|>") else 1 for t in tokens[:-1]] + [4]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    return tuple(tokens), tuple(types), tuple(merges)


def spm_vocab() -> tuple[list[str], list[float], list[int]]:
    """(pieces, scores, types) of a small SentencePiece-style BPE: <unk>, <s>, </s>, the 256 byte pieces, then
    the merged pieces of a Metaspace BPE trained on TEXT with score = −rank, as SentencePiece writes them."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    tok.train_from_iterator([TEXT], trainers.BpeTrainer(vocab_size=300, show_progress=False))
    learned = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    pieces += [t for t in learned if t not in pieces]
    types = [2, 3, 3] + [6] * 256 + [1] * (len(pieces) - 259)
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces) - 259)]
    return pieces, scores, types


def add_fields(w, meta: dict[str, Any]) -> None:
    """Write metadata to a GGUFWriter with the type each Python value implies (DROP: left out)."""
    for key, value in meta.items():
        if value is DROP:
            continue
        if isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, int):
            w.add_uint32(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        elif isinstance(value, str):
            w.add_string(key, value)
        else:
            w.add_array(key, list(value))


def write_tensors(w, tensors: dict[str, np.ndarray]) -> None:
    """Add ``tensors`` to a GGUFWriter and write the file (header, metadata, tensors) and close it."""
    for name, t in tensors.items():
        w.add_tensor(name, np.ascontiguousarray(t))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def tiny_config(vocab_size: int, **kw: Any) -> ModelConfig:
    return ModelConfig(**{**dict(vocab_size=vocab_size, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128,
                                 max_seq_len=256, init_std=0.2), **kw})


def tiny_model(cfg: ModelConfig, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    with torch.no_grad():  # norms away from 1 so that a wrong norm mapping shows
        for _name, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(0.3 * torch.randn_like(p))
    return model


def write_gguf(path: Path, *, spm: bool = False, fields: dict[str, Any] | None = None,
               tensors: dict[str, Any] | None = None, vocab_rows: int | None = None, seed: int = 0):
    """Write a tiny llama GGUF at ``path``; returns the mechlab model whose weights it holds (unscaled RoPE).
    ``fields``: metadata to add or override (DROP removes a key); ``tensors``: extra tensors (DROP removes one);
    ``vocab_rows``: embedding rows if not the vocabulary size."""
    import gguf

    if spm:
        tokens, scores, types = spm_vocab()
        base = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.scores": scores,
                "tokenizer.ggml.token_type": types, "tokenizer.ggml.bos_token_id": 1,
                "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.unknown_token_id": 0}
    else:
        tokens, types, merges = bpe_vocab()
        base = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2", "tokenizer.ggml.tokens": list(tokens),
                "tokenizer.ggml.token_type": list(types), "tokenizer.ggml.merges": list(merges),
                "tokenizer.ggml.bos_token_id": 0, "tokenizer.ggml.eos_token_id": 1,
                "tokenizer.ggml.add_bos_token": False}
    rows = vocab_rows or len(tokens)
    cfg = tiny_config(rows)
    model = tiny_model(cfg, seed)
    meta = {"llama.vocab_size": rows, "llama.context_length": cfg.max_seq_len, "llama.embedding_length": cfg.d_model,
            "llama.block_count": cfg.n_layers, "llama.feed_forward_length": cfg.d_ff,
            "llama.attention.head_count": cfg.n_heads, "llama.attention.head_count_kv": cfg.n_kv_heads,
            "llama.rope.freq_base": cfg.rope_base, "llama.attention.layer_norm_rms_epsilon": cfg.norm_eps,
            "llama.rope.dimension_count": cfg.head_dim, "general.name": "tiny", **base, **(fields or {})}
    w = gguf.GGUFWriter(str(path), "llama")
    add_fields(w, meta)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    out = {"token_embd.weight": sd["embed.weight"], "output_norm.weight": sd["norm.weight"]}
    names = {"attn_norm": "attn_norm", "ffn_norm": "mlp_norm", "attn_q": "attn.q", "attn_k": "attn.k",
             "attn_v": "attn.v", "attn_output": "attn.o", "ffn_gate": "mlp.gate", "ffn_up": "mlp.up",
             "ffn_down": "mlp.down"}
    for i in range(cfg.n_layers):
        for dst, src in names.items():
            t = sd[f"blocks.{i}.{src}.weight"]
            if dst == "attn_q":
                t = llama_cpp_permute(t, cfg.n_heads)
            elif dst == "attn_k":
                t = llama_cpp_permute(t, cfg.n_kv_heads)
            out[f"blk.{i}.{dst}.weight"] = t
    for name, value in (tensors or {}).items():
        if value is DROP:
            out.pop(name)
        else:
            out[name] = np.asarray(value, dtype=np.float32)
    write_tensors(w, out)
    return model


def gemma_config(vocab_size: int, **kw: Any) -> ModelConfig:
    """A tiny Gemma 3 shape: six layers (five sliding-window, the sixth global, as llama.cpp's Gemma 3), head size
    32 ≠ d_model / n_heads, a 4-position window, the local RoPE base 10,000 and the global 1,000,000."""
    return ModelConfig(**{**dict(vocab_size=vocab_size, d_model=48, n_layers=6, n_heads=2, n_kv_heads=1,
                                 attn_head_dim=32, d_ff=96, max_seq_len=64, init_std=0.2, norm_eps=1e-6,
                                 rope_base=1e6, rope_local_base=1e4, window=4, global_every=6, qk_norm=True,
                                 embed_scale=True, post_norms=True, mlp_act="gelu_tanh"), **kw})


def write_gemma_gguf(path: Path, *, fields: dict[str, Any] | None = None, seed: int = 0):
    """Write a tiny Gemma 3 GGUF at ``path`` the way llama.cpp's converter writes one (RMSNorm weights stored as
    1 + w, which is mechlab's weight; q and k rows not permuted; Gemma's SentencePiece metadata); returns the
    mechlab model whose weights it holds. ``fields``: metadata to add or override (DROP removes a key)."""
    import gguf

    tokens, scores, types = spm_vocab()
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>"] + tokens[3:] + ["  ", "   "]
    types = [3, 3, 3, 2] + types[3:] + [1, 1]
    cfg = gemma_config(len(tokens))
    model = tiny_model(cfg, seed)
    a = "gemma3"
    meta = {f"{a}.context_length": cfg.max_seq_len, f"{a}.embedding_length": cfg.d_model,
            f"{a}.block_count": cfg.n_layers, f"{a}.feed_forward_length": cfg.d_ff,
            f"{a}.attention.head_count": cfg.n_heads, f"{a}.attention.head_count_kv": cfg.n_kv_heads,
            f"{a}.attention.layer_norm_rms_epsilon": cfg.norm_eps, f"{a}.attention.key_length": cfg.head_dim,
            f"{a}.attention.value_length": cfg.head_dim, f"{a}.rope.freq_base": cfg.rope_base,
            f"{a}.attention.sliding_window": cfg.window, "general.name": "tiny-gemma",
            "tokenizer.ggml.model": "llama", "tokenizer.ggml.pre": "default", "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.scores": [-1000.0] * 4 + [0.0] * 256 + [-float(i) for i in range(len(tokens) - 260)],
            "tokenizer.ggml.token_type": types, "tokenizer.ggml.bos_token_id": 2, "tokenizer.ggml.eos_token_id": 1,
            "tokenizer.ggml.unknown_token_id": 3, "tokenizer.ggml.padding_token_id": 0,
            "tokenizer.ggml.add_bos_token": True, "tokenizer.ggml.add_eos_token": False,
            "tokenizer.ggml.add_space_prefix": False, **(fields or {})}
    w = gguf.GGUFWriter(str(path), a)
    add_fields(w, meta)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    out = {"token_embd.weight": sd["embed.weight"], "output_norm.weight": sd["norm.weight"]}
    names = {"attn_norm": "attn_norm", "ffn_norm": "mlp_norm", "attn_q": "attn.q", "attn_k": "attn.k",
             "attn_v": "attn.v", "attn_output": "attn.o", "ffn_gate": "mlp.gate", "ffn_up": "mlp.up",
             "ffn_down": "mlp.down", "attn_q_norm": "attn.q_norm", "attn_k_norm": "attn.k_norm",
             "post_attention_norm": "post_attn_norm", "post_ffw_norm": "post_mlp_norm"}
    for i in range(cfg.n_layers):
        for dst, src in names.items():
            out[f"blk.{i}.{dst}.weight"] = sd[f"blocks.{i}.{src}.weight"]
    write_tensors(w, out)
    return model


def imported_tiny(directory: Path):
    """(Imported, model) of the tiny llama GGUF written in ``directory``: the source of the export tests."""
    from mechlab.pretrained import read_gguf, to_model

    path = Path(directory) / "m.gguf"
    write_gguf(path)
    got = read_gguf(path)
    return got, to_model(got)
