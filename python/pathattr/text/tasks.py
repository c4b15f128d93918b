"""Which prediction of a text model is explained: the task and the logits it reads.

A Hugging Face model's class name says its task (…ForSequenceClassification,
…ForMaskedLM, …ForCausalLM / …LMHeadModel). `TextForward` is the model the engine sees:
forward(input_ids, attention_mask, token_type_ids, position) -> logits (B, C) of the
explained position (sequence classification: the model's own (B, C) logits).
"""
from __future__ import annotations

import inspect
from typing import Any, Optional

import torch
from torch import nn

TASKS = ("sequence_classification", "masked_lm", "causal_lm")


def task_of_class_name(name: str) -> Optional[str]:
    if name.endswith("ForSequenceClassification"):
        return "sequence_classification"
    if name.endswith("ForMaskedLM"):
        return "masked_lm"
    if name.endswith("ForCausalLM") or name.endswith("LMHeadModel"):
        return "causal_lm"
    return None


def resolve_task(model: Any, task: str) -> str:
    """task as given, or (task="auto") from the model's class name."""
    if task == "auto":
        found = task_of_class_name(type(model).__name__)
        if found is None:
            raise ValueError(f"task: cannot tell the task of a {type(model).__name__} from its class name; pass "
                             f"task= one of {', '.join(map(repr, TASKS))}")
        return found
    if task not in TASKS:
        raise ValueError(f"task must be 'auto' or one of {', '.join(map(repr, TASKS))}; got {task!r}")
    return task


def logits_of(out: Any) -> torch.Tensor:
    """The logits of a model output (ModelOutput / dict with 'logits', tuple, or tensor)."""
    if isinstance(out, torch.Tensor):
        return out
    logits = out.get("logits") if hasattr(out, "get") else None
    if logits is None and isinstance(out, (tuple, list)) and out:
        logits = out[0]
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"the model's output ({type(out).__name__}) has no `logits` tensor")
    return logits


def token_values(logits: torch.Tensor, tokens: torch.Tensor, output: str) -> torch.Tensor:
    """logits (rows, m, V) at m positions, tokens (m,): each position's value of its token,
    (rows, m): its log-probability (output="log_prob") or its logit ("logit")."""
    if output == "log_prob":
        logits = torch.log_softmax(logits, -1)
    m = tokens.numel()
    return logits.gather(2, tokens.view(1, m, 1).expand(logits.shape[0], m, 1)).squeeze(2)


def fast_forward_kwargs(model: nn.Module, keep: Optional[int] = None) -> dict:
    """Keywords that skip work an attribution never reads, where the model's forward takes them:
    use_cache=False (no key/value cache is built, then thrown away) and logits_to_keep=keep
    (the output layer only at the last `keep` positions; generation reads no others).
    The numbers are unchanged: each position's logits do not depend on these."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}
    kw = {}
    if "use_cache" in params:
        kw["use_cache"] = False
    if keep is not None and "logits_to_keep" in params:
        kw["logits_to_keep"] = int(keep)
    return kw


class TextForward(nn.Module):
    """The HF model called with keywords, reduced to the explained position's logits (B, C).

    Keywords, not positions: the order of forward's arguments differs between models
    (GPT-2 takes past_key_values second). `position` (B,) is a per-row extra argument,
    so the engine hands every path row its own text's position.
    """

    def __init__(self, model: nn.Module, task: str):
        super().__init__()
        self.model = model
        self.task = task
        self.kw = fast_forward_kwargs(model)

    def forward(self, input_ids, attention_mask, token_type_ids=None, position=None):
        kw = dict(self.kw, input_ids=input_ids, attention_mask=attention_mask)
        if token_type_ids is not None:
            kw["token_type_ids"] = token_type_ids
        logits = logits_of(self.model(**kw))
        if self.task == "sequence_classification":
            return logits
        rows = torch.arange(logits.shape[0], device=logits.device)
        return logits[rows, position.to(logits.device)]
