"""Reference Local Path Integration (Yang et al., Eq. 4 with the bank's densities), one input at a time.

Find the neighbourhood whose centre is nearest to the input's logits (a loop over
centres), then sum rho_j (x - r_j) * mean_a dF/dx(r_j + alpha_ja (x - r_j)) with one
forward and one backward per (reference, alpha). The alphas follow the recipe of
pathattr.baselines.sets (written out here). For tests and benchmarks only.
"""
from __future__ import annotations

import torch

from .ig import _args_for, gradient_at, scalar_output


def draw_alphas(batch, per_input, k, seed, lo=0.01, hi=0.99):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand((batch, per_input, k), generator=g, dtype=torch.float64)


def nearest_centre(logits, centres):
    best, best_d = 0, None
    for c in range(centres.shape[0]):
        d = float(((logits.double() - centres[c].double()) ** 2).sum())
        if best_d is None or d < best_d:
            best, best_d = c, d
    return best


def lpi_one(model, x, references, densities, alphas, target, output="logit", args=()):
    """LPI of one input against references (m, *shape) with densities (m,) and alphas (m, k)."""
    total = torch.zeros_like(x)
    for j in range(references.shape[0]):
        r = references[j]
        inner = torch.zeros_like(x)
        for a in alphas[j].tolist():
            inner = inner + gradient_at(model, r + a * (x - r), target, output, args)[1]
        total = total + float(densities[j]) * (x - r) * inner / alphas.shape[1]
    return total


def lpi(model, inputs, bank_references, densities, centres, targets=None, n_alphas=1, seed=0,
        alpha_range=(0.01, 0.99), additional_forward_args=(), output="logit"):
    """LPI of a batch from a bank's tensors (C, m, *shape), (C, m), (C, K).
    Returns (attributions, neighbourhoods, delta); targets None = argmax of the logits."""
    B, m = inputs.shape[0], bank_references.shape[1]
    alphas = draw_alphas(B, m, n_alphas, seed, *alpha_range).to(inputs.dtype)
    rows, hoods, deltas = [], [], []
    for b in range(B):
        args = _args_for(additional_forward_args, b, B)
        with torch.no_grad():
            logits = model(inputs[b].unsqueeze(0), *args)[0]
        t = int(logits.argmax()) if targets is None else int(targets[b])
        c = nearest_centre(logits, centres)
        refs = bank_references[c].to(inputs.dtype)
        attr = lpi_one(model, inputs[b], refs, densities[c], alphas[b], t, output, args)
        with torch.no_grad():
            f_x = float(scalar_output(model, inputs[b], t, output, args))
            f_r = sum(float(densities[c][j]) * float(scalar_output(model, refs[j], t, output, args)) for j in range(m))
        rows.append(attr)
        hoods.append(c)
        deltas.append(float(attr.sum()) - (f_x - f_r))
    return torch.stack(rows), torch.tensor(hoods), torch.tensor(deltas, dtype=torch.float64)
