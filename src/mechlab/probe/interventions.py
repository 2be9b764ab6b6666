"""Interventions on the neurons a probe found, each against matched random controls (arXiv 2604.27401, step 7).

A neuron set S is a list of (layer, index) columns. Its matched random controls draw, for each column, a neuron of
the same layer and the same activation-magnitude decile (deciles of the probe's mean |a| within that layer), never a
member of S, without repetition inside one draw: same count, same layers, same magnitude profile. An effect (a flip
rate, a mean change of F) of S is reported against the distribution of the same effect over the draws, with the
empirical p-value (1 + #{draws with effect >= S's}) / (1 + draws) (Davison & Hinkley, Bootstrap Methods, 1997, eq.
4.11) and a Wilson score interval on rates (Wilson 1927).

Interventions (all at the decision position, see :class:`mechlab.probe.hooks.DecisionSet`): ``ablate`` (a <- 0),
``scale`` (a <- alpha·a, the dose sweep), ``patch`` (a <- the activation of the same neuron in the paired prompt);
residual injection x_l <- x_l + beta·v (:func:`inject_effect`), against random directions of the same norm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mechlab.errors import ConfigError
from mechlab.probe.hooks import DecisionSet, Intervention
from mechlab.probe.score import observable

MODES = ("ablate", "scale", "patch")


def top_neurons(score: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(layers (k,), indices (k,)) of the k largest entries of score (L, N), sorted by layer then index."""
    L, N = score.shape
    if not 1 <= k <= L * N:
        raise ConfigError(f"top-k needs 1 <= k <= {L * N} neurons, got {k}")
    flat = score.flatten().topk(k).indices.sort().values
    return flat // N, flat % N


def magnitude_deciles(magnitude: torch.Tensor) -> torch.Tensor:
    """Decile 0..9 (L, N) of every neuron's activation magnitude (L, N) within its layer (by rank; ties by index)."""
    N = magnitude.shape[1]
    rank = magnitude.argsort(dim=1, stable=True).argsort(dim=1)
    return (rank * 10) // N


def matched_random(layers: torch.Tensor, indices: torch.Tensor, magnitude: torch.Tensor, draws: int,
                   generator: torch.Generator) -> torch.Tensor:
    """Random neuron sets (draws, k) matched to the set (layers, indices): column j of every draw is a neuron of
    layer ``layers[j]`` in the same magnitude decile as ``indices[j]``, outside the set, distinct within a draw.
    Raises ConfigError when a (layer, decile) cell has fewer free neurons than the set needs."""
    if draws < 1:
        raise ConfigError(f"draws must be >= 1, got {draws}")
    dec = magnitude_deciles(magnitude)
    out = torch.empty(draws, len(indices), dtype=torch.long)
    chosen = {(int(l), int(i)) for l, i in zip(layers, indices)}
    cells: dict[tuple[int, int], list[int]] = {}
    for j, (l, i) in enumerate(zip(layers.tolist(), indices.tolist())):
        cells.setdefault((l, int(dec[l, i])), []).append(j)
    for (l, q), cols in cells.items():
        pool = torch.tensor([n for n in (dec[l] == q).nonzero().flatten().tolist() if (l, n) not in chosen], dtype=torch.long)
        if len(pool) < len(cols):
            raise ConfigError(f"layer {l}, magnitude decile {q}: {len(pool)} free neurons for {len(cols)} matched draws")
        pick = torch.rand(draws, len(pool), generator=generator).argsort(1)[:, :len(cols)]
        out[:, cols] = pool[pick]
    return out


def neuron_sets_intervention(layers: torch.Tensor, sets: torch.Tensor, mode: str, alpha: float = 0.0,
                             values: torch.Tensor | None = None) -> Intervention:
    """An :class:`Intervention` with one row per neuron set: sets (R, k) neuron indices, column j in layer
    ``layers[j]``; mode ``ablate``, ``scale`` (by alpha) or ``patch`` (to ``values`` (R, k))."""
    if mode not in MODES:
        raise ConfigError(f"intervention mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "patch" and (values is None or values.shape != sets.shape):
        raise ConfigError("a patch needs one value per neuron of every row")
    edit = Intervention()
    for l in layers.unique().tolist():
        cols = (layers == l).nonzero().flatten()
        idx = sets[:, cols]
        if mode == "patch":
            add = values[:, cols].to(torch.float64)
            mult = torch.zeros(idx.shape, dtype=torch.float64)
        else:
            mult = torch.full(idx.shape, 0.0 if mode == "ablate" else float(alpha), dtype=torch.float64)
            add = torch.zeros(idx.shape, dtype=torch.float64)
        edit.neurons[int(l)] = (idx, mult, add)
    return edit


def evaluate_sets(dset: DecisionSet, layers: torch.Tensor, sets: torch.Tensor, targets: list[int], controls: list[int],
                  mode: str, alpha: float = 0.0, source_a: torch.Tensor | None = None) -> torch.Tensor:
    """F (S, P) of every prompt of ``dset`` under every neuron set (S, k): ``ablate``, ``scale`` by alpha, or
    ``patch`` to the activations ``source_a`` (P, L, N) of the paired prompts (same order as ``dset``)."""
    S, P = sets.shape[0], len(dset)
    set_of_row = torch.arange(S).repeat_interleave(P)
    prompt_of_row = torch.arange(P).repeat(S)
    row_sets = sets[set_of_row]
    values = None
    if mode == "patch":
        if source_a is None or source_a.shape[0] != P:
            raise ConfigError("a patch needs the paired prompts' activations, one row per prompt")
        values = source_a[prompt_of_row[:, None], layers[None, :], row_sets]
    edit = neuron_sets_intervention(layers, row_sets, mode, alpha, values)
    with torch.no_grad():
        logits = dset.logits(prompt_of_row, edit)
    return observable(logits, targets, controls).view(S, P)


def empirical_p(effect: float, controls: torch.Tensor | list[float]) -> float:
    """One-sided empirical p-value (1 + #{controls >= effect}) / (1 + n) of an effect against n control draws."""
    c = torch.as_tensor(controls, dtype=torch.float64)
    return float((1 + (c >= effect).sum()) / (1 + c.numel()))


def wilson(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval (95% by default) of a binomial proportion; (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class ControlledEffect:
    """An effect of the selected set against its matched random draws: ``effect`` (the selected set's), the
    controls' mean, 2.5% and 97.5% quantiles, the empirical p-value, and (for rates) the Wilson interval and n."""

    effect: float
    control_mean: float
    control_lo: float
    control_hi: float
    p_value: float
    draws: int
    interval: tuple[float, float] | None = None
    n: int | None = None

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("effect", "control_mean", "control_lo", "control_hi", "p_value", "draws")}
        if self.interval is not None:
            d.update(interval=list(self.interval), n=self.n)
        return d


def controlled(effect: float, controls: torch.Tensor, rate_n: int | None = None) -> ControlledEffect:
    """Summarise an effect against its control draws (a rate over ``rate_n`` prompts gets a Wilson interval)."""
    c = controls.double()
    q = torch.quantile(c, torch.tensor([0.025, 0.975], dtype=torch.float64))
    interval = wilson(round(effect * rate_n), rate_n) if rate_n is not None else None
    return ControlledEffect(float(effect), float(c.mean()), float(q[0]), float(q[1]), empirical_p(effect, c),
                            c.numel(), interval, rate_n)


def residual_direction(x_a: torch.Tensor, x_b: torch.Tensor, layer: int) -> torch.Tensor:
    """v (C,) = mean residual of class b - mean residual of class a at block ``layer``'s input, from traces' x
    (P, L + 1, C)."""
    return (x_b[:, layer].mean(0) - x_a[:, layer].mean(0)).detach()


def inject_effect(dset: DecisionSet, layer: int, directions: torch.Tensor, beta: float,
                  targets: list[int], controls: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(F (D, P), argmax token (D, P)) of every prompt with x_layer <- x_layer + beta·v for each of the D
    directions (D, C) (the first may be the class difference, the rest random directions of its norm)."""
    D, P = directions.shape[0], len(dset)
    prompt_of_row = torch.arange(P).repeat(D)
    edit = Intervention(residual={layer: beta * directions.repeat_interleave(P, 0)})
    with torch.no_grad():
        logits = dset.logits(prompt_of_row, edit)
    return observable(logits, targets, controls).view(D, P), logits.argmax(-1).view(D, P)


def random_directions(v: torch.Tensor, draws: int, generator: torch.Generator) -> torch.Tensor:
    """draws Gaussian directions (draws, C) scaled to the norm of v (the matched control of an injection)."""
    r = torch.randn(draws, v.shape[-1], generator=generator, dtype=v.dtype)
    return r / r.norm(dim=-1, keepdim=True) * v.norm()
