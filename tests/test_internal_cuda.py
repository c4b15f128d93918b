"""ICG, layer and neuron attributions on a GPU agree with the CPU fp64 result
(device-agnostic code: the same functions, a CUDA model and CUDA inputs)."""
import copy

import pytest
import torch

import pathattr as pa
from testmodels import BNCNN, TinyTransformer, randomize_bn


def _rel(got, want):
    return ((got.cpu().double() - want).norm() / want.norm()).item()


@pytest.mark.cuda
def test_cuda_layer_and_neurons_match_cpu(seed):
    model = randomize_bn(BNCNN(classes=4)).double()
    x = torch.randn(5, 3, 9, 7, dtype=torch.float64)
    gpu = copy.deepcopy(model).float().cuda()
    xg = x.float().cuda()
    want = pa.layer_integrated_gradients(model, model.features[3], x, target=1, n_steps=16)
    got = pa.layer_integrated_gradients(gpu, gpu.features[3], xg, target=1, n_steps=16)
    assert _rel(got, want) < 1e-4
    want = pa.layer_integrated_decision_gradients(model, model.features[3], x, target=1, n_steps=16, schedule="uniform")
    got = pa.layer_integrated_decision_gradients(gpu, gpu.features[3], xg, target=1, n_steps=16, schedule="uniform")
    assert _rel(got, want) < 1e-4
    mask = torch.rand(9, 7) < 0.5
    for jvp in ("forward_ad", "double_backward"):
        want = pa.neuron_region_attribution(model, model.features[2], x, mask, target=1, n_steps=12, jvp=jvp)
        got = pa.neuron_region_attribution(gpu, gpu.features[2], xg, mask.cuda(), target=1, n_steps=12, jvp=jvp)
        assert _rel(got, want) < 1e-4, jvp


@pytest.mark.cuda
def test_cuda_transformer_embedding_and_icg_match_cpu(seed):
    model = TinyTransformer().double().eval()
    ids = torch.randint(1, 20, (4, 6))
    gpu = copy.deepcopy(model).float().cuda()
    want = pa.layer_integrated_gradients(model, model.embed, ids, target=0)
    got = pa.layer_integrated_gradients(gpu, gpu.embed, ids.cuda(), target=0)
    assert _rel(got, want) < 1e-4
    from pathattr.data.certainty_task import load_certainty_model, make_patches_data
    cm = load_certainty_model().double()
    values, y = make_patches_data(8, seed=1)
    want = pa.integrated_certainty_gradients(cm, values.double(), target=y)
    got = pa.integrated_certainty_gradients(load_certainty_model("cuda"), values.cuda(), target=y.cuda())
    assert _rel(got, want) < 1e-4
