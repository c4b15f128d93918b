"""Tiny text models and a tokenizer for tests, built without downloads.

`word_tokenizer()` is a transformers.PreTrainedTokenizerFast over a `tokenizers`
WordLevel model: whitespace words, a fixed vocabulary of WORDS plus the specials
[PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4 <s>=5 </s>=6. With bert=True it wraps texts
as [CLS] ... [SEP]; with bos=True as <s> ...; else adds nothing.
The models are random, fp64, eval mode, with a vocabulary of VOCAB ids (>= the tokenizer's).
Shared with the text apps' tests (tests of `pathattr attribute` / `serve` on text).
"""
from __future__ import annotations

import torch

WORDS = ("the a cat dog sat on mat red blue green big small runs jumps and or not very good bad "
         "is was it this that of in to with for at by from up down over under hot cold new old "
         "sun moon tree house car road fish bird sky rain snow wind day night fast slow").split()
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>")
VOCAB = len(SPECIALS) + len(WORDS)  # 64: the models' vocabulary is the tokenizer's


def word_tokenizer(bert: bool = True, bos: bool = False, padding_side: str = "right"):
    """A fast tokenizer over whitespace words (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + tuple(WORDS))}
    assert len(vocab) <= VOCAB
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if bert:
        tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                           special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    elif bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                           special_tokens=[("<s>", 5)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", bos_token="<s>", eos_token="</s>",
                                   padding_side=padding_side)


def _init(seed):
    torch.manual_seed(seed)


def bert_classifier(num_labels: int = 3, seed: int = 0):
    """Tiny random BertForSequenceClassification (hidden 32, 2 layers), fp64, eval."""
    import transformers
    _init(seed)
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=37, max_position_embeddings=64, num_labels=num_labels,
                                  initializer_range=0.3, pad_token_id=0)
    return transformers.BertForSequenceClassification(cfg).eval().double()


def bert_masked_lm(seed: int = 1):
    """Tiny random BertForMaskedLM, fp64, eval."""
    import transformers
    _init(seed)
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=37, max_position_embeddings=64, initializer_range=0.3,
                                  pad_token_id=0)
    return transformers.BertForMaskedLM(cfg).eval().double()


def gpt2(seed: int = 2, n_embd: int = 32, n_layer: int = 2):
    """Tiny random GPT2LMHeadModel, fp64, eval."""
    import transformers
    _init(seed)
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_positions=128, n_embd=n_embd, n_layer=n_layer, n_head=2,
                                  initializer_range=0.3, bos_token_id=5, eos_token_id=6, pad_token_id=0)
    return transformers.GPT2LMHeadModel(cfg).eval().double()


def llama(seed: int = 3, hidden: int = 32, layers: int = 2):
    """Tiny random LlamaForCausalLM, fp64, eval."""
    import transformers
    _init(seed)
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2 * hidden + 5,
                                   num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,
                                   max_position_embeddings=128, initializer_range=0.3, bos_token_id=5,
                                   eos_token_id=6, pad_token_id=0)
    return transformers.LlamaForCausalLM(cfg).eval().double()


def random_texts(n: int, lo: int = 2, hi: int = 9, seed: int = 0):
    """n texts of lo..hi words from WORDS (a seeded generator)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        k = int(torch.randint(lo, hi + 1, (1,), generator=g))
        out.append(" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (k,), generator=g)))
    return out
