"""Small pieces every straight-path method ends with."""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch

from ..engine.core import PathBatch, PathIntegral
from ..result import AttributionResult
from ..engine.schedule import Schedule

# The quadrature rule is `method=` in the Captum-style functions and `rule=` in Explainer
# (where `method` names the attribution method).
RULE_ARG = "method (the quadrature rule; rule= in Explainer)"


def empty_result(batch: PathBatch, name: str, cfg: Dict[str, Any]) -> AttributionResult:
    """An empty batch gives an empty result, not an error."""
    z = torch.zeros(0, dtype=batch.acc_dtype, device=batch.x.device)
    tgt = batch.target if batch.target is not None else torch.zeros(0, dtype=torch.long, device=batch.x.device)
    return AttributionResult(torch.zeros_like(batch.x), target=tgt, delta=z, method=name, settings=dict(cfg))


def finish(batch: PathBatch, name: str, cfg: Dict[str, Any], attr: torch.Tensor, sched: Schedule,
           integral: PathIntegral, ends: Optional[Tuple[torch.Tensor, torch.Tensor]],
           delta_from_sum: bool = False, diagnostics: bool = True, **extra) -> AttributionResult:
    """Package attributions (accumulator dtype) and diagnostics; cast back once.

    delta = sum_k w_k IF_k - (F(x) - F(x')), i.e. for IG the sum of attributions
    minus the output difference (delta_from_sum), for IDG the same sum taken over
    the importance factors that the gradient pass computed anyway.
    diagnostics=False (the caller wants neither delta nor details): attributions and
    targets only; where the ends were computed anyway (target=None, IDG's probe) the
    extras still carry the error estimate, a few (B,)-sized ops, so that an Explainer can
    warn (docs/methods.md §14).
    """
    delta = None
    if ends is not None:
        f_x, f_b = ends
        if delta_from_sum:
            total = attr.reshape(batch.size, -1).sum(1)
        else:
            w = sched.weights.to(device=integral.importance.device, dtype=integral.importance.dtype)
            total = (w * integral.importance).sum(1)
        delta = total - (f_x - f_b)
    if not diagnostics:
        attributions = attr if attr.dtype == batch.x.dtype else attr.to(batch.x.dtype)
        extras = {} if delta is None else {"error_estimate": completeness_gap(delta, ends[0], ends[1])}
        return AttributionResult(attributions=attributions, target=batch.target, method=name, extras=extras)
    # A uniform rule's tensors are the scheduler's per-process cache: the result gets
    # copies, so a caller writing into them cannot change later calls.
    cached = sched.rule is not None
    return AttributionResult(
        attributions=attr.to(batch.x.dtype),
        target=batch.target,
        delta=delta,
        alphas=sched.alphas.clone() if cached else sched.alphas,
        weights=sched.weights.clone() if cached else sched.weights,
        path_values=integral.values,
        importance=integral.importance,
        counts=sched.counts,
        start_value=None if ends is None else ends[1],
        end_value=None if ends is None else ends[0],
        method=name,
        settings=dict(cfg),
        **extra,
    )


def run_to_tolerance(engine, batch: PathBatch, cfg: Dict[str, Any], name: str, scaled: bool, want_details: bool,
                     upper: Optional[torch.Tensor] = None, **extra) -> AttributionResult:
    """rtol mode of a straight-path method (docs/methods.md §14): every input refined until
    its map is within cfg["rtol"]; details carry the per-input cost and error estimate."""
    from ..engine import tolerance

    n_forward = 0
    if batch.target is None and not callable(engine.output):  # the argmax of model(x) first
        engine.endpoints(batch, baselines=False)
        n_forward = 1
    ti = tolerance.integrate(engine, batch, scaled=scaled, rtol=cfg["rtol"], min_steps=cfg["min_steps"],
                             max_steps=cfg["max_steps"], upper=upper, deadline=cfg.get("deadline"))
    attr = ti.attr.view(batch.x.shape)
    delta = ti.importance_integral - (ti.f_end - ti.f_start)
    stats = {"n_evaluations": ti.n_evaluations, "n_forward": torch.full((batch.size,), n_forward, dtype=torch.long),
             "error_estimate": ti.error_estimate, "converged": ti.converged, "rounds": ti.rounds,
             "f_start": ti.f_start, "f_end": ti.f_end}
    stats.update(extra.pop("extras", {}))
    settings = {k: v for k, v in cfg.items() if k != "deadline"}
    if not want_details:
        extra.clear()
        return AttributionResult(attributions=attr.to(batch.x.dtype), target=batch.target, delta=delta, method=name,
                                 settings=settings, extras=stats)
    return AttributionResult(attributions=attr.to(batch.x.dtype), target=batch.target, delta=delta,
                             alphas=ti.alphas, weights=ti.weights, path_values=ti.values, importance=ti.importance,
                             start_value=ti.f_start, end_value=ti.f_end, method=name, settings=settings, extras=stats,
                             **extra)


def completeness_gap(delta: torch.Tensor, f_end: torch.Tensor, f_start: torch.Tensor) -> torch.Tensor:
    """|delta| / |F(end) - F(start)|: a fixed rule's relative error estimate (docs/methods.md §14)."""
    change = (f_end - f_start).abs()
    return delta.abs() / torch.where(change > 0, change, torch.ones_like(change))


def fixed_rule_estimate(res: AttributionResult, n_steps: int, n_forward: int,
                        end: Optional[torch.Tensor] = None) -> AttributionResult:
    """Fixed n_steps: the relative completeness gap |delta| / |F(end) - F(x')| as the call's
    error estimate (docs/methods.md §14; none without a delta), and its cost. `end`: F where
    the path ends (Left-IG: at alpha*), default F(x)."""
    end = res.end_value if end is None else end
    if res.delta is not None and res.start_value is not None and end is not None:
        res.extras.setdefault("error_estimate", completeness_gap(res.delta, end, res.start_value))
    B = res.attributions.shape[0] if isinstance(res.attributions, torch.Tensor) else 0
    res.extras.setdefault("n_evaluations", torch.full((B,), n_steps, dtype=torch.long))
    res.extras.setdefault("n_forward", torch.full((B,), n_forward, dtype=torch.long))
    return res
