"""``mechlab demo``: the lab's main loop on a laptop, with no download.

Trains the ``tiny`` Transformer on the built-in ``stdlib`` corpus (byte-level tokens) for a few minutes,
reports validation bits-per-byte before and after, prints a sample, and writes the checkpoint and a loss curve.
Then quantises the trained model to exactly 2 bits per weight with trellis PTQ (L=16, 1MAD code, RHT, BlockLDLQ,
tail-biting; every Linear but the LM head) and reports bytes and bits-per-byte before and after. Last, it
renders the claim pages with the verdict of what it measured (``OUT/claims/index.html``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from mechlab.data.tokens import token_stream
from mechlab.eval import evaluate_lm
from mechlab.plots import plot_training
from mechlab.quant import TrellisConfig
from mechlab.quant.run import quantize_checkpoint, size_report
from mechlab.train import TrainConfig, train
from mechlab.utils import write_json_atomic

log = logging.getLogger(__name__)

DEMO_PROMPT = 'def fibonacci(n):\n    """'


@dataclass
class DemoResult:
    out_dir: Path
    bpb_before: float
    bpb_after: float
    sample: str
    plot: Path
    n_params: int
    quant_dir: Path
    quant_config: TrellisConfig
    bytes_before: int
    bytes_after: int
    bpb_quantized: float
    bpb_float_same_windows: float
    claims: Path | None = None  # the rendered claim pages


def demo_config(out_dir: str | Path = "runs/demo", steps: int = 600, data_dir: str | None = None) -> TrainConfig:
    return TrainConfig(model="tiny", data="stdlib", tokenizer="byte", data_dir=data_dir, seq_len=256, batch_size=16,
                       steps=steps, lr=3e-3, warmup_steps=min(50, max(steps // 10, 1)), eval_every=max(steps // 4, 1),
                       eval_windows=64, save_every=max(steps // 4, 1), log_every=max(min(10, steps // 5), 1),
                       seed=0, out_dir=str(out_dir))


def run_demo(out_dir: str | Path = "runs/demo", steps: int = 600, data_dir: str | None = None,
             progress: bool = True, quant_L: int = 16) -> DemoResult:
    cfg = demo_config(out_dir, steps, data_dir)
    result = train(cfg, overwrite=True, progress=progress)
    model, tok = result.model, result.tokenizer
    prompt = torch.tensor([tok.encode(DEMO_PROMPT)])
    gen = torch.Generator().manual_seed(0)
    ids = model.generate(prompt, max_new_tokens=200, temperature=0.8, top_k=40, generator=gen)
    sample = tok.decode(ids[0].tolist())
    plot = plot_training(result.out_dir / "metrics.jsonl", result.out_dir / "loss.png",
                         title=f"mechlab demo: tiny Transformer on stdlib ({steps} steps)")
    qcfg = TrellisConfig(L=quant_L, k=2, V=1, code="1mad", rht=True, ldlq=True, tail_biting=True)
    qdir = Path(out_dir) / "trellis-2bit"
    qck, _, _ = quantize_checkpoint(result.out_dir, qcfg, qdir, calib_sequences=32, data_dir=data_dir, progress=progress,
                                    overwrite=True)
    val = token_stream(cfg.data, "validation", tok, data_dir)
    scored = dict(context=cfg.seq_len, max_windows=cfg.eval_windows, spread=True, batch_size=16)
    bpb_float = evaluate_lm(model, val, **scored).bits_per_byte
    bpb_q = evaluate_lm(qck.model, val, **scored).bits_per_byte
    r = DemoResult(result.out_dir, result.initial_eval.bits_per_byte, result.final_eval.bits_per_byte, sample, plot,
                   model.num_params(), qdir, qcfg, size_report(model)["total_bytes"],
                   size_report(qck.model)["total_bytes"], bpb_q, bpb_float)
    r.claims = render_demo_claims(r, steps)
    return r


def render_demo_claims(r: DemoResult, steps: int) -> Path:
    """Write what the demo measured (demo_results.json) and render the claim pages with it (the lab's last step:
    measurement → verdict page); claims measured by committed experiments appear when run from the repository."""
    from mechlab.claims import claim, render_report

    results = {"steps": steps, "bpb_before": r.bpb_before, "bpb_after": r.bpb_after, "bpb_float": r.bpb_float_same_windows,
               "bpb_quantized": r.bpb_quantized, "bytes_before": r.bytes_before, "bytes_after": r.bytes_after,
               "L": r.quant_config.L}
    write_json_atomic(r.out_dir / "demo_results.json", results)
    c = claim("demo-trellis-2bit")
    return render_report(r.out_dir / "claims", ".", measured={c.name: (c.evaluate([results]), [r.plot])})
