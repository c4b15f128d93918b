"""IDG on the engine against the one-input-at-a-time reference, and its invariants."""
import numpy as np
import pytest
import torch

import pathattr as pa
from conftest import assert_close
from pathattr.reference import idg as ref_idg
from testmodels import MLP, BNCNN, GatedMLP, SmoothMLP, randomize_bn

CONFIGS = [
    dict(schedule="uniform"),
    dict(schedule="uniform", method="gausslegendre"),
    dict(schedule="adaptive"),
    dict(schedule="adaptive", n_probe=5, placement="left", floor=2, growth="positive"),
    dict(schedule="paper"),
    dict(schedule="adaptive", importance="finite_difference"),
    dict(schedule="paper", importance="finite_difference"),
    dict(schedule="uniform", method="riemann_left", importance="finite_difference"),
    dict(schedule="adaptive", normalize="completeness"),
]


def _models():
    cnn = randomize_bn(BNCNN(classes=4)).double()
    return [("mlp", MLP(d_in=12, classes=5).double().eval(), torch.randn(3, 12, dtype=torch.float64)),
            ("cnn_bn", cnn, torch.randn(2, 3, 9, 7, dtype=torch.float64))]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_fast_equals_reference(cfg, seed):
    for name, model, x in _models():
        base = torch.randn_like(x) * 0.2
        target = torch.randint(0, 4, (x.shape[0],))
        fast = pa.integrated_decision_gradients(model, x, base, target=target, n_steps=20, internal_batch_size=9, **cfg)
        ref = ref_idg.integrated_decision_gradients(model, x, base, target, n_steps=20, **cfg)
        scale = ref.abs().max().item()
        assert_close(fast, ref, rtol=1e-6, atol=1e-9 * scale, what=f"IDG {name} {cfg}")


def test_reference_with_forward_args(seed):
    model = GatedMLP(d_in=8, classes=3).double().eval()
    x = torch.randn(3, 8, dtype=torch.float64)
    gate = torch.rand(3, 16, dtype=torch.float64)
    fast = pa.integrated_decision_gradients(model, x, target=[0, 1, 2], additional_forward_args=(gate, 1.3), n_steps=16)
    ref = ref_idg.integrated_decision_gradients(model, x, torch.zeros_like(x), [0, 1, 2], (gate, 1.3), n_steps=16)
    assert_close(fast, ref, rtol=1e-6, atol=1e-12, what="IDG with forward args")


def _squared_derivative_integral(model, x, base, target, n=8001):
    """int_0^1 (dF/dalpha)^2 dalpha from a fine forward-only curve (independent of gradients)."""
    alphas = torch.linspace(0, 1, n, dtype=torch.float64)
    with torch.no_grad():
        pts = base + alphas.view(-1, 1) * (x - base)
        f = model(pts)[:, target].numpy()
    d = np.gradient(f, alphas.numpy(), edge_order=2)
    return np.trapezoid(d * d, alphas.numpy()) if hasattr(np, "trapezoid") else np.trapz(d * d, alphas.numpy())


@pytest.mark.parametrize("schedule", ["uniform", "adaptive"])
def test_sum_equals_integral_of_squared_slope(schedule, seed):
    """sum_i IDG_i = sum_k w_k IF_k^2 ~ int (dF/dalpha)^2: docs/methods.md §2's invariant, M = 256, midpoint."""
    torch.manual_seed(seed)
    for model in [SmoothMLP(d_in=10, classes=4).double().eval(),
                  torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.Tanh(), torch.nn.Linear(20, 4)).double()]:
        x = torch.randn(3, 10, dtype=torch.float64) * 2
        base = torch.zeros_like(x)
        target = torch.tensor([0, 1, 3])
        kw = dict(method="riemann_middle") if schedule == "uniform" else dict(placement="midpoint")
        attr = pa.integrated_decision_gradients(model, x, base, target=target, n_steps=256, schedule=schedule, **kw)
        for i in range(3):
            want = _squared_derivative_integral(model, x[i:i + 1], base[i:i + 1], int(target[i]))
            got = attr[i].sum().item()
            assert abs(got - want) <= 1e-3 * abs(want), (i, got, want)


@pytest.mark.parametrize("method", ["ig", "idg"])
def test_independent_of_internal_batch_size(method, seed):
    model = MLP(d_in=12, classes=5).double().eval()
    x = torch.randn(4, 12, dtype=torch.float64)
    results = []
    for ibs in [1, 7, 4 * 24]:
        ex = pa.Explainer(model, method=method, n_steps=24, internal_batch_size=ibs, probe_batch_size=ibs)
        results.append(ex.attribute(x, target=1))
    for r in results[1:]:
        assert_close(r, results[0], rtol=0, atol=1e-10 * results[0].abs().max().item(), what="chunking")


def test_details_are_consistent(seed):
    model = SmoothMLP(d_in=10, classes=4).double().eval()
    x = torch.randn(3, 10, dtype=torch.float64)
    res = pa.integrated_decision_gradients(model, x, n_steps=32, return_details=True)
    B, M, N = 3, 32, 8
    assert res.alphas.shape == (B, M) and res.weights.shape == (B, M) and res.importance.shape == (B, M)
    assert res.probe_curve.shape == (B, N + 1) and res.counts.shape == (B, N)
    assert torch.all(res.alphas[:, 1:] >= res.alphas[:, :-1])
    assert_close(res.weights.sum(1), torch.ones(B), rtol=0, atol=1e-12, what="weights sum")
    assert torch.all(res.counts.sum(1) == M) and torch.all(res.counts >= 1)
    with torch.no_grad():
        out_x = model(x)
        out_0 = model(torch.zeros_like(x))
    assert torch.equal(res.target, out_x.argmax(1))
    idx = res.target.view(-1, 1)
    assert_close(res.probe_curve[:, -1], out_x.gather(1, idx).view(-1), rtol=1e-12, atol=1e-12, what="F(x)")
    assert_close(res.probe_curve[:, 0], out_0.gather(1, idx).view(-1), rtol=1e-12, atol=1e-12, what="F(x')")
    # importance factors are dF/dalpha: their weighted sum is the output gap (up to the delta)
    gap = res.end_value - res.start_value
    assert_close((res.weights * res.importance).sum(1) - gap, res.delta, rtol=1e-9, atol=1e-12, what="delta")
    assert res.delta.abs().max() < 1e-2 * gap.abs().max()
    # the path values are F at the sample points
    pts = res.alphas[0].view(-1, 1) * x[0]
    with torch.no_grad():
        assert_close(res.path_values[0], model(pts)[:, res.target[0]], rtol=1e-12, atol=1e-12, what="path values")


def test_completeness_normalisation(seed):
    model = MLP(d_in=12, classes=5).double().eval()
    x = torch.randn(3, 12, dtype=torch.float64)
    res = pa.integrated_decision_gradients(model, x, target=2, normalize="completeness", return_details=True)
    assert_close(res.attributions.sum(1), res.end_value - res.start_value, rtol=1e-10, atol=1e-12, what="sum")


def test_adaptive_concentrates_samples_where_the_logit_moves():
    """A path whose logit jumps near alpha = 0.8: most of the M samples land there."""
    model = torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.Sigmoid())
    with torch.no_grad():
        model[0].weight.fill_(200.0)
        model[0].bias.fill_(-160.0)
    x = torch.ones(1, 1)
    res = pa.integrated_decision_gradients(model.double(), x.double(), target=0, n_steps=40, return_details=True)
    inside = ((res.alphas > 0.7) & (res.alphas < 0.9)).sum().item()
    assert inside >= 20, res.alphas


def test_explainer_reuse_and_two_explainers(seed):
    m1 = MLP(d_in=12, classes=5).double().eval()
    m2 = MLP(d_in=12, classes=5).double().eval()
    x = torch.randn(2, 12, dtype=torch.float64)
    e1, e2 = pa.Explainer(m1, method="idg", n_steps=16), pa.Explainer(m2, method="ig", n_steps=16)
    a1, b1 = e1.attribute(x, target=0), e2.attribute(x, target=0)
    a2, b2 = e1.attribute(x, target=0), e2.attribute(x, target=0)
    assert torch.equal(a1, a2) and torch.equal(b1, b2)
    assert "idg" in repr(e1)


@pytest.mark.parametrize("seed", range(3))
def test_float32_grid_gives_the_same_bits_as_the_float64_grid(seed):
    """Float32 calls without details take a float32 grid from the scheduler; it must be
    the float64 grid rounded once, so attributions and deltas match a details call
    (which keeps the float64 grid) bit for bit."""
    from pathattr.engine import schedule as schedules

    g = torch.Generator().manual_seed(seed)
    curve = torch.randn(4, 13, generator=g, dtype=torch.float64).cumsum(1)
    s64 = schedules.adaptive(curve, 50)
    s32 = schedules.adaptive(curve, 50, dtype="float32")
    assert s32.alphas.dtype == s32.weights.dtype == torch.float32
    assert torch.equal(s32.alphas, s64.alphas.float()) and torch.equal(s32.weights, s64.weights.float())
    model = SmoothMLP(12, 5).eval()
    x = torch.randn(3, 12, generator=g)
    attr, delta = pa.integrated_decision_gradients(model, x, n_steps=37, return_convergence_delta=True)
    res = pa.integrated_decision_gradients(model, x, n_steps=37, return_details=True)
    assert res.alphas.dtype == torch.float64
    assert torch.equal(attr, res.attributions) and torch.equal(delta, res.delta)
