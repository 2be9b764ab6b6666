"""Soft trellis decoding against brute-force enumeration of every path."""

import itertools

import pytest
import torch

from mechlab.kernels import bcjr_kernel
from mechlab.quant.bcjr import log_partition, soft_decode, soft_weights
from mechlab.quant.codes import code_table
from mechlab.quant.trellis import viterbi_torch

# the analytic forward–backward (PyTorch in float64, chunked) and the autograd-through-log-Z reference
IMPLS = {"analytic": lambda w, tab, L, kV, T, s=None, e=None: soft_decode(w, tab, L, kV, T, s, e, max_bytes=1),
         "autograd": soft_weights}


def all_paths(L, kV, N):
    paths = []
    for s0 in range(1 << L):
        for cs in itertools.product(range(1 << kV), repeat=N - 1):
            s = [s0]
            for c in cs:
                s.append(((s[-1] << kV) | c) & ((1 << L) - 1))
            paths.append(s)
    return torch.tensor(paths)  # (n_paths, N)


def brute(w, table, paths, T, keep=None):
    """log Z and ŵ by enumeration: w (N, V) float64."""
    vals = table[paths]  # (n_paths, N, V)
    energy = ((vals - w.unsqueeze(0)) ** 2).sum((1, 2))
    logits = -energy / T
    if keep is not None:
        logits = logits.masked_fill(~keep, -torch.inf)
    log_z = torch.logsumexp(logits, 0)
    p = torch.softmax(logits, 0)
    return log_z, (p[:, None, None] * vals).sum(0)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("L,k,V", [(4, 1, 1), (4, 2, 1), (5, 1, 2)])
@pytest.mark.parametrize("T", [0.05, 0.5, 3.0])
def test_log_z_soft_weights_and_gradients_match_enumeration(impl, L, k, V, T):
    torch.manual_seed(L + k + V)
    kV, N = k * V, 4
    table = code_table("lut", L, V).double()
    paths = all_paths(L, kV, N)
    w = torch.randn(2, N, V, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(2, N, V, dtype=torch.float64)
    soft = IMPLS[impl](w, table, L, kV, T)
    (g_soft,) = torch.autograd.grad((soft * probe).sum(), w)
    for b in range(2):
        wb = w[b].detach().clone().requires_grad_(True)
        log_z, ref = brute(wb, table, paths, T)
        (g_ref,) = torch.autograd.grad((ref * probe[b]).sum(), wb)
        assert float(log_partition(w[b : b + 1].detach(), table, L, kV, T)) == pytest.approx(log_z.item(), abs=1e-9)
        assert torch.allclose(soft[b], ref, atol=1e-5)
        assert torch.allclose(g_soft[b], g_ref, atol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("L,kV", [(4, 2), (4, 1)])
def test_tail_biting_boundaries_match_enumeration(impl, L, kV):
    torch.manual_seed(3)
    N, T = 4, 0.4
    table = code_table("lut", L, 1).double()
    paths = all_paths(L, kV, N)
    w = torch.randn(1, N, 1, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(1, N, 1, dtype=torch.float64)
    ov = torch.tensor([2])
    keep = ((paths[:, 0] >> kV) == ov) & ((paths[:, -1] & ((1 << (L - kV)) - 1)) == ov)
    wb = w[0].detach().clone().requires_grad_(True)
    log_z, ref = brute(wb, table, paths, T, keep)
    (g_ref,) = torch.autograd.grad((ref * probe[0]).sum(), wb)
    assert float(log_partition(w.detach(), table, L, kV, T, ov, ov)) == pytest.approx(float(log_z.detach()), abs=1e-9)
    soft = IMPLS[impl](w, table, L, kV, T, ov, ov)
    (g_soft,) = torch.autograd.grad((soft * probe).sum(), w)
    assert torch.allclose(soft[0], ref, atol=1e-8)
    assert torch.allclose(g_soft[0], g_ref, atol=1e-8)


@pytest.mark.parametrize("impl", IMPLS)
def test_gradcheck_float64(impl):
    torch.manual_seed(4)
    table = code_table("lut", 4, 1).double()
    w = torch.randn(2, 5, 1, dtype=torch.float64, requires_grad=True)
    ov = torch.tensor([1, 3])
    assert torch.autograd.gradcheck(lambda x: IMPLS[impl](x, table, 4, 2, 0.7), (w,))
    assert torch.autograd.gradcheck(lambda x: IMPLS[impl](x, table, 4, 2, 0.7, ov, ov), (w,))


@pytest.mark.parametrize("impl", [*IMPLS, "kernel"])
def test_low_temperature_reaches_viterbi_and_high_temperature_the_code_mean(impl):
    torch.manual_seed(5)
    L, kV = 8, 2
    table = code_table("lut", L, 1)
    decode = soft_decode if impl == "kernel" else IMPLS[impl]  # float32 soft_decode runs the compiled kernel
    w = torch.randn(2, 32, 1)
    hard = table[viterbi_torch(w, table, L, kV)]
    assert torch.allclose(decode(w, table, L, kV, 1e-3), hard, atol=1e-3)  # float32 stays finite at low T
    hot = decode(w.double() if impl != "kernel" else w, table.double(), L, kV, 1e6)
    assert torch.allclose(hot.double(), torch.full_like(hot, float(table.double().mean())).double(), atol=1e-4)


@pytest.mark.parametrize("L,k,V,code", [(8, 2, 1, "1mad"), (10, 2, 1, "3inst"), (8, 2, 2, "hyb"), (7, 3, 1, "lut")])
@pytest.mark.parametrize("T", [0.01, 0.1, 1.0])
def test_kernel_matches_float64_reference(L, k, V, code, T):
    """The compiled float32 kernel against the analytic PyTorch path in float64, free and tail-biting."""
    kernel = bcjr_kernel()
    assert kernel is not None, "the BCJR kernel did not build"
    torch.manual_seed(L + V)
    table = code_table(code, L, V)
    w = torch.randn(3, 64, V, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(3, 64, V, dtype=torch.float64)
    for ov in (None, torch.tensor([1, 2, 0])):
        ref = soft_decode(w, table.double(), L, k * V, T, ov, ov)
        (g_ref,) = torch.autograd.grad((ref * probe).sum(), w)
        x = w.detach().float().requires_grad_(True)
        out = soft_decode(x, table, L, k * V, T, ov, ov)
        (g,) = torch.autograd.grad((out * probe.float()).sum(), x)
        assert (out.double() - ref).abs().max() < 1e-5
        # float32 log-weights of size ~1/T carry relative errors ~1e-7/T into the (2/T)·Cov
        assert (g.double() - g_ref).abs().max() < (1e-5 + 2e-6 / T) * max(1.0, float(g_ref.abs().max()))


def test_chunking_changes_nothing():
    torch.manual_seed(6)
    table = code_table("1mad", 6, 1).double()
    w = torch.randn(5, 16, 1, dtype=torch.float64, requires_grad=True)
    one = soft_decode(w, table, 6, 2, 0.2, max_bytes=1)  # one sequence per chunk
    (g1,) = torch.autograd.grad(one.pow(2).sum(), w)
    all_ = soft_decode(w, table, 6, 2, 0.2, max_bytes=1 << 30)
    (g2,) = torch.autograd.grad(all_.pow(2).sum(), w)
    assert torch.allclose(one, all_, atol=1e-12) and torch.allclose(g1, g2, atol=1e-12)
