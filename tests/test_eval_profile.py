"""The decode profile (mechlab.eval.profile.decode_profile): every component of a decode step accounted once, on
float and quantised models (tied tables coded too), and bad input refused."""

import pytest
import torch

from mechlab.eval.profile import COMPONENTS, decode_profile
from mechlab.models import build_model, preset
from mechlab.quant import TrellisConfig, quantize_

TINY = dict(vocab_size=100, d_model=48, n_heads=4, n_kv_heads=2, d_ff=96, max_seq_len=64)


def tiny(tied: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(preset("tiny", tie_embeddings=tied, **TINY)).eval()


def check(rows: list[dict]) -> dict[str, dict]:
    assert [r["component"] for r in rows] == list(COMPONENTS)
    assert all(r["ms/token"] >= 0 and 0 <= r["share"] <= 1 for r in rows)
    assert sum(r["share"] for r in rows) == pytest.approx(1.0, abs=1e-9)
    by = {r["component"]: r for r in rows}
    for c in ("Linear layers", "LM head", "attention", "norms"):  # every decode step runs each of them
        assert by[c]["ms/token"] > 0, c
    return by


@pytest.mark.parametrize("tied", [True, False])
def test_float_model_components(tied):
    model = tiny(tied)
    check(decode_profile(model, torch.tensor([[1, 2, 3, 4]]), new_tokens=4))
    assert not hasattr(model, "_forward_hooks") or not any(m._forward_hooks for m in model.modules())  # removed
    assert "head" not in vars(model)  # the method is the class's again


def test_quantised_tied_table_is_the_lm_head():
    model = tiny(True)
    x = torch.randint(0, TINY["vocab_size"], (2, 16), generator=torch.Generator().manual_seed(1))
    quantize_(model, TrellisConfig(L=8, k=2, code="1mad", embedding=True), calibration=[x])
    check(decode_profile(model.eval(), torch.tensor([[5, 6, 7]]), new_tokens=3))


def test_bad_input_is_refused():
    model = tiny(True).train()
    for prompt, new in ((torch.tensor([[1, 2]]), 1), (torch.tensor([[1, 2]]), 2.5)):
        with pytest.raises(ValueError, match="new_tokens"):
            decode_profile(model, prompt, new_tokens=new)
    for prompt in (torch.tensor([[1, 2], [3, 4]]), torch.tensor([1, 2]), torch.zeros(1, 0, dtype=torch.long),
                   torch.tensor([[1.0, 2.0]]), [[1, 2]]):
        with pytest.raises(ValueError, match=r"\(1, T\)"):
            decode_profile(model, prompt, new_tokens=4)
    for bad in (-1, TINY["vocab_size"]):
        with pytest.raises(ValueError, match="ids must lie"):
            decode_profile(model, torch.tensor([[1, bad]]), new_tokens=4)
    with pytest.raises(ValueError, match="repeats"):
        decode_profile(model, torch.tensor([[1, 2]]), new_tokens=4, repeats=0)
    decode_profile(model, torch.tensor([[1, 2]]), new_tokens=2, repeats=1)
    assert model.training  # the caller's mode comes back
