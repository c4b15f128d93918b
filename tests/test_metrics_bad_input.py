"""Every metric rejects bad arguments up front with an error that names the argument."""
import numpy as np
import pytest
import torch
from torch import nn

import pathattr.metrics as pm


@pytest.fixture
def model():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4)).eval()


X = torch.rand(2, 3, 6, 6)
A = torch.rand(2, 3, 6, 6)
U8 = (torch.rand(2, 3, 6, 6) * 255).to(torch.uint8)


@pytest.mark.parametrize("fn", [pm.insertion_deletion, pm.diffid])
def test_image_metrics(fn, model):
    with pytest.raises(TypeError, match="model"):
        fn("not a model", X, A)
    with pytest.raises(TypeError, match="inputs"):
        fn(model, X.numpy(), A)
    with pytest.raises(TypeError, match="inputs"):
        fn(model, U8, A)
    with pytest.raises(ValueError, match="inputs"):
        fn(model, X[0], A)
    bad = X.clone()
    bad[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="inputs"):
        fn(model, bad, A)
    with pytest.raises(ValueError, match="attributions"):
        fn(model, X, A[:, :, :5])
    with pytest.raises(ValueError, match="attributions"):
        fn(model, X, A[:1])
    with pytest.raises(TypeError, match="attributions"):
        fn(model, X, A.numpy())
    bad = A.clone()
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="attributions"):
        fn(model, X, bad)
    with pytest.raises(ValueError, match="target"):
        fn(model, X, A, target=4)
    with pytest.raises(ValueError, match="target"):
        fn(model, X, A, target=[0])
    with pytest.raises(ValueError, match="target"):
        fn(model, X, A, target=-1)
    for bs in (0, -2):
        with pytest.raises(ValueError, match="batch_size"):
            fn(model, X, A, batch_size=bs)
    with pytest.raises(TypeError, match="batch_size"):
        fn(model, X, A, batch_size=2.0)


def test_insertion_deletion_arguments(model):
    with pytest.raises(ValueError, match="pixels_per_step"):
        pm.insertion_deletion(model, X, A, pixels_per_step=0)
    with pytest.raises(ValueError, match="games"):
        pm.insertion_deletion(model, X, A, games=("insertion", "flip"))
    with pytest.raises(ValueError, match="games"):
        pm.insertion_deletion(model, X, A, games=())
    with pytest.raises(ValueError, match="blur_kernel"):
        pm.insertion_deletion(model, X, A, blur_kernel=10)
    with pytest.raises(ValueError, match="blur_sigma"):
        pm.insertion_deletion(model, X, A, blur_sigma=0.0)
    with pytest.raises(ValueError, match="baseline"):
        pm.insertion_deletion(model, X, A, baseline=torch.zeros(3, 3, 6, 6))
    with pytest.raises(ValueError, match="baseline"):
        pm.insertion_deletion(model, X, A, baseline=float("nan"))
    with pytest.raises(ValueError, match="model"):
        pm.insertion_deletion(lambda x: x.sum((1, 2, 3)), X, A)


def test_diffid_arguments(model):
    with pytest.raises(ValueError, match="fractions"):
        pm.diffid(model, X, A, fractions=(0.5, 1.0))
    with pytest.raises(ValueError, match="fractions"):
        pm.diffid(model, X, A, fractions=(0.99,))  # removes all 36 pixels
    with pytest.raises(TypeError, match="fractions"):
        pm.diffid(model, X, A, fractions=())
    with pytest.raises(TypeError, match="fractions"):
        pm.diffid(model, X, A, fractions=0.5)


def test_pic_arguments(model):
    pre = lambda u: u.float() / 255  # noqa: E731
    with pytest.raises(TypeError, match="images"):
        pm.pic(model, X, A, preprocess=pre)
    with pytest.raises(TypeError, match="images"):
        pm.pic(model, [1, 2], A, preprocess=pre)
    with pytest.raises(ValueError, match="images"):
        pm.pic(model, U8[0], A, preprocess=pre)
    with pytest.raises(ValueError, match="images"):
        pm.pic(model, torch.zeros(2, 2, 6, 6, dtype=torch.uint8), A, preprocess=pre)
    with pytest.raises(ValueError, match="attributions"):
        pm.pic(model, U8, A[:, :, :4], preprocess=pre)
    with pytest.raises(TypeError, match="preprocess"):
        pm.pic(model, U8, A, preprocess="float")
    with pytest.raises(ValueError, match="thresholds"):
        pm.pic(model, U8, A, preprocess=pre, thresholds=(0.1, 0.05))
    with pytest.raises(ValueError, match="thresholds"):
        pm.pic(model, U8, A, preprocess=pre, thresholds=(0.5, 1.0))
    with pytest.raises(TypeError, match="random_mask"):
        pm.pic(model, U8, A, preprocess=pre, random_mask=np.zeros((2, 6, 6)))
    with pytest.raises(ValueError, match="random_mask"):
        pm.pic(model, U8, A, preprocess=pre, random_mask=np.zeros((2, 6, 5), dtype=bool))
    with pytest.raises(ValueError, match="random_fraction"):
        pm.pic(model, U8, A, preprocess=pre, random_fraction=1.0)
    with pytest.raises(ValueError, match="seed"):
        pm.pic(model, U8, A, preprocess=pre, seed=-1)
    with pytest.raises(ValueError, match="num_data_points"):
        pm.pic(model, U8, A, preprocess=pre, num_data_points=0)
    with pytest.raises(ValueError, match="target"):
        pm.pic(model, U8, A, preprocess=pre, target=7)


def test_localisation_arguments():
    m = torch.rand(2, 6, 6) > 0.5
    with pytest.raises(TypeError, match="attributions"):
        pm.localisation(A.numpy(), m)
    with pytest.raises(TypeError, match="masks"):
        pm.localisation(A, m.numpy())
    with pytest.raises(ValueError, match="masks"):
        pm.localisation(A, m[:1])
    with pytest.raises(ValueError, match="masks"):
        pm.localisation(A, torch.full((2, 6, 6), 0.5))
    with pytest.raises(ValueError, match="attributions"):
        pm.localisation(A[:, :, :5], m)
    with pytest.raises(ValueError, match="sign"):
        pm.localisation(A, m, sign="negative")
    with pytest.raises(ValueError, match="tolerance"):
        pm.localisation(A, m, tolerance=-1)
