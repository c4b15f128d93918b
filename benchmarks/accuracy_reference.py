"""Reference IG and IDG maps for the accuracy study, in plain PyTorch (independent of the engine).

The rule: composite Gauss-Legendre, GL-k on each panel, with uniform panels of width h in
the middle of [0, 1] and panels that halve in width toward both ends (geometric grading),
`levels` halvings deep, so that boundary layers at alpha ~ 1e-4..1e-3 (LayerNorm of a
near-zero input, docs/methods.md §1) and sharp transitions anywhere are resolved.
`reference_rule()` has 8,320 nodes; `finer_rule()` ~2x as many with other panels and order,
and the study reports the largest relative difference between the two maps per model. A
piecewise-constant gradient (ReLU, max-pool) makes any fixed rule converge like the node
spacing, so `path_integrals(..., k=)` also bisects the panels that are not resolved (a kink
inside, or a jump at an edge), which takes ReLU models from ~1e-4 to ~1e-6 (docs/methods.md §1).

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


REF_K, FINER_K = 8, 12


def reference_rule():
    """8,320 nodes: h = 1/1000, GL-8, 20 halvings toward each end (smallest panel ~1e-9)."""
    return graded_rule(1e-3, REF_K, 20)


def finer_rule():
    """17,520 nodes, other panels and order: h = 1/1400, GL-12, 30 halvings."""
    return graded_rule(1.0 / 1400, FINER_K, 30)


def _chunk_rows(example: torch.Tensor, budget: int = 1 << 20) -> int:
    return max(8, min(2048, budget // max(1, example.numel())))


def _panels(nodes: np.ndarray, weights: np.ndarray, k: int):
    """Panel edges (P + 1,) of a composite GL-k rule made by graded_rule (its nodes come k per panel)."""
    n = nodes.reshape(-1, k)
    w = weights.reshape(-1, k).sum(1)  # panel widths
    edges = np.concatenate([[0.0], np.cumsum(w)])
    edges[-1] = 1.0
    return edges


class _Integrand:
    """Gradients of the explained logit at path points of one input, in chunks: per point the
    IG integrand g (D,) and the IDG integrand IF g (D,), IF = g . d (docs/methods.md §2)."""

    def __init__(self, model, baseline, d, target):
        self.model, self.baseline, self.d, self.target = model, baseline, d, target
        self.rows = _chunk_rows(d)
        self.count = 0

    def __call__(self, alphas: torch.Tensor) -> torch.Tensor:
        out = []
        dflat = self.d.reshape(-1)
        for s in range(0, alphas.shape[0], self.rows):
            a = alphas[s:s + self.rows]
            pts = (self.baseline + a.view(-1, *[1] * self.d.dim()) * self.d).requires_grad_(True)
            (g,) = torch.autograd.grad(self.model(pts)[:, self.target].sum(), pts)
            g = g.reshape(g.shape[0], -1)
            out.append(torch.cat([g, (g @ dflat)[:, None] * g], 1))  # (c, 2D)
        self.count += alphas.shape[0]
        return torch.cat(out)


def _panel_maps(k: int):
    """(2, k) rows giving the two highest Legendre coefficients (degrees k-1, k-2) of the
    polynomial through values at the GL-k nodes, and (2, k) rows giving its values at the
    panel's two ends. Large top coefficients: the panel is not resolved; ends that disagree
    with the neighbour's: a jump (a ReLU kink) next to the edge, between the last nodes."""
    t, _ = np.polynomial.legendre.leggauss(k)
    inv = np.linalg.inv(np.polynomial.legendre.legvander(t, k - 1))  # node values -> coefficients
    tail = inv[[k - 1, k - 2]]
    ends = np.polynomial.legendre.legvander(np.array([-1.0, 1.0]), k - 1) @ inv
    return torch.as_tensor(tail), torch.as_tensor(ends)


def path_integrals(model, x: torch.Tensor, baseline: torch.Tensor, target: torch.Tensor,
                   nodes: np.ndarray, weights: np.ndarray, k: int = 0, tol: float = 1e-8,
                   max_level: int = 40, max_extra: int = 60000) -> Dict[str, torch.Tensor]:
    """IG and IDG maps (B, *shape) of `model` (logit `target[b]` of input b) by the rule
    (nodes, weights), plus F(x) - F(x') (B,) for the completeness check; float64.

    Plain torch.autograd.grad on batches of path points, one input at a time. With k > 0
    (nodes, weights) must be a composite GL-k rule (graded_rule), and a panel that is not
    resolved is bisected (GL-k on each half) in rounds, the worst first, to max_level rounds
    or max_extra more points per input: one whose interpolating polynomial has large top
    Legendre coefficients, or whose end value differs from its neighbour's (a ReLU kink
    inside, or next to an edge), measured as |c| * width against tol x |integral|.
    extras: "points" (B,) the gradient evaluations used per input."""
    x = x.double()
    baseline = baseline.double().expand_as(x)
    a_all = torch.as_tensor(nodes, dtype=torch.float64)
    w_all = torch.as_tensor(weights, dtype=torch.float64)
    B = x.shape[0]
    D = x[0].numel()
    ig, idg = torch.zeros_like(x), torch.zeros_like(x)
    points = torch.zeros(B, dtype=torch.long)
    if k:
        t, wq = np.polynomial.legendre.leggauss(k)
        t, wq = torch.as_tensor((t + 1) / 2), torch.as_tensor(wq / 2)
        tail, ends = _panel_maps(k)
        edges = torch.as_tensor(_panels(nodes, weights, k))
    for b in range(B):
        d = x[b] - baseline[b]
        f = _Integrand(model, baseline[b], d, int(target[b]))
        vals = f(a_all)  # (S, 2D)
        total = w_all @ vals
        if k:
            lo, hi = edges[:-1].clone(), edges[1:].clone()
            pv = vals.view(-1, k, 2 * D)
            scale = total.view(2, D).norm(dim=1).clamp_min(1e-300)
            for level in range(max_level):
                excess = _unresolved(pv, tail, ends, hi - lo, scale, D, tol)
                room = (a_all.shape[0] + max_extra - f.count) // (2 * k)
                n_bad = int((excess > 1).sum())
                if n_bad == 0 or room < 1:
                    break
                bad = torch.zeros(lo.shape[0], dtype=torch.bool)
                bad[torch.argsort(excess, descending=True)[:min(room, n_bad)]] = True  # worst first
                mid = (lo[bad] + hi[bad]) / 2
                new_lo = torch.cat([lo[bad], mid])
                new_hi = torch.cat([mid, hi[bad]])
                alphas = (new_lo[:, None] + (new_hi - new_lo)[:, None] * t[None]).reshape(-1)
                new_pv = f(alphas).view(-1, k, 2 * D)
                lo, hi = torch.cat([lo[~bad], new_lo]), torch.cat([hi[~bad], new_hi])
                pv = torch.cat([pv[~bad], new_pv])
                order = torch.argsort(lo)
                lo, hi, pv = lo[order], hi[order], pv[order]
            total = torch.einsum("p,k,pkd->d", hi - lo, wq, pv)
        points[b] = f.count
        ig[b] = total[:D].view_as(d) * d
        idg[b] = total[D:].view_as(d) * d
    with torch.no_grad():
        rows_b = torch.arange(B)
        change = model(x)[rows_b, target] - model(baseline)[rows_b, target]
    return {"ig": ig, "idg": idg, "change": change, "points": points}


def _unresolved(pv, tail, ends, widths, scale, D, tol):
    """Per panel (P,), panels sorted along the path: the larger of its top Legendre coefficients
    and the jumps to its neighbours' end values, times its width, over tol x the norm of the
    integral (IG and IDG parts apart); > 1: bisect it."""
    def norms(v):  # (P, ..., 2D) -> (P, ...) the IG part's and the IDG part's norms, scaled
        return torch.maximum(v[..., :D].norm(dim=-1) / scale[0], v[..., D:].norm(dim=-1) / scale[1])

    c = norms(torch.matmul(tail, pv)).amax(1)  # (P, 2, 2D) -> (P,)
    e = torch.matmul(ends, pv)  # (P, 2, 2D): values at the left and right end
    jump = norms(e[1:, 0] - e[:-1, 1])  # (P - 1,) across each inner edge
    zero = jump.new_zeros(1)
    c = torch.maximum(c, torch.maximum(torch.cat([zero, jump]), torch.cat([jump, zero])))
    return widths * c / tol


def rel_l2(a: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per input ||a - ref|| / ||ref|| (B,), float64."""
    a = a.reshape(a.shape[0], -1).double()
    ref = ref.reshape(ref.shape[0], -1).double()
    return (a - ref).norm(dim=1) / ref.norm(dim=1).clamp_min(1e-300)
