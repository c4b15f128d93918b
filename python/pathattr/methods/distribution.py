"""Distribution baselines (docs/methods.md §7): IG_D(x) = E_{x'~D} IG(x; x'), and the same for IDG.

Any straight-path method that reads its baseline from the batch is turned into its
distribution version without a new loop: the inputs are expanded into B*K (input,
reference) pairs (one straight path each, IDG's adaptive schedule per path), the
method runs once on that batch, and the K maps of each input are averaged. The
delta is the mean of the per-path deltas: for IG, sum_i IG_D,i - (F(x) - mean_k F(x'_k)).
"""
from __future__ import annotations

from typing import Any, Dict

import torch

from ..baselines import sets as refsets
from ..engine.core import PathEngine
from ..result import AttributionResult
from . import pairs
from .common import empty_result

SUPPORTED = ("ig", "idg")


def supports(method) -> bool:
    return method.NAME in SUPPORTED or bool(getattr(method, "DISTRIBUTION_BASELINE", False))


def attribute(method, engine: PathEngine, cfg: Dict[str, Any], inputs, dist: refsets.DistributionBaseline, target,
              additional_forward_args, want_delta: bool, want_details: bool) -> AttributionResult:
    """Run `method` (a methods module) against every reference of `dist` and average."""
    if not supports(method):
        raise ValueError(f"baselines: a distribution_baseline works with the methods {', '.join(map(repr, SUPPORTED))}; "
                         f"got method {method.NAME!r}")
    batch = engine.prepare(inputs, None, target, additional_forward_args)
    refsets.check_reference_set(dist.references, "baselines", like=batch.x)  # before the first model call
    name = method.NAME + "_distribution"
    shown = dict(cfg, n_baselines=dist.n_baselines, baseline_seed=dist.seed, n_references=dist.size)
    if batch.size == 0:
        return empty_result(batch, name, shown)
    if batch.target is None:
        engine.endpoints(batch, baselines=False)  # one target per input, not one per pair
    index = dist.index(batch.size)
    B, K = index.shape
    refs = refsets.gather_references(dist.references, index, batch.x, "baselines")
    res = method.run(engine, pairs.expand(batch, refs), cfg, want_delta, want_details)
    w = torch.full((B, K), 1.0 / K, dtype=batch.acc_dtype, device=batch.x.device)
    attr = pairs.combine(res.attributions.to(batch.acc_dtype), w)
    mean = (lambda t: None if t is None else t.reshape(B, K).mean(1))
    return AttributionResult(
        attributions=attr.to(batch.x.dtype),
        target=batch.target,
        delta=mean(res.delta),
        alphas=pairs.per_input(res.alphas, B, K),
        weights=pairs.per_input(res.weights, B, K),
        path_values=pairs.per_input(res.path_values, B, K),
        importance=pairs.per_input(res.importance, B, K),
        probe_alphas=res.probe_alphas,
        probe_curve=pairs.per_input(res.probe_curve, B, K),
        counts=pairs.per_input(res.counts, B, K),
        start_value=mean(res.start_value),
        end_value=None if res.end_value is None else res.end_value.reshape(B, K)[:, 0],
        method=name,
        settings=shown,
        reference_index=index,
        reference_weights=w,
        extras=_combined_stats(res, attr, w),
    )


def _combined_stats(res: AttributionResult, attr: torch.Tensor, w: torch.Tensor) -> Dict[str, Any]:
    """Per input, from its K paths (rtol mode or a fixed rule's estimate): evaluations
    summed, and the averaged map's relative error bounded by the paths' absolute errors
    (docs/methods.md §14)."""
    B, K = w.shape
    out: Dict[str, Any] = {}
    for key in ("n_evaluations", "n_forward"):
        if key in res.extras:
            out[key] = res.extras[key].reshape(B, K).sum(1)
    est = res.extras.get("error_estimate")
    if est is not None:
        per_path = res.attributions.reshape(B * K, -1).to(w.dtype).norm(dim=1) * est.to(w.dtype)
        norm = attr.reshape(B, -1).norm(dim=1)
        bound = (w * per_path.reshape(B, K)).sum(1)
        out["error_estimate"] = torch.where(norm > 0, bound / torch.where(norm > 0, norm, torch.ones_like(norm)),
                                            torch.where(bound > 0, torch.full_like(bound, float("inf")), bound))
    if "converged" in res.extras:
        out["converged"] = res.extras["converged"].reshape(B, K).all(1)
    if "rounds" in res.extras:
        out["rounds"] = res.extras["rounds"]
    return out
