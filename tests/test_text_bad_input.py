"""Bad input to pathattr.text: each a ValueError / TypeError naming the argument, raised
before the model runs (a forward pre-hook counts the model's calls: 0)."""
import pytest
import torch
from torch import nn

pytest.importorskip("transformers")

import pathattr.text as pt  # noqa: E402
import text_models as tm  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    return tm.word_tokenizer()


class Counted:
    """The model's forward calls, counted by a pre-hook."""

    def __init__(self, model):
        self.model, self.calls = model, 0
        model.register_forward_pre_hook(self._count)

    def _count(self, *_):
        self.calls += 1


@pytest.fixture(scope="module")
def bert():
    return Counted(tm.bert_classifier(num_labels=3))


@pytest.fixture(scope="module")
def mlm():
    return Counted(tm.bert_masked_lm())


@pytest.fixture(scope="module")
def gpt():
    return Counted(tm.gpt2())


IDS = torch.tensor([[2, 7, 9, 11, 3]])
V = tm.VOCAB


def _cases(tok):
    ok = dict(tokenizer=tok, n_steps=2)
    yield "bert", "ids out of vocabulary", dict(inputs=torch.tensor([[2, 7, V, 3]])), ValueError, "vocabulary"
    yield "bert", "negative id", dict(inputs=torch.tensor([[2, -1, 3]])), ValueError, "negative"
    yield "bert", "float ids", dict(inputs=IDS.double()), TypeError, "integer token ids"
    yield "bert", "float id list", dict(inputs=[[2.0, 7.0]]), TypeError, "integer"
    yield "bert", "zero-length ids", dict(inputs=torch.zeros(1, 0, dtype=torch.long)), ValueError, "zero tokens"
    yield "bert", "empty text", dict(inputs="   ", **ok), ValueError, "empty text"
    yield "bert", "empty text in a list", dict(inputs=["a cat", ""], **ok), ValueError, r"inputs\[1\].*empty"
    yield "bert", "empty list", dict(inputs=[]), ValueError, "inputs is empty"
    yield "bert", "text without tokenizer", dict(inputs="a cat"), ValueError, "tokenizer"
    yield "bert", "mask of the wrong shape", dict(inputs={"input_ids": IDS, "attention_mask": torch.ones(1, 4)}), \
        ValueError, "attention_mask has shape"
    yield "bert", "mask values", dict(inputs={"input_ids": IDS, "attention_mask": torch.full((1, 5), 2)}), \
        ValueError, "attention_mask must hold only 0 and 1"
    yield "bert", "all-zero mask row", dict(inputs={"input_ids": IDS, "attention_mask": torch.zeros(1, 5)}), \
        ValueError, "attention_mask row 0"
    yield "bert", "dict without input_ids", dict(inputs={"ids": IDS}), ValueError, "input_ids"
    yield "bert", "wrong target class", dict(inputs=IDS, target=3), ValueError, "target holds 3.*3 classes"
    yield "bert", "negative target", dict(inputs=IDS, target=torch.tensor([-1])), ValueError, "target"
    yield "bert", "float target", dict(inputs=IDS, target=torch.tensor([1.0])), TypeError, "target"
    yield "bert", "target count", dict(inputs=IDS, target=[0, 1]), ValueError, "target"
    yield "bert", "unknown label", dict(inputs=IDS, target="LABEL_9"), ValueError, "target='LABEL_9'"
    yield "bert", "position for a classifier", dict(inputs=IDS, position=1), ValueError, "position"
    yield "bert", "bad baseline name", dict(inputs=IDS, baseline="blank"), ValueError, "baseline must be one of"
    yield "bert", "baseline id out of vocabulary", dict(inputs=IDS, baseline=V + 5), ValueError, "baseline"
    yield "bert", "baseline ids of the wrong shape", dict(inputs=IDS, baseline=torch.zeros(1, 3, dtype=torch.long)), \
        ValueError, "baseline has shape"
    yield "bert", "bad method", dict(inputs=IDS, method="guided_ig"), ValueError, "method must be one of"
    yield "bert", "EG without references", dict(inputs=IDS, method="expected_gradients"), ValueError, "references"
    yield "bert", "bad output", dict(inputs=IDS, output="prob"), ValueError, "output"
    yield "bert", "bad task", dict(inputs=IDS, task="translation"), ValueError, "task must be"
    yield "bert", "n_steps", dict(inputs=IDS, n_steps=0), ValueError, "n_steps"
    yield "bert", "unknown setting", dict(inputs=IDS, steps=4), TypeError, "steps"
    yield "bert", "batch_size", dict(inputs=["a cat"], tokenizer=tok, batch_size=0), ValueError, "batch_size"
    yield "mlm", "position past the sequence", dict(inputs=IDS, position=5), ValueError, "position 5 of text 0"
    yield "mlm", "no mask token", dict(inputs=IDS, tokenizer=tok), ValueError, "position=None.*mask token"
    yield "mlm", "target token out of vocabulary", dict(inputs=IDS, position=1, target=V), ValueError, "target"
    yield "gpt", "position past the sequence (causal)", dict(inputs=IDS, position=[9]), ValueError, "position"


def test_each_bad_input_is_named_before_any_model_call(tok, bert, mlm, gpt):
    models = {"bert": bert, "mlm": mlm, "gpt": gpt}
    for which, what, kw, exc, match in _cases(tok):
        m = models[which]
        before = m.calls
        with pytest.raises(exc, match=match):
            pt.attribute_tokens(m.model, **kw)
        assert m.calls == before, f"{what}: the model ran before the error"


def test_model_without_input_embeddings_and_tokenizer_without_pad(tok):
    class Plain(nn.Module):
        def forward(self, input_ids):
            return input_ids.float()

    with pytest.raises(TypeError, match="get_input_embeddings"):
        pt.attribute_tokens(Plain(), IDS)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        pt.attribute_tokens(lambda x: x, IDS)
    with pytest.raises(TypeError, match="get_input_embeddings"):
        pt.attribute_generation(Plain(), IDS[0], continuation=[7])
    no_pad = tm.word_tokenizer()
    no_pad.pad_token = None
    m = Counted(tm.bert_classifier())
    with pytest.raises(ValueError, match="baseline='pad'.*no pad token"):
        pt.attribute_tokens(m.model, "a cat", tokenizer=no_pad)
    with pytest.raises(ValueError, match="baseline='pad'.*no pad token"):
        pt.attribute_generation(tm.gpt2(), "a cat", tokenizer=no_pad, continuation="the")
    assert m.calls == 0


def test_encoder_decoder_models_are_refused_by_name_before_any_model_call(tok):
    """BART / T5 embed through their encoder's and decoder's own modules: a path at
    get_input_embeddings() would never be taken (it used to fail after a forward with
    'layer was not called')."""
    import transformers

    torch.manual_seed(0)
    bart = transformers.BartForSequenceClassification(transformers.BartConfig(
        vocab_size=tm.VOCAB, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64,
        pad_token_id=0)).eval()
    m = Counted(bart)
    with pytest.raises(ValueError, match="encoder-decoder model"):
        pt.attribute_tokens(m.model, "a cat", tokenizer=tok)
    assert m.calls == 0


def test_generation_bad_input_before_any_model_call(tok):
    m = Counted(tm.gpt2())
    g = m.model
    cases = [
        (dict(prompt="a cat", tokenizer=tok), ValueError, "exactly one of continuation"),
        (dict(prompt="a cat", tokenizer=tok, continuation="the", max_new_tokens=2), ValueError, "exactly one"),
        (dict(prompt="", tokenizer=tok, continuation="the"), ValueError, "prompt is an empty text"),
        (dict(prompt=IDS[0], continuation=torch.tensor([V])), ValueError, "continuation holds token id"),
        (dict(prompt=torch.tensor([-3, 4]), continuation=[7]), ValueError, "prompt holds a negative"),
        (dict(prompt=IDS.double(), continuation=[7]), TypeError, "prompt must hold integer"),
        (dict(prompt=IDS[0], continuation=torch.zeros(0, dtype=torch.long)), ValueError, "continuation has zero"),
        (dict(prompt=torch.ones(2, 3, dtype=torch.long), continuation=[7]), ValueError, "one prompt per call"),
        (dict(prompt=IDS[0], max_new_tokens=0), ValueError, "max_new_tokens"),
        (dict(prompt=IDS[0], max_new_tokens=500), ValueError, "max_new_tokens.*positions"),
        (dict(prompt=IDS[0], continuation=torch.full((200,), 7)), ValueError, "past the model's 128 positions"),
        (dict(prompt=IDS[0], continuation=[7], output="prob"), ValueError, "output"),
        (dict(prompt=IDS[0], continuation=[7], attribute_to="continuation"), ValueError, "attribute_to"),
        (dict(prompt=IDS[0], continuation=[7], method="idg"), ValueError, "method must be 'ig'"),
        (dict(prompt=IDS[0], continuation=[7], baseline="mask"), ValueError, "baseline='mask'"),
        (dict(prompt=IDS[0], continuation=[7], baseline=torch.zeros(3, dtype=torch.long)), ValueError, "baseline"),
        (dict(prompt=IDS[0], continuation=[7], n_steps=-1), ValueError, "n_steps"),
        (dict(prompt="a cat", continuation=[7]), ValueError, "tokenizer"),
        (dict(prompt=IDS[0], continuation=[7], atol=1e-3), TypeError, "atol"),
        (dict(prompt=IDS[0], continuation=[7], rtol=0.0), ValueError, "rtol"),
        (dict(prompt=IDS[0], continuation=[7], rtol=1e-2, min_steps=3), ValueError, "min_steps"),
        (dict(prompt=IDS[0], continuation=[7], min_steps=33), ValueError, "min_steps.*give rtol"),
    ]
    for kw, exc, match in cases:
        with pytest.raises(exc, match=match):
            pt.attribute_generation(g, **kw)
    with pytest.raises(ValueError, match="not a causal LM"):
        pt.attribute_generation(tm.bert_classifier(), IDS[0], continuation=[7])
    assert m.calls == 0


def test_length_buckets_bad_arguments():
    for args, kw, exc, match in [
        ([3, 0], {}, ValueError, r"lengths\[1\]"), ([2.5], {}, TypeError, r"lengths\[0\]"), ("abc", {}, TypeError, "lengths"),
        ([3], {"max_batch": 0}, ValueError, "max_batch"), ([3], {"max_tokens": 0}, ValueError, "max_tokens"),
        (torch.tensor([1.0]), {}, TypeError, "lengths"),
    ]:
        with pytest.raises(exc, match=match):
            pt.length_buckets(args, **kw)
