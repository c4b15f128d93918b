"""Expected Gradients and distribution baselines (docs/methods.md §6, §7) against the one-at-a-time
references in pathattr.reference.expected_gradients, and analytic answers on linear models."""
import pytest
import torch

import pathattr as pa
from conftest import assert_close
from pathattr.reference import expected_gradients as ref
from testmodels import MLP, BandModel, GatedMLP, SmoothMLP


def _setup(B=3, R=7, d=6, classes=3):
    model = SmoothMLP(d_in=d, classes=classes).double().eval()
    x = torch.randn(B, d, dtype=torch.float64)
    refs = torch.randn(R, d, dtype=torch.float64)
    target = torch.randint(classes, (B,))
    return model, x, refs, target


@pytest.mark.parametrize("n_alphas", [1, 3])
@pytest.mark.parametrize("chunk", [None, 4, 7])
def test_eg_equals_reference(seed, n_alphas, chunk):
    model, x, refs, target = _setup()
    attr, delta = pa.expected_gradients(model, x, refs, target=target, n_references=5, n_alphas=n_alphas, seed=11,
                                        internal_batch_size=chunk, return_convergence_delta=True)
    want, want_delta = ref.expected_gradients(model, x, refs, target, n_references=5, n_alphas=n_alphas, seed=11)
    assert_close(attr, want, rtol=1e-6, atol=1e-12, what="EG")
    assert_close(delta, want_delta, rtol=1e-6, atol=1e-12, what="EG delta")


def test_eg_relu_model_with_forward_args(seed):
    model = GatedMLP(d_in=5, classes=3).double().eval()
    x = torch.randn(4, 5, dtype=torch.float64)
    refs = torch.randn(9, 5, dtype=torch.float64)
    gate = torch.rand(4, 16, dtype=torch.float64)
    target = [0, 2, 1, 1]
    attr = pa.expected_gradients(model, x, refs, target=target, additional_forward_args=(gate, 0.5), n_references=6,
                                 n_alphas=2, seed=4, internal_batch_size=5)
    want, _ = ref.expected_gradients(model, x, refs, target, 6, 2, 4, additional_forward_args=(gate, 0.5))
    assert_close(attr, want, rtol=1e-6, atol=1e-12, what="EG with forward args")
    relu = MLP(d_in=5, classes=3).double().eval()
    attr = pa.expected_gradients(relu, x, refs, target=target, n_references=4, seed=2)
    assert_close(attr, ref.expected_gradients(relu, x, refs, target, 4, 1, 2)[0], rtol=1e-6, atol=1e-12, what="EG ReLU")


def test_eg_pairs_each_reference_with_its_own_alphas(seed):
    """Every path value reported must be F(r_j + alpha_ja (x - r_j)) for the reference
    index[b, j] and the alphas of that same pair (public code mis-pairs them for k > 1)."""
    model, x, refs, target = _setup(B=2, R=5)
    res = pa.expected_gradients(model, x, refs, target=target, n_references=4, n_alphas=3, seed=8, return_details=True)
    assert res.alphas.shape == (2, 4, 3) and res.reference_index.shape == (2, 4)
    assert 0 < float(res.alphas.min()) and float(res.alphas.max()) < 1
    with torch.no_grad():
        for b in range(2):
            for j in range(4):
                r = refs[res.reference_index[b, j]]
                pts = r + res.alphas[b, j].view(-1, 1) * (x[b] - r)
                assert_close(res.path_values[b, j], model(pts)[:, target[b]], rtol=1e-12, atol=1e-12, what="pairing")


def test_eg_from_dataset_equals_tensor_and_is_seeded(seed):
    model, x, refs, target = _setup()
    labels = torch.arange(refs.shape[0])
    ds = torch.utils.data.TensorDataset(refs, labels)
    a = pa.expected_gradients(model, x, refs, target=target, n_references=6, seed=3)
    b = pa.expected_gradients(model, x, ds, target=target, n_references=6, seed=3)
    assert_close(b, a, rtol=0, atol=0, what="Dataset vs tensor")
    c = pa.expected_gradients(model, x, refs, target=target, n_references=6, seed=4)
    assert (c - a).abs().max() > 1e-6, "a different seed must draw different references or alphas"


def test_eg_linear_model_is_exact():
    """F = w.x + b: EG = w * (x - mean_j r_j) whatever the alphas, so the delta is 0."""
    torch.manual_seed(1)
    lin = torch.nn.Linear(5, 2).double()
    x = torch.randn(3, 5, dtype=torch.float64)
    refs = torch.randn(6, 5, dtype=torch.float64)
    res = pa.expected_gradients(lin, x, refs, target=1, n_references=8, n_alphas=2, seed=0, return_details=True)
    mean_ref = refs[res.reference_index].mean(1)
    assert_close(res.attributions, lin.weight.detach()[1] * (x - mean_ref), rtol=1e-12, atol=1e-12, what="EG linear")
    assert_close(res.delta, torch.zeros(3), rtol=0, atol=1e-12, what="EG delta")


def test_eg_explainer_name_and_target_none(seed):
    model, x, refs, _ = _setup()
    ex = pa.Explainer(model, method="expected_gradients", references=refs, n_references=3, seed=1)
    res = ex.attribute(x, return_details=True)
    want = model(x).argmax(1)
    assert torch.equal(res.target, want)
    same = pa.expected_gradients(model, x, refs, target=want, n_references=3, seed=1)
    assert_close(res.attributions, same, rtol=0, atol=0, what="Explainer vs function")
    assert pa.Explainer(model, method="eg", references=refs).method == "expected_gradients"


# ------------------------------------------------------------- distribution baselines
@pytest.mark.parametrize("chunk", [None, 5])
def test_ig_distribution_equals_reference_and_is_complete(seed, chunk):
    model, x, refs, target = _setup(R=4)
    res = pa.integrated_gradients(model, x, pa.distribution_baseline(refs), target=target, n_steps=64,
                                  internal_batch_size=chunk, return_details=True)
    want = ref.distribution_attribution(model, x, refs, target, "ig", n_steps=64)
    assert_close(res.attributions, want, rtol=1e-6, atol=1e-12, what="IG_D")
    with torch.no_grad():
        gap = model(x)[range(3), target] - model(refs)[:, target].mean(0)
    # completeness sum IG_D = F(x) - E_D F(x'): Gauss-Legendre on a smooth model
    assert_close(res.attributions.sum(1), gap, rtol=0, atol=1e-8, what="sum IG_D")
    assert_close(res.delta, res.attributions.sum(1) - gap, rtol=0, atol=1e-12, what="IG_D delta")
    assert res.reference_index.shape == (3, 4) and res.alphas.shape == (3, 4, 64)


def test_idg_distribution_sampled_equals_reference(seed):
    model, x, refs, target = _setup(R=6)
    dist = pa.distribution_baseline(refs, n_baselines=3, seed=9)
    res = pa.integrated_decision_gradients(model, x, dist, target=target, n_steps=24, return_details=True)
    want = ref.distribution_attribution(model, x, refs, target, "idg", index=res.reference_index, n_steps=24)
    assert_close(res.attributions, want, rtol=1e-6, atol=1e-12, what="IDG_D")
    again = pa.integrated_decision_gradients(model, x, dist, target=target, n_steps=24, internal_batch_size=7)
    assert_close(again, res.attributions, rtol=1e-9, atol=1e-13, what="IDG_D, another chunk size")


def test_ig_distribution_linear_model():
    """F = w.x + b: IG_D = w * (x - mean r) exactly, for every rule."""
    torch.manual_seed(2)
    lin = torch.nn.Linear(4, 3).double()
    x = torch.randn(2, 4, dtype=torch.float64)
    refs = torch.randn(5, 4, dtype=torch.float64)
    attr = pa.integrated_gradients(lin, x, pa.distribution_baseline(refs), target=2, n_steps=3, method="riemann_left")
    assert_close(attr, lin.weight.detach()[2] * (x - refs.mean(0)), rtol=1e-12, atol=1e-12, what="IG_D linear")


# ------------------------------------------------------------------------ bad input
def test_eg_bad_references():
    model = MLP(d_in=6, classes=3).eval()
    x = torch.randn(2, 6)
    with pytest.raises(ValueError, match="baselines.*empty"):
        pa.expected_gradients(model, x, torch.zeros(0, 6), target=0)
    with pytest.raises(ValueError, match="baselines"):
        pa.expected_gradients(model, x, torch.zeros(4, 5), target=0)
    with pytest.raises(ValueError, match="baselines"):
        pa.expected_gradients(model, x, None, target=0)
    with pytest.raises(TypeError, match="baselines"):
        pa.expected_gradients(model, x, torch.zeros(4, 6, dtype=torch.long), target=0)
    with pytest.raises(TypeError, match="baselines"):
        pa.expected_gradients(model, x, [1.0, 2.0], target=0)
    with pytest.raises(ValueError, match="baselines"):
        pa.expected_gradients(model, x, torch.full((3, 6), float("nan")), target=0)
    with pytest.raises(ValueError, match="baselines"):
        pa.expected_gradients(model, x, torch.utils.data.TensorDataset(torch.zeros(3, 7)), target=0)
    with pytest.raises(ValueError, match="baselines.*empty"):
        pa.expected_gradients(model, x, torch.utils.data.TensorDataset(torch.zeros(0, 6)), target=0)
    with pytest.raises(TypeError, match="baselines"):
        pa.expected_gradients(model, x, pa.distribution_baseline(torch.zeros(3, 6)), target=0)
    with pytest.raises(ValueError, match="references.*empty"):
        pa.Explainer(model, method="expected_gradients", references=torch.zeros(0, 6))
    for bad in [0, -1]:
        with pytest.raises(ValueError, match="n_references"):
            pa.expected_gradients(model, x, torch.zeros(3, 6), n_references=bad)
        with pytest.raises(ValueError, match="n_alphas"):
            pa.expected_gradients(model, x, torch.zeros(3, 6), n_alphas=bad)
    with pytest.raises(ValueError, match="seed"):
        pa.expected_gradients(model, x, torch.zeros(3, 6), seed=-1)


def test_distribution_baseline_bad_input():
    model = MLP(d_in=6, classes=3).eval()
    x = torch.randn(2, 6)
    with pytest.raises(ValueError, match="references.*empty"):  # the argument's own name
        pa.distribution_baseline(torch.zeros(0, 6))
    with pytest.raises(ValueError, match="n_baselines"):
        pa.distribution_baseline(torch.zeros(3, 6), n_baselines=0)
    with pytest.raises(ValueError, match="baselines"):
        pa.integrated_gradients(model, x, pa.distribution_baseline(torch.zeros(3, 5)), target=0)
    with pytest.raises(ValueError, match="baselines.*'ig'"):
        pa.bshap(model, x, pa.distribution_baseline(torch.zeros(3, 6)), target=0)


@pytest.mark.parametrize("point, ig, eg_grid, igd_grid", [
    ((0.6, 0.4), (1.0, 0.0), (0.0165, 0.5205), (0.0327, 0.5662)),
    ((0.9, 0.6), (1.0, -1.0), (-0.1055, -0.2480), (-0.1238, -0.2767)),
], ids=["path_A", "path_B"])
def test_band_model_eg_and_distribution_ig(point, ig, eg_grid, igd_grid):
    """docs/methods.md §12.3's BandModel (IG from 0: A = (1, 0), B = (1, -1); BShap: A = (0, 1), B = (0, 0)).

    Measured (seed 0): EG against x' = 0 only, 4,000 alphas: A = (1.029, 0), delta 0.029;
    B = (0.992, -0.965), delta 0.028 (Monte-Carlo IG). EG against the 11 x 11 grid on
    [0, 1]^2, 2,000 references: A = (0.0165, 0.5205), delta -0.071; B = (-0.1055, -0.2480),
    delta 0.038. IG_D over the whole grid (exact mean, 500 midpoint steps per path):
    A = (0.0327, 0.5662), B = (-0.1238, -0.2767), |delta| < 1e-3 (the kinks), with
    E F(x') = 0.4008. A spread reference distribution moves the credit the way BShap
    does: to x2 on path A, and to no positive credit on path B, where F(x) = 0.
    """
    model = BandModel()
    x = torch.tensor([point], dtype=torch.float64)
    g = torch.linspace(0, 1, 11, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    eg0 = pa.expected_gradients(model, x, torch.zeros(1, 2, dtype=torch.float64), target=0, n_references=1,
                                n_alphas=4000, seed=0, return_details=True)
    assert_close(eg0.attributions, [ig], rtol=0, atol=0.05, what="EG from 0 ~ IG")
    eg = pa.expected_gradients(model, x, grid, target=0, n_references=2000, seed=0, return_details=True)
    assert_close(eg.attributions, [eg_grid], rtol=0, atol=1e-4, what="EG over the grid (as measured)")
    assert abs(float(eg.delta)) < 0.1
    igd = pa.integrated_gradients(model, x, pa.distribution_baseline(grid), target=0, n_steps=500,
                                  method="riemann_middle", return_details=True)
    assert_close(igd.attributions, [igd_grid], rtol=0, atol=2e-3, what="IG_D over the grid")
    assert abs(float(igd.delta)) < 1e-3
    assert_close(igd.start_value, [97 / 242], rtol=1e-12, atol=0, what="E F(x') over the grid")
