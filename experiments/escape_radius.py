"""How far must latent weights move before a trellis code can change? (docs/bcjr-qat-drift.md)

For i.i.d. Gaussian tiles (RMS 0.9 in code units, as the quantiser scales them) coded at k=2, V=1, 1MAD,
tail-biting, for L ∈ {8, 10, 12, 16}: the distribution of the escape radius of every single-symbol change
(:func:`mechlab.quant.qat.escape_radius`: half the RMS per-weight change it makes), next to the reference's
heuristic r ≈ σ/√(2π·2^L) with σ = 0.9.

    python experiments/escape_radius.py [--tiles 16]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from mechlab.quant.config import TrellisConfig
from mechlab.quant.qat import escape_radius
from mechlab.quant.qtip import TrellisCode
from mechlab.quant.trellis import encode
from mechlab.utils import machine_description, write_json_atomic

ROOT = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", type=int, default=16)
    args = ap.parse_args()
    w = 0.9 * torch.randn(args.tiles, 256, generator=torch.Generator().manual_seed(0))
    rows = []
    for L in (8, 10, 12, 16):
        cfg = TrellisConfig(L=L, k=2, V=1, code="1mad", ldlq=False)
        codes, _ = encode(w, L, 2, 1, "1mad", tail_biting=True)
        r = escape_radius(TrellisCode(codes, None, 1.0, None, None, (16, 16 * args.tiles)), cfg).flatten()
        q = torch.quantile(r.double(), torch.tensor([0.0, 0.01, 0.1, 0.5], dtype=torch.float64)).tolist()
        rows.append({"L": L, "min": q[0], "p01": q[1], "p10": q[2], "median": q[3],
                     "reference_heuristic": 0.9 / math.sqrt(2 * math.pi * 2**L), "events": r.numel()})
        print(rows[-1], flush=True)
    write_json_atomic(ROOT / "results" / "escape_radius.json", {
        "experiment": "escape_radius", "command": " ".join(["python", *sys.argv]), "machine": machine_description(),
        "units": "code units (weights ÷ scale; the code has unit RMS, the weights RMS 0.9)", "rows": rows})


if __name__ == "__main__":
    main()
