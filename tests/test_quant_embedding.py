"""Quantised token embedding and LM head (mechlab.quant.embedding): lookup and head matmul against a float64
decode of the stored code, tied models keeping one code, checkpoints round-tripping bit-exactly, and the size
accounting summing to the safetensors file."""

import json
import math

import pytest
import torch
import torch.nn as nn

from mechlab.errors import ConfigError
from mechlab.models import build_model, preset
from mechlab.quant import GPTQConfig, RTNConfig, TrellisConfig, collect_hessians, quantize_
from mechlab.quant.codes import one_mad_unit
from mechlab.quant.embedding import QuantizedEmbedding
from mechlab.quant.linear import IntLinear, TrellisLinear
from mechlab.quant.run import size_report

U32 = 2.0**-24  # unit roundoff of float32
# vocab 100 is not whole 16-row tiles (the table is padded), d = 48 = 32 + 16 (a block Hadamard transform)
TINY = dict(vocab_size=100, d_model=48, n_heads=4, n_kv_heads=2, d_ff=96, max_seq_len=32)
CONFIGS = {"trellis": TrellisConfig(L=8, k=2, code="1mad", embedding=True),
           "rtn": RTNConfig(bits=4, group_size=16, embedding=True),
           "gptq": GPTQConfig(bits=3, group_size=16, embedding=True),
           "trellis-lut": TrellisConfig(L=8, k=2, code="lut", V=2, embedding=True)}  # the PyTorch decode path


def tiny(tied: bool, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(preset("tiny", tie_embeddings=tied, **TINY)).eval()


def quantised(name: str, tied: bool) -> tuple[nn.Module, torch.Tensor]:
    m = tiny(tied)
    x = torch.randint(0, TINY["vocab_size"], (2, 16), generator=torch.Generator().manual_seed(1))
    quantize_(m, CONFIGS[name], calibration=[x])
    return m.eval(), x


def reference_table(q: QuantizedEmbedding) -> tuple[torch.Tensor, torch.Tensor]:
    """(E, Ẽ·r) in float64 from the stored buffers alone: the stored matrix decoded exactly (1MAD values are
    integers, times the scale; integer grids dequantised), the block Hadamard as a dense float64 matrix, the
    signs, the row scales."""
    inner = q.inner
    if isinstance(inner, TrellisLinear) and inner.config.code == "1mad":
        w = inner.rotated_weight().double() / (float(inner.scale) * one_mad_unit(inner.config.L))
        w = w.round() * (float(inner.scale) * one_mad_unit(inner.config.L))  # the decoded integers, exact
    elif isinstance(inner, TrellisLinear):  # the PyTorch decode (code table values times the scale: 1 rounding)
        w = inner.rotated_weight().double()
    else:
        codes = inner.codes().double()
        cols = torch.arange(codes.shape[1]) // inner.config.group_size
        w = (codes - inner.zeros.double()[:, cols]) * inner.scales.double()[:, cols]
    scaled = w.abs()
    if q.rotate:
        d = q.embedding_dim
        h = torch.zeros(d, d, dtype=torch.float64)
        i = 0
        for b in (1 << k for k in range(d.bit_length() - 1, -1, -1) if d >> k & 1):
            hb = torch.ones(1, 1, dtype=torch.float64)
            while hb.shape[0] < b:
                hb = torch.cat([torch.cat([hb, hb], 1), torch.cat([hb, -hb], 1)], 0)
            h[i : i + b, i : i + b] = hb / math.sqrt(b)
            i += b
        w = (w @ h) * q.signs().double()
    if q.row_scale is not None:
        r = q.row_scale.double()[:, None]
        w, scaled = w * r, scaled * r
    return w[: q.num_embeddings], scaled[: q.num_embeddings]


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("tied", [True, False])
def test_lookup_equals_the_decoded_rows_and_decodes_only_them(name, tied):
    m, _ = quantised(name, tied)
    q = m.embed
    assert isinstance(q, QuantizedEmbedding) and q.tied == tied
    ids = torch.tensor([[3, 99, 3], [0, 57, 16]])
    ref, scaled = reference_table(q)
    got = q(ids)
    assert got.shape == (2, 3, TINY["d_model"])
    # float32: the decode times the scale (1 rounding), the Hadamard (sums of at most d terms, each rounding at most
    # d·u of the running |sum| ≤ Σ|w̃|), the sign (exact) and the row scale (1 rounding): (d + 2)·u·Σ_j|w̃_ij|·r_i
    tol = (TINY["d_model"] + 2) * U32 * scaled.sum(1, keepdim=True)
    assert ((got.double() - ref[ids]).abs() <= tol[ids]).all()
    assert torch.equal(got[0, 0], got[0, 2])
    if isinstance(q.inner, (IntLinear, TrellisLinear)):  # a lookup never decodes the whole table

        def refuse():
            raise AssertionError("decoded the whole table")

        q.inner.weight = refuse
        q(ids)
    with pytest.raises(IndexError):
        q(torch.tensor([TINY["vocab_size"]]))


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("rows", [1, 40])  # the fused decode + matvec (≤ 16 rows) and decode + matmul
def test_head_matmul_equals_the_dense_decode(name, rows):
    m, _ = quantised(name, True)
    q = m.embed
    x = torch.randn(rows, TINY["d_model"], generator=torch.Generator().manual_seed(2))
    ref, scaled = reference_table(q)
    got = q.attend(x)
    assert got.shape == (rows, TINY["vocab_size"])
    # the input rotation (Hadamard of x: each entry within (d + 2)·u·Σ|x|), the d-term dot product with the decoded
    # stored row ((d + 2)·u of Σ|w̃||x̃|) and the row scale: bounded by (2d + 8)·u·r_i·Σ|w̃_ij|·Σ|x|
    tol = (2 * TINY["d_model"] + 8) * U32 * (x.abs().sum(1, keepdim=True).double() @ scaled.sum(1)[None, :])
    assert ((got.double() - x.double() @ ref.T).abs() <= tol).all()
    # the model's head reads the same table
    h = torch.randn(1, 3, TINY["d_model"], generator=torch.Generator().manual_seed(3))
    assert torch.equal(m.head(h), q.attend(m.norm(h)))


@pytest.mark.parametrize("name", ["trellis", "rtn"])
@pytest.mark.parametrize("tied", [True, False])
def test_checkpoint_round_trip_is_bit_exact_and_tied_keeps_one_code(tmp_path, name, tied):
    from mechlab.data.tokenizers import ByteTokenizer
    from mechlab.train.checkpoint import load_checkpoint, save_checkpoint

    m, x = quantised(name, tied)
    logits = m(x)[0]
    path = save_checkpoint(tmp_path / "q", m, ByteTokenizer())
    spec = json.loads((path / "quantization.json").read_text())
    assert spec["version"] == 2 and spec["embeddings"]["embed"]["tied"] == tied
    assert not any(n.startswith("embed.") for n in spec["layers"])
    ck = load_checkpoint(path)
    assert isinstance(ck.model.embed, QuantizedEmbedding)
    state, loaded = m.state_dict(), ck.model.state_dict()
    assert state.keys() == loaded.keys() and all(torch.equal(state[k], loaded[k]) for k in state)
    assert torch.equal(ck.model(x)[0], logits)
    codes = [k for k in state if k.endswith((".packed", ".qweight")) and not k.startswith("blocks.")]
    if tied:  # one stored code serves the lookup and the head
        assert codes == [f"embed.inner.{'packed' if name == 'trellis' else 'qweight'}"] and ck.model.lm_head is None
    else:  # the untied head (100 rows: not whole trellis tiles, so float under trellis) is its own layer
        assert "embed.inner." + ("packed" if name == "trellis" else "qweight") in codes
        assert ("lm_head.qweight" in codes) == (name == "rtn")


@pytest.mark.parametrize("tied", [True, False])
def test_size_accounting_sums_to_the_safetensors_file(tmp_path, tied):
    from mechlab.data.tokenizers import ByteTokenizer
    from mechlab.train.checkpoint import save_checkpoint

    float_params = sum(p.numel() for p in tiny(tied).parameters())
    m, _ = quantised("trellis", tied)
    path = save_checkpoint(tmp_path / "q", m, ByteTokenizer()) / "model.safetensors"
    rep = size_report(m, path)
    header = int.from_bytes(path.read_bytes()[:8], "little")  # safetensors: u64 header length, JSON header, data
    assert rep["file_bytes"] == 8 + header + rep["total_bytes"]
    assert sum(rep["bytes"].values()) == rep["total_bytes"]
    assert sum(c["bytes"] for c in rep["components"].values()) == rep["total_bytes"]
    assert rep["parameters"] == float_params  # a quantised m×n matrix counts m·n, a tied table once
    emb = rep["components"]["embedding"]
    assert emb["parameters"] == TINY["vocab_size"] * TINY["d_model"]
    # 2-bit codes of the padded table (112 rows), 4-byte scale, d sign bits, fp16 row scales
    assert emb["bytes"] == 112 * 48 * 2 // 8 + 4 + 48 // 8 + 112 * 2
    assert rep["components"]["lm head"]["bytes"] == (0 if tied else 100 * 48 * 4)
    assert rep["file_bits_per_parameter"] == 8 * rep["file_bytes"] / float_params


def test_embedding_option_errors_and_untouched_default():
    m = tiny(True)
    quantize_(m, RTNConfig(bits=4, group_size=16))
    assert isinstance(m.embed, nn.Embedding)  # without embedding=True the table stays float
    net = nn.Sequential(nn.Linear(16, 16))
    with pytest.raises(ConfigError, match="nn.Embedding"):
        quantize_(net, RTNConfig(embedding=True), skip=())
    m = tiny(True)
    with pytest.raises(ConfigError, match="tied_head"):
        h = collect_hessians(m, [torch.zeros(1, 4, dtype=torch.long)])
        quantize_(m, TrellisConfig(L=8, embedding=True), hessians=h)
    with pytest.raises(ConfigError, match="not tied"):
        collect_hessians(tiny(False), [torch.zeros(1, 4, dtype=torch.long)], tied_head=True)


def test_embedding_bits_sets_the_table_width_and_round_trips(tmp_path):
    from mechlab.data.tokenizers import ByteTokenizer
    from mechlab.train.checkpoint import load_checkpoint, save_checkpoint

    m = tiny(True)
    x = torch.randint(0, TINY["vocab_size"], (2, 16), generator=torch.Generator().manual_seed(1))
    quantize_(m, TrellisConfig(L=8, k=2, embedding=True, embedding_bits=4), calibration=[x])
    assert m.embed.inner.config.k == 4 and m.blocks[0].attn.q.config.k == 2
    assert size_report(m)["components"]["embedding"]["bytes"] == 112 * 48 * 4 // 8 + 4 + 48 // 8 + 112 * 2
    ck = load_checkpoint(save_checkpoint(tmp_path / "q", m, ByteTokenizer()))
    assert torch.equal(ck.model(x)[0], m(x)[0])
    m = tiny(False)
    quantize_(m, RTNConfig(bits=2, group_size=16, embedding=True, embedding_bits=8))
    assert m.embed.inner.config.bits == 8 and m.lm_head.config.bits == 8  # the untied head: a Linear at those bits
    assert m.blocks[0].mlp.down.config.bits == 2
    with pytest.raises(ConfigError, match="embedding_bits"):
        TrellisConfig(L=8, k=2, embedding=True, embedding_bits=8)
    with pytest.raises(ConfigError, match=r"embedding_bits must be in 1\.\.8"):  # the table's own message, not k's
        TrellisConfig(L=16, k=2, embedding=True, embedding_bits=9)
    from mechlab.quant.run import make_config

    for method in ("trellis", "rtn", "gptq"):
        with pytest.raises(ConfigError, match="needs embedding=True"):  # the table would silently stay in float
            make_config(method, 2, L=12, embedding_bits=4)
