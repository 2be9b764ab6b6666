"""Maps of texts and hidden states (docs/maps.md): documents -> embeddings -> UMAP -> HDBSCAN -> cluster
words by class-based TF-IDF -> an interactive HTML map, a PNG and the table of points, with measured quality.

:func:`run_map` is the one entry point (``mechlab map`` calls it); the pieces are :mod:`mechlab.maps.documents`,
:mod:`mechlab.maps.embed`, :mod:`mechlab.maps.pipeline`, :mod:`mechlab.maps.quality` and :mod:`mechlab.maps.render`.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from mechlab.maps.documents import (
    Document,
    gutenberg_documents,
    load_documents,
    tinystories_documents,
    weak_story_labels,
)
from mechlab.maps.embed import (
    Embedder,
    embed,
    hidden_state_embed,
    parse_embedder,
    set_numba_cache,
    tfidf_svd,
)
from mechlab.maps.pipeline import (
    MapConfig,
    MapResult,
    build_map,
    class_tfidf,
    hdbscan_cluster,
    umap_reduce,
)
from mechlab.maps.quality import (
    bootstrap_ci,
    dbcv,
    knn_accuracy,
    label_agreement,
    map_quality,
    npmi_coherence,
    seed_stability,
    seed_sweep,
    topic_diversity,
)
from mechlab.maps.render import write_html, write_png, write_table

log = logging.getLogger(__name__)

__all__ = ["Document", "bootstrap_ci", "Embedder", "MapConfig", "MapOutput", "MapResult", "build_map", "class_tfidf",
           "dbcv", "embed",
           "gutenberg_documents", "hdbscan_cluster", "hidden_state_embed", "knn_accuracy", "label_agreement",
           "load_documents", "map_quality", "npmi_coherence", "parse_embedder", "run_map", "seed_stability",
           "seed_sweep", "set_numba_cache", "tfidf_svd", "tinystories_documents", "topic_diversity", "umap_reduce",
           "weak_story_labels", "write_html", "write_png", "write_table"]


@dataclass
class MapOutput:
    """What :func:`run_map` made: the result, the documents, the embedding info, the quality dict and the files."""

    result: MapResult
    documents: list[Document]
    embedding: dict
    quality: dict
    files: dict[str, Path]


def run_map(source: str | list[Document], embedder: str = "minilm", out: str | Path = "runs/map",
            config: MapConfig = MapConfig(), max_docs: int | None = None, cache: str | Path | None = None,
            max_tokens: int = 256, data_dir: str | Path | None = None, progress: bool = True,
            command: str | None = None) -> MapOutput:
    """Map ``source`` (a corpus name, a path, or a list of Documents; see :func:`load_documents`) with
    ``embedder`` into the directory ``out``: map.html, map.png, points.csv, map.json (with the quality measures,
    against every label the documents carry, the seeds, timings and the command). ``max_docs`` draws that many
    documents with ``config.seed``. Errors: ConfigError / DataError with one-line messages for bad input."""
    from mechlab.errors import ConfigError
    from mechlab.utils import machine_description

    set_numba_cache(cache)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {out} exists and is not a directory: give a directory for the map's files")
    spec = parse_embedder(embedder, max_tokens=max_tokens)
    docs = source if isinstance(source, list) else load_documents(source, max_docs, config.seed, data_dir)
    config.validate(len(docs))
    texts = [d.text for d in docs]
    z, info = embed(texts, spec, cache, seed=config.seed, progress=progress)
    result = build_map(texts, z, config)
    names = sorted({k for d in docs for k in d.labels})
    labels = {k: [d.labels.get(k, "") for d in docs] for k in names}
    quality = map_quality(texts, z, result, {k: v for k, v in labels.items() if len(set(v)) > 1})
    title = f"{source if isinstance(source, str) else 'documents'} · {embedder} · {len(docs)} documents"
    meta = {"source": source if isinstance(source, str) else "documents", "embedder": embedder,
            "n_documents": len(docs),
            "embedding": info, "timings": result.timings, "quality": quality, "machine": machine_description(),
            "command": command or " ".join(sys.argv)}
    out.mkdir(parents=True, exist_ok=True)
    files = {"html": write_html(out / "map.html", texts, result, title, labels),
             "png": write_png(out / "map.png", result, title)}
    files["csv"], files["json"] = write_table(out, texts, result, meta, labels)
    return MapOutput(result, docs, info, quality, files)
