"""Reference Expected Gradients and distribution baselines, one input at a time.

EG (Erion et al.): for each input, J references drawn with replacement and k alphas
per reference, one forward and one backward per (reference, alpha), as the paper
writes the expectation. IG_D / IDG_D (docs/methods.md §7): the mean of the reference IG / IDG
over every reference. The draws follow the recipe documented in pathattr.baselines.sets
(written out again here: the references never import the fast path).
For tests and benchmarks only.
"""
from __future__ import annotations

import torch

from .idg import idg_one
from .ig import _args_for, gradient_at, integrated_gradients_one, scalar_output


def draw(n_refs, batch, per_input, k, seed, lo=0.0, hi=1.0):
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(n_refs, (batch, per_input), generator=g)
    alphas = lo + (hi - lo) * torch.rand((batch, per_input, k), generator=g, dtype=torch.float64)
    return index, alphas


def expected_gradients_one(model, x, refs, alphas, target, output="logit", args=()):
    """EG of one input x against refs (J, *shape), each with its own alphas[j] (k,)."""
    total = torch.zeros_like(x)
    J, k = alphas.shape
    for j in range(J):
        r = refs[j]
        inner = torch.zeros_like(x)
        for a in alphas[j].tolist():
            _, g = gradient_at(model, r + a * (x - r), target, output, args)
            inner = inner + g
        total = total + (x - r) * inner / k
    return total / J


def expected_gradients(model, inputs, references, targets, n_references=20, n_alphas=1, seed=0,
                       additional_forward_args=(), output="logit"):
    """EG of a batch; references (R, *shape). Returns (attributions, delta) where
    delta = sum EG - (F(x) - mean_j F(r_j)) over the references drawn."""
    B = inputs.shape[0]
    index, alphas = draw(references.shape[0], B, n_references, n_alphas, seed)
    rows, deltas = [], []
    for b in range(B):
        args = _args_for(additional_forward_args, b, B)
        t = int(targets[b])
        refs = references[index[b]]
        attr = expected_gradients_one(model, inputs[b], refs, alphas[b].to(inputs.dtype), t, output, args)
        with torch.no_grad():
            f_x = float(scalar_output(model, inputs[b], t, output, args))
            f_r = sum(float(scalar_output(model, r, t, output, args)) for r in refs) / refs.shape[0]
        rows.append(attr)
        deltas.append(float(attr.sum()) - (f_x - f_r))
    return torch.stack(rows), torch.tensor(deltas, dtype=torch.float64)


def distribution_attribution(model, inputs, references, targets, method="ig", index=None,
                             additional_forward_args=(), **kwargs):
    """IG_D or IDG_D: mean over references of the reference IG / IDG (index (B, K) or all)."""
    B = inputs.shape[0]
    rows = []
    for b in range(B):
        args = _args_for(additional_forward_args, b, B)
        ids = range(references.shape[0]) if index is None else index[b].tolist()
        maps = []
        for i in ids:
            if method == "ig":
                maps.append(integrated_gradients_one(model, inputs[b], references[i], int(targets[b]), args=args, **kwargs))
            else:
                maps.append(idg_one(model, inputs[b], references[i], int(targets[b]), args=args, **kwargs)[0])
        rows.append(torch.stack(maps).mean(0))
    return torch.stack(rows)
