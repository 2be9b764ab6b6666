"""Fine-tuning the continuous parts of a trellis code: the layer-wise row/column scale fit against a direct
minimisation, ``real_signs`` storage and kernels, and end-to-end fine-tuning with the codes frozen."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mechlab.errors import ConfigError
from mechlab.kernels import available
from mechlab.models import build_model, preset
from mechlab.quant import TrellisConfig, TrellisLinear, quantize_
from mechlab.quant.finetune import FinetuneConfig, ScaledCodeLinear, embeddings, finetune_
from mechlab.quant.qat import kl_teacher_student, lr_factor
from mechlab.quant.qtip import fit_row_col_scales, proxy_loss, trellis_quantize
from test_qat import stream
from test_qmatvec import abs_hadamard, dense_bound, exact, kernel_bound, weight_bound
from test_quant import correlated_hessian

U32, U64 = 2.0**-24, 2.0**-53  # unit roundoffs of float32 and float64

REAL = TrellisConfig(L=8, k=2, code="1mad", ldlq=False, real_signs=True)


def scaled_loss(w, w0, h, a, b):
    dw = w - a[:, None] * w0 * b
    return float(((dw @ h) * dw).sum())


def test_row_col_scales_reach_the_minimum_of_a_direct_optimisation():
    torch.manual_seed(0)
    w, h = torch.randn(12, 32).double(), correlated_hessian(32).double()
    w0 = w * (1 + 0.3 * torch.randn(12, 32).double())  # a crude "reconstruction"
    a, b = fit_row_col_scales(w, w0, h, iters=50)
    # reference: L-BFGS on the same float64 objective, from the same start
    pa, pb = torch.ones(12, dtype=torch.float64, requires_grad=True), torch.ones(32, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([pa, pb], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15)

    def closure():
        opt.zero_grad()
        dw = w - pa[:, None] * w0 * pb
        loss = ((dw @ h) * dw).sum()
        loss.backward()
        return loss

    opt.step(closure)
    best = scaled_loss(w, w0, h, pa.detach(), pb.detach())
    ours = scaled_loss(w, w0, h, a.double(), b.double())
    # the alternating steps reach the minimum (float64, measured to 2e-14 relative); a, b returned in float32 sit
    # at most u·|p| from it, where the loss is stationary: + ½·(u·‖p‖)²·λ_max(∇²loss), plus the float64
    # evaluation of the loss (32·32 + 32 terms of Σ|dw|·|h|·|dw|)
    p = torch.cat([a.double(), b.double()])
    hess = torch.autograd.functional.hessian(lambda q: ((w - q[:12, None] * w0 * q[12:]) @ h * (w - q[:12, None] * w0 * q[12:])).sum(), p)
    dw = w - a.double()[:, None] * w0 * b.double()
    slack = 0.5 * (U32 * float(p.norm())) ** 2 * float(torch.linalg.eigvalsh(hess).max())
    slack += 2 * (32 * 32 + 32) * U64 * float((dw.abs() @ h.abs() * dw.abs()).sum())
    assert ours <= best + slack
    assert ours < 0.9 * scaled_loss(w, w0, h, torch.ones(12).double(), torch.ones(32).double())
    # an exact row/column rescaling of W is undone (up to the one scale the product leaves free)
    a_true, b_true = 1 + 0.2 * torch.rand(12).double(), 1 + 0.2 * torch.rand(32).double()
    a, b = fit_row_col_scales(a_true[:, None] * w * b_true, w, h, iters=50)
    # exact in float64 (to ~1e-14), then a and b each rounded to float32: the product within (1 + u)² − 1 ≈ 2u
    assert torch.allclose(a.double()[:, None] * b.double(), a_true[:, None] * b_true, rtol=3 * U32, atol=0)


def test_real_signs_lower_the_proxy_loss_with_the_same_codes():
    torch.manual_seed(1)
    w, h = torch.randn(32, 64) * torch.linspace(0.5, 2, 32)[:, None], correlated_hessian(64)
    signs_cfg = TrellisConfig(L=8, k=2, code="1mad")
    code, w_signs = trellis_quantize(w, signs_cfg, h, seed=3)
    real, w_real = trellis_quantize(w, TrellisConfig(L=8, k=2, code="1mad", real_signs=True), h, seed=3)
    assert torch.equal(code.codes, real.codes)
    assert proxy_loss(w_real - w, w, h) < proxy_loss(w_signs - w, w, h)
    assert torch.equal(real.s_out, real.s_out.half().float())  # what is returned is what fp16 storage holds


def test_real_signs_layers_store_fp16_scales_and_run_on_the_kernel(tmp_path):
    from mechlab.data.tokenizers import ByteTokenizer
    from mechlab.train.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(2)
    m = build_model(preset("nano", vocab_size=259, max_seq_len=32))
    x = torch.randint(0, 259, (2, 16))
    quantize_(m, REAL)
    layer = m.blocks[0].mlp.up
    assert layer.s_out.dtype == torch.float16 and layer.s_out.shape == (layer.out_features,)
    assert not torch.equal(layer.s_out.abs(), torch.ones_like(layer.s_out))  # fitted, not ±1
    v = torch.randn(3, layer.in_features)
    # every path against the float64 product with the exact weights, within its own derived bound
    alpha, b_int, w64 = exact(layer)
    ref = v.double() @ w64.T
    fused = layer._fused() is not None and available("qmatvec")  # the fused kernel runs this layer
    fused_or_dense = kernel_bound(layer, v) if fused else dense_bound(layer, v)
    assert ((layer(v).double() - ref).abs() <= fused_or_dense).all()  # fused kernel or decode + matmul
    assert ((F.linear(v, layer.weight()).double() - ref).abs() <= dense_bound(layer, v)).all()
    scaled = ScaledCodeLinear(layer)
    # F.linear(v ⊙ s_in, W₀) ⊙ s_out: W₀'s bound, the s_in product (u), an n-term dot product ((n + 1)·u), the
    # s_out product (u·|y|)
    s_out, s_in = layer.signs()
    n = layer.in_features
    w0_abs = abs_hadamard(layer.out_features) @ (alpha * b_int).abs() @ abs_hadamard(n)
    inner = (v.double() * s_in.double()).abs() @ (weight_bound(layer, signs=False) + (n + 2) * U32 * w0_abs).T
    assert ((scaled(v).double() - ref).abs() <= s_out.double().abs() * inner + U32 * ref.abs()).all()
    m.eval()
    ref, _ = m(x)
    ck = load_checkpoint(save_checkpoint(tmp_path / "q", m, ByteTokenizer()))
    assert torch.equal(ck.model(x)[0], ref)


def test_finetuning_lowers_the_kl_and_keeps_every_code():
    torch.manual_seed(3)
    m = build_model(preset("nano", vocab_size=48, max_seq_len=64))
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(3.0)  # peaked predictions, so 2-bit error costs a visible KL
    teacher = copy.deepcopy(m).eval()
    quantize_(m, REAL)
    codes = {n: mod.packed.clone() for n, mod in m.named_modules() if isinstance(mod, TrellisLinear)}
    x = torch.from_numpy(stream(seed=9).ids[:256].reshape(8, 32).astype(np.int64))
    with torch.no_grad():
        kl_ptq = float(kl_teacher_student(teacher(x)[0], m(x)[0]))
    summary = finetune_(m, teacher, FinetuneConfig(steps=30, lr=1e-2, batch_size=8, seq_len=32), stream(),
                        progress=False)
    assert summary["steps"] == 30 and summary["layers"] == len(codes)
    with torch.no_grad():
        kl_ft = float(kl_teacher_student(teacher(x)[0], m(x)[0]))
    assert kl_ft < 0.8 * kl_ptq  # a training outcome (measured ≈ 0.5×), not roundoff
    after = {n: mod for n, mod in m.named_modules() if isinstance(mod, TrellisLinear)}
    assert after.keys() == codes.keys() and all(torch.equal(after[n].packed, codes[n]) for n in codes)
    assert all(mod.s_in.dtype == torch.float16 for mod in after.values())
    assert all(p.requires_grad for p in m.parameters())


def test_embedding_training_and_the_cosine_schedule():
    assert lr_factor("constant", 7, 10) == 1.0
    # the same closed forms evaluated two ways in float64: a few ulps apart
    assert [lr_factor("cosine", s, 4) for s in range(5)] == pytest.approx([1, 0.5 + 0.5 ** 1.5, 0.5, 0.5 - 0.5 ** 1.5, 0],
                                                                        rel=8 * U64, abs=8 * U64)
    with pytest.raises(ConfigError, match="schedule"):
        FinetuneConfig(schedule="linear")
    with pytest.raises(ConfigError, match="embedding_lr"):
        FinetuneConfig(embedding_lr=-1.0)
    torch.manual_seed(4)
    m = build_model(preset("nano", vocab_size=48, max_seq_len=64))
    teacher = copy.deepcopy(m).eval()
    quantize_(m, REAL)
    (embed,) = embeddings(m)
    frozen, tuned = copy.deepcopy(m), copy.deepcopy(m)
    base = dict(steps=4, lr=1e-2, batch_size=4, seq_len=32, schedule="cosine")
    s_frozen = finetune_(frozen, teacher, FinetuneConfig(**base), stream(), progress=False)
    s_tuned = finetune_(tuned, teacher, FinetuneConfig(**base, embedding_lr=1e-2), stream(), progress=False)
    assert torch.equal(embeddings(frozen)[0], embed)
    assert not torch.equal(embeddings(tuned)[0], embed)
    assert s_tuned["parameters"] == s_frozen["parameters"] + embed.numel()
    assert all(torch.equal(a.packed, b.packed) for a, b in zip(
        (x for x in frozen.modules() if isinstance(x, TrellisLinear)),
        (x for x in tuned.modules() if isinstance(x, TrellisLinear))))
