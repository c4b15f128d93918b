"""Expected Gradients (Erion et al.) on the shared engine: docs/methods.md §6.

EG(x) = (1/J) sum_j (x - r_j) * (1/k) sum_a dF/dx(r_j + alpha_ja (x - r_j)),
r_j drawn with replacement from a reference set, alpha_ja ~ U(0, 1), all from one
seeded torch.Generator (recipe in `pathattr.baselines.sets`). Every (input, reference)
pair is one straight path with its own k alphas (the pairing is explicit: row
(b, j) carries alphas[b, j, :]), and all B*J paths run as one engine batch with
weights 1/k, folded back with weights 1/J. Cost: J*k forward+backward passes per
input, plus 1 + J forward-only for the delta (F(x) and F(r_j)).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict

import torch

from ..baselines import sets as refsets
from ..engine.checks import check_steps
from ..engine.core import PathBatch, PathEngine
from ..result import AttributionResult
from . import pairs
from .common import empty_result

NAME = "expected_gradients"


@dataclass
class ReferenceBatch(PathBatch):
    """A path batch of inputs plus the reference set their paths start from."""

    references: Any = None


def settings(references: Any = None, n_references: int = 20, n_alphas: int = 1, seed: int = 0) -> Dict[str, Any]:
    """references: a tensor (R, *shape) or Dataset (or pass it as `baselines` at attribution
    time); n_references J per input (default 20, the LPI paper's comparison setting);
    n_alphas k per reference (default 1); seed for the references and alphas."""
    if references is not None:
        refsets.check_reference_set(references, "references")
    return {"references": references, "n_references": check_steps(n_references, "n_references"),
            "n_alphas": check_steps(n_alphas, "n_alphas"), "seed": refsets.check_seed(seed)}


def prepare(engine: PathEngine, cfg: Dict[str, Any], inputs, baselines, target, additional_forward_args) -> ReferenceBatch:
    """`baselines` is the reference set here (as in Captum's GradientShap); else the `references` setting."""
    if isinstance(baselines, refsets.DistributionBaseline):
        raise TypeError("baselines must be the reference set itself (a tensor (R, *shape) or a Dataset) for "
                        "expected_gradients; distribution_baseline(...) is for 'ig' and 'idg'")
    refs = baselines if baselines is not None else cfg["references"]
    if refs is None:
        raise ValueError("baselines: expected_gradients needs a reference set, a tensor (R, *shape) or a Dataset "
                         "(baselines=..., or references=... in Explainer)")
    b = engine.prepare(inputs, None, target, additional_forward_args)
    refsets.check_reference_set(refs, "baselines", like=b.x)
    return ReferenceBatch(b.x, b.baseline, b.target, b.args, b.acc_dtype, references=refs)


def run(engine: PathEngine, batch: ReferenceBatch, cfg: Dict[str, Any], want_delta: bool,
        want_details: bool) -> AttributionResult:
    if batch.size == 0:
        return empty_result(batch, NAME, {k: v for k, v in cfg.items() if k != "references"})
    B, J, k = batch.size, cfg["n_references"], cfg["n_alphas"]
    n_refs = refsets.check_reference_set(batch.references, "baselines")
    need_ends = batch.target is None or want_delta or want_details
    f_x = engine.endpoints(batch, baselines=False)[0] if need_ends else None
    index, alphas = refsets.draw(n_refs, B, J, k, cfg["seed"])
    refs = refsets.gather_references(batch.references, index, batch.x, "baselines")
    pb = pairs.expand(batch, refs)
    weights = torch.full((B * J, k), 1.0 / k, dtype=torch.float64)
    integral = engine.integrate(pb, alphas.view(B * J, k), weights)
    ref_w = torch.full((B, J), 1.0 / J, dtype=batch.acc_dtype, device=batch.x.device)
    attr = pairs.combine(pb.diff() * integral.acc, ref_w)
    f_refs = pairs.reference_values(engine, pb).view(B, J) if need_ends else None
    shown = {key: v for key, v in cfg.items() if key != "references"}
    return pairs.finish_pairs(batch, NAME, shown, attr, ref_w, index, alphas, weights.view(B, J, k),
                              integral.values.view(B, J, k), f_x, f_refs)
