"""The accuracy study (benchmarks/accuracy.py, issue #15 item 8): its reference rule against
closed-form integrals, and its quick mode end to end on 2 models x 2 inputs."""
import json
import math

import numpy as np
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


class ReluSum(nn.Module):
    """F(x) = sum_i relu(x_i - c_i): a gradient jump (a ReLU kink) at alpha_i = c_i / x_i."""

    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x):
        return torch.relu(x - self.c).sum(-1, keepdim=True)


def test_bisection_resolves_relu_kinks_that_the_plain_rule_misses():
    g = torch.Generator().manual_seed(1)
    c = 0.2 + 0.6 * torch.rand(6, generator=g, dtype=torch.float64)
    x = 1 + torch.rand(2, 6, generator=g, dtype=torch.float64)  # x_i > c_i > 0: kinks inside (0, 1)
    kink = c / x  # (B, D)
    ig = x - c
    # IDG_i = x_i int (sum_j x_j [alpha > kink_j]) [alpha > kink_i] dalpha
    idg = x * (x[:, None, :] * (1 - torch.maximum(kink[:, :, None], kink[:, None, :]))).sum(-1)
    args = (ReluSum(c), x, torch.zeros_like(x), torch.zeros(2, dtype=torch.long), *ar.reference_rule())
    plain = ar.path_integrals(*args)
    refined = ar.path_integrals(*args, k=ar.REF_K)
    assert ar.rel_l2(plain["ig"], ig).max() > 1e-5  # a jump inside a panel: O(node spacing)
    assert ar.rel_l2(refined["ig"], ig).max() < 1e-8 and ar.rel_l2(refined["idg"], idg).max() < 1e-8
    assert (refined["points"] > len(args[4])).all() and (refined["points"] < len(args[4]) + 60000).all()


def test_quick_study_end_to_end(tmp_path):
    out = tmp_path / "acc.json"
    assert acc.main(["--quick", "--out", str(out)]) == 0
    study = json.loads(out.read_text())
    assert set(study["models"]) == {"gelu_mlp", "tanh_mlp"}
    for name, e in study["models"].items():
        assert e["n_inputs"] == 2
        assert e["reference"]["max_rel_diff_finer"] < 1e-9, name  # smooth models: the rule has converged
        for kind, rules in (("ig", ("midpoint", "gauss")), ("idg", ("midpoint", "gauss", "adaptive", "paper"))):
            m = e["methods"][kind]
            assert set(m["rules"]) == set(rules)
            for r in m["rules"].values():
                assert all(math.isfinite(x) for v in r["errors"].values() for x in v)
                assert all(r["grads_per_input"][n] == int(n) for n in r["errors"])
    # GELU MLP, Gauss-Legendre IG: far from the reference at n = 4, then converging to it
    g = study["models"]["gelu_mlp"]["methods"]["ig"]["rules"]["gauss"]
    assert max(g["errors"]["4"]) > 0.01 and g["n_all_0.001"] is not None and g["n_all_0.001"] > 4
    errs = [max(g["errors"][str(n)]) for n in (4, 8)]
    assert errs[1] < errs[0] / 4
    assert study["models"]["gelu_mlp"]["methods"]["ig"]["best"]["0.001"]["grads"] <= g["n_all_0.001"] * 2
    # today's adaptive IDG counts its forward-only probe: N + 1 = max(2, n // 4) + 1
    a = study["models"]["gelu_mlp"]["methods"]["idg"]["rules"]["adaptive"]
    assert a["forward_per_input"]["16"] == 5 and a["forward_per_input"]["4"] == 3
    if study["rtol_available"]:  # rtol mode: its counts and estimates per input, against the true error
        for e in study["models"].values():
            for kind in ("ig", "idg"):
                for r, v in e["methods"][kind]["rtol"].items():
                    assert len(v["n_evaluations"]) == 2 and min(v["n_evaluations"]) >= 1
                    assert all(abs(q * x - y) <= 1e-9 * y for q, x, y in zip(v["ratio"], v["errors"], v["error_estimate"]))
        assert "calibration_all" in study["summary"]
    md = out.with_suffix(".md").read_text()
    assert "Best fixed rule in hindsight" in md and "gelu_mlp" in md


def test_holdout_script_end_to_end(tmp_path):
    """benchmarks/accuracy_holdout.py on two small models x 2 inputs: the JSON's errors are
    the maps' distances from the reference, and the summary counts them."""
    from benchmarks import accuracy_holdout as ah

    out = tmp_path / "h.json"
    assert ah.main(["--out", str(out), "--inputs", "2", "--models", "tanh_mlp20", "softplus_mlp4"]) == 0
    res = json.loads(out.read_text())
    assert set(res["sets"]) == {"A", "B"}
    for set_name, model in (("A", "tanh_mlp20"), ("B", "softplus_mlp4")):
        entry = res["sets"][set_name]["models"][model]
        for kind in ("ig", "idg"):
            for r in ("0.01", "0.001"):
                run = entry["methods"][kind][r]
                assert len(run["errors"]) == 2 and all(e <= 3 * float(r) for e in run["errors"])
                assert all(17 <= n <= 1025 for n in run["n_evaluations"])
        s = res["sets"][set_name]["summary"]["ig 0.01"]
        assert s["maps"] == 2 and s["within"] == 1.0
    assert "## Set B" in out.with_suffix(".md").read_text()
