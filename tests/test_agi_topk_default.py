"""AGI's `topk` default adapts to the model: min(20, C - 1) adversarial classes (the paper's
20 where the model has 21 or more classes, every other class below that), and the count
used is reported in the result's settings. Before, topk=20 failed on any model with fewer
than 21 classes, the bundled digits model (10) included. Checked against the reference
implementation with the count written out, in fp64."""
import pytest
import torch

import pathattr as pa
from conftest import assert_close
from pathattr.data.digits import load_digits_data, load_digits_model
from pathattr.reference import agi as ref_agi
from testmodels import MLP

KW = dict(epsilon=0.1, max_iter=4)


@pytest.mark.parametrize("classes, expected", [(3, 2), (10, 9), (21, 20), (30, 20)])
def test_default_topk_is_min_20_and_c_minus_1(classes, expected, seed):
    torch.manual_seed(seed)
    model = MLP(d_in=6, classes=classes).double().eval()
    x = torch.randn(2, 6, dtype=torch.float64)
    res = pa.adversarial_gradient_integration(model, x, return_details=True, **KW)
    assert res.settings["topk"] == expected and res.extras["classes"].shape == (2, expected)
    ref, classes_ref = ref_agi.adversarial_gradient_integration(model, x, res.target, topk=expected, **KW)
    assert res.extras["classes"].tolist() == classes_ref
    assert_close(res.attributions, ref, rtol=1e-6, atol=1e-9 * ref.abs().max().item(), what="AGI default topk")


def test_default_topk_on_the_bundled_digits_model():
    model = load_digits_model().double()
    x = load_digits_data("test")[0][:2].double()
    ex = pa.Explainer(model, "agi", max_iter=2)
    assert ex.settings["topk"] is None  # adapts at call time
    res = ex.attribute(x, return_details=True)
    assert res.settings["topk"] == 9
    assert torch.equal(res.attributions, pa.adversarial_gradient_integration(model, x, topk=9, max_iter=2))


def test_a_single_output_model_is_refused_and_an_explicit_topk_is_still_checked():
    x = torch.randn(2, 6)
    with pytest.raises(ValueError, match="at least 2 classes"):
        pa.adversarial_gradient_integration(MLP(d_in=6, classes=1).eval(), x)
    with pytest.raises(ValueError, match="topk must be at most"):
        pa.adversarial_gradient_integration(MLP(d_in=6, classes=3).eval(), x, topk=3)
