"""BShap (docs/methods.md §9): docs/methods.md §12.3's exact answers, the brute-force reference, Captum 0.9's
ShapleyValues (every permutation), efficiency, and permutation sampling."""
import pytest
import torch
from captum.attr import ShapleyValues

import pathattr as pa
from conftest import assert_close
from pathattr.reference import bshap as ref
from testmodels import BNCNN, MLP, BandModel, GatedMLP, SmoothMLP, randomize_bn

# Captum 0.9's ShapleyValues sums its permutations in float32 (total_attrib is created
# with dtype=torch.float) even for fp64 models: its own rounding is ~1e-7 relative per
# term, so the comparison allows fp32-sized error; the fp64 check is the brute force.
CAPTUM_RTOL, CAPTUM_ATOL = 1e-5, 1e-7
PATHS = [((0.6, 0.4), (1.0, 0.0), (0.0, 1.0)), ((0.9, 0.6), (1.0, -1.0), (0.0, 0.0))]


@pytest.mark.parametrize("point, ig, shap", PATHS, ids=["path_A", "path_B"])
def test_band_model_spec_12_3(point, ig, shap):
    """docs/methods.md §12.3, x' = (0, 0): path A x = (0.6, 0.4) has IG = (1, 0) and BShap = (0, 1);
    path B x = (0.9, 0.6) has IG = (1, -1) and BShap = (0, 0). BShap is exact (F only
    takes the values 0 and 1 at the four subset points); IG within 5e-3 at 2,000 steps."""
    x = torch.tensor([point], dtype=torch.float64)
    res = pa.bshap(BandModel(), x, target=0, return_details=True)
    assert res.attributions.tolist() == [list(shap)]
    assert res.delta.tolist() == [0.0]
    attr = pa.integrated_gradients(BandModel(), x, target=0, n_steps=2000, method="gausslegendre")
    assert_close(attr, [ig], rtol=0, atol=5e-3, what="IG")


def _mask(shape, groups, B=None):
    """Random group ids 0..groups-1 covering every group, of one input's shape (or B of them)."""
    n = int(torch.tensor(shape).prod())
    rows = []
    for _ in range(B or 1):
        ids = torch.cat([torch.arange(groups), torch.randint(groups, (n - groups,))])
        rows.append(ids[torch.randperm(n)].view(shape))
    return torch.stack(rows) if B else rows[0]


@pytest.mark.parametrize("chunk", [None, 5])
def test_exact_equals_brute_force_reference(seed, chunk):
    model = SmoothMLP(d_in=6, classes=3).double().eval()
    x = torch.randn(3, 6, dtype=torch.float64)
    base = torch.randn(3, 6, dtype=torch.float64)
    target = torch.tensor([2, 0, 1])
    res = pa.bshap(model, x, base, target=target, internal_batch_size=chunk, return_details=True)
    assert_close(res.attributions, ref.bshap(model, x, base, target), rtol=1e-6, atol=1e-12, what="BShap exact")
    # efficiency: sum phi = F(x) - F(x') up to rounding
    with torch.no_grad():
        gap = model(x)[range(3), target] - model(base)[range(3), target]
    assert_close(res.attributions.sum(1), gap, rtol=0, atol=1e-12, what="efficiency")
    assert_close(res.delta, torch.zeros(3), rtol=0, atol=1e-12, what="delta")
    assert res.settings["mode"] == "exact" and res.path_values.shape == (3, 64)


def test_exact_per_input_feature_mask_and_forward_args(seed):
    model = GatedMLP(d_in=8, classes=3).double().eval()
    x = torch.randn(4, 8, dtype=torch.float64)
    gate = torch.rand(4, 16, dtype=torch.float64)
    mask = _mask((8,), 4, B=4) * 3 + 7  # any integer ids; relabelled per input
    got = pa.bshap(model, x, 0.25, target=1, feature_mask=mask, additional_forward_args=(gate,), internal_batch_size=6)
    want = ref.bshap(model, x, torch.full_like(x, 0.25), [1] * 4, feature_mask=mask, additional_forward_args=(gate,))
    assert_close(got, want, rtol=1e-6, atol=1e-12, what="BShap grouped")


def test_equals_captum_shapley_values_on_a_cnn_with_superpixels(seed):
    model = randomize_bn(BNCNN(classes=4)).double()
    x = torch.randn(2, 3, 9, 7, dtype=torch.float64)
    mask = _mask((1, 9, 7), 5).expand(3, 9, 7).contiguous()  # superpixels shared across channels
    target = torch.tensor([3, 1])
    got = pa.bshap(model, x, target=target, feature_mask=mask)
    want = ShapleyValues(model).attribute(x, target=target, feature_mask=mask.unsqueeze(0), perturbations_per_eval=64)
    assert_close(got, want, rtol=CAPTUM_RTOL, atol=CAPTUM_ATOL, what="BShap vs Captum ShapleyValues")


def test_random_relu_models_equal_captum(seed):
    for _ in range(3):
        model = MLP(d_in=5, hidden=8, classes=3).double().eval()
        x = torch.randn(2, 5, dtype=torch.float64)
        base = torch.randn(1, 5, dtype=torch.float64)
        got = pa.bshap(model, x, base, target=[0, 2])
        want = ShapleyValues(model).attribute(x, base, target=[0, 2], perturbations_per_eval=32)
        assert_close(got, want, rtol=CAPTUM_RTOL, atol=CAPTUM_ATOL, what="BShap vs Captum")


@pytest.mark.parametrize("chunk", [None, 7])
def test_permutation_sampling_equals_reference(seed, chunk):
    model = SmoothMLP(d_in=5, classes=3).double().eval()
    x = torch.randn(3, 5, dtype=torch.float64)
    res = pa.bshap(model, x, target=[0, 1, 2], max_exact_features=3, n_permutations=6, seed=5,
                   internal_batch_size=chunk, return_details=True)
    assert res.settings["mode"] == "permutation" and res.path_values.shape == (3, 6, 6)
    want = ref.bshap(model, x, torch.zeros_like(x), [0, 1, 2], n_permutations=6, seed=5)
    assert_close(res.attributions, want, rtol=1e-6, atol=1e-12, what="BShap sampled")
    assert_close(res.delta, torch.zeros(3), rtol=0, atol=1e-12, what="efficiency of every order")


def test_permutation_sampling_converges_to_exact(seed):
    model = SmoothMLP(d_in=4, classes=2).double().eval()
    x = torch.randn(2, 4, dtype=torch.float64)
    exact = pa.bshap(model, x, target=1)
    few = pa.bshap(model, x, target=1, max_exact_features=0, n_permutations=4, seed=1)
    many = pa.bshap(model, x, target=1, max_exact_features=0, n_permutations=3000, seed=1)
    err_few, err_many = (few - exact).abs().max(), (many - exact).abs().max()
    assert err_many < 0.05 * exact.abs().max(), (err_many, exact)
    assert err_many < err_few


def test_explainer_name_and_target_none(seed):
    model = SmoothMLP(d_in=4, classes=3).double().eval()
    x = torch.randn(2, 4, dtype=torch.float64)
    res = pa.Explainer(model, method="bshap").attribute(x, return_details=True)
    assert torch.equal(res.target, model(x).argmax(1))
    assert_close(res.attributions, pa.bshap(model, x, target=res.target), rtol=0, atol=0, what="Explainer")


def test_bad_input():
    model = MLP(d_in=6, classes=3).eval()
    x = torch.randn(2, 6)
    with pytest.raises(ValueError, match="feature_mask"):
        pa.bshap(model, x, target=0, feature_mask=torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="feature_mask"):
        pa.bshap(model, x, target=0, feature_mask=torch.zeros(3, 6, dtype=torch.long))
    with pytest.raises(TypeError, match="feature_mask"):
        pa.bshap(model, x, target=0, feature_mask=torch.zeros(6))
    with pytest.raises(TypeError, match="feature_mask"):
        pa.bshap(model, x, target=0, feature_mask=[0, 1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="feature_mask.*same number of groups"):
        pa.bshap(model, x, target=0, feature_mask=torch.tensor([[0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 1]]))
    with pytest.raises(ValueError, match="max_exact_features"):
        pa.bshap(model, x, target=0, max_exact_features=21)
    with pytest.raises(ValueError, match="n_permutations"):
        pa.bshap(model, x, target=0, n_permutations=0)
    with pytest.raises(ValueError, match="baselines"):
        pa.bshap(model, x, torch.zeros(3, 6), target=0)
    with pytest.raises(ValueError, match="target"):
        pa.bshap(model, x, target=3)
    empty = pa.bshap(model, torch.zeros(0, 6), target=0)
    assert empty.shape == (0, 6)
