"""Reference Left-IG (Miglani et al. 2020), one input at a time: docs/methods.md §3.

Probe F(p(j/N)) for j = 0..N, find alpha* with the reference truncation (linear
interpolation between probe points, `reference.truncate`), then IG with the rule
mapped onto [0, alpha*]: sum_k (alpha* w_k) g(alpha* a_k), times (x - x'). For tests
and benchmarks only; it shares no code with the engine or the fast path.
"""
from __future__ import annotations

import torch

from .idg import probe_curve
from .ig import _args_for, gradient_at
from .scheduler import quadrature
from .truncate import truncate_one


def left_ig_one(model, x, baseline, target, n_steps=50, method="gausslegendre", r=0.9, threshold="baseline",
                n_probe=None, output="logit", args=()):
    """Left-IG of one input; returns (attributions, alpha*, used_whole_path)."""
    n = n_probe if n_probe is not None else max(2, n_steps // 4)
    curve = probe_curve(model, x, baseline, target, n, output, args)
    alpha_star, whole = truncate_one([float(v) for v in curve], r, threshold)
    alphas, weights = quadrature(method, n_steps)
    diff = x - baseline
    total = torch.zeros_like(x)
    for a, w in zip(alphas, weights):
        _, g = gradient_at(model, baseline + (alpha_star * float(a)) * diff, target, output, args)
        total = total + (alpha_star * float(w)) * g
    return diff * total, alpha_star, whole


def left_integrated_gradients(model, inputs, baselines, targets, additional_forward_args=(), **kwargs):
    """Loop of `left_ig_one` over a batch; returns (attributions (B, *shape), alpha* list, whole list)."""
    rows, stars, wholes = [], [], []
    for i in range(inputs.shape[0]):
        args = _args_for(additional_forward_args, i, inputs.shape[0])
        a, s, w = left_ig_one(model, inputs[i], baselines[i], int(targets[i]), args=args, **kwargs)
        rows.append(a)
        stars.append(s)
        wholes.append(w)
    return torch.stack(rows), stars, wholes
