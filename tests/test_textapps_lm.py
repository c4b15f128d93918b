"""Language models in `pathattr attribute` and `pathattr serve` (--task): a tiny random GPT-2
(causal LM: the next token after each text) and BERT masked LM (the first [MASK] token's
prediction), saved with save_pretrained.

The store and the answers must equal `pathattr.text.attribute_tokens` called directly with
the task; a folder is loaded with its own task's Auto class (a causal LM folder is not read
as a sequence classifier with a random head); what a language model cannot take (labels as
targets, a token id past the vocabulary, a masked-LM text without a mask) stops before any
model call, naming the flag, the line or the instance.
"""
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("zarr")
pytest.importorskip("transformers")
httpx = pytest.importorskip("httpx")

import zarr  # noqa: E402

from pathattr.apps.cli import main  # noqa: E402
from pathattr.apps.job import JobConfig, run_job  # noqa: E402
from pathattr.apps.job.config import JobError  # noqa: E402
from pathattr.apps.job.text import read_text_item  # noqa: E402
from pathattr.apps.serve import TextExplanationService, load_text_spec  # noqa: E402
from pathattr.apps.serve.codec import BadRequest  # noqa: E402
from text_models import VOCAB, bert_masked_lm, gpt2, random_texts, word_tokenizer  # noqa: E402
from textapps_data import served, write_jsonl  # noqa: E402

from conftest import assert_close  # noqa: E402

STEPS = 6


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "tiny-gpt2"
    gpt2().save_pretrained(path)
    word_tokenizer(bert=False, bos=True).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def mlm_folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "tiny-mlm"
    bert_masked_lm().save_pretrained(path)
    word_tokenizer().save_pretrained(path)
    return path


def _masked(texts):
    """Each text with one word replaced by [MASK] (at a different place in each)."""
    out = []
    for i, t in enumerate(texts):
        words = t.split()
        words[i % len(words)] = "[MASK]"
        out.append(" ".join(words))
    return out


def _run(tmp_path, folder, texts, **kw):
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = write_jsonl(tmp_path / "texts.jsonl", [{"text": t} for t in texts])
    cfg = dict(out=str(tmp_path / "run"), model=str(folder), data=str(data), method="ig", steps=STEPS, chunk_size=4,
               batch_size=3, dtype="fp64", quiet=True)
    cfg.update(kw)
    return run_job(JobConfig(**cfg)), tmp_path / "run"


def _items(run, n):
    arrays = dict(zarr.open_group(str(Path(run) / "store.zarr"), mode="r").arrays())
    return [read_text_item(arrays, i) for i in range(n)]


@pytest.mark.parametrize("kind", ["causal_lm", "masked_lm"])
def test_job_on_a_language_model_equals_attribute_tokens(kind, gpt2_folder, mlm_folder, tmp_path):
    import pathattr.text as pt

    folder = gpt2_folder if kind == "causal_lm" else mlm_folder
    texts = random_texts(10, 2, 12, seed=5)
    if kind == "masked_lm":
        texts = _masked(texts)
    manifest, run = _run(tmp_path, folder, texts)
    assert manifest["complete"] and manifest["items"] == len(texts)
    model, tok = pt.load_pretrained(str(folder))
    assert type(model).__name__ == ("GPT2LMHeadModel" if kind == "causal_lm" else "BertForMaskedLM")
    direct = pt.attribute_tokens(model.double(), texts, tokenizer=tok, method="ig", n_steps=STEPS)
    for i, item in enumerate(_items(run, len(texts))):
        ref = direct.text(i)
        assert item["target"] == int(ref["target"]) and item["position"] == int(ref["position"])
        assert list(item["ids"]) == [int(v) for v in ref["ids"]]
        assert_close(np.asarray(item["scores"], dtype=np.float64), ref["scores"], rtol=1e-5, atol=1e-6,
                     what=f"{kind} text {i}")
        if kind == "masked_lm":  # the first [MASK] of the text is the explained position
            assert item["ids"][item["position"]] == tok.mask_token_id
        else:  # the last token: its logits predict the next one
            assert item["position"] == len(item["ids"]) - 1
    import json
    assert json.loads((run / "run.json").read_text())["identity"]["task"] == kind


def test_job_refuses_what_a_language_model_cannot_take(gpt2_folder, mlm_folder, tmp_path, monkeypatch):
    import transformers

    calls = []
    monkeypatch.setattr(transformers.GPT2LMHeadModel, "forward", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(transformers.BertForMaskedLM, "forward", lambda *a, **k: calls.append(1))
    texts = random_texts(5, 2, 6, seed=6)
    with pytest.raises(JobError, match="--target label"):
        _run(tmp_path / "a", gpt2_folder, texts, target="label")
    with pytest.raises(JobError, match=f"--target {VOCAB + 3}.*vocabulary"):
        _run(tmp_path / "b", gpt2_folder, texts, target=VOCAB + 3)
    with pytest.raises(JobError, match=r"line 1: no \[MASK\] token"):
        _run(tmp_path / "c", mlm_folder, texts)
    with pytest.raises(ValueError, match="not a masked lm model folder"):  # GPT-2 has no masked-LM head
        _run(tmp_path / "d", gpt2_folder, texts, task="masked_lm")
    assert not calls


def test_task_flag_belongs_to_text_data(capsys, tmp_path):
    assert main(["attribute", "--out", str(tmp_path / "r"), "--task", "causal_lm", "--limit", "2"]) != 0
    assert "task applies to text data" in capsys.readouterr().err


@pytest.fixture(scope="module")
def lm_service(gpt2_folder):
    spec = load_text_spec(str(gpt2_folder), dtype="fp64")
    svc = TextExplanationService(spec, "ig", max_batch=4, max_wait_ms=50, attribute_kwargs={"n_steps": STEPS})
    with served(svc) as client:
        yield svc, client


def test_serve_a_causal_lm_equals_attribute_tokens(lm_service, gpt2_folder):
    import pathattr.text as pt

    svc, client = lm_service
    assert svc.spec.task == "causal_lm" and svc.status()["task"] == "causal_lm"
    texts = random_texts(3, 2, 8, seed=7)
    r = client.post("/v1/models/tiny-gpt2:explain", json={"instances": texts, "parameters": {"target": [None, 9, "cat"]}})
    assert r.status_code == 200, r.text
    model, tok = pt.load_pretrained(str(gpt2_folder))
    free = pt.attribute_tokens(model.double(), texts[:1], tokenizer=tok, method="ig", n_steps=STEPS)
    given = pt.attribute_tokens(model.double(), texts[1:], tokenizer=tok, target=torch.tensor([9, tok.convert_tokens_to_ids("cat")]),
                                method="ig", n_steps=STEPS)
    refs = [free.text(0), given.text(0), given.text(1)]
    for e, ref in zip(r.json()["explanations"], refs):
        assert e["target"] == int(ref["target"]) and e["position"] == int(ref["position"])
        assert e["target_token"] == tok.convert_ids_to_tokens(int(ref["target"]))
        assert_close(e["scores"], ref["scores"], rtol=1e-9, atol=1e-12, what="causal LM scores")
    bad = client.post("/v1/models/tiny-gpt2:explain", json={"instances": texts[:1], "parameters": {"target": "zebra"}})
    assert bad.status_code == 422 and "not a token" in bad.text
    bad = client.post("/v1/models/tiny-gpt2:explain", json={"instances": texts[:1], "parameters": {"target": VOCAB}})
    assert bad.status_code == 422 and "token id" in bad.text


def test_serve_a_masked_lm_needs_a_mask_in_each_instance(mlm_folder):
    spec = load_text_spec(str(mlm_folder), dtype="fp64")
    svc = TextExplanationService(spec, "ig", max_batch=4, auto_warmup=False, attribute_kwargs={"n_steps": STEPS})
    assert spec.task == "masked_lm" and spec.num_classes == VOCAB
    with pytest.raises(BadRequest, match=r"instances\[1\] has no \[MASK\]"):
        svc.decode({"instances": ["the [MASK] sat", "the cat sat"]})
    ids, cut, targets, opts = svc.decode({"instances": ["the [MASK] sat"], "parameters": {"target": "dog"}})
    assert targets == [spec.text_model.tokenizer.convert_tokens_to_ids("dog")]
    svc.warmup()  # a masked LM warms up on a text with a mask token
    assert svc.ready, svc.warmup_error


FACTORY = '''
import torch
from text_models import bert_classifier


class Classifier(torch.nn.Module):
    """A user's own wrapper: its class name says no task."""

    def __init__(self):
        super().__init__()
        self.inner = bert_classifier()

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits


def make():
    return Classifier().eval()
'''


def test_a_factory_model_whose_class_says_no_task_is_a_classifier(tmp_path, monkeypatch, mlm_folder):
    """--task auto on a module:factory wrapper: a sequence classifier, as the apps always
    took it (the library's task="auto" asks for the task instead)."""
    import pathattr.text as pt

    (tmp_path / "user_text_model.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    texts = random_texts(4, 2, 6, seed=8)
    manifest, run = _run(tmp_path / "job", "user_text_model:make", texts, tokenizer=str(mlm_folder))
    assert manifest["complete"]
    import json
    assert json.loads((run / "run.json").read_text())["identity"]["task"] == "sequence_classification"
    import user_text_model

    model = user_text_model.make().double()
    direct = pt.attribute_tokens(model, texts, tokenizer=pt.load_pretrained(str(mlm_folder))[1], method="ig",
                                 n_steps=STEPS, task="sequence_classification")
    for i, item in enumerate(_items(run, len(texts))):
        assert item["target"] == int(direct.target[i]) and "position" not in item
        assert_close(np.asarray(item["scores"], dtype=np.float64), direct.text(i)["scores"], rtol=1e-6, atol=1e-8,
                     what=f"factory text {i}")
    spec = load_text_spec("user_text_model:make", tokenizer=str(mlm_folder))
    assert spec.task == "sequence_classification" and not spec.language_model
