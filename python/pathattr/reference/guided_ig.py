"""Reference Guided IG (Kapishnikov et al. 2021, Algorithm 1), one input at a time: docs/methods.md §4.

A plain loop over the T steps and, inside each, over selection rounds, in float64
on one flattened input; the model is called on one point per step. For tests and
benchmarks only; it shares no code with the engine or the fast path.
"""
from __future__ import annotations

import math

import torch

from .ig import _args_for, gradient_at


def guided_ig_one(model, x, baseline, target, n_steps=200, fraction=0.25, max_dist=0.02, output="logit", args=()):
    """Guided IG of one input x (shape) against baseline (same shape); float64 result of x's shape."""
    shape, dtype = x.shape, x.dtype
    xi = x.reshape(-1).to(torch.float64)
    xb = baseline.reshape(-1).to(torch.float64)
    d = xi.numel()
    cur = xb.clone()
    attr = torch.zeros(d, dtype=torch.float64)
    l1_total = float((xi - xb).abs().sum())
    if l1_total == 0.0:
        return attr.reshape(shape)
    for step in range(1, n_steps + 1):
        _, g = gradient_at(model, cur.to(dtype).reshape(shape), target, output, args)
        g = g.reshape(-1).to(torch.float64)
        alpha = step / n_steps
        a_lo, a_hi = max(alpha - max_dist, 0.0), min(alpha + max_dist, 1.0)
        lo_point = xb + (xi - xb) * a_lo
        hi_point = xb + (xi - xb) * a_hi
        goal = l1_total * (1 - step / n_steps)
        excluded = torch.zeros(d, dtype=torch.bool)  # features already at hi_point
        while True:
            before = cur.clone()
            for i in range(d):  # catch up: no feature lags behind a_lo
                if xi[i] != xb[i] and (cur[i] - xb[i]) / (xi[i] - xb[i]) < a_lo:
                    cur[i] = lo_point[i]
            dist = float((cur - xi).abs().sum())
            if math.isclose(goal, dist, rel_tol=1e-9, abs_tol=1e-9):
                attr += (cur - before) * g
                break
            excluded |= cur == hi_point
            mags = torch.where(excluded, torch.full_like(g, math.inf), g.abs())
            cut = float(mags.sort().values[math.floor((d - 1) * fraction)])
            chosen = (mags <= cut) & ~excluded
            room = float(((cur - hi_point).abs() * chosen).sum())
            gamma = (dist - goal) / room if room > 0 else math.inf
            if room <= 0 or gamma <= 0:  # nothing left to move (guard; see methods/guided_ig.py)
                attr += (cur - before) * g
                break
            if gamma > 1.0:
                cur = torch.where(chosen, hi_point, cur)
            else:
                cur = torch.where(chosen, cur + (hi_point - cur) * gamma, cur)
            attr += (cur - before) * g
            if gamma <= 1.0:
                break
    return attr.reshape(shape)


def guided_integrated_gradients(model, inputs, baselines, targets, additional_forward_args=(), **kwargs):
    """Loop of `guided_ig_one` over a batch; returns float64 attributions (B, *shape)."""
    rows = []
    for i in range(inputs.shape[0]):
        args = _args_for(additional_forward_args, i, inputs.shape[0])
        rows.append(guided_ig_one(model, inputs[i], baselines[i], int(targets[i]), args=args, **kwargs))
    return torch.stack(rows)
