"""Text inputs in every form a user has them, checked before any model call.

str / list of str (with a tokenizer), token ids (L,) or (B, L), a dict / BatchEncoding
with input_ids (+ attention_mask, token_type_ids), or a ragged list of id rows become
either one padded batch as given (`Padded`) or ragged rows (`Rows`) that are bucketed
by length later (buckets.py). Every check names the argument (docs/design.md: bad input).
"""
from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, List, Optional

import torch
from torch import nn


@dataclass
class Padded:
    """A batch as the user padded it: ids, mask (B, L), token types (B, L) or None."""

    ids: torch.Tensor
    mask: torch.Tensor
    token_types: Optional[torch.Tensor]


@dataclass
class Rows:
    """Ragged texts: one 1-D id tensor each (and token types, or None)."""

    ids: List[torch.Tensor]
    token_types: Optional[List[torch.Tensor]]


def input_embeddings(model: Any, name: str = "model") -> nn.Module:
    """model.get_input_embeddings(), checked: the layer the path runs at (docs/methods.md §15)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module (a Hugging Face model), got {type(model).__name__}")
    get = getattr(model, "get_input_embeddings", None)
    if not callable(get):
        raise TypeError(f"{name} ({type(model).__name__}) has no get_input_embeddings(): pass a Hugging Face model "
                        f"whose input embeddings are a module (or use pathattr.layer_integrated_gradients)")
    try:
        layer = get()
    except NotImplementedError:
        layer = None
    if not isinstance(layer, nn.Module):
        raise TypeError(f"{name}.get_input_embeddings() returned {type(layer).__name__}, not an embedding module")
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        # BART, T5, ...: encoder and decoder embed through their own (tied) modules, so a path
        # at get_input_embeddings() would never be taken; say so before any model call
        raise ValueError(f"{name} ({type(model).__name__}) is an encoder-decoder model: its encoder and decoder embed "
                         f"the tokens through modules of their own, not get_input_embeddings(); pathattr.text "
                         f"attributes encoder-only and decoder-only models (use pathattr.layer_integrated_gradients "
                         f"on the encoder's embedding module for these)")
    return layer


def vocab_size(layer: nn.Module) -> Optional[int]:
    n = getattr(layer, "num_embeddings", None)
    if n is None and isinstance(getattr(layer, "weight", None), torch.Tensor):
        n = layer.weight.shape[0]
    return None if n is None else int(n)


def check_ids(ids: torch.Tensor, vocab: Optional[int], name: str) -> torch.Tensor:
    """Integer token ids in [0, vocab), at least one token per row; int64."""
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids (int64), got dtype {ids.dtype}")
    if ids.shape[-1] == 0:
        raise ValueError(f"{name} has zero tokens (shape {tuple(ids.shape)}): every text needs at least one token")
    if ids.numel():
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0:
            raise ValueError(f"{name} holds a negative token id ({lo}); ids must be in [0, vocabulary size)")
        if vocab is not None and hi >= vocab:
            raise ValueError(f"{name} holds token id {hi}, outside the model's vocabulary of {vocab} ids "
                             f"(model.get_input_embeddings() has {vocab} rows)")
    return ids.long()


def _as_ids(value: Any, name: str, vocab: Optional[int]) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value
    elif isinstance(value, (list, tuple)) and all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                                  for v in value):
        t = torch.tensor(list(value), dtype=torch.long)
    elif isinstance(value, (list, tuple)) and any(isinstance(v, float) for v in value):
        raise TypeError(f"{name} must hold integer token ids, got floats")
    else:
        raise TypeError(f"{name} must be token ids (a tensor or a list of ints), got {type(value).__name__}")
    if t.dim() != 1:
        raise ValueError(f"{name} must be one text's ids, 1-D; got shape {tuple(t.shape)}")
    return check_ids(t, vocab, name)


def _check_text(text: Any, name: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"{name} is an empty text: there are no tokens to attribute to")
    return text


def _encode_texts(texts: List[str], tokenizer: Any, name: str, vocab: Optional[int]) -> Rows:
    if tokenizer is None:
        raise ValueError(f"{name} holds text: pass tokenizer= (a Hugging Face tokenizer) or token ids")
    if not callable(tokenizer):
        raise TypeError(f"tokenizer must be a Hugging Face tokenizer (callable), got {type(tokenizer).__name__}")
    for i, t in enumerate(texts):
        _check_text(t, f"{name}[{i}]" if len(texts) > 1 else name)
    enc = tokenizer(list(texts))  # unpadded: padding is per length bucket
    ids, types = enc["input_ids"], enc.get("token_type_ids") if hasattr(enc, "get") else None
    rows = [_as_ids(r, f"{name}[{i}] (tokenized)", vocab) for i, r in enumerate(ids)]
    for i, r in enumerate(rows):
        if r.numel() == 0:
            raise ValueError(f"{name}[{i}] has no tokens after tokenization")
    tt = None if types is None else [torch.as_tensor(t, dtype=torch.long) for t in types]
    return Rows(rows, tt)


def check_mask(mask: Any, ids: torch.Tensor, name: str = "attention_mask") -> torch.Tensor:
    """A 0/1 mask of the ids' shape with at least one 1 per row; int64."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of the ids' shape {tuple(ids.shape)}, got {type(mask).__name__}")
    if tuple(mask.shape) != tuple(ids.shape):
        raise ValueError(f"{name} has shape {tuple(mask.shape)} but input_ids has {tuple(ids.shape)}: one 0/1 "
                         f"entry per token")
    if mask.is_complex():
        raise TypeError(f"{name} must hold 0/1, got dtype {mask.dtype}")
    if mask.device != ids.device:
        raise ValueError(f"{name} is on {mask.device} but input_ids is on {ids.device}")
    if mask.numel() and not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"{name} must hold only 0 and 1 (1: a real token, 0: padding)")
    m = mask.long()
    empty = (m.sum(-1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"{name} row {empty[0]} is all zeros: that text has no tokens to attribute to")
    return m


def encode(inputs: Any, tokenizer: Any, vocab: Optional[int], name: str = "inputs"):
    """The user's inputs as Padded (a tensor batch or a padded dict) or Rows (ragged)."""
    if isinstance(inputs, str):
        return _encode_texts([inputs], tokenizer, name, vocab)
    if isinstance(inputs, Mapping) or (hasattr(inputs, "keys") and hasattr(inputs, "__getitem__")
                                       and not isinstance(inputs, torch.Tensor)):
        if "input_ids" not in inputs:
            raise ValueError(f"{name} is a mapping without 'input_ids' (keys: {', '.join(map(str, inputs.keys()))})")
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask") if hasattr(inputs, "get") else None
        types = inputs.get("token_type_ids") if hasattr(inputs, "get") else None
        if not isinstance(ids, torch.Tensor):  # a tokenizer's output without return_tensors: lists
            if isinstance(ids, (list, tuple)) and ids and isinstance(ids[0], (list, tuple)):
                rows = [_as_ids(r, f"{name}['input_ids'][{i}]", vocab) for i, r in enumerate(ids)]
                if mask is not None:
                    for i, (r, m) in enumerate(zip(rows, mask)):
                        if list(m) != [1] * len(r):
                            raise ValueError(f"{name}['attention_mask'][{i}]: a ragged batch needs no padding; "
                                             f"got a mask that is not all ones")
                tt = None if types is None else [torch.as_tensor(t, dtype=torch.long) for t in types]
                return Rows(rows, tt)
            ids = _as_ids(ids, f"{name}['input_ids']", vocab)
        return _padded(ids, mask, types, vocab, f"{name}['input_ids']")
    if isinstance(inputs, torch.Tensor):
        return _padded(inputs, None, None, vocab, name)
    if isinstance(inputs, (list, tuple)):
        if not inputs:
            raise ValueError(f"{name} is empty: pass at least one text")
        if all(isinstance(t, str) for t in inputs):
            return _encode_texts(list(inputs), tokenizer, name, vocab)
        if all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in inputs):
            return Rows([_as_ids(inputs, name, vocab)], None)
        if all(isinstance(t, (torch.Tensor, list, tuple)) for t in inputs):
            return Rows([_as_ids(t, f"{name}[{i}]", vocab) for i, t in enumerate(inputs)], None)
        raise TypeError(f"{name} must be a str, a list of str, token ids or a list of id rows; got a list of "
                        f"{', '.join(sorted({type(t).__name__ for t in inputs}))}")
    raise TypeError(f"{name} must be a str, a list of str, token ids (tensor), a dict with input_ids, or a list of "
                    f"id rows; got {type(inputs).__name__}")


def _padded(ids: torch.Tensor, mask: Any, types: Any, vocab: Optional[int], name: str) -> Padded:
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
        mask = mask.unsqueeze(0) if isinstance(mask, torch.Tensor) and mask.dim() == 1 else mask
        types = types.unsqueeze(0) if isinstance(types, torch.Tensor) and types.dim() == 1 else types
    if ids.dim() != 2:
        raise ValueError(f"{name} must have shape (L,) or (batch, L), got {tuple(ids.shape)}")
    if ids.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch: pass at least one text")
    ids = check_ids(ids, vocab, name)
    mask = torch.ones_like(ids) if mask is None else check_mask(mask, ids)
    if types is not None:
        if not isinstance(types, torch.Tensor) or tuple(types.shape) != tuple(ids.shape):
            raise ValueError(f"token_type_ids must be a tensor of the ids' shape {tuple(ids.shape)}")
        types = types.long()
    return Padded(ids, mask, types)


def pad_rows(rows: List[torch.Tensor], pad_id: int, types: Optional[List[torch.Tensor]] = None) -> Padded:
    """Right-pad rows to their longest: ids, mask (1 real, 0 pad), token types (0 at pads)."""
    L = max(r.numel() for r in rows)
    ids = torch.full((len(rows), L), int(pad_id), dtype=torch.long, device=rows[0].device)
    mask = torch.zeros((len(rows), L), dtype=torch.long, device=rows[0].device)
    tt = None if types is None else torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, :r.numel()] = r
        mask[i, :r.numel()] = 1
        if tt is not None:
            tt[i, :r.numel()] = types[i].to(ids.device)
    return Padded(ids, mask, tt)
