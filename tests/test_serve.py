"""`pathattr.apps.serve` end to end: a real uvicorn server on a free loopback port and a
real HTTP client (httpx). Attributions must equal the library call on the same
inputs; batching must show in /metrics; every bad input gets its 4xx with a JSON body
and leaves the worker alive."""
import asyncio
import base64
import io
import json
import logging
import re
import threading
import time

import httpx
import numpy as np
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

import pathattr as pa
from pathattr.data.digits import load_digits_data, load_digits_model
from pathattr.apps.serve import ExplanationService, ModelSpec, ServerThread, build_app

from conftest import assert_close

NAME = "digits"
EXPLAIN = f"/v1/models/{NAME}:explain"
TS_EXPLAIN = f"/explanations/{NAME}"
MAX_BATCH = 16
MAX_BODY = 64 << 10


def _service(**kw):
    model = load_digits_model().eval()
    opts = dict(max_batch=MAX_BATCH, max_wait_ms=40, max_body_bytes=MAX_BODY)
    opts.update(kw)
    return ExplanationService(ModelSpec(NAME, model, (1, 8, 8), num_classes=10), "idg", **opts)


def _wait_ready(client, timeout=30.0):
    end = time.monotonic() + timeout
    while client.get("/readyz").status_code != 200:
        if time.monotonic() > end:
            raise AssertionError("server never became ready")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def server():
    svc = _service()
    with ServerThread(build_app(svc)) as srv:
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            _wait_ready(client)
            yield srv, svc, client


@pytest.fixture(scope="module")
def digits():
    x, _ = load_digits_data("test")
    return x


def _library(x, target=None):
    """The plain library call, with a fresh Explainer (shares nothing with the server)."""
    return pa.Explainer(load_digits_model().eval(), "idg").attribute(x, target=target)


def _attr(body):
    return torch.tensor([e["attributions"] for e in body["explanations"]], dtype=torch.float64)


def _metric(client, name):
    """{(labels...): value} of one metric family's samples named `name`."""
    out = {}
    for fam in text_string_to_metric_families(client.get("/metrics").text):
        for s in fam.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_attributions_equal_the_library_call(server, digits):
    _, svc, client = server
    x = digits[:5]
    r = client.post(EXPLAIN, json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == NAME and body["method"] == "idg"
    want = _library(x)
    targets = [e["target"] for e in body["explanations"]]
    assert targets == load_digits_model().eval()(x).argmax(1).tolist()
    # batch composition may change the float32 summation order: relative error ~1e-7
    assert_close(_attr(body), want, rtol=1e-5, atol=1e-4)


def test_torchserve_route_targets_and_base64(server, digits):
    _, _, client = server
    x = digits[5:9].double()  # float64 in, cast to the model's float32
    inst = [{"b64": base64.b64encode(a.numpy().astype("<f8").tobytes()).decode(), "dtype": "float64",
             "shape": [1, 8, 8]} for a in x]
    tgt = [3, None, 7, 0]
    r = client.post(TS_EXPLAIN, json={"instances": inst, "parameters": {"target": tgt, "encoding": "base64",
                                                                        "dtype": "float16"}})
    assert r.status_code == 200, r.text
    exps = r.json()["explanations"]
    top = load_digits_model().eval()(x.float()).argmax(1).tolist()
    assert [e["target"] for e in exps] == [3, top[1], 7, 0]
    want = _library(x.float(), target=[3, top[1], 7, 0])
    for e, w in zip(exps, want):
        a = e["attributions"]
        assert a["dtype"] == "float16" and a["shape"] == [1, 8, 8]
        got = np.frombuffer(base64.b64decode(a["b64"]), dtype="<f2").reshape(1, 8, 8)
        # float16 rounding of the same numbers: half an ulp of float16, relative 2**-11
        assert_close(torch.from_numpy(got.astype(np.float64)), w, rtol=2 ** -10, atol=1e-4)


def test_concurrent_requests_are_batched_and_routed_back(server, digits):
    _, _, client = server
    before = _metric(client, "pathattr_batch_requests_bucket")
    xs = [digits[10 + i: 11 + i + i % 3] for i in range(12)]  # 1 to 3 instances each

    async def fire():
        async with httpx.AsyncClient(base_url=client.base_url, timeout=30) as ac:
            return await asyncio.gather(*[ac.post(EXPLAIN, json={"instances": x.tolist()}) for x in xs])

    answers = asyncio.run(fire())
    for x, r in zip(xs, answers):  # each caller gets its own rows back
        assert r.status_code == 200, r.text
        assert_close(_attr(r.json()), _library(x), rtol=1e-5, atol=1e-4)
    after = _metric(client, "pathattr_batch_requests_bucket")  # requests merged per call, this test only
    inf, one = (("le", "+Inf"),), (("le", "1.0"),)
    calls = after[inf] - before.get(inf, 0.0)
    merged = calls - (after[one] - before.get(one, 0.0))
    assert calls < len(xs), f"{len(xs)} concurrent requests took {calls} calls: no batching"
    assert merged >= 1  # some call attributed more than one request
    req = _metric(client, "pathattr_requests_total")
    assert req[(("code", "200"), ("route", "kserve"))] >= len(xs)
    assert "pathattr_queue_depth" in client.get("/metrics").text


def test_heatmap_png_shows_the_attributions(server, digits):
    from matplotlib import colormaps
    from PIL import Image

    _, _, client = server
    r = client.post(EXPLAIN, json={"instances": digits[:1].tolist(), "parameters": {"heatmap": True}})
    assert r.status_code == 200, r.text
    e = r.json()["explanations"][0]
    img = np.asarray(Image.open(io.BytesIO(base64.b64decode(e["heatmap_png"]))).convert("RGB"))
    assert img.shape == (64, 64, 3)  # 8x8 upscaled 8x, nearest
    mag = np.abs(np.asarray(e["attributions"], dtype=np.float64)).sum(0)
    cmap = colormaps["inferno"]
    hi = np.percentile(mag, 99)
    for (i, j) in [np.unravel_index(mag.argmax(), mag.shape), np.unravel_index(mag.argmin(), mag.shape)]:
        want = (np.asarray(cmap(min(mag[i, j] / hi, 1.0))[:3]) * 255).astype(np.uint8)
        np.testing.assert_array_equal(img[i * 8 + 3, j * 8 + 3], want)


def _b64(arr, dtype="float32"):
    return {"b64": base64.b64encode(np.asarray(arr, dtype=dtype).tobytes()).decode(), "dtype": dtype,
            "shape": list(np.shape(arr))}


BAD = {
    "malformed JSON": (400, dict(content=b'{"instances": [[[0.1, 0.2]]')),
    "not JSON at all": (400, dict(content=b"\xff\xfe garbage")),
    "no instances": (422, dict(json={"inputs": []})),
    "empty instances": (422, dict(json={"instances": []})),
    "wrong shape": (422, dict(json={"instances": [np.zeros((1, 8, 7)).tolist()]})),
    "flat instead of (1,8,8)": (422, dict(json={"instances": [np.zeros(64).tolist()]})),
    "ragged": (422, dict(json={"instances": [[[[0.0] * 8] * 7 + [[0.0] * 3]]]})),
    "strings": (422, dict(json={"instances": [[[["a"] * 8] * 8]]})),
    "NaN in a list": (422, dict(content=b'{"instances": [' + json.dumps(np.zeros((1, 8, 8)).tolist()).replace(
        "0.0", "NaN", 1).encode() + b"]}")),
    "inf in base64": (422, dict(json={"instances": [_b64(np.full((1, 8, 8), np.inf))]})),
    "integer dtype": (422, dict(json={"instances": [_b64(np.zeros((1, 8, 8)), "int32")]})),
    "base64 size mismatch": (422, dict(json={"instances": [dict(_b64(np.zeros((1, 8, 8))), shape=[1, 8, 9])]})),
    "invalid base64": (422, dict(json={"instances": [{"b64": "!!!", "dtype": "float32", "shape": [1, 8, 8]}]})),
    "target out of range": (422, dict(json={"instances": [np.zeros((1, 8, 8)).tolist()], "parameters": {"target": 10}})),
    "unknown parameter": (422, dict(json={"instances": [np.zeros((1, 8, 8)).tolist()], "parameters": {"steps": 3}})),
    # json.loads recurses once per level: past the interpreter's limit it raised RecursionError (was a 500)
    "nested too deeply for the decoder": (400, dict(content=b'{"instances": ' + b"[" * 30000 + b"]" * 30000 + b"}")),
    "nested beyond 64 dimensions": (422, dict(content=b'{"instances": [' + b"[" * 100 + b"0.5" + b"]" * 100 + b"]}")),
    "too many instances": (413, dict(json={"instances": [np.zeros((1, 8, 8)).tolist()] * (MAX_BATCH + 1)})),
    "oversized payload": (413, dict(content=b'{"instances": [' + b" " * MAX_BODY + b"]}")),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gets_a_4xx_with_a_json_body(server, case):
    _, _, client = server
    status, kw = BAD[case]
    for path in (EXPLAIN, TS_EXPLAIN):
        r = client.post(path, headers={"content-type": "application/json"}, **kw)
        assert r.status_code == status, (case, r.status_code, r.text)
        assert isinstance(r.json()["error"], str) and r.json()["error"]


def test_unknown_model_and_route_and_streamed_oversize(server, digits):
    _, _, client = server
    for path in ("/v1/models/mnist:explain", "/explanations/mnist"):
        r = client.post(path, json={"instances": digits[:1].tolist()})
        assert r.status_code == 404 and "mnist" in r.json()["error"]
    assert client.get("/v1/models/mnist").status_code == 404
    r = client.get("/no/such/route")
    assert r.status_code == 404 and "error" in r.json()

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(MAX_BODY // 1024 + 2):
            yield b" " * 1024

    r = client.post(EXPLAIN, content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "error" in r.json()
    # and the worker is alive after all the bad input
    r = client.post(EXPLAIN, json={"instances": digits[:1].tolist()})
    assert r.status_code == 200


def test_deadline_exceeded_is_a_json_504(server, digits):
    _, _, client = server
    r = client.post(EXPLAIN, json={"instances": digits[:2].tolist(), "parameters": {"timeout_ms": 0.01}})
    assert r.status_code == 504 and "deadline" in r.json()["error"]
    assert client.post(EXPLAIN, json={"instances": digits[:1].tolist()}).status_code == 200


def test_openapi_and_model_status(server):
    _, _, client = server
    doc = client.get("/openapi.json").json()
    assert EXPLAIN.replace(NAME, "{name}") in doc["paths"] and "/explanations/{name}" in doc["paths"]
    op = doc["paths"]["/v1/models/{name}:explain"]["post"]
    assert "instances" in op["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert {"400", "404", "413", "422"} <= set(op["responses"])
    st = client.get(f"/v1/models/{NAME}").json()
    assert st["ready"] and st["input_shape"] == [1, 8, 8] and st["num_classes"] == 10
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_is_false_before_warmup(digits):
    svc = _service(auto_warmup=False)
    with ServerThread(build_app(svc)) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        assert client.get("/healthz").status_code == 200
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["ready"] is False
        r = client.post(EXPLAIN, json={"instances": digits[:1].tolist()})
        assert r.status_code == 503 and "warming up" in r.json()["error"]
        svc.warmup()
        assert client.get("/readyz").json() == {"ready": True}
        assert client.post(EXPLAIN, json={"instances": digits[:1].tolist()}).status_code == 200


def test_graceful_shutdown_finishes_in_flight_requests(digits):
    svc = _service(max_wait_ms=400)  # the request sits in the batcher while the server stops
    srv = ServerThread(build_app(svc)).start()
    client = httpx.Client(base_url=srv.url, timeout=30)
    _wait_ready(client)
    got = {}

    def call():
        got["r"] = client.post(EXPLAIN, json={"instances": digits[:2].tolist()})

    t = threading.Thread(target=call)
    t.start()
    end = time.monotonic() + 10
    while svc.batcher.queued_rows == 0 and not svc.batcher._queue and time.monotonic() < end:
        time.sleep(0.002)
    srv.stop()
    t.join(30)
    client.close()
    assert got["r"].status_code == 200
    assert_close(_attr(got["r"].json()), _library(digits[:2]), rtol=1e-5, atol=1e-4)
    assert not svc.batcher._thread.is_alive()  # drained and stopped


class _Fragile(torch.nn.Module):
    """Fails on any input whose first feature is exactly 0.25 (a model bug, not bad input)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(6, 3)

    def forward(self, x):
        if (x[:, 0] == 0.25).any():
            raise RuntimeError("model bug")
        return self.lin(x)


def test_a_failing_model_answers_json_and_the_worker_lives_on():
    torch.manual_seed(0)
    svc = ExplanationService(ModelSpec("m", _Fragile().eval(), (6,)), "ig", max_batch=4, max_wait_ms=30,
                             explainer_kwargs={"n_steps": 8})
    with ServerThread(build_app(svc)) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        _wait_ready(client)
        good = torch.rand(2, 6) + 0.5

        async def fire():
            async with httpx.AsyncClient(base_url=srv.url, timeout=30) as ac:
                return await asyncio.gather(ac.post("/explanations/m", json={"instances": [[0.25] + [0.0] * 5]}),
                                            ac.post("/explanations/m", json={"instances": good.tolist()}))

        bad, ok = asyncio.run(fire())
        assert bad.status_code == 500 and "model bug" in bad.json()["error"]
        assert ok.status_code == 200  # its batch-mate failed; it was retried alone
        want = pa.Explainer(svc.spec.model, "ig", n_steps=8).attribute(good)
        assert_close(_attr(ok.json()), want, rtol=1e-5, atol=1e-6)
        assert client.post("/explanations/m", json={"instances": good[:1].tolist()}).status_code == 200


def test_finite_inputs_the_model_overflows_on_get_a_422_naming_them(server, digits):
    """3e38 is a finite float32, but the digits CNN's logits overflow on it: a client error
    (422 naming the instance), not a 500; the worker answers the next request."""
    _, _, client = server
    x = digits[:3].clone()
    x[1] = 3e38
    r = client.post(EXPLAIN, json={"instances": x.tolist()})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert "non-finite" in err and re.search(r"\[1\]", err), err
    assert client.post(EXPLAIN, json={"instances": digits[:1].tolist()}).status_code == 200


def test_cpu_warmup_runs_batch_1_only_and_logs_its_progress(caplog):
    svc = _service(auto_warmup=False, max_batch=8)
    sizes = []
    real = svc.explainer.warmup
    svc.explainer.warmup = lambda shape, batch_size=1, **kw: sizes.append(batch_size) or real(shape, batch_size, **kw)
    assert svc.warmup_sizes() == [1]  # on CUDA: [1, max_batch] (cuDNN tuning, graph capture per shape)
    with caplog.at_level(logging.INFO, logger="pathattr.serve"):
        svc.warmup()
    assert svc.ready and sizes == [1]  # was [1, max_batch] on every device
    text = caplog.text
    assert "warm-up 1/1: idg on a batch of 1 1x8x8 on cpu" in text and "ready: model 'digits'" in text, text


class _Broken(torch.nn.Module):
    def forward(self, x):
        raise RuntimeError("weights missing")


def test_failed_warmup_is_logged_and_shown_on_readyz(caplog):
    svc = ExplanationService(ModelSpec("b", _Broken(), (3,), num_classes=2), "ig", auto_warmup=False)
    with caplog.at_level(logging.INFO, logger="pathattr.serve"):
        svc.warmup()
    assert not svc.ready and "weights missing" in svc.warmup_error
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "warm-up failed" in errors[0].getMessage() and "weights missing" in errors[0].getMessage()
