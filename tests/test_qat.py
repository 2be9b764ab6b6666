"""BCJR-QAT and STE-QAT: the soft layer, the drift budget, the loop and hardening."""

import copy
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mechlab.errors import ConfigError
from mechlab.models import build_model, preset
from mechlab.quant import TrellisConfig, TrellisLinear, quantize_
from mechlab.quant.codes import code_table
from mechlab.quant.qat import QATConfig, SoftTrellisLinear, escape_radius, kl_teacher_student, qat_
from mechlab.quant.qtip import TrellisCode, from_tiles, reconstruct
from mechlab.quant.trellis import decode
from test_bcjr import error_bounds
from test_qmatvec import abs_hadamard, weight_bound

U32, U64 = 2.0**-24, 2.0**-53  # unit roundoffs of float32 and float64

TRELLIS = TrellisConfig(L=8, k=2, V=1, code="1mad", ldlq=False)


def ptq_model(seed=0, arch="nano", scale=1.0):
    """A random model (matrices × ``scale``: 3 gives peaked predictions, so 2-bit error costs a visible KL), its
    float copy as the teacher, and the model after trellis PTQ."""
    torch.manual_seed(seed)
    m = build_model(preset(arch, vocab_size=48, max_seq_len=64))
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(scale)
    teacher = copy.deepcopy(m).eval()
    quantize_(m, TRELLIS)
    return teacher, m


def stream(n=4000, seed=0):
    return SimpleNamespace(ids=np.random.default_rng(seed).integers(0, 48, n))


def codes_of(model):
    return {n: m.code().codes for n, m in model.named_modules() if isinstance(m, TrellisLinear)}


def test_temperature_schedule_is_geometric_with_a_floor():
    cfg = QATConfig(steps=5)
    temps = [cfg.temperature(s) for s in range(5)]
    # the closed form t_start·(t_end/t_start)^frac in float64: a few ulps
    assert temps[0] == pytest.approx(0.3, rel=8 * U64) and temps[-1] == pytest.approx(0.05, rel=8 * U64)
    assert temps[2] == pytest.approx((0.3 * 0.05) ** 0.5, rel=8 * U64)
    assert QATConfig(steps=3, t_end=1e-4).temperature(2) == 1e-2
    with pytest.raises(ConfigError, match="estimator"):
        QATConfig(estimator="sgd")


def test_soft_layer_starts_at_the_ptq_weights():
    _, m = ptq_model()
    layer = m.blocks[0].mlp.up
    w_ptq = layer.weight()
    # the STE decode is the table's hard code (the latent weights sit on it, far from any tie), so it and the
    # stored layer's decode are each within weight_bound of the exact weights
    ste = SoftTrellisLinear(layer, "ste")
    assert ((ste.weight() - w_ptq).abs() <= 2 * weight_bound(layer)).all()
    soft = SoftTrellisLinear(layer, "bcjr")
    soft.set_temperature(0.01)
    # T = 0.01: the hard code up to e^(−Δ/T) (negligible: measured 2e-8 in all) and the float32 BCJR error
    # (test_bcjr.error_bounds, in code units per tile), carried through ×scale and the inverse RHT (|H|·E·|H|)
    cfg = layer.config
    steps = soft.normalised_tiles().detach().reshape(-1, 256, 1)
    b_out, _, _ = error_bounds(steps, soft.table, cfg.L, cfg.k, 0.01, U32, log_z=False)
    e = from_tiles(b_out.expand(-1, 256, 1).reshape(-1, 256), soft.out_features, soft.in_features, cfg.tile)
    e = abs_hadamard(soft.out_features) @ (e * soft.ptq.scale) @ abs_hadamard(soft.in_features)
    assert ((soft.weight() - w_ptq).abs() <= e + 2 * weight_bound(layer)).all()
    soft.set_temperature(1.0)  # warm: pulled towards the code mean (moves ~2e-2, a code spacing; not roundoff)
    assert not torch.allclose(soft.weight(), w_ptq, atol=1e-3)
    hard, changed = soft.harden()
    assert changed == 0.0 and torch.equal(hard.code().codes, layer.code().codes)


def test_straight_through_gradient_is_the_identity_through_the_rotation():
    _, m = ptq_model()
    layer = SoftTrellisLinear(m.blocks[0].attn.q, "ste")
    probe = torch.randn(layer.out_features, layer.in_features)
    (layer.weight() * probe).sum().backward()
    # RHT and its inverse cancel: four orthonormal (block) Hadamards in float32 (√64-term ±1 sums in practice, and
    # a scaling) and the scale's division and product: ‖δ‖_F ≤ (4·(√64 + 1) + 2)·u·‖probe‖_F bounds every element
    assert ((layer.latent.grad - probe).abs() <= (4 * (64**0.5 + 1) + 2) * U32 * probe.norm()).all()


def test_escape_radius_matches_a_direct_recomputation():
    torch.manual_seed(1)
    cfg = TrellisConfig(L=8, k=2, V=1, code="lut", ldlq=False)
    codes = torch.randint(0, 4, (3, 256))
    radius = escape_radius(TrellisCode(codes, None, 1.0, None, None, (16, 48)), cfg)
    base = decode(codes, 8, 2, 1, "lut")
    for tile, t, delta in [(0, 0, 1), (1, 100, 3), (2, 255, 2)]:  # the last one wraps around
        alt = codes.clone()
        alt[tile, t] ^= delta
        diff = decode(alt, 8, 2, 1, "lut")[tile] - base[tile]
        assert int((diff != 0).sum()) <= 4  # ⌈L/kV⌉ states hold the symbol
        # the radius in float64 from the float32 table, the recomputation in float32: differences (u), squares
        # (2u), a 4-term sum (3u), a square root (halves it): ≤ 8u apart
        assert float(radius[tile, t, delta - 1]) == pytest.approx(0.5 * float(diff.pow(2).mean() * 256 / 4) ** 0.5,
                                                                  rel=8 * U32)
    assert code_table("lut", 8, 1).shape == (256, 1)


@pytest.mark.parametrize("estimator", ["bcjr", "ste"])
def test_zero_steps_keep_the_ptq_code(estimator):
    teacher, m = ptq_model()
    before = codes_of(m)
    report = qat_(m, teacher, QATConfig(trellis=TRELLIS, estimator=estimator, steps=0, seq_len=32), stream(),
                  progress=False)
    assert report.summary()["fraction_codes_changed"] == 0.0
    after = codes_of(m)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_bcjr_qat_trains_hardens_and_lowers_the_kl():
    teacher, m = ptq_model(seed=2, scale=3.0)
    x = torch.from_numpy(stream(seed=9).ids[:256].reshape(8, 32).astype(np.int64))
    with torch.no_grad():
        kl_ptq = float(kl_teacher_student(teacher(x)[0], m(x)[0]))
    cfg = QATConfig(trellis=TRELLIS, estimator="bcjr", steps=12, lr=3e-3, batch_size=8, seq_len=32, t_start=0.1)
    report = qat_(m, teacher, cfg, stream(), progress=False).summary()
    assert report["steps"] == 12 and len(report["kl_curve"]) == 12
    assert 0 < report["fraction_codes_changed"] < 0.5  # training outcomes from here on, not roundoff
    assert all(isinstance(mod, TrellisLinear) for n, mod in m.named_modules() if n.endswith((".q", ".up")))
    assert not any(isinstance(mod, SoftTrellisLinear) for mod in m.modules())
    with torch.no_grad():
        kl_qat = float(kl_teacher_student(teacher(x)[0], m(x)[0]))
    assert kl_qat < 0.9 * kl_ptq  # measured: 0.0369 -> 0.0258
    assert all(p.requires_grad for p in m.parameters())  # the freezing during QAT is undone


def test_looped_layers_share_one_decode_per_step():
    teacher, m = ptq_model(arch="hyperloop-tiny")
    cfg = QATConfig(trellis=TRELLIS, estimator="bcjr", steps=1, lr=1e-3, batch_size=2, seq_len=16,
                    layers=("blocks.1.*",))
    calls = []
    original = SoftTrellisLinear.weight
    SoftTrellisLinear.weight = lambda self: calls.append(1) or original(self)
    try:
        report = qat_(m, teacher, cfg, stream(), progress=False)
    finally:
        SoftTrellisLinear.weight = original
    assert len(report.layers) == 7 and all(n.startswith("blocks.1.") for n in report.layers)
    assert len(calls) == 7  # one decode per layer, though the middle block runs n_loops times


def test_a_budget_that_cannot_move_any_code_warns(caplog):
    teacher, m = ptq_model()
    cfg = QATConfig(trellis=TRELLIS, estimator="ste", steps=2, lr=1e-9, seq_len=16, batch_size=2)
    with caplog.at_level(logging.WARNING, logger="mechlab.quant.qat"):
        report = qat_(m, teacher, cfg, stream(), progress=False).summary()
    assert "no code can be expected to change" in caplog.text
    assert report["drift_budget"] < report["escape_radius_min"] and report["fraction_codes_changed"] == 0.0


def test_qat_needs_trellis_layers():
    teacher, m = ptq_model()
    with pytest.raises(ConfigError, match="no trellis-quantised layer"):
        qat_(m, teacher, QATConfig(trellis=TRELLIS, layers=("nothing.*",), seq_len=16), stream(), progress=False)


def test_reconstruct_of_the_hardened_code_is_what_the_model_uses():
    teacher, m = ptq_model(seed=3)
    qat_(m, teacher, QATConfig(trellis=TRELLIS, estimator="ste", steps=3, lr=1e-2, seq_len=16, batch_size=2),
         stream(), progress=False)
    layer = m.blocks[1].mlp.down
    w = reconstruct(layer.code(), layer.config)  # the compiled decode differs from the table only in rounding
    assert ((layer.weight() - w).abs() <= 2 * weight_bound(layer)).all()  # each within weight_bound of exact
