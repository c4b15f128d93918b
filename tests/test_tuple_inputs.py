"""Tuples of inputs and baselines, as Captum takes them (engine/packing.py): the model is
called as model(x1, x2, *additional_forward_args) and the attributions come back as a
tuple, one per input, each of its input's shape. Checked against Captum 0.9's
IntegratedGradients with tuple inputs (fp64), and against the single-input path on a
model that takes the concatenated input (an independent layout: no packing)."""
import pytest
import torch
from torch import nn

import pathattr as pa
from conftest import assert_close

captum_attr = pytest.importorskip("captum.attr")


class TwoInputs(nn.Module):
    """A vector and a 2x5 signal, mixed nonlinearly; an optional scale argument."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 8)
        self.b = nn.Conv1d(2, 3, 3)
        self.head = nn.Linear(8 + 9, 4)

    def forward(self, x1, x2, scale=1.0):
        h = torch.cat([torch.tanh(self.a(x1)), torch.tanh(self.b(x2)).flatten(1)], 1)
        return self.head(h * torch.sigmoid(x1.sum(1, keepdim=True))) * scale


class Flat(nn.Module):
    """The same model on one concatenated input (B, 16)."""

    def __init__(self, two):
        super().__init__()
        self.two = two

    def forward(self, z, scale=1.0):
        return self.two(z[:, :6], z[:, 6:].reshape(-1, 2, 5), scale)


@pytest.fixture
def case(seed):
    model = TwoInputs().double().eval()
    x1, x2 = torch.randn(3, 6, dtype=torch.float64), torch.randn(3, 2, 5, dtype=torch.float64)
    b1, b2 = torch.randn(1, 6, dtype=torch.float64) * 0.3, torch.randn(3, 2, 5, dtype=torch.float64) * 0.3
    return model, (x1, x2), (b1, b2)


def _flat(parts):
    rows = max(p.shape[0] for p in parts)
    return torch.cat([p.reshape(p.shape[0], -1).expand(rows, -1) for p in parts], 1)


def test_ig_equals_captum_on_tuple_inputs(case):
    model, xs, bs = case
    target = torch.tensor([0, 2, 3])
    ours, delta = pa.integrated_gradients(model, xs, baselines=bs, target=target, additional_forward_args=(2.0,),
                                          n_steps=20, return_convergence_delta=True)
    theirs, their_delta = captum_attr.IntegratedGradients(model).attribute(
        xs, baselines=bs, target=target, additional_forward_args=(2.0,), n_steps=20, method="gausslegendre",
        return_convergence_delta=True)
    assert isinstance(ours, tuple) and len(ours) == 2
    for i, (a, t) in enumerate(zip(ours, theirs)):
        assert a.shape == t.shape and a.dtype == torch.float64
        assert_close(a, t, rtol=1e-6, atol=1e-9, what=f"IG inputs[{i}]")  # Captum's alphas are float32
    assert delta.shape == (3,)
    assert_close(delta, their_delta, rtol=1e-6, atol=1e-7, what="delta")


@pytest.mark.parametrize("method", ["ig", "idg", "left_ig", "guided_ig"])
def test_methods_equal_the_concatenated_model(case, method):
    model, xs, bs = case
    ex = pa.Explainer(model, method, n_steps=12)
    got = ex.attribute(xs, bs, target=1, return_details=True)
    want = pa.Explainer(Flat(model), method, n_steps=12).attribute(_flat(xs), _flat(bs), target=1, return_details=True)
    assert isinstance(got.attributions, tuple)
    assert_close(_flat(got.attributions), want.attributions, rtol=1e-10, atol=1e-13, what=method)
    assert torch.equal(got.target, want.target)
    if want.alphas is not None:
        assert got.alphas.shape[0] == 3  # details per input row
    # the Explainer is left as it was: a plain tensor call afterwards works
    assert ex.model is model


def test_expected_gradients_and_distribution_baselines(case):
    model, xs, _ = case
    refs = (torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 2, 5, dtype=torch.float64))
    got, delta = pa.expected_gradients(model, xs, refs, target=2, n_references=4, return_convergence_delta=True)
    want, wdelta = pa.expected_gradients(Flat(model), _flat(xs), _flat(refs), target=2, n_references=4,
                                         return_convergence_delta=True)
    assert_close(_flat(got), want, rtol=1e-10, atol=1e-13, what="EG")
    assert_close(delta, wdelta, rtol=1e-9, atol=1e-12, what="EG delta")
    dist = pa.distribution_baseline(refs)
    got = pa.integrated_decision_gradients(model, xs, dist, target=2, n_steps=8)
    want = pa.integrated_decision_gradients(Flat(model), _flat(xs), pa.distribution_baseline(_flat(refs)), target=2,
                                            n_steps=8)
    assert_close(_flat(got), want, rtol=1e-10, atol=1e-13, what="IDG_D")


def test_baselines_forms_and_target_none(case):
    model, xs, _ = case
    for bs, flat in ((None, None), (0.5, 0.5), ((None, 0.25), _flat((torch.zeros(1, 6), torch.full((1, 10), 0.25))))):
        got = pa.integrated_gradients(model, xs, bs, n_steps=8, return_details=True)
        want = pa.integrated_gradients(Flat(model), _flat(xs), flat, n_steps=8, return_details=True)
        assert_close(_flat(got.attributions), want.attributions, rtol=1e-10, atol=1e-13, what=f"baselines {bs!r}")
        assert torch.equal(got.target, model(*xs).argmax(1))


def test_mixed_dtypes_come_back_in_each_inputs_dtype(case):
    model, xs, bs = case
    m32 = TwoInputs().eval()
    x1 = xs[0].float()
    attr = pa.integrated_gradients(lambda a, b: m32(a, b.float()), (x1, xs[1]), target=0, n_steps=8)
    assert attr[0].dtype == torch.float32 and attr[1].dtype == torch.float64
    assert attr[0].is_contiguous() and attr[1].is_contiguous()


def test_bad_tuples_are_named_before_the_model_runs(case):
    model, (x1, x2), (b1, b2) = case
    calls = []

    def counted(a, b):
        calls.append(1)
        return model(a, b)

    bad = [
        (ValueError, r"inputs\[1\] has 2 rows", dict(inputs=(x1, x2[:2]))),
        (TypeError, r"inputs\[1\] must be a floating", dict(inputs=(x1, x2.long()))),
        (ValueError, r"inputs\[0\] contains NaN", dict(inputs=(x1 * float("nan"), x2))),
        (ValueError, "empty tuple", dict(inputs=())),
        (ValueError, r"baselines has 1 entries", dict(inputs=(x1, x2), baselines=(b1,))),
        (ValueError, r"baselines\[1\] of shape", dict(inputs=(x1, x2), baselines=(b1, torch.zeros(4, 3)))),
        (TypeError, "tuple of 2 baselines", dict(inputs=(x1, x2), baselines=b1)),
    ]
    for err, match, kw in bad:
        with pytest.raises(err, match=match):
            pa.integrated_gradients(counted, target=0, **kw)
    with pytest.raises(ValueError, match="inputs: a tuple of inputs works with"):
        pa.bshap(counted, (x1, x2), target=0)
    with pytest.raises(ValueError, match=r"baselines\[1\] holds 4 references"):
        pa.expected_gradients(counted, (x1, x2), (torch.randn(5, 6), torch.randn(4, 2, 5)), target=0)
    assert not calls


def test_explainer_reference_setting_and_tuple_sets_with_one_input(case):
    model, xs, _ = case
    refs = (torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 2, 5, dtype=torch.float64))
    got = pa.Explainer(model, "expected_gradients", references=refs, n_references=3).attribute(xs, target=1)
    want = pa.expected_gradients(model, xs, refs, target=1, n_references=3)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    with pytest.raises(TypeError, match="tuple of inputs"):
        pa.expected_gradients(Flat(model), _flat(xs), refs, target=1)


def test_layer_ig_on_tuple_inputs_equals_captum(case):
    model, xs, bs = case
    target = torch.tensor([3, 0, 1])
    ours, delta = pa.layer_integrated_gradients(model, model.b, xs, bs, target=target, additional_forward_args=(0.5,),
                                                n_steps=16, return_convergence_delta=True)
    theirs, their_delta = captum_attr.LayerIntegratedGradients(model, model.b).attribute(
        xs, bs, target=target, additional_forward_args=(0.5,), n_steps=16, method="gausslegendre",
        return_convergence_delta=True)
    assert ours.shape == theirs.shape == (3, 3, 3)
    assert_close(ours, theirs, rtol=1e-6, atol=1e-9, what="layer IG, tuple inputs")
    # model.b is no cut of the graph (x1 also reaches the head beside it), so Captum's delta
    # (model(x) - model(x')) is not ours (both ends with the layer replaced: docs/methods.md)
    assert delta.shape == (3,) and not torch.allclose(their_delta, torch.zeros_like(their_delta))
    with pytest.raises(ValueError, match=r"inputs\[1\] has 2 rows"):
        pa.layer_integrated_gradients(model, model.b, (xs[0], xs[1][:2]), target=0)
    with pytest.raises(TypeError, match="tuple of 2 baselines"):
        pa.layer_integrated_gradients(model, model.b, xs, bs[0], target=0)
