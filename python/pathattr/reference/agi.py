"""Reference Adversarial Gradient Integration (Pan et al. 2021), one input at a time: docs/methods.md §5.

For each adversarial class l, a plain loop as the paper writes it: evaluate the
model at x_i, stop if its argmax is l, else take the gradients of softmax_l and
softmax_c with two backward passes of the same forward, step by eps * sign(grad_l)
(from x_i, or from x_0 with restart=True as in the authors' code), clamp, and add
-grad_c * (x_{i+1} - x_i) (x_{i+1} - x_0 with restart). For tests and benchmarks
only; it shares no code with the engine or the fast path.
"""
from __future__ import annotations

import math

import torch

from .ig import _args_for


def adversarial_classes(explained, num_classes, topk, seed):
    """Per input, `topk` classes other than explained[b], evenly spaced over the rest:
    candidate number floor((i + u_b) (C - 1) / topk) in increasing class order, one
    u_b ~ U[0, 1) per input from torch.Generator().manual_seed(seed)."""
    u = torch.rand(len(explained), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    rows = []
    for b, c in enumerate(explained):
        others = [k for k in range(num_classes) if k != int(c)]
        rows.append([others[math.floor((i + float(u[b])) * ((num_classes - 1) / topk))] for i in range(topk)])
    return rows


def agi_one(model, x, target, classes, epsilon=0.05, max_iter=20, lo=None, hi=None, restart=False, args=()):
    """AGI of one input x (shape) for the explained class `target` over `classes`."""
    total = torch.zeros_like(x)
    for l in classes:
        cur = x.clone()
        for _ in range(max_iter):
            z = cur.detach().clone().requires_grad_(True)
            out = model(z.unsqueeze(0), *args)[0]
            if int(out.argmax()) == l:
                break
            prob = torch.softmax(out, dim=0)
            (g_l,) = torch.autograd.grad(prob[l], z, retain_graph=True)
            (g_c,) = torch.autograd.grad(prob[target], z)
            start = x if restart else cur
            new = start + epsilon * torch.sign(g_l)
            if lo is not None or hi is not None:
                new = torch.clamp(new, min=lo, max=hi)
            total = total - g_c * (new - start)
            cur = new.detach()
    return total


def adversarial_gradient_integration(model, inputs, targets, additional_forward_args=(), topk=20, seed=0, **kwargs):
    """Loop of `agi_one` over a batch (classes from `adversarial_classes`); returns (attributions, classes)."""
    with torch.no_grad():
        C = model(inputs[:1], *_args_for(additional_forward_args, 0, inputs.shape[0])).shape[1]
    classes = adversarial_classes([int(t) for t in targets], C, topk, seed)
    rows = []
    for i in range(inputs.shape[0]):
        args = _args_for(additional_forward_args, i, inputs.shape[0])
        rows.append(agi_one(model, inputs[i], int(targets[i]), classes[i], args=args, **kwargs))
    return torch.stack(rows), classes
