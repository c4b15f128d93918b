"""The explained class / token and position of each text, checked before any model call."""
from __future__ import annotations

import numbers
from typing import Any, Optional

import torch


def n_classes(model: Any, task: str) -> Optional[int]:
    """How many logits the explained position has: num_labels, or the output vocabulary."""
    cfg = getattr(model, "config", None)
    if task == "sequence_classification":
        n = getattr(cfg, "num_labels", None)
    else:
        out = model.get_output_embeddings() if callable(getattr(model, "get_output_embeddings", None)) else None
        w = getattr(out, "weight", None)
        n = w.shape[0] if isinstance(w, torch.Tensor) else getattr(cfg, "vocab_size", None)
    return int(n) if isinstance(n, numbers.Integral) else None


def _label_id(label: str, model: Any, task: str, tokenizer: Any, name: str) -> int:
    if task == "sequence_classification":
        table = getattr(getattr(model, "config", None), "label2id", None) or {}
        if label not in table:
            raise ValueError(f"{name}={label!r} is not a label of the model (config.label2id: "
                             f"{', '.join(map(repr, table)) or 'none'})")
        return int(table[label])
    if tokenizer is None:
        raise ValueError(f"{name}={label!r} is a token: pass tokenizer= to turn it into an id (or pass the id)")
    tid = tokenizer.convert_tokens_to_ids(label)
    if tid is None or (tid == getattr(tokenizer, "unk_token_id", None) and label != getattr(tokenizer, "unk_token", None)):
        raise ValueError(f"{name}={label!r} is not a token of the tokenizer's vocabulary")
    return int(tid)


def resolve_target(target: Any, B: int, model: Any, task: str, tokenizer: Any, name: str = "target"):
    """None, or (B,) int64 in [0, C)."""
    if target is None:
        return None
    if isinstance(target, str):
        target = _label_id(target, model, task, tokenizer, name)
    if isinstance(target, (list, tuple)):
        target = [(_label_id(t, model, task, tokenizer, f"{name}[{i}]") if isinstance(t, str) else t)
                  for i, t in enumerate(target)]
        if not all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in target):
            raise TypeError(f"{name} must hold ints (class or token ids) or labels, got {target!r}")
        target = torch.tensor(target, dtype=torch.long)
    if isinstance(target, bool):
        raise TypeError(f"{name} must be an int, a list of ints or a (batch,) tensor, got a bool")
    if isinstance(target, numbers.Integral):
        t = torch.full((B,), int(target), dtype=torch.long)
    elif isinstance(target, torch.Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer ids, got dtype {target.dtype}")
        t = target.reshape(-1).long() if target.dim() <= 1 else None
        if t is None or (t.numel() != B and t.numel() != 1):
            raise ValueError(f"{name} must be one id or one per text ({B}); got shape {tuple(target.shape)}")
        t = t.expand(B).clone() if t.numel() == 1 else t.clone()
    else:
        raise TypeError(f"{name} must be None, an int, a str, a list or a (batch,) tensor; got {type(target).__name__}")
    C = n_classes(model, task)
    if t.numel():
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or (C is not None and hi >= C):
            what = "classes" if task == "sequence_classification" else "tokens in the output vocabulary"
            raise ValueError(f"{name} holds {lo if lo < 0 else hi}, but the model has {C} {what} (0..{(C or 0) - 1})")
    return t


def resolve_position(position: Any, ids: torch.Tensor, mask: torch.Tensor, task: str, tokenizer: Any, model: Any,
                     name: str = "position") -> Optional[torch.Tensor]:
    """(B,) the explained position of each row: given (int / list / (B,)), or the first [MASK]
    (masked LM) / the last real token (causal LM); None for sequence classification."""
    B, L = ids.shape
    if task == "sequence_classification":
        if position is not None:
            raise ValueError(f"{name} is for masked and causal LMs; a sequence classifier explains the whole text "
                             f"(pass position=None)")
        return None
    if position is None:
        if task == "causal_lm":
            # the last real token: the highest index with mask 1 (left or right padding alike)
            return (mask * torch.arange(1, L + 1, device=mask.device)).argmax(1)
        from .baselines import token_id
        mid = token_id("mask", tokenizer, model, name)
        hit = ids == mid
        none = (~hit.any(1)).nonzero().flatten().tolist()
        if none:
            raise ValueError(f"{name}=None explains the first mask token, but text {none[0]} has none "
                             f"(id {mid}); pass position= or put a mask token in the text")
        return hit.long().argmax(1)
    if isinstance(position, bool):
        raise TypeError(f"{name} must be an int, a list of ints or a (batch,) tensor, got a bool")
    if isinstance(position, numbers.Integral):
        p = torch.full((B,), int(position), dtype=torch.long)
    elif isinstance(position, (list, tuple, torch.Tensor)):
        p = torch.as_tensor(position)
        if p.is_floating_point() or p.is_complex() or p.dtype == torch.bool or p.dim() > 1 or p.numel() != B:
            raise ValueError(f"{name} must be an int or one int per text ({B}); got {position!r}")
        p = p.long().reshape(-1)
    else:
        raise TypeError(f"{name} must be None, an int, a list of ints or a (batch,) tensor; got {type(position).__name__}")
    p = p.to(ids.device)
    lengths = mask.sum(1)
    for i in range(B):
        v = int(p[i])
        if v < 0 or v >= L or int(mask[i, v]) == 0:
            raise ValueError(f"{name} {v} of text {i} is past its {int(lengths[i])} tokens (or on padding); "
                             f"positions are 0-based token indices")
    return p
