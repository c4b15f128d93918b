"""The bundled digits data and model, the small test/benchmark models, and the plots."""
import collections
import json

import numpy as np
import pytest
import torch

from pathattr.apps import viz
from pathattr.data import digits
from pathattr.data.digits import load_digits_data, load_digits_model
from pathattr.data.models import DigitsCNN, ResidualCNN, SmoothMLP, TanhMLP, count_parameters

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- data

def test_split_is_deterministic_disjoint_and_complete():
    x_tr, y_tr = load_digits_data("train")
    x_te, y_te = load_digits_data("test")
    x_all, y_all = load_digits_data("all")
    assert x_tr.shape == (1437, 1, 8, 8) and x_te.shape == (360, 1, 8, 8) and x_all.shape == (1797, 1, 8, 8)
    assert x_te.dtype == torch.float32 and y_te.dtype == torch.int64
    assert float(x_all.min()) == 0.0 and float(x_all.max()) == 1.0
    tr, te = digits.split_indices("train"), digits.split_indices("test")
    assert len(np.intersect1d(tr, te)) == 0
    assert np.array_equal(np.sort(np.concatenate([tr, te])), np.arange(1797))
    assert torch.equal(x_te, x_all[torch.from_numpy(te)]) and torch.equal(y_tr, y_all[torch.from_numpy(tr)])
    # Same answer again, with the cache bypassed, and fresh tensors each call.
    digits._arrays.cache_clear()
    x_te2, y_te2 = load_digits_data("test")
    assert torch.equal(x_te, x_te2) and torch.equal(y_te, y_te2)
    x_te2[0] = -1.0
    assert torch.equal(load_digits_data("test")[0], x_te)
    # Stratified: every class is in the test split in about its share.
    counts = torch.bincount(y_te, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38
    # The split the bundled weights were trained against (recorded by train_digits).
    from pathattr.data.train_digits import split_fingerprint

    info = json.loads(digits.digits_weights_path().with_suffix(".json").read_text())
    assert split_fingerprint("test") == info["split"]["test_indices_sha256"]


def test_split_argument_validated():
    with pytest.raises(ValueError, match="split"):
        load_digits_data("validation")
    with pytest.raises(TypeError, match="split"):
        load_digits_data(1)


def test_bundled_model_loads_and_is_accurate():
    model = load_digits_model()
    assert isinstance(model, DigitsCNN) and not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    x, y = load_digits_data("test")
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc >= 0.97
    info = json.loads(digits.digits_weights_path().with_suffix(".json").read_text())
    assert info["param_count"] == count_parameters(model)
    assert abs(info["test_accuracy"] - acc) < 1e-3
    assert digits.digits_weights_path().stat().st_size < 2 * 1024 * 1024


def test_missing_weights_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(digits, "digits_weights_path", lambda: tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError, match="train_digits"):
        load_digits_model()


# --------------------------------------------------------------------------- models

def test_model_shapes(seed):
    assert DigitsCNN()(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    res = ResidualCNN().eval()
    assert res.input_shape == (3, 32, 32)
    assert res(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in res.modules())
    small = ResidualCNN(in_channels=1, num_classes=4, width=8, blocks=2, image_size=16).eval()
    assert small(torch.rand(5, 1, 16, 16)).shape == (5, 4)
    with pytest.raises(ValueError, match="shape"):
        res(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="blocks"):
        ResidualCNN(blocks=0)
    mlp = SmoothMLP(12, 32, 5, 3)
    assert mlp(torch.rand(4, 12)).shape == (4, 5)
    assert mlp(torch.rand(4, 3, 4)).shape == (4, 5)  # trailing dims flattened
    assert any(isinstance(m, torch.nn.LayerNorm) for m in mlp.modules())
    assert TanhMLP(7, out_features=2).double()(torch.rand(3, 7, dtype=torch.float64)).shape == (3, 2)
    with pytest.raises(ValueError, match="features"):
        mlp(torch.rand(4, 11))


# --------------------------------------------------------------------------- viz helpers

def test_normalise_percentile_clipping_and_signs():
    # 99 regular values in [-1, 1] and two outliers: with 101 values the 98th percentile
    # falls exactly on the 99th smallest |value|, i.e. 1.0, with no interpolation.
    a = np.concatenate([np.linspace(-1.0, 1.0, 99), [50.0, -80.0]])
    s = 1.0
    assert np.percentile(np.abs(a), 98.0) == s
    # absolute_value: divided by 1, so the outliers saturate at 1.
    out = viz._normalise(a, "absolute_value", outlier_perc=2.0)
    np.testing.assert_allclose(out[:99], np.abs(a[:99]))
    assert out[99] == 1.0 and out[100] == 1.0 and out.min() >= 0.0
    # outlier_perc=0 divides by the max: nothing clipped.
    np.testing.assert_allclose(viz._normalise(a, "absolute_value", 0.0), np.abs(a) / 80.0)
    # all: signed, in [-1, 1].
    out = viz._normalise(a, "all", 2.0)
    assert out[99] == 1.0 and out[100] == -1.0
    np.testing.assert_allclose(out[:99], a[:99] / s)
    # positive / negative: the other part is zero; magnitudes in [0, 1].
    pos = viz._normalise(a, "positive", 2.0)
    neg = viz._normalise(a, "negative", 2.0)
    assert np.all(pos[a <= 0] == 0) and np.all(neg[a >= 0] == 0)
    assert pos.min() >= 0 and neg.min() >= 0 and pos.max() == 1.0 and neg.max() == 1.0
    s_neg = np.percentile(np.maximum(-a, 0), 98)  # = 48/49, the magnitude at index 1
    np.testing.assert_allclose(neg[:99], np.minimum(np.maximum(-a[:99], 0) / s_neg, 1.0))
    assert neg[0] == 1.0 and neg[1] == 1.0 and neg[2] < 1.0
    # sparse map: percentile is 0, so the max is used; an all-zero map stays zero.
    sparse = np.zeros(100)
    sparse[3] = -2.0
    np.testing.assert_array_equal(viz._normalise(sparse, "negative", 2.0), (sparse < 0).astype(float))
    np.testing.assert_array_equal(viz._normalise(np.zeros((2, 3)), "all", 2.0), np.zeros((2, 3)))
    # explicit shared scale; a torch tensor input.
    np.testing.assert_allclose(viz._normalise(torch.tensor([1.0, -4.0]), "all", 2.0, scale=2.0), [0.5, -1.0])
    with pytest.raises(ValueError, match="sign"):
        viz._normalise(a, "abs")
    with pytest.raises(ValueError, match="outlier_perc"):
        viz._normalise(a, "all", 100.0)
    with pytest.raises(ValueError, match="NaN"):
        viz._normalise(np.array([1.0, np.nan]), "all")


# --------------------------------------------------------------------------- plots

def _check_png(path):
    import matplotlib.image as mpimg

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000
    img = mpimg.imread(str(path))
    assert img.ndim == 3 and img[..., :3].var() > 1e-3  # not blank
    return img.shape[:2]


def test_attribution_grid_writes_png(tmp_path):
    x, y = load_digits_data("test")
    x = x[:3]
    g = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    cols = collections.OrderedDict([("gradient", g), ("grad x input", g * x)])
    out = viz.attribution_grid(x, cols, tmp_path / "sub" / "grid.png", titles=[f"label {int(t)}" for t in y[:3]])
    assert out == tmp_path / "sub" / "grid.png"
    h, w = _check_png(out)
    assert 250 < h < 900 and 350 < w < 1000 and 0.6 < h / w < 1.2  # 3 rows x 3 columns + colorbar
    out6 = viz.attribution_grid(torch.cat([x, x]), {k: torch.cat([v, v]) for k, v in cols.items()},
                                tmp_path / "grid6.png", sign="all", shared_scale=True)
    h6, w6 = _check_png(out6)
    assert w6 == w and h6 > 1.6 * h
    # RGB input, (n, H, W) attributions, numpy arrays.
    rgb = np.random.default_rng(0).random((2, 3, 16, 16))
    _check_png(viz.attribution_grid(rgb, {"m": rgb.sum(1)}, tmp_path / "rgb.png", sign="positive"))
    with pytest.raises(ValueError, match="columns"):
        viz.attribution_grid(x, {"bad": g[:2]}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="titles"):
        viz.attribution_grid(x, cols, tmp_path / "bad.png", titles=["a"])
    with pytest.raises(ValueError, match="images"):
        viz.attribution_grid(x[:, 0], cols, tmp_path / "bad.png")


def test_path_curve_plot_writes_png(tmp_path):
    model = load_digits_model()
    x, y = load_digits_data("test")
    x0, t = x[:1], int(y[0])
    dense = torch.linspace(0, 1, 201)
    with torch.no_grad():
        curve = model(dense[:, None, None, None] * x0)[:, t]
    probe = torch.arange(9) / 8
    sample = (torch.arange(24) + 0.5) / 24
    z = (sample[:, None, None, None] * x0).requires_grad_(True)
    (grad,) = torch.autograd.grad(model(z)[:, t].sum(), z)
    importance = (grad * x0).flatten(1).sum(1)
    out = viz.path_curve_plot(tmp_path / "curve.png", probe, curve[::25], sample, importance=importance,
                              weights=torch.full((24,), 1 / 24), title="digit", dense_alphas=dense,
                              dense_curve=curve)
    h, w = _check_png(out)
    assert 600 < h < 900 and 700 < w < 950
    h_min, w_min = _check_png(viz.path_curve_plot(tmp_path / "min.png", probe.numpy(), curve[::25].numpy(),
                                                  sample.numpy()))
    assert w_min == w and h_min < h
    with pytest.raises(ValueError, match="probe_curve"):
        viz.path_curve_plot(tmp_path / "bad.png", probe, curve[:5], sample)
    with pytest.raises(ValueError, match="together"):
        viz.path_curve_plot(tmp_path / "bad.png", probe, curve[::25], sample, dense_alphas=dense)
