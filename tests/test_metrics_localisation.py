"""Energy inside the mask and the pointing game against the pixel-loop reference."""
import math

import pytest
import torch

import pathattr.metrics as pm
from conftest import assert_close
from metric_models import orderings
from pathattr.reference import metrics as ref


@pytest.mark.parametrize("sign", ["positive", "absolute"])
@pytest.mark.parametrize("tolerance", [0.0, 1.5, 3.0])
def test_equals_reference(seed, sign, tolerance):
    attr = torch.randn(6, 3, 7, 9, dtype=torch.float64)
    masks = torch.rand(6, 7, 9) < 0.2
    masks[0] = False  # no ground truth: not valid
    attr[1] = -attr[1].abs()  # no positive mass: not valid for sign="positive"
    res = pm.localisation(attr, masks, sign=sign, tolerance=tolerance)
    for i in range(6):
        e, hit = ref.localisation_one(attr[i], masks[i], sign, tolerance)
        if math.isnan(e):
            assert not res.valid[i] and math.isnan(res.energy[i]) and math.isnan(res.pointing[i])
        else:
            assert res.valid[i]
            assert_close(res.energy[i], e, rtol=1e-12, atol=0, what="energy")
            assert res.pointing[i].item() == hit
    v = res.valid
    assert res.n_valid == int(v.sum()) == (5 if sign == "absolute" else 4)
    assert_close(res.energy_mean, res.energy[v].mean(), rtol=1e-14, atol=0)


def test_known_ordering_and_answers():
    region = torch.zeros(10, 12, dtype=torch.bool)
    region[2:6, 3:8] = True
    maps = orderings(region, 4, seed=3)
    masks = region.expand(4, -1, -1)
    e = {k: pm.localisation(v, masks).energy_mean for k, v in maps.items()}
    p = {k: pm.localisation(v, masks).pointing_mean for k, v in maps.items()}
    assert e["oracle"] > e["random"] > e["inverted"], e
    assert p["oracle"] == 1.0 and p["inverted"] == 0.0, p
    # A uniform map's energy is the mask's area fraction; a map that is the mask scores exactly 1.
    assert_close(pm.localisation(torch.ones(1, 10, 12), masks[:1]).energy, [20 / 120], rtol=1e-12, atol=0)
    assert pm.localisation(region[None].double(), masks[:1]).energy.item() == 1.0


def test_tolerance_and_channel_sum():
    attr = torch.zeros(1, 2, 8, 8)
    attr[0, 0, 1, 1], attr[0, 1, 1, 1] = 3.0, -2.5  # channel sum 0.5 at (1, 1)
    attr[0, 0, 6, 6] = 0.9  # the maximum of the sum is here
    mask = torch.zeros(1, 8, 8)
    mask[0, 6, 3] = 1
    assert pm.localisation(attr, mask).argmax.tolist() == [[6, 6]]
    assert pm.localisation(attr, mask, tolerance=2.9).pointing.item() == 0.0
    assert pm.localisation(attr, mask, tolerance=3.0).pointing.item() == 1.0


@pytest.mark.cuda
def test_cuda_equals_cpu(seed):
    attr, masks = torch.randn(4, 3, 9, 9), torch.rand(4, 9, 9) < 0.3
    cpu = pm.localisation(attr, masks, tolerance=2.0)
    gpu = pm.localisation(attr.cuda(), masks.cuda(), tolerance=2.0)
    assert_close(gpu.energy, cpu.energy, rtol=1e-12, atol=0)
    assert gpu.pointing.cpu().tolist() == cpu.pointing.tolist()
