"""Reference Integrated Gradients (Eq. 1 of Sundararajan et al.), one input at a time.

For tests and benchmarks only: a plain loop over the quadrature points, one
forward and one backward each, sharing no code with the engine or the fast path.
"""
from __future__ import annotations

import torch

from .scheduler import quadrature


def scalar_output(model, z, target, output="logit", args=()):
    """F(z) for a single point z (shape of one input): the chosen output of class `target`."""
    out = model(z.unsqueeze(0), *args)[0]
    if output == "softmax":
        out = torch.softmax(out, dim=0)
    elif output == "log_softmax":
        out = torch.log_softmax(out, dim=0)
    return out[target]


def gradient_at(model, z, target, output="logit", args=()):
    """(F(z), dF/dz) at one point."""
    z = z.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        f = scalar_output(model, z, target, output, args)
        (g,) = torch.autograd.grad(f, z)
    return f.detach(), g


def integrated_gradients_one(model, x, baseline, target, n_steps=50, method="gausslegendre", output="logit", args=()):
    """IG of one input x (shape) against one baseline (same shape)."""
    alphas, weights = quadrature(method, n_steps)
    total = torch.zeros_like(x)
    for a, w in zip(alphas, weights):
        _, g = gradient_at(model, baseline + float(a) * (x - baseline), target, output, args)
        total = total + float(w) * g
    return (x - baseline) * total


def integrated_gradients(model, inputs, baselines, targets, additional_forward_args=(), **kwargs):
    """Loop of `integrated_gradients_one` over a batch; baselines (B, *shape), targets B ints.

    Tensors in additional_forward_args with a first dimension of B are sliced per input.
    """
    rows = []
    for i in range(inputs.shape[0]):
        args = _args_for(additional_forward_args, i, inputs.shape[0])
        rows.append(integrated_gradients_one(model, inputs[i], baselines[i], int(targets[i]), args=args, **kwargs))
    return torch.stack(rows)


def _args_for(args, i, batch):
    return tuple(a[i:i + 1] if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == batch else a for a in args)
