"""Every bad argument fails up front with an error that names it."""
import pytest
import torch

import pathattr as pa
from testmodels import MLP, Lambda

FNS = [pa.integrated_gradients, pa.integrated_decision_gradients]


@pytest.fixture
def model():
    return MLP(d_in=6, classes=3).eval()


@pytest.mark.parametrize("fn", FNS)
def test_baseline_shape_mismatch(fn, model):
    with pytest.raises(ValueError, match="baselines"):
        fn(model, torch.randn(2, 6), baselines=torch.zeros(2, 5), target=0)
    with pytest.raises(ValueError, match="baselines"):
        fn(model, torch.randn(2, 6), baselines=torch.zeros(3, 6), target=0)


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("target", [3, -1, [0, 1, 5]])
def test_target_out_of_range(fn, model, target):
    with pytest.raises(ValueError, match="target"):
        fn(model, torch.randn(3, 6), target=target)


@pytest.mark.parametrize("fn", FNS)
def test_target_wrong_length_or_type(fn, model):
    with pytest.raises(ValueError, match="target"):
        fn(model, torch.randn(3, 6), target=[0, 1])
    with pytest.raises(TypeError, match="target"):
        fn(model, torch.randn(3, 6), target=torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="target"):
        fn(model, torch.randn(3, 6), target=True)


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("n", [0, -3])
def test_n_steps_below_one(fn, model, n):
    with pytest.raises(ValueError, match="n_steps"):
        fn(model, torch.randn(2, 6), target=0, n_steps=n)


@pytest.mark.parametrize("fn", FNS)
def test_nan_or_inf(fn, model):
    x = torch.randn(2, 6)
    x[1, 2] = float("nan")
    with pytest.raises(ValueError, match="inputs"):
        fn(model, x, target=0)
    with pytest.raises(ValueError, match="baselines"):
        fn(model, torch.randn(2, 6), baselines=torch.full((2, 6), float("inf")), target=0)
    with pytest.raises(ValueError, match="baselines"):
        fn(model, torch.randn(2, 6), baselines=float("nan"), target=0)


@pytest.mark.parametrize("fn", FNS)
def test_integer_inputs(fn, model):
    with pytest.raises(TypeError, match="inputs"):
        fn(model, torch.ones(2, 6, dtype=torch.long), target=0)


@pytest.mark.parametrize("fn", FNS)
def test_model_and_inputs_on_different_devices(fn, model):
    model = model.to("meta")
    with pytest.raises(ValueError, match="model is on"):
        fn(model, torch.randn(2, 6), target=0)


@pytest.mark.parametrize("fn", FNS)
def test_output_not_batch_by_classes(fn):
    model = Lambda(lambda x: x.sum())
    with pytest.raises(ValueError, match="output"):
        fn(model, torch.randn(2, 6), target=0)
    three_d = Lambda(lambda x: x.view(x.shape[0], 2, 3))
    with pytest.raises(ValueError, match=r"expected \(batch, classes\)"):
        fn(three_d, torch.randn(2, 6), target=0)
    # an output callable makes any output explainable
    ok = fn(three_d, torch.randn(2, 6), target=0, output=lambda out, t: out[:, 1, 2])
    assert ok.shape == (2, 6)


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("ibs", [0, -1])
def test_internal_batch_size(fn, model, ibs):
    with pytest.raises(ValueError, match="internal_batch_size"):
        fn(model, torch.randn(2, 6), target=0, internal_batch_size=ibs)


@pytest.mark.parametrize("fn", FNS)
def test_empty_batch_returns_empty(fn, model):
    x = torch.randn(0, 6)
    attr, delta = fn(model, x, target=0, return_convergence_delta=True)
    assert attr.shape == (0, 6) and delta.shape == (0,)
    assert fn(model, x).shape == (0, 6)


def test_bad_settings_name_the_argument(model):
    x = torch.randn(2, 6)
    with pytest.raises(ValueError, match="method"):
        pa.integrated_gradients(model, x, target=0, method="simpson")
    with pytest.raises(ValueError, match="n_steps"):
        pa.integrated_gradients(model, x, target=0, n_steps=1, method="riemann_trapezoid")
    with pytest.raises(ValueError, match="schedule"):
        pa.integrated_decision_gradients(model, x, target=0, schedule="fancy")
    with pytest.raises(ValueError, match="importance"):
        pa.integrated_decision_gradients(model, x, target=0, importance="autograd")
    with pytest.raises(ValueError, match="normalize"):
        pa.integrated_decision_gradients(model, x, target=0, normalize="minmax")
    with pytest.raises(ValueError, match="floor"):
        pa.integrated_decision_gradients(model, x, target=0, n_steps=4, n_probe=8)
    with pytest.raises(ValueError, match="output"):
        pa.integrated_gradients(model, x, target=0, output="probability")
    with pytest.raises(ValueError, match="method"):
        pa.Explainer(model, method="shap")
    with pytest.raises(TypeError, match="inputs"):
        pa.integrated_gradients(model, [[1.0] * 6], target=0)


def test_nan_from_the_model_is_not_silent():
    model = Lambda(lambda x: torch.sqrt(x - 10.0).unsqueeze(1).sum(2))
    with pytest.raises((FloatingPointError, ValueError), match="NaN|finite"):
        pa.integrated_decision_gradients(model, torch.ones(2, 3), target=0)
    with pytest.raises((FloatingPointError, ValueError), match="NaN|finite"):
        pa.integrated_gradients(model, torch.ones(2, 3), target=0)
