"""Left-IG / Split IG (Miglani et al. 2020) on the shared engine: docs/methods.md §3.

IG over the left part [0, alpha*] of the straight path only, where alpha* is the
first point at which F reaches tau = F(x') + r (F(x) - F(x')) (threshold="baseline",
default) or tau = r * max_alpha F(p(alpha)) (threshold="max", the IDG authors'
variant). alpha* comes from a forward-only probe curve F(p(j/N)), j = 0..N, linearly
interpolated between probe points (csrc/truncate.cpp; definition in
`pathattr.reference.truncate`). The quadrature rule on [0, 1] is mapped onto
[0, alpha*]: alphas and weights both scaled by alpha*. If F(x) <= F(x'), or the curve
never crosses tau upward, the whole path is used (details: extras["used_whole_path"]).

Cost per input: N + 1 forward-only (probe) + n_steps forward+backward, plus one
forward at p(alpha*) when a delta or details are asked for.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from ..engine import schedule as schedules
from ..engine.checks import check_choice, check_real, check_steps, check_tolerance
from ..engine.core import PathBatch, PathEngine
from ..result import AttributionResult
from .common import RULE_ARG, empty_result, finish, fixed_rule_estimate, run_to_tolerance

NAME = "left_ig"


def settings(n_steps: int = 50, rule: str = "gausslegendre", r: float = 0.9, threshold: str = "baseline",
             n_probe: Optional[int] = None, rtol: Optional[float] = None, min_steps: Optional[int] = None,
             max_steps: Optional[int] = None) -> Dict[str, Any]:
    """Validated settings. n_probe: probe intervals N (default max(2, n_steps // 4));
    r in (0, 1]; threshold "baseline" or "max"; rule: the quadrature rule (as in IG);
    rtol (with min_steps, max_steps): [0, alpha*] refined to that relative error
    (docs/methods.md §14) instead of the rule."""
    tol = check_tolerance(rtol, min_steps, max_steps)
    n = check_steps(n_steps)
    check_choice(rule, RULE_ARG, schedules.RULES)
    if rule == "riemann_trapezoid" and n < 2:
        raise ValueError("n_steps must be >= 2 for the rule 'riemann_trapezoid'")
    r = check_real(r, "r", 0.0, 1.0, low_open=True)  # the fraction of F(x) - F(x') kept
    check_choice(threshold, "threshold", schedules.THRESHOLDS)
    probe = check_steps(n_probe if n_probe is not None else max(2, n // 4), "n_probe")
    return {"n_steps": n, "rule": rule, "r": float(r), "threshold": threshold, "n_probe": probe, **tol}


def run(engine: PathEngine, batch: PathBatch, cfg: Dict[str, Any], want_delta: bool, want_details: bool) -> AttributionResult:
    if batch.size == 0:
        return empty_result(batch, NAME, cfg)
    B = batch.size
    # As in IDG: one forward-only pass over the probe points gives the curve and both
    # ends (F(x) taken from model(x) itself when target=None needed it anyway).
    f_x = engine.endpoints(batch, baselines=False)[0] if batch.target is None else None
    probe_a = schedules.probe_alphas(cfg["n_probe"])
    curve = engine.path_values(batch, probe_a.view(1, -1).expand(B, -1))
    if f_x is not None:
        curve[:, -1] = f_x
    alpha_star, whole = schedules.truncate(curve, cfg["r"], cfg["threshold"])
    if cfg.get("rtol") is not None:
        res = run_to_tolerance(engine, batch, cfg, NAME, scaled=False, want_details=want_details, upper=alpha_star,
                               probe_alphas=probe_a, probe_curve=curve,
                               extras={"alpha_star": alpha_star, "used_whole_path": whole})
        res.extras["truncated_value"] = res.extras["f_end"]
        res.extras["n_forward"] += cfg["n_probe"] + 1
        return res
    rule = schedules.uniform(cfg["rule"], cfg["n_steps"], B)
    scale = alpha_star.view(B, 1)
    sched = schedules.Schedule(rule.alphas * scale, rule.weights * scale)
    integral = engine.integrate(batch, sched.alphas, sched.weights, importance="none")
    attr = batch.diff() * integral.acc
    ends = None
    f_star = None
    if want_delta or want_details:
        # Completeness on the truncated path: sum attr = F(p(alpha*)) - F(x').
        f_star = engine.path_values(batch, alpha_star.view(B, 1))[:, 0]
        ends = (f_star, curve[:, 0])
    res = finish(batch, NAME, cfg, attr, sched, integral, ends, delta_from_sum=True, probe_alphas=probe_a,
                 probe_curve=curve,
                 extras={"alpha_star": alpha_star, "used_whole_path": whole, "truncated_value": f_star})
    res.end_value = curve[:, -1]
    res.start_value = curve[:, 0]
    return res if f_star is None else fixed_rule_estimate(res, cfg["n_steps"], cfg["n_probe"] + 2, end=f_star)
