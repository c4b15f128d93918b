"""docs/methods.md §12: analytic models whose IG and IDG are known exactly."""
import pytest
import torch

import pathattr as pa
from conftest import assert_close
from testmodels import Lambda

RULES = ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre"]


def test_item1_saturating_relu_ig_is_1_and_idg_is_2():
    """F(x) = 1 - ReLU(1 - x), x' = 0, x = 2: IG = F(2) - F(0) = 1 (the IDG paper's 2 is a
    slip); IDG = 2 * int_0^1/2 (dF/dalpha = 2) dalpha = 2 = int (dF/dalpha)^2."""
    model = Lambda(lambda x: 1 - torch.relu(1 - x)).double()
    x = torch.tensor([[2.0]], dtype=torch.float64)
    ig = pa.integrated_gradients(model, x, target=0, n_steps=50, method="riemann_middle")
    assert_close(ig, [[1.0]], rtol=0, atol=1e-12, what="IG")
    for schedule in ["uniform", "adaptive", "paper"]:
        idg = pa.integrated_decision_gradients(model, x, target=0, n_steps=40, schedule=schedule, method="riemann_middle")
        assert_close(idg, [[2.0]], rtol=0, atol=1e-12, what=f"IDG {schedule}")


def _piecewise(x):
    x1, x2 = x[:, 0], x[:, 1]
    low = (x1 <= 1) & (x2 <= 1)
    high = (x1 > 1) & (x2 > 1)
    f = torch.where(low, x1 + 3 * x2, torch.where(high, 3 * x1 + x2, torch.zeros_like(x1)))
    return f.unsqueeze(1)


@pytest.mark.parametrize("point, expected", [((1.5, 1.5), (2.5, 3.5)), ((4.0, 4.0), (10.0, 6.0))])
def test_item2_lpi_example(point, expected):
    """Seed 002, Example 1: the gradient switches from (1, 3) to (3, 1) where both pass 1."""
    x = torch.tensor([point], dtype=torch.float64)
    ig = pa.integrated_gradients(Lambda(_piecewise), x, target=0, n_steps=120, method="riemann_middle")
    assert_close(ig, [expected], rtol=0, atol=1e-12, what="IG")


def _band(t):
    return torch.clamp((t - 0.2) / 0.1, 0, 1) * torch.clamp((0.55 - t) / 0.1, 0, 1)


def _two_bands(x):
    return torch.maximum(_band(x[:, 0]), _band(x[:, 1])).unsqueeze(1)


@pytest.mark.parametrize("point, expected", [((0.6, 0.4), (1.0, 0.0)), ((0.9, 0.6), (1.0, -1.0))])
def test_item3_two_bands_ig(point, expected):
    """Seed 004, Table 1 made exact: IG path A = (1, 0), path B = (1, -1), 2,000 steps."""
    x = torch.tensor([point], dtype=torch.float64)
    ig = pa.integrated_gradients(Lambda(_two_bands), x, target=0, n_steps=2000, method="riemann_middle",
                                 internal_batch_size=500)
    assert_close(ig, [expected], rtol=0, atol=5e-3, what="IG")


@pytest.mark.parametrize("rule", RULES)
def test_item4_linear_model_every_rule(rule, seed):
    """F = w.x + b: IG = w (x - x') for every rule; IDG = (w.(x - x')) w (x - x')."""
    lin = torch.nn.Linear(7, 3).double()
    x = torch.randn(4, 7, dtype=torch.float64)
    base = torch.randn(4, 7, dtype=torch.float64)
    target = torch.tensor([0, 2, 1, 2])
    w = lin.weight.detach()[target]
    d = x - base
    ig = pa.integrated_gradients(lin, x, base, target=target, n_steps=9, method=rule)
    assert_close(ig, w * d, rtol=1e-12, atol=1e-12, what="IG")
    want_idg = (w * d).sum(1, keepdim=True) * w * d
    idg = pa.integrated_decision_gradients(lin, x, base, target=target, n_steps=9, schedule="uniform", method=rule)
    assert_close(idg, want_idg, rtol=1e-12, atol=1e-12, what="IDG uniform")
    for schedule in ["adaptive", "paper"]:
        idg = pa.integrated_decision_gradients(lin, x, base, target=target, n_steps=12, schedule=schedule)
        assert_close(idg, want_idg, rtol=1e-12, atol=1e-12, what=f"IDG {schedule}")


@pytest.mark.parametrize("schedule", ["uniform", "adaptive"])
@pytest.mark.parametrize("point, expected", [((0.6, 0.4), (6.0, 0.0)), ((0.9, 0.6), (9.0, 6.0))])
def test_item3_two_bands_idg(point, expected, schedule):
    """IDG (exact importance factor) on docs/methods.md §12.3's two-band model, derived by hand:
    on path A only x1's band entry moves F (dF/dalpha = 6 on alpha in [1/3, 1/2]), so
    IDG = (36 / 6, 0) = (6, 0); on path B x1's entry (dF/dalpha = 9 over 1/9) gives 9 and
    x2's exit (dF/dalpha = -6 over 1/6) gives +6: IDG = (9, 6), while IG = (1, -1).
    IDG squares dF/dalpha, so a feature that *lowers* the output along the path gets
    positive credit. Measured at M = 2,000 midpoint (uniform): A (5.994, 0),
    B (9.0315, 5.994); adaptive: A (5.9966, 0), B (9.0109, 5.9940). Sum = int (dF/dalpha)^2
    = 6 and 15."""
    x = torch.tensor([point], dtype=torch.float64)
    res = pa.integrated_decision_gradients(Lambda(_two_bands), x, target=0, n_steps=2000, schedule=schedule,
                                           method="riemann_middle", return_details=True)
    assert_close(res.attributions, [expected], rtol=0, atol=0.05, what=f"IDG {schedule}")
    total = float(res.attributions.sum())
    assert abs(total - sum(expected)) < 0.05
    assert abs(total - float((res.weights * res.importance ** 2).sum())) < 1e-9 * abs(total)
