"""Post-training quantisation of the trained tiny models (issue: quantisation core, item 7).

For the Transformer, Looped and Hyperloop tiny models trained by experiments/hyperloop_tiny.py (gutenberg, BPE
2048), validation bits-per-byte of the float model, GPTQ INT4 (g128), RTN 2-bit (g128, min/max), GPTQ 2-bit (g128)
and trellis 2-bit (L=16, 1MAD, RHT, BlockLDLQ, tail-biting: exactly 2 bits per weight). Every Linear but the LM
head is quantised (hyper-connection maps included where they tile; trellis keeps the 12×512 Hyperloop maps in
float, listed in the results). Calibration: 64 windows of 256 tokens from the train split; scoring: the same 256
validation windows as the training experiment. It checks the Hyperloop claim that its advantage survives INT4
PTQ, and shows the gap between trellis and scalar 2-bit.

    python experiments/ptq_tiny.py [--seeds 0 1 2] [--L 16]

Per-model rows are kept in runs/ptq_tiny/ARCH-sSEED.json (a finished model is not redone); the summary goes to
experiments/results/ptq_tiny.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from mechlab.checkpoint import load_checkpoint
from mechlab.data.tokens import token_stream
from mechlab.eval import evaluate_lm
from mechlab.quant import GPTQConfig, RTNConfig, TrellisConfig
from mechlab.quant.run import quantize_checkpoint, size_report
from mechlab.utils import machine_description, write_json_atomic

ROOT = Path(__file__).resolve().parent
ARCHS = ("transformer", "looped", "hyperloop")


def methods(L: int) -> dict:
    return {"gptq-int4-g128": GPTQConfig(bits=4, group_size=128), "rtn-2bit-g128": RTNConfig(bits=2, group_size=128),
            "gptq-2bit-g128": GPTQConfig(bits=2, group_size=128),
            f"trellis-2bit-L{L}": TrellisConfig(L=L, k=2, V=1, code="1mad", rht=True, ldlq=True, tail_biting=True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--L", type=int, default=16)
    ap.add_argument("--runs", default="runs/hyperloop_tiny")
    ap.add_argument("--eval-windows", type=int, default=256)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default="runs/ptq_tiny", help="where per-model rows are kept")
    args = ap.parse_args()
    rows = []
    for seed in args.seeds:
        for arch in ARCHS:
            done = Path(args.out) / f"{arch}-s{seed}-L{args.L}.json"
            if done.is_file():
                rows.extend(json.loads(done.read_text()))
                continue
            first = len(rows)
            run = Path(args.runs) / f"{arch}-s{seed}"
            ck = load_checkpoint(run)
            seq_len = ck.meta["train_config"]["seq_len"]
            val = token_stream("gutenberg", "validation", ck.tokenizer, args.data_dir)
            score = lambda model: evaluate_lm(model, val, context=seq_len, max_windows=args.eval_windows,  # noqa: E731
                                              spread=True, batch_size=16).bits_per_byte
            base = {"arch": arch, "seed": seed}
            rows.append({**base, "method": "float", "val_bpb": score(ck.model), "bytes": size_report(ck.model)["total_bytes"]})
            print(rows[-1], flush=True)
            for name, cfg in methods(args.L).items():
                qck, report, _ = quantize_checkpoint(run, cfg, calib_sequences=64, calib_seq_len=seq_len, seed=seed,
                                                     data_dir=args.data_dir, progress=False)
                summ, size = report.summary(), size_report(qck.model)
                rows.append({**base, "method": name, "val_bpb": score(qck.model), "bytes": size["total_bytes"],
                             "bits_per_quantized_weight": size["bits_per_quantized_weight"],
                             "rel_mse": summ["rel_mse"], "proxy_loss": summ["proxy_loss"],
                             "quant_seconds": summ["seconds"], "kept_float": sorted(summ["skipped"])})
                print({k: v for k, v in rows[-1].items() if k != "kept_float"}, flush=True)
            write_json_atomic(done, rows[first:])
    table = {}
    for arch in ARCHS:
        for m in ["float", *methods(args.L)]:
            v = [r["val_bpb"] for r in rows if r["arch"] == arch and r["method"] == m]
            table.setdefault(arch, {})[m] = {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                                             "n": len(v)}
    print(f"{'arch':12s}" + "".join(f"{m:>22s}" for m in table["transformer"]))
    for arch, cells in table.items():
        print(f"{arch:12s}" + "".join(f"{c['mean']:>14.4f} ± {c['std']:.4f}" for c in cells.values()))
    write_json_atomic(ROOT / "results" / "ptq_tiny.json", {
        "experiment": "ptq_tiny", "command": " ".join(["python", *sys.argv]), "machine": machine_description(),
        "settings": {"seeds": args.seeds, "L": args.L, "eval_windows": args.eval_windows, "calib_sequences": 64},
        "val_bpb": table, "runs": rows})
    print(f"wrote {ROOT / 'results' / 'ptq_tiny.json'}")


if __name__ == "__main__":
    main()
