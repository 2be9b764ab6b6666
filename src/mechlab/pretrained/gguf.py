"""Import a Llama-family or Gemma 3 GGUF file (llama.cpp's format) into mechlab's Transformer.

The tensors are dequantised to float32 with the ``gguf`` package. llama.cpp's converter permutes the rows of
``attn_q`` and ``attn_k`` so that RoPE rotates interleaved pairs (2i, 2i+1); mechlab (like Hugging Face) rotates
the halves (i, i + D/2), so the permutation is undone here. The tokenizer is rebuilt from the file's vocabulary
(pretrained/vocab.py: byte-level BPE with the declared pre-tokenizer, or SentencePiece with byte fallback). RoPE
frequency scaling (linear, rope_freqs factors) becomes ``rope_freq_factors`` (pretrained/rope.py). Metadata that
changes what the model computes is read or refused by name, never skipped; so are tensors without a place. The
chat template, the special token ids and every end-of-generation id travel in the checkpoint's metadata.

Gemma 3 (``general.architecture`` gemma3; Gemma 3 270M is the reference file) sets the Gemma switches of
:class:`ModelConfig`: embeddings × √d_model, QK-RMSNorm, post-norms, GeGLU, head size ``attention.key_length``,
sliding-window attention of ``attention.sliding_window`` positions on five of every six layers with their own RoPE
base (``rope.freq_base_swa``, else llama.cpp's Gemma 3 value 10,000), every sixth layer global with
``rope.freq_base``. llama.cpp's converter stores Gemma's RMSNorm weights as 1 + w (Gemma computes x̂·(1 + w)), so
they load unchanged into mechlab's x̂·w; its q and k rows are not permuted (Gemma's RoPE rotates halves). The
attention scale is 1/√head_dim, llama.cpp's for every Gemma 3 size but 27B (62 layers, 1/√(d_model / n_heads)),
which is refused; so are logit softcapping and RoPE scaling, which Gemma 3 270M does not use.
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


# GGUF metadata of a llama-architecture file, by what mechlab does with it. Every key that changes what the
# model computes is implemented (read below) or refused by name; the rest describe the file.
ARCH_KEYS = {"vocab_size", "context_length", "embedding_length", "block_count", "feed_forward_length",
             "attention.head_count", "attention.head_count_kv", "attention.layer_norm_rms_epsilon",
             "attention.key_length", "attention.value_length", "rope.freq_base", "rope.dimension_count",
             "rope.scaling.type", "rope.scaling.factor", "expert_count", "expert_used_count"}
ARCH_INFO = {"rope.scaling.original_context_length", "rope.scaling.finetuned", "tensor_data_layout"}
TOKENIZER_KEYS = {"model", "pre", "tokens", "token_type", "token_type_count", "scores", "merges", "bos_token_id",
                  "eos_token_id", "eot_token_id", "eom_token_id", "unknown_token_id", "padding_token_id",
                  "seperator_token_id", "cls_token_id", "mask_token_id", "add_bos_token", "add_eos_token",
                  "add_sep_token", "add_space_prefix", "remove_extra_whitespaces", "precompiled_charsmap",
                  "fim_pre_token_id", "fim_suf_token_id", "fim_mid_token_id", "fim_pad_token_id", "fim_rep_token_id",
                  "fim_sep_token_id", "prefix_token_id", "suffix_token_id", "middle_token_id"}
GEMMA3_KEYS = {"vocab_size", "context_length", "embedding_length", "block_count", "feed_forward_length",
               "attention.head_count", "attention.head_count_kv", "attention.layer_norm_rms_epsilon",
               "attention.key_length", "attention.value_length", "rope.freq_base", "rope.freq_base_swa",
               "rope.dimension_count", "attention.sliding_window"}
# Gemma 3 metadata mechlab refuses by name (absent from Gemma 3 270M): why it changes the computation
GEMMA3_REFUSED = {
    "final_logit_softcapping": "final logit softcapping (Gemma 2) is not implemented",
    "attn_logit_softcapping": "attention logit softcapping (Gemma 2) is not implemented",
    "rope.scaling.type": "RoPE scaling of the global layers (Gemma 3 4B and larger) is not implemented",
    "rope.scaling.factor": "RoPE scaling of the global layers (Gemma 3 4B and larger) is not implemented",
    "attention.sliding_window_pattern": "a sliding-window layer pattern other than llama.cpp's fixed 5 local : 1 "
                                        "global is not implemented",
}
GEMMA3_GLOBAL_EVERY = 6  # llama.cpp (and transformers' sliding_window_pattern): layers 5, 11, 17, … are global
GEMMA3_LOCAL_ROPE_BASE = 10000.0  # llama.cpp's Gemma 3 local-layer RoPE base when the file has no freq_base_swa
REQUIRED = ("embedding_length", "block_count", "feed_forward_length", "attention.head_count", "context_length",
            "attention.layer_norm_rms_epsilon")  # llama.cpp requires the epsilon too: no silent default
# llama.cpp's per-block tensor name (blk.N.NAME.weight) -> mechlab's module (blocks.N.MODULE.weight), both directions
LLAMA_BLOCK_TENSORS = {"attn_norm": "attn_norm", "ffn_norm": "mlp_norm", "attn_q": "attn.q", "attn_k": "attn.k",
                       "attn_v": "attn.v", "attn_output": "attn.o", "ffn_gate": "mlp.gate", "ffn_up": "mlp.up",
                       "ffn_down": "mlp.down"}
END_OF_GENERATION = ("eos_token_id", "eot_token_id", "eom_token_id")


def _check_keys(reader, arch: str) -> None:
    """Refuse, by name, metadata this import would otherwise skip although it changes the computation."""
    known = GEMMA3_KEYS if arch == "gemma3" else ARCH_KEYS | ARCH_INFO
    if arch == "gemma3":
        for name, why in GEMMA3_REFUSED.items():
            if f"gemma3.{name}" in reader.fields:
                raise ConfigError(f"GGUF gemma3.{name}: {why}; refusing rather than skipping it")
    unknown = []
    for key in reader.fields:
        if key.startswith("GGUF.") or key.startswith("general.") or key.startswith("tokenizer.chat_template"):
            continue
        if key.startswith(f"{arch}."):
            name = key[len(arch) + 1:]
            if name not in known:
                unknown.append(key)
        elif key.startswith("tokenizer.ggml."):
            if key[len("tokenizer.ggml."):] not in TOKENIZER_KEYS:
                unknown.append(key)
        elif not key.startswith("tokenizer.") and not key.startswith("quantize."):
            unknown.append(key)
    if unknown:
        raise ConfigError(f"GGUF metadata {', '.join(unknown[:4])}{' …' if len(unknown) > 4 else ''} is not "
                          f"implemented by mechlab's import and may change what the model computes; refusing "
                          f"rather than skipping it")


def _rope_freq_factors(reader, key, tensors: dict, head_dim: int, weight) -> tuple[float, ...] | None:
    """RoPE frequency divisors from ``rope.scaling.*`` and the ``rope_freqs`` tensor (pretrained/rope.py)."""
    from mechlab.pretrained.rope import linear_freq_factors

    kind = key("rope.scaling.type", "none")
    factor = key("rope.scaling.factor")
    if kind not in ("none", "linear"):
        raise ConfigError(f"GGUF rope.scaling.type = {kind!r} is not supported (mechlab implements none, linear and "
                          f"per-frequency factors from a rope_freqs tensor); it would change what the model computes")
    factors = linear_freq_factors(head_dim, factor, "GGUF rope.scaling.factor") if kind == "linear" else None
    if kind == "none" and factor not in (None, 1, 1.0):
        raise ConfigError(f"GGUF rope.scaling.factor = {factor} without a scaling type")
    if "rope_freqs.weight" in tensors:
        freqs = weight("rope_freqs.weight").reshape(-1).astype(np.float64)
        if freqs.size != head_dim // 2 or not np.all(np.isfinite(freqs)) or not np.all(freqs > 0):
            raise ConfigError(f"GGUF rope_freqs tensor must hold {head_dim // 2} finite positive factors, "
                              f"got {freqs.size}")
        factors = tuple(float(f) * (factors[0] if factors else 1.0) for f in freqs)
    return factors


def read_gguf(path: str | Path) -> Imported:
    """Read a Llama-architecture or Gemma 3 GGUF file into an :class:`Imported`.

    Raises CheckpointError for an unreadable file or a missing tensor, ConfigError for metadata that is missing,
    inconsistent or not implemented (every such case is named: nothing that changes the computation is skipped).
    """
    from gguf import GGUFReader
    from gguf.quants import dequantize

    from mechlab.pretrained.vocab import gguf_tokenizer

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"GGUF file {path} does not exist")
    try:
        reader = GGUFReader(path)
    except Exception as e:  # the reader raises ValueError / struct errors on a damaged file
        raise CheckpointError(f"{path} is not a readable GGUF file ({e})") from e
    arch = _field(reader, "general.architecture")
    if arch not in ("llama", "gemma3"):
        raise ConfigError(f"GGUF architecture {arch!r} is not supported ('llama'-family models and 'gemma3')")
    _check_keys(reader, arch)
    gemma = arch == "gemma3"

    def key(name, default=None):
        return _field(reader, f"{arch}.{name}", default)

    missing = [f"{arch}.{k}" for k in REQUIRED if key(k) is None]
    if missing:
        raise ConfigError(f"GGUF metadata {', '.join(missing)} missing: the model's shape cannot be read")
    if key("expert_count", 0) or key("expert_used_count", 0):
        raise ConfigError(f"GGUF {arch}.expert_count: mixture-of-experts models are not supported")
    n_heads = int(key("attention.head_count"))
    n_kv = int(key("attention.head_count_kv", n_heads))
    tensors = {t.name: t for t in reader.tensors}
    tokenizer, tokens = gguf_tokenizer(reader)
    d_model = int(key("embedding_length"))
    if gemma:
        head_dim = int(key("attention.key_length", d_model // n_heads))
        for name in ("rope.dimension_count", "attention.value_length"):
            if key(name) not in (None, head_dim):
                raise ConfigError(f"GGUF gemma3.{name} = {key(name)} differs from attention.key_length = {head_dim} "
                                  f"(partial rotary or another value size), which mechlab does not have")
        if int(key("block_count")) == 62:
            raise ConfigError("GGUF gemma3 with 62 layers (Gemma 3 27B): llama.cpp scales its queries by "
                              "1/√(embedding_length / head_count), which mechlab's import does not implement")
        if key("attention.sliding_window") is None:
            raise ConfigError("GGUF gemma3.attention.sliding_window missing: the local layers' window is unknown")
    else:
        if d_model % n_heads:
            raise ConfigError(f"GGUF embedding_length {d_model} is not a multiple of attention.head_count {n_heads}")
        head_dim = d_model // n_heads
        for name in ("rope.dimension_count", "attention.key_length", "attention.value_length"):
            if key(name) not in (None, head_dim):
                raise ConfigError(f"GGUF llama.{name} = {key(name)} differs from embedding_length / head_count = "
                                  f"{head_dim} (partial rotary or a separate head size), which mechlab does not have")

    def weight(name: str) -> np.ndarray:
        if name not in tensors:
            raise CheckpointError(f"GGUF file {path} has no tensor {name}")
        t = tensors[name]
        used.add(name)
        return np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=np.float32)

    used: set[str] = set()
    embed = weight("token_embd.weight")
    rows = embed.shape[0]
    vocab_size = int(key("vocab_size", rows))
    if vocab_size != rows:
        raise ConfigError(f"GGUF {arch}.vocab_size = {vocab_size} but token_embd has {rows} rows")
    if len(tokens) > rows:
        raise ConfigError(f"GGUF tokenizer has {len(tokens)} tokens but the embedding only {rows} rows: ids past "
                          f"{rows - 1} would have no embedding")
    meta_ids = {k: _field(reader, f"tokenizer.ggml.{k}") for k in ("bos_token_id", *END_OF_GENERATION)}
    for field_name in sorted(k for k in reader.fields if k.startswith("tokenizer.ggml.") and k.endswith("_token_id")):
        value = _field(reader, field_name)
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= int(v) < len(tokens):
                raise ConfigError(f"GGUF {field_name} = {value!r} is not a token id (vocabulary of {len(tokens)})")
    gemma_switches = {}
    if gemma:
        gemma_switches = dict(attn_head_dim=head_dim, qk_norm=True, embed_scale=True, post_norms=True,
                              mlp_act="gelu_tanh", window=int(key("attention.sliding_window")),
                              global_every=GEMMA3_GLOBAL_EVERY,
                              rope_local_base=float(key("rope.freq_base_swa", GEMMA3_LOCAL_ROPE_BASE)))
    config = ModelConfig(
        vocab_size=vocab_size, d_model=d_model, n_layers=int(key("block_count")),
        n_heads=n_heads, n_kv_heads=n_kv, d_ff=int(key("feed_forward_length")),
        rope_base=float(key("rope.freq_base", 10000.0)), max_seq_len=int(key("context_length")),
        rope_freq_factors=None if gemma else _rope_freq_factors(reader, key, tensors, head_dim, weight),
        tie_embeddings="output.weight" not in tensors, norm_eps=float(key("attention.layer_norm_rms_epsilon", 1e-5)),
        **gemma_switches)

    names = {src: f"{dst}.weight" for src, dst in LLAMA_BLOCK_TENSORS.items()}
    if gemma:  # norms stored as 1 + w by llama.cpp's converter: exactly the weight of mechlab's x̂·w
        names.update({"attn_q_norm": "attn.q_norm.weight", "attn_k_norm": "attn.k_norm.weight",
                      "post_attention_norm": "post_attn_norm.weight", "post_ffw_norm": "post_mlp_norm.weight"})
    state = {"embed.weight": embed, "norm.weight": weight("output_norm.weight")}
    if not config.tie_embeddings:
        state["lm_head.weight"] = weight("output.weight")
    for i in range(config.n_layers):
        for src, dst in names.items():
            w = weight(f"blk.{i}.{src}.weight")
            if gemma:  # llama.cpp keeps Gemma's q, k rows (NeoX-style RoPE, halves)
                pass
            elif src == "attn_q":
                w = unpermute_rope_rows(w, n_heads)
            elif src == "attn_k":
                w = unpermute_rope_rows(w, n_kv)
            state[f"blocks.{i}.{dst}"] = w
    left = sorted(set(tensors) - used)
    if left:
        raise ConfigError(f"GGUF tensors {', '.join(left[:3])}{' …' if len(left) > 3 else ''} have no place in "
                          f"mechlab's Transformer (biases, extra norms or layers); refusing rather than dropping them")
    eog = sorted({int(i) for k, v in meta_ids.items() if k != "bos_token_id" and v is not None
                  for i in (v if isinstance(v, list) else [v])})
    meta = {"imported_from": {"format": "gguf", "path": str(path), "name": _field(reader, "general.name"),
                              "file_type": int(_field(reader, "general.file_type", -1))},
            "tokenizer_pre": _field(reader, "tokenizer.ggml.pre"),
            "bos_token_id": meta_ids["bos_token_id"], "eos_token_id": meta_ids["eos_token_id"],
            "end_of_generation_ids": eog, "add_bos_token": tokenizer.add_bos,
            "chat_template": _field(reader, "tokenizer.chat_template"),
            "chat_templates": {k[len("tokenizer.chat_template."):]: _field(reader, k) for k in reader.fields
                               if k.startswith("tokenizer.chat_template.")}}
    return Imported(config, {k: torch.from_numpy(np.array(v)) for k, v in state.items()}, tokenizer, meta)
