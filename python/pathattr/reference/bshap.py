"""Reference BShap, one input at a time, as the Shapley formula is written (docs/methods.md §9).

Exact: for each feature i, the sum over every subset S of the other features of
|S|! (d - |S| - 1)! / d! [F(x_{S+i}; x'_rest) - F(x_S; x'_rest)], one forward per
distinct subset point (memoised). Sampled: the mean over the given orders of each
feature's marginal gain when it is added in that order. For tests only.
"""
from __future__ import annotations

import itertools
import math

import torch

from .ig import _args_for, scalar_output


def _point(x, baseline, mask, subset):
    keep = torch.zeros_like(mask, dtype=torch.bool)
    for g in subset:
        keep |= mask == g
    return torch.where(keep, x, baseline)


def bshap_one(model, x, baseline, target, mask, output="logit", args=()):
    """Exact BShap of one input; mask (shape of x) holds group ids. Returns {group id: phi}."""
    ids = sorted(set(mask.flatten().tolist()))
    d = len(ids)
    cache = {}

    def F(subset):
        key = frozenset(subset)
        if key not in cache:
            with torch.no_grad():
                cache[key] = float(scalar_output(model, _point(x, baseline, mask, key), target, output, args))
        return cache[key]

    phi = {}
    for i in ids:
        others = [g for g in ids if g != i]
        total = 0.0
        for size in range(d):
            w = math.factorial(size) * math.factorial(d - size - 1) / math.factorial(d)
            for S in itertools.combinations(others, size):
                total += w * (F(S + (i,)) - F(S))
        phi[i] = total
    return phi


def permutations(batch, n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.argsort(torch.rand((batch, n, d), generator=g, dtype=torch.float64), dim=-1)


def bshap_sampled_one(model, x, baseline, target, mask, orders, output="logit", args=()):
    """Permutation-sampled BShap; orders (P, d) index the sorted group ids. Returns {group id: phi}."""
    ids = sorted(set(mask.flatten().tolist()))
    phi = {g: 0.0 for g in ids}
    for order in orders.tolist():
        prefix = []
        with torch.no_grad():
            prev = float(scalar_output(model, baseline, target, output, args))
            for t in order:
                prefix.append(ids[t])
                cur = float(scalar_output(model, _point(x, baseline, mask, prefix), target, output, args))
                phi[ids[t]] += cur - prev
                prev = cur
    return {g: v / orders.shape[0] for g, v in phi.items()}


def bshap(model, inputs, baselines, targets, feature_mask=None, n_permutations=None, seed=0,
          additional_forward_args=(), output="logit"):
    """BShap of a batch, every element getting its group's value: (B, *shape) float64.

    feature_mask: None (each element its own group) or (B, *shape) ids. n_permutations:
    None for the exact sum, else that many orders per input from `permutations`.
    """
    B = inputs.shape[0]
    rows = []
    perms = None
    for b in range(B):
        mask = torch.arange(inputs[b].numel()).view(inputs[b].shape) if feature_mask is None else feature_mask[b]
        args = _args_for(additional_forward_args, b, B)
        if n_permutations is None:
            phi = bshap_one(model, inputs[b], baselines[b], int(targets[b]), mask, output, args)
        else:
            if perms is None:
                perms = permutations(B, n_permutations, len(set(mask.flatten().tolist())), seed)
            phi = bshap_sampled_one(model, inputs[b], baselines[b], int(targets[b]), mask, perms[b], output, args)
        out = torch.zeros(inputs[b].shape, dtype=torch.float64)
        for g, v in phi.items():
            out[mask == g] = v
        rows.append(out)
    return torch.stack(rows)
