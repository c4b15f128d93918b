"""Attributions are gradients: a call made under torch.inference_mode() must give the same
numbers as one made outside it (autograd records nothing in inference mode, so without
care every gradient reads as zero and the attributions silently vanish)."""
import pytest
import torch

import pathattr as pa


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)).double().eval()


CALLS = {
    "integrated_gradients": lambda m, x: pa.integrated_gradients(m, x, target=0, n_steps=8),
    "integrated_decision_gradients": lambda m, x: pa.integrated_decision_gradients(m, x, target=0, n_steps=8),
    "layer_integrated_gradients": lambda m, x: pa.layer_integrated_gradients(m, m[1], x, target=0, n_steps=8),
    "layer_integrated_decision_gradients":
        lambda m, x: pa.layer_integrated_decision_gradients(m, m[1], x, target=0, n_steps=8),
    "neuron_conductance": lambda m, x: pa.neuron_conductance(m, m[1], x, target=0, n_steps=8),
    "neuron_region_attribution":
        lambda m, x: pa.neuron_region_attribution(m, m[1], x, torch.tensor([1, 1, 0, 0, 1]), target=0, n_steps=8),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_inference_mode_gives_the_same_attributions(name):
    m = _mlp()
    x = torch.randn(3, 5, dtype=torch.float64)
    want = CALLS[name](m, x)
    assert want.abs().max() > 1e-3  # a map that can vanish
    with torch.inference_mode():
        got = CALLS[name](m, x.clone())
    assert torch.equal(got, want)


def test_prune_and_measure_in_inference_mode():
    m = _mlp()
    x = torch.randn(3, 5, dtype=torch.float64)
    mask = torch.tensor([1, 1, 0, 0, 1])
    want = pa.prune_and_measure(m, m[1], x, mask, n_prune=1, target=0, n_steps=8)
    with torch.inference_mode():
        got = pa.prune_and_measure(m, m[1], x.clone(), mask, n_prune=1, target=0, n_steps=8)
    assert torch.equal(got["inside_before"], want["inside_before"])
    assert torch.equal(got["pruned"], want["pruned"])
    assert want["inside_before"].abs().max() > 1e-3
