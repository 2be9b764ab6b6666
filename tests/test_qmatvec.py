"""The fused decode + matvec kernel against the PyTorch decode of the same stored codes."""

import copy
import math

import pytest
import torch
import torch.nn as nn

from mechlab.kernels import QMatvecKernel, available, build, kernel_build, kernel_builds, library, use_build
from mechlab.quant import TrellisConfig, quantize_, rht
from mechlab.quant.codes import code_table, one_mad_unit
from mechlab.quant.linear import FUSED_MAX_ROWS, TrellisLinear, fused_supported
from mechlab.quant.qtip import reconstruct, reconstruct_rotated

pytestmark = pytest.mark.skipif(not available("qmatvec"), reason="no C compiler")
U = 2.0**-24  # float32 unit roundoff
BUILDS = kernel_builds()  # the portable AVX2 build (x86-64-v3) and -march=native where that differs


@pytest.fixture(params=list(BUILDS))
def build_kernel(request):
    """Run the layers of a test on kernel build ``request.param`` (the custom ops' active build)."""
    kernel = kernel_build("qmatvec", BUILDS[request.param])
    assert kernel is not None, f"the qmatvec kernel did not build ({request.param})"
    with use_build(BUILDS[request.param]):
        yield kernel


def exact(layer: TrellisLinear):
    """(α, B, W): the float64 α, the integers B = byte sum − 510 of every weight (the float32 torch decode is
    α·B to relative 3u, |B| ≤ 510: rounding recovers them exactly) and the exact weights W = RHT⁻¹(α·B), float64."""
    alpha = float(layer.scale) * one_mad_unit(layer.config.L)
    b = torch.round(reconstruct_rotated(layer.code(), layer.config).double() / alpha)
    s_out, s_in = layer.signs()
    w = alpha * b if s_in is None else rht.inverse_rht_weight(alpha * b, s_out.double(), s_in.double())
    return alpha, b, w


def abs_hadamard(n: int) -> torch.Tensor:
    """|H_n|, entries 1/√block in the diagonal blocks of the (block) Hadamard, float64."""
    return rht.hadamard(torch.eye(n, dtype=torch.float64)).abs()


def weight_bound(layer: TrellisLinear, signs: bool = True) -> torch.Tensor:
    """Elementwise bound on |W_float32 − W| for the float32 decodes (the kernel's or torch's; with ``signs=False``
    of W₀ = RHT⁻¹ with unit signs): α·B rounded (≤ 3u·|α·B|: the table value times the scale, or the byte sum
    times α), then the two (block) Hadamards of inverse_rht_weight (matmuls of at most 64-term ±1 sums, then the
    1/√n scaling: ≤ (64 + 1)·u each on |H|·|α·B|·|H|), then the two sign products (exact for ±1, 2u for the
    fp16 real scales of ``real_signs``)."""
    alpha, b, _ = exact(layer)
    mag = (alpha * b).abs()
    if layer.config.rht:
        mag = abs_hadamard(layer.out_features) @ mag @ abs_hadamard(layer.in_features)
        s_out, s_in = layer.signs()
        if signs:
            mag = s_out.double().abs()[:, None] * mag * s_in.double().abs()
    return U * (3 + 2 * 65 + 2) * mag


def dense_bound(layer: TrellisLinear, x: torch.Tensor) -> torch.Tensor:
    """Elementwise bound (rows, m) on decode + matmul, F.linear(x, W_float32): the weight's error, then an n-term
    float32 dot product ((n + 1)·u on Σ|x||W|)."""
    _, _, w = exact(layer)
    x = x.double().reshape(-1, w.shape[1])
    return x.abs() @ (weight_bound(layer) + (w.shape[1] + 1) * U * w.abs()).T


def kernel_bound(layer: TrellisLinear, x: torch.Tensor) -> torch.Tensor:
    """Elementwise bound (rows, m) on the fused kernel's y = s_out ⊙ H(α·(Σ_j b_ij·xr_j − 510·Σ_j xr_j)),
    xr = H(s_in ⊙ x), b_ij = B_ij + 510 ∈ [0, 1020], following qmatvec.c's operations (the same in every build:
    the AVX2 path on x86-64-v3 and later, AVX-512 CPUs included, or the portable path):
      s_in ⊙ x and the input Hadamard: a product and ⌈log2 n⌉ butterfly stages and a scaling, orthonormal:
      ‖δxr‖ ≤ (⌈log2 n⌉ + 2)·u·‖s_in ⊙ x‖;
      Σ_j b_ij·xr_j: 16 FMA lanes of n/16 terms, then a 16-term tree (the portable path: 16-term dot products,
      then n/16 accumulations): ≤ (n/16 + 16)·u·Σ_j b_ij·|xr_j| — b_ij ≥ 0 is 510 off-centre, so this is ≈ 3.5×
      the size of the terms of W·x; 510·Σxr (double, rounded once): u·510·|Σ xr|;
      ×α (α rounded to float32, one product): 2u·|y|; the output Hadamard ((⌈log2 m⌉ + 1)·u·‖y‖), then the
      s_out product (u·|y_i|).
    The output Hadamard mixes the elements, so the 2-norm of the error vector before it bounds each of them."""
    alpha, b, w = exact(layer)
    m, n = w.shape
    s_out, s_in = layer.signs()
    x = x.double().reshape(-1, n)
    xs = x if s_in is None else x * s_in.double()
    xr = xs if s_in is None else rht.hadamard(xs)
    y_rot = alpha * (xr @ b.T)  # before the output Hadamard and signs
    lg = lambda k: math.ceil(math.log2(k)) + 1  # noqa: E731
    acc = U * ((n // 16 + 16) * (xr.abs() @ (b + 510).T) + 510 * xr.sum(1, keepdim=True).abs())  # (rows, m)
    if s_in is None:
        return alpha * acc + 2 * U * y_rot.abs()
    err = alpha * acc.norm(dim=1) + 2 * U * y_rot.norm(dim=1) + (alpha * b).norm() * (lg(n) + 1) * U * xs.norm(dim=1)
    err = err + lg(m) * U * y_rot.norm(dim=1)
    return float(s_out.abs().max()) * err.unsqueeze(1) + U * (x @ w.T).abs()


def random_layer(m: int, n: int, cfg: TrellisConfig, bias: bool = False, seed: int = 0) -> TrellisLinear:
    """A TrellisLinear with random stored codes, scale, signs (and bias)."""
    g = torch.Generator().manual_seed(seed)
    layer = TrellisLinear(n, m, bias, cfg)
    layer.packed.copy_(torch.randint(0, 256, layer.packed.shape, generator=g, dtype=torch.uint8))
    layer.scale.fill_(0.02 + torch.rand((), generator=g).item())
    if cfg.rht:
        layer.s_out.copy_(torch.randint(0, 256, layer.s_out.shape, generator=g, dtype=torch.uint8))
        layer.s_in.copy_(torch.randint(0, 256, layer.s_in.shape, generator=g, dtype=torch.uint8))
    if bias:
        layer.bias.copy_(torch.randn(m, generator=g))
    return layer


@pytest.mark.parametrize("L,k", [(16, 2), (16, 3), (16, 4), (12, 2), (12, 4), (10, 1), (20, 2), (24, 3)])
def test_one_mad_unit_is_the_table(L, k):
    c = one_mad_unit(L)
    table = code_table("1mad", L, 1)[:, 0].double()
    # integers (byte sum − 510, |n| ≤ 510) up to the float32 rounding of the table: |t/c − n| ≤ u·|n| (+ float64)
    n = torch.round(table / c)
    assert ((table / c - n).abs() <= 2 * U * n.abs()).all()


@pytest.mark.parametrize("L,k", [(16, 2), (16, 3), (16, 4), (12, 2), (12, 4), (10, 1), (20, 2), (24, 3)])
def test_kernel_decode_and_matvec_match_the_torch_decode(L, k, build_kernel):
    cfg = TrellisConfig(L=L, k=k, code="1mad")
    assert fused_supported(cfg)
    layer = random_layer(48, 80, cfg, seed=L * 10 + k)  # 80 = 64 + 16: a block-diagonal Hadamard
    assert layer._fused() is not None and library("qmatvec") is build_kernel
    _, _, w64 = exact(layer)
    bound = weight_bound(layer)
    assert ((layer.weight().double() - w64).abs() <= bound).all()  # the kernel's decode
    assert ((reconstruct(layer.code(), cfg).double() - w64).abs() <= bound).all()  # the torch decode
    for rows in (1, 3, FUSED_MAX_ROWS):
        x = torch.randn(rows, 80)
        y = layer(x)  # the fused kernel
        assert ((y.double() - x.double() @ w64.T).abs() <= kernel_bound(layer, x)).all()


def test_fused_without_rht_with_bias_and_leading_dims(build_kernel):
    cfg = TrellisConfig(L=16, k=2, code="1mad", rht=False)
    layer = random_layer(32, 64, cfg, bias=True, seed=3)
    x = torch.randn(2, 3, 64)
    _, _, w64 = exact(layer)
    ref = x.double() @ w64.T + layer.bias.double()
    # the kernel's bound, then one rounding of the bias addition: u·|y + bias|
    bound = kernel_bound(layer, x).view(2, 3, -1) + U * ref.abs()
    assert ((layer(x).double() - ref).abs() <= bound).all()


def test_many_rows_and_gradients_take_the_dense_path(build_kernel):
    cfg = TrellisConfig(L=12, k=2, code="1mad")
    layer = random_layer(32, 32, cfg, seed=4)
    _, _, w64 = exact(layer)
    x = torch.randn(FUSED_MAX_ROWS + 1, 32, requires_grad=True)
    y = layer(x)
    y.sum().backward()
    # ∂Σy/∂x = the column sums of W: the float32 weight's error summed over m rows, plus an m-term float32 sum
    m = layer.out_features
    bound = weight_bound(layer).sum(0) + m * U * w64.abs().sum(0)
    assert ((x.grad.double() - w64.sum(0)).abs() <= bound).all()


def test_quantized_layer_end_to_end_and_after_loading(build_kernel):
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(64, 48))
    quantize_(net, TrellisConfig(L=12, k=2, code="1mad"), calibration=[torch.randn(200, 64)], skip=())
    q = net[0]
    x = torch.randn(1, 64)
    _, _, w64 = exact(q)
    ref = x.double() @ w64.T + q.bias.double()
    assert ((q(x).double() - ref).abs() <= kernel_bound(q, x) + U * ref.abs()).all()
    fresh = TrellisLinear(64, 48, True, q.config)
    fresh(x)  # plans the call with the (zero) codes and signs
    fresh.load_state_dict(q.state_dict())
    # the same build on the same operands in the same order: bitwise the same
    assert torch.equal(fresh(x), q(x))  # loading re-plans
    assert torch.equal(copy.deepcopy(q)(x), q(x))  # a copy plans its own call


def test_portable_path_agrees_with_avx2(build_kernel):
    """The scalar path (-mno-avx2) against each vector build: both within kernel_bound of the float64 value;
    the decode is integer arithmetic (byte sums ≤ 1020, exact in float32), so identical."""
    path = build("qmatvec", ("-mno-avx2",))
    assert path is not None
    portable = QMatvecKernel(path)
    cfg = TrellisConfig(L=16, k=3, code="1mad")
    layer = random_layer(32, 48, cfg, seed=6)
    x = torch.randn(2, 48)
    alpha = layer._fused()[0]
    s_out, s_in = layer.signs()
    _, _, w64 = exact(layer)
    ref, bound = x.double() @ w64.T, kernel_bound(layer, x)
    for kernel in (build_kernel, portable):
        assert ((kernel.matvec(x, layer.packed, 32, 16, 3, alpha, s_in, s_out).double() - ref).abs() <= bound).all()
    assert torch.equal(portable.decode(layer.packed, 32, 48, 16, 3), build_kernel.decode(layer.packed, 32, 48, 16, 3))


def test_avx512_path_without_vnni_agrees(build_kernel):
    """On an AVX-512 CPU the native build may take the VNNI byte sum (dpbusd); the AVX-512 path without it
    (maddubs + madd, as on Skylake-X) is built here too and held to the same bound, with the same integer decode."""
    from mechlab.kernels.build import _cpu_flags

    if not {"avx512f", "avx512bw"} <= set(_cpu_flags().split()):
        pytest.skip("this CPU cannot run AVX-512 code")
    path = build("qmatvec", ("-march=skylake-avx512",))
    assert path is not None
    skx = QMatvecKernel(path)
    for L, k in [(16, 2), (16, 4), (12, 3), (24, 3)]:
        layer = random_layer(48, 80, TrellisConfig(L=L, k=k, code="1mad"), seed=L + k)
        alpha = layer._fused()[0]
        s_out, s_in = layer.signs()
        _, _, w64 = exact(layer)
        x = torch.randn(3, 80)
        y = skx.matvec(x, layer.packed, 48, L, k, alpha, s_in, s_out)
        assert ((y.double() - x.double() @ w64.T).abs() <= kernel_bound(layer, x)).all()
        assert torch.equal(skx.decode(layer.packed, 48, 80, L, k), build_kernel.decode(layer.packed, 48, 80, L, k))
