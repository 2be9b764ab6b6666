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

from gguf_files import imported_tiny, tiny_model
from mechlab.errors import ConfigError
from mechlab.models import preset
from mechlab.pretrained import read_gguf, to_model
from mechlab.pretrained.export import QTYPES, export_gguf, permute_rope_rows
from mechlab.pretrained.gguf import unpermute_rope_rows
from test_model import float64_logits

SAMPLES = ["In 2024, 12345 foxes; isn't it ODD?  Twice  spaced\tand\r\nwindows", "émoji 🙂 and 中文", " leading"]


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    return imported_tiny(tmp_path_factory.mktemp("src"))


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
    with pytest.raises(ConfigError, match="splits text differently"):  # llama.cpp would tokenise "\n\n" otherwise
        export_gguf(model, got.tokenizer, {}, tmp_path / "l3.gguf", pre="llama3")


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


def _llama_cpp_logits(path, ids: list[int]) -> np.ndarray:
    """llama.cpp's logits (len(ids), vocab) of the GGUF at ``path`` for one sequence, in float64: one thread, a float32
    KV cache (GGML_TYPE_F32 = 0: llama.cpp's default fp16 cache rounds K and V to 11 bits, an error of its own far
    above float32's, 0.015 on logits of 7 here) and no runtime weight repacking (``use_extra_bufts`` off). ggml-cpu's
    repacked Q4_0 kernel for AVX2 builds (gemv_q4_0_8x8_q8_0) crashes on some CPUs (ggml-org/llama.cpp#16479; it
    killed this suite on one CI machine); repacking reorders the blocks, not the arithmetic these tests check (Q8_0
    activation blocks times the stored codes), so the plain block kernels stand for it."""
    import llama_cpp
    from llama_cpp import llama_cpp as capi

    defaults = capi.llama_model_default_params

    def no_repack():
        params = defaults()
        params.use_extra_bufts = False
        return params

    capi.llama_model_default_params = no_repack  # read once, by Llama.__init__
    try:
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, logits_all=True, verbose=False, n_threads=1,
                              type_k=0, type_v=0)
    finally:
        capi.llama_model_default_params = defaults
    assert not llm.model_params.use_extra_bufts
    llm.eval(ids)
    out = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
    llm.close()
    return out


def test_llama_cpp_loads_the_export(imported, tmp_path):
    """llama.cpp's own forward pass on the exported float file agrees with mechlab's float64 logits within the
    bound any float32 evaluation of the network keeps (test_model.float64_logits), with a float32 KV cache."""
    pytest.importorskip("llama_cpp")
    got, model = imported
    path = export_gguf(model, got.tokenizer, got.meta, tmp_path / "f32.gguf")
    ids = list(range(3, 35))
    ours = _llama_cpp_logits(path, ids)
    ref, bound = float64_logits(model, torch.tensor([ids]))
    assert np.all(np.abs(ours - ref[0].numpy()) <= bound[0].numpy())


def test_every_qtype_is_documented():
    from mechlab.pretrained import export

    assert all(q in export.__doc__.lower() for q in QTYPES)


# --- GPTQ / RTN on llama.cpp's own block grids (format=q4_0|q4_1|q8_0), exported code for code -----------------------

FORMATS = ("q4_0", "q4_1", "q8_0")


def _kind(fmt: str):
    import gguf

    return getattr(gguf.GGMLQuantizationType, fmt.upper())


def _awkward_weights(rows: int = 6, cols: int = 96, seed: int = 0) -> torch.Tensor:
    """Random weights with the blocks llama.cpp treats specially: all zero, constant, one lone value, the largest
    magnitude negative and positive, and values so small that d underflows into fp16's subnormals."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g)
    w[0, :32] = 0
    w[1, 32:64] = 0.375
    w[2, :32] = 0
    w[2, 5] = -1.5
    w[3, 64:] = torch.randn(32, generator=g) * 1e-6
    w[4, 0], w[4, 1] = 4.0, -4.0  # a tie of magnitudes: the first one sets Q4_0's sign
    return w


@pytest.mark.parametrize("fmt", FORMATS)
def test_rtn_format_is_llama_cpp_rounding(fmt):
    """RTN with a format stores exactly llama.cpp's reference quantisation: the block bytes it would write equal the
    gguf package's (ggml's quantize_row_*_ref) and the layer decodes to the gguf package's dequantisation, bit for
    bit, including all-zero, constant and subnormal blocks."""
    import gguf.quants as gq

    from mechlab.quant import RTNConfig
    from mechlab.quant.linear import IntLinear
    from mechlab.quant.scalar import block_bytes, block_format, rtn_quantize

    w = _awkward_weights()
    cfg = RTNConfig(format=fmt)
    assert (cfg.bits, cfg.group_size) == (block_format(fmt).bits, 32)
    q, d, m = rtn_quantize(w, cfg)
    ref = gq.quantize(w.numpy(), _kind(fmt))
    assert np.array_equal(block_bytes(q, d, m, block_format(fmt)), ref)
    layer = IntLinear(96, 6, False, cfg).set(q, d, m)
    assert np.array_equal(layer.weight().numpy(), gq.dequantize(ref, _kind(fmt)))
    assert np.array_equal(layer.rows(torch.tensor([4, 0])).numpy(), layer.weight().numpy()[[4, 0]])
    assert not any(n == "zeros" for n, _ in layer.named_buffers())  # no per-group zero point is stored
    assert ("mins" in dict(layer.named_buffers())) == (fmt == "q4_1")
    assert torch.all(layer.weight()[0, :32] == 0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_gptq_format_keeps_llama_cpp_grids_and_picks_codes(fmt):
    """GPTQ with a format: d (and m) are llama.cpp's from the original weights, as stored in fp16; with a diagonal
    Hessian (no error feedback between columns) each code is the nearest point of that stored grid, found by brute
    force over every code in float64; with a correlated Hessian its proxy loss tr(ΔW H ΔWᵀ) is below llama.cpp's
    rounding of the same blocks (GPTQ's purpose)."""
    from mechlab.quant import GPTQConfig, RTNConfig
    from mechlab.quant.scalar import block_format, gptq_quantize, rtn_quantize

    f = block_format(fmt)
    w = _awkward_weights()
    _, d_ref, m_ref = rtn_quantize(w, RTNConfig(format=fmt))
    q, d, m = gptq_quantize(w, torch.diag(torch.rand(96, generator=torch.Generator().manual_seed(1)).double() + 0.5),
                            GPTQConfig(format=fmt))
    assert torch.equal(d, d_ref) and (m is None) == (m_ref is None) and (m is None or torch.equal(m, m_ref))
    codes = torch.arange(f.qmin, f.qmax + 1, dtype=torch.float64)
    cols = torch.arange(96) // 32
    d64 = d.double()[:, cols].unsqueeze(-1)
    grid = (codes - f.zero) * d64 if f.zero is not None else codes * d64 + m.double()[:, cols].unsqueeze(-1)
    dist = (grid - w.double().unsqueeze(-1)).abs()
    best = dist.min(-1).values
    chosen = dist.gather(-1, (q.long() - f.qmin).unsqueeze(-1)).squeeze(-1)
    assert torch.equal(chosen, best)  # a code at the least distance (ties may take either neighbour)

    g = torch.Generator().manual_seed(2)
    x = torch.randn(512, 96, generator=g, dtype=torch.float64) @ torch.randn(96, 96, generator=g, dtype=torch.float64)
    h = x.T @ x / 512
    from mechlab.quant.scalar import block_dequantize

    def proxy(codes_d_m):
        dw = block_dequantize(*codes_d_m, f).double() - w.double()
        return float(torch.trace(dw @ h @ dw.T))

    assert proxy(gptq_quantize(w, h, GPTQConfig(format=fmt))) < proxy(rtn_quantize(w, RTNConfig(format=fmt)))
    assert proxy(gptq_quantize(w, h, GPTQConfig(format=fmt, act_order=True))) < proxy(rtn_quantize(w, RTNConfig(format=fmt)))


def test_format_settings_are_checked():
    """A format fixes bits and group size; other values, an unknown type, a symmetric grid and embedding=True are
    refused in one line; layers whose rows are not whole blocks stay float and are reported."""
    from mechlab.quant import GPTQConfig, RTNConfig, quantize_
    from mechlab.quant.registry import config_from_dict, config_to_dict

    assert GPTQConfig(format="Q8_0").bits == 8 and GPTQConfig(format="q8_0").format == "q8_0"
    for bad, match in ((dict(format="q4_0", bits=3), "fixes bits"), (dict(format="q4_0", group_size=64), "fixes"),
                       (dict(format="q5_k"), "block types"), (dict(format="q4_1", embedding=True), "embedding"),
                       (dict(format="q4_0", embedding_bits=4), "embedding_bits off")):
        with pytest.raises(ConfigError, match=match):
            GPTQConfig(**bad)
    with pytest.raises(ConfigError, match="symmetric"):
        RTNConfig(format="q4_0", symmetric=True)
    cfg = GPTQConfig(format="q4_1", act_order=True)
    assert config_from_dict(config_to_dict(cfg)) == cfg
    model = torch.nn.Sequential(torch.nn.Linear(48, 8), torch.nn.Linear(8, 64))
    report = quantize_(model, RTNConfig(format="q4_0"))
    assert "0" in report.skipped and "blocks of 32" in report.skipped["0"] and "1" in report.skipped


def _gptq_model(imported, fmt: str):
    """The imported tiny model with its block Linear layers coded by GPTQ in ``fmt`` (random calibration tokens)."""
    import copy

    from mechlab.quant import GPTQConfig, quantize_

    got, model = imported
    q = copy.deepcopy(model)
    batches = [torch.randint(0, got.config.vocab_size, (4, 64), generator=torch.Generator().manual_seed(0))]
    report = quantize_(q, GPTQConfig(format=fmt), calibration=batches)
    assert not report.skipped and len(report.layers) == 7 * got.config.n_layers
    return q


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_writes_the_stored_codes(imported, tmp_path, fmt, caplog):
    """`export gguf --type` of a model coded in the same format writes each layer's codes, d and m as they are
    stored (q and k rows in llama.cpp's RoPE order): the file's blocks are the stored blocks byte for byte, and they
    decode to the layer's weight bit for bit; through a save / load of the checkpoint too. Another type
    requantises the dequantised weights, and says so."""
    import logging

    import gguf
    import gguf.quants as gq

    from mechlab.checkpoint import load_checkpoint, save_checkpoint
    from mechlab.quant.linear import IntLinear
    from mechlab.quant.scalar import block_bytes

    got, _ = imported
    q = _gptq_model(imported, fmt)
    save_checkpoint(tmp_path / "ck", q, got.tokenizer, meta=got.meta)
    loaded = load_checkpoint(tmp_path / "ck").model
    with caplog.at_level(logging.INFO, logger="mechlab.pretrained.export"):
        path = export_gguf(loaded, got.tokenizer, got.meta, tmp_path / "q.gguf", qtype=fmt)
    assert "code for code" in caplog.text and "requantised" not in caplog.text
    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    heads = {"attn.q": got.config.n_heads, "attn.k": got.config.n_kv_heads}
    from mechlab.pretrained.gguf import LLAMA_BLOCK_TENSORS

    for i in range(got.config.n_layers):
        for dst, src in LLAMA_BLOCK_TENSORS.items():
            layer = loaded.get_submodule(f"blocks.{i}.{src}")
            if not isinstance(layer, IntLinear):
                continue
            n_heads = heads.get(src)
            perm = (lambda a, h=n_heads: permute_rope_rows(a, h)) if n_heads else (lambda a: a)
            t = tensors[f"blk.{i}.{dst}.weight"]
            assert t.tensor_type == _kind(fmt)
            mins = None if layer.format.zero is not None else torch.from_numpy(perm(layer.mins.float().numpy()))
            mine = block_bytes(torch.from_numpy(perm(layer.codes().numpy())),
                               torch.from_numpy(perm(layer.scales.float().numpy())), mins, layer.format)
            assert np.array_equal(np.asarray(t.data).reshape(mine.shape), mine)
            back = gq.dequantize(np.asarray(t.data), _kind(fmt)).reshape(layer.out_features, -1)
            assert np.array_equal(back, perm(layer.weight().numpy()))
    other = {"q4_0": "q4_1", "q4_1": "q8_0", "q8_0": "q4_0"}[fmt]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mechlab.pretrained.export"):
        export_gguf(loaded, got.tokenizer, got.meta, tmp_path / "o.gguf", qtype=other)
    assert f"requantised to {other}" in caplog.text and "code for code" not in caplog.text


def _act_quantised(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """llama.cpp's 8-bit activation blocks of x (..., n) (ggml-cpu's quantize_row_q8_0 / q8_1 on x86: per 32 values
    d = amax/127, codes round(x·127/amax) to nearest-even, d stored fp16; Q8_1 also stores s = fp16(d·Σcodes)):
    (x̂ = codes·fp16(d), s) in float64."""
    blocks = x.double().reshape(*x.shape[:-1], -1, 32)
    amax = blocks.abs().amax(-1, keepdim=True)
    d = (amax.float() / 127).double()
    codes = torch.round(torch.where(amax == 0, 0.0, blocks * (127 / amax)))
    s = (d.squeeze(-1) * codes.sum(-1)).half().double()
    return (codes * d.half().double()).reshape(x.shape), s


def _llama_cpp_matmul(x: torch.Tensor, q: torch.Tensor, d: torch.Tensor, m: torch.Tensor | None, fmt) -> torch.Tensor:
    """y = x Wᵀ as ggml-cpu computes it for a block-format W (codes q (out, in), d, m): activations in 8-bit blocks,
    per block d_w·d_x·Σ(q_w − zero)·q_x, plus m_w·s_x for Q4_1 (against Q8_1's stored sum); float64."""
    xq, s = _act_quantised(x)
    cols = torch.arange(q.shape[1]) // 32
    zero = fmt.zero if fmt.zero is not None else 0
    y = xq @ ((q.double() - zero) * d.double()[:, cols]).T
    return y if m is None else y + s @ m.double().T


def _file_model(model, fmt: str, act_quantised: bool):
    """A float64 copy of ``model`` (a GPTQ-format mechlab model) holding exactly the export's weights (its
    embedding as llama.cpp's rounding to ``fmt``, what token_embd holds); with ``act_quantised`` every matrix product
    runs as ggml-cpu runs it (:func:`_llama_cpp_matmul`: the Linear layers from their stored codes, the tied head
    from token_embd's blocks)."""
    import copy

    from mechlab.quant.linear import IntLinear
    from mechlab.quant.scalar import block_dequantize, block_format, llama_cpp_blocks

    f = block_format(fmt)
    e = copy.deepcopy(model)
    q, d, m = llama_cpp_blocks(e.embed.weight.detach(), f)
    e.embed.weight.data.copy_(block_dequantize(q, d, m, f))
    e.double()
    if act_quantised:
        for mod in e.modules():
            if isinstance(mod, IntLinear):
                mins = None if f.zero is not None else mod.mins
                mod.forward = lambda x, mod=mod, mins=mins: _llama_cpp_matmul(x, mod.codes(), mod.scales, mins, f)
        e.embed.attend = lambda x: _llama_cpp_matmul(x, q, d, m, f)
    return e


@pytest.mark.parametrize("fmt", FORMATS)
def test_llama_cpp_runs_the_stored_codes(imported, tmp_path, fmt):
    """llama.cpp's logits of a GPTQ-format export are mechlab's quantised model run as llama.cpp runs it.

    ggml-cpu multiplies Q4_0 / Q8_0 blocks with activations rounded to its Q8_0 blocks (Q4_1 with Q8_1, which adds
    a stored fp16 sum), so llama.cpp's logits are not the float32 evaluation of the dequantised weights but that of
    :func:`_llama_cpp_matmul` in every product. Emulated in float64 from the stored codes, d and m, they agree within
    test_model.float64_logits' float32 bound, except where llama.cpp's float32 activation and the float64 one round
    to different neighbours of the 8-bit grid (an activation within its float32 error of a rounding midpoint): each
    such flip moves one activation by one grid step, less than rounding every activation moves the logits, so the
    allowance per position is the bound plus the largest change that the activation rounding makes at that position
    (emulated minus the plain float64 model). The test still tells integers apart: llama.cpp's rounding of the same
    float weights (RTN with the format, other codes on the same grids) lies outside that allowance."""
    pytest.importorskip("llama_cpp")
    from mechlab.quant import RTNConfig, quantize_

    got, model = imported
    q = _gptq_model(imported, fmt)
    path = export_gguf(q, got.tokenizer, got.meta, tmp_path / f"{fmt}.gguf", qtype=fmt)
    ids = list(range(3, 35))
    theirs = _llama_cpp_logits(path, ids)
    x = torch.tensor([ids])
    ref, bound = float64_logits(_file_model(q, fmt, True), x, inplace=True)
    plain, _ = float64_logits(_file_model(q, fmt, False), x, inplace=True)
    flips = (ref - plain).abs().amax(-1, keepdim=True)
    allowance = (bound + flips)[0].numpy()
    assert np.all(np.abs(theirs - ref[0].numpy()) <= allowance)
    import copy

    rtn = copy.deepcopy(model)
    quantize_(rtn, RTNConfig(format=fmt))
    other, _ = float64_logits(_file_model(rtn, fmt, True), x, inplace=True)
    assert np.any(np.abs(theirs - other[0].numpy()) > allowance)


def test_cli_quantize_format_then_export(imported, tmp_path):
    """`mechlab quantize rtn --format q4_0` then `mechlab export gguf --type q4_0`: llama.cpp's own rounding, so the
    file's matrices are byte for byte those of exporting the float checkpoint to Q4_0."""
    import gguf
    from typer.testing import CliRunner

    from mechlab.checkpoint import save_checkpoint
    from mechlab.cli import app

    got, model = imported
    save_checkpoint(tmp_path / "ck", model, got.tokenizer, meta=got.meta)
    run = CliRunner().invoke
    r = run(app, ["quantize", "rtn", str(tmp_path / "ck"), "-o", str(tmp_path / "q"), "--format", "q4_0"])
    assert r.exit_code == 0, r.output
    for ck, name in ((tmp_path / "ck", "f.gguf"), (tmp_path / "q", "q.gguf")):
        r = run(app, ["export", "gguf", str(ck), "-o", str(tmp_path / name), "--type", "q4_0"])
        assert r.exit_code == 0, r.output
    a = {t.name: np.asarray(t.data) for t in gguf.GGUFReader(str(tmp_path / "f.gguf")).tensors}
    b = {t.name: np.asarray(t.data) for t in gguf.GGUFReader(str(tmp_path / "q.gguf")).tensors}
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    r = subprocess.run([sys.executable, "-m", "mechlab", "quantize", "gptq", str(tmp_path / "ck"), "-o",
                        str(tmp_path / "g"), "--format", "q4_0", "--bits", "3"], capture_output=True, text=True)
    assert r.returncode == 2 and "fixes bits" in r.stderr and "Traceback" not in r.stderr
