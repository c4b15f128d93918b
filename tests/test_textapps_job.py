"""`pathattr attribute` on text (apps/job/text.py): a JSONL / CSV file of 30 texts of
mixed lengths through a tiny random BERT saved with save_pretrained.

The ragged store must hold, per text, exactly what `pathattr.text.attribute_tokens`
gives when called directly (and, for a few texts, what Captum's LayerIntegratedGradients
gives: an independent reference); an interrupted run resumed must equal an
uninterrupted one file for file; bad input must stop before any model call with a
message naming the flag and the line.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("zarr")
pytest.importorskip("transformers")

import zarr  # noqa: E402

from pathattr.apps.cli import main  # noqa: E402
from pathattr.apps.job import JobConfig, run_job  # noqa: E402
from pathattr.apps.job import text as job_text  # noqa: E402
from pathattr.apps.job.report import write_report  # noqa: E402
from pathattr.apps.job.text import read_text_item  # noqa: E402
from textapps_data import kill_after_first_chunk, model_folder, row as _row, texts, write_csv, write_jsonl  # noqa: E402

from conftest import assert_close  # noqa: E402

STEPS = 8
CHUNK = 8  # 30 texts: 4 job chunks, the last one of 6


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return model_folder(tmp_path_factory.mktemp("hf") / "tiny-bert")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    t = texts()
    rows = [{"text": s, "label": i % 3, "id": i} for i, s in enumerate(t)]
    return t, [i % 3 for i in range(len(t))], write_jsonl(tmp_path_factory.mktemp("data") / "texts.jsonl", rows)


def _cfg(out, folder, path, **kw):
    base = dict(out=str(out), model=str(folder), data=str(path), method="ig", steps=STEPS, chunk_size=CHUNK,
                batch_size=4, dtype="fp64", target="label", label_field="label", quiet=True)
    base.update(kw)
    return JobConfig(**base)


def _one_thread(fn, *a, **kw):
    """One intra-op thread: stores are compared byte for byte, and oneDNN's reductions
    may round differently with more threads."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*a, **kw)
    finally:
        torch.set_num_threads(n)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, folder, data):
    out = tmp_path_factory.mktemp("ref") / "run"
    manifest = _one_thread(run_job, _cfg(out, folder, data[2]))
    assert manifest["complete"] and manifest["items"] == len(data[0]) and manifest["chunks"] == 4
    return out


def _arrays(run):
    return dict(zarr.open_group(str(Path(run) / "store.zarr"), mode="r").arrays())


def _hf(folder):
    import pathattr.text as pt

    model, tok = pt.load_pretrained(str(folder), task="sequence_classification")
    return model.double().eval(), tok


def test_store_equals_attribute_tokens_called_directly(reference, folder, data):
    import pathattr.text as pt

    t, labels, _ = data
    model, tok = _hf(folder)
    # One call over all 30 texts: other buckets than the job's chunks of 8 in batches of 4.
    direct = pt.attribute_tokens(model, t, tokenizer=tok, target=torch.tensor(labels), method="ig", n_steps=STEPS,
                                 batch_size=32)
    arrays = _arrays(reference)
    lengths = arrays["n_tokens"][...]
    assert sorted(set(lengths.tolist())) != [lengths[0]] and lengths.min() <= 5 and lengths.max() >= 35  # mixed
    assert (arrays["index"][...] == np.arange(len(t))).all()
    assert (arrays["label"][...] == labels).all() and (arrays["target"][...] == labels).all()
    assert not arrays["truncated"][...].any()
    for i, text in enumerate(t):
        row, ref = read_text_item(arrays, i), _row(direct, i)
        ids = tok(text)["input_ids"]
        assert row["ids"].tolist() == ids == [int(v) for v in ref["ids"]]
        assert row["tokens"] == tok.convert_ids_to_tokens(ids)
        # The store keeps float32: equal to the fp64 call up to that rounding.
        scale = float(np.abs(ref["scores"].numpy()).max())
        assert_close(row["scores"], ref["scores"], rtol=1e-6, atol=1e-7 * scale, what=f"text {i} scores")
        assert_close(row["norms"], ref["norms"], rtol=1e-6, atol=1e-7 * scale, what=f"text {i} norms")
    assert_close(arrays["delta"][...], direct.delta, rtol=1e-5, atol=1e-7, what="delta")
    # Chunks own disjoint spans of the flat arrays; gaps after a chunk's last text are zero.
    off = arrays["token_offsets"][...]
    for k in range(4):
        rows = range(k * CHUNK, min(len(t), (k + 1) * CHUNK))
        starts = [off[i] for i in rows]
        assert starts[0] == k * arrays["tokens"].shape[0] // 4
        assert all(a + lengths[i] == b for a, b, i in zip(starts, starts[1:], rows))


def test_store_equals_captum_layer_ig_on_the_embeddings(reference, folder, data):
    """An independent reference: Captum's LayerIntegratedGradients on the word embeddings,
    one text at a time (no padding), the pad token's baseline with [CLS] / [SEP] kept, the
    job's steps and rule; the logit stored is the model's own forward."""
    captum = pytest.importorskip("captum.attr")
    t, labels, _ = data
    model, tok = _hf(folder)
    arrays = _arrays(reference)

    def forward(ids, mask):
        return model(input_ids=ids, attention_mask=mask).logits

    lig = captum.LayerIntegratedGradients(forward, model.get_input_embeddings())
    for i in (0, 7, 29):
        ids = torch.tensor([tok(t[i])["input_ids"]])
        base = torch.where((ids == tok.cls_token_id) | (ids == tok.sep_token_id), ids, tok.pad_token_id)
        mask = torch.ones_like(ids)
        attr = lig.attribute(ids, baselines=base, additional_forward_args=(mask,), target=labels[i],
                             n_steps=STEPS, method="gausslegendre")
        expected = attr.sum(-1)[0]
        row = read_text_item(arrays, i)
        assert_close(row["scores"], expected, rtol=2e-6, atol=2e-7 * float(expected.abs().max()),
                     what=f"text {i} vs Captum")
        with torch.no_grad():
            f = forward(ids, mask)[0, labels[i]]
        assert_close(arrays["logit"][i], f, rtol=1e-6, atol=1e-6, what=f"text {i} logit")
        # Completeness: the scores add up to F(x) - F(x') up to the stored delta.
        assert_close(float(expected.sum()) - float(arrays["logit"][i] - arrays["baseline_value"][i]),
                     arrays["delta"][i], rtol=1e-4, atol=1e-5, what=f"text {i} delta")


class _Stop(BaseException):
    """Stands for a kill: raised inside the loop, not caught by the job's error handling."""


def _store_files(run):
    root = Path(run) / "store.zarr"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_interrupted_run_resumes_to_the_uninterrupted_store(reference, folder, data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = job_text.TextJob.compute
    calls = []

    def stop_at_third(self, x, y, start):
        calls.append(start)
        if len(calls) == 3:  # chunk 0 at creation, chunk 1 in the loop, then stop inside chunk 2
            raise _Stop()
        return real(self, x, y, start)

    monkeypatch.setattr(job_text.TextJob, "compute", stop_at_third)
    with pytest.raises(_Stop):
        _one_thread(run_job, _cfg(out, folder, data[2]))
    done = sorted(p.name for p in (out / "chunks").glob("chunk-*.json"))
    assert done == ["chunk-000000.json", "chunk-000001.json"] and not (out / "manifest.json").exists()
    before = {n: (out / "chunks" / n).read_bytes() for n in done}
    calls.clear()
    monkeypatch.setattr(job_text.TextJob, "compute", lambda self, x, y, s: calls.append(s) or real(self, x, y, s))
    manifest = _one_thread(run_job, _cfg(out, folder, data[2]))
    assert calls == [2 * CHUNK, 3 * CHUNK]  # only the unfinished chunks, once each
    assert manifest["complete"] and manifest["throughput"]["items"] == 30 - 2 * CHUNK
    assert all((out / "chunks" / n).read_bytes() == b for n, b in before.items())
    a, b = _store_files(out), _store_files(reference)
    assert sorted(a) == sorted(b) and [k for k in a if a[k] != b[k]] == []
    # A finished run reruns as a no-op; other settings into it are refused.
    calls.clear()
    _one_thread(run_job, _cfg(out, folder, data[2]))
    assert calls == []
    with pytest.raises(Exception, match="different settings.*token_baseline"):
        run_job(_cfg(out, folder, data[2], token_baseline="unk"))


@pytest.mark.slow
def test_sigkilled_cli_run_resumes_to_the_uninterrupted_store(reference, folder, data, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "pathattr", "attribute", "--out", str(out), "--model", str(folder), "--data",
           str(data[2]), "--method", "ig", "--steps", str(STEPS), "--chunk-size", str(CHUNK), "--batch-size", "4",
           "--dtype", "fp64", "--target", "label", "--label-field", "label", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    kill_after_first_chunk(cmd, out, env)
    done = sorted(p.name for p in (out / "chunks").glob("chunk-*.json"))
    rerun = subprocess.run(cmd + ["--log-json"], capture_output=True, text=True, timeout=300, env=env)
    assert rerun.returncode == 0, rerun.stderr
    events = [json.loads(line) for line in rerun.stdout.splitlines()]
    assert {e["chunk"] for e in events if e["event"] == "chunk"} == {0, 1, 2, 3} - {int(n[6:12]) for n in done}
    a, b = _store_files(out), _store_files(reference)
    assert sorted(a) == sorted(b) and [k for k in a if a[k] != b[k]] == []


def test_csv_with_label_names_and_another_text_field(folder, data, tmp_path):
    t, labels, _ = data
    path = write_csv(tmp_path / "t.csv", ["review", "stars"], [(s, f"class{lab}") for s, lab in zip(t[:10], labels)])
    cfg = _cfg(tmp_path / "run", folder, path, text_field="review", label_field="stars", limit=9, dtype="fp32",
               chunk_size=4)
    m = run_job(cfg)
    assert m["items"] == 9 and m["chunks"] == 3
    arrays = _arrays(tmp_path / "run")
    assert arrays["label"][...].tolist() == labels[:9] and arrays["target"][...].tolist() == labels[:9]
    assert read_text_item(arrays, 8)["tokens"][1:-1] == t[8].split()


def test_max_length_cuts_texts_and_says_so(folder, data, tmp_path):
    t, _, path = data
    run_job(_cfg(tmp_path / "run", folder, path, max_length=6, target="pred", dtype="fp32", limit=8))
    arrays = _arrays(tmp_path / "run")
    n = arrays["n_tokens"][...]
    assert n.max() == 6 and (arrays["truncated"][...] == [len(s.split()) + 2 > 6 for s in t[:8]]).all()
    assert read_text_item(arrays, int(np.argmax(n)))["tokens"][-1] == "[SEP]"  # the tokenizer's own truncation


def test_report_shows_token_heatmaps_of_the_first_texts(reference, tmp_path, data):
    page = write_report(reference, tmp_path / "r.html", n_examples=5).read_text()
    assert page.count("class='pa-text'") == 5 and "incomplete" not in page
    assert "class0" in page or "class1" in page  # targets by their label names
    first = data[0][0].split()
    assert all(w in page for w in first)


def _cli(capsys, *args):
    rc = main(["attribute", *args, "--quiet"])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("lines, flags, message", [
    (['{"text": "the cat", "label": 0}', '{"body": "a dog", "label": 1}'], [],
     r"line 2: no field 'text' \(--text-field\); its fields are \['body', 'label'\]"),
    (['{"text": "the cat", "label": 0}', '', '{"text": "   ", "label": 1}'], [],
     r"line 3: field 'text' \(--text-field\) is an empty text"),
    (['{"text": "the cat", "label": 0}', '{"text": 5}'], [], r"line 2: field 'text' \(--text-field\) must be a string"),
    (['{"text": "the cat"', ], [], r"line 1: not valid JSON"),
    (['{"text": "the cat", "label": "nope"}'], ["--label-field", "label"],
     r"line 1: label 'nope' \(--label-field\) is neither a class index nor one of the model's labels"),
    (['{"text": "the cat", "label": 7}'], ["--label-field", "label"], r"line 1: label 7 \(--label-field\) is not a class"),
    (['{"text": "the cat"}'], ["--label-field", "y"], r"line 1: no field 'y' \(--label-field\)"),
    (['{"text": "the cat"}'], ["--target", "label"], r"--target label: --data .* line 1 has no label \(give --label-field\)"),
    (['{"text": "the cat"}'], ["--target", "3"], r"--target 3 is not a class of this model \(3 classes\)"),
    (['{"text": "the cat"}'], ["--method", "expected_gradients"], r"--method 'expected_gradients' is not available"),
    (['{"text": "the cat"}'], ["--baseline", "1"], r"--baseline applies to image data.*--token-baseline"),
    (['{"text": "the cat"}'], ["--dtype", "bf16"], r"--dtype bf16 is not available for text data"),
    (['{"text": "the cat"}'], ["--max-length", "65"], r"--max-length 65 exceeds the model's 64 positions"),
    (['{"text": "the cat"}'], ["--set", "shcedule=uniform"], r"--set shcedule: not a setting of idg on text"),
])
def test_bad_text_input_names_the_flag_and_line_before_any_model_call(folder, tmp_path, capsys, monkeypatch,
                                                                     lines, flags, message):
    import re

    def no_call(*a, **kw):
        raise AssertionError("the model was called")

    monkeypatch.setattr(job_text.TextJob, "compute", no_call)
    path = write_jsonl(tmp_path / "t.jsonl", lines)
    rc, err = _cli(capsys, "--out", str(tmp_path / "run"), "--model", str(folder), "--data", str(path), *flags)
    assert rc == 2 and re.search(message, err), err
    assert "--data" in err or "--" in err
    assert not (tmp_path / "run").exists()  # nothing written


def test_unreadable_files_and_text_flags_elsewhere(folder, tmp_path, capsys):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes('{"text": "caf\xe9"}\n'.encode("latin-1"))
    rc, err = _cli(capsys, "--out", str(tmp_path / "a"), "--model", str(folder), "--data", str(bad))
    assert rc == 2 and f"--data {bad}: not UTF-8 text" in err
    rc, err = _cli(capsys, "--out", str(tmp_path / "b"), "--model", str(folder), "--data", str(tmp_path / "no.jsonl"))
    assert rc == 2 and "no.jsonl: file not found" in err
    empty = write_csv(tmp_path / "e.csv", ["text"], [])
    rc, err = _cli(capsys, "--out", str(tmp_path / "c"), "--model", str(folder), "--data", str(empty))
    assert rc == 2 and "holds no texts" in err
    ragged = tmp_path / "r.csv"
    ragged.write_text("text,label\nthe cat,1\nthe dog,1,2\n")
    rc, err = _cli(capsys, "--out", str(tmp_path / "d"), "--model", str(folder), "--data", str(ragged))
    assert rc == 2 and "line 3: 3 fields where the header has 2" in err
    rc, err = _cli(capsys, "--out", str(tmp_path / "e"), "--text-field", "text")  # the bundled digits
    assert rc == 2 and "text_field applies to text data" in err
    ok = write_jsonl(tmp_path / "ok.jsonl", ['{"text": "the cat"}'])
    rc, err = _cli(capsys, "--out", str(tmp_path / "f"), "--model", "digits", "--data", str(ok))
    assert rc == 2 and "--model for text data must be a Hugging Face model folder" in err
    rc, err = _cli(capsys, "--out", str(tmp_path / "g"), "--model", "tests.text_models:bert_classifier",
                   "--data", str(ok))
    assert rc == 2 and "needs --tokenizer" in err
    for d in "abcdefg":
        assert not (tmp_path / d).exists()
