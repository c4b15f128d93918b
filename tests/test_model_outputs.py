"""Models that return a tuple, a dict or a ModelOutput-like dataclass, without a wrapper
(docs/methods.md §0): named outputs read the logits ("logits" entry, element 0) or the
entry named in "KEY:FUNC"; an output callable gets the output as the model returned it,
and with target=None the argmax of the logits, never None. Each is checked against the
same model returning its logits as a plain tensor (an independent path: no packing)."""
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

import pytest
import torch
from torch import nn

import pathattr as pa
from conftest import assert_close
from testmodels import MLP


@dataclass
class Out(OrderedDict):
    """The shape of a Hugging Face ModelOutput: a dataclass that is also an OrderedDict."""

    logits: torch.Tensor = None
    hidden: Optional[torch.Tensor] = None

    def __post_init__(self):
        for k in ("logits", "hidden"):
            if getattr(self, k) is not None:
                self[k] = getattr(self, k)


class Raw(nn.Module):
    """MLP logits returned as `kind`, with other entries beside them."""

    def __init__(self, mlp, kind):
        super().__init__()
        self.mlp, self.kind = mlp, kind
        self.calls = 0

    def forward(self, x, scale=1.0):
        self.calls += 1
        y = self.mlp(x) * scale
        if self.kind == "tuple":
            return y, torch.tanh(x).sum(1), "not a tensor"
        if self.kind == "dict":
            return {"logits": y, "aux": 2 * y, "loss": y.sum()}
        if self.kind == "dataclass":
            return Out(logits=y, hidden=torch.stack([x, x], 1))
        return y


KINDS = ["tuple", "dict", "dataclass"]


@pytest.fixture
def mlp(seed):
    return MLP(d_in=6, hidden=10, classes=4).double().eval()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fn", ["ig", "idg"])
@pytest.mark.parametrize("output", ["logit", "softmax", "log_softmax"])
def test_named_outputs_read_the_logits(mlp, kind, fn, output):
    f = pa.integrated_gradients if fn == "ig" else pa.integrated_decision_gradients
    x = torch.randn(3, 6, dtype=torch.float64)
    for target, base in ((torch.tensor([0, 3, 1]), None), (None, torch.randn(1, 6, dtype=torch.float64))):
        got = f(Raw(mlp, kind), x, base, target=target, n_steps=8, output=output, return_details=True)
        want = f(mlp, x, base, target=target, n_steps=8, output=output, return_details=True)
        assert_close(got.attributions, want.attributions, rtol=1e-12, atol=1e-14, what=f"{kind} {fn} {output}")
        assert torch.equal(got.target, want.target)


@pytest.mark.parametrize("method", ["left_ig", "guided_ig", "expected_gradients", "bshap"])
def test_other_methods_on_a_dict_output(mlp, method):
    x = torch.randn(2, 6, dtype=torch.float64)
    kw = dict(baselines=torch.randn(5, 6, dtype=torch.float64)) if method == "expected_gradients" else {}
    steps = {} if method in ("expected_gradients", "bshap") else dict(n_steps=8)
    got = pa.Explainer(Raw(mlp, "dict"), method, **steps).attribute(x, target=1, **kw)
    want = pa.Explainer(mlp, method, **steps).attribute(x, target=1, **kw)
    assert_close(got, want, rtol=1e-12, atol=1e-14, what=method)


def test_keyed_outputs(mlp):
    x = torch.randn(3, 6, dtype=torch.float64)
    want = pa.integrated_gradients(lambda v: 2 * mlp(v), x, target=2, n_steps=8, output="softmax")
    got = pa.integrated_gradients(Raw(mlp, "dict"), x, target=2, n_steps=8, output="aux:softmax")
    assert_close(got, want, rtol=1e-12, atol=1e-14, what="'aux:softmax'")
    # element 0 of a tuple by index; the keyed output is a named one: its range is checked
    got = pa.integrated_gradients(Raw(mlp, "tuple"), x, target=2, n_steps=8, output="0:logit")
    assert_close(got, pa.integrated_gradients(mlp, x, target=2, n_steps=8), rtol=1e-12, atol=1e-14, what="'0:logit'")
    with pytest.raises(ValueError, match="target must lie in"):
        pa.integrated_gradients(Raw(mlp, "dict"), x, target=4, n_steps=8, output="aux:logit")


@pytest.mark.parametrize("bad", ["logits", "aux", "aux:", ":logit", "aux:prob", "", "logit:"])
def test_bad_output_strings_are_refused_before_the_model_runs(mlp, bad):
    model = Raw(mlp, "dict")
    for call in (lambda: pa.integrated_gradients(model, torch.randn(2, 6, dtype=torch.float64), target=0, output=bad),
                 lambda: pa.Explainer(model, "ig", output=bad),
                 lambda: pa.layer_integrated_gradients(model, mlp.net[1], torch.randn(2, 6, dtype=torch.float64),
                                                       target=0, output=bad)):
        with pytest.raises(ValueError, match="output"):
            call()
    assert model.calls == 0


def test_missing_entries_are_named(mlp):
    x = torch.randn(2, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"output='nope:logit'.*'logits', 'aux', 'loss'"):
        pa.integrated_gradients(Raw(mlp, "dict"), x, target=0, output="nope:logit")
    with pytest.raises(ValueError, match=r"output='logit'.*keys: 'aux'"):
        pa.integrated_gradients(lambda v: {"aux": mlp(v)}, x, target=0)
    with pytest.raises(ValueError, match="returned a tensor"):
        pa.integrated_gradients(mlp, x, target=0, output="aux:logit")
    with pytest.raises(ValueError, match="index in"):
        pa.integrated_gradients(Raw(mlp, "tuple"), x, target=0, output="7:logit")


@pytest.mark.parametrize("kind", KINDS)
def test_callables_get_the_raw_output_and_resolved_targets(mlp, kind):
    """Many chunks (internal_batch_size=5), a shared baseline, target=None: the callable
    always sees the model's own type and real targets, and the numbers equal the
    same scalar computed from a plain tensor model."""
    x = torch.randn(4, 6, dtype=torch.float64)
    base = torch.randn(1, 6, dtype=torch.float64)
    seen = []

    def pick(out, t):
        seen.append((type(out), None if t is None else t.shape))
        logits = out[0] if kind == "tuple" else out["logits"]
        return logits.gather(1, t.view(-1, 1)).view(-1) - logits.mean(1)

    def plain(out, t):
        return out.gather(1, t.view(-1, 1)).view(-1) - out.mean(1)

    for fn in (pa.integrated_gradients, pa.integrated_decision_gradients):
        got = fn(Raw(mlp, kind), x, base, n_steps=8, output=pick, internal_batch_size=5, return_details=True,
                 return_convergence_delta=True)
        want = fn(mlp, x, base, n_steps=8, output=plain, internal_batch_size=5, return_details=True,
                  return_convergence_delta=True)
        assert_close(got.attributions, want.attributions, rtol=1e-12, atol=1e-14, what=f"{kind} callable")
        assert_close(got.delta, want.delta, rtol=1e-9, atol=1e-12, what=f"{kind} delta")
        assert torch.equal(got.target, mlp(x).argmax(1))
    want_type = {"tuple": tuple, "dict": dict, "dataclass": Out}[kind]
    assert seen and all(typ is want_type and shape is not None for typ, shape in seen), seen


def test_callable_sees_every_entry_of_the_output(mlp):
    x = torch.randn(3, 6, dtype=torch.float64)

    def from_aux(out, t):  # uses a leaf beside the logits, and leaves that are not batched
        assert out["loss"].dim() == 0 and isinstance(out, dict)
        return out["aux"].gather(1, t.view(-1, 1)).view(-1)

    got = pa.integrated_gradients(Raw(mlp, "dict"), x, target=[1, 2, 3], n_steps=8, output=from_aux)
    want = pa.integrated_gradients(mlp, x, target=[1, 2, 3], n_steps=8)
    assert_close(got, 2 * want, rtol=1e-12, atol=1e-14, what="aux entry")


def test_target_none_without_logits_is_named(mlp):
    x = torch.randn(2, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="target=None"):
        pa.integrated_gradients(lambda v: {"score": mlp(v).sum(1)}, x, output=lambda o, t: o["score"])
    # with a target given the callable may ignore it
    a = pa.integrated_gradients(lambda v: {"score": mlp(v).sum(1)}, x, target=0, output=lambda o, t: o["score"])
    assert_close(a, pa.integrated_gradients(mlp, x, output=lambda o, t: o.sum(1), target=0), rtol=1e-12, atol=1e-14)


def test_layers_on_raw_outputs(mlp):
    x = torch.randn(3, 6, dtype=torch.float64)
    seen = []

    def pick(out, t):
        seen.append(t)
        return out[0].gather(1, t.view(-1, 1)).view(-1)

    for fn in (pa.layer_integrated_gradients, pa.layer_integrated_decision_gradients):
        got = fn(Raw(mlp, "tuple"), mlp.net[1], x, n_steps=8, output=pick)
        want = fn(mlp, mlp.net[1], x, n_steps=8)
        assert_close(got, want, rtol=1e-12, atol=1e-14, what=fn.__name__)
    assert seen and all(t is not None for t in seen)


@pytest.mark.parametrize("jvp", ["forward_ad", "double_backward"])
def test_neurons_on_raw_outputs_and_plain_functions(mlp, jvp):
    x = torch.randn(3, 6, dtype=torch.float64)
    want = pa.neuron_conductance(mlp, mlp.net[3], x, n_steps=8, jvp=jvp)
    got = pa.neuron_conductance(lambda v: {"logits": mlp(v)}, mlp.net[3], x, n_steps=8, jvp=jvp)
    assert_close(got, want, rtol=1e-12, atol=1e-14, what=f"neuron conductance, dict output ({jvp})")
    seen = []

    def pick(out, t):
        seen.append(t)
        return out[0].gather(1, t.view(-1, 1)).view(-1)

    got = pa.neuron_conductance(Raw(mlp, "tuple"), mlp.net[3], x, n_steps=8, jvp=jvp, output=pick)
    assert_close(got, want, rtol=1e-12, atol=1e-14, what=f"neuron conductance, callable ({jvp})")
    assert seen and all(t is not None for t in seen)
