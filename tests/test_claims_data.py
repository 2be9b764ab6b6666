"""The claims' prose as data files (claims/papers/*.yaml) and the pages' templates: every claim and paper has its
prose, no file holds prose for a claim that does not exist, and what the pages print is escaped."""

import html
from importlib import resources

import pytest
import yaml

from mechlab.claims import CLAIMS, PAPERS, registry, render_report
from mechlab.claims.registry import SUPPORTED, Measurement

PROSE = resources.files("mechlab.claims") / "papers"


def test_every_paper_and_claim_reads_its_prose_from_its_file():
    files = sorted(p.name for p in PROSE.iterdir() if p.name.endswith(".yaml"))
    assert files == sorted(f"{pid}.yaml" for pid in PAPERS)
    for pid, paper in PAPERS.items():
        data = yaml.safe_load((PROSE / f"{pid}.yaml").read_text(encoding="utf-8"))
        assert paper.title == data["title"] and paper.pith == data.get("pith", "")
        named = set(data.get("claims", {}))
        assert named == {c.name for c in CLAIMS if c.paper == pid}, pid  # no stale prose, none missing
        for c in (c for c in CLAIMS if c.paper == pid):
            assert (c.statement, c.prediction, c.tolerance) == tuple(data["claims"][c.name][k] for k in
                                                                      ("statement", "prediction", "tolerance"))


def test_a_claim_without_prose_is_one_named_error():
    with pytest.raises(ValueError, match=r"claims/papers/hyperloop\.yaml: no complete prose for claim 'no-such'"):
        registry._claim("no-such", "hyperloop")
    with pytest.raises(ValueError, match=r"claims/papers/no-such-paper\.yaml"):
        registry._paper("no-such-paper", "0000.00000")


def test_the_pages_escape_what_they_print(tmp_path):
    hostile = "<script>alert(1)</script> & \"quoted\""
    measured = {"hyperloop-quality": (Measurement(SUPPORTED, [(hostile, "1 < 2")], reason=hostile), [])}
    index = render_report(tmp_path / "site", tmp_path, measured=measured)
    page = (index.parent / "hyperloop.html").read_text(encoding="utf-8")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp;" in page
    assert html.unescape(page).count(hostile) == 2  # the quantity and the reason, as given
    assert "<td>1 &lt; 2</td>" in page


def test_a_results_path_that_is_a_folder_reads_inconclusive(tmp_path):
    """A results path that exists but is a folder is not "not yet measured" (something is there): inconclusive,
    naming the path."""
    claim = next(c for c in CLAIMS if c.evaluate is not None and c.results)
    for r in claim.results:
        (tmp_path / r).mkdir(parents=True)
    m = claim.measure(tmp_path)
    assert m.verdict == registry.INCONCLUSIVE and claim.results[0] in m.reason and "folder" in m.reason
