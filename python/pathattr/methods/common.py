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
    targets only, without the few small ops the delta costs.
    """
    if not diagnostics:
        attributions = attr if attr.dtype == batch.x.dtype else attr.to(batch.x.dtype)
        return AttributionResult(attributions=attributions, target=batch.target, method=name)
    delta = None
    if ends is not None:
        f_x, f_b = ends
        if delta_from_sum:
            total = attr.reshape(batch.size, -1).sum(1)
        else:
            w = sched.weights.to(device=integral.importance.device, dtype=integral.importance.dtype)
            total = (w * integral.importance).sum(1)
        delta = total - (f_x - f_b)
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
