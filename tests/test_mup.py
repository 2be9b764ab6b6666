"""μP: the coordinate check (update size of the logits against width) and the SP anchor at the base width."""

import pytest
import torch

from mechlab.errors import ConfigError
from mechlab.models import build_model, preset
from mechlab.train.trainer import TrainConfig, make_optimizer


def model(param: str, width: int):
    torch.manual_seed(0)
    return build_model(preset("nano", vocab_size=64, d_model=width, n_heads=4, n_kv_heads=4, d_ff=3 * width,
                              tie_embeddings=False, parametrization=param, mup_base_width=64))


def logit_change(param: str, width: int, lr: float = 1e-2, steps: int = 3) -> float:
    """RMS change of the logits on a fixed batch after a few Adam steps at the same lr."""
    m = model(param, width)
    opt = make_optimizer(m, TrainConfig(lr=lr, weight_decay=0.0))
    for g in opt.param_groups:
        g["lr"] = lr * g["lr_mult"]
    x = torch.randint(0, 64, (4, 32), generator=torch.Generator().manual_seed(1))
    y = torch.roll(x, -1, 1)
    with torch.no_grad():
        before = m(x)[0]
    for _ in range(steps):
        m(x, y)[1].backward()
        opt.step()
        opt.zero_grad()
    with torch.no_grad():
        return float((m(x)[0] - before).pow(2).mean().sqrt())


def test_coordinate_check_updates_stay_width_independent_under_mup_only():
    sp = [logit_change("sp", w) for w in (64, 256)]
    mup = [logit_change("mup", w) for w in (64, 256)]
    # identical at the base width: every multiplier is exactly 1 and √(base head size)/head size = 1/√16 = 0.25
    # exactly, so the two runs make the same float operations
    assert sp[0] == mup[0]
    # not roundoff but the theory's scaling: SP's logit update grows ∝ width (4× from 64 to 256; measured ≈ 4),
    # μP's stays put (1×, measured ≈ 0.9; ±40% for finite-width effects at 3 steps)
    assert sp[1] / sp[0] > 3
    assert 0.6 < mup[1] / mup[0] < 1.4


def test_mup_groups_and_limits():
    m = model("mup", 256)
    mults = m.lr_multipliers()
    assert mults["blocks.0.attn.q.weight"] == 0.25 and mults["embed.weight"] == 1.0 and mults["lm_head.weight"] == 1.0
    assert mults["blocks.0.attn_norm.weight"] == 1.0
    with pytest.raises(ConfigError, match="untied"):
        build_model(preset("nano", vocab_size=64, parametrization="mup"))  # nano ties its embeddings
    with pytest.raises(ConfigError, match="parametrization"):
        build_model(preset("nano", vocab_size=64, parametrization="ntk"))
