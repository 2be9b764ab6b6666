"""Quantisation core: trellis against brute force, exact decode, RHT, LDLQ, GPTQ, quantize_ and storage."""

import itertools
import json

import pytest
import torch
import torch.nn as nn

from mechlab.errors import CheckpointError, ConfigError
from mechlab.kernels import TrellisKernel, build, kernel_build, kernel_builds
from mechlab.models import build_model, preset
from mechlab.quant import GPTQConfig, RTNConfig, TrellisConfig, collect_hessians, quantize_, rht
from mechlab.quant.codes import code_table
from mechlab.quant.qtip import block_ldl, proxy_loss, trellis_quantize
from mechlab.quant.scalar import dequantize, gptq_quantize, rtn_quantize
from mechlab.quant.trellis import decode, encode, pack_codes, states_from_codes, unpack_codes, viterbi, viterbi_torch


def path_cost(table, path, w):
    return float(((table[path] - w) ** 2).sum())


def brute_force(table, w, L, kV, circular=False):
    """Minimum distortion over every start state and code sequence (optionally only circular streams)."""
    N = w.shape[0]
    best = float("inf")
    for s0 in range(1 << L):
        for cs in itertools.product(range(1 << kV), repeat=N - 1):
            s = [s0]
            for c in cs:
                s.append(((s[-1] << kV) | c) & ((1 << L) - 1))
            if circular and (s[0] >> kV) != (s[-1] & ((1 << (L - kV)) - 1)):
                continue
            best = min(best, path_cost(table, torch.tensor(s), w))
    return best


U32, U64 = 2.0**-24, 2.0**-53  # unit roundoffs of float32 and float64
BUILDS = kernel_builds()  # the portable AVX2 build (x86-64-v3) and -march=native where that differs
IMPLS = {"torch": viterbi_torch, **{f"kernel-{b}": f for b, f in BUILDS.items()}}


def viterbi_impl(name):
    """viterbi_torch, or the viterbi of kernel build NAME (``kernel-<build>``)."""
    if name == "torch":
        return viterbi_torch
    kernel = kernel_build("trellis", BUILDS[name.removeprefix("kernel-")])
    if kernel is None:
        pytest.skip("no C compiler")
    return kernel.viterbi


def cost_rtol(n_terms: int) -> float:
    """Relative gap between the exact costs of two paths that two float32 Viterbi runs (or a run and the
    enumeration) may each take as the best: every computed path cost (n_terms squared distances accumulated, each
    d = code − w rounded and squared: 3u, plus n_terms roundings of the running sum) is within (3 + n_terms)·u
    of its exact value, the winner is never worse than the loser by more than twice that, and path_cost's own
    float32 recomputation of both adds the same again."""
    return 4 * (3 + n_terms) * U32


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("L,k,V", [(4, 1, 1), (5, 2, 1), (6, 1, 2)])
def test_viterbi_equals_brute_force(impl, L, k, V):
    impl = viterbi_impl(impl)
    torch.manual_seed(L * 10 + k)
    kV = k * V
    table = code_table("lut", L, V)
    w = torch.randn(3, 5, V)
    paths = impl(w, table, L, kV)
    for b in range(3):
        assert path_cost(table, paths[b], w[b]) == pytest.approx(brute_force(table, w[b], L, kV), rel=cost_rtol(5 * V))
    # with both halves of the tail-biting constraint fixed to a given overlap
    ov = torch.tensor([1, 2, 3]) % (1 << (L - kV))
    paths = impl(w, table, L, kV, ov, ov)
    for b in range(3):
        p = paths[b]
        assert int(p[0]) >> kV == ov[b] and int(p[-1]) & ((1 << (L - kV)) - 1) == ov[b]


@pytest.mark.parametrize("impl", [name for name in IMPLS if name != "torch"])
def test_kernel_matches_reference_at_larger_L(impl):
    viterbi_kernel = viterbi_impl(impl)
    torch.manual_seed(0)
    for L, k, V, code in [(12, 2, 1, "1mad"), (12, 2, 2, "hyb"), (11, 3, 1, "3inst")]:
        table = code_table(code, L, V)
        w = torch.randn(4, 64, V)
        a, b = viterbi_torch(w, table, L, k * V), viterbi_kernel(w, table, L, k * V)
        # the same path, or another whose exact cost is within cost_rtol (64·V terms) of it
        assert torch.allclose(((table[a] - w) ** 2).sum((1, 2)), ((table[b] - w) ** 2).sum((1, 2)), rtol=cost_rtol(64 * V), atol=0)


@pytest.mark.parametrize("impl", [name for name in IMPLS if name != "torch"])
def test_kernel_strategies_agree(impl):
    """k=2, V=1 runs the decisions strategy with AVX2; the portable build keeps the m history and recomputes.
    Both make the same float operations (correctly rounded fused multiply-adds, fmaf or the vector FMA, in the
    same order, on every x86 build) and break ties the same way, so the paths are identical."""
    vector = viterbi_impl(impl)
    path = build("trellis", ("-mno-avx2",))
    assert path is not None
    portable = TrellisKernel(path)
    torch.manual_seed(3)
    for L in (6, 12, 16):
        table = code_table("1mad", L, 1)
        w = torch.randn(3, 40, 1)
        ov = torch.tensor([0, 5, 17]) % (1 << (L - 2))
        for start, end in [(None, None), (ov, ov)]:
            assert torch.equal(vector(w, table, L, 2, start, end), portable.viterbi(w, table, L, 2, start, end))


def test_tail_biting_brute_force_and_exact_decode():
    torch.manual_seed(1)
    L, k, V = 5, 2, 1
    table = code_table("lut", L, V)
    w = torch.randn(2, 6)
    codes, start = encode(w, L, k, V, "lut", tail_biting=True)
    assert start is None and codes.shape == (2, 6)
    rec = decode(codes, L, k, V, "lut")
    for b in range(2):
        # two-pass tail-biting is a heuristic: never better than the best circular path (up to the float32 cost
        # gap of cost_rtol over the 6 steps), and close to it (the 1.5 is the heuristic's quality, not roundoff)
        best = brute_force(table, w[b].unsqueeze(-1), L, k * V, circular=True)
        got = float(((rec[b] - w[b]) ** 2).sum())
        slack = cost_rtol(6) * best
        assert best - slack <= got <= best * 1.5 + slack


@pytest.mark.parametrize("L,k,V,code", [(8, 2, 1, "lut"), (10, 2, 1, "1mad"), (10, 3, 1, "3inst"), (10, 2, 2, "hyb"), (9, 3, 2, "lut")])
@pytest.mark.parametrize("tail_biting", [True, False])
def test_decode_of_encode_is_the_viterbi_reconstruction(L, k, V, code, tail_biting):
    torch.manual_seed(2)
    w = torch.randn(6, 256)
    kV = k * V
    codes, start = encode(w, L, k, V, code, tail_biting=tail_biting)
    table = code_table(code, L, V)
    steps = w.reshape(6, -1, V)
    if tail_biting:
        half = steps.shape[1] // 2
        ov = viterbi(torch.roll(steps, half, 1), table, L, kV)[:, half] >> kV
        path = viterbi(steps, table, L, kV, ov, ov)
    else:
        path = viterbi(steps, table, L, kV)
    assert torch.equal(states_from_codes(codes, L, kV, start), path)
    assert torch.equal(decode(codes, L, k, V, code, start), table[path].reshape(6, -1))
    packed = pack_codes(codes, kV)
    assert packed.shape[1] * 8 == 256 * k  # exactly k bits per weight
    assert torch.equal(unpack_codes(packed, kV, codes.shape[1]), codes)


def test_codes_have_unit_rms_and_the_published_raw_scales():
    import numpy as np

    from mechlab.quant.codes import one_mad, three_inst

    s = np.arange(1 << 16)
    # exact float64 enumerations of all 2^16 states (roundoff ~1e-16): the tolerances are the precision of the
    # published constants (1MAD's divisor makes the std 1.00009; 3INST's raw variance is 1.5468, quoted as 1.55)
    assert one_mad(s).std() == pytest.approx(1.0, abs=2e-3)
    assert three_inst(s).var() == pytest.approx(1.55, abs=0.01)
    for code, V in [("1mad", 1), ("3inst", 1), ("hyb", 2), ("lut", 1)]:
        # unit RMS in float64, then each entry rounded to float32: squares within 2u (+ the float64 mean's ~1e-13)
        assert float(code_table(code, 12, V).double().pow(2).mean()) == pytest.approx(1.0, rel=3 * U32)


@pytest.mark.parametrize("n", [64, 352])
def test_rht_round_trip_and_hessian_transform(n):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(32, n, dtype=torch.float64)
    so, si = rht.random_signs(32, g).double(), rht.random_signs(n, g).double()
    wt = rht.rht_weight(w, so, si)
    # four (block) Hadamards in float64, each ≤ 2 passes of ≤ 64-term ±1 sums and a scaling: (2·64 + 1)·u per
    # pass on |H|·|x|, whose 2-norm is ≤ √64·‖x‖ (|H| = ones/√block); ‖·‖_F bounds every element
    transforms = 4 * (2 * 64 + 1) * U64 * 8
    assert ((rht.inverse_rht_weight(wt, so, si) - w).abs() <= transforms * w.norm()).all()
    x = torch.randn(100, n, dtype=torch.float64)
    h = x.T @ x
    dw = torch.randn(32, n, dtype=torch.float64)
    # the proxy loss is the same in the rotated basis: float64 sums of 100 (h), n (dw·h) and 32n terms on both
    # sides, plus the transforms on the rotated side, all relative to Σ|dw|·(|x|ᵀ|x|)·|dw|
    a = ((dw @ h) * dw).sum()
    b = ((rht.rht_weight(dw, so, si) @ rht.rht_hessian(h, si)) * rht.rht_weight(dw, so, si)).sum()
    mag = ((dw.abs() @ (x.abs().T @ x.abs())) * dw.abs()).sum()
    assert (a - b).abs() <= (2 * (100 + 33 * n) * U64 + 3 * transforms) * mag
    assert rht.blocks(352) == [256, 64, 32]


def correlated_hessian(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g) / n**0.5
    x = torch.randn(4 * n, n, generator=g) @ (torch.eye(n) + 2 * a)
    return (x.T @ x / len(x)).double()


def test_block_ldl_factorises():
    h = correlated_hessian(48).double()
    lower = block_ldl(h, 16)
    d = torch.linalg.solve(lower, h) @ torch.linalg.inv(lower).T
    # float64 backward-stable factorisation and solves: a diagonal block C_bb⁻¹·C_bb is I within 16·u·κ(C_bb)
    # (κ(C_bb) ≤ κ(C) = √κ(H)); D = L⁻¹HL⁻ᵀ within 3·48·u·κ(L)²·‖H‖ (solve, inverse, product)
    kappa_c, kappa_l = float(torch.linalg.cond(h)) ** 0.5, float(torch.linalg.cond(lower))
    for i in range(0, 48, 16):
        assert torch.allclose(lower[i : i + 16, i : i + 16], torch.eye(16, dtype=h.dtype), rtol=0, atol=16 * U64 * kappa_c)
        d[i : i + 16, i : i + 16] = 0
    assert d.abs().max() <= 3 * 48 * U64 * kappa_l**2 * float(torch.linalg.matrix_norm(h, 2))  # block diagonal


def test_ldlq_lowers_the_proxy_loss():
    torch.manual_seed(3)
    w, h = torch.randn(32, 64), correlated_hessian(64)
    cfg = TrellisConfig(L=8, k=2, code="lut", rht=True, ldlq=False)
    _, plain = trellis_quantize(w, cfg, h)
    _, ldlq = trellis_quantize(w, TrellisConfig(L=8, k=2, code="lut", rht=True, ldlq=True), h)
    assert proxy_loss(ldlq - w, w, h) < 0.8 * proxy_loss(plain - w, w, h)


def test_gptq_is_rtn_for_an_identity_hessian_and_beats_it_on_a_correlated_one():
    torch.manual_seed(4)
    w = torch.randn(16, 256)
    cfg = GPTQConfig(bits=3, group_size=64, damp=0.0)
    q, s, z = gptq_quantize(w, torch.eye(256), cfg)
    q2, s2, z2 = rtn_quantize(w, RTNConfig(bits=3, group_size=64))
    # scale (hi − lo)/qmax: float64 then rounded to float32 (u) against float32 throughout (2u)
    assert torch.equal(q, q2) and torch.allclose(s, s2, rtol=4 * U32, atol=0)
    h = correlated_hessian(256)
    gq = dequantize(*gptq_quantize(w, h, GPTQConfig(bits=3, group_size=64)), 64)
    rq = dequantize(q2, s2, z2, 64)
    assert proxy_loss(gq - w, w, h) < 0.8 * proxy_loss(rq - w, w, h)


def test_gptq_act_order_is_rtn_for_an_identity_hessian_and_wins_on_outlier_channels():
    torch.manual_seed(5)
    w = torch.randn(32, 256)
    q, s, z = gptq_quantize(w, torch.eye(256), GPTQConfig(bits=3, group_size=64, damp=0.0, act_order=True))
    q2, s2, z2 = rtn_quantize(w, RTNConfig(bits=3, group_size=64))
    # scale (hi − lo)/qmax: float64 then rounded to float32 (u) against float32 throughout (2u)
    assert torch.equal(q, q2) and torch.allclose(s, s2, rtol=4 * U32, atol=0) and torch.equal(z, z2)
    # eight input channels with 100x the energy of the rest, as LLM activations have
    d = torch.ones(256, dtype=torch.float64)
    d[torch.randperm(256)[:8]] = 100.0
    h = d.sqrt()[:, None] * correlated_hessian(256) * d.sqrt()[None, :]
    for bits in (2, 3):
        plain, act = (dequantize(*gptq_quantize(w, h, GPTQConfig(bits=bits, group_size=64, act_order=a)), 64)
                      for a in (False, True))
        assert proxy_loss(act - w, w, h) < 0.6 * proxy_loss(plain - w, w, h)


def test_gptq_dead_inputs_keep_their_rounded_value_and_are_reported():
    """A calibration input channel that is always zero: its column keeps its round-to-nearest value (H has a zero
    row and column there, so no error feedback flows into or out of it), never zeroed; all-zero calibration gives
    the RTN codes; the report counts the dead inputs; non-finite activations are one error naming the layer."""
    torch.manual_seed(6)
    w = torch.randn(16, 64)
    x = torch.randn(200, 64)
    x[:, [3, 40]] = 0.0
    h = (x.T @ x).double() / 200
    q, scales, zeros = gptq_quantize(w, h, GPTQConfig(bits=3, group_size=32))
    for c in (3, 40):
        s, z = scales[:, c // 32].double(), zeros[:, c // 32].double()
        # the dead column is never updated, so its code is the rounding of the original column on the group's grid
        # (float64 throughout; the returned float32 scale is within 2^-24 of the one used, a tie is improbable)
        assert torch.equal(q[:, c].long(), torch.clamp(torch.round(w[:, c].double() / s + z), 0, 7).long())
        assert (q[:, c].double() - z).abs().sum() > 0
    q0, s0, _ = gptq_quantize(w, torch.zeros(64, 64, dtype=torch.float64), GPTQConfig(bits=3, group_size=32, damp=0.0))
    q2, s2, _ = rtn_quantize(w, RTNConfig(bits=3, group_size=32))
    assert torch.equal(q0, q2) and torch.allclose(s0, s2, rtol=4 * U32, atol=0)  # as the identity-Hessian test
    net = nn.Sequential(nn.Linear(64, 16, bias=False))
    report = quantize_(net, GPTQConfig(bits=3, group_size=32), calibration=[x], skip=())
    assert report.layers[0].dead_inputs == 2 and report.summary()["dead_inputs"] == {"0": 2}
    bad = torch.randn(10, 64)
    bad[2, 5] = float("nan")
    with pytest.raises(ConfigError, match="entering 0 are not finite"):
        quantize_(nn.Sequential(nn.Linear(64, 16)), GPTQConfig(bits=3, group_size=32), calibration=[bad], skip=())


def test_rtn_symmetric_and_ragged_groups():
    w = torch.randn(8, 352)
    for sym in (True, False):
        q, s, z = rtn_quantize(w, RTNConfig(bits=4, group_size=128, symmetric=sym))
        assert s.shape == (8, 3) and int(q.max()) <= 15
        err = (dequantize(q, s, z, 128) - w).abs().max()
        # the grid's step (half of it, or a whole one where symmetric clipping bites), plus float32 roundings of
        # w/s + z before rounding and of (q − z)·s after: 4u·(|w| + s)
        assert err <= float(s.max()) * (0.5 if not sym else 1.0) + 4 * U32 * float(w.abs().max() + s.max())


def test_quantize_works_on_a_plain_module():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16))
    x = torch.randn(10, 64)
    ref = net(x)
    w1, w2 = net[0].weight.detach().clone(), net[2].weight.detach().clone()
    h1 = torch.relu(net[0](x)).detach()
    report = quantize_(net, RTNConfig(bits=8, group_size=32), skip=())
    assert len(report.layers) == 2 and type(net[0]).__name__ == "IntLinear"
    # 8-bit RTN: |δW| ≤ s·(1/2 + qmax·2^-11) per group (half a step; fp16 scales: |q − z|·|δs|), propagated
    # through both layers (ReLU is 1-Lipschitz), plus float32 roundings ((n + 1)·u·Σ|terms| per layer, twice)
    def dw(layer):
        return layer.scales.float().repeat_interleave(32, dim=1) * (0.5 + 255 * 2.0**-11)
    e1 = x.abs() @ dw(net[0]).T + 2 * 65 * U32 * (x.abs() @ w1.abs().T)
    e2 = h1.abs() @ dw(net[2]).T + e1 @ (w2.abs() + dw(net[2])).T + 2 * 33 * U32 * (h1.abs() @ w2.abs().T)
    assert ((net(x) - ref).abs() <= e2).all()
    net2 = nn.Sequential(nn.Linear(64, 32))
    quantize_(net2, TrellisConfig(L=8, code="lut", ldlq=True), calibration=[torch.randn(20, 64)], skip=())
    assert net2(x).shape == (10, 32)


def test_looped_hessian_sums_every_loop():
    torch.manual_seed(6)
    m = build_model(preset("looped-tiny", vocab_size=40, max_seq_len=32))
    x = torch.randint(0, 40, (2, 16))
    name = "blocks.1.attn.q"  # a middle block: runs n_loops times per forward
    h = collect_hessians(m, [x], [name])[name]
    inputs = []
    hook = m.get_submodule(name).register_forward_pre_hook(lambda mod, a: inputs.append(a[0].reshape(-1, a[0].shape[-1])))
    with torch.no_grad():
        m(x)
    hook.remove()
    assert len(inputs) == m.config.n_loops
    xs = torch.cat(inputs).double()
    ref = xs.T @ xs / len(xs)
    # each call's xᵀx is a float32 sum over its 2·16 rows (≤ 32·u·Σ|x_i x_j|), summed in float64
    assert ((h - ref).abs() <= 33 * U32 * (xs.abs().T @ xs.abs()) / len(xs)).all()


def test_hessians_of_layers_sharing_an_input():
    """q/k/v (and gate/up) read one tensor: computed once, every layer gets its own correct H."""
    torch.manual_seed(7)
    m = build_model(preset("looped-tiny", vocab_size=40, max_seq_len=32))
    xs = [torch.randint(0, 40, (2, 16)) for _ in range(2)]
    names = ["blocks.1.attn.q", "blocks.1.attn.k", "blocks.1.attn.o", "blocks.1.mlp.up", "blocks.2.mlp.down"]
    together = collect_hessians(m, xs, names)
    for name in names:
        alone = collect_hessians(m, xs, [name])[name]
        # the same float32 xᵀx of 32-row calls (BLAS may still sum in another order): each within 32·u·Σ|x_i x_j|,
        # and Σ_r |x_ri x_rj| ≤ √(H_ii·H_jj) (Cauchy–Schwarz)
        mag = (torch.diag(alone)[:, None] * torch.diag(alone)[None, :]).sqrt()
        assert ((together[name] - alone).abs() <= 2 * 33 * U32 * mag).all()


def test_gptq_and_trellis_need_calibration():
    m = build_model(preset("nano", vocab_size=40))
    with pytest.raises(ConfigError, match="calibration"):
        quantize_(m, GPTQConfig())
    with pytest.raises(ConfigError):
        TrellisConfig(code="hyb", V=1)


def test_quantized_checkpoint_round_trip_and_corruption(tmp_path):
    from mechlab.data.tokenizers import ByteTokenizer
    from mechlab.train.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(7)
    m = build_model(preset("hyperloop-tiny", vocab_size=259, max_seq_len=32))
    x = torch.randint(0, 259, (2, 16))
    quantize_(m, TrellisConfig(L=8, code="lut", ldlq=True), calibration=[x])
    m.eval()
    ref, _ = m(x)
    path = save_checkpoint(tmp_path / "q", m, ByteTokenizer())
    spec = json.loads((path / "quantization.json").read_text())
    assert spec["format"] == "mechlab-quant" and "blocks.0.attn.q" in spec["layers"]
    ck = load_checkpoint(path)
    assert torch.equal(ck.model(x)[0], ref)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(path)
