"""Reference Integrated Decision Gradients, one input at a time, as the paper writes it.

Uniform IDG is Eq. (4); adaptive IDG is Algorithm 1 with docs/methods.md §2.1's corrections:
probe the logit-alpha curve at N + 1 points, place exactly M samples with the
reference scheduler, then sum IF(alpha) * g(alpha) * weight. The importance factor
is the chain-rule derivative dF/dalpha = g . (x - x') ("exact") or a backward
difference of F between consecutive samples ("finite_difference"). For tests and
benchmarks only; it shares no code with the engine or the fast path.
"""
from __future__ import annotations

import numpy as np
import torch

from .ig import _args_for, gradient_at, scalar_output
from .scheduler import adaptive_grid, quadrature


def probe_curve(model, x, baseline, target, n_probe, output="logit", args=()):
    """F(x' + (j / N)(x - x')) for j = 0..N; alpha = 0 and 1 are x' and x themselves."""
    vals = []
    with torch.no_grad():
        for j in range(n_probe + 1):
            z = baseline if j == 0 else x if j == n_probe else baseline + (j / n_probe) * (x - baseline)
            vals.append(float(scalar_output(model, z, target, output, args)))
    return np.array(vals)


def idg_one(model, x, baseline, target, n_steps=50, schedule="adaptive", n_probe=None, method="riemann_right",
            importance="exact", normalize="none", growth="abs", placement=None, floor=None, output="logit", args=()):
    """IDG of one input; returns (attributions, alphas, weights, importance factors)."""
    if schedule == "uniform":
        alphas, weights = quadrature(method, n_steps)
    else:
        paper = schedule == "paper"
        n = n_probe if n_probe is not None else (n_steps if paper else max(2, n_steps // 4))
        curve = probe_curve(model, x, baseline, target, n, output, args)
        a, w, _ = adaptive_grid(curve[None, :], n_steps, growth=growth,
                                placement=placement or ("left" if paper else "midpoint"),
                                floor=floor if floor is not None else (0 if paper else 1))
        alphas, weights = a[0], w[0]
    diff = x - baseline
    total = torch.zeros_like(x)
    factors = []
    prev_a, prev_f = 0.0, None
    for a, w in zip(alphas, weights):
        f, g = gradient_at(model, baseline + float(a) * diff, target, output, args)
        if importance == "exact" or float(a) == prev_a:
            factor = float((g * diff).sum())
        else:
            if prev_f is None:
                prev_f = float(scalar_output(model, baseline, target, output, args).detach())
            factor = (float(f) - prev_f) / (float(a) - prev_a)
        total = total + float(w) * factor * g
        factors.append(factor)
        prev_a, prev_f = float(a), float(f)
    attr = diff * total
    if normalize == "completeness":
        with torch.no_grad():
            gap = float(scalar_output(model, x, target, output, args) - scalar_output(model, baseline, target, output, args))
        s = float(attr.sum())
        if s != 0:
            attr = attr * (gap / s)
    return attr, np.asarray(alphas), np.asarray(weights), np.asarray(factors)


def integrated_decision_gradients(model, inputs, baselines, targets, additional_forward_args=(), **kwargs):
    """Loop of `idg_one` over a batch; returns attributions (B, *shape)."""
    rows = []
    for i in range(inputs.shape[0]):
        args = _args_for(additional_forward_args, i, inputs.shape[0])
        rows.append(idg_one(model, inputs[i], baselines[i], int(targets[i]), args=args, **kwargs)[0])
    return torch.stack(rows)
