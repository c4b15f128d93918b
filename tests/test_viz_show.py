"""viz.show / normalised_map / common_scale / comparison_grid / error_curve_plot."""
import numpy as np
import pytest
import torch

from pathattr.apps import viz

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Two channels whose sum is [[1, -2, 3], [1, 5, -6]]: |sum| sorted = 1, 1, 2, 3, 5, 6.
ATTR = np.array([[[1.0, -2.0, 3.0], [0.0, 5.0, -6.0]],
                 [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])


def _png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000
    import matplotlib.image as mpimg

    img = mpimg.imread(str(path))
    assert img[..., :3].var() > 1e-3  # not blank
    return img.shape[:2]


def test_normalised_map_by_hand():
    # percentile rule, outlier 20 %: np.percentile of 6 values at 80 -> index 4 -> 5.
    np.testing.assert_allclose(viz.normalised_map(ATTR, "absolute_value", 20),
                               [[0.2, 0.4, 0.6], [0.2, 1.0, 1.0]])
    np.testing.assert_allclose(viz.normalised_map(ATTR, "all", 20), [[0.2, -0.4, 0.6], [0.2, 1.0, -1.0]])
    # positive part [1, 0, 3, 1, 5, 0]: sorted 0, 0, 1, 1, 3, 5 -> index 4 -> 3.
    np.testing.assert_allclose(viz.normalised_map(ATTR, "positive", 20),
                               [[1 / 3, 0.0, 1.0], [1 / 3, 1.0, 0.0]])
    # negative magnitudes [0, 2, 0, 0, 0, 6]: sorted 0, 0, 0, 0, 2, 6 -> index 4 -> 2.
    np.testing.assert_allclose(viz.normalised_map(ATTR, "negative", 20), [[0, 1, 0], [0, 0, 1]])
    # cumulative (Captum's) rule: running sums 1, 2, 4, 7, 12, 18; 80 % of 18 = 14.4 is
    # first reached at 18 -> divide by 6; 60 % (10.8) at 12 -> divide by 5.
    np.testing.assert_allclose(viz.normalised_map(ATTR, "absolute_value", 20, outlier_rule="cumulative"),
                               np.abs(ATTR.sum(0)) / 6)
    np.testing.assert_allclose(viz.normalised_map(ATTR, "absolute_value", 40, outlier_rule="cumulative"),
                               np.minimum(np.abs(ATTR.sum(0)) / 5, 1))
    # A fixed scale ignores outlier_perc: same map for any percentage.
    for p in (0, 2, 50):
        np.testing.assert_allclose(viz.normalised_map(ATTR, "all", p, scale=4.0),
                                   [[0.25, -0.5, 0.75], [0.25, 1.0, -1.0]])
    # (1, C, H, W) and (H, W) inputs, tensors; an all-zero map stays zero.
    np.testing.assert_allclose(viz.normalised_map(torch.tensor(ATTR)[None], "absolute_value", 20),
                               viz.normalised_map(ATTR.sum(0), "absolute_value", 20))
    np.testing.assert_array_equal(viz.normalised_map(np.zeros((3, 3)), "all"), np.zeros((3, 3)))


def test_common_scale_pools_the_maps():
    a, b = ATTR.sum(0), 10 * np.ones((2, 3))
    # pooled |values| 1, 1, 2, 3, 5, 6, 10 x 6: the 50th percentile of 12 values is 8 (interp 6..10).
    assert viz.common_scale([a, b], "absolute_value", 50) == pytest.approx(np.percentile(np.r_[np.abs(a).ravel(), b.ravel()], 50))
    assert viz.common_scale(np.stack([ATTR, ATTR]), "absolute_value", 20) == pytest.approx(5.0)
    assert viz.common_scale([np.zeros((2, 2))]) == 1.0
    s = viz.common_scale([a, b], "all", 2)
    np.testing.assert_allclose(viz.normalised_map(a, "all", scale=s), np.clip(a / s, -1, 1))


def test_cumulative_rule_equals_captum(seed):
    vis = pytest.importorskip("captum.attr._utils.visualization")
    rng = np.random.default_rng(seed)
    for sign in viz.SIGNS:
        for p in (0.5, 2, 10):  # (Captum's own rounding can fail at p = 0)
            a = rng.standard_t(2, size=(3, 11, 13))  # heavy tails: outliers matter
            ours = viz.normalised_map(a, sign, p, outlier_rule="cumulative")
            ref = vis._normalize_attr(a.sum(0), sign, p)
            if sign == "negative":
                ref = np.abs(ref)  # Captum keeps these <= 0 and colours them with Reds reversed in sign
            np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="sign"):
        viz.normalised_map(ATTR, "abs")
    with pytest.raises(ValueError, match="outlier_perc"):
        viz.normalised_map(ATTR, outlier_perc=-1)
    with pytest.raises(ValueError, match="outlier_rule"):
        viz.normalised_map(ATTR, outlier_rule="captum")
    with pytest.raises(ValueError, match="scale"):
        viz.normalised_map(ATTR, scale=0.0)
    with pytest.raises(TypeError, match="scale"):
        viz.normalised_map(ATTR, scale="row")
    with pytest.raises(ValueError, match="attr"):
        viz.normalised_map(np.zeros((2, 2, 2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        viz.normalised_map(np.array([[np.nan, 1.0]]))
    img = np.random.default_rng(0).random((1, 2, 3))
    with pytest.raises(ValueError, match="method"):
        viz.show(ATTR, img, method="overlay")
    with pytest.raises(ValueError, match="image"):
        viz.show(ATTR, None, method="blended_heat_map")
    with pytest.raises(ValueError, match="image"):
        viz.show(ATTR, np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="all"):
        viz.show(ATTR, img, method="masked_image", sign="all")
    with pytest.raises(ValueError, match="alpha_overlay"):
        viz.show(ATTR, img, alpha_overlay=2)


def test_show_draws_what_it_says(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.random((3, 2, 3))
    norm = viz.normalised_map(ATTR, "absolute_value", 20)
    fig, ax = viz.show(ATTR, img, method="heat_map", outlier_perc=20)
    assert len(ax.images) == 1
    np.testing.assert_allclose(ax.images[0].get_array(), norm)
    fig, ax = viz.show(ATTR, img, method="blended_heat_map", outlier_perc=20, alpha_overlay=0.3)
    assert len(ax.images) == 2 and ax.images[1].get_alpha() == 0.3
    np.testing.assert_allclose(ax.images[0].get_array(), img.mean(0))  # grey copy underneath
    np.testing.assert_allclose(ax.images[1].get_array(), norm)
    fig, ax = viz.show(ATTR, img, method="masked_image", outlier_perc=20)
    np.testing.assert_allclose(ax.images[0].get_array(), img.transpose(1, 2, 0) * norm[..., None])
    fig, ax = viz.show(None, img[:1], method="original_image")
    np.testing.assert_allclose(ax.images[0].get_array(), img[0])
    # Fixed scale: the drawn values are attr / scale, whatever outlier_perc says.
    fig, ax = viz.show(ATTR, method="heat_map", sign="all", scale=6.0, colorbar=True, title="t")
    np.testing.assert_allclose(ax.images[0].get_array(), ATTR.sum(0) / 6.0)
    assert ax.get_title() == "t" and len(fig.axes) == 2
    # Headless, onto a caller's axes, and saved.
    from matplotlib.figure import Figure

    outer = Figure()
    axes = outer.subplots(1, 2)
    f2, a2 = viz.show(ATTR, img, ax=axes[1])
    assert f2 is outer and a2 is axes[1]
    big = np.kron(rng.standard_normal((8, 8)), np.ones((4, 4)))
    fig, _ = viz.show(big, np.kron(rng.random((8, 8)), np.ones((4, 4))))
    fig.savefig(tmp_path / "show.png")
    _png(tmp_path / "show.png")


def test_comparison_grid(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.random((3, 1, 16, 16))
    a = rng.standard_normal((3, 1, 16, 16))
    cols = {"small": a, "large": 100 * a[:, 0]}
    masks = np.zeros((3, 16, 16), dtype=bool)
    masks[0, 2:6, 3:7] = True
    out = viz.comparison_grid(images, cols, tmp_path / "g" / "grid.png", scale="row", masks=masks,
                              titles=["a", "b", "c"], sign="all")
    h, w = _png(out)
    assert 300 < h < 800 and 400 < w < 900
    # scale="row": the small map is drawn 100 times fainter than the large one.
    fig = viz.comparison_grid(images, cols, scale="row", sign="all")
    axes = np.array(fig.axes[:9]).reshape(3, 3)
    small, large = axes[0, 1].images[-1].get_array(), axes[0, 2].images[-1].get_array()
    s = viz.common_scale([a[0], 100 * a[0, 0]], "all")
    np.testing.assert_allclose(large, np.clip(100 * a[0, 0] / s, -1, 1))
    np.testing.assert_allclose(small, np.clip(a[0, 0] / s, -1, 1))
    # scale="map": both drawn alike; a number: every map divided by it.
    fig = viz.comparison_grid(images, cols, scale="map", method="blended_heat_map", colorbar=False)
    axes = np.array(fig.axes).reshape(3, 3)
    np.testing.assert_allclose(axes[1, 1].images[-1].get_array(), axes[1, 2].images[-1].get_array())
    fig = viz.comparison_grid(images, cols, scale=50.0, sign="all")
    np.testing.assert_allclose(np.array(fig.axes[:9]).reshape(3, 3)[2, 2].images[-1].get_array(),
                               np.clip(2 * a[2, 0], -1, 1))
    # scale="column": one divisor per method, shared by the examples.
    fig = viz.comparison_grid(images, cols, scale="column")
    s_col = viz.common_scale(list(a), "absolute_value")
    np.testing.assert_allclose(np.array(fig.axes[:9]).reshape(3, 3)[1, 1].images[-1].get_array(),
                               np.clip(np.abs(a[1, 0]) / s_col, 0, 1))
    with pytest.raises(ValueError, match="scale"):
        viz.comparison_grid(images, cols, scale="rows")
    with pytest.raises(ValueError, match="masks"):
        viz.comparison_grid(images, cols, masks=masks[:2])
    with pytest.raises(ValueError, match="columns"):
        viz.comparison_grid(images, {"x": a[:2]})
    with pytest.raises(ValueError, match="method"):
        viz.comparison_grid(images, cols, method="original_image")


def test_error_curve_plot(tmp_path):
    ev = np.array([256, 8, 16, 32, 64, 128])
    res = {"uniform": (ev, 1.0 / ev), "adaptive": (torch.tensor(ev), torch.tensor(0.5 / ev ** 2.0)),
           "exact after 64": (ev, np.where(ev >= 64, 0.0, 1e-3))}
    out = viz.error_curve_plot(res, tmp_path / "err.png", title="IDG error")
    h, w = _png(out)
    assert 400 < h < 700 and 600 < w < 900
    fig = viz.error_curve_plot(res, thresholds=(0.01, 0.001, 1e-4))
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    lines = ax.get_lines()
    np.testing.assert_array_equal(lines[0].get_xdata(), np.sort(ev))  # sorted by cost
    assert len(lines[2].get_xdata()) == 3  # zero errors are left off the log axis
    horizontal = [ln.get_ydata()[0] for ln in lines[3:]]
    assert horizontal == [0.01, 0.001, 1e-4]
    labels = [t.get_text() for t in ax.texts]
    assert labels == ["1 %", "0.1 %", "0.01 %"]
    with pytest.raises(ValueError, match="errors"):
        viz.error_curve_plot({"x": (ev, -np.ones(6))})
    with pytest.raises(ValueError, match="length"):
        viz.error_curve_plot({"x": (ev, np.ones(5))})
    with pytest.raises(ValueError, match="positive"):
        viz.error_curve_plot({"x": (ev - 8, np.ones(6))})
    with pytest.raises(TypeError, match="pair"):
        viz.error_curve_plot({"x": ev})
    with pytest.raises(TypeError, match="results"):
        viz.error_curve_plot({})


def test_path_curve_from_result(tmp_path):
    import pathattr as pa
    from pathattr.data import scenario_models as sm

    model = sm.load_local_minimum_model()
    x = sm.local_minimum_heldout(3).inputs
    idg = pa.integrated_decision_gradients(model, x, target=1, n_steps=16, return_details=True)
    ig = pa.integrated_gradients(model, x, target=1, n_steps=16, return_details=True)
    h_idg, _ = _png(viz.path_curve_from_result(idg, tmp_path / "idg.png", example=2, title="IDG"))
    h_ig, _ = _png(viz.path_curve_from_result(ig, tmp_path / "ig.png"))
    assert h_idg > h_ig  # IDG adds the importance-factor panel
    with pytest.raises(ValueError, match="example"):
        viz.path_curve_from_result(ig, tmp_path / "bad.png", example=3)
    with pytest.raises(ValueError, match="return_details"):
        viz.path_curve_from_result(None, tmp_path / "bad.png")
