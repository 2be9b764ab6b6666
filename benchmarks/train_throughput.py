"""Training throughput of the mechlab Transformer against a minimal single-file reference of the same shape.

Both models train (forward, backward, AdamW step) on the same random batches, in float32 on the CPU, alternated
round by round in one process; the table gives tokens/s of each, their ratio, the achieved model FLOP/s and its
fraction of the matmul FLOP/s measured on this machine. Target: ratio >= 1.0.

    python benchmarks/train_throughput.py [--quick] [--preset tiny] [--threads N]

Writes benchmarks/results/train_throughput.json with the defaults; any other options (``--quick``, another preset,
batch, sequence length or thread count) write train_throughput.quick.json beside it.
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mechlab.models import build_model, preset

from common import (
    benchmark_parser,
    is_reference_run,
    matmul_flops,
    parse_benchmark_args,
    print_table,
    set_threads,
    train_throughput,
    write_result,
)


# ---- the minimal reference: one file, no framework, same shapes ----------------------------------------------
class RefBlock(nn.Module):
    def __init__(self, d, h, hkv, ff):
        super().__init__()
        self.h, self.hkv, self.hd = h, hkv, d // h
        self.n1, self.n2 = nn.Parameter(torch.ones(d)), nn.Parameter(torch.ones(d))
        self.wq, self.wk, self.wv = nn.Linear(d, d, bias=False), nn.Linear(d, hkv * self.hd, bias=False), nn.Linear(d, hkv * self.hd, bias=False)
        self.wo = nn.Linear(d, d, bias=False)
        self.w1, self.w3, self.w2 = nn.Linear(d, ff, bias=False), nn.Linear(d, ff, bias=False), nn.Linear(ff, d, bias=False)

    @staticmethod
    def norm(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        y = self.norm(x, self.n1)
        q = self.wq(y).view(B, T, self.h, self.hd).transpose(1, 2)
        k = self.wk(y).view(B, T, self.hkv, self.hd).transpose(1, 2)
        v = self.wv(y).view(B, T, self.hkv, self.hd).transpose(1, 2)
        rot = lambda t: t * cos + torch.cat([-t[..., self.hd // 2:], t[..., : self.hd // 2]], -1) * sin  # noqa: E731
        q, k = rot(q), rot(k)
        rep = self.h // self.hkv
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.wo(a.transpose(1, 2).reshape(B, T, -1))
        y = self.norm(x, self.n2)
        return x + self.w2(F.silu(self.w1(y)) * self.w3(y))


class RefModel(nn.Module):
    def __init__(self, vocab, d, layers, h, hkv, ff, T, base):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(RefBlock(d, h, hkv, ff) for _ in range(layers))
        self.nf = nn.Parameter(torch.ones(d))
        inv = 1.0 / base ** (torch.arange(0, d // h, 2).float() / (d // h))
        ang = torch.outer(torch.arange(T).float(), inv).repeat(1, 2)
        self.register_buffer("cos", ang.cos())
        self.register_buffer("sin", ang.sin())

    def forward(self, idx, tgt):
        x = self.emb(idx)
        T = idx.shape[1]
        for b in self.blocks:
            x = b(x, self.cos[:T], self.sin[:T])
        logits = RefBlock.norm(x, self.nf) @ self.emb.weight.T
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), tgt.reshape(-1))


# ---- measurement ---------------------------------------------------------------------------------------------
def train_flops_per_token(cfg, T: int) -> float:
    """6·(matmul parameters incl. the head) + 6·layers·T·d_model (causal attention: scores and values over T/2
    keys on average, forward and backward), per token."""
    d, L = cfg.d_model, cfg.n_layers
    per_layer = d * d * 2 + 2 * d * cfg.n_kv_heads * cfg.head_dim + 3 * d * cfg.d_ff
    return 6 * (L * per_layer + d * cfg.vocab_size) + 6 * L * T * d


def build_parser() -> argparse.ArgumentParser:
    ap = benchmark_parser(__doc__, "fewer rounds (a smoke run)", threads=None)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    return ap


def output(ap: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, bool]:
    """(result name, quick): only the default configuration writes train_throughput.json."""
    return "train_throughput", not is_reference_run(ap, args)


def main() -> None:
    ap, args, name, quick = parse_benchmark_args(build_parser, output)
    set_threads(args.threads)
    rounds, steps = (3, 3) if args.quick else (8, 10)

    cfg = preset(args.preset, vocab_size=259, max_seq_len=args.seq)
    torch.manual_seed(0)
    ours = build_model(cfg)
    ref = RefModel(cfg.vocab_size, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.d_ff, args.seq, cfg.rope_base)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters()), "shapes differ"
    models = {"mechlab": ours, "reference": ref}
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, cfg.vocab_size, (args.batch, args.seq + 1), generator=g)
    tps = train_throughput(models, x, rounds, steps)
    peak = matmul_flops()
    fpt = train_flops_per_token(cfg, args.seq)
    rows = [{"model": k, "tokens/s": v, "model GFLOP/s": v * fpt / 1e9, "fraction of matmul peak": v * fpt / peak}
            for k, v in tps.items()]
    print_table(rows, f"training throughput, {args.preset} ({ours.num_params():,} params), batch {args.batch}×{args.seq}, "
                      f"{torch.get_num_threads()} threads; matmul peak {peak / 1e9:.0f} GFLOP/s")
    ratio = tps["mechlab"] / tps["reference"]
    print(f"ratio mechlab / reference: {ratio:.3f} (target >= 1.0)")
    path = write_result(name, {
        "preset": args.preset, "batch": args.batch, "seq_len": args.seq, "threads": torch.get_num_threads(),
        "tokens_per_s_mechlab": tps["mechlab"], "tokens_per_s_reference": tps["reference"], "ratio": ratio,
        "flops_per_token": fpt, "matmul_flops_fp32": peak,
        "fraction_of_peak_mechlab": tps["mechlab"] * fpt / peak, "fraction_of_peak_reference": tps["reference"] * fpt / peak,
        "rounds": rounds, "steps_per_round": steps,
    }, quick=quick)
    print(f"wrote {path}")
    assert math.isfinite(ratio)


if __name__ == "__main__":
    main()
