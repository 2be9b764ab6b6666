"""Observables: cheap aggregate statistics of a model during training (papers/learning-mechanics.md).

Any model:

* per-layer weight norm, effective rank (exp of the entropy of the normalised singular values; Roy & Vetterli)
  and update/weight ratio |ΔW| / |W| of one optimiser step (:func:`layer_statistics`);
* the top Hessian eigenvalue of the loss by power iteration on Hessian-vector products
  (:func:`top_hessian_eigenvalue`), to compare with 2/η (edge of stability: for gradient descent it rises to
  about 2/η and hovers there);
* steps and plateaus of a loss curve (:func:`loss_steps`).

Looped models (papers/hyperloop.md):

* Cross-loop cosine similarity: for consecutive loops l, l+1, the cosine between the middle block's outputs at
  the same token, averaged over tokens (the quantity of the paper's Table 8; near 1 means later loops repeat
  earlier ones, lower means each loop still changes the representation).
* Per-loop logit lens: the residual state after loop l (streams averaged for Hyperloop) sent straight through the
  final norm and the LM head, skipping the remaining loops and the end blocks; its cross-entropy against the
  targets in nats. A loss that falls loop by loop says each loop brings the state closer to a prediction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def loop_observables(model, idx: torch.Tensor, targets: torch.Tensor) -> dict[str, list[float]]:
    """``{"loop_cos": [L-1 floats], "lens_loss": [L floats]}`` for a looped model on one batch; ``{}`` otherwise."""
    if not model.config.is_looped:
        return {}
    was_training = model.training
    model.eval()
    T = idx.shape[1]
    trace: dict = {}
    model.body(model.embed(idx), model.rope_cos[:T], model.rope_sin[:T], trace=trace)
    model.train(was_training)
    middle = [h.float() for h in trace["middle"]]
    cos = [float(F.cosine_similarity(a, b, dim=-1).mean()) for a, b in zip(middle, middle[1:])]
    lens = [float(F.cross_entropy(model.head(h).float().flatten(0, 1), targets.reshape(-1))) for h in trace["after_loop"]]
    return {"loop_cos": cos, "lens_loss": lens}


def effective_rank(w: torch.Tensor) -> float:
    """exp(H(p)) with p the singular values of w normalised to sum 1: between 1 (rank one) and min(w.shape)."""
    s = torch.linalg.svdvals(w.detach().float())
    p = s / s.sum().clamp(min=1e-30)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def layer_statistics(model: torch.nn.Module, before: dict[str, torch.Tensor] | None = None) -> dict[str, dict]:
    """For every matrix parameter: weight norm, effective rank and (given the weights ``before`` an update)
    the update/weight ratio |W − W_before| / |W|."""
    out = {}
    for name, p in model.named_parameters():
        if p.dim() != 2:
            continue
        w = p.detach().float()
        row = {"w_norm": float(w.norm()), "eff_rank": effective_rank(w)}
        if before is not None and name in before:
            row["update_ratio"] = float((w - before[name].float()).norm() / w.norm().clamp(min=1e-30))
        out[name] = row
    return out


def snapshot_matrices(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the matrix parameters (for the update/weight ratio of the next step)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.dim() == 2}


def top_hessian_eigenvalue(loss_fn, params: list[torch.Tensor], iters: int = 20, tol: float = 1e-4,
                           seed: int = 0) -> float:
    """The eigenvalue of largest magnitude of the Hessian of ``loss_fn()`` w.r.t. ``params``, by power
    iteration on Hessian-vector products (double backward); stops when the Rayleigh quotient changes by less than
    ``tol`` relatively."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):  # the fused attention kernels have no double backward
        return _power_iteration(loss_fn, [p for p in params if p.requires_grad], iters, tol, seed)


def _power_iteration(loss_fn, params, iters, tol, seed) -> float:
    g = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=g).to(p) for p in params]
    norm = torch.sqrt(sum((x * x).sum() for x in v))
    v = [x / norm for x in v]
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    eig = 0.0
    for i in range(iters):
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        new = float(sum((a * b).sum() for a, b in zip(hv, v)))  # Rayleigh quotient vᵀHv, |v| = 1
        norm = torch.sqrt(sum((x * x).sum() for x in hv))
        if float(norm) == 0.0:
            return 0.0
        v = [x / norm for x in hv]
        if i > 0 and abs(new - eig) <= tol * max(abs(new), 1e-12):
            return new
        eig = new
    return eig


def loss_steps(loss: list[float] | torch.Tensor, drop: float = 0.1, window: int = 5) -> list[int]:
    """Indices where a loss curve drops fast: the start of every run of steps whose relative decrease over
    ``window`` points exceeds ``drop`` (stepwise learning shows one such run per learned mode, separated by
    plateaus)."""
    x = torch.as_tensor(loss, dtype=torch.float64)
    if len(x) <= window:
        return []
    rel = (x[:-window] - x[window:]) / x[:-window].abs().clamp(min=1e-30)
    fast = (rel > drop).tolist()
    return [i for i, f in enumerate(fast) if f and (i == 0 or not fast[i - 1])]
