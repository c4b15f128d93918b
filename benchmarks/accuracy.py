"""The accuracy study of issue #15 (item 8): model evaluations needed for a map within 1 % / 0.1 %.

    python -m benchmarks.accuracy --out benchmarks/results/accuracy-cpu-2026-12-07.json [--quick] [--jobs 2]
        [--cache DIR]                  keep the reference maps; a rerun computes only the grid and rtol
        [--cache DIR --reuse OLD.json] keep OLD's fixed rules too: rerun rtol mode and the defaults only
    python -m benchmarks.accuracy --summarize STUDY.json   (rewrite its summary and .md)
    python -m benchmarks.accuracy --timing --study STUDY.json --out TIMING.json

For each model of `accuracy_models` (float64, zero baseline, target = argmax of the logits):
the reference IG and IDG maps from a graded composite Gauss-Legendre rule in plain PyTorch
(`accuracy_reference`, checked against a finer rule); then pathattr's IG and IDG through the
public API for every fixed rule at n = 4, 8, ..., 2048 (one call per n for all inputs; a rule
stops once every input is within 0.1 %) and the relative L2 error of every map. Rules: IG's
`method=` riemann_middle and gausslegendre; IDG's schedule="uniform" with the same two
methods, schedule="adaptive" (today's probe schedule) and schedule="paper" (docs/methods.md
§2.1). Counts: gradient evaluations (forward+backward of one path point) per input, and
forward-only evaluations (the adaptive schedules' probes) separately.

"Best fixed rule in hindsight" of a model: the rule with the fewest gradient evaluations at
the smallest grid n where every input is within the threshold. `rtol` mode (when the API
accepts `rtol=`): rtol = 0.01 and 0.001 for IG and IDG, its n_evaluations, n_forward,
error_estimate and converged per input against the true error, and the calibration of the
estimate (estimate / true error) as a histogram. `--timing`: CPU wall time per input at 1 %
error, pathattr rtol mode against Captum IG at the steps the uniform and Gauss-Legendre
rules need, paired medians (benchmarks/harness.py). Writes the JSON and a markdown summary.
"""
from __future__ import annotations

import argparse
import datetime
import inspect
import json
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

import pathattr as pa

from . import accuracy_models as am
from . import accuracy_reference as ar

GRID = (4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
QUICK_GRID = (4, 8, 16, 32, 64, 128)
THRESHOLDS = (0.01, 0.001)
RTOLS = (0.01, 0.001)
DEFAULT_STEPS = 50  # the library default n_steps
# A rule stops past CAP x the smallest n at which another rule of the same method already had
# every input within 0.1 % (it can no longer be the best fixed rule; its table cell says "> n").
CAP = 8
RULES = {
    "ig": {
        "midpoint": dict(method="riemann_middle"),
        "gauss": dict(method="gausslegendre"),
    },
    "idg": {
        "midpoint": dict(schedule="uniform", method="riemann_middle"),
        "gauss": dict(schedule="uniform", method="gausslegendre"),
        "adaptive": dict(schedule="adaptive"),
        "paper": dict(schedule="paper"),
    },
}
DEFAULTS = {"ig": "method='gausslegendre', n_steps=50", "idg": "schedule='adaptive', n_steps=50"}
FUNCS = {"ig": pa.integrated_gradients, "idg": pa.integrated_decision_gradients}
CALIB_EDGES = (1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8)
CALIB_LABELS = ("< 1/8", "1/8-1/4", "1/4-1/2", "1/2-1", "1-2", "2-4", "4-8", "> 8")


def rtol_available() -> bool:
    """Does the public API accept rtol= (issue #15 item 1)?"""
    return all("rtol" in inspect.signature(f).parameters for f in FUNCS.values())


def _call(kind: str, case: am.Case, target: torch.Tensor, **kw):
    res = FUNCS[kind](case.model, case.inputs, target=target, return_details=True, **kw)
    return res


def _counts(res, n: int):
    """(gradient evaluations per input, forward-only per input) of a fixed-n call."""
    grads = int(res.alphas.shape[-1]) if res.alphas is not None else n
    fwd = int(res.probe_alphas.shape[-1]) if res.probe_alphas is not None else 0
    return grads, fwd


def first_within(errors: Dict[int, List[float]], thr: float) -> List[Optional[int]]:
    """Per input: the smallest grid n whose map is within thr (None: not reached)."""
    ns = sorted(errors)
    B = len(errors[ns[0]])
    return [next((n for n in ns if errors[n][b] <= thr), None) for b in range(B)]


def all_within(errors: Dict[int, List[float]], thr: float) -> Optional[int]:
    """The smallest grid n at which every input is within thr (None: not reached)."""
    return next((n for n in sorted(errors) if max(errors[n]) <= thr), None)


def run_rule(kind: str, case, target, ref, kw, grid, log, cap: Optional[int] = None) -> Dict:
    errors, grads, fwds, secs = {}, {}, {}, {}
    for n in grid:
        if cap is not None and n > cap:
            break
        t0 = time.perf_counter()
        res = _call(kind, case, target, n_steps=n, **kw)
        secs[n] = time.perf_counter() - t0
        err = ar.rel_l2(res.attributions, ref).tolist()
        errors[n] = err
        grads[n], fwds[n] = _counts(res, n)
        if max(err) <= min(THRESHOLDS):
            break
    log(f"    {kind} {list(kw.values())[-1]:<15} max err by n: "
        + " ".join(f"{n}:{max(e):.1e}" for n, e in errors.items()))
    out = {"settings": kw, "errors": {str(n): e for n, e in errors.items()},
           "grads_per_input": {str(n): g for n, g in grads.items()},
           "forward_per_input": {str(n): f for n, f in fwds.items()},
           "seconds": {str(n): s for n, s in secs.items()}, "last_n": max(errors)}
    for thr in THRESHOLDS:
        n_all = all_within(errors, thr)
        out[f"n_all_{thr}"] = n_all
        out[f"n_each_{thr}"] = first_within(errors, thr)
        out[f"grads_{thr}"] = None if n_all is None else grads[n_all] * len(target)
        out[f"forward_{thr}"] = None if n_all is None else fwds[n_all] * len(target)
    return out


def best_fixed(rules: Dict[str, Dict], thr: float) -> Optional[Dict]:
    """The cheapest rule (gradient evaluations, then forward-only) reaching thr on every input."""
    ok = [(r[f"grads_{thr}"], r[f"forward_{thr}"], name) for name, r in rules.items() if r[f"grads_{thr}"] is not None]
    if not ok:
        return None
    g, f, name = min(ok)
    return {"rule": name, "n": rules[name][f"n_all_{thr}"], "grads": g, "forward": f}


def run_rtol(kind: str, case, target, ref, rtol: float) -> Dict:
    t0 = time.perf_counter()
    res = _call(kind, case, target, rtol=rtol)
    secs = time.perf_counter() - t0
    ex = res.extras
    err = ar.rel_l2(res.attributions, ref)
    est = torch.as_tensor(ex["error_estimate"]).double()
    return {"rtol": rtol, "seconds": secs, "errors": err.tolist(),
            "n_evaluations": torch.as_tensor(ex["n_evaluations"]).tolist(),
            "n_forward": torch.as_tensor(ex["n_forward"]).tolist(),
            "error_estimate": est.tolist(),
            "converged": torch.as_tensor(ex["converged"]).tolist(),
            "ratio": (est / err.clamp_min(1e-300)).tolist()}


def run_case(case: am.Case, grid, with_rtol: bool, log, finer_inputs: Optional[int],
             cache: Optional[Path] = None, reuse: Optional[Dict] = None) -> Dict:
    """One model's entry. cache: a folder keeping the reference maps (a rerun loads them);
    reuse: this model's entry of an earlier run with the same inputs, whose reference check
    and fixed-rule results are kept (only rtol mode runs again)."""
    B = case.inputs.shape[0]
    with torch.no_grad():
        target = case.model(case.inputs).argmax(1)
    key, saved = None, None
    if cache is not None:
        key = cache / f"{case.name}-{B}-{ar.REF_K}-{case.ref_extra}.pt"
        if key.is_file():
            saved = torch.load(key, weights_only=True)
            if not (torch.equal(saved["inputs"], case.inputs) and torch.equal(saved["target"], target)):
                saved = None
            if saved is not None:
                if reuse is not None:
                    entry = json.loads(json.dumps(reuse))
                    log("  reference and fixed rules from the cache and the earlier run")
                    for kind in ("ig", "idg"):
                        entry["methods"][kind]["default_50"] = default_run(kind, case, target, saved[kind])
                        if with_rtol:
                            entry["methods"][kind]["rtol"] = rtol_runs(kind, case, target, saved[kind], log)
                    return entry
    if saved is not None and "reference_json" not in saved:
        saved = None
    entry = _run_case_fresh(case, grid, with_rtol, log, finer_inputs, target, saved)
    if key is not None and saved is None:
        key.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"inputs": case.inputs, "target": target, "ig": entry.pop("_ref_ig"),
                    "idg": entry.pop("_ref_idg"), "reference_json": json.dumps(entry["reference"])}, key)
    entry.pop("_ref_ig", None)
    entry.pop("_ref_idg", None)
    return entry


def default_run(kind, case, target, ref) -> Dict:
    """The library defaults (50 steps): true errors, and the estimate a fixed-step call carries."""
    res = _call(kind, case, target, n_steps=DEFAULT_STEPS)
    err = ar.rel_l2(res.attributions, ref)
    out = {"errors": err.tolist(), "settings": DEFAULTS[kind]}
    if "error_estimate" in res.extras:
        est = torch.as_tensor(res.extras["error_estimate"]).double()
        out["error_estimate"] = est.tolist()
        out["ratio"] = (est / err.clamp_min(1e-300)).tolist()
    return out


def rtol_runs(kind, case, target, ref, log) -> Dict:
    out = {str(r): run_rtol(kind, case, target, ref, r) for r in RTOLS}
    for r, v in out.items():
        log(f"    {kind} rtol={r}: evals {sum(v['n_evaluations'])}, max err {max(v['errors']):.2e}, "
            f"ratios {min(v['ratio']):.2f}..{max(v['ratio']):.2f}")
    return out


def _run_case_fresh(case, grid, with_rtol, log, finer_inputs, target, saved=None) -> Dict:
    """The reference (or the cached one, `saved`), every fixed rule on the grid, the defaults, rtol."""
    B = case.inputs.shape[0]
    if saved is not None:
        log("  reference from the cache (its check against the finer rule as computed then)")
        ref = {"ig": saved["ig"], "idg": saved["idg"]}
        entry = {"note": case.note, "n_inputs": B, "input_shape": list(case.inputs.shape[1:]),
                 "target": target.tolist(), "reference": json.loads(saved["reference_json"]), "methods": {}}
        return _run_methods(case, grid, with_rtol, log, target, ref, entry)
    baseline = torch.zeros_like(case.inputs)
    t0 = time.perf_counter()
    nodes, weights = ar.reference_rule()
    ref = ar.path_integrals(case.model, case.inputs, baseline, target, nodes, weights, k=ar.REF_K,
                            max_extra=case.ref_extra)
    t_ref = time.perf_counter() - t0
    finer_inputs = case.finer_inputs if finer_inputs is None else finer_inputs
    k = B if finer_inputs is None else min(B, finer_inputs)
    fn, fw = ar.finer_rule()
    fine = ar.path_integrals(case.model, case.inputs[:k], baseline[:k], target[:k], fn, fw, k=ar.FINER_K,
                             max_extra=case.ref_extra)
    check = {m: ar.rel_l2(ref[m][:k], fine[m]).tolist() for m in ("ig", "idg")}
    complete = ((ref["ig"].reshape(B, -1).sum(1) - ref["change"]).abs() / ref["change"].abs().clamp_min(1e-300))
    log(f"  reference {len(nodes)} nodes + bisections, {ref['points'].min()}-{ref['points'].max()} points "
        f"({t_ref:.1f} s), vs finer {len(fn)} nodes + bisections on {k} inputs: "
        f"IG {max(check['ig']):.1e}, IDG {max(check['idg']):.1e}; IG completeness {complete.max():.1e}")
    entry = {"note": case.note, "n_inputs": B, "input_shape": list(case.inputs.shape[1:]),
             "target": target.tolist(),
             "reference": {"nodes": len(nodes), "finer_nodes": len(fn), "finer_inputs": k,
                           "points": ref["points"].tolist(), "finer_points": fine["points"].tolist(),
                           "max_extra": case.ref_extra,
                           "rel_diff_finer": check, "max_rel_diff_finer": max(max(v) for v in check.values()),
                           "ig_completeness_rel": complete.tolist(), "seconds": t_ref,
                           "path_change": ref["change"].tolist()},
             "methods": {}}
    return _run_methods(case, grid, with_rtol, log, target, ref, entry)


def _run_methods(case, grid, with_rtol, log, target, ref, entry) -> Dict:
    for kind in ("ig", "idg"):
        rules, cap = {}, None
        for name in sorted(RULES[kind], key=lambda r: r != "gauss"):  # Gauss-Legendre first: it sets the cap
            rules[name] = run_rule(kind, case, target, ref[kind], RULES[kind][name], grid, log, cap)
            reached = rules[name][f"n_all_{min(THRESHOLDS)}"]
            if reached is not None:
                cap = min(cap or reached * CAP, reached * CAP)
        rules = {name: rules[name] for name in RULES[kind]}
        m = {"rules": rules, "default_50": default_run(kind, case, target, ref[kind]),
             "best": {str(t): best_fixed(rules, t) for t in THRESHOLDS}}
        if with_rtol:
            m["rtol"] = rtol_runs(kind, case, target, ref[kind], log)
        entry["methods"][kind] = m
    entry["_ref_ig"], entry["_ref_idg"] = ref["ig"], ref["idg"]
    return entry


# ------------------------------------------------------------------ summaries
def calibration(ratios: List[float]) -> Dict:
    r = np.asarray(ratios, dtype=np.float64)
    bins = np.searchsorted(np.asarray(CALIB_EDGES), r, side="right")
    counts = np.bincount(bins, minlength=len(CALIB_LABELS)).tolist()
    within = float(np.mean((r >= 1 / 3) & (r <= 3))) if r.size else float("nan")
    return {"labels": list(CALIB_LABELS), "counts": counts, "within_1/3_3": within, "n": int(r.size)}


def summarize(models: Dict[str, Dict], with_rtol: bool) -> Dict:
    s = {}
    for kind in ("ig", "idg"):
        k = {}
        for thr in THRESHOLDS:
            total, missing = 0, []
            for name, e in models.items():
                b = e["methods"][kind]["best"][str(thr)]
                if b is None:
                    missing.append(name)
                else:
                    total += b["grads"]
            k[f"best_fixed_total_{thr}"] = total
            k[f"best_fixed_missing_{thr}"] = missing
        defaults = [x for e in models.values() for x in e["methods"][kind]["default_50"]["errors"]]
        k["default_50_maps_over_1pct"] = int(sum(x > 0.01 for x in defaults))
        k["default_50_maps"] = len(defaults)
        k["default_50_worst"] = max(defaults)
        k["default_50_total_grads"] = DEFAULT_STEPS * len(defaults)
        # maps at least 0.1 % off only: below, an estimate can be 1e3 x a 1e-9 error and harmless
        ratios = [x for e in models.values() for x, err in zip(e["methods"][kind]["default_50"].get("ratio", []),
                                                               e["methods"][kind]["default_50"]["errors"]) if err >= 1e-3]
        if ratios:
            k["default_50_calibration"] = calibration(ratios)
        if with_rtol:
            for r in RTOLS:
                runs = [e["methods"][kind]["rtol"][str(r)] for e in models.values()]
                errs = [x for v in runs for x in v["errors"]]
                # the models where some fixed rule reached the threshold: the fair comparison
                comparable = [e["methods"][kind]["rtol"][str(r)] for e in models.values()
                              if e["methods"][kind]["best"][str(r)] is not None]
                k[f"rtol_{r}"] = {
                    "total_evaluations_comparable": int(sum(sum(v["n_evaluations"]) for v in comparable)),
                    "total_evaluations": int(sum(sum(v["n_evaluations"]) for v in runs)),
                    "total_forward": int(sum(sum(v["n_forward"]) for v in runs)),
                    "maps": len(errs),
                    "within_rtol": float(np.mean([x <= r for x in errs])),
                    "over_3x_rtol": int(sum(x > 3 * r for x in errs)),
                    "worst": max(errs),
                    "not_converged": int(sum(not c for v in runs for c in v["converged"])),
                    "calibration": calibration([x for v in runs for x in v["ratio"]]),
                }
        s[kind] = k
    if with_rtol:
        s["calibration_all"] = calibration([x for e in models.values() for kind in ("ig", "idg")
                                            for r in RTOLS for x in e["methods"][kind]["rtol"][str(r)]["ratio"]])
    return s


def _fmt_n(n, last=None):
    return ("—" if last is None else f"> {last}") if n is None else str(n)


def _spread(ns: List[Optional[int]]) -> str:
    vals = [n for n in ns if n is not None]
    miss = len(ns) - len(vals)
    if not vals:
        return f"none of {len(ns)}"
    txt = f"{min(vals)}–{max(vals)}" if min(vals) != max(vals) else str(vals[0])
    return txt + (f" (+{miss} not reached)" if miss else "")


def _hist_inline(c: Dict) -> str:
    return ", ".join(f"{lab}: {n}" for lab, n in zip(c["labels"], c["counts"]))


def fixed_tables(study: Dict) -> List[str]:
    """Markdown tables of the fixed rules: per model, n for every input (and its spread)."""
    out = []
    for kind in ("ig", "idg"):
        names = list(RULES[kind])
        for thr in THRESHOLDS:
            pct = f"{thr * 100:g} %"
            out += [f"### {kind.upper()}: smallest n with every input within {pct} (per-input spread)", "",
                    "| model | " + " | ".join(names) + " | best fixed (grads, fwd) |",
                    "|---" * (len(names) + 2) + "|"]
            for name, e in study["models"].items():
                rules = e["methods"][kind]["rules"]
                cells = [f"{_fmt_n(rules[r][f'n_all_{thr}'], rules[r]['last_n'])} ({_spread(rules[r][f'n_each_{thr}'])})"
                         for r in names]
                b = e["methods"][kind]["best"][str(thr)]
                best = "none" if b is None else f"{b['rule']} n={b['n']}: {b['grads']}, {b['forward']}"
                out.append(f"| {name} | " + " | ".join(cells) + f" | {best} |")
            out.append("")
    return out


def difficulty_table(study: Dict) -> List[str]:
    """Per input: the n the model's best fixed rule needs (first grid n within the threshold) and
    what rtol mode spent on it: the spread a fixed n_steps must cover."""
    out = ["## Difficulty per input", "",
           "Per input (in order): the smallest grid n at which the model's best fixed rule (in hindsight, at that "
           "threshold) is within it; `-`: not by 2048. With rtol mode: its gradient evaluations per input.", ""]
    for kind in ("ig", "idg"):
        out += [f"### {kind.upper()}", "", "| model | 1 %: rule, n per input | 0.1 %: rule, n per input |"
                + (" rtol=0.01 | rtol=0.001 |" if study["rtol_available"] else ""),
                "|---|---|---|" + ("---|---|" if study["rtol_available"] else "")]
        for name, e in study["models"].items():
            m = e["methods"][kind]
            cells = []
            for thr in THRESHOLDS:
                b = m["best"][str(thr)]
                rule = b["rule"] if b is not None else "gauss"
                each = m["rules"][rule][f"n_each_{thr}"]
                cells.append(f"{rule}: " + " ".join("-" if n is None else str(n) for n in each))
            if study["rtol_available"]:
                cells += [" ".join(map(str, m["rtol"][str(r)]["n_evaluations"])) for r in RTOLS]
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def markdown(study: Dict) -> str:
    env, s = study["environment"], study["summary"]
    lines = [f"# Accuracy study (issue #15 item 8) — {env['date']}", "",
             f"`{study['command']}`", ""]
    if study.get("reference_computed_by"):
        lines += [f"Reference maps (and their check) computed by `{study['reference_computed_by']}`.", ""]
    if study.get("fixed_rules_from"):
        lines += [f"References and fixed rules from an earlier run of the same code and inputs (their cached maps): "
                  f"`{study['fixed_rules_from']}`", ""]
    lines += [
             f"Machine: {env['machine_note']}. torch {env['torch']}, pathattr {env['pathattr']}, float64, "
             f"zero baseline, target = argmax. Wall times in the JSON are from a shared machine.", "",
             f"Reference: graded composite Gauss–Legendre ({study['reference_nodes']} nodes), checked against a "
             f"finer one ({study['finer_nodes']} nodes). Error = relative L2 distance of the map to the reference. "
             "Counts are gradient evaluations (forward+backward of one path point) per input; "
             "forward-only evaluations (probes) are listed separately. n grid: "
             + ", ".join(map(str, study["grid"])) + ".", "",
             "Panels that are not resolved (large top Legendre coefficients, or an end value that jumps against the "
             "neighbour's: ReLU kinks) are bisected, the worst first, up to a budget of extra points per input.", "",
             "## Models", "", "| model | inputs | reference points per input | reference vs finer (max rel. diff, "
             "IG / IDG; inputs checked) | note |", "|---|---|---|---|---|"]
    for name, e in study["models"].items():
        ref = e["reference"]
        r = ref["rel_diff_finer"]
        pts = ref.get("points", [ref["nodes"]])
        lines.append(f"| {name} | {e['n_inputs']} × {tuple(e['input_shape'])} | {min(pts)}–{max(pts)} | "
                     f"{max(r['ig']):.1e} / {max(r['idg']):.1e}; {ref['finer_inputs']} | {e['note']} |")
    lines += ["", "## Library defaults (n_steps = 50)", ""]
    for kind in ("ig", "idg"):
        k = s[kind]
        lines.append(f"- {kind.upper()} ({DEFAULTS[kind]}): {k['default_50_maps_over_1pct']} of {k['default_50_maps']} maps more than 1 % "
                     f"from the reference, worst {k['default_50_worst'] * 100:.1f} %, {k['default_50_total_grads']} gradient "
                     "evaluations." + (f" The estimate these calls carry (`extras['error_estimate']`) is within [1/3, 3] × "
                                      f"the true error for {k['default_50_calibration']['within_1/3_3'] * 100:.1f} % of the "
                                      f"{k['default_50_calibration']['n']} maps ≥ 0.1 % off "
                                      f"(histogram: {_hist_inline(k['default_50_calibration'])})."
                                      if "default_50_calibration" in k else ""))
    if study.get("findings"):  # written by hand into the JSON after a run; kept by --summarize
        lines += ["", "## Reading the numbers", ""] + [f"- {f}" for f in study["findings"]]
    lines += ["", "## Fixed rules", ""] + fixed_tables(study) + difficulty_table(study)
    lines += ["## Best fixed rule in hindsight vs rtol mode (total over the study)", ""]
    if not study["rtol_available"]:
        lines.append("rtol mode: not available in this build (the API does not accept `rtol=`).")
    lines += ["", "| method | threshold | best fixed in hindsight (grads) | rtol mode (grads, fwd) | ratio | "
              "maps within | over 3×rtol | worst |", "|---|---|---|---|---|---|---|---|"]
    for kind in ("ig", "idg"):
        for thr in THRESHOLDS:
            k = s[kind]
            fixed = k[f"best_fixed_total_{thr}"]
            miss = k[f"best_fixed_missing_{thr}"]
            ftxt = f"{fixed}" + (f" (not reached: {', '.join(miss)})" if miss else "")
            if study["rtol_available"]:
                r = k[f"rtol_{thr}"]
                rt = f"{r['total_evaluations']}, {r['total_forward']}"
                if miss:
                    rt = f"{r['total_evaluations_comparable']} on the same models ({rt} on all)"
                lines.append(f"| {kind.upper()} | {thr * 100:g} % | {ftxt} | {rt} | "
                             f"{r['total_evaluations_comparable'] / max(fixed, 1):.2f} | {r['within_rtol'] * 100:.1f} % | "
                             f"{r['over_3x_rtol']} | {r['worst'] * 100:.2f} % |")
            else:
                lines.append(f"| {kind.upper()} | {thr * 100:g} % | {ftxt} | — | — | — | — | — |")
    if study["rtol_available"]:
        lines += rtol_tables(study)
        lines += ["", "## Calibration of the error estimate (estimate ÷ true error, per map)", ""]
        for key, title in [("ig", "IG"), ("idg", "IDG")]:
            for r in RTOLS:
                c = s[key][f"rtol_{r}"]["calibration"]
                lines.append(f"{title} rtol={r}: {c['within_1/3_3'] * 100:.1f} % of {c['n']} maps within [1/3, 3]")
        c = s["calibration_all"]
        lines += ["", "All maps:", "", "```"]
        width = max(c["counts"]) or 1
        for lab, n in zip(c["labels"], c["counts"]):
            lines.append(f"{lab:>8} | {'#' * int(round(40 * n / width)):<40} {n}")
        lines += ["```", f"{c['within_1/3_3'] * 100:.1f} % of {c['n']} maps within [1/3, 3].", ""]
        lines += goals(study)
    return "\n".join(lines) + "\n"


def rtol_tables(study: Dict) -> List[str]:
    """Per model: rtol mode's evaluations (sum and per-input range), errors and estimates."""
    out = []
    for kind in ("ig", "idg"):
        out += ["", f"### {kind.upper()} rtol mode per model (gradient evaluations: total, per-input min–max; "
                    "best fixed in hindsight; max true error; estimate ÷ true error min–max; not converged)", "",
                "| model | " + " | ".join(f"rtol={r}" for r in RTOLS) + " |", "|---" * (len(RTOLS) + 1) + "|"]
        for name, e in study["models"].items():
            cells = []
            for r in RTOLS:
                v = e["methods"][kind]["rtol"][str(r)]
                b = e["methods"][kind]["best"][str(r)]
                ne = v["n_evaluations"]
                cells.append(f"{sum(ne)} ({min(ne)}–{max(ne)}); fixed {'—' if b is None else b['grads']}; "
                             f"err {max(v['errors']) * 100:.3g} %; ratio {min(v['ratio']):.2g}–{max(v['ratio']):.2g}; "
                             f"{sum(not c for c in v['converged'])}")
            out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def goals(study: Dict) -> List[str]:
    s = study["summary"]
    out = ["## Goals (issue #15)", ""]
    for kind in ("ig", "idg"):
        for r in RTOLS:
            v, fixed = s[kind][f"rtol_{r}"], s[kind][f"best_fixed_total_{r}"]
            cost = v["total_evaluations_comparable"] <= 0.5 * fixed
            acc = v["within_rtol"] >= 0.95 and v["over_3x_rtol"] == 0
            pct = f"{r * 100:g} %"
            out.append(f"- {kind.upper()} rtol={r}: cost {v['total_evaluations_comparable']} vs ½ × {fixed} = {fixed / 2:.0f} "
                       f"(models where a fixed rule reaches {pct}): **{'met' if cost else 'not met'}**; "
                       f"{v['within_rtol'] * 100:.1f} % of maps within {pct} (≥ 95 %), {v['over_3x_rtol']} above "
                       f"{3 * r * 100:g} % (0): **{'met' if acc else 'not met'}**")
    c = s["calibration_all"]
    out.append(f"- estimate within [1/3, 3] × true error for ≥ 90 % of maps: {c['within_1/3_3'] * 100:.1f} %: "
               f"**{'met' if c['within_1/3_3'] >= 0.9 else 'not met'}**")
    out.append("- CPU wall time per input at 1 % error against Captum: `--timing`, in "
               "accuracy-timing-cpu-<date>.md next to this file.")
    return out + [""]


def environment(threads: int) -> Dict:
    return {"date": datetime.date.today().isoformat(), "python": platform.python_version(),
            "torch": torch.__version__, "pathattr": pa.__version__, "cpu_threads": threads,
            "machine_note": f"CPU ({platform.machine()}), {threads} torch threads, a 2-core VM shared with other "
                            "sessions (wall times are indicative only; counts and errors are exact)"}


def _quiet():
    # the study calls small n_steps on purpose: pathattr's "pass rtol=" warning says nothing new here
    import warnings

    warnings.filterwarnings("ignore", message="estimated relative error", category=RuntimeWarning)


def _log(*args):
    print(*args, flush=True)


def _one_model(job) -> Dict:
    """One model's entry (in a worker process with --jobs > 1: one torch thread each)."""
    name, n_inputs, grid, finer_inputs, threads, cache, reuse = job
    torch.set_num_threads(threads)
    _quiet()
    (case,) = am.build_cases(n_inputs, [name])
    lines = []

    def log(*args):
        lines.append(" ".join(map(str, args)))
        _log(f"[{name}]", *args)

    t = time.perf_counter()
    entry = run_case(case, grid, rtol_available(), log, finer_inputs, cache, reuse)
    entry["seconds"] = time.perf_counter() - t
    entry["log"] = lines
    return entry


def run_study(names, n_inputs, grid, log=_log, finer_inputs=None, jobs: int = 1, cache: Optional[Path] = None,
              reuse: Optional[Dict] = None) -> Dict:
    with_rtol = rtol_available()
    names = [n for n in am.ALL_MODELS if n in names]
    old = (reuse or {}).get("models", {}) if (reuse or {}).get("grid") == list(grid) else {}
    work = [(n, n_inputs, grid, finer_inputs, torch.get_num_threads(), cache, old.get(n)) for n in names]
    t0 = time.perf_counter()
    if jobs > 1:
        import multiprocessing as mp

        # the most expensive models first, so that the pool's two workers finish together
        order = sorted(range(len(work)), key=lambda i: -am.COST_HINT.get(names[i], 0))
        with mp.get_context("spawn").Pool(jobs) as pool:
            done = pool.map(_one_model, [work[i] for i in order], chunksize=1)
        models = {names[i]: e for i, e in sorted(zip(order, done))}
    else:
        models = {n: _one_model(w) for n, w in zip(names, work)}
    study = {"environment": environment(torch.get_num_threads()), "grid": list(grid),
             "thresholds": list(THRESHOLDS), "rtols": list(RTOLS), "rtol_available": with_rtol,
             "reference_nodes": len(ar.reference_rule()[0]), "finer_nodes": len(ar.finer_rule()[0]),
             "models": models, "seconds": time.perf_counter() - t0}
    study["summary"] = summarize(models, with_rtol)
    return study


# ------------------------------------------------------------------ timing
def run_timing(study_path: Path, names: List[str], repeat: int, log=print) -> Dict:
    """CPU wall time per input at 1 % error: pathattr rtol=0.01 vs Captum IG at the n its rule needs."""
    from captum.attr import IntegratedGradients

    from .harness import paired_ratio, time_interleaved

    study = json.loads(study_path.read_text())
    with_rtol = rtol_available()
    rows = {}
    for case in am.build_cases(study["models"][names[0]]["n_inputs"] if names else 8, names):
        e = study["models"][case.name]["methods"]["ig"]["rules"]
        with torch.no_grad():
            target = case.model(case.inputs).argmax(1)
        B = case.inputs.shape[0]
        ig = IntegratedGradients(case.model)
        providers = {}
        steps = {}
        for rule, method in (("midpoint", "riemann_middle"), ("gauss", "gausslegendre")):
            n = e[rule]["n_all_0.01"]
            if n is not None:
                steps[rule] = n
                providers[f"captum_{rule}"] = (lambda n=n, method=method: ig.attribute(
                    case.inputs, target=target, n_steps=n, method=method))
                providers[f"pathattr_{rule}"] = (lambda n=n, method=method: pa.integrated_gradients(
                    case.model, case.inputs, target=target, n_steps=n, method=method))
        if with_rtol:
            providers["pathattr_rtol"] = lambda: pa.integrated_gradients(case.model, case.inputs, target=target,
                                                                         rtol=0.01)
        samples = time_interleaved(providers, repeat=repeat, warmup=1)
        row = {"steps": steps, "batch": B,
               "median_s_per_input": {k: float(np.median(v)) / B for k, v in samples.items()},
               "samples_s": samples}
        peers = [k for k in samples if k.startswith("captum_")]
        if with_rtol and peers:
            best = min(peers, key=lambda k: np.median(samples[k]))
            row["best_captum"] = best
            row["rtol_over_best_captum_paired"] = paired_ratio(samples["pathattr_rtol"], samples[best])
        rows[case.name] = row
        log(f"{case.name}: " + ", ".join(f"{k} {v * 1e3:.2f} ms/input" for k, v in row["median_s_per_input"].items()))
    return {"environment": environment(torch.get_num_threads()), "study": str(study_path),
            "rtol_available": with_rtol, "models": rows}


def timing_markdown(t: Dict) -> str:
    env = t["environment"]
    lines = [f"# CPU wall time per input at 1 % error — {env['date']}", "", f"`{t['command']}`", "",
             f"Machine: {env['machine_note']}. float64, batch of each model's study inputs, paired medians "
             "(benchmarks/harness.py time_interleaved). Captum IG and pathattr's fixed rules at the smallest n "
             f"of the study's grid where every input of the model is within 1 % (study: {t['study']}); the grid is "
             "powers of 2, so the fixed rules' n can be up to 2x the least that would do. Captum with its "
             "default internal_batch_size (one batch of n x B rows).", "",
             "| model | steps (midpoint, gauss) | " + " | ".join(PROVIDERS) + " | rtol ÷ best Captum (paired) |",
             "|---" * (len(PROVIDERS) + 3) + "|"]
    for name, r in t["models"].items():
        m = r["median_s_per_input"]
        cells = [f"{m[p] * 1e3:.2f} ms" if p in m else "—" for p in PROVIDERS]
        ratio = r.get("rtol_over_best_captum_paired")
        rtxt = "—" if ratio is None else "%.2f (%s)" % (ratio, r["best_captum"])
        lines.append(f"| {name} | {r['steps'].get('midpoint', '—')}, {r['steps'].get('gauss', '—')} | " + " | ".join(cells)
                     + f" | {rtxt} |")
    if not t["rtol_available"]:
        lines += ["", "rtol mode: not available in this build."]
    return "\n".join(lines) + "\n"


PROVIDERS = ("captum_midpoint", "captum_gauss", "pathattr_midpoint", "pathattr_gauss", "pathattr_rtol")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/accuracy-cpu-2026-12-07.json"))
    p.add_argument("--md", type=Path, default=None, help="markdown summary (default: --out with .md)")
    p.add_argument("--quick", action="store_true", help="smoke test: 2 models x 2 inputs, grid to 128")
    p.add_argument("--models", nargs="*", default=None, help=f"subset of {am.ALL_MODELS}")
    p.add_argument("--inputs", type=int, default=None, help="inputs per model (default 8; --quick 2)")
    p.add_argument("--finer-inputs", type=int, default=None,
                   help="check the reference against the finer rule on the first k inputs (default all)")
    p.add_argument("--timing", action="store_true", help="CPU wall-time comparison (needs --study)")
    p.add_argument("--study", type=Path, default=None, help="the study JSON the timing takes its n from")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--jobs", type=int, default=1, help="models run in this many processes (default 1)")
    p.add_argument("--cache", type=Path, default=None, help="folder keeping the reference maps between runs")
    p.add_argument("--reuse", type=Path, default=None,
                   help="an earlier study JSON (same grid; needs --cache): keep its reference check and fixed "
                        "rules, run only rtol mode again")
    p.add_argument("--summarize", type=Path, default=None, help="recompute the summary and .md of a study JSON")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared 2-core machine more threads oversubscribe)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    command = "python -m benchmarks.accuracy " + " ".join(sys.argv[1:] if argv is None else argv)
    if a.summarize is not None:  # rewrite the summary and markdown of a study JSON (no model runs)
        study = json.loads(a.summarize.read_text())
        for e in study["models"].values():
            for kind in ("ig", "idg"):
                e["methods"][kind]["default_50"]["settings"] = DEFAULTS[kind]
        study["summary"] = summarize(study["models"], study["rtol_available"])
        a.summarize.write_text(json.dumps(study, indent=1))
        (a.md or a.summarize.with_suffix(".md")).write_text(markdown(study))
        return 0
    if a.timing:
        if a.study is None:
            p.error("--timing needs --study JSON")
        names = a.models or ["digits_cnn", "tanh_mlp", "transformer_ln", "resnet_relu"]
        out = run_timing(a.study, names, a.repeat)
        out["command"] = command
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(out, indent=1))
        (a.md or a.out.with_suffix(".md")).write_text(timing_markdown(out))
        return 0
    names = a.models or (["gelu_mlp", "tanh_mlp"] if a.quick else list(am.STUDY_MODELS))
    n_inputs = a.inputs or (2 if a.quick else 8)
    grid = QUICK_GRID if a.quick else GRID
    reuse = json.loads(a.reuse.read_text()) if a.reuse is not None and a.reuse.is_file() else None
    study = run_study(names, n_inputs, grid, finer_inputs=a.finer_inputs, jobs=a.jobs, cache=a.cache, reuse=reuse)
    study["command"] = command
    if reuse is not None:  # the references and fixed rules came from that run
        study["fixed_rules_from"] = reuse.get("fixed_rules_from", reuse.get("command"))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(study, indent=1))
    md = a.md or a.out.with_suffix(".md")
    md.write_text(markdown(study))
    print(f"wrote {a.out} and {md} ({study['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
