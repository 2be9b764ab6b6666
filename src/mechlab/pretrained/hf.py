"""Import a Hugging Face Llama-family checkpoint directory (config.json, safetensors, tokenizer.json).

Hugging Face's Llama layout is mechlab's (RoPE on halves, SwiGLU, RMSNorm, grouped-query attention), so the
import renames tensors and checks that the config asks for nothing the model lacks (biases, rope scaling, a head
size other than d_model / n_heads).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mechlab.errors import CheckpointError, ConfigError
from mechlab.models import ModelConfig
from mechlab.pretrained.gguf import Imported
from mechlab.pretrained.rope import hf_freq_factors

LAYER_NAMES = {"input_layernorm": "attn_norm", "post_attention_layernorm": "mlp_norm", "self_attn.q_proj": "attn.q",
               "self_attn.k_proj": "attn.k", "self_attn.v_proj": "attn.v", "self_attn.o_proj": "attn.o",
               "mlp.gate_proj": "mlp.gate", "mlp.up_proj": "mlp.up", "mlp.down_proj": "mlp.down"}


def _config(cfg: dict) -> ModelConfig:
    if cfg.get("model_type") not in ("llama", "mistral", None):
        raise ConfigError(f"Hugging Face model_type {cfg.get('model_type')!r} is not supported (Llama family only)")
    unsupported = [k for k in ("attention_bias", "mlp_bias") if cfg.get(k)]
    if cfg.get("hidden_act", "silu") != "silu":
        unsupported.append(f"hidden_act={cfg['hidden_act']}")
    heads = cfg["num_attention_heads"]
    if cfg.get("head_dim") not in (None, cfg["hidden_size"] // heads):
        unsupported.append("head_dim")
    if (cfg.get("rope_parameters") or {}).get("partial_rotary_factor", cfg.get("partial_rotary_factor", 1.0)) != 1.0:
        unsupported.append("partial_rotary_factor")
    window = cfg.get("sliding_window")
    if window is not None and window < cfg.get("max_position_embeddings", 2048):
        unsupported.append(f"sliding_window={window}")
    if cfg.get("pretraining_tp", 1) != 1:
        unsupported.append("pretraining_tp")
    if unsupported:
        raise ConfigError(f"this checkpoint uses {', '.join(unsupported)}, which mechlab's Transformer does not have")
    rope = cfg.get("rope_theta", (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0))
    factors = hf_freq_factors(cfg, cfg["hidden_size"] // heads, float(rope))
    return ModelConfig(rope_freq_factors=factors,vocab_size=cfg["vocab_size"], d_model=cfg["hidden_size"], n_layers=cfg["num_hidden_layers"],
                       n_heads=heads, n_kv_heads=cfg.get("num_key_value_heads", heads),
                       d_ff=cfg["intermediate_size"], rope_base=float(rope),
                       max_seq_len=cfg.get("max_position_embeddings", 2048),
                       tie_embeddings=bool(cfg.get("tie_word_embeddings", False)), norm_eps=cfg.get("rms_norm_eps", 1e-5))


def _tensors(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    index = directory / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else ["model.safetensors"]
    out = {}
    for f in files:
        if not (directory / f).is_file():
            raise CheckpointError(f"{directory} has no {f} (only safetensors checkpoints are imported)")
        out.update(load_file(directory / f))
    return out


def _read_json(path: Path) -> dict:
    try:
        out = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not readable JSON ({e})") from None
    if not isinstance(out, dict):
        raise ConfigError(f"{path} holds a JSON {type(out).__name__}, not an object")
    return out


def read_hf(directory: str | Path) -> Imported:
    """Read a Hugging Face Llama-family checkpoint directory into an :class:`Imported`."""
    from tokenizers import Tokenizer

    from mechlab.data.tokenizers import BPETokenizer

    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"{directory} has no config.json (not a Hugging Face checkpoint directory)")
    raw = _read_json(directory / "config.json")
    try:
        config = _config(raw)
    except (KeyError, TypeError) as e:
        raise ConfigError(f"{directory}/config.json lacks or mistypes a field the model needs ({e})") from None
    tensors = _tensors(directory)
    state = {"embed.weight": tensors.pop("model.embed_tokens.weight"), "norm.weight": tensors.pop("model.norm.weight")}
    head = tensors.pop("lm_head.weight", None)
    if not config.tie_embeddings:
        if head is None:
            raise CheckpointError(f"{directory}: untied embeddings but no lm_head.weight")
        state["lm_head.weight"] = head
    for i in range(config.n_layers):
        for src, dst in LAYER_NAMES.items():
            name = f"model.layers.{i}.{src}.weight"
            if name not in tensors:
                raise CheckpointError(f"{directory}: missing tensor {name}")
            state[f"blocks.{i}.{dst}.weight"] = tensors.pop(name)
    left = [k for k in tensors if "rotary_emb" not in k]
    if left:
        raise CheckpointError(f"{directory}: tensors this model has no place for, e.g. {left[0]}")
    if not (directory / "tokenizer.json").is_file():
        raise CheckpointError(f"{directory} has no tokenizer.json")
    tok_cfg = directory / "tokenizer_config.json"
    extra = _read_json(tok_cfg) if tok_cfg.is_file() else {}
    template = extra.get("chat_template")
    if template is None and (directory / "chat_template.jinja").is_file():
        template = (directory / "chat_template.jinja").read_text()
    gen_cfg = directory / "generation_config.json"
    generation = _read_json(gen_cfg) if gen_cfg.is_file() else {}
    eog = set()
    for value in (raw.get("eos_token_id"), generation.get("eos_token_id")):  # an id or a list of ids
        eog |= set(value) if isinstance(value, list) else ({value} if value is not None else set())
    try:
        tokenizer = BPETokenizer(Tokenizer.from_file(str(directory / "tokenizer.json")))
    except Exception as e:  # the tokenizers library raises plain Exception on a malformed file
        raise ConfigError(f"{directory}/tokenizer.json is not a tokenizer the tokenizers library can read ({e})") from None
    ids = eog | {v for k, v in {**raw, **generation}.items() if k.endswith("_token_id") and v is not None
                 and not isinstance(v, list)}
    for v in ids:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < config.vocab_size:
            raise ConfigError(f"{directory}: special token id {v!r} is not an id of the vocabulary of {config.vocab_size}")
    if tokenizer.vocab_size > config.vocab_size:
        raise ConfigError(f"{directory}: the tokenizer has {tokenizer.vocab_size} tokens but the embedding only "
                          f"{config.vocab_size} rows")
    meta = {"imported_from": {"format": "hf", "path": str(directory), "name": raw.get("_name_or_path")},
            "bos_token_id": raw.get("bos_token_id"), "eos_token_id": raw.get("eos_token_id"),
            "end_of_generation_ids": sorted(eog), "add_bos_token": tokenizer.add_bos, "chat_template": template}
    state = {k: v.float().contiguous() for k, v in state.items()}
    return Imported(config, state, tokenizer, meta)
