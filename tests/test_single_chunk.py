"""The one-chunk CPU path of the engine (all path rows in one model call, fewest ops)
against the general chunk loop, and the per-call caches that keep small calls cheap.

The chunk loop is forced by turning the engine's profiling ranges on (the one-chunk
path is skipped then, whatever the chunk size), so both paths see the same inputs.
"""
import pytest
import torch

import pathattr as pa
from conftest import assert_close
from pathattr.engine import profiling as _profiling
from pathattr.engine.checks import model_device_ref
from pathattr.reference import idg as ref_idg
from pathattr.reference import ig as ref_ig
from testmodels import MLP, BNCNN, randomize_bn
from pathattr.engine.core import PathEngine


@pytest.fixture
def one_chunk(monkeypatch):
    """Counts the one-chunk gradient passes (so a test knows which branch ran)."""
    calls = []
    real = PathEngine._integrate_one_chunk
    monkeypatch.setattr(PathEngine, "_integrate_one_chunk", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    return calls


def _loop_engine(explainer):
    """The same Explainer's engine forced onto the chunk loop (profiling ranges on)."""
    explainer.engine._ranges = True
    return explainer


def _models():
    return {"mlp": (MLP(d_in=12, classes=5).eval(), (12,)),
            "bncnn": (randomize_bn(BNCNN(classes=4)), (3, 9, 7))}


@pytest.mark.parametrize("name", ["mlp", "bncnn"])
@pytest.mark.parametrize("method", ["ig", "idg"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("target_kind", ["same", "mixed", "none"])
@pytest.mark.parametrize("baseline_kind", ["zero", "per_input", "shared"])
def test_single_chunk_equals_chunk_loop(name, method, dtype, target_kind, baseline_kind, seed):
    model, shape = _models()[name]
    model = model.to(dtype)
    x = torch.randn((3,) + shape, dtype=dtype)
    base = {"zero": None, "per_input": 0.3 * torch.randn_like(x), "shared": 0.2 * torch.randn((1,) + shape, dtype=dtype)}[baseline_kind]
    target = {"same": 2, "mixed": torch.tensor([0, 3, 1]), "none": None}[target_kind]
    fast = pa.Explainer(model, method, n_steps=9)
    slow = _loop_engine(pa.Explainer(model, method, n_steps=9))
    a = fast.attribute(x, base, target, return_details=True, return_convergence_delta=True)
    b = slow.attribute(x, base, target, return_details=True, return_convergence_delta=True)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-6)
    assert_close(a.attributions, b.attributions, what="attributions", **tol)
    assert_close(a.path_values, b.path_values, what="F along the path", **tol)
    assert_close(a.delta, b.delta, what="delta", **tol)
    if method == "idg":
        assert_close(a.importance, b.importance, what="importance factors", **tol)
        assert_close(a.probe_curve, b.probe_curve, what="probe curve", **tol)
    assert torch.equal(a.target, b.target)


@pytest.mark.parametrize("output", ["logit", "softmax", "log_softmax"])
def test_single_chunk_matches_references_with_one_shared_target(output, seed):
    """Every input with the same class takes the column-select path: still the papers' sums."""
    model = MLP(d_in=12, classes=5).double().eval()
    x = torch.randn(4, 12, dtype=torch.float64)
    base = torch.zeros_like(x)
    ig = pa.integrated_gradients(model, x, target=3, n_steps=16, output=output)
    assert_close(ig, ref_ig.integrated_gradients(model, x, base, [3] * 4, n_steps=16, output=output),
                 rtol=1e-9, atol=1e-13, what="IG " + output)
    idg = pa.integrated_decision_gradients(model, x, target=torch.tensor([3, 3, 3, 3]), n_steps=16, output=output)
    assert_close(idg, ref_idg.integrated_decision_gradients(model, x, base, [3] * 4, n_steps=16, output=output),
                 rtol=1e-9, atol=1e-13, what="IDG " + output)


def test_single_chunk_callable_output_gets_row_targets(seed):
    model = MLP(d_in=12, classes=5).double().eval()
    x = torch.randn(3, 12, dtype=torch.float64)
    seen = []

    def margin(out, t):
        seen.append(t.shape)
        return out.gather(1, t.view(-1, 1)).view(-1) - out.mean(1)

    got = pa.integrated_gradients(model, x, target=2, n_steps=8, output=margin)
    want = _loop_engine(pa.Explainer(model, "ig", n_steps=8, output=margin)).attribute(x, target=2)
    assert_close(got, want, rtol=1e-10, atol=1e-12, what="callable output")
    assert all(s == (24,) for s in seen), seen  # (rows,), never the (rows, 1) gather column


def test_target_out_of_range_is_caught_on_the_single_chunk_path():
    model = MLP(d_in=12, classes=5).eval()
    with pytest.raises(ValueError, match=r"target must lie in \[0, 5\)"):
        pa.integrated_gradients(model, torch.randn(2, 12), target=5, n_steps=4)
    with pytest.raises(ValueError, match=r"target must lie in \[0, 5\)"):
        pa.integrated_decision_gradients(model, torch.randn(2, 12), target=[1, 7], n_steps=8)


def test_nan_gradient_is_caught_on_the_single_chunk_path():
    class NaNGrad(torch.nn.Module):
        def forward(self, x):
            return torch.sqrt(x - x.detach()).sum(1, keepdim=True).expand(-1, 2)  # d sqrt(0) = inf

    with pytest.raises(FloatingPointError, match="not finite"):
        pa.integrated_gradients(NaNGrad(), torch.rand(2, 5), target=0, n_steps=4)


def test_explainer_reuses_buffers_and_default_baseline(seed):
    model = MLP(d_in=12, classes=5).eval()
    ex = pa.Explainer(model, "ig", n_steps=8, internal_batch_size=4)  # the chunk loop: its buffer is reused
    x = torch.randn(2, 12)
    first, _ = ex.attribute(x, target=1, return_convergence_delta=True)
    buf, zeros = ex.engine._buffer, ex.engine._zeros[1]
    assert buf is not None and buf.shape == (4, 12)
    second, _ = ex.attribute(x * 2, target=1, return_convergence_delta=True)
    assert ex.engine._buffer is buf and ex.engine._zeros[1] is zeros
    assert not torch.equal(first, second) and torch.count_nonzero(zeros) == 0
    third = ex.attribute(x * 3, target=1)  # no delta: the same chunk loop, the same numbers
    assert torch.equal(third, ex.attribute(x * 3, target=1, return_convergence_delta=True)[0])
    assert ex.engine._buffer is buf
    z = ex.engine._zeros_like_input(torch.randn(2, 3, 4, dtype=torch.float64))  # another shape: new zeros
    assert z.shape == (1, 3, 4) and z.dtype == torch.float64 and torch.count_nonzero(z) == 0


def test_remembered_device_reference_follows_replaced_parameters():
    """The model's first parameter is remembered with where it was found and looked up
    again once it is gone (a parameter or a whole submodule replaced), so a long-lived
    Explainer still reports a model moved piece by piece to another device."""
    model = MLP(d_in=12, classes=5).eval()
    ex = pa.Explainer(model, "ig", n_steps=4)
    ex.attribute(torch.randn(2, 12), target=0)
    assert model_device_ref(model) is next(model.parameters())
    first = model.net[1]
    first.weight = torch.nn.Parameter(first.weight.detach().to("meta"))  # one parameter replaced
    assert model_device_ref(model).device.type == "meta"
    with pytest.raises(ValueError, match="model is on meta"):
        ex.attribute(torch.randn(2, 12), target=0)
    model.net[1] = torch.nn.Linear(12, 16)  # a whole submodule replaced: back on the CPU
    assert model_device_ref(model) is model.net[1].weight
    ex.attribute(torch.randn(2, 12), target=0)


def test_set_profiling_switches_new_engines():
    model = MLP(d_in=12, classes=5).eval()
    before = _profiling.enabled()
    try:
        _profiling.set_profiling(True)
        assert pa.Explainer(model, "ig").engine._ranges is True
        _profiling.set_profiling(False)
        assert pa.Explainer(model, "ig").engine._ranges is False
        with pytest.raises(TypeError, match="on must be True or False"):
            _profiling.set_profiling("yes")
    finally:
        _profiling.set_profiling(before)


def test_uniform_schedule_is_shared_and_its_device_copies_are_cached():
    s1 = pa.engine.schedule.uniform("gausslegendre", 7, 3)
    s2 = pa.engine.schedule.uniform("gausslegendre", 7, 3)
    assert s1 is s2 and s1.alphas.dtype == torch.float64 and s1.alphas.shape == (3, 7)
    a1, w1 = s1.on(torch.device("cpu"), torch.float32, torch.float32)
    a2, _ = s2.on(torch.device("cpu"), torch.float32, torch.float32)
    assert a1 is a2 and a1.dtype == torch.float32 and tuple(a1.shape) == (3, 7)
    assert_close(a1.double(), s1.alphas, rtol=1e-7, atol=1e-8, what="converted alphas")
    assert_close(w1.double(), s1.weights, rtol=1e-7, atol=1e-8, what="converted weights")
    p = pa.engine.schedule.probe_grid(4, 2, torch.device("cpu"), torch.float64)
    assert torch.equal(p, torch.tensor([[0.0, 0.25, 0.5, 0.75, 1.0]] * 2, dtype=torch.float64))


@pytest.mark.parametrize("method", ["ig", "idg"])
def test_non_contiguous_and_channels_last_inputs(method, one_chunk, seed):
    model = randomize_bn(BNCNN(classes=4)).double()
    base = torch.randn(3, 9, 7, 3, dtype=torch.float64)
    layouts = {"permuted": base.permute(0, 3, 1, 2),  # (3, 3, 9, 7), not contiguous
               "channels_last": base.permute(0, 3, 1, 2).contiguous().to(memory_format=torch.channels_last)}
    fn = pa.integrated_gradients if method == "ig" else pa.integrated_decision_gradients
    for name, x in layouts.items():
        n = len(one_chunk)
        got = fn(model, x, target=torch.tensor([0, 3, 1]), n_steps=10)
        assert len(one_chunk) == n + 1, name
        want = _loop_engine(pa.Explainer(model, method, n_steps=10)).attribute(x.contiguous(), target=torch.tensor([0, 3, 1]))
        assert got.shape == x.shape
        assert_close(got, want, rtol=1e-10, atol=1e-12, what=name)


def test_errors_on_the_one_chunk_branch_read_as_on_the_chunk_loop(one_chunk):
    model = MLP(d_in=12, classes=5).eval()
    x = torch.randn(2, 12)
    with pytest.raises(ValueError, match=r"target must lie in \[0, 5\) for a model with 5 outputs; got 5"):
        pa.integrated_gradients(model, x, target=torch.tensor([1, 5]), n_steps=4)

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
    assert one_chunk  # the branch under test ran


def test_grad_mode_and_inputs_needing_grad_change_nothing(seed):
    model = MLP(d_in=12, classes=5).eval()
    x = torch.randn(2, 12)
    want = pa.integrated_gradients(model, x, target=1, n_steps=8)
    with torch.inference_mode():
        assert torch.equal(pa.integrated_gradients(model, x.clone(), target=1, n_steps=8), want)
    with torch.no_grad():
        assert torch.equal(pa.integrated_gradients(model, x, target=1, n_steps=8), want)
    a = pa.integrated_gradients(model, x.clone().requires_grad_(), target=1, n_steps=8)
    assert not a.requires_grad and torch.equal(a, want)


def test_the_branch_is_chosen_per_call_from_the_engine_settings(one_chunk, seed):
    """Chunk caps and autocast changed on a live engine are honoured on the next call."""
    model = MLP(d_in=12, classes=5).eval()
    x = torch.randn(2, 12)
    ex = pa.Explainer(model, "ig", n_steps=8)
    want = ex.attribute(x, target=1)
    assert len(one_chunk) == 1
    ex.engine.internal_batch_size = 8  # 16 rows no longer fit one chunk
    assert_close(ex.attribute(x, target=1), want, rtol=1e-5, atol=1e-7, what="chunk loop")
    assert len(one_chunk) == 1
    ex.engine.internal_batch_size = None
    ex.engine.autocast = torch.bfloat16
    ex.attribute(x, target=1)
    assert len(one_chunk) == 2 and ex.engine.runner.autocast is torch.bfloat16
