"""Generation attribution to a tolerance: each continuation token's row refined on its own,
the forwards shared (docs/methods.md §14, §15).

The T targets are the "inputs" of the error-controlled rounds (engine/tolerance.py): each
has its own nested samples on the one straight path from h(x') to h(x), and is refined
until its own estimate is <= rtol. A round asks for rows (target k, alpha a); the rows
are grouped by alpha, and each chunk of distinct alphas costs ONE teacher-forced forward
plus one backward per target that asked for an alpha of the chunk
(ModelRunner.backward_columns with `columns`). Every target starts on the same grid and
bisects by the same rule, so targets that refine the same interval ask for the same
alphas and share forwards (and a round's new points share one forward chunk).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch

from ..engine import tolerance
from ..engine.runner import ModelRunner


@dataclass
class Refined:
    """What the rounds give back, per target k of T (see GenerationAttribution)."""

    attr: torch.Tensor  # (T, N-1, E) the attributions, accumulator dtype, later positions 0
    n_evaluations: torch.Tensor  # (T,) gradient evaluations (target k's backward rows)
    error_estimate: torch.Tensor  # (T,) estimated relative L2 error of row k
    converged: torch.Tensor  # (T,) bool
    n_forward: int  # path points run forward (each serves every target that asked for it)
    n_backward: int  # backward passes (one per chunk and target that needed it)
    rounds: int
    alphas: torch.Tensor  # (T, Smax) each target's samples, NaN-padded
    weights: torch.Tensor  # (T, Smax) their weights in the final rule, 0-padded


def integrate_to_tolerance(runner: ModelRunner, h_x: torch.Tensor, h_b: torch.Tensor, x_in: torch.Tensor,
                           seen: torch.Tensor, tol: dict, acc_dtype: torch.dtype) -> Refined:
    """Row k = IG of F_k to rtol: sum over k's samples of w * dF_k/dh(h_b + a (h_x - h_b)) * (h_x - h_b).

    h_x, h_b: (1, N-1, E) the path's ends; x_in: (1, N-1) the ids fed beside it;
    seen: (T, N-1) bool, positions target k can see (row k is zero elsewhere)."""
    T = seen.shape[0]
    dev = h_x.device
    diff = h_x - h_b
    # the integrand's fold: g * (h_x - h_b), zero where target k cannot see (causal)
    fold_k = diff[0].to(acc_dtype).unsqueeze(0) * seen.to(acc_dtype).unsqueeze(-1)  # (T, N-1, E)
    D = fold_k[0].numel()
    count = {"forward": 0, "backward": 0}

    def evaluate(examples, alphas):
        ex = examples.to(dev)
        uniq, inv = torch.unique(alphas, sorted=True, return_inverse=True)  # float64 alphas, exact duplicates
        inv = inv.to(dev)
        a = uniq.to(device=dev, dtype=h_x.dtype)
        R = ex.shape[0]
        rows = torch.empty((R, D), dtype=acc_dtype, device=dev)
        F = torch.empty(R, dtype=acc_dtype, device=dev)

        def step(s, n):
            asked = ((inv >= s) & (inv < s + n)).nonzero().view(-1)  # the rows this chunk answers
            cols = torch.unique(ex[asked])
            pts = (h_b + a[s:s + n].view(n, 1, 1) * diff).requires_grad_(True)
            f = runner.call(pts, (x_in.expand(n, -1),))
            if not isinstance(f, torch.Tensor) or tuple(f.shape) != (n, T):
                raise ValueError(f"internal: values of shape {tuple(getattr(f, 'shape', ()))}, expected ({n}, {T})")
            return f.detach(), cols, runner.backward_columns(f, pts, cols.tolist()), asked

        def keep(s, n, r):
            f, cols, grads, asked = r  # grads (len(cols), n, N-1, E)
            count["forward"] += n
            count["backward"] += cols.numel()
            where = torch.empty(T, dtype=torch.long, device=dev)
            where[cols] = torch.arange(cols.numel(), device=dev)
            k, u = ex[asked], inv[asked] - s
            g = grads[where[k], u].to(acc_dtype)  # (m, N-1, E): target k's gradient at its alpha
            rows[asked] = (g * fold_k[k]).reshape(-1, D)
            F[asked] = f[u, k].to(acc_dtype)

        # the chunk budget of the fixed rule (generation.py): a point counted 1/T, its graph serves T backwards
        runner.chunks(uniq.numel(), max(1, h_x[0].numel() // T), dev.type, step, keep)
        if not bool(torch.isfinite(rows).all()) or not bool(torch.isfinite(F).all()):
            raise FloatingPointError("the model's values or gradients along the path from the baseline to the prompt "
                                     "are not finite (NaN/Inf)")
        return F, rows.sum(1), rows  # IF = dF_k/dalpha: completeness holds, so it steers refinement

    targets = SimpleNamespace(size=T, x=h_x, acc_dtype=acc_dtype)  # all integrate reads of a batch with evaluate=
    ti = tolerance.integrate(None, targets, scaled=False, rtol=tol["rtol"], min_steps=tol["min_steps"],
                             max_steps=tol["max_steps"], evaluate=evaluate, completeness=True)
    return Refined(attr=ti.attr.view(fold_k.shape), n_evaluations=ti.n_evaluations, error_estimate=ti.error_estimate,
                   converged=ti.converged, n_forward=count["forward"], n_backward=count["backward"], rounds=ti.rounds,
                   alphas=ti.alphas, weights=ti.weights)
