"""Claims as data, verdict rules, and the rendered pages (checked in headless Chromium)."""

import html
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mechlab.claims import CLAIMS, PAPERS, render_report
from mechlab.claims.registry import (INCONCLUSIVE, REFUTED, SUPPORTED, UNMEASURED, _bcjr_ladder, _isodepth_phi, _mup_transfer, claim,
                                     has_page)
from mechlab.cli import app

ROOT = Path(__file__).resolve().parents[1]


def test_registry_is_consistent():
    names = [c.name for c in CLAIMS]
    assert len(names) == len(set(names))
    assert all(c.paper in PAPERS for c in CLAIMS)
    assert all(PAPERS[c.paper].pith and PAPERS[c.paper].settle for c in CLAIMS)  # every claim's paper has a page to render
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
    """Refuted needs a design that resolves φ (synthetic recovery within ±0.1); otherwise inconclusive, with why."""
    def result(looped, hyper, half=0.05, bias=0.0):
        fit = lambda phi, lo, hi: {"params": {"phi": phi}, "ci": {"phi": [lo, hi]}, "r2": 0.99, "n": 18,  # noqa: E731
                                   "objective": 1.0, "restricted": {"phi=0": {"objective": 2.0}, "phi=1": {"objective": 1.5}}}
        check = lambda phi: {"phi_true": phi, "n_rep": 20, "noise_sd": 0.005, "bias": bias, "sd": half / 2,  # noqa: E731
                             "ci_halfwidth_median": half, "coverage": 0.9}
        return [{"fits": {"looped": fit(*looped), "hyperloop": fit(*hyper)},
                 "design_check": {"looped": check(0.46), "hyperloop": check(0.65)}}]

    assert _isodepth_phi(result((0.5, 0.4, 0.6), (0.7, 0.6, 0.8))).verdict == SUPPORTED
    assert _isodepth_phi(result((0.9, 0.8, 1.0), (0.7, 0.6, 0.8))).verdict == REFUTED
    # the same intervals from a design that cannot tell φ apart: never refuted
    weak = _isodepth_phi(result((0.9, 0.8, 1.0), (0.7, 0.6, 0.8), half=0.45))
    assert weak.verdict == INCONCLUSIVE and "cannot resolve" in weak.reason
    assert _isodepth_phi(result((0.9, 0.8, 1.0), (0.7, 0.6, 0.8), bias=0.2)).verdict == INCONCLUSIVE
    no_check = result((-1.0, -1.0, 0.0), (0.5, -0.5, 1.5))
    del no_check[0]["design_check"]
    assert _isodepth_phi(no_check).verdict == INCONCLUSIVE and "design check" in _isodepth_phi(no_check).reason
    one_arm = result((0.5, 0.4, 0.6), (0.7, 0.6, 0.8))
    del one_arm[0]["fits"]["hyperloop"]
    assert _isodepth_phi(one_arm).verdict == INCONCLUSIVE


def test_verdict_rule_of_pmnet_retrieval():
    """Supported needs PMNet near its in-window accuracy beyond the receptive field and the twin at chance; a model
    that never learned the trained long gaps is inconclusive, never refuted."""
    from mechlab.claims.registry import _pmnet_retrieval

    def result(pm, twin, ci=0.05):
        cell = lambda a: {"mean": a, "std": 0.0, "per_seed": [a] * 3, "ci": [max(a - ci, 0), min(a + ci, 1)]}  # noqa: E731
        gaps = (8, 32, 64, 128, 1024)
        acc = {v: {str(g): cell(a) for g, a in zip(gaps, pm if v.startswith("pmnet") else twin)}
               for v in ("pmnet", "pmnet-off-at-test", "pmnet-anchors-zeroed", "twin", "full")}
        train = {"grad_norm_max": 3.0, "grad_norm_median": 1.0}
        return [{"accuracy": acc, "chance": 1 / 16, "beyond_receptive_field_from": 59, "receptive_field": 60,
                 "settings": {"max_gap": 80, "seeds": [0, 1, 2]}, "training": {"pmnet": {"0": train}}}]

    assert _pmnet_retrieval(result([1, 1, 0.98, 0.97, 0.95], [1, 1, 0.06, 0.06, 0.06])).verdict == SUPPORTED
    partial = result([1, 1, 0.98, 0.97, 0.95], [1, 1, 0.06, 0.06, 0.06])
    partial[0].update(partial=True, seeds_planned=[0, 1, 2])
    partial[0]["settings"]["seeds"] = [0, 1]
    m = _pmnet_retrieval(partial)  # only some of the planned seeds ran: never supported
    assert m.verdict == INCONCLUSIVE and "PARTIAL: 2 of the 3" in m.reason
    assert _pmnet_retrieval(result([1, 1, 0.95, 0.3, 0.1], [1, 1, 0.06, 0.06, 0.06])).verdict == REFUTED
    assert _pmnet_retrieval(result([1, 1, 0.06, 0.06, 0.06], [1, 1, 0.06, 0.06, 0.06])).verdict == INCONCLUSIVE
    # long gaps learned but in-window retrieval weak: under-trained, not refuted
    assert _pmnet_retrieval(result([0.6, 0.6, 0.5, 0.2, 0.1], [0.6, 0.6, 0.06, 0.06, 0.06])).verdict == INCONCLUSIVE


def test_missing_results_are_not_yet_measured(tmp_path):
    m = claim("hyperloop-quality").measure(tmp_path)  # an empty root: no result files
    assert m.verdict == UNMEASURED and "experiments/hyperloop_tiny.py" in m.reason
    assert claim("delegate-rs").measure(tmp_path).verdict == UNMEASURED  # no relay results under an empty root


def _corrupt_trellis_mse(root: Path, how: str) -> str:
    """A copy of the committed trellis_mse.json under ``root``, damaged as ``how`` says; returns what the reason names."""
    res = root / "benchmarks" / "results"
    res.mkdir(parents=True)
    d = json.loads((ROOT / "benchmarks" / "results" / "trellis_mse.json").read_text())
    if how == "missing field":
        del d["mse_L16_lut"]
        expect = "missing field 'mse_L16_lut'"
    elif how == "wrong type":
        d["best_mse_L16"] = "0.07"
        expect = "unexpected contents"
    elif how == "quick run":  # what benchmarks/trellis_mse.py --quick used to write over the full results
        d = {k: v for k, v in d.items() if "L14" not in k and "L16" not in k} | {"quick": True, "sequences": 16}
        expect = "quick run"
    elif how == "not an object":
        d = [d]
        expect = "not an object"
    text = "{truncated" if how == "invalid JSON" else json.dumps(d)
    (res / "trellis_mse.json").write_text(text)
    return "not readable as JSON" if how == "invalid JSON" else expect


@pytest.mark.parametrize("how", ["missing field", "wrong type", "invalid JSON", "quick run", "not an object"])
def test_unreadable_results_are_inconclusive_and_named(tmp_path, how):
    root = tmp_path / "repo"
    expect = _corrupt_trellis_mse(root, how)
    m = claim("trellis-mse").measure(root)
    assert m.verdict == INCONCLUSIVE
    assert m.reason.startswith("benchmarks/results/trellis_mse.json: ") and expect in m.reason
    assert "python benchmarks/trellis_mse.py" in m.reason  # says how to make the file again
    index = render_report(tmp_path / "site", root)  # the whole report renders
    page = html.unescape((index.parent / "bcjr-qat.html").read_text())
    section = page.split('id="trellis-mse"', 1)[1].split('<div class="claim"', 1)[0]
    assert ">inconclusive<" in section and "benchmarks/results/trellis_mse.json" in section and expect in section
    listed = CliRunner().invoke(app, ["claims", "list", "--root", str(root)], terminal_width=200)
    assert listed.exit_code == 0, listed.output
    assert any("trellis-mse" in line and "inconclusive" in line for line in listed.output.splitlines())


def test_pages_render_and_read_correctly_in_chromium(tmp_path):
    index = render_report(tmp_path / "site", ROOT)
    pages = sorted(p.name for p in index.parent.glob("*.html"))
    assert pages == sorted(["index.html"] + [f"{p.id}.html" for p in PAPERS.values() if has_page(p)])
    assert "isodepth.html" in pages  # a companion whose claim is measured here gets its own page
    lm = (index.parent / "learning-mechanics.html").read_text()
    assert 'id="isodepth-phi"' not in lm and 'id="isodepth-phi"' in (index.parent / "isodepth.html").read_text()
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
    assert "Papers" in home and "<svg" in home and "arXiv 2604.21254" in home
    assert home.count('class="verdict"') == sum(has_page(p) for p in PAPERS.values())
    page = dom(index.parent / "hyperloop.html")
    assert "Load-bearing premise" in page and "supported" in page and 'src="plots/hyperloop_tiny.png"' in page
    assert "SmolLM2-135M-Instruct" in dom(index.parent / "delegate52.html")  # measured, beside the paper's figures
    assert "experiments/pmnet_retrieval.py" in dom(index.parent / "pmnet.html")
