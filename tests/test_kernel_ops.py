"""The compiled kernels as torch custom ops: schema, fake (meta) implementations and autograd under
torch.library.opcheck, meta-tensor calls, torch.compile, and the PyTorch fallbacks against the kernels."""

import pytest
import torch

from mechlab.kernels import (
    available,
    bcjr_soft,
    decode_1mad,
    kernel_build,
    kernel_builds,
    qmatvec_1mad,
    qmatvec_1mad_op,
    use_build,
    viterbi,
)
from mechlab.quant import TrellisConfig, TrellisLinear
from mechlab.quant.bcjr import soft_decode
from mechlab.quant.codes import code_table
from mechlab.quant.trellis import viterbi_torch
from test_qmatvec import dense_bound, exact, kernel_bound, random_layer

U = 2.0**-24  # float32 unit roundoff
BUILDS = kernel_builds()  # the portable AVX2 build (x86-64-v3) and -march=native where that differs
needs_kernels = pytest.mark.skipif(not all(available(k) for k in ("bcjr", "trellis", "qmatvec")),
                                   reason="no C compiler")


@pytest.fixture(params=[*BUILDS, "torch"])
def build(request):
    """Each compiled build, and the PyTorch fallbacks ("torch": the compiled kernels switched off)."""
    if request.param == "torch":
        with use_build(None):
            yield None
        return
    for name in ("bcjr", "trellis", "qmatvec"):
        assert kernel_build(name, BUILDS[request.param]) is not None, f"{name} did not build ({request.param})"
    with use_build(BUILDS[request.param]):
        yield request.param


def trellis_inputs(seed=0, B=3, N=16, L=6, kV=2):
    g = torch.Generator().manual_seed(seed)
    table = code_table("1mad", L, 1)
    w = torch.randn(B, N, 1, generator=g)
    ov = torch.randint(0, 1 << (L - kV), (B,), generator=g)
    return w, table, L, kV, ov


def layer_inputs(seed=0, m=32, n=48, rows=2, rht=True):
    layer = random_layer(m, n, TrellisConfig(L=12, k=2, code="1mad", rht=rht), seed=seed)
    alpha, s_in, s_out, _ = layer._fused()
    x = torch.randn(rows, n, generator=torch.Generator().manual_seed(seed))
    return layer, x, alpha, s_in, s_out


def test_ops_pass_opcheck(build):
    """Schema, fake implementation, autograd registration and AOT dispatch of every op (float32, small shapes)."""
    w, table, L, kV, ov = trellis_inputs()
    torch.library.opcheck(viterbi, (w, table, L, kV, ov, ov))
    torch.library.opcheck(viterbi, (w, table, L, kV, None, None))
    torch.library.opcheck(bcjr_soft, (w.requires_grad_(), table, L, kV, 0.3, ov, ov, 1 << 20))
    torch.library.opcheck(bcjr_soft, (w.detach().double().requires_grad_(), table.double(), L, kV, 0.3, None, None, 1))
    layer, x, alpha, s_in, s_out = layer_inputs()
    torch.library.opcheck(decode_1mad, (layer.packed, 32, 48, 12, 2, 1))
    torch.library.opcheck(qmatvec_1mad_op, (x, layer.packed, 32, 12, 2, alpha, s_in, s_out, 1))
    torch.library.opcheck(qmatvec_1mad_op, (x, layer.packed, 32, 12, 2, alpha, None, None, 1))


def test_ops_run_on_meta_tensors():
    """Shapes and dtypes from the fake implementations: no data, no kernel call."""
    meta = torch.device("meta")
    w = torch.empty(5, 40, 2, device=meta)
    table = torch.empty(1 << 8, 2, device=meta)
    assert viterbi(w, table, 8, 4).shape == (5, 40) and viterbi(w, table, 8, 4).dtype == torch.int64
    wg = w.requires_grad_()
    out = soft_decode(wg, table, 8, 4, 0.5)
    assert out.shape == (5, 40, 2) and out.device == meta
    (grad,) = torch.autograd.grad(out.sum(), wg)
    assert grad.shape == w.shape and grad.device == meta
    packed = torch.empty(6, 64, dtype=torch.uint8, device=meta)  # 6 tiles of 256 2-bit codes
    assert decode_1mad(packed, 32, 48, 16, 2).shape == (32, 48)
    y = qmatvec_1mad(torch.empty(3, 48, device=meta), packed, 32, 16, 2, 0.5, None, None)
    assert y.shape == (3, 32) and y.dtype == torch.float32 and y.device == meta


def test_a_quantised_layer_made_on_the_meta_device_takes_the_dense_path():
    """A TrellisLinear made on meta tensors (as a model is before loading) has no fused operands and runs
    shape-only."""
    with torch.device("meta"):
        layer = TrellisLinear(48, 32, False, TrellisConfig(L=12, k=2, code="1mad"))
    assert layer.packed.device.type == "meta" and layer._fused() is None


@needs_kernels
def test_ops_compile_without_graph_breaks():
    """torch.compile (fullgraph, AOT autograd) traces through the ops with their fake implementations and runs the
    same kernels on the same operands: forward and gradient bitwise equal to eager."""
    w, table, L, kV, ov = trellis_inputs(seed=1)
    layer, x, alpha, s_in, s_out = layer_inputs(seed=1)

    def fn(w, x):
        soft = soft_decode(w, table, L, kV, 0.3, ov, ov)
        y = qmatvec_1mad(x, layer.packed, 32, 12, 2, alpha, s_in, s_out, 1)
        return (soft * soft).sum() + y.sum(), viterbi(w.detach(), table, L, kV)

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    w1, w2 = w.clone().requires_grad_(), w.clone().requires_grad_()
    (loss1, path1), (loss2, path2) = fn(w1, x), compiled(w2, x)
    assert torch.equal(loss1, loss2) and torch.equal(path1, path2)
    (g1,) = torch.autograd.grad(loss1, w1)
    (g2,) = torch.autograd.grad(loss2, w2)
    assert torch.equal(g1, g2)


@needs_kernels
@pytest.mark.parametrize("b", list(BUILDS))
def test_fallbacks_agree_with_each_build(b):
    """The PyTorch fallbacks against the compiled build: the 1MAD decode is integer arithmetic (byte sums, exact in
    float32) so identical; Viterbi paths reach the same minimum distortion (ties may pick other paths; both sums of
    N float32 squares: within 2·N·u of each other relative to the cost); the matvec within the kernel's and the
    dense path's derived bounds of the float64 product."""
    layer, x, alpha, s_in, s_out = layer_inputs(seed=2, m=48, n=80, rows=3)
    w, table, L, kV, ov = trellis_inputs(seed=2, N=24)
    with use_build(BUILDS[b]):
        dec_k = decode_1mad(layer.packed, 48, 80, 12, 2)
        path_k = viterbi(w, table, L, kV, ov, ov)
        y_k = qmatvec_1mad(x, layer.packed, 48, 12, 2, alpha, s_in, s_out, 1)  # eager: the kernel called directly
        # through the dispatcher: the same kernel on the same operands
        assert torch.equal(qmatvec_1mad_op(x, layer.packed, 48, 12, 2, alpha, s_in, s_out, 1), y_k)
    with use_build(None):
        assert not available("qmatvec")
        dec_t = decode_1mad(layer.packed, 48, 80, 12, 2)
        path_t = viterbi(w, table, L, kV, ov, ov)
        y_t = qmatvec_1mad(x, layer.packed, 48, 12, 2, alpha, s_in, s_out, 1)
    _, b64, w64 = exact(layer)  # b64: the integers of the torch table decode
    assert torch.equal(dec_k, dec_t) and torch.equal(dec_t.double(), b64)
    assert torch.equal(path_t, viterbi_torch(w, table, L, kV, ov, ov))
    # each path minimises its own float32 sums of N squared differences (≤ 3u per term, N − 1 additions: relative
    # γ = (N + 2)·u), so their exact costs are within (1 + γ)² − 1 ≤ 2γ(1 + γ) of each other
    cost = lambda p: ((table.double()[p] - w.double()) ** 2).sum((1, 2))  # noqa: E731
    gamma = (24 + 2) * U
    bound = 2 * gamma * (1 + gamma) * torch.maximum(cost(path_k), cost(path_t))
    assert ((cost(path_k) - cost(path_t)).abs() <= bound).all()
    ref = x.double() @ w64.T
    assert ((y_k.double() - ref).abs() <= kernel_bound(layer, x)).all()
    assert ((y_t.double() - ref).abs() <= dense_bound(layer, x)).all()  # decode, inverse RHT, one matmul
