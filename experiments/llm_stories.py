"""LLM stories on one map (docs/maps.md): does the map separate the writers?

Writers:
* ``smollm2``: SmolLM2-135M-Instruct (``--smollm2``, imported by `mechlab import gguf smollm2 -o DIR`) through its
  chat template, asked "Write a short story for a small child about THEME. Use simple words." for each of
  ``--themes`` with ``--per-theme`` sampling seeds (temperature 0.8, top-k 40, ``--smollm2-tokens`` new tokens);
* ``tiny-S``: the tiny byte-level Transformer trained on TinyStories (``--tiny``, a run directory of
  `mechlab train` with checkpoints every 100 steps) at each step S of ``--steps``, continuing "Once upon a time"
  (``--per-writer`` seeds, ``--tiny-tokens`` bytes);
* ``gpt``: ``--per-writer`` human-prompted GPT-3.5/4 stories of the TinyStories sample (drawn with seed 0).
Every story is cut to its first ``--chars`` characters (at a word boundary) so that length alone does not tell the
writers apart. The stories are written once to experiments/results/llm_stories.jsonl (reused when present with the
same settings; `mechlab map experiments/results/llm_stories.jsonl` maps them).

Measured, for the minilm and tfidf embedders over 5 seeds of the default map: ARI and AMI of the clusters against
the writer (noise dropped / as a cluster), noise share, k-NN (k = 10) writer accuracy in the embedding and the 2-D
picture, the writers' shares in each cluster (seed 0), and for the SmolLM2 stories alone the AMI of the clusters
against the theme. Mean ± sample standard deviation over seeds.

    OMP_NUM_THREADS=1 python experiments/llm_stories.py [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

from mechlab.maps import MapConfig, embed, run_map, seed_sweep, tinystories_documents
from mechlab.maps.documents import Document
from mechlab.utils import atomic_path, machine_description, save_figure, write_json_atomic

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
THEMES = ["a lost puppy", "a rainy day", "a birthday party", "a brave little knight", "the sea and a fish",
          "a dragon who is afraid", "sharing toys", "a trip to space", "a garden of flowers", "a snowman"]
QUICK = dict(themes=THEMES[:3], per_theme=1, per_writer=4, steps=[100, 600], seeds=[0, 1], smollm2_tokens=40,
             tiny_tokens=120, min_cluster_size=3, n_neighbors=5)


def parse_quick(build_parser, quick_defaults, argv):
    spec = importlib.util.spec_from_file_location("_mechlab_benchmarks_common", ROOT.parent / "benchmarks" / "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    return common.parse_quick(build_parser, quick_defaults, argv, ("cache",))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smollm2", default="runs/maps/smollm2")
    ap.add_argument("--tiny", default="runs/maps/transformer-tiny")
    ap.add_argument("--themes", nargs="+", default=THEMES)
    ap.add_argument("--per-theme", type=int, default=3)
    ap.add_argument("--per-writer", type=int, default=40, help="stories per tiny checkpoint and from the GPT sample")
    ap.add_argument("--steps", type=int, nargs="+", default=[100, 300, 600])
    ap.add_argument("--smollm2-tokens", type=int, default=100)
    ap.add_argument("--tiny-tokens", type=int, default=500)
    ap.add_argument("--chars", type=int, default=400)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--min-cluster-size", type=int, default=10)
    ap.add_argument("--n-neighbors", type=int, default=15)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--quick", action="store_true")
    return ap


def cut(text: str, chars: int) -> str:
    text = " ".join(text.split())
    if len(text) <= chars:
        return text
    return text[:chars].rsplit(" ", 1)[0]


def write_stories(args, path: Path) -> list[dict]:
    from tqdm import tqdm

    from mechlab.checkpoint import load_checkpoint
    from mechlab.generation import Sampling, generate_text, render_chat

    settings = {k: getattr(args, k) for k in ("themes", "per_theme", "per_writer", "steps", "smollm2_tokens",
                                               "tiny_tokens", "chars")}
    if path.is_file():
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if rows and rows[0].get("settings") == settings:
            print(f"reusing {len(rows)} stories from {path}")
            return rows
    rows = []
    t0 = time.perf_counter()
    ck = load_checkpoint(args.smollm2)
    jobs = [(t, s) for t in args.themes for s in range(args.per_theme)]
    for theme, s in tqdm(jobs, desc="smollm2 stories"):
        prompt = render_chat(ck.meta["chat_template"], [
            {"role": "user", "content": f"Write a short story for a small child about {theme}. Use simple words."}])
        text = generate_text(ck, prompt, Sampling(args.smollm2_tokens, 0.8, 40, s)).strip()
        rows.append({"text": cut(text, args.chars), "writer": "smollm2", "theme": theme, "seed": s})
    smollm2_seconds = time.perf_counter() - t0
    del ck
    run = Path(args.tiny)
    for step in args.steps:
        ck = load_checkpoint(run / "checkpoints" / f"step-{step:07d}")
        for s in tqdm(range(args.per_writer), desc=f"tiny-{step} stories"):
            text = "Once upon a time" + generate_text(ck, "Once upon a time", Sampling(args.tiny_tokens, 0.8, 40, s))
            rows.append({"text": cut(text, args.chars), "writer": f"tiny-{step}", "theme": "", "seed": s})
    gpt = tinystories_documents()
    pick = sorted(np.random.default_rng(0).choice(len(gpt), size=args.per_writer, replace=False))
    rows += [{"text": cut(gpt[i].text, args.chars), "writer": "gpt", "theme": "", "seed": int(i)} for i in pick]
    rows[0]["settings"] = settings
    rows[0]["smollm2_seconds"] = smollm2_seconds
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps({k: v for k, v in r.items()}) + "\n" for r in rows))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap, args, quick = parse_quick(build_parser, QUICK, argv)
    if args.per_writer < 2 or args.per_theme < 1 or len(set(args.seeds)) < 2:
        ap.error("--per-writer >= 2, --per-theme >= 1 and two distinct --seeds are needed")
    name = "llm_stories.quick" if quick else "llm_stories"
    rows = write_stories(args, RESULTS / f"{name}.jsonl")
    texts = [r["text"] for r in rows]
    writers = [r["writer"] for r in rows]
    cfg = MapConfig(min_cluster_size=args.min_cluster_size, n_neighbors=args.n_neighbors)
    out = {"n_stories": len(rows), "writers": {w: writers.count(w) for w in sorted(set(writers))}, "embedders": {}}
    for emb in ("minilm", "tfidf"):
        z, info = embed(texts, emb, args.cache)
        sweep, pic = seed_sweep(texts, z, args.seeds, cfg, {"writer": writers}, picture_seed=args.seeds[0])
        comp = {}
        for c in sorted(set(pic.labels.tolist())):
            ws = [w for w, lab in zip(writers, pic.labels) if lab == c]
            comp[str(c)] = {w: ws.count(w) for w in sorted(set(ws))}
        sm = [i for i, w in enumerate(writers) if w == "smollm2"]
        theme_ami = []
        if len({rows[i]["theme"] for i in sm}) > 1 and len(sm) >= 20:
            from dataclasses import replace

            from sklearn.metrics import adjusted_mutual_info_score

            from mechlab.maps import build_map

            for s in args.seeds:
                small = replace(cfg, min_cluster_size=max(2, min(cfg.min_cluster_size, len(sm) // 8)),
                                n_neighbors=min(cfg.n_neighbors, len(sm) // 3), seed=s)
                r = build_map([texts[i] for i in sm], z[sm], small, picture=False)
                theme_ami.append(float(adjusted_mutual_info_score([rows[i]["theme"] for i in sm], r.labels)))
        sweep["cluster_writers_seed0"] = comp
        # which pairs of writers the embedding tells apart: 10-NN accuracy among the two writers' stories only
        from itertools import combinations

        from mechlab.maps import knn_accuracy

        names = sorted(set(writers))
        sweep["pairwise_knn"] = {}
        for a, b in combinations(names, 2):
            idx = [i for i, w in enumerate(writers) if w in (a, b)]
            sweep["pairwise_knn"][f"{a} vs {b}"] = knn_accuracy(z[idx], [writers[i] for i in idx])
        sweep["smollm2_theme_ami"] = {"mean": float(np.mean(theme_ami)) if theme_ami else 0.0,
                                      "std": float(np.std(theme_ami, ddof=1)) if len(theme_ami) > 1 else 0.0,
                                      "per_seed": theme_ami}
        sweep["embedding"] = {k: v for k, v in info.items() if k != "cache_file"}
        out["embedders"][emb] = sweep
        w = sweep["summary"]["writer"]
        print(f"{emb}: writer ARI {w['ari_noise_dropped']['mean']:.3f} (noise dropped), AMI "
              f"{w['ami_noise_dropped']['mean']:.3f}; kNN {w['knn_embedding']['mean']:.3f}; noise "
              f"{sweep['summary']['noise_share']['mean']:.3f}", flush=True)
    # the interactive page of the writers' map (not committed: plotly.js makes it 5 MB)
    docs = [Document(r["text"], {"writer": r["writer"], "theme": r["theme"]}) for r in rows]
    made = run_map(docs, "minilm", Path("runs/maps/llm_stories_map"), cfg, cache=args.cache, progress=False,
                   command="python experiments/llm_stories.py")
    out.update(settings={k: v for k, v in vars(args).items() if k != "cache"}, quick=quick,
               smollm2_generation_seconds=rows[0].get("smollm2_seconds"), machine=machine_description(),
               command="OMP_NUM_THREADS=1 python " + " ".join(["experiments/llm_stories.py", *sys.argv[1:]]))
    write_json_atomic(RESULTS / f"{name}.json", out)
    plot(made.result, writers, out, RESULTS / f"{name}.png")
    print(f"wrote {RESULTS / name}.json, .jsonl, .png; interactive map: runs/maps/llm_stories_map/map.html")


def plot(result, writers: list[str], out: dict, path: Path) -> None:
    """Two panels of the same 2-D MiniLM map (seed 0): coloured by cluster, and by writer."""

    from matplotlib.figure import Figure

    from mechlab.maps.render import _palette, draw_map

    fig = Figure(figsize=(13, 6))
    s = out["embedders"]["minilm"]["summary"]
    draw_map(fig.add_subplot(1, 2, 1), result, f"clusters (MiniLM): {result.n_clusters}, noise "
                                               f"{100 * result.noise_share:.0f}%")
    ax = fig.add_subplot(1, 2, 2)
    names = sorted(set(writers))
    for colour, w in zip(_palette(len(names)), names):
        idx = [i for i, x in enumerate(writers) if x == w]
        ax.scatter(result.coords[idx, 0], result.coords[idx, 1], s=8, c=colour, label=w, linewidths=0)
    ax.legend(fontsize=8, markerscale=2)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"writers: AMI {s['writer']['ami_noise_cluster']['mean']:.2f}, 10-NN accuracy "
                 f"{s['writer']['knn_embedding']['mean']:.2f} (chance {s['writer']['chance']['mean']:.2f})", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, format="png", dpi=110)


if __name__ == "__main__":
    main()
