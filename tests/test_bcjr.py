"""Soft trellis decoding against brute-force enumeration of every path."""

import contextlib
import functools
import itertools
import math

import pytest
import torch

from mechlab.kernels import kernel_build, kernel_builds, use_build
from mechlab.quant.bcjr import log_partition, soft_decode, soft_weights
from mechlab.quant.codes import code_table
from mechlab.quant.trellis import viterbi_torch

# the analytic forward–backward (PyTorch in float64, chunked) and the autograd-through-log-Z reference
IMPLS = {"analytic": lambda w, tab, L, kV, T, s=None, e=None: soft_decode(w, tab, L, kV, T, s, e, max_bytes=1),
         "autograd": soft_weights}


U32, U64 = 2.0**-24, 2.0**-53  # unit roundoffs of float32 and float64
BUILDS = kernel_builds()  # the portable AVX2 build (x86-64-v3) and -march=native where that differs


def error_bounds(w, table, L, kV, T, u, probe=None, log_z=True):
    """Derived bounds on the float errors of ŵ, of the gradient <probe, ∂ŵ/∂w> (both (B, 1, 1)) and of log Z (B,)
    for sequences w (B, N, V) computed with unit roundoff u.

    Only states with probability above u matter; their log-weights lie within ln(1/u) of the best state's, whose
    energy is about the Viterbi path's distortion D_t at that step: magnitude Λ_t = ln(1/u) + D_t/T. Every step
    of the forward and backward sweeps rounds them (a few operations of relative error u: ≈ u·Λ_t absolute) and
    those errors add over the 2N steps like a random walk, u·√(2·Σ_t Λ_t²) on log γ; each marginal is a ratio of
    two sums of S = 2^L terms, u·√S each (the practical form of the worst case (S−1)·u; an unvectorised
    sequential sum, the worst order any build takes, measures ≤ 0.1 of the bound). So |δ log γ| ≤ u·A with
    A = 2√S + √(2·Σ_t Λ_t²), and
      ŵ = E_γ[code]:                    |δŵ| ≤ u·A·max|code|;
      ∂loss/∂w_t = (2/T)·Cov(G, code(s_t)), G = <probe, code(path)>, whose terms |code − ŵ|·|E[G | s] − E[G]|
                                        are ≤ max|code|·rms(code)·‖probe‖: |δg| ≤ (2/T)·u·A·max|code|·rms·‖probe‖;
      log Z adds every step's renormalising log-sum-exp: |δ log Z| ≤ u·(|log Z| + Σ_t (Λ_t + √S))."""
    w, table = w.detach().double(), table.double()
    path = viterbi_torch(w.float(), table.float(), L, kV)
    lam = math.log(1 / u) + ((table[path] - w) ** 2).sum(-1) / T  # (B, N)
    S = 1 << L
    A = 2 * math.sqrt(S) + (2 * lam.pow(2).sum(1)).sqrt()  # (B,)
    cmax, rms = float(table.abs().max()), float(table.pow(2).mean().sqrt())
    out = (u * A * cmax).view(-1, 1, 1)
    grad = None if probe is None else out * (2 / T) * rms * probe.double().flatten(1).norm(dim=1).view(-1, 1, 1)
    if log_z:
        log_z = u * (log_partition(w, table, L, kV, T).abs() + lam.sum(1) + lam.shape[1] * math.sqrt(S))
    return out, grad, log_z


def run_on_build(build, stack):
    """Make soft_decode's float32 path run kernel build ``build`` (a key of BUILDS) until ``stack`` closes."""
    kernel = kernel_build("bcjr", BUILDS[build])
    assert kernel is not None, f"the BCJR kernel did not build ({build})"
    stack.enter_context(use_build(BUILDS[build]))


@pytest.fixture
def build_stack():
    """Kernel build selections made during a test, undone after it."""
    with contextlib.ExitStack() as stack:
        yield stack


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
    # float64 on both sides: bounds of error_bounds with u = 2^-53 (twice: the enumeration rounds too)
    b_out, b_grad, b_logz = (2 * b for b in error_bounds(w, table, L, kV, T, U64, probe))
    for b in range(2):
        wb = w[b].detach().clone().requires_grad_(True)
        log_z, ref = brute(wb, table, paths, T)
        (g_ref,) = torch.autograd.grad((ref * probe[b]).sum(), wb)
        assert abs(float(log_partition(w[b : b + 1].detach(), table, L, kV, T)) - log_z.item()) <= b_logz[b]
        assert ((soft[b] - ref).abs() <= b_out[b]).all()
        assert ((g_soft[b] - g_ref).abs() <= b_grad[b]).all()


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
    b_out, b_grad, b_logz = (2 * b for b in error_bounds(w, table, L, kV, T, U64, probe))  # float64 both sides
    assert abs(float(log_partition(w.detach(), table, L, kV, T, ov, ov)) - float(log_z.detach())) <= b_logz[0]
    soft = IMPLS[impl](w, table, L, kV, T, ov, ov)
    (g_soft,) = torch.autograd.grad((soft * probe).sum(), w)
    assert ((soft[0] - ref).abs() <= b_out[0]).all()
    assert ((g_soft[0] - g_ref).abs() <= b_grad[0]).all()


@pytest.mark.parametrize("impl", IMPLS)
def test_gradcheck_float64(impl):
    torch.manual_seed(4)
    table = code_table("lut", 4, 1).double()
    w = torch.randn(2, 5, 1, dtype=torch.float64, requires_grad=True)
    ov = torch.tensor([1, 3])
    # gradcheck's defaults (eps 1e-6, atol 1e-5, rtol 1e-3) judge float64 central differences: truncation
    # O(eps²·third derivative) ~ 1e-12/T³ and rounding u64·|ŵ|/eps ~ 1e-10, both far below atol at T = 0.7
    assert torch.autograd.gradcheck(lambda x: IMPLS[impl](x, table, 4, 2, 0.7), (w,))
    assert torch.autograd.gradcheck(lambda x: IMPLS[impl](x, table, 4, 2, 0.7, ov, ov), (w,))


@pytest.mark.parametrize("impl", [*IMPLS, *(f"kernel-{b}" for b in BUILDS)])
def test_low_temperature_reaches_viterbi_and_high_temperature_the_code_mean(impl, build_stack):
    torch.manual_seed(5)
    L, kV = 8, 2
    table = code_table("lut", L, 1)
    kernel = impl.startswith("kernel-")
    if kernel:
        run_on_build(impl.removeprefix("kernel-"), build_stack)
    decode = soft_decode if kernel else IMPLS[impl]  # float32 soft_decode runs the compiled kernel
    w = torch.randn(2, 32, 1)
    hard = table[viterbi_torch(w, table, L, kV)]
    # T = 1e-3: the float64 result is the Viterbi path's code up to e^(−Δ/T)·max|code| (Δ: the second-best path's
    # extra energy; 3e-12 measured: a property of the data in float64, not of the machine); float32 stays finite
    # and within error_bounds of it
    ref = soft_decode(w.double(), table.double(), L, kV, 1e-3)
    assert (ref - hard).abs().max() < 1e-6
    b_out, _, _ = error_bounds(w, table, L, kV, 1e-3, U32, log_z=False)
    assert ((decode(w, table, L, kV, 1e-3).double() - ref).abs() <= b_out).all()
    # T = 1e6: to first order in 1/T, ŵ_t − mean(code) = −Cov_uniform(E, code(s_t))/T, and s_t shares bits with the
    # ⌈L/kV⌉ + 1 steps around t: |ŵ − mean| ≤ (⌈L/kV⌉ + 1)·max|code|·(max|code| + max|w|)²/T, plus the rounding
    # of the path taken (float64, or the kernel's float32 bound)
    T = 1e6
    first_order = (-(-L // kV) + 1) * float(table.abs().max()) * float(table.abs().max() + w.abs().max()) ** 2 / T
    hot = decode(w if kernel else w.double(), table.double(), L, kV, T)
    b_hot, _, _ = error_bounds(w, table, L, kV, T, U32 if hot.dtype == torch.float32 else U64, log_z=False)
    assert ((hot.double() - float(table.double().mean())).abs() <= first_order + b_hot).all()


@functools.cache
def float64_reference(L, k, V, code, T):
    """Inputs, float64 results (free and tail-biting) and float32 bounds of the kernel test, shared by the builds."""
    torch.manual_seed(L + V)
    table = code_table(code, L, V)
    w = torch.randn(3, 64, V, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(3, 64, V, dtype=torch.float64)
    cases = []
    for ov in (None, torch.tensor([1, 2, 0])):
        ref = soft_decode(w, table.double(), L, k * V, T, ov, ov)
        (g_ref,) = torch.autograd.grad((ref * probe).sum(), w)
        cases.append((ov, ref.detach(), g_ref))
    b_out, b_grad, _ = error_bounds(w, table, L, k * V, T, U32, probe, log_z=False)
    return table, w.detach(), probe, b_out, b_grad, cases


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("L,k,V,code", [(8, 2, 1, "1mad"), (10, 2, 1, "3inst"), (8, 2, 2, "hyb"), (7, 3, 1, "lut")])
@pytest.mark.parametrize("T", [0.01, 0.1, 1.0])
def test_kernel_matches_float64_reference(L, k, V, code, T, build, build_stack):
    """Each build of the compiled float32 kernel against the analytic PyTorch path in float64, free and
    tail-biting, within error_bounds (u = 2^-24; the float64 side's own error is 2^-29 of that)."""
    run_on_build(build, build_stack)
    table, w, probe, b_out, b_grad, cases = float64_reference(L, k, V, code, T)
    for ov, ref, g_ref in cases:
        x = w.float().requires_grad_(True)
        out = soft_decode(x, table, L, k * V, T, ov, ov)
        (g,) = torch.autograd.grad((out * probe.float()).sum(), x)
        err_out, err_g = (out.double() - ref).abs(), (g.double() - g_ref).abs()
        assert (err_out <= b_out).all(), float((err_out / b_out).max())
        assert (err_g <= b_grad).all(), float((err_g / b_grad).max())


def test_chunking_changes_nothing():
    torch.manual_seed(6)
    table = code_table("1mad", 6, 1).double()
    w = torch.randn(5, 16, 1, dtype=torch.float64, requires_grad=True)
    one = soft_decode(w, table, 6, 2, 0.2, max_bytes=1)  # one sequence per chunk
    (g1,) = torch.autograd.grad(one.pow(2).sum(), w)
    all_ = soft_decode(w, table, 6, 2, 0.2, max_bytes=1 << 30)
    (g2,) = torch.autograd.grad(all_.pow(2).sum(), w)
    # the same float64 operations per sequence, batched differently (BLAS may block and sum in another order):
    # both within error_bounds (u = 2^-53, probe = ∂loss/∂ŵ = 2ŵ) of the exact values, so within twice of each other
    b_out, b_grad, _ = (2 * b for b in error_bounds(w, table, 6, 2, 0.2, U64, 2 * one.detach(), log_z=False))
    assert ((one - all_).abs() <= b_out).all() and ((g1 - g2).abs() <= b_grad).all()
