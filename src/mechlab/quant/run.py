"""Quantise a checkpoint end to end (the one entry point the CLI, the demo and the experiments use), and report
what a (quantised) checkpoint's bytes are spent on."""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import torch

from mechlab.data.tokens import TokenStream, token_stream
from mechlab.errors import ConfigError
from mechlab.quant.api import QuantReport, quantize_
from mechlab.quant.linear import QuantizedLinear
from mechlab.quant.registry import config_to_dict, method_for, method_named

log = logging.getLogger(__name__)


def calibration_batches(stream: TokenStream, n_sequences: int, seq_len: int, seed: int = 0,
                        batch_size: int = 8) -> list[torch.Tensor]:
    """``n_sequences`` random windows of ``seq_len`` tokens from ``stream``, in batches."""
    if len(stream) <= seq_len:
        raise ConfigError(f"calibration stream of {len(stream)} tokens is shorter than seq_len={seq_len}")
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(stream) - seq_len, n_sequences)
    seqs = torch.from_numpy(np.stack([np.asarray(stream.ids[s : s + seq_len], dtype=np.int64) for s in starts]))
    return list(seqs.split(batch_size))


def make_config(method: str, bits: int, group_size: int = 128, L: int = 16, V: int = 1, code: str = "1mad",
                rht: bool = True, ldlq: bool = True, tail_biting: bool = True, symmetric: bool = False,
                act_order: bool = False, real_signs: bool = False, embedding: bool = False,
                embedding_bits: int | None = None, format: str | None = None, **train):
    """The config dataclass for a ``--method`` name (the CLI's flags), made by the method's registered factory
    (:mod:`mechlab.quant.registry`); ``train`` holds the training settings of a recipe that trains after PTQ
    (QATConfig fields for ``bcjr-qat`` and ``ste-qat``, FinetuneConfig fields for ``trellis-ft``) and is refused
    by the others. ConfigError for an unknown method or a setting it does not take (``embedding_bits`` without
    ``embedding`` included: the table would stay in float)."""
    options = dict(group_size=group_size, L=L, V=V, code=code, rht=rht, ldlq=ldlq, tail_biting=tail_biting,
                   symmetric=symmetric, act_order=act_order, real_signs=real_signs, embedding=embedding,
                   embedding_bits=embedding_bits, format=format)
    return method_named(method).from_options(method, bits, options, train)


def quantize_checkpoint(checkpoint: str | Path, config, out: str | Path | None = None, data: str | None = None,
                        calib_sequences: int = 64, calib_seq_len: int = 256, seed: int = 0,
                        data_dir: str | None = None, sequential: bool = False, progress: bool = True,
                        overwrite: bool = False):
    """Load a float checkpoint, quantise it with ``config`` (calibrating on the training corpus' train split, or
    ``data``; ``sequential``: block by block, see :func:`quantize_`), and save it to ``out`` when given (an
    existing checkpoint there is replaced only with ``overwrite``). Returns (Checkpoint with the quantised model,
    report, out).

    Raises ConfigError before any work for ``calib_sequences`` or ``calib_seq_len`` < 1, ``seed`` < 0, an unknown
    ``data`` corpus (checked by every method, calibrating or not) or an ``out`` that must not be written
    (:func:`mechlab.checkpoint.check_output`, or the input checkpoint itself), and after the work (nothing saved)
    when no layer can take the config. ``calib_seq_len`` beyond the model's max_seq_len is capped to it, with a
    warning."""
    from mechlab.checkpoint import check_output, load_checkpoint, save_checkpoint

    for name, v, least in (("calib_sequences", calib_sequences, 1), ("calib_seq_len", calib_seq_len, 1),
                           ("seed", seed, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise ConfigError(f"quantize: {name} must be an integer >= {least}, got {v!r}")
    if data is not None:
        from mechlab.data import get_corpus

        get_corpus(str(data))  # an unknown corpus is refused even when nothing calibrates on it
    if out is not None:
        check_output(out, overwrite)
    ck = load_checkpoint(checkpoint)
    if out is not None and Path(out).resolve() == Path(ck.path).resolve():
        raise ConfigError(f"output {out} is the checkpoint being quantised: choose another -o")
    if any(isinstance(m, QuantizedLinear) for m in ck.model.modules()):
        raise ConfigError(f"{ck.path} is already quantised; start from the float checkpoint")
    method = method_for(config)
    trained = config if method.trains else None
    ptq = method.ptq(config) if trained else config
    if trained and getattr(ptq, "embedding", False):
        raise ConfigError(f"{config.method}: the embedding and head are quantised by PTQ only (no training recipe "
                          f"trains a quantised table yet)")
    calibration = stream = None
    if ptq.needs_hessian or sequential or trained:
        corpus = data or ck.meta.get("train_config", {}).get("data")
        if corpus is None:
            raise ConfigError("this checkpoint does not record its training corpus; pass --data for calibration")
        from mechlab.data import get_corpus

        splits = get_corpus(str(corpus)).splits
        split = "train" if "train" in splits else splits[0]  # an evaluation-only corpus calibrates on what it has
        if split != "train":
            log.info("calibrating on the %s split of %s (it has no train split)", split, corpus)
        stream = token_stream(corpus, split, ck.tokenizer, data_dir or ck.meta.get("train_config", {}).get("data_dir"))
    if ptq.needs_hessian or sequential:
        if calib_seq_len > ck.config.max_seq_len:
            log.warning("calib_seq_len %d exceeds the model's max_seq_len %d: calibration windows are capped to %d "
                        "tokens", calib_seq_len, ck.config.max_seq_len, ck.config.max_seq_len)
        calibration = calibration_batches(stream, calib_sequences, min(calib_seq_len, ck.config.max_seq_len), seed)
    teacher = copy.deepcopy(ck.model) if trained else None
    t0 = time.perf_counter()
    report: QuantReport = quantize_(ck.model, ptq, calibration=calibration, sequential=sequential, progress=progress)
    if not report.summary()["layers"] and not any(isinstance(m, QuantizedLinear) for m in ck.model.modules()):
        reasons = sorted(set(report.summary()["skipped"].values()))
        raise ConfigError(f"no layer of {ck.path} can take this quantisation ({'; '.join(reasons) or 'none found'}): "
                          f"nothing was saved")
    if trained:
        if trained.seq_len > ck.config.max_seq_len:
            trained = dataclasses.replace(trained, seq_len=ck.config.max_seq_len)
        report.qat = method.train(ck.model, teacher, trained, stream, progress=progress)
    seconds = time.perf_counter() - t0
    if out is not None:
        meta = {**ck.meta, "quantized_from": str(ck.path), "quantization": config_to_dict(config),
                "sequential_calibration": sequential,
                "quant_summary": report.summary(), "quant_seconds": seconds}
        save_checkpoint(out, ck.model, ck.tokenizer, meta=meta)
    return ck, report, out


def size_report(model: torch.nn.Module, weights_file: str | Path | None = None) -> dict:
    """What a model's stored tensors spend their bytes on, and the headline: bytes and bits per parameter over ALL
    parameters.

    Components: ``quantized codes`` / ``quantized side info`` (the quantised Linear layers' code buffers, the ones
    their class lists in ``CODE_BUFFERS``, and the rest of their buffers:
    scales, zero points, signs and start bits), ``embedding`` (the token table, float or quantised; with a tied
    head it serves the head too and ``lm head`` is 0), ``lm head`` (an untied head, float or quantised), ``float
    linear`` (Linear weights left in float) and ``other (norms, maps, biases)``. ``parameters``: the float model's
    parameter count (a quantised m×n layer counts m·n, a tied table once). ``weights_file``: a checkpoint's
    safetensors file, whose size (tensor bytes + its 8-byte length + JSON header) is reported as ``file_bytes``
    and ``file_bits_per_parameter`` (the headline). Returns a JSON-able dict; ``bytes`` maps component -> bytes,
    ``components`` component -> {bytes, parameters, bits_per_parameter}."""
    from mechlab.quant.embedding import QuantizedEmbedding

    names = ("quantized codes", "quantized side info", "embedding", "lm head", "float linear",
             "other (norms, maps, biases)")
    parts, params = dict.fromkeys(names, 0), dict.fromkeys(names, 0)
    mods = dict(model.named_modules())
    tables = {n for n, m in mods.items() if isinstance(m, QuantizedEmbedding)}
    qlin = {n for n, m in mods.items() if isinstance(m, QuantizedLinear) and not any(n.startswith(f"{t}.") for t in tables)}

    def owner_of(name: str, group: set[str]) -> str | None:
        return next((g for g in group if name.startswith(f"{g}.")), None)

    for name in qlin:
        m = mods[name]
        part = "lm head" if name == "lm_head" else "quantized codes"
        params[part] += m.in_features * m.out_features
    for name in tables:
        params["embedding"] += mods[name].num_embeddings * mods[name].embedding_dim
    for name, t in model.state_dict().items():
        nbytes = t.numel() * t.element_size()
        owner, _, leaf = name.rpartition(".")
        q, table = owner_of(name, qlin), owner_of(name, tables)
        if table is not None:
            parts["embedding"] += nbytes
        elif q is not None and leaf == "bias" and owner == q:
            parts["other (norms, maps, biases)"] += nbytes
            params["other (norms, maps, biases)"] += t.numel()
        elif q == "lm_head":
            parts["lm head"] += nbytes
        elif q is not None:
            codes = getattr(mods[q], "CODE_BUFFERS", ())  # the stored layer class declares its code buffers
            parts["quantized codes" if owner == q and leaf in codes else "quantized side info"] += nbytes
        elif name.startswith("embed."):
            parts["embedding"] += nbytes
            params["embedding"] += t.numel()
        elif name.startswith("lm_head."):
            parts["lm head"] += nbytes
            params["lm head"] += t.numel()
        elif t.dim() == 2 and isinstance(mods.get(owner), torch.nn.Linear):
            parts["float linear"] += nbytes
            params["float linear"] += t.numel()
        else:
            parts["other (norms, maps, biases)"] += nbytes
            params["other (norms, maps, biases)"] += t.numel()
    qweights = params["quantized codes"]
    params["quantized codes"], params["quantized side info"] = qweights, 0  # side info: per quantised weight below
    total, n_params = sum(parts.values()), sum(params.values())
    components = {k: {"bytes": parts[k], "parameters": params[k] if k != "quantized side info" else qweights,
                      "bits_per_parameter": 8 * parts[k] / (params[k] if k != "quantized side info" else qweights)
                      if (params[k] if k != "quantized side info" else qweights) else None}
                  for k in names}
    out = {"bytes": parts, "components": components, "total_bytes": total, "parameters": n_params,
           "bits_per_parameter": 8 * total / max(n_params, 1), "quantized_weights": qweights}
    if weights_file is not None:
        size = Path(weights_file).stat().st_size
        out |= {"file_bytes": size, "file_bits_per_parameter": 8 * size / max(n_params, 1)}
    if qweights:
        out["bits_per_quantized_weight"] = 8 * (parts["quantized codes"] + parts["quantized side info"]) / qweights
        out["code_bits_per_quantized_weight"] = 8 * parts["quantized codes"] / qweights
    return out
