"""What a user looks at: an interactive HTML map (plotly, self-contained: plotly.js is inlined so the file opens
offline), a static PNG (matplotlib's Figure API) and the table of points (JSON and CSV).

The HTML draws one SVG scatter trace per cluster (so every point is an element of the page), named in the legend
by its id and top three words, with the cluster's words as a label at its median point; hovering a point shows its
cluster and the first lines of its document. Noise points are grey and listed last.
"""

from __future__ import annotations

import csv
import html
import io
import textwrap
from pathlib import Path

import numpy as np

from mechlab.utils import atomic_path, save_figure, write_json_atomic

NOISE_COLOUR = "#bbbbbb"


def cluster_name(c: int, words: dict[int, list[tuple[str, float]]], k: int = 3) -> str:
    """"3: dog, ball, park" for cluster 3; "noise" for −1."""
    if c == -1:
        return "noise"
    return f"{c}: " + ", ".join(w for w, _ in words.get(c, [])[:k])


def _palette(n: int) -> list[str]:
    from matplotlib import colormaps

    cmap = colormaps["tab20"] if n > 10 else colormaps["tab10"]
    return ["#" + "".join(f"{int(255 * v):02x}" for v in cmap(i % cmap.N)[:3]) for i in range(n)]


def _order(labels: np.ndarray) -> list[int]:
    return sorted(set(labels.tolist()) - {-1}) + ([-1] if (labels == -1).any() else [])


def _hover(text: str, width: int = 80, lines: int = 4) -> str:
    wrapped = textwrap.wrap(text, width)[:lines]
    more = "…" if len(textwrap.wrap(text, width)) > lines else ""
    return "<br>".join(html.escape(w) for w in wrapped) + more


def write_html(path: str | Path, texts: list[str], result, title: str = "map",
               extra: dict[str, list] | None = None) -> Path:
    """A self-contained interactive HTML map of ``result`` (a MapResult) at ``path`` (written atomically).
    ``extra`` {name: per-document values} adds lines to each point's hover text (e.g. its label)."""
    import plotly.graph_objects as go

    labels, xy = result.labels, result.coords
    clusters = _order(labels)
    colours = _palette(max(len(clusters), 1))
    fig = go.Figure()
    for i, c in enumerate(clusters):
        idx = np.flatnonzero(labels == c)
        hover = []
        for j in idx:
            head = f"<b>{html.escape(cluster_name(c, result.words))}</b>"
            info = "".join(f"<br>{html.escape(k)}: {html.escape(str(v[j]))}" for k, v in (extra or {}).items())
            hover.append(f"{head}{info}<br>{_hover(texts[j])}")
        fig.add_trace(go.Scatter(x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=cluster_name(c, result.words),
                                 hovertext=hover, hoverinfo="text",
                                 marker=dict(size=5 if c != -1 else 4, color=NOISE_COLOUR if c == -1 else colours[i],
                                             opacity=0.5 if c == -1 else 0.85)))
    for c in clusters:
        if c == -1:
            continue
        idx = labels == c
        mx, my = np.median(xy[idx, 0]), np.median(xy[idx, 1])
        fig.add_annotation(x=float(mx), y=float(my), text=html.escape(cluster_name(c, result.words)), showarrow=False,
                           font=dict(size=11), bgcolor="rgba(255,255,255,0.7)")
    fig.update_layout(title=title, template="plotly_white", legend_title_text="clusters (id: top words)",
                      xaxis=dict(showticklabels=False, title="UMAP 1"), yaxis=dict(showticklabels=False, title="UMAP 2"),
                      width=1100, height=800)
    page = fig.to_html(full_html=True, include_plotlyjs=True, div_id="map")
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(path)


def draw_map(ax, result, title: str = "", label_clusters: bool = True, max_labels: int = 20) -> None:
    """Draw ``result``'s 2-D picture on a matplotlib Axes: clusters coloured, noise grey, words at the medians
    of the ``max_labels`` largest clusters."""
    labels, xy = result.labels, result.coords
    clusters = _order(labels)
    colours = _palette(max(len(clusters), 1))
    for i, c in enumerate(clusters):
        idx = labels == c
        ax.scatter(xy[idx, 0], xy[idx, 1], s=3 if c == -1 else 5, c=NOISE_COLOUR if c == -1 else colours[i],
                   alpha=0.5 if c == -1 else 0.8, linewidths=0)
    if label_clusters:
        sizes = sorted(((int((labels == c).sum()), c) for c in clusters if c != -1), reverse=True)[:max_labels]
        for _, c in sizes:
            idx = labels == c
            ax.text(float(np.median(xy[idx, 0])), float(np.median(xy[idx, 1])), cluster_name(c, result.words),
                    fontsize=6, ha="center", va="center", bbox=dict(facecolor="white", alpha=0.6, lw=0, pad=1))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def write_png(path: str | Path, result, title: str = "map") -> Path:
    """The static picture of ``result`` as a PNG (150 dpi), written atomically."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 7))
    draw_map(fig.add_subplot(1, 1, 1), result, f"{title}: {result.n_clusters} clusters, "
                                               f"{100 * result.noise_share:.1f}% noise")
    fig.tight_layout()
    return save_figure(fig, path, format="png", dpi=150)


def write_table(directory: str | Path, texts: list[str], result, meta: dict,
                extra: dict[str, list] | None = None) -> tuple[Path, Path]:
    """``points.csv`` (index, x, y, cluster, probability, labels..., first 200 characters) and ``map.json``
    (``meta``, the config, clusters with size and words, and every point) under ``directory``."""
    directory = Path(directory)
    extra = extra or {}
    rows = []
    for i in range(len(texts)):
        rows.append({"index": i, "x": float(result.coords[i, 0]), "y": float(result.coords[i, 1]),
                     "cluster": int(result.labels[i]), "probability": float(result.probabilities[i]),
                     **{k: str(v[i]) for k, v in extra.items()}, "text": texts[i][:200]})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    with atomic_path(directory / "points.csv") as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    clusters = [{"id": int(c), "size": int((result.labels == c).sum()),
                 "words": [[w_, round(s, 6)] for w_, s in result.words.get(c, [])] if c != -1 else []}
                for c in _order(result.labels)]
    write_json_atomic(directory / "map.json", {**meta, "config": result.config.to_dict(), "clusters": clusters,
                                               "n_clusters": result.n_clusters, "noise_share": result.noise_share,
                                               "points": rows})
    return directory / "points.csv", directory / "map.json"
