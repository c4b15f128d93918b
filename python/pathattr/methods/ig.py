"""Integrated Gradients (Sundararajan et al. 2017) on the shared engine: docs/methods.md §1.

IG(x) = (x - x') * sum_k w_k g(alpha_k) for one of five quadrature rules. The rules
are Captum's, except "riemann_trapezoid", which here is the true trapezoid rule
(weights 1/(n-1), ends halved; Captum's weights are 1/n and sum to 1 - 1/n).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from ..engine import schedule as schedules
from ..engine.checks import check_choice, check_steps, check_tolerance
from ..engine.core import PathBatch, PathEngine
from ..result import AttributionResult
from .common import RULE_ARG, empty_result, finish, fixed_rule_estimate, run_to_tolerance

NAME = "ig"


def settings(n_steps: int = 50, rule: str = "gausslegendre", rtol: Optional[float] = None,
             min_steps: Optional[int] = None, max_steps: Optional[int] = None) -> Dict[str, Any]:
    """Validated settings: n_steps (>= 1; >= 2 for the trapezoid) and the quadrature rule;
    or rtol (with min_steps, max_steps): each input refined to that relative error
    (docs/methods.md §14), n_steps and the rule then unused."""
    n = check_steps(n_steps)
    check_choice(rule, RULE_ARG, schedules.RULES)
    if rule == "riemann_trapezoid" and n < 2:
        raise ValueError("n_steps must be >= 2 for the rule 'riemann_trapezoid'")
    return {"n_steps": n, "rule": rule, **check_tolerance(rtol, min_steps, max_steps)}


def run(engine: PathEngine, batch: PathBatch, cfg: Dict[str, Any], want_delta: bool, want_details: bool) -> AttributionResult:
    if batch.size == 0:
        return empty_result(batch, NAME, cfg)
    if cfg.get("rtol") is not None:
        return run_to_tolerance(engine, batch, cfg, NAME, scaled=False, want_details=want_details)
    sched = schedules.uniform(cfg["rule"], cfg["n_steps"], batch.size)
    ends = engine.endpoints(batch) if (batch.target is None or want_delta or want_details) else None
    integral = engine.integrate(batch, *engine.schedule_tensors(batch, sched), importance="none")
    attr = batch.diff() * integral.acc
    res = finish(batch, NAME, cfg, attr, sched, integral, ends, delta_from_sum=True,
                 diagnostics=want_delta or want_details)
    return fixed_rule_estimate(res, cfg["n_steps"], 0 if ends is None else 2) if want_delta or want_details else res
