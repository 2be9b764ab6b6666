"""Observables on cases with known answers: a quadratic's Hessian, a deep linear network's stepwise learning."""

import math

import torch

from mechlab.mechanics import effective_rank, layer_statistics, loss_steps, snapshot_matrices, top_hessian_eigenvalue


def test_top_hessian_eigenvalue_of_a_quadratic():
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64))
    lam = torch.linspace(0.1, 5.0, 12, dtype=torch.float64)
    a = q @ torch.diag(lam) @ q.T
    b = torch.randn(12, dtype=torch.float64)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)  # any shape: the Hessian is over all entries
    eig = top_hessian_eigenvalue(lambda: 0.5 * x.reshape(-1) @ a @ x.reshape(-1) + b @ x.reshape(-1), [x],
                                 iters=500, tol=1e-10)
    assert abs(eig - 5.0) < 1e-4


def test_effective_rank_and_layer_statistics():
    assert abs(effective_rank(torch.eye(8)) - 8.0) < 1e-5
    assert abs(effective_rank(torch.outer(torch.ones(5), torch.arange(1.0, 4.0))) - 1.0) < 1e-5
    lin = torch.nn.Linear(4, 3, bias=True)
    before = snapshot_matrices(lin)
    with torch.no_grad():
        lin.weight.mul_(1.1)
    stats = layer_statistics(lin, before)
    assert list(stats) == ["weight"] and abs(stats["weight"]["update_ratio"] - 0.1 / 1.1) < 1e-6


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
