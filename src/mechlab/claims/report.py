"""Render the claim pages: a static HTML site, one page per seed paper in the reading structure of
papers/pith-pages.md (pith, core claim, load-bearing premise, what would settle it) with MEASURED verdicts, and an
index with the citation graph of the reading list."""

from __future__ import annotations

import html
import shutil
from datetime import datetime, timezone
from pathlib import Path

from mechlab.claims.registry import (CLAIMS, INCONCLUSIVE, PAPERS, REFUTED, SUPPORTED, UNMEASURED, Claim, Measurement,
                                     has_page)

COLORS = {SUPPORTED: "#1a7f37", REFUTED: "#cf222e", INCONCLUSIVE: "#9a6700", UNMEASURED: "#6e7781"}

CSS = """
body { font: 16px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #1f2328; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; }
.meta { color: #57606a; } .pith { font-size: 1.15rem; font-style: italic; }
.verdict { display: inline-block; padding: .1rem .55rem; border-radius: 1rem; color: white; font-weight: 600;
  font-size: .85rem; text-transform: uppercase; letter-spacing: .03em; white-space: nowrap; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; } td, th { border: 1px solid #d0d7de; padding: .3rem .5rem;
  text-align: left; vertical-align: top; } th { background: #f6f8fa; }
code { background: #f6f8fa; padding: .1rem .3rem; border-radius: 4px; font-size: .9em; }
.claim { border: 1px solid #d0d7de; border-radius: 8px; padding: .6rem 1rem; margin: 1rem 0; }
img { max-width: 100%; border: 1px solid #d0d7de; border-radius: 6px; }
dt { font-weight: 600; margin-top: .6rem; } dd { margin-left: 1rem; }
"""


def badge(verdict: str) -> str:
    return f'<span class="verdict" style="background:{COLORS[verdict]}">{html.escape(verdict)}</span>'


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{CSS}</style></head>"
            f"<body>{body}<p class=meta>Rendered {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by "
            f"<code>mechlab claims report</code>.</p></body></html>")


def _claim_html(c: Claim, m: Measurement, plots: list[str]) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in m.rows)
    measured = f"<table><tr><th>quantity</th><th>measured</th></tr>{rows}</table>" if rows else ""
    imgs = "".join(f'<p><img src="{html.escape(p)}" alt="{html.escape(c.name)} plot"></p>' for p in plots)
    cmd = f"<dt>Reproduce</dt><dd><code>{html.escape(c.command)}</code></dd>" if c.command else ""
    scale = f"<dt>Scale</dt><dd>{html.escape(c.scale)}</dd>" if c.scale else ""
    return (f'<div class="claim" id="{c.name}"><h3>{html.escape(c.statement)} {badge(m.verdict)}</h3><dl>'
            f"<dt>Prediction</dt><dd>{html.escape(c.prediction)}</dd><dt>Tolerance</dt><dd>{html.escape(c.tolerance)}</dd>"
            f"{scale}<dt>Verdict</dt><dd>{badge(m.verdict)} {html.escape(m.reason)}</dd>{cmd}</dl>{measured}{imgs}</div>")


def overall(verdicts: list[str]) -> str:
    measured = [v for v in verdicts if v != UNMEASURED]
    if not measured:
        return UNMEASURED
    if all(v == SUPPORTED for v in measured):
        return SUPPORTED
    if any(v == REFUTED for v in measured):
        return REFUTED
    return INCONCLUSIVE


def citation_graph_svg() -> str:
    """The reading list as a small layered graph: companions on top, seeds below, learning mechanics at the
    bottom (every arrow labelled with its relation)."""
    pos = {"mhc": (120, 50), "isodepth": (360, 50), "qtip": (620, 50),
           "hyperloop": (200, 175), "bcjr-qat": (620, 175), "delegate52": (860, 175),
           "learning-mechanics": (480, 300),
           "pmnet": (160, 425), "perturbation-probing": (480, 425), "representation-gap": (800, 425)}
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 990 470" width="100%" role="img" '
             'aria-label="citation graph of the seed papers"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" '
             'refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#57606a"/>'
             "</marker></defs>"]
    for p in PAPERS.values():
        for rel, other in p.links:
            (x1, y1), (x2, y2) = pos[p.id], pos[other]
            dash = ' stroke-dasharray="5,4"' if rel == "beside" else ""
            parts.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2 + (22 if y2 < y1 else -22)}" stroke="#8c959f"'
                         f'{dash} marker-end="url(#arrow)"/><text x="{(x1 + x2) / 2 + 4}" y="{(y1 + y2) / 2}" '
                         f'font-size="11" fill="#57606a">{html.escape(rel)}</text>')
    for pid, (x, y) in pos.items():
        p = PAPERS[pid]
        fill = "#ddf4ff" if p.seed else "#f6f8fa"
        label = html.escape(p.title if len(p.title) < 36 else p.title[:33] + "…")
        node = (f'<rect x="{x - 115}" y="{y - 22}" width="230" height="44" rx="8" fill="{fill}" stroke="#54aeff"/>'
                f'<text x="{x}" y="{y - 3}" text-anchor="middle" font-size="11">{label}</text>'
                f'<text x="{x}" y="{y + 13}" text-anchor="middle" font-size="10" fill="#57606a">arXiv {p.arxiv}</text>')
        parts.append(f'<a href="{pid}.html">{node}</a>' if has_page(p) else node)
    parts.append("</svg>")
    return "".join(parts)


def render_report(out: str | Path, root: str | Path = ".", measured: dict[str, tuple[Measurement, list[Path]]] | None = None
                  ) -> Path:
    """Write the site to ``out`` (index.html and one page per seed paper, and per companion paper that a claim of
    this project measures, e.g. the iso-depth law), reading results under ``root``;
    ``measured`` gives claims measured just now (a measurement and its plot files), overriding the files."""
    out, root = Path(out), Path(root)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    measured = measured or {}
    results = {c.name: measured[c.name][0] if c.name in measured else c.measure(root) for c in CLAIMS}
    index_rows = []
    for p in (p for p in PAPERS.values() if has_page(p)):
        claims = [c for c in CLAIMS if c.paper == p.id]
        sections = []
        for c in claims:
            plots = []
            if results[c.name].verdict != UNMEASURED:
                files = measured[c.name][1] if c.name in measured else [root / p for p in c.plots]
                for plot in (Path(f) for f in files):
                    if plot.is_file():
                        shutil.copy2(plot, out / "plots" / plot.name)
                        plots.append(f"plots/{plot.name}")
            sections.append(_claim_html(c, results[c.name], plots))
        verdict = overall([results[c.name].verdict for c in claims])
        body = (f'<p><a href="index.html">← all papers</a></p><h1>{html.escape(p.title)}</h1>'
                f'<p class=meta>arXiv {p.arxiv} · overall {badge(verdict)}</p>'
                f"<p class=pith>{html.escape(p.pith)}</p><h2>Core claim</h2><p>{html.escape(p.core_claim)}</p>"
                f"<h2>Load-bearing premise</h2><p>{html.escape(p.premise)}</p>"
                f"<h2>What would settle it</h2><p>{html.escape(p.settle)}</p>"
                f"<h2>Measured here</h2>{''.join(sections)}")
        (out / f"{p.id}.html").write_text(_page(p.title, body), encoding="utf-8")
        counts = ", ".join(f"{sum(results[c.name].verdict == v for c in claims)} {v}" for v in
                           (SUPPORTED, REFUTED, INCONCLUSIVE, UNMEASURED) if any(results[c.name].verdict == v for c in claims))
        index_rows.append(f'<tr><td><a href="{p.id}.html">{html.escape(p.title)}</a><br><span class=meta>'
                          f"arXiv {p.arxiv}</span></td><td>{badge(verdict)}</td><td>{counts}</td></tr>")
    body = ("<h1>mechlab: measured claims</h1><p class=meta>Every claim of the seed papers as a falsifiable prediction, "
            "checked by a committed experiment at the scale stated on its page.</p>"
            f"<h2>Papers</h2><table><tr><th>paper</th><th>overall</th><th>claims</th></tr>{''.join(index_rows)}</table>"
            f"<h2>Citation graph</h2>{citation_graph_svg()}")
    (out / "index.html").write_text(_page("mechlab: measured claims", body), encoding="utf-8")
    return out / "index.html"
