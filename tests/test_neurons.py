"""Internal neuron attributions A_k(S) (docs/methods.md §10) in fp64.

Oracles: (1) on a cut layer sum_k A_k(S) = sum_{i in S} IG_i, with IG from the
public IG function (a different computation: input gradients, no JVP); (2) Captum
0.9 NeuronConductance, one neuron at a time, summed over S; (3) the reference,
which uses the layer's explicit Jacobian instead of a JVP; (4) the two JVP modes
against each other."""
import pytest
import torch
from torch import nn

import pathattr as pa
from conftest import assert_close
from pathattr.reference import layer as ref
from testmodels import BNCNN, MLP, SmoothMLP, randomize_bn

captum_attr = pytest.importorskip("captum.attr")


def _cnn():
    model = randomize_bn(BNCNN(classes=6)).double()
    return model, model.features[2], torch.randn(3, 3, 9, 7, dtype=torch.float64)


def _mlp():
    model = SmoothMLP(d_in=10, hidden=24, classes=4).double().eval()
    return model, model.net[3], torch.randn(4, 10, dtype=torch.float64)


@pytest.mark.parametrize("jvp", ["forward_ad", "double_backward"])
@pytest.mark.parametrize("kind", ["cnn", "mlp"])
def test_region_sum_equals_ig_in_region(kind, jvp, seed):
    model, layer, x = _cnn() if kind == "cnn" else _mlp()
    base = torch.randn_like(x) * 0.2
    mask = torch.rand(x.shape[1:]) < 0.4
    target = torch.randint(0, 4, (x.shape[0],))
    A, mode = pa.neuron_region_attribution(model, layer, x, mask, base, target, n_steps=16, internal_batch_size=11,
                                           jvp=jvp, return_mode=True)
    assert mode == jvp
    ig = pa.integrated_gradients(model, x, base, target=target, n_steps=16)
    expected = (ig * mask).reshape(x.shape[0], -1).sum(1)
    got = A.reshape(x.shape[0], -1).sum(1)
    assert_close(got, expected, rtol=1e-5, atol=1e-9, what="sum_k A_k(S) vs sum_{i in S} IG_i")


def test_conductance_sums_to_ig(seed):
    model, layer, x = _cnn()
    c = pa.neuron_conductance(model, layer, x, target=2, n_steps=12)
    ig = pa.integrated_gradients(model, x, target=2, n_steps=12)
    assert c.shape == (3, 8, 9, 7)
    assert_close(c.reshape(3, -1).sum(1), ig.reshape(3, -1).sum(1), rtol=1e-5, atol=1e-9, what="conductance sum")


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
def test_equals_captum_neuron_conductance(kind, seed):
    model, layer, x = _cnn() if kind == "cnn" else _mlp()
    base = torch.randn_like(x) * 0.2
    mask = (torch.rand(x.shape[1:]) < 0.5).double()
    target = torch.randint(0, 4, (x.shape[0],))
    A = pa.neuron_region_attribution(model, layer, x, mask, base, target, n_steps=10)
    nc = captum_attr.NeuronConductance(model, layer)
    flat = A.reshape(x.shape[0], -1)
    for k in torch.randperm(flat.shape[1])[:4].tolist():
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(k), A.shape[1:]))
        per_input = nc.attribute(x, index, base, target=target, n_steps=10, method="gausslegendre")
        theirs = (per_input * mask).reshape(x.shape[0], -1).sum(1)
        assert_close(flat[:, k], theirs, rtol=1e-6, atol=1e-9, what=f"A_k(S) vs Captum, neuron {index}")


def test_equals_reference_and_modes_agree(seed):
    model = MLP(d_in=6, hidden=7, classes=3).double().eval()
    layer = model.net[2]
    x = torch.randn(3, 6, dtype=torch.float64)
    base = torch.randn_like(x) * 0.3
    mask = torch.tensor([1, 0, 1, 1, 0, 0])
    target = torch.tensor([0, 2, 1])
    fwd = pa.neuron_region_attribution(model, layer, x, mask, base, target, n_steps=9, jvp="forward_ad")
    dbl = pa.neuron_region_attribution(model, layer, x, mask, base, target, n_steps=9, jvp="double_backward")
    expected = ref.neuron_region_attribution(model, layer, x, base, target, mask, n_steps=9)
    assert_close(fwd, expected, rtol=1e-6, atol=1e-12, what="forward_ad vs reference")
    assert_close(dbl, expected, rtol=1e-6, atol=1e-12, what="double_backward vs reference")


class _NoForwardAD(torch.autograd.Function):
    """tanh as a custom Function with a backward (twice differentiable) but no jvp."""

    @staticmethod
    def forward(ctx, z):
        y = torch.tanh(z)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y * y)


class _CustomAct(nn.Module):
    def forward(self, z):
        return _NoForwardAD.apply(z)


def test_auto_falls_back_to_double_backward(seed):
    model = nn.Sequential(nn.Linear(5, 6), _CustomAct(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2)).double()
    x = torch.randn(2, 5, dtype=torch.float64)
    A, mode = pa.neuron_region_attribution(model, model[3], x, torch.ones(5), target=1, n_steps=8, return_mode=True)
    assert mode == "double_backward"
    ig = pa.integrated_gradients(model, x, target=1, n_steps=8)
    assert_close(A.sum(1), ig.sum(1), rtol=1e-5, atol=1e-10, what="fallback: sum A = sum IG")


class _TwoRegions(nn.Module):
    """Neurons 0-3 see only the first half of the input, neurons 4-7 only the second."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(8, 8)
        self.act = nn.Tanh()
        self.out = nn.Linear(8, 2)
        with torch.no_grad():
            self.hidden.weight[:4, 4:] = 0
            self.hidden.weight[4:, :4] = 0

    def forward(self, x):
        return self.out(self.act(self.hidden(x)))


def test_prune_and_measure(seed):
    """Pruning the top-A_k(S) neurons removes IG inside S, not outside; a control
    ranking (the other region's scores) does the opposite."""
    model = _TwoRegions().double().eval()
    x = torch.randn(6, 8, dtype=torch.float64)
    mask = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    res = pa.prune_and_measure(model, model.act, x, mask, n_prune=4, target=0, n_steps=20)
    assert sorted(res["pruned"].tolist()) == [0, 1, 2, 3]
    assert res["drop_inside"] > 0.99 and abs(res["drop_outside"]) < 0.5
    assert torch.allclose(res["inside_after"], torch.zeros(6, dtype=torch.float64), atol=1e-12)
    control = pa.prune_and_measure(model, model.act, x, mask, n_prune=4, target=0, n_steps=20,
                                   scores=torch.tensor([0., 0, 0, 0, 1, 1, 1, 1]))
    assert control["drop_outside"] > 0.99 and control["drop_inside"] < res["drop_inside"]


def test_prune_and_measure_when_ig_makes_several_model_calls(seed):
    """IG over several chunks (6 inputs x 200 steps > one chunk) and target=None (one more
    forward): the layer is counted per forward pass, not per `with` block (this raised
    "layer is called more than once per forward pass"). The pruned IG equals IG of the
    model with those neurons removed by hand."""
    model = _TwoRegions().double().eval()
    x = torch.randn(6, 8, dtype=torch.float64)
    mask = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    res = pa.prune_and_measure(model, model.act, x, mask, n_prune=4, n_steps=200)
    assert sorted(res["pruned"].tolist()) == [0, 1, 2, 3]
    cut = _TwoRegions().double().eval()
    cut.load_state_dict(model.state_dict())
    with torch.no_grad():  # tanh(0) = 0: neurons 0-3 silenced
        cut.hidden.weight[:4] = 0
        cut.hidden.bias[:4] = 0
    target = model(x).argmax(1)
    ig = pa.integrated_gradients(cut, x, target=target, n_steps=200)
    m = mask.double()
    assert_close(res["inside_after"], (ig * m).sum(1), rtol=1e-9, atol=1e-12, what="pruned IG inside")
    assert_close(res["outside_after"], (ig * (1 - m)).sum(1), rtol=1e-9, atol=1e-12, what="pruned IG outside")


class _OOMUnderForwardAD(nn.Module):
    """A small device: out of memory for dual-tensor chunks over `limit` rows; or any
    other RuntimeError of the model under forward AD."""

    def __init__(self, limit=None, other=False):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 2)).double()
        self.limit, self.other = limit, other

    def forward(self, x):
        import torch.autograd.forward_ad as fwAD

        if fwAD.unpack_dual(x).tangent is not None:
            if self.other:
                raise RuntimeError("the model's own error")
            if x.shape[0] > self.limit:
                raise torch.OutOfMemoryError(f"fake: {x.shape[0]} rows")
        return self.net(x)


def test_jvp_fallback_only_for_a_missing_forward_ad_formula(seed):
    """Out of memory under forward AD backs off to smaller chunks and stays on forward AD
    (it fell back to double backward on any RuntimeError); another error propagates."""
    x = torch.randn(3, 5, dtype=torch.float64)
    model = _OOMUnderForwardAD(limit=10)
    want = pa.neuron_conductance(model, model.net[1], x, target=1, n_steps=8, jvp="double_backward")
    with pytest.warns(RuntimeWarning, match="out of memory"):
        got, mode = pa.neuron_region_attribution(model, model.net[1], x, torch.ones(5), target=1, n_steps=8,
                                                 return_mode=True)
    assert mode == "forward_ad"
    assert_close(got, want, rtol=1e-10, atol=1e-12, what="after the back-off")
    bad = _OOMUnderForwardAD(other=True)
    with pytest.raises(RuntimeError, match="the model's own error"):
        pa.neuron_region_attribution(bad, bad.net[1], x, torch.ones(5), target=1, n_steps=8)


def test_bad_inputs():
    model = MLP(d_in=6, hidden=7, classes=3).double().eval()
    x = torch.randn(2, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="region_mask"):
        pa.neuron_region_attribution(model, model.net[2], x, torch.ones(5))
    with pytest.raises(ValueError, match="region_mask"):
        pa.neuron_region_attribution(model, model.net[2], x, torch.ones(3, 6))
    with pytest.raises(ValueError, match="region_mask"):
        pa.neuron_region_attribution(model, model.net[2], x, torch.full((6,), 0.5))
    with pytest.raises(TypeError, match="region_mask"):
        pa.neuron_region_attribution(model, model.net[2], x, [1, 0, 1, 0, 1, 0])
    with pytest.raises(ValueError, match="layer"):
        pa.neuron_region_attribution(model, nn.ReLU(), x, torch.ones(6))
    with pytest.raises(ValueError, match="jvp"):
        pa.neuron_region_attribution(model, model.net[2], x, torch.ones(6), jvp="reverse")
    with pytest.raises(ValueError, match="n_steps"):
        pa.neuron_conductance(model, model.net[2], x, n_steps=0)
    with pytest.raises(ValueError, match="target"):
        pa.neuron_conductance(model, model.net[2], x, target=3)
    with pytest.raises(ValueError, match="n_prune"):
        pa.prune_and_measure(model, model.net[2], x, torch.ones(6), n_prune=8)


def test_layer_input_forward_args_and_target_none(seed):
    """The input of net[3] is the output of net[2]; per-input forward args travel with
    their path rows; target=None explains the argmax."""
    from testmodels import GatedMLP

    model = MLP(d_in=6, hidden=7, classes=3).double().eval()
    x = torch.randn(4, 6, dtype=torch.float64)
    mask = torch.tensor([0, 1, 1, 0, 1, 0])
    a = pa.neuron_region_attribution(model, model.net[3], x, mask, attribute_to_layer_input=True, n_steps=8)
    b = pa.neuron_region_attribution(model, model.net[2], x, mask, target=model(x).argmax(1), n_steps=8)
    assert_close(a, b, rtol=1e-12, atol=1e-14, what="layer input = previous layer output")
    gated = GatedMLP(d_in=8, classes=3).double().eval()
    x = torch.randn(5, 8, dtype=torch.float64)
    gate = torch.rand(5, 16, dtype=torch.float64)
    A = pa.neuron_conductance(gated, gated.lin1, x, target=1, additional_forward_args=(gate, 0.5), n_steps=10,
                              internal_batch_size=3)
    ig = pa.integrated_gradients(gated, x, target=1, additional_forward_args=(gate, 0.5), n_steps=10)
    assert_close(A.sum(1), ig.sum(1), rtol=1e-5, atol=1e-12, what="conductance with forward args")
    empty = pa.neuron_conductance(gated, gated.lin1, x[:0], target=1, additional_forward_args=(gate[:0], 0.5))
    assert empty.shape[0] == 0
