"""`mechlab export hf`: a Llama-family checkpoint written as a Hugging Face transformers folder. transformers loads
it with AutoModelForCausalLM / AutoTokenizer and computes the same logits (within test_model.float64_logits' float32
bound) and token ids; read_hf, the import, is its inverse bit for bit; what a Llama config cannot hold is refused by
name, and no folder that is not an earlier export is ever replaced."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch

from gguf_files import imported_tiny, tiny_model
from mechlab.errors import ConfigError
from mechlab.models import preset
from mechlab.pretrained import read_hf, to_model
from mechlab.pretrained.export import export_hf, export_hf_checkpoint
from test_model import float64_logits

SAMPLES = ["In 2024, 12345 foxes; isn't it ODD?  Twice  spaced\tand\r\nwindows", "émoji 🙂 and 中文", " leading",
           "<|im_end|> a special token"]


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    return imported_tiny(tmp_path_factory.mktemp("src"))


def _untied(got):
    """A random untied variant of the imported model (its own LM head), same tokenizer."""
    return tiny_model(got.config.replace(tie_embeddings=False), seed=3)


@pytest.mark.parametrize("tied", [True, False])
def test_transformers_loads_the_export(imported, tmp_path, tied):
    """AutoModelForCausalLM.from_pretrained(folder) computes mechlab's logits within the float32 bound of the float64
    reference; AutoTokenizer gives our ids (with and without BOS); read_hf reads back the same tensors, config and
    tokenizer bit for bit."""
    transformers = pytest.importorskip("transformers")
    got, model = imported
    model = model if tied else _untied(got)
    out = export_hf(model, got.tokenizer, got.meta, tmp_path / "hf")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["model_type"] == "llama"
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    ids = torch.tensor([list(range(3, 40))])
    with torch.no_grad():
        theirs = hf(ids).logits.double()
    ref, bound = float64_logits(model, ids)
    assert torch.all((theirs - ref).abs() <= bound)
    tok = transformers.AutoTokenizer.from_pretrained(str(out))
    for text in SAMPLES:
        assert tok(text, add_special_tokens=False)["input_ids"] == got.tokenizer.encode(text)
        assert tok(text)["input_ids"] == got.tokenizer.encode(text, add_bos=True)
        assert tok.decode(got.tokenizer.encode(text), skip_special_tokens=True) == got.tokenizer.decode(
            got.tokenizer.encode(text))
    back = read_hf(out)
    assert back.config == model.config
    state = model.state_dict()
    assert set(back.state) == set(state) and all(torch.equal(back.state[k], state[k]) for k in state)
    for text in SAMPLES:
        assert back.tokenizer.encode(text) == got.tokenizer.encode(text)
    assert back.meta["bos_token_id"] == got.meta["bos_token_id"]
    assert back.meta["eos_token_id"] == got.meta["eos_token_id"]


def test_chat_template_and_special_tokens(imported, tmp_path):
    """tokenizer_config.json carries the chat template and the BOS / EOS tokens; generation_config.json the ids."""
    got, model = imported
    meta = {**got.meta, "chat_template": "{% for m in messages %}{{ m['content'] }}<|im_end|>{% endfor %}"}
    out = export_hf(model, got.tokenizer, meta, tmp_path / "hf")
    tc = json.loads((out / "tokenizer_config.json").read_text())
    gen = json.loads((out / "generation_config.json").read_text())
    assert tc["chat_template"] == meta["chat_template"]
    assert tc["bos_token"] == got.tokenizer.tok.id_to_token(got.meta["bos_token_id"])
    assert tc["eos_token"] == got.tokenizer.tok.id_to_token(got.meta["eos_token_id"])
    assert gen["bos_token_id"] == got.meta["bos_token_id"]
    assert read_hf(out).meta["chat_template"] == meta["chat_template"]
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(str(out))
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert text == "hi<|im_end|>"


def test_quantised_model_exports_its_dequantised_weights(imported, tmp_path, caplog):
    """A quantised model is written as the float32 weights it decodes to (logged); read_hf reads them back exactly."""
    import copy

    from mechlab.quant import RTNConfig, quantize_

    got, model = imported
    q = copy.deepcopy(model)
    quantize_(q, RTNConfig(bits=4, group_size=32))
    with caplog.at_level(logging.INFO, logger="mechlab.pretrained.export"):
        out = export_hf(q, got.tokenizer, got.meta, tmp_path / "hf")
    assert "dequantised" in caplog.text
    back = read_hf(out)
    layer = q.blocks[1].mlp.down
    assert torch.equal(back.state["blocks.1.mlp.down.weight"], layer.weight())
    ids = torch.tensor([list(range(3, 30))])
    with torch.no_grad():
        assert torch.equal(to_model(back)(ids)[0], q(ids)[0])


def test_refusals_and_overwrite(imported, tmp_path):
    """Non-Llama switches are refused by name, as are RoPE frequency factors and the byte tokenizer; an existing
    export is replaced only with overwrite; a folder with other files is never replaced, nor a file."""
    from mechlab.checkpoint import save_checkpoint
    from mechlab.data.tokenizers import ByteTokenizer

    got, model = imported
    with pytest.raises(ConfigError, match="Hugging Face export: window"):
        export_hf(tiny_model(model.config.replace(window=8)), got.tokenizer, got.meta, tmp_path / "w")
    looped = tiny_model(preset("looped-tiny", vocab_size=model.config.vocab_size))
    with pytest.raises(ConfigError, match="arch = 'looped'|n_loops"):
        export_hf(looped, got.tokenizer, got.meta, tmp_path / "l")
    factors = tuple([1.0] * (model.config.head_dim // 2))
    with pytest.raises(ConfigError, match="RoPE frequency factors"):
        export_hf(tiny_model(model.config.replace(rope_freq_factors=factors)), got.tokenizer, got.meta, tmp_path / "r")
    with pytest.raises(ConfigError, match="byte tokenizer"):
        export_hf(model, ByteTokenizer(), {}, tmp_path / "b")
    assert not any(tmp_path.iterdir())  # nothing half-written

    save_checkpoint(tmp_path / "ck", model, got.tokenizer, meta=got.meta)
    out = tmp_path / "hf"
    export_hf_checkpoint(tmp_path / "ck", out)
    with pytest.raises(ConfigError, match="--overwrite"):
        export_hf_checkpoint(tmp_path / "ck", out)
    export_hf_checkpoint(tmp_path / "ck", out, overwrite=True)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="other files"):
        export_hf_checkpoint(tmp_path / "ck", foreign, overwrite=True)
    with pytest.raises(ConfigError, match="other files"):  # a mechlab checkpoint is not an export either
        export_hf_checkpoint(tmp_path / "ck", tmp_path / "ck", overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(ConfigError, match="is a file"):
        export_hf_checkpoint(tmp_path / "ck", foreign / "notes.txt", overwrite=True)


def test_cli_export_hf(imported, tmp_path):
    from typer.testing import CliRunner

    from mechlab.checkpoint import save_checkpoint
    from mechlab.cli import app

    got, model = imported
    save_checkpoint(tmp_path / "ck", model, got.tokenizer, meta=got.meta)
    cmd = ["export", "hf", str(tmp_path / "ck"), "-o", str(tmp_path / "hf")]
    r = CliRunner().invoke(app, cmd)
    assert r.exit_code == 0, r.output
    assert np.array_equal(read_hf(tmp_path / "hf").state["embed.weight"].numpy(), model.embed.weight.detach().numpy())
    r = subprocess.run([sys.executable, "-m", "mechlab", *cmd], capture_output=True, text=True)
    assert r.returncode == 2 and "--overwrite" in r.stderr and "Traceback" not in r.stderr
    assert CliRunner().invoke(app, [*cmd, "--overwrite"]).exit_code == 0
