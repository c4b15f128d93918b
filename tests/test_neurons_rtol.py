"""rtol mode of the neuron attributions (docs/methods.md §10, §14) in fp64.

Oracles: (1) the explicit-Jacobian reference run on the very samples and weights the
rounds chose (the fold of ragged rows, checked exactly); (2) a converged fixed rule
(Gauss-Legendre, many steps): the map is within the requested error; (3) the error
estimate and evaluation counts the details report."""
import pytest
import torch

import pathattr as pa
from conftest import assert_close
from pathattr.reference import layer as ref
from testmodels import BNCNN, SmoothMLP, randomize_bn


def _mlp():
    model = SmoothMLP(d_in=10, hidden=24, classes=4).double().eval()
    return model, model.net[3], torch.randn(4, 10, dtype=torch.float64)


def _cnn():
    model = randomize_bn(BNCNN(classes=6)).double()
    return model, model.features[2], torch.randn(3, 3, 9, 7, dtype=torch.float64)


def _rel(got, want):
    g, w = got.reshape(got.shape[0], -1), want.reshape(want.shape[0], -1)
    return (g - w).norm(dim=1) / w.norm(dim=1)


@pytest.mark.parametrize("jvp", ["forward_ad", "double_backward"])
def test_rounds_fold_equals_reference_on_their_samples(jvp, seed):
    model, layer, x = _mlp()
    base = torch.randn_like(x) * 0.2
    mask = torch.rand(x.shape[1:]) < 0.5
    target = torch.randint(0, 4, (x.shape[0],))
    res = pa.neuron_region_attribution(model, layer, x, mask, base, target, rtol=1e-4, internal_batch_size=7,
                                       jvp=jvp, return_details=True)
    want = ref.neuron_region_attribution(model, layer, x, base, target, mask, alphas=res.alphas, weights=res.weights)
    assert_close(res.attributions, want, rtol=1e-10, atol=1e-13, what="rtol neuron map vs reference on its samples")
    n = res.extras["n_evaluations"]
    assert res.alphas.shape[0] == 4 and bool((n == (~torch.isnan(res.alphas)).sum(1)).all())
    assert bool((n >= 17).all()) and bool((n <= 1025).all())
    assert_close(res.weights.sum(1), torch.ones(4, dtype=torch.float64), rtol=1e-12, atol=1e-12, what="weights sum to 1")


@pytest.mark.parametrize("kind,rtol", [("mlp", 1e-3), ("mlp", 1e-2), ("cnn", 1e-2)])
def test_map_within_requested_error(kind, rtol, seed):
    model, layer, x = _mlp() if kind == "mlp" else _cnn()
    base = torch.zeros_like(x)
    target = torch.zeros(x.shape[0], dtype=torch.long)
    res = pa.neuron_conductance(model, layer, x, base, target, rtol=rtol, return_details=True)
    converged = pa.neuron_conductance(model, layer, x, base, target, n_steps=1024 if kind == "cnn" else 256)
    err = _rel(res.attributions, converged)
    est = res.extras["error_estimate"]
    assert bool(res.extras["converged"].all()), est
    assert bool((err <= 3 * rtol).all()), (err, est)  # the study's bound: none above 3x rtol
    assert bool((est <= rtol).all())
    assert res.settings["rtol"] == rtol and res.settings["jvp"] in ("forward_ad", "double_backward")


def test_easy_input_costs_less_than_hard(seed):
    """Each input gets the samples its own path needs: an input next to its baseline (a
    nearly linear path) stops at the first round, a far one is refined."""
    model, layer, x = _mlp()
    base = x.clone()
    base[0] = x[0] - 1e-3  # a tiny straight path: the integrand is constant to ~1e-3
    x[1] = x[1] * 6  # a long path through the nonlinearity
    res = pa.neuron_conductance(model, layer, x, base, target=0, rtol=1e-4, return_details=True)
    n = res.extras["n_evaluations"]
    assert int(n[0]) == 17 and int(n[1]) > 17, n
    assert res.extras["rounds"] >= 2


def test_max_steps_caps_and_reports_unconverged(seed):
    model, layer, x = _cnn()
    res = pa.neuron_conductance(model, layer, x * 8, target=1, rtol=1e-6, max_steps=33, return_details=True)
    assert bool((res.extras["n_evaluations"] <= 33).all())
    assert not bool(res.extras["converged"].all())


def test_tensor_return_and_mode(seed):
    model, layer, x = _mlp()
    mask = torch.ones(10, dtype=torch.bool)
    A, mode = pa.neuron_region_attribution(model, layer, x, mask, target=1, rtol=1e-2, return_mode=True)
    assert isinstance(A, torch.Tensor) and A.shape == (4, 24) and mode == "forward_ad"
    res = pa.neuron_region_attribution(model, layer, x, mask, target=1, n_steps=8, return_details=True)
    assert_close(res.attributions, pa.neuron_region_attribution(model, layer, x, mask, target=1, n_steps=8),
                 rtol=0, atol=0, what="details of a fixed rule carry the same map")
    assert bool((res.extras["n_evaluations"] == 8).all())


def test_target_none_counts_its_forward(seed):
    model, layer, x = _mlp()
    res = pa.neuron_conductance(model, layer, x, rtol=1e-2, return_details=True)
    assert bool((res.extras["n_forward"] == 1).all())
    assert torch.equal(res.target, model(x).argmax(1))


@pytest.mark.parametrize("bad,match", [(dict(rtol=0.0), "rtol"), (dict(rtol=1.5), "rtol"),
                                       (dict(min_steps=9), "min_steps"), (dict(rtol=0.01, max_steps=3), "max_steps"),
                                       (dict(rtol=0.01, min_steps=40, max_steps=20), "max_steps"),
                                       (dict(return_details="yes"), "return_details")])
def test_bad_tolerance_arguments_name_themselves(bad, match):
    model, layer, x = _mlp()
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises((ValueError, TypeError), match=match):
        pa.neuron_conductance(model, layer, x, target=0, **bad)
    assert not calls  # before any model call
