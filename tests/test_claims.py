"""Claims as data, verdict rules, and the rendered pages (checked in headless Chromium)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from mechlab.claims import CLAIMS, PAPERS, render_report
from mechlab.claims.registry import INCONCLUSIVE, REFUTED, SUPPORTED, UNMEASURED, _bcjr_ladder, _isodepth_phi, _mup_transfer, claim

ROOT = Path(__file__).resolve().parents[1]


def test_registry_is_consistent():
    names = [c.name for c in CLAIMS]
    assert len(names) == len(set(names))
    assert all(c.paper in PAPERS and PAPERS[c.paper].seed for c in CLAIMS)
    assert all(any(c.paper == p.id for c in CLAIMS) for p in PAPERS.values() if p.seed)
    assert all(other in PAPERS for p in PAPERS.values() for _, other in p.links)
    assert all(c.command for c in CLAIMS if c.evaluate is not None)


def test_verdict_rule_of_the_qat_ladder():
    def summary(bcjr, ste):
        return [{"val_bpb": {"transformer": {"bcjr_minus_ptq": {"mean": sum(bcjr) / 3, "std": 0.0, "per_seed": bcjr},
                                             "ste_minus_ptq": {"mean": sum(ste) / 3, "std": 0.0, "per_seed": ste}}}}]
    assert _bcjr_ladder(summary([-1e-3] * 3, [1e-3] * 3)).verdict == SUPPORTED
    assert _bcjr_ladder(summary([-1e-3] * 3, [-1e-4] * 3)).verdict == INCONCLUSIVE
    assert _bcjr_ladder(summary([1e-3] * 3, [1e-3] * 3)).verdict == "refuted"


def test_verdict_rule_of_mu_transfer():
    def result(sp, mup):
        curves = {p: {str(w): {"best_lr": lr} for w, lr in zip((64, 128, 256), best)} for p, best in (("sp", sp), ("mup", mup))}
        spread = {p: __import__("math").log10(max(b) / min(b)) for p, b in (("sp", sp), ("mup", mup))}
        return [{"settings": {"lrs": [1e-3, 3e-3, 1e-2, 3e-2]}, "curves": curves, "best_lr_spread_decades": spread}]
    assert _mup_transfer(result([1e-2, 3e-3, 1e-3], [3e-3, 3e-3, 1e-2])).verdict == SUPPORTED
    assert _mup_transfer(result([1e-2, 3e-3, 1e-3], [3e-2, 3e-3, 1e-3])).verdict == REFUTED
    assert _mup_transfer(result([3e-3] * 3, [3e-3] * 3)).verdict == INCONCLUSIVE


def test_verdict_rule_of_isodepth_phi():
    def result(looped, hyper):
        fit = lambda phi, lo, hi: {"params": {"phi": phi}, "ci": {"phi": [lo, hi]}, "r2": 0.99, "n": 18,  # noqa: E731
                                   "objective": 1.0, "restricted": {"phi=0": {"objective": 2.0}, "phi=1": {"objective": 1.5}}}
        return [{"fits": {"looped": fit(*looped), "hyperloop": fit(*hyper)}}]

    assert _isodepth_phi(result((0.5, 0.4, 0.6), (0.7, 0.6, 0.8))).verdict == SUPPORTED
    assert _isodepth_phi(result((0.9, 0.8, 1.0), (0.7, 0.6, 0.8))).verdict == REFUTED
    assert _isodepth_phi(result((0.5, -0.5, 1.5), (0.7, 0.6, 0.8))).verdict == INCONCLUSIVE
    assert _isodepth_phi(result((-1.0, -1.0, 0.0), (0.5, -0.5, 1.5))).verdict == REFUTED  # wide, but excludes
    one_arm = result((0.5, 0.4, 0.6), (0.7, 0.6, 0.8))
    del one_arm[0]["fits"]["hyperloop"]
    assert _isodepth_phi(one_arm).verdict == INCONCLUSIVE


def test_missing_results_are_not_yet_measured(tmp_path):
    m = claim("hyperloop-quality").measure(tmp_path)  # an empty root: no result files
    assert m.verdict == UNMEASURED and "experiments/hyperloop_tiny.py" in m.reason
    assert claim("pmnet-retrieval").measure(ROOT).verdict == UNMEASURED


def test_pages_render_and_read_correctly_in_chromium(tmp_path):
    index = render_report(tmp_path / "site", ROOT)
    pages = sorted(p.name for p in index.parent.glob("*.html"))
    assert pages == sorted(["index.html"] + [f"{p.id}.html" for p in PAPERS.values() if p.seed])
    text = (index.parent / "hyperloop.html").read_text()
    assert "What would settle it" in text and "experiments/hyperloop_tiny.py" in text
    assert (index.parent / "plots" / "hyperloop_tiny.png").is_file()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian package chromium; .ci/run installs it)")

    def dom(page: Path) -> str:
        r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stdout

    home = dom(index)
    assert "Seed papers" in home and "<svg" in home and "arXiv 2604.21254" in home
    assert home.count('class="verdict"') == sum(p.seed for p in PAPERS.values())
    page = dom(index.parent / "hyperloop.html")
    assert "Load-bearing premise" in page and "supported" in page and 'src="plots/hyperloop_tiny.png"' in page
    assert "not yet measured" in dom(index.parent / "pmnet.html")
