"""Generation attribution, teacher-forced (docs/methods.md §15).

For s = prompt + continuation, every continuation token's log-probability (or logit)
is attributed to the tokens before it by IG in the embedding space of
`model.get_input_embeddings()`. One forward of the whole sequence per path point serves
every continuation position (a causal model's position t sees only s_<=t); the T
per-position gradients come from one batched backward (autograd's is_grads_batched).
"""
from __future__ import annotations

from typing import Any, Optional

from .results import GenerationAttribution


def attribute_generation(model, prompt, *, tokenizer=None, continuation=None, max_new_tokens: Optional[int] = None,
                         output: str = "log_prob", attribute_to: str = "all", method: str = "ig",
                         baseline: Any = "pad", keep_special_tokens: bool = False, n_steps: int = 50,
                         rule: str = "gausslegendre", internal_batch_size: Optional[int] = None,
                         return_embeddings: bool = False, **method_kwargs) -> GenerationAttribution:
    """Attribute each token of a continuation to every earlier token of prompt + continuation.

    Args:
        model: a Hugging Face causal LM (forward(input_ids=) -> .logits (1, N, V); generate()).
        prompt: a str (with tokenizer=) or token ids (P,) / (1, P) int64.
        tokenizer: encodes str prompt/continuation (tokenizer(text)["input_ids"],
            special tokens as the tokenizer adds them to the prompt, none to the
            continuation); gives token strings and the pad/unk/mask ids of the baseline.
        continuation: the explained tokens, a str or ids (T,) / (1, T); or None with
            max_new_tokens=N: model.generate(greedy, N new tokens).
        output: "log_prob" (log_softmax of the logits, Captum's LLMGradientAttribution) or "logit".
        attribute_to: "all" (default): prompt and earlier continuation tokens all move from
            the baseline (row k covers every position before P + k); "prompt": only the
            prompt moves, the continuation keeps its own tokens at both ends (exactly
            Captum's LLMGradientAttribution with LayerIntegratedGradients).
        method: "ig" (one schedule shared by every position; per-position adaptive
            schedules such as IDG's would need one forward per position).
        baseline: "pad", "unk", "mask", "eos", "zeros", an int token id (Captum's default
            is id 0), or ids (N,) / (P,).
        keep_special_tokens: special tokens keep their own id in the baseline.
        n_steps, rule: the quadrature (Captum's default: 50, "gausslegendre").
        internal_batch_size: path points per forward (None: the engine's budget).
        return_embeddings: also the (T, N, E) embedding attributions.
        **method_kwargs: passed to the method's settings (rtol= once the tolerance issue lands).
    Returns: GenerationAttribution. Errors: ValueError / TypeError naming the argument,
        before any model call.
    """
    raise NotImplementedError
