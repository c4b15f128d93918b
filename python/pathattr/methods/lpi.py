"""Local Path Integration (Yang et al., AAAI 2023) on the shared engine: docs/methods.md §6.

LPI(x) = sum_j rho_j (x - r_j) * mean_a dF/dx(r_j + alpha_ja (x - r_j)), where r_j and
rho_j are the m references and densities of the neighbourhood whose centre is
nearest to x's logits (a `pathattr.ReferenceBank`), alpha_ja ~ U(0.01, 0.99)
from a seeded generator (recipe in `pathattr.baselines.sets`). All B*m (input, reference)
paths run as one engine batch. The paper's setting is m = 20 references, one alpha
each. Cost per input: 1 forward (logits, for the neighbourhood) + m*k forward+backward
(+ m forward-only for the delta).
"""
from __future__ import annotations

import numbers
from typing import Any, Dict

import torch

from ..baselines import sets as refsets
from ..engine.checks import check_steps
from ..engine.core import PathBatch, PathEngine
from ..baselines.lpi_bank import ReferenceBank
from ..result import AttributionResult
from ..engine.fold import check_values_finite
from ..engine.targets import check_target_range, select_output
from . import pairs
from .common import empty_result

NAME = "lpi"


def settings(bank: Any = None, n_alphas: int = 1, alpha_range=(0.01, 0.99), seed: int = 0) -> Dict[str, Any]:
    """bank: a ReferenceBank (required); n_alphas per reference (default 1); alpha_range
    (lo, hi) with 0 <= lo < hi <= 1 (default (0.01, 0.99), the paper's); seed for the alphas."""
    if not isinstance(bank, ReferenceBank):
        raise TypeError(f"bank must be a pathattr.ReferenceBank (build_reference_bank(...) or "
                        f"ReferenceBank.load(path)), got {type(bank).__name__}")
    bank.check("bank")
    ok = (isinstance(alpha_range, (tuple, list)) and len(alpha_range) == 2
          and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in alpha_range))
    if not ok or not (0 <= alpha_range[0] < alpha_range[1] <= 1):
        raise ValueError(f"alpha_range must be a pair (lo, hi) with 0 <= lo < hi <= 1; got {alpha_range!r}")
    return {"bank": bank, "n_alphas": check_steps(n_alphas, "n_alphas"),
            "alpha_range": (float(alpha_range[0]), float(alpha_range[1])), "seed": refsets.check_seed(seed)}


def prepare(engine: PathEngine, cfg: Dict[str, Any], inputs, baselines, target, additional_forward_args) -> PathBatch:
    """LPI's baselines are the bank's references: `baselines` must be None."""
    if baselines is not None:
        raise ValueError("baselines must be None for LPI: its references come from the bank (bank=...)")
    bank: ReferenceBank = cfg["bank"]
    bank.check_model(engine.model)
    batch = engine.prepare(inputs, None, target, additional_forward_args)
    if tuple(batch.x.shape[1:]) != tuple(bank.references.shape[2:]):
        raise ValueError(f"inputs of shape {tuple(batch.x.shape)} do not match the bank's references of shape "
                         f"{tuple(bank.references.shape[2:])}")
    return batch


def run(engine: PathEngine, batch: PathBatch, cfg: Dict[str, Any], want_delta: bool, want_details: bool) -> AttributionResult:
    bank: ReferenceBank = cfg["bank"]
    shown = {k: v for k, v in cfg.items() if k != "bank"}
    shown.update(bank_settings=dict(bank.settings), bank_fingerprint=bank.fingerprint)
    if batch.size == 0:
        return empty_result(batch, NAME, shown)
    B, m, k = batch.size, bank.n_references, cfg["n_alphas"]
    logits = _logits(engine, batch)
    if batch.target is None:
        batch.target = logits.argmax(1)
    check_target_range(batch.target, logits, engine.output)
    f_x = select_output(logits, batch.target, engine.output).to(batch.acc_dtype)
    hood = bank.assign(logits).cpu()
    refs = bank.references[hood].to(device=batch.x.device, dtype=batch.x.dtype)  # (B, m, *shape)
    rho = bank.densities[hood].to(device=batch.x.device, dtype=batch.acc_dtype)  # (B, m)
    alphas = refsets.draw_alphas(B, m, k, cfg["seed"], *cfg["alpha_range"])
    pb = pairs.expand(batch, refs)
    weights = torch.full((B * m, k), 1.0 / k, dtype=torch.float64)
    integral = engine.integrate(pb, alphas.view(B * m, k), weights)
    attr = pairs.combine(pb.diff() * integral.acc, rho)
    f_refs = pairs.reference_values(engine, pb).view(B, m) if (want_delta or want_details) else None
    return pairs.finish_pairs(batch, NAME, shown, attr, rho, bank.indices[hood], alphas, weights.view(B, m, k),
                              integral.values.view(B, m, k), f_x, f_refs)


def _logits(engine: PathEngine, batch: PathBatch) -> torch.Tensor:
    """The model's raw outputs (B, K) at the inputs, forward only (for the neighbourhood,
    the target and F(x))."""
    out = engine.forward_rows(batch, batch.x, what="inputs")
    if out.dim() != 2:
        raise ValueError("LPI needs a model with logits (batch, classes) to find the neighbourhood")
    check_values_finite(out, "its logits at the inputs", batch)
    return out
