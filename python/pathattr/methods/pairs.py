"""(input, reference) pairs as one batch of straight paths (docs/methods.md §6, §7).

Methods that average over several baselines per input (Expected Gradients, LPI,
distribution baselines) expand a batch of B inputs and J references per input into a
path batch of B*J rows, input-major (row b*J + j is input b with its reference j),
run it through the engine once, and fold the per-pair maps back with per-pair
weights (1/J, or LPI's densities). No new loop: the engine chunks the pairs.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from ..engine.core import PathBatch, PathEngine
from ..result import AttributionResult


def expand(batch: PathBatch, refs: torch.Tensor) -> PathBatch:
    """A path batch of B*J rows: x repeated J times per input against refs (B, J, *shape).

    Targets and per-input extra forward args are repeated alongside.
    """
    B, J = refs.shape[:2]
    x = batch.x.repeat_interleave(J, 0)
    base = refs.reshape((B * J,) + tuple(batch.x.shape[1:]))
    target = None if batch.target is None else batch.target.repeat_interleave(J)
    args = tuple(a.repeat_interleave(J, 0) if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == B else a
                 for a in batch.args)
    # origin: row b*J + j is the user's input b, so errors name their inputs, not pair rows
    return batch.derived(x, base, target, args, torch.arange(B, device=batch.x.device).repeat_interleave(J))


def combine(per_pair: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_j weights[b, j] * per_pair[b*J + j]: (B*J, *shape) and (B, J) -> (B, *shape)."""
    B, J = weights.shape
    w = weights.to(device=per_pair.device, dtype=per_pair.dtype).reshape((B, J) + (1,) * (per_pair.dim() - 1))
    return (per_pair.reshape((B, J) + tuple(per_pair.shape[1:])) * w).sum(1)


def reference_values(engine: PathEngine, pairs: PathBatch) -> torch.Tensor:
    """F at every pair's reference (forward only): (B*J,) in the accumulator dtype."""
    at_refs = pairs.derived(pairs.baseline, pairs.baseline[:1], pairs.target, pairs.args, None)
    return engine.endpoints(at_refs, baselines=False)[0]


def per_input(t: Optional[torch.Tensor], B: int, J: int) -> Optional[torch.Tensor]:
    """A per-pair tensor (B*J, ...) viewed per input as (B, J, ...)."""
    return None if t is None else t.reshape((B, J) + tuple(t.shape[1:]))


def finish_pairs(batch: PathBatch, name: str, cfg: Dict[str, Any], attr: torch.Tensor, ref_weights: torch.Tensor,
                 index: Optional[torch.Tensor], alphas: torch.Tensor, weights: torch.Tensor,
                 path_values: Optional[torch.Tensor], f_x: Optional[torch.Tensor],
                 f_refs: Optional[torch.Tensor], importance: Optional[torch.Tensor] = None) -> AttributionResult:
    """Package a pair method's result (attr in the accumulator dtype, cast back once).

    delta = sum_i attr_i - (F(x) - sum_j ref_weights_j F(r_j)) when F(x) and F(r_j)
    (B, J) were computed: the completeness error against the weighted reference mean.
    """
    B = batch.size
    delta = start = None
    if f_x is not None and f_refs is not None:
        start = (ref_weights.to(f_refs) * f_refs).sum(1)
        delta = attr.reshape(B, -1).sum(1) - (f_x - start)
    return AttributionResult(
        attributions=attr.to(batch.x.dtype),
        target=batch.target,
        delta=delta,
        alphas=alphas,
        weights=weights,
        path_values=path_values,
        importance=importance,
        start_value=start,
        end_value=f_x,
        method=name,
        settings=dict(cfg),
        reference_index=index,
        reference_weights=ref_weights,
    )
