"""Observables on cases with known answers: a quadratic's Hessian (raw and Adam-preconditioned), the stability edge
of EMA momentum, a deep linear network's stepwise learning; the trainer's sharpness log."""

import json
import math

import numpy as np
import pytest
import torch

from mechlab.errors import ConfigError
from mechlab.mechanics import (
    adam_preconditioner,
    adam_threshold,
    effective_rank,
    layer_statistics,
    loss_steps,
    preconditioned_sharpness,
    snapshot_matrices,
    top_hessian_eigenvalue,
)


def test_top_hessian_eigenvalue_of_a_quadratic():
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64))
    lam = torch.linspace(0.1, 5.0, 12, dtype=torch.float64)
    a = q @ torch.diag(lam) @ q.T
    b = torch.randn(12, dtype=torch.float64)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)  # any shape: the Hessian is over all entries
    eig = top_hessian_eigenvalue(lambda: 0.5 * x.reshape(-1) @ a @ x.reshape(-1) + b @ x.reshape(-1), [x],
                                 iters=500, tol=1e-10)
    # power iteration stops when successive estimates move < tol·λ1; the gap λ2/λ1 = 4.55/5 leaves an error of about
    # tol·λ1/(1 − λ2/λ1) ≈ 6e-9 in float64: 1e-4 is a loose, safe bound
    assert abs(eig - 5.0) < 1e-4


def _indefinite(lam: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A symmetric float64 matrix with eigenvalues ``lam`` in a random basis."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(lam), len(lam), generator=g, dtype=torch.float64))
    return q @ torch.diag(lam.to(torch.float64)) @ q.T


def test_top_hessian_eigenvalue_is_the_algebraically_largest_not_the_largest_magnitude():
    """Eigenvalues in [−7, 5]: power iteration alone finds −7; the shifted second pass must return λ_max = 5."""
    a = _indefinite(torch.linspace(-7.0, 5.0, 12))
    want = float(np.linalg.eigvalsh(a.numpy()).max())  # float64 brute force
    assert want == pytest.approx(5.0, abs=1e-12)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    eig = top_hessian_eigenvalue(lambda: 0.5 * x.reshape(-1) @ a @ x.reshape(-1), [x], iters=500, tol=1e-12)
    # shifted spectrum [0, 12], gap ratio 10.9/12: the stopping error tol·12/(1 − 0.91) ≈ 1.3e-10
    assert eig == pytest.approx(want, abs=1e-6)
    # a concave quadratic: λ_max = −1 is negative too, and still the algebraically largest
    b = _indefinite(torch.linspace(-7.0, -1.0, 12), seed=1)
    eig = top_hessian_eigenvalue(lambda: 0.5 * x.reshape(-1) @ b @ x.reshape(-1), [x], iters=500, tol=1e-12)
    assert eig == pytest.approx(float(np.linalg.eigvalsh(b.numpy()).max()), abs=1e-6)
    # H = −2·I: the shifted operator is zero, λ_max = −2
    assert top_hessian_eigenvalue(lambda: -(x * x).sum(), [x], iters=50) == pytest.approx(-2.0, abs=1e-12)


def test_few_iterations_give_a_rayleigh_quotient_below_lambda_max(monkeypatch):
    """With few products (the trainer uses 3) the first estimate of λ_min is crude and the shifted operator's
    largest-magnitude eigenvalue can still be its negative end: the shift moves down and the pass is redone. Whatever
    happens, the answer is a Rayleigh quotient, so never above λ_max and never below the first pass's estimate."""
    from mechlab.mechanics import observables

    passes, original = [], observables._power_iteration

    def spy(*args, **kwargs):
        passes[-1].append(original(*args, **kwargs))
        return passes[-1][-1]

    monkeypatch.setattr(observables, "_power_iteration", spy)
    lam = torch.cat([torch.tensor([-10.0]), torch.full((20,), -2.0), torch.tensor([1.0])])
    x = torch.randn(22, dtype=torch.float64, requires_grad=True)
    for iters in (2, 3, 5):
        for seed in range(3):
            a = _indefinite(lam, seed=seed)
            passes.append([])
            eig = top_hessian_eigenvalue(lambda: 0.5 * x @ a @ x, [x], iters=iters, seed=seed)
            assert max(-10.0, passes[-1][0]) <= eig <= 1.0 + 1e-9, (iters, seed, passes[-1], eig)
    assert any(len(p) > 2 for p in passes)  # the retry with a lower shift ran at least once
    a = _indefinite(torch.cat([torch.tensor([-13.3]), torch.linspace(-0.5, 0.5, 30), torch.tensor([4.0])]), seed=3)
    x = torch.randn(32, dtype=torch.float64, requires_grad=True)
    assert 0 < top_hessian_eigenvalue(lambda: 0.5 * x @ a @ x, [x], iters=3) <= 4.0 + 1e-9


def test_sharpness_costs_one_power_iteration_when_the_top_eigenvalue_is_positive(monkeypatch):
    """λ > 0: 1 gradient + ``iters`` Hessian-vector products, as before; λ < 0: a second pass of at most ``iters``."""
    calls = {"n": 0}
    grad = torch.autograd.grad

    def counting(*args, **kwargs):
        calls["n"] += 1
        return grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting)
    x = torch.randn(12, dtype=torch.float64, requires_grad=True)
    for lam, most in ((torch.linspace(0.1, 5.0, 12), 1 + 6), (torch.linspace(-7.0, 5.0, 12), 1 + 2 * 6)):
        a = _indefinite(lam)
        calls["n"] = 0
        eig = top_hessian_eigenvalue(lambda: 0.5 * x @ a @ x, [x], iters=6, tol=1e-12)
        assert eig > 0 and 6 < calls["n"] <= most, (lam, calls["n"])


def _quadratic(n: int = 10, seed: int = 0):
    """0.5·xᵀAx over x split into two parameters of shapes (3, 2) and (4,), A symmetric positive definite."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    a = q @ torch.diag(torch.logspace(-1, 1, n, dtype=torch.float64)) @ q.T
    xs = [torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True),
          torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)]

    def loss():
        x = torch.cat([p.reshape(-1) for p in xs])
        return 0.5 * x @ a @ x

    return a, xs, loss


def test_preconditioned_sharpness_of_a_quadratic_matches_brute_force():
    a, xs, loss = _quadratic()
    lrs, beta1, beta2, eps, t = (1e-2, 2.5e-3), 0.9, 0.99, 1e-3, 7
    opt = torch.optim.AdamW([{"params": [xs[0]], "lr": lrs[0]}, {"params": [xs[1]], "lr": lrs[1]}],
                            betas=(beta1, beta2), eps=eps)
    g = torch.Generator().manual_seed(1)
    vs = [torch.exp(torch.randn(p.shape, generator=g, dtype=torch.float64)) * 1e-2 for p in xs]
    for p, v in zip(xs, vs):  # a hand-set state after step t
        opt.state[p] = {"step": torch.tensor(float(t)), "exp_avg": torch.zeros_like(p), "exp_avg_sq": v}
    # brute force in float64: P = (1 − β1^t)(√v̂ + ε)/(lr_g/lr), lr = the first group's
    p_diag = np.concatenate([((1 - beta1**t) * (np.sqrt(v.numpy().reshape(-1) / (1 - beta2**t)) + eps) / (lr / lrs[0]))
                             for v, lr in zip(vs, lrs)])
    want = np.linalg.eigvals(np.diag(1 / p_diag) @ a.numpy()).real.max()
    got = preconditioned_sharpness(loss, xs, opt, base_lr=lrs[0], iters=300, tol=1e-13)
    assert got == pytest.approx(want, rel=1e-8)
    assert want > 2 * np.linalg.eigvalsh(a.numpy()).max()  # P matters: far from the raw sharpness
    raw = top_hessian_eigenvalue(loss, xs, iters=300, tol=1e-13)
    assert raw == pytest.approx(np.linalg.eigvalsh(a.numpy()).max(), rel=1e-8)
    with pytest.raises(ValueError, match="pass base_lr"):  # two group lrs: which one does the threshold use?
        preconditioned_sharpness(loss, xs, opt)


def test_preconditioned_sharpness_of_an_indefinite_hessian_is_lambda_max():
    """P⁻¹H with H's eigenvalues in [−7, 5] and a hand-set Adam state: λ_max of P^-1/2·H·P^-1/2 (float64 brute force),
    not the negative eigenvalue of largest magnitude."""
    a = _indefinite(torch.linspace(-7.0, 5.0, 10), seed=4)
    g = torch.Generator().manual_seed(5)
    xs = [torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True),
          torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)]

    def loss():
        x = torch.cat([p.reshape(-1) for p in xs])
        return 0.5 * x @ a @ x

    lr, beta1, beta2, eps, t = 1e-2, 0.9, 0.99, 1e-3, 5
    opt = torch.optim.Adam(xs, lr=lr, betas=(beta1, beta2), eps=eps)
    vs = [torch.exp(torch.randn(p.shape, generator=g, dtype=torch.float64)) * 1e-2 for p in xs]
    for p, v in zip(xs, vs):
        opt.state[p] = {"step": torch.tensor(float(t)), "exp_avg": torch.zeros_like(p), "exp_avg_sq": v}
    p_diag = np.concatenate([(1 - beta1**t) * (np.sqrt(v.numpy().reshape(-1) / (1 - beta2**t)) + eps) for v in vs])
    s = np.diag(p_diag**-0.5)
    spectrum = np.linalg.eigvalsh(s @ a.numpy() @ s)
    assert spectrum.min() < -abs(spectrum.max())  # the largest magnitude is the negative end
    got = preconditioned_sharpness(loss, xs, opt, iters=2000, tol=1e-13)
    assert got == pytest.approx(spectrum.max(), rel=1e-6)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_preconditioner_reproduces_the_adam_step(amsgrad):
    """θ_{t+1} − θ_t = −lr·P_{t+1}⁻¹·m_{t+1} for torch's own Adam step, group lr multipliers included."""
    _, xs, loss = _quadratic(seed=2)
    base_lr = 0.05
    opt_cls = torch.optim.Adam if amsgrad else torch.optim.AdamW
    opt = opt_cls([{"params": [xs[0]], "lr": base_lr}, {"params": [xs[1]], "lr": 0.3 * base_lr}],
                  betas=(0.9, 0.95), eps=1e-6, weight_decay=0.0, amsgrad=amsgrad)
    for _step in range(4):
        before = [p.detach().clone() for p in xs]
        opt.zero_grad()
        loss().backward()
        opt.step()
        pc = adam_preconditioner(opt, xs, base_lr)
        for p, b, d in zip(xs, before, pc):
            want = -base_lr * opt.state[p]["exp_avg"] / d
            torch.testing.assert_close(p.detach() - b, want, rtol=1e-10, atol=1e-14)


def test_adam_threshold_is_the_stability_edge_of_ema_momentum():
    assert adam_threshold(1.0, 0.9) == pytest.approx(38.0) and adam_threshold(0.1, 0.0) == pytest.approx(20.0)
    lr, beta1 = 0.01, 0.9
    for factor, stable in ((0.98, True), (1.02, False)):
        lam, x, m = factor * adam_threshold(lr, beta1), 1.0, 0.0
        for _ in range(3000):  # preconditioned EMA momentum on one direction of curvature lam
            m = beta1 * m + (1 - beta1) * lam * x
            x -= lr * m
        assert (abs(x) < 1e-3) == stable, (factor, x)
    with pytest.raises(ValueError):
        adam_threshold(0.0, 0.9)


def test_preconditioned_sharpness_says_what_is_missing():
    _, xs, loss = _quadratic()
    with pytest.raises(TypeError, match="2/lr"):
        preconditioned_sharpness(loss, xs, torch.optim.SGD(xs, lr=0.1))
    opt = torch.optim.Adam(xs[:1], lr=0.1)
    with pytest.raises(ValueError, match="no state"):
        preconditioned_sharpness(loss, xs[:1], opt)
    opt.zero_grad()
    loss().backward()
    opt.step()
    with pytest.raises(ValueError, match="not in the optimizer"):
        preconditioned_sharpness(loss, xs, opt)
    assert preconditioned_sharpness(loss, xs[:1], opt) > 0


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_trainer_logs_sharpness_against_its_threshold(tmp_path, optimizer):
    from mechlab.train import TrainConfig, train

    cfg = TrainConfig(model="nano", data="tinyshakespeare", tokenizer="byte", seq_len=32, batch_size=4, steps=4,
                      lr=3e-3, warmup_steps=2, eval_every=4, eval_windows=2, log_every=2, save_every=4,
                      hessian_every=2, hessian_iters=3, optimizer=optimizer, out_dir=str(tmp_path / "run"),
                      model_overrides={"parametrization": "mup", "mup_base_width": 32, "tie_embeddings": False})
    # μP: parameter groups with lr_mult ≠ 1
    r = train(cfg, progress=False)
    recs = [json.loads(line) for line in (r.out_dir / "metrics.jsonl").read_text().splitlines()]
    hess = [x for x in recs if "hessian_top" in x]
    assert [x["step"] for x in hess] == [2, 4] and all(math.isfinite(x["hessian_top"]) for x in hess)
    if optimizer == "adamw":
        assert all(math.isfinite(x["precond_sharpness"]) for x in hess)
        assert all(x["adam_threshold"] == pytest.approx(19 * x["two_over_lr"]) for x in hess)  # 38/lr against 2/lr
    else:
        assert not any("precond_sharpness" in x or "adam_threshold" in x for x in hess)
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="adam").validate()


def test_effective_rank_and_layer_statistics():
    # float32 SVD and the entropy of the normalised spectrum: relative error ≲ rank·(1 + ln rank)·n·u, u = 2^-24
    # (8·3.1·8·6e-8 ≈ 1.2e-5 for the identity); bound 4× that. The rank-1 case has zero singular values that the
    # SVD returns at ~n·u·σ1, which add ~n·u·ln(1/(n·u)) to the entropy: far below the same bound.
    u = 2.0**-24
    bound = 4 * 8 * (1 + math.log(8)) * 8 * u
    assert abs(effective_rank(torch.eye(8)) - 8.0) < bound
    assert abs(effective_rank(torch.outer(torch.ones(5), torch.arange(1.0, 4.0))) - 1.0) < bound
    lin = torch.nn.Linear(4, 3, bias=True)
    before = snapshot_matrices(lin)
    with torch.no_grad():
        lin.weight.mul_(1.1)
    stats = layer_statistics(lin, before)
    # ‖1.1w − w‖/‖1.1w‖: the difference 0.1·w carries the roundings of 1.1·w (u·1.1/0.1 = 11u relative), the two
    # norms a few u each: 40u relative to the ratio 0.1/1.1
    ratio = 0.1 / 1.1
    assert list(stats) == ["weight"] and abs(stats["weight"]["update_ratio"] - ratio) < 40 * 2.0**-24 * ratio


def test_deep_linear_network_learns_in_steps_in_the_predicted_order():
    """Saxe et al.: from small initialisation, a two-layer linear network learns the modes of the target map one
    by one, mode i after a time ∝ ln(s_i/ε)/s_i (s_i its singular value, ε the initial mode strength)."""
    torch.manual_seed(0)
    d, s = 6, torch.tensor([4.0, 2.0, 1.0])
    u, _ = torch.linalg.qr(torch.randn(d, d))
    v, _ = torch.linalg.qr(torch.randn(d, d))
    target = u[:, :3] @ torch.diag(s) @ v[:, :3].T
    init = 1e-4
    w1, w2 = (torch.randn(d, d) * init).requires_grad_(), (torch.randn(d, d) * init).requires_grad_()
    lr, losses, svals = 0.02, [], []
    for _ in range(1000):
        loss = 0.5 * ((w2 @ w1 - target) ** 2).sum()  # whitened inputs
        losses.append(loss.item())
        g1, g2 = torch.autograd.grad(loss, [w1, w2])
        with torch.no_grad():
            w1 -= lr * g1
            w2 -= lr * g2
        svals.append(torch.linalg.svdvals((w2 @ w1).detach())[:3])
    svals = torch.stack(svals)
    learned = [int((svals[:, i] > s[i] / 2).float().argmax()) for i in range(3)]  # mode i at half strength
    eps = init**2 * d
    predicted = [math.log(float(si) / eps) / float(si) for si in s]
    assert learned[0] < learned[1] < learned[2]
    for i in range(2):
        ratio, want = learned[i + 1] / learned[i], predicted[i + 1] / predicted[i]
        assert abs(ratio / want - 1) < 0.2, (ratio, want)
    onsets = loss_steps(losses, drop=0.05, window=5)[:3]
    assert len(onsets) == 3 and all(0.6 * t <= o <= t for o, t in zip(onsets, learned))  # a plateau, then a step
