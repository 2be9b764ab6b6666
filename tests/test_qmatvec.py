"""The fused decode + matvec kernel against the PyTorch decode of the same stored codes."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mechlab.kernels import QMatvecKernel, build, qmatvec_kernel
from mechlab.quant import TrellisConfig, quantize_
from mechlab.quant.codes import code_table, one_mad_unit
from mechlab.quant.linear import FUSED_MAX_ROWS, TrellisLinear, fused_supported
from mechlab.quant.qtip import reconstruct

pytestmark = pytest.mark.skipif(qmatvec_kernel() is None, reason="no C compiler")


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
    assert torch.allclose(table / c, torch.round(table / c), atol=1e-3)  # integers: byte sum − 510


@pytest.mark.parametrize("L,k", [(16, 2), (16, 3), (16, 4), (12, 2), (12, 4), (10, 1), (20, 2), (24, 3)])
def test_kernel_decode_and_matvec_match_the_torch_decode(L, k):
    cfg = TrellisConfig(L=L, k=k, code="1mad")
    assert fused_supported(cfg)
    layer = random_layer(48, 80, cfg, seed=L * 10 + k)  # 80 = 64 + 16: a block-diagonal Hadamard
    ref = reconstruct(layer.code(), cfg)
    w = layer.weight()
    assert torch.allclose(w, ref, rtol=1e-5, atol=1e-6 * ref.abs().max().item())
    for rows in (1, 3, FUSED_MAX_ROWS):
        x = torch.randn(rows, 80)
        y = layer(x)
        assert torch.allclose(y, F.linear(x, ref), rtol=1e-4, atol=1e-4 * y.abs().max().item())


def test_fused_without_rht_with_bias_and_leading_dims():
    cfg = TrellisConfig(L=16, k=2, code="1mad", rht=False)
    layer = random_layer(32, 64, cfg, bias=True, seed=3)
    x = torch.randn(2, 3, 64)
    ref = F.linear(x, reconstruct(layer.code(), cfg), layer.bias)
    assert torch.allclose(layer(x), ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_many_rows_and_gradients_take_the_dense_path():
    cfg = TrellisConfig(L=12, k=2, code="1mad")
    layer = random_layer(32, 32, cfg, seed=4)
    ref = reconstruct(layer.code(), cfg)
    x = torch.randn(FUSED_MAX_ROWS + 1, 32, requires_grad=True)
    y = layer(x)
    y.sum().backward()
    assert torch.allclose(x.grad, ref.sum(0).expand_as(x), atol=1e-4)


def test_quantized_layer_end_to_end_and_after_loading():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(64, 48))
    quantize_(net, TrellisConfig(L=12, k=2, code="1mad"), calibration=[torch.randn(200, 64)], skip=())
    q = net[0]
    x = torch.randn(1, 64)
    w = reconstruct(q.code(), q.config)
    assert torch.allclose(q(x), F.linear(x, w, q.bias), atol=1e-4)
    fresh = TrellisLinear(64, 48, True, q.config)
    fresh(x)  # plans the call with the (zero) codes and signs
    fresh.load_state_dict(q.state_dict())
    assert torch.allclose(fresh(x), q(x))  # loading re-plans
    assert torch.equal(copy.deepcopy(q)(x), q(x))  # a copy plans its own call


def test_portable_path_agrees_with_avx2():
    path = build("qmatvec", ("-mno-avx2",))
    assert path is not None
    portable = QMatvecKernel(path)
    cfg = TrellisConfig(L=16, k=3, code="1mad")
    layer = random_layer(32, 48, cfg, seed=6)
    x = torch.randn(2, 48)
    _, alpha, _ = layer._fused()
    s_out, s_in = layer.signs()
    fast = qmatvec_kernel().matvec(x, layer.packed, 32, 16, 3, alpha, s_in, s_out)
    slow = portable.matvec(x, layer.packed, 32, 16, 3, alpha, s_in, s_out)
    assert torch.allclose(fast, slow, rtol=1e-4, atol=1e-5)
    assert torch.equal(portable.decode(layer.packed, 32, 48, 16, 3), qmatvec_kernel().decode(layer.packed, 32, 48, 16, 3))
