"""Tests of the native scheduler (pathattr._scheduler) against closed forms, numpy,
hand-checked examples, and the plain-Python reference, which it must match bit for bit.
"""
import math
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import assert_close as _assert_close
from pathattr import _scheduler as native
from pathattr.reference import scheduler as reference

IMPLS = [pytest.param(native, id="native"), pytest.param(reference, id="reference")]


def assert_close(actual, expected, rtol, atol, what="values"):
    # conftest's helper goes through torch.as_tensor, which makes Python floats and
    # lists float32; hand it float64 arrays so 1e-16 tolerances mean what they say.
    _assert_close(np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64),
                  rtol=rtol, atol=atol, what=what)


# ---------------------------------------------------------------------------------------
# quadrature
# ---------------------------------------------------------------------------------------

SIZES = [1, 2, 3, 7, 50, 1024]


def closed_form(method, n):
    k = np.arange(n)
    if method == "riemann_left":
        return k / n, np.full(n, 1.0 / n)
    if method == "riemann_right":
        return (k + 1) / n, np.full(n, 1.0 / n)
    if method == "riemann_middle":
        return (k + 0.5) / n, np.full(n, 1.0 / n)
    if method == "riemann_trapezoid":
        w = np.full(n, 1.0 / (n - 1))
        w[0] *= 0.5
        w[-1] *= 0.5
        return k / (n - 1), w
    raise AssertionError(method)


RIEMANN_CASES = [
    (method, n)
    for method in ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]
    for n in SIZES
    if not (method == "riemann_trapezoid" and n < 2)  # n = 1 is a ValueError, tested below
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("method, n", RIEMANN_CASES)
def test_riemann_rules_closed_form(impl, method, n):
    a, w = impl.quadrature(method, n)
    ea, ew = closed_form(method, n)
    assert a.dtype == np.float64 and w.dtype == np.float64 and a.shape == (n,) and w.shape == (n,)
    # Same IEEE operations (k / n in double) on both sides, so equality is exact.
    assert np.array_equal(a, ea), method
    assert np.array_equal(w, ew), method
    assert_close(w.sum(), 1.0, rtol=0, atol=1e-13, what=f"{method} weight sum")


def test_trapezoid_is_the_true_rule():
    # Captum's variant uses 1/n with halved ends (sum 1 - 1/n); ours sums to 1 and is
    # exact on linear functions.
    a, w = native.quadrature("riemann_trapezoid", 5)
    assert np.array_equal(a, [0.0, 0.25, 0.5, 0.75, 1.0])
    assert np.array_equal(w, [0.125, 0.25, 0.25, 0.25, 0.125])
    a, w = native.quadrature("riemann_trapezoid", 2)
    assert np.array_equal(a, [0.0, 1.0]) and np.array_equal(w, [0.5, 0.5])
    a, w = native.quadrature("riemann_trapezoid", 37)
    assert_close((w * (3 * a + 2)).sum(), 3.5, rtol=0, atol=1e-14, what="trapezoid on 3t+2")


GL_SIZES = [1, 2, 3, 4, 5, 7, 8, 16, 31, 50, 64, 100, 127, 200, 256, 333, 512, 777, 1023, 1024]


@pytest.mark.parametrize("n", GL_SIZES)
def test_gausslegendre_matches_leggauss(n):
    a, w = native.quadrature("gausslegendre", n)
    xi, omega = np.polynomial.legendre.leggauss(n)
    assert a.shape == (n,) and w.shape == (n,)
    assert_close(a, (1 + xi) / 2, rtol=0, atol=1e-13, what=f"GL nodes n={n}")
    assert_close(w, omega / 2, rtol=0, atol=1e-13, what=f"GL weights n={n}")
    assert_close(w.sum(), 1.0, rtol=0, atol=1e-14, what=f"GL weight sum n={n}")
    assert np.all(np.diff(a) > 0) and a[0] > 0 and a[-1] < 1
    assert np.all(w > 0)
    # Built symmetric: mirrored weights equal exactly, mirrored nodes add up to 1.
    assert np.array_equal(w, w[::-1])
    assert_close(a + a[::-1], np.ones(n), rtol=0, atol=2e-16, what="GL node symmetry")
    if n % 2 == 1:
        assert a[n // 2] == 0.5


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 20, 64, 257, 1024])
def test_gausslegendre_polynomial_exactness(n):
    a, w = native.quadrature("gausslegendre", n)
    # An n-point rule integrates t^j exactly on [0, 1] for j < 2n.
    for j in range(min(2 * n, 40)):
        assert_close((w * a**j).sum(), 1.0 / (j + 1), rtol=0, atol=2e-14, what=f"n={n} t^{j}")
    if n <= 8:
        # ...and misses t^{2n} by exactly the Gauss-Legendre error term on [0, 1],
        # (n!)^4 / ((2n+1) ((2n)!)^2) (too small to see beyond n = 8).
        err = 1.0 / (2 * n + 1) - (w * a ** (2 * n)).sum()
        theory = math.factorial(n) ** 4 / ((2 * n + 1) * math.factorial(2 * n) ** 2)
        assert_close(err, theory, rtol=1e-4, atol=0, what=f"n={n} error on t^{2 * n}")


@pytest.mark.parametrize("n", [10, 37, 64])
def test_gausslegendre_high_precision(n):
    mp = pytest.importorskip("mpmath")
    a, w = native.quadrature("gausslegendre", n)
    with mp.workdps(40):
        for k in range((n + 1) // 2):
            x = mp.cos(mp.pi * (k + mp.mpf("0.75")) / (n + mp.mpf("0.5")))
            for _ in range(60):
                p0, p1 = mp.mpf(1), x
                for j in range(2, n + 1):
                    p0, p1 = p1, ((2 * j - 1) * x * p1 - (j - 1) * p0) / j
                dp = n * (x * p1 - p0) / (x * x - 1)
                x -= p1 / dp
            p0, p1 = mp.mpf(1), x
            for j in range(2, n + 1):
                p0, p1 = p1, ((2 * j - 1) * x * p1 - (j - 1) * p0) / j
            dp = n * (x * p1 - p0) / (x * x - 1)
            weight = 1 / ((1 - x * x) * dp * dp)  # omega/2
            i = n - 1 - k  # positive nodes are the upper half, ascending
            assert abs(mp.mpf(a[i]) - (1 + x) / 2) < 3e-16, (n, k)
            assert abs(mp.mpf(w[i]) - weight) < 3e-16, (n, k)


@pytest.mark.parametrize("n", [1, 6, 99, 300])
def test_reference_quadrature_agrees(n):
    for method in ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"]:
        if method == "riemann_trapezoid" and n < 2:
            continue
        for x, y in zip(native.quadrature(method, n), reference.quadrature(method, n)):
            assert np.array_equal(x, y), method
    for x, y in zip(native.quadrature("gausslegendre", n), reference.quadrature("gausslegendre", n)):
        assert_close(x, y, rtol=0, atol=1e-13, what="GL native vs reference")


@pytest.mark.parametrize("impl", IMPLS)
def test_quadrature_bad_input(impl):
    with pytest.raises(ValueError, match=r"method.*riemann_left.*riemann_right.*riemann_middle"
                                         r".*riemann_trapezoid.*gausslegendre"):
        impl.quadrature("simpson", 4)
    for n in (0, -1):
        with pytest.raises(ValueError, match=r"\bn\b.*>= 1"):
            impl.quadrature("riemann_left", n)
        with pytest.raises(ValueError, match=r"\bn\b"):
            impl.quadrature("gausslegendre", n)
    with pytest.raises(ValueError, match=r"\bn\b.*riemann_trapezoid.*>= 2"):
        impl.quadrature("riemann_trapezoid", 1)


# ---------------------------------------------------------------------------------------
# adaptive_grid: checks shared by the property tests
# ---------------------------------------------------------------------------------------


def uniform_counts(N, M, floor):
    # Equal shares: the tie rule gives the extra samples to the lowest intervals.
    R = M - floor * N
    return np.array([floor + R // N + (1 if j < R % N else 0) for j in range(N)], dtype=np.int64)


def check_grid(curves, M, growth, placement, floor, eps=1e-12):
    """Run both implementations; check equality and every invariant of docs/methods.md §2.1."""
    curves = np.asarray(curves, dtype=np.float64)
    B, N = curves.shape[0], curves.shape[1] - 1
    a, w, c = native.adaptive_grid(curves, M, growth, placement, floor, eps)
    ra, rw, rc = reference.adaptive_grid(curves, M, growth, placement, floor, eps)
    assert a.dtype == np.float64 and w.dtype == np.float64 and c.dtype == np.int64
    assert a.shape == (B, M) and w.shape == (B, M) and c.shape == (B, N)
    # Bit for bit with the reference.
    assert np.array_equal(a, ra), "alphas differ from the reference"
    assert np.array_equal(w, rw), "weights differ from the reference"
    assert np.array_equal(c, rc), "counts differ from the reference"
    # Deterministic.
    a2, w2, c2 = native.adaptive_grid(curves, M, growth, placement, floor, eps)
    assert np.array_equal(a, a2) and np.array_equal(w, w2) and np.array_equal(c, c2)

    lo = np.arange(N) / N
    hi = np.arange(1, N + 1) / N
    for b in range(B):
        cb = c[b]
        assert cb.sum() == M
        assert np.all(cb >= floor)
        interval = np.repeat(np.arange(N), cb)  # which interval each sample belongs to
        assert np.all(a[b] >= lo[interval]) and np.all(a[b] < hi[interval])
        assert np.all(np.diff(a[b]) > 0), "alphas not strictly ascending"
        assert np.all(w[b] == 1.0 / (N * cb[interval]))
        covered = np.bincount(interval, weights=w[b], minlength=N)
        nonempty = cb > 0
        assert_close(covered[nonempty], np.full(nonempty.sum(), 1.0 / N), rtol=0, atol=1e-12,
                     what="weight per non-empty interval")
        assert_close(w[b].sum(), nonempty.sum() / N, rtol=0, atol=1e-12, what="total weight")
        if floor >= 1:
            assert_close(w[b].sum(), 1.0, rtol=0, atol=1e-12, what="total weight")
    return a, w, c


# ---------------------------------------------------------------------------------------
# adaptive_grid: hypothesis strategies
# ---------------------------------------------------------------------------------------

KINDS = ["random", "monotone", "flat", "flat_noise", "noisy", "sigmoid", "raw_floats"]
SCALES = [1.0, 1e6, 1e-8]


def make_curve(rng, kind, N, scale):
    t = np.linspace(0.0, 1.0, N + 1)
    if kind == "random":
        return rng.normal(size=N + 1) * scale
    if kind == "monotone":
        steps = rng.exponential(size=N) * (rng.random(N) < rng.random())  # some flat stretches
        return np.concatenate([[0.0], np.cumsum(steps)]) * scale + rng.normal() * scale
    if kind == "flat":
        return np.full(N + 1, rng.normal() * scale)
    if kind == "flat_noise":
        level = rng.normal() * scale
        return level * (1.0 + 1e-15 * rng.uniform(-1, 1, size=N + 1))
    if kind == "noisy":
        trend = rng.normal() * t + rng.normal() * t**2
        return (trend + 0.1 * rng.normal(size=N + 1)) * scale
    if kind == "sigmoid":
        centre = rng.uniform(0, 1)
        sharp = 10.0 ** rng.uniform(0.5, 3)
        height = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 10)
        with np.errstate(over="ignore"):  # exp overflows to inf on the flat side: 1/(1+inf) = 0 is right
            return (height / (1 + np.exp(-sharp * (t - centre))) + rng.normal()) * scale
    raise AssertionError(kind)


@st.composite
def grid_case(draw, kinds=KINDS):
    N = draw(st.integers(1, 64))
    floor = draw(st.integers(0, 3))
    M = draw(st.integers(max(1, floor * N), 300))
    growth = draw(st.sampled_from(["abs", "positive"]))
    placement = draw(st.sampled_from(["midpoint", "left"]))
    B = draw(st.integers(1, 5))
    rows = []
    for _ in range(B):
        kind = draw(st.sampled_from(kinds))
        if kind == "raw_floats":
            # Anything finite, including subnormals and values near the overflow limit.
            rows.append(draw(st.lists(st.floats(allow_nan=False, allow_infinity=False),
                                      min_size=N + 1, max_size=N + 1)))
        else:
            rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
            rows.append(make_curve(rng, kind, N, draw(st.sampled_from(SCALES))))
    return np.array(rows, dtype=np.float64), M, growth, placement, floor


HYP = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=700, **HYP)
@given(grid_case())
def test_grid_properties_and_reference(case):
    check_grid(*case)


@settings(max_examples=250, **HYP)
@given(
    st.integers(1, 64), st.integers(0, 3), st.integers(0, 300), st.sampled_from(["abs", "positive"]),
    st.sampled_from(["midpoint", "left"]), st.sampled_from([0.0, 3.5, -2e6, 7e-9, 1e300]),
    st.booleans(), st.integers(0, 2**32 - 1),
)
def test_flat_curves_are_uniform(N, floor, extra, growth, placement, level, noise, s):
    M = max(1, floor * N + extra)
    L = np.full(N + 1, level)
    if noise:
        L = level * (1.0 + 1e-15 * np.random.default_rng(s).uniform(-1, 1, size=N + 1))
    _, _, c = check_grid(L[None], M, growth, placement, floor)
    assert np.array_equal(c[0], uniform_counts(N, M, floor))


@settings(max_examples=250, **HYP)
@given(
    st.integers(1, 64), st.integers(0, 3), st.integers(0, 300), st.sampled_from(["abs", "positive"]),
    st.sampled_from(["midpoint", "left"]), st.data(),
)
def test_all_growth_in_one_interval(N, floor, extra, growth, placement, data):
    M = max(1, floor * N + extra)
    k = data.draw(st.integers(0, N - 1))
    height = data.draw(st.sampled_from([1e-8, 0.3, 1.0, 42.0, 1e6]))
    if growth == "abs":
        height *= data.draw(st.sampled_from([-1.0, 1.0]))
    offset = data.draw(st.sampled_from([0.0, -5.0, 1e3]))
    L = np.where(np.arange(N + 1) > k, offset + height, offset)
    _, _, c = check_grid(L[None], M, growth, placement, floor)
    expected = np.full(N, floor, dtype=np.int64)
    expected[k] += M - floor * N
    assert np.array_equal(c[0], expected)


# ---------------------------------------------------------------------------------------
# adaptive_grid: hand-checked examples
# ---------------------------------------------------------------------------------------


def test_step_curve_counts():
    a, w, c = check_grid([[0, 0, 1, 1, 1]], 8, "abs", "midpoint", 1)
    assert c.tolist() == [[1, 5, 1, 1]]
    # Interval 1 = [0.25, 0.5) holds 5 midpoints 0.275, 0.325, ..., 0.475.
    assert_close(a[0], [0.125, 0.275, 0.325, 0.375, 0.425, 0.475, 0.625, 0.875], rtol=0, atol=1e-16)
    assert_close(w[0], [0.25] + [0.05] * 5 + [0.25, 0.25], rtol=0, atol=1e-17)


def test_two_interval_example_midpoint_and_left():
    # R = 5 - 2 = 3, q = (1/3, 2/3): R*q rounds to exactly 1.0 and 2.0, no remainder.
    a, w, c = check_grid([[0, 1, 3]], 5, "abs", "midpoint", 1)
    assert c.tolist() == [[2, 3]]
    assert a[0].tolist() == [(0 + 0.5 / 2) / 2, (0 + 1.5 / 2) / 2, (1 + 0.5 / 3) / 2, (1 + 1.5 / 3) / 2,
                             (1 + 2.5 / 3) / 2]
    assert_close(a[0], [0.125, 0.375, 7 / 12, 0.75, 11 / 12], rtol=0, atol=2.3e-16)
    assert w[0].tolist() == [0.25, 0.25, 1 / 6, 1 / 6, 1 / 6]
    a, w, c = check_grid([[0, 1, 3]], 5, "abs", "left", 1)
    assert a[0].tolist() == [0.0, 0.25, 0.5, (1 + 1 / 3) / 2, (1 + 2 / 3) / 2]


def test_equal_remainders_go_to_the_lower_interval():
    # R = 3 over two equal shares: 1.5 each, base (1, 1), one leftover, tie -> j = 0.
    _, _, c = check_grid([[0, 1, 2]], 3, "abs", "midpoint", 0)
    assert c.tolist() == [[2, 1]]
    # Three equal shares, R = 5: base 1 each, two leftovers to j = 0, 1.
    _, _, c = check_grid([[0, 2, 0, 2]], 5, "abs", "midpoint", 0)
    assert c.tolist() == [[2, 2, 1]]
    # A larger remainder beats a lower index: q = (0.2, 0.3, 0.5), R = 4 -> 0.8, 1.2, 2.0.
    _, _, c = check_grid([[0, 2, 5, 10]], 4, "abs", "midpoint", 0)
    assert c.tolist() == [[1, 1, 2]]


def test_positive_growth_on_decreasing_curve_is_uniform():
    L = [[5.0, 4.0, 2.0, 1.5, 0.0]]
    _, _, c = check_grid(L, 10, "positive", "midpoint", 1)
    assert c.tolist() == [uniform_counts(4, 10, 1).tolist()] == [[3, 3, 2, 2]]
    # With "abs" the same curve follows its drops: R = 6, q = (.2, .4, .1, .3).
    _, _, c = check_grid(L, 10, "abs", "midpoint", 1)
    assert c.tolist() == [[2, 3, 2, 3]]


def test_positive_growth_ignores_decreases():
    # Growth only in interval 2 counts; the drop in interval 0 gets just its floor.
    _, _, c = check_grid([[3.0, 0.0, 0.0, 2.0]], 9, "positive", "midpoint", 1)
    assert c.tolist() == [[1, 1, 7]]


def test_paper_settings_leave_zero_growth_intervals_empty():
    # N = M, floor 0, left placement (Algorithm 1).
    a, w, c = check_grid([[0, 0, 0, 1, 1]], 4, "abs", "left", 0)
    assert c.tolist() == [[0, 0, 4, 0]]
    assert a[0].tolist() == [0.5, 0.5625, 0.625, 0.6875]
    assert w[0].tolist() == [0.0625] * 4  # covered width 1/4: the estimator sees one interval
    # Small but non-zero growth can also get nothing (the defect the floor fixes).
    _, _, c = check_grid([[0, 0.01, 1, 1, 1]], 4, "abs", "left", 0)
    assert c.tolist() == [[0, 4, 0, 0]]
    _, _, c = check_grid([[0, 0.01, 1, 1, 1]], 8, "abs", "left", 1)
    assert c.tolist() == [[1, 5, 1, 1]]


def test_overflowing_differences_are_rescaled():
    # Finite values whose differences overflow to inf: still a valid grid.
    _, _, c = check_grid([[-1e308, 1e308, 1e308]], 4, "abs", "midpoint", 0)
    assert c.tolist() == [[4, 0]]
    _, _, c = check_grid([[-1.7e308, 1.7e308, -1.7e308]], 6, "abs", "midpoint", 1)
    assert c.tolist() == [[3, 3]]
    big = np.finfo(np.float64).max
    _, _, c = check_grid([[big, -big] * 20 + [big]], 200, "abs", "left", 2)
    assert c.tolist() == [[5] * 40]


def test_eps_controls_the_flat_fallback():
    L = [[0.0, 1e-6, 1e-6, 1e-6]]  # all growth in interval 0, but tiny
    _, _, c = check_grid(L, 6, "abs", "midpoint", 1, eps=1e-12)
    assert c.tolist() == [[4, 1, 1]]
    _, _, c = check_grid(L, 6, "abs", "midpoint", 1, eps=1e-5)
    assert c.tolist() == [[2, 2, 2]]
    # The threshold is relative to max(1, max|L|): same growth on a 1e8 level is flat at 1e-13.
    _, _, c = check_grid([[1e8, 1e8 + 1e-6, 1e8 + 1e-6, 1e8 + 1e-6]], 6, "abs", "midpoint", 1, eps=1e-13)
    assert c.tolist() == [[2, 2, 2]]
    # eps = 0: a constant curve (S = 0 <= 0) still falls back instead of dividing by zero.
    _, _, c = check_grid([[2.0, 2.0, 2.0]], 5, "abs", "midpoint", 0, eps=0.0)
    assert c.tolist() == [[3, 2]]


def test_single_interval_and_defaults():
    a, w, c = native.adaptive_grid(np.array([[0.0, 1.0]]), 4)
    assert c.tolist() == [[4]]
    assert a.tolist() == [[0.125, 0.375, 0.625, 0.875]] and w.tolist() == [[0.25] * 4]
    # Defaults are growth="abs", placement="midpoint", floor=1, eps=1e-12.
    L = np.random.default_rng(0).normal(size=(3, 9))
    for x, y in zip(native.adaptive_grid(L, 30), native.adaptive_grid(L, 30, "abs", "midpoint", 1, 1e-12)):
        assert np.array_equal(x, y)
    for x, y in zip(native.adaptive_grid(L, 30), reference.adaptive_grid(L, 30)):
        assert np.array_equal(x, y)


def test_input_conversion_and_empty_batch(seed):
    rng = np.random.default_rng(seed)
    L = rng.normal(size=(4, 11))
    want = native.adaptive_grid(L, 40, floor=2)
    for variant in (L.tolist(), np.asfortranarray(L), L.copy()):
        got = native.adaptive_grid(variant, 40, floor=2)
        for x, y in zip(got, want):
            assert np.array_equal(x, y)
    # Strided view and float32 / integer input are converted, not rejected.
    wide = np.zeros((4, 22))
    wide[:, ::2] = L
    for x, y in zip(native.adaptive_grid(wide[:, ::2], 40, floor=2), want):
        assert np.array_equal(x, y)
    f32 = L.astype(np.float32)
    for x, y in zip(native.adaptive_grid(f32, 40, floor=2), reference.adaptive_grid(f32, 40, floor=2)):
        assert np.array_equal(x, y)
    ints = np.array([[0, 0, 1, 1, 1]], dtype=np.int32)
    assert native.adaptive_grid(ints, 8)[2].tolist() == [[1, 5, 1, 1]]
    # B = 0 rows: empty outputs of the right shapes.
    for impl in (native, reference):
        a, w, c = impl.adaptive_grid(np.zeros((0, 7)), 12)
        assert a.shape == (0, 12) and w.shape == (0, 12) and c.shape == (0, 6)
        assert a.dtype == np.float64 and w.dtype == np.float64 and c.dtype == np.int64


# ---------------------------------------------------------------------------------------
# adaptive_grid: bad input
# ---------------------------------------------------------------------------------------

GOOD = np.array([[0.0, 1.0, 2.0, 2.5]])  # N = 3


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(curves=np.zeros(5), M=4), r"curves.*2-D"),
        (dict(curves=np.zeros((2, 3, 4)), M=4), r"curves.*2-D"),
        (dict(curves=np.zeros((2, 1)), M=4), r"curves.*2 columns"),
        (dict(curves=np.zeros((0, 1)), M=4), r"curves.*2 columns"),
        (dict(curves=np.zeros((2, 0)), M=4), r"curves.*2 columns"),
        (dict(curves=GOOD, M=0), r"\bM\b.*>= 1"),
        (dict(curves=GOOD, M=-3), r"\bM\b.*>= 1"),
        (dict(curves=GOOD, M=5, floor=-1), r"floor.*>= 0"),
        (dict(curves=GOOD, M=5, floor=2), r"M=5.*floor=2.*N=3"),
        (dict(curves=GOOD, M=2), r"M=2.*floor=1.*N=3"),
        (dict(curves=GOOD, M=5, growth="relative"), r"growth.*'abs'.*'positive'"),
        (dict(curves=GOOD, M=5, placement="right"), r"placement.*'midpoint'.*'left'"),
        (dict(curves=GOOD, M=5, eps=-1e-3), r"eps.*finite.*>= 0"),
        (dict(curves=GOOD, M=5, eps=float("nan")), r"eps"),
        (dict(curves=GOOD, M=5, eps=float("inf")), r"eps"),
    ],
)
def test_grid_bad_input(impl, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        impl.adaptive_grid(**kwargs)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_grid_non_finite_curves(impl, bad):
    L = np.zeros((4, 6))
    L[2, 3] = bad
    with pytest.raises(ValueError, match=r"curves.*finite.*row 2.*column 3"):
        impl.adaptive_grid(L, 10)


# ---------------------------------------------------------------------------------------
# adaptive_grid: threads (the GIL is released; results must not interfere)
# ---------------------------------------------------------------------------------------


def test_concurrent_calls_match_single_threaded(seed):
    rng = np.random.default_rng(seed)
    B, N, M = 20000, 50, 200
    t = np.linspace(0, 1, N + 1)
    centres = rng.uniform(0, 1, size=(B, 1))
    curves = 10 / (1 + np.exp(-60 * (t - centres))) + 0.05 * rng.normal(size=(B, N + 1))
    want = native.adaptive_grid(curves, M)
    results = [None, None]
    errors = []

    def work(i):
        try:
            results[i] = native.adaptive_grid(curves, M)
        except Exception as exc:  # surfaced below; a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    for got in results:
        for x, y in zip(got, want):
            assert np.array_equal(x, y)
    assert np.all(want[2].sum(axis=1) == M)
    # Spot-check a few rows against the reference (all 20000 would be slow in Python).
    rows = rng.choice(B, size=20, replace=False)
    for x, y in zip(reference.adaptive_grid(curves[rows], M), want):
        assert np.array_equal(x, y[rows])


@pytest.mark.parametrize("impl", [native, reference], ids=["native", "reference"])
def test_rounding_noise_does_not_move_samples(impl):
    """Equal growth in exact arithmetic, seen through last-bit noise (as when the probe
    is batched differently), gives the same grid as the noiseless curve: the growth
    is snapped to 2**-30 of the total before the largest-remainder ties are broken."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        N = int(rng.integers(2, 40))
        slopes = rng.choice([0.0, 0.25, 1.0, 3.0], size=N)  # runs of equal growth, as on a ReLU net
        clean = np.concatenate([[0.0], np.cumsum(slopes / N)]) - 0.3
        noisy = clean * (1.0 + rng.choice([-1.0, 0.0, 1.0], size=N + 1) * 2.0 ** -52)
        M = int(rng.integers(N, 4 * N + 1))
        for floor, placement in [(1, "midpoint"), (0, "left")]:
            a1, w1, c1 = impl.adaptive_grid(clean[None], M, "abs", placement, floor)
            a2, w2, c2 = impl.adaptive_grid(noisy[None], M, "abs", placement, floor)
            assert np.array_equal(c1, c2) and np.array_equal(a1, a2) and np.array_equal(w1, w2)


@settings(max_examples=200, **HYP)
@given(grid_case())
def test_float32_output_is_the_float64_grid_rounded_once(case):
    """dtype='float32' (the latency path's) gives the float64 grid rounded to nearest,
    exactly as numpy (and torch) cast it; the counts are the same."""
    curves, M, growth, placement, floor = case
    kw = dict(growth=growth, placement=placement, floor=floor)
    a, w, n = native.adaptive_grid(curves, M, **kw)
    a32, w32, n32 = native.adaptive_grid(curves, M, dtype="float32", **kw)
    assert a32.dtype == np.float32 and w32.dtype == np.float32 and a32.shape == a.shape
    assert np.array_equal(a32, a.astype(np.float32)) and np.array_equal(w32, w.astype(np.float32))
    assert np.array_equal(n32, n)
    with pytest.raises(ValueError, match="dtype.*'float64' or 'float32'"):
        native.adaptive_grid(curves, M, dtype="float16", **kw)
