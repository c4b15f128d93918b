"""Generation attribution to a tolerance: each continuation token's row refined on its own,
the forwards shared (docs/methods.md §14, §15).

The T targets are the "inputs" of the error-controlled rounds (engine/tolerance.py): each
has its own nested samples on the one straight path from h(x') to h(x), and is refined
until its own estimate is <= rtol. A round asks for rows (target k, alpha a). Distinct
alphas asked for by the same set of targets form a group; each chunk of a group costs ONE
teacher-forced forward plus one backward per target of the group
(ModelRunner.backward_columns with `columns`). A backward costs the whole chunk's rows
whichever rows a target asked for, so a target never pays for another's points: grouping
by alpha alone (one forward per chunk of a round's alphas, every asking target's
backward over all of it) took 7.5 s against 2.5 s for these groups (tiny GPT-2, hidden
128, P=32, T=16, rtol 0.01, one thread, CPU time on this project's shared machine).
Every target starts on the same grid and bisects by the same rule, so targets that
refine the same interval ask for the same alphas and share their forwards.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Optional

import torch

from ..engine import tolerance
from .teacher_forced import TeacherForced


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


def integrate_to_tolerance(forced: TeacherForced, h_x: torch.Tensor, h_b: torch.Tensor, x_in: torch.Tensor,
                           seen: torch.Tensor, tol: dict, acc_dtype: torch.dtype,
                           deadline: Optional[float] = None) -> Refined:
    """Row k = IG of F_k to rtol: sum over k's samples of w * dF_k/dh(h_b + a (h_x - h_b)) * (h_x - h_b).

    h_x, h_b: (1, N-1, E) the path's ends; x_in: (1, N-1) the ids fed beside it;
    seen: (T, N-1) bool, positions target k can see (row k is zero elsewhere);
    deadline: a time.monotonic() value after which no round starts (engine/tolerance.py)."""
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
        R, U = ex.shape[0], uniq.numel()
        row_of = torch.full((U, T), -1, dtype=torch.long, device=dev)  # the row asking for (alpha u, target k)
        row_of[inv, ex] = torch.arange(R, device=dev)
        # alphas asked for by the same targets form a group: one forward per chunk of the group,
        # then exactly its targets' backwards (a backward costs the whole chunk's rows, so a
        # target must not pay for rows it did not ask for)
        signatures, group = torch.unique(row_of >= 0, dim=0, return_inverse=True)
        rows = torch.empty((R, D), dtype=acc_dtype, device=dev)
        F = torch.empty(R, dtype=acc_dtype, device=dev)
        for sig, members in zip(signatures, _members(group, signatures.shape[0])):
            cols = sig.nonzero().view(-1)

            def step(s, n, members=members, cols=cols):
                pts = (h_b + a[members[s:s + n]].view(n, 1, 1) * diff).requires_grad_(True)
                return forced.run(pts, x_in.expand(n, -1), cols.tolist())

            def keep(s, n, r, members=members, cols=cols):
                f, grads = r  # grads (C, n, N-1, E): every (target, alpha) of the chunk was asked for
                count["forward"] += n
                count["backward"] += cols.numel()
                at = row_of[members[s:s + n]][:, cols].t()  # (C, n) row indices
                rows[at.reshape(-1)] = (grads.to(acc_dtype) * fold_k[cols].unsqueeze(1)).reshape(-1, D)
                F[at.reshape(-1)] = f[:, cols].t().reshape(-1).to(acc_dtype)

            # the fixed rule's budget (generation.py): a point counted 1/C, its one graph serves C backwards
            forced.runner.chunks(members.numel(), max(1, h_x[0].numel() // cols.numel()), dev.type, step, keep)
        if not bool(torch.isfinite(rows).all()) or not bool(torch.isfinite(F).all()):
            raise FloatingPointError("the model's values or gradients along the path from the baseline to the prompt "
                                     "are not finite (NaN/Inf)")
        return F, rows.sum(1), rows  # IF = dF_k/dalpha: completeness holds, so it steers refinement

    targets = SimpleNamespace(size=T, x=h_x, acc_dtype=acc_dtype)  # all integrate reads of a batch with evaluate=
    ti = tolerance.integrate(None, targets, scaled=False, rtol=tol["rtol"], min_steps=tol["min_steps"],
                             max_steps=tol["max_steps"], evaluate=evaluate, completeness=True, deadline=deadline)
    return Refined(attr=ti.attr.view(fold_k.shape), n_evaluations=ti.n_evaluations, error_estimate=ti.error_estimate,
                   converged=ti.converged, n_forward=count["forward"], n_backward=count["backward"], rounds=ti.rounds,
                   alphas=ti.alphas, weights=ti.weights)


def _members(group: torch.Tensor, G: int):
    """The indices of each group's members, groups 0 .. G-1, members in increasing order."""
    order = torch.argsort(group, stable=True)
    return torch.split(order, torch.bincount(group, minlength=G).tolist())
