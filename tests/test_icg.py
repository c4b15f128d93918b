"""Integrated Certainty Gradients (docs/methods.md §8, the ICG paper): the method against the
reference (fp64, random certainty-aware networks), its completeness, the damage
functions' distributions, and bad input."""
import pytest
import torch
from torch import nn

import pathattr as pa
from conftest import assert_close
from pathattr.certainty import model as ct
from pathattr.reference import layer as ref


class _CertaintyCNN(nn.Module):
    """A random network over cat([values (B, C, 5, 4), c (B, Cc, 5, 4)], 1)."""

    def __init__(self, channels=2, certainty_channels=1, classes=4):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels + certainty_channels, 6, 3, padding=1), nn.Tanh(),
                                  nn.Conv2d(6, 6, 3, padding=1), nn.GELU(), nn.Flatten(), nn.Linear(6 * 20, classes))

    def forward(self, z):
        return self.body(z)


def _model(cc, C=2):
    return pa.CertaintyModel(_CertaintyCNN(C, cc), value_channels=C, certainty_channels=cc).double().eval()


@pytest.mark.parametrize("cc", [1, 2])
def test_icg_equals_reference(cc, seed):
    model = _model(cc)
    x = torch.rand(3, 2, 5, 4, dtype=torch.float64)
    target = torch.randint(0, 4, (3,))
    ours, delta = pa.integrated_certainty_gradients(model, x, target=target, n_steps=20, internal_batch_size=13,
                                                    return_convergence_delta=True)
    expected = torch.stack([ref.icg_one(model, x[i], int(target[i]), cc, n_steps=20) for i in range(3)])
    assert ours.shape == (3, cc, 5, 4) and ours.dtype == torch.float64
    assert_close(ours, expected, rtol=1e-6, atol=1e-12, what="ICG vs reference")
    # Completeness: sum ICG = F(x, c=1) - F(x, c=0), up to the midpoint rule's error (smooth model).
    with torch.no_grad():
        gap = model.predict(x, 1.0)[torch.arange(3), target] - model.predict(x, 0.0)[torch.arange(3), target]
    assert_close(ours.reshape(3, -1).sum(1) - gap, delta, rtol=1e-9, atol=1e-12, what="reported delta")
    assert delta.abs().max() < 1e-3 * gap.abs().max()


def test_icg_explainer_and_plain_network(seed):
    """Explainer(method="icg") on a CertaintyModel, and on the bare network with certainty_channels."""
    model = _model(2)
    x = torch.rand(2, 2, 5, 4, dtype=torch.float64)
    res = pa.Explainer(model, method="icg").attribute(x, return_details=True)
    assert res.method == "icg" and res.settings["n_steps"] == 100 and res.settings["rule"] == "riemann_middle"
    assert torch.equal(res.target, model.predict(x).argmax(1))
    assert_close(res.alphas[0], (torch.arange(100, dtype=torch.float64) + 0.5) / 100, rtol=0, atol=1e-15)
    bare = pa.integrated_certainty_gradients(model.net, x, certainty_channels=2)
    assert_close(bare, res.attributions, rtol=1e-12, atol=1e-15, what="bare network = CertaintyModel")
    assert_close(res.delta, res.attributions.reshape(2, -1).sum(1) - (res.end_value - res.start_value),
                 rtol=1e-9, atol=1e-12)


def test_icg_linear_certainty_answer():
    """F = sum_i w_i x_i c_i (a certainty-gated linear model): ICG_i = w_i x_i exactly."""
    w = torch.randn(1, 6, dtype=torch.float64)

    class Gated(nn.Module):
        def forward(self, z):
            v, c = z[:, :1], z[:, 1:]
            return torch.cat([(w * (v * c).flatten(1)).sum(1, keepdim=True), torch.zeros(z.shape[0], 1, dtype=z.dtype)], 1)

    model = pa.CertaintyModel(Gated(), 1, 1)
    x = torch.rand(4, 1, 6, dtype=torch.float64)
    attr = pa.integrated_certainty_gradients(model, x, target=0, n_steps=7)
    assert_close(attr, (w * x.flatten(1)).view(4, 1, 6), rtol=1e-12, atol=1e-14, what="gated linear ICG")


def test_certainty_model_layout():
    model = _model(1)
    x = torch.rand(2, 2, 5, 4, dtype=torch.float64)
    z = model.combine(x, 0.25)
    assert z.shape == (2, 3, 5, 4) and bool((z[:, 2] == 0.25).all())
    v, c = model.split(z)
    assert torch.equal(v, x) and c.shape == (2, 1, 5, 4)
    with pytest.raises(ValueError, match="certainty"):
        model.combine(x, torch.ones(2, 2, 5, 4))
    with pytest.raises(ValueError, match="values"):
        model.combine(torch.rand(2, 3, 5, 4))
    with pytest.raises(ValueError, match="certainty_channels"):
        pa.CertaintyModel(nn.Identity(), value_channels=3, certainty_channels=2)


# ----------------------------------------------------------------- damage
def test_certainty_distributions(seed):
    g = torch.Generator().manual_seed(seed)
    for e in [0.02, 0.3, 0.5, 0.9]:
        extent = torch.full((400,), e)
        b = ct.sample_certainty((400, 1, 50), "binary", extent, g)
        assert set(b.unique().tolist()) <= {0.0, 1.0}
        c = ct.sample_certainty((400, 1, 50), "continuous", extent, g)
        assert bool(((c >= 0) & (c <= 1)).all())
        # 20,000 draws: the standard error of the mean is below 0.0035
        assert abs(float(b.mean()) - (1 - e)) < 0.015 and abs(float(c.mean()) - (1 - e)) < 0.015
        assert len(c.unique()) > 1000  # continuous, not binary
    # The mean reparameterisation against torch's own continuous Bernoulli mean
    means = torch.tensor([0.05, 0.2, 0.5, 0.77, 0.95], dtype=torch.float64)  # torch clamps lambda to [eps, 1 - eps]: means beyond ~0.03 of the ends are out of its reach
    lam = torch.sigmoid(ct.continuous_bernoulli_logit(means))
    assert_close(torch.distributions.ContinuousBernoulli(probs=lam).mean, means, rtol=0, atol=1e-5)
    # icdf against torch's, away from lambda = 1/2 where torch switches to an approximation
    u = torch.rand(500, dtype=torch.float64, generator=g)
    lam = torch.rand(500, dtype=torch.float64, generator=g) * 0.4 + 0.05
    lam = torch.where(torch.rand(500, generator=g) < 0.5, lam, 1 - lam)
    assert_close(ct._cb_icdf(u, torch.logit(lam)), torch.distributions.ContinuousBernoulli(probs=lam).icdf(u),
                 rtol=1e-8, atol=1e-10, what="continuous Bernoulli icdf")


def test_damage_backgrounds(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(6, 3, 4, 4) + 2.0  # values above 1: noise (U(0,1)) is told apart from data
    ext = torch.full((6,), 0.6)
    d, c = ct.damage(x, 1, "binary", "adversarial", extent=ext, generator=g)
    assert c.shape == (6, 1, 4, 4)
    kept = c.bool().expand_as(x)
    assert torch.equal(d[kept], x[kept])
    for i in range(6):  # every damaged feature is the same feature of one other example
        lost = ~kept[i]
        sources = [j for j in range(6) if j != i and torch.equal(d[i][lost], x[j][lost])]
        assert len(sources) >= 1 or not lost.any()
    d, c = ct.damage(x, 3, "binary", "noise", extent=ext, generator=g)
    assert c.shape == x.shape
    lost = ~c.bool()
    assert bool((d[lost] < 1).all()) and torch.equal(d[~lost], x[~lost])
    d, c = ct.damage(x, 1, "mixed", "mixed", generator=g)
    assert d.shape == x.shape and bool(((c >= 0) & (c <= 1)).all())
    with pytest.raises(ValueError, match="background"):
        ct.damage(x, 1, "binary", "zeros")
    with pytest.raises(ValueError, match="certainty_channels"):
        ct.damage(x, 2)
    with pytest.raises(ValueError, match="at least 2"):
        ct.damage(x[:1], 1, "binary", "adversarial")


def test_icg_bad_input():
    model = _model(1)
    x = torch.rand(2, 2, 5, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="baselines"):
        pa.Explainer(model, method="icg").attribute(x, baselines=0.5)
    with pytest.raises(ValueError, match="inputs"):
        pa.integrated_certainty_gradients(model, torch.rand(2, 3, 5, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="certainty_channels"):
        pa.integrated_certainty_gradients(model, x, certainty_channels=2)
    with pytest.raises(ValueError, match="n_steps"):
        pa.integrated_certainty_gradients(model, x, n_steps=0)
    with pytest.raises(ValueError, match="target"):
        pa.integrated_certainty_gradients(model, x, target=9)
    with pytest.raises(TypeError, match="model"):
        ct.information_absence(model.net, x)
    with pytest.raises(ValueError, match="region_mask"):
        ct.suppression_check(model, x, torch.ones(3, 5, 4))
    with pytest.raises(ValueError, match="region_mask"):
        ct.suppression_check(model, x, torch.full((1, 5, 4), 0.5))
    with pytest.raises(ValueError, match="class_prior"):
        ct.neutrality(model, x, torch.tensor([0.5, 0.6, 0.0, 0.0], dtype=torch.float64))


def test_icg_on_spec_known_answer_model():
    """docs/methods.md §12.3 with certainty-gated inputs, F(x, c) = max(b(c1 x1), b(c2 x2)): along c
    from 0 to 1 the gated values walk IG's straight path from 0, so ICG reproduces IG's
    answers, attribution transfer included. Measured with 2,000 midpoint steps:
    path A, x = (0.6, 0.4): ICG = (1, 0) (BShap: (0, 1)); path B, x = (0.9, 0.6):
    ICG = (1, -1) (BShap: (0, 0)); both within 5e-3. Completeness: sum ICG = F(x, 1) -
    F(x, 0) = 1 and 0. A certainty-aware model trained with damage need not be gated like
    this; the point is that ICG is IG on the certainty path, with IG's properties."""

    def band(t):
        return ((t - 0.2) / 0.1).clamp(0, 1) * ((0.55 - t) / 0.1).clamp(0, 1)

    class Gated(nn.Module):
        def forward(self, z):
            v, c = z[:, :1, :], z[:, 1:, :]
            g = (v * c)[:, 0]
            f = torch.maximum(band(g[:, 0]), band(g[:, 1]))
            return torch.stack([f, torch.zeros_like(f)], 1)

    model = pa.CertaintyModel(Gated(), 1, 1)
    x = torch.tensor([[[0.6, 0.4]], [[0.9, 0.6]]], dtype=torch.float64)
    attr, delta = pa.integrated_certainty_gradients(model, x, target=0, n_steps=2000, return_convergence_delta=True)
    assert_close(attr[:, 0], [[1.0, 0.0], [1.0, -1.0]], rtol=0, atol=5e-3, what="ICG on the §12.3 model")
    assert delta.abs().max() < 5e-3


def test_icg_equals_captum_ig_on_the_joint_input(seed):
    """A peer check: Captum 0.9 IntegratedGradients on z = (x, c = 1) with baseline
    z' = (x, c = 0) is the same integral; its certainty part equals ICG and its value
    part is exactly 0 (z - z' is 0 there)."""
    captum_attr = pytest.importorskip("captum.attr")
    model = _model(2)
    x = torch.rand(3, 2, 5, 4, dtype=torch.float64)
    target = torch.randint(0, 4, (3,))
    ours = pa.integrated_certainty_gradients(model, x, target=target, n_steps=30)
    theirs = captum_attr.IntegratedGradients(model).attribute(model.combine(x, 1.0), model.combine(x, 0.0),
                                                              target=target, n_steps=30, method="riemann_middle")
    assert bool((theirs[:, :2] == 0).all())
    assert_close(ours, theirs[:, 2:], rtol=1e-6, atol=1e-10, what="ICG vs Captum IG on the joint input")
