"""Token attribution for Hugging Face models in one call (docs/methods.md §15).

Layer IG (or IDG, Left-IG, Expected Gradients, distribution baselines) at the output of
`model.get_input_embeddings()`, through the project's layer code (layers/layer.py): the
model adds position and token-type embeddings itself; those are not on the path.
"""
from __future__ import annotations

from typing import Any, Optional

from .results import TokenAttribution


def attribute_tokens(model, inputs, *, tokenizer=None, target=None, position=None, task: str = "auto",
                     method: str = "ig", baseline: Any = "pad", references: Any = None,
                     keep_special_tokens: bool = True, n_steps: int = 50, rule: str = "gausslegendre",
                     output: str = "logit", internal_batch_size: Optional[int] = None,
                     batch_size: int = 32, max_tokens: Optional[int] = None, return_embeddings: bool = False,
                     return_convergence_delta: bool = True, return_details: bool = False,
                     **method_kwargs) -> TokenAttribution:
    """Attribute a Hugging Face model's prediction to its input tokens.

    Args:
        model: a Hugging Face model (sequence classification, masked LM or causal LM),
            eval mode; anything with get_input_embeddings() and forward(input_ids=,
            attention_mask=[, token_type_ids=]) returning `.logits`.
        inputs: a str or list of str (with tokenizer=); token ids (L,) or (B, L) int64;
            a dict / BatchEncoding with input_ids (+ attention_mask, token_type_ids);
            or a list of 1-D id tensors / lists (ragged). Ragged inputs are bucketed by
            length (length_buckets(batch_size, max_tokens)) and padded per bucket only.
        tokenizer: a Hugging Face tokenizer: for strings, token strings, and the
            pad/unk/mask ids of the baseline.
        target: the explained class (sequence classification) or token id (LM): None
            (the argmax at the input), an int, a (B,) tensor / list, or a str (a label of
            config.label2id, or a token with tokenizer=).
        position: masked LM: the [MASK] position explained (None: the first mask token of
            each text); causal LM: the position whose next-token prediction is explained
            (None: the last real token); int or (B,). Not for sequence classification.
        task: "auto" (from the model's class), "sequence_classification", "masked_lm", "causal_lm".
        method: "ig", "idg", "left_ig" or "expected_gradients" (needs references=).
        baseline: "pad", "unk", "mask" (that token's embedding at every position),
            "zeros" (a zero embedding), an int token id, or ids (B, L) / (L,).
        references: reference texts (list of str) or ids (R, L'): a distribution baseline
            over them for "ig"/"idg" (docs/methods.md §7), the reference set for
            "expected_gradients"; each reference is cut / padded (pad id) to a text's length.
        keep_special_tokens: special tokens ([CLS], [SEP], BOS, EOS, [MASK]) keep their own
            id in the baseline (their attribution is then 0).
        n_steps, rule: the quadrature (as layer_integrated_gradients; rule is its `method`).
        output: "logit", "log_softmax" or "softmax" of the explained class.
        internal_batch_size: path points per model call (None: the engine's budget).
        batch_size, max_tokens: the length buckets for ragged inputs.
        return_embeddings: also the full (B, L, E) embedding attributions.
        return_convergence_delta: compute delta (two extra forwards per text).
        return_details: keep the engine's AttributionResult per bucket.
        **method_kwargs: passed to the method's settings (e.g. IDG's schedule, Left-IG's
            r, n_references / seed for Expected Gradients; rtol= once the tolerance
            issue lands).
    Returns: TokenAttribution. Errors: ValueError / TypeError naming the argument, before
        any model call.
    """
    raise NotImplementedError
