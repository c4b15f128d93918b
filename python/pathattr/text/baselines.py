"""Text baselines: which embedding each position starts from (docs/methods.md §15).

A named token ("pad", "unk", "mask", "eos") or an int id fills every real position;
"zeros" is the zero embedding; ids may also be given whole. Padding keeps the input's
own id (attribution 0), and with keep_special_tokens so do [CLS], [SEP], BOS, EOS
and [MASK] (they carry no content of the text).
"""
from __future__ import annotations

import numbers
from typing import Any, Optional, Set

import torch

NAMED = ("pad", "unk", "mask", "eos", "bos")


def special_ids(tokenizer: Any, model: Any) -> Set[int]:
    """The ids of special tokens (the tokenizer's all_special_ids, else the config's bos/eos/pad),
    without unk: an unknown word is content."""
    ids: Set[int] = set()
    if tokenizer is not None:
        ids.update(int(i) for i in (getattr(tokenizer, "all_special_ids", None) or []) if i is not None)
        unk = getattr(tokenizer, "unk_token_id", None)
        ids.discard(unk)
    else:
        cfg = getattr(model, "config", None)
        for key in ("bos_token_id", "eos_token_id", "pad_token_id", "cls_token_id", "sep_token_id"):
            v = getattr(cfg, key, None)
            if isinstance(v, numbers.Integral):
                ids.add(int(v))
    return ids


def token_id(kind: str, tokenizer: Any, model: Any, name: str = "baseline") -> int:
    """The id of a named token: the tokenizer's <kind>_token_id, else model.config's."""
    tid = getattr(tokenizer, f"{kind}_token_id", None) if tokenizer is not None else None
    if tid is None:
        tid = getattr(getattr(model, "config", None), f"{kind}_token_id", None)
    if isinstance(tid, (list, tuple)):  # some configs hold several eos ids
        tid = tid[0] if tid else None
    if not isinstance(tid, numbers.Integral) or isinstance(tid, bool):
        where = "the tokenizer" if tokenizer is not None else "model.config (and no tokenizer= was given)"
        others = ", ".join(repr(k) for k in ("pad", "unk", "zeros") if k != kind)
        raise ValueError(f"{name}={kind!r}: {where} has no {kind} token; pass another baseline ({others}, an int "
                         f"token id) or a tokenizer with a {kind} token")
    return int(tid)


def check_baseline_arg(baseline: Any, name: str = "baseline", allow_ids: bool = True) -> None:
    """The kind of a baseline argument (its values are checked against the ids later)."""
    if isinstance(baseline, str):
        if baseline not in NAMED + ("zeros",):
            raise ValueError(f"{name} must be one of {', '.join(map(repr, NAMED + ('zeros',)))}, an int token id or "
                             f"token ids; got {baseline!r}")
    elif isinstance(baseline, bool) or not isinstance(baseline, (numbers.Integral, torch.Tensor)):
        raise TypeError(f"{name} must be a str ('pad', 'unk', 'mask', 'zeros', ...), an int token id or a tensor of "
                        f"ids; got {type(baseline).__name__}")
    elif isinstance(baseline, torch.Tensor) and not allow_ids:
        raise TypeError(f"{name} must be a str or an int token id here, got a tensor")


def baseline_ids(baseline: Any, ids: torch.Tensor, mask: torch.Tensor, tokenizer: Any, model: Any,
                 keep_special_tokens: bool, vocab: Optional[int], name: str = "baseline") -> Optional[torch.Tensor]:
    """The baseline's ids (B, L) for a padded batch; None for "zeros" (see `pinned`).

    A tensor of ids is taken as given (its shape must be the batch's, or (L,) for all rows)."""
    from .inputs import check_ids
    if isinstance(baseline, torch.Tensor):
        b = baseline.to(ids.device)
        if b.dim() == 1:
            b = b.unsqueeze(0).expand_as(ids)
        if tuple(b.shape) != tuple(ids.shape):
            raise ValueError(f"{name} has shape {tuple(baseline.shape)}; token ids of the inputs' shape "
                             f"{tuple(ids.shape)} (or ({ids.shape[-1]},) for every text) were expected")
        return check_ids(b, vocab, name).clone()
    if baseline == "zeros":
        return None
    if isinstance(baseline, str):
        fill = token_id(baseline, tokenizer, model, name)
    else:
        fill = int(baseline)
    if fill < 0 or (vocab is not None and fill >= vocab):
        raise ValueError(f"{name}: token id {fill} is outside the model's vocabulary [0, {vocab})")
    base = torch.full_like(ids, fill)
    keep = pinned(ids, mask, tokenizer, model, keep_special_tokens)
    return torch.where(keep, ids, base)


def pinned(ids: torch.Tensor, mask: torch.Tensor, tokenizer: Any, model: Any, keep_special_tokens: bool) -> torch.Tensor:
    """(B, L) bool: the positions whose baseline is the input itself (padding; special tokens)."""
    keep = mask == 0
    if keep_special_tokens:
        sp = special_ids(tokenizer, model)
        if sp:
            keep = keep | torch.isin(ids, torch.tensor(sorted(sp), dtype=ids.dtype, device=ids.device))
    return keep
