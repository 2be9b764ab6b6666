"""Observables: cheap aggregate statistics of a model during training (arXiv 2604.21691).

Any model:

* per-layer weight norm, effective rank (exp of the entropy of the normalised singular values; Roy & Vetterli)
  and update/weight ratio |ΔW| / |W| of one optimiser step (:func:`layer_statistics`);
* sharpness, for the edge of stability: the algebraically largest Hessian eigenvalue λ_max of the loss by power
  iteration on Hessian-vector products (:func:`top_hessian_eigenvalue`), which under full-batch gradient descent
  rises to about 2/η and hovers there (Cohen et al. 2021, arXiv 2103.00065); and under Adam the *preconditioned*
  sharpness λ_max(P⁻¹H) with P read from the optimiser's state (:func:`preconditioned_sharpness`,
  :func:`adam_preconditioner`), which hovers at :func:`adam_threshold` = (2 + 2β1)/((1 − β1)·η), 38/η for
  β1 = 0.9 (Cohen et al. 2022, "Adaptive gradient methods at the edge of stability", arXiv 2207.14484);
* steps and plateaus of a loss curve (:func:`loss_steps`);
* intrinsic dimension of the hidden states by layer (:func:`hidden_state_dimension`): the token embedding and the
  output of every block application in call order (the unrolled depth of a looped model), one point per token,
  estimated by TWO-NN and MLE through :func:`mechlab.geometry.intrinsic_dimension` (arXiv 2605.21692: the
  representation gap is governed by the intrinsic dimension of the representation).

Looped models (arXiv 2604.21254):

* Cross-loop cosine similarity: for consecutive loops l, l+1, the cosine between the middle block's outputs at
  the same token, averaged over tokens (the quantity of the paper's Table 8; near 1 means later loops repeat
  earlier ones, lower means each loop still changes the representation).
* Per-loop logit lens: the residual state after loop l (streams averaged for Hyperloop) sent straight through the
  final norm and the LM head, skipping the remaining loops and the end blocks; its cross-entropy against the
  targets in nats. A loss that falls loop by loop says each loop brings the state closer to a prediction.
"""

from __future__ import annotations

import math

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


def check_hidden_states(model) -> None:
    """ConfigError unless :func:`hidden_states` is defined for ``model`` (a model, or its ModelConfig): not for mHC.
    The trainer calls it before the first step of a run with ``hidden_id_every``."""
    from mechlab.errors import ConfigError

    if getattr(getattr(model, "config", model), "arch", None) == "mhc":
        raise ConfigError("hidden_states: mHC calls attention and MLP through its hyper-connections, not its blocks; "
                          "per-block hidden states are defined for the Transformer, Looped and Hyperloop models")


class _EnoughStates(Exception):
    """Raised by the hook of :func:`hidden_states` once the states asked for are kept, to end the forward pass."""


@torch.no_grad()
def hidden_states(model, idx: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
    """The hidden states of a mechlab Transformer on tokens ``idx`` (B, T), each (B·T, C) float32 on the CPU: the
    token embedding, then the output of every block application in call order (a looped model's middle blocks
    once per loop, so the list follows the unrolled depth; a Hyperloop block's output before the stream mixing).
    ``upto`` = l stops the forward pass once states 0..l are kept (the list then ends at l; the later blocks and the
    head are not run). Raises ConfigError for a model whose blocks are not called as modules (mHC)."""
    from mechlab.models.transformer import Block

    check_hidden_states(model)
    states: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        states.append(output.detach().float().reshape(-1, output.shape[-1]).cpu())
        if upto is not None and len(states) > upto:
            raise _EnoughStates

    handles = [model.embed.register_forward_hook(keep)]
    handles += [m.register_forward_hook(keep) for m in model.modules() if isinstance(m, Block)]
    was_training = model.training
    model.eval()
    try:
        model(idx)
    except _EnoughStates:
        pass
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return states


def hidden_state_dimension(model, idx: torch.Tensor, methods: tuple[str, ...] = ("twonn", "mle"),
                           n_neighbors: int = 20) -> dict[str, list[float]]:
    """``{method: [intrinsic dimension of layer 0 (embedding), layer 1, …]}`` of :func:`hidden_states` on ``idx``,
    each by :func:`mechlab.geometry.intrinsic_dimension` (TWO-NN, Facco et al. 2017; MLE, Levina & Bickel 2004;
    exact duplicate states, e.g. repeated tokens at the embedding, dropped). Errors: those of both functions."""
    from mechlab.geometry import intrinsic_dimension

    layers = [h.numpy() for h in hidden_states(model, idx)]
    return {m: [intrinsic_dimension(h, m, n_neighbors=n_neighbors) for h in layers] for m in methods}


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
    """The algebraically largest eigenvalue (λ_max) of the Hessian H of ``loss_fn()`` (a scalar) w.r.t. ``params``
    (those with ``requires_grad``; any shapes, the Hessian is over all their entries), in the loss's units per
    squared parameter unit, by power iteration on Hessian-vector products (double backward); each power iteration
    stops when the Rayleigh quotient changes by less than ``tol`` relatively, or after ``iters`` products.

    This is the sharpness to compare with 2/η under full-batch gradient descent (Cohen et al. 2021,
    arXiv 2103.00065). Under Adam the quantity that stabilises is :func:`preconditioned_sharpness` instead.
    Power iteration alone gives the eigenvalue of largest *magnitude*, which early in training can be a large
    negative one; when it is negative (λ < 0), a second power iteration on the shifted operator v ↦ Hv − λ·v (all
    eigenvalues ≥ 0, the top one λ_max − λ) gives λ_max, at up to ``iters`` more products (details in
    ``_largest_eigenvalue``). When the first estimate is ≥ 0 the cost is one power iteration, as before. The
    shifted iteration's ``tol`` is relative to λ_max − λ. λ_max may itself be negative (a concave loss).
    """
    return _top_eigenvalue(loss_fn, [p for p in params if p.requires_grad], None, iters, tol, seed)


def adam_threshold(lr: float, beta1: float) -> float:
    """(2 + 2β1) / ((1 − β1)·lr): the largest preconditioned curvature λ of P⁻¹H that Adam's update with
    learning rate ``lr`` and momentum ``beta1`` is stable on (38/lr for β1 = 0.9; 2/lr for β1 = 0, gradient
    descent).

    Derivation (Cohen et al. 2022, arXiv 2207.14484, §2): on a quadratic direction of curvature λ the EMA update
    m_t = β1·m_{t−1} + (1 − β1)·λ·x_t, x_{t+1} = x_t − lr·m_t gives x_{t+1} = (1 + β1 − a)·x_t − β1·x_{t−1}
    with a = lr·(1 − β1)·λ, whose root z = −1 crosses the unit circle at a = 2 + 2β1. P is held fixed in this
    analysis (Adam's drifts slowly when β2 is near 1). Decoupled weight decay w (AdamW) multiplies θ by 1 − lr·w each
    step and lowers the threshold by the relative amount lr·w/2, which is neglected here.
    """
    if not (lr > 0 and 0 <= beta1 < 1):
        raise ValueError(f"adam_threshold needs lr > 0 and 0 <= beta1 < 1, got lr={lr}, beta1={beta1}")
    return (2 + 2 * beta1) / ((1 - beta1) * lr)


@torch.no_grad()
def adam_preconditioner(optimizer: torch.optim.Optimizer, params: list[torch.Tensor],
                        base_lr: float | None = None) -> list[torch.Tensor]:
    """The diagonal of Adam's preconditioner P_t, one tensor of each parameter's shape, from the state of a
    ``torch.optim.Adam`` or ``AdamW`` after its step t, such that the step's update is θ ← θ − base_lr·P⁻¹·m_t
    (decoupled weight decay aside), m_t the *raw* EMA of gradients (``exp_avg``):

        P_i = (1 − β1^t) · (√v̂_i + ε) / (lr_g / base_lr),   v̂ = v_t / (1 − β2^t)   (v: ``exp_avg_sq``,
                                                              ``max_exp_avg_sq`` with amsgrad)

    Why this form: torch's Adam steps θ ← θ − lr_g·m̂/(√v̂ + ε) with m̂ = m_t/(1 − β1^t). Cohen et al. 2022
    (arXiv 2207.14484) write adaptive methods as preconditioned EMA-momentum, θ ← θ − η·P⁻¹·m_t, whose
    stability threshold on P⁻¹H is :func:`adam_threshold`; the bias correction of m therefore goes *into* P as the
    factor (1 − β1^t) (it matters only in the first ~1/(1 − β1) steps). A parameter group whose learning rate
    lr_g differs from ``base_lr`` (mechlab's μP ``lr_mult``) takes the ratio into its P, so one threshold at the
    base lr holds for all groups. ``base_lr`` defaults to the groups' common lr (an error if they differ).

    Errors: ``TypeError`` for another optimizer; ``ValueError`` for a parameter the optimizer does not hold, one
    with no state yet (call ``optimizer.step()`` first), groups with different β1, or a non-positive ``base_lr``.
    """
    if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        raise TypeError(f"adam_preconditioner reads torch.optim.Adam/AdamW state, got {type(optimizer).__name__}: "
                        "for gradient descent compare top_hessian_eigenvalue with 2/lr instead")
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    if len({g["betas"][0] for g in optimizer.param_groups}) > 1:
        raise ValueError("parameter groups have different beta1: there is no single stability threshold")
    if base_lr is None:
        lrs = {float(g["lr"]) for g in optimizer.param_groups}
        if len(lrs) > 1:
            raise ValueError(f"parameter groups have different learning rates {sorted(lrs)}: pass base_lr, the lr "
                             "the threshold is computed with")
        base_lr = lrs.pop()
    if not base_lr > 0:
        raise ValueError(f"base_lr must be positive, got {base_lr}")
    out = []
    for i, p in enumerate(params):
        g = group_of.get(id(p))
        if g is None:
            raise ValueError(f"parameter {i} (shape {tuple(p.shape)}) is not in the optimizer's parameter groups")
        state = optimizer.state.get(p, {})
        if "exp_avg_sq" not in state or float(state["step"]) < 1:
            raise ValueError(f"the optimizer has no state for parameter {i} (shape {tuple(p.shape)}) yet: the "
                             "preconditioner exists only after optimizer.step() has updated it")
        t = float(state["step"])
        beta1, beta2 = g["betas"]
        v = state["max_exp_avg_sq"] if g.get("amsgrad") else state["exp_avg_sq"]
        denom = (v.double() / (1 - beta2**t)).sqrt() + g["eps"]
        ratio = float(g["lr"]) / base_lr  # a frozen group (lr 0) has P = ∞: it takes no step
        out.append(((1 - beta1**t) * denom / ratio if ratio > 0 else torch.full_like(denom, math.inf)).to(p.dtype))
    return out


def preconditioned_sharpness(loss_fn, params: list[torch.Tensor], optimizer: torch.optim.Optimizer,
                             base_lr: float | None = None, iters: int = 20, tol: float = 1e-4,
                             seed: int = 0) -> float:
    """Adam's preconditioned sharpness λ_max(P⁻¹H): H the Hessian of ``loss_fn()`` w.r.t. ``params`` (those with
    ``requires_grad``), P the diagonal preconditioner of :func:`adam_preconditioner` from ``optimizer``'s state
    (torch.optim.Adam or AdamW, after at least one step). Same units as 1/lr; compare with
    ``adam_threshold(base_lr, beta1)`` = 38/lr for β1 = 0.9: full-batch Adam trains at the edge of stability where
    the ratio hovers at 1 (Cohen et al. 2022, "Adaptive gradient methods at the edge of stability",
    arXiv 2207.14484).

    Computed as the algebraically largest eigenvalue (λ_max) of the symmetric P^-1/2·H·P^-1/2 (similar to P⁻¹H, so
    the same spectrum, and symmetric, so power iteration converges) by power iteration on Hessian-vector products,
    with the same second, shifted power iteration as :func:`top_hessian_eigenvalue` when the eigenvalue of largest
    magnitude is negative; ``iters``, ``tol``, ``seed`` as there. Errors: those of :func:`adam_preconditioner`.
    """
    params = [p for p in params if p.requires_grad]
    scale = [pc.rsqrt() for pc in adam_preconditioner(optimizer, params, base_lr)]
    return _top_eigenvalue(loss_fn, params, scale, iters, tol, seed)


def _top_eigenvalue(loss_fn, params, scale, iters, tol, seed) -> float:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):  # the fused attention kernels have no double backward
        return _largest_eigenvalue(loss_fn, params, scale, iters, tol, seed)


SHIFT_RETRIES = 3  # shifted power iterations at most, when the first shift was not below λ_min


def _largest_eigenvalue(loss_fn, params, scale, iters, tol, seed) -> float:
    """λ_max of M = D·H·D, D = diag(``scale``) (the identity when ``scale`` is None), H the Hessian of ``loss_fn()``.

    Power iteration on M gives λ, the eigenvalue of largest magnitude. If λ ≥ 0 it is λ_max (one pass, ``iters``
    Hessian-vector products at most). If λ < 0, a second power iteration on the shifted operator v ↦ Mv − λ·v,
    whose eigenvalues μ − λ are all ≥ 0 when λ ≤ λ_min, converges to λ_max − λ. The Rayleigh quotient λ lies in
    [λ_min, λ_max], so when the first pass stopped before converging (few ``iters``) λ may sit above λ_min, and the
    shifted operator's largest-magnitude eigenvalue can then be the negative λ_min − λ; the shift then moves down
    to that lower estimate and the shifted iteration runs again (``SHIFT_RETRIES`` passes at most). Every Rayleigh
    quotient is a lower bound on λ_max: if no shifted pass finds the positive end, the largest one seen is returned.
    """
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, create_graph=True)

    def matvec(v):
        dv = v if scale is None else [d * x for d, x in zip(scale, v)]
        hv = torch.autograd.grad(grads, params, grad_outputs=dv, retain_graph=True)
        return list(hv) if scale is None else [d * x for d, x in zip(scale, hv)]

    lam = _power_iteration(matvec, params, iters, tol, seed)
    if lam >= 0:
        return lam
    shift, best = lam, lam
    for _ in range(SHIFT_RETRIES):
        mu = _power_iteration(lambda v, s=shift: [h - s * x for h, x in zip(matvec(v), v)], params, iters, tol, seed)
        best = max(best, shift + mu)  # the Rayleigh quotient of M at the shifted pass's vector
        if mu >= 0:
            return shift + mu
        shift = shift + mu  # a Rayleigh quotient below the old shift: a better lower estimate of λ_min
    return best


def _power_iteration(matvec, params, iters, tol, seed) -> float:
    """The eigenvalue of largest magnitude of the symmetric operator ``matvec`` (lists of tensors shaped as
    ``params``) by power iteration from a seeded random start: the Rayleigh quotient, when it changes by less than
    ``tol`` relatively, or after ``iters`` products; 0.0 if the operator maps the iterate to zero."""
    g = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=g).to(p) for p in params]
    norm = torch.sqrt(sum((x * x).sum() for x in v))
    v = [x / norm for x in v]
    eig = 0.0
    for i in range(iters):
        hv = matvec(v)
        new = float(sum((a * b).sum() for a, b in zip(hv, v)))  # Rayleigh quotient vᵀMv, |v| = 1
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
