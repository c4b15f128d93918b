"""pathattr IG against Captum 0.9 IntegratedGradients, every rule, in fp64.

Captum is an independent implementation: equality to rounding is the oracle. Its
trapezoid weights are 1/n with halved ends (they sum to 1 - 1/n); ours are the true
trapezoid (1/(n-1)), so Captum's result is multiplied by n/(n-1) for that rule.
Captum computes its alphas in float32, so agreement is ~1e-8 relative even in fp64.
"""
import pytest
import torch

import pathattr as pa
from conftest import assert_close
from testmodels import MLP, BNCNN, GatedMLP, randomize_bn

captum_attr = pytest.importorskip("captum.attr")

RULES = ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre"]


def _case(kind):
    if kind == "mlp":
        model, x = MLP(d_in=12, classes=5), torch.randn(4, 12)
        return model.double().eval(), x.double(), None
    if kind == "cnn_bn":
        model = randomize_bn(BNCNN(classes=6))
        return model.double(), torch.randn(3, 3, 9, 7, dtype=torch.float64), None
    model = GatedMLP(d_in=8, classes=3).double().eval()
    x = torch.randn(5, 8, dtype=torch.float64)
    gate = torch.rand(5, 16, dtype=torch.float64)
    return model, x, (gate, 0.7)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("kind", ["mlp", "cnn_bn", "forward_args"])
def test_ig_equals_captum(kind, rule, seed):
    model, x, extra = _case(kind)
    baseline = torch.randn_like(x) * 0.3
    target = torch.randint(0, 3, (x.shape[0],))
    n = 23
    ours, delta = pa.integrated_gradients(model, x, baseline, target=target, additional_forward_args=extra,
                                          n_steps=n, method=rule, internal_batch_size=17,
                                          return_convergence_delta=True)
    ig = captum_attr.IntegratedGradients(model)
    theirs, their_delta = ig.attribute(x, baselines=baseline, target=target, additional_forward_args=extra,
                                       n_steps=n, method=rule, return_convergence_delta=True)
    if rule == "riemann_trapezoid":
        theirs = theirs * n / (n - 1)
    else:
        # Captum builds its alphas in float32 (~1e-8 relative), so compare the delta
        # (a small difference of large sums) on the scale of the attributions.
        scale = ours.reshape(x.shape[0], -1).abs().sum(1).max().item()
        assert_close(delta, their_delta, rtol=0, atol=1e-6 * scale, what="convergence delta")
    assert ours.dtype == x.dtype and ours.shape == x.shape
    assert_close(ours, theirs, rtol=1e-5, atol=1e-12, what=f"IG {kind} {rule}")


def test_default_target_is_argmax_and_reported(seed):
    model, x, _ = _case("mlp")
    res = pa.integrated_gradients(model, x, return_details=True)
    expected_target = model(x).argmax(1)
    assert torch.equal(res.target, expected_target)
    theirs = captum_attr.IntegratedGradients(model).attribute(x, target=expected_target)
    assert_close(res.attributions, theirs, rtol=1e-5, atol=1e-12, what="IG with target=None")


def test_shared_scalar_baseline_equals_captum(seed):
    model, x, _ = _case("cnn_bn")
    ours = pa.integrated_gradients(model, x, baselines=0.25, target=2, n_steps=16)
    theirs = captum_attr.IntegratedGradients(model).attribute(x, baselines=0.25, target=2, n_steps=16)
    assert_close(ours, theirs, rtol=1e-5, atol=1e-12, what="IG scalar baseline")
