"""Teacher-forced values run in causal segments, for per-token backward passes that skip
what a token's value does not depend on (docs/methods.md §15, "Segments").

Generation attribution needs one backward pass per continuation token k, each the
gradient of ONE position's value. Over a single forward of the whole sequence, every
op covers every position, and autograd prunes by graph structure, not by zeros: each
backward runs each op at full width, although target k's gradient is zero at later
positions and, in the top layer, everywhere but its own position.

Run instead as consecutive calls over segments of positions, each attending to the
earlier ones through the model's key/value cache (the way generate() runs a prompt in
chunks), with each segment's values a tensor of their own: target k's backward starts
from its segment's values and reaches the earlier segments only through their cached
keys and values, so it skips their top-layer attention output and MLP and everything
of later segments. The numbers are the same computation up to rounding; the caller
checks that on the path's ends and otherwise keeps the single forward.

Measured (tiny random models, hidden 128, P=32, T=16, 50 points, one thread, CPU time
on this project's shared machine; a forward plus 16 backward passes, in ms):
                   one forward   segments of 1    2     4     8
    GPT-2, 2 layers     696          479        443   427   442
    Llama, 2 layers     544          396        381   351   349
    GPT-2, 6 layers    2011         1991       1715  1643  1635
Segments of 4 to 8 positions are best there (each segment costs a model call's
overheads, which weigh more in smaller models). In the whole call (hidden 64 / 128,
P=32, T=16, 50 points), 2 / 3 / 4 / 8 / 16 segments took: Llama h64 179 / 181 / 191 /
226 / 260 ms, GPT-2 h64 213 / 208 / 212 / 242 / 281, Llama h128 418 / 419 / 422 / 467 /
479, GPT-2 h128 502 / 490 / 498 / 506 / 598; so 8 positions each, at least 2 segments
(a larger model's compute favours more: each backward then runs fewer positions).

Memory: each segment's attention keeps the keys and values of every position before it
for the backward, so S segments keep about S/2 times the single forward's keys and
values (a small part of what a forward keeps; the MLPs' activations dominate): S is at
most SEGMENTS_MAX.
"""
from __future__ import annotations

import inspect
import math
from typing import Optional, Tuple, Union

import torch
from torch import nn

from ..layers.hooks import intercept
from .tasks import logits_of, token_values

SEGMENT_SIZE = 8  # positions per segment, for T from 16 to 64
SEGMENTS_MIN = 2  # short continuations still get this many (T=5: 3 and 2)
SEGMENTS_MAX = 8  # long ones at most this many (T=256: 8 of 32), for memory (above)

Columns = Union[torch.Tensor, Tuple[torch.Tensor, ...]]


def cache_keyword(model: nn.Module) -> Optional[str]:
    """The name under which model.forward takes a key/value cache ("cache" in transformers 5,
    "past_key_values" before), or None where it takes none or no use_cache."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return None
    if "use_cache" not in params:
        return None
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    return None


def bounds(first: int, T: int) -> list:
    """Segment ends over the T target positions first .. first+T-1 (the prompt before them
    is one segment of its own): SEGMENTS_MIN to SEGMENTS_MAX segments of equal size (the last
    the rest), SEGMENT_SIZE positions where that count allows."""
    count = min(SEGMENTS_MAX, max(SEGMENTS_MIN, math.ceil(T / SEGMENT_SIZE)))
    size = max(1, math.ceil(T / count))
    return [min(first + T, a + size) for a in range(first, first + T, size)]


def columns(out: Columns) -> torch.Tensor:
    """The (rows, T) values of a call's output: a tensor, or the segments' blocks side by side."""
    return torch.cat(list(out), 1) if isinstance(out, (tuple, list)) else out


class SegmentedValues(nn.Module):
    """forward(h, input_ids) -> the values of the T continuation tokens, one (rows, m) block per
    segment (in order: side by side they are text/generation.py's (rows, T) values), with the
    embedding layer's output set to h's slice in each segment's call.

    h: (rows, N-1, E) the input embeddings of s[:-1]; positions P-1 .. N-2 predict the
    continuation. The prompt's first P-1 positions run as one segment that yields no value.
    """

    def __init__(self, model: nn.Module, layer: nn.Module, prompt_length: int, continuation: torch.Tensor,
                 output: str, cache_name: str):
        super().__init__()
        self.model = model
        self.layer = layer
        self.register_buffer("cont", continuation, persistent=False)
        self.output = output
        self.cache_name = cache_name
        self.first = prompt_length - 1
        self.ends = ([self.first] if self.first > 0 else []) + bounds(self.first, continuation.numel())
        params = inspect.signature(model.forward).parameters
        self.keep = "logits_to_keep" in params

    def forward(self, h: torch.Tensor, input_ids: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        cache, blocks, a = None, [], 0
        for b in self.ends:
            m = max(0, b - max(a, self.first))  # value positions in this segment
            kw = {"use_cache": True, self.cache_name: cache}
            if self.keep:
                kw["logits_to_keep"] = max(m, 1)
            with intercept(self.layer, lambda _, a=a, b=b: h[:, a:b]) as calls:
                out = self.model(input_ids=input_ids[:, a:b], **kw)
            if calls[0] == 0:
                raise ValueError("the input embeddings were not called in the model's forward pass")
            cache = _cache_of(out)
            if m:
                t = b - m - self.first
                blocks.append(token_values(logits_of(out)[:, -m:], self.cont[t:t + m], self.output))
            a = b
        return tuple(blocks)


def _cache_of(out):
    for name in ("cache", "past_key_values"):
        c = out.get(name) if hasattr(out, "get") else getattr(out, name, None)
        if c is not None:
            return c
    raise ValueError("the model returned no key/value cache with use_cache=True")


def agrees(seg: torch.Tensor, one: torch.Tensor) -> bool:
    """Do the segmented values equal the single forward's up to rounding? Structural differences
    (positions, masks, a cache the model ignores) move log-probabilities by O(1)."""
    if seg.shape != one.shape or not bool(torch.isfinite(seg).all()):
        return False
    eps = torch.finfo(one.dtype).eps
    tol = min(1e3 * eps, 0.05) * (1.0 + float(one.abs().max()))
    return float((seg - one).abs().max()) <= tol
