"""Per-request rtol in the service (docs/methods.md §14): refined within the request's
deadline, equal to the library's rtol call, and cut short (not failed) when time runs out."""
from __future__ import annotations

import httpx
import pytest
import torch
from torch.testing import assert_close

import pathattr as pa
from pathattr.apps.serve import ExplanationService, ModelSpec, build_app
from pathattr.apps.serve.runner import ServerThread
from pathattr.data.digits import load_digits_data, load_digits_model

NAME = "digits"
EXPLAIN = f"/v1/models/{NAME}:explain"


@pytest.fixture(scope="module")
def client():
    svc = ExplanationService(ModelSpec(NAME, load_digits_model().eval(), (1, 8, 8), num_classes=10), "idg",
                             max_batch=8, max_wait_ms=20)
    with ServerThread(build_app(svc)) as srv:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            for _ in range(1500):
                if c.get("/readyz").status_code == 200:
                    break
                import time
                time.sleep(0.02)
            yield c


def test_rtol_request_equals_the_library_and_reports_its_estimate(client):
    x, _ = load_digits_data("test")
    x = x[:3]
    r = client.post(EXPLAIN, json={"instances": x.tolist(), "parameters": {"rtol": 0.01, "target": 2}})
    assert r.status_code == 200, r.text
    items = r.json()["explanations"]
    want = pa.Explainer(load_digits_model().eval(), "idg", rtol=0.01).attribute(x, target=2, return_details=True)
    got = torch.tensor([e["attributions"] for e in items])
    assert_close(got, want.attributions, rtol=1e-4, atol=1e-5)
    assert [e["n_evaluations"] for e in items] == want.extras["n_evaluations"].tolist()
    assert all(e["converged"] for e in items)
    assert all(e["error_estimate"] <= 0.01 for e in items)
    plain = client.post(EXPLAIN, json={"instances": x.tolist()}).json()["explanations"]
    assert "error_estimate" not in plain[0]  # a request without rtol answers as before


def test_rtol_request_cut_short_by_its_deadline_answers_with_what_it_has(client):
    x, _ = load_digits_data("test")
    r = client.post(EXPLAIN, json={"instances": x[:2].tolist(),
                                   "parameters": {"rtol": 1e-9, "timeout_ms": 400, "target": 0}})
    assert r.status_code == 200, r.text
    items = r.json()["explanations"]
    assert not any(e["converged"] for e in items) and all(e["error_estimate"] > 1e-9 for e in items)


@pytest.mark.parametrize("bad", [0, 1, -0.5, "0.01", True, [0.01]])
def test_bad_rtol_is_a_422_naming_it(client, bad):
    r = client.post(EXPLAIN, json={"instances": [[0.0] * 64], "parameters": {"rtol": bad}})
    assert r.status_code == 422 and "rtol" in r.json()["error"]
