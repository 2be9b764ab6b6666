"""The quantisation method registry: a toy method defined and registered in this file alone is quantised, saved,
loaded and made from CLI options through the same entry points as the built-in methods."""

import dataclasses
import json
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn

from mechlab.errors import ConfigError
from mechlab.models import build_model, preset
from mechlab.quant import GPTQConfig, QuantizedLinear, RTNConfig, TrellisConfig, quantize_
from mechlab.quant.finetune import FinetuneConfig
from mechlab.quant.linear import IntLinear, TrellisLinear, quantized_linear
from mechlab.quant.qat import QATConfig
from mechlab.quant.registry import (
    QuantMethod,
    cli_names,
    config_from_dict,
    config_to_dict,
    method_for,
    method_named,
    register,
    unregister,
)
from mechlab.quant.run import make_config

U32 = 2.0**-24  # float32 unit roundoff
U16 = 2.0**-11  # float16 unit roundoff


# --- the toy method: everything a new method module holds -------------------------------------------------------


@dataclass(frozen=True)
class SignConfig:
    """Sign quantisation: w ≈ s_i · sign(w_ij), one fp16 scale per output row (the mean |w| of the row)."""

    min_features: int = 1  # narrower layers stay in float
    method = "sign"
    needs_hessian = False


class SignLinear(QuantizedLinear):
    """Packed sign bits (1 bit per weight) and one fp16 scale per row."""

    def __init__(self, in_features: int, out_features: int, bias: bool, config: SignConfig):
        super().__init__(in_features, out_features, bias)
        self.config = config
        self.register_buffer("bits", torch.zeros(out_features, -(-in_features // 8), dtype=torch.uint8))
        self.register_buffer("scale", torch.zeros(out_features, dtype=torch.float16))

    def weight(self) -> torch.Tensor:
        shifts = torch.arange(7, -1, -1, dtype=torch.uint8)
        signs = ((self.bits.unsqueeze(-1) >> shifts) & 1).flatten(1)[:, : self.in_features].float() * 2 - 1
        return signs * self.scale.float().unsqueeze(1)


def sign_transform(layer: SignLinear, w, h, config: SignConfig, index: int) -> torch.Tensor:
    bits = (w >= 0).to(torch.uint8)
    pad = (-w.shape[1]) % 8
    bits = torch.cat([bits, bits.new_zeros(w.shape[0], pad)], 1).view(w.shape[0], -1, 8)
    layer.bits.copy_((bits << torch.arange(7, -1, -1, dtype=torch.uint8)).sum(-1).to(torch.uint8))
    layer.scale.copy_(w.abs().mean(1).half())
    return layer.weight()


def sign_unsupported(linear, config: SignConfig):
    return f"{linear.in_features} inputs < {config.min_features}" if linear.in_features < config.min_features else None


def sign_options(name, bits, options, train):
    if train:
        raise ConfigError("sign takes no training settings")
    if bits != 1:
        raise ConfigError(f"sign codes 1 bit per weight (got {bits})")
    return SignConfig()


@pytest.fixture
def sign_method():
    """The toy method registered for one test (and taken out after it)."""
    method = register(QuantMethod(config=SignConfig, cli_names=("sign",), layer=SignLinear, transform=sign_transform,
                                  unsupported=sign_unsupported, from_options=sign_options))
    yield method
    unregister(SignConfig)


# --- the toy method through every entry point --------------------------------------------------------------------


def test_a_method_registered_in_one_place_quantizes_saves_and_loads(sign_method, tmp_path):
    from mechlab.data.tokenizers import ByteTokenizer
    from mechlab.train.checkpoint import load_checkpoint, save_checkpoint

    assert method_for(SignConfig()) is sign_method and method_named("sign") is sign_method and "sign" in cli_names()
    assert make_config("sign", 1) == SignConfig()  # the CLI's factory
    torch.manual_seed(0)
    m = build_model(preset("hyperloop-tiny", vocab_size=259, max_seq_len=32))
    floats = {n: mod.weight.detach().clone() for n, mod in m.named_modules() if isinstance(mod, nn.Linear)}
    cfg = SignConfig(min_features=floats["blocks.0.mlp.down"].shape[1])  # narrower layers: the unsupported reason
    report = quantize_(m, cfg)
    assert report.layers and all(r.method == "sign" for r in report.layers)
    assert report.skipped and all("inputs <" in why for why in report.skipped.values())
    for r in report.layers:
        q, w = m.get_submodule(r.name), floats[r.name]
        assert isinstance(q, SignLinear)
        # sign(w)·fp16(mean|w|): each entry exact up to the fp16 rounding of the scale (u16 relative) and the
        # float32 mean (row length·u32 relative)
        s = w.double().abs().mean(1, keepdim=True)
        bound = s * (U16 + w.shape[1] * U32) * (1 + U16)
        assert ((q.weight().double() - torch.where(w >= 0, s, -s)).abs() <= bound).all()
    for name in report.skipped:
        assert type(m.get_submodule(name)) is nn.Linear
    m.eval()
    x = torch.randint(0, 259, (2, 16))
    ref, _ = m(x)
    path = save_checkpoint(tmp_path / "q", m, ByteTokenizer())
    spec = json.loads((path / "quantization.json").read_text())
    assert {d["method"] for d in spec["layers"].values()} == {"sign"}  # the checkpoint-format name
    ck = load_checkpoint(path)  # config_from_dict and quantized_linear through the registry
    assert all(isinstance(ck.model.get_submodule(r.name), SignLinear) for r in report.layers)
    assert torch.equal(ck.model(x)[0], ref)  # the same stored values, the same operations


def test_registration_is_checked(sign_method):
    with pytest.raises(ConfigError, match="already registered"):
        register(dataclasses.replace(sign_method, cli_names=("sign2",)))  # the same config class
    @dataclass(frozen=True)
    class Other:
        method = "sign"

    dup = Other
    with pytest.raises(ConfigError, match="already registered"):
        register(QuantMethod(config=dup, cli_names=("sign",), layer=SignLinear, transform=sign_transform,
                             from_options=sign_options))
    with pytest.raises(ConfigError, match="together"):
        QuantMethod(config=dup, cli_names=("x",), layer=SignLinear, from_options=sign_options)
    with pytest.raises(ConfigError, match="dataclass"):
        QuantMethod(config=int, cli_names=("x",), layer=SignLinear, transform=sign_transform, from_options=sign_options)


def test_unregistered_configs_and_names_are_one_named_error():
    @dataclass(frozen=True)
    class Unknown:
        method = "unknown"

    with pytest.raises(ConfigError, match="not a registered quantisation config"):
        quantize_(nn.Sequential(nn.Linear(4, 4)), Unknown(), skip=())
    with pytest.raises(ConfigError, match="unknown method 'nope'; choose rtn"):
        make_config("nope", 2)
    with pytest.raises(ConfigError, match="unknown quantisation method"):
        config_from_dict({"method": "nope"})
    with pytest.raises(ConfigError, match="unknown setting"):
        config_from_dict({"method": "rtn", "bits": 4, "colour": "red"})
    with pytest.raises(ConfigError, match="trains after PTQ"):
        quantize_(nn.Sequential(nn.Linear(16, 16)), make_config("bcjr-qat", 2), skip=())


# --- the built-in methods through the registry --------------------------------------------------------------------


def test_builtin_methods_are_registered_with_their_layers_and_names():
    assert cli_names()[:3] == ["rtn", "gptq", "trellis"]
    assert set(cli_names(trains=True)) == {"bcjr-qat", "ste-qat", "trellis-ft"}
    lin = nn.Linear(32, 16)
    assert type(quantized_linear(lin, RTNConfig())) is IntLinear
    assert type(quantized_linear(lin, GPTQConfig())) is IntLinear
    assert type(quantized_linear(lin, TrellisConfig())) is TrellisLinear
    assert method_for(TrellisConfig()).why_not(nn.Linear(24, 16), TrellisConfig()) is not None
    assert method_for(RTNConfig()).why_not(nn.Linear(24, 16), RTNConfig()) is None


@pytest.mark.parametrize("name", ["rtn", "gptq", "trellis", "bcjr-qat", "ste-qat", "trellis-ft"])
def test_every_cli_method_round_trips_through_the_checkpoint_format(name):
    cfg = make_config(name, 3, L=12, group_size=64)
    assert config_from_dict(json.loads(json.dumps(config_to_dict(cfg)))) == cfg
    assert config_to_dict(cfg)["method"] == name


def test_the_cli_factory_keeps_each_methods_settings():
    assert make_config("rtn", 3, group_size=64, symmetric=True) == RTNConfig(bits=3, group_size=64, symmetric=True)
    assert make_config("gptq", 4, act_order=True) == GPTQConfig(bits=4, act_order=True)
    assert make_config("trellis", 2, L=12, ldlq=False) == TrellisConfig(L=12, k=2, ldlq=False)
    qat = make_config("ste-qat", 2, L=10, steps=3)
    assert isinstance(qat, QATConfig) and qat.estimator == "ste" and qat.steps == 3 and qat.trellis.L == 10
    ft = make_config("trellis-ft", 2, steps=5)
    assert isinstance(ft, FinetuneConfig) and ft.trellis.real_signs and ft.steps == 5
    with pytest.raises(ConfigError, match="only apply to --method"):
        make_config("trellis", 2, steps=3)
    with pytest.raises(ConfigError, match="takes no QAT setting"):
        make_config("trellis-ft", 2, t_start=0.2)
    with pytest.raises(ConfigError, match="takes no fine-tuning setting"):
        make_config("bcjr-qat", 2, embedding_lr=1e-4)
