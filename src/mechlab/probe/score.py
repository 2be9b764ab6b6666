"""The two-pass perturbation-probing score (Liu, Li, Wu, arXiv 2604.27401; the formulas are the direct-logit-
attribution reading of its abstract, written out in docs/probe.md).

Symbols (paper -> code), for a prompt pair (original o, perturbed p) and the decision position:

* F = mean_t z_t - mean_c z_c, the observable (``observable``), z the logits, t the target and c the control
  tokens; ΔF = F_p - F_o.
* d = mean_t W_U[t] - mean_c W_U[c] (``logit_direction``), W_U the unembedding (V, C) (the tied embedding or
  the LM head, divided by the μP readout multiplier).
* d_eff = γ ⊙ d / rms(x_final) (``readout_direction``), γ the final RMSNorm gain, rms(x) = sqrt(mean(x²) + ε):
  the direction F reads from the residual stream, first order in a perturbation orthogonal to x_final. The exact
  gradient adds −(<γ⊙d, x>/(C·rms³))·x (``exact=True``). The probe uses the mean of the two prompts' d_eff.
* coupling c[l, n] = <d_eff, W_down^l[:, n]>; importance I[l, n] = (a_p - a_o)[l, n] · c[l, n]; Σ_n I[l, n] =
  <d_eff, Δf_l>, the direct effect of layer l's FFN on F to first order.
* attribution patching: I_atp[l, n] = (a_p - a_o)[l, n] · ∂F/∂a[l, n] at the original prompt (one backward pass;
  the gradient includes every indirect path through later layers, so it is summed per layer, not over layers).
* FFN-to-skip ratios per layer: level |<d_eff, f_l>| / |<d_eff, x_l>| (perturbed prompt) and change
  |<d_eff, Δf_l>| / |<d_eff, Δx_l>|, with f_l the FFN output and x_l the block's residual input.

Shapes: P pairs, L layers, N = d_ff neurons per layer, C = d_model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mechlab.errors import ConfigError
from mechlab.probe.hooks import DecisionSet, Trace, check_probeable


def unembedding(model: torch.nn.Module) -> torch.Tensor:
    """W_U (V, C) such that logits = W_U · RMSNorm(x_final): the tied embedding or the LM head's weight, divided by
    the μP readout multiplier (1 under standard parameterisation)."""
    w = model.embed.weight if model.lm_head is None else model.lm_head.weight
    return w / model.config.width_mult


def logit_direction(model: torch.nn.Module, targets: list[int], controls: list[int]) -> torch.Tensor:
    """d (C,) = mean of W_U's target rows - mean of its control rows."""
    if not targets or not controls:
        raise ConfigError("a decision needs at least one target and one control token")
    w = unembedding(model)
    return (w[list(targets)].mean(0) - w[list(controls)].mean(0)).detach()


def observable(logits: torch.Tensor, targets: list[int], controls: list[int]) -> torch.Tensor:
    """F (R,) = mean target logit - mean control logit, from logits (R, V)."""
    return logits[:, list(targets)].mean(-1) - logits[:, list(controls)].mean(-1)


def readout_direction(model: torch.nn.Module, x_final: torch.Tensor, d: torch.Tensor, exact: bool = False) -> torch.Tensor:
    """The direction (B, C) in which the observable F = <d, RMSNorm(x)> reads the final residual x_final (B, C).

    exact=False: the paper's d_eff = γ ⊙ d / rms(x), rms(x) = sqrt(mean(x²) + ε) (exact for perturbations
    orthogonal to x); exact=True: the gradient ∂F/∂x = d_eff − (<γ⊙d, x> / (C·rms³))·x."""
    x = x_final.to(d.dtype)
    gamma = model.norm.weight.detach().to(d.dtype)
    rms = (x.pow(2).mean(-1, keepdim=True) + model.norm.eps).sqrt()
    g = gamma * d
    out = g / rms
    if exact:
        out = out - ((x * g).sum(-1, keepdim=True) / (x.shape[-1] * rms**3)) * x
    return out


@dataclass
class ProbeResult:
    """Everything the two passes measure on P pairs (see the module docstring for the symbols).

    F_o, F_p, dF: (P,); a_o, a_p: (P, L, N) activations; coupling, importance, atp: (P, L, N); d_eff: (P, C);
    dla_layer, atp_layer: (P, L) per-layer sums of importance and of attribution patching; dla_other: (P,) the
    direct terms of the attention outputs and the embedding, so that Σ_l dla_layer + dla_other = <d_eff, Δx_final>;
    ratio_level, ratio_change: (P, L) FFN-to-skip ratios; magnitude: (L, N) mean |a| over both prompts of every
    pair (for matched random controls)."""

    F_o: torch.Tensor
    F_p: torch.Tensor
    a_o: torch.Tensor
    a_p: torch.Tensor
    d_eff: torch.Tensor
    coupling: torch.Tensor
    importance: torch.Tensor
    atp: torch.Tensor
    dla_layer: torch.Tensor
    dla_other: torch.Tensor
    atp_layer: torch.Tensor
    ratio_level: torch.Tensor
    ratio_change: torch.Tensor
    x_o: torch.Tensor
    x_p: torch.Tensor

    @property
    def dF(self) -> torch.Tensor:
        return self.F_p - self.F_o

    @property
    def magnitude(self) -> torch.Tensor:
        return 0.5 * (self.a_o.abs().mean(0) + self.a_p.abs().mean(0))

    def score(self, rank: str = "mean_abs") -> torch.Tensor:
        """Ranking score (L, N): the importance |I| averaged over pairs ("mean_abs", the paper's), |mean I|
        ("abs_mean": neurons that push the same way in every pair), or mean I ("signed": the neurons whose change
        pushes F towards the targets, the ones whose reversal moves the decision back)."""
        if rank == "signed":
            return self.importance.mean(0)
        if rank == "mean_abs":
            return self.importance.abs().mean(0)
        if rank == "abs_mean":
            return self.importance.mean(0).abs()
        raise ConfigError(f"rank must be signed, mean_abs or abs_mean, got {rank!r}")

    def explained(self) -> dict[str, float]:
        """Fractions of the measured ΔF (summed over pairs) explained by: the FFN direct terms (Σ I over all
        layers and neurons), all direct terms (FFN + attention + embedding, i.e. <d_eff, Δx_final>), and
        attribution patching per layer (the largest layer and the sum over layers, which counts indirect paths
        once per layer they pass)."""
        total = float(self.dF.sum())
        atp = self.atp_layer.sum(0)
        if total == 0:  # no measured change to explain: every fraction is undefined
            nan = float("nan")
            return {"dF_sum": 0.0, "ffn_dla": nan, "all_direct": nan, "atp_sum_over_layers": nan, "atp_best_layer": nan,
                    "atp_best_layer_index": int(atp.abs().argmax())}
        return {"dF_sum": total, "ffn_dla": float(self.dla_layer.sum()) / total,
                "all_direct": float(self.dla_layer.sum() + self.dla_other.sum()) / total,
                "atp_sum_over_layers": float(atp.sum()) / total,
                "atp_best_layer": float(atp[atp.abs().argmax()]) / total, "atp_best_layer_index": int(atp.abs().argmax())}


def probe(model: torch.nn.Module, original: DecisionSet, perturbed: DecisionSet, targets: list[int],
          controls: list[int], exact: bool = False) -> ProbeResult:
    """Two passes per pair (original[i], perturbed[i]) plus one backward pass on the originals (attribution
    patching). Raises ConfigError when the sets differ in size."""
    check_probeable(model)
    if len(original) != len(perturbed):
        raise ConfigError(f"{len(original)} original prompts but {len(perturbed)} perturbed ones: give pairs")
    P = len(original)
    rows = torch.arange(P)
    d = logit_direction(model, targets, controls)
    lo, tr_o = original.logits(rows, record_trace=True, grad=True)
    F_o_graph = observable(lo, targets, controls)
    dF_da = tr_o.grad_a(F_o_graph.sum())  # (P, L, N): row r's F depends on row r's a only
    with torch.no_grad():
        lp, tr_p = perturbed.logits(rows, record_trace=True)
        F_o, F_p = F_o_graph.detach(), observable(lp, targets, controls)
        d_eff = 0.5 * (readout_direction(model, tr_o.x[:, -1], d, exact) + readout_direction(model, tr_p.x[:, -1], d, exact))
        W = torch.stack([blk.mlp.down.weight.detach() for blk in model.blocks])  # (L, C, N)
        coupling = torch.einsum("pc,lcn->pln", d_eff, W)
        da = tr_p.a - tr_o.a
        importance = da * coupling
        atp = da * dF_da
        dla_layer = importance.sum(-1)
        dx_final = tr_p.x[:, -1] - tr_o.x[:, -1]
        dla_other = (d_eff * dx_final).sum(-1) - dla_layer.sum(-1)
        proj = lambda t: torch.einsum("pc,plc->pl", d_eff, t)  # noqa: E731
        ratio_level = proj(tr_p.f).abs() / proj(tr_p.x[:, :-1]).abs()
        ratio_change = proj(tr_p.f - tr_o.f).abs() / proj(tr_p.x[:, :-1] - tr_o.x[:, :-1]).abs()
    return ProbeResult(F_o, F_p, tr_o.a, tr_p.a, d_eff, coupling, importance, atp, dla_layer, dla_other,
                       atp.sum(-1), ratio_level, ratio_change, tr_o.x, tr_p.x)


def trace_of(dset: DecisionSet) -> tuple[torch.Tensor, Trace]:
    """Logits (P, V) and :class:`Trace` of every prompt of a decision set, unedited."""
    with torch.no_grad():
        return dset.logits(torch.arange(len(dset)), record_trace=True)
