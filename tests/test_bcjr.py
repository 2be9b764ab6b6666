"""Soft trellis decoding against brute-force enumeration of every path."""

import itertools

import pytest
import torch

from mechlab.quant.bcjr import log_partition, soft_weights
from mechlab.quant.codes import code_table
from mechlab.quant.trellis import viterbi_torch


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


@pytest.mark.parametrize("L,k,V", [(4, 1, 1), (4, 2, 1), (5, 1, 2)])
@pytest.mark.parametrize("T", [0.05, 0.5, 3.0])
def test_log_z_soft_weights_and_gradients_match_enumeration(L, k, V, T):
    torch.manual_seed(L + k + V)
    kV, N = k * V, 4
    table = code_table("lut", L, V).double()
    paths = all_paths(L, kV, N)
    w = torch.randn(2, N, V, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(2, N, V, dtype=torch.float64)
    soft = soft_weights(w, table, L, kV, T)
    (g_soft,) = torch.autograd.grad((soft * probe).sum(), w)
    for b in range(2):
        wb = w[b].detach().clone().requires_grad_(True)
        log_z, ref = brute(wb, table, paths, T)
        (g_ref,) = torch.autograd.grad((ref * probe[b]).sum(), wb)
        assert float(log_partition(w[b : b + 1].detach(), table, L, kV, T)) == pytest.approx(log_z.item(), abs=1e-9)
        assert torch.allclose(soft[b], ref, atol=1e-5)
        assert torch.allclose(g_soft[b], g_ref, atol=1e-5)


def test_tail_biting_boundaries_match_enumeration():
    torch.manual_seed(3)
    L, kV, N, T = 4, 2, 4, 0.4
    table = code_table("lut", L, 1).double()
    paths = all_paths(L, kV, N)
    w = torch.randn(1, N, 1, dtype=torch.float64)
    ov = torch.tensor([2])
    keep = ((paths[:, 0] >> kV) == ov) & ((paths[:, -1] & ((1 << (L - kV)) - 1)) == ov)
    log_z, ref = brute(w[0], table, paths, T, keep)
    assert float(log_partition(w, table, L, kV, T, ov, ov)) == pytest.approx(float(log_z), abs=1e-9)
    assert torch.allclose(soft_weights(w, table, L, kV, T, ov, ov)[0], ref, atol=1e-8)


def test_gradcheck_float64():
    torch.manual_seed(4)
    table = code_table("lut", 4, 1).double()
    w = torch.randn(1, 5, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: soft_weights(x, table, 4, 2, 0.7), (w,))


def test_low_temperature_reaches_viterbi_and_high_temperature_the_code_mean():
    torch.manual_seed(5)
    L, kV = 8, 2
    table = code_table("lut", L, 1)
    w = torch.randn(2, 32, 1)
    hard = table[viterbi_torch(w, table, L, kV)]
    assert torch.allclose(soft_weights(w, table, L, kV, 1e-3), hard, atol=1e-3)  # float32 stays finite at low T
    hot = soft_weights(w.double(), table.double(), L, kV, 1e6)
    assert torch.allclose(hot, torch.full_like(hot, float(table.double().mean())), atol=1e-4)
