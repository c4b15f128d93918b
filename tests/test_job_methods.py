"""`pathattr attribute` with every method: the store holds what the library computes on
the same batches (fp64), a delta exactly where the method has a completeness property
(AGI has none), model-dependent defaults adapt (AGI's topk on a 3-class model), ICG on a
plain model says what it needs, and the run's timing and bar cover every item, the
first batch (computed while the store is created) included."""
import json
import time

import numpy as np
import pytest
import torch

pytest.importorskip("zarr")

import pathattr as pa  # noqa: E402
from conftest import assert_close  # noqa: E402
from jobfactories import open_store, tiny_certainty_cnn, tiny_cnn, tiny_dataset  # noqa: E402
from pathattr.apps.cli import main  # noqa: E402
from pathattr.apps.job import JobConfig, run_job  # noqa: E402
from pathattr.apps.job import runner as runner_mod  # noqa: E402
from pathattr.methods import REGISTRY  # noqa: E402

N, BATCH = 6, 3
# Small settings so each method runs in well under a second on the tiny CNN.
CASES = {
    "ig": ("jobfactories:tiny_cnn", {"n_steps": 4}),
    "idg": ("jobfactories:tiny_cnn", {"n_steps": 8}),
    "left_ig": ("jobfactories:tiny_cnn", {"n_steps": 4}),
    "guided_ig": ("jobfactories:tiny_cnn", {"n_steps": 4}),
    "agi": ("jobfactories:tiny_cnn", {"max_iter": 3}),  # topk left at its default: adapts to 3 classes
    "bshap": ("jobfactories:tiny_cnn", {"n_permutations": 2}),
    "icg": ("jobfactories:tiny_certainty_cnn", {"n_steps": 4}),
}
FACTORIES = {"jobfactories:tiny_cnn": tiny_cnn, "jobfactories:tiny_certainty_cnn": tiny_certainty_cnn}


def test_every_method_is_covered():
    # expected_gradients and lpi need a reference file / bank: tests/test_job_refs.py runs them.
    assert set(CASES) | {"expected_gradients", "lpi"} == set(REGISTRY)


@pytest.fixture
def npy(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, tiny_dataset().tensors[0][:N].numpy())
    return path


@pytest.mark.parametrize("method", sorted(CASES))
def test_every_method_runs_in_the_job_and_equals_the_library(method, tmp_path, npy, one_thread):
    model_spec, settings = CASES[method]
    out = tmp_path / "run"
    run_job(JobConfig(out=str(out), method=method, method_settings=dict(settings), model=model_spec,
                      data=str(npy), dtype="fp64", batch_size=BATCH, chunk_size=BATCH, quiet=True))
    s = open_store(out)
    model = FACTORIES[model_spec]().double().eval()
    x = torch.from_numpy(np.load(npy)).double()
    ex = pa.Explainer(model, method, **settings)
    parts = [ex.attribute(x[i:i + BATCH], return_details=True) for i in range(0, N, BATCH)]
    assert_close(s["attributions"], torch.cat([p.attributions for p in parts]), rtol=1e-6, atol=1e-9,
                 what=f"{method}: job vs library")
    assert (s["target"] == torch.cat([p.target for p in parts]).numpy()).all()
    has_delta = parts[0].delta is not None
    assert ("delta" in s) == has_delta and has_delta == (method != "agi")
    if has_delta:
        assert_close(s["delta"], torch.cat([p.delta for p in parts]), rtol=1e-5, atol=1e-7, what="delta")
    if method == "agi":
        assert parts[0].settings["topk"] == 2  # min(20, C - 1) for the 3-class model


def test_icg_on_a_plain_model_says_what_it_needs(tmp_path, npy, capsys):
    out = tmp_path / "run"
    assert main(["attribute", "--out", str(out), "--quiet", "--method", "icg", "--steps", "4",
                 "--model", "jobfactories:tiny_cnn", "--data", str(npy)]) == 2
    err = capsys.readouterr().err
    assert "needs a certainty-aware model" in err and "1 value + 1 certainty channels = 2" in err, err
    assert "CertaintyModel" in err and not out.exists()


def test_timing_and_bar_cover_the_first_batch(tmp_path, npy, monkeypatch, capsys):
    """One chunk of one batch: its only batch is the one computed while the store is made.
    Every compute call sleeps 0.3 s, so the run's time, chunk 0's time and the bar must all
    see at least that (before: 0 items timed, a bar created after the batch)."""
    events = []
    compute = runner_mod._Job.compute

    def slow(self, *a, **kw):
        events.append(("compute", self.progress is not None))
        time.sleep(0.3)
        return compute(self, *a, **kw)

    monkeypatch.setattr(runner_mod._Job, "compute", slow)
    out = tmp_path / "run"
    assert main(["attribute", "--out", str(out), "--steps", "4", "--model", "jobfactories:tiny_cnn",
                 "--data", str(npy), "--batch-size", str(N), "--chunk-size", str(N), "--log-json"]) == 0
    cap = capsys.readouterr()
    assert events == [("compute", True)]  # the bar existed before the first model call
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["throughput"]["items"] == N and manifest["throughput"]["wall_seconds"] >= 0.3
    assert manifest["throughput"]["items_per_s"] <= N / 0.3
    chunk = [e for e in (json.loads(line) for line in cap.out.splitlines() if line.startswith("{"))
             if e["event"] == "chunk"]
    assert len(chunk) == 1 and chunk[0]["seconds"] >= 0.3 and chunk[0]["items"] == N
    assert f"{N}/{N}" in cap.err  # the bar counted the batch computed at creation
