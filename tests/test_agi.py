"""AGI on the engine against the one-input-at-a-time reference (two backward passes
per step, as the authors' code), the class selection rule, early stopping and errors."""
import pytest
import torch

import pathattr as pa
from conftest import assert_close
from pathattr.methods.agi import pick_classes
from pathattr.reference import agi as ref_agi
from testmodels import BNCNN, MLP, GatedMLP, randomize_bn

CONFIGS = [dict(), dict(restart=True), dict(lo=-1.0, hi=1.0, epsilon=0.2), dict(restart=True, lo=-0.5, hi=2.0)]


def _cases():
    cnn = randomize_bn(BNCNN(classes=6)).double()
    return [("mlp", MLP(d_in=12, classes=10).double().eval(), torch.randn(3, 12, dtype=torch.float64), 4),
            ("cnn_bn", cnn, torch.randn(2, 3, 5, 4, dtype=torch.float64), 3)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "defaults")
def test_fast_equals_reference(cfg, seed):
    kw = dict(dict(epsilon=0.1, max_iter=8), **cfg)
    stopped_early = 0
    for name, model, x, topk in _cases():
        res = pa.adversarial_gradient_integration(model, x, topk=topk, seed=seed % 1000, internal_batch_size=5,
                                                  return_details=True, **kw)
        ref, classes = ref_agi.adversarial_gradient_integration(model, x, res.target, topk=topk, seed=seed % 1000, **kw)
        assert res.extras["classes"].tolist() == classes
        scale = ref.abs().max().item()
        assert scale > 0
        assert_close(res.attributions, ref, rtol=1e-6, atol=1e-9 * scale, what=f"AGI {name} {cfg}")
        stopped_early += int((res.extras["steps"] < kw["max_iter"]).sum())
        other = pa.adversarial_gradient_integration(model, x, topk=topk, seed=seed % 1000, **kw)
        assert_close(other, res.attributions, rtol=1e-12, atol=1e-14 * scale, what="chunk size")
    assert stopped_early > 0  # the early stop was exercised


def test_forward_args_and_given_target(seed):
    model = GatedMLP(d_in=8, classes=5).double().eval()
    x = torch.randn(3, 8, dtype=torch.float64)
    gate = torch.rand(3, 16, dtype=torch.float64)
    target = torch.tensor([4, 0, 2])
    res = pa.adversarial_gradient_integration(model, x, target=target, additional_forward_args=(gate, 2.0), topk=3,
                                              max_iter=6, return_details=True)
    ref, _ = ref_agi.adversarial_gradient_integration(model, x, target, (gate, 2.0), topk=3, max_iter=6)
    assert_close(res.attributions, ref, rtol=1e-6, atol=1e-12, what="AGI with forward args")
    assert res.target.tolist() == [4, 0, 2]
    assert all(4 not in row for row in res.extras["classes"][:1].tolist())


def test_class_selection():
    explained = torch.tensor([0, 5, 9, 3])
    for C, k in [(10, 9), (10, 3), (1000, 20), (2, 1)]:
        cls = pick_classes(explained % C, C, k, seed=7)
        assert cls.shape == (4, k)
        for row, c in zip(cls.tolist(), (explained % C).tolist()):
            assert len(set(row)) == k and c not in row and all(0 <= v < C for v in row)
            assert row == sorted(row)
            # spread: consecutive picks are (C - 1) / k apart in candidate order, up to one.
            pos = [v - (v > c) for v in row]
            gaps = [b - a for a, b in zip(pos, pos[1:])]
            assert all(abs(g - (C - 1) / k) <= 1 for g in gaps)
        assert cls.tolist() == pick_classes(explained % C, C, k, seed=7).tolist()  # deterministic
        assert cls.tolist() == ref_agi.adversarial_classes((explained % C).tolist(), C, k, 7)
    assert pick_classes(explained, 1000, 20, 1).tolist() != pick_classes(explained, 1000, 20, 2).tolist()


def test_walk_details(seed):
    """A pair stops as soon as argmax = l: with a large step every walk reaches its class
    quickly; with max_iter = 1 each pair makes exactly one step."""
    model = MLP(d_in=12, classes=6).double().eval()
    x = torch.randn(2, 12, dtype=torch.float64) * 0.1
    res = pa.adversarial_gradient_integration(model, x, topk=5, epsilon=5.0, max_iter=50, return_details=True)
    assert res.extras["reached"].float().mean() > 0.5
    assert (res.extras["steps"][res.extras["reached"]] < 50).all()
    one = pa.adversarial_gradient_integration(model, x, topk=5, max_iter=1, return_details=True)
    assert (one.extras["steps"] == 1).all() and not one.extras["reached"].any()


def test_explainer_and_float32(seed):
    model = MLP(d_in=12, classes=6).eval()
    x = torch.randn(3, 12)
    ex = pa.Explainer(model, method="agi", topk=3, max_iter=5)
    assert ex.method == "agi"
    got = ex.attribute(x)
    assert got.dtype == torch.float32 and got.shape == x.shape and torch.isfinite(got).all()
    with pytest.raises(ValueError, match="return_convergence_delta"):
        ex.attribute(x, return_convergence_delta=True)
