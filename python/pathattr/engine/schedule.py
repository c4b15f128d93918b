"""Per-example alpha grids and weights, from the C++ scheduler (pathattr._scheduler).

A schedule is two (B, S) float64 tensors: every example gets the same number S of
samples, so one launch serves the batch. Uniform rules are the same for every
example; adaptive grids (docs/methods.md §2.1) are computed on the host from a probe curve:
the one host round trip of an adaptive method.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch

from .. import _scheduler
from .checks import check_choice, check_steps

RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")
GROWTHS = ("abs", "positive")
PLACEMENTS = ("midpoint", "left")


@dataclass
class Schedule:
    """alphas, weights: (B, S) on the CPU, float64 (float32 where the caller asked the
    scheduler for it: `adaptive(dtype=...)`); counts: (B, N) per probe interval or None."""

    alphas: torch.Tensor
    weights: torch.Tensor
    counts: Optional[torch.Tensor] = None
    rule: Optional[Tuple[str, int]] = None  # (method, n) for a uniform rule: its converted copies are cached

    @property
    def steps(self) -> int:
        return self.alphas.shape[1]

    def on(self, device: torch.device, alpha_dtype: torch.dtype, weight_dtype: torch.dtype):
        """(alphas, weights) on `device` in the given dtypes. A uniform rule's are converted
        once per process and expanded per call (two copies fewer per call)."""
        if self.rule is None:
            if self.alphas.dtype == alpha_dtype and self.weights.dtype == weight_dtype and device.type == "cpu":
                return self.alphas, self.weights  # already what the passes use (no .to dispatch)
            return self.alphas.to(device=device, dtype=alpha_dtype), self.weights.to(device=device, dtype=weight_dtype)
        return _rule_on(self.rule[0], self.rule[1], self.alphas.shape[0], device, alpha_dtype, weight_dtype)


def quadrature(method: str, n: int):
    """The rule's (alphas, weights) as float64 numpy arrays of length n (docs/methods.md §1);
    n in [1, MAX_STEPS] (2 or more for the trapezoid)."""
    check_choice(method, "method", RULES)
    check_steps(n, "n")
    if method == "riemann_trapezoid" and n < 2:
        raise ValueError("n must be >= 2 for the rule 'riemann_trapezoid'")
    return _scheduler.quadrature(method, n)


@functools.lru_cache(maxsize=64)
def _rule_tensors(method: str, n: int):
    # Gauss-Legendre is O(n^2) Newton work: compute each rule once per process.
    a, w = quadrature(method, n)
    return torch.from_numpy(np.ascontiguousarray(a)).view(1, -1), torch.from_numpy(np.ascontiguousarray(w)).view(1, -1)


@functools.lru_cache(maxsize=64)
def _rule_on(method: str, n: int, batch: int, device: torch.device, alpha_dtype: torch.dtype,
             weight_dtype: torch.dtype):
    a, w = _rule_tensors(method, n)
    return a.to(device=device, dtype=alpha_dtype).expand(batch, -1), w.to(device=device, dtype=weight_dtype).expand(batch, -1)


@functools.lru_cache(maxsize=64)
def _uniform(method: str, n: int, batch: int) -> Schedule:
    a, w = _rule_tensors(method, n)
    return Schedule(a.expand(batch, -1), w.expand(batch, -1), rule=(method, n))


def uniform(method: str, n: int, batch: int) -> Schedule:
    """The same rule for every example: (B, n) views of one (1, n) row. Read-only and
    shared: calls with the same arguments get the same tensors (no work per call)."""
    return _uniform(method, n, batch)


def probe_alphas(n_probe: int) -> torch.Tensor:
    """The N + 1 evenly spaced probe points j / N, j = 0..N, as float64 (a fresh copy)."""
    return _probe_alphas(n_probe).clone()


@functools.lru_cache(maxsize=64)
def _probe_alphas(n_probe: int) -> torch.Tensor:
    return torch.arange(n_probe + 1, dtype=torch.float64) / n_probe


@functools.lru_cache(maxsize=64)
def probe_grid(n_probe: int, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """probe_alphas(n_probe) for every example, (B, N + 1) in `dtype` on `device`:
    converted once per process (read-only; shared between calls)."""
    return _probe_alphas(n_probe).to(device=device, dtype=dtype).view(1, -1).expand(batch, -1)


def adaptive(curves: torch.Tensor, n_steps: int, growth: str = "abs", placement: str = "midpoint",
             floor: int = 1, dtype: str = "float64") -> Schedule:
    """docs/methods.md §2.1 grids from probe curves (B, N + 1): exactly n_steps samples per example.

    dtype "float32": alphas and weights rounded once by the scheduler (the values a
    float64 grid's .to(float32) gives), so float32 passes need no conversion."""
    c = curves.detach() if curves.requires_grad else curves
    c = (c if c.device.type == "cpu" else c.cpu()).numpy()  # the binding casts to C-ordered float64 itself
    a, w, counts = _scheduler.adaptive_grid(c, n_steps, growth=growth, placement=placement, floor=floor,
                                                dtype=dtype)
    return Schedule(torch.from_numpy(a), torch.from_numpy(w), torch.from_numpy(counts))


THRESHOLDS = ("baseline", "max")


def truncate(curves: torch.Tensor, r: float = 0.9, threshold: str = "baseline"):
    """Left-IG's alpha* per example from probe curves (B, N + 1) (docs/methods.md §3).

    Returns (alpha_star (B,) float64, used_whole_path (B,) bool), CPU tensors.
    """
    c = np.ascontiguousarray(curves.detach().to("cpu", torch.float64).numpy())
    a, whole = _scheduler.truncate(c, r=r, threshold=threshold)
    return torch.from_numpy(a), torch.from_numpy(whole)
