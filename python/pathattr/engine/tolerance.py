"""Error-controlled path integrals: every input refined in rounds until its map is within
`rtol` (relative L2), docs/methods.md §14.

Each input's path [0, U] is covered by intervals carrying five nested samples (ends,
quarter points, midpoint). Three trapezoid sums on 2, 3 and 5 of them (T1, T2, T4) give
two Simpson sums (S1, S2) and the observed convergence ratio rho = |T4 - T2| / |T2 - T1|
of the interval:

  smooth (rho within RHO_SMOOTH around 1/4, the asymptotic ratio of a smooth integrand,
  and |S2 - S1| <= SMOOTH_RESIDUAL |T4 - T2|: Richardson really cancelled the h^2 term):
      value S2, error vector (S2 - S1) / 15            (Richardson for Simpson's h^4)
  rough (a kink, a jump of ReLU gradients, or not yet resolved):
      value T4, error vector (T4 - T2) rho / (1 - rho)  (the geometric tail of the
      observed ratio, rho capped at RHO_MAX), its norm at least ROUGH_FLOOR |T2 - T1|

An input's estimate is the norm of its summed error vectors, at least RSS_FLOOR times their
root-sum-square (estimated errors that happen to cancel between intervals need not cancel
in the true error: a ReLU CNN's IDG map was 1.6 % off with RSS_FLOOR 0.5), times
ESTIMATE_SCALE (the rule runs high: the scale is the median bias measured by
benchmarks/accuracy.py). The completeness of each interval is a second indicator at no
cost: the rule applied to IF = dF/dalpha against F(b) - F(a), both from samples already
taken; it steers refinement (an interval whose output change the samples miss is
bisected) but is left out of the estimate, where it overstates maps whose features
cancel. An input is refined until its estimate is <= SAFETY * rtol * |A| (a margin for
the estimate's spread) and, in output units, its intervals' absolute completeness
residuals add up to at most COMPLETENESS_STOP * max(rtol, COMPLETENESS_STOP_MIN) * TV
(TV = sum |F(b) - F(a)|, for IG the larger of TV and |A|_1; intervals narrower than
COMPLETENESS_MIN_WIDTH left out, so that an output jump the gradient does not see stops
mattering after ten bisections): a feature narrower than the samples' spacing, e.g. a ReLU
bump between two samples, leaves the embedded rules agreeing but not the output's change.
It is reported converged when the estimate is <= rtol * |A|. Unconverged
inputs get their worst intervals bisected (the C++ scheduler's bulk marking,
csrc/refine.cpp): four new samples per bisection, every earlier sample kept. Rows of
all inputs share the engine's chunks (PathEngine.ragged). Memory: one integrand row
(D values) per sample of the call, so max_steps bounds it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from .. import _scheduler
from .batch import PathBatch

RHO_SMOOTH = (0.15, 0.35)  # around a smooth interval's 1/4 (a jump's ratio is about 1/2, or anything)
RHO_MAX = 0.75  # the rough branch's error factor rho / (1 - rho) stays <= 3
SMOOTH_RESIDUAL = 0.25  # smooth also needs |S2 - S1| <= this * |T4 - T2|: Richardson must have cancelled
ROUGH_FLOOR = 0.25  # the rough error's norm is at least this * |T2 - T1|
SAFETY = 0.5  # refine until the estimate is <= SAFETY * rtol (converged: <= rtol)
ESTIMATE_SCALE = 0.5  # the rule's estimate runs ~2x high (median, benchmarks/accuracy.py): reported scaled
COMPLETENESS_STOP = 1.0  # refine until sum |completeness residual| <= this * rtol * TV (None: no such test)
COMPLETENESS_STOP_MIN = 0.003  # ... with rtol no smaller than this there: the test is for gross misses (aliasing)
COMPLETENESS_MIN_WIDTH = 2.0 ** -10  # ... counting intervals at least this wide (narrower features are past its reach)
RSS_FLOOR = 1.0  # the summed error vectors' norm is at least their root-sum-square: no credit for cancelling
THETA2 = 0.5  # bulk marking: bisect the intervals carrying half the squared error
MAX_ROUNDS = 200  # a guard only: each round at least bisects one interval per active input


@dataclass
class ToleranceIntegral:
    """What an error-controlled pass returns, per input b."""

    attr: torch.Tensor  # (B, D) the map, sum over the rule of the integrand rows, accumulator dtype
    importance_integral: torch.Tensor  # (B,) the rule applied to IF: the completeness sum
    error_estimate: torch.Tensor  # (B,) estimated relative L2 error of the map
    converged: torch.Tensor  # (B,) bool: estimate <= rtol
    n_evaluations: torch.Tensor  # (B,) int64 gradient evaluations
    rounds: int
    alphas: torch.Tensor  # (B, Smax) each input's samples in increasing alpha, NaN-padded
    weights: torch.Tensor  # (B, Smax) their weights in the final rule, 0-padded
    values: torch.Tensor  # (B, Smax) F at the samples, NaN-padded
    importance: torch.Tensor  # (B, Smax) IF at the samples, NaN-padded
    f_start: torch.Tensor  # (B,) F at alpha 0 (the baseline)
    f_end: torch.Tensor  # (B,) F at alpha U (the input for the whole path)


def initial_intervals(min_steps: int) -> int:
    """Intervals of the first round: the fewest K0 >= 1 with 4 K0 + 1 >= min_steps."""
    return max(1, math.ceil((min_steps - 1) / 4))


def _interval_estimates(V, IF, F, pts, width):
    """Per interval: value (K, D), error vector (K, D), smooth flag (K,), IF value (K,),
    completeness residual (K,), |F(b) - F(a)| (K,)."""
    h = width.view(-1, 1)
    g = V[pts]  # (K, 5, D)
    t1 = (g[:, 0] + g[:, 4]) * (h / 2)
    t2 = (g[:, 0] + 2 * g[:, 2] + g[:, 4]) * (h / 4)
    t4 = (g[:, 0] + 2 * (g[:, 1] + g[:, 2] + g[:, 3]) + g[:, 4]) * (h / 8)
    d1, d2 = t2 - t1, t4 - t2
    n1, n2 = d1.norm(dim=1), d2.norm(dim=1)
    rho = torch.where(n1 > 0, n2 / torch.where(n1 > 0, n1, torch.ones_like(n1)),
                      torch.where(n2 > 0, torch.ones_like(n2), torch.zeros_like(n2)))
    smooth = (rho >= RHO_SMOOTH[0]) & (rho <= RHO_SMOOTH[1])
    s1, s2 = t2 + d1 / 3, t4 + d2 / 3
    if SMOOTH_RESIDUAL is not None:
        smooth = smooth & ((s2 - s1).norm(dim=1) <= SMOOTH_RESIDUAL * n2)
    r = rho.clamp(max=RHO_MAX)
    # rough: the geometric tail of the observed ratio, but never below |T2 - T1| / 4 (what a
    # jump's trapezoid error is on average): one lucky small |T4 - T2| must not hide a jump
    rough = torch.maximum(n2 * (r / (1 - r)), n1 * ROUGH_FLOOR) / torch.where(n2 > 0, n2, torch.ones_like(n2))
    sm = smooth.view(-1, 1)
    value = torch.where(sm, s2, t4)
    error = torch.where(sm, (s2 - s1) / 15, torch.where((n2 > 0).view(-1, 1), d2 * rough.view(-1, 1), d1 * ROUGH_FLOOR))
    # the same rule on the scalar IF, against the output change over the interval
    q = IF[pts]  # (K, 5)
    w = width
    q_t2 = (q[:, 0] + 2 * q[:, 2] + q[:, 4]) * (w / 4)
    q_t4 = (q[:, 0] + 2 * (q[:, 1] + q[:, 2] + q[:, 3]) + q[:, 4]) * (w / 8)
    q_val = torch.where(smooth, q_t4 + (q_t4 - q_t2) / 3, q_t4)
    dF = F[pts[:, 4]] - F[pts[:, 0]]
    return value, error, smooth, q_val, q_val - dF, dF.abs()


class _SampleStore:
    """Every sample's integrand row, F and IF, in buffers that grow by doubling: a round
    appends its rows without copying the earlier ones again (a bisection reweights old
    samples, so they are all kept until the call ends)."""

    def __init__(self):
        self.n = 0
        self.bufs = None

    def add(self, f: torch.Tensor, q: torch.Tensor, v: torch.Tensor):
        """Append one round's (F, IF, rows); returns views (rows, F, IF) of everything so far."""
        need = self.n + f.shape[0]
        if self.bufs is None or need > self.bufs[0].shape[0]:
            cap = max(need, 2 * (self.bufs[0].shape[0] if self.bufs is not None else 0))
            new = [torch.empty((cap,) + tuple(t.shape[1:]), dtype=t.dtype, device=t.device) for t in (v, f, q)]
            if self.bufs is not None:
                for dst, src in zip(new, self.bufs):
                    dst[:self.n] = src[:self.n]
            self.bufs = new
        for dst, src in zip(self.bufs, (v, f, q)):
            dst[self.n:need] = src
        self.n = need
        return tuple(b[:need] for b in self.bufs)


def _per_input(x, index, B):
    out = torch.zeros((B,) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    return out.index_add_(0, index, x)


def compute_eps(engine, batch) -> float:
    """The machine epsilon of the arithmetic the model runs in: the autocast dtype, else
    the inputs' floating dtype (float64 for anything else)."""
    dtype = getattr(engine, "autocast", None) or batch.x.dtype
    return float(torch.finfo(dtype if dtype.is_floating_point else torch.float64).eps)


def integrate(engine, batch: PathBatch, *, scaled: bool, rtol: float, min_steps: int, max_steps: int,
              upper: Optional[torch.Tensor] = None, deadline: Optional[float] = None,
              evaluate: Optional[Callable] = None, completeness: bool = True) -> ToleranceIntegral:
    """Refine every input of `batch` until its estimated relative error is <= rtol, it
    has max_steps samples, or `deadline` (time.monotonic()) has passed (then the last
    round's map is returned, marked unconverged). scaled: the IDG integrand IF * g * (x - x').
    upper: (B,) path ends in (0, 1] (Left-IG), default 1.
    evaluate(examples, alphas) -> (F (R,), IF (R,), rows (R, N)): another integrand on the
    same straight paths (neuron attributions), default engine.ragged's gradient rows.
    completeness=False: IF does not integrate to F(b) - F(a) (a region's neurons), so the
    completeness residual does not steer refinement."""
    if evaluate is None:
        def evaluate(examples, alphas):
            return engine.ragged(batch, examples, alphas, scaled)
    B = batch.size
    dev = batch.x.device
    acc = batch.acc_dtype
    eps = compute_eps(engine, batch)
    up = np.ones(B) if upper is None else np.ascontiguousarray(upper.detach().to("cpu", torch.float64).numpy())
    (lo, width, owner, pts), alpha, point_input = _scheduler.initial_grid(up, initial_intervals(min_steps))
    n_eval = np.bincount(point_input, minlength=B).astype(np.int64)
    store = _SampleStore()
    all_alpha, all_input = alpha, point_input
    rounds = 0
    while True:
        rounds += 1
        V, F, IF = store.add(*evaluate(torch.from_numpy(point_input), torch.from_numpy(alpha)))
        pts_t = torch.from_numpy(pts).to(dev)
        owner_t = torch.from_numpy(owner).to(dev)
        value, error, smooth, q_val, resid, dF = _interval_estimates(V, IF, F, pts_t,
                                                                     torch.from_numpy(width).to(dev, acc))
        attr = _per_input(value, owner_t, B)
        norm = attr.norm(dim=1)
        if not completeness:
            resid = torch.zeros_like(resid)
        tv = _per_input(dF, owner_t, B)
        scale = norm / torch.where(tv > 0, tv, torch.ones_like(tv))  # map units per unit of unexplained output
        # the error vectors summed, never below their root-sum-square (RSS_FLOOR: estimated
        # errors that happen to cancel between intervals need not cancel in the true error)
        en = error.norm(dim=1)
        rss = _per_input(en * en, owner_t, B).sqrt()
        vec_err = torch.maximum(_per_input(error, owner_t, B).norm(dim=1), RSS_FLOOR * rss)
        # the completeness residual is left out of the estimate: in map units it overstates
        # maps whose features cancel; it steers refinement (eta) and gates the stop instead
        est = ESTIMATE_SCALE * vec_err
        rel = torch.where(norm > 0, est / torch.where(norm > 0, norm, torch.ones_like(norm)),
                          torch.where(est > 0, torch.full_like(est, math.inf), torch.zeros_like(est)))
        # rounding: no map computed in this arithmetic is better than its epsilon, and no
        # refinement gets it there (bf16: ~8e-3); the estimate says so and the stop accepts it
        rel = torch.where(norm > 0, rel.clamp_min(eps), rel)
        done = rel <= max(SAFETY * rtol, eps)
        if completeness and COMPLETENESS_STOP is not None:
            # the samples must also account for the output's change on every interval: a
            # feature narrower than the samples' spacing (a ReLU bump between two samples)
            # leaves the embedded rules agreeing, but not F(b) - F(a)
            # intervals narrower than COMPLETENESS_MIN_WIDTH are left out: an output that jumps
            # where its gradient does not see it (a step, a detach) cannot be resolved by bisection
            w_t = torch.from_numpy(width).to(dev, acc)
            # and each residual less what rounding alone makes of it (F and IF carry eps each)
            noise = eps * (F[pts_t[:, 0]].abs() + F[pts_t[:, 4]].abs() + q_val.abs())
            unexplained = (resid.abs() - noise).clamp_min(0)
            missed = _per_input(torch.where(w_t >= COMPLETENESS_MIN_WIDTH, unexplained, torch.zeros_like(resid)),
                                owner_t, B)
            bound = COMPLETENESS_STOP * max(rtol, COMPLETENESS_STOP_MIN)
            # measured against the output's variation; for IG (a map in output units) against
            # |A|_1 where that is larger: a map whose features cancel (sum A << |A|_1) has a
            # residual large next to TV but not next to its own size (a ReLU CNN refined 3-10x
            # longer than its map needed without this); IDG's map is not in output units
            scale_c = tv if scaled else torch.maximum(tv, attr.abs().sum(1))
            done = done & (missed <= bound * torch.where(scale_c > 0, scale_c, torch.ones_like(scale_c)))
        done = done.cpu().numpy()
        converged = rel <= rtol
        budget = (max_steps - n_eval) // 4
        active = (~done) & (budget > 0)
        if not active.any() or rounds >= MAX_ROUNDS or (deadline is not None and time.monotonic() >= deadline):
            break
        eta = torch.maximum(en, resid.abs() * scale[owner_t])
        (lo, width, owner, pts), alpha, point_input, marked = _scheduler.refine_round(
            lo, width, owner, pts, eta.to("cpu", torch.float64).numpy(), active.astype(np.uint8), budget,
            V.shape[0], THETA2)
        if alpha.size == 0:
            break  # nothing left to bisect (every marked interval at the width floor)
        n_eval += 4 * marked
        all_alpha = np.concatenate([all_alpha, alpha])
        all_input = np.concatenate([all_input, point_input])
    weights = _scheduler.composite_weights(width, pts, smooth.cpu().numpy().astype(np.uint8), V.shape[0])
    samples = _ragged_details(all_alpha, all_input, weights, F, IF, B, acc)
    f_start, f_end = _ends(F, all_alpha, all_input, up, B)
    return ToleranceIntegral(attr=attr, importance_integral=_per_input(q_val, owner_t, B), error_estimate=rel,
                             converged=converged, n_evaluations=torch.from_numpy(n_eval),
                             rounds=rounds, f_start=f_start, f_end=f_end, **samples)


def _ragged_details(alpha, inp, weights, F, IF, B, acc):
    """Each input's samples sorted by alpha into (B, Smax) rows (NaN / 0 padding)."""
    order = np.lexsort((alpha, inp))
    counts = np.bincount(inp, minlength=B)
    S = int(counts.max()) if B else 0
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if B else np.zeros(0, np.int64)
    col = np.arange(order.size) - np.repeat(starts, counts)
    row = inp[order]
    dev = F.device
    out = {}
    for name, src, pad in (("alphas", torch.from_numpy(alpha), math.nan), ("weights", torch.from_numpy(weights), 0.0),
                           ("values", F, math.nan), ("importance", IF, math.nan)):
        t = torch.full((B, S), pad, dtype=acc if name in ("values", "importance") else torch.float64,
                       device=dev if name in ("values", "importance") else "cpu")
        idx = torch.from_numpy(order)
        t[torch.from_numpy(row), torch.from_numpy(col)] = src[idx.to(src.device)].to(t.dtype)
        out[name] = t
    return out


def _ends(F, alpha, inp, upper, B):
    """F at alpha 0 and at alpha U of every input (both are samples of the first round)."""
    first = np.zeros(B, np.int64)
    last = np.zeros(B, np.int64)
    for which, target in ((first, None), (last, upper)):
        hit = alpha == 0.0 if target is None else alpha == target[inp]
        idx = np.nonzero(hit)[0]
        which[inp[idx]] = idx
    dev = F.device
    return F[torch.from_numpy(first).to(dev)], F[torch.from_numpy(last).to(dev)]
