"""Length buckets: groups of texts padded only to their own longest member (docs/methods.md §15).

Sorting by length and cutting greedily keeps padding small: a batch is never padded to
the longest text of the data set, only to the longest text of its bucket.
"""
from __future__ import annotations

import numbers
from typing import Any, List, Optional, Sequence

import torch

from ..engine.checks import check_positive_int


def length_buckets(lengths: Sequence[int], *, max_batch: int = 32, max_tokens: Optional[int] = None) -> List[List[int]]:
    """Group indices 0..N-1 into batches of similar lengths.

    Args:
        lengths: the token count of each text (ints >= 1).
        max_batch: at most this many texts per bucket (>= 1).
        max_tokens: at most this many padded tokens per bucket (rows * its longest
            length); None: no limit. A text longer than max_tokens gets a bucket of its own.
    Returns:
        A list of buckets, each a list of indices into `lengths`, ascending by length
        (ties in input order); every index appears once.
    """
    lens = check_lengths(lengths, "lengths")
    max_batch = check_positive_int(max_batch, "max_batch")
    max_tokens = check_positive_int(max_tokens, "max_tokens", allow_none=True)
    order = sorted(range(len(lens)), key=lambda i: lens[i])  # stable: ties keep input order
    buckets: List[List[int]] = []
    cur: List[int] = []
    for i in order:
        # ascending order: the newcomer is the bucket's longest, so padded tokens = rows * lens[i]
        if cur and (len(cur) == max_batch or (max_tokens is not None and (len(cur) + 1) * lens[i] > max_tokens)):
            buckets.append(cur)
            cur = []
        cur.append(i)
    if cur:
        buckets.append(cur)
    return buckets


def check_lengths(lengths: Any, name: str) -> List[int]:
    """A sequence of ints >= 1 (a list, tuple or 1-D integer tensor) as a list."""
    if isinstance(lengths, torch.Tensor):
        if lengths.dim() != 1 or lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise TypeError(f"{name} must be a 1-D integer tensor or a list of ints; got dtype {lengths.dtype}, "
                            f"shape {tuple(lengths.shape)}")
        lengths = lengths.tolist()
    if isinstance(lengths, (str, bytes)) or not isinstance(lengths, Sequence):
        raise TypeError(f"{name} must be a list of ints (token counts), got {type(lengths).__name__}")
    out = []
    for i, n in enumerate(lengths):
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"{name}[{i}] must be an int, got {n!r}")
        if n < 1:
            raise ValueError(f"{name}[{i}] is {n}; every text needs at least one token")
        out.append(int(n))
    return out
