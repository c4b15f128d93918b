"""AIC/SIC against the peer, PAIR's saliency.metrics.pic (0.2.1), on the same images,
saliency maps, random masks and prediction function; plus the toy's known ordering."""
import numpy as np
import pytest
import torch
from saliency.metrics import pic as pair
from threadpoolctl import threadpool_limits

import pathattr.metrics as pm
from metric_models import orderings, toy
from pathattr.metrics.pic_images import blurred_image, webp_size


@pytest.fixture(autouse=True)
def numpy2_shims(monkeypatch):
    # saliency 0.2.1 calls np.trapz, which NumPy 2.4 removed (np.trapezoid is the same rule).
    # (Its other NumPy-2 break, np.quantile(interpolation=), is in guided_ig.py, not pic.py.)
    if not hasattr(np, "trapz"):
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    # One BLAS thread for PAIR's triangulations too (as pathattr.metrics.pic does): same
    # numbers, 100x less time on a loaded machine.
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def pre(u8):
    return u8.double() / 255.0


def pair_run(model, u8, sal, mask, target, kind, **kw):
    """PAIR's compute_pic_metric on one (C, H, W) uint8 image; None when it skips."""
    img = u8.numpy().transpose(1, 2, 0)
    if img.shape[2] == 1:
        img = img[:, :, 0]

    def pred(batch):
        t = torch.from_numpy(np.ascontiguousarray(batch if batch.ndim == 4 else batch[..., None]).transpose(0, 3, 1, 2))
        with torch.no_grad():
            out = model(pre(t))
        if kind == "sic":
            return torch.softmax(out, 1)[:, target].numpy()
        return (out.argmax(1) == target).double().numpy()

    try:
        return pair.compute_pic_metric(img, sal, mask, pred, pm.PIC_THRESHOLDS, **kw)
    except pair.ComputePicMetricError as e:
        return str(e)


def check_against_pair(model, u8, sal, res, **kw):
    for kind in ("sic", "aic"):
        ours = getattr(res, kind)
        results = []
        for i in range(u8.shape[0]):
            r = pair_run(model, u8[i], sal[i].numpy(), res.random_mask[i], int(res.target[i]), kind, **kw)
            if isinstance(r, str):
                assert ours.skipped[i] != 0, (kind, i, r)
                continue
            assert ours.skipped[i] == 0, (kind, i)
            results.append(r)
            np.testing.assert_allclose(ours.curve_x, r.curve_x, rtol=0, atol=1e-12)
            np.testing.assert_allclose(ours.curve_y[i], r.curve_y, rtol=0, atol=1e-9)
            np.testing.assert_allclose(ours.predictions[i], r.predictions, rtol=0, atol=1e-12)
            assert abs(ours.auc[i] - r.auc) <= 1e-9, (kind, i, ours.auc[i], r.auc)
        assert len(results) == ours.n_scored
        if results:
            med = pair.aggregate_individual_pic_results(results, "median")
            np.testing.assert_allclose(ours.median_curve, med.curve_y, rtol=0, atol=1e-9)
            assert abs(ours.median_auc - med.auc) <= 1e-9
            assert abs(ours.mean_auc - np.mean([r.auc for r in results])) <= 1e-9
    return res


def test_equals_pair_rgb():
    model, _, u8, region = toy(3, 3, 16, 20, seed=11)
    maps = orderings(region, 3, seed=12)
    sal = torch.stack([maps["oracle"][0], maps["random"][1], maps["inverted"][2]])
    res = pm.pic(model, u8, sal, preprocess=pre, seed=4)
    assert res.sic.n_scored == 3 and res.aic.n_scored == 3
    check_against_pair(model, u8, sal, res)


def test_equals_pair_grayscale_not_monotonous_given_mask(seed):
    model, _, u8, region = toy(3, 1, 15, 17, seed=13)
    sal = torch.rand(3, 15, 17, dtype=torch.float64) + region.double() * 0.5
    mask = np.random.default_rng(seed).random((3, 15, 17)) < 0.05
    res = pm.pic(model, u8, sal, preprocess=pre, random_mask=mask, keep_monotonous=False, min_pred_value=0.5)
    assert (res.random_mask == mask).all() and res.sic.n_scored == 3 and res.aic.n_scored == 3
    check_against_pair(model, u8, sal, res, keep_monotonous=False, min_pred_value=0.5)


def test_blurred_image_and_entropy_equal_pair(seed):
    g = np.random.default_rng(seed)
    for shape in [(9, 13, 3), (12, 7), (10, 10, 4)]:
        img = g.integers(0, 256, shape).astype(np.uint8)
        for frac in (0.0, 0.03, 0.4, 0.9):
            mask = g.random(shape[:2]) < frac
            ours, theirs = blurred_image(img, mask), pair.create_blurred_image(img, mask)
            assert ours.dtype == theirs.dtype == np.uint8 and ours.shape == theirs.shape
            np.testing.assert_array_equal(ours, theirs)
            assert webp_size(ours) == pair.estimate_image_entropy(theirs)


def test_skip_checks_counted_like_pair():
    model, _, u8, region = toy(4, 3, 16, 16, seed=21)
    u8 = u8.clone()
    u8[2] = 128  # a constant image: the blurred copy is as large as the original (check 2) ...
    sal = orderings(region, 4, seed=22)["oracle"]
    # ... scored for class 0, which it gets with confidence (it does not match the template).
    # Image 1 scored for the wrong class: its probability is far below min_pred_value (check 1).
    target = torch.tensor([1, 0, 0, 1])
    res = pm.pic(model, u8, sal, target=target, preprocess=pre, seed=1)
    assert res.sic.skipped.tolist() == [0, 1, 2, 0], res.sic.skipped
    assert res.sic.skip_counts == {"low_prediction": 1, "entropy": 1, "blurred_prediction": 0}
    assert np.isnan(res.sic.auc[[1, 2]]).all() and np.isfinite(res.sic.auc[[0, 3]]).all()
    check_against_pair(model, u8, sal, res)
    # A model that ignores its input scores the blurred image as high as the original (check 3).
    flat = lambda x: torch.zeros(x.shape[0], 2, dtype=torch.float64)  # noqa: E731
    res = pm.pic(flat, u8[:2], sal[:2], preprocess=pre, min_pred_value=0.5)
    assert res.sic.skipped.tolist() == [3, 3] and res.sic.skip_counts["blurred_prediction"] == 2
    assert res.sic.n_scored == 0 and np.isnan(res.sic.median_auc)
    check_against_pair(flat, u8[:2], sal[:2], res, min_pred_value=0.5)


def test_random_masks_are_seeded_and_fresh_per_image():
    model, _, u8, region = toy(3, 3, 20, 20, seed=31)
    sal = orderings(region, 3, seed=32)["random"]
    a = pm.pic(model, u8, sal, preprocess=pre, seed=7)
    b = pm.pic(model, u8, sal, preprocess=pre, seed=7)
    c = pm.pic(model, u8, sal, preprocess=pre, seed=8)
    assert (a.random_mask == b.random_mask).all() and not (a.random_mask == c.random_mask).all()
    assert a.random_mask.sum((1, 2)).tolist() == [4, 4, 4]  # int(400 * 0.01)
    assert not (a.random_mask[0] == a.random_mask[1]).all()
    np.testing.assert_array_equal(a.sic.auc, b.sic.auc)


def test_known_ordering_on_toy():
    model, _, u8, region = toy(4, 3, 16, 20, seed=41)
    scores = {}
    for name, sal in orderings(region, 4, seed=42).items():
        res = pm.pic(model, u8, sal, preprocess=pre, seed=3)
        assert res.sic.n_scored == 4
        scores[name] = (res.sic.median_auc, res.aic.median_auc)
    for k in (0, 1):
        assert scores["oracle"][k] > scores["random"][k] > scores["inverted"][k], scores
    # Measured SIC (oracle / random / inverted): 0.73 / 0.049 / 0.0012 (PAIR's toy: 0.98 / 0.43 / 0.0005).
    assert scores["oracle"][0] > 0.5 and scores["inverted"][0] < 0.01, scores


@pytest.mark.cuda
def test_cuda_model_equals_cpu():
    model, _, u8, region = toy(2, 3, 16, 16, seed=51)
    sal = orderings(region, 2, seed=52)["oracle"]
    cpu = pm.pic(model, u8, sal, preprocess=pre)
    gpu = pm.pic(model.cuda(), u8, sal.cuda(), preprocess=pre)
    np.testing.assert_allclose(gpu.sic.auc, cpu.sic.auc, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(gpu.entropies, cpu.entropies)
