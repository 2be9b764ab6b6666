"""The seed papers and their claims as data: each claim a falsifiable prediction with a tolerance, the command of
the experiment that checks it, the file its results land in, and the rule that turns those results into a verdict
(the measurement discipline of arXiv 2604.21691; docs/claims.md).

A verdict is read from committed result files only; a claim without results (or without an experiment yet) is
"not yet measured". Every verdict says the scale it was measured at: a small CPU model can support or refute a
claim at that scale, not at the paper's.

The prose (papers' readings, claims' statements, predictions, tolerances and scales) is data, one YAML file per paper
under claims/papers/; this module holds the code and the rules that judge it.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

SUPPORTED, REFUTED, INCONCLUSIVE, UNMEASURED = "supported", "refuted", "inconclusive", "not yet measured"


@dataclass(frozen=True)
class Paper:
    """One node of the reading list: a seed paper (with a page) or a companion it builds on."""

    id: str
    arxiv: str
    title: str
    pith: str = ""  # one sentence
    core_claim: str = ""
    premise: str = ""  # the load-bearing premise
    settle: str = ""  # what would settle it
    seed: bool = True
    links: tuple[tuple[str, str], ...] = ()  # (relation, other paper id): "cites", "builds on", "measured by", "beside"


@dataclass
class Measurement:
    verdict: str
    rows: list[tuple[str, str]] = field(default_factory=list)  # (quantity, measured value with uncertainty)
    reason: str = ""


@dataclass(frozen=True)
class Claim:
    name: str
    paper: str
    statement: str
    prediction: str
    tolerance: str
    scale: str = ""
    command: str = ""
    results: tuple[str, ...] = ()  # result files, relative to the repository root
    plots: tuple[str, ...] = ()
    evaluate: Callable[[list[dict]], Measurement] | None = None

    def measure(self, root: Path) -> Measurement:
        """The verdict from the result files under ``root``. Never raises on a results file: one that cannot be
        read (invalid JSON, not an object, a quick run, a missing field or a value of the wrong type) gives
        INCONCLUSIVE with a reason that names the file (and the field) and the command that rewrites it."""
        if self.evaluate is None:
            return Measurement(UNMEASURED, reason="no experiment for this claim yet")
        folders = [r for r in self.results if (root / r).is_dir()]
        if folders:  # present, but not a file: nothing a rule can read
            return Measurement(INCONCLUSIVE, reason=f"{', '.join(folders)}: a folder, not a results file; rerun: "
                                                    f"{self.command}")
        missing = [r for r in self.results if not (root / r).is_file()]
        if missing:
            return Measurement(UNMEASURED, reason=f"no results yet ({', '.join(missing)}); run: {self.command}")
        rerun = f"; rerun: {self.command}"
        data = []
        for r in self.results:
            try:
                d = json.loads((root / r).read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
                return Measurement(INCONCLUSIVE, reason=f"{r}: not readable as JSON ({e}){rerun}")
            if not isinstance(d, dict):
                return Measurement(INCONCLUSIVE, reason=f"{r}: holds a JSON {type(d).__name__}, not an object{rerun}")
            if d.get("quick"):
                return Measurement(INCONCLUSIVE, reason=f"{r}: the results of a quick run, not the full experiment{rerun}")
            data.append(d)
        where = self.results[0] if len(self.results) == 1 else "one of " + ", ".join(self.results)
        for r, d in zip(self.results, data):
            bad = _non_finite(d)
            if bad is not None:
                return Measurement(INCONCLUSIVE, reason=f"{r}: field {bad!r} is not a finite number{rerun}")
        try:
            m = self.evaluate(data)
            if m.verdict in (SUPPORTED, REFUTED) and not m.rows:
                return Measurement(INCONCLUSIVE, reason=f"{where}: the rule found nothing to measure{rerun}")
            return m
        except KeyError as e:
            key = e.args[0] if e.args else "?"
            what = f"field {key!r}" if isinstance(key, str) else f"entry {key!r}"
            return Measurement(INCONCLUSIVE, reason=f"{where}: missing {what}{rerun}")
        except (TypeError, ValueError, IndexError, AttributeError, ArithmeticError, StopIteration) as e:
            return Measurement(INCONCLUSIVE, reason=f"{where}: unexpected contents ({type(e).__name__}: {e}){rerun}")


def _non_finite(node, path: str = "") -> str | None:
    """The dotted path of the first NaN or infinity in a parsed results file (json reads NaN and Infinity), or
    None. Verdict rules compare numbers, and a NaN compares False everywhere: it would pass for a measurement."""
    if isinstance(node, float) and not math.isfinite(node):
        return path or "(top level)"
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        found = _non_finite(v, f"{path}.{k}" if path else str(k))
        if found is not None:
            return found
    return None


def _pm(mean: float, std: float, digits: int = 4) -> str:
    return f"{mean:+.{digits}f} ± {std:.{digits}f}"


# ---- verdict rules -------------------------------------------------------------------------------------------

def _hyperloop_quality(res: list[dict]) -> Measurement:
    d = res[0]
    rows, worst = [], []
    for other in ("transformer", "mhc"):
        diff = d["paired_differences"][f"hyperloop_minus_{other}"]
        rows.append((f"val bits/byte, Hyperloop − {other} (paired by seed)", _pm(diff["mean"], diff["std"])
                     + f"  (seeds: {', '.join(f'{x:+.3f}' for x in diff['per_seed'])})"))
        worst.append(max(diff["per_seed"]))
    ratio = d["param_ratio_hyperloop_over_transformer"]
    rows.append(("parameters, Hyperloop / Transformer", f"{ratio:.2f}"))
    ok_params = ratio <= 0.65
    if all(w <= 0 for w in worst) and ok_params:
        return Measurement(SUPPORTED, rows, "Hyperloop is at or below both baselines in every seed at ≤ 65% of the parameters")
    if all(statistics.mean(d["paired_differences"][f"hyperloop_minus_{o}"]["per_seed"]) > 0.01 for o in ("transformer", "mhc")):
        return Measurement(REFUTED, rows, "Hyperloop is worse than the baselines beyond the tolerance")
    return Measurement(INCONCLUSIVE, rows, "seeds disagree")


def _hyperloop_int4(res: list[dict]) -> Measurement:
    runs = res[0]["runs"]
    by = {(r["arch"], r["method"], r["seed"]): r["val_bpb"] for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    diffs = [by[("hyperloop", "gptq-int4-g128", s)] - by[("transformer", "gptq-int4-g128", s)] for s in seeds]
    cost = [by[("hyperloop", "gptq-int4-g128", s)] - by[("hyperloop", "float", s)] for s in seeds]
    rows = [("val bits/byte after GPTQ INT4, Hyperloop − Transformer",
             _pm(statistics.mean(diffs), statistics.stdev(diffs) if len(diffs) > 1 else 0.0)),
            ("INT4 cost of the Hyperloop (quantised − float)", _pm(statistics.mean(cost), statistics.stdev(cost) if len(cost) > 1 else 0.0))]
    if all(x <= 0 for x in diffs):
        return Measurement(SUPPORTED, rows, "the advantage survives INT4 in every seed")
    return Measurement(REFUTED if statistics.mean(diffs) > 0.01 else INCONCLUSIVE, rows, "not in every seed")


def _hyperloop_speed(res: list[dict]) -> Measurement:
    r = res[0]["ratio_hyperloop_over_looped"]
    rows = [("training tokens/s, Hyperloop / Looped (one run, alternated)", f"{r:.2f}"),
            ("mHC / Transformer", f"{res[0]['ratio_mhc_over_transformer']:.2f}")]
    return Measurement(SUPPORTED if r >= 0.9 else REFUTED, rows, "target ≥ 0.9 (paper 0.95)")


def _trellis_mse(res: list[dict]) -> Measurement:
    d = res[0]
    rows = [(f"MSE per weight, L=16 {c}", f"{d[f'mse_L16_{c}']:.4f}") for c in ("lut", "1mad", "3inst", "hyb")]
    best = d["best_mse_L16"]
    return Measurement(SUPPORTED if best <= 0.069 else REFUTED, rows, f"best {best:.4f} against ≤ 0.069")


def _trellis_vs_gptq(res: list[dict]) -> Measurement:
    runs = res[0]["runs"]
    by = {(r["arch"], r["method"], r["seed"]): r["val_bpb"] for r in runs}
    keys = sorted({(r["arch"], r["seed"]) for r in runs})
    trellis = next(m for (_, m, _) in by if m.startswith("trellis-2bit"))
    gains = [(by[(a, "gptq-2bit-g128", s)] - by[(a, "float", s)]) - (by[(a, trellis, s)] - by[(a, "float", s)]) for a, s in keys]
    rows = [("(GPTQ 2-bit loss) − (trellis 2-bit loss), bits/byte, all models and seeds",
             _pm(statistics.mean(gains), statistics.stdev(gains))),
            ("bits per quantised weight: trellis / GPTQ", "2.013 / 2.255")]
    if all(g > 0 for g in gains):
        return Measurement(SUPPORTED, rows, "trellis loses less than GPTQ in every model, at fewer bits")
    return Measurement(REFUTED if statistics.mean(gains) < 0 else INCONCLUSIVE, rows, "not in every model")


def _bcjr_ladder(res: list[dict]) -> Measurement:
    summary = res[0]["val_bpb"]
    rows, bcjr_wins, ste_loses = [], [], []
    for arch, cell in summary.items():
        b, s = cell.get("bcjr_minus_ptq"), cell.get("ste_minus_ptq")
        if not b or not s:
            continue
        rows.append((f"{arch}: BCJR-QAT − PTQ, val bits/byte", _pm(b["mean"], b["std"])))
        rows.append((f"{arch}: STE-QAT − PTQ", _pm(s["mean"], s["std"])))
        bcjr_wins += [x < 0 for x in b["per_seed"]]
        ste_loses += [x > 0 for x in s["per_seed"]]
    if not rows:
        return Measurement(UNMEASURED, reason="the results hold no QAT rows")
    by = {(r["arch"], r["seed"], r["method"].removesuffix("-qat")): r["val_bpb"] for r in res[0].get("runs", [])}
    paired = [by[(a, sd, "bcjr")] - by[(a, sd, "ste")] for (a, sd, m) in by if m == "bcjr" and (a, sd, "ste") in by]
    if paired:
        rows.append(("all models: BCJR-QAT − STE-QAT, paired by seed",
                     _pm(statistics.mean(paired), statistics.stdev(paired) if len(paired) > 1 else 0.0)
                     + f"  (BCJR lower in {sum(x < 0 for x in paired)} of {len(paired)})"))
    if not bcjr_wins or not ste_loses:
        raise KeyError("val_bpb.*.per_seed")
    if all(bcjr_wins) and all(ste_loses):
        return Measurement(SUPPORTED, rows, "BCJR-QAT < PTQ < STE-QAT in every model and seed")
    if all(bcjr_wins):
        return Measurement(INCONCLUSIVE, rows, "BCJR-QAT beats PTQ in every model and seed, but STE-QAT is not worse "
                                                "than PTQ, so only half of the predicted ordering holds")
    return Measurement(REFUTED if sum(bcjr_wins) < len(bcjr_wins) / 2 else INCONCLUSIVE, rows,
                       f"BCJR-QAT beats PTQ in {sum(bcjr_wins)} of {len(bcjr_wins)} runs")


def _bcjr_speed(res: list[dict]) -> Measurement:
    d = res[0]
    ls = sorted(int(k.rsplit("L", 1)[1]) for k in d if k.startswith("speedup_vs_gather_L"))
    rows = [(f"forward+backward speed-up over the gathering reference, L={L}", f"{d[f'speedup_vs_gather_L{L}']:.1f}×") for L in ls]
    if not ls:
        raise KeyError("speedup_vs_gather_L*")
    ok = all(d[f"speedup_vs_gather_L{L}"] >= 5 for L in ls)
    return Measurement(SUPPORTED if ok else REFUTED, rows, "target ≥ 5× at every L")


def _mup_transfer(res: list[dict]) -> Measurement:
    d = res[0]
    lrs = sorted(d["settings"]["lrs"])
    step = max(math.log10(b / a) for a, b in zip(lrs, lrs[1:]))  # one grid step (the widest), in decades
    rows = []
    for param, curves in d["curves"].items():
        best = {w: c["best_lr"] for w, c in curves.items()}
        rows.append((f"best lr by width, {param.upper()}", ", ".join(f"{w}: {best[w]:g}" for w in sorted(best, key=int))
                     + f"  (spread {d['best_lr_spread_decades'][param]:.2f} decades)"))
    for param, spreads in d.get("best_lr_spread_decades_per_seed", {}).items():
        if len(spreads) > 1:
            rows.append((f"spread of each seed's best lr, {param.upper()} ({len(spreads)} seeds)",
                         ", ".join(f"{x:.2f}" for x in spreads) + f" decades (mean {statistics.fmean(spreads):.2f})"))
    sp, mup = d["best_lr_spread_decades"]["sp"], d["best_lr_spread_decades"]["mup"]
    tol = step * 1.01
    if mup <= tol < sp:
        return Measurement(SUPPORTED, rows, "the best lr moves under SP and stays within one grid step under μP")
    if mup > tol:
        return Measurement(REFUTED, rows, "the best lr moves by more than one grid step under μP")
    return Measurement(INCONCLUSIVE, rows, "the best lr does not move under SP either at this scale")


def _isodepth_phi(res: list[dict]) -> Measurement:
    """Each architecture's φ interval against the published one, but only where the design can resolve φ.

    The results carry a design check per arm (``design_check``): losses drawn from the fitted law with φ set to the
    published value and the runs' own residual noise, refitted with the same design. A verdict of "refuted" needs
    that check to recover φ within ±0.1 (median bootstrap half-width and |bias| both ≤ 0.1); a design that cannot
    resolve φ reads "inconclusive" and says why. Where it can, an interval that excludes the published value
    refutes and one that overlaps it supports; an arm not run yet leaves the claim open.

    Beside it, the regime: in how many (width, budget) cells of an arm some r > 1 reached a lower loss than r = 1.
    The law describes budgets where an extra loop can pay; where none pays, the reason says so."""
    published = {"looped": (0.41, 0.53), "hyperloop": (0.65, 0.65)}
    rows, verdicts, why = [], [], []
    fits, checks = res[0]["fits"], res[0].get("design_check", {})
    for arch, (p_lo, p_hi) in published.items():
        if arch not in fits:
            rows.append((f"φ, {arch}", "not run yet"))
            verdicts.append(UNMEASURED)
            continue
        fit = fits[arch]
        phi = fit["params"]["phi"]
        lo, hi = fit["ci"].get("phi", (float("nan"), float("nan")))
        restricted = ", ".join(f"{k} {v['objective'] / fit['objective']:.2f}×" for k, v in fit["restricted"].items())
        rows.append((f"φ, {arch} (published {p_lo:g}" + (f"–{p_hi:g})" if p_hi > p_lo else ")"),
                     f"{phi:.2f} [{lo:.2f}, {hi:.2f}], R² {fit['r2']:.3f}, n = {fit['n']}; "
                     f"objective of the pinned fits {restricted}"))
        cells = _loop_cells(res[0].get("runs", []), arch)
        if cells:
            pays = sum(cells.values())
            rows.append((f"regime, {arch}: (width, budget) cells where a loop count r > 1 beats r = 1",
                         f"{pays} of {len(cells)}"))
            if pays == 0:
                why.append(f"{arch}: no extra loop paid at any width and budget run (r > 1 lost to r = 1 in every "
                           "cell), outside the regime the law describes")
        check = checks.get(arch)
        if check is None:
            verdicts.append(INCONCLUSIVE)
            why.append(f"{arch}: no design check, so it is unknown whether these runs can resolve φ")
            continue
        half, bias = check["ci_halfwidth_median"], check["bias"]
        if not all(math.isfinite(x) for x in (half, bias, phi, lo, hi)):
            raise ValueError(f"design_check.{arch} or fits.{arch} holds a non-finite φ, interval, half-width or bias")
        rows.append((f"design check, {arch}: φ = {check['phi_true']:g} recovered from synthetic runs "
                     f"({check['n_rep']} replicates, noise sd {check['noise_sd']:.4f} in log-loss)",
                     f"bias {bias:+.3f}, sd {check['sd']:.3f}, median interval half-width {half:.3f}, "
                     f"coverage {check['coverage']:.0%}"))
        if half > 0.1 or abs(bias) > 0.1:
            verdicts.append(INCONCLUSIVE)
            why.append(f"{arch}: the design cannot resolve φ to ±0.1 (synthetic half-width {half:.2f}, bias {bias:+.2f})")
        elif hi < p_lo or lo > p_hi:
            verdicts.append(REFUTED)
            why.append(f"{arch}: the interval excludes the published value")
        else:
            verdicts.append(SUPPORTED)
            why.append(f"{arch}: the interval overlaps the published value")
    reason = "; ".join(why)
    if UNMEASURED in verdicts:
        return Measurement(INCONCLUSIVE, rows, "; ".join([*why, "an arm of the experiment has not been run yet"]))
    if all(v == SUPPORTED for v in verdicts):
        return Measurement(SUPPORTED, rows, reason)
    if REFUTED in verdicts:
        return Measurement(REFUTED, rows, reason)
    return Measurement(INCONCLUSIVE, rows, reason)


def _loop_cells(runs: list[dict], arch: str) -> dict[tuple, bool]:
    """Per (width, steps, seed) cell of an iso-depth arm with r = 1 and some r > 1: whether a loop paid (the lowest
    loss with r > 1 below the loss with r = 1)."""
    by_cell: dict[tuple, dict[int, float]] = {}
    for r in runs:
        if r.get("arch") == arch:
            cell = (r["d_model"], r["steps"], r.get("seed", 0))
            by_cell.setdefault(cell, {})[int(r["model_overrides.n_loops"])] = float(r["val_loss"])
    return {c: min(v for k, v in losses.items() if k > 1) < losses[1]
            for c, losses in by_cell.items() if 1 in losses and len(losses) > 1}


def _edge_of_stability(res: list[dict]) -> Measurement:
    """The claim rule: (verdict, rows of (quantity, measured value), reason), from this experiment's results JSON.

    A cell is one arm (gd: λ_max(H)·η/2; adam: λ_max(P⁻¹H)/(38/η)) at one learning rate. In each seed the run
    "reached the edge" if its ratio ever came to ≥ 0.8; its equilibrium is the median ratio over the last part
    of the steps. A cell is *at the edge* when every seed reached it and every equilibrium median lies in [0.8, 1.2]; *off the edge* when every seed reached it and every median lies outside [0.8, 1.2] (it settled clearly
    above the threshold, against stability theory, or fell back clearly below it); otherwise *open* (some seed never
    reached the edge: too few steps or too small a learning rate; or the seeds disagree).

    supported: every cell of both arms at the edge, with at least two learning rates per arm (the threshold must
    follow 1/η, not a constant). refuted: some cell off the edge. inconclusive: anything else, including a quick run.
    """
    result = res[0]
    if result.get("quick"):
        return Measurement(INCONCLUSIVE, [], "the results of a quick run, not the full experiment")
    lo, hi = 0.8, 1.2  # the claim's tolerance, never read from the results file
    rows, states, why = [], {}, []
    names = {"gd": "gradient descent: λ_max(H) / (2/η)", "adam": "Adam: λ_max(P⁻¹H) / (38/η)"}
    for arm in ("gd", "adam"):
        cells = result["summary"].get(arm, {})
        if not cells:
            states[arm] = ["missing"]
            why.append(f"no {arm} runs")
            continue
        for key, cell in sorted(cells.items(), key=lambda kv: kv[1]["lr"]):
            seeds = list(cell["per_seed"].values())
            if not seeds:
                raise KeyError(f"summary.{arm}.{key}.per_seed")  # a cell without seeds measures nothing
            reached = [s["max"] >= lo for s in seeds]
            inside = [lo <= s["median"] <= hi for s in seeds]
            state = ("at the edge" if all(reached) and all(inside) else
                     "off the edge" if all(reached) and not any(inside) else "open")
            states.setdefault(arm, []).append(state)
            meds = ", ".join(f"{s['median']:.3f} [{s['q1']:.3f}–{s['q3']:.3f}]" for s in seeds)
            rows.append((f"{names[arm]}, η = {key}, median of the last {result['settings']['tail']:.0%} of steps",
                         f"{cell['mean']:.3f} (seeds {cell['min']:.3f}–{cell['max']:.3f}; per seed median [IQR]: "
                         f"{meds}) — {state}"))
            if arm == "adam":
                raw = statistics.fmean(s["raw_over_two_over_lr"] for s in seeds)
                rows.append((f"Adam, η = {key}: raw λ_max(H) / (2/η), same steps", f"{raw:.3f}"))
            if not all(reached):
                why.append(f"{arm} at η = {key}: {reached.count(False)} seed(s) never reached {lo:g}× the threshold")
    if any("off the edge" in s for s in states.values()):
        off = [arm for arm, s in states.items() if "off the edge" in s]
        return Measurement(REFUTED, rows, f"the equilibrium ratio lies outside [{lo:g}, {hi:g}] in every seed for {', '.join(off)}")
    if all(len(s) >= 2 and all(x == "at the edge" for x in s) for s in states.values()):
        return Measurement(SUPPORTED, rows, (f"every arm and learning rate settles with sharpness/threshold in [{lo:g}, {hi:g}] in "
                                 "every seed: 2/η for gradient descent, (2 + 2β1)/((1 − β1)η) for Adam's "
                                 "preconditioned sharpness"))
    return Measurement(INCONCLUSIVE, rows, "; ".join(why) or "seeds disagree or too few learning rates")


def _band_state(value: float, ci: list[float], target: float, tol: float) -> str:
    """"within", "outside" or "open" for a measured value with a 95% interval ``ci`` against target ± tol: within
    when the value lies in the band and the interval's half-width is at most tol (the experiment resolves the
    quantity to its tolerance); outside when the whole interval misses the band; open otherwise."""
    lo, hi = sorted(ci)
    if abs(value - target) <= tol and (hi - lo) / 2 <= tol:
        return "within"
    if hi < target - tol or lo > target + tol:
        return "outside"
    return "open"


def _combine(states: list[str], rows: list[tuple[str, str]], what: str) -> Measurement:
    """One verdict from per-cell band states: supported if every cell is within its band, refuted if any cell's
    interval lies outside it, inconclusive otherwise (the experiment cannot resolve the quantity)."""
    if not states:
        return Measurement(INCONCLUSIVE, rows, f"the results hold no {what} to measure (no manifold or action cells)")
    if "outside" in states:
        return Measurement(REFUTED, rows, f"{states.count('outside')} of {len(states)} {what} outside the tolerance, "
                                          "interval included")
    if all(s == "within" for s in states):
        return Measurement(SUPPORTED, rows, f"all {len(states)} {what} within the tolerance")
    return Measurement(INCONCLUSIVE, rows, f"{states.count('open')} of {len(states)} {what} not resolved to the "
                                           "tolerance by these runs")


# what the gap-* claims name: every manifold (experiments A and C) and every group action (experiment B); a results
# file of fewer (a --manifolds or --actions subset) cannot support a claim made for all of them
_GAP_MANIFOLDS = ("S1", "S2", "S3", "T2", "T3", "S1xS2")
_GAP_ACTIONS = ("SO2-S2", "SO2-T2", "SO2-S1xS2", "U1-S3")


def _gap_require(combined: Measurement, present, named: tuple[str, ...], what: str) -> Measurement:
    """``combined`` unless some of ``named`` (the manifolds or actions the claim is made for) are absent from
    ``present``: then INCONCLUSIVE, naming them (a partial run settles nothing about a claim made for all)."""
    missing = [x for x in named if x not in present]
    if not missing:
        return combined
    return Measurement(INCONCLUSIVE, combined.rows, f"the results lack the {what} {', '.join(missing)} that the "
                                                    f"claim names (a partial run); {combined.reason}")


def _gap_memoriser(res: list[dict]) -> Measurement:
    """Experiment A of experiments/representation_gap.py: per manifold the pooled slope of the chordal mean gap
    (r = 1) against −1/d (±0.03) and the ratio measured / point-process law over the largest n (±5%), each with its
    two-level bootstrap interval (:func:`_band_state`)."""
    rows, states = [], []
    for name, cell in res[0]["manifolds"].items():
        c, d = cell["chordal"], cell["d"]
        s_state = _band_state(c["slope"], c["slope_ci"], -1 / d, 0.03)
        r_state = _band_state(c["ratio"], c["ratio_ci"], 1.0, 0.05)
        states += [s_state, r_state]
        rows.append((f"{name} (d = {d}): slope of log mean gap vs log n (predicted {-1 / d:+.4f})",
                     f"{c['slope']:+.4f} [{c['slope_ci'][0]:+.4f}, {c['slope_ci'][1]:+.4f}]; per seed "
                     f"{c['slope_per_seed']['mean']:+.4f} ± {c['slope_per_seed']['std']:.4f} — {s_state}"))
        rows.append((f"{name}: mean gap / Γ(1 + 1/d)(n V_d / Vol)^(−1/d)",
                     f"{c['ratio']:.4f} [{c['ratio_ci'][0]:.4f}, {c['ratio_ci'][1]:.4f}] — {r_state}"))
    return _gap_require(_combine(states, rows, "slopes and constants"), res[0]["manifolds"], _GAP_MANIFOLDS,
                        "manifolds")


def _gap_equivariance(res: list[dict]) -> Measurement:
    """Experiment B: per group action the pooled slope of the geodesic mean gap to the union of orbits against
    −1/(d − dim G) (±0.05), beside the plain memoriser's slope on the same manifold."""
    rows, states, present = [], [], set()
    for name, cell in res[0]["manifolds"].items():
        for action, eq in cell["equivariant"].items():
            present.add(action)
            g = eq["geodesic"]
            state = _band_state(g["slope"], g["slope_ci"], eq["predicted_slope"], 0.05)
            states.append(state)
            rows.append((f"{action} on {name}: slope, union of orbits (predicted {eq['predicted_slope']:+.3f}; "
                         f"memoriser {cell['geodesic']['slope']:+.3f})",
                         f"{g['slope']:+.4f} [{g['slope_ci'][0]:+.4f}, {g['slope_ci'][1]:+.4f}], chordal "
                         f"{eq['chordal']['slope']:+.4f}; constant ratio {g['ratio']:.3f} — {state}"))
    return _gap_require(_combine(states, rows, "equivariant slopes"), present, _GAP_ACTIONS, "group actions")


def _gap_intrinsic_dimension(res: list[dict]) -> Measurement:
    """Experiment C: TWO-NN and MLE, mean over seeds with a bootstrap interval, against d (±0.15), and against the
    dimension −1/slope read off experiment A (±0.15: both must hold for a manifold to count as within)."""
    rows, states = [], []
    settings = res[0]["settings"]
    for name, cell in res[0]["manifolds"].items():
        d, from_slope = cell["d"], cell["d_from_slope"]["value"]
        for method in ("twonn", "mle"):
            e = cell["intrinsic_dimension"][method]
            state = _band_state(e["mean"], e["ci"], d, 0.15)
            if state == "within" and abs(e["mean"] - from_slope) > 0.15:
                state = "open"
            states.append(state)
            rows.append((f"{name} (d = {d}): {method.upper()} at n = {settings['id_n']} in R^{settings['D']}",
                         f"{e['mean']:.3f} ± {e['std']:.3f} [{e['ci'][0]:.3f}, {e['ci'][1]:.3f}]; −1/slope "
                         f"{from_slope:.3f} — {state}"))
    return _gap_require(_combine(states, rows, "estimates"), res[0]["manifolds"], _GAP_MANIFOLDS, "manifolds")


def _gap_denoiser(res: list[dict]) -> Measurement:
    """Experiment D (experiments/gap_denoiser.py): for the plain and the SO(2)-equivariant denoiser, the slope of
    the gap of its samples over the training-set sizes at which it memorises (mean memorised fraction ≥ 0.9)
    against −1/2 and −1 (±0.1, a fit over few sizes), with a bootstrap interval over seeds; and where it stops
    memorising. Fewer than three memorising sizes cannot resolve a slope: inconclusive."""
    rows, states = [], []
    for model, s in res[0]["summary"].items():
        fit, pred = s["memorising_fit"], s["predicted_slope"]
        stops = s["stops_memorising_at"]
        where = (f"memorises at n ∈ {{{', '.join(map(str, s['memorising_ns']))}}}; memorised fraction below 0.5 from "
                 f"n = {stops}" if stops is not None else "memorises at every n run")
        rows.append((f"{model} denoiser: where it memorises", where))
        rows.append((f"{model}: gap of the samples / gap of the exact memoriser of the same points, by n",
                     ", ".join(f"{n}: {c['gap'] / c['memoriser_gap']:.2f}" for n, c in
                               sorted(s["cells"].items(), key=lambda kv: int(kv[0])))))
        if fit is None or len(fit["ns"]) < 3:
            states.append("open")
            rows.append((f"{model}: slope of the gap while memorising (predicted {pred:+.1f})",
                         "fewer than three memorising sizes: no slope"))
            continue
        state = _band_state(fit["slope"], fit["slope_ci"], pred, 0.1)
        states.append(state)
        rows.append((f"{model}: slope of the gap while memorising (predicted {pred:+.1f})",
                     f"{fit['slope']:+.3f} [{fit['slope_ci'][0]:+.3f}, {fit['slope_ci'][1]:+.3f}] over n = "
                     f"{fit['ns'][0]}–{fit['ns'][-1]} — {state}"))
    return _combine(states, rows, "denoiser slopes")


# ---- story maps (docs/maps.md; experiments/story_maps.py) ---------------------------------------------------
_MAPS_DATASETS = ("gutenberg", "tinystories")
_MAPS_EMBEDDER = "minilm"  # the default embedder of `mechlab map` and of BERTopic
MAPS_NOISE_MAX, MAPS_STABILITY_MIN = 0.35, 0.7


def _maps_noise(res: list[dict]) -> Measurement:
    """experiments/story_maps.py: the noise share of the default map (MiniLM, MapConfig()) over its seeds on each data
    set, with the 95% bootstrap interval over seeds. Supported when every interval lies at or below 35%; refuted when
    some interval lies wholly above; inconclusive otherwise. Rows for the other embedders are shown, not judged."""
    data = res[0]["datasets"]
    rows, states = [], []
    for d in _MAPS_DATASETS:
        for emb, sweep in data[d]["embedders"].items():
            n = sweep["summary"]["noise_share"]
            lo, hi = n["ci"]
            rows.append((f"{d}, {emb}{' (judged)' if emb == _MAPS_EMBEDDER else ''}: noise share over "
                         f"{len(n['per_seed'])} seeds", f"{100 * n['mean']:.1f}% ± {100 * n['std']:.1f} "
                         f"(95% CI {100 * lo:.1f}–{100 * hi:.1f}%)"))
            if emb == _MAPS_EMBEDDER:
                states.append("within" if hi <= MAPS_NOISE_MAX else "outside" if lo > MAPS_NOISE_MAX else "open")
    if len(states) < len(_MAPS_DATASETS):
        return Measurement(INCONCLUSIVE, rows, f"the results lack the {_MAPS_EMBEDDER} map of some data set")
    if "outside" in states:
        return Measurement(REFUTED, rows, f"{states.count('outside')} data set(s) leave more than "
                                          f"{100 * MAPS_NOISE_MAX:.0f}% noise, interval included")
    if all(s == "within" for s in states):
        return Measurement(SUPPORTED, rows, f"noise at most {100 * MAPS_NOISE_MAX:.0f}% on every data set, interval included")
    return Measurement(INCONCLUSIVE, rows, "an interval straddles the target")


def _maps_stability(res: list[dict]) -> Measurement:
    """experiments/story_maps.py: the mean ARI between the clusterings of all pairs of seeds (noise a cluster) of the
    default map on each data set. Supported when the mean is ≥ 0.7 on every data set; refuted when on some data set
    even the best pair is below 0.7; inconclusive otherwise."""
    data = res[0]["datasets"]
    rows, states = [], []
    for d in _MAPS_DATASETS:
        for emb, sweep in data[d]["embedders"].items():
            st = sweep["stability"]
            rows.append((f"{d}, {emb}{' (judged)' if emb == _MAPS_EMBEDDER else ''}: ARI between seeds "
                         f"({st['pairs']} pairs)", f"{st['mean']:.3f} (range {st['min']:.3f}–{st['max']:.3f})"))
            if emb == _MAPS_EMBEDDER:
                states.append("within" if st["mean"] >= MAPS_STABILITY_MIN else
                              "outside" if st["max"] < MAPS_STABILITY_MIN else "open")
    if len(states) < len(_MAPS_DATASETS):
        return Measurement(INCONCLUSIVE, rows, f"the results lack the {_MAPS_EMBEDDER} map of some data set")
    if "outside" in states:
        return Measurement(REFUTED, rows, f"on {states.count('outside')} data set(s) no pair of seeds agrees to "
                                          f"ARI {MAPS_STABILITY_MIN}")
    if all(s == "within" for s in states):
        return Measurement(SUPPORTED, rows, f"mean ARI between seeds ≥ {MAPS_STABILITY_MIN} on every data set")
    return Measurement(INCONCLUSIVE, rows, f"the mean ARI between seeds is below {MAPS_STABILITY_MIN} on "
                                           f"{len(states) - states.count('within')} data set(s), while some pairs of "
                                           "seeds reach it: 5 seeds do not settle whether the target is missed")


# DELEGATE-52's headline figures (arXiv 2604.15597; frontier scale, the official 52 domains), shown beside ours
DELEGATE_PAPER = (("paper: GPT 5.4 (frontier), official environments", "RS@2 0.943, RS@10 0.794, RS@20 0.715"),
                  ("paper: frontier models (Gemini 3.1 Pro, Claude 4.6 Opus, GPT 5.4)", "RS@20 ≈ 0.75 (≈25% corrupted)"),
                  ("paper: average of 19 models, 6 families", "RS@20 ≈ 0.49"))


DELEGATE_MIN_ENVIRONMENTS = 5  # a bootstrap interval over fewer environments says nothing


def _delegate_rs(res: list[dict]) -> Measurement:
    """benchmarks/delegate_smollm2.py, one result per backend (SmolLM2-135M-Instruct through mechlab and through
    llama.cpp's server). Per backend: the mean over environments of RS@2, RS@10 and RS@20 and the fall
    RS@2 − RS@20 with a 95% bootstrap interval over environments (paired). The oracle's RS = 1.0 in every bundled
    environment is a test (tests/test_delegate.py), the calibration the prediction starts from. Supported: some
    backend's fall interval lies above 0 (corruption accumulates over the relay). Refuted: every backend's lies
    below 0 (scores rise). A backend whose RS@2 is already below 0.05 is at the floor (the model destroys the
    documents in its first round trip, so nothing is left to fall) and settles nothing, as does one with fewer than
    :data:`DELEGATE_MIN_ENVIRONMENTS` scored relays. Otherwise inconclusive."""
    import random

    rows = list(DELEGATE_PAPER)
    rows.append(("oracle, every bundled environment", "RS = 1.0 (tests/test_delegate.py)"))
    verdicts, why = [], []
    for r in res:
        relays = [x for x in r["relays"] if not x.get("failed")]
        if len(relays) < DELEGATE_MIN_ENVIRONMENTS:
            rows.append((f"SmolLM2-135M-Instruct, {r['backend']} backend", f"{len(relays)} scored relays "
                         f"({len(r['relays']) - len(relays)} never reached the model)"))
            verdicts.append(INCONCLUSIVE)
            why.append(f"{r['backend']}: {len(relays)} scored environments, fewer than {DELEGATE_MIN_ENVIRONMENTS}")
            continue
        at = {k: [x["rs"][k // 2 - 1] for x in relays] for k in (2, 10, 20)}
        means = {k: statistics.fmean(v) for k, v in at.items()}
        fall = [a - b for a, b in zip(at[2], at[20])]
        rng = random.Random(0)
        boots = sorted(statistics.fmean(rng.choices(fall, k=len(fall))) for _ in range(2000))
        lo, hi = boots[49], boots[1949]
        steps = sum(x["steps"] for x in r["relays"])
        errors = sum(x["errors"] for x in r["relays"])
        label = f"SmolLM2-135M-Instruct, {r['backend']} backend, {len(relays)} environments"
        rows.append((label, f"RS@2 {means[2]:.3f}, RS@10 {means[10]:.3f}, RS@20 {means[20]:.3f}; fall RS@2 − RS@20 "
                            f"{statistics.fmean(fall):.4f} [{lo:.4f}, {hi:.4f}]; error steps {errors}/{steps}; "
                            f"{r['overall']['tokens']:,} tokens, {r['seconds'] / 3600:.1f} h"))
        zero = sum(1 for x in at[2] if x == 0)
        rows.append((f"{label}: environments by their fall",
                     f"fell in {sum(f > 0 for f in fall)}, rose in {sum(f < 0 for f in fall)}, unchanged in "
                     f"{sum(f == 0 for f in fall)}; {zero} already at RS = 0 after the first round trip"))
        if means[2] < 0.05:
            verdicts.append(INCONCLUSIVE)
            why.append(f"{r['backend']}: RS@2 {means[2]:.3f}, at the floor (the first round trip destroys the documents)")
        elif lo > 0:
            verdicts.append(SUPPORTED)
            why.append(f"{r['backend']}: RS falls by {statistics.fmean(fall):.3f} from RS@2 to RS@20 (interval "
                       f"[{lo:.4f}, {hi:.4f}]; {zero} of {len(fall)} environments were already at 0 after the first "
                       f"round trip, so the fall rests on the others)")
        elif hi < 0:
            verdicts.append(REFUTED)
            why.append(f"{r['backend']}: RS rises from RS@2 to RS@20")
        else:
            verdicts.append(INCONCLUSIVE)
            why.append(f"{r['backend']}: the fall's interval [{lo:.3f}, {hi:.3f}] includes 0")
    reason = "; ".join(why) + " (at 135M parameters; the paper's figures are frontier models on the official release)"
    if SUPPORTED in verdicts:
        return Measurement(SUPPORTED, rows, reason)
    if verdicts and all(v == REFUTED for v in verdicts):
        return Measurement(REFUTED, rows, reason)
    return Measurement(INCONCLUSIVE, rows, reason)


def _pmnet_retrieval(res: list[dict]) -> Measurement:
    """experiments/pmnet_retrieval.py: exact-match needle retrieval per gap G with 95% bootstrap intervals (res[0];
    further results, the copy-paste run, are shown as rows and do not enter the verdict).

    In-window accuracy a_in = PMNet's mean over the gaps inside the receptive field. Learned: PMNet's interval at the
    shortest gap beyond the receptive field that training covered lies above chance + 0.25 (else the model did not
    learn the long-range task within the budget: inconclusive, whatever happens further out). Supported: at every gap
    beyond the receptive field PMNet's interval reaches a_in − 0.1 or more (near its in-window accuracy) and the
    memory-off twin's interval reaches down to chance + 0.1 (at chance). Refuted: learned, in-window accuracy at least
    0.8 (a model that has not learned the task well settles nothing about how far it carries), and at a gap beyond
    both the receptive field and the training gaps PMNet's whole interval lies below a_in − 0.1. Otherwise
    inconclusive. A partial result (``partial``: only some of the planned seeds ran) is never supported."""
    r = res[0]
    acc, chance, start = r["accuracy"], r["chance"], r["beyond_receptive_field_from"]
    gaps = sorted(int(g) for g in acc["pmnet"])
    inside = [g for g in gaps if g < start]
    beyond = [g for g in gaps if g >= start]
    max_gap = r["settings"]["max_gap"]
    if not inside or not beyond:
        return Measurement(INCONCLUSIVE, [], "the results need gaps both inside and beyond the receptive field")
    a_in = statistics.fmean(acc["pmnet"][str(g)]["mean"] for g in inside)
    rows = []
    for v in ("pmnet", "twin", "pmnet-off-at-test", "pmnet-anchors-zeroed", "full"):
        cells = ", ".join(f"G {g}: {acc[v][str(g)]['mean']:.2f} [{acc[v][str(g)]['ci'][0]:.2f}, "
                          f"{acc[v][str(g)]['ci'][1]:.2f}]" for g in gaps)
        n = len(r["settings"]["seeds"])
        rows.append((f"{v}: exact match by gap (mean of {n} seed{'s' if n > 1 else ''}, 95% bootstrap)", cells))
    for arm in [a for a in ("pmnet", "twin", "full") if a in r["training"]]:  # the order of the accuracy rows
        t = r["training"][arm]
        mx = [s["grad_norm_max"] for s in t.values()]
        md = [s["grad_norm_median"] for s in t.values()]
        steps = [g for s in t.values() for g in s.get("grad_norm", [])] or md  # every logged step of every seed
        rows.append((f"{arm}: gradient norm before clipping, max / median over every step of every seed",
                     f"max {max(mx):.3g}, median {statistics.median(steps):.3g} (per seed: "
                     + "; ".join(f"{a:.3g} / {b:.3g}" for a, b in zip(mx, md)) + ")"))
    for extra in res[1:]:  # the copy-paste run, shown beside the needle (the verdict reads the needle run)
        ea = extra["accuracy"]
        for v in ("pmnet", "twin", "full"):
            rows.append((f"copy-paste of {extra['settings']['payload']} symbols, {v} (seeds "
                         f"{', '.join(map(str, extra['settings']['seeds']))}, {extra['settings']['steps']} steps; "
                         f"verdict of the same rule: {extra['verdict']['verdict']})",
                         ", ".join(f"G {g}: {ea[v][g]['mean']:.2f}" for g in sorted(ea[v], key=int))))
    trained_beyond = [g for g in beyond if g <= max_gap]
    probe = trained_beyond[0] if trained_beyond else beyond[0]
    learned = acc["pmnet"][str(probe)]["ci"][0] > chance + 0.25
    near = [acc["pmnet"][str(g)]["ci"][1] >= a_in - 0.1 for g in beyond]
    twin_chance = [acc["twin"][str(g)]["ci"][0] <= chance + 0.1 for g in beyond]
    far_fail = [g for g in beyond if g > max_gap and acc["pmnet"][str(g)]["ci"][1] < a_in - 0.1]
    where = f"in-window accuracy {a_in:.2f}, receptive field {r['receptive_field']}, training gaps ≤ {max_gap}"
    if r.get("partial"):
        where += (f"; PARTIAL: {len(r['settings']['seeds'])} of the {len(r['seeds_planned'])} planned seeds "
                  f"({', '.join(map(str, r['settings']['seeds']))})")
    if not learned:
        return Measurement(INCONCLUSIVE, rows, f"PMNet did not learn retrieval beyond the receptive field within the "
                                               f"budget (G = {probe}: interval {acc['pmnet'][str(probe)]['ci'][0]:.2f}–"
                                               f"{acc['pmnet'][str(probe)]['ci'][1]:.2f}, chance {chance:.3g}); {where}")
    if all(near) and all(twin_chance) and r.get("partial"):
        return Measurement(INCONCLUSIVE, rows, f"PMNet stays near its in-window accuracy beyond the receptive field "
                                               f"and the twin is at chance, but not every planned seed ran; {where}")
    if all(near) and all(twin_chance):
        return Measurement(SUPPORTED, rows, f"PMNet stays within 0.1 of its in-window accuracy at every gap beyond the "
                                            f"receptive field and the memory-off twin is at chance; {where}")
    if far_fail and a_in >= 0.8:
        far = gaps[-1]
        return Measurement(REFUTED, rows, f"PMNet learned long-range retrieval inside its training gaps but falls "
                                          f"below its in-window accuracy − 0.1 at G = {', '.join(map(str, far_fail))} "
                                          f"(at G = {far}: {acc['pmnet'][str(far)]['mean']:.2f}, chance {chance:.3g}; "
                                          f"the memory-off twin {'is' if all(twin_chance) else 'is not'} at chance "
                                          f"beyond the receptive field); {where}")
    if far_fail:
        return Measurement(INCONCLUSIVE, rows, f"PMNet falls below its in-window accuracy − 0.1 at G = "
                                               f"{', '.join(map(str, far_fail))}, but its in-window accuracy is below "
                                               f"0.8: the task is not learned well enough within the budget; {where}")
    return Measurement(INCONCLUSIVE, rows, f"the intervals do not settle it; {where}")


def _demo_trellis(res: list[dict]) -> Measurement:
    d = res[0]
    cost, ratio = d["bpb_quantized"] - d["bpb_float"], d["bytes_after"] / d["bytes_before"]
    rows = [("validation bits/byte, float → 2-bit trellis", f"{d['bpb_float']:.3f} → {d['bpb_quantized']:.3f} ({cost:+.3f})"),
            ("model bytes, quantised / float", f"{ratio:.3f} ({d['bytes_before']:,} → {d['bytes_after']:,})")]
    ok = cost <= 0.1 and ratio <= 0.15
    return Measurement(SUPPORTED if ok else REFUTED, rows, "cost ≤ 0.1 bits/byte at ≤ 15% of the bytes" if ok else
                       "more than 0.1 bits/byte lost, or the model is not under 15% of its float size")


# ---- the reading list ----------------------------------------------------------------------------------------

# ---- perturbation probing (experiments/perturbation_probing.py) ----------------------------------------------

_PROBE_DECISIONS = ("code", "name", "list")  # the decisions probed for the neuron claim (the French one is the control)
_PROBE_MIN_DECIDED = 8  # held-out pairs the model must decide for a decision to count


def _probing_refusal(res: list[dict]) -> Measurement:
    """Stage 0: the refusal circuit can only be probed in a model that refuses. Refusal rates of HarmBench and of
    the benign set with Wilson intervals; a harmful rate whose interval lies below 0.1 means there is no refusal
    behaviour at this scale (inconclusive for the circuit: nothing to probe); a model that refuses harmful
    requests more than benign ones would have a circuit to probe, which this experiment does not do."""
    r = res[0]["refusal"]
    rows = [("HarmBench refusal rate (95% Wilson)", f"{r['harmful_rate']:.3f} [{r['harmful_interval'][0]:.3f}, "
             f"{r['harmful_interval'][1]:.3f}] of {r['harmful_n']}"),
            ("benign refusal rate (95% Wilson)", f"{r['benign_rate']:.3f} [{r['benign_interval'][0]:.3f}, "
             f"{r['benign_interval'][1]:.3f}] of {r['benign_n']}")]
    if r["harmful_interval"][1] < 0.1:
        return Measurement(INCONCLUSIVE, rows, "no refusal behaviour at 135M: the model answers harmful requests, so "
                           "there is no refusal template whose neurons could be found")
    return Measurement(INCONCLUSIVE, rows, "the model refuses some harmful requests; the refusal decision itself is "
                       "not probed by this experiment")


def _probing_neurons(res: list[dict]) -> Measurement:
    """Per decision (with >= 8 decided held-out pairs): patching the top-k neurons (k <= 50) to the original
    prompt's activations flips the held-out decisions at a rate whose Wilson lower bound exceeds the 97.5%
    quantile of the matched random sets, p <= 0.01, and >= 5x their mean. Supported if some k <= 50 does so in
    every decision; refuted if even k = 100 stays inside the random band in every decision; else inconclusive."""
    rows, states = [], []
    for key in _PROBE_DECISIONS:
        d = res[0]["decisions"][key]
        if d["n_heldout_decided"] < _PROBE_MIN_DECIDED:
            rows.append((f"{d['decision']}: held-out pairs decided", f"{d['n_heldout_decided']} of {d['n_heldout']} "
                         "(too few, left out)"))
            continue
        iv = d["interventions"]
        passing, inside_all = [], True
        for v in sorted((v for v in iv.values() if v["mode"] == "patch"), key=lambda v: v["k"]):
            f = v["flip"]
            rows.append((f"{d['decision']}: top-{v['k']} patch flip rate (95% Wilson) vs matched random "
                         f"(mean, 95% range; {f['draws']} draws)",
                         f"{f['effect']:.2f} [{f['interval'][0]:.2f}, {f['interval'][1]:.2f}] vs {f['control_mean']:.3f} "
                         f"[{f['control_lo']:.2f}, {f['control_hi']:.2f}], p = {f['p_value']:.3f}, n = {f['n']}"))
            if (v["k"] <= 50 and f["interval"][0] > f["control_hi"] and f["p_value"] <= 0.01
                    and f["effect"] >= 5 * f["control_mean"]):
                passing.append(v["k"])
            if v["k"] == max(w["k"] for w in iv.values()) and f["interval"][0] > f["control_hi"]:
                inside_all = False
        states.append("pass" if passing else "inside" if inside_all else "weak")
    if not states:
        return Measurement(INCONCLUSIVE, rows, "no decision was made on enough held-out pairs")
    if all(s == "pass" for s in states):
        return Measurement(SUPPORTED, rows, f"top-k patch flips far more than matched random sets in all {len(states)} decisions")
    if all(s == "inside" for s in states):
        return Measurement(REFUTED, rows, "even the top-100 neurons flip no more than matched random sets")
    return Measurement(INCONCLUSIVE, rows, f"decisions: {', '.join(states)} (pass / weak / inside the random band)")


def _probing_language(res: list[dict]) -> Measurement:
    """The paper's negative control: injecting the English -> French residual direction switches the first answer
    token of held-out English prompts to French openers. Predicted to FAIL in an English-only model: supported
    (it fails) if the best success rate over layers and strengths is < 0.5 or inside the random-direction band;
    refuted if some setting reaches >= 0.9 above the band; else inconclusive."""
    d = res[0]["decisions"]["french"]
    rows = [("French prompts answered with a French opener / English ones with an English opener (base rate, "
             "held-out)", f"{d['base_rate_heldout']:.2f} of {d['n_heldout']}")]
    if not d.get("injection"):
        return Measurement(INCONCLUSIVE, rows, "the model does not separate the two languages on held-out pairs")
    best = max(d["injection"], key=lambda v: v["flip"]["effect"])
    for v in d["injection"]:
        f = v["flip"]
        rows.append((f"inject layer {v['layer']}, beta {v['beta']}: success (95% Wilson) vs random directions",
                     f"{f['effect']:.2f} [{f['interval'][0]:.2f}, {f['interval'][1]:.2f}] vs {f['control_mean']:.2f} "
                     f"[{f['control_lo']:.2f}, {f['control_hi']:.2f}], p = {f['p_value']:.3f}"))
    lv = d["ratio_level_median"]
    rows.append(("median FFN-to-skip ratio (level) over layers 8, 15, 22", ", ".join(
        "n/a" if lv[i] is None else f"{lv[i]:.2f}" for i in (8, 15, 22))))
    f = best["flip"]
    if f["effect"] < 0.5 or f["effect"] <= f["control_hi"]:
        return Measurement(SUPPORTED, rows, "injection fails as predicted for an English-only model")
    if f["effect"] >= 0.9 and f["interval"][0] > f["control_hi"]:
        return Measurement(REFUTED, rows, "injection switches the language, against the prediction")
    return Measurement(INCONCLUSIVE, rows, "injection partly works")


# ---- the papers and their claims -----------------------------------------------------------------------------
# The prose lives in data files, one per paper: claims/papers/<paper id>.yaml holds the paper's title, pith, core
# claim, load-bearing premise and what would settle it, and each claim's statement, prediction, tolerance and scale.
# This module holds the rules: the experiment that measures a claim, the files it reads and the verdict function.

def _prose(paper_id: str) -> dict:
    """The parsed claims/papers/PAPER_ID.yaml (package data). Raises ValueError naming the file when it is missing
    or not a YAML mapping with a title."""
    path = resources.files("mechlab.claims") / "papers" / f"{paper_id}.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"claims/papers/{paper_id}.yaml: cannot read the paper's prose ({e})") from e
    if not isinstance(data, dict) or "title" not in data:
        raise ValueError(f"claims/papers/{paper_id}.yaml: not a mapping with a 'title'")
    return data


def _paper(id: str, arxiv: str, *, seed: bool = True, links: tuple[tuple[str, str], ...] = ()) -> Paper:
    """A Paper with its prose read from claims/papers/ID.yaml."""
    p = _prose(id)
    return Paper(id, arxiv, p["title"], p.get("pith", ""), p.get("core_claim", ""), p.get("premise", ""),
                 p.get("settle", ""), seed=seed, links=links)


def _claim(name: str, paper: str, **rule) -> Claim:
    """A Claim with its statement, prediction, tolerance and scale read from claims/papers/PAPER.yaml (under
    ``claims: NAME:``) and its rule (command, results, plots, evaluate) given here. Raises ValueError naming the file
    when the prose of the claim is missing."""
    try:
        text = _prose(paper)["claims"][name]
        return Claim(name, paper, text["statement"], text["prediction"], text["tolerance"],
                     scale=text.get("scale", ""), **rule)
    except (KeyError, TypeError) as e:
        raise ValueError(f"claims/papers/{paper}.yaml: no complete prose for claim {name!r} (missing {e})") from None


PAPERS: dict[str, Paper] = {p.id: p for p in [
    _paper("learning-mechanics", "2604.21691"),
    _paper("hyperloop", "2604.21254",
           links=(("builds on", "mhc"), ("measured by", "isodepth"), ("beside", "learning-mechanics"))),
    _paper("bcjr-qat", "2605.10655", links=(("cites", "learning-mechanics"), ("builds on", "qtip"))),
    _paper("delegate52", "2604.15597", links=(("beside", "learning-mechanics"),)),
    _paper("pmnet", "2605.13370", links=(("cites", "learning-mechanics"),)),
    _paper("perturbation-probing", "2604.27401", links=(("cites", "learning-mechanics"),)),
    _paper("representation-gap", "2605.21692", links=(("cites", "learning-mechanics"),)),
    _paper("mhc", "2512.24880", seed=False),
    _paper("isodepth", "2604.21106", seed=False, links=(("beside", "learning-mechanics"),)),
    _paper("qtip", "2406.11235", seed=False),
]}


_GAP_RUN = dict(command="OMP_NUM_THREADS=1 python experiments/representation_gap.py",
                results=("experiments/results/representation_gap.json",),
                plots=("experiments/results/representation_gap.png",))  # experiments A–C share one run

_PROBE_RUN = dict(command="OMP_NUM_THREADS=1 python experiments/perturbation_probing.py",
                  results=("experiments/results/perturbation_probing.json",))  # the three probing claims share one run
_PROBE_PLOTS = tuple(f"experiments/results/perturbation_probing_{k}.png" for k in ("code", "name", "list"))
_MAPS_RUN = dict(command="OMP_NUM_THREADS=1 python experiments/story_maps.py",
                 results=("experiments/results/story_maps.json",),
                 plots=("experiments/results/story_maps.png", "experiments/results/hidden_maps.png"))

CLAIMS: list[Claim] = [
    _claim("hyperloop-quality", "hyperloop", command="OMP_NUM_THREADS=1 python experiments/hyperloop_tiny.py --steps 400",
           results=("experiments/results/hyperloop_tiny.json",), plots=("experiments/results/hyperloop_tiny.png",),
           evaluate=_hyperloop_quality),
    _claim("hyperloop-int4", "hyperloop", command="OMP_NUM_THREADS=1 python experiments/ptq_tiny.py",
           results=("experiments/results/ptq_tiny.json",), evaluate=_hyperloop_int4),
    _claim("hyperloop-throughput", "hyperloop", command="python benchmarks/arch_throughput.py",
           results=("benchmarks/results/arch_throughput.json",), evaluate=_hyperloop_speed),
    _claim("trellis-mse", "bcjr-qat", command="python benchmarks/trellis_mse.py --sequences 256",
           results=("benchmarks/results/trellis_mse.json",), evaluate=_trellis_mse),
    _claim("trellis-vs-gptq", "bcjr-qat", command="OMP_NUM_THREADS=1 python experiments/ptq_tiny.py",
           results=("experiments/results/ptq_tiny.json",), evaluate=_trellis_vs_gptq),
    _claim("bcjr-ladder", "bcjr-qat", command="OMP_NUM_THREADS=1 python experiments/qat_tiny.py --lr-bcjr 1e-3 --lr-ste 3e-4",
           results=("experiments/results/qat_tiny.json",), plots=("experiments/results/qat_tiny.png",),
           evaluate=_bcjr_ladder),
    _claim("demo-trellis-2bit", "bcjr-qat", command="mechlab demo", results=("runs/demo/demo_results.json",),
           plots=("runs/demo/loss.png",), evaluate=_demo_trellis),
    _claim("bcjr-speed", "bcjr-qat", command="python benchmarks/bcjr_speed.py",
           results=("benchmarks/results/bcjr_speed.json",), evaluate=_bcjr_speed),
    _claim("isodepth-phi", "isodepth", command="python experiments/isodepth_phi.py --parallel 2",
           results=("experiments/results/isodepth_phi.json",), plots=("experiments/results/isodepth_phi.png",),
           evaluate=_isodepth_phi),
    _claim("edge-of-stability", "learning-mechanics", command="OMP_NUM_THREADS=1 python experiments/edge_of_stability.py",
           results=("experiments/results/edge_of_stability.json",), plots=("experiments/results/edge_of_stability.png",),
           evaluate=_edge_of_stability),
    _claim("maps-noise", "learning-mechanics", **_MAPS_RUN, evaluate=_maps_noise),
    _claim("maps-stability", "learning-mechanics", **_MAPS_RUN, evaluate=_maps_stability),
    _claim("mup-transfer", "learning-mechanics",
           command="python experiments/mup_lr_width.py --steps 200 --lrs 1e-3 3e-3 1e-2 3e-2 --seeds 0 1 2 --parallel 1",
           results=("experiments/results/mup_lr_width.json",), plots=("experiments/results/mup_lr_width.png",),
           evaluate=_mup_transfer),
    # one run per backend (the rule reads one file per backend): llama.cpp's server over HTTP, mechlab's own generation
    _claim("delegate-rs", "delegate52", command="python benchmarks/delegate_smollm2.py --backend llama-server; "
           "python benchmarks/delegate_smollm2.py --backend local --threads 2 --lockstep 8",
           results=("benchmarks/results/delegate_smollm2-llama-server.json",
                    "benchmarks/results/delegate_smollm2-local.json"),
           plots=("benchmarks/results/delegate_smollm2.png",), evaluate=_delegate_rs),
    _claim("pmnet-retrieval", "pmnet", command="OMP_NUM_THREADS=1 python experiments/pmnet_retrieval.py",
           results=("experiments/results/pmnet_retrieval.json", "experiments/results/pmnet_copy.json"),
           plots=("experiments/results/pmnet_retrieval.png", "experiments/results/pmnet_copy.png"),
           evaluate=_pmnet_retrieval),
    _claim("probing-refusal", "perturbation-probing", **_PROBE_RUN, evaluate=_probing_refusal),
    _claim("probing-neurons", "perturbation-probing", **_PROBE_RUN, plots=_PROBE_PLOTS, evaluate=_probing_neurons),
    _claim("probing-language", "perturbation-probing", **_PROBE_RUN,
           plots=("experiments/results/perturbation_probing_french.png",), evaluate=_probing_language),
    _claim("gap-memoriser", "representation-gap", **_GAP_RUN, evaluate=_gap_memoriser),
    _claim("gap-equivariance", "representation-gap", **_GAP_RUN, evaluate=_gap_equivariance),
    _claim("gap-intrinsic-dimension", "representation-gap", **_GAP_RUN, evaluate=_gap_intrinsic_dimension),
    _claim("gap-denoiser", "representation-gap", command="OMP_NUM_THREADS=1 python experiments/gap_denoiser.py",
           results=("experiments/results/representation_gap_denoiser.json",),
           plots=("experiments/results/representation_gap_denoiser.png",), evaluate=_gap_denoiser),
]


def has_page(paper: Paper) -> bool:
    """A seed paper has a page; so does a companion whose claim this project measures (the iso-depth law)."""
    return paper.seed or any(c.paper == paper.id for c in CLAIMS)


def claim(name: str) -> Claim:
    for c in CLAIMS:
        if c.name == name:
            return c
    raise KeyError(name)
