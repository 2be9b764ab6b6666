"""Export a mechlab checkpoint of the Llama family to GGUF, the file format of llama.cpp.

The inverse of :func:`mechlab.pretrained.gguf.read_gguf` for ``general.architecture = llama``: the same tensor
names (``token_embd``, ``blk.N.attn_q`` …, ``output_norm``, ``output`` when the head is untied), the rows of
``attn_q`` and ``attn_k`` permuted back to llama.cpp's interleaved RoPE pairs (2i, 2i+1), RoPE frequency factors as
a ``rope_freqs`` tensor, and the tokenizer as a byte-level BPE (``tokenizer.ggml.model = gpt2``) with its merges,
special tokens, BOS setting and chat template.

Tensor types (``qtype``): ``f32`` and ``f16`` keep the weights as floats; ``q8_0``, ``q4_0`` and ``q4_1`` are
llama.cpp's block formats of 32 weights (one fp16 scale, plus an fp16 minimum for Q4_1), rounded by the ``gguf``
package's reference quantiser, which is llama.cpp's own rounding. Norm weights and the RoPE factors stay float32,
as llama.cpp requires. A layer quantised by GPTQ or RTN with the same llama.cpp ``format`` as ``qtype``
(:data:`mechlab.quant.scalar.BLOCK_FORMATS`) is written as it is stored: its codes, d (and m) become the blocks
bit for bit, no requantisation. Any other quantised layer (trellis codes, which have no llama.cpp type; GPTQ/RTN
on mechlab's own grid or another format) is exported from its dequantised weights, as float or requantised to the
block type, and the export says so in a log line.

:func:`export_hf` writes the Hugging Face form instead (``LlamaForCausalLM``, float32 safetensors): the inverse of
:func:`mechlab.pretrained.hf.read_hf`, through its table of tensor names.

What a Llama file cannot express is refused by name: looped and hyper-connected models, μP output scaling, the
Gemma and PMNet switches (sliding windows, QK-norm, post-norms, GeGLU, the phasor memory), and tokenizers that are
not byte-level BPE.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from mechlab.errors import ConfigError
from mechlab.pretrained.gguf import LLAMA_BLOCK_TENSORS
from mechlab.utils import file_on_path

log = logging.getLogger(__name__)
QTYPES = ("f32", "f16", "q8_0", "q4_0", "q4_1")
# the GGUF file types (general.file_type, llama.cpp's enum llama_ftype) of the all-tensor formats
FILE_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7}
# token types of tokenizer.ggml.token_type (llama.cpp's llama_token_type)
NORMAL, CONTROL, USER_DEFINED = 1, 3, 4
# ModelConfig switches a llama-architecture GGUF has no place for, with the value a Llama model has
NOT_LLAMA = {"arch": "transformer", "n_loops": 1, "n_streams": 1, "loop_embedding": False, "parametrization": "sp",
             "attn_head_dim": None, "window": None, "qk_norm": False, "memory": False, "embed_scale": False,
             "post_norms": False, "mlp_act": "silu", "global_every": None, "rope_local_base": None}


def permute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's per-head row order of a q or k projection (out, in): rows (i, i + head_dim/2) of each head become
    rows (2i, 2i+1). Inverse of :func:`mechlab.pretrained.gguf.unpermute_rope_rows`."""
    out, inp = w.shape
    return w.reshape(n_heads, 2, out // n_heads // 2, inp).swapaxes(1, 2).reshape(out, inp)


def check_exportable(config, what: str = "GGUF export") -> None:
    """Raise ConfigError naming the first setting of ``config`` (a ModelConfig) a Llama file (GGUF ``llama``
    architecture, Hugging Face ``LlamaForCausalLM``) cannot hold; ``what`` starts the message."""
    for name, value in NOT_LLAMA.items():
        have = getattr(config, name)
        if have != value:
            raise ConfigError(f"{what}: {name} = {have!r} has no place in a Llama model file (a Llama model has "
                              f"{value!r}); only plain Llama-family models can be exported")
    head_dim = config.d_model // config.n_heads
    if config.d_model % config.n_heads or head_dim % 2:
        raise ConfigError(f"{what}: d_model {config.d_model} / n_heads {config.n_heads} must be an even integer")


def _pre_exprs(pt: dict) -> tuple[str, ...]:
    """The regular expressions a tokenizer.json pre-tokenizer splits with before its byte-level step (GPT-2's
    byte-level split alone: its one expression); () when it is not of that shape."""
    from mechlab.pretrained.vocab import GPT2

    if pt.get("type") == "ByteLevel" and pt.get("use_regex", True):
        return (GPT2,)
    if pt.get("type") == "Sequence":
        steps = pt.get("pretokenizers", [])
        exprs = tuple((p.get("pattern") or {}).get("Regex", "") for p in steps if p.get("type") == "Split")
        if steps and steps[-1].get("type") == "ByteLevel" and len(exprs) == len(steps) - 1:
            return exprs
    return ()


def _pre_name(pt: dict, known: dict[str, tuple[str, ...]]) -> str:
    """llama.cpp's name of a tokenizer.json pre-tokenizer: GPT-2's byte-level split is ``gpt2``; a sequence of regex
    splits before a byte-level step is the first name of :data:`~mechlab.pretrained.vocab.PRE_TOKENIZERS` with the
    same expressions. Raises ConfigError when none matches."""
    exprs = _pre_exprs(pt)
    for name, known_exprs in known.items():
        if exprs and known_exprs == exprs:
            return name
    raise ConfigError("GGUF export: the tokenizer's pre-tokenizer is not one of llama.cpp's that mechlab knows; give "
                      "its llama.cpp name with --pre (e.g. llama-bpe, qwen2, smollm)")


def gguf_vocab(tokenizer, meta: dict, pre: str | None = None) -> dict:
    """The tokenizer fields of a llama.cpp byte-level BPE vocabulary (tokenizer.ggml.*) from a mechlab tokenizer.

    ``pre`` names llama.cpp's pre-tokenizer; by default the one the checkpoint was imported with
    (``meta['tokenizer_pre']``), else the name whose regular expressions the tokenizer's pre-tokenizer applies
    (GPT-2's byte-level split is ``gpt2``). Raises ConfigError for
    a byte tokenizer or a SentencePiece vocabulary (not exportable here), for an unknown pre-tokenizer, and for one
    whose expressions differ from the tokenizer's own (llama.cpp would tokenise otherwise)."""
    from mechlab.pretrained.vocab import PRE_TOKENIZERS

    tok = getattr(tokenizer, "tok", None)
    if tok is None:
        raise ConfigError("GGUF export: only BPE tokenizers (tokenizer.json) can be exported, not the byte tokenizer")
    spec = json.loads(tok.to_str())
    model, decoder = spec.get("model") or {}, spec.get("decoder") or {}
    if model.get("type") != "BPE" or decoder.get("type") != "ByteLevel":
        raise ConfigError("GGUF export: the tokenizer is not a byte-level BPE (SentencePiece vocabularies are not "
                          "exported); llama.cpp's 'gpt2' vocabulary needs one")
    if pre is None:
        pre = meta.get("tokenizer_pre")
    if pre is None:
        pre = _pre_name(spec.get("pre_tokenizer") or {}, PRE_TOKENIZERS)
    if pre not in PRE_TOKENIZERS:
        raise ConfigError(f"GGUF export: pre-tokenizer {pre!r} is not one mechlab can check; known: "
                          f"{', '.join(sorted(PRE_TOKENIZERS))}")
    own = _pre_exprs(spec.get("pre_tokenizer") or {})
    if own and PRE_TOKENIZERS[pre] != own:  # llama.cpp would split text otherwise than the tokenizer does
        same = [n for n, e in PRE_TOKENIZERS.items() if e == own]
        raise ConfigError(f"GGUF export: pre-tokenizer {pre!r} splits text differently from this tokenizer's own "
                          f"pre-tokenizer ({', '.join(same) or 'one llama.cpp does not name'}); llama.cpp would "
                          f"tokenise differently")
    vocab = model["vocab"]
    n = tok.get_vocab_size()
    tokens = [""] * n
    for t, i in vocab.items():
        tokens[i] = t
    types = [NORMAL] * n
    for added in spec.get("added_tokens", []):
        tokens[added["id"]] = added["content"]
        types[added["id"]] = CONTROL if added.get("special") else USER_DEFINED
    if any(t == "" for t in tokens):
        raise ConfigError("GGUF export: the tokenizer's ids are not contiguous")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return {"model": "gpt2", "pre": pre, "tokens": tokens, "types": types, "merges": merges}


def _float_state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """Every weight of ``model`` as float32 numpy, quantised Linear layers and embedding tables through their
    dequantised weights."""
    from mechlab.quant.embedding import QuantizedEmbedding
    from mechlab.quant.linear import QuantizedLinear

    state, inside = {}, ()
    for name, module in model.named_modules():
        if not name or name.startswith(inside):
            continue
        if isinstance(module, QuantizedLinear):
            state[f"{name}.weight"] = module.weight().detach().float().cpu().numpy()
        elif isinstance(module, QuantizedEmbedding):
            state[f"{name}.weight"] = module.weight.detach().float().cpu().numpy()[: module.num_embeddings]
            inside = (f"{name}.",)
        else:
            w = getattr(module, "weight", None)
            if isinstance(w, torch.Tensor) and not any(True for _ in module.children()):
                state[f"{name}.weight"] = w.detach().float().cpu().numpy()
    return state


def _quantized(model: torch.nn.Module) -> dict[str, str]:
    """Weight name -> a short description of the quantised layer or table holding it (absent: float)."""
    from mechlab.quant.embedding import QuantizedEmbedding
    from mechlab.quant.linear import QuantizedLinear

    out = {}
    for name, module in model.named_modules():
        if isinstance(module, QuantizedLinear | QuantizedEmbedding) and "inner" not in name.split("."):
            fmt = getattr(module.config, "format", None)
            out[f"{name}.weight"] = f"{module.config.method}{'' if fmt is None else f' {fmt}'}"
    return out


def _stored_blocks(model: torch.nn.Module, qtype: str) -> dict[str, tuple]:
    """Weight name -> (codes (out, in), d, m or None) of every IntLinear stored in llama.cpp's ``qtype`` blocks."""
    from mechlab.quant.linear import IntLinear

    out = {}
    for name, module in model.named_modules():
        if isinstance(module, IntLinear) and module.format is not None and module.format.name == qtype:
            mins = None if module.format.zero is not None else module.mins.float().numpy()
            out[f"{name}.weight"] = (module.codes().numpy(), module.scales.float().numpy(), mins)
    return out


def export_gguf(model: torch.nn.Module, tokenizer, meta: dict, out: str | Path, qtype: str = "f32",
                pre: str | None = None, name: str | None = None) -> Path:
    """Write ``model`` (a mechlab Llama-family Transformer, float or quantised) with its tokenizer to the GGUF file
    ``out``, tensors of type ``qtype`` (one of :data:`QTYPES`; matrices only: norms stay float32). Layers stored in
    ``qtype``'s own blocks (GPTQ / RTN with ``format=qtype``) are written code for code; other quantised weights
    are dequantised first (logged).

    Raises ConfigError for a model or tokenizer a llama-architecture file cannot hold, an unknown ``qtype``, a
    matrix whose rows are not a multiple of the block size (32) for the block formats, and an ``out`` that is a
    folder. The file is written atomically."""
    import gguf
    from gguf.quants import quantize

    from mechlab.quant.scalar import block_bytes, block_format
    from mechlab.utils import atomic_path

    if qtype not in QTYPES:
        raise ConfigError(f"GGUF export: tensor type {qtype!r} is not one of {', '.join(QTYPES)}")
    config = model.config
    check_exportable(config)
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"GGUF export: output {out} is a folder; give a file name ending in .gguf")
    vocab = gguf_vocab(tokenizer, meta, pre)
    if len(vocab["tokens"]) > config.vocab_size:
        raise ConfigError(f"GGUF export: the tokenizer has {len(vocab['tokens'])} tokens but the model only "
                          f"{config.vocab_size} embedding rows")
    state = _float_state(model)
    stored = _stored_blocks(model, qtype) if qtype in ("q8_0", "q4_0", "q4_1") else {}
    requantised = {k: v for k, v in _quantized(model).items() if k not in stored}
    if requantised:
        kinds = ", ".join(sorted(set(requantised.values())))
        how = "written as float" if qtype in ("f32", "f16") else f"requantised to {qtype} by llama.cpp's rounding"
        log.info("GGUF export: %d quantised weights (%s) are %s from their dequantised values", len(requantised),
                 kinds, how)
    if stored:
        log.info("GGUF export: %d layers stored in %s blocks are written code for code", len(stored), qtype)
    if qtype not in ("f32", "f16") and "embed.weight" not in requantised:
        log.warning("GGUF export: the token embedding%s is float in the checkpoint and rounded to %s in the file "
                    "(llama.cpp's rounding): the file's model differs from the checkpoint's by that rounding",
                    " / LM head (tied)" if config.tie_embeddings else " and the LM head", qtype)
    n_kv = config.n_kv_heads or config.n_heads
    head_dim = config.d_model // config.n_heads
    gtype = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
             "q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0,
             "q4_1": gguf.GGMLQuantizationType.Q4_1}[qtype]

    tensors: list[tuple[str, np.ndarray, bool]] = [("token_embd.weight", state["embed.weight"], True),
                                                  ("output_norm.weight", state["norm.weight"], False)]
    if not config.tie_embeddings:
        tensors.append(("output.weight", state["lm_head.weight"], True))
    raw: dict[str, np.ndarray] = {}  # tensor name -> block bytes written as stored
    for i in range(config.n_layers):
        for dst, src in LLAMA_BLOCK_TENSORS.items():
            key = f"blocks.{i}.{src}.weight"
            w = state[key]
            heads = {"attn_q": config.n_heads, "attn_k": n_kv}.get(dst)
            perm = (lambda a, h=heads: permute_rope_rows(a, h)) if heads else (lambda a: a)  # rows of q / k
            w = perm(w)
            if key in stored:
                q, d, m = stored[key]
                raw[f"blk.{i}.{dst}.weight"] = block_bytes(torch.from_numpy(perm(q)), torch.from_numpy(perm(d)),
                                                           None if m is None else torch.from_numpy(perm(m)),
                                                           block_format(qtype))
            tensors.append((f"blk.{i}.{dst}.weight", w, w.ndim == 2))
    if config.rope_freq_factors is not None:
        tensors.append(("rope_freqs.weight", np.asarray(config.rope_freq_factors, np.float32), False))

    with atomic_path(out) as tmp:
        w = gguf.GGUFWriter(str(tmp), "llama")
        w.add_name(name or (meta.get("imported_from") or {}).get("name") or out.stem)
        w.add_file_type(FILE_TYPES[qtype])
        w.add_vocab_size(config.vocab_size)
        w.add_context_length(config.max_seq_len)
        w.add_embedding_length(config.d_model)
        w.add_block_count(config.n_layers)
        w.add_feed_forward_length(config.d_ff)
        w.add_head_count(config.n_heads)
        w.add_head_count_kv(n_kv)
        w.add_rope_dimension_count(head_dim)
        w.add_rope_freq_base(float(config.rope_base))
        w.add_layer_norm_rms_eps(float(config.norm_eps))
        w.add_tokenizer_model(vocab["model"])
        w.add_tokenizer_pre(vocab["pre"])
        w.add_token_list(vocab["tokens"])
        w.add_token_types(vocab["types"])
        w.add_token_merges(vocab["merges"])
        bos, eos = meta.get("bos_token_id"), meta.get("eos_token_id")
        bos = bos if bos is not None else (tokenizer.bos_id if tokenizer.bos_id >= 0 else None)
        eos = eos if eos is not None else (tokenizer.eos_id if tokenizer.eos_id >= 0 else None)
        if bos is not None:
            w.add_bos_token_id(int(bos))
        if eos is not None:
            w.add_eos_token_id(int(eos[0] if isinstance(eos, list) else eos))
        w.add_add_bos_token(bool(getattr(tokenizer, "add_bos", False)))
        if meta.get("chat_template"):
            w.add_chat_template(meta["chat_template"])
        for tname, arr, is_matrix in tensors:
            arr = np.ascontiguousarray(arr, dtype=np.float32)
            if tname in raw:
                w.add_tensor(tname, raw[tname], raw_dtype=gtype)
            elif not is_matrix or qtype == "f32":
                w.add_tensor(tname, arr)
            elif qtype == "f16":
                w.add_tensor(tname, arr.astype(np.float16))
            else:
                if arr.shape[-1] % 32:
                    raise ConfigError(f"GGUF export: {tname} has rows of {arr.shape[-1]} weights, not a multiple of "
                                      f"the 32-weight blocks of {qtype}")
                w.add_tensor(tname, quantize(arr, gtype), raw_dtype=gtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return out


def export_checkpoint(checkpoint: str | Path, out: str | Path, qtype: str = "f32", pre: str | None = None,
                      overwrite: bool = False) -> Path:
    """:func:`export_gguf` of a checkpoint or run directory (the CLI's ``mechlab export gguf``). An existing file at
    ``out`` is replaced only with ``overwrite``, and only when it is a GGUF file (ConfigError otherwise, before any
    work: a checkpoint's own files are never replaced)."""
    from mechlab.checkpoint import load_checkpoint

    out = Path(out)
    if out.is_file() and not overwrite:
        raise ConfigError(f"GGUF export: {out} exists; pass --overwrite to replace it")
    if out.is_file():
        with open(out, "rb") as f:
            if f.read(4) != b"GGUF":
                raise ConfigError(f"GGUF export: {out} is not a GGUF file; --overwrite replaces only an earlier export")
    if (blocker := file_on_path(out)) is not None:
        raise ConfigError(f"GGUF export: {blocker} on the path of {out} is a file")
    ckpt = load_checkpoint(checkpoint)
    return export_gguf(ckpt.model, ckpt.tokenizer, ckpt.meta, out, qtype=qtype, pre=pre)


HF_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json")


def hf_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The Hugging Face Llama tensors (``model.embed_tokens.weight``, ``model.layers.N.self_attn.q_proj.weight``
    …, ``lm_head.weight`` when untied) of a mechlab Llama-family model, float32, quantised weights dequantised: the
    inverse of :func:`mechlab.pretrained.hf.read_hf`'s renaming (its :data:`~mechlab.pretrained.hf.LAYER_NAMES`).
    Hugging Face's Llama applies RoPE to halves, as mechlab does, so no rows are permuted."""
    from mechlab.pretrained.hf import LAYER_NAMES

    state = _float_state(model)
    out = {"model.embed_tokens.weight": state["embed.weight"], "model.norm.weight": state["norm.weight"]}
    if not model.config.tie_embeddings:
        out["lm_head.weight"] = state["lm_head.weight"]
    for i in range(model.config.n_layers):
        for src, dst in LAYER_NAMES.items():
            out[f"model.layers.{i}.{src}.weight"] = state[f"blocks.{i}.{dst}.weight"]
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in out.items()}


def hf_config(config, tokenizer, meta: dict) -> tuple[dict, dict]:
    """(config.json, generation_config.json) of a ``LlamaForCausalLM`` for a mechlab ModelConfig, with the BOS /
    EOS ids the checkpoint records (``meta``) or the tokenizer's. ConfigError for what a Llama config cannot hold
    (:func:`check_exportable`) and for RoPE frequency factors (a Hugging Face rope_scaling is not recovered from
    them)."""
    check_exportable(config, "Hugging Face export")
    if config.rope_freq_factors is not None:
        raise ConfigError("Hugging Face export: RoPE frequency factors (llama3 rope scaling) are not written back "
                          "to a rope_scaling entry; export to GGUF instead (it keeps them as rope_freqs)")
    bos, eos = meta.get("bos_token_id"), meta.get("eos_token_id")
    bos = bos if bos is not None else (tokenizer.bos_id if tokenizer.bos_id >= 0 else None)
    eos = eos if eos is not None else (tokenizer.eos_id if tokenizer.eos_id >= 0 else None)
    eog = [int(e) for e in meta.get("end_of_generation_ids") or []]
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": config.vocab_size,
           "hidden_size": config.d_model, "intermediate_size": config.d_ff, "num_hidden_layers": config.n_layers,
           "num_attention_heads": config.n_heads, "num_key_value_heads": config.n_kv_heads or config.n_heads,
           "head_dim": config.d_model // config.n_heads, "hidden_act": "silu",
           "max_position_embeddings": config.max_seq_len, "rms_norm_eps": float(config.norm_eps),
           "rope_theta": float(config.rope_base), "tie_word_embeddings": bool(config.tie_embeddings),
           "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32", "bos_token_id": bos,
           "eos_token_id": eos}
    generation = {"bos_token_id": bos, "eos_token_id": (eog if len(eog) > 1 else eos)}
    return cfg, {k: v for k, v in generation.items() if v is not None}


def hf_tokenizer_config(tokenizer, meta: dict, max_len: int) -> dict:
    """tokenizer_config.json of a ``PreTrainedTokenizerFast`` over the tokenizer.json written beside it: the BOS /
    EOS tokens (by content), whether BOS is prepended, the chat template."""
    tok = tokenizer.tok
    bos, eos = meta.get("bos_token_id"), meta.get("eos_token_id")
    bos = bos if bos is not None else (tokenizer.bos_id if tokenizer.bos_id >= 0 else None)
    eos = eos if eos is not None else (tokenizer.eos_id if tokenizer.eos_id >= 0 else None)
    out = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_len,
           "add_bos_token": bool(getattr(tokenizer, "add_bos", False)), "clean_up_tokenization_spaces": False}
    if bos is not None:
        out["bos_token"] = tok.id_to_token(int(bos))
    if eos is not None:
        out["eos_token"] = tok.id_to_token(int(eos[0] if isinstance(eos, list) else eos))
    if meta.get("chat_template"):
        out["chat_template"] = meta["chat_template"]
    return out


def export_hf(model: torch.nn.Module, tokenizer, meta: dict, out: str | Path) -> Path:
    """Write ``model`` (a mechlab Llama-family Transformer, float or quantised) and its tokenizer as a Hugging Face
    directory ``out`` that ``transformers.AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer`` load:
    config.json (``LlamaForCausalLM``), model.safetensors (float32; quantised weights dequantised, logged),
    tokenizer.json, tokenizer_config.json and generation_config.json. The directory is written atomically (a
    temporary beside it, renamed). Raises ConfigError for a model a Llama config cannot hold, a tokenizer that is
    not a ``tokenizers`` BPE (the byte tokenizer), or more tokens than embedding rows."""
    from safetensors.torch import save_file

    from mechlab.utils import atomic_path, write_json_atomic

    config = model.config
    cfg, generation = hf_config(config, tokenizer, meta)
    if getattr(tokenizer, "tok", None) is None:
        raise ConfigError("Hugging Face export: only tokenizer.json tokenizers (BPE) can be exported, not the byte "
                          "tokenizer")
    if tokenizer.vocab_size > config.vocab_size:
        raise ConfigError(f"Hugging Face export: the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                          f"{config.vocab_size} embedding rows")
    quantized = _quantized(model)
    if quantized:
        log.info("Hugging Face export: %d quantised weights (%s) are written as float32 from their dequantised "
                 "values", len(quantized), ", ".join(sorted(set(quantized.values()))))
    state = hf_state(model)
    out = Path(out)
    with atomic_path(out, is_dir=True) as tmp:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.tok.save(str(tmp / "tokenizer.json"))
        write_json_atomic(tmp / "config.json", cfg)
        write_json_atomic(tmp / "generation_config.json", generation)
        write_json_atomic(tmp / "tokenizer_config.json", hf_tokenizer_config(tokenizer, meta, config.max_seq_len))
    return out


def check_hf_output(out: str | Path, overwrite: bool) -> Path:
    """Refuse an output folder the Hugging Face export must not replace (ConfigError, before any work): a file, a
    folder holding anything but a Hugging Face export's files (never deleted), or an earlier export unless
    ``overwrite``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"Hugging Face export: {out} is a file; give a folder")
    if (blocker := file_on_path(out)) is not None:
        raise ConfigError(f"Hugging Face export: {blocker} on the path of {out} is a file")
    if out.is_dir() and any(out.iterdir()):
        foreign = [p.name for p in out.iterdir() if p.name not in HF_FILES]
        if foreign or not (out / "config.json").is_file() or "model_type" not in _json_or_empty(out / "config.json"):
            raise ConfigError(f"Hugging Face export: {out} is a folder with other files in it (e.g. "
                              f"{(foreign or sorted(p.name for p in out.iterdir()))[0]}), not a Hugging Face export; "
                              f"choose another -o (or an empty or new folder)")
        if not overwrite:
            raise ConfigError(f"Hugging Face export: {out} exists; pass --overwrite to replace it")
        log.warning("replacing the Hugging Face export at %s", out)
    return out


def _json_or_empty(path: Path) -> dict:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return d if isinstance(d, dict) else {}


def export_hf_checkpoint(checkpoint: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """:func:`export_hf` of a checkpoint or run directory (the CLI's ``mechlab export hf``); the output is checked
    by :func:`check_hf_output` before the checkpoint is loaded."""
    from mechlab.checkpoint import load_checkpoint

    check_hf_output(out, overwrite)
    ck = load_checkpoint(checkpoint)
    return export_hf(ck.model, ck.tokenizer, ck.meta, out)


__all__ = ["QTYPES", "check_exportable", "check_hf_output", "export_checkpoint", "export_gguf", "export_hf",
           "export_hf_checkpoint", "gguf_vocab", "hf_config", "hf_state", "permute_rope_rows"]
