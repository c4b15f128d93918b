"""pathattr.text.attribute_tokens against Captum's LayerIntegratedGradients on the model's
input embeddings (same baseline ids, steps and rule), in fp64, on tiny random BERT
(sequence classification, masked LM), GPT-2 and Llama built from configs; ragged lists
of texts (length buckets) against one text at a time; padding gets exactly zero."""
import pytest
import torch

from conftest import assert_close

transformers = pytest.importorskip("transformers")
captum_attr = pytest.importorskip("captum.attr")

import pathattr.text as pt  # noqa: E402
import text_models as tm  # noqa: E402

STEPS = 12


@pytest.fixture(scope="module")
def tok():
    return tm.word_tokenizer()


def _captum(forward, model, ids, base, target, args=()):
    lig = captum_attr.LayerIntegratedGradients(forward, model.get_input_embeddings())
    return lig.attribute(ids, base, target=target, additional_forward_args=args, n_steps=STEPS,
                         method="gausslegendre", return_convergence_delta=True)


def test_bert_classifier_any_class_equals_captum(tok, seed):
    model = tm.bert_classifier(seed=seed)
    texts = tm.random_texts(4, seed=seed)
    target = torch.tensor([0, 2, 1, 2])  # not the argmax everywhere: any class
    res = pt.attribute_tokens(model, texts, tokenizer=tok, target=target, n_steps=STEPS, return_embeddings=True,
                              batch_size=3)
    assert res.scores.shape == res.input_ids.shape == (4, int(res.lengths.max()))
    assert res.scores.dtype == torch.float64 and res.task == "sequence_classification"
    for i in range(4):
        L = int(res.lengths[i])
        ids, base = res.input_ids[i:i + 1, :L], res.baseline_ids[i:i + 1, :L]
        # the baseline: [PAD] everywhere but [CLS] and [SEP] (keep_special_tokens)
        assert base[0, 0] == 2 and base[0, -1] == 3 and (base[0, 1:-1] == 0).all()
        theirs, delta = _captum(lambda x: model(input_ids=x).logits, model, ids, base, int(target[i]))
        assert theirs.abs().max() > 1e-2
        assert_close(res.embeddings[i, :L], theirs[0], rtol=1e-6, atol=1e-9, what=f"BERT text {i}")
        assert_close(res.scores[i, :L], theirs[0].sum(-1), rtol=1e-6, atol=1e-9, what="scores")
        assert_close(res.norms[i, :L], theirs[0].norm(dim=-1), rtol=1e-6, atol=1e-9, what="norms")
        assert_close(res.delta[i:i + 1], delta, rtol=1e-6, atol=1e-7, what="delta")
        assert res.tokens[i] == tok.convert_ids_to_tokens(ids[0].tolist())
        assert (res.scores[i, L:] == 0).all() and (res.embeddings[i, L:] == 0).all()  # padding: exactly zero


def test_tensor_batch_with_padding_and_argmax_target(tok, seed):
    model = tm.bert_classifier(seed=seed)
    enc = tok(tm.random_texts(3, seed=seed + 1), padding=True, return_tensors="pt")  # a BatchEncoding
    res = pt.attribute_tokens(model, enc, tokenizer=tok, n_steps=STEPS, baseline="unk", keep_special_tokens=False)
    want = model(**enc).logits.argmax(1)
    assert torch.equal(res.target, want)
    pads = enc["attention_mask"] == 0
    assert pads.any() and (res.scores[pads] == 0).all()
    base = torch.where(pads, enc["input_ids"], torch.ones_like(enc["input_ids"]))  # [UNK] = 1
    assert torch.equal(res.baseline_ids, base)
    theirs, _ = _captum(lambda x, m: model(input_ids=x, attention_mask=m).logits, model, enc["input_ids"], base,
                        want, (enc["attention_mask"],))
    assert_close(res.scores, theirs.sum(-1), rtol=1e-6, atol=1e-9, what="padded tensor batch")


def test_masked_lm_at_the_mask_equals_captum(tok, seed):
    model = tm.bert_masked_lm(seed=seed)
    texts = ["the cat [MASK] on the mat", "a [MASK] dog runs", "big red [MASK]"]
    res = pt.attribute_tokens(model, texts, tokenizer=tok, n_steps=STEPS, output="log_softmax", baseline="mask")
    assert res.task == "masked_lm"
    for i, t in enumerate(texts):
        ids = torch.tensor([tok(t)["input_ids"]])
        pos = int((ids[0] == 4).nonzero()[0])
        assert int(res.position[i]) == pos
        base = torch.where((ids == 2) | (ids == 3) | (ids == 4), ids, torch.full_like(ids, 4))
        L = ids.shape[1]
        assert torch.equal(res.baseline_ids[i, :L], base[0])
        theirs, _ = _captum(lambda x: torch.log_softmax(model(input_ids=x).logits[:, pos], -1), model, ids, base,
                            int(res.target[i]))
        assert int(res.target[i]) == int(model(input_ids=ids).logits[0, pos].argmax())
        assert_close(res.scores[i, :L], theirs[0].sum(-1), rtol=1e-6, atol=1e-9, what=f"MLM text {i}")


@pytest.mark.parametrize("make", [tm.gpt2, tm.llama], ids=["gpt2", "llama"])
def test_causal_next_token_equals_captum_and_batches_equal_singles(make, seed):
    tok = tm.word_tokenizer(bert=False, bos=True)
    model = make(seed=seed)
    texts = tm.random_texts(5, lo=2, hi=10, seed=seed)
    res = pt.attribute_tokens(model, texts, tokenizer=tok, target=9, n_steps=STEPS, baseline="zeros", batch_size=2,
                              return_embeddings=True, return_details=True)
    assert res.task == "causal_lm" and len(res.details) == len(res.buckets) >= 3
    emb = model.get_input_embeddings()
    for i, t in enumerate(texts):
        ids = torch.tensor([tok(t)["input_ids"]])
        L = ids.shape[1]
        assert int(res.position[i]) == L - 1  # the last real token
        one = pt.attribute_tokens(model, ids, target=9, n_steps=STEPS, baseline="zeros", tokenizer=tok)
        assert_close(res.scores[i, :L], one.scores[0], rtol=1e-9, atol=1e-12, what=f"bucketed vs single, text {i}")
        # Captum: IG on inputs_embeds from the zero embedding, BOS pinned to its own embedding
        x = emb(ids).detach()
        xb = torch.where((ids == 5).unsqueeze(-1), x, torch.zeros_like(x))
        ig = captum_attr.IntegratedGradients(lambda e: model(inputs_embeds=e).logits[:, -1])
        theirs = ig.attribute(x, xb, target=9, n_steps=STEPS, method="gausslegendre")
        assert theirs.abs().max() > 1e-3
        assert_close(res.embeddings[i, :L], theirs[0], rtol=1e-6, atol=1e-9, what=f"causal text {i}")
        assert res.embeddings[i, 0].abs().max() == 0  # the pinned BOS
        assert (res.scores[i, L:] == 0).all()


def test_idg_left_ig_are_complete_and_settings_pass_through(tok, seed):
    model = tm.bert_classifier(seed=seed)
    texts = tm.random_texts(3, seed=seed)
    idg = pt.attribute_tokens(model, texts, tokenizer=tok, method="idg", n_steps=STEPS, schedule="uniform",
                              return_details=True)
    # docs/methods.md §2: with exact importance, sum_i IDG_i = sum_k w_k IF_k^2 per text
    for d, idx in zip(idg.details, idg.buckets):
        want = (d.weights * d.importance ** 2).sum(1)
        assert_close(idg.scores[idx].sum(1), want, rtol=1e-9, atol=1e-12, what="IDG completeness")
    assert idg.settings["schedule"] == "uniform"
    left = pt.attribute_tokens(model, texts, tokenizer=tok, method="left_ig", n_steps=STEPS, r=0.5)
    assert left.method == "left_ig" and left.settings["r"] == 0.5 and torch.isfinite(left.scores).all()
    with pytest.raises(TypeError, match="rtoll"):  # unknown settings are named (rtol lands with issue #15)
        pt.attribute_tokens(model, texts, tokenizer=tok, rtoll=1e-3)


def test_reference_texts_distribution_and_expected_gradients(tok, seed):
    model = tm.bert_classifier(seed=seed)
    text, refs = "the big cat sat on a mat", ["a dog", "red blue green hot cold new old sun"]
    res = pt.attribute_tokens(model, text, tokenizer=tok, references=refs, target=1, n_steps=STEPS)
    # the distribution baseline is the mean of IG from each reference fitted to the text's length
    ids = torch.tensor([tok(text)["input_ids"]])
    L = ids.shape[1]
    want = torch.zeros(L, dtype=torch.float64)
    for r in refs:
        rid = torch.zeros(1, L, dtype=torch.long)
        r_ids = torch.tensor(tok(r)["input_ids"])[:L]
        rid[0, :r_ids.numel()] = r_ids
        base = torch.where((ids == 2) | (ids == 3), ids, rid)
        theirs, _ = _captum(lambda x: model(input_ids=x).logits, model, ids, base, 1)
        want += theirs[0].sum(-1) / len(refs)
    assert_close(res.scores[0], want, rtol=1e-6, atol=1e-9, what="distribution over reference texts")
    eg = pt.attribute_tokens(model, [text, "a cat"], tokenizer=tok, references=refs, method="expected_gradients",
                             n_references=4, target=1)
    assert eg.method == "expected_gradients" and eg.scores.shape == (2, L) and (eg.scores[1, 4:] == 0).all()
    # completeness against the weighted reference mean: |delta| small against the scores
    assert eg.delta.abs().max() < 10 * eg.scores.abs().sum(1).max()


def test_the_model_runs_only_through_the_runner(tok, seed):
    from test_one_runner import calls_only_through_the_runner

    model = tm.bert_classifier(seed=seed)
    with calls_only_through_the_runner(model) as calls:
        pt.attribute_tokens(model, tm.random_texts(3, seed=seed), tokenizer=tok, n_steps=4)
        pt.attribute_tokens(model, "a cat", tokenizer=tok, references=["a dog"], n_steps=4)
    assert calls


def test_import_pathattr_does_not_import_transformers():
    import subprocess
    import sys

    code = ("import sys, pathattr, pathattr.text; "
            "assert 'transformers' not in sys.modules, 'transformers imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_text_rows_and_load_pretrained(tok, seed, tmp_path, monkeypatch):
    model = tm.bert_classifier(seed=seed)
    texts = ["a cat", "the big red dog sat on a mat"]
    res = pt.attribute_tokens(model, texts, tokenizer=tok, n_steps=4)
    row = res.text(0)
    assert row["tokens"] == ["[CLS]", "a", "cat", "[SEP]"] and row["scores"].shape == (4,)
    assert torch.equal(row["scores"], res.scores[0, :4]) and row["position"] is None
    assert res.text(-1)["ids"].numel() == int(res.lengths[1])
    with pytest.raises(IndexError):
        res.text(2)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    m2, t2 = pt.load_pretrained(str(tmp_path), dtype=torch.float64)
    assert type(m2).__name__ == "BertForSequenceClassification" and not m2.training
    again = pt.attribute_tokens(m2, texts, tokenizer=t2, n_steps=4)
    assert_close(again.scores, res.scores, rtol=1e-12, atol=1e-14, what="the reloaded model")
    with pytest.raises(ValueError, match="local folder"):
        pt.load_pretrained(str(tmp_path / "missing"))
    monkeypatch.setitem(__import__("sys").modules, "transformers", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install pathattr\[text\]"):
        pt.load_pretrained(str(tmp_path))


def test_max_padding_changes_the_buckets_not_the_numbers(tok, seed, monkeypatch):
    import pathattr.text.tokens as tokens_mod

    model = tm.bert_classifier(seed=seed)
    texts = tm.random_texts(12, lo=2, hi=9, seed=seed)
    seen = []
    real = tokens_mod.length_buckets

    def spy(sizes, **kw):
        out = real(sizes, **kw)
        seen.append((kw["max_padding"], out, sizes))
        return out

    monkeypatch.setattr(tokens_mod, "length_buckets", spy)
    auto = pt.attribute_tokens(model, texts, tokenizer=tok, target=1, n_steps=STEPS)  # CPU: one length per bucket
    free = pt.attribute_tokens(model, texts, tokenizer=tok, target=1, n_steps=STEPS, max_padding=None)
    (mp_auto, b_auto, sizes), (mp_free, b_free, _) = seen
    assert mp_auto == 0.0 and mp_free is None and auto.settings["max_padding"] == "auto"
    assert all(len({sizes[i] for i in b}) == 1 for b in b_auto) and len(b_auto) > len(b_free)
    assert_close(auto.scores, free.scores, rtol=1e-9, atol=1e-12, what="buckets of one length vs padded buckets")
    with pytest.raises(ValueError, match="max_padding"):
        pt.attribute_tokens(model, texts, tokenizer=tok, max_padding=-1)
    with pytest.raises(TypeError, match="max_padding"):
        pt.attribute_tokens(model, texts, tokenizer=tok, max_padding="none")
