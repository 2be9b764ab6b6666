"""``quantize_(model, config)``: replace nn.Linear modules in place, on any torch model.

Layers to quantise are every nn.Linear except those whose qualified name matches ``skip`` (default: the LM head,
as in arXiv 2604.21254). With ``embedding=True`` in the config the token embedding and the LM head are coded too
(:mod:`mechlab.quant.embedding`): an untied head as an ordinary Linear, the embedding as a quantised table read by
lookup; a tied pair as one table that serves both, calibrated on the head's input. GPTQ and trellis with BlockLDLQ need
a proxy Hessian per layer, H = Σ x xᵀ / #rows over calibration inputs; :func:`collect_hessians` gathers it with
forward hooks, and a layer called several times per forward (a looped middle block) sums the inputs of every
call. Hessians come from the unquantised model in one pass, or (``sequential=True``) block by block from the
partly quantised one, with the float layer's output as the target (:mod:`mechlab.quant.sequential`).
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from mechlab.errors import ConfigError
from mechlab.quant.embedding import QuantizedEmbedding, _HeadRecorder, embedding_layout
from mechlab.quant.linear import IntLinear, QuantizedLinear, TrellisLinear, quantized_linear
from mechlab.quant.qtip import proxy_loss
from mechlab.quant.registry import config_from_dict, config_to_dict, method_for

log = logging.getLogger(__name__)
SPEC_FORMAT, SPEC_VERSION = "mechlab-quant", 2  # 2: quantised embedding tables (written only when present)
DEFAULT_SKIP = ("lm_head",)


@dataclass
class LayerReport:
    name: str
    shape: tuple[int, int]
    method: str
    rel_mse: float  # |ΔW|² / |W|²
    proxy_loss: float | None  # tr(ΔW H ΔWᵀ) / tr(W H Wᵀ), when a Hessian is known
    seconds: float
    dead_inputs: int = 0  # input channels the calibration never excited (zero Hessian diagonal): rounded alone


@dataclass
class QuantReport:
    layers: list[LayerReport] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why
    qat: dict | None = None  # the QAT or fine-tuning summary when PTQ was followed by training

    def summary(self) -> dict:
        n = sum(r.shape[0] * r.shape[1] for r in self.layers)
        mean = lambda key: sum(getattr(r, key) * r.shape[0] * r.shape[1] for r in self.layers) / max(n, 1)  # noqa: E731
        px = [r for r in self.layers if r.proxy_loss is not None]
        return {"layers": len(self.layers), "weights": n, "rel_mse": mean("rel_mse"),
                "proxy_loss": mean("proxy_loss") if px and len(px) == len(self.layers) else None,
                "seconds": sum(r.seconds for r in self.layers), "skipped": dict(self.skipped),
                "dead_inputs": {r.name: r.dead_inputs for r in self.layers if r.dead_inputs},
                **({"qat": self.qat} if self.qat else {})}


def name_matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether a qualified module name matches any fnmatch pattern, on the whole name or its last component."""
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(name.rsplit(".", 1)[-1], p) for p in patterns)


def target_linears(model: nn.Module, skip: Iterable[str] = DEFAULT_SKIP) -> dict[str, nn.Linear]:
    """Qualified name -> nn.Linear for every Linear not matched by a ``skip`` pattern."""
    skip = tuple(skip)
    return {name: mod for name, mod in model.named_modules() if isinstance(mod, nn.Linear) and not name_matches(name, skip)}


@torch.no_grad()
def collect_hessians(model: nn.Module, batches: Iterable[torch.Tensor], names: Iterable[str] | None = None,
                     progress: bool = False, tied_head: bool = False) -> dict[str, torch.Tensor]:
    """H = Σ x xᵀ / #rows of every listed Linear's inputs over ``model(batch)`` for each batch (each batch's xᵀx in
    float32, the running sums and the result in float64). ``tied_head``: also the Hessian of a tied LM head's
    input (the model's ``embed`` read as a matmul; :mod:`mechlab.quant.embedding`), under the key ``"embed"``."""
    if tied_head:
        emb, tied = embedding_layout(model)
        if not tied:
            raise ConfigError("tied_head: this model's LM head is not tied to its embedding")
        recorder = model.embed = _HeadRecorder(emb)
        try:
            hessians = collect_hessians(model, batches, names, progress)
        finally:
            model.embed = emb
        return {**hessians, "embed": recorder.hessian()}
    mods = target_linears(model, ()) if names is None else {n: model.get_submodule(n) for n in names}
    sums = {n: torch.zeros(m.in_features, m.in_features, dtype=torch.float64) for n, m in mods.items()}
    counts = dict.fromkeys(mods, 0)

    last = {}  # the previous hook's input and its xᵀx: q/k/v and gate/up read one tensor, computed once

    def hook(name):
        def fn(_mod, args):
            if last.get("input") is not args[0]:
                x = args[0].detach().reshape(-1, args[0].shape[-1]).float().cpu()
                last.update(input=args[0], xtx=(x.T @ x).double(), rows=x.shape[0])  # sums kept in float64
            sums[name] += last["xtx"]
            counts[name] += last["rows"]
        return fn

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in mods.items()]
    was_training = model.training
    model.eval()
    try:
        for batch in tqdm(list(batches), desc="calibrate", unit="batch", disable=not progress, leave=False):
            model(batch)
    finally:
        for h in handles:
            h.remove()
        last.clear()
        model.train(was_training)
    if any(c == 0 for c in counts.values()):
        missing = [n for n, c in counts.items() if c == 0]
        raise ConfigError(f"calibration never reached {len(missing)} layers (e.g. {missing[0]}); check the batches")
    return {n: sums[n] / counts[n] for n in mods}


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at the qualified ``name`` of ``model``."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def quantize_(model: nn.Module, config, *,
              hessians: dict[str, torch.Tensor] | None = None, calibration: Iterable[torch.Tensor] | None = None,
              skip: Iterable[str] = DEFAULT_SKIP, sequential: bool = False, asymmetric: bool = True,
              progress: bool = False) -> QuantReport:
    """Quantise ``model``'s Linear layers in place with ``config`` (any registered method's config: RTNConfig,
    GPTQConfig, TrellisConfig, ...; :mod:`mechlab.quant.registry`); returns a per-layer report.

    Layers that the method cannot code (shapes that are not whole tiles or groups) stay in float and are listed
    in ``report.skipped``. ``sequential`` (needs ``calibration``): block by block, each layer's Hessian from the
    partly quantised model and, ``asymmetric``, its target the float layer's output
    (:mod:`mechlab.quant.sequential`); the report's errors are then measured against that target."""
    method = method_for(config)
    if method.trains:
        raise ConfigError(f"{config.method} trains after PTQ: quantise with its PTQ config, then train "
                          f"(mechlab.quant.run.quantize_checkpoint runs both)")
    report = QuantReport()
    table = None  # (float embedding, tied) when the embedding is coded too
    if getattr(config, "embedding", False):
        emb, tied = embedding_layout(model)
        why = QuantizedEmbedding.why_not(emb.num_embeddings, emb.embedding_dim, config)
        if why:
            report.skipped["embed"] = why
        else:
            table = (emb, tied)
            if sequential:
                raise ConfigError("embedding quantisation is not combined with sequential calibration yet")
        skip = tuple(p for p in skip if p != "lm_head") if tuple(skip) == DEFAULT_SKIP else skip
    targets = target_linears(model, skip)
    for name, lin in list(targets.items()):
        why = method.why_not(lin, config)
        if why:
            report.skipped[name] = why
            del targets[name]
    index = {name: i for i, name in enumerate(targets)}  # the per-layer seed does not depend on the order
    if sequential:
        if calibration is None or hessians is not None:
            raise ConfigError("sequential calibration needs calibration batches (and computes its own Hessians)")
        from mechlab.quant.sequential import sequential_calibration

        work = sequential_calibration(model, list(calibration), list(targets), asymmetric=asymmetric,
                                      progress=progress)
    else:
        if config.needs_hessian and hessians is None:
            if calibration is None:
                raise ConfigError(f"{config.method} needs calibration data (token batches) or precomputed Hessians")
            hessians = collect_hessians(model, calibration, targets, progress=progress,
                                        tied_head=table is not None and table[1])
        elif table is not None and table[1] and config.needs_hessian and "embed" not in hessians:
            raise ConfigError("a tied embedding is coded against its head's input Hessian: pass calibration batches, "
                              "or hessians from collect_hessians(..., tied_head=True)")
        work = ((name, lin.weight.detach().float().cpu(), hessians.get(name) if hessians is not None else None)
                for name, lin in targets.items())
    for name, w, h in tqdm(work, total=len(targets), desc=f"quantize ({config.method})", unit="layer",
                           disable=not progress, leave=False):
        t0 = time.perf_counter()
        lin, i = targets[name], index[name]
        if config.needs_hessian and h is None:
            raise ConfigError(f"no Hessian for layer {name}")
        if not bool(torch.isfinite(w).all()):
            raise ConfigError(f"the weights of {name} hold NaN or inf values: a damaged checkpoint")
        if h is not None and not bool(torch.isfinite(h).all()):
            raise ConfigError(f"calibration activations entering {name} are not finite (NaN or inf, or so large that "
                              f"their second moments overflow): check the model's float outputs on the calibration "
                              f"data before quantising")
        cfg = config if name != "lm_head" or table is None or method.head is None else method.head(config)
        q = method.make_layer(lin, cfg)
        w_hat = method.transform(q, w, h, cfg, i)
        if lin.bias is not None:
            q.bias.copy_(lin.bias.detach())
        q.to(lin.weight.device)
        set_module(model, name, q)
        dw = w_hat - w
        report.layers.append(LayerReport(
            name, (lin.out_features, lin.in_features), config.method,
            float(dw.pow(2).sum() / w.pow(2).sum().clamp(min=1e-30)),
            proxy_loss(dw, w, h) if h is not None else None, time.perf_counter() - t0,
            int((torch.diagonal(h) == 0).sum()) if h is not None else 0))
    if table is not None:
        emb, tied = table
        t0 = time.perf_counter()
        w = emb.weight.detach().float().cpu()
        if not bool(torch.isfinite(w).all()):
            raise ConfigError("the token embedding holds NaN or inf values: a damaged checkpoint")
        h = hessians.get("embed") if tied and hessians is not None else None
        q = QuantizedEmbedding(emb.num_embeddings, emb.embedding_dim, config, tied)
        w_hat = q.fill(w, h, len(index))
        q.to(emb.weight.device)
        model.embed = q
        dw = w_hat - w
        report.layers.append(LayerReport(
            "embed" + (" (tied lm_head)" if tied else ""), tuple(w.shape), config.method,
            float(dw.pow(2).sum() / w.pow(2).sum().clamp(min=1e-30)),
            proxy_loss(dw, w, h) if h is not None else None, time.perf_counter() - t0,
            int((torch.diagonal(h) == 0).sum()) if h is not None else 0))
    return report


def quantization_spec(model: nn.Module) -> dict | None:
    """The JSON-able description of a model's quantised layers (None for a float model)."""
    tables = {n: m for n, m in model.named_modules() if isinstance(m, QuantizedEmbedding)}
    inside = tuple(f"{n}." for n in tables)
    layers = {n: config_to_dict(m.config) for n, m in model.named_modules()
              if isinstance(m, QuantizedLinear) and not n.startswith(inside)}
    if not layers and not tables:
        return None
    spec = {"format": SPEC_FORMAT, "version": 2 if tables else 1, "layers": layers}
    if tables:
        spec["embeddings"] = {n: {"config": config_to_dict(m.config), "tied": m.tied} for n, m in tables.items()}
    return spec


def apply_quantization_spec(model: nn.Module, spec: dict) -> nn.Module:
    """Swap the listed Linear layers for empty quantised modules of the recorded configs (before loading)."""
    if spec.get("format") != SPEC_FORMAT:
        raise ConfigError(f"not a mechlab quantisation spec (format {spec.get('format')!r})")
    if spec.get("version", 0) > SPEC_VERSION:
        raise ConfigError(f"quantisation format version {spec['version']} is newer than this mechlab's {SPEC_VERSION}")
    for name, cfg in spec["layers"].items():
        lin = model.get_submodule(name)
        if not isinstance(lin, nn.Linear):
            raise ConfigError(f"quantisation spec names {name}, which is not a Linear layer of this model")
        set_module(model, name, quantized_linear(lin, config_from_dict(cfg)))
    for name, entry in spec.get("embeddings", {}).items():
        emb = model.get_submodule(name)
        if not isinstance(emb, nn.Embedding):
            raise ConfigError(f"quantisation spec names {name}, which is not an embedding of this model")
        tied = bool(entry["tied"])
        if tied != (getattr(model, "lm_head", False) is None):
            raise ConfigError(f"quantisation spec: embedding {name} is {'' if tied else 'un'}tied, the model is not")
        set_module(model, name, QuantizedEmbedding(emb.num_embeddings, emb.embedding_dim,
                                                   config_from_dict(entry["config"]), tied))
    return model


__all__ = ["quantize_", "collect_hessians", "target_linears", "QuantReport", "LayerReport", "quantization_spec",
           "apply_quantization_spec", "IntLinear", "TrellisLinear", "QuantizedLinear", "QuantizedEmbedding"]
