"""Integrated Gradients (Sundararajan et al. 2017) on the shared engine: docs/methods.md §1.

IG(x) = (x - x') * sum_k w_k g(alpha_k) for one of five quadrature rules. The rules
are Captum's, except "riemann_trapezoid", which here is the true trapezoid rule
(weights 1/(n-1), ends halved; Captum's weights are 1/n and sum to 1 - 1/n).
"""
from __future__ import annotations

from typing import Any, Dict

from ..engine import schedule as schedules
from ..engine.checks import check_choice, check_steps
from ..engine.core import PathBatch, PathEngine
from ..result import AttributionResult
from .common import RULE_ARG, empty_result, finish

NAME = "ig"


def settings(n_steps: int = 50, rule: str = "gausslegendre") -> Dict[str, Any]:
    """Validated settings: n_steps (>= 1; >= 2 for the trapezoid) and the quadrature rule."""
    n = check_steps(n_steps)
    check_choice(rule, RULE_ARG, schedules.RULES)
    if rule == "riemann_trapezoid" and n < 2:
        raise ValueError("n_steps must be >= 2 for the rule 'riemann_trapezoid'")
    return {"n_steps": n, "rule": rule}


def run(engine: PathEngine, batch: PathBatch, cfg: Dict[str, Any], want_delta: bool, want_details: bool) -> AttributionResult:
    if batch.size == 0:
        return empty_result(batch, NAME, cfg)
    sched = schedules.uniform(cfg["rule"], cfg["n_steps"], batch.size)
    ends = engine.endpoints(batch) if (batch.target is None or want_delta or want_details) else None
    integral = engine.integrate(batch, *engine.schedule_tensors(batch, sched), importance="none")
    attr = batch.diff() * integral.acc
    return finish(batch, NAME, cfg, attr, sched, integral, ends, delta_from_sum=True,
                  diagnostics=want_delta or want_details)
