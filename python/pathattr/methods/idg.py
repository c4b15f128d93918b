"""Integrated Decision Gradients (Walker et al.) on the shared engine: docs/methods.md §2.

IDG(x) = (x - x') * sum_k w_k IF(alpha_k) g(alpha_k), IF(alpha) = dF(p(alpha))/dalpha.
The exact importance factor is g . (x - x'): a dot product of the gradient the pass
computes anyway, so IDG costs what IG costs plus, for the adaptive schedule, N + 1
forward-only evaluations per input for the probe curve that places the samples.

Schedules:
  "adaptive" (default): docs/methods.md §2.1; N = n_probe = max(2, M // 4) probe intervals,
      `floor` = 1 sample in each, the rest by largest remainder of |growth|,
      midpoint placement. Exactly M = n_steps gradient samples per input.
  "paper": the paper's Algorithm 1 with its defects corrected (docs/methods.md §2.1):
      N = M, left placement, floor 0.
  "uniform": Eq. (4), a quadrature rule (`rule`; `method=` in the function), default
      right Riemann as in the paper.
Settings given explicitly override the schedule's presets.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from ..engine import schedule as schedules
from ..engine.profiling import stage
from ..engine.checks import check_choice, check_positive_int, check_steps, check_tolerance
from ..engine.fold import check_values_finite
from ..engine.core import PathBatch, PathEngine
from ..result import AttributionResult
from .common import RULE_ARG, empty_result, finish, fixed_rule_estimate, run_to_tolerance

NAME = "idg"
SCHEDULES = ("adaptive", "paper", "uniform")
IMPORTANCE = ("exact", "finite_difference")
NORMALIZE = ("none", "completeness")


def settings(n_steps: int = 50, schedule: str = "adaptive", n_probe: Optional[int] = None,
             rule: str = "riemann_right", importance: str = "exact", normalize: str = "none",
             growth: str = "abs", placement: Optional[str] = None, floor: Optional[int] = None,
             rtol: Optional[float] = None, min_steps: Optional[int] = None,
             max_steps: Optional[int] = None) -> Dict[str, Any]:
    """Validated settings with the schedule's presets filled in (see the module docstring);
    rtol (with min_steps, max_steps): error-controlled refinement of IF * g instead of a
    schedule (docs/methods.md §14; exact importance only)."""
    tol = check_tolerance(rtol, min_steps, max_steps)
    if tol and importance != "exact":
        raise ValueError(f"importance must be 'exact' with rtol (the refinement integrates IF * g itself); got {importance!r}")
    cfg = _schedule_settings(n_steps, schedule, n_probe, rule, importance, normalize, growth, placement, floor)
    cfg.update(tol)
    return cfg


def _schedule_settings(n_steps, schedule, n_probe, rule, importance, normalize, growth, placement, floor):
    m = check_steps(n_steps)
    check_choice(schedule, "schedule", SCHEDULES)
    check_choice(importance, "importance", IMPORTANCE)
    check_choice(normalize, "normalize", NORMALIZE)
    check_choice(rule, RULE_ARG, schedules.RULES)  # checked even where the schedule does not use it
    cfg: Dict[str, Any] = {"n_steps": m, "schedule": schedule, "importance": importance, "normalize": normalize}
    if schedule == "uniform":
        if rule == "riemann_trapezoid" and m < 2:
            raise ValueError("n_steps must be >= 2 for the rule 'riemann_trapezoid'")
        cfg["rule"] = rule
        return cfg
    paper = schedule == "paper"
    n = check_steps(n_probe if n_probe is not None else (m if paper else max(2, m // 4)), "n_probe")
    fl = check_positive_int(floor if floor is not None else (0 if paper else 1), "floor", minimum=0)
    pl = check_choice(placement if placement is not None else ("left" if paper else "midpoint"), "placement", schedules.PLACEMENTS)
    check_choice(growth, "growth", schedules.GROWTHS)
    if m < fl * n:
        raise ValueError(f"n_steps (M = {m}) must be >= floor * n_probe = {fl} * {n}: every probe interval gets `floor` samples")
    cfg.update(n_probe=n, floor=fl, placement=pl, growth=growth)
    return cfg


def run(engine: PathEngine, batch: PathBatch, cfg: Dict[str, Any], want_delta: bool, want_details: bool) -> AttributionResult:
    if batch.size == 0:
        return empty_result(batch, NAME, cfg)
    if cfg.get("rtol") is not None:
        res = run_to_tolerance(engine, batch, cfg, NAME, scaled=True, want_details=want_details)
        if cfg["normalize"] == "completeness":
            res.attributions = _rescale_to_completeness(res.attributions, (res.extras["f_end"], res.extras["f_start"]))
        return res
    extra = {}
    if cfg["schedule"] != "uniform":
        # One forward-only pass over the N + 1 probe points gives the curve and both
        # ends (alpha = 0 is x' exactly; alpha = 1 is x up to one rounding, replaced
        # by the exact F(x) when target=None needed model(x) first anyway).
        f_x = engine.endpoints(batch, baselines=False)[0] if batch.target is None else None
        curve = engine.path_values(batch, engine.probe_grid(batch, cfg["n_probe"]), check_finite=False)
        if f_x is not None:
            curve[:, -1] = f_x
        ends = (curve[:, -1], curve[:, 0])  # free: the probe ran them (finish's error estimate uses them)
        # float32 passes take a float32 grid straight from the scheduler (two conversions
        # fewer per call); details report the float64 grid.
        f32 = not want_details and batch.x.dtype == torch.float32 and batch.acc_dtype == torch.float32
        with stage("schedule", engine._ranges):
            try:
                sched = schedules.adaptive(curve, cfg["n_steps"], growth=cfg["growth"], placement=cfg["placement"],
                                           floor=cfg["floor"], dtype="float32" if f32 else "float64")
            except ValueError:  # the scheduler refuses a non-finite curve: say where, as the engine does
                check_values_finite(curve, "F along the path", batch)
                raise
        if want_details:
            extra = {"probe_alphas": schedules.probe_alphas(cfg["n_probe"]), "probe_curve": curve}
    else:
        need_ends = (batch.target is None or want_delta or want_details
                     or cfg["importance"] == "finite_difference" or cfg["normalize"] == "completeness")
        ends = engine.endpoints(batch) if need_ends else None
        sched = schedules.uniform(cfg["rule"], cfg["n_steps"], batch.size)
    integral = engine.integrate(batch, *engine.schedule_tensors(batch, sched), importance=cfg["importance"],
                                baseline_values=None if ends is None else ends[1])
    attr = batch.diff() * integral.acc
    if cfg["normalize"] == "completeness":
        attr = _rescale_to_completeness(attr, ends)
    res = finish(batch, NAME, cfg, attr, sched, integral, ends, diagnostics=want_delta or want_details, **extra)
    if not (want_delta or want_details):
        return res
    probe = cfg["n_probe"] + 1 if cfg["schedule"] != "uniform" else (0 if ends is None else 2)
    return fixed_rule_estimate(res, cfg["n_steps"], probe)


def _rescale_to_completeness(attr: torch.Tensor, ends) -> torch.Tensor:
    """Scale each input's map so it sums to F(x) - F(x'); a zero-sum map is left as is."""
    f_x, f_b = ends
    total = attr.reshape(attr.shape[0], -1).sum(1)
    factor = torch.where(total != 0, (f_x - f_b) / torch.where(total != 0, total, torch.ones_like(total)), torch.ones_like(total))
    return attr * factor.view((-1,) + (1,) * (attr.dim() - 1))
