"""Story maps, measured (docs/maps.md): how well the BERTopic pipeline (UMAP -> HDBSCAN -> class-based
TF-IDF; mechlab.maps) separates documents, for each embedder, over 5 UMAP seeds at the default settings
(mechlab.maps.MapConfig: UMAP 15 neighbours, 5 components, min_dist 0, cosine; HDBSCAN min_cluster_size 10, eom).

Data:
* gutenberg: ``--per-book`` paragraphs (40–300 words, spread through each book) of each of ``--books``, labelled by
  book: ARI and AMI of the clusters against the book (noise dropped / noise as its own cluster), noise share,
  k-NN (k = 10) book accuracy in the embedding and in the 2-D picture.
* tinystories: ``--stories`` stories of the 2 MiB TinyStories sample (drawn with seed 0): seed stability (mean ARI
  between the 10 pairs of 5 seeds), DBCV, noise share, and AMI against weak labels computed from the text (dialogue,
  "moral", opening formula, main character's name) -- weak: surface features, not the generation prompt's.
* both: NPMI coherence and diversity of the cluster words.

Embedders: tfidf (TF-IDF + SVD to 100), minilm (all-MiniLM-L6-v2), hidden states of SmolLM2-135M-Instruct (layer
15 of 30, ``--smollm2`` = a checkpoint made by `mechlab import gguf smollm2 -o DIR`) and of a tiny Transformer trained
on TinyStories (``--tiny``, a run directory, its middle layer), both at ``--max-tokens`` tokens per document.
An embedder whose checkpoint is missing is skipped and listed under "skipped".

Embeddings are computed once and cached (mechlab.maps.embed); then 5 seeds of the map per (data, embedder).
Reported: mean ± sample standard deviation over seeds and a 95% percentile bootstrap interval over seeds.

    OMP_NUM_THREADS=1 python experiments/story_maps.py [--quick]

writes experiments/results/story_maps.{json,png} (any non-default run: story_maps.quick.{json,png}). The claims
maps-noise and maps-stability (mechlab.claims.registry) read the JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

from mechlab.maps import (
    MapConfig,
    embed,
    gutenberg_documents,
    seed_sweep,
    tinystories_documents,
)
from mechlab.maps.render import draw_map
from mechlab.utils import machine_description, save_figure, write_json_atomic

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
BOOKS = ["austen_pride-and-prejudice_pg1342", "melville_moby-dick_pg2701", "plato_republic_pg1497",
         "stoker_dracula_pg345", "twain_huckleberry-finn_pg76", "grimm_grimms-fairy-tales_pg2591",
         "thoreau_walden_pg205", "machiavelli_the-prince_pg1232", "wells_war-of-the-worlds_pg36",
         "whitman_leaves-of-grass_pg1322"]
EMBEDDERS = ["tfidf", "minilm", "smollm2", "tiny"]
QUICK = dict(per_book=20, stories=200, seeds=[0, 1], embedders=["tfidf", "minilm"])


def parse_quick(build_parser, quick_defaults, argv):
    spec = importlib.util.spec_from_file_location("_mechlab_benchmarks_common", ROOT.parent / "benchmarks" / "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    return common.parse_quick(build_parser, quick_defaults, argv, ("cache",))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--books", nargs="+", default=BOOKS, help="Gutenberg file stems")
    ap.add_argument("--per-book", type=int, default=60, help="paragraphs per book")
    ap.add_argument("--stories", type=int, default=800, help="TinyStories stories")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--embedders", nargs="+", default=EMBEDDERS, choices=EMBEDDERS)
    ap.add_argument("--smollm2", default="runs/maps/smollm2", help="imported SmolLM2 checkpoint")
    ap.add_argument("--smollm2-layer", type=int, default=15)
    ap.add_argument("--tiny", default="runs/maps/transformer-tiny", help="a tiny model trained on TinyStories")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--cache", default=None, help="embedding cache directory (default ~/.cache/mechlab/maps)")
    ap.add_argument("--quick", action="store_true", help="a small smoke run (options given still apply)")
    return ap


def embedder_spec(name: str, args) -> str | None:
    if name in ("tfidf", "minilm"):
        return name
    path = Path(args.smollm2 if name == "smollm2" else args.tiny)
    if not path.exists():
        return None
    return f"hidden:{path}@{args.smollm2_layer}" if name == "smollm2" else f"hidden:{path}"


def main(argv: list[str] | None = None) -> None:
    ap, args, quick = parse_quick(build_parser, QUICK, argv)
    if args.per_book < 5 or args.stories < 50 or len(set(args.seeds)) < 2:
        ap.error("--per-book >= 5, --stories >= 50 and at least two distinct --seeds are needed")
    data = {
        "gutenberg": gutenberg_documents(per_book=args.per_book, books=args.books),
        "tinystories": tinystories_documents(),
    }
    rng = np.random.default_rng(0)
    ts = data["tinystories"]
    data["tinystories"] = [ts[i] for i in sorted(rng.choice(len(ts), size=min(args.stories, len(ts)), replace=False))]
    label_names = {"gutenberg": ["book"], "tinystories": ["dialogue", "moral", "opening", "character"]}
    results: dict = {"datasets": {}, "skipped": []}
    pictures = {}
    for dname, docs in data.items():
        texts = [d.text for d in docs]
        labels = {k: [d.labels[k] for d in docs] for k in label_names[dname]}
        results["datasets"][dname] = {"n_documents": len(docs),
                                      "label_counts": {k: len(set(v)) for k, v in labels.items()}, "embedders": {}}
        for name in args.embedders:
            spec = embedder_spec(name, args)
            if spec is None:
                results["skipped"].append(f"{dname}/{name}: checkpoint missing")
                continue
            print(f"[{dname}] embedding with {spec}", flush=True)
            from mechlab.maps import parse_embedder

            z, info = embed(texts, parse_embedder(spec, max_tokens=args.max_tokens), args.cache)
            t0 = time.perf_counter()
            sweep, picture = seed_sweep(texts, z, args.seeds, MapConfig(), labels, picture_seed=args.seeds[0])
            sweep["embedding"] = {k: v for k, v in info.items() if k != "cache_file"}
            sweep["maps_seconds"] = time.perf_counter() - t0
            results["datasets"][dname]["embedders"][name] = sweep
            pictures[(dname, name)] = picture
            s = sweep["summary"]
            print(f"  noise {s['noise_share']['mean']:.3f} ± {s['noise_share']['std']:.3f}, clusters "
                  f"{s['n_clusters']['mean']:.1f}, stability ARI {sweep['stability']['mean']:.3f}", flush=True)
    results.update(settings={k: v for k, v in vars(args).items() if k != "cache"}, map_config=MapConfig().to_dict(),
                   quick=quick, machine=machine_description(),
                   command="OMP_NUM_THREADS=1 python " + " ".join(["experiments/story_maps.py", *sys.argv[1:]]))
    name = "story_maps.quick" if quick else "story_maps"
    write_json_atomic(RESULTS / f"{name}.json", results)
    plot(pictures, results, RESULTS / f"{name}.png")
    print(f"wrote {RESULTS / name}.json and .png")


def plot(pictures: dict, results: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    rows = sorted({d for d, _ in pictures})
    cols = [e for e in EMBEDDERS if any((d, e) in pictures for d in rows)]
    fig = Figure(figsize=(4 * len(cols), 4 * len(rows)))
    for i, d in enumerate(rows):
        for j, e in enumerate(cols):
            ax = fig.add_subplot(len(rows), len(cols), i * len(cols) + j + 1)
            if (d, e) not in pictures:
                ax.set_axis_off()
                continue
            s = results["datasets"][d]["embedders"][e]
            draw_map(ax, pictures[(d, e)], f"{d} · {e}: noise {100 * s['summary']['noise_share']['mean']:.0f}%, "
                                           f"stability {s['stability']['mean']:.2f}", max_labels=8)
    fig.tight_layout()
    save_figure(fig, path, format="png", dpi=110)


if __name__ == "__main__":
    main()
