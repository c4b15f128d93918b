"""CUDA graphs in the Explainer: replays equal eager results on fresh inputs; fallbacks."""
import pytest
import torch

import pathattr as pa
from conftest import assert_close
from testmodels import BNCNN, MLP, GatedMLP, randomize_bn


def test_cuda_graphs_on_cpu_inputs_run_eagerly(seed):
    """The option is harmless where graphs cannot apply (CPU tensors): same result, no capture."""
    torch.manual_seed(seed)
    model = MLP().double()
    x = torch.randn(3, 12, dtype=torch.float64)
    ex = pa.Explainer(model, "idg", n_steps=16, cuda_graphs=True)
    assert_close(ex.attribute(x), pa.Explainer(model, "idg", n_steps=16).attribute(x), 0, 0)
    assert ex.engine.graphs.captures == 0
    with pytest.raises(TypeError, match="cuda_graphs"):
        pa.Explainer(model, cuda_graphs="yes")


def test_warmup_runs_a_call_of_the_given_shape(seed):
    torch.manual_seed(seed)
    ex = pa.Explainer(MLP().double(), "ig", n_steps=8).warmup((12,), batch_size=2)
    assert ex.engine._zeros[1].shape == (1, 12)  # the default baseline of that shape was made by a call


class _HostSync(torch.nn.Module):
    """Reads a value back to the host in forward: cannot be captured."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        if float(x.abs().sum()) < 0:  # never true; the read itself breaks capture
            x = -x
        return self.model(x)


@pytest.mark.cuda
@pytest.mark.parametrize("method,kw", [("ig", {}), ("idg", {}), ("idg", {"schedule": "uniform"})])
@pytest.mark.parametrize("autocast", [None, torch.bfloat16])
def test_replays_equal_eager_on_fresh_inputs(method, kw, autocast, seed):
    torch.manual_seed(seed)
    model = randomize_bn(BNCNN(classes=5)).cuda().eval()
    eager = pa.Explainer(model, method, n_steps=24, autocast=autocast, internal_batch_size=40, **kw)
    graphed = pa.Explainer(model, method, n_steps=24, autocast=autocast, internal_batch_size=40, cuda_graphs=True, **kw)
    for i in range(3):  # first call captures, later calls replay with new data in the static buffers
        x = torch.randn(4, 3, 9, 7, device="cuda")
        target = None if i == 1 else torch.randint(0, 5, (4,), device="cuda")
        want = eager.attribute(x, target=target, return_details=True)
        got = graphed.attribute(x, target=target, return_details=True)
        assert torch.equal(got.target, want.target)
        assert_close(got.attributions, want.attributions, 1e-5, 1e-6 * want.attributions.abs().max())
        assert_close(got.path_values, want.path_values, 1e-5, 1e-5)
    cache = graphed.engine.graphs
    assert cache.captures >= 1 and cache.replays >= 3


@pytest.mark.cuda
def test_a_model_that_syncs_falls_back_with_one_warning(seed):
    torch.manual_seed(seed)
    model = _HostSync(MLP()).cuda()
    x = torch.randn(3, 12, device="cuda")
    ex = pa.Explainer(model, "ig", n_steps=8, cuda_graphs=True)
    with pytest.warns(RuntimeWarning, match="capture failed"):
        got = ex.attribute(x, target=0)
    want = pa.Explainer(model, "ig", n_steps=8).attribute(x, target=0)
    assert_close(got, want, 1e-6, 1e-6)
    got2 = ex.attribute(x, target=0)  # no second warning, still correct
    assert_close(got2, want, 1e-6, 1e-6)


@pytest.mark.cuda
def test_extra_forward_args_run_eagerly(seed):
    torch.manual_seed(seed)
    model = GatedMLP().cuda()
    x, gate = torch.randn(2, 8, device="cuda"), torch.rand(2, 16, device="cuda")
    ex = pa.Explainer(model, "ig", n_steps=8, cuda_graphs=True)
    got = ex.attribute(x, target=0, additional_forward_args=(gate,))
    want = pa.Explainer(model, "ig", n_steps=8).attribute(x, target=0, additional_forward_args=(gate,))
    assert_close(got, want, 1e-6, 1e-6)
    assert ex.engine.graphs.captures == 0


def test_ragged_chunks_are_fixed_sizes_covering_every_row():
    """rtol rounds replay graphs of a few fixed sizes: full chunks, the last padded to
    chunk / 2^k, never less than it holds and at most twice it (above the minimum)."""
    from pathattr.engine.graphs import RAGGED_MIN_ROWS, ragged_chunks

    for total in (1, 7, 8, 9, 100, 256, 257, 1000):
        for chunk in (8, 64, 200, 256):
            parts = ragged_chunks(total, chunk)
            assert sum(n for _, n, _ in parts) == total
            assert [s for s, _, _ in parts] == [sum(n for _, n, _ in parts[:i]) for i in range(len(parts))]
            for s, n, size in parts[:-1]:
                assert n == size == chunk
            s, n, size = parts[-1]
            assert n <= size <= chunk and (size < 2 * n or size // 2 < RAGGED_MIN_ROWS)
            assert size in {chunk // 2 ** k for k in range(12)}


@pytest.mark.cuda
@pytest.mark.parametrize("method", ["ig", "idg"])
def test_rtol_rounds_replay_fixed_size_graphs_equal_to_eager(method, seed):
    torch.manual_seed(seed)
    model = randomize_bn(BNCNN(classes=5)).cuda().eval()
    eager = pa.Explainer(model, method, rtol=1e-3, internal_batch_size=48)
    graphed = pa.Explainer(model, method, rtol=1e-3, internal_batch_size=48, cuda_graphs=True)
    for _ in range(2):
        x = torch.randn(4, 3, 9, 7, device="cuda")
        target = torch.randint(0, 5, (4,), device="cuda")
        want = eager.attribute(x, target=target, return_details=True)
        got = graphed.attribute(x, target=target, return_details=True)
        assert torch.equal(got.extras["n_evaluations"], want.extras["n_evaluations"])
        assert_close(got.attributions, want.attributions, 1e-5, 1e-6 * want.attributions.abs().max())
    cache = graphed.engine.graphs
    assert cache.replays > cache.captures >= 1
    assert sum(k[0] == "ragged" for k in cache._entries) <= 7  # 48, 24, 12, 8 ... a few sizes


def test_ragged_padding_and_assembly_equal_eager_on_cpu(seed):
    """The replay path's chunking, padding and assembly, run on the CPU with every chunk
    eager (what a failed capture does): the same rtol result as the plain rounds."""
    torch.manual_seed(seed)
    model = MLP().double()
    x = torch.randn(5, 12, dtype=torch.float64) * 2
    want = pa.Explainer(model, "idg", rtol=1e-4, internal_batch_size=24).attribute(x, target=1, return_details=True)
    ex = pa.Explainer(model, "idg", rtol=1e-4, internal_batch_size=24, cuda_graphs=True)
    cache = ex.engine.graphs
    cache.supports = lambda batch, importance="none": True
    seen = []

    def eager_chunk(key, batch, statics, run):
        seen.append(key[5])  # the padded size
        return None

    cache._get = eager_chunk
    got = ex.attribute(x, target=1, return_details=True)
    assert torch.equal(got.extras["n_evaluations"], want.extras["n_evaluations"])
    assert_close(got.attributions, want.attributions, 1e-12, 1e-14)
    assert seen and set(seen) <= {24, 12} and max(seen) == 24  # fixed sizes only (min 8: 24 -> 12)
