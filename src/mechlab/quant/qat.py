"""Trellis quantisation-aware training: BCJR-QAT and its straight-through baseline (BCJR-QAT, arXiv 2605.10655).

Starting point: a model whose layers were trellis-quantised by PTQ (:func:`mechlab.quant.quantize_`). Each
selected layer becomes a :class:`SoftTrellisLinear` holding latent float weights initialised from its PTQ
reconstruction; its weight in the forward pass is

    latent → RHT → ÷ scale → 16×16 tiles → soft trellis decode at temperature T → untile → × scale → inverse RHT

(``bcjr``), or the hard Viterbi decode of the same tiles with a straight-through gradient (``ste``). The scale and
the RHT signs are the PTQ code's (constants, hence "detached"); the tiles keep the PTQ code's tail-biting overlap
as their boundary (the first state's older bits and the last state's newer bits), so the soft decoder sees the
same trellis as the stored code. The loss is KL(teacher ‖ student) over the full vocabulary at every position, the
teacher being the unquantised model, minimised by the one training loop (:func:`mechlab.train.distill.distill`):
:func:`qat_` is prepare (:func:`prepare_qat`: swap in the soft layers) -> the loop -> convert (:func:`convert_qat`:
harden), as torchao's QAT is. T follows the geometric schedule T_s = T0·(T1/T0)^(s/(n−1)), never below the
floor. At the end every layer is hardened: a full tail-biting Viterbi re-encode of its latent weights (exactly k
bits per weight again) and the fraction of codes that changed is reported.

The drift budget (docs/bcjr-qat-drift.md): Adam moves a weight by at most about lr per step, so by N·lr after N
steps; in the code's units (÷ scale) that must exceed the distance the nearest alternative code needs before any
code can change. :func:`escape_radius` measures that distance on the layer's own code; the loop warns when the
budget is below it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from mechlab.data.tokens import TokenStream
from mechlab.errors import ConfigError
from mechlab.quant import rht as rht_ops
from mechlab.quant.api import name_matches, set_module
from mechlab.quant.bcjr import soft_decode
from mechlab.quant.codes import code_table
from mechlab.quant.config import TrellisConfig
from mechlab.quant.linear import TrellisLinear
from mechlab.quant.qtip import TrellisCode, from_tiles, reconstruct, to_tiles
from mechlab.quant.trellis import encode, states_from_codes, viterbi
from mechlab.train.distill import check_distill_settings, distill, kl_teacher_student, lr_factor

log = logging.getLogger(__name__)
ESTIMATORS = ("bcjr", "ste")


@dataclass(frozen=True)
class QATConfig:
    """Trellis PTQ (``trellis``) followed by ``steps`` optimiser steps of QAT with the ``estimator``."""

    trellis: TrellisConfig = TrellisConfig()
    """The trellis PTQ the training starts from."""
    estimator: str = "bcjr"
    """"bcjr": soft decoding at temperature T; "ste": hard Viterbi, straight-through."""
    steps: int = 100
    """Optimiser steps."""
    lr: float = 1e-4
    """Adam learning rate of the latent weights."""
    t_start: float = 0.3
    """bcjr: first temperature."""
    t_end: float = 0.05
    """bcjr: last temperature."""
    t_floor: float = 1e-2
    """bcjr: the lowest temperature allowed."""
    layers: tuple[str, ...] = ("*",)
    """fnmatch patterns (qualified name or its last part) of the layers trained (comma-separated)."""
    batch_size: int = 8
    """Sequences per step."""
    seq_len: int = 256
    """Tokens per sequence."""
    seed: int = 0
    """Seed of the training windows."""

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ConfigError(f"QAT: estimator must be one of {', '.join(ESTIMATORS)} (got {self.estimator!r})")
        check_distill_settings("QAT", self.steps, self.lr, self.batch_size, self.seq_len)
        if not self.t_floor > 0 or not self.t_start > 0 or not self.t_end > 0:
            raise ConfigError("QAT: temperatures must be positive")
        object.__setattr__(self, "layers", tuple(self.layers))

    @property
    def method(self) -> str:
        return f"{self.estimator}-qat"

    @property
    def needs_hessian(self) -> bool:
        return self.trellis.needs_hessian

    def temperature(self, step: int) -> float:
        """T at optimiser step ``step`` of ``steps`` (geometric from t_start to t_end, floored)."""
        frac = step / (self.steps - 1) if self.steps > 1 else 1.0
        return max(self.t_start * (self.t_end / self.t_start) ** frac, self.t_floor)


def tile_boundaries(code: TrellisCode, cfg: TrellisConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The (start, end) constraints of every tile's trellis that the stored code satisfies: the tail-biting
    overlap for both, or the stored start bits and a free end."""
    kv = cfg.k * cfg.V
    if code.start is not None:
        return code.start.long(), None
    first = states_from_codes(code.codes, cfg.L, kv)[:, 0]
    overlap = first >> kv
    return overlap, overlap


def escape_radius(code: TrellisCode, cfg: TrellisConfig) -> torch.Tensor:
    """For every single-symbol change of the stored code (each step, each of the 2^kV − 1 other symbols): half the
    RMS per-weight change it makes, in code units (tiles, n_steps, 2^kV − 1).

    Changing the symbol of step t changes the ⌈L/kV⌉ states that hold its bits, so V·⌈L/kV⌉ weights move from c to
    c'. Latent weights that start at the PTQ point c are closer to c' than to c only after moving by Δ with
    2Δ·(c' − c) > |c' − c|²; spread evenly over the changed weights, that is a per-weight drift of
    |c' − c|/(2·√n) = half the RMS change. A tail-biting code is circular, so changes near its end wrap around;
    without tail-biting the last ⌈L/kV⌉ − 1 steps are left out."""
    kv, L = cfg.k * cfg.V, cfg.L
    table = code_table(cfg.code, L, cfg.V, cfg.seed).double()
    s = states_from_codes(code.codes, L, kv, code.start)  # (tiles, N)
    mask = (1 << L) - 1
    span = -(-L // kv)
    out = []
    for delta in range(1, 1 << kv):
        d2 = torch.zeros(s.shape, dtype=torch.float64)
        for j in range(span):
            flip = (delta << (j * kv)) & mask
            moved = torch.roll(s, -j, dims=1)  # the state j steps after t, at index t
            d2 += ((table[moved ^ flip] - table[moved]) ** 2).sum(-1)
        out.append(0.5 * (d2 / (span * cfg.V)).sqrt())
    radius = torch.stack(out, -1)
    return radius if code.start is None else radius[:, : s.shape[1] - span + 1]


class SoftTrellisLinear(nn.Module):
    """A trellis-quantised Linear during QAT: latent float weights, decoded softly (BCJR) or hard with a
    straight-through gradient (STE). :meth:`set_temperature` before each step; :meth:`harden` at the end."""

    def __init__(self, layer: TrellisLinear, estimator: str):
        super().__init__()
        if estimator not in ESTIMATORS:
            raise ConfigError(f"unknown QAT estimator {estimator!r}")
        self.config, self.estimator = layer.config, estimator
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self.ptq = layer.code()
        self.latent = nn.Parameter(reconstruct(self.ptq, self.config).clone())
        self.bias = None if layer.bias is None else nn.Parameter(layer.bias.detach().clone(), requires_grad=False)
        self.start, self.end = tile_boundaries(self.ptq, self.config)
        self.register_buffer("table", code_table(self.config.code, self.config.L, self.config.V, self.config.seed),
                             persistent=False)
        self.temperature = 1.0
        self._w: torch.Tensor | None = None

    def normalised_tiles(self) -> torch.Tensor:
        """The latent weights in the code's basis and units, (tiles, 256)."""
        c, w = self.ptq, self.latent
        if c.s_out is not None:  # the inverse of inverse_rht_weight, for ±1 or real (``real_signs``) sign vectors
            w = rht_ops.rht_weight(w, 1 / c.s_out.to(w), 1 / c.s_in.to(w))
        return to_tiles(w / c.scale, self.config.tile)

    def weight(self) -> torch.Tensor:
        """The decoded weight matrix (a function of the latent weights with this estimator's gradient)."""
        cfg, c = self.config, self.ptq
        tiles = self.normalised_tiles()
        steps = tiles.reshape(tiles.shape[0], -1, cfg.V)
        kv = cfg.k * cfg.V
        if self.estimator == "bcjr":
            dec = soft_decode(steps, self.table, cfg.L, kv, self.temperature, self.start, self.end)
        else:
            with torch.no_grad():
                hard = self.table[viterbi(steps.detach(), self.table, cfg.L, kv, self.start, self.end)]
            dec = steps + (hard - steps).detach()
        w = from_tiles(dec.reshape(tiles.shape), self.out_features, self.in_features, cfg.tile) * c.scale
        if c.s_out is not None:
            w = rht_ops.inverse_rht_weight(w, c.s_out.to(w), c.s_in.to(w))
        return w

    def set_temperature(self, temperature: float) -> None:
        """Set T and decode once for the coming forward/backward (a layer called several times per forward, as
        in a looped block, shares the one decode)."""
        self.temperature = float(temperature)
        self._w = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._w is None or (torch.is_grad_enabled() and not self._w.requires_grad):
            self._w = self.weight()
        return F.linear(x, self._w, self.bias)

    def release(self) -> None:
        """Drop the cached decode (and its graph) after an optimiser step."""
        self._w = None

    @torch.no_grad()
    def harden(self) -> tuple[TrellisLinear, float]:
        """A TrellisLinear holding the tail-biting Viterbi re-encode of the latent weights (exactly k bits per
        weight, same scale and signs), and the fraction of stored codes that differ from the PTQ code."""
        cfg, c = self.config, self.ptq
        codes, start = encode(self.normalised_tiles().float(), cfg.L, cfg.k, cfg.V, cfg.code,
                              tail_biting=cfg.tail_biting, seed=cfg.seed)
        code = TrellisCode(codes, start, c.scale, c.s_out, c.s_in, c.shape)
        layer = TrellisLinear(self.in_features, self.out_features, self.bias is not None, cfg).set(code)
        if self.bias is not None:
            layer.bias.copy_(self.bias)
        return layer.to(self.latent.device), float((codes != c.codes).float().mean())


@dataclass
class QATReport:
    config: dict
    layers: list[str]
    steps: list[dict] = field(default_factory=list)  # step, temperature, kl
    changed: dict[str, float] = field(default_factory=dict)  # layer -> fraction of codes changed at hardening
    drift_budget: float = 0.0  # steps·lr ÷ scale, the largest per-weight move in code units (smallest scale)
    escape_min: float = 0.0  # over every layer's single-symbol changes, code units
    escape_median: float = 0.0
    seconds: float = 0.0

    def summary(self) -> dict:
        """The report as JSON-able figures; ``fraction_codes_changed`` is the mean over the trained layers of each
        layer's fraction of changed codes (``changed_per_layer`` has them one by one)."""
        n = max(len(self.changed), 1)
        return {"method": self.config.get("method"), "layers": len(self.layers), "steps": len(self.steps),
                "kl_first": self.steps[0]["kl"] if self.steps else None,
                "kl_last": self.steps[-1]["kl"] if self.steps else None,
                "kl_curve": [s["kl"] for s in self.steps],
                "fraction_codes_changed": sum(self.changed.values()) / n, "changed_per_layer": dict(self.changed),
                "drift_budget": self.drift_budget, "escape_radius_min": self.escape_min,
                "escape_radius_median": self.escape_median, "seconds": self.seconds}


def prepare_qat(model: nn.Module, config: QATConfig) -> dict[str, SoftTrellisLinear]:
    """Replace the selected trellis layers of ``model`` (already PTQ-quantised) by :class:`SoftTrellisLinear` layers
    in place; returns them by qualified name. Raises ConfigError when no trellis layer matches ``config.layers``."""
    targets = {n: m for n, m in model.named_modules() if isinstance(m, TrellisLinear) and name_matches(n, config.layers)}
    if not targets:
        raise ConfigError(f"QAT: no trellis-quantised layer matches {list(config.layers)}")
    soft = {n: SoftTrellisLinear(m, config.estimator).to(m.packed.device) for n, m in targets.items()}
    for name, layer in soft.items():
        set_module(model, name, layer)
    return soft


def convert_qat(model: nn.Module, soft: dict[str, SoftTrellisLinear]) -> dict[str, float]:
    """Harden every soft layer of :func:`prepare_qat` in place (tail-biting Viterbi re-encode, exactly k bits per
    weight); returns the fraction of codes changed, by layer."""
    changed = {}
    for name, layer in soft.items():
        hard, changed[name] = layer.harden()
        set_module(model, name, hard)
    return changed


def qat_(model: nn.Module, teacher: nn.Module, config: QATConfig, stream: TokenStream,
         progress: bool = True) -> QATReport:
    """Train the selected trellis layers of ``model`` (already PTQ-quantised) against ``teacher`` on windows of
    ``stream``, then harden them in place: :func:`prepare_qat` -> the one training loop
    (:func:`mechlab.train.distill.distill`, only the latent weights trained) -> :func:`convert_qat`."""
    soft = prepare_qat(model, config)
    report = QATReport(config={"method": config.method, **dataclasses.asdict(config)}, layers=list(soft))
    escape = torch.cat([escape_radius(m.ptq, m.config).flatten() for m in soft.values()])
    report.escape_min, report.escape_median = float(escape.min()), float(escape.median())
    report.drift_budget = config.steps * config.lr / min(float(m.ptq.scale) for m in soft.values())
    if config.steps and report.drift_budget < report.escape_min:
        log.warning("QAT: lr × steps = %.3g moves a weight by at most %.3g in code units, less than the %.3g that "
                    "the nearest single-symbol code change needs: no code can be expected to change "
                    "(docs/bcjr-qat-drift.md)", config.steps * config.lr, report.drift_budget, report.escape_min)

    def before(step: int) -> dict:
        temp = config.temperature(step)
        for layer in soft.values():
            layer.set_temperature(temp)
        return {"temperature": temp}

    def after(_step: int) -> None:
        for layer in soft.values():
            layer.release()

    t0 = time.perf_counter()
    report.steps = distill(model, teacher, [layer.latent for layer in soft.values()], stream, steps=config.steps,
                           lr=config.lr, batch_size=config.batch_size, seq_len=config.seq_len, seed=config.seed,
                           desc=f"QAT ({config.method})", before_step=before, after_step=after, progress=progress)
    report.changed = convert_qat(model, soft)
    report.seconds = time.perf_counter() - t0
    return report


__all__ = ["QATConfig", "QATReport", "SoftTrellisLinear", "check_distill_settings", "convert_qat", "distill",
           "escape_radius", "kl_teacher_student", "lr_factor", "prepare_qat", "qat_", "tile_boundaries"]
