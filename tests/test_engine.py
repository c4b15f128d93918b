"""The engine's plumbing: backends, baselines, targets, outputs, forward args, dtypes."""
import copy

import pytest
import torch

import pathattr as pa
from conftest import assert_close
from pathattr.reference import idg as ref_idg
from pathattr.reference import ig as ref_ig
from testmodels import MLP, BNCNN, GatedMLP, randomize_bn


@pytest.mark.interpreter
def test_triton_backend_equals_torch_backend(seed):
    """The whole loop with the Triton kernels (interpreter on CPU) equals the torch fallback."""
    model = randomize_bn(BNCNN(classes=4)).double()
    x = torch.randn(3, 3, 9, 7, dtype=torch.float64)
    for fn in (pa.integrated_gradients, pa.integrated_decision_gradients):
        a = fn(model, x, target=1, n_steps=10, internal_batch_size=8, backend="torch")
        b = fn(model, x, target=1, n_steps=10, internal_batch_size=8, backend="triton")
        assert_close(b, a, rtol=1e-12, atol=1e-14, what=f"{fn.__name__} triton vs torch")


@pytest.mark.parametrize("output", ["softmax", "log_softmax"])
def test_outputs_match_reference(output, seed):
    model = MLP(d_in=12, classes=5).double().eval()
    x = torch.randn(3, 12, dtype=torch.float64)
    base = torch.zeros_like(x)
    t = [0, 3, 4]
    ig = pa.integrated_gradients(model, x, target=t, n_steps=12, output=output)
    assert_close(ig, ref_ig.integrated_gradients(model, x, base, t, n_steps=12, output=output),
                 rtol=1e-9, atol=1e-13, what="IG " + output)
    idg = pa.integrated_decision_gradients(model, x, target=t, n_steps=12, output=output)
    assert_close(idg, ref_idg.integrated_decision_gradients(model, x, base, t, n_steps=12, output=output),
                 rtol=1e-9, atol=1e-13, what="IDG " + output)


def test_callable_output_and_target_none(seed):
    model = MLP(d_in=12, classes=5).double().eval()
    x = torch.randn(3, 12, dtype=torch.float64)
    margin = lambda out, t: out.gather(1, t.view(-1, 1)).view(-1) - out.mean(1)  # noqa: E731
    res = pa.integrated_gradients(model, x, output=margin, return_details=True, return_convergence_delta=True)
    assert torch.equal(res.target, model(x).argmax(1))
    with torch.no_grad():
        gap = margin(model(x), res.target) - margin(model(torch.zeros_like(x)), res.target)
    assert_close(res.attributions.sum(1) - gap, res.delta, rtol=1e-9, atol=1e-12, what="delta")


@pytest.mark.parametrize("form", ["scalar", "unbatched", "one", "per_input", "broadcast_channel"])
def test_baseline_forms(form, seed):
    model = randomize_bn(BNCNN(classes=4)).double()
    x = torch.randn(3, 3, 9, 7, dtype=torch.float64)
    full = {
        "scalar": (0.3, torch.full_like(x, 0.3)),
        "unbatched": (x[0] * 0.5, (x[0] * 0.5).expand_as(x)),
        "one": (x[:1] * -0.2, (x[:1] * -0.2).expand_as(x)),
        "per_input": (x.flip(0) * 0.1, x.flip(0) * 0.1),
        "broadcast_channel": (torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64).view(3, 1, 1),
                              torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64).view(1, 3, 1, 1).expand_as(x)),
    }[form]
    got = pa.integrated_gradients(model, x, baselines=full[0], target=2, n_steps=8)
    want = pa.integrated_gradients(model, x, baselines=full[1].contiguous(), target=2, n_steps=8)
    assert_close(got, want, rtol=1e-12, atol=1e-14, what=f"baseline {form}")


@pytest.mark.parametrize("target", [2, [2, 2, 2], torch.tensor([2, 2, 2]), torch.tensor(2), (2, 2, 2)])
def test_target_forms(target, seed):
    model = MLP(d_in=12, classes=5).double().eval()
    x = torch.randn(3, 12, dtype=torch.float64)
    want = ref_ig.integrated_gradients(model, x, torch.zeros_like(x), [2, 2, 2], n_steps=6)
    assert_close(pa.integrated_gradients(model, x, target=target, n_steps=6), want, rtol=1e-9, atol=1e-13,
                 what="target form")


def test_forward_args_with_shared_baseline_are_per_input(seed):
    """F(x') depends on each input's forward args, so the delta must use them."""
    model = GatedMLP().double().eval()
    x = torch.randn(4, 8, dtype=torch.float64)
    gate = torch.rand(4, 16, dtype=torch.float64)
    attr, delta = pa.integrated_gradients(model, x, target=1, additional_forward_args=(gate, 2.0), n_steps=64,
                                          return_convergence_delta=True)
    with torch.no_grad():
        gap = model(x, gate, 2.0)[:, 1] - model(torch.zeros_like(x), gate, 2.0)[:, 1]
    assert_close(attr.sum(1) - gap, delta, rtol=1e-9, atol=1e-12, what="delta with forward args")
    assert delta.abs().max() < 1e-3


def test_float32_model_accumulates_in_float32_and_returns_input_dtype(seed):
    model = MLP(d_in=12, classes=5).eval()
    x = torch.randn(3, 12)
    res = pa.integrated_decision_gradients(model, x, target=0, return_details=True)
    assert res.attributions.dtype == torch.float32 and res.delta.dtype == torch.float32
    ref = pa.integrated_decision_gradients(model.double(), x.double(), target=0)
    assert_close(res.attributions, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item(), what="fp32 vs fp64")


def test_float64_accumulator_for_float32_model(seed):
    model = MLP(d_in=12, classes=5).eval()
    x = torch.randn(3, 12)
    res = pa.integrated_gradients(model, x, target=0, accumulate_dtype=torch.float64, return_details=True)
    assert res.attributions.dtype == torch.float32 and res.delta.dtype == torch.float64


def test_autocast_bfloat16_on_cpu_is_close(seed):
    """The model runs in bf16 under autocast; accumulation stays fp32."""
    model = MLP(d_in=12, hidden=32, classes=5).eval()
    x = torch.randn(4, 12)
    exact = pa.integrated_gradients(model, x, target=1)
    low = pa.integrated_gradients(model, x, target=1, autocast=torch.bfloat16)
    assert low.dtype == torch.float32
    rel = (low - exact).norm() / exact.norm()
    assert rel < 0.05, rel


def test_model_that_ignores_its_input_gives_zeros():
    model = torch.nn.Linear(4, 3)
    f = lambda x: model(torch.ones_like(x))  # noqa: E731
    attr = pa.integrated_gradients(f, torch.randn(2, 4), target=0)
    assert torch.equal(attr, torch.zeros(2, 4))


def test_explainer_validates_engine_settings():
    model = MLP(d_in=12, classes=5).eval()
    with pytest.raises(ValueError, match="autocast"):
        pa.Explainer(model, autocast=torch.float64)
    with pytest.raises(ValueError, match="backend"):
        pa.Explainer(model, backend="cuda")
    with pytest.raises(ValueError, match="accumulate_dtype"):
        pa.Explainer(model, accumulate_dtype=torch.float16)
    with pytest.raises(ValueError, match="probe_batch_size"):
        pa.Explainer(model, probe_batch_size=0)
    with pytest.raises(TypeError, match="model"):
        pa.Explainer("not a model")


@pytest.mark.cuda
@pytest.mark.parametrize("autocast", [None, torch.bfloat16])
def test_cuda_matches_cpu(autocast, seed):
    """On a GPU the whole loop (Triton kernels, CUDA model) agrees with the CPU fp64 result."""
    model = randomize_bn(BNCNN(classes=4)).double()
    x = torch.randn(5, 3, 9, 7, dtype=torch.float64)
    gpu_model = copy.deepcopy(model).float().cuda()
    # fp32 is compared without TF32 (torch's cuDNN default on Hopper rounds conv inputs to
    # 10 mantissa bits, ~1e-3 relative): the test is about the loop, not the model's maths.
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for fn in (pa.integrated_gradients, pa.integrated_decision_gradients):
            want = fn(model, x, target=1, n_steps=32)
            got = fn(gpu_model, x.float().cuda(), target=1, n_steps=32, autocast=autocast).cpu().double()
            rel = ((got - want).norm() / want.norm()).item()
            assert rel < (3e-2 if autocast else 1e-5), (fn.__name__, rel)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


def test_explainer_is_correct_under_concurrent_calls(seed):
    """Threads share one Explainer (and its buffer): every result equals the serial one."""
    import threading

    model = MLP(d_in=12, classes=5).double().eval()
    ex = pa.Explainer(model, method="idg", n_steps=16, internal_batch_size=5)
    xs = [torch.randn(3, 12, dtype=torch.float64) for _ in range(6)]
    want = [ex.attribute(x, target=1) for x in xs]
    got = [None] * len(xs)

    def work(i):
        for _ in range(3):
            got[i] = ex.attribute(xs[i], target=1)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        assert torch.equal(g, w)


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_gradients_at_points_equal_autograd(chunk, seed):
    """engine.gradients: per-row targets and per-input forward args, any chunking."""
    torch.manual_seed(seed)
    model = GatedMLP().double()
    x = torch.randn(4, 8, dtype=torch.float64)
    gate = torch.rand(4, 16, dtype=torch.float64)
    engine = pa.Explainer(model, "ig", internal_batch_size=chunk).engine
    batch = engine.prepare(x, target=[0, 1, 2, 0], additional_forward_args=(gate,))
    examples = torch.tensor([2, 0, 0, 3, 1, 2, 3])
    points = torch.randn(7, 8, dtype=torch.float64)
    targets = torch.tensor([2, 1, 0, 2, 1, 1, 0])
    for tg in (None, targets):
        values, grads = engine.gradients(batch, points, examples, targets=tg)
        rows_t = batch.target[examples] if tg is None else tg
        p = points.clone().requires_grad_(True)
        f = model(p, gate[examples]).gather(1, rows_t.view(-1, 1)).squeeze(1)
        (g,) = torch.autograd.grad(f.sum(), p)
        assert_close(values, f.detach(), rtol=1e-12, atol=1e-12)
        assert_close(grads, g, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="examples"):
        engine.gradients(batch, points, examples[:3])


class _OOMAbove(torch.nn.Module):
    """Raises CUDA's out-of-memory error for chunks over `limit` rows, like a small device."""

    def __init__(self, model, limit):
        super().__init__()
        self.model, self.limit = model, limit

    def forward(self, x):
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError(f"fake: {x.shape[0]} rows")
        return self.model(x)


@pytest.mark.parametrize("method", ["ig", "idg"])
def test_out_of_memory_backs_off_to_smaller_chunks(method, seed):
    torch.manual_seed(seed)
    model = MLP().double()
    x = torch.randn(3, 12, dtype=torch.float64)
    want = pa.Explainer(model, method, n_steps=16).attribute(x, target=1)
    ex = pa.Explainer(_OOMAbove(model, 7), method, n_steps=16, internal_batch_size=40)
    with pytest.warns(RuntimeWarning, match="out of memory"):
        got = ex.attribute(x, target=1)
    assert_close(got, want, 1e-12, 1e-12)
    assert ex.engine.rows_per_chunk(ex.engine.prepare(x)) <= 7  # the cap is remembered
    with pytest.raises(torch.OutOfMemoryError, match="one path point"):
        pa.Explainer(_OOMAbove(model, 0), method, n_steps=4).attribute(x, target=1)


@pytest.mark.parametrize("method, settings", [("ig", {}), ("idg", {"schedule": "uniform"}), ("idg", {}),
                                              ("left_ig", {})])
def test_details_never_alias_the_schedulers_caches(method, settings, seed):
    """Writing into a result's alphas, weights or probe grid changes no later call
    (they were the scheduler's cached tensors: every later IG call returned zeros)."""
    torch.manual_seed(seed)
    model = MLP().double()
    x = torch.randn(2, 12, dtype=torch.float64)
    ex = pa.Explainer(model, method, n_steps=8, **settings)
    first = ex.attribute(x, target=1, return_details=True)
    for name in ("alphas", "weights", "probe_alphas"):
        t = getattr(first, name, None)
        if t is not None:
            t.zero_()
    again = pa.Explainer(model, method, n_steps=8, **settings).attribute(x, target=1, return_details=True)
    fresh = pa.Explainer(model, method, n_steps=8, **settings).attribute(x, target=1)
    assert torch.count_nonzero(again.weights) > 0
    assert_close(again.attributions, first.attributions, rtol=1e-12, atol=1e-14, what="after writing into details")
    assert_close(fresh, first.attributions, rtol=1e-12, atol=1e-14, what="plain call after writing into details")


def test_first_call_imports_nothing_heavy():
    """The first IG/IDG call of a process imported sympy (autograd checks a grad_outputs
    tensor with torch.fx's symbolic shapes): ~400 ms once. The backward is seeded
    without grad_outputs now, so neither it nor torch.fx's shape module is imported."""
    import subprocess
    import sys

    code = ("import sys, torch, pathattr as pa\n"
            "from pathattr.data.digits import load_digits_data, load_digits_model\n"
            "m = load_digits_model(); x = load_digits_data('test')[0][:2].clone()\n"
            "pa.integrated_gradients(m, x, target=1); pa.integrated_decision_gradients(m, x, target=[1, 2])\n"
            "pa.integrated_gradients(m, x, target=1, internal_batch_size=16)\n"
            "print(sorted(k for k in ('sympy', 'torch.fx.experimental.symbolic_shapes') if k in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


class _NaNWhereFirstFeatureIsLarge(torch.nn.Module):
    """Logits of a linear map, NaN for any point whose first feature exceeds 1."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(6, 3).double()

    def forward(self, x):
        return self.lin(x) * torch.where(x[:, :1] > 1, float("nan"), 1.0)


def test_nan_errors_name_the_users_inputs_not_internal_pair_rows(seed):
    """Expected Gradients runs B inputs x J references as B*J pair rows: a NaN on input 2's
    paths said "inputs [8, 9, 10, 11]" for a batch of 3; it names input 2."""
    torch.manual_seed(seed)
    x = torch.rand(3, 6, dtype=torch.float64)
    x[2, 0] = 1000.0  # every path of input 2 (but no reference) has a first feature > 1
    refs = torch.rand(10, 6, dtype=torch.float64)
    with pytest.raises(FloatingPointError, match=r"for inputs \[2\]"):
        pa.expected_gradients(_NaNWhereFirstFeatureIsLarge(), x, refs, target=1, n_references=4)
    with pytest.raises(FloatingPointError, match=r"for inputs \[2\]"):
        pa.Explainer(_NaNWhereFirstFeatureIsLarge(), "ig", n_steps=8).attribute(x, target=1)


def test_shape_errors_speak_of_the_users_batch():
    """A (rows, 2, 3) output said "for a batch of 100" for 4 inputs (the path rows)."""

    class Cube(torch.nn.Module):
        def forward(self, x):
            return x[:, :6].reshape(-1, 2, 3)

    x = torch.rand(4, 6)
    for fn in (pa.integrated_gradients, pa.integrated_decision_gradients):
        with pytest.raises(ValueError, match=r"for your batch of 4 inputs") as err:
            fn(Cube(), x, target=0, n_steps=25)
        assert "batch of 100" not in str(err.value) and "expected (batch, classes)" in str(err.value)
    with pytest.raises(ValueError, match=r"for your batch of 4 inputs"):
        pa.integrated_gradients(Cube(), x, target=0, n_steps=25, internal_batch_size=7)  # the chunk loop
