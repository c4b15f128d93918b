"""Reference IG and IDG maps for the accuracy study, in plain PyTorch (independent of the engine).

The rule: composite Gauss-Legendre, GL-k on each panel, with uniform panels of width h in
the middle of [0, 1] and panels that halve in width toward both ends (geometric grading),
`levels` halvings deep, so that boundary layers at alpha ~ 1e-4..1e-3 (LayerNorm of a
near-zero input, docs/methods.md §1) and sharp transitions anywhere are resolved.
`reference_rule()` has ~8,300 nodes; `finer_rule()` ~2x as many with other panels and order,
and the study reports the largest relative difference between the two maps per model.

IG_i  = d_i * int_0^1 g_i(alpha) dalpha,                d = x - x', g = dF/dx(x' + alpha d)
IDG_i = d_i * int_0^1 (g(alpha) . d) g_i(alpha) dalpha   (IF = dF/dalpha exactly, docs/methods.md §2)
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch


def graded_rule(h: float = 1e-3, k: int = 8, levels: int = 20) -> Tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (float64, ascending) of the graded composite GL-k rule on [0, 1].

    Middle: uniform panels of width ~h on [h, 1 - h]; each end: panels [h 2^-(j+1), h 2^-j]
    for j = 0..levels-1, then [0, h 2^-levels]."""
    if not (0 < h < 0.25) or k < 1 or levels < 0:
        raise ValueError(f"need 0 < h < 0.25, k >= 1, levels >= 0; got h={h}, k={k}, levels={levels}")
    n_mid = max(1, int(round((1 - 2 * h) / h)))
    mid = np.linspace(h, 1 - h, n_mid + 1)
    left = np.concatenate([[0.0], h * 2.0 ** -np.arange(levels, 0, -1)])  # 0, h/2^L, ..., h/2
    edges = np.concatenate([left, mid, 1.0 - left[::-1]])
    t, w = np.polynomial.legendre.leggauss(k)
    t, w = (t + 1) / 2, w / 2
    a, b = edges[:-1, None], edges[1:, None]
    nodes = (a + (b - a) * t).ravel()
    weights = ((b - a) * w).ravel()
    return nodes, weights


def reference_rule():
    """~8,300 nodes: h = 1/1000, GL-8, 20 halvings toward each end (smallest panel ~1e-9)."""
    return graded_rule(1e-3, 8, 20)


def finer_rule():
    """~16,900 nodes, other panels and order: h = 1/1400, GL-12, 30 halvings."""
    return graded_rule(1.0 / 1400, 12, 30)


def _chunk_rows(example: torch.Tensor, budget: int = 1 << 20) -> int:
    return max(8, min(2048, budget // max(1, example.numel())))


def path_integrals(model, x: torch.Tensor, baseline: torch.Tensor, target: torch.Tensor,
                   nodes: np.ndarray, weights: np.ndarray) -> Dict[str, torch.Tensor]:
    """IG and IDG maps (B, *shape) of `model` (logit `target[b]` of input b) by the rule
    (nodes, weights), plus F(x) - F(x') (B,) for the completeness check; float64.

    Plain torch.autograd.grad on batches of path points, one input at a time."""
    x = x.double()
    baseline = baseline.double().expand_as(x)
    a_all = torch.as_tensor(nodes, dtype=torch.float64)
    w_all = torch.as_tensor(weights, dtype=torch.float64)
    ig = torch.zeros_like(x)
    idg = torch.zeros_like(x)
    rows = _chunk_rows(x[0])
    for b in range(x.shape[0]):
        d = x[b] - baseline[b]
        for s in range(0, a_all.shape[0], rows):
            a, w = a_all[s:s + rows], w_all[s:s + rows]
            pts = (baseline[b] + a.view(-1, *[1] * d.dim()) * d).requires_grad_(True)
            out = model(pts)[:, int(target[b])]
            (g,) = torch.autograd.grad(out.sum(), pts)
            g = g.reshape(g.shape[0], -1)
            dflat = d.reshape(-1)
            importance = g @ dflat  # IF(alpha) = dF/dalpha
            ig[b] += (w @ g).view_as(d)
            idg[b] += ((w * importance) @ g).view_as(d)
        ig[b] *= d
        idg[b] *= d
    with torch.no_grad():
        rows_b = torch.arange(x.shape[0])
        change = model(x)[rows_b, target] - model(baseline)[rows_b, target]
    return {"ig": ig, "idg": idg, "change": change}


def rel_l2(a: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per input ||a - ref|| / ||ref|| (B,), float64."""
    a = a.reshape(a.shape[0], -1).double()
    ref = ref.reshape(ref.shape[0], -1).double()
    return (a - ref).norm(dim=1) / ref.norm(dim=1).clamp_min(1e-300)
