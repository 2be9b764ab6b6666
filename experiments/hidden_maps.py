"""Maps of hidden states by layer and loop: Transformer vs Looped vs Hyperloop (arXiv 2604.21691,
"universal behaviours"; docs/maps.md).

The three tiny presets (transformer-tiny: 8 blocks; looped-tiny and hyperloop-tiny: 1 -> 2×3 -> 1 blocks, the same
unrolled depth 8) trained by the one trainer on the TinyStories sample (byte tokens, 600 steps of 8×128, seed 0;
``--runs`` holds the run directories `mechlab train --config runs/maps/ARCH.json` makes, see docs/maps.md). The same
``--docs`` TinyStories stories (drawn with seed 1, first ``--max-tokens`` bytes) go through each model; the hidden
state after every block application (mechlab.mechanics.hidden_states; layer 0 = the token embedding), mean-pooled
over tokens, is mapped with the default pipeline at ``--seeds``.

Per model and layer: noise share, clusters, DBCV, seed stability (mean pairwise ARI), AMI of the clusters against
the weak labels (dialogue, opening formula) and their k-NN (k = 10) accuracy in the hidden space; and the ARI
between the clusterings of consecutive layers (seed 0): how much the map changes from one block application to
the next (a loop that repeats its predecessor gives a high value).

    OMP_NUM_THREADS=1 python experiments/hidden_maps.py [--quick]

writes experiments/results/hidden_maps.{json,png}.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

from mechlab.maps import (
    MapConfig,
    hidden_state_embed,
    seed_sweep,
    tinystories_documents,
)
from mechlab.maps.render import draw_map
from mechlab.utils import machine_description, save_figure, write_json_atomic

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
ARCHS = ["transformer", "looped", "hyperloop"]
LABELS = ["dialogue", "opening"]
QUICK = dict(docs=120, seeds=[0, 1], max_tokens=64)


def parse_quick(build_parser, quick_defaults, argv):
    spec = importlib.util.spec_from_file_location("_mechlab_benchmarks_common", ROOT.parent / "benchmarks" / "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    return common.parse_quick(build_parser, quick_defaults, argv)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="runs/maps", help="directory holding ARCH-tiny run directories")
    ap.add_argument("--docs", type=int, default=400)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--quick", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> None:
    from sklearn.metrics import adjusted_rand_score

    from mechlab.checkpoint import load_checkpoint

    ap, args, quick = parse_quick(build_parser, QUICK, argv)
    if args.docs < 50 or len(set(args.seeds)) < 2:
        ap.error("--docs >= 50 and two distinct --seeds are needed")
    stories = tinystories_documents()
    pick = sorted(np.random.default_rng(1).choice(len(stories), size=min(args.docs, len(stories)), replace=False))
    docs = [stories[i] for i in pick]
    texts = [d.text for d in docs]
    labels = {k: [d.labels[k] for d in docs] for k in LABELS}
    out: dict = {"models": {}}
    pictures: dict = {}
    for arch in ARCHS:
        run = Path(args.runs) / f"{arch}-tiny"
        if not run.exists():
            ap.error(f"{run} is missing: train it first (docs/maps.md)")
        ck = load_checkpoint(run)
        states = hidden_state_embed(ck, texts, None, args.max_tokens)
        layers, prev = [], None
        for layer, z in states.items():
            print(f"{arch} layer {layer}", flush=True)
            sweep, pic = seed_sweep(texts, z, args.seeds, MapConfig(), labels, picture_seed=args.seeds[0], progress=False)
            row = {"layer": layer, "summary": sweep["summary"], "stability": sweep["stability"],
                   "ari_previous_layer": float(adjusted_rand_score(prev, pic.labels)) if prev is not None else None}
            prev = pic.labels
            layers.append(row)
            pictures[(arch, layer)] = pic
        out["models"][arch] = {"checkpoint": str(ck.path), "step": ck.meta.get("step"), "depth": ck.config.depth,
                               "n_loops": ck.config.n_loops, "layers": layers}
    out.update(n_documents=len(docs), settings=vars(args), quick=quick, map_config=MapConfig().to_dict(),
               machine=machine_description(),
               command="OMP_NUM_THREADS=1 python " + " ".join(["experiments/hidden_maps.py", *sys.argv[1:]]))
    name = "hidden_maps.quick" if quick else "hidden_maps"
    write_json_atomic(RESULTS / f"{name}.json", out)
    plot(pictures, out, RESULTS / f"{name}.png")
    print(f"wrote {RESULTS / name}.json and .png")


def plot(pictures: dict, out: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    depth = max(layer for _, layer in pictures) + 1
    fig = Figure(figsize=(2.4 * depth, 2.6 * len(ARCHS)))
    for i, arch in enumerate(ARCHS):
        rows = {r["layer"]: r for r in out["models"][arch]["layers"]}
        for layer in range(depth):
            ax = fig.add_subplot(len(ARCHS), depth, i * depth + layer + 1)
            if (arch, layer) not in pictures:
                ax.set_axis_off()
                continue
            s = rows[layer]
            draw_map(ax, pictures[(arch, layer)], f"{arch} L{layer}: {s['summary']['n_clusters']['mean']:.0f} cl, "
                                                  f"stab {s['stability']['mean']:.2f}", label_clusters=False)
    fig.tight_layout()
    save_figure(fig, path, format="png", dpi=90)


if __name__ == "__main__":
    main()
