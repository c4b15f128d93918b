"""Insertion/deletion (RISE) against the one-image-at-a-time reference, and the toy's known ordering."""
import numpy as np
import pytest
import torch
from torch import nn

import pathattr.metrics as pm
from conftest import assert_close
from metric_models import orderings, toy
from pathattr.reference import metrics as ref


def small_cnn(c, classes=5):
    return nn.Sequential(nn.Conv2d(c, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(3), nn.Flatten(),
                         nn.Linear(36, classes)).double().eval()


@pytest.mark.parametrize("shape,step,baseline", [((3, 2, 9, 7), None, None), ((2, 3, 5, 11), 4, 0.3),
                                                 ((2, 1, 6, 6), 7, "tensor")])
def test_equals_reference(seed, shape, step, baseline):
    b, c, h, w = shape
    model = small_cnn(c)
    x = torch.randn(shape, dtype=torch.float64)
    attr = torch.randn(shape, dtype=torch.float64)
    if baseline == "tensor":
        baseline = torch.randn(1, c, h, w, dtype=torch.float64)
    res = pm.insertion_deletion(model, x, attr, baseline=baseline, pixels_per_step=step, batch_size=13)
    step = h if step is None else step
    base = torch.zeros(1, c, h, w, dtype=torch.float64) if baseline is None else \
        (torch.full((1, c, h, w), baseline, dtype=torch.float64) if isinstance(baseline, float) else baseline)
    assert res.target.tolist() == model(x).argmax(1).tolist()
    for i in range(b):
        for game in ("insertion", "deletion"):
            curve, auc = ref.insertion_deletion_one(model, x[i], attr[i], int(res.target[i]), base[0], step, game)
            assert_close(getattr(res, game + "_curve")[i], curve, rtol=0, atol=1e-12, what=game)
            assert_close(getattr(res, game + "_auc")[i], auc, rtol=0, atol=1e-12, what=game + " auc")
    n = -(-h * w // step)
    assert res.insertion_curve.shape == (b, n + 1) and res.fractions.shape == (n + 1,)
    # The endpoints are known: deletion starts at the original's probability, insertion ends there.
    assert_close(res.deletion_curve[:, 0], res.original_prob, rtol=0, atol=1e-12)
    assert_close(res.insertion_curve[:, -1], res.original_prob, rtol=0, atol=1e-12)


def test_ties_keep_row_major_order(seed):
    # Integer-valued maps tie a lot: both sides must break ties the same documented way.
    model = small_cnn(3)
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    attr = torch.randint(-2, 3, (2, 3, 6, 7)).double()
    res = pm.insertion_deletion(model, x, attr, pixels_per_step=5)
    for i in range(2):
        for game in ("insertion", "deletion"):
            curve, _ = ref.insertion_deletion_one(model, x[i], attr[i], int(res.target[i]),
                                                  torch.zeros(3, 6, 7, dtype=torch.float64), 5, game)
            assert_close(getattr(res, game + "_curve")[i], curve, rtol=0, atol=1e-12, what=game)


def test_given_target_and_one_game(seed):
    model = small_cnn(2)
    x, attr = torch.randn(3, 2, 5, 5, dtype=torch.float64), torch.randn(3, 5, 5, dtype=torch.float64)
    res = pm.insertion_deletion(model, x, attr, target=[4, 0, 2], games="deletion")
    assert res.insertion_auc is None and res.target.tolist() == [4, 0, 2]
    curve, auc = ref.insertion_deletion_one(model, x[0], attr[0], 4, torch.zeros(2, 5, 5, dtype=torch.float64), 5,
                                            "deletion")
    assert_close(res.deletion_curve[0], curve, rtol=0, atol=1e-12)


def test_batch_size_does_not_change_results(seed):
    model = small_cnn(3)
    x, attr = torch.randn(4, 3, 7, 6, dtype=torch.float64), torch.randn(4, 3, 7, 6, dtype=torch.float64)
    a = pm.insertion_deletion(model, x, attr, batch_size=1)
    b = pm.insertion_deletion(model, x, attr, batch_size=1000)
    assert_close(a.insertion_curve, b.insertion_curve, rtol=0, atol=1e-14)
    assert_close(a.deletion_curve, b.deletion_curve, rtol=0, atol=1e-14)


@pytest.mark.parametrize("size,sigma", [((4, 9), 5.0), ((13, 12), 2.0), ((3, 3), 5.0)])
def test_blur_equals_scipy(seed, size, sigma):
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    got = pm.gaussian_blur(x, 11, sigma)
    want = np.stack([ref.blur(img.numpy(), 11, sigma) for img in x])
    assert_close(got, want, rtol=0, atol=1e-13, what="blur")
    const = torch.full((1, 2, 5, 6), 0.7, dtype=torch.float64)
    assert_close(pm.gaussian_blur(const), const, rtol=0, atol=1e-15, what="constant image")


def test_known_ordering_on_toy():
    b = 3
    model, x, _, region = toy(b, 3, 12, 15, seed=5)
    auc = {}
    for name, sal in orderings(region, b, seed=6).items():
        res = pm.insertion_deletion(model, x, sal, pixels_per_step=6)
        auc[name] = (res.insertion_auc.mean().item(), res.deletion_auc.mean().item())
    ins = [auc[k][0] for k in ("oracle", "random", "inverted")]
    dele = [auc[k][1] for k in ("oracle", "random", "inverted")]
    assert ins[0] > ins[1] > ins[2], auc
    assert dele[0] < dele[1] < dele[2], auc
    # Measured (oracle / random / inverted): insertion 0.958 / 0.559 / 0.093, deletion 0.035 / 0.344 / 0.917.
    assert ins[0] > 0.9 and ins[2] < 0.15 and dele[0] < 0.1 and dele[2] > 0.85, auc


@pytest.mark.cuda
def test_cuda_equals_cpu(seed):
    model = small_cnn(3)
    x, attr = torch.randn(3, 3, 8, 8, dtype=torch.float64), torch.randn(3, 3, 8, 8, dtype=torch.float64)
    cpu = pm.insertion_deletion(model, x, attr)
    gpu = pm.insertion_deletion(model.cuda(), x.cuda(), attr.cuda())
    assert_close(gpu.insertion_auc, cpu.insertion_auc, rtol=0, atol=1e-10)
    assert_close(gpu.deletion_auc, cpu.deletion_auc, rtol=0, atol=1e-10)
