"""Chunk sizes by measurement (engine/chunk_tuning.py through engine/runner.py).

Every test runs on a fake clock that the fake model advances by a chosen cost per
chunk, so the tuner's choices are deterministic and nothing here is a timed test.
"""
import math
import warnings

import pytest
import torch

import pathattr as pa
from conftest import assert_close
from pathattr.engine import chunk_tuning
from pathattr.engine.runner import ModelRunner
from pathattr.reference import ig as ref_ig
from testmodels import MLP

FEATURES = 2 * 64 * 64  # the CPU budget's chunk for these inputs: 2**17 // 8192 = 16 rows
BASE = 16


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def per_row_optimum(opt):
    """Seconds for a chunk of n rows whose time per row is smallest at n = opt (a
    parabola in log2 n: each halving or doubling away from opt costs 25 % more per row)."""
    return lambda n: n * 1e-4 * (1 + 0.25 * math.log2(n / opt) ** 2)


class Costed(torch.nn.Module):
    """The model `inner`, taking cost(rows) seconds of the fake clock per call; records
    the rows of every call (with whether grad mode was on) and raises out of memory
    above `limit` rows, like a small device."""

    def __init__(self, inner, clock, cost, limit=None):
        super().__init__()
        self.inner, self.clock, self.cost, self.limit = inner, clock, cost, limit
        self.calls = []

    def forward(self, x):
        n = x.shape[0]
        self.calls.append((n, torch.is_grad_enabled()))
        if self.limit is not None and n > self.limit:
            raise torch.OutOfMemoryError(f"fake: {n} rows")
        self.clock.now += self.cost(n)
        return self.inner(x)


@pytest.fixture
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(chunk_tuning, "clock", c)
    return c


def _pass(runner, total, shape=(2, 64, 64), dtype=torch.float32, forward_only=False):
    """One chunk loop over `total` rows of zeros of `shape`, through the runner; the
    sizes of its chunks."""
    sizes = []

    def step(s, n):
        return runner.call(torch.zeros((n,) + shape, dtype=dtype))

    runner.chunks(total, math.prod(shape), "cpu", step, lambda s, n, out: sizes.append(n), forward_only=forward_only)
    return sizes


def _until_chosen(runner, total, passes=200, **kw):
    for _ in range(passes):
        _pass(runner, total, **kw)
        entry = runner.tuning_table().latest_entry((None, FEATURES, "cpu", kw.get("forward_only", False)))
        if entry is not None and entry.best is not None:
            return entry
    raise AssertionError(f"no chunk size chosen after {passes} passes")


@pytest.mark.parametrize("opt", [BASE // 4, BASE // 2, BASE, 2 * BASE, 8 * BASE])
def test_picks_the_fastest_measured_size(opt, clock):
    """Whichever ladder size is fastest per row on the (fake) clock is the one chosen,
    and later passes run in chunks of it."""
    model = Costed(lambda x: x.flatten(1)[:, :2], clock, per_row_optimum(opt))
    runner = ModelRunner(model)
    entry = _until_chosen(runner, 1024)
    assert entry.sizes == [4, 8, 16, 32, 64, 128]
    assert entry.best == opt
    assert set(_pass(runner, 1024)) == {opt}
    assert runner.rows(FEATURES, "cpu", total=1024) == opt


def test_noise_below_the_margin_keeps_the_budget(clock):
    """A size only 1 % faster per row does not replace the budget's (MARGIN: noise must not move a choice)."""
    model = Costed(lambda x: x.flatten(1)[:, :2], clock, lambda n: n * (0.99 if n == 2 * BASE else 1.0))
    entry = _until_chosen(ModelRunner(model), 1024)
    assert entry.best == BASE


def test_memory_is_keyed_by_shape_dtype_and_pass(clock):
    """Inputs with as many elements but another shape, another dtype, or a forward-only
    pass get entries of their own; a new runner of the same model (the functional API
    builds one per call) finds the choices made; another model does not."""
    model = Costed(lambda x: x.flatten(1)[:, :2], clock, per_row_optimum(4 * BASE))
    entry = _until_chosen(ModelRunner(model), 1024)
    assert entry.best == 4 * BASE
    other = ModelRunner(model)  # another runner, same model
    assert other.rows(FEATURES, "cpu", total=1024) == 4 * BASE
    assert ModelRunner(Costed(model.inner, clock, model.cost)).rows(FEATURES, "cpu", total=1024) == BASE

    model.cost = per_row_optimum(BASE // 2)  # the same model now costs otherwise per shape
    flat = _until_chosen(other, 1024, shape=(FEATURES,))
    assert flat.best == BASE // 2 and flat is not entry
    double = _until_chosen(other, 1024, dtype=torch.float64)
    assert double.best == BASE // 2 and double is not entry and double is not flat
    fwd = _until_chosen(other, 2048, forward_only=True)
    assert fwd.base == 2 * BASE and fwd.best == BASE // 2  # forward-only passes start from twice the rows

    table = other.tuning_table()
    metas = {full[1] for full in table.entries}
    assert metas == {((2, 64, 64), torch.float32, "cpu"), ((FEATURES,), torch.float32, "cpu"),
                     ((2, 64, 64), torch.float64, "cpu")}
    assert entry.best == 4 * BASE  # untouched by the others
    assert table.entries[((None, FEATURES, "cpu", False), ((2, 64, 64), torch.float32, "cpu"))] is entry


def test_internal_batch_size_is_never_overridden(clock):
    """A size the caller gives wins over any measurement: every chunk has that size
    (the tail aside) and nothing is measured."""
    model = Costed(lambda x: x.flatten(1)[:, :2], clock, per_row_optimum(8 * BASE))
    runner = ModelRunner(model, internal_batch_size=20)
    for _ in range(6):
        assert set(_pass(runner, 1024)) == {20, 1024 % 20}
        assert set(_pass(runner, 1024, forward_only=True)) == {40, 1024 % 40}  # twice the gradient chunk
    runner = ModelRunner(model, probe_batch_size=24)
    for _ in range(6):
        assert set(_pass(runner, 1024, forward_only=True)) == {24, 1024 % 24}
    assert not runner.tuning_table().entries


def _big_mlp(seed):
    torch.manual_seed(seed)
    return MLP(d_in=2048, hidden=8, classes=3).double().eval()  # budget: 64 rows per chunk


@pytest.mark.parametrize("opt", [16, 128])
def test_results_do_not_depend_on_the_chunking(opt, clock, seed):
    """IG over many calls, while the tuner tries sizes from 1/4x to 2x the budget's and
    after it has chosen, equals the reference loop (fp64) call after call."""
    inner = _big_mlp(seed)
    model = Costed(inner, clock, per_row_optimum(opt))
    x = torch.randn(4, 2048, dtype=torch.float64)
    want = ref_ig.integrated_gradients(inner, x, torch.zeros_like(x), [0, 1, 2, 0], n_steps=32)
    ex = pa.Explainer(model, "ig", n_steps=32)
    for _ in range(40):
        assert_close(ex.attribute(x, target=torch.tensor([0, 1, 2, 0])), want, rtol=1e-10, atol=1e-12,
                     what="IG while the chunk size is tuned")
    sizes = {n for n, grad in model.calls if grad}
    assert {16, 32, 64} <= sizes or {64, 128} <= sizes  # several chunkings were really used
    entry = ex.engine.runner.tuning_table().latest_entry((None, 2048, "cpu", False))
    assert entry.best == opt


def test_out_of_memory_while_trying_a_larger_size_is_quiet(clock, seed):
    """A size above the budget's that does not fit is dropped without a warning or a
    cap on the runner; the results are right. Below the budget the usual back-off
    (warning, cap remembered) still applies."""
    inner = _big_mlp(seed)
    model = Costed(inner, clock, per_row_optimum(512), limit=100)  # 128 rows: out of memory
    x = torch.randn(4, 2048, dtype=torch.float64)
    want = ref_ig.integrated_gradients(inner, x, torch.zeros_like(x), [1] * 4, n_steps=32)
    ex = pa.Explainer(model, "ig", n_steps=32)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*out of memory")  # a back-off warning here fails the test
        for _ in range(15):
            assert_close(ex.attribute(x, target=1), want, rtol=1e-10, atol=1e-12, what="IG after a quiet back-off")
    assert any(n == 128 for n, _ in model.calls)  # it was tried
    assert ex.engine.runner.oom_rows == 0
    entry = ex.engine.runner.tuning_table().latest_entry((None, 2048, "cpu", False))
    assert entry.sizes[-1] < 128 and entry.best == 64

    small = Costed(inner, clock, per_row_optimum(512), limit=40)
    ex = pa.Explainer(small, "ig", n_steps=32)
    with pytest.warns(RuntimeWarning, match="out of memory"):
        got = ex.attribute(x, target=1)
    assert_close(got, want, rtol=1e-10, atol=1e-12, what="IG after the usual back-off")
    assert ex.engine.rows_per_chunk(ex.engine.prepare(x), total=128) <= 40  # the cap is remembered
    for _ in range(5):
        assert_close(ex.attribute(x, target=1), want, rtol=1e-10, atol=1e-12, what="IG under the cap")
    assert max(n for n, _ in small.calls[-20:]) <= 40


def test_a_choice_covering_the_pass_takes_the_one_chunk_branch(clock, seed):
    """Once one chunk of every row is the fastest, the engine's one-chunk branch runs
    (a single model call per pass), as at batch 1 on the budget's size."""
    inner = _big_mlp(seed)
    model = Costed(inner, clock, per_row_optimum(1024))
    x = torch.randn(4, 2048, dtype=torch.float64)
    ex = pa.Explainer(model, "ig", n_steps=32)
    for _ in range(20):
        ex.attribute(x, target=1)
    eng = ex.engine
    assert eng.rows_per_chunk(eng.prepare(x), total=128) == 128
    assert eng._one_chunk(eng.prepare(x), 128)
    model.calls.clear()
    ex.attribute(x, target=1)
    assert [n for n, grad in model.calls if grad] == [128]


def test_models_without_weak_references_keep_their_table_per_runner(clock):
    """A callable that takes no weak reference still gets chunk tuning, for its runner's life."""

    class Slotted:
        __slots__ = ("clock",)

        def __init__(self, c):
            self.clock = c

        def __call__(self, x):
            self.clock.now += per_row_optimum(2 * BASE)(x.shape[0])
            return x.flatten(1)[:, :2]

    runner = ModelRunner(Slotted(clock))
    assert _until_chosen(runner, 1024).best == 2 * BASE
    assert ModelRunner(runner.model).rows(FEATURES, "cpu", total=1024) == BASE


@pytest.mark.cuda
def test_tuning_on_cuda_syncs_and_stays_exact(seed):
    """On a GPU the tuned chunks (timed after a synchronize) give the same IG as one
    fixed chunking on the CPU, call after call."""
    torch.manual_seed(seed)
    inner = MLP(d_in=2 ** 16, hidden=4, classes=3).double().eval()  # CUDA budget: 1,024 rows per chunk
    x = torch.randn(4, 2 ** 16, dtype=torch.float64)
    want = pa.integrated_gradients(inner, x, target=1, n_steps=600, internal_batch_size=600)
    model = inner.cuda()
    ex = pa.Explainer(model, "ig", n_steps=600)  # 2,400 rows: several chunks
    for _ in range(8):
        assert_close(ex.attribute(x.cuda(), target=1), want, rtol=1e-10, atol=1e-12, what="IG on CUDA")
    assert ex.engine.runner.tuning_table().entries  # it was measured


def test_the_table_forgets_the_oldest_shapes(clock, monkeypatch):
    """Many input shapes (text of many lengths) do not grow a model's table without end:
    past MAX_ENTRIES the oldest entry goes, and with it the partial key that named it."""
    monkeypatch.setattr(chunk_tuning, "MAX_ENTRIES", 2)
    model = Costed(lambda x: x.flatten(1)[:, :2], clock, per_row_optimum(BASE))
    runner = ModelRunner(model)
    for shape in ((2, 64, 64), (FEATURES,), (64, 128)):
        _pass(runner, 64, shape=shape)
    table = runner.tuning_table()
    assert len(table.entries) == 2
    assert {full[1][0] for full in table.entries} == {(FEATURES,), (64, 128)}
    assert all(full in table.entries for full in table.latest.values())
