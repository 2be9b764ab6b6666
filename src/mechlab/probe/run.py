"""One entry point for probing a decision end to end (the CLI ``mechlab probe run`` and
experiments/perturbation_probing.py both call :func:`probe_decision`), the refusal stage, and the plots.

probe_decision: split the pairs (seeded) into a probe set and a held-out set; two passes + one backward on the
probe set (:func:`mechlab.probe.score.probe`); rank neurons; then on the held-out pairs the model decides (F_o < 0
< F_p), for each k: patch the top-k neurons of the perturbed prompt to the original's activations, and ablate them,
counting flips (F < 0 afterwards), against ``draws`` matched random sets; a dose sweep (scale by alpha) of the top-k
set; residual injection of v = mean(x_p - x_o) (probe set) at chosen layers into the held-out originals, counting
flips to the target (F > 0), against random directions of the same norm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mechlab.errors import ConfigError
from mechlab.generation import Sampling, generate_text
from mechlab.probe.hooks import DecisionSet, Intervention, intervene
from mechlab.probe.interventions import (
    controlled,
    evaluate_sets,
    inject_effect,
    matched_random,
    random_directions,
    residual_direction,
    top_neurons,
)
from mechlab.probe.prompts import Decision, encode_pairs, is_refusal, render
from mechlab.probe.score import observable, probe
from mechlab.utils import save_figure

log = logging.getLogger("mechlab.probe")


@dataclass(frozen=True)
class ProbeSettings:
    """ks: sizes of the top sets; draws: matched random sets (>= 100 for the committed results); holdout: fraction
    of pairs held out; alphas: doses of the scale sweep (of the top ``dose_k`` set); inject_layers / betas: residual
    injection sites and strengths; seed: the split and the random draws; rank: see ProbeResult.score ("signed" by
    default: patching or ablating a neuron whose importance opposes the decision would push the other way)."""

    ks: tuple[int, ...] = (5, 10, 20, 50, 100)
    draws: int = 100
    holdout: float = 0.5
    alphas: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)
    dose_k: int = 20
    inject_layers: tuple[int, ...] = ()
    betas: tuple[float, ...] = (1.0,)
    seed: int = 0
    rank: str = "signed"

    def validate(self, n_layers: int, n_neurons: int) -> None:
        if self.draws < 1:
            raise ConfigError(f"probe settings: --draws must be >= 1, got {self.draws}")
        if not 0 < self.holdout < 1:
            raise ConfigError(f"probe settings: --holdout is a fraction of the pairs, 0 < holdout < 1, got {self.holdout}")
        if not self.ks or min(self.ks) < 1 or len(set(self.ks)) != len(self.ks):
            raise ConfigError(f"probe settings: --ks must be distinct top-set sizes >= 1, got {list(self.ks)}")
        if self.dose_k < 1:
            raise ConfigError(f"probe settings: --dose-k must be >= 1, got {self.dose_k}")
        if max(self.ks) > n_neurons * n_layers // 10 or self.dose_k > n_neurons * n_layers // 10:
            raise ConfigError(f"probe settings: top-k sets up to {n_neurons * n_layers // 10} neurons (a tenth of the "
                              "model's) leave room for matched random controls")
        if self.rank not in ("signed", "mean_abs", "abs_mean"):
            raise ConfigError(f"probe settings: rank must be signed, mean_abs or abs_mean, got {self.rank!r}")
        if any(not 0 <= l < n_layers for l in self.inject_layers):
            raise ConfigError(f"probe settings: injection layers must lie in 0..{n_layers - 1}")


def _split(n: int, holdout: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_hold = max(1, round(n * holdout))
    if n - n_hold < 1:
        raise ConfigError(f"{n} pairs cannot be split into a probe set and a held-out set; give at least 2")
    return perm[n_hold:].sort().values, perm[:n_hold].sort().values


def _flip_summary(F_after: torch.Tensor, sign: int) -> torch.Tensor:
    """Flip rate per row of F_after (S, P): the fraction of prompts whose F crossed zero (sign -1: to F < 0)."""
    return ((F_after * sign) > 0).double().mean(1)


def probe_decision(ck, dec: Decision, settings: ProbeSettings = ProbeSettings(), progress: bool = True) -> dict:
    """Probe one decision of a checkpoint's model; returns a JSON-ready dict (see the module docstring)."""
    model = ck.model
    L, N = model.config.n_layers, model.config.d_ff
    settings.validate(L, N)
    gen = torch.Generator().manual_seed(settings.seed)
    orig, pert, targets, controls = encode_pairs(ck, dec)
    probe_idx, hold_idx = _split(len(orig), settings.holdout, settings.seed)
    steps = 2 + 2 * len(settings.ks) + len(settings.alphas) + len(settings.inject_layers) * len(settings.betas)
    bar = tqdm(total=steps, desc=f"probe {dec.name}", disable=not progress)

    ds_o = DecisionSet(model, [orig[i] for i in probe_idx])
    ds_p = DecisionSet(model, [pert[i] for i in probe_idx])
    res = probe(model, ds_o, ds_p, targets, controls)
    bar.update()
    score = res.score(settings.rank)
    made_probe = ((res.F_o < 0) & (res.F_p > 0)).double().mean()

    h_o = DecisionSet(model, [orig[i] for i in hold_idx])
    h_p = DecisionSet(model, [pert[i] for i in hold_idx])
    with torch.no_grad():
        lo, tr_ho = h_o.logits(torch.arange(len(h_o)), record_trace=True)
        lp, tr_hp = h_p.logits(torch.arange(len(h_p)), record_trace=True)
    Fo_h, Fp_h = observable(lo, targets, controls), observable(lp, targets, controls)
    made = ((Fo_h < 0) & (Fp_h > 0)).nonzero().flatten()
    bar.update()
    out: dict = {"decision": dec.name, "targets": dec.targets, "controls": dec.controls,
                 "n_pairs": len(orig), "n_probe": len(probe_idx), "n_heldout": len(hold_idx),
                 "base_rate_probe": float(made_probe), "base_rate_heldout": len(made) / len(hold_idx),
                 "n_heldout_decided": len(made), "settings": {**settings.__dict__},
                 "F_probe": {"original_mean": float(res.F_o.mean()), "perturbed_mean": float(res.F_p.mean())},
                 "explained": res.explained(),
                 "dla_fraction_by_layer": (res.dla_layer.sum(0) / res.dF.sum()).tolist(),
                 "atp_fraction_by_layer": (res.atp_layer.sum(0) / res.dF.sum()).tolist(),
                 "ratio_level_median": _nanmedian(res.ratio_level), "ratio_change_median": _nanmedian(res.ratio_change),
                 "atp_vs_dla_rank_overlap_top100": _overlap(score, res.atp.abs().mean(0), 100)}
    top = top_neurons(score, max(settings.ks))
    out["top_neurons"] = [{"layer": int(l), "neuron": int(n), "score": float(score[l, n]),
                           "mean_importance": float(res.importance[:, l, n].mean()),
                           "mean_atp": float(res.atp[:, l, n].mean())}
                          for l, n in zip(*top)]
    out["top_neurons"].sort(key=lambda r: -r["score"])
    out["score_max_by_layer"] = score.max(1).values.tolist()
    if len(made) == 0:
        out["note"] = "the model makes this decision on none of the held-out pairs: no interventions measured"
        bar.close()
        return out
    dec_o, dec_p = h_o.subset(made), h_p.subset(made)
    a_o_made = tr_ho.a[made]
    n_made = len(made)
    out["interventions"] = {}
    for k in settings.ks:
        layers, idx = top_neurons(score, k)
        rand = matched_random(layers, idx, res.magnitude, settings.draws, gen)
        sets = torch.cat([idx[None], rand])
        for mode in ("patch", "ablate"):
            F_after = evaluate_sets(dec_p, layers, sets, targets, controls, mode, source_a=a_o_made if mode == "patch" else None)
            flips = _flip_summary(F_after, -1)
            shift = (Fp_h[made][None] - F_after).mean(1) / (Fp_h[made] - Fo_h[made]).mean()
            out["interventions"][f"{mode}_k{k}"] = {
                "k": k, "mode": mode, "layers": sorted(set(layers.tolist())),
                "flip": controlled(float(flips[0]), flips[1:], n_made).to_dict(),
                "fraction_of_dF_removed": controlled(float(shift[0]), shift[1:]).to_dict()}
            bar.update()
    layers, idx = top_neurons(score, settings.dose_k)
    rand = matched_random(layers, idx, res.magnitude, settings.draws, gen)
    sets = torch.cat([idx[None], rand])
    dose = []
    for alpha in settings.alphas:
        F_p_a = evaluate_sets(dec_p, layers, sets, targets, controls, "scale", alpha).mean(1)
        dose.append({"alpha": alpha, "F_perturbed": controlled(float(F_p_a[0]), F_p_a[1:]).to_dict()})
        bar.update()
    out["dose"] = {"k": settings.dose_k, "curve": dose}
    inj = []
    for layer in settings.inject_layers:
        v = residual_direction(res.x_o, res.x_p, layer)
        dirs = torch.cat([v[None], random_directions(v, settings.draws, gen)])
        for beta in settings.betas:
            F_inj, _ = inject_effect(dec_o, layer, dirs, beta, targets, controls)
            flips = _flip_summary(F_inj, +1)
            inj.append({"layer": layer, "beta": beta, "v_norm": float(v.norm()),
                        "flip": controlled(float(flips[0]), flips[1:], n_made).to_dict()})
            bar.update()
    out["injection"] = inj
    bar.close()
    return out


def _nanmedian(t: torch.Tensor) -> list[float | None]:
    """Per-layer median over pairs (P, L) ignoring non-finite entries (a zero change of the skip path); None
    where every pair is non-finite."""
    t = t.double().masked_fill(~torch.isfinite(t), float("nan"))
    med = t.nanmedian(0).values
    return [None if torch.isnan(v) else float(v) for v in med]


def _overlap(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    """Fraction of the top-k entries of a that are also top-k entries of b."""
    k = min(k, a.numel())
    ta, tb = set(a.flatten().topk(k).indices.tolist()), set(b.flatten().topk(k).indices.tolist())
    return len(ta & tb) / k


def refusal_rate(ck, prompts: list[str], max_new_tokens: int = 20, progress: bool = True,
                 desc: str = "refusals") -> tuple[float, list[dict]]:
    """(fraction refused, [{prompt, reply, refused}]) of greedy replies (``max_new_tokens`` tokens, the chat
    template with its default system message), classified by :func:`mechlab.probe.prompts.is_refusal`."""
    rows = []
    for p in tqdm(prompts, desc=desc, disable=not progress):
        reply = generate_text(ck, render(ck, p), Sampling(max_new_tokens=max_new_tokens, temperature=0.0, top_k=None))
        rows.append({"prompt": p, "reply": reply, "refused": is_refusal(reply)})
    return sum(r["refused"] for r in rows) / max(len(rows), 1), rows


def generate_with(ck, text: str, edit: Intervention | None, max_new_tokens: int = 16) -> str:
    """Greedy continuation of a rendered prompt with an intervention active at every position (prompt and reply)."""
    if edit is None:
        return generate_text(ck, text, Sampling(max_new_tokens=max_new_tokens, temperature=0.0, top_k=None))
    with intervene(ck.model, edit):
        return generate_text(ck, text, Sampling(max_new_tokens=max_new_tokens, temperature=0.0, top_k=None))


def plot_decision(result: dict, n_layers: int, png: str | Path) -> Path:
    """Left: the largest importance score per layer, with the top neurons' layers marked; middle: flip rate of the
    top-k sets against the matched random 95% band (patch and ablate); right: the dose curve of the top set
    against its random band. matplotlib's Figure API, no pyplot state."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 3.8), dpi=110)
    ax, bx, cx = fig.subplots(1, 3)
    ax.bar(range(n_layers), result["score_max_by_layer"], color="tab:blue")
    counts = [0] * n_layers
    for r in result["top_neurons"][:20]:
        counts[r["layer"]] += 1
    ax2 = ax.twinx()
    ax2.plot(range(n_layers), counts, "o", color="tab:red", ms=4, label="top-20 neurons in layer")
    ax2.set_ylabel("top-20 neurons", color="tab:red")
    ax.set_xlabel("layer")
    ax.set_ylabel(f"largest score ({result.get('settings', {}).get('rank', 'signed')} importance)")
    ax.set_title(f"{result['decision']}: top neurons per layer", fontsize=9)
    iv = result.get("interventions", {})
    for mode, color in (("patch", "tab:green"), ("ablate", "tab:purple")):
        rows = [v for v in iv.values() if v["mode"] == mode]
        if rows:
            ks = [r["k"] for r in rows]
            bx.plot(ks, [r["flip"]["effect"] for r in rows], "o-", color=color, label=f"top-k {mode}")
            bx.fill_between(ks, [r["flip"]["control_lo"] for r in rows], [r["flip"]["control_hi"] for r in rows],
                            color=color, alpha=0.2, label=f"random {mode} 95%")
    bx.set_xscale("log")
    bx.set_xlabel("k neurons")
    bx.set_ylabel("held-out flip rate")
    bx.set_title(f"flips (n = {result['n_heldout_decided']} held-out pairs)", fontsize=9)
    if iv:
        bx.legend(fontsize=7)
    if "dose" in result:
        curve = result["dose"]["curve"]
        al = [c["alpha"] for c in curve]
        cx.plot(al, [c["F_perturbed"]["effect"] for c in curve], "o-", color="tab:orange", label=f"top-{result['dose']['k']}")
        cx.fill_between(al, [c["F_perturbed"]["control_lo"] for c in curve], [c["F_perturbed"]["control_hi"] for c in curve],
                        color="gray", alpha=0.3, label="matched random 95%")
        cx.axhline(0, color="k", lw=0.5)
        cx.set_xlabel("dose alpha (a <- alpha a)")
        cx.set_ylabel("mean F on perturbed prompts")
        cx.legend(fontsize=7)
        cx.set_title("dose curve", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, png)
