"""Render the claim pages: a static HTML site, one page per seed paper in the reading structure of a pith page
(pith, core claim, load-bearing premise, what would settle it) with MEASURED verdicts, and an index with the
citation graph of the reading list (docs/claims.md). The pages are Jinja templates (package data under
mechlab/claims/templates/, autoescaped); this module gathers what they show."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import jinja2

from mechlab.claims.registry import CLAIMS, INCONCLUSIVE, PAPERS, REFUTED, SUPPORTED, UNMEASURED, Measurement, has_page

COLORS = {SUPPORTED: "#1a7f37", REFUTED: "#cf222e", INCONCLUSIVE: "#9a6700", UNMEASURED: "#6e7781"}

# where each paper sits in the citation graph (SVG user units): companions on top, seeds in the middle, learning
# mechanics below them, the newer seeds at the bottom
GRAPH_POSITIONS = {"mhc": (120, 50), "isodepth": (360, 50), "qtip": (620, 50),
                   "hyperloop": (200, 175), "bcjr-qat": (620, 175), "delegate52": (860, 175),
                   "learning-mechanics": (480, 300),
                   "pmnet": (160, 425), "perturbation-probing": (480, 425), "representation-gap": (800, 425)}


def _environment() -> jinja2.Environment:
    """The template environment: templates from the package, HTML autoescaping on, undefined names an error."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("mechlab.claims", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.globals["colors"] = COLORS
    return env


def overall(verdicts: list[str]) -> str:
    """One verdict for a paper from its claims' verdicts: supported if every measured claim is, refuted if any is,
    not yet measured if none is measured, inconclusive otherwise."""
    measured = [v for v in verdicts if v != UNMEASURED]
    if not measured:
        return UNMEASURED
    if all(v == SUPPORTED for v in measured):
        return SUPPORTED
    if any(v == REFUTED for v in measured):
        return REFUTED
    return INCONCLUSIVE


def citation_graph() -> dict[str, list[dict]]:
    """The reading list as a small layered graph for templates/citation_graph.svg: ``edges`` (one per link of a paper,
    labelled with its relation, dashed for "beside", ending 22 units short of the target box) and ``nodes`` (a box
    per paper with its title, cut to 35 characters, and arXiv id; seeds shaded, linked where the paper has a page)."""
    edges = []
    for p in PAPERS.values():
        for rel, other in p.links:
            (x1, y1), (x2, y2) = GRAPH_POSITIONS[p.id], GRAPH_POSITIONS[other]
            edges.append(dict(x1=x1, y1=y1, x2=x2, y2=y2 + (22 if y2 < y1 else -22), relation=rel,
                              dashed=rel == "beside", label_x=(x1 + x2) / 2 + 4, label_y=(y1 + y2) / 2))
    nodes = [dict(id=pid, x=x, y=y, arxiv=PAPERS[pid].arxiv, link=has_page(PAPERS[pid]),
                  fill="#ddf4ff" if PAPERS[pid].seed else "#f6f8fa",
                  label=PAPERS[pid].title if len(PAPERS[pid].title) < 36 else PAPERS[pid].title[:33] + "…")
             for pid, (x, y) in GRAPH_POSITIONS.items()]
    return {"edges": edges, "nodes": nodes}


def render_report(out: str | Path, root: str | Path = ".", measured: dict[str, tuple[Measurement, list[Path]]] | None = None
                  ) -> Path:
    """Write the site to ``out`` (index.html and one page per seed paper, and per companion paper that a claim of
    this project measures, e.g. the iso-depth law), reading results under ``root``;
    ``measured`` gives claims measured just now (a measurement and its plot files), overriding the files.
    Returns the path of index.html."""
    out, root = Path(out), Path(root)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    measured = measured or {}
    results = {c.name: measured[c.name][0] if c.name in measured else c.measure(root) for c in CLAIMS}
    env = _environment()
    common = {"rendered": f"{datetime.now(UTC):%Y-%m-%d %H:%M}"}
    index_rows = []
    for p in (p for p in PAPERS.values() if has_page(p)):
        claims = [c for c in CLAIMS if c.paper == p.id]
        sections = []
        for c in claims:
            plots = []
            if results[c.name].verdict != UNMEASURED:
                files = measured[c.name][1] if c.name in measured else [root / f for f in c.plots]
                for plot in (Path(f) for f in files):
                    if plot.is_file():
                        shutil.copy2(plot, out / "plots" / plot.name)
                        plots.append(f"plots/{plot.name}")
            sections.append((c, results[c.name], plots))
        verdict = overall([results[c.name].verdict for c in claims])
        page = env.get_template("paper.html").render(title=p.title, paper=p, verdict=verdict, claims=sections, **common)
        (out / f"{p.id}.html").write_text(page, encoding="utf-8")
        counts = ", ".join(f"{sum(results[c.name].verdict == v for c in claims)} {v}" for v in
                           (SUPPORTED, REFUTED, INCONCLUSIVE, UNMEASURED) if any(results[c.name].verdict == v for c in claims))
        index_rows.append({"paper": p, "verdict": verdict, "counts": counts})
    index = env.get_template("index.html").render(title="mechlab: measured claims", rows=index_rows,
                                                  graph=citation_graph(), **common)
    (out / "index.html").write_text(index, encoding="utf-8")
    return out / "index.html"
