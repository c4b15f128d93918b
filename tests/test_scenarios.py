"""Synthetic scenarios (docs/methods.md §13): generators, the label rules, and the damage function."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from pathattr.data.scenarios import (BAND, LOCAL_MINIMUM_KNOTS, local_minimum_score, make_burnt_snacks,
                                     make_local_minimum)
from pathattr.data.train_scenarios import continuous_bernoulli_with_mean, damage


# --------------------------------------------------------------------------- Burnt Snacks

def test_burnt_snacks_is_deterministic():
    a, b = make_burnt_snacks(40, seed=5), make_burnt_snacks(40, seed=5)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and torch.equal(a.masks, b.masks)
    assert a.objects == b.objects
    c = make_burnt_snacks(40, seed=6)
    assert not torch.equal(a.images, c.images)
    # The first examples do not depend on how many are drawn.
    assert torch.equal(make_burnt_snacks(10, seed=5).images, a.images[:10])
    assert a.images.shape == (40, 1, 32, 32) and a.images.dtype == torch.float32
    assert a.labels.dtype == torch.int64 and a.masks.shape == (40, 32, 32) and a.masks.dtype == torch.bool
    assert len(make_burnt_snacks(0)) == 0


def _components(img: np.ndarray):
    """Objects read back from the pixels alone: (is_square, lightness, pixel mask) each."""
    lab, k = ndimage.label(img > 0.08)  # background noise <= 0.05, objects >= 0.10
    out = []
    for i in range(1, k + 1):
        m = lab == i
        rows, cols = np.nonzero(m)
        h, w = np.ptp(rows) + 1, np.ptp(cols) + 1
        values = img[m]
        assert values.max() - values.min() < 1e-6, "objects are flat"
        out.append((h == w and m.sum() == h * w, float(values[0]), m))
    return out


def test_burnt_snacks_label_rule_holds_from_the_pixels():
    data = make_burnt_snacks(400, seed=11)
    lo, hi = BAND
    n_band_decoys = 0
    for img, y, mask, objs in zip(data.images[:, 0].numpy(), data.labels.tolist(), data.masks.numpy(),
                                  data.objects):
        comps = _components(img)
        assert len(comps) == len(objs)  # objects never touch
        targets = [m for sq, v, m in comps if sq and lo <= v <= hi]
        n_band_decoys += sum(1 for sq, v, _ in comps if not sq and lo <= v <= hi)
        # class 1 iff some square is overcooked; the mask is exactly those squares.
        assert y == int(len(targets) > 0)
        expected = np.zeros_like(mask)
        for m in targets:
            expected |= m
        assert np.array_equal(mask, expected)
        # Squares keep their distance from the band edges (clean labels).
        for _, v, _ in (c for c in comps if c[0]):
            assert min(abs(v - lo), abs(v - hi)) >= 0.03 - 1e-9
    share = data.labels.float().mean().item()
    assert 0.4 < share < 0.6
    assert n_band_decoys > 20  # triangles/discs in the band: shape matters, not only lightness
    assert data.masks[data.labels == 0].sum() == 0


def test_burnt_snacks_arguments_validated():
    with pytest.raises(TypeError, match="n"):
        make_burnt_snacks(2.0)
    with pytest.raises(ValueError, match="seed"):
        make_burnt_snacks(2, seed=-1)
    with pytest.raises(ValueError, match="size"):
        make_burnt_snacks(2, size=12)
    with pytest.raises(ValueError, match="background_noise"):
        make_burnt_snacks(2, background_noise=0.3)
    with pytest.raises(ValueError, match="p_class1"):
        make_burnt_snacks(2, p_class1=1.5)
    assert make_burnt_snacks(30, p_class1=0.0).labels.sum() == 0
    assert make_burnt_snacks(30, p_class1=1.0).labels.min() == 1
    small = make_burnt_snacks(5, size=16, max_object=5)
    assert small.images.shape == (5, 1, 16, 16)


# --------------------------------------------------------------------------- Local Minimum

def test_local_minimum_score_shape():
    t = np.array([0.0, 0.3, 0.5, 0.5001, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9, 1.0])
    f = local_minimum_score(t)
    np.testing.assert_allclose(f, [-0.75, -0.75, -0.75, 0.5003, 0.65, 0.8, 0.7, 0.6, 0.65, 0.7, 0.8, 1.0],
                               atol=1e-12)
    # A positive local minimum at 0.7, the jump at 0.5, tensors accepted.
    assert f[7] > 0 and f[6] > f[7] < f[8]
    assert local_minimum_score(torch.tensor([0.7]))[0] == pytest.approx(0.6)
    assert [k[0] for k in LOCAL_MINIMUM_KNOTS] == sorted(k[0] for k in LOCAL_MINIMUM_KNOTS)


def test_local_minimum_matches_seed_004_table_2():
    # The paper's example input: class 0, scaled scores -0.94 (x3), 1, 0.75, 1.
    x = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    f = local_minimum_score(x)
    np.testing.assert_allclose(np.round(f / f.max(), 2), [-0.94, -0.94, -0.94, 1.0, 0.75, 1.0])
    assert f.sum() < 0


def test_local_minimum_generator():
    a, b = make_local_minimum(5000, seed=3), make_local_minimum(5000, seed=3)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
    assert a.inputs.shape == (5000, 6) and a.inputs.dtype == torch.float32
    assert float(a.inputs.min()) >= 0.0 and float(a.inputs.max()) <= 1.0
    # Labels follow the rule, recomputed independently from the returned float32 inputs.
    f = torch.where(a.inputs.double() <= 0.5, torch.tensor(-0.75, dtype=torch.float64),
                    torch.from_numpy(np.interp(a.inputs.double().numpy(), *zip(*LOCAL_MINIMUM_KNOTS))))
    assert torch.allclose(a.scores, f, atol=1e-12)
    assert torch.allclose(a.totals, f.sum(1), atol=1e-12)
    assert torch.equal(a.labels, (f.sum(1) > 0).long())
    assert 0.40 < a.labels.float().mean().item() < 0.50
    assert make_local_minimum(4, d=3).inputs.shape == (4, 3)
    with pytest.raises(ValueError, match="d"):
        make_local_minimum(4, d=0)


# --------------------------------------------------------------------------- damage (docs/methods.md §8)

@pytest.mark.parametrize("mean", [0.06, 0.2, 0.5, 0.73, 0.95])
def test_continuous_bernoulli_has_the_requested_mean(mean):
    gen = torch.Generator().manual_seed(0)
    x = continuous_bernoulli_with_mean(torch.tensor(mean), (200_000,), gen)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    # Sampling error of the mean: sd <= 0.29 / sqrt(2e5) ~ 6.5e-4; 5 sd.
    assert abs(x.double().mean().item() - mean) < 3.3e-3
    # Against torch's own continuous Bernoulli: same parameter, same mean and variance.
    from pathattr.data.train_scenarios import _cb_mean_table

    lam = float(np.interp(mean, _cb_mean_table()[1], _cb_mean_table()[0]))
    if abs(lam - 0.5) > 1e-3:  # torch's formulas are unstable right at 1/2
        ref = torch.distributions.ContinuousBernoulli(probs=torch.tensor(lam, dtype=torch.float64))
        assert ref.mean.item() == pytest.approx(mean, abs=1e-4)
        assert x.double().var().item() == pytest.approx(ref.variance.item(), rel=0.02)


def test_damage_function():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(4000, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 0.5 + 0.25
    out = damage(x, gen, clean_fraction=0.2)
    assert out.shape == (4000, 2, 8, 8)
    xd, c = out[:, :1], out[:, 1:]
    assert float(c.min()) >= 0.0 and float(c.max()) <= 1.0
    # Kept pixels are the input; where c = 1 every pixel is kept.
    assert torch.equal(xd[c == 1], x[c == 1])
    clean = (c == 1).flatten(1).all(1)
    assert 0.17 < clean.float().mean().item() < 0.23
    # Replaced pixels come from the previous example (adversarial) or U(0, 1) noise:
    # x lies in [0.25, 0.75], so noise shows up outside that range.
    changed = xd != x
    other = torch.roll(x, 1, 0)
    from_other = changed & (xd == other)
    from_noise = changed & ~from_other
    assert from_other.sum() > 0 and from_noise.sum() > 0
    assert ((xd < 0.25) | (xd > 0.75))[from_noise].float().mean() > 0.4
    # Extents are spread over [0, 1]: the damaged examples' mean certainty looks uniform.
    m = c.flatten(1).mean(1)[~clean]
    assert abs(m.mean().item() - 0.5) < 0.03 and (m < 0.1).float().mean() > 0.05 and (m > 0.9).float().mean() > 0.05
    # Binary examples: certainty in {0, 1} and keep == certainty.
    binary = ((c == 0) | (c == 1)).flatten(1).all(1) & ~clean
    assert 0.3 < binary.float().mean().item() < 0.5
    assert torch.equal(changed[binary], (c == 0)[binary] & (xd != x)[binary])
