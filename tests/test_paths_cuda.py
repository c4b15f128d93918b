"""Left-IG, Guided IG and AGI on a CUDA device against the same call on the CPU (fp64)."""
import copy

import pytest
import torch

import pathattr as pa
from conftest import assert_close
from testmodels import BNCNN, randomize_bn


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["left_ig", "guided_ig", "agi"])
def test_cuda_matches_cpu_fp64(name, seed):
    model = randomize_bn(BNCNN(classes=6)).double()
    x = torch.randn(3, 3, 9, 7, dtype=torch.float64)
    kw = {"left_ig": dict(n_steps=32), "guided_ig": dict(n_steps=50), "agi": dict(topk=4, max_iter=6)}[name]
    want = pa.Explainer(model, method=name, **kw).attribute(x)
    gpu = copy.deepcopy(model).cuda()
    got = pa.Explainer(gpu, method=name, **kw).attribute(x.cuda())
    assert got.device.type == "cuda"
    # Different kernels (cuDNN vs CPU) round differently; the selection rules of Guided
    # IG and AGI are discrete, so compare at 1e-6 of the map's scale.
    assert_close(got.cpu(), want, rtol=1e-6, atol=1e-6 * want.abs().max().item(), what=f"{name} cuda vs cpu")


@pytest.mark.cuda
def test_cuda_float32_runs(seed):
    model = randomize_bn(BNCNN(classes=6)).cuda()
    x = torch.randn(4, 3, 9, 7, device="cuda")
    for fn, kw in [(pa.left_integrated_gradients, {}), (pa.guided_integrated_gradients, dict(n_steps=40)),
                   (pa.adversarial_gradient_integration, dict(topk=3, max_iter=4))]:
        out = fn(model, x, **kw)
        assert out.device.type == "cuda" and out.dtype == torch.float32 and torch.isfinite(out).all()
