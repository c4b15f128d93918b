"""Local Path Integration (docs/methods.md §6): the reference bank (clustering, file round trip,
model fingerprint) and the attribution against the one-at-a-time reference."""
import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

import pathattr as pa
from conftest import assert_close
from pathattr.baselines.lpi_bank import ReferenceBank, build_reference_bank, model_fingerprint
from pathattr.reference import lpi as ref
from testmodels import GatedMLP, SmoothMLP

N_INIT = 3  # fewer k-means restarts than the default 10 keeps the tests fast


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(123)
    model = SmoothMLP(d_in=6, classes=3).double().eval()
    data = torch.randn(120, 6, dtype=torch.float64)
    bank = build_reference_bank(model, data, n_neighbourhoods=3, n_references=4, seed=1, batch_size=50, n_init=N_INIT)
    return model, data, bank


def test_bank_is_the_papers_two_level_clustering(setup):
    """Recomputed independently: logits one sample at a time, k-means into C
    neighbourhoods, k-means into m sub-clusters each, the real sample nearest each
    sub-centroid, density = sub-cluster size / neighbourhood size."""
    model, data, bank = setup
    with torch.no_grad():
        logits = torch.stack([model(data[i:i + 1])[0] for i in range(len(data))]).numpy()
    top = KMeans(n_clusters=3, random_state=1, n_init=N_INIT).fit(logits)
    assert np.allclose(np.sort(top.cluster_centers_, 0), np.sort(bank.centres.numpy(), 0), atol=1e-9)
    for c in range(3):
        # match neighbourhoods by centre (k-means labels are arbitrary but seeded)
        c_top = int(np.argmin(np.linalg.norm(top.cluster_centers_ - bank.centres[c].numpy(), axis=1)))
        members = np.flatnonzero(top.labels_ == c_top)
        assert bank.sizes[c] == len(members)
        sub = KMeans(n_clusters=4, random_state=1, n_init=N_INIT).fit(logits[members])
        for s in range(4):
            own = members[sub.labels_ == s]
            nearest = own[np.argmin(np.linalg.norm(logits[own] - sub.cluster_centers_[s], axis=1))]
            assert int(bank.indices[c, s]) == nearest
            assert float(bank.densities[c, s]) == len(own) / len(members)
            assert torch.equal(bank.references[c, s], data[nearest])
    assert_close(bank.densities.sum(1), torch.ones(3), rtol=0, atol=1e-15, what="densities sum to 1")


@pytest.mark.parametrize("n_alphas", [1, 2])
@pytest.mark.parametrize("chunk", [None, 5])
def test_lpi_equals_reference(setup, n_alphas, chunk):
    model, _, bank = setup
    torch.manual_seed(7)
    x = torch.randn(5, 6, dtype=torch.float64)
    res = pa.local_path_integration(model, x, bank, n_alphas=n_alphas, seed=3, internal_batch_size=chunk,
                                    return_details=True)
    want, hoods, delta = ref.lpi(model, x, bank.references, bank.densities, bank.centres, n_alphas=n_alphas, seed=3)
    assert_close(res.attributions, want, rtol=1e-6, atol=1e-12, what="LPI")
    assert_close(res.delta, delta, rtol=1e-6, atol=1e-12, what="LPI delta")
    assert torch.equal(res.reference_index, bank.indices[hoods])
    assert torch.equal(res.target, model(x).argmax(1))
    assert res.alphas.shape == (5, 4, n_alphas) and 0.01 <= float(res.alphas.min()) and float(res.alphas.max()) <= 0.99


def test_lpi_with_forward_args_and_targets(seed):
    model = GatedMLP(d_in=5, classes=3).double().eval()
    data = torch.randn(40, 5, dtype=torch.float64)
    gate = torch.ones(16, dtype=torch.float64)  # a shared (unbatched) extra arg for the bank's logits
    wrapped = lambda z, g=gate: model(z, g)  # noqa: E731
    bank = build_reference_bank(wrapped, data, 2, 3, seed=0, n_init=N_INIT)
    x = torch.randn(3, 5, dtype=torch.float64)
    got = pa.local_path_integration(wrapped, x, bank, target=[2, 0, 1], seed=5)
    want = ref.lpi(wrapped, x, bank.references, bank.densities, bank.centres, targets=[2, 0, 1], seed=5)[0]
    assert_close(got, want, rtol=1e-6, atol=1e-12, what="LPI, a callable model")


def test_lpi_linear_model_is_exact():
    """F = w.x + b: LPI = w * (x - sum_j rho_j r_j) whatever the alphas; delta 0."""
    torch.manual_seed(3)
    lin = torch.nn.Linear(4, 3).double()
    data = torch.randn(50, 4, dtype=torch.float64)
    bank = build_reference_bank(lin, data, 2, 3, seed=0, n_init=N_INIT)
    x = torch.randn(4, 4, dtype=torch.float64)
    res = pa.local_path_integration(lin, x, bank, target=1, n_alphas=2, return_details=True)
    hood = bank.assign(lin(x).detach())
    mean_ref = (bank.densities[hood].unsqueeze(-1) * bank.references[hood]).sum(1)
    assert_close(res.attributions, lin.weight.detach()[1] * (x - mean_ref), rtol=1e-12, atol=1e-12, what="LPI linear")
    assert_close(res.delta, torch.zeros(4), rtol=0, atol=1e-12, what="LPI delta")


def test_small_neighbourhoods_are_padded_with_zero_density():
    torch.manual_seed(5)
    model = SmoothMLP(d_in=3, classes=2).double().eval()
    data = torch.randn(7, 3, dtype=torch.float64)
    bank = build_reference_bank(model, data, 3, 5, seed=0, n_init=N_INIT)
    assert bank.references.shape == (3, 5, 3)
    assert_close(bank.densities.sum(1), torch.ones(3), rtol=0, atol=1e-15, what="densities")
    assert int((bank.densities > 0).sum()) == 7  # every sample its own sub-cluster, the rest padding
    x = torch.randn(2, 3, dtype=torch.float64)
    got = pa.local_path_integration(model, x, bank, seed=2)
    want = ref.lpi(model, x, bank.references, bank.densities, bank.centres, seed=2)[0]
    assert_close(got, want, rtol=1e-6, atol=1e-12, what="LPI with padding")


def test_bank_round_trip_and_dataset_input(setup, tmp_path):
    model, data, bank = setup
    path = tmp_path / "bank.pt"
    bank.save(path)
    loaded = ReferenceBank.load(path)
    for name in ["references", "densities", "centres", "indices", "sizes"]:
        assert torch.equal(getattr(loaded, name), getattr(bank, name)), name
    assert loaded.fingerprint == bank.fingerprint == model_fingerprint(model)
    assert loaded.settings == bank.settings
    x = torch.randn(3, 6, dtype=torch.float64)
    assert torch.equal(pa.local_path_integration(model, x, loaded), pa.local_path_integration(model, x, bank))
    ds = torch.utils.data.TensorDataset(data, torch.zeros(len(data)))
    again = build_reference_bank(model, ds, n_neighbourhoods=3, n_references=4, seed=1, batch_size=50, n_init=N_INIT)
    assert torch.equal(again.indices, bank.indices) and torch.equal(again.references, bank.references)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="path.*not a pathattr LPI reference bank"):
        ReferenceBank.load(other)


def test_bank_from_another_model_is_refused(setup):
    model, _, bank = setup
    x = torch.randn(2, 6, dtype=torch.float64)
    other = SmoothMLP(d_in=6, classes=3).double().eval()
    with pytest.raises(ValueError, match="bank was built for another model"):
        pa.local_path_integration(other, x, bank)
    changed = SmoothMLP(d_in=6, classes=3).double().eval()
    changed.load_state_dict(model.state_dict())
    pa.local_path_integration(changed, x, bank)  # same weights, same fingerprint
    with torch.no_grad():
        changed.net[1].weight[0, 0] += 1e-3  # modified in place after the check passed once
    with pytest.raises(ValueError, match="bank was built for another model"):
        pa.local_path_integration(changed, x, bank)


def test_bad_input(setup):
    model, data, bank = setup
    x = torch.randn(2, 6, dtype=torch.float64)
    with pytest.raises(TypeError, match="bank"):
        pa.local_path_integration(model, x, None)
    with pytest.raises(TypeError, match="bank"):
        pa.Explainer(model, method="lpi")
    with pytest.raises(ValueError, match="baselines"):
        pa.Explainer(model, method="lpi", bank=bank).attribute(x, baselines=torch.zeros(2, 6))
    with pytest.raises(ValueError, match="inputs"):
        pa.local_path_integration(model, torch.randn(2, 6, 1, dtype=torch.float64), bank)
    for bad in [(0.5, 0.5), (-0.1, 0.9), (0.1, 1.5), 0.5, (0.1,)]:
        with pytest.raises(ValueError, match="alpha_range"):
            pa.local_path_integration(model, x, bank, alpha_range=bad)
    with pytest.raises(ValueError, match="n_alphas"):
        pa.local_path_integration(model, x, bank, n_alphas=0)
    with pytest.raises(ValueError, match="target"):
        pa.local_path_integration(model, x, bank, target=3)
    with pytest.raises(ValueError, match="n_neighbourhoods"):
        build_reference_bank(model, data[:2], 3, 2)
    with pytest.raises(ValueError, match="dataset.*empty"):
        build_reference_bank(model, data[:0], 1, 1)
    with pytest.raises(ValueError, match="n_references"):
        build_reference_bank(model, data, 2, 0)
    with pytest.raises(ValueError, match="model"):
        build_reference_bank(lambda z: z.sum(1), data, 2, 2)
    with pytest.raises(TypeError, match="path"):
        ReferenceBank.load(123)
