"""Guided IG (Kapishnikov et al. 2021) on the shared engine: docs/methods.md §4.

An adaptive path from x' to x: at each of T steps, move the features whose gradient
is smallest in magnitude (the lowest `fraction`, by the lower quantile) until the L1
distance to x has shrunk by L1_total / T, never letting a feature stray more than
`max_dist` (in alpha) from the straight line. Attribution = sum over moves of
(x_new - x_old) * g, with g taken once per step at the point where the step starts.

Batched over inputs: every step is one `engine.gradients` call for all inputs at
their own current points; the (gradient-free) selection loop inside a step runs for
all inputs at once with per-input masks, until every input has reached its target.
The path state, the selection and the sum are float64 always (as the peer, PAIR's
`saliency`, does in numpy); the model sees the points in the inputs' dtype, so with
float64 inputs and a float64 model everything is float64. The user's model is never
cast or modified.

Two guards the peer lacks (it loops forever or fails an assert there): an input
whose selection is empty, or whose L1 distance already fell below the step's target
after the snap to alpha_min, ends that step where it is.

Cost per input: T forward+backward passes (+1 forward of x and x' for a delta,
details, or target=None).
"""
from __future__ import annotations

import math
from typing import Any, Dict

import torch

from ..engine.checks import check_real, check_steps
from ..engine.core import PathBatch, PathEngine
from ..result import AttributionResult
from .common import empty_result

NAME = "guided_ig"
EPSILON = 1e-9  # the L1 target is reached when within 1e-9 (relative or absolute), as math.isclose


def settings(n_steps: int = 200, fraction: float = 0.25, max_dist: float = 0.02) -> Dict[str, Any]:
    """Validated settings: n_steps T >= 1, fraction in (0, 1], max_dist in [0, 1] (0 = IG's straight line)."""
    return {"n_steps": check_steps(n_steps), "fraction": check_real(fraction, "fraction", 0.0, 1.0, low_open=True),
            "max_dist": check_real(max_dist, "max_dist", 0.0, 1.0)}


def run(engine: PathEngine, batch: PathBatch, cfg: Dict[str, Any], want_delta: bool, want_details: bool) -> AttributionResult:
    if batch.size == 0:
        return empty_result(batch, NAME, cfg)
    ends = engine.endpoints(batch) if (batch.target is None or want_delta or want_details) else None
    x2, b2 = batch.rows2d()
    attr, inner = guided_path(lambda pts, ex: engine.gradients(batch, pts.view((-1,) + tuple(batch.x.shape[1:])), ex)[1],
                              x2, b2, cfg["n_steps"], cfg["fraction"], cfg["max_dist"], batch.x.dtype)
    attr = attr.view(batch.x.shape)
    delta = None
    if ends is not None:
        delta = attr.reshape(batch.size, -1).sum(1).to(ends[0].dtype) - (ends[0] - ends[1])
    return AttributionResult(attributions=attr.to(batch.x.dtype), target=batch.target, delta=delta,
                             start_value=None if ends is None else ends[1], end_value=None if ends is None else ends[0],
                             method=NAME, settings=dict(cfg), extras={"selection_rounds": inner})


def guided_path(grad_fn, x_in: torch.Tensor, x_base: torch.Tensor, steps: int, fraction: float, max_dist: float,
                model_dtype: torch.dtype):
    """Guided IG for rows x_in (B, D) against x_base (1 or B, D); float64 (B, D) result.

    grad_fn(points (R, D) in model_dtype, examples (R,) int64) -> gradients (R, D).
    Also returns the number of selection rounds per input (B,), summed over steps.
    """
    B, D = x_in.shape
    dev = x_in.device
    xi = x_in.to(torch.float64)
    xb = x_base.to(torch.float64).expand(B, D)
    diff = xi - xb
    x = xb.clone()
    attr = torch.zeros((B, D), dtype=torch.float64, device=dev)
    rounds = torch.zeros(B, dtype=torch.long, device=dev)
    l1_total = diff.abs().sum(1)
    live = (l1_total != 0).nonzero().flatten()  # x = x' gives zeros and costs nothing
    if live.numel() == 0 or D == 0:
        return attr, rounds
    xi, xb, diff, x, l1_total = xi[live], xb[live], diff[live], x[live], l1_total[live]
    acc = torch.zeros_like(x)
    nround = torch.zeros(live.numel(), dtype=torch.long, device=dev)
    moving = diff != 0
    safe = torch.where(moving, diff, torch.ones_like(diff))
    k = math.floor((D - 1) * fraction)  # numpy's "lower" quantile index
    for step in range(steps):
        g = grad_fn(x.to(model_dtype), live).reshape(x.shape).to(torch.float64)
        grad = g.clone()
        alpha = (step + 1.0) / steps
        a_min = max(alpha - max_dist, 0.0)
        a_max = min(alpha + max_dist, 1.0)
        x_min = xb + diff * a_min
        x_max = xb + diff * a_max
        l1_target = l1_total * (1 - (step + 1) / steps)
        pending = torch.ones(x.shape[0], dtype=torch.bool, device=dev)
        while bool(pending.any()):
            nround += pending
            x_old = x.clone()
            # Features whose own alpha lags behind alpha_min snap to x_min;
            # features with x_i = x'_i count as at alpha_max (never behind).
            x_alpha = torch.where(moving, (x - xb) / safe, torch.full_like(x, a_max))
            x = torch.where((x_alpha < a_min) & pending[:, None], x_min, x)
            l1_cur = (x - xi).abs().sum(1)
            close = (l1_target - l1_cur).abs() <= torch.clamp(EPSILON * torch.maximum(l1_target.abs(), l1_cur.abs()),
                                                              min=EPSILON)
            sel_rows = pending & ~close
            # Features at x_max are out of the selection (count as +inf gradient).
            grad = torch.where(x == x_max, torch.full_like(grad, math.inf), grad)
            absg = grad.abs()
            thr = absg.sort(dim=1).values[:, k]
            s = (absg <= thr[:, None]) & (grad != math.inf) & sel_rows[:, None]
            l1_s = ((x - x_max).abs() * s).sum(1)
            gamma = torch.where(l1_s > 0, (l1_cur - l1_target) / torch.where(l1_s > 0, l1_s, torch.ones_like(l1_s)),
                                torch.full_like(l1_s, math.inf))
            big = gamma > 1.0
            stuck = sel_rows & ((l1_s <= 0) | (gamma <= 0))  # the guards: end the step here
            full = s & (big & ~stuck)[:, None]
            part = s & (~big & ~stuck)[:, None]
            x = torch.where(full, x_max, x)
            x = torch.where(part, x + (x_max - x) * gamma[:, None], x)
            acc += (x - x_old) * g
            pending = sel_rows & big & ~stuck
    attr[live] = acc
    rounds[live] = nround
    return attr, rounds
