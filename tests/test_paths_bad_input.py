"""Bad input to Left-IG, Guided IG and AGI: a ValueError/TypeError naming the argument."""
import pytest
import torch

import pathattr as pa
from testmodels import MLP

MODEL = MLP(d_in=6, classes=4).double().eval()
X = torch.randn(2, 6, dtype=torch.float64)

CASES = [
    (pa.left_integrated_gradients, dict(r=0.0), ValueError, r"\br\b"),
    (pa.left_integrated_gradients, dict(r=1.5), ValueError, r"\br\b"),
    (pa.left_integrated_gradients, dict(r=float("nan")), ValueError, r"\br\b"),
    (pa.left_integrated_gradients, dict(r="0.9"), TypeError, r"\br\b"),  # not a number: a TypeError
    (pa.left_integrated_gradients, dict(threshold="median"), ValueError, "threshold"),
    (pa.left_integrated_gradients, dict(n_probe=0), ValueError, "n_probe"),
    (pa.left_integrated_gradients, dict(n_steps=0), ValueError, "n_steps"),
    (pa.left_integrated_gradients, dict(method="simpson"), ValueError, "method"),
    (pa.left_integrated_gradients, dict(baselines=torch.zeros(3)), ValueError, "baselines"),
    (pa.left_integrated_gradients, dict(target=4), ValueError, "target"),
    (pa.guided_integrated_gradients, dict(fraction=0.0), ValueError, "fraction"),
    (pa.guided_integrated_gradients, dict(fraction=2), ValueError, "fraction"),
    (pa.guided_integrated_gradients, dict(max_dist=-0.1), ValueError, "max_dist"),
    (pa.guided_integrated_gradients, dict(max_dist=None), TypeError, "max_dist"),
    (pa.guided_integrated_gradients, dict(n_steps=2.5), TypeError, "n_steps"),
    (pa.guided_integrated_gradients, dict(baselines=torch.zeros(2, 5)), ValueError, "baselines"),
    (pa.guided_integrated_gradients, dict(target=[0, 1, 2]), ValueError, "target"),
    (pa.adversarial_gradient_integration, dict(topk=4), ValueError, "topk"),
    (pa.adversarial_gradient_integration, dict(topk=0), ValueError, "topk"),
    (pa.adversarial_gradient_integration, dict(epsilon=0), ValueError, "epsilon"),
    (pa.adversarial_gradient_integration, dict(max_iter=0), ValueError, "max_iter"),
    (pa.adversarial_gradient_integration, dict(seed=-1), ValueError, "seed"),
    (pa.adversarial_gradient_integration, dict(lo=1.0, hi=0.0), ValueError, "lo"),
    (pa.adversarial_gradient_integration, dict(hi=float("inf")), ValueError, "hi"),
    (pa.adversarial_gradient_integration, dict(restart="yes"), TypeError, "restart"),
    (pa.adversarial_gradient_integration, dict(target=-1), ValueError, "target"),
    (pa.adversarial_gradient_integration, dict(target=7), ValueError, "target"),
]


@pytest.mark.parametrize("fn, kwargs, err, match", CASES,
                         ids=[f"{c[0].__name__}-{'-'.join(c[1])}-{i}" for i, c in enumerate(CASES)])
def test_bad_settings_name_the_argument(fn, kwargs, err, match):
    kw = dict(kwargs)
    with pytest.raises(err, match=match):
        fn(MODEL, X, **kw)


@pytest.mark.parametrize("fn", [pa.left_integrated_gradients, pa.guided_integrated_gradients,
                                pa.adversarial_gradient_integration])
def test_bad_inputs_and_empty_batch(fn):
    with pytest.raises(TypeError, match="inputs"):
        fn(MODEL, X.long())
    with pytest.raises(ValueError, match="inputs"):
        fn(MODEL, torch.full((2, 6), float("nan"), dtype=torch.float64))
    empty = fn(MODEL, X[:0], target=0)
    assert empty.shape == (0, 6)


def test_explainer_names():
    for name in ("left_ig", "guided_ig", "agi", "split_ig", "guided_integrated_gradients",
                 "adversarial_gradient_integration"):
        pa.Explainer(MODEL, method=name)
    with pytest.raises(ValueError, match="method"):
        pa.Explainer(MODEL, method="gig")
