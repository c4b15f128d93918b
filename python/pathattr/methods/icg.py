"""Integrated Certainty Gradients (the ICG paper, docs/methods.md §8) on the shared engine.

The model takes z = cat([values, c], 1) (see `pathattr.certainty`). ICG integrates
along c from 0 to 1 with the values held at x. That is the engine's straight path
over the joint input with baseline z' = (x, c = 0) and input z = (x, c = 1): the
value part of z - z' is exactly 0 and the certainty part exactly 1, so the
certainty part of the engine's fold, times z - z' = 1, is ICG_i = int_0^1 dF/dc_i.
The user passes the values x (B, C, ...); attributions have the certainty's shape
(B, Cc, ...). Completeness: sum ICG = F(x, c=1) - F(x, c=0) (the reported delta).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from ..engine import schedule as schedules
from ..engine.checks import check_choice, check_positive_int, check_steps
from ..engine.core import PathBatch, PathEngine
from ..result import AttributionResult
from .common import RULE_ARG, empty_result, finish

NAME = "icg"


def settings(n_steps: int = 100, rule: str = "riemann_middle", certainty_channels: Optional[int] = None) -> Dict[str, Any]:
    """n_steps (default 100, the paper's), the quadrature rule (default midpoint) and,
    for a plain network (not a CertaintyModel), its certainty channels Cc (None = 1)."""
    n = check_steps(n_steps)
    check_choice(rule, RULE_ARG, schedules.RULES)
    if rule == "riemann_trapezoid" and n < 2:
        raise ValueError("n_steps must be >= 2 for the rule 'riemann_trapezoid'")
    cc = check_positive_int(certainty_channels, "certainty_channels", allow_none=True)
    return {"n_steps": n, "rule": rule, "certainty_channels": cc}


def _layout(engine: PathEngine, values: torch.Tensor, cfg: Dict[str, Any]):
    model = engine.model
    C = values.shape[1]
    if hasattr(model, "value_channels") and hasattr(model, "certainty_channels"):
        if model.value_channels != C:
            raise ValueError(f"inputs must be the values (B, {model.value_channels}, ...) of the CertaintyModel; "
                             f"got {C} channels")
        if cfg["certainty_channels"] not in (None, model.certainty_channels):
            raise ValueError(f"certainty_channels={cfg['certainty_channels']} contradicts the CertaintyModel's "
                             f"{model.certainty_channels}")
        return C, model.certainty_channels
    cc = cfg["certainty_channels"] or 1
    if cc not in (1, C):
        raise ValueError(f"certainty_channels must be 1 or the values' channels ({C}); got {cc}")
    return C, cc


def run(engine: PathEngine, batch: PathBatch, cfg: Dict[str, Any], want_delta: bool, want_details: bool) -> AttributionResult:
    x = batch.x
    if x.dim() < 2:
        raise ValueError(f"inputs must be the values (B, C, ...) of a certainty-aware model; got shape {tuple(x.shape)}")
    if bool((batch.baseline != 0).any()):
        raise ValueError("baselines must be None for ICG: its path is fixed (values held at x, certainty from 0 to 1)")
    C, cc = _layout(engine, x, cfg)
    shape = (x.shape[0], cc) + tuple(x.shape[2:])
    joint = PathBatch(torch.cat([x, x.new_ones(shape)], 1), torch.cat([x, x.new_zeros(shape)], 1),
                      batch.target, batch.args, batch.acc_dtype)
    if batch.size == 0:  # attributions have the certainty's shape (0, Cc, ...), as a full batch's
        res = empty_result(batch, NAME, cfg)
        res.attributions = x.new_zeros(shape)
        return res
    sched = schedules.uniform(cfg["rule"], cfg["n_steps"], batch.size)
    ends = engine.endpoints(joint) if (joint.target is None or want_delta or want_details) else None
    integral = engine.integrate(joint, sched.alphas, sched.weights, importance="none")
    attr = joint.diff()[:, C:] * integral.acc[:, C:]  # the distance term is exactly 1
    batch.target = joint.target
    return finish(joint, NAME, cfg, attr, sched, integral, ends, delta_from_sum=True)
