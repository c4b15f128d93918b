"""On a GPU, EG, distribution baselines, LPI and BShap agree with the CPU fp64 result
(same seeds, so the same references, alphas and permutations on both devices)."""
import copy

import pytest
import torch

import pathattr as pa
from testmodels import BNCNN, randomize_bn


def _rel(got, want):
    return ((got.cpu().double() - want).norm() / want.norm()).item()


@pytest.mark.cuda
def test_cuda_matches_cpu(seed):
    model = randomize_bn(BNCNN(classes=4)).double()
    gpu = copy.deepcopy(model).float().cuda()
    x = torch.randn(4, 3, 9, 7, dtype=torch.float64)
    refs = torch.randn(10, 3, 9, 7, dtype=torch.float64)
    xg, rg = x.float().cuda(), refs.float().cuda()

    want = pa.expected_gradients(model, x, refs, target=1, n_references=6, n_alphas=2, seed=3)
    assert _rel(pa.expected_gradients(gpu, xg, rg, target=1, n_references=6, n_alphas=2, seed=3), want) < 1e-4
    ds = torch.utils.data.TensorDataset(refs.float())  # a CPU Dataset feeding CUDA inputs
    assert _rel(pa.expected_gradients(gpu, xg, ds, target=1, n_references=6, n_alphas=2, seed=3), want) < 1e-4

    for fn in (pa.integrated_gradients, pa.integrated_decision_gradients):
        want = fn(model, x, pa.distribution_baseline(refs, 3, seed=1), target=2, n_steps=16)
        got = fn(gpu, xg, pa.distribution_baseline(rg, 3, seed=1), target=2, n_steps=16)
        assert _rel(got, want) < 1e-4, fn.__name__

    bank = pa.build_reference_bank(model, refs, 2, 3, seed=0, n_init=2)
    gpu_bank = pa.build_reference_bank(model, refs, 2, 3, seed=0, n_init=2)
    gpu_bank.fingerprint = pa.baselines.lpi_bank.model_fingerprint(gpu)  # fp32 weights hash differently: a new bank per model
    want = pa.local_path_integration(model, x, bank, n_alphas=2)
    assert _rel(pa.local_path_integration(gpu, xg, gpu_bank, n_alphas=2), want) < 1e-4

    mask = (torch.arange(9 * 7) % 6).view(1, 9, 7).expand(3, 9, 7)
    want = pa.bshap(model, x, target=0, feature_mask=mask)
    assert _rel(pa.bshap(gpu, xg, target=0, feature_mask=mask.cuda()), want) < 1e-4
    want = pa.bshap(model, x, target=0, feature_mask=mask, max_exact_features=2, n_permutations=5)
    got = pa.bshap(gpu, xg, target=0, feature_mask=mask.cuda(), max_exact_features=2, n_permutations=5)
    assert _rel(got, want) < 1e-4
