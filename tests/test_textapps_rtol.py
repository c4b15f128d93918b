"""Text data and text requests to a tolerance (docs/methods.md §14, §15): `pathattr attribute
--rtol` on a JSONL file and `parameters.rtol` in `pathattr serve`, on the tiny random BERT
folder of textapps_data.py (fp64).

Each text's map must be within rtol of a converged reference that pathattr has not computed
(Captum's LayerIntegratedGradients at 256 Gauss-Legendre steps), with --steps 2 given too
(a run that dropped --rtol would be far off); the per-text n_evaluations, error_estimate and
converged must be stored / answered beside the scores and equal what
`pathattr.text.attribute_tokens(..., rtol=)` reports called directly; an interrupted rtol run
must resume to the uninterrupted store; a bad rtol must be refused by name before any model call.
"""
import json
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("zarr")
pytest.importorskip("transformers")

import zarr  # noqa: E402

from pathattr.apps.cli import main  # noqa: E402
from pathattr.apps.job import text as job_text  # noqa: E402
from pathattr.apps.job.text import read_text_item  # noqa: E402
from textapps_data import kill_after_first_chunk, model_folder, served, texts, write_jsonl  # noqa: E402

from conftest import assert_close  # noqa: E402

RTOL = 0.01
N = 10
CHUNK = 4  # 10 texts: 3 job chunks


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return model_folder(tmp_path_factory.mktemp("hf") / "tiny-bert")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    t = texts(N, seed=7)
    rows = [{"text": s, "label": i % 3} for i, s in enumerate(t)]
    return t, [i % 3 for i in range(N)], write_jsonl(tmp_path_factory.mktemp("data") / "texts.jsonl", rows)


@pytest.fixture(scope="module")
def hf(folder):
    import pathattr.text as pt

    model, tok = pt.load_pretrained(str(folder), task="sequence_classification")
    return model.double().eval(), tok


def _flags(out, folder, path, method="ig", *extra):
    return ["attribute", "--out", str(out), "--model", str(folder), "--data", str(path), "--method", method,
            "--steps", "2", "--chunk-size", str(CHUNK), "--batch-size", "4", "--dtype", "fp64", "--target", "label",
            "--label-field", "label", *extra]


def _arrays(run):
    return dict(zarr.open_group(str(Path(run) / "store.zarr"), mode="r").arrays())


def _one_thread(fn, *a):
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # stores are compared byte for byte
    try:
        return fn(*a)
    finally:
        torch.set_num_threads(n)


def _captum_scores(hf, text, label, steps=256):
    """Captum's LayerIntegratedGradients on the word embeddings, one text, the pad baseline
    with [CLS] / [SEP] kept: per-token scores (the reference pathattr never computes)."""
    from captum.attr import LayerIntegratedGradients

    model, tok = hf
    ids = torch.tensor([tok(text)["input_ids"]])
    base = torch.where((ids == tok.cls_token_id) | (ids == tok.sep_token_id), ids, tok.pad_token_id)
    lig = LayerIntegratedGradients(lambda i, m: model(input_ids=i, attention_mask=m).logits,
                                   model.get_input_embeddings())
    attr = lig.attribute(ids, baselines=base, additional_forward_args=(torch.ones_like(ids),), target=label,
                         n_steps=steps, method="gausslegendre")
    return attr.sum(-1)[0].detach()


@pytest.mark.parametrize("method", ["ig", "idg", "left_ig"])
def test_rtol_job_stores_each_texts_cost_and_estimate_beside_its_scores(folder, data, hf, tmp_path, capsys, method):
    import pathattr.text as pt

    t, labels, path = data
    out = tmp_path / "run"
    assert main(_flags(out, folder, path, method, "--rtol", str(RTOL), "--log-json")) == 0
    stdout = capsys.readouterr().out
    arrays = _arrays(out)
    # the job's settings (--steps 2 still sets Left-IG's probe: n_probe = max(2, n_steps // 4))
    direct = pt.attribute_tokens(hf[0], t, tokenizer=hf[1], target=torch.tensor(labels), method=method, rtol=RTOL,
                                 n_steps=2, batch_size=4)
    assert direct.converged.all() and (direct.n_evaluations > 2).all()
    assert arrays["n_evaluations"][...].tolist() == direct.n_evaluations.tolist()
    assert arrays["converged"][...].tolist() == [1] * N
    assert_close(arrays["error_estimate"][...], direct.error_estimate, rtol=1e-5, atol=1e-9, what="error_estimate")
    assert (arrays["error_estimate"][...] <= RTOL).all()
    for i in range(N):
        row = read_text_item(arrays, i)
        assert row["n_evaluations"] == int(direct.n_evaluations[i]) and row["converged"] is True
        keep = direct.attention_mask[i].bool()
        scale = float(direct.scores[i][keep].abs().max())
        assert_close(row["scores"], direct.scores[i][keep], rtol=1e-6, atol=1e-7 * scale, what=f"text {i}")
    # The run's summary: per chunk in the JSON log, over the run in the manifest and the last line.
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    chunks = [e for e in events if e["event"] == "chunk"]
    assert sorted(e["chunk"] for e in chunks) == [0, 1, 2] and sum(e["converged"] for e in chunks) == N
    n_ev = arrays["n_evaluations"][...]
    for e in chunks:
        assert e["mean_evaluations"] == round(float(n_ev[e["chunk"] * CHUNK:(e["chunk"] + 1) * CHUNK].mean()), 2)
    tol = json.loads((out / "manifest.json").read_text())["tolerance"]
    assert tol == {"rtol": RTOL, "min_steps": 17, "max_steps": 1025, "items": N, "converged": N,
                   "evaluations": int(n_ev.sum()), "mean_evaluations": float(n_ev.mean()),
                   "max_evaluations": int(n_ev.max()),
                   "max_error_estimate": float(arrays["error_estimate"][...].max())}
    assert [e for e in events if e["event"] == "done"][0]["tolerance"] == tol
    ident = json.loads((out / "store.zarr" / "zarr.json").read_text())["attributes"]["pathattr_job"]
    assert ident["method_settings"]["rtol"] == RTOL and ident["method_settings"]["max_steps"] == 1025
    if method == "ig":  # the report says it too
        from pathattr.apps.job.report import write_report

        page = write_report(out, tmp_path / "r.html", n_examples=2).read_text()
        assert f"reached rtol</td><td><code>{N} of {N}</code>" in page and f"max {int(n_ev.max())}</code>" in page


def test_rtol_job_scores_are_within_rtol_of_captum_converged(folder, data, hf, tmp_path, capsys):
    """The stored token scores against Captum at 256 steps: the estimate is checked, not
    trusted. --steps 2 is given too: a run that ignored --rtol is off by far more."""
    pytest.importorskip("captum")
    t, labels, path = data
    assert main(_flags(tmp_path / "run", folder, path, "ig", "--rtol", str(RTOL), "--quiet")) == 0
    assert main(_flags(tmp_path / "two", folder, path, "ig", "--quiet")) == 0
    tol, two = _arrays(tmp_path / "run"), _arrays(tmp_path / "two")
    errs, errs2 = [], []
    for i in range(N):
        ref = _captum_scores(hf, t[i], labels[i]).numpy()
        errs.append(np.linalg.norm(read_text_item(tol, i)["scores"] - ref) / np.linalg.norm(ref))
        errs2.append(np.linalg.norm(read_text_item(two, i)["scores"] - ref) / np.linalg.norm(ref))
    # rtol bounds the embedding map's error; the token sums of a converged map are as close
    assert max(errs) <= 3 * RTOL, errs
    assert np.median(errs2) > 10 * RTOL, errs2  # 2 steps: what the same run without --rtol gives


class _Stop(BaseException):
    """Stands for a kill inside the loop (not caught by the job's error handling)."""


def _store_files(run):
    root = Path(run) / "store.zarr"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_interrupted_rtol_run_resumes_to_the_uninterrupted_store(folder, data, tmp_path, monkeypatch, capsys):
    path = data[2]
    ref, out = tmp_path / "ref", tmp_path / "run"
    assert _one_thread(main, _flags(ref, folder, path, "idg", "--rtol", str(RTOL), "--quiet")) == 0
    real = job_text.TextJob.compute
    calls = []

    def stop_at_third(self, x, y, start):
        calls.append(start)
        if len(calls) == 3:
            raise _Stop()
        return real(self, x, y, start)

    monkeypatch.setattr(job_text.TextJob, "compute", stop_at_third)
    with pytest.raises(_Stop):
        _one_thread(main, _flags(out, folder, path, "idg", "--rtol", str(RTOL), "--quiet"))
    assert sorted(p.name for p in (out / "chunks").glob("*.json")) == ["chunk-000000.json", "chunk-000001.json"]
    monkeypatch.setattr(job_text.TextJob, "compute", real)
    assert _one_thread(main, _flags(out, folder, path, "idg", "--rtol", str(RTOL), "--quiet")) == 0
    a, b = _store_files(out), _store_files(ref)
    assert "n_evaluations/zarr.json" in a and sorted(a) == sorted(b) and [k for k in a if a[k] != b[k]] == []
    # The tolerance is part of the store's identity: another rtol, or none, is refused by name.
    for extra, diff in ((["--rtol", "0.02"], r"method_settings\.rtol: 0\.01 -> 0\.02"),
                        (["--rtol", str(RTOL), "--set", "max_steps=65"], r"method_settings\.max_steps: 1025 -> 65"),
                        ([], r"method_settings\.rtol: 0\.01 -> '<absent>'")):
        assert main(_flags(out, folder, path, "idg", *extra, "--quiet")) == 2
        err = capsys.readouterr().err
        assert "different settings" in err and re.search(diff, err), err


@pytest.mark.slow
def test_sigkilled_rtol_run_resumes_to_the_uninterrupted_store(folder, tmp_path):
    """The CLI killed with SIGKILL after its second chunk, rerun: the store (scores and the
    per-text evaluations, estimates, convergence) equals an uninterrupted run's file for file."""
    import os
    import subprocess
    import sys

    path = write_jsonl(tmp_path / "t.jsonl", [{"text": s, "label": i % 3} for i, s in enumerate(texts(24, seed=9))])
    ref, out = tmp_path / "ref", tmp_path / "run"
    assert _one_thread(main, _flags(ref, folder, path, "ig", "--rtol", str(RTOL), "--quiet")) == 0
    cmd = [sys.executable, "-m", "pathattr"] + _flags(out, folder, path, "ig", "--rtol", str(RTOL), "--quiet")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    kill_after_first_chunk(cmd, out, env)
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert rerun.returncode == 0, rerun.stderr
    a, b = _store_files(out), _store_files(ref)
    assert "converged/zarr.json" in a and sorted(a) == sorted(b) and [k for k in a if a[k] != b[k]] == []
    tol = json.loads((out / "manifest.json").read_text())["tolerance"]
    assert tol["items"] == 24 and tol["evaluations"] == int(_arrays(ref)["n_evaluations"][...].sum())


@pytest.mark.parametrize("flags, message", [
    (["--rtol", "0"], r"--rtol must be a number in \(0, 1\), got 0"),
    (["--rtol", "1.5"], r"--rtol must be a number in \(0, 1\), got 1\.5"),
    (["--rtol", "nan"], r"--rtol must be a number in \(0, 1\), got nan"),
    (["--set", "max_steps=9"], r"--set max_steps bounds the samples of rtol mode: give --rtol too"),
    (["--rtol", "0.01", "--set", "min_steps=3"], r"--set min_steps must be an integer >= 5, got 3"),
    (["--rtol", "0.01", "--set", "max_steps=9"], r"--set max_steps \(9\) must be >= min_steps \(17\)"),
])
def test_bad_rtol_is_refused_by_name_before_any_model_call(folder, data, tmp_path, capsys, monkeypatch, flags,
                                                           message):
    def no_load(*a, **kw):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(job_text.ti, "load_text_model", no_load)
    rc = main(["attribute", "--out", str(tmp_path / "run"), "--model", str(folder), "--data", str(data[2]),
               *flags, "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and re.search(message, err), err
    assert not (tmp_path / "run").exists()


def test_image_job_takes_rtol_from_the_command_line(tmp_path, capsys):
    """--rtol reaches the image job too (it was dropped between the flag and the job), and
    its items' cost and estimate are stored and summed up as for texts."""
    import pathattr as pa
    from pathattr.data.digits import load_digits_model

    out = tmp_path / "run"
    assert main(["attribute", "--out", str(out), "--method", "ig", "--rtol", "0.02", "--limit", "6",
                 "--batch-size", "3"]) == 0
    line = capsys.readouterr().out
    ident = json.loads((out / "store.zarr" / "zarr.json").read_text())["attributes"]["pathattr_job"]
    assert ident["method_settings"]["rtol"] == 0.02
    arrays = _arrays(out)
    x = torch.as_tensor(arrays["preview_inputs"][:6])
    want = pa.Explainer(load_digits_model().eval(), "ig", rtol=0.02).attribute(x, return_details=True)
    assert arrays["n_evaluations"][...].tolist() == want.extras["n_evaluations"].tolist()
    assert arrays["converged"][...].tolist() == want.extras["converged"].int().tolist()
    assert_close(arrays["attributions"][...], want.attributions, rtol=1e-4, atol=1e-6, what="attributions")
    tol = json.loads((out / "manifest.json").read_text())["tolerance"]
    assert tol["items"] == 6 and tol["evaluations"] == int(want.extras["n_evaluations"].sum())
    assert f"rtol 0.02: {tol['converged']}/6 converged" in line


# -- the library call both apps rely on -----------------------------------------------------

def test_attribute_tokens_reports_per_text_details_in_the_users_order(hf):
    import pathattr.text as pt

    model, tok = hf
    t = texts(7, seed=11)
    res = pt.attribute_tokens(model, t, tokenizer=tok, rtol=RTOL, batch_size=3, max_padding=None,
                              return_details=True)  # buckets of 3 mixed lengths
    assert len(res.buckets) == 3
    for rows, d in zip(res.buckets, res.details):  # each bucket's engine result, put back in order
        for key in ("n_evaluations", "error_estimate", "converged"):
            assert getattr(res, key)[rows].tolist() == d.extras[key].cpu().tolist()
    assert res.text(2)["n_evaluations"] == int(res.n_evaluations[2]) and res.text(2)["converged"] is True
    fixed = pt.attribute_tokens(model, t[:2], tokenizer=tok, n_steps=8)
    assert fixed.converged is None and fixed.n_evaluations.tolist() == [8, 8]
    assert fixed.text(0)["converged"] is None


def test_attribute_tokens_deadline_stops_refining_after_the_first_round(hf):
    import pathattr.text as pt

    model, tok = hf
    t = texts(3, seed=12)
    cut = pt.attribute_tokens(model, t, tokenizer=tok, rtol=1e-9, deadline=time.monotonic())
    assert cut.n_evaluations.tolist() == [17] * 3 and not cut.converged.any()
    full = pt.attribute_tokens(model, t, tokenizer=tok, rtol=1e-9, max_steps=65)
    assert (full.n_evaluations > 17).all()
    with pytest.raises(TypeError, match="deadline must be a finite number"):
        pt.attribute_tokens(model, t, tokenizer=tok, rtol=RTOL, deadline="soon")


# -- pathattr serve ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(folder):
    pytest.importorskip("httpx")
    from pathattr.apps.serve import TextExplanationService, load_text_spec

    spec = load_text_spec(str(folder), dtype="fp64")
    svc = TextExplanationService(spec, "idg", max_batch=8, max_wait_ms=50, attribute_kwargs={"n_steps": 2})
    with served(svc) as client:
        yield svc, client


def _explain(client, body):
    return client.post("/v1/models/tiny-bert:explain", json=body)


def test_rtol_request_equals_the_library_and_reports_its_estimate(server, hf):
    import pathattr.text as pt

    _, client = server
    batch = texts(3, seed=13)
    r = _explain(client, {"instances": batch, "parameters": {"rtol": RTOL, "target": 1}})
    assert r.status_code == 200, r.text
    ex = r.json()["explanations"]
    want = pt.attribute_tokens(hf[0], batch, tokenizer=hf[1], target=1, method="idg", rtol=RTOL)
    assert [e["n_evaluations"] for e in ex] == want.n_evaluations.tolist()
    assert all(e["converged"] is True and 0 <= e["error_estimate"] <= RTOL for e in ex)
    for i, e in enumerate(ex):
        keep = want.attention_mask[i].bool()
        assert_close(e["scores"], want.scores[i][keep], rtol=1e-9, atol=1e-12, what=f"text {i}")
        assert_close(e["error_estimate"], want.error_estimate[i], rtol=1e-9, atol=0, what="estimate")
    plain = _explain(client, {"instances": batch[:1], "parameters": {"target": 1}}).json()["explanations"][0]
    assert "error_estimate" not in plain and "converged" not in plain  # a request without rtol: as before


@pytest.mark.parametrize("bad", [0, 1, -0.5, "0.01", True, [0.01], float("inf")])
def test_bad_rtol_request_is_a_422_naming_it(server, bad):
    _, client = server
    body = json.dumps({"instances": ["the cat"], "parameters": {"rtol": bad}}, allow_nan=True)
    r = client.post("/v1/models/tiny-bert:explain", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "parameters.rtol" in r.json()["error"], r.text


def test_rtol_outside_the_services_step_bounds_is_a_422(folder):
    from pathattr.apps.serve import TextExplanationService, load_text_spec
    from pathattr.apps.serve.codec import BadRequest

    spec = load_text_spec(str(folder), dtype="fp64")
    with pytest.raises(ValueError, match="max_steps bounds the samples of rtol mode"):
        TextExplanationService(spec, "ig", auto_warmup=False, attribute_kwargs={"max_steps": 9})
    svc = TextExplanationService(spec, "ig", auto_warmup=False, attribute_kwargs={"rtol": 0.1, "max_steps": 9,
                                                                                  "min_steps": 9})
    assert svc.explainer_for(0.05) is svc.explainer_for(0.05)  # one per value: merged together
    with pytest.raises(BadRequest, match="parameters.rtol"):
        svc.explainer_for(2.0)


class _FakeResult:
    def __init__(self, n):
        self.n = n

    def text(self, j):
        return {"j": j}


def test_batcher_merges_only_requests_of_the_same_rtol_and_passes_the_deadline():
    """Queued [a, a, b, a]: three calls ([a, a], [b], [a]), never one call with b's rows run
    at a's settings; each call gets a refine-until time before its earliest deadline."""
    from pathattr.apps.serve.text import TextBatcher

    calls = []

    def make(name):
        def fn(ids, target, deadline=None):
            calls.append((name, len(ids), deadline))
            return _FakeResult(len(ids))
        return fn

    a, b = make("a"), make("b")
    batcher = TextBatcher(make("default"), max_batch=8, max_wait_ms=1)
    end = time.monotonic() + 30
    futs = [batcher.submit([[1, 2]], [None], deadline=end, explainer=ex) for ex in (a, a, b, a)]
    started = threading.Event()
    batcher.start(on_start=started.set)
    for f in futs:
        f.result(timeout=30)
    batcher.close(timeout=10)
    assert [(n, k) for n, k, _ in calls] == [("a", 2), ("b", 1), ("a", 1)]
    assert all(d is not None and d < end for _, _, d in calls)
