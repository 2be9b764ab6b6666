"""`mechlab export gguf`: a Llama-family checkpoint written back to GGUF. The import (read_gguf) is the inverse
and tested against transformers (test_gguf_import.py), so a float export must read back to the same weights,
config and tokenizer bit for bit; the block formats must round as llama.cpp does (the gguf package's reference
quantiser) and within the format's own error bound; what a Llama file cannot hold is refused by name. Where
llama.cpp's Python package is installed, the exported file is loaded by llama.cpp itself and its logits are held
to the float64 bound of test_model.float64_logits."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from gguf_files import tiny_model, write_gguf
from mechlab.errors import ConfigError
from mechlab.models import preset
from mechlab.pretrained import read_gguf, to_model
from mechlab.pretrained.export import QTYPES, export_gguf, permute_rope_rows
from mechlab.pretrained.gguf import unpermute_rope_rows
from test_model import float64_logits

SAMPLES = ["In 2024, 12345 foxes; isn't it ODD?  Twice  spaced\tand\r\nwindows", "émoji 🙂 and 中文", " leading"]


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "m.gguf"
    write_gguf(path)
    got = read_gguf(path)
    return got, to_model(got)


def logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids]))[0][0]


def test_rope_row_permutation_is_the_import_inverse():
    w = np.arange(12 * 5, dtype=np.float32).reshape(12, 5)
    assert np.array_equal(unpermute_rope_rows(permute_rope_rows(w, 3), 3), w)
    assert not np.array_equal(permute_rope_rows(w, 3), w)


def test_float_export_reads_back_bit_for_bit(imported, tmp_path):
    got, model = imported
    out = export_gguf(model, got.tokenizer, got.meta, tmp_path / "e.gguf")
    back = read_gguf(out)
    assert back.config == got.config
    assert set(back.state) == set(got.state)
    assert all(torch.equal(back.state[k], got.state[k]) for k in got.state)
    for text in SAMPLES:
        assert back.tokenizer.encode(text) == got.tokenizer.encode(text)
    ids = list(range(3, 40))
    assert torch.equal(logits(to_model(back), ids), logits(model, ids))
    assert back.meta["bos_token_id"] == got.meta["bos_token_id"]
    assert back.meta["end_of_generation_ids"] == got.meta["end_of_generation_ids"]


@pytest.mark.parametrize("qtype", ["f16", "q8_0", "q4_0", "q4_1"])
def test_block_formats_round_as_llama_cpp(imported, tmp_path, qtype):
    """Each matrix reads back as the gguf package's quantise-then-dequantise of the float weight (llama.cpp's
    reference rounding), within the format's bound per 32-weight block with step d: half a step of rounding plus
    |q|max·d·2^-11 from the fp16 rounding of d (Q8_0: d = max|w|/127, |q| ≤ 127; Q4_1: d = (max − min)/15, |q| ≤ 15,
    plus |min|·2^-11 for its fp16 minimum; Q4_0: d = max|w|/8 signed as the largest-magnitude weight, so a weight
    of the other sign near max|w| lands on q = +8, clamped to 7: a whole step, plus 8·d·2^-11). F16: fp16's
    relative rounding 2^-11. Norm vectors stay float32, exactly."""
    import gguf
    from gguf.quants import dequantize, quantize

    got, model = imported
    back = read_gguf(export_gguf(model, got.tokenizer, got.meta, tmp_path / f"{qtype}.gguf", qtype=qtype))
    kind = getattr(gguf.GGMLQuantizationType, qtype.upper())
    for name, w in got.state.items():
        w = w.numpy()
        b = back.state[name].numpy()
        if w.ndim == 1:
            assert np.array_equal(b, w)
            continue
        if qtype == "f16":
            assert np.all(np.abs(b - w) <= 2.0**-11 * np.abs(w) + 2.0**-24)
            continue
        if name.endswith(("attn.q.weight", "attn.k.weight")):  # compare in the file's row order
            heads = got.config.n_heads if name.endswith("q.weight") else got.config.n_kv_heads
            w, b = permute_rope_rows(w, heads), permute_rope_rows(b, heads)
        assert np.array_equal(b, dequantize(quantize(w, kind), kind))
        blocks = w.reshape(-1, 32)
        amax, lo = np.abs(blocks).max(1), blocks.min(1)
        bound = {"q8_0": amax / 127 * (0.5 + 127 * 2.0**-11),
                 "q4_0": amax / 8 * (1 + 8 * 2.0**-11),
                 "q4_1": (blocks.max(1) - lo) / 15 * (0.5 + 15 * 2.0**-11) + np.abs(lo) * 2.0**-11}[qtype]
        err = np.abs(b.reshape(-1, 32) - blocks).max(1)
        assert np.all(err <= bound * (1 + 2.0**-20))  # the bound itself computed in float32


def test_refusals(imported, tmp_path):
    got, model = imported
    with pytest.raises(ConfigError, match="tensor type"):
        export_gguf(model, got.tokenizer, got.meta, tmp_path / "x.gguf", qtype="q2_k")
    with pytest.raises(ConfigError, match="is a folder"):
        export_gguf(model, got.tokenizer, got.meta, tmp_path)
    looped = tiny_model(preset("looped-tiny", vocab_size=model.config.vocab_size))
    with pytest.raises(ConfigError, match="arch = 'looped'|n_loops"):
        export_gguf(looped, got.tokenizer, got.meta, tmp_path / "l.gguf")
    windowed = tiny_model(model.config.replace(window=8))
    with pytest.raises(ConfigError, match="window"):
        export_gguf(windowed, got.tokenizer, got.meta, tmp_path / "w.gguf")
    from mechlab.data.tokenizers import ByteTokenizer

    with pytest.raises(ConfigError, match="byte tokenizer"):
        export_gguf(model, ByteTokenizer(), {}, tmp_path / "b.gguf")
    with pytest.raises(ConfigError, match="pre-tokenizer"):
        export_gguf(model, got.tokenizer, {}, tmp_path / "p.gguf", pre="no-such-split")
    assert not any(p.suffix == ".gguf" for p in tmp_path.iterdir())  # nothing half-written


def test_pre_tokenizer_read_off_the_tokenizer(imported, tmp_path):
    """Without the recorded name, the pre-tokenizer's own expressions give it (here GPT-2's)."""
    got, model = imported
    back = read_gguf(export_gguf(model, got.tokenizer, {}, tmp_path / "n.gguf"))
    assert back.meta["tokenizer_pre"] in ("gpt2", "gpt-2")
    for text in SAMPLES:
        assert back.tokenizer.encode(text) == got.tokenizer.encode(text)


def test_cli_export(imported, tmp_path):
    from typer.testing import CliRunner

    from mechlab.checkpoint import save_checkpoint
    from mechlab.cli import app

    got, model = imported
    save_checkpoint(tmp_path / "ck", model, got.tokenizer, meta=got.meta)
    r = CliRunner().invoke(app, ["export", "gguf", str(tmp_path / "ck"), "-o", str(tmp_path / "c.gguf"), "--type", "Q8_0"])
    assert r.exit_code == 0, r.output
    assert read_gguf(tmp_path / "c.gguf").meta["imported_from"]["file_type"] == 7
    again = ["export", "gguf", str(tmp_path / "ck"), "-o", str(tmp_path / "c.gguf")]
    r = subprocess.run([sys.executable, "-m", "mechlab", *again], capture_output=True, text=True)
    assert r.returncode == 2 and "--overwrite" in r.stderr  # an existing file is kept unless asked
    assert CliRunner().invoke(app, [*again, "--overwrite"]).exit_code == 0
    assert read_gguf(tmp_path / "c.gguf").meta["imported_from"]["file_type"] == 0
    r = subprocess.run([sys.executable, "-m", "mechlab", "export", "gguf", str(tmp_path / "ck"), "-o",
                        str(tmp_path / "d.gguf"), "--type", "q3"], capture_output=True, text=True)
    assert r.returncode == 2 and "tensor type" in r.stderr and "Traceback" not in r.stderr


def test_llama_cpp_loads_the_export(imported, tmp_path):
    """llama.cpp's own forward pass on the exported float file agrees with mechlab's float64 logits within the
    bound any float32 evaluation of the network keeps (test_model.float64_logits), with a float32 KV cache."""
    llama_cpp = pytest.importorskip("llama_cpp")
    got, model = imported
    path = export_gguf(model, got.tokenizer, got.meta, tmp_path / "f32.gguf")
    ids = list(range(3, 35))
    # the KV cache in float32 (GGML_TYPE_F32 = 0): llama.cpp's default fp16 cache rounds K and V to 11 bits, an
    # error of its own far above float32's (0.015 on logits of 7 here)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, logits_all=True, verbose=False, n_threads=1, type_k=0,
                          type_v=0)
    llm.eval(ids)
    ours = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
    ref, bound = float64_logits(model, torch.tensor([ids]))
    assert np.all(np.abs(ours - ref[0].numpy()) <= bound[0].numpy())


def test_every_qtype_is_documented():
    from mechlab.pretrained import export

    assert all(q in export.__doc__.lower() for q in QTYPES)
