"""Import a Llama-family GGUF file (llama.cpp's format) into mechlab's Transformer.

The tensors are dequantised to float32 with the ``gguf`` package. llama.cpp's converter permutes the rows of
``attn_q`` and ``attn_k`` so that RoPE rotates interleaved pairs (2i, 2i+1); mechlab (like Hugging Face) rotates
the halves (i, i + D/2), so the permutation is undone here. The tokenizer is rebuilt from the file's GPT-2 style
vocabulary and merges as a byte-level BPE of the ``tokenizers`` library, with the control tokens as specials —
the construction Hugging Face transformers uses for the same file. The chat template and the special token ids
travel in the checkpoint's metadata.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mechlab.errors import CheckpointError, ConfigError
from mechlab.models import ModelConfig

log = logging.getLogger(__name__)
CONTROL = 3  # llama.cpp token type of control (special) tokens


@dataclass
class Imported:
    """What an import produces: the model config, float32 weights under mechlab's names, the tokenizer, and
    metadata for the checkpoint (source, special token ids, chat template)."""

    config: ModelConfig
    state: dict[str, torch.Tensor]
    tokenizer: Any
    meta: dict[str, Any] = field(default_factory=dict)


def unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's per-head row permutation of a q or k projection (out, in): rows (2i, 2i+1) of each head
    go back to (i, i + head_dim/2)."""
    out, inp = w.shape
    return w.reshape(n_heads, out // n_heads // 2, 2, inp).swapaxes(1, 2).reshape(out, inp)


def _field(reader, key: str, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def _tokenizer(reader):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    from mechlab.data.tokenizers import BPETokenizer

    kind = _field(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise ConfigError(f"GGUF tokenizer model {kind!r} is not supported (only byte-level BPE, 'gpt2')")
    tokens = list(_field(reader, "tokenizer.ggml.tokens"))
    types = list(_field(reader, "tokenizer.ggml.token_type", [1] * len(tokens)))
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == CONTROL])
    return BPETokenizer(tok), tokens


def read_gguf(path: str | Path) -> Imported:
    """Read a Llama-architecture GGUF file into an :class:`Imported`."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"GGUF file {path} does not exist")
    try:
        reader = GGUFReader(path)
    except Exception as e:  # the reader raises ValueError / struct errors on a damaged file
        raise CheckpointError(f"{path} is not a readable GGUF file ({e})") from e
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ConfigError(f"GGUF architecture {arch!r} is not supported (only 'llama'-family models)")

    def key(name, default=None):
        return _field(reader, f"llama.{name}", default)

    n_heads, n_kv = int(key("attention.head_count")), int(key("attention.head_count_kv", key("attention.head_count")))
    tensors = {t.name: t for t in reader.tensors}
    tokenizer, tokens = _tokenizer(reader)
    d_model = int(key("embedding_length"))
    if key("rope.dimension_count") not in (None, d_model // n_heads):
        raise ConfigError("GGUF: partial rotary embeddings are not supported")
    config = ModelConfig(
        vocab_size=int(key("vocab_size", len(tokens))), d_model=d_model, n_layers=int(key("block_count")),
        n_heads=n_heads, n_kv_heads=n_kv, d_ff=int(key("feed_forward_length")),
        rope_base=float(key("rope.freq_base", 10000.0)), max_seq_len=int(key("context_length")),
        tie_embeddings="output.weight" not in tensors, norm_eps=float(key("attention.layer_norm_rms_epsilon", 1e-5)))

    def weight(name: str) -> np.ndarray:
        if name not in tensors:
            raise CheckpointError(f"GGUF file {path} has no tensor {name}")
        t = tensors[name]
        return np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=np.float32)

    names = {"attn_norm": "attn_norm.weight", "ffn_norm": "mlp_norm.weight", "attn_q": "attn.q.weight",
             "attn_k": "attn.k.weight", "attn_v": "attn.v.weight", "attn_output": "attn.o.weight",
             "ffn_gate": "mlp.gate.weight", "ffn_up": "mlp.up.weight", "ffn_down": "mlp.down.weight"}
    state = {"embed.weight": weight("token_embd.weight"), "norm.weight": weight("output_norm.weight")}
    if not config.tie_embeddings:
        state["lm_head.weight"] = weight("output.weight")
    for i in range(config.n_layers):
        for src, dst in names.items():
            w = weight(f"blk.{i}.{src}.weight")
            if src == "attn_q":
                w = unpermute_rope_rows(w, n_heads)
            elif src == "attn_k":
                w = unpermute_rope_rows(w, n_kv)
            state[f"blocks.{i}.{dst}"] = w
    meta = {"imported_from": {"format": "gguf", "path": str(path), "name": _field(reader, "general.name"),
                              "file_type": int(_field(reader, "general.file_type", -1))},
            "bos_token_id": _field(reader, "tokenizer.ggml.bos_token_id"),
            "eos_token_id": _field(reader, "tokenizer.ggml.eos_token_id"),
            "chat_template": _field(reader, "tokenizer.chat_template")}
    return Imported(config, {k: torch.from_numpy(np.array(v)) for k, v in state.items()}, tokenizer, meta)
