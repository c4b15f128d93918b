"""Layer IG / IDG (attribution to a layer's output or input) against Captum 0.9's
LayerIntegratedGradients and against the one-input-at-a-time reference, in fp64.

Captum computes its alphas in float32, so agreement is ~1e-8 relative; the
reference shares no code with the engine (its own hooks and loops)."""
import pytest
import torch

import pathattr as pa
from conftest import assert_close
from pathattr.reference import layer as ref
from testmodels import BNCNN, MLP, TinyTransformer, randomize_bn

captum_attr = pytest.importorskip("captum.attr")


def _transformer(seed):
    model = TinyTransformer(vocab=20, dim=8, seq=6, classes=3).double().eval()
    ids = torch.randint(1, 20, (4, 6))
    base = torch.zeros_like(ids)  # the pad token
    return model, ids, base


def _cases():
    return ["embed_out", "norm1_in", "cnn_out", "cnn_in"]


def _case(kind):
    if kind.startswith("cnn"):
        model = randomize_bn(BNCNN(classes=6)).double()
        x = torch.randn(3, 3, 9, 7, dtype=torch.float64)
        layer = model.features[3]
        return model, layer, x, torch.randn_like(x) * 0.2, kind == "cnn_in"
    model, ids, base = _transformer(None)
    if kind == "embed_out":
        return model, model.embed, ids, base, False
    return model, model.norm1, ids, base, True


@pytest.mark.parametrize("kind", _cases())
def test_layer_ig_equals_captum(kind, seed):
    model, layer, x, base, to_input = _case(kind)
    target = torch.randint(0, 3, (x.shape[0],))
    ours, delta = pa.layer_integrated_gradients(model, layer, x, base, target=target, n_steps=24,
                                                attribute_to_layer_input=to_input, return_convergence_delta=True)
    lig = captum_attr.LayerIntegratedGradients(model, layer)
    theirs, their_delta = lig.attribute(x, base, target=target, n_steps=24, method="gausslegendre",
                                        attribute_to_layer_input=to_input, return_convergence_delta=True)
    assert ours.dtype == torch.float64 and ours.shape == theirs.shape
    assert_close(ours, theirs, rtol=1e-6, atol=1e-9, what=f"layer IG ({kind})")
    # Every layer here is a cut of the graph, so our delta (ends evaluated with the
    # layer's activations replaced) equals Captum's (model(x) - model(x')).
    assert_close(delta, their_delta, rtol=1e-6, atol=1e-7, what="convergence delta")  # float32 alphas in Captum


@pytest.mark.parametrize("to_input", [False, True])
def test_layer_ig_equals_reference(to_input, seed):
    model = MLP(d_in=12, hidden=16, classes=5).double().eval()
    x = torch.randn(3, 12, dtype=torch.float64)
    base = torch.randn_like(x) * 0.1
    layer = model.net[3]
    target = torch.randint(0, 5, (3,))
    ours = pa.layer_integrated_gradients(model, layer, x, base, target=target, n_steps=17, method="riemann_left",
                                         attribute_to_layer_input=to_input, internal_batch_size=5)
    expected = ref.layer_attribution("ig", model, layer, x, base, target, to_input, n_steps=17, method="riemann_left")
    assert_close(ours, expected, rtol=1e-6, atol=1e-10, what="layer IG vs reference")


@pytest.mark.parametrize("schedule", ["uniform", "adaptive", "paper"])
def test_layer_idg_equals_reference(schedule, seed):
    model, ids, base = _transformer(seed)
    target = torch.randint(0, 3, (ids.shape[0],))
    ours = pa.layer_integrated_decision_gradients(model, model.embed, ids, base, target=target, n_steps=12,
                                                  schedule=schedule, internal_batch_size=7)
    expected = ref.layer_attribution("idg", model, model.embed, ids, base, target, False, n_steps=12,
                                     schedule=schedule)
    assert ours.shape == (4, 6, 8)
    assert_close(ours, expected, rtol=1e-6, atol=1e-10, what=f"layer IDG ({schedule}) vs reference")


def test_layer_idg_invariant_and_token_scores(seed):
    """Sum IDG = sum_k w_k IF_k (docs/methods.md §2 invariant) and per-token scores from the embedding."""
    model, ids, base = _transformer(seed)
    res = pa.layer_integrated_decision_gradients(model, model.embed, ids, base, n_steps=32, return_details=True)
    total = (res.weights.to(res.importance.dtype) * res.importance ** 2).sum(1)
    assert_close(res.attributions.sum((1, 2)), total, rtol=1e-9, atol=1e-12, what="sum IDG = sum w IF^2")
    scores = pa.token_scores(res.attributions)
    assert scores.shape == (4, 6)
    assert_close(scores.sum(1), res.attributions.sum((1, 2)), rtol=1e-12, atol=1e-12)
    # target=None resolved to the model's argmax on the real inputs
    assert torch.equal(res.target, model(ids).argmax(1))


def test_layer_ig_matches_input_ig_on_identity_layer(seed):
    """Attributing to the input of the first layer is ordinary IG."""
    model = MLP(d_in=12, hidden=16, classes=5).double().eval()
    x = torch.randn(3, 12, dtype=torch.float64)
    a = pa.layer_integrated_gradients(model, model.net[1], x, target=1, attribute_to_layer_input=True)
    b = pa.integrated_gradients(model, x, target=1)
    assert_close(a, b, rtol=1e-9, atol=1e-12, what="layer input IG = IG")


def test_layer_bad_inputs():
    model = MLP(d_in=12).double().eval()
    other = MLP(d_in=12)
    x = torch.randn(2, 12, dtype=torch.float64)
    with pytest.raises(ValueError, match="layer"):
        pa.layer_integrated_gradients(model, other.net[1], x)
    with pytest.raises(TypeError, match="layer"):
        pa.layer_integrated_gradients(model, "net.1", x)
    with pytest.raises(ValueError, match="baselines"):
        pa.layer_integrated_gradients(model, model.net[1], x, baselines=torch.zeros(3, 12, dtype=torch.float64))
    with pytest.raises(TypeError, match="attribute_to_layer_input"):
        pa.layer_integrated_gradients(model, model.net[1], x, attribute_to_layer_input="yes")
    with pytest.raises(ValueError, match="n_steps"):
        pa.layer_integrated_decision_gradients(model, model.net[1], x, n_steps=0)
    with pytest.raises(TypeError, match="model"):
        pa.layer_integrated_gradients("model", model.net[1], x)
    with pytest.raises(ValueError, match="not called"):  # a plain function is fine, if it calls the layer
        pa.layer_integrated_gradients(lambda z: z, model.net[1], x)
    unused = torch.nn.Linear(3, 3)
    model.add_module("unused", unused)
    with pytest.raises(ValueError, match="not called"):
        pa.layer_integrated_gradients(model, unused, x)


def test_layer_ig_with_forward_args_equals_captum(seed):
    """Per-input extra forward args (a gate tensor) and a plain float travel with each path row."""
    from testmodels import GatedMLP

    model = GatedMLP(d_in=8, classes=3).double().eval()
    x = torch.randn(5, 8, dtype=torch.float64)
    gate = torch.rand(5, 16, dtype=torch.float64)
    ours = pa.layer_integrated_gradients(model, model.lin2, x, target=2, additional_forward_args=(gate, 0.7),
                                         attribute_to_layer_input=True, n_steps=12, internal_batch_size=7)
    theirs = captum_attr.LayerIntegratedGradients(model, model.lin2).attribute(
        x, target=2, additional_forward_args=(gate, 0.7), n_steps=12, method="gausslegendre",
        attribute_to_layer_input=True)
    assert_close(ours, theirs, rtol=1e-6, atol=1e-9, what="layer IG with forward args")


def test_layer_ig_on_a_plain_function_equals_captum(seed):
    """A function that calls modules (no nn.Module around them) with a layer it calls;
    its extra forward args too."""
    model = MLP(d_in=12, hidden=16, classes=5).double().eval()
    x = torch.randn(3, 12, dtype=torch.float64)
    base = torch.randn_like(x) * 0.1
    fn = lambda z, s: model(z) * s  # noqa: E731
    target = torch.tensor([0, 4, 2])
    ours = pa.layer_integrated_gradients(fn, model.net[3], x, base, target=target, additional_forward_args=(1.5,),
                                         n_steps=12)
    theirs = captum_attr.LayerIntegratedGradients(fn, model.net[3]).attribute(
        x, base, target=target, additional_forward_args=(1.5,), n_steps=12, method="gausslegendre")
    assert_close(ours, theirs, rtol=1e-6, atol=1e-9, what="layer IG of a plain function")
    ours = pa.layer_integrated_decision_gradients(fn, model.net[3], x, base, target=target,
                                                  additional_forward_args=(1.5,), n_steps=12)
    want = pa.layer_integrated_decision_gradients(model, model.net[3], x, base, target=target, n_steps=12)
    assert_close(ours, 1.5 ** 2 * want, rtol=1e-9, atol=1e-12, what="layer IDG of a plain function")
