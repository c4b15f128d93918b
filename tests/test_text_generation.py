"""pathattr.text.attribute_generation against Captum 0.9's LLMGradientAttribution wrapped
around LayerIntegratedGradients, target token by target token, in fp64 (tiny random GPT-2
and Llama from configs); the "all" mode against one Captum layer-IG per target over the
whole prefix; the causal zeros; generate(); completeness."""
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
    return tm.word_tokenizer(bert=False)


@pytest.mark.parametrize("make", [tm.gpt2, tm.llama], ids=["gpt2", "llama"])
def test_prompt_mode_equals_captum_llm_gradient_attribution(make, tok, seed):
    model = make(seed=seed)
    prompt = tm.random_texts(1, 7, 7, seed=seed)[0]
    cont = torch.randint(7, tm.VOCAB, (5,), generator=torch.Generator().manual_seed(seed))
    ours = pt.attribute_generation(model, prompt, tokenizer=tok, continuation=cont, baseline=0,
                                   attribute_to="prompt", n_steps=STEPS)
    llm = captum_attr.LLMGradientAttribution(captum_attr.LayerIntegratedGradients(model, model.get_input_embeddings()),
                                             tok)
    theirs = llm.attribute(captum_attr.TextTokenInput(prompt, tok), target=cont, n_steps=STEPS)
    P, T = 7, 5
    assert ours.matrix.shape == (T, P + T) and ours.prompt_length == P
    assert theirs.token_attr.abs().max() > 1e-2
    assert_close(ours.prompt_matrix, theirs.token_attr, rtol=1e-6, atol=1e-9, what="generation vs Captum")
    assert (ours.matrix[:, P:] == 0).all()  # the continuation keeps its tokens at both ends
    assert ours.tokens[:P] == tok.convert_ids_to_tokens(tok(prompt)["input_ids"])
    # completeness of each row: sum = log p(x) - log p(baseline), up to the quadrature's delta
    full = torch.cat([torch.tensor(tok(prompt)["input_ids"]), cont]).view(1, -1)
    lp = torch.log_softmax(model(input_ids=full).logits[0, P - 1:-1], -1).gather(1, cont.view(-1, 1)).view(-1)
    assert_close(ours.values, lp, rtol=1e-9, atol=1e-10, what="values")
    assert_close(ours.matrix.sum(1) - (ours.values - ours.baseline_values), ours.delta, rtol=1e-9, atol=1e-10,
                 what="delta")


@pytest.mark.parametrize("output", ["log_prob", "logit"])
def test_all_mode_equals_one_layer_ig_per_target_over_the_prefix(output, seed):
    tok = tm.word_tokenizer(bert=False, bos=True)
    model = tm.llama(seed=seed)
    prompt = "<s> " + " ".join(tm.random_texts(1, 5, 5, seed=seed)[0].split())
    p_ids = torch.tensor(tok(prompt, add_special_tokens=False)["input_ids"])
    cont = torch.tensor(tok("the cat sat", add_special_tokens=False)["input_ids"])
    ours = pt.attribute_generation(model, p_ids, tokenizer=tok, continuation="the cat sat", baseline="unk",
                                   keep_special_tokens=True, output=output, n_steps=STEPS, return_embeddings=True)
    ids = torch.cat([p_ids, cont])
    P, T = p_ids.numel(), cont.numel()
    for k in range(T):
        prefix = ids[:P + k].view(1, -1)
        base = torch.where(prefix == 5, prefix, torch.ones_like(prefix))  # [UNK] = 1, BOS pinned

        def f(x):
            logits = model(input_ids=x).logits[:, -1]
            return torch.log_softmax(logits, -1) if output == "log_prob" else logits

        lig = captum_attr.LayerIntegratedGradients(f, model.get_input_embeddings())
        theirs = lig.attribute(prefix, base, target=int(cont[k]), n_steps=STEPS, method="gausslegendre")
        assert theirs.abs().max() > 1e-3
        assert_close(ours.embeddings[k, :P + k], theirs[0], rtol=1e-6, atol=1e-9, what=f"row {k} ({output})")
        assert (ours.matrix[k, P + k:] == 0).all()  # later positions: exactly zero
    assert torch.equal(ours.baseline_ids, torch.where(ids == 5, ids, torch.ones_like(ids)))


def test_generate_then_attribute(tok, seed):
    model = tm.gpt2(seed=seed)
    p = torch.randint(7, tm.VOCAB, (6,), generator=torch.Generator().manual_seed(seed))
    res = pt.attribute_generation(model, p, max_new_tokens=4, baseline="pad", n_steps=STEPS, tokenizer=tok,
                                  internal_batch_size=5)
    with torch.no_grad():
        want = model.generate(input_ids=p.view(1, -1), attention_mask=torch.ones(1, 6, dtype=torch.long),
                              max_new_tokens=4, do_sample=False, pad_token_id=0)[0, 6:]
    assert torch.equal(res.continuation_ids, want) and res.matrix.shape == (want.numel(), 6 + want.numel())
    again = pt.attribute_generation(model, p, continuation=want, baseline="pad", n_steps=STEPS)
    assert_close(res.matrix, again.matrix, rtol=1e-10, atol=1e-12, what="chunked (5 rows) vs one chunk")
    assert res.delta.abs().max() < 0.05 * res.matrix.abs().sum(1).max() + 1e-6


def test_generation_runs_the_model_only_through_the_runner(tok, seed):
    from test_one_runner import calls_only_through_the_runner

    model = tm.gpt2(seed=seed)
    with calls_only_through_the_runner(model) as calls:
        pt.attribute_generation(model, "the cat", tokenizer=tok, max_new_tokens=2, baseline=0, n_steps=4)
    assert calls


def test_batched_backward_and_its_fallback_loop_agree(tok, seed, monkeypatch):
    model = tm.llama(seed=seed)
    p = torch.randint(7, tm.VOCAB, (6,), generator=torch.Generator().manual_seed(seed))
    c = torch.randint(7, tm.VOCAB, (4,), generator=torch.Generator().manual_seed(seed + 1))
    from pathattr.engine.runner import ModelRunner

    looped = pt.attribute_generation(model, p, continuation=c, baseline="unk", tokenizer=tok, n_steps=STEPS)
    monkeypatch.setattr(ModelRunner, "batched_columns", True)
    batched = pt.attribute_generation(model, p, continuation=c, baseline="unk", tokenizer=tok, n_steps=STEPS)
    assert_close(looped.matrix, batched.matrix, rtol=1e-9, atol=1e-11, what="loop vs batched backward")
    real_grad = torch.autograd.grad
    used = []

    def no_batching_rule(*args, **kwargs):  # as for a model with an op vmap cannot batch
        if kwargs.get("is_grads_batched"):
            used.append(1)
            raise RuntimeError("Batching rule not implemented for aten::some_op")
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", no_batching_rule)
    fallback = pt.attribute_generation(model, p, continuation=c, baseline="unk", tokenizer=tok, n_steps=STEPS,
                                       internal_batch_size=4)
    assert used == [1]  # tried once, then the loop for the rest of the call (3 chunks)
    assert_close(fallback.matrix, looped.matrix, rtol=1e-9, atol=1e-11, what="fallback loop")
