"""Reference Left-IG truncation point (docs/methods.md §3) in plain Python floats.

An oracle for `pathattr._scheduler.truncate` (csrc/truncate.cpp): the same
floating-point operations in the same order, so the two agree bit for bit. If you
change an expression here, change its twin there.

Per example, with probe points alpha_j = j / N and h_j = L_j / 2 (halving is exact
for normal numbers and keeps every difference finite):
  threshold "baseline": tau = h_0 + r (h_N - h_0)   (r of the way from F(x') to F(x))
  threshold "max":      tau = r * max_j h_j          (the IDG authors' variant)
If L_N <= L_0 (F(x) <= F(x')) the whole path is used (alpha* = 1). Otherwise alpha*
is the first upward crossing of tau by the piecewise-linear curve through the probe
points: the first j in 1..N with h_{j-1} < tau <= h_j gives
  alpha* = (j - 1 + t) / N,  t = (tau - h_{j-1}) / (h_j - h_{j-1}) in (0, 1].
No upward crossing: the whole path.

This module must not import pathattr's fast path (or anything from pathattr).
"""
import math

import numpy as np

THRESHOLDS = ("baseline", "max")


def truncate_one(L, r=0.9, threshold="baseline"):
    """(alpha*, used_whole_path) for one probe curve L (a list of N + 1 floats)."""
    N = len(L) - 1
    if L[N] <= L[0]:
        return 1.0, True
    if threshold == "baseline":
        h0 = L[0] * 0.5
        tau = h0 + r * (L[N] * 0.5 - h0)
    else:
        m = L[0] * 0.5
        for j in range(1, N + 1):
            h = L[j] * 0.5
            if h > m:
                m = h
        tau = r * m
    for j in range(1, N + 1):
        lo = L[j - 1] * 0.5
        hi = L[j] * 0.5
        if lo < tau <= hi:
            t = (tau - lo) / (hi - lo)
            return (float(j - 1) + t) / float(N), False
    return 1.0, True


def truncate(curves, r=0.9, threshold="baseline"):
    """Reference of `_scheduler.truncate`: curves (B, N + 1) -> (alpha* (B,) float64, whole (B,) bool)."""
    if threshold not in THRESHOLDS:
        raise ValueError(f"threshold: expected 'baseline' or 'max', got {threshold!r}")
    r = float(r)
    if not (r > 0.0 and r <= 1.0):
        raise ValueError(f"r: expected a number in (0, 1], got {r}")
    curves = np.asarray(curves, dtype=np.float64)
    if curves.ndim != 2:
        raise ValueError(f"curves: expected a 2-D array (B, N+1), got {curves.ndim} dimension(s)")
    B, cols = curves.shape
    if cols < 2:
        raise ValueError(f"curves: expected at least 2 columns (N+1 probe points), got {cols}")
    for b in range(B):
        for c in range(cols):
            if not math.isfinite(curves[b, c]):
                raise ValueError(f"curves: expected finite values; row {b} has a NaN or infinity at column {c}")
    alpha = np.ones(B, dtype=np.float64)
    whole = np.ones(B, dtype=bool)
    for b in range(B):
        alpha[b], whole[b] = truncate_one([float(v) for v in curves[b]], r, threshold)
    return alpha, whole
