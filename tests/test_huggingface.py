"""Hugging Face models as users have them, no wrapper class: tiny random models built
from configs (no downloads), in fp64, against Captum 0.9 with the same baseline, steps
and rule (Gauss-Legendre). Their forward returns a ModelOutput; the embedding layer
is called with keyword arguments; the attention mask is an extra forward argument."""
import pytest
import torch

import pathattr as pa
from conftest import assert_close

transformers = pytest.importorskip("transformers")
captum_attr = pytest.importorskip("captum.attr")

STEPS = 16


@pytest.fixture(scope="module")
def bert():
    torch.manual_seed(1234)
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=32, num_labels=3,
                                  initializer_range=0.3)  # attributions of order 0.1, not 1e-5
    model = transformers.AutoModelForSequenceClassification.from_config(cfg).eval().double()
    ids = torch.randint(5, 50, (3, 7))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0  # one padded input: the mask must reach every path row of its input
    base = torch.zeros_like(ids)
    base[:, 0] = ids[:, 0]  # keep [CLS]-like first token, pad the rest
    return model, ids, mask, base


def test_layer_ig_on_bert_embeddings_equals_captum(bert, seed):
    model, ids, mask, base = bert
    target = torch.tensor([0, 2, 1])
    ours, delta = pa.layer_integrated_gradients(model, model.bert.embeddings, ids, base, target=target,
                                                additional_forward_args=(mask,), n_steps=STEPS,
                                                return_convergence_delta=True)
    lig = captum_attr.LayerIntegratedGradients(lambda i, m: model(i, m).logits, model.bert.embeddings)
    theirs, their_delta = lig.attribute(ids, base, target=target, additional_forward_args=(mask,), n_steps=STEPS,
                                        method="gausslegendre", return_convergence_delta=True)
    assert ours.shape == theirs.shape == (3, 7, 16) and ours.dtype == torch.float64
    assert theirs.abs().max() > 1e-2  # numbers that mean something at these tolerances
    assert_close(ours, theirs, rtol=1e-6, atol=1e-9, what="layer IG, BERT embeddings")
    assert_close(delta, their_delta, rtol=1e-6, atol=1e-7, what="layer IG delta")
    # target=None: the argmax of the ModelOutput's logits, as Captum is told explicitly
    auto = pa.layer_integrated_gradients(model, model.get_input_embeddings(), ids, base,
                                         additional_forward_args=(mask,), n_steps=STEPS, return_details=True)
    assert torch.equal(auto.target, model(ids, mask).logits.argmax(1))


def test_ig_on_inputs_embeds_with_a_plain_function_equals_captum(bert, seed):
    model, ids, mask, base = bert
    emb = model.get_input_embeddings()
    x, xb = emb(ids).detach(), emb(base).detach()
    target = torch.tensor([1, 1, 2])

    def fn(e, m):  # returns the ModelOutput itself: no wrapper, no .logits
        return model(inputs_embeds=e, attention_mask=m)

    ours, delta = pa.integrated_gradients(fn, x, xb, target=target, additional_forward_args=(mask,), n_steps=STEPS,
                                          return_convergence_delta=True)
    ig = captum_attr.IntegratedGradients(lambda e, m: fn(e, m).logits)
    theirs, their_delta = ig.attribute(x, xb, target=target, additional_forward_args=(mask,), n_steps=STEPS,
                                       method="gausslegendre", return_convergence_delta=True)
    assert_close(ours, theirs, rtol=1e-6, atol=1e-9, what="IG on inputs_embeds")
    assert_close(delta, their_delta, rtol=1e-6, atol=1e-7, what="IG delta")
    # an output callable receives the ModelOutput itself, and a resolved target
    seen = []

    def prob(out, t):
        seen.append((type(out).__name__, t))
        return torch.softmax(out.logits, 1).gather(1, t.view(-1, 1)).view(-1)

    got = pa.integrated_gradients(fn, x, xb, additional_forward_args=(mask,), n_steps=STEPS, output=prob)
    want = pa.integrated_gradients(fn, x, xb, target=fn(x, mask).logits.argmax(1), additional_forward_args=(mask,),
                                   n_steps=STEPS, output="softmax")
    assert_close(got, want, rtol=1e-12, atol=1e-14, what="callable on a ModelOutput")
    assert seen and all(name == "SequenceClassifierOutput" and t is not None for name, t in seen)


def _idg_invariant(res, what):
    """docs/methods.md §2: with exact importance, sum_i IDG_i = sum_k w_k IF_k^2 per input."""
    total = res.attributions.reshape(res.attributions.shape[0], -1).sum(1)
    want = (res.weights * res.importance ** 2).sum(1)
    assert_close(total, want, rtol=1e-9, atol=1e-12, what=what)


def test_idg_and_layer_idg_on_bert(bert, seed):
    model, ids, mask, base = bert
    emb = model.get_input_embeddings()
    x, xb = emb(ids).detach(), emb(base).detach()
    res = pa.integrated_decision_gradients(lambda e, m: model(inputs_embeds=e, attention_mask=m), x, xb,
                                           additional_forward_args=(mask,), n_steps=STEPS, return_details=True)
    assert res.attributions.shape == x.shape
    _idg_invariant(res, "IDG on inputs_embeds")
    lres = pa.layer_integrated_decision_gradients(model, model.bert.embeddings, ids, base,
                                                  additional_forward_args=(mask,), n_steps=STEPS, return_details=True)
    assert lres.attributions.shape == (3, 7, 16)
    _idg_invariant(lres, "layer IDG on BERT embeddings")
    assert torch.equal(lres.target, model(ids, mask).logits.argmax(1))


def test_gpt2_next_token_logit_from_the_raw_output(seed):
    torch.manual_seed(99)
    cfg = transformers.GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=2, n_head=2, initializer_range=0.3)
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval().double()
    ids = torch.randint(0, 40, (2, 6))
    nxt = torch.tensor([3, 17])  # the explained next token of each input

    def last_logit(out, t):  # CausalLMOutputWithCrossAttentions: logits (B, T, V)
        return out.logits[:, -1].gather(1, t.view(-1, 1)).view(-1)

    ours, delta = pa.layer_integrated_gradients(model, model.transformer.wte, ids, torch.zeros_like(ids), target=nxt,
                                                n_steps=STEPS, output=last_logit, return_convergence_delta=True)
    lig = captum_attr.LayerIntegratedGradients(lambda i: model(i).logits[:, -1], model.transformer.wte)
    theirs, their_delta = lig.attribute(ids, torch.zeros_like(ids), target=nxt, n_steps=STEPS,
                                        method="gausslegendre", return_convergence_delta=True)
    assert_close(ours, theirs, rtol=1e-6, atol=1e-9, what="GPT-2 layer IG, next-token logit")
    assert_close(delta, their_delta, rtol=1e-6, atol=1e-7, what="GPT-2 delta")
    # the logits here are (B, T, V), so target=None cannot be resolved: said, naming target
    with pytest.raises(ValueError, match="target"):
        pa.layer_integrated_gradients(model, model.transformer.wte, ids, n_steps=4, output=last_logit)
