"""Left-IG on the engine against the one-input-at-a-time reference, analytic answers
(linear model, docs/methods.md §12.3's two-band model) and its completeness on [0, alpha*]."""
import pytest
import torch

import pathattr as pa
from conftest import assert_close
from pathattr.reference import left_ig as ref_left
from testmodels import BNCNN, MLP, GatedMLP, Lambda, SmoothMLP, randomize_bn

CONFIGS = [
    dict(),
    dict(threshold="max"),
    dict(method="riemann_middle", r=0.6, n_probe=7),
    dict(method="riemann_trapezoid", r=1.0, n_probe=3),
]


def _cases():
    cnn = randomize_bn(BNCNN(classes=4)).double()
    return [("mlp", MLP(d_in=12, classes=5).double().eval(), torch.randn(4, 12, dtype=torch.float64)),
            ("cnn_bn", cnn, torch.randn(2, 3, 9, 7, dtype=torch.float64))]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "defaults")
def test_fast_equals_reference(cfg, seed):
    truncated = 0
    for name, model, x in _cases():
        base = torch.randn_like(x) * 0.2
        with torch.no_grad():
            target = model(x).argmax(1)  # the predicted class usually rises along the path
        res = pa.left_integrated_gradients(model, x, base, target=target, n_steps=20, internal_batch_size=7,
                                           return_details=True, **cfg)
        ref, stars, wholes = ref_left.left_integrated_gradients(model, x, base, target, n_steps=20, **cfg)
        scale = ref.abs().max().item()
        assert_close(res.attributions, ref, rtol=1e-6, atol=1e-9 * scale, what=f"Left-IG {name} {cfg}")
        assert_close(res.extras["alpha_star"], stars, rtol=1e-12, atol=0, what="alpha*")
        assert res.extras["used_whole_path"].tolist() == wholes
        truncated += sum(not w for w in wholes)
        # Independent of the chunk size (and of the probe chunk size).
        other = pa.left_integrated_gradients(model, x, base, target=target, n_steps=20, internal_batch_size=64,
                                             probe_batch_size=5, **cfg)
        assert_close(other, res.attributions, rtol=1e-12, atol=1e-14 * scale, what="chunk size")
    assert truncated > 0  # the comparison covered truncated paths, not just whole ones


def test_forward_args_and_target_none(seed):
    model = GatedMLP(d_in=8, classes=3).double().eval()
    x = torch.randn(3, 8, dtype=torch.float64)
    gate = torch.rand(3, 16, dtype=torch.float64)
    res = pa.left_integrated_gradients(model, x, additional_forward_args=(gate, 1.3), n_steps=16, return_details=True)
    ref, _, _ = ref_left.left_integrated_gradients(model, x, torch.zeros_like(x), res.target, (gate, 1.3), n_steps=16)
    assert_close(res.attributions, ref, rtol=1e-6, atol=1e-12, what="Left-IG with forward args")
    with torch.no_grad():
        assert res.target.tolist() == model(x, gate, 1.3).argmax(1).tolist()


def test_linear_model_is_r_times_ig(seed):
    """F linear along the path: the probe interpolation is exact, alpha* = r and Left-IG = r * IG."""
    lin = torch.nn.Linear(7, 3).double()
    x = torch.randn(5, 7, dtype=torch.float64)
    base = torch.randn_like(x)
    target = ((x - base) @ lin.weight.T).argmax(1)  # F(x) > F(x') for these classes
    res = pa.left_integrated_gradients(lin, x, base, target=target, r=0.7, n_probe=5, return_details=True,
                                       return_convergence_delta=True)
    w = lin.weight[target]
    assert not res.extras["used_whole_path"].any()
    assert_close(res.extras["alpha_star"], torch.full((5,), 0.7, dtype=torch.float64), rtol=1e-13, atol=0, what="alpha*")
    assert_close(res.attributions, 0.7 * w * (x - base), rtol=1e-12, atol=1e-14, what="Left-IG linear")
    assert_close(res.delta, torch.zeros(5), rtol=0, atol=1e-12, what="delta on [0, alpha*]")


def test_whole_path_when_output_does_not_rise(seed):
    """F(x) <= F(x'): the whole path is used, flagged, and Left-IG equals IG."""
    lin = torch.nn.Linear(6, 2).double()
    x = torch.randn(4, 6, dtype=torch.float64)
    target = ((x @ lin.weight.T).argmin(1))  # F(x) - F(0) = w_t . x, the smallest over the two classes
    keep = (x * lin.weight[target]).sum(1) < 0
    x, target = x[keep], target[keep]
    res = pa.left_integrated_gradients(lin, x, target=target, return_details=True)
    assert res.extras["used_whole_path"].all() and (res.extras["alpha_star"] == 1).all()
    ig = pa.integrated_gradients(lin, x, target=target)
    assert_close(res.attributions, ig, rtol=1e-13, atol=1e-15, what="whole path = IG")


def test_completeness_on_truncated_path(seed):
    """sum Left-IG = F(p(alpha*)) - F(x') (delta ~ 0), and F(p(alpha*)) ~ tau up to the
    probe interpolation error, so the map sums to about r (F(x) - F(x'))."""
    model = SmoothMLP(d_in=10, classes=4).double().eval()
    x = torch.randn(16, 10, dtype=torch.float64) * 2
    res = pa.left_integrated_gradients(model, x, n_steps=64, n_probe=64, return_details=True)
    assert_close(res.delta, torch.zeros(16), rtol=0, atol=1e-6, what="delta")
    cut = ~res.extras["used_whole_path"]
    assert cut.sum() >= 3
    gap = res.end_value - res.start_value
    tau = res.start_value + 0.9 * gap
    err = (res.extras["truncated_value"] - tau).abs() / gap.abs()
    assert (err[cut] < 2e-3).all(), err


def _band(t):
    return torch.clamp((t - 0.2) / 0.1, 0, 1) * torch.clamp((0.55 - t) / 0.1, 0, 1)


def _two_bands(x):
    return torch.maximum(_band(x[:, 0]), _band(x[:, 1])).unsqueeze(1)


def test_spec_12_3_two_bands():
    """docs/methods.md §12.3, F = max(b(x1), b(x2)), x' = 0, 2,000 steps, r = 0.9 (reported results):

    Path A, x = (0.6, 0.4): F rises from 0 to 1 on alpha in [1/3, 1/2] through x1 alone,
    so alpha* = 1/3 + 0.9/6 = 0.48333 and Left-IG = (0.9, 0.0) (IG is (1, 0)); it sums to
    0.9 = r (F(x) - F(x')). Measured: (0.89945, 0.0), alpha* = 0.483333, delta -5.5e-4.
    Path B, x = (0.9, 0.6): F(x) = F(x') = 0, so the whole path is used and Left-IG = IG
    = (1, -1) (completeness: sum 0 = F(x) - F(x')). Measured: (1.00219, -1.00092).
    threshold="max" gives the same on path A (max F = F(x) = 1); path B is still whole
    with it (F(x) <= F(x') decides first).
    """
    model = Lambda(_two_bands)
    a = pa.left_integrated_gradients(model, torch.tensor([[0.6, 0.4]], dtype=torch.float64), target=0,
                                     n_steps=2000, return_details=True, return_convergence_delta=True)
    assert_close(a.extras["alpha_star"], [0.9 / 6 + 1 / 3], rtol=1e-12, atol=0, what="alpha* path A")
    assert_close(a.attributions, [[0.9, 0.0]], rtol=0, atol=5e-3, what="Left-IG path A")
    assert a.attributions[0, 0] > 0 and abs(a.attributions.sum().item() - 0.9) < 5e-3
    for threshold in ("baseline", "max"):
        b = pa.left_integrated_gradients(model, torch.tensor([[0.9, 0.6]], dtype=torch.float64), target=0,
                                         n_steps=2000, return_details=True, threshold=threshold)
        assert b.extras["used_whole_path"].tolist() == [True]
        assert_close(b.attributions, [[1.0, -1.0]], rtol=0, atol=5e-3, what="Left-IG path B")
        assert b.attributions[0, 0] > 0 > b.attributions[0, 1]


def test_explainer_and_float32(seed):
    model = MLP(d_in=12, classes=5).eval()
    x = torch.randn(3, 12)
    ex = pa.Explainer(model, method="left_ig", n_steps=24)
    assert ex.method == "left_ig" and pa.Explainer(model, method="split_ig").method == "left_ig"
    got = ex.attribute(x, target=[0, 1, 2])
    assert got.dtype == torch.float32
    want = pa.left_integrated_gradients(model.double(), x.double(), target=[0, 1, 2], n_steps=24)
    assert_close(got, want, rtol=1e-3, atol=1e-5 * want.abs().max().item(), what="fp32 vs fp64")
