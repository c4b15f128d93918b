"""Reference scheduler: quadrature rules and the adaptive IDG grid in plain Python.

An independent oracle for tests and benchmarks of the native `pathattr._scheduler`
(csrc/quadrature.cpp, csrc/adaptive_grid.cpp). Written as docs/methods.md §1 and §2.1
read, with Python float loops, one example at a time; slow on purpose.

The adaptive grid does every floating-point operation in the same order as the C++
code (which is compiled without FMA contraction), so the two agree bit for bit. If you
change an expression here, change its twin there.

This module must not import pathattr's fast path (or anything from pathattr).
"""
import math

import numpy as np

QUADRATURE_METHODS = (
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "gausslegendre",
)


def quadrature(method, n):
    """Reference quadrature rule on [0, 1] with n points (docs/methods.md §1).

    An oracle for `pathattr._scheduler.quadrature`: the Riemann and trapezoid rules
    from their closed forms, Gauss-Legendre from numpy.polynomial.legendre.leggauss
    (whose weights are accurate to ~1e-14 for n ~ 1000, slightly less than the
    native Newton iteration).

    Args:
        method: one of QUADRATURE_METHODS.
        n: number of points, >= 1 (>= 2 for 'riemann_trapezoid').

    Returns:
        (alphas, weights): float64 arrays of shape (n,), alphas ascending.
    """
    if method not in QUADRATURE_METHODS:
        raise ValueError(f"method: expected one of {', '.join(map(repr, QUADRATURE_METHODS))}, got {method!r}")
    n = int(n)
    if n < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n}")
    if method == "riemann_trapezoid" and n < 2:
        raise ValueError(f"n: 'riemann_trapezoid' needs n >= 2 (both end points), got {n}")

    alphas = []
    weights = []
    if method == "riemann_left":
        for k in range(n):
            alphas.append(k / n)
            weights.append(1.0 / n)
    elif method == "riemann_right":
        for k in range(n):
            alphas.append((k + 1) / n)
            weights.append(1.0 / n)
    elif method == "riemann_middle":
        for k in range(n):
            alphas.append((k + 0.5) / n)
            weights.append(1.0 / n)
    elif method == "riemann_trapezoid":
        for k in range(n):
            alphas.append(k / (n - 1))
            weights.append(1.0 / (n - 1))
        weights[0] *= 0.5
        weights[-1] *= 0.5
    else:  # gausslegendre
        xi, omega = np.polynomial.legendre.leggauss(n)
        for k in range(n):
            alphas.append((1.0 + float(xi[k])) / 2.0)
            weights.append(float(omega[k]) / 2.0)
    return np.array(alphas, dtype=np.float64), np.array(weights, dtype=np.float64)


def _interval_growth(L, N, growth, s):
    """a_j for the curve scaled by s, and their sequential sum S (docs/methods.md §2.1 steps 1-2)."""
    a = []
    S = 0.0
    for j in range(N):
        d = L[j + 1] * s - L[j] * s
        if growth == "abs":
            a_j = abs(d)
        else:  # "positive": only increases of the logit attract samples
            a_j = d if d > 0.0 else 0.0
        a.append(a_j)
        S = S + a_j
    return a, S


SNAP_BITS = 30


def _snap_growth(a, N, S):
    """Replace each a_j by round(a_j / 2**(e - 30)) with S < 2**e, and sum them.

    Rounding noise in the probe values (it depends on how the model's forward was
    batched) must not decide largest-remainder ties between intervals whose growth is
    equal in exact arithmetic, as on piecewise-linear models; snapped, such growth is
    exactly equal and the tie goes to the lower j. ldexp scales exactly.
    """
    _, e = math.frexp(S)  # S = m * 2**e, m in [0.5, 1)
    snapped = [float(round(math.ldexp(a[j], SNAP_BITS - e))) for j in range(N)]
    total = 0.0
    for j in range(N):
        total += snapped[j]
    return snapped, total


def _grid_one(L, M, growth, placement, floor, eps):
    """One example: exactly M alphas and weights, and N counts."""
    N = len(L) - 1

    # Steps 1-2: shares q_j of the total growth, uniform when the curve is flat.
    a, S = _interval_growth(L, N, growth, 1.0)
    max_abs = 0.0
    for j in range(N + 1):
        max_abs = max(max_abs, abs(L[j]))
    if S <= eps * max(1.0, max_abs):
        q = [1.0 / N for _ in range(N)]
    else:
        if not math.isfinite(S):
            # Finite curve whose differences overflowed: scale by a power of two.
            s = math.ldexp(1.0, -(N.bit_length() + 2))
            a, S = _interval_growth(L, N, growth, s)
        a, S = _snap_growth(a, N, S)
        q = [a[j] / S if S > 0.0 else 1.0 / N for j in range(N)]

    # Step 3: largest-remainder apportionment of R = M - floor*N.
    R = M - floor * N
    base = []
    rem = []
    for j in range(N):
        x = float(R) * q[j]
        b = math.floor(x)
        base.append(b)
        rem.append(x - b)
    leftover = R - sum(base)
    order = sorted(range(N), key=lambda j: -rem[j])  # stable: ties keep lower j first
    # Rounding guards (unreachable for practical sizes): keep sum(counts) == M.
    while leftover < 0:
        for j in reversed(order):
            if leftover < 0 and base[j] > 0:
                base[j] -= 1
                leftover += 1
    while leftover > N:
        for j in range(N):
            base[j] += 1
        leftover -= N
    extra = [0] * N
    for i in range(leftover):
        extra[order[i]] = 1
    counts = [floor + base[j] + extra[j] for j in range(N)]

    # Steps 4-5: n_j samples inside interval j, ascending in j then t.
    o = 0.5 if placement == "midpoint" else 0.0
    alphas = []
    weights = []
    for j in range(N):
        n_j = counts[j]
        for t in range(n_j):
            alphas.append((j + (t + o) / n_j) / N)
            weights.append(1.0 / (N * n_j))
    return alphas, weights, counts


def adaptive_grid(curves, M, growth="abs", placement="midpoint", floor=1, eps=1e-12):
    """Reference adaptive IDG grid (docs/methods.md §2.1), one example at a time.

    An oracle for `pathattr._scheduler.adaptive_grid`, which must match it bit for bit.

    Args:
        curves: (B, N+1) array-like of probe values L_j = F(p(j/N)); finite; B may be 0.
        M: samples per example, >= floor*N.
        growth: 'abs' (default) or 'positive'.
        placement: 'midpoint' (default) or 'left'.
        floor: samples every interval gets first (default 1).
        eps: flat-curve threshold relative to max(1, max|L|) (default 1e-12).

    Returns:
        (alphas (B, M) float64, weights (B, M) float64, counts (B, N) int64).
    """
    if growth not in ("abs", "positive"):
        raise ValueError(f"growth: expected 'abs' or 'positive', got {growth!r}")
    if placement not in ("midpoint", "left"):
        raise ValueError(f"placement: expected 'midpoint' or 'left', got {placement!r}")
    M = int(M)
    floor = int(floor)
    eps = float(eps)
    if M < 1:
        raise ValueError(f"M: expected an integer >= 1, got {M}")
    if floor < 0:
        raise ValueError(f"floor: expected an integer >= 0, got {floor}")
    if not math.isfinite(eps) or eps < 0.0:
        raise ValueError(f"eps: expected a finite number >= 0, got {eps}")
    curves = np.asarray(curves, dtype=np.float64)
    if curves.ndim != 2:
        raise ValueError(f"curves: expected a 2-D array (B, N+1), got {curves.ndim} dimension(s)")
    B, cols = curves.shape
    N = cols - 1
    if N < 1:
        raise ValueError(f"curves: expected at least 2 columns (N+1 probe points), got {cols}")
    if M < floor * N:
        raise ValueError(f"M: must be >= floor*N so every interval gets its floor; got M={M}, floor={floor}, N={N}")
    for b in range(B):
        for c in range(cols):
            if not math.isfinite(curves[b, c]):
                raise ValueError(f"curves: expected finite values; row {b} has a NaN or infinity at column {c}")

    alphas = np.zeros((B, M), dtype=np.float64)
    weights = np.zeros((B, M), dtype=np.float64)
    counts = np.zeros((B, N), dtype=np.int64)
    for b in range(B):
        L = [float(v) for v in curves[b]]
        a, w, c = _grid_one(L, M, growth, placement, floor, eps)
        alphas[b] = a
        weights[b] = w
        counts[b] = c
    return alphas, weights, counts
