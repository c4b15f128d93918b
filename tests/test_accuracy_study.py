"""The accuracy study (benchmarks/accuracy.py, issue #15 item 8): its reference rule against
closed-form integrals, and its quick mode end to end on 2 models x 2 inputs."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks import accuracy as acc
from benchmarks import accuracy_reference as ar


class ExpSum(nn.Module):
    """F_c(x) = sum_i C[c, i] exp(A[c, i] x_i): separable, so IG and IDG have closed forms."""

    def __init__(self, A, C):
        super().__init__()
        self.A, self.C = A, C

    def forward(self, x):
        return (self.C[None] * torch.exp(self.A[None] * x[:, None, :])).sum(-1)


class TanhSum(nn.Module):
    """F(x) = sum_i tanh(k x_i), k large: a boundary layer at alpha ~ 1/(k |x_i|) next to 0."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        return torch.tanh(self.k * x).sum(-1, keepdim=True)


def test_graded_rule_integrates_polynomials_and_grades_toward_both_ends():
    nodes, w = ar.reference_rule()
    assert len(nodes) >= 8000 and np.all(np.diff(nodes) > 0) and 0 < nodes[0] < 1e-9 and 1 - nodes[-1] < 1e-9
    for p in (0, 1, 7, 15):
        assert abs(w @ nodes ** p - 1 / (p + 1)) < 1e-13
    fn, fw = ar.finer_rule()
    assert len(fn) > len(nodes) and abs(fw.sum() - 1) < 1e-13


def test_reference_matches_closed_form_ig_and_idg():
    g = torch.Generator().manual_seed(0)
    d, classes, B = 5, 3, 4
    A = torch.randn(classes, d, generator=g, dtype=torch.float64) * 2
    C = torch.randn(classes, d, generator=g, dtype=torch.float64)
    model = ExpSum(A, C)
    x = torch.randn(B, d, generator=g, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 0])
    out = ar.path_integrals(model, x, torch.zeros_like(x), target, *ar.reference_rule())
    a, c = A[target], C[target]  # (B, d)
    ig = c * (torch.exp(a * x) - 1)  # x_i int c a exp(a alpha x) dalpha
    # IDG_i = x_i int sum_j (c_j a_j x_j e^{a_j x_j alpha}) c_i a_i e^{a_i x_i alpha} dalpha
    u = a * x  # rate of each exponential in alpha
    s = u[:, :, None] + u[:, None, :]
    integral = torch.where(s.abs() > 1e-12, torch.expm1(s) / s, torch.ones_like(s))
    idg = (c * u) * ((c * u)[:, None, :] * integral).sum(-1)
    assert ar.rel_l2(out["ig"], ig).max() < 1e-12
    assert ar.rel_l2(out["idg"], idg).max() < 1e-12
    assert torch.allclose(out["change"], (c * (torch.exp(u) - 1)).sum(1), rtol=1e-12)


def test_reference_resolves_a_boundary_layer_near_alpha_zero():
    k = 3000.0  # tanh(k alpha x) turns at alpha ~ 3e-4: where a uniform rule misses it
    x = torch.tensor([[0.9], [-1.7], [0.35]], dtype=torch.float64)
    out = ar.path_integrals(TanhSum(k), x, torch.zeros_like(x), torch.zeros(3, dtype=torch.long),
                            *ar.reference_rule())
    assert ar.rel_l2(out["ig"], torch.tanh(k * x)).max() < 1e-10
    # IDG, one feature: x^2 int (k sech^2(k alpha x))^2 dalpha = k|x| (t - t^3 / 3), t = tanh(k|x|), never < 0
    t = torch.tanh(k * x.abs())
    assert ar.rel_l2(out["idg"], k * x.abs() * (t - t ** 3 / 3)).max() < 1e-10
    # a 64-point midpoint rule on the same path is far off: the test can fail
    m = (np.arange(64) + 0.5) / 64
    coarse = ar.path_integrals(TanhSum(k), x, torch.zeros_like(x), torch.zeros(3, dtype=torch.long),
                               m, np.full(64, 1 / 64))
    assert ar.rel_l2(coarse["ig"], torch.tanh(k * x)).max() > 0.1


def test_quick_study_end_to_end(tmp_path):
    out = tmp_path / "acc.json"
    assert acc.main(["--quick", "--out", str(out)]) == 0
    study = json.loads(out.read_text())
    assert set(study["models"]) == {"tanh_mlp", "transformer_ln"}
    for name, e in study["models"].items():
        assert e["n_inputs"] == 2
        assert e["reference"]["max_rel_diff_finer"] < 1e-6, name
        for kind, rules in (("ig", ("midpoint", "gauss")), ("idg", ("midpoint", "gauss", "adaptive", "paper"))):
            m = e["methods"][kind]
            assert set(m["rules"]) == set(rules)
            for r in m["rules"].values():
                errs = {int(n): max(v) for n, v in r["errors"].items()}
                ns = sorted(errs)
                assert errs[ns[-1]] < errs[ns[0]]  # more samples, closer to the reference
                assert r["grads_per_input"][str(ns[0])] == ns[0]
    # the tanh MLP is smooth: Gauss-Legendre IG reaches 0.1 % on both inputs within the quick grid
    g = study["models"]["tanh_mlp"]["methods"]["ig"]["rules"]["gauss"]
    assert g["n_all_0.001"] is not None and study["models"]["tanh_mlp"]["methods"]["ig"]["best"]["0.001"]
    md = out.with_suffix(".md").read_text()
    assert "Best fixed rule in hindsight" in md and "tanh_mlp" in md
