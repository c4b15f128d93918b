"""`pathattr attribute --references / --bank / --n-baselines` and `pathattr lpi-bank`.

What lands in the store is compared with the library's own functions called directly on
the same items and seeds (`pathattr.expected_gradients`, `local_path_integration`,
`integrated_gradients` with a distribution baseline), all in fp64 (--dtype fp64; the
store keeps float32, hence rtol 1e-6), and the per-item diagnostics with the model
called directly. A changed reference file is refused like any changed setting; a
missing or misplaced option is a JobError naming it. Bundled digits, 16 items, tiny J.
"""
import numpy as np
import pytest
import torch

pytest.importorskip("zarr")
pytest.importorskip("sklearn")

import pathattr  # noqa: E402
from conftest import assert_close  # noqa: E402
from jobfactories import open_store  # noqa: E402
from pathattr.apps.cli import main  # noqa: E402
from pathattr.data.digits import load_digits_data, load_digits_model  # noqa: E402
from pathattr.apps.job import JobConfig, JobError, run_job  # noqa: E402

N = 16
N_REFS = 120  # training digits in the reference file


_open = open_store


@pytest.fixture
def refs_file(tmp_path):
    refs = load_digits_data("train")[0][:N_REFS]
    path = tmp_path / "refs.npy"
    np.save(path, refs.numpy())
    return path, refs


def _items_fp64():
    model = load_digits_model().double()
    return model, load_digits_data("test")[0][:N].double()


def _forward(model, x, target):
    with torch.no_grad():
        return model(x).gather(1, target.view(-1, 1))[:, 0]


def test_eg_job_equals_expected_gradients_fp64(tmp_path, refs_file, one_thread, capsys):
    path, refs = refs_file
    out = tmp_path / "run"
    code = main(["attribute", "--out", str(out), "--method", "expected_gradients", "--references", str(path),
                 "--set", "n_references=4", "--set", "n_alphas=2", "--set", "seed=3", "--limit", str(N),
                 "--dtype", "fp64", "--quiet"])
    assert code == 0, capsys.readouterr().err
    s = _open(out)
    model, x = _items_fp64()
    res = pathattr.expected_gradients(model, x, refs.double(), n_references=4, n_alphas=2, seed=3,
                                      return_details=True)
    assert_close(s["attributions"], res.attributions, rtol=1e-6, atol=1e-8, what="EG job vs expected_gradients")
    assert_close(s["delta"], res.delta, rtol=1e-5, atol=1e-6, what="delta")
    assert (s["target"] == res.target.numpy()).all()
    # Diagnostics from the model itself: F(x), and the mean of F over the references drawn.
    assert_close(s["logit"], _forward(model, x, res.target), rtol=1e-6, atol=1e-6, what="logit")
    drawn = refs.double()[res.reference_index.reshape(-1)]
    f_refs = _forward(model, drawn, res.target.repeat_interleave(4)).view(N, 4).mean(1)
    assert_close(s["baseline_value"], f_refs, rtol=1e-6, atol=1e-6, what="baseline_value = mean F(r_j)")
    ident = _identity(out)
    assert ident["baseline"] is None and ident["references"]["path"] == str(path.resolve())
    assert len(ident["references"]["sha256"]) == 64 and "references" not in ident["method_settings"]


def _identity(out):
    import zarr

    return dict(zarr.open_group(str(out / "store.zarr"), mode="r").attrs["pathattr_job"])


def test_lpi_job_with_a_cli_bank_equals_local_path_integration(tmp_path, one_thread, capsys):
    bank_path = tmp_path / "bank.pt"
    assert main(["lpi-bank", "--out", str(bank_path), "--neighbourhoods", "3", "--references", "4",
                 "--n-init", "2"]) == 0
    assert "3 neighbourhoods x 4 references from 1437 samples" in capsys.readouterr().out
    bank = pathattr.ReferenceBank.load(bank_path)
    # The default data is the bundled training split: the same bank as built directly from it.
    direct = pathattr.build_reference_bank(load_digits_model(), load_digits_data("train")[0], 3, 4, n_init=2)
    assert torch.equal(bank.indices, direct.indices) and torch.equal(bank.references, direct.references)

    out = tmp_path / "run"
    code = main(["attribute", "--out", str(out), "--method", "lpi", "--bank", str(bank_path), "--set", "seed=5",
                 "--limit", str(N), "--dtype", "fp64", "--batch-size", "8", "--quiet"])
    assert code == 0, capsys.readouterr().err
    s = _open(out)
    model, x = _items_fp64()
    bank64 = pathattr.ReferenceBank(bank.references, bank.densities, bank.centres, bank.indices, bank.sizes,
                                        pathattr.baselines.lpi_bank.model_fingerprint(model), bank.settings)
    parts = [pathattr.local_path_integration(model, x[i:i + 8], bank64, seed=5, return_details=True)
             for i in (0, 8)]  # the job's batches of 8: LPI's alphas are drawn per call
    attr = torch.cat([p.attributions for p in parts])
    assert_close(s["attributions"], attr, rtol=1e-6, atol=1e-8, what="LPI job vs local_path_integration")
    assert_close(s["delta"], torch.cat([p.delta for p in parts]), rtol=1e-5, atol=1e-6, what="delta")
    assert_close(s["baseline_value"], torch.cat([p.start_value for p in parts]), rtol=1e-6, atol=1e-6,
                 what="baseline_value = sum rho_j F(r_j)")
    assert np.isfinite(s["baseline_value"]).all()
    ident = _identity(out)
    assert ident["bank"]["path"] == str(bank_path.resolve()) and "bank" not in ident["method_settings"]


def test_ig_with_references_is_a_distribution_baseline(tmp_path, refs_file, one_thread):
    path, refs = refs_file
    out = tmp_path / "run"
    run_job(JobConfig(out=str(out), method="ig", steps=8, references=str(path), n_baselines=3, limit=N,
                      dtype="fp64", quiet=True))
    s = _open(out)
    model, x = _items_fp64()
    dist = pathattr.distribution_baseline(refs.double(), n_baselines=3)
    res = pathattr.integrated_gradients(model, x, dist, n_steps=8, return_details=True)
    assert_close(s["attributions"], res.attributions, rtol=1e-6, atol=1e-8, what="IG_D job vs integrated_gradients")
    assert_close(s["baseline_value"], res.start_value, rtol=1e-6, atol=1e-6, what="mean F(x'_k)")
    assert _identity(out)["n_baselines"] == 3


def test_changed_reference_file_is_refused_and_the_same_file_resumes(tmp_path, refs_file, one_thread):
    path, refs = refs_file
    out = tmp_path / "run"
    cfg = dict(out=str(out), method="expected_gradients", references=str(path), limit=8,
               method_settings={"n_references": 2}, quiet=True)
    run_job(JobConfig(**cfg))
    assert run_job(JobConfig(**cfg))["throughput"]["items"] == 0  # same file: resumed, nothing left
    np.save(path, refs.flip(0).numpy())  # same path, same shape, other content
    with pytest.raises(JobError, match="references.sha256"):
        run_job(JobConfig(**cfg))
    other = tmp_path / "refs.npz"
    np.savez(other, a=refs.numpy(), b=refs.flip(0).numpy())
    with pytest.raises(JobError, match="references.path"):
        run_job(JobConfig(**dict(cfg, references=f"{other}:a")))


@pytest.mark.parametrize("cfg, match", [
    (dict(method="expected_gradients"), "needs a reference set: give --references"),
    (dict(method="lpi"), "needs a reference bank: give --bank"),
    (dict(method="left_ig", references="REFS"), "--references applies to expected_gradients"),
    (dict(method="ig", bank="REFS"), "--bank applies to method 'lpi' only"),
    (dict(method="lpi", bank="REFS", references="REFS"), "--references does not apply to method 'lpi'"),
    (dict(method="ig", n_baselines=2), "--n-baselines applies to"),
    (dict(method="expected_gradients", references="REFS", n_baselines=2), "--n-baselines applies to"),
    (dict(method="expected_gradients", references="REFS", baseline=0.5), "leave --baseline out"),
    (dict(method="expected_gradients", references="REFS", method_settings={"references": "x"}),
     "with --references FILE, not --set references"),
    (dict(method="ig", references="REFS", method_settings={"n_baselines": 2}), "with --n-baselines K, not --set"),
    (dict(method="expected_gradients", references="MISSING"), "references file not found"),
    (dict(method="expected_gradients", references="WRONG"), r"have shape \(5, 1, 4, 8\); expected \(R, 1, 8, 8\)"),
    (dict(method="expected_gradients", references="NPZ:nope"), "has no array 'nope'"),
    (dict(method="lpi", bank="REFS"), "is not a pathattr LPI reference bank"),
])
def test_missing_or_misplaced_options_are_clear_errors(tmp_path, refs_file, cfg, match):
    path, refs = refs_file
    np.save(tmp_path / "wrong.npy", np.zeros((5, 1, 4, 8), np.float32))
    np.savez(tmp_path / "r.npz", x=refs.numpy())
    names = {"REFS": str(path), "MISSING": str(tmp_path / "nope.npy"), "WRONG": str(tmp_path / "wrong.npy"),
             "NPZ:nope": f"{tmp_path / 'r.npz'}:nope"}
    cfg = {k: names.get(v, v) if isinstance(v, str) else v for k, v in cfg.items()}
    with pytest.raises(JobError, match=match):
        run_job(JobConfig(out=str(tmp_path / "run"), limit=4, quiet=True, **cfg))
    assert not (tmp_path / "run" / "store.zarr").exists()


def test_cli_missing_references_exits_2_naming_the_option(tmp_path, capsys):
    assert main(["attribute", "--out", str(tmp_path / "run"), "--method", "expected_gradients", "--limit", "4"]) == 2
    assert "--references FILE" in capsys.readouterr().err


def test_bank_for_another_model_is_refused(tmp_path, capsys):
    bank_path = tmp_path / "bank.pt"
    assert main(["lpi-bank", "--out", str(bank_path), "--neighbourhoods", "2", "--references", "2",
                 "--n-init", "1", "--limit", "200"]) == 0
    with pytest.raises(JobError, match="built for another model"):
        run_job(JobConfig(out=str(tmp_path / "run"), method="lpi", bank=str(bank_path), limit=4, quiet=True,
                          model="jobfactories:tiny_cnn"))
    assert main(["lpi-bank", "--out", str(tmp_path / "b2.pt"), "--neighbourhoods", "0"]) == 2
    assert "n_neighbourhoods" in capsys.readouterr().err
