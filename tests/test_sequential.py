"""Sequential calibration: every yielded Hessian is the one the finished quantised model gives that layer, every
asymmetric target is the least-squares map from the quantised stream to the float layer's output, and quantize_
uses it end to end."""

import copy

import pytest
import torch
import torch.nn as nn

from mechlab.errors import ConfigError
from mechlab.models import build_model, preset
from mechlab.quant import TrellisConfig, TrellisLinear, collect_hessians, quantize_
from mechlab.quant.api import set_module, target_linears
from mechlab.quant.sequential import sequential_calibration

U = 2.0**-24  # float32 unit roundoff
ROWS = 4 * 32  # rows of one batch: each Hessian term is a float32 xᵀx over them, summed in float64


def nano(arch="transformer"):
    torch.manual_seed(0)
    extra = dict(arch=arch, n_layers=3, n_begin=1, n_middle=1, n_end=1, n_loops=2) if arch != "transformer" else {}
    return build_model(preset("nano", vocab_size=48, max_seq_len=64, **extra)).eval()


def batches(n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 48, (4, 32), generator=g) for _ in range(n)]


def perturb_(model, name, w):
    """A stand-in quantiser: the layer becomes the target weight plus a fixed perturbation."""
    lin = model.get_submodule(name)
    new = nn.Linear(lin.in_features, lin.out_features, bias=False)
    g = torch.Generator().manual_seed(len(name))
    with torch.no_grad():
        new.weight.copy_(w + 0.3 * w.std() * torch.randn(w.shape, generator=g))
    set_module(model, name, new)


@pytest.mark.parametrize("asymmetric", [False, True])
def test_each_hessian_is_the_finished_models_and_each_target_the_least_squares_map(asymmetric):
    model, data = nano(), batches()
    teacher = copy.deepcopy(model)
    names = list(target_linears(model))
    yielded = {}
    for name, w, h in sequential_calibration(model, data, names, asymmetric=asymmetric, damp=0.0):
        yielded[name] = (w, h)
        perturb_(model, name, w)
    assert list(yielded) == names  # forward order: q k v o gate up down, block after block
    # a layer's inputs depend only on the layers before it, so the finished model shows the same Hessians
    final = collect_hessians(model, data, names)
    for name in names:
        # the same inputs through the same float32 xᵀx per batch (BLAS may sum in another order): each within
        # ROWS·u·Σ|x_i x_j| of exact, and Σ_r |x_ri x_rj| ≤ √(H_ii·H_jj) (Cauchy–Schwarz)
        h = final[name]
        mag = (torch.diag(h)[:, None] * torch.diag(h)[None, :]).sqrt()
        assert ((yielded[name][1] - h).abs() <= 2 * (ROWS + 1) * U * mag).all(), name
    first = names[0]  # nothing before it is quantised: the target is the float weight itself
    # exactly: both streams are the same values, so E[x_f x_qᵀ] − H is 0 and W' = W through a float64 round trip
    # (2 ulps allowed; H is singular here (κ ~ 1e9, damp 0), so any real correction would be far larger)
    w_first = teacher.get_submodule(first).weight.detach()
    torch.testing.assert_close(yielded[first][0], w_first, rtol=0, atol=2 * U * float(w_first.abs().max()))
    if not asymmetric:
        return
    # the target solves min ‖W x_f − W' x_q‖² over the calibration rows (x_f: the float model's inputs)
    inputs = {}

    def grab(model, tag):
        return [model.get_submodule(n).register_forward_pre_hook(
            lambda _m, a, n=n: inputs.setdefault((tag, n), []).append(a[0].reshape(-1, a[0].shape[-1]).double()))
            for n in names]

    hooks = grab(teacher, "f") + grab(model, "q")
    with torch.no_grad():
        for b in data:
            teacher(b), model(b)
    for h in hooks:
        h.remove()
    for name in names[3:]:  # o onwards: the streams differ
        xf, xq = torch.cat(inputs["f", name]), torch.cat(inputs["q", name])
        assert (xf - xq).norm() > 1e-3 * xf.norm()  # perturbed by 0.3·std upstream: ≫ float32 roundoff
        w = teacher.get_submodule(name).weight.detach().double()
        best = torch.linalg.lstsq(xq, xf @ w.T).solution.T
        def residual(v):
            return float((xf @ w.T - xq @ v.T).pow(2).sum())

        # the same minimum (the minimiser itself is ill-conditioned where the rows span few directions). The
        # yielded W' solves the normal equations with H and E[x_f x_qᵀ] from float32 products (errors E_H, E_C
        # ≤ √ROWS·u·Σ|terms| in practice), so W' − W* = F·H⁻¹ with F = W·E_C − W*·E_H, and the residual exceeds the
        # minimum by tr(F H⁻¹ Fᵀ) ≈ ‖F‖²·tr(H⁻¹)/n (F's errors in random directions); W' rounded to float32 adds
        # ‖x_q·(u·|W'|)ᵀ‖² (everything here counts rows, not means)
        wy = yielded[name][0].double()
        h = xq.T @ xq
        f = ROWS**0.5 * U * (w.abs() @ (xf.abs().T @ xq.abs()) + best.abs() @ (xq.abs().T @ xq.abs()))
        excess = float(f.pow(2).sum() * torch.linalg.inv(h).diagonal().sum() / len(h))
        excess += float((xq.abs() @ (U * wy.abs()).T).pow(2).sum())
        assert residual(wy) <= residual(best) + excess, name
        assert residual(best) < 0.5 * residual(w)  # and the correction matters (a model property, not roundoff)


def test_quantize_sequential_end_to_end_and_its_errors():
    model, data = nano(), batches()
    cfg = TrellisConfig(L=8, k=2, code="1mad")
    report = quantize_(model, cfg, calibration=data, sequential=True)
    names = list(target_linears(nano()))
    assert [r.name for r in report.layers] == names
    assert all(isinstance(model.get_submodule(n), TrellisLinear) for n in names)
    # a quality threshold, not roundoff: 2-bit trellis codes (L=8) leave a relative proxy loss of ~0.1
    assert all(r.proxy_loss is not None and r.proxy_loss < 0.5 for r in report.layers)
    with pytest.raises(ConfigError, match="calibration batches"):
        quantize_(nano(), cfg, sequential=True)
    with pytest.raises(ConfigError, match="once per forward"):
        quantize_(nano("looped"), cfg, calibration=data, sequential=True)
