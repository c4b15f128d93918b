"""`pathattr serve` with a text model (apps/serve/text.py): a real uvicorn server on a
free loopback port and httpx, the tiny random BERT folder of textapps_data.py.

Per-token scores must equal `pathattr.text.attribute_tokens` called directly; concurrent
requests of different lengths must be merged into one call (the batch-size histogram)
and routed back to their own request; every bad request gets its 4xx with a JSON body.
"""
import concurrent.futures as cf
import time

import pytest
import torch

pytest.importorskip("transformers")
httpx = pytest.importorskip("httpx")

from pathattr.apps.serve import ServerThread, TextExplanationService, build_app, load_text_spec  # noqa: E402
from textapps_data import model_folder, row as _row, served, texts  # noqa: E402

from conftest import assert_close  # noqa: E402

STEPS = 8
MAX_BATCH = 8


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return model_folder(tmp_path_factory.mktemp("hf") / "tiny-bert")


@pytest.fixture(scope="module")
def server(folder):
    spec = load_text_spec(str(folder), dtype="fp64")
    svc = TextExplanationService(spec, "ig", max_batch=MAX_BATCH, max_wait_ms=150, max_body_bytes=1 << 16,
                                 attribute_kwargs={"n_steps": STEPS})
    with served(svc) as client:
        yield svc, client


def _direct(folder, batch, target=None):
    import pathattr.text as pt

    model, tok = pt.load_pretrained(str(folder), task="sequence_classification")
    return pt.attribute_tokens(model.double(), batch, tokenizer=tok, target=target, method="ig", n_steps=STEPS)


def _explain(client, body, name="tiny-bert"):
    return client.post(f"/v1/models/{name}:explain", json=body)


def test_scores_equal_attribute_tokens_called_directly(server, folder):
    _, client = server
    batch = texts(5, seed=3)
    r = _explain(client, {"instances": [batch[0], {"text": batch[1]}] + batch[2:],
                          "parameters": {"target": [None, 2, "class1", None, 0], "norms": True}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "tiny-bert" and body["method"] == "ig"
    ex = body["explanations"]
    free = _direct(folder, [batch[0], batch[3]])
    given = _direct(folder, [batch[1], batch[2], batch[4]], target=torch.tensor([2, 1, 0]))
    refs = [_row(free, 0), _row(given, 0), _row(given, 1), _row(free, 1), _row(given, 2)]
    targets = [int(free.target[0]), 2, 1, int(free.target[1]), 0]
    for e, ref, t, text in zip(ex, refs, targets, batch):
        assert e["target"] == t and e["target_label"] == f"class{t}"
        assert e["tokens"] == ["[CLS]"] + text.split() + ["[SEP]"] and e["token_ids"] == ref["ids"].tolist()
        assert_close(e["scores"], ref["scores"], rtol=1e-9, atol=1e-12, what="scores")
        assert_close(e["norms"], ref["norms"], rtol=1e-9, atol=1e-12, what="norms")
        assert e["truncated"] is False and isinstance(e["delta"], float)


def _metric(client, name):
    from prometheus_client.parser import text_string_to_metric_families

    for fam in text_string_to_metric_families(client.get("/metrics").text):
        for s in fam.samples:
            if s.name == name:
                return s.value
    return 0.0


def test_concurrent_requests_of_mixed_lengths_are_merged_and_routed_back(server, folder):
    _, client = server
    batch = texts(6, seed=5)
    calls0 = _metric(client, "pathattr_batch_size_count")
    with cf.ThreadPoolExecutor(6) as pool:
        futs = [pool.submit(_explain, client, {"instances": [s], "parameters": {"target": 1}}) for s in batch]
        answers = [f.result() for f in futs]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    calls = _metric(client, "pathattr_batch_size_count") - calls0
    assert calls < len(batch)  # merged: fewer attribute calls than requests
    ref = _direct(folder, batch, target=torch.full((6,), 1))
    for i, a in enumerate(answers):
        (e,) = a.json()["explanations"]
        assert e["tokens"][1:-1] == batch[i].split()
        assert_close(e["scores"], _row(ref, i)["scores"], rtol=1e-9, atol=1e-12, what=f"request {i}")


@pytest.mark.parametrize("body, status, message", [
    ({"instances": []}, 422, "non-empty list of texts"),
    ({"instances": [""]}, 422, r"instances\[0\] is an empty text"),
    ({"instances": ["the cat", 3]}, 422, r"instances\[1\] must be a text"),
    ({"instances": [{"txt": "a"}]}, 422, r"instances\[0\]: a text instance is a string or"),
    ({"instances": ["a"] * (MAX_BATCH + 1)}, 413, "exceed this server's max batch"),
    ({"instances": ["a"], "parameters": {"target": 3}}, 422, r"class index in \[0, 3\)"),
    ({"instances": ["a"], "parameters": {"target": "class9"}}, 422, "not one of the model's labels"),
    ({"instances": ["a", "b"], "parameters": {"target": [1]}}, 422, "1 entries for 2 instances"),
    ({"instances": ["a"], "parameters": {"heatmap": True}}, 422, "unknown parameters"),
    ({"instances": ["a"], "parameters": {"norms": "yes"}}, 422, "norms must be true or false"),
    ({"texts": ["a"]}, 422, "with 'instances'"),
])
def test_bad_requests_get_a_4xx_with_a_json_body(server, body, status, message):
    import re

    _, client = server
    r = _explain(client, body)
    assert r.status_code == status and re.search(message, r.json()["error"]), r.text


def test_malformed_json_unknown_model_and_status(server):
    svc, client = server
    r = client.post("/v1/models/tiny-bert:explain", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]
    assert _explain(client, {"instances": ["a"]}, name="other").status_code == 404
    st = client.get("/v1/models/tiny-bert").json()
    assert st["kind"] == "text" and st["ready"] and st["num_classes"] == 3 and st["max_batch"] == MAX_BATCH
    # The worker lives on after all of the above.
    assert _explain(client, {"instances": ["the cat sat"]}).status_code == 200
    assert "text" in str(client.get("/openapi.json").json()["paths"])


def test_long_texts_are_cut_to_max_length_and_say_so(folder):
    spec = load_text_spec(str(folder), dtype="fp64", max_length=5)
    svc = TextExplanationService(spec, "ig", max_batch=4, attribute_kwargs={"n_steps": 4})
    with ServerThread(build_app(svc)) as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
        while client.get("/readyz").status_code != 200:
            time.sleep(0.02)
        r = _explain(client, {"instances": ["the cat sat on the mat", "a dog"]}, name=spec.name)
    a, b = r.json()["explanations"]
    assert a["truncated"] and len(a["tokens"]) == 5 and a["tokens"][-1] == "[SEP]"
    assert not b["truncated"] and len(b["tokens"]) == 4


def test_serve_cli_refuses_image_flags_for_a_text_model(folder, capsys):
    from pathattr.apps.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--model", str(folder), "--input-shape", "1,8,8"])
    assert "--input-shape and --cuda-graphs apply to tensor models" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--model", str(folder), "--method", "expected_gradients"])
    assert "method must be one of ig, idg, left_ig" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--model", str(folder), "--method", "idg", "--set", "r=2"])
    assert "--set r: not a setting of idg on text" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--max-tokens", "64"])  # the bundled digits
    assert "--max-tokens applies to a text model" in capsys.readouterr().err
