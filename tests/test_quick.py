"""The latency path (pathattr/quick.py): taken exactly when a call qualifies, and then
bit for bit what the general path computes; everything else falls back untouched."""
import pytest
import torch

import pathattr as pa
from conftest import assert_close
from pathattr.engine import quick
from pathattr.methods import idg, ig
from pathattr.reference import idg as ref_idg
from pathattr.reference import ig as ref_ig
from testmodels import BNCNN, MLP, randomize_bn


@pytest.fixture
def taken(monkeypatch):
    """Counts the gradient passes the latency path runs (so a test knows it was taken)."""
    calls = []
    real = quick._gradients

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(quick, "_gradients", spy)
    return calls


def _general(model, method, x, target, **settings):
    """The general path: details force it (the attributions are computed the same way)."""
    return pa.Explainer(model, method, **settings).attribute(x, target=target, return_details=True).attributions


def _models(dtype):
    return [(MLP(d_in=12, classes=5).to(dtype).eval(), (12,)), (randomize_bn(BNCNN(classes=4)).to(dtype), (3, 9, 7))]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"])
@pytest.mark.parametrize("target_kind", ["int", "same", "mixed"])
def test_ig_equals_general_path_bit_for_bit(dtype, rule, target_kind, taken, seed):
    for model, shape in _models(dtype):
        x = torch.randn((3,) + shape, dtype=dtype)
        target = {"int": 2, "same": torch.tensor([1, 1, 1]), "mixed": torch.tensor([0, 3, 1])}[target_kind]
        n = len(taken)
        fast = pa.integrated_gradients(model, x, target=target, n_steps=7, method=rule)
        via_explainer = pa.Explainer(model, "ig", n_steps=7, rule=rule).attribute(x, target=target)
        assert len(taken) == n + 2, "the latency path was not taken"
        want = _general(model, "ig", x, target, n_steps=7, rule=rule)
        assert len(taken) == n + 2, "details must take the general path"
        assert torch.equal(fast, want) and torch.equal(via_explainer, want)
        assert fast.dtype == dtype and fast.shape == x.shape


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("schedule", ["adaptive", "paper"])
@pytest.mark.parametrize("target_kind", ["int", "mixed"])
def test_idg_equals_general_path_bit_for_bit(dtype, schedule, target_kind, taken, seed):
    for model, shape in _models(dtype):
        x = torch.randn((3,) + shape, dtype=dtype)
        target = {"int": 3, "mixed": torch.tensor([2, 0, 3])}[target_kind]
        n = len(taken)
        fast = pa.integrated_decision_gradients(model, x, target=target, n_steps=12, schedule=schedule)
        via_explainer = pa.Explainer(model, "idg", n_steps=12, schedule=schedule).attribute(x, target=target)
        assert len(taken) == n + 2, "the latency path was not taken"
        want = _general(model, "idg", x, target, n_steps=12, schedule=schedule)
        assert torch.equal(fast, want) and torch.equal(via_explainer, want)


@pytest.mark.parametrize("output", ["logit", "softmax", "log_softmax"])
def test_latency_path_matches_the_references(output, taken, seed):
    """Independent of the engine: the papers' loops, one example at a time (fp64)."""
    model = MLP(d_in=12, classes=5).double().eval()
    x = torch.randn(2, 12, dtype=torch.float64)
    base = torch.zeros_like(x)
    got = pa.integrated_gradients(model, x, target=torch.tensor([4, 1]), n_steps=16, output=output)
    assert_close(got, ref_ig.integrated_gradients(model, x, base, [4, 1], n_steps=16, output=output),
                 rtol=1e-9, atol=1e-13, what="IG " + output)
    got = pa.integrated_decision_gradients(model, x, target=2, n_steps=16, output=output)
    assert_close(got, ref_idg.integrated_decision_gradients(model, x, base, [2, 2], n_steps=16, output=output),
                 rtol=1e-9, atol=1e-13, what="IDG " + output)
    assert len(taken) == 2


def test_calls_it_does_not_handle_fall_back(seed):
    """quick.* returns None before any model call; the public functions then answer as before."""
    model = MLP(d_in=12, classes=5).eval()
    cfg = ig.settings(8, "gausslegendre")
    x = torch.randn(2, 12)
    ran = []
    model.register_forward_hook(lambda *a: ran.append(1))
    nan = x.clone()
    nan[1, 3] = float("nan")
    cases = {
        "target None": (x, None), "negative target": (x, -1), "target list": (x, [1, 2]),
        "float target tensor": (x, torch.tensor([1.0, 2.0])), "wrong target length": (x, torch.tensor([1, 2, 3])),
        "NaN input": (nan, 1), "float16 input": (x.half(), 1), "input needing grad": (x.clone().requires_grad_(), 1),
        "empty batch": (x[:0], 1), "integer input": (x.long(), 1), "not a tensor": (x.tolist(), 1),
    }
    for what, (inputs, target) in cases.items():
        assert quick.integrated_gradients(model, inputs, target, cfg, "logit", None) is None, what
    assert quick.integrated_gradients(model, x, 1, ig.settings(600, "gausslegendre"), "logit", None) is None  # > 1 chunk
    with torch.no_grad():  # grad mode off: the general path turns it on for its gradient pass
        assert quick.integrated_gradients(model, x, 1, cfg, "logit", None) is None
    assert quick.integrated_gradients(model, x, 1, cfg, "logit", 15) is None  # 16 rows > internal_batch_size
    for schedule, kw in (("uniform", {}), ("adaptive", {"importance": "finite_difference"}),
                         ("adaptive", {"normalize": "completeness"})):
        cfg_idg = idg.settings(8, schedule, **kw)
        assert quick.integrated_decision_gradients(model, x, 1, cfg_idg, "logit", None, None) is None, (schedule, kw)
    assert not ran
    with pytest.raises(ValueError, match="inputs contains NaN"):
        pa.integrated_gradients(model, nan, target=1)
    with pytest.raises(ValueError, match="target must lie in"):
        pa.integrated_decision_gradients(model, x, target=-1)
    with torch.inference_mode():
        assert torch.equal(pa.integrated_gradients(model, x.clone(), target=1, n_steps=8),
                           _general(model, "ig", x, 1, n_steps=8))
    # inputs that require grad: attributions computed on their values, no graph kept
    a = pa.integrated_gradients(model, x.clone().requires_grad_(), target=1, n_steps=8)
    assert not a.requires_grad and torch.equal(a, pa.integrated_gradients(model, x, target=1, n_steps=8))


def test_errors_found_on_the_latency_path_read_as_the_general_path(taken):
    model = MLP(d_in=12, classes=5).eval()
    x = torch.randn(2, 12)
    with pytest.raises(ValueError, match=r"target must lie in \[0, 5\) for a model with 5 outputs; got 5"):
        pa.integrated_gradients(model, x, target=torch.tensor([1, 5]), n_steps=4)
    with pytest.raises(ValueError, match=r"target must lie in \[0, 5\)"):
        pa.integrated_decision_gradients(model, x, target=7, n_steps=8)

    class Flat(torch.nn.Module):
        def forward(self, x):
            return x.sum(1)

    with pytest.raises(ValueError, match="expected \\(batch, classes\\)"):
        pa.integrated_gradients(Flat(), x, target=0, n_steps=4)

    class Blows(torch.nn.Module):
        def forward(self, x):
            return torch.stack([x.sum(1), 1 / (x.sum(1) - x.sum(1))], 1)  # F = inf at every point

    with pytest.raises(FloatingPointError, match="NaN or Inf: F along the path"):
        pa.integrated_decision_gradients(Blows(), x, target=1, n_steps=8)

    class Constant(torch.nn.Module):
        def forward(self, x):
            return torch.ones(x.shape[0], 3)  # F does not depend on x: attributions are 0

    assert torch.equal(pa.integrated_gradients(Constant(), x, target=1, n_steps=4), torch.zeros_like(x))


def test_settings_and_engine_changes_are_honoured(taken):
    """The latency path reads the engine's settings per call: chunk caps, autocast, triton."""
    model = MLP(d_in=12, classes=5).eval()
    x = torch.randn(2, 12)
    ex = pa.Explainer(model, "ig", n_steps=8)
    ex.attribute(x, target=1)
    assert len(taken) == 1
    ex.engine.internal_batch_size = 8  # 16 rows no longer fit one chunk
    ex.attribute(x, target=1)
    ex.engine.internal_batch_size = None
    ex.engine.autocast = torch.bfloat16
    ex.attribute(x, target=1)
    assert len(taken) == 1
    with pytest.raises(TypeError, match="n_steps must be an integer"):
        pa.integrated_gradients(model, x, target=1, n_steps=2.5)
    with pytest.raises(ValueError, match="output must be one of"):
        pa.integrated_gradients(model, x, target=1, output="probability")
    with pytest.raises(ValueError, match="backend must be"):
        pa.integrated_decision_gradients(model, x, target=1, backend="cuda")


@pytest.mark.parametrize("method", ["ig", "idg"])
def test_non_contiguous_and_channels_last_inputs(method, taken, seed):
    model = randomize_bn(BNCNN(classes=4)).double()
    base = torch.randn(3, 9, 7, 3, dtype=torch.float64)
    layouts = {"permuted": base.permute(0, 3, 1, 2),  # (3, 3, 9, 7), not contiguous
               "channels_last": base.permute(0, 3, 1, 2).contiguous().to(memory_format=torch.channels_last)}
    fn = pa.integrated_gradients if method == "ig" else pa.integrated_decision_gradients
    for name, x in layouts.items():
        n = len(taken)
        got = fn(model, x, target=torch.tensor([0, 3, 1]), n_steps=10)
        assert len(taken) == n + 1, name
        want = _general(model, method, x.contiguous(), torch.tensor([0, 3, 1]), n_steps=10)
        assert got.shape == x.shape and torch.equal(got, want), name
