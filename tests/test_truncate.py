"""Left-IG truncation (pathattr._scheduler.truncate, csrc/truncate.cpp) against its
plain-Python twin (bit for bit), hand-checked curves, and the definition's properties."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pathattr import _scheduler as native
from pathattr.reference import truncate as reference

HYP = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
IMPLS = [pytest.param(native, id="native"), pytest.param(reference, id="reference")]


@pytest.mark.parametrize("impl", IMPLS)
def test_hand_checked(impl):
    curves = np.array([
        [0.0, 1.0, 2.0, 3.0],      # linear: tau = 2.7 -> alpha* = 0.9 exactly
        [3.0, 2.0, 1.0, 0.0],      # F(x) < F(x'): whole path
        [1.0, 1.0, 1.0, 1.0],      # F(x) = F(x'): whole path
        [0.0, 10.0, 10.0, 10.0],   # saturates in the first interval: tau = 9 -> alpha* = 0.9 / 3
        [0.0, -5.0, 2.0, 10.0],    # dips first: first upward crossing of tau = 9 is in interval 2
    ])
    a, whole = impl.truncate(curves, 0.9, "baseline")
    assert whole.tolist() == [False, True, True, False, False]
    np.testing.assert_allclose(a, [0.9, 1.0, 1.0, 0.3, (2 + 7 / 8) / 3], rtol=1e-15)
    # "max": tau = 0.9 * max L; the curve [0, 4, 2, 3] reaches 3.6 in interval 0 (t = 0.9).
    a, whole = impl.truncate(np.array([[0.0, 4.0, 2.0, 3.0], [-1.0, -3.0, -2.0, -0.5]]), 0.9, "max")
    np.testing.assert_allclose(a[0], 0.9 / 3, rtol=1e-15)
    # Max below 0: tau = 0.9 * (-0.25) > max, never reached -> whole path.
    assert whole.tolist() == [False, True] and a[1] == 1.0


@st.composite
def curve_case(draw):
    N = draw(st.integers(1, 40))
    B = draw(st.integers(0, 4))
    scale = draw(st.sampled_from([1.0, 1e-3, 1e6, 1e300, 1e-310]))
    kind = draw(st.sampled_from(["random", "monotone", "steps"]))
    rows = []
    for _ in range(B):
        if kind == "random":
            row = draw(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=N + 1, max_size=N + 1))
        elif kind == "monotone":
            row = np.cumsum(draw(st.lists(st.floats(0, 10), min_size=N + 1, max_size=N + 1))).tolist()
        else:  # plateaus: equal values stress the strict/non-strict comparisons
            row = draw(st.lists(st.sampled_from([0.0, 1.0, 2.0, 3.0]), min_size=N + 1, max_size=N + 1))
        rows.append([v * scale for v in row])
    curves = np.array(rows, dtype=np.float64).reshape(B, N + 1)
    r = draw(st.sampled_from([0.9, 1.0, 0.5, 1e-3, 0.123456789]))
    return curves, r, draw(st.sampled_from(["baseline", "max"]))


@settings(max_examples=600, **HYP)
@given(curve_case())
def test_native_equals_reference_bit_for_bit(case):
    curves, r, threshold = case
    a, whole = native.truncate(curves, r, threshold)
    ea, ewhole = reference.truncate(curves, r, threshold)
    assert a.dtype == np.float64 and whole.dtype == np.bool_ and a.shape == whole.shape == (curves.shape[0],)
    assert np.array_equal(a.view(np.int64), ea.view(np.int64)), (a, ea)
    assert np.array_equal(whole, ewhole)


@settings(max_examples=400, **HYP)
@given(curve_case())
def test_definition(case):
    """alpha* in (0, 1]; when truncated, alpha* lies in the interval of the first upward
    crossing of tau, at the fraction t where the linear interpolation equals tau."""
    curves, r, threshold = case
    a, whole = native.truncate(curves, r, threshold)
    for L, al, wh in zip(curves, a, whole):
        N = len(L) - 1
        assert 0.0 < al <= 1.0
        if L[N] <= L[0]:
            assert wh and al == 1.0
            continue
        h = L / 2
        tau = h[0] + r * (h[N] - h[0]) if threshold == "baseline" else r * h.max()
        crossings = [j for j in range(1, N + 1) if h[j - 1] < tau <= h[j]]
        if not crossings:
            assert wh and al == 1.0
            continue
        j = crossings[0]
        assert not wh
        t = (tau - h[j - 1]) / (h[j] - h[j - 1])
        assert 0.0 < t <= 1.0
        assert abs(al * N - (j - 1) - t) <= 1e-12 * N, (L, al, j, t)
        if threshold == "baseline" and h[0] < tau:  # (tau can round to h[0] when r (h_N - h_0) is tiny)
            assert all(h[i] < tau for i in range(j)), (L, al)  # nothing reached tau before


def test_bad_input():
    for impl in (native, reference):
        with pytest.raises(ValueError, match="threshold"):
            impl.truncate(np.zeros((1, 3)), 0.9, "median")
        for r in (0.0, -0.1, 1.5, float("nan")):
            with pytest.raises(ValueError, match=r"\br\b"):
                impl.truncate(np.zeros((1, 3)), r, "baseline")
        with pytest.raises(ValueError, match="curves"):
            impl.truncate(np.zeros((1, 1)), 0.9, "baseline")
        with pytest.raises(ValueError, match="curves"):
            impl.truncate(np.zeros(3), 0.9, "baseline")
        with pytest.raises(ValueError, match="curves.*row 1"):
            impl.truncate(np.array([[0.0, 1.0], [0.0, np.inf]]), 0.9, "baseline")


def test_empty_batch_and_overflow():
    a, whole = native.truncate(np.zeros((0, 5)), 0.9, "baseline")
    assert a.shape == (0,) and whole.shape == (0,)
    # L_N - L_0 overflows double; halving keeps it finite and alpha* exact.
    big = np.finfo(np.float64).max
    a, whole = native.truncate(np.array([[-big, 0.0, big]]), 0.5, "baseline")
    assert not whole[0] and a[0] == 0.5
