"""Length buckets: groups of texts padded only to their own longest member (docs/methods.md §15).

Sorting by length and cutting greedily keeps padding small: a batch is never padded to
the longest text of the data set, only to the longest text of its bucket.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, List, Optional, Sequence

import torch

from ..engine.checks import check_positive_int


# max_padding="auto" in attribute_tokens: on CPU only texts of one length share a bucket.
# Padding costs its own tokens plus a masked attention (slower than an unmasked one), and a
# CPU gains nothing from wider batches. Measured (random 2-layer BERT, hidden 128, 50 steps,
# one thread, CPU time, against the bare model's passes per text, benchmarks/text_job.py's
# floor): for 300 texts of 8-16 tokens, no limit / 0 / 0.02 / 0.05 / 0.1 took 1.02 / 0.93 /
# 0.92 / 0.92 / 0.95x the floor; 240 texts of 8-128 tokens 1.22 / 1.06 / 1.13 / 1.19 / 1.23x;
# 60 texts of 8-128 tokens 1.86 / 1.22 / 1.25 / 1.47 / 1.26x. GPUs: no limit (unmeasured: wider
# batches fill them).
AUTO_MAX_PADDING = {"cpu": 0.0}


def length_buckets(lengths: Sequence[int], *, max_batch: int = 32, max_tokens: Optional[int] = None,
                   max_padding: Optional[float] = None) -> List[List[int]]:
    """Group indices 0..N-1 into batches of similar lengths.

    Args:
        lengths: the token count of each text (ints >= 1).
        max_batch: at most this many texts per bucket (>= 1).
        max_tokens: at most this many padded tokens per bucket (rows * its longest
            length); None: no limit. A text longer than max_tokens gets a bucket of its own.
        max_padding: a bucket's padded tokens are at most (1 + max_padding) times its texts'
            own tokens (0: only texts of one length share a bucket); None: no limit.
    Returns:
        A list of buckets, each a list of indices into `lengths`, ascending by length
        (ties in input order); every index appears once.
    """
    lens = check_lengths(lengths, "lengths")
    max_batch = check_positive_int(max_batch, "max_batch")
    max_tokens = check_positive_int(max_tokens, "max_tokens", allow_none=True)
    max_padding = check_padding(max_padding, "max_padding")
    order = sorted(range(len(lens)), key=lambda i: lens[i])  # stable: ties keep input order
    buckets: List[List[int]] = []
    cur: List[int] = []
    own = 0  # the bucket's own tokens
    for i in order:
        # ascending order: the newcomer is the bucket's longest, so padded tokens = rows * lens[i]
        padded = (len(cur) + 1) * lens[i]
        if cur and (len(cur) == max_batch or (max_tokens is not None and padded > max_tokens)
                    or (max_padding is not None and padded > (1 + max_padding) * (own + lens[i]))):
            buckets.append(cur)
            cur, own = [], 0
        cur.append(i)
        own += lens[i]
    if cur:
        buckets.append(cur)
    return buckets


def check_padding(value: Any, name: str) -> Optional[float]:
    """None, or a finite number >= 0 (a fraction of a bucket's own tokens)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise TypeError(f"{name} must be a finite number >= 0 or None, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0 (a fraction of the texts' own tokens), got {value}")
    return float(value)


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
