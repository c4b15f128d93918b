"""Text and language models: token attribution and generation attribution (docs/methods.md §15).

    import pathattr.text as pt
    res = pt.attribute_tokens(model, ["a text", "another"], tokenizer=tok)      # TokenAttribution
    gen = pt.attribute_generation(model, "a prompt", tokenizer=tok, max_new_tokens=8)  # GenerationAttribution
    groups = pt.length_buckets([12, 80, 14, 77], max_batch=32, max_tokens=4096)

Nothing here imports `transformers`: models and tokenizers are used through their
methods (get_input_embeddings, generate, __call__, convert_ids_to_tokens). Only
`load_pretrained` needs the package (pip install pathattr[text]).
"""
from .buckets import length_buckets
from .generation import attribute_generation
from .loading import load_pretrained
from .results import GenerationAttribution, TokenAttribution
from .tokens import attribute_tokens

__all__ = ["attribute_tokens", "attribute_generation", "length_buckets", "load_pretrained",
           "TokenAttribution", "GenerationAttribution"]
